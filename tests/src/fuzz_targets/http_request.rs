//! Upgrade requests that another HTTP server parsed (`Request::from_http`, core feature `http`),
//! checked by the policy the hyper and axum integrations use.

use ferrule::core::handshake::{Request, Response, accept_key, validate};
use ferrule::{
    Acceptance, DeflateConfig, Error, Options, OriginPattern, OriginPolicy, Rejection, Upgraded, check_upgrade,
};

use super::Reader;
use super::in_memory::{Manual, Pipe};

/// Header names the requests draw from, so that the fuzzer meets the checks behind them quickly;
/// a name byte past them takes its name from the input.
const NAMES: [&str; 10] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "origin",
    "cookie",
    "te",
];

/// Values the requests draw from, likewise.
const VALUES: [&[u8]; 10] = [
    b"websocket",
    b"Upgrade",
    b"dGhlIHNhbXBsZSBub25jZQ==",
    b"13",
    b"chat, superchat",
    b"permessage-deflate; client_max_window_bits",
    b"http://example.com",
    b"example.com",
    b"permessage-deflate; server_no_context_takeover; server_max_window_bits=10, permessage-deflate",
    b"keep-alive, Upgrade",
];

/// An `http::Request` built from the input (method, URI, version including HTTP/2 and HTTP/3,
/// headers with any bytes the `http` crate takes, an extended CONNECT's `:protocol`), read with
/// `Request::from_http` and `from_http_parts`, then decided by [`check_upgrade`] under several
/// server options, as the hyper and axum integrations do, and answered with `to_http`.
///
/// Invariants: both readings agree; an accept is a `101` with the RFC 6455 section 4.2.2
/// `Sec-WebSocket-Accept` of the request's key on HTTP/1.1, a `200` without one (and without
/// connection-specific headers) on HTTP/2 (RFC 8441 section 5), and never on any other version;
/// its negotiated permessage-deflate makes a valid server connection; a refusal is a typed
/// error with a 4xx response; nothing panics.
pub fn http_request(data: &[u8]) {
    let mut input = Reader(data);
    let method = match input.byte() % 6 {
        0 => http::Method::GET,
        1 => http::Method::CONNECT,
        2 => http::Method::POST,
        3 => http::Method::HEAD,
        4 => http::Method::OPTIONS,
        _ => http::Method::from_bytes(input.take_len()).unwrap_or(http::Method::PATCH),
    };
    let version = [
        http::Version::HTTP_11,
        http::Version::HTTP_2,
        http::Version::HTTP_10,
        http::Version::HTTP_09,
        http::Version::HTTP_3,
    ][usize::from(input.byte() % 5)];
    let uri = match input.byte() % 4 {
        0 => http::Uri::from_static("/chat?room=1"),
        1 => http::Uri::from_static("https://example.com/chat"),
        _ => http::Uri::try_from(input.take_len()).unwrap_or_default(),
    };
    let protocol_byte = input.byte();
    let protocol_bytes = input.take_len();
    let protocol = match protocol_byte % 4 {
        0 => None,
        1 => Some("websocket".to_owned()),
        // hyper's `Protocol` is any header-value-like bytes as text.
        _ => Some(String::from_utf8_lossy(protocol_bytes).into_owned()),
    };
    let mut builder = http::Request::builder().method(method).uri(uri).version(version);
    for _ in 0..input.byte() % 16 {
        let (name_byte, value_byte) = (input.byte(), input.byte());
        let (name_bytes, value_bytes) = (input.take_len(), input.take_len());
        let name = match NAMES.get(usize::from(name_byte)) {
            Some(name) => http::HeaderName::from_static(name),
            None => match http::HeaderName::from_bytes(name_bytes) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        let value = match VALUES.get(usize::from(value_byte % 16)) {
            Some(value) if value_byte < 128 => {
                http::HeaderValue::from_static(std::str::from_utf8(value).expect("ASCII"))
            }
            _ => match http::HeaderValue::from_bytes(value_bytes) {
                Ok(value) => value,
                Err(_) => continue,
            },
        };
        builder = builder.header(name, value);
    }
    let Ok(http_request) = builder.body(()) else { return };

    let request = Request::from_http(&http_request, protocol.as_deref());
    let (parts, ()) = http_request.into_parts();
    assert_eq!(Request::from_http_parts(&parts, protocol.as_deref()), request, "both readings agree");
    // The axum extractor's first check, before the options are known.
    let valid = validate(&request);

    let options = [
        Options::default(),
        Options::builder()
            .allowed_origin(OriginPolicy::AllowList(vec![OriginPattern::new("http*://{{host}}")]))
            .subprotocols(["superchat", "chat"])
            .compression(DeflateConfig::default())
            .build()
            .expect("valid options"),
        Options::builder()
            .allowed_origin(OriginPolicy::InsecureAllowAny)
            .compression(DeflateConfig::default().required(true))
            .build()
            .expect("valid options"),
    ];
    let reject = input.byte();
    for options in &options {
        let on_connect = |request: &Request, acceptance: &mut Acceptance| -> Result<(), Rejection> {
            match reject % 4 {
                0 => Err(Rejection::new(403 + u16::from(reject % 2), "no")),
                1 => {
                    // What an application might do: echo the first offered subprotocol.
                    let first = request.subprotocols().first().cloned();
                    let _ = acceptance.set_subprotocol(first.as_deref());
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        match check_upgrade(&request, options, on_connect) {
            Ok((response, ())) => {
                assert!(valid.is_ok(), "accepted what validate refuses: {valid:?}");
                check_accept(&request, version, &response, options);
            }
            Err(refusal) => {
                let status = refusal.response.status();
                match &refusal.error {
                    Error::Handshake(e) => {
                        assert!(matches!(status, 400 | 403 | 405 | 426 | 431 | 505), "{e}: {status}");
                        assert!(!e.to_string().is_empty());
                        if let Err(first) = &valid {
                            assert_eq!(e, first, "the policy fails first on what validate fails on");
                        }
                    }
                    Error::Rejected(rejected) => {
                        assert_eq!(*rejected, status);
                        assert!(reject % 4 == 0 && valid.is_ok());
                    }
                    other => panic!("an untyped refusal: {other}"),
                }
                let http_response = refusal.response.to_http(version);
                assert_eq!(http_response.status().as_u16(), status);
            }
        }
    }
}

/// What an accepted upgrade must look like, and that it makes a server connection.
fn check_accept(request: &Request, version: http::Version, response: &Response, options: &Options) {
    let accept = response.header("Sec-WebSocket-Accept");
    let http_response = response.to_http(version);
    assert_eq!(http_response.version(), version);
    match version {
        http::Version::HTTP_11 => {
            assert_eq!(response.status(), 101);
            let key = request.key().expect("an accepted HTTP/1.1 request has a key");
            assert_eq!(accept, Some(accept_key(key.as_bytes()).as_str()), "RFC 6455 section 4.2.2");
            assert_eq!(http_response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
            assert!(http_response.headers().contains_key(http::header::SEC_WEBSOCKET_ACCEPT));
        }
        http::Version::HTTP_2 => {
            assert_eq!(response.status(), 200, "RFC 8441 section 5");
            assert_eq!(accept, None);
            assert_eq!(http_response.status(), http::StatusCode::OK);
            for name in ["sec-websocket-accept", "connection", "upgrade", "keep-alive", "transfer-encoding"] {
                assert!(!http_response.headers().contains_key(name), "{name} in an HTTP/2 accept");
            }
        }
        other => panic!("accepted on {other:?}"),
    }
    if let Some(p) = response.subprotocol() {
        assert!(request.subprotocols().iter().any(|o| o == p), "{p} was not offered");
    }
    if options.compression().is_some_and(|c| c.required) {
        assert!(response.deflate().is_some(), "compression is required");
    }
    if options.compression().is_none() {
        assert!(response.deflate().is_none(), "compression was not enabled");
    }
    // The connection the integrations then run over the upgraded stream.
    let upgraded = Upgraded::from_stream(Manual, Pipe::new(Vec::new()), response, options);
    assert!(upgraded.is_ok(), "an agreement the connection refuses: {:?}", upgraded.err());
}
