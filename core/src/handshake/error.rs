//! Why an opening handshake failed, and the HTTP response a server sends for it.

use std::fmt;

use bytes::Bytes;

use super::client::UrlError;
use super::http::{HeaderError, Headers, Response};
use crate::deflate::DeflateResponseError;

/// A failed opening handshake (RFC 6455 section 4).
///
/// Errors a server meets map to a rejection through [`response`](Self::response): 400 for a
/// malformed or non-conforming request, 403 for a refused origin, 405 for a method other than
/// `GET`, 408 for a timeout, 426 for an unsupported WebSocket version and 431 for an oversized
/// head. Errors only a client meets (a bad response, a bad URL) have no response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request head is not valid HTTP/1.x (server, 400).
    MalformedRequest(httparse::Error),
    /// The head did not end within `Limits::max_header_bytes` (server 431; client too).
    HeadersTooLarge,
    /// The head has more than `Limits::max_headers` header lines (server 431; client too).
    TooManyHeaders,
    /// The request method is not `GET` (RFC 6455 section 4.2.1 item 1; server, 405 with `Allow: GET`).
    MethodNotGet,
    /// The request is not HTTP/1.1 (RFC 6455 section 4.2.1 item 1) nor an HTTP/2 extended
    /// CONNECT (RFC 8441 section 4) (server, 400).
    UnsupportedHttpVersion,
    /// An HTTP/2 request's method is not `CONNECT` (RFC 8441 section 4; server, 405 with
    /// `Allow: CONNECT`).
    MethodNotConnect,
    /// An HTTP/2 `CONNECT` has no `:protocol` pseudo-header, or one other than `websocket`: it is
    /// not a WebSocket extended CONNECT (RFC 8441 section 4; server, 400).
    InvalidProtocol,
    /// The `Host` header is missing, empty or not text (RFC 6455 section 4.2.1 item 2; server, 400).
    MissingHost,
    /// A header that must appear at most once appears more than once; it is named (server, 400).
    DuplicateHeader(&'static str),
    /// The `Upgrade` header is missing or does not list `websocket` (RFC 6455 section 4.2.1 item 3;
    /// server 400, and a client's check of the response, section 4.1).
    InvalidUpgrade,
    /// The `Connection` header is missing or does not list `upgrade` (RFC 6455 section 4.2.1
    /// item 4; server 400, and a client's check of the response, section 4.1).
    MissingConnectionUpgrade,
    /// The `Sec-WebSocket-Version` header is missing (RFC 6455 section 4.2.1 item 6; server, 400).
    MissingVersion,
    /// The `Sec-WebSocket-Version` is not 13 (RFC 6455 section 4.4; server, 426 with
    /// `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// The `Sec-WebSocket-Key` header is missing (RFC 6455 section 4.2.1 item 5; server, 400).
    MissingKey,
    /// The `Sec-WebSocket-Key` is not the base64 of exactly 16 bytes (RFC 6455 section 4.2.1
    /// item 5; server, 400).
    InvalidKey,
    /// The `Sec-WebSocket-Protocol` header is not a comma-separated list of tokens (RFC 6455
    /// section 4.1; server, 400).
    InvalidSubprotocol,
    /// The `Sec-WebSocket-Extensions` header does not follow RFC 6455 section 9.1 (server, 400).
    InvalidExtensions,
    /// The `Origin` is refused by the server's `OriginPolicy` (RFC 6455 section 10.2; server, 403).
    OriginNotAllowed,
    /// The head did not arrive before the handshake deadline (server 408; client too).
    Timeout,
    /// The response head is not valid HTTP/1.x (client).
    MalformedResponse(httparse::Error),
    /// The server answered something other than `101 Switching Protocols`: it refused the
    /// upgrade (RFC 6455 section 4.1; client). Everything it said is kept: the status line, the
    /// headers (a `401` has `WWW-Authenticate`, a redirect `Location`) and the start of the body,
    /// which usually says why.
    #[non_exhaustive]
    NotSwitchingProtocols {
        /// The status code the server sent.
        status: u16,
        /// The reason phrase the server sent, e.g. `Unauthorized`.
        reason: String,
        /// The headers the server sent, in order.
        headers: Headers,
        /// The body, or its first [`Limits::max_rejection_body`](super::Limits::max_rejection_body)
        /// bytes (1 KiB by default): what arrived before the body ended, the connection closed or
        /// the handshake deadline passed.
        body: Bytes,
    },
    /// The response has no `Sec-WebSocket-Accept` header (RFC 6455 section 4.1; client).
    MissingAccept,
    /// The `Sec-WebSocket-Accept` does not match the key the client sent (RFC 6455 section 4.1;
    /// client).
    AcceptMismatch,
    /// The response selects a subprotocol the client did not offer, or more than one (RFC 6455
    /// section 4.1; client).
    UnexpectedSubprotocol,
    /// The response selects an extension the client did not offer (RFC 6455 section 4.1; client).
    UnsolicitedExtension,
    /// The response's permessage-deflate answer is one the client's offer did not allow (RFC 7692
    /// section 7.1; client).
    InvalidDeflateResponse(DeflateResponseError),
    /// permessage-deflate is required ([`DeflateConfig::required`](crate::DeflateConfig::required))
    /// and the peer did not agree to it (RFC 7692 section 7.1; server, 400; client too).
    DeflateRequired,
    /// The URL given to `ClientRequest::new` is not a usable `ws` or `wss` URL (RFC 6455 section 3;
    /// client).
    InvalidUrl(UrlError),
    /// The client request cannot be sent as given: a subprotocol that is not an HTTP token or is
    /// offered twice, or a header that cannot be written (client).
    InvalidClientRequest(HeaderError),
    /// The URL is `wss://`, which needs TLS under the handshake (RFC 6455 section 4.1), and the
    /// connector opens plain TCP (client): connect a TLS stream and run the handshake over it.
    TlsRequired,
}

