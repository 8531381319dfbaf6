//! WebSockets inside a hyper 1.x server (feature `hyper`), over HTTP/1.1 (RFC 6455 section 4)
//! and HTTP/2 (an extended CONNECT, RFC 8441).
//!
//! In a hyper service, [`is_upgrade_request`] tells a WebSocket upgrade from other requests, and
//! [`upgrade`] checks it against the [`Options`] (method, version, key, origin, subprotocols,
//! permessage-deflate) exactly as ferrule's own server does, gives the response to return from
//! the service, and a [`PendingUpgrade`] that yields the [`WebSocket`] once hyper has switched
//! the connection (`hyper::upgrade::on`); run it with a [`Handler`](crate::Handler) or take its
//! [`Channels`](crate::Channels). hyper reads the request; ferrule reads nothing of the handshake
//! from the upgraded stream.
//!
//! The connection must be served with upgrades: `.with_upgrades()` on hyper's HTTP/1.1
//! connection, or hyper-util's `serve_connection_with_upgrades`. For WebSockets over HTTP/2 the
//! server must announce extended CONNECT (RFC 8441 section 3): `.enable_connect_protocol()` on
//! hyper's HTTP/2 builder. Set `TCP_NODELAY` on the accepted sockets, as ferrule's own servers
//! do (the socket is hyper's once it serves the connection): the driver coalesces its output
//! itself, and Nagle's algorithm would hold back the tail of each write.
//!
//! `examples/hyper_echo.rs` is a whole server:
//!
//! ```no_run
#![doc = include_str!("../examples/hyper_echo.rs")]
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use ferrule::core::handshake::Response as Accept;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::http::{Method, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::{Acceptance, Compat, Error, Options, Rejection, Request, Tokio, Upgraded, WebSocket};

/// [`ferrule::Shutdown`] on tokio: closes every registered connection with 1001 when the
/// application stops.
pub type Shutdown = ferrule::Shutdown<Tokio>;

/// A WebSocket over a connection that hyper upgraded.
pub type HyperWebSocket = WebSocket<Compat<TokioIo<hyper::upgrade::Upgraded>>>;

/// The response to return from a hyper service for a WebSocket upgrade.
pub type UpgradeResponse = hyper::Response<Full<Bytes>>;

/// Whether `request` asks for a WebSocket: an HTTP/1.1 `GET` with `Upgrade: websocket`
/// (RFC 6455 section 4.1), or an HTTP/2 `CONNECT` with `:protocol` `websocket` (RFC 8441
/// section 4). Only the request's shape is looked at; [`upgrade`] checks the rest.
///
/// ```
/// let request = hyper::Request::get("/chat").header("Upgrade", "websocket").body(()).unwrap();
/// assert!(ferrule_tokio::hyper::is_upgrade_request(&request));
/// assert!(!ferrule_tokio::hyper::is_upgrade_request(&hyper::Request::get("/").body(()).unwrap()));
/// ```
pub fn is_upgrade_request<B>(request: &hyper::Request<B>) -> bool {
    if request.version() == Version::HTTP_2 {
        return request.method() == Method::CONNECT && protocol(request.extensions()) == Some("websocket");
    }
    request.method() == Method::GET
        && request
            .headers()
            .get_all(header::UPGRADE)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// Answers a WebSocket upgrade request in a hyper service: checks `request` against `options`
/// (as [`ferrule::check_upgrade`]), lets `on_connect` accept it (choosing the subprotocol or
/// adding headers through the [`Acceptance`]) or reject it, and gives the response to return:
/// `101 Switching Protocols` on HTTP/1.1, `200` on HTTP/2 (RFC 8441 section 5).
///
/// Return the response from the service first, then await the [`PendingUpgrade`] (in a task
/// of its own: hyper switches the connection only after the response is sent).
///
/// # Errors
///
/// A [`Refused`] with the rejection to return instead (400, 403, 405, 426, or the
/// application's [`Rejection`]) and why.
pub fn upgrade<B, T>(
    request: hyper::Request<B>,
    options: &Options,
    on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
) -> Result<(UpgradeResponse, PendingUpgrade, T), Box<Refused>> {
    let (mut parts, _body) = request.into_parts();
    upgrade_parts(&mut parts, options, on_connect)
}

/// [`upgrade`] from a request's parts, as an extractor sees them; the `hyper::upgrade::OnUpgrade`
/// is taken out of the extensions.
///
/// # Errors
///
/// As [`upgrade`].
pub fn upgrade_parts<T>(
    parts: &mut Parts,
    options: &Options,
    on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
) -> Result<(UpgradeResponse, PendingUpgrade, T), Box<Refused>> {
    let request = Request::from_http_parts(parts, protocol(&parts.extensions));
    answer(&request, parts.version, parts.extensions.remove::<OnUpgrade>(), options, on_connect)
}

/// Decides on `request` (which came as `version`) and, when it is accepted, pairs the accept
/// with hyper's `on_upgrade`.
pub(crate) fn answer<T>(
    request: &Request,
    version: Version,
    on_upgrade: Option<OnUpgrade>,
    options: &Options,
    on_connect: impl FnOnce(&Request, &mut Acceptance) -> Result<T, Rejection>,
) -> Result<(UpgradeResponse, PendingUpgrade, T), Box<Refused>> {
    let (accept, value) = ferrule::check_upgrade(request, options, on_connect).map_err(|refusal| {
        Box::new(Refused { response: refusal.response.to_http(version).map(Full::new), error: refusal.error })
    })?;
    let Some(on_upgrade) = on_upgrade else {
        return Err(Box::new(not_upgradable(version)));
    };
    let response = accept.to_http(version).map(Full::new);
    Ok((response, PendingUpgrade { on_upgrade, accept, options: options.clone() }, value))
}

/// The refusal of a request that hyper cannot upgrade: one that did not come from a hyper
/// server, or came from one serving without upgrades.
pub(crate) fn not_upgradable(version: Version) -> Refused {
    let response = Rejection::new(500, "this connection cannot be upgraded\n").response().to_http(version);
    Refused {
        response: response.map(Full::new),
        error: Error::Io(std::io::Error::other("the request carries no hyper::upgrade::OnUpgrade")),
    }
}

/// A refused upgrade: the response to return instead of the accept, and why.
#[derive(Debug)]
pub struct Refused {
    /// The rejection to return from the service.
    pub response: UpgradeResponse,
    /// [`Error::Handshake`] for a request that failed the checks, [`Error::Rejected`] when
    /// `on_connect` said no, [`Error::Io`] for a request hyper cannot upgrade.
    pub error: Error,
}

/// The WebSocket to come, once hyper has sent the accept and switched the connection: a future
/// that yields it, not yet running.
///
/// # Errors
///
/// [`Error::Io`] when hyper could not upgrade (the connection closed first, or was served
/// without upgrades), [`Error::Options`] for options that make an invalid protocol
/// configuration.
#[must_use = "the connection is upgraded only when this is awaited"]
pub struct PendingUpgrade {
    on_upgrade: OnUpgrade,
    accept: Accept,
    options: Options,
}

impl PendingUpgrade {
    /// The accept that was (or is to be) sent: subprotocol and permessage-deflate agreed.
    pub fn response(&self) -> &Accept {
        &self.accept
    }
}

impl fmt::Debug for PendingUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingUpgrade").field("accept", &self.accept).finish_non_exhaustive()
    }
}

