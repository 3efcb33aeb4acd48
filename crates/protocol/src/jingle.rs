//! XEP-0166: Jingle
//!
//! The `<jingle/>` IQ payload, its `<content/>` and `<reason/>` children and
//! the `urn:xmpp:jingle:errors:1` error conditions. Application and transport
//! payloads are limited to the ones used for calls (XEP-0167 RTP and XEP-0176
//! ICE-UDP); others are tolerated and skipped.

use minidom::Element;

use crate::jingle_grouping::Group;
use crate::jingle_ice_udp::IceUdpTransport;
use crate::jingle_rtp::RtpDescription;
use crate::jingle_rtp_info::RtpInfo;
use crate::ns;
use crate::util::{
    check, opt_parse, opt_string, req_attr, req_parse, string_enum, wrong, BuilderExt,
};
use crate::ParseError;

string_enum! {
    /// The `action` attribute of `<jingle/>`.
    Action, "jingle", "action" {
        /// `content-accept`
        ContentAccept => "content-accept",
        /// `content-add`
        ContentAdd => "content-add",
        /// `content-modify`
        ContentModify => "content-modify",
        /// `content-reject`
        ContentReject => "content-reject",
        /// `content-remove`
        ContentRemove => "content-remove",
        /// `description-info`
        DescriptionInfo => "description-info",
        /// `security-info`
        SecurityInfo => "security-info",
        /// `session-accept`
        SessionAccept => "session-accept",
        /// `session-info`
        SessionInfo => "session-info",
        /// `session-initiate`
        SessionInitiate => "session-initiate",
        /// `session-terminate`
        SessionTerminate => "session-terminate",
        /// `transport-accept`
        TransportAccept => "transport-accept",
        /// `transport-info`
        TransportInfo => "transport-info",
        /// `transport-reject`
        TransportReject => "transport-reject",
        /// `transport-replace`
        TransportReplace => "transport-replace",
    }
}

string_enum! {
    /// Which party created a content (`creator` attribute).
    Creator, "content", "creator" {
        /// The session initiator.
        Initiator => "initiator",
        /// The session responder.
        Responder => "responder",
    }
}

string_enum! {
    /// Which parties send media for a content (`senders` attribute).
    #[derive(Default)]
    Senders, "content", "senders" {
        /// Both parties (the default).
        #[default]
        Both => "both",
        /// Only the initiator.
        Initiator => "initiator",
        /// Only the responder.
        Responder => "responder",
        /// Nobody.
        None => "none",
    }
}

string_enum! {
    /// The defined conditions of a Jingle `<reason/>`.
    ///
    /// For `alternative-session`, the optional `<sid/>` child is not kept.
    ReasonCondition, "reason", "condition" {
        /// `alternative-session`
        AlternativeSession => "alternative-session",
        /// `busy`
        Busy => "busy",
        /// `cancel`
        Cancel => "cancel",
        /// `connectivity-error`
        ConnectivityError => "connectivity-error",
        /// `decline`
        Decline => "decline",
        /// `expired`
        Expired => "expired",
        /// `failed-application`
        FailedApplication => "failed-application",
        /// `failed-transport`
        FailedTransport => "failed-transport",
        /// `general-error`
        GeneralError => "general-error",
        /// `gone`
        Gone => "gone",
        /// `incompatible-parameters`
        IncompatibleParameters => "incompatible-parameters",
        /// `media-error`
        MediaError => "media-error",
        /// `security-error`
        SecurityError => "security-error",
        /// `success`
        Success => "success",
        /// `timeout`
        Timeout => "timeout",
        /// `unsupported-applications`
        UnsupportedApplications => "unsupported-applications",
        /// `unsupported-transports`
        UnsupportedTransports => "unsupported-transports",
    }
}

string_enum! {
    /// Jingle-specific error conditions (`urn:xmpp:jingle:errors:1`), sent
    /// next to a stanza error in an IQ error.
    JingleError, "error", "condition" {
        /// `out-of-order`
        OutOfOrder => "out-of-order",
        /// `tie-break`
        TieBreak => "tie-break",
        /// `unknown-session`
        UnknownSession => "unknown-session",
        /// `unsupported-info`
        UnsupportedInfo => "unsupported-info",
    }
}

