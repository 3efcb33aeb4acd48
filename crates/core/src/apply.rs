//! The apply stage of the inbound pipeline: what a validated message does to messages
//! already stored (corrections, retractions, reactions, receipts, markers), and the
//! events that follow. Used for live messages, carbons and archive results alike; the
//! sender rules are in [`chat::classify`] and in the direction of each [`Reference`].

use natter_store::{Direction, Reference, Store};
use tokio_xmpp::parsers::chatstates::ChatState as XmppChatState;
use tokio_xmpp::parsers::jid::BareJid;

use crate::chat::{Action, Inbound};
use crate::event::{ChatState, Event};

pub(crate) fn chat_state(state: &XmppChatState) -> ChatState {
    match state {
        XmppChatState::Active => ChatState::Active,
        XmppChatState::Composing => ChatState::Composing,
        XmppChatState::Paused => ChatState::Paused,
        XmppChatState::Inactive => ChatState::Inactive,
        XmppChatState::Gone => ChatState::Gone,
    }
}

/// Applies `inbound.action` (if any) and returns the events to emit.
pub(crate) async fn apply(
    store: &Store,
    account_id: i64,
    own: &BareJid,
    inbound: &Inbound,
) -> Vec<Event> {
    let Some(action) = &inbound.action else {
        return Vec::new();
    };
    let peer = inbound.peer.to_string();
    tracing::debug!(%peer, direction = ?inbound.direction, ?action, "applying");
    let reference = |direction: Direction, id: &str| Reference {
        account_id,
        peer: peer.clone(),
        direction,
        id: id.to_owned(),
    };
    let result = match action {
        // Only the sender's own messages: the reference keeps the direction it came from.
        Action::Correct { id, body } => store
            .correct(reference(inbound.direction, id), body.clone())
            .await
            .map(|m| m.map(Event::MessageChanged).into_iter().collect()),
        Action::Retract { id } => store
            .retract(reference(inbound.direction, id))
            .await
            .map(|m| m.map(Event::MessageChanged).into_iter().collect()),
        Action::React { id, emojis } => {
            let sender = match inbound.direction {
                Direction::Incoming => peer.clone(),
                Direction::Outgoing => own.to_string(),
            };
            // Either side's message in this conversation; ours first (the common case).
            let mut out = Ok(None);
            for direction in [Direction::Outgoing, Direction::Incoming] {
                out = store
                    .set_reactions(reference(direction, id), sender.clone(), emojis.clone())
                    .await;
                if !matches!(out, Ok(None)) {
                    break;
                }
            }
            out.map(|m| m.map(Event::MessageChanged).into_iter().collect())
        }
        // A receipt or marker from the peer is about our messages; one our other device
        // sent is about the peer's.
        Action::Delivered { id } => match inbound.direction {
            Direction::Incoming => store
                .mark_delivered(reference(Direction::Outgoing, id))
                .await
                .map(state_events),
            Direction::Outgoing => Ok(Vec::new()),
        },
        Action::Displayed { id } => match inbound.direction {
            Direction::Incoming => store
                .mark_displayed(reference(Direction::Outgoing, id))
                .await
                .map(state_events),
            Direction::Outgoing => store
                .read_up_to(reference(Direction::Incoming, id))
                .await
                .map(|changed| {
                    changed
                        .map(|(_, unread)| Event::ConversationRead {
                            peer: peer.clone(),
                            unread,
                        })
                        .into_iter()
                        .collect()
                }),
        },
    };
    match result {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(error = %e, "cannot apply a message to the store");
            Vec::new()
        }
    }
}

fn state_events(changed: Vec<(i64, natter_store::MessageState)>) -> Vec<Event> {
    changed
        .into_iter()
        .map(|(id, state)| Event::MessageState { id, state })
        .collect()
}
