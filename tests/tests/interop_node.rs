//! Interoperability with a second real peer nobody here wrote: the Node.js `ws` package, at the
//! exact version pinned in `tests/interop/node/package.json` (and `package-lock.json`), over
//! loopback TCP on the tokio runtime.
//!
//! Each test process installs the pinned `ws` once into `node-interop/` under
//! `CARGO_TARGET_TMPDIR` (copies of `package.json` and `package-lock.json`, then `npm ci`) and
//! reuses that install while it holds the same lock file and resolves `ws` at the pinned version.
//! The scripts stay in the repository and are run with `node` from the install directory: they
//! resolve `ws` from their working directory (`createRequire`), and
//! [`node_scripts_resolve_the_pinned_ws_from_the_install_dir`] checks where it came from. No
//! node/npm or no network makes these tests fail, not skip; set `FERRULE_SKIP_INTEROP=1` to skip
//! them on purpose. Every child process (`npm ci`, each script) runs under a hard timeout and is
//! killed when it runs over; the scripts also stop themselves after 30 s.
//!
//! The scripts are `tests/interop/node/client.mjs` (a `ws` client against a ferrule server) and
//! `tests/interop/node/server.mjs` (a `ws` echo server for a ferrule client). They speak the same
//! line protocol as the Python ones: `key=value` lines on stdout, `port=N` once the server
//! listens.
//!
//! Fragmented messages are covered both ways: the `ws` peer sends them to ferrule in both roles,
//! and ferrule handlers stream them to `ws` with `Ctx::send_fragment`, as server and as client.
//!
//! The scenarios, the ferrule handlers and servers they run against and the handling of the
//! Node.js processes are shared with `interop_python.rs`, in `interop_common`.

mod interop_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrule_tokio::hub::{AckError, BoxError, Hub, Socket};
use ferrule_tokio::{CloseCode, DeflateConfig, DeflateParams, Message, Options, Tokio};
use interop_common::{
    Peer, STREAMED_TEXT, client_echo_compressed, client_echo_through_serve_channels, client_echo_through_serve_handler,
    client_offering_permessage_deflate_is_declined, client_offering_subprotocols, client_receives_handler_fragments,
    client_sees_1001_going_away_on_server_shutdown, client_sending_invalid_utf8_gets_1007,
    client_sending_over_max_message_size_gets_1009, client_with_foreign_origin_gets_403,
    client_with_same_origin_is_accepted, ferrule_client_echo_through_server, ferrule_client_echo_through_server_with,
    ferrule_client_sees_server_close_4000, interop_dir, kind, peer_tests, run_blocking, run_client,
    server_receives_client_handler_fragments, set_up_once, set_up_shared_dir, streamed_binary,
};

