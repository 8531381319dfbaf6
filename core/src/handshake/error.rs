//! Why an opening handshake failed, and the HTTP response a server sends for it.

use std::fmt;

use super::client::UrlError;
use super::http::{HeaderList, Response};
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
    /// The request is not HTTP/1.1 (RFC 6455 section 4.2.1 item 1; server, 400).
    UnsupportedHttpVersion,
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
    /// The server answered something other than `101 Switching Protocols` (RFC 6455 section 4.1;
    /// client). The status and headers are kept; any body is in the leftover bytes.
    NotSwitchingProtocols {
        /// The status code the server sent.
        status: u16,
        /// The headers the server sent, in order: name, value with surrounding whitespace trimmed.
        headers: HeaderList,
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
            Self::MethodNotGet => 405,
            Self::UnsupportedVersion => 426,
            Self::OriginNotAllowed => 403,
            Self::Timeout => 408,
            Self::MalformedRequest(_)
            | Self::UnsupportedHttpVersion
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
            | Self::InvalidUrl(_) => return None,
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
            Self::UnsupportedHttpVersion => f.write_str("HTTP version must be 1.1"),
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
            Self::NotSwitchingProtocols { status, .. } => {
                write!(f, "server answered {status} instead of 101 Switching Protocols")
            }
            Self::MissingAccept => f.write_str("missing Sec-WebSocket-Accept header"),
            Self::AcceptMismatch => f.write_str("Sec-WebSocket-Accept does not match the key sent"),
            Self::UnexpectedSubprotocol => f.write_str("server selected a subprotocol that was not offered"),
            Self::UnsolicitedExtension => f.write_str("server selected an extension that was not offered"),
            Self::InvalidDeflateResponse(e) => write!(f, "server's permessage-deflate answer refused: {e}"),
            Self::DeflateRequired => f.write_str("permessage-deflate is required"),
            Self::InvalidUrl(reason) => write!(f, "invalid WebSocket URL: {reason}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MalformedRequest(e) | Self::MalformedResponse(e) => Some(e),
            Self::InvalidUrl(e) => Some(e),
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
            HandshakeError::NotSwitchingProtocols { status: 200, headers: Vec::new() },
            HandshakeError::MissingAccept,
            HandshakeError::AcceptMismatch,
            HandshakeError::UnexpectedSubprotocol,
            HandshakeError::UnsolicitedExtension,
            HandshakeError::InvalidDeflateResponse(DeflateResponseError::DuplicateExtension),
            HandshakeError::InvalidUrl(UrlError::EmptyHost),
        ];
        for error in cases {
            assert!(error.response().is_none(), "{error}");
        }
    }
}
