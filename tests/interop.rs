//! Calls between Natter and an independent implementation of XEP-0353/Jingle, ICE and
//! DTLS-SRTP: `tests/peers/jingle_peer.py` (Python aiortc + slixmpp, no shared code),
//! through the harness Prosody. Media is checked on both sides by what is heard.

use std::time::Duration;

use natter_core::calls::{CallState, ContentStats};
use natter_core::{CallAction, CallUpdate, Event};
use natter_testkit::aiortc::AiortcPeer;
use natter_testkit::calls::{call_peer, hears, sees};
use natter_testkit::{init_tracing, Peer, Prosody};

/// One call at a time in this file: aiortc encodes VP8 and Opus in Python, and five such
/// peers at once on a 2-core machine starve the decoders (one video frame in 15 s under
/// `make check`), which measures the machine, not the call.
static ONE_CALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Natter hears `freq` Hz (and, with `video`, decodes 640×480 frames) within 15 s.
async fn natter_hears(peer: &Peer, sid: &str, freq: f64, video: bool) {
    let ok = |s: &[ContentStats]| hears(s, freq) && (!video || sees(s));
    let stats = peer.media_until(sid, Duration::from_secs(15), ok).await;
    assert!(
        ok(&stats),
        "Natter does not hear {freq} Hz (video: {video}): {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natter_calls_aiortc_audio_both_ways() {
    init_tracing();
    let _one_call = ONE_CALL.lock().await;
    let server = Prosody::start().expect("prosody");
    let mut alice = call_peer(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = AiortcPeer::start(&server, "bob", &["answer", "--tone", "880"]);
    bob.online().await;

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    alice
        .call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;
    natter_hears(&alice, &sid, 880.0, false).await;
    bob.hears(440.0).await;

    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    let end = bob.ended().await;
    assert_eq!(end["reason"], "success");
    assert_eq!(end["by"], "remote");
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_calls_natter_with_video_and_hangs_up() {
    init_tracing();
    let _one_call = ONE_CALL.lock().await;
    let server = Prosody::start().expect("prosody");
    let mut alice = call_peer(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = AiortcPeer::start(
        &server,
        "bob",
        &[
            "call",
            "alice@localhost",
            "--video",
            "--tone",
            "880",
            "--trickle",
            "0.05",
        ],
    );
    let (sid, ..) = alice.incoming_call().await;
    alice
        .handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    alice
        .call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;
    natter_hears(&alice, &sid, 880.0, true).await;
    bob.hears(440.0).await;
    bob.wait_for(Duration::from_secs(15), |v| {
        v["event"] == "media" && v["kind"] == "video" && v["frames"].as_u64() > Some(10)
    })
    .await;

    // The peer hangs up (SIGTERM makes it send session-terminate + finish).
    let pid = bob.child.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    match alice
        .call_state(Duration::from_secs(10), |s| {
            matches!(s, CallState::Ended(_))
        })
        .await
    {
        CallState::Ended(r) => {
            assert!(r.remote);
            assert_eq!(r.condition.as_str(), "success");
        }
        _ => unreachable!(),
    }
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natter_rejects_and_the_caller_retracts() {
    init_tracing();
    let _one_call = ONE_CALL.lock().await;
    let server = Prosody::start().expect("prosody");
    let mut alice = call_peer(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");

    let mut bob = AiortcPeer::start(&server, "bob", &["call", "alice@localhost"]);
    let (sid, ..) = alice.incoming_call().await;
    alice
        .handle
        .call_action(&sid, CallAction::Reject)
        .await
        .expect("reject");
    assert_eq!(bob.ended().await["reason"], "decline");
    assert_eq!(bob.exit_code().await, Some(0));
    match alice
        .call_state(Duration::from_secs(5), |s| matches!(s, CallState::Ended(_)))
        .await
    {
        CallState::Ended(r) => assert!(!r.remote && r.condition.as_str() == "decline"),
        _ => unreachable!(),
    }

    alice.seen.clear();
    let mut bob = AiortcPeer::start(
        &server,
        "bob",
        &["call", "alice@localhost", "--retract-after", "1"],
    );
    alice.incoming_call().await;
    match alice
        .call_state(Duration::from_secs(10), |s| {
            matches!(s, CallState::Ended(_))
        })
        .await
    {
        CallState::Ended(r) => {
            assert!(r.remote);
            assert_eq!(r.condition.as_str(), "cancel");
        }
        _ => unreachable!(),
    }
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_rejects_natter() {
    init_tracing();
    let _one_call = ONE_CALL.lock().await;
    let server = Prosody::start().expect("prosody");
    let mut alice = call_peer(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = AiortcPeer::start(&server, "bob", &["answer", "--reject"]);
    bob.online().await;
    alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    match alice
        .call_state(Duration::from_secs(10), |s| {
            matches!(s, CallState::Ended(_))
        })
        .await
    {
        CallState::Ended(r) => {
            assert!(r.remote);
            assert_eq!(r.condition.as_str(), "decline");
        }
        _ => unreachable!(),
    }
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_dtls_fingerprint_refuses_the_call_without_media() {
    init_tracing();
    let _one_call = ONE_CALL.lock().await;
    let server = Prosody::start().expect("prosody");
    let mut alice = call_peer(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = AiortcPeer::start(&server, "bob", &["answer", "--bad-fingerprint"]);
    bob.online().await;
    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    match alice
        .call_state(Duration::from_secs(30), |s| {
            matches!(s, CallState::Ended(_))
        })
        .await
    {
        CallState::Ended(r) => {
            assert!(!r.remote, "Natter ends it: {r:?}");
            assert_eq!(r.condition.as_str(), "security-error");
        }
        _ => unreachable!(),
    }
    assert!(
        !alice.seen.iter().any(|e| matches!(
            e,
            Event::Call(CallUpdate::State {
                state: CallState::Active,
                ..
            })
        )),
        "never active"
    );
    assert!(
        alice.handle.call_stats(&sid).await.is_err(),
        "no media pipeline"
    );
    // The peer's handshake fails too (Natter's alert or its session-terminate).
    bob.ended().await;
    assert!(
        !bob.seen
            .iter()
            .any(|v| v["event"] == "media" && v["packets"].as_u64() > Some(0)),
        "the peer received no media"
    );
}
