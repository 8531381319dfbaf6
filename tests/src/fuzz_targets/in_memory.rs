//! An in-memory connection for the targets that run the async layer: a runtime polled by hand
//! and a stream whose input is all there from the start.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use ferrule::Runtime;
use futures_io::{AsyncRead, AsyncWrite};

/// A runtime whose timers never fire and whose tasks are never run: the connection under test
/// is polled by hand and spawns nothing.
#[derive(Clone, Default, Debug)]
pub(super) struct Manual;

impl Runtime for Manual {
    type Sleep = std::future::Pending<()>;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        std::future::pending()
    }

    fn reset(&self, _sleep: Pin<&mut Self::Sleep>, _deadline: Instant) {}

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _future: F) {
        unreachable!("the hub connection under test spawns nothing");
    }
}

/// The client's side of the stream: reads give `input` (then wait forever, as an idle peer);
/// writes are kept.
pub(super) struct Pipe {
    input: Vec<u8>,
    read: usize,
    /// Input bytes not yet read.
    pub(super) unread: Arc<AtomicUsize>,
    pub(super) written: Arc<Mutex<Vec<u8>>>,
}

impl Pipe {
    pub(super) fn new(input: Vec<u8>) -> Self {
        let unread = Arc::new(AtomicUsize::new(input.len()));
        Self { input, read: 0, unread, written: Arc::default() }
    }
}

impl AsyncRead for Pipe {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let rest = &self.input[self.read..];
        if rest.is_empty() {
            return Poll::Pending;
        }
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        self.unread.fetch_sub(n, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.written.lock().expect("not poisoned").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
