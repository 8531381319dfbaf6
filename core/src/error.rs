//! The two error families: the peer's protocol violations and local misuse.

use std::fmt;

use crate::close::CloseCode;

/// A violation of RFC 6455 by the peer. Each maps to the close code sent before the connection is
/// failed ([`close_code`](Self::close_code), RFC 6455 sections 7.1.7 and 7.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A server received an unmasked frame (section 5.1). 1002.
    UnmaskedFrame,
    /// A client received a masked frame (section 5.1). 1002.
    MaskedFrame,
    /// RSV1, RSV2 or RSV3 was set without a negotiated extension defining it for that frame
    /// (section 5.2; RFC 7692 section 6: RSV1 only on the first frame of a data message). 1002.
    ReservedBits(u8),
    /// The opcode is reserved (section 5.2). 1002.
    ReservedOpcode(u8),
    /// A 64-bit payload length had its most significant bit set (section 5.2). 1002.
    InvalidLength,
    /// A control frame's payload exceeded 125 bytes (section 5.5). 1002.
    ControlFrameTooLong,
    /// A control frame had FIN clear (section 5.5). 1002.
    FragmentedControlFrame,
    /// A continuation frame arrived with no fragmented message in progress (section 5.4). 1002.
    UnexpectedContinuation,
    /// A new text or binary frame arrived inside a fragmented message (section 5.4). 1002.
    ExpectedContinuation,
    /// A close frame payload of exactly one byte (section 5.5.1). 1002.
    InvalidClosePayload,
    /// A close frame carried a code that must not appear on the wire (section 7.4). 1002.
    InvalidCloseCode(u16),
    /// A text message was not valid UTF-8 (section 8.1). 1007.
    InvalidUtf8,
    /// A close frame's reason was not valid UTF-8 (section 5.5.1). 1007.
    InvalidCloseReason,
    /// A compressed message's payload is not a valid DEFLATE stream (RFC 7692 section 7.2.2,
    /// RFC 1951). 1007.
    InvalidCompressedData,
    /// A frame's payload exceeded `max_frame_size`. 1009.
    FrameTooLarge {
        /// The frame's declared payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message (all fragments so far plus this frame, or a compressed message as inflated so
    /// far) exceeded `max_message_size`. 1009.
    MessageTooLarge {
        /// The message length including the frame being decoded.
        size: u64,
        /// The configured limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The close code sent to the peer for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason suitable for the close frame (at most 123 bytes).
    pub(crate) fn close_reason(&self) -> &'static str {
        match self {
            Self::UnmaskedFrame => "unmasked frame from client",
            Self::MaskedFrame => "masked frame from server",
            Self::ReservedBits(_) => "reserved bits set",
            Self::ReservedOpcode(_) => "reserved opcode",
            Self::InvalidLength => "invalid payload length",
            Self::ControlFrameTooLong => "control frame too long",
            Self::FragmentedControlFrame => "fragmented control frame",
            Self::UnexpectedContinuation => "unexpected continuation frame",
            Self::ExpectedContinuation => "expected continuation frame",
            Self::InvalidClosePayload => "invalid close payload",
            Self::InvalidCloseCode(_) => "invalid close code",
            Self::InvalidUtf8 => "invalid UTF-8 in text message",
            Self::InvalidCloseReason => "invalid UTF-8 in close reason",
            Self::InvalidCompressedData => "invalid compressed data",
            Self::FrameTooLarge { .. } => "frame too large",
            Self::MessageTooLarge { .. } => "message too large",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits(bits) => write!(f, "reserved bits {bits:#05b} set without an extension"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::InvalidCloseCode(code) => write!(f, "close code {code} is not allowed on the wire"),
            Self::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the limit of {max} bytes")
            }
            Self::MessageTooLarge { size, max } => {
                write!(f, "message of at least {size} bytes exceeds the limit of {max} bytes")
            }
            other => f.write_str(other.close_reason()),
        }?;
        write!(f, " (close code {})", self.close_code())
    }
}

impl std::error::Error for ProtocolError {}

/// A local misuse of [`Connection`](crate::Connection): nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame has already been sent or the connection has failed: nothing more may be sent
    /// (RFC 6455 section 5.5.1).
    Closed,
    /// A ping or pong payload was longer than 125 bytes (section 5.5).
    ControlPayloadTooLong(usize),
    /// The close code may not be sent on the wire (section 7.4).
    InvalidCloseCode(u16),
    /// The close reason was longer than 123 bytes (section 5.5).
    CloseReasonTooLong(usize),
    /// A whole message was sent while a fragmented message is still being sent (section 5.4).
    FragmentedMessageInProgress,
    /// A fragment of one kind (text or binary) was sent to continue a message of the other.
    FragmentKindMismatch,
    /// A continuation fragment was sent with no fragmented message in progress.
    NoFragmentedMessageInProgress,
    /// Text fragments were not valid UTF-8 (section 8.1).
    InvalidUtf8,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection is closing or closed"),
            Self::ControlPayloadTooLong(n) => {
                write!(f, "control frame payload of {n} bytes exceeds 125 bytes")
            }
            Self::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            Self::CloseReasonTooLong(n) => write!(f, "close reason of {n} bytes exceeds 123 bytes"),
            Self::FragmentedMessageInProgress => {
                f.write_str("another message is being sent in fragments; it must end first")
            }
            Self::FragmentKindMismatch => {
                f.write_str("a fragment's kind (text or binary) differs from the message it continues")
            }
            Self::NoFragmentedMessageInProgress => f.write_str("no fragmented message is in progress to continue"),
            Self::InvalidUtf8 => f.write_str("text fragments are not valid UTF-8"),
        }
    }
}

impl std::error::Error for SendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_fits_a_close_frame() {
        let all = [
            ProtocolError::UnmaskedFrame,
            ProtocolError::MaskedFrame,
            ProtocolError::ReservedBits(1),
            ProtocolError::ReservedOpcode(3),
            ProtocolError::InvalidLength,
            ProtocolError::ControlFrameTooLong,
            ProtocolError::FragmentedControlFrame,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidClosePayload,
            ProtocolError::InvalidCloseCode(5),
            ProtocolError::InvalidUtf8,
            ProtocolError::InvalidCloseReason,
            ProtocolError::InvalidCompressedData,
            ProtocolError::FrameTooLarge { size: 10, max: 1 },
            ProtocolError::MessageTooLarge { size: 10, max: 1 },
        ];
        for e in all {
            assert!(e.close_reason().len() <= crate::close::MAX_CLOSE_REASON);
            assert!(e.close_code().is_sendable());
            assert!(!e.to_string().is_empty());
        }
    }
}
