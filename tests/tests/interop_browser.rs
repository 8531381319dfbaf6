//! Interoperability with a real browser: headless Chromium's own `WebSocket` against a ferrule
//! server on the tokio runtime, over loopback TCP.
//!
//! Each test starts a small HTTP server of its own that serves `tests/interop/browser/page.html`
//! and takes the page's report (`POST /report`, `key=value` lines), starts a ferrule server on
//! another port, and opens the page in Chromium (`--headless --no-sandbox --disable-gpu
//! --no-first-run --disable-background-networking`, a fresh profile under
//! `CARGO_TARGET_TMPDIR`). The page runs one scenario with the browser's WebSocket and reports
//! what it saw; the test checks that report against what the ferrule side saw. Chromium is
//! killed when the test ends, and every wait is bounded.
//!
//! The page's origin is `http://127.0.0.1:<page port>`, a different origin from the WebSocket
//! server's, so the servers allow it by pattern (`OriginPolicy::AllowList`), and one test shows
//! the default same-origin policy refusing it.
//!
//! One test serves `wss://` (`serve_tls`) with a certificate the test made, which Chromium trusts
//! by its key's hash (`--ignore-certificate-errors-spki-list`).
//!
//! One test drives the chat demo (`adapter-tokio/examples/chat/`, whose application module it
//! includes) in three pages of one Chromium through the DevTools protocol, spoken over ferrule's
//! own client; it keeps a screenshot in `target/tmp/chat/chat.png`. Another runs the chat as two
//! node processes (this test binary again, serving ferrule-redis's `chat_cluster` example) against
//! a `redis-server` of its own, with a page on each node; it keeps `target/tmp/chat/two-nodes.png`.
//! Without `redis-server` it is skipped with a notice, unless `FERRULE_REQUIRE_REDIS=1` (CI).
//!
//! Chromium is found as `$FERRULE_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on `PATH` (Debian: `apt-get install chromium`). A machine without it skips
//! these tests with a loud notice, so `cargo test --workspace` works on a fresh machine; CI
//! installs Chromium and sets `FERRULE_REQUIRE_BROWSER=1`, which turns a missing browser into a
//! failure. `FERRULE_SKIP_INTEROP=1` skips them on purpose.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrule_tests::Echo;
use ferrule_tests::tls::TestPki;
use ferrule_tokio::{
    CloseCode, CloseInfo, Ctx, DeflateConfig, DeflateParams, Handler, HandlerError, Message, Options, OriginPattern,
    OriginPolicy, Request, Server,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Set to `1` to skip these tests, loudly.
const SKIP_VAR: &str = "FERRULE_SKIP_INTEROP";
/// Set to `1` to make a missing browser a failure (CI does).
const REQUIRE_VAR: &str = "FERRULE_REQUIRE_BROWSER";
/// Overrides the browser binary.
const BROWSER_VAR: &str = "FERRULE_CHROMIUM";
/// From starting Chromium to the page's report (a cold start in a small VM takes seconds;
/// a guard against a hang only).
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// One step on the Rust side after the report.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How every test runs Chromium: headless, in a container, with nothing of its own on the network.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
];
/// Message and frame limit of the servers: room for the page's 4 MiB message.
const MAX_SIZE: usize = 8 << 20;

/// The browser sends text (multi-byte UTF-8 too), binary, empty messages, a 200 KB text and a
/// 4 MiB binary message; each comes back byte for byte. It offers `chat.v1, chat.v2` and gets the
/// server's preference `chat.v2`; it offers permessage-deflate and gets no extension. It stays
/// open through several keepalive pings (every 100 ms), answering them itself (the server counts
/// the pongs; the pong wait is a generous 10 s, so a busy machine's scheduling cannot fail the
/// connection), then closes with 1000 and a reason; the server sees that reason, and both ends a
/// clean close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_echo_with_subprotocol_keepalive_and_clean_close_1000() {
    let Some(browser) = browser() else { return };
    let page = PageServer::start().await;
    let options = Options::builder()
        .max_message_size(MAX_SIZE)
        .max_frame_size(MAX_SIZE)
        .subprotocols(["chat.v2", "chat.v1"])
        .ping_period(Some(Duration::from_millis(100)))
        .pong_wait(Duration::from_secs(10))
        .allowed_origin(page.origin_policy());
    /// [`Echo`], counting the pongs its connection receives.
    struct PongCounting(Arc<AtomicUsize>);
    impl Handler for PongCounting {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            Echo.on_message(ctx, message)
        }
        fn on_pong(&mut self, _ctx: &mut Ctx<'_>, _payload: &[u8]) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let pongs = Arc::new(AtomicUsize::new(0));
    let counter = pongs.clone();
    let (server, ws_url, mut closed) =
        serve(options.build().expect("options"), move |_| PongCounting(counter.clone())).await;
    let mut chromium =
        page.open(&browser, &format!("scenario=echo&ws={ws_url}&protocols=chat.v1,chat.v2&hold_ms=1000")).await;

    let report = chromium.report().await;
    assert_eq!(report.get("errors"), "none", "{report:?}");
    assert_eq!(report.get("echoed"), "7", "{report:?}");
    assert_eq!(report.get("protocol"), "chat.v2", "{report:?}");
    assert_eq!(report.get("extensions"), "", "permessage-deflate is declined: {report:?}");
    // The close event carries the server's reply, which echoes the code only (RFC 6455 section
    // 5.5.1); the server saw the browser's reason.
    assert_eq!((report.get("code"), report.get("reason"), report.get("clean")), ("1000", "", "true"), "{report:?}");
    let info = next(&mut closed).await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL && info.reason == "browser done", "{info:?}");
    let pongs = pongs.load(Ordering::SeqCst);
    assert!(pongs >= 2, "the browser answered {pongs} pings");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
}