impl HandshakeError {
    /// The rejection a server sends for this error, or `None` for errors only a client meets.
    ///
    /// Every rejection carries `Content-Type: text/plain; charset=utf-8`, `Content-Length`,
    /// `Connection: close`, and a one-line body naming the problem; a 405 adds `Allow: GET`, a 426
    /// adds `Sec-WebSocket-Version: 13` and `Upgrade: websocket` (RFC 6455 section 4.4,
    /// RFC 7231 section 6.5.15).
    ///
    /// # Examples
    ///
    /// ```
    /// use ferrule_core::handshake::HandshakeError;
    ///
    /// let response = HandshakeError::UnsupportedVersion.response().unwrap();
    /// assert_eq!(response.status(), 426);
    /// assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
    /// assert!(HandshakeError::AcceptMismatch.response().is_none());
    /// ```
    pub fn response(&self) -> Option<Response> {
        let status = self.status()?;
        // A line of text, as a terminal or curl shows it best.
        let mut response = Response::rejection(status, &format!("WebSocket handshake failed: {self}\n"));
        match self {
            Self::MethodNotGet => response.push_trusted_header("Allow", "GET"),
            Self::MethodNotConnect => response.push_trusted_header("Allow", "CONNECT"),
            Self::UnsupportedVersion => {
                // RFC 7230 section 6.7: an `Upgrade` header needs `upgrade` in `Connection`.
                response.push_trusted_header("Sec-WebSocket-Version", "13");
                response.push_trusted_header("Upgrade", "websocket");
                let _ = response.insert_header("Connection", "Upgrade, close");
            }
            _ => {}
        }
        Some(response)
    }

