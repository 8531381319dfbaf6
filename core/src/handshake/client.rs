//! The client side of the opening handshake (RFC 6455 sections 3 and 4.1).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use super::extensions::parse_offers;
use super::head::HeadPhase;
use super::http::{
    HeaderError, Headers, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, check_header, check_subprotocols,
    first_str, list_contains, owned_headers, values,
};
use super::origin::{is_reg_name_byte, parse_port};
use super::rejection::Rejection;
use super::{HandshakeError, Limits, accept_key};
use crate::Connection;
use crate::config::{Config, ConfigError, Role};
use crate::deflate::{DeflateConfig, DeflateResponseError, PerMessageDeflate, offer_value, parse_answer};
use crate::entropy::Entropy;

/// What a client asks for: the target from a `ws://` or `wss://` URL (RFC 6455 section 3), the
/// subprotocols it offers, whether it offers permessage-deflate (RFC 7692), and any extra headers.
///
/// # Examples
///
/// ```
/// use ferrule_core::handshake::ClientRequest;
///
/// let request = ClientRequest::new("wss://[::1]:9001/chat?room=1")?
///     .subprotocols(vec!["chat".into()])?
///     .header("Authorization", "Bearer abc")?;
/// assert_eq!(request.host(), "::1");
/// assert_eq!(request.port(), 9001);
/// assert!(request.is_secure());
/// assert_eq!(request.path_and_query(), "/chat?room=1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    secure: bool,
    /// The host as written, without IPv6 brackets.
    host: String,
    port: u16,
    /// The `Host` header value.
    host_header: String,
    path_and_query: String,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
    deflate: Option<DeflateConfig>,
}

/// Headers a [`ClientRequest`] writes itself (or that would break the handshake), which
/// [`ClientRequest::header`] refuses.
const RESERVED: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept",
    "Content-Length",
    "Transfer-Encoding",
];

impl ClientRequest {
    /// Parses a WebSocket URL: `ws://host[:port][/path][?query]` or `wss://...` (RFC 6455
    /// section 3). The scheme is case-insensitive; the host may be a bracketed IPv6 literal
    /// (`[::1]`); a missing path means `/`. Fragments, user info, other schemes, an empty host and
    /// a port outside `1..=65535` are refused with [`HandshakeError::InvalidUrl`].
    pub fn new(url: &str) -> Result<Self, HandshakeError> {
        parse_url(url).map_err(HandshakeError::InvalidUrl)
    }

    /// Offers these subprotocols, most preferred first (RFC 6455 section 4.1 item 10), replacing
    /// any offered before.
    ///
    /// Fails with [`HeaderError::InvalidSubprotocol`] for a name that is not an HTTP token (RFC
    /// 7230 section 3.2.6: no spaces, commas or other separators) and
    /// [`HeaderError::DuplicateSubprotocol`] for a name given twice.
    pub fn subprotocols(mut self, subprotocols: Vec<String>) -> Result<Self, HeaderError> {
        check_subprotocols(&subprotocols)?;
        self.subprotocols = subprotocols;
        Ok(self)
    }

    /// Adds a header to the request (e.g. `Origin`, `Authorization`, `Cookie`), after the
    /// handshake's own. Checked like [`Response::insert_header`](super::Response::insert_header);
    /// the handshake's own headers (`Host`, `Upgrade`, `Connection`, `Sec-WebSocket-*`) and the
    /// body framing headers are refused with [`HeaderError::Reserved`].
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HeaderError> {
        check_header(name, value)?;
        if RESERVED.iter().any(|reserved| reserved.eq_ignore_ascii_case(name)) {
            return Err(HeaderError::Reserved(name.to_owned()));
        }
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The host to connect to, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to: the URL's, or 80 for `ws` and 443 for `wss`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the URL is `wss`: the caller must run TLS under the handshake (RFC 6455 section
    /// 4.1); a connector without TLS refuses it with [`HandshakeError::TlsRequired`].
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The request target: the path (at least `/`) and the query, if any.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The value of the `Host` header: the host, with the port only when it is not the default.
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// The subprotocols offered, most preferred first.
    pub fn offered_subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// Offers permessage-deflate with these settings (RFC 7692 section 7.1), or withdraws the
    /// offer with `None`. The offer is one `Sec-WebSocket-Extensions` element with a parameter for
    /// each setting that asks for something (see [`DeflateConfig`]).
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] from [`DeflateConfig::validate`].
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> Result<Self, ConfigError> {
        if let Some(config) = &deflate {
            config.validate()?;
        }
        self.deflate = deflate;
        Ok(self)
    }

