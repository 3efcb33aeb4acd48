//! One-to-one chat messages (RFC 6121 `type='chat'`) with XEP-0359 ids, and the inbound
//! message pipeline: validate the sender → read ids → (the store deduplicates) → store →
//! emit. Later features add stages here, in order.

use natter_store::{Direction, MessageState, NewMessage, Placement};
use tokio_xmpp::parsers::chatstates::ChatState;
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
        })
        .with_payload(tokio_xmpp::parsers::receipts::Request)
        .with_payload(tokio_xmpp::parsers::displayed_markers::Markable)
        .with_payload(ChatState::Active);
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

/// Where an inbound message came from; each path has its own sender rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Straight from a contact's device.
    Live,
    /// A XEP-0280 carbon (already unwrapped; the wrapper came from our own bare JID):
    /// `sent` when one of our other devices sent it.
    Carbon { sent: bool },
    /// A result of our own archive (XEP-0313) with its archive id and stamp.
    Archive,
}

/// What a message does to another message (XEP-0308, 0424, 0444, 0184, 0333).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The sender replaces the text of its message `id`.
    Correct { id: String, body: String },
    /// The sender deletes its message `id` for everyone.
    Retract { id: String },
    /// The sender now reacts to message `id` with exactly these emojis.
    React { id: String, emojis: Vec<String> },
    /// The recipient's device has message `id` (receipt or `received` marker).
    Delivered { id: String },
    /// The recipient has displayed message `id` (and everything before it).
    Displayed { id: String },
}

/// One inbound message, validated and read: what to store, what to apply, what to
/// answer. `direction` says who sent it: `Incoming` from `peer`, `Outgoing` from one of
/// our devices to `peer`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub peer: BareJid,
    pub direction: Direction,
    /// A message to store (`None` for corrections, retractions, reactions, receipts,
    /// markers and chat states).
    pub message: Option<NewMessage>,
    pub action: Option<Action>,
    /// XEP-0085 chat state of the sender.
    pub chat_state: Option<ChatState>,
    /// The sender asks for a XEP-0184 receipt of this id.
    pub receipt_request: Option<String>,
    /// The sender wants XEP-0333 markers for this id.
    pub markable: Option<String>,
}

/// The id other messages use to point at this one: its origin-id (XEP-0359) or, for
/// clients that send none, its `id` attribute.
fn reference_id(msg: &Message) -> Option<String> {
    origin_id(msg).or_else(|| {
        msg.id
            .as_ref()
            .map(|i| i.0.clone())
            .filter(|id| !id.is_empty() && id.len() <= 256)
    })
}

fn bounded(id: &str) -> Option<String> {
    (!id.is_empty() && id.len() <= 256).then(|| id.to_owned())
}

fn read_action(msg: &Message, body: Option<&str>) -> Option<Action> {
    use tokio_xmpp::parsers::ns as pns;
    for p in &msg.payloads {
        if p.is("replace", pns::MESSAGE_CORRECT) {
            let id = bounded(p.attr("id")?)?;
            return Some(Action::Correct {
                id,
                body: body.unwrap_or_default().to_owned(),
            });
        }
        if p.is("reactions", pns::REACTIONS) {
            let id = bounded(p.attr("id")?)?;
            let emojis = p
                .children()
                .filter(|c| c.is("reaction", pns::REACTIONS))
                .map(|c| c.text())
                .take(natter_store::MAX_REACTIONS_PER_SENDER * 2)
                .collect();
            return Some(Action::React { id, emojis });
        }
        if p.is("received", pns::RECEIPTS) || p.is("received", natter_protocol::ns::MARKERS) {
            return Some(Action::Delivered {
                id: bounded(p.attr("id")?)?,
            });
        }
        if p.is("displayed", natter_protocol::ns::MARKERS)
            || p.is("acknowledged", natter_protocol::ns::MARKERS)
        {
            return Some(Action::Displayed {
                id: bounded(p.attr("id")?)?,
            });
        }
    }
    natter_protocol::retract::retracted_id(&msg.payloads).map(|id| Action::Retract { id })
}

