//! permessage-deflate (RFC 7692) through the handshake and the connection: the section 7.2.3
//! examples on the wire, reserved-bit rules, limits, and round trips over every window and
//! context-takeover combination.

use std::time::Instant;

use ferrule_core::handshake::{
    ClientHandshake, ClientRequest, HandshakeError, HeaderError, Limits, OriginPolicy, ServerHandshake, ServerPolicy,
};
use ferrule_core::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Entropy, Event, FrameHeader, MessageKind, OpCode,
    PerMessageDeflate, ProtocolError, Role, apply_mask,
};

/// A client and a server connected through the real handshake, each with its deflate settings.
fn negotiated(
    client: Option<DeflateConfig>,
    server: Option<DeflateConfig>,
    config: Config,
) -> Result<(Connection, Connection), HandshakeError> {
    let now = Instant::now();
    let request = ClientRequest::new("ws://example.com/").unwrap().deflate(client).unwrap();
    let mut client_hs = ClientHandshake::new(request, &mut Entropy::from_seed([1; 32]), Limits::default(), now);
    let mut server_hs = ServerHandshake::new(Limits::default(), now);
    let request = server_hs.handle_input(client_hs.request_bytes())?.expect("a whole request");
    let response = ServerPolicy::default().origin(OriginPolicy::InsecureAllowAny).deflate(server).accept(&request)?;
    client_hs.handle_input(&response.to_bytes())?.expect("a whole response");
    let (server_conn, _) = server_hs.into_connection(&response, config.clone(), now).unwrap();
    let (client_conn, _) = client_hs.into_connection(config.rng_seed(Some([2; 32])), now).unwrap();
    Ok((client_conn, server_conn))
}

/// Moves everything `from` has to write into `to`, and returns `to`'s events.
fn pump(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    let now = Instant::now();
    while let Some(bytes) = from.poll_transmit() {
        let bytes = bytes.to_vec();
        from.advance_transmit(bytes.len());
        let _ = to.handle_input(&bytes, now);
    }
    std::iter::from_fn(|| to.poll_event()).collect()
}

/// Frames written by `conn`, unmasked: (header, payload).
fn written_frames(conn: &mut Connection) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut bytes = Vec::new();
    while let Some(out) = conn.poll_transmit() {
        bytes.extend_from_slice(out);
        let n = out.len();
        conn.advance_transmit(n);
    }
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while let Some((header, len)) = FrameHeader::decode(rest).unwrap() {
        let end = len + header.payload_len as usize;
        let mut payload = rest[len..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key);
        }
        frames.push((header, payload));
        rest = &rest[end..];
    }
    frames
}

/// A client connection with permessage-deflate and the given parameters, as if negotiated.
fn client_with(params: DeflateParams, config: Config) -> Connection {
    let deflate = PerMessageDeflate::new(params, DeflateConfig::default().min_compress_size(0)).unwrap();
    Connection::with_deflate(Role::Client, config, Some(deflate), Instant::now()).unwrap()
}

fn server_with(params: DeflateParams, config: Config) -> Connection {
    let deflate = PerMessageDeflate::new(params, DeflateConfig::default().min_compress_size(0)).unwrap();
    Connection::with_deflate(Role::Server, config, Some(deflate), Instant::now()).unwrap()
}

fn events(conn: &mut Connection, input: &[u8]) -> (Result<(), ProtocolError>, Vec<Event>) {
    let result = conn.handle_input(input, Instant::now());
    (result, std::iter::from_fn(|| conn.poll_event()).collect())
}

fn text(s: &str) -> Event {
    Event::Text(s.to_owned().into())
}

fn closed_code(events: &[Event]) -> Option<CloseCode> {
    events.iter().find_map(|e| match e {
        Event::Closed(c) => Some(c.code),
        _ => None,
    })
}

// ---- RFC 7692 section 7.2.3, byte for byte ------------------------------------------------------

