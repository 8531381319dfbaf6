//! The server side of the opening handshake (RFC 6455 section 4.2).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use super::extensions::{ExtensionOffer, parse_offers};
use super::head::HeadPhase;
use super::http::{Headers, Response, first_str, is_token, list_contains, owned_headers, trim_ows, values};
use super::origin::OriginPolicy;
use super::{HandshakeError, Limits, accept_key};
use super::{cookie, query};
use crate::Connection;
use crate::config::{Config, ConfigError, Role};
use crate::deflate::{DeflateConfig, negotiate_offers};

/// Reads a client's opening handshake request (RFC 6455 section 4.2.1), incrementally and within
/// [`Limits`].
///
/// Call order: [`new`](Self::new); then [`handle_input`](Self::handle_input) with every chunk read
/// from the transport, and [`handle_timeout`](Self::handle_timeout) whenever the deadline from
/// [`poll_timeout`](Self::poll_timeout) passes, until `handle_input` returns the [`Request`] or
/// either returns an error. On an error, send its [`response`](HandshakeError::response) and close.
/// With a request, decide on a [`Response`] (usually with [`ServerPolicy::accept`]), send it, and
/// on a 101 call [`into_connection`](Self::into_connection).
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use ferrule_core::Config;
/// use ferrule_core::handshake::{Limits, ServerHandshake, ServerPolicy};
///
/// let now = Instant::now();
/// let mut handshake = ServerHandshake::new(Limits::default(), now);
/// let input: &[u8] = b"GET /chat HTTP/1.1\r\n\
///     Host: server.example.com\r\n\
///     Upgrade: websocket\r\n\
///     Connection: Upgrade\r\n\
///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Origin: http://server.example.com\r\n\
///     Sec-WebSocket-Protocol: chat, superchat\r\n\
///     Sec-WebSocket-Version: 13\r\n\r\n";
///
/// // Bytes may arrive in any pieces; `Ok(None)` asks for more.
/// assert!(handshake.handle_input(&input[..10])?.is_none());
/// let request = handshake.handle_input(&input[10..])?.expect("complete");
/// assert_eq!(request.path(), "/chat");
///
/// let policy = ServerPolicy::default().subprotocols(vec!["chat".into()]);
/// let response = match policy.accept(&request) {
///     Ok(accept) => accept,
///     Err(error) => error.response().expect("a server-side error"),
/// };
/// assert_eq!(response.status(), 101);
/// assert_eq!(response.header("Sec-WebSocket-Accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
/// let _to_send: Vec<u8> = response.to_bytes();
///
/// let (_connection, leftover) = handshake.into_connection(&response, Config::default(), now)?;
/// assert!(leftover.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ServerHandshake {
    limits: Limits,
    phase: HeadPhase,
}