/// Chromium always offers permessage-deflate; a server with `compression` on agrees to it. The
/// page's echo exchange (text, multi-byte text, binary, empty messages, a 200 KB text, a 4 MiB
/// binary) comes back byte for byte, compressed both ways: the browser's `extensions` is exactly
/// the answer the server wrote, and `Acceptance::deflate` and `Ctx::deflate` agree on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_echo_compressed_agrees_on_permessage_deflate() {
    /// Echoes, and reports `Ctx::deflate` from `on_open`.
    struct CompressedEcho(mpsc::UnboundedSender<Option<DeflateParams>>);
    impl Handler for CompressedEcho {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
            let _ = self.0.send(ctx.deflate().copied());
            Ok(())
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            ctx.send(&message)?;
            Ok(())
        }
    }
    let Some(browser) = browser() else { return };
    let page = PageServer::start().await;
    let options = Options::builder()
        .max_message_size(MAX_SIZE)
        .max_frame_size(MAX_SIZE)
        .compression(DeflateConfig::default())
        .allowed_origin(page.origin_policy())
        .build()
        .expect("options");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ws_url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let (agreed_tx, mut agreed) = mpsc::unbounded_channel();
    let (answer_tx, mut answer) = mpsc::unbounded_channel();
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let server = ferrule_tokio::serve(listener, options, move |_, acceptance| {
        let _ = agreed_tx.send(acceptance.deflate().copied());
        let _ = answer_tx.send(acceptance.response().header("Sec-WebSocket-Extensions").map(str::to_owned));
        Ok(Reporting { inner: CompressedEcho(agreed_tx.clone()), closed: closed_tx.clone() })
    });
    let mut chromium = page.open(&browser, &format!("scenario=echo&ws={ws_url}")).await;

    let report = chromium.report().await;
    assert_eq!(report.get("errors"), "none", "{report:?}");
    assert_eq!(report.get("echoed"), "7", "{report:?}");
    let on_connect = next_of(&mut agreed).await.expect("permessage-deflate agreed in on_connect");
    assert_eq!(next_of(&mut agreed).await, Some(on_connect), "Ctx::deflate in on_open");
    let answer = next_of(&mut answer).await.expect("a Sec-WebSocket-Extensions answer");
    assert!(answer.starts_with("permessage-deflate"), "{answer}");
    assert_eq!(report.get("extensions"), answer, "the extensions the browser agreed to: {report:?}");
    let info = next(&mut closed).await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
}

/// The page's echo exchange over TLS: Chromium opens `wss://localhost` on `serve_tls`, whose
/// certificate (made by the test) it trusts by its key's SHA-256
/// (`--ignore-certificate-errors-spki-list`); every message comes back byte for byte and the
/// close is clean at both ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_echo_over_wss_through_serve_tls_closes_clean_1000() {
    let Some(browser) = browser() else { return };
    let pki = TestPki::new(&["localhost"]);
    let page = PageServer::start().await;
    let options = Options::builder()
        .max_message_size(MAX_SIZE)
        .max_frame_size(MAX_SIZE)
        .allowed_origin(page.origin_policy())
        .build()
        .expect("options");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ws_url = format!("wss://localhost:{}/", listener.local_addr().expect("local addr").port());
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let server = ferrule_tokio::serve_tls(listener, pki.server_config(), options, move |_, _| {
        Ok(Reporting { inner: Echo, closed: closed_tx.clone() })
    });
    let trust = format!("--ignore-certificate-errors-spki-list={}", pki.spki_sha256_base64());
    let mut chromium = page.open_with(&browser, &format!("scenario=echo&ws={ws_url}"), &[trust]).await;

    let report = chromium.report().await;
    assert_eq!(report.get("errors"), "none", "{report:?}");
    assert_eq!(report.get("echoed"), "7", "{report:?}");
    assert_eq!((report.get("code"), report.get("clean")), ("1000", "true"), "{report:?}");
    let info = next(&mut closed).await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0, "connections left open at shutdown");
}

