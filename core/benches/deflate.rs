//! permessage-deflate through the core against the same backend alone: compressing and inflating
//! 1 KiB, 16 KiB and 1 MiB JSON-like messages.
//!
//! `core` sends with a server connection (deflate, RSV1, framing, no masking) and receives with a
//! client connection (inflate within the limit, delivery as an event); `flate2` drives zlib-rs
//! through flate2 with the same settings (15-bit window, level 6, memory level 8, context kept),
//! into an owned buffer per message. The difference is the core's overhead.
//!
//! Run with `cargo bench -p ferrule-core --bench deflate`.

#![allow(missing_docs, reason = "criterion_group! generates an undocumented pub fn")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrule_core::{
    Config, Connection, DeflateConfig, DeflateParams, Event, FrameHeader, OpCode, PerMessageDeflate, Role,
};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// A JSON-like message of `len` bytes.
fn json(len: usize) -> Vec<u8> {
    let mut s = String::with_capacity(len + 64);
    let mut i = 0u64;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"score\":{},\"tags\":[\"a{}\",\"b\"],\"ok\":{}}},",
            i % 97,
            i * 31 % 1000,
            i % 7,
            i % 2 == 0
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

/// `message` compressed by flate2 as one permessage-deflate message: sync flush, tail removed.
fn flate2_message(compress: &mut Compress, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() / 2 + 64);
    loop {
        let before = compress.total_in();
        compress.compress_vec(message, &mut out, FlushCompress::Sync).unwrap();
        if compress.total_in() - before == message.len() as u64 && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.len());
    }
    out.truncate(out.len() - 4);
    out
}

fn deflate() -> PerMessageDeflate {
    // zlib's defaults, which flate2 uses and cannot change: 15 bits, memory level 8.
    let settings = DeflateConfig::default().compression_level(6).memory_level(8).min_compress_size(0);
    PerMessageDeflate::new(DeflateParams::default(), settings).expect("valid settings")
}

fn config() -> Config {
    Config::default().max_message_size(64 << 20).max_frame_size(64 << 20)
}

fn benches(c: &mut Criterion) {
    for (name, len) in [("1KiB", 1024), ("16KiB", 16 * 1024), ("1MiB", 1 << 20)] {
        let message = json(len);
        let mut group = c.benchmark_group(format!("deflate/compress/{name}"));
        group
            .throughput(Throughput::Bytes(len as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20);
        let now = Instant::now();
        let mut server = Connection::with_deflate(Role::Server, config(), Some(deflate()), now).unwrap();
        group.bench_function("core", |b| {
            b.iter(|| {
                server.send_binary(black_box(&message)).unwrap();
                black_box(server.take_transmit());
            });
        });
        let mut compress = Compress::new_with_window_bits(Compression::new(6), false, 15);
        group.bench_function("flate2", |b| b.iter(|| black_box(flate2_message(&mut compress, black_box(&message)))));
        group.finish();

        // Without context takeover: the core borrows a compressor from the thread's pool for
        // each message and gives it back reset; flate2 resets its one compressor.
        let mut group = c.benchmark_group(format!("deflate/compress-no-context/{name}"));
        group
            .throughput(Throughput::Bytes(len as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20);
        let no_context = DeflateParams::default().server_no_context_takeover(true);
        let settings = DeflateConfig::default().compression_level(6).memory_level(8).min_compress_size(0);
        let pooled = PerMessageDeflate::new(no_context, settings).expect("valid settings");
        let mut server = Connection::with_deflate(Role::Server, config(), Some(pooled), now).unwrap();
        group.bench_function("core", |b| {
            b.iter(|| {
                server.send_binary(black_box(&message)).unwrap();
                black_box(server.take_transmit());
            });
        });
        let mut compress = Compress::new_with_window_bits(Compression::new(6), false, 15);
        group.bench_function("flate2", |b| {
            b.iter(|| {
                let out = flate2_message(&mut compress, black_box(&message));
                compress.reset();
                black_box(out)
            });
        });
        group.finish();

        // One message compressed from a fresh state refers to nothing before it, so it inflates
        // the same after any history: the receiver keeps its context, as with takeover.
        let mut fresh = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut compressed = Vec::with_capacity(len + 64);
        fresh.compress_vec(&message, &mut compressed, FlushCompress::Sync).unwrap();
        let mut frame = Vec::new();
        let header = FrameHeader {
            fin: true,
            rsv: 0b100,
            opcode: OpCode::Binary,
            mask: None,
            payload_len: compressed.len() as u64 - 4,
        };
        header.encode(&mut frame);
        frame.extend_from_slice(&compressed[..compressed.len() - 4]);
        let mut group = c.benchmark_group(format!("deflate/inflate/{name}"));
        group
            .throughput(Throughput::Bytes(len as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20);
        let mut client = Connection::with_deflate(Role::Client, config(), Some(deflate()), now).unwrap();
        group.bench_function("core", |b| {
            b.iter(|| {
                client.handle_input(black_box(&frame), now).unwrap();
                let Some(Event::Binary(message)) = client.poll_event() else { panic!("a message") };
                black_box(message);
            });
        });
        let mut decompress = Decompress::new_with_window_bits(false, 15);
        group.bench_function("flate2", |b| {
            b.iter(|| {
                // The size is known here, which a receiver never knows: the backend's best case.
                let mut out = Vec::with_capacity(len + 1);
                decompress.decompress_vec(black_box(&compressed), &mut out, FlushDecompress::Sync).unwrap();
                assert_eq!(out.len(), len);
                black_box(out);
            });
        });
        group.finish();
    }
}

criterion_group!(deflate_benches, benches);
criterion_main!(deflate_benches);
