//! The real app in a real window: Xvfb, the harness Prosody, real X input events through
//! xdotool, and a screenshot in target/screenshots/.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use natter_core::store::Store;
use natter_core::Event;
use natter_testkit::{app_env, befriend, init_tracing, prepare_home, Peer, Prosody};

struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        let mut n = 150 + std::process::id() % 300;
        while Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
            n += 1;
        }
        let child = Command::new("Xvfb")
            .arg(format!(":{n}"))
            .args(["-screen", "0", "1024x700x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (make check installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
            assert!(Instant::now() < deadline, "Xvfb did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Xvfb {
            child,
            display: format!(":{n}"),
        }
    }

    fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        let status = Command::new("import")
            .args(["-window", "root"])
            .arg(&path)
            .env("DISPLAY", &self.display)
            .status()
            .expect("import (imagemagick) runs");
        assert!(status.success(), "screenshot taken");
        path
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn signs_in_shows_contacts_and_chats_in_a_real_window() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    server.register("demo", "demo-pw").unwrap();
    server.register("friend", "friend-pw").unwrap();
    let mut setup = server.account("demo");
    setup.resource = "setup".into();
    let mut demo = Peer::start(setup, "demo-pw").await.unwrap();
    let mut friend = Peer::start(server.account("friend"), "friend-pw")
        .await
        .unwrap();
    demo.online().await.expect("demo online");
    friend.online().await.expect("friend online");
    befriend(&mut demo, &mut friend).await.expect("contacts");
    demo.handle
        .rename_contact("friend@localhost", "Friend")
        .await
        .unwrap();
    demo.handle.disconnect().await.unwrap();
    friend
        .handle
        .send_message("demo@localhost", "Hello while you were away")
        .await
        .unwrap();

    let home = tempfile::tempdir().unwrap();
    let mut account = server.account("demo");
    account.resource = "natter".into();
    prepare_home(home.path(), account, "demo-pw").await.unwrap();

    let x = Xvfb::start();
    let app = App(Command::new(env!("CARGO_BIN_EXE_natter"))
        .envs(app_env(home.path()))
        .env("DISPLAY", &x.display)
        .env("GSK_RENDERER", "cairo")
        .env("GSETTINGS_BACKEND", "memory")
        .env("NO_AT_BRIDGE", "1")
        .env("GTK_A11Y", "none")
        .spawn()
        .expect("natter starts"));
    let pid = app.0.id().to_string();
    let mut window = String::new();
    wait_until("the window", Duration::from_secs(30), || {
        window = x.xdotool(&["search", "--onlyvisible", "--pid", &pid]);
        !window.is_empty()
    })
    .await;
    let window = window.lines().next().unwrap_or_default().to_owned();

    // Signed in: the friend sees the app's presence (resource "natter").
    friend
        .wait_for(Duration::from_secs(30), |e| {
            matches!(e, Event::Presence { jid, resource, presence: Some(_) }
                if jid == "demo@localhost" && resource == "natter")
        })
        .await
        .expect("the app signed in");

    // The app caught up with the message sent while it was offline.
    let db = Store::open(home.path().join(".local/share/natter/natter.db"))
        .await
        .unwrap();
    let accounts = db.accounts().await.unwrap();
    let account_id = accounts[0].id;
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.message_count(account_id).await.unwrap() < 1 {
        assert!(Instant::now() < deadline, "offline message not stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Click the contact, type, press Enter: real X events.
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.xdotool(&["mousemove", "--window", &window, "60", "80", "click", "1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.xdotool(&["type", "--delay", "15", "Typed in the window"]);
    x.xdotool(&["key", "Return"]);
    friend
        .received("Typed in the window", Duration::from_secs(20))
        .await
        .expect("the friend receives what was typed");
    friend
        .handle
        .send_message("demo@localhost", "Got it!")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.message_count(account_id).await.unwrap() < 3 {
        assert!(Instant::now() < deadline, "reply not stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shot = x.screenshot("main-window-chat.png");
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));

    // SIGTERM signs off cleanly: the friend sees demo go offline at once, and the app
    // exits normally.
    let mut app = app;
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    friend
        .wait_for(Duration::from_secs(5), |e| {
            matches!(e, Event::Presence { jid, resource, presence: None }
                if jid == "demo@localhost" && resource == "natter")
        })
        .await
        .expect("demo signed off");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Ok(Some(status)) = app.0.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "the app did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "exit status {exit}");
}
