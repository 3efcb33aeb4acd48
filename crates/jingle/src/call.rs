//! One call: XEP-0353 (Jingle Message Initiation) then a XEP-0166 session with XEP-0167
//! RTP contents over XEP-0176 ICE-UDP with XEP-0320 DTLS-SRTP.
//!
//! A call runs as a task. It is fed [`CallInput`]s (signalling already checked by the
//! [`CallManager`](crate::manager::CallManager) to come from the peer, and the user's
//! actions) and emits [`CallOutput`]s: stanzas for its owner to send, state changes, and,
//! once every content is connected, the media channels.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use minidom::Element;
use natter_protocol::jingle::{Action, Content, Creator, Jingle, Reason, ReasonCondition, Senders};
use natter_protocol::jingle_dtls::{Fingerprint, Setup};
use natter_protocol::jingle_ice_udp::{Candidate, IceUdpTransport};
use natter_protocol::jingle_rtp::RtpDescription;
use natter_protocol::jingle_rtp_info::RtpInfo;
use natter_protocol::jmi::JingleMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::negotiation::{self, Capabilities, MediaKind, Negotiated};
use crate::transport::{IceTransport, RtpSender, TransportConfig, TransportEvent};
use crate::{DtlsRole, LocalCertificate, TransportError};

mod answer;
mod ice;
mod upgrade;

/// How long a proposal rings before the caller gives up (XEP-0353 leaves it to us).
pub const RING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after `proceed` the session-initiate may take to arrive.
const INITIATE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest we wait for candidates before sending an initiate/accept (the rest
/// trickles); when every agent has finished gathering (host candidates only: a few
/// milliseconds) it goes out at once.
const GATHER_GRACE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
pub struct CallConfig {
    pub transport: TransportConfig,
    pub caps: Capabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    Outgoing,
    Incoming,
}

/// Why a call ended, and who ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndReason {
    pub condition: ReasonCondition,
    pub text: Option<String>,
    /// The peer (or our other device) ended it, not this device's user.
    pub remote: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    /// Outgoing: proposed, waiting for a device of the callee.
    Calling,
    /// Outgoing: a device of the callee rings. Incoming: we ring.
    Ringing,
    /// Accepted; signalling, ICE and DTLS in progress.
    Connecting,
    /// Media flows.
    Active,
    Ended(EndReason),
}

/// Everything a call needs to hear.
#[derive(Debug)]
pub enum CallInput {
    Jmi {
        from: String,
        message: JingleMessage,
    },
    /// A Jingle IQ from the peer (already acknowledged by the manager).
    Jingle {
        from: String,
        jingle: Jingle,
    },
    /// An IQ we sent was answered with an error (or not at all).
    IqFailed {
        action: Action,
        error: String,
    },
    Accept,
    Reject,
    HangUp,
    SetMuted(bool),
    /// Our network changed: restart ICE on every content (XEP-0176 §7.3).
    RestartIce,
    /// Add a video content to an active audio call (XEP-0166 content-add).
    AddVideo,
}

/// One connected content's media, handed to the media engine.
#[derive(Debug)]
pub struct ContentMedia {
    pub name: String,
    pub negotiated: Negotiated,
    /// The SSRC we announced and must send with.
    pub local_ssrc: u32,
    pub sender: RtpSender,
    pub incoming: mpsc::Receiver<Bytes>,
}

#[derive(Debug)]
pub enum CallOutput {
    /// A `<message>` carrying a XEP-0353 element.
    Message {
        to: String,
        payload: Element,
    },
    /// An IQ set carrying `<jingle>`; answer errors with [`CallInput::IqFailed`].
    Iq {
        to: String,
        action: Action,
        payload: Element,
    },
    State(CallState),
    /// Every content is connected: start media.
    Media(Vec<ContentMedia>),
    /// The peer muted or unmuted (XEP-0167 §7).
    RemoteMuted(bool),
    /// A content added to the active call (content-add, either side) is connected: add
    /// it to the running media.
    MediaAdded(ContentMedia),
    /// A content being added was refused (content-reject, an error) or failed to
    /// connect, or the peer removed an added content; the call goes on without it.
    ContentDropped {
        name: String,
        kind: MediaKind,
        reason: String,
    },
}