async fn next_of<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, rx.recv()).await {
        Ok(Some(value)) => value,
        Ok(None) => panic!("the server dropped its reports"),
        Err(_) => panic!("no report within {STEP_TIMEOUT:?}"),
    }
}

/// The server closes with 4000 and a reason right after the browser connects; the browser's
/// close event carries both, as a clean close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sees_server_close_4000_with_reason_clean() {
    struct CloseAtOnce;
    impl Handler for CloseAtOnce {
        fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
            ctx.send_text("closing now")?;
            ctx.close(CloseCode::new(4000), "server says bye")?;
            Ok(())
        }
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, _message: Message) -> Result<(), HandlerError> {
            Ok(())
        }
    }
    let Some(browser) = browser() else { return };
    let page = PageServer::start().await;
    let options = Options::builder().allowed_origin(page.origin_policy()).build().expect("options");
    let (server, ws_url, mut closed) = serve(options, |_| CloseAtOnce).await;
    let mut chromium = page.open(&browser, &format!("scenario=wait&ws={ws_url}")).await;

    let report = chromium.report().await;
    assert_eq!(report.get("message"), "closing now", "{report:?}");
    assert_eq!(
        (report.get("code"), report.get("reason"), report.get("clean")),
        ("4000", "server says bye", "true"),
        "{report:?}"
    );
    let info = next(&mut closed).await;
    assert!(info.was_clean && info.code.as_u16() == 4000, "{info:?}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

/// The browser sends a message over the server's 64 KiB limit: the server closes with 1009
/// (RFC 6455 section 7.4.1) and the browser's close event says so. The browser is still sending
/// when the server fails the connection; the server reads and discards the rest before letting
/// the socket go, so the close frame is not destroyed by a reset (the browser would say 1006).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sending_over_max_message_size_gets_1009() {
    let Some(browser) = browser() else { return };
    let page = PageServer::start().await;
    let options = Options::builder()
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .allowed_origin(page.origin_policy())
        .build()
        .expect("options");
    let (server, ws_url, mut closed) = serve(options, |_| Echo).await;
    let mut chromium = page.open(&browser, &format!("scenario=too-big&ws={ws_url}&size=100000")).await;

    let report = chromium.report().await;
    assert_eq!(report.get("errors"), "none", "{report:?}");
    assert_eq!(report.get("code"), "1009", "{report:?}");
    let info = next(&mut closed).await;
    assert_eq!(info.code, CloseCode::MESSAGE_TOO_BIG, "{info:?}");
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

/// Under the default same-origin policy the page's cross-origin connection is refused with 403
/// before any handler exists: the browser reports a failed connection (an error event and close
/// code 1006), and the server opened nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_cross_origin_page_is_refused_by_default_policy() {
    let Some(browser) = browser() else { return };
    let page = PageServer::start().await;
    let (server, ws_url, mut closed) = serve(Options::default(), |_| Echo).await;
    let mut chromium = page.open(&browser, &format!("scenario=wait&ws={ws_url}")).await;

    let report = chromium.report().await;
    assert_eq!((report.get("error_event"), report.get("code")), ("true", "1006"), "{report:?}");
    assert!(closed.try_recv().is_err(), "no connection was opened");
    assert_eq!(server.connections(), 0);
    assert_eq!(server.shutdown(STEP_TIMEOUT).await, 0);
}

// ---- the ferrule side -----------------------------------------------------------------------

/// Reports how a connection ended, around the test's handler.
struct Reporting<H> {
    inner: H,
    closed: mpsc::UnboundedSender<CloseInfo>,
}

impl<H: Handler> Handler for Reporting<H> {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        self.inner.on_open(ctx)
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        self.inner.on_message(ctx, message)
    }
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        self.inner.on_pong(ctx, payload);
    }
    fn on_close(&mut self, info: &CloseInfo) {
        self.inner.on_close(info);
        let _ = self.closed.send(info.clone());
    }
}