impl ServerHandshake {
    /// Starts reading a request; the deadline is `now + limits.timeout`.
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self { phase: HeadPhase::new(&limits, now), limits }
    }

    /// Feeds bytes read from the transport.
    ///
    /// Returns `Ok(None)` while the head is incomplete, `Ok(Some(request))` once it is complete
    /// (the request is not yet validated: see [`ServerPolicy::accept`] and [`validate`]), and an
    /// error when the head is malformed or exceeds the [`Limits`]. At most
    /// [`Limits::max_header_bytes`] of head are ever buffered: the call that crosses the cap fails
    /// with [`HandshakeError::HeadersTooLarge`].
    ///
    /// Bytes after the head are kept for [`into_connection`](Self::into_connection). After the
    /// request has been returned, further input is appended to them and `Ok(None)` is returned;
    /// after an error, the same error is returned again.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        self.phase.feed(data, |bytes, slots| {
            let mut parsed = httparse::Request::new(slots);
            match parsed.parse(bytes) {
                Ok(httparse::Status::Complete(head_len)) => Ok(Some((head_len, Request::from_parsed(&parsed)))),
                Ok(httparse::Status::Partial) => Ok(None),
                Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders),
                Err(error) => Err(HandshakeError::MalformedRequest(error)),
            }
        })
    }

    /// The deadline for the request head, while it is still being read.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.phase.poll_timeout()
    }

    /// Tells the handshake the time: fails with [`HandshakeError::Timeout`] (a 408) when the
    /// deadline has passed and the head is still incomplete.
    ///
    /// Early calls do nothing, and so do calls after the request was returned or after another
    /// error; once timed out, every later call returns the timeout again.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        self.phase.handle_timeout(now)
    }

    /// How many bytes of an incomplete head are buffered; never more than
    /// [`Limits::max_header_bytes`]. Zero once the head is complete or the handshake failed.
    pub fn buffered_len(&self) -> usize {
        self.phase.buffered_len()
    }

    /// The limits this handshake enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Turns an accepted handshake into a server [`Connection`], with the bytes that followed the
    /// request head (the client's first frames), intact. `response` is the 101 that was sent:
    /// the connection applies what it agreed to ([`Response::deflate`]).
    ///
    /// Call it only after [`handle_input`](Self::handle_input) returned the request and the 101 was
    /// sent; called earlier, the leftover is empty. Fails only when `config` is invalid.
    pub fn into_connection(
        self,
        response: &Response,
        config: impl Into<Arc<Config>>,
        now: Instant,
    ) -> Result<(Connection, Bytes), ConfigError> {
        let connection = Connection::with_deflate(Role::Server, config, response.deflate().cloned(), now)?;
        Ok((connection, self.phase.into_leftover()))
    }
}

/// A client's opening handshake request, parsed but not yet validated (RFC 6455 section 4.1).
///
/// Header values have surrounding whitespace trimmed. Values that are not UTF-8 are kept as bytes
/// (see [`headers`](Self::headers)); the `&str` accessors return `None` for them.
///
/// A request parsed by another HTTP server is built with `Request::from_http` (feature
/// `http`); it may then be an HTTP/2 extended CONNECT (RFC 8441), which the same
/// [`ServerPolicy`] checks and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    framing: Framing,
    headers: Headers,
    /// `None` when a `Sec-WebSocket-Protocol` header is malformed.
    subprotocols: Option<Vec<String>>,
    /// `None` when a `Sec-WebSocket-Extensions` header is malformed.
    extensions: Option<Vec<ExtensionOffer>>,
}

impl Request {
    fn from_parsed(parsed: &httparse::Request<'_, '_>) -> Self {
        let headers = owned_headers(parsed.headers);
        let subprotocols = parse_subprotocols(values(&headers, "Sec-WebSocket-Protocol"));
        let extensions = parse_offers(values(&headers, "Sec-WebSocket-Extensions"));
        Self {
            method: parsed.method.unwrap_or_default().to_owned(),
            target: parsed.path.unwrap_or_default().to_owned(),
            framing: Framing::Http1(parsed.version.unwrap_or_default()),
            headers,
            subprotocols,
            extensions,
        }
    }

    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: the resource name, path and query (RFC 6455 section 3).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The minor HTTP/1 version: 1 for HTTP/1.1, 0 for HTTP/1.0; 0 for a request that is not
    /// HTTP/1 (see [`is_http2`](Self::is_http2)).
    pub fn version(&self) -> u8 {
        match self.framing {
            Framing::Http1(minor) => minor,
            Framing::Http2 { .. } | Framing::Unsupported => 0,
        }
    }

    /// Whether the request came over HTTP/2 (built by `from_http`, feature `http`); a
    /// WebSocket over HTTP/2 is an extended CONNECT (RFC 8441 section 4), answered with `200`.
    pub fn is_http2(&self) -> bool {
        matches!(self.framing, Framing::Http2 { .. })
    }

    /// The `:protocol` pseudo-header of an HTTP/2 extended CONNECT (RFC 8441 section 4):
    /// `websocket` for a WebSocket; `None` on HTTP/1 or a plain CONNECT.
    pub fn protocol(&self) -> Option<&str> {
        match &self.framing {
            Framing::Http2 { protocol } => protocol.as_deref(),
            Framing::Http1(_) | Framing::Unsupported => None,
        }
    }

