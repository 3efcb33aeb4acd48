//! Messaging features other clients expect, against a real Prosody: carbons (and forged
//! ones), receipts and markers (and reading on another device), corrections,
//! retractions, reactions, replies, chat states, search, and archive catch-up of edits.
//! The other side is a second account driven through `natter-core`; the forgeries come
//! from a raw XMPP stream (`mallory`).

use std::time::Duration;

use natter_core::store::{Direction, MessageState};
use natter_core::{ChatState, Event};
use natter_testkit::{befriend, Peer};

mod common;

use common::{device, iq_raw, raw, send_raw, server};

const T: Duration = Duration::from_secs(20);

fn changed(e: &Event) -> Option<&natter_core::store::Message> {
    match e {
        Event::MessageChanged(m) => Some(m),
        _ => None,
    }
}

#[tokio::test]
async fn carbons_copy_our_other_devices_and_forged_carbons_are_dropped() {
    let p = server(&["demo", "friend", "mallory"]);
    let mut laptop = device(&p, "demo", "laptop").await;
    let mut phone = device(&p, "demo", "phone").await;
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut laptop, &mut friend).await.unwrap();

    // What the laptop sends shows on the phone as ours (a sent carbon).
    laptop
        .handle
        .send_message("friend@localhost", "from the laptop")
        .await
        .unwrap();
    let copy = phone
        .received("from the laptop", T)
        .await
        .expect("sent carbon");
    assert_eq!(copy.direction, Direction::Outgoing);
    assert_eq!(copy.peer, "friend@localhost");
    friend.received("from the laptop", T).await.unwrap();

    // A message to the laptop's full JID reaches the phone as a received carbon.
    let laptop_jid = laptop.online().await.unwrap();
    let mut mallory = raw(&p, "mallory").await;
    send_raw(
        &mut mallory,
        &format!(
            "<message xmlns='jabber:client' type='chat' to='{laptop_jid}' id='m1'>
               <body>to the laptop only</body></message>"
        ),
    )
    .await;
    let copy = phone
        .received("to the laptop only", T)
        .await
        .expect("received carbon");
    assert_eq!(
        (copy.direction, copy.peer.as_str()),
        (Direction::Incoming, "mallory@localhost")
    );

    // Forged carbons: mallory wraps words "from friend" and "from demo" in carbons of
    // its own. Neither is stored (CVE-2017-5589).
    let phone_jid = phone.online().await.unwrap();
    for (kind, from, to) in [
        ("received", "friend@localhost/natter", "demo@localhost"),
        ("sent", "demo@localhost/laptop", "friend@localhost"),
    ] {
        send_raw(
            &mut mallory,
            &format!(
                "<message xmlns='jabber:client' type='chat' to='{phone_jid}'>
                   <{kind} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>
                     <message xmlns='jabber:client' type='chat' from='{from}' to='{to}' id='f-{kind}'>
                       <body>forged {kind}</body></message></forwarded></{kind}></message>"
            ),
        )
        .await;
    }
    send_raw(
        &mut mallory,
        &format!("<message xmlns='jabber:client' type='chat' to='{phone_jid}'><body>after the forgeries</body></message>"),
    )
    .await;
    phone
        .received("after the forgeries", T)
        .await
        .expect("the phone processed the stream past the forgeries");
    phone.drain();
    for peer in ["friend@localhost", "demo@localhost"] {
        let page = phone
            .handle
            .history(peer, None, 50)
            .await
            .unwrap_or_default();
        assert!(
            page.iter().all(|m| !m.body.starts_with("forged")),
            "forged carbon stored in {peer}: {page:?}"
        );
    }
    let friend_page = phone
        .handle
        .history("friend@localhost", None, 50)
        .await
        .unwrap();
    assert_eq!(
        friend_page.len(),
        1,
        "only the real sent carbon: {friend_page:?}"
    );
}

