//! # ferrule-tokio
//!
//! Runs [ferrule] WebSockets on tokio: the [`Tokio`] runtime (whose clock pauses with
//! `tokio::time::pause`, so keepalive and timeouts can be tested without waiting), a standalone
//! server on a `TcpListener` with graceful shutdown ([`serve`], [`serve_channels`]), [`accept`]
//! for any stream, and [`connect`]. With feature `tls` (on by default), `connect` takes
//! `wss://` URLs and [`serve_tls`] serves over TLS (see [`tls`]).
//!
//! Everything from `ferrule` is re-exported: depend on this crate alone.
//!
//! ```no_run
//! use ferrule_tokio::{Ctx, Handler, HandlerError, Message, Options, OriginPolicy};
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
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build()?;
//! let server = ferrule_tokio::serve(listener, options, |_, _| Ok(Echo));
//! tokio::signal::ctrl_c().await?;
//! server.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "tls")]
pub mod tls;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use ferrule::*;
#[cfg(feature = "tls")]
pub use tls::{TlsListener, serve_channels_tls, serve_tls};

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "hyper")]
pub mod hyper;
use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpStream};

/// The tokio [`Runtime`]: tokio's clock (pausable in tests), timers and `tokio::spawn`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type Sleep = tokio::time::Sleep;

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.into())
    }

    fn reset(&self, sleep: Pin<&mut Self::Sleep>, deadline: Instant) {
        sleep.reset(deadline.into());
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(future);
    }
}

/// Adapts a tokio stream to the futures-io traits the driver uses.
#[derive(Debug)]
pub struct Compat<T>(pub T);

impl<T: tokio::io::AsyncRead + Unpin> futures_io::AsyncRead for Compat<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> futures_io::AsyncWrite for Compat<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The stream [`connect`] runs a WebSocket over: the TCP stream itself for `ws://`, or TLS over
/// it for `wss://` (feature `tls`, with futures-rustls), the tokio stream `S` adapted by
/// [`Compat`]. [`MaybeTlsStream::connect`](ferrule::MaybeTlsStream::connect) puts a connected
/// stream under TLS when the request's URL asks for it.
pub type MaybeTlsStream<S = TcpStream> = ferrule::MaybeTlsStream<Compat<S>>;

/// A WebSocket whose opening handshake succeeded on tokio, not yet running: run it with a
/// [`Handler`] ([`Upgraded::run`], [`Upgraded::spawn`]) or take its [`Channels`]
/// ([`Upgraded::channels`]). [`connect`] returns a `WebSocket` (over a [`MaybeTlsStream`]);
/// [`accept`] and [`connect_stream`] over a tokio stream `S` return a `WebSocket<Compat<S>>`.
///
/// It runs the protocol state machine [`ferrule::core::Connection`] over the stream `S` (the
/// futures-io traits, as on every runtime).
pub type WebSocket<S = MaybeTlsStream> = Upgraded<S, Tokio>;

/// Accepts a WebSocket upgrade on any tokio stream (plain TCP, TLS, ...): see
/// [`ferrule::accept`].
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
) -> Result<(WebSocket<Compat<S>>, T), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    ferrule::accept(Tokio, Compat(stream), options, on_connect).await
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
/// # async fn run() -> Result<(), ferrule_tokio::Error> {
/// let request = ferrule_tokio::ClientRequest::new("ws://127.0.0.1:9001/chat")?
///     .header("Authorization", "Bearer 0123")
///     .expect("a valid header");
/// let connection = ferrule_tokio::connect_request(request, &ferrule_tokio::Options::default()).await?;
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
    let stream = TcpStream::connect((request.host(), request.port())).await?;
    stream.set_nodelay(true)?;
    let stream = MaybeTlsStream::connect(&Tokio, Compat(stream), &request, options).await?;
    ferrule::connect_stream(Tokio, stream, request, options).await
}

/// Performs the client handshake for `request` on an already connected tokio stream.
///
/// # Errors
///
/// As [`ferrule::connect_stream`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping it mid-handshake leaves the stream with the handshake half done.
pub async fn connect_stream<S>(
    stream: S,
    request: ClientRequest,
    options: &Options,
) -> Result<WebSocket<Compat<S>>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    ferrule::connect_stream(Tokio, Compat(stream), request, options).await
}

/// A running tokio server: stop it with [`Server::shutdown`](ferrule::Server::shutdown).
pub type Server = ferrule::Server<Tokio>;

/// A tokio `TcpListener` as a [`Listener`]: accepted sockets get `TCP_NODELAY`.
#[derive(Debug)]
pub struct TcpAcceptor(pub TcpListener);

impl Listener for TcpAcceptor {
    type Stream = Compat<TcpStream>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>> {
        self.0.poll_accept(cx).map_ok(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            Compat(stream)
        })
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

/// Serves WebSocket upgrades on `listener` with the callback API. Each upgrade request that
/// passes the protocol and origin checks goes to `factory(request, acceptance)`, which returns
/// the connection's [`Handler`] (it then runs in its own task) or a [`Rejection`] (sent as the
/// HTTP response). Connections that fail the handshake get the right HTTP status.
/// Must be called within a tokio runtime.
///
/// `factory` is a closure whose arguments need no type annotations: they are the
/// [`Request`] and the [`Acceptance`], where the subprotocol can be chosen and headers added to
/// the `101` response. A type that implements [`HandlerFactory`] is passed as
/// `move |request, acceptance| factory.on_connect(request, acceptance)`.
///
/// ```no_run
/// use ferrule_tokio::{Ctx, Handler, HandlerError, Message, Options, Rejection};
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
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let server = ferrule_tokio::serve(listener, Options::default(), |request, _acceptance| {
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
    ferrule::serve(Tokio, TcpAcceptor(listener), options, factory)
}

/// Serves WebSocket upgrades on `listener` with the channel API: for each accepted connection,
/// `task(request, channels)` runs in its own task. When it returns, the connection is closed
/// with 1001 (its receiver is dropped).
///
/// # Example: a JSON echo with a 30-minute cap, as one `select!` loop
///
/// `examples/json_echo.rs`, run with `cargo run -p ferrule-tokio --example json_echo`. Mind the
/// timer's branch: a tokio timer that fired stays ready, so the loop leaves after it instead of
/// polling it again.
///
/// ```no_run
#[doc = include_str!("../examples/json_echo.rs")]
/// ```
pub fn serve_channels<M, T, Fut>(listener: TcpListener, options: Options, task: T) -> Server
where
    M: Codec,
    T: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    ferrule::serve_channels(Tokio, TcpAcceptor(listener), options, task)
}
