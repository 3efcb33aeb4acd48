//! XEP-0320: Use of DTLS-SRTP in Jingle Sessions
//!
//! The `<fingerprint/>` element, carried inside an ICE-UDP `<transport/>`.

use minidom::Element;

use crate::ns;
use crate::util::{check, opt_parse, req_attr, string_enum, BuilderExt};
use crate::ParseError;

string_enum! {
    /// The DTLS role (`setup` attribute, SDP `a=setup`).
    Setup, "fingerprint", "setup" {
        /// Either role; offered by the initiator.
        Actpass => "actpass",
        /// DTLS client.
        Active => "active",
        /// DTLS server.
        Passive => "passive",
        /// No connection for now.
        Holdconn => "holdconn",
    }
}

/// A DTLS certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The hash function, e.g. "sha-256".
    pub hash: String,
    /// The DTLS role (required by the XEP, tolerated if absent).
    pub setup: Option<Setup>,
    /// The fingerprint, colon-separated hex bytes; surrounding whitespace
    /// of the element text is removed.
    pub value: String,
}

impl TryFrom<Element> for Fingerprint {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "fingerprint", ns::JINGLE_DTLS)?;
        let hash = req_attr(&el, "fingerprint", "hash")?.to_owned();
        let setup = opt_parse(&el, "fingerprint", "setup")?;
        let value = el.text().trim().to_owned();
        if value.is_empty() {
            return Err(ParseError::bad_value("fingerprint", "#text", ""));
        }
        Ok(Fingerprint { hash, setup, value })
    }
}

impl From<Fingerprint> for Element {
    fn from(fp: Fingerprint) -> Element {
        Element::builder("fingerprint", ns::JINGLE_DTLS)
            .with("hash", fp.hash)
            .with("setup", fp.setup.map(Setup::as_str))
            .append(fp.value)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all_rejected, parse, reserialise};

    #[test]
    fn xep_example_roundtrip() {
        let fp: Fingerprint = parse(
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>
               02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2
             </fingerprint>",
        );
        assert_eq!(fp.hash, "sha-256");
        assert_eq!(fp.setup, Some(Setup::Actpass));
        assert_eq!(
            fp.value,
            "02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2"
        );
        assert_eq!(reserialise(&fp), fp);

        for (s, setup) in [
            ("active", Setup::Active),
            ("passive", Setup::Passive),
            ("holdconn", Setup::Holdconn),
        ] {
            let fp: Fingerprint = parse(&format!(
                "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-1' setup='{s}'>AB:CD</fingerprint>"
            ));
            assert_eq!(fp.setup, Some(setup));
            assert_eq!(reserialise(&fp), fp);
        }
    }

    #[test]
    fn malformed_is_rejected() {
        assert_all_rejected::<Fingerprint>(&[
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' setup='active'>AB:CD</fingerprint>",
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='server'>AB</fingerprint>",
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='active'/>",
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256'>  \n </fingerprint>",
            "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:1' hash='sha-256'>AB</fingerprint>",
        ]);
    }
}
