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
//! Fragmented messages are covered both ways. From Python to ferrule in both roles: the Python
//! client sends them to the ferrule server, the Python server sends them to the ferrule client.
//! From ferrule to Python, a handler streams them with `Ctx::send_fragment`, as server and as
//! client (a [`Handle`](ferrule_tokio::Handle) and the channel API's `Sender` send whole messages
//! only).
//!
//! The scenarios, the ferrule handlers and servers they run against and the handling of the
//! Python processes are shared with `interop_node.rs`, in `interop_common`.

mod interop_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrule_tests::tls::TestPki;
use ferrule_tokio::{DeflateConfig, DeflateParams, Options};
use interop_common::{
    Peer, client_echo_compressed, client_echo_through_serve_channels, client_echo_through_serve_handler,
    client_echo_through_serve_tls, client_offering_permessage_deflate_is_declined, client_offering_subprotocols,
    client_receives_handler_fragments, client_sees_1001_going_away_on_server_shutdown,
    client_sending_invalid_utf8_gets_1007, client_sending_over_max_message_size_gets_1009,
    client_with_foreign_origin_gets_403, client_with_same_origin_is_accepted, ferrule_client_echo_through_server,
    ferrule_client_echo_through_server_with, ferrule_client_echo_through_tls_server,
    ferrule_client_sees_server_close_4000, interop_dir, peer_tests, run_blocking,
    server_receives_client_handler_fragments, set_up_once, set_up_shared_dir,
};

