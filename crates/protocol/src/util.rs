//! Small private helpers shared by the element parsers and serialisers.

use std::str::FromStr;

use minidom::rxml::NcName;
use minidom::{Element, ElementBuilder, IntoAttributeValue};

use crate::ParseError;

/// Fails unless `el` is `<name xmlns='ns'/>`.
pub(crate) fn check(el: &Element, name: &'static str, ns: &'static str) -> Result<(), ParseError> {
    if el.is(name, ns) {
        Ok(())
    } else {
        Err(wrong(el, name, ns))
    }
}

/// Builds a [`ParseError::WrongElement`] for `el`.
pub(crate) fn wrong(el: &Element, expected: &'static str, ns: &'static str) -> ParseError {
    ParseError::WrongElement {
        expected,
        namespace: ns,
        found: el.name().to_owned(),
        found_namespace: el.ns(),
    }
}

/// A required string attribute.
pub(crate) fn req_attr<'a>(
    el: &'a Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, ParseError> {
    el.attr(attribute)
        .ok_or(ParseError::MissingAttribute { element, attribute })
}

/// An optional string attribute, owned.
pub(crate) fn opt_string(el: &Element, attribute: &'static str) -> Option<String> {
    el.attr(attribute).map(str::to_owned)
}

/// Parses `value` (surrounding XML whitespace ignored) with `FromStr`;
/// integer types reject overflow, signs and garbage.
pub(crate) fn parse_value<T: FromStr>(
    value: &str,
    element: &'static str,
    attribute: &'static str,
) -> Result<T, ParseError> {
    let trimmed = value.trim();
    // `u32::from_str` accepts a leading '+', which XML Schema integers
    // also allow; an empty string is refused by `FromStr` itself.
    trimmed
        .parse()
        .map_err(|_| ParseError::bad_value(element, attribute, value))
}

/// A required attribute parsed with `FromStr`.
pub(crate) fn req_parse<T: FromStr>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<T, ParseError> {
    parse_value(req_attr(el, element, attribute)?, element, attribute)
}

/// An optional attribute parsed with `FromStr`.
pub(crate) fn opt_parse<T: FromStr>(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<T>, ParseError> {
    el.attr(attribute)
        .map(|v| parse_value(v, element, attribute))
        .transpose()
}

/// An optional `xs:boolean` attribute.
pub(crate) fn opt_bool(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<bool>, ParseError> {
    match el.attr(attribute).map(str::trim) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(ParseError::bad_value(element, attribute, other)),
    }
}

/// Children of `el` in namespace `ns`.
pub(crate) fn children_ns<'a>(
    el: &'a Element,
    ns: &'static str,
) -> impl Iterator<Item = &'a Element> + 'a {
    el.children().filter(move |c| c.has_ns(ns))
}

/// Adds attributes by static name to an [`ElementBuilder`].
pub(crate) trait BuilderExt {
    /// Sets `name` to `value`; `None` values are skipped.
    fn with(self, name: &'static str, value: impl IntoAttributeValue) -> Self;
}

impl BuilderExt for ElementBuilder {
    fn with(self, name: &'static str, value: impl IntoAttributeValue) -> Self {
        self.attr(ncname(name), value)
    }
}

/// Converts one of our hard-coded attribute names.
fn ncname(name: &'static str) -> NcName {
    // Only called with literal attribute names from this crate, all of
    // which are valid NCNames (covered by every serialisation test).
    NcName::try_from(name).expect("attribute names in natter-protocol are valid NCNames")
}

/// Defines a string-valued enum with `as_str`, `FromStr` and `Display`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $element:literal, $attribute:literal {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The XML spelling of this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ParseError;

            fn from_str(s: &str) -> Result<Self, $crate::ParseError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::ParseError::bad_value($element, $attribute, other)),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;