/// A ferrule server on an ephemeral loopback port with handlers from `make`; its `ws://` URL;
/// and the close of every connection it ran.
async fn serve<H: Handler>(
    options: Options,
    make: impl Fn(&Request) -> H + Send + Sync + 'static,
) -> (Server, String, mpsc::UnboundedReceiver<CloseInfo>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    let server = ferrule_tokio::serve(listener, options, move |request, _| {
        Ok(Reporting { inner: make(request), closed: tx.clone() })
    });
    (server, url, rx)
}

async fn next(closed: &mut mpsc::UnboundedReceiver<CloseInfo>) -> CloseInfo {
    match tokio::time::timeout(STEP_TIMEOUT, closed.recv()).await {
        Ok(Some(info)) => info,
        Ok(None) => panic!("the server dropped its close reports"),
        Err(_) => panic!("no connection closed within {STEP_TIMEOUT:?}"),
    }
}

// ---- the page server ------------------------------------------------------------------------

/// Serves the test page and collects the page's reports.
struct PageServer {
    addr: SocketAddr,
    reports: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PageServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the page server");
        let addr = listener.local_addr().expect("local addr");
        let page = std::fs::read(page_path()).expect("the test page");
        let (tx, reports) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (page, tx) = (page.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = serve_http(stream, &page, &tx).await;
                });
            }
        });
        Self { addr, reports, task }
    }

    /// The page's origin, allowed by pattern.
    fn origin_policy(&self) -> OriginPolicy {
        OriginPolicy::AllowList(vec![OriginPattern::new(&format!("http://{}", self.addr))])
    }

    /// Opens the page with `query` in Chromium.
    async fn open(self, browser: &PathBuf, query: &str) -> Chromium {
        self.open_with(browser, query, &[]).await
    }

    /// Opens the page with `query` in Chromium started with `extra` flags as well.
    async fn open_with(self, browser: &PathBuf, query: &str, extra: &[String]) -> Chromium {
        let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "ferrule-chromium-{}-{}",
            std::process::id(),
            self.addr.port()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        let child = tokio::process::Command::new(browser)
            .args(CHROMIUM_FLAGS)
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("http://{}/page.html?{query}", self.addr))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", browser.display()));
        Chromium { child, page: self, profile }
    }
}

/// One HTTP/1.1 exchange: `GET /page.html` gets the page, `POST /report` hands its body over.
async fn serve_http(
    mut stream: TcpStream,
    page: &[u8],
    reports: &mpsc::UnboundedSender<String>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (status, kind, body): (&str, &str, &[u8]) = if request_line.starts_with("GET /page.html") {
        ("200 OK", "text/html; charset=utf-8", page)
    } else if request_line.starts_with("POST /report") {
        let body = &buf[head_end..(head_end + length).min(buf.len())];
        let _ = reports.send(String::from_utf8_lossy(body).into_owned());
        ("204 No Content", "text/plain", b"")
    } else {
        ("404 Not Found", "text/plain", b"")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

fn page_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/browser/page.html")
}

// ---- the browser ----------------------------------------------------------------------------

/// A running Chromium with the page open; killed when dropped.
struct Chromium {
    child: tokio::process::Child,
    page: PageServer,
    profile: PathBuf,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Chromium {
    /// The page's report.
    async fn report(&mut self) -> Report {
        let report = tokio::select! {
            report = self.page.reports.recv() => report.expect("the page server stopped"),
            status = self.child.wait() => panic!("Chromium exited before the page reported: {status:?}"),
            () = tokio::time::sleep(REPORT_TIMEOUT) => panic!("no report from the page within {REPORT_TIMEOUT:?}"),
        };
        Report(
            report.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        )
    }
}

/// The page's `key=value` lines.
#[derive(Debug)]
struct Report(HashMap<String, String>);

impl Report {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("<missing>", String::as_str)
    }
}

/// The browser to run, or `None` (after a loud notice) when these tests are skipped.
fn browser() -> Option<PathBuf> {
    let notice = |why: &str| {
        eprintln!(
            "\n********************************************************************\n\
             ** SKIPPING the Chromium interop test: {why}.\n\
             ** Nothing was checked against a real browser.\n\
             ********************************************************************\n"
        );
    };
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        notice(&format!("{SKIP_VAR}=1"));
        return None;
    }
    let found = std::env::var_os(BROWSER_VAR).map(PathBuf::from).or_else(|| {
        ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
        })
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var_os(REQUIRE_VAR).is_some_and(|v| v == "1") => {
            panic!("no Chromium found ({BROWSER_VAR}, or chromium on PATH) and {REQUIRE_VAR}=1")
        }
        None => {
            notice("no Chromium on this machine (apt-get install chromium; CI requires it)");
            None
        }
    }
}

