//! The queries. Everything here runs on the store thread.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{schema, Result, StoreError};

/// An account as configured by the user. The password is not here: it lives in the
/// Secret Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub id: i64,
    /// Bare JID.
    pub jid: String,
    pub resource: String,
    /// Manual server override (host name or address); `None` means DNS SRV.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Direct TLS (XEP-0368) instead of STARTTLS when `host` is set.
    pub direct_tls: bool,
    /// An extra CA certificate (PEM file) to trust besides the system roots.
    pub extra_ca: Option<String>,
    pub enabled: bool,
    /// The SHA-256 (lowercase hex) of a server certificate the user explicitly chose to
    /// trust although it failed the normal checks.
    pub pinned_cert: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub jid: String,
    pub name: Option<String>,
    /// RFC 6121 subscription: none, to, from, both (or remove in a push).
    pub subscription: String,
    /// An outgoing subscription request is pending.
    pub ask: bool,
    pub groups: Vec<String>,
}

/// A conversation and its newest message (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub conversation: Conversation,
    pub last: Option<Message>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: i64,
    pub account_id: i64,
    pub peer: String,
    pub last_activity: i64,
    pub unread: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// Where a message is on its way. Outgoing: pending → sent → acked (or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageState {
    /// Written to the store, not yet handed to the network.
    Pending = 0,
    /// Written to the connection, not yet acknowledged by the server.
    Sent = 1,
    /// The server acknowledged it (XEP-0198).
    Acked = 2,
    /// The server rejected it.
    Failed = 3,
    /// An incoming message.
    Received = 4,
    /// The recipient's device has it (XEP-0184 receipt or XEP-0333 `received`).
    Delivered = 5,
    /// The recipient has seen it (XEP-0333 `displayed`).
    Read = 6,
}

impl MessageState {
    fn from_i64(v: i64) -> MessageState {
        match v {
            0 => MessageState::Pending,
            1 => MessageState::Sent,
            2 => MessageState::Acked,
            3 => MessageState::Failed,
            5 => MessageState::Delivered,
            6 => MessageState::Read,
            _ => MessageState::Received,
        }
    }
}

/// Where a stored message goes in its conversation's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// It arrived now, after everything already stored (live, sent, forward catch-up):
    /// it sorts after the conversation's newest message even when its server stamp has
    /// a coarser clock (Prosody stamps archives to the second).
    #[default]
    Append,
    /// Older history fetched on demand: it sorts by its own timestamp.
    Backfill,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub account_id: i64,
    /// Bare JID of the other party.
    pub peer: String,
    pub direction: Direction,
    /// Who wrote it (full JID where known).
    pub sender: String,
    pub body: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub state: MessageState,
    pub origin_id: Option<String>,
    pub stanza_id: Option<String>,
    pub placement: Placement,
    /// The id of the message this one answers (XEP-0461).
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub peer: String,
    pub direction: Direction,
    pub sender: String,
    pub body: String,
    pub timestamp: i64,
    /// Position in the conversation (see [`Placement`]).
    pub sort_key: i64,
    pub state: MessageState,
    pub origin_id: Option<String>,
    pub stanza_id: Option<String>,
    /// The sender corrected it (XEP-0308); `body` is the corrected text.
    pub edited: bool,
    /// The sender deleted it for everyone (XEP-0424); `body` is empty.
    pub retracted: bool,
    /// The id of the message this one answers (XEP-0461), and that message if we have it.
    pub reply_to: Option<String>,
    pub quote: Option<Quote>,
    /// Reactions (XEP-0444), most used first.
    pub reactions: Vec<Reaction>,
}

/// The message a reply answers, as the reply shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub direction: Direction,
    pub sender: String,
    pub body: String,
    pub retracted: bool,
}

/// One emoji on a message, and who sent it (bare JIDs; ours is in `senders` too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    pub senders: Vec<String>,
}

/// Which messages a reference (an id in a correction, retraction, reaction, receipt or
/// marker) may point at, and who may point there: the sender of the referencing stanza
/// must be the one who sent the original (or, for receipts and markers, its recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub account_id: i64,
    /// The conversation's bare JID.
    pub peer: String,
    /// The direction of the referenced message.
    pub direction: Direction,
    /// The id the stanza names: an origin-id / message id or our archive's stanza-id.
    pub id: String,
}