fn read_chat_state(msg: &Message) -> Option<ChatState> {
    msg.payloads
        .iter()
        .find(|p| p.ns() == tokio_xmpp::parsers::ns::CHATSTATES)
        .and_then(|p| ChatState::try_from(p.clone()).ok())
}

/// The validate and read stages for a chat message, for every path. `archive` is the
/// archive id and stamp of an archive result.
pub fn classify(
    msg: &Message,
    account_id: i64,
    own: &BareJid,
    now_ms: i64,
    path: Path,
    archive: Option<(String, i64)>,
) -> Result<Inbound, Rejected> {
    let from = chat_sender(msg)?;
    let from_us = &from.to_bare() == own;
    let (direction, peer) = match (path, from_us) {
        // Our own other devices speak to us through carbons, handled there.
        (Path::Live, true) => {
            return Err(Rejected::BadSender(format!("{from} is our own account")))
        }
        (Path::Live, false) | (Path::Carbon { sent: false }, false) => {
            (Direction::Incoming, from.to_bare())
        }
        (Path::Carbon { sent: true }, true) | (Path::Archive, true) => {
            let to = msg
                .to
                .as_ref()
                .ok_or_else(|| Rejected::BadSender("no recipient".into()))?;
            (Direction::Outgoing, to.to_bare())
        }
        (Path::Archive, false) => (Direction::Incoming, from.to_bare()),
        (Path::Carbon { sent: true }, false) => {
            return Err(Rejected::BadSender(format!(
                "a sent carbon from {from}, not from us"
            )))
        }
        (Path::Carbon { sent: false }, true) => {
            return Err(Rejected::BadSender(format!(
                "a received carbon from ourselves ({from})"
            )))
        }
    };
    if &peer == own {
        return Err(Rejected::BadSender(format!("{peer} is our own account")));
    }
    if peer.node().is_none() {
        return Err(Rejected::BadSender(format!(
            "{peer} is a server, not a contact"
        )));
    }
    let body = body_of(msg);
    let action = read_action(msg, body.as_deref());
    let chat_state = read_chat_state(msg);
    let id = reference_id(msg);
    let (stanza_id, timestamp) = match archive {
        Some((id, stamp)) => (Some(id), stamp.min(now_ms)),
        None => (archive_id(msg, own), timestamp(msg, now_ms)),
    };
    // Fallbacks for clients without the feature are not part of the message.
    let reply = natter_protocol::reply::Reply::from_payloads(&msg.payloads);
    let message = match (&action, body) {
        (None, Some(body)) => {
            let body = if reply.is_some() {
                natter_protocol::reply::strip_fallback(
                    &body,
                    &msg.payloads,
                    natter_protocol::ns::REPLY,
                )
            } else {
                body
            };
            Some(NewMessage {
                account_id,
                peer: peer.to_string(),
                direction,
                sender: from.to_string(),
                body,
                timestamp,
                state: match direction {
                    Direction::Outgoing => MessageState::Acked,
                    Direction::Incoming => MessageState::Received,
                },
                origin_id: id.clone(),
                stanza_id,
                placement: Placement::Append,
                reply_to: reply.map(|r| r.id),
            })
        }
        _ => None,
    };
    if message.is_none() && action.is_none() && chat_state.is_none() {
        return Err(Rejected::NotChat);
    }
    let wants = |name: &str, ns: &str| msg.payloads.iter().any(|p| p.is(name, ns));
    let receipt_request =
        if message.is_some() && wants("request", tokio_xmpp::parsers::ns::RECEIPTS) {
            msg.id.as_ref().and_then(|i| bounded(&i.0))
        } else {
            None
        };
    let markable = if message.is_some() && wants("markable", natter_protocol::ns::MARKERS) {
        id
    } else {
        None
    };
    Ok(Inbound {
        peer,
        direction,
        message,
        action,
        chat_state,
        receipt_request,
        markable,
    })
}