// ---- the chat demo, end to end --------------------------------------------------------------

/// The chat demo's cluster variant (`cargo run -p ferrule-redis --example chat_cluster`), which
/// includes the demo's application (`adapter-tokio/examples/chat/app.rs`, served here as the
/// example `chat` serves it).
#[path = "../../redis/examples/chat_cluster.rs"]
#[allow(dead_code)]
mod chat_cluster;

use chat_cluster::app as chat_app;

#[path = "runtimes/tokio.rs"]
#[allow(dead_code)]
mod tokio_runtime;

/// One wait for the pages (a DOM condition, a DevTools reply); generous, since a busy machine
/// runs three pages slowly. Only a guard: every wait ends as soon as its condition holds.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Three pages of the chat demo in one Chromium, driven through the DevTools protocol (over
/// ferrule's own client): alice, bob and carol join `lobby` and each sees all three listed; a
/// line from alice reaches bob and carol, and her page shows the acknowledgement that it reached
/// 2 others; bob answers and alice sees it; the hub's counts show 3 connections; carol's page
/// closes and alice and bob see her leave the member list, with a notice. A screenshot of alice's
/// page is kept in `target/tmp/chat/chat.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_chat_demo_three_pages_presence_messages_acks() {
    let Some(browser) = browser() else { return };
    let hub = chat_app::hub();
    let counts = chat_app::push_counts(&hub);
    let shutdown = ferrule_tokio::axum::Shutdown::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    let app = chat_app::router(hub.clone(), shutdown.clone());
    let http = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut chromium = DevTools::start(&browser, "chat").await;
    let alice = chromium.open(&url).await;
    let bob = chromium.open(&url).await;
    let carol = chromium.open(&url).await;
    for (page, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        chromium.wait(page, "document.querySelector('#dot.on')", "connected").await;
        chromium.join(page, name, "lobby").await;
    }
    for page in [&alice, &bob, &carol] {
        chromium.wait(page, &members_are(&["alice", "bob", "carol"]), "all three listed").await;
    }

    chromium.say(&alice, "hello from alice").await;
    for page in [&bob, &carol] {
        chromium.wait(page, &line_from("alice", "hello from alice"), "alice's line").await;
    }
    chromium.wait(&alice, &acked("✓ delivered to 2 others"), "the acknowledgement of alice's line").await;
    chromium.say(&bob, "hi alice, welcome").await;
    chromium.wait(&alice, &line_from("bob", "hi alice, welcome"), "bob's answer").await;
    chromium.wait(&alice, "$('stat-connections').textContent === '3'", "the hub's count of 3 connections").await;

    chromium.close(carol).await;
    for page in [&alice, &bob] {
        chromium.wait(page, &members_are(&["alice", "bob"]), "carol gone from the list").await;
        chromium.wait(page, &notice("carol left"), "the notice that carol left").await;
    }
    chromium.wait(&alice, "$('stat-connections').textContent === '2'", "the hub's count of 2 connections").await;

    chromium.keep_screenshot(&alice, "chat.png").await;
    drop(chromium);
    assert_eq!(shutdown.shutdown(STEP_TIMEOUT).await, 0, "every WebSocket closed in time");
    counts.abort();
    http.abort();
}

/// Set in the node processes of the two-node test (this test binary, run again for that one
/// test): `REDIS_URL NODE_NAME`. Such a process serves the chat as a node of that Redis's
/// cluster until its stdin closes.
const CHAT_NODE_VAR: &str = "FERRULE_CHAT_NODE";