#[tokio::test]
async fn receipts_markers_and_reading_on_another_device() {
    let p = server(&["demo", "friend"]);
    let mut laptop = device(&p, "demo", "laptop").await;
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut laptop, &mut friend).await.unwrap();

    // friend's client sends a receipt by itself: demo's message is delivered.
    let sent = laptop
        .handle
        .send_message("friend@localhost", "did you get this?")
        .await
        .unwrap();
    friend.received("did you get this?", T).await.unwrap();
    laptop
        .wait_for(T, |e| {
            matches!(e, Event::MessageState { id, state: MessageState::Delivered } if *id == sent.id)
        })
        .await
        .expect("delivered (XEP-0184)");
    // friend reads the chat: demo's message is read (XEP-0333).
    friend.handle.mark_read("demo@localhost").await.unwrap();
    laptop
        .wait_for(T, |e| {
            matches!(e, Event::MessageState { id, state: MessageState::Read } if *id == sent.id)
        })
        .await
        .expect("read (XEP-0333 displayed)");
    let stored = laptop.store.message(sent.id).await.unwrap().unwrap();
    assert_eq!(stored.state, MessageState::Read);

    // friend writes; demo reads it on the phone; the laptop's unread count follows.
    let mut phone = device(&p, "demo", "phone").await;
    friend
        .handle
        .send_message("demo@localhost", "new from friend")
        .await
        .unwrap();
    laptop.received("new from friend", T).await.unwrap();
    phone.received("new from friend", T).await.unwrap();
    let unread = |peer: &Peer| {
        let handle = peer.handle.clone();
        async move {
            handle
                .conversations()
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.conversation.peer == "friend@localhost")
                .map(|c| c.conversation.unread)
        }
    };
    assert_eq!(unread(&laptop).await, Some(1));
    phone.handle.mark_read("friend@localhost").await.unwrap();
    laptop
        .wait_for(T, |e| {
            matches!(e, Event::ConversationRead { peer, unread: 0 } if peer == "friend@localhost")
        })
        .await
        .expect("read on the phone, read on the laptop");
    assert_eq!(unread(&laptop).await, Some(0));
}

