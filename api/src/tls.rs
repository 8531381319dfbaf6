//! TLS for `wss://` (feature `tls`): the pieces every runtime shares.
//!
//! ferrule runs TLS with [rustls] and its `ring` crypto provider, which every configuration built
//! here takes explicitly ([`crypto_provider`]), so no process-wide provider has to be installed
//! and none can be missing.
//!
//! - Clients: [`ClientTls`] (set with [`OptionsBuilder::tls`](crate::OptionsBuilder::tls)) says
//!   which certificates a client trusts: Mozilla's roots compiled in (the default), the operating
//!   system's verifier, or a `rustls::ClientConfig` of the caller's. The adapters' `connect` uses
//!   it for every `wss://` URL, and reports a certificate that does not name the URL's host, or
//!   that no trusted root signed, as [`Error::Tls`] with the rustls error.
//! - Servers: [`server_config`] and [`server_config_from_pem_files`] make a
//!   `rustls::ServerConfig` from a certificate chain and its key. The adapters' TLS listeners
//!   (`serve_tls`, `TlsListener`) run each connection's TLS handshake in a task of its own, under
//!   a deadline and with a bound on how many run at once ([`Handshakes`]), so a peer that says
//!   nothing holds nothing for long and never stalls the accept loop.
//!
//! The rustls this crate is built with is re-exported as [`rustls`](mod@rustls), so its types
//! always match.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ferrule_core::handshake::{ClientRequest, HandshakeError, UrlError};
pub use rustls;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::Error;
use crate::options::Options;
use crate::runtime::Runtime;
#[cfg(feature = "futures-rustls")]
pub use futures_rustls;
#[cfg(feature = "futures-rustls")]
pub use futures_tls::{TlsListener, connect, serve_channels_tls, serve_tls};

/// How many TLS handshakes a server runs at once unless told otherwise: past it, it stops
/// accepting (new connections wait in the kernel's backlog) until one finishes.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// The ALPN protocol ferrule's own configurations announce: WebSocket runs over HTTP/1.1
/// (RFC 6455 section 4.1), so a server that also speaks HTTP/2 must not pick `h2`.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider of every configuration ferrule builds: rustls's `ring` provider. Use it
/// for configurations of your own (`ClientConfig::builder_with_provider(crypto_provider())`),
/// so they need no process-wide default either.
///
/// `ring` builds with a C compiler alone, where `aws-lc-rs` also needs cmake and takes minutes;
/// it has no post-quantum key exchange (X25519MLKEM768). For that, build a configuration with
/// the `aws-lc-rs` provider and pass it as [`ClientTls::Config`] or to `serve_tls`.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    // rustls 0.23.48 deprecates the `ring` provider for its lack of post-quantum key exchange
    // (above); it is still the supported classical provider, and the one that builds cheaply.
    #[allow(deprecated)]
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// Which server certificates a `wss://` client trusts ([`Options::tls`]).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum ClientTls {
    /// Mozilla's root certificates, compiled in (the `webpki-roots` crate): the same trust on
    /// every machine, whatever its certificate store holds. The default.
    #[default]
    WebPkiRoots,
    /// The operating system's certificate verifier (the `rustls-platform-verifier` crate): the
    /// roots an administrator installed, and the platform's revocation checks where it has them.
    /// Feature `tls-platform-verifier`.
    #[cfg(feature = "tls-platform-verifier")]
    Platform,
    /// A configuration of your own: a private CA's roots, a client certificate, other ALPN
    /// protocols, another crypto provider. Used as it is.
    Config(Arc<ClientConfig>),
}

impl ClientTls {
    /// The rustls configuration a client connects with. The built-in ones are made once per
    /// process and announce ALPN `http/1.1`.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when rustls cannot build it (the platform verifier found no usable
    /// certificate store, say).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        type Built = OnceLock<Result<Arc<ClientConfig>, rustls::Error>>;
        let built = match self {
            Self::Config(config) => return Ok(config.clone()),
            Self::WebPkiRoots => {
                static WEBPKI: Built = OnceLock::new();
                WEBPKI.get_or_init(|| {
                    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
                    let config = ClientConfig::builder_with_provider(crypto_provider())
                        .with_safe_default_protocol_versions()?
                        .with_root_certificates(roots)
                        .with_no_client_auth();
                    Ok(with_http11(config))
                })
            }
            #[cfg(feature = "tls-platform-verifier")]
            Self::Platform => {
                static PLATFORM: Built = OnceLock::new();
                PLATFORM.get_or_init(|| {
                    let verifier = rustls_platform_verifier::Verifier::new(crypto_provider())?;
                    let config = ClientConfig::builder_with_provider(crypto_provider())
                        .with_safe_default_protocol_versions()?
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(verifier))
                        .with_no_client_auth();
                    Ok(with_http11(config))
                })
            }
        };
        built.clone().map_err(Error::Tls)
    }
}