    /// The target before any `?`.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The target after the first `?`, if there is one: the raw query, not decoded.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The query's `name=value` pairs in order, percent-decoded as
    /// `application/x-www-form-urlencoded` (the way browsers encode `?a=1&b=2`).
    ///
    /// Pairs are separated by `&` and empty pieces are skipped; a piece without `=` has an empty
    /// value. `+` decodes to a space and `%XX` to the byte `XX`; a `%` that does not start two
    /// hex digits (`%zz`, a truncated `%4`) is kept as it is, and decoded bytes that are not UTF-8
    /// become U+FFFD. Names and values borrow from the target unless they needed decoding.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use ferrule_core::handshake::{Limits, ServerHandshake};
    /// # let mut handshake = ServerHandshake::new(Limits::default(), Instant::now());
    /// # let request = handshake
    /// #     .handle_input(b"GET /chat?room=rust+lang&token=a%2Fb&debug HTTP/1.1\r\nHost: h\r\n\r\n")?
    /// #     .expect("a whole request");
    /// // GET /chat?room=rust+lang&token=a%2Fb&debug
    /// assert_eq!(request.query(), Some("room=rust+lang&token=a%2Fb&debug"));
    /// assert_eq!(request.query_param("room").as_deref(), Some("rust lang"));
    /// assert_eq!(request.query_param("token").as_deref(), Some("a/b"));
    /// assert_eq!(request.query_param("debug").as_deref(), Some(""));
    /// assert_eq!(request.query_param("missing"), None);
    /// assert_eq!(request.query_pairs().count(), 3);
    /// # Ok::<(), ferrule_core::handshake::HandshakeError>(())
    /// ```
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        self.query().into_iter().flat_map(query::pairs)
    }

    /// The decoded value of the first query parameter whose decoded name is `name` (see
    /// [`query_pairs`](Self::query_pairs)); `None` when there is none.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query_pairs().find(|(n, _)| n == name).map(|(_, value)| value)
    }

    /// The cookies of every `Cookie` header, in order, as `(name, value)` (RFC 6265 section 5.4:
    /// `Cookie: SID=31d4d96e407aad42; lang=en-US`).
    ///
    /// Pairs are split at `;` and their first `=`, with surrounding spaces trimmed; a value in
    /// double quotes is given without them; nothing is decoded (cookie values are opaque). A
    /// piece without `=` is a cookie with an empty name. `Cookie` headers that are not UTF-8 are
    /// skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use ferrule_core::handshake::{Limits, ServerHandshake};
    /// # let mut handshake = ServerHandshake::new(Limits::default(), Instant::now());
    /// # let request = handshake
    /// #     .handle_input(b"GET / HTTP/1.1\r\nHost: h\r\nCookie: SID=31d4; lang=en-US\r\nCookie: theme=\"dark\"\r\n\r\n")?
    /// #     .expect("a whole request");
    /// // Cookie: SID=31d4; lang=en-US
    /// // Cookie: theme="dark"
    /// assert_eq!(request.cookie("SID"), Some("31d4"));
    /// assert_eq!(request.cookie("theme"), Some("dark"));
    /// assert_eq!(request.cookie("sid"), None, "names are case-sensitive");
    /// let names: Vec<&str> = request.cookies().map(|(name, _)| name).collect();
    /// assert_eq!(names, ["SID", "lang", "theme"]);
    /// # Ok::<(), ferrule_core::handshake::HandshakeError>(())
    /// ```
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        values(&self.headers, "Cookie").filter_map(|value| std::str::from_utf8(value).ok()).flat_map(cookie::pairs)
    }

    /// The value of the first cookie called `name` (compared case-sensitively), from any
    /// `Cookie` header (see [`cookies`](Self::cookies)).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies().find(|(n, _)| *n == name).map(|(_, value)| value)
    }

    /// Every header in order, as `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter()
    }

    /// The first header called `name` (compared case-insensitively), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_str(&self.headers, name)
    }

    /// The `Host` header (RFC 6455 section 4.1 item 4).
    pub fn host(&self) -> Option<&str> {
        self.header("Host")
    }

    /// The `Origin` header (RFC 6455 section 10.2); browsers always send it.
    pub fn origin(&self) -> Option<&str> {
        self.header("Origin")
    }

    /// The `Sec-WebSocket-Key` header (RFC 6455 section 4.1 item 7).
    pub fn key(&self) -> Option<&str> {
        self.header("Sec-WebSocket-Key")
    }

    /// The subprotocols offered in every `Sec-WebSocket-Protocol` header, in the client's order
    /// (RFC 6455 section 4.1 item 10). Empty when none are offered or the header is malformed
    /// (which [`validate`] reports).
    pub fn subprotocols(&self) -> &[String] {
        self.subprotocols.as_deref().unwrap_or_default()
    }

    /// The extensions offered in every `Sec-WebSocket-Extensions` header, in the client's order
    /// (RFC 6455 section 9.1). Empty when none are offered or the header is malformed (which
    /// [`validate`] reports).
    pub fn extensions(&self) -> &[ExtensionOffer] {
        self.extensions.as_deref().unwrap_or_default()
    }

    /// The single value of header `name`: `Ok(None)` when absent, an error when repeated.
    fn single(&self, name: &'static str) -> Result<Option<&[u8]>, HandshakeError> {
        let mut found = values(&self.headers, name);
        let first = found.next();
        if found.next().is_some() {
            return Err(HandshakeError::DuplicateHeader(name));
        }
        Ok(first)
    }
}

