//! Interoperability with a real peer nobody here wrote: the Python `websockets` package, at the
//! version pinned in `tests/interop/requirements.txt`, over loopback TCP on the tokio runtime.
//!
//! Each test process sets up one venv under `CARGO_TARGET_TMPDIR` (`python3 -m venv`, then
//! `pip install -r tests/interop/requirements.txt`) and reuses it while it holds the pinned
//! version. No python3 or no network makes these tests fail, not skip; set
//! `FERRULE_SKIP_INTEROP=1` to skip them on purpose. Every Python process runs under a hard
//! timeout and is killed when it runs over.
//!
//! The scripts are `tests/interop/client.py` (a `websockets` client against a ferrule server)
//! and `tests/interop/server.py` (a `websockets` echo server for a ferrule client).
//!
//! Fragmented messages are covered from Python to ferrule in both roles (the Python client sends
//! them to the ferrule server; the Python server sends them to the ferrule client), not from
//! ferrule to Python: the async API has no way to send a fragmented message.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferrule_tokio::{
    Acceptance, Channels, CloseCode, CloseInfo, Ctx, Handler, HandlerError, Message, Options, Request, Server,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Set to `1` to skip these tests, loudly.
const SKIP_VAR: &str = "FERRULE_SKIP_INTEROP";
/// Creating the venv and installing `websockets`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// One run of a Python script (the scripts also stop themselves after 30 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// One step on the Rust side: a connect, a receive, the end of a connection.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Both sides' message and frame limits: room for the 4 MiB messages.
const MAX_SIZE: usize = 8 << 20;
/// The large messages the ferrule client sends.
const LARGE: usize = 4 << 20;

/// The Python client, with the ferrule server's `serve` and an echo [`Handler`]: text (multi-byte
/// UTF-8 too), binary, empty messages, fragmented text (fragment boundaries inside characters) and
/// binary, 4 MiB messages, all echoed byte for byte; a ping answered by a pong with its payload; a
/// close with 1000 and a reason that the server's `on_close` sees as clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_echo_through_serve_handler_closes_clean_1000() {
    let Some(python) = python() else { return };
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;

    let run = run_client(&python, &["echo", &url]).await;
    run.assert_success("client.py echo");
    let (received, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "interop done");
    assert_eq!(Some(received), run.value("messages").and_then(|n| n.parse().ok()), "messages seen by the handler");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
}

/// The same exchange as the handler test, against `serve_channels` with an echo task: the channel
/// front-end reassembles and delivers the same messages, and the done signal reports the clean
/// 1000 close with the client's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_echo_through_serve_channels_closes_clean_1000() {
    let Some(python) = python() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let (tx, mut closed) = mpsc::unbounded_channel();
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

    let run = run_client(&python, &["echo", &url]).await;
    run.assert_success("client.py echo");
    let (received, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "interop done");
    assert_eq!(Some(received), run.value("messages").and_then(|n| n.parse().ok()), "messages seen by the task");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
}

