//! The opening handshake over an async stream, for both ends, and the upgraded connection it
//! yields: run it with a [`Handler`] or turn it into [`Channels`].

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrule_core::handshake::{
    ClientHandshake, ClientRequest, ClientResponse, HandshakeError, Limits, Request, Response, ServerHandshake,
    ServerPolicy,
};
use ferrule_core::{Connection, DeflateParams, Entropy, Role};
use futures_io::{AsyncRead, AsyncWrite};

use crate::callback::{Acceptance, CallbackFront, Handler, HandlerFactory, Rejection};
use crate::channel::{ChannelFront, Channels};
use crate::driver::{Driver, with_read_buffer};
use crate::error::{CloseInfo, Error};
use crate::handle::Handle;
use crate::message::Codec;
use crate::options::Options;
use crate::runtime::Runtime;
use crate::shared::Shared;

/// Bytes read per call during the handshake.
const HANDSHAKE_READ: usize = 4096;

/// A connection whose opening handshake succeeded, not yet running.
pub struct Upgraded<S, R> {
    io: S,
    runtime: R,
    conn: Connection,
    leftover: Bytes,
    /// The options' `write_wait`, the only one the running connection needs beyond the core's
    /// configuration (kept rather than a copy of the options, which would allocate per
    /// connection).
    write_wait: Option<Duration>,
    subprotocol: Option<String>,
    shared: Arc<Shared>,
}

impl<S, R> fmt::Debug for Upgraded<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("subprotocol", &self.subprotocol)
            .field("deflate", &self.conn.deflate())
            .finish_non_exhaustive()
    }
}

impl<S, R> Upgraded<S, R>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    /// The negotiated subprotocol, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the handshake (RFC 7692 section 7.1), or
    /// `None` when messages are not compressed: compression was off at either end, or the
    /// server declined the offer.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.conn.deflate()
    }

    /// Switches compression of the messages this connection sends, when permessage-deflate was
    /// agreed; see [`Ctx::set_write_compression`](crate::Ctx::set_write_compression). Once it
    /// runs, [`Handle::set_write_compression`] switches it between queued messages.
    pub fn set_write_compression(&mut self, enabled: bool) {
        self.conn.set_write_compression(enabled);
    }

    /// A handle to the connection, usable before and while it runs.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// A server connection over a stream that another HTTP server already upgraded, with what
    /// the handshake agreed: `response` is the accept that was sent (from [`check_upgrade`]),
    /// whose subprotocol and permessage-deflate (RFC 7692) the connection takes on. Nothing is
    /// read from `io` for the handshake: its first bytes are the client's first frames.
    ///
    /// `io` is the upgraded HTTP/1.1 connection (after the `101`) or the HTTP/2 stream of an
    /// extended CONNECT (after the `200`, RFC 8441 section 5); frames are the same on both.
    ///
    /// # Errors
    ///
    /// [`Error::Options`] when the options make an invalid protocol configuration.
    pub fn from_stream(runtime: R, io: S, response: &Response, options: &Options) -> Result<Self, Error> {
        let conn =
            Connection::with_deflate(Role::Server, options.core_config(), response.deflate().cloned(), runtime.now())
                .map_err(|e| Error::Options(crate::OptionsError::Protocol(e)))?;
        let subprotocol = response.subprotocol().map(str::to_owned);
        tracing::debug!(?subprotocol, deflate = ?conn.deflate(), "connection upgraded by another HTTP server");
        Ok(Self::new(io, runtime, conn, Bytes::new(), options, subprotocol))
    }

    fn new(
        io: S,
        runtime: R,
        conn: Connection,
        leftover: Bytes,
        options: &Options,
        subprotocol: Option<String>,
    ) -> Self {
        let shared = Arc::new(Shared::new(options.send_buffer, options.recv_buffer));
        Self { io, runtime, conn, leftover, write_wait: options.write_wait, subprotocol, shared }
    }

    /// Runs the connection with `handler` until it finishes, in the calling task.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection abruptly: no close frame is sent (the peer sees
    /// 1006) and the done signal completes with 1006. Prefer [`Handle::close`] to end a
    /// connection.
    pub fn run<H: Handler>(self, handler: H) -> impl Future<Output = CloseInfo> + Send + Unpin + 'static {
        // The driver itself, not an `async fn` around it: an async fn would keep `self` beside
        // the driver in every connection's task for the connection's whole life.
        let shared = self.shared.clone();
        self.into_driver(CallbackFront(handler), shared)
    }

    /// Spawns the connection with `handler` on the runtime; the handle sends from anywhere and
    /// [`Handle::done`] tells when it finished.
    pub fn spawn<H: Handler>(self, handler: H) -> Handle {
        let shared = self.shared.clone();
        let handle = Handle::new(shared.clone());
        let runtime = self.runtime.clone();
        let mut driver = self.into_driver(CallbackFront(handler), shared);
        // Polled in place: `driver.await` would move the driver into a second slot of the task's
        // future, which would keep room for both for the connection's whole life.
        runtime.spawn(async move {
            poll_fn(|cx| Pin::new(&mut driver).poll(cx).map(drop)).await;
        });
        handle
    }

    /// Spawns the connection on the runtime and returns its channels, typed as `M`.
    pub fn channels<M: Codec>(self) -> Channels<M> {
        let shared = self.shared.clone();
        let channels = Channels::new(shared.clone(), self.subprotocol.clone(), self.conn.deflate().copied());
        let runtime = self.runtime.clone();
        let mut driver = self.into_driver(ChannelFront::new(shared.clone()), shared);
        // Polled in place: `driver.await` would move the driver into a second slot of the task's
        // future, which would keep room for both for the connection's whole life.
        runtime.spawn(async move {
            poll_fn(|cx| Pin::new(&mut driver).poll(cx).map(drop)).await;
        });
        channels
    }

    fn into_driver<F: crate::driver::FrontEnd>(self, front: F, shared: Arc<Shared>) -> Driver<S, R, F> {
        let mut driver = Driver::new(self.io, self.runtime, self.conn, front, shared, self.write_wait);
        driver.feed(&self.leftover);
        driver
    }
}

