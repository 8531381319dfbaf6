//! permessage-deflate (RFC 7692) through the async layer, on every runtime: a ferrule client and
//! server agree on it when both have the `compression` option, messages of every shape
//! round-trip compressed (the client counts the bytes on the wire to prove it), the agreed
//! parameters are the same on `Upgraded`, `Acceptance` and `Ctx`, and a server declines when its
//! option is off or `on_connect` turns it off for one connection.
//!
//! Instantiated per runtime by [`compression_suite!`](crate::compression_suite), on the
//! [`TestRuntime`]s of the main suite.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferrule::core::handshake::HandshakeError;
use ferrule::{
    Acceptance, ClientRequest, CloseCode, Ctx, DeflateConfig, DeflateParams, Error, Handler, HandlerError, Message,
    MessageKind, Options, Request, Upgraded,
};
use futures_io::{AsyncRead, AsyncWrite};

use crate::suite::{Inbox, TestRuntime, addr, url, within};

/// Expands to one `#[test]` per test of this module for the runtime type `$rt`.
#[macro_export]
macro_rules! compression_suite {
    ($rt:ty) => {
        $crate::compression_suite!(@expand $rt;
            compressed_echo_round_trips_text_binary_fragmented_and_a_mebibyte,
            agreed_parameters_are_the_same_on_upgraded_acceptance_and_ctx,
            no_context_takeover_and_small_windows_are_agreed_and_round_trip,
            server_with_compression_off_declines_the_offer,
            client_without_compression_is_not_compressed_to,
            on_connect_declines_compression_for_one_connection,
            server_requiring_compression_refuses_a_client_without_it,
            on_open_switches_write_compression_off_for_one_connection,
            channels_report_the_agreement_and_switch_write_compression,
        );
    };
    (@expand $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::run::<$rt, _>(false, $crate::compression::$name::<$rt>);
            }
        )*
    };
}

/// Options with permessage-deflate on, with `config`.
fn compressing(config: DeflateConfig) -> Options {
    Options::builder().compression(config).build().expect("valid options")
}

/// What the server saw of permessage-deflate for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request's path.
    pub path: String,
    /// `Acceptance::deflate` in `on_connect`, after any decline.
    pub on_connect: Option<DeflateParams>,
    /// `Ctx::deflate` in `on_open`.
    pub on_open: Option<DeflateParams>,
    /// `Ctx::write_compression` at the end of `on_open`.
    pub writes_compressed: bool,
}

/// Echoes every message; reports what it saw in `on_open`.
struct Echo {
    path: String,
    on_connect: Option<DeflateParams>,
    seen: Inbox<Seen>,
}

impl Handler for Echo {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        // eyesore's per-connection `EnableWriteCompression(false)` in `OnOpen`.
        if self.path == "/quiet" {
            ctx.set_write_compression(false);
        }
        self.seen.push(Seen {
            path: self.path.clone(),
            on_connect: self.on_connect,
            on_open: ctx.deflate().copied(),
            writes_compressed: ctx.write_compression(),
        });
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

/// An echo server with `options` that declines compression for requests to `/plain`, switches off
/// compression of what it sends to `/quiet` in `on_open`, and reports what each connection saw.
async fn echo_server<T: TestRuntime>(options: Options, seen: &Inbox<Seen>) -> T::Server {
    let seen = seen.clone();
    T::serve(options, move |request: &Request, acceptance: &mut Acceptance| {
        if request.path() == "/plain" {
            acceptance.decline_deflate();
        }
        let on_connect = acceptance.deflate().copied();
        Ok(Echo { path: request.path().to_owned(), on_connect, seen: seen.clone() })
    })
    .await
}

/// Bytes a [`Counted`] stream read and wrote.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    read: Arc<AtomicUsize>,
    written: Arc<AtomicUsize>,
}

impl Counts {
    /// Bytes read so far.
    pub fn read(&self) -> usize {
        self.read.load(Ordering::SeqCst)
    }
    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }
}

/// A stream that counts the bytes through it, to see what compression saved on the wire.
pub struct Counted<S> {
    io: S,
    counts: Counts,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.counts.read.fetch_add(n, Ordering::SeqCst);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.counts.written.fetch_add(n, Ordering::SeqCst);
        }
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

