//! # ferrule-core
//!
//! A sans-IO implementation of the WebSocket protocol ([RFC 6455]): the opening handshake, frame
//! encoding and decoding, masking, fragmentation, UTF-8 validation, keepalive deadlines, size
//! limits, close codes and the closing handshake. It performs no I/O, never reads a clock and
//! spawns nothing: bytes and time go in, events, bytes and deadlines come out. That makes it
//! embeddable in any runtime, deterministic under test, and fuzzable.
//!
//! The async crate `ferrule` drives it over real sockets; this crate is for embedding it
//! elsewhere or writing a driver of your own.
//!
//! ## Pieces
//!
//! - [`handshake`]: the opening handshake (RFC 6455 section 4) for both ends, as incremental,
//!   bounded parsers that hand over a [`Connection`] and the bytes that followed the HTTP head.
//! - [`Connection`]: one open connection (sections 5 to 7). Inputs are `handle_*`, outputs are
//!   `poll_*`, commands are verbs (`send_text`, `ping`, `close`).
//! - [`DeflateConfig`], [`DeflateParams`], [`PerMessageDeflate`]: permessage-deflate
//!   ([RFC 7692]), negotiated by the handshake and applied by the connection: compressed messages
//!   are inflated (within `max_message_size`) before they are checked and delivered, and sent
//!   messages are deflated with RSV1 set.
//! - [`PreparedMessage`]: a message framed once and queued by reference on many server
//!   connections ([`Connection::send_prepared`]), for broadcasts.
//! - [`FrameHeader`], [`OpCode`], [`CloseCode`], [`apply_mask`]: the wire format, for tools that
//!   work below the connection.
//!
//! [RFC 6455]: https://www.rfc-editor.org/rfc/rfc6455
//! [RFC 7692]: https://www.rfc-editor.org/rfc/rfc7692
//!
//! ## Example: a server connection driven by hand
//!
//! ```
//! use std::time::Instant;
//! use ferrule_core::handshake::{Limits, ServerHandshake, ServerPolicy};
//! use ferrule_core::{Config, Event};
//!
//! let now = Instant::now();
//!
//! // 1. Bytes of the client's opening handshake arrive (RFC 6455 section 1.3's example key).
//! let request = b"GET /chat HTTP/1.1\r\n\
//!     Host: server.example.com\r\n\
//!     Upgrade: websocket\r\n\
//!     Connection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let mut handshake = ServerHandshake::new(Limits::default(), now);
//! let parsed = handshake.handle_input(request).unwrap().expect("a complete request");
//!
//! // 2. The policy validates it and builds the 101 response, which could be edited here.
//! let response = ServerPolicy::default().accept(&parsed).expect("a valid upgrade");
//! let response_bytes = response.to_bytes();
//! assert!(response_bytes.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! let text = String::from_utf8(response_bytes).unwrap();
//! assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
//!
//! // 3. The handshake hands over the connection and any bytes that followed the request.
//! let (mut conn, leftover) = handshake.into_connection(&response, Config::default(), now).unwrap();
//! assert!(leftover.is_empty());
//!
//! // 4. A masked text frame "Hello" arrives (the RFC 6455 section 5.7 example).
//! conn.handle_input(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], now)
//!     .unwrap();
//! let Some(Event::Text(hello)) = conn.poll_event() else { panic!("expected a text message") };
//! assert_eq!(hello, "Hello");
//!
//! // 5. Echo it: the reply is an unmasked frame, as servers send them.
//! conn.send_text(&hello).unwrap();
//! let reply = conn.poll_transmit().expect("bytes to write").to_vec();
//! assert_eq!(reply, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
//! conn.advance_transmit(reply.len());
//! assert!(conn.poll_transmit().is_none());
//! ```

#![forbid(unsafe_op_in_unsafe_fn)]

mod close;
mod config;
mod connection;
mod deflate;
mod entropy;
mod error;
mod event;
mod extension;
mod frame;
pub mod handshake;
mod mask;
mod prepared;
mod utf8;

pub use bytes::Bytes;
pub use close::{CloseCode, MAX_CLOSE_REASON};
pub use config::{Config, ConfigError, Role};
pub use connection::{Connection, MessageKind};
pub use deflate::{DeflateConfig, DeflateParams, PerMessageDeflate};
pub use entropy::Entropy;
pub use error::{ProtocolError, SendError};
pub use event::{Closed, Event, Failure, Initiator, State, Utf8Bytes};
pub use frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
pub use mask::apply_mask;
pub use prepared::PreparedMessage;

/// Entry points for `benches/core.rs`. Not part of the API.
#[doc(hidden)]
pub mod __bench {
    pub use crate::mask::apply_mask_reference;

    /// The decoder's unmask-while-appending loop (from payload offset 0), for the masking benchmark.
    pub fn extend_masked(dst: &mut bytes::BytesMut, src: &[u8], key: [u8; 4]) {
        crate::mask::extend_masked(dst, src, key, 0);
    }
    pub use crate::utf8::{utf8_validate_in_pieces, utf8_validate_whole};
}