/// The ferrule client (`connect`, channel API) against the Python echo server: text, binary,
/// empty and 4 MiB messages echoed byte for byte; fragmented text and binary from the server
/// reassembled (a fragment boundary inside a character); a server ping answered; a close with 1000
/// that both ends see as clean, and no error on the error stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferrule_client_echo_through_python_server_closes_clean_1000() {
    let Some(python) = python() else { return };
    let mut peer = PythonServer::start(&python, &[]).await;
    let url = format!("ws://127.0.0.1:{}/", peer.port);
    let options = Options::builder().max_message_size(MAX_SIZE).max_frame_size(MAX_SIZE).build().expect("options");
    let conn = match tokio::time::timeout(STEP_TIMEOUT, ferrule_tokio::connect(&url, &options)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => peer.fail(&format!("connect to {url} failed: {e}")).await,
        Err(_) => peer.fail(&format!("connect to {url} timed out")).await,
    };
    let mut ch = conn.channels::<Message>();

    let large_binary: Vec<u8> = (0..LARGE).map(|i| (i % 251) as u8).collect();
    let large_text = "ferrule ✓ ".repeat(LARGE / 12);
    for message in [
        Message::text("hello from ferrule"),
        Message::text("grüße ✓ 🦀"),
        Message::text(""),
        Message::binary(vec![0, 1, 2, 0xff, 0xfe]),
        Message::binary(Vec::new()),
        Message::binary(large_binary),
        Message::text(large_text),
    ] {
        send(&mut peer, &ch, message.clone()).await;
        expect(&mut peer, &mut ch, &message).await;
    }

    // The server answers with a fragmented text and a fragmented binary message.
    send(&mut peer, &ch, Message::text("please-fragment")).await;
    expect(&mut peer, &mut ch, &Message::text("fragmented ✓ from python")).await;
    let fragmented_binary: Vec<u8> = (0..=255u8).cycle().take(256 * 3).collect();
    expect(&mut peer, &mut ch, &Message::binary(fragmented_binary)).await;

    // The server pings and replies once our pong arrived.
    send(&mut peer, &ch, Message::text("please-ping")).await;
    expect(&mut peer, &mut ch, &Message::text("pong received")).await;

    ch.disconnect.disconnect(CloseCode::NORMAL, "ferrule done").expect("disconnect");
    let info = match tokio::time::timeout(STEP_TIMEOUT, ch.done.clone()).await {
        Ok(info) => info,
        Err(_) => peer.fail("the done signal did not complete after the close").await,
    };
    assert!(info.was_clean, "the close was not clean: {info:?}");
    assert_eq!(info.code, CloseCode::NORMAL, "{info:?}");
    assert!(ch.receiver.recv().await.is_none(), "a message after the close");
    if let Some(e) = ch.errors.recv().await {
        peer.fail(&format!("the error stream reported: {e}")).await;
    }
    let run = peer.finish().await;
    run.assert_success("server.py");
    assert_eq!(run.value("close"), Some("1000 reason=ferrule done"), "the close the Python server received");
}

/// Subprotocols are chosen in the server's preference order: the server accepts
/// `["chat.v2", "chat.v1"]`, the Python client offers `["chat.v1", "chat.v2"]` and gets `chat.v2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_offering_v1_v2_gets_server_preferred_chat_v2() {
    let Some(python) = python() else { return };
    let (server, url, mut chosen) = serve_recording_subprotocol().await;
    let run = run_client(&python, &["subprotocol", &url, "chat.v1,chat.v2"]).await;
    run.assert_success("client.py subprotocol");
    assert_eq!(run.value("subprotocol"), Some("chat.v2"), "the subprotocol the Python client got");
    assert_eq!(next_with_timeout(&mut chosen).await, Some("chat.v2".to_owned()), "the server's Acceptance");
    server.shutdown(STEP_TIMEOUT).await;
}

/// A client offering only subprotocols the server does not accept still connects, with none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_offering_unknown_subprotocol_gets_none() {
    let Some(python) = python() else { return };
    let (server, url, mut chosen) = serve_recording_subprotocol().await;
    let run = run_client(&python, &["subprotocol", &url, "chat.v3"]).await;
    run.assert_success("client.py subprotocol");
    assert_eq!(run.value("subprotocol"), Some("None"), "the subprotocol the Python client got");
    assert_eq!(next_with_timeout(&mut chosen).await, None, "the server's Acceptance");
    server.shutdown(STEP_TIMEOUT).await;
}

/// With the default options (same origin), a foreign `Origin` is refused with HTTP 403 before any
/// handler is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_foreign_origin_gets_403() {
    let Some(python) = python() else { return };
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(Options::default(), tx).await;
    let run = run_client(&python, &["origin", &url, "http://evil.example"]).await;
    run.assert_success("client.py origin");
    assert_eq!(run.value("status"), Some("403"), "stdout: {}", run.stdout);
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
    assert!(closed.try_recv().is_err(), "a handler ran for a refused origin");
}

/// With the default options (same origin), an `Origin` naming the server's own host and port is
/// accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_same_origin_is_accepted() {
    let Some(python) = python() else { return };
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(Options::default(), tx).await;
    let origin = url.trim_end_matches('/').replacen("ws://", "http://", 1);
    let run = run_client(&python, &["origin", &url, &origin]).await;
    run.assert_success("client.py origin");
    assert!(run.has_line("open"), "the connection did not open; stdout: {}", run.stdout);
    let (_, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "origin checked");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

