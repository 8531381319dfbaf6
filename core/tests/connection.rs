//! Connection behaviour through the public API: every rejection path, the RFC 6455 section 5.7
//! example frames, fragmentation, limits, keepalive and the close lifecycle.

use std::time::{Duration, Instant};

use ferrule_core::{
    CloseCode, Closed, Config, Connection, Event, Failure, Initiator, MessageKind, ProtocolError, Role, SendError,
    State, apply_mask,
};

fn server() -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::new(Role::Server, Config::default(), now).unwrap(), now)
}

fn client() -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::new(Role::Client, Config::default().rng_seed(Some([1; 32])), now).unwrap(), now)
}

/// A frame as a client sends it: masked with a fixed key.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
    out
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// Everything the connection has to write, piece by piece.
fn transmit(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(piece) = conn.poll_transmit() {
        let n = piece.len();
        out.extend_from_slice(piece);
        conn.advance_transmit(n);
    }
    out
}

/// Feeds `bytes` to a server and asserts it fails with `expected`, sending a close frame with the
/// matching code, and asks for the transport to be shut.
fn assert_server_fails(bytes: &[u8], expected: ProtocolError) {
    let (mut conn, now) = server();
    assert_eq!(conn.handle_input(bytes, now), Err(expected.clone()));
    let code = expected.close_code().as_u16().to_be_bytes();
    let out = transmit(&mut conn);
    assert_eq!(out[0], 0x88, "a close frame is sent");
    assert_eq!(&out[2..4], &code, "with code {}", expected.close_code());
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_shutdown());
    let evs = events(&mut conn);
    match evs.last() {
        Some(Event::Closed(Closed { clean: false, code: c, failure: Some(Failure::Protocol(e)), .. })) => {
            assert_eq!(*c, expected.close_code());
            assert_eq!(*e, expected);
        }
        other => panic!("expected a failed Closed event, got {other:?}"),
    }
    // Sticky: later input returns the same error; nothing more is sent.
    assert_eq!(conn.handle_input(&masked(0x81, b"x"), now), Err(expected));
    assert!(conn.poll_transmit().is_none());
    assert_eq!(conn.send_text("late"), Err(SendError::Closed));
}

// ---- RFC 6455 section 5.7 examples ------------------------------------------------------------

#[test]
fn rfc6455_5_7_single_frame_unmasked_text_received_by_client() {
    let (mut conn, now) = client();
    conn.handle_input(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], now).unwrap();
    assert_eq!(events(&mut conn), [Event::Text("Hello".into())]);
}

#[test]
fn rfc6455_5_7_single_frame_masked_text_received_by_server() {
    let (mut conn, now) = server();
    conn.handle_input(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], now).unwrap();
    assert_eq!(events(&mut conn), [Event::Text("Hello".into())]);
}

#[test]
fn rfc6455_5_7_fragmented_unmasked_text_received_by_client() {
    let (mut conn, now) = client();
    conn.handle_input(&[0x01, 0x03, 0x48, 0x65, 0x6c], now).unwrap();
    assert!(events(&mut conn).is_empty());
    conn.handle_input(&[0x80, 0x02, 0x6c, 0x6f], now).unwrap();
    assert_eq!(events(&mut conn), [Event::Text("Hello".into())]);
}

#[test]
fn rfc6455_5_7_unmasked_ping_and_masked_pong() {
    let (mut conn, now) = client();
    conn.handle_input(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], now).unwrap();
    assert_eq!(events(&mut conn), [Event::Ping(bytes::Bytes::from_static(b"Hello"))]);
    let (mut srv, now) = server();
    srv.handle_input(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], now).unwrap();
    assert_eq!(events(&mut srv), [Event::Pong(bytes::Bytes::from_static(b"Hello"))]);
}

