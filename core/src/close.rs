//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use std::fmt;

use crate::error::ProtocolError;

/// A close status code (RFC 6455 section 7.4; IANA "WebSocket Close Code Number Registry").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame (never sent on the wire).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message's data was inconsistent with its type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway or proxy received an invalid response upstream (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed (never sent on the wire).
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// A code from its number. Any `u16` is representable; [`is_sendable`](Self::is_sendable)
    /// says whether it may appear in a close frame.
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code may appear in a close frame on the wire (RFC 6455 section 7.4.1 and the
    /// IANA registry): 1000-1003, 1007-1014 and the application range 3000-4999.
    ///
    /// 1004, 1005, 1006 and 1015 are reserved, 0-999 are unused, and 1016-2999 are reserved for
    /// future revisions; receiving any of them in a close frame fails the connection with 1002.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

/// The largest close reason that fits a control frame: 125 bytes minus the 2-byte code
/// (RFC 6455 section 5.5).
pub const MAX_CLOSE_REASON: usize = 123;

/// Parses a received close frame payload (RFC 6455 section 5.5.1).
///
/// An empty payload gives `(1005, "")`: no status was present.
pub(crate) fn parse_close_payload(payload: &[u8]) -> Result<(CloseCode, &str), ProtocolError> {
    match payload {
        [] => Ok((CloseCode::NO_STATUS, "")),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok((code, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_match_rfc6455_7_4_and_iana() {
        let sendable: Vec<u16> = (0..=u16::MAX).filter(|&c| CloseCode(c).is_sendable()).collect();
        let expected: Vec<u16> = (1000..=1003).chain(1007..=1014).chain(3000..=4999).collect();
        assert_eq!(sendable, expected);
    }

    #[test]
    fn close_payload_empty_is_no_status() {
        assert_eq!(parse_close_payload(&[]), Ok((CloseCode::NO_STATUS, "")));
    }

    #[test]
    fn close_payload_of_one_byte_is_1002() {
        assert_eq!(parse_close_payload(&[3]), Err(ProtocolError::InvalidClosePayload));
    }

    #[test]
    fn close_payload_with_reserved_codes_is_1002() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            let p = code.to_be_bytes();
            assert_eq!(parse_close_payload(&p), Err(ProtocolError::InvalidCloseCode(code)), "{code}");
        }
    }

    #[test]
    fn close_payload_with_valid_codes_and_reason() {
        for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice("héllo".as_bytes());
            assert_eq!(parse_close_payload(&p), Ok((CloseCode(code), "héllo")));
        }
    }

    #[test]
    fn close_payload_with_invalid_utf8_reason_is_1007() {
        let p = [0x03, 0xE8, 0xCE, 0xBA, 0xE1, 0xBD];
        assert_eq!(parse_close_payload(&p), Err(ProtocolError::InvalidCloseReason));
        assert_eq!(ProtocolError::InvalidCloseReason.close_code(), CloseCode::INVALID_PAYLOAD);
    }
}
