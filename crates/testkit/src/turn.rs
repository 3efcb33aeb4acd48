//! A private coturn for call tests: TURN over UDP on loopback, with TURN REST API
//! credentials (a shared secret, as Prosody's `mod_turn_external` hands them out), its
//! own directory, log and relay port range. Nothing here is a mock.

use std::io::{self, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How many UDP ports coturn may allocate relays on.
const RELAY_PORTS: u16 = 40;

/// A running `turnserver`; killed on drop.
pub struct Turn {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The UDP port TURN (and STUN) listens on, on 127.0.0.1.
    pub port: u16,
    /// The TURN REST API shared secret (`--static-auth-secret`).
    pub secret: String,
    /// The relay ports coturn allocates from, inclusive.
    pub relay_ports: (u16, u16),
}

fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// A free UDP port outside the kernel's ephemeral range's usual start (so ICE agents'
/// own sockets do not land in it by chance), and a free range of relay ports after it.
fn free_ports() -> io::Result<(u16, (u16, u16))> {
    for _ in 0..50 {
        let r = u16::from_be_bytes(random_bytes::<2>()?);
        // 20000..=32000, below Linux's default ephemeral range (32768–60999).
        let base = 20000 + r % 12000;
        let relay = (base + 1, base + RELAY_PORTS);
        if (base..=relay.1).all(udp_free) {
            return Ok((base, relay));
        }
    }
    Err(io::Error::other("no free UDP port range for coturn"))
}

/// A STUN Binding request (RFC 5389) with transaction id `txn`.
fn binding_request(txn: &[u8; 12]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(txn);
    m
}

impl Turn {
    /// Starts coturn on 127.0.0.1 and waits until it answers STUN.
    pub fn start() -> io::Result<Turn> {
        let dir = tempfile::Builder::new().prefix("natter-turn-").tempdir()?;
        let (port, relay_ports) = free_ports()?;
        let secret = hex(&random_bytes::<16>()?);
        let d = dir.path();
        let child = Command::new("turnserver")
            // No /etc/turnserver.conf: everything is on the command line.
            .arg("-n")
            .arg("--listening-ip=127.0.0.1")
            .arg(format!("--listening-port={port}"))
            .arg("--relay-ip=127.0.0.1")
            .arg(format!("--min-port={}", relay_ports.0))
            .arg(format!("--max-port={}", relay_ports.1))
            .arg("--use-auth-secret")
            .arg(format!("--static-auth-secret={secret}"))
            .arg("--realm=localhost")
            .args(["--no-tcp", "--no-tls", "--no-dtls", "--no-cli"])
            // Both peers and the relay are on 127.0.0.1.
            .arg("--allow-loopback-peers")
            // Moderate verbosity: allocations, permissions and per-session usage.
            .arg("--verbose")
            // One relay thread: allocations are logged one after the other, so each
            // relay address is followed by its own session's line (see `relays`).
            .args(["--relay-threads", "1"])
            .arg(format!("--log-file={}", d.join("turnserver.log").display()))
            .args(["--simple-log", "--no-stdout-log"])
            .arg(format!("--pidfile={}", d.join("turnserver.pid").display()))
            .arg(format!("--db={}", d.join("turndb").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut turn = Turn {
            dir,
            child: Some(child),
            port,
            secret,
            relay_ports,
        };
        turn.wait_ready()?;
        Ok(turn)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let server = SocketAddr::from(([127, 0, 0, 1], self.port));
        let txn = random_bytes::<12>()?;
        let request = binding_request(&txn);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            // Until coturn listens, the kernel may answer with ICMP (a recv error).
            let _ = socket.send_to(&request, server);
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                // A Binding success response (0x0101) for our transaction.
                if from == server && n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == txn {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(io::Error::other(format!(
                        "turnserver exited ({status}): {}",
                        self.log()
                    )));
                }
            }
        }
        Err(io::Error::other(format!(
            "turnserver did not answer STUN on port {}: {}",
            self.port,
            self.log()
        )))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("turnserver.log")
    }

    /// coturn's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether `port` is one coturn allocates relays on.
    pub fn is_relay_port(&self, port: u16) -> bool {
        (self.relay_ports.0..=self.relay_ports.1).contains(&port)
    }

    /// The relays (TURN allocations) coturn made so far, in order, with what each
    /// carried once it was released.
    pub fn relays(&self) -> Vec<Relay> {
        parse_relays(&self.log())
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One TURN allocation, from coturn's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// coturn's session id.
    pub session: String,
    /// The relayed transport address's port (on 127.0.0.1): what a client signals as
    /// its `relay` candidate.
    pub port: u16,
    /// Traffic between the relay and the peers (other relays here), reported when the
    /// allocation ends: `received_*` came from the peer and went to our client.
    pub peer_usage: Option<Usage>,
}

/// coturn logs `IPv4. Local relay addr: 127.0.0.1:P`, then `session S: new, …` for the
/// allocation, and at its end `session S: peer usage: …`.
fn parse_relays(log: &str) -> Vec<Relay> {
    let mut relays: Vec<Relay> = Vec::new();
    let mut pending_port = None;
    for line in log.lines() {
        if let Some((_, addr)) = line.split_once("Local relay addr: ") {
            pending_port = addr
                .trim()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            continue;
        }
        let Some((_, rest)) = line.split_once("session ") else {
            continue;
        };
        let Some((session, what)) = rest.split_once(": ") else {
            continue;
        };
        if what.starts_with("new,") {
            if let Some(port) = pending_port.take() {
                relays.push(Relay {
                    session: session.to_owned(),
                    port,
                    peer_usage: None,
                });
            }
        } else if what.starts_with("peer usage:") {
            if let Some(r) = relays.iter_mut().find(|r| r.session == session) {
                // Reports are deltas since the previous one (coturn also reports every
                // 4096 packets): add them up.
                if let Some(u) = Usage::parse(what) {
                    let t = r.peer_usage.get_or_insert_with(Usage::default);
                    t.received_packets += u.received_packets;
                    t.received_bytes += u.received_bytes;
                    t.sent_packets += u.sent_packets;
                    t.sent_bytes += u.sent_bytes;
                }
            }
        }
    }
    relays
}

/// One of coturn's usage reports: packets and bytes received (`rp`, `rb`) and sent
/// (`sp`, `sb`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub received_packets: u64,
    pub received_bytes: u64,
    pub sent_packets: u64,
    pub sent_bytes: u64,
}

impl Usage {
    /// Reads `…usage: realm=<…>, username=<…>, rp=1, rb=2, sp=3, sb=4`.
    fn parse(line: &str) -> Option<Usage> {
        let (_, rest) = line.split_once("usage:")?;
        let mut u = Usage::default();
        let mut seen = 0;
        for field in rest.split(',') {
            let Some((k, v)) = field.trim().split_once('=') else {
                continue;
            };
            let Ok(n) = v.trim().parse::<u64>() else {
                continue;
            };
            let slot = match k {
                "rp" => &mut u.received_packets,
                "rb" => &mut u.received_bytes,
                "sp" => &mut u.sent_packets,
                "sb" => &mut u.sent_bytes,
                _ => continue,
            };
            *slot = n;
            seen += 1;
        }
        (seen == 4).then_some(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_line() {
        let l = "12: : session 000000000000000001: peer usage: realm=<localhost>, username=<1700000000>, rp=10, rb=2000, sp=11, sb=2100";
        assert_eq!(
            Usage::parse(l),
            Some(Usage {
                received_packets: 10,
                received_bytes: 2000,
                sent_packets: 11,
                sent_bytes: 2100
            })
        );
        assert_eq!(Usage::parse("usage: realm=<x>"), None);
    }

    #[test]
    fn relays_from_log() {
        let log = "\
1: : IPv4. Local relay addr: 127.0.0.1:27666
1: : session 000000000000000002: new, realm=<localhost>, username=<1795406666>, lifetime=600
1: : IPv4. Local relay addr: 127.0.0.1:27648
1: : session 000000000000000003: new, realm=<localhost>, username=<1795406667>, lifetime=600
5: : session 000000000000000002: usage: realm=<localhost>, username=<1795406666>, rp=26, rb=3432, sp=26, sb=3451
5: : session 000000000000000002: peer usage: realm=<localhost>, username=<1795406666>, rp=22, rb=3027, sp=21, sb=2790
";
        let relays = parse_relays(log);
        assert_eq!(relays.len(), 2);
        assert_eq!(
            (relays[0].session.as_str(), relays[0].port),
            ("000000000000000002", 27666)
        );
        assert_eq!(relays[0].peer_usage.map(|u| u.received_packets), Some(22));
        assert_eq!(relays[1].port, 27648);
        assert_eq!(relays[1].peer_usage, None);
    }
}