/// A close started by the Python server (4000 and a reason) is echoed by the ferrule client, whose
/// done signal reports it as clean with the server's code and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferrule_client_sees_python_server_close_4000_clean() {
    let Some(python) = python() else { return };
    let mut peer = PythonServer::start(&python, &["4000"]).await;
    let url = format!("ws://127.0.0.1:{}/", peer.port);
    let conn = match tokio::time::timeout(STEP_TIMEOUT, ferrule_tokio::connect(&url, &Options::default())).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => peer.fail(&format!("connect to {url} failed: {e}")).await,
        Err(_) => peer.fail(&format!("connect to {url} timed out")).await,
    };
    let mut ch = conn.channels::<Message>();
    send(&mut peer, &ch, Message::text("please-close")).await;
    let info = match tokio::time::timeout(STEP_TIMEOUT, ch.done.clone()).await {
        Ok(info) => info,
        Err(_) => peer.fail("the done signal did not complete after the server's close").await,
    };
    assert_eq!(info, CloseInfo { was_clean: true, code: CloseCode::new(4000), reason: "bye from python".to_owned() });
    if let Some(e) = ch.errors.recv().await {
        peer.fail(&format!("the error stream reported: {e}")).await;
    }
    let run = peer.finish().await;
    run.assert_success("server.py 4000");
}

/// `Server::shutdown` closes a live connection with 1001 Going Away: the Python client gets the
/// code and reason, and the server's `on_close` sees the handshake complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sees_1001_going_away_on_server_shutdown() {
    let Some(python) = python() else { return };
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    let shut_down = async {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while server.connections() == 0 {
            assert!(Instant::now() < deadline, "the Python client did not connect");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.shutdown(STEP_TIMEOUT).await
    };
    let args = ["wait-close", &url];
    let client = run_client(&python, &args);
    let (run, left_open) = tokio::join!(client, shut_down);
    run.assert_success("client.py wait-close");
    assert_eq!(run.value("close"), Some("1001 reason=server shutting down"), "the close the client received");
    assert_eq!(left_open, 0, "connections left open at shutdown");
    let (_, info) = next_close(&mut closed).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(info.code, CloseCode::GOING_AWAY, "{info:?}");
}

/// A message over the server's `max_message_size` (9 MiB against 8 MiB) closes the connection with
/// 1009 Message Too Big, and the Python client receives that close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sending_over_max_message_size_gets_1009() {
    let Some(python) = python() else { return };
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    let size = (MAX_SIZE + (1 << 20)).to_string();
    let run = run_client(&python, &["oversize", &url, &size]).await;
    run.assert_success("client.py oversize");
    assert_eq!(run.value("close").map(|c| c.split(' ').next()), Some(Some("1009")), "stdout: {}", run.stdout);
    let (received, info) = next_close(&mut closed).await;
    assert_eq!(received, 0, "the oversized message was delivered");
    assert_eq!(info.code, CloseCode::MESSAGE_TOO_BIG, "{info:?}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

/// A text message that is not UTF-8 closes the connection with 1007 Invalid Payload, and the
/// Python client receives that close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sending_invalid_utf8_gets_1007() {
    let Some(python) = python() else { return };
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    let run = run_client(&python, &["invalid-utf8", &url]).await;
    run.assert_success("client.py invalid-utf8");
    assert_eq!(run.value("close").map(|c| c.split(' ').next()), Some(Some("1007")), "stdout: {}", run.stdout);
    let (received, info) = next_close(&mut closed).await;
    assert_eq!(received, 0, "the invalid message was delivered");
    assert_eq!(info.code, CloseCode::INVALID_PAYLOAD, "{info:?}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

/// permessage-deflate, which websockets offers by default, is declined (no extension is
/// negotiated) and messages still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_offering_permessage_deflate_is_declined() {
    let Some(python) = python() else { return };
    let (tx, mut closed) = mpsc::unbounded_channel();
    let (server, url) = serve_echo(server_options().build().expect("options"), tx).await;
    let run = run_client(&python, &["deflate", &url]).await;
    run.assert_success("client.py deflate");
    assert_eq!(run.value("extensions"), Some(""), "extensions negotiated");
    let (_, info) = next_close(&mut closed).await;
    assert_clean_close(&info, "deflate checked");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Servers and assertions

/// Server options for the echo tests: room for 4 MiB messages; no keepalive pings, so only the
/// scripts' own pings are on the wire.
fn server_options() -> ferrule_tokio::OptionsBuilder {
    Options::builder().max_message_size(MAX_SIZE).max_frame_size(MAX_SIZE).ping_period(None)
}

/// Echoes every message; reports how many it saw and how the connection ended.
struct Echo {
    received: usize,
    closed: mpsc::UnboundedSender<(usize, CloseInfo)>,
}

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        self.received += 1;
        ctx.send(&message)?;
        Ok(())
    }

    fn on_close(&mut self, info: &CloseInfo) {
        let _ = self.closed.send((self.received, info.clone()));
    }
}