peer_tests! {
    node = node();

    /// The `ws` client, with the ferrule server's `serve` and an echo [`Handler`]: text (multi-byte
    /// UTF-8 too), binary, empty messages, fragmented text (with fragment boundaries inside
    /// characters, and a final empty fragment) and binary (an empty fragment in the middle), 4 MiB
    /// messages, all echoed byte for byte; a ping answered by a pong with its payload; a close with
    /// 1000 and a reason that the server's `on_close` sees as clean.
    node_client_echo_through_serve_handler_closes_clean_1000 => client_echo_through_serve_handler(node);

    /// The same exchange as the handler test, against `serve_channels` with an echo task: the channel
    /// front-end reassembles and delivers the same messages, and the done signal reports the clean
    /// 1000 close with the client's reason.
    node_client_echo_through_serve_channels_closes_clean_1000 => client_echo_through_serve_channels(node);

    /// A ferrule server handler streams a text message with `Ctx::send_fragment` (split inside `✓`
    /// and inside `🦀`, a ping between the first two fragments) and a binary one (an empty fragment
    /// in the middle): the `ws` client sees exactly those frames on the wire, and receives both
    /// messages whole.
    node_client_receives_handler_fragments_whole_with_ping_between => client_receives_handler_fragments(node);

    /// The ferrule client (`connect`, channel API) against the `ws` echo server: text, binary, empty
    /// and 4 MiB messages echoed byte for byte; fragmented text and binary from the server reassembled
    /// (a fragment boundary inside a character); a server ping answered; a close with 1000 that both
    /// ends see as clean, and no error on the error stream.
    ferrule_client_echo_through_node_server_closes_clean_1000 => async {
        let (run, messages) = ferrule_client_echo_through_server(node, "fragmented ✓ from node").await;
        assert_eq!(run.value("clean"), Some("true"), "whether the ws server saw a clean close");
        let seen: Vec<&str> = run.stdout.lines().filter_map(|l| l.strip_prefix("message=")).collect();
        let mut sent: Vec<String> = messages.iter().map(|m| format!("{} {}", kind(m), m.len())).collect();
        sent.extend(["text 15".to_owned(), "text 11".to_owned()]);
        assert_eq!(seen, sent, "the messages the ws server received");
    };

    /// A ferrule client handler (`WebSocket::run`) streams the same two messages with
    /// `Ctx::send_fragment` from `on_open`: the `ws` server receives the ping before the text it
    /// interrupted, then each message whole (it reports one message of the full length each), and its
    /// echoes come back to the handler byte for byte; the handler's close 1000 is clean at both ends.
    node_server_receives_client_handler_fragments_whole_with_ping_between => async {
        // No keepalive pings: the ping the server reports is the one between the fragments.
        let options = Options::builder().ping_period(None).build().expect("options");
        let run = server_receives_client_handler_fragments(node, &options).await;
        let reported: Vec<&str> = run.stdout.lines().skip_while(|l| l.starts_with("port=")).collect();
        let text = format!("message=text {}", STREAMED_TEXT.len());
        let binary = format!("message=binary {}", streamed_binary().len());
        assert_eq!(
            reported,
            ["ping=stream-ping", &text, &binary, "close=1000 reason=ferrule done", "clean=true"],
            "what the ws server reported"
        );
    };

    /// Subprotocols are chosen in the server's preference order: the server accepts
    /// `["chat.v2", "chat.v1"]`, the `ws` client offers `["chat.v1", "chat.v2"]` and gets `chat.v2`.
    node_client_offering_v1_v2_gets_server_preferred_chat_v2 =>
        client_offering_subprotocols(node, "chat.v1,chat.v2", Some("chat.v2"), |run| {
            assert_eq!(
                run.value("subprotocol"),
                Some("chat.v2"),
                "the subprotocol the ws client got; stdout: {}",
                run.stdout
            );
        });

    /// When the client offers only subprotocols the server does not accept, the server answers the
    /// upgrade without a `Sec-WebSocket-Protocol` header (RFC 6455 section 4.2.2 lets it); `ws`, stricter
    /// than the RFC, then fails the handshake itself with "Server sent no subprotocol".
    node_client_offering_unknown_subprotocol_gets_none_and_ws_refuses_it =>
        client_offering_subprotocols(node, "chat.v3", None, |run| {
            assert_eq!(run.value("error"), Some("Server sent no subprotocol"), "stdout: {}", run.stdout);
        });

    /// With the default options (same origin), a foreign `Origin` is refused with HTTP 403 before any
    /// handler is made.
    node_client_with_foreign_origin_gets_403 => client_with_foreign_origin_gets_403(node);

    /// With the default options (same origin), an `Origin` naming the server's own host and port is
    /// accepted.
    node_client_with_same_origin_is_accepted => client_with_same_origin_is_accepted(node);

    /// A close started by the `ws` server (4000 and a reason) is echoed by the ferrule client, whose
    /// done signal reports it as clean with the server's code and reason; the server sees 4000 echoed.
    ferrule_client_sees_node_server_close_4000_clean => async {
        let run = ferrule_client_sees_server_close_4000(node, "bye from node").await;
        // ferrule echoes the code alone (RFC 6455 section 5.5.1), not the reason.
        assert_eq!(run.value("close"), Some("4000 reason="), "the close the ws server got back");
    };

    /// `Server::shutdown` closes a live connection with 1001 Going Away: the `ws` client gets the code
    /// and reason in a clean close, and the server's `on_close` sees the handshake complete.
    node_client_sees_1001_going_away_on_server_shutdown =>
        client_sees_1001_going_away_on_server_shutdown(node, |run| {
            assert_eq!(run.value("clean"), Some("true"), "whether the ws client saw a clean close");
        });

    /// A message over the server's `max_message_size` (9 MiB against 8 MiB) closes the connection with
    /// 1009 Message Too Big, and the `ws` client receives that close frame.
    node_client_sending_over_max_message_size_gets_1009 => client_sending_over_max_message_size_gets_1009(node);

    /// A text message that is not UTF-8 (`ws` sends a Buffer as a text frame without checking it)
    /// closes the connection with 1007 Invalid Payload, and the `ws` client receives that close frame.
    node_client_sending_invalid_utf8_gets_1007 => client_sending_invalid_utf8_gets_1007(node);

    /// The ferrule client with `compression` on against the `ws` server with `perMessageDeflate`
    /// (every message compressed): the client's `Upgraded::deflate` and the server's agreed
    /// parameters are the same, and the whole exchange (fragmented both ways, 4 MiB) round-trips.
    /// At its defaults the client asks for 12-bit windows and leaves the server's context
    /// takeover to the server, which keeps its context.
    ferrule_client_echo_compressed_through_node_server => async {
        let (run, _, agreed) =
            ferrule_client_echo_through_server_with(node, "fragmented ✓ from node", &["1000", "deflate"], Some(DeflateConfig::default()))
                .await;
        let agreed = agreed.expect("permessage-deflate agreed");
        let expected = DeflateParams::default().server_max_window_bits(12).client_max_window_bits(12);
        assert_eq!(agreed, expected);
        assert_eq!(run.value("extensions"), Some(agreed.to_string().as_str()), "the ws server's extensions");
    };

    /// The `ws` server's `serverMaxWindowBits` and `clientMaxWindowBits` (9 and 10) below what the
    /// ferrule client offers: the client agrees to them and compresses in the smaller window. The
    /// client lets the server keep its context, so the server's messages share one deflate stream.
    ferrule_client_echo_compressed_in_ws_server_window_bits => async {
        let (run, _, agreed) = ferrule_client_echo_through_server_with(
            node,
            "fragmented ✓ from node",
            &["1000", "deflate", "9", "10"],
            Some(DeflateConfig::default().server_no_context_takeover(false)),
        )
        .await;
        let agreed = agreed.expect("permessage-deflate agreed");
        assert_eq!(agreed, DeflateParams::default().server_max_window_bits(9).client_max_window_bits(10));
        assert_eq!(run.value("extensions"), Some(agreed.to_string().as_str()), "the ws server's extensions");
    };

    /// The `ws` client with `perMessageDeflate` on (every message compressed) against a server with
    /// `compression` on: both ends agree on the same parameters, and text, binary, fragmented and
    /// 4 MiB messages round-trip compressed.
    node_client_echo_compressed_agrees_on_permessage_deflate => async {
        let agreed = client_echo_compressed(node, DeflateConfig::default(), &[]).await;
        let expected =
            DeflateParams::default().server_no_context_takeover(true).server_max_window_bits(12).client_max_window_bits(12);
        assert_eq!(agreed, expected);
    };

    /// `ws`'s `serverMaxWindowBits` and `clientMaxWindowBits` (10 and 9) are agreed below the
    /// server's own limits (15, any), and the exchange round-trips in those windows, the server
    /// keeping its context.
    node_client_echo_compressed_with_ws_window_bits => async {
        let open = DeflateConfig::default()
            .server_max_window_bits(Some(15))
            .client_max_window_bits(None)
            .server_no_context_takeover(false);
        let agreed = client_echo_compressed(node, open, &["10", "9"]).await;
        assert_eq!(agreed, DeflateParams::default().server_max_window_bits(10).client_max_window_bits(9));
    };

    /// permessage-deflate, which `ws` offers by default, is declined (no extension is negotiated)
    /// and messages still flow.
    node_client_offering_permessage_deflate_is_declined =>
        client_offering_permessage_deflate_is_declined(node, |received| {
            assert_eq!(received, 1, "messages seen by the handler");
        });

    /// The scripts, run as every test runs them, load `ws` from the install under
    /// `CARGO_TARGET_TMPDIR` at the pinned version, not from anywhere else node would look.
    node_scripts_resolve_the_pinned_ws_from_the_install_dir => async {
        let run = run_client(node, &["version"]).await;
        run.assert_success("client.mjs version");
        let pinned = pinned_version(&node_scripts_dir().join("package.json")).expect("pinned version");
        assert_eq!(run.value("ws"), Some(pinned.as_str()), "the ws version the scripts load");
        let resolved = run.value("ws_path").map(PathBuf::from).expect("ws_path= line");
        let dir = node.cwd.as_deref().expect("the scripts run from the install dir");
        assert!(
            resolved.starts_with(dir.join("node_modules").join("ws")),
            "ws resolved from {} instead of the install at {}",
            resolved.display(),
            dir.display()
        );
        assert!(!node_scripts_dir().join("node_modules").exists(), "node_modules in the repository");
    };

    /// The hub's browser client (`ferrule::hub::CLIENT_JS`) passes its own tests under Node's
    /// test runner (`tests/interop/node/hub-client.test.mjs`, with `ws` as its WebSocket) against
    /// a ferrule hub: `$open` and the id, emits queued until then, `on`/`off`/`once`, acks both
    /// ways (replies, nacks, a timeout on mocked timers, a close), native text and binary,
    /// reconnection after the server's close, and a version mismatch and malformed messages from
    /// a stand-in server.
    hub_js_client_passes_its_node_tests_against_a_ferrule_hub => hub_js_client(node);
}