/// Connects to `path` on `addr` with `options` over a [`Counted`] stream.
async fn connect_counted<T: TestRuntime>(
    addr: SocketAddr,
    path: &str,
    options: &Options,
) -> Result<(Upgraded<Counted<T::Stream>, T::Runtime>, Counts), Error> {
    let io = T::tcp(addr).await.map_err(Error::Io)?;
    let counts = Counts::default();
    let io = Counted { io, counts: counts.clone() };
    let request = ClientRequest::new(&format!("ws://{addr}{path}")).expect("a valid URL");
    let upgraded = ferrule::connect_stream(T::runtime(), io, request, options).await?;
    Ok((upgraded, counts))
}

/// Text that compresses well, even in a 9-bit window, but is not one repeated byte: `n` bytes of
/// numbered words that repeat every 165 bytes.
fn compressible_text(n: usize) -> String {
    let mut s = String::with_capacity(n + 16);
    let mut i = 0u32;
    while s.len() < n {
        s.push_str(&format!("word{} ", i % 25));
        i += 1;
    }
    s.truncate(n);
    s
}

/// Binary of `n` bytes that repeats every 200 bytes, which compresses well in any window (a
/// 9-bit window matches at most 250 bytes back: 512 less zlib's 262-byte lookahead).
fn compressible_binary(n: usize) -> Bytes {
    (0..n).map(|i| (i % 200) as u8).collect::<Vec<u8>>().into()
}

/// Sends [`messages`] and a fragmented message through `upgraded`'s channels, checks each comes
/// back intact and in order, and closes cleanly.
async fn round_trip<T: TestRuntime, S>(upgraded: Upgraded<S, T::Runtime>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let messages = messages();
    let mut channels = upgraded.channels::<Message>();
    for m in &messages {
        channels.sender.send(m.clone()).await.expect("sent");
    }
    for m in &messages {
        assert_eq!(channels.receiver.recv().await.as_ref(), Some(m));
    }
    // A fragmented message, streamed through a writer, comes back whole.
    let text = compressible_text(300_000);
    let mut writer = channels.sender.handle().start_message(MessageKind::Text).await.expect("a writer");
    for chunk in text.as_bytes().chunks(100_000) {
        let chunk = std::str::from_utf8(chunk).expect("ASCII chunks").to_owned();
        writer.write(chunk).await.expect("a fragment");
    }
    writer.finish(String::from("!")).await.expect("the last fragment");
    let echoed = channels.receiver.recv().await;
    assert_eq!(echoed, Some(Message::from(format!("{text}!"))), "the fragmented message came back whole");
    channels.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
    let info = within::<T, _>(Duration::from_secs(10), "the connection's end", channels.done).await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
}

/// The payload bytes of [`messages`] and the fragmented message, each way.
fn payload_bytes() -> usize {
    messages().iter().map(Message::len).sum::<usize>() + 300_001
}

/// What a ferrule client and server with the default `compression` settings agree on: 12-bit
/// windows both ways (the client asks for them, the server limits the client to them), the
/// server without context takeover, the client with.
fn default_agreement() -> DeflateParams {
    DeflateParams::default().server_no_context_takeover(true).server_max_window_bits(12).client_max_window_bits(12)
}

// ---- tests ---------------------------------------------------------------------------------------

/// A client and server with compression on agree on it, and text, binary, fragmented and 1 MiB
/// messages round-trip; the client's counts show both directions were compressed (the payloads
/// compress more than fourfold).
pub async fn compressed_echo_round_trips_text_binary_fragmented_and_a_mebibyte<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(compressing(DeflateConfig::default()), &seen).await;
    let (upgraded, counts) = connect_counted::<T>(addr(&server), "/", &compressing(DeflateConfig::default()))
        .await
        .expect("the client connected");
    assert_eq!(upgraded.deflate(), Some(&default_agreement()));
    round_trip::<T, _>(upgraded).await;
    let payload = payload_bytes();
    assert!(counts.written() < payload / 4, "the client sent {} bytes for {payload}", counts.written());
    assert!(counts.read() < payload / 4, "the client read {} bytes for {payload}", counts.read());
}

