//! permessage-deflate ([RFC 7692]): this end's settings, the parameters agreed in the opening
//! handshake, and the per-connection compressor and decompressor.
//!
//! Compression is an extension of the connection (RFC 6455 section 9), not a special case: the
//! frame checks ask the negotiated extension which reserved bits it defines, the receive path
//! inflates a compressed message before its size limit and UTF-8 are checked, and the send path
//! deflates and sets RSV1 (RFC 7692 section 6).
//!
//! [RFC 7692]: https://www.rfc-editor.org/rfc/rfc7692
//!
//! What a connection holds for compression, and the settings that bound it, are documented on
//! [`DeflateConfig`].

mod codec;
mod negotiate;
mod pool;

use std::fmt;

pub(crate) use codec::{DeflateCodec, RSV1};
pub use negotiate::DeflateResponseError;
pub(crate) use negotiate::{negotiate_offers, offer_value, parse_answer};

use crate::config::ConfigError;

/// One end's permessage-deflate settings (RFC 7692 section 7): what a server accepts and asks
/// for, or what a client offers, and how this end compresses.
///
/// The window and context-takeover fields use the RFC's names, which say whose compressor they
/// concern (the server's or the client's); what each end does with them is documented per field.
/// Every field has a documented default ([`DeflateConfig::default`]: python-websockets'
/// memory-conscious 12-bit windows and memory level 5, and a server that keeps no compression
/// context, so that it holds no compressor per connection; see [Memory](#memory) below for what
/// each setting costs); [`validate`](Self::validate) checks the ranges.
///
/// # Memory
///
/// A connection that negotiated compression holds, while it keeps a context (RFC 7692 section
/// 7.1.1), one compressor and one decompressor. Measured with zlib-rs, beyond the same connection
/// without compression (`cargo test -p ferrule-core --test deflate_memory -- --nocapture`):
///
/// | window bits, memory level             | compressor | decompressor |
/// |---------------------------------------|-----------:|-------------:|
/// | 15, 8 (zlib's defaults)               | 371 KiB    | 46 KiB       |
/// | 15, 5                                 | 273 KiB    | 46 KiB       |
/// | 12, 8                                 | 259 KiB    | 46 KiB       |
/// | 12, 5                                 | 161 KiB    | 46 KiB       |
/// | 9, 1                                  | 134 KiB    | 46 KiB       |
/// | any, without context takeover         | 0          | 0            |
///
/// zlib-rs keeps a hash table of 64 Ki entries (128 KiB) whatever the settings, and its
/// decompressor takes the same memory for every window; the window bits and the memory level
/// move the rest of the compressor. (By zlib's documented formulas, C zlib at 12 bits and memory
/// level 5 would need about 38 KiB for the compressor and 11 KiB for the decompressor.)
///
/// The lever that removes the cost is the context takeover policy. Without a context
/// (`*_no_context_takeover`), a connection borrows a compressor or decompressor from its thread
/// for each message and gives it back reset after it (uWebSockets' shared compressor, per
/// thread), so it holds neither between messages and the thread's connections share a few. The
/// price is some compression (each message is compressed on its own) and a reset of the state
/// per message, which zeroes zlib-rs's hash table: the core then compresses as fast as flate2
/// resetting one compressor (`compress-no-context` in `cargo bench -p ferrule-core --bench
/// deflate`). A server can impose it on both sides
/// (see [`server_no_context_takeover`](Self::server_no_context_takeover) and
/// [`client_no_context_takeover`](Self::client_no_context_takeover)).
///
/// By default ([`DeflateConfig::default`]) a server answers `server_no_context_takeover`, so it
/// keeps no compressor per connection, only the decompressor for a client that keeps its context
/// (46 KiB; browsers do), which is less than python-websockets' default of about 64 KiB with C
/// zlib; set it to `false` for better compression of small, similar messages at 161 KiB more per
/// connection. A client by default does not ask for it: it leaves the choice to the server. Messages
/// below [`min_compress_size`](Self::min_compress_size) use no compressor at all.
///
/// A compressed message is held to `max_message_size` while it is inflated: its buffer never
/// grows past the limit, so a decompression bomb costs at most the limit (measured: a 1 MiB frame
/// that would inflate to 1 GiB, with a 1 MiB limit, peaks at 1086 KiB of heap, decompressor and
/// input included, and fails with 1009).
///
/// # Examples
///
/// ```
/// use ferrule_core::DeflateConfig;
///
/// // A server that caps its memory: no context on either side, small windows.
/// let config = DeflateConfig::default()
///     .server_no_context_takeover(true)
///     .client_no_context_takeover(true)
///     .server_max_window_bits(Some(10));
/// assert_eq!(config.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The largest LZ77 window the server compresses with, as a power of two, 8 to 15 (RFC 7692
    /// section 7.1.2.1). Default `Some(12)`.
    ///
    /// A server compresses with at most this, and with less when the client asks for less; it
    /// answers `server_max_window_bits` when the client asked or when this is below 15. A client
    /// asks the server for at most this (`None`: it does not ask), which bounds the server's
    /// compressor.
    pub server_max_window_bits: Option<u8>,
    /// The largest LZ77 window the client compresses with, 8 to 15 (RFC 7692 section 7.1.2.2).
    /// Default `Some(12)`.
    ///
    /// A client offers `client_max_window_bits` with this value (15: without a value, "any
    /// limit you like") and compresses with at most this; `None` does not offer the parameter,
    /// and the server then cannot limit the client's window. A server asks a client that offered
    /// the parameter for at most this (`None`: it accepts the client's choice).
    pub client_max_window_bits: Option<u8>,
    /// The server compresses each message on its own, without the previous messages as context
    /// (RFC 7692 section 7.1.1.1). Default `None`, which each end reads for its own role: a
    /// server answers it (it then keeps no compressor per connection: it borrows one from its
    /// thread for each message, 161 KiB less per connection at the default window and memory
    /// level, for some compression of small, similar messages), and a client does not ask for it.
    ///
    /// `Some(true)`: a server answers it, and a client asks for it (which lets the client keep no
    /// decompressor between messages) and fails the handshake when it is not answered.
    /// `Some(false)`: a server answers it only when the client asks for it (RFC 7692 lets a
    /// server answer it unasked, but not refuse it), and a client does not ask.
    ///
    /// The default differs by role because the setting saves the server's memory at the cost of
    /// the compression of what the server sends: a server chooses it for itself, while a client
    /// asking for it by default would impose the server's cost-saving on every server it meets.
    pub server_no_context_takeover: Option<bool>,
    /// The client compresses each message on its own (RFC 7692 section 7.1.1.2). Default `false`.
    ///
    /// A client offers it when set and then keeps no compressor between messages; a server
    /// answers it when set, which lets the server drop its decompressor between messages.
    pub client_no_context_takeover: bool,
    /// This end's compression level, 0 (store only) to 9 (smallest output, slowest). Default 6,
    /// zlib's default.
    pub compression_level: u8,
    /// This end's compressor memory level, 1 to 9 (zlib's `memLevel`): buffers of
    /// `7 << (memory_level + 6)` bytes. Default 5; zlib's default is 8.
    pub memory_level: u8,
    /// Messages shorter than this many bytes are sent uncompressed, with RSV1 clear (RFC 7692
    /// section 6.1 leaves it to the sender). Default 64: below that, deflate's framing and the
    /// work cost more than they save. Messages sent with `send_fragment` are always compressed,
    /// except a first fragment below this size that also ends the message.
    pub min_compress_size: usize,
    /// Make permessage-deflate a condition of the handshake. Default `false`.
    ///
    /// A server rejects a request without an acceptable offer with 400
    /// ([`HandshakeError::DeflateRequired`](crate::handshake::HandshakeError::DeflateRequired));
    /// a client fails the handshake when the server declines its offer.
    pub required: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(12),
            server_no_context_takeover: None,
            client_no_context_takeover: false,
            compression_level: 6,
            memory_level: 5,
            min_compress_size: 64,
            required: false,
        }
    }
}

