//! The integration suite, written once over [`TestRuntime`] and instantiated per runtime with
//! identical test names by [`runtime_suite!`](crate::runtime_suite).
//!
//! Every test runs over real loopback TCP. A runtime adapter plugs in by implementing
//! [`TestRuntime`] in `tests/tests/<runtime>.rs` and calling `ferrule_tests::runtime_suite!(ThatType);`.
//!
//! Tests marked `paused` in the macro run on a paused clock: deadlines of tens of seconds pass in
//! no real time because the runtime jumps its clock to the next timer whenever every task is
//! idle. tokio has such a clock (`start_paused`); smol and async-std get one from
//! [`virtual_clock`](crate::virtual_clock). Tests marked `real` run in real time.
//!
//! No test decides pass or fail by how much wall-clock time passed, so a busy machine makes the
//! suite slower, never failing. A test that has to see time pass or nothing happen (a keepalive,
//! a timeout, a stalled write, a send that must wait) runs paused and measures virtual time,
//! which moves only when every task is idle. A paused test that only moves bytes holds the clock
//! still meanwhile ([`with_clock_held`]): the kernel can hold bytes while every task is idle. A
//! real-time test waits for the event itself. Limits of real time are only guards against a hang,
//! generous enough never to be reached otherwise; every test body runs under one, so a bug fails
//! the test instead of hanging it.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrule::core::handshake::HandshakeError;
use ferrule::{
    Bound, Channels, CloseCause, CloseCode, CloseInfo, Codec, Ctx, Error, Handle, Handler, HandlerError,
    HandlerFactory, Json, Message, MessageKind, Options, Rejection, Request, Runtime, Server, TrySendError, Upgraded,
};
use futures_io::{AsyncRead, AsyncWrite};
use serde::{Deserialize, Serialize};

mod causes;
pub use causes::*;

// ---- the runtime interface ---------------------------------------------------------------------

/// What the suite needs from a runtime adapter: a way to run a test, its [`Runtime`], its
/// standalone server, its connector, and raw TCP for hand-written (malformed, slow, silent)
/// peers.
pub trait TestRuntime: Sized + 'static {
    /// The adapter's runtime.
    type Runtime: Runtime;
    /// The server [`serve`](Self::serve) starts: ferrule's own [`Server`], or one behind
    /// another HTTP server (hyper, axum).
    type Server: TestServer;
    /// A connected TCP stream, as the adapter's `connect` wraps it.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Runs `future` to completion on a fresh runtime: when `paused`, on a paused clock that
    /// jumps to the next timer when every task is idle, otherwise in real time.
    fn block_on<F: Future>(paused: bool, future: F) -> F::Output;

    /// The runtime handle the library uses (clock, timers, spawn).
    fn runtime() -> Self::Runtime;

    /// Binds a listener on `127.0.0.1:0` and serves it with the callback API.
    fn serve<F: HandlerFactory>(options: Options, factory: F) -> impl Future<Output = Self::Server>;

    /// Binds a listener on `127.0.0.1:0` and serves it with the channel API.
    fn serve_channels<M, F, Fut>(options: Options, task: F) -> impl Future<Output = Self::Server>
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static;

    /// The adapter's client: TCP connect to a `ws://` URL and the opening handshake.
    fn connect(
        url: &str,
        options: &Options,
    ) -> impl Future<Output = Result<Upgraded<Self::Stream, Self::Runtime>, Error>>;

    /// A plain TCP connection, for peers written by hand.
    fn tcp(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>>;

    /// How many tasks are alive on the current runtime, when the runtime can tell.
    fn alive_tasks() -> Option<usize>;
}

/// What the suite needs of a running server: its address, how many upgraded connections are
/// open, and graceful shutdown (stop accepting, close every connection with 1001, wait).
pub trait TestServer: Send + Sync + 'static {
    /// The address it listens on.
    fn addr(&self) -> SocketAddr;

    /// How many upgraded connections are open.
    fn connections(&self) -> usize;

    /// Stops accepting, closes every connection with 1001 Going Away and waits up to
    /// `deadline`; returns how many were still open.
    fn shutdown(self, deadline: Duration) -> impl Future<Output = usize>;
}

impl<R: Runtime> TestServer for Server<R> {
    fn addr(&self) -> SocketAddr {
        self.local_addr().expect("a bound listener")
    }

    fn connections(&self) -> usize {
        Server::connections(self)
    }

    fn shutdown(self, deadline: Duration) -> impl Future<Output = usize> {
        Server::shutdown(self, deadline)
    }
}

/// The address a test server listens on.
pub fn addr<S: TestServer>(server: &S) -> SocketAddr {
    server.addr()
}

/// Expands to one `#[test]` per suite test for the runtime type `$rt` (a [`TestRuntime`]): those
/// of [`http_server_suite!`](crate::http_server_suite), and the handshake timeout of ferrule's
/// own server.
#[macro_export]
macro_rules! runtime_suite {
    ($rt:ty) => {
        $crate::http_server_suite!($rt);
        $crate::runtime_suite!(@expand $rt;
            paused server_drops_slowloris_at_handshake_timeout_with_408,
        );
    };
    (@expand $rt:ty; $($(#[$attr:meta])* $mode:ident $name:ident),* $(,)?) => {
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                $crate::suite::run::<$rt, _>($crate::runtime_suite!(@mode $mode), $crate::suite::$name::<$rt>);
            }
        )*
    };
    (@mode real) => {
        false
    };
    (@mode paused) => {
        true
    };
}

/// Expands to one `#[test]` per suite test that holds for a server behind another HTTP server
/// (hyper, axum) as for ferrule's own, for the runtime type `$rt`: echo through both APIs,
/// limits, keepalive, the closing handshake and close codes, the upgrade's refusals (origin,
/// method, version, `on_connect`), graceful shutdown, and how each connection ends. Only the
/// test of ferrule's own reading of the request head (a slow head answered with 408) is left to
/// [`runtime_suite!`](crate::runtime_suite): another server reads the head with its own limits.
#[macro_export]
macro_rules! http_server_suite {
    ($rt:ty) => {
        $crate::runtime_suite!(@expand $rt;
            real callback_server_echoes_text,
            real callback_server_echoes_binary,
            real channel_server_echoes_text,
            real channel_server_echoes_binary,
            real channel_server_echoes_json_and_reports_undecodable_messages,
            real channel_echo_keeps_order_through_bursts_at_any_bound,
            real client_handler_run_receives_echo_and_closes_cleanly,
            real server_reassembles_fragmented_text_with_interleaved_ping,
            real server_reassembles_fragments_delivered_byte_by_byte,
            real sixteen_mib_message_round_trips_both_ways,
            real oversized_message_closes_1009,
            real end_by_message_over_the_per_connection_limit_is_protocol_1009,
            paused slow_reader_cannot_grow_server_output_past_high_water,
            paused channel_receiver_at_its_bound_stops_reading_until_drained,
            paused server_drops_silent_peer_within_ping_period_plus_pong_wait_with_1006,
            paused server_keeps_responsive_peer_past_several_ping_periods,
            paused server_read_timeout_restarts_with_each_message_then_drops_a_quiet_peer,
            paused server_behind_its_receiver_keeps_a_peer_that_answers_pings,
            paused server_behind_its_receiver_drops_a_silent_peer_once_caught_up,
            paused server_drops_a_peer_that_stops_reading_and_answering_within_ping_period_plus_pong_wait,
            paused close_frame_reaches_a_peer_still_sending,
            real abrupt_disconnect_fires_done_with_1006_unclean,
            real server_receives_invalid_utf8_text_closes_1007,
            real server_receives_unmasked_frame_closes_1002,
            real server_disconnect_4000_reaches_client_done,
            real client_disconnect_4000_reaches_server_done,
            real handler_error_with_code_closes_4001,
            real handler_question_mark_error_closes_1011,
            real end_closed_by_the_server_application_is_local,
            real end_closed_by_the_peer_is_peer,
            real server_rejects_cross_origin_with_403,
            real server_rejects_post_with_405_allow_get,
            real server_rejects_version_8_with_426_and_version_13,
            real server_rejects_missing_upgrade_with_400,
            real server_on_connect_rejection_sends_401_with_body,
            paused shutdown_closes_open_connections_with_1001,
            paused shutdown_closes_channel_connections_with_1001,
            paused shutdown_with_no_connections_refuses_new_connects,
            real end_by_server_shutdown_is_server_shutdown,
            real client_handler_streams_a_fragmented_message,
            paused handle_sends_wait_for_the_handlers_fragmented_message,
            paused handle_message_writer_streams_while_other_sends_wait,
            real handle_message_writer_dropped_unfinished_closes_1011,
            real handler_sends_wait_for_a_handle_writers_message,
            real handle_message_writer_finishes_behind_a_large_backlog_of_handler_sends,
            real handle_message_queued_before_ctx_close_is_sent_first,
            paused receiver_dropped_at_its_bound_still_closes_cleanly,
            paused close_to_a_peer_that_stopped_reading_ends_at_the_close_timeout,
            real client_handler_dropped_mid_connection_gets_on_close_1006,
            real abrupt_disconnect_reports_an_error_on_the_error_stream,
            real recv_cancelled_at_arbitrary_points_loses_nothing,
            real send_cancelled_at_arbitrary_points_loses_nothing,
            paused try_send_full_then_send_waits_until_drained,
            real thousand_connections_leave_no_connections_or_tasks_behind,
            paused end_closed_with_a_full_receive_queue_is_still_clean,
            paused end_by_silent_peer_is_peer_unresponsive,
            paused end_by_read_timeout_is_read_timeout,
            paused end_by_unanswered_close_is_close_timeout,
            paused end_by_stalled_writes_is_write_timeout,
            real end_by_protocol_violation_is_protocol,
            real end_by_reset_is_transport,
            real end_by_vanished_peer_is_transport_closed,
            real end_by_dropped_driver_is_aborted,
        );
    };
}

/// Runs one suite test on a fresh runtime under a guard timeout: 5 minutes of real time (the
/// heaviest test takes seconds, and several times that on a busy machine), or an hour of virtual
/// time on a paused clock (which auto-advances, so a hang still fails fast).
pub fn run<T: TestRuntime, Fut: Future<Output = ()>>(paused: bool, test: impl FnOnce() -> Fut) {
    let guard = if paused { Duration::from_secs(3600) } else { Duration::from_secs(300) };
    T::block_on(paused, async move { within::<T, _>(guard, "the test body", test()).await });
}

// ---- small runtime-agnostic tools ---------------------------------------------------------------

/// The guard of a phase that moves megabytes or thousands of messages: seconds of work in a debug
/// build, and several times that on a busy machine.
pub const HEAVY: Duration = Duration::from_secs(120);

/// Sleeps on the runtime's clock (virtual when paused).
pub async fn sleep<T: TestRuntime>(duration: Duration) {
    let rt = T::runtime();
    let deadline = rt.now() + duration;
    rt.sleep_until(deadline).await;
}

/// The runtime's clock.
pub fn now<T: TestRuntime>() -> Instant {
    T::runtime().now()
}

/// Awaits `future`, panicking if it takes longer than `limit` on the runtime's clock.
pub async fn within<T: TestRuntime, F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match select(future, sleep::<T>(limit)).await {
        Either::Left(out) => out,
        Either::Right(()) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Awaits `future` with the clock held still, and returns its output: the waiting task keeps
/// itself runnable, so a paused clock cannot move until `future` completes, and `future` must
/// complete without any deadline passing. For phases that only move bytes: a paused clock moves
/// whenever every task is idle, and every task can be idle while the kernel still holds bytes
/// for them (TCP's timers run in real time), which would let deadlines pass that never would in
/// real time. Only `limit` of real time, a guard against a hang, bounds the wait; it keeps a core
/// busy meanwhile.
pub async fn with_clock_held<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    let started = Instant::now();
    let mut future = pin!(future);
    poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        assert!(started.elapsed() < limit, "{what} did not finish within {limit:?} of real time");
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// One of two outcomes.
#[derive(Debug)]
pub enum Either<A, B> {
    /// The first future finished first.
    Left(A),
    /// The second future finished first.
    Right(B),
}

/// Polls both futures (the first one first) and returns the first to finish; the other is dropped.
pub async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(x) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(x));
        }
        if let Poll::Ready(y) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(y));
        }
        Poll::Pending
    })
    .await
}

