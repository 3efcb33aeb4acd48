//! Opening a big conversation in the real window, and scrolling it (the chat-window
//! issue's budget: the newest page of a 100 000-message conversation on screen in under
//! 50 ms; scrolling stays smooth).
//!
//! The app runs under Xvfb (cairo renderer) with a store holding 100 000 messages with
//! `friend` (plus a small second conversation to switch to). Each "open" is Ctrl+F,
//! the name, Enter: the app logs (target `natter::perf`) the time from the activation of
//! the row to the end of the first frame that shows the newest page. Scrolling is 300
//! mouse-wheel steps up over the chat, 60 per second, loading older pages as it goes;
//! with `NATTER_PERF=1` the app logs each frame's time from layout start to paint end.
//!
//! `cargo bench -p natter --bench chat_window` runs the full measurement (release build,
//! 100 000 messages, 15 opens); without `--bench` (as `cargo test --all-targets` runs it)
//! a smoke version (2 000 messages, 3 opens, 30 steps) keeps it working; its figures mean
//! nothing.

#[path = "../tests/gui/mod.rs"]
mod gui;

use std::time::{Duration, Instant};

use gui::{App, Xvfb};
use natter_core::store::{Direction, MessageState, NewMessage, Placement, Store};
use natter_testkit::{init_tracing, prepare_home, Prosody};

struct Plan {
    full: bool,
    messages: usize,
    opens: usize,
    wheel_steps: usize,
}

const FULL: Plan = Plan {
    full: true,
    messages: 100_000,
    opens: 15,
    wheel_steps: 300,
};

const SMOKE: Plan = Plan {
    full: false,
    messages: 2_000,
    opens: 3,
    wheel_steps: 30,
};

const BUDGET_OPEN_MS: f64 = 50.0;

fn main() {
    let plan = if std::env::args().skip(1).any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(plan));
}

