//! Bodies of the cargo-fuzz targets in `fuzz/`, kept here so that `cargo test` replays the
//! committed seed corpora through exactly the same code.
//!
//! Each target's invariant: accept the input or fail with a documented, typed error, never
//! panic, never buffer without bound, and keep the connection's lifecycle rules.

mod http_request;
mod hub_wire;
mod in_memory;

pub use http_request::http_request;
pub use hub_wire::hub_wire;

use std::time::{Duration, Instant};

use ferrule_core::handshake::{
    ClientHandshake, ClientRequest, HandshakeError, Limits, OriginPattern, OriginPolicy, ServerHandshake, ServerPolicy,
};
use std::collections::VecDeque;

use ferrule_core::{
    CloseCode, Config, Connection, DeflateConfig, DeflateParams, Entropy, Event, Failure, FrameHeader, MessageKind,
    OpCode, PerMessageDeflate, Role, State, apply_mask,
};

/// The header-bytes cap the handshake targets use, small so the fuzzer reaches it.
const FUZZ_HEADER_BYTES: usize = 1024;

/// The server's handshake request parser and validator: arbitrary bytes in two pieces.
pub fn handshake_request(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let split = usize::from(split).min(rest.len());
    let now = Instant::now();
    let limits = Limits::default().max_header_bytes(FUZZ_HEADER_BYTES).max_headers(16);
    let mut hs = ServerHandshake::new(limits, now);
    let mut request = None;
    for piece in [&rest[..split], &rest[split..]] {
        match hs.handle_input(piece) {
            Ok(Some(r)) => {
                request = Some(r);
                break;
            }
            Ok(None) => {}
            Err(e) => {
                let response = e.response().expect("a server-side error has a response");
                assert!((400..600).contains(&response.status()), "{e}: {}", response.status());
                return;
            }
        }
        assert!(hs.buffered_len() <= FUZZ_HEADER_BYTES, "the head buffer stays bounded");
    }
    let Some(request) = request else { return };
    let policies = [
        ServerPolicy::default(),
        ServerPolicy::default()
            .origin(OriginPolicy::AllowList(vec![OriginPattern::new("http*://{{host}}"), OriginPattern::new("*")]))
            .subprotocols(vec!["chat".into(), "superchat".into()]),
        ServerPolicy::default().origin(OriginPolicy::InsecureAllowAny),
    ];
    for policy in &policies {
        match policy.accept(&request) {
            Ok(response) => {
                assert_eq!(response.status(), 101);
                let bytes = response.to_bytes();
                assert!(bytes.ends_with(b"\r\n\r\n"));
                if let Some(p) = response.subprotocol() {
                    assert!(request.subprotocols().iter().any(|o| o == p));
                }
            }
            Err(e) => {
                let response = e.response().expect("a rejection has a response");
                assert!(matches!(response.status(), 400 | 403 | 405 | 426 | 431), "{e}");
            }
        }
    }
    let response = policies[2].respond(&request);
    if let Ok((mut conn, leftover)) = hs.into_connection(&response, Config::default(), now) {
        let _ = conn.handle_input(&leftover, now);
    }
}

/// The client's handshake response parser and validator: arbitrary bytes in two pieces, after a
/// request with a fixed key and two offered subprotocols.
pub fn handshake_response(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let split = usize::from(split).min(rest.len());
    let now = Instant::now();
    let request = ClientRequest::new("ws://example.com:9001/chat?room=1")
        .expect("valid url")
        .subprotocols(vec!["chat".into(), "superchat".into()])
        .expect("valid subprotocols");
    let limits = Limits::default().max_header_bytes(FUZZ_HEADER_BYTES).max_headers(16);
    let mut hs = ClientHandshake::new(request, &mut Entropy::from_seed([3; 32]), limits, now);
    for piece in [&rest[..split], &rest[split..]] {
        match hs.handle_input(piece) {
            Ok(Some(response)) => {
                assert_eq!(response.status(), 101);
                if let Some(p) = response.subprotocol() {
                    assert!(p == "chat" || p == "superchat");
                }
                if let Ok((mut conn, leftover)) = hs.into_connection(Config::default(), now) {
                    let _ = conn.handle_input(&leftover, now);
                }
                return;
            }
            Ok(None) => assert!(hs.buffered_len() <= FUZZ_HEADER_BYTES, "the head buffer stays bounded"),
            Err(e) => return check_response_error(&e, &limits),
        }
    }
    // The transport ends: a refusal whose body was still arriving is reported now.
    if let Err(e) = hs.handle_eof() {
        check_response_error(&e, &limits);
    }
}