/// Checks a request against RFC 6455 section 4.2.1, except the origin (which is policy).
///
/// In order: method `GET` (else 405), HTTP/1.1 (400), one non-empty `Host` (400), `Upgrade`
/// listing `websocket` (400), `Connection` listing `upgrade` (400), `Sec-WebSocket-Version: 13`
/// (missing: 400, other: 426), one `Sec-WebSocket-Key` that is base64 of 16 bytes (400),
/// well-formed `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` (400). The first failure
/// is returned; its [`response`](HandshakeError::response) is the rejection to send.
///
/// An HTTP/2 request (RFC 8441 sections 4 and 5) must instead be a `CONNECT` (else 405) with
/// `:protocol` `websocket` (400) and an authority (400); it has no `Upgrade`, `Connection` or
/// `Sec-WebSocket-Key`, and the version, subprotocol and extension checks are the same.
pub fn validate(request: &Request) -> Result<(), HandshakeError> {
    match &request.framing {
        Framing::Http1(minor) => {
            if request.method != "GET" {
                return Err(HandshakeError::MethodNotGet);
            }
            if *minor != 1 {
                return Err(HandshakeError::UnsupportedHttpVersion);
            }
        }
        Framing::Http2 { protocol } => {
            if request.method != "CONNECT" {
                return Err(HandshakeError::MethodNotConnect);
            }
            if protocol.as_deref() != Some("websocket") {
                return Err(HandshakeError::InvalidProtocol);
            }
        }
        Framing::Unsupported => return Err(HandshakeError::UnsupportedHttpVersion),
    }
    match request.single("Host")? {
        Some(host) if !host.is_empty() && std::str::from_utf8(host).is_ok() => {}
        _ => return Err(HandshakeError::MissingHost),
    }
    let http1 = !request.is_http2();
    if http1 && !list_contains(values(&request.headers, "Upgrade"), "websocket") {
        return Err(HandshakeError::InvalidUpgrade);
    }
    if http1 && !list_contains(values(&request.headers, "Connection"), "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    match request.single("Sec-WebSocket-Version")? {
        None => return Err(HandshakeError::MissingVersion),
        Some(b"13") => {}
        Some(_) => return Err(HandshakeError::UnsupportedVersion),
    }
    if http1 {
        let key = request.single("Sec-WebSocket-Key")?.ok_or(HandshakeError::MissingKey)?;
        let mut decoded = [0u8; 18];
        match BASE64.decode_slice(key, &mut decoded) {
            Ok(16) => {}
            _ => return Err(HandshakeError::InvalidKey),
        }
    }
    if request.subprotocols.is_none() {
        return Err(HandshakeError::InvalidSubprotocol);
    }
    if request.extensions.is_none() {
        return Err(HandshakeError::InvalidExtensions);
    }
    Ok(())
}

