//! The session service: one task per account that owns the stream, answers the UI's
//! commands and turns what arrives into stored state and events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use natter_store::{Account, Direction, MessageState, NewMessage, OutboxEntry, Placement, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::DiscoInfoQuery;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::roster::Roster;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::parsers::{mam, ns};
use tokio_xmpp::stanzastream::{
    Event as StreamEventOuter, StanzaStage, StanzaState, StanzaStream, StreamEvent,
};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::Stanza;

use crate::calls::{self, CallSettings, Calls};
use crate::connection::{self, Backoff, ConnectConfig, ConnectorStatus, ServerAddress};
use crate::event::{AccountEvent, Availability, CallUpdate, ConnectionState, Event};
use crate::handle::{CallAction, Command, SessionHandle, SubscriptionAction};
use crate::keepalive::{self, Due, Keepalive};
use crate::link::LinkControl;
use crate::presence::{own_presence, PresenceTable};
use crate::{apply, blocking, chat, csi, disco, mam_sync, mds, roster, SessionError};

/// How long we wait for an IQ answer.
pub(crate) const IQ_TIMEOUT: Duration = Duration::from_secs(30);

/// How much avatar news is kept while the roster is on its way (one PEP notification
/// and one presence per contact for a roster of 2 500).
const MAX_EARLY_AVATARS: usize = 5_000;
/// The longest our presence goes without caps after a sign-in, for a history sync that
/// does not end ([`Session::announce_caps`]).
const CAPS_HOLD: Duration = Duration::from_secs(20);

/// How many answers make a burst worth an [`Event::Settled`] once they are all taken.
const ANSWER_BURST: usize = 20;

/// How long no answer may be outstanding before a burst counts as over.
const ANSWERS_QUIET: Duration = Duration::from_secs(1);

/// Our answers to disco#info queries. Stream management keeps every stanza we send until
/// the server acknowledges it, and each answer is a tree of ~40 elements (~30 KB as
/// minidom holds it): the 500 a PEP service asks for at once, for a roster of 500, held
/// 14 MB until the server caught up with them. Once such a burst is taken the app is told
/// ([`Event::Settled`]) to give the freed memory back.
#[derive(Default)]
struct Answers {
    /// Sent, not yet taken by the server.
    outstanding: usize,
    /// Sent since the last `Settled`.
    burst: usize,
    /// Changes with every answer: a quiet check for an older count is stale.
    count: u64,
}

/// Avatar news that came before the roster (see `Session::early_avatars`).
enum EarlyAvatar {
    Event(Option<Jid>, Element),
    Presence(Presence),
}

/// What a session needs to start.
#[derive(Clone)]
pub struct SessionConfig {
    pub account: Account,
    pub password: String,
    pub backoff: Backoff,
    pub calls: CallSettings,
    /// Where verified avatars are cached, by SHA-1 (`$XDG_CACHE_HOME/natter/avatars`).
    pub avatar_cache: std::path::PathBuf,
    /// When to ping the server and how long to wait (XEP-0199).
    pub keepalive: Keepalive,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

pub(crate) type IqResult = Result<Option<Element>, SessionError>;

/// Work that finishes outside the loop and reports back into it.
#[derive(Debug)]
pub(crate) enum Internal {
    /// The roster as the server sent it (stored already).
    Roster(Vec<natter_store::Contact>),
    /// Delivery progress of outbox entry `.0`, handed over on stream generation `.1`.
    Sent(i64, u64),
    Acked(i64),
    Lost(i64, u64),
    Failed(i64, String),
    SendIq {
        to: Option<Jid>,
        payload: IqPayloadKind,
        reply: oneshot::Sender<IqResult>,
    },
    /// Route archive results with this query id to the sender, until dropped.
    MamRoute {
        query_id: String,
        results: mpsc::UnboundedSender<mam::Result_>,
    },
    MamDone {
        query_id: String,
    },
    /// A Jingle IQ of call `sid` came back with an error (or no answer).
    CallIqFailed {
        sid: String,
        action: natter_protocol::jingle::Action,
        error: String,
    },
    /// The STUN/TURN services the server announced (XEP-0215), and when the
    /// earliest of their credentials expire.
    IceServers(
        Vec<natter_jingle::IceServer>,
        Option<chrono::DateTime<chrono::Utc>>,
    ),
    /// Time to ask for fresh STUN/TURN credentials (stream generation it was set on).
    RefreshIceServers(u64),
    /// Our avatar changed: presence goes out again so XEP-0153 contacts learn it.
    AvatarPublished,
    /// The archive catch-up of stream generation `.0` is over, or it took too long:
    /// our presence goes out again, with its caps ([`Session::announce_caps`]).
    AnnounceCaps(u64),
    /// The server took (acknowledged) a disco#info answer of ours, or it was dropped.
    AnswerTaken,
    /// Whether the burst of answers counted as `.0` is over ([`Answers`]).
    AnswersQuiet(u64),
}

#[derive(Debug)]
pub(crate) enum IqPayloadKind {
    Get(Element),
    Set(Element),
}

struct PendingIq {
    to: Option<Jid>,
    reply: oneshot::Sender<IqResult>,
}

/// Starts the session for `config.account` on the current tokio runtime.
pub fn start(
    config: SessionConfig,
    store: Store,
    events: mpsc::UnboundedSender<AccountEvent>,
) -> Result<SessionHandle, SessionError> {
    let account = &config.account;
    let jid = BareJid::new(&account.jid)
        .map_err(|e| SessionError::InvalidAddress(format!("{}: {e}", account.jid)))?;
    if jid.node().is_none() {
        return Err(SessionError::InvalidAddress(account.jid.clone()));
    }
    let server = match (&account.host, account.port) {
        (Some(host), port) if !host.is_empty() => ServerAddress::Manual {
            host: host.clone(),
            port: port.unwrap_or(if account.direct_tls { 5223 } else { 5222 }),
            direct_tls: account.direct_tls,
        },
        _ => ServerAddress::Srv,
    };
    let connect = ConnectConfig {
        jid: jid.clone(),
        resource: account.resource.clone(),
        password: config.password.clone(),
        server,
        extra_ca: account.extra_ca.as_ref().map(Into::into),
        pinned_cert: account.pinned_cert.clone(),
        backoff: config.backoff,
        timeouts: Timeouts::default(),
    };
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    let link = LinkControl::default();
    let stream = connection::stanza_stream_with(connect.clone(), status_tx, 256, link.clone());
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let (manager, call_events) = natter_jingle::CallManager::new(natter_jingle::CallConfig {
        transport: config.calls.transport.clone(),
        // Filled in at the first call (calls::capabilities).
        caps: natter_jingle::Capabilities { h264: false },
    });
    let avatars = crate::avatars::Avatars::new(
        account.id,
        jid.clone(),
        config.avatar_cache.clone(),
        store.clone(),
        events.clone(),
        internal_tx.clone(),
    );
    let (store_for_disco, events_for_services, internal_for_services) =
        (store.clone(), events.clone(), internal_tx.clone());
    let session = Session {
        account_id: account.id,
        jid: jid.clone(),
        store,
        events,
        commands: cmd_rx,
        status: status_rx,
        internal_tx,
        internal_rx,
        stream: Some(stream),
        connect,
        negotiating: false,
        online: false,
        sm_enabled: false,
        pending_iqs: HashMap::new(),
        mam_routes: HashMap::new(),
        presences: PresenceTable::default(),
        own_presence: own_presence(Some(Availability::Available), None, 0),
        caps_held: false,
        answers: Answers::default(),
        waiting: BTreeMap::new(),
        in_flight: HashMap::new(),
        recent_acked: VecDeque::new(),
        generation: 0,
        last_pushed: None,
        backlog: VecDeque::new(),
        roster: HashMap::new(),
        early_pushes: None,
        early_avatars: Vec::new(),
        calls: Calls {
            manager,
            settings: config.calls.clone(),
            media: HashMap::new(),
        },
        call_events,
        avatars,
        discovery: disco::Discovery::new(
            account.id,
            jid.clone(),
            store_for_disco,
            events_for_services.clone(),
            internal_for_services.clone(),
        ),
        blocking: blocking::Blocking::new(account.id, events_for_services, internal_for_services),
        link,
        watch: keepalive::Watch::new(config.keepalive),
        csi_offered: false,
        client_active: true,
    };
    tokio::spawn(session.run());
    Ok(SessionHandle {
        account_id: account.id,
        jid: jid.to_string(),
        commands: cmd_tx,
    })
}

struct Session {
    account_id: i64,
    jid: BareJid,
    store: Store,
    events: mpsc::UnboundedSender<AccountEvent>,
    commands: mpsc::Receiver<Command>,
    status: mpsc::UnboundedReceiver<ConnectorStatus>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    stream: Option<StanzaStream>,
    connect: ConnectConfig,
    /// A connection was handed to the stream and it has not bound or resumed yet.
    negotiating: bool,
    online: bool,
    sm_enabled: bool,
    pending_iqs: HashMap<String, PendingIq>,
    mam_routes: HashMap<String, mpsc::UnboundedSender<mam::Result_>>,
    presences: PresenceTable,
    own_presence: Presence,
    /// This stream's presence went out without caps, until the history is in.
    caps_held: bool,
    answers: Answers,
    /// Outbox entries not yet handed to the stream, by message id (= send order).
    waiting: BTreeMap<i64, OutboxEntry>,
    /// Handed to the stream, not yet acknowledged by the server.
    in_flight: HashMap<i64, OutboxEntry>,
    /// (origin-id, message id) of the last messages the server acknowledged: a bounce
    /// (a block, an unknown recipient) can come after the acknowledgement.
    recent_acked: VecDeque<(String, i64)>,
    /// Counts fresh (not resumed) streams; delivery reports from older ones are stale.
    generation: u64,
    /// The outbox entry handed to the stream last (the next waits until it is written).
    last_pushed: Option<tokio_xmpp::stanzastream::StanzaToken>,
    /// Stream events taken early by `take_ready_events`, handled before new ones.
    backlog: VecDeque<Option<StreamEventOuter>>,
    /// Roster subscriptions by bare JID, to know who is a contact.
    roster: HashMap<String, String>,
    /// Roster pushes that came before this stream's roster result was stored: applied
    /// after it, or the (older) result would overwrite them.
    early_pushes: Option<Vec<Element>>,
    /// Avatar news (PEP notifications, XEP-0153 presences) that came before this
    /// stream's roster: whether a sender is a contact is only known once it is in.
    early_avatars: Vec<EarlyAvatar>,
    calls: Calls,
    call_events: mpsc::UnboundedReceiver<natter_jingle::CallEvent>,
    avatars: crate::avatars::Avatars,
    discovery: disco::Discovery,
    blocking: blocking::Blocking,
    /// The current connection, to cut it when the keep-alive gets no answer and to send
    /// CSI nonzas.
    link: LinkControl,
    watch: keepalive::Watch,
    /// The server offers XEP-0352 on this stream.
    csi_offered: bool,
    /// What the UI last said (XEP-0352); a new stream starts active.
    client_active: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Session {
    /// Our presence as it goes out now: without caps while they are held back.
    fn outgoing(&self, p: Presence) -> Presence {
        if self.caps_held {
            crate::presence::without_caps(p)
        } else {
            p
        }
    }

    /// Sends our presence again, now with its caps (XEP-0115), once the history sync of
    /// this stream is over (at most [`CAPS_HOLD`] after sign-in). A caps hash is what
    /// makes the server's PEP service act for every contact (XEP-0163 §4.3): it asks us
    /// what we support, then sends each contact's last items we notify for (avatars,
    /// read positions, bookmarks), and keeps a subscription per contact. With 500
    /// contacts that is several CPU-seconds of a single-threaded Prosody, which, done
    /// while it reads out the archive, delayed a 20 000-message sync by as much. Until
    /// then contacts see us online and messages flow; only PEP news waits.
    async fn announce_caps(&mut self) {
        if std::mem::take(&mut self.caps_held) {
            tracing::debug!("history in: presence with caps");
            let presence = self.own_presence.clone();
            self.send(Stanza::Presence(presence)).await;
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(AccountEvent {
            account_id: self.account_id,
            event,
        });
    }

    async fn run(mut self) {
        self.emit(Event::Connection(ConnectionState::Connecting));
        match self.store.outbox(self.account_id).await {
            Ok(entries) => self
                .waiting
                .extend(entries.into_iter().map(|e| (e.message_id, e))),
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
        }
        match self.store.roster(self.account_id).await {
            Ok(contacts) => {
                self.roster = contacts
                    .iter()
                    .map(|c| (c.jid.clone(), c.subscription.clone()))
                    .collect();
                self.emit(Event::Roster(contacts));
            }
            Err(e) => tracing::error!(error = %e, "cannot read the roster"),
        }
        self.avatars.load().await;
        self.discovery.load().await;
        let mut keepalive_tick = tokio::time::interval(self.watch.period());
        keepalive_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while let Some(stream) = self.stream.as_mut() {
            if let Some(ev) = self.backlog.pop_front() {
                if !self.on_stream_item(ev).await {
                    break;
                }
                continue;
            }
            tokio::select! {
                ev = stream.next() => if !self.on_stream_item(ev).await {
                    break;
                },
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Disconnect { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        self.shutdown().await;
                        break;
                    }
                },
                Some(status) = self.status.recv() => self.on_connector_status(status),
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal).await,
                Some(ev) = self.call_events.recv() => self.on_call_event(ev).await,
                _ = keepalive_tick.tick() => self.on_keepalive_tick().await,
            }
        }
        // Keep answering commands from the store after the stream is gone (final error).
        while let Some(cmd) = self.commands.recv().await {
            match cmd {
                Command::Disconnect { reply } => {
                    let _ = reply.send(Ok(()));
                    break;
                }
                cmd => self.on_command(cmd).await,
            }
        }
    }