    /// The status of the rejection a server sends for this error.
    fn status(&self) -> Option<u16> {
        Some(match self {
            Self::HeadersTooLarge | Self::TooManyHeaders => 431,
            Self::MethodNotGet | Self::MethodNotConnect => 405,
            Self::UnsupportedVersion => 426,
            Self::OriginNotAllowed => 403,
            Self::Timeout => 408,
            Self::MalformedRequest(_)
            | Self::UnsupportedHttpVersion
            | Self::InvalidProtocol
            | Self::MissingHost
            | Self::DuplicateHeader(_)
            | Self::InvalidUpgrade
            | Self::MissingConnectionUpgrade
            | Self::MissingVersion
            | Self::MissingKey
            | Self::InvalidKey
            | Self::InvalidSubprotocol
            | Self::InvalidExtensions
            | Self::DeflateRequired => 400,
            Self::MalformedResponse(_)
            | Self::NotSwitchingProtocols { .. }
            | Self::MissingAccept
            | Self::AcceptMismatch
            | Self::UnexpectedSubprotocol
            | Self::UnsolicitedExtension
            | Self::InvalidDeflateResponse(_)
            | Self::InvalidUrl(_)
            | Self::InvalidClientRequest(_)
            | Self::TlsRequired => return None,
        })
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedRequest(e) => write!(f, "malformed HTTP request: {e}"),
            Self::HeadersTooLarge => f.write_str("HTTP head too large"),
            Self::TooManyHeaders => f.write_str("too many HTTP headers"),
            Self::MethodNotGet => f.write_str("method must be GET"),
            Self::UnsupportedHttpVersion => f.write_str("HTTP version must be 1.1, or 2 with an extended CONNECT"),
            Self::MethodNotConnect => f.write_str("method must be CONNECT on HTTP/2"),
            Self::InvalidProtocol => f.write_str("HTTP/2 CONNECT must carry :protocol websocket"),
            Self::MissingHost => f.write_str("missing Host header"),
            Self::DuplicateHeader(name) => write!(f, "repeated {name} header"),
            Self::InvalidUpgrade => f.write_str("Upgrade header must be websocket"),
            Self::MissingConnectionUpgrade => f.write_str("Connection header must contain upgrade"),
            Self::MissingVersion => f.write_str("missing Sec-WebSocket-Version header"),
            Self::UnsupportedVersion => f.write_str("Sec-WebSocket-Version must be 13"),
            Self::MissingKey => f.write_str("missing Sec-WebSocket-Key header"),
            Self::InvalidKey => f.write_str("Sec-WebSocket-Key must be base64 of 16 bytes"),
            Self::InvalidSubprotocol => f.write_str("malformed Sec-WebSocket-Protocol header"),
            Self::InvalidExtensions => f.write_str("malformed Sec-WebSocket-Extensions header"),
            Self::OriginNotAllowed => f.write_str("origin not allowed"),
            Self::Timeout => f.write_str("opening handshake timed out"),
            Self::MalformedResponse(e) => write!(f, "malformed HTTP response: {e}"),
            Self::NotSwitchingProtocols { status, reason, body, .. } => {
                write!(f, "server rejected the upgrade with {status}")?;
                if !reason.is_empty() {
                    write!(f, " {}", reason.escape_debug())?;
                }
                let excerpt = excerpt(body);
                if !excerpt.is_empty() {
                    write!(f, ": {excerpt}")?;
                }
                Ok(())
            }
            Self::MissingAccept => f.write_str("missing Sec-WebSocket-Accept header"),
            Self::AcceptMismatch => f.write_str("Sec-WebSocket-Accept does not match the key sent"),
            Self::UnexpectedSubprotocol => f.write_str("server selected a subprotocol that was not offered"),
            Self::UnsolicitedExtension => f.write_str("server selected an extension that was not offered"),
            Self::InvalidDeflateResponse(e) => write!(f, "server's permessage-deflate answer refused: {e}"),
            Self::DeflateRequired => f.write_str("permessage-deflate is required"),
            Self::InvalidUrl(reason) => write!(f, "invalid WebSocket URL: {reason}"),
            Self::InvalidClientRequest(e) => write!(f, "invalid client request: {e}"),
            Self::TlsRequired => f.write_str(
                "a wss:// URL needs TLS (RFC 6455 section 4.1) and this connector opens plain TCP: \
                 connect a TLS stream with a TLS connector and run the handshake over it with connect_stream",
            ),
        }
    }
}

/// The most characters of a rejection's body that [`HandshakeError`]'s `Display` shows.
const EXCERPT_CHARS: usize = 200;

