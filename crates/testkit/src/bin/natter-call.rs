//! `natter-call`: signs in with an account and places or answers one call, printing
//! state changes and, every second, what the media engine receives. For debugging calls
//! and as the demo's call peer; it uses the same session service and call engine as the
//! app.
//!
//! ```text
//! natter-call --jid JID [--password PW | $NATTER_PASSWORD] [--host H] [--port P] [--ca FILE]
//!             [--resource R] (call PEER [--video] | answer [--reject])
//!             [--tone HZ] [--devices] [--hangup-after S] [--duration S]
//!             [--loopback] [--no-host-candidates] [--no-turn]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use natter_core::calls::{CallSettings, CallState};
use natter_core::store::{Account, Store};
use natter_core::{CallAction, CallUpdate, ConnectionState, Event, SessionConfig};

const USAGE: &str =
    "usage: natter-call --jid JID [--password PW] [--host H] [--port P] [--ca FILE] \
[--resource R] (call PEER [--video] | answer [--reject]) [--tone HZ] [--devices] \
[--hangup-after S] [--duration S] [--loopback] [--no-host-candidates] [--no-turn]";

struct Options {
    jid: String,
    password: String,
    host: Option<String>,
    port: Option<u16>,
    ca: Option<String>,
    resource: String,
    peer: Option<String>,
    video: bool,
    reject: bool,
    tone: f64,
    devices: bool,
    hangup_after: Option<Duration>,
    duration: Duration,
    loopback: bool,
    host_candidates: bool,
    turn: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let value = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let seconds = |name: &str| -> Result<Option<Duration>, String> {
        value(name)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("{name} wants seconds, not {v:?}"))
            })
            .transpose()
    };
    let jid = value("--jid").ok_or("--jid is required")?;
    let password = value("--password")
        .or_else(|| std::env::var("NATTER_PASSWORD").ok())
        .ok_or("--password or NATTER_PASSWORD is required")?;
    let port = match value("--port") {
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad --port {p:?}"))?),
        None => None,
    };
    let peer = match args.iter().position(|a| a == "call") {
        Some(i) => Some(
            args.get(i + 1)
                .filter(|p| !p.starts_with("--"))
                .cloned()
                .ok_or("call needs the address to call")?,
        ),
        None if args.iter().any(|a| a == "answer") => None,
        None => return Err("say `call PEER` or `answer`".into()),
    };
    let tone = match value("--tone") {
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|f| (20.0..20_000.0).contains(f))
            .ok_or_else(|| format!("bad --tone {t:?}"))?,
        None => 440.0,
    };
    Ok(Options {
        jid,
        password,
        host: value("--host"),
        port,
        ca: value("--ca"),
        resource: value("--resource").unwrap_or_else(|| "natter-call".into()),
        peer,
        video: flag("--video"),
        reject: flag("--reject"),
        tone,
        devices: flag("--devices"),
        hangup_after: seconds("--hangup-after")?,
        duration: seconds("--duration")?.unwrap_or(Duration::from_secs(120)),
        loopback: flag("--loopback"),
        host_candidates: !flag("--no-host-candidates"),
        turn: !flag("--no-turn"),
    })
}

fn settings(o: &Options) -> CallSettings {
    let mut s = natter_testkit::test_call_settings(o.tone);
    if o.devices {
        s.media = natter_media::MediaConfig::default();
    }
    s.transport.include_loopback = o.loopback;
    s.transport.host_candidates = o.host_candidates;
    s.external_services = o.turn;
    s
}

fn describe(state: &CallState) -> String {
    match state {
        CallState::Calling => "calling".into(),
        CallState::Ringing => "ringing".into(),
        CallState::Connecting => "connecting".into(),
        CallState::Active => "active".into(),
        CallState::Ended(r) => format!(
            "ended: {}{}{}",
            r.condition.as_str(),
            r.text
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default(),
            if r.remote { ", by the peer" } else { "" }
        ),
    }
}

