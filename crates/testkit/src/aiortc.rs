//! The independent call peer (`tests/peers/jingle_peer.py`: Python aiortc + slixmpp) as
//! a child process; its JSON lines are collected as they arrive.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::Prosody;

pub struct AiortcPeer {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Everything the peer said so far.
    pub seen: Vec<Value>,
}

impl AiortcPeer {
    /// Signs `user` (password = user name) in on `server` with `args` (`call JID`,
    /// `answer`, `--tone`, …; see tests/peers/README.md).
    pub fn start(server: &Prosody, user: &str, args: &[&str]) -> AiortcPeer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/peers/jingle_peer.py"
        );
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
        AiortcPeer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until the peer says something matching `pred` (earlier lines count too).
    pub async fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
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

    /// Signed in, and its presence processed by the server.
    pub async fn online(&mut self) {
        self.wait_for(Duration::from_secs(20), |v| v["event"] == "online")
            .await;
    }

    /// Waits for the peer to report hearing `freq` Hz (±25 Hz, above −40 dB) from now on.
    pub async fn hears(&mut self, freq: f64) -> Value {
        self.seen
            .retain(|v| !(v["event"] == "media" && v["kind"] == "audio"));
        self.wait_for(Duration::from_secs(15), |v| {
            v["event"] == "media"
                && v["kind"] == "audio"
                && v["freq"].as_f64().is_some_and(|f| (f - freq).abs() < 25.0)
                && v["rms_db"].as_f64().is_some_and(|db| db > -40.0)
        })
        .await
    }

    pub async fn ended(&mut self) -> Value {
        self.wait_for(Duration::from_secs(15), |v| v["event"] == "ended")
            .await
    }

    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .ok()
            .and_then(|s| s.ok())
            .and_then(|s| s.code())
    }
}
