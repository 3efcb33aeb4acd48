//! natter-protocol: XML element types for calls and messaging that xmpp-parsers lacks.
//!
//! Plain Rust structures for the Jingle family of XEPs and their companions,
//! each converting from a [`minidom::Element`] with `TryFrom` (never
//! panicking on hostile input; unknown children and attributes are
//! ignored) and back into one with `From`.

mod error;
mod util;

pub mod extdisco;
pub mod hints;
pub mod jingle;
pub mod jingle_dtls;
pub mod jingle_grouping;
pub mod jingle_ice_udp;
pub mod jingle_rtp;
pub mod jingle_rtp_info;
pub mod jmi;
pub mod mds;
pub mod ns;
pub mod reply;
pub mod reporting;
pub mod retract;

#[cfg(test)]
mod test_util;

pub use error::ParseError;
