//! Errors of the async layer and how a connection ended.

use std::fmt;
use std::io;
use std::sync::Arc;

use ferrule_core::handshake::HandshakeError;
use ferrule_core::{CloseCode, ProtocolError, SendError};

use crate::message::{DecodeError, EncodeError};
use crate::options::OptionsError;

/// Something that went wrong on a connection, as reported on the error stream or by a call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection ended abnormally, for the reason given: a protocol violation by the peer,
    /// a timeout, a transport failure (see [`CloseCause`]). The channel API's error stream
    /// receives this once, before the done signal completes, for every end that
    /// [`CloseCause::is_failure`] counts as a failure.
    Failed(CloseCause),
    /// Connecting or upgrading failed on the transport (the TCP connect, or reading and writing
    /// the opening handshake).
    Io(io::Error),
    /// A write of the opening handshake made no progress within `write_wait`. (Once the
    /// connection is open, a stalled write ends it with [`CloseCause::WriteTimeout`].)
    WriteTimeout,
    /// A received message did not fit the channel's type; the connection stays up.
    Decode(DecodeError),
    /// A value could not be encoded as a message; nothing was sent and the connection stays up.
    Encode(EncodeError),
    /// The opening handshake failed.
    Handshake(HandshakeError),
    /// The TLS handshake failed, or TLS failed while the WebSocket handshake ran: the
    /// certificate is not valid for the host the URL names
    /// (`rustls::Error::InvalidCertificate` with `CertificateError::NotValidForNameContext`, which
    /// gives the names, or `NotValidForName`), is signed by no trusted root
    /// (`CertificateError::UnknownIssuer`), has expired, or the peer sent an alert. Feature `tls`.
    #[cfg(feature = "tls")]
    Tls(rustls::Error),
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
            Self::Failed(cause) => write!(f, "the connection failed: {cause}"),
            Self::Io(e) => write!(f, "transport error: {e}"),
            Self::WriteTimeout => f.write_str("a write of the opening handshake made no progress within `write_wait`"),
            Self::Decode(e) => write!(f, "{e}"),
            Self::Encode(e) => write!(f, "not sent: {e}"),
            Self::Handshake(e) => write!(f, "opening handshake failed: {e}"),
            #[cfg(feature = "tls")]
            Self::Tls(e) => write!(f, "TLS failed: {e}"),
            Self::Options(e) => write!(f, "invalid options: {e}"),
            Self::Rejected(status) => {
                write!(f, "the application's on_connect rejected the upgrade with HTTP status {status}")
            }
            Self::Closed => f.write_str(
                "the connection is closing or closed: nothing more can be sent (the done signal says why it ended)",
            ),
            Self::Send(e) => write!(f, "not sent: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed(cause) => cause.source(),
            Self::Io(e) => Some(e),
            Self::Decode(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Handshake(e) => Some(e),
            #[cfg(feature = "tls")]
            Self::Tls(e) => Some(e),
            Self::Options(e) => Some(e),
            Self::Send(e) => Some(e),
            Self::WriteTimeout | Self::Closed | Self::Rejected(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    /// [`Error::Io`], or with feature `tls` [`Error::Tls`] when the I/O error carries a
    /// `rustls::Error` (TLS streams report their failures that way).
    fn from(e: io::Error) -> Self {
        #[cfg(feature = "tls")]
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            let kind = e.kind();
            return match e.into_inner().map(|inner| inner.downcast::<rustls::Error>()) {
                Some(Ok(tls)) => Self::Tls(*tls),
                // Not reached (checked just above); kept whole rather than a panic.
                Some(Err(inner)) => Self::Io(io::Error::new(kind, inner)),
                None => Self::Io(kind.into()),
            };
        }
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

/// How a connection ended (the `on_close` argument, and what the done signal yields): eyesore's
/// `OnClose(wasClean, code, reason)`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Both close frames were exchanged (RFC 6455 section 7.1.4).
    pub was_clean: bool,
    /// The peer's close code; the code sent when this end failed the connection; or 1006 when no
    /// close frame was received (section 7.1.5).
    pub code: CloseCode,
    /// The close reason that came with `code`.
    pub reason: String,
    /// Why the connection ended.
    pub cause: CloseCause,
}

impl CloseInfo {
    /// How the connection the core reports `closed` ended: `local` is what this end's
    /// application asked for when it started a closing handshake, `transport` what went wrong
    /// with the transport if something did (the core sees only an end of stream then).
    pub(crate) fn from_core(
        closed: &ferrule_core::Closed,
        local: Option<&CloseCause>,
        transport: Option<&CloseCause>,
    ) -> Self {
        use ferrule_core::{Failure, Initiator};
        let cause = match &closed.failure {
            None if closed.initiator == Some(Initiator::Peer) => CloseCause::Peer,
            // The core closed cleanly after a close this end sent, which only the driver sends
            // and records; the fallback is what the core knows of it.
            None => {
                local.cloned().unwrap_or_else(|| CloseCause::Local { code: closed.code, reason: closed.reason.clone() })
            }
            Some(Failure::Protocol(e)) => CloseCause::Protocol(e.clone()),
            Some(Failure::PeerUnresponsive) => CloseCause::PeerUnresponsive,
            Some(Failure::ReadTimeout) => CloseCause::ReadTimeout,
            Some(Failure::CloseTimeout) => CloseCause::CloseTimeout,
            // The driver reports a failed read or write to the core as an end of stream.
            Some(Failure::TransportClosed) => transport.cloned().unwrap_or(CloseCause::TransportClosed),
            // The core's failures are all listed above; one added later is at least an
            // abnormal end the transport saw.
            Some(_) => transport.cloned().unwrap_or(CloseCause::TransportClosed),
        };
        Self { was_clean: closed.clean, code: closed.code, reason: closed.reason.clone(), cause }
    }

    /// How a connection ends whose task was dropped before the end.
    pub(crate) fn aborted() -> Self {
        Self { was_clean: false, code: CloseCode::ABNORMAL, reason: String::new(), cause: CloseCause::Aborted }
    }
}

/// Why a connection ended.
///
/// Every end is logged through `tracing` with its cause: a protocol violation by the peer at
/// `warn`, every other end at `debug`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseCause {
    /// This end's application started the closing handshake (through a [`Handle`](crate::Handle),
    /// the channel API's disconnect, [`Ctx::close`](crate::Ctx::close), a [`HandlerError`], or
    /// by dropping the channel API's receiver) with this code and reason.
    Local {
        /// The close code sent.
        code: CloseCode,
        /// The close reason sent.
        reason: String,
    },
    /// The peer started the closing handshake; its code and reason are in the [`CloseInfo`].
    Peer,
    /// The server shut down ([`Server::shutdown`](crate::Server::shutdown)) and closed the
    /// connection with 1001 Going Away.
    ServerShutdown,
    /// The peer sent nothing within `pong_wait` of a keepalive ping: it is gone or stuck
    /// (martini's and iris's pong deadline). No close frame was sent.
    PeerUnresponsive,
    /// Nothing was received within `read_timeout`. No close frame was sent.
    ReadTimeout,
    /// The peer did not answer this end's close frame within `close_timeout`.
    CloseTimeout,
    /// A write made no progress within `write_wait`: the peer stopped reading.
    WriteTimeout,
    /// The peer violated RFC 6455; the error's [close code](ProtocolError::close_code) was sent
    /// in a close frame (section 7.1.7).
    Protocol(ProtocolError),
    /// Reading or writing the transport failed (a reset, a broken pipe).
    Transport(Arc<io::Error>),
    /// The peer closed the transport without a closing handshake.
    TransportClosed,
    /// The connection's task was dropped before the end: its runtime shut down, or the future
    /// running it was cancelled.
    Aborted,
}

impl CloseCause {
    /// Whether this is a failure rather than a closing handshake one of the two ends asked for:
    /// every cause but [`Local`](Self::Local), [`Peer`](Self::Peer) and
    /// [`ServerShutdown`](Self::ServerShutdown). Failures reach the channel API's error stream
    /// as [`Error::Failed`].
    pub fn is_failure(&self) -> bool {
        !matches!(self, Self::Local { .. } | Self::Peer | Self::ServerShutdown)
    }

    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::Transport(e) => Some(&**e),
            _ => None,
        }
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { code, reason } if reason.is_empty() => write!(f, "closed by this end with {code}"),
            Self::Local { code, reason } => write!(f, "closed by this end with {code} ({reason})"),
            Self::Peer => f.write_str("closed by the peer"),
            Self::ServerShutdown => f.write_str("closed by the server's shutdown"),
            Self::PeerUnresponsive => f.write_str("the peer did not answer a keepalive ping within `pong_wait`"),
            Self::ReadTimeout => f.write_str("nothing was received within `read_timeout`"),
            Self::CloseTimeout => f.write_str("the peer did not answer the close frame within `close_timeout`"),
            Self::WriteTimeout => f.write_str("a write made no progress within `write_wait`: the peer stopped reading"),
            Self::Protocol(e) => write!(f, "protocol violation by the peer ({e}), closed with {}", e.close_code()),
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::TransportClosed => f.write_str("the peer closed the transport without a closing handshake"),
            Self::Aborted => f.write_str("the connection's task was dropped before the end"),
        }
    }
}

/// Causes compare by variant and content; transport errors by kind and message, since
/// `io::Error` has no equality of its own.
impl PartialEq for CloseCause {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Local { code: a, reason: r }, Self::Local { code: b, reason: s }) => a == b && r == s,
            (Self::Protocol(a), Self::Protocol(b)) => a == b,
            (Self::Transport(a), Self::Transport(b)) => {
                Arc::ptr_eq(a, b) || (a.kind() == b.kind() && a.to_string() == b.to_string())
            }
            (a, b) => {
                std::mem::discriminant(a) == std::mem::discriminant(b)
                    && !matches!(a, Self::Local { .. } | Self::Protocol(_) | Self::Transport(_))
            }
        }
    }
}

impl Eq for CloseCause {}

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
