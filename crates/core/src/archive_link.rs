//! A second, short-lived stream for long archive fetches (XEP-0313).
//!
//! On a stream with XEP-0198 enabled, the server keeps a copy of every stanza it sends
//! until we acknowledge it (Prosody clones and stamps each one, and asks for an ack
//! after each): for a history of 20 000 messages that more than doubles the server's
//! work, and the main stream needs stream management for everything else. This stream
//! binds a resource of its own, sends no presence (so nothing but the answers to our
//! queries comes to it: no messages, carbons or presences), does not enable stream
//! management, and closes when the sync is done. Losing it loses nothing: the archive
//! cursor only moves after a page is stored. When it cannot be opened, the sync runs
//! over the main stream as before.

use std::collections::HashMap;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::bind::{BindQuery, BindResponse};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::mam::{Fin, Result_};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stream_error::ReceivedStreamError;
use tokio_xmpp::xmlstream::{ReadError, XmlStream, XmppStreamElement};
use xso::FromXml;

use crate::connection::{self, ConnectConfig, ConnectError};
use crate::link::LinkControl;
use crate::SessionError;

type Stream =
    XmlStream<Box<dyn tokio_xmpp::connect::AsyncReadAndWrite + Send + 'static>, ArchiveElement>;

/// What the archive stream reads. Archive results are built into their types straight
/// from the parser's events as the bytes arrive: no element tree for the `<result>`,
/// no second parse of it. A `<message>` that is not an archive result fails to parse
/// and is skipped whole; other elements are kept as elements, to be dropped.
#[derive(FromXml, Debug)]
#[xml()]
enum ArchiveElement {
    #[xml(transparent)]
    Result(ResultMessage),
    #[xml(transparent)]
    Iq(Iq),
    #[xml(transparent)]
    StreamError(ReceivedStreamError),
    #[xml(transparent)]
    Other(Element),
}

/// A `<message>` carrying one archive result (XEP-0313 §4.1.2); other attributes and
/// children are ignored.
#[derive(FromXml, Debug)]
#[xml(namespace = ns::DEFAULT_NS, name = "message")]
struct ResultMessage {
    #[xml(attribute(default))]
    from: Option<Jid>,
    #[xml(child)]
    result: Result_,
}

/// The answer to one archive query: its `<fin/>` and the results before it;
/// `NotConnected` when the archive stream broke (the server's own refusals are
/// `Refused`).
pub(crate) type Answer = Result<(Fin, Vec<Result_>), SessionError>;

struct Request {
    id: String,
    iq: Iq,
    reply: oneshot::Sender<Answer>,
}

/// The open archive stream; dropping it closes the stream.
pub(crate) struct ArchiveLink {
    requests: mpsc::UnboundedSender<Request>,
}

impl ArchiveLink {
    /// Signs in a second time (same account, same certificate checks, a resource of its
    /// own) and binds; no presence, no stream management.
    pub(crate) async fn open(cfg: &ConnectConfig, own: BareJid) -> Result<Self, ConnectError> {
        let mut cfg = cfg.clone();
        cfg.resource = format!("{}-archive-{}", resource_base(&cfg.resource), nonce());
        let (mut stream, features, identity) =
            connection::open_authenticated::<ArchiveElement>(&cfg, &LinkControl::default()).await?;
        if !features.can_bind() {
            return Err(ConnectError::Protocol(
                "the server offers no resource binding".into(),
            ));
        }
        let resource = identity.resource().map(|r| r.to_string());
        let bind = Iq::from_set("archive-bind", BindQuery::new(resource));
        stream
            .send(&XmppStreamElement::Stanza(bind.into()))
            .await
            .map_err(|e| ConnectError::Protocol(format!("binding: {e}")))?;
        loop {
            match read(&mut stream).await {
                Some(Ok(ArchiveElement::Iq(iq))) if iq.id() == "archive-bind" => match iq {
                    Iq::Result {
                        payload: Some(p), ..
                    } if BindResponse::try_from(p.clone()).is_ok() => break,
                    _ => return Err(ConnectError::Protocol("binding refused".into())),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ConnectError::Protocol(format!("binding: {e}"))),
                None => return Err(ConnectError::Protocol("closed while binding".into())),
            }
        }
        tracing::debug!("archive stream open");
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(stream, rx, own));
        Ok(Self { requests })
    }

    /// Sends the query now; its answer can be awaited later (the server prepares the
    /// next page while the caller stores this one).
    pub(crate) fn query(&self, id: String, iq: Iq) -> oneshot::Receiver<Answer> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(r)) = self.requests.send(Request { id, iq, reply }) {
            let _ = r.reply.send(Err(SessionError::NotConnected));
        }
        answer
    }
}

