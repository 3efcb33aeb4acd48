//! XEP-0167: Jingle RTP Sessions — informational messages
//!
//! The `urn:xmpp:jingle:apps:rtp:info:1` payloads carried by a Jingle
//! `session-info` action.

use minidom::Element;

use crate::jingle::Creator;
use crate::ns;
use crate::util::{opt_parse, opt_string, wrong, BuilderExt};
use crate::ParseError;

/// One informational payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtpInfo {
    /// `<active/>`: participating again after hold or mute.
    Active,
    /// `<hold/>`: not listening to the other party for now.
    Hold,
    /// `<unhold/>`: end of hold.
    Unhold,
    /// `<mute/>`: not sending media; `name` restricts it to one content.
    Mute {
        /// The creator of the muted content (required by the XEP, tolerated if absent).
        creator: Option<Creator>,
        /// The muted content; all contents when absent.
        name: Option<String>,
    },
    /// `<unmute/>`: end of mute.
    Unmute {
        /// The creator of the unmuted content.
        creator: Option<Creator>,
        /// The unmuted content; all contents when absent.
        name: Option<String>,
    },
    /// `<ringing/>`: the device rings.
    Ringing,
}

const EXPECTED: &str = "active|hold|unhold|mute|unmute|ringing";

impl TryFrom<Element> for RtpInfo {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        if !el.has_ns(ns::JINGLE_RTP_INFO) {
            return Err(wrong(&el, EXPECTED, ns::JINGLE_RTP_INFO));
        }
        Ok(match el.name() {
            "active" => RtpInfo::Active,
            "hold" => RtpInfo::Hold,
            "unhold" => RtpInfo::Unhold,
            "ringing" => RtpInfo::Ringing,
            "mute" => RtpInfo::Mute {
                creator: opt_parse(&el, "mute", "creator")?,
                name: opt_string(&el, "name"),
            },
            "unmute" => RtpInfo::Unmute {
                creator: opt_parse(&el, "unmute", "creator")?,
                name: opt_string(&el, "name"),
            },
            _ => return Err(wrong(&el, EXPECTED, ns::JINGLE_RTP_INFO)),
        })
    }
}

impl From<RtpInfo> for Element {
    fn from(info: RtpInfo) -> Element {
        let (element, creator, name) = match info {
            RtpInfo::Active => ("active", None, None),
            RtpInfo::Hold => ("hold", None, None),
            RtpInfo::Unhold => ("unhold", None, None),
            RtpInfo::Ringing => ("ringing", None, None),
            RtpInfo::Mute { creator, name } => ("mute", creator, name),
            RtpInfo::Unmute { creator, name } => ("unmute", creator, name),
        };
        Element::builder(element, ns::JINGLE_RTP_INFO)
            .with("creator", creator.map(Creator::as_str))
            .with("name", name)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all_rejected, parse, reserialise};

    #[test]
    fn xep_examples_roundtrip() {
        let ns = "xmlns='urn:xmpp:jingle:apps:rtp:info:1'";
        let cases = [
            (format!("<active {ns}/>"), RtpInfo::Active),
            (format!("<hold {ns}/>"), RtpInfo::Hold),
            (format!("<unhold {ns}/>"), RtpInfo::Unhold),
            (format!("<ringing {ns}/>"), RtpInfo::Ringing),
            (
                format!("<mute {ns} creator='responder' name='voice'/>"),
                RtpInfo::Mute {
                    creator: Some(Creator::Responder),
                    name: Some("voice".into()),
                },
            ),
            (
                format!("<unmute {ns} creator='responder' name='voice'/>"),
                RtpInfo::Unmute {
                    creator: Some(Creator::Responder),
                    name: Some("voice".into()),
                },
            ),
            (
                format!("<mute {ns}/>"),
                RtpInfo::Mute {
                    creator: None,
                    name: None,
                },
            ),
        ];
        for (xml, expected) in cases {
            let info: RtpInfo = parse(&xml);
            assert_eq!(info, expected);
            assert_eq!(reserialise(&info), info);
        }
    }

    #[test]
    fn malformed_is_rejected() {
        assert_all_rejected::<RtpInfo>(&[
            "<ringing xmlns='urn:xmpp:jingle:apps:rtp:1'/>",
            "<ringing xmlns='urn:xmpp:jingle-message:0' id='x'/>",
            "<trying xmlns='urn:xmpp:jingle:apps:rtp:info:1'/>",
            "<mute xmlns='urn:xmpp:jingle:apps:rtp:info:1' creator='both'/>",
            "<unmute xmlns='urn:xmpp:jingle:apps:rtp:info:1' creator=''/>",
        ]);
    }
}
