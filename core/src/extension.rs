//! The seam between a connection and the extensions it negotiated (RFC 6455 section 9).
//!
//! Our extensions are a closed set, so they are an enum rather than trait objects: a `match` says
//! what each one does with the reserved bits, the received payload and the sent payload. Today
//! there is one, permessage-deflate (RFC 7692).

use crate::deflate::{DeflateCodec, RSV1};
use crate::frame::OpCode;

/// An extension in force on a connection.
#[derive(Debug)]
pub(crate) enum Extension {
    /// permessage-deflate (RFC 7692): RSV1 marks a compressed message.
    PerMessageDeflate(Box<DeflateCodec>),
}

impl Extension {
    /// The reserved bits this extension lets the peer set on a frame with `opcode` (RFC 6455
    /// section 5.2: any other set bit fails the connection with 1002).
    pub(crate) fn allowed_rsv(&self, opcode: OpCode) -> u8 {
        match self {
            // RFC 7692 section 6: RSV1 on the first frame of a data message only; never on
            // control frames (section 6.1) nor continuation frames (section 6.2).
            Self::PerMessageDeflate(_) => match opcode {
                OpCode::Text | OpCode::Binary => RSV1,
                _ => 0,
            },
        }
    }

    /// The permessage-deflate state.
    pub(crate) fn deflate_mut(&mut self) -> &mut DeflateCodec {
        match self {
            Self::PerMessageDeflate(codec) => codec,
        }
    }

    /// The permessage-deflate state.
    pub(crate) fn deflate(&self) -> &DeflateCodec {
        match self {
            Self::PerMessageDeflate(codec) => codec,
        }
    }
}
