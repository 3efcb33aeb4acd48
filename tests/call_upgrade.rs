//! Adding video to a running audio call (XEP-0166 content-add / content-accept /
//! content-reject, XEP-0167), through the harness Prosody: between two Natter sessions
//! (the callee accepts automatically and sends its camera too), and with the aiortc peer,
//! which rejects every content-add (the call must go on audio-only).

use std::process::Stdio;
use std::time::Duration;

use natter_core::calls::{CallState, ContentStats};
use natter_core::{CallAction, CallUpdate, Event};
use natter_jingle::MediaKind;
use natter_testkit::{init_tracing, test_call_settings, Peer, Prosody};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

async fn natter(server: &Prosody, user: &str, freq: f64) -> Peer {
    server.register(user, user).expect("register");
    let mut p = Peer::start_with_calls(server.account(user), user, test_call_settings(freq))
        .await
        .expect("natter peer");
    p.online().await.expect("online");
    p
}

/// Both sessions start before either is waited for (as in tests/calls.rs): bob's
/// presence is then surely known to the server when alice proposes.
async fn two_peers(server: &Prosody) -> (Peer, Peer) {
    for (user, pw) in [("alice", "alice"), ("bob", "bob")] {
        server.register(user, pw).expect("register");
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
    // `Online` is announced just before the initial presence goes out: a message from
    // bob, sent after it on the same stream, proves the server has seen bob available
    // (otherwise a propose to his bare JID may be stored offline instead).
    bob.handle
        .send_message("alice@localhost", "here")
        .await
        .expect("send");
    alice
        .received("here", Duration::from_secs(10))
        .await
        .expect("bob's message");
    (alice, bob)
}

async fn incoming(peer: &mut Peer) -> String {
    match peer
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, Event::Call(CallUpdate::Incoming { .. }))
        })
        .await
    {
        Some(Event::Call(CallUpdate::Incoming { sid, .. })) => sid,
        other => panic!("no incoming call: {other:?}"),
    }
}

async fn state(peer: &mut Peer, timeout: Duration, want: impl Fn(&CallState) -> bool) -> CallState {
    match peer
        .wait_for(
            timeout,
            |e| matches!(e, Event::Call(CallUpdate::State { state, .. }) if want(state)),
        )
        .await
    {
        Some(Event::Call(CallUpdate::State { state, .. })) => state,
        other => panic!("call state not reached: {other:?}; seen {:?}", peer.seen),
    }
}

async fn update(
    peer: &mut Peer,
    timeout: Duration,
    want: impl Fn(&CallUpdate) -> bool,
) -> CallUpdate {
    match peer
        .wait_for(timeout, |e| matches!(e, Event::Call(u) if want(u)))
        .await
    {
        Some(Event::Call(u)) => u,
        other => panic!("call update not seen: {other:?}; seen {:?}", peer.seen),
    }
}

fn is_ended(s: &CallState) -> bool {
    matches!(s, CallState::Ended(_))
}

/// Polls the call's statistics until `ok` holds for them (or gives up).
async fn media_until(
    peer: &Peer,
    sid: &str,
    timeout: Duration,
    ok: impl Fn(&[ContentStats]) -> bool,
) -> Vec<ContentStats> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let stats = peer.handle.call_stats(sid).await.unwrap_or_default();
        if ok(&stats) || tokio::time::Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hears(stats: &[ContentStats], freq: f64) -> bool {
    stats.iter().any(|c| {
        c.kind == MediaKind::Audio
            && c.stats
                .peak_frequency_hz
                .is_some_and(|f| (f - freq).abs() < 25.0)
            && c.stats.rms_db.is_some_and(|db| db > -40.0)
    })
}

