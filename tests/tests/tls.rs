//! The TLS suite (`ferrule_tests::tls`) on every runtime; how each runtime runs is described in
//! `runtimes/`.
//!
//! On tokio the suite runs `ferrule_tokio`'s own `serve_tls`, `serve_channels_tls` and
//! `connect`. smol and async-std run the library on a clock the tests can pause, so the suite
//! sets their servers and clients up through ferrule's runtime-generic pieces exactly as their
//! adapters do (`ferrule::tls::TlsListener`, `MaybeTlsStream::connect`); the `*_adapter_*` tests
//! at the bottom run those adapters' own functions once each.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrule::tls::rustls::ServerConfig;
use ferrule::{
    Channels, ClientRequest, CloseCode, Codec, HandlerFactory, MaybeTlsStream, Options, Request, Server, Upgraded,
};
use ferrule_tests::tls::{TestPki, TlsTestRuntime, client_options};

#[path = "runtimes/async_std.rs"]
mod async_std_runtime;
#[path = "runtimes/smol.rs"]
mod smol_runtime;
#[path = "runtimes/tokio.rs"]
mod tokio_runtime;

use async_std_runtime::AsyncStdRuntime;
use ferrule_tests::Echo;
use ferrule_tests::suite::TestRuntime;
use smol_runtime::SmolRuntime;
use tokio_runtime::TokioRuntime;

mod on_tokio {
    ferrule_tests::tls_suite!(crate::TokioRuntime);
}

mod on_smol {
    ferrule_tests::tls_suite!(crate::SmolRuntime);
}

mod on_async_std {
    ferrule_tests::tls_suite!(crate::AsyncStdRuntime);
}

impl TlsTestRuntime for TokioRuntime {
    type TlsClientStream = ferrule_tokio::MaybeTlsStream;

    async fn serve_tls<F: HandlerFactory>(
        config: Arc<ServerConfig>,
        options: Options,
        factory: F,
    ) -> ferrule_tokio::Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
        ferrule_tokio::serve_tls(listener, config, options, move |request, acceptance| {
            factory.on_connect(request, acceptance)
        })
    }

    async fn serve_tls_bounded<F: HandlerFactory>(
        config: Arc<ServerConfig>,
        options: Options,
        max_handshakes: usize,
        factory: F,
    ) -> ferrule_tokio::Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
        let listener = ferrule_tokio::TlsListener::new(listener, config)
            .handshake_timeout(options.handshake_timeout())
            .max_handshakes(max_handshakes);
        ferrule::serve(ferrule_tokio::Tokio, listener, options, factory)
    }

    async fn serve_channels_tls<M, F, Fut>(
        config: Arc<ServerConfig>,
        options: Options,
        task: F,
    ) -> ferrule_tokio::Server
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
        ferrule_tokio::serve_channels_tls(listener, config, options, task)
    }

    async fn connect_tls(url: &str, options: &Options) -> Result<ferrule_tokio::WebSocket, ferrule::Error> {
        ferrule_tokio::connect(url, options).await
    }
}