/// Runs both futures to completion concurrently.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(x) = a.as_mut().poll(cx) {
                ra = Some(x);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(y) = b.as_mut().poll(cx) {
                rb = Some(y);
            }
        }
        if ra.is_some() && rb.is_some() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    (ra.expect("polled to completion"), rb.expect("polled to completion"))
}

/// Runs every future to completion concurrently, returning the outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(x) => *output = Some(x),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("polled to completion")).collect()
}

/// Polls `future` exactly once: its output if it was ready, `None` if it was pending (the future
/// is then dropped, which is the cancellation under test).
pub async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    poll_fn(|cx| {
        Poll::Ready(match future.as_mut().poll(cx) {
            Poll::Ready(x) => Some(x),
            Poll::Pending => None,
        })
    })
    .await
}

/// Yields to the scheduler once.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// An unbounded multi-producer queue that one task awaits: how handlers and per-connection tasks
/// report back to the test body, on any runtime.
pub struct Inbox<T> {
    inner: Arc<Mutex<(VecDeque<T>, Option<Waker>)>>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self { inner: Arc::new(Mutex::new((VecDeque::new(), None))) }
    }
}

impl<T> Inbox<T> {
    /// Adds an item and wakes the waiting task.
    pub fn push(&self, item: T) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.push_back(item);
        if let Some(w) = inner.1.take() {
            w.wake();
        }
    }

    /// The next item, waiting for one.
    pub async fn next(&self) -> T {
        poll_fn(|cx| {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            match inner.0.pop_front() {
                Some(item) => Poll::Ready(item),
                None => {
                    inner.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next item if one waits.
    pub fn try_next(&self) -> Option<T> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.pop_front()
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    /// Whether no item waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads once from `io`.
pub async fn read_some<S: AsyncRead + Unpin>(io: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, buf)).await
}

/// Writes once to `io`.
pub async fn write_some<S: AsyncWrite + Unpin>(io: &mut S, buf: &[u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, buf)).await
}

/// Writes all of `buf` to `io` and flushes.
pub async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write_some(io, buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await
}

// ---- a WebSocket peer written by hand ---------------------------------------------------------------

/// The RFC 6455 section 1.3 example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The URL of a server.
pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// An upgrade request written by hand: `method`, the `Sec-WebSocket-Version` value (`None` leaves
/// the header out), whether to send `Upgrade: websocket`, and an optional `Origin`.
pub fn upgrade_request(
    addr: SocketAddr,
    method: &str,
    version: Option<&str>,
    upgrade: bool,
    origin: Option<&str>,
) -> Vec<u8> {
    let mut r = format!("{method} /chat HTTP/1.1\r\nHost: {addr}\r\n");
    if upgrade {
        r.push_str("Upgrade: websocket\r\n");
    }
    r.push_str("Connection: Upgrade\r\n");
    r.push_str(&format!("Sec-WebSocket-Key: {KEY}\r\n"));
    if let Some(v) = version {
        r.push_str(&format!("Sec-WebSocket-Version: {v}\r\n"));
    }
    if let Some(o) = origin {
        r.push_str(&format!("Origin: {o}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A frame as a client sends it: masked with `key` (an all-zero key leaves the payload as is, which
/// keeps multi-megabyte tests cheap).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
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
    if key != [0; 4] {
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    out
}

/// A frame received from the server (servers do not mask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: u8,
    /// Whether the MASK bit was set (a server must never set it).
    pub masked: bool,
    /// The payload.
    pub payload: Vec<u8>,
}

/// An HTTP response read off a raw socket.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, name and value.
    pub headers: Vec<(String, String)>,
    /// The body (per `Content-Length`).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw TCP client that speaks WebSocket by hand.
pub struct RawClient<S> {
    /// The socket.
    pub io: S,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// The peer closed its side.
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Wraps a connected socket.
    pub fn new(io: S) -> Self {
        Self { io, buf: Vec::new(), eof: false }
    }

    /// Reads more bytes into the buffer; false at end of stream (or on a reset).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        match read_some(&mut self.io, &mut chunk).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Sends bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        write_all(&mut self.io, bytes).await
    }

    /// Reads an HTTP response head and its `Content-Length` body.
    pub async fn read_response(&mut self) -> HttpResponse {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await, "the server closed before a whole response head: {:?}", self.text());
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("an ASCII response head");
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status = parts.next().and_then(|s| s.parse().ok()).expect("a status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("a header line");
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut response = HttpResponse { status, headers, body: Vec::new() };
        let len: usize = response.header("Content-Length").map_or(0, |v| v.parse().expect("a numeric Content-Length"));
        while self.buf.len() < len {
            assert!(self.fill().await, "the server closed before the whole body");
        }
        response.body = self.buf.drain(..len).collect();
        response
    }

    /// Whether the server closes the connection with nothing more to read (within `limit` on the
    /// runtime's clock).
    pub async fn closed_within<T: TestRuntime>(&mut self, limit: Duration) -> bool {
        let more = within::<T, _>(limit, "the server's end of stream", async {
            let mut extra = 0;
            while self.fill().await {
                extra += self.buf.len();
                self.buf.clear();
            }
            extra
        })
        .await;
        more == 0 && self.buf.is_empty()
    }

    /// The buffered bytes as text, for messages.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Performs the opening handshake and checks the 101 and its accept key.
    pub async fn upgrade(&mut self, addr: SocketAddr) {
        self.send(&upgrade_request(addr, "GET", Some("13"), true, None)).await.expect("the request was written");
        let response = self.read_response().await;
        assert_eq!(response.status, 101, "{response:?}");
        assert_eq!(response.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    }

    /// The next `n` bytes from the server, as they came off the socket.
    pub async fn read_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "the server closed after {} of {n} bytes", self.buf.len());
        }
        self.buf.drain(..n).collect()
    }

    /// The next frame from the server; `None` at end of stream.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }
}

/// Parses one frame from the start of `buf`, if it holds a whole one.
fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut at) = match b1 & 0x7F {
        126 => (usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)), 4),
        127 => (usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?, 10),
        n => (usize::from(n), 2),
    };
    let masked = b1 & 0x80 != 0;
    let key: Option<[u8; 4]> = if masked {
        let k = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(k)
    } else {
        None
    };
    let mut payload = buf.get(at..at + len)?.to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    Some((Frame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, masked, payload }, at + len))
}

/// Connects a raw client and upgrades it.
pub async fn raw_upgraded<T: TestRuntime>(addr: SocketAddr) -> RawClient<T::Stream> {
    let mut client = RawClient::new(T::tcp(addr).await.expect("the TCP connect succeeded"));
    client.upgrade(addr).await;
    client
}

/// Sends a hand-written request on a fresh connection and reads the response.
async fn raw_request<T: TestRuntime>(addr: SocketAddr, request: &[u8]) -> (HttpResponse, RawClient<T::Stream>) {
    let mut client = RawClient::new(T::tcp(addr).await.expect("the TCP connect succeeded"));
    client.send(request).await.expect("the request was written");
    let response = within::<T, _>(Duration::from_secs(10), "the response", client.read_response()).await;
    (response, client)
}

// ---- servers and handlers used by the tests -----------------------------------------------------------

/// What the test handlers report about the server's connections.
#[derive(Clone, Default)]
pub struct Probe {
    /// A handle per opened connection.
    pub handles: Inbox<Handle>,
    /// How each connection ended (from `on_close`).
    pub closes: Inbox<CloseInfo>,
    /// Messages received.
    pub messages: Arc<AtomicUsize>,
    /// Payload bytes received.
    pub bytes: Arc<AtomicUsize>,
    /// When the last message was received, on the runtime's clock.
    pub last_message_at: Arc<Mutex<Option<Instant>>>,
    /// The most output the server had queued right after an echo (`Ctx::buffered_amount`).
    pub max_buffered: Arc<AtomicUsize>,
    /// Calls to `on_connect`.
    pub connects: Arc<AtomicUsize>,
}

/// Echoes every message and reports to its [`Probe`].
pub struct EchoHandler {
    probe: Probe,
    /// The runtime's clock ([`now`]).
    clock: fn() -> Instant,
}

impl Handler for EchoHandler {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        self.probe.handles.push(ctx.handle());
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        self.probe.messages.fetch_add(1, Ordering::SeqCst);
        self.probe.bytes.fetch_add(message.len(), Ordering::SeqCst);
        *self.probe.last_message_at.lock().unwrap_or_else(|e| e.into_inner()) = Some((self.clock)());
        ctx.send(&message)?;
        self.probe.max_buffered.fetch_max(ctx.buffered_amount(), Ordering::SeqCst);
        Ok(())
    }

    fn on_close(&mut self, info: &CloseInfo) {
        self.probe.closes.push(info.clone());
    }
}

/// A callback-API echo server reporting to `probe`.
pub async fn echo_server<T: TestRuntime>(options: Options, probe: &Probe) -> T::Server {
    T::serve(options, echo_factory::<T>(probe)).await
}

/// The factory of [`echo_server`]: an [`EchoHandler`] reporting to `probe` for every upgrade.
pub fn echo_factory<T: TestRuntime>(
    probe: &Probe,
) -> impl Fn(&Request, &mut ferrule::Acceptance) -> Result<EchoHandler, Rejection> + Send + Sync + 'static {
    let probe = probe.clone();
    move |_, _| {
        probe.connects.fetch_add(1, Ordering::SeqCst);
        Ok(EchoHandler { probe: probe.clone(), clock: now::<T> })
    }
}

/// The driver's high-water mark for its unsent output: above it, it stops reading.
const HIGH_WATER: usize = 256 * 1024;

/// On the paused clock, writes `frame` over and over to an echo server reporting to `probe`,
/// without reading, until the server has stopped reading: its output passed its high-water mark,
/// and for 300 ms (with every task idle) the writes made no progress and it consumed nothing.
/// Returns how many bytes were written.
///
/// TCP's timers run in real time, so even then the kernel can let a little more of the server's
/// output through some 200 ms of real time later, and the server reads that much more.
async fn flood_until_the_server_stops_reading<T: TestRuntime, S: AsyncWrite + Unpin>(
    io: &mut S,
    frame: &[u8],
    probe: &Probe,
) -> usize {
    const ATTEMPT: usize = 64 << 20;
    const WINDOW: Duration = Duration::from_millis(300);
    let mut written = 0usize;
    let mut stalled = Duration::ZERO;
    loop {
        assert!(written < ATTEMPT, "{ATTEMPT} bytes written without backpressure: the server buffers everything");
        let at = written % frame.len();
        let consumed = probe.bytes.load(Ordering::SeqCst);
        match select(write_some(io, &frame[at..]), sleep::<T>(WINDOW)).await {
            Either::Left(n) => {
                written += n.expect("the write succeeded");
                stalled = Duration::ZERO;
            }
            Either::Right(()) if probe.bytes.load(Ordering::SeqCst) == consumed => {
                let queued = probe.max_buffered.load(Ordering::SeqCst);
                if queued >= HIGH_WATER {
                    return written;
                }
                stalled += WINDOW;
                assert!(stalled < Duration::from_secs(60), "the server stopped reading with {queued} bytes queued");
            }
            // The server still consumes what it had received.
            Either::Right(()) => {}
        }
    }
}

/// A channel-API echo server (a plain recv/send loop).
pub async fn channel_echo_server<T: TestRuntime, M: Codec>(options: Options) -> T::Server {
    T::serve_channels(options, |_request, mut channels: Channels<M>| async move {
        while let Some(message) = channels.receiver.recv().await {
            if channels.sender.send(message).await.is_err() {
                break;
            }
        }
    })
    .await
}

