//! The UI's side of a session: `SessionHandle` sends a command and awaits its reply.

use natter_store::{Contact, ConversationSummary, HistoryCursor, Message};
use tokio::sync::{mpsc, oneshot};

use crate::event::ResourcePresence;
use crate::{Availability, SessionError};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, SessionError>>;

#[derive(Debug)]
pub(crate) enum Command {
    SendMessage {
        to: String,
        body: String,
        reply_to: Option<i64>,
        reply: Reply<Message>,
    },
    Correct {
        id: i64,
        body: String,
        reply: Reply<Message>,
    },
    Retract {
        id: i64,
        reply: Reply<Message>,
    },
    React {
        id: i64,
        emojis: Vec<String>,
        reply: Reply<Message>,
    },
    SendChatState {
        peer: String,
        state: crate::ChatState,
    },
    Search {
        query: String,
        limit: u32,
        reply: Reply<Vec<natter_store::SearchHit>>,
    },
    SetPresence {
        availability: Option<Availability>,
        status: Option<String>,
        priority: i8,
        reply: Reply<()>,
    },
    AddContact {
        jid: String,
        name: Option<String>,
        groups: Vec<String>,
        reply: Reply<()>,
    },
    RemoveContact {
        jid: String,
        reply: Reply<()>,
    },
    Subscription {
        jid: String,
        action: SubscriptionAction,
        reply: Reply<()>,
    },
    Roster {
        reply: Reply<Vec<Contact>>,
    },
    Presences {
        jid: String,
        reply: Reply<Vec<(String, ResourcePresence)>>,
    },
    History {
        peer: String,
        before: Option<HistoryCursor>,
        limit: u32,
        reply: Reply<Vec<Message>>,
    },
    FetchOlder {
        peer: String,
        limit: u32,
        reply: Reply<usize>,
    },
    HistoryAfter {
        peer: String,
        after: HistoryCursor,
        limit: u32,
        reply: Reply<Vec<Message>>,
    },
    HistoryAround {
        peer: String,
        message: i64,
        limit: u32,
        reply: Reply<Vec<Message>>,
    },
    MarkRead {
        peer: String,
        reply: Reply<()>,
    },
    Conversations {
        reply: Reply<Vec<ConversationSummary>>,
    },
    RetryMessage {
        id: i64,
        reply: Reply<()>,
    },
    Disconnect {
        reply: Reply<()>,
    },
    SetAvatar {
        data: Vec<u8>,
        mime: String,
        reply: Reply<std::path::PathBuf>,
    },
    Avatar {
        jid: String,
        reply: Reply<Option<std::path::PathBuf>>,
    },
    PlaceCall {
        to: String,
        video: bool,
        reply: Reply<String>,
    },
    CallAction {
        sid: String,
        action: CallAction,
        reply: Reply<()>,
    },
    CallStats {
        sid: String,
        reply: Reply<Vec<crate::calls::ContentStats>>,
    },
    Features {
        jid: String,
        reply: Reply<Vec<String>>,
    },
    SetClientActive {
        active: bool,
    },
    Block {
        jid: String,
        report_spam: bool,
        reply: Reply<()>,
    },
    Unblock {
        jid: String,
        reply: Reply<()>,
    },
    Blocklist {
        reply: Reply<Vec<String>>,
    },
}

/// What the user does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    Accept,
    /// Decline a ringing call.
    Reject,
    /// Cancel a call that has not been answered yet, or end a call.
    HangUp,
    /// Mute or unmute the microphone (the peer is told, XEP-0167 §7).
    Mute(bool),
    /// The network changed: find a new path without ending the call (ICE restart).
    RestartIce,
    /// Turn the camera on or off (without renegotiation).
    Camera(bool),
    /// Add video to an active audio call (XEP-0166 content-add); the outcome arrives
    /// as [`CallUpdate::VideoAdded`](crate::CallUpdate::VideoAdded) or
    /// [`CallUpdate::VideoFailed`](crate::CallUpdate::VideoFailed).
    AddVideo,
}

/// RFC 6121 subscription actions, in the words the UI shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionAction {
    /// Ask to see the contact's presence (`subscribe`).
    Request,
    /// Let the contact see ours (`subscribed`).
    Approve,
    /// Refuse a request, or take back an approval (`unsubscribed`).
    Deny,
    /// Stop seeing the contact's presence (`unsubscribe`).
    Cancel,
}

/// A handle on one account's session. Cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub(crate) account_id: i64,
    pub(crate) jid: String,
    pub(crate) commands: mpsc::Sender<Command>,
}

impl SessionHandle {
    pub fn account_id(&self) -> i64 {
        self.account_id
    }

