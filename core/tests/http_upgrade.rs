//! Upgrades that another HTTP server parsed, through `Request::from_http` and
//! `Response::to_http`: HTTP/1.1 (RFC 6455 section 4.2) and HTTP/2 extended CONNECT (RFC 8441).
#![cfg(feature = "http")]

use ferrule_core::DeflateConfig;
use ferrule_core::handshake::{HandshakeError, OriginPolicy, Request, ServerPolicy};
use http::{StatusCode, Version};

/// The RFC 6455 section 1.3 example key.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn h1() -> http::request::Builder {
    http::Request::builder()
        .method("GET")
        .uri("/chat")
        .version(Version::HTTP_11)
        .header("host", "example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", KEY)
}

fn h2() -> http::request::Builder {
    http::Request::builder()
        .method("CONNECT")
        .uri("https://example.com/chat?room=1")
        .version(Version::HTTP_2)
        .header("sec-websocket-version", "13")
}

/// The status the default policy answers, sent through `to_http` with the request's version.
fn status(request: http::Request<()>, protocol: Option<&str>) -> (StatusCode, http::Response<bytes::Bytes>) {
    let version = request.version();
    let response = ServerPolicy::default().respond(&Request::from_http(&request, protocol)).to_http(version);
    (response.status(), response)
}

fn error(request: http::Request<()>, protocol: Option<&str>) -> HandshakeError {
    ServerPolicy::default().accept(&Request::from_http(&request, protocol)).expect_err("a refusal")
}

#[test]
fn http1_upgrade_from_http_types_answers_101_with_accept_key() {
    let (status, response) = status(h1().body(()).unwrap(), None);
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert!(response.body().is_empty());
}

#[test]
fn http1_request_keeps_target_headers_and_version() {
    let request = h1().uri("/a?b=c").header("cookie", "x=1").body(()).unwrap();
    let request = Request::from_http(&request, None);
    assert_eq!(request.target(), "/a?b=c");
    assert_eq!(request.query_param("b").as_deref(), Some("c"));
    assert_eq!(request.cookie("x"), Some("1"));
    assert_eq!(request.version(), 1);
    assert!(!request.is_http2());
}

#[test]
fn http1_missing_key_is_400() {
    let mut request = h1().body(()).unwrap();
    request.headers_mut().remove("sec-websocket-key");
    assert_eq!(error(request.clone(), None), HandshakeError::MissingKey);
    assert_eq!(status(request, None).0, StatusCode::BAD_REQUEST);
}

#[test]
fn http1_wrong_websocket_version_is_426_with_version_13() {
    let mut request = h1().body(()).unwrap();
    request.headers_mut().insert("sec-websocket-version", "8".parse().unwrap());
    let (status, response) = status(request, None);
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
}

#[test]
fn http1_post_is_405_allowing_get() {
    let (status, response) = status(h1().method("POST").body(()).unwrap(), None);
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
}

#[test]
fn http10_is_400() {
    let request = h1().version(Version::HTTP_10).body(()).unwrap();
    assert_eq!(error(request.clone(), None), HandshakeError::UnsupportedHttpVersion);
    assert_eq!(status(request, None).0, StatusCode::BAD_REQUEST);
}

#[test]
fn http3_is_400() {
    let request = h2().version(Version::HTTP_3).body(()).unwrap();
    assert_eq!(error(request, Some("websocket")), HandshakeError::UnsupportedHttpVersion);
}

#[test]
fn http1_without_upgrade_header_is_400() {
    let mut request = h1().body(()).unwrap();
    request.headers_mut().remove("upgrade");
    assert_eq!(error(request.clone(), None), HandshakeError::InvalidUpgrade);
    assert_eq!(status(request, None).0, StatusCode::BAD_REQUEST);
}

#[test]
fn http1_refused_origin_is_403() {
    let request = h1().header("origin", "https://evil.example").body(()).unwrap();
    assert_eq!(status(request, None).0, StatusCode::FORBIDDEN);
}

#[test]
fn h2_extended_connect_answers_200_without_key_or_upgrade_headers() {
    let request = h2().header("sec-websocket-protocol", "chat, v2").body(()).unwrap();
    let policy = ServerPolicy::default().subprotocols(vec!["v2".into()]);
    let parsed = Request::from_http(&request, Some("websocket"));
    assert!(parsed.is_http2());
    assert_eq!(parsed.protocol(), Some("websocket"));
    assert_eq!(parsed.host(), Some("example.com"), "the authority stands for Host");
    assert_eq!(parsed.target(), "/chat?room=1");
    let response = policy.accept(&parsed).unwrap();
    assert!(response.is_accept());
    let response = response.to_http(Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["sec-websocket-protocol"], "v2");
    assert!(response.headers().get("sec-websocket-accept").is_none());
    assert!(response.headers().get("upgrade").is_none());
    assert!(response.headers().get("connection").is_none());
}