#[test]
fn rfc6455_5_7_binary_with_16_and_64_bit_lengths() {
    let (mut conn, now) = client();
    let mut frame = vec![0x82, 0x7E, 0x01, 0x00];
    frame.extend(std::iter::repeat_n(0xAB, 256));
    conn.handle_input(&frame, now).unwrap();
    let mut frame = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
    frame.extend(std::iter::repeat_n(0xCD, 65536));
    conn.handle_input(&frame, now).unwrap();
    match events(&mut conn).as_slice() {
        [Event::Binary(a), Event::Binary(b)] => {
            assert_eq!((a.len(), b.len()), (256, 65536));
            assert!(a.iter().all(|&x| x == 0xAB) && b.iter().all(|&x| x == 0xCD));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_sends_rfc6455_5_7_unmasked_hello() {
    let (mut conn, _) = server();
    conn.send_text("Hello").unwrap();
    assert_eq!(transmit(&mut conn), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn client_sends_masked_frames_that_a_server_decodes() {
    let (mut c, now) = client();
    let (mut s, _) = server();
    c.send_text("Hello").unwrap();
    c.send_binary(&[1, 2, 3]).unwrap();
    let out = transmit(&mut c);
    assert_eq!(out[1] & 0x80, 0x80, "client frames are masked");
    s.handle_input(&out, now).unwrap();
    assert_eq!(events(&mut s), [Event::Text("Hello".into()), Event::Binary(vec![1, 2, 3].into())]);
}

/// Queues the same mix of messages through the copying API or the shared one.
fn queue_mix(conn: &mut Connection, shared: bool) {
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let text = "ä€😀".repeat(3_000);
    let small = vec![7u8; 300];
    if shared {
        conn.send_binary_bytes(&big.into()).unwrap();
        conn.ping(b"between").unwrap();
        conn.send_text_bytes(&text.into()).unwrap();
        conn.send_binary_bytes(&small.into()).unwrap();
    } else {
        conn.send_binary(&big).unwrap();
        conn.ping(b"between").unwrap();
        conn.send_text(&text).unwrap();
        conn.send_binary(&small).unwrap();
    }
}

#[test]
fn shared_payloads_go_out_as_the_copied_ones_would() {
    for frame_size in [usize::MAX >> 1, 16 * 1024, 9_000] {
        let config = Config::default().outgoing_frame_size(frame_size);
        let now = Instant::now();
        let mut copied = Connection::new(Role::Server, config.clone(), now).unwrap();
        let mut shared = Connection::new(Role::Server, config, now).unwrap();
        queue_mix(&mut copied, false);
        queue_mix(&mut shared, true);
        let expected = transmit(&mut copied);
        assert_eq!(shared.buffered_amount(), expected.len());
        // Drain with vectored writes of an awkward size, as a short-writing socket would.
        let mut got = Vec::new();
        loop {
            let mut slices = [std::io::IoSlice::new(&[]); 3];
            let filled = shared.poll_transmit_vectored(&mut slices);
            if filled == 0 {
                break;
            }
            let mut budget = 4_099;
            for slice in &slices[..filled] {
                let take = budget.min(slice.len());
                got.extend_from_slice(&slice[..take]);
                budget -= take;
            }
            shared.advance_transmit(4_099 - budget);
            assert_eq!(shared.buffered_amount(), expected.len() - got.len());
        }
        assert_eq!(got, expected, "frame size {frame_size}");
        assert!(shared.poll_transmit().is_none());
    }
}

#[test]
fn shared_payloads_reach_a_peer_and_take_transmit_joins_them() {
    let (mut s, now) = server();
    queue_mix(&mut s, true);
    let wire = s.take_transmit();
    assert_eq!(s.buffered_amount(), 0);
    let (mut c, _) = client();
    c.handle_input(&wire, now).unwrap();
    let got = events(&mut c);
    assert_eq!(got.len(), 4);
    assert!(matches!(&got[0], Event::Binary(b) if b.len() == 100_000 && b[250] == 250));
    assert_eq!(got[1], Event::Ping(b"between"[..].into()));
    assert!(matches!(&got[2], Event::Text(t) if t.as_str() == "ä€😀".repeat(3_000)));

    // A client masks, so it copies; the server decodes the result.
    let (mut c, _) = client();
    queue_mix(&mut c, true);
    let wire = transmit(&mut c);
    let (mut s, _) = server();
    s.handle_input(&wire, now).unwrap();
    assert_eq!(events(&mut s).len(), 4);
}

#[test]
fn shared_payload_is_flushed_before_shutdown() {
    let (mut s, now) = server();
    s.send_binary_bytes(&vec![1u8; 50_000].into()).unwrap();
    s.handle_input(&masked(0x88, &1000u16.to_be_bytes()), now).unwrap();
    assert!(!s.should_shutdown(), "the payload and the close reply are still queued");
    let out = transmit(&mut s);
    assert_eq!(out.len(), 4 + 50_000 + 4);
    assert!(s.should_shutdown());
}

#[test]
fn seeded_client_output_is_reproducible() {
    let out = || {
        let (mut c, _) = client();
        c.send_text("same bytes").unwrap();
        transmit(&mut c)
    };
    assert_eq!(out(), out());
}

// ---- rejection paths ---------------------------------------------------------------------------

#[test]
fn server_receives_unmasked_frame_closes_1002() {
    assert_server_fails(&[0x81, 0x01, b'a'], ProtocolError::UnmaskedFrame);
}

#[test]
fn client_receives_masked_frame_closes_1002() {
    let (mut conn, now) = client();
    assert_eq!(conn.handle_input(&masked(0x81, b"a"), now), Err(ProtocolError::MaskedFrame));
    let out = transmit(&mut conn);
    assert_eq!(out[0], 0x88);
    assert_eq!(out[1] & 0x80, 0x80, "the client's close frame is masked");
    assert!(conn.should_shutdown(), "a failing client closes the transport itself (7.1.7)");
}

#[test]
fn server_receives_rsv_bits_without_extension_closes_1002() {
    for rsv in [0x40u8, 0x20, 0x10, 0x70] {
        assert_server_fails(&masked(0x81 | rsv, b"a"), ProtocolError::ReservedBits(rsv >> 4));
    }
}

#[test]
fn server_receives_reserved_opcode_closes_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_server_fails(&masked(0x80 | op, b""), ProtocolError::ReservedOpcode(op));
    }
}

#[test]
fn server_receives_64_bit_length_with_top_bit_closes_1002() {
    assert_server_fails(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], ProtocolError::InvalidLength);
}

#[test]
fn server_receives_control_frame_over_125_bytes_closes_1002() {
    assert_server_fails(&masked(0x89, &[0; 126]), ProtocolError::ControlFrameTooLong);
}

#[test]
fn server_receives_fragmented_control_frame_closes_1002() {
    assert_server_fails(&masked(0x09, b"x"), ProtocolError::FragmentedControlFrame);
}

#[test]
fn server_receives_continuation_without_start_closes_1002() {
    assert_server_fails(&masked(0x80, b"x"), ProtocolError::UnexpectedContinuation);
}

#[test]
fn server_receives_new_data_frame_inside_fragmented_message_closes_1002() {
    let mut bytes = masked(0x01, b"a");
    bytes.extend(masked(0x82, b"b"));
    assert_server_fails(&bytes, ProtocolError::ExpectedContinuation);
}

#[test]
fn server_receives_close_with_one_byte_payload_closes_1002() {
    assert_server_fails(&masked(0x88, &[0x03]), ProtocolError::InvalidClosePayload);
}

#[test]
fn server_receives_close_with_invalid_code_closes_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_server_fails(&masked(0x88, &code.to_be_bytes()), ProtocolError::InvalidCloseCode(code));
    }
}