/// XEP-0280: the message inside a carbon, and whether it is a `sent` one. `Ok(None)`
/// when `msg` is not a carbon. A carbon whose wrapper does not come from our own bare
/// JID is refused (CVE-2017-5589: anyone could otherwise put words in our mouth).
pub fn unwrap_carbon(msg: &Message, own: &BareJid) -> Result<Option<(Message, bool)>, Rejected> {
    use tokio_xmpp::parsers::ns as pns;
    let Some((wrapper, sent)) = msg.payloads.iter().find_map(|p| {
        if p.is("received", pns::CARBONS) {
            Some((p, false))
        } else if p.is("sent", pns::CARBONS) {
            Some((p, true))
        } else {
            None
        }
    }) else {
        return Ok(None);
    };
    match &msg.from {
        Some(j) if j.resource().is_none() && j.to_bare() == *own => {}
        other => {
            return Err(Rejected::BadSender(format!(
                "a carbon from {other:?}, not from our own account"
            )))
        }
    }
    let inner = wrapper
        .get_child("forwarded", pns::FORWARD)
        .and_then(|f| f.get_child("message", pns::DEFAULT_NS))
        .cloned()
        .and_then(|m| Message::try_from(m).ok())
        .ok_or(Rejected::NotChat)?;
    Ok(Some((inner, sent)))
}

/// The body of an outgoing chat message as a stanza: origin-id (= stanza id), receipt
/// request, markable, active chat state; a reply carries XEP-0461 and a quote fallback.
pub fn outgoing_entry(to: &BareJid, entry: &natter_store::OutboxEntry) -> Message {
    let mut body = entry.body.clone();
    let mut extra = Vec::new();
    if let Some(id) = &entry.reply_to {
        let (to_jid, quoted) = match &entry.quote {
            Some(q) if q.direction == Direction::Incoming => {
                (Some(q.sender.clone()), q.body.clone())
            }
            Some(q) => (None, q.body.clone()),
            None => (None, String::new()),
        };
        let (prefix, fallback) = natter_protocol::reply::quote_fallback(&quoted);
        body = format!("{prefix}{body}");
        extra.push(fallback);
        extra.push(
            natter_protocol::reply::Reply {
                to: to_jid,
                id: id.clone(),
            }
            .into(),
        );
    }
    let mut msg = outgoing(to, &body, &entry.origin_id);
    msg.payloads.extend(extra);
    msg
}

/// A correction (XEP-0308) of our message `original`, as a new message.
pub fn correction(to: &BareJid, body: &str, original: &str) -> Message {
    let mut msg = Message::chat(Some(Jid::from(to.clone())))
        .with_body(Lang::default(), body.to_owned())
        .with_payload(tokio_xmpp::parsers::message_correct::Replace {
            id: tokio_xmpp::parsers::message::Id(original.to_owned()),
        });
    let id = new_origin_id();
    msg.payloads.push(OriginId { id: id.clone() }.into());
    msg.id = Some(tokio_xmpp::parsers::message::Id(id));
    msg
}

/// A body-less chat message carrying `payloads` (retractions, reactions, markers,
/// receipts, chat states), with an origin-id.
pub fn signal(to: &Jid, payloads: Vec<tokio_xmpp::minidom::Element>) -> Message {
    let mut msg = Message::chat(Some(to.clone()));
    let id = new_origin_id();
    msg.payloads.push(OriginId { id: id.clone() }.into());
    msg.payloads.extend(payloads);
    msg.id = Some(tokio_xmpp::parsers::message::Id(id));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::minidom::Element;

    fn own() -> BareJid {
        BareJid::new("demo@localhost").unwrap()
    }

    fn inbound(msg: &Message, acc: i64, own: &BareJid, now: i64) -> Result<NewMessage, Rejected> {
        classify(msg, acc, own, now, Path::Live, None)
            .and_then(|i| i.message.ok_or(Rejected::NotChat))
    }

    fn archived(
        msg: &Message,
        id: String,
        stamp: i64,
        acc: i64,
        own: &BareJid,
        _placement: Placement,
    ) -> Result<NewMessage, Rejected> {
        classify(msg, acc, own, i64::MAX, Path::Archive, Some((id, stamp)))
            .and_then(|i| i.message.ok_or(Rejected::NotChat))
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
