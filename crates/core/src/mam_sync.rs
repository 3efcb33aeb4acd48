//! XEP-0313 Message Archive Management: catch up on our own archive after every fresh
//! stream, from the last archive id we know, page by page until the server says complete.

use std::sync::atomic::{AtomicUsize, Ordering};

use natter_store::{Placement, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::parsers::jid::BareJid;
use tokio_xmpp::parsers::mam::{Fin, Query, QueryId};
use tokio_xmpp::parsers::rsm::SetQuery;

use crate::archive_link::{self, ArchiveLink};
use crate::connection::ConnectConfig;
use crate::event::{AccountEvent, Event};
use crate::session::{Internal, IqPayloadKind};
use crate::{apply, chat, SessionError};

/// How long a page may take on the archive stream before it is asked on the main one.
const LINK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Page size; Prosody allows up to `max_archive_query_results` (default 50, often 250).
const PAGE: usize = 250;

/// Catches up in the background. `second_stream`: how to sign in again for an archive
/// stream of its own ([`ArchiveLink`]) when there is more than one page to fetch. Once it
/// is over, stream `generation`'s presence gets its caps ([`Internal::AnnounceCaps`]).
pub(crate) fn spawn_catch_up(
    store: Store,
    account_id: i64,
    jid: BareJid,
    internal: mpsc::UnboundedSender<Internal>,
    events: mpsc::UnboundedSender<AccountEvent>,
    second_stream: Option<ConnectConfig>,
    generation: u64,
) {
    tokio::spawn(async move {
        let mut source = Source {
            internal: &internal,
            own: &jid,
            link: None,
            second_stream,
        };
        match catch_up(&store, account_id, &jid, &mut source, &events).await {
            Ok(n) => tracing::info!(stored = n, "archive catch-up complete"),
            Err(e) => tracing::warn!(error = %e, "archive catch-up stopped"),
        }
        let _ = internal.send(Internal::AnnounceCaps(generation));
        // What our other devices read meanwhile (they name messages now stored).
        crate::mds::sync(&store, account_id, &jid, &internal, &events).await;
    });
}

async fn catch_up(
    store: &Store,
    account_id: i64,
    jid: &BareJid,
    source: &mut Source<'_>,
    events: &mpsc::UnboundedSender<AccountEvent>,
) -> Result<usize, SessionError> {
    let progress = Progress {
        account_id,
        events,
        stored: AtomicUsize::new(0),
    };
    let result = sync(store, account_id, jid, source, &progress).await;
    // Done with the archive stream, if one was opened.
    source.link = None;
    progress.send(true);
    result.map(|()| progress.stored.load(Ordering::Relaxed))
}

/// Counts what a sync stored and tells the UI.
struct Progress<'a> {
    account_id: i64,
    events: &'a mpsc::UnboundedSender<AccountEvent>,
    stored: AtomicUsize,
}

impl Progress<'_> {
    fn add(&self, n: usize) {
        self.stored.fetch_add(n, Ordering::Relaxed);
        self.send(false);
    }

    fn send(&self, done: bool) {
        let _ = self.events.send(AccountEvent {
            account_id: self.account_id,
            event: Event::HistorySync {
                stored: self.stored.load(Ordering::Relaxed),
                done,
            },
        });
    }
}

async fn sync(
    store: &Store,
    account_id: i64,
    jid: &BareJid,
    source: &mut Source<'_>,
    progress: &Progress<'_>,
) -> Result<(), SessionError> {
    // None: never synced. Some(""): synced while the archive was empty, so everything
    // in it now is new. Some(id): everything up to `id` is here.
    let mut after = store.archive_cursor(account_id).await?;
    if after.is_none() {
        // A fresh account: the whole archive, newest first, so that every recent
        // conversation shows at once and older history follows.
        return backfill(store, account_id, jid, source, progress, None).await;
    }
    let forward = |after: Option<String>| SetQuery {
        max: Some(PAGE),
        before: None,
        after: after.filter(|a| !a.is_empty()),
        index: None,
    };
    let mut next = Some(source.spawn_query(forward(after.clone())));
    while let Some(pending) = next.take() {
        let (fin, results) = match pending.await.map_err(|_| SessionError::Stopped)? {
            Err(SessionError::Refused(c)) if c.contains("ItemNotFound") => {
                // Our cursor fell out of the archive (expired): start over from the newest.
                tracing::info!("archive cursor expired: fetching the archive again");
                return backfill(store, account_id, jid, source, progress, None).await;
            }
            other => other?,
        };
        // The server prepares the next page while this one is stored.
        if !fin.complete {
            if let Some(last) = &fin.set.last {
                source.widen().await;
                next = Some(source.spawn_query(forward(Some(last.clone()))));
            }
        }
        let page = take_page(account_id, jid, results, Placement::Append);
        let new = store
            .insert_archive_page(account_id, after.clone(), page.messages)
            .await?;
        emit(store, jid, new, true, &page.actions, progress).await;
        if let Some(last) = fin.set.last {
            store.set_archive_cursor(account_id, last.clone()).await?;
            after = Some(last);
        }
    }
    // A backfill that was interrupted goes on.
    if let Some(before) = store.archive_backfill(account_id).await? {
        backfill(store, account_id, jid, source, progress, Some(before)).await?;
    }
    Ok(())
}

