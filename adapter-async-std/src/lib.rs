//! # ferrule-async-std
//!
//! Runs [ferrule] WebSockets on async-std: the [`AsyncStd`] runtime (async-io timers, tasks on
//! async-std's executor), a standalone server on an `async_std::net::TcpListener` with graceful
//! shutdown ([`serve`], [`serve_channels`]), [`accept`] for any stream (TLS included), and
//! [`connect`].
//!
//! **async-std is discontinued upstream** ([RUSTSEC-2025-0052]): it gets no more fixes. This
//! crate stays for applications that still run on it, and is kept small by standing on the same
//! async-io basis as `ferrule-smol` (async-std's own sockets and timers are async-io's). **For
//! new code use `ferrule-smol`**: moving over changes the dependency and the runtime's own lines
//! (binding the listener, `block_on`, `spawn`), nothing else.
//!
//! Accepted and connected sockets are [`TcpStream`]s from `ferrule::async_io_tcp`: async-io
//! sockets that skip the read call which would only report "would block", so an echo costs one
//! read instead of two.
//!
//! Everything from `ferrule` is re-exported: depend on this crate alone. The API has the shape of
//! `ferrule-tokio`'s: compare `examples/echo.rs` in the crates.
//!
//! async-std's clock cannot be paused: to test keepalive and timeouts without waiting, give the
//! library a [`Runtime`] of your own that spawns on async-std and keeps a virtual clock (ferrule's
//! own tests do). async-std has no signal handling of its own; a crate such as `async-signal`
//! adds it.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use ferrule_async_std::{Ctx, Handler, HandlerError, Message, Options, OriginPolicy};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
//!         ctx.send(&message)?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async_std::task::block_on(async {
//!     let listener = async_std::net::TcpListener::bind("127.0.0.1:9001").await?;
//!     let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build()?;
//!     let server = ferrule_async_std::serve(listener, options, |_, _| Ok(Echo));
//!     async_std::task::sleep(Duration::from_secs(60)).await;
//!     server.shutdown(Duration::from_secs(5)).await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! [RUSTSEC-2025-0052]: https://rustsec.org/advisories/RUSTSEC-2025-0052.html

use std::fmt;
#[cfg(feature = "tls")]
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use async_std::net::TcpListener;
use async_std::stream::Stream;
pub use ferrule::async_io_tcp::TcpStream;
pub use ferrule::*;
use futures_io::{AsyncRead, AsyncWrite};
#[cfg(feature = "tls")]
pub use tls::{TlsListener, serve_channels_tls, serve_tls};

/// The async-std [`Runtime`]: the wall clock, async-io timers (the ones async-std's own
/// `task::sleep` uses) and `async_std::task::spawn`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Sleep = Sleep;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep(Timer::at(deadline))
    }

    fn reset(&self, sleep: Pin<&mut Sleep>, deadline: Instant) {
        sleep.get_mut().0.set_at(deadline);
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Dropping the join handle detaches the task.
        async_std::task::spawn(future);
    }
}

/// [`AsyncStd`]'s timer: an async-io `Timer` that completes with `()` at its deadline.
#[derive(Debug)]
pub struct Sleep(Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

/// A WebSocket whose opening handshake succeeded on async-std, not yet running: run it with a
/// [`Handler`] ([`Upgraded::run`], [`Upgraded::spawn`]) or take its [`Channels`]
/// ([`Upgraded::channels`]). [`accept`], [`connect`] and [`connect_stream`] return one.
///
/// It runs the protocol state machine [`ferrule::core::Connection`] over the stream `S`.
pub type WebSocket<S = MaybeTlsStream<TcpStream>> = Upgraded<S, AsyncStd>;

/// Accepts a WebSocket upgrade on any stream (plain TCP, TLS, ...): see [`ferrule::accept`].
///
/// # Errors
///
/// As [`ferrule::accept`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping it mid-handshake drops the stream with the handshake half done.
/// Bound it with `Options::handshake_timeout` rather than by cancelling.
pub async fn accept<S, T>(
    stream: S,
    options: &Options,
    on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
) -> Result<(WebSocket<S>, T), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    ferrule::accept(AsyncStd, stream, options, on_connect).await
}