#[tokio::test]
async fn corrections_retractions_reactions_and_replies_cross_and_only_from_the_sender() {
    let p = server(&["demo", "friend", "mallory"]);
    let mut demo = device(&p, "demo", "natter").await;
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut demo, &mut friend).await.unwrap();

    let helo = demo
        .handle
        .send_message("friend@localhost", "helo")
        .await
        .unwrap();
    let at_friend = friend.received("helo", T).await.unwrap();

    // Correction (XEP-0308).
    let fixed = demo.handle.correct_message(helo.id, "hello").await.unwrap();
    assert!(fixed.edited);
    let seen = friend
        .wait_for(T, |e| {
            changed(e).is_some_and(|m| m.id == at_friend.id && m.edited)
        })
        .await
        .expect("friend sees the correction");
    assert_eq!(changed(&seen).unwrap().body, "hello");

    // Reaction (XEP-0444) from friend on demo's message.
    friend
        .handle
        .react(at_friend.id, vec!["👍".into()])
        .await
        .unwrap();
    let seen = demo
        .wait_for(T, |e| {
            changed(e).is_some_and(|m| m.id == helo.id && !m.reactions.is_empty())
        })
        .await
        .expect("demo sees the reaction");
    let reactions = &changed(&seen).unwrap().reactions;
    assert_eq!(reactions[0].emoji, "👍");
    assert_eq!(reactions[0].senders, ["friend@localhost"]);

    // Reply (XEP-0461): shown with its quote, without the fallback text.
    friend
        .handle
        .reply_to(at_friend.id, "hello to you")
        .await
        .unwrap();
    let reply = demo
        .received("hello to you", T)
        .await
        .expect("reply arrives");
    assert_eq!(reply.reply_to, helo.origin_id);
    assert_eq!(reply.quote.as_ref().map(|q| q.body.as_str()), Some("hello"));

    // mallory tries to correct and retract demo's and friend's messages by their ids.
    let mut mallory = raw(&p, "mallory").await;
    let demo_jid = demo.online().await.unwrap();
    let ids = [
        helo.origin_id.clone().unwrap(),
        reply.origin_id.clone().unwrap(),
    ];
    for id in &ids {
        send_raw(
            &mut mallory,
            &format!(
                "<message xmlns='jabber:client' type='chat' to='{demo_jid}'><body>pwned</body>
                   <replace xmlns='urn:xmpp:message-correct:0' id='{id}'/></message>"
            ),
        )
        .await;
        send_raw(
            &mut mallory,
            &format!(
                "<message xmlns='jabber:client' type='chat' to='{demo_jid}'>
                   <retract xmlns='urn:xmpp:message-retract:1' id='{id}'/></message>"
            ),
        )
        .await;
    }
    // friend cannot correct demo's message either (it is not friend's).
    send_raw(
        &mut mallory,
        &format!("<message xmlns='jabber:client' type='chat' to='{demo_jid}'><body>done</body></message>"),
    )
    .await;
    demo.received("done", T).await.unwrap();
    let page = demo
        .handle
        .history("friend@localhost", None, 10)
        .await
        .unwrap();
    let bodies: Vec<_> = page
        .iter()
        .map(|m| (m.body.as_str(), m.retracted))
        .collect();
    assert_eq!(bodies, [("hello to you", false), ("hello", false)]);

    // Retraction (XEP-0424) by the sender: a tombstone on both sides.
    demo.handle.retract_message(helo.id).await.unwrap();
    let seen = friend
        .wait_for(T, |e| {
            changed(e).is_some_and(|m| m.id == at_friend.id && m.retracted)
        })
        .await
        .expect("friend sees the retraction");
    assert_eq!(changed(&seen).unwrap().body, "");
    // Our own retracted message can be neither corrected nor retracted again.
    assert!(demo.handle.correct_message(helo.id, "back").await.is_err());

    // Search finds what is left, not what was deleted.
    let hits = demo.handle.search("hello", 10).await.unwrap();
    let found: Vec<_> = hits.iter().map(|h| h.message.body.as_str()).collect();
    assert_eq!(found, ["hello to you"]);
}

#[tokio::test]
async fn typing_is_sent_and_shown() {
    let p = server(&["demo", "friend"]);
    let mut demo = device(&p, "demo", "natter").await;
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut demo, &mut friend).await.unwrap();
    demo.handle
        .send_chat_state("friend@localhost", ChatState::Composing);
    friend
        .wait_for(T, |e| {
            matches!(e, Event::ChatState { peer, state: ChatState::Composing } if peer == "demo@localhost")
        })
        .await
        .expect("friend sees demo typing");
    demo.handle
        .send_chat_state("friend@localhost", ChatState::Paused);
    friend
        .wait_for(T, |e| {
            matches!(
                e,
                Event::ChatState {
                    state: ChatState::Paused,
                    ..
                }
            )
        })
        .await
        .expect("paused");
    // A message carries <active/>: typing ends with it.
    demo.handle
        .send_message("friend@localhost", "there")
        .await
        .unwrap();
    friend
        .wait_for(T, |e| {
            matches!(
                e,
                Event::ChatState {
                    state: ChatState::Active,
                    ..
                }
            )
        })
        .await
        .expect("active with the message");
}

