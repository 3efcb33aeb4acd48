//! Natter's session service: one per account, on tokio. It owns the XMPP connection
//! and handles roster, presence, 1:1 chat and history; the UI talks to it through a
//! [`SessionHandle`] and listens to [`AccountEvent`]s.

mod apply;
mod archive_link;
mod avatars;
mod blocking;
pub mod calls;
pub mod chat;
pub mod connection;
mod csi;
pub mod disco;
mod event;
mod handle;
pub mod keepalive;
pub mod link;
mod mam_sync;
mod mds;
mod presence;
mod roster;
pub mod secrets;
mod session;

pub use connection::{Backoff, CertificateProblem, ConnectError, ServerAddress};
pub use event::{
    AccountEvent, Availability, CallUpdate, ChatState, ConnectionState, Event, ResourcePresence,
};
pub use handle::{CallAction, SessionHandle, SubscriptionAction};
pub use keepalive::Keepalive;
pub use natter_store as store;
pub use secrets::PasswordStore;
pub use session::{start, SessionConfig};

/// Errors a command can end with, worded for the person who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the account is not connected")]
    NotConnected,
    #[error("the session has stopped")]
    Stopped,
    #[error("{0} is not a valid address")]
    InvalidAddress(String),
    #[error("the message is empty")]
    EmptyMessage,
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("there is no such call")]
    NoSuchCall,
    #[error("there is no such failed message")]
    NoSuchMessage,
    #[error("storage failed: {0}")]
    Store(String),
}

impl From<natter_store::StoreError> for SessionError {
    fn from(e: natter_store::StoreError) -> Self {
        SessionError::Store(e.to_string())
    }
}
