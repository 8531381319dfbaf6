//! What the tests against a real peer nobody here wrote share: `interop_python.rs` (Python
//! `websockets`) and `interop_node.rs` (Node.js `ws`). Both peers' scripts speak the same line
//! protocol: `key=value` lines on stdout, `port=N` once the server listens.
//!
//! A [`Peer`] says how to run one peer's client and server scripts. Each test file sets its peer up
//! once per test process ([`set_up_once`], [`set_up_shared_dir`]) and lists its tests with
//! [`peer_tests!`]: each runs one of the scenarios below against the peer, and checks on its own
//! what only that peer reports.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferrule_tokio::{
    Channels, CloseCause, CloseCode, CloseInfo, Ctx, DeflateConfig, DeflateParams, Handler, HandlerError, Message,
    MessageKind, Options, Request, Server, WebSocket,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Defines the tests against one peer, each a `#[tokio::test]` on the multi-threaded runtime.
/// First `python = python();`: each test binds the peer to that name from that call, and returns
/// at once when it is `None` (the tests are skipped). Then each test: its doc comment, its name,
/// `=>`, and the future it awaits: a scenario below, or an `async` block that adds the checks
/// only this peer needs.
macro_rules! peer_tests {
    ($peer:ident = $set_up:expr; $($(#[$attr:meta])* $name:ident => $test:expr;)*) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some($peer) = $set_up else { return };
                $test.await;
            }
        )*
    };
}
pub(crate) use peer_tests;

/// Set to `1` to skip these tests, loudly.
const SKIP_VAR: &str = "FERRULE_SKIP_INTEROP";
/// One step on the Rust side: a connect, a receive, the end of a connection. Only a guard
/// against a hang: every step waits for its event, and a 4 MiB message through a debug build's
/// TLS or compression on a machine whose cores are busy can take many seconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Both sides' message and frame limits: room for the 4 MiB messages.
const MAX_SIZE: usize = 8 << 20;
/// The large messages the ferrule client sends.
const LARGE: usize = 4 << 20;
/// The text a ferrule handler streams with `Ctx::send_fragment`, split inside `✓` and inside `🦀`.
pub(crate) const STREAMED_TEXT: &str = "streamed ✓ by ferrule 🦀 in fragments";
/// The frames of the two streamed messages, as the peer's scripts name them (`.fin`: FIN set).
const STREAMED_FRAMES: &str = "TEXT PING.fin CONT CONT.fin BINARY CONT CONT.fin";

// ---------------------------------------------------------------------------------------------
// Scenarios: what the tests of both files run, each against its own peer