    /// The permessage-deflate settings offered, if any.
    pub fn offered_deflate(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }

    /// The extra headers, in order.
    pub fn extra_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Why a WebSocket URL was refused (RFC 6455 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL has no `scheme://`.
    MissingScheme,
    /// The scheme is not `ws` or `wss`.
    UnsupportedScheme,
    /// The URL has a `#fragment`, which RFC 6455 section 3 forbids.
    Fragment,
    /// The URL has `user@` information, which a WebSocket URL cannot carry.
    UserInfo,
    /// The host is empty.
    EmptyHost,
    /// The host has characters a host cannot have, or a malformed IPv6 literal.
    InvalidHost,
    /// The port is empty, not a number, or outside `1..=65535`.
    InvalidPort,
    /// The path or query has spaces, control or non-ASCII characters (percent-encode them).
    InvalidPath,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingScheme => "missing scheme",
            Self::UnsupportedScheme => "scheme must be ws or wss",
            Self::Fragment => "fragments are not allowed",
            Self::UserInfo => "user info is not allowed",
            Self::EmptyHost => "empty host",
            Self::InvalidHost => "invalid host",
            Self::InvalidPort => "invalid port",
            Self::InvalidPath => "invalid path or query",
        })
    }
}

impl std::error::Error for UrlError {}

fn parse_url(url: &str) -> Result<ClientRequest, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
    let secure = if scheme.eq_ignore_ascii_case("ws") {
        false
    } else if scheme.eq_ignore_ascii_case("wss") {
        true
    } else {
        return Err(UrlError::UnsupportedScheme);
    };
    if rest.contains('#') {
        return Err(UrlError::Fragment);
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, host_in_header, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or(UrlError::InvalidHost)?;
        if inner.is_empty() {
            return Err(UrlError::EmptyHost);
        }
        if !inner.contains(':') || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(UrlError::InvalidHost);
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlError::InvalidHost)?),
        };
        let host_in_header = authority.get(..inner.len() + 2).ok_or(UrlError::InvalidHost)?;
        (inner, host_in_header, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(UrlError::EmptyHost);
        }
        if !host.bytes().all(is_reg_name_byte) {
            return Err(UrlError::InvalidHost);
        }
        (host, host, port)
    };
    let default_port = if secure { 443 } else { 80 };
    let port = match port {
        None => default_port,
        Some(port) => match parse_port(port) {
            Some(0) | None => return Err(UrlError::InvalidPort),
            Some(port) => port,
        },
    };
    if !path_and_query.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UrlError::InvalidPath);
    }
    let path_and_query = match path_and_query.strip_prefix('?') {
        Some(_) => format!("/{path_and_query}"),
        None if path_and_query.is_empty() => "/".to_owned(),
        None => path_and_query.to_owned(),
    };
    let host_header = if port == default_port { host_in_header.to_owned() } else { format!("{host_in_header}:{port}") };
    Ok(ClientRequest {
        secure,
        host: host.to_owned(),
        port,
        host_header,
        path_and_query,
        subprotocols: Vec::new(),
        headers: Vec::new(),
        deflate: None,
    })
}

