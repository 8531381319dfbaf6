//! The integration suite (`ferrule_tests::http_server_suite`: all of it but the handshake timeout
//! of ferrule's own server) with the server behind axum and behind a plain hyper server, over
//! HTTP/1.1; how they serve is described in `runtimes/http_servers.rs`. Then WebSockets over
//! HTTP/2 through both.

#[path = "runtimes/tokio.rs"]
mod runtime;
#[path = "runtimes/http_servers.rs"]
mod servers;

mod axum {
    ferrule_tests::http_server_suite!(crate::servers::AxumRuntime);
}

mod hyper {
    ferrule_tests::http_server_suite!(crate::servers::HyperRuntime);
}

/// WebSockets over HTTP/2 (RFC 8441) through axum and hyper, with hyper's HTTP/2 client sending
/// the extended CONNECT (h2c, prior knowledge) and a client `ferrule_core::Connection` speaking
/// WebSocket frames on the HTTP/2 stream.
mod http2 {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use ferrule_core::{CloseCode, Config, Connection, Event, Role};
    use ferrule_tests::suite::{TestRuntime, TestServer};
    use ferrule_tokio::{Acceptance, Ctx, Handler, HandlerError, Message, Options, OriginPolicy, Request};
    use http_body_util::Empty;
    use hyper::http::{Method, StatusCode, Version};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::servers::{AxumRuntime, HyperRuntime};

    /// A generous guard against a hang; the tests wait for the events themselves.
    const GUARD: Duration = Duration::from_secs(60);

    struct Echo;

