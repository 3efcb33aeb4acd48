//! What a session tells the UI. Events carry ids and small values; anything large
//! (history pages) is asked for through the [`SessionHandle`](crate::SessionHandle).

use std::time::Duration;

use natter_store::{Contact, Message, MessageState};

use crate::connection::ConnectError;

/// An event from one account's session.
#[derive(Debug, Clone)]
pub struct AccountEvent {
    pub account_id: i64,
    pub event: Event,
}

#[derive(Debug, Clone)]
pub enum Event {
    Connection(ConnectionState),
    /// The whole roster (after login or a full roster result).
    Roster(Vec<Contact>),
    /// A contact was added or changed by a roster push.
    RosterItem(Contact),
    /// A contact was removed by a roster push.
    RosterRemoved {
        jid: String,
    },
    /// A contact's resource changed presence; `None` means it went offline.
    Presence {
        jid: String,
        resource: String,
        presence: Option<ResourcePresence>,
    },
    /// Someone asks to see our presence (RFC 6121 §3.1).
    SubscriptionRequest {
        from: String,
    },
    /// A message was stored (incoming, or outgoing from this device).
    Message(Message),
    /// Messages stored from our archive (XEP-0313), one page at a time. `news`: they
    /// came while we were offline (a catch-up); otherwise they are older history (a
    /// fresh account's backfill, or a page fetched for a conversation scrolled up).
    ArchivePage {
        messages: Vec<Message>,
        news: bool,
    },
    /// A stored message changed: corrected, retracted, or its reactions changed.
    MessageChanged(Message),
    /// A contact's chat state (typing…) in the chat with us.
    ChatState {
        peer: String,
        state: ChatState,
    },
    /// We read a conversation on another device (a `displayed` marker it sent):
    /// `unread` messages are left.
    ConversationRead {
        peer: String,
        unread: i64,
    },
    /// An outgoing message moved along pending → sent → acked → delivered → read (or
    /// failed).
    MessageState {
        id: i64,
        state: MessageState,
    },
    /// Fetching history from our archive (XEP-0313): `stored` new messages so far;
    /// `done` once it is all here (or it stopped).
    HistorySync {
        stored: usize,
        done: bool,
    },
    /// A burst of answers to the server's queries has been taken by the server (a
    /// PEP service asking for our caps on behalf of every contact once our presence
    /// carries them, XEP-0163 §4.3): the stanzas kept until then for a resumption are
    /// freed. A moment to give memory back, like the end of a sync.
    Settled,
    /// A contact's (or our own) avatar changed: the verified picture in the cache, or
    /// `None` when it was removed (XEP-0084, XEP-0153).
    Avatar {
        jid: String,
        path: Option<std::path::PathBuf>,
    },
    /// A call rang, changed state or ended.
    Call(CallUpdate),
    /// What an entity supports (XEP-0030 features), once known: a contact's resource
    /// (from its XEP-0115 caps) or, with an empty `resource`, our server (`jid` = its
    /// domain).
    Features {
        jid: String,
        resource: String,
        features: Vec<String>,
    },
    /// The JIDs we block (XEP-0191), after sign-in and after every change.
    Blocklist(Vec<String>),
}

/// What happened to a call (`sid` is its XEP-0353/Jingle session id).
#[derive(Debug, Clone, PartialEq)]
pub enum CallUpdate {
    /// `from` (a bare JID) calls us; `video` when the proposal includes video.
    Incoming {
        sid: String,
        from: String,
        video: bool,
    },
    State {
        sid: String,
        state: natter_jingle::CallState,
    },
    /// The peer muted or unmuted its microphone.
    RemoteMuted { sid: String, muted: bool },
    /// Video was added to the call (by either side) and plays.
    VideoAdded { sid: String },
    /// Adding video failed (the peer rejected it, or it could not connect or play) or
    /// the peer removed it; the call goes on without it.
    VideoFailed { sid: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    /// Signed in; `resumed` when XEP-0198 resumed the previous session without loss.
    Online {
        jid: String,
        resumed: bool,
    },
    /// The connection was lost; Natter is reconnecting (the last error, and when).
    Reconnecting {
        error: Option<ConnectError>,
        retry_in: Option<Duration>,
    },
    /// A final error: Natter will not retry until the user acts (wrong password…).
    Failed(ConnectError),
    Offline,
}

/// RFC 6121 availability, in the user's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Availability {
    #[default]
    Available,
    Chat,
    Away,
    ExtendedAway,
    DoNotDisturb,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePresence {
    pub availability: Availability,
    pub status: Option<String>,
    pub priority: i8,
}

/// XEP-0085: what a contact is doing in the chat with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    /// Paying attention (or just sent a message).
    Active,
    /// Typing.
    Composing,
    /// Was typing, stopped.
    Paused,
    /// Not paying attention.
    Inactive,
    /// Left the chat.
    Gone,
}
