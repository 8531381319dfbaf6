//! The `serve_channels` example of the crate's docs (`examples/json_echo.rs`, included here as
//! it is) against a client that upgrades, then never answers the close: once the 30-minute cap
//! fired, the connection's task must wait for the end, not spin until the close timeout.
//!
//! The clock is paused: the 30 minutes, the keepalive pings and the close timeout pass as soon as
//! every task waits, and the test takes milliseconds.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ferrule_tokio::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[allow(dead_code)] // its `main`
#[path = "../examples/json_echo.rs"]
mod json_echo;

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Polls of a spinning task after which [`Turns`] stops it, so that the test fails instead of
/// hanging: a spinning task never lets the paused clock reach the close timeout.
const GIVE_UP: usize = 1_000;

/// Runs a connection's task and counts how often it is polled once its cap fired. A `select!`
/// loop whose ready branch is taken again and again shows as a flood of polls: tokio's timer
/// makes the task yield after every 128 polls of it (tokio's cooperative budget), and the
/// runtime polls the task again at once.
struct Turns<F> {
    task: Pin<Box<F>>,
    /// When the cap fires: the task's first poll, where it starts its timer, plus the cap.
    cap_fires: Option<Instant>,
    after_cap: Arc<AtomicUsize>,
}

impl<F: Future<Output = ()>> Future for Turns<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        let cap_fires = *self.cap_fires.get_or_insert(now + json_echo::CAP);
        if now >= cap_fires && self.after_cap.fetch_add(1, Ordering::SeqCst) + 1 > GIVE_UP {
            return Poll::Ready(());
        }
        self.task.as_mut().poll(cx)
    }
}

/// Opens a WebSocket on `addr` by hand and reads the `101`.
async fn upgrade(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connected");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("request written");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tcp.read_exact(&mut byte).await.expect("the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    tcp
}

/// Writes one masked frame, as a client must (RFC 6455 section 5.3).
async fn write_frame(tcp: &mut TcpStream, opcode: u8, payload: &[u8]) {
    assert!(payload.len() < 126, "short frames only");
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    tcp.write_all(&frame).await.expect("frame written");
}

/// Reads one unfragmented, unmasked frame from the server: its opcode and payload, or `None` once
/// the server closed the TCP connection.
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0; 2];
    tcp.read_exact(&mut head).await.ok()?;
    assert_eq!(head[0] & 0xF0, 0x80, "FIN, no RSV bits: {head:?}");
    let len = match head[1] {
        126 => usize::from(tcp.read_u16().await.ok()?),
        127 => usize::try_from(tcp.read_u64().await.ok()?).expect("a length that fits"),
        len => usize::from(len),
    };
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0F, payload))
}

/// The example's loop echoes JSON, closes with 1000 "time is up" when the cap fires, and then
/// waits: against a client that answers keepalive pings but never the close, its task is polled
/// a few times after the cap, not once per turn of a spinning loop, until the close timeout ends
/// the connection.
#[tokio::test(start_paused = true)]
async fn capped_json_echo_closes_1000_then_waits_quietly_for_a_client_that_never_answers() {
    let after_cap = Arc::new(AtomicUsize::new(0));
    let counter = after_cap.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
    let addr = listener.local_addr().expect("its address");
    let options = Options::default();
    let close_timeout = options.close_timeout();
    let server = ferrule_tokio::serve_channels(listener, options, move |request, ws| Turns {
        task: Box::pin(json_echo::connection(request, ws)),
        cap_fires: None,
        after_cap: counter.clone(),
    });

    let opened = Instant::now();
    let mut tcp = upgrade(addr).await;
    let chat = br#"{"user":"ann","text":"hi"}"#;
    write_frame(&mut tcp, TEXT, chat).await;
    assert_eq!(read_frame(&mut tcp).await, Some((TEXT, chat.to_vec())), "the echo");

    // Answer the keepalive pings, so that only the cap can end the connection.
    let close = loop {
        match read_frame(&mut tcp).await {
            Some((PING, payload)) => write_frame(&mut tcp, PONG, &payload).await,
            Some((CLOSE, payload)) => break payload,
            other => panic!("expected a ping or the close, got {other:?}"),
        }
        assert!(opened.elapsed() < json_echo::CAP * 2, "no close long after the cap");
    };
    let closed = Instant::now();
    assert!(closed - opened >= json_echo::CAP, "the close came after {:?}, before the cap", closed - opened);
    assert_eq!(close.get(..2), Some(&1000u16.to_be_bytes()[..]), "the close code");
    assert_eq!(&close[2..], b"time is up", "the close reason");

    // Never answer the close: the server shuts the TCP connection when its close timeout ends.
    assert_eq!(read_frame(&mut tcp).await, None, "nothing after the close");
    assert!(closed.elapsed() >= close_timeout, "shut after {:?}, before the close timeout", closed.elapsed());
    assert_eq!(server.shutdown(Duration::from_secs(1)).await, 0, "connections left open");

    let polls = after_cap.load(Ordering::SeqCst);
    assert!(polls <= 4, "the connection's task was polled {polls} times after the cap fired");
}
