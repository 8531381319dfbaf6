//! The TLS suite (`wss://`), written once over [`TlsTestRuntime`] and instantiated per runtime by
//! [`tls_suite!`](crate::tls_suite) in `tests/tests/tls.rs`.
//!
//! Every certificate is made in the test by [`TestPki`] (rcgen): a CA of the test's own and a
//! server certificate it signed, so the tests need no files and no network. The ferrule client
//! trusts that CA through [`ClientTls::Config`]; a client left with the default roots (Mozilla's)
//! must refuse the same server.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrule::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use ferrule::tls::rustls::{self, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use ferrule::tls::{ClientTls, crypto_provider};
use ferrule::{Channels, CloseCode, Codec, Error, HandlerFactory, Message, Options, Request, Server, Upgraded};
use futures_io::{AsyncRead, AsyncWrite};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData};

use crate::suite::{
    Either, Probe, TestRuntime, addr, echo_factory, now, read_some, select, sleep, with_clock_held, within, write_all,
};

/// What the TLS suite needs from a runtime adapter beyond [`TestRuntime`]: its TLS server and
/// its client for `wss://` URLs.
pub trait TlsTestRuntime: TestRuntime {
    /// The stream the adapter's client runs a `wss://` connection over.
    type TlsClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Binds a listener on `127.0.0.1:0` and serves it over TLS with `config`, with the callback
    /// API, as the adapter's `serve_tls` does.
    fn serve_tls<F: HandlerFactory>(
        config: Arc<ServerConfig>,
        options: Options,
        factory: F,
    ) -> impl Future<Output = Server<Self::Runtime>>;

    /// [`serve_tls`](Self::serve_tls) with at most `max_handshakes` TLS handshakes at once (the
    /// adapter's `TlsListener::max_handshakes`).
    fn serve_tls_bounded<F: HandlerFactory>(
        config: Arc<ServerConfig>,
        options: Options,
        max_handshakes: usize,
        factory: F,
    ) -> impl Future<Output = Server<Self::Runtime>>;

    /// The same with the channel API, as the adapter's `serve_channels_tls` does.
    fn serve_channels_tls<M, F, Fut>(
        config: Arc<ServerConfig>,
        options: Options,
        task: F,
    ) -> impl Future<Output = Server<Self::Runtime>>
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static;

    /// The adapter's client for any URL (`wss://` over TLS), as its `connect` does it.
    fn connect_tls(
        url: &str,
        options: &Options,
    ) -> impl Future<Output = Result<Upgraded<Self::TlsClientStream, Self::Runtime>, Error>>;
}

/// Expands to one `#[test]` per TLS suite test for the runtime type `$rt` (a [`TlsTestRuntime`]).
#[macro_export]
macro_rules! tls_suite {
    ($rt:ty) => {
        $crate::tls_suite!(@expand $rt;
            real wss_client_echoes_through_a_tls_callback_server,
            real wss_client_echoes_through_a_tls_channel_server_by_ip_address,
            real wss_client_refuses_a_certificate_for_another_host_with_tls_error,
            real wss_client_refuses_a_certificate_no_trusted_root_signed_with_tls_error,
            paused tls_server_drops_a_silent_peer_at_the_handshake_timeout,
            real tls_server_serves_others_while_peers_stall_or_send_garbage,
            paused tls_server_at_max_handshakes_accepts_the_next_peer_only_when_one_ends,
        );
    };
    (@expand $rt:ty; $($mode:ident $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::run::<$rt, _>($crate::runtime_suite!(@mode $mode), $crate::tls::$name::<$rt>);
            }
        )*
    };
}

// ---- certificates --------------------------------------------------------------------------------------

/// A CA made for one test, and a server certificate it signed.
pub struct TestPki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    cert_pem: String,
    key_pem: String,
    spki: Vec<u8>,
}

impl TestPki {
    /// A fresh CA and a server certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "ferrule test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("a self-signed CA");
        let key = KeyPair::generate().expect("a server key");
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server certificate parameters");
        params.distinguished_name.push(DnType::CommonName, "ferrule test server");
        let cert = params.signed_by(&key, &ca).expect("a server certificate");
        Self {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            spki: key.subject_public_key_info(),
        }
    }

    /// The server's configuration, as [`ferrule::tls::server_config`] makes it.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::from(self.key.clone_key());
        Arc::new(ferrule::tls::server_config(self.chain.clone(), key).expect("a server configuration"))
    }

    /// A client's roots that trust this CA alone.
    pub fn client_tls(&self) -> ClientTls {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("the CA as a root");
        let config = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        ClientTls::Config(Arc::new(config))
    }

    /// The server certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The server's private key, PEM (PKCS #8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes the server certificate and key as `cert.pem` and `key.pem` into `dir` (made if
    /// missing) and returns their paths.
    pub fn write_pem_files(&self, dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((cert, key))
    }

    /// Writes the CA's certificate as `ca.pem` into `dir` (made if missing) and returns its path:
    /// what a peer written in another language trusts.
    pub fn write_ca_pem_file(&self, dir: &Path) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem)?;
        Ok(path)
    }

    /// The base64 of the SHA-256 of the server key's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust this certificate.
    pub fn spki_sha256_base64(&self) -> String {
        use base64::Engine as _;
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.spki);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }
}

