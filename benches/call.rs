//! End-to-end call figures between two Natter sessions in this process, through the
//! harness Prosody on loopback (the budgets):
//!
//! 1. **Accept → first decoded audio**: from just before the callee's
//!    `call_action(sid, CallAction::Accept)` to the moment each side's Opus decoder put
//!    out its first buffer (`StreamStats::first_decoded_at`, stamped by a pad probe in
//!    natter-media), for the caller and the callee, and the later of the two (the
//!    figure the budget applies to, ≤ 300 ms). Accept → `Active` (ICE and DTLS done) is
//!    shown too, so the signalling/transport part and the media part can be told apart.
//!    One Prosody and the same two signed-in peers for every call; each call is hung up
//!    and `Ended` on both sides before the next one. A first, cold call (GStreamer's
//!    first pipeline in the process) is shown on its own and left out of the statistics.
//! 2. **CPU per second of call**: an audio-only call, and a 640×480 30 fps VP8 + Opus
//!    call (test sources), each measured over a steady window once media flows both ways:
//!    this process's user + system CPU time (`getrusage(RUSAGE_SELF)`, so Prosody is not
//!    counted) divided by wall time; both peers live in this process, so per peer is half
//!    of it, in % of one core (budget for audio: ≤ 5 %). The same for both peers signed in
//!    and idle, as the floor the calls sit on.
//!
//! `cargo bench -p natter --bench call` runs the full measurement (20 calls, 10 s
//! windows). Without `--bench` (as `cargo test --all-targets` runs it) it runs a smoke
//! version, one audio call and a 1 s window, to keep the target working; those figures
//! mean nothing (debug build, one sample).

use std::time::{Duration, Instant};

use natter_core::calls::{CallState, ContentStats};
use natter_core::{CallAction, CallUpdate, Event};
use natter_jingle::MediaKind;
use natter_testkit::{init_tracing, test_call_settings, Peer, Prosody};

struct Plan {
    full: bool,
    /// Measured calls for accept → first audio (after one cold call).
    calls: usize,
    /// Steady window for the CPU figures.
    window: Duration,
    /// Media must flow this long before the CPU window opens (encoder start-up, key
    /// frames, rate control settling).
    settle: Duration,
    video: bool,
}

const FULL: Plan = Plan {
    full: true,
    calls: 20,
    window: Duration::from_secs(10),
    settle: Duration::from_secs(2),
    video: true,
};

const SMOKE: Plan = Plan {
    full: false,
    calls: 0,
    window: Duration::from_secs(1),
    settle: Duration::from_millis(200),
    video: false,
};

const BUDGET_FIRST_AUDIO: Duration = Duration::from_millis(300);
const BUDGET_AUDIO_CPU_PERCENT: f64 = 5.0;
const STEP: Duration = Duration::from_millis(2);

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

async fn run(plan: Plan) {
    let started = Instant::now();
    print_machine(plan.full);
    let server = Prosody::start().expect("prosody");
    for (user, pw) in [("alice", "alice"), ("bob", "bob")] {
        server.register(user, pw).expect("register");
    }
    // What a call costs in the app: the test sources, but no spectrum analysis (tests
    // use it to check the tone; the first decoded audio is stamped without it).
    let settings = |freq| {
        let mut s = test_call_settings(freq);
        s.media.analyse_audio = false;
        s
    };
    let mut alice = Peer::start_with_calls(server.account("alice"), "alice", settings(440.0))
        .await
        .expect("alice");
    let mut bob = Peer::start_with_calls(server.account("bob"), "bob", settings(880.0))
        .await
        .expect("bob");
    alice.online().await.expect("alice online");
    bob.online().await.expect("bob online");
    let mut peers = Peers {
        alice: &mut alice,
        bob: &mut bob,
    };

    // 1. Accept → first decoded audio.
    let cold = peers.setup(false).await;
    peers.hang_up(&cold.sid).await;
    let mut samples = Vec::new();
    for _ in 0..plan.calls {
        let s = peers.setup(false).await;
        peers.hang_up(&s.sid).await;
        samples.push(s);
    }
    print_setup(&cold, &samples);

    // 2. CPU per second of call.
    let load_before = loadavg();
    let idle = if plan.full {
        Some(cpu_over(plan.window).await)
    } else {
        None
    };
    let audio = peers.cpu_of_call(false, &plan).await;
    let video = if plan.video {
        Some(peers.cpu_of_call(true, &plan).await)
    } else {
        None
    };
    print_cpu(idle.as_ref(), &audio, video.as_ref(), &plan, &load_before);
    println!("(total run time {:.1} s)", started.elapsed().as_secs_f64());
}

