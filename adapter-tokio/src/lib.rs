//! # ferrule-tokio
//!
//! Runs [ferrule] WebSockets on tokio: the [`Tokio`] runtime (whose clock pauses with
//! `tokio::time::pause`, so keepalive and timeouts can be tested without waiting), a standalone
//! server on a `TcpListener` with graceful shutdown ([`serve`], [`serve_channels`]), [`accept`]
//! for any stream (TLS included), and [`connect`].
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
//! let server = ferrule_tokio::serve(listener, options, |_req: &ferrule_tokio::Request, _acc: &mut ferrule_tokio::Acceptance| Ok(Echo));
//! tokio::signal::ctrl_c().await?;
//! server.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use ferrule::*;
use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

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
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// An upgraded tokio connection.
pub type Connection<S = TcpStream> = Upgraded<Compat<S>, Tokio>;

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
) -> Result<(Connection<S>, T), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    ferrule::accept(Tokio, Compat(stream), options, on_connect).await
}

/// Connects to a `ws://` URL over TCP and performs the client handshake. For `wss://`, connect
/// a TLS stream yourself and use [`connect_stream`].
///
/// # Errors
///
/// [`Error::Handshake`] for an invalid URL or a refused handshake, [`Error::Io`] when the TCP
/// connection fails.
///
/// # Cancel safety
///
/// Cancel safe in the sense that matters: dropping it closes the half-open TCP connection and
/// leaves nothing behind.
pub async fn connect(url: &str, options: &Options) -> Result<Connection, Error> {
    let request = ClientRequest::new(url)?
        .subprotocols(options.subprotocols().to_vec())
        .map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))?;
    if request.is_secure() {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            "wss:// needs a TLS stream: connect one and use ferrule_tokio::connect_stream",
        )));
    }
    let stream = TcpStream::connect((request.host(), request.port())).await?;
    stream.set_nodelay(true)?;
    connect_stream(stream, request, options).await
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
pub async fn connect_stream<S>(stream: S, request: ClientRequest, options: &Options) -> Result<Connection<S>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    ferrule::connect_stream(Tokio, Compat(stream), request, options).await
}

/// A running standalone server: stop it with [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    registry: Arc<Registry>,
    local_addr: io::Result<SocketAddr>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Handle>>,
    /// Signalled when a connection leaves and when shutdown starts.
    changed: Notify,
    stop: Notify,
    stopping: std::sync::atomic::AtomicBool,
}

impl Registry {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Server {
    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// The error from `TcpListener::local_addr`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.local_addr {
            Ok(a) => Ok(*a),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.registry.live().len()
    }

    /// Graceful shutdown: stops accepting, closes every open connection with 1001 Going Away,
    /// and waits up to `deadline` for them to finish. Returns how many were still open then
    /// (their tasks end on their own close timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: accepting has stopped and the close frames are queued by the first poll;
    /// dropping the future only stops the waiting.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        self.registry.stopping.store(true, Ordering::SeqCst);
        self.registry.stop.notify_waiters();
        for handle in self.registry.live().values() {
            let _ = handle.close(CloseCode::GOING_AWAY, "server shutting down");
        }
        let wait = async {
            loop {
                let changed = self.registry.changed.notified();
                if self.registry.live().is_empty() {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.registry.live().len()
    }
}

/// Serves WebSocket upgrades on `listener` with the callback API: each accepted connection gets
/// a handler from `factory` and runs in its own task. Connections that fail the handshake get
/// the right HTTP status.
pub fn serve<F: HandlerFactory>(listener: TcpListener, options: Options, factory: F) -> Server {
    let factory = Arc::new(factory);
    spawn_server(listener, options, move |stream, options, registry| {
        let factory = factory.clone();
        async move {
            let (upgraded, handler) =
                accept(stream, &options, |request, acceptance| factory.on_connect(request, acceptance)).await?;
            let id = registry.insert(upgraded.handle());
            let info = upgraded.run(handler).await;
            registry.remove(id);
            Ok(info)
        }
    })
}

/// Serves WebSocket upgrades on `listener` with the channel API: for each accepted connection,
/// `task(request, channels)` runs in its own task. When it returns, the connection is closed
/// with 1001 (its receiver is dropped).
///
/// # Example: a JSON echo with a 30-minute cap, as one `select!` loop
///
/// ```no_run
/// use std::time::Duration;
/// use ferrule_tokio::{Channels, CloseCode, Json, Options, Request};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Chat {
///     user: String,
///     text: String,
/// }
///
/// async fn connection(_request: Request, mut ws: Channels<Json<Chat>>) {
///     let cap = tokio::time::sleep(Duration::from_secs(30 * 60));
///     tokio::pin!(cap);
///     loop {
///         tokio::select! {
///             // A message that is not valid JSON for `Chat` goes to `errors`, not here.
///             Some(message) = ws.receiver.recv() => {
///                 if ws.sender.send(message).await.is_err() {
///                     return; // closing
///                 }
///             }
///             () = &mut cap => {
///                 // Close after 30 minutes, whatever happens.
///                 let _ = ws.disconnect.disconnect(CloseCode::NORMAL, "time is up");
///             }
///             info = ws.done.clone() => {
///                 println!("closed: clean={} code={}", info.was_clean, info.code);
///                 return;
///             }
///             Some(error) = ws.errors.recv() => {
///                 println!("error: {error}");
///             }
///         }
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let server = ferrule_tokio::serve_channels(listener, Options::default(), connection);
/// # Ok(())
/// # }
/// ```
pub fn serve_channels<M, T, Fut>(listener: TcpListener, options: Options, task: T) -> Server
where
    M: Codec,
    T: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let task = Arc::new(task);
    spawn_server(listener, options, move |stream, options, registry| {
        let task = task.clone();
        async move {
            let (upgraded, request) = accept(stream, &options, |request, _| Ok(request.clone())).await?;
            let id = registry.insert(upgraded.handle());
            let channels = upgraded.channels::<M>();
            let done = channels.done.clone();
            task(request, channels).await;
            let info = done.await;
            registry.remove(id);
            Ok(info)
        }
    })
}

impl Registry {
    fn insert(&self, handle: Handle) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self.stopping.load(Ordering::SeqCst) {
            let _ = handle.close(CloseCode::GOING_AWAY, "server shutting down");
        }
        self.live().insert(id, handle);
        id
    }

    fn remove(&self, id: u64) {
        self.live().remove(&id);
        self.changed.notify_waiters();
    }
}

fn spawn_server<C, Fut>(listener: TcpListener, options: Options, per_connection: C) -> Server
where
    C: Fn(TcpStream, Arc<Options>, Arc<Registry>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CloseInfo, Error>> + Send + 'static,
{
    let registry = Arc::new(Registry::default());
    let options = Arc::new(options);
    let local_addr = listener.local_addr();
    let accept_registry = registry.clone();
    tokio::spawn(async move {
        let registry = accept_registry;
        loop {
            let stop = registry.stop.notified();
            if registry.stopping.load(Ordering::SeqCst) {
                break;
            }
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stop => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let connection = per_connection(stream, options.clone(), registry.clone());
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended before the upgrade");
                }
            });
        }
    });
    Server { registry, local_addr }
}
