use super::*;

fn account(jid: &str) -> Account {
    Account {
        jid: jid.into(),
        resource: "natter".into(),
        enabled: true,
        pinned_cert: None,
        ..Default::default()
    }
}

fn incoming(account_id: i64, peer: &str, body: &str, ts: i64, origin: Option<&str>) -> NewMessage {
    NewMessage {
        account_id,
        peer: peer.into(),
        direction: Direction::Incoming,
        sender: format!("{peer}/phone"),
        body: body.into(),
        timestamp: ts,
        state: MessageState::Received,
        origin_id: origin.map(str::to_owned),
        stanza_id: None,
        placement: Placement::Append,
        reply_to: None,
    }
}

/// The bodies of the conversation with `peer`, oldest first (as the chat shows them).
async fn oldest_first(store: &Store, acc: i64, peer: &str) -> Vec<String> {
    let conv = store.conversation(acc, peer.into()).await.unwrap();
    let mut page = store.history(conv.id, None, 100).await.unwrap();
    page.reverse();
    page.into_iter().map(|m| m.body).collect()
}

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("natter.db"))
        .await
        .expect("open");
    (dir, store)
}

#[tokio::test]
async fn migrates_and_reopens() {
    let (dir, store) = open().await;
    let id = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    drop(store);
    let store = Store::open(dir.path().join("natter.db")).await.unwrap();
    let accounts = store.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].id, id);
    assert_eq!(accounts[0].jid, "demo@localhost");
    let conn = rusqlite::Connection::open(dir.path().join("natter.db")).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, schema::VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    match Store::open(&path).await {
        Err(StoreError::TooNew { found: 999, .. }) => {}
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn rejects_a_full_jid_as_account() {
    let (_dir, store) = open().await;
    assert!(matches!(
        store.upsert_account(account("demo@localhost/res")).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn deduplicates_by_origin_id_and_stanza_id() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let first = store
        .insert_message(incoming(acc, "friend@localhost", "hi", 1, Some("o1")))
        .await
        .unwrap();
    assert!(first.is_some());
    let again = store
        .insert_message(incoming(acc, "friend@localhost", "hi", 2, Some("o1")))
        .await
        .unwrap();
    assert!(
        again.is_none(),
        "same origin-id from the same peer is a duplicate"
    );
    // The same origin-id in another conversation is another message.
    let other = store
        .insert_message(incoming(acc, "other@localhost", "hi", 3, Some("o1")))
        .await
        .unwrap();
    assert!(other.is_some());
    let mut with_sid = incoming(acc, "friend@localhost", "archived", 4, None);
    with_sid.stanza_id = Some("s1".into());
    assert!(store
        .insert_message(with_sid.clone())
        .await
        .unwrap()
        .is_some());
    assert!(store.insert_message(with_sid).await.unwrap().is_none());
    assert_eq!(store.message_count(acc).await.unwrap(), 3);
    let conv = store
        .conversation(acc, "friend@localhost".into())
        .await
        .unwrap();
    assert_eq!(conv.unread, 2);
    store.mark_read(conv.id).await.unwrap();
    let conv = store
        .conversation(acc, "friend@localhost".into())
        .await
        .unwrap();
    assert_eq!(conv.unread, 0);
}

#[tokio::test]
async fn history_pages_newest_first() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let batch: Vec<_> = (0..250)
        .map(|i| {
            incoming(
                acc,
                "friend@localhost",
                &format!("m{i}"),
                1000 + i / 2,
                None,
            )
        })
        .collect();
    assert_eq!(store.insert_messages(batch).await.unwrap().len(), 250);
    let conv = store
        .conversation(acc, "friend@localhost".into())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.history(conv.id, cursor, 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(HistoryCursor::from);
        seen.extend(page.into_iter().map(|m| m.body));
    }
    let expected: Vec<_> = (0..250).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn outbox_holds_unacknowledged_messages_in_order() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = NewMessage {
            account_id: acc,
            peer: "friend@localhost".into(),
            direction: Direction::Outgoing,
            sender: "demo@localhost".into(),
            body: format!("out{i}"),
            timestamp: i,
            state: MessageState::Pending,
            origin_id: Some(format!("o{i}")),
            stanza_id: None,
            placement: Placement::Append,
            reply_to: None,
        };
        ids.push(store.insert_message(m).await.unwrap().unwrap().id);
    }
    store
        .set_message_state(ids[0], MessageState::Acked)
        .await
        .unwrap();
    store
        .set_message_state(ids[1], MessageState::Sent)
        .await
        .unwrap();
    let outbox = store.outbox(acc).await.unwrap();
    let bodies: Vec<_> = outbox.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(bodies, ["out1", "out2"]);
    let conv = store
        .conversation(acc, "friend@localhost".into())
        .await
        .unwrap();
    assert_eq!(conv.unread, 0, "own messages are never unread");
}

#[tokio::test]
async fn roster_replace_push_and_remove() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let c = |jid: &str, sub: &str| Contact {
        jid: jid.into(),
        name: Some(jid.to_uppercase()),
        subscription: sub.into(),
        ask: false,
        groups: vec!["Friends".into(), "Work".into()],
    };
    store
        .replace_roster(
            acc,
            vec![c("a@x", "both"), c("b@x", "to")],
            Some("v1".into()),
        )
        .await
        .unwrap();
    store
        .apply_roster_push(acc, c("c@x", "none"), Some("v2".into()))
        .await
        .unwrap();
    store
        .apply_roster_push(acc, c("a@x", "remove"), Some("v3".into()))
        .await
        .unwrap();
    let roster = store.roster(acc).await.unwrap();
    let jids: Vec<_> = roster.iter().map(|c| c.jid.as_str()).collect();
    assert_eq!(jids, ["b@x", "c@x"]);
    assert_eq!(roster[0].groups, ["Friends", "Work"]);
    assert_eq!(
        store.roster_version(acc).await.unwrap().as_deref(),
        Some("v3")
    );
}

