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
    use ferrule_core::{
        CloseCode, Config, Connection, DeflateConfig, DeflateParams, Event, FrameHeader, OpCode, PerMessageDeflate,
        Role,
    };
    use ferrule_tests::Echo;
    use ferrule_tests::suite::{TestRuntime, TestServer};
    use ferrule_tokio::{Acceptance, Message, Options, OriginPolicy, Request};
    use http_body_util::Empty;
    use hyper::http::{Method, StatusCode, Version};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::servers::{AxumRuntime, HyperRuntime};

    /// A generous guard against a hang; the tests wait for the events themselves.
    const GUARD: Duration = Duration::from_secs(60);

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
        next_event_recorded(stream, client, &mut Vec::new()).await
    }

    /// [`next_event`], keeping the bytes read in `wire`.
    async fn next_event_recorded<S: tokio::io::AsyncRead + Unpin>(
        stream: &mut S,
        client: &mut Connection,
        wire: &mut Vec<u8>,
    ) -> Event {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(event) = client.poll_event() {
                return event;
            }
            let n = stream.read(&mut buf).await.expect("a read");
            if n == 0 {
                client.handle_eof(std::time::Instant::now());
            } else {
                wire.extend_from_slice(&buf[..n]);
                client.handle_input(&buf[..n], std::time::Instant::now()).expect("valid frames");
            }
        }
    }

    /// Writes the client's close frame. The server answers it and then ends the HTTP/2 stream,
    /// which hyper does with RST_STREAM(NO_ERROR) while the client's half is still open (RFC 9113
    /// section 8.1: the response is complete); that reset can overtake this flush, so a flush
    /// error is no failure here. The close's arrival and its answer are what the caller checks.
    async fn send_close<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, client: &mut Connection) {
        write_transmit(stream, client, &mut Vec::new()).await;
        let _ = stream.flush().await;
    }

    /// Writes everything the client queued, keeping the bytes written in `wire`.
    async fn write_transmit<S: tokio::io::AsyncWrite + Unpin>(
        stream: &mut S,
        client: &mut Connection,
        wire: &mut Vec<u8>,
    ) {
        while let Some(bytes) = client.poll_transmit() {
            let n = bytes.len();
            wire.extend_from_slice(bytes);
            stream.write_all(bytes).await.expect("a write");
            client.advance_transmit(n);
        }
    }

    async fn flush<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, client: &mut Connection) {
        flush_recorded(stream, client, &mut Vec::new()).await;
    }

    /// [`flush`], keeping the bytes written in `wire`.
    async fn flush_recorded<S: tokio::io::AsyncWrite + Unpin>(
        stream: &mut S,
        client: &mut Connection,
        wire: &mut Vec<u8>,
    ) {
        write_transmit(stream, client, wire).await;
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
        send_close(&mut stream, &mut client).await;
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

    /// How the two ends keep their compression context in [`exchanges_compressed_messages`].
    #[derive(Clone, Copy, PartialEq)]
    enum Context {
        /// Both keep it between messages (RFC 7692 section 7.1.1 parameters absent).
        Kept,
        /// Both start each message afresh (`server_no_context_takeover`, section 7.1.1.1, and
        /// `client_no_context_takeover`, section 7.1.1.2).
        Dropped,
    }

    /// Per data message on `wire` (a stream of whole frames): whether its first frame has RSV1
    /// (compressed, RFC 7692 section 6) and its payload bytes on the wire, all frames together.
    fn messages_on_wire(mut wire: &[u8]) -> Vec<(bool, usize)> {
        let mut messages: Vec<(bool, usize)> = Vec::new();
        while let Some((header, len)) = FrameHeader::decode(wire).expect("valid frames") {
            let payload = usize::try_from(header.payload_len).expect("a small frame");
            match header.opcode {
                OpCode::Text | OpCode::Binary => messages.push((header.rsv & 0b100 != 0, payload)),
                OpCode::Continuation => {
                    assert_eq!(header.rsv, 0, "RSV1 only on a message's first frame (section 6.1)");
                    messages.last_mut().expect("a message to continue").1 += payload;
                }
                _ => {}
            }
            wire = &wire[len + payload..];
        }
        assert!(wire.is_empty(), "whole frames");
        messages
    }

    /// 1500 printable bytes that deflate cannot shrink much on their own, from a fixed seed.
    fn noisy_text() -> String {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..1500)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'!' + (state % 90) as u8)
            })
            .collect()
    }

    /// permessage-deflate (RFC 7692) on an HTTP/2 stream (RFC 8441): the client offers it in the
    /// extended CONNECT, the server agrees in its `200`, and messages small and large, text and
    /// binary, go both ways compressed (RSV1 set, fewer bytes on the wire than in the message)
    /// and come back intact; with `Context::Kept` a repeated message costs next to nothing the
    /// second time, with `Context::Dropped` exactly as much as the first.
    async fn exchanges_compressed_messages<T: TestRuntime>(context: Context) {
        let kept = context == Context::Kept;
        let options = Options::builder()
            .allowed_origin(OriginPolicy::InsecureAllowAny)
            .compression(DeflateConfig::default().server_no_context_takeover(!kept))
            .build()
            .expect("valid options");
        let server = T::serve(options, |_: &Request, _: &mut Acceptance| Ok(Echo)).await;
        let addr = server.addr();
        let (offer, answer, params) = if kept {
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
                DeflateParams::default().server_max_window_bits(12).client_max_window_bits(12),
            )
        } else {
            (
                "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
                DeflateParams::default()
                    .server_no_context_takeover(true)
                    .client_no_context_takeover(true)
                    .server_max_window_bits(12),
            )
        };
        let mut sender = h2_client(addr).await;
        let request = || {
            let mut request = connect_request(addr, Some("websocket"), "13");
            request.headers_mut().insert("sec-websocket-extensions", offer.parse().expect("a header value"));
            request
        };
        let response = send(&mut sender, request).await;
        assert_eq!(response.status(), StatusCode::OK, "RFC 8441 section 5");
        assert_eq!(response.headers()["sec-websocket-extensions"], answer, "RFC 7692 section 7.1");
        assert!(response.headers().get("sec-websocket-accept").is_none());
        let mut stream = TokioIo::new(hyper::upgrade::on(response).await.expect("the HTTP/2 stream"));

        let deflate = PerMessageDeflate::new(params, DeflateConfig::default().client_no_context_takeover(!kept))
            .expect("valid parameters");
        let mut client =
            Connection::with_deflate(Role::Client, Config::default(), Some(deflate), std::time::Instant::now())
                .expect("a client connection");
        let noisy = noisy_text();
        let messages = [
            Message::from("hi"),
            Message::from("all work and no play makes a dull stream. ".repeat(6_000)),
            Message::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
            Message::from(noisy.clone()),
            Message::from(noisy),
        ];
        let (mut sent, mut received) = (Vec::new(), Vec::new());
        for message in &messages {
            match message {
                Message::Text(text) => client.send_text(text.as_str()),
                Message::Binary(data) => client.send_binary(data),
            }
            .expect("queued");
            flush_recorded(&mut stream, &mut client, &mut sent).await;
        }
        for message in &messages {
            let echo = match next_event_recorded(&mut stream, &mut client, &mut received).await {
                Event::Text(text) => Message::Text(text),
                Event::Binary(data) => Message::Binary(data),
                other => panic!("an echo, got {other:?}"),
            };
            assert!(echo == *message, "the echo of a {}-byte message differs", message.len());
        }

        for (direction, wire) in [("client to server", &sent), ("server to client", &received)] {
            let on_wire = messages_on_wire(wire);
            assert_eq!(on_wire.len(), messages.len(), "{direction}");
            // Below `min_compress_size` (64 bytes) a message goes as it is.
            assert_eq!(on_wire[0], (false, 2), "{direction}");
            for (i, (rsv1, bytes)) in on_wire.iter().enumerate().skip(1) {
                assert!(rsv1, "{direction}: message {i} is compressed");
                assert!(*bytes < messages[i].len(), "{direction}: message {i}: {bytes} bytes on the wire");
            }
            assert!(on_wire[1].1 < messages[1].len() / 50, "{direction}: {} bytes", on_wire[1].1);
            let (first, again) = (on_wire[3].1, on_wire[4].1);
            if kept {
                assert!(again < first / 10, "{direction}: the context makes the repeat cheap: {first} then {again}");
            } else {
                assert_eq!(again, first, "{direction}: without context the repeat costs the same");
            }
        }

        client.close(CloseCode::NORMAL, "bye", std::time::Instant::now()).expect("queued");
        send_close(&mut stream, &mut client).await;
        let Event::Closed(closed) = next_event(&mut stream, &mut client).await else { panic!("the close") };
        assert!(closed.clean, "{closed:?}");
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

    #[test]
    fn axum_http2_extended_connect_exchanges_compressed_messages_with_context() {
        run(exchanges_compressed_messages::<AxumRuntime>(Context::Kept));
    }

    #[test]
    fn axum_http2_extended_connect_exchanges_compressed_messages_without_context() {
        run(exchanges_compressed_messages::<AxumRuntime>(Context::Dropped));
    }

    #[test]
    fn hyper_http2_extended_connect_exchanges_compressed_messages_with_context() {
        run(exchanges_compressed_messages::<HyperRuntime>(Context::Kept));
    }

    #[test]
    fn hyper_http2_extended_connect_exchanges_compressed_messages_without_context() {
        run(exchanges_compressed_messages::<HyperRuntime>(Context::Dropped));
    }
}
