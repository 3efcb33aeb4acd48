//! Opening an authenticated XMPP stream: DNS SRV or a manual host, STARTTLS or direct TLS
//! (XEP-0368), certificate checks against the system roots plus an optional extra CA, and
//! SASL with a SCRAM-first policy. The reconnecting [`Connector`] feeds tokio-xmpp's
//! `StanzaStream`, which does XEP-0198 (stream management and resumption) on top.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_xmpp::connect::AsyncReadAndWrite;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::error::{AuthError, Error as XmppError, ProtocolError};
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::sasl::DefinedCondition;
use tokio_xmpp::parsers::stream_features::StreamFeatures;
use tokio_xmpp::parsers::{ns, starttls};
use tokio_xmpp::stanzastream::{Connection, StanzaStream};
use tokio_xmpp::xmlstream::{
    initiate_stream, PendingFeaturesRecv, ReadError, RecvFeaturesError, StreamHeader, Timeouts,
    XmlStream, XmppStream, XmppStreamElement,
};
use xso::FromXml;

use crate::link::{Link, LinkControl};

/// How to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// `_xmpp-client._tcp` / `_xmpps-client._tcp` SRV records of the JID's domain, then
    /// the domain itself on 5222.
    Srv,
    /// A fixed host and port.
    Manual {
        host: String,
        port: u16,
        direct_tls: bool,
    },
}

/// Delays between reconnection attempts: exponential with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based): `initial·2ⁿ` capped at `max`, then a random
    /// point in its upper half so that many clients do not reconnect in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let factor = rand::rng().random_range(0.5..=1.0);
        base.mul_f64(factor)
    }
}

/// Everything needed to open a stream for one account.
#[derive(Clone)]
pub struct ConnectConfig {
    pub jid: BareJid,
    pub resource: String,
    pub password: String,
    pub server: ServerAddress,
    /// PEM file with extra trusted CA certificates (self-hosted servers, tests).
    pub extra_ca: Option<PathBuf>,
    /// SHA-256 (lowercase hex) of a server certificate the user explicitly trusted after
    /// seeing a [`CertificateProblem`]; accepted even though it fails the normal checks.
    pub pinned_cert: Option<String>,
    pub backoff: Backoff,
    pub timeouts: Timeouts,
}

impl std::fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("jid", &self.jid)
            .field("resource", &self.resource)
            .field("server", &self.server)
            .field("extra_ca", &self.extra_ca)
            .finish_non_exhaustive()
    }
}

/// Why a connection attempt failed. `is_final()` errors stop reconnection: retrying
/// cannot help until the user changes something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("the server rejected the password for {0}")]
    WrongPassword(String),
    #[error("the server refused the login: {0}")]
    AuthRefused(String),
    #[error("the server offers no sign-in method Natter trusts (offered: {0})")]
    NoSafeMechanism(String),
    #[error("the server's certificate is not trusted: {}", .0.reason)]
    Certificate(Box<CertificateProblem>),
    #[error("the server does not offer encryption (STARTTLS)")]
    NoTls,
    #[error("the extra CA file cannot be used: {0}")]
    ExtraCa(String),
    #[error("this server does not host {0}")]
    NotServed(String),
    #[error("the server {0} was not found")]
    HostNotFound(String),
    #[error("the server cannot be reached: {0}")]
    Unreachable(String),
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
}

impl ConnectError {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ConnectError::WrongPassword(_)
                | ConnectError::AuthRefused(_)
                | ConnectError::NoSafeMechanism(_)
                | ConnectError::Certificate(_)
                | ConnectError::NoTls
                | ConnectError::NotServed(_)
                | ConnectError::ExtraCa(_)
        )
    }
}

/// Why a server certificate was refused, and what it says about itself: enough for a
/// person to decide whether to trust it anyway (the decision is theirs, never ours).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateProblem {
    /// In words: "it was issued by an authority this system does not trust", …
    pub reason: String,
    /// The subject's distinguished name.
    pub subject: String,
    /// The names the certificate is valid for (subject alternative names).
    pub names: Vec<String>,
    /// Who issued it (distinguished name).
    pub issuer: String,
    /// Validity, as RFC 3339 dates.
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the certificate (lowercase hex): what the user pins.
    pub sha256: String,
}

impl CertificateProblem {
    fn new(reason: impl Into<String>) -> Self {
        CertificateProblem {
            reason: reason.into(),
            ..Default::default()
        }
    }