#[tokio::test]
async fn archive_catch_up_applies_corrections_made_while_offline() {
    let p = server(&["demo", "friend"]);
    let mut demo = device(&p, "demo", "natter").await;
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut demo, &mut friend).await.unwrap();
    demo.handle
        .send_message("friend@localhost", "before")
        .await
        .unwrap();
    friend.received("before", T).await.unwrap();
    friend.handle.disconnect().await.unwrap();

    let typo = demo
        .handle
        .send_message("friend@localhost", "teh typo")
        .await
        .unwrap();
    demo.acked(typo.id, T).await.unwrap();
    demo.handle
        .correct_message(typo.id, "the typo")
        .await
        .unwrap();
    let gone = demo
        .handle
        .send_message("friend@localhost", "oops")
        .await
        .unwrap();
    demo.acked(gone.id, T).await.unwrap();
    demo.handle.retract_message(gone.id).await.unwrap();
    demo.handle
        .send_message("friend@localhost", "last")
        .await
        .unwrap();

    let mut friend = friend.restart().await.unwrap();
    friend.received("last", T).await.expect("catch-up");
    // Give the corrections (archived before "last") their turn.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = friend
        .handle
        .history("demo@localhost", None, 10)
        .await
        .unwrap();
    let bodies: Vec<_> = page
        .iter()
        .rev()
        .map(|m| (m.body.as_str(), m.edited, m.retracted))
        .collect();
    assert_eq!(
        bodies,
        [
            ("before", false, false),
            ("the typo", true, false),
            ("", false, true),
            ("last", false, false)
        ]
    );
}

async fn unread(peer: &Peer, jid: &str) -> i64 {
    let account_id = peer.store.accounts().await.unwrap()[0].id;
    peer.store
        .conversations(account_id)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.peer == jid)
        .map_or(-1, |c| c.unread)
}

