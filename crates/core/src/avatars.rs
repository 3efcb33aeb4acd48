//! XEP-0084: User Avatar (PEP), and XEP-0153: vCard-Based Avatars (read only: Prosody's
//! mod_vcard_legacy serves XEP-0084 avatars as vCard PHOTOs, XEP-0398).
//!
//! Nothing that arrives is trusted: an avatar is taken only from its owner's bare JID
//! (a roster contact, or us), only in an allowed image type, at most [`MAX_BYTES`], and
//! only when the SHA-1 of the bytes is the id it was announced with. Verified pictures
//! are cached on disk by that hash, so a known hash is never fetched again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use natter_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::avatar::{Data, Info, Metadata};
use tokio_xmpp::parsers::data_forms::{DataForm, DataFormType, Field};
use tokio_xmpp::parsers::hashes::Sha1HexAttribute;
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::pubsub::{self, ItemId, NodeName, PubSub};
use tokio_xmpp::parsers::vcard::{VCard, VCardQuery};
use tokio_xmpp::parsers::vcard_update::VCardUpdate;

use crate::event::{AccountEvent, Event};
use crate::session::{Internal, IqPayloadKind};
use crate::SessionError;

/// The largest picture we take or publish (decoded bytes).
pub const MAX_BYTES: usize = 1024 * 1024;

/// The image types we show (XEP-0084 §4.2 requires PNG; the others are common).
pub const TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/webp", "image/gif"];

/// The disco#info feature that asks the server for avatar notifications (XEP-0163 §4).
pub const METADATA_NOTIFY: &str = "urn:xmpp:avatar:metadata+notify";

/// One account's avatars: who has which picture, and the fetches under way.
#[derive(Clone)]
pub(crate) struct Avatars {
    shared: Arc<Shared>,
}

struct Shared {
    account_id: i64,
    own: BareJid,
    dir: PathBuf,
    store: Store,
    events: mpsc::UnboundedSender<AccountEvent>,
    internal: mpsc::UnboundedSender<Internal>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bare JID → SHA-1 hex of its verified, cached picture.
    known: HashMap<String, String>,
    /// (bare JID, hash) being fetched, so a notification and a presence do not both ask.
    fetching: HashSet<(String, String)>,
}

/// Where a picture came from: how to fetch its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// XEP-0084 data node item (with the metadata's declared size).
    Pep { bytes: usize },
    /// XEP-0054 vCard PHOTO (announced by a XEP-0153 hash).
    VCard,
}

/// Lowercase hex SHA-1 of `bytes`.
pub fn sha1_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `bytes` start like an image of `mime` (the announced type must not lie).
fn looks_like(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xff, 0xd8, 0xff]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => false,
    }
}

/// Checks a picture against what it was announced as; `Err` says why it is dropped.
fn verify(hash: &str, mime: &str, bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() || bytes.len() > MAX_BYTES {
        return Err(format!("size {} out of bounds", bytes.len()));
    }
    if !TYPES.contains(&mime) {
        return Err(format!("type {mime} not allowed"));
    }
    if !looks_like(mime, bytes) {
        return Err(format!("the bytes are not {mime}"));
    }
    let actual = sha1_hex(bytes);
    if actual != hash {
        return Err(format!("SHA-1 {actual} is not the announced {hash}"));
    }
    Ok(())
}

/// Whether a XEP-0163 notification (`event`, the pubsub#event element) is about an
/// avatar metadata node.
pub(crate) fn is_metadata_event(event: &Element) -> bool {
    event
        .get_child("items", ns::PUBSUB_EVENT)
        .is_some_and(|items| items.attr("node") == Some(ns::AVATAR_METADATA))
}