/// The main resource's name without a random suffix of ours, for readable logs.
fn resource_base(resource: &str) -> &str {
    if resource.is_empty() {
        "natter"
    } else {
        resource
    }
}

fn nonce() -> String {
    let n: u32 = rand::random();
    format!("{n:08x}")
}

async fn read(stream: &mut Stream) -> Option<Result<ArchiveElement, ReadError>> {
    loop {
        match stream.next().await? {
            Ok(el) => return Some(Ok(el)),
            // Nothing came for a while: the stream is idle, not broken.
            Err(ReadError::SoftTimeout) => continue,
            Err(ReadError::ParseError(e)) => {
                tracing::debug!(error = %e, "archive stream: unreadable element skipped");
                continue;
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// One query in flight: its results so far.
struct Pending {
    reply: oneshot::Sender<Answer>,
    results: Vec<Result_>,
}

async fn run(mut stream: Stream, mut requests: mpsc::UnboundedReceiver<Request>, own: BareJid) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let error = loop {
        tokio::select! {
            req = requests.recv() => match req {
                Some(Request { id, iq, reply }) => {
                    if let Err(e) = stream.send(&XmppStreamElement::Stanza(iq.into())).await {
                        let _ = reply.send(Err(SessionError::NotConnected));
                        break format!("{e}");
                    }
                    pending.insert(id, Pending { reply, results: Vec::new() });
                }
                // Nobody asks any more: the sync is done.
                None => {
                    let _ = SinkExt::<&XmppStreamElement>::close(&mut stream).await;
                    tracing::debug!("archive stream closed");
                    return;
                }
            },
            el = read(&mut stream) => match el {
                Some(Ok(ArchiveElement::Result(m))) => take_result(m, &own, &mut pending),
                Some(Ok(ArchiveElement::Iq(iq))) => answer(iq, &own, &mut pending),
                Some(Ok(ArchiveElement::StreamError(e))) => break format!("{e:?}"),
                Some(Ok(ArchiveElement::Other(el))) => {
                    tracing::debug!(name = el.name(), "archive stream: element dropped")
                }
                Some(Err(e)) => break e.to_string(),
                None => break "closed".to_owned(),
            },
        }
    };
    tracing::info!(%error, "archive stream ended");
    for (_, p) in pending {
        let _ = p.reply.send(Err(SessionError::NotConnected));
    }
}

/// A result of one of our queries, from our own archive only (XEP-0313 §4.1: from our
/// bare JID, or no `from`).
fn take_result(m: ResultMessage, own: &BareJid, pending: &mut HashMap<String, Pending>) {
    let own_archive = crate::roster::push_allowed(m.from.as_ref(), own);
    let result = m.result;
    let query = result.queryid.as_ref().and_then(|q| pending.get_mut(&q.0));
    match (own_archive, query) {
        (true, Some(p)) => p.results.push(result),
        _ => tracing::warn!(from = ?m.from, "dropping an archive result we did not ask for"),
    }
}

fn answer(iq: Iq, own: &BareJid, pending: &mut HashMap<String, Pending>) {
    // An answer to a query sent to nobody comes from our bare JID or from nobody.
    let from_ok = |from: &Option<Jid>| crate::roster::push_allowed(from.as_ref(), own);
    let (id, answer) = match iq {
        Iq::Result {
            from, id, payload, ..
        } if from_ok(&from) => {
            let answer = match payload {
                Some(el) => {
                    Fin::try_from(el).map_err(|e| SessionError::Refused(format!("bad fin: {e}")))
                }
                None => Err(SessionError::Refused("empty archive answer".into())),
            };
            (id, answer)
        }
        Iq::Error {
            from, id, error, ..
        } if from_ok(&from) => (
            id,
            Err(SessionError::Refused(format!(
                "{:?}",
                error.defined_condition
            ))),
        ),
        other => {
            tracing::warn!(
                id = other.id(),
                "archive stream: an IQ we did not ask for dropped"
            );
            return;
        }
    };
    if let Some(p) = pending.remove(&id) {
        let _ = p.reply.send(answer.map(|fin| (fin, p.results)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> BareJid {
        "alice@example.org".parse().unwrap()
    }

    fn result_message(from: Option<&str>, queryid: &str, text: &str) -> ResultMessage {
        let xml = format!(
            "<message xmlns='jabber:client' {}to='alice@example.org/a'>\
             <result xmlns='urn:xmpp:mam:2' queryid='{queryid}' id='s1'>\
             <forwarded xmlns='urn:xmpp:forward:0'>\
             <delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>\
             <message xmlns='jabber:client' from='bob@example.org/x' to='alice@example.org' type='chat'>\
             <body>{text}</body></message></forwarded></result></message>",
            from.map(|f| format!("from='{f}' ")).unwrap_or_default()
        );
        xso::from_bytes(xml.as_bytes()).unwrap()
    }

    fn waiting(id: &str) -> (HashMap<String, Pending>, oneshot::Receiver<Answer>) {
        let (reply, rx) = oneshot::channel();
        let mut pending = HashMap::new();
        pending.insert(
            id.to_owned(),
            Pending {
                reply,
                results: Vec::new(),
            },
        );
        (pending, rx)
    }

    #[test]
    fn only_our_archive_answers() {
        let (mut pending, _rx) = waiting("q1");
        take_result(result_message(None, "q1", "ok"), &own(), &mut pending);
        take_result(
            result_message(Some("alice@example.org"), "q1", "ok too"),
            &own(),
            &mut pending,
        );
        // Forged: another account's archive, our own full JID, a query we never sent.
        take_result(
            result_message(Some("mallory@example.org"), "q1", "forged"),
            &own(),
            &mut pending,
        );
        take_result(
            result_message(Some("alice@example.org/evil"), "q1", "forged"),
            &own(),
            &mut pending,
        );
        take_result(
            result_message(None, "other", "forged"),
            &own(),
            &mut pending,
        );
        assert_eq!(pending["q1"].results.len(), 2);
    }

    #[test]
    fn the_stream_reads_results_answers_and_skips_the_rest() {
        let read = |xml: &str| xso::from_bytes::<ArchiveElement>(xml.as_bytes());
        let xml = "<message xmlns='jabber:client' to='alice@example.org/a' id='x'>\
             <result xmlns='urn:xmpp:mam:2' queryid='q1' id='s1'>\
             <forwarded xmlns='urn:xmpp:forward:0'>\
             <delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>\
             <message xmlns='jabber:client' from='bob@example.org/x' to='alice@example.org' \
             type='chat' id='m1'><body>hi</body><markable xmlns='urn:xmpp:chat-markers:0'/>\
             </message></forwarded></result><other xmlns='urn:example'/></message>";
        let Ok(ArchiveElement::Result(m)) = read(xml) else {
            panic!("an archive result is read as one");
        };
        assert_eq!(m.from, None);
        assert_eq!(m.result.id, "s1");
        assert_eq!(m.result.queryid.as_ref().map(|q| q.0.as_str()), Some("q1"));
        let inner = &m.result.forwarded.message;
        assert_eq!(inner.bodies.get("").map(String::as_str), Some("hi"));
        assert_eq!(
            inner.payloads.len(),
            1,
            "the inner message keeps its payloads"
        );
        assert!(m.result.forwarded.delay.is_some());

        // A message that is no archive result, or a broken one: an error for that
        // element only (the stream skips it).
        assert!(read(
            "<message xmlns='jabber:client' from='bob@example.org'><body>x</body></message>"
        )
        .is_err());
        assert!(read(
            "<message xmlns='jabber:client'><result xmlns='urn:xmpp:mam:2' id='s1'/></message>"
        )
        .is_err());
        assert!(matches!(
            read("<iq xmlns='jabber:client' type='result' id='archive-bind'/>"),
            Ok(ArchiveElement::Iq(_))
        ));
        assert!(matches!(
            read("<presence xmlns='jabber:client' from='bob@example.org/x'/>"),
            Ok(ArchiveElement::Other(_))
        ));
        assert!(matches!(
            read("<r xmlns='urn:xmpp:sm:3'/>"),
            Ok(ArchiveElement::Other(_))
        ));
    }

    #[test]
    fn a_forged_fin_is_ignored() {
        let (mut pending, mut rx) = waiting("q1");
        take_result(result_message(None, "q1", "ok"), &own(), &mut pending);
        let fin = |from: Option<&str>| -> Iq {
            let xml = format!(
                "<iq xmlns='jabber:client' type='result' id='q1' {}>\
                 <fin xmlns='urn:xmpp:mam:2' complete='true'>\
                 <set xmlns='http://jabber.org/protocol/rsm'><first index='0'>s1</first>\
                 <last>s1</last></set></fin></iq>",
                from.map(|f| format!("from='{f}'")).unwrap_or_default()
            );
            let el: tokio_xmpp::minidom::Element = xml.parse().unwrap();
            Iq::try_from(el).unwrap()
        };
        answer(fin(Some("mallory@example.org")), &own(), &mut pending);
        assert!(rx.try_recv().is_err(), "a forged answer ended the query");
        answer(fin(None), &own(), &mut pending);
        let (fin, results) = rx.try_recv().unwrap().unwrap();
        assert!(fin.complete);
        assert_eq!(results.len(), 1);
        assert!(pending.is_empty());
    }
}
