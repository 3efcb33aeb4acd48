//! Running the real app in a real window for tests and benchmarks: Xvfb, real X input
//! events through xdotool, screenshots in target/screenshots/, the app's log in its
//! home, and a private D-Bus session bus when a test needs one.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        // Tests of one binary run in parallel in one process: each takes its own number.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let taken = |n: u32| {
            Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                || Path::new(&format!("/tmp/.X{n}-lock")).exists()
        };
        for _ in 0..20 {
            let own = NEXT.fetch_add(7, std::sync::atomic::Ordering::SeqCst);
            let mut n = 150 + std::process::id() % 300 + own;
            while taken(n) {
                n += 1;
            }
            let mut child = Command::new("Xvfb")
                .arg(format!(":{n}"))
                // -noreset: by default the server resets when its last client leaves
                // (a screenshot, a test's first app) and refuses connections meanwhile.
                .args([
                    "-screen",
                    "0",
                    "1024x700x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb runs (make check installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            // Up when its socket exists; another server that won the race for this
            // number makes ours exit: then try the next number.
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    std::thread::sleep(Duration::from_millis(100));
                    if let Ok(None) = child.try_wait() {
                        return Xvfb {
                            child,
                            display: format!(":{n}"),
                        };
                    }
                    break;
                }
                assert!(Instant::now() < deadline, "Xvfb did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("no free X display for Xvfb");
    }

    pub fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Types text as key presses.
    pub fn type_text(&self, text: &str) {
        self.xdotool(&["type", "--delay", "12", text]);
    }

    pub fn key(&self, keys: &[&str]) {
        let mut args = vec!["key", "--delay", "40"];
        args.extend_from_slice(keys);
        self.xdotool(&args);
    }

    /// The visible windows of a process (the main window first).
    pub fn windows(&self, pid: u32) -> Vec<String> {
        self.xdotool(&["search", "--onlyvisible", "--pid", &pid.to_string()])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn screenshot(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        let status = Command::new("import")
            .args(["-window", "root"])
            .arg(&path)
            .env("DISPLAY", &self.display)
            .status()
            .expect("import (imagemagick) runs");
        assert!(status.success(), "screenshot taken");
        assert!(
            std::fs::metadata(&path)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "{name} is not empty"
        );
        path
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The app, killed when the test ends; its output goes to `home/app.log`.
pub struct App {
    pub child: Child,
    pub log: PathBuf,
}

impl App {
    pub fn start(home: &Path, x: &Xvfb, env: &[(&str, &str)]) -> App {
        let log = home.join("app.log");
        let file = std::fs::File::create(&log).expect("app log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.envs(natter_testkit::app_env(home))
            .env("DISPLAY", &x.display)
            .env("GSK_RENDERER", "cairo")
            .env("GSETTINGS_BACKEND", "memory")
            .env("NO_AT_BRIDGE", "1")
            .env("GTK_A11Y", "none")
            .env("RUST_LOG", "natter=debug,natter_core=info")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdout(file.try_clone().expect("app log"))
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        App {
            child: cmd.spawn().expect("natter starts"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether a shared library whose file name contains `name` is mapped into the app.
    pub fn maps_library(&self, name: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid()))
            .expect("the app's memory map")
            .lines()
            .any(|l| l.rsplit('/').next().is_some_and(|f| f.contains(name)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the main window and gives it the keyboard focus, as clicking on it would.
    pub async fn window(&self, x: &Xvfb) -> String {
        let mut window = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while window.is_empty() {
            window = x.windows(self.pid()).into_iter().next().unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "no window; the app's log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let the first frame settle before typing.
        tokio::time::sleep(Duration::from_millis(800)).await;
        x.xdotool(&["windowfocus", "--sync", &window]);
        window
    }

    /// Ends the app with SIGTERM (as a session logout does) and checks it exits cleanly.
    pub async fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "the app did not exit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(exit.success(), "exit status {exit}");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private D-Bus session bus.
pub struct SessionBus {
    child: Child,
    pub address: String,
}

impl SessionBus {
    pub fn start() -> SessionBus {
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon runs (make check installs dbus)");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let address = line.trim().to_owned();
        assert!(!address.is_empty(), "dbus-daemon printed its address");
        SessionBus { child, address }
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/peers/notification_daemon.py` on a session bus: what the app notifies, and
/// clicks on its notifications.
pub struct Notifications {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Notifications {
    pub fn start(bus: &SessionBus) -> Notifications {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/notification_daemon.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the notification daemon runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut n = Notifications {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        };
        n.expect(
            "the notification daemon owns its name",
            Duration::from_secs(10),
            |l| l.contains("\"ready\""),
        );
        n
    }

    /// Waits for a line (a JSON call record) matching `f` and returns it.
    pub fn expect(&mut self, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| f(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; seen: {:?}", self.seen),
            }
        }
    }

    /// Clicks a notification (`action` "default" is the notification itself).
    pub fn invoke(&mut self, id: u64, action: &str) {
        writeln!(self.stdin, "invoke {id} {action}").expect("daemon stdin");
        self.stdin.flush().expect("daemon stdin");
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