#[test]
fn rfc7692_7_2_3_1_hello_in_one_frame_and_in_two() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    assert_eq!(events(&mut c, &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).1, [text("Hello")]);
    let mut c = client_with(DeflateParams::default(), Config::default());
    assert_eq!(events(&mut c, &[0x41, 0x03, 0xf2, 0x48, 0xcd]).1, []);
    assert_eq!(events(&mut c, &[0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]).1, [text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_2_sharing_the_window() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    let first = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let second = [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00];
    assert_eq!(events(&mut c, &[&first[..], &second[..]].concat()).1, [text("Hello"), text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_3_uncompressed_block() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    let frame = [0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(events(&mut c, &frame).1, [text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_4_bfinal_block() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    let frame = [0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(events(&mut c, &frame).1, [text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_5_two_blocks() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    let frame = [0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(events(&mut c, &frame).1, [text("Hello")]);
}

#[test]
fn server_sends_the_rfc_bytes_for_hello_twice_with_context_takeover() {
    let mut s = server_with(DeflateParams::default(), Config::default());
    s.send_text("Hello").unwrap();
    s.send_text("Hello").unwrap();
    let mut wire = Vec::new();
    while let Some(out) = s.poll_transmit() {
        wire.extend_from_slice(out);
        let n = out.len();
        s.advance_transmit(n);
    }
    assert_eq!(wire, [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
}

// ---- reserved bits ------------------------------------------------------------------------------

fn fails_with(conn: &mut Connection, frame: &[u8], error: ProtocolError) {
    let (result, evs) = events(conn, frame);
    assert_eq!(result, Err(error.clone()), "{frame:02x?}");
    assert_eq!(closed_code(&evs), Some(error.close_code()));
}

#[test]
fn client_receives_rsv1_on_a_continuation_closes_1002() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    assert!(events(&mut c, &[0x41, 0x03, 0xf2, 0x48, 0xcd]).0.is_ok());
    fails_with(&mut c, &[0xc0, 0x04, 0xc9, 0xc9, 0x07, 0x00], ProtocolError::ReservedBits(0b100));
}

#[test]
fn client_receives_rsv1_on_control_frames_closes_1002() {
    for opcode in [0x8, 0x9, 0xa] {
        let mut c = client_with(DeflateParams::default(), Config::default());
        fails_with(&mut c, &[0xc0 | opcode, 0x00], ProtocolError::ReservedBits(0b100));
    }
}

#[test]
fn client_receives_rsv2_or_rsv3_with_deflate_closes_1002() {
    for (byte, rsv) in [(0xa1, 0b010), (0x91, 0b001), (0xf1, 0b111)] {
        let mut c = client_with(DeflateParams::default(), Config::default());
        fails_with(&mut c, &[byte, 0x00], ProtocolError::ReservedBits(rsv));
    }
}

#[test]
fn client_receives_rsv1_without_deflate_closes_1002() {
    let mut c = Connection::new(Role::Client, Config::default(), Instant::now()).unwrap();
    fails_with(&mut c, &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], ProtocolError::ReservedBits(0b100));
}

#[test]
fn uncompressed_messages_still_pass_with_deflate_negotiated() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    assert_eq!(events(&mut c, b"\x81\x05Hello").1, [text("Hello")]);
    // Fragments of an uncompressed message, one of them split by a compressed-looking ping.
    assert_eq!(events(&mut c, b"\x01\x02He\x89\x00\x80\x03llo").1, [Event::Ping(Default::default()), text("Hello")]);
}

// ---- payload checks after inflating ---------------------------------------------------------------

#[test]
fn client_receives_compressed_invalid_utf8_closes_1007() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    // A compressed binary message's frame, relabelled as text.
    let mut s = server_with(DeflateParams::default(), Config::default());
    s.send_binary(&[b'a', 0xff, b'b']).unwrap();
    let (mut header, payload) = written_frames(&mut s).remove(0);
    header.opcode = OpCode::Text;
    let mut wire = Vec::new();
    header.encode(&mut wire);
    wire.extend_from_slice(&payload);
    fails_with(&mut c, &wire, ProtocolError::InvalidUtf8);
}

#[test]
fn client_receives_corrupt_deflate_data_closes_1007() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    fails_with(&mut c, &[0xc2, 0x02, 0xff, 0xff], ProtocolError::InvalidCompressedData);
}

#[test]
fn client_receives_a_small_frame_that_inflates_past_the_limit_closes_1009() {
    let limit = 64 * 1024;
    let mut s = server_with(DeflateParams::default(), Config::default());
    s.send_binary(&vec![0u8; 1 << 20]).unwrap();
    let frames = written_frames(&mut s);
    assert!(frames[0].1.len() < 2048, "a MiB of zeroes deflates to {} bytes", frames[0].1.len());
    let mut c = client_with(DeflateParams::default(), Config::default().max_message_size(limit));
    let mut wire = Vec::new();
    frames[0].0.encode(&mut wire);
    wire.extend_from_slice(&frames[0].1);
    let (result, evs) = events(&mut c, &wire);
    assert!(matches!(result, Err(ProtocolError::MessageTooLarge { max, .. }) if max == limit), "{result:?}");
    assert_eq!(closed_code(&evs), Some(CloseCode::MESSAGE_TOO_BIG));
    assert!(c.buffer_capacity() <= limit + wire.len());
}

#[test]
fn a_message_of_exactly_the_limit_inflates() {
    let mut s = server_with(DeflateParams::default(), Config::default());
    let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    s.send_binary(&message).unwrap();
    let mut c = client_with(DeflateParams::default(), Config::default().max_message_size(10_000));
    assert_eq!(pump(&mut s, &mut c), [Event::Binary(message.into())]);
}

// ---- sending --------------------------------------------------------------------------------------

#[test]
fn messages_below_the_threshold_go_uncompressed() {
    let deflate =
        PerMessageDeflate::new(DeflateParams::default(), DeflateConfig::default().min_compress_size(100)).unwrap();
    let mut s = Connection::with_deflate(Role::Server, Config::default(), Some(deflate), Instant::now()).unwrap();
    s.send_text(&"a".repeat(99)).unwrap();
    s.send_text(&"a".repeat(100)).unwrap();
    let frames = written_frames(&mut s);
    assert_eq!(frames[0].0.rsv, 0);
    assert_eq!(frames[0].1.len(), 99);
    assert_eq!(frames[1].0.rsv, 0b100);
    assert!(frames[1].1.len() < 10);
}

#[test]
fn a_compressed_message_split_into_frames_has_rsv1_on_the_first_only() {
    let config = Config::default().outgoing_frame_size(16);
    let mut s = server_with(DeflateParams::default(), config.clone());
    let message: String = (0..2000).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    s.send_text(&message).unwrap();
    let frames = written_frames(&mut s);
    assert!(frames.len() > 2);
    assert_eq!((frames[0].0.rsv, frames[0].0.opcode), (0b100, OpCode::Text));
    assert!(frames[1..].iter().all(|(h, _)| h.rsv == 0 && h.opcode == OpCode::Continuation));
    let mut s = server_with(DeflateParams::default(), config);
    s.send_text(&message).unwrap();
    let mut c = client_with(DeflateParams::default(), Config::default());
    assert_eq!(pump(&mut s, &mut c), [text(&message)]);
}

#[test]
fn a_streamed_message_is_one_compressed_message() {
    let mut c = client_with(DeflateParams::default(), Config::default());
    let mut s = server_with(DeflateParams::default(), Config::default());
    let parts = ["Hello, ", "", "wörld", "! ", "Hello, wörld!"];
    for (i, part) in parts.iter().enumerate() {
        c.send_fragment(MessageKind::Text, part.as_bytes(), i + 1 == parts.len()).unwrap();
        // Control frames may go in between.
        c.ping(b"p").unwrap();
    }
    let frames = written_frames(&mut c);
    let data: Vec<_> = frames.iter().filter(|(h, _)| !h.opcode.is_control()).collect();
    assert_eq!(data.len(), parts.len());
    assert_eq!((data[0].0.rsv, data[0].0.opcode), (0b100, OpCode::Text));
    assert!(data[1..].iter().all(|(h, _)| h.rsv == 0 && h.opcode == OpCode::Continuation));
    let mut wire = Vec::new();
    let mut c = client_with(DeflateParams::default(), Config::default());
    for (i, part) in parts.iter().enumerate() {
        c.send_fragment(MessageKind::Text, part.as_bytes(), i + 1 == parts.len()).unwrap();
    }
    while let Some(out) = c.poll_transmit() {
        wire.extend_from_slice(out);
        let n = out.len();
        c.advance_transmit(n);
    }
    assert_eq!(events(&mut s, &wire).1, [text(&parts.concat())]);
    // The stream goes on: a whole message after it still shares the window.
    c.send_text("Hello, wörld!").unwrap();
    assert_eq!(pump(&mut c, &mut s), [text("Hello, wörld!")]);
}

// ---- negotiation through the handshake ------------------------------------------------------------

#[test]
fn handshake_agrees_and_both_connections_show_the_parameters() {
    let (client, server) =
        negotiated(Some(DeflateConfig::default()), Some(DeflateConfig::default()), Config::default()).unwrap();
    let expected =
        DeflateParams::default().server_no_context_takeover(true).server_max_window_bits(12).client_max_window_bits(12);
    assert_eq!(client.deflate(), Some(&expected));
    assert_eq!(server.deflate(), Some(&expected));
    let (client, server) = negotiated(None, Some(DeflateConfig::default()), Config::default()).unwrap();
    assert_eq!((client.deflate(), server.deflate()), (None, None));
    let (client, server) = negotiated(Some(DeflateConfig::default()), None, Config::default()).unwrap();
    assert_eq!((client.deflate(), server.deflate()), (None, None));
}

/// `server_no_context_takeover` at its default is read per role (RFC 7692 section 7.1.1.1): the
/// client's offer does not ask for it, and a server at its default answers it anyway; a server
/// that keeps its context then keeps it, unless the client set it.
#[test]
fn handshake_client_default_leaves_server_context_takeover_to_the_server() {
    let request = ClientRequest::new("ws://h/").unwrap().deflate(Some(DeflateConfig::default())).unwrap();
    let client = ClientHandshake::new(request, &mut Entropy::from_seed([1; 32]), Limits::default(), Instant::now());
    let offer = String::from_utf8_lossy(client.request_bytes()).into_owned();
    assert!(
        offer.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12; client_max_window_bits=12\r\n"
        ),
        "{offer}"
    );
    let agreed = |client: DeflateConfig, server: DeflateConfig| {
        let (c, s) = negotiated(Some(client), Some(server), Config::default()).unwrap();
        assert_eq!(c.deflate(), s.deflate());
        c.deflate().unwrap().server_no_context_takeover
    };
    let keeping = DeflateConfig::default().server_no_context_takeover(false);
    assert!(agreed(DeflateConfig::default(), DeflateConfig::default()), "the server's default");
    assert!(!agreed(DeflateConfig::default(), keeping.clone()), "the server keeps its context");
    assert!(agreed(DeflateConfig::default().server_no_context_takeover(true), keeping), "asked by the client");
}

#[test]
fn handshake_fails_when_deflate_is_required_and_not_agreed() {
    let required = DeflateConfig::default().required(true);
    let err = negotiated(None, Some(required.clone()), Config::default()).unwrap_err();
    assert_eq!(err, HandshakeError::DeflateRequired);
    assert_eq!(err.response().unwrap().status(), 400);
    assert_eq!(negotiated(Some(required), None, Config::default()).unwrap_err(), HandshakeError::DeflateRequired);
}

#[test]
fn server_response_extensions_header_is_the_policy_s_alone() {
    let now = Instant::now();
    let request = ClientRequest::new("ws://h/").unwrap().deflate(Some(DeflateConfig::default())).unwrap();
    let client = ClientHandshake::new(request, &mut Entropy::from_seed([1; 32]), Limits::default(), now);
    let mut server = ServerHandshake::new(Limits::default(), now);
    let request = server.handle_input(client.request_bytes()).unwrap().unwrap();
    let policy = ServerPolicy::default().origin(OriginPolicy::InsecureAllowAny).deflate(Some(DeflateConfig::default()));
    let mut response = policy.accept(&request).unwrap();
    assert_eq!(
        response.header("Sec-WebSocket-Extensions"),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12")
    );
    assert!(response.deflate().is_some());
    assert_eq!(
        response.insert_header("sec-websocket-extensions", "x").unwrap_err(),
        HeaderError::Reserved("sec-websocket-extensions".into())
    );
    // Removing the header declines: the connection then compresses nothing.
    assert!(response.remove_header("Sec-WebSocket-Extensions"));
    assert!(response.deflate().is_none());
    let (conn, _) = server.into_connection(&response, Config::default(), now).unwrap();
    assert_eq!(conn.deflate(), None);
}

#[test]
fn client_refuses_a_response_its_offer_did_not_allow() {
    let now = Instant::now();
    let request = ClientRequest::new("ws://h/").unwrap().deflate(Some(DeflateConfig::default())).unwrap();
    let mut client = ClientHandshake::new(request, &mut Entropy::from_seed([1; 32]), Limits::default(), now);
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=13\r\n\r\n",
        ferrule_core::handshake::accept_key(client.key().as_bytes())
    );
    let err = client.handle_input(response.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::InvalidDeflateResponse(ferrule_core::handshake::DeflateResponseError::ServerWindowTooLarge {
            offered: 12,
            answered: 13
        })
    );
    assert!(err.response().is_none());
}

// ---- round trips ----------------------------------------------------------------------------------

/// Messages of several sizes, each sent whole and as fragments, both ways, twice (so a kept
/// context is used), through connections that negotiated the given settings.
fn round_trip(client: DeflateConfig, server: DeflateConfig) {
    let (mut c, mut s) = negotiated(Some(client), Some(server), Config::default().outgoing_frame_size(1000)).unwrap();
    let json = |n: usize| -> String {
        (0..n).map(|i| format!("{{\"id\":{i},\"name\":\"user{}\",\"ok\":true}},", i % 13)).collect()
    };
    for round in 0..2 {
        for size in [0, 3, 200, 5000, 70_000] {
            let message = json(size / 40 + round);
            for client_sends in [true, false] {
                let (from, to) = if client_sends { (&mut c, &mut s) } else { (&mut s, &mut c) };
                from.send_text(&message).unwrap();
                from.send_binary(message.as_bytes()).unwrap();
                let third = message.len() / 3;
                from.send_fragment(MessageKind::Text, &message.as_bytes()[..third], false).unwrap();
                from.send_fragment(MessageKind::Text, &message.as_bytes()[third..], true).unwrap();
                let got = pump(from, to);
                assert_eq!(
                    got,
                    [text(&message), Event::Binary(message.clone().into_bytes().into()), text(&message)],
                    "{:?} size {size}",
                    from.role()
                );
            }
        }
    }
}

#[test]
fn round_trips_for_every_window_and_context_takeover() {
    for bits in 8..=15 {
        for (server_nct, client_nct) in [(false, false), (true, false), (false, true), (true, true)] {
            let config = DeflateConfig::default()
                .server_max_window_bits(Some(bits))
                .client_max_window_bits(Some(bits))
                .server_no_context_takeover(server_nct)
                .client_no_context_takeover(client_nct)
                .min_compress_size(0);
            round_trip(config.clone(), config);
        }
    }
}

#[test]
fn round_trips_with_windows_set_by_one_side_only() {
    let open = DeflateConfig::default().server_max_window_bits(None).client_max_window_bits(None);
    for bits in [8, 11, 15] {
        round_trip(
            open.clone(),
            DeflateConfig::default().server_max_window_bits(Some(bits)).client_max_window_bits(Some(bits)),
        );
        round_trip(
            DeflateConfig::default().server_max_window_bits(Some(bits)).client_max_window_bits(Some(bits)),
            open.clone(),
        );
    }
    round_trip(open.clone().client_max_window_bits(Some(15)), open.compression_level(0).memory_level(1));
}

/// Everything `conn` has to write, as bytes.
fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(out) = conn.poll_transmit() {
        wire.extend_from_slice(out);
        let n = out.len();
        conn.advance_transmit(n);
    }
    wire
}

/// Whether RSV1 is set on each frame of a server's (unmasked) output.
fn rsv1_of_frames(mut wire: &[u8]) -> Vec<bool> {
    let mut rsv1 = Vec::new();
    while let Some((header, len)) = FrameHeader::decode(wire).unwrap() {
        rsv1.push(header.rsv & 0b100 != 0);
        wire = &wire[len + header.payload_len as usize..];
    }
    rsv1
}

#[test]
fn write_compression_switches_per_message_and_keeps_the_context() {
    let keeping = DeflateConfig::default().min_compress_size(0).server_no_context_takeover(false);
    let (mut client, mut server) = negotiated(Some(keeping.clone()), Some(keeping), Config::default()).unwrap();
    assert!(server.write_compression());
    let message = "a message long enough to be worth compressing, twice: compressing, compressing";
    let mut sizes = Vec::new();
    for enabled in [true, false, true] {
        server.set_write_compression(enabled);
        assert_eq!(server.write_compression(), enabled);
        server.send_text(message).unwrap();
        let wire = drain(&mut server);
        assert_eq!(rsv1_of_frames(&wire), [enabled]);
        sizes.push(wire.len());
        // The client inflates each with the context the earlier compressed ones left.
        let (result, events) = events(&mut client, &wire);
        assert_eq!(result, Ok(()));
        assert_eq!(events, vec![text(message)]);
    }
    // The second compressed copy refers back to the first: the context outlived the switch.
    assert!(sizes[2] < sizes[0] / 2, "{sizes:?}");
    assert_eq!(sizes[1], 2 + message.len());

    // A streamed message keeps the choice it started with.
    server.send_fragment(MessageKind::Text, b"part one, ", false).unwrap();
    server.set_write_compression(false);
    server.send_fragment(MessageKind::Text, b"part two", true).unwrap();
    let wire = drain(&mut server);
    assert_eq!(rsv1_of_frames(&wire), [true, false]);
    let (result, events) = events(&mut client, &wire);
    assert_eq!(result, Ok(()));
    assert_eq!(events, vec![text("part one, part two")]);
    server.send_text(message).unwrap();
    assert_eq!(rsv1_of_frames(&drain(&mut server)), [false]);
}

#[test]
fn write_compression_is_off_without_the_extension() {
    let (_, mut server) = negotiated(None, Some(DeflateConfig::default()), Config::default()).unwrap();
    assert!(!server.write_compression());
    server.set_write_compression(true);
    assert!(!server.write_compression());
    server.send_text(&"x".repeat(200)).unwrap();
    assert_eq!(rsv1_of_frames(&drain(&mut server)), [false]);
}

#[test]
fn connections_without_context_share_the_thread_s_compressors_and_stay_correct() {
    // Defaults: the servers keep no context, so each borrows a compressor per message; the
    // clients keep theirs, except the second, so the servers borrow one decompressor too.
    let pairs: Vec<_> = [false, true]
        .into_iter()
        .map(|client_no_context| {
            let client = DeflateConfig::default().min_compress_size(0).client_no_context_takeover(client_no_context);
            negotiated(Some(client), Some(DeflateConfig::default().min_compress_size(0)), Config::default()).unwrap()
        })
        .collect();
    let [(mut c1, mut s1), (mut c2, mut s2)] = <[_; 2]>::try_from(pairs).unwrap();
    assert!(s1.deflate().unwrap().server_no_context_takeover && s2.deflate().unwrap().client_no_context_takeover);
    let long = "{\"user\":\"ada\",\"text\":\"hello, hello, hello\"} ".repeat(40);
    // The first server streams a message, holding its compressor across fragments, while the
    // second sends whole messages with compressors lent and given back in between.
    s1.send_fragment(MessageKind::Text, long.as_bytes(), false).unwrap();
    for i in 0..3 {
        s2.send_text(&format!("{long}{i}")).unwrap();
        assert_eq!(pump(&mut s2, &mut c2), [text(&format!("{long}{i}"))]);
        c2.send_text(&format!("{i}{long}")).unwrap();
        assert_eq!(pump(&mut c2, &mut s2), [text(&format!("{i}{long}"))]);
        c1.send_text(&long).unwrap();
        assert_eq!(pump(&mut c1, &mut s1), [text(&long)]);
    }
    s1.send_fragment(MessageKind::Text, b"end", true).unwrap();
    s1.send_text(&long).unwrap();
    assert_eq!(pump(&mut s1, &mut c1), [text(&format!("{long}end")), text(&long)]);
}