peer_tests! {
    python = python();

    /// The Python client, with the ferrule server's `serve` and an echo [`Handler`]: text (multi-byte
    /// UTF-8 too), binary, empty messages, fragmented text (fragment boundaries inside characters) and
    /// binary, 4 MiB messages, all echoed byte for byte; a ping answered by a pong with its payload; a
    /// close with 1000 and a reason that the server's `on_close` sees as clean.
    python_client_echo_through_serve_handler_closes_clean_1000 => client_echo_through_serve_handler(python);

    /// The same exchange with permessage-deflate, which websockets offers by default, and a server
    /// with `compression` on: both ends agree on the same parameters, and every message (text,
    /// binary, fragmented, 4 MiB) round-trips compressed.
    python_client_echo_compressed_agrees_on_permessage_deflate => async {
        let agreed = client_echo_compressed(python, DeflateConfig::default(), &[]).await;
        let expected =
            DeflateParams::default().server_no_context_takeover(true).server_max_window_bits(12).client_max_window_bits(12);
        assert_eq!(agreed, expected);
    };

    /// A server that imposes no context takeover and small windows on both ends: the Python
    /// client agrees to all of it and the exchange still round-trips.
    python_client_echo_compressed_without_context_takeover_in_small_windows => async {
        let strict = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(Some(9))
            .client_max_window_bits(Some(10));
        let agreed = client_echo_compressed(python, strict, &[]).await;
        assert!(agreed.server_no_context_takeover && agreed.client_no_context_takeover, "{agreed:?}");
        assert_eq!((agreed.server_max_window_bits, agreed.client_max_window_bits), (9, 10));
    };

    /// The same exchange as the handler test, against `serve_channels` with an echo task: the channel
    /// front-end reassembles and delivers the same messages, and the done signal reports the clean
    /// 1000 close with the client's reason.
    python_client_echo_through_serve_channels_closes_clean_1000 => client_echo_through_serve_channels(python);

    /// A ferrule server handler streams a text message with `Ctx::send_fragment` (split inside `✓`
    /// and inside `🦀`, a ping between the first two fragments) and a binary one (an empty fragment
    /// in the middle): the Python client receives exactly those frames, and both messages whole.
    python_client_receives_handler_fragments_whole_with_ping_between => client_receives_handler_fragments(python);

    /// A ferrule client handler (`WebSocket::run`) streams the same two messages with
    /// `Ctx::send_fragment` from `on_open`: the Python echo server reassembles each and echoes it
    /// whole, byte for byte, and the handler's close 1000 is clean at both ends.
    python_server_receives_client_handler_fragments_whole => async {
        let run = server_receives_client_handler_fragments(python, &Options::default()).await;
        assert_eq!(run.value("close"), Some("1000 reason=ferrule done"), "the close the Python server received");
    };

    /// The ferrule client (`connect`, channel API) against the Python echo server: text, binary,
    /// empty and 4 MiB messages echoed byte for byte; fragmented text and binary from the server
    /// reassembled (a fragment boundary inside a character); a server ping answered; a close with 1000
    /// that both ends see as clean, and no error on the error stream.
    ferrule_client_echo_through_python_server_closes_clean_1000 =>
        ferrule_client_echo_through_server(python, "fragmented ✓ from python");

    /// The same exchange with `compression` on against the Python server with permessage-deflate:
    /// the client's `Upgraded::deflate` and the server's agreed extension are the same, so every
    /// message (text, binary, fragmented both ways, 4 MiB) went compressed.
    ferrule_client_echo_compressed_through_python_server => async {
        let (run, _, agreed) = ferrule_client_echo_through_server_with(
            python,
            "fragmented ✓ from python",
            &["1000", "deflate"],
            // Letting the server keep its context, as Python's server does unless asked.
            Some(DeflateConfig::default().server_no_context_takeover(false)),
        )
        .await;
        let agreed = agreed.expect("permessage-deflate agreed");
        assert_eq!(agreed, DeflateParams::default().server_max_window_bits(12).client_max_window_bits(12));
        assert_eq!(run.value("extensions"), Some(agreed.to_string().as_str()), "the Python server's extensions");
    };

    /// The same exchange over TLS: the ferrule client (`connect` to `wss://localhost`, trusting the
    /// test's CA) against the Python server with an `ssl` context holding a certificate for
    /// `localhost` that the CA signed.
    ferrule_client_echo_through_python_wss_server_closes_clean_1000 => async {
        let pki = TestPki::new(&["localhost"]);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python-wss-{}", std::process::id()));
        let (cert, key) = pki.write_pem_files(&dir).expect("wrote the PEM files");
        let (cert, key) = (format!("cert={}", cert.display()), format!("key={}", key.display()));
        let run = ferrule_client_echo_through_tls_server(python, "fragmented ✓ from python", &["1000", &cert, &key], &pki).await;
        assert_eq!(run.value("close"), Some("1000 reason=ferrule done"), "the close the Python server received");
        let _ = std::fs::remove_dir_all(&dir);
    };

    /// The Python client (`echo`, with an `ssl` context trusting only the test's CA) against
    /// `serve_tls` at `wss://localhost`: the whole echo exchange, and a clean 1000 close that the
    /// server's `on_close` sees.
    python_client_echo_through_serve_tls_closes_clean_1000 => async {
        let pki = TestPki::new(&["localhost"]);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python-wss-client-{}", std::process::id()));
        let ca = pki.write_ca_pem_file(&dir).expect("wrote the CA's PEM file");
        client_echo_through_serve_tls(python, &pki, &ca).await;
        let _ = std::fs::remove_dir_all(&dir);
    };

    /// Subprotocols are chosen in the server's preference order: the server accepts
    /// `["chat.v2", "chat.v1"]`, the Python client offers `["chat.v1", "chat.v2"]` and gets `chat.v2`.
    python_client_offering_v1_v2_gets_server_preferred_chat_v2 =>
        client_offering_subprotocols(python, "chat.v1,chat.v2", Some("chat.v2"), |run| {
            assert_eq!(run.value("subprotocol"), Some("chat.v2"), "the subprotocol the Python client got");
        });

    /// A client offering only subprotocols the server does not accept still connects, with none.
    python_client_offering_unknown_subprotocol_gets_none =>
        client_offering_subprotocols(python, "chat.v3", None, |run| {
            assert_eq!(run.value("subprotocol"), Some("None"), "the subprotocol the Python client got");
        });

    /// With the default options (same origin), a foreign `Origin` is refused with HTTP 403 before any
    /// handler is made.
    python_client_with_foreign_origin_gets_403 => client_with_foreign_origin_gets_403(python);

    /// With the default options (same origin), an `Origin` naming the server's own host and port is
    /// accepted.
    python_client_with_same_origin_is_accepted => client_with_same_origin_is_accepted(python);

    /// A close started by the Python server (4000 and a reason) is echoed by the ferrule client, whose
    /// done signal reports it as clean with the server's code and reason.
    ferrule_client_sees_python_server_close_4000_clean =>
        ferrule_client_sees_server_close_4000(python, "bye from python");

    /// `Server::shutdown` closes a live connection with 1001 Going Away: the Python client gets the
    /// code and reason, and the server's `on_close` sees the handshake complete.
    python_client_sees_1001_going_away_on_server_shutdown =>
        client_sees_1001_going_away_on_server_shutdown(python, |_| {});

    /// A message over the server's `max_message_size` (9 MiB against 8 MiB) closes the connection with
    /// 1009 Message Too Big, and the Python client receives that close frame.
    python_client_sending_over_max_message_size_gets_1009 => client_sending_over_max_message_size_gets_1009(python);

    /// A text message that is not UTF-8 closes the connection with 1007 Invalid Payload, and the
    /// Python client receives that close frame.
    python_client_sending_invalid_utf8_gets_1007 => client_sending_invalid_utf8_gets_1007(python);

    /// permessage-deflate, which websockets offers by default, is declined (no extension is
    /// negotiated) and messages still flow.
    python_client_offering_permessage_deflate_is_declined =>
        client_offering_permessage_deflate_is_declined(python, |_| {});
}

