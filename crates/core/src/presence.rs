//! RFC 6121 presence: our own, and every contact's resources.

use std::collections::{BTreeMap, HashMap};

use tokio_xmpp::parsers::message::Lang;
use tokio_xmpp::parsers::presence::{Presence, Priority, Show, Type};

use crate::event::{Availability, ResourcePresence};

/// Status texts longer than this are cut.
const MAX_STATUS_CHARS: usize = 1024;

pub fn own_presence(
    availability: Option<Availability>,
    status: Option<&str>,
    priority: i8,
) -> Presence {
    let mut p = match availability {
        None => Presence::unavailable(),
        Some(a) => {
            let mut p = Presence::available();
            p.show = match a {
                Availability::Available => None,
                Availability::Chat => Some(Show::Chat),
                Availability::Away => Some(Show::Away),
                Availability::ExtendedAway => Some(Show::Xa),
                Availability::DoNotDisturb => Some(Show::Dnd),
            };
            p.priority = Priority(priority);
            // XEP-0115 §4: every available presence says what we support.
            p.payloads.push(crate::disco::own_caps().into());
            p
        }
    };
    if let Some(s) = status.filter(|s| !s.is_empty()) {
        p.statuses.insert(Lang::default(), s.to_owned());
    }
    p
}

/// `p` without its XEP-0115 caps. For the first seconds of a stream (see
/// `Session::announce_caps`): a caps hash in our presence makes the server do work for
/// every contact, and that work is better done after the history is in.
pub fn without_caps(mut p: Presence) -> Presence {
    p.payloads
        .retain(|e| !e.is("c", tokio_xmpp::parsers::ns::CAPS));
    p
}

pub fn resource_presence(p: &Presence) -> ResourcePresence {
    ResourcePresence {
        availability: match p.show {
            None => Availability::Available,
            Some(Show::Chat) => Availability::Chat,
            Some(Show::Away) => Availability::Away,
            Some(Show::Xa) => Availability::ExtendedAway,
            Some(Show::Dnd) => Availability::DoNotDisturb,
        },
        status: p
            .statuses
            .values()
            .next()
            .map(|s| s.chars().take(MAX_STATUS_CHARS).collect()),
        priority: p.priority.0,
    }
}

/// Every contact's online resources.
#[derive(Debug, Default)]
pub struct PresenceTable {
    by_contact: HashMap<String, BTreeMap<String, ResourcePresence>>,
}

impl PresenceTable {
    /// Applies an available/unavailable presence; returns what changed, if anything.
    pub fn apply(
        &mut self,
        bare: &str,
        resource: &str,
        p: &Presence,
    ) -> Option<Option<ResourcePresence>> {
        match p.type_ {
            Type::None => {
                let rp = resource_presence(p);
                let entry = self.by_contact.entry(bare.to_owned()).or_default();
                if entry.get(resource) == Some(&rp) {
                    return None;
                }
                entry.insert(resource.to_owned(), rp.clone());
                Some(Some(rp))
            }
            Type::Unavailable => {
                let entry = self.by_contact.get_mut(bare)?;
                entry.remove(resource)?;
                if entry.is_empty() {
                    self.by_contact.remove(bare);
                }
                Some(None)
            }
            _ => None,
        }
    }

    pub fn resources(&self, bare: &str) -> Vec<(String, ResourcePresence)> {
        self.by_contact
            .get(bare)
            .map(|m| m.iter().map(|(r, p)| (r.clone(), p.clone())).collect())
            .unwrap_or_default()
    }

    /// Everyone goes offline (our stream was reset: presence will be sent again).
    pub fn clear(&mut self) -> Vec<(String, String)> {
        let gone = self
            .by_contact
            .iter()
            .flat_map(|(b, m)| m.keys().map(move |r| (b.clone(), r.clone())))
            .collect();
        self.by_contact.clear();
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_taken_out_and_the_rest_kept() {
        let p = own_presence(Some(Availability::Away), Some("lunch"), 5);
        assert!(p
            .payloads
            .iter()
            .any(|e| e.is("c", tokio_xmpp::parsers::ns::CAPS)));
        let bare = without_caps(p.clone());
        assert!(bare.payloads.is_empty());
        assert_eq!(resource_presence(&bare), resource_presence(&p));
        assert_eq!(bare.type_, Type::None);
    }

    #[test]
    fn tracks_resources() {
        let mut t = PresenceTable::default();
        let away = own_presence(Some(Availability::Away), Some("lunch"), 5);
        assert_eq!(
            t.apply("a@x", "phone", &away),
            Some(Some(ResourcePresence {
                availability: Availability::Away,
                status: Some("lunch".into()),
                priority: 5
            }))
        );
        assert_eq!(t.apply("a@x", "phone", &away), None, "no change, no event");
        t.apply(
            "a@x",
            "laptop",
            &own_presence(Some(Availability::Available), None, 0),
        );
        assert_eq!(t.resources("a@x").len(), 2);
        assert_eq!(
            t.apply("a@x", "phone", &Presence::unavailable()),
            Some(None)
        );
        assert_eq!(t.apply("a@x", "tablet", &Presence::unavailable()), None);
        assert_eq!(t.resources("a@x").len(), 1);
        assert_eq!(t.clear(), vec![("a@x".to_string(), "laptop".to_string())]);
    }
}
