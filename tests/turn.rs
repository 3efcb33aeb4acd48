//! A call whose media can only go through a TURN relay: both Natter peers gather no
//! host candidates, learn the harness coturn and time-limited credentials from their
//! server (XEP-0215, Prosody's mod_turn_external), and must be heard through it. The
//! proof comes from outside Natter: the candidates the server saw being signalled, and
//! the relayed traffic coturn counted.

use std::time::Duration;

use natter_core::calls::{CallSettings, CallState, ContentStats};
use natter_core::{CallAction, CallUpdate, Event};
use natter_testkit::calls::{hears, is_ended};
use natter_testkit::{befriend, init_tracing, test_call_settings, Peer, Prosody};

/// Relay candidates only, with the servers the account's server announces.
fn relay_only(freq: f64) -> CallSettings {
    let mut s = test_call_settings(freq);
    s.transport.host_candidates = false;
    s.external_services = true;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_call_through_turn_relay_only() {
    init_tracing();
    let server = Prosody::start_with_turn().expect("prosody with coturn");
    let turn = server.turn().expect("coturn");
    for (user, pw) in [("alice", "alice"), ("bob", "bob")] {
        server.register(user, pw).expect("register");
    }
    let mut alice = Peer::start_with_calls(server.account("alice"), "alice", relay_only(440.0))
        .await
        .expect("alice");
    let mut bob = Peer::start_with_calls(server.account("bob"), "bob", relay_only(880.0))
        .await
        .expect("bob");
    let alice_jid = alice.online().await.expect("alice online");
    let bob_jid = bob.online().await.expect("bob online");
    // Sign-in asks for the services (XEP-0215) before the roster; making the two
    // contacts takes several round trips after that, so the answer is in by the call.
    befriend(&mut alice, &mut bob).await.expect("contacts");

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    assert_eq!(bob.incoming_call().await.0, sid);
    bob.handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    alice
        .call_state(Duration::from_secs(15), |s| *s == CallState::Active)
        .await;
    bob.call_state(Duration::from_secs(15), |s| *s == CallState::Active)
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

    // Let the call run for a second of audio each way, then note what each side's media
    // stack received (RTP and RTCP, after SRTP): all of it must have come through a relay.
    let enough = |s: &[ContentStats]| s.iter().any(|c| c.stats.packets_received >= 50);
    let at_bob = bob.media_until(&sid, Duration::from_secs(5), enough).await;
    let at_alice = alice
        .media_until(&sid, Duration::from_secs(5), enough)
        .await;
    let received = |s: &[ContentStats]| -> u64 {
        s.iter()
            .map(|c| c.stats.packets_received + c.stats.rtcp_received)
            .sum()
    };
    let (bob_received, alice_received) = (received(&at_bob), received(&at_alice));
    assert!(
        alice_received >= 50 && bob_received >= 50,
        "a second of audio each way: {at_alice:?} {at_bob:?}"
    );

    // What each side signalled, as the server passed it on: one relay candidate (one
    // content, one TURN server) on coturn's relay ports, and not one host (or
    // server-reflexive) address.
    let signalled = server.signalled_candidates();
    assert!(
        signalled.iter().all(|c| c.kind == "relay"),
        "only relay candidates may be signalled: {signalled:?}"
    );
    let relay_port = |jid: &str| -> u16 {
        let mine: Vec<_> = signalled.iter().filter(|c| c.from == jid).collect();
        match mine.as_slice() {
            [c] if c.ip == "127.0.0.1" && turn.is_relay_port(c.port) => c.port,
            _ => panic!("{jid} should signal one coturn relay: {signalled:?}"),
        }
    };
    let (alice_relay, bob_relay) = (relay_port(&alice_jid), relay_port(&bob_jid));
    // webrtc-ice gives a relay candidate's rel-addr as the unspecified address its TURN
    // socket is bound to; a real interface address there would leak what host
    // candidates hide.
    for c in &signalled {
        let hidden = c.rel_addr.as_deref().is_none_or(|a| {
            a.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified())
        });
        assert!(hidden, "a relay candidate reveals a local address: {c:?}");
    }

    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    for peer in [&mut alice, &mut bob] {
        peer.call_state(Duration::from_secs(10), is_ended).await;
    }

    // Hanging up closes the ICE agents, which release their allocations; coturn then
    // reports what each relay carried from the other side to its client. Each peer's
    // relay must have carried at least every packet that peer's media stack received.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let relays = loop {
        let relays = turn.relays();
        let done = [alice_relay, bob_relay].iter().all(|p| {
            relays
                .iter()
                .any(|r| r.port == *p && r.peer_usage.is_some())
        });
        if done || tokio::time::Instant::now() > deadline {
            break relays;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(relays.len(), 2, "one allocation per peer: {relays:?}");
    println!("relays {relays:?}; alice received {alice_received}, bob {bob_received}");
    for (who, port, got) in [
        ("alice", alice_relay, alice_received),
        ("bob", bob_relay, bob_received),
    ] {
        let usage = relays
            .iter()
            .find(|r| r.port == port)
            .and_then(|r| r.peer_usage)
            .unwrap_or_else(|| panic!("no usage for {who}'s relay {port}: {}", turn.log()));
        assert!(
            usage.received_packets >= got && usage.sent_packets >= 50,
            "{who}'s relay {port} carried {usage:?}, {who} received {got} media packets"
        );
    }
    for peer in [alice, bob] {
        let _ = peer.handle.disconnect().await;
    }
}

/// ICE restart (XEP-0176 §7.3): alice's network "changes"; she sends new credentials,
/// bob answers with his, both gather again and the call carries on over the new pair.
/// Evidence from the server's log: each side signalled a second set of candidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_keeps_the_call_going_on_new_candidates() {
    init_tracing();
    let server = Prosody::start_with_turn().expect("prosody + coturn");
    for u in ["alice", "bob"] {
        server.register(u, u).expect("register");
    }
    let settings = |freq| {
        let mut s = test_call_settings(freq);
        s.external_services = false;
        s
    };
    let mut alice = Peer::start_with_calls(server.account("alice"), "alice", settings(440.0))
        .await
        .expect("alice");
    let mut bob = Peer::start_with_calls(server.account("bob"), "bob", settings(880.0))
        .await
        .expect("bob");
    alice.online().await.expect("alice online");
    bob.online().await.expect("bob online");

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    assert_eq!(bob.incoming_call().await.0, sid, "bob rings");
    bob.handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    for p in [&mut alice, &mut bob] {
        p.call_state(Duration::from_secs(20), |s| *s == CallState::Active)
            .await;
    }
    let count = |who: &str| {
        server
            .signalled_candidates()
            .iter()
            .filter(|c| c.from.starts_with(who))
            .map(|c| c.port)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (alice_before, bob_before) = (count("alice@"), count("bob@"));
    assert!(!alice_before.is_empty() && !bob_before.is_empty());

    alice
        .handle
        .call_action(&sid, CallAction::RestartIce)
        .await
        .expect("restart");
    // New candidates on both sides (new sockets, new ports), and the tones keep coming.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (a, b) = (count("alice@"), count("bob@"));
        if a.len() > alice_before.len() && b.len() > bob_before.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new candidates: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = bob.handle.call_stats(&sid).await.expect("stats")[0]
        .stats
        .packets_received;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = bob.handle.call_stats(&sid).await.expect("stats");
    assert!(
        after[0].stats.packets_received > before + 50,
        "media flows after the restart"
    );
    assert!(
        after[0]
            .stats
            .peak_frequency_hz
            .is_some_and(|f| (f - 440.0).abs() < 25.0),
        "{after:?}"
    );
    assert!(
        !bob.seen.iter().chain(alice.seen.iter()).any(|e| matches!(
            e,
            Event::Call(CallUpdate::State {
                state: CallState::Ended(_),
                ..
            })
        )),
        "the call never ended"
    );
    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
}