impl TryFrom<Element> for JingleError {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        const EXPECTED: &str = "out-of-order|tie-break|unknown-session|unsupported-info";
        if !el.has_ns(ns::JINGLE_ERRORS) {
            return Err(wrong(&el, EXPECTED, ns::JINGLE_ERRORS));
        }
        el.name()
            .parse()
            .map_err(|_| wrong(&el, EXPECTED, ns::JINGLE_ERRORS))
    }
}

impl From<JingleError> for Element {
    fn from(e: JingleError) -> Element {
        Element::bare(e.as_str(), ns::JINGLE_ERRORS)
    }
}

/// A `<reason/>` element (also used inside XEP-0353 messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The defined condition.
    pub condition: ReasonCondition,
    /// Optional human-readable text.
    pub text: Option<String>,
}

impl Reason {
    /// A reason with only a condition.
    pub fn new(condition: ReasonCondition) -> Self {
        Reason {
            condition,
            text: None,
        }
    }
}

impl TryFrom<Element> for Reason {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "reason", ns::JINGLE)?;
        let mut condition = None;
        let mut text = None;
        for child in el.children().filter(|c| c.has_ns(ns::JINGLE)) {
            if child.name() == "text" {
                if text.is_none() {
                    text = Some(child.text());
                }
            } else if condition.is_none() {
                // Unknown names in our namespace are skipped; a known one
                // must still be present somewhere.
                condition = child.name().parse().ok();
            }
        }
        let condition = condition.ok_or(ParseError::MissingChild {
            element: "reason",
            child: "a defined condition",
        })?;
        Ok(Reason { condition, text })
    }
}

impl From<Reason> for Element {
    fn from(r: Reason) -> Element {
        Element::builder("reason", ns::JINGLE)
            .append(Element::bare(r.condition.as_str(), ns::JINGLE))
            .append_all(
                r.text
                    .map(|t| Element::builder("text", ns::JINGLE).append(t).build()),
            )
            .build()
    }
}

/// A `<content/>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Which party created the content.
    pub creator: Creator,
    /// The content name, unique within the session.
    pub name: String,
    /// Who sends media; `Both` when the attribute is absent.
    pub senders: Senders,
    /// The `disposition` attribute (defaults to "session" when absent).
    pub disposition: Option<String>,
    /// The XEP-0167 RTP description; `None` if absent or in another namespace.
    pub description: Option<RtpDescription>,
    /// The XEP-0176 ICE-UDP transport; `None` if absent or another transport.
    pub transport: Option<IceUdpTransport>,
}

impl Content {
    /// A content with neither description nor transport.
    pub fn new(creator: Creator, name: impl Into<String>) -> Self {
        Content {
            creator,
            name: name.into(),
            senders: Senders::Both,
            disposition: None,
            description: None,
            transport: None,
        }
    }
}

impl TryFrom<Element> for Content {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "content", ns::JINGLE)?;
        let creator = req_parse(&el, "content", "creator")?;
        let name = req_attr(&el, "content", "name")?.to_owned();
        let senders = opt_parse(&el, "content", "senders")?.unwrap_or_default();
        let mut description = None;
        let mut transport = None;
        for child in el.children() {
            if description.is_none() && child.is("description", ns::JINGLE_RTP) {
                description = Some(RtpDescription::try_from(child.clone())?);
            } else if transport.is_none() && child.is("transport", ns::JINGLE_ICE_UDP) {
                transport = Some(IceUdpTransport::try_from(child.clone())?);
            }
        }
        Ok(Content {
            creator,
            name,
            senders,
            disposition: opt_string(&el, "disposition"),
            description,
            transport,
        })
    }
}

impl From<Content> for Element {
    fn from(c: Content) -> Element {
        let senders = (c.senders != Senders::Both).then_some(c.senders.as_str());
        Element::builder("content", ns::JINGLE)
            .with("creator", c.creator.as_str())
            .with("name", c.name)
            .with("senders", senders)
            .with("disposition", c.disposition)
            .append_all(c.description.map(Element::from))
            .append_all(c.transport.map(Element::from))
            .build()
    }
}

/// The `<jingle/>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jingle {
    /// The action.
    pub action: Action,
    /// The session id.
    pub sid: String,
    /// The initiator's full JID, if given.
    pub initiator: Option<String>,
    /// The responder's full JID, if given.
    pub responder: Option<String>,
    /// The contents.
    pub contents: Vec<Content>,
    /// The reason (mostly for session-terminate).
    pub reason: Option<Reason>,
    /// A XEP-0167 informational payload (for session-info).
    pub rtp_info: Option<RtpInfo>,
    /// A XEP-0338 group (e.g. BUNDLE).
    pub group: Option<Group>,
}