/// Connects to a `ws://` URL over TCP, or a `wss://` URL over TLS (feature `tls`; the roots
/// trusted are [`Options::tls`]'s), and performs the client handshake.
///
/// # Errors
///
/// [`Error::Handshake`] for an invalid URL or a refused handshake (and for `wss://` without
/// feature `tls`), [`Error::Tls`] for a server certificate that does not name the URL's host or
/// that no trusted root signed, [`Error::Io`] when the TCP connection fails.
///
/// # Cancel safety
///
/// Cancel safe in the sense that matters: dropping it closes the half-open TCP connection and
/// leaves nothing behind.
pub async fn connect(url: &str, options: &Options) -> Result<WebSocket, Error> {
    connect_request(ClientRequest::new(url)?, options).await
}

/// Connects over TCP (TLS for `wss://`) to the host of `request` (a URL with extra headers, such as a
/// cookie or an authorization token) and performs the client handshake, offering the options'
/// subprotocols.
///
/// ```no_run
/// # async fn run() -> Result<(), ferrule_async_std::Error> {
/// let request = ferrule_async_std::ClientRequest::new("ws://127.0.0.1:9001/chat")?
///     .header("Authorization", "Bearer 0123")
///     .expect("a valid header");
/// let connection = ferrule_async_std::connect_request(request, &ferrule_async_std::Options::default()).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`connect`].
///
/// # Cancel safety
///
/// As [`connect`].
pub async fn connect_request(request: ClientRequest, options: &Options) -> Result<WebSocket, Error> {
    #[cfg(feature = "tls")]
    let request = client_request(request, options)?;
    #[cfg(not(feature = "tls"))]
    let request = tcp_client_request(request, options)?;
    let stream = async_std::net::TcpStream::connect((request.host(), request.port())).await?;
    stream.set_nodelay(true)?;
    let stream = MaybeTlsStream::connect(&AsyncStd, into_stream(stream)?, &request, options).await?;
    connect_stream(stream, request, options).await
}

/// Performs the client handshake for `request` on an already connected stream.
///
/// # Errors
///
/// As [`ferrule::connect_stream`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping it mid-handshake leaves the stream with the handshake half done.
pub async fn connect_stream<S>(stream: S, request: ClientRequest, options: &Options) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    ferrule::connect_stream(AsyncStd, stream, request, options).await
}

/// A running async-std server: stop it with [`Server::shutdown`](ferrule::Server::shutdown).
pub type Server = ferrule::Server<AsyncStd>;

/// Moves an async-std stream onto ferrule's async-io [`TcpStream`] (the same reactor underneath),
/// which skips the reads that would only report "would block".
fn into_stream(stream: async_std::net::TcpStream) -> io::Result<TcpStream> {
    TcpStream::new(std::net::TcpStream::try_from(stream)?)
}

/// An async-std `TcpListener` as a [`Listener`]: accepted sockets get `TCP_NODELAY` and become
/// ferrule's async-io [`TcpStream`]s.
///
/// It polls the listener's own `accept` (async-io's, underneath) as one stream, which is what
/// async-std's `into_incoming` does behind its `unstable` feature. A socket the reactor refuses
/// is reported as an accept error, never a panic.
pub struct TcpAcceptor {
    incoming: Pin<Box<dyn Stream<Item = io::Result<async_std::net::TcpStream>> + Send>>,
    local_addr: Result<SocketAddr, (io::ErrorKind, String)>,
}

