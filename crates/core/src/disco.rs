//! XEP-0030 Service Discovery and XEP-0115 Entity Capabilities: what we support (one
//! list), our caps `ver`, and what contacts' resources and our server support.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use natter_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::caps::{self, Caps};
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoInfoResult, Identity};
use tokio_xmpp::parsers::hashes::{Algo, Hash};
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};

use crate::event::{AccountEvent, Event};
use crate::session::{Internal, IqPayloadKind};
use crate::SessionError;

/// Our XEP-0115 node: a URI that names the application.
pub const NODE: &str = "https://natter.im";

/// Every feature Natter implements, as announced in disco#info. A feature goes here
/// when its behaviour is in, not before.
pub const FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::CAPS,
    ns::PING,
    ns::SID,
    ns::RECEIPTS,
    ns::CHATSTATES,
    ns::MESSAGE_CORRECT,
    ns::REACTIONS,
    natter_protocol::ns::MARKERS,
    natter_protocol::ns::RETRACT,
    natter_protocol::ns::REPLY,
    natter_protocol::ns::JINGLE,
    natter_protocol::ns::JINGLE_RTP,
    natter_protocol::ns::JINGLE_RTP_AUDIO,
    natter_protocol::ns::JINGLE_RTP_VIDEO,
    natter_protocol::ns::JINGLE_ICE_UDP,
    natter_protocol::ns::JINGLE_DTLS,
    natter_protocol::ns::JMI,
    // XEP-0490: our other devices' read positions, as PEP notifications.
    "urn:xmpp:mds:displayed:0+notify",
    // XEP-0084: contacts' avatars, as PEP notifications.
    crate::avatars::METADATA_NOTIFY,
];

/// Disco results larger than this are not believed (a hostile peer must not make us
/// store megabytes per `ver`).
const MAX_FEATURES: usize = 512;
const MAX_FEATURE_CHARS: usize = 256;

fn identity() -> Identity {
    Identity::new("client", "pc", "en", "Natter")
}

/// Our disco#info answer (for `node`, when asked for one).
pub fn own_info(node: Option<String>) -> DiscoInfoResult {
    DiscoInfoResult {
        node,
        identities: vec![identity()],
        features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        extensions: vec![],
    }
}

/// Our caps `ver` (XEP-0115 §5.1, SHA-1, base64).
pub fn own_ver() -> &'static str {
    static VER: OnceLock<String> = OnceLock::new();
    VER.get_or_init(|| ver_of(&own_info(None), Algo::Sha_1).unwrap_or_default())
}

/// The `<c/>` every presence of ours carries.
pub fn own_caps() -> Caps {
    let ver = own_ver();
    let hash =
        Hash::from_base64(Algo::Sha_1, ver).unwrap_or_else(|_| Hash::new(Algo::Sha_1, vec![]));
    Caps::new(NODE, hash)
}

/// Whether a disco#info query for `node` asks about us: no node, or our `node#ver`.
pub fn is_own_node(node: Option<&str>) -> bool {
    match node {
        None => true,
        Some(n) => n == format!("{NODE}#{}", own_ver()),
    }
}

/// The XEP-0115 verification string of `info`, hashed with `algo`, in base64.
pub fn ver_of(info: &DiscoInfoResult, algo: Algo) -> Option<String> {
    let input = caps::compute_disco(info);
    caps::hash_caps(&input, algo).ok().map(|h| h.to_base64())
}

/// A presence's caps as (`ver` in base64, the node#ver to ask for), if we can check it:
/// XEP-0115 §5.4 says to verify, so hashes we cannot compute are not taken.
pub fn announced(c: &Caps) -> Option<(String, String)> {
    if matches!(c.hash, Algo::Unknown(_)) || c.ver.is_empty() {
        return None;
    }
    let ver = Hash::new(c.hash.clone(), c.ver.clone()).to_base64();
    let node = format!("{}#{}", c.node, ver);
    Some((ver, node))
}

