//! A message framed once and queued by reference on many connections: what a broadcast sends.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::connection::MessageKind;
use crate::event::Utf8Bytes;
use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};

/// A whole message whose frames are encoded once and then shared by every server connection that
/// sends it (gorilla/websocket's `PreparedMessage`). Cheap to clone: clones share the payload and
/// the encoded frames.
///
/// A server's frames are not masked (RFC 6455 section 5.1), so the bytes of a message are the
/// same for every recipient: [`Connection::send_prepared`](crate::Connection::send_prepared)
/// queues them by reference, and sending to a thousand connections costs one encoding and a
/// thousand reference counts. The frames are made on first use and kept per variant (frame size,
/// and the compressor's settings for a compressed message), so connections with different
/// settings each get correct frames, and connections with the same settings share them.
///
/// With permessage-deflate ([RFC 7692]) the compressed bytes can be shared only when the sending
/// end keeps no context between messages (`server_no_context_takeover`, section 7.1.1.1): each
/// message is then compressed by a fresh compressor, and the output depends only on the
/// compressor's settings. A connection whose compressor keeps its context compresses the
/// message itself, as for any other send. A client masks every frame with a fresh key
/// (section 5.3), so a client connection frames the message itself too.
///
/// ```
/// use std::time::Instant;
/// use ferrule_core::{Config, Connection, PreparedMessage, Role};
///
/// let now = Instant::now();
/// let mut a = Connection::new(Role::Server, Config::default(), now).unwrap();
/// let mut b = Connection::new(Role::Server, Config::default(), now).unwrap();
/// let hello = PreparedMessage::text("Hello");
/// a.send_prepared(&hello).unwrap();
/// b.send_prepared(&hello).unwrap();
/// // The RFC 6455 section 5.7 unmasked "Hello", the same bytes from both connections.
/// assert_eq!(a.poll_transmit().unwrap(), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// assert_eq!(b.poll_transmit().unwrap(), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
/// ```
///
/// [RFC 7692]: https://www.rfc-editor.org/rfc/rfc7692
#[derive(Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

struct Inner {
    kind: MessageKind,
    payload: Bytes,
    /// Encoded frames per variant. Connections of one server share their settings, so this
    /// holds one or two entries (plain and compressed).
    frames: Mutex<Vec<(Variant, Bytes)>>,
}

/// What the encoded bytes of a message depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variant {
    /// The largest frame's payload.
    pub(crate) frame_size: usize,
    /// For a compressed message, the settings of a fresh compressor.
    pub(crate) deflate: Option<CompressorSettings>,
}

/// The settings a fresh compressor's output depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompressorSettings {
    pub(crate) level: u8,
    pub(crate) window_bits: u8,
    pub(crate) memory_level: u8,
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("kind", &self.inner.kind)
            .field("len", &self.inner.payload.len())
            .finish_non_exhaustive()
    }
}

impl PreparedMessage {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::new(MessageKind::Text, text.into().into_bytes())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::new(MessageKind::Binary, data.into())
    }

    fn new(kind: MessageKind, payload: Bytes) -> Self {
        Self { inner: Arc::new(Inner { kind, payload, frames: Mutex::new(Vec::new()) }) }
    }

    /// The kind of the message.
    pub fn kind(&self) -> MessageKind {
        self.inner.kind
    }

    /// The payload, as given (before any compression).
    pub fn payload(&self) -> &Bytes {
        &self.inner.payload
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.inner.payload.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.payload.is_empty()
    }

    /// The encoded frames of `variant`, made by `encode` (given the payload) if no connection
    /// made them yet.
    pub(crate) fn frames(&self, variant: Variant, encode: impl FnOnce(&[u8]) -> Bytes) -> Bytes {
        // A panic while encoding leaves the cache as it was, so a poisoned lock is still usable.
        let mut frames = self.inner.frames.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bytes)) = frames.iter().find(|(v, _)| *v == variant) {
            return bytes.clone();
        }
        let bytes = encode(&self.inner.payload);
        frames.push((variant, bytes.clone()));
        bytes
    }

    /// How many variants have been encoded (for tests).
    #[cfg(test)]
    fn variants(&self) -> usize {
        self.inner.frames.lock().map_or(0, |f| f.len())
    }
}

/// Encodes `data` as server frames (unmasked) of at most `frame_size` payload bytes: the first
/// with `opcode` and reserved bits `rsv`, the rest continuations, FIN on the last (RFC 6455
/// section 5.4).
pub(crate) fn encode_frames(kind: MessageKind, data: &[u8], frame_size: usize, rsv: u8) -> Bytes {
    let frame_size = frame_size.max(1);
    let count = data.len().div_ceil(frame_size).max(1);
    let mut out = BytesMut::with_capacity(data.len() + count * MAX_HEADER_LEN);
    let mut chunks = data.chunks(frame_size);
    for i in 0..count {
        let chunk = chunks.next().unwrap_or_default();
        let (opcode, rsv) = if i == 0 { (kind.opcode(), rsv) } else { (OpCode::Continuation, 0) };
        let header = FrameHeader { fin: i + 1 == count, rsv, opcode, mask: None, payload_len: chunk.len() as u64 };
        let mut head = [0u8; MAX_HEADER_LEN];
        let len = header.encode_into(&mut head);
        out.extend_from_slice(&head[..len]);
        out.extend_from_slice(chunk);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_7_unmasked_hello_is_one_frame() {
        assert_eq!(
            &encode_frames(MessageKind::Text, b"Hello", 1 << 20, 0)[..],
            [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
        );
    }

    #[test]
    fn rfc6455_5_7_fragmented_hello_splits_at_the_frame_size() {
        // Section 5.7: "Hel" in a text frame without FIN, "lo" in a continuation with FIN.
        assert_eq!(
            &encode_frames(MessageKind::Text, b"Hello", 3, 0)[..],
            [0x01, 0x03, b'H', b'e', b'l', 0x80, 0x02, b'l', b'o']
        );
    }

    #[test]
    fn empty_message_is_one_empty_frame() {
        assert_eq!(&encode_frames(MessageKind::Binary, b"", 16, 0)[..], [0x82, 0x00]);
    }

    #[test]
    fn each_variant_is_encoded_once() {
        let message = PreparedMessage::binary(vec![7u8; 100]);
        let plain = Variant { frame_size: 1 << 20, deflate: None };
        let mut calls = 0;
        let a = message.frames(plain, |p| {
            calls += 1;
            encode_frames(MessageKind::Binary, p, 1 << 20, 0)
        });
        let b = message.frames(plain, |_| unreachable!("encoded already"));
        assert_eq!(calls, 1);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, shared");
        let small = Variant { frame_size: 10, deflate: None };
        let c = message.frames(small, |p| encode_frames(MessageKind::Binary, p, 10, 0));
        assert_eq!(c.len(), 100 + 10 * 2);
        assert_eq!(message.variants(), 2);
    }
}
