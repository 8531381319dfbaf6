//! One connection's permessage-deflate compressor and decompressor (RFC 7692 sections 6 and 7.2).

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Status};

use super::pool::{self, DeflateKey};
use super::{DeflateParams, PerMessageDeflate};
use crate::config::Role;
use crate::error::ProtocolError;
use crate::prepared::CompressorSettings;

/// RSV1 in [`FrameHeader::rsv`](crate::FrameHeader::rsv): the "Per-Message Compressed" bit
/// (RFC 7692 section 6).
pub(crate) const RSV1: u8 = 0b100;

/// The empty stored block a sync flush ends with: removed from each compressed message on send,
/// appended on receive (RFC 7692 sections 7.2.1 and 7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib refuses a raw deflate stream with an 8-bit window; a negotiated 8 is served with 9, as
/// zlib itself and Node do.
const MIN_ZLIB_WINDOW_BITS: u8 = 9;

/// The window every message is inflated with, whatever the peer's: a window at least as large as
/// the peer's accepts its stream (including a 9-bit stream for a negotiated 8), and zlib-rs's
/// decompressor takes the same memory for every window (measured in `tests/deflate_memory.rs`),
/// so a smaller one would save nothing.
const INFLATE_WINDOW_BITS: u8 = 15;

/// The smallest first allocation for an inflated message; it doubles from there, up to the size
/// limit.
const FIRST_INFLATE_ALLOCATION: usize = 4 * 1024;

/// The first allocation for an inflated message is this many times its compressed frame's length
/// (when larger than [`FIRST_INFLATE_ALLOCATION`]): text and JSON inflate about 3 to 10 times,
/// and each doubling after it moves the message and touches fresh pages, which cost a 1 MiB
/// message three times the inflating itself when growing from 4 KiB. Never past the limit.
const INFLATE_RATIO_GUESS: usize = 4;

/// The last message's length is taken as the first allocation for the next only up to this many
/// times the next one's compressed frame: a large message followed by small ones does not make
/// each of them reserve as much (deflate inflates at most about 1032 times; JSON about 5 to 20).
const LAST_SIZE_RATIO_CAP: usize = 32;

/// An inflated message keeps its buffer when at most this fraction of it is unused (1/4);
/// otherwise the buffer is shrunk to fit before it is handed over.
const SHRINK_WASTE_DIVISOR: usize = 4;

/// The per-connection state of permessage-deflate: the agreed parameters, the compressor and
/// decompressor while a context is kept, and the message being inflated.
pub(crate) struct DeflateCodec {
    negotiated: PerMessageDeflate,
    role: Role,
    /// Whether messages sent from now on may be compressed (the application's per-connection
    /// switch; the peer's messages are inflated regardless).
    write_enabled: bool,
    /// This end's compressor: made for the first compressed message, dropped after each one
    /// when this end keeps no context.
    deflater: Option<Deflate>,
    /// The peer's decompressor: made for the first compressed message, dropped after each one
    /// when the peer keeps no context or ended its stream.
    inflater: Option<Inflate>,
    /// The peer ended the deflate stream (a block with BFINAL set, RFC 7692 section 7.2.3.4):
    /// the rest of this message's data is ignored, and the next message starts a new stream.
    rx_ended: bool,
    /// The message being inflated: its length is the output so far, its spare capacity what
    /// zlib-rs inflates into next (uninitialised: nothing is zeroed only to be overwritten).
    rx_buf: Vec<u8>,
    /// The length of the last message inflated: peers tend to send messages of like sizes, so
    /// it is the best first guess at the next one's (see [`LAST_SIZE_RATIO_CAP`]).
    rx_last_len: usize,
}

impl std::fmt::Debug for DeflateCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateCodec")
            .field("negotiated", &self.negotiated)
            .field("deflater", &self.deflater.is_some())
            .field("inflater", &self.inflater.is_some())
            .field("rx_filled", &self.rx_buf.len())
            .finish_non_exhaustive()
    }
}