/// What every failed client handshake must give: a message, and a refusal's body within its bound.
fn check_response_error(error: &HandshakeError, limits: &Limits) {
    assert!(!error.to_string().is_empty());
    if let HandshakeError::NotSwitchingProtocols { body, .. } = error {
        assert!(body.len() <= limits.max_rejection_body, "the rejection body stays bounded");
    }
}

/// The frame decoder: headers decoded from arbitrary bytes, then the bytes fed to a server and
/// a client connection, split where the first byte says.
pub fn frame_decoder(data: &[u8]) {
    if let Ok(Some((header, len))) = FrameHeader::decode(data) {
        assert!((2..=14).contains(&len) && len <= data.len());
        // Re-encoding uses the shortest length form (a peer may have used a longer one).
        let mut re = Vec::new();
        header.encode(&mut re);
        assert!(re.len() <= len && re.len() == header.encoded_len());
        assert_eq!(FrameHeader::decode(&re), Ok(Some((header, re.len()))));
    }
    let Some((&split, rest)) = data.split_first() else { return };
    let split = usize::from(split).min(rest.len());
    for role in [Role::Server, Role::Client] {
        let now = Instant::now();
        let config = Config::default().max_frame_size(4096).max_message_size(8192);
        let mut conn = Connection::new(role, config, now).expect("valid config");
        let first = conn.handle_input(&rest[..split], now);
        let second = conn.handle_input(&rest[split..], now);
        if let Err(e) = &first {
            assert_eq!(second.as_ref(), Err(e), "errors are sticky");
        }
        check_events(&mut conn, &mut false);
        if first.is_err() || second.is_err() {
            // Once the events before the violation are drained, the connection has failed.
            assert_eq!(conn.state(), State::Closed);
            assert!(conn.poll_transmit().is_some(), "a close frame is queued on failure");
        }
    }
}

