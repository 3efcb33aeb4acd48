//! XEP-0199 keep-alive: when the stream has been silent for a while we ping our server;
//! no answer in time means the connection is dead, and it is cut so that the reconnect
//! (and XEP-0198 resumption) starts now instead of after the TCP timeout.

use std::time::Duration;

use tokio::time::Instant;

/// When to ping and how long to wait for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence on the stream before we ping.
    pub idle: Duration,
    /// How long the answer may take before the connection counts as dead.
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(60),
            timeout: Duration::from_secs(20),
        }
    }
}

/// What the session should do at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    Ping,
    /// The ping went unanswered: cut the connection.
    Dead,
}

#[derive(Debug)]
pub(crate) struct Watch {
    config: Keepalive,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

impl Watch {
    pub fn new(config: Keepalive) -> Self {
        Watch {
            config,
            last_heard: Instant::now(),
            ping_sent: None,
        }
    }

    /// How often to look.
    pub fn period(&self) -> Duration {
        (self.config.idle.min(self.config.timeout) / 4).max(Duration::from_millis(100))
    }

    /// Anything arrived: the connection is alive.
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.ping_sent = None;
    }

    pub fn tick(&mut self, online: bool) -> Due {
        if !online {
            self.heard();
            return Due::Nothing;
        }
        let now = Instant::now();
        match self.ping_sent {
            Some(sent) if now.duration_since(sent) >= self.config.timeout => {
                self.heard();
                Due::Dead
            }
            Some(_) => Due::Nothing,
            None if now.duration_since(self.last_heard) >= self.config.idle => {
                self.ping_sent = Some(now);
                Due::Ping
            }
            None => Due::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pings_when_idle_and_gives_up() {
        let ms = Duration::from_millis;
        let mut w = Watch::new(Keepalive {
            idle: ms(60),
            timeout: ms(40),
        });
        assert_eq!(w.tick(true), Due::Nothing);
        tokio::time::sleep(ms(70)).await;
        assert_eq!(w.tick(true), Due::Ping);
        assert_eq!(w.tick(true), Due::Nothing, "one ping at a time");
        w.heard();
        assert_eq!(w.tick(true), Due::Nothing, "answered");
        tokio::time::sleep(ms(70)).await;
        assert_eq!(w.tick(true), Due::Ping);
        tokio::time::sleep(ms(50)).await;
        assert_eq!(w.tick(true), Due::Dead);
        assert_eq!(w.tick(false), Due::Nothing);
    }
}
