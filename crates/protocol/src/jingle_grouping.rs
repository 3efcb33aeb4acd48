//! XEP-0338: Jingle Grouping Framework
//!
//! The `<group/>` child of `<jingle/>`, mapping SDP `a=group` (e.g. BUNDLE).

use minidom::Element;

use crate::ns;
use crate::util::{check, req_attr, BuilderExt};
use crate::ParseError;

/// A `<group/>` element: a semantics and the names of the grouped contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// The grouping semantics, e.g. "BUNDLE" or "LS".
    pub semantics: String,
    /// The `name`s of the grouped `<content/>`s, in order.
    pub contents: Vec<String>,
}

impl TryFrom<Element> for Group {
    type Error = ParseError;

    fn try_from(el: Element) -> Result<Self, ParseError> {
        check(&el, "group", ns::JINGLE_GROUPING)?;
        let semantics = req_attr(&el, "group", "semantics")?.to_owned();
        let contents = el
            .children()
            .filter(|c| c.is("content", ns::JINGLE_GROUPING))
            .map(|c| req_attr(c, "content", "name").map(str::to_owned))
            .collect::<Result<_, _>>()?;
        Ok(Group {
            semantics,
            contents,
        })
    }
}

impl From<Group> for Element {
    fn from(g: Group) -> Element {
        Element::builder("group", ns::JINGLE_GROUPING)
            .with("semantics", g.semantics)
            .append_all(g.contents.into_iter().map(|name| {
                Element::builder("content", ns::JINGLE_GROUPING)
                    .with("name", name)
                    .build()
            }))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all_rejected, parse, reserialise};

    #[test]
    fn xep_example_roundtrip() {
        let g: Group = parse(
            "<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='LS'>
               <content name='voice'/>
               <content name='webcam'/>
             </group>",
        );
        assert_eq!(g.semantics, "LS");
        assert_eq!(g.contents, ["voice", "webcam"]);
        assert_eq!(reserialise(&g), g);
    }

    #[test]
    fn bundle_inside_jingle() {
        let j: crate::jingle::Jingle = parse(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate'
                     initiator='romeo@montague.lit/orchard' sid='a73sjjvkla37jfea'>
               <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>
                 <content name='voice'/>
                 <content name='webcam'/>
               </group>
               <content creator='initiator' name='voice'/>
               <content creator='initiator' name='webcam'/>
             </jingle>",
        );
        let g = j.group.as_ref().unwrap();
        assert_eq!(g.semantics, "BUNDLE");
        assert_eq!(g.contents, ["voice", "webcam"]);
        assert_eq!(reserialise(&j), j);
    }

    #[test]
    fn malformed_is_rejected() {
        assert_all_rejected::<Group>(&[
            "<group xmlns='urn:xmpp:jingle:apps:grouping:0'><content name='a'/></group>",
            "<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'><content/></group>",
            "<group xmlns='urn:xmpp:jingle:apps:grouping:1' semantics='BUNDLE'/>",
            "<grouping xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'/>",
        ]);
    }
}
