//! What later stanzas do to stored messages: corrections (XEP-0308), retractions
//! (XEP-0424), reactions (XEP-0444), receipts (XEP-0184) and markers (XEP-0333); the
//! quotes of replies (XEP-0461); and full-text search.
//!
//! Every change goes through a [`Reference`]: an id is looked up only among the messages
//! of one conversation that went in one direction, so a contact can only touch what it
//! sent (corrections, retractions) or what it received (receipts, markers), and never a
//! message of another conversation.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::db::{
    message_from_row, Db, Direction, Message, MessageState, Quote, Reaction, Reference,
};
use crate::Result;

/// A message found by [`Db::search`], with the matching words marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub message: Message,
    /// Part of the body around the match; the matched words are between `\u{1}` and
    /// `\u{2}` (the UI turns them into highlighting after escaping the text).
    pub snippet: String,
}

/// Emoji reactions one sender may put on one message (XEP-0444 leaves it open; a
/// hostile peer must not make us store thousands).
pub const MAX_REACTIONS_PER_SENDER: usize = 20;
/// Longest single reaction kept, in characters (an emoji with modifiers is a few).
pub const MAX_REACTION_CHARS: usize = 32;

fn direction_value(d: Direction) -> i64 {
    i64::from(d == Direction::Outgoing)
}

