//! natter-jingle: Jingle RTP sessions (XEP-0166/0167/0176/0320/0353) — signalling state,
//! ICE through webrtc-ice, DTLS-SRTP through `dtls` and webrtc-srtp. GTK-free and
//! GStreamer-free: plain RTP/RTCP packets go in and out of a [`transport`] as bytes, and the
//! session that owns the XMPP stream sends and receives the stanzas a call asks for.

pub mod call;
pub mod dtls_srtp;
pub mod manager;
pub mod negotiation;
pub mod transport;

pub use call::{
    CallConfig, CallDirection, CallInput, CallOutput, CallState, ContentMedia, EndReason,
};
pub use dtls_srtp::{DtlsRole, LocalCertificate};
pub use manager::{CallEvent, CallManager, JingleIqError};
pub use negotiation::{Capabilities, CodecName, MediaKind, Negotiated};
pub use transport::{IceServer, IceTransport, RtpSender, TransportConfig, TransportEvent};

/// Why a transport could not carry media, in words that can end a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("ICE: {0}")]
    Ice(String),
    #[error("DTLS: {0}")]
    Dtls(String),
    #[error("the peer's DTLS certificate does not match the fingerprint it signalled")]
    FingerprintMismatch,
    #[error("{0} timed out")]
    Timeout(&'static str),
}