/// The chat demo as two processes on two ports against one `redis-server` (ferrule-redis's
/// `chat_cluster`), a page on each in one Chromium: once each node knows the other (the page's
/// count of nodes), alice joins `lobby` on node a and bob on node b, and each page lists both
/// (a roll call answered across nodes); alice's line reaches bob's page and her page shows it
/// confirmed by 1 other, and the same from bob to alice; each page counts the cluster's 2
/// connections; bob's page closes and alice's sees him leave the list, with a notice, and the
/// count fall to 1. Both nodes then stop cleanly when told to. A screenshot of alice's page with
/// both present is kept in `target/tmp/chat/two-nodes.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_chat_demo_two_nodes_through_redis() {
    if let Some(node) = std::env::var_os(CHAT_NODE_VAR) {
        return serve_chat_node(&node.to_string_lossy()).await;
    }
    let Some(browser) = browser() else { return };
    let Some(redis) = ferrule_tests::redis_server::Redis::start::<tokio_runtime::TokioRuntime>().await else { return };
    let a = ChatNode::start(&redis.url(), "a").await;
    let b = ChatNode::start(&redis.url(), "b").await;

    let mut chromium = DevTools::start(&browser, "chat-two-nodes").await;
    let alice = chromium.open(&a.url).await;
    let bob = chromium.open(&b.url).await;
    for page in [&alice, &bob] {
        chromium.wait(page, "document.querySelector('#dot.on')", "connected").await;
        // A roll call asks the nodes its node knows of: each must know the other first.
        chromium.wait(page, "$('stat-nodes').textContent === '2'", "both nodes in the cluster").await;
    }
    chromium.join(&alice, "alice", "lobby").await;
    chromium.join(&bob, "bob", "lobby").await;
    for page in [&alice, &bob] {
        chromium.wait(page, &members_are(&["alice", "bob"]), "both listed, across nodes").await;
        chromium.wait(page, "$('stat-connections').textContent === '2'", "the cluster's 2 connections").await;
    }

    chromium.say(&alice, "hello from node a").await;
    chromium.wait(&bob, &line_from("alice", "hello from node a"), "alice's line on node b").await;
    chromium.wait(&alice, &acked("✓ delivered to 1 other"), "bob's page confirming alice's line").await;
    chromium.say(&bob, "hello from node b").await;
    chromium.wait(&alice, &line_from("bob", "hello from node b"), "bob's line on node a").await;
    chromium.wait(&bob, &acked("✓ delivered to 1 other"), "alice's page confirming bob's line").await;
    // This node's own counts, as of after the exchange: alice's room.
    chromium.wait(&alice, "$('stat-rooms').textContent === '1'", "node a's count of 1 room").await;
    chromium.keep_screenshot(&alice, "two-nodes.png").await;

    chromium.close(bob).await;
    chromium.wait(&alice, &members_are(&["alice"]), "bob gone from the list").await;
    chromium.wait(&alice, &notice("bob left"), "the notice that bob left").await;
    chromium.wait(&alice, "$('stat-connections').textContent === '1'", "the cluster's 1 connection").await;

    drop(chromium);
    a.stop().await;
    b.stop().await;
}

/// The chat demo's command line: the address alone or with `--listen`, `--redis` with an
/// optional `--node`; each mistake is refused with why, and the usage.
#[test]
fn chat_demo_command_line() {
    let parse = |args: &[&str]| chat_app::Args::parse(args.iter().map(|a| a.to_string()));
    let args = |listen: &str, redis: Option<&str>, node: Option<&str>| chat_app::Args {
        listen: listen.to_owned(),
        redis: redis.map(str::to_owned),
        node: node.map(str::to_owned),
    };
    assert_eq!(parse(&[]), Ok(args("127.0.0.1:8080", None, None)), "the README's command");
    assert_eq!(parse(&["0.0.0.0:9000"]), Ok(args("0.0.0.0:9000", None, None)));
    assert_eq!(
        parse(&["--redis", "redis://r/", "--listen", "127.0.0.1:8081", "--node", "n1"]),
        Ok(args("127.0.0.1:8081", Some("redis://r/"), Some("n1")))
    );
    for (bad, why) in [
        (&["--redis"][..], "--redis needs a value"),
        (&["--listen", "a:1", "b:2"], "one listen address only"),
        (&["a:1", "--listen", "b:2"], "--listen given twice"),
        (&["--redis", "redis://r/", "--redis", "redis://s/"], "--redis given twice"),
        (&["--node", "n1"], "--node names a node of a cluster: it needs --redis"),
        (&["--port", "1"], "unknown option --port"),
    ] {
        let error = parse(bad).expect_err(why);
        assert!(error.starts_with(why) && error.ends_with(chat_app::USAGE), "{bad:?}: {error}");
    }
    assert_eq!(parse(&["--help"]), Err(chat_app::USAGE.to_owned()));
}