/// The TLS suite's interface to a runtime on async-io (smol, async-std): `$accept` binds a
/// listener on `127.0.0.1:0` as a `TcpAcceptor`, `$tcp` connects to a host and port and gives
/// ferrule's async-io `TcpStream`.
macro_rules! async_io_tls_runtime {
    ($rt:ty, $accept:expr, $tcp:expr) => {
        impl TlsTestRuntime for $rt {
            type TlsClientStream = MaybeTlsStream<ferrule::async_io_tcp::TcpStream>;

            async fn serve_tls<F: HandlerFactory>(
                config: Arc<ServerConfig>,
                options: Options,
                factory: F,
            ) -> Server<<$rt as TestRuntime>::Runtime> {
                let listener = ferrule::tls::TlsListener::new(Self::runtime(), $accept.await, config)
                    .handshake_timeout(options.handshake_timeout());
                ferrule::serve(Self::runtime(), listener, options, factory)
            }

            async fn serve_tls_bounded<F: HandlerFactory>(
                config: Arc<ServerConfig>,
                options: Options,
                max_handshakes: usize,
                factory: F,
            ) -> Server<<$rt as TestRuntime>::Runtime> {
                let listener = ferrule::tls::TlsListener::new(Self::runtime(), $accept.await, config)
                    .handshake_timeout(options.handshake_timeout())
                    .max_handshakes(max_handshakes);
                ferrule::serve(Self::runtime(), listener, options, factory)
            }

            async fn serve_channels_tls<M, F, Fut>(
                config: Arc<ServerConfig>,
                options: Options,
                task: F,
            ) -> Server<<$rt as TestRuntime>::Runtime>
            where
                M: Codec,
                F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
                Fut: Future<Output = ()> + Send + 'static,
            {
                let listener = ferrule::tls::TlsListener::new(Self::runtime(), $accept.await, config)
                    .handshake_timeout(options.handshake_timeout());
                ferrule::serve_channels(Self::runtime(), listener, options, task)
            }

            /// As the adapter's `connect` does it.
            async fn connect_tls(
                url: &str,
                options: &Options,
            ) -> Result<Upgraded<Self::TlsClientStream, <$rt as TestRuntime>::Runtime>, ferrule::Error> {
                let request = ferrule::client_request(ClientRequest::new(url)?, options)?;
                let stream = $tcp(request.host().to_owned(), request.port()).await?;
                let runtime = Self::runtime();
                let stream = MaybeTlsStream::connect(&runtime, stream, &request, options).await?;
                ferrule::connect_stream(runtime, stream, request, options).await
            }
        }
    };
}

async_io_tls_runtime!(
    SmolRuntime,
    async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
        ferrule_smol::TcpAcceptor::from(Arc::from(listener))
    },
    |host: String, port: u16| async move {
        let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(ferrule_smol::TcpStream::from(Arc::from(stream)))
    }
);

async_io_tls_runtime!(
    AsyncStdRuntime,
    async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
        ferrule_async_std::TcpAcceptor::from(listener)
    },
    |host: String, port: u16| async move {
        let stream = async_std::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.set_nodelay(true)?;
        ferrule_async_std::TcpStream::new(stream.try_into()?)
    }
);

// ---- the adapters' own functions, on their own clocks --------------------------------------------------

/// A channel echo task.
async fn echo(_: Request, mut ws: Channels<String>) {
    while let Some(message) = ws.receiver.recv().await {
        if ws.sender.send(message).await.is_err() {
            return;
        }
    }
}

/// `ferrule_smol::serve_tls`, `serve_channels_tls` and `connect` to `wss://localhost`: an echo
/// through each server, then a clean close.
#[test]
fn smol_adapter_serve_tls_and_connect_wss_echo() {
    let pki = TestPki::new(&["localhost"]);
    let test = async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let callbacks = ferrule_smol::serve_tls(listener, pki.server_config(), Options::default(), |_, _| Ok(Echo));
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let channels = ferrule_smol::serve_channels_tls(listener, pki.server_config(), Options::default(), echo);
        for server in [&callbacks, &channels] {
            let url = format!("wss://localhost:{}/", server.local_addr().expect("bound").port());
            let client = ferrule_smol::connect(&url, &client_options(&pki)).await.expect("connected");
            round_trip(client.channels::<String>()).await;
        }
    };
    let guard = async {
        smol::Timer::after(Duration::from_secs(120)).await;
        panic!("the echoes did not finish within 120 s");
    };
    smol::block_on(smol::future::or(test, guard));
}

/// The same with `ferrule_async_std`'s functions.
#[test]
fn async_std_adapter_serve_tls_and_connect_wss_echo() {
    let pki = TestPki::new(&["localhost"]);
    let test = async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let callbacks =
            ferrule_async_std::serve_tls(listener, pki.server_config(), Options::default(), |_, _| Ok(Echo));
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let channels = ferrule_async_std::serve_channels_tls(listener, pki.server_config(), Options::default(), echo);
        for server in [&callbacks, &channels] {
            let url = format!("wss://localhost:{}/", server.local_addr().expect("bound").port());
            let client = ferrule_async_std::connect(&url, &client_options(&pki)).await.expect("connected");
            round_trip(client.channels::<String>()).await;
        }
    };
    async_std::task::block_on(async_std::future::timeout(Duration::from_secs(120), test))
        .expect("the echoes finished within 120 s");
}

