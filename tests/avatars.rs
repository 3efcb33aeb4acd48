//! Avatars against a real Prosody: XEP-0084 publishing and receiving through
//! `natter-core`, the disk cache (a known picture is not fetched again after a
//! restart), and forgeries from a raw stream (`mallory`): a notification not from the
//! owner's bare JID, data whose SHA-1 is not its id (by PEP and by vCard), and a
//! picture announced as too large. None of them may be stored.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natter_core::Event;
use natter_testkit::{befriend, Peer, Prosody};
use relm4::gtk::gdk_pixbuf::{Colorspace, Pixbuf};
use sha1::{Digest, Sha1};
use tokio_xmpp::stanzastream::StanzaStream;

mod common;

use common::{iq_raw, raw, send_raw, server};

const T: Duration = Duration::from_secs(20);

async fn device(p: &Prosody, user: &str) -> Peer {
    let mut peer = Peer::start(p.account(user), &format!("{user}-pw"))
        .await
        .expect("session starts");
    assert!(peer.online().await.is_some(), "{user} signs in");
    peer
}

/// A `side`×`side` PNG of one colour.
fn png(side: i32, rgb: (u8, u8, u8)) -> Vec<u8> {
    let pixbuf = Pixbuf::new(Colorspace::Rgb, false, 8, side, side).expect("pixbuf");
    let (r, g, b) = rgb;
    pixbuf.fill(u32::from_be_bytes([r, g, b, 0xff]));
    pixbuf.save_to_bufferv("png", &[]).expect("png")
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What `natter_core::avatars` logs, to see which pictures were fetched.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// What `natter_core::avatars` logs from now on, from any thread, while the caller
    /// holds the turn: the log is this test binary's global subscriber (a scoped one
    /// misses what the sessions log from other threads), so the tests take turns.
    async fn capture() -> (Log, tokio::sync::MutexGuard<'static, ()>) {
        static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();
        let turn = TURN.lock().await;
        let log = LOG
            .get_or_init(|| {
                let log = Log::default();
                let writer = log.clone();
                let subscriber = tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::new(
                        "natter_core::avatars=debug",
                    ))
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish();
                // Before the harness's own (init_tracing then finds one set).
                let _ = tracing::subscriber::set_global_default(subscriber);
                log
            })
            .clone();
        log.0.lock().unwrap().clear();
        (log, turn)
    }

    fn lines(&self, words: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_owned)
            .collect()
    }
}

fn avatar_of<'a>(e: &'a Event, who: &str) -> Option<&'a Option<std::path::PathBuf>> {
    match e {
        Event::Avatar { jid, path } if jid == who => Some(path),
        _ => None,
    }
}

#[tokio::test]
async fn avatar_is_published_received_cached_and_not_fetched_again() {
    let (log, _turn) = Log::capture().await;
    let p = server(&["demo", "friend"]);
    let mut demo = device(&p, "demo").await;
    let mut friend = device(&p, "friend").await;
    befriend(&mut demo, &mut friend).await.expect("befriend");

    let picture = png(64, (0x35, 0x84, 0xe4));
    let hash = sha1_hex(&picture);
    let own = demo
        .handle
        .set_avatar(picture.clone(), "image/png")
        .await
        .expect("demo publishes an avatar");
    assert_eq!(own.file_name().unwrap().to_str(), Some(hash.as_str()));
    assert_eq!(std::fs::read(&own).unwrap(), picture);
    assert!(demo
        .wait_for(T, |e| avatar_of(e, "demo@localhost").is_some())
        .await
        .is_some());

    // friend learns it (PEP notification or XEP-0153 presence) and caches it verified.
    let ev = friend
        .wait_for(T, |e| {
            avatar_of(e, "demo@localhost").is_some_and(|p| p.is_some())
        })
        .await
        .expect("friend receives demo's avatar");
    let Event::Avatar {
        path: Some(path), ..
    } = ev
    else {
        unreachable!()
    };
    let cached = std::fs::read(&path).expect("cached file");
    assert_eq!(sha1_hex(&cached), hash);
    assert_eq!(path.file_name().unwrap().to_str(), Some(hash.as_str()));
    assert_eq!(
        friend.handle.avatar("demo@localhost").await.unwrap(),
        Some(path.clone())
    );
    let account = friend.handle.account_id();
    assert_eq!(
        friend.store.avatars(account).await.unwrap(),
        vec![("demo@localhost".to_string(), hash.clone())]
    );
    assert_eq!(
        log.lines(&["fetching avatar data", "demo@localhost"]).len(),
        1,
        "fetched once: {:?}",
        log.lines(&["demo@localhost"])
    );

    // After a restart the cache answers: the avatar is there, nothing is fetched.
    let mut friend = friend.restart().await.expect("friend restarts");
    assert!(friend.online().await.is_some());
    assert!(friend
        .wait_for(T, |e| avatar_of(e, "demo@localhost")
            .is_some_and(|p| p.as_deref() == Some(path.as_path())))
        .await
        .is_some());
    // Long enough for the sign-in metadata query, demo's presence and the PEP
    // notifications the server sends on presence to have come and gone.
    friend
        .wait_for(Duration::from_secs(4), |e| {
            matches!(e, Event::Avatar { path: None, .. })
        })
        .await;
    assert_eq!(
        log.lines(&["fetching avatar data", "demo@localhost"]).len(),
        1,
        "no second fetch: {:?}",
        log.lines(&["demo@localhost"])
    );

    // Removing it (empty metadata, XEP-0084 §4.5) removes it.
    let mut demo_raw = raw(&p, "demo").await;
    iq_raw(
        &mut demo_raw,
        "<iq type='set' id='rm' xmlns='jabber:client'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='urn:xmpp:avatar:metadata'><item id='current'>\
         <metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish></pubsub></iq>",
        "rm",
    )
    .await;
    assert!(friend
        .wait_for(T, |e| avatar_of(e, "demo@localhost")
            .is_some_and(|p| p.is_none()))
        .await
        .is_some());
    assert!(friend.store.avatars(account).await.unwrap().is_empty());
}