// ---------------------------------------------------------------------------------------------
// The install

/// Installing `ws` with `npm ci`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// One run of a Node.js script (the scripts also stop themselves after 180 s): a guard against
/// a hang only.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// The pinned `ws`, installed once per test process; `None` when `FERRULE_SKIP_INTEROP=1`.
/// Panics with the reason when it cannot be installed.
fn node() -> Option<&'static Peer> {
    set_up_once("Node.js", "ws", set_up_install)
}

/// The Node.js scripts' directory, with the pinned `package.json` and `package-lock.json`.
fn node_scripts_dir() -> PathBuf {
    interop_dir().join("node")
}

/// Installs the pinned `ws` with `npm ci`, unless an install of the same lock file that resolves
/// the pinned version is already there. The install is built under a per-process name and renamed
/// into place, so test processes running at once never see a half-built one.
fn set_up_install() -> Result<Peer, String> {
    let scripts = node_scripts_dir();
    let version = pinned_version(&scripts.join("package.json"))?;
    let lock =
        std::fs::read(scripts.join("package-lock.json")).map_err(|e| format!("reading package-lock.json: {e}"))?;
    run_blocking(Command::new("node").arg("--version"), Duration::from_secs(30))
        .map_err(|e| format!("the Node.js ws interop tests need node (>= 18) and npm on the PATH: {e}"))?;
    let build = |staging: &Path| {
        let installed = install_into(staging, &scripts).and_then(|()| {
            if has_ws(staging, &lock, &version) {
                Ok(())
            } else {
                Err(format!("ws {version} was installed into {} but the scripts do not load it", staging.display()))
            }
        });
        if installed.is_err() {
            let _ = std::fs::remove_dir_all(staging);
        }
        installed
    };
    let dir = set_up_shared_dir(
        "node-interop",
        "install",
        &format!("load ws {version}"),
        |dir| has_ws(dir, &lock, &version),
        build,
        |dir| format!("installed ws {version} into {}", dir.display()),
    )?;
    // The scripts run from the install directory, so they resolve the installed `ws`.
    Ok(Peer {
        name: "ws",
        program: PathBuf::from("node"),
        scripts,
        client: "client.mjs",
        server: "server.mjs",
        cwd: Some(dir),
        env: &[("NODE_OPTIONS", None), ("NODE_PATH", None)],
        script_timeout: SCRIPT_TIMEOUT,
    })
}

