//! XEP-0490: Message Displayed Synchronization. Each of our devices publishes, in a
//! private PEP node of our account, the server-assigned stanza id (XEP-0359) of the
//! newest message it displayed in each conversation; the item id is the conversation's
//! bare JID. Our other devices get the notification (or fetch the items) and mark that
//! conversation read up to there.

use minidom::Element;

use crate::ns;
use crate::util::BuilderExt;

/// Longest stanza id or item id taken from the network.
const MAX_ID: usize = 256;

/// One conversation's read position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Displayed {
    /// The conversation (a bare JID), the item's id.
    pub peer: String,
    /// The stanza id our archive gave the newest displayed message.
    pub stanza_id: String,
    /// Whose archive assigned `stanza_id` (our own bare JID for one-to-one chats).
    pub by: String,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID
}

impl Displayed {
    /// The `<displayed/>` payload of item `peer`; `None` when it is not one, or its
    /// ids are missing or absurd.
    pub fn from_item(peer: &str, payload: &Element) -> Option<Displayed> {
        if !payload.is("displayed", ns::MDS) || !valid_id(peer) {
            return None;
        }
        let sid = payload.get_child("stanza-id", ns::SID)?;
        let (id, by) = (sid.attr("id")?, sid.attr("by")?);
        (valid_id(id) && valid_id(by)).then(|| Displayed {
            peer: peer.to_owned(),
            stanza_id: id.to_owned(),
            by: by.to_owned(),
        })
    }

    fn payload(&self) -> Element {
        Element::builder("displayed", ns::MDS)
            .append(
                Element::builder("stanza-id", ns::SID)
                    .with("id", self.stanza_id.as_str())
                    .with("by", self.by.as_str())
                    .build(),
            )
            .build()
    }

    /// The `<pubsub/>` of an IQ set publishing this position, with the publish options
    /// XEP-0490 asks for (kept, one item per conversation, private).
    pub fn publish(&self) -> Element {
        let field = |var: &'static str, value: &str| {
            Element::builder("field", ns::DATA_FORMS)
                .with("var", var)
                .append(
                    Element::builder("value", ns::DATA_FORMS)
                        .append(value)
                        .build(),
                )
                .build()
        };
        let form = Element::builder("x", ns::DATA_FORMS)
            .with("type", "submit")
            .append(
                Element::builder("field", ns::DATA_FORMS)
                    .with("var", "FORM_TYPE")
                    .with("type", "hidden")
                    .append(
                        Element::builder("value", ns::DATA_FORMS)
                            .append("http://jabber.org/protocol/pubsub#publish-options")
                            .build(),
                    )
                    .build(),
            )
            .append(field("pubsub#persist_items", "true"))
            .append(field("pubsub#max_items", "max"))
            .append(field("pubsub#send_last_published_item", "never"))
            .append(field("pubsub#access_model", "whitelist"))
            .build();
        Element::builder("pubsub", ns::PUBSUB)
            .append(
                Element::builder("publish", ns::PUBSUB)
                    .with("node", ns::MDS)
                    .append(
                        Element::builder("item", ns::PUBSUB)
                            .with("id", self.peer.as_str())
                            .append(self.payload())
                            .build(),
                    )
                    .build(),
            )
            .append(
                Element::builder("publish-options", ns::PUBSUB)
                    .append(form)
                    .build(),
            )
            .build()
    }
}

/// The `<pubsub/>` of an IQ get asking for every position of the node.
pub fn request_all() -> Element {
    Element::builder("pubsub", ns::PUBSUB)
        .append(
            Element::builder("items", ns::PUBSUB)
                .with("node", ns::MDS)
                .build(),
        )
        .build()
}

fn items_of(items: &Element, item_ns: &str) -> Vec<Displayed> {
    items
        .children()
        .filter(|i| i.is("item", item_ns))
        .filter_map(|i| {
            let peer = i.attr("id")?;
            let payload = i.children().next()?;
            Displayed::from_item(peer, payload)
        })
        .collect()
}

/// The positions in a message's PEP notification (`<event/>` payload) of the MDS node;
/// `None` when the event is about another node.
pub fn from_event(event: &Element) -> Option<Vec<Displayed>> {
    if !event.is("event", ns::PUBSUB_EVENT) {
        return None;
    }
    let items = event.get_child("items", ns::PUBSUB_EVENT)?;
    (items.attr("node") == Some(ns::MDS)).then(|| items_of(items, ns::PUBSUB_EVENT))
}