/// Sequences of operations on one connection, including time passing and end of stream,
/// decoded from the bytes.
pub fn connection_ops(data: &[u8]) {
    let mut input = Reader(data);
    let role = if input.byte() % 2 == 0 { Role::Server } else { Role::Client };
    let mut now = Instant::now();
    let config = Config::default()
        .max_frame_size(24 * 1024)
        .max_message_size(32 * 1024)
        .outgoing_frame_size(usize::from(input.byte()).max(1) * 16)
        .ping_period(Some(Duration::from_secs(10)))
        .pong_wait(Duration::from_secs(15))
        .read_timeout(Some(Duration::from_secs(60)))
        .rng_seed(Some([7; 32]));
    let mut conn = Connection::new(role, config, now).expect("valid config");
    let mut written = Vec::new();
    let mut closed_seen = false;
    let mut closed_event_seen = false;
    let mut closed_out_len = 0;
    let mut output_discarded = false;
    while let Some(op) = input.next() {
        match op % 12 {
            0 => {
                let chunk = input.take_len();
                let _ = conn.handle_input(chunk, now);
            }
            1 => {
                let text = String::from_utf8_lossy(input.take_len()).into_owned();
                let _ = conn.send_text(&text);
            }
            2 => {
                // Either copied, or shared and grown past the size from which a server writes
                // the payload in place.
                let grow = usize::from(input.byte());
                let data = input.take_len();
                let _ = if grow < 128 {
                    conn.send_binary(data)
                } else {
                    let len = if data.is_empty() { 0 } else { 8 * 1024 + grow * 16 };
                    conn.send_binary_bytes(&data.iter().copied().cycle().take(len).collect::<Vec<u8>>().into())
                };
            }
            3 => {
                let _ = conn.ping(input.take_len());
            }
            4 => {
                let _ = conn.pong(input.take_len());
            }
            5 => {
                let code = u16::from_be_bytes([input.byte(), input.byte()]);
                let reason = String::from_utf8_lossy(input.take_len()).into_owned();
                let _ = conn.close(CloseCode::new(code), &reason, now);
            }
            6 => {
                now += Duration::from_millis(u64::from(input.byte()) * 250);
                let unwritten = conn.buffered_amount() > 0 && !conn.should_shutdown();
                conn.handle_timeout(now);
                // A deadline failure drops what was not written, maybe mid-frame: the transport
                // is shut at once, and the peer sees the stream end without a close frame.
                output_discarded |= unwritten && conn.should_shutdown();
                assert!(conn.poll_timeout().is_none_or(|d| d > now), "every expired deadline was handled");
            }
            7 => {
                let budget = usize::from(input.byte()) * 8;
                if budget % 16 == 0 {
                    if let Some(out) = conn.poll_transmit() {
                        let n = budget.min(out.len());
                        written.extend_from_slice(&out[..n]);
                        conn.advance_transmit(n);
                    }
                } else {
                    let mut slices = [std::io::IoSlice::new(&[]); 4];
                    let filled = conn.poll_transmit_vectored(&mut slices);
                    let mut left = budget * 64;
                    for slice in &slices[..filled] {
                        let n = left.min(slice.len());
                        written.extend_from_slice(&slice[..n]);
                        left -= n;
                    }
                    conn.advance_transmit(budget * 64 - left);
                }
            }
            8 => conn.handle_eof(now),
            10 => {
                // A whole data frame from the peer with up to 20 KiB of payload (past the size
                // from which a server unmasks on arrival), masked as the role expects unless the
                // low bit says otherwise, delivered in two pieces.
                let flags = input.byte();
                let len = usize::from(input.byte()) * 80 + usize::from(input.byte());
                let key = [input.byte(), input.byte(), input.byte(), input.byte()];
                let split = usize::from(input.byte());
                let seed = input.take_len();
                let opcode = if flags & 2 == 0 { OpCode::Binary } else { OpCode::Continuation };
                let masked = (role == Role::Server) != (flags & 1 == 1);
                let mut payload: Vec<u8> = seed.iter().copied().cycle().take(len).collect();
                payload.resize(len, b'a');
                let header = FrameHeader {
                    fin: flags & 4 == 0,
                    rsv: 0,
                    opcode: if flags & 8 == 0 { opcode } else { OpCode::Text },
                    mask: masked.then_some(key),
                    payload_len: len as u64,
                };
                let mut frame = Vec::with_capacity(header.encoded_len() + len);
                header.encode(&mut frame);
                if masked {
                    apply_mask(&mut payload, key);
                }
                frame.extend_from_slice(&payload);
                let split = frame.len() * split / 255;
                let _ = conn.handle_input(&frame[..split], now);
                let _ = conn.handle_input(&frame[split..], now);
            }
            11 => {
                // The driver stops reading for its application, or reads again.
                if conn.is_read_paused() {
                    conn.handle_read_resumed(now);
                } else {
                    conn.handle_read_paused(now);
                }
            }
            _ => {
                let kind = if input.byte() % 2 == 0 { MessageKind::Text } else { MessageKind::Binary };
                let fin = input.byte() % 2 == 0;
                let _ = conn.send_fragment(kind, input.take_len(), fin);
            }
        }
        if conn.state() == State::Closed {
            if !closed_seen {
                closed_seen = true;
                closed_out_len = written.len() + conn.buffered_amount();
            }
            assert!(written.len() + conn.buffered_amount() <= closed_out_len, "nothing is queued after Closed");
        }
        check_events(&mut conn, &mut closed_event_seen);
    }
    written.extend_from_slice(&conn.take_transmit());
    check_nothing_after_close(&written, output_discarded);
}

/// The message size limit of the connection under test in [`deflate_connection`].
const DEFLATE_MAX_MESSAGE: usize = 64 * 1024;
/// Its frame size limit.
const DEFLATE_MAX_FRAME: usize = 16 * 1024;