/// An upgrade request that was refused: the response to send instead of the accept, and why.
#[derive(Debug)]
pub struct Refusal {
    /// The rejection to send: the status for the failed check (400, 403, 405, 426, ...) or the
    /// application's [`Rejection`].
    pub response: Response,
    /// [`Error::Handshake`] for a request that failed the protocol or origin checks,
    /// [`Error::Rejected`] when `on_connect` said no.
    pub error: Error,
}

/// Decides on an upgrade request, whoever parsed it: checks it against the options (method,
/// version, key, origin, subprotocols, permessage-deflate: [`ServerPolicy::accept`]) and lets
/// `on_connect` accept it, editing the response through [`Acceptance`], or reject it.
///
/// This is the decision [`accept`] makes after reading the request itself; for a request another
/// HTTP server parsed (built with `Request::from_http`, feature `http`), send the returned
/// response, and once that server hands over the upgraded stream, run it with
/// [`Upgraded::from_stream`] and the same response. An HTTP/2 extended CONNECT (RFC 8441) is
/// accepted with a `200`.
///
/// # Errors
///
/// A [`Refusal`] with the response to send and the reason.
pub fn check_upgrade<T>(
    request: &Request,
    options: &Options,
    on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
) -> Result<(Response, T), Box<Refusal>> {
    let policy = ServerPolicy::default()
        .origin(options.allowed_origin.clone())
        .subprotocols(options.subprotocols.clone())
        .deflate(options.compression.clone());
    let response = policy.accept(request).map_err(|e| {
        tracing::info!(error = %e, path = request.path(), "upgrade refused");
        Box::new(Refusal { response: rejection_for(&e), error: Error::Handshake(e) })
    })?;
    let mut acceptance = Acceptance { response };
    match on_connect(request, &mut acceptance) {
        Ok(value) => Ok((acceptance.response, value)),
        Err(rejection) => {
            tracing::info!(status = rejection.status(), path = request.path(), "upgrade rejected by the application");
            Err(Box::new(Refusal {
                response: rejection.response().clone(),
                error: Error::Rejected(rejection.status()),
            }))
        }
    }
}