/// An echo server on an ephemeral loopback port, and its `ws://` URL.
async fn serve_echo(options: Options, closed: mpsc::UnboundedSender<(usize, CloseInfo)>) -> (Server, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let server = ferrule_tokio::serve(listener, options, move |_: &Request, _: &mut Acceptance| {
        Ok(Echo { received: 0, closed: closed.clone() })
    });
    (server, url)
}

/// An echo server accepting `chat.v2` then `chat.v1`, reporting the subprotocol it chose.
async fn serve_recording_subprotocol() -> (Server, String, mpsc::UnboundedReceiver<Option<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let options = Options::builder().subprotocols(["chat.v2", "chat.v1"]).build().expect("options");
    let (tx, rx) = mpsc::unbounded_channel();
    let (closed, _) = mpsc::unbounded_channel();
    let server = ferrule_tokio::serve(listener, options, move |_: &Request, acceptance: &mut Acceptance| {
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

/// Queues a message on the ferrule client, failing with the Python server's stderr.
async fn send(peer: &mut PythonServer, ch: &Channels<Message>, message: Message) {
    match tokio::time::timeout(STEP_TIMEOUT, ch.sender.send(message)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => peer.fail(&format!("send failed: {e}")).await,
        Err(_) => peer.fail("send did not complete").await,
    }
}

/// Receives the next message on the ferrule client and checks it byte for byte.
async fn expect(peer: &mut PythonServer, ch: &mut Channels<Message>, expected: &Message) {
    let got = match tokio::time::timeout(STEP_TIMEOUT, ch.receiver.recv()).await {
        Ok(Some(got)) => got,
        Ok(None) => peer.fail(&format!("the connection ended while expecting {}", describe(expected))).await,
        Err(_) => peer.fail(&format!("no message within {STEP_TIMEOUT:?}; expected {}", describe(expected))).await,
    };
    if got != *expected {
        let first_difference = got.as_bytes().iter().zip(expected.as_bytes()).position(|(a, b)| a != b);
        peer.fail(&format!(
            "expected {}\n got {}\n first differing byte: {first_difference:?}",
            describe(expected),
            describe(&got)
        ))
        .await;
    }
}

/// A short description of a message that may be megabytes long.
fn describe(message: &Message) -> String {
    let kind = match message {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
    };
    let head = &message.as_bytes()[..message.len().min(40)];
    format!("{kind} of {} bytes starting {:?}", message.len(), String::from_utf8_lossy(head))
}

// ---------------------------------------------------------------------------------------------
// Python processes

/// A finished Python script.
struct ScriptRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl ScriptRun {
    fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// The value of the stdout line `key=value`.
    fn value(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }

    /// Whether stdout has the line `line`.
    fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l == line)
    }
}

/// The interop scripts' directory.
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

fn script_command(python: &Path, script: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(python);
    command
        .arg(interop_dir().join(script))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `client.py` with `args` to completion, killing it after [`SCRIPT_TIMEOUT`].
async fn run_client(python: &Path, args: &[&str]) -> ScriptRun {
    let child = script_command(python, "client.py").args(args).spawn().expect("start client.py");
    // On timeout the future, and with it the child, is dropped: kill_on_drop kills it.
    match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => ScriptRun {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("waiting for client.py {args:?}: {e}"),
        Err(_) => panic!("client.py {args:?} did not finish within {SCRIPT_TIMEOUT:?}; killed it"),
    }
}

/// `server.py` running: its port, and the rest of its output to collect.
struct PythonServer {
    child: tokio::process::Child,
    port: u16,
    stdout: tokio::task::JoinHandle<String>,
    stderr: tokio::task::JoinHandle<String>,
}

impl PythonServer {
    /// Starts `server.py` and reads the port it listens on.
    async fn start(python: &Path, args: &[&str]) -> Self {
        let mut child = script_command(python, "server.py").args(args).spawn().expect("start server.py");
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
        let mut server = Self { child, port: 0, stdout: rest, stderr };
        match port {
            Ok(Some(port)) => server.port = port,
            _ => server.fail("server.py did not print its port").await,
        }
        server
    }

    /// Waits for `server.py` to exit (it does after its one connection), killing it after
    /// [`SCRIPT_TIMEOUT`].
    async fn finish(mut self) -> ScriptRun {
        let status = match tokio::time::timeout(SCRIPT_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => self.fail(&format!("waiting for server.py: {e}")).await,
            Err(_) => self.fail("server.py did not exit after the connection closed").await,
        };
        let stdout = self.stdout.await.unwrap_or_default();
        let stderr = self.stderr.await.unwrap_or_default();
        ScriptRun { status, stdout, stderr }
    }

    /// Kills `server.py` and fails the test with `message` and what the script printed.
    async fn fail(&mut self, message: &str) -> ! {
        let _ = self.child.kill().await;
        let stdout = (&mut self.stdout).await.unwrap_or_default();
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        panic!("{message}\n--- server.py stdout ---\n{stdout}\n--- server.py stderr ---\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// The venv

/// The venv's Python with the pinned `websockets`, set up once per test process; `None` when
/// `FERRULE_SKIP_INTEROP=1`. Panics with the reason when the venv cannot be set up.
fn python() -> Option<PathBuf> {
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        eprintln!(
            "\n********************************************************************\n\
             ** {SKIP_VAR}=1: SKIPPING the Python websockets interop test.\n\
             ** Nothing was checked against the real peer.\n\
             ********************************************************************\n"
        );
        return None;
    }
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(set_up_venv) {
        Ok(python) => Some(python.clone()),
        Err(e) => panic!("{e}\n(set {SKIP_VAR}=1 to skip the Python interop tests on purpose)"),
    }
}

/// Creates the venv and installs `requirements.txt`, unless a venv with the pinned version is
/// already there. The venv is built under a per-process name and renamed into place, so test
/// processes running at once never see a half-built one.
fn set_up_venv() -> Result<PathBuf, String> {
    let requirements = interop_dir().join("requirements.txt");
    let version = pinned_version(&requirements)?;
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join("py-interop-venv");
    if has_websockets(&venv, &version) {
        return Ok(venv_python(&venv));
    }

    let started = Instant::now();
    let staging = root.join(format!("py-interop-venv.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run_blocking(Command::new("python3").args(["-m", "venv"]).arg(&staging), SETUP_TIMEOUT).map_err(|e| {
        format!(
            "creating a Python venv for the websockets interop tests failed: {e}\n\
             They need python3 (>= 3.11 for websockets {version}) with the venv module \
             (Debian: apt-get install python3-venv)."
        )
    })?;
    run_blocking(
        Command::new(venv_python(&staging))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        SETUP_TIMEOUT,
    )
    .map_err(|e| format!("installing {} failed (no network to PyPI?): {e}", requirements.display()))?;
    if !has_websockets(&staging, &version) {
        return Err(format!("websockets {version} was installed into {} but does not import", staging.display()));
    }

    if venv.exists() && !has_websockets(&venv, &version) {
        let _ = std::fs::remove_dir_all(&venv);
    }
    if let Err(e) = std::fs::rename(&staging, &venv) {
        // Another test process may have published its venv first; use that one.
        let _ = std::fs::remove_dir_all(&staging);
        if !has_websockets(&venv, &version) {
            return Err(format!("moving the venv to {}: {e}", venv.display()));
        }
    }
    if !has_websockets(&venv, &version) {
        return Err(format!("the venv at {} does not import websockets {version}", venv.display()));
    }
    eprintln!("interop: set up {} with websockets {version} in {:.1?}", venv.display(), started.elapsed());
    Ok(venv_python(&venv))
}

/// The `websockets==X` pin in the requirements file.
fn pinned_version(requirements: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(requirements).map_err(|e| format!("reading {}: {e}", requirements.display()))?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("websockets=="))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| format!("{} pins no websockets==VERSION", requirements.display()))
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) { venv.join("Scripts").join("python.exe") } else { venv.join("bin").join("python") }
}

/// Whether the venv's Python imports `websockets` at exactly `version`.
fn has_websockets(venv: &Path, version: &str) -> bool {
    let python = venv_python(venv);
    if !python.exists() {
        return false;
    }
    let mut command = Command::new(python);
    command.args(["-c", "import websockets; print(websockets.__version__)"]);
    run_blocking(&mut command, Duration::from_secs(30))
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == version)
}

/// Runs a command to completion, killing it after `timeout`; an error unless it exits 0.
fn run_blocking(command: &mut Command, timeout: Duration) -> Result<Output, String> {
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
