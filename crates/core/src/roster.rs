//! RFC 6121 roster: items to and from the store's `Contact`, and the push sender check.

use natter_store::Contact;
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::roster::{Ask, Group, Item, Subscription};

pub fn contact_from_item(item: &Item) -> Contact {
    Contact {
        jid: item.jid.to_string(),
        name: item.name.clone().filter(|n| !n.is_empty()),
        subscription: match item.subscription {
            Subscription::None => "none",
            Subscription::From => "from",
            Subscription::To => "to",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
        .to_owned(),
        ask: item.ask == Ask::Subscribe,
        groups: item.groups.iter().map(|g| g.0.clone()).collect(),
    }
}

/// A roster set item (add, rename, regroup; or remove).
pub fn item(jid: BareJid, name: Option<String>, groups: Vec<String>, remove: bool) -> Item {
    Item {
        jid,
        name,
        subscription: if remove {
            Subscription::Remove
        } else {
            Subscription::None
        },
        ask: Ask::None,
        groups: groups.into_iter().map(Group).collect(),
        approved: None,
    }
}

/// RFC 6121 §2.1.6: a roster push is only legitimate without `from` or from our own
/// bare JID; anything else is a spoofing attempt and is ignored.
pub fn push_allowed(from: Option<&Jid>, own: &BareJid) -> bool {
    match from {
        None => true,
        Some(f) => f.resource().is_none() && f.to_bare() == *own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_sender_rule() {
        let own = BareJid::new("demo@localhost").unwrap();
        assert!(push_allowed(None, &own));
        assert!(push_allowed(
            Some(&Jid::new("demo@localhost").unwrap()),
            &own
        ));
        assert!(!push_allowed(
            Some(&Jid::new("demo@localhost/other").unwrap()),
            &own
        ));
        assert!(!push_allowed(
            Some(&Jid::new("mallory@localhost").unwrap()),
            &own
        ));
        assert!(!push_allowed(Some(&Jid::new("localhost").unwrap()), &own));
    }

    #[test]
    fn item_to_contact() {
        let it = item(
            BareJid::new("friend@localhost").unwrap(),
            Some("Friend".into()),
            vec!["Family".into()],
            false,
        );
        let c = contact_from_item(&it);
        assert_eq!(c.jid, "friend@localhost");
        assert_eq!(c.name.as_deref(), Some("Friend"));
        assert_eq!(c.subscription, "none");
        assert_eq!(c.groups, ["Family"]);
        assert!(!c.ask);
    }
}
