//! WebSockets in axum 0.8 (feature `axum`): the [`Upgrade`] extractor, over HTTP/1.1 (RFC 6455
//! section 4) and HTTP/2 (an extended CONNECT, RFC 8441), with either of ferrule's APIs, and
//! [`Shutdown`] to close every connection with 1001 when the application stops.
//!
//! A WebSocket route takes an [`Upgrade`], sets the [`Options`] (limits, origin policy,
//! subprotocols, compression), and answers with [`Upgrade::run`] (the callback API: a
//! [`Handler`] per connection) or [`Upgrade::channels`] (the channel API). Both
//! take an `on_connect` that sees the request and may choose the subprotocol, add headers, or
//! refuse with a [`Rejection`], which becomes the HTTP response. The request is checked exactly as
//! ferrule's own server checks it, and refused with the same statuses (400, 403, 405, 426).
//!
//! # What the application must set
//!
//! - Route WebSockets with `any(...)` (or `get(...).connect(...)`): the upgrade is a `GET` on
//!   HTTP/1.1 but a `CONNECT` on HTTP/2 (RFC 8441 section 4).
//! - HTTP/2 needs axum's `http2` feature. `axum::serve` then announces extended CONNECT itself
//!   (`SETTINGS_ENABLE_CONNECT_PROTOCOL`, RFC 8441 section 3); a server built by hand on hyper
//!   must call `http2().enable_connect_protocol()` on its builder, and serve connections with
//!   upgrades (`serve_connection_with_upgrades`), or no WebSocket opens.
//! - axum's graceful shutdown does not wait for upgraded connections: they are no longer HTTP.
//!   Give each [`Upgrade`] a [`Shutdown`] and call [`Shutdown::shutdown`] after `axum::serve`
//!   returns, so that every WebSocket is closed with 1001 Going Away rather than cut.
//! - Set `TCP_NODELAY` on the accepted sockets (`axum::serve::ListenerExt::tap_io`, as below),
//!   as ferrule's own servers do. The driver coalesces its output into few writes already;
//!   with Nagle's algorithm on, the kernel holds back the tail of each write until the peer
//!   acknowledges the previous one, which costs latency and, with many messages in flight, CPU
//!   (through axum, 100 connections echoing 64 KiB messages 32 at a time: 56 us of server CPU
//!   per message without it, against 34 us with it). ferrule cannot set it itself: the socket
//!   is hyper's, behind its upgrade.
//!
//! # Example
//!
//! `examples/axum_app.rs`: a page and its WebSocket on one port, shut down gracefully.
//!
//! ```no_run
#![doc = include_str!("../examples/axum_app.rs")]
//! ```

use std::fmt;
use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use ferrule::core::handshake::{self, HandshakeError};
use hyper::http::Version;
use hyper::http::request::Parts;
use hyper::upgrade::OnUpgrade;

pub use crate::hyper::{HyperWebSocket, Shutdown};
use crate::hyper::{PendingUpgrade, Refused, UpgradeResponse, answer, not_upgradable, protocol};
use crate::{Acceptance, Channels, Codec, Error, Handler, Options, Rejection, Request};

/// Extracts a WebSocket upgrade request in an axum handler, HTTP/1.1 or HTTP/2: the
/// counterpart of axum's `WebSocketUpgrade`, with ferrule's checks, options and APIs.
///
/// Extraction fails, with the right status, for a request that is not a WebSocket upgrade
/// (RFC 6455 section 4.2.1, RFC 8441 section 4): 405 for a wrong method, 426 for a wrong
/// `Sec-WebSocket-Version`, 400 for the rest. The origin, subprotocols and compression are
/// checked against the options when the handler answers with [`run`](Self::run) or
/// [`channels`](Self::channels).
///
/// ```no_run
/// use axum::response::Response;
/// use ferrule_tokio::axum::Upgrade;
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
/// async fn chat(upgrade: Upgrade) -> Response {
///     let options = Options::builder().subprotocols(["chat.v2", "chat.v1"]).build().expect("valid options");
///     upgrade.options(options).run(|request, _acceptance| {
///         if request.query_param("token").is_none() {
///             return Err(Rejection::new(401, "a token, please"));
///         }
///         Ok(Echo)
///     })
/// }
///
/// let app: axum::Router = axum::Router::new().route("/chat", axum::routing::any(chat));
/// ```
pub struct Upgrade {
    request: Request,
    version: Version,
    on_upgrade: OnUpgrade,
    options: Options,
    shutdown: Option<Shutdown>,
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade")
            .field("request", &self.request)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, UpgradeRejection> {
        let request = Request::from_http_parts(parts, protocol(&parts.extensions));
        if let Err(error) = handshake::validate(&request) {
            return Err(UpgradeRejection::handshake(error, parts.version));
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(UpgradeRejection(Box::new(not_upgradable(parts.version))));
        };
        Ok(Self { request, version: parts.version, on_upgrade, options: Options::default(), shutdown: None })
    }
}

