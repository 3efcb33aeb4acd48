//! A real, private Prosody for tests, benchmarks and `make demo`: its own directory,
//! its own loopback ports, its own CA and certificate made per run with `openssl`,
//! accounts made with `prosodyctl`. Nothing here is a mock.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use natter_core::store::Account;

pub mod aiortc;
pub mod calls;
pub mod proxy;
pub mod turn;

/// The XMPP domain every harness server serves.
pub const DOMAIN: &str = "localhost";

pub struct Prosody {
    dir: tempfile::TempDir,
    pub c2s_port: u16,
    pub direct_tls_port: u16,
    child: Option<Child>,
    as_prosody_user: bool,
    /// The TURN server announced through XEP-0215 ([`Prosody::start_with_turn`]).
    turn: Option<turn::Turn>,
}

/// A Jingle ICE-UDP candidate as the server saw a client send it (see
/// [`Prosody::start_with_turn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalledCandidate {
    /// The sender's full JID.
    pub from: String,
    /// `host`, `srflx`, `prflx` or `relay`.
    pub kind: String,
    pub ip: String,
    pub port: u16,
    /// `rel-addr`, if given (for relay candidates: the client's address towards TURN).
    pub rel_addr: Option<String>,
}

/// A Prosody module for [`Prosody::start_with_turn`]: logs every ICE-UDP candidate a
/// client sends in a Jingle IQ, so tests can check what was signalled without asking the
/// client.
const CANDIDATE_LOGGER: &str = r#"-- written by natter-testkit
local function log_candidates(event)
  local origin, stanza = event.origin, event.stanza;
  local jingle = stanza:get_child("jingle", "urn:xmpp:jingle:1");
  if not jingle then return; end
  for content in jingle:childtags("content") do
    for transport in content:childtags("transport", "urn:xmpp:jingle:transports:ice-udp:1") do
      for c in transport:childtags("candidate") do
        module:log("info", "natter-candidate from=%s type=%s ip=%s port=%s rel-addr=%s",
          origin.full_jid or "?", c.attr.type or "?", c.attr.ip or "?", c.attr.port or "?",
          c.attr["rel-addr"] or "-");
      end
    end
  end
end
module:hook("pre-iq/full", log_candidates, 100);
"#;

