//! History page reads at 100 000 messages in one conversation (budget: under 2 ms a page),
//! and full-text search over them (budget: under 50 ms, the messaging issue's). Storing
//! an archive page of 250 messages over 50 conversations (a history sync stores 80 such
//! pages; the sync's budget is 1.5 CPU-s in all).

use criterion::{criterion_group, criterion_main, Criterion};
use natter_store::{Account, Direction, HistoryCursor, MessageState, NewMessage, Placement, Store};

const MESSAGES: i64 = 100_000;

/// A fresh store in `dir` with alice's account.
async fn open(dir: &std::path::Path) -> (Store, i64) {
    let store = Store::open(dir.join("bench.db")).await.expect("open");
    let acc = store
        .upsert_account(Account {
            jid: "alice@localhost".into(),
            resource: "bench".into(),
            enabled: true,
            pinned_cert: None,
            ..Default::default()
        })
        .await
        .expect("account");
    (store, acc)
}

fn history(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, acc, conv_id, middle) = rt.block_on(async {
        let (store, acc) = open(dir.path()).await;
        for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(10_000) {
            let batch = chunk
                .iter()
                .map(|i| NewMessage {
                    account_id: acc,
                    peer: "peer1@localhost".into(),
                    direction: if i % 3 == 0 {
                        Direction::Outgoing
                    } else {
                        Direction::Incoming
                    },
                    sender: "peer1@localhost/phone".into(),
                    body: format!("message number {i} with a little text in it"),
                    timestamp: 1_700_000_000_000 + i * 1000,
                    state: MessageState::Received,
                    origin_id: Some(format!("origin-{i}")),
                    stanza_id: Some(format!("archive-{i}")),
                    placement: Placement::Append,
                    reply_to: None,
                })
                .collect();
            store.insert_messages(batch).await.expect("insert");
        }
        let conv = store
            .conversation(acc, "peer1@localhost".into())
            .await
            .expect("conversation");
        let page = store
            .history(conv.id, None, (MESSAGES / 2) as u32)
            .await
            .expect("page");
        let middle = page.last().map(HistoryCursor::from);
        (store, acc, conv.id, middle)
    });
    let mut group = c.benchmark_group("history_100k");
    group.bench_function("newest_page_50", |b| {
        b.iter(|| rt.block_on(store.history(conv_id, None, 50)).expect("page"))
    });
    group.bench_function("middle_page_50", |b| {
        b.iter(|| {
            rt.block_on(store.history(conv_id, middle, 50))
                .expect("page")
        })
    });
    // Every message has "little": the worst case, 100 000 matches for 50 results.
    group.bench_function("search_common_word_50", |b| {
        b.iter(|| {
            rt.block_on(store.search(acc, "little".into(), 50))
                .expect("search")
        })
    });
    group.bench_function("search_rare_words", |b| {
        b.iter(|| {
            rt.block_on(store.search(acc, "number 4242".into(), 50))
                .expect("search")
        })
    });
    group.bench_function("search_prefix_50", |b| {
        b.iter(|| {
            rt.block_on(store.search(acc, "number 42".into(), 50))
                .expect("search")
        })
    });
    group.finish();
}

fn archive_store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, acc) = rt.block_on(open(dir.path()));
    let mut group = c.benchmark_group("archive_store");
    let mut n = 0i64;
    group.bench_function("backfill_page_250", |b| {
        b.iter(|| {
            let page = (0..250)
                .map(|i| {
                    n += 1;
                    NewMessage {
                        account_id: acc,
                        peer: format!("peer{}@localhost", 100 + i % 50),
                        direction: Direction::Incoming,
                        sender: format!("peer{}@localhost/phone", 100 + i % 50),
                        body: format!("archived message {n} with a little text in it"),
                        timestamp: 1_600_000_000_000 - n * 1000,
                        state: MessageState::Received,
                        origin_id: Some(format!("page-origin-{n}")),
                        stanza_id: Some(format!("page-archive-{n}")),
                        placement: Placement::Backfill,
                        reply_to: None,
                    }
                })
                .collect();
            rt.block_on(store.insert_backfill_page(page))
                .expect("store")
        })
    });
    group.finish();
}

criterion_group!(benches, history, archive_store);
criterion_main!(benches);
