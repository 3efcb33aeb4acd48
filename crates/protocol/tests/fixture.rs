//! The stanzas of one real call between Natter and the independent aiortc peer
//! (`tests/fixtures/call-natter-aiortc.log`): every XEP-0353 and Jingle payload in it
//! parses, survives a serialise → parse round trip, and says what the call did.

use minidom::Element;
use natter_protocol::jingle::{Action, Jingle};
use natter_protocol::jmi::JingleMessage;
use natter_protocol::ns;

const LOG: &str = include_str!("../../../tests/fixtures/call-natter-aiortc.log");

fn stanzas() -> Vec<(bool, Element)> {
    LOG.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (dir, xml) = l.split_once(' ').expect("direction prefix");
            // The log is from a client stream: stanzas are in jabber:client.
            let xml = xml
                .trim_start()
                .replacen(' ', " xmlns=\"jabber:client\" ", 1);
            let el: Element = xml.parse().expect("well-formed stanza");
            (dir == "sent", el)
        })
        .collect()
}

#[test]
fn every_call_payload_of_the_real_call_parses_and_round_trips() {
    let mut actions = Vec::new();
    let mut jmi = Vec::new();
    for (sent_by_peer, stanza) in stanzas() {
        for child in stanza.children() {
            if child.is("jingle", ns::JINGLE) {
                let j = Jingle::try_from(child.clone()).expect("jingle parses");
                let again = Jingle::try_from(Element::from(j.clone())).expect("reparses");
                assert_eq!(j, again);
                actions.push((sent_by_peer, j.action));
            } else if child.ns() == ns::JMI {
                let m = JingleMessage::try_from(child.clone()).expect("JMI parses");
                let again = JingleMessage::try_from(Element::from(m.clone())).expect("reparses");
                assert_eq!(m, again);
                jmi.push((sent_by_peer, m.element_name()));
            }
        }
    }
    assert_eq!(
        actions,
        vec![
            (false, Action::SessionInitiate),
            (true, Action::SessionAccept),
            (false, Action::SessionTerminate),
        ]
    );
    assert_eq!(jmi.first(), Some(&(false, "propose")));
    assert!(jmi.contains(&(true, "proceed")));
    assert!(jmi.contains(&(false, "finish")));
}

#[test]
fn natter_offers_what_the_xeps_and_other_clients_expect() {
    let initiate = stanzas()
        .into_iter()
        .flat_map(|(_, s)| s.children().cloned().collect::<Vec<_>>())
        .filter_map(|c| Jingle::try_from(c).ok())
        .find(|j| j.action == Action::SessionInitiate)
        .expect("a session-initiate");
    assert_eq!(initiate.contents.len(), 2);
    for c in &initiate.contents {
        let d = c.description.as_ref().expect("RTP description");
        assert!(d.rtcp_mux, "rtcp-mux always");
        let t = c.transport.as_ref().expect("ICE-UDP transport");
        let fp = t.fingerprint.as_ref().expect("DTLS fingerprint");
        assert_eq!(fp.hash, "sha-256");
        assert_eq!(fp.setup.map(|s| s.as_str()), Some("actpass"));
        assert!(t
            .candidates
            .iter()
            .all(|c| c.component == 1 && c.protocol == "udp"));
        let names: Vec<_> = d
            .payload_types
            .iter()
            .filter_map(|p| p.name.clone())
            .collect();
        match d.media.as_str() {
            "audio" => assert_eq!(names, ["opus"]),
            "video" => assert!(names.contains(&"VP8".to_owned())),
            other => panic!("unexpected media {other}"),
        }
    }
}