// ---------------------------------------------------------------------------------------------
// The venv

/// Creating the venv and installing `websockets`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// One run of a Python script (the scripts also stop themselves after 180 s): a guard against
/// a hang only.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// The venv's Python with the pinned `websockets`, set up once per test process; `None` when
/// `FERRULE_SKIP_INTEROP=1`. Panics with the reason when the venv cannot be set up.
fn python() -> Option<&'static Peer> {
    set_up_once("Python", "websockets", set_up_venv)
}

/// Creates the venv and installs `requirements.txt`, unless a venv with the pinned version is
/// already there. The venv is built under a per-process name and renamed into place, so test
/// processes running at once never see a half-built one.
fn set_up_venv() -> Result<Peer, String> {
    let requirements = interop_dir().join("requirements.txt");
    let version = pinned_version(&requirements)?;
    let build = |staging: &Path| {
        run_blocking(Command::new("python3").args(["-m", "venv"]).arg(staging), SETUP_TIMEOUT).map_err(|e| {
            format!(
                "creating a Python venv for the websockets interop tests failed: {e}\n\
                 They need python3 (>= 3.11 for websockets {version}) with the venv module \
                 (Debian: apt-get install python3-venv)."
            )
        })?;
        run_blocking(
            Command::new(venv_python(staging))
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            SETUP_TIMEOUT,
        )
        .map_err(|e| format!("installing {} failed (no network to PyPI?): {e}", requirements.display()))?;
        if !has_websockets(staging, &version) {
            return Err(format!("websockets {version} was installed into {} but does not import", staging.display()));
        }
        Ok(())
    };
    let venv = set_up_shared_dir(
        "py-interop-venv",
        "venv",
        &format!("import websockets {version}"),
        |venv| has_websockets(venv, &version),
        build,
        |venv| format!("set up {} with websockets {version}", venv.display()),
    )?;
    Ok(Peer {
        name: "Python",
        program: venv_python(&venv),
        scripts: interop_dir(),
        client: "client.py",
        server: "server.py",
        cwd: None,
        env: &[("PYTHONDONTWRITEBYTECODE", Some("1"))],
        script_timeout: SCRIPT_TIMEOUT,
    })
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
