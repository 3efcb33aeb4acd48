//! The real app in a real window: Xvfb, the harness Prosody, real X input events through
//! xdotool (keyboard first, as a user of the keyboard would), a second account driven
//! through `crates/core` on the other side, and screenshots in target/screenshots/.

mod gui;

use std::time::Duration;

use gui::{wait_until, App, Notifications, SessionBus, Xvfb};
use natter_core::store::Store;
use natter_core::{Availability, Event, PasswordStore, SubscriptionAction};
use natter_testkit::{befriend, init_tracing, prepare_home, Peer, Prosody};

const T: Duration = Duration::from_secs(30);

/// demo and friend are contacts ("Friend"); friend wrote while demo was away.
async fn contacts(server: &Prosody) -> Peer {
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
    friend
}

fn signed_in_as_app(e: &Event) -> bool {
    matches!(e, Event::Presence { jid, resource, presence: Some(_) }
        if jid == "demo@localhost" && resource != "setup")
}

async fn unread(db: &Store, account_id: i64, peer: &str) -> i64 {
    db.conversations(account_id)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.peer == peer)
        .map_or(-1, |c| c.unread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_signs_in_through_the_ui_then_chats() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    for (user, pw) in [
        ("demo", "demo-pw"),
        ("friend", "friend-pw"),
        ("carol", "carol-pw"),
    ] {
        server.register(user, pw).unwrap();
    }
    let mut friend = contacts(&server).await;
    let carol = Peer::start(server.account("carol"), "carol-pw")
        .await
        .unwrap();

    let demo_logins = || {
        server
            .log()
            .matches("Authenticated as demo@localhost")
            .count()
    };
    let logins_before = demo_logins();

    // A first run: no account, an empty keyring.
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join(".local/share/natter");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("keyring-secret"), "gui-test-keyring").unwrap();
    let x = Xvfb::start();
    let app = App::start(home.path(), &x, &[]);
    let _window = app.window(&x).await;
    x.screenshot("signin.png");

    // Address, a wrong password, and the server under "Advanced" (the test server has
    // no DNS records), all from the keyboard.
    x.type_text("demo@localhost");
    x.key(&["Tab"]);
    x.type_text("wrong-password");
    x.key(&["Tab", "Tab", "space"]); // past "show password", open "Advanced"
    tokio::time::sleep(Duration::from_millis(400)).await;
    x.key(&["Tab"]);
    x.type_text("127.0.0.1");
    x.key(&["Tab"]);
    x.type_text(&server.c2s_port.to_string());
    x.key(&["Return"]);

    // The harness CA is not trusted: the app asks, showing the certificate, and does
    // not sign in on its own.
    wait_until("the certificate question", T, || {
        x.windows(app.pid()).len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot("signin-certificate.png");
    assert!(app.log_text().contains("not trusted"), "{}", app.log_text());
    assert_eq!(
        demo_logins(),
        logins_before,
        "no login over an untrusted link"
    );
    // The user reads it and chooses to trust this certificate (Tab to the button).
    x.key(&["Tab", "Return"]);

    // Now the password is the problem, and it is said in words.
    wait_until("the wrong password", T, || {
        app.log_text().contains("rejected the password")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.screenshot("signin-error.png");
    let db = Store::open(data.join("natter.db")).await.unwrap();
    assert!(
        db.accounts().await.unwrap().iter().all(|a| !a.enabled),
        "no account is kept before the server accepted it"
    );

    // Without a window manager nobody gives the focus back after the dialog: do what
    // a window manager does.
    let main = x.windows(app.pid()).into_iter().next().unwrap_or_default();
    x.xdotool(&["windowfocus", "--sync", &main]);
    // The cursor is in the password field: replace it and press Enter.
    x.key(&["ctrl+a"]);
    x.type_text("demo-pw");
    x.key(&["Return"]);
    friend
        .wait_for(T, signed_in_as_app)
        .await
        .expect("the app signed in");
    let deadline = std::time::Instant::now() + T;
    let account = loop {
        if let Some(a) = db.accounts().await.unwrap().into_iter().find(|a| a.enabled) {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "the account is kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(account.jid, "demo@localhost");
    assert!(
        account.pinned_cert.is_some(),
        "the trusted certificate is pinned"
    );
    let keyring = PasswordStore::file(&data.join("natter.keyring"), b"gui-test-keyring")
        .await
        .unwrap();
    assert_eq!(
        keyring.password("demo@localhost").await.unwrap().as_deref(),
        Some("demo-pw"),
        "the password is in the keyring"
    );

    // The message sent while the app was away arrives; carol writes too.
    let deadline = std::time::Instant::now() + T;
    while db.message_count(account.id).await.unwrap() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "offline message not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    carol
        .handle
        .send_message("demo@localhost", "Are you there?")
        .await
        .unwrap();
    wait_until_async("carol's message", || async {
        unread(&db, account.id, "carol@localhost").await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.screenshot("conversations.png");

    // Find the friend with the search box (Ctrl+F), open the chat, write, send.
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.type_text("Typed in the window");
    x.key(&["shift+Return"]);
    x.type_text("on two lines");
    x.key(&["Return"]);
    friend
        .received("Typed in the window\non two lines", T)
        .await
        .expect("the friend receives what was typed, Shift+Enter as a new line");
    friend
        .handle
        .send_message("demo@localhost", "Got it! https://natter.im")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    while db.message_count(account.id).await.unwrap() < 4 {
        assert!(std::time::Instant::now() < deadline, "reply not stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("chat.png");
    // Read where it is open; unread where it is not.
    assert_eq!(unread(&db, account.id, "friend@localhost").await, 0);
    assert_eq!(unread(&db, account.id, "carol@localhost").await, 1);

    // A phone-sized window shows one pane at a time, with a way back.
    x.xdotool(&["windowsize", "--sync", &main, "360", "640"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("narrow-chat.png");
    x.key(&["alt+Left"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("narrow-list.png");
    x.xdotool(&["windowsize", "--sync", &main, "900", "640"]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Removing the account asks first (main menu, F10): cancelling keeps everything.
    x.key(&["F10"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.key(&["Down", "Return"]); // from "Add Account…" to "Remove demo@localhost…"
    wait_until("the removal question", T, || {
        x.windows(app.pid()).len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot("remove-account.png");
    x.key(&["Escape"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        db.accounts().await.unwrap().len(),
        1,
        "cancel keeps the account"
    );
    x.xdotool(&["windowfocus", "--sync", &main]);
    x.key(&["F10"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.key(&["Down", "Return"]);
    wait_until("the removal question", T, || {
        x.windows(app.pid()).len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    x.key(&["Tab", "Return"]); // "Remove"
    wait_until_async("the account removed", || async {
        db.accounts().await.unwrap().is_empty()
    })
    .await;
    wait_until_async("the password out of the keyring", || async {
        let keyring = PasswordStore::file(&data.join("natter.keyring"), b"gui-test-keyring")
            .await
            .unwrap();
        keyring.password("demo@localhost").await.unwrap().is_none()
    })
    .await;
    friend
        .wait_for(
            Duration::from_secs(10),
            |e| matches!(e, Event::Presence { jid, presence: None, .. } if jid == "demo@localhost"),
        )
        .await
        .expect("demo signed off when removed");
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.screenshot("signin-after-removal.png");

    app.terminate().await;
}

fn notification_id(line: &str) -> u64 {
    line.split("\"id\": ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .expect("notification id")
}

async fn wait_until_async<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + T;
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_subscriptions_and_status_in_dark_style() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    for (user, pw) in [
        ("demo", "demo-pw"),
        ("friend", "friend-pw"),
        ("carol", "carol-pw"),
    ] {
        server.register(user, pw).unwrap();
    }
    let mut friend = contacts(&server).await;
    let mut carol = Peer::start(server.account("carol"), "carol-pw")
        .await
        .unwrap();
    carol.online().await.expect("carol online");

    let home = tempfile::tempdir().unwrap();
    let mut account = server.account("demo");
    account.resource = "natter".into();
    prepare_home(home.path(), account, "demo-pw").await.unwrap();
    let bus = SessionBus::start();
    let mut notifications = Notifications::start(&bus);
    let x = Xvfb::start();
    let app = App::start(
        home.path(),
        &x,
        &[
            ("DBUS_SESSION_BUS_ADDRESS", &bus.address),
            ("ADW_DEBUG_COLOR_SCHEME", "prefer-dark"),
        ],
    );
    let _window = app.window(&x).await;
    friend
        .wait_for(T, signed_in_as_app)
        .await
        .expect("the app signed in");
    let db = Store::open(home.path().join(".local/share/natter/natter.db"))
        .await
        .unwrap();
    let account_id = db.accounts().await.unwrap()[0].id;

    // The roster has arrived (names known), and no chat is open: a message from friend
    // notifies, with the name and the text.
    wait_until("the roster", T, || {
        app.log_text()
            .lines()
            .any(|l| l.contains(" roster ") && !l.contains("contacts=0"))
    })
    .await;
    friend
        .handle
        .send_message("demo@localhost", "Ping from the dark")
        .await
        .unwrap();
    let notified = notifications.expect("a notification", T, |l| {
        l.contains("\"Notify\"") && l.contains("Ping from the dark")
    });
    assert!(notified.contains("\"summary\": \"Friend\""), "{notified}");
    // The only row of the list shows the message (it keeps its place: no re-sort
    // rebinds it).
    wait_until("friend's row showing the message", T, || {
        app.log_text().lines().any(|l| {
            l.contains("conversation row shown")
                && l.contains("peer=friend@localhost")
                && l.contains("unread=2")
                && l.contains("Ping from the dark")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot("dark-conversations.png");
    assert_eq!(unread(&db, account_id, "friend@localhost").await, 2);

    // Clicking the notification opens the chat, which reads it.
    let id = notification_id(&notified);
    notifications.invoke(id, "default");
    wait_until_async("the chat read", || async {
        unread(&db, account_id, "friend@localhost").await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.screenshot("dark-chat.png");

    // Start a chat with carol (Ctrl+N); friend writes meanwhile: a new notification,
    // withdrawn as soon as friend's chat is read.
    x.key(&["ctrl+n"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.type_text("carol@localhost");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    friend
        .handle
        .send_message("demo@localhost", "Second ping")
        .await
        .unwrap();
    let second = notifications.expect("a second notification", T, |l| {
        l.contains("\"Notify\"") && l.contains("Second ping")
    });
    let second_id = notification_id(&second);
    let main = x.windows(app.pid()).into_iter().next().unwrap_or_default();
    x.xdotool(&["windowfocus", "--sync", &main]);
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    notifications.expect("the notification withdrawn", T, |l| {
        l.contains("CloseNotification") && l.contains(&format!("\"id\": {second_id}"))
    });
    assert_eq!(unread(&db, account_id, "friend@localhost").await, 0);

    // carol asks to see demo's status: a banner with Accept / Deny; Accept also asks
    // back, as Conversations does.
    carol
        .handle
        .subscription("demo@localhost", SubscriptionAction::Request)
        .await
        .unwrap();
    wait_until("the request banner", T, || {
        app.log_text().contains("subscription request")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("subscription-request.png");
    // The banner's Accept button, at the right end of the banner under the chat header.
    x.xdotool(&[
        "mousemove",
        "--window",
        &x.windows(app.pid())[0],
        "858",
        "72",
        "click",
        "1",
    ]);
    carol
        .wait_for(
            T,
            |e| matches!(e, Event::SubscriptionRequest { from } if from == "demo@localhost"),
        )
        .await
        .expect("demo asks back");
    carol
        .wait_for(T, |e| {
            matches!(e, Event::RosterItem(c) if c.jid == "demo@localhost"
                && (c.subscription == "to" || c.subscription == "both"))
        })
        .await
        .expect("carol may now see demo's status");

    // The status selector: Away, with a status text.
    x.xdotool(&[
        "mousemove",
        "--window",
        &x.windows(app.pid())[0],
        "28",
        "27",
        "click",
        "1",
    ]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.key(&["Down"]); // Away
    x.key(&["space"]);
    x.key(&["Tab"]); // out of the radio group, into the status message
    x.type_text("In a meeting");
    x.key(&["Return"]);
    friend
        .wait_for(T, |e| {
            matches!(e, Event::Presence { jid, presence: Some(p), .. }
                if jid == "demo@localhost" && p.availability == Availability::Away
                    && p.status.as_deref() == Some("In a meeting"))
        })
        .await
        .expect("friend sees demo away, in a meeting");
    x.screenshot("dark-status.png");

    // Offline: a message typed now waits, visibly, and goes out when back online.
    let main = x.windows(app.pid())[0].clone();
    x.xdotool(&["mousemove", "--window", &main, "28", "27", "click", "1"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.key(&["Down", "Down", "Down", "space"]); // Offline
    friend
        .wait_for(
            T,
            |e| matches!(e, Event::Presence { jid, presence: None, .. } if jid == "demo@localhost"),
        )
        .await
        .expect("demo went offline");
    x.key(&["Escape"]);
    x.xdotool(&["windowfocus", "--sync", &main]);
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.type_text("Written while offline");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("dark-offline-pending.png");
    // The banner's "Go Online", at the right of the banner above the conversations.
    x.xdotool(&["mousemove", "--window", &main, "239", "74", "click", "1"]);
    friend
        .received("Written while offline", T)
        .await
        .expect("the queued message goes out once online");

    // Contact details, from the conversation menu.
    x.xdotool(&["mousemove", "--window", &main, "757", "27", "click", "1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.key(&["Return"]);
    wait_until("the contact details", T, || x.windows(app.pid()).len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.screenshot("dark-contact-details.png");
    app.terminate().await;
}