#[test]
fn server_receives_close_with_invalid_utf8_reason_closes_1007() {
    assert_server_fails(&masked(0x88, &[0x03, 0xE8, 0xFF]), ProtocolError::InvalidCloseReason);
}

#[test]
fn server_receives_invalid_utf8_text_closes_1007() {
    assert_server_fails(&masked(0x81, &[b'a', 0xFF, b'b']), ProtocolError::InvalidUtf8);
}

#[test]
fn invalid_utf8_fails_fast_before_the_frame_ends() {
    let (mut conn, now) = server();
    // A 1000-byte text frame whose third byte can no longer be UTF-8; only 10 bytes arrive.
    let mut payload = vec![b'a'; 1000];
    payload[2] = 0xC0;
    let frame = masked(0x81, &payload);
    assert_eq!(conn.handle_input(&frame[..8 + 10], now), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn invalid_utf8_fails_fast_in_a_fragment_before_the_message_ends() {
    let (mut conn, now) = server();
    conn.handle_input(&masked(0x01, "κόσμε".as_bytes()), now).unwrap();
    // 0xF4 0x90 is past U+10FFFF: invalid at once although the message is not finished.
    assert_eq!(conn.handle_input(&masked(0x00, &[0xF4, 0x90]), now), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn utf8_split_across_fragments_is_accepted() {
    let (mut conn, now) = server();
    let text = "κόσμε";
    let b = text.as_bytes();
    conn.handle_input(&masked(0x01, &b[..1]), now).unwrap();
    conn.handle_input(&masked(0x00, &b[1..4]), now).unwrap();
    conn.handle_input(&masked(0x80, &b[4..]), now).unwrap();
    assert_eq!(events(&mut conn), [Event::Text(text.into())]);
}

#[test]
fn text_message_ending_mid_character_closes_1007() {
    assert_server_fails(&masked(0x81, &[0xCE]), ProtocolError::InvalidUtf8);
}

#[test]
fn frame_over_max_frame_size_closes_1009_before_payload_is_buffered() {
    let now = Instant::now();
    let mut conn = Connection::new(Role::Server, Config::default().max_frame_size(100), now).unwrap();
    // Only the header of a 4 GiB frame: rejected from the header alone.
    let header = [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_eq!(conn.handle_input(&header, now), Err(ProtocolError::FrameTooLarge { size: 1 << 32, max: 100 }));
    let out = transmit(&mut conn);
    assert_eq!(&out[..4], &[0x88, 0x11, 0x03, 0xF1], "close 1009");
}

#[test]
fn message_over_max_message_size_closes_1009() {
    let now = Instant::now();
    let config = Config::default().max_frame_size(100).max_message_size(150);
    let mut conn = Connection::new(Role::Server, config, now).unwrap();
    conn.handle_input(&masked(0x02, &[0; 100]), now).unwrap();
    let next = masked(0x80, &[0; 51]);
    assert_eq!(conn.handle_input(&next[..8], now), Err(ProtocolError::MessageTooLarge { size: 151, max: 150 }));
}

#[test]
fn message_exactly_at_the_limits_is_accepted() {
    let now = Instant::now();
    let config = Config::default().max_frame_size(100).max_message_size(150);
    let mut conn = Connection::new(Role::Server, config, now).unwrap();
    conn.handle_input(&masked(0x02, &[7; 100]), now).unwrap();
    conn.handle_input(&masked(0x80, &[7; 50]), now).unwrap();
    match events(&mut conn).as_slice() {
        [Event::Binary(b)] => assert_eq!(b.len(), 150),
        other => panic!("{other:?}"),
    }
}

// ---- control frames ------------------------------------------------------------------------------

#[test]
fn ping_is_answered_with_pong_carrying_the_same_payload() {
    let (mut conn, now) = server();
    conn.handle_input(&masked(0x89, b"are you there"), now).unwrap();
    let mut expected = vec![0x8A, 13];
    expected.extend_from_slice(b"are you there");
    assert_eq!(transmit(&mut conn), expected);
}

#[test]
fn every_ping_gets_its_own_pong() {
    let (mut conn, now) = server();
    let mut pings = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10u8 {
        pings.extend(masked(0x89, &[i; 3]));
        expected.extend([0x8A, 3, i, i, i]);
    }
    conn.handle_input(&pings, now).unwrap();
    assert_eq!(transmit(&mut conn), expected);
}

#[test]
fn ping_flood_from_a_peer_that_does_not_read_is_bounded_and_answers_the_latest() {
    let (mut conn, now) = server();
    let mut flood = Vec::new();
    for i in 0..5000u32 {
        let mut payload = [0u8; 125];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        flood.extend(masked(0x89, &payload));
    }
    conn.handle_input(&flood, now).unwrap();
    assert!(conn.buffered_amount() < 70 * 1024, "output stays bounded: {}", conn.buffered_amount());
    let out = transmit(&mut conn);
    let last = &out[out.len() - 127..];
    assert_eq!(&last[..2], &[0x8A, 125]);
    assert_eq!(&last[2..6], &4999u32.to_be_bytes(), "the latest ping is answered");
}

#[test]
fn messages_before_a_violation_are_delivered_and_replies_precede_the_close() {
    let (mut conn, now) = server();
    let mut bytes = masked(0x81, b"first");
    bytes.extend(masked(0xA1, b"rsv bits set"));
    bytes.extend(masked(0x89, b"never answered"));
    assert_eq!(conn.handle_input(&bytes, now), Err(ProtocolError::ReservedBits(2)));
    assert!(conn.poll_transmit().is_none(), "the close waits for the earlier events");
    assert_eq!(conn.poll_event(), Some(Event::Text("first".into())));
    conn.send_text("first").unwrap();
    assert!(matches!(conn.poll_event(), Some(Event::Closed(Closed { clean: false, .. }))));
    assert_eq!(conn.poll_event(), None);
    let out = transmit(&mut conn);
    assert_eq!(&out[..7], &[0x81, 5, b'f', b'i', b'r', b's', b't']);
    assert_eq!(&out[7..11], &[0x88, out[8], 0x03, 0xEA], "then close 1002");
    assert_eq!(out.len(), 9 + usize::from(out[8]), "and nothing else: the ping is not answered");
    assert!(conn.should_shutdown());
}

#[test]
fn eof_after_a_pending_violation_reports_the_violation() {
    let (mut conn, now) = server();
    let mut bytes = masked(0x81, b"first");
    bytes.extend(masked(0x83, b""));
    assert!(conn.handle_input(&bytes, now).is_err());
    conn.handle_eof(now);
    let evs = events(&mut conn);
    assert_eq!(evs[0], Event::Text("first".into()));
    assert!(matches!(
        &evs[1],
        Event::Closed(Closed { failure: Some(Failure::Protocol(ProtocolError::ReservedOpcode(3))), .. })
    ));
    assert_eq!(evs.len(), 2);
}

#[test]
fn pings_are_not_answered_when_auto_pong_is_off() {
    let now = Instant::now();
    let mut conn = Connection::new(Role::Server, Config::default().auto_pong(false), now).unwrap();
    conn.handle_input(&masked(0x89, b"x"), now).unwrap();
    assert!(conn.poll_transmit().is_none());
    assert_eq!(events(&mut conn), [Event::Ping(bytes::Bytes::from_static(b"x"))]);
}

#[test]
fn control_frames_interleave_with_a_fragmented_message() {
    let (mut conn, now) = server();
    let mut bytes = masked(0x01, b"he");
    bytes.extend(masked(0x89, b"p"));
    bytes.extend(masked(0x80, b"llo"));
    conn.handle_input(&bytes, now).unwrap();
    assert_eq!(events(&mut conn), [Event::Ping(bytes::Bytes::from_static(b"p")), Event::Text("hello".into())]);
}

#[test]
fn ping_with_payload_over_125_bytes_is_refused_locally() {
    let (mut conn, _) = server();
    assert_eq!(conn.ping(&[0; 126]), Err(SendError::ControlPayloadTooLong(126)));
    assert!(conn.poll_transmit().is_none());
}

// ---- sending -----------------------------------------------------------------------------------

#[test]
fn large_message_is_split_by_outgoing_frame_size() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, Config::default().outgoing_frame_size(4), now).unwrap();
    s.send_binary(b"0123456789").unwrap();
    let out = transmit(&mut s);
    assert_eq!(out, [&[0x02, 4][..], b"0123", &[0x00, 4], b"4567", &[0x80, 2], b"89"].concat());
    let (mut c, _) = client();
    c.handle_input(&out, now).unwrap();
    assert_eq!(events(&mut c), [Event::Binary(bytes::Bytes::from_static(b"0123456789"))]);
}

#[test]
fn send_fragment_streams_a_text_message_split_inside_a_character() {
    let (mut s, now) = server();
    let b = "κόσμε".as_bytes();
    s.send_fragment(MessageKind::Text, &b[..1], false).unwrap();
    assert_eq!(s.send_text("no"), Err(SendError::FragmentedMessageInProgress));
    assert_eq!(s.send_fragment(MessageKind::Binary, b"x", false), Err(SendError::FragmentKindMismatch));
    s.ping(b"between").unwrap();
    s.send_fragment(MessageKind::Text, &b[1..], true).unwrap();
    let out = transmit(&mut s);
    let (mut c, _) = client();
    c.handle_input(&out, now).unwrap();
    assert_eq!(events(&mut c), [Event::Ping(bytes::Bytes::from_static(b"between")), Event::Text("κόσμε".into())]);
}

#[test]
fn is_sending_fragmented_from_the_first_fragment_until_the_last_or_a_close() {
    let (mut s, now) = server();
    assert!(!s.is_sending_fragmented());
    s.send_fragment(MessageKind::Binary, b"a", false).unwrap();
    assert!(s.is_sending_fragmented());
    s.send_fragment(MessageKind::Binary, b"b", true).unwrap();
    assert!(!s.is_sending_fragmented(), "the last fragment ends it");
    s.send_binary(b"whole").unwrap();
    s.send_fragment(MessageKind::Text, b"c", false).unwrap();
    s.close(CloseCode::NORMAL, "", now).unwrap();
    assert!(!s.is_sending_fragmented(), "a sent close ends sending altogether");
}

#[test]
fn a_close_timeout_drops_output_a_peer_never_read_and_lets_the_transport_shut() {
    let (mut s, now) = server();
    s.send_binary(&[1; 1000]).unwrap();
    s.close(CloseCode::NORMAL, "", now).unwrap();
    assert!(s.buffered_amount() > 1000, "nothing was written: the peer does not read");
    let deadline = s.poll_timeout().expect("the close timeout is armed");
    s.handle_timeout(deadline);
    assert_eq!(s.buffered_amount(), 0);
    assert!(s.should_shutdown());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_protocol_failure_waits_at_most_the_close_timeout_for_its_close_frame_to_be_written() {
    let (mut s, now) = server();
    assert!(s.handle_input(&[0x81, 0x00], now).is_err(), "an unmasked frame from a client");
    assert!(!s.should_shutdown(), "the close frame waits to be written");
    let deadline = s.poll_timeout().expect("the close timeout is armed");
    s.handle_timeout(deadline);
    assert!(s.should_shutdown(), "given up on a peer that does not read");
}

#[test]
fn send_fragment_refuses_invalid_utf8_and_keeps_the_message_open() {
    let (mut s, _) = server();
    s.send_fragment(MessageKind::Text, b"ok", false).unwrap();
    assert_eq!(s.send_fragment(MessageKind::Text, &[0xFF], false), Err(SendError::InvalidUtf8));
    assert_eq!(s.send_fragment(MessageKind::Text, &[0xCE], true), Err(SendError::InvalidUtf8));
    s.send_fragment(MessageKind::Text, b"!", true).unwrap();
}

#[test]
fn buffered_amount_counts_queued_bytes_until_written() {
    let (mut s, _) = server();
    assert_eq!(s.buffered_amount(), 0);
    s.send_binary(&[0; 1000]).unwrap();
    assert_eq!(s.buffered_amount(), 1004);
    s.advance_transmit(500);
    assert_eq!(s.buffered_amount(), 504);
    s.advance_transmit(10_000);
    assert_eq!(s.buffered_amount(), 0);
}

// ---- close lifecycle ---------------------------------------------------------------------------

#[test]
fn peer_close_is_echoed_and_server_shuts_transport() {
    let (mut conn, now) = server();
    conn.send_text("before").unwrap();
    conn.handle_input(&masked(0x88, &[0x03, 0xE8, b'b', b'y', b'e']), now).unwrap();
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.should_shutdown(), "output must be flushed first");
    let out = transmit(&mut conn);
    assert_eq!(&out[out.len() - 4..], &[0x88, 0x02, 0x03, 0xE8], "the code is echoed after queued data");
    assert!(conn.should_shutdown());
    assert_eq!(
        events(&mut conn),
        [Event::Closed(Closed {
            clean: true,
            code: CloseCode::NORMAL,
            reason: "bye".into(),
            initiator: Some(Initiator::Peer),
            failure: None
        })]
    );
    assert_eq!(conn.send_text("after"), Err(SendError::Closed));
    assert_eq!(conn.close(CloseCode::NORMAL, "", now), Err(SendError::Closed));
}

#[test]
fn empty_close_is_echoed_empty_and_reported_as_1005() {
    let (mut conn, now) = server();
    conn.handle_input(&masked(0x88, &[]), now).unwrap();
    assert_eq!(transmit(&mut conn), [0x88, 0x00]);
    match events(&mut conn).as_slice() {
        [Event::Closed(c)] => assert_eq!((c.clean, c.code), (true, CloseCode::NO_STATUS)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bytes_after_the_peer_close_are_discarded() {
    let (mut conn, now) = server();
    let mut bytes = masked(0x88, &[0x03, 0xE8]);
    bytes.extend(masked(0x81, b"ghost"));
    bytes.extend([0xFF; 10]);
    conn.handle_input(&bytes, now).unwrap();
    assert!(matches!(events(&mut conn).as_slice(), [Event::Closed(_)]));
}

#[test]
fn local_close_waits_for_the_peer_and_delivers_messages_meanwhile() {
    let (mut conn, now) = server();
    conn.close(CloseCode::GOING_AWAY, "shutting down", now).unwrap();
    assert_eq!(conn.state(), State::Closing);
    let out = transmit(&mut conn);
    assert_eq!(&out[..4], &[0x88, 15, 0x03, 0xE9]);
    assert!(!conn.should_shutdown());
    assert_eq!(conn.send_binary(b"x"), Err(SendError::Closed));
    conn.handle_input(&masked(0x82, b"late"), now).unwrap();
    conn.handle_input(&masked(0x88, &[0x03, 0xE9]), now).unwrap();
    assert!(conn.poll_transmit().is_none(), "the peer's close is not echoed again");
    assert!(conn.should_shutdown());
    let evs = events(&mut conn);
    assert_eq!(evs[0], Event::Binary(bytes::Bytes::from_static(b"late")));
    assert!(matches!(&evs[1], Event::Closed(c) if c.clean && c.initiator == Some(Initiator::Local)));
}

#[test]
fn close_refuses_codes_that_may_not_be_sent() {
    let (mut conn, now) = server();
    for code in [0u16, 1004, 1005, 1006, 1015, 2000, 5000] {
        assert_eq!(conn.close(CloseCode::new(code), "", now), Err(SendError::InvalidCloseCode(code)));
    }
    assert_eq!(conn.close(CloseCode::NORMAL, &"x".repeat(124), now), Err(SendError::CloseReasonTooLong(124)));
    assert_eq!(conn.state(), State::Open);
}

#[test]
fn close_timeout_fails_a_closing_connection_with_1006() {
    let (mut conn, now) = server();
    conn.close(CloseCode::NORMAL, "", now).unwrap();
    let deadline = conn.poll_timeout().unwrap();
    assert_eq!(deadline, now + Config::default().close_timeout);
    conn.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(conn.state(), State::Closing, "an early call changes nothing");
    conn.handle_timeout(deadline);
    conn.handle_timeout(deadline + Duration::from_secs(100));
    let _ = transmit(&mut conn);
    assert!(conn.should_shutdown());
    match events(&mut conn).as_slice() {
        [Event::Closed(c)] => {
            assert_eq!((c.clean, c.code, c.failure.clone()), (false, CloseCode::ABNORMAL, Some(Failure::CloseTimeout)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_after_clean_close_waits_for_server_eof() {
    let (mut conn, now) = client();
    conn.handle_input(&[0x88, 0x02, 0x03, 0xE8], now).unwrap();
    let _ = transmit(&mut conn);
    assert!(!conn.should_shutdown(), "the server closes TCP first (7.1.1)");
    conn.handle_eof(now);
    assert!(conn.should_shutdown());
}

#[test]
fn client_after_clean_close_shuts_down_when_server_never_closes() {
    let (mut conn, now) = client();
    conn.handle_input(&[0x88, 0x02, 0x03, 0xE8], now).unwrap();
    let _ = transmit(&mut conn);
    let deadline = conn.poll_timeout().unwrap();
    conn.handle_timeout(deadline);
    assert!(conn.should_shutdown());
    assert!(conn.poll_timeout().is_none());
}

#[test]
fn eof_before_close_reports_transport_closed_1006() {
    let (mut conn, now) = server();
    conn.handle_input(&masked(0x81, b"partial")[..5], now).unwrap();
    conn.handle_eof(now);
    assert!(conn.should_shutdown());
    match events(&mut conn).as_slice() {
        [Event::Closed(c)] => {
            assert_eq!((c.code, c.failure.clone()), (CloseCode::ABNORMAL, Some(Failure::TransportClosed)))
        }
        other => panic!("{other:?}"),
    }
}

// ---- keepalive ---------------------------------------------------------------------------------

/// A server that pings every 10 s and waits 15 s for a sign of life.
fn keepalive_server() -> (Connection, Instant) {
    let now = Instant::now();
    let config = Config::default().ping_period(Some(secs(10))).pong_wait(secs(15));
    (Connection::new(Role::Server, config, now).unwrap(), now)
}

#[test]
fn keepalive_pings_on_interval_and_fails_a_silent_peer() {
    let (mut conn, now) = keepalive_server();
    assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(10)));
    conn.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(transmit(&mut conn), [0x89, 0x00]);
    // The pong deadline (t=25) stays; the next ping (t=20) comes first.
    assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(20)));
    conn.handle_timeout(now + Duration::from_secs(20));
    assert_eq!(transmit(&mut conn), [0x89, 0x00]);
    assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(25)));
    conn.handle_timeout(now + Duration::from_secs(25));
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_shutdown());
    assert!(matches!(
        events(&mut conn).as_slice(),
        [Event::Closed(Closed { failure: Some(Failure::PeerUnresponsive), .. })]
    ));
}

#[test]
fn keepalive_any_received_bytes_prove_the_peer_alive() {
    let (mut conn, now) = keepalive_server();
    conn.handle_timeout(now + Duration::from_secs(10));
    let _ = transmit(&mut conn);
    conn.handle_input(&masked(0x8A, b""), now + Duration::from_secs(11)).unwrap();
    assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(20)), "pong deadline cleared");
}

#[test]
fn read_timeout_fails_a_connection_that_receives_nothing() {
    let now = Instant::now();
    let mut conn = Connection::new(
        Role::Server,
        Config::default().ping_period(None).read_timeout(Some(Duration::from_secs(30))),
        now,
    )
    .unwrap();
    conn.handle_input(&masked(0x81, b"hi"), now + Duration::from_secs(20)).unwrap();
    assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(50)));
    conn.handle_timeout(now + Duration::from_secs(49));
    assert_eq!(conn.state(), State::Open);
    conn.handle_timeout(now + Duration::from_secs(50));
    assert!(matches!(
        events(&mut conn).last(),
        Some(Event::Closed(Closed { failure: Some(Failure::ReadTimeout), .. }))
    ));
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn paused_reading_holds_the_pong_deadline_while_pings_go_on() {
    let (mut conn, now) = keepalive_server();
    conn.handle_timeout(now + secs(10));
    assert_eq!(transmit(&mut conn), [0x89, 0x00]);
    // The pong deadline is t=25; the application falls behind at t=12 and catches up at t=100.
    conn.handle_read_paused(now + secs(12));
    assert!(conn.is_read_paused());
    // Only the next ping is due while paused: the pong deadline does not wake the driver.
    assert_eq!(conn.poll_timeout(), Some(now + secs(20)));
    for t in (20..=100).step_by(10) {
        conn.handle_timeout(now + secs(t));
        assert_eq!(conn.state(), State::Open, "failed at t={t} while reading was paused");
        assert_eq!(transmit(&mut conn), [0x89, 0x00], "keepalive ping at t={t}");
    }
    assert!(events(&mut conn).is_empty());
    conn.handle_read_resumed(now + secs(100));
    assert!(!conn.is_read_paused());
    // 2 s of the pong wait had passed at the pause (10 s to 12 s): 13 s remain from t=100.
    assert_eq!(conn.poll_timeout(), Some(now + secs(110)), "the next ping comes first");
    conn.handle_timeout(now + secs(110));
    let _ = transmit(&mut conn);
    assert_eq!(conn.poll_timeout(), Some(now + secs(113)));
    conn.handle_timeout(now + secs(112));
    assert_eq!(conn.state(), State::Open);
    conn.handle_timeout(now + secs(113));
    assert!(matches!(
        events(&mut conn).as_slice(),
        [Event::Closed(Closed { failure: Some(Failure::PeerUnresponsive), .. })]
    ));
}

#[test]
fn paused_reading_then_the_unread_pong_keeps_the_peer() {
    let (mut conn, now) = keepalive_server();
    conn.handle_read_paused(now + secs(1));
    // The first ping goes out during the pause: its wait starts when reading resumes.
    conn.handle_timeout(now + secs(10));
    assert_eq!(transmit(&mut conn), [0x89, 0x00]);
    conn.handle_timeout(now + secs(60));
    conn.handle_read_resumed(now + secs(60));
    conn.handle_timeout(now + secs(60));
    assert_eq!(conn.state(), State::Open);
    // The peer's pong, waiting in the transport since t=10, is read now.
    conn.handle_input(&masked(0x8A, b""), now + secs(60)).unwrap();
    assert!(matches!(events(&mut conn).as_slice(), [Event::Pong(_)]));
    conn.handle_timeout(now + secs(75));
    assert_eq!(conn.state(), State::Open, "the pong cleared the deadline");
}

#[test]
fn paused_reading_holds_the_idle_deadline() {
    let now = Instant::now();
    let mut conn =
        Connection::new(Role::Server, Config::default().ping_period(None).read_timeout(Some(secs(30))), now).unwrap();
    conn.handle_input(&masked(0x81, b"hi"), now + secs(20)).unwrap();
    // Pausing twice keeps the first pause's start.
    conn.handle_read_paused(now + secs(40));
    conn.handle_read_paused(now + secs(45));
    assert_eq!(conn.poll_timeout(), None, "nothing is due while paused");
    conn.handle_timeout(now + secs(500));
    assert_eq!(conn.state(), State::Open);
    conn.handle_read_resumed(now + secs(500));
    // 20 s of the 30 s had passed at the pause: 10 s remain.
    assert_eq!(conn.poll_timeout(), Some(now + secs(510)));
    conn.handle_read_resumed(now + secs(505));
    assert_eq!(conn.poll_timeout(), Some(now + secs(510)), "a resume without a pause changes nothing");
    conn.handle_timeout(now + secs(510));
    assert!(matches!(
        events(&mut conn).last(),
        Some(Event::Closed(Closed { failure: Some(Failure::ReadTimeout), .. }))
    ));
}

#[test]
fn paused_reading_does_not_hold_the_close_timeout() {
    let (mut conn, now) = server();
    conn.handle_read_paused(now);
    conn.close(CloseCode::NORMAL, "", now).unwrap();
    let _ = transmit(&mut conn);
    let deadline = conn.poll_timeout().expect("the close timeout is armed");
    conn.handle_timeout(deadline);
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_shutdown());
}

