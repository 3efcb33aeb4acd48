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
                ..Default::default()
            })
            .await
            .expect("account");
        (store, acc)
    });
    let mut next = 0u64;
    let mut group = c.benchmark_group("inbound");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("parse_validate_store", |b| {
        b.iter_batched(
            || {
                let batch: Vec<String> = (next..next + BATCH).map(stanza).collect();
                next += BATCH;
                batch
            },
            |batch| {
                rt.block_on(async {
                    for xml in batch {
                        let el: Element = xml.parse().expect("xml");
                        let msg = Message::try_from(el).expect("message");
                        let new = chat::inbound(&msg, acc, &own, 1_800_000_000_000).expect("chat");
                        store.insert_message(new).await.expect("store");
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    // The same work with one transaction per batch (what a burst could use).
    group.bench_function("parse_validate_store_one_transaction", |b| {
        b.iter_batched(
            || {
                let batch: Vec<String> = (next..next + BATCH).map(stanza).collect();
                next += BATCH;
                batch
            },
            |batch| {
                let parsed: Vec<_> = batch
                    .into_iter()
                    .map(|xml| {
                        let el: Element = xml.parse().expect("xml");
                        let msg = Message::try_from(el).expect("message");
                        chat::inbound(&msg, acc, &own, 1_800_000_000_000).expect("chat")
                    })
                    .collect();
                rt.block_on(store.insert_messages(parsed)).expect("store");
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, inbound);
criterion_main!(benches);
