//! The single error type returned by every parser in this crate.

use std::fmt;

/// Longest piece of untrusted input kept inside an error (in bytes, cut on
/// a character boundary), so that hostile stanzas cannot bloat logs.
const MAX_VALUE_LEN: usize = 64;

/// Why an element could not be turned into one of our types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The element has another name or namespace than the parser expects.
    WrongElement {
        /// The expected element name(s).
        expected: &'static str,
        /// The expected namespace.
        namespace: &'static str,
        /// The name that was found.
        found: String,
        /// The namespace that was found.
        found_namespace: String,
    },
    /// A required attribute is absent.
    MissingAttribute {
        /// The element lacking the attribute.
        element: &'static str,
        /// The missing attribute.
        attribute: &'static str,
    },
    /// An attribute (or the text content, named `#text`) has a value that
    /// cannot be accepted.
    BadValue {
        /// The element carrying the value.
        element: &'static str,
        /// The attribute, or `#text` for character data.
        attribute: &'static str,
        /// The offending value (possibly truncated).
        value: String,
    },
    /// A required child element is absent.
    MissingChild {
        /// The parent element.
        element: &'static str,
        /// A description of the missing child.
        child: &'static str,
    },
}

impl ParseError {
    /// Builds a [`ParseError::BadValue`], truncating the untrusted value.
    pub(crate) fn bad_value(element: &'static str, attribute: &'static str, value: &str) -> Self {
        let truncated = value.len() > MAX_VALUE_LEN;
        let mut end = value.len().min(MAX_VALUE_LEN);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let mut value = value.get(..end).unwrap_or_default().to_owned();
        if truncated {
            value.push('…');
        }
        ParseError::BadValue {
            element,
            attribute,
            value,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::WrongElement {
                expected,
                namespace,
                found,
                found_namespace,
            } => write!(
                f,
                "expected element <{expected}/> in namespace '{namespace}', \
                 found <{found}/> in namespace '{found_namespace}'"
            ),
            ParseError::MissingAttribute { element, attribute } => {
                write!(
                    f,
                    "element <{element}/> lacks required attribute '{attribute}'"
                )
            }
            ParseError::BadValue {
                element,
                attribute,
                value,
            } => write!(
                f,
                "element <{element}/> has an invalid value for '{attribute}': {value:?}"
            ),
            ParseError::MissingChild { element, child } => {
                write!(f, "element <{element}/> lacks required child {child}")
            }
        }
    }
}

impl std::error::Error for ParseError {}