/// A channel-API server that hands each connection's channels to the test body.
pub async fn handover_server<T: TestRuntime, M: Codec>(options: Options, inbox: &Inbox<Channels<M>>) -> T::Server {
    let inbox = inbox.clone();
    T::serve_channels(options, move |_request, channels: Channels<M>| {
        inbox.push(channels);
        async {}
    })
    .await
}

/// Connects with default options and returns the channels.
pub async fn connect_channels<T: TestRuntime, M: Codec>(addr: SocketAddr) -> Channels<M> {
    connect_with::<T, M>(addr, &Options::default()).await
}

/// Connects with `options` and returns the channels.
pub async fn connect_with<T: TestRuntime, M: Codec>(addr: SocketAddr, options: &Options) -> Channels<M> {
    T::connect(&url(addr), options).await.expect("the client connected").channels::<M>()
}

/// Awaits a connection's end within 10 s of the runtime's clock.
async fn done_within<T: TestRuntime>(done: impl Future<Output = CloseInfo>) -> CloseInfo {
    within::<T, _>(Duration::from_secs(10), "the connection's end", done).await
}

fn code(info: &CloseInfo) -> u16 {
    info.code.as_u16()
}

/// Messages of every shape an echo must keep intact: empty, ASCII, multi-byte UTF-8, around the
/// 125/126 and 65535/65536 length encodings.
fn text_messages() -> Vec<String> {
    let mut out = vec![String::new(), "hello".to_owned(), "κόσμε 🦀 ünïcödé".to_owned()];
    for n in [125, 126, 127, 65_535, 65_536, 100_000] {
        out.push((0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect());
    }
    out
}

fn binary_messages() -> Vec<Bytes> {
    let mut out = vec![Bytes::new(), Bytes::from_static(&[0, 0xFF, 0x80, 0x7F])];
    for n in [125, 126, 65_536, 200_003] {
        out.push((0..n).map(|i| (i * 7 % 256) as u8).collect::<Vec<u8>>().into());
    }
    out
}

// ---- 1. echo -------------------------------------------------------------------------------------------

/// Text messages of every length encoding come back from a callback-API echo server intact and in
/// order, through the client's channel API.
pub async fn callback_server_echoes_text<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    let sent = text_messages();
    for m in &sent {
        client.sender.send(m.clone()).await.expect("sent");
    }
    for m in &sent {
        assert_eq!(client.receiver.recv().await.as_ref(), Some(m));
    }
    assert_eq!(probe.messages.load(Ordering::SeqCst), sent.len());
    client.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
    let info = done_within::<T>(client.done).await;
    assert!(info.was_clean && code(&info) == 1000, "{info:?}");
}

/// Binary messages (all byte values, every length encoding) come back from a callback-API echo
/// server intact and in order.
pub async fn callback_server_echoes_binary<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut client = connect_channels::<T, Bytes>(addr(&server)).await;
    let sent = binary_messages();
    for m in &sent {
        client.sender.send(m.clone()).await.expect("sent");
    }
    for m in &sent {
        assert_eq!(client.receiver.recv().await.as_ref(), Some(m));
    }
    assert_eq!(probe.bytes.load(Ordering::SeqCst), sent.iter().map(Bytes::len).sum::<usize>());
}

/// Text messages come back from a channel-API echo server (recv/send loop) intact and in order.
pub async fn channel_server_echoes_text<T: TestRuntime>() {
    let server = channel_echo_server::<T, String>(Options::default()).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    let sent = text_messages();
    for m in &sent {
        client.sender.send(m.clone()).await.expect("sent");
    }
    for m in &sent {
        assert_eq!(client.receiver.recv().await.as_ref(), Some(m));
    }
}

/// Binary messages come back from a channel-API echo server intact and in order; a text message
/// sent to the binary channel is skipped and reported, and the connection stays up.
pub async fn channel_server_echoes_binary<T: TestRuntime>() {
    let server = channel_echo_server::<T, Bytes>(Options::default()).await;
    let mut client = connect_channels::<T, Message>(addr(&server)).await;
    client.sender.send(Message::text("not binary")).await.expect("sent");
    let sent = binary_messages();
    for m in &sent {
        client.sender.send(Message::Binary(m.clone())).await.expect("sent");
    }
    for m in &sent {
        assert_eq!(client.receiver.recv().await, Some(Message::Binary(m.clone())));
    }
}

/// Both sides use the channel API, and the client sends 10,000 numbered messages without waiting
/// for replies, so that reads carry many messages at once, which are delivered together. With
/// receive bounds of 1, 8 and 256 messages, the receivers reach their bound again and again, or
/// find earlier deliveries still waiting. Every reply comes back exactly once, in order.
pub async fn channel_echo_keeps_order_through_bursts_at_any_bound<T: TestRuntime>() {
    const N: u64 = 10_000;
    for bound in [1, 8, 256] {
        let options = Options::builder().recv_buffer(Bound::new(bound, 64 * 1024)).build().expect("valid");
        let server = channel_echo_server::<T, Bytes>(options.clone()).await;
        let Channels { mut receiver, sender, .. } = connect_with::<T, Bytes>(addr(&server), &options).await;
        let send_all = async {
            for i in 0..N {
                sender.send(numbered(i, 24)).await.expect("sent");
            }
        };
        let receive_all = async {
            for i in 0..N {
                let reply = receiver.recv().await.unwrap_or_else(|| panic!("the connection ended after {i} replies"));
                assert_eq!(reply, numbered(i, 24), "bound {bound}: reply {i} lost, duplicated or reordered");
            }
        };
        within::<T, _>(HEAVY, "10,000 pipelined round trips", join(send_all, receive_all)).await;
    }
}

/// A serde struct travels as `Json<T>` through a channel-API server with a `select!`-style loop
/// over messages and errors; a message that is not JSON goes to the server's error stream and the
/// connection stays up.
pub async fn channel_server_echoes_json_and_reports_undecodable_messages<T: TestRuntime>() {
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    struct Point {
        x: i64,
        y: i64,
        label: String,
    }
    let decode_errors = Inbox::<String>::default();
    let reported = decode_errors.clone();
    let server = T::serve_channels(Options::default(), move |_request, mut channels: Channels<Json<Point>>| {
        let reported = reported.clone();
        async move {
            loop {
                match select(channels.receiver.recv(), channels.errors.recv()).await {
                    Either::Left(Some(Json(mut p))) => {
                        p.x += 1;
                        if channels.sender.send(Json(p)).await.is_err() {
                            break;
                        }
                    }
                    Either::Right(Some(e)) => reported.push(e.to_string()),
                    Either::Left(None) | Either::Right(None) => break,
                }
            }
        }
    })
    .await;
    let mut client = connect_channels::<T, Json<Point>>(addr(&server)).await;
    let points: Vec<Point> = (0..20).map(|i| Point { x: i, y: -i, label: format!("p{i} ✓") }).collect();
    client.sender.handle().send("{not json").await.expect("sent");
    for p in &points {
        client.sender.send(Json(p.clone())).await.expect("sent");
    }
    for p in &points {
        let Some(Json(got)) = client.receiver.recv().await else { panic!("the connection ended") };
        assert_eq!(got, Point { x: p.x + 1, ..p.clone() });
    }
    let error = within::<T, _>(Duration::from_secs(5), "the decode error", decode_errors.next()).await;
    assert!(error.contains("not valid JSON"), "{error}");
}

/// Runs `handler` as a ferrule client of an echo server with default options until the
/// connection ends; returns how it ended, the server's probe, and the server (kept alive).
async fn run_client_against_echo<T: TestRuntime, H: Handler>(handler: H) -> (CloseInfo, Probe, T::Server) {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let upgraded = T::connect(&url(addr(&server)), &Options::default()).await.expect("connected");
    let info = within::<T, _>(Duration::from_secs(10), "the client run", upgraded.run(handler)).await;
    (info, probe, server)
}

/// A handler streams a message in fragments with `Ctx::send_fragment` (text split inside a
/// character, a ping in between): the echo server reassembles it and sends it back whole; a
/// fragment of the wrong kind or invalid text is refused with `Error::Send` and sends nothing.
pub async fn client_handler_streams_a_fragmented_message<T: TestRuntime>() {
    struct Streamer {
        refusals: Vec<String>,
        seen: Inbox<(Vec<String>, String)>,
    }
    impl Handler for Streamer {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
            let text = "κόσμε, world".as_bytes();
            ctx.send_fragment(MessageKind::Text, &text[..1], false)?;
            for refused in [
                ctx.send_fragment(MessageKind::Binary, b"wrong kind", false),
                ctx.send_fragment(MessageKind::Text, &[0xFF], false),
            ] {
                match refused {
                    Err(Error::Send(e)) => self.refusals.push(e.to_string()),
                    other => return Err(HandlerError::internal(format!("expected a refusal, got {other:?}"))),
                }
            }
            ctx.ping(b"between")?;
            ctx.send_fragment(MessageKind::Text, &text[1..5], false)?;
            ctx.send_fragment(MessageKind::Text, &text[5..], true)?;
            Ok(())
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            let Message::Text(t) = message else { return Err(HandlerError::internal("binary")) };
            self.seen.push((std::mem::take(&mut self.refusals), t.to_string()));
            ctx.close(CloseCode::NORMAL, "done")?;
            Ok(())
        }
    }
    let seen = Inbox::default();
    let (info, _probe, _server) =
        run_client_against_echo::<T, _>(Streamer { refusals: Vec::new(), seen: seen.clone() }).await;
    assert!(info.was_clean && code(&info) == 1000, "{info:?}");
    let (refusals, echoed) = seen.next().await;
    assert_eq!(echoed, "κόσμε, world", "the echo is the whole message");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
}

/// Messages sent through a [`Handle`] while the handler has a fragmented message open wait for
/// its last fragment, then go out in order; a message the handler itself sends meanwhile is
/// refused with `Error::Send`; a close sent meanwhile is not held back.
pub async fn handle_sends_wait_for_the_handlers_fragmented_message<T: TestRuntime>() {
    struct Streamer;
    impl Handler for Streamer {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            let Message::Text(t) = message else { return Err(HandlerError::internal("binary")) };
            match t.as_str() {
                "open" => {
                    ctx.send_fragment(MessageKind::Text, b"first ", false)?;
                    // Queued while the message is open, and taken by the driver on later turns.
                    let handle = ctx.handle();
                    handle.try_send("queued 1").map_err(|e| HandlerError::internal(e.to_string()))?;
                    handle.try_send("queued 2").map_err(|e| HandlerError::internal(e.to_string()))?;
                    ctx.ping(b"meanwhile")?;
                    match ctx.send_text("not now") {
                        Err(Error::Send(ferrule_core::SendError::FragmentedMessageInProgress)) => {}
                        other => return Err(HandlerError::internal(format!("expected a refusal, got {other:?}"))),
                    }
                }
                "more" => ctx.send_fragment(MessageKind::Text, b"second ", false)?,
                "end" => ctx.send_fragment(MessageKind::Text, b"last", true)?,
                "open again" => {
                    ctx.send_fragment(MessageKind::Binary, b"never finished", false)?;
                    ctx.handle().close(CloseCode::new(4002), "closed mid-message")?;
                }
                other => ctx.send_text(other)?,
            }
            Ok(())
        }
    }
    let server = T::serve(Options::default(), |_: &Request, _: &mut ferrule::Acceptance| Ok(Streamer)).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    client.sender.send("open".to_owned()).await.expect("sent");
    // Give the driver turns with the message open and the handle's messages queued.
    sleep::<T>(Duration::from_millis(20)).await;
    client.sender.send("more".to_owned()).await.expect("sent");
    sleep::<T>(Duration::from_millis(20)).await;
    client.sender.send("end".to_owned()).await.expect("sent");
    let mut received = Vec::new();
    for _ in 0..3 {
        let next = within::<T, _>(Duration::from_secs(10), "a message", client.receiver.recv()).await;
        received.push(next.expect("a message, not the end of the connection"));
    }
    assert_eq!(received, ["first second last", "queued 1", "queued 2"]);
    client.sender.send("echo".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("echo"), "the handler sends again");
    client.sender.send("open again".to_owned()).await.expect("sent");
    let info = done_within::<T>(client.done.clone()).await;
    assert_eq!((code(&info), info.reason.as_str()), (4002, "closed mid-message"), "{info:?}");
    assert_eq!(client.receiver.recv().await, None, "the unfinished message is not delivered");
}