#[tokio::test]
async fn appended_messages_sort_after_the_newest_even_with_coarse_stamps() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    // Live at .321 and .400, then an archive result stamped to the second (.000).
    for (body, ts) in [("live1", 10_321), ("live2", 10_400), ("archived", 10_000)] {
        store
            .insert_message(incoming(acc, "f@x", body, ts, None))
            .await
            .unwrap();
    }
    let mut old = incoming(acc, "f@x", "backfilled", 5_000, None);
    old.placement = Placement::Backfill;
    store.insert_message(old).await.unwrap();
    let conv = store.conversation(acc, "f@x".into()).await.unwrap();
    let page = store.history(conv.id, None, 10).await.unwrap();
    let bodies: Vec<_> = page.iter().rev().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["backfilled", "live1", "live2", "archived"]);
    assert_eq!(
        page[0].timestamp, 10_000,
        "the shown time stays the server's"
    );
}

#[tokio::test]
async fn archive_pages_keep_archive_order_around_live_messages() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let live = |body: &str, ts: i64, sid: &str| {
        let mut m = incoming(acc, "f@x", body, ts, Some(body));
        m.stanza_id = Some(sid.into());
        m
    };
    // 92 arrived live; the server died before delivering 93; after the restart 94 arrived
    // live before the catch-up page (93, 94) came. Archive stamps are whole seconds.
    store
        .insert_message(live("92", 58_829, "a92"))
        .await
        .unwrap();
    store
        .insert_message(live("94", 60_804, "a94"))
        .await
        .unwrap();
    let page = vec![
        live("93", 58_000, "a93"),
        live("94", 60_000, "a94"),
        live("95", 60_000, "a95"),
    ];
    let stored = store
        .insert_archive_page(acc, Some("a92".into()), page)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "94 was a duplicate");
    let bodies = oldest_first(&store, acc, "f@x").await;
    assert_eq!(bodies, ["92", "93", "94", "95"]);
}

