//! What permessage-deflate costs in memory, counted by a global allocator that wraps the
//! system's: a decompression bomb stopped at the message limit, and the state a compressing
//! connection keeps.
//!
//! This binary holds one test, which runs its checks one after the other, so that nothing else
//! allocates meanwhile. A `realloc` counts by its net change, as `tests/tests/heap.rs` counts it.
//! Run with `-- --nocapture` to see the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use ferrule_core::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Event, FrameHeader, OpCode, PerMessageDeflate,
    ProtocolError, Role,
};
use flate2::{Compress, Compression, FlushCompress};

/// The system allocator, counting the bytes it has handed out and not yet taken back, and the
/// most it has had out at once.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn add(bytes: isize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's arguments, under the same
// contract; the counters are only arithmetic on the sizes involved.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak at the current live heap; returns the current live heap.
fn reset_peak() -> isize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The message limit of the bomb check.
const LIMIT: usize = 1 << 20;
/// What the check allows over the limit: one chunk, covering the decompressor's state (about 7
/// KiB and a window of 2^15 bytes) and a piece of input.
const CHUNK: usize = 64 * 1024;
/// The pieces the bomb arrives in.
const PIECE: usize = 16 * 1024;

/// A raw DEFLATE stream of 1 GiB of zeroes in about 1 MiB: DEFLATE cannot shrink data more than
/// about 1032 to 1 (RFC 1951: a 258-byte match per one-bit code at best), so no 1 KiB frame can
/// inflate to a GiB. The stream is the compression of the first MiB, then that of the next MiB,
/// repeated: each decodes to a MiB of zeroes after any MiB of zeroes.
fn gigabyte_bomb() -> Vec<u8> {
    let zeroes = vec![0u8; 1 << 20];
    let mut compress = Compress::new(Compression::best(), false);
    let mut segment = |out: &mut Vec<u8>| {
        let before = out.len();
        out.reserve(64 * 1024);
        compress.compress_vec(&zeroes, out, FlushCompress::Sync).expect("deflate");
        out.len() - before
    };
    let mut first = Vec::new();
    segment(&mut first);
    let mut next = Vec::new();
    segment(&mut next);
    let mut stream = Vec::with_capacity(first.len() + 1023 * next.len());
    stream.extend_from_slice(&first);
    for _ in 1..1024 {
        stream.extend_from_slice(&next);
    }
    stream
}

fn bomb_is_stopped_at_the_limit() {
    let payload = gigabyte_bomb();
    let header =
        FrameHeader { fin: true, rsv: 0b100, opcode: OpCode::Binary, mask: None, payload_len: payload.len() as u64 };
    let mut frame = Vec::new();
    header.encode(&mut frame);
    frame.extend_from_slice(&payload);
    drop(payload);
    let deflate = PerMessageDeflate::new(DeflateParams::default(), DeflateConfig::default()).unwrap();
    let config = Config::default().max_message_size(LIMIT).max_frame_size(2 << 20);
    let now = Instant::now();
    let mut client = Connection::with_deflate(Role::Client, config, Some(deflate), now).unwrap();

    let baseline = reset_peak();
    let mut result = Ok(());
    let mut fed = 0;
    for piece in frame.chunks(PIECE) {
        fed += piece.len();
        result = client.handle_input(piece, now);
        if result.is_err() {
            break;
        }
    }
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    eprintln!(
        "bomb: {} KiB frame (1 GiB inflated), stopped after {} KiB of it; peak heap {} KiB over the \
         baseline, limit {} KiB",
        frame.len() / 1024,
        fed / 1024,
        peak / 1024,
        LIMIT / 1024
    );
    assert!(matches!(result, Err(ProtocolError::MessageTooLarge { max: LIMIT, .. })), "{result:?}");
    let closed = std::iter::from_fn(|| client.poll_event()).find_map(|e| match e {
        Event::Closed(c) => Some(c.code),
        _ => None,
    });
    assert_eq!(closed, Some(CloseCode::MESSAGE_TOO_BIG));
    assert!(peak as usize <= LIMIT + CHUNK, "peak {peak} > limit {LIMIT} + chunk {CHUNK}");
}

/// A JSON-like message, compressible as real traffic is.
fn json(len: usize) -> String {
    let mut s = String::with_capacity(len + 64);
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("{{\"id\":{i},\"user\":\"user{}\",\"score\":{},\"ok\":true}},", i % 97, i * 31 % 1000));
        i += 1;
    }
    s.truncate(len);
    s
}

/// The heap a server connection keeps after sending (its compressor) and after receiving (its
/// decompressor) one message, beyond the same connection without compression.
fn kept_state(bits: u8, memory_level: u8, no_context: bool) -> (isize, isize) {
    let params = DeflateParams::default()
        .server_max_window_bits(bits)
        .client_max_window_bits(bits)
        .server_no_context_takeover(no_context)
        .client_no_context_takeover(no_context);
    let settings = DeflateConfig::default().memory_level(memory_level).min_compress_size(0);
    let deflate = PerMessageDeflate::new(params, settings).unwrap();
    let now = Instant::now();
    let message = json(16 * 1024);
    // A client to make the compressed frames the server receives.
    let mut client = Connection::with_deflate(Role::Client, Config::default(), Some(deflate.clone()), now).unwrap();
    client.send_text(&message).unwrap();
    let incoming = client.take_transmit();

    let exchange = |compress: bool| {
        let mut server = Connection::with_deflate(Role::Server, Config::default(), Some(deflate.clone()), now).unwrap();
        if compress {
            server.send_text(&message).unwrap();
            let _ = server.take_transmit();
        } else {
            server.handle_input(&incoming, now).unwrap();
            while server.poll_event().is_some() {}
        }
        server.release_buffers();
        server
    };
    let measure = |compress: bool| {
        // A first connection leaves in the thread's pool whatever it lends when no context is
        // kept; the one measured then costs only what it keeps of its own.
        let first = exchange(compress);
        let before = live();
        let server = exchange(compress);
        let with = live() - before;
        drop(server);
        drop(first);
        let before = live();
        let mut plain = Connection::new(Role::Server, Config::default(), now).unwrap();
        plain.send_text(&message).unwrap();
        let _ = plain.take_transmit();
        plain.release_buffers();
        let without = live() - before;
        drop(plain);
        with - without
    };
    (measure(true), measure(false))
}

#[test]
fn deflate_memory() {
    bomb_is_stopped_at_the_limit();

    eprintln!("state kept by a server connection, beyond one without compression:");
    for (bits, memory_level) in [(15, 8), (15, 5), (12, 5), (12, 8), (9, 1)] {
        let (compressor, decompressor) = kept_state(bits, memory_level, false);
        eprintln!(
            "  window {bits} bits, memory level {memory_level}: compressor {} KiB, decompressor {} KiB",
            compressor / 1024,
            decompressor / 1024
        );
        assert!(compressor > 0 && decompressor > 0);
        assert!(compressor < 512 * 1024 && decompressor < 64 * 1024);
    }
    // Without context takeover, a connection keeps nothing between messages: it borrows its
    // compressor and decompressor from the thread's pool for each message.
    let (compressor, decompressor) = kept_state(15, 8, true);
    eprintln!("  no context takeover: compressor {compressor} B, decompressor {decompressor} B");
    assert!(compressor.abs() < 1024 && decompressor.abs() < 1024, "{compressor} {decompressor}");
}