/// Performs the server side of the opening handshake on `io` (RFC 6455 section 4.2): reads the
/// request within `handshake_timeout`, checks it against the options (method, version, origin,
/// subprotocols), lets `on_connect` accept or reject it, and writes the response.
///
/// Every refusal is answered with the right HTTP status before the error is returned.
///
/// # Errors
///
/// [`Error::Handshake`] for a refused or timed-out request, [`Error::Rejected`] when `on_connect`
/// said no, [`Error::Io`] when the transport failed.
///
/// # Cancel safety
///
/// Not cancel safe: dropping it mid-handshake drops the stream with the handshake half done.
/// It bounds itself with `handshake_timeout`.
pub async fn accept<S, R, T>(
    runtime: R,
    mut io: S,
    options: &Options,
    on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
) -> Result<(Upgraded<S, R>, T), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    let limits = Limits::default().timeout(Some(options.handshake_timeout));
    let mut handshake = ServerHandshake::new(limits, runtime.now());
    let request = match read_head(&runtime, &mut io, &mut handshake).await {
        Ok(request) => request,
        Err(HeadFailure::Io(e)) => return Err(Error::from(e)),
        Err(HeadFailure::Handshake(e)) => {
            return Err(refuse(
                &runtime,
                &mut io,
                options,
                Box::new(Refusal { response: rejection_for(&e), error: Error::Handshake(e) }),
            )
            .await);
        }
    };
    let (response, value) = match check_upgrade(&request, options, on_connect) {
        Ok(accepted) => accepted,
        Err(refusal) => return Err(refuse(&runtime, &mut io, options, refusal).await),
    };
    write_all(&runtime, &mut io, &response.to_bytes(), options).await?;
    let subprotocol = response.subprotocol().map(str::to_owned);
    let (conn, leftover) = handshake
        .into_connection(&response, options.core_config(), runtime.now())
        .map_err(|e| Error::Options(crate::OptionsError::Protocol(e)))?;
    tracing::debug!(path = request.path(), ?subprotocol, deflate = ?conn.deflate(), "connection upgraded");
    Ok((Upgraded::new(io, runtime, conn, leftover, options, subprotocol), value))
}

/// Accepts an upgrade with a [`HandlerFactory`] and runs the handler to the end.
///
/// # Errors
///
/// As [`accept`].
///
/// # Cancel safety
///
/// As [`accept`], then as [`Upgraded::run`].
pub async fn serve_connection<S, R, F>(runtime: R, io: S, options: &Options, factory: &F) -> Result<CloseInfo, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
    F: HandlerFactory,
{
    let (upgraded, handler) =
        accept(runtime, io, options, |request, acceptance| factory.on_connect(request, acceptance)).await?;
    Ok(upgraded.run(handler).await)
}

/// Performs the client side of the opening handshake on `io` (RFC 6455 section 4.1) for
/// `request`, within `handshake_timeout`. The options' subprotocols, when set, are offered in
/// place of the ones the request offers, and so is their `compression` (permessage-deflate);
/// what the server agreed to is [`Upgraded::deflate`].
///
/// The stream must already be connected to the URL's host (and wrapped in TLS for `wss://`).
///
/// # Errors
///
/// [`Error::Handshake`] for a subprotocol in the options that is not an HTTP token
/// ([`HandshakeError::InvalidClientRequest`]), an invalid response, a timeout, or a refusal:
/// [`HandshakeError::NotSwitchingProtocols`] with the server's status, headers and the start of
/// its body (read to its end, within `handshake_timeout` and 1 KiB);
/// [`Error::Io`] when the transport failed.
///
/// # Cancel safety
///
/// Not cancel safe: dropping it mid-handshake leaves the stream with the handshake half done.
/// It bounds itself with `handshake_timeout`.
pub async fn connect_stream<S, R>(
    runtime: R,
    mut io: S,
    request: ClientRequest,
    options: &Options,
) -> Result<Upgraded<S, R>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    let request = client_request(request, options)?;
    let limits = Limits::default().timeout(Some(options.handshake_timeout));
    let mut handshake = ClientHandshake::new(request, &mut Entropy::from_os(), limits, runtime.now());
    let bytes = handshake.request_bytes().to_vec();
    write_all(&runtime, &mut io, &bytes, options).await?;
    let response = match read_head(&runtime, &mut io, &mut handshake).await {
        Ok(response) => response,
        Err(HeadFailure::Io(e)) => return Err(Error::from(e)),
        Err(HeadFailure::Handshake(e)) => {
            let _ = close(&mut io).await;
            return Err(Error::Handshake(e));
        }
    };
    let subprotocol = response.subprotocol().map(str::to_owned);
    let (conn, leftover) = handshake
        .into_connection(options.core_config(), runtime.now())
        .map_err(|e| Error::Options(crate::OptionsError::Protocol(e)))?;
    Ok(Upgraded::new(io, runtime, conn, leftover, options, subprotocol))
}