impl fmt::Debug for TcpAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpAcceptor").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl From<TcpListener> for TcpAcceptor {
    fn from(listener: TcpListener) -> Self {
        let local_addr = listener.local_addr().map_err(|e| (e.kind(), e.to_string()));
        let incoming = futures_lite::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        Self { incoming: Box::pin(incoming), local_addr }
    }
}

impl Listener for TcpAcceptor {
    type Stream = TcpStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        match self.incoming.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(stream))) => {
                let _ = stream.set_nodelay(true);
                Poll::Ready(into_stream(stream))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(e)),
            // The stream never ends; if it did, the server would log it and back off.
            Poll::Ready(None) => Poll::Ready(Err(io::Error::other("the listener stopped accepting"))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.local_addr.clone().map_err(|(kind, message)| io::Error::new(kind, message))
    }
}

/// Serves WebSocket upgrades on `listener` with the callback API. Each upgrade request that
/// passes the protocol and origin checks goes to `factory(request, acceptance)`, which returns
/// the connection's [`Handler`] (it then runs in its own task) or a [`Rejection`] (sent as the
/// HTTP response). Connections that fail the handshake get the right HTTP status.
///
/// `factory` is a closure whose arguments need no type annotations: they are the
/// [`Request`] and the [`Acceptance`], where the subprotocol can be chosen and headers added to
/// the `101` response. A type that implements [`HandlerFactory`] is passed as
/// `move |request, acceptance| factory.on_connect(request, acceptance)`.
///
/// ```no_run
/// use ferrule_async_std::{Ctx, Handler, HandlerError, Message, Options, Rejection};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
///         ctx.send(&message)?;
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = async_std::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let server = ferrule_async_std::serve(listener, Options::default(), |request, _acceptance| {
///     if request.path() != "/echo" {
///         return Err(Rejection::new(404, "no WebSocket here"));
///     }
///     Ok(Echo)
/// });
/// # Ok(()) }
/// ```
pub fn serve<F, H>(listener: TcpListener, options: Options, factory: F) -> Server
where
    // The closure's own signature, not `F: HandlerFactory`: Rust gives a closure argument
    // lifetimes that hold for every call only when the expected type at the closure is an `Fn`
    // bound; through the blanket impl of `HandlerFactory` it would fix one lifetime and fail with
    // "implementation of `FnOnce` is not general enough" unless every argument were annotated.
    F: Fn(&Request, &mut Acceptance) -> Result<H, Rejection> + Send + Sync + 'static,
    H: Handler,
{
    ferrule::serve(AsyncStd, TcpAcceptor::from(listener), options, factory)
}

/// Serves WebSocket upgrades on `listener` with the channel API: for each accepted connection,
/// `task(request, channels)` runs in its own task. When it returns, the connection is closed
/// with 1001 (its receiver is dropped).
///
/// # Example: an echo that says goodbye after ten messages
///
/// ```no_run
/// use ferrule_async_std::{Channels, CloseCode, Options, Request};
///
/// async fn connection(_request: Request, mut ws: Channels<String>) {
///     for _ in 0..10 {
///         let Some(message) = ws.receiver.recv().await else { return };
///         if ws.sender.send(message).await.is_err() {
///             return; // closing
///         }
///     }
///     let _ = ws.disconnect.disconnect(CloseCode::NORMAL, "that will do");
///     let info = ws.done.await;
///     println!("closed: clean={} code={}", info.was_clean, info.code);
/// }
///
/// # fn main() -> std::io::Result<()> {
/// async_std::task::block_on(async {
///     let listener = async_std::net::TcpListener::bind("127.0.0.1:9001").await?;
///     let server = ferrule_async_std::serve_channels(listener, Options::default(), connection);
///     # let _ = server;
///     Ok(())
/// })
/// # }
/// ```
pub fn serve_channels<M, T, Fut>(listener: TcpListener, options: Options, task: T) -> Server
where
    M: Codec,
    T: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ferrule::serve_channels(AsyncStd, TcpAcceptor::from(listener), options, task)
}