#[test]
fn invalid_config_is_refused_at_construction() {
    let config = Config::default().ping_period(Some(Duration::from_secs(60)));
    assert!(Connection::new(Role::Server, config, Instant::now()).is_err());
}

#[test]
fn buffers_are_given_back_once_empty() {
    let (mut conn, now) = server();
    assert_eq!(conn.buffer_capacity(), 0, "a new connection holds no buffers");
    let frame = masked(0x82, &[7; 70_000]);
    conn.handle_input(&frame[..40_000], now).unwrap();
    conn.release_input_buffers(0);
    assert!(conn.buffer_capacity() >= 40_000 - 14, "a partial frame keeps its payload bytes");
    conn.handle_input(&frame[40_000..], now).unwrap();
    let _ = events(&mut conn);
    conn.send_binary(&[1; 10_000]).unwrap();
    conn.release_input_buffers(0);
    assert!(conn.buffer_capacity() >= 10_000, "queued output is kept");
    let _ = transmit(&mut conn);
    conn.release_buffers();
    assert_eq!(conn.buffer_capacity(), 0);
}

#[test]
fn small_input_buffers_are_kept_while_busy() {
    /// The address of the payload of the one message `frame` carries.
    fn payload_address(conn: &mut Connection, frame: &[u8], now: Instant) -> usize {
        conn.handle_input(frame, now).unwrap();
        match events(conn).as_slice() {
            [Event::Binary(payload)] => payload.as_ptr() as usize,
            other => panic!("unexpected events {other:?}"),
        }
    }
    let frame = masked(0x82, &[7; 100]);
    for (keep, kept) in [(4096, true), (0, false)] {
        let (mut conn, now) = server();
        let first = payload_address(&mut conn, &frame, now);
        conn.release_input_buffers(keep);
        // Takes the freed block if the buffer was given back, so the next one lands elsewhere.
        let mut decoy = Vec::<u8>::with_capacity(frame.len());
        decoy.push(1);
        let second = payload_address(&mut conn, &frame, now);
        assert_eq!(first == second, kept, "keep {keep}: the next message reuses the buffer only when kept");
        drop(decoy);
    }
}

