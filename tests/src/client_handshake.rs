//! The client's side of the opening handshake through the async layer, on every runtime: what a
//! refusing server said reaches the caller, and a request that cannot work is refused up front
//! with an error that says why.
//!
//! Instantiated per runtime by [`client_handshake_suite!`](crate::client_handshake_suite), on
//! the [`TestRuntime`]s of the main suite.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ferrule::core::handshake::{HandshakeError, HeaderError};
use ferrule::{ClientRequest, Ctx, Error, Handler, HandlerError, Message, Options, OptionsError, Rejection, Request};
use futures_io::{AsyncRead, AsyncWrite};

use crate::suite::{TestRuntime, addr, url};

/// A server that speaks only `chat` and refuses a client that offers no subprotocol with 400.
async fn chat_only_server<T: TestRuntime>() -> T::Server {
    let options = Options::builder().subprotocols(["chat"]).build().expect("valid options");
    T::serve(options, |request: &Request, _: &mut ferrule::Acceptance| {
        if request.subprotocols().is_empty() {
            return Err(Rejection::new(400, "a subprotocol is required"));
        }
        Ok(Silent)
    })
    .await
}

/// A handler that ignores what it receives.
struct Silent;

impl Handler for Silent {
    fn on_message(&mut self, _: &mut Ctx<'_>, _: Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Expands to one `#[test]` per test of this module for the runtime type `$rt`.
#[macro_export]
macro_rules! client_handshake_suite {
    ($rt:ty) => {
        $crate::client_handshake_suite!(@expand $rt;
            client_reports_the_servers_refusal_with_status_headers_and_body,
            client_reads_a_refusal_body_sent_after_the_head_to_the_close,
            client_reports_a_refusal_when_the_server_resets_after_it,
            connect_stream_offers_the_options_subprotocols,
            connect_stream_keeps_the_requests_subprotocols_without_options_ones,
            client_request_refuses_a_subprotocol_that_is_not_a_token,
            tcp_client_request_refuses_wss_saying_to_use_a_tls_stream,
            options_refuse_a_subprotocol_that_is_not_a_token,
            options_refuse_a_subprotocol_given_twice,
        );
    };
    (@expand $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::run::<$rt, _>(false, $crate::client_handshake::$name::<$rt>);
            }
        )*
    };
}

/// A server's side of a connection played back from a script: each read returns the next piece
/// (or error), then the stream ends. What the client writes is swallowed.
pub struct Scripted {
    pieces: VecDeque<io::Result<Vec<u8>>>,
}

impl Scripted {
    /// A stream whose reads return `pieces` in order, then end.
    pub fn new(pieces: impl IntoIterator<Item = io::Result<Vec<u8>>>) -> Self {
        Self { pieces: pieces.into_iter().collect() }
    }
}

