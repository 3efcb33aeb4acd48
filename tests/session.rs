//! The session service against a real Prosody (started per test by natter-testkit):
//! sign-in and its failures, 1:1 chat, roster and presence, and delivery across server
//! crashes and cut connections.

use std::time::Duration;

use natter_core::store::{Direction, MessageState};
use natter_core::{ConnectError, ConnectionState, Event, SubscriptionAction};
use natter_testkit::{init_tracing, proxy::Relay, Peer, Prosody};

const T: Duration = Duration::from_secs(20);

fn server(users: &[&str]) -> Prosody {
    init_tracing();
    let p = Prosody::start().expect("prosody starts");
    for u in users {
        p.register(u, &format!("{u}-pw")).expect("register");
    }
    p
}

async fn peer(p: &Prosody, user: &str) -> Peer {
    let mut peer = Peer::start(p.account(user), &format!("{user}-pw"))
        .await
        .expect("session starts");
    let jid = peer.online().await;
    assert!(jid.is_some(), "{user} signs in; prosody log:\n{}", p.log());
    peer
}

fn failed(e: &Event) -> Option<ConnectError> {
    match e {
        Event::Connection(ConnectionState::Failed(err)) => Some(err.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn login_ok_over_starttls_and_direct_tls() {
    let p = server(&["demo"]);
    let starttls = peer(&p, "demo").await;
    match starttls.seen.iter().rev().find_map(|e| match e {
        Event::Connection(ConnectionState::Online { jid, resumed }) => {
            Some((jid.clone(), *resumed))
        }
        _ => None,
    }) {
        Some((jid, resumed)) => {
            assert!(jid.starts_with("demo@localhost/"), "{jid}");
            assert!(!resumed);
        }
        None => panic!("no online event"),
    }
    starttls.handle.disconnect().await.expect("disconnect");

    let mut account = p.account("demo");
    account.port = Some(p.direct_tls_port);
    account.direct_tls = true;
    let mut direct = Peer::start(account, "demo-pw").await.unwrap();
    assert!(
        direct.online().await.is_some(),
        "direct TLS (XEP-0368) signs in"
    );
}

#[tokio::test]
async fn wrong_password_is_final() {
    let p = server(&["demo"]);
    // Through a relay that counts connections: one attempt, no reconnect loop.
    let relay = Relay::start(([127, 0, 0, 1], p.c2s_port).into())
        .await
        .unwrap();
    let mut account = p.account("demo");
    account.port = Some(relay.port);
    let mut peer = Peer::start(account, "not-the-password").await.unwrap();
    let ev = peer
        .wait_for(T, |e| failed(e).is_some())
        .await
        .expect("a final error");
    assert!(
        matches!(failed(&ev), Some(ConnectError::WrongPassword(ref j)) if j == "demo@localhost"),
        "{ev:?}"
    );
    assert!(failed(&ev).is_some_and(|e| e.is_final()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    peer.drain();
    let after = peer
        .seen
        .iter()
        .skip_while(|e| failed(e).is_none())
        .skip(1)
        .filter(|e| matches!(e, Event::Connection(_)))
        .count();
    assert_eq!(after, 0, "events after the final error: {:?}", peer.seen);
    assert_eq!(relay.accepted(), 1, "exactly one connection attempt");
}

#[tokio::test]
async fn untrusted_certificate_is_refused_with_the_reason_then_trusted_when_pinned() {
    let p = server(&["demo"]);
    let mut account = p.account("demo");
    account.extra_ca = None; // the harness CA is not in the system store
    let mut peer = Peer::start(account.clone(), "demo-pw").await.unwrap();
    let ev = peer
        .wait_for(T, |e| failed(e).is_some())
        .await
        .expect("final error");
    let problem = match failed(&ev) {
        Some(ConnectError::Certificate(problem)) => problem,
        other => panic!("expected a certificate error, got {other:?}"),
    };
    assert!(problem.reason.contains("authority"), "{problem:?}");
    assert!(ConnectError::Certificate(problem.clone())
        .to_string()
        .contains("not trusted"));
    // What the user is shown to decide: who issued it, for which names, its fingerprint.
    assert!(
        problem.names.iter().any(|n| n == "localhost"),
        "{problem:?}"
    );
    assert!(
        !problem.issuer.is_empty() && problem.issuer != problem.subject,
        "{problem:?}"
    );
    assert_eq!(problem.sha256.len(), 64, "{problem:?}");
    assert!(!problem.not_after.is_empty(), "{problem:?}");
    assert!(
        !p.log().contains("Authenticated as"),
        "no login over an untrusted link"
    );
    drop(peer);

    // A pin that is not this certificate changes nothing.
    account.pinned_cert = Some("00".repeat(32));
    let mut wrong = Peer::start(account.clone(), "demo-pw").await.unwrap();
    let ev = wrong
        .wait_for(T, |e| failed(e).is_some())
        .await
        .expect("final error");
    assert!(matches!(failed(&ev), Some(ConnectError::Certificate(_))));
    drop(wrong);

    // The user chose to trust exactly this certificate: the account signs in.
    account.pinned_cert = Some(problem.sha256.clone());
    let mut trusted = Peer::start(account, "demo-pw").await.unwrap();
    trusted
        .online()
        .await
        .expect("signed in with the pinned certificate");
}

#[tokio::test]
async fn certificate_for_another_name_is_refused() {
    let p = server(&["demo"]);
    // The server hosts othername.test but presents its localhost certificate.
    let mut account = p.account("demo");
    account.jid = "demo@othername.test".into();
    let mut peer = Peer::start(account, "demo-pw").await.unwrap();
    let ev = peer
        .wait_for(T, |e| failed(e).is_some())
        .await
        .expect("final error");
    match failed(&ev) {
        Some(ConnectError::Certificate(why)) => {
            assert!(why.reason.contains("othername.test"), "{why:?}")
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_domain_the_server_does_not_host_is_a_final_error() {
    let p = server(&["demo"]);
    let mut account = p.account("demo");
    account.jid = "demo@example.org".into();
    let mut peer = Peer::start(account, "demo-pw").await.unwrap();
    let ev = peer
        .wait_for(T, |e| failed(e).is_some())
        .await
        .expect("final error");
    assert_eq!(
        failed(&ev),
        Some(ConnectError::NotServed("example.org".into()))
    );
}

#[tokio::test]
async fn two_accounts_chat_both_ways_with_ids_stored() {
    let p = server(&["demo", "friend"]);
    let mut demo = peer(&p, "demo").await;
    let mut friend = peer(&p, "friend").await;

    let sent = demo
        .handle
        .send_message("friend@localhost", "Hello friend")
        .await
        .unwrap();
    assert_eq!(sent.direction, Direction::Outgoing);
    assert!(sent.origin_id.is_some());
    let got = friend
        .received("Hello friend", T)
        .await
        .expect("friend receives");
    assert_eq!(got.direction, Direction::Incoming);
    assert_eq!(got.peer, "demo@localhost");
    assert!(got.sender.starts_with("demo@localhost/"));
    assert_eq!(
        got.origin_id, sent.origin_id,
        "origin-id travels (XEP-0359)"
    );
    assert!(
        got.stanza_id.is_some(),
        "the server's stanza-id is recorded"
    );

    // demo's copy reaches "acked" (XEP-0198).
    let id = sent.id;
    demo.acked(id, T).await.expect("acknowledged by the server");

    friend
        .handle
        .send_message("demo@localhost", "Hi demo")
        .await
        .unwrap();
    demo.received("Hi demo", T).await.expect("demo receives");

    // Both stores hold both messages in one conversation, newest first.
    let page = demo
        .handle
        .history("friend@localhost", None, 10)
        .await
        .unwrap();
    let bodies: Vec<_> = page.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["Hi demo", "Hello friend"]);
    assert_eq!(page[1].state, MessageState::Acked);
    let page = friend
        .handle
        .history("demo@localhost", None, 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(page.iter().all(|m| m.origin_id.is_some()));
}

#[tokio::test]
async fn roster_subscription_and_presence() {
    let p = server(&["demo", "friend"]);
    let mut demo = peer(&p, "demo").await;
    let mut friend = peer(&p, "friend").await;

    demo.handle
        .add_contact(
            "friend@localhost",
            Some("Friend".into()),
            vec!["Pals".into()],
        )
        .await
        .expect("roster set");
    demo.wait_for(
        T,
        |e| matches!(e, Event::RosterItem(c) if c.jid == "friend@localhost"),
    )
    .await
    .expect("roster push");
    demo.handle
        .subscription("friend@localhost", SubscriptionAction::Request)
        .await
        .unwrap();
    friend
        .wait_for(
            T,
            |e| matches!(e, Event::SubscriptionRequest { from } if from == "demo@localhost"),
        )
        .await
        .expect("friend sees the request");
    friend
        .handle
        .subscription("demo@localhost", SubscriptionAction::Approve)
        .await
        .unwrap();
    demo.wait_for(T, |e| {
        matches!(e, Event::Presence { jid, presence: Some(_), .. } if jid == "friend@localhost")
    })
    .await
    .expect("friend's presence arrives");
    let resources = demo.handle.presences("friend@localhost").await.unwrap();
    assert_eq!(resources.len(), 1);

    let roster = demo.handle.roster().await.unwrap();
    let c = roster
        .iter()
        .find(|c| c.jid == "friend@localhost")
        .expect("in roster");
    assert_eq!(c.subscription, "to");
    assert_eq!(c.name.as_deref(), Some("Friend"));
    assert_eq!(c.groups, ["Pals"]);

    demo.handle
        .rename_contact("friend@localhost", "Best friend")
        .await
        .unwrap();
    demo.wait_for(
        T,
        |e| matches!(e, Event::RosterItem(c) if c.name.as_deref() == Some("Best friend")),
    )
    .await
    .expect("rename pushed");

    // Going offline is seen.
    friend.handle.disconnect().await.unwrap();
    demo.wait_for(
        T,
        |e| matches!(e, Event::Presence { jid, presence: None, .. } if jid == "friend@localhost"),
    )
    .await
    .expect("friend goes offline");

    demo.handle
        .remove_contact("friend@localhost")
        .await
        .unwrap();
    demo.wait_for(
        T,
        |e| matches!(e, Event::RosterRemoved { jid } if jid == "friend@localhost"),
    )
    .await
    .expect("removed");
    assert!(demo.handle.roster().await.unwrap().is_empty());
}

#[tokio::test]
async fn roster_push_from_another_account_is_ignored() {
    let p = server(&["demo", "mallory"]);
    let mut demo = peer(&p, "demo").await;
    let demo_full = demo.online().await.unwrap();

    // mallory speaks raw XMPP through the same connector, without a session on top.
    use futures::StreamExt;
    use natter_core::connection::{stanza_stream, ConnectConfig, ServerAddress};
    let (status, _status_rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = ConnectConfig {
        jid: "mallory@localhost".parse().unwrap(),
        resource: "evil".into(),
        password: "mallory-pw".into(),
        server: ServerAddress::Manual {
            host: "127.0.0.1".into(),
            port: p.c2s_port,
            direct_tls: false,
        },
        extra_ca: Some(p.ca_path()),
        pinned_cert: None,
        backoff: Default::default(),
        timeouts: Default::default(),
    };
    let mut mallory = stanza_stream(cfg, status, 16);
    loop {
        match tokio::time::timeout(T, mallory.next()).await {
            Ok(Some(tokio_xmpp::stanzastream::Event::Stream(
                tokio_xmpp::stanzastream::StreamEvent::Reset { .. },
            ))) => break,
            Ok(Some(_)) => continue,
            other => panic!("mallory could not sign in: {other:?}"),
        }
    }
    let push: tokio_xmpp::minidom::Element = format!(
        "<iq xmlns='jabber:client' type='set' id='push1' to='{demo_full}'>
           <query xmlns='jabber:iq:roster'><item jid='evil@localhost' subscription='both'/></query>
         </iq>"
    )
    .parse()
    .unwrap();
    let stanza = tokio_xmpp::Stanza::try_from(push).unwrap();
    let mut token = mallory.send(Box::new(stanza)).await;
    token
        .wait_for(tokio_xmpp::stanzastream::StanzaStage::Acked)
        .await;
    // Also a message pretending to be demo's own archive result.
    let fake: tokio_xmpp::minidom::Element = format!(
        "<message xmlns='jabber:client' to='{demo_full}'>
           <result xmlns='urn:xmpp:mam:2' queryid='x' id='fake'>
             <forwarded xmlns='urn:xmpp:forward:0'>
               <message xmlns='jabber:client' type='chat' from='boss@localhost/a' to='demo@localhost'>
                 <body>forged</body></message></forwarded></result></message>"
    )
    .parse()
    .unwrap();
    let stanza = tokio_xmpp::Stanza::try_from(fake).unwrap();
    let mut token = mallory.send(Box::new(stanza)).await;
    token
        .wait_for(tokio_xmpp::stanzastream::StanzaStage::Acked)
        .await;

    // A 200 KB body (under Prosody's stanza limit) is stored cut, not refused or crashed on.
    let huge: tokio_xmpp::minidom::Element = format!(
        "<message xmlns='jabber:client' type='chat' to='{demo_full}'><body>{}</body></message>",
        "é".repeat(100_000)
    )
    .parse()
    .unwrap();
    mallory
        .send(Box::new(tokio_xmpp::Stanza::try_from(huge).unwrap()))
        .await;

    // A real message after them proves demo processed the stream past the spoofed ones.
    let real: tokio_xmpp::minidom::Element = format!(
        "<message xmlns='jabber:client' type='chat' to='{demo_full}'><body>marker</body></message>"
    )
    .parse()
    .unwrap();
    mallory
        .send(Box::new(tokio_xmpp::Stanza::try_from(real).unwrap()))
        .await;
    demo.received("marker", T).await.expect("marker arrives");
    let from_mallory = demo
        .handle
        .history("mallory@localhost", None, 10)
        .await
        .unwrap();
    assert_eq!(from_mallory.len(), 2, "the huge message and the marker");
    assert_eq!(from_mallory[1].body.chars().count(), 64 * 1024);

    assert!(
        !demo.seen.iter().any(|e| matches!(e, Event::RosterItem(_))),
        "the spoofed push was applied: {:?}",
        demo.seen
    );
    assert!(demo.handle.roster().await.unwrap().is_empty());
    assert!(!demo
        .seen
        .iter()
        .any(|e| matches!(e, Event::Message(m) if m.body == "forged")));
    let history = demo
        .handle
        .history("boss@localhost", None, 10)
        .await
        .unwrap();
    assert!(history.is_empty());
    mallory.close().await;
}

#[tokio::test]
async fn server_crash_during_200_messages_loses_and_repeats_nothing() {
    let mut p = server(&["demo", "friend"]);
    let mut demo = peer(&p, "demo").await;
    let mut friend = peer(&p, "friend").await;

    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            demo.handle
                .send_message("friend@localhost", &format!("msg {i:03}"))
                .await
                .unwrap()
                .id,
        );
    }
    // Kill the server while the tail of the first hundred may still be unacknowledged.
    let last = *ids.last().unwrap();
    demo.wait_for(T, |e| matches!(e, Event::MessageState { id, state } if *id == last && *state >= MessageState::Sent))
        .await
        .expect("handed to the network");
    p.kill();
    // The second hundred is typed while the server is down.
    for i in 100..200 {
        ids.push(
            demo.handle
                .send_message("friend@localhost", &format!("msg {i:03}"))
                .await
                .unwrap()
                .id,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.restart().expect("prosody restarts");

    // Every message is acknowledged by the server in the end…
    for id in &ids {
        let id = *id;
        demo.acked(id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("message {id} acknowledged; log:\n{}", p.log()));
    }
    assert!(demo
        .store
        .outbox(demo.handle.account_id())
        .await
        .unwrap()
        .is_empty());

    // …and the friend holds each exactly once, in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = friend
            .store
            .message_count(friend.handle.account_id())
            .await
            .unwrap();
        if n >= 200 || tokio::time::Instant::now() > deadline {
            break;
        }
        friend.drain();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut page = friend
        .handle
        .history("demo@localhost", None, 1000)
        .await
        .unwrap();
    page.reverse();
    let bodies: Vec<_> = page.iter().map(|m| m.body.clone()).collect();
    let expected: Vec<_> = (0..200).map(|i| format!("msg {i:03}")).collect();
    if bodies != expected {
        for m in &page {
            eprintln!("{} {} {:?} {}", m.body, m.timestamp, m.stanza_id, m.id);
        }
    }
    assert_eq!(bodies, expected);
}

#[tokio::test]
async fn stream_management_resumes_after_a_cut_connection() {
    let p = server(&["demo", "friend"]);
    let relay = Relay::start(([127, 0, 0, 1], p.c2s_port).into())
        .await
        .unwrap();
    let mut account = p.account("demo");
    account.port = Some(relay.port);
    let mut demo = Peer::start(account, "demo-pw").await.unwrap();
    assert!(demo.online().await.is_some());
    let mut friend = peer(&p, "friend").await;

    let before = demo
        .handle
        .send_message("friend@localhost", "before the cut")
        .await
        .unwrap();
    let id = before.id;
    demo.acked(id, T).await.unwrap();
    relay.cut();
    // Sent while the connection is down, and a message to demo while it is away.
    demo.handle
        .send_message("friend@localhost", "during the cut")
        .await
        .unwrap();
    friend
        .handle
        .send_message("demo@localhost", "while you were away")
        .await
        .unwrap();

    demo.wait_for(T, |e| {
        matches!(
            e,
            Event::Connection(ConnectionState::Online { resumed: true, .. })
        )
    })
    .await
    .unwrap_or_else(|| panic!("resumed; events {:?}", demo.seen));
    assert!(relay.accepted() >= 2);
    friend
        .received("during the cut", T)
        .await
        .expect("sent during the cut arrives");
    demo.received("while you were away", T)
        .await
        .expect("received while away arrives");
    let page = friend
        .handle
        .history("demo@localhost", None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.iter().filter(|m| m.body == "during the cut").count(),
        1
    );
    let page = demo
        .handle
        .history("friend@localhost", None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .filter(|m| m.body == "while you were away")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_message_typed_offline_survives_closing_the_app() {
    let mut p = server(&["demo", "friend"]);
    let mut demo = peer(&p, "demo").await;
    p.kill();
    demo.wait_for(T, |e| {
        matches!(e, Event::Connection(ConnectionState::Reconnecting { .. }))
    })
    .await
    .expect("demo notices the server is gone");
    let typed = demo
        .handle
        .send_message("friend@localhost", "typed while offline")
        .await
        .unwrap();
    assert_eq!(typed.state, MessageState::Pending);

    // The app is closed and opened again before the server comes back.
    let mut demo = demo.restart().await.unwrap();
    let outbox = demo.store.outbox(demo.handle.account_id()).await.unwrap();
    assert_eq!(outbox.len(), 1, "the message waits in the outbox on disk");
    p.restart().expect("prosody restarts");

    let id = typed.id;
    demo.acked(id, Duration::from_secs(30))
        .await
        .expect("sent after the restart");
    let mut friend = peer(&p, "friend").await;
    friend
        .received("typed while offline", T)
        .await
        .expect("the friend gets it from the archive");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = friend
        .handle
        .history("demo@localhost", None, 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1, "exactly once");
    assert_eq!(page[0].origin_id, typed.origin_id);
}
