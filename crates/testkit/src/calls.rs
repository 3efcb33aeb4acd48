//! Helpers for call tests and benchmarks: signed-in peers with test media, waiting for
//! call events, and reading what a call's media engine hears and sees.

use std::time::Duration;

use natter_core::calls::{CallState, ContentStats};
use natter_core::{CallUpdate, Event};
use natter_jingle::MediaKind;

use crate::{test_call_settings, Peer, Prosody};

/// Registers `user` (password = user name) and signs in with a `freq` Hz test tone.
pub async fn call_peer(server: &Prosody, user: &str, freq: f64) -> Peer {
    server.register(user, user).expect("register");
    let mut p = Peer::start_with_calls(server.account(user), user, test_call_settings(freq))
        .await
        .expect("natter peer");
    p.online().await.expect("online");
    p
}

/// alice (440 Hz) and bob (880 Hz), both signed in; both start before either is waited for.
pub async fn two_call_peers(server: &Prosody) -> (Peer, Peer) {
    for user in ["alice", "bob"] {
        server.register(user, user).expect("register");
    }
    let mut alice =
        Peer::start_with_calls(server.account("alice"), "alice", test_call_settings(440.0))
            .await
            .expect("alice");
    let mut bob = Peer::start_with_calls(server.account("bob"), "bob", test_call_settings(880.0))
        .await
        .expect("bob");
    alice.online().await.expect("alice online");
    bob.online().await.expect("bob online");
    (alice, bob)
}

pub fn is_ended(s: &CallState) -> bool {
    matches!(s, CallState::Ended(_))
}

/// An audio content whose decoded sound peaks at `freq` (±25 Hz) above −40 dB.
pub fn hears(stats: &[ContentStats], freq: f64) -> bool {
    stats.iter().any(|c| {
        c.kind == MediaKind::Audio
            && c.stats
                .peak_frequency_hz
                .is_some_and(|f| (f - freq).abs() < 25.0)
            && c.stats.rms_db.is_some_and(|db| db > -40.0)
    })
}

/// A video content that decoded more than 20 frames of 640×480.
pub fn sees(stats: &[ContentStats]) -> bool {
    stats.iter().any(|c| {
        c.kind == MediaKind::Video
            && c.stats.frames_decoded > 20
            && c.stats.width == 640
            && c.stats.height == 480
    })
}

impl Peer {
    /// Waits for a call to ring here: its id, the caller's bare JID, and whether it
    /// proposes video.
    pub async fn incoming_call(&mut self) -> (String, String, bool) {
        match self
            .wait_for(Duration::from_secs(15), |e| {
                matches!(e, Event::Call(CallUpdate::Incoming { .. }))
            })
            .await
        {
            Some(Event::Call(CallUpdate::Incoming { sid, from, video })) => (sid, from, video),
            other => panic!("no incoming call: {other:?}"),
        }
    }

    /// Waits for a call update matching `want`.
    pub async fn call_update(
        &mut self,
        timeout: Duration,
        want: impl Fn(&CallUpdate) -> bool,
    ) -> CallUpdate {
        match self
            .wait_for(timeout, |e| matches!(e, Event::Call(u) if want(u)))
            .await
        {
            Some(Event::Call(u)) => u,
            other => panic!("call update not seen: {other:?}; seen {:?}", self.seen),
        }
    }

    /// Waits for a call state matching `want`.
    pub async fn call_state(
        &mut self,
        timeout: Duration,
        want: impl Fn(&CallState) -> bool,
    ) -> CallState {
        match self
            .call_update(
                timeout,
                |u| matches!(u, CallUpdate::State { state, .. } if want(state)),
            )
            .await
        {
            CallUpdate::State { state, .. } => state,
            _ => unreachable!("matched a state update"),
        }
    }

    /// Polls call `sid`'s statistics until `ok` holds for them or `timeout` passes, and
    /// returns the last ones.
    pub async fn media_until(
        &self,
        sid: &str,
        timeout: Duration,
        ok: impl Fn(&[ContentStats]) -> bool,
    ) -> Vec<ContentStats> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.handle.call_stats(sid).await.unwrap_or_default();
            if ok(&stats) || tokio::time::Instant::now() > deadline {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