fn with_http11(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

/// A server configuration for `certificate_chain` (the server's own certificate first, then the
/// intermediates) and its private key, with ferrule's [`crypto_provider`], TLS 1.2 and 1.3, and
/// no client certificates. Wrap it in an `Arc` for the adapters' `serve_tls`.
///
/// # Errors
///
/// [`Error::Tls`] when the key does not fit the certificate or rustls cannot use either.
pub fn server_config(
    certificate_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, Error> {
    ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(certificate_chain, key)
        .map_err(Error::Tls)
}

/// [`server_config`] from PEM files: `certificates` holds the chain (`CERTIFICATE` blocks, the
/// server's own first), `key` one private key (PKCS #8, PKCS #1 or SEC1).
///
/// # Errors
///
/// [`Error::Io`] when a file cannot be read or holds no usable PEM (kind `InvalidData`), and
/// the errors of [`server_config`].
pub fn server_config_from_pem_files(
    certificates: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<ServerConfig, Error> {
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(e) => Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        e => Error::Io(io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
    };
    let (certificates, key) = (certificates.as_ref(), key.as_ref());
    let chain = CertificateDer::pem_file_iter(certificates)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(certificates, e))?;
    if chain.is_empty() {
        let message = format!("{}: no CERTIFICATE in the file", certificates.display());
        return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidData, message)));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    server_config(chain, key)
}

/// The name a client checks the server's certificate against: the URL's host, a DNS name or an
/// IP address (RFC 6125).
///
/// # Errors
///
/// [`Error::Handshake`] with [`UrlError::InvalidHost`] for a host that is neither.
pub fn server_name(request: &ClientRequest) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(request.host().to_owned())
        .map_err(|_| Error::Handshake(HandshakeError::InvalidUrl(UrlError::InvalidHost)))
}

/// Runs a client's TLS handshake for `request`, as the adapters' `connect` do:
/// `handshake(config, name)` gets the configuration [`Options::tls`] names and the URL's host, and
/// must finish within the options' `handshake_timeout`.
///
/// # Errors
///
/// [`Error::Tls`] for a rejected certificate or any other TLS failure, [`Error::Handshake`] with
/// [`HandshakeError::Timeout`] past the deadline, and the errors of [`ClientTls::client_config`]
/// and [`server_name`].
pub async fn client_handshake<R, F, S>(
    runtime: &R,
    request: &ClientRequest,
    options: &Options,
    handshake: impl FnOnce(Arc<ClientConfig>, ServerName<'static>) -> F,
) -> Result<S, Error>
where
    R: Runtime,
    F: Future<Output = io::Result<S>>,
{
    let config = options.tls().client_config()?;
    let name = server_name(request)?;
    match within(runtime, options.handshake_timeout(), handshake(config, name)).await {
        Some(result) => result.map_err(Error::from),
        None => Err(Error::Handshake(HandshakeError::Timeout)),
    }
}

/// The TLS handshakes a server's listener has started and not yet handed over: each runs in a
/// task of its own on the runtime, under a deadline, and at most `max` run at once. The adapters'
/// TLS listeners are built on it; a listener for another TLS stack can be too.
///
/// A handshake that fails or passes its deadline is logged (`debug`) and dropped with its
/// connection: the accept loop never sees it. Dropping the set drops every connection whose
/// handshake finishes afterwards.
pub struct Handshakes<S> {
    queue: Arc<Mutex<Queue<S>>>,
    timeout: Duration,
    max: usize,
}

struct Queue<S> {
    /// Connections whose handshake succeeded, in the order they did.
    ready: VecDeque<S>,
    in_flight: usize,
    /// The listener's task, woken when a handshake ends.
    waker: Option<Waker>,
    /// The set was dropped: finished handshakes drop their connection.
    closed: bool,
}

impl<S> fmt::Debug for Handshakes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = lock(&self.queue);
        f.debug_struct("Handshakes")
            .field("timeout", &self.timeout)
            .field("max", &self.max)
            .field("in_flight", &queue.in_flight)
            .field("ready", &queue.ready.len())
            .finish()
    }
}