    /// Fills in what the certificate says; a certificate that cannot be parsed keeps its
    /// fingerprint only.
    fn describe(&mut self, der: &[u8]) {
        self.sha256 = sha256_hex(der);
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return;
        };
        self.subject = cert.subject().to_string();
        self.issuer = cert.issuer().to_string();
        self.not_before = rfc3339(cert.validity().not_before.timestamp());
        self.not_after = rfc3339(cert.validity().not_after.timestamp());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            self.names = san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .ok()
                            .map(|a| std::net::Ipv4Addr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*ip)
                            .ok()
                            .map(|a| std::net::Ipv6Addr::from(a).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
        }
    }
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn sha256_hex(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The normal WebPKI checks, plus the user's pinned certificate; remembers the
/// certificate it refused so the error can describe it.
#[derive(Debug)]
struct Verifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Option<String>,
    refused: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => Ok(ok),
            Err(e) => {
                if let Some(pinned) = &self.pinned {
                    if sha256_hex(end_entity.as_ref()) == *pinned {
                        tracing::info!("accepting the certificate the user chose to trust");
                        return Ok(rustls::client::danger::ServerCertVerified::assertion());
                    }
                }
                if let Ok(mut slot) = self.refused.lock() {
                    *slot = Some(end_entity.as_ref().to_vec());
                }
                Err(e)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn classify_io(e: &io::Error, domain: &str) -> ConnectError {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return classify_tls(tls, domain);
    }
    ConnectError::Unreachable(e.to_string())
}

fn classify_features(e: RecvFeaturesError, domain: &str) -> ConnectError {
    classify(XmppError::from(e), domain)
}

fn classify_tls(e: &rustls::Error, domain: &str) -> ConnectError {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            ConnectError::Certificate(Box::new(CertificateProblem::new(match c {
                C::UnknownIssuer => {
                    "it was issued by an authority this system does not trust".to_string()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    format!("it is not valid for {domain}")
                }
                C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".to_string(),
                C::Revoked => "it has been revoked".to_string(),
                C::BadSignature | C::BadEncoding => "it is malformed".to_string(),
                other => format!("{other:?}"),
            })))
        }
        other => ConnectError::Unreachable(format!("TLS failed: {other}")),
    }
}

fn classify(e: XmppError, domain: &str) -> ConnectError {
    match e {
        XmppError::Io(e) => classify_io(&e, domain),
        XmppError::Auth(AuthError::Fail(DefinedCondition::NotAuthorized)) => {
            ConnectError::WrongPassword(domain.to_string())
        }
        XmppError::Auth(AuthError::Fail(c)) => ConnectError::AuthRefused(format!("{c:?}")),
        XmppError::Auth(AuthError::NoMechanism) => ConnectError::NoSafeMechanism(String::new()),
        XmppError::Auth(e) => ConnectError::AuthRefused(e.to_string()),
        XmppError::Protocol(ProtocolError::NoTls) => ConnectError::NoTls,
        XmppError::DnsProto(e) => ConnectError::HostNotFound(format!("{domain} ({e})")),
        XmppError::DnsNet(e) => ConnectError::HostNotFound(format!("{domain} ({e})")),
        XmppError::Idna => ConnectError::HostNotFound(domain.to_string()),
        XmppError::Disconnected => ConnectError::Unreachable("disconnected".into()),
        XmppError::StreamError(e) => match e.0.condition {
            tokio_xmpp::parsers::stream_error::DefinedCondition::HostUnknown => {
                ConnectError::NotServed(domain.to_string())
            }
            _ => ConnectError::Unreachable(e.to_string()),
        },
        other => ConnectError::Protocol(other.to_string()),
    }
}

/// A certificate the verifier refused, kept to describe it in the error.
type Refused = Arc<std::sync::Mutex<Option<Vec<u8>>>>;

