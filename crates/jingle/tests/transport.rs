//! Two transports in one process over real UDP sockets on this machine: ICE finds a pair,
//! DTLS runs with the signalled fingerprints, SRTP carries packets both ways.

use std::time::Duration;

use natter_jingle::{
    DtlsRole, IceTransport, LocalCertificate, TransportConfig, TransportError, TransportEvent,
};
use tokio::sync::mpsc;

fn config() -> TransportConfig {
    TransportConfig {
        include_loopback: true,
        connect_timeout: Duration::from_secs(15),
        dtls_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// Forwards every candidate one side gathers to the other (trickle).
fn trickle(
    mut events: mpsc::UnboundedReceiver<TransportEvent>,
    to: std::sync::Arc<IceTransport>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut states = Vec::new();
        while let Some(ev) = events.recv().await {
            match ev {
                TransportEvent::Candidate(c) => {
                    let _ = to.add_remote_candidate(&c);
                }
                TransportEvent::GatheringDone => {}
                TransportEvent::Ice(s) => states.push(s),
            }
        }
        states
    })
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

async fn pair(
    tamper_fingerprint: bool,
) -> (
    Result<(natter_jingle::RtpSender, mpsc::Receiver<bytes::Bytes>), TransportError>,
    Result<(natter_jingle::RtpSender, mpsc::Receiver<bytes::Bytes>), TransportError>,
) {
    let cfg = config();
    let (a, a_events) = IceTransport::new(&cfg, true).await.expect("agent a");
    let (b, b_events) = IceTransport::new(&cfg, false).await.expect("agent b");
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let _ta = trickle(a_events, b.clone());
    let _tb = trickle(b_events, a.clone());
    let ca = LocalCertificate::generate().expect("cert a");
    let cb = LocalCertificate::generate().expect("cert b");
    let (a_ufrag, a_pwd) = a.credentials();
    let (b_ufrag, b_pwd) = b.credentials();
    let fp_b_seen_by_a = if tamper_fingerprint {
        LocalCertificate::generate()
            .expect("other cert")
            .fingerprint()
            .to_owned()
    } else {
        cb.fingerprint().to_owned()
    };
    let fp_a = ca.fingerprint().to_owned();
    let (ra, rb) = tokio::join!(
        // The initiator offered actpass; the responder answered active: a is the server.
        a.connect(
            &b_ufrag,
            &b_pwd,
            DtlsRole::Server,
            &fp_b_seen_by_a,
            &ca,
            &cfg
        ),
        b.connect(&a_ufrag, &a_pwd, DtlsRole::Client, &fp_a, &cb, &cfg),
    );
    (ra, rb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_flows_both_ways_after_ice_and_dtls() {
    let (ra, rb) = pair(false).await;
    let (a_send, mut a_recv) = ra.expect("a connects");
    let (b_send, mut b_recv) = rb.expect("b connects");
    for seq in 0..50u16 {
        a_send.send(&rtp(seq, 0x1111, b"from a"));
        b_send.send(&rtp(seq, 0x2222, b"from b"));
        // An RTCP receiver report (PT 201) rides on the same transport (rtcp-mux).
        if seq % 10 == 0 {
            a_send.send(&[0x80, 201, 0, 1, 0, 0, 0x11, 0x11]);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got_b = Vec::new();
    while got_b.len() < 55 {
        let p = tokio::time::timeout(Duration::from_secs(5), b_recv.recv())
            .await
            .expect("b receives in time")
            .expect("b's stream open");
        got_b.push(p);
    }
    let rtp_at_b: Vec<_> = got_b.iter().filter(|p| p[1] == 111).collect();
    assert_eq!(rtp_at_b.len(), 50);
    assert!(
        rtp_at_b.iter().all(|p| p.ends_with(b"from a")),
        "plain RTP after SRTP"
    );
    assert_eq!(got_b.iter().filter(|p| p[1] == 201).count(), 5);
    let first_a = tokio::time::timeout(Duration::from_secs(5), a_recv.recv())
        .await
        .expect("a receives in time")
        .expect("a's stream open");
    assert!(first_a.ends_with(b"from b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_match_the_fingerprint_is_refused() {
    let (ra, rb) = pair(true).await;
    assert_eq!(ra.err(), Some(TransportError::FingerprintMismatch));
    // The other side sees the handshake fail (alert) rather than carrying media.
    assert!(rb.is_err(), "b must not get a media channel");
}