/// The info of a metadata element we can use: an allowed type, data in PEP (no URL),
/// not too large; PNG first (XEP-0084 §4.2.1).
fn usable_info(metadata: &Metadata) -> Option<&Info> {
    let mut usable: Vec<&Info> = metadata
        .infos
        .iter()
        .filter(|i| i.url.is_none() && TYPES.contains(&i.type_.as_str()))
        .filter(|i| (i.bytes as usize) <= MAX_BYTES && i.bytes > 0)
        .collect();
    usable.sort_by_key(|i| i.type_ != "image/png");
    usable.first().copied()
}

impl Avatars {
    pub(crate) fn new(
        account_id: i64,
        own: BareJid,
        dir: PathBuf,
        store: Store,
        events: mpsc::UnboundedSender<AccountEvent>,
        internal: mpsc::UnboundedSender<Internal>,
    ) -> Avatars {
        Avatars {
            shared: Arc::new(Shared {
                account_id,
                own,
                dir,
                store,
                events,
                internal,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, jid: String, path: Option<PathBuf>) {
        let _ = self.shared.events.send(AccountEvent {
            account_id: self.shared.account_id,
            event: Event::Avatar { jid, path },
        });
    }

    fn file(&self, hash: &str) -> PathBuf {
        self.shared.dir.join(hash)
    }

    /// The cached picture of `jid`, if we know one.
    pub(crate) fn path(&self, jid: &str) -> Option<PathBuf> {
        let hash = self.state().known.get(jid).cloned()?;
        let file = self.file(&hash);
        file.is_file().then_some(file)
    }

    /// Reads the known avatars from the store and announces those whose file is cached
    /// (a missing file is forgotten, so it is fetched again).
    pub(crate) async fn load(&self) {
        let rows = match self.shared.store.avatars(self.shared.account_id).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the known avatars");
                return;
            }
        };
        for (jid, hash) in rows {
            if self.file(&hash).is_file() {
                self.state().known.insert(jid.clone(), hash.clone());
                self.emit(jid, Some(self.file(&hash)));
            }
        }
    }

    /// Whether `jid` may tell us about its own avatar: us, or a roster contact.
    fn trusted_owner(&self, jid: &BareJid, roster: &HashMap<String, String>) -> bool {
        *jid == self.shared.own || roster.contains_key(&jid.to_string())
    }

    /// A XEP-0163 notification about an avatar metadata node (see [`is_metadata_event`]).
    pub(crate) fn on_event(
        &self,
        from: Option<&Jid>,
        event: &Element,
        roster: &HashMap<String, String>,
    ) {
        let published = match pubsub::Event::try_from(event.clone()) {
            Ok(pubsub::Event {
                payload: pubsub::event::Payload::Items { published, .. },
            }) => published,
            _ => {
                tracing::warn!(?from, "malformed avatar notification dropped");
                return;
            }
        };
        // PEP notifications come from the owner's bare JID (XEP-0163 §4.3.1); anything
        // else (a full JID, a stranger) is someone speaking for another.
        let owner = match from {
            None => self.shared.own.clone(),
            Some(from) if from.is_bare() && self.trusted_owner(&from.to_bare(), roster) => {
                from.to_bare()
            }
            Some(from) => {
                tracing::warn!(%from, "avatar notification from a wrong sender dropped");
                return;
            }
        };
        let Some(payload) = published.into_iter().last().and_then(|i| i.payload) else {
            return;
        };
        match Metadata::try_from(payload) {
            Ok(metadata) => self.on_metadata(owner, metadata),
            Err(e) => tracing::warn!(%owner, error = %e, "malformed avatar metadata dropped"),
        }
    }

    /// A XEP-0153 hash in a presence: fetch the vCard PHOTO if the picture is new.
    pub(crate) fn on_presence(&self, p: &Presence, roster: &HashMap<String, String>) {
        if p.type_ != PresenceType::None {
            return;
        }
        let Some(x) = p.payloads.iter().find(|e| e.is("x", ns::VCARD_UPDATE)) else {
            return;
        };
        let Some(from) = p.from.as_ref().map(Jid::to_bare) else {
            return;
        };
        if !self.trusted_owner(&from, roster) {
            return;
        }
        // An empty <photo/> only says "no vCard picture" (Prosody adds one to every
        // presence); removals come through XEP-0084 metadata.
        let Ok(VCardUpdate {
            photo: Some(tokio_xmpp::parsers::vcard_update::Photo { data: Some(hash) }),
        }) = VCardUpdate::try_from(x.clone())
        else {
            return;
        };
        let hash: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        self.fetch(from, hash, String::new(), Source::VCard);
    }

    /// New metadata of `owner`: forget a removed avatar, or fetch a new picture.
    fn on_metadata(&self, owner: BareJid, metadata: Metadata) {
        if metadata.infos.is_empty() {
            // XEP-0084 §4.5: empty metadata disables the avatar.
            let this = self.clone();
            tokio::spawn(async move { this.forget(owner).await });
            return;
        }
        let Some(info) = usable_info(&metadata) else {
            tracing::warn!(%owner, infos = ?metadata.infos, "no usable avatar (type, size or URL only)");
            return;
        };
        let source = Source::Pep {
            bytes: info.bytes as usize,
        };
        self.fetch(owner, info.id.to_hex(), info.type_.clone(), source);
    }

    async fn forget(&self, owner: BareJid) {
        let jid = owner.to_string();
        if self.state().known.remove(&jid).is_none() {
            return;
        }
        if let Err(e) = self
            .shared
            .store
            .set_avatar(self.shared.account_id, jid.clone(), None)
            .await
        {
            tracing::error!(error = %e, "cannot forget an avatar");
        }
        tracing::info!(%jid, "avatar removed");
        self.emit(jid, None);
    }

    /// Takes `owner`'s picture `hash` unless it is known: from the cache if we have the
    /// file, else fetched from `source` and verified.
    fn fetch(&self, owner: BareJid, hash: String, mime: String, source: Source) {
        let jid = owner.to_string();
        {
            let mut state = self.state();
            if state.known.get(&jid) == Some(&hash)
                || !state.fetching.insert((jid.clone(), hash.clone()))
            {
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let file = this.file(&hash);
            let outcome = if file.is_file() {
                Ok(())
            } else {
                tracing::debug!(%jid, %hash, ?source, "fetching avatar data");
                match this.download(&owner, &hash, &mime, source).await {
                    Ok(bytes) => write_atomically(&file, &bytes).await,
                    Err(why) => Err(why),
                }
            };
            this.state().fetching.remove(&(jid.clone(), hash.clone()));
            match outcome {
                Ok(()) => this.remember(jid, hash).await,
                Err(why) => tracing::warn!(%jid, %hash, %why, "avatar dropped"),
            }
        });
    }

    async fn remember(&self, jid: String, hash: String) {
        if let Err(e) = self
            .shared
            .store
            .set_avatar(self.shared.account_id, jid.clone(), Some(hash.clone()))
            .await
        {
            tracing::error!(error = %e, "cannot store an avatar");
            return;
        }
        self.state().known.insert(jid.clone(), hash.clone());
        tracing::info!(%jid, %hash, "avatar");
        self.emit(jid, Some(self.file(&hash)));
    }

    /// Sends an IQ through the session (it checks who answers, RFC 6120 §8.1.2.1).
    async fn iq(&self, to: &BareJid, payload: IqPayloadKind) -> Result<Option<Element>, String> {
        let to = (*to != self.shared.own).then(|| Jid::from(to.clone()));
        let (reply, answer) = oneshot::channel();
        self.shared
            .internal
            .send(Internal::SendIq { to, payload, reply })
            .map_err(|_| SessionError::Stopped.to_string())?;
        answer
            .await
            .map_err(|_| SessionError::Stopped.to_string())?
            .map_err(|e| e.to_string())
    }

    /// The verified bytes of `owner`'s picture `hash`.
    async fn download(
        &self,
        owner: &BareJid,
        hash: &str,
        mime: &str,
        source: Source,
    ) -> Result<Vec<u8>, String> {
        match source {
            Source::Pep { bytes } => {
                let mut items = pubsub::pubsub::Items::new(ns::AVATAR_DATA);
                items.items.push(pubsub::pubsub::Item {
                    id: Some(ItemId(hash.to_owned())),
                    publisher: None,
                    payload: None,
                });
                let answer = self
                    .iq(owner, IqPayloadKind::Get(PubSub::Items(items).into()))
                    .await?
                    .ok_or("empty answer")?;
                let PubSub::Items(items) = PubSub::try_from(answer).map_err(|e| e.to_string())?
                else {
                    return Err("not an items answer".into());
                };
                let payload = items
                    .items
                    .into_iter()
                    .find(|i| i.id.as_ref().is_some_and(|id| id.0 == hash))
                    .and_then(|i| i.payload)
                    .ok_or("no such item")?;
                let data = Data::try_from(payload).map_err(|e| e.to_string())?.data;
                if data.len() != bytes {
                    return Err(format!("{} bytes, announced {bytes}", data.len()));
                }
                verify(hash, mime, &data)?;
                Ok(data)
            }
            Source::VCard => {
                let answer = self
                    .iq(owner, IqPayloadKind::Get(VCardQuery.into()))
                    .await?
                    .ok_or("empty answer")?;
                let photo = VCard::try_from(answer)
                    .map_err(|e| e.to_string())?
                    .photo
                    .ok_or("no photo in the vCard")?;
                verify(hash, photo.type_.data.trim(), &photo.binval.data)?;
                Ok(photo.binval.data)
            }
        }
    }

    /// After sign-in: ask for the metadata we would not be sent. Contacts who receive
    /// our presence (subscription `from` or `both`) need no asking: our caps say
    /// `urn:xmpp:avatar:metadata+notify`, so their server sends their last metadata
    /// when our presence reaches it (XEP-0163 §4.3.4 and §6.1), offline or not; asking
    /// them too cost a query per contact at every sign-in, all competing with the
    /// history sync. Asked are: us (unless known) and the `others`, whose avatar we
    /// may be able to read but would not be sent.
    pub(crate) fn on_signed_in(&self, others: Vec<String>) {
        let this = self.clone();
        tokio::spawn(async move {
            let own = this.shared.own.to_string();
            let unknown: Vec<BareJid> = std::iter::once(own.clone())
                .filter(|jid| !this.state().known.contains_key(jid))
                .chain(others.into_iter().filter(|jid| *jid != own))
                .filter_map(|jid| BareJid::new(&jid).ok())
                .collect();
            for owner in unknown {
                let mut items = pubsub::pubsub::Items::new(ns::AVATAR_METADATA);
                items.max_items = Some(1);
                let answer = match this
                    .iq(&owner, IqPayloadKind::Get(PubSub::Items(items).into()))
                    .await
                {
                    Ok(Some(answer)) => answer,
                    // item-not-found and the like: no avatar published.
                    Ok(None) | Err(_) => continue,
                };
                let Ok(PubSub::Items(items)) = PubSub::try_from(answer) else {
                    tracing::debug!(%owner, "malformed avatar metadata answer");
                    continue;
                };
                let Some(payload) = items.items.into_iter().last().and_then(|i| i.payload) else {
                    continue;
                };
                match Metadata::try_from(payload) {
                    Ok(metadata) if !metadata.infos.is_empty() => this.on_metadata(owner, metadata),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%owner, error = %e, "malformed avatar metadata"),
                }
            }
        });
    }

