//! What the integration tests against Prosody share: a server with accounts, a signed-in
//! device, and a raw XMPP stream for sending what no honest client sends (`mallory`).

#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use natter_core::connection::{stanza_stream, ConnectConfig, ServerAddress};
use natter_testkit::{init_tracing, Peer, Prosody};
use tokio_xmpp::stanzastream::{StanzaStage, StanzaStream};

const T: Duration = Duration::from_secs(20);

/// A Prosody with `users` registered (password: `<user>-pw`).
pub fn server(users: &[&str]) -> Prosody {
    init_tracing();
    let p = Prosody::start().expect("prosody starts");
    for u in users {
        p.register(u, &format!("{u}-pw")).expect("register");
    }
    p
}

/// `user` signed in as `resource`.
pub async fn device(p: &Prosody, user: &str, resource: &str) -> Peer {
    let mut account = p.account(user);
    account.resource = resource.into();
    let mut peer = Peer::start(account, &format!("{user}-pw"))
        .await
        .expect("session starts");
    assert!(peer.online().await.is_some(), "{user}/{resource} signs in");
    peer
}

/// A raw stream for `user`, signed in, for sending what no honest client sends.
pub async fn raw(p: &Prosody, user: &str) -> StanzaStream {
    let (status, _status_rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = ConnectConfig {
        jid: format!("{user}@localhost").parse().unwrap(),
        resource: "raw".into(),
        password: format!("{user}-pw"),
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
    let mut s = stanza_stream(cfg, status, 16);
    loop {
        match tokio::time::timeout(T, s.next()).await {
            Ok(Some(tokio_xmpp::stanzastream::Event::Stream(
                tokio_xmpp::stanzastream::StreamEvent::Reset { .. },
            ))) => break,
            Ok(Some(_)) => continue,
            other => panic!("{user} could not sign in: {other:?}"),
        }
    }
    s
}

/// Sends one stanza on a raw stream and waits until the server acknowledged it.
pub async fn send_raw(s: &mut StanzaStream, xml: &str) {
    let el: tokio_xmpp::minidom::Element = xml.parse().expect("test XML parses");
    let stanza = tokio_xmpp::Stanza::try_from(el).expect("a stanza");
    let mut token = s.send(Box::new(stanza)).await;
    token.wait_for(StanzaStage::Acked).await;
}

/// Sends an IQ and waits for its result (panics on an error answer).
pub async fn iq_raw(s: &mut StanzaStream, xml: &str, id: &str) {
    send_raw(s, xml).await;
    loop {
        match tokio::time::timeout(T, s.next()).await {
            Ok(Some(tokio_xmpp::stanzastream::Event::Stanza(tokio_xmpp::Stanza::Iq(iq)))) => {
                let el = tokio_xmpp::minidom::Element::from(iq);
                if el.attr("id") == Some(id) {
                    assert_eq!(el.attr("type"), Some("result"), "{id}: {el:?}");
                    return;
                }
            }
            Ok(Some(_)) => continue,
            other => panic!("no answer to {id}: {other:?}"),
        }
    }
}