async fn run(o: Options) -> Result<bool, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(dir.path().join("natter.db"))
        .await
        .map_err(|e| e.to_string())?;
    let mut account = Account {
        id: 0,
        jid: o.jid.clone(),
        resource: o.resource.clone(),
        host: o.host.clone(),
        port: o.port,
        direct_tls: false,
        extra_ca: o.ca.clone(),
        enabled: true,
        pinned_cert: None,
    };
    account.id = store
        .upsert_account(account.clone())
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let handle = natter_core::start(
        SessionConfig {
            account,
            password: o.password.clone(),
            backoff: Default::default(),
            calls: settings(&o),
            avatar_cache: dir.path().join("avatars"),
            keepalive: Default::default(),
        },
        store,
        tx,
    )
    .map_err(|e| e.to_string())?;

    let deadline = tokio::time::Instant::now() + o.duration;
    let mut sid: Option<String> = None;
    let mut active_since: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let ok = loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break false };
                match ev.event {
                    Event::Connection(ConnectionState::Online { jid, .. }) => {
                        println!("online as {jid}");
                        if let (Some(peer), None) = (&o.peer, &sid) {
                            let id = handle.place_call(peer, o.video).await.map_err(|e| e.to_string())?;
                            println!("calling {peer} (call {id})");
                            sid = Some(id);
                        }
                    }
                    Event::Connection(ConnectionState::Failed(e)) => {
                        return Err(format!("cannot sign in: {e}"));
                    }
                    Event::Call(CallUpdate::Incoming { sid: id, from, video }) => {
                        println!("{from} calls{} (call {id})", if video { " with video" } else { "" });
                        if sid.is_none() && o.peer.is_none() {
                            let action = if o.reject { CallAction::Reject } else { CallAction::Accept };
                            handle.call_action(&id, action).await.map_err(|e| e.to_string())?;
                            sid = Some(id);
                        }
                    }
                    Event::Call(CallUpdate::State { sid: id, state }) if sid.as_deref() == Some(id.as_str()) => {
                        println!("{}", describe(&state));
                        match state {
                            CallState::Active => active_since = Some(tokio::time::Instant::now()),
                            CallState::Ended(r) => break !r.condition.as_str().contains("error")
                                && r.condition.as_str() != "timeout"
                                && !r.condition.as_str().starts_with("failed"),
                            _ => {}
                        }
                    }
                    Event::Call(CallUpdate::RemoteMuted { muted, .. }) => {
                        println!("peer {}", if muted { "muted" } else { "unmuted" });
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                if let (Some(id), Some(since)) = (&sid, active_since) {
                    if let Ok(stats) = handle.call_stats(id).await {
                        for c in stats {
                            let s = &c.stats;
                            match c.kind {
                                natter_jingle::MediaKind::Audio => println!(
                                    "audio: {} packets in, {} out, {} Hz, {} dB",
                                    s.packets_received, s.packets_sent,
                                    s.peak_frequency_hz.map(|f| format!("{f:.0}")).unwrap_or("-".into()),
                                    s.rms_db.map(|d| format!("{d:.1}")).unwrap_or("-".into()),
                                ),
                                natter_jingle::MediaKind::Video => println!(
                                    "video: {} packets in, {} out, {} frames {}x{}",
                                    s.packets_received, s.packets_sent, s.frames_decoded, s.width, s.height,
                                ),
                            }
                        }
                    }
                    if o.hangup_after.is_some_and(|h| since.elapsed() >= h) {
                        let _ = handle.call_action(id, CallAction::HangUp).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(id) = &sid {
                    let _ = handle.call_action(id, CallAction::HangUp).await;
                    continue;
                }
                break false;
            }
            _ = tokio::signal::ctrl_c() => {
                match &sid {
                    Some(id) => { let _ = handle.call_action(id, CallAction::HangUp).await; }
                    None => break true,
                }
            }
        }
    };
    let _ = handle.disconnect().await;
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    natter_testkit::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("natter-call: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("natter-call: {e}");
            ExitCode::FAILURE
        }
    }
}