/// The start of a rejection's body as one line of text: bytes that are not UTF-8 replaced, runs
/// of whitespace (line breaks included) made one space, other control characters escaped, and cut
/// at [`EXCERPT_CHARS`] with an ellipsis.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(|c| c.escape_debug()));
    }
    match out.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => {
            out.truncate(cut);
            out.push('…');
            out
        }
        None => out,
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MalformedRequest(e) | Self::MalformedResponse(e) => Some(e),
            Self::InvalidUrl(e) => Some(e),
            Self::InvalidClientRequest(e) => Some(e),
            Self::InvalidDeflateResponse(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_error_has_a_rejection_with_a_body_naming_it() {
        let cases = [
            (HandshakeError::MalformedRequest(httparse::Error::Token), 400),
            (HandshakeError::HeadersTooLarge, 431),
            (HandshakeError::TooManyHeaders, 431),
            (HandshakeError::MethodNotGet, 405),
            (HandshakeError::UnsupportedHttpVersion, 400),
            (HandshakeError::MissingHost, 400),
            (HandshakeError::DuplicateHeader("Host"), 400),
            (HandshakeError::InvalidUpgrade, 400),
            (HandshakeError::MissingConnectionUpgrade, 400),
            (HandshakeError::MissingVersion, 400),
            (HandshakeError::UnsupportedVersion, 426),
            (HandshakeError::MissingKey, 400),
            (HandshakeError::InvalidKey, 400),
            (HandshakeError::InvalidSubprotocol, 400),
            (HandshakeError::InvalidExtensions, 400),
            (HandshakeError::DeflateRequired, 400),
            (HandshakeError::OriginNotAllowed, 403),
            (HandshakeError::Timeout, 408),
        ];
        for (error, status) in cases {
            let response = error.response().unwrap();
            assert_eq!(response.status(), status, "{error}");
            let body = String::from_utf8(response.body().to_vec()).unwrap();
            assert!(body.contains(&error.to_string()), "{body}");
            assert_eq!(response.header("Content-Type"), Some("text/plain; charset=utf-8"));
            assert!(response.header("Connection").unwrap().contains("close"));
            assert_eq!(response.header("Content-Length"), Some(body.len().to_string().as_str()));
        }
    }

    #[test]
    fn client_only_errors_have_no_rejection() {
        let cases = [
            HandshakeError::MalformedResponse(httparse::Error::Status),
            HandshakeError::NotSwitchingProtocols {
                status: 200,
                reason: "OK".into(),
                headers: Headers::default(),
                body: Bytes::new(),
            },
            HandshakeError::MissingAccept,
            HandshakeError::AcceptMismatch,
            HandshakeError::UnexpectedSubprotocol,
            HandshakeError::UnsolicitedExtension,
            HandshakeError::InvalidDeflateResponse(DeflateResponseError::DuplicateExtension),
            HandshakeError::InvalidUrl(UrlError::EmptyHost),
            HandshakeError::InvalidClientRequest(HeaderError::InvalidSubprotocol("a b".into())),
            HandshakeError::TlsRequired,
        ];
        for error in cases {
            assert!(error.response().is_none(), "{error}");
        }
    }

    #[test]
    fn rejection_display_gives_status_reason_and_body_excerpt() {
        let error = |reason: &str, body: &[u8]| HandshakeError::NotSwitchingProtocols {
            status: 401,
            reason: reason.into(),
            headers: Headers::default(),
            body: Bytes::copy_from_slice(body),
        };
        assert_eq!(
            error("Unauthorized", b"log in first\n").to_string(),
            "server rejected the upgrade with 401 Unauthorized: log in first"
        );
        assert_eq!(error("", b"").to_string(), "server rejected the upgrade with 401");
        assert_eq!(
            error("Unauthorized", b"  <h1>No</h1>\r\n\t<p>token\x1b[31m expired</p>\xff ").to_string(),
            "server rejected the upgrade with 401 Unauthorized: <h1>No</h1> <p>token\\u{1b}[31m expired</p>\u{FFFD}"
        );
        let long = error("Unauthorized", "é".repeat(300).as_bytes()).to_string();
        assert!(long.ends_with(&format!("{}…", "é".repeat(200))), "{long}");
    }

    #[test]
    fn rejection_debug_shows_header_values_as_text() {
        let mut c = crate::handshake::ClientHandshake::new(
            crate::handshake::ClientRequest::new("ws://h/").unwrap(),
            &mut crate::Entropy::from_seed([0; 32]),
            crate::handshake::Limits::default(),
            std::time::Instant::now(),
        );
        let error =
            c.handle_input(b"HTTP/1.1 403 Forbidden\r\nX-Why: origin \xff\r\nContent-Length: 2\r\n\r\nno").unwrap_err();
        let debug = format!("{error:?}");
        assert!(debug.contains("headers: {\"X-Why\": \"origin \u{FFFD}\", \"Content-Length\": \"2\"}"), "{debug}");
        assert!(debug.contains(r#"body: b"no""#), "{debug}");
    }
}