/// The features of a disco#info answer to a caps query, if its hash is `ver` (XEP-0115
/// §5.4: otherwise a peer could poison the cache for everyone announcing `ver`).
pub fn verified_features(info: &DiscoInfoResult, algo: Algo, ver: &str) -> Option<Vec<String>> {
    // The parser keeps features as a set (duplicates, §5.4 3.b, are gone already).
    let features: Vec<String> = info.features.iter().cloned().collect();
    // '<' is the hash input's separator and '\n' the store's: neither may hide in one.
    if features.len() > MAX_FEATURES
        || features
            .iter()
            .any(|f| f.len() > MAX_FEATURE_CHARS || f.contains(['<', '\n']))
    {
        return None;
    }
    (ver_of(info, algo)? == ver).then_some(features)
}

/// What we know about who supports what: caps `ver` → features (also kept in the
/// store), each contact resource's `ver`, and our server's features.
#[derive(Debug, Default)]
pub struct Capabilities {
    by_ver: HashMap<String, Arc<[String]>>,
    /// Full JID → the `ver` its last presence announced.
    resources: HashMap<String, String>,
    /// `ver`s being asked for now (one query each, however many resources share it).
    asking: HashMap<String, ()>,
    server: Vec<String>,
}

/// At most this many caps queries run at once (a flood of made-up `ver`s must not make
/// us flood the network).
const MAX_QUERIES: usize = 16;

impl Capabilities {
    pub fn load(&mut self, known: Vec<(String, Vec<String>)>) {
        for (ver, features) in known {
            self.by_ver.insert(ver, features.into());
        }
    }

    /// A resource announced `ver`: its features if they are known, else whether the
    /// caller should ask (not asked already, not too many queries running).
    pub fn announce(&mut self, full_jid: &str, ver: &str) -> Result<Arc<[String]>, bool> {
        self.resources.insert(full_jid.to_owned(), ver.to_owned());
        if let Some(f) = self.by_ver.get(ver) {
            return Ok(f.clone());
        }
        if self.asking.contains_key(ver) || self.asking.len() >= MAX_QUERIES {
            return Err(false);
        }
        self.asking.insert(ver.to_owned(), ());
        Err(true)
    }

    /// A query for `ver` ended; with `features` when it was verified. Returns the full
    /// JIDs that announced it.
    pub fn learned(&mut self, ver: &str, features: Option<Vec<String>>) -> Vec<String> {
        self.asking.remove(ver);
        let Some(features) = features else {
            return vec![];
        };
        self.by_ver.insert(ver.to_owned(), features.into());
        self.resources
            .iter()
            .filter(|(_, v)| *v == ver)
            .map(|(j, _)| j.clone())
            .collect()
    }

    pub fn gone(&mut self, full_jid: &str) {
        self.resources.remove(full_jid);
    }

    pub fn clear_resources(&mut self) {
        self.resources.clear();
    }

    /// The features of a full JID (a contact's resource), or of our server's domain.
    pub fn features(&self, jid: &str, server: &str) -> Vec<String> {
        if jid == server {
            return self.server.clone();
        }
        self.resources
            .get(jid)
            .and_then(|ver| self.by_ver.get(ver))
            .map(|f| f.to_vec())
            .unwrap_or_default()
    }

    pub fn set_server(&mut self, features: Vec<String>) {
        self.server = features;
    }

    pub fn server_supports(&self, feature: &str) -> bool {
        self.server.iter().any(|f| f == feature)
    }
}

/// One account's discovery: answers what our contacts' resources and our server
/// support, asking (and verifying, and caching) what it does not know yet.
#[derive(Clone)]
pub(crate) struct Discovery {
    shared: Arc<Shared>,
}

struct Shared {
    account_id: i64,
    own: BareJid,
    store: Store,
    events: mpsc::UnboundedSender<AccountEvent>,
    internal: mpsc::UnboundedSender<Internal>,
    caps: Mutex<Capabilities>,
}