/// One message there and back, then a clean close.
async fn round_trip(mut client: Channels<String>) {
    client.sender.send("hello over TLS".to_owned()).await.expect("sent");
    assert_eq!(client.receiver.recv().await.as_deref(), Some("hello over TLS"));
    client.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
    let info = client.done.await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
}

// ---- server configurations from PEM files, and errors --------------------------------------------------

/// A fresh directory under the target's scratch space for `name`'s files.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The PEM files of a certificate and its key make a server configuration; a key from another
/// certificate is refused with the rustls error that says so.
#[test]
fn server_config_from_pem_files_takes_a_chain_and_its_key_and_refuses_another_key() {
    let dir = scratch("pem-ok");
    let pki = TestPki::new(&["localhost"]);
    let (cert, key) = pki.write_pem_files(&dir).expect("wrote the PEM files");
    ferrule::tls::server_config_from_pem_files(&cert, &key).expect("a server configuration");
    let (_, other_key) = TestPki::new(&["localhost"]).write_pem_files(&dir.join("other")).expect("wrote");
    let error = ferrule::tls::server_config_from_pem_files(&cert, &other_key).expect_err("refused");
    assert!(matches!(error, ferrule::Error::Tls(ferrule::tls::rustls::Error::InconsistentKeys(_))), "{error:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A missing file is `NotFound`, a file with no certificate or no key `InvalidData`, each naming
/// the file.
#[test]
fn server_config_from_pem_files_names_a_missing_or_unusable_file() {
    let dir = scratch("pem-bad");
    let pki = TestPki::new(&["localhost"]);
    let (cert, key) = pki.write_pem_files(&dir).expect("wrote the PEM files");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").expect("wrote");
    let io_error =
        |cert: &std::path::Path, key: &std::path::Path| match ferrule::tls::server_config_from_pem_files(cert, key)
            .expect_err("refused")
        {
            ferrule::Error::Io(e) => e,
            other => panic!("{other:?}"),
        };
    let missing = dir.join("missing.pem");
    let e = io_error(&missing, &key);
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    for (cert, key, named) in
        [(&key, &key, "key.pem"), (&garbage, &key, "garbage.pem"), (&cert, &garbage, "garbage.pem")]
    {
        let e = io_error(cert, key);
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains(named), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS streams report their failures as I/O errors carrying the rustls error; the conversion to
/// ferrule's error unwraps it, and leaves other I/O errors alone.
#[test]
fn io_error_carrying_a_rustls_error_becomes_error_tls() {
    use ferrule::tls::rustls::{CertificateError, Error as TlsError};
    let wrapped = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
    );
    let error = ferrule::Error::from(wrapped);
    assert!(matches!(error, ferrule::Error::Tls(TlsError::InvalidCertificate(CertificateError::UnknownIssuer))));
    let plain = ferrule::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert!(matches!(&plain, ferrule::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset), "{plain:?}");
    let other = ferrule::Error::from(std::io::Error::other("not TLS"));
    assert!(matches!(other, ferrule::Error::Io(_)), "{other:?}");
}

/// `ClientTls::Platform`, the operating system's verifier, refuses a server whose CA the system
/// does not trust, with the same typed error as the default roots.
#[test]
fn platform_verifier_refuses_a_certificate_no_trusted_root_signed_with_tls_error() {
    use ferrule::tls::rustls::{CertificateError, Error as TlsError};
    let pki = TestPki::new(&["localhost"]);
    let options = Options::builder().tls(ferrule::tls::ClientTls::Platform).build().expect("valid options");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let server = ferrule_tokio::serve_tls(listener, pki.server_config(), Options::default(), |_, _| Ok(Echo));
        let url = format!("wss://localhost:{}/", server.local_addr().expect("bound").port());
        let connect = ferrule_tokio::connect(&url, &options);
        let error =
            tokio::time::timeout(Duration::from_secs(60), connect).await.expect("within 60 s").expect_err("refused");
        assert!(
            matches!(error, ferrule::Error::Tls(TlsError::InvalidCertificate(CertificateError::UnknownIssuer))),
            "{error:?}"
        );
    });
}