/// A `MessageWriter` streams a message in fragments: the echo server gets it whole. While it
/// is open, other sends on the connection wait (`send` stays pending, `try_send` reports
/// `Full`, a second writer waits), and they go out after it; a fragment of the other kind is
/// refused; dropping a writer before its first fragment sends nothing.
pub async fn handle_message_writer_streams_while_other_sends_wait<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    let handle = client.sender.handle().clone();

    drop(handle.start_message(MessageKind::Binary).await.expect("started"));
    let mut writer = handle.start_message(MessageKind::Text).await.expect("started");
    assert_eq!(writer.kind(), MessageKind::Text);
    writer.write("κόσ").await.expect("first fragment");
    assert!(poll_once(handle.send("waits")).await.is_none(), "a send waits while the message is open");
    assert!(matches!(handle.try_send("full"), Err(TrySendError::Full(_))));
    assert!(poll_once(handle.start_message(MessageKind::Text)).await.is_none(), "one writer at a time");
    match writer.write(Bytes::from_static(b"binary")).await {
        Err(Error::Send(ferrule_core::SendError::FragmentKindMismatch)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    writer.write("με").await.expect("second fragment");
    writer.write("").await.expect("an empty fragment");
    let after = async {
        // Waits for the writer, then goes out after its message.
        handle.send("after").await.expect("sent after the message");
    };
    let finish = async {
        sleep::<T>(Duration::from_millis(20)).await;
        writer.finish(", world").await.expect("last fragment");
    };
    join(after, finish).await;
    match writer.write("more").await {
        Err(Error::Send(ferrule_core::SendError::NoFragmentedMessageInProgress)) => {}
        other => panic!("expected a refusal after finish, got {other:?}"),
    }
    for expected in ["κόσμε, world", "after"] {
        let got = within::<T, _>(Duration::from_secs(10), "an echo", client.receiver.recv()).await;
        assert_eq!(got.as_deref(), Some(expected));
    }
    assert_eq!(probe.messages.load(Ordering::SeqCst), 2, "the server got two messages, not fragments");
    drop(writer);
    client.sender.send("still open".to_owned()).await.expect("sent");
    let got = within::<T, _>(Duration::from_secs(10), "an echo", client.receiver.recv()).await;
    assert_eq!(got.as_deref(), Some("still open"), "a finished writer's drop closes nothing");
}

/// A `MessageWriter` dropped after its first fragment and before its last closes the
/// connection with 1011: the peer never takes the start of the message for a whole one.
pub async fn handle_message_writer_dropped_unfinished_closes_1011<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut client = connect_channels::<T, Bytes>(addr(&server)).await;
    let mut writer = client.sender.handle().start_message(MessageKind::Binary).await.expect("started");
    writer.write(Bytes::from_static(b"the start")).await.expect("first fragment");
    drop(writer);
    let info = done_within::<T>(client.done.clone()).await;
    assert!(info.was_clean && code(&info) == 1011, "{info:?}");
    let server_side = done_within::<T>(probe.closes.next()).await;
    assert_eq!((code(&server_side), server_side.reason.as_str()), (1011, "message left unfinished"), "{server_side:?}");
    assert_eq!(probe.messages.load(Ordering::SeqCst), 0, "no message reached the server's handler");
    assert_eq!(client.receiver.recv().await, None);
}

/// While a server-side `MessageWriter` streams a message, the callback handler's own sends
/// wait and go out after it, in order, and its `send_fragment` is refused; a ping goes through.
pub async fn handler_sends_wait_for_a_handle_writers_message<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    let handle = within::<T, _>(Duration::from_secs(10), "the server's handle", probe.handles.next()).await;
    let mut writer = handle.start_message(MessageKind::Text).await.expect("started");
    writer.write("streamed ").await.expect("first fragment");
    for text in ["echo 1", "echo 2"] {
        client.sender.send(text.to_owned()).await.expect("sent");
    }
    // Both echoes reach the handler while the message is open: they wait behind it.
    wait_until::<T>("both messages reached the server", || probe.messages.load(Ordering::SeqCst) == 2).await;
    handle.ping(Bytes::from_static(b"meanwhile")).expect("pings go through");
    writer.finish("message").await.expect("last fragment");
    for expected in ["streamed message", "echo 1", "echo 2"] {
        let got = within::<T, _>(Duration::from_secs(10), "a message", client.receiver.recv()).await;
        assert_eq!(got.as_deref(), Some(expected));
    }
}

/// A server-side `MessageWriter` finishes its message even after the echo handler's replies
/// held back behind it have passed the driver's 256 KiB output mark: the writer's fragments are
/// still taken, and the replies follow its message.
pub async fn handle_message_writer_finishes_behind_a_large_backlog_of_handler_sends<T: TestRuntime>() {
    const MESSAGE: usize = 64 * 1024;
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut client = connect_channels::<T, Message>(addr(&server)).await;
    let handle = within::<T, _>(Duration::from_secs(10), "the server's handle", probe.handles.next()).await;
    let mut writer = handle.start_message(MessageKind::Text).await.expect("started");
    writer.write("start ").await.expect("first fragment");
    for _ in 0..6 {
        client.sender.send(Message::binary(vec![7u8; MESSAGE])).await.expect("sent");
    }
    wait_until::<T>("256 KiB of replies held back", || probe.bytes.load(Ordering::SeqCst) >= 4 * MESSAGE).await;
    writer.finish("end").await.expect("last fragment");
    let got = within::<T, _>(Duration::from_secs(10), "the writer's message", client.receiver.recv()).await;
    assert_eq!(got, Some(Message::text("start end")));
    for _ in 0..6 {
        let got = within::<T, _>(Duration::from_secs(10), "an echo", client.receiver.recv()).await;
        assert_eq!(got.map(|m| m.len()), Some(MESSAGE));
    }
}

/// A message queued through a `Handle` before the handler closes with `Ctx::close` goes out
/// before the close frame, as it does before `Handle::close`.
pub async fn handle_message_queued_before_ctx_close_is_sent_first<T: TestRuntime>() {
    struct Closer;
    impl Handler for Closer {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, _message: Message) -> Result<(), HandlerError> {
            ctx.handle().try_send("bye").map_err(|e| HandlerError::internal(e.to_string()))?;
            ctx.close(CloseCode::NORMAL, "done")?;
            Ok(())
        }
    }
    let server = T::serve(Options::default(), |_: &Request, _: &mut ferrule::Acceptance| Ok(Closer)).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    client.sender.send("hi".to_owned()).await.expect("sent");
    let got = within::<T, _>(Duration::from_secs(10), "the reply", client.receiver.recv()).await;
    assert_eq!(got.as_deref(), Some("bye"));
    let info = done_within::<T>(client.done.clone()).await;
    assert!(info.was_clean && code(&info) == 1000, "{info:?}");
}

/// Dropping the channels while the receive bound holds unread messages still completes the
/// closing handshake: the server reads the peer's reply and ends with a clean 1001, not after
/// its close timeout with 1006.
pub async fn receiver_dropped_at_its_bound_still_closes_cleanly<T: TestRuntime>() {
    let inbox = Inbox::<Channels<String>>::default();
    let options = Options::builder().recv_buffer(Bound::new(2, 1 << 20)).build().expect("valid");
    let server = handover_server::<T, String>(options, &inbox).await;
    let client = connect_channels::<T, String>(addr(&server)).await;
    let channels = inbox.next().await;
    for i in 0..10 {
        client.sender.send(format!("m{i}")).await.expect("sent");
    }
    // The server takes two and stops reading at its bound; nobody receives them.
    sleep::<T>(Duration::from_millis(200)).await;
    let done = channels.done.clone();
    let started = now::<T>();
    drop(channels);
    let client_side = done_within::<T>(client.done.clone()).await;
    assert!(client_side.was_clean && code(&client_side) == 1001, "{client_side:?}");
    let server_side = done_within::<T>(done).await;
    assert!(server_side.was_clean && code(&server_side) == 1001, "{server_side:?}");
    assert!(now::<T>() - started < Duration::from_secs(4), "ended at the close timeout");
}

/// `Handle::close` to a peer that stopped reading, with the server's output past its 256 KiB
/// mark and write timeouts off, still ends the connection at the close timeout.
pub async fn close_to_a_peer_that_stopped_reading_ends_at_the_close_timeout<T: TestRuntime>() {
    const MESSAGE: usize = 64 * 1024;
    let probe = Probe::default();
    let options =
        Options::builder().write_wait(Duration::ZERO).close_timeout(Duration::from_secs(1)).build().expect("valid");
    let server = echo_server::<T>(options, &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let handle = probe.handles.next().await;
    let frame = client_frame(true, 0x2, &[0x5A; MESSAGE], [0; 4]);
    // Write echo requests until the server stops reading (its output is full and we never read).
    let written = flood_until_the_server_stops_reading::<T, _>(&mut raw.io, &frame, &probe).await;
    assert!(written > 512 * 1024, "the server's output passed its mark: {written} bytes written");
    handle.close(CloseCode::GOING_AWAY, "bye").expect("close requested");
    let info = within::<T, _>(Duration::from_secs(6), "the end at the close timeout", probe.closes.next()).await;
    assert!(!info.was_clean && code(&info) == 1006, "{info:?}");
}

/// A client run with the callback API (`Upgraded::run`) sends from `on_open`, gets every echo in
/// `on_message`, closes from there, and `run` returns a clean 1000.
pub async fn client_handler_run_receives_echo_and_closes_cleanly<T: TestRuntime>() {
    struct Client {
        got: Vec<String>,
        seen: Inbox<Vec<String>>,
    }
    impl Handler for Client {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
            for i in 0..10 {
                ctx.send_text(&format!("m{i}"))?;
            }
            Ok(())
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            let Message::Text(t) = message else { return Err(HandlerError::internal("binary")) };
            self.got.push(t.to_string());
            if self.got.len() == 10 {
                ctx.close(CloseCode::NORMAL, "enough")?;
            }
            Ok(())
        }
        fn on_close(&mut self, _info: &CloseInfo) {
            self.seen.push(std::mem::take(&mut self.got));
        }
    }
    let seen = Inbox::default();
    let (info, probe, _server) = run_client_against_echo::<T, _>(Client { got: Vec::new(), seen: seen.clone() }).await;
    assert!(info.was_clean && code(&info) == 1000, "{info:?}");
    let got = seen.next().await;
    assert_eq!(got, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let server_side = done_within::<T>(probe.closes.next()).await;
    assert!(server_side.was_clean && code(&server_side) == 1000 && server_side.reason == "enough", "{server_side:?}");
}

/// A client run (`Upgraded::run`) dropped mid-connection, as a runtime shutting down drops its
/// tasks, still tells its handler: `on_close` runs once, as an abnormal 1006 closure; the server
/// sees the transport vanish.
pub async fn client_handler_dropped_mid_connection_gets_on_close_1006<T: TestRuntime>() {
    struct Client {
        echoed: Arc<AtomicUsize>,
        closes: Inbox<CloseInfo>,
    }
    impl Handler for Client {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
            ctx.send_text("hello")?;
            Ok(())
        }
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, _message: Message) -> Result<(), HandlerError> {
            self.echoed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn on_close(&mut self, info: &CloseInfo) {
            self.closes.push(info.clone());
        }
    }
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let upgraded = T::connect(&url(addr(&server)), &Options::default()).await.expect("connected");
    let echoed = Arc::new(AtomicUsize::new(0));
    let closes = Inbox::default();
    let handler = Client { echoed: echoed.clone(), closes: closes.clone() };
    {
        let mut run = pin!(upgraded.run(handler));
        let echo_seen = poll_fn(|cx| {
            if let Poll::Ready(info) = run.as_mut().poll(cx) {
                panic!("the run ended early: {info:?}");
            }
            if echoed.load(Ordering::SeqCst) > 0 { Poll::Ready(()) } else { Poll::Pending }
        });
        within::<T, _>(Duration::from_secs(10), "the echo", echo_seen).await;
        assert!(closes.try_next().is_none(), "on_close waits for the end");
    }
    let info = closes.try_next().expect("on_close ran when the run was dropped");
    assert!(!info.was_clean && code(&info) == 1006, "{info:?}");
    assert!(closes.try_next().is_none(), "on_close runs once");
    let server_side = done_within::<T>(probe.closes.next()).await;
    assert!(!server_side.was_clean && code(&server_side) == 1006, "{server_side:?}");
}