/// Sends a client's opening handshake request and checks the server's response (RFC 6455
/// section 4.1), incrementally and within [`Limits`].
///
/// Call order: [`new`](Self::new); write [`request_bytes`](Self::request_bytes) to the transport;
/// then [`handle_input`](Self::handle_input) with every chunk read,
/// [`handle_timeout`](Self::handle_timeout) whenever the deadline from
/// [`poll_timeout`](Self::poll_timeout) passes, and [`handle_eof`](Self::handle_eof) when the
/// transport ends, until `handle_input` returns the validated [`ClientResponse`] or one of them
/// returns an error (then close the transport). Finally [`into_connection`](Self::into_connection).
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use ferrule_core::Config;
/// use ferrule_core::Entropy;
/// use ferrule_core::handshake::{accept_key, ClientHandshake, ClientRequest, Limits};
///
/// let now = Instant::now();
/// let request = ClientRequest::new("ws://example.com/chat")?;
/// let mut handshake = ClientHandshake::new(request, &mut Entropy::from_os(), Limits::default(), now);
/// let _to_send: &[u8] = handshake.request_bytes();
///
/// // What a server answers, followed by its first frame (a text frame "hi").
/// let mut reply = format!(
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: {}\r\n\r\n",
///     accept_key(handshake.key().as_bytes()),
/// )
/// .into_bytes();
/// reply.extend_from_slice(b"\x81\x02hi");
/// let response = handshake.handle_input(&reply)?.expect("complete");
/// assert_eq!(response.status(), 101);
///
/// let (_connection, leftover) = handshake.into_connection(Config::default(), now)?;
/// assert_eq!(&leftover[..], b"\x81\x02hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ClientHandshake {
    request: ClientRequest,
    key: String,
    request_bytes: Vec<u8>,
    phase: HeadPhase,
    /// The server refused the upgrade and the body of its answer is still arriving.
    rejection: Option<Rejection>,
    max_rejection_body: usize,
    /// The permessage-deflate the server agreed to, once its response was validated.
    deflate: Option<PerMessageDeflate>,
}

