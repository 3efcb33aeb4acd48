//! XEP-0313 Message Archive Management: catch up on our own archive after every fresh
//! stream, from the last archive id we know, page by page until the server says complete.

use natter_store::{Placement, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::parsers::jid::BareJid;
use tokio_xmpp::parsers::mam::{Fin, Query, QueryId};
use tokio_xmpp::parsers::rsm::SetQuery;

use crate::event::{AccountEvent, Event};
use crate::session::{Internal, IqPayloadKind};
use crate::{apply, chat, SessionError};

/// Page size; Prosody allows up to `max_archive_query_results` (default 50, often 250).
const PAGE: usize = 250;

pub(crate) fn spawn_catch_up(
    store: Store,
    account_id: i64,
    jid: BareJid,
    internal: mpsc::UnboundedSender<Internal>,
    events: mpsc::UnboundedSender<AccountEvent>,
) {
    tokio::spawn(async move {
        match catch_up(&store, account_id, &jid, &internal, &events).await {
            Ok(n) => tracing::info!(stored = n, "archive catch-up complete"),
            Err(e) => tracing::warn!(error = %e, "archive catch-up stopped"),
        }
        // What our other devices read meanwhile (they name messages now stored).
        crate::mds::sync(&store, account_id, &jid, &internal, &events).await;
    });
}

async fn catch_up(
    store: &Store,
    account_id: i64,
    jid: &BareJid,
    internal: &mpsc::UnboundedSender<Internal>,
    events: &mpsc::UnboundedSender<AccountEvent>,
) -> Result<usize, SessionError> {
    // None: never synced. Some(""): synced while the archive was empty, so everything
    // in it now is new. Some(id): everything up to `id` is here.
    let mut after = store.archive_cursor(account_id).await?;
    let mut stored = 0;
    loop {
        let fresh = after.is_none();
        let set = SetQuery {
            max: Some(PAGE),
            // A fresh account starts from the newest page; older pages load on demand.
            before: if fresh { Some(String::new()) } else { None },
            after: after.clone().filter(|a| !a.is_empty()),
            index: None,
        };
        let (fin, results) = match query(internal, set).await {
            Err(SessionError::Refused(c)) if !fresh && c.contains("ItemNotFound") => {
                // Our cursor fell out of the archive (expired): start over from the newest.
                after = None;
                continue;
            }
            other => other?,
        };
        let mut batch = Vec::with_capacity(results.len());
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
                        // Forward catch-up brings what came after everything we hold;
                        // the newest page of a fresh account is older history.
                        m.placement = if fresh {
                            Placement::Backfill
                        } else {
                            Placement::Append
                        };
                        batch.push(m);
                    }
                    if inbound.action.is_some() {
                        actions.push(inbound);
                    }
                }
                Err(e) => tracing::trace!(?e, "archive result not taken"),
            }
        }
        tracing::debug!(
            ?after,
            fresh,
            results = batch.len(),
            first = ?batch.first().and_then(|m| m.origin_id.clone()),
            complete = fin.complete,
            "archive page"
        );
        let new = if fresh {
            store.insert_messages(batch).await?
        } else {
            store
                .insert_archive_page(account_id, after.clone(), batch)
                .await?
        };
        stored += new.len();
        for m in new {
            let _ = events.send(AccountEvent {
                account_id,
                event: Event::Message(m),
            });
        }
        // Corrections, retractions, reactions and markers, after the messages they
        // may name (archive order).
        for inbound in &actions {
            for event in apply::apply(store, account_id, jid, inbound).await {
                let _ = events.send(AccountEvent { account_id, event });
            }
        }
        match fin.set.last {
            Some(last) => {
                store.set_archive_cursor(account_id, last.clone()).await?;
                after = Some(last);
            }
            None => {
                if fresh {
                    store.set_archive_cursor(account_id, String::new()).await?;
                }
                break;
            }
        }
        if fresh || fin.complete {
            break;
        }
    }
    Ok(stored)
}

async fn query(
    internal: &mpsc::UnboundedSender<Internal>,
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
        form: None,
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
