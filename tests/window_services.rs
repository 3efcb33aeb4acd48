//! Blocking in the real app: the conversation menu's "Block Contact…" asks first (with
//! a spam report check), the blocked chat says so and offers "Unblock"; against the
//! harness Prosody, with the contact driven through `crates/core`.

mod gui;

use std::time::Duration;

use gui::{wait_until, App, Xvfb};
use natter_core::store::MessageState;
use natter_core::Event;
use natter_testkit::{befriend, init_tracing, prepare_home, Peer, Prosody};

const T: Duration = Duration::from_secs(30);

fn signed_in_as_app(e: &Event) -> bool {
    matches!(e, Event::Presence { jid, resource, presence: Some(_) }
        if jid == "demo@localhost" && resource == "natter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_with_report_then_unblock() {
    init_tracing();
    let server = Prosody::start().expect("prosody");
    for (user, pw) in [
        ("demo", "demo-pw"),
        ("friend", "friend-pw"),
        ("carol", "carol-pw"),
    ] {
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
    friend
        .handle
        .send_message("demo@localhost", "Cheap watches, click here")
        .await
        .unwrap();

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
    wait_until("the roster", T, || {
        app.log_text()
            .lines()
            .any(|l| l.contains(" roster ") && !l.contains("contacts=0"))
    })
    .await;

    // Open Friend's chat, then the conversation menu (⋮): Block Contact… is third.
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.xdotool(&["mousemove", "--window", &window, "757", "27", "click", "1"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot("block-menu.png");
    x.key(&["Down", "Down", "Return"]);
    wait_until("the block question", T, || x.windows(app.pid()).len() >= 2).await;
    // Tick "Report as spam" (its mnemonic), look, then Block (its mnemonic).
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.key(&["alt+r"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot("block-dialog.png");
    x.key(&["alt+b"]);

    // The server took the block with its report; friend's messages bounce.
    wait_until("the report", T, || {
        server
            .log()
            .contains("natter-report from=demo@localhost/natter jid=friend@localhost reason=urn:xmpp:reporting:spam")
    })
    .await;
    // XEP-0191 §3.3: the blocked contact sees us go offline.
    friend
        .wait_for(T, |e| {
            matches!(e, Event::Presence { jid, resource, presence: None }
                if jid == "demo@localhost" && resource == "natter")
        })
        .await
        .expect("the blocked contact no longer sees us");
    let bounced = friend
        .handle
        .send_message("demo@localhost", "Are you there?")
        .await
        .unwrap();
    friend
        .wait_for(T, |e| {
            matches!(e, Event::MessageState { id, state: MessageState::Failed } if *id == bounced.id)
        })
        .await
        .expect("a blocked contact's message is refused");
    assert!(
        friend
            .seen
            .iter()
            .all(|e| !matches!(e, Event::MessageState { id, state: MessageState::Delivered } if *id == bounced.id)),
        "never delivered"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("blocked-chat.png");

    // "Unblock" on the bar (at its right end, under the chat header): friend gets
    // through again.
    x.xdotool(&["mousemove", "--window", &window, "835", "77", "click", "1"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = friend
        .handle
        .send_message("demo@localhost", "Sorry about that")
        .await
        .unwrap();
    let outcome = friend
        .wait_for(T, |e| {
            matches!(e, Event::MessageState { id, state: MessageState::Delivered | MessageState::Failed } if *id == again.id)
        })
        .await;
    assert!(
        matches!(
            outcome,
            Some(Event::MessageState {
                state: MessageState::Delivered,
                ..
            })
        ),
        "unblocked: messages are delivered again ({outcome:?})"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.screenshot("unblocked-chat.png");

    // A stranger asks to be a contact: the request banner offers Block too.
    let mut stranger = Peer::start(server.account("carol"), "carol-pw")
        .await
        .unwrap();
    stranger.online().await.expect("carol online");
    stranger
        .handle
        .subscription("demo@localhost", natter_core::SubscriptionAction::Request)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    x.screenshot("block-request-banner.png");
    // Its Block asks first too; blocking refuses the request and stops the stranger.
    x.xdotool(&["mousemove", "--window", &window, "678", "77", "click", "1"]);
    wait_until("the block question", T, || x.windows(app.pid()).len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.key(&["alt+b"]);
    // (The stranger never saw our presence, so there is no "gone offline" to wait for.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spam = stranger
        .handle
        .send_message("demo@localhost", "Hello? Hello?")
        .await
        .unwrap();
    stranger
        .wait_for(T, |e| {
            matches!(e, Event::MessageState { id, state: MessageState::Failed } if *id == spam.id)
        })
        .await
        .expect("the stranger is blocked from the banner");
    app.terminate().await;
}
