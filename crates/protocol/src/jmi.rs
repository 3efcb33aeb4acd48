//! XEP-0353: Jingle Message Initiation
//!
//! The `urn:xmpp:jingle-message:0` message payloads used to ring all of a
//! contact's devices before the Jingle session starts. The XEP-0353
//! `<tie-break/>` and `<migrated/>` children are tolerated but not kept.

use minidom::Element;

use crate::jingle::Reason;
use crate::jingle_rtp::RtpDescription;
use crate::ns;
use crate::util::{req_attr, wrong, BuilderExt};
use crate::ParseError;

/// One JMI payload; `id` is the future Jingle session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JingleMessage {
    /// `<propose/>`: the initiator wants to call.
    Propose {
        /// The session id.
        id: String,
        /// One RTP description per media (usually only `media` is set).
        /// Descriptions in other namespaces are skipped.
        descriptions: Vec<RtpDescription>,
    },
    /// `<ringing/>`: one of the responder's devices rings.
    Ringing {
        /// The session id.
        id: String,
    },
    /// `<proceed/>`: the responder accepted on this device.
    Proceed {
        /// The session id.
        id: String,
    },
    /// `<accept/>`: legacy acceptance, sent to one's own other devices.
    Accept {
        /// The session id.
        id: String,
    },
    /// `<reject/>`: the responder declined.
    Reject {
        /// The session id.
        id: String,
        /// Why (usually busy or decline).
        reason: Option<Reason>,
    },
    /// `<retract/>`: the initiator cancelled before an answer.
    Retract {
        /// The session id.
        id: String,
        /// Why (usually cancel).
        reason: Option<Reason>,
    },
    /// `<finish/>`: the call is over.
    Finish {
        /// The session id.
        id: String,
        /// Why (usually success).
        reason: Option<Reason>,
    },
}

const EXPECTED: &str = "propose|ringing|proceed|accept|reject|retract|finish";
const NAMES: [&str; 7] = [
    "propose", "ringing", "proceed", "accept", "reject", "retract", "finish",
];

impl JingleMessage {
    /// The session id carried by any variant.
    pub fn id(&self) -> &str {
        match self {
            JingleMessage::Propose { id, .. }
            | JingleMessage::Ringing { id }
            | JingleMessage::Proceed { id }
            | JingleMessage::Accept { id }
            | JingleMessage::Reject { id, .. }
            | JingleMessage::Retract { id, .. }
            | JingleMessage::Finish { id, .. } => id,
        }
    }

    /// The element name of this variant.
    pub fn element_name(&self) -> &'static str {
        match self {
            JingleMessage::Propose { .. } => "propose",
            JingleMessage::Ringing { .. } => "ringing",
            JingleMessage::Proceed { .. } => "proceed",
            JingleMessage::Accept { .. } => "accept",
            JingleMessage::Reject { .. } => "reject",
            JingleMessage::Retract { .. } => "retract",
            JingleMessage::Finish { .. } => "finish",
        }
    }
}

/// The static spelling of a JMI element name, if `name` is one.
fn jmi_name(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}

/// Finds and parses the JMI payload of a `<message/>`.
///
/// Returns `None` when the message has no child with a JMI element name
/// in the JMI namespace; otherwise the parse result of the first such child.
pub fn find_in(message: &Element) -> Option<Result<JingleMessage, ParseError>> {
    message
        .children()
        .find(|c| c.has_ns(ns::JMI) && jmi_name(c.name()).is_some())
        .map(|c| JingleMessage::try_from(c.clone()))
}

/// The first `<reason xmlns='urn:xmpp:jingle:1'/>` child, if any.
fn reason_of(el: &Element) -> Result<Option<Reason>, ParseError> {
    el.get_child("reason", ns::JINGLE)
        .map(|r| Reason::try_from(r.clone()))
        .transpose()
}

impl TryFrom<Element> for JingleMessage {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        let element = jmi_name(el.name())
            .filter(|_| el.has_ns(ns::JMI))
            .ok_or_else(|| wrong(&el, EXPECTED, ns::JMI))?;
        let id = req_attr(&el, element, "id")?.to_owned();
        Ok(match element {
            "propose" => JingleMessage::Propose {
                id,
                descriptions: el
                    .children()
                    .filter(|c| c.is("description", ns::JINGLE_RTP))
                    .map(|c| RtpDescription::try_from(c.clone()))
                    .collect::<Result<_, _>>()?,
            },
            "ringing" => JingleMessage::Ringing { id },
            "proceed" => JingleMessage::Proceed { id },
            "accept" => JingleMessage::Accept { id },
            "reject" => JingleMessage::Reject {
                id,
                reason: reason_of(&el)?,
            },
            "retract" => JingleMessage::Retract {
                id,
                reason: reason_of(&el)?,
            },
            _ => JingleMessage::Finish {
                id,
                reason: reason_of(&el)?,
            },
        })
    }
}