/// The peer's client `echo`s against `serve` with an [`Echo`] handler and closes with 1000
/// "interop done": clean at the server, which saw as many messages as the client reports.
pub(crate) async fn client_echo_through_serve_handler(peer: &Peer) {
    let (tx, closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    client_echo(peer, server, &[&url], closed, "the handler").await;
}

/// The peer's client `echo`s over TLS against `serve_tls` with an [`Echo`] handler: the server
/// serves `pki`'s certificate (for `localhost`), and the client, given `ca=CA.pem` (`ca`, the
/// path of `pki`'s CA certificate), trusts it and connects to `wss://localhost`.
#[allow(dead_code)] // Only interop_python.rs's client takes a CA.
pub(crate) async fn client_echo_through_serve_tls(peer: &Peer, pki: &ferrule_tests::tls::TestPki, ca: &Path) {
    let (tx, closed) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("wss://localhost:{}/", listener.local_addr().expect("local addr").port());
    let options = server_options().build().expect("options");
    let server = ferrule_tokio::serve_tls(listener, pki.server_config(), options, move |_, _| {
        Ok(Echo { received: 0, closed: tx.clone() })
    });
    let ca = format!("ca={}", ca.display());
    client_echo(peer, server, &[&url, &ca], closed, "the TLS handler").await;
}

/// The peer's client `echo-deflate` (the `echo` exchange, offering permessage-deflate; `args`
/// follow the URL) against a
/// handler server with `compression` on: both ends report the same agreed parameters (the
/// server's `Acceptance::deflate` and `Ctx::deflate`, the client's `extensions=` line), so every
/// message of the exchange, fragmented and 4 MiB ones included, went compressed. Returns them.
pub(crate) async fn client_echo_compressed(peer: &Peer, compression: DeflateConfig, args: &[&str]) -> DeflateParams {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (agreed_tx, mut agreed) = mpsc::unbounded_channel();
    let options = server_options().compression(compression).build().expect("options");
    let server = ferrule_tokio::serve(listener, options, move |_, acceptance| {
        let _ = agreed_tx.send(acceptance.deflate().copied());
        Ok(CompressedEcho { echo: Echo { received: 0, closed: tx.clone() }, agreed: agreed_tx.clone() })
    });
    let args: Vec<&str> = ["echo-deflate", &url].into_iter().chain(args.iter().copied()).collect();
    let run = run_client(peer, &args).await;
    run.assert_success(&format!("{} echo-deflate", peer.client));
    let on_connect = next_with_timeout(&mut agreed).await.expect("permessage-deflate agreed in on_connect");
    let on_open = next_with_timeout(&mut agreed).await;
    assert_eq!(on_open, Some(on_connect), "Ctx::deflate in on_open");
    let name = peer.name;
    assert_eq!(
        run.value("extensions"),
        Some(on_connect.to_string().as_str()),
        "the extensions the {name} client agreed to; stdout: {}",
        run.stdout
    );
    let (received, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "interop done");
    assert_eq!(Some(received), run.value("messages").and_then(|n| n.parse().ok()), "messages seen by the handler");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
    on_connect
}

/// The same exchange against `serve_channels` with an echo task, whose done signal reports the
/// clean 1000 close.
pub(crate) async fn client_echo_through_serve_channels(peer: &Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let (tx, closed) = mpsc::unbounded_channel();
    let options = server_options().build().expect("options");
    let server = ferrule_tokio::serve_channels(listener, options, move |_: Request, mut ch: Channels<Message>| {
        let tx = tx.clone();
        async move {
            let mut received = 0;
            while let Some(message) = ch.receiver.recv().await {
                received += 1;
                if ch.sender.send(message).await.is_err() {
                    break;
                }
            }
            let info = ch.done.await;
            let _ = tx.send((received, info));
        }
    });
    client_echo(peer, server, &[&url], closed, "the task").await;
}

/// Runs the peer's client `echo` against `server` at `args` (the URL, then the client's options): it closes with 1000 "interop done",
/// clean at the server, whose side (`seen_by`) reports on `closed` as many messages as the client
/// reports sending.
async fn client_echo(
    peer: &Peer,
    server: Server,
    args: &[&str],
    mut closed: mpsc::UnboundedReceiver<(usize, CloseInfo)>,
    seen_by: &str,
) {
    let run = run_client(peer, &[&["echo"], args].concat()).await;
    run.assert_success(&format!("{} echo", peer.client));
    let (received, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "interop done");
    assert_eq!(Some(received), run.value("messages").and_then(|n| n.parse().ok()), "messages seen by {seen_by}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
}

/// An [`Echo`] server handler answers the peer's client `fragments` with [`stream_fragments`]:
/// the client reports [`STREAMED_FRAMES`] and both messages whole, and closes clean.
pub(crate) async fn client_receives_handler_fragments(peer: &Peer) {
    let (tx, mut closed) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let options = server_options().build().expect("options");
    let server = ferrule_tokio::serve(listener, options, move |_, _| Ok(Echo { received: 0, closed: tx.clone() }));

    let run = run_client(peer, &["fragments", &url]).await;
    run.assert_success(&format!("{} fragments", peer.client));
    let name = peer.name;
    assert_eq!(run.value("frames"), Some(STREAMED_FRAMES), "the frames the {name} client read; stdout: {}", run.stdout);
    assert_eq!(run.value("text"), Some(STREAMED_TEXT), "the text message the {name} client received");
    let binary = hex(&streamed_binary());
    assert_eq!(run.value("binary"), Some(binary.as_str()), "the binary message the {name} client received");
    let (received, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "fragments checked");
    assert_eq!(received, 1, "messages seen by the handler");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
}

/// A [`ClientStreamer`] (`WebSocket::run`, connected with `options`) streams
/// [`stream_fragments`] to the peer's echo server, gets both echoes back byte for byte and closes
/// with a clean 1000. Returns what the server printed, once it exited 0.
pub(crate) async fn server_receives_client_handler_fragments(peer: &Peer, options: &Options) -> ScriptRun {
    let mut server = PeerServer::start(peer, &[]).await;
    let conn = server.connect(options).await;
    let (tx, mut echoes) = mpsc::unbounded_channel();
    let running = tokio::spawn(conn.run(ClientStreamer { echoes: tx, left: 2 }));
    for expected in [Message::text(STREAMED_TEXT), Message::binary(streamed_binary())] {
        match tokio::time::timeout(STEP_TIMEOUT, echoes.recv()).await {
            Ok(Some(got)) if got == expected => {}
            Ok(Some(got)) => server.fail(&format!("expected {}\n got {}", describe(&expected), describe(&got))).await,
            Ok(None) => server.fail(&format!("the connection ended while expecting {}", describe(&expected))).await,
            Err(_) => server.fail(&format!("no echo within {STEP_TIMEOUT:?}; expected {}", describe(&expected))).await,
        }
    }
    let info = match tokio::time::timeout(STEP_TIMEOUT, running).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => server.fail(&format!("the client task failed: {e}")).await,
        Err(_) => server.fail("the client handler did not finish after its close").await,
    };
    let cause = CloseCause::Local { code: CloseCode::NORMAL, reason: "ferrule done".to_owned() };
    assert_eq!(info, CloseInfo { was_clean: true, code: CloseCode::NORMAL, reason: "ferrule done".to_owned(), cause });
    let run = server.finish().await;
    run.assert_success(peer.server);
    run
}

/// The ferrule client (`connect`, channel API) against the peer's echo server: text, binary, empty
/// and 4 MiB messages echoed byte for byte; the server's fragmented text (`fragmented`) and
/// binary reassembled; its ping answered; a 1000 close clean at both ends, and no error on the
/// error stream. Returns what the server printed, once it exited 0, and the messages echoed (not
/// the two requests after them).
pub(crate) async fn ferrule_client_echo_through_server(peer: &Peer, fragmented: &str) -> (ScriptRun, Vec<Message>) {
    let (run, messages, _) = ferrule_client_echo_through_server_with(peer, fragmented, &[], None).await;
    (run, messages)
}

/// The same exchange with the client's `compression` set and the peer's server started with
/// `args`; also returns the permessage-deflate parameters the client agreed to
/// (`Upgraded::deflate`).
pub(crate) async fn ferrule_client_echo_through_server_with(
    peer: &Peer,
    fragmented: &str,
    args: &[&str],
    compression: Option<DeflateConfig>,
) -> (ScriptRun, Vec<Message>, Option<DeflateParams>) {
    let options = ferrule_client_options().compression(compression).build().expect("options");
    ferrule_client_echo_through(peer, fragmented, args, &options, "ws://127.0.0.1").await
}

/// [`ferrule_client_echo_through_server`] over TLS: the peer's server, started with `args`, serves
/// `pki`'s certificate (for `localhost`), and the client trusts `pki`'s CA and connects to
/// `wss://localhost`.
#[allow(dead_code)] // Only interop_python.rs has a TLS server script.
pub(crate) async fn ferrule_client_echo_through_tls_server(
    peer: &Peer,
    fragmented: &str,
    args: &[&str],
    pki: &ferrule_tests::tls::TestPki,
) -> ScriptRun {
    let options = ferrule_client_options().tls(pki.client_tls()).build().expect("options");
    ferrule_client_echo_through(peer, fragmented, args, &options, "wss://localhost").await.0
}

/// The ferrule client's options for the echo exchanges: room for the 4 MiB messages.
fn ferrule_client_options() -> ferrule_tokio::OptionsBuilder {
    Options::builder().max_message_size(MAX_SIZE).max_frame_size(MAX_SIZE)
}

/// The exchange of [`ferrule_client_echo_through_server`] with the client's `options`, against
/// the peer's server started with `args`, at `base` (scheme and host) and the port it printed.
async fn ferrule_client_echo_through(
    peer: &Peer,
    fragmented: &str,
    args: &[&str],
    options: &Options,
    base: &str,
) -> (ScriptRun, Vec<Message>, Option<DeflateParams>) {
    let mut server = PeerServer::start(peer, args).await;
    let conn = server.connect_to(base, options).await;
    let agreed = conn.deflate().copied();
    let mut ch = conn.channels::<Message>();

    let large_binary: Vec<u8> = (0..LARGE).map(|i| (i % 251) as u8).collect();
    let large_text = "ferrule ✓ ".repeat(LARGE / 12);
    let messages = vec![
        Message::text("hello from ferrule"),
        Message::text("grüße ✓ 🦀"),
        Message::text(""),
        Message::binary(vec![0, 1, 2, 0xff, 0xfe]),
        Message::binary(Vec::new()),
        Message::binary(large_binary),
        Message::text(large_text),
    ];
    for message in &messages {
        send(&mut server, &ch, message.clone()).await;
        expect(&mut server, &mut ch, message).await;
    }

    // The server answers with a fragmented text and a fragmented binary message.
    send(&mut server, &ch, Message::text("please-fragment")).await;
    expect(&mut server, &mut ch, &Message::text(fragmented)).await;
    let fragmented_binary: Vec<u8> = (0..=255u8).cycle().take(256 * 3).collect();
    expect(&mut server, &mut ch, &Message::binary(fragmented_binary)).await;

    // The server pings and replies once our pong arrived.
    send(&mut server, &ch, Message::text("please-ping")).await;
    expect(&mut server, &mut ch, &Message::text("pong received")).await;

    ch.disconnect.disconnect(CloseCode::NORMAL, "ferrule done").expect("disconnect");
    let info = match tokio::time::timeout(STEP_TIMEOUT, ch.done.clone()).await {
        Ok(info) => info,
        Err(_) => server.fail("the done signal did not complete after the close").await,
    };
    assert!(info.was_clean, "the close was not clean: {info:?}");
    assert_eq!(info.code, CloseCode::NORMAL, "{info:?}");
    assert!(ch.receiver.recv().await.is_none(), "a message after the close");
    if let Some(e) = ch.errors.recv().await {
        server.fail(&format!("the error stream reported: {e}")).await;
    }
    let run = server.finish().await;
    run.assert_success(peer.server);
    let name = peer.name;
    assert_eq!(run.value("close"), Some("1000 reason=ferrule done"), "the close the {name} server received");
    (run, messages, agreed)
}

/// The peer's client `subprotocol` offers `offer` (comma-separated) to a server accepting
/// `["chat.v2", "chat.v1"]`: `check` looks at what the client printed, and the server's
/// `Acceptance` chose `chosen`.
pub(crate) async fn client_offering_subprotocols(
    peer: &Peer,
    offer: &str,
    chosen: Option<&str>,
    check: impl FnOnce(&ScriptRun),
) {
    let (server, url, mut acceptance) = serve_recording_subprotocol().await;
    let run = run_client(peer, &["subprotocol", &url, offer]).await;
    run.assert_success(&format!("{} subprotocol", peer.client));
    check(&run);
    assert_eq!(next_with_timeout(&mut acceptance).await, chosen.map(str::to_owned), "the server's Acceptance");
    server.shutdown(STEP_TIMEOUT).await;
}

/// The peer's client `origin` with a foreign `Origin` against the default options (same origin):
/// HTTP 403, and no handler made.
pub(crate) async fn client_with_foreign_origin_gets_403(peer: &Peer) {
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(Options::default(), tx).await;
    let run = run_client(peer, &["origin", &url, "http://evil.example"]).await;
    run.assert_success(&format!("{} origin", peer.client));
    assert_eq!(run.value("status"), Some("403"), "stdout: {}", run.stdout);
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
    assert!(closed.try_recv().is_err(), "a handler ran for a refused origin");
}

/// The peer's client `origin` with the server's own host and port against the default options:
/// the connection opens, and closes clean.
pub(crate) async fn client_with_same_origin_is_accepted(peer: &Peer) {
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(Options::default(), tx).await;
    let origin = url.trim_end_matches('/').replacen("ws://", "http://", 1);
    let run = run_client(peer, &["origin", &url, &origin]).await;
    run.assert_success(&format!("{} origin", peer.client));
    assert!(run.has_line("open"), "the connection did not open; stdout: {}", run.stdout);
    let (_, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "origin checked");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

/// The peer's echo server, started with `4000`, closes with 4000 and `reason` on `please-close`:
/// the ferrule client's done signal reports that close as clean, with no error on the error
/// stream. Returns what the server printed, once it exited 0.
pub(crate) async fn ferrule_client_sees_server_close_4000(peer: &Peer, reason: &str) -> ScriptRun {
    let mut server = PeerServer::start(peer, &["4000"]).await;
    let conn = server.connect(&Options::default()).await;
    let mut ch = conn.channels::<Message>();
    send(&mut server, &ch, Message::text("please-close")).await;
    let info = match tokio::time::timeout(STEP_TIMEOUT, ch.done.clone()).await {
        Ok(info) => info,
        Err(_) => server.fail("the done signal did not complete after the server's close").await,
    };
    let expected =
        CloseInfo { was_clean: true, code: CloseCode::new(4000), reason: reason.to_owned(), cause: CloseCause::Peer };
    assert_eq!(info, expected);
    if let Some(e) = ch.errors.recv().await {
        server.fail(&format!("the error stream reported: {e}")).await;
    }
    let run = server.finish().await;
    run.assert_success(&format!("{} 4000", peer.server));
    run
}

/// `Server::shutdown` while the peer's client `wait-close` is connected: the client gets 1001
/// "server shutting down" (and `check` looks at what else it printed), no connection is left open,
/// and `on_close` sees a clean 1001.
pub(crate) async fn client_sees_1001_going_away_on_server_shutdown(peer: &Peer, check: impl FnOnce(&ScriptRun)) {
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    let shut_down = async {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while server.connections() == 0 {
            assert!(Instant::now() < deadline, "the {} client did not connect", peer.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.shutdown(STEP_TIMEOUT).await
    };
    let args = ["wait-close", &url];
    let client = run_client(peer, &args);
    let (run, left_open) = tokio::join!(client, shut_down);
    run.assert_success(&format!("{} wait-close", peer.client));
    assert_eq!(run.value("close"), Some("1001 reason=server shutting down"), "the close the client received");
    check(&run);
    assert_eq!(left_open, 0, "connections left open at shutdown");
    let (_, info) = next_close(&mut closed).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(info.code, CloseCode::GOING_AWAY, "{info:?}");
}

/// The peer's client `oversize` sends 9 MiB against the server's 8 MiB `max_message_size`: it
/// receives a 1009 close, and the handler no message.
pub(crate) async fn client_sending_over_max_message_size_gets_1009(peer: &Peer) {
    let size = (MAX_SIZE + (1 << 20)).to_string();
    client_is_closed_with(peer, "oversize", &[&size], "the oversized message", CloseCode::MESSAGE_TOO_BIG).await;
}

/// The peer's client `invalid-utf8` sends a text message that is not UTF-8: it receives a 1007
/// close, and the handler no message.
pub(crate) async fn client_sending_invalid_utf8_gets_1007(peer: &Peer) {
    client_is_closed_with(peer, "invalid-utf8", &[], "the invalid message", CloseCode::INVALID_PAYLOAD).await;
}

/// Runs the peer's client `command` (`URL`, then `args`) against an echo server: the client
/// receives a close with `code`, and the handler saw no message (`undelivered` was not delivered).
async fn client_is_closed_with(peer: &Peer, command: &str, args: &[&str], undelivered: &str, code: CloseCode) {
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    let args: Vec<&str> = [command, &url].into_iter().chain(args.iter().copied()).collect();
    let run = run_client(peer, &args).await;
    run.assert_success(&format!("{} {command}", peer.client));
    assert_eq!(
        run.value("close").map(|c| c.split(' ').next()),
        Some(Some(code.as_u16().to_string().as_str())),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let (received, info) = next_close(&mut closed).await;
    assert_eq!(received, 0, "{undelivered} was delivered");
    assert_eq!(info.code, code, "{info:?}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

/// The peer's client `deflate` offers permessage-deflate: no extension is negotiated, the close is
/// clean, and `check_received` gets how many messages the handler saw.
pub(crate) async fn client_offering_permessage_deflate_is_declined(peer: &Peer, check_received: impl FnOnce(usize)) {
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    let run = run_client(peer, &["deflate", &url]).await;
    run.assert_success(&format!("{} deflate", peer.client));
    assert_eq!(run.value("extensions"), Some(""), "extensions negotiated");
    let (received, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "deflate checked");
    check_received(received);
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Servers and assertions

/// Server options for the echo tests: room for 4 MiB messages; no keepalive pings, so only the
/// scripts' own pings are on the wire.
fn server_options() -> ferrule_tokio::OptionsBuilder {
    Options::builder().max_message_size(MAX_SIZE).max_frame_size(MAX_SIZE).ping_period(None)
}

/// Echoes every message, except `please-fragment`, answered by [`stream_fragments`]; reports how
/// many messages it saw and how the connection ended.
struct Echo {
    received: usize,
    closed: mpsc::UnboundedSender<(usize, CloseInfo)>,
}

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        self.received += 1;
        if message == Message::text("please-fragment") {
            stream_fragments(ctx)?;
        } else {
            ctx.send(&message)?;
        }
        Ok(())
    }

    fn on_close(&mut self, info: &CloseInfo) {
        let _ = self.closed.send((self.received, info.clone()));
    }
}

/// An [`Echo`] that reports `Ctx::deflate` from `on_open`.
struct CompressedEcho {
    echo: Echo,
    agreed: mpsc::UnboundedSender<Option<DeflateParams>>,
}

impl Handler for CompressedEcho {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        let _ = self.agreed.send(ctx.deflate().copied());
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        self.echo.on_message(ctx, message)
    }

    fn on_close(&mut self, info: &CloseInfo) {
        self.echo.on_close(info);
    }
}

/// A client handler: streams [`stream_fragments`] on open, forwards the echoes, and closes with
/// 1000 once `left` of them arrived.
struct ClientStreamer {
    echoes: mpsc::UnboundedSender<Message>,
    left: usize,
}

impl Handler for ClientStreamer {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        stream_fragments(ctx)?;
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        let _ = self.echoes.send(message);
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            ctx.close(CloseCode::NORMAL, "ferrule done")?;
        }
        Ok(())
    }
}

/// Streams [`STREAMED_TEXT`] in three fragments, cut inside `✓` and inside `🦀`, with a ping
/// (`stream-ping`) after the first; then [`streamed_binary`] in three fragments, the middle one
/// empty. On the wire: [`STREAMED_FRAMES`].
fn stream_fragments(ctx: &mut Ctx<'_>) -> Result<(), ferrule_tokio::Error> {
    let text = STREAMED_TEXT.as_bytes();
    let in_check = STREAMED_TEXT.find('✓').expect("✓") + 1;
    let in_crab = STREAMED_TEXT.find('🦀').expect("🦀") + 2;
    assert!(!STREAMED_TEXT.is_char_boundary(in_check) && !STREAMED_TEXT.is_char_boundary(in_crab));
    ctx.send_fragment(MessageKind::Text, &text[..in_check], false)?;
    ctx.ping(b"stream-ping")?;
    ctx.send_fragment(MessageKind::Text, &text[in_check..in_crab], false)?;
    ctx.send_fragment(MessageKind::Text, &text[in_crab..], true)?;
    let binary = streamed_binary();
    ctx.send_fragment(MessageKind::Binary, &binary[..100], false)?;
    ctx.send_fragment(MessageKind::Binary, &[], false)?;
    ctx.send_fragment(MessageKind::Binary, &binary[100..], true)?;
    Ok(())
}

/// The binary message [`stream_fragments`] sends: 0..=255, then 0..=99 and 0xff.
pub(crate) fn streamed_binary() -> Vec<u8> {
    (0..=255u8).chain(0..100).chain([0xff]).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An echo server on an ephemeral loopback port, and its `ws://` URL.
async fn serve_echo(options: Options, closed: mpsc::UnboundedSender<(usize, CloseInfo)>) -> (Server, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let server = ferrule_tokio::serve(listener, options, move |_, _| Ok(Echo { received: 0, closed: closed.clone() }));
    (server, url)
}

/// An echo server accepting `chat.v2` then `chat.v1`, reporting the subprotocol it chose.
async fn serve_recording_subprotocol() -> (Server, String, mpsc::UnboundedReceiver<Option<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let options = Options::builder().subprotocols(["chat.v2", "chat.v1"]).build().expect("options");
    let (tx, rx) = mpsc::unbounded_channel();
    let (closed, _) = mpsc::unbounded_channel();
    let server = ferrule_tokio::serve(listener, options, move |_, acceptance| {
        let _ = tx.send(acceptance.subprotocol().map(str::to_owned));
        Ok(Echo { received: 0, closed: closed.clone() })
    });
    (server, url, rx)
}

async fn next_with_timeout<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, rx.recv()).await {
        Ok(Some(value)) => value,
        Ok(None) => panic!("the server side ended without reporting"),
        Err(_) => panic!("the server side did not report within {STEP_TIMEOUT:?}"),
    }
}

async fn next_close(rx: &mut mpsc::UnboundedReceiver<(usize, CloseInfo)>) -> (usize, CloseInfo) {
    next_with_timeout(rx).await
}

fn assert_clean_close(info: &CloseInfo, reason: &str) {
    assert!(info.was_clean, "the server saw an unclean close: {info:?}");
    assert_eq!(info.code, CloseCode::NORMAL, "{info:?}");
    assert_eq!(info.reason, reason, "{info:?}");
}

/// Queues a message on the ferrule client, failing with the peer server's output.
async fn send(server: &mut PeerServer, ch: &Channels<Message>, message: Message) {
    match tokio::time::timeout(STEP_TIMEOUT, ch.sender.send(message)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => server.fail(&format!("send failed: {e}")).await,
        Err(_) => server.fail("send did not complete").await,
    }
}

/// Receives the next message on the ferrule client and checks it byte for byte.
async fn expect(server: &mut PeerServer, ch: &mut Channels<Message>, expected: &Message) {
    let got = match tokio::time::timeout(STEP_TIMEOUT, ch.receiver.recv()).await {
        Ok(Some(got)) => got,
        Ok(None) => server.fail(&format!("the connection ended while expecting {}", describe(expected))).await,
        Err(_) => server.fail(&format!("no message within {STEP_TIMEOUT:?}; expected {}", describe(expected))).await,
    };
    if got != *expected {
        let first_difference = got.as_bytes().iter().zip(expected.as_bytes()).position(|(a, b)| a != b);
        server
            .fail(&format!(
                "expected {}\n got {}\n first differing byte: {first_difference:?}",
                describe(expected),
                describe(&got)
            ))
            .await;
    }
}

pub(crate) fn kind(message: &Message) -> &'static str {
    match message {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
    }
}

/// A short description of a message that may be megabytes long.
fn describe(message: &Message) -> String {
    let head = &message.as_bytes()[..message.len().min(40)];
    format!("{} of {} bytes starting {:?}", kind(message), message.len(), String::from_utf8_lossy(head))
}

// ---------------------------------------------------------------------------------------------
// The peer's processes

/// How to run one peer's scripts.
pub(crate) struct Peer {
    /// What failure messages call the peer: "the {name} client", "the {name} server".
    pub(crate) name: &'static str,
    /// The interpreter that runs the scripts.
    pub(crate) program: PathBuf,
    /// The directory holding the scripts.
    pub(crate) scripts: PathBuf,
    /// The client script in `scripts`: one run per test, its first argument the command.
    pub(crate) client: &'static str,
    /// The echo server script in `scripts`: prints `port=N`, serves one connection, exits.
    pub(crate) server: &'static str,
    /// The scripts' working directory; `None`: the test process's own.
    pub(crate) cwd: Option<PathBuf>,
    /// Environment variables set (`Some`) or removed (`None`) for the scripts.
    pub(crate) env: &'static [(&'static str, Option<&'static str>)],
    /// How long one run of a script may take before it is killed.
    pub(crate) script_timeout: Duration,
}

impl Peer {
    /// `program SCRIPT` with the peer's working directory and environment, its output piped, and
    /// killed when dropped.
    fn command(&self, script: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command.arg(self.scripts.join(script));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        for &(key, value) in self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        command
    }
}

/// A finished script of the peer's.
pub(crate) struct ScriptRun {
    status: ExitStatus,
    pub(crate) stdout: String,
    stderr: String,
}

impl ScriptRun {
    pub(crate) fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// The value of the stdout line `key=value`.
    pub(crate) fn value(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }

    /// Whether stdout has the line `line`.
    fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l == line)
    }
}

