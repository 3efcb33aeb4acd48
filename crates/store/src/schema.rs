//! Numbered schema migrations, applied in order and recorded in `PRAGMA user_version`.
//! Never edit a migration that has shipped: add the next one.

use rusqlite::Connection;

use crate::{Result, StoreError};

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts, roster, conversations, messages (with the outbox as a partial index).
    r#"
    CREATE TABLE account (
        id             INTEGER PRIMARY KEY,
        jid            TEXT NOT NULL UNIQUE,
        resource       TEXT NOT NULL,
        host           TEXT,
        port           INTEGER,
        direct_tls     INTEGER NOT NULL DEFAULT 0,
        extra_ca       TEXT,
        enabled        INTEGER NOT NULL DEFAULT 1,
        roster_ver     TEXT,
        archive_cursor TEXT
    );
    CREATE TABLE contact (
        account_id   INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
        jid          TEXT NOT NULL,
        name         TEXT,
        subscription TEXT NOT NULL,
        ask          INTEGER NOT NULL DEFAULT 0,
        groups       TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (account_id, jid)
    ) WITHOUT ROWID;
    CREATE TABLE conversation (
        id            INTEGER PRIMARY KEY,
        account_id    INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
        peer          TEXT NOT NULL,
        last_activity INTEGER NOT NULL DEFAULT 0,
        unread        INTEGER NOT NULL DEFAULT 0,
        UNIQUE (account_id, peer)
    );
    CREATE TABLE message (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversation(id) ON DELETE CASCADE,
        direction       INTEGER NOT NULL,
        sender          TEXT NOT NULL,
        body            TEXT NOT NULL,
        timestamp       INTEGER NOT NULL,
        sort_key        INTEGER NOT NULL,
        state           INTEGER NOT NULL,
        origin_id       TEXT,
        stanza_id       TEXT
    );
    CREATE INDEX message_history ON message(conversation_id, sort_key, id);
    CREATE UNIQUE INDEX message_origin_id
        ON message(conversation_id, direction, origin_id) WHERE origin_id IS NOT NULL;
    CREATE UNIQUE INDEX message_stanza_id
        ON message(conversation_id, stanza_id) WHERE stanza_id IS NOT NULL;
    CREATE INDEX message_outbox ON message(state) WHERE state < 2;
    "#,
    // 2: a server certificate the user chose to trust for this account (SHA-256 of its
    // DER, hex), after being shown who issued it and for which names.
    r#"
    ALTER TABLE account ADD COLUMN pinned_cert TEXT;
    "#,
    // 3: what other messages do to a message: corrections (XEP-0308), retractions
    // (XEP-0424), replies (XEP-0461), reactions (XEP-0444); and full-text search (FTS5,
    // kept in step with `message.body` by triggers).
    r#"
    ALTER TABLE message ADD COLUMN edited INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE message ADD COLUMN retracted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE message ADD COLUMN reply_to TEXT;
    CREATE INDEX message_ref ON message(conversation_id, origin_id) WHERE origin_id IS NOT NULL;
    CREATE TABLE reaction (
        message_id INTEGER NOT NULL REFERENCES message(id) ON DELETE CASCADE,
        sender     TEXT NOT NULL,
        emoji      TEXT NOT NULL,
        UNIQUE (message_id, sender, emoji)
    );
    CREATE VIRTUAL TABLE message_fts USING fts5(
        body, content='message', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    INSERT INTO message_fts(rowid, body) SELECT id, body FROM message;
    CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN
        INSERT INTO message_fts(rowid, body) VALUES (new.id, new.body);
    END;
    CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, body) VALUES ('delete', old.id, old.body);
    END;
    CREATE TRIGGER message_fts_update AFTER UPDATE OF body ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, body) VALUES ('delete', old.id, old.body);
        INSERT INTO message_fts(rowid, body) VALUES (new.id, new.body);
    END;
    "#,
    // 4: whose avatar is which picture (XEP-0084 / XEP-0153): the SHA-1 (lowercase hex)
    // names the verified file in the avatar cache.
    r#"
    CREATE TABLE avatar (
        account_id INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
        jid        TEXT NOT NULL,
        hash       TEXT NOT NULL,
        PRIMARY KEY (account_id, jid)
    ) WITHOUT ROWID;
    "#,
    // 5: a fresh account fetches its whole archive newest first: the archive id before
    // which it goes on after an interruption (NULL: nothing left to fetch).
    r#"
    ALTER TABLE account ADD COLUMN archive_backfill TEXT;
    "#,
    // 6: what each XEP-0115 caps `ver` stands for (verified disco#info features, one per
    // line), shared by all accounts: a `ver` is a hash of its features.
    r#"
    CREATE TABLE caps (
        ver      TEXT PRIMARY KEY,
        features TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 7: new messages are indexed for search by the transaction that stores them (at its
    // end, `Batch::finish`), not by a trigger. FTS5 writes its pending terms out as a new
    // segment at every statement savepoint, and a trigger runs inside one: with it each
    // stored message became a segment of its own to merge, which was two thirds of the
    // cost of storing a message.
    r#"
    DROP TRIGGER message_fts_insert;
    "#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            found,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}