/// This process is a node of the two-node test: serves the chat on a free port as node `name` of
/// the cluster on `url` (given as `url name`) until its stdin closes.
async fn serve_chat_node(node: &str) {
    use tokio::io::AsyncReadExt;
    let (url, name) = node.split_once(' ').unwrap_or_else(|| panic!("{CHAT_NODE_VAR} is `URL NAME`, not {node:?}"));
    let args =
        chat_app::Args { listen: "127.0.0.1:0".to_owned(), redis: Some(url.to_owned()), node: Some(name.to_owned()) };
    let stdin_closed = async {
        let (mut stdin, mut byte) = (tokio::io::stdin(), [0u8; 1]);
        while stdin.read(&mut byte).await.is_ok_and(|n| n > 0) {}
    };
    chat_cluster::run(args, stdin_closed).await.expect("the chat node");
}

/// A chat node process of the two-node test: killed when dropped.
struct ChatNode {
    child: tokio::process::Child,
    /// Its page, `http://127.0.0.1:PORT/`.
    url: String,
}

impl ChatNode {
    /// Starts this test binary again as node `name` of the cluster on `redis`, and waits for the
    /// address it serves on (its `chat: open http://ADDR/` line).
    async fn start(redis: &str, name: &str) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args(["chromium_chat_demo_two_nodes_through_redis", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHAT_NODE_VAR, format!("{redis} {name}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("a chat node process");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let url = tokio::time::timeout(REPORT_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read the node's stderr") {
                eprintln!("node {name}: {line}");
                if let Some((_, url)) = line.split_once("chat: open ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chat node {name} exited before serving")
        })
        .await
        .unwrap_or_else(|_| panic!("chat node {name} did not serve within {REPORT_TIMEOUT:?}"));
        // Pass on what it says next, so that a failure shows it.
        let name = name.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("node {name}: {line}");
            }
        });
        Self { child, url }
    }

    /// Closes its stdin, which stops it (closing its WebSockets with 1001), and checks that it
    /// exits with success.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("a chat node still running {STEP_TIMEOUT:?} after being told to stop"))
            .expect("the node's status");
        assert!(status.success(), "the chat node exited with {status}");
    }
}

/// A page condition: a line from `from` saying `text`, from another page.
fn line_from(from: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('.message:not(.mine)')].some(m => \
         m.querySelector('.from').textContent === {from:?} && m.textContent.endsWith({text:?}))"
    )
}

/// A page condition: one of its own lines shows the acknowledgement `ack`.
fn acked(ack: &str) -> String {
    format!(
        "[...document.querySelectorAll('.message.mine[data-acked]')].some(m => m.querySelector('.ack').textContent === {ack:?})"
    )
}

/// A page condition: the notice `text` is shown.
fn notice(text: &str) -> String {
    format!("[...document.querySelectorAll('.notice')].some(n => n.textContent === {text:?})")
}

/// A page condition: the member list names exactly `names`, in any order.
fn members_are(names: &[&str]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    format!(
        "JSON.stringify([...document.querySelectorAll('#members li')].map(li => li.textContent).sort()) === '{}'",
        serde_json::to_string(&sorted).expect("names")
    )
}

/// A page open in [`DevTools`]'s Chromium: its target and its session.
struct Page {
    target: String,
    session: String,
}

/// Chromium with its DevTools protocol endpoint, spoken to with ferrule's client; killed when
/// dropped. Calls go one at a time: each waits for its reply, and events are skipped.
struct DevTools {
    child: tokio::process::Child,
    profile: PathBuf,
    ws: ferrule_tokio::Channels<String>,
    next_id: u64,
}

