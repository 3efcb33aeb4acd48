//! Calls between Natter and an independent implementation of XEP-0353/Jingle, ICE and
//! DTLS-SRTP: `tests/peers/jingle_peer.py` (Python aiortc + slixmpp, no shared code),
//! through the harness Prosody. Media is checked on both sides by what is heard.

use std::process::Stdio;
use std::time::Duration;

use natter_core::calls::{CallState, ContentStats};
use natter_core::{CallAction, CallUpdate, Event};
use natter_testkit::{init_tracing, test_call_settings, Peer, Prosody};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The Python peer as a child process; its JSON lines arrive on `lines`.
struct PyPeer {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl PyPeer {
    fn start(server: &Prosody, user: &str, args: &[&str]) -> PyPeer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/jingle_peer.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--jid", &format!("{user}@localhost"), "--password", user])
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &server.c2s_port.to_string(),
            ])
            .arg("--ca")
            .arg(server.ca_path())
            .args(["--no-ipv6", "--duration", "40"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiortc and slixmpp (make deps)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        PyPeer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    async fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                _ => panic!("the aiortc peer never said that; it said {:#?}", self.seen),
            }
        }
    }

    async fn online(&mut self) {
        self.wait_for(Duration::from_secs(20), |v| v["event"] == "online")
            .await;
    }

    /// Waits for the peer to report hearing `freq` Hz.
    async fn hears(&mut self, freq: f64) -> Value {
        self.wait_for(Duration::from_secs(15), |v| {
            v["event"] == "media"
                && v["kind"] == "audio"
                && v["freq"].as_f64().is_some_and(|f| (f - freq).abs() < 25.0)
                && v["rms_db"].as_f64().is_some_and(|db| db > -40.0)
        })
        .await
    }

    async fn ended(&mut self) -> Value {
        self.wait_for(Duration::from_secs(15), |v| v["event"] == "ended")
            .await
    }

    async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .ok()
            .and_then(|s| s.ok())
            .and_then(|s| s.code())
    }
}

async fn natter(server: &Prosody, user: &str, freq: f64) -> Peer {
    server.register(user, user).expect("register");
    let mut p = Peer::start_with_calls(server.account(user), user, test_call_settings(freq))
        .await
        .expect("natter peer");
    p.online().await.expect("online");
    p
}

async fn state(peer: &mut Peer, timeout: Duration, want: impl Fn(&CallState) -> bool) -> CallState {
    match peer
        .wait_for(
            timeout,
            |e| matches!(e, Event::Call(CallUpdate::State { state, .. }) if want(state)),
        )
        .await
    {
        Some(Event::Call(CallUpdate::State { state, .. })) => state,
        other => panic!("call state not reached: {other:?}; seen {:?}", peer.seen),
    }
}

async fn incoming(peer: &mut Peer) -> String {
    match peer
        .wait_for(Duration::from_secs(15), |e| {
            matches!(e, Event::Call(CallUpdate::Incoming { .. }))
        })
        .await
    {
        Some(Event::Call(CallUpdate::Incoming { sid, .. })) => sid,
        other => panic!("no incoming call: {other:?}"),
    }
}

