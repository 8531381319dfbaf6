//! Errors of the async layer and how a connection ended.

use std::fmt;
use std::io;

use ferrule_core::handshake::HandshakeError;
use ferrule_core::{CloseCode, ProtocolError, SendError};

use crate::message::DecodeError;
use crate::options::OptionsError;

/// Something that went wrong on a connection, as reported on the error stream or by a call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer violated RFC 6455; the matching close code was sent and the connection ends.
    Protocol(ProtocolError),
    /// The transport failed.
    Io(io::Error),
    /// A write made no progress within `write_wait`; the connection was dropped.
    WriteTimeout,
    /// A received message did not fit the channel's type; the connection stays up.
    Decode(DecodeError),
    /// The opening handshake failed.
    Handshake(HandshakeError),
    /// The options were invalid.
    Options(OptionsError),
    /// The application's `on_connect` rejected the upgrade with this HTTP status.
    Rejected(u16),
    /// The connection is closing or closed: nothing more can be sent.
    Closed,
    /// A send the protocol does not allow (a fragment of the wrong kind, text that is not
    /// UTF-8); nothing was sent and the connection stays up.
    Send(SendError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "protocol violation by the peer: {e}"),
            Self::Io(e) => write!(f, "transport error: {e}"),
            Self::WriteTimeout => f.write_str("a write made no progress within the write wait"),
            Self::Decode(e) => write!(f, "{e}"),
            Self::Handshake(e) => write!(f, "opening handshake failed: {e}"),
            Self::Options(e) => write!(f, "invalid options: {e}"),
            Self::Rejected(status) => write!(f, "the upgrade was rejected with HTTP status {status}"),
            Self::Closed => f.write_str("the connection is closing or closed"),
            Self::Send(e) => write!(f, "not sent: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::Io(e) => Some(e),
            Self::Decode(e) => Some(e),
            Self::Handshake(e) => Some(e),
            Self::Options(e) => Some(e),
            Self::Send(e) => Some(e),
            Self::WriteTimeout | Self::Closed | Self::Rejected(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

impl From<OptionsError> for Error {
    fn from(e: OptionsError) -> Self {
        Self::Options(e)
    }
}

/// How a connection ended (the `on_close` arguments, and what the done signal yields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Both close frames were exchanged (RFC 6455 section 7.1.4).
    pub was_clean: bool,
    /// The peer's close code; the code sent when this end failed the connection; or 1006 when no
    /// close frame was received (section 7.1.5).
    pub code: CloseCode,
    /// The close reason that came with `code`.
    pub reason: String,
}

impl CloseInfo {
    pub(crate) fn from_core(closed: &ferrule_core::Closed) -> Self {
        Self { was_clean: closed.clean, code: closed.code, reason: closed.reason.clone() }
    }

    pub(crate) fn abnormal() -> Self {
        Self { was_clean: false, code: CloseCode::ABNORMAL, reason: String::new() }
    }
}

/// A handler's refusal to go on: the connection is closed with `code` (1011 by default) and
/// `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// The close code to send.
    pub code: CloseCode,
    /// The close reason (cut to 123 bytes on the wire).
    pub reason: String,
}

impl HandlerError {
    /// An error that closes with 1011 Internal Error.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self { code: CloseCode::INTERNAL_ERROR, reason: reason.into() }
    }

    /// An error that closes with `code`.
    pub fn with_code(code: CloseCode, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler closed the connection with {}: {}", self.code, self.reason)
    }
}

// HandlerError deliberately does not implement std::error::Error: that keeps this blanket
// conversion coherent, so `?` on any error inside a handler closes the connection with 1011.
impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self::internal(e.to_string())
    }
}