/// Nobody asks each contact for its avatar at sign-in: our caps ask for metadata
/// notifications, and the server sends the last one of every contact when we sign in,
/// also for a contact that is offline, also to a fresh device.
#[tokio::test]
async fn an_offline_contacts_avatar_arrives_at_sign_in_without_asking() {
    // The log is the file's (a test's own subscriber would take its place).
    let (_log, _turn) = Log::capture().await;
    let p = server(&["owner", "reader"]);
    let mut owner = device(&p, "owner").await;
    let mut reader = device(&p, "reader").await;
    befriend(&mut owner, &mut reader).await.expect("befriend");
    reader.handle.disconnect().await.expect("reader signs off");

    let picture = png(48, (0xe0, 0x1b, 0x24));
    let hash = sha1_hex(&picture);
    owner
        .handle
        .set_avatar(picture, "image/png")
        .await
        .expect("owner publishes an avatar");
    owner.handle.disconnect().await.expect("owner signs off");

    // A new device of reader (empty store and cache) while owner is offline.
    let mut fresh = device(&p, "reader").await;
    let ev = fresh
        .wait_for(T, |e| {
            avatar_of(e, "owner@localhost").is_some_and(|p| p.is_some())
        })
        .await
        .expect("the server's notification brings owner's avatar");
    let Event::Avatar {
        path: Some(path), ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(sha1_hex(&std::fs::read(&path).expect("cached")), hash);
    assert_eq!(
        fresh
            .store
            .avatars(fresh.handle.account_id())
            .await
            .unwrap(),
        vec![("owner@localhost".to_string(), hash)]
    );
}

/// Publishes an item on mallory's own PEP node, open to everyone.
async fn publish(s: &mut StanzaStream, node: &str, id: &str, payload: &str) {
    let xml = format!(
        "<iq type='set' id='pub-{id}' xmlns='jabber:client'>\
         <pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{node}'><item id='{id}'>{payload}</item></publish>\
         <publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='pubsub#access_model'><value>open</value></field>\
         </x></publish-options></pubsub></iq>"
    );
    iq_raw(s, &xml, &format!("pub-{id}")).await;
}

fn metadata(id: &str, bytes: usize) -> String {
    format!(
        "<metadata xmlns='urn:xmpp:avatar:metadata'>\
         <info id='{id}' bytes='{bytes}' type='image/png' width='64' height='64'/></metadata>"
    )
}

#[tokio::test]
async fn forged_and_oversized_avatars_are_not_stored() {
    let (log, _turn) = Log::capture().await;
    let p = server(&["friend", "mallory"]);
    let mut friend = device(&p, "friend").await;
    // mallory is in friend's roster (without presence subscription), so only the
    // checks below keep her out.
    friend
        .handle
        .add_contact("mallory@localhost", None, vec![])
        .await
        .expect("roster set");
    let mut mallory = raw(&p, "mallory").await;
    let friend_full = friend.handle.jid().to_owned();
    let account = friend.handle.account_id();
    let nothing_for_mallory = |friend: &Peer, log: &Log| {
        let store = friend.store.clone();
        let dir = friend.store.path().parent().unwrap().join("avatars");
        let fetched = log
            .lines(&["avatar", "mallory@localhost", "fetching"])
            .len();
        async move {
            let rows = store.avatars(account).await.unwrap();
            assert!(
                rows.iter().all(|(jid, _)| jid != "mallory@localhost"),
                "{rows:?}"
            );
            let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            assert_eq!(files, 0, "nothing cached");
            fetched
        }
    };

    // 1. A good picture in mallory's data node, announced by a message from her full
    //    JID: a PEP notification only ever comes from the owner's bare JID.
    let good = png(64, (0xe0, 0x1b, 0x24));
    let good_id = sha1_hex(&good);
    publish(
        &mut mallory,
        "urn:xmpp:avatar:data",
        &good_id,
        &format!(
            "<data xmlns='urn:xmpp:avatar:data'>{}</data>",
            base64(&good)
        ),
    )
    .await;
    send_raw(
        &mut mallory,
        &format!(
            "<message to='{friend_full}' type='headline' xmlns='jabber:client'>\
             <event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <items node='urn:xmpp:avatar:metadata'><item id='{good_id}'>{}</item></items>\
             </event></message>",
            metadata(&good_id, good.len())
        ),
    )
    .await;
    assert!(friend
        .wait_for(Duration::from_secs(3), |e| avatar_of(
            e,
            "mallory@localhost"
        )
        .is_some())
        .await
        .is_none());
    assert_eq!(
        nothing_for_mallory(&friend, &log).await,
        0,
        "not even fetched"
    );
    assert!(!log
        .lines(&["wrong sender", "mallory@localhost/raw"])
        .is_empty());

    // 2. Data whose SHA-1 is not its id, announced by metadata on her PEP (found by
    //    friend's sign-in query) and by a XEP-0153 hash in a directed presence
    //    (fetched as a vCard, which Prosody makes from the same PEP data).
    let claimed = png(64, (0x26, 0xa2, 0x69));
    let claimed_id = sha1_hex(&claimed);
    let other = png(64, (0x91, 0x41, 0xac));
    publish(
        &mut mallory,
        "urn:xmpp:avatar:data",
        &claimed_id,
        &format!(
            "<data xmlns='urn:xmpp:avatar:data'>{}</data>",
            base64(&other)
        ),
    )
    .await;
    publish(
        &mut mallory,
        "urn:xmpp:avatar:metadata",
        &claimed_id,
        &metadata(&claimed_id, other.len()),
    )
    .await;
    send_raw(
        &mut mallory,
        &format!(
            "<presence to='{friend_full}' xmlns='jabber:client'>\
             <x xmlns='vcard-temp:x:update'><photo>{claimed_id}</photo></x></presence>"
        ),
    )
    .await;
    // The directed presence reaches this session only: its check must be seen before
    // the restart below (which then shows that nothing was kept).
    let deadline = tokio::time::Instant::now() + T;
    while log
        .lines(&["avatar dropped", &claimed_id, "SHA-1"])
        .is_empty()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !log.lines(&["avatar dropped", &claimed_id, "SHA-1"])
            .is_empty(),
        "mismatch seen: {:?}",
        log.lines(&["mallory"])
    );
    let mut friend = friend.restart().await.expect("friend restarts");
    assert!(friend.online().await.is_some());
    assert!(friend
        .wait_for(Duration::from_secs(2), |e| avatar_of(
            e,
            "mallory@localhost"
        )
        .is_some())
        .await
        .is_none());
    nothing_for_mallory(&friend, &log).await;

    // 3. A picture announced as 2 MiB is not even asked for.
    let big_id = sha1_hex(b"too big");
    publish(
        &mut mallory,
        "urn:xmpp:avatar:metadata",
        &big_id,
        &metadata(&big_id, 2 * 1024 * 1024),
    )
    .await;
    let fetches_before = log.lines(&["fetching avatar data", &big_id]).len();
    let mut friend = friend.restart().await.expect("friend restarts");
    assert!(friend.online().await.is_some());
    let deadline = tokio::time::Instant::now() + T;
    while log
        .lines(&["no usable avatar", "mallory@localhost"])
        .is_empty()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!log
        .lines(&["no usable avatar", "mallory@localhost"])
        .is_empty());
    assert_eq!(
        log.lines(&["fetching avatar data", &big_id]).len(),
        fetches_before
    );
    nothing_for_mallory(&friend, &log).await;
}
