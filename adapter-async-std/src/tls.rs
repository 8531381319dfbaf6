//! TLS on async-std (feature `tls`, on by default), with futures-rustls: `wss://` in
//! [`connect`](crate::connect), and servers over TLS ([`serve_tls`], [`serve_channels_tls`],
//! [`TlsListener`]).
//!
//! Everything from [`ferrule::tls`] is re-exported here: the choice of roots ([`ClientTls`]),
//! server configurations from PEM files ([`server_config_from_pem_files`]), and the rustls
//! and futures-rustls these are built with.
//!
//! ```no_run
//! use ferrule_async_std::{Ctx, Handler, HandlerError, Message, Options};
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
//! let tls = ferrule_async_std::tls::server_config_from_pem_files("cert.pem", "key.pem")?;
//! let listener = async_std::net::TcpListener::bind("0.0.0.0:443").await?;
//! let server = ferrule_async_std::serve_tls(listener, std::sync::Arc::new(tls), Options::default(), |_, _| Ok(Echo));
//! # Ok(()) }
//! ```

use std::future::Future;

use async_std::net::TcpListener;
use ferrule::tls::futures_rustls::TlsAcceptor;
pub use ferrule::tls::*;

use crate::{Acceptance, AsyncStd, Channels, Codec, Handler, Options, Rejection, Request, Server, TcpAcceptor};

/// A `async_std::net::TcpListener` serving TLS, as a [`Listener`](crate::Listener): each accepted socket
/// (with `TCP_NODELAY`) runs its TLS handshake in a task of its own, within the handshake timeout
/// (10 s unless set; [`serve_tls`] uses the options' `handshake_timeout`), at most
/// [`DEFAULT_MAX_HANDSHAKES`] at once unless set; only connections whose handshake succeeded come
/// out of it. A failed handshake is logged at `debug` and dropped. Make one with
/// [`tls_listener`].
pub type TlsListener = ferrule::tls::TlsListener<TcpAcceptor, AsyncStd>;

/// A [`TlsListener`] with `acceptor` (a `futures_rustls::TlsAcceptor`, or an
/// `Arc<rustls::ServerConfig>`) over `listener`'s connections.
pub fn tls_listener(listener: TcpListener, acceptor: impl Into<TlsAcceptor>) -> TlsListener {
    ferrule::tls::TlsListener::new(AsyncStd, TcpAcceptor::from(listener), acceptor)
}

/// [`serve`](crate::serve) over TLS: serves WebSocket upgrades (`wss://`) on `listener` with the
/// callback API, each connection's TLS handshake with `tls` (an `Arc<rustls::ServerConfig>`,
/// from [`server_config_from_pem_files`] say, or a `futures_rustls::TlsAcceptor`) within the
/// options' `handshake_timeout`.
pub fn serve_tls<F, H>(listener: TcpListener, tls: impl Into<TlsAcceptor>, options: Options, factory: F) -> Server
where
    // The closure's own signature, for the reason `serve` gives.
    F: Fn(&Request, &mut Acceptance) -> Result<H, Rejection> + Send + Sync + 'static,
    H: Handler,
{
    ferrule::tls::serve_tls(AsyncStd, TcpAcceptor::from(listener), tls, options, factory)
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
    ferrule::tls::serve_channels_tls(AsyncStd, TcpAcceptor::from(listener), tls, options, task)
}