impl ClientHandshake {
    /// Starts a handshake: draws a 16-byte `Sec-WebSocket-Key` from `entropy` (RFC 6455
    /// section 4.1 item 7) and builds the request; the deadline for the response is
    /// `now + limits.timeout`.
    ///
    /// The request is `GET <path_and_query> HTTP/1.1` with `Host`, `Upgrade: websocket`,
    /// `Connection: Upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`,
    /// `Sec-WebSocket-Protocol` when subprotocols are offered, `Sec-WebSocket-Extensions` when
    /// permessage-deflate is offered, then the extra headers.
    pub fn new(request: ClientRequest, entropy: &mut Entropy, limits: Limits, now: Instant) -> Self {
        let mut nonce = [0u8; 16];
        entropy.fill(&mut nonce);
        let key = BASE64.encode(nonce);
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(request.path_and_query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut line = |name: &str, value: &str| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line("Host", &request.host_header);
        line("Upgrade", "websocket");
        line("Connection", "Upgrade");
        line("Sec-WebSocket-Key", &key);
        line("Sec-WebSocket-Version", "13");
        if !request.subprotocols.is_empty() {
            line(SEC_WEBSOCKET_PROTOCOL, &request.subprotocols.join(", "));
        }
        if let Some(config) = &request.deflate {
            line(SEC_WEBSOCKET_EXTENSIONS, &offer_value(config));
        }
        for (name, value) in &request.headers {
            line(name, value);
        }
        out.extend_from_slice(b"\r\n");
        Self {
            request,
            key,
            request_bytes: out,
            phase: HeadPhase::new(&limits, now),
            rejection: None,
            max_rejection_body: limits.max_rejection_body,
            deflate: None,
        }
    }

    /// The request to write to the transport.
    pub fn request_bytes(&self) -> &[u8] {
        &self.request_bytes
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request this handshake was built from.
    pub fn request(&self) -> &ClientRequest {
        &self.request
    }

    /// Feeds bytes read from the transport.
    ///
    /// Returns `Ok(None)` while the response head is incomplete and `Ok(Some(response))` once it
    /// is complete and valid: status 101, `Upgrade` listing `websocket`, `Connection` listing
    /// `upgrade`, `Sec-WebSocket-Accept` matching the key, at most one subprotocol and only one
    /// offered, and no extension but permessage-deflate, which must be offered and answered as
    /// RFC 7692 section 7.1 allows ([`HandshakeError::InvalidDeflateResponse`] says what was
    /// wrong; when [`DeflateConfig::required`] is set, a decline fails with
    /// [`HandshakeError::DeflateRequired`]). The head is bounded like the server's (431-style
    /// errors [`HandshakeError::HeadersTooLarge`] and [`HandshakeError::TooManyHeaders`]).
    ///
    /// Any other status is a refusal, reported as [`HandshakeError::NotSwitchingProtocols`] once
    /// its body has ended (by `Content-Length`, the chunked coding, or [`handle_eof`]) or
    /// [`Limits::max_rejection_body`] bytes of it have arrived, whichever comes first; until
    /// then `Ok(None)` asks for more. A deadline that passes meanwhile
    /// ([`handle_timeout`](Self::handle_timeout)) reports it with the body so far.
    ///
    /// [`handle_eof`]: Self::handle_eof
    ///
    /// Bytes after the head are kept for [`into_connection`](Self::into_connection). After the
    /// response has been returned, further input is appended to them and `Ok(None)` is returned;
    /// after an error, the same error is returned again.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Option<ClientResponse>, HandshakeError> {
        if let Some(rejection) = &mut self.rejection {
            rejection.push(data);
            return self.settle_if_complete();
        }
        let head = self.phase.feed(data, |bytes, slots| {
            let mut parsed = httparse::Response::new(slots);
            match parsed.parse(bytes) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = parsed.code.unwrap_or_default();
                    let reason = parsed.reason.unwrap_or_default().to_owned();
                    Ok(Some((head_len, (status, reason, owned_headers(parsed.headers)))))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders),
                Err(error) => Err(HandshakeError::MalformedResponse(error)),
            }
        })?;
        let Some((status, reason, headers)) = head else { return Ok(None) };
        if status != 101 {
            let mut rejection = Rejection::new(status, reason, headers, self.max_rejection_body);
            rejection.push(&self.phase.take_leftover());
            self.rejection = Some(rejection);
            return self.settle_if_complete();
        }
        match self.check(status, reason, headers) {
            Ok(response) => {
                self.deflate = response.deflate.clone();
                Ok(Some(response))
            }
            Err(error) => Err(self.phase.fail(error)),
        }
    }

    /// Reports the refusal being read once its body is complete.
    fn settle_if_complete(&mut self) -> Result<Option<ClientResponse>, HandshakeError> {
        match &self.rejection {
            Some(rejection) if rejection.is_complete() => Err(self.settle()),
            _ => Ok(None),
        }
    }

    /// Ends the refusal being read with the body so far; the handshake fails with it for good.
    fn settle(&mut self) -> HandshakeError {
        let error = self.rejection.take().map_or(HandshakeError::Timeout, Rejection::into_error);
        self.phase.fail(error)
    }

    /// Checks a complete `101` response head against RFC 6455 section 4.1.
    fn check(&self, status: u16, reason: String, headers: Headers) -> Result<ClientResponse, HandshakeError> {
        if !list_contains(values(&headers, "Upgrade"), "websocket") {
            return Err(HandshakeError::InvalidUpgrade);
        }
        if !list_contains(values(&headers, "Connection"), "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        {
            let mut accepts = values(&headers, "Sec-WebSocket-Accept");
            let accept = accepts.next().ok_or(HandshakeError::MissingAccept)?;
            if accepts.next().is_some() || accept != accept_key(self.key.as_bytes()).as_bytes() {
                return Err(HandshakeError::AcceptMismatch);
            }
        }
        let subprotocol = self.check_subprotocol(values(&headers, SEC_WEBSOCKET_PROTOCOL))?;
        let deflate = self.check_extensions(&headers)?;
        Ok(ClientResponse { status, reason, headers, subprotocol, deflate })
    }

    /// The extensions the server selected: permessage-deflate, if offered and validly answered
    /// (RFC 7692 section 7.1), and nothing else.
    fn check_extensions(&self, headers: &Headers) -> Result<Option<PerMessageDeflate>, HandshakeError> {
        let Some(config) = &self.request.deflate else {
            return match values(headers, SEC_WEBSOCKET_EXTENSIONS).next() {
                Some(_) => Err(HandshakeError::UnsolicitedExtension),
                None => Ok(None),
            };
        };
        let answers = parse_offers(values(headers, SEC_WEBSOCKET_EXTENSIONS))
            .ok_or(HandshakeError::InvalidDeflateResponse(DeflateResponseError::Malformed))?;
        if answers.iter().any(|a| !a.name().eq_ignore_ascii_case("permessage-deflate")) {
            return Err(HandshakeError::UnsolicitedExtension);
        }
        match parse_answer(config, &answers).map_err(HandshakeError::InvalidDeflateResponse)? {
            None if config.required => Err(HandshakeError::DeflateRequired),
            deflate => Ok(deflate),
        }
    }

    /// The selected subprotocol: at most one value, and one that was offered.
    fn check_subprotocol<'a>(
        &self,
        mut protocols: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Option<String>, HandshakeError> {
        match (protocols.next(), protocols.next()) {
            (None, _) => Ok(None),
            (Some(chosen), None) => {
                let offered = self.request.subprotocols.iter().find(|name| name.as_bytes() == chosen);
                Ok(Some(offered.ok_or(HandshakeError::UnexpectedSubprotocol)?.clone()))
            }
            (Some(_), Some(_)) => Err(HandshakeError::UnexpectedSubprotocol),
        }
    }

    /// The deadline for the response, while it is still being read (its head, or the body of a
    /// refusal).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.rejection.is_some() { self.phase.deadline() } else { self.phase.poll_timeout() }
    }

    /// Tells the handshake the time: fails with [`HandshakeError::Timeout`] when the deadline has
    /// passed and the response head is still incomplete, or with the refusal
    /// ([`HandshakeError::NotSwitchingProtocols`]) and the body so far when its body was still
    /// arriving.
    ///
    /// Early calls do nothing, and so do calls after the response was returned or after another
    /// error; once timed out, every later call returns the timeout again.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if self.rejection.is_some() {
            if self.phase.deadline().is_some_and(|deadline| now >= deadline) {
                return Err(self.settle());
            }
            return Ok(());
        }
        self.phase.handle_timeout(now)
    }

    /// Tells the handshake that the transport ended (a read returned no bytes, or failed).
    ///
    /// Fails with the refusal ([`HandshakeError::NotSwitchingProtocols`]) when its body was still
    /// arriving (a body that runs to the end of the connection ends here), and with the earlier
    /// error when the handshake had already failed. `Ok(())` otherwise: while the head is
    /// incomplete the early end is the caller's to report, and after the response was returned
    /// it is the connection's.
    pub fn handle_eof(&mut self) -> Result<(), HandshakeError> {
        if self.rejection.is_some() {
            return Err(self.settle());
        }
        self.phase.failure().map_or(Ok(()), |error| Err(error.clone()))
    }

    /// How many bytes of an incomplete response head are buffered; never more than
    /// [`Limits::max_header_bytes`]. Zero once the head is complete or the handshake failed (the
    /// body of a refusal is bounded by [`Limits::max_rejection_body`]).
    pub fn buffered_len(&self) -> usize {
        self.phase.buffered_len()
    }

    /// Turns a completed handshake into a client [`Connection`], with the bytes that followed the
    /// response head (the server's first frames), intact.
    ///
    /// Call it only after [`handle_input`](Self::handle_input) returned the response; called
    /// earlier, the leftover is empty. Fails only when `config` is invalid.
    ///
    /// The connection applies the permessage-deflate the server agreed to
    /// ([`ClientResponse::deflate`]).
    pub fn into_connection(
        self,
        config: impl Into<Arc<Config>>,
        now: Instant,
    ) -> Result<(Connection, Bytes), ConfigError> {
        let connection = Connection::with_deflate(Role::Client, config, self.deflate, now)?;
        Ok((connection, self.phase.into_leftover()))
    }
}