/// permessage-deflate on a connection: parameters from the first bytes, then frames from a peer
/// that compresses (some of them inflating far past the limit, some corrupted), hand-made frames
/// with any reserved bits and opcode, and messages the connection compresses for the peer.
///
/// Invariants: the connection accepts, or fails with 1002, 1007 or 1009 and is closed; its
/// buffers never grow past the message limit plus what it was given at once; and every message
/// it sends reaches the peer intact, whatever the windows, context takeover, level, memory
/// level, threshold and fragmentation.
pub fn deflate_connection(data: &[u8]) {
    let mut input = Reader(data);
    let flags = input.byte();
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let peer_role = if role == Role::Server { Role::Client } else { Role::Server };
    let params = DeflateParams::default()
        .server_no_context_takeover(flags & 2 != 0)
        .client_no_context_takeover(flags & 4 != 0)
        .server_max_window_bits(8 + input.byte() % 8)
        .client_max_window_bits(8 + input.byte() % 8);
    let settings = DeflateConfig::default()
        .min_compress_size(usize::from(input.byte() % 4) * 16)
        .compression_level(input.byte() % 10)
        .memory_level(1 + input.byte() % 9);
    let deflate = PerMessageDeflate::new(params, settings).expect("valid parameters");
    let now = Instant::now();
    let config = Config::default()
        .max_frame_size(DEFLATE_MAX_FRAME)
        .max_message_size(DEFLATE_MAX_MESSAGE)
        .outgoing_frame_size(usize::from(input.byte()).max(1) * 8)
        .rng_seed(Some([5; 32]));
    let mut conn = Connection::with_deflate(role, config.clone(), Some(deflate.clone()), now).expect("valid config");
    let peer_config = config.max_message_size(1 << 20).max_frame_size(1 << 20).rng_seed(Some([6; 32]));
    let mut peer = Connection::with_deflate(peer_role, peer_config, Some(deflate), now).expect("valid config");
    // Messages `conn` sent, in order, for the peer to receive intact; and a streamed one in progress.
    let mut expected: VecDeque<Event> = VecDeque::new();
    let mut streaming: Option<(MessageKind, Vec<u8>)> = None;
    let mut closed_seen = false;
    while let Some(op) = input.next() {
        let mut fed = Vec::new();
        match op % 6 {
            0 => {
                // A hand-made frame: any FIN, reserved bits and opcode, masked as `conn` expects.
                let bits = input.byte();
                let opcode =
                    [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong]
                        [usize::from(bits % 6)];
                let mut payload = input.take_len().to_vec();
                let key = [input.byte(), input.byte(), input.byte(), input.byte()];
                let mask = (role == Role::Server).then_some(key);
                let header = FrameHeader {
                    fin: bits & 0x80 != 0,
                    rsv: (bits >> 4) & 0b111,
                    opcode,
                    mask,
                    payload_len: payload.len() as u64,
                };
                header.encode(&mut fed);
                if let Some(key) = mask {
                    apply_mask(&mut payload, key);
                }
                fed.extend_from_slice(&payload);
            }
            1 => {
                // A message the peer compresses: a pattern repeated up to 255 KiB, most of them
                // far past the limit from a few hundred bytes on the wire; maybe corrupted.
                let kind = input.byte();
                let repeat = usize::from(input.byte()) * 1024 + usize::from(input.byte());
                let corrupt = input.byte();
                let pattern = input.take_len();
                let message: Vec<u8> =
                    pattern.iter().copied().cycle().take(if pattern.is_empty() { 0 } else { repeat }).collect();
                let _ = if kind % 2 == 0 {
                    peer.send_text(&String::from_utf8_lossy(&message))
                } else {
                    peer.send_binary(&message)
                };
                fed = peer.take_transmit().to_vec();
                if corrupt % 4 == 0 && !fed.is_empty() {
                    let at = usize::from(input.byte()) * fed.len() / 256;
                    fed[at] ^= corrupt | 1;
                }
            }
            2 => {
                let kind = if input.byte() % 2 == 0 { MessageKind::Text } else { MessageKind::Binary };
                let fin = input.byte() % 2 == 0;
                let _ = peer.send_fragment(kind, input.take_len(), fin);
                fed = peer.take_transmit().to_vec();
            }
            3 => {
                // `conn` compresses; the peer must read exactly what was sent.
                let how = input.byte();
                let payload = input.take_len();
                let sent = match how % 3 {
                    0 => {
                        let text = String::from_utf8_lossy(payload).into_owned();
                        conn.send_text(&text).is_ok().then(|| Event::Text(text.into()))
                    }
                    1 => conn.send_binary(payload).is_ok().then(|| Event::Binary(payload.to_vec().into())),
                    _ => {
                        let fin = how & 8 != 0;
                        let kind = match &streaming {
                            Some((kind, _)) => *kind,
                            None if how & 4 == 0 => MessageKind::Text,
                            None => MessageKind::Binary,
                        };
                        let piece = match kind {
                            MessageKind::Text => String::from_utf8_lossy(payload).into_owned().into_bytes(),
                            MessageKind::Binary => payload.to_vec(),
                        };
                        if conn.send_fragment(kind, &piece, fin).is_ok() {
                            let (_, so_far) = streaming.get_or_insert_with(|| (kind, Vec::new()));
                            so_far.extend_from_slice(&piece);
                            if fin {
                                let (kind, whole) = streaming.take().expect("a streamed message");
                                Some(match kind {
                                    MessageKind::Text => Event::Text(String::from_utf8(whole).expect("text").into()),
                                    MessageKind::Binary => Event::Binary(whole.into()),
                                })
                            } else {
                                None
                            }
                        } else {
                            None
                        }
                    }
                };
                expected.extend(sent);
                let out = conn.take_transmit();
                let _ = peer.handle_input(&out, now);
                while let Some(event) = peer.poll_event() {
                    match event {
                        Event::Text(_) | Event::Binary(_) => {
                            assert_eq!(Some(event), expected.pop_front(), "the peer reads what was sent");
                        }
                        Event::Closed(c) => assert!(c.failure.is_none(), "the peer fails on our output: {c:?}"),
                        _ => {}
                    }
                }
            }
            4 => fed = input.take_len().to_vec(),
            _ => {
                let _ = conn.ping(input.take_len());
            }
        }
        if !fed.is_empty() {
            let split = usize::from(input.byte()) * fed.len() / 256;
            for piece in [&fed[..split], &fed[split..]] {
                let bound = 2 * DEFLATE_MAX_MESSAGE
                    + 2 * DEFLATE_MAX_FRAME
                    + 2 * fed.len()
                    + conn.buffered_amount()
                    + 64 * 1024;
                if let Err(e) = conn.handle_input(piece, now) {
                    assert!(matches!(e.close_code().as_u16(), 1002 | 1007 | 1009), "a documented close code: {e}");
                }
                assert!(conn.buffer_capacity() <= bound, "{} > {bound}", conn.buffer_capacity());
            }
            // What `conn` answered (pongs, a close) is read by the peer, which must not fail on it.
            let out = conn.take_transmit();
            let _ = peer.handle_input(&out, now);
            while let Some(event) = peer.poll_event() {
                if let Event::Closed(c) = event {
                    assert!(c.failure.is_none(), "the peer fails on our output: {c:?}");
                }
            }
        }
        check_events(&mut conn, &mut closed_seen);
    }
}