#[tokio::test]
async fn live_batches_move_the_archive_cursor_to_the_last_stored() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let with_sid = |body: &str, sid: Option<&str>| {
        let mut m = incoming(acc, "f@x", body, 1_000, Some(body));
        m.stanza_id = sid.map(str::to_owned);
        m
    };
    let stored = store
        .insert_live(
            acc,
            vec![
                with_sid("a", Some("s1")),
                with_sid("b", Some("s2")),
                with_sid("c", None),
            ],
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(
        store.archive_cursor(acc).await.unwrap().as_deref(),
        Some("s2")
    );
    // A batch of duplicates stores nothing and leaves the cursor alone.
    let stored = store
        .insert_live(acc, vec![with_sid("a", Some("s1"))])
        .await
        .unwrap();
    assert!(stored.is_empty());
    assert_eq!(
        store.archive_cursor(acc).await.unwrap().as_deref(),
        Some("s2")
    );
    let bodies = oldest_first(&store, acc, "f@x").await;
    assert_eq!(bodies, ["a", "b", "c"]);
}

#[tokio::test]
async fn summaries_show_the_newest_message_and_unread_count_by_activity() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let msg = |peer: &str, body: &str, ts: i64, direction: Direction| NewMessage {
        account_id: acc,
        peer: peer.into(),
        direction,
        sender: peer.into(),
        body: body.into(),
        timestamp: ts,
        state: MessageState::Received,
        origin_id: None,
        stanza_id: None,
        placement: Placement::Append,
        reply_to: None,
    };
    for m in [
        msg("a@localhost", "a1", 10, Direction::Incoming),
        msg("b@localhost", "b1", 20, Direction::Incoming),
        msg("a@localhost", "a2", 30, Direction::Incoming),
        msg("b@localhost", "b2", 25, Direction::Outgoing),
    ] {
        store.insert_message(m).await.unwrap();
    }
    store
        .conversation(acc, "empty@localhost".into())
        .await
        .unwrap();
    let all = store.conversation_summaries(acc).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|s| {
            (
                s.conversation.peer.as_str(),
                s.last.as_ref().map(|m| m.body.as_str()),
                s.conversation.unread,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a@localhost", Some("a2"), 2),
            ("b@localhost", Some("b2"), 1),
            ("empty@localhost", None, 0)
        ]
    );
    let last = all[0].last.as_ref().unwrap();
    assert_eq!(last.peer, "a@localhost");
    assert_eq!(last.direction, Direction::Incoming);
}