/// A server's validated `101 Switching Protocols` (RFC 6455 section 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    status: u16,
    reason: String,
    headers: Headers,
    subprotocol: Option<String>,
    deflate: Option<PerMessageDeflate>,
}

impl ClientResponse {
    /// The status code: always 101.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as sent.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Every header in order, as `(name, value)` with the value trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter()
    }

    /// The first header called `name` (compared case-insensitively), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_str(&self.headers, name)
    }

    /// The subprotocol the server selected, one of those offered.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate the server agreed to (RFC 7692 section 7.1), or `None` when it was
    /// not offered or the server declined.
    pub fn deflate(&self) -> Option<&PerMessageDeflate> {
        self.deflate.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_defaults_path_and_port() {
        let r = ClientRequest::new("ws://example.com").unwrap();
        assert_eq!((r.host(), r.port(), r.is_secure(), r.path_and_query()), ("example.com", 80, false, "/"));
        assert_eq!(r.host_header(), "example.com");
        let r = ClientRequest::new("WSS://example.com?x=1").unwrap();
        assert_eq!((r.port(), r.is_secure(), r.path_and_query()), (443, true, "/?x=1"));
    }

    #[test]
    fn url_host_header_has_port_only_when_not_default() {
        assert_eq!(ClientRequest::new("ws://h:80/").unwrap().host_header(), "h");
        assert_eq!(ClientRequest::new("ws://h:443/").unwrap().host_header(), "h:443");
        assert_eq!(ClientRequest::new("wss://h:443/").unwrap().host_header(), "h");
        assert_eq!(ClientRequest::new("wss://h:8443/").unwrap().host_header(), "h:8443");
        let r = ClientRequest::new("ws://[::1]:9001/p").unwrap();
        assert_eq!((r.host(), r.port(), r.host_header()), ("::1", 9001, "[::1]:9001"));
        assert_eq!(ClientRequest::new("ws://[::1]").unwrap().host_header(), "[::1]");
    }

    #[test]
    fn url_rejections_have_distinct_reasons() {
        let cases = [
            ("example.com/chat", UrlError::MissingScheme),
            ("http://example.com/", UrlError::UnsupportedScheme),
            ("wss:/example.com", UrlError::MissingScheme),
            ("ws://example.com/#frag", UrlError::Fragment),
            ("ws://example.com#", UrlError::Fragment),
            ("ws://user:pw@example.com/", UrlError::UserInfo),
            ("ws:///chat", UrlError::EmptyHost),
            ("ws://:80/", UrlError::EmptyHost),
            ("ws://[]/", UrlError::EmptyHost),
            ("ws://exa mple.com/", UrlError::InvalidHost),
            ("ws://[::1/", UrlError::InvalidHost),
            ("ws://[::1]x/", UrlError::InvalidHost),
            ("ws://[example.com]/", UrlError::InvalidHost),
            ("ws://a\r\nX: y/", UrlError::InvalidHost),
            ("ws://example.com:/", UrlError::InvalidPort),
            ("ws://example.com:0/", UrlError::InvalidPort),
            ("ws://example.com:65536/", UrlError::InvalidPort),
            ("ws://example.com:8o/", UrlError::InvalidPort),
            ("ws://example.com:+80/", UrlError::InvalidPort),
            ("ws://example.com:1:2/", UrlError::InvalidPort),
            ("ws://example.com/a b", UrlError::InvalidPath),
            ("ws://example.com/é", UrlError::InvalidPath),
            ("ws://example.com/\r\n", UrlError::InvalidPath),
        ];
        for (url, reason) in cases {
            assert_eq!(ClientRequest::new(url).unwrap_err(), HandshakeError::InvalidUrl(reason), "{url}");
        }
    }

    #[test]
    fn header_refuses_reserved_and_injected() {
        let r = ClientRequest::new("ws://h/").unwrap();
        assert_eq!(r.clone().header("host", "x").unwrap_err(), HeaderError::Reserved("host".into()));
        assert_eq!(
            r.clone().header("Sec-WebSocket-Key", "x").unwrap_err(),
            HeaderError::Reserved("Sec-WebSocket-Key".into())
        );
        assert_eq!(r.clone().header("X-A", "a\r\nb").unwrap_err(), HeaderError::InvalidValue("X-A".into()));
        assert_eq!(r.clone().header("X A", "b").unwrap_err(), HeaderError::InvalidName("X A".into()));
        assert!(r.header("Origin", "http://h").is_ok());
    }

    #[test]
    fn subprotocols_must_be_unique_tokens() {
        let r = ClientRequest::new("ws://h/").unwrap();
        assert_eq!(
            r.clone().subprotocols(vec!["a".into(), "a".into()]).unwrap_err(),
            HeaderError::DuplicateSubprotocol("a".into())
        );
        assert_eq!(
            r.clone().subprotocols(vec!["a,b".into()]).unwrap_err(),
            HeaderError::InvalidSubprotocol("a,b".into())
        );
        assert_eq!(r.subprotocols(vec!["a".into(), "b".into()]).unwrap().offered_subprotocols(), ["a", "b"]);
    }
}
