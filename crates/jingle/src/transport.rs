//! One Jingle content's transport (XEP-0176 ICE-UDP, component 1, rtcp-mux) carrying
//! DTLS-SRTP (XEP-0320). Plain RTP/RTCP goes in through [`RtpSender`] and comes out of
//! the receiver returned by [`IceTransport::connect`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use dtls::conn::DTLSConn;
use natter_protocol::jingle_ice_udp::{Candidate, CandidateType as JingleCandidateType};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::agent::Agent;
use webrtc_ice::candidate::candidate_base::CandidateBaseConfig;
use webrtc_ice::candidate::candidate_host::CandidateHostConfig;
use webrtc_ice::candidate::candidate_peer_reflexive::CandidatePeerReflexiveConfig;
use webrtc_ice::candidate::candidate_relay::CandidateRelayConfig;
use webrtc_ice::candidate::candidate_server_reflexive::CandidateServerReflexiveConfig;
use webrtc_ice::candidate::{Candidate as IceCandidate, CandidateType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_ice::state::ConnectionState;
use webrtc_ice::url::{ProtoType, SchemeType, Url};
use webrtc_util::Conn;

use crate::dtls_srtp::{classify, handshake, DtlsEndpoint, LocalCertificate, PacketKind};
use crate::{DtlsRole, TransportError};

/// A STUN or TURN server, usually from XEP-0215 external service discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub turn: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub servers: Vec<IceServer>,
    /// Offer loopback host candidates (tests on one machine).
    pub include_loopback: bool,
    /// Gather host candidates; off to hide our addresses (privacy) or to force TURN.
    pub host_candidates: bool,
    /// How long ICE may take to find a working pair.
    pub connect_timeout: Duration,
    /// How long the DTLS handshake may take once ICE is connected.
    pub dtls_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            servers: Vec::new(),
            include_loopback: false,
            host_candidates: true,
            connect_timeout: Duration::from_secs(30),
            dtls_timeout: Duration::from_secs(10),
        }
    }
}

/// What the transport tells its owner while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportEvent {
    /// A local candidate to trickle (transport-info).
    Candidate(Candidate),
    /// All local candidates are known.
    GatheringDone,
    /// ICE connectivity changed (`checking`, `connected`, `failed`, …).
    Ice(String),
}

/// Counters for one transport (bytes after SRTP).
#[derive(Debug, Default)]
pub struct TransportStats {
    pub rtp_sent: AtomicU64,
    pub rtp_received: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct IceTransport {
    agent: Arc<Agent>,
    controlling: bool,
    /// Our ufrag and password; an ICE restart replaces them.
    local: Mutex<(String, String)>,
    /// The peer's, once known (to tell an ICE restart from a trickled candidate).
    remote: Mutex<Option<(String, String)>>,
    restarting: std::sync::atomic::AtomicBool,
    cancel: Mutex<Option<mpsc::Sender<()>>>,
    /// The DTLS connection once the handshake is done; its keeper task owns it.
    dtls: Mutex<Option<Weak<DTLSConn>>>,
    pub stats: Arc<TransportStats>,
}

impl std::fmt::Debug for IceTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceTransport")
            .field("controlling", &self.controlling)
            .field("local", &self.credentials().0)
            .finish()
    }
}

fn server_url(s: &IceServer) -> Url {
    Url {
        scheme: if s.turn {
            SchemeType::Turn
        } else {
            SchemeType::Stun
        },
        host: s.host.clone(),
        port: s.port,
        username: s.username.clone().unwrap_or_default(),
        password: s.password.clone().unwrap_or_default(),
        proto: ProtoType::Udp,
    }
}

