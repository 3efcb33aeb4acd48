//! XEP-0176: Jingle ICE-UDP Transport Method
//!
//! The `<transport/>` element with its `<candidate/>`s, plus the XEP-0320
//! `<fingerprint/>` that rides inside it. `<remote-candidate/>` is skipped.

use minidom::Element;

use crate::jingle_dtls::Fingerprint;
use crate::ns;
use crate::util::{check, opt_parse, opt_string, req_attr, req_parse, string_enum, BuilderExt};
use crate::ParseError;

string_enum! {
    /// The ICE candidate type (`type` attribute).
    CandidateType, "candidate", "type" {
        /// A local interface address.
        Host => "host",
        /// A peer-reflexive address.
        Prflx => "prflx",
        /// A TURN relay address.
        Relay => "relay",
        /// A server-reflexive (STUN) address.
        Srflx => "srflx",
    }
}

/// An ICE `<candidate/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The component (1 = RTP, 2 = RTCP).
    pub component: u8,
    /// The ICE foundation.
    pub foundation: String,
    /// The ICE generation; 0 when the attribute is absent.
    pub generation: u32,
    /// A unique id for this candidate.
    pub id: String,
    /// The IP address (IPv4 or IPv6 text, kept as sent).
    pub ip: String,
    /// The network interface index.
    pub network: Option<u32>,
    /// The port.
    pub port: u16,
    /// The ICE priority.
    pub priority: u32,
    /// The transport protocol, normally "udp".
    pub protocol: String,
    /// The related address (for srflx/prflx/relay).
    pub rel_addr: Option<String>,
    /// The related port.
    pub rel_port: Option<u16>,
    /// The candidate type (attribute `type`).
    pub kind: CandidateType,
}

impl TryFrom<Element> for Candidate {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        const E: &str = "candidate";
        check(&el, E, ns::JINGLE_ICE_UDP)?;
        Ok(Candidate {
            component: req_parse(&el, E, "component")?,
            foundation: req_attr(&el, E, "foundation")?.to_owned(),
            // Required by the XEP, but harmless to default.
            generation: opt_parse(&el, E, "generation")?.unwrap_or(0),
            id: req_attr(&el, E, "id")?.to_owned(),
            ip: req_attr(&el, E, "ip")?.to_owned(),
            network: opt_parse(&el, E, "network")?,
            port: req_parse(&el, E, "port")?,
            priority: req_parse(&el, E, "priority")?,
            protocol: req_attr(&el, E, "protocol")?.to_owned(),
            rel_addr: opt_string(&el, "rel-addr"),
            rel_port: opt_parse(&el, E, "rel-port")?,
            kind: req_parse(&el, E, "type")?,
        })
    }
}

impl From<Candidate> for Element {
    fn from(c: Candidate) -> Element {
        Element::builder("candidate", ns::JINGLE_ICE_UDP)
            .with("component", c.component)
            .with("foundation", c.foundation)
            .with("generation", c.generation)
            .with("id", c.id)
            .with("ip", c.ip)
            .with("network", c.network)
            .with("port", c.port)
            .with("priority", c.priority)
            .with("protocol", c.protocol)
            .with("rel-addr", c.rel_addr)
            .with("rel-port", c.rel_port)
            .with("type", c.kind.as_str())
            .build()
    }
}

/// The ICE-UDP `<transport/>` of a content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceUdpTransport {
    /// The ICE username fragment.
    pub ufrag: Option<String>,
    /// The ICE password.
    pub pwd: Option<String>,
    /// The candidates (possibly none; they may follow in transport-info).
    pub candidates: Vec<Candidate>,
    /// The XEP-0320 DTLS fingerprint.
    pub fingerprint: Option<Fingerprint>,
}

impl TryFrom<Element> for IceUdpTransport {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "transport", ns::JINGLE_ICE_UDP)?;
        let mut t = IceUdpTransport {
            ufrag: opt_string(&el, "ufrag"),
            pwd: opt_string(&el, "pwd"),
            ..Default::default()
        };
        for child in el.children() {
            if child.is("candidate", ns::JINGLE_ICE_UDP) {
                t.candidates.push(Candidate::try_from(child.clone())?);
            } else if t.fingerprint.is_none() && child.is("fingerprint", ns::JINGLE_DTLS) {
                t.fingerprint = Some(Fingerprint::try_from(child.clone())?);
            }
        }
        Ok(t)
    }
}