/// How a server answers handshake requests: which origins it accepts, which subprotocols it
/// speaks, and whether it compresses (permessage-deflate, RFC 7692). Other extensions are
/// declined.
///
/// # Examples
///
/// ```
/// use ferrule_core::handshake::{OriginPattern, OriginPolicy, ServerPolicy};
///
/// let policy = ServerPolicy::default()
///     .origin(OriginPolicy::AllowList(vec![OriginPattern::new("https://*.example.com")]))
///     .subprotocols(vec!["v2.chat".into(), "v1.chat".into()]);
/// assert_eq!(policy.subprotocols[0], "v2.chat");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerPolicy {
    /// Which `Origin`s are accepted. Default [`OriginPolicy::SameOrigin`].
    pub origin: OriginPolicy,
    /// The subprotocols this server speaks, most preferred first. Default none.
    pub subprotocols: Vec<String>,
    /// Accept permessage-deflate offers with these settings (RFC 7692 section 7.1); `None`
    /// declines them. Default `None`.
    ///
    /// The first offer this server can accept wins, in the client's order; an offer with an
    /// unknown or repeated parameter or an invalid value is declined and the next one tried
    /// (section 5.1). Settings that fail [`DeflateConfig::validate`] decline every offer.
    pub deflate: Option<DeflateConfig>,
}

impl ServerPolicy {
    /// Sets [`origin`](Self::origin).
    pub fn origin(mut self, origin: OriginPolicy) -> Self {
        self.origin = origin;
        self
    }

    /// Sets [`subprotocols`](Self::subprotocols).
    pub fn subprotocols(mut self, subprotocols: Vec<String>) -> Self {
        self.subprotocols = subprotocols;
        self
    }

    /// Sets [`deflate`](Self::deflate).
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    /// Validates `request` ([`validate`], then the origin: 403 when refused) and builds the
    /// `101 Switching Protocols` (RFC 6455 section 4.2.2), or the `200` that accepts an HTTP/2
    /// extended CONNECT (RFC 8441 section 5, with none of the three headers that follow): `Upgrade: websocket`,
    /// `Connection: Upgrade`, `Sec-WebSocket-Accept`, and `Sec-WebSocket-Protocol` with the
    /// first of this server's subprotocols that the client offered (none when there is no
    /// overlap, which is not an error), and `Sec-WebSocket-Extensions` with the permessage-deflate
    /// answer when [`deflate`](Self::deflate) is set and an offer is acceptable (RFC 7692 section
    /// 7.1; see [`Response::deflate`]). Other extension offers are declined by leaving them out.
    /// When [`DeflateConfig::required`] is set and no offer is acceptable, the request is rejected
    /// ([`HandshakeError::DeflateRequired`]).
    ///
    /// On failure, the error's [`response`](HandshakeError::response) is the rejection to send.
    pub fn accept(&self, request: &Request) -> Result<Response, HandshakeError> {
        validate(request)?;
        let host = request.host().unwrap_or_default();
        let origin = match request.single("Origin")? {
            None => None,
            Some(origin) => Some(std::str::from_utf8(origin).map_err(|_| HandshakeError::OriginNotAllowed)?),
        };
        if !self.origin.allows(origin, host) {
            return Err(HandshakeError::OriginNotAllowed);
        }
        let subprotocol = self.select_subprotocol(request);
        let mut response = if request.is_http2() {
            // RFC 8441 section 5: a 2xx accepts; no key, no accept, no Upgrade.
            Response::extended_connect_accept(subprotocol)
        } else {
            Response::switching_protocols(accept_key(request.key().unwrap_or_default().as_bytes()), subprotocol)
        };
        if let Some(config) = &self.deflate {
            match negotiate_offers(config, request.extensions()) {
                Some((deflate, answer)) => response.set_deflate(deflate, answer),
                None if config.required => return Err(HandshakeError::DeflateRequired),
                None => {}
            }
        }
        Ok(response)
    }

    /// Like [`accept`](Self::accept), but always a response to send: the 101, or the rejection.
    pub fn respond(&self, request: &Request) -> Response {
        self.accept(request).unwrap_or_else(|error| {
            error.response().unwrap_or_else(|| Response::rejection(400, "WebSocket handshake failed\n"))
        })
    }

