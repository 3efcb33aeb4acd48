//! Read positions shared by our devices (XEP-0490 Message Displayed Synchronization).
//!
//! Reading a chat publishes the archive id of its newest message in our account's
//! private `urn:xmpp:mds:displayed:0` node. Positions from our other devices arrive as
//! PEP notifications (from our own bare JID only) and, after each archive catch-up, as
//! the node's items; each marks its conversation read up to that message. Unlike chat
//! markers this works for conversations with people who are not contacts, and for
//! devices that were offline when the chat was read.

use natter_protocol::mds::{self, Displayed};
use natter_store::{Direction, Reference, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::parsers::jid::BareJid;

use crate::event::{AccountEvent, Event};
use crate::session::{Internal, IqPayloadKind, IQ_TIMEOUT};

/// Marks conversations read up to the positions our devices published; returns the
/// events for the conversations whose unread count changed.
pub(crate) async fn apply(
    store: &Store,
    account_id: i64,
    own: &BareJid,
    positions: Vec<Displayed>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for d in positions {
        // One-to-one positions name our own archive's ids; a room's would be the room's.
        if d.by != own.as_str() {
            tracing::debug!(peer = %d.peer, by = %d.by, "read position in another archive skipped");
            continue;
        }
        let peer = match d.peer.parse::<BareJid>() {
            Ok(p) if p.node().is_some() && p != *own => p.to_string(),
            _ => {
                tracing::debug!(peer = %d.peer, "read position for no conversation skipped");
                continue;
            }
        };
        let r = Reference {
            account_id,
            peer: peer.clone(),
            direction: Direction::Incoming,
            id: d.stanza_id,
        };
        match store.read_up_to(r).await {
            Ok(Some((_, unread))) => events.push(Event::ConversationRead { peer, unread }),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "read position not stored"),
        }
    }
    events
}

/// Fetches every read position of our account and applies them (after an archive
/// catch-up, so that the messages they name are stored).
pub(crate) async fn sync(
    store: &Store,
    account_id: i64,
    own: &BareJid,
    internal: &mpsc::UnboundedSender<Internal>,
    events: &mpsc::UnboundedSender<AccountEvent>,
) {
    let (reply, answer) = oneshot::channel();
    if internal
        .send(Internal::SendIq {
            to: None,
            payload: IqPayloadKind::Get(mds::request_all()),
            reply,
        })
        .is_err()
    {
        return;
    }
    let positions = match tokio::time::timeout(IQ_TIMEOUT, answer).await {
        Ok(Ok(Ok(Some(el)))) => mds::from_result(&el),
        // No node yet (item-not-found): nobody has published a position.
        Ok(Ok(Err(e))) => {
            tracing::debug!(error = %e, "no read positions");
            return;
        }
        _ => return,
    };
    tracing::debug!(positions = positions.len(), "read positions fetched");
    for event in apply(store, account_id, own, positions).await {
        let _ = events.send(AccountEvent { account_id, event });
    }
}