impl IceTransport {
    /// Creates the agent and starts gathering; candidates arrive on the returned channel.
    pub async fn new(
        config: &TransportConfig,
        controlling: bool,
    ) -> Result<(Self, mpsc::UnboundedReceiver<TransportEvent>), TransportError> {
        let mut candidate_types = Vec::new();
        if config.host_candidates {
            candidate_types.push(CandidateType::Host);
        }
        if config.servers.iter().any(|s| !s.turn) && config.host_candidates {
            candidate_types.push(CandidateType::ServerReflexive);
        }
        if config.servers.iter().any(|s| s.turn) {
            candidate_types.push(CandidateType::Relay);
        }
        if candidate_types.is_empty() {
            return Err(TransportError::Ice(
                "no candidate types: host candidates off and no TURN server".into(),
            ));
        }
        let agent = Agent::new(AgentConfig {
            urls: config.servers.iter().map(server_url).collect(),
            // webrtc-ice does TURN over UDP only; UDP over IPv4 and IPv6.
            network_types: vec![NetworkType::Udp4, NetworkType::Udp6],
            candidate_types,
            is_controlling: controlling,
            multicast_dns_mode: MulticastDnsMode::Disabled,
            include_loopback: config.include_loopback,
            // IPv6 link-local addresses need a scope id to bind and are useless off-link.
            ip_filter: Arc::new(Some(Box::new(|ip: IpAddr| match ip {
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                IpAddr::V4(_) => true,
            }))),
            ..Default::default()
        })
        .await
        .map_err(|e| TransportError::Ice(e.to_string()))?;
        let agent = Arc::new(agent);
        let (ufrag, pwd) = agent.get_local_user_credentials().await;
        let (tx, rx) = mpsc::unbounded_channel();

        let state_tx = tx.clone();
        agent.on_connection_state_change(Box::new(move |s: ConnectionState| {
            let _ = state_tx.send(TransportEvent::Ice(s.to_string()));
            Box::pin(async {})
        }));
        let transport = IceTransport {
            agent: agent.clone(),
            controlling,
            local: Mutex::new((ufrag, pwd)),
            remote: Mutex::new(None),
            restarting: Default::default(),
            cancel: Mutex::new(None),
            dtls: Mutex::new(None),
            stats: Arc::default(),
        };
        let id_base: String = (0..6)
            .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
            .collect();
        let counter = Arc::new(AtomicU64::new(1));
        agent.on_candidate(Box::new(
            move |c: Option<Arc<dyn IceCandidate + Send + Sync>>| {
                let event = match c {
                    Some(c) => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        to_jingle(c.as_ref(), format!("{id_base}{n}"))
                            .map(TransportEvent::Candidate)
                    }
                    None => Some(TransportEvent::GatheringDone),
                };
                if let Some(event) = event {
                    let _ = tx.send(event);
                }
                Box::pin(async {})
            },
        ));
        agent
            .gather_candidates()
            .map_err(|e| TransportError::Ice(e.to_string()))?;
        Ok((transport, rx))
    }

    /// Our ICE ufrag and password for the `<transport>` element.
    pub fn credentials(&self) -> (String, String) {
        self.local.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The peer's ufrag, once the connection has started.
    pub fn remote_ufrag(&self) -> Option<String> {
        self.remote
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|(u, _)| u.clone()))
    }

    /// ICE restart (RFC 8445 §9, XEP-0176 §7.3), our half: new local credentials and a
    /// new gathering (candidates arrive as [`TransportEvent::Candidate`]). Checks resume
    /// once [`set_remote_credentials`](Self::set_remote_credentials) gives the peer's new
    /// ones. The DTLS association and SRTP contexts stay: only the path changes.
    pub async fn restart_local(&self) -> Result<(), TransportError> {
        let ufrag: String = (0..8)
            .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
            .collect();
        let pwd: String = (0..24)
            .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
            .collect();
        self.agent
            .restart(ufrag.clone(), pwd.clone())
            .await
            .map_err(|e| TransportError::Ice(e.to_string()))?;
        if let Ok(mut l) = self.local.lock() {
            *l = (ufrag, pwd);
        }
        self.restarting.store(true, Ordering::SeqCst);
        self.agent
            .gather_candidates()
            .map_err(|e| TransportError::Ice(e.to_string()))
    }

    /// The peer's (new) credentials after an ICE restart.
    pub async fn set_remote_credentials(
        &self,
        ufrag: &str,
        pwd: &str,
    ) -> Result<(), TransportError> {
        self.agent
            .set_remote_credentials(ufrag.to_owned(), pwd.to_owned())
            .await
            .map_err(|e| TransportError::Ice(e.to_string()))?;
        if let Ok(mut r) = self.remote.lock() {
            *r = Some((ufrag.to_owned(), pwd.to_owned()));
        }
        self.restarting.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// We restarted and wait for the peer's new credentials.
    pub fn is_restarting(&self) -> bool {
        self.restarting.load(Ordering::SeqCst)
    }

    /// Adds a candidate the peer signalled. Candidates for RTCP (component 2) or TCP are
    /// ignored (`Ok(false)`): we always use rtcp-mux and UDP.
    pub fn add_remote_candidate(&self, c: &Candidate) -> Result<bool, TransportError> {
        if c.component != 1 || !c.protocol.eq_ignore_ascii_case("udp") {
            debug!(component = c.component, protocol = %c.protocol, "ignoring a remote candidate");
            return Ok(false);
        }
        let ip: IpAddr = c.ip.parse().map_err(|_| {
            TransportError::Ice(format!("candidate address {:?} is not an IP", c.ip))
        })?;
        let base = CandidateBaseConfig {
            network: if ip.is_ipv4() { "udp4" } else { "udp6" }.to_owned(),
            address: ip.to_string(),
            port: c.port,
            component: 1,
            priority: c.priority,
            foundation: c.foundation.clone(),
            ..Default::default()
        };
        let rel_addr = c.rel_addr.clone().unwrap_or_default();
        let rel_port = c.rel_port.unwrap_or(0);
        let made = match c.kind {
            JingleCandidateType::Host => CandidateHostConfig {
                base_config: base,
                ..Default::default()
            }
            .new_candidate_host(),
            JingleCandidateType::Srflx => CandidateServerReflexiveConfig {
                base_config: base,
                rel_addr,
                rel_port,
            }
            .new_candidate_server_reflexive(),
            JingleCandidateType::Prflx => CandidatePeerReflexiveConfig {
                base_config: base,
                rel_addr,
                rel_port,
            }
            .new_candidate_peer_reflexive(),
            JingleCandidateType::Relay => CandidateRelayConfig {
                base_config: base,
                rel_addr,
                rel_port,
                relay_client: None,
            }
            .new_candidate_relay(),
        }
        .map_err(|e| TransportError::Ice(e.to_string()))?;
        let made: Arc<dyn IceCandidate + Send + Sync> = Arc::new(made);
        self.agent
            .add_remote_candidate(&made)
            .map_err(|e| TransportError::Ice(e.to_string()))?;
        Ok(true)
    }

    /// Runs ICE to a connected pair, then DTLS in `role` checking `remote_fingerprint`,
    /// then hands back a sender and the stream of incoming plain RTP/RTCP packets.
    pub async fn connect(
        &self,
        remote_ufrag: &str,
        remote_pwd: &str,
        role: DtlsRole,
        remote_fingerprint: &str,
        certificate: &LocalCertificate,
        config: &TransportConfig,
    ) -> Result<(RtpSender, mpsc::Receiver<Bytes>), TransportError> {
        let (cancel_tx, cancel_rx) = mpsc::channel(1);
        if let Ok(mut c) = self.cancel.lock() {
            *c = Some(cancel_tx);
        }
        let ufrag = remote_ufrag.to_owned();
        let pwd = remote_pwd.to_owned();
        if let Ok(mut r) = self.remote.lock() {
            *r = Some((ufrag.clone(), pwd.clone()));
        }
        let connecting = async {
            if self.controlling {
                self.agent
                    .dial(cancel_rx, ufrag, pwd)
                    .await
                    .map(|c| c as Arc<dyn Conn + Send + Sync>)
            } else {
                self.agent
                    .accept(cancel_rx, ufrag, pwd)
                    .await
                    .map(|c| c as Arc<dyn Conn + Send + Sync>)
            }
        };
        let ice: Arc<dyn Conn + Send + Sync> =
            tokio::time::timeout(config.connect_timeout, connecting)
                .await
                .map_err(|_| TransportError::Timeout("ICE connectivity checks"))?
                .map_err(|e| TransportError::Ice(e.to_string()))?;
        if let Some(pair) = self.agent.get_selected_candidate_pair() {
            info!(local = %pair.local, remote = %pair.remote, "ICE connected");
        }

        let (dtls_tx, dtls_rx) = mpsc::channel(64);
        let (media_tx, media_rx) = mpsc::channel(1024);
        let contexts: Arc<Mutex<Option<crate::dtls_srtp::SrtpContexts>>> = Arc::default();
        let reader = tokio::spawn(read_loop(
            ice.clone(),
            dtls_tx,
            media_tx,
            contexts.clone(),
            self.stats.clone(),
        ));
        let endpoint = Arc::new(DtlsEndpoint::new(ice.clone(), dtls_rx));
        let (dtls, srtp) = match handshake(
            endpoint,
            role,
            certificate,
            remote_fingerprint,
            config.dtls_timeout,
        )
        .await
        {
            Ok(ok) => ok,
            Err(e) => {
                reader.abort();
                return Err(e);
            }
        };
        if let Ok(mut c) = contexts.lock() {
            *c = Some(srtp.clone());
        }
        let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(512);
        let writer_ice = ice.clone();
        tokio::spawn(async move {
            while let Some(packet) = out_rx.recv().await {
                if let Err(e) = writer_ice.send(&packet).await {
                    debug!("ICE send failed: {e}");
                }
            }
        });
        if let Ok(mut d) = self.dtls.lock() {
            *d = Some(Arc::downgrade(&dtls));
        }
        // Keep reading the DTLS connection until the peer closes it (close_notify) or the
        // ICE connection under it closes, then close it here too. webrtc-dtls' reader task
        // only stops once its connection is closed or dropped: left running on a closed
        // transport it retries in a busy loop, a core's worth of CPU for every ended call.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let read = async {
                loop {
                    if let Err(e) = dtls.read(&mut buf, None).await {
                        break e;
                    }
                }
            };
            tokio::select! {
                e = read => debug!("DTLS connection ended: {e}"),
                _ = reader => debug!("ICE connection closed under DTLS"),
            }
            close_dtls(&dtls).await;
        });
        Ok((
            RtpSender {
                srtp,
                out: out_tx,
                stats: self.stats.clone(),
            },
            media_rx,
        ))
    }

    /// Closes DTLS (close_notify), stops connectivity checks and closes the agent.
    pub async fn close(&self) {
        // DTLS first, so its close_notify still goes out over ICE.
        let dtls = self
            .dtls
            .lock()
            .ok()
            .and_then(|mut d| d.take())
            .and_then(|d| d.upgrade());
        if let Some(dtls) = dtls {
            close_dtls(&dtls).await;
        }
        if let Ok(mut c) = self.cancel.lock() {
            c.take();
        }
        if let Err(e) = self.agent.close().await {
            debug!("closing the ICE agent: {e}");
        }
    }
}