impl DeflateCodec {
    pub(crate) fn new(negotiated: PerMessageDeflate, role: Role) -> Self {
        Self {
            negotiated,
            role,
            write_enabled: true,
            deflater: None,
            inflater: None,
            rx_ended: false,
            rx_buf: Vec::new(),
            rx_last_len: 0,
        }
    }

    pub(crate) fn params(&self) -> &DeflateParams {
        &self.negotiated.params
    }

    /// Whether a whole message of `len` bytes is to be compressed: compression is switched on
    /// and the message reaches the size threshold.
    pub(crate) fn should_compress(&self, len: usize) -> bool {
        self.write_enabled && len >= self.negotiated.config.min_compress_size
    }

    /// Whether messages sent from now on may be compressed.
    pub(crate) fn write_enabled(&self) -> bool {
        self.write_enabled
    }

    /// Switches compression of messages sent from now on.
    pub(crate) fn set_write_enabled(&mut self, enabled: bool) {
        self.write_enabled = enabled;
    }

    /// (window bits, keeps no context) of this end's compressor.
    fn own(&self) -> (u8, bool) {
        let p = &self.negotiated.params;
        match self.role {
            Role::Server => (p.server_max_window_bits, p.server_no_context_takeover),
            Role::Client => (p.client_max_window_bits, p.client_no_context_takeover),
        }
    }

    /// The settings of this end's compressor when it keeps no context between messages (so each
    /// message's compressed bytes depend on them alone, and can be shared between connections);
    /// `None` when it keeps its context.
    pub(crate) fn fresh_compressor(&self) -> Option<CompressorSettings> {
        let (window, no_context) = self.own();
        let config = &self.negotiated.config;
        no_context.then(|| CompressorSettings {
            level: config.compression_level.min(9),
            window_bits: window.clamp(MIN_ZLIB_WINDOW_BITS, 15),
            memory_level: config.memory_level.clamp(1, 9),
        })
    }

    /// Whether the peer keeps no context between messages.
    fn peer_keeps_no_context(&self) -> bool {
        let p = &self.negotiated.params;
        match self.role {
            Role::Server => p.client_no_context_takeover,
            Role::Client => p.server_no_context_takeover,
        }
    }

    // ---- receiving --------------------------------------------------------------------------

