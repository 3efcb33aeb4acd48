//! Services around the chat, against a real Prosody: service discovery and entity
//! capabilities (verified, cached, poisoning refused), the XEP-0199 keep-alive noticing
//! a dead connection, client state indication (XEP-0352), and blocking (XEP-0191) with
//! spam reports (XEP-0377). Forgeries come from a raw XMPP stream (`mallory`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use natter_core::{Availability, ConnectionState, Event, Keepalive};
use natter_testkit::proxy::Relay;
use natter_testkit::{befriend, Peer};
use tokio_xmpp::stanzastream::StanzaStream;
use tokio_xmpp::Stanza;

mod common;

use common::{device, raw, send_raw, server};

const T: Duration = Duration::from_secs(20);
const JINGLE: &str = "urn:xmpp:jingle:1";

/// The next IQ `s` receives within `timeout`.
async fn next_iq(s: &mut StanzaStream, timeout: Duration) -> Option<tokio_xmpp::parsers::iq::Iq> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, s.next()).await.ok()?? {
            tokio_xmpp::stanzastream::Event::Stanza(Stanza::Iq(iq)) => return Some(iq),
            _ => continue,
        }
    }
}

fn features_of<'a>(e: &'a Event, jid: &str, resource: &str) -> Option<&'a Vec<String>> {
    match e {
        Event::Features {
            jid: j,
            resource: r,
            features,
        } if j == jid && r == resource => Some(features),
        _ => None,
    }
}

