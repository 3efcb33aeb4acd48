//! XML namespace constants used by the call-related element types.

/// XEP-0166: Jingle.
pub const JINGLE: &str = "urn:xmpp:jingle:1";
/// XEP-0166: Jingle error conditions.
pub const JINGLE_ERRORS: &str = "urn:xmpp:jingle:errors:1";
/// XEP-0167: Jingle RTP Sessions.
pub const JINGLE_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
/// XEP-0167: disco feature for RTP audio.
pub const JINGLE_RTP_AUDIO: &str = "urn:xmpp:jingle:apps:rtp:audio";
/// XEP-0167: disco feature for RTP video.
pub const JINGLE_RTP_VIDEO: &str = "urn:xmpp:jingle:apps:rtp:video";
/// XEP-0167: RTP informational messages (session-info payloads).
pub const JINGLE_RTP_INFO: &str = "urn:xmpp:jingle:apps:rtp:info:1";
/// XEP-0176: Jingle ICE-UDP Transport Method.
pub const JINGLE_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
/// XEP-0320: Use of DTLS-SRTP in Jingle Sessions.
pub const JINGLE_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
/// XEP-0293: Jingle RTP Feedback Negotiation.
pub const JINGLE_RTCP_FB: &str = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0";
/// XEP-0294: Jingle RTP Header Extensions Negotiation.
pub const JINGLE_RTP_HDREXT: &str = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0";
/// XEP-0339: Source-Specific Media Attributes in Jingle.
pub const JINGLE_SSMA: &str = "urn:xmpp:jingle:apps:rtp:ssma:0";
/// XEP-0338: Jingle Grouping Framework.
pub const JINGLE_GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
/// XEP-0353: Jingle Message Initiation.
pub const JMI: &str = "urn:xmpp:jingle-message:0";
/// XEP-0215: External Service Discovery (version 2 namespace).
pub const EXTDISCO: &str = "urn:xmpp:extdisco:2";
/// XEP-0334: Message Processing Hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0424: Message Retraction (current namespace).
pub const RETRACT: &str = "urn:xmpp:message-retract:1";
/// XEP-0424 before version 0.4 (inside a XEP-0422 `apply-to`), still sent by older clients.
pub const RETRACT_0: &str = "urn:xmpp:message-retract:0";
/// XEP-0422: Message Fastening (only as the wrapper of an old retraction).
pub const FASTEN: &str = "urn:xmpp:fasten:0";
/// XEP-0461: Message Replies.
pub const REPLY: &str = "urn:xmpp:reply:0";
/// XEP-0428: Fallback Indication.
pub const FALLBACK: &str = "urn:xmpp:fallback:0";
/// XEP-0333: Chat Markers.
pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0490: Message Displayed Synchronization (the PEP node and its payload).
pub const MDS: &str = "urn:xmpp:mds:displayed:0";
/// XEP-0359: Unique and Stable Stanza IDs.
pub const SID: &str = "urn:xmpp:sid:0";
/// XEP-0060: Publish-Subscribe (requests and their results).
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060: Publish-Subscribe notifications.
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0004: Data Forms.
pub const DATA_FORMS: &str = "jabber:x:data";
/// XEP-0191: Blocking Command.
pub const BLOCKING: &str = "urn:xmpp:blocking";
/// XEP-0377: Blocking Command Reports.
pub const REPORTING: &str = "urn:xmpp:reporting:1";