/// Copies `package.json` and `package-lock.json` from `scripts` into `dir` and runs `npm ci` there.
fn install_into(dir: &Path, scripts: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(scripts.join(file), dir.join(file)).map_err(|e| format!("copying {file}: {e}"))?;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]).current_dir(dir);
    run_blocking(&mut npm, SETUP_TIMEOUT)
        .map(drop)
        .map_err(|e| format!("npm ci in {} failed (no npm, or no network to the npm registry?): {e}", dir.display()))
}

/// The exact `ws` version pinned in `package.json`: `"ws": "X.Y.Z"`, no range.
fn pinned_version(package_json: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(package_json).map_err(|e| format!("reading {}: {e}", package_json.display()))?;
    let version = text
        .split_once("\"ws\"")
        .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.trim_start().strip_prefix('"'))
        .and_then(|rest| rest.split_once('"'))
        .map(|(version, _)| version.to_owned())
        .ok_or_else(|| format!("{} has no \"ws\": \"VERSION\" dependency", package_json.display()))?;
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{} must pin ws to an exact version, not {version:?}", package_json.display()));
    }
    Ok(version)
}

/// Whether `dir` holds an install of `lock` from which the scripts load `ws` at `version`, from
/// `dir`'s own `node_modules`.
fn has_ws(dir: &Path, lock: &[u8], version: &str) -> bool {
    if std::fs::read(dir.join("package-lock.json")).ok().as_deref() != Some(lock) {
        return false;
    }
    let mut command = Command::new("node");
    command.arg(node_scripts_dir().join("client.mjs")).arg("version").current_dir(dir).env_remove("NODE_PATH");
    let Ok(output) = run_blocking(&mut command, Duration::from_secs(30)) else { return false };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| stdout.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned);
    value("ws").as_deref() == Some(version)
        && value("ws_path").is_some_and(|p| Path::new(&p).starts_with(dir.join("node_modules").join("ws")))
}