/// Fetches the archive backwards from `before` (the newest end when `None`) to its
/// start. The first page of a fresh sync sets the forward catch-up point; the page
/// boundary is kept so that a later connection goes on where this one stopped.
async fn backfill(
    store: &Store,
    account_id: i64,
    jid: &BareJid,
    source: &mut Source<'_>,
    progress: &Progress<'_>,
    mut before: Option<String>,
) -> Result<(), SessionError> {
    let backward = |before: Option<String>| SetQuery {
        max: Some(PAGE),
        before: Some(before.unwrap_or_default()),
        after: None,
        index: None,
    };
    let mut next = Some(source.spawn_query(backward(before.clone())));
    while let Some(pending) = next.take() {
        let (fin, results) = pending.await.map_err(|_| SessionError::Stopped)??;
        let older = fin.set.first.clone().filter(|_| !fin.complete);
        // The server prepares the next page while this one is stored.
        if let Some(first) = &older {
            source.widen().await;
            next = Some(source.spawn_query(backward(Some(first.item.clone()))));
        }
        if before.is_none() {
            // Everything after the newest page is new: forward catch-ups start there.
            let newest = fin.set.last.clone().unwrap_or_default();
            store.set_archive_cursor(account_id, newest).await?;
        }
        let page = take_page(account_id, jid, results, Placement::Backfill);
        let new = store.insert_backfill_page(page.messages).await?;
        emit(store, jid, new, false, &page.actions, progress).await;
        before = older.map(|f| f.item);
        // Where to go on if this connection ends now; `None` once all of it is here.
        store
            .set_archive_backfill(account_id, before.clone())
            .await?;
    }
    Ok(())
}

/// Older messages of one conversation from the archive, for a user scrolling past
/// what is stored while the backfill has not reached them yet. Returns how many new
/// messages were stored.
pub(crate) async fn fetch_older(
    store: &Store,
    account_id: i64,
    jid: &BareJid,
    internal: &mpsc::UnboundedSender<Internal>,
    events: &mpsc::UnboundedSender<AccountEvent>,
    peer: &str,
    limit: usize,
) -> Result<usize, SessionError> {
    if store.archive_backfill(account_id).await?.is_none() {
        // The whole archive is here already.
        return Ok(0);
    }
    let Some(conversation) = store.find_conversation(account_id, peer.to_owned()).await? else {
        return Ok(0);
    };
    let Some(before) = store.oldest_archived(conversation).await? else {
        return Ok(0);
    };
    let with: tokio_xmpp::parsers::jid::Jid = peer
        .parse()
        .map_err(|_| SessionError::Refused(format!("not an address: {peer}")))?;
    let set = SetQuery {
        max: Some(limit),
        before: Some(before),
        after: None,
        index: None,
    };
    let (_, results) = query(internal, Some(with), set).await?;
    let page = take_page(account_id, jid, results, Placement::Backfill);
    let new = store.insert_backfill_page(page.messages).await?;
    let n = new.len();
    let progress = Progress {
        account_id,
        events,
        stored: AtomicUsize::new(0),
    };
    emit(store, jid, new, false, &page.actions, &progress).await;
    Ok(n)
}

/// One archive page, read: messages to store, and actions on stored messages.
struct Page {
    messages: Vec<natter_store::NewMessage>,
    actions: Vec<chat::Inbound>,
}

fn take_page(
    account_id: i64,
    jid: &BareJid,
    results: Vec<tokio_xmpp::parsers::mam::Result_>,
    placement: Placement,
) -> Page {
    let mut messages = Vec::with_capacity(results.len());
    let mut actions = Vec::new();
    let now = chrono::Utc::now().timestamp_millis();
    for r in results {
        let stamp = r
            .forwarded
            .delay
            .as_ref()
            .map(|d| d.stamp.0.timestamp_millis())
            .unwrap_or(now);
        match chat::classify(
            &r.forwarded.message,
            account_id,
            jid,
            now,
            chat::Path::Archive,
            Some((r.id, stamp)),
        ) {
            Ok(mut inbound) => {
                if let Some(mut m) = inbound.message.take() {
                    m.placement = placement;
                    messages.push(m);
                }
                if inbound.action.is_some() {
                    actions.push(inbound);
                }
            }
            Err(e) => tracing::trace!(?e, "archive result not taken"),
        }
    }
    tracing::debug!(?placement, results = messages.len(), "archive page");
    Page { messages, actions }
}

