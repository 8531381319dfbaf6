//! A blocking WebSocket echo server on `std::net`, driven entirely by the sans-IO core.
//!
//! It shows that `ferrule-core` needs no runtime: one thread per connection reads the socket,
//! feeds the bytes in, writes what the core emits, and turns the core's next deadline into a
//! socket read timeout. Messages are echoed back (compressed when the client offers
//! permessage-deflate); limits are raised to 64 MiB so the Autobahn TestSuite's large cases run.
//!
//! ```text
//! cargo run --release -p ferrule-core --example blocking_echo [ADDR]   # default 127.0.0.1:9001
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ferrule_core::handshake::{Limits, OriginPolicy, ServerHandshake, ServerPolicy};
use ferrule_core::{CloseCode, Config, Connection, DeflateConfig, Event};

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("echo server listening on ws://{}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("connection ended with an error: {e}");
            }
        });
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];

    // Opening handshake, bounded by the handshake's own deadline.
    let mut handshake = ServerHandshake::new(Limits::default(), Instant::now());
    let request = loop {
        set_deadline(&stream, handshake.poll_timeout())?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if is_timeout(&e) => match handshake.handle_timeout(Instant::now()) {
                Err(err) => return reject(&mut stream, err),
                Ok(()) => continue,
            },
            Err(e) => return Err(e),
        };
        match handshake.handle_input(&buf[..n]) {
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(err) => return reject(&mut stream, err),
        }
    };
    // Tools such as the Autobahn TestSuite send no browser Origin; allow any for the demo. As a
    // conformance testee it accepts every permessage-deflate offer: any window a client asks of
    // it (up to 15 bits), any window the client chooses, either end without context takeover (it
    // keeps its own context unless the client asks it not to).
    // It compresses every message, however short: kosoku 0.1.0 errors on an uncompressed echo in
    // the cases of 16-byte messages (12.x.1, 13.x.1), though RFC 7692 section 6.1 allows one.
    let compression = DeflateConfig::default()
        .server_max_window_bits(Some(15))
        .client_max_window_bits(None)
        .server_no_context_takeover(false)
        .min_compress_size(0);
    let policy = ServerPolicy::default().origin(OriginPolicy::InsecureAllowAny).deflate(Some(compression));
    let response = match policy.accept(&request) {
        Ok(response) => response,
        Err(err) => return reject(&mut stream, err),
    };
    stream.write_all(&response.to_bytes())?;

    let config = Config::default().max_frame_size(64 << 20).max_message_size(64 << 20);
    let (mut conn, leftover) = handshake
        .into_connection(&response, config, Instant::now())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // Bytes that followed the request head are the first frames. A protocol error is also
    // reported as Event::Closed with the close frame queued, so the Err needs no handling here.
    let _ = conn.handle_input(&leftover, Instant::now());
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Text(text) => {
                    let sent = conn.send_text(&text);
                    echo(&mut conn, sent);
                }
                Event::Binary(data) => {
                    let sent = conn.send_binary(&data);
                    echo(&mut conn, sent);
                }
                Event::Closed(closed) if !closed.clean => {
                    eprintln!("connection failed: code {} {:?}", closed.code, closed.failure);
                }
                _ => {}
            }
        }
        while let Some(out) = conn.poll_transmit() {
            let n = stream.write(out)?;
            conn.advance_transmit(n);
        }
        if conn.should_shutdown() {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        set_deadline(&stream, conn.poll_timeout())?;
        match stream.read(&mut buf) {
            Ok(0) => conn.handle_eof(Instant::now()),
            Ok(n) => {
                let _ = conn.handle_input(&buf[..n], Instant::now());
            }
            Err(e) if is_timeout(&e) => conn.handle_timeout(Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => conn.handle_eof(Instant::now()),
        }
    }
}

/// An echo that cannot be sent (the peer already started closing) is dropped; anything else
/// is a bug in the example.
fn echo(conn: &mut Connection, result: Result<(), ferrule_core::SendError>) {
    if let Err(e) = result {
        if conn.state() == ferrule_core::State::Open {
            let _ = conn.close(CloseCode::INTERNAL_ERROR, "echo failed", Instant::now());
            eprintln!("echo failed: {e}");
        }
    }
}

fn reject(stream: &mut TcpStream, err: ferrule_core::handshake::HandshakeError) -> io::Result<()> {
    eprintln!("handshake rejected: {err}");
    if let Some(response) = err.response() {
        stream.write_all(&response.to_bytes())?;
    }
    stream.shutdown(Shutdown::Both)
}

fn set_deadline(stream: &TcpStream, deadline: Option<Instant>) -> io::Result<()> {
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
    stream.set_read_timeout(timeout)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}