// ---- 2. fragmentation and big messages ------------------------------------------------------------------

/// A text message in three fragments that split a multi-byte character, with a ping between
/// fragments, is reassembled and echoed whole; the ping is answered before the echo.
pub async fn server_reassembles_fragmented_text_with_interleaved_ping<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let text = "Hellé wörld";
    let bytes = text.as_bytes();
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut wire = client_frame(false, 0x1, &bytes[..5], key); // "Hell" + the first byte of "é"
    wire.extend(client_frame(true, 0x9, b"mid", key));
    wire.extend(client_frame(false, 0x0, &bytes[5..9], key));
    wire.extend(client_frame(true, 0x0, &bytes[9..], key));
    raw.send(&wire).await.expect("written");
    let pong = raw.read_frame().await.expect("a pong");
    assert_eq!((pong.fin, pong.opcode, pong.masked, pong.payload.as_slice()), (true, 0xA, false, &b"mid"[..]));
    let echo = raw.read_frame().await.expect("the echo");
    assert_eq!((echo.fin, echo.opcode, echo.masked), (true, 0x1, false));
    assert_eq!(std::str::from_utf8(&echo.payload), Ok(text));
    assert_eq!(probe.messages.load(Ordering::SeqCst), 1);
}

/// A fragmented binary message with a 64-bit-length fragment, written one byte per write for its
/// headers, is reassembled and echoed whole.
pub async fn server_reassembles_fragments_delivered_byte_by_byte<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let payload: Vec<u8> = (0..70_010u32).map(|i| (i % 251) as u8).collect();
    let key = [1, 2, 3, 4];
    let parts = [&payload[..3], &payload[3..70_003], &payload[70_003..]];
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 { 0x2 } else { 0x0 };
        let frame = client_frame(i == parts.len() - 1, opcode, part, key);
        for byte in frame.iter().take(14) {
            raw.send(std::slice::from_ref(byte)).await.expect("written");
            yield_now().await;
        }
        raw.send(frame.get(14..).unwrap_or_default()).await.expect("written");
    }
    let echo = raw.read_frame().await.expect("the echo");
    assert_eq!((echo.fin, echo.opcode), (true, 0x2));
    assert!(echo.payload == payload, "the echo differs from the message ({} bytes)", echo.payload.len());
    assert_eq!(probe.messages.load(Ordering::SeqCst), 1);
}