/// Options for a client that trusts `pki`'s CA.
pub fn client_options(pki: &TestPki) -> Options {
    Options::builder().tls(pki.client_tls()).build().expect("valid options")
}

// ---- the tests -----------------------------------------------------------------------------------------

/// Messages that cross TLS record boundaries (16 KiB) and the WebSocket length encodings.
fn messages() -> Vec<Message> {
    vec![
        Message::text("hello over TLS"),
        Message::text("κόσμε 🦀"),
        Message::text(""),
        Message::binary(vec![0, 1, 0xFF]),
        Message::binary((0..70_000).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
        Message::text("x".repeat(1 << 20)),
    ]
}

/// Sends each of [`messages`] over `channels` and checks the echo, then closes with 1000 and
/// checks the close was clean.
async fn echo_and_close<T: TestRuntime>(mut channels: Channels<Message>) {
    for message in messages() {
        channels.sender.send(message.clone()).await.expect("sent");
        let echoed = within::<T, _>(Duration::from_secs(60), "the echo", channels.receiver.recv()).await;
        assert_eq!(echoed.as_ref(), Some(&message), "the echo of a {}-byte message", message.len());
    }
    channels.disconnect.disconnect(CloseCode::NORMAL, "done").expect("close");
    let info = within::<T, _>(Duration::from_secs(60), "the close", channels.done.clone()).await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
}

/// A `wss://localhost` client that trusts the test CA echoes text and binary messages (one of
/// 1 MiB, many TLS records) through `serve_tls` with a callback handler, and closes cleanly at
/// both ends, without a process-wide crypto provider.
pub async fn wss_client_echoes_through_a_tls_callback_server<T: TlsTestRuntime>() {
    let pki = TestPki::new(&["localhost"]);
    let probe = Probe::default();
    let server = T::serve_tls(pki.server_config(), Options::default(), echo_factory::<T>(&probe)).await;
    let url = format!("wss://localhost:{}/", addr(&server).port());
    let client = T::connect_tls(&url, &client_options(&pki)).await.expect("connected over TLS");
    echo_and_close::<T>(client.channels::<Message>()).await;
    let info = within::<T, _>(Duration::from_secs(60), "the server's on_close", probe.closes.next()).await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
    // Both ends took their crypto provider explicitly: none was installed for the process, so
    // an application whose dependencies bring in a second provider cannot make them panic.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none(), "a process-wide crypto provider was installed");
}

/// The same through `serve_channels_tls`, connecting to `wss://127.0.0.1`: the certificate names
/// the IP address, and the client checks it against the address (RFC 6125, an IP SAN).
pub async fn wss_client_echoes_through_a_tls_channel_server_by_ip_address<T: TlsTestRuntime>() {
    let pki = TestPki::new(&["127.0.0.1"]);
    let server =
        T::serve_channels_tls(pki.server_config(), Options::default(), |_, mut ws: Channels<Message>| async move {
            while let Some(message) = ws.receiver.recv().await {
                if ws.sender.send(message).await.is_err() {
                    return;
                }
            }
        })
        .await;
    let url = format!("wss://127.0.0.1:{}/", addr(&server).port());
    let client = T::connect_tls(&url, &client_options(&pki)).await.expect("connected over TLS");
    echo_and_close::<T>(client.channels::<Message>()).await;
}

/// A server whose certificate names another host: the client refuses it with [`Error::Tls`]
/// carrying rustls's `NotValidForName`, and no handler is ever made.
pub async fn wss_client_refuses_a_certificate_for_another_host_with_tls_error<T: TlsTestRuntime>() {
    let pki = TestPki::new(&["other.example"]);
    let probe = Probe::default();
    let server = T::serve_tls(pki.server_config(), Options::default(), echo_factory::<T>(&probe)).await;
    let url = format!("wss://localhost:{}/", addr(&server).port());
    let error = T::connect_tls(&url, &client_options(&pki)).await.expect_err("refused");
    assert!(
        matches!(
            error,
            Error::Tls(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("TLS failed: "), "{error}");
    assert_eq!(probe.connects.load(Ordering::SeqCst), 0, "a handler was made");
}

/// A server whose CA the client does not trust (the default roots, Mozilla's): the client refuses
/// it with [`Error::Tls`] carrying rustls's `UnknownIssuer`.
pub async fn wss_client_refuses_a_certificate_no_trusted_root_signed_with_tls_error<T: TlsTestRuntime>() {
    let pki = TestPki::new(&["localhost"]);
    let probe = Probe::default();
    let server = T::serve_tls(pki.server_config(), Options::default(), echo_factory::<T>(&probe)).await;
    let url = format!("wss://localhost:{}/", addr(&server).port());
    let error = T::connect_tls(&url, &Options::default()).await.expect_err("refused");
    assert!(
        matches!(error, Error::Tls(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))),
        "{error:?}"
    );
    assert_eq!(probe.connects.load(Ordering::SeqCst), 0, "a handler was made");
}

/// A peer that opens a TCP connection to a TLS server and says nothing is dropped when the
/// handshake timeout (the options' `handshake_timeout`, 5 s here) has passed on the paused clock,
/// and not before.
pub async fn tls_server_drops_a_silent_peer_at_the_handshake_timeout<T: TlsTestRuntime>() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let pki = TestPki::new(&["localhost"]);
    let options = Options::builder().handshake_timeout(TIMEOUT).build().expect("valid options");
    let probe = Probe::default();
    let server = T::serve_tls(pki.server_config(), options, echo_factory::<T>(&probe)).await;
    let started = now::<T>();
    let mut silent = T::tcp(addr(&server)).await.expect("a TCP connection");
    let mut buf = [0u8; 64];
    let read = read_some(&mut silent, &mut buf).await;
    let elapsed = now::<T>() - started;
    assert!(matches!(read, Ok(0)) || read.is_err(), "the server sent {read:?} to a silent peer");
    assert!(elapsed >= TIMEOUT, "dropped after {elapsed:?}, before the {TIMEOUT:?} handshake timeout");
}

/// While one peer holds a TCP connection open without a TLS handshake, and another sends plain
/// HTTP to the TLS port, a real client still connects and echoes: the accept loop does not wait
/// for handshakes. The garbage gets a TLS alert and an end of stream, and the silent peer is
/// still waiting (its handshake timeout is an hour).
pub async fn tls_server_serves_others_while_peers_stall_or_send_garbage<T: TlsTestRuntime>() {
    let pki = TestPki::new(&["localhost"]);
    let options = Options::builder().handshake_timeout(Duration::from_secs(3600)).build().expect("valid options");
    let probe = Probe::default();
    let server = T::serve_tls(pki.server_config(), options, echo_factory::<T>(&probe)).await;
    let addr = addr(&server);

    let mut silent = T::tcp(addr).await.expect("a TCP connection");
    let mut garbage = T::tcp(addr).await.expect("a TCP connection");
    write_all(&mut garbage, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("written");
    let answer = read_to_end(&mut garbage).await;
    assert!(!answer.is_empty() && answer[0] == 0x15, "a TLS alert record for plain HTTP, got {answer:?}");

    let url = format!("wss://localhost:{}/", addr.port());
    let client = T::connect_tls(&url, &client_options(&pki)).await.expect("connected over TLS");
    echo_and_close::<T>(client.channels::<Message>()).await;

    let mut buf = [0u8; 16];
    match select(read_some(&mut silent, &mut buf), sleep::<T>(Duration::from_millis(100))).await {
        Either::Left(read) => panic!("the silent peer's connection ended early: {read:?}"),
        Either::Right(()) => {}
    }
}

/// With room for one TLS handshake at a time, a silent peer holds it: a client that connects
/// next is not served until the silent peer's handshake times out (5 s on the paused clock), and
/// is served then. The bound keeps the server's handshake state to `max_handshakes`; the rest
/// wait in the kernel's backlog.
pub async fn tls_server_at_max_handshakes_accepts_the_next_peer_only_when_one_ends<T: TlsTestRuntime>() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let pki = TestPki::new(&["localhost"]);
    let options = Options::builder().handshake_timeout(TIMEOUT).build().expect("valid options");
    let probe = Probe::default();
    let server = T::serve_tls_bounded(pki.server_config(), options, 1, echo_factory::<T>(&probe)).await;
    let started = now::<T>();
    // Connected first, so first in the listener's backlog.
    let _silent = T::tcp(addr(&server)).await.expect("a TCP connection");

    let client_options = Options::builder()
        .tls(pki.client_tls())
        .handshake_timeout(Duration::from_secs(600))
        .build()
        .expect("valid options");
    let url = format!("wss://localhost:{}/", addr(&server).port());
    let mut client = pin!(T::connect_tls(&url, &client_options));
    // The client is served when the silent peer's handshake times out and frees the slot. Past
    // that deadline the clock is held still, so it cannot jump to the client's own server-side
    // deadline (5 s later) while its bytes are on the way.
    let result = match select(client.as_mut(), sleep::<T>(TIMEOUT + Duration::from_millis(1))).await {
        Either::Left(result) => result,
        Either::Right(()) => with_clock_held(Duration::from_secs(60), "the client's connect", client).await,
    };
    let served_at = now::<T>() - started;
    let client = result.expect("connected once the silent peer's handshake timed out");
    assert!(served_at >= TIMEOUT, "served at {served_at:?}, while the silent peer held the only slot");
    echo_and_close::<T>(client.channels::<Message>()).await;
}

/// Everything `io` sends until its end (or an error, such as a reset after the alert).
async fn read_to_end<S: AsyncRead + Unpin>(io: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match with_clock_held(Duration::from_secs(60), "the server's answer", read_some(io, &mut buf)).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}
