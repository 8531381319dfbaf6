//! Prepared messages (`Connection::send_prepared`): framed once, queued by reference on every
//! server connection with the same settings, compressed once when the server keeps no context
//! (RFC 7692 section 7.1.1.1), and received intact.

use std::io::IoSlice;
use std::time::Instant;

use ferrule_core::handshake::{ClientHandshake, ClientRequest, Limits, OriginPolicy, ServerHandshake, ServerPolicy};
use ferrule_core::{Config, Connection, DeflateConfig, Entropy, Event, PreparedMessage, Role, SendError};

/// A client and a server connected through the real handshake, with deflate settings at both ends.
fn negotiated(client: Option<DeflateConfig>, server: Option<DeflateConfig>) -> (Connection, Connection) {
    let now = Instant::now();
    let request = ClientRequest::new("ws://example.com/").unwrap().deflate(client).unwrap();
    let mut client_hs = ClientHandshake::new(request, &mut Entropy::from_seed([1; 32]), Limits::default(), now);
    let mut server_hs = ServerHandshake::new(Limits::default(), now);
    let request = server_hs.handle_input(client_hs.request_bytes()).unwrap().expect("a whole request");
    let response =
        ServerPolicy::default().origin(OriginPolicy::InsecureAllowAny).deflate(server).accept(&request).unwrap();
    client_hs.handle_input(&response.to_bytes()).unwrap().expect("a whole response");
    let (server_conn, _) = server_hs.into_connection(&response, Config::default(), now).unwrap();
    let (client_conn, _) = client_hs.into_connection(Config::default().rng_seed(Some([2; 32])), now).unwrap();
    (client_conn, server_conn)
}

/// The pieces of output `conn` has queued, by address and length, and their bytes.
fn pieces(conn: &mut Connection) -> (Vec<(usize, usize)>, Vec<u8>) {
    let mut slices = [IoSlice::new(&[]); 16];
    let n = conn.poll_transmit_vectored(&mut slices);
    let ids = slices[..n].iter().map(|s| (s.as_ptr() as usize, s.len())).collect();
    let bytes = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    (ids, bytes)
}

fn deliver(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    let bytes = from.take_transmit();
    to.handle_input(&bytes, Instant::now()).unwrap();
    std::iter::from_fn(|| to.poll_event()).collect()
}

#[test]
fn servers_queue_the_same_frame_bytes_by_reference() {
    let (_, mut a) = negotiated(None, None);
    let (_, mut b) = negotiated(None, None);
    let message = PreparedMessage::binary(vec![42u8; 100_000]);
    a.send_prepared(&message).unwrap();
    b.send_prepared(&message).unwrap();
    let (a_pieces, a_bytes) = pieces(&mut a);
    let (b_pieces, b_bytes) = pieces(&mut b);
    assert_eq!(a_pieces, b_pieces, "both queue the one encoding");
    assert_eq!(a_bytes, b_bytes);
    assert_eq!(a_bytes.len(), 100_000 + 10, "a 2+8-byte header (RFC 6455 section 5.2, 64-bit length)");
}

#[test]
fn prepared_message_is_received_whole_after_other_output() {
    let (mut client, mut server) = negotiated(None, None);
    server.send_text("before").unwrap();
    server.send_prepared(&PreparedMessage::text("prepared")).unwrap();
    server.send_text("after").unwrap();
    let events = deliver(&mut server, &mut client);
    let texts: Vec<String> = events
        .into_iter()
        .map(|e| match e {
            Event::Text(t) => t.as_str().to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(texts, ["before", "prepared", "after"]);
}

#[test]
fn client_masks_a_prepared_message_itself() {
    let (mut client, mut server) = negotiated(None, None);
    client.send_prepared(&PreparedMessage::binary(&b"masked"[..])).unwrap();
    let (_, bytes) = pieces(&mut client);
    assert_eq!(bytes[1] & 0x80, 0x80, "the mask bit (RFC 6455 section 5.3)");
    let events = deliver(&mut client, &mut server);
    assert!(matches!(&events[..], [Event::Binary(b)] if &b[..] == b"masked"));
}

#[test]
fn servers_without_context_takeover_share_the_compressed_frames() {
    let server_config = DeflateConfig::default().server_no_context_takeover(true).min_compress_size(0);
    let (mut client_a, mut a) = negotiated(Some(DeflateConfig::default()), Some(server_config.clone()));
    let (mut client_b, mut b) = negotiated(Some(DeflateConfig::default()), Some(server_config));
    let text = "compress me once, ".repeat(1000);
    let message = PreparedMessage::text(text.clone());
    for _ in 0..2 {
        a.send_prepared(&message).unwrap();
        b.send_prepared(&message).unwrap();
        let (a_pieces, a_bytes) = pieces(&mut a);
        let (b_pieces, _) = pieces(&mut b);
        assert_eq!(a_pieces, b_pieces, "both queue the one compressed encoding");
        assert_eq!(a_bytes[0] & 0x40, 0x40, "RSV1: compressed (RFC 7692 section 6)");
        assert!(a_bytes.len() < text.len() / 10);
        for (server, client) in [(&mut a, &mut client_a), (&mut b, &mut client_b)] {
            let events = deliver(server, client);
            assert!(matches!(&events[..], [Event::Text(t)] if t.as_str() == text));
        }
    }
}

#[test]
fn server_keeping_context_compresses_a_prepared_message_itself() {
    // Neither the client nor the server asks the server to drop its context.
    let config = DeflateConfig::default().min_compress_size(0).server_no_context_takeover(false);
    let (mut client_a, mut a) = negotiated(Some(config.clone()), Some(config.clone()));
    let (_, mut b) = negotiated(Some(config.clone()), Some(config));
    assert!(!a.deflate().unwrap().server_no_context_takeover);
    let text = "with context, ".repeat(500);
    let message = PreparedMessage::text(text.clone());
    a.send_prepared(&message).unwrap();
    b.send_prepared(&message).unwrap();
    let (a_pieces, _) = pieces(&mut a);
    let (b_pieces, _) = pieces(&mut b);
    assert_ne!(a_pieces, b_pieces, "each compressed with its own context");
    let events = deliver(&mut a, &mut client_a);
    assert!(matches!(&events[..], [Event::Text(t)] if t.as_str() == text));
    // The second time, the context makes the message smaller still: it was this connection's.
    a.send_prepared(&message).unwrap();
    let events = deliver(&mut a, &mut client_a);
    assert!(matches!(&events[..], [Event::Text(t)] if t.as_str() == text));
}

#[test]
fn prepared_message_after_close_is_refused() {
    let mut server = Connection::new(Role::Server, Config::default(), Instant::now()).unwrap();
    server.close(ferrule_core::CloseCode::NORMAL, "", Instant::now()).unwrap();
    assert_eq!(server.send_prepared(&PreparedMessage::text("late")), Err(SendError::Closed));
}

#[test]
fn prepared_message_while_a_fragmented_message_is_open_is_refused() {
    let mut server = Connection::new(Role::Server, Config::default(), Instant::now()).unwrap();
    server.send_fragment(ferrule_core::MessageKind::Text, b"part", false).unwrap();
    assert_eq!(server.send_prepared(&PreparedMessage::text("no")), Err(SendError::FragmentedMessageInProgress));
}
