//! XEP-0424: Message Retraction ("delete for everyone"), with its XEP-0428 fallback, and
//! the pre-0.4 form wrapped in a XEP-0422 `apply-to` that older clients still send.

use minidom::Element;

use crate::ns;
use crate::util::BuilderExt;

/// The id of the message a stanza retracts, in either form; `None` when it retracts
/// nothing. Ids longer than 256 bytes or empty are refused.
pub fn retracted_id(payloads: &[Element]) -> Option<String> {
    let id = payloads.iter().find_map(|p| {
        let current = p.is("retract", ns::RETRACT);
        let old = p.is("apply-to", ns::FASTEN) && p.has_child("retract", ns::RETRACT_0);
        if current || old {
            p.attr("id").map(str::to_owned)
        } else {
            None
        }
    })?;
    (!id.is_empty() && id.len() <= 256).then_some(id)
}

/// The payloads of a retraction of the message `id`: the element, the fallback
/// indication for clients without XEP-0424, and the store hint (XEP-0334).
pub fn retraction(id: &str) -> Vec<Element> {
    vec![
        Element::builder("retract", ns::RETRACT)
            .with("id", id)
            .build(),
        Element::builder("fallback", ns::FALLBACK)
            .with("for", ns::RETRACT)
            .build(),
        crate::hints::store(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(xml: &str) -> Vec<Element> {
        let el: Element = xml.parse().unwrap();
        el.children().cloned().collect()
    }

    #[test]
    fn reads_both_forms() {
        let v1 = payloads(
            "<message xmlns='jabber:client'><retract xmlns='urn:xmpp:message-retract:1' id='o-1'/>
             <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/>
             <body>This person attempted to retract a previous message</body></message>",
        );
        assert_eq!(retracted_id(&v1).as_deref(), Some("o-1"));
        let v0 = payloads(
            "<message xmlns='jabber:client'><apply-to xmlns='urn:xmpp:fasten:0' id='o-2'>
             <retract xmlns='urn:xmpp:message-retract:0'/></apply-to></message>",
        );
        assert_eq!(retracted_id(&v0).as_deref(), Some("o-2"));
    }

    #[test]
    fn refuses_empty_huge_or_unrelated() {
        for xml in [
            "<message xmlns='jabber:client'><retract xmlns='urn:xmpp:message-retract:1' id=''/></message>",
            "<message xmlns='jabber:client'><retract xmlns='urn:xmpp:message-retract:1'/></message>",
            "<message xmlns='jabber:client'><apply-to xmlns='urn:xmpp:fasten:0' id='x'><other xmlns='y'/></apply-to></message>",
            "<message xmlns='jabber:client'><retract xmlns='urn:other' id='x'/></message>",
        ] {
            assert_eq!(retracted_id(&payloads(xml)), None, "{xml}");
        }
        let huge = format!(
            "<message xmlns='jabber:client'><retract xmlns='urn:xmpp:message-retract:1' id='{}'/></message>",
            "a".repeat(300)
        );
        assert_eq!(retracted_id(&payloads(&huge)), None);
    }

    #[test]
    fn round_trip() {
        let out = retraction("o-9");
        assert_eq!(retracted_id(&out).as_deref(), Some("o-9"));
        assert!(out
            .iter()
            .any(|p| p.is("fallback", ns::FALLBACK) && p.attr("for") == Some(ns::RETRACT)));
        assert!(out.iter().any(|p| p.is("store", ns::HINTS)));
    }
}
