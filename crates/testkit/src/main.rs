//! `natter-testkit demo`: a private Prosody with `demo@localhost` and `friend@localhost`,
//! a friend that answers, and Natter signed in as `demo`; everything stops when Natter
//! exits.
//!
//! `natter-testkit server --users alice:pw,bob:pw`: a private Prosody with those accounts;
//! prints one JSON line (`host`, `port`, `ca`, `dir`) and runs until stdin closes or
//! SIGTERM/SIGINT (for peers written in other languages, e.g. the aiortc call peer).
//!
//! `natter-testkit prepare --home DIR --jid JID --password PW [--host H] [--port P]
//! [--ca FILE]`: writes an account into the Natter data of HOME=DIR (store + file
//! keyring), so Natter signs in by itself on start (the benchmark driver uses it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use natter_core::store::{Account, Direction};
use natter_core::Event;
use natter_testkit::{app_env, befriend, prepare_home, Peer, Prosody};

fn usage() -> ExitCode {
    eprintln!(
        "usage: natter-testkit demo [--app PATH]\n       \
         natter-testkit server --users USER:PW[,USER:PW…]\n       \
         natter-testkit prepare --home DIR --jid JID --password PW [--host H] [--port P] [--ca FILE]"
    );
    ExitCode::from(2)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The friend answers every message from demo.
async fn answer(mut friend: Peer) {
    while let Some(ev) = friend.events.recv().await {
        if let Event::Message(m) = ev.event {
            if m.direction == Direction::Incoming && m.peer == "demo@localhost" {
                let reply = format!("You said “{}”. I hear you!", m.body);
                if let Err(e) = friend.handle.send_message("demo@localhost", &reply).await {
                    eprintln!("friend could not answer: {e}");
                }
            }
        }
    }
}

async fn demo(app: PathBuf) -> Result<(), String> {
    let server = Prosody::start().map_err(|e| e.to_string())?;
    for (user, pw) in [("demo", "demo"), ("friend", "friend")] {
        server.register(user, pw).map_err(|e| e.to_string())?;
    }
    eprintln!(
        "Prosody on 127.0.0.1:{} (data in {})",
        server.c2s_port,
        server.dir().display()
    );
    let mut setup = server.account("demo");
    setup.resource = "setup".into();
    let mut demo = Peer::start(setup, "demo")
        .await
        .map_err(|e| e.to_string())?;
    let mut friend = Peer::start(server.account("friend"), "friend")
        .await
        .map_err(|e| e.to_string())?;
    demo.online().await.ok_or("demo could not sign in")?;
    friend.online().await.ok_or("friend could not sign in")?;
    befriend(&mut demo, &mut friend).await?;
    demo.handle
        .rename_contact("friend@localhost", "Friend")
        .await
        .map_err(|e| e.to_string())?;
    demo.handle.disconnect().await.map_err(|e| e.to_string())?;
    friend
        .handle
        .send_message("demo@localhost", "Welcome to Natter! Write me something.")
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(answer(friend));

    let home = tempfile::Builder::new()
        .prefix("natter-demo-home-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut account = server.account("demo");
    account.resource = "natter".into();
    prepare_home(home.path(), account, "demo").await?;
    eprintln!("Starting {} signed in as demo@localhost", app.display());
    let status = tokio::process::Command::new(&app)
        .envs(app_env(home.path()))
        .status()
        .await
        .map_err(|e| format!("{}: {e}", app.display()))?;
    eprintln!("Natter exited ({status}); stopping the demo server");
    drop(server);
    Ok(())
}

async fn server(users: &str) -> Result<(), String> {
    let server = Prosody::start().map_err(|e| e.to_string())?;
    for pair in users.split(',').filter(|p| !p.is_empty()) {
        let (user, pw) = pair
            .split_once(':')
            .ok_or_else(|| format!("expected USER:PW, got {pair}"))?;
        server.register(user, pw).map_err(|e| e.to_string())?;
    }
    println!(
        "{{\"host\":\"127.0.0.1\",\"port\":{},\"ca\":\"{}\",\"dir\":\"{}\"}}",
        server.c2s_port,
        server.ca_path().display(),
        server.dir().display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let stdin_closed = async {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    drop(server);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    natter_testkit::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => {
            let app = arg(&args, "--app").map(PathBuf::from).unwrap_or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.join("natter")))
                    .unwrap_or_else(|| PathBuf::from("natter"))
            });
            demo(app).await
        }
        Some("server") => match arg(&args, "--users") {
            Some(users) => server(&users).await,
            None => return usage(),
        },
        Some("prepare") => {
            let (Some(home), Some(jid), Some(password)) = (
                arg(&args, "--home"),
                arg(&args, "--jid"),
                arg(&args, "--password"),
            ) else {
                return usage();
            };
            let port = match arg(&args, "--port").map(|p| p.parse::<u16>()) {
                Some(Ok(p)) => Some(p),
                Some(Err(_)) => return usage(),
                None => None,
            };
            let account = Account {
                id: 0,
                jid,
                resource: "natter".into(),
                host: arg(&args, "--host"),
                port,
                direct_tls: false,
                extra_ca: arg(&args, "--ca"),
                enabled: true,
                pinned_cert: None,
            };
            prepare_home(Path::new(&home), account, &password).await
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter-testkit: {e}");
            ExitCode::FAILURE
        }
    }
}