    /// Publishes our avatar (XEP-0084 §4.1: data, then metadata), open to everyone who
    /// may see it, caches it and announces it. Returns the cached file.
    pub(crate) async fn publish(
        &self,
        bytes: Vec<u8>,
        mime: String,
    ) -> Result<PathBuf, SessionError> {
        let hash = sha1_hex(&bytes);
        verify(&hash, &mime, &bytes).map_err(SessionError::Refused)?;
        let size = u32::try_from(bytes.len())
            .map_err(|_| SessionError::Refused("the picture is too large".into()))?;
        let own = self.shared.own.clone();
        let data = Data {
            data: bytes.clone(),
        };
        self.publish_item(&own, ns::AVATAR_DATA, &hash, data.into())
            .await?;
        let id = hash
            .parse::<Sha1HexAttribute>()
            .map_err(|e| SessionError::Refused(e.to_string()))?;
        let metadata = Metadata {
            infos: vec![Info {
                bytes: size,
                width: None,
                height: None,
                id,
                type_: mime,
                url: None,
            }],
        };
        let file = self.file(&hash);
        write_atomically(&file, &bytes)
            .await
            .map_err(SessionError::Store)?;
        self.publish_item(&own, ns::AVATAR_METADATA, &hash, metadata.into())
            .await?;
        self.remember(own.to_string(), hash).await;
        // XEP-0153: a new picture means a new presence (Prosody adds the hash to it).
        let _ = self.shared.internal.send(Internal::AvatarPublished);
        Ok(file)
    }

