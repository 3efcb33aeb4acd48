//! XEP-0352 Client State Indication: tell the server whether someone is looking, so
//! that it may hold back presence updates (and the like) while nobody is.

use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::csi;
use tokio_xmpp::parsers::stream_features::StreamFeatures;

/// Whether the server offers CSI (a stream feature).
pub fn offered(features: &StreamFeatures) -> bool {
    features
        .others
        .iter()
        .any(|f| f.is("csi", tokio_xmpp::parsers::ns::CSI))
}

/// The nonza for `active`, serialised.
pub fn nonza(active: bool) -> String {
    let el: Element = if active {
        csi::Active.into()
    } else {
        csi::Inactive.into()
    };
    let mut out = Vec::new();
    match el.write_to(&mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzas() {
        let a: Element = nonza(true).parse().unwrap();
        assert!(a.is("active", "urn:xmpp:csi:0"));
        let i: Element = nonza(false).parse().unwrap();
        assert!(i.is("inactive", "urn:xmpp:csi:0"));
    }
}