impl DeflateConfig {
    /// Sets [`server_max_window_bits`](Self::server_max_window_bits).
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.server_max_window_bits = bits;
        self
    }
    /// Sets [`client_max_window_bits`](Self::client_max_window_bits).
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.client_max_window_bits = bits;
        self
    }
    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover) to `Some(on)`, for
    /// either role.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = Some(on);
        self
    }
    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }
    /// Sets [`compression_level`](Self::compression_level).
    pub fn compression_level(mut self, level: u8) -> Self {
        self.compression_level = level;
        self
    }
    /// Sets [`memory_level`](Self::memory_level).
    pub fn memory_level(mut self, level: u8) -> Self {
        self.memory_level = level;
        self
    }
    /// Sets [`min_compress_size`](Self::min_compress_size).
    pub fn min_compress_size(mut self, bytes: usize) -> Self {
        self.min_compress_size = bytes;
        self
    }
    /// Sets [`required`](Self::required).
    pub fn required(mut self, on: bool) -> Self {
        self.required = on;
        self
    }

    /// Checks that every value is in its range: window bits 8 to 15 (RFC 7692 section 7.1.2),
    /// compression level 0 to 9, memory level 1 to 9.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |field: &'static str, value: u8, min: u8, max: u8| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange { field, value: value.into(), min: min.into(), max: max.into() })
            }
        };
        if let Some(bits) = self.server_max_window_bits {
            check("server_max_window_bits", bits, MIN_WINDOW_BITS, MAX_WINDOW_BITS)?;
        }
        if let Some(bits) = self.client_max_window_bits {
            check("client_max_window_bits", bits, MIN_WINDOW_BITS, MAX_WINDOW_BITS)?;
        }
        check("compression_level", self.compression_level, 0, 9)?;
        check("memory_level", self.memory_level, 1, 9)
    }

    /// Whether a server answers `server_no_context_takeover` unasked: unless told otherwise, yes.
    pub(crate) fn server_answers_no_context_takeover(&self) -> bool {
        self.server_no_context_takeover.unwrap_or(true)
    }

    /// Whether a client asks for `server_no_context_takeover`: only when told to.
    pub(crate) fn client_asks_server_no_context_takeover(&self) -> bool {
        self.server_no_context_takeover.unwrap_or(false)
    }
}