/// A 16 MiB binary message goes client -> server and back intact when both ends raise
/// `max_message_size` above it.
pub async fn sixteen_mib_message_round_trips_both_ways<T: TestRuntime>() {
    let options =
        Options::builder().max_message_size(32 << 20).max_frame_size(32 << 20).build().expect("valid options");
    let probe = Probe::default();
    let server = echo_server::<T>(options.clone(), &probe).await;
    let mut client = connect_with::<T, Bytes>(addr(&server), &options).await;
    let big: Bytes = (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect::<Vec<u8>>().into();
    client.sender.send(big.clone()).await.expect("sent");
    let echo = within::<T, _>(HEAVY, "the echo", client.receiver.recv()).await.expect("an echo");
    assert_eq!(echo.len(), 16 << 20);
    assert!(echo == big, "the 16 MiB echo differs");
    assert_eq!(probe.bytes.load(Ordering::SeqCst), 16 << 20);
}

// ---- 3. keepalive ---------------------------------------------------------------------------------------

/// The keepalive settings of the tests below: (ping period, pong wait, slack).
fn keepalive_timing() -> (Duration, Duration, Duration) {
    (Duration::from_secs(10), Duration::from_secs(20), Duration::from_secs(1))
}

/// A peer that completes the handshake and then neither reads nor writes is dropped within
/// `ping_period + pong_wait` (on the paused clock: 10 s + 20 s of virtual time, no real waiting):
/// `on_close` and the done signal see 1006 unclean, and a keepalive ping was sent first.
pub async fn server_drops_silent_peer_within_ping_period_plus_pong_wait_with_1006<T: TestRuntime>() {
    let (ping_period, pong_wait, slack) = keepalive_timing();
    let options = Options::builder().ping_period(Some(ping_period)).pong_wait(pong_wait).build().expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let start = now::<T>();
    let handle = probe.handles.next().await;
    let info = within::<T, _>(ping_period + pong_wait + slack, "the silent peer's drop", handle.done()).await;
    let elapsed = now::<T>() - start;
    assert!(!info.was_clean && code(&info) == 1006, "{info:?}");
    assert!(elapsed >= pong_wait, "dropped after {elapsed:?}, before the pong wait");
    assert!(elapsed <= ping_period + pong_wait + slack, "dropped after {elapsed:?}");
    assert_eq!(probe.closes.next().await, info);
    // What the server sent while the peer was silent: a ping, before anything else.
    let first = raw.read_frame().await.expect("the server sent a keepalive ping");
    assert_eq!(first.opcode, 0x9, "{first:?}");
}

/// A ferrule client (which answers pings) stays connected to a server with short keepalive
/// settings for three times `ping_period + pong_wait`, so the drop above is the keepalive working.
pub async fn server_keeps_responsive_peer_past_several_ping_periods<T: TestRuntime>() {
    let (ping_period, pong_wait, _) = keepalive_timing();
    let options = Options::builder().ping_period(Some(ping_period)).pong_wait(pong_wait).build().expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    let handle = probe.handles.next().await;
    sleep::<T>((ping_period + pong_wait) * 3).await;
    assert!(!handle.is_closed(), "the server dropped a peer that answers pings");
    client.sender.send("still here".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("still here"));
}

/// With a read timeout, steady traffic keeps a connection for several timeouts (each message
/// moves the deadline later), and once the peer goes quiet the server drops it one timeout after
/// its last message: 1006, unclean.
pub async fn server_read_timeout_restarts_with_each_message_then_drops_a_quiet_peer<T: TestRuntime>() {
    // Short enough that the client's first keepalive ping (48 s) comes after the drop: the
    // server counts pings as traffic too.
    let (timeout, slack) = (Duration::from_secs(4), Duration::from_millis(500));
    // No keepalive from the server either: the client's pongs would count as traffic.
    let options = Options::builder().read_timeout(Some(timeout)).ping_period(None).build().expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    let handle = probe.handles.next().await;
    for i in 0..8 {
        sleep::<T>(timeout / 2).await;
        client.sender.send(i.to_string()).await.expect("sent");
        assert_eq!(client.receiver.recv().await, Some(i.to_string()));
    }
    assert!(!handle.is_closed(), "four timeouts of steady traffic, and the server dropped the peer");
    let quiet = now::<T>();
    let info = within::<T, _>(timeout + slack, "the quiet peer's drop", handle.done()).await;
    let elapsed = now::<T>() - quiet;
    assert!(!info.was_clean && code(&info) == 1006, "{info:?}");
    assert!(elapsed + slack >= timeout, "dropped {elapsed:?} after the last message, before the timeout");
}

/// Keepalive options with a receive bound of one message: a server whose channel task does not
/// read stops reading the socket after the first read.
fn keepalive_with_small_receive_bound() -> Options {
    let (ping_period, pong_wait, _) = keepalive_timing();
    Options::builder()
        .ping_period(Some(ping_period))
        .pong_wait(pong_wait)
        .recv_buffer(Bound::new(1, 1 << 20))
        .build()
        .expect("valid")
}

/// A channel-API server whose task falls behind (its receive bound is full, so the server stops
/// reading the socket) keeps a peer that answers its pings for three times
/// `ping_period + pong_wait`: the pongs wait unread behind the messages, and the pong wait stands
/// still while the server is the one not reading. Once the task reads, every message arrives in
/// order and the connection still echoes.
pub async fn server_behind_its_receiver_keeps_a_peer_that_answers_pings<T: TestRuntime>() {
    let (ping_period, pong_wait, _) = keepalive_timing();
    let inbox = Inbox::<Channels<String>>::default();
    let server = handover_server::<T, String>(keepalive_with_small_receive_bound(), &inbox).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    let mut channels = inbox.next().await;
    for i in 0..3 {
        client.sender.send(format!("m{i}")).await.expect("sent");
    }
    sleep::<T>((ping_period + pong_wait) * 3).await;
    assert_eq!(
        poll_once(channels.done.clone()).await,
        None,
        "the server dropped a peer that answers pings because its own task was behind"
    );
    for i in 0..3 {
        assert_eq!(channels.receiver.recv().await, Some(format!("m{i}")));
    }
    channels.sender.send("still here".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("still here"));
}

/// Standing still while the server's task is behind does not hide a dead peer: a peer that
/// never answers pings is kept while the task is behind, then dropped with 1006 within
/// `ping_period + pong_wait` of the task catching up, and not before `pong_wait`.
pub async fn server_behind_its_receiver_drops_a_silent_peer_once_caught_up<T: TestRuntime>() {
    let (ping_period, pong_wait, slack) = keepalive_timing();
    let inbox = Inbox::<Channels<String>>::default();
    let server = handover_server::<T, String>(keepalive_with_small_receive_bound(), &inbox).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let mut channels = inbox.next().await;
    for text in ["one", "two"] {
        raw.send(&client_frame(true, 0x1, text.as_bytes(), [1, 2, 3, 4])).await.expect("written");
    }
    sleep::<T>((ping_period + pong_wait) * 3).await;
    assert_eq!(poll_once(channels.done.clone()).await, None, "dropped while the server's own task was behind");
    let caught_up = now::<T>();
    assert_eq!(channels.receiver.recv().await.as_deref(), Some("one"));
    assert_eq!(channels.receiver.recv().await.as_deref(), Some("two"));
    // The task waits for more, as a receive loop does: the server reads again.
    let next =
        within::<T, _>(ping_period + pong_wait + slack, "the silent peer's drop", channels.receiver.recv()).await;
    assert_eq!(next, None, "the receiver ends with the connection");
    let elapsed = now::<T>() - caught_up;
    let info = poll_once(channels.done.clone()).await.expect("the connection ended");
    assert!(!info.was_clean && code(&info) == 1006, "{info:?}");
    assert!(elapsed + slack >= pong_wait, "dropped {elapsed:?} after the task caught up, before the pong wait");
}

/// The liveness clock stands still only for the server's own backlog of received messages, not
/// for the peer's: a peer that floods an echo server without reading the echoes, until the server
/// stops reading too, and then says nothing more is dropped within `ping_period + pong_wait` of
/// the last bytes the server read from it (write timeouts off, so the keepalive is what ends it):
/// 1006, unclean.
///
/// Measured from the last bytes read, not from when the flood stalled: TCP's timers run in real
/// time, and some 200 ms after the stall the kernel can let a little more of the server's output
/// through; the server then reads more of the flood, which is hearing the peer. Every such read
/// takes a whole chunk from a full receive buffer, so it delivers messages: the last message's
/// time is the last read's.
pub async fn server_drops_a_peer_that_stops_reading_and_answering_within_ping_period_plus_pong_wait<T: TestRuntime>() {
    let (ping_period, pong_wait, slack) = keepalive_timing();
    let options = Options::builder()
        .ping_period(Some(ping_period))
        .pong_wait(pong_wait)
        .write_wait(Duration::ZERO)
        .build()
        .expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let handle = probe.handles.next().await;
    let frame = client_frame(true, 0x2, &[0x5A; 16 * 1024], [0; 4]);
    let written = flood_until_the_server_stops_reading::<T, _>(&mut raw.io, &frame, &probe).await;
    assert!(written > 512 * 1024, "the server's output passed its mark: {written} bytes written");
    // A guard only: each read the kernel allows starts the wait again.
    let info = within::<T, _>((ping_period + pong_wait) * 10, "the drop of the peer", handle.done()).await;
    assert!(!info.was_clean && code(&info) == 1006, "{info:?}");
    let heard = probe.last_message_at.lock().unwrap_or_else(|e| e.into_inner()).expect("the server read the flood");
    let silence = now::<T>() - heard;
    assert!(silence <= ping_period + pong_wait + slack, "dropped {silence:?} after the server last heard the peer");
}

// ---- 4. slow reader -------------------------------------------------------------------------------------

/// A client that writes 16 KiB messages to an echo server and never reads its echoes cannot make
/// the server queue more than the driver's high-water mark (256 KiB) plus one read chunk (64 KiB)
/// of replies: the server stops reading (TCP backpressure reaches the client's writes, and what the
/// server consumed stops growing). Then the client drains while it keeps writing, several MiB go
/// through, every echo arrives, and the bound held throughout.
pub async fn slow_reader_cannot_grow_server_output_past_high_water<T: TestRuntime>() {
    const MESSAGE: usize = 16 * 1024;
    const BOUND: usize = HIGH_WATER + 64 * 1024 + MESSAGE + 64;
    let options = Options::builder()
        .send_buffer(Bound::new(4, 64 * 1024))
        .recv_buffer(Bound::new(4, 64 * 1024))
        .build()
        .expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let frame = client_frame(true, 0x2, &[0x5A; MESSAGE], [0; 4]);

    // Phase 1: write without reading until the server stops reading.
    let mut written = flood_until_the_server_stops_reading::<T, _>(&mut raw.io, &frame, &probe).await;
    let consumed = probe.bytes.load(Ordering::SeqCst);
    assert!(consumed < written, "the server consumed {consumed} of {written} bytes: no backpressure");
    let max = probe.max_buffered.load(Ordering::SeqCst);
    assert!(max <= BOUND, "the server queued {max} bytes of output for a peer that does not read (bound {BOUND})");

    // Phase 2: keep writing whole frames while reading every echo; push several MiB in all.
    let target_frames = (written + (8 << 20)) / frame.len() + 1;
    let total = target_frames * frame.len();
    let RawClient { io, buf, .. } = &mut raw;
    let mut echoed = buf.len();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut frames_in = 0usize;
    let mut pending: Vec<u8> = std::mem::take(buf);
    with_clock_held(
        HEAVY,
        "draining the echoes",
        poll_fn(|cx| {
            loop {
                let mut progress = false;
                while written < total {
                    let at = written % frame.len();
                    match Pin::new(&mut *io).poll_write(cx, &frame[at..]) {
                        Poll::Ready(Ok(n)) => {
                            written += n;
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                        Poll::Pending => break,
                    }
                }
                match Pin::new(&mut *io).poll_read(cx, &mut chunk) {
                    Poll::Ready(Ok(0)) => panic!("the server closed the connection"),
                    Poll::Ready(Ok(n)) => {
                        echoed += n;
                        pending.extend_from_slice(&chunk[..n]);
                        while let Some((f, used)) = parse_frame(&pending) {
                            assert_eq!((f.opcode, f.payload.len()), (0x2, MESSAGE));
                            frames_in += 1;
                            pending.drain(..used);
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => panic!("read failed: {e}"),
                    Poll::Pending => {}
                }
                if written == total && frames_in == target_frames {
                    return Poll::Ready(());
                }
                if !progress {
                    return Poll::Pending;
                }
            }
        }),
    )
    .await;
    assert!(echoed >= 8 << 20, "only {echoed} bytes went through");
    assert_eq!(probe.messages.load(Ordering::SeqCst), target_frames);
    let max = probe.max_buffered.load(Ordering::SeqCst);
    assert!(max <= BOUND, "the server queued {max} bytes of output (bound {BOUND})");
}

/// A channel-API task that does not read its receiver makes the server stop reading the socket
/// once the receive buffer holds its bound (the peer's writes stall long before 64 MiB), and
/// every message arrives, whole and in order, once the task reads again.
pub async fn channel_receiver_at_its_bound_stops_reading_until_drained<T: TestRuntime>() {
    const MESSAGE: usize = 16 * 1024;
    const ATTEMPT: usize = 64 << 20;
    let options = Options::builder().recv_buffer(Bound::new(4, 64 * 1024)).build().expect("valid");
    let inbox = Inbox::<Channels<Bytes>>::default();
    let server = handover_server::<T, Bytes>(options, &inbox).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let mut channels = inbox.next().await;
    let frame = |i: usize| client_frame(true, 0x2, &[i as u8; MESSAGE], [0; 4]);

    // Phase 1: write whole frames, each filled with its index, until writes stall for 300 ms.
    let (mut frames, mut current, mut at, mut written) = (0usize, frame(0), 0usize, 0usize);
    loop {
        assert!(written < ATTEMPT, "{ATTEMPT} bytes written without backpressure: the inbox is unbounded");
        match select(write_some(&mut raw.io, &current[at..]), sleep::<T>(Duration::from_millis(300))).await {
            Either::Left(n) => {
                let n = n.expect("the write succeeded");
                written += n;
                at += n;
                if at == current.len() {
                    frames += 1;
                    current = frame(frames);
                    at = 0;
                }
            }
            Either::Right(()) => break,
        }
    }

    // Phase 2: finish the frame in progress while the task reads every message.
    let total = frames + usize::from(at > 0);
    let mut received = 0usize;
    with_clock_held(
        HEAVY,
        "draining the receiver",
        poll_fn(|cx| {
            loop {
                let mut progress = false;
                if at > 0 {
                    match Pin::new(&mut raw.io).poll_write(cx, &current[at..]) {
                        Poll::Ready(Ok(n)) => {
                            at = (at + n) % current.len();
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                        Poll::Pending => {}
                    }
                }
                match channels.receiver.poll_recv(cx) {
                    Poll::Ready(Some(message)) => {
                        assert_eq!(message.len(), MESSAGE);
                        assert!(message.iter().all(|&b| b == received as u8), "message {received} out of order");
                        received += 1;
                        progress = true;
                    }
                    Poll::Ready(None) => panic!("the connection ended after {received} of {total} messages"),
                    Poll::Pending => {}
                }
                if received == total && at == 0 {
                    return Poll::Ready(());
                }
                if !progress {
                    return Poll::Pending;
                }
            }
        }),
    )
    .await;
}

// ---- 5. abrupt disconnect -------------------------------------------------------------------------------

/// A peer that drops its TCP connection without a close frame ends the server's connection with
/// 1006, unclean; the channel API's receiver then ends.
pub async fn abrupt_disconnect_fires_done_with_1006_unclean<T: TestRuntime>() {
    let inbox = Inbox::<Channels<Message>>::default();
    let server = handover_server::<T, Message>(Options::default(), &inbox).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    raw.send(&client_frame(true, 0x1, b"last words", [9, 8, 7, 6])).await.expect("written");
    let mut channels = inbox.next().await;
    assert_eq!(channels.receiver.recv().await, Some(Message::text("last words")));
    drop(raw);
    let info = done_within::<T>(channels.done.clone()).await;
    assert!(!info.was_clean && code(&info) == 1006, "{info:?}");
    assert_eq!(channels.receiver.recv().await, None);
    assert!(matches!(channels.sender.send(Message::text("late")).await, Err(Error::Closed)));
}

/// A peer that drops its TCP connection without a close frame puts an error on the channel API's
/// error stream (as a transport failure), as Go's socket libraries report "unexpected EOF".
pub async fn abrupt_disconnect_reports_an_error_on_the_error_stream<T: TestRuntime>() {
    let inbox = Inbox::<Channels<Message>>::default();
    let server = handover_server::<T, Message>(Options::default(), &inbox).await;
    let raw = raw_upgraded::<T>(addr(&server)).await;
    let mut channels = inbox.next().await;
    drop(raw);
    let info = done_within::<T>(channels.done.clone()).await;
    assert_eq!(code(&info), 1006);
    let error = within::<T, _>(Duration::from_secs(5), "the error stream", channels.errors.recv()).await;
    assert!(error.is_some(), "the connection failed with 1006 but the error stream ended with no error");
}

// ---- 6. handshake rejections ----------------------------------------------------------------------------

/// A request from another origin is refused with 403 under the default same-origin policy, without
/// asking `on_connect`; the same request from the server's own origin is upgraded.
pub async fn server_rejects_cross_origin_with_403<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let addr = addr(&server);
    let (response, mut raw) =
        raw_request::<T>(addr, &upgrade_request(addr, "GET", Some("13"), true, Some("http://evil.example"))).await;
    assert_eq!(response.status, 403, "{response:?}");
    assert!(raw.closed_within::<T>(Duration::from_secs(5)).await, "the connection stayed open after the 403");
    assert_eq!(probe.connects.load(Ordering::SeqCst), 0);
    let same = format!("http://{addr}");
    let (response, _raw) = raw_request::<T>(addr, &upgrade_request(addr, "GET", Some("13"), true, Some(&same))).await;
    assert_eq!(response.status, 101, "{response:?}");
    assert_eq!(probe.connects.load(Ordering::SeqCst), 1);
}

/// Sends an upgrade request built from the arguments to an echo server with default options and
/// returns the response, asserting that the socket is closed after it and that `on_connect` never
/// ran.
async fn refused<T: TestRuntime>(method: &str, version: Option<&str>, upgrade: bool) -> HttpResponse {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let addr = addr(&server);
    let (response, mut raw) = raw_request::<T>(addr, &upgrade_request(addr, method, version, upgrade, None)).await;
    assert!(raw.closed_within::<T>(Duration::from_secs(5)).await, "the connection stayed open after {response:?}");
    assert_eq!(probe.connects.load(Ordering::SeqCst), 0);
    response
}

/// A `POST` upgrade request is refused with 405 and `Allow: GET`, and the socket is closed.
pub async fn server_rejects_post_with_405_allow_get<T: TestRuntime>() {
    let response = refused::<T>("POST", Some("13"), true).await;
    assert_eq!(response.status, 405, "{response:?}");
    assert_eq!(response.header("Allow"), Some("GET"));
}

/// `Sec-WebSocket-Version: 8` is refused with 426 and `Sec-WebSocket-Version: 13`.
pub async fn server_rejects_version_8_with_426_and_version_13<T: TestRuntime>() {
    let response = refused::<T>("GET", Some("8"), true).await;
    assert_eq!(response.status, 426, "{response:?}");
    assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
}

/// A request without `Upgrade: websocket` is refused with 400.
pub async fn server_rejects_missing_upgrade_with_400<T: TestRuntime>() {
    let response = refused::<T>("GET", Some("13"), false).await;
    assert_eq!(response.status, 400, "{response:?}");
}

/// `on_connect` returning `Rejection::new(401, "no")` with a `WWW-Authenticate` header sends 401
/// with that header and body `no`, byte for byte, and closes; the ferrule client reports it as a
/// handshake error carrying the status.
pub async fn server_on_connect_rejection_sends_401_with_body<T: TestRuntime>() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let server = T::serve(Options::default(), move |request: &Request, _: &mut ferrule::Acceptance| {
        counter.fetch_add(1, Ordering::SeqCst);
        assert!(request.key().is_some());
        let mut rejection = Rejection::new(401, "no");
        rejection.insert_header("WWW-Authenticate", "Bearer realm=\"chat\"").expect("a valid header");
        Err::<EchoHandler, _>(rejection)
    })
    .await;
    let addr = addr(&server);
    let (response, mut raw) = raw_request::<T>(addr, &upgrade_request(addr, "GET", Some("13"), true, None)).await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.body, b"no", "the body is sent as given: {response:?}");
    assert_eq!(response.header("WWW-Authenticate"), Some("Bearer realm=\"chat\""), "{response:?}");
    assert!(raw.closed_within::<T>(Duration::from_secs(5)).await);
    match T::connect(&url(addr), &Options::default()).await {
        Err(Error::Handshake(HandshakeError::NotSwitchingProtocols { status: 401, .. })) => {}
        other => panic!("expected a 401 handshake error, got {other:?}"),
    }
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}

// ---- 7. slowloris ---------------------------------------------------------------------------------------

/// A client that sends its request one byte per second is answered 408 at the handshake timeout
/// (5 s on the paused clock, no real waiting) and the socket is closed.
pub async fn server_drops_slowloris_at_handshake_timeout_with_408<T: TestRuntime>() {
    let (timeout, tick) = (Duration::from_secs(5), Duration::from_secs(1));
    let options = Options::builder().handshake_timeout(timeout).build().expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let addr = addr(&server);
    let request = upgrade_request(addr, "GET", Some("13"), true, None);
    // Timed from before the connect: the server's deadline starts when it accepts, which can be
    // a moment before the client's connect returns.
    let start = now::<T>();
    let mut raw = RawClient::new(T::tcp(addr).await.expect("connected"));
    let mut sent = 0;
    let response = loop {
        assert!(sent < request.len(), "the whole request went through a byte at a time");
        raw.send(&request[sent..=sent]).await.expect("written");
        sent += 1;
        // Wait a tick, unless the server answers first.
        if let Either::Left(response) = select(raw.read_response(), sleep::<T>(tick)).await {
            break response;
        }
    };
    let elapsed = now::<T>() - start;
    assert_eq!(response.status, 408, "{response:?}");
    assert!(elapsed >= timeout && elapsed <= timeout + tick, "answered after {elapsed:?}");
    assert!(sent <= 1 + (timeout.as_millis() / tick.as_millis()) as usize, "{sent} bytes sent");
    assert!(raw.closed_within::<T>(tick).await, "the socket stayed open after the 408");
    assert_eq!(probe.connects.load(Ordering::SeqCst), 0);
}

// ---- 8. limits and protocol violations ------------------------------------------------------------------

/// A message of exactly `max_message_size` is accepted; one byte more closes the connection with
/// 1009, as both the client's done signal and the server's `on_close` see.
pub async fn oversized_message_closes_1009<T: TestRuntime>() {
    let options = Options::builder().max_message_size(1024).max_frame_size(1024).build().expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let mut client = connect_channels::<T, Bytes>(addr(&server)).await;
    client.sender.send(Bytes::from(vec![1u8; 1024])).await.expect("sent");
    assert_eq!(client.receiver.recv().await.map(|b| b.len()), Some(1024));
    client.sender.send(Bytes::from(vec![2u8; 1025])).await.expect("sent");
    let info = done_within::<T>(client.done.clone()).await;
    assert_eq!(code(&info), 1009, "{info:?}");
    let server_side = done_within::<T>(probe.closes.next()).await;
    assert_eq!(code(&server_side), 1009, "{server_side:?}");
    assert_eq!(probe.messages.load(Ordering::SeqCst), 1);
}

/// A peer still sending when the server fails the connection gets the close frame anyway: the
/// server reads and discards the rest of the input before letting the socket go. Closing a socket
/// with unread input makes the kernel answer with a reset, which can destroy the close frame
/// before the peer reads it (a browser then reports 1006 instead of 1009).
pub async fn close_frame_reaches_a_peer_still_sending<T: TestRuntime>() {
    let options = Options::builder().max_message_size(64 * 1024).max_frame_size(64 * 1024).build().expect("valid");
    let probe = Probe::default();
    let server = echo_server::<T>(options, &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let frame = client_frame(true, 0x2, &vec![0x5A; 1 << 20], [1, 2, 3, 4]);
    // The header and a first piece: the server fails the connection on the header.
    raw.send(&frame[..16 * 1024]).await.expect("the first piece is written");
    sleep::<T>(Duration::from_millis(200)).await;
    // The server lingers up to 2 s reading what still comes, and the rest below comes without
    // any deadline passing.
    let (close, end) = with_clock_held(HEAVY, "the rest of the message and the close", async {
        // The peer goes on sending, as a browser in the middle of a message does. A server that
        // let its socket go with input unread would reset the connection and fail these writes.
        for piece in frame[16 * 1024..].chunks(16 * 1024) {
            raw.send(piece).await.expect("the server takes the rest of the message without resetting the connection");
        }
        let close = read_close(&mut raw).await;
        // The server's write half is shut right after the close frame, before it stops reading:
        // the end of stream comes before its lingering ends.
        let mut rest = [0u8; 64];
        (close, read_some(&mut raw.io, &mut rest).await.expect("read"))
    })
    .await;
    assert_eq!(close[..2], 1009u16.to_be_bytes());
    assert_eq!(end, 0, "nothing follows the close frame");
    let server_side = done_within::<T>(probe.closes.next()).await;
    assert_eq!(code(&server_side), 1009, "{server_side:?}");
}

/// Reads frames until a close frame arrives and returns its payload.
async fn read_close<S: AsyncRead + AsyncWrite + Unpin>(raw: &mut RawClient<S>) -> Vec<u8> {
    loop {
        let frame = raw.read_frame().await.expect("a close frame before the end of stream");
        if frame.opcode == 0x8 {
            return frame.payload;
        }
    }
}

/// A masked text frame with invalid UTF-8 is answered with a close frame carrying 1007
/// (`0x88, len, 0x03, 0xEF`), and the server's `on_close` sees 1007.
pub async fn server_receives_invalid_utf8_text_closes_1007<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    raw.send(&client_frame(true, 0x1, &[b'o', b'k', 0xC3, 0x28, b'!'], [0xA1, 0xB2, 0xC3, 0xD4])).await.expect("sent");
    // The first bytes after the 101 are the close frame: FIN + close, unmasked length, 1007.
    let head = within::<T, _>(Duration::from_secs(5), "the close frame", raw.read_raw(4)).await;
    assert_eq!(head[0], 0x88, "not a close frame: {head:02x?}");
    assert!((2..=125).contains(&head[1]), "close frame length byte {:#04x}", head[1]);
    assert_eq!(&head[2..4], &[0x03, 0xEF], "close code bytes {head:02x?}");
    let info = done_within::<T>(probe.closes.next()).await;
    assert_eq!(code(&info), 1007, "{info:?}");
    assert_eq!(probe.messages.load(Ordering::SeqCst), 0);
}

/// An unmasked frame from a client is answered with close 1002.
pub async fn server_receives_unmasked_frame_closes_1002<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    raw.send(&[0x81, 0x02, b'h', b'i']).await.expect("sent");
    let payload = within::<T, _>(Duration::from_secs(5), "the close frame", read_close(&mut raw)).await;
    assert_eq!(payload.get(..2), Some(&[0x03, 0xEA][..]), "{payload:02x?}");
    assert_eq!(code(&done_within::<T>(probe.closes.next()).await), 1002);
}

// ---- 9. close codes -------------------------------------------------------------------------------------

/// `Disconnect::disconnect(4000, "bye")` on the server reaches the client's done signal as 4000
/// "bye", clean, and the server's own done signal agrees.
pub async fn server_disconnect_4000_reaches_client_done<T: TestRuntime>() {
    let server = T::serve_channels(Options::default(), |_request, mut channels: Channels<String>| async move {
        if channels.receiver.recv().await.as_deref() == Some("close please") {
            for unsendable in [1005, 1006, 1015, 999, 2999] {
                assert!(
                    matches!(
                        channels.disconnect.disconnect(CloseCode::new(unsendable), "no"),
                        Err(Error::Send(ferrule_core::SendError::InvalidCloseCode(c))) if c == unsendable
                    ),
                    "{unsendable} may not be sent and nothing starts closing"
                );
            }
            channels.disconnect.disconnect(CloseCode::new(4000), "bye").expect("not closing yet");
            assert!(matches!(channels.disconnect.disconnect(CloseCode::new(4000), "again"), Err(Error::Closed)));
        }
        let _ = channels.done.await;
    })
    .await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    client.sender.send("close please".to_owned()).await.expect("sent");
    let info = done_within::<T>(client.done.clone()).await;
    let expected =
        CloseInfo { was_clean: true, code: CloseCode::new(4000), reason: "bye".to_owned(), cause: CloseCause::Peer };
    assert_eq!(info, expected);
    assert_eq!(client.receiver.recv().await, None);
}

/// A client-initiated close with 4000 "bye" reaches the server's done signal and `on_close` as
/// 4000 "bye", clean; the client's done is clean too.
pub async fn client_disconnect_4000_reaches_server_done<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let client = connect_channels::<T, String>(addr(&server)).await;
    let handle = probe.handles.next().await;
    client.disconnect.disconnect(CloseCode::new(4000), "bye").expect("close");
    let expected =
        CloseInfo { was_clean: true, code: CloseCode::new(4000), reason: "bye".to_owned(), cause: CloseCause::Peer };
    assert_eq!(done_within::<T>(handle.done()).await, expected);
    assert_eq!(probe.closes.next().await, expected);
    let info = done_within::<T>(client.done).await;
    assert!(info.was_clean && code(&info) == 4000, "{info:?}");
    let local = CloseCause::Local { code: CloseCode::new(4000), reason: "bye".to_owned() };
    assert_eq!(info.cause, local, "the client closed it");
}