    /// Inflates more of the current message's compressed data, without letting the message
    /// grow past `limit` bytes. Returns the range of [`inflated`](Self::inflated) that is new.
    ///
    /// The output buffer starts small and doubles, but never past `limit`; once the message is
    /// `limit` bytes long, a single byte more fails it. So a decompression bomb costs at most
    /// `limit` bytes of output buffer before it is stopped.
    ///
    /// `frame_len` is the length of the compressed frame `input` belongs to, from which the first
    /// allocation is guessed.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        limit: usize,
        frame_len: usize,
    ) -> Result<Range<usize>, ProtocolError> {
        let start = self.rx_buf.len();
        if !self.rx_ended {
            // One byte past the last message's length, so that a message of the same length
            // ends with room to spare and the buffer need not grow to find that nothing follows.
            let like_the_last = self.rx_last_len.saturating_add(1).min(frame_len.saturating_mul(LAST_SIZE_RATIO_CAP));
            let first = frame_len.saturating_mul(INFLATE_RATIO_GUESS).max(like_the_last);
            self.inflate_inner(input, limit, first)?;
        }
        Ok(start..self.rx_buf.len())
    }

    /// Ends the current message's compressed data: inflates the sync flush's empty block that the
    /// sender removed (RFC 7692 section 7.2.2). Returns the range of output that is new.
    pub(crate) fn finish_message(&mut self, limit: usize) -> Result<Range<usize>, ProtocolError> {
        self.inflate(&SYNC_TAIL, limit, 0)
    }

    /// The current message's output so far.
    pub(crate) fn inflated(&self, range: Range<usize>) -> &[u8] {
        &self.rx_buf[range]
    }

    /// Takes the inflated message, and drops the decompressor when no context is carried over to
    /// the next message.
    pub(crate) fn take_message(&mut self) -> Bytes {
        let mut message = std::mem::take(&mut self.rx_buf);
        self.rx_last_len = message.len();
        if message.capacity() - message.len() > message.len() / SHRINK_WASTE_DIVISOR {
            message.shrink_to_fit();
        }
        if self.peer_keeps_no_context() || self.rx_ended {
            // Nothing carries over to the next message: lend the decompressor to the thread's
            // other connections until then.
            if let Some(inflater) = self.inflater.take() {
                pool::give_inflater(inflater);
            }
            self.rx_ended = false;
        }
        Bytes::from(message)
    }

    /// Forgets the message being received (the connection failed).
    pub(crate) fn abandon_message(&mut self) {
        self.rx_buf = Vec::new();
        self.inflater = None;
        self.rx_ended = false;
    }

    /// Bytes of buffer capacity held for the message being inflated.
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.rx_buf.capacity()
    }

    fn inflate_inner(&mut self, mut input: &[u8], limit: usize, first: usize) -> Result<(), ProtocolError> {
        let lend = self.peer_keeps_no_context();
        let inflater = self.inflater.get_or_insert_with(|| {
            lend.then(pool::take_inflater).flatten().unwrap_or_else(|| Inflate::new(false, INFLATE_WINDOW_BITS))
        });
        loop {
            let filled = self.rx_buf.len();
            if filled == self.rx_buf.capacity() && filled < limit {
                let grown = filled.saturating_mul(2).max(first).max(FIRST_INFLATE_ALLOCATION).min(limit);
                // Exactly: `reserve` alone would round the capacity up past the limit.
                self.rx_buf.reserve_exact(grown - filled);
            }
            // The buffer may be larger than a limit lowered since it grew.
            let room = self.rx_buf.capacity().min(limit).saturating_sub(filled);
            let at_limit = room == 0;
            let mut probe = [MaybeUninit::uninit(); 1];
            // At the limit, any further byte of output is one too many: inflate into one byte.
            let out: &mut [MaybeUninit<u8>] =
                if at_limit { &mut probe } else { &mut self.rx_buf.spare_capacity_mut()[..room] };
            let room = out.len();
            let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
            let status = inflater.decompress_uninit(input, out, InflateFlush::NoFlush);
            // Both are bounded by the slices' lengths, which are `usize`.
            let consumed = usize::try_from(inflater.total_in() - in_before).unwrap_or(input.len());
            let produced = usize::try_from(inflater.total_out() - out_before).unwrap_or(room).min(room);
            if at_limit && produced > 0 {
                let size = (filled as u64).saturating_add(1);
                return Err(ProtocolError::MessageTooLarge { size, max: limit });
            }
            if !at_limit {
                // SAFETY: zlib-rs wrote the first `produced` bytes of the spare capacity it was
                // given (its `total_out` counts exactly the bytes written to `next_out`), and
                // `produced <= room`, which is within the capacity.
                unsafe { self.rx_buf.set_len(filled + produced) };
            }
            input = input.get(consumed..).unwrap_or_default();
            match status {
                Err(_) => return Err(ProtocolError::InvalidCompressedData),
                Ok(Status::StreamEnd) => {
                    self.rx_ended = true;
                    return Ok(());
                }
                Ok(Status::BufError) => return Ok(()),
                Ok(Status::Ok) => {}
            }
            // Done once the input is used up and the output had room left (nothing is pending).
            if input.is_empty() && produced < room {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                return Ok(());
            }
        }
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Compresses `data` as the next part of an outgoing message and appends it to `out`; with
    /// `fin`, ends the message: the sync flush's tail is removed (RFC 7692 section 7.2.1) and,
    /// when this end keeps no context, the compressor is dropped.
    ///
    /// Every call ends with a sync flush, so each fragment of a streamed message carries all of
    /// its data.
    pub(crate) fn compress(&mut self, data: &[u8], fin: bool, out: &mut Vec<u8>) {
        let (window, no_context) = self.own();
        let config = &self.negotiated.config;
        let key: DeflateKey = (
            i32::from(config.compression_level.min(9)),
            -i32::from(window.clamp(MIN_ZLIB_WINDOW_BITS, 15)),
            i32::from(config.memory_level.clamp(1, 9)),
        );
        let deflater = self.deflater.get_or_insert_with(|| {
            no_context.then(|| pool::take_deflater(key)).flatten().unwrap_or_else(|| {
                Deflate::new_with_config(zlib_rs::DeflateConfig {
                    level: key.0,
                    method: zlib_rs::Method::Deflated,
                    window_bits: key.1,
                    mem_level: key.2,
                    strategy: zlib_rs::Strategy::Default,
                })
            })
        });
        let start = out.len();
        let mut input = data;
        out.reserve(data.len() / 2 + 64);
        loop {
            let filled = out.len();
            if out.capacity() == filled {
                out.reserve(filled - start + 64);
            }
            out.resize(out.capacity(), 0);
            let room = out.len() - filled;
            let (in_before, out_before) = (deflater.total_in(), deflater.total_out());
            let status = deflater.compress(input, &mut out[filled..], DeflateFlush::SyncFlush);
            let consumed = usize::try_from(deflater.total_in() - in_before).unwrap_or(input.len());
            let produced = usize::try_from(deflater.total_out() - out_before).unwrap_or(room);
            out.truncate(filled + produced);
            input = input.get(consumed..).unwrap_or_default();
            match status {
                // A valid configuration on a live stream only fails for want of buffer space,
                // which the loop provides; stop rather than spin if it ever does.
                Err(_) | Ok(Status::BufError | Status::StreamEnd) => break,
                Ok(Status::Ok) => {}
            }
            if input.is_empty() && produced < room {
                break;
            }
        }
        if fin {
            if out[start..].ends_with(&SYNC_TAIL) {
                out.truncate(out.len() - SYNC_TAIL.len());
            } else if out.len() == start {
                // Nothing new since the last sync flush, so zlib wrote no empty block this time:
                // the message must still end with one (RFC 7692 section 7.2.1). The stream is
                // byte-aligned after a flush, so the block is 00 00 00 ff ff, sent as 00.
                out.push(0x00);
            }
            if no_context {
                // Nothing carries over to the next message: lend the compressor to the
                // thread's other connections until then.
                if let Some(deflater) = self.deflater.take() {
                    pool::give_deflater(key, deflater);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::DeflateConfig;

    fn codec(role: Role, params: DeflateParams) -> DeflateCodec {
        let config = DeflateConfig::default().min_compress_size(0);
        DeflateCodec::new(PerMessageDeflate::new(params, config).unwrap(), role)
    }

    fn inflate_message(codec: &mut DeflateCodec, data: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
        codec.inflate(data, limit, data.len())?;
        codec.finish_message(limit)?;
        Ok(codec.take_message().to_vec())
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_in_one_compressed_block() {
        let mut c = codec(Role::Client, DeflateParams::default());
        assert_eq!(inflate_message(&mut c, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_2_second_hello_shares_the_window() {
        let mut c = codec(Role::Client, DeflateParams::default());
        assert_eq!(inflate_message(&mut c, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(), b"Hello");
        assert_eq!(inflate_message(&mut c, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_3_uncompressed_block() {
        let mut c = codec(Role::Client, DeflateParams::default());
        let payload = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(inflate_message(&mut c, &payload, 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_4_bfinal_block_ends_the_stream() {
        let mut c = codec(Role::Client, DeflateParams::default());
        assert_eq!(inflate_message(&mut c, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], 100).unwrap(), b"Hello");
        // The next message starts a new stream.
        assert_eq!(inflate_message(&mut c, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_5_two_blocks_in_one_message() {
        let mut c = codec(Role::Client, DeflateParams::default());
        let payload = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_message(&mut c, &payload, 100).unwrap(), b"Hello");
    }

    #[test]
    fn compressing_hello_gives_the_rfc_bytes() {
        // RFC 7692 section 7.2.3.1 and 7.2.3.2, as zlib produces them with context takeover.
        let mut c = codec(Role::Server, DeflateParams::default());
        let mut out = Vec::new();
        c.compress(b"Hello", true, &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        out.clear();
        c.compress(b"Hello", true, &mut out);
        assert_eq!(out, [0xf2, 0x00, 0x11, 0x00, 0x00]);
    }

    #[test]
    fn an_empty_message_after_a_flush_still_ends_with_an_empty_block() {
        let mut tx = codec(Role::Server, DeflateParams::default());
        let mut rx = codec(Role::Client, DeflateParams::default());
        for message in [&b""[..], b"", b"Hello", b"", b"Hello"] {
            let mut out = Vec::new();
            tx.compress(message, true, &mut out);
            assert!(!out.is_empty());
            assert_eq!(inflate_message(&mut rx, &out, 100).unwrap(), message);
        }
        // The last fragment of a streamed message adds nothing after a flushed fragment.
        let mut out = Vec::new();
        tx.compress(b"Hel", false, &mut out);
        tx.compress(b"", false, &mut out);
        tx.compress(b"", true, &mut out);
        assert_eq!(inflate_message(&mut rx, &out, 100).unwrap(), b"Hel");
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let mut tx = codec(Role::Server, DeflateParams::default());
        let mut compressed = Vec::new();
        tx.compress(&[0u8; 100_000], true, &mut compressed);
        let mut rx = codec(Role::Client, DeflateParams::default());
        assert_eq!(inflate_message(&mut rx, &compressed, 100_000).unwrap().len(), 100_000);
        let mut rx = codec(Role::Client, DeflateParams::default());
        assert_eq!(
            inflate_message(&mut rx, &compressed, 99_999),
            Err(ProtocolError::MessageTooLarge { size: 100_000, max: 99_999 })
        );
        assert!(rx.buffer_capacity() <= 99_999);
    }

    #[test]
    fn corrupt_data_is_invalid() {
        let mut rx = codec(Role::Client, DeflateParams::default());
        // BTYPE 11 is reserved (RFC 1951 section 3.2.3).
        assert_eq!(inflate_message(&mut rx, &[0xff, 0xff], 100), Err(ProtocolError::InvalidCompressedData));
    }

    #[test]
    fn no_context_takeover_drops_state_between_messages() {
        let params = DeflateParams::default().server_no_context_takeover(true).client_no_context_takeover(true);
        let mut tx = codec(Role::Server, params);
        let mut out = Vec::new();
        tx.compress(b"Hello", true, &mut out);
        assert!(tx.deflater.is_none());
        let mut second = Vec::new();
        tx.compress(b"Hello", true, &mut second);
        assert_eq!(out, second, "each message compressed on its own");
        let mut rx = codec(Role::Client, params);
        assert_eq!(inflate_message(&mut rx, &out, 100).unwrap(), b"Hello");
        assert!(rx.inflater.is_none());
    }

    #[test]
    fn every_window_round_trips() {
        let text: Vec<u8> =
            (0..50_000u32).flat_map(|i| format!("{{\"id\":{i},\"v\":\"x{}\"}}", i % 97).into_bytes()).collect();
        for bits in 8..=15 {
            let params = DeflateParams::default().server_max_window_bits(bits).client_max_window_bits(bits);
            let mut tx = codec(Role::Server, params);
            let mut rx = codec(Role::Client, params);
            for _ in 0..2 {
                let mut out = Vec::new();
                tx.compress(&text, true, &mut out);
                assert_eq!(inflate_message(&mut rx, &out, usize::MAX).unwrap(), text, "{bits} bits");
            }
        }
    }
}
