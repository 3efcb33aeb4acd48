//! XEP-0393 message styling and XEP-0245 "/me" in the real app: a contact (a core
//! session) sends styled messages, the app shows them (screenshots in
//! target/screenshots/, light and dark), notifies a "/me" as "* Friend waves", and sends
//! what is typed as it is.

mod gui;

use std::time::Duration;

use gui::{wait_until, App, Notifications, SessionBus, Xvfb};
use natter_core::store::Store;
use natter_core::Event;
use natter_testkit::{befriend, init_tracing, prepare_home, Peer, Prosody};

const T: Duration = Duration::from_secs(30);

const STYLED: [&str; 4] = [
    "*bold* _italic_ ~strike~ `code` and plain, <b>not markup</b>",
    "> a quoted line with _style_\n>> a nested quote\nmy answer, *bold*",
    "```rust\nfn main() { println!(\"*not bold*\"); }\n```\nafter the block",
    "a star in a link: https://natter.im/a*b*c and *https://natter.im/bold*",
];

/// demo and friend are contacts ("Friend").
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
}

fn signed_in_as_app(e: &Event) -> bool {
    matches!(e, Event::Presence { jid, resource, presence: Some(_) }
        if jid == "demo@localhost" && resource != "setup")
}

/// GTK's complaint about markup it could not parse, in the app's log.
fn bad_markup(log: &str) -> Option<&str> {
    log.lines()
        .find(|l| l.contains("from markup") || l.contains("parsing markup"))
}

async fn wait_for_messages(db: &Store, account_id: i64, n: i64) {
    let deadline = std::time::Instant::now() + T;
    while db.message_count(account_id).await.unwrap() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} messages not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn styled_messages_and_me_actions() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    for (user, pw) in [("demo", "demo-pw"), ("friend", "friend-pw")] {
        server.register(user, pw).unwrap();
    }
    let mut friend = contacts(&server).await;
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
        &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)],
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
    wait_until("the roster", T, || {
        app.log_text()
            .lines()
            .any(|l| l.contains(" roster ") && !l.contains("contacts=0"))
    })
    .await;

    // No chat open: "/me waves" notifies as the contact's action.
    friend
        .handle
        .send_message("demo@localhost", "/me waves")
        .await
        .unwrap();
    let notified = notifications.expect("a notification", T, |l| {
        l.contains("\"Notify\"") && l.contains("waves")
    });
    assert!(
        notified.contains("\"body\": \"* Friend waves\""),
        "{notified}"
    );
    // Only "/me " at the very start is the command.
    friend
        .handle
        .send_message("demo@localhost", "say /me and \"/me\"")
        .await
        .unwrap();
    let plain = notifications.expect("a second notification", T, |l| {
        l.contains("\"Notify\"") && l.contains("say /me")
    });
    assert!(!plain.contains("* Friend"), "{plain}");
    wait_for_messages(&db, account_id, 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    x.screenshot("styling-conversations.png");

    // Open the chat (Ctrl+F, the name, Enter); the friend writes styled messages.
    let main = x.windows(app.pid()).into_iter().next().unwrap_or_default();
    x.xdotool(&["windowfocus", "--sync", &main]);
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for body in STYLED {
        friend
            .handle
            .send_message("demo@localhost", body)
            .await
            .unwrap();
    }
    wait_for_messages(&db, account_id, 2 + STYLED.len() as i64).await;
    // Ours, typed: sent as typed, shown as our action.
    x.type_text("/me nods _slowly_");
    x.key(&["Return"]);
    friend
        .received("/me nods _slowly_", T)
        .await
        .expect("the friend receives the command as typed");
    friend
        .handle
        .send_message("demo@localhost", "/me waves *again*")
        .await
        .unwrap();
    wait_for_messages(&db, account_id, 4 + STYLED.len() as i64).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("styling.png");
    assert_eq!(bad_markup(&app.log_text()), None, "{}", app.log_text());
    app.terminate().await;

    // The same conversation in the dark style.
    let app = App::start(
        home.path(),
        &x,
        &[
            ("DBUS_SESSION_BUS_ADDRESS", &bus.address),
            ("ADW_DEBUG_COLOR_SCHEME", "prefer-dark"),
        ],
    );
    let _window = app.window(&x).await;
    wait_until("the roster again", T, || {
        app.log_text()
            .lines()
            .any(|l| l.contains(" roster ") && !l.contains("contacts=0"))
    })
    .await;
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    wait_until("the chat shown", T, || {
        app.log_text().contains("page put in the model")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    x.screenshot("dark-styling.png");

    // Hostile bodies (60 KB of directives, thousands of quoted lines) are shown without
    // hanging the window: what is typed next still goes out.
    let flood = std::time::Instant::now();
    for body in ["*_~`".repeat(15_000), "> *q*\n".repeat(10_000)] {
        friend
            .handle
            .send_message("demo@localhost", &body)
            .await
            .unwrap();
    }
    wait_for_messages(&db, account_id, 6 + STYLED.len() as i64).await;
    x.type_text("still here");
    x.key(&["Return"]);
    friend
        .received("still here", T)
        .await
        .expect("the window still takes input");
    eprintln!(
        "hostile bodies shown and a reply sent in {:?}",
        flood.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    x.screenshot("dark-styling-hostile.png");
    assert_eq!(bad_markup(&app.log_text()), None, "{}", app.log_text());
    app.terminate().await;
}