/// A handler that returns `HandlerError::with_code(4001, "x")` closes the connection with 4001 "x".
pub async fn handler_error_with_code_closes_4001<T: TestRuntime>() {
    struct Refuse;
    impl Handler for Refuse {
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, _message: Message) -> Result<(), HandlerError> {
            Err(HandlerError::with_code(CloseCode::new(4001), "x"))
        }
    }
    let server = T::serve(Options::default(), |_: &Request, _: &mut ferrule::Acceptance| Ok(Refuse)).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    client.sender.send("anything".to_owned()).await.expect("sent");
    let info = done_within::<T>(client.done.clone()).await;
    assert_eq!((code(&info), info.reason.as_str()), (4001, "x"), "{info:?}");
    assert_eq!(client.receiver.recv().await, None);
}

/// A handler whose `?` propagates an ordinary error closes the connection with 1011; messages that
/// do not fail are still echoed before it.
pub async fn handler_question_mark_error_closes_1011<T: TestRuntime>() {
    struct Numbers;
    impl Handler for Numbers {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            let Message::Text(text) = message else { return Ok(()) };
            let n: u32 = text.parse()?;
            ctx.send_text(&(n * 2).to_string())?;
            Ok(())
        }
    }
    let server = T::serve(Options::default(), |_: &Request, _: &mut ferrule::Acceptance| Ok(Numbers)).await;
    let mut client = connect_channels::<T, String>(addr(&server)).await;
    client.sender.send("21".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("42"));
    client.sender.send("not a number".to_owned()).await.expect("sent");
    let info = done_within::<T>(client.done.clone()).await;
    assert_eq!(code(&info), 1011, "{info:?}");
}

// ---- 10. cancel safety ----------------------------------------------------------------------------------