impl Jingle {
    /// A `<jingle/>` with only an action and a session id.
    pub fn new(action: Action, sid: impl Into<String>) -> Self {
        Jingle {
            action,
            sid: sid.into(),
            initiator: None,
            responder: None,
            contents: Vec::new(),
            reason: None,
            rtp_info: None,
            group: None,
        }
    }
}

impl TryFrom<Element> for Jingle {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "jingle", ns::JINGLE)?;
        let mut jingle = Jingle::new(
            req_parse(&el, "jingle", "action")?,
            req_attr(&el, "jingle", "sid")?,
        );
        jingle.initiator = opt_string(&el, "initiator");
        jingle.responder = opt_string(&el, "responder");
        for child in el.children() {
            if child.is("content", ns::JINGLE) {
                jingle.contents.push(Content::try_from(child.clone())?);
            } else if child.is("reason", ns::JINGLE) {
                if jingle.reason.is_none() {
                    jingle.reason = Some(Reason::try_from(child.clone())?);
                }
            } else if child.is("group", ns::JINGLE_GROUPING) {
                if jingle.group.is_none() {
                    jingle.group = Some(Group::try_from(child.clone())?);
                }
            } else if child.has_ns(ns::JINGLE_RTP_INFO) && jingle.rtp_info.is_none() {
                // Unknown informational payloads are ignored (the session
                // logic answers them with unsupported-info).
                jingle.rtp_info = RtpInfo::try_from(child.clone()).ok();
            }
        }
        Ok(jingle)
    }
}