struct Peers<'a> {
    alice: &'a mut Peer,
    bob: &'a mut Peer,
}

/// One call from placing it to media on both sides; times from just before Accept.
struct Setup {
    sid: String,
    /// [caller, callee]
    active: [Duration; 2],
    first_audio: [Duration; 2],
}

impl Setup {
    fn both(&self) -> Duration {
        self.first_audio[0].max(self.first_audio[1])
    }
}

impl Peers<'_> {
    /// alice calls bob; bob accepts once alice sees it ringing; returns when both sides
    /// decoded their first audio (and, for video, their first frame).
    async fn setup(&mut self, video: bool) -> Setup {
        self.alice.seen.clear();
        self.bob.seen.clear();
        let sid = self
            .alice
            .handle
            .place_call("bob@localhost", video)
            .await
            .expect("place call");
        let incoming = self
            .bob
            .wait_for(
                Duration::from_secs(10),
                |e| matches!(e, Event::Call(CallUpdate::Incoming { sid: s, .. }) if *s == sid),
            )
            .await;
        assert!(incoming.is_some(), "bob got no call: {:?}", self.bob.seen);
        wait_state(self.alice, &sid, |s| *s == CallState::Ringing).await;
        // Let the ringing stanzas settle: nothing in flight when the user answers.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let accepted = Instant::now();
        self.bob
            .handle
            .call_action(&sid, CallAction::Accept)
            .await
            .expect("accept");
        let mut active: [Option<Instant>; 2] = [None, None];
        let mut first: [Option<Instant>; 2] = [None, None];
        let deadline = accepted + Duration::from_secs(30);
        loop {
            for (i, peer) in [&mut *self.alice, &mut *self.bob].into_iter().enumerate() {
                while let Ok(ev) = peer.events.try_recv() {
                    if let Event::Call(CallUpdate::State { sid: s, state }) = &ev.event {
                        if *s == sid && *state == CallState::Active && active[i].is_none() {
                            active[i] = Some(Instant::now());
                        }
                        assert!(
                            *s != sid || !matches!(state, CallState::Ended(_)),
                            "call ended while setting up: {state:?}"
                        );
                    }
                    peer.seen.push(ev.event);
                }
                if active[i].is_some() && first[i].is_none() {
                    let stats = peer.handle.call_stats(&sid).await.unwrap_or_default();
                    let decoded = |kind: MediaKind| {
                        stats
                            .iter()
                            .find(|c| c.kind == kind)
                            .and_then(|c| c.stats.first_decoded_at)
                    };
                    let audio = decoded(MediaKind::Audio);
                    if !video || decoded(MediaKind::Video).is_some() {
                        first[i] = audio;
                    }
                }
            }
            if first.iter().all(Option::is_some) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no media 30 s after accepting: active {active:?}, first {first:?}"
            );
            tokio::time::sleep(STEP).await;
        }
        let since = |t: [Option<Instant>; 2]| {
            t.map(|t| t.map_or(Duration::ZERO, |t| t.saturating_duration_since(accepted)))
        };
        Setup {
            sid,
            active: since(active),
            first_audio: since(first),
        }
    }

    async fn hang_up(&mut self, sid: &str) {
        self.alice
            .handle
            .call_action(sid, CallAction::HangUp)
            .await
            .expect("hang up");
        for peer in [&mut *self.alice, &mut *self.bob] {
            wait_state(peer, sid, |s| matches!(s, CallState::Ended(_))).await;
        }
    }

    /// CPU of one call once its media flows steadily, checked to keep flowing.
    async fn cpu_of_call(&mut self, video: bool, plan: &Plan) -> Cpu {
        let setup = self.setup(video).await;
        let sid = setup.sid.clone();
        tokio::time::sleep(plan.settle).await;
        let before = self.stats(&sid).await;
        // Nothing else runs meanwhile: no polling inside the window.
        let cpu = cpu_over(plan.window).await;
        let after = self.stats(&sid).await;
        let mut flow = Flow {
            tone_heard: true,
            ..Flow::default()
        };
        for (b, a) in before.iter().zip(&after) {
            for (cb, ca) in b.iter().zip(a) {
                let secs = cpu.wall.as_secs_f64();
                match ca.kind {
                    MediaKind::Audio => {
                        flow.audio_pps.push(
                            (ca.stats.packets_received - cb.stats.packets_received) as f64 / secs,
                        );
                        flow.tone_heard &= ca.stats.rms_db.is_some_and(|db| db > -40.0);
                    }
                    MediaKind::Video => {
                        flow.fps.push(
                            (ca.stats.frames_decoded - cb.stats.frames_decoded) as f64 / secs,
                        );
                        flow.video_kbps.push(
                            (ca.stats.bytes_received - cb.stats.bytes_received) as f64 * 8.0
                                / 1000.0
                                / secs,
                        );
                    }
                }
            }
        }
        self.hang_up(&sid).await;
        Cpu {
            flow: Some(flow),
            ..cpu
        }
    }

    /// [caller's contents, callee's contents]
    async fn stats(&self, sid: &str) -> [Vec<ContentStats>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        for (i, peer) in [&*self.alice, &*self.bob].into_iter().enumerate() {
            let mut s = peer.handle.call_stats(sid).await.expect("call stats");
            s.sort_by_key(|c| c.content.clone());
            out[i] = s;
        }
        out
    }
}