/// The TLS settings: system roots, plus the account's extra CA if any, plus the
/// certificate the user pinned.
fn tls_config(
    extra_ca: Option<&PathBuf>,
    pinned: Option<&String>,
) -> Result<(Arc<ClientConfig>, Refused), ConnectError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "skipping an unreadable system certificate");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ConnectError::ExtraCa(format!("{}: {e}", path.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConnectError::ExtraCa(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ConnectError::ExtraCa(format!(
                "{}: no certificate in the file",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ConnectError::ExtraCa(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let refused = Refused::default();
    let verifier = Verifier {
        inner,
        pinned: pinned.cloned(),
        refused: refused.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Protocol(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((Arc::new(config), refused))
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_handshake(
    tcp: TcpStream,
    domain: &str,
    config: Arc<ClientConfig>,
) -> Result<(TlsStream, ChannelBinding), ConnectError> {
    let name = ServerName::try_from(domain.to_owned())
        .map_err(|_| ConnectError::HostNotFound(domain.to_string()))?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| classify_io(&e, domain))?;
    let (_, conn) = tls.get_ref();
    // RFC 9266 tls-exporter; only defined for TLS 1.3.
    let binding = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => conn
            .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
            .map(ChannelBinding::TlsExporter)
            .unwrap_or(ChannelBinding::None),
        _ => ChannelBinding::None,
    };
    Ok((tls, binding))
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

/// One place to try: a host, a port, and whether TLS starts at once (XEP-0368).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub direct_tls: bool,
}

/// An SRV answer: (priority, weight, target, port).
pub type SrvRecord = (u16, u16, String, u16);

/// XEP-0368 §3: the `_xmpps-client` and `_xmpp-client` records form one list, tried by
/// priority (lowest first), then weight (highest first); on equal footing direct TLS
/// goes first because it saves a round trip. A target of "." means "no service here".
pub fn order_endpoints(xmpps: &[SrvRecord], xmpp: &[SrvRecord]) -> Vec<Endpoint> {
    let mut all: Vec<(u16, u16, bool, &str, u16)> = xmpps
        .iter()
        .map(|(p, w, t, port)| (*p, *w, true, t.as_str(), *port))
        .chain(
            xmpp.iter()
                .map(|(p, w, t, port)| (*p, *w, false, t.as_str(), *port)),
        )
        .filter(|(_, _, _, t, _)| !t.is_empty() && *t != ".")
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(b.1.cmp(&a.1)));
    all.into_iter()
        .map(|(_, _, direct_tls, host, port)| Endpoint {
            host: host.trim_end_matches('.').to_owned(),
            port,
            direct_tls,
        })
        .collect()
}

async fn srv_records(resolver: &hickory_resolver::TokioResolver, name: String) -> Vec<SrvRecord> {
    use hickory_resolver::proto::rr::RData;
    match resolver.srv_lookup(name).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => {
                    Some((srv.priority, srv.weight, srv.target.to_ascii(), srv.port))
                }
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Where to connect for `domain`: its SRV records (both kinds), else the domain on 5222.
async fn endpoints(domain: &str) -> Vec<Endpoint> {
    let fallback = vec![Endpoint {
        host: domain.to_owned(),
        port: 5222,
        direct_tls: false,
    }];
    if domain.parse::<std::net::IpAddr>().is_ok() {
        return fallback;
    }
    let resolver = match hickory_resolver::TokioResolver::builder_tokio().and_then(|b| b.build()) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "no DNS resolver, trying the domain itself");
            return fallback;
        }
    };
    let (xmpps, xmpp) = tokio::join!(
        srv_records(&resolver, format!("_xmpps-client._tcp.{domain}.")),
        srv_records(&resolver, format!("_xmpp-client._tcp.{domain}.")),
    );
    let ordered = order_endpoints(&xmpps, &xmpp);
    if ordered.is_empty() && xmpps.is_empty() && xmpp.is_empty() {
        fallback
    } else {
        ordered
    }
}

/// TCP to the first endpoint that answers.
async fn connect_tcp(cfg: &ConnectConfig) -> Result<(TcpStream, bool), ConnectError> {
    let domain = cfg.jid.domain().as_str();
    let candidates = match &cfg.server {
        ServerAddress::Srv => endpoints(domain).await,
        ServerAddress::Manual {
            host,
            port,
            direct_tls,
        } => vec![Endpoint {
            host: host.clone(),
            port: *port,
            direct_tls: *direct_tls,
        }],
    };
    if candidates.is_empty() {
        return Err(ConnectError::HostNotFound(format!(
            "{domain} (its DNS says it offers no XMPP service)"
        )));
    }
    let mut last = ConnectError::HostNotFound(domain.to_owned());
    for ep in candidates {
        tracing::debug!(host = %ep.host, port = ep.port, direct_tls = ep.direct_tls, "connecting");
        match DnsConfig::no_srv(&ep.host, ep.port).resolve().await {
            Ok(tcp) => return Ok((tcp, ep.direct_tls)),
            Err(e) => last = classify(e, domain),
        }
    }
    Err(last)
}

/// TCP, then TLS (directly or through STARTTLS), then the stream header.
async fn open_tls_stream(
    cfg: &ConnectConfig,
    tls: Arc<ClientConfig>,
    link: &LinkControl,
) -> Result<(PendingFeaturesRecv<Link<TlsStream>>, ChannelBinding), ConnectError> {
    let domain = cfg.jid.domain().as_str();
    let (tcp, direct) = connect_tcp(cfg).await?;
    let tcp = if direct {
        tcp
    } else {
        let stream = initiate_stream(
            BufStream::new(tcp),
            ns::JABBER_CLIENT,
            header(domain),
            cfg.timeouts,
        )
        .await
        .map_err(|e| classify_io(&e, domain))?;
        let (features, mut stream): (_, XmppStream<_>) = stream
            .recv_features()
            .await
            .map_err(|e| classify_features(e, domain))?;
        if !features.can_starttls() {
            return Err(ConnectError::NoTls);
        }
        stream
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await
            .map_err(|e| classify_io(&e, domain))?;
        loop {
            match stream
                .next()
                .await
                .map(|v| v.and_then(|v| v.into_read_error()))
            {
                Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                Some(Ok(XmppStreamElement::Starttls(_))) => return Err(ConnectError::NoTls),
                Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(ReadError::HardError(e))) => return Err(classify_io(&e, domain)),
                Some(Err(ReadError::ParseError(e))) => {
                    return Err(ConnectError::Protocol(e.to_string()))
                }
                None | Some(Err(ReadError::StreamFooterReceived)) => {
                    return Err(ConnectError::Unreachable("closed during STARTTLS".into()))
                }
            }
        }
        stream.into_inner().into_inner()
    };
    let (tls_stream, binding) = tls_handshake(tcp, domain, tls).await?;
    let stream = initiate_stream(
        link.wrap(tls_stream),
        ns::JABBER_CLIENT,
        header(domain),
        cfg.timeouts,
    )
    .await
    .map_err(|e| classify_io(&e, domain))?;
    Ok((stream, binding))
}

/// Which SASL mechanisms we let tokio-xmpp try, and with which channel binding.
///
/// tokio-xmpp tries SCRAM-SHA-256, SCRAM-SHA-1, then PLAIN, naming SCRAM "-PLUS" whenever
/// channel-binding data is present. Left alone it would fall through to PLAIN when the
/// server offers only non-PLUS SCRAM. So: when any SCRAM is offered, only SCRAM is
/// allowed; -PLUS is used when offered and we have tls-exporter data; otherwise the
/// gs2 flag says "client supports binding, server did not offer it" (RFC 5802 'y').
/// PLAIN (over TLS) only when the server offers no SCRAM at all; never ANONYMOUS.
pub fn sasl_policy(
    offered: &BTreeSet<String>,
    binding: ChannelBinding,
) -> Result<(BTreeSet<String>, ChannelBinding), ConnectError> {
    const PLUS: [&str; 2] = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"];
    const SCRAM: [&str; 2] = ["SCRAM-SHA-256", "SCRAM-SHA-1"];
    let has_binding = matches!(binding, ChannelBinding::TlsExporter(_));
    let pick = |names: &[&str]| -> BTreeSet<String> {
        names
            .iter()
            .filter(|n| offered.contains(**n))
            .map(|n| n.to_string())
            .collect()
    };
    let plus = pick(&PLUS);
    if has_binding && !plus.is_empty() {
        return Ok((plus, binding));
    }
    let scram = pick(&SCRAM);
    if !scram.is_empty() {
        let flag = if has_binding {
            ChannelBinding::Unsupported
        } else {
            ChannelBinding::None
        };
        return Ok((scram, flag));
    }
    if offered.contains("PLAIN") {
        return Ok((BTreeSet::from(["PLAIN".to_string()]), ChannelBinding::None));
    }
    Err(ConnectError::NoSafeMechanism(
        offered.iter().cloned().collect::<Vec<_>>().join(", "),
    ))
}

/// One full attempt: an authenticated stream, ready for resource binding.
pub async fn connect_once(cfg: &ConnectConfig) -> Result<Connection, ConnectError> {
    connect_once_with(cfg, &LinkControl::default()).await
}

/// [`connect_once`], with the connection under `link`'s control.
pub async fn connect_once_with(
    cfg: &ConnectConfig,
    link: &LinkControl,
) -> Result<Connection, ConnectError> {
    let (stream, features, identity) = open_authenticated(cfg, link).await?;
    Ok(Connection {
        stream,
        features,
        identity,
    })
}

/// A stream whose elements are read as `T`, authenticated and not yet bound, with
/// the server's features and the JID to bind.
pub(crate) type Authenticated<T> = (
    XmlStream<Box<dyn AsyncReadAndWrite + Send + 'static>, T>,
    StreamFeatures,
    Jid,
);

/// Opens the stream (TLS, certificate checks, SASL) and has it read elements as `T`:
/// [`XmppStreamElement`]s for the session, a narrower type for a stream that expects
/// only a few kinds of elements.
pub(crate) async fn open_authenticated<T: FromXml + std::fmt::Debug>(
    cfg: &ConnectConfig,
    link: &LinkControl,
) -> Result<Authenticated<T>, ConnectError> {
    let domain = cfg.jid.domain().as_str().to_owned();
    let username = cfg
        .jid
        .node()
        .ok_or_else(|| ConnectError::AuthRefused("the address has no user name".into()))?
        .as_str()
        .to_owned();
    let (tls, refused) = tls_config(cfg.extra_ca.as_ref(), cfg.pinned_cert.as_ref())?;
    let (stream, binding) = match open_tls_stream(cfg, tls, link).await {
        Ok(opened) => opened,
        Err(ConnectError::Certificate(mut problem)) => {
            if let Some(der) = refused.lock().ok().and_then(|mut s| s.take()) {
                problem.describe(&der);
            }
            return Err(ConnectError::Certificate(problem));
        }
        Err(e) => return Err(e),
    };
    let (features, stream) = stream
        .recv_features()
        .await
        .map_err(|e| classify_features(e, &domain))?;
    let (mechanisms, binding) = sasl_policy(&features.sasl_mechanisms, binding)?;
    tracing::debug!(?mechanisms, "authenticating");
    let creds = Credentials::default()
        .with_username(username)
        .with_password(cfg.password.clone())
        .with_channel_binding(binding);
    let stream = tokio_xmpp::client_login(stream, mechanisms, creds)
        .await
        .map_err(|e| match classify(e, &domain) {
            ConnectError::WrongPassword(_) => ConnectError::WrongPassword(cfg.jid.to_string()),
            other => other,
        })?;
    let stream = stream
        .send_header(header(&domain))
        .await
        .map_err(|e| classify_io(&e, &domain))?;
    let (features, stream) = stream
        .recv_features()
        .await
        .map_err(|e| classify_features(e, &domain))?;
    let identity = if cfg.resource.is_empty() {
        Jid::from(cfg.jid.clone())
    } else {
        Jid::from(
            cfg.jid
                .with_resource_str(&cfg.resource)
                .map_err(|e| ConnectError::Protocol(format!("bad resource: {e}")))?,
        )
    };
    Ok((stream.box_stream(), features, identity))
}

/// What the connector tells the session about its attempts.
#[derive(Debug, Clone)]
pub enum ConnectorStatus {
    Connecting {
        attempt: u32,
    },
    /// An authenticated connection was handed to the stream for binding or resumption.
    Connected,
    Retrying {
        error: ConnectError,
        delay: Duration,
    },
    /// A final error: the connector gave up; the stream must be closed.
    Failed(ConnectError),
}

/// Holds the connection slot of a stream that will not get a connection any more, idle,
/// until the stream's worker lets go of it: dropping it first would make tokio-xmpp's
/// worker panic ("unable to handle reconnect request"). A worker that waits for this
/// slot never lets go, so the two idle tasks stay (one pair per session that failed
/// or stopped while connecting): a few hundred bytes, no timers, no sockets.
async fn park(mut slot: oneshot::Sender<Connection>) {
    slot.closed().await;
}

/// Builds a `StanzaStream` whose reconnections go through [`connect_once`] with back-off.
/// Final errors are reported as [`ConnectorStatus::Failed`]; the owner then closes the
/// stream.
pub fn stanza_stream(
    cfg: ConnectConfig,
    status: mpsc::UnboundedSender<ConnectorStatus>,
    queue_depth: usize,
) -> StanzaStream {
    stanza_stream_with(cfg, status, queue_depth, LinkControl::default())
}

/// [`stanza_stream`], each connection under `link`'s control.
pub fn stanza_stream_with(
    cfg: ConnectConfig,
    status: mpsc::UnboundedSender<ConnectorStatus>,
    queue_depth: usize,
    link: LinkControl,
) -> StanzaStream {
    let cfg = Arc::new(cfg);
    let connector = Box::new(
        move |_preferred: Option<String>, slot: oneshot::Sender<Connection>| {
            let cfg = cfg.clone();
            let status = status.clone();
            let link = link.clone();
            tokio::spawn(async move {
                let mut attempt = 0u32;
                loop {
                    let _ = status.send(ConnectorStatus::Connecting { attempt });
                    // The session stopped listening (signed off): stop trying.
                    let outcome = tokio::select! {
                        _ = status.closed() => return park(slot).await,
                        outcome = connect_once_with(&cfg, &link) => outcome,
                    };
                    match outcome {
                        Ok(conn) => {
                            let _ = status.send(ConnectorStatus::Connected);
                            // If the stream is gone, there is nobody to hand this to.
                            let _ = slot.send(conn);
                            return;
                        }
                        Err(error) if error.is_final() => {
                            tracing::warn!(%error, "giving up connecting");
                            let _ = status.send(ConnectorStatus::Failed(error));
                            // The session closes the stream on this report. Dropping the
                            // slot first would make tokio-xmpp's worker panic.
                            return park(slot).await;
                        }
                        Err(error) => {
                            let delay = cfg.backoff.delay(attempt);
                            tracing::info!(%error, ?delay, "connection failed, retrying");
                            let _ = status.send(ConnectorStatus::Retrying { error, delay });
                            if slot.is_closed() {
                                return;
                            }
                            tokio::select! {
                                _ = status.closed() => return park(slot).await,
                                _ = tokio::time::sleep(delay) => {}
                            }
                            attempt = attempt.saturating_add(1);
                        }
                    }
                }
            });
        },
    );
    StanzaStream::new(connector, queue_depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn never_plain_when_scram_is_offered() {
        let cb = ChannelBinding::TlsExporter(vec![1; 32]);
        let (m, b) = sasl_policy(&set(&["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]), cb).unwrap();
        assert_eq!(m, set(&["SCRAM-SHA-1", "SCRAM-SHA-256"]));
        assert_eq!(b, ChannelBinding::Unsupported);
        let (m, b) = sasl_policy(&set(&["PLAIN", "SCRAM-SHA-1"]), ChannelBinding::None).unwrap();
        assert_eq!(m, set(&["SCRAM-SHA-1"]));
        assert_eq!(b, ChannelBinding::None);
    }

    #[test]
    fn plus_with_binding_data() {
        let cb = ChannelBinding::TlsExporter(vec![1; 32]);
        let offered = set(&["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "PLAIN"]);
        let (m, b) = sasl_policy(&offered, cb.clone()).unwrap();
        assert_eq!(m, set(&["SCRAM-SHA-1-PLUS"]));
        assert_eq!(b, cb);
        // Without binding data (TLS 1.2) the PLUS variants are not usable.
        let (m, _) = sasl_policy(&offered, ChannelBinding::None).unwrap();
        assert_eq!(m, set(&["SCRAM-SHA-1", "SCRAM-SHA-256"]));
    }

    #[test]
    fn plain_only_servers_and_refusals() {
        let (m, _) = sasl_policy(&set(&["PLAIN"]), ChannelBinding::None).unwrap();
        assert_eq!(m, set(&["PLAIN"]));
        assert!(matches!(
            sasl_policy(&set(&["ANONYMOUS", "DIGEST-MD5"]), ChannelBinding::None),
            Err(ConnectError::NoSafeMechanism(_))
        ));
    }

    #[test]
    fn srv_records_merge_by_priority_then_direct_tls_then_weight() {
        let xmpps = vec![
            (10, 5, "tls.example.org.".to_string(), 5223),
            (20, 0, "tls2.example.org.".to_string(), 443),
        ];
        let xmpp = vec![
            (5, 0, "primary.example.org.".to_string(), 5222),
            (10, 50, "plain.example.org.".to_string(), 5222),
            (10, 60, ".".to_string(), 5222),
        ];
        let order: Vec<_> = order_endpoints(&xmpps, &xmpp)
            .into_iter()
            .map(|e| (e.host, e.port, e.direct_tls))
            .collect();
        assert_eq!(
            order,
            [
                ("primary.example.org".to_string(), 5222, false),
                ("tls.example.org".to_string(), 5223, true),
                ("plain.example.org".to_string(), 5222, false),
                ("tls2.example.org".to_string(), 443, true),
            ]
        );
        assert!(order_endpoints(&[], &[(0, 0, ".".into(), 0)]).is_empty());
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let base = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(2));
            assert!(d <= base && d >= base / 2, "attempt {attempt}: {d:?}");
        }
    }
}