/// The parameters the server's `on_connect` sees on its `Acceptance`, the handler's `Ctx` in
/// `on_open`, and the client's `Upgraded` are the same.
pub async fn agreed_parameters_are_the_same_on_upgraded_acceptance_and_ctx<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(compressing(DeflateConfig::default()), &seen).await;
    let (upgraded, _) = connect_counted::<T>(addr(&server), "/chat", &compressing(DeflateConfig::default()))
        .await
        .expect("the client connected");
    let client = upgraded.deflate().copied();
    let _channels = upgraded.channels::<Message>();
    let server_side = seen.next().await;
    assert_eq!(client, Some(default_agreement()));
    assert_eq!(
        server_side,
        Seen { path: "/chat".to_owned(), on_connect: client, on_open: client, writes_compressed: true }
    );
}

/// A server that imposes no context takeover on both ends and small windows gets them agreed, as
/// both ends report, and messages still round-trip.
pub async fn no_context_takeover_and_small_windows_are_agreed_and_round_trip<T: TestRuntime>() {
    let seen = Inbox::default();
    let strict = DeflateConfig::default()
        .server_no_context_takeover(true)
        .client_no_context_takeover(true)
        .server_max_window_bits(Some(9))
        .client_max_window_bits(Some(10));
    let server = echo_server::<T>(compressing(strict), &seen).await;
    let (upgraded, counts) = connect_counted::<T>(addr(&server), "/", &compressing(DeflateConfig::default()))
        .await
        .expect("the client connected");
    let expected = DeflateParams::default()
        .server_no_context_takeover(true)
        .client_no_context_takeover(true)
        .server_max_window_bits(9)
        .client_max_window_bits(10);
    assert_eq!(upgraded.deflate(), Some(&expected));
    round_trip::<T, _>(upgraded).await;
    let server_side = seen.next().await;
    assert_eq!((server_side.on_connect, server_side.on_open), (Some(expected), Some(expected)));
    let payload = payload_bytes();
    assert!(counts.written() < payload / 4 && counts.read() < payload / 4, "{counts:?} for {payload}");
}

/// A server without the `compression` option declines a client's offer: nothing is agreed on
/// either end, and messages go uncompressed (the whole payload crosses the wire).
pub async fn server_with_compression_off_declines_the_offer<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(Options::default(), &seen).await;
    let (upgraded, counts) = connect_counted::<T>(addr(&server), "/", &compressing(DeflateConfig::default()))
        .await
        .expect("the client connected");
    assert_eq!(upgraded.deflate(), None);
    round_trip::<T, _>(upgraded).await;
    let server_side = seen.next().await;
    assert_eq!((server_side.on_connect, server_side.on_open), (None, None));
    assert!(counts.written() > payload_bytes(), "{counts:?}");
}

/// A client without the `compression` option offers nothing, so a compressing server agrees to
/// nothing and sends uncompressed.
pub async fn client_without_compression_is_not_compressed_to<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(compressing(DeflateConfig::default()), &seen).await;
    let (upgraded, counts) =
        connect_counted::<T>(addr(&server), "/", &Options::default()).await.expect("the client connected");
    assert_eq!(upgraded.deflate(), None);
    round_trip::<T, _>(upgraded).await;
    let server_side = seen.next().await;
    assert_eq!((server_side.on_connect, server_side.on_open), (None, None));
    assert!(counts.read() > payload_bytes(), "{counts:?}");
}

/// `Acceptance::decline_deflate` in `on_connect` turns compression off for that connection only:
/// a client of `/plain` gets none, one of `/` still gets it.
pub async fn on_connect_declines_compression_for_one_connection<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(compressing(DeflateConfig::default()), &seen).await;
    let options = compressing(DeflateConfig::default());
    let (plain, counts) = connect_counted::<T>(addr(&server), "/plain", &options).await.expect("connected");
    assert_eq!(plain.deflate(), None);
    round_trip::<T, _>(plain).await;
    assert!(counts.written() > payload_bytes(), "{counts:?}");
    let plain_seen = Seen { path: "/plain".to_owned(), on_connect: None, on_open: None, writes_compressed: false };
    assert_eq!(seen.next().await, plain_seen);

    let (compressed, _) = connect_counted::<T>(addr(&server), "/", &options).await.expect("connected");
    assert_eq!(compressed.deflate(), Some(&default_agreement()));
    round_trip::<T, _>(compressed).await;
    let agreed = Some(default_agreement());
    let seen_here = Seen { path: "/".to_owned(), on_connect: agreed, on_open: agreed, writes_compressed: true };
    assert_eq!(seen.next().await, seen_here);
}

