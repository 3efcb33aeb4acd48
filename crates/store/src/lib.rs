//! Natter's persistent state: one SQLite file (WAL), owned by one thread.
//!
//! rusqlite's `Connection` is not `Sync`, so a dedicated thread owns it and callers
//! talk to it through [`Store`], whose methods are `async` and never block the caller's
//! thread. Schema changes are numbered migrations (see [`schema`]).

mod avatars;
mod caps;
mod db;
mod edits;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;

use tokio::sync::oneshot;

pub use db::{
    Account, Contact, Conversation, ConversationSummary, Direction, HistoryCursor, Message,
    MessageState, NewMessage, OutboxEntry, Placement, Quote, Reaction, Reference,
};
pub use edits::{SearchHit, MAX_REACTIONS_PER_SENDER};

/// Errors the store reports. Each names what failed in a way a log reader understands.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database was created by a newer Natter (schema {found}, this build knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("the database thread has stopped")]
    Closed,
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

type Job = Box<dyn FnOnce(&mut db::Db) + Send>;

/// Handle to the store thread. Cheap to clone; the thread ends when the last clone drops.
#[derive(Clone)]
pub struct Store {
    jobs: std_mpsc::Sender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Invalid(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let (jobs, rx) = std_mpsc::channel::<Job>();
        let thread_path = path.clone();
        thread::Builder::new()
            .name("natter-store".into())
            .spawn(move || {
                let mut db = match db::Db::open(&thread_path) {
                    Ok(db) => {
                        let _ = ready_tx.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut db);
                }
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start the store thread: {e}")))?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(Store { jobs, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the store thread and returns its result.
    async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut db::Db) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |db| {
                let _ = tx.send(f(db));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn upsert_account(&self, account: Account) -> Result<i64> {
        self.call(move |db| db.upsert_account(&account)).await
    }

    pub async fn accounts(&self) -> Result<Vec<Account>> {
        self.call(|db| db.accounts()).await
    }

    pub async fn account(&self, jid: String) -> Result<Option<Account>> {
        self.call(move |db| db.account(&jid)).await
    }

    pub async fn remove_account(&self, account_id: i64) -> Result<()> {
        self.call(move |db| db.remove_account(account_id)).await
    }

    pub async fn roster_version(&self, account_id: i64) -> Result<Option<String>> {
        self.call(move |db| db.roster_version(account_id)).await
    }

    pub async fn set_roster_version(&self, account_id: i64, ver: Option<String>) -> Result<()> {
        self.call(move |db| db.set_roster_version(account_id, ver.as_deref()))
            .await
    }

    /// Replaces the whole roster (a full roster result) and its version in one transaction.
    pub async fn replace_roster(
        &self,
        account_id: i64,
        contacts: Vec<Contact>,
        ver: Option<String>,
    ) -> Result<()> {
        self.call(move |db| db.replace_roster(account_id, &contacts, ver.as_deref()))
            .await
    }

    /// Applies one roster push: `contact.subscription == "remove"` deletes it.
    pub async fn apply_roster_push(
        &self,
        account_id: i64,
        contact: Contact,
        ver: Option<String>,
    ) -> Result<()> {
        self.call(move |db| db.apply_roster_push(account_id, &contact, ver.as_deref()))
            .await
    }

    pub async fn roster(&self, account_id: i64) -> Result<Vec<Contact>> {
        self.call(move |db| db.roster(account_id)).await
    }

    pub async fn conversation(&self, account_id: i64, peer: String) -> Result<Conversation> {
        self.call(move |db| db.conversation(account_id, &peer))
            .await
    }

    /// The id of the conversation with `peer`, if there is one (nothing is created).
    pub async fn find_conversation(&self, account_id: i64, peer: String) -> Result<Option<i64>> {
        self.call(move |db| db.find_conversation(account_id, &peer))
            .await
    }

    pub async fn conversations(&self, account_id: i64) -> Result<Vec<Conversation>> {
        self.call(move |db| db.conversations(account_id)).await
    }

    /// Every conversation with its newest message, most recent activity first.
    pub async fn conversation_summaries(
        &self,
        account_id: i64,
    ) -> Result<Vec<ConversationSummary>> {
        self.call(move |db| db.conversation_summaries(account_id))
            .await
    }

    /// Puts a failed outgoing message back in the outbox (`None`: not a failed message
    /// of this account).
    pub async fn retry_message(&self, account_id: i64, id: i64) -> Result<Option<OutboxEntry>> {
        self.call(move |db| db.retry_message(account_id, id)).await
    }

    /// Stores a message unless one with the same origin-id from the same sender, or the
    /// same archive stanza-id, is already stored. Returns the new row, or `None` for a
    /// duplicate.
    pub async fn insert_message(&self, msg: NewMessage) -> Result<Option<Message>> {
        self.call(move |db| db.insert_message(&msg)).await
    }

    /// Stores many messages in one transaction (a fresh account's newest archive page);
    /// duplicates skipped.
    pub async fn insert_messages(&self, msgs: Vec<NewMessage>) -> Result<Vec<Message>> {
        self.call(move |db| db.insert_messages(&msgs)).await
    }

    /// Stores a forward archive page in archive order after the message `after` (see
    /// `Db::insert_archive_page`); duplicates skipped.
    pub async fn insert_archive_page(
        &self,
        account_id: i64,
        after: Option<String>,
        msgs: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        self.call(move |db| db.insert_archive_page(account_id, after.as_deref(), &msgs))
            .await
    }

    /// Stores live messages in one transaction and advances the archive cursor to the
    /// last stored one with an archive id; duplicates skipped.
    pub async fn insert_live(
        &self,
        account_id: i64,
        msgs: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        self.call(move |db| db.insert_live(account_id, &msgs)).await
    }

    /// `false` when the message was already in `state` (or further along).
    pub async fn set_message_state(&self, message_id: i64, state: MessageState) -> Result<bool> {
        self.call(move |db| db.set_message_state(message_id, state))
            .await
    }

    /// Records the archive id the server gave to one of our own messages.
    pub async fn set_stanza_id(&self, message_id: i64, stanza_id: String) -> Result<()> {
        self.call(move |db| db.set_stanza_id(message_id, &stanza_id))
            .await
    }

    /// Outgoing messages the server has not acknowledged yet, oldest first.
    pub async fn outbox(&self, account_id: i64) -> Result<Vec<OutboxEntry>> {
        self.call(move |db| db.outbox(account_id)).await
    }

    /// The newest `limit` messages of a conversation older than `before` (newest first).
    pub async fn history(
        &self,
        conversation_id: i64,
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.call(move |db| db.history(conversation_id, before, limit))
            .await
    }

    /// The oldest `limit` messages of a conversation newer than `after` (oldest first).
    pub async fn history_after(
        &self,
        conversation_id: i64,
        after: HistoryCursor,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.call(move |db| db.history_after(conversation_id, after, limit))
            .await
    }

    pub async fn message_count(&self, account_id: i64) -> Result<i64> {
        self.call(move |db| db.message_count(account_id)).await
    }

    /// Stores a page of older history fetched backwards from our archive (oldest
    /// first): it sorts before everything stored in its conversations.
    pub async fn insert_backfill_page(&self, msgs: Vec<NewMessage>) -> Result<Vec<Message>> {
        self.call(move |db| db.insert_backfill_page(&msgs)).await
    }

    /// Where fetching the archive backwards goes on; `None` when all of it is here.
    pub async fn archive_backfill(&self, account_id: i64) -> Result<Option<String>> {
        self.call(move |db| db.archive_backfill(account_id)).await
    }

    pub async fn set_archive_backfill(
        &self,
        account_id: i64,
        before: Option<String>,
    ) -> Result<()> {
        self.call(move |db| db.set_archive_backfill(account_id, before.as_deref()))
            .await
    }

    /// The archive id of a conversation's oldest archived message.
    pub async fn oldest_archived(&self, conversation_id: i64) -> Result<Option<String>> {
        self.call(move |db| db.oldest_archived(conversation_id))
            .await
    }

    /// The last archive id seen for this account's own archive (MAM catch-up point).
    pub async fn archive_cursor(&self, account_id: i64) -> Result<Option<String>> {
        self.call(move |db| db.archive_cursor(account_id)).await
    }

    pub async fn set_archive_cursor(&self, account_id: i64, id: String) -> Result<()> {
        self.call(move |db| db.set_archive_cursor(account_id, &id))
            .await
    }

    /// One message with its quote and reactions.
    pub async fn message(&self, id: i64) -> Result<Option<Message>> {
        self.call(move |db| db.message(id)).await
    }

    /// Applies a correction (XEP-0308); `None` when the reference names nothing we may
    /// change.
    pub async fn correct(&self, r: Reference, body: String) -> Result<Option<Message>> {
        self.call(move |db| db.correct(&r, &body)).await
    }

    /// Applies a retraction (XEP-0424): the message becomes a tombstone.
    pub async fn retract(&self, r: Reference) -> Result<Option<Message>> {
        self.call(move |db| db.retract(&r)).await
    }

    /// Replaces `sender`'s reactions (XEP-0444) on the message `r` names.
    pub async fn set_reactions(
        &self,
        r: Reference,
        sender: String,
        emojis: Vec<String>,
    ) -> Result<Option<Message>> {
        self.call(move |db| db.set_reactions(&r, &sender, &emojis))
            .await
    }

    /// A receipt or `received` marker: the changed (message id, state).
    pub async fn mark_delivered(&self, r: Reference) -> Result<Vec<(i64, MessageState)>> {
        self.call(move |db| db.mark_delivered(&r)).await
    }

    /// A `displayed` marker: that message and our earlier ones are read.
    pub async fn mark_displayed(&self, r: Reference) -> Result<Vec<(i64, MessageState)>> {
        self.call(move |db| db.mark_displayed(&r)).await
    }

    /// Our other device read up to the message `r` names: (conversation id, unread).
    pub async fn read_up_to(&self, r: Reference) -> Result<Option<(i64, i64)>> {
        self.call(move |db| db.read_up_to(&r)).await
    }

    /// The newest incoming message of a conversation.
    pub async fn newest_incoming(&self, conversation_id: i64) -> Result<Option<Message>> {
        self.call(move |db| db.newest_incoming(conversation_id))
            .await
    }

    /// Frees the database's page cache and its cached statements' memory (SQLite's
    /// `shrink_memory`): after a history sync, what was read and written for it is not
    /// needed again soon.
    pub async fn release_memory(&self) -> Result<()> {
        self.call(|db| db.release_memory()).await
    }

    /// Full-text search over an account's messages, newest first.
    pub async fn search(
        &self,
        account_id: i64,
        query: String,
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        self.call(move |db| db.search(account_id, &query, limit))
            .await
    }

    /// How many messages of its conversation are newer than message `id`.
    pub async fn newer_count(&self, id: i64) -> Result<i64> {
        self.call(move |db| db.newer_count(id)).await
    }

    pub async fn mark_read(&self, conversation_id: i64) -> Result<()> {
        self.call(move |db| db.mark_read(conversation_id)).await
    }

    /// Every known avatar of an account: (bare JID, SHA-1 hex).
    pub async fn avatars(&self, account_id: i64) -> Result<Vec<(String, String)>> {
        self.call(move |db| db.avatars(account_id)).await
    }

    /// Records `jid`'s avatar (XEP-0084 / XEP-0153 SHA-1 hex); `None` removes it.
    pub async fn set_avatar(
        &self,
        account_id: i64,
        jid: String,
        hash: Option<String>,
    ) -> Result<()> {
        self.call(move |db| db.set_avatar(account_id, &jid, hash.as_deref()))
            .await
    }

    /// The XEP-0115 caps cache: every `ver` with its features.
    pub async fn caps(&self) -> Result<Vec<(String, Vec<String>)>> {
        self.call(|db| db.caps()).await
    }

    /// Caches a verified caps `ver` with its features.
    pub async fn add_caps(&self, ver: String, features: Vec<String>) -> Result<()> {
        self.call(move |db| db.add_caps(&ver, &features)).await
    }
}

#[cfg(test)]
mod tests;
