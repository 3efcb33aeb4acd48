//! Adding video to a running audio call (XEP-0166 content-add / content-accept /
//! content-reject, XEP-0167), through the harness Prosody: between two Natter sessions
//! (the callee accepts automatically and sends its camera too), and with the aiortc peer,
//! which rejects every content-add (the call must go on audio-only).

use std::time::Duration;

use natter_core::calls::{CallState, ContentStats};
use natter_core::{CallAction, CallUpdate, Event};
use natter_testkit::aiortc::AiortcPeer;
use natter_testkit::calls::{call_peer, hears, is_ended, sees, two_call_peers};
use natter_testkit::{init_tracing, Prosody};

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
    let (mut alice, mut bob) = two_call_peers(&server).await;

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    bob.incoming_call().await;
    bob.handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    let active = |s: &CallState| *s == CallState::Active;
    alice.call_state(Duration::from_secs(20), active).await;
    bob.call_state(Duration::from_secs(20), active).await;
    let at_bob = bob
        .media_until(&sid, Duration::from_secs(10), |s| hears(s, 440.0))
        .await;
    assert!(hears(&at_bob, 440.0), "bob hears alice: {at_bob:?}");
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(10), |s| hears(s, 880.0))
        .await;
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
    let a = alice
        .call_update(Duration::from_secs(30), video_added)
        .await;
    assert_eq!(a, CallUpdate::VideoAdded { sid: sid.clone() });
    let b = bob.call_update(Duration::from_secs(30), video_added).await;
    assert_eq!(b, CallUpdate::VideoAdded { sid: sid.clone() });

    let both = |freq| move |s: &[ContentStats]| hears(s, freq) && sees(s);
    let at_bob = bob
        .media_until(&sid, Duration::from_secs(15), both(440.0))
        .await;
    assert!(both(440.0)(&at_bob), "bob sees and hears alice: {at_bob:?}");
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(15), both(880.0))
        .await;
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
    match bob.call_state(Duration::from_secs(10), is_ended).await {
        CallState::Ended(r) => assert!(r.remote && r.condition.as_str() == "success"),
        _ => unreachable!(),
    }
    alice.call_state(Duration::from_secs(5), is_ended).await;
    assert!(
        alice.handle.call_stats(&sid).await.is_err(),
        "media stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_rejects_added_video_and_the_call_goes_on_audio_only() {
    init_tracing();
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
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(15), |s| hears(s, 880.0))
        .await;
    assert!(hears(&at_alice, 880.0), "alice hears bob: {at_alice:?}");
    bob.hears(440.0).await;

    alice
        .handle
        .call_action(&sid, CallAction::AddVideo)
        .await
        .expect("add video");
    match alice
        .call_update(Duration::from_secs(15), |u| {
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
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(5), |s| hears(s, 880.0))
        .await;
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
    assert_eq!(bob.ended().await["reason"], "success");
    let _ = bob.exit_code().await;
}