    /// One PEP publish with access model open; when the node exists with another
    /// configuration (precondition-not-met) it goes again without options.
    async fn publish_item(
        &self,
        own: &BareJid,
        node: &str,
        id: &str,
        payload: Element,
    ) -> Result<(), SessionError> {
        let make = |options: bool| {
            let publish = pubsub::pubsub::Publish {
                node: NodeName(node.to_owned()),
                items: vec![pubsub::pubsub::Item {
                    id: Some(ItemId(id.to_owned())),
                    publisher: None,
                    payload: Some(payload.clone()),
                }],
            };
            let publish_options = options.then(|| pubsub::pubsub::PublishOptions {
                form: Some(DataForm::new(
                    DataFormType::Submit,
                    "http://jabber.org/protocol/pubsub#publish-options",
                    vec![Field::text_single("pubsub#access_model", "open")],
                )),
            });
            IqPayloadKind::Set(
                PubSub::Publish {
                    publish,
                    publish_options,
                }
                .into(),
            )
        };
        if self.iq(own, make(true)).await.is_ok() {
            return Ok(());
        }
        tracing::info!(%node, "publishing again without publish-options");
        self.iq(own, make(false))
            .await
            .map(|_| ())
            .map_err(SessionError::Refused)
    }
}

/// Writes `bytes` to `file` through a temporary file, so a reader never sees half a
/// picture.
async fn write_atomically(file: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = file.parent().ok_or("no cache directory")?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = file.with_extension(format!("part{}", rand::random::<u32>()));
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    tokio::fs::rename(&tmp, file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nrest";

    #[test]
    fn sha1_is_lowercase_hex() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn verify_checks_hash_type_and_size() {
        let hash = sha1_hex(PNG);
        assert!(verify(&hash, "image/png", PNG).is_ok());
        assert!(verify(&sha1_hex(b"other"), "image/png", PNG).is_err());
        assert!(verify(&hash, "image/svg+xml", PNG).is_err());
        assert!(verify(&hash, "image/jpeg", PNG).is_err());
        let big = [PNG, &vec![0u8; MAX_BYTES]].concat();
        assert!(verify(&sha1_hex(&big), "image/png", &big).is_err());
    }

    #[test]
    fn usable_info_prefers_png_and_skips_bad_ones() {
        let metadata: Metadata = "<metadata xmlns='urn:xmpp:avatar:metadata'>
              <info bytes='12345' id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/jpeg'/>
              <info bytes='99999999' id='222f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/png'/>
              <info bytes='100' id='333f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/png'
                    url='http://example.org/a.png'/>
              <info bytes='100' id='444f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/svg+xml'/>
              <info bytes='200' id='555f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/png'/>
            </metadata>"
            .parse::<Element>()
            .unwrap()
            .try_into()
            .unwrap();
        let info = usable_info(&metadata).unwrap();
        assert_eq!(info.id.to_hex(), "555f4b3c50d7b0df729d299bc6f8e9ef9066971f");
    }
}
