//! A loopback TCP relay in front of the server, so a test can cut live connections the
//! way a flaky network does (both directions closed at once, server unaware), or
//! freeze them the way a dead path does (nothing passes, nobody is told).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    pub port: u16,
    cut: watch::Sender<u64>,
    freeze: watch::Sender<u64>,
    accepted: Arc<Mutex<u64>>,
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (cut, cut_rx) = watch::channel(0u64);
        let (freeze, freeze_rx) = watch::channel(0u64);
        let accepted = Arc::new(Mutex::new(0u64));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if let Ok(mut n) = counter.lock() {
                    *n += 1;
                }
                let mut cut_rx = cut_rx.clone();
                let generation = *cut_rx.borrow_and_update();
                let mut freeze_rx = freeze_rx.clone();
                let frozen_at = *freeze_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    let frozen = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => false,
                        _ = cut_rx.wait_for(|g| *g != generation) => false,
                        r = freeze_rx.wait_for(|g| *g != frozen_at) => r.is_ok(),
                    };
                    if frozen {
                        // Open but silent until cut or the relay goes away.
                        let _ = cut_rx.wait_for(|g| *g != generation).await.is_ok();
                    }
                    // Dropping both ends resets them.
                });
            }
        });
        Ok(Relay {
            port,
            cut,
            freeze,
            accepted,
        })
    }

    /// Closes every connection open now; new ones are accepted again.
    pub fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    /// Stops relaying on every connection open now, keeping them open (a dead path:
    /// neither end learns of it); new connections are relayed again.
    pub fn freeze(&self) {
        self.freeze.send_modify(|g| *g += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.lock().map(|n| *n).unwrap_or(0)
    }
}