// ---------------------------------------------------------------------------------------------
// The hub's JavaScript client

/// Every run of the hub client's Node tests, start to end.
const HUB_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The hub the client's tests run against; its events are listed at the top of
/// `hub-client.test.mjs`.
fn test_hub() -> Hub<Tokio> {
    Hub::builder(Tokio)
        .on("echo", |socket: &Socket<Tokio>, value: serde_json::Value| {
            socket.emit("echo", &value)?;
            Ok(())
        })
        .on_with_ack("add", |_: &Socket<Tokio>, (a, b): (i64, i64)| Ok(a.saturating_add(b)))
        .on_with_ack("fail", |_: &Socket<Tokio>, _: serde_json::Value| -> Result<(), BoxError> {
            Err("refused on purpose".into())
        })
        .on("ask", |socket: &Socket<Tokio>, question: serde_json::Value| {
            let ack = socket.emit_with_ack::<serde_json::Value, _>("question", &question, Duration::from_secs(30))?;
            let socket = socket.clone();
            tokio::spawn(async move {
                let answer = match ack.await {
                    Ok(reply) => serde_json::json!({ "reply": reply }),
                    Err(AckError::Refused(_)) => serde_json::json!({ "error": "refused" }),
                    Err(other) => serde_json::json!({ "error": other.to_string() }),
                };
                let _ = socket.emit("answer", &answer);
            });
            Ok(())
        })
        .on("kick", |socket: &Socket<Tokio>, _: serde_json::Value| {
            socket.disconnect(CloseCode::from(4000), "kicked")?;
            Ok(())
        })
        .on_native(|socket: &Socket<Tokio>, message: &Message| {
            socket.send(message.clone());
        })
        .build()
}

/// Runs `node --test hub-client.test.mjs` from the `ws` install against [`test_hub`], and
/// checks that every test in it ran and passed.
async fn hub_js_client(node: &Peer) {
    let hub = test_hub();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = ferrule_tokio::serve(listener, Options::default(), hub.handler_factory());
    let url = format!("ws://{}/", server.local_addr().expect("local address"));
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src/hub/client/ferrule-hub.js");
    let mut command = tokio::process::Command::new(&node.program);
    command
        .args(["--test", "--test-reporter=tap"])
        .arg(node.scripts.join("hub-client.test.mjs"))
        .current_dir(node.cwd.as_deref().expect("the ws install dir"))
        .env_remove("NODE_OPTIONS")
        .env_remove("NODE_PATH")
        .env("FERRULE_HUB_URL", &url)
        .env("FERRULE_HUB_CLIENT", &client)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start node --test");
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text).await;
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = tokio::time::timeout(HUB_CLIENT_TIMEOUT, child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let (stdout, stderr) = (stdout.await.unwrap_or_default(), stderr.await.unwrap_or_default());
    let Ok(Ok(status)) = status else {
        panic!(
            "node --test did not finish within {HUB_CLIENT_TIMEOUT:?}; killed it\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )
    };
    let count = |key: &str| stdout.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<usize>().ok());
    let (tests, pass) = (count("# tests "), count("# pass "));
    assert!(
        status.success() && tests.is_some_and(|n| n >= 15) && pass == tests && count("# fail ") == Some(0),
        "the hub client's Node tests failed ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(hub.stats().connects >= 12, "the tests connected to the hub: {:?}", hub.stats());
    server.shutdown(Duration::from_secs(5)).await;
}