    /// The first of this server's subprotocols that the client offered.
    pub fn select_subprotocol<'a>(&'a self, request: &Request) -> Option<&'a str> {
        self.subprotocols
            .iter()
            .find(|ours| request.subprotocols().iter().any(|theirs| theirs == *ours))
            .map(String::as_str)
    }
}

/// How a request came: the HTTP/1 minor version, or HTTP/2 with its `:protocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(dead_code, reason = "only `Request::from_http` makes HTTP/2 requests"))]
enum Framing {
    Http1(u8),
    Http2 {
        protocol: Option<String>,
    },
    /// HTTP/0.9 or HTTP/3, which [`validate`] refuses.
    Unsupported,
}

#[cfg(feature = "http")]
impl Request {
    /// A request that another HTTP server parsed, from the `http` crate's types, to check with
    /// [`ServerPolicy::accept`] like one read by [`ServerHandshake`].
    ///
    /// `protocol` is the `:protocol` pseudo-header of an HTTP/2 extended CONNECT (RFC 8441
    /// section 4), which the `http` crate does not carry (hyper keeps it in the request's
    /// extensions as `hyper::ext::Protocol`); pass `None` on HTTP/1. On HTTP/2 the authority of
    /// the URI stands for a missing `Host` header (RFC 9113 section 8.3.1). The target is the
    /// URI's path and query.
    ///
    /// # Examples
    ///
    /// ```
    /// use ferrule_core::handshake::{Request, ServerPolicy};
    ///
    /// let request = http::Request::builder()
    ///     .method("CONNECT")
    ///     .version(http::Version::HTTP_2)
    ///     .uri("https://example.com/chat")
    ///     .header("sec-websocket-version", "13")
    ///     .body(())?;
    /// let request = Request::from_http(&request, Some("websocket"));
    /// let response = ServerPolicy::default().accept(&request)?;
    /// assert_eq!(response.status(), 200, "RFC 8441 section 5");
    /// let response = response.to_http(http::Version::HTTP_2);
    /// assert!(response.headers().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_http<B>(request: &::http::Request<B>, protocol: Option<&str>) -> Self {
        Self::from_http_head(request.method(), request.uri(), request.version(), request.headers(), protocol)
    }

    /// [`from_http`](Self::from_http) from a request's parts, as an extractor sees them.
    pub fn from_http_parts(parts: &::http::request::Parts, protocol: Option<&str>) -> Self {
        Self::from_http_head(&parts.method, &parts.uri, parts.version, &parts.headers, protocol)
    }

    fn from_http_head(
        method: &::http::Method,
        uri: &::http::Uri,
        version: ::http::Version,
        map: &::http::HeaderMap,
        protocol: Option<&str>,
    ) -> Self {
        let framing = match version {
            ::http::Version::HTTP_10 => Framing::Http1(0),
            ::http::Version::HTTP_11 => Framing::Http1(1),
            ::http::Version::HTTP_2 => Framing::Http2 { protocol: protocol.map(str::to_owned) },
            _ => Framing::Unsupported,
        };
        let mut fields: Vec<(&str, &[u8])> =
            map.iter().map(|(name, value)| (name.as_str(), trim_ows(value.as_bytes()))).collect();
        if matches!(framing, Framing::Http2 { .. }) && !map.contains_key(::http::header::HOST) {
            if let Some(authority) = uri.authority() {
                fields.push(("host", authority.as_str().as_bytes()));
            }
        }
        let headers = Headers::from_fields(fields.iter().copied());
        let subprotocols = parse_subprotocols(values(&headers, "Sec-WebSocket-Protocol"));
        let extensions = parse_offers(values(&headers, "Sec-WebSocket-Extensions"));
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Self { method: method.as_str().to_owned(), target, framing, headers, subprotocols, extensions }
    }
}

