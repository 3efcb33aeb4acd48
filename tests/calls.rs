//! Calls between two Natter sessions through the harness Prosody: XEP-0353 + Jingle
//! signalling over the real server, ICE over this machine's interfaces, DTLS-SRTP, and
//! GStreamer media checked by what is heard (the tone's frequency) and seen (frames).

use std::time::Duration;

use natter_core::calls::CallState;
use natter_core::{CallAction, CallUpdate, Event};
use natter_testkit::calls::{hears, is_ended, sees, two_call_peers};
use natter_testkit::{init_tracing, test_call_settings, Peer, Prosody};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_call_tone_heard_both_ways_then_caller_hangs_up() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let (mut alice, mut bob) = two_call_peers(&server).await;

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    let (bob_sid, from, video) = bob.incoming_call().await;
    assert_eq!(
        (bob_sid.as_str(), from.as_str(), video),
        (sid.as_str(), "alice@localhost", false)
    );
    alice
        .call_state(Duration::from_secs(10), |s| *s == CallState::Ringing)
        .await;
    bob.handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    alice
        .call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;
    bob.call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;

    let at_bob = bob
        .media_until(&sid, Duration::from_secs(10), |s| hears(s, 440.0))
        .await;
    assert!(
        hears(&at_bob, 440.0),
        "bob hears alice's 440 Hz: {at_bob:?}"
    );
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(10), |s| hears(s, 880.0))
        .await;
    assert!(
        hears(&at_alice, 880.0),
        "alice hears bob's 880 Hz: {at_alice:?}"
    );

    // Mute (XEP-0167 §7 session-info): bob is told, and hears silence instead of the tone.
    alice
        .handle
        .call_action(&sid, CallAction::Mute(true))
        .await
        .expect("mute");
    let muted = bob
        .call_update(Duration::from_secs(5), |u| {
            matches!(u, CallUpdate::RemoteMuted { .. })
        })
        .await;
    assert_eq!(
        muted,
        CallUpdate::RemoteMuted {
            sid: sid.clone(),
            muted: true
        }
    );
    let silent = |s: &[natter_core::calls::ContentStats]| {
        s.iter()
            .all(|c| c.stats.rms_db.is_none_or(|db| db < -60.0) && !hears(s, 440.0))
    };
    let at_bob = bob.media_until(&sid, Duration::from_secs(5), silent).await;
    assert!(silent(&at_bob), "bob hears silence: {at_bob:?}");
    alice
        .handle
        .call_action(&sid, CallAction::Mute(false))
        .await
        .expect("unmute");
    let at_bob = bob
        .media_until(&sid, Duration::from_secs(5), |s| hears(s, 440.0))
        .await;
    assert!(hears(&at_bob, 440.0), "the tone is back: {at_bob:?}");

    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    match bob.call_state(Duration::from_secs(10), is_ended).await {
        CallState::Ended(r) => {
            assert!(r.remote, "bob was hung up on");
            assert_eq!(r.condition.as_str(), "success");
        }
        _ => unreachable!(),
    }
    match alice.call_state(Duration::from_secs(5), is_ended).await {
        CallState::Ended(r) => assert!(!r.remote),
        _ => unreachable!(),
    }
    assert!(
        alice.handle.call_stats(&sid).await.is_err(),
        "media stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_call_frames_and_tone_both_ways_then_callee_hangs_up() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let (mut alice, mut bob) = two_call_peers(&server).await;

    let sid = alice
        .handle
        .place_call("bob@localhost", true)
        .await
        .expect("call");
    let (_, _, video) = bob.incoming_call().await;
    assert!(video);
    bob.handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    bob.call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;
    alice
        .call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;

    let at_bob = bob
        .media_until(&sid, Duration::from_secs(15), |s| {
            hears(s, 440.0) && sees(s)
        })
        .await;
    assert!(hears(&at_bob, 440.0) && sees(&at_bob), "bob: {at_bob:?}");
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(15), |s| {
            hears(s, 880.0) && sees(s)
        })
        .await;
    assert!(
        hears(&at_alice, 880.0) && sees(&at_alice),
        "alice: {at_alice:?}"
    );

    bob.handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    match alice.call_state(Duration::from_secs(10), is_ended).await {
        CallState::Ended(r) => assert!(r.remote),
        _ => unreachable!(),
    }
}