impl Discovery {
    pub fn new(
        account_id: i64,
        own: BareJid,
        store: Store,
        events: mpsc::UnboundedSender<AccountEvent>,
        internal: mpsc::UnboundedSender<Internal>,
    ) -> Self {
        Discovery {
            shared: Arc::new(Shared {
                account_id,
                own,
                store,
                events,
                internal,
                caps: Mutex::new(Capabilities::default()),
            }),
        }
    }

    fn caps(&self) -> std::sync::MutexGuard<'_, Capabilities> {
        self.shared
            .caps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, event: Event) {
        let _ = self.shared.events.send(AccountEvent {
            account_id: self.shared.account_id,
            event,
        });
    }

    fn emit_features(&self, full_jid: &str, features: &[String]) {
        let (jid, resource) = match full_jid.split_once('/') {
            Some((j, r)) => (j.to_owned(), r.to_owned()),
            None => (full_jid.to_owned(), String::new()),
        };
        self.emit(Event::Features {
            jid,
            resource,
            features: features.to_vec(),
        });
    }

    /// Reads the caps cache.
    pub async fn load(&self) {
        match self.shared.store.caps().await {
            Ok(known) => self.caps().load(known),
            Err(e) => tracing::error!(error = %e, "cannot read the caps cache"),
        }
    }

    /// The features of a contact's full JID or of our server's domain (empty: unknown).
    pub fn features(&self, jid: &str) -> Vec<String> {
        self.caps().features(jid, self.shared.own.domain().as_str())
    }

    /// Our stream was reset: every resource's presence is sent again.
    pub fn reset(&self) {
        self.caps().clear_resources();
    }

    /// A presence: remembers which `ver` the resource announced and learns it if new.
    pub fn on_presence(&self, p: &Presence) {
        let Some(from) = p.from.as_ref().filter(|f| f.resource().is_some()) else {
            return;
        };
        let full = from.to_string();
        if p.type_ == PresenceType::Unavailable {
            self.caps().gone(&full);
            return;
        }
        if p.type_ != PresenceType::None {
            return;
        }
        let Some(c) = p
            .payloads
            .iter()
            .find(|e| e.is("c", ns::CAPS))
            .and_then(|e| Caps::try_from(e.clone()).ok())
        else {
            return;
        };
        let Some((ver, node)) = announced(&c) else {
            tracing::debug!(from = %full, "caps with a hash we cannot check");
            return;
        };
        let outcome = self.caps().announce(&full, &ver);
        match outcome {
            Ok(features) => self.emit_features(&full, &features),
            Err(false) => {}
            Err(true) => {
                let this = self.clone();
                let to = from.clone();
                tokio::spawn(async move { this.learn(to, node, c.hash, ver).await });
            }
        }
    }

    /// Asks `to` about `node` (its `node#ver`), verifies and caches the answer.
    async fn learn(&self, to: Jid, node: String, algo: Algo, ver: String) {
        let query = DiscoInfoQuery { node: Some(node) };
        let features = match self.iq(Some(to.clone()), query.into()).await {
            Ok(Some(el)) => match DiscoInfoResult::try_from(el) {
                Ok(info) => {
                    let verified = verified_features(&info, algo, &ver);
                    if verified.is_none() {
                        tracing::warn!(from = %to, %ver, "disco#info does not match its caps hash: not cached");
                    }
                    verified
                }
                Err(e) => {
                    tracing::debug!(from = %to, error = %e, "malformed disco#info");
                    None
                }
            },
            other => {
                tracing::debug!(from = %to, ?other, "no disco#info for caps");
                None
            }
        };
        if let Some(f) = &features {
            if let Err(e) = self.shared.store.add_caps(ver.clone(), f.clone()).await {
                tracing::error!(error = %e, "cannot cache caps");
            }
        }
        let waiting = self.caps().learned(&ver, features.clone());
        if let Some(f) = features {
            for full in waiting {
                self.emit_features(&full, &f);
            }
        }
    }

    /// Asks our server what it supports (once per connection).
    pub fn discover_server(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let domain = Jid::from(BareJid::from_parts(None, this.shared.own.domain()));
            let query = DiscoInfoQuery { node: None };
            match this.iq(Some(domain.clone()), query.into()).await {
                Ok(Some(el)) => match DiscoInfoResult::try_from(el) {
                    Ok(info) => {
                        let features: Vec<String> =
                            info.features.into_iter().take(MAX_FEATURES).collect();
                        tracing::debug!(?features, "server features");
                        this.caps().set_server(features.clone());
                        this.emit_features(&domain.to_string(), &features);
                    }
                    Err(e) => tracing::warn!(error = %e, "malformed server disco#info"),
                },
                other => tracing::warn!(?other, "no server disco#info"),
            }
        });
    }

    async fn iq(&self, to: Option<Jid>, payload: Element) -> Result<Option<Element>, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .internal
            .send(Internal::SendIq {
                to,
                payload: IqPayloadKind::Get(payload),
                reply,
            })
            .map_err(|_| SessionError::Stopped)?;
        answer.await.map_err(|_| SessionError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::minidom::Element;
    use tokio_xmpp::parsers::disco::DiscoInfoQuery;

    /// XEP-0115 §5.2, the complex example (with a form) hashes to its published `ver`.
    #[test]
    fn xep_0115_example_verifies() {
        let xml = r#"<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>"#;
        let el: Element = xml.parse().unwrap();
        let info = DiscoInfoResult::try_from(el).unwrap();
        let ver = "q07IKJEyjvHSyhy//CH0CxmKi8w=";
        assert_eq!(ver_of(&info, Algo::Sha_1).as_deref(), Some(ver));
        assert!(verified_features(&info, Algo::Sha_1, ver).is_some());
        assert!(verified_features(&info, Algo::Sha_1, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_none());
    }

    #[test]
    fn own_caps_round_trip() {
        let c = own_caps();
        let (ver, node) = announced(&c).unwrap();
        assert_eq!(ver, own_ver());
        assert!(is_own_node(Some(&node)));
        assert!(!is_own_node(Some("https://natter.im#other")));
        let q: Element = DiscoInfoQuery { node: Some(node) }.into();
        assert!(q.is("query", ns::DISCO_INFO));
        let info = own_info(None);
        assert_eq!(
            verified_features(&info, Algo::Sha_1, &ver).unwrap().len(),
            FEATURES.len()
        );
    }

    #[test]
    fn poisoned_answers_and_floods() {
        let mut info = own_info(None);
        info.features.insert("urn:example:evil".into());
        assert!(verified_features(&info, Algo::Sha_1, own_ver()).is_none());
        let mut caps = Capabilities::default();
        assert_eq!(caps.announce("a@x/1", "v1"), Err(true));
        assert_eq!(
            caps.announce("a@x/2", "v1"),
            Err(false),
            "asked once per ver"
        );
        assert!(caps.learned("v1", None).is_empty());
        assert_eq!(
            caps.announce("a@x/1", "v1"),
            Err(true),
            "a failed check asks again"
        );
        let mut got = caps.learned("v1", Some(vec!["urn:xmpp:ping".into()]));
        got.sort();
        assert_eq!(got, vec!["a@x/1".to_string(), "a@x/2".to_string()]);
        assert_eq!(
            caps.features("a@x/2", "x"),
            vec!["urn:xmpp:ping".to_string()]
        );
        for i in 0..MAX_QUERIES + 4 {
            let _ = caps.announce(&format!("m@x/{i}"), &format!("flood{i}"));
        }
        assert!(caps.asking.len() <= MAX_QUERIES);
    }
}
