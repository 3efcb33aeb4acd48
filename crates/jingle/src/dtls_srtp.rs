//! XEP-0320 / RFC 5764: DTLS over the ICE connection, SRTP keys exported from it.
//!
//! The ICE connection carries DTLS, SRTP and SRTCP; packets are told apart by their
//! first byte (RFC 7983): 20–63 DTLS, 128–191 RTP/RTCP (second byte 192–223 is RTCP,
//! RFC 5761). Nothing but DTLS is accepted before the handshake is done and the peer's
//! certificate matched the fingerprint it signalled.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dtls::config::{ClientAuthType, Config as DtlsConfig, ExtendedMasterSecretType};
use dtls::conn::DTLSConn;
use dtls::crypto::Certificate;
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::Conn;

use crate::TransportError;

/// Our DTLS identity for one call: a fresh self-signed ECDSA P-256 certificate.
#[derive(Clone)]
pub struct LocalCertificate {
    pub(crate) certificate: Certificate,
    fingerprint: String,
}

impl std::fmt::Debug for LocalCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCertificate")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl LocalCertificate {
    pub fn generate() -> Result<Self, TransportError> {
        let certificate = Certificate::generate_self_signed(vec!["natter".to_owned()])
            .map_err(|e| TransportError::Dtls(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| TransportError::Dtls("generated certificate is empty".into()))?;
        let fingerprint = sha256_fingerprint(der.as_ref());
        Ok(LocalCertificate {
            certificate,
            fingerprint,
        })
    }

    /// `AB:CD:…` SHA-256 of the certificate, as XEP-0320 signals it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

pub(crate) fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Which side of the DTLS handshake we are (XEP-0320 `setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We send the ClientHello (`setup='active'`).
    Client,
    /// We wait for it (`setup='passive'`, or `actpass` answered with `active`).
    Server,
}

/// What the first byte of a packet on the ICE connection says it is (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PacketKind {
    Dtls,
    Rtp,
    Rtcp,
    Other,
}

pub(crate) fn classify(packet: &[u8]) -> PacketKind {
    match packet.first() {
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => match packet.get(1) {
            Some(192..=223) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Other,
        },
        _ => PacketKind::Other,
    }
}

/// The DTLS side of the demultiplexer: a `Conn` that reads only the DTLS packets the
/// ICE reader hands it, and writes straight to the ICE connection.
pub(crate) struct DtlsEndpoint {
    ice: Arc<dyn Conn + Send + Sync>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
}

impl DtlsEndpoint {
    pub(crate) fn new(ice: Arc<dyn Conn + Send + Sync>, incoming: mpsc::Receiver<Vec<u8>>) -> Self {
        DtlsEndpoint {
            ice,
            incoming: tokio::sync::Mutex::new(incoming),
        }
    }
}

#[async_trait]
impl Conn for DtlsEndpoint {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other(
            "connect on a DTLS endpoint".into(),
        ))
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        let packet = self
            .incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(webrtc_util::Error::ErrBufferClosed)?;
        let n = packet.len().min(buf.len());
        buf[..n].copy_from_slice(&packet[..n]);
        Ok(n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        let addr = self
            .ice
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok((n, addr))
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.ice.send(buf).await
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> webrtc_util::Result<usize> {
        self.ice.send(buf).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.ice.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.ice.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.incoming.lock().await.close();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

type VerifyFn = Arc<
    dyn Fn(&[Vec<u8>], &[rustls_pki_types::CertificateDer<'static>]) -> Result<(), dtls::Error>
        + Send
        + Sync,
>;

/// Runs the handshake on `endpoint` and checks the peer's certificate against the
/// SHA-256 fingerprint it signalled; returns the connection and the SRTP contexts.
pub(crate) async fn handshake(
    endpoint: Arc<dyn Conn + Send + Sync>,
    role: DtlsRole,
    local: &LocalCertificate,
    remote_fingerprint: &str,
    timeout: Duration,
) -> Result<(Arc<DTLSConn>, SrtpContexts), TransportError> {
    let expected = remote_fingerprint.trim().to_ascii_uppercase();
    let verify: VerifyFn = Arc::new(move |certs: &[Vec<u8>], _| {
        let Some(first) = certs.first() else {
            return Err(dtls::Error::ErrNoCertificates);
        };
        let got = sha256_fingerprint(first);
        if got == expected {
            Ok(())
        } else {
            warn!(%got, %expected, "DTLS certificate does not match the signalled fingerprint");
            Err(dtls::Error::Other(
                "certificate does not match the signalled fingerprint".into(),
            ))
        }
    });
    let config = DtlsConfig {
        certificates: vec![local.certificate.clone()],
        srtp_protection_profiles: vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80],
        extended_master_secret: ExtendedMasterSecretType::Request,
        // Self-signed on both sides: the signalled fingerprint is the trust anchor.
        insecure_skip_verify: true,
        client_auth: ClientAuthType::RequireAnyClientCert,
        verify_peer_certificate: Some(verify),
        ..Default::default()
    };
    let is_client = role == DtlsRole::Client;
    let conn = tokio::time::timeout(timeout, DTLSConn::new(endpoint, config, is_client, None))
        .await
        .map_err(|_| TransportError::Timeout("DTLS handshake"))?
        .map_err(|e| match e {
            dtls::Error::Other(m) if m.contains("fingerprint") => {
                TransportError::FingerprintMismatch
            }
            e => TransportError::Dtls(e.to_string()),
        })?;
    if conn.selected_srtpprotection_profile() != SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80
    {
        return Err(TransportError::Dtls(
            "peer did not agree to SRTP_AES128_CM_HMAC_SHA1_80".into(),
        ));
    }
    let state = conn.connection_state().await;
    let mut srtp = webrtc_srtp::config::Config {
        profile: ProtectionProfile::Aes128CmHmacSha1_80,
        ..Default::default()
    };
    srtp.extract_session_keys_from_dtls(state, is_client)
        .await
        .map_err(|e| TransportError::Dtls(e.to_string()))?;
    let keys = &srtp.keys;
    let local_ctx = Context::new(
        &keys.local_master_key,
        &keys.local_master_salt,
        srtp.profile,
        None,
        None,
    )
    .map_err(|e| TransportError::Dtls(e.to_string()))?;
    let remote_ctx = Context::new(
        &keys.remote_master_key,
        &keys.remote_master_salt,
        srtp.profile,
        Some(srtp_replay_protection(64)),
        Some(srtcp_replay_protection(64)),
    )
    .map_err(|e| TransportError::Dtls(e.to_string()))?;
    debug!(?role, "DTLS-SRTP established");
    Ok((
        Arc::new(conn),
        SrtpContexts {
            outbound: Arc::new(Mutex::new(local_ctx)),
            inbound: Arc::new(Mutex::new(remote_ctx)),
        },
    ))
}

/// One SRTP context per direction (RFC 3711), shared by the reader and the sender.
#[derive(Clone)]
pub(crate) struct SrtpContexts {
    pub(crate) outbound: Arc<Mutex<Context>>,
    pub(crate) inbound: Arc<Mutex<Context>>,
}

impl SrtpContexts {
    pub(crate) fn protect(&self, packet: &[u8]) -> Option<Bytes> {
        let mut ctx = self.outbound.lock().ok()?;
        let out = match classify(packet) {
            PacketKind::Rtp => ctx.encrypt_rtp(packet),
            PacketKind::Rtcp => ctx.encrypt_rtcp(packet),
            _ => return None,
        };
        match out {
            Ok(b) => Some(b),
            Err(e) => {
                debug!("cannot protect an outgoing packet: {e}");
                None
            }
        }
    }

    pub(crate) fn unprotect(&self, kind: PacketKind, packet: &[u8]) -> Option<Bytes> {
        let mut ctx = self.inbound.lock().ok()?;
        let out = match kind {
            PacketKind::Rtp => ctx.decrypt_rtp(packet),
            PacketKind::Rtcp => ctx.decrypt_rtcp(packet),
            _ => return None,
        };
        match out {
            Ok(b) => Some(b),
            Err(e) => {
                debug!("dropping a packet that does not authenticate: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_tells_dtls_rtp_and_rtcp_apart() {
        assert_eq!(classify(&[22, 254, 253]), PacketKind::Dtls);
        assert_eq!(classify(&[0x80, 111, 0, 1]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 200, 0, 6]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x81, 206, 0, 2]), PacketKind::Rtcp);
        assert_eq!(classify(&[0, 1]), PacketKind::Other); // STUN never reaches us
        assert_eq!(classify(&[]), PacketKind::Other);
        assert_eq!(classify(&[0x80]), PacketKind::Other);
    }

    #[test]
    fn fingerprint_is_upper_case_colon_separated_sha256() {
        let c = LocalCertificate::generate().expect("certificate");
        let fp = c.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.split(':').all(|b| b.len() == 2
            && b.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));
    }
}