impl Drop for DevTools {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl DevTools {
    /// Starts Chromium with a DevTools endpoint on a free port, and connects to it; `name` tells
    /// its profile from those of the other tests running at the same time.
    async fn start(browser: &PathBuf, name: &str) -> Self {
        use tokio::io::AsyncBufReadExt;
        let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ferrule-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = tokio::process::Command::new(browser)
            .args(CHROMIUM_FLAGS)
            .args([
                "--remote-debugging-port=0",
                "--window-size=1000,640",
                "--hide-scrollbars",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", browser.display()));
        // Chromium prints its endpoint on stderr: "DevTools listening on ws://127.0.0.1:N/...".
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let endpoint = tokio::time::timeout(REPORT_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read Chromium's stderr") {
                if let Some((_, url)) = line.split_once("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("Chromium exited without a DevTools endpoint")
        })
        .await
        .unwrap_or_else(|_| panic!("no DevTools endpoint from Chromium within {REPORT_TIMEOUT:?}"));
        // Keep draining stderr so Chromium never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // Screenshots come back as one large message.
        let options = Options::builder().max_message_size(64 << 20).max_frame_size(64 << 20).build().expect("options");
        let ws = ferrule_tokio::connect(&endpoint, &options).await.expect("connect to DevTools").channels::<String>();
        Self { child, profile, ws, next_id: 0 }
    }

    /// Calls `method` (in `session`, or on the browser) and returns its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            request["sessionId"] = session.into();
        }
        self.ws.sender.send(request.to_string()).await.expect("send to DevTools");
        // Longer than a wait's own guard, so that a wait reports what the page shows.
        let reply = tokio::time::timeout(PAGE_TIMEOUT * 2, async {
            loop {
                let text = self.ws.receiver.recv().await.expect("DevTools closed");
                let reply: serde_json::Value = serde_json::from_str(&text).expect("DevTools sends JSON");
                if reply["id"] == id {
                    return reply;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no reply to {method} within {:?}", PAGE_TIMEOUT * 2));
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply["result"].clone()
    }

    /// Opens `url` in a window of its own.
    async fn open(&mut self, url: &str) -> Page {
        let blank = serde_json::json!({ "url": "about:blank", "newWindow": true });
        let created = self.call(None, "Target.createTarget", blank).await;
        let target = created["targetId"].as_str().expect("targetId").to_owned();
        let attached =
            self.call(None, "Target.attachToTarget", serde_json::json!({ "targetId": target, "flatten": true })).await;
        let session = attached["sessionId"].as_str().expect("sessionId").to_owned();
        // Navigating once attached: the reply comes when the page's document is committed, so
        // what is evaluated next runs in it.
        self.call(Some(&session), "Page.navigate", serde_json::json!({ "url": url })).await;
        Page { target, session }
    }

    /// Evaluates the JavaScript expression `expression` in `page` (with `$` for
    /// `document.getElementById`), awaiting a Promise; returns its value.
    async fn eval(&mut self, page: &Page, expression: &str) -> serde_json::Value {
        let expression = format!("(() => {{ const $ = (id) => document.getElementById(id); return {expression}; }})()");
        let params = serde_json::json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let result = self.call(Some(&page.session), "Runtime.evaluate", params).await;
        assert!(result.get("exceptionDetails").is_none(), "{expression} threw: {result}");
        result["result"]["value"].clone()
    }

    /// Waits until `condition` holds in `page`: the page checks it after every change to its
    /// document, and answers once it holds, or after [`PAGE_TIMEOUT`] (a guard, which fails the
    /// test with what the page shows).
    async fn wait(&mut self, page: &Page, condition: &str, what: &str) {
        let guard = PAGE_TIMEOUT.as_millis();
        let poll = format!(
            "new Promise((resolve) => {{ const check = () => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }}; \
             if (check()) return resolve(true); \
             const observer = new MutationObserver(() => {{ if (check()) {{ observer.disconnect(); resolve(true); }} }}); \
             observer.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }}); \
             setTimeout(() => {{ observer.disconnect(); resolve(check()); }}, {guard}); }})"
        );
        if self.eval(page, &poll).await != serde_json::Value::Bool(true) {
            let shown = self.eval(page, "document.body ? document.body.innerText : '(no body)'").await;
            panic!("{what}: `{condition}` did not hold within {PAGE_TIMEOUT:?}; the page shows:\n{shown}");
        }
    }

    /// A PNG of `page` as it is now.
    async fn screenshot(&mut self, page: &Page) -> Vec<u8> {
        use base64::Engine as _;
        let shot =
            self.call(Some(&page.session), "Page.captureScreenshot", serde_json::json!({ "format": "png" })).await;
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("data")).expect("base64")
    }

    /// Joins `room` as `name` in the chat demo's `page`, and waits until it has joined.
    async fn join(&mut self, page: &Page, name: &str, room: &str) {
        let join = format!("($('name').value = {name:?}, $('room').value = {room:?}, $('join').click(), true)");
        self.eval(page, &join).await;
        self.wait(page, "!$('say-form').hidden", "joined").await;
    }

    /// Sends `text` from the chat demo's `page`.
    async fn say(&mut self, page: &Page, text: &str) {
        self.eval(page, &format!("($('text').value = {text:?}, $('send').click(), true)")).await;
    }

    /// Keeps a screenshot of `page` as `target/tmp/chat/<file>`.
    async fn keep_screenshot(&mut self, page: &Page, file: &str) {
        let png = self.screenshot(page).await;
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chat");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        std::fs::write(dir.join(file), &png).expect("write the screenshot");
        eprintln!("screenshot: {}", dir.join(file).display());
    }

    /// Closes `page`'s window.
    async fn close(&mut self, page: Page) {
        self.call(None, "Target.closeTarget", serde_json::json!({ "targetId": page.target })).await;
    }
}