#[tokio::test]
async fn only_a_failed_outgoing_message_goes_back_to_the_outbox() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let other = store
        .upsert_account(account("other@localhost"))
        .await
        .unwrap();
    let m = NewMessage {
        account_id: acc,
        peer: "friend@localhost".into(),
        direction: Direction::Outgoing,
        sender: "demo@localhost".into(),
        body: "try again".into(),
        timestamp: 1,
        state: MessageState::Pending,
        origin_id: Some("o1".into()),
        stanza_id: None,
        placement: Placement::Append,
        reply_to: None,
    };
    let id = store.insert_message(m).await.unwrap().unwrap().id;
    assert_eq!(
        store.retry_message(acc, id).await.unwrap(),
        None,
        "not failed"
    );
    store
        .set_message_state(id, MessageState::Failed)
        .await
        .unwrap();
    assert_eq!(
        store.retry_message(other, id).await.unwrap(),
        None,
        "another account's message"
    );
    let entry = store.retry_message(acc, id).await.unwrap().unwrap();
    assert_eq!((entry.message_id, entry.body.as_str()), (id, "try again"));
    assert_eq!(store.outbox(acc).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_pinned_certificate_is_kept_with_the_account() {
    let (_dir, store) = open().await;
    let mut a = account("demo@localhost");
    a.pinned_cert = Some("ab".repeat(32));
    store.upsert_account(a.clone()).await.unwrap();
    let back = store
        .account("demo@localhost".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.pinned_cert, a.pinned_cert);
}

fn outgoing(account_id: i64, peer: &str, body: &str, ts: i64, origin: &str) -> NewMessage {
    NewMessage {
        direction: Direction::Outgoing,
        sender: "demo@localhost/natter".into(),
        state: MessageState::Acked,
        ..incoming(account_id, peer, body, ts, Some(origin))
    }
}

fn reference(account_id: i64, peer: &str, direction: Direction, id: &str) -> Reference {
    Reference {
        account_id,
        peer: peer.into(),
        direction,
        id: id.into(),
    }
}

#[tokio::test]
async fn corrections_and_retractions_touch_only_the_senders_own_message() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    store
        .insert_messages(vec![
            incoming(acc, "friend@localhost", "helo", 1_000, Some("f-1")),
            outgoing(acc, "friend@localhost", "hi", 2_000, "d-1"),
            incoming(acc, "carol@localhost", "carol's", 3_000, Some("c-1")),
        ])
        .await
        .unwrap();

    // friend corrects its own message.
    let fixed = store
        .correct(
            reference(acc, "friend@localhost", Direction::Incoming, "f-1"),
            "hello".into(),
        )
        .await
        .unwrap()
        .expect("corrected");
    assert_eq!((fixed.body.as_str(), fixed.edited), ("hello", true));
    // friend cannot correct ours (it is the other direction) nor carol's (another chat).
    for r in [
        reference(acc, "friend@localhost", Direction::Incoming, "d-1"),
        reference(acc, "friend@localhost", Direction::Incoming, "c-1"),
        reference(acc, "friend@localhost", Direction::Incoming, "nope"),
    ] {
        assert_eq!(
            store.correct(r.clone(), "pwned".into()).await.unwrap(),
            None,
            "{r:?}"
        );
        assert_eq!(store.retract(r).await.unwrap(), None);
    }
    assert_eq!(
        oldest_first(&store, acc, "friend@localhost").await,
        ["hello", "hi"]
    );
    assert_eq!(
        oldest_first(&store, acc, "carol@localhost").await,
        ["carol's"]
    );

    // A retraction leaves a tombstone, takes the text out of search, and cannot be
    // corrected back.
    assert_eq!(
        store.search(acc, "hello".into(), 10).await.unwrap().len(),
        1
    );
    let gone = store
        .retract(reference(
            acc,
            "friend@localhost",
            Direction::Incoming,
            "f-1",
        ))
        .await
        .unwrap()
        .expect("retracted");
    assert!(gone.retracted);
    assert_eq!(gone.body, "");
    assert!(store
        .search(acc, "hello".into(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .correct(
                reference(acc, "friend@localhost", Direction::Incoming, "f-1"),
                "back".into()
            )
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn reactions_replace_per_sender_and_are_bounded() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    store
        .insert_message(outgoing(acc, "friend@localhost", "lunch?", 1_000, "d-1"))
        .await
        .unwrap();
    let r = reference(acc, "friend@localhost", Direction::Outgoing, "d-1");
    store
        .set_reactions(
            r.clone(),
            "friend@localhost".into(),
            vec!["👍".into(), "🎉".into()],
        )
        .await
        .unwrap();
    let m = store
        .set_reactions(r.clone(), "demo@localhost".into(), vec!["👍".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.reactions.len(), 2);
    assert_eq!(m.reactions[0].emoji, "👍");
    assert_eq!(
        m.reactions[0].senders,
        ["friend@localhost", "demo@localhost"]
    );
    // A new set replaces the sender's old one; an empty set takes it back.
    let m = store
        .set_reactions(r.clone(), "friend@localhost".into(), vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.reactions.len(), 1);
    assert_eq!(m.reactions[0].senders, ["demo@localhost"]);
    // Thousands of reactions, or a megabyte-long one, are cut.
    let flood: Vec<String> = (0..5_000)
        .map(|i| format!("e{i}"))
        .chain(["x".repeat(100_000)])
        .collect();
    let m = store
        .set_reactions(r, "friend@localhost".into(), flood)
        .await
        .unwrap()
        .unwrap();
    let friend: usize = m
        .reactions
        .iter()
        .filter(|x| x.senders.iter().any(|s| s == "friend@localhost"))
        .count();
    assert_eq!(friend, MAX_REACTIONS_PER_SENDER);
    assert!(m.reactions.iter().all(|x| x.emoji.len() < 100));
}

#[tokio::test]
async fn markers_move_our_messages_forward_only() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let ids: Vec<i64> = store
        .insert_messages(vec![
            outgoing(acc, "friend@localhost", "one", 1_000, "d-1"),
            outgoing(acc, "friend@localhost", "two", 2_000, "d-2"),
            incoming(acc, "friend@localhost", "three", 3_000, Some("f-3")),
            outgoing(acc, "friend@localhost", "four", 4_000, "d-4"),
        ])
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    let out = |id: &str| reference(acc, "friend@localhost", Direction::Outgoing, id);
    assert_eq!(
        store.mark_delivered(out("d-1")).await.unwrap(),
        [(ids[0], MessageState::Delivered)]
    );
    assert!(
        store.mark_delivered(out("d-1")).await.unwrap().is_empty(),
        "only once"
    );
    // An incoming message's id is not ours to mark.
    assert!(store.mark_delivered(out("f-3")).await.unwrap().is_empty());
    // Displayed marks that one and every earlier one of ours read.
    let read = store.mark_displayed(out("d-2")).await.unwrap();
    assert_eq!(
        read,
        [(ids[0], MessageState::Read), (ids[1], MessageState::Read)]
    );
    // The server's late acknowledgement does not take "read" back.
    assert!(!store
        .set_message_state(ids[1], MessageState::Acked)
        .await
        .unwrap());
    let m = store.message(ids[3]).await.unwrap().unwrap();
    assert_eq!(m.state, MessageState::Acked);
}

#[tokio::test]
async fn replies_quote_the_message_they_answer() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    store
        .insert_message(incoming(
            acc,
            "friend@localhost",
            "lunch at noon?",
            1_000,
            Some("f-1"),
        ))
        .await
        .unwrap();
    let reply = store
        .insert_message(NewMessage {
            reply_to: Some("f-1".into()),
            ..outgoing(acc, "friend@localhost", "yes!", 2_000, "d-1")
        })
        .await
        .unwrap()
        .unwrap();
    let quote = reply.quote.expect("quote");
    assert_eq!(quote.body, "lunch at noon?");
    assert_eq!(quote.direction, Direction::Incoming);
    let conv = store
        .conversation(acc, "friend@localhost".into())
        .await
        .unwrap();
    let page = store.history(conv.id, None, 10).await.unwrap();
    assert_eq!(
        page[0].quote.as_ref().map(|q| q.body.as_str()),
        Some("lunch at noon?")
    );
    // A reply to something we do not have shows no quote, and does not fail.
    let orphan = store
        .insert_message(NewMessage {
            reply_to: Some("unknown".into()),
            ..outgoing(acc, "friend@localhost", "?", 3_000, "d-2")
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(orphan.quote, None);
}

#[tokio::test]
async fn search_takes_the_users_words_literally() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let other = store
        .upsert_account(account("other@localhost"))
        .await
        .unwrap();
    store
        .insert_messages(vec![
            incoming(
                acc,
                "friend@localhost",
                "Let's meet at the Café tomorrow",
                1_000,
                None,
            ),
            incoming(acc, "friend@localhost", "the cafe was closed", 2_000, None),
            incoming(
                acc,
                "carol@localhost",
                "NEAR \"quoted\" AND stuff*",
                3_000,
                None,
            ),
            incoming(
                other,
                "friend@localhost",
                "cafe in another account",
                4_000,
                None,
            ),
        ])
        .await
        .unwrap();
    let hits = store.search(acc, "cafe".into(), 10).await.unwrap();
    assert_eq!(hits.len(), 2, "diacritics folded, one account only");
    assert_eq!(hits[0].message.body, "the cafe was closed", "newest first");
    assert!(
        hits[0].snippet.contains("\u{1}cafe\u{2}"),
        "{:?}",
        hits[0].snippet
    );
    // A prefix of the last word finds; FTS5 operators are plain words.
    assert_eq!(
        store
            .search(acc, "meet tom".into(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .search(acc, "\"quoted\" AND".into(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.search(acc, "NEAR(".into(), 10).await.unwrap().len(),
        1
    );
    assert!(store
        .search(acc, "   ".into(), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .search(acc, "body:x OR".into(), 10)
        .await
        .unwrap()
        .is_empty());
}

/// FTS5's own check that the search index holds exactly the words of `message.body`.
fn search_index_matches(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "INSERT INTO message_fts(message_fts, rank) VALUES ('integrity-check', 1)",
        [],
    )
    .expect("the search index matches the stored messages");
}

#[tokio::test]
async fn every_way_of_storing_a_message_indexes_it_for_search() {
    let (dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let with_sid = |body: &str, ts: i64, sid: &str| NewMessage {
        stanza_id: Some(sid.into()),
        ..incoming(acc, "friend@localhost", body, ts, None)
    };
    store
        .insert_message(incoming(
            acc,
            "friend@localhost",
            "alpha one",
            1_000,
            Some("o1"),
        ))
        .await
        .unwrap()
        .expect("stored");
    store
        .insert_messages(vec![incoming(
            acc,
            "carol@localhost",
            "alpha two",
            2_000,
            None,
        )])
        .await
        .unwrap();
    store
        .insert_archive_page(acc, None, vec![with_sid("alpha three", 3_000, "s3")])
        .await
        .unwrap();
    store
        .insert_live(acc, vec![with_sid("alpha four", 4_000, "s4")])
        .await
        .unwrap();
    store
        .insert_backfill_page(vec![
            with_sid("alpha minus one", 400, "s-1"),
            with_sid("alpha zero", 500, "s0"),
        ])
        .await
        .unwrap();
    // A duplicate is not stored, so not indexed twice.
    let again = store
        .insert_live(acc, vec![with_sid("alpha four", 4_000, "s4")])
        .await
        .unwrap();
    assert!(again.is_empty());
    let hits = store.search(acc, "alpha".into(), 10).await.unwrap();
    let bodies: Vec<_> = hits.iter().map(|h| h.message.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "alpha four",
            "alpha three",
            "alpha two",
            "alpha one",
            "alpha zero",
            "alpha minus one"
        ],
        "newest first, also for history fetched backwards"
    );
    // A correction replaces the words; a retraction removes them.
    store
        .correct(
            reference(acc, "friend@localhost", Direction::Incoming, "o1"),
            "beta one".into(),
        )
        .await
        .unwrap()
        .expect("corrected");
    assert_eq!(
        store.search(acc, "alpha".into(), 10).await.unwrap().len(),
        5
    );
    assert_eq!(store.search(acc, "beta".into(), 10).await.unwrap().len(), 1);
    search_index_matches(&dir.path().join("natter.db"));
}

#[tokio::test]
async fn messages_indexed_before_schema_7_stay_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("natter.db");
    {
        // A database as version 6 left it: indexed by the insert trigger.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute_batch(
            "INSERT INTO account (id, jid, resource) VALUES (1, 'demo@localhost', 'natter');
             INSERT INTO conversation (id, account_id, peer) VALUES (1, 1, 'friend@localhost');
             INSERT INTO message (conversation_id, direction, sender, body, timestamp,
                                  sort_key, state)
             VALUES (1, 0, 'friend@localhost/phone', 'old words', 1000, 1000, 4);",
        )
        .unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    store
        .insert_message(incoming(1, "friend@localhost", "new words", 2_000, None))
        .await
        .unwrap()
        .expect("stored");
    let hits = store.search(1, "words".into(), 10).await.unwrap();
    let bodies: Vec<_> = hits.iter().map(|h| h.message.body.as_str()).collect();
    assert_eq!(bodies, ["new words", "old words"]);
    search_index_matches(&path);
}

#[tokio::test]
async fn releasing_memory_keeps_everything() {
    let (_dir, store) = open().await;
    let acc = store
        .upsert_account(account("demo@localhost"))
        .await
        .unwrap();
    let msgs = (0..300)
        .map(|i| incoming(acc, "friend@localhost", &format!("note {i}"), i, None))
        .collect();
    store.insert_messages(msgs).await.unwrap();
    store.release_memory().await.expect("cache freed");
    // The cached statements and pages are rebuilt on the next use.
    assert_eq!(
        store.search(acc, "note".into(), 500).await.unwrap().len(),
        300
    );
    store
        .insert_message(incoming(acc, "friend@localhost", "after", 301, None))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        oldest_first(&store, acc, "friend@localhost").await.len(),
        100
    );
}