impl From<IceUdpTransport> for Element {
    fn from(t: IceUdpTransport) -> Element {
        Element::builder("transport", ns::JINGLE_ICE_UDP)
            .with("ufrag", t.ufrag)
            .with("pwd", t.pwd)
            .append_all(t.fingerprint.map(Element::from))
            .append_all(t.candidates.into_iter().map(Element::from))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle_dtls::Setup;
    use crate::test_util::{assert_all_rejected, parse, reserialise};

    /// XEP-0320 example: transport with fingerprint and two candidates.
    const XEP_0320_TRANSPORT: &str = "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'
                 pwd='asd88fgpdd777uzjYhagZg'
                 ufrag='8hhy'>
        <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>
          02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2
        </fingerprint>
        <candidate component='1'
                   foundation='1'
                   generation='0'
                   id='el0747fg11'
                   ip='10.0.1.1'
                   network='1'
                   port='8998'
                   priority='2130706431'
                   protocol='udp'
                   type='host'/>
        <candidate component='1'
                   foundation='2'
                   generation='0'
                   id='y3s2b30v3r'
                   ip='192.0.2.3'
                   network='1'
                   port='45664'
                   priority='1694498815'
                   protocol='udp'
                   rel-addr='10.0.1.1'
                   rel-port='8998'
                   type='srflx'/>
      </transport>";

    #[test]
    fn xep_example_roundtrip() {
        let t: IceUdpTransport = parse(XEP_0320_TRANSPORT);
        assert_eq!(t.ufrag.as_deref(), Some("8hhy"));
        assert_eq!(t.pwd.as_deref(), Some("asd88fgpdd777uzjYhagZg"));
        assert_eq!(t.fingerprint.as_ref().unwrap().setup, Some(Setup::Actpass));
        assert_eq!(
            t.candidates[0],
            Candidate {
                component: 1,
                foundation: "1".into(),
                generation: 0,
                id: "el0747fg11".into(),
                ip: "10.0.1.1".into(),
                network: Some(1),
                port: 8998,
                priority: 2130706431,
                protocol: "udp".into(),
                rel_addr: None,
                rel_port: None,
                kind: CandidateType::Host,
            }
        );
        let srflx = &t.candidates[1];
        assert_eq!(srflx.kind, CandidateType::Srflx);
        assert_eq!(srflx.rel_addr.as_deref(), Some("10.0.1.1"));
        assert_eq!(srflx.rel_port, Some(8998));
        assert_eq!(reserialise(&t), t);
    }

    #[test]
    fn restart_and_remote_candidate() {
        // XEP-0176 "Initiator restarts ICE negotiation".
        let t: IceUdpTransport = parse(
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'
                        pwd='bv71hdn38hgb39hf6xlk33' ufrag='g7qs'>
               <candidate component='1' foundation='1' generation='1' id='y3s2b30v3r'
                          ip='192.0.2.3' network='1' port='45665' priority='1694498815'
                          protocol='udp' type='srflx'/>
             </transport>",
        );
        assert_eq!(t.candidates[0].generation, 1);
        assert_eq!(reserialise(&t), t);
        // XEP-0176 "Initiator communicates in-use candidate": tolerated, skipped.
        let t: IceUdpTransport = parse(
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'
                        pwd='asd88fgpdd777uzjYhagZg' ufrag='8hhy'>
               <remote-candidate component='1' ip='10.0.1.2' port='9001'/>
             </transport>",
        );
        assert!(t.candidates.is_empty());
        // An empty transport (candidates trickled later) and a relay
        // candidate without generation.
        let t: IceUdpTransport = parse(
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'>
               <candidate component='1' foundation='3' id='r1' ip='2001:db8::1' port='3478'
                          priority='16777215' protocol='udp' type='relay'
                          rel-addr='192.0.2.3' rel-port='45665' unknown-attr='x'/>
             </transport>",
        );
        assert_eq!(t.ufrag, None);
        assert_eq!(t.candidates[0].generation, 0);
        assert_eq!(t.candidates[0].kind, CandidateType::Relay);
        assert_eq!(reserialise(&t), t);
    }

    #[test]
    fn malformed_is_rejected() {
        let ok = "component='1' foundation='1' id='a' ip='10.0.0.1' port='1' priority='1' protocol='udp'";
        let bad = [
            // XEP-0176's "subsequent candidate" example has a priority that
            // overflows 32 bits; ICE priorities are 32-bit.
            format!("{ok} type='host'").replace("priority='1'", "priority='21149780477'"),
            format!("{ok} type='hostile'"),
            ok.to_owned(),
            format!("{ok} type='host'").replace("port='1'", "port='65536'"),
            format!("{ok} type='host'").replace("port='1'", "port='-1'"),
            format!("{ok} type='host'").replace("component='1'", "component='one'"),
            format!("{ok} type='host'").replace(" id='a'", ""),
            format!("{ok} type='host'").replace(" ip='10.0.0.1'", ""),
            format!("{ok} type='host' rel-port='99999'"),
            format!("{ok} type='host' network='x'"),
            format!("{ok} type='host' generation='-3'"),
        ];
        let snippets: Vec<String> = bad
            .iter()
            .map(|attrs| {
                format!(
                    "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'><candidate {attrs}/></transport>"
                )
            })
            .collect();
        let refs: Vec<&str> = snippets.iter().map(String::as_str).collect();
        assert_all_rejected::<IceUdpTransport>(&refs);
        assert_all_rejected::<IceUdpTransport>(&[
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:0'/>",
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'>\
             <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0'>AB</fingerprint></transport>",
        ]);
        // The same candidate with valid attributes parses.
        let good = format!(
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'><candidate {ok} type='host'/></transport>"
        );
        let _: IceUdpTransport = parse(&good);
    }
}