struct ContentState {
    name: String,
    creator: Creator,
    kind: MediaKind,
    ssrc: u32,
    local: RtpDescription,
    transport: Arc<IceTransport>,
    negotiated: Option<Negotiated>,
    connecting: bool,
    /// Added to the running session (content-add), not part of initiate/accept.
    added: bool,
    /// Our candidates for it may trickle (its content-add/accept is out).
    announced: bool,
    /// Its agent has gathered every local candidate it will find.
    gathered: bool,
}

pub(crate) struct CallTask {
    pub sid: String,
    pub own_jid: String,
    pub peer_bare: String,
    pub peer_full: Option<String>,
    pub direction: CallDirection,
    pub media: Vec<MediaKind>,
    pub config: CallConfig,
    pub out: mpsc::UnboundedSender<CallOutput>,
    state: CallState,
    certificate: Option<LocalCertificate>,
    contents: Vec<ContentState>,
    /// Candidates gathered before the initiate/accept went out.
    held: Vec<(String, Candidate)>,
    signalled: bool,
    deadline: Option<Instant>,
    /// When to send the initiate/accept (after the gathering grace period).
    flush_at: Option<Instant>,
    /// Remote transports to connect once our accept is out.
    pending_connect: Vec<(String, IceUdpTransport, DtlsRole)>,
    connected: Vec<ContentMedia>,
    /// A content being added to the running session (one at a time).
    adding: Option<upgrade::PendingAdd>,
}

/// Internal events from the call's own helpers.
enum Inner {
    Transport(String, TransportEvent),
    Connected(
        String,
        Result<(RtpSender, mpsc::Receiver<Bytes>), TransportError>,
    ),
}

pub(crate) fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

fn reason(condition: ReasonCondition, text: Option<&str>) -> Reason {
    Reason {
        condition,
        text: text.map(str::to_owned),
    }
}

impl CallTask {
    pub(crate) fn new(
        sid: String,
        own_jid: String,
        peer: String,
        direction: CallDirection,
        media: Vec<MediaKind>,
        config: CallConfig,
        out: mpsc::UnboundedSender<CallOutput>,
    ) -> Self {
        let (peer_bare, peer_full) = match direction {
            CallDirection::Outgoing => (bare(&peer).to_owned(), None),
            CallDirection::Incoming => (bare(&peer).to_owned(), Some(peer)),
        };
        CallTask {
            sid,
            own_jid,
            peer_bare,
            peer_full,
            direction,
            media,
            config,
            out,
            state: CallState::Calling,
            certificate: None,
            contents: Vec::new(),
            held: Vec::new(),
            signalled: false,
            deadline: None,
            flush_at: None,
            pending_connect: Vec::new(),
            connected: Vec::new(),
            adding: None,
        }
    }

    fn emit(&self, o: CallOutput) {
        let _ = self.out.send(o);
    }

    fn set_state(&mut self, s: CallState) {
        if self.state != s {
            info!(sid = %self.sid, state = ?s, "call state");
            self.state = s.clone();
            self.emit(CallOutput::State(s));
        }
    }

    fn jmi(&self, to: &str, m: JingleMessage) {
        self.emit(CallOutput::Message {
            to: to.to_owned(),
            payload: m.into(),
        });
    }

    fn iq(&self, jingle: Jingle) {
        let Some(to) = self.peer_full.clone() else {
            return;
        };
        self.emit(CallOutput::Iq {
            to,
            action: jingle.action,
            payload: jingle.into(),
        });
    }

    fn end(&mut self, condition: ReasonCondition, text: Option<&str>, remote: bool) {
        self.set_state(CallState::Ended(EndReason {
            condition,
            text: text.map(str::to_owned),
            remote,
        }));
    }

