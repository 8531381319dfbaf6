//! Properties of the sans-IO core, checked with proptest on the two-peer harness.

use std::time::Duration;

use ferrule_core::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Event, FrameHeader, MessageKind, OpCode,
    PerMessageDeflate, Role, State, apply_mask,
};
use ferrule_tests::harness::{Delivery, Pair, Side};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        any::<String>().prop_map(Msg::Text),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Msg::Binary),
        // Occasionally large enough for 16-bit and 64-bit length encodings.
        (0usize..70_000).prop_map(|n| Msg::Binary(vec![0x5A; n])),
    ]
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        Just(Delivery::Whole),
        Just(Delivery::ByteAtATime),
        proptest::collection::vec(1usize..64, 1..8).prop_map(Delivery::Chunks),
    ]
}

fn expected_event(m: &Msg) -> Event {
    match m {
        Msg::Text(t) => Event::Text(t.clone().into()),
        Msg::Binary(b) => Event::Binary(b.clone().into()),
    }
}

fn send(conn: &mut Connection, m: &Msg) {
    match m {
        Msg::Text(t) => conn.send_text(t).unwrap(),
        Msg::Binary(b) => conn.send_binary(b).unwrap(),
    }
}

/// Splits a written byte stream into frames (header, unmasked payload); the stream must be whole.
fn frames(mut bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes).unwrap().expect("whole header");
        let len = h.payload_len as usize;
        let mut payload = bytes[n..n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        out.push((h, payload));
        bytes = &bytes[n + len..];
    }
    out
}

fn small_config(frame_size: usize) -> Config {
    Config::default().outgoing_frame_size(frame_size)
}

/// A pair whose server pings every `interval_ms` and waits `interval_ms + extra_ms` for a sign of
/// life; returns it with the bound on finding a silent peer (ping interval + pong timeout).
fn keepalive_pair(interval_ms: u64, extra_ms: u64) -> (Pair, Duration) {
    let interval = Duration::from_millis(interval_ms);
    let pong_wait = interval + Duration::from_millis(extra_ms);
    let server = Config::default().ping_period(Some(interval)).pong_wait(pong_wait);
    // Only the server keeps alive: the client's own keepalive (on by default) would find the
    // server silent during the long pauses these properties try.
    (Pair::new(Config::default().ping_period(None), server), interval + pong_wait)
}