async fn wait_state(peer: &mut Peer, sid: &str, want: impl Fn(&CallState) -> bool) {
    let ev = peer
        .wait_for(Duration::from_secs(20), |e| {
            matches!(e, Event::Call(CallUpdate::State { sid: s, state }) if s == sid && want(state))
        })
        .await;
    assert!(ev.is_some(), "call state not reached; seen {:?}", peer.seen);
}

#[derive(Default)]
struct Flow {
    audio_pps: Vec<f64>,
    tone_heard: bool,
    fps: Vec<f64>,
    video_kbps: Vec<f64>,
}

struct Cpu {
    wall: Duration,
    cpu: Duration,
    flow: Option<Flow>,
}

impl Cpu {
    /// Per peer, in % of one core.
    fn per_peer_percent(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64() / 2.0 * 100.0
    }
}

/// This process's CPU time over `window` of doing nothing but wait.
async fn cpu_over(window: Duration) -> Cpu {
    let (wall0, cpu0) = (Instant::now(), process_cpu());
    tokio::time::sleep(window).await;
    let (wall1, cpu1) = (Instant::now(), process_cpu());
    Cpu {
        wall: wall1 - wall0,
        cpu: cpu1.saturating_sub(cpu0),
        flow: None,
    }
}

/// User + system CPU time of this process, every thread (GStreamer's included).
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialised by the successful call (and zeroed before).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn print_machine(full: bool) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!();
    println!(
        "natter call bench ({}; {} build)",
        if full {
            "full"
        } else {
            "smoke run: pass --bench for the measurement"
        },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "machine: {cpus} CPU(s), {model}; load average at start {}",
        loadavg()
    );
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// (median, p90, min, max); p90 by nearest rank.
fn summary(mut v: Vec<Duration>) -> Option<[Duration; 4]> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    let p90 = v[(n * 9).div_ceil(10) - 1];
    Some([median, p90, v[0], v[n - 1]])
}

