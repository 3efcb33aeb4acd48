//! XEP-0334: Message Processing Hints
//!
//! Only the `<store/>` hint, which XEP-0353 requires on JMI messages.

use minidom::Element;

use crate::ns;

/// `<store xmlns='urn:xmpp:hints'/>`: ask servers to archive the message.
pub fn store() -> Element {
    Element::bare("store", ns::HINTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_hint() {
        let el = store();
        assert!(el.is("store", "urn:xmpp:hints"));
        assert_eq!(el, "<store xmlns='urn:xmpp:hints'/>".parse().unwrap());
    }
}