    /// Ends the call from our side: tells the peer in the way the state calls for.
    fn terminate(&mut self, condition: ReasonCondition, text: Option<&str>) {
        let r = reason(condition, text);
        match (&self.state, self.direction) {
            (CallState::Ended(_), _) => return,
            (CallState::Calling | CallState::Ringing, CallDirection::Outgoing) => {
                let peer = self.peer_bare.clone();
                self.jmi(
                    &peer,
                    JingleMessage::Retract {
                        id: self.sid.clone(),
                        reason: Some(r),
                    },
                );
            }
            (CallState::Calling | CallState::Ringing, CallDirection::Incoming) => {
                let m = JingleMessage::Reject {
                    id: self.sid.clone(),
                    reason: Some(r),
                };
                if let Some(peer) = self.peer_full.clone() {
                    self.jmi(&peer, m.clone());
                }
                // Our other devices stop ringing.
                let own = bare(&self.own_jid).to_owned();
                self.jmi(&own, m);
            }
            (CallState::Connecting | CallState::Active, _) => {
                if self.signalled {
                    let mut j = Jingle::new(Action::SessionTerminate, self.sid.clone());
                    j.reason = Some(r.clone());
                    self.iq(j);
                }
                if let Some(peer) = self.peer_full.clone() {
                    self.jmi(
                        &peer,
                        JingleMessage::Finish {
                            id: self.sid.clone(),
                            reason: Some(r),
                        },
                    );
                }
            }
        }
        self.end(condition, text, false);
    }

