//! All calls of one account: routes XEP-0353 messages and Jingle IQs to the call they
//! belong to, and turns away what does not belong to any (a Jingle IQ for a known
//! session from anyone but the peer is answered as an unknown session: no hijacking).

use std::collections::HashMap;

use natter_protocol::jingle::{Action, Jingle};
use natter_protocol::jmi::JingleMessage;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::call::{bare, CallConfig, CallDirection, CallInput, CallOutput, CallTask};
use crate::negotiation::MediaKind;

/// What the account's session must act on.
#[derive(Debug)]
pub enum CallEvent {
    /// Someone calls us; the call rings until accepted, rejected or retracted.
    Incoming {
        sid: String,
        from: String,
        media: Vec<MediaKind>,
    },
    Call {
        sid: String,
        output: CallOutput,
    },
}

/// Why a Jingle IQ was not taken (answered with an error by the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JingleIqError {
    /// `<item-not-found/>` + `<unknown-session/>` (XEP-0166 §7.2).
    UnknownSession,
}

struct Entry {
    input: mpsc::UnboundedSender<CallInput>,
    peer_bare: String,
    /// The full JID the session runs with, once known (proceed / propose).
    peer_full: Option<String>,
    direction: CallDirection,
}

pub struct CallManager {
    own_jid: String,
    config: CallConfig,
    calls: HashMap<String, Entry>,
    events: mpsc::UnboundedSender<CallEvent>,
}

impl std::fmt::Debug for CallManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallManager")
            .field("own_jid", &self.own_jid)
            .field("calls", &self.calls.len())
            .finish()
    }
}

fn new_sid() -> String {
    (0..16)
        .map(|_| {
            let n = rand::random_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect()
}

impl CallManager {
    pub fn new(config: CallConfig) -> (Self, mpsc::UnboundedReceiver<CallEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            CallManager {
                own_jid: String::new(),
                config,
                calls: HashMap::new(),
                events,
            },
            rx,
        )
    }

    /// What this installation can encode and decode, for calls from now on.
    pub fn set_capabilities(&mut self, caps: crate::Capabilities) {
        self.config.caps = caps;
    }

    /// STUN/TURN servers for calls placed or answered from now on (XEP-0215).
    pub fn set_ice_servers(&mut self, servers: Vec<crate::IceServer>) {
        self.config.transport.servers = servers;
    }

    /// Our full JID on the current stream.
    pub fn set_own_jid(&mut self, jid: String) {
        self.own_jid = jid;
    }

    fn prune(&mut self) {
        self.calls.retain(|_, e| !e.input.is_closed());
    }

    pub fn active_calls(&mut self) -> usize {
        self.prune();
        self.calls.len()
    }

    fn spawn(
        &mut self,
        sid: String,
        peer: String,
        direction: CallDirection,
        media: Vec<MediaKind>,
    ) {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let task = CallTask::new(
            sid.clone(),
            self.own_jid.clone(),
            peer.clone(),
            direction,
            media,
            self.config.clone(),
            out_tx,
        );
        let events = self.events.clone();
        let tag = sid.clone();
        tokio::spawn(async move {
            while let Some(output) = out_rx.recv().await {
                let _ = events.send(CallEvent::Call {
                    sid: tag.clone(),
                    output,
                });
            }
        });
        tokio::spawn(task.run(in_rx));
        self.calls.insert(
            sid,
            Entry {
                input: in_tx,
                peer_bare: bare(&peer).to_owned(),
                peer_full: (direction == CallDirection::Incoming).then_some(peer),
                direction,
            },
        );
    }

    /// Calls `peer` (a bare JID) with the given media; returns the session id.
    pub fn place_call(&mut self, peer: &str, media: Vec<MediaKind>) -> String {
        self.prune();
        let sid = new_sid();
        self.spawn(
            sid.clone(),
            bare(peer).to_owned(),
            CallDirection::Outgoing,
            media,
        );
        sid
    }

    /// A user action (accept, reject, hang up, mute) for call `sid`.
    pub fn command(&mut self, sid: &str, input: CallInput) -> bool {
        self.prune();
        match self.calls.get(sid) {
            Some(e) => e.input.send(input).is_ok(),
            None => false,
        }
    }

    /// A XEP-0353 message from `from` (a full JID).
    pub fn on_message(&mut self, from: &str, message: JingleMessage) {
        self.prune();
        let own_bare = bare(&self.own_jid).to_owned();
        let from_bare = bare(from);
        if let JingleMessage::Propose { id, descriptions } = &message {
            if from_bare == own_bare || !from.contains('/') || self.calls.contains_key(id) {
                debug!(%from, %id, "propose ignored (own device, bare sender or known id)");
                return;
            }
            let media: Vec<MediaKind> = descriptions
                .iter()
                .filter_map(|d| MediaKind::parse(&d.media))
                .collect();
            if !media.contains(&MediaKind::Audio) && !media.contains(&MediaKind::Video) {
                debug!(%from, "propose without audio or video ignored");
                return;
            }
            self.spawn(
                id.clone(),
                from.to_owned(),
                CallDirection::Incoming,
                media.clone(),
            );
            let _ = self.events.send(CallEvent::Incoming {
                sid: id.clone(),
                from: from.to_owned(),
                media,
            });
            return;
        }
        let id = message_id(&message).to_owned();
        let Some(entry) = self.calls.get_mut(&id) else {
            debug!(%from, %id, "JMI message for no known call");
            return;
        };
        let from_peer = from_bare == entry.peer_bare;
        let from_own = from_bare == own_bare;
        if !from_peer && !from_own {
            warn!(%from, %id, "JMI message from a stranger to the call, dropped");
            return;
        }
        if let JingleMessage::Proceed { .. } = message {
            if entry.direction == CallDirection::Outgoing
                && from_peer
                && from.contains('/')
                && entry.peer_full.is_none()
            {
                entry.peer_full = Some(from.to_owned());
            } else {
                debug!(%from, %id, "a second proceed (or from the wrong side) ignored");
                return;
            }
        }
        let _ = entry.input.send(CallInput::Jmi {
            from: from.to_owned(),
            message,
        });
    }

    /// A Jingle IQ set from `from`; `Ok` means acknowledge it with a result.
    pub fn on_jingle(&mut self, from: &str, jingle: Jingle) -> Result<(), JingleIqError> {
        self.prune();
        let Some(entry) = self.calls.get(&jingle.sid) else {
            return Err(JingleIqError::UnknownSession);
        };
        if entry.peer_full.as_deref() != Some(from) {
            warn!(%from, sid = %jingle.sid, action = %jingle.action, "Jingle IQ from someone other than the peer");
            return Err(JingleIqError::UnknownSession);
        }
        let _ = entry.input.send(CallInput::Jingle {
            from: from.to_owned(),
            jingle,
        });
        Ok(())
    }

    /// An IQ we sent for `sid` failed.
    pub fn iq_failed(&mut self, sid: &str, action: Action, error: String) {
        self.command(sid, CallInput::IqFailed { action, error });
    }

    /// Ends every call (signing off).
    pub fn hang_up_all(&mut self) {
        for e in self.calls.values() {
            let _ = e.input.send(CallInput::HangUp);
        }
    }
}

fn message_id(m: &JingleMessage) -> &str {
    match m {
        JingleMessage::Propose { id, .. }
        | JingleMessage::Ringing { id }
        | JingleMessage::Proceed { id }
        | JingleMessage::Accept { id }
        | JingleMessage::Reject { id, .. }
        | JingleMessage::Retract { id, .. }
        | JingleMessage::Finish { id, .. } => id,
    }
}
