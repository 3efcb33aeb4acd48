//! Avatars in the real window: friend and demo published pictures (XEP-0084) before the
//! app starts; the app fetches, verifies and caches them and shows them in the
//! conversation list, the chat header and the own-status button.
//! Screenshot: target/screenshots/avatars.png.

mod gui;

use std::time::Duration;

use gui::{App, Xvfb};
use natter_testkit::{befriend, init_tracing, prepare_home, Peer, Prosody};
use relm4::gtk::gdk_pixbuf::{Colorspace, Pixbuf};
use sha1::{Digest, Sha1};

const T: Duration = Duration::from_secs(30);

/// A square picture: `outer` with an `inner` square in the middle (easy to recognise
/// in a screenshot, and to tell from initials on a colour).
fn picture(outer: u32, inner: u32) -> Vec<u8> {
    let p = Pixbuf::new(Colorspace::Rgb, false, 8, 96, 96).unwrap();
    p.fill(outer);
    p.new_subpixbuf(28, 28, 40, 40).fill(inner);
    p.save_to_bufferv("png", &[]).unwrap()
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avatars_show_in_the_list_and_the_chat_header() {
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
    let friends = picture(0xff7800ff, 0xffffffff);
    let demos = picture(0x26a269ff, 0xf6d32dff);
    friend
        .handle
        .set_avatar(friends.clone(), "image/png")
        .await
        .expect("friend's avatar");
    demo.handle
        .set_avatar(demos.clone(), "image/png")
        .await
        .expect("demo's avatar");
    demo.handle.disconnect().await.unwrap();
    friend
        .handle
        .send_message("demo@localhost", "Look, a picture")
        .await
        .unwrap();

    let home = tempfile::tempdir().unwrap();
    let mut account = server.account("demo");
    account.resource = "natter".into();
    prepare_home(home.path(), account, "demo-pw").await.unwrap();
    let x = Xvfb::start();
    let app = App::start(home.path(), &x, &[]);
    let _window = app.window(&x).await;

    // The app's session fetches both pictures into its cache (verified by SHA-1).
    let cache = home.path().join(".cache/natter/avatars");
    for (who, bytes) in [("friend", &friends), ("demo", &demos)] {
        let file = cache.join(sha1_hex(bytes));
        let deadline = std::time::Instant::now() + T;
        while !std::fs::read(&file).is_ok_and(|b| &b == bytes) {
            assert!(
                std::time::Instant::now() < deadline,
                "{who}'s avatar in the cache; log: {}",
                app.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Open friend's chat (Ctrl+F, the name, Enter): list row, header and own status
    // all show pictures instead of initials.
    tokio::time::sleep(Duration::from_millis(800)).await;
    x.key(&["ctrl+f"]);
    x.type_text("Friend");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let shot = x.screenshot("avatars.png");
    let image = Pixbuf::from_file(&shot).expect("screenshot");
    // Friend's orange is on screen in several places (the list row and the header);
    // before avatars nothing in the window was this colour.
    let orange = count_colour(&image, (0xff, 0x78, 0x00));
    let green = count_colour(&image, (0x26, 0xa2, 0x69));
    assert!(
        orange > 2 * 300,
        "friend's picture shown twice: {orange} px"
    );
    assert!(green > 100, "our own picture shown: {green} px");
    app.terminate().await;
}

/// Pixels of exactly this colour (give or take rounding).
fn count_colour(p: &Pixbuf, rgb: (u8, u8, u8)) -> usize {
    let bytes = p.read_pixel_bytes();
    let (n, stride) = (p.n_channels() as usize, p.rowstride() as usize);
    let mut count = 0;
    for y in 0..p.height() as usize {
        for x in 0..p.width() as usize {
            let i = y * stride + x * n;
            let near = |a: u8, b: u8| a.abs_diff(b) <= 3;
            if near(bytes[i], rgb.0) && near(bytes[i + 1], rgb.1) && near(bytes[i + 2], rgb.2) {
                count += 1;
            }
        }
    }
    count
}