    /// The account's bare JID.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| SessionError::Stopped)?;
        rx.await.map_err(|_| SessionError::Stopped)?
    }

    /// Stores the message (pending) and sends it as soon as the account is online.
    /// Returns the stored message: it is safe from this point on.
    pub async fn send_message(&self, to: &str, body: &str) -> Result<Message, SessionError> {
        let (to, body) = (to.to_owned(), body.to_owned());
        self.ask(|reply| Command::SendMessage {
            to,
            body,
            reply_to: None,
            reply,
        })
        .await
    }

    /// Sends `body` as a reply (XEP-0461, with a quote for other clients) to the stored
    /// message `id`, in its conversation.
    pub async fn reply_to(&self, id: i64, body: &str) -> Result<Message, SessionError> {
        let body = body.to_owned();
        self.ask(|reply| Command::SendMessage {
            to: String::new(),
            body,
            reply_to: Some(id),
            reply,
        })
        .await
    }

    /// Corrects our message `id` (XEP-0308); returns it with the new text.
    pub async fn correct_message(&self, id: i64, body: &str) -> Result<Message, SessionError> {
        let body = body.to_owned();
        self.ask(|reply| Command::Correct { id, body, reply }).await
    }

    /// Deletes our message `id` for everyone (XEP-0424); returns the tombstone.
    pub async fn retract_message(&self, id: i64) -> Result<Message, SessionError> {
        self.ask(|reply| Command::Retract { id, reply }).await
    }

    /// Our reactions to message `id` are now exactly `emojis` (XEP-0444).
    pub async fn react(&self, id: i64, emojis: Vec<String>) -> Result<Message, SessionError> {
        self.ask(|reply| Command::React { id, emojis, reply }).await
    }

    /// What `jid` supports (XEP-0030 features): a contact's full JID (from its caps,
    /// XEP-0115) or our server's domain. Empty while unknown.
    pub async fn features(&self, jid: &str) -> Result<Vec<String>, SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::Features { jid, reply }).await
    }

    /// Whether anyone is looking at us (XEP-0352): while not, the server may hold back
    /// presence updates. Kept across reconnections.
    pub fn set_client_active(&self, active: bool) {
        let _ = self.commands.try_send(Command::SetClientActive { active });
    }

    /// Blocks `jid` (XEP-0191), reporting it as spam (XEP-0377) when `report_spam`.
    pub async fn block(&self, jid: &str, report_spam: bool) -> Result<(), SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::Block {
            jid,
            report_spam,
            reply,
        })
        .await
    }

    pub async fn unblock(&self, jid: &str) -> Result<(), SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::Unblock { jid, reply }).await
    }

    /// The JIDs we block, as the server last said.
    pub async fn blocklist(&self) -> Result<Vec<String>, SessionError> {
        self.ask(|reply| Command::Blocklist { reply }).await
    }

    /// Tells `peer` what we are doing in the chat (XEP-0085); sent only while online.
    pub fn send_chat_state(&self, peer: &str, state: crate::ChatState) {
        let _ = self.commands.try_send(Command::SendChatState {
            peer: peer.to_owned(),
            state,
        });
    }

    /// Full-text search over this account's history, newest first.
    pub async fn search(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<Vec<natter_store::SearchHit>, SessionError> {
        let query = query.to_owned();
        self.ask(|reply| Command::Search {
            query,
            limit,
            reply,
        })
        .await
    }

    /// Our presence: `None` availability means going offline (unavailable).
    pub async fn set_presence(
        &self,
        availability: Option<Availability>,
        status: Option<String>,
        priority: i8,
    ) -> Result<(), SessionError> {
        self.ask(|reply| Command::SetPresence {
            availability,
            status,
            priority,
            reply,
        })
        .await
    }

    /// Adds or updates a roster item (RFC 6121 roster set).
    pub async fn add_contact(
        &self,
        jid: &str,
        name: Option<String>,
        groups: Vec<String>,
    ) -> Result<(), SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::AddContact {
            jid,
            name,
            groups,
            reply,
        })
        .await
    }

    /// Renames a contact (a roster set that keeps its groups).
    pub async fn rename_contact(&self, jid: &str, name: &str) -> Result<(), SessionError> {
        let groups = self
            .roster()
            .await?
            .into_iter()
            .find(|c| c.jid == jid)
            .map(|c| c.groups)
            .unwrap_or_default();
        self.add_contact(jid, Some(name.to_owned()), groups).await
    }

    pub async fn remove_contact(&self, jid: &str) -> Result<(), SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::RemoveContact { jid, reply })
            .await
    }

    pub async fn subscription(
        &self,
        jid: &str,
        action: SubscriptionAction,
    ) -> Result<(), SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::Subscription { jid, action, reply })
            .await
    }

    /// The roster as last stored.
    pub async fn roster(&self) -> Result<Vec<Contact>, SessionError> {
        self.ask(|reply| Command::Roster { reply }).await
    }

    /// The online resources of a contact.
    pub async fn presences(
        &self,
        jid: &str,
    ) -> Result<Vec<(String, ResourcePresence)>, SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::Presences { jid, reply }).await
    }

    /// A page of history with `peer`, newest first.
    pub async fn history(
        &self,
        peer: &str,
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<Message>, SessionError> {
        let peer = peer.to_owned();
        self.ask(|reply| Command::History {
            peer,
            before,
            limit,
            reply,
        })
        .await
    }

    /// Fetches up to `limit` messages with `peer` older than the stored ones from our
    /// archive (XEP-0313), while a fresh account's history is still coming; returns how
    /// many were stored (0 when everything is here already).
    pub async fn fetch_older(&self, peer: &str, limit: u32) -> Result<usize, SessionError> {
        let peer = peer.to_owned();
        self.ask(|reply| Command::FetchOlder { peer, limit, reply })
            .await
    }

    /// Up to `limit` messages with `peer` newer than `after`, oldest first.
    pub async fn history_after(
        &self,
        peer: &str,
        after: HistoryCursor,
        limit: u32,
    ) -> Result<Vec<Message>, SessionError> {
        let peer = peer.to_owned();
        self.ask(|reply| Command::HistoryAfter {
            peer,
            after,
            limit,
            reply,
        })
        .await
    }

    /// Message `message` in its context, oldest first: up to `limit` messages before
    /// it, itself, and up to `limit` after it. Empty when it is not in the conversation
    /// with `peer`.
    pub async fn history_around(
        &self,
        peer: &str,
        message: i64,
        limit: u32,
    ) -> Result<Vec<Message>, SessionError> {
        let peer = peer.to_owned();
        self.ask(|reply| Command::HistoryAround {
            peer,
            message,
            limit,
            reply,
        })
        .await
    }

    pub async fn mark_read(&self, peer: &str) -> Result<(), SessionError> {
        let peer = peer.to_owned();
        self.ask(|reply| Command::MarkRead { peer, reply }).await
    }

    /// Calls `to` (a bare JID) with audio, and video when `video`; returns the call's id.
    /// Progress arrives as [`Event::Call`](crate::Event::Call).
    /// Every conversation of this account with its newest message, most recent first.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, SessionError> {
        self.ask(|reply| Command::Conversations { reply }).await
    }

    /// Sends a failed outgoing message again (it goes back to pending, then out as soon as
    /// the account is online).
    pub async fn retry_message(&self, id: i64) -> Result<(), SessionError> {
        self.ask(|reply| Command::RetryMessage { id, reply }).await
    }

    pub async fn place_call(&self, to: &str, video: bool) -> Result<String, SessionError> {
        let to = to.to_owned();
        self.ask(|reply| Command::PlaceCall { to, video, reply })
            .await
    }

    /// Accept, reject, hang up, mute or turn the camera on/off in call `sid`.
    pub async fn call_action(&self, sid: &str, action: CallAction) -> Result<(), SessionError> {
        let sid = sid.to_owned();
        self.ask(|reply| Command::CallAction { sid, action, reply })
            .await
    }

    /// Media statistics of each content of an active call.
    pub async fn call_stats(
        &self,
        sid: &str,
    ) -> Result<Vec<crate::calls::ContentStats>, SessionError> {
        let sid = sid.to_owned();
        self.ask(|reply| Command::CallStats { sid, reply }).await
    }

    /// Publishes our avatar (XEP-0084): `data` is the picture in `mime` (PNG, JPEG, WebP
    /// or GIF, at most 1 MiB). Returns the cached file; an [`Event::Avatar`](crate::Event)
    /// follows.
    pub async fn set_avatar(
        &self,
        data: Vec<u8>,
        mime: &str,
    ) -> Result<std::path::PathBuf, SessionError> {
        let mime = mime.to_owned();
        self.ask(|reply| Command::SetAvatar { data, mime, reply })
            .await
    }

    /// The cached avatar of `jid` (a bare JID, or ours), if we know one.
    pub async fn avatar(&self, jid: &str) -> Result<Option<std::path::PathBuf>, SessionError> {
        let jid = jid.to_owned();
        self.ask(|reply| Command::Avatar { jid, reply }).await
    }

    /// Closes the stream cleanly and ends the session.
    pub async fn disconnect(&self) -> Result<(), SessionError> {
        self.ask(|reply| Command::Disconnect { reply }).await
    }
}