impl From<JingleMessage> for Element {
    fn from(m: JingleMessage) -> Element {
        let builder = Element::builder(m.element_name(), ns::JMI);
        match m {
            JingleMessage::Propose { id, descriptions } => builder
                .with("id", id)
                .append_all(descriptions.into_iter().map(Element::from)),
            JingleMessage::Ringing { id }
            | JingleMessage::Proceed { id }
            | JingleMessage::Accept { id } => builder.with("id", id),
            JingleMessage::Reject { id, reason }
            | JingleMessage::Retract { id, reason }
            | JingleMessage::Finish { id, reason } => {
                builder.with("id", id).append_all(reason.map(Element::from))
            }
        }
        .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle::ReasonCondition;
    use crate::test_util::{assert_all_rejected, reserialise};

    const ID: &str = "ca3cf894-5325-482f-a412-a6e9f832298d";

    fn message(payload: &str) -> Element {
        format!(
            "<message xmlns='jabber:client' from='romeo@montague.example/orchard'
                      to='juliet@capulet.example' type='chat'>{payload}
               <store xmlns='urn:xmpp:hints'/></message>"
        )
        .parse()
        .unwrap()
    }

    fn check_roundtrip(payload: &str) -> JingleMessage {
        let m = find_in(&message(payload)).unwrap().unwrap();
        assert_eq!(m.id(), ID);
        assert_eq!(reserialise(&m), m);
        m
    }

    #[test]
    fn xep_examples_roundtrip() {
        let m = check_roundtrip(
            "<propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894-5325-482f-a412-a6e9f832298d'>
               <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>
             </propose>",
        );
        assert_eq!(
            m,
            JingleMessage::Propose {
                id: ID.into(),
                descriptions: vec![RtpDescription::new("audio")]
            }
        );
        for name in ["ringing", "proceed", "accept"] {
            let m = check_roundtrip(&format!(
                "<{name} xmlns='urn:xmpp:jingle-message:0' id='{ID}'/>"
            ));
            assert_eq!(m.element_name(), name);
        }
        let cases = [
            ("retract", "cancel", "Retracted", ReasonCondition::Cancel),
            ("reject", "busy", "Busy", ReasonCondition::Busy),
            ("finish", "success", "Success", ReasonCondition::Success),
        ];
        for (name, cond, text, condition) in cases {
            let m = check_roundtrip(&format!(
                "<{name} xmlns='urn:xmpp:jingle-message:0' id='{ID}'>
                   <reason xmlns='urn:xmpp:jingle:1'><{cond}/><text>{text}</text></reason>
                 </{name}>"
            ));
            let expected = Some(Reason {
                condition,
                text: Some(text.into()),
            });
            match m {
                JingleMessage::Retract { reason, .. }
                | JingleMessage::Reject { reason, .. }
                | JingleMessage::Finish { reason, .. } => assert_eq!(reason, expected),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn tie_break_and_migrated_are_tolerated() {
        let m = check_roundtrip(&format!(
            "<reject xmlns='urn:xmpp:jingle-message:0' id='{ID}'>
               <reason xmlns='urn:xmpp:jingle:1'><expired/><text>Tie-Break</text></reason>
               <tie-break/>
             </reject>"
        ));
        assert!(matches!(
            m,
            JingleMessage::Reject {
                reason: Some(_),
                ..
            }
        ));
        let m = check_roundtrip(&format!(
            "<finish xmlns='urn:xmpp:jingle-message:0' id='{ID}'>
               <reason xmlns='urn:xmpp:jingle:1'><expired/><text>Session migrated</text></reason>
               <migrated to='989a46a6-f202-4910-a7c3-83c6ba3f3947'/>
             </finish>"
        ));
        assert!(matches!(
            m,
            JingleMessage::Finish {
                reason: Some(_),
                ..
            }
        ));
        let m = check_roundtrip(&format!(
            "<finish xmlns='urn:xmpp:jingle-message:0' id='{ID}'/>"
        ));
        assert_eq!(
            m,
            JingleMessage::Finish {
                id: ID.into(),
                reason: None
            }
        );
    }

    #[test]
    fn propose_with_audio_video_and_encryption() {
        let m = check_roundtrip(&format!(
            "<propose xmlns='urn:xmpp:jingle-message:0' id='{ID}'>
               <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>
               <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/>
               <description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/>
               <encryption xmlns='urn:xmpp:omemo:2'><header sid='1'/></encryption>
             </propose>"
        ));
        let JingleMessage::Propose { descriptions, .. } = m else {
            panic!("not a propose");
        };
        let media: Vec<&str> = descriptions.iter().map(|d| d.media.as_str()).collect();
        assert_eq!(media, ["audio", "video"]);
    }

    #[test]
    fn find_in_ignores_other_children() {
        assert!(find_in(&message("<body>hi</body>")).is_none());
        assert!(find_in(&message("<x xmlns='urn:xmpp:jingle-message:0'/>")).is_none());
        let m = message("<propose xmlns='urn:xmpp:jingle-message:0'/>");
        assert!(matches!(find_in(&m), Some(Err(_))));
    }

    #[test]
    fn malformed_is_rejected() {
        assert_all_rejected::<JingleMessage>(&[
            "<propose xmlns='urn:xmpp:jingle-message:0'/>",
            "<ringing xmlns='urn:xmpp:jingle-message:0'/>",
            "<proceed xmlns='urn:xmpp:jingle:jingle-message:0' id='a'/>",
            "<hangup xmlns='urn:xmpp:jingle-message:0' id='a'/>",
            "<propose xmlns='urn:xmpp:jingle-message:0' id='a'>\
             <description xmlns='urn:xmpp:jingle:apps:rtp:1'/></propose>",
            "<reject xmlns='urn:xmpp:jingle-message:0' id='a'><reason xmlns='urn:xmpp:jingle:1'/></reject>",
            "<finish xmlns='urn:xmpp:jingle-message:0' id='a'>\
             <reason xmlns='urn:xmpp:jingle:1'><text>no condition</text></reason></finish>",
        ]);
    }
}