    /// Handles one item of the stream; `false` when the stream has ended.
    async fn on_stream_item(&mut self, ev: Option<StreamEventOuter>) -> bool {
        self.watch.heard();
        match ev {
            Some(StreamEventOuter::Stream(ev)) => self.on_stream_event(ev).await,
            Some(StreamEventOuter::Stanza(stanza)) => self.on_stanza(stanza).await,
            None => {
                // The connector gave up (a final error was reported) or we closed.
                self.stream = None;
                self.set_offline();
                return false;
            }
        }
        true
    }

    async fn shutdown(&mut self) {
        if self.calls.manager.active_calls() > 0 && self.online {
            // Hang up first, and give the calls a moment to say so on the stream.
            self.calls.manager.hang_up_all();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Some(ev)) =
                tokio::time::timeout_at(deadline, self.call_events.recv()).await
            {
                self.on_call_event(ev).await;
            }
        }
        self.calls.media.clear();
        // No more connection attempts: the connector stops when nobody listens.
        self.status.close();
        if let Some(stream) = self.stream.take() {
            if self.online {
                let bye = Stanza::Presence(Presence::unavailable());
                let mut token = stream.send(Box::new(bye)).await;
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), token.wait_for(StanzaStage::Sent))
                        .await;
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.close()).await;
            }
            // Not signed in: there is no stream to close politely; dropping it ends it.
        }
        self.online = false;
        self.emit(Event::Connection(ConnectionState::Offline));
    }

    fn set_offline(&mut self) {
        self.online = false;
        self.discovery.reset();
        for (jid, resource) in self.presences.clear() {
            self.emit(Event::Presence {
                jid,
                resource,
                presence: None,
            });
        }
    }

    fn on_connector_status(&mut self, status: ConnectorStatus) {
        match status {
            ConnectorStatus::Connected => self.negotiating = true,
            ConnectorStatus::Connecting { attempt } => {
                if attempt == 0 && !self.online {
                    self.emit(Event::Connection(ConnectionState::Connecting));
                }
            }
            ConnectorStatus::Retrying { error, delay } => {
                self.emit(Event::Connection(ConnectionState::Reconnecting {
                    error: Some(error),
                    retry_in: Some(delay),
                }))
            }
            ConnectorStatus::Failed(error) => {
                if let Some(stream) = self.stream.take() {
                    tokio::spawn(stream.close());
                }
                self.set_offline();
                self.emit(Event::Connection(ConnectionState::Failed(error)))
            }
        }
    }

    async fn on_stream_event(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Reset {
                bound_jid,
                features,
            } => {
                tracing::info!(jid = %bound_jid, "signed in");
                self.calls.manager.set_own_jid(bound_jid.to_string());
                self.negotiating = false;
                self.online = true;
                self.sm_enabled = features.stream_management.is_some();
                self.csi_offered = csi::offered(&features);
                // A fresh stream: answers to earlier IQs will never come.
                for (_, pending) in self.pending_iqs.drain() {
                    let _ = pending.reply.send(Err(SessionError::NotConnected));
                }
                self.mam_routes.clear();
                // Whatever the old stream had not acknowledged goes out again, in order,
                // before anything newer (the recipient deduplicates by origin-id).
                self.generation += 1;
                let unacked: Vec<_> = self.in_flight.drain().collect();
                self.waiting.extend(unacked);
                self.last_pushed = None;
                self.set_offline();
                self.online = true;
                // Presence first: contacts see us online without waiting for the server
                // to serialise a large roster (RFC 6121 §4.2 allows either order; our
                // presence handling does not depend on the roster). Its caps come once
                // the history is in (`announce_caps`).
                self.caps_held = true;
                let presence = self.outgoing(self.own_presence.clone());
                self.send(Stanza::Presence(presence)).await;
                let (internal, generation) = (self.internal_tx.clone(), self.generation);
                tokio::spawn(async move {
                    tokio::time::sleep(CAPS_HOLD).await;
                    let _ = internal.send(Internal::AnnounceCaps(generation));
                });
                self.emit(Event::Connection(ConnectionState::Online {
                    jid: bound_jid.to_string(),
                    resumed: false,
                }));
                if self.calls.settings.external_services {
                    self.request_external_services().await;
                }
                self.early_pushes = Some(Vec::new());
                self.request_roster().await;
                self.discovery.discover_server();
                self.blocking.fetch();
                // XEP-0352: a new stream starts active.
                if !self.client_active {
                    self.send_client_state();
                }
                // XEP-0280: copies of what our other devices send and receive. Before the
                // archive catch-up, so that nothing falls between the two.
                let carbons = self
                    .send_iq(
                        None,
                        IqPayloadKind::Set(tokio_xmpp::parsers::carbons::Enable.into()),
                    )
                    .await;
                tokio::spawn(async move {
                    match carbons.await {
                        Ok(Ok(_)) => tracing::debug!("carbons enabled"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "carbons not enabled"),
                        Err(_) => {}
                    }
                });
                mam_sync::spawn_catch_up(
                    self.store.clone(),
                    self.account_id,
                    self.jid.clone(),
                    self.internal_tx.clone(),
                    self.events.clone(),
                    Some(self.connect.clone()),
                    self.generation,
                );
                self.pump_outbox().await;
            }
            StreamEvent::Resumed => {
                tracing::info!("stream resumed");
                self.negotiating = false;
                self.online = true;
                self.send_client_state();
                self.emit(Event::Connection(ConnectionState::Online {
                    jid: self.jid.to_string(),
                    resumed: true,
                }));
                // The signal to send them may have come while we were away.
                self.announce_caps().await;
                self.pump_outbox().await;
            }
            StreamEvent::Suspended => {
                tracing::info!("connection lost, resuming");
                self.online = false;
                if std::mem::take(&mut self.negotiating) {
                    // The connection broke while binding or resuming. tokio-xmpp 6 cannot
                    // parse a <failed/> without 'h' (what Prosody sends after a restart)
                    // and would retry the same resumption forever: start a fresh stream;
                    // the outbox re-sends what was not acknowledged.
                    self.restart_stream();
                }
                self.emit(Event::Connection(ConnectionState::Reconnecting {
                    error: None,
                    retry_in: None,
                }));
            }
        }
    }

    fn restart_stream(&mut self) {
        tracing::warn!("starting a fresh stream instead of resuming");
        self.backlog.clear();
        self.last_pushed = None;
        if let Some(old) = self.stream.take() {
            tokio::spawn(old.close());
        }
        let (status_tx, status_rx) = mpsc::unbounded_channel();
        self.status = status_rx;
        self.stream = Some(connection::stanza_stream_with(
            self.connect.clone(),
            status_tx,
            256,
            self.link.clone(),
        ));
    }

    async fn send(&mut self, stanza: Stanza) -> Option<tokio_xmpp::stanzastream::StanzaToken> {
        let stream = self.stream.as_ref()?;
        Some(stream.send(Box::new(stanza)).await)
    }

    async fn send_iq(
        &mut self,
        to: Option<Jid>,
        payload: IqPayloadKind,
    ) -> oneshot::Receiver<IqResult> {
        let (tx, rx) = oneshot::channel();
        if !self.online {
            let _ = tx.send(Err(SessionError::NotConnected));
            return rx;
        }
        let id = chat::new_origin_id();
        let iq = match payload {
            IqPayloadKind::Get(p) => Iq::Get {
                from: None,
                to: to.clone(),
                id: id.clone(),
                payload: p,
            },
            IqPayloadKind::Set(p) => Iq::Set {
                from: None,
                to: to.clone(),
                id: id.clone(),
                payload: p,
            },
        };
        self.pending_iqs.insert(id, PendingIq { to, reply: tx });
        self.send(Stanza::Iq(iq)).await;
        rx
    }

    /// Whether `from` may answer an IQ we sent to `to` (RFC 6120 §8.1.2.1).
    fn answer_from_ok(&self, to: &Option<Jid>, from: &Option<Jid>) -> bool {
        let is_own_bare = |j: &Jid| j.resource().is_none() && j.to_bare() == self.jid;
        match (to, from) {
            (None, None) => true,
            (None, Some(f)) => is_own_bare(f),
            (Some(t), Some(f)) => t == f,
            (Some(t), None) => is_own_bare(t),
        }
    }

    async fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Iq(iq) => self.on_iq(iq).await,
            Stanza::Message(msg) => self.on_message(msg).await,
            Stanza::Presence(p) => self.on_presence(p).await,
        }
    }

    async fn on_iq(&mut self, iq: Iq) {
        match iq {
            Iq::Result {
                from, id, payload, ..
            } => self.answer(id, from, Ok(payload)),
            Iq::Error {
                from, id, error, ..
            } => {
                let condition = format!("{:?}", error.defined_condition);
                self.answer(id, from, Err(SessionError::Refused(condition)))
            }
            Iq::Set {
                from, id, payload, ..
            } if payload.is("query", ns::ROSTER) => {
                if !roster::push_allowed(from.as_ref(), &self.jid) {
                    tracing::warn!(?from, "ignoring a roster push from a foreign sender");
                    return;
                }
                match &mut self.early_pushes {
                    Some(early) => early.push(payload),
                    None => self.on_roster_push(payload).await,
                }
                self.reply_empty(from, id).await;
            }
            Iq::Set {
                from, id, payload, ..
            } if blocking::is_push(&payload) => {
                // XEP-0191 §3.3: pushes come from our own account; anyone else lies.
                if !roster::push_allowed(from.as_ref(), &self.jid) {
                    tracing::warn!(?from, "refusing a blocking push from a foreign sender");
                    let error =
                        StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAllowed, "en", "");
                    self.send(Stanza::Iq(Iq::Error {
                        from: None,
                        to: from,
                        id,
                        error,
                        payload: None,
                    }))
                    .await;
                    return;
                }
                self.blocking.on_push(payload);
                self.reply_empty(from, id).await;
            }
            Iq::Set {
                from, id, payload, ..
            } if payload.is("jingle", natter_protocol::ns::JINGLE) => {
                self.on_jingle_iq(from, id, payload).await
            }
            Iq::Get {
                from, id, payload, ..
            } if payload.is("ping", ns::PING) => self.reply_empty(from, id).await,
            Iq::Get {
                from, id, payload, ..
            } if payload.is("query", ns::DISCO_INFO) => {
                let node = DiscoInfoQuery::try_from(payload).ok().and_then(|q| q.node);
                self.answer_disco_info(from, id, node).await;
            }
            Iq::Get { from, id, .. } | Iq::Set { from, id, .. } => {
                let error = StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "en",
                    "",
                );
                self.send(Stanza::Iq(Iq::Error {
                    from: None,
                    to: from,
                    id,
                    error,
                    payload: None,
                }))
                .await;
            }
        }
    }

    /// XEP-0030 about us: our features, for no node or our XEP-0115 `node#ver`.
    async fn answer_disco_info(&mut self, to: Option<Jid>, id: String, node: Option<String>) {
        let iq = if disco::is_own_node(node.as_deref()) {
            Iq::Result {
                from: None,
                to,
                id,
                payload: Some(disco::own_info(node).into()),
            }
        } else {
            let error =
                StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound, "en", "");
            Iq::Error {
                from: None,
                to,
                id,
                error,
                payload: None,
            }
        };
        let Some(mut token) = self.send(Stanza::Iq(iq)).await else {
            return;
        };
        let a = &mut self.answers;
        a.outstanding += 1;
        a.burst += 1;
        a.count += 1;
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            // Acknowledged, or gone from the queue (no stream management, a broken stream).
            token.wait_for(StanzaStage::Acked).await;
            let _ = internal.send(Internal::AnswerTaken);
        });
    }

    /// XEP-0199 keep-alive: ping the server after a silence; cut a connection whose
    /// ping went unanswered (tokio-xmpp then reconnects and resumes).
    async fn on_keepalive_tick(&mut self) {
        match self.watch.tick(self.online) {
            Due::Nothing => {}
            Due::Ping => {
                let server = Jid::from(BareJid::from_parts(None, self.jid.domain()));
                let ping = tokio_xmpp::parsers::ping::Ping;
                // Any answer (or anything else arriving) counts: see `on_stream_item`.
                drop(
                    self.send_iq(Some(server), IqPayloadKind::Get(ping.into()))
                        .await,
                );
            }
            Due::Dead => {
                tracing::warn!("no answer to a keep-alive ping: the connection is dead");
                self.link.cut();
            }
        }
    }

    /// XEP-0352: tells the server our current state, if it listens.
    fn send_client_state(&self) {
        if self.csi_offered && self.online {
            tracing::debug!(active = self.client_active, "client state");
            self.link.send_nonza(csi::nonza(self.client_active));
        }
    }

    /// An empty IQ result (RFC 6120 §8.2.3).
    async fn reply_empty(&mut self, to: Option<Jid>, id: String) {
        self.send(Stanza::Iq(Iq::Result {
            from: None,
            to,
            id,
            payload: None,
        }))
        .await;
    }

    fn answer(&mut self, id: String, from: Option<Jid>, result: IqResult) {
        let Some(pending) = self.pending_iqs.get(&id) else {
            tracing::debug!(%id, "answer to an unknown IQ");
            return;
        };
        if !self.answer_from_ok(&pending.to, &from) {
            tracing::warn!(%id, ?from, "IQ answer from the wrong sender, ignored");
            return;
        }
        if let Some(pending) = self.pending_iqs.remove(&id) {
            let _ = pending.reply.send(result);
        }
    }

    async fn request_roster(&mut self) {
        let ver = match self.store.roster_version(self.account_id).await {
            Ok(v) => Some(v.unwrap_or_default()),
            Err(_) => None,
        };
        let query = Roster { ver, items: vec![] };
        let rx = self.send_iq(None, IqPayloadKind::Get(query.into())).await;
        let store = self.store.clone();
        let account_id = self.account_id;
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let contacts = match tokio::time::timeout(IQ_TIMEOUT, rx).await {
                Ok(Ok(Ok(Some(el)))) => match Roster::try_from(el) {
                    Ok(r) => {
                        let contacts: Vec<_> =
                            r.items.iter().map(roster::contact_from_item).collect();
                        if let Err(e) = store.replace_roster(account_id, contacts, r.ver).await {
                            tracing::error!(error = %e, "cannot store the roster");
                        }
                        store.roster(account_id).await
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed roster result");
                        return;
                    }
                },
                // Empty result: our cached version is current (RFC 6121 §2.6.3).
                Ok(Ok(Ok(None))) => store.roster(account_id).await,
                other => {
                    // The stored roster stands (and held-back pushes go on).
                    tracing::warn!(?other, "roster request failed");
                    store.roster(account_id).await
                }
            };
            if let Ok(contacts) = contacts {
                let _ = internal.send(Internal::Roster(contacts));
            }
        });
    }

    async fn on_roster_push(&mut self, payload: Element) {
        let Ok(push) = Roster::try_from(payload) else {
            tracing::warn!("malformed roster push");
            return;
        };
        // RFC 6121 §2.1.6: a push carries exactly one item.
        let [item] = push.items.as_slice() else {
            tracing::warn!("roster push without exactly one item");
            return;
        };
        let contact = roster::contact_from_item(item);
        if let Err(e) = self
            .store
            .apply_roster_push(self.account_id, contact.clone(), push.ver)
            .await
        {
            tracing::error!(error = %e, "cannot store a roster push");
            return;
        }
        if contact.subscription == "remove" {
            self.roster.remove(&contact.jid);
            self.emit(Event::RosterRemoved { jid: contact.jid });
        } else {
            self.roster
                .insert(contact.jid.clone(), contact.subscription.clone());
            self.emit(Event::RosterItem(contact));
        }
    }

    async fn on_message(&mut self, msg: Message) {
        if let Some(result) = msg
            .payloads
            .iter()
            .find(|p| p.is("result", ns::MAM))
            .and_then(|p| mam::Result_::try_from(p.clone()).ok())
        {
            // XEP-0313 §4.1: results of our own archive come from our bare JID (or none).
            let own = roster::push_allowed(msg.from.as_ref(), &self.jid);
            let route = result
                .queryid
                .as_ref()
                .and_then(|q| self.mam_routes.get(&q.0));
            match (own, route) {
                (true, Some(route)) => {
                    let _ = route.send(result);
                }
                _ => {
                    tracing::warn!(from = ?msg.from, "dropping an archive result we did not ask for")
                }
            }
            return;
        }
        if msg.type_ == tokio_xmpp::parsers::message::MessageType::Error {
            self.on_message_error(&msg).await;
            return;
        }
        if let Some(event) = msg
            .payloads
            .iter()
            .find(|p| p.is("event", natter_protocol::ns::PUBSUB_EVENT))
        {
            self.on_pubsub_event(msg.from.as_ref(), event).await;
            return;
        }
        if let Some(jmi) = msg
            .payloads
            .iter()
            .find(|p| p.ns() == natter_protocol::ns::JMI)
        {
            match (
                natter_protocol::jmi::JingleMessage::try_from(jmi.clone()),
                &msg.from,
            ) {
                (Ok(m), Some(from)) => {
                    if matches!(m, natter_protocol::jmi::JingleMessage::Propose { .. }) {
                        self.calls.manager.set_capabilities(calls::capabilities());
                    }
                    self.calls.manager.on_message(&from.to_string(), m)
                }
                (Err(e), _) => tracing::debug!(error = %e, "malformed call message dropped"),
                (_, None) => tracing::debug!("call message without a sender dropped"),
            }
            return;
        }
        let mut batch = Vec::new();
        if let Some(inbound) = self.classify(msg) {
            batch.push(inbound);
        }
        self.gather_ready_messages(&mut batch);
        self.process(batch).await;
    }

    /// Keeps avatar news until the roster is in (a bounded number: a flood is dropped).
    fn hold_for_roster(&mut self, early: EarlyAvatar) {
        if self.early_avatars.len() < MAX_EARLY_AVATARS {
            self.early_avatars.push(early);
        } else {
            tracing::warn!("too much avatar news before the roster: dropped");
        }
    }

    /// A PEP notification (XEP-0163). Our own nodes' only from our own account.
    async fn on_pubsub_event(&mut self, from: Option<&Jid>, event: &Element) {
        if let Some(positions) = natter_protocol::mds::from_event(event) {
            if !roster::push_allowed(from, &self.jid) {
                tracing::warn!(?from, "dropping read positions not from our own account");
                return;
            }
            for ev in mds::apply(&self.store, self.account_id, &self.jid, positions).await {
                self.emit(ev);
            }
            return;
        }
        if !crate::avatars::is_metadata_event(event) {
            tracing::trace!(?from, "pubsub event for no node we follow");
            return;
        }
        if self.early_pushes.is_some() {
            self.hold_for_roster(EarlyAvatar::Event(from.cloned(), event.clone()));
            return;
        }
        self.avatars.on_event(from, event, &self.roster);
    }

    /// The validate and read stages of a live stanza (or a carbon of one): `None` when
    /// it is not ours to take (spoofed carbon, not a chat message, bad sender).
    fn classify(&self, msg: Message) -> Option<(chat::Inbound, chat::Path)> {
        let (msg, path) = match chat::unwrap_carbon(&msg, &self.jid) {
            Ok(Some((inner, sent))) => (inner, chat::Path::Carbon { sent }),
            Ok(None) => (msg, chat::Path::Live),
            Err(chat::Rejected::BadSender(why)) => {
                tracing::warn!(%why, "dropping a forged carbon");
                return None;
            }
            Err(chat::Rejected::NotChat) => return None,
        };
        match chat::classify(&msg, self.account_id, &self.jid, now_ms(), path, None) {
            Ok(inbound) => Some((inbound, path)),
            Err(chat::Rejected::NotChat) => None,
            Err(chat::Rejected::BadSender(why)) => {
                tracing::debug!(%why, "message not taken");
                None
            }
        }
    }

    /// Takes the chat messages already waiting behind the one in `batch`, so that a
    /// burst is stored in one transaction. Stops at anything else (kept, in order, in the
    /// backlog), so no stanza overtakes another.
    fn gather_ready_messages(&mut self, batch: &mut Vec<(chat::Inbound, chat::Path)>) {
        const MAX_BATCH: usize = 500;
        while batch.len() < MAX_BATCH && self.backlog.is_empty() {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let Some(item) = stream.next().now_or_never() else {
                return; // nothing more is ready
            };
            let plain = match &item {
                Some(StreamEventOuter::Stanza(Stanza::Message(m))) => {
                    m.type_ != tokio_xmpp::parsers::message::MessageType::Error
                        && !m
                            .payloads
                            .iter()
                            .any(|p| p.is("result", ns::MAM) || p.ns() == natter_protocol::ns::JMI)
                }
                _ => false,
            };
            if !plain {
                self.backlog.push_back(item);
                return;
            }
            if let Some(StreamEventOuter::Stanza(Stanza::Message(m))) = item {
                if let Some(inbound) = self.classify(m) {
                    batch.push(inbound);
                }
            }
        }
    }

    /// The store, apply, answer and emit stages, in arrival order: runs of new messages
    /// are stored in one transaction; what changes an earlier message is applied after
    /// the messages before it.
    async fn process(&mut self, batch: Vec<(chat::Inbound, chat::Path)>) {
        let mut run = Vec::new();
        for (mut inbound, path) in batch {
            let live_from_peer =
                path == chat::Path::Live && inbound.direction == Direction::Incoming;
            if let (true, Some(state)) = (live_from_peer, &inbound.chat_state) {
                self.emit(Event::ChatState {
                    peer: inbound.peer.to_string(),
                    state: apply::chat_state(state),
                });
            }
            if let (true, Some(id)) = (live_from_peer, inbound.receipt_request.take()) {
                self.send_receipt(&inbound, id).await;
            }
            if let Some(m) = inbound.message.take() {
                run.push(m);
            }
            if inbound.action.is_some() {
                self.store_and_emit(std::mem::take(&mut run)).await;
                for event in apply::apply(&self.store, self.account_id, &self.jid, &inbound).await {
                    self.emit(event);
                }
            }
        }
        self.store_and_emit(run).await;
    }

    /// XEP-0184: a receipt, only to contacts in our roster (a stranger learns nothing
    /// about when we are online).
    async fn send_receipt(&mut self, inbound: &chat::Inbound, id: String) {
        if !self.roster.contains_key(&inbound.peer.to_string()) {
            return;
        }
        let Some(sender) = inbound
            .message
            .as_ref()
            .and_then(|m| Jid::new(&m.sender).ok())
        else {
            return;
        };
        let receipt = tokio_xmpp::parsers::receipts::Received { id };
        let msg = chat::signal(&sender, vec![receipt.into()]);
        self.send(Stanza::Message(msg)).await;
    }

    async fn on_message_error(&mut self, msg: &Message) {
        let Some(id) = msg.id.as_ref().map(|i| i.0.clone()) else {
            return;
        };
        let failed: Vec<i64> = self
            .in_flight
            .values()
            .chain(self.waiting.values())
            .filter(|e| e.origin_id == id)
            .map(|e| e.message_id)
            .chain(
                self.recent_acked
                    .iter()
                    .filter(|(origin, _)| *origin == id)
                    .map(|(_, message_id)| *message_id),
            )
            .collect();
        for message_id in failed {
            let _ = self.internal_tx.send(Internal::Failed(
                message_id,
                "the recipient's server refused it".into(),
            ));
        }
    }

    /// The store and emit stages. Everything archived before a message we received live
    /// has reached us too (one ordered stream), so the archive cursor moves with them.
    async fn store_and_emit(&mut self, batch: Vec<NewMessage>) {
        if batch.is_empty() {
            return;
        }
        tracing::debug!(messages = batch.len(), "live messages");
        match self.store.insert_live(self.account_id, batch).await {
            Ok(stored) => {
                for m in stored {
                    self.emit(Event::Message(m));
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot store messages"),
        }
    }

    async fn on_presence(&mut self, p: Presence) {
        let Some(from) = p.from.clone() else {
            return;
        };
        let bare = from.to_bare().to_string();
        if self.early_pushes.is_some() {
            self.hold_for_roster(EarlyAvatar::Presence(p.clone()));
        } else {
            self.avatars.on_presence(&p, &self.roster);
        }
        match p.type_ {
            PresenceType::Subscribe if from.to_bare() != self.jid => {
                self.emit(Event::SubscriptionRequest { from: bare });
            }
            PresenceType::None | PresenceType::Unavailable => {
                let resource = from.resource().map(|r| r.to_string()).unwrap_or_default();
                if let Some(change) = self.presences.apply(&bare, &resource, &p) {
                    self.emit(Event::Presence {
                        jid: bare,
                        resource,
                        presence: change,
                    });
                }
            }
            _ => {}
        }
        self.discovery.on_presence(&p);
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Features { jid, reply } => {
                let _ = reply.send(Ok(self.discovery.features(&jid)));
            }
            Command::SetClientActive { active } => {
                if active != self.client_active {
                    self.client_active = active;
                    self.send_client_state();
                }
            }
            Command::Block {
                jid,
                report_spam,
                reply,
            } => {
                let blocking = self.blocking.clone();
                tokio::spawn(async move {
                    let _ = reply.send(blocking.block(&jid, report_spam).await);
                });
            }
            Command::Unblock { jid, reply } => {
                let blocking = self.blocking.clone();
                tokio::spawn(async move {
                    let _ = reply.send(blocking.unblock(&jid).await);
                });
            }
            Command::Blocklist { reply } => {
                let _ = reply.send(Ok(self.blocking.jids()));
            }
            Command::PlaceCall { to, video, reply } => {
                let result = match BareJid::new(&to) {
                    Ok(jid) if !self.online => {
                        let _ = jid;
                        Err(SessionError::NotConnected)
                    }
                    Ok(jid) => {
                        let mut media = vec![natter_jingle::MediaKind::Audio];
                        if video {
                            media.push(natter_jingle::MediaKind::Video);
                        }
                        self.calls.manager.set_capabilities(calls::capabilities());
                        Ok(self.calls.manager.place_call(&jid.to_string(), media))
                    }
                    Err(e) => Err(SessionError::InvalidAddress(format!("{to}: {e}"))),
                };
                let _ = reply.send(result);
            }
            Command::CallAction { sid, action, reply } => {
                let input = match action {
                    CallAction::Accept => Some(calls::CallInput::Accept),
                    CallAction::Reject => Some(calls::CallInput::Reject),
                    CallAction::HangUp => Some(calls::CallInput::HangUp),
                    CallAction::RestartIce => Some(calls::CallInput::RestartIce),
                    CallAction::AddVideo => Some(calls::CallInput::AddVideo),
                    CallAction::Mute(m) => {
                        if let Some(active) = self.calls.media.get(&sid) {
                            active.media.set_muted(m);
                        }
                        Some(calls::CallInput::SetMuted(m))
                    }
                    CallAction::Camera(on) => {
                        if let Some(active) = self.calls.media.get(&sid) {
                            active.media.set_camera_enabled(on);
                        }
                        None
                    }
                };
                let known = match input {
                    Some(input) => self.calls.manager.command(&sid, input),
                    None => self.calls.media.contains_key(&sid),
                };
                let _ = reply.send(if known {
                    Ok(())
                } else {
                    Err(SessionError::NoSuchCall)
                });
            }
            Command::CallStats { sid, reply } => {
                let _ = reply.send(self.calls.stats(&sid).ok_or(SessionError::NoSuchCall));
            }
            Command::SendMessage {
                to,
                body,
                reply_to: None,
                reply,
            } => {
                let _ = reply.send(self.queue_message(&to, body, None).await);
            }
            Command::SendMessage {
                body,
                reply_to: Some(id),
                reply,
                ..
            } => {
                let result = match self.own_message(id, None).await {
                    Ok((m, reference)) => self.queue_message(&m.peer, body, Some(reference)).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Correct { id, body, reply } => {
                let _ = reply.send(self.correct(id, body).await);
            }
            Command::Retract { id, reply } => {
                let _ = reply.send(self.retract(id).await);
            }
            Command::React { id, emojis, reply } => {
                let _ = reply.send(self.react(id, emojis).await);
            }
            Command::SendChatState { peer, state } => {
                self.send_chat_state(&peer, state).await;
            }
            Command::Search {
                query,
                limit,
                reply,
            } => {
                let store = self.store.clone();
                let account_id = self.account_id;
                tokio::spawn(async move {
                    let result = store.search(account_id, query, limit).await;
                    let _ = reply.send(result.map_err(Into::into));
                });
            }
            Command::SetPresence {
                availability,
                status,
                priority,
                reply,
            } => {
                let p = own_presence(availability, status.as_deref(), priority);
                if availability.is_some() {
                    self.own_presence = p.clone();
                }
                if self.online {
                    let p = self.outgoing(p);
                    self.send(Stanza::Presence(p)).await;
                }
                let _ = reply.send(Ok(()));
            }
            Command::AddContact {
                jid,
                name,
                groups,
                reply,
            } => match BareJid::new(&jid) {
                Ok(jid) => {
                    let item = roster::item(jid, name, groups, false);
                    self.roster_set(item, reply).await;
                }
                Err(e) => {
                    let _ = reply.send(Err(SessionError::InvalidAddress(format!("{jid}: {e}"))));
                }
            },
            Command::RemoveContact { jid, reply } => match BareJid::new(&jid) {
                Ok(jid) => {
                    let item = roster::item(jid, None, vec![], true);
                    self.roster_set(item, reply).await;
                }
                Err(e) => {
                    let _ = reply.send(Err(SessionError::InvalidAddress(format!("{jid}: {e}"))));
                }
            },
            Command::Subscription { jid, action, reply } => {
                let result = match BareJid::new(&jid) {
                    Ok(to) => {
                        let mut p = match action {
                            SubscriptionAction::Request => Presence::subscribe(),
                            SubscriptionAction::Approve => Presence::subscribed(),
                            SubscriptionAction::Deny => Presence::new(PresenceType::Unsubscribed),
                            SubscriptionAction::Cancel => Presence::unsubscribe(),
                        };
                        p.to = Some(Jid::from(to));
                        if self.online {
                            self.send(Stanza::Presence(p)).await;
                            Ok(())
                        } else {
                            Err(SessionError::NotConnected)
                        }
                    }
                    Err(e) => Err(SessionError::InvalidAddress(format!("{jid}: {e}"))),
                };
                let _ = reply.send(result);
            }
            Command::Roster { reply } => {
                let _ = reply.send(self.store.roster(self.account_id).await.map_err(Into::into));
            }
            Command::Presences { jid, reply } => {
                let _ = reply.send(Ok(self.presences.resources(&jid)));
            }
            Command::History {
                peer,
                before,
                limit,
                reply,
            } => self.read_history(peer, reply, move |store, id| async move {
                store.history(id, before, limit).await
            }),
            Command::FetchOlder { peer, limit, reply } => {
                let (store, account_id, jid) =
                    (self.store.clone(), self.account_id, self.jid.clone());
                let (internal, events) = (self.internal_tx.clone(), self.events.clone());
                tokio::spawn(async move {
                    let result = mam_sync::fetch_older(
                        &store,
                        account_id,
                        &jid,
                        &internal,
                        &events,
                        &peer,
                        limit as usize,
                    )
                    .await;
                    let _ = reply.send(result);
                });
            }
            Command::HistoryAfter {
                peer,
                after,
                limit,
                reply,
            } => self.read_history(peer, reply, move |store, id| async move {
                store.history_after(id, after, limit).await
            }),
            Command::HistoryAround {
                peer,
                message,
                limit,
                reply,
            } => self.read_history(peer, reply, move |store, conversation| async move {
                // Message ids are global: only one of this conversation is shown.
                let target = match store.message(message).await? {
                    Some(m) if m.conversation_id == conversation => m,
                    _ => return Ok(Vec::new()),
                };
                let at = natter_store::HistoryCursor::from(&target);
                let mut page = store.history(conversation, Some(at), limit).await?;
                page.reverse();
                page.push(target);
                page.extend(store.history_after(conversation, at, limit).await?);
                Ok(page)
            }),
            Command::MarkRead { peer, reply } => {
                let result = async {
                    match self
                        .store
                        .find_conversation(self.account_id, peer.clone())
                        .await?
                    {
                        Some(id) => {
                            self.store.mark_read(id).await?;
                            self.store.newest_incoming(id).await
                        }
                        None => Ok(None),
                    }
                }
                .await;
                if let Ok(Some(newest)) = &result {
                    self.send_displayed(newest).await;
                    self.publish_read_position(newest).await;
                }
                let _ = reply.send(result.map(|_| ()).map_err(Into::into));
            }
            Command::Conversations { reply } => {
                let store = self.store.clone();
                let account_id = self.account_id;
                tokio::spawn(async move {
                    let result = store.conversation_summaries(account_id).await;
                    let _ = reply.send(result.map_err(Into::into));
                });
            }
            Command::RetryMessage { id, reply } => {
                let result = match self.store.retry_message(self.account_id, id).await {
                    Ok(Some(entry)) => {
                        self.waiting.insert(id, entry);
                        self.emit(Event::MessageState {
                            id,
                            state: MessageState::Pending,
                        });
                        self.pump_outbox().await;
                        Ok(())
                    }
                    Ok(None) => Err(SessionError::NoSuchMessage),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::SetAvatar { data, mime, reply } => {
                let avatars = self.avatars.clone();
                tokio::spawn(async move {
                    let _ = reply.send(avatars.publish(data, mime).await);
                });
            }
            Command::Avatar { jid, reply } => {
                let _ = reply.send(Ok(self.avatars.path(&jid)));
            }
            Command::Disconnect { reply } => {
                // Handled in the loop; here only after the stream is gone.
                let _ = reply.send(Ok(()));
            }
        }
    }

    async fn roster_set(
        &mut self,
        item: tokio_xmpp::parsers::roster::Item,
        reply: crate::handle::Reply<()>,
    ) {
        let query = Roster {
            ver: None,
            items: vec![item],
        };
        let rx = self.send_iq(None, IqPayloadKind::Set(query.into())).await;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(IQ_TIMEOUT, rx).await {
                Ok(Ok(r)) => r.map(|_| ()),
                Ok(Err(_)) => Err(SessionError::Stopped),
                Err(_) => Err(SessionError::Timeout),
            };
            let _ = reply.send(result);
        });
    }

    async fn queue_message(
        &mut self,
        to: &str,
        body: String,
        reply_to: Option<String>,
    ) -> Result<natter_store::Message, SessionError> {
        let peer =
            BareJid::new(to).map_err(|e| SessionError::InvalidAddress(format!("{to}: {e}")))?;
        if peer.node().is_none() || peer == self.jid {
            return Err(SessionError::InvalidAddress(to.to_owned()));
        }
        if body.trim().is_empty() {
            return Err(SessionError::EmptyMessage);
        }
        let origin_id = chat::new_origin_id();
        let new = NewMessage {
            account_id: self.account_id,
            peer: peer.to_string(),
            direction: Direction::Outgoing,
            sender: self.jid.to_string(),
            body,
            timestamp: now_ms(),
            state: MessageState::Pending,
            origin_id: Some(origin_id.clone()),
            stanza_id: None,
            placement: Placement::Append,
            reply_to,
        };
        let stored = self
            .store
            .insert_message(new)
            .await?
            .ok_or_else(|| SessionError::Store("the message was not stored".into()))?;
        self.waiting.insert(
            stored.id,
            OutboxEntry {
                message_id: stored.id,
                peer: stored.peer.clone(),
                body: stored.body.clone(),
                origin_id,
                timestamp: stored.timestamp,
                reply_to: stored.reply_to.clone(),
                quote: stored.quote.clone(),
            },
        );
        self.emit(Event::Message(stored.clone()));
        self.pump_outbox().await;
        Ok(stored)
    }

    /// Takes stream events that are already waiting, so that a lost connection is known
    /// before anything more is handed to the stream (they are handled in order later).
    fn take_ready_events(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        while let Some(ev) = stream.next().now_or_never() {
            let end = ev.is_none();
            if matches!(
                ev,
                Some(StreamEventOuter::Stream(StreamEvent::Suspended)) | None
            ) {
                self.online = false;
            }
            self.backlog.push_back(ev);
            if end {
                break;
            }
        }
    }

    /// Hands waiting outbox entries to the stream, oldest first, one at a time: the next
    /// goes only when the previous one is written. tokio-xmpp keeps unwritten stanzas
    /// for the next stream and sends them before anything else; holding at most one
    /// there keeps a lossy reconnect from reordering messages.
    async fn pump_outbox(&mut self) {
        loop {
            if let Some(last) = &self.last_pushed {
                if StanzaStage::from(&last.state()) < StanzaStage::Sent {
                    break;
                }
            }
            self.take_ready_events();
            if !self.online {
                break;
            }
            let Some((id, entry)) = self.waiting.pop_first() else {
                break;
            };
            let Ok(to) = BareJid::new(&entry.peer) else {
                let _ = self
                    .internal_tx
                    .send(Internal::Failed(id, "bad address".into()));
                continue;
            };
            let stanza = Stanza::Message(chat::outgoing_entry(&to, &entry));
            let Some(token) = self.send(stanza).await else {
                self.waiting.insert(id, entry);
                break;
            };
            self.in_flight.insert(id, entry);
            self.last_pushed = Some(token.clone());
            let internal = self.internal_tx.clone();
            let sm = self.sm_enabled;
            tokio::spawn(track_delivery(token, id, self.generation, sm, internal));
        }
    }

    async fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Roster(contacts) => {
                self.roster = contacts
                    .iter()
                    .map(|c| (c.jid.clone(), c.subscription.clone()))
                    .collect();
                self.emit(Event::Roster(contacts));
                for push in self.early_pushes.take().unwrap_or_default() {
                    self.on_roster_push(push).await;
                }
                for early in std::mem::take(&mut self.early_avatars) {
                    match early {
                        EarlyAvatar::Event(from, event) => {
                            self.avatars.on_event(from.as_ref(), &event, &self.roster);
                        }
                        EarlyAvatar::Presence(p) => self.avatars.on_presence(&p, &self.roster),
                    }
                }
                let unsent = self
                    .roster
                    .iter()
                    .filter(|(_, subscription)| !matches!(subscription.as_str(), "both" | "from"))
                    .map(|(jid, _)| jid.clone())
                    .collect();
                self.avatars.on_signed_in(unsent);
            }
            Internal::Sent(id, generation) => {
                if generation == self.generation && self.in_flight.contains_key(&id) {
                    self.set_state(id, MessageState::Sent).await;
                }
                self.pump_outbox().await;
            }
            Internal::Acked(id) => {
                // The server has it, whichever stream carried it.
                let entry = self
                    .in_flight
                    .remove(&id)
                    .or_else(|| self.waiting.remove(&id));
                if let Some(entry) = entry {
                    if self.recent_acked.len() >= 256 {
                        self.recent_acked.pop_front();
                    }
                    self.recent_acked.push_back((entry.origin_id, id));
                }
                self.set_state(id, MessageState::Acked).await;
            }
            Internal::Lost(id, generation) => {
                // Lost within the current stream (a transport failure): send it again.
                // Losses of older streams were requeued when the new stream started.
                if generation == self.generation {
                    if let Some(entry) = self.in_flight.remove(&id) {
                        self.waiting.insert(id, entry);
                        self.pump_outbox().await;
                    }
                }
            }
            Internal::Failed(id, why) => {
                tracing::warn!(id, %why, "message failed");
                self.in_flight.remove(&id);
                self.waiting.remove(&id);
                self.set_state(id, MessageState::Failed).await;
            }
            Internal::SendIq { to, payload, reply } => {
                let rx = self.send_iq(to, payload).await;
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(IQ_TIMEOUT, rx).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(_)) => Err(SessionError::NotConnected),
                        Err(_) => Err(SessionError::Timeout),
                    };
                    let _ = reply.send(result);
                });
            }
            Internal::MamRoute { query_id, results } => {
                self.mam_routes.insert(query_id, results);
            }
            Internal::MamDone { query_id } => {
                self.mam_routes.remove(&query_id);
            }
            Internal::CallIqFailed { sid, action, error } => {
                self.calls.manager.iq_failed(&sid, action, error);
            }
            Internal::IceServers(servers, expires) => {
                tracing::debug!(
                    count = servers.len(),
                    ?expires,
                    "STUN/TURN services for calls"
                );
                self.calls.manager.set_ice_servers(servers);
                if let Some(expires) = expires {
                    // Ask again five minutes before the credentials lapse (at least a
                    // minute from now), so calls placed later still get a relay.
                    let left = (expires - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .saturating_sub(Duration::from_secs(300))
                        .max(Duration::from_secs(60));
                    let internal = self.internal_tx.clone();
                    let generation = self.generation;
                    tokio::spawn(async move {
                        tokio::time::sleep(left).await;
                        let _ = internal.send(Internal::RefreshIceServers(generation));
                    });
                }
            }
            Internal::AvatarPublished => {
                if self.online {
                    let presence = self.outgoing(self.own_presence.clone());
                    self.send(Stanza::Presence(presence)).await;
                }
            }
            Internal::AnnounceCaps(generation) => {
                if generation == self.generation && self.online {
                    self.announce_caps().await;
                }
            }
            Internal::AnswerTaken => {
                let a = &mut self.answers;
                a.outstanding = a.outstanding.saturating_sub(1);
                if a.outstanding == 0 && a.burst >= ANSWER_BURST {
                    let (internal, count) = (self.internal_tx.clone(), a.count);
                    tokio::spawn(async move {
                        tokio::time::sleep(ANSWERS_QUIET).await;
                        let _ = internal.send(Internal::AnswersQuiet(count));
                    });
                }
            }
            Internal::AnswersQuiet(count) => {
                let a = &mut self.answers;
                if count == a.count && a.outstanding == 0 && a.burst >= ANSWER_BURST {
                    tracing::debug!(answers = a.burst, "a burst of answers taken");
                    a.burst = 0;
                    self.emit(Event::Settled);
                }
            }
            Internal::RefreshIceServers(generation) => {
                // A fresh stream asks by itself; only the stream that set the timer asks.
                if generation == self.generation && self.online {
                    self.request_external_services().await;
                }
            }
        }
    }

    /// A Jingle IQ: the call manager takes it (result) or it belongs to no session of
    /// ours with this sender (XEP-0166 §7.2 unknown-session).
    async fn on_jingle_iq(&mut self, from: Option<Jid>, id: String, payload: Element) {
        let outcome = match (natter_protocol::jingle::Jingle::try_from(payload), &from) {
            (Ok(jingle), Some(f)) => self
                .calls
                .manager
                .on_jingle(&f.to_string(), jingle)
                .map_err(|_| {
                    (
                        DefinedCondition::ItemNotFound,
                        Some(natter_protocol::jingle::JingleError::UnknownSession),
                    )
                }),
            (Err(e), _) => {
                tracing::debug!(error = %e, "malformed Jingle IQ");
                Err((DefinedCondition::BadRequest, None))
            }
            (_, None) => Err((DefinedCondition::BadRequest, None)),
        };
        let stanza = match outcome {
            Ok(()) => Iq::Result {
                from: None,
                to: from,
                id,
                payload: None,
            },
            Err((condition, jingle_error)) => {
                let mut error = StanzaError::new(ErrorType::Cancel, condition, "en", "");
                error.other = jingle_error.map(Element::from);
                Iq::Error {
                    from: None,
                    to: from,
                    id,
                    error,
                    payload: None,
                }
            }
        };
        self.send(Stanza::Iq(stanza)).await;
    }

    async fn on_call_event(&mut self, ev: calls::CallEvent) {
        match ev {
            calls::CallEvent::Incoming { sid, from, media } => {
                let from = Jid::new(&from)
                    .map(|j| j.to_bare().to_string())
                    .unwrap_or(from);
                let video = media.contains(&natter_jingle::MediaKind::Video);
                self.emit(Event::Call(CallUpdate::Incoming { sid, from, video }));
            }
            calls::CallEvent::Call { sid, output } => self.on_call_output(sid, output).await,
        }
    }

    async fn on_call_output(&mut self, sid: String, output: calls::CallOutput) {
        match output {
            calls::CallOutput::Message { to, payload } => {
                let Ok(to) = Jid::new(&to) else {
                    return;
                };
                let propose = payload.name() == "propose";
                let mut m = Message::new(Some(to));
                m.type_ = tokio_xmpp::parsers::message::MessageType::Chat;
                m.id = Some(tokio_xmpp::parsers::message::Id(chat::new_origin_id()));
                m.payloads.push(payload);
                if propose {
                    // XEP-0353 §3.1: the proposal is kept in archives for other devices.
                    m.payloads.push(natter_protocol::hints::store());
                }
                self.send(Stanza::Message(m)).await;
            }
            calls::CallOutput::Iq {
                to,
                action,
                payload,
            } => {
                let Ok(to) = Jid::new(&to) else {
                    return;
                };
                let rx = self.send_iq(Some(to), IqPayloadKind::Set(payload)).await;
                let internal = self.internal_tx.clone();
                tokio::spawn(async move {
                    let error = match tokio::time::timeout(IQ_TIMEOUT, rx).await {
                        Ok(Ok(Ok(_))) => return,
                        Ok(Ok(Err(e))) => e.to_string(),
                        Ok(Err(_)) => SessionError::NotConnected.to_string(),
                        Err(_) => SessionError::Timeout.to_string(),
                    };
                    let _ = internal.send(Internal::CallIqFailed { sid, action, error });
                });
            }
            calls::CallOutput::State(state) => {
                if matches!(state, calls::CallState::Ended(_)) {
                    // Dropping the media stops the pipeline and the feeders.
                    if let Some(media) = self.calls.media.remove(&sid) {
                        tokio::task::spawn_blocking(move || drop(media));
                    }
                }
                self.emit(Event::Call(CallUpdate::State { sid, state }));
            }
            calls::CallOutput::Media(contents) => {
                let config = self.calls.settings.media.clone();
                match calls::start_media(config, contents) {
                    Ok(active) => {
                        self.calls.media.insert(sid, active);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, %sid, "cannot start the call's media");
                        self.calls.manager.command(&sid, calls::CallInput::HangUp);
                    }
                }
            }
            calls::CallOutput::RemoteMuted(muted) => {
                self.emit(Event::Call(CallUpdate::RemoteMuted { sid, muted }));
            }
            calls::CallOutput::MediaAdded(content) => {
                let (name, kind) = (content.name.clone(), content.negotiated.kind);
                let result = match self.calls.media.get_mut(&sid) {
                    Some(active) => active.add(content),
                    None => Err(natter_media::MediaError::Stopped),
                };
                match result {
                    Ok(()) => {
                        tracing::info!(%sid, content = %name, "content added to the call's media");
                        if kind == natter_jingle::MediaKind::Video {
                            self.emit(Event::Call(CallUpdate::VideoAdded { sid }));
                        }
                    }
                    Err(e) => {
                        // The call goes on with what it had.
                        tracing::error!(error = %e, %sid, content = %name, "cannot add media to the call");
                        if kind == natter_jingle::MediaKind::Video {
                            let reason = e.to_string();
                            self.emit(Event::Call(CallUpdate::VideoFailed { sid, reason }));
                        }
                    }
                }
            }
            calls::CallOutput::ContentDropped { name, kind, reason } => {
                tracing::info!(%sid, content = %name, %reason, "content not added to the call");
                if kind == natter_jingle::MediaKind::Video {
                    self.emit(Event::Call(CallUpdate::VideoFailed { sid, reason }));
                }
            }
        }
    }

    /// XEP-0215: asks our server for STUN/TURN services; the answer reaches the call
    /// manager through `Internal::IceServers`.
    async fn request_external_services(&mut self) {
        let to = Jid::from(BareJid::from_parts(None, self.jid.domain()));
        let rx = self
            .send_iq(
                Some(to),
                IqPayloadKind::Get(natter_protocol::extdisco::Services::request()),
            )
            .await;
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let Ok(Ok(Ok(Some(el)))) = tokio::time::timeout(IQ_TIMEOUT, rx).await else {
                return;
            };
            match natter_protocol::extdisco::Services::try_from(el) {
                Ok(services) => {
                    let servers = calls::ice_servers(&services);
                    let expires = calls::earliest_expiry(&services);
                    let _ = internal.send(Internal::IceServers(servers, expires));
                }
                Err(e) => tracing::debug!(error = %e, "unreadable external services"),
            }
        });
    }

    /// Stored message `id` of this account and the id other stanzas name it by;
    /// `direction`, when given, is the only one allowed.
    async fn own_message(
        &mut self,
        id: i64,
        direction: Option<Direction>,
    ) -> Result<(natter_store::Message, String), SessionError> {
        let m = self
            .store
            .message(id)
            .await?
            .ok_or(SessionError::NoSuchMessage)?;
        let ours = self
            .store
            .find_conversation(self.account_id, m.peer.clone())
            .await?
            == Some(m.conversation_id);
        if !ours || direction.is_some_and(|d| d != m.direction) || m.retracted {
            return Err(SessionError::NoSuchMessage);
        }
        let reference = m
            .origin_id
            .clone()
            .or_else(|| m.stanza_id.clone())
            .ok_or(SessionError::NoSuchMessage)?;
        Ok((m, reference))
    }

    /// Sends a body-less signal to `peer` now; these are not queued while offline.
    async fn send_signal(
        &mut self,
        peer: &str,
        payloads: Vec<tokio_xmpp::minidom::Element>,
        body: Option<String>,
    ) -> Result<(), SessionError> {
        if !self.online {
            return Err(SessionError::NotConnected);
        }
        let to = BareJid::new(peer).map_err(|e| SessionError::InvalidAddress(e.to_string()))?;
        let mut msg = chat::signal(&Jid::from(to), payloads);
        if let Some(body) = body {
            msg = msg.with_body(tokio_xmpp::parsers::message::Lang::default(), body);
        }
        self.send(Stanza::Message(msg)).await;
        Ok(())
    }

    async fn correct(
        &mut self,
        id: i64,
        body: String,
    ) -> Result<natter_store::Message, SessionError> {
        if body.trim().is_empty() {
            return Err(SessionError::EmptyMessage);
        }
        let (m, reference) = self.own_message(id, Some(Direction::Outgoing)).await?;
        if !self.online {
            return Err(SessionError::NotConnected);
        }
        let to = BareJid::new(&m.peer).map_err(|e| SessionError::InvalidAddress(e.to_string()))?;
        self.send(Stanza::Message(chat::correction(&to, &body, &reference)))
            .await;
        let changed = self
            .store
            .correct(
                self.reference(&m.peer, Direction::Outgoing, &reference),
                body,
            )
            .await?
            .ok_or(SessionError::NoSuchMessage)?;
        self.emit(Event::MessageChanged(changed.clone()));
        Ok(changed)
    }

    async fn retract(&mut self, id: i64) -> Result<natter_store::Message, SessionError> {
        let (m, reference) = self.own_message(id, Some(Direction::Outgoing)).await?;
        self.send_signal(
            &m.peer,
            natter_protocol::retract::retraction(&reference),
            Some(
                "This person attempted to retract a previous message, but it's unsupported by your client."
                    .into(),
            ),
        )
        .await?;
        let changed = self
            .store
            .retract(self.reference(&m.peer, Direction::Outgoing, &reference))
            .await?
            .ok_or(SessionError::NoSuchMessage)?;
        self.emit(Event::MessageChanged(changed.clone()));
        Ok(changed)
    }

    async fn react(
        &mut self,
        id: i64,
        emojis: Vec<String>,
    ) -> Result<natter_store::Message, SessionError> {
        let (m, reference) = self.own_message(id, None).await?;
        let reactions = tokio_xmpp::parsers::reactions::Reactions {
            id: reference.clone(),
            reactions: emojis
                .iter()
                .map(|e| tokio_xmpp::parsers::reactions::Reaction { emoji: e.clone() })
                .collect(),
        };
        self.send_signal(
            &m.peer,
            vec![reactions.into(), natter_protocol::hints::store()],
            None,
        )
        .await?;
        let changed = self
            .store
            .set_reactions(
                self.reference(&m.peer, m.direction, &reference),
                self.jid.to_string(),
                emojis,
            )
            .await?
            .ok_or(SessionError::NoSuchMessage)?;
        self.emit(Event::MessageChanged(changed.clone()));
        Ok(changed)
    }

    /// XEP-0085, to contacts only (a stranger does not learn when we are at the keyboard).
    async fn send_chat_state(&mut self, peer: &str, state: crate::ChatState) {
        if !self.roster.contains_key(peer) {
            return;
        }
        use tokio_xmpp::parsers::chatstates::ChatState as S;
        let state = match state {
            crate::ChatState::Active => S::Active,
            crate::ChatState::Composing => S::Composing,
            crate::ChatState::Paused => S::Paused,
            crate::ChatState::Inactive => S::Inactive,
            crate::ChatState::Gone => S::Gone,
        };
        let no_store = tokio_xmpp::minidom::Element::bare("no-store", natter_protocol::ns::HINTS);
        let _ = self
            .send_signal(peer, vec![state.into(), no_store], None)
            .await;
    }

    /// XEP-0333 `displayed` for the newest message of a conversation we just read, to
    /// contacts only; archived, so our other devices learn it too.
    async fn send_displayed(&mut self, newest: &natter_store::Message) {
        let Some(id) = newest.origin_id.clone() else {
            return;
        };
        if !self.roster.contains_key(&newest.peer) {
            tracing::debug!(peer = %newest.peer, "no read marker: not a contact");
            return;
        }
        tracing::debug!(peer = %newest.peer, %id, "read marker");
        let marker =
            tokio_xmpp::minidom::Element::builder("displayed", natter_protocol::ns::MARKERS)
                .attr(tokio_xmpp::minidom::rxml::xml_ncname!("id").into(), id)
                .build();
        let _ = self
            .send_signal(
                &newest.peer,
                vec![marker, natter_protocol::hints::store()],
                None,
            )
            .await;
    }

    /// Answers a read of `peer`'s history off the session loop: `read` gets the store
    /// and the conversation's id (no conversation yet: no messages).
    fn read_history<F, Fut>(
        &self,
        peer: String,
        reply: crate::handle::Reply<Vec<natter_store::Message>>,
        read: F,
    ) where
        F: FnOnce(Store, i64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = natter_store::Result<Vec<natter_store::Message>>> + Send,
    {
        let store = self.store.clone();
        let account_id = self.account_id;
        tokio::spawn(async move {
            let result = match store.find_conversation(account_id, peer).await {
                Ok(Some(id)) => read(store, id).await,
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
            let _ = reply.send(result.map_err(Into::into));
        });
    }

    /// Tells our other devices how far this chat is read (XEP-0490), by the id our
    /// archive gave its newest message.
    async fn publish_read_position(&mut self, newest: &natter_store::Message) {
        let Some(stanza_id) = newest.stanza_id.clone() else {
            return;
        };
        let position = natter_protocol::mds::Displayed {
            peer: newest.peer.clone(),
            stanza_id,
            by: self.jid.to_string(),
        };
        let rx = self
            .send_iq(None, IqPayloadKind::Set(position.publish()))
            .await;
        tokio::spawn(async move {
            match tokio::time::timeout(IQ_TIMEOUT, rx).await {
                Ok(Ok(Ok(_))) => tracing::debug!(peer = %position.peer, "read position published"),
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "read position not published"),
                _ => {}
            }
        });
    }

    fn reference(&self, peer: &str, direction: Direction, id: &str) -> natter_store::Reference {
        natter_store::Reference {
            account_id: self.account_id,
            peer: peer.to_owned(),
            direction,
            id: id.to_owned(),
        }
    }

    async fn set_state(&mut self, id: i64, state: MessageState) {
        match self.store.set_message_state(id, state).await {
            Ok(true) => self.emit(Event::MessageState { id, state }),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot update a message state"),
        }
    }
}

/// Follows one outgoing stanza: sent, then acknowledged by the server (XEP-0198) or lost
/// with a reset stream.
async fn track_delivery(
    mut token: tokio_xmpp::stanzastream::StanzaToken,
    id: i64,
    generation: u64,
    sm: bool,
    internal: mpsc::UnboundedSender<Internal>,
) {
    match token.wait_for(StanzaStage::Sent).await {
        Some(StanzaState::Sent { .. }) | Some(StanzaState::Acked { .. }) => {
            let _ = internal.send(Internal::Sent(id, generation));
        }
        // A transport failure (the stream broke, the server shut down) is not the
        // message's fault: it goes out again on the next stream.
        _ => {
            let _ = internal.send(Internal::Lost(id, generation));
            return;
        }
    }
    if !sm {
        return;
    }
    let outcome = match token.wait_for(StanzaStage::Acked).await {
        Some(StanzaState::Acked { .. }) => Internal::Acked(id),
        _ => Internal::Lost(id, generation),
    };
    let _ = internal.send(outcome);
}