/// XEP-0490: reading a chat on one device marks it read on the others, through our
/// account's PEP node — also for people who are not contacts (no chat markers go to
/// them) and for a device that was offline at the time. Positions from anyone but our
/// own account are ignored.
#[tokio::test]
async fn read_positions_sync_our_devices_for_strangers_and_offline_devices() {
    let p = server(&["demo", "zed", "mallory"]);
    let laptop = device(&p, "demo", "laptop").await;
    let mut phone = device(&p, "demo", "phone").await;
    let zed = device(&p, "zed", "natter").await;
    let mut laptop = laptop;
    for body in ["stranger one", "stranger two"] {
        zed.handle
            .send_message("demo@localhost", body)
            .await
            .unwrap();
    }
    laptop.received("stranger two", T).await.expect("laptop");
    phone.received("stranger two", T).await.expect("phone");
    assert_eq!(unread(&laptop, "zed@localhost").await, 2);

    // The laptop is closed; the phone reads zed's chat (no marker: zed is a stranger).
    laptop.handle.disconnect().await.unwrap();
    // Stored by the server: Prosody keeps each PEP node in its own store.
    let published = || {
        walk(&p.dir().join("data"))
            .iter()
            .any(|f| f.to_string_lossy().contains("mds"))
    };
    assert!(!published());
    phone.handle.mark_read("zed@localhost").await.unwrap();
    let deadline = std::time::Instant::now() + T;
    while !published() {
        assert!(
            std::time::Instant::now() < deadline,
            "no read position stored: {:?}",
            walk(&p.dir().join("data"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The laptop opens again: after its archive catch-up it fetches the positions.
    let mut laptop = laptop.restart().await.unwrap();
    laptop
        .wait_for(
            T,
            |e| matches!(e, Event::ConversationRead { peer, unread: 0 } if peer == "zed@localhost"),
        )
        .await
        .expect("the laptop learns the chat was read");
    assert_eq!(unread(&laptop, "zed@localhost").await, 0);

    // A new message is unread; mallory's forged position for it changes nothing.
    zed.handle
        .send_message("demo@localhost", "stranger three")
        .await
        .unwrap();
    let three = laptop.received("stranger three", T).await.unwrap();
    let sid = three.stanza_id.clone().expect("archived with a stanza-id");
    assert_eq!(unread(&laptop, "zed@localhost").await, 1);
    let laptop_jid = laptop.online().await.unwrap();
    let mut mallory = raw(&p, "mallory").await;
    send_raw(
        &mut mallory,
        &format!(
            "<message xmlns='jabber:client' to='{laptop_jid}'>
               <event xmlns='http://jabber.org/protocol/pubsub#event'>
                 <items node='urn:xmpp:mds:displayed:0'><item id='zed@localhost'>
                   <displayed xmlns='urn:xmpp:mds:displayed:0'>
                     <stanza-id xmlns='urn:xmpp:sid:0' id='{sid}' by='demo@localhost'/>
                   </displayed></item></items></event></message>"
        ),
    )
    .await;
    send_raw(
        &mut mallory,
        &format!("<message xmlns='jabber:client' type='chat' to='{laptop_jid}'><body>after the forged position</body></message>"),
    )
    .await;
    laptop
        .received("after the forged position", T)
        .await
        .expect("the laptop processed the stream past the forgery");
    assert_eq!(unread(&laptop, "zed@localhost").await, 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// XEP-0313 on a fresh device: the whole archive comes, newest first (more pages than
/// one, over an archive stream of its own), with progress events, in the right order;
/// the next start fetches only what is new.
#[tokio::test]
async fn a_fresh_device_fetches_the_whole_archive_newest_first() {
    let p = server(&["demo", "friend", "zed"]);
    let friend = device(&p, "friend", "natter").await;
    let zed = device(&p, "zed", "natter").await;
    // 600 from friend (more than two pages of 250), 20 from zed, demo offline.
    let (mut friend, mut zed) = (friend, zed);
    let mut last = 0;
    for i in 0..600 {
        last = friend
            .handle
            .send_message("demo@localhost", &format!("friend {i:03}"))
            .await
            .unwrap()
            .id;
    }
    // Archived once the server acknowledged it (and so everything before it).
    friend.acked(last, T).await.expect("archived");
    for i in 0..20 {
        last = zed
            .handle
            .send_message("demo@localhost", &format!("zed {i:02}"))
            .await
            .unwrap()
            .id;
    }
    zed.acked(last, T).await.expect("archived");

    let mut demo = device(&p, "demo", "laptop").await;
    let done = demo
        .wait_for(Duration::from_secs(60), |e| {
            matches!(e, Event::HistorySync { done: true, .. })
        })
        .await
        .expect("the sync ends");
    assert!(
        matches!(done, Event::HistorySync { stored: 620, .. }),
        "{done:?}"
    );
    // Progress came page by page before the end.
    let pages = demo
        .seen
        .iter()
        .filter(|e| matches!(e, Event::HistorySync { done: false, .. }))
        .count();
    assert!(pages >= 3, "{pages} progress events");
    // The pages after the first came over an archive stream of its own (signed in once
    // more, without stream management), closed when done.
    let sign_ins = || {
        std::fs::read_to_string(p.dir().join("prosody.log"))
            .unwrap_or_default()
            .matches("Authenticated as demo@localhost")
            .count()
    };
    assert_eq!(sign_ins(), 2, "the main stream and the archive stream");
    let history = demo
        .handle
        .history("friend@localhost", None, 1000)
        .await
        .unwrap();
    let bodies: Vec<&str> = history.iter().rev().map(|m| m.body.as_str()).collect();
    let expected: Vec<String> = (0..600).map(|i| format!("friend {i:03}")).collect();
    assert_eq!(bodies, expected, "all of it, in order");
    assert_eq!(
        demo.handle
            .history("zed@localhost", None, 100)
            .await
            .unwrap()
            .len(),
        20
    );

    // Closed and opened again: only the new message comes.
    let mut demo = demo.restart().await.unwrap();
    assert!(demo.online().await.is_some());
    friend
        .handle
        .send_message("demo@localhost", "after the restart")
        .await
        .unwrap();
    demo.received("after the restart", T).await.unwrap();
    // One page: no second stream for it.
    assert_eq!(sign_ins(), 3);
    let history = demo
        .handle
        .history("friend@localhost", None, 1000)
        .await
        .unwrap();
    assert_eq!(history.len(), 601);
    assert_eq!(history[0].body, "after the restart");
}

/// Our presence goes out at sign-in without caps, and again with them once the history
/// is in: the server's PEP work for every contact (XEP-0163 §4.3) comes after the
/// archive, not during it. Seen from a contact's raw stream.
#[tokio::test]
async fn caps_follow_the_history_sync() {
    use natter_core::disco::own_caps;
    use tokio_xmpp::parsers::caps::Caps;
    use tokio_xmpp::parsers::presence::Type;

    let p = server(&["demo", "friend"]);
    let mut demo = device(&p, "demo", "laptop").await;
    let mut friend = device(&p, "friend", "natter").await;
    befriend(&mut demo, &mut friend).await.expect("befriend");
    demo.handle.disconnect().await.expect("demo signs off");
    // Two pages of history for demo's next device.
    let mut last = 0;
    for i in 0..300 {
        last = friend
            .handle
            .send_message("demo@localhost", &format!("while away {i:03}"))
            .await
            .unwrap()
            .id;
    }
    friend.acked(last, T).await.expect("archived");

    let mut watch = raw(&p, "friend").await;
    send_raw(&mut watch, "<presence xmlns='jabber:client'/>").await;
    let mut demo = device(&p, "demo", "phone").await;
    let own = own_caps();
    let mut first: Option<std::time::Instant> = None;
    let caps = loop {
        let ev = tokio::time::timeout(T, futures::StreamExt::next(&mut watch))
            .await
            .expect("demo's presences come")
            .expect("the stream stays open");
        let tokio_xmpp::stanzastream::Event::Stanza(tokio_xmpp::Stanza::Presence(pres)) = ev else {
            continue;
        };
        let from_phone = pres
            .from
            .as_ref()
            .is_some_and(|f| f.to_string() == "demo@localhost/phone");
        if !from_phone || pres.type_ != Type::None {
            continue;
        }
        let caps = pres
            .payloads
            .iter()
            .find_map(|e| Caps::try_from(e.clone()).ok());
        match (first, caps) {
            (None, caps) => {
                assert!(caps.is_none(), "the first presence has no caps: {caps:?}");
                first = Some(std::time::Instant::now());
            }
            (Some(_), Some(caps)) => break caps,
            (Some(_), None) => {}
        }
    };
    assert_eq!(
        (caps.node.as_str(), &caps.hash),
        (own.node.as_str(), &own.hash)
    );
    // Well before the longest hold (20 s): it was the end of the sync that sent them.
    let held = first.map(|t| t.elapsed()).unwrap_or_default();
    assert!(held < Duration::from_secs(10), "caps after {held:?}");
    // By then the whole history is stored and the sync has said it is over.
    assert_eq!(
        demo.handle
            .history("friend@localhost", None, 1000)
            .await
            .unwrap()
            .len(),
        300
    );
    demo.wait_for(Duration::from_millis(1), |e| {
        matches!(e, Event::HistorySync { done: true, .. })
    })
    .await
    .expect("the sync ended before the caps went out");
}

/// A burst of disco#info queries (what a PEP service asks on behalf of every contact once
/// our presence has caps): once the server has taken all our answers, the app hears
/// `Settled` (and gives memory back). A few queries are no burst.
#[tokio::test]
async fn a_burst_of_answers_ends_settled() {
    let p = server(&["demo", "mallory"]);
    let mut demo = device(&p, "demo", "laptop").await;
    let mut mallory = raw(&p, "mallory").await;
    // One at a time: the raw stream's event queue is short, and a stream whose events
    // are not read stops reading (acknowledgements included).
    let mut ask = async |from: usize, to: usize| {
        for i in from..to {
            let id = format!("d{i}");
            iq_raw(
                &mut mallory,
                &format!(
                    "<iq xmlns='jabber:client' type='get' id='{id}' to='demo@localhost/laptop'>\
                     <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
                ),
                &id,
            )
            .await;
        }
    };
    let settled = |e: &Event| matches!(e, Event::Settled);
    ask(0, 5).await;
    assert!(
        demo.wait_for(Duration::from_secs(3), settled)
            .await
            .is_none(),
        "five answers are no burst"
    );
    ask(5, 30).await;
    demo.wait_for(T, settled)
        .await
        .expect("the burst is over once the server took every answer");
}