/// Silences both directions from now on and checks that the server declares the peer
/// unresponsive within `bound`.
fn silent_peer_is_found_within(pair: &mut Pair, bound: Duration) -> Result<(), TestCaseError> {
    let silent_since = pair.now;
    pair.set_delivery(Side::Server, Delivery::Drop);
    pair.set_delivery(Side::Client, Delivery::Drop);
    while !pair.closed(Side::Server) {
        prop_assert!(pair.advance_to_next_deadline().is_some());
    }
    prop_assert!(pair.now - silent_since <= bound, "found {:?} after going silent", pair.now - silent_since);
    let closed = pair.closed_event(Side::Server).unwrap();
    prop_assert_eq!(closed.failure.clone(), Some(ferrule_core::Failure::PeerUnresponsive));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// With permessage-deflate, whatever is sent arrives intact and in order, both ways, for any
    /// windows and context takeover, any size threshold, any transport split, any fragment size,
    /// and messages sent whole or streamed in any pieces; and the first frame of every
    /// compressed message alone carries RSV1.
    #[test]
    fn compressed_messages_round_trip_under_any_split(
        msgs in proptest::collection::vec((msg(), proptest::collection::vec(0usize..2000, 0..4)), 0..10),
        windows in (8u8..=15, 8u8..=15),
        no_context in (any::<bool>(), any::<bool>()),
        threshold in prop_oneof![Just(0usize), 1usize..200],
        to_server in delivery(),
        to_client in delivery(),
        frame_size in prop_oneof![Just(usize::MAX), 1usize..300],
    ) {
        let params = DeflateParams::default()
            .server_max_window_bits(windows.0)
            .client_max_window_bits(windows.1)
            .server_no_context_takeover(no_context.0)
            .client_no_context_takeover(no_context.1);
        let settings = DeflateConfig::default().min_compress_size(threshold);
        let deflate = PerMessageDeflate::new(params, settings).unwrap();
        let mut pair = Pair::with_deflate(small_config(frame_size), small_config(frame_size), Some(deflate));
        pair.set_delivery(Side::Server, to_server);
        pair.set_delivery(Side::Client, to_client);
        for (m, cuts) in &msgs {
            for conn in [&mut pair.client, &mut pair.server] {
                if cuts.is_empty() {
                    send(conn, m);
                    continue;
                }
                // Streamed: cut where the cuts say (on character boundaries for text).
                let (kind, bytes) = match m {
                    Msg::Text(t) => (MessageKind::Text, t.as_bytes()),
                    Msg::Binary(b) => (MessageKind::Binary, &b[..]),
                };
                let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                if let Msg::Text(t) = m {
                    points.retain(|&p| t.is_char_boundary(p));
                }
                points.sort_unstable();
                let mut start = 0;
                for p in points {
                    conn.send_fragment(kind, &bytes[start..p], false).unwrap();
                    start = p;
                }
                conn.send_fragment(kind, &bytes[start..], true).unwrap();
            }
        }
        pair.run();
        let expected: Vec<Event> = msgs.iter().map(|(m, _)| expected_event(m)).collect();
        prop_assert_eq!(&pair.server_events, &expected);
        prop_assert_eq!(&pair.client_events, &expected);
        prop_assert!(pair.server_errors.is_empty() && pair.client_errors.is_empty());
        let mut first = true;
        for (header, _) in frames(&pair.client_wrote).into_iter().chain(frames(&pair.server_wrote)) {
            prop_assert!(header.rsv == 0 || (header.rsv == 0b100 && first && header.opcode != OpCode::Continuation));
            if !header.opcode.is_control() {
                first = header.fin;
            }
        }
    }

    /// Whatever is sent arrives intact and in order, in both directions, however the transport
    /// splits the bytes and whatever fragment size the sender uses.
    #[test]
    fn messages_round_trip_under_any_split(
        msgs in proptest::collection::vec(msg(), 0..12),
        to_server in delivery(),
        to_client in delivery(),
        frame_size in prop_oneof![Just(usize::MAX), 1usize..300],
    ) {
        let mut pair = Pair::new(small_config(frame_size), small_config(frame_size));
        pair.set_delivery(Side::Server, to_server);
        pair.set_delivery(Side::Client, to_client);
        for m in &msgs {
            send(&mut pair.client, m);
            send(&mut pair.server, m);
        }
        pair.run();
        let expected: Vec<Event> = msgs.iter().map(expected_event).collect();
        prop_assert_eq!(&pair.server_events, &expected);
        prop_assert_eq!(&pair.client_events, &expected);
        prop_assert!(pair.server_errors.is_empty() && pair.client_errors.is_empty());
    }

    /// Feeding a byte stream whole or one byte at a time (or in any other split) gives the same
    /// events, the same error and the same reply bytes: frames valid or not.
    #[test]
    fn events_are_identical_for_whole_and_split_delivery(
        stream in stream_of_frames(),
        splits in proptest::collection::vec(prop_oneof![1usize..40, 500usize..5000], 1..10),
    ) {
        let run = |pieces: &mut dyn Iterator<Item = Vec<u8>>| {
            let now = std::time::Instant::now();
            let mut c = Connection::new(Role::Server, Config::default().max_message_size(5000).max_frame_size(3000), now).unwrap();
            let mut err = None;
            for p in pieces {
                if let Err(e) = c.handle_input(&p, now) {
                    err.get_or_insert(e);
                }
            }
            let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            let out = c.poll_transmit().map(<[u8]>::to_vec).unwrap_or_default();
            (events, err, out, c.state())
        };
        let whole = run(&mut std::iter::once(stream.clone()));
        let bytewise = run(&mut stream.iter().map(|b| vec![*b]));
        let mut rest = stream.as_slice();
        let mut i = 0;
        let chunked = run(&mut std::iter::from_fn(|| {
            if rest.is_empty() { return None; }
            let n = splits[i % splits.len()].min(rest.len());
            i += 1;
            let (a, b) = rest.split_at(n);
            rest = b;
            Some(a.to_vec())
        }));
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &chunked);
    }

    /// Once either side starts closing, both reach Closed by the close deadline, even when the
    /// closer's peer never answers, and the transport is shut.
    #[test]
    fn a_close_reaches_closed_by_its_deadline(
        before in proptest::collection::vec(msg(), 0..4),
        closer_is_client in any::<bool>(),
        peer_silent in any::<bool>(),
        to_server in delivery(),
        to_client in delivery(),
    ) {
        let timeout = Duration::from_secs(5);
        let mut pair = Pair::default_pair();
        pair.set_delivery(Side::Server, to_server);
        pair.set_delivery(Side::Client, to_client);
        for m in &before {
            send(&mut pair.client, m);
        }
        pair.run();
        let (closer, other) = if closer_is_client { (Side::Client, Side::Server) } else { (Side::Server, Side::Client) };
        if peer_silent {
            pair.set_delivery(other, Delivery::Drop);
        }
        let start = pair.now;
        pair.conn(closer).close(CloseCode::NORMAL, "done", start).unwrap();
        pair.run_until_closed(timeout * 2);
        prop_assert!(pair.closed(closer), "the closer reached Closed");
        prop_assert!(pair.now - start <= timeout, "by its deadline");
        if !peer_silent {
            prop_assert!(pair.closed(other));
            prop_assert!(pair.closed_event(closer).unwrap().clean);
            // The server closes the transport; the client follows on end of stream.
            prop_assert_eq!(pair.transports_shut(), (true, true));
        } else {
            prop_assert_eq!(pair.conn(closer).state(), State::Closed);
            prop_assert!(!pair.closed_event(closer).unwrap().clean);
        }
    }

    /// No frame follows a close frame in what either side writes, whatever is attempted after.
    #[test]
    fn nothing_is_sent_after_a_close_frame(
        before in proptest::collection::vec(msg(), 0..4),
        after in proptest::collection::vec(msg(), 0..4),
        closer_is_client in any::<bool>(),
        ping_after in any::<bool>(),
    ) {
        let mut pair = Pair::default_pair();
        for m in &before {
            send(&mut pair.client, m);
            send(&mut pair.server, m);
        }
        let closer = if closer_is_client { Side::Client } else { Side::Server };
        let now = pair.now;
        pair.conn(closer).close(CloseCode::GOING_AWAY, "", now).unwrap();
        pair.run();
        for side in [Side::Client, Side::Server] {
            for m in &after {
                let conn = pair.conn(side);
                let r = match m {
                    Msg::Text(t) => conn.send_text(t),
                    Msg::Binary(b) => conn.send_binary(b),
                };
                prop_assert!(r.is_err());
            }
            if ping_after {
                prop_assert!(pair.conn(side).ping(b"x").is_err());
            }
        }
        pair.run_until_closed(Duration::from_secs(10));
        for wrote in [&pair.client_wrote, &pair.server_wrote] {
            let fs = frames(wrote);
            let close_at = fs.iter().position(|(h, _)| h.opcode == OpCode::Close);
            prop_assert_eq!(close_at, Some(fs.len() - 1), "the close frame is the last frame");
        }
    }

    /// A peer that goes silent is declared dead within ping interval + pong timeout.
    #[test]
    fn a_silent_peer_is_detected_within_ping_period_plus_pong_wait(
        interval_ms in 100u64..5_000,
        extra_ms in 1u64..5_000,
        silent_after_ms in 0u64..20_000,
        chatter in any::<bool>(),
    ) {
        let (mut pair, bound) = keepalive_pair(interval_ms, extra_ms);
        // A live peer: the client answers pings for a while (and maybe chats).
        let live_until = pair.now + Duration::from_millis(silent_after_ms);
        while pair.next_deadline().is_some_and(|t| t < live_until) {
            pair.advance_to_next_deadline();
            if chatter {
                pair.client.send_text("still here").unwrap();
                pair.run();
            }
        }
        prop_assert!(!pair.closed(Side::Server), "a live peer is never declared dead");
        pair.now = pair.now.max(live_until);
        pair.run();
        silent_peer_is_found_within(&mut pair, bound)?;
    }

    /// A pause in reading of any length, at any time, never gets a peer that answers pings
    /// declared dead (its pongs wait in the transport), and once reading resumes a peer that
    /// went silent is still found within ping interval + pong timeout of reading time.
    #[test]
    fn a_read_pause_spares_a_live_peer_and_still_finds_a_silent_one(
        interval_ms in 100u64..5_000,
        extra_ms in 1u64..5_000,
        pause_at_ms in 0u64..20_000,
        pause_ms in 0u64..120_000,
        silent_during_pause in any::<bool>(),
    ) {
        let (mut pair, bound) = keepalive_pair(interval_ms, extra_ms);
        pair.advance_by(Duration::from_millis(pause_at_ms));
        pair.pause_reading(Side::Server);
        if silent_during_pause {
            // The peer vanished just as the server stopped reading.
            pair.set_delivery(Side::Client, Delivery::Drop);
        }
        pair.advance_by(Duration::from_millis(pause_ms));
        prop_assert!(!pair.closed(Side::Server), "failed while reading was paused");
        pair.resume_reading(Side::Server);
        prop_assert!(!pair.closed(Side::Server), "failed on resuming");
        silent_peer_is_found_within(&mut pair, bound)?;
    }

    /// Arbitrary bytes, in arbitrary splits, interleaved with timeouts and end of stream, never
    /// panic either role, and the outcome is either events or a typed error.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        splits in proptest::collection::vec(1usize..100, 1..10),
        client in any::<bool>(),
        eof in any::<bool>(),
    ) {
        let now = std::time::Instant::now();
        let role = if client { Role::Client } else { Role::Server };
        let config = Config::default().max_frame_size(1000).max_message_size(1500)
            .ping_period(Some(Duration::from_secs(1))).pong_wait(Duration::from_secs(2));
        let mut c = Connection::new(role, config, now).unwrap();
        let mut rest = bytes.as_slice();
        let mut i = 0;
        let mut t = now;
        while !rest.is_empty() {
            let n = splits[i % splits.len()].min(rest.len());
            let (a, b) = rest.split_at(n);
            let _ = c.handle_input(a, t);
            t += Duration::from_millis(300);
            c.handle_timeout(t);
            let _ = c.take_transmit();
            while c.poll_event().is_some() {}
            rest = b;
            i += 1;
        }
        if eof {
            c.handle_eof(t);
            prop_assert_eq!(c.state(), State::Closed);
        }
    }
}

