//! The inbound message path, parse → validate → store, in messages per second.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use natter_core::chat;
use natter_core::store::{Account, Store};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::jid::BareJid;
use tokio_xmpp::parsers::message::Message;

const BATCH: u64 = 500;

fn stanza(i: u64) -> String {
    format!(
        "<message xmlns='jabber:client' type='chat' id='m{i}' from='peer{p}@localhost/phone' \
         to='alice@localhost/natter'><body>Hello number {i}, how are you today?</body>\
         <origin-id xmlns='urn:xmpp:sid:0' id='origin-{i}'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' id='archive-{i}' by='alice@localhost'/>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        p = i % 50
    )
}

fn inbound(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let own = BareJid::new("alice@localhost").expect("jid");
    let (store, acc) = rt.block_on(async {
        let store = Store::open(dir.path().join("bench.db"))
            .await
            .expect("open");
        let acc = store
            .upsert_account(Account {
                jid: "alice@localhost".into(),
                resource: "natter".into(),
                enabled: true,
                pinned_cert: None,
                ..Default::default()
            })
            .await
            .expect("account");
        (store, acc)
    });
    // Parse and validate stages, as the session runs them on each stanza.
    let parse = |xml: String| {
        let el: Element = xml.parse().expect("xml");
        let msg = Message::try_from(el).expect("message");
        chat::classify(&msg, acc, &own, 1_800_000_000_000, chat::Path::Live, None)
            .expect("chat")
            .message
            .expect("a message")
    };
    // Fresh stanzas for every iteration (the store drops duplicates).
    let next = std::cell::Cell::new(0u64);
    let fresh_batch = || {
        let start = next.get();
        next.set(start + BATCH);
        (start..start + BATCH).map(stanza).collect::<Vec<_>>()
    };
    let mut group = c.benchmark_group("inbound");
    group.throughput(Throughput::Elements(BATCH));
    // One store call (one transaction) per message.
    group.bench_function("parse_validate_store", |b| {
        b.iter_batched(
            fresh_batch,
            |batch| {
                rt.block_on(async {
                    for xml in batch {
                        store.insert_message(parse(xml)).await.expect("store");
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    // The live path: a burst of ready messages stored with the archive cursor at once.
    group.bench_function("parse_validate_store_live_batch", |b| {
        b.iter_batched(
            fresh_batch,
            |batch| {
                let parsed: Vec<_> = batch.into_iter().map(parse).collect();
                rt.block_on(store.insert_live(acc, parsed)).expect("store");
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, inbound);
criterion_main!(benches);