impl AsyncRead for Scripted {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.pieces.pop_front() {
            None => Poll::Ready(Ok(0)),
            Some(Err(e)) => Poll::Ready(Err(e)),
            Some(Ok(mut piece)) => {
                let n = piece.len().min(buf.len());
                buf[..n].copy_from_slice(&piece[..n]);
                if n < piece.len() {
                    self.pieces.push_front(Ok(piece.split_off(n)));
                }
                Poll::Ready(Ok(n))
            }
        }
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The client handshake of `ferrule::connect_stream` against a scripted server.
async fn connect_scripted<T: TestRuntime>(script: Scripted) -> Error {
    let request = ClientRequest::new("ws://example.com/").expect("a valid URL");
    match ferrule::connect_stream(T::runtime(), script, request, &Options::default()).await {
        Ok(upgraded) => panic!("expected a refusal, got {upgraded:?}"),
        Err(e) => e,
    }
}

/// The status, reason and body of a refusal.
fn refusal(error: &Error) -> (u16, &str, &[u8]) {
    match error {
        Error::Handshake(HandshakeError::NotSwitchingProtocols { status, reason, body, .. }) => {
            (*status, reason.as_str(), &body[..])
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `on_connect` refuses with 401 and a body: the ferrule client's error carries the status, the
/// reason, the headers and the body, and says all of it in one line.
pub async fn client_reports_the_servers_refusal_with_status_headers_and_body<T: TestRuntime>() {
    let server = T::serve(Options::default(), |_: &Request, _: &mut ferrule::Acceptance| {
        Err::<Silent, _>(Rejection::new(401, "log in first"))
    })
    .await;
    let error = T::connect(&url(addr(&server)), &Options::default()).await.expect_err("a refusal");
    assert_eq!(refusal(&error), (401, "Unauthorized", &b"log in first"[..]));
    let Error::Handshake(HandshakeError::NotSwitchingProtocols { headers, .. }) = &error else { unreachable!() };
    assert_eq!(headers.get("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        error.to_string(),
        "opening handshake failed: server rejected the upgrade with 401 Unauthorized: log in first"
    );
    let debug = format!("{error:?}");
    assert!(debug.contains(r#""Content-Type": "text/plain; charset=utf-8""#), "header values print as text: {debug}");
}

/// A refusal whose body comes in reads after the head and runs to the end of the connection
/// (no `Content-Length`) is reported with the whole body when the stream ends, not as an
/// unexpected end of the stream.
pub async fn client_reads_a_refusal_body_sent_after_the_head_to_the_close<T: TestRuntime>() {
    let script = Scripted::new([
        Ok(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n".to_vec()),
        Ok(b"not ".to_vec()),
        Ok(b"you".to_vec()),
    ]);
    let error = connect_scripted::<T>(script).await;
    assert_eq!(refusal(&error), (403, "Forbidden", &b"not you"[..]));
}

/// A server that resets the connection after its refusal: the client reports the refusal with
/// the body so far, not the reset.
pub async fn client_reports_a_refusal_when_the_server_resets_after_it<T: TestRuntime>() {
    let script = Scripted::new([
        Ok(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 20\r\n\r\nslow".to_vec()),
        Err(io::ErrorKind::ConnectionReset.into()),
    ]);
    let error = connect_scripted::<T>(script).await;
    assert_eq!(refusal(&error), (429, "Too Many Requests", &b"slow"[..]));
}

/// A `wss://` URL given to the plain-TCP connector (`tcp_client_request`, what the adapters'
/// `connect` run without their `tls` feature) is refused before connecting, with a typed error
/// that says to connect a TLS stream and use `connect_stream`.
pub async fn tcp_client_request_refuses_wss_saying_to_use_a_tls_stream<T: TestRuntime>() {
    let request = ClientRequest::new("wss://127.0.0.1:9/").expect("a valid URL");
    let error = ferrule::tcp_client_request(request, &Options::default()).expect_err("refused");
    assert!(matches!(error, Error::Handshake(HandshakeError::TlsRequired)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("TLS connector") && message.contains("connect_stream"), "{message}");
}

/// A subprotocol in the options that is not an HTTP token is refused when the options are
/// built, before anything connects, with a typed error naming it and the option.
pub async fn options_refuse_a_subprotocol_that_is_not_a_token<T: TestRuntime>() {
    let error = Options::builder().subprotocols(["chat v2"]).build().expect_err("refused");
    assert_eq!(error, OptionsError::Subprotocol(HeaderError::InvalidSubprotocol("chat v2".to_owned())));
    let message = error.to_string();
    assert!(message.starts_with("`subprotocols`") && message.contains("\"chat v2\" is not an HTTP token"), "{message}");
}

/// A subprotocol given twice in the options is refused with its own typed error.
pub async fn options_refuse_a_subprotocol_given_twice<T: TestRuntime>() {
    let error = Options::builder().subprotocols(["chat", "chat"]).build().expect_err("refused");
    assert_eq!(error, OptionsError::Subprotocol(HeaderError::DuplicateSubprotocol("chat".to_owned())));
}

/// `connect_stream` (the way to connect over TLS) offers the options' subprotocols, as its
/// documentation says and as `connect` does: a server that requires one accepts the client.
pub async fn connect_stream_offers_the_options_subprotocols<T: TestRuntime>() {
    let server = chat_only_server::<T>().await;
    let options = Options::builder().subprotocols(["chat"]).build().expect("valid options");
    let stream = T::tcp(addr(&server)).await.expect("a TCP connection");
    let request = ClientRequest::new(&url(addr(&server))).expect("a valid URL");
    let upgraded = ferrule::connect_stream(T::runtime(), stream, request, &options).await.expect("accepted");
    assert_eq!(upgraded.subprotocol(), Some("chat"));
    let upgraded = T::connect(&url(addr(&server)), &options).await.expect("accepted");
    assert_eq!(upgraded.subprotocol(), Some("chat"), "connect agrees");
}

/// Without subprotocols in the options, `connect_stream` offers the request's own.
pub async fn connect_stream_keeps_the_requests_subprotocols_without_options_ones<T: TestRuntime>() {
    let server = chat_only_server::<T>().await;
    let stream = T::tcp(addr(&server)).await.expect("a TCP connection");
    let request = ClientRequest::new(&url(addr(&server)))
        .expect("a valid URL")
        .subprotocols(vec!["v2".into(), "chat".into()])
        .expect("valid subprotocols");
    let upgraded = ferrule::connect_stream(T::runtime(), stream, request, &Options::default()).await.expect("accepted");
    assert_eq!(upgraded.subprotocol(), Some("chat"));
}

/// A client request refuses a subprotocol that is not a token, with the same typed error, so
/// `connect_stream` never writes one.
pub async fn client_request_refuses_a_subprotocol_that_is_not_a_token<T: TestRuntime>() {
    let request = ClientRequest::new("ws://example.com/").expect("a valid URL");
    let error = request.subprotocols(vec!["a,b".to_owned()]).expect_err("refused");
    assert_eq!(error, HeaderError::InvalidSubprotocol("a,b".to_owned()));
}
