//! Helpers for the unit tests.

use std::fmt::Debug;

use minidom::Element;

use crate::ParseError;

/// Parses `xml` and converts it, panicking (in tests only) on failure.
pub(crate) fn parse<T>(xml: &str) -> T
where
    T: TryFrom<Element, Error = ParseError>,
{
    let el: Element = xml.parse().expect("test XML is well-formed");
    T::try_from(el).expect("test element parses")
}

/// Serialises `value` to an XML string, reads that string back and parses
/// it again, so namespaces must survive the trip through text.
pub(crate) fn reserialise<T>(value: &T) -> T
where
    T: Clone + Debug + Into<Element> + TryFrom<Element, Error = ParseError>,
{
    let el: Element = value.clone().into();
    let mut buf = Vec::new();
    el.write_to(&mut buf).expect("serialising to memory");
    let text = String::from_utf8(buf).expect("UTF-8 output");
    parse(&text)
}

/// Asserts that every snippet is well-formed XML that `T` refuses.
pub(crate) fn assert_all_rejected<T>(snippets: &[&str])
where
    T: Debug + TryFrom<Element, Error = ParseError>,
{
    for xml in snippets {
        let el: Element = xml.parse().expect("test XML is well-formed");
        let result = T::try_from(el);
        assert!(result.is_err(), "accepted {xml}: {result:?}");
    }
}