    impl Handler for Echo {
        fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            ctx.send(&message)?;
            Ok(())
        }
    }

    /// What the server's `on_connect` saw of each request: (HTTP/2, `:protocol`, path).
    type Seen = Arc<Mutex<Vec<(bool, Option<String>, String)>>>;

    async fn echo_server<T: TestRuntime>(seen: &Seen) -> T::Server {
        let seen = seen.clone();
        let options = Options::builder()
            .allowed_origin(OriginPolicy::InsecureAllowAny)
            .subprotocols(["chat"])
            .build()
            .expect("valid options");
        T::serve(options, move |request: &Request, _: &mut Acceptance| {
            let protocol = request.protocol().map(str::to_owned);
            seen.lock().unwrap().push((request.is_http2(), protocol, request.path().to_owned()));
            Ok(Echo)
        })
        .await
    }

    /// An HTTP/2 connection (prior knowledge) to `addr`, driven in its own task.
    async fn h2_client(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connected");
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .expect("an HTTP/2 connection");
        tokio::spawn(connection);
        sender
    }

    fn connect_request(
        addr: std::net::SocketAddr,
        protocol: Option<&'static str>,
        version: &str,
    ) -> hyper::Request<Empty<Bytes>> {
        let mut request = hyper::Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri(format!("http://{addr}/h2/echo"))
            .header("sec-websocket-version", version)
            .header("sec-websocket-protocol", "other, chat")
            .body(Empty::new())
            .expect("a request");
        if let Some(protocol) = protocol {
            request.extensions_mut().insert(hyper::ext::Protocol::from_static(protocol));
        }
        request
    }

    /// Sends `request`, retrying while the server's SETTINGS (with
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441 section 3) have not arrived yet: the client
    /// refuses an extended CONNECT until they have.
    async fn send(
        sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        make: impl Fn() -> hyper::Request<Empty<Bytes>>,
    ) -> hyper::Response<hyper::body::Incoming> {
        loop {
            sender.ready().await.expect("the connection is up");
            match sender.send_request(make()).await {
                Ok(response) => return response,
                Err(error) if format!("{error:?}").contains("ExtendedConnectProtocol") => {
                    tokio::task::yield_now().await
                }
                Err(error) => panic!("the request failed: {error:?}"),
            }
        }
    }

    /// Reads from `stream` into `client` until it yields an event.
    async fn next_event<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, client: &mut Connection) -> Event {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(event) = client.poll_event() {
                return event;
            }
            let n = stream.read(&mut buf).await.expect("a read");
            if n == 0 {
                client.handle_eof(std::time::Instant::now());
            } else {
                client.handle_input(&buf[..n], std::time::Instant::now()).expect("valid frames");
            }
        }
    }

    async fn flush<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, client: &mut Connection) {
        while let Some(bytes) = client.poll_transmit() {
            let n = bytes.len();
            stream.write_all(bytes).await.expect("a write");
            client.advance_transmit(n);
        }
        stream.flush().await.expect("a flush");
    }

    async fn exchanges_messages_over_an_http2_stream<T: TestRuntime>() {
        let seen = Seen::default();
        let server = echo_server::<T>(&seen).await;
        let addr = server.addr();
        let mut sender = h2_client(addr).await;
        let response = send(&mut sender, || connect_request(addr, Some("websocket"), "13")).await;
        assert_eq!(response.status(), StatusCode::OK, "RFC 8441 section 5");
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
        assert!(response.headers().get("sec-websocket-accept").is_none());
        let upgraded = hyper::upgrade::on(response).await.expect("the HTTP/2 stream");
        let mut stream = TokioIo::new(upgraded);
        assert_eq!(*seen.lock().unwrap(), [(true, Some("websocket".to_owned()), "/h2/echo".to_owned())]);

        let mut client =
            Connection::new(Role::Client, Config::default(), std::time::Instant::now()).expect("a client connection");
        client.send_text("hello over HTTP/2").expect("queued");
        client.send_binary(&[1, 2, 3, 255]).expect("queued");
        flush(&mut stream, &mut client).await;
        let Event::Text(text) = next_event(&mut stream, &mut client).await else { panic!("a text echo") };
        assert_eq!(&*text, "hello over HTTP/2");
        let Event::Binary(data) = next_event(&mut stream, &mut client).await else { panic!("a binary echo") };
        assert_eq!(&data[..], [1, 2, 3, 255]);
        assert_eq!(server.connections(), 1);

        client.close(CloseCode::NORMAL, "bye", std::time::Instant::now()).expect("queued");
        flush(&mut stream, &mut client).await;
        let Event::Closed(closed) = next_event(&mut stream, &mut client).await else { panic!("the close") };
        assert!(closed.clean, "{closed:?}");
        assert_eq!(closed.code, CloseCode::NORMAL);
        assert_eq!(server.shutdown(Duration::from_secs(5)).await, 0);
    }

    async fn refuses_bad_extended_connects<T: TestRuntime>() {
        let server = echo_server::<T>(&Seen::default()).await;
        let addr = server.addr();
        let mut sender = h2_client(addr).await;
        let response = send(&mut sender, || connect_request(addr, Some("websocket"), "8")).await;
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        let response = send(&mut sender, || connect_request(addr, Some("webtransport"), "13")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a :protocol other than websocket");
        // A CONNECT without :protocol is a tunnel request (authority-form), not a WebSocket.
        let plain = || {
            hyper::Request::builder()
                .method(Method::CONNECT)
                .version(Version::HTTP_2)
                .uri(addr.to_string())
                .header("sec-websocket-version", "13")
                .body(Empty::new())
                .expect("a request")
        };
        let response = send(&mut sender, plain).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a CONNECT without :protocol");
        let get = || {
            hyper::Request::builder()
                .version(Version::HTTP_2)
                .uri(format!("http://{addr}/h2/echo"))
                .header("sec-websocket-version", "13")
                .body(Empty::new())
                .expect("a request")
        };
        let response = send(&mut sender, get).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "CONNECT");
        assert_eq!(server.shutdown(Duration::from_secs(5)).await, 0);
    }

    fn run<F: Future<Output = ()>>(test: F) {
        AxumRuntime::block_on(false, async {
            tokio::time::timeout(GUARD, test).await.expect("the test finished within its guard");
        });
    }

    #[test]
    fn axum_http2_extended_connect_exchanges_messages() {
        run(exchanges_messages_over_an_http2_stream::<AxumRuntime>());
    }

    #[test]
    fn hyper_http2_extended_connect_exchanges_messages() {
        run(exchanges_messages_over_an_http2_stream::<HyperRuntime>());
    }

    #[test]
    fn axum_http2_bad_extended_connects_get_the_right_status() {
        run(refuses_bad_extended_connects::<AxumRuntime>());
    }

    #[test]
    fn hyper_http2_bad_extended_connects_get_the_right_status() {
        run(refuses_bad_extended_connects::<HyperRuntime>());
    }
}
