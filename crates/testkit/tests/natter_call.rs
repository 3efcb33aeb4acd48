//! `natter-call` as a person debugging calls would run it: one instance answers, another
//! calls with video and hangs up; both print what they hear and see, and exit 0.

use std::process::Stdio;
use std::time::Duration;

use natter_testkit::Prosody;

fn natter_call(server: &Prosody, user: &str, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter-call"));
    c.args(["--jid", &format!("{user}@localhost"), "--password", user])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &server.c2s_port.to_string(),
        ])
        .arg("--ca")
        .arg(server.ca_path())
        .args(["--loopback", "--no-turn", "--duration", "30"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natter_call_places_and_answers_a_video_call() {
    let server = Prosody::start().expect("prosody");
    for u in ["alice", "bob"] {
        server.register(u, u).expect("register");
    }
    let mut bob = natter_call(&server, "bob", &["answer", "--tone", "880"])
        .spawn()
        .expect("bob");
    // Bob must be online (presence sent) before the proposal goes to his bare JID.
    let (online_tx, online_rx) = tokio::sync::oneshot::channel();
    let stdout = bob.stdout.take().expect("stdout");
    let bob_out = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut all = String::new();
        let mut online = Some(online_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("online as") {
                if let Some(tx) = online.take() {
                    let _ = tx.send(());
                }
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    tokio::time::timeout(Duration::from_secs(20), online_rx)
        .await
        .expect("bob signs in")
        .expect("bob online");
    let alice = natter_call(
        &server,
        "alice",
        &["call", "bob@localhost", "--video", "--hangup-after", "3"],
    )
    .output()
    .await
    .expect("alice ran");
    let bob_status = tokio::time::timeout(Duration::from_secs(20), bob.wait())
        .await
        .expect("bob exits")
        .expect("bob ran");
    let a = String::from_utf8_lossy(&alice.stdout).into_owned();
    let b = bob_out.await.expect("bob's output");
    assert!(alice.status.success(), "alice: {a}");
    assert!(bob_status.success(), "bob: {b}");
    for (out, heard) in [(&a, "880 Hz"), (&b, "440 Hz")] {
        assert!(out.contains("\nactive\n"), "{out}");
        assert!(out.contains(heard), "{out}");
        assert!(out.contains("x480"), "frames decoded: {out}");
    }
    assert!(a.trim_end().ends_with("ended: success"), "{a}");
    assert!(b.trim_end().ends_with("ended: success, by the peer"), "{b}");
}
