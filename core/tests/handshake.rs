//! The opening handshake (RFC 6455 section 4): every rejection path, bounded incremental parsing,
//! timeouts, leftover bytes, and a full client -> server -> client round trip.

/// Wraps every test so that `cargo test handshake` selects them all by name.
mod handshake {
    use std::time::{Duration, Instant};

    use ferrule_core::Config;
    use ferrule_core::Entropy;
    use ferrule_core::handshake::{
        ClientHandshake, ClientRequest, ClientResponse, HandshakeError, Limits, OriginPattern, OriginPolicy, Request,
        Response, ServerHandshake, ServerPolicy, accept_key,
    };
    use proptest::prelude::*;

    /// The example request of RFC 6455 section 1.2, minus the Origin (so any policy accepts it).
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn good_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    }

    /// [`good_headers`] and then `fillers` lines of `X-Filler: 1`.
    fn good_headers_and_fillers(fillers: usize) -> Vec<(&'static str, &'static str)> {
        let mut headers = good_headers();
        headers.extend(std::iter::repeat_n(("X-Filler", "1"), fillers));
        headers
    }

    fn head(request_line: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("{request_line}\r\n");
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The good request with header `name` replaced by `value` (or removed when `None`).
    fn with_header(name: &str, value: Option<&'static str>) -> Vec<u8> {
        let mut headers = good_headers();
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            headers.push((Box::leak(name.to_owned().into_boxed_str()), value));
        }
        head("GET /chat HTTP/1.1", &headers)
    }

    fn parse_request(bytes: &[u8]) -> Request {
        let mut server = ServerHandshake::new(Limits::default(), Instant::now());
        server.handle_input(bytes).expect("parses").expect("complete")
    }

    /// The 101 the default policy sends for the good request.
    fn accepted() -> Response {
        respond(&with_header("Origin", None))
    }

    /// Runs the default policy and returns the response to send.
    fn respond(bytes: &[u8]) -> Response {
        ServerPolicy::default().respond(&parse_request(bytes))
    }

    fn expect_rejection(bytes: &[u8], error: HandshakeError, status: u16) -> Response {
        let request = parse_request(bytes);
        assert_eq!(ServerPolicy::default().accept(&request), Err(error.clone()));
        let response = ServerPolicy::default().respond(&request);
        assert_eq!(response.status(), status);
        assert_eq!(Some(&response), error.response().as_ref());
        let connection = if status == 426 { "Upgrade, close" } else { "close" };
        assert_eq!(response.header("Connection"), Some(connection));
        assert_eq!(response.header("Content-Type"), Some("text/plain; charset=utf-8"));
        assert_eq!(response.header("Content-Length"), Some(response.body().len().to_string().as_str()));
        assert!(!response.body().is_empty());
        response
    }

    // ---- server: accept -------------------------------------------------------------------------

    #[test]
    fn server_accepts_rfc6455_example_with_101_and_accept_key() {
        let response = respond(&with_header("Origin", Some("http://server.example.com")));
        assert!(response.is_accept());
        assert_eq!(response.status(), 101);
        assert_eq!(response.reason(), "Switching Protocols");
        assert_eq!(response.header("upgrade"), Some("websocket"));
        assert_eq!(response.header("connection"), Some("Upgrade"));
        assert_eq!(response.header("Sec-WebSocket-Accept"), Some(ACCEPT));
        assert_eq!(response.subprotocol(), None);
        assert_eq!(response.header("Sec-WebSocket-Extensions"), None);
        assert_eq!(
            response.to_bytes(),
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
            )
            .into_bytes()
        );
    }

    #[test]
    fn server_accepts_token_lists_case_insensitively() {
        let mut headers = good_headers();
        headers.retain(|(n, _)| *n != "Upgrade" && *n != "Connection");
        headers.push(("upgrade", "h2c, WebSocket"));
        headers.push(("CONNECTION", "keep-alive, Upgrade"));
        assert!(respond(&head("GET / HTTP/1.1", &headers)).is_accept());
        // Tokens may also be spread over repeated headers.
        headers.retain(|(n, _)| *n != "CONNECTION");
        headers.push(("Connection", "keep-alive"));
        headers.push(("Connection", "upgrade"));
        assert!(respond(&head("GET / HTTP/1.1", &headers)).is_accept());
    }

    #[test]
    fn server_accept_selects_first_server_preferred_subprotocol() {
        let request = parse_request(&with_header("Sec-WebSocket-Protocol", Some("a, b, c")));
        assert_eq!(request.subprotocols(), ["a", "b", "c"]);
        let policy = ServerPolicy::default().subprotocols(vec!["x".into(), "c".into(), "b".into()]);
        let response = policy.accept(&request).unwrap();
        assert_eq!(response.subprotocol(), Some("c"));
        assert_eq!(response.header("Sec-WebSocket-Protocol"), Some("c"));
    }

    #[test]
    fn server_accept_without_subprotocol_overlap_selects_none() {
        let request = parse_request(&with_header("Sec-WebSocket-Protocol", Some("a")));
        let policy = ServerPolicy::default().subprotocols(vec!["b".into()]);
        let response = policy.accept(&request).unwrap();
        assert!(response.is_accept());
        assert_eq!(response.subprotocol(), None);
    }

    #[test]
    fn server_accept_declines_extension_offers() {
        let request =
            parse_request(&with_header("Sec-WebSocket-Extensions", Some("permessage-deflate; client_max_window_bits")));
        assert_eq!(request.extensions().len(), 1);
        assert_eq!(request.extensions()[0].name(), "permessage-deflate");
        let response = ServerPolicy::default().accept(&request).unwrap();
        assert_eq!(response.header("Sec-WebSocket-Extensions"), None);
    }

    #[test]
    fn server_request_accessors_read_the_head() {
        let mut headers = good_headers();
        headers.push(("Origin", "http://server.example.com"));
        let request = parse_request(&head("GET /chat?room=1 HTTP/1.1", &headers));
        assert_eq!(request.method(), "GET");
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=1"));
        assert_eq!(request.host(), Some("server.example.com"));
        assert_eq!(request.origin(), Some("http://server.example.com"));
        assert_eq!(request.key(), Some(KEY));
        assert_eq!(request.header("sec-websocket-version"), Some("13"));
    }

    #[test]
    fn server_response_is_editable_before_sending() {
        let mut response = respond(&with_header("Sec-WebSocket-Protocol", Some("chat")));
        response.set_subprotocol(Some("chat")).unwrap();
        response.insert_header("Set-Cookie", "a=b").unwrap();
        assert!(response.insert_header("Set-Cookie", "a=b\r\nX: y").is_err());
        let bytes = String::from_utf8(response.to_bytes()).unwrap();
        assert!(bytes.contains("\r\nSec-WebSocket-Protocol: chat\r\nSet-Cookie: a=b\r\n\r\n"), "{bytes}");
    }

    // ---- server: rejections ---------------------------------------------------------------------

    #[test]
    fn server_rejects_post_with_405_and_allow_get() {
        let response =
            expect_rejection(&head("POST /chat HTTP/1.1", &good_headers()), HandshakeError::MethodNotGet, 405);
        assert_eq!(response.header("Allow"), Some("GET"));
        assert_eq!(response.reason(), "Method Not Allowed");
    }

    #[test]
    fn server_rejects_lowercase_get_with_405() {
        let response =
            expect_rejection(&head("get /chat HTTP/1.1", &good_headers()), HandshakeError::MethodNotGet, 405);
        assert_eq!(response.header("Allow"), Some("GET"));
    }

    #[test]
    fn server_rejects_http_1_0_with_400() {
        expect_rejection(&head("GET /chat HTTP/1.0", &good_headers()), HandshakeError::UnsupportedHttpVersion, 400);
    }

    #[test]
    fn server_rejects_missing_host_with_400() {
        expect_rejection(&with_header("Host", None), HandshakeError::MissingHost, 400);
    }

    #[test]
    fn server_rejects_empty_host_with_400() {
        expect_rejection(&with_header("Host", Some("")), HandshakeError::MissingHost, 400);
    }

    #[test]
    fn server_rejects_duplicate_host_with_400() {
        let mut headers = good_headers();
        headers.push(("host", "evil.example.com"));
        expect_rejection(&head("GET / HTTP/1.1", &headers), HandshakeError::DuplicateHeader("Host"), 400);
    }

    #[test]
    fn server_rejects_missing_upgrade_with_400() {
        expect_rejection(&with_header("Upgrade", None), HandshakeError::InvalidUpgrade, 400);
    }

    #[test]
    fn server_rejects_upgrade_without_websocket_token_with_400() {
        expect_rejection(&with_header("Upgrade", Some("h2c")), HandshakeError::InvalidUpgrade, 400);
        expect_rejection(&with_header("Upgrade", Some("websockets")), HandshakeError::InvalidUpgrade, 400);
    }

    #[test]
    fn server_rejects_missing_connection_upgrade_with_400() {
        expect_rejection(&with_header("Connection", None), HandshakeError::MissingConnectionUpgrade, 400);
        expect_rejection(&with_header("Connection", Some("keep-alive")), HandshakeError::MissingConnectionUpgrade, 400);
    }

    #[test]
    fn server_rejects_missing_version_with_400() {
        let response =
            expect_rejection(&with_header("Sec-WebSocket-Version", None), HandshakeError::MissingVersion, 400);
        assert_eq!(response.header("Sec-WebSocket-Version"), None);
    }

    #[test]
    fn server_rejects_version_8_with_426_and_version_13() {
        let response =
            expect_rejection(&with_header("Sec-WebSocket-Version", Some("8")), HandshakeError::UnsupportedVersion, 426);
        assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
        assert_eq!(response.reason(), "Upgrade Required");
        assert_eq!(response.header("Upgrade"), Some("websocket"));
    }

    #[test]
    fn server_rejects_non_numeric_version_with_426() {
        let response = expect_rejection(
            &with_header("Sec-WebSocket-Version", Some("13, 8")),
            HandshakeError::UnsupportedVersion,
            426,
        );
        assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
    }

    #[test]
    fn server_rejects_missing_key_with_400() {
        expect_rejection(&with_header("Sec-WebSocket-Key", None), HandshakeError::MissingKey, 400);
    }

    #[test]
    fn server_rejects_key_not_base64_of_16_bytes_with_400() {
        for key in [
            "",
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ",     // padding missing
            "dGhlIHNhbXBsZSBub25j",       // 15 bytes
            "dGhlIHNhbXBsZSBub25jZT8h",   // 18 bytes
            "dGhlIHNhbXBsZSBub25jZQ==AA", // trailing data
            "dGhlIHNhbXBsZSBub25jZQ!=",   // not base64
            "dGhlIHNhbXBsZSBub25jZR==",   // non-canonical trailing bits
        ] {
            let request = with_header("Sec-WebSocket-Key", Some(Box::leak(key.to_owned().into_boxed_str())));
            expect_rejection(&request, HandshakeError::InvalidKey, 400);
        }
    }

    #[test]
    fn server_rejects_duplicate_key_with_400() {
        let mut headers = good_headers();
        headers.push(("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="));
        expect_rejection(&head("GET / HTTP/1.1", &headers), HandshakeError::DuplicateHeader("Sec-WebSocket-Key"), 400);
    }

    #[test]
    fn server_rejects_malformed_subprotocol_list_with_400() {
        expect_rejection(
            &with_header("Sec-WebSocket-Protocol", Some("chat, a b")),
            HandshakeError::InvalidSubprotocol,
            400,
        );
    }

    #[test]
    fn server_rejects_malformed_extensions_with_400() {
        for bad in ["", "permessage-deflate;", "x; a=\"b c\"", "x y"] {
            let request = with_header("Sec-WebSocket-Extensions", Some(Box::leak(bad.to_owned().into_boxed_str())));
            expect_rejection(&request, HandshakeError::InvalidExtensions, 400);
        }
    }

    #[test]
    fn server_rejects_malformed_request_with_400() {
        let mut server = ServerHandshake::new(Limits::default(), Instant::now());
        let error = server.handle_input(b"GET /chat HTTP/1.1\r\nBad Header: x\r\n\r\n").unwrap_err();
        assert!(matches!(error, HandshakeError::MalformedRequest(_)), "{error:?}");
        assert_eq!(error.response().unwrap().status(), 400);
        let mut server = ServerHandshake::new(Limits::default(), Instant::now());
        let error = server.handle_input(b"GET /chat HTTP/2.0\r\n\r\n").unwrap_err();
        assert!(matches!(error, HandshakeError::MalformedRequest(_)), "{error:?}");
    }

    // ---- server: origin -------------------------------------------------------------------------

    fn origin_response(policy: OriginPolicy, origin: Option<&'static str>, host: &'static str) -> Response {
        let mut headers = good_headers();
        headers.retain(|(n, _)| *n != "Host");
        headers.push(("Host", host));
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        ServerPolicy::default().origin(policy).respond(&parse_request(&head("GET / HTTP/1.1", &headers)))
    }

    #[test]
    fn server_same_origin_accepts_matching_origin() {
        let response = origin_response(OriginPolicy::SameOrigin, Some("https://Example.com"), "example.com");
        assert_eq!(response.status(), 101);
        let response = origin_response(OriginPolicy::SameOrigin, Some("http://example.com:8080"), "EXAMPLE.com:8080");
        assert_eq!(response.status(), 101);
    }

    #[test]
    fn server_same_origin_rejects_cross_origin_with_403() {
        let response = origin_response(OriginPolicy::SameOrigin, Some("https://evil.example"), "example.com");
        assert_eq!(response.status(), 403);
        assert_eq!(response.reason(), "Forbidden");
        let response = origin_response(OriginPolicy::SameOrigin, Some("http://example.com:8080"), "example.com");
        assert_eq!(response.status(), 403);
    }

    #[test]
    fn server_same_origin_rejects_origin_null_with_403() {
        assert_eq!(origin_response(OriginPolicy::SameOrigin, Some("null"), "example.com").status(), 403);
    }

    #[test]
    fn server_accepts_missing_origin_under_every_policy() {
        for policy in [
            OriginPolicy::SameOrigin,
            OriginPolicy::AllowList(vec![OriginPattern::new("https://only.example")]),
            OriginPolicy::InsecureAllowAny,
        ] {
            assert_eq!(origin_response(policy, None, "example.com").status(), 101);
        }
    }

    #[test]
    fn server_allow_list_accepts_wildcard_and_host_patterns() {
        let policy = OriginPolicy::AllowList(vec![
            OriginPattern::new("https://*.example.com"),
            OriginPattern::new("http*://{{host}}"),
        ]);
        assert_eq!(origin_response(policy.clone(), Some("https://app.example.com"), "api.other").status(), 101);
        assert_eq!(origin_response(policy.clone(), Some("http://api.other:81"), "api.other:81").status(), 101);
        assert_eq!(origin_response(policy.clone(), Some("HTTPS://API.OTHER"), "api.other").status(), 101);
    }

    #[test]
    fn server_allow_list_rejects_other_origins_with_403() {
        let policy = OriginPolicy::AllowList(vec![
            OriginPattern::new("https://*.example.com"),
            OriginPattern::new("http*://{{host}}"),
        ]);
        for origin in ["https://example.com", "https://evil.com/.example.com", "https://api.other:81", "null"] {
            assert_eq!(origin_response(policy.clone(), Some(origin), "api.other").status(), 403, "{origin}");
        }
    }

    #[test]
    fn server_insecure_allow_any_accepts_any_origin() {
        assert_eq!(origin_response(OriginPolicy::InsecureAllowAny, Some("null"), "example.com").status(), 101);
        assert_eq!(origin_response(OriginPolicy::InsecureAllowAny, Some("https://evil"), "example.com").status(), 101);
    }

    #[test]
    fn server_rejects_duplicate_origin_with_400() {
        let mut headers = good_headers();
        headers.push(("Origin", "http://server.example.com"));
        headers.push(("Origin", "http://evil.example"));
        let request = parse_request(&head("GET / HTTP/1.1", &headers));
        let error = ServerPolicy::default().accept(&request).unwrap_err();
        assert_eq!(error, HandshakeError::DuplicateHeader("Origin"));
        assert_eq!(error.response().unwrap().status(), 400);
    }

    // ---- server: incremental parsing, limits, timeout, leftover ---------------------------------

    #[test]
    fn server_byte_at_a_time_equals_whole() {
        let bytes = with_header("Sec-WebSocket-Protocol", Some("a, b"));
        let whole = parse_request(&bytes);
        let mut server = ServerHandshake::new(Limits::default(), Instant::now());
        let mut result = None;
        for (i, byte) in bytes.iter().enumerate() {
            let out = server.handle_input(std::slice::from_ref(byte)).unwrap();
            assert_eq!(out.is_some(), i == bytes.len() - 1, "byte {i}");
            result = result.or(out);
        }
        assert_eq!(result.unwrap(), whole);
    }

    #[test]
    fn server_returns_leftover_after_head_intact() {
        let frames = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\r\n\r\nmore";
        let mut bytes = with_header("Origin", None);
        bytes.extend_from_slice(frames);
        let now = Instant::now();
        let mut server = ServerHandshake::new(Limits::default(), now);
        assert!(server.handle_input(&bytes).unwrap().is_some());
        // Input after the request is kept too.
        assert_eq!(server.handle_input(b"tail").unwrap(), None);
        let (_connection, leftover) = server.into_connection(&accepted(), Config::default(), now).unwrap();
        assert_eq!(&leftover[..], [&frames[..], b"tail"].concat());
    }

    #[test]
    fn server_returns_leftover_when_fed_byte_at_a_time() {
        let mut bytes = with_header("Origin", None);
        let head_len = bytes.len();
        bytes.extend_from_slice(b"\x89\x80abcd");
        let now = Instant::now();
        let mut server = ServerHandshake::new(Limits::default(), now);
        for (i, byte) in bytes.iter().enumerate() {
            let out = server.handle_input(std::slice::from_ref(byte)).unwrap();
            assert_eq!(out.is_some(), i == head_len - 1);
        }
        let (_connection, leftover) = server.into_connection(&accepted(), Config::default(), now).unwrap();
        assert_eq!(&leftover[..], b"\x89\x80abcd");
    }

    #[test]
    fn server_leftover_may_exceed_header_cap() {
        let bytes = with_header("Origin", None);
        let limits = Limits::default().max_header_bytes(bytes.len());
        let mut input = bytes.clone();
        input.extend_from_slice(&[0xAB; 1000]);
        let now = Instant::now();
        let mut server = ServerHandshake::new(limits, now);
        assert!(server.handle_input(&input).unwrap().is_some());
        let (_connection, leftover) = server.into_connection(&accepted(), Config::default(), now).unwrap();
        assert_eq!(leftover.len(), 1000);
    }

    #[test]
    fn server_head_exactly_at_cap_is_accepted() {
        let bytes = with_header("Origin", None);
        let mut server = ServerHandshake::new(Limits::default().max_header_bytes(bytes.len()), Instant::now());
        assert!(server.handle_input(&bytes).unwrap().is_some());
        let mut server = ServerHandshake::new(Limits::default().max_header_bytes(bytes.len() - 1), Instant::now());
        assert_eq!(server.handle_input(&bytes).unwrap_err(), HandshakeError::HeadersTooLarge);
    }

    #[test]
    fn server_header_bytes_over_cap_gives_431_without_buffering_past_cap() {
        let limits = Limits::default().max_header_bytes(256);
        let mut server = ServerHandshake::new(limits, Instant::now());
        assert_eq!(server.handle_input(b"GET / HTTP/1.1\r\nX-Big: ").unwrap(), None);
        let mut error = None;
        for _ in 0..1000 {
            match server.handle_input(b"aaaaaaaaaa") {
                Ok(None) => assert!(server.buffered_len() <= 256),
                Ok(Some(_)) => panic!("no head can complete"),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let error = error.expect("fails once the cap is crossed");
        assert_eq!(error, HandshakeError::HeadersTooLarge);
        let response = error.response().unwrap();
        assert_eq!(response.status(), 431);
        assert_eq!(response.reason(), "Request Header Fields Too Large");
        assert_eq!(server.buffered_len(), 0);
    }

    #[test]
    fn server_header_bytes_over_cap_in_one_chunk_gives_431() {
        let mut server = ServerHandshake::new(Limits::default(), Instant::now());
        let mut bytes = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', 100_000));
        bytes.extend_from_slice(b"\r\n\r\n");
        assert_eq!(server.handle_input(&bytes).unwrap_err(), HandshakeError::HeadersTooLarge);
    }

    #[test]
    fn server_header_count_over_cap_gives_431() {
        let headers = good_headers_and_fillers(10);
        let bytes = head("GET / HTTP/1.1", &headers);
        let mut server = ServerHandshake::new(Limits::default().max_headers(headers.len() - 1), Instant::now());
        let error = server.handle_input(&bytes).unwrap_err();
        assert_eq!(error, HandshakeError::TooManyHeaders);
        assert_eq!(error.response().unwrap().status(), 431);
        let mut server = ServerHandshake::new(Limits::default().max_headers(headers.len()), Instant::now());
        assert!(server.handle_input(&bytes).unwrap().is_some());
    }

    #[test]
    fn server_parses_more_header_lines_than_fit_on_the_stack_whole_and_in_pieces() {
        let headers = good_headers_and_fillers(50);
        let bytes = head("GET / HTTP/1.1", &headers);
        for piece in [bytes.len(), 1, 7] {
            let mut server = ServerHandshake::new(Limits::default(), Instant::now());
            let mut parsed = None;
            for chunk in bytes.chunks(piece) {
                if let Some(request) = server.handle_input(chunk).unwrap() {
                    parsed = Some(request);
                }
            }
            let request = parsed.expect("the whole head arrived");
            assert_eq!(request.headers().count(), headers.len());
            assert_eq!(request.headers().filter(|(name, value)| *name == "X-Filler" && *value == b"1").count(), 50);
        }
    }

    #[test]
    fn server_huge_header_count_limit_costs_no_memory() {
        let limits = Limits::default().max_headers(usize::MAX);
        let mut server = ServerHandshake::new(limits, Instant::now());
        assert!(server.handle_input(&with_header("Origin", None)).unwrap().is_some());
    }

    #[test]
    fn server_errors_are_sticky() {
        let mut server = ServerHandshake::new(Limits::default(), Instant::now());
        let error = server.handle_input(b"GET / HTTP/1.1\r\n\0\r\n\r\n").unwrap_err();
        assert_eq!(server.handle_input(&with_header("Origin", None)).unwrap_err(), error);
        assert_eq!(server.poll_timeout(), None);
    }

    #[test]
    fn server_timeout_gives_408_and_tolerates_repeated_calls() {
        let start = Instant::now();
        let mut server = ServerHandshake::new(Limits::default().timeout(Some(Duration::from_secs(10))), start);
        assert_eq!(server.poll_timeout(), Some(start + Duration::from_secs(10)));
        assert_eq!(server.handle_input(b"GET / HTTP/1.1\r\n").unwrap(), None);
        // Early calls do nothing.
        assert_eq!(server.handle_timeout(start), Ok(()));
        assert_eq!(server.handle_timeout(start + Duration::from_secs(9)), Ok(()));
        // At and after the deadline: a timeout, again and again.
        let error = server.handle_timeout(start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(error, HandshakeError::Timeout);
        let response = error.response().unwrap();
        assert_eq!(response.status(), 408);
        assert_eq!(response.reason(), "Request Timeout");
        assert_eq!(server.handle_timeout(start + Duration::from_secs(30)), Err(HandshakeError::Timeout));
        assert_eq!(server.handle_timeout(start), Err(HandshakeError::Timeout));
        assert_eq!(server.handle_input(b"Host: x\r\n\r\n"), Err(HandshakeError::Timeout));
        assert_eq!(server.poll_timeout(), None);
    }

    #[test]
    fn server_timeout_after_complete_request_is_ignored() {
        let start = Instant::now();
        let mut server = ServerHandshake::new(Limits::default(), start);
        assert!(server.handle_input(&with_header("Origin", None)).unwrap().is_some());
        assert_eq!(server.poll_timeout(), None);
        assert_eq!(server.handle_timeout(start + Duration::from_secs(3600)), Ok(()));
    }

    #[test]
    fn server_without_timeout_never_times_out() {
        let start = Instant::now();
        let mut server = ServerHandshake::new(Limits::default().timeout(None), start);
        assert_eq!(server.poll_timeout(), None);
        assert_eq!(server.handle_timeout(start + Duration::from_secs(1 << 30)), Ok(()));
    }

    #[test]
    fn server_huge_timeout_does_not_overflow() {
        let start = Instant::now();
        let server = ServerHandshake::new(Limits::default().timeout(Some(Duration::MAX)), start);
        assert_eq!(server.poll_timeout(), None);
    }

    // ---- client ---------------------------------------------------------------------------------

    fn client(url: &str, subprotocols: &[&str]) -> ClientHandshake {
        let request = ClientRequest::new(url)
            .unwrap()
            .subprotocols(subprotocols.iter().map(|s| (*s).to_owned()).collect())
            .unwrap();
        ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), Limits::default(), Instant::now())
    }

    fn accept_for(client: &ClientHandshake, extra: &[(&str, &str)]) -> Vec<u8> {
        let accept = accept_key(client.key().as_bytes());
        let mut headers = vec![("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", &accept)];
        headers.extend_from_slice(extra);
        head("HTTP/1.1 101 Switching Protocols", &headers)
    }

    fn client_result(client: &mut ClientHandshake, bytes: &[u8]) -> Result<Option<ClientResponse>, HandshakeError> {
        client.handle_input(bytes)
    }

    #[test]
    fn client_request_bytes_are_reproducible_from_seed() {
        let a = client("ws://example.com:9001/chat?x=1", &["chat", "superchat"]);
        let b = client("ws://example.com:9001/chat?x=1", &["chat", "superchat"]);
        assert_eq!(a.request_bytes(), b.request_bytes());
        let expected = format!(
            "GET /chat?x=1 HTTP/1.1\r\n\
         Host: example.com:9001\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {SEEDED_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat, superchat\r\n\r\n"
        );
        assert_eq!(String::from_utf8(a.request_bytes().to_vec()).unwrap(), expected);
        assert_eq!(a.key(), SEEDED_KEY);
    }

    /// The `Sec-WebSocket-Key` drawn from `Entropy::from_seed([0; 32])`.
    const SEEDED_KEY: &str = "m/SaagdV+VOBH84SXyaD1Q==";

    #[test]
    fn client_request_has_no_protocol_header_without_subprotocols_and_adds_extra_headers() {
        let request = ClientRequest::new("wss://example.com").unwrap().header("Origin", "https://example.com").unwrap();
        let handshake =
            ClientHandshake::new(request, &mut Entropy::from_seed([1; 32]), Limits::default(), Instant::now());
        let text = String::from_utf8(handshake.request_bytes().to_vec()).unwrap();
        assert!(text.starts_with("GET / HTTP/1.1\r\nHost: example.com\r\n"), "{text}");
        assert!(!text.contains("Sec-WebSocket-Protocol"));
        assert!(text.ends_with("Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n\r\n"), "{text}");
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.decode(handshake.key()).unwrap();
        assert_eq!(key.len(), 16);
    }

    #[test]
    fn client_accepts_valid_101() {
        let mut c = client("ws://example.com/", &[]);
        let response = c.handle_input(&accept_for(&c, &[])).unwrap().unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.reason(), "Switching Protocols");
        assert_eq!(response.subprotocol(), None);
        assert_eq!(response.header("upgrade"), Some("websocket"));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn client_returns_leftover_after_head_intact() {
        let mut c = client("ws://example.com/", &[]);
        let mut bytes = accept_for(&c, &[]);
        bytes.extend_from_slice(b"\x81\x05Hello\r\n\r\n");
        assert!(c.handle_input(&bytes).unwrap().is_some());
        assert_eq!(c.handle_input(b"\x88\x00").unwrap(), None);
        let (_connection, leftover) = c.into_connection(Config::default(), Instant::now()).unwrap();
        assert_eq!(&leftover[..], b"\x81\x05Hello\r\n\r\n\x88\x00");
    }

    #[test]
    fn client_byte_at_a_time_equals_whole() {
        let mut whole = client("ws://example.com/", &["a", "b"]);
        let mut bytes = accept_for(&whole, &[("Sec-WebSocket-Protocol", "b")]);
        let head_len = bytes.len();
        let expected = whole.handle_input(&bytes).unwrap().unwrap();
        bytes.extend_from_slice(b"\x81\x00");
        let mut c = client("ws://example.com/", &["a", "b"]);
        let mut result = None;
        for (i, byte) in bytes.iter().enumerate() {
            let out = c.handle_input(std::slice::from_ref(byte)).unwrap();
            assert_eq!(out.is_some(), i == head_len - 1);
            result = result.or(out);
        }
        assert_eq!(result.unwrap(), expected);
        let (_connection, leftover) = c.into_connection(Config::default(), Instant::now()).unwrap();
        assert_eq!(&leftover[..], b"\x81\x00");
    }

    #[test]
    fn client_rejects_non_101_keeping_status_headers_and_body() {
        let mut c = client("ws://example.com/", &[]);
        let bytes = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\nX-Why: origin\r\n\r\nno\n";
        let error = c.handle_input(bytes).unwrap_err();
        let HandshakeError::NotSwitchingProtocols { status, reason, headers, body, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!((*status, reason.as_str()), (403, "Forbidden"));
        let headers: Vec<_> = headers.iter().collect();
        assert_eq!(headers, [("Content-Length", &b"3"[..]), ("X-Why", &b"origin"[..])]);
        assert_eq!(&body[..], b"no\n");
        assert!(error.response().is_none());
        assert_eq!(error.to_string(), "server rejected the upgrade with 403 Forbidden: no");
        // Sticky.
        assert_eq!(c.handle_input(b"").unwrap_err(), error);
        assert_eq!(c.handle_eof().unwrap_err(), error);
    }

    /// The rejection's body, from the error.
    fn rejection_body(error: &HandshakeError) -> &[u8] {
        match error {
            HandshakeError::NotSwitchingProtocols { body, .. } => body,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn client_rejection_waits_for_a_body_that_arrives_after_the_head() {
        let mut c = client("ws://example.com/", &[]);
        let head = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\n\r\nlog ";
        assert_eq!(c.handle_input(head), Ok(None), "the body is not complete yet");
        assert!(c.poll_timeout().is_some(), "the deadline still runs");
        assert_eq!(c.handle_input(b"in "), Ok(None));
        let error = c.handle_input(b"first and more").unwrap_err();
        assert_eq!(rejection_body(&error), b"log in first");
    }

    #[test]
    fn client_rejection_body_is_bounded() {
        let request = ClientRequest::new("ws://example.com/").unwrap();
        let limits = Limits::default().max_rejection_body(4);
        let mut c = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), limits, Instant::now());
        let error = c.handle_input(b"HTTP/1.1 500 Oops\r\nContent-Length: 1000000\r\n\r\n0123456789").unwrap_err();
        assert_eq!(rejection_body(&error), b"0123");
        let mut c = client("ws://example.com/", &[]);
        let mut bytes = b"HTTP/1.1 500 Oops\r\n\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 5000));
        let error = c.handle_input(&bytes).unwrap_err();
        assert_eq!(rejection_body(&error).len(), Limits::default().max_rejection_body);
    }

    #[test]
    fn client_rejection_body_runs_to_the_end_of_the_transport_without_a_length() {
        let mut c = client("ws://example.com/", &[]);
        assert_eq!(c.handle_input(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\nnot "), Ok(None));
        assert_eq!(c.handle_input(b"you"), Ok(None));
        let error = c.handle_eof().unwrap_err();
        assert_eq!(rejection_body(&error), b"not you");
        assert_eq!(c.handle_input(b"").unwrap_err(), error, "sticky");
    }

    #[test]
    fn client_rejection_body_is_dechunked() {
        let mut c = client("ws://example.com/", &[]);
        let bytes =
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbad \r\n5\r\ntoken\r\n0\r\n\r\n";
        let error = c.handle_input(bytes).unwrap_err();
        assert_eq!(rejection_body(&error), b"bad token");
    }

    #[test]
    fn client_rejection_reports_the_partial_body_at_the_deadline() {
        let now = Instant::now();
        let request = ClientRequest::new("ws://example.com/").unwrap();
        let limits = Limits::default().timeout(Some(Duration::from_secs(5)));
        let mut c = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), limits, now);
        assert_eq!(c.handle_input(b"HTTP/1.1 429 Too Many\r\nContent-Length: 50\r\n\r\nslow down"), Ok(None));
        assert_eq!(c.handle_timeout(now + Duration::from_secs(4)), Ok(()));
        let error = c.handle_timeout(now + Duration::from_secs(5)).unwrap_err();
        assert!(matches!(error, HandshakeError::NotSwitchingProtocols { status: 429, .. }), "{error:?}");
        assert_eq!(rejection_body(&error), b"slow down");
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn client_eof_before_a_complete_head_is_left_to_the_caller() {
        let mut c = client("ws://example.com/", &[]);
        assert_eq!(c.handle_input(b"HTTP/1.1 101 Switch"), Ok(None));
        assert_eq!(c.handle_eof(), Ok(()));
    }

    #[test]
    fn client_rejects_200_ok_as_not_switching_protocols() {
        let mut c = client("ws://example.com/", &[]);
        let error = c.handle_input(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap_err();
        assert!(matches!(error, HandshakeError::NotSwitchingProtocols { status: 200, .. }));
    }

    #[test]
    fn client_rejects_missing_accept() {
        let mut c = client("ws://example.com/", &[]);
        let bytes = head("HTTP/1.1 101 Switching Protocols", &[("Upgrade", "websocket"), ("Connection", "Upgrade")]);
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::MissingAccept));
    }

    #[test]
    fn client_rejects_wrong_accept() {
        let mut c = client("ws://example.com/", &[]);
        let bytes = head(
            "HTTP/1.1 101 Switching Protocols",
            &[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)],
        );
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::AcceptMismatch));
    }

    #[test]
    fn client_rejects_two_accept_headers() {
        let mut c = client("ws://example.com/", &[]);
        let bytes = accept_for(&c, &[("Sec-WebSocket-Accept", ACCEPT)]);
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::AcceptMismatch));
    }

    #[test]
    fn client_rejects_wrong_upgrade() {
        let mut c = client("ws://example.com/", &[]);
        let accept = accept_key(c.key().as_bytes());
        let bytes = head(
            "HTTP/1.1 101 Switching Protocols",
            &[("Upgrade", "h2c"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", &accept)],
        );
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::InvalidUpgrade));
    }

    #[test]
    fn client_rejects_missing_connection_upgrade() {
        let mut c = client("ws://example.com/", &[]);
        let accept = accept_key(c.key().as_bytes());
        let bytes = head(
            "HTTP/1.1 101 Switching Protocols",
            &[("Upgrade", "websocket"), ("Connection", "keep-alive"), ("Sec-WebSocket-Accept", &accept)],
        );
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::MissingConnectionUpgrade));
    }

    #[test]
    fn client_rejects_unoffered_subprotocol() {
        let mut c = client("ws://example.com/", &["a"]);
        let bytes = accept_for(&c, &[("Sec-WebSocket-Protocol", "b")]);
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::UnexpectedSubprotocol));
        let mut c = client("ws://example.com/", &[]);
        let bytes = accept_for(&c, &[("Sec-WebSocket-Protocol", "a")]);
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::UnexpectedSubprotocol));
    }

    #[test]
    fn client_rejects_more_than_one_subprotocol() {
        let mut c = client("ws://example.com/", &["a", "b"]);
        let bytes = accept_for(&c, &[("Sec-WebSocket-Protocol", "a, b")]);
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::UnexpectedSubprotocol));
        let mut c = client("ws://example.com/", &["a", "b"]);
        let bytes = accept_for(&c, &[("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "a")]);
        assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::UnexpectedSubprotocol));
    }

    #[test]
    fn client_accepts_offered_subprotocol() {
        let mut c = client("ws://example.com/", &["a", "b"]);
        let bytes = accept_for(&c, &[("Sec-WebSocket-Protocol", "b")]);
        assert_eq!(c.handle_input(&bytes).unwrap().unwrap().subprotocol(), Some("b"));
    }

    #[test]
    fn client_rejects_any_extension() {
        for value in ["permessage-deflate", ""] {
            let mut c = client("ws://example.com/", &[]);
            let bytes = accept_for(&c, &[("Sec-WebSocket-Extensions", value)]);
            assert_eq!(client_result(&mut c, &bytes), Err(HandshakeError::UnsolicitedExtension), "{value:?}");
        }
    }

    #[test]
    fn client_rejects_malformed_response() {
        let mut c = client("ws://example.com/", &[]);
        let error = c.handle_input(b"HTTP/1.1 1O1 Switching\r\n\r\n").unwrap_err();
        assert!(matches!(error, HandshakeError::MalformedResponse(_)), "{error:?}");
    }

    #[test]
    fn client_header_bytes_over_cap_fails_without_buffering_past_cap() {
        let request = ClientRequest::new("ws://example.com/").unwrap();
        let limits = Limits::default().max_header_bytes(64);
        let mut c = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), limits, Instant::now());
        assert_eq!(c.handle_input(b"HTTP/1.1 101 Switching Protocols\r\n").unwrap(), None);
        let error = c.handle_input(&[b'X'; 500]).unwrap_err();
        assert_eq!(error, HandshakeError::HeadersTooLarge);
        assert_eq!(c.buffered_len(), 0);
    }

    #[test]
    fn client_header_count_over_cap_fails() {
        let request = ClientRequest::new("ws://example.com/").unwrap();
        let limits = Limits::default().max_headers(2);
        let mut c = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), limits, Instant::now());
        let bytes = accept_for(&c, &[]);
        assert_eq!(c.handle_input(&bytes).unwrap_err(), HandshakeError::TooManyHeaders);
    }

    #[test]
    fn client_timeout_fails_and_tolerates_repeated_calls() {
        let start = Instant::now();
        let request = ClientRequest::new("ws://example.com/").unwrap();
        let limits = Limits::default().timeout(Some(Duration::from_secs(5)));
        let mut c = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), limits, start);
        assert_eq!(c.poll_timeout(), Some(start + Duration::from_secs(5)));
        assert_eq!(c.handle_timeout(start + Duration::from_secs(1)), Ok(()));
        assert_eq!(c.handle_timeout(start + Duration::from_secs(6)), Err(HandshakeError::Timeout));
        assert_eq!(c.handle_timeout(start + Duration::from_secs(7)), Err(HandshakeError::Timeout));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.handle_input(b"HTTP/1.1 101 OK\r\n"), Err(HandshakeError::Timeout));
    }

    // ---- round trip -----------------------------------------------------------------------------

    #[test]
    fn round_trip_negotiates_subprotocol_in_server_preference_order() {
        let now = Instant::now();
        let request = ClientRequest::new("ws://localhost:9001/echo?x=1")
            .unwrap()
            .subprotocols(vec!["a".into(), "b".into(), "c".into()])
            .unwrap()
            .header("Origin", "http://localhost:9001")
            .unwrap();
        let mut client = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), Limits::default(), now);

        let mut to_server = client.request_bytes().to_vec();
        to_server.extend_from_slice(b"\x81\x80\x00\x00\x00\x00"); // an empty masked text frame
        let mut server = ServerHandshake::new(Limits::default(), now);
        let request = server.handle_input(&to_server).unwrap().unwrap();
        assert_eq!(request.path(), "/echo");
        assert_eq!(request.query(), Some("x=1"));
        assert_eq!(request.host(), Some("localhost:9001"));
        assert_eq!(request.subprotocols(), ["a", "b", "c"]);

        let policy = ServerPolicy::default().subprotocols(vec!["c".into(), "b".into()]);
        let response = policy.accept(&request).unwrap();
        assert_eq!(response.subprotocol(), Some("c"));
        let (_server_connection, server_leftover) = server.into_connection(&response, Config::default(), now).unwrap();
        assert_eq!(&server_leftover[..], b"\x81\x80\x00\x00\x00\x00");

        let mut to_client = response.to_bytes();
        to_client.extend_from_slice(b"\x81\x02hi");
        let response = client.handle_input(&to_client).unwrap().unwrap();
        assert_eq!(response.subprotocol(), Some("c"));
        let (_client_connection, client_leftover) = client.into_connection(Config::default(), now).unwrap();
        assert_eq!(&client_leftover[..], b"\x81\x02hi");
    }

    #[test]
    fn round_trip_without_subprotocols_or_origin() {
        let now = Instant::now();
        let mut client = client("ws://[::1]:9001", &[]);
        let request = parse_request(client.request_bytes());
        assert_eq!(request.host(), Some("[::1]:9001"));
        let response = ServerPolicy::default().accept(&request).unwrap();
        let response = client.handle_input(&response.to_bytes()).unwrap().unwrap();
        assert_eq!(response.subprotocol(), None);
        let (_connection, leftover) = client.into_connection(Config::default(), now).unwrap();
        assert!(leftover.is_empty());
    }

    #[test]
    fn round_trip_rejection_reaches_client_with_status() {
        let mut client = client("ws://example.com/", &[]);
        let mut bytes = client.request_bytes().to_vec();
        // Corrupt the version.
        let text = String::from_utf8(bytes.clone()).unwrap().replace("Version: 13", "Version: 12");
        bytes = text.into_bytes();
        let response = ServerPolicy::default().respond(&parse_request(&bytes));
        let error = client.handle_input(&response.to_bytes()).unwrap_err();
        let HandshakeError::NotSwitchingProtocols { status, headers, body, .. } = error else { panic!() };
        assert_eq!(status, 426);
        assert_eq!(headers.get("Sec-WebSocket-Version"), Some("13"));
        assert_eq!(&body[..], HandshakeError::UnsupportedVersion.response().unwrap().body());
    }

    // ---- properties -----------------------------------------------------------------------------

    /// Splits `bytes` at the given cut points (taken modulo the length).
    fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for p in points {
            pieces.push(&bytes[start..p]);
            start = p;
        }
        pieces.push(&bytes[start..]);
        pieces
    }

    fn head_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(
                prop_oneof![
                    Just(b"\r\n".to_vec()),
                    Just(b"\n".to_vec()),
                    Just(b"GET / HTTP/1.1".to_vec()),
                    Just(b"HTTP/1.1 101 Switching Protocols".to_vec()),
                    Just(b"Host: a".to_vec()),
                    Just(b": ".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ],
                0..60
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_in_arbitrary_splits_never_panic_or_overbuffer(
            bytes in head_like_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max_header_bytes in 0usize..300,
            max_headers in 0usize..8,
        ) {
            let now = Instant::now();
            let limits = Limits::default().max_header_bytes(max_header_bytes).max_headers(max_headers);
            let mut server = ServerHandshake::new(limits, now);
            let request = ClientRequest::new("ws://a/").unwrap();
            let mut client = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), limits, now);
            for piece in split(&bytes, &cuts) {
                if let Ok(Some(request)) = server.handle_input(piece) {
                    let _ = ServerPolicy::default().respond(&request).to_bytes();
                }
                prop_assert!(server.buffered_len() <= max_header_bytes);
                let _ = client.handle_input(piece);
                prop_assert!(client.buffered_len() <= max_header_bytes);
            }
            let _ = server.handle_timeout(now + Duration::from_secs(60));
            let _ = client.handle_timeout(now + Duration::from_secs(60));
        }

        #[test]
        fn any_split_of_a_valid_request_gives_the_same_request_and_leftover(
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            tail in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let now = Instant::now();
            let mut bytes = with_header("Sec-WebSocket-Protocol", Some("a, b"));
            let expected = parse_request(&bytes);
            bytes.extend_from_slice(&tail);
            let mut server = ServerHandshake::new(Limits::default(), now);
            let mut got = None;
            for piece in split(&bytes, &cuts) {
                if let Some(request) = server.handle_input(piece).unwrap() {
                    prop_assert!(got.is_none());
                    got = Some(request);
                }
            }
            prop_assert_eq!(got, Some(expected));
            let (_connection, leftover) = server.into_connection(&accepted(), Config::default(), now).unwrap();
            prop_assert_eq!(&leftover[..], &tail[..]);
        }

        #[test]
        fn arbitrary_urls_origins_and_patterns_never_panic(
            scheme in prop_oneof![Just("ws://"), Just("wss://"), Just("WS://["), Just("")],
            url in "\\PC{0,40}",
            origin in "(https?://)?[a-zA-Z0-9.:\\[\\]*/é-]{0,30}",
            host in "[a-zA-Z0-9.:\\[\\]*-]{0,20}",
            pattern in "[a-z*{}/:.\\[\\]]{0,16}(\\{\\{host\\}\\})?",
        ) {
            if let Ok(request) = ClientRequest::new(&format!("{scheme}{url}")) {
                // Whatever parses yields a request line and Host header a server can read.
                let client = ClientHandshake::new(request, &mut Entropy::from_seed([0; 32]), Limits::default(), Instant::now());
                let parsed = parse_request(client.request_bytes());
                prop_assert!(ferrule_core::handshake::validate(&parsed).is_ok());
            }
            let _ = OriginPolicy::SameOrigin.allows(Some(&origin), &host);
            let _ = OriginPattern::new(&pattern).matches(&origin, &host);
        }
    }
}