/// Prepares `request` for a connection over plain TCP, as the adapters' `connect_request` make
/// it: the options' subprotocols and compression, when set, replace the ones the request offers, and a `wss://`
/// URL is refused (TLS is the caller's: connect a TLS stream and use [`connect_stream`]).
///
/// # Errors
///
/// [`Error::Handshake`] with [`HandshakeError::InvalidClientRequest`] for a subprotocol in the
/// options that is not an HTTP token or is repeated, and with [`HandshakeError::TlsRequired`]
/// for a `wss://` URL.
pub fn tcp_client_request(request: ClientRequest, options: &Options) -> Result<ClientRequest, Error> {
    let request = client_request(request, options)?;
    if request.is_secure() {
        return Err(Error::Handshake(HandshakeError::TlsRequired));
    }
    Ok(request)
}

/// `request` with the options' subprotocols and compression, when set, in place of the ones it
/// offers: what the adapters' `connect_request` send, over TCP for `ws://` and over TLS for
/// `wss://`.
///
/// # Errors
///
/// [`Error::Handshake`] with [`HandshakeError::InvalidClientRequest`] for a subprotocol in the
/// options that is not an HTTP token or is repeated.
pub fn client_request(mut request: ClientRequest, options: &Options) -> Result<ClientRequest, Error> {
    if let Some(config) = &options.compression {
        // `OptionsBuilder::build` validated the settings.
        request =
            request.deflate(Some(config.clone())).map_err(|e| Error::Options(crate::OptionsError::Compression(e)))?;
    }
    if options.subprotocols.is_empty() {
        return Ok(request);
    }
    request
        .subprotocols(options.subprotocols.clone())
        .map_err(|e| Error::Handshake(HandshakeError::InvalidClientRequest(e)))
}

/// The rejection a server sends for a handshake error.
fn rejection_for(error: &HandshakeError) -> Response {
    error.response().unwrap_or_else(|| Response::reject_or_500(400, "WebSocket handshake failed\n"))
}

/// Sends the refusal's response, closes the transport, and returns the error.
async fn refuse<S, R>(runtime: &R, io: &mut S, options: &Options, refusal: Box<Refusal>) -> Error
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Runtime,
{
    let _ = write_all(runtime, io, &refusal.response.to_bytes(), options).await;
    let _ = close(io).await;
    refusal.error
}

/// Either end's handshake, as [`read_head`] drives it.
trait Head {
    type Output;
    fn handle_input(&mut self, data: &[u8]) -> Result<Option<Self::Output>, HandshakeError>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError>;
    /// The transport ended or failed: a handshake error that this settles (a refusal whose body
    /// ran to the end), if any.
    fn handle_eof(&mut self) -> Result<(), HandshakeError> {
        Ok(())
    }
}

impl Head for ServerHandshake {
    type Output = Request;
    fn handle_input(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        ServerHandshake::handle_input(self, data)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        ServerHandshake::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        ServerHandshake::handle_timeout(self, now)
    }
}

impl Head for ClientHandshake {
    type Output = ClientResponse;
    fn handle_input(&mut self, data: &[u8]) -> Result<Option<ClientResponse>, HandshakeError> {
        ClientHandshake::handle_input(self, data)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        ClientHandshake::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        ClientHandshake::handle_timeout(self, now)
    }
    fn handle_eof(&mut self) -> Result<(), HandshakeError> {
        ClientHandshake::handle_eof(self)
    }
}