/// The positions in the result of [`request_all`].
pub fn from_result(pubsub: &Element) -> Vec<Displayed> {
    if !pubsub.is("pubsub", ns::PUBSUB) {
        return Vec::new();
    }
    pubsub
        .children()
        .filter(|c| c.is("items", ns::PUBSUB) && c.attr("node") == Some(ns::MDS))
        .flat_map(|items| items_of(items, ns::PUBSUB))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0490 example 2 (the notification), as a server sends it.
    const EVENT: &str = "<event xmlns='http://jabber.org/protocol/pubsub#event'>
        <items node='urn:xmpp:mds:displayed:0'>
          <item id='juliet@capulet.lit'>
            <displayed xmlns='urn:xmpp:mds:displayed:0'>
              <stanza-id xmlns='urn:xmpp:sid:0' id='0f710f2b-52ed-4d52-b928-784dad74a52b' by='romeo@montague.lit'/>
            </displayed>
          </item>
        </items>
      </event>";

    #[test]
    fn reads_the_example_notification() {
        let el: Element = EVENT.parse().unwrap();
        let got = from_event(&el).unwrap();
        assert_eq!(
            got,
            vec![Displayed {
                peer: "juliet@capulet.lit".into(),
                stanza_id: "0f710f2b-52ed-4d52-b928-784dad74a52b".into(),
                by: "romeo@montague.lit".into(),
            }]
        );
    }

    #[test]
    fn other_nodes_and_bad_items_are_not_positions() {
        let other: Element = "<event xmlns='http://jabber.org/protocol/pubsub#event'>
            <items node='urn:xmpp:avatar:metadata'><item id='x'/></items></event>"
            .parse()
            .unwrap();
        assert_eq!(from_event(&other), None);
        let long = "a".repeat(300);
        let bad: Element = format!(
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>
              <items node='urn:xmpp:mds:displayed:0'>
                <item id='no-payload@x'/>
                <item><displayed xmlns='urn:xmpp:mds:displayed:0'>
                  <stanza-id xmlns='urn:xmpp:sid:0' id='1' by='a@b'/></displayed></item>
                <item id='x@y'><displayed xmlns='urn:xmpp:mds:displayed:0'>
                  <stanza-id xmlns='urn:xmpp:sid:0' id='{long}' by='a@b'/></displayed></item>
                <item id='x@y'><displayed xmlns='urn:xmpp:mds:displayed:0'>
                  <stanza-id xmlns='urn:xmpp:sid:0' id='1'/></displayed></item>
                <item id='x@y'><other xmlns='urn:other'/></item>
              </items></event>"
        )
        .parse()
        .unwrap();
        assert_eq!(from_event(&bad), Some(Vec::new()));
    }

    #[test]
    fn publish_round_trips_through_a_result() {
        let d = Displayed {
            peer: "juliet@capulet.lit".into(),
            stanza_id: "s1".into(),
            by: "romeo@montague.lit".into(),
        };
        let publish = d.publish();
        let opts = publish.get_child("publish-options", ns::PUBSUB).unwrap();
        let form = opts.get_child("x", ns::DATA_FORMS).unwrap();
        let values: Vec<(String, String)> = form
            .children()
            .map(|f| {
                (
                    f.attr("var").unwrap().to_owned(),
                    f.children().next().unwrap().text(),
                )
            })
            .collect();
        assert!(values.contains(&("pubsub#access_model".into(), "whitelist".into())));
        assert!(values.contains(&("pubsub#max_items".into(), "max".into())));
        // A result carries the same item under <items/>.
        let item = publish
            .get_child("publish", ns::PUBSUB)
            .unwrap()
            .get_child("item", ns::PUBSUB)
            .unwrap()
            .clone();
        let result = Element::builder("pubsub", ns::PUBSUB)
            .append(
                Element::builder("items", ns::PUBSUB)
                    .with("node", ns::MDS)
                    .append(item)
                    .build(),
            )
            .build();
        assert_eq!(from_result(&result), vec![d]);
        assert!(request_all()
            .get_child("items", ns::PUBSUB)
            .is_some_and(|i| i.attr("node") == Some(ns::MDS)));
    }
}
