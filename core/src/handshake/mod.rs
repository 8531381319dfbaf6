//! The opening handshake (RFC 6455 section 4), as two sans-IO state machines.
//!
//! A server feeds the bytes it reads into a [`ServerHandshake`] until it yields a [`Request`],
//! decides with a [`ServerPolicy`] (or by hand) which [`Response`] to send, writes
//! [`Response::to_bytes`], and on a `101 Switching Protocols` turns the handshake into a
//! [`Connection`](crate::Connection) together with any bytes that followed the request head
//! (RFC 6455 section 4.2).
//!
//! A client builds a [`ClientRequest`] from a `ws://` or `wss://` URL (RFC 6455 section 3), starts a
//! [`ClientHandshake`], writes [`ClientHandshake::request_bytes`], and feeds the bytes it reads
//! until the server's response is validated (RFC 6455 section 4.1); then it turns the handshake
//! into a client [`Connection`](crate::Connection) in the same way.
//!
//! Both sides parse incrementally and within [`Limits`]: at most
//! [`max_header_bytes`](Limits::max_header_bytes) of head are buffered, at most
//! [`max_headers`](Limits::max_headers) header lines are accepted, and the head must be complete
//! before the [`timeout`](Limits::timeout). Neither side reads a clock: the caller passes `now`, asks
//! [`ServerHandshake::poll_timeout`] for the deadline and calls
//! [`ServerHandshake::handle_timeout`] when it passes.
//!
//! # Examples
//!
//! A full exchange between the two state machines, with the transport left out:
//!
//! ```
//! use std::time::Instant;
//! use ferrule_core::Entropy;
//! use ferrule_core::handshake::{
//!     ClientHandshake, ClientRequest, Limits, ServerHandshake, ServerPolicy,
//! };
//!
//! let now = Instant::now();
//! let request = ClientRequest::new("ws://example.com/chat")?.subprotocols(vec!["chat".into()])?;
//! let mut client = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), Limits::default(), now);
//!
//! let mut server = ServerHandshake::new(Limits::default(), now);
//! let request = server.handle_input(client.request_bytes())?.expect("a whole request");
//! let policy = ServerPolicy::default().subprotocols(vec!["chat".into()]);
//! let response = policy.accept(&request)?;
//!
//! let response = client.handle_input(&response.to_bytes())?.expect("a whole response");
//! assert_eq!(response.subprotocol(), Some("chat"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod cookie;
mod error;
pub(crate) mod extensions;
mod head;
mod http;
mod origin;
mod query;
mod rejection;
mod server;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

pub use crate::deflate::DeflateResponseError;
pub use client::{ClientHandshake, ClientRequest, ClientResponse, UrlError};
pub use error::HandshakeError;
pub use extensions::ExtensionOffer;
pub use http::{HeaderError, Headers, Response, check_subprotocols};
pub use origin::{OriginPattern, OriginPolicy};
pub use server::{Request, ServerHandshake, ServerPolicy, validate};

/// The GUID that RFC 6455 section 1.3 appends to the client's key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 section 1.3 and 4.2.2):
/// base64 of the SHA-1 of the key followed by the WebSocket GUID.
///
/// # Examples
///
/// ```
/// use ferrule_core::handshake::accept_key;
///
/// // The example from RFC 6455 section 1.3.
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID);
    BASE64.encode(sha1.finalize())
}

/// Bounds on one opening handshake, the same for a server reading a request and a client reading
/// a response.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ferrule_core::handshake::Limits;
///
/// let limits = Limits::default().max_header_bytes(4096).timeout(Some(Duration::from_secs(5)));
/// assert_eq!(limits.max_headers, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest head (request or status line, headers and the blank line) in bytes. Default 8192.
    ///
    /// A head that is not complete within this many bytes fails with
    /// [`HandshakeError::HeadersTooLarge`] (431 on a server); no more than this is ever buffered.
    pub max_header_bytes: usize,
    /// Most header lines in one head. Default 64. More fail with
    /// [`HandshakeError::TooManyHeaders`] (431 on a server).
    pub max_headers: usize,
    /// How long the whole head may take to arrive, from the handshake's creation; `None` waits
    /// forever. Default 10 s. Expiry fails with [`HandshakeError::Timeout`] (408 on a server).
    pub timeout: Option<Duration>,
    /// Most bytes a client keeps of the body of a refusal (a response other than `101`), for
    /// [`HandshakeError::NotSwitchingProtocols`]. Default 1024: enough for the message that
    /// says why, little enough that a hostile server costs nothing.
    pub max_rejection_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 8192,
            max_headers: 64,
            timeout: Some(Duration::from_secs(10)),
            max_rejection_body: 1024,
        }
    }
}

impl Limits {
    /// Sets [`max_header_bytes`](Self::max_header_bytes).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets [`max_headers`](Self::max_headers).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`max_rejection_body`](Self::max_rejection_body).
    pub fn max_rejection_body(mut self, bytes: usize) -> Self {
        self.max_rejection_body = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_section_1_3_vector() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn limits_default_values() {
        let limits = Limits::default();
        assert_eq!(limits.max_header_bytes, 8192);
        assert_eq!(limits.max_headers, 64);
        assert_eq!(limits.timeout, Some(Duration::from_secs(10)));
        assert_eq!(limits.max_rejection_body, 1024);
    }

    #[test]
    fn limits_setters_set_fields() {
        let limits = Limits::default().max_header_bytes(10).max_headers(2).timeout(None).max_rejection_body(5);
        assert_eq!(limits, Limits { max_header_bytes: 10, max_headers: 2, timeout: None, max_rejection_body: 5 });
    }
}