impl From<Jingle> for Element {
    fn from(j: Jingle) -> Element {
        Element::builder("jingle", ns::JINGLE)
            .with("action", j.action.as_str())
            .with("sid", j.sid)
            .with("initiator", j.initiator)
            .with("responder", j.responder)
            .append_all(j.contents.into_iter().map(Element::from))
            .append_all(j.reason.map(Element::from))
            .append_all(j.rtp_info.map(Element::from))
            .append_all(j.group.map(Element::from))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle_ice_udp::CandidateType;
    use crate::test_util::{parse, reserialise};

    /// XEP-0166 example "Initiator sends session-initiate" (abridged to the
    /// XEP-0167/0176 payloads we understand).
    const XEP_0167_INITIATE: &str = "<jingle xmlns='urn:xmpp:jingle:1'
          action='session-initiate'
          initiator='romeo@montague.lit/orchard'
          sid='a73sjjvkla37jfea'>
    <content creator='initiator' name='voice'>
      <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
        <payload-type id='96' name='speex' clockrate='16000'/>
        <payload-type id='97' name='speex' clockrate='8000'/>
        <payload-type id='18' name='G729'/>
        <payload-type id='0' name='PCMU'/>
        <payload-type id='103' name='L16' clockrate='16000' channels='2'/>
        <payload-type id='98' name='x-ISAC' clockrate='8000'/>
      </description>
      <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'
                 pwd='asd88fgpdd777uzjYhagZg'
                 ufrag='8hhy'>
        <candidate component='1' foundation='1' generation='0' id='el0747fg11'
                   ip='10.0.1.1' network='1' port='8998' priority='2130706431'
                   protocol='udp' type='host'/>
        <candidate component='1' foundation='2' generation='0' id='y3s2b30v3r'
                   ip='192.0.2.3' network='1' port='45664' priority='1694498815'
                   protocol='udp' rel-addr='10.0.1.1' rel-port='8998' type='srflx'/>
      </transport>
    </content>
  </jingle>";

    /// XEP-0166 terminate example with a reason and text.
    const XEP_0166_TERMINATE: &str = "<jingle xmlns='urn:xmpp:jingle:1'
          action='session-terminate'
          sid='a73sjjvkla37jfea'>
    <reason>
      <success/>
      <text>Sorry, gotta go!</text>
    </reason>
  </jingle>";

    /// XEP-0167 "Adding video": theora parameters, a bandwidth element we
    /// skip, and an old-namespace transport we do not understand.
    const XEP_0167_CONTENT_ADD: &str = "<jingle xmlns='urn:xmpp:jingle:1'
          action='content-add'
          initiator='romeo@montague.lit/orchard'
          sid='a73sjjvkla37jfea'>
    <content creator='initiator' name='webcam'>
      <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
        <payload-type id='98' name='theora' clockrate='90000'>
          <parameter name='height' value='600'/>
          <parameter name='width' value='800'/>
          <parameter name='delivery-method' value='inline'/>
          <parameter name='configuration' value='somebase16string'/>
          <parameter name='sampling' value='YCbCr-4:2:2'/>
        </payload-type>
        <payload-type id='28' name='nv' clockrate='90000'/>
        <payload-type id='25' name='CelB' clockrate='90000'/>
        <payload-type id='32' name='MPV' clockrate='90000'/>
        <bandwidth type='AS'>128</bandwidth>
      </description>
      <transport xmlns='urn:xmpp:jingle:transports:ice-udp:0'/>
    </content>
  </jingle>";

    #[test]
    fn session_initiate_roundtrip() {
        let j: Jingle = parse(XEP_0167_INITIATE);
        assert_eq!(j.action, Action::SessionInitiate);
        assert_eq!(j.sid, "a73sjjvkla37jfea");
        assert_eq!(j.initiator.as_deref(), Some("romeo@montague.lit/orchard"));
        assert_eq!(j.responder, None);
        assert_eq!(j.contents.len(), 1);
        let c = &j.contents[0];
        assert_eq!(c.creator, Creator::Initiator);
        assert_eq!(c.name, "voice");
        assert_eq!(c.senders, Senders::Both);
        let d = c.description.as_ref().unwrap();
        assert_eq!(d.media, "audio");
        assert_eq!(d.payload_types.len(), 6);
        assert_eq!(d.payload_types[4].channels, Some(2));
        let t = c.transport.as_ref().unwrap();
        assert_eq!(t.ufrag.as_deref(), Some("8hhy"));
        assert_eq!(t.candidates.len(), 2);
        assert_eq!(t.candidates[1].kind, CandidateType::Srflx);
        assert_eq!(reserialise(&j), j);
    }

    #[test]
    fn terminate_roundtrip() {
        let j: Jingle = parse(XEP_0166_TERMINATE);
        assert_eq!(j.action, Action::SessionTerminate);
        let r = j.reason.as_ref().unwrap();
        assert_eq!(r.condition, ReasonCondition::Success);
        assert_eq!(r.text.as_deref(), Some("Sorry, gotta go!"));
        assert!(j.contents.is_empty());
        assert_eq!(reserialise(&j), j);
    }

    #[test]
    fn foreign_transport_and_extra_children_are_tolerated() {
        let j: Jingle = parse(XEP_0167_CONTENT_ADD);
        let c = &j.contents[0];
        assert!(c.transport.is_none());
        let d = c.description.as_ref().unwrap();
        assert_eq!(d.payload_types[0].parameters.len(), 5);
        assert_eq!(d.payload_types[0].parameters[4].value, "YCbCr-4:2:2");
        assert_eq!(reserialise(&j), j);
    }

    #[test]
    fn foreign_description_gives_none() {
        let j: Jingle = parse(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1'>
               <content creator='initiator' name='a-file-offer' senders='initiator'>
                 <description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file/></description>
                 <transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='x'/>
               </content>
             </jingle>",
        );
        let c = &j.contents[0];
        assert_eq!(c.senders, Senders::Initiator);
        assert!(c.description.is_none() && c.transport.is_none());
        assert_eq!(reserialise(&j), j);
    }

    #[test]
    fn reason_with_extra_condition_namespace() {
        // XEP-0167: crypto-required next to security-error.
        let r: Reason = parse(
            "<reason xmlns='urn:xmpp:jingle:1'><security-error/>
               <crypto-required xmlns='urn:xmpp:jingle:apps:rtp:errors:1'/></reason>",
        );
        assert_eq!(r, Reason::new(ReasonCondition::SecurityError));
        // alternative-session carries a <sid/> child, which we drop.
        let r: Reason = parse(
            "<reason xmlns='urn:xmpp:jingle:1'><alternative-session><sid>b84tkkwlmb48kgfb</sid>\
             </alternative-session></reason>",
        );
        assert_eq!(r.condition, ReasonCondition::AlternativeSession);
        assert_eq!(reserialise(&r), r);
    }

    #[test]
    fn session_info_and_group() {
        let j: Jingle = parse(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info'
                     initiator='romeo@montague.lit/orchard' sid='a73sjjvkla37jfea'>
               <mute xmlns='urn:xmpp:jingle:apps:rtp:info:1' creator='responder' name='voice'/>
             </jingle>",
        );
        assert_eq!(
            j.rtp_info,
            Some(RtpInfo::Mute {
                creator: Some(Creator::Responder),
                name: Some("voice".into())
            })
        );
        assert_eq!(reserialise(&j), j);
        let j: Jingle = parse(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='x'>
               <something-new xmlns='urn:xmpp:jingle:apps:rtp:info:1'/></jingle>",
        );
        assert_eq!(j.rtp_info, None);
    }

    #[test]
    fn enums_roundtrip_through_strings() {
        let actions = "content-accept content-add content-modify content-reject content-remove \
            description-info security-info session-accept session-info session-initiate \
            session-terminate transport-accept transport-info transport-reject transport-replace";
        for a in actions.split_whitespace() {
            assert_eq!(a.parse::<Action>().unwrap().as_str(), a);
        }
        let conditions = "alternative-session busy cancel connectivity-error decline expired \
            failed-application failed-transport general-error gone incompatible-parameters \
            media-error security-error success timeout unsupported-applications \
            unsupported-transports";
        for c in conditions.split_whitespace() {
            let r = Reason::new(c.parse().unwrap());
            assert_eq!(r.condition.as_str(), c);
            assert_eq!(reserialise(&r), r);
        }
        for e in [
            JingleError::OutOfOrder,
            JingleError::TieBreak,
            JingleError::UnknownSession,
            JingleError::UnsupportedInfo,
        ] {
            assert_eq!(JingleError::try_from(Element::from(e)), Ok(e));
        }
        let e: JingleError = parse("<tie-break xmlns='urn:xmpp:jingle:errors:1'/>");
        assert_eq!(e, JingleError::TieBreak);
    }

    #[test]
    fn malformed_is_rejected() {
        let bad_jingle = [
            // wrong namespace / name
            "<jingle xmlns='urn:xmpp:jingle:0' action='session-info' sid='a'/>",
            "<jingles xmlns='urn:xmpp:jingle:1' action='session-info' sid='a'/>",
            // missing / bad attributes
            "<jingle xmlns='urn:xmpp:jingle:1' sid='a'/>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info'/>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-explode' sid='a'/>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='' sid='a'/>",
            // broken contents
            "<jingle xmlns='urn:xmpp:jingle:1' action='content-add' sid='a'><content name='x'/></jingle>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='content-add' sid='a'><content creator='initiator'/></jingle>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='content-add' sid='a'>\
             <content creator='nobody' name='x'/></jingle>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='content-add' sid='a'>\
             <content creator='initiator' name='x' senders='everyone'/></jingle>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='content-add' sid='a'>\
             <content creator='initiator' name='x'><description xmlns='urn:xmpp:jingle:apps:rtp:1'/>\
             </content></jingle>",
            // broken reason
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='a'><reason/></jingle>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='a'>\
             <reason><text>only text</text></reason></jingle>",
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='a'>\
             <reason><bored/></reason></jingle>",
        ];
        for xml in bad_jingle {
            let el: Element = xml.parse().unwrap();
            assert!(Jingle::try_from(el).is_err(), "accepted: {xml}");
        }
        for xml in [
            "<unknown-session xmlns='urn:xmpp:jingle:1'/>",
            "<no-such-error xmlns='urn:xmpp:jingle:errors:1'/>",
        ] {
            let el: Element = xml.parse().unwrap();
            assert!(JingleError::try_from(el).is_err(), "accepted: {xml}");
        }
        let el: Element = "<reason xmlns='urn:xmpp:jingle:2'><busy/></reason>"
            .parse()
            .unwrap();
        assert!(Reason::try_from(el).is_err());
    }

    #[test]
    fn error_messages_are_readable() {
        let el: Element = "<jingle xmlns='urn:xmpp:jingle:1' sid='a'/>"
            .parse()
            .unwrap();
        let err = Jingle::try_from(el).unwrap_err();
        assert_eq!(
            err,
            ParseError::MissingAttribute {
                element: "jingle",
                attribute: "action"
            }
        );
        assert_eq!(
            err.to_string(),
            "element <jingle/> lacks required attribute 'action'"
        );
        let long = "x".repeat(1000);
        let err = long.parse::<Action>().unwrap_err();
        assert!(err.to_string().len() < 200);
    }
}