    pub(crate) async fn run(mut self, mut input: mpsc::UnboundedReceiver<CallInput>) {
        let (inner_tx, mut inner_rx) = mpsc::unbounded_channel::<Inner>();
        match self.direction {
            CallDirection::Outgoing => {
                let descriptions = self
                    .media
                    .iter()
                    .map(|k| negotiation::offer(*k, self.config.caps, 0))
                    .map(|mut d| {
                        // JMI descriptions carry only the media (XEP-0353 §3.1).
                        d.payload_types.clear();
                        d.ssrc = None;
                        d.rtcp_mux = false;
                        d
                    })
                    .collect();
                let peer = self.peer_bare.clone();
                self.jmi(
                    &peer,
                    JingleMessage::Propose {
                        id: self.sid.clone(),
                        descriptions,
                    },
                );
                self.set_state(CallState::Calling);
                self.deadline = Some(Instant::now() + RING_TIMEOUT);
            }
            CallDirection::Incoming => {
                if let Some(peer) = self.peer_full.clone() {
                    self.jmi(
                        &peer,
                        JingleMessage::Ringing {
                            id: self.sid.clone(),
                        },
                    );
                }
                self.state = CallState::Calling;
                self.set_state(CallState::Ringing);
                // The caller retracts after its own timeout; this is a safety net.
                self.deadline = Some(Instant::now() + RING_TIMEOUT + Duration::from_secs(15));
            }
        }
        loop {
            if matches!(self.state, CallState::Ended(_)) {
                break;
            }
            let deadline = self.deadline;
            let flush_at = self.flush_at;
            let add_at = self.adding.as_ref().map(|a| a.at);
            tokio::select! {
                _ = async { match add_at {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                } } => self.on_add_timer(&inner_tx).await,
                _ = async { match flush_at {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                } } => {
                    self.flush_at = None;
                    self.flush(&inner_tx);
                }
                i = input.recv() => match i {
                    Some(i) => self.on_input(i, &inner_tx).await,
                    None => self.terminate(ReasonCondition::Gone, None),
                },
                Some(inner) = inner_rx.recv() => self.on_inner(inner).await,
                _ = async { match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                } } => {
                    self.deadline = None;
                    warn!(sid = %self.sid, state = ?self.state, "call timed out");
                    self.terminate(ReasonCondition::Timeout, None);
                }
            }
        }
        for c in &self.contents {
            c.transport.close().await;
        }
        debug!(sid = %self.sid, "call task done");
    }

    async fn on_input(&mut self, i: CallInput, inner: &mpsc::UnboundedSender<Inner>) {
        match i {
            CallInput::Jmi { from, message } => self.on_jmi(from, message, inner).await,
            CallInput::Jingle { from, jingle } => self.on_jingle(from, jingle, inner).await,
            CallInput::IqFailed { action, error } => {
                warn!(sid = %self.sid, %action, %error, "the peer refused our Jingle request");
                if matches!(action, Action::SessionInitiate | Action::SessionAccept) {
                    self.end(ReasonCondition::GeneralError, Some(&error), true);
                } else if action == Action::ContentAdd {
                    self.add_refused(&error).await;
                }
            }
            CallInput::Accept => {
                if self.direction == CallDirection::Incoming && self.state == CallState::Ringing {
                    let own = bare(&self.own_jid).to_owned();
                    self.jmi(
                        &own,
                        JingleMessage::Accept {
                            id: self.sid.clone(),
                        },
                    );
                    if let Some(peer) = self.peer_full.clone() {
                        self.jmi(
                            &peer,
                            JingleMessage::Proceed {
                                id: self.sid.clone(),
                            },
                        );
                    }
                    self.set_state(CallState::Connecting);
                    self.deadline = Some(Instant::now() + INITIATE_TIMEOUT);
                }
            }
            CallInput::Reject => self.terminate(ReasonCondition::Decline, None),
            CallInput::AddVideo => self.add_video(inner).await,
            CallInput::HangUp => self.terminate(
                match self.state {
                    CallState::Calling | CallState::Ringing => ReasonCondition::Cancel,
                    _ => ReasonCondition::Success,
                },
                None,
            ),
            CallInput::RestartIce => self.restart_ice().await,
            CallInput::SetMuted(muted) => {
                if self.signalled {
                    let mut j = Jingle::new(Action::SessionInfo, self.sid.clone());
                    let creator = match self.direction {
                        CallDirection::Outgoing => Creator::Initiator,
                        CallDirection::Incoming => Creator::Responder,
                    };
                    let name = self
                        .contents
                        .iter()
                        .find(|c| c.kind == MediaKind::Audio)
                        .map(|c| c.name.clone());
                    j.rtp_info = Some(if muted {
                        RtpInfo::Mute {
                            creator: Some(creator),
                            name,
                        }
                    } else {
                        RtpInfo::Unmute {
                            creator: Some(creator),
                            name,
                        }
                    });
                    self.iq(j);
                }
            }
        }
    }

    async fn on_jmi(
        &mut self,
        from: String,
        m: JingleMessage,
        inner: &mpsc::UnboundedSender<Inner>,
    ) {
        let from_peer = bare(&from) == self.peer_bare;
        let from_own = bare(&from) == bare(&self.own_jid) && from != self.own_jid;
        match (m, self.direction) {
            (JingleMessage::Ringing { .. }, CallDirection::Outgoing) if from_peer => {
                if self.state == CallState::Calling {
                    self.set_state(CallState::Ringing);
                }
            }
            (JingleMessage::Proceed { .. }, CallDirection::Outgoing) if from_peer => {
                if matches!(self.state, CallState::Calling | CallState::Ringing)
                    && from.contains('/')
                {
                    self.peer_full = Some(from);
                    self.set_state(CallState::Connecting);
                    self.deadline = None;
                    self.start_initiate(inner).await;
                }
            }
            (JingleMessage::Reject { reason, .. }, CallDirection::Outgoing) if from_peer => {
                if matches!(self.state, CallState::Calling | CallState::Ringing) {
                    let (c, t) = reason
                        .map(|r| (r.condition, r.text))
                        .unwrap_or((ReasonCondition::Decline, None));
                    self.end(c, t.as_deref(), true);
                }
            }
            (JingleMessage::Retract { reason, .. }, CallDirection::Incoming) if from_peer => {
                if matches!(self.state, CallState::Ringing | CallState::Connecting)
                    && !self.signalled
                {
                    let (c, t) = reason
                        .map(|r| (r.condition, r.text))
                        .unwrap_or((ReasonCondition::Cancel, None));
                    self.end(c, t.as_deref(), true);
                }
            }
            // Another of our devices answered or declined: stop ringing here.
            (
                JingleMessage::Accept { .. } | JingleMessage::Reject { .. },
                CallDirection::Incoming,
            ) if from_own => {
                if self.state == CallState::Ringing {
                    self.end(
                        ReasonCondition::Cancel,
                        Some("answered on another device"),
                        true,
                    );
                }
            }
            (JingleMessage::Finish { reason, .. }, _) if from_peer => {
                if !matches!(self.state, CallState::Ended(_)) {
                    let (c, t) = reason
                        .map(|r| (r.condition, r.text))
                        .unwrap_or((ReasonCondition::Success, None));
                    self.end(c, t.as_deref(), true);
                }
            }
            (m, _) => debug!(sid = %self.sid, ?m, %from, "JMI message ignored"),
        }
    }

    async fn new_content(
        &mut self,
        name: String,
        creator: Creator,
        kind: MediaKind,
        local: RtpDescription,
        ssrc: u32,
        inner: &mpsc::UnboundedSender<Inner>,
    ) -> Result<(), TransportError> {
        let controlling = self.direction == CallDirection::Outgoing;
        let (transport, mut events) =
            IceTransport::new(&self.config.transport, controlling).await?;
        let tx = inner.clone();
        let content = name.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if tx.send(Inner::Transport(content.clone(), ev)).is_err() {
                    break;
                }
            }
        });
        self.contents.push(ContentState {
            name,
            creator,
            kind,
            ssrc,
            local,
            transport: Arc::new(transport),
            negotiated: None,
            connecting: false,
            added: false,
            announced: true,
            gathered: false,
        });
        Ok(())
    }

    fn certificate(&mut self) -> Result<LocalCertificate, TransportError> {
        if let Some(c) = &self.certificate {
            return Ok(c.clone());
        }
        let c = LocalCertificate::generate()?;
        self.certificate = Some(c.clone());
        Ok(c)
    }

    fn transport_element(&self, c: &ContentState, setup: Setup) -> Option<IceUdpTransport> {
        let cert = self.certificate.as_ref()?;
        let (ufrag, pwd) = c.transport.credentials();
        Some(IceUdpTransport {
            ufrag: Some(ufrag),
            pwd: Some(pwd),
            candidates: self
                .held
                .iter()
                .filter(|(n, _)| *n == c.name)
                .map(|(_, cand)| cand.clone())
                .collect(),
            fingerprint: Some(Fingerprint {
                hash: "sha-256".into(),
                setup: Some(setup),
                value: cert.fingerprint().to_owned(),
            }),
        })
    }

    async fn start_initiate(&mut self, inner: &mpsc::UnboundedSender<Inner>) {
        if let Err(e) = self.certificate() {
            self.terminate(ReasonCondition::FailedApplication, Some(&e.to_string()));
            return;
        }
        let media = self.media.clone();
        for kind in media {
            let ssrc = rand::random::<u32>();
            let local = negotiation::offer(kind, self.config.caps, ssrc);
            if let Err(e) = self
                .new_content(
                    kind.as_str().to_owned(),
                    Creator::Initiator,
                    kind,
                    local,
                    ssrc,
                    inner,
                )
                .await
            {
                self.terminate(ReasonCondition::FailedTransport, Some(&e.to_string()));
                return;
            }
        }
        // Let host candidates arrive so the initiate carries some; the rest trickles.
        self.flush_at = Some(Instant::now() + GATHER_GRACE);
    }

    fn flush(&mut self, inner: &mpsc::UnboundedSender<Inner>) {
        if self.signalled || self.state != CallState::Connecting {
            return;
        }
        match self.direction {
            CallDirection::Outgoing => self.send_initiate(),
            CallDirection::Incoming => {
                self.send_accept();
                for (name, t, role) in std::mem::take(&mut self.pending_connect) {
                    self.connect(&name, t, role, inner);
                }
            }
        }
    }

    fn send_initiate(&mut self) {
        let mut j = Jingle::new(Action::SessionInitiate, self.sid.clone());
        j.initiator = Some(self.own_jid.clone());
        for c in &self.contents {
            let mut content = Content::new(c.creator, c.name.clone());
            content.senders = Senders::Both;
            content.description = Some(c.local.clone());
            content.transport = self.transport_element(c, Setup::Actpass);
            j.contents.push(content);
        }
        self.held.clear();
        self.signalled = true;
        self.iq(j);
        // ICE + DTLS must be done within this time after the peer accepts.
        self.deadline =
            Some(Instant::now() + INITIATE_TIMEOUT + self.config.transport.connect_timeout);
    }

    async fn on_jingle(&mut self, from: String, j: Jingle, inner: &mpsc::UnboundedSender<Inner>) {
        let _ = from;
        match j.action {
            Action::SessionInitiate if self.direction == CallDirection::Incoming => {
                if self.state != CallState::Connecting || self.signalled {
                    debug!(sid = %self.sid, "session-initiate before accept or twice: ignored");
                    return;
                }
                self.on_initiate(j, inner).await;
            }
            Action::SessionAccept if self.direction == CallDirection::Outgoing => {
                self.on_accept(j, inner).await;
            }
            Action::TransportInfo => {
                for content in j.contents {
                    let Some(t) = content.transport else { continue };
                    let Some(c) = self.contents.iter().find(|c| c.name == content.name) else {
                        continue;
                    };
                    if let (Some(ufrag), Some(pwd)) = (&t.ufrag, &t.pwd) {
                        let known = c.transport.remote_ufrag();
                        if known.is_some() && known.as_deref() != Some(ufrag.as_str()) {
                            let transport = c.transport.clone();
                            let (creator, name) = (c.creator, c.name.clone());
                            if transport.is_restarting() {
                                // The answer to our own restart.
                                if let Err(e) = transport.set_remote_credentials(ufrag, pwd).await {
                                    warn!(sid = %self.sid, "ICE restart failed: {e}");
                                }
                            } else {
                                // XEP-0176 §7.3: the peer restarts (Conversations does when
                                // the network changes); answer with our own new credentials.
                                let restarted = async {
                                    transport.restart_local().await?;
                                    transport.set_remote_credentials(ufrag, pwd).await
                                };
                                match restarted.await {
                                    Ok(()) => {
                                        info!(sid = %self.sid, content = %name, "ICE restarted by the peer");
                                        self.send_credentials(creator, name, &transport);
                                    }
                                    Err(e) => warn!(sid = %self.sid, "ICE restart failed: {e}"),
                                }
                            }
                            let Some(c) = self.contents.iter().find(|c| c.name == content.name)
                            else {
                                continue;
                            };
                            for cand in &t.candidates {
                                if let Err(e) = c.transport.add_remote_candidate(cand) {
                                    debug!("remote candidate not usable: {e}");
                                }
                            }
                            continue;
                        }
                    }
                    for cand in &t.candidates {
                        if let Err(e) = c.transport.add_remote_candidate(cand) {
                            debug!("remote candidate not usable: {e}");
                        }
                    }
                }
            }
            Action::ContentAdd => self.on_content_add(j, inner).await,
            Action::ContentAccept => self.on_content_accept(j, inner).await,
            Action::ContentReject => self.on_content_reject(j).await,
            Action::ContentRemove => self.on_content_remove(j).await,
            Action::SessionTerminate => {
                let (c, t) = j
                    .reason
                    .map(|r| (r.condition, r.text))
                    .unwrap_or((ReasonCondition::Success, None));
                self.end(c, t.as_deref(), true);
            }
            Action::SessionInfo => match j.rtp_info {
                Some(RtpInfo::Mute { .. }) => self.emit(CallOutput::RemoteMuted(true)),
                Some(RtpInfo::Unmute { .. }) => self.emit(CallOutput::RemoteMuted(false)),
                Some(RtpInfo::Ringing) if self.state == CallState::Connecting => {}
                other => debug!(sid = %self.sid, ?other, "session-info"),
            },
            other => debug!(sid = %self.sid, action = %other, "Jingle action not handled"),
        }
    }
}