/// Payload sizes on both sides of the points where the server changes how it takes a frame in:
/// copied with the rest of the input and unmasked in place, or unmasked as it is copied (a frame
/// given alone from 512 bytes, any frame from 8 KiB).
const AROUND_THE_UNMASK_THRESHOLDS: [usize; 8] = [0, 125, 511, 512, 1024, 8191, 8192, 70_000];

#[test]
fn every_way_of_taking_a_frame_in_gives_the_same_message() {
    for len in AROUND_THE_UNMASK_THRESHOLDS {
        let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let binary: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let frames = [masked(0x81, text.as_bytes()), masked(0x82, &binary)];
        let expected = vec![Event::Text(text.clone().into()), Event::Binary(binary.clone().into())];
        // Each frame alone; both in one input; byte by byte at the seam.
        let (mut conn, now) = server();
        for frame in &frames {
            conn.handle_input(frame, now).unwrap();
        }
        assert_eq!(events(&mut conn), expected, "{len} bytes, one frame per input");
        let (mut conn, now) = server();
        conn.handle_input(&frames.concat(), now).unwrap();
        assert_eq!(events(&mut conn), expected, "{len} bytes, both frames in one input");
        let (mut conn, now) = server();
        let all = frames.concat();
        let split = frames[0].len() - 1;
        conn.handle_input(&all[..split], now).unwrap();
        conn.handle_input(&all[split..], now).unwrap();
        assert_eq!(events(&mut conn), expected, "{len} bytes, split one byte before the seam");
    }
}

