//! The byte stream under the XML stream. It lets the session cut a connection it knows
//! is dead (the XEP-0199 keep-alive got no answer) so that tokio-xmpp resumes on a new
//! one, and write nonzas between stanzas (XEP-0352 `<active/>`/`<inactive/>`), which
//! tokio-xmpp's `StanzaStream` has no way to send.
//!
//! Nonzas go in at element boundaries only: the XML stream serialises each element
//! whole into its buffer before writing, and [`Link`] always takes everything it is
//! given, so its own buffer ends at a boundary between any two writes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader, ReadBuf, ReadHalf, WriteHalf};

/// Bytes we hold for the socket before the XML stream must wait.
const MAX_BUFFERED: usize = 256 * 1024;

struct Writer<T> {
    half: WriteHalf<T>,
    out: Vec<u8>,
}

impl<T: AsyncRead + AsyncWrite> Writer<T> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            match Pin::new(&mut self.half).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.out.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut self.half).poll_flush(cx)
    }
}

struct State {
    cut: AtomicBool,
    reader: AtomicWaker,
    /// Writes a nonza now (at a boundary) and pushes it out.
    inject: Box<dyn Fn(Vec<u8>) + Send + Sync>,
}

/// The session's hold on the current connection (the newest one made).
#[derive(Clone, Default)]
pub struct LinkControl {
    current: Arc<Mutex<Option<Arc<State>>>>,
}

impl std::fmt::Debug for LinkControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkControl").finish_non_exhaustive()
    }
}

impl LinkControl {
    /// Makes the current connection fail as if the network had dropped it.
    pub fn cut(&self) {
        if let Some(state) = self.current.lock().ok().and_then(|c| c.clone()) {
            state.cut.store(true, Ordering::SeqCst);
            state.reader.wake();
        }
    }

    /// Writes `xml` (one complete top-level element) on the current connection.
    pub fn send_nonza(&self, xml: String) {
        if let Some(state) = self.current.lock().ok().and_then(|c| c.clone()) {
            if !state.cut.load(Ordering::SeqCst) {
                (state.inject)(xml.into_bytes());
            }
        }
    }

    /// Wraps a new connection's transport and makes it the current one.
    pub fn wrap<T>(&self, io: T) -> Link<T>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let writer = Arc::new(Mutex::new(Writer {
            half: write,
            out: Vec::new(),
        }));
        let for_inject = Arc::downgrade(&writer);
        let inject = move |bytes: Vec<u8>| {
            let Some(writer) = for_inject.upgrade() else {
                return;
            };
            if let Ok(mut w) = writer.lock() {
                w.out.extend_from_slice(&bytes);
            }
            // Push it out now: the XML stream writes only when it has stanzas.
            tokio::spawn(futures::future::poll_fn(move |cx| match writer.lock() {
                Ok(mut w) => w.drain(cx).map(|r| {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "cannot write a nonza");
                    }
                }),
                Err(_) => Poll::Ready(()),
            }));
        };
        let state = Arc::new(State {
            cut: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            inject: Box::new(inject),
        });
        if let Ok(mut current) = self.current.lock() {
            *current = Some(state.clone());
        }
        Link {
            reader: BufReader::new(read),
            writer,
            state,
        }
    }
}

/// A connection's transport, as the XML stream sees it.
pub struct Link<T> {
    reader: BufReader<ReadHalf<T>>,
    writer: Arc<Mutex<Writer<T>>>,
    state: Arc<State>,
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "no answer to keep-alive pings")
}

impl<T> Link<T> {
    fn check(&self, cx: &mut Context<'_>) -> io::Result<()> {
        self.state.reader.register(cx.waker());
        if self.state.cut.load(Ordering::SeqCst) {
            return Err(cut_error());
        }
        Ok(())
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for Link<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.reader).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncBufRead for Link<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.reader).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().reader).consume(amt)
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncWrite for Link<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(cut_error()));
        }
        let Ok(mut w) = this.writer.lock() else {
            return Poll::Ready(Err(io::Error::other("link poisoned")));
        };
        if w.out.len() >= MAX_BUFFERED {
            if let Poll::Ready(Err(e)) = w.drain(cx) {
                return Poll::Ready(Err(e));
            }
            if w.out.len() >= MAX_BUFFERED {
                return Poll::Pending;
            }
        }
        // All of it, always: see the module comment.
        w.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(cut_error()));
        }
        match this.writer.lock() {
            Ok(mut w) => w.drain(cx),
            Err(_) => Poll::Ready(Err(io::Error::other("link poisoned"))),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Ok(mut w) = this.writer.lock() else {
            return Poll::Ready(Err(io::Error::other("link poisoned")));
        };
        if !this.state.cut.load(Ordering::SeqCst) {
            std::task::ready!(w.drain(cx))?;
        }
        Pin::new(&mut w.half).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn nonzas_between_writes_and_cut() {
        let (a, mut b) = tokio::io::duplex(1024);
        let control = LinkControl::default();
        let mut link = control.wrap(a);
        link.write_all(b"<message/>").await.unwrap();
        link.flush().await.unwrap();
        control.send_nonza("<inactive xmlns='urn:xmpp:csi:0'/>".into());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        link.write_all(b"<iq/>").await.unwrap();
        link.flush().await.unwrap();
        let mut got = vec![0u8; 64];
        let mut seen = Vec::new();
        while seen.len() < 49 {
            let n = b.read(&mut got).await.unwrap();
            seen.extend_from_slice(&got[..n]);
        }
        assert_eq!(
            String::from_utf8(seen).unwrap(),
            "<message/><inactive xmlns='urn:xmpp:csi:0'/><iq/>"
        );
        b.write_all(b"<presence/>").await.unwrap();
        let mut one = [0u8; 4];
        link.read_exact(&mut one).await.unwrap();
        control.cut();
        assert!(link.read(&mut one).await.is_err(), "a cut link fails reads");
        assert!(link.write_all(b"<x/>").await.is_err(), "and writes");
    }
}
