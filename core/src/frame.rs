//! Frame headers (RFC 6455 section 5.2): decoding over split input and encoding.

use crate::error::ProtocolError;

/// A frame's opcode (RFC 6455 section 5.2, registry in section 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: the first frame of a text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: connection close (section 5.5.1).
    Close,
    /// `0x9`: ping (section 5.5.2).
    Ping,
    /// `0xA`: pong (section 5.5.3).
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode; reserved values (`0x3`-`0x7`, `0xB`-`0xF`) give `None`.
    pub fn from_u8(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong; section 5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A decoded frame header (RFC 6455 section 5.2).
///
/// [`FrameHeader::decode`] checks only what the header alone can tell (reserved opcodes, the
/// 64-bit length's most significant bit); rules that depend on the connection (masking direction,
/// negotiated extensions, fragmentation state, size limits) are enforced by
/// [`Connection`](crate::Connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2 and RSV3 as the low three bits (RSV1 = `0b100`).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// The longest possible frame header: 2 + 8 (64-bit length) + 4 (masking key) bytes.
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header (one byte at a time is
    /// fine), or the header and its length in bytes.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::ReservedOpcode`] for an opcode the RFC reserves and
    /// [`ProtocolError::InvalidLength`] for a 64-bit length with its most significant bit set
    /// (section 5.2). Both close the connection with 1002.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut len) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                Some(bytes) => {
                    let n = u64::from_be_bytes(bytes);
                    if n >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            match buf.get(len..len + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
                Some(key) => {
                    len += 4;
                    Some(key)
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        let header = Self { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x07, opcode, mask, payload_len };
        Ok(Some((header, len)))
    }

    /// The number of bytes [`encode`](Self::encode) writes for this header.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header (with the shortest length encoding, section 5.2) into `out`.
    pub fn encode(&self, out: &mut impl Extend<u8>) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = self.encode_into(&mut buf);
        out.extend(buf.iter().take(n).copied());
    }

    /// Writes the header into a fixed buffer, returning the number of bytes written.
    pub(crate) fn encode_into(&self, buf: &mut [u8; MAX_HEADER_LEN]) -> usize {
        buf[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            n @ 0..=125 => {
                buf[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            buf[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::decode(bytes).expect("valid header").expect("complete header")
    }

    #[test]
    fn rfc6455_5_7_unmasked_text_header() {
        let (h, n) = decode_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(n, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rfc6455_5_7_masked_text_header() {
        let (h, n) = decode_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rfc6455_5_7_fragmented_headers() {
        let (h, _) = decode_all(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        let (h, _) = decode_all(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Continuation);
    }

    #[test]
    fn rfc6455_5_7_sixteen_and_sixty_four_bit_lengths() {
        let (h, n) = decode_all(&[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = decode_all(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn header_decodes_incrementally() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::decode(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode_all(&full).1, 14);
    }

    #[test]
    fn sixty_four_bit_length_with_top_bit_is_rejected() {
        let bytes = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::decode(&bytes), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(FrameHeader::decode(&[0x80 | op, 0]), Err(ProtocolError::ReservedOpcode(op)));
        }
    }

    #[test]
    fn rsv_bits_are_reported() {
        let (h, _) = decode_all(&[0xF2, 0x00]);
        assert_eq!(h.rsv, 0b111);
        let (h, _) = decode_all(&[0xC2, 0x00]);
        assert_eq!(h.rsv, 0b100);
    }

    #[test]
    fn encode_round_trips_every_length_class() {
        for len in [0u64, 1, 125, 126, 127, 0xFFFF, 0x1_0000, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for opcode in [OpCode::Text, OpCode::Binary, OpCode::Continuation, OpCode::Ping] {
                    let h = FrameHeader { fin: len % 2 == 0, rsv: 0, opcode, mask, payload_len: len };
                    let mut out = Vec::new();
                    h.encode(&mut out);
                    assert_eq!(out.len(), h.encoded_len());
                    assert_eq!(decode_all(&out), (h, out.len()));
                }
            }
        }
    }

    #[test]
    fn encode_uses_shortest_length_form() {
        let h = |len| FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: len };
        assert_eq!(h(125).encoded_len(), 2);
        assert_eq!(h(126).encoded_len(), 4);
        assert_eq!(h(65535).encoded_len(), 4);
        assert_eq!(h(65536).encoded_len(), 10);
    }
}