#[test]
fn invalid_utf8_fails_whichever_way_the_frame_comes_in() {
    for len in AROUND_THE_UNMASK_THRESHOLDS.into_iter().filter(|&len| len > 0) {
        let mut payload = vec![b'a'; len];
        payload[len / 2] = 0xff;
        assert_server_fails(&masked(0x81, &payload), ProtocolError::InvalidUtf8);
        // After a good frame in the same input: the good message is delivered first, and the
        // close frame (1007) follows once it has been taken.
        let mut both = masked(0x82, b"first");
        both.extend_from_slice(&masked(0x81, &payload));
        let (mut conn, now) = server();
        assert_eq!(conn.handle_input(&both, now), Err(ProtocolError::InvalidUtf8), "{len} bytes");
        let evs = events(&mut conn);
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert_eq!(evs[0], Event::Binary(b"first".as_slice().into()));
        assert!(matches!(&evs[1], Event::Closed(Closed { code: CloseCode::INVALID_PAYLOAD, .. })), "{evs:?}");
        let out = transmit(&mut conn);
        assert_eq!(out[0], 0x88, "a close frame: {out:?}");
        assert_eq!(usize::from(out[1]), out.len() - 2, "unmasked, and nothing after it: {out:?}");
        assert_eq!(&out[2..4], &[0x03, 0xef], "code 1007");
        assert!(conn.should_shutdown());
    }
}