fn figures(log: &str, key: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let at = l.find(&format!("{key}="))?;
            let rest = &l[at + key.len() + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect()
}

/// Where the time of the big opens goes, as medians in ms (the first, cold open left
/// out): the app logs, at debug level, when the page arrived, how long putting it in the
/// list took, and when the first frame started, finished its layout and its painting.
fn breakdown(log: &str) -> String {
    const STEPS: [&str; 5] = [
        "history page arrived",
        "page put in the model",
        "frame start",
        "layout done",
        "paint done",
    ];
    let mut opens: Vec<[f64; 5]> = Vec::new();
    let mut current = [f64::NAN; 5];
    for l in log.lines() {
        if l.contains("open handled") {
            current = [f64::NAN; 5];
        }
        if let Some(i) = STEPS.iter().position(|s| l.contains(s)) {
            current[i] = figures(l, "ms").first().copied().unwrap_or(f64::NAN);
        }
        if l.contains("conversation shown") && figures(l, "messages").first() > Some(&10.0) {
            opens.push(current);
        }
    }
    let median = |f: &dyn Fn(&[f64; 5]) -> f64| {
        let mut v: Vec<f64> = opens
            .iter()
            .skip(1)
            .map(f)
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    format!(
        "page arrived {:.1}, into the list {:.1}, wait for a frame {:.1}, layout {:.1}, paint {:.1} (medians, ms)",
        median(&|o| o[0]),
        median(&|o| o[1]),
        median(&|o| o[2] - o[0] - o[1]),
        median(&|o| o[3] - o[2]),
        median(&|o| o[4] - o[3]),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(plan: Plan) {
    let server = Prosody::start().expect("prosody");
    server.register("demo", "demo-pw").expect("demo");
    server.register("friend", "friend-pw").expect("friend");
    let home = tempfile::tempdir().expect("home");
    let mut account = server.account("demo");
    account.resource = "natter".into();
    prepare_home(home.path(), account, "demo-pw")
        .await
        .expect("home");
    let store = Store::open(home.path().join(".local/share/natter/natter.db"))
        .await
        .expect("store");
    let account_id = store.accounts().await.expect("accounts")[0].id;
    let start = chrono_ms() - plan.messages as i64 * 60_000;
    let filled = Instant::now();
    for chunk in (0..plan.messages).collect::<Vec<_>>().chunks(5_000) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let incoming = i % 3 != 0;
                NewMessage {
                    account_id,
                    peer: "friend@localhost".into(),
                    direction: if incoming {
                        Direction::Incoming
                    } else {
                        Direction::Outgoing
                    },
                    sender: if incoming {
                        "friend@localhost".into()
                    } else {
                        "demo@localhost".into()
                    },
                    body: format!(
                        "Message {i}: some text of a usual length, with a link https://natter.im/{i}"
                    ),
                    timestamp: start + i as i64 * 60_000,
                    state: if incoming {
                        MessageState::Received
                    } else {
                        MessageState::Acked
                    },
                    origin_id: Some(format!("bench-{i}")),
                    stanza_id: None,
                    placement: Placement::Append,
                    reply_to: None,
                }
            })
            .collect();
        store.insert_messages(batch).await.expect("insert");
    }
    let mut other = NewMessage {
        account_id,
        peer: "zoe@localhost".into(),
        direction: Direction::Incoming,
        sender: "zoe@localhost".into(),
        body: "A small conversation to switch to".into(),
        timestamp: start,
        state: MessageState::Received,
        origin_id: Some("zoe-1".into()),
        stanza_id: None,
        placement: Placement::Append,
        reply_to: None,
    };
    store.insert_message(other.clone()).await.expect("insert");
    other.origin_id = Some("zoe-2".into());
    store.insert_message(other).await.expect("insert");
    drop(store);
    eprintln!(
        "stored {} messages with friend in {:.1} s",
        plan.messages,
        filled.elapsed().as_secs_f64()
    );

    let x = Xvfb::start();
    let app = App::start(
        home.path(),
        &x,
        &[
            ("NATTER_PERF", "1"),
            ("RUST_LOG", "natter=info,natter::perf=debug"),
        ],
    );
    let window = app.window(&x).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Open friend's conversation, then zoe's, again and again.
    for round in 0..plan.opens {
        for name in ["friend", "zoe"] {
            x.key(&["ctrl+f"]);
            x.type_text(name);
            x.key(&["Return"]);
            tokio::time::sleep(Duration::from_millis(700)).await;
            if round == 0 && name == "friend" {
                x.screenshot("bench-chat-100k.png");
            }
        }
    }
    let log = app.log_text();
    if std::env::var_os("NATTER_BENCH_VERBOSE").is_some() {
        for l in log.lines().filter(|l| l.contains("natter::perf")) {
            eprintln!("{l}");
        }
    }
    let opens: Vec<(f64, f64)> = log
        .lines()
        .filter(|l| l.contains("conversation shown"))
        .filter_map(|l| {
            let ms = figures(l, "ms").first().copied()?;
            let n = figures(l, "messages").first().copied()?;
            Some((ms, n))
        })
        .collect();
    // Friend's opens are the big ones (zoe has 2 messages).
    let mut big: Vec<f64> = opens
        .iter()
        .filter(|(_, n)| *n > 10.0)
        .map(|(ms, _)| *ms)
        .collect();
    assert!(
        big.len() >= plan.opens,
        "each open was measured: {opens:?}\n{log}"
    );
    let split = breakdown(&log);
    // The first open is cold (fonts, the first ListView): shown on its own.
    let cold = big.remove(0);
    big.sort_by(f64::total_cmp);

    // Scroll friend's conversation up with the mouse wheel.
    x.key(&["ctrl+f"]);
    x.type_text("friend");
    x.key(&["Return"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = app.log_text().len();
    x.xdotool(&["mousemove", "--window", &window, "600", "300"]);
    let scrolled = Instant::now();
    x.xdotool(&[
        "click",
        "--repeat",
        &plan.wheel_steps.to_string(),
        "--delay",
        "16",
        "4",
    ]);
    let scroll_s = scrolled.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    x.screenshot("bench-chat-scrolled.png");
    let scroll_log = app.log_text()[before..].to_owned();
    if std::env::var_os("NATTER_BENCH_VERBOSE").is_some() {
        for l in scroll_log.lines().filter(|l| l.contains("natter::perf")) {
            eprintln!("scrolling: {l}");
        }
    }
    let mut frames = figures(&scroll_log, "frame_ms");
    frames.sort_by(f64::total_cmp);
    let pages = scroll_log.matches("older page").count();
    let over_16 = frames.iter().filter(|f| **f > 16.7).count();
    app.terminate().await;

    let median = percentile(&big, 0.5);
    println!();
    println!(
        "Chat window ({} build, {} messages in the conversation, Xvfb + cairo, {} cores)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        plan.messages,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  open → newest page on screen: median {median:.1} ms, p90 {:.1} ms, max {:.1} ms over {} opens (cold first open {cold:.1} ms)",
        percentile(&big, 0.9),
        big.last().copied().unwrap_or(f64::NAN),
        big.len()
    );
    println!("    {split}");
    println!(
        "  scrolling up {} wheel steps in {scroll_s:.1} s: {} frames, frame time p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; {over_16} frames over 16.7 ms; {pages} older pages loaded",
        plan.wheel_steps,
        frames.len(),
        percentile(&frames, 0.5),
        percentile(&frames, 0.95),
        frames.last().copied().unwrap_or(f64::NAN),
    );
    assert!(!frames.is_empty(), "frames were measured while scrolling");
    if plan.full {
        println!(
            "  budget: open ≤ {BUDGET_OPEN_MS} ms — {}",
            if median <= BUDGET_OPEN_MS {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
