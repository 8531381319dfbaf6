//! TCP for runtimes built on the async-io reactor (smol, async-std), with feature `async-io`.
//!
//! async-io's own `Async<TcpStream>` tries every read first and waits for readiness only after
//! the kernel said "would block", so a server answering one message at a time makes two read
//! calls per message, the second of them wasted. [`TcpStream`] remembers that a read came back
//! short (the kernel's buffer is drained) and goes straight to waiting the next time, as tokio's
//! reactor does; one read per message is left. Waiting itself costs what async-io's reactor
//! charges for it (it re-arms the socket with `epoll_ctl` after every event).
//!
//! [`TcpAcceptor`] serves a listener with [`serve`](crate::serve), yielding such streams with
//! `TCP_NODELAY` set.

use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ::async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};

use crate::server::Listener;

/// A TCP stream on the async-io reactor that skips the read call which would only report "would
/// block" (see the [module documentation](self)).
///
/// Made from async-io's `Async<std::net::TcpStream>` or, through `Arc<Async<..>>`, from the
/// stream types of smol and async-net (`smol::net::TcpStream` converts into one).
#[derive(Debug)]
pub struct TcpStream {
    io: Arc<Async<std::net::TcpStream>>,
    /// The last read returned less than it asked for: the kernel's buffer was empty after it.
    drained: bool,
}

impl TcpStream {
    /// Registers a connected standard-library stream with the reactor (it is made
    /// non-blocking).
    ///
    /// # Errors
    ///
    /// The reactor's error when it refuses the socket.
    pub fn new(stream: std::net::TcpStream) -> io::Result<Self> {
        Async::new(stream).map(Self::from)
    }

    /// The standard-library stream, to query addresses or set socket options.
    pub fn get_ref(&self) -> &std::net::TcpStream {
        self.io.get_ref()
    }
}

impl From<Async<std::net::TcpStream>> for TcpStream {
    fn from(io: Async<std::net::TcpStream>) -> Self {
        Arc::new(io).into()
    }
}

impl From<Arc<Async<std::net::TcpStream>>> for TcpStream {
    fn from(io: Arc<Async<std::net::TcpStream>>) -> Self {
        Self { io, drained: false }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if self.drained {
                ready!(self.io.poll_readable(cx))?;
                self.drained = false;
            }
            match (&mut self.io.get_ref()).read(buf) {
                Ok(n) => {
                    // A short read emptied the kernel's buffer: next time, wait before reading.
                    self.drained = n > 0 && n < buf.len();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_flush(cx)
    }

    /// Shuts down the write half (the peer reads end of stream). async-io's own `poll_close`
    /// only flushes, which would leave the peer waiting until the socket is dropped.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut &*self.io).poll_flush(cx))?;
        Poll::Ready(self.io.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// A TCP listener on the async-io reactor as a [`Listener`]: accepted sockets get `TCP_NODELAY`
/// and become [`TcpStream`]s.
///
/// Made from async-io's `Async<std::net::TcpListener>` or, through `Arc<Async<..>>`, from
/// `smol::net::TcpListener`.
#[derive(Debug)]
pub struct TcpAcceptor(Arc<Async<std::net::TcpListener>>);

impl From<Async<std::net::TcpListener>> for TcpAcceptor {
    fn from(listener: Async<std::net::TcpListener>) -> Self {
        Self(Arc::new(listener))
    }
}

impl From<Arc<Async<std::net::TcpListener>>> for TcpAcceptor {
    fn from(listener: Arc<Async<std::net::TcpListener>>) -> Self {
        Self(listener)
    }
}

impl Listener for TcpAcceptor {
    type Stream = TcpStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        loop {
            match self.0.get_ref().accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Poll::Ready(TcpStream::new(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(self.0.poll_readable(cx))?,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}