/// Runs `tests/peers/send_iq.py` as `user` and returns its JSON answer line.
async fn third_party_iq(server: &Prosody, user: &str, to: &str, payload: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/send_iq.py");
    let out = tokio::process::Command::new("/usr/bin/python3")
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
        .args(["--to", to, "--payload", payload])
        .output()
        .await
        .expect("python3 with slixmpp (make deps)");
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if answer.is_empty() {
        eprintln!("send_iq.py said: {}", String::from_utf8_lossy(&out.stderr));
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_cannot_hijack_or_end_a_call() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let (mut alice, mut bob) = two_call_peers(&server).await;
    server.register("mallory", "mallory").expect("register");

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
    alice
        .call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;
    bob.call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;

    // Mallory knows the session id and both full JIDs: a terminate, and a transport-info
    // pointing the media at her, must both be refused as unknown sessions.
    let terminate = format!(
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{sid}'>\
         <reason><success/></reason></jingle>"
    );
    let redirect = format!(
        "<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='{sid}'>\
         <content creator='initiator' name='audio'>\
         <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='evil' pwd='evilevilevilevilevilevil'>\
         <candidate component='1' foundation='1' generation='0' id='x' ip='127.0.0.1' port='9' \
          priority='2130706431' protocol='udp' type='host'/></transport></content></jingle>"
    );
    for (to, payload) in [
        ("bob@localhost/natter-test", &terminate),
        ("alice@localhost/natter-test", &terminate),
        ("bob@localhost/natter-test", &redirect),
    ] {
        let answer = third_party_iq(&server, "mallory", to, payload).await;
        assert_eq!(
            answer,
            r#"{"type": "error", "condition": "item-not-found", "jingle_error": "unknown-session"}"#,
            "IQ to {to}"
        );
    }
    // Mallory's JMI retract/finish for the call is ignored too.
    alice.drain();
    bob.drain();
    assert!(
        !alice.seen.iter().chain(bob.seen.iter()).any(|e| matches!(
            e,
            Event::Call(CallUpdate::State {
                state: CallState::Ended(_),
                ..
            })
        )),
        "the call is still up"
    );
    let at_bob = bob
        .media_until(&sid, Duration::from_secs(10), |s| hears(s, 440.0))
        .await;
    assert!(hears(&at_bob, 440.0), "media still flows: {at_bob:?}");
    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    bob.call_state(Duration::from_secs(10), is_ended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_ends_the_call_with_a_connectivity_error() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    for (user, pw) in [("alice", "alice"), ("bob", "bob")] {
        server.register(user, pw).expect("register");
    }
    let mut quick = test_call_settings(440.0);
    quick.transport.connect_timeout = Duration::from_secs(4);
    let mut alice = Peer::start_with_calls(server.account("alice"), "alice", quick.clone())
        .await
        .expect("alice");
    // Bob offers no address at all: no host candidates and a TURN server that is not there.
    let mut hidden = quick;
    hidden.transport.host_candidates = false;
    hidden.transport.servers = vec![natter_jingle::IceServer {
        turn: true,
        host: "127.0.0.1".into(),
        port: 9,
        username: Some("nobody".into()),
        password: Some("nothing".into()),
    }];
    let mut bob = Peer::start_with_calls(server.account("bob"), "bob", hidden)
        .await
        .expect("bob");
    alice.online().await.expect("alice online");
    bob.online().await.expect("bob online");

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
    let a = alice.call_state(Duration::from_secs(20), is_ended).await;
    let b = bob.call_state(Duration::from_secs(20), is_ended).await;
    for s in [a, b] {
        match s {
            CallState::Ended(r) => {
                assert_eq!(r.condition.as_str(), "connectivity-error", "{r:?}");
            }
            _ => unreachable!(),
        }
    }
    assert!(alice.handle.call_stats(&sid).await.is_err(), "no media");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_on_one_device_stops_the_others_ringing() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let (mut alice, mut bob) = two_call_peers(&server).await;
    let mut phone = server.account("bob");
    phone.resource = "phone".into();
    let mut phone = Peer::start_with_calls(phone, "bob", test_call_settings(660.0))
        .await
        .expect("bob's second device");
    phone.online().await.expect("phone online");

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    bob.incoming_call().await;
    phone.incoming_call().await;
    phone
        .handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept on the phone");
    match bob.call_state(Duration::from_secs(10), is_ended).await {
        CallState::Ended(r) => assert!(r.remote, "stopped by the other device: {r:?}"),
        _ => unreachable!(),
    }
    alice
        .call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(10), |s| hears(s, 660.0))
        .await;
    assert!(
        hears(&at_alice, 660.0),
        "alice talks to the phone: {at_alice:?}"
    );
    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    phone.call_state(Duration::from_secs(10), is_ended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_off_hangs_up_first() {
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
    alice
        .call_state(Duration::from_secs(20), |s| *s == CallState::Active)
        .await;
    bob.handle.disconnect().await.expect("sign off");
    match alice.call_state(Duration::from_secs(10), is_ended).await {
        CallState::Ended(r) => {
            assert!(r.remote, "bob ended it: {r:?}");
            assert_eq!(r.condition.as_str(), "success");
        }
        _ => unreachable!(),
    }
}