/// Position in a conversation's history: messages strictly older than this are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub sort_key: i64,
    pub id: i64,
}

impl From<&Message> for HistoryCursor {
    fn from(m: &Message) -> Self {
        HistoryCursor {
            sort_key: m.sort_key,
            id: m.id,
        }
    }
}

/// An outgoing message not yet acknowledged by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message_id: i64,
    pub peer: String,
    pub body: String,
    pub origin_id: String,
    pub timestamp: i64,
    /// The message it answers (XEP-0461): its id, and who wrote what (for the quote).
    pub reply_to: Option<String>,
    pub quote: Option<Quote>,
}

pub struct Db {
    pub(crate) conn: Connection,
}

pub(crate) const MESSAGE_COLUMNS: &str =
    "m.id, m.conversation_id, c.peer, m.direction, m.sender, m.body, \
                               m.timestamp, m.sort_key, m.state, m.origin_id, m.stanza_id, \
                               m.edited, m.retracted, m.reply_to";

pub(crate) fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    message_from_row_at(r, 0)
}

/// A message whose `MESSAGE_COLUMNS` start at column `at`.
fn message_from_row_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(at)?,
        conversation_id: r.get(at + 1)?,
        peer: r.get(at + 2)?,
        direction: if r.get::<_, i64>(at + 3)? == 1 {
            Direction::Outgoing
        } else {
            Direction::Incoming
        },
        sender: r.get(at + 4)?,
        body: r.get(at + 5)?,
        timestamp: r.get(at + 6)?,
        sort_key: r.get(at + 7)?,
        state: MessageState::from_i64(r.get(at + 8)?),
        origin_id: r.get(at + 9)?,
        stanza_id: r.get(at + 10)?,
        edited: r.get(at + 11)?,
        retracted: r.get(at + 12)?,
        reply_to: r.get(at + 13)?,
        quote: None,
        reactions: Vec::new(),
    })
}

fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        jid: r.get(1)?,
        resource: r.get(2)?,
        host: r.get(3)?,
        port: r
            .get::<_, Option<i64>>(4)?
            .and_then(|p| u16::try_from(p).ok()),
        direct_tls: r.get(5)?,
        extra_ca: r.get(6)?,
        enabled: r.get(7)?,
        pinned_cert: r.get(8)?,
    })
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let mut conn = Connection::open(path)?;
        // WAL lets readers (the bench kit, a second process) look while we write.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        Ok(Db { conn })
    }

    pub fn release_memory(&mut self) -> Result<()> {
        self.conn.execute_batch("PRAGMA shrink_memory")?;
        Ok(())
    }

    pub fn upsert_account(&mut self, a: &Account) -> Result<i64> {
        if a.jid.is_empty() || a.jid.contains('/') {
            return Err(StoreError::Invalid(format!("not a bare JID: {:?}", a.jid)));
        }
        self.conn.execute(
            "INSERT INTO account (jid, resource, host, port, direct_tls, extra_ca, enabled,
               pinned_cert)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(jid) DO UPDATE SET resource = excluded.resource, host = excluded.host,
               port = excluded.port, direct_tls = excluded.direct_tls,
               extra_ca = excluded.extra_ca, enabled = excluded.enabled,
               pinned_cert = excluded.pinned_cert",
            params![
                a.jid,
                a.resource,
                a.host,
                a.port.map(i64::from),
                a.direct_tls,
                a.extra_ca,
                a.enabled,
                a.pinned_cert
            ],
        )?;
        Ok(self
            .conn
            .query_row("SELECT id FROM account WHERE jid = ?1", [&a.jid], |r| {
                r.get(0)
            })?)
    }

    pub fn accounts(&mut self) -> Result<Vec<Account>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, jid, resource, host, port, direct_tls, extra_ca, enabled, pinned_cert
             FROM account ORDER BY id",
        )?;
        let rows = st.query_map([], account_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn account(&mut self, jid: &str) -> Result<Option<Account>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, jid, resource, host, port, direct_tls, extra_ca, enabled, pinned_cert
                 FROM account WHERE jid = ?1",
                [jid],
                account_from_row,
            )
            .optional()?)
    }

    pub fn remove_account(&mut self, account_id: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM account WHERE id = ?1", [account_id])?;
        Ok(())
    }

    pub fn roster_version(&mut self, account_id: i64) -> Result<Option<String>> {
        Ok(self.conn.query_row(
            "SELECT roster_ver FROM account WHERE id = ?1",
            [account_id],
            |r| r.get(0),
        )?)
    }

    pub fn set_roster_version(&mut self, account_id: i64, ver: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE account SET roster_ver = ?2 WHERE id = ?1",
            params![account_id, ver],
        )?;
        Ok(())
    }

    fn put_contact(tx: &rusqlite::Transaction<'_>, account_id: i64, c: &Contact) -> Result<()> {
        tx.execute(
            "INSERT INTO contact (account_id, jid, name, subscription, ask, groups)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(account_id, jid) DO UPDATE SET name = excluded.name,
               subscription = excluded.subscription, ask = excluded.ask, groups = excluded.groups",
            params![
                account_id,
                c.jid,
                c.name,
                c.subscription,
                c.ask,
                c.groups.join("\n")
            ],
        )?;
        Ok(())
    }

    pub fn replace_roster(
        &mut self,
        account_id: i64,
        contacts: &[Contact],
        ver: Option<&str>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM contact WHERE account_id = ?1", [account_id])?;
        for c in contacts {
            Self::put_contact(&tx, account_id, c)?;
        }
        tx.execute(
            "UPDATE account SET roster_ver = ?2 WHERE id = ?1",
            params![account_id, ver],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn apply_roster_push(
        &mut self,
        account_id: i64,
        c: &Contact,
        ver: Option<&str>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        if c.subscription == "remove" {
            tx.execute(
                "DELETE FROM contact WHERE account_id = ?1 AND jid = ?2",
                params![account_id, c.jid],
            )?;
        } else {
            Self::put_contact(&tx, account_id, c)?;
        }
        if ver.is_some() {
            tx.execute(
                "UPDATE account SET roster_ver = ?2 WHERE id = ?1",
                params![account_id, ver],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn roster(&mut self, account_id: i64) -> Result<Vec<Contact>> {
        let mut st = self.conn.prepare_cached(
            "SELECT jid, name, subscription, ask, groups FROM contact
             WHERE account_id = ?1 ORDER BY jid",
        )?;
        let rows = st.query_map([account_id], |r| {
            let groups: String = r.get(4)?;
            Ok(Contact {
                jid: r.get(0)?,
                name: r.get(1)?,
                subscription: r.get(2)?,
                ask: r.get(3)?,
                groups: groups
                    .split('\n')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn conversation_id(conn: &Connection, account_id: i64, peer: &str) -> Result<i64> {
        let found = conn
            .prepare_cached("SELECT id FROM conversation WHERE account_id = ?1 AND peer = ?2")?
            .query_row(params![account_id, peer], |r| r.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok(id);
        }
        conn.prepare_cached("INSERT INTO conversation (account_id, peer) VALUES (?1, ?2)")?
            .execute(params![account_id, peer])?;
        Ok(conn.last_insert_rowid())
    }

    pub fn conversation(&mut self, account_id: i64, peer: &str) -> Result<Conversation> {
        let id = Self::conversation_id(&self.conn, account_id, peer)?;
        Ok(self.conn.query_row(
            "SELECT id, account_id, peer, last_activity, unread FROM conversation WHERE id = ?1",
            [id],
            |r| {
                Ok(Conversation {
                    id: r.get(0)?,
                    account_id: r.get(1)?,
                    peer: r.get(2)?,
                    last_activity: r.get(3)?,
                    unread: r.get(4)?,
                })
            },
        )?)
    }

    /// The conversation with `peer`, without creating it.
    pub fn find_conversation(&mut self, account_id: i64, peer: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM conversation WHERE account_id = ?1 AND peer = ?2",
                params![account_id, peer],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn conversations(&mut self, account_id: i64) -> Result<Vec<Conversation>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, account_id, peer, last_activity, unread FROM conversation
             WHERE account_id = ?1 ORDER BY last_activity DESC",
        )?;
        let rows = st.query_map([account_id], |r| {
            Ok(Conversation {
                id: r.get(0)?,
                account_id: r.get(1)?,
                peer: r.get(2)?,
                last_activity: r.get(3)?,
                unread: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every conversation with its newest message, most recent activity first: what
    /// the conversation list shows.
    pub fn conversation_summaries(&mut self, account_id: i64) -> Result<Vec<ConversationSummary>> {
        let sql = format!(
            "SELECT c.id, c.account_id, c.peer, c.last_activity, c.unread, {MESSAGE_COLUMNS}
             FROM conversation c LEFT JOIN message m ON m.id = (
               SELECT id FROM message WHERE conversation_id = c.id
               ORDER BY sort_key DESC, id DESC LIMIT 1)
             WHERE c.account_id = ?1 ORDER BY c.last_activity DESC"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([account_id], |r| {
            let conversation = Conversation {
                id: r.get(0)?,
                account_id: r.get(1)?,
                peer: r.get(2)?,
                last_activity: r.get(3)?,
                unread: r.get(4)?,
            };
            let last = match r.get::<_, Option<i64>>(5)? {
                Some(_) => Some(message_from_row_at(r, 5)?),
                None => None,
            };
            Ok(ConversationSummary { conversation, last })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Puts a failed outgoing message back in the outbox. Returns its outbox entry, or
    /// `None` when `id` is not a failed outgoing message of this account.
    pub fn retry_message(&mut self, account_id: i64, id: i64) -> Result<Option<OutboxEntry>> {
        let updated = self.conn.execute(
            "UPDATE message SET state = 0 WHERE id = ?1 AND state = 3 AND direction = 1
             AND conversation_id IN (SELECT id FROM conversation WHERE account_id = ?2)",
            params![id, account_id],
        )?;
        if updated == 0 {
            return Ok(None);
        }
        Ok(self
            .outbox(account_id)?
            .into_iter()
            .find(|e| e.message_id == id))
    }

    fn insert_one(
        conn: &Connection,
        batch: &mut Batch,
        m: &NewMessage,
        key_override: Option<i64>,
        id: Option<i64>,
    ) -> Result<Option<Message>> {
        let conversation_id = batch.conversation(conn, m.account_id, &m.peer)?;
        let direction = i64::from(m.direction == Direction::Outgoing);
        let sort_key = match (key_override, m.placement) {
            (Some(key), _) => key,
            (None, Placement::Backfill) => m.timestamp,
            (None, Placement::Append) => {
                let newest: Option<i64> = conn
                    .prepare_cached("SELECT max(sort_key) FROM message WHERE conversation_id = ?1")?
                    .query_row([conversation_id], |r| r.get(0))?;
                newest.map_or(m.timestamp, |n| m.timestamp.max(n.saturating_add(1)))
            }
        };
        let inserted = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO message
                 (id, conversation_id, direction, sender, body, timestamp, sort_key, state,
                  origin_id, stanza_id, reply_to)
                 VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                conversation_id,
                direction,
                m.sender,
                m.body,
                m.timestamp,
                sort_key,
                m.state as i64,
                m.origin_id,
                m.stanza_id,
                m.reply_to,
                id
            ])?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = conn.last_insert_rowid();
        batch.index(id, &m.body);
        batch.touch(
            conversation_id,
            m.timestamp,
            m.direction == Direction::Incoming,
        );
        let mut stored = Message {
            id,
            conversation_id,
            peer: m.peer.clone(),
            direction: m.direction,
            sender: m.sender.clone(),
            body: m.body.clone(),
            timestamp: m.timestamp,
            sort_key,
            state: m.state,
            origin_id: m.origin_id.clone(),
            stanza_id: m.stanza_id.clone(),
            edited: false,
            retracted: false,
            reply_to: m.reply_to.clone(),
            quote: None,
            reactions: Vec::new(),
        };
        if stored.reply_to.is_some() {
            Self::decorate(conn, std::slice::from_mut(&mut stored))?;
        }
        Ok(Some(stored))
    }

    pub fn insert_message(&mut self, m: &NewMessage) -> Result<Option<Message>> {
        let tx = self.conn.transaction()?;
        let mut batch = Batch::default();
        let out = Self::insert_one(&tx, &mut batch, m, None, None)?;
        batch.finish(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn insert_messages(&mut self, msgs: &[NewMessage]) -> Result<Vec<Message>> {
        let tx = self.conn.transaction()?;
        let mut batch = Batch::default();
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            if let Some(stored) = Self::insert_one(&tx, &mut batch, m, None, None)? {
                out.push(stored);
            }
        }
        batch.finish(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// The position of an already stored copy of `m` (same archive id, or same origin-id
    /// from the same side), if any.
    fn stored_key(conn: &Connection, m: &NewMessage) -> Result<Option<i64>> {
        let direction = i64::from(m.direction == Direction::Outgoing);
        Ok(conn
            .prepare_cached(
                "SELECT m.sort_key FROM message m JOIN conversation c ON c.id = m.conversation_id
                 WHERE c.account_id = ?1 AND c.peer = ?2
                   AND ((?3 IS NOT NULL AND m.stanza_id = ?3)
                     OR (?4 IS NOT NULL AND m.direction = ?5 AND m.origin_id = ?4))
                 LIMIT 1",
            )?
            .query_row(
                params![m.account_id, m.peer, m.stanza_id, m.origin_id, direction],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores a forward page of our archive (XEP-0313) in archive order: each message goes
    /// after the one before it in the archive, starting after the message whose archive
    /// id is `after`. Server stamps have one-second resolution, so a message archived just
    /// after one we received live must not sort before it, and one that reached us only
    /// through the archive must not sort after live messages archived later.
    pub fn insert_archive_page(
        &mut self,
        account_id: i64,
        after: Option<&str>,
        msgs: &[NewMessage],
    ) -> Result<Vec<Message>> {
        let tx = self.conn.transaction()?;
        let mut anchor: Option<i64> = match after.filter(|a| !a.is_empty()) {
            Some(id) => tx
                .prepare_cached(
                    "SELECT m.sort_key FROM message m JOIN conversation c
                       ON c.id = m.conversation_id
                     WHERE c.account_id = ?1 AND m.stanza_id = ?2 LIMIT 1",
                )?
                .query_row(params![account_id, id], |r| r.get(0))
                .optional()?,
            None => None,
        };
        let mut batch = Batch::default();
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let key = anchor.map_or(m.timestamp, |a| m.timestamp.max(a.saturating_add(1)));
            match Self::insert_one(&tx, &mut batch, m, Some(key), None)? {
                Some(stored) => {
                    anchor = Some(stored.sort_key);
                    out.push(stored);
                }
                None => {
                    if let Some(existing) = Self::stored_key(&tx, m)? {
                        anchor = Some(anchor.map_or(existing, |a| a.max(existing)));
                    }
                }
            }
        }
        batch.finish(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// The lowest message id stored (1 when there is none: the first id SQLite gives).
    fn lowest_id(conn: &Connection) -> Result<i64> {
        Ok(conn
            .prepare_cached("SELECT coalesce(min(id), 1) FROM message")?
            .query_row([], |r| r.get(0))?)
    }

    /// Stores a page of older history (oldest first) fetched backwards from our archive:
    /// each message sorts before everything already stored in its conversation, which
    /// came later in the archive. (Server stamps have one-second resolution: by stamp
    /// alone, a page and the one after it would interleave.)
    pub fn insert_backfill_page(&mut self, msgs: &[NewMessage]) -> Result<Vec<Message>> {
        let tx = self.conn.transaction()?;
        let mut batch = Batch::default();
        let mut ceiling: HashMap<(i64, String), Option<i64>> = HashMap::new();
        let mut out = Vec::with_capacity(msgs.len());
        // Older history gets ids below everything stored, in time order, so that id order
        // stays time order (search lists by id, newest first); a duplicate leaves a gap.
        let base = Self::lowest_id(&tx)?.saturating_sub(msgs.len() as i64);
        for (i, m) in msgs.iter().enumerate().rev() {
            let slot = (m.account_id, m.peer.clone());
            let below = match ceiling.get(&slot) {
                Some(c) => *c,
                None => {
                    let conversation_id = batch.conversation(&tx, m.account_id, &m.peer)?;
                    tx.prepare_cached(
                        "SELECT min(sort_key) FROM message WHERE conversation_id = ?1",
                    )?
                    .query_row([conversation_id], |r| r.get(0))?
                }
            };
            let key = below.map_or(m.timestamp, |c| m.timestamp.min(c.saturating_sub(1)));
            match Self::insert_one(&tx, &mut batch, m, Some(key), Some(base + i as i64))? {
                Some(stored) => {
                    ceiling.insert(slot, Some(stored.sort_key));
                    out.push(stored);
                }
                None => {
                    ceiling.insert(slot, below);
                }
            }
        }
        batch.finish(&tx)?;
        tx.commit()?;
        out.reverse();
        Ok(out)
    }

    /// Stores messages received live, in one transaction, and moves the account's archive
    /// cursor to the last stored one that carries our archive's id.
    pub fn insert_live(&mut self, account_id: i64, msgs: &[NewMessage]) -> Result<Vec<Message>> {
        let tx = self.conn.transaction()?;
        let mut batch = Batch::default();
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            if let Some(stored) = Self::insert_one(&tx, &mut batch, m, None, None)? {
                out.push(stored);
            }
        }
        batch.finish(&tx)?;
        if let Some(id) = out.iter().rev().find_map(|m| m.stanza_id.as_deref()) {
            tx.execute(
                "UPDATE account SET archive_cursor = ?2 WHERE id = ?1",
                params![account_id, id],
            )?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Moves a message to `state`; `false` when nothing changed. A message the
    /// recipient already has (delivered, read) never goes back to sent or acknowledged:
    /// receipts can overtake the server's acknowledgement; nor does one that bounced
    /// (failed): the bounce can overtake it too. A retry resets the state itself.
    pub fn set_message_state(&mut self, id: i64, state: MessageState) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE message SET state = ?2 WHERE id = ?1 AND state != ?2
                   AND NOT (state IN (5, 6) AND ?2 IN (1, 2))
                   AND NOT (state = 3 AND ?2 IN (1, 2))",
            )?
            .execute(params![id, state as i64])?;
        Ok(changed > 0)
    }

    pub fn set_stanza_id(&mut self, id: i64, stanza_id: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE OR IGNORE message SET stanza_id = ?2 WHERE id = ?1")?
            .execute(params![id, stanza_id])?;
        Ok(())
    }

    pub fn outbox(&mut self, account_id: i64) -> Result<Vec<OutboxEntry>> {
        let mut st = self.conn.prepare_cached(
            "SELECT m.id, c.peer, m.body, m.origin_id, m.timestamp, m.reply_to,
               q.direction, q.sender, q.body, q.retracted
             FROM message m JOIN conversation c ON c.id = m.conversation_id
             LEFT JOIN message q ON q.id = (
               SELECT id FROM message WHERE m.reply_to IS NOT NULL
                 AND conversation_id = m.conversation_id
                 AND (origin_id = m.reply_to OR stanza_id = m.reply_to) ORDER BY id LIMIT 1)
             WHERE m.state < 2 AND m.direction = 1 AND c.account_id = ?1
             ORDER BY m.id",
        )?;
        let rows = st.query_map([account_id], |r| {
            Ok(OutboxEntry {
                message_id: r.get(0)?,
                peer: r.get(1)?,
                body: r.get(2)?,
                origin_id: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                timestamp: r.get(4)?,
                reply_to: r.get(5)?,
                quote: match r.get::<_, Option<i64>>(6)? {
                    Some(d) => Some(Quote {
                        direction: if d == 1 {
                            Direction::Outgoing
                        } else {
                            Direction::Incoming
                        },
                        sender: r.get(7)?,
                        body: r.get(8)?,
                        retracted: r.get(9)?,
                    }),
                    None => None,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn history(
        &mut self,
        conversation_id: i64,
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let (key, id) = before.map_or((i64::MAX, i64::MAX), |c| (c.sort_key, c.id));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM message m JOIN conversation c ON c.id = m.conversation_id
             WHERE m.conversation_id = ?1 AND (m.sort_key, m.id) < (?2, ?3)
             ORDER BY m.sort_key DESC, m.id DESC LIMIT ?4"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![conversation_id, key, id, limit], message_from_row)?;
        let mut page: Vec<Message> = rows.collect::<rusqlite::Result<_>>()?;
        Self::decorate(&self.conn, &mut page)?;
        Ok(page)
    }

    /// The oldest `limit` messages of a conversation newer than `after` (oldest first):
    /// the view scrolled down from a message shown in its context.
    pub fn history_after(
        &mut self,
        conversation_id: i64,
        after: HistoryCursor,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM message m JOIN conversation c ON c.id = m.conversation_id
             WHERE m.conversation_id = ?1 AND (m.sort_key, m.id) > (?2, ?3)
             ORDER BY m.sort_key ASC, m.id ASC LIMIT ?4"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![conversation_id, after.sort_key, after.id, limit],
            message_from_row,
        )?;
        let mut page: Vec<Message> = rows.collect::<rusqlite::Result<_>>()?;
        Self::decorate(&self.conn, &mut page)?;
        Ok(page)
    }

    pub fn message_count(&mut self, account_id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM message m JOIN conversation c ON c.id = m.conversation_id
             WHERE c.account_id = ?1",
            [account_id],
            |r| r.get(0),
        )?)
    }

    pub fn archive_cursor(&mut self, account_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT archive_cursor FROM account WHERE id = ?1",
                [account_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Where fetching the archive backwards goes on (see migration 5); `None` when the
    /// whole archive is here.
    pub fn archive_backfill(&mut self, account_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT archive_backfill FROM account WHERE id = ?1",
                [account_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn set_archive_backfill(&mut self, account_id: i64, before: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE account SET archive_backfill = ?2 WHERE id = ?1",
            params![account_id, before],
        )?;
        Ok(())
    }

    /// The archive id of a conversation's oldest archived message (where fetching its
    /// older history from the server starts).
    pub fn oldest_archived(&mut self, conversation_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT stanza_id FROM message WHERE conversation_id = ?1
                   AND stanza_id IS NOT NULL ORDER BY sort_key ASC, id ASC LIMIT 1",
                [conversation_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_archive_cursor(&mut self, account_id: i64, id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE account SET archive_cursor = ?2 WHERE id = ?1",
            params![account_id, id],
        )?;
        Ok(())
    }

    pub fn mark_read(&mut self, conversation_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE conversation SET unread = 0 WHERE id = ?1",
            [conversation_id],
        )?;
        Ok(())
    }
}

/// What one transaction of inserts learns and owes: the conversations' ids by peer, and
/// each touched conversation's newest activity and new unread count, written once at the
/// end (`finish`) rather than once per message.
#[derive(Default)]
struct Batch {
    /// Account id → peer → conversation id.
    ids: HashMap<i64, HashMap<String, i64>>,
    /// Conversation id → (newest timestamp, incoming messages added).
    touched: HashMap<i64, (i64, i64)>,
    /// Stored messages still to index for search: id, body.
    unindexed: Vec<(i64, String)>,
}

impl Batch {
    fn conversation(&mut self, conn: &Connection, account_id: i64, peer: &str) -> Result<i64> {
        let known = self.ids.entry(account_id).or_default();
        if let Some(id) = known.get(peer) {
            return Ok(*id);
        }
        let id = Db::conversation_id(conn, account_id, peer)?;
        known.insert(peer.to_owned(), id);
        Ok(id)
    }

    fn touch(&mut self, conversation_id: i64, timestamp: i64, incoming: bool) {
        let t = self
            .touched
            .entry(conversation_id)
            .or_insert((timestamp, 0));
        t.0 = t.0.max(timestamp);
        t.1 += i64::from(incoming);
    }

    fn index(&mut self, id: i64, body: &str) {
        self.unindexed.push((id, body.to_owned()));
    }

    fn finish(mut self, conn: &Connection) -> Result<()> {
        // Indexed here, not by a trigger (see schema migration 7), and in id order: FTS5
        // writes its pending terms out as a segment whenever a rowid is not above the last
        // one, and history fetched backwards is stored newest first, each below the last.
        self.unindexed.sort_unstable_by_key(|(id, _)| *id);
        let mut index =
            conn.prepare_cached("INSERT INTO message_fts(rowid, body) VALUES (?1, ?2)")?;
        for (id, body) in &self.unindexed {
            index.execute(params![id, body])?;
        }
        let mut update = conn.prepare_cached(
            "UPDATE conversation SET last_activity = max(last_activity, ?2),
               unread = unread + ?3 WHERE id = ?1",
        )?;
        for (id, (newest, unread)) in self.touched {
            update.execute(params![id, newest, unread])?;
        }
        Ok(())
    }
}