/// Why reading an HTTP head stopped.
enum HeadFailure {
    Io(std::io::Error),
    Handshake(HandshakeError),
}

/// Reads until the handshake has its head, fails, or times out. Each read goes into the
/// thread's read buffer (the driver's, zeroed once per thread) and straight into the parser:
/// nothing is allocated or zeroed per connection and no buffer is held across an await. The
/// timeout's timer is set only once a read has to wait, so a request that is already there
/// costs no timer.
///
/// A refusal (a client's non-101) is read to the end of its body; a server that closes the
/// connection after it, even with a reset, gives the refusal rather than a transport error.
async fn read_head<S, R, H>(runtime: &R, io: &mut S, handshake: &mut H) -> Result<H::Output, HeadFailure>
where
    S: AsyncRead + Unpin,
    R: Runtime,
    H: Head,
{
    let mut sleep: Option<Pin<Box<R::Sleep>>> = None;
    poll_fn(|cx| {
        loop {
            let read = with_read_buffer(|buf| {
                let len = HANDSHAKE_READ.min(buf.len());
                let buf = &mut buf[..len];
                match Pin::new(&mut *io).poll_read(cx, buf) {
                    Poll::Ready(Ok(0)) => Poll::Ready(Some(Err(match handshake.handle_eof() {
                        Err(e) => HeadFailure::Handshake(e),
                        Ok(()) => HeadFailure::Io(std::io::ErrorKind::UnexpectedEof.into()),
                    }))),
                    Poll::Ready(Ok(n)) => match handshake.handle_input(&buf[..n.min(buf.len())]) {
                        Ok(Some(head)) => Poll::Ready(Some(Ok(head))),
                        Ok(None) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(HeadFailure::Handshake(e)))),
                    },
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(match handshake.handle_eof() {
                        Err(refusal) => HeadFailure::Handshake(refusal),
                        Ok(()) => HeadFailure::Io(e),
                    }))),
                    Poll::Pending => Poll::Pending,
                }
            });
            match read {
                Poll::Ready(Some(done)) => return Poll::Ready(done),
                Poll::Ready(None) => {}
                Poll::Pending => break,
            }
        }
        if sleep.is_none() {
            sleep = handshake.poll_timeout().map(|d| Box::pin(runtime.sleep_until(d)));
        }
        if let Some(s) = sleep.as_mut() {
            if s.as_mut().poll(cx).is_ready() {
                if let Err(e) = handshake.handle_timeout(runtime.now()) {
                    return Poll::Ready(Err(HeadFailure::Handshake(e)));
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// Writes all of `bytes`, failing with [`Error::WriteTimeout`] when a write makes no progress
/// within the options' `write_wait`.
async fn write_all<S, R>(runtime: &R, io: &mut S, mut bytes: &[u8], options: &Options) -> Result<(), Error>
where
    S: AsyncWrite + Unpin,
    R: Runtime,
{
    while !bytes.is_empty() {
        // The timer starts when a write first has to wait: a socket with room takes the bytes
        // at once, and then no timer is set at all.
        let mut sleep: Option<Pin<Box<R::Sleep>>> = None;
        let n = poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut *io).poll_write(cx, bytes) {
                return Poll::Ready(r.map_err(Error::from));
            }
            if sleep.is_none() {
                sleep = options.write_wait.map(|w| Box::pin(runtime.sleep_until(runtime.now() + w)));
            }
            if let Some(s) = sleep.as_mut() {
                if s.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Error::WriteTimeout));
                }
            }
            Poll::Pending
        })
        .await?;
        if n == 0 {
            return Err(Error::Io(std::io::ErrorKind::WriteZero.into()));
        }
        bytes = &bytes[n..];
    }
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await.map_err(Error::from)
}

async fn close<S: AsyncWrite + Unpin>(io: &mut S) -> std::io::Result<()> {
    poll_fn(|cx| Pin::new(&mut *io).poll_close(cx)).await
}