async fn natter_hears(peer: &Peer, sid: &str, freq: f64, video: bool) -> Vec<ContentStats> {
    let ok = |s: &[ContentStats]| {
        let audio = s.iter().any(|c| {
            c.stats
                .peak_frequency_hz
                .is_some_and(|f| (f - freq).abs() < 25.0)
                && c.stats.rms_db.is_some_and(|db| db > -40.0)
        });
        let frames = s
            .iter()
            .any(|c| c.stats.frames_decoded > 10 && c.stats.width == 640);
        audio && (!video || frames)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = peer.handle.call_stats(sid).await.unwrap_or_default();
        if ok(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Natter does not hear {freq} Hz: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natter_calls_aiortc_audio_both_ways() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let mut alice = natter(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = PyPeer::start(&server, "bob", &["answer", "--tone", "880"]);
    bob.online().await;

    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    state(&mut alice, Duration::from_secs(20), |s| {
        *s == CallState::Active
    })
    .await;
    natter_hears(&alice, &sid, 880.0, false).await;
    bob.hears(440.0).await;

    alice
        .handle
        .call_action(&sid, CallAction::HangUp)
        .await
        .expect("hang up");
    let end = bob.ended().await;
    assert_eq!(end["reason"], "success");
    assert_eq!(end["by"], "remote");
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_calls_natter_with_video_and_hangs_up() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let mut alice = natter(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = PyPeer::start(
        &server,
        "bob",
        &[
            "call",
            "alice@localhost",
            "--video",
            "--tone",
            "880",
            "--trickle",
            "0.05",
        ],
    );
    let sid = incoming(&mut alice).await;
    alice
        .handle
        .call_action(&sid, CallAction::Accept)
        .await
        .expect("accept");
    state(&mut alice, Duration::from_secs(20), |s| {
        *s == CallState::Active
    })
    .await;
    natter_hears(&alice, &sid, 880.0, true).await;
    bob.hears(440.0).await;
    bob.wait_for(Duration::from_secs(15), |v| {
        v["event"] == "media" && v["kind"] == "video" && v["frames"].as_u64() > Some(10)
    })
    .await;

    // The peer hangs up (SIGTERM makes it send session-terminate + finish).
    let pid = bob.child.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    match state(&mut alice, Duration::from_secs(10), |s| {
        matches!(s, CallState::Ended(_))
    })
    .await
    {
        CallState::Ended(r) => {
            assert!(r.remote);
            assert_eq!(r.condition.as_str(), "success");
        }
        _ => unreachable!(),
    }
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natter_rejects_and_the_caller_retracts() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let mut alice = natter(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");

    let mut bob = PyPeer::start(&server, "bob", &["call", "alice@localhost"]);
    let sid = incoming(&mut alice).await;
    alice
        .handle
        .call_action(&sid, CallAction::Reject)
        .await
        .expect("reject");
    assert_eq!(bob.ended().await["reason"], "decline");
    assert_eq!(bob.exit_code().await, Some(0));
    match state(&mut alice, Duration::from_secs(5), |s| {
        matches!(s, CallState::Ended(_))
    })
    .await
    {
        CallState::Ended(r) => assert!(!r.remote && r.condition.as_str() == "decline"),
        _ => unreachable!(),
    }

    alice.seen.clear();
    let mut bob = PyPeer::start(
        &server,
        "bob",
        &["call", "alice@localhost", "--retract-after", "1"],
    );
    let _ringing = incoming(&mut alice).await;
    match state(&mut alice, Duration::from_secs(10), |s| {
        matches!(s, CallState::Ended(_))
    })
    .await
    {
        CallState::Ended(r) => {
            assert!(r.remote);
            assert_eq!(r.condition.as_str(), "cancel");
        }
        _ => unreachable!(),
    }
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_rejects_natter() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let mut alice = natter(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = PyPeer::start(&server, "bob", &["answer", "--reject"]);
    bob.online().await;
    alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    match state(&mut alice, Duration::from_secs(10), |s| {
        matches!(s, CallState::Ended(_))
    })
    .await
    {
        CallState::Ended(r) => {
            assert!(r.remote);
            assert_eq!(r.condition.as_str(), "decline");
        }
        _ => unreachable!(),
    }
    assert_eq!(bob.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_dtls_fingerprint_refuses_the_call_without_media() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    let mut alice = natter(&server, "alice", 440.0).await;
    server.register("bob", "bob").expect("register");
    let mut bob = PyPeer::start(&server, "bob", &["answer", "--bad-fingerprint"]);
    bob.online().await;
    let sid = alice
        .handle
        .place_call("bob@localhost", false)
        .await
        .expect("call");
    match state(&mut alice, Duration::from_secs(30), |s| {
        matches!(s, CallState::Ended(_))
    })
    .await
    {
        CallState::Ended(r) => {
            assert!(!r.remote, "Natter ends it: {r:?}");
            assert_eq!(r.condition.as_str(), "security-error");
        }
        _ => unreachable!(),
    }
    assert!(
        !alice.seen.iter().any(|e| matches!(
            e,
            Event::Call(CallUpdate::State {
                state: CallState::Active,
                ..
            })
        )),
        "never active"
    );
    assert!(
        alice.handle.call_stats(&sid).await.is_err(),
        "no media pipeline"
    );
    // The peer's handshake fails too (Natter's alert or its session-terminate).
    bob.ended().await;
    assert!(
        !bob.seen
            .iter()
            .any(|v| v["event"] == "media" && v["packets"].as_u64() > Some(0)),
        "the peer received no media"
    );
}