/// The smallest LZ77 window a peer may ask for (RFC 7692 section 7.1.2.1).
pub(crate) const MIN_WINDOW_BITS: u8 = 8;
/// The largest LZ77 window, and the one used when none is negotiated (RFC 7692 section 7.1.2).
pub(crate) const MAX_WINDOW_BITS: u8 = 15;

/// The permessage-deflate parameters both ends agreed on in the opening handshake (RFC 7692
/// section 7.1), with the windows' defaults filled in (15 when not negotiated).
///
/// # Examples
///
/// ```
/// use ferrule_core::DeflateParams;
///
/// let params = DeflateParams::default().server_max_window_bits(10).client_no_context_takeover(true);
/// assert_eq!(params.to_string(), "permessage-deflate; client_no_context_takeover; server_max_window_bits=10");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server compresses each message without context (RFC 7692 section 7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client compresses each message without context (RFC 7692 section 7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8 to 15 (RFC 7692 section 7.1.2.1).
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 8 to 15 (RFC 7692 section 7.1.2.2).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// No parameter: both ends keep their context and use 15-bit windows (RFC 7692 section 7.1).
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflateParams {
    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover).
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }
    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }
    /// Sets [`server_max_window_bits`](Self::server_max_window_bits).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits;
        self
    }
    /// Sets [`client_max_window_bits`](Self::client_max_window_bits).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// Checks that both windows are 8 to 15 (RFC 7692 section 7.1.2).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming the window out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, bits) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits) {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: bits.into(),
                    min: MIN_WINDOW_BITS.into(),
                    max: MAX_WINDOW_BITS.into(),
                });
            }
        }
        Ok(())
    }
}

/// The `Sec-WebSocket-Extensions` element for these parameters, leaving out the windows that are
/// 15 (RFC 7692 section 7.1).
impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(negotiate::EXTENSION_NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if self.server_max_window_bits < MAX_WINDOW_BITS {
            write!(f, "; server_max_window_bits={}", self.server_max_window_bits)?;
        }
        if self.client_max_window_bits < MAX_WINDOW_BITS {
            write!(f, "; client_max_window_bits={}", self.client_max_window_bits)?;
        }
        Ok(())
    }
}

/// permessage-deflate as agreed for one connection: the [`DeflateParams`] and the
/// [`DeflateConfig`] this end agreed them under (its compression level, memory level and size
/// threshold apply to what it sends).
///
/// The handshake makes one ([`Response::deflate`](crate::handshake::Response::deflate) on a
/// server, [`ClientResponse::deflate`](crate::handshake::ClientResponse::deflate) on a client) and
/// hands it to the connection; [`new`](Self::new) makes one for a connection whose handshake was
/// done elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerMessageDeflate {
    params: DeflateParams,
    config: DeflateConfig,
}

impl PerMessageDeflate {
    /// Agreed `params`, with this end's `config`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when a window, level or memory level is out of its range.
    pub fn new(params: DeflateParams, config: DeflateConfig) -> Result<Self, ConfigError> {
        params.validate()?;
        config.validate()?;
        Ok(Self { params, config })
    }

    /// The agreed parameters.
    pub fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// This end's settings.
    pub fn config(&self) -> &DeflateConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_memory_conscious() {
        let c = DeflateConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!((c.server_max_window_bits, c.client_max_window_bits, c.memory_level), (Some(12), Some(12), 5));
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let err = |c: DeflateConfig| match c.validate() {
            Err(ConfigError::OutOfRange { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(DeflateConfig::default().server_max_window_bits(Some(7))), "server_max_window_bits");
        assert_eq!(err(DeflateConfig::default().client_max_window_bits(Some(16))), "client_max_window_bits");
        assert_eq!(err(DeflateConfig::default().compression_level(10)), "compression_level");
        assert_eq!(err(DeflateConfig::default().memory_level(0)), "memory_level");
        assert!(DeflateParams::default().server_max_window_bits(16).validate().is_err());
        assert!(
            PerMessageDeflate::new(DeflateParams::default().client_max_window_bits(7), DeflateConfig::default())
                .is_err()
        );
    }

    #[test]
    fn params_display_as_a_response_element() {
        assert_eq!(DeflateParams::default().to_string(), "permessage-deflate");
        let all = DeflateParams::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(8)
            .client_max_window_bits(9);
        assert_eq!(
            all.to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=9"
        );
    }
}
