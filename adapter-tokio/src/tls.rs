//! TLS on tokio (feature `tls`, on by default): `wss://` in [`connect`](crate::connect) (with
//! futures-rustls, through [`MaybeTlsStream`](crate::MaybeTlsStream) as on the other runtimes),
//! and servers over TLS with tokio-rustls ([`serve_tls`], [`serve_channels_tls`],
//! [`TlsListener`]).
//!
//! Everything from [`ferrule::tls`] is re-exported here: the choice of roots ([`ClientTls`]),
//! server configurations from PEM files ([`server_config_from_pem_files`]), and the rustls,
//! futures-rustls and tokio-rustls these are built with.
//!
//! ```no_run
//! use ferrule_tokio::{Ctx, Handler, HandlerError, Message, Options};
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
//! let tls = ferrule_tokio::tls::server_config_from_pem_files("cert.pem", "key.pem")?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
//! let server = ferrule_tokio::serve_tls(listener, std::sync::Arc::new(tls), Options::default(), |_, _| Ok(Echo));
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

pub use ferrule::tls::*;
use tokio::net::{TcpListener, TcpStream};
pub use tokio_rustls;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{Acceptance, Channels, Codec, Compat, Handler, Listener, Options, Rejection, Request, Server, Tokio};

/// A tokio `TcpListener` serving TLS, as a [`Listener`]: each accepted socket (with
/// `TCP_NODELAY`) runs its TLS handshake in a task of its own, within the handshake timeout (10 s
/// unless set; [`serve_tls`] uses the options' `handshake_timeout`), at most
/// [`DEFAULT_MAX_HANDSHAKES`] at once unless set; only connections whose handshake succeeded come
/// out of it. A failed handshake is logged at `debug` and dropped.
pub struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: Handshakes<Compat<TlsStream<TcpStream>>>,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("listener", &self.listener)
            .field("handshakes", &self.handshakes)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// TLS with `acceptor` (a `tokio_rustls::TlsAcceptor`, or an `Arc<rustls::ServerConfig>`)
    /// over `listener`'s connections.
    pub fn new(listener: TcpListener, acceptor: impl Into<TlsAcceptor>) -> Self {
        let timeout = Options::default().handshake_timeout();
        let handshakes = Handshakes::new(timeout, DEFAULT_MAX_HANDSHAKES);
        Self { listener, acceptor: acceptor.into(), handshakes }
    }

    /// Sets the deadline of each TLS handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshakes.set_timeout(timeout);
        self
    }

    /// Sets how many TLS handshakes may run at once; past it, new connections wait in the
    /// kernel's backlog.
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.handshakes.set_max(max);
        self
    }
}

impl Listener for TlsListener {
    type Stream = Compat<TlsStream<TcpStream>>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>> {
        let Self { listener, acceptor, handshakes } = self;
        let accept = |cx: &mut Context<'_>| {
            listener.poll_accept(cx).map_ok(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                stream
            })
        };
        handshakes.poll_accept(cx, &Tokio, accept, |stream| {
            let handshake = acceptor.accept(stream);
            async move { handshake.await.map(Compat) }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// [`serve`](crate::serve) over TLS: serves WebSocket upgrades (`wss://`) on `listener` with the
/// callback API, each connection's TLS handshake with `tls` (an `Arc<rustls::ServerConfig>`,
/// from [`server_config_from_pem_files`] say, or a `tokio_rustls::TlsAcceptor`) within the
/// options' `handshake_timeout`. Must be called within a tokio runtime.
pub fn serve_tls<F, H>(listener: TcpListener, tls: impl Into<TlsAcceptor>, options: Options, factory: F) -> Server
where
    // The closure's own signature, for the reason `serve` gives.
    F: Fn(&Request, &mut Acceptance) -> Result<H, Rejection> + Send + Sync + 'static,
    H: Handler,
{
    let listener = TlsListener::new(listener, tls).handshake_timeout(options.handshake_timeout());
    ferrule::serve(Tokio, listener, options, factory)
}

/// [`serve_channels`](crate::serve_channels) over TLS, as [`serve_tls`] runs it.
pub fn serve_channels_tls<M, T, Fut>(
    listener: TcpListener,
    tls: impl Into<TlsAcceptor>,
    options: Options,
    task: T,
) -> Server
where
    M: Codec,
    T: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TlsListener::new(listener, tls).handshake_timeout(options.handshake_timeout());
    ferrule::serve_channels(Tokio, listener, options, task)
}