impl<S: Send + 'static> Handshakes<S> {
    /// An empty set whose handshakes must finish within `timeout`, at most `max` at once (at
    /// least one).
    pub fn new(timeout: Duration, max: usize) -> Self {
        let queue = Queue { ready: VecDeque::new(), in_flight: 0, waker: None, closed: false };
        Self { queue: Arc::new(Mutex::new(queue)), timeout, max: max.max(1) }
    }

    /// Sets the deadline of the handshakes started from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sets how many handshakes may run at once (at least one).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }

    /// Polls for the next connection whose handshake succeeded, accepting more while there is
    /// room: `poll_accept` polls the transport's listener, and `handshake` starts the TLS
    /// handshake of what it accepted, which then runs on `runtime`.
    ///
    /// # Errors
    ///
    /// Only `poll_accept`'s own errors; a failed handshake is dropped, never reported.
    pub fn poll_accept<R, T, F>(
        &mut self,
        cx: &mut Context<'_>,
        runtime: &R,
        mut poll_accept: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
        mut handshake: impl FnMut(T) -> F,
    ) -> Poll<io::Result<S>>
    where
        R: Runtime,
        F: Future<Output = io::Result<S>> + Send + 'static,
    {
        loop {
            {
                let mut queue = lock(&self.queue);
                if let Some(stream) = queue.ready.pop_front() {
                    return Poll::Ready(Ok(stream));
                }
                match &mut queue.waker {
                    Some(w) => w.clone_from(cx.waker()),
                    none => *none = Some(cx.waker().clone()),
                }
                if queue.in_flight >= self.max {
                    // Woken when one ends.
                    return Poll::Pending;
                }
            }
            match poll_accept(cx) {
                Poll::Ready(Ok(transport)) => self.start(runtime, handshake(transport)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn start<R, F>(&self, runtime: &R, handshake: F)
    where
        R: Runtime,
        F: Future<Output = io::Result<S>> + Send + 'static,
    {
        lock(&self.queue).in_flight += 1;
        let queue = self.queue.clone();
        let timeout = self.timeout;
        let task_runtime = runtime.clone();
        runtime.spawn(async move {
            let outcome = within(&task_runtime, timeout, handshake).await;
            let mut state = lock(&queue);
            state.in_flight -= 1;
            match outcome {
                Some(Ok(stream)) if !state.closed => state.ready.push_back(stream),
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %Error::from(e), "TLS handshake failed"),
                None => tracing::debug!(?timeout, "TLS handshake timed out"),
            }
            let waker = state.waker.take();
            drop(state);
            if let Some(w) = waker {
                w.wake();
            }
        });
    }
}

impl<S> Drop for Handshakes<S> {
    fn drop(&mut self) {
        let ready = {
            let mut queue = lock(&self.queue);
            queue.closed = true;
            queue.waker = None;
            std::mem::take(&mut queue.ready)
        };
        // The connections close outside the lock.
        drop(ready);
    }
}

fn lock<S>(queue: &Mutex<Queue<S>>) -> MutexGuard<'_, Queue<S>> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// `future`'s output, or `None` when `timeout` passes first on the runtime's clock.
async fn within<R: Runtime, T>(runtime: &R, timeout: Duration, future: impl Future<Output = T>) -> Option<T> {
    let mut future = pin!(future);
    let mut sleep = pin!(runtime.sleep_until(runtime.now() + timeout));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// TLS over the futures-io traits, with futures-rustls (feature `futures-rustls`): what the
/// smol and async-std adapters use.
#[cfg(feature = "futures-rustls")]
mod futures_tls {
    use std::fmt;
    use std::future::Future;
    use std::io;
    use std::net::SocketAddr;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use ferrule_core::handshake::ClientRequest;
    use futures_io::{AsyncRead, AsyncWrite};
    use futures_rustls::server::TlsStream;
    use futures_rustls::{TlsAcceptor, TlsConnector};

    use super::{DEFAULT_MAX_HANDSHAKES, Handshakes, client_handshake};
    use crate::callback::HandlerFactory;
    use crate::channel::Channels;
    use crate::error::Error;
    use crate::message::Codec;
    use crate::options::Options;
    use crate::runtime::Runtime;
    use crate::server::{Listener, Server};
    use ferrule_core::handshake::Request;

    /// Runs a client's TLS handshake over `stream` for `request` (a `wss://` URL), as
    /// [`client_handshake`] describes.
    ///
    /// # Errors
    ///
    /// As [`client_handshake`].
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the stream with the handshake half done.
    pub async fn connect<R, S>(
        runtime: &R,
        stream: S,
        request: &ClientRequest,
        options: &Options,
    ) -> Result<futures_rustls::client::TlsStream<S>, Error>
    where
        R: Runtime,
        S: AsyncRead + AsyncWrite + Unpin,
    {
        client_handshake(runtime, request, options, |config, name| TlsConnector::from(config).connect(name, stream))
            .await
    }

    /// A [`Listener`] that runs TLS over another listener's connections (feature
    /// `futures-rustls`): each connection's handshake runs in its own task on the runtime `R`,
    /// within the handshake timeout (10 s unless set), at most
    /// [`DEFAULT_MAX_HANDSHAKES`](super::DEFAULT_MAX_HANDSHAKES) at once unless set; only
    /// connections whose handshake succeeded come out of it.
    pub struct TlsListener<L: Listener, R> {
        listener: L,
        acceptor: TlsAcceptor,
        runtime: R,
        handshakes: Handshakes<TlsStream<L::Stream>>,
    }

    impl<L: Listener, R> fmt::Debug for TlsListener<L, R> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("TlsListener").field("handshakes", &self.handshakes).finish_non_exhaustive()
        }
    }

    impl<L: Listener, R: Runtime> TlsListener<L, R> {
        /// TLS with `acceptor` (a `futures_rustls::TlsAcceptor`, or an `Arc<rustls::ServerConfig>`)
        /// over `listener`'s connections, the handshakes running on `runtime`.
        pub fn new(runtime: R, listener: L, acceptor: impl Into<TlsAcceptor>) -> Self {
            let timeout = Options::default().handshake_timeout();
            let handshakes = Handshakes::new(timeout, DEFAULT_MAX_HANDSHAKES);
            Self { listener, acceptor: acceptor.into(), runtime, handshakes }
        }

        /// Sets the deadline of each TLS handshake (`serve_tls` uses the options'
        /// `handshake_timeout`).
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

    /// [`serve`](crate::serve) over TLS (feature `futures-rustls`): serves WebSocket upgrades
    /// (`wss://`) on `listener`'s connections with the callback API, each connection's TLS
    /// handshake with `tls` (an `Arc<rustls::ServerConfig>`, from
    /// [`server_config_from_pem_files`](super::server_config_from_pem_files) say, or a
    /// `futures_rustls::TlsAcceptor`) in a [`TlsListener`] on `runtime`, within the options'
    /// `handshake_timeout`. The smol and async-std adapters' `serve_tls` run it over their TCP
    /// listeners.
    pub fn serve_tls<R, L, F>(
        runtime: R,
        listener: L,
        tls: impl Into<TlsAcceptor>,
        options: Options,
        factory: F,
    ) -> Server<R>
    where
        R: Runtime,
        L: Listener,
        F: HandlerFactory,
    {
        let listener = TlsListener::new(runtime.clone(), listener, tls).handshake_timeout(options.handshake_timeout());
        crate::serve(runtime, listener, options, factory)
    }

    /// [`serve_channels`](crate::serve_channels) over TLS, as [`serve_tls`] runs it.
    pub fn serve_channels_tls<R, L, M, T, Fut>(
        runtime: R,
        listener: L,
        tls: impl Into<TlsAcceptor>,
        options: Options,
        task: T,
    ) -> Server<R>
    where
        R: Runtime,
        L: Listener,
        M: Codec,
        T: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TlsListener::new(runtime.clone(), listener, tls).handshake_timeout(options.handshake_timeout());
        crate::serve_channels(runtime, listener, options, task)
    }

    impl<L: Listener, R: Runtime> Listener for TlsListener<L, R> {
        type Stream = TlsStream<L::Stream>;

        fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>> {
            let Self { listener, acceptor, runtime, handshakes } = self;
            handshakes.poll_accept(cx, runtime, |cx| listener.poll_accept(cx), |stream| acceptor.accept(stream))
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.listener.local_addr()
        }
    }
}