/// A tiny deterministic generator for cancellation points.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// While the server streams 3000 numbered messages, the client (with a receive buffer of two
/// messages, so `recv` often waits) drops `Receiver::recv` futures at arbitrary points (polled
/// once, or raced against a yield or a short timer) and still receives exactly 0..3000 in order;
/// afterwards the connection carries a round trip.
pub async fn recv_cancelled_at_arbitrary_points_loses_nothing<T: TestRuntime>() {
    const N: usize = 3000;
    let server = T::serve_channels(Options::default(), |_request, mut channels: Channels<String>| async move {
        for i in 0..N {
            if channels.sender.send(i.to_string()).await.is_err() {
                return;
            }
            // Pause now and then, so the client's recv often finds nothing and waits.
            if i % 16 == 15 {
                sleep::<T>(Duration::from_micros(100)).await;
            }
        }
        while let Some(m) = channels.receiver.recv().await {
            let _ = channels.sender.send(format!("echo {m}")).await;
        }
    })
    .await;
    let options = Options::builder().recv_buffer(Bound::new(2, 64)).build().expect("valid");
    let mut client = connect_with::<T, String>(addr(&server), &options).await;
    let mut got = Vec::with_capacity(N);
    let mut cancelled = 0usize;
    let mut rng = Lcg(7);
    within::<T, _>(HEAVY, "receiving every message", async {
        while got.len() < N {
            let outcome = match rng.next() % 4 {
                0 => poll_once(client.receiver.recv()).await,
                1 => match select(client.receiver.recv(), yield_now()).await {
                    Either::Left(m) => Some(m),
                    Either::Right(()) => None,
                },
                2 => match select(client.receiver.recv(), sleep::<T>(Duration::from_micros(rng.next() % 300))).await {
                    Either::Left(m) => Some(m),
                    Either::Right(()) => None,
                },
                _ => Some(client.receiver.recv().await),
            };
            match outcome {
                Some(Some(m)) => got.push(m.parse::<usize>().expect("a number")),
                Some(None) => panic!("the connection ended after {} messages", got.len()),
                None => {
                    cancelled += 1;
                    yield_now().await;
                }
            }
        }
    })
    .await;
    assert!(cancelled > 0, "no recv future was ever cancelled: the test proved nothing");
    assert!(got.iter().copied().eq(0..N), "messages lost, duplicated or reordered");
    client.sender.send("after".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("echo after"));
}

/// With a send buffer of two messages, the client drops `Sender::send` futures whenever they are
/// pending (and sometimes after a short timer) and re-sends; the server receives exactly 0..2000
/// in order, and the connection stays usable.
pub async fn send_cancelled_at_arbitrary_points_loses_nothing<T: TestRuntime>() {
    const N: usize = 2000;
    let received = Inbox::<String>::default();
    let report = received.clone();
    let server = T::serve_channels(Options::default(), move |_request, mut channels: Channels<String>| {
        let report = report.clone();
        async move {
            while let Some(m) = channels.receiver.recv().await {
                if m == "after" {
                    let _ = channels.sender.send("still usable".to_owned()).await;
                }
                report.push(m);
            }
        }
    })
    .await;
    let options = Options::builder().send_buffer(Bound::new(2, 64)).build().expect("valid");
    let mut client = connect_with::<T, String>(addr(&server), &options).await;
    let mut cancelled = 0usize;
    let mut rng = Lcg(11);
    within::<T, _>(HEAVY, "sending every message", async {
        for i in 0..N {
            loop {
                let message = i.to_string();
                let outcome = match rng.next() % 3 {
                    0 => poll_once(client.sender.send(message)).await,
                    1 => match select(client.sender.send(message), sleep::<T>(Duration::from_micros(rng.next() % 200)))
                        .await
                    {
                        Either::Left(r) => Some(r),
                        Either::Right(()) => None,
                    },
                    _ => match select(client.sender.send(message), yield_now()).await {
                        Either::Left(r) => Some(r),
                        Either::Right(()) => None,
                    },
                };
                match outcome {
                    Some(r) => {
                        r.expect("sent");
                        break;
                    }
                    None => {
                        cancelled += 1;
                        yield_now().await;
                    }
                }
            }
        }
    })
    .await;
    assert!(cancelled > 0, "no send future was ever cancelled: the test proved nothing");
    let mut got = Vec::with_capacity(N);
    within::<T, _>(HEAVY, "the server receiving every message", async {
        while got.len() < N {
            got.push(received.next().await.parse::<usize>().expect("a number"));
        }
    })
    .await;
    assert!(got.iter().copied().eq(0..N), "messages lost, duplicated or reordered");
    client.sender.send("after".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("still usable"));
    assert!(received.len() <= 1, "more messages than were sent");
}

fn numbered(i: u64, len: usize) -> Bytes {
    let mut v = vec![0xA5u8; len];
    v[..8].copy_from_slice(&i.to_be_bytes());
    v.into()
}

/// Against a peer that does not read, `try_send` eventually returns `Full` (with the message
/// back) and stays full; a `send().await` then waits, and completes once the peer drains. The
/// peer receives every accepted message exactly once, in order, and the connection stays usable.
pub async fn try_send_full_then_send_waits_until_drained<T: TestRuntime>() {
    const LEN: usize = 64 * 1024;
    let options = Options::builder().send_buffer(Bound::new(4, 1 << 20)).build().expect("valid");
    let inbox = Inbox::<Channels<Bytes>>::default();
    let server = handover_server::<T, Bytes>(options, &inbox).await;
    let mut raw = raw_upgraded::<T>(addr(&server)).await;
    let channels = inbox.next().await;
    let handle = channels.sender.handle().clone();
    let mut accepted = 0u64;
    let send = loop {
        let mut full_in_a_row = 0;
        while full_in_a_row < 2 {
            assert!(accepted < 1024, "64 MiB accepted for a peer that does not read: the send buffer is unbounded");
            match handle.try_send(numbered(accepted, LEN)) {
                Ok(()) => {
                    accepted += 1;
                    full_in_a_row = 0;
                    sleep::<T>(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Full(back)) => {
                    assert_eq!(back, Message::Binary(numbered(accepted, LEN)), "Full gave back another message");
                    full_in_a_row += 1;
                    sleep::<T>(Duration::from_millis(100)).await;
                }
                Err(TrySendError::Closed(_)) => panic!("closed"),
            }
        }
        // Still full, so a send waits: with every task idle, it stays pending. If it completes,
        // TCP's real-time timers let the kernel take a little more of the output after all, which
        // made room; then the buffer is filled again. A send that did not wait for room would
        // complete every time, until the bound above fails.
        let mut send = Box::pin(channels.sender.send(numbered(accepted, LEN)));
        match select(send.as_mut(), sleep::<T>(Duration::from_millis(200))).await {
            Either::Right(()) => break send,
            Either::Left(sent) => {
                sent.expect("sent");
                accepted += 1;
            }
        }
    };
    let expected = accepted + 1;
    let drain = async {
        let mut seen = 0u64;
        while seen < expected {
            let frame = raw.read_frame().await.expect("a frame");
            assert_eq!(frame.opcode, 0x2);
            assert_eq!(frame.payload.len(), LEN);
            let n = u64::from_be_bytes(frame.payload[..8].try_into().expect("8 bytes"));
            assert_eq!(n, seen, "message {seen} lost, duplicated or reordered");
            seen += 1;
        }
        raw
    };
    let (sent, mut raw) = with_clock_held(HEAVY, "draining", join(send, drain)).await;
    sent.expect("the waiting send completed once drained");
    handle.try_send(numbered(expected, LEN)).expect("room again");
    let frame = raw.read_frame().await.expect("a frame");
    assert_eq!(frame.payload[..8], expected.to_be_bytes());
}

// ---- 11. graceful shutdown ------------------------------------------------------------------------------

async fn wait_until<T: TestRuntime>(what: &str, mut condition: impl FnMut() -> bool) {
    within::<T, _>(Duration::from_secs(10), what, async {
        while !condition() {
            sleep::<T>(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// `shutdown` closes every open callback-API connection with 1001 (each client's done is clean
/// 1001), returns 0 still open, and the port refuses new connections afterwards.
pub async fn shutdown_closes_open_connections_with_1001<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let addr = addr(&server);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect_channels::<T, String>(addr).await);
    }
    wait_until::<T>("three registered connections", || server.connections() == 3).await;
    let remaining = within::<T, _>(Duration::from_secs(10), "shutdown", server.shutdown(Duration::from_secs(5))).await;
    assert_eq!(remaining, 0);
    for client in clients {
        let info = done_within::<T>(client.done).await;
        assert!(info.was_clean && code(&info) == 1001, "{info:?}");
    }
    for _ in 0..3 {
        assert_eq!(code(&probe.closes.next().await), 1001);
    }
    let refused = within::<T, _>(Duration::from_secs(5), "a connect after shutdown", T::tcp(addr)).await;
    assert!(refused.is_err(), "a TCP connect succeeded after shutdown");
}

/// `shutdown` closes channel-API connections with 1001 too: the server task's receiver ends, and
/// the client sees a clean 1001.
pub async fn shutdown_closes_channel_connections_with_1001<T: TestRuntime>() {
    let server = channel_echo_server::<T, String>(Options::default()).await;
    let addr = addr(&server);
    let mut client = connect_channels::<T, String>(addr).await;
    client.sender.send("hi".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("hi"));
    wait_until::<T>("a registered connection", || server.connections() == 1).await;
    let remaining = within::<T, _>(Duration::from_secs(10), "shutdown", server.shutdown(Duration::from_secs(5))).await;
    assert_eq!(remaining, 0);
    let info = done_within::<T>(client.done).await;
    assert!(info.was_clean && code(&info) == 1001, "{info:?}");
}

/// Right after `shutdown` returns on an idle server, a new WebSocket connect fails rather than
/// hanging in the listen backlog, and the port soon refuses TCP connections.
pub async fn shutdown_with_no_connections_refuses_new_connects<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    let addr = addr(&server);
    assert_eq!(server.shutdown(Duration::from_secs(1)).await, 0);
    let result =
        within::<T, _>(Duration::from_secs(5), "a connect after shutdown", T::connect(&url(addr), &Options::default()))
            .await;
    assert!(result.is_err(), "a WebSocket connect succeeded after shutdown");
    sleep::<T>(Duration::from_millis(50)).await;
    let refused = within::<T, _>(Duration::from_secs(5), "a TCP connect after shutdown", T::tcp(addr)).await;
    assert!(refused.is_err(), "a TCP connect succeeded after shutdown");
    assert_eq!(probe.connects.load(Ordering::SeqCst), 0);
}

// ---- 12. leaks ------------------------------------------------------------------------------------------

/// 1000 connections, 50 at a time, each with a round trip and a clean close, leave the server with
/// no registered connections and the runtime with as many live tasks as before.
pub async fn thousand_connections_leave_no_connections_or_tasks_behind<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(Options::default(), &probe).await;
    // Let the accept loop start before taking the baseline.
    sleep::<T>(Duration::from_millis(10)).await;
    let baseline = T::alive_tasks();
    churn_connections::<T>(&server, 1000).await;
    assert_eq!(probe.connects.load(Ordering::SeqCst), 1000);
    wait_until_forgotten::<T>(&server, baseline).await;
    assert_eq!(probe.closes.len(), 1000);
}

/// Opens `count` client connections to the echo server `server`, 50 at a time; each trades one
/// message and closes with 1000, and every close must be clean.
pub async fn churn_connections<T: TestRuntime>(server: &T::Server, count: usize) {
    let addr = addr(server);
    for batch in 0..count.div_ceil(50) {
        let round_trips = (batch * 50..count.min(batch * 50 + 50)).map(|i| async move {
            let mut client = connect_channels::<T, String>(addr).await;
            let text = format!("message {i}");
            client.sender.send(text.clone()).await.expect("sent");
            assert_eq!(client.receiver.recv().await, Some(text));
            client.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
            client.done.await
        });
        for info in within::<T, _>(HEAVY, "a batch", join_all(round_trips.collect())).await {
            assert!(info.was_clean && code(&info) == 1000, "{info:?}");
        }
    }
}

/// Waits until `server` holds no connection and, where the runtime counts its tasks, until as
/// many are alive as `tasks` (a count taken before the connections were opened).
pub async fn wait_until_forgotten<T: TestRuntime>(server: &T::Server, tasks: Option<usize>) {
    wait_until::<T>("the server to forget every connection", || server.connections() == 0).await;
    if let Some(baseline) = tasks {
        let start = now::<T>();
        loop {
            let alive = T::alive_tasks().expect("counted before");
            if alive == baseline {
                break;
            }
            assert!(alive > baseline, "fewer tasks ({alive}) than before ({baseline}): the baseline was wrong");
            assert!(
                now::<T>() - start < Duration::from_secs(10),
                "{alive} tasks alive 10 s after every connection closed, {baseline} before"
            );
            sleep::<T>(Duration::from_millis(5)).await;
        }
    }
}
