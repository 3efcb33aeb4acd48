//! One-to-one chat messages (RFC 6121 `type='chat'`) with XEP-0359 ids, and the inbound
//! message pipeline: validate the sender → read ids → (the store deduplicates) → store →
//! emit. Later features add stages here, in order.

use natter_store::{Direction, MessageState, NewMessage, Placement};
use tokio_xmpp::parsers::delay::Delay;
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::stanza_id::{OriginId, StanzaId};

/// Bodies longer than this are cut: a hostile peer must not make us store megabytes.
pub const MAX_BODY_CHARS: usize = 64 * 1024;

/// Why an inbound message was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not a chat message with a body (headline, groupchat, error, chat state only…).
    NotChat,
    /// No sender, or a sender we do not accept in this path.
    BadSender(String),
}

/// Builds an outgoing chat message; its XEP-0359 origin-id doubles as the stanza id.
pub fn outgoing(to: &BareJid, body: &str, origin_id: &str) -> Message {
    let mut msg = Message::chat(Some(Jid::from(to.clone())))
        .with_body(Lang::default(), body.to_owned())
        .with_payload(OriginId {
            id: origin_id.to_owned(),
        });
    msg.id = Some(tokio_xmpp::parsers::message::Id(origin_id.to_owned()));
    msg
}

/// A fresh origin-id: 128 random bits, hex.
pub fn new_origin_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

fn body_of(msg: &Message) -> Option<String> {
    let (_, body) = msg.get_best_body_cloned(vec![])?;
    if body.chars().count() > MAX_BODY_CHARS {
        tracing::warn!("cutting an over-long message body");
        return Some(body.chars().take(MAX_BODY_CHARS).collect());
    }
    Some(body)
}

/// The archive id a message carries, trusted only when our own server stamped it
/// (XEP-0359 §3: `by` must be the archive's JID, here our own bare JID).
fn archive_id(msg: &Message, archive: &BareJid) -> Option<String> {
    msg.payloads
        .iter()
        .filter(|p| p.is("stanza-id", tokio_xmpp::parsers::ns::SID))
        .filter_map(|p| StanzaId::try_from(p.clone()).ok())
        .find(|sid| sid.by.resource().is_none() && sid.by.to_bare() == *archive)
        .map(|sid| sid.id)
}

fn origin_id(msg: &Message) -> Option<String> {
    msg.payloads
        .iter()
        .find(|p| p.is("origin-id", tokio_xmpp::parsers::ns::SID))
        .and_then(|p| OriginId::try_from(p.clone()).ok())
        .map(|o| o.id)
        .filter(|id| !id.is_empty() && id.len() <= 256)
}

/// XEP-0203 delay stamp (offline delivery), else `now`.
fn timestamp(msg: &Message, now_ms: i64) -> i64 {
    msg.payloads
        .iter()
        .find(|p| p.is("delay", tokio_xmpp::parsers::ns::DELAY))
        .and_then(|p| Delay::try_from(p.clone()).ok())
        .map(|d| d.stamp.0.timestamp_millis())
        .filter(|&t| t <= now_ms)
        .unwrap_or(now_ms)
}

/// The first check of every path: a chat (or normal) message, with a sender.
fn chat_sender(msg: &Message) -> Result<&Jid, Rejected> {
    if !matches!(msg.type_, MessageType::Chat | MessageType::Normal) {
        return Err(Rejected::NotChat);
    }
    msg.from
        .as_ref()
        .ok_or_else(|| Rejected::BadSender("no sender".into()))
}

/// The validate and read stages for a live message addressed to us.
pub fn inbound(
    msg: &Message,
    account_id: i64,
    own: &BareJid,
    now_ms: i64,
) -> Result<NewMessage, Rejected> {
    let from = chat_sender(msg)?;
    let peer = from.to_bare();
    if &peer == own {
        // Our own other devices speak to us through carbons (XEP-0280), handled there.
        return Err(Rejected::BadSender(format!("{from} is our own account")));
    }
    if peer.node().is_none() {
        return Err(Rejected::BadSender(format!(
            "{from} is a server, not a contact"
        )));
    }
    let body = body_of(msg).ok_or(Rejected::NotChat)?;
    Ok(NewMessage {
        account_id,
        peer: peer.to_string(),
        direction: Direction::Incoming,
        sender: from.to_string(),
        body,
        timestamp: timestamp(msg, now_ms),
        state: MessageState::Received,
        origin_id: origin_id(msg),
        stanza_id: archive_id(msg, own),
        placement: Placement::Append,
        reply_to: None,
    })
}