#[tokio::test]
async fn capabilities_are_learned_verified_and_cached() {
    let p = server(&["demo", "friend", "mallory"]);
    let mut demo = device(&p, "demo", "laptop").await;
    let mut friend = device(&p, "friend", "natter").await;

    // Our server, discovered once per connection.
    let ev = demo
        .wait_for(T, |e| features_of(e, "localhost", "").is_some())
        .await
        .expect("server features");
    let server = features_of(&ev, "localhost", "").unwrap();
    assert!(
        server.iter().any(|f| f == "urn:xmpp:blocking"),
        "{server:?}"
    );
    assert!(server.iter().any(|f| f == "urn:xmpp:carbons:2"));
    assert_eq!(&demo.handle.features("localhost").await.unwrap(), server);

    // A contact's resource: its caps are asked for once, verified and kept.
    befriend(&mut demo, &mut friend).await.unwrap();
    let ev = demo
        .wait_for(T, |e| {
            features_of(e, "friend@localhost", "natter").is_some()
        })
        .await
        .expect("the friend's features");
    assert!(features_of(&ev, "friend@localhost", "natter")
        .unwrap()
        .iter()
        .any(|f| f == JINGLE));
    let via_handle = demo
        .handle
        .features("friend@localhost/natter")
        .await
        .unwrap();
    assert!(via_handle.iter().any(|f| f == JINGLE), "{via_handle:?}");
    let cached = demo.store.caps().await.unwrap();
    let ver = natter_core::disco::own_ver().to_owned();
    assert!(cached
        .iter()
        .any(|(v, f)| *v == ver && f.iter().any(|f| f == JINGLE)));

    // After a restart the cache answers at once, even before the friend is asked again.
    let mut demo = demo.restart().await.unwrap();
    assert!(demo.online().await.is_some());
    demo.wait_for(T, |e| {
        features_of(e, "friend@localhost", "natter").is_some()
    })
    .await
    .expect("features from the cache");

    // Mallory announces a `ver` and answers the question with features that do not
    // hash to it: nothing is cached and nothing is believed.
    let demo_jid = "demo@localhost/laptop";
    let mut mallory = raw(&p, "mallory").await;
    let fake_ver = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    send_raw(
        &mut mallory,
        &format!(
            "<presence xmlns='jabber:client' to='{demo_jid}'>
               <c xmlns='http://jabber.org/protocol/caps' hash='sha-1'
                  node='https://evil.example' ver='{fake_ver}'/></presence>"
        ),
    )
    .await;
    let iq = next_iq(&mut mallory, T).await.expect("demo asks mallory");
    let tokio_xmpp::parsers::iq::Iq::Get {
        from, id, payload, ..
    } = iq
    else {
        panic!("expected a disco#info get, got {iq:?}");
    };
    assert_eq!(
        payload.attr("node"),
        Some(format!("https://evil.example#{fake_ver}").as_str())
    );
    send_raw(
        &mut mallory,
        &format!(
            "<iq xmlns='jabber:client' type='result' id='{id}' to='{}'>
               <query xmlns='http://jabber.org/protocol/disco#info'
                      node='https://evil.example#{fake_ver}'>
                 <identity category='client' type='pc' name='Evil'/>
                 <feature var='urn:xmpp:jingle:1'/><feature var='urn:example:evil'/>
               </query></iq>",
            from.map(|f| f.to_string()).unwrap_or_default()
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    demo.drain();
    assert!(
        !demo
            .seen
            .iter()
            .any(|e| features_of(e, "mallory@localhost", "raw").is_some()),
        "a poisoned answer is not believed"
    );
    assert!(demo
        .handle
        .features("mallory@localhost/raw")
        .await
        .unwrap()
        .is_empty());
    assert!(!demo
        .store
        .caps()
        .await
        .unwrap()
        .iter()
        .any(|(v, _)| v == fake_ver));

    // Our own answer for our node#ver hashes to the ver we announce.
    send_raw(
        &mut mallory,
        &format!(
            "<iq xmlns='jabber:client' type='get' id='q1' to='{demo_jid}'>
               <query xmlns='http://jabber.org/protocol/disco#info'
                      node='https://natter.im#{ver}'/></iq>"
        ),
    )
    .await;
    let answer = next_iq(&mut mallory, T).await.expect("demo answers");
    let tokio_xmpp::parsers::iq::Iq::Result {
        payload: Some(info),
        ..
    } = answer
    else {
        panic!("expected a disco#info result, got {answer:?}");
    };
    let info = tokio_xmpp::parsers::disco::DiscoInfoResult::try_from(info).unwrap();
    assert_eq!(
        natter_core::disco::ver_of(&info, tokio_xmpp::parsers::hashes::Algo::Sha_1).as_deref(),
        Some(ver.as_str())
    );
}

#[tokio::test]
async fn keepalive_notices_a_dead_connection_and_reconnects() {
    let p = server(&["demo", "friend"]);
    let relay = Relay::start(([127, 0, 0, 1], p.c2s_port).into())
        .await
        .unwrap();
    let mut account = p.account("demo");
    account.port = Some(relay.port);
    let keepalive = Keepalive {
        idle: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
    };
    let mut demo = Peer::start_with_keepalive(account, "demo-pw", keepalive)
        .await
        .unwrap();
    assert!(demo.online().await.is_some());
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut demo, &mut friend).await.unwrap();

    // Idle but alive: pings are answered and the connection stays.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(relay.accepted(), 1, "answered pings keep the connection");

    // The path dies silently: no FIN, no RST. The keep-alive notices within
    // idle + timeout (and a tick), and the session reconnects on its own.
    demo.drain();
    demo.seen.clear();
    let frozen = Instant::now();
    relay.freeze();
    demo.wait_for(T, |e| {
        matches!(e, Event::Connection(ConnectionState::Reconnecting { .. }))
    })
    .await
    .expect("the dead connection is noticed");
    let noticed = frozen.elapsed();
    assert!(
        noticed < Duration::from_secs(8),
        "noticed after {noticed:?}"
    );
    demo.wait_for(T, |e| {
        matches!(e, Event::Connection(ConnectionState::Online { .. }))
    })
    .await
    .expect("back online");
    assert!(relay.accepted() >= 2, "a new connection was made");

    // And it works: a message goes through.
    demo.handle
        .send_message("friend@localhost", "after the dead path")
        .await
        .unwrap();
    friend
        .received("after the dead path", T)
        .await
        .expect("delivered after reconnecting");
}

fn away_presence(e: &Event) -> bool {
    matches!(e, Event::Presence { jid, presence: Some(pr), .. }
        if jid == "friend@localhost" && pr.availability == Availability::Away)
}

#[tokio::test]
async fn client_state_indication_holds_presence_not_messages() {
    let p = server(&["demo", "friend"]);
    let mut demo = device(&p, "demo", "laptop").await;
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut demo, &mut friend).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Inactive: the server holds the friend's presence change back.
    demo.handle.set_client_active(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    demo.drain();
    demo.seen.clear();
    friend
        .handle
        .set_presence(Some(Availability::Away), Some("lunch".into()), 0)
        .await
        .unwrap();
    assert!(
        demo.wait_for(Duration::from_secs(3), away_presence)
            .await
            .is_none(),
        "presence is held while inactive"
    );

    // Active again: the held presence arrives.
    demo.handle.set_client_active(true);
    demo.wait_for(Duration::from_secs(5), away_presence)
        .await
        .expect("the held presence arrives once active");

    // Inactive again: a chat message is not held.
    demo.handle.set_client_active(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = Instant::now();
    friend
        .handle
        .send_message("demo@localhost", "urgent")
        .await
        .unwrap();
    demo.received("urgent", Duration::from_secs(3))
        .await
        .expect("messages are delivered at once while inactive");
    assert!(sent.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn blocking_with_report_pushes_and_forged_pushes() {
    let p = server(&["demo", "mallory"]);
    let mut laptop = device(&p, "demo", "laptop").await;
    let mut phone = device(&p, "demo", "phone").await;
    let mallory = device(&p, "mallory", "natter").await;
    laptop
        .wait_for(T, |e| matches!(e, Event::Blocklist(l) if l.is_empty()))
        .await
        .expect("the (empty) blocklist at sign-in");

    // A "push" from anyone but our own account is ignored.
    let mut raw_mallory = raw(&p, "mallory").await;
    send_raw(
        &mut raw_mallory,
        "<iq xmlns='jabber:client' type='set' id='forged' to='demo@localhost/phone'>
           <block xmlns='urn:xmpp:blocking'><item jid='friend@localhost'/></block></iq>",
    )
    .await;
    let answer = next_iq(&mut raw_mallory, T).await.expect("an answer");
    assert!(
        !matches!(answer, tokio_xmpp::parsers::iq::Iq::Result { .. }),
        "a forged push is not acknowledged: {answer:?}"
    );
    assert!(
        phone.handle.blocklist().await.unwrap().is_empty(),
        "a forged push changes nothing"
    );

    mallory
        .handle
        .send_message("demo@localhost", "buy now 1")
        .await
        .unwrap();
    laptop
        .received("buy now 1", T)
        .await
        .expect("not blocked yet");

    // Block and report: the server takes it, logs the report, pushes the change to
    // the other device; mallory's messages stop.
    laptop
        .handle
        .block("mallory@localhost", true)
        .await
        .expect("the server accepts the block with its report");
    assert_eq!(
        laptop.handle.blocklist().await.unwrap(),
        vec!["mallory@localhost".to_string()]
    );
    phone
        .wait_for(
            T,
            |e| matches!(e, Event::Blocklist(l) if l == &["mallory@localhost"]),
        )
        .await
        .expect("the push reaches the other device");
    let log = p.log();
    assert!(
        log.contains("natter-report from=demo@localhost/laptop jid=mallory@localhost reason=urn:xmpp:reporting:spam"),
        "the report reached the server:\n{log}"
    );
    mallory
        .handle
        .send_message("demo@localhost", "buy now 2")
        .await
        .unwrap();
    assert!(
        laptop
            .received("buy now 2", Duration::from_secs(3))
            .await
            .is_none(),
        "blocked"
    );

    // Unblock: messages arrive again, and the other device learns it.
    phone.drain();
    phone.seen.clear();
    laptop.handle.unblock("mallory@localhost").await.unwrap();
    phone
        .wait_for(T, |e| matches!(e, Event::Blocklist(l) if l.is_empty()))
        .await
        .expect("the unblock push");
    mallory
        .handle
        .send_message("demo@localhost", "buy now 3")
        .await
        .unwrap();
    laptop.received("buy now 3", T).await.expect("unblocked");
}
