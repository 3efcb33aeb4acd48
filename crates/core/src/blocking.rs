//! XEP-0191 Blocking Command: our blocklist as the server keeps it, and its pushes.
//! Blocking with a report (XEP-0377) is in `natter_protocol::reporting`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use natter_protocol::reporting::{self, Reason, Report};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::blocking::{Block, BlocklistRequest, BlocklistResult, Unblock};
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::ns;

use crate::event::{AccountEvent, Event};
use crate::session::{Internal, IqPayloadKind};
use crate::SessionError;

/// More entries than this in one answer or push are not believed.
const MAX_ITEMS: usize = 10_000;

/// The JIDs we block (as the server said), in order.
#[derive(Debug, Default)]
pub struct Blocklist {
    jids: BTreeSet<String>,
}

/// Whether `payload` is a blocking push (`<block/>` or `<unblock/>`).
pub fn is_push(payload: &Element) -> bool {
    payload.is("block", ns::BLOCKING) || payload.is("unblock", ns::BLOCKING)
}

impl Blocklist {
    pub fn jids(&self) -> Vec<String> {
        self.jids.iter().cloned().collect()
    }

    /// The server's answer to our blocklist request; `false` if it was unreadable.
    pub fn replace(&mut self, answer: Element) -> bool {
        match BlocklistResult::try_from(answer) {
            Ok(r) if r.items.len() <= MAX_ITEMS => {
                self.jids = r.items.iter().map(|j| j.to_string()).collect();
                true
            }
            Ok(_) => {
                tracing::warn!("blocklist too long, ignored");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "malformed blocklist");
                false
            }
        }
    }

    /// Applies a push (XEP-0191 §3.3, §3.4, §3.5); `true` when it was well-formed.
    pub fn apply_push(&mut self, payload: Element) -> bool {
        if payload.is("block", ns::BLOCKING) {
            match Block::try_from(payload) {
                Ok(b) if !b.items.is_empty() && b.items.len() <= MAX_ITEMS => {
                    self.jids.extend(b.items.iter().map(|j| j.to_string()));
                    true
                }
                _ => false,
            }
        } else {
            match Unblock::try_from(payload) {
                // An empty unblock clears the list (§3.5).
                Ok(u) if u.items.is_empty() => {
                    self.jids.clear();
                    true
                }
                Ok(u) if u.items.len() <= MAX_ITEMS => {
                    for j in &u.items {
                        self.jids.remove(&j.to_string());
                    }
                    true
                }
                _ => false,
            }
        }
    }
}

/// One account's blocking: the list, kept in step with the server, and the commands.
#[derive(Clone)]
pub(crate) struct Blocking {
    shared: Arc<Shared>,
}

struct Shared {
    account_id: i64,
    events: mpsc::UnboundedSender<AccountEvent>,
    internal: mpsc::UnboundedSender<Internal>,
    list: Mutex<Blocklist>,
}

impl Blocking {
    pub fn new(
        account_id: i64,
        events: mpsc::UnboundedSender<AccountEvent>,
        internal: mpsc::UnboundedSender<Internal>,
    ) -> Self {
        Blocking {
            shared: Arc::new(Shared {
                account_id,
                events,
                internal,
                list: Mutex::new(Blocklist::default()),
            }),
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Blocklist> {
        self.shared
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn jids(&self) -> Vec<String> {
        self.list().jids()
    }

    fn announce(&self) {
        let jids = self.jids();
        let _ = self.shared.events.send(AccountEvent {
            account_id: self.shared.account_id,
            event: Event::Blocklist(jids),
        });
    }

    /// Fetches the list (at sign-in, when the server supports blocking).
    pub fn fetch(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.iq(IqPayloadKind::Get(BlocklistRequest.into())).await {
                Ok(Some(el)) => {
                    if this.list().replace(el) {
                        this.announce();
                    }
                }
                other => tracing::warn!(?other, "no blocklist"),
            }
        });
    }

    /// A push; the session has checked that it came from our own account.
    pub fn on_push(&self, payload: Element) -> bool {
        let ok = self.list().apply_push(payload);
        if ok {
            self.announce();
        } else {
            tracing::warn!("malformed blocking push");
        }
        ok
    }

    /// Blocks `jid` (with a spam report when asked, XEP-0377).
    pub async fn block(&self, jid: &str, report_spam: bool) -> Result<(), SessionError> {
        let jid = BareJid::new(jid)
            .map_err(|e| SessionError::InvalidAddress(format!("{jid}: {e}")))?
            .to_string();
        let report = report_spam.then_some(Report {
            reason: Reason::Spam,
            text: None,
        });
        let block = reporting::block(&jid, report);
        self.iq(IqPayloadKind::Set(block.clone())).await?;
        // The server pushes the change to every resource, us included; this only makes
        // the answer and the list agree at once.
        if self.list().apply_push(block) {
            self.announce();
        }
        Ok(())
    }

    pub async fn unblock(&self, jid: &str) -> Result<(), SessionError> {
        let jid =
            BareJid::new(jid).map_err(|e| SessionError::InvalidAddress(format!("{jid}: {e}")))?;
        let unblock = Unblock {
            items: vec![Jid::from(jid)],
        };
        let el: Element = unblock.into();
        self.iq(IqPayloadKind::Set(el.clone())).await?;
        if self.list().apply_push(el) {
            self.announce();
        }
        Ok(())
    }

    async fn iq(&self, payload: IqPayloadKind) -> Result<Option<Element>, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .internal
            .send(Internal::SendIq {
                to: None,
                payload,
                reply,
            })
            .map_err(|_| SessionError::Stopped)?;
        answer.await.map_err(|_| SessionError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn list_and_pushes() {
        let mut b = Blocklist::default();
        assert!(b.replace(el(
            "<blocklist xmlns='urn:xmpp:blocking'><item jid='a@x'/><item jid='b@x'/></blocklist>"
        )));
        assert_eq!(b.jids(), vec!["a@x".to_string(), "b@x".to_string()]);
        let push = el("<block xmlns='urn:xmpp:blocking'><item jid='c@x'/></block>");
        assert!(is_push(&push));
        assert!(b.apply_push(push));
        assert!(b.apply_push(el(
            "<unblock xmlns='urn:xmpp:blocking'><item jid='a@x'/></unblock>"
        )));
        assert_eq!(b.jids(), vec!["b@x".to_string(), "c@x".to_string()]);
        assert!(
            !b.apply_push(el("<block xmlns='urn:xmpp:blocking'/>")),
            "empty block"
        );
        assert!(b.apply_push(el("<unblock xmlns='urn:xmpp:blocking'/>")));
        assert!(b.jids().is_empty());
        assert!(!b.replace(el(
            "<blocklist xmlns='urn:xmpp:blocking'><item/></blocklist>"
        )));
    }
}
