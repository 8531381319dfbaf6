//! Benchmarks of ferrule-core's hot paths: masking, UTF-8 validation, frame decoding and encoding.
//!
//! Run with `cargo bench -p ferrule-core`; one group with `cargo bench -p ferrule-core -- mask/64KiB`.

#![allow(missing_docs, reason = "criterion_group! generates an undocumented pub fn")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use ferrule_core::__bench::{apply_mask_reference, extend_masked, utf8_validate_in_pieces, utf8_validate_whole};
use ferrule_core::{Config, Connection, Event, Role, apply_mask};

/// A group with short measurement settings (the whole file runs in about a minute and a half) and byte throughput.
fn group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Bytes(bytes as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    group
}

/// The masking key of the RFC 6455 section 5.7 examples.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// `mask/16B`, `mask/1KiB`, `mask/64KiB`: the fast path and the byte-at-a-time reference, beside a plain copy of the
/// same size as the yardstick (RFC 6455 section 5.3).
fn mask(c: &mut Criterion) {
    for (name, len) in [("mask/16B", 16), ("mask/1KiB", 1024), ("mask/64KiB", 64 * 1024)] {
        let mut group = group(c, name, len);
        let source = vec![0x5a_u8; len];
        let mut buf = vec![0_u8; len];
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&source));
                black_box(&mut buf);
            });
        });
        group.bench_function("apply_mask", |b| b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY))));
        group.bench_function("scalar", |b| b.iter(|| apply_mask_reference(black_box(&mut buf), black_box(KEY))));
        // Received payload: appended to the input buffer, then unmasked in place; or unmasked on the way in.
        let mut input = bytes::BytesMut::with_capacity(len);
        group.bench_function("copy_then_mask", |b| {
            b.iter(|| {
                input.clear();
                input.extend_from_slice(black_box(&source));
                apply_mask(&mut input, black_box(KEY));
                black_box(&mut input);
            });
        });
        group.bench_function("extend_masked", |b| {
            b.iter(|| {
                input.clear();
                extend_masked(&mut input, black_box(&source), black_box(KEY));
                black_box(&mut input);
            });
        });
        group.finish();
    }
}

/// `len` bytes of text that is all ASCII.
fn ascii_text(len: usize) -> Vec<u8> {
    let sample = "The quick brown fox jumps over the lazy dog. {\"id\": 42, \"tags\": [\"a\", \"b\"]}\n";
    sample.bytes().cycle().take(len).collect()
}

/// About `len` bytes of text mixing 1-, 2-, 3- and 4-byte characters, cut at a character boundary.
fn mixed_text(len: usize) -> Vec<u8> {
    let sample = "Grüße, κόσμε! Привет мир. 你好，世界。 🎉🚀 naïve café €5 ";
    let mut text = String::with_capacity(len + sample.len());
    while text.len() + sample.len() <= len {
        text.push_str(sample);
    }
    for c in sample.chars() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(c);
    }
    text.into_bytes()
}

/// `utf8/64KiB/ascii` and `utf8/64KiB/mixed`: the incremental validator fed the whole message and fed 4 KiB pieces
/// (splitting characters), beside `std::str::from_utf8` (RFC 6455 section 8.1).
fn utf8(c: &mut Criterion) {
    const LEN: usize = 64 * 1024;
    for (name, text) in [("utf8/64KiB/ascii", ascii_text(LEN)), ("utf8/64KiB/mixed", mixed_text(LEN))] {
        let mut group = group(c, name, text.len());
        group.bench_function("std_from_utf8", |b| b.iter(|| std::str::from_utf8(black_box(&text)).is_ok()));
        group.bench_function("validator_whole", |b| b.iter(|| utf8_validate_whole(black_box(&text))));
        group.bench_function("validator_4KiB_pieces", |b| {
            b.iter(|| utf8_validate_in_pieces(black_box(&text), 4096));
        });
        group.finish();
    }
}

/// A stream of `count` masked client frames of `size` bytes each, as a server receives them.
fn client_stream(kind: Kind, size: usize, count: usize) -> Vec<u8> {
    let now = std::time::Instant::now();
    let config = Config::default().rng_seed(Some([9; 32]));
    let mut client = Connection::new(Role::Client, config, now).expect("valid config");
    let payload = ascii_text(size);
    for _ in 0..count {
        match kind {
            Kind::Text => client.send_text(std::str::from_utf8(&payload).expect("ascii")),
            Kind::Binary => client.send_binary(&payload),
        }
        .expect("open connection");
    }
    client.take_transmit().to_vec()
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Binary,
}

/// Decoding: a server connection fed a stream of masked frames in 64 KiB reads, every event
/// drained (unmasking, UTF-8 validation for text, and message hand-off included).
fn decode(c: &mut Criterion) {
    for (label, kind, size, count) in [
        ("16B_binary", Kind::Binary, 16, 4096),
        ("16B_text", Kind::Text, 16, 4096),
        ("64KiB_binary", Kind::Binary, 64 * 1024, 16),
        ("64KiB_text", Kind::Text, 64 * 1024, 16),
    ] {
        let stream = client_stream(kind, size, count);
        let mut g = group(c, &format!("decode/{label}"), stream.len());
        g.bench_function("server_handle_input", |b| {
            let now = std::time::Instant::now();
            b.iter(|| {
                let mut server = Connection::new(Role::Server, Config::default(), now).expect("valid config");
                let mut messages = 0;
                for read in stream.chunks(64 * 1024) {
                    server.handle_input(black_box(read), now).expect("valid frames");
                    while let Some(event) = server.poll_event() {
                        if matches!(event, Event::Text(_) | Event::Binary(_)) {
                            messages += 1;
                        }
                    }
                }
                assert_eq!(messages, count);
            });
        });
        g.finish();
    }
}

/// Encoding: queuing messages and taking the output, for a server (unmasked) and a client
/// (masked with a fresh key per frame).
fn encode(c: &mut Criterion) {
    for (label, size, count) in [("16B", 16, 4096), ("64KiB", 64 * 1024, 16)] {
        let payload = ascii_text(size);
        let mut g = group(c, &format!("encode/{label}"), size * count);
        for role in [Role::Server, Role::Client] {
            let name = if role == Role::Server { "server_send_binary" } else { "client_send_binary" };
            let now = std::time::Instant::now();
            let mut conn = Connection::new(role, Config::default(), now).expect("valid config");
            g.bench_function(name, |b| {
                b.iter(|| {
                    for _ in 0..count {
                        conn.send_binary(black_box(&payload)).expect("open connection");
                    }
                    let out = conn.poll_transmit().map_or(0, <[u8]>::len);
                    conn.advance_transmit(out);
                    black_box(out)
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, mask, utf8, decode, encode);
criterion_main!(benches);