/// A Prosody module on every test server: logs the XEP-0377 reports that come with
/// XEP-0191 block requests (Prosody's mod_blocklist takes the block and ignores them),
/// so tests can check what was reported.
const REPORT_LOGGER: &str = r#"-- written by natter-testkit
module:hook("iq-set/self/urn:xmpp:blocking:block", function(event)
  local origin, stanza = event.origin, event.stanza;
  for item in stanza.tags[1]:childtags("item") do
    local report = item:get_child("report", "urn:xmpp:reporting:1");
    if report then
      module:log("info", "natter-report from=%s jid=%s reason=%s",
        origin.full_jid or "?", item.attr.jid or "?", report.attr.reason or "?");
    end
  end
end, 100);
"#;

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl Prosody {
    /// Starts a fresh server and waits until it accepts connections.
    pub fn start() -> io::Result<Prosody> {
        Self::start_inner(None)
    }

    /// Like [`Prosody::start`], with a private coturn on 127.0.0.1 that the server
    /// announces through XEP-0215 (`mod_turn_external`: STUN and TURN over UDP, TURN
    /// REST API credentials). The server also logs the ICE candidates clients signal
    /// ([`Prosody::signalled_candidates`]).
    pub fn start_with_turn() -> io::Result<Prosody> {
        Self::start_inner(Some(turn::Turn::start()?))
    }

    fn start_inner(turn: Option<turn::Turn>) -> io::Result<Prosody> {
        let dir = tempfile::Builder::new()
            .prefix("natter-prosody-")
            .tempdir()?;
        let c2s_port = free_port()?;
        let direct_tls_port = free_port()?;
        let mut p = Prosody {
            dir,
            c2s_port,
            direct_tls_port,
            child: None,
            as_prosody_user: is_root(),
            turn,
        };
        p.make_certificates()?;
        p.write_config()?;
        if p.as_prosody_user {
            run(Command::new("chown")
                .args(["-R", "prosody:prosody"])
                .arg(p.dir.path()))?;
            // The temp dir itself is 0700 root; prosody must be able to enter it.
            std::fs::set_permissions(
                p.dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )?;
        }
        p.spawn()?;
        Ok(p)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TURN server, when started with [`Prosody::start_with_turn`].
    pub fn turn(&self) -> Option<&turn::Turn> {
        self.turn.as_ref()
    }

    /// The ICE candidates clients sent in Jingle IQs so far, in order (only with
    /// [`Prosody::start_with_turn`]; empty otherwise).
    pub fn signalled_candidates(&self) -> Vec<SignalledCandidate> {
        let log = std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once("natter-candidate ")?;
                let field = |k: &str| {
                    rest.split_whitespace()
                        .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                        .map(str::to_owned)
                };
                Some(SignalledCandidate {
                    from: field("from")?,
                    kind: field("type")?,
                    ip: field("ip")?,
                    port: field("port")?.parse().ok()?,
                    rel_addr: field("rel-addr").filter(|a| a != "-"),
                })
            })
            .collect()
    }

    /// The CA that signed the server certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("prosody.cfg.lua")
    }

    fn make_certificates(&self) -> io::Result<()> {
        let d = self.dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=Natter Test CA"])
            .arg("-keyout")
            .arg(d.join("ca.key"))
            .arg("-out")
            .arg(d.join("ca.crt"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))?;
        run(Command::new("openssl")
            .arg("req")
            .args(ec)
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(d.join("localhost.key"))
            .arg("-out")
            .arg(d.join("localhost.csr")))?;
        std::fs::write(
            d.join("ext"),
            "subjectAltName=DNS:localhost,DNS:conference.localhost,DNS:upload.localhost\n\
             extendedKeyUsage=serverAuth\n",
        )?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2"])
            .arg("-in")
            .arg(d.join("localhost.csr"))
            .arg("-CA")
            .arg(d.join("ca.crt"))
            .arg("-CAkey")
            .arg(d.join("ca.key"))
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(d.join("ext"))
            .arg("-out")
            .arg(d.join("localhost.crt")))?;
        Ok(())
    }

    fn write_config(&self) -> io::Result<()> {
        let d = self.dir.path().display();
        // With TURN: mod_turn_external (on every VirtualHost, answering XEP-0215 IQs to
        // the bare domain) and the candidate logger.
        let plugins = self.dir.path().join("plugins");
        std::fs::create_dir_all(&plugins)?;
        std::fs::write(plugins.join("mod_natter_reports.lua"), REPORT_LOGGER)?;
        let (turn_modules, turn_options) = match &self.turn {
            Some(t) => {
                std::fs::write(plugins.join("mod_natter_candidates.lua"), CANDIDATE_LOGGER)?;
                (
                    "  \"turn_external\", \"natter_candidates\",\n",
                    format!(
                        r#"turn_external_secret = "{secret}"
turn_external_host = "127.0.0.1"
turn_external_port = {port}
"#,
                        secret = t.secret,
                        port = t.port,
                    ),
                )
            }
            None => ("", String::new()),
        };
        let config = format!(
            r#"-- written by natter-testkit
data_path = "{d}/data"
plugin_paths = {{ "{d}/plugins" }}
log = {{ info = "{d}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ {tls} }}
c2s_direct_tls_ssl = {{ certificate = "{d}/localhost.crt"; key = "{d}/localhost.key" }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
ssl = {{ certificate = "{d}/localhost.crt"; key = "{d}/localhost.key" }}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
archive_expires_after = "never"
default_archive_policy = true
max_archive_query_results = 250
smacks_hibernation_time = 120
pidfile = "{d}/prosody.pid"
modules_enabled = {{
  "roster", "saslauth", "tls", "disco", "carbons", "pep", "blocklist", "vcard4",
  "vcard_legacy", "private", "bookmarks", "mam", "smacks", "csi_simple", "ping",
  "version", "time", "uptime", "posix", "natter_reports",
{turn_modules}}}
{turn_options}-- As in ../shared/bench: offline messages live only in the archive (MAM), so clients
-- catch up through XEP-0313 rather than through a flood at login.
modules_disabled = {{ "s2s", "offline" }}
VirtualHost "localhost"
-- Served with the localhost certificate: a client must refuse it for this name.
VirtualHost "othername.test"
"#,
            c2s = self.c2s_port,
            tls = self.direct_tls_port,
        );
        std::fs::create_dir_all(self.dir.path().join("data"))?;
        std::fs::write(self.config_path(), config)
    }

    fn command(&self, program: &str) -> Command {
        if self.as_prosody_user {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=prosody",
                "--regid=prosody",
                "--init-groups",
                program,
            ]);
            c
        } else {
            Command::new(program)
        }
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("prosody.stdout"))?;
        let child = self
            .command("prosody")
            .arg("-F")
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.c2s_port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(io::Error::other(format!(
                        "prosody exited ({status}): {}",
                        self.log()
                    )));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(format!(
            "prosody did not open port {}: {}",
            self.c2s_port,
            self.log()
        )))
    }

    /// Prosody's log so far (for failing tests).
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("prosody.stdout"), read("prosody.log"))
    }

    /// Creates an account.
    pub fn register(&self, user: &str, password: &str) -> io::Result<()> {
        run(self
            .command("prosodyctl")
            .arg("--config")
            .arg(self.config_path())
            .args(["register", user, DOMAIN, password]))
    }

    /// Kills the server at once (SIGKILL), as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports with the same data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// An account record for `user` on this server, trusting its CA.
    pub fn account(&self, user: &str) -> Account {
        Account {
            id: 0,
            jid: format!("{user}@{DOMAIN}"),
            resource: "natter-test".into(),
            host: Some("127.0.0.1".into()),
            port: Some(self.c2s_port),
            direct_tls: false,
            extra_ca: Some(self.ca_path().display().to_string()),
            enabled: true,
            pinned_cert: None,
        }
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Logs to stderr once per process, at `RUST_LOG` or `natter=info`.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,webrtc_ice::agent::agent_internal=error")
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// One account signed in through `natter-core`, with its own store file and event log.
pub struct Peer {
    pub handle: natter_core::SessionHandle,
    pub store: natter_core::store::Store,
    pub events: tokio::sync::mpsc::UnboundedReceiver<natter_core::AccountEvent>,
    pub seen: Vec<natter_core::Event>,
    account: Account,
    password: String,
    calls: natter_core::calls::CallSettings,
    keepalive: natter_core::Keepalive,
    dir: tempfile::TempDir,
}

/// Call settings for tests: a live sine tone at `freq` Hz and a moving test picture,
/// remote audio to a fakesink, loopback candidates, no STUN/TURN discovery.
pub fn test_call_settings(freq: f64) -> natter_core::calls::CallSettings {
    natter_core::calls::CallSettings {
        media: natter_media::MediaConfig {
            source: natter_media::Source::Test {
                audio_freq: freq,
                video_pattern: "ball".into(),
            },
            play_audio: false,
            echo_cancellation: false,
            video_size: (640, 480),
            framerate: 30,
            analyse_audio: true,
        },
        transport: natter_jingle::TransportConfig {
            include_loopback: true,
            connect_timeout: Duration::from_secs(15),
            ..Default::default()
        },
        external_services: false,
    }
}

impl Peer {
    /// Starts a session for `account` with `password` (not waiting for sign-in).
    pub async fn start(account: Account, password: &str) -> io::Result<Peer> {
        Self::start_with_calls(account, password, test_call_settings(440.0)).await
    }

    /// Starts a session whose calls use `calls`.
    pub async fn start_with_calls(
        account: Account,
        password: &str,
        calls: natter_core::calls::CallSettings,
    ) -> io::Result<Peer> {
        Self::start_in(tempfile::tempdir()?, account, password, calls).await
    }

    /// Starts a session that pings the server as `keepalive` says (XEP-0199).
    pub async fn start_with_keepalive(
        account: Account,
        password: &str,
        keepalive: natter_core::Keepalive,
    ) -> io::Result<Peer> {
        let dir = tempfile::tempdir()?;
        Self::start_in_with(dir, account, password, test_call_settings(440.0), keepalive).await
    }

    /// Quits (signing off if it can) and starts again on the same store file, as when
    /// the app is closed and opened again.
    pub async fn restart(self) -> io::Result<Peer> {
        let _ = self.handle.disconnect().await;
        let Peer {
            dir,
            account,
            password,
            calls,
            keepalive,
            ..
        } = self;
        Self::start_in_with(dir, account, &password, calls, keepalive).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        account: Account,
        password: &str,
        calls: natter_core::calls::CallSettings,
    ) -> io::Result<Peer> {
        Self::start_in_with(dir, account, password, calls, Default::default()).await
    }

    async fn start_in_with(
        dir: tempfile::TempDir,
        account: Account,
        password: &str,
        calls: natter_core::calls::CallSettings,
        keepalive: natter_core::Keepalive,
    ) -> io::Result<Peer> {
        let store = natter_core::store::Store::open(dir.path().join("natter.db"))
            .await
            .map_err(io::Error::other)?;
        let mut account = account;
        account.id = store
            .upsert_account(account.clone())
            .await
            .map_err(io::Error::other)?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let config = natter_core::SessionConfig {
            account: account.clone(),
            password: password.to_owned(),
            backoff: natter_core::Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(2),
            },
            calls: calls.clone(),
            avatar_cache: dir.path().join("avatars"),
            keepalive,
        };
        let handle = natter_core::start(config, store.clone(), tx).map_err(io::Error::other)?;
        Ok(Peer {
            handle,
            store,
            events,
            seen: Vec::new(),
            account,
            password: password.to_owned(),
            calls,
            keepalive,
            dir,
        })
    }

    /// Waits until an event matches `pred` (events seen earlier count too), and returns it.
    pub async fn wait_for<F>(
        &mut self,
        timeout: Duration,
        mut pred: F,
    ) -> Option<natter_core::Event>
    where
        F: FnMut(&natter_core::Event) -> bool,
    {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return Some(e.clone());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            self.seen.push(ev.event.clone());
            if pred(&ev.event) {
                return Some(ev.event);
            }
        }
    }

    /// Waits until a message with exactly this body has been stored and announced
    /// (live, or in a page from the archive).
    pub async fn received(
        &mut self,
        body: &str,
        timeout: Duration,
    ) -> Option<natter_core::store::Message> {
        let pick = |e: &natter_core::Event| match e {
            natter_core::Event::Message(m) if m.body == body => Some(m.clone()),
            natter_core::Event::ArchivePage { messages, .. } => {
                messages.iter().find(|m| m.body == body).cloned()
            }
            _ => None,
        };
        let event = self.wait_for(timeout, |e| pick(e).is_some()).await?;
        pick(&event)
    }

    /// Waits until the server has acknowledged our message `id` (XEP-0198).
    pub async fn acked(&mut self, id: i64, timeout: Duration) -> Option<()> {
        use natter_core::store::MessageState;
        self.wait_for(timeout, |e| {
            matches!(e, natter_core::Event::MessageState { id: i, state: MessageState::Acked } if *i == id)
        })
        .await
        .map(|_| ())
    }

    /// Waits for the session to be online; returns the bound full JID.
    pub async fn online(&mut self) -> Option<String> {
        let ev = self
            .wait_for(Duration::from_secs(20), |e| {
                matches!(
                    e,
                    natter_core::Event::Connection(natter_core::ConnectionState::Online { .. })
                        | natter_core::Event::Connection(natter_core::ConnectionState::Failed(_))
                )
            })
            .await?;
        let jid = match ev {
            natter_core::Event::Connection(natter_core::ConnectionState::Online {
                jid, ..
            }) => jid,
            _ => return None,
        };
        // RFC 6121 §4.2.2: the server reflects our initial presence to us once it has
        // processed it; from then on messages to our bare JID reach this resource.
        if let Some((bare, resource)) = jid.split_once('/') {
            let (bare, resource) = (bare.to_owned(), resource.to_owned());
            self.wait_for(Duration::from_secs(10), |e| {
                matches!(e, natter_core::Event::Presence { jid, resource: r, presence: Some(_) }
                    if *jid == bare && *r == resource)
            })
            .await;
        }
        Some(jid)
    }

    /// Drains events that arrived so far into `seen`.
    pub fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.seen.push(ev.event);
        }
    }
}