/// A byte stream of masked frames, some of them invalid in every way the decoder checks.
fn stream_of_frames() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        any::<bool>(),
        prop_oneof![Just(0u8), Just(1), Just(2), Just(8), Just(9), Just(10), 0u8..16],
        prop_oneof![8 => Just(0u8), 1 => 0u8..8],
        // Now and then past 1 KiB, where the decoder unmasks a payload as it arrives, and past
        // the 3000-byte frame limit of the test's connection.
        prop_oneof![
            6 => proptest::collection::vec(any::<u8>(), 0..200),
            1 => proptest::collection::vec(any::<u8>(), 1000..3500),
        ],
        any::<[u8; 4]>(),
        prop_oneof![8 => Just(true), 1 => Just(false)],
        prop_oneof![
            Just(None),
            Just(Some("κόσμε €".to_string())),
            any::<String>().prop_map(Some),
            (80usize..250).prop_map(|n| Some("κόσμε €".repeat(n))),
        ],
    )
        .prop_map(|(fin, opcode, rsv, mut payload, key, masked, text)| {
            if let Some(t) = text {
                payload = t.into_bytes();
            }
            let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
            let len = payload.len();
            let mask_bit = if masked { 0x80 } else { 0 };
            if len < 126 {
                out.push(mask_bit | len as u8);
            } else {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            if masked {
                out.extend_from_slice(&key);
                apply_mask(&mut payload, key);
            }
            out.extend_from_slice(&payload);
            out
        });
    proptest::collection::vec(frame, 0..10).prop_map(|fs| fs.concat())
}