impl Upgrade {
    /// Sets the connection's options: limits, keepalive, origin policy, subprotocols (the
    /// server's, most preferred first), compression. Default [`Options::default`].
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Registers the connection with `shutdown`, which closes it with 1001 when the application
    /// stops.
    pub fn shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// The upgrade request: path, query, headers, cookies, offered subprotocols and extensions.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Answers with the callback API: checks the request against the options, then
    /// `on_connect` gives the connection's [`Handler`] (optionally choosing the subprotocol or
    /// adding headers through the [`Acceptance`]) or a [`Rejection`]. Returns the response for
    /// axum to send: the accept (`101`, or `200` on HTTP/2), or the refusal. Once axum has sent
    /// it, the connection runs in a task of its own.
    pub fn run<H: Handler>(
        self,
        on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<H, Rejection>,
    ) -> Response {
        self.answer(on_connect, |websocket, handler| websocket.run(handler))
    }

    /// Answers with the channel API: checks the request against the options, lets `on_connect`
    /// accept it with a value (a user id, say) or refuse it with a [`Rejection`], and once axum
    /// has sent the accept, runs `task(value, channels)` in a task of its own. When `task`
    /// returns, the connection is closed with 1001 (its receiver is dropped).
    pub fn channels<M, T, F, Fut>(
        self,
        on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
        task: F,
    ) -> Response
    where
        M: Codec,
        T: Send + 'static,
        F: FnOnce(T, Channels<M>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.answer(on_connect, |websocket, value| async move {
            let channels = websocket.channels::<M>();
            let done = channels.done.clone();
            task(value, channels).await;
            done.await;
        })
    }

    /// Decides; on an accept, spawns the task that waits for hyper's upgrade and runs `start`
    /// with the connection registered with the shutdown, if any.
    fn answer<T, Fut>(
        self,
        on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
        start: impl FnOnce(HyperWebSocket, T) -> Fut + Send + 'static,
    ) -> Response
    where
        T: Send + 'static,
        Fut: Future + Send + 'static,
    {
        let (response, pending, value) =
            match answer(&self.request, self.version, Some(self.on_upgrade), &self.options, on_connect) {
                Ok(accepted) => accepted,
                Err(refused) => return into_axum(refused.response),
            };
        tokio::spawn(run_upgraded(pending, self.shutdown, value, start));
        into_axum(response)
    }
}

/// Waits for hyper to hand over the connection, then runs it, registered with `shutdown` until
/// it has finished.
async fn run_upgraded<T, Fut>(
    pending: PendingUpgrade,
    shutdown: Option<Shutdown>,
    value: T,
    start: impl FnOnce(HyperWebSocket, T) -> Fut,
) where
    Fut: Future,
{
    let websocket = match pending.await {
        Ok(websocket) => websocket,
        Err(error) => {
            tracing::debug!(%error, "upgrade accepted but the connection was not handed over");
            return;
        }
    };
    let handle = websocket.handle();
    let _registration = shutdown.as_ref().map(|shutdown| shutdown.register(handle.clone()));
    start(websocket, value).await;
    handle.done().await;
}

/// Why an [`Upgrade`] could not be extracted: the request is not a WebSocket upgrade (or cannot
/// be upgraded). As a response, the rejection with the right status.
#[derive(Debug)]
pub struct UpgradeRejection(Box<Refused>);

impl UpgradeRejection {
    fn handshake(error: HandshakeError, version: Version) -> Self {
        let response =
            error.response().unwrap_or_else(|| Rejection::new(400, "not a WebSocket upgrade\n").response().clone());
        Self(Box::new(Refused {
            response: response.to_http(version).map(http_body_util::Full::new),
            error: Error::Handshake(error),
        }))
    }

    /// What was wrong: [`Error::Handshake`] for a request that is not a valid upgrade,
    /// [`Error::Io`] for one hyper cannot upgrade.
    pub fn error(&self) -> &Error {
        &self.0.error
    }

    /// The HTTP status of the rejection.
    pub fn status(&self) -> u16 {
        self.0.response.status().as_u16()
    }
}

impl fmt::Display for UpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.error.fmt(f)
    }
}

impl std::error::Error for UpgradeRejection {}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        into_axum(self.0.response)
    }
}

fn into_axum(response: UpgradeResponse) -> Response {
    response.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyper::tests::h1_upgrade;

    async fn extract(request: hyper::Request<()>) -> Result<Upgrade, UpgradeRejection> {
        let (mut parts, ()) = request.into_parts();
        Upgrade::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn extraction_refuses_what_is_not_an_upgrade_with_its_status() {
        let plain = hyper::Request::get("/chat").header("host", "example.com").body(()).unwrap();
        let rejection = extract(plain).await.unwrap_err();
        assert_eq!(rejection.status(), 400);
        assert!(matches!(rejection.error(), Error::Handshake(HandshakeError::InvalidUpgrade)));
        let rejection = extract(h1_upgrade().method("DELETE").body(()).unwrap()).await.unwrap_err();
        let response = rejection.into_response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET");
    }

    #[tokio::test]
    async fn extraction_of_a_request_hyper_cannot_upgrade_is_500() {
        let rejection = extract(h1_upgrade().body(()).unwrap()).await.unwrap_err();
        assert_eq!(rejection.status(), 500);
        assert!(matches!(rejection.error(), Error::Io(_)));
    }
}
