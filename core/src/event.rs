//! What a [`Connection`](crate::Connection) reports to its driver.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use crate::close::CloseCode;
use crate::error::ProtocolError;

/// Text payload: [`Bytes`] known to hold valid UTF-8, so a received text message is handed over
/// without a copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes that were already checked to be UTF-8.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// Checks `bytes` and wraps them.
    ///
    /// # Errors
    ///
    /// Returns the bytes back when they are not valid UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Bytes> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Self(bytes)),
            Err(_) => Err(bytes),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor admits only valid UTF-8 (`from_validated` is called after the
        // incremental validator accepted the whole message, `try_from_bytes` checks, and the
        // `From` impls take `str`/`String`), and the bytes are immutable. Checking again here
        // would cost a full pass over the text on every access.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes, still shared.
    pub fn as_shared_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl From<Utf8Bytes> for String {
    fn from(s: Utf8Bytes) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// Something that happened on a connection, in the order it happened
/// ([`Connection::poll_event`](crate::Connection::poll_event)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete text message, validated as UTF-8 (RFC 6455 sections 5.6 and 8.1).
    Text(Utf8Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping with its payload (section 5.5.2). With `auto_pong` the pong is already queued.
    Ping(Bytes),
    /// A pong with its payload (section 5.5.3), solicited or not.
    Pong(Bytes),
    /// The connection reached [`State::Closed`]; this is always the last event.
    Closed(Closed),
}

/// How a connection ended ([`Event::Closed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Both close frames were exchanged: the WebSocket closing handshake completed
    /// (RFC 6455 section 7.1.4, "closed cleanly").
    pub clean: bool,
    /// The code from the peer's close frame when one was received (1005 when it carried none);
    /// the code this end sent when it failed the connection for a protocol violation; 1006 when
    /// no close frame was received (section 7.1.5).
    pub code: CloseCode,
    /// The reason from the peer's close frame, or this end's reason when it failed the connection.
    pub reason: String,
    /// Who sent the first close frame; `None` when no close frame was exchanged.
    pub initiator: Option<Initiator>,
    /// Why the connection failed, when it did not close cleanly.
    pub failure: Option<Failure>,
}

/// Which end started the closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This end sent the first close frame.
    Local,
    /// The peer sent the first close frame.
    Peer,
}

/// Why a connection failed instead of closing cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The peer violated the protocol; the matching close code was sent.
    Protocol(ProtocolError),
    /// Nothing was received within `pong_wait` of a keepalive ping.
    PeerUnresponsive,
    /// Nothing was received for `read_timeout`.
    ReadTimeout,
    /// The peer did not answer this end's close frame within `close_timeout`.
    CloseTimeout,
    /// The transport was closed before the closing handshake completed.
    TransportClosed,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "protocol violation by the peer: {e}"),
            Self::PeerUnresponsive => f.write_str("the peer did not answer a keepalive ping in time"),
            Self::ReadTimeout => f.write_str("nothing was received within the read timeout"),
            Self::CloseTimeout => f.write_str("the peer did not answer the close frame in time"),
            Self::TransportClosed => f.write_str("the transport closed before the closing handshake completed"),
        }
    }
}

/// The connection's place in its lifecycle (RFC 6455 section 4.1 "OPEN", 7 "CLOSING", "CLOSED").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// This end sent a close frame and waits for the peer's; incoming messages are still
    /// delivered, nothing more may be sent.
    Closing,
    /// The closing handshake completed or the connection failed. Remaining output should still be
    /// flushed before the transport is shut
    /// ([`Connection::should_shutdown`](crate::Connection::should_shutdown)).
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bytes_rejects_invalid_utf8() {
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(&[0xFF])).is_err());
        let t = Utf8Bytes::try_from_bytes(Bytes::from_static("κόσμε".as_bytes())).expect("valid");
        assert_eq!(t, "κόσμε");
        assert_eq!(String::from(t.clone()), "κόσμε");
        assert_eq!(Bytes::from(t).len(), "κόσμε".len());
    }
}