/// A message found in our own archive (XEP-0313): either direction.
pub fn archived(
    msg: &Message,
    archive_id: String,
    stamp_ms: i64,
    account_id: i64,
    own: &BareJid,
    placement: Placement,
) -> Result<NewMessage, Rejected> {
    let from = chat_sender(msg)?;
    let (direction, peer) = if &from.to_bare() == own {
        let to = msg
            .to
            .as_ref()
            .ok_or_else(|| Rejected::BadSender("no recipient".into()))?;
        (Direction::Outgoing, to.to_bare())
    } else {
        (Direction::Incoming, from.to_bare())
    };
    if &peer == own || peer.node().is_none() {
        return Err(Rejected::BadSender(peer.to_string()));
    }
    let body = body_of(msg).ok_or(Rejected::NotChat)?;
    Ok(NewMessage {
        account_id,
        peer: peer.to_string(),
        direction,
        sender: from.to_string(),
        body,
        timestamp: stamp_ms,
        state: if direction == Direction::Outgoing {
            MessageState::Acked
        } else {
            MessageState::Received
        },
        origin_id: origin_id(msg),
        stanza_id: Some(archive_id),
        placement,
        reply_to: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::minidom::Element;

    fn own() -> BareJid {
        BareJid::new("demo@localhost").unwrap()
    }

    fn parse(xml: &str) -> Message {
        let el: Element = xml.parse().unwrap();
        Message::try_from(el).unwrap()
    }

    #[test]
    fn reads_ids_body_and_delay() {
        let msg = parse(
            "<message xmlns='jabber:client' type='chat' from='friend@localhost/phone' to='demo@localhost'>
               <body>Hello</body>
               <origin-id xmlns='urn:xmpp:sid:0' id='o-1'/>
               <stanza-id xmlns='urn:xmpp:sid:0' id='spoofed' by='friend@localhost'/>
               <stanza-id xmlns='urn:xmpp:sid:0' id='arch-1' by='demo@localhost'/>
               <delay xmlns='urn:xmpp:delay' stamp='2024-01-02T03:04:05Z'/>
             </message>",
        );
        let m = inbound(&msg, 7, &own(), 1_900_000_000_000).unwrap();
        assert_eq!(m.peer, "friend@localhost");
        assert_eq!(m.sender, "friend@localhost/phone");
        assert_eq!(m.body, "Hello");
        assert_eq!(m.origin_id.as_deref(), Some("o-1"));
        assert_eq!(
            m.stanza_id.as_deref(),
            Some("arch-1"),
            "only our server's id is trusted"
        );
        assert_eq!(m.timestamp, 1_704_164_645_000);
        assert_eq!(m.account_id, 7);
    }

    #[test]
    fn rejects_spoofed_and_non_chat() {
        let own_device = parse(
            "<message xmlns='jabber:client' type='chat' from='demo@localhost/other'><body>x</body></message>",
        );
        assert!(matches!(
            inbound(&own_device, 1, &own(), 0),
            Err(Rejected::BadSender(_))
        ));
        let server = parse(
            "<message xmlns='jabber:client' type='chat' from='localhost'><body>x</body></message>",
        );
        assert!(matches!(
            inbound(&server, 1, &own(), 0),
            Err(Rejected::BadSender(_))
        ));
        let nofrom = parse("<message xmlns='jabber:client' type='chat'><body>x</body></message>");
        assert!(matches!(
            inbound(&nofrom, 1, &own(), 0),
            Err(Rejected::BadSender(_))
        ));
        let headline = parse(
            "<message xmlns='jabber:client' type='headline' from='a@b'><body>x</body></message>",
        );
        assert_eq!(inbound(&headline, 1, &own(), 0), Err(Rejected::NotChat));
        let nobody = parse("<message xmlns='jabber:client' type='chat' from='a@b'/>");
        assert_eq!(inbound(&nobody, 1, &own(), 0), Err(Rejected::NotChat));
    }

    #[test]
    fn cuts_huge_bodies_and_future_stamps() {
        let big = "x".repeat(MAX_BODY_CHARS + 10);
        let msg = parse(&format!(
            "<message xmlns='jabber:client' type='chat' from='a@b/c'><body>{big}</body>
             <delay xmlns='urn:xmpp:delay' stamp='2999-01-01T00:00:00Z'/></message>"
        ));
        let m = inbound(&msg, 1, &own(), 5_000).unwrap();
        assert_eq!(m.body.chars().count(), MAX_BODY_CHARS);
        assert_eq!(
            m.timestamp, 5_000,
            "a stamp from the future is not believed"
        );
    }

    #[test]
    fn outgoing_round_trips_through_inbound() {
        let to = BareJid::new("friend@localhost").unwrap();
        let mut msg = outgoing(&to, "hi there", "abc");
        msg.from = Some(Jid::new("demo@localhost/natter").unwrap());
        let el = Element::from(msg);
        let back = Message::try_from(el).unwrap();
        let m = archived(&back, "A1".into(), 10, 1, &own(), Placement::Append).unwrap();
        assert_eq!(m.direction, Direction::Outgoing);
        assert_eq!(m.peer, "friend@localhost");
        assert_eq!(m.origin_id.as_deref(), Some("abc"));
        assert_eq!(m.body, "hi there");
        assert_eq!(new_origin_id().len(), 32);
    }
}