/// Closes a DTLS connection (idempotent); that also stops its reader task.
async fn close_dtls(dtls: &DTLSConn) {
    match tokio::time::timeout(Duration::from_secs(1), dtls.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("closing DTLS: {e}"),
        Err(_) => debug!("closing DTLS timed out"),
    }
}

async fn read_loop(
    ice: Arc<dyn Conn + Send + Sync>,
    dtls_tx: mpsc::Sender<Vec<u8>>,
    media_tx: mpsc::Sender<Bytes>,
    contexts: Arc<Mutex<Option<crate::dtls_srtp::SrtpContexts>>>,
    stats: Arc<TransportStats>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let n = match ice.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                debug!("ICE connection closed: {e}");
                break;
            }
        };
        let packet = &buf[..n];
        match classify(packet) {
            PacketKind::Dtls => {
                if dtls_tx.try_send(packet.to_vec()).is_err() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            kind @ (PacketKind::Rtp | PacketKind::Rtcp) => {
                // No media before DTLS is done (XEP-0320): until then there are no keys.
                let srtp = contexts.lock().ok().and_then(|c| c.clone());
                let Some(srtp) = srtp else {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                match srtp.unprotect(kind, packet) {
                    Some(plain) => {
                        stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                        if media_tx.try_send(plain).is_err() {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            PacketKind::Other => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sends plain RTP/RTCP: protected with SRTP here, written to ICE on a tokio task.
/// `send` never blocks, so GStreamer's streaming threads can call it directly.
#[derive(Clone)]
pub struct RtpSender {
    srtp: crate::dtls_srtp::SrtpContexts,
    out: mpsc::Sender<Bytes>,
    stats: Arc<TransportStats>,
}

impl std::fmt::Debug for RtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtpSender")
    }
}

impl RtpSender {
    pub fn send(&self, packet: &[u8]) {
        let Some(protected) = self.srtp.protect(packet) else {
            return;
        };
        if self.out.try_send(protected).is_ok() {
            self.stats.rtp_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!("ICE send queue full: dropping a packet");
        }
    }
}

/// A webrtc-ice candidate as a XEP-0176 `<candidate>`; `None` for what we never offer.
fn to_jingle(c: &(dyn IceCandidate + Send + Sync), id: String) -> Option<Candidate> {
    let kind = match c.candidate_type() {
        CandidateType::Host => JingleCandidateType::Host,
        CandidateType::ServerReflexive => JingleCandidateType::Srflx,
        CandidateType::PeerReflexive => JingleCandidateType::Prflx,
        CandidateType::Relay => JingleCandidateType::Relay,
        CandidateType::Unspecified => return None,
    };
    let related = c.related_address();
    Some(Candidate {
        component: 1,
        foundation: c.foundation(),
        generation: 0,
        id,
        ip: c.address(),
        network: Some(0),
        port: c.port(),
        priority: c.priority(),
        protocol: "udp".to_owned(),
        rel_addr: related.as_ref().map(|r| r.address.clone()),
        rel_port: related.as_ref().map(|r| r.port),
        kind,
    })
}