/// The file keyring's unlock secret for demo, test and benchmark homes (throwaway homes:
/// this protects nothing of a real user's).
const KEYRING_SECRET: &str = "natter-demo-keyring";

/// Writes `account` and its password into the Natter data of a home directory (store +
/// oo7 file keyring), so that Natter started with [`app_env`] signs in by itself.
pub async fn prepare_home(home: &Path, account: Account, password: &str) -> Result<(), String> {
    let data = home.join(".local/share/natter");
    let store = natter_core::store::Store::open(data.join("natter.db"))
        .await
        .map_err(|e| e.to_string())?;
    store
        .upsert_account(account.clone())
        .await
        .map_err(|e| e.to_string())?;
    std::fs::write(data.join("keyring-secret"), KEYRING_SECRET).map_err(|e| e.to_string())?;
    let keyring =
        natter_core::PasswordStore::file(&data.join("natter.keyring"), KEYRING_SECRET.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    keyring
        .set_password(&account.jid, password)
        .await
        .map_err(|e| e.to_string())
}

/// The environment that makes Natter use a home made by [`prepare_home`].
pub fn app_env(home: &Path) -> Vec<(String, PathBuf)> {
    let data = home.join(".local/share/natter");
    vec![
        ("HOME".into(), home.to_path_buf()),
        ("XDG_DATA_HOME".into(), home.join(".local/share")),
        ("XDG_CONFIG_HOME".into(), home.join(".config")),
        ("XDG_CACHE_HOME".into(), home.join(".cache")),
        ("NATTER_KEYRING_FILE".into(), data.join("natter.keyring")),
        (
            "NATTER_KEYRING_SECRET_FILE".into(),
            data.join("keyring-secret"),
        ),
    ]
}

/// Makes `demo` and `friend` contacts with mutual presence subscriptions (both online).
pub async fn befriend(demo: &mut Peer, friend: &mut Peer) -> Result<(), String> {
    use natter_core::{Event, SubscriptionAction};
    let t = Duration::from_secs(20);
    let demo_jid = demo.handle.jid().to_owned();
    let friend_jid = friend.handle.jid().to_owned();
    demo.handle
        .add_contact(&friend_jid, None, vec![])
        .await
        .map_err(|e| e.to_string())?;
    friend
        .handle
        .add_contact(&demo_jid, None, vec![])
        .await
        .map_err(|e| e.to_string())?;
    for (a, b) in [(&mut *demo, &friend_jid), (&mut *friend, &demo_jid)] {
        a.handle
            .subscription(b, SubscriptionAction::Request)
            .await
            .map_err(|e| e.to_string())?;
        a.handle
            .subscription(b, SubscriptionAction::Approve)
            .await
            .map_err(|e| e.to_string())?;
    }
    friend
        .wait_for(
            t,
            |e| matches!(e, Event::Presence { jid, presence: Some(_), .. } if *jid == demo_jid),
        )
        .await
        .ok_or("no presence from demo")?;
    Ok(())
}