fn sees(stats: &[ContentStats]) -> bool {
    stats.iter().any(|c| {
        c.kind == MediaKind::Video
            && c.stats.frames_decoded > 20
            && c.stats.width == 640
            && c.stats.height == 480
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_adds_video_to_an_audio_call_and_both_see_and_hear() {
    upgrade_audio_call(true).await;
}

/// The callee adds video: its content has `creator='responder'`, and the caller stays
/// ICE-controlling (roles follow the session, not the content).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_adds_video_to_an_audio_call_and_both_see_and_hear() {
    upgrade_audio_call(false).await;
}

async fn upgrade_audio_call(caller_adds: bool) {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let (mut alice, mut bob) = two_peers(&server).await;

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    incoming(&mut bob).await;
    bob.handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    let active = |s: &CallState| *s == CallState::Active;
    state(&mut alice, Duration::from_secs(20), active).await;
    state(&mut bob, Duration::from_secs(20), active).await;
    let at_bob = media_until(&bob, &sid, Duration::from_secs(10), |s| hears(s, 440.0)).await;
    assert!(hears(&at_bob, 440.0), "bob hears alice: {at_bob:?}");
    let at_alice = media_until(&alice, &sid, Duration::from_secs(10), |s| hears(s, 880.0)).await;
    assert!(hears(&at_alice, 880.0), "alice hears bob: {at_alice:?}");
    assert_eq!(at_alice.len(), 1, "audio only so far");

    // One turns the camera on: content-add; the other Natter accepts and sends video too.
    let adder = if caller_adds { &alice } else { &bob };
    adder
        .handle
        .call_action(&sid, CallAction::AddVideo)
        .await
        .expect("add video");
    let video_added = |u: &CallUpdate| {
        matches!(
            u,
            CallUpdate::VideoAdded { .. } | CallUpdate::VideoFailed { .. }
        )
    };
    let a = update(&mut alice, Duration::from_secs(30), video_added).await;
    assert_eq!(a, CallUpdate::VideoAdded { sid: sid.clone() });
    let b = update(&mut bob, Duration::from_secs(30), video_added).await;
    assert_eq!(b, CallUpdate::VideoAdded { sid: sid.clone() });

    let both = |freq| move |s: &[ContentStats]| hears(s, freq) && sees(s);
    let at_bob = media_until(&bob, &sid, Duration::from_secs(15), both(440.0)).await;
    assert!(both(440.0)(&at_bob), "bob sees and hears alice: {at_bob:?}");
    let at_alice = media_until(&alice, &sid, Duration::from_secs(15), both(880.0)).await;
    assert!(
        both(880.0)(&at_alice),
        "alice sees and hears bob: {at_alice:?}"
    );
    assert_eq!(at_alice.len(), 2);
    assert!(
        at_alice.iter().any(|c| c.content == "video"),
        "{at_alice:?}"
    );

    // A second add is a no-op: the call has video.
    bob.handle
        .call_action(&sid, CallAction::AddVideo)
        .await
        .expect("add video again");
    alice
        .handle
        .call_action(&sid, CallAction::AddVideo)
        .await
        .expect("add video again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(alice.handle.call_stats(&sid).await.map(|s| s.len()), Ok(2));

    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    match state(&mut bob, Duration::from_secs(10), is_ended).await {
        CallState::Ended(r) => assert!(r.remote && r.condition.as_str() == "success"),
        _ => unreachable!(),
    }
    state(&mut alice, Duration::from_secs(5), is_ended).await;
    assert!(
        alice.handle.call_stats(&sid).await.is_err(),
        "media stopped"
    );
}

/// The aiortc peer (`tests/peers/jingle_peer.py`) as a child process.
struct PyPeer {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl PyPeer {
    fn start(server: &Prosody, user: &str, args: &[&str]) -> PyPeer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/jingle_peer.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--jid", &format!("{user}@localhost"), "--password", user])
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &server.c2s_port.to_string(),
            ])
            .arg("--ca")
            .arg(server.ca_path())
            .args(["--no-ipv6", "--duration", "40"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiortc and slixmpp (make deps)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        PyPeer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    async fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                _ => panic!("the aiortc peer never said that; it said {:#?}", self.seen),
            }
        }
    }

    /// Waits for the peer to report hearing `freq` Hz (now, not once before).
    async fn hears(&mut self, freq: f64) -> Value {
        self.seen.clear();
        self.wait_for(Duration::from_secs(15), |v| {
            v["event"] == "media"
                && v["kind"] == "audio"
                && v["freq"].as_f64().is_some_and(|f| (f - freq).abs() < 25.0)
                && v["rms_db"].as_f64().is_some_and(|db| db > -40.0)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_rejects_added_video_and_the_call_goes_on_audio_only() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let mut alice = natter(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = PyPeer::start(&server, "bob", &["answer", "--tone", "880"]);
    bob.wait_for(Duration::from_secs(20), |v| v["event"] == "online")
        .await;

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    state(&mut alice, Duration::from_secs(20), |s| {
        *s == CallState::Active
    })
    .await;
    let at_alice = media_until(&alice, &sid, Duration::from_secs(15), |s| hears(s, 880.0)).await;
    assert!(hears(&at_alice, 880.0), "alice hears bob: {at_alice:?}");
    bob.hears(440.0).await;

    alice
        .handle
        .call_action(&sid, CallAction::AddVideo)
        .await
        .expect("add video");
    match update(&mut alice, Duration::from_secs(15), |u| {
        matches!(
            u,
            CallUpdate::VideoAdded { .. } | CallUpdate::VideoFailed { .. }
        )
    })
    .await
    {
        CallUpdate::VideoFailed { sid: s, reason } => {
            assert_eq!(s, sid);
            assert!(reason.contains("content-add unsupported"), "{reason}");
        }
        other => panic!("the peer was expected to reject the video: {other:?}"),
    }

    // Still one call, still audio both ways, no video content.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_alice = media_until(&alice, &sid, Duration::from_secs(5), |s| hears(s, 880.0)).await;
    assert!(
        hears(&at_alice, 880.0),
        "alice still hears bob: {at_alice:?}"
    );
    assert_eq!(at_alice.len(), 1, "{at_alice:?}");
    bob.hears(440.0).await;
    assert!(
        !alice
            .seen
            .iter()
            .any(|e| matches!(e, Event::Call(CallUpdate::State { state, .. }) if is_ended(state))),
        "the call did not end"
    );

    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    let end = bob
        .wait_for(Duration::from_secs(15), |v| v["event"] == "ended")
        .await;
    assert_eq!(end["reason"], "success");
    let _ = tokio::time::timeout(Duration::from_secs(15), bob.child.wait()).await;
}