fn print_setup(cold: &Setup, samples: &[Setup]) {
    println!();
    println!(
        "Accept → first decoded audio, loopback, {} call(s) (ms; budget for the later side ≤ {} ms)",
        samples.len(),
        BUDGET_FIRST_AUDIO.as_millis()
    );
    println!(
        "  {:<38} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "", "median", "p90", "min", "max", "cold call"
    );
    type Pick = fn(&Setup) -> Duration;
    let rows: [(&str, Pick); 7] = [
        ("first decoded audio, later side", Setup::both),
        ("first decoded audio, caller", |s| s.first_audio[0]),
        ("first decoded audio, callee", |s| s.first_audio[1]),
        ("Active (ICE+DTLS done), caller", |s| s.active[0]),
        ("Active (ICE+DTLS done), callee", |s| s.active[1]),
        ("Active → first audio, caller", |s| {
            s.first_audio[0].saturating_sub(s.active[0])
        }),
        ("Active → first audio, callee", |s| {
            s.first_audio[1].saturating_sub(s.active[1])
        }),
    ];
    for (name, pick) in rows {
        let stats = summary(samples.iter().map(pick).collect());
        let cells = stats.map_or_else(
            || ["-".to_owned(), "-".into(), "-".into(), "-".into()],
            |s| s.map(ms),
        );
        println!(
            "  {:<38} {:>8} {:>8} {:>8} {:>8} {:>10}",
            name,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            ms(pick(cold))
        );
    }
    if let Some([median, ..]) = summary(samples.iter().map(Setup::both).collect()) {
        println!(
            "  → median {} ms: {}",
            ms(median),
            if median <= BUDGET_FIRST_AUDIO {
                "within budget"
            } else {
                "OVER BUDGET"
            }
        );
    }
}

fn print_cpu(idle: Option<&Cpu>, audio: &Cpu, video: Option<&Cpu>, plan: &Plan, load: &str) {
    println!();
    println!(
        "CPU per peer, % of one core (this process's user+system time / wall time / 2 peers; \
         Prosody excluded), {:.0} s windows after {:.1} s of flowing media; load average before: {load}",
        plan.window.as_secs_f64(),
        plan.settle.as_secs_f64()
    );
    println!(
        "  {:<42} {:>9} {:>10} {:>8}  media flow (per receiving side)",
        "", "per peer", "process", "wall s"
    );
    let row = |name: &str, c: &Cpu, note: String| {
        println!(
            "  {:<42} {:>8.2}% {:>9.2}% {:>8.2}  {note}",
            name,
            c.per_peer_percent(),
            c.per_peer_percent() * 2.0,
            c.wall.as_secs_f64()
        );
    };
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join("/")
    };
    if let Some(idle) = idle {
        row("signed in, no call", idle, String::new());
    }
    let flow = |c: &Cpu| {
        c.flow.as_ref().map_or(String::new(), |f| {
            let mut s = format!("audio {} pkt/s", list(&f.audio_pps));
            if !f.fps.is_empty() {
                s += &format!(
                    ", video {} fps {} kbit/s",
                    list(&f.fps),
                    list(&f.video_kbps)
                );
            }
            if !f.tone_heard {
                s += ", TONE NOT HEARD at the end";
            }
            s
        })
    };
    row("audio call (Opus)", audio, flow(audio));
    if let Some(video) = video {
        row(
            "audio+video call (Opus + VP8 640×480@30)",
            video,
            flow(video),
        );
    }
    // A 1 s window in a debug build says nothing about the budget.
    if plan.full {
        println!(
            "  → audio {:.2} % per peer: {} (budget ≤ {BUDGET_AUDIO_CPU_PERCENT} %)",
            audio.per_peer_percent(),
            if audio.per_peer_percent() <= BUDGET_AUDIO_CPU_PERCENT {
                "within budget"
            } else {
                "OVER BUDGET"
            }
        );
    }
    println!("load average after: {}", loadavg());
}