/// Splits every `Sec-WebSocket-Protocol` value into its tokens, in order; `None` when an element
/// is not a token. Empty elements are skipped (RFC 7230 section 7).
fn parse_subprotocols<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for item in values.flat_map(|v| v.split(|&b| b == b',')) {
        let item = trim_ows(item);
        if item.is_empty() {
            continue;
        }
        if !is_token(item) {
            return None;
        }
        names.push(String::from_utf8(item.to_vec()).ok()?);
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Request {
        let mut hs = ServerHandshake::new(Limits::default(), Instant::now());
        hs.handle_input(head.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn request_splits_path_and_query() {
        let r = parse("GET /a/b?x=1?y HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.method(), "GET");
        assert_eq!(r.target(), "/a/b?x=1?y");
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), Some("x=1?y"));
        assert_eq!(r.version(), 1);
        let r = parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query(), None);
    }

    #[test]
    fn request_query_params_are_decoded_and_absent_without_a_query() {
        let r = parse("GET /a?x=1&name=J%C3%BCrgen+B&x=2&bad=%zz%4 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query_param("x").as_deref(), Some("1"), "the first of repeated names");
        assert_eq!(r.query_param("name").as_deref(), Some("Jürgen B"));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz%4"), "malformed escapes kept");
        assert_eq!(r.query_param("y"), None);
        let pairs: Vec<_> = r.query_pairs().map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs[2], ("x".to_owned(), "2".to_owned()));
        let r = parse("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query_pairs().count(), 0);
        assert_eq!(r.query_param("x"), None);
        let r = parse("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query(), Some(""));
        assert_eq!(r.query_pairs().count(), 0);
    }

    #[test]
    fn request_query_param_matches_the_decoded_name() {
        let r = parse("GET /?first%20name=a&last+name=b HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query_param("first name").as_deref(), Some("a"));
        assert_eq!(r.query_param("last name").as_deref(), Some("b"));
        assert_eq!(r.query_param("first%20name"), None);
    }

    #[test]
    fn request_cookies_come_from_every_cookie_header() {
        let mut hs = ServerHandshake::new(Limits::default(), Instant::now());
        let head = b"GET / HTTP/1.1\r\nCookie: a=1; b=2\r\nX: y\r\ncookie:c=3\r\nCookie: \xff=4\r\nCookie: a=5\r\n\r\n";
        let r = hs.handle_input(head).unwrap().unwrap();
        let cookies: Vec<_> = r.cookies().collect();
        assert_eq!(cookies, [("a", "1"), ("b", "2"), ("c", "3"), ("a", "5")], "the non-UTF-8 header is skipped");
        assert_eq!(r.cookie("a"), Some("1"));
        assert_eq!(r.cookie("c"), Some("3"));
        assert_eq!(r.cookie("A"), None);
        assert_eq!(parse("GET / HTTP/1.1\r\n\r\n").cookie("a"), None);
    }

    #[test]
    fn request_subprotocols_are_collected_across_headers_in_order() {
        let r = parse("GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a, b\r\nsec-websocket-protocol:  c ,,\r\n\r\n");
        assert_eq!(r.subprotocols(), ["a", "b", "c"]);
        let r = parse("GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a b\r\n\r\n");
        assert!(r.subprotocols().is_empty());
        assert!(r.subprotocols.is_none());
    }

    #[test]
    fn request_header_values_are_trimmed_and_non_utf8_kept_as_bytes() {
        let mut hs = ServerHandshake::new(Limits::default(), Instant::now());
        let r = hs.handle_input(b"GET / HTTP/1.1\r\nX-A:   v  \r\nX-B: \xff\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.header("x-a"), Some("v"));
        assert_eq!(r.header("X-B"), None);
        assert!(r.headers().any(|(n, v)| n == "X-B" && v == b"\xff"));
    }

    #[test]
    fn select_subprotocol_follows_server_preference() {
        let r = parse("GET / HTTP/1.1\r\nSec-WebSocket-Protocol: a, b, c\r\n\r\n");
        let policy = ServerPolicy::default().subprotocols(vec!["z".into(), "c".into(), "a".into()]);
        assert_eq!(policy.select_subprotocol(&r), Some("c"));
        let policy = ServerPolicy::default().subprotocols(vec!["A".into()]);
        assert_eq!(policy.select_subprotocol(&r), None);
    }
}