/// Announces stored messages (one event per page; `news` when they came while we were
/// offline), then applies corrections, retractions, reactions and
/// markers (after the messages they may name, in archive order).
async fn emit(
    store: &Store,
    jid: &BareJid,
    new: Vec<natter_store::Message>,
    news: bool,
    actions: &[chat::Inbound],
    progress: &Progress<'_>,
) {
    let (account_id, events) = (progress.account_id, progress.events);
    let n = new.len();
    if n > 0 {
        let _ = events.send(AccountEvent {
            account_id,
            event: Event::ArchivePage {
                messages: new,
                news,
            },
        });
    }
    for inbound in actions {
        for event in apply::apply(store, account_id, jid, inbound).await {
            let _ = events.send(AccountEvent { account_id, event });
        }
    }
    progress.add(n);
}

/// Where archive queries go: the main stream, or an archive stream of their own once
/// there is more than a page to fetch.
pub(crate) struct Source<'a> {
    internal: &'a mpsc::UnboundedSender<Internal>,
    own: &'a BareJid,
    link: Option<ArchiveLink>,
    /// How to open the archive stream; `None` once tried (or when not wanted).
    second_stream: Option<ConnectConfig>,
}

impl Source<'_> {
    /// Opens the archive stream, once; if it cannot be opened the main stream goes on.
    async fn widen(&mut self) {
        let Some(cfg) = self.second_stream.take() else {
            return;
        };
        match ArchiveLink::open(&cfg, self.own.clone()).await {
            Ok(link) => self.link = Some(link),
            Err(e) => tracing::info!(error = %e, "no archive stream: syncing on the main one"),
        }
    }

    /// Sends a query of our whole archive now and lets its answer be awaited later.
    fn spawn_query(&self, set: SetQuery) -> tokio::task::JoinHandle<archive_link::Answer> {
        let Some(link) = &self.link else {
            let internal = self.internal.clone();
            return tokio::spawn(async move { query(&internal, None, set).await });
        };
        let id = chat::new_origin_id();
        let q = Query {
            queryid: Some(QueryId(id.clone())),
            node: None,
            form: None,
            set: Some(set.clone()),
            flip_page: false,
        };
        let iq = tokio_xmpp::parsers::iq::Iq::Set {
            from: None,
            to: None,
            id: id.clone(),
            payload: q.into(),
        };
        let answer = link.query(id, iq);
        let internal = self.internal.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(LINK_PATIENCE, answer).await {
                Ok(Ok(Ok(page))) => Ok(page),
                Ok(Ok(Err(SessionError::Refused(e)))) => Err(SessionError::Refused(e)),
                // The archive stream broke or stalled: this page over the main stream.
                _ => {
                    tracing::info!("archive stream lost: a page over the main stream");
                    query(&internal, None, set).await
                }
            }
        })
    }
}

async fn query(
    internal: &mpsc::UnboundedSender<Internal>,
    with: Option<tokio_xmpp::parsers::jid::Jid>,
    set: SetQuery,
) -> Result<(Fin, Vec<tokio_xmpp::parsers::mam::Result_>), SessionError> {
    let query_id = chat::new_origin_id();
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    internal
        .send(Internal::MamRoute {
            query_id: query_id.clone(),
            results: results_tx,
        })
        .map_err(|_| SessionError::Stopped)?;
    let q = Query {
        queryid: Some(QueryId(query_id.clone())),
        node: None,
        form: with.map(with_form),
        set: Some(set),
        flip_page: false,
    };
    let (reply, answer) = oneshot::channel();
    internal
        .send(Internal::SendIq {
            to: None,
            payload: IqPayloadKind::Set(q.into()),
            reply,
        })
        .map_err(|_| SessionError::Stopped)?;
    let answer = answer.await.map_err(|_| SessionError::Stopped);
    let _ = internal.send(Internal::MamDone { query_id });
    let el = answer??.ok_or_else(|| SessionError::Refused("empty archive answer".into()))?;
    let fin = Fin::try_from(el).map_err(|e| SessionError::Refused(format!("bad fin: {e}")))?;
    // The server sends every result before the answer, and the session routes stanzas in
    // order, so they are all queued here already.
    let mut results = Vec::new();
    while let Ok(r) = results_rx.try_recv() {
        results.push(r);
    }
    Ok((fin, results))
}

/// The XEP-0313 query form asking only for the conversation with `with`.
fn with_form(with: tokio_xmpp::parsers::jid::Jid) -> tokio_xmpp::parsers::data_forms::DataForm {
    use tokio_xmpp::parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
    DataForm::new(
        DataFormType::Submit,
        tokio_xmpp::parsers::ns::MAM,
        vec![Field::new("with", FieldType::JidSingle).with_value(&with.to_string())],
    )
}