/// Runs the peer's client script with `args` to completion, killing it after the peer's
/// [`script_timeout`](Peer::script_timeout).
pub(crate) async fn run_client(peer: &Peer, args: &[&str]) -> ScriptRun {
    let script = peer.client;
    let child = peer.command(script).args(args).spawn().unwrap_or_else(|e| panic!("start {script}: {e:?}"));
    // On timeout the future, and with it the child, is dropped: kill_on_drop kills it.
    match tokio::time::timeout(peer.script_timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => ScriptRun {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("waiting for {script} {args:?}: {e}"),
        Err(_) => panic!("{script} {args:?} did not finish within {:?}; killed it", peer.script_timeout),
    }
}

/// The peer's server script running: its port, and the rest of its output to collect.
struct PeerServer {
    script: &'static str,
    script_timeout: Duration,
    child: tokio::process::Child,
    port: u16,
    stdout: tokio::task::JoinHandle<String>,
    stderr: tokio::task::JoinHandle<String>,
}

impl PeerServer {
    /// Starts the peer's server script with `args` and reads the port it listens on.
    async fn start(peer: &Peer, args: &[&str]) -> Self {
        let script = peer.server;
        let mut child = peer.command(script).args(args).spawn().unwrap_or_else(|e| panic!("start {script}: {e:?}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text).await;
            text
        });
        let port = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(port) = line.strip_prefix("port=") {
                    return port.parse::<u16>().ok();
                }
            }
            None
        })
        .await;
        let rest = tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(line)) = stdout.next_line().await {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let script_timeout = peer.script_timeout;
        let mut server = Self { script, script_timeout, child, port: 0, stdout: rest, stderr };
        match port {
            Ok(Some(port)) => server.port = port,
            _ => server.fail(&format!("{script} did not print its port")).await,
        }
        server
    }

    /// Connects the ferrule client to the script with `options`, failing with what it printed.
    async fn connect(&mut self, options: &Options) -> WebSocket {
        self.connect_to("ws://127.0.0.1", options).await
    }

    /// [`connect`](Self::connect) at `base` (scheme and host) and the script's port.
    async fn connect_to(&mut self, base: &str, options: &Options) -> WebSocket {
        let url = format!("{base}:{}/", self.port);
        match tokio::time::timeout(STEP_TIMEOUT, ferrule_tokio::connect(&url, options)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => self.fail(&format!("connect to {url} failed: {e}")).await,
            Err(_) => self.fail(&format!("connect to {url} timed out")).await,
        }
    }

    /// Waits for the script to exit (it does after its one connection), killing it after the
    /// peer's [`script_timeout`](Peer::script_timeout).
    async fn finish(mut self) -> ScriptRun {
        let script = self.script;
        let status = match tokio::time::timeout(self.script_timeout, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => self.fail(&format!("waiting for {script}: {e}")).await,
            Err(_) => self.fail(&format!("{script} did not exit after the connection closed")).await,
        };
        let stdout = self.stdout.await.unwrap_or_default();
        let stderr = self.stderr.await.unwrap_or_default();
        ScriptRun { status, stdout, stderr }
    }

    /// Kills the script and fails the test with `message` and what the script printed.
    async fn fail(&mut self, message: &str) -> ! {
        let _ = self.child.kill().await;
        let stdout = (&mut self.stdout).await.unwrap_or_default();
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        let script = self.script;
        panic!("{message}\n--- {script} stdout ---\n{stdout}\n--- {script} stderr ---\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Setting the peer up

/// The peer `set_up` makes, once per test process; `None` when `FERRULE_SKIP_INTEROP=1`. Panics
/// with the reason when it cannot be set up. `runtime` and `package` name the peer in those
/// messages ("Python", "websockets"). One cell serves: each test binary includes this module, and
/// tests one peer.
pub(crate) fn set_up_once(
    runtime: &str,
    package: &str,
    set_up: impl FnOnce() -> Result<Peer, String>,
) -> Option<&'static Peer> {
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        eprintln!(
            "\n********************************************************************\n\
             ** {SKIP_VAR}=1: SKIPPING the {runtime} {package} interop test.\n\
             ** Nothing was checked against the real peer.\n\
             ********************************************************************\n"
        );
        return None;
    }
    static PEER: OnceLock<Result<Peer, String>> = OnceLock::new();
    match PEER.get_or_init(set_up) {
        Ok(peer) => Some(peer),
        Err(e) => panic!("{e}\n(set {SKIP_VAR}=1 to skip the {runtime} interop tests on purpose)"),
    }
}

