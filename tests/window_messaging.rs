//! Issue 4's messaging features in the real window: delivery ticks, the typing
//! indicator, a correction, a reply, reactions (from the message menu), a retraction and
//! message search, with friend on the other side driven through `crates/core`.
//! Screenshots in target/screenshots/.

mod gui;

use std::time::Duration;

use gui::{wait_until, App, Xvfb};
use natter_core::store::{Message, MessageState, Store};
use natter_core::{ChatState, Event};
use natter_testkit::{befriend, init_tracing, prepare_home, Peer, Prosody};

const T: Duration = Duration::from_secs(30);

fn signed_in_as_app(e: &Event) -> bool {
    matches!(e, Event::Presence { jid, resource, presence: Some(_) }
        if jid == "demo@localhost" && resource != "setup")
}

/// The app's stored copy of the message with this body (from either side).
async fn stored(db: &Store, account_id: i64, body: &str) -> Option<Message> {
    let conversation = db
        .find_conversation(account_id, "friend@localhost".into())
        .await
        .ok()??;
    db.history(conversation, None, 200)
        .await
        .ok()?
        .into_iter()
        .find(|m| m.body == body)
}

async fn wait_stored<F>(db: &Store, account_id: i64, what: &str, mut f: F) -> Vec<Message>
where
    F: FnMut(&[Message]) -> bool,
{
    let deadline = std::time::Instant::now() + T;
    loop {
        let conversation = db
            .find_conversation(account_id, "friend@localhost".into())
            .await
            .unwrap();
        let page = match conversation {
            Some(c) => db.history(c, None, 200).await.unwrap(),
            None => Vec::new(),
        };
        if f(&page) {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {page:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_typing_corrections_replies_reactions_retraction_and_search() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    for (user, pw) in [("demo", "demo-pw"), ("friend", "friend-pw")] {
        server.register(user, pw).unwrap();
    }
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
    // Some history to search through.
    for body in [
        "Did you see the match yesterday?",
        "The bakery on the corner has fresh bread",
        "Remember the lunch with Alex last month?",
    ] {
        friend
            .handle
            .send_message("demo@localhost", body)
            .await
            .unwrap();
    }

    let home = tempfile::tempdir().unwrap();
    let mut account = server.account("demo");
    account.resource = "natter".into();
    prepare_home(home.path(), account, "demo-pw").await.unwrap();
    let x = Xvfb::start();
    let app = App::start(home.path(), &x, &[]);
    let window = app.window(&x).await;
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
    wait_stored(&db, account_id, "the archive", |p| p.len() >= 3).await;
    // The main view is drawn with its icons, all from PNG: no SVG renderer in memory
    // (librsvg and the libraries it brings are 12 MB resident).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !app.maps_library("librsvg"),
        "an icon was drawn from SVG: keep icons at sizes Adwaita ships as PNG (up to 96 px)"
    );

    // Open friend's chat and write.
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.type_text("Shall we have lunch tomorrow?");
    x.key(&["Return"]);
    let asked = friend
        .received("Shall we have lunch tomorrow?", T)
        .await
        .expect("friend got it");
    // friend's client acknowledges receipt on its own (XEP-0184): ✓✓.
    wait_stored(&db, account_id, "delivered", |p| {
        p.iter().any(|m| {
            m.body == "Shall we have lunch tomorrow?" && m.state == MessageState::Delivered
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot("ticks-delivered.png");
    // friend reads the chat: "Read".
    friend.handle.mark_read("demo@localhost").await.unwrap();
    wait_stored(&db, account_id, "read", |p| {
        p.iter()
            .any(|m| m.body == "Shall we have lunch tomorrow?" && m.state == MessageState::Read)
    })
    .await;

    // friend starts typing: the header says so.
    friend
        .handle
        .send_chat_state("demo@localhost", ChatState::Composing);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    x.screenshot("typing.png");

    // friend answers, then corrects its answer (XEP-0308).
    let noon = friend
        .handle
        .send_message("demo@localhost", "Yes! At noon?")
        .await
        .unwrap();
    wait_stored(&db, account_id, "the answer", |p| {
        p.iter().any(|m| m.body == "Yes! At noon?")
    })
    .await;
    friend
        .handle
        .correct_message(noon.id, "Yes! At one?")
        .await
        .unwrap();
    wait_stored(&db, account_id, "the correction", |p| {
        p.iter().any(|m| m.body == "Yes! At one?" && m.edited)
    })
    .await;
    // friend replies to demo's question (XEP-0461) and reacts to it (XEP-0444).
    friend
        .handle
        .reply_to(asked.id, "The usual place")
        .await
        .unwrap();
    friend
        .handle
        .react(asked.id, vec!["👍".into()])
        .await
        .unwrap();
    wait_stored(&db, account_id, "the reply and the reaction", |p| {
        p.iter()
            .any(|m| m.body == "The usual place" && m.quote.is_some())
            && p.iter().any(|m| {
                m.body == "Shall we have lunch tomorrow?"
                    && m.reactions.iter().any(|r| r.emoji == "👍")
            })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("correction-reply-reaction.png");

    // demo reacts to the reply from its menu: right click on the newest message (the
    // reply, at the bottom of the chat), then the first quick reaction.
    x.xdotool(&["mousemove", "--window", &window, "480", "400", "click", "3"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("message-menu.png");
    x.key(&["Return"]);
    friend
        .wait_for(T, |e| {
            matches!(e, Event::MessageChanged(m)
                if m.body == "The usual place" && m.reactions.iter().any(|r| r.senders.iter().any(|s| s == "demo@localhost")))
        })
        .await
        .expect("friend sees demo's reaction");

    // Up in the empty composer edits demo's last message; friend gets the correction.
    // Into the composer (a click), then Up.
    x.xdotool(&["mousemove", "--window", &window, "650", "595", "click", "1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    x.key(&["Up"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    x.key(&["ctrl+a"]);
    x.type_text("Shall we have lunch on Friday?");
    x.key(&["Return"]);
    friend
        .wait_for(T, |e| {
            matches!(e, Event::MessageChanged(m)
                if m.body == "Shall we have lunch on Friday?" && m.edited)
        })
        .await
        .expect("friend sees the correction");

    // friend deletes its corrected answer for everyone (XEP-0424): a tombstone.
    friend.handle.retract_message(noon.id).await.unwrap();
    wait_stored(&db, account_id, "the retraction", |p| {
        p.iter().any(|m| m.retracted && m.body.is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("retraction.png");
    assert!(stored(&db, account_id, "Yes! At one?").await.is_none());

    // Search (Ctrl+Shift+F): "lunch" finds demo's question and the old message, newest
    // first; Down + Enter opens the old one in its context.
    x.key(&["ctrl+shift+f"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    x.type_text("lunch");
    wait_until("search results", T, || {
        app.log_text().contains("search results results=2")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    x.screenshot("search.png");
    let old = stored(&db, account_id, "Remember the lunch with Alex last month?")
        .await
        .expect("the old message");
    x.key(&["Down", "Down", "Return"]);
    wait_until("the old message in its context", T, || {
        app.log_text()
            .contains(&format!("message shown in its context id={}", old.id))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("search-jump.png");
    app.terminate().await;
}