/// Events are well ordered: at most one `Closed`, and nothing after it. `closed` carries whether
/// `Closed` was already seen across calls.
fn check_events(conn: &mut Connection, closed: &mut bool) {
    while let Some(event) = conn.poll_event() {
        assert!(!*closed, "no event after Closed");
        if let Event::Closed(c) = &event {
            *closed = true;
            if conn.is_read_paused() {
                assert!(
                    !matches!(c.failure, Some(Failure::PeerUnresponsive | Failure::ReadTimeout)),
                    "no liveness failure while reading is paused: {c:?}"
                );
            }
            assert_eq!(conn.state(), State::Closed);
            if c.clean {
                assert!(c.failure.is_none());
            }
        }
    }
}

/// The written stream parses as whole frames and no frame follows a close frame. Only when the
/// output was discarded on a deadline may the last frame be cut short.
fn check_nothing_after_close(mut written: &[u8], discarded: bool) {
    let mut seen_close = false;
    while !written.is_empty() {
        let Some((header, len)) = FrameHeader::decode(written).expect("own output decodes") else {
            assert!(discarded, "own output holds whole frames: a header is cut short");
            return;
        };
        let end = len + usize::try_from(header.payload_len).expect("small frame");
        if end > written.len() {
            assert!(discarded, "own output holds whole frames");
            return;
        }
        assert!(!seen_close, "no frame after a close frame");
        if header.opcode == OpCode::Close {
            seen_close = true;
            let mut payload = written[len..end].to_vec();
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key);
            }
            assert!(payload.len() != 1 && payload.len() <= 125);
        }
        written = &written[end..];
    }
}

/// A cursor over fuzzer bytes that yields zeros once exhausted.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
    /// A length byte, then that many bytes (fewer at the end of the input).
    fn take_len(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte()).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}