impl Future for PendingUpgrade {
    type Output = Result<HyperWebSocket, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded =
            ready!(Pin::new(&mut self.on_upgrade).poll(cx)).map_err(|e| Error::Io(std::io::Error::other(e)))?;
        Poll::Ready(Upgraded::from_stream(Tokio, Compat(TokioIo::new(upgraded)), &self.accept, &self.options))
    }
}

/// The `:protocol` of an HTTP/2 extended CONNECT, which hyper keeps in the extensions.
pub(crate) fn protocol(extensions: &hyper::http::Extensions) -> Option<&str> {
    extensions.get::<hyper::ext::Protocol>().map(hyper::ext::Protocol::as_str)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid HTTP/1.1 upgrade request (the key from RFC 6455 section 1.3).
    pub(crate) fn h1_upgrade() -> hyper::http::request::Builder {
        hyper::Request::get("/chat")
            .header("host", "example.com")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    fn h2_connect(protocol: Option<&'static str>) -> hyper::Request<()> {
        let mut request = hyper::Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("http://example.com/chat")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        if let Some(protocol) = protocol {
            request.extensions_mut().insert(hyper::ext::Protocol::from_static(protocol));
        }
        request
    }

    #[test]
    fn is_upgrade_request_tells_http1_and_http2_upgrades_apart() {
        assert!(is_upgrade_request(&h1_upgrade().body(()).unwrap()));
        assert!(is_upgrade_request(&hyper::Request::get("/").header("upgrade", "h2c, WebSocket").body(()).unwrap()));
        assert!(!is_upgrade_request(&h1_upgrade().method("POST").body(()).unwrap()));
        assert!(!is_upgrade_request(&hyper::Request::get("/").header("upgrade", "h2c").body(()).unwrap()));
        assert!(is_upgrade_request(&h2_connect(Some("websocket"))));
        assert!(!is_upgrade_request(&h2_connect(None)), "a plain CONNECT is a tunnel");
        assert!(!is_upgrade_request(&h2_connect(Some("webtransport"))));
    }

    #[test]
    fn upgrade_of_a_request_hyper_cannot_upgrade_is_500() {
        // Built by hand, so it carries no `OnUpgrade`: valid, but nothing can take the stream over.
        let refused = upgrade(h1_upgrade().body(()).unwrap(), &Options::default(), |_, _| Ok(())).unwrap_err();
        assert_eq!(refused.response.status(), 500);
        assert!(matches!(refused.error, Error::Io(_)));
    }

    #[test]
    fn upgrade_refusals_carry_their_status_and_error() {
        let mut request = h1_upgrade().body(()).unwrap();
        request.headers_mut().insert("sec-websocket-version", "8".parse().unwrap());
        let refused = upgrade(request, &Options::default(), |_, _| Ok(())).unwrap_err();
        assert_eq!(refused.response.status(), 426);
        assert_eq!(refused.response.headers()["sec-websocket-version"], "13");
        assert!(matches!(
            refused.error,
            Error::Handshake(ferrule::core::handshake::HandshakeError::UnsupportedVersion)
        ));

        let refused = upgrade(h1_upgrade().body(()).unwrap(), &Options::default(), |_, _| {
            Err::<(), _>(Rejection::new(401, "log in first"))
        })
        .unwrap_err();
        assert_eq!(refused.response.status(), 401);
        assert_eq!(hyper::body::Body::size_hint(refused.response.body()).exact(), Some(12), "log in first");
        assert!(matches!(refused.error, Error::Rejected(401)));

        let refused = upgrade(h2_connect(None), &Options::default(), |_, _| Ok(())).unwrap_err();
        assert_eq!(refused.response.status(), 400, "an HTTP/2 CONNECT without :protocol");
    }
}