/// The directory `name` under `CARGO_TARGET_TMPDIR`, shared by the test processes: the one there
/// when `ready` holds for it, else one that `build` makes (given the path to create it at). It is
/// built under a per-process name and renamed into place, so test processes running at once never
/// see a half-built one. `what` names it in errors ("venv") and `wanted` says what `ready` checks
/// ("import websockets 1.0"); `done` is the log line once it is built.
pub(crate) fn set_up_shared_dir(
    name: &str,
    what: &str,
    wanted: &str,
    ready: impl Fn(&Path) -> bool,
    build: impl FnOnce(&Path) -> Result<(), String>,
    done: impl FnOnce(&Path) -> String,
) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(name);
    if ready(&dir) {
        return Ok(dir);
    }

    let started = Instant::now();
    let staging = root.join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    build(&staging)?;

    if dir.exists() && !ready(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Err(e) = std::fs::rename(&staging, &dir) {
        // Another test process may have published its own first; use that one.
        let _ = std::fs::remove_dir_all(&staging);
        if !ready(&dir) {
            return Err(format!("moving the {what} to {}: {e}", dir.display()));
        }
    }
    if !ready(&dir) {
        return Err(format!("the {what} at {} does not {wanted}", dir.display()));
    }
    eprintln!("interop: {} in {:.1?}", done(&dir), started.elapsed());
    Ok(dir)
}

/// The interop scripts' directory: the Python ones, and the Node.js ones in `node/`.
pub(crate) fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// Runs a command to completion, killing it after `timeout`; an error unless it exits 0.
pub(crate) fn run_blocking(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what} did not start: {e}"))?;
    // Drain both pipes on threads, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}; killed it"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    let output =
        Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() };
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