#[test]
fn h2_extended_connect_negotiates_permessage_deflate() {
    let request =
        h2().header("sec-websocket-extensions", "permessage-deflate; client_max_window_bits").body(()).unwrap();
    let policy = ServerPolicy::default().deflate(Some(DeflateConfig::default()));
    let response = policy.accept(&Request::from_http(&request, Some("websocket"))).unwrap();
    assert!(response.deflate().is_some());
    let response = response.to_http(Version::HTTP_2);
    let answer = response.headers()["sec-websocket-extensions"].to_str().unwrap();
    assert!(answer.starts_with("permessage-deflate"), "{answer}");
}

#[test]
fn h2_connect_without_protocol_is_400() {
    let request = h2().body(()).unwrap();
    assert_eq!(error(request.clone(), None), HandshakeError::InvalidProtocol);
    assert_eq!(status(request, None).0, StatusCode::BAD_REQUEST);
}

#[test]
fn h2_connect_with_other_protocol_is_400() {
    assert_eq!(error(h2().body(()).unwrap(), Some("webtransport")), HandshakeError::InvalidProtocol);
}

#[test]
fn h2_get_is_405_allowing_connect() {
    let (status, response) = status(h2().method("GET").body(()).unwrap(), Some("websocket"));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "CONNECT");
}

#[test]
fn h2_missing_websocket_version_is_400() {
    let mut request = h2().body(()).unwrap();
    request.headers_mut().remove("sec-websocket-version");
    assert_eq!(error(request, Some("websocket")), HandshakeError::MissingVersion);
}

#[test]
fn h2_wrong_websocket_version_is_426_without_connection_specific_headers() {
    let mut request = h2().body(()).unwrap();
    request.headers_mut().insert("sec-websocket-version", "12".parse().unwrap());
    let (status, response) = status(request, Some("websocket"));
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    assert!(response.headers().get("connection").is_none(), "RFC 9113 section 8.2.2");
    assert!(response.headers().get("upgrade").is_none());
    assert!(!response.body().is_empty());
}

#[test]
fn h2_without_authority_or_host_is_400() {
    let request = h2().uri("/chat").body(()).unwrap();
    assert_eq!(error(request, Some("websocket")), HandshakeError::MissingHost);
}

#[test]
fn h2_origin_policy_applies() {
    let request = h2().header("origin", "https://evil.example").body(()).unwrap();
    assert_eq!(error(request.clone(), Some("websocket")), HandshakeError::OriginNotAllowed);
    let request = Request::from_http(&request, Some("websocket"));
    assert!(ServerPolicy::default().origin(OriginPolicy::InsecureAllowAny).accept(&request).is_ok());
}

#[test]
fn h2_malformed_subprotocol_header_is_400() {
    let request = h2().header("sec-websocket-protocol", "a b").body(()).unwrap();
    assert_eq!(error(request, Some("websocket")), HandshakeError::InvalidSubprotocol);
}

mod properties {
    use ferrule_core::DeflateConfig;
    use ferrule_core::handshake::{Request, ServerPolicy};
    use http::{HeaderName, HeaderValue, Method, Version};
    use proptest::prelude::*;

    /// The headers a handshake looks at, and one it does not.
    const NAMES: [&str; 9] = [
        "host",
        "upgrade",
        "connection",
        "sec-websocket-version",
        "sec-websocket-key",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "origin",
        "x-other",
    ];

    fn header() -> impl Strategy<Value = (usize, String)> {
        let value = prop_oneof![
            Just("websocket".to_owned()),
            Just("Upgrade".to_owned()),
            Just("13".to_owned()),
            Just("dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
            Just("permessage-deflate; client_max_window_bits".to_owned()),
            Just("permessage-deflate; server_max_window_bits=7".to_owned()),
            Just("example.com".to_owned()),
            "[ -~]{0,40}",
        ];
        (0..NAMES.len(), value)
    }

    proptest! {
        /// Whatever another server hands over, the answer is an accept or a rejection with one of
        /// the handshake's statuses; on HTTP/2 it never carries a connection-specific header
        /// (RFC 9113 section 8.2.2) and an accept is a 200 (RFC 8441 section 5).
        #[test]
        fn any_request_gets_an_accept_or_a_handshake_status(
            method in prop_oneof![Just(Method::GET), Just(Method::CONNECT), Just(Method::POST)],
            version in prop_oneof![Just(Version::HTTP_10), Just(Version::HTTP_11), Just(Version::HTTP_2)],
            protocol in prop_oneof![Just(None), Just(Some("websocket")), Just(Some("other"))],
            headers in proptest::collection::vec(header(), 0..12),
        ) {
            let mut request = http::Request::builder()
                .method(method)
                .version(version)
                .uri("http://example.com/chat")
                .body(())
                .unwrap();
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    request.headers_mut().append(HeaderName::from_static(NAMES[name]), value);
                }
            }
            let policy = ServerPolicy::default().deflate(Some(DeflateConfig::default()));
            let response = policy.respond(&Request::from_http(&request, protocol)).to_http(version);
            let status = response.status().as_u16();
            prop_assert!([101, 200, 400, 403, 405, 426].contains(&status), "{status}");
            if version == Version::HTTP_2 {
                prop_assert!(status != 101);
                prop_assert!(response.headers().get("connection").is_none());
                prop_assert!(response.headers().get("upgrade").is_none());
            } else {
                prop_assert!(status != 200);
            }
        }
    }
}