impl Db {
    /// The row id of the message `r` names, if it is in that conversation and direction.
    fn find_reference(conn: &Connection, r: &Reference) -> Result<Option<i64>> {
        Ok(conn
            .prepare_cached(
                "SELECT m.id FROM message m JOIN conversation c ON c.id = m.conversation_id
                 WHERE c.account_id = ?1 AND c.peer = ?2 AND m.direction = ?3
                   AND (m.origin_id = ?4 OR m.stanza_id = ?4)
                 LIMIT 1",
            )?
            .query_row(
                params![r.account_id, r.peer, direction_value(r.direction), r.id],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// One stored message, with its quote and reactions.
    pub fn message(&mut self, id: i64) -> Result<Option<Message>> {
        Self::message_in(&self.conn, id)
    }

    fn message_in(conn: &Connection, id: i64) -> Result<Option<Message>> {
        let sql = format!(
            "SELECT {} FROM message m JOIN conversation c ON c.id = m.conversation_id
             WHERE m.id = ?1",
            crate::db::MESSAGE_COLUMNS
        );
        let found = conn
            .prepare_cached(&sql)?
            .query_row([id], message_from_row)
            .optional()?;
        Ok(match found {
            Some(mut m) => {
                Self::decorate(conn, std::slice::from_mut(&mut m))?;
                Some(m)
            }
            None => None,
        })
    }

    /// Fills in the quotes of replies and the reactions of a page of messages.
    pub(crate) fn decorate(conn: &Connection, page: &mut [Message]) -> Result<()> {
        if page.is_empty() {
            return Ok(());
        }
        let mut quote_st = conn.prepare_cached(
            "SELECT direction, sender, body, retracted FROM message
             WHERE conversation_id = ?1 AND (origin_id = ?2 OR stanza_id = ?2)
             ORDER BY id LIMIT 1",
        )?;
        let mut reaction_st = conn.prepare_cached(
            "SELECT emoji, sender FROM reaction WHERE message_id = ?1 ORDER BY rowid",
        )?;
        for m in page.iter_mut() {
            if let Some(to) = &m.reply_to {
                m.quote = quote_st
                    .query_row(params![m.conversation_id, to], |r| {
                        Ok(Quote {
                            direction: if r.get::<_, i64>(0)? == 1 {
                                Direction::Outgoing
                            } else {
                                Direction::Incoming
                            },
                            sender: r.get(1)?,
                            body: r.get(2)?,
                            retracted: r.get(3)?,
                        })
                    })
                    .optional()?;
            }
            let mut by_emoji: Vec<Reaction> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            let rows = reaction_st.query_map([m.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (emoji, sender) = row?;
                match index.get(&emoji) {
                    Some(&i) => by_emoji[i].senders.push(sender),
                    None => {
                        index.insert(emoji.clone(), by_emoji.len());
                        by_emoji.push(Reaction {
                            emoji,
                            senders: vec![sender],
                        });
                    }
                }
            }
            // Most used first; equal counts keep the order they were first given.
            by_emoji.sort_by_key(|r| std::cmp::Reverse(r.senders.len()));
            m.reactions = by_emoji;
        }
        Ok(())
    }

    /// XEP-0308: replaces the text of the message `r` names. `None` when there is no such
    /// message (or it was deleted): the correction is then ignored, never stored as new.
    pub fn correct(&mut self, r: &Reference, body: &str) -> Result<Option<Message>> {
        let tx = self.conn.transaction()?;
        let Some(id) = Self::find_reference(&tx, r)? else {
            return Ok(None);
        };
        let changed = tx
            .prepare_cached(
                "UPDATE message SET body = ?2, edited = 1 WHERE id = ?1 AND retracted = 0",
            )?
            .execute(params![id, body])?;
        let out = if changed > 0 {
            Self::message_in(&tx, id)?
        } else {
            None
        };
        tx.commit()?;
        Ok(out)
    }

    /// XEP-0424: empties the message `r` names and leaves a tombstone; its reactions go.
    pub fn retract(&mut self, r: &Reference) -> Result<Option<Message>> {
        let tx = self.conn.transaction()?;
        let Some(id) = Self::find_reference(&tx, r)? else {
            return Ok(None);
        };
        let changed = tx
            .prepare_cached(
                "UPDATE message SET body = '', retracted = 1 WHERE id = ?1 AND retracted = 0",
            )?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM reaction WHERE message_id = ?1")?
            .execute([id])?;
        let out = if changed > 0 {
            Self::message_in(&tx, id)?
        } else {
            None
        };
        tx.commit()?;
        Ok(out)
    }

    /// XEP-0444: `sender` (a bare JID) now reacts to the message `r` names with exactly
    /// `emojis` (an empty list takes its reactions back). Over-long or too many reactions
    /// are cut. Returns the message with its new reactions.
    pub fn set_reactions(
        &mut self,
        r: &Reference,
        sender: &str,
        emojis: &[String],
    ) -> Result<Option<Message>> {
        let tx = self.conn.transaction()?;
        let Some(id) = Self::find_reference(&tx, r)? else {
            return Ok(None);
        };
        tx.prepare_cached("DELETE FROM reaction WHERE message_id = ?1 AND sender = ?2")?
            .execute(params![id, sender])?;
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO reaction (message_id, sender, emoji) VALUES (?1, ?2, ?3)",
        )?;
        for emoji in emojis
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty() && e.chars().count() <= MAX_REACTION_CHARS)
            .take(MAX_REACTIONS_PER_SENDER)
        {
            insert.execute(params![id, sender, emoji])?;
        }
        drop(insert);
        let out = Self::message_in(&tx, id)?;
        tx.commit()?;
        Ok(out)
    }

    /// A receipt (XEP-0184) or `received` marker for one of our messages: it is
    /// delivered. Returns the message id when its state changed.
    pub fn mark_delivered(&mut self, r: &Reference) -> Result<Vec<(i64, MessageState)>> {
        debug_assert_eq!(r.direction, Direction::Outgoing);
        let Some(id) = Self::find_reference(&self.conn, r)? else {
            return Ok(Vec::new());
        };
        let changed = self
            .conn
            .prepare_cached("UPDATE message SET state = 5 WHERE id = ?1 AND state IN (1, 2)")?
            .execute([id])?;
        Ok(if changed > 0 {
            vec![(id, MessageState::Delivered)]
        } else {
            Vec::new()
        })
    }

    /// A `displayed` marker (XEP-0333): the peer has read that message and, as the XEP
    /// says, every one of ours before it. Returns the messages whose state changed.
    pub fn mark_displayed(&mut self, r: &Reference) -> Result<Vec<(i64, MessageState)>> {
        debug_assert_eq!(r.direction, Direction::Outgoing);
        let tx = self.conn.transaction()?;
        let Some(id) = Self::find_reference(&tx, r)? else {
            return Ok(Vec::new());
        };
        let ids: Vec<i64> = {
            let mut st = tx.prepare_cached(
                "SELECT m.id FROM message m JOIN message t ON t.id = ?1
                 WHERE m.conversation_id = t.conversation_id AND m.direction = 1
                   AND m.state IN (1, 2, 5) AND (m.sort_key, m.id) <= (t.sort_key, t.id)",
            )?;
            let rows = st.query_map([id], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut update = tx.prepare_cached("UPDATE message SET state = 6 WHERE id = ?1")?;
        for id in &ids {
            update.execute([id])?;
        }
        drop(update);
        tx.commit()?;
        Ok(ids.into_iter().map(|id| (id, MessageState::Read)).collect())
    }

    /// One of our other devices displayed the peer's message `r` names (a `displayed`
    /// marker it sent, seen as a carbon or in the archive): what is newer stays unread.
    /// Returns the conversation's id and unread count when it changed.
    pub fn read_up_to(&mut self, r: &Reference) -> Result<Option<(i64, i64)>> {
        debug_assert_eq!(r.direction, Direction::Incoming);
        let Some(id) = Self::find_reference(&self.conn, r)? else {
            return Ok(None);
        };
        let (conversation_id, newer): (i64, i64) = self.conn.query_row(
            "SELECT t.conversation_id, (SELECT count(*) FROM message m
               WHERE m.conversation_id = t.conversation_id AND m.direction = 0
                 AND (m.sort_key, m.id) > (t.sort_key, t.id))
             FROM message t WHERE t.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let changed = self.conn.execute(
            "UPDATE conversation SET unread = ?2 WHERE id = ?1 AND unread > ?2",
            params![conversation_id, newer],
        )?;
        Ok((changed > 0).then_some((conversation_id, newer)))
    }

    /// The newest incoming message of a conversation (what a `displayed` marker names).
    pub fn newest_incoming(&mut self, conversation_id: i64) -> Result<Option<Message>> {
        let sql = format!(
            "SELECT {} FROM message m JOIN conversation c ON c.id = m.conversation_id
             WHERE m.conversation_id = ?1 AND m.direction = 0
             ORDER BY m.sort_key DESC, m.id DESC LIMIT 1",
            crate::db::MESSAGE_COLUMNS
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([conversation_id], message_from_row)
            .optional()?)
    }

    /// Full-text search over one account's history, newest first: in id order, which is
    /// time order (history fetched backwards is stored below everything, see
    /// `Db::insert_backfill_page`), so that FTS5 hands the newest matches first and a word found in
    /// 100 000 messages costs no sort. Each word of `query` must appear (the last may be
    /// the start of a word); FTS5 syntax in the user's text is taken literally.
    pub fn search(&mut self, account_id: i64, query: &str, limit: u32) -> Result<Vec<SearchHit>> {
        let Some(expr) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {}, snippet(message_fts, 0, char(1), char(2), '…', 12)
             FROM message_fts f JOIN message m ON m.id = f.rowid
             JOIN conversation c ON c.id = m.conversation_id
             WHERE message_fts MATCH ?1 AND c.account_id = ?2
             ORDER BY f.rowid DESC LIMIT ?3",
            crate::db::MESSAGE_COLUMNS
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![expr, account_id, limit], |r| {
            Ok(SearchHit {
                message: message_from_row(r)?,
                snippet: r.get(14)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Where a message sits in its conversation: how many newer messages it has (the
    /// chat view loads that many plus a page to show it in context).
    pub fn newer_count(&mut self, id: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM message m JOIN message t ON t.id = ?1
             WHERE m.conversation_id = t.conversation_id
               AND (m.sort_key, m.id) > (t.sort_key, t.id)",
            [id],
            |r| r.get(0),
        )?)
    }
}

/// The user's words as an FTS5 expression: each word quoted (so `AND`, `*`, `"` and
/// column filters mean nothing), all required, the last one as a prefix.
pub(crate) fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .take(16)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut expr = words.join(" ");
    expr.push('*');
    Some(expr)
}