/// A server whose `compression` is `required` refuses a client that offers none with 400, and the
/// client reports the refusal.
pub async fn server_requiring_compression_refuses_a_client_without_it<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(compressing(DeflateConfig::default().required(true)), &seen).await;
    match T::connect(&url(addr(&server)), &Options::default()).await {
        Err(Error::Handshake(HandshakeError::NotSwitchingProtocols { status, .. })) => assert_eq!(status, 400),
        other => panic!("expected a 400, got {other:?}"),
    }
    let (upgraded, _) = connect_counted::<T>(addr(&server), "/", &compressing(DeflateConfig::default()))
        .await
        .expect("a client that offers compression connects");
    assert_eq!(upgraded.deflate(), Some(&default_agreement()));
}

/// `Ctx::set_write_compression(false)` in `on_open` (eyesore's `EnableWriteCompression`) keeps
/// the agreement but sends that connection's messages uncompressed, while the client still
/// compresses its own; other connections are not affected.
pub async fn on_open_switches_write_compression_off_for_one_connection<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(compressing(DeflateConfig::default()), &seen).await;
    let options = compressing(DeflateConfig::default());
    let (quiet, counts) = connect_counted::<T>(addr(&server), "/quiet", &options).await.expect("connected");
    assert_eq!(quiet.deflate(), Some(&default_agreement()));
    round_trip::<T, _>(quiet).await;
    let payload = payload_bytes();
    assert!(counts.read() > payload, "the server compressed: the client read {} bytes for {payload}", counts.read());
    assert!(counts.written() < payload / 4, "the client sent {} bytes for {payload}", counts.written());
    let agreed = Some(default_agreement());
    let quiet_seen = Seen { path: "/quiet".to_owned(), on_connect: agreed, on_open: agreed, writes_compressed: false };
    assert_eq!(seen.next().await, quiet_seen);

    let (other, counts) = connect_counted::<T>(addr(&server), "/", &options).await.expect("connected");
    round_trip::<T, _>(other).await;
    assert!(counts.read() < payload / 4, "{counts:?} for {payload}");
}

/// `Channels` report the agreed parameters and subprotocol, and `Handle::set_write_compression`
/// switches compression between queued messages: the client's messages queued after `false`
/// cross the wire whole, those after `true` compressed again.
pub async fn channels_report_the_agreement_and_switch_write_compression<T: TestRuntime>() {
    let seen = Inbox::default();
    let server = echo_server::<T>(compressing(DeflateConfig::default()), &seen).await;
    let (upgraded, counts) =
        connect_counted::<T>(addr(&server), "/", &compressing(DeflateConfig::default())).await.expect("connected");
    let agreed = upgraded.deflate().copied();
    let mut channels = upgraded.channels::<Message>();
    assert_eq!(channels.deflate().copied(), agreed);
    assert_eq!(agreed, Some(default_agreement()));
    assert_eq!(channels.subprotocol(), None);
    let text = Message::from(compressible_text(100_000));
    let handle = channels.sender.handle().clone();
    let mut written = Vec::new();
    for enabled in [true, false, true] {
        handle.set_write_compression(enabled).expect("open");
        let before = counts.written();
        channels.sender.send(text.clone()).await.expect("sent");
        assert_eq!(channels.receiver.recv().await.as_ref(), Some(&text));
        written.push(counts.written() - before);
    }
    assert!(written[0] < 100_000 / 4 && written[2] < 100_000 / 4, "{written:?}");
    assert!(written[1] > 100_000, "{written:?}");
    channels.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
    let _ = within::<T, _>(Duration::from_secs(10), "the connection's end", channels.done).await;
    assert!(matches!(handle.set_write_compression(false), Err(Error::Closed)));
}

/// Messages of every shape: empty, short (sent uncompressed, below `min_compress_size`), UTF-8,
/// around the length encodings, and a MiB of each kind.
fn messages() -> Vec<Message> {
    let mut out = vec![
        Message::from(String::new()),
        Message::from("hello".to_owned()),
        Message::from("κόσμε 🦀 ünïcödé ".repeat(20)),
        Message::from(Bytes::new()),
        Message::from(Bytes::from_static(&[0, 0xFF, 0x80, 0x7F])),
    ];
    for n in [125, 126, 65_535, 65_536] {
        out.push(Message::from(compressible_text(n)));
        out.push(Message::from(compressible_binary(n)));
    }
    out.push(Message::from(compressible_text(1 << 20)));
    out.push(Message::from(compressible_binary(1 << 20)));
    out
}
