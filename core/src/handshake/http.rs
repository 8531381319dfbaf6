//! The HTTP/1.1 pieces of the handshake: the editable [`Response`], header syntax (RFC 7230
//! section 3.2), token lists, and the bounded incremental head reader shared by both sides.

use std::borrow::Cow;
use std::fmt;

use crate::deflate::PerMessageDeflate;

/// An HTTP/1.1 response to an opening handshake, which the caller may edit before sending it.
///
/// Either a `101 Switching Protocols` accept built by
/// [`ServerPolicy::accept`](super::ServerPolicy::accept) (RFC 6455 section 4.2.2), or a
/// rejection: a `4xx` with `Content-Type: text/plain; charset=utf-8`, `Content-Length`,
/// `Connection: close` and a short body naming what was wrong (from
/// [`HandshakeError::response`](super::HandshakeError::response) or [`Response::reject`]).
///
/// Headers keep their order. Edits are checked so that the response stays well formed: names must
/// be RFC 7230 tokens, and values may not contain CR, LF, NUL or other control characters (no
/// header injection). `Sec-WebSocket-Extensions` cannot be set by hand ([`HeaderError::Reserved`]):
/// it says what the connection will do, so only the policy that negotiated it writes it; removing
/// it declines the extensions.
///
/// # Examples
///
/// ```
/// use ferrule_core::handshake::Response;
///
/// let mut response = Response::reject(401, "log in first")?;
/// response.insert_header("WWW-Authenticate", "Bearer")?;
/// assert!(response.insert_header("X-Evil", "a\r\nSet-Cookie: x").is_err());
/// let bytes = response.to_bytes();
/// assert!(bytes.starts_with(b"HTTP/1.1 401 Unauthorized\r\n"));
/// assert!(bytes.ends_with(b"\r\n\r\nlog in first"));
/// # Ok::<(), ferrule_core::handshake::HeaderError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    /// Always the standard phrase of `status`.
    reason: &'static str,
    /// Names and values; the ones the handshake writes itself are static and not allocated.
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    body: Vec<u8>,
    /// The permessage-deflate this accept agrees to, written in its `Sec-WebSocket-Extensions`;
    /// boxed, as most responses have none and a response is often moved.
    deflate: Option<Box<PerMessageDeflate>>,
}

impl Response {
    /// A plain-text rejection with the given `4xx` or `5xx` status and `message`, byte for byte,
    /// as its body, carrying `Content-Type`, `Content-Length` and `Connection: close`.
    ///
    /// Fails with [`HeaderError::InvalidStatus`] for a status outside `400..=599`.
    pub fn reject(status: u16, message: &str) -> Result<Self, HeaderError> {
        if !(400..=599).contains(&status) {
            return Err(HeaderError::InvalidStatus(status));
        }
        Ok(Self::rejection(status, message))
    }

    /// Like [`reject`](Self::reject), but a status outside `400..=599` becomes 500 rather than an
    /// error, for callers that must always have a response to send.
    pub fn reject_or_500(status: u16, message: &str) -> Self {
        let status = if (400..=599).contains(&status) { status } else { 500 };
        Self::rejection(status, message)
    }

    /// The status code, e.g. 101 or 400.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase of the status line, e.g. `Switching Protocols`.
    pub fn reason(&self) -> &str {
        self.reason
    }

    /// The headers in the order they will be written, as `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// The value of the first header called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }

    /// Sets header `name` to `value`, replacing every header of that name (compared
    /// case-insensitively) or appending it when there is none.
    ///
    /// Fails, leaving the response unchanged, when `name` is not an RFC 7230 token
    /// ([`HeaderError::InvalidName`]) or `value` contains CR, LF, NUL or another control character
    /// other than tab ([`HeaderError::InvalidValue`]).
    pub fn insert_header(&mut self, name: &str, value: &str) -> Result<&mut Self, HeaderError> {
        check_header(name, value)?;
        check_not_extensions(name)?;
        let mut found = false;
        self.headers.retain_mut(|(n, v)| {
            if !n.eq_ignore_ascii_case(name) {
                return true;
            }
            if found {
                return false;
            }
            found = true;
            *v = Cow::Owned(value.to_owned());
            true
        });
        if !found {
            self.headers.push((Cow::Owned(name.to_owned()), Cow::Owned(value.to_owned())));
        }
        Ok(self)
    }

    /// Appends a header, keeping any others of the same name. Checked like
    /// [`insert_header`](Self::insert_header).
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<&mut Self, HeaderError> {
        check_header(name, value)?;
        check_not_extensions(name)?;
        self.headers.push((Cow::Owned(name.to_owned()), Cow::Owned(value.to_owned())));
        Ok(self)
    }

    /// Removes every header called `name` (compared case-insensitively); returns whether any was
    /// there. Removing `Sec-WebSocket-Extensions` declines the extensions the policy accepted
    /// (see [`deflate`](Self::deflate)).
    pub fn remove_header(&mut self, name: &str) -> bool {
        if name.eq_ignore_ascii_case(SEC_WEBSOCKET_EXTENSIONS) {
            self.deflate = None;
        }
        let before = self.headers.len();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.len() != before
    }

    /// The body; always empty on a `101`.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Replaces the body and sets `Content-Length` to match.
    ///
    /// Fails with [`HeaderError::BodyOnAccept`] on a `101 Switching Protocols`: whatever follows
    /// its head is WebSocket frames (RFC 6455 section 4.2.2).
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) -> Result<&mut Self, HeaderError> {
        if self.is_accept() {
            return Err(HeaderError::BodyOnAccept);
        }
        self.body = body.into();
        let length = self.body.len().to_string();
        self.insert_header("Content-Length", &length)
    }

    /// The permessage-deflate this `101` agrees to (RFC 7692), as
    /// [`ServerPolicy::accept`](super::ServerPolicy::accept) negotiated it and wrote it in
    /// `Sec-WebSocket-Extensions`; [`ServerHandshake::into_connection`](super::ServerHandshake::into_connection)
    /// applies it to the connection. `None` when the offers were declined.
    pub fn deflate(&self) -> Option<&PerMessageDeflate> {
        self.deflate.as_deref()
    }

    /// Whether this accepts the upgrade: status 101, or the 200 that accepts an HTTP/2 extended
    /// CONNECT (RFC 8441 section 5).
    pub fn is_accept(&self) -> bool {
        matches!(self.status, 101 | 200)
    }

    /// The response as the `http` crate's type, to send through another HTTP server, with the
    /// body (empty on an accept).
    ///
    /// `version` is the request's: on HTTP/2 the connection-specific headers (`Connection`,
    /// `Upgrade`, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`) are left out, as RFC
    /// 9113 section 8.2.2 forbids them.
    #[cfg(feature = "http")]
    pub fn to_http(&self, version: ::http::Version) -> ::http::Response<bytes::Bytes> {
        const CONNECTION_SPECIFIC: [&str; 5] =
            ["connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding"];
        let mut response = ::http::Response::new(bytes::Bytes::copy_from_slice(&self.body));
        *response.status_mut() =
            ::http::StatusCode::from_u16(self.status).unwrap_or(::http::StatusCode::INTERNAL_SERVER_ERROR);
        *response.version_mut() = version;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            if version == ::http::Version::HTTP_2 && CONNECTION_SPECIFIC.iter().any(|c| name.eq_ignore_ascii_case(c)) {
                continue;
            }
            // Names are tokens and values free of control characters (checked on insertion),
            // so both convert.
            if let (Ok(name), Ok(value)) =
                (::http::HeaderName::from_bytes(name.as_bytes()), ::http::HeaderValue::from_str(value))
            {
                headers.append(name, value);
            }
        }
        response
    }

    /// The subprotocol this response selects (its `Sec-WebSocket-Protocol` header), if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.header(SEC_WEBSOCKET_PROTOCOL)
    }

    /// Selects a subprotocol (RFC 6455 section 4.2.2 step 5.4), or removes the selection with
    /// `None`.
    ///
    /// Only a `101` can select one ([`HeaderError::NotAnAccept`]); the name must be an RFC 7230
    /// token ([`HeaderError::InvalidSubprotocol`]). The name should be one the client offered:
    /// a conforming client fails the connection otherwise.
    pub fn set_subprotocol(&mut self, subprotocol: Option<&str>) -> Result<&mut Self, HeaderError> {
        if !self.is_accept() {
            return Err(HeaderError::NotAnAccept);
        }
        match subprotocol {
            None => {
                self.remove_header(SEC_WEBSOCKET_PROTOCOL);
                Ok(self)
            }
            Some(name) if is_token(name.as_bytes()) => self.insert_header(SEC_WEBSOCKET_PROTOCOL, name),
            Some(name) => Err(HeaderError::InvalidSubprotocol(name.to_owned())),
        }
    }

    /// Appends the serialized response (status line, headers, blank line, body) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.serialized_len());
        out.extend_from_slice(b"HTTP/1.1 ");
        // A status is three digits (RFC 9110 section 15).
        let status = self.status.min(999);
        out.extend_from_slice(&[
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ]);
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.is_accept() {
            out.extend_from_slice(&self.body);
        }
    }

    /// The serialized response, ready to write to the transport.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_len());
        self.write_to(&mut out);
        out
    }

    /// How many bytes [`write_to`](Self::write_to) appends.
    fn serialized_len(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let body = if self.is_accept() { 0 } else { self.body.len() };
        // "HTTP/1.1 ", three digits and a space, the reason and CRLF; the headers; CRLF; body.
        "HTTP/1.1 ".len() + 4 + self.reason.len() + 2 + headers + 2 + body
    }

    /// A `101 Switching Protocols` with the headers of RFC 6455 section 4.2.2 step 5.
    pub(crate) fn switching_protocols(accept: String, subprotocol: Option<&str>) -> Self {
        // Room for the two headers a policy most often adds: a subprotocol and an extension.
        let mut headers = Vec::with_capacity(5);
        headers.extend([
            (Cow::Borrowed("Upgrade"), Cow::Borrowed("websocket")),
            (Cow::Borrowed("Connection"), Cow::Borrowed("Upgrade")),
            (Cow::Borrowed("Sec-WebSocket-Accept"), Cow::Owned(accept)),
        ]);
        if let Some(name) = subprotocol {
            headers.push((Cow::Borrowed(SEC_WEBSOCKET_PROTOCOL), Cow::Owned(name.to_owned())));
        }
        Self { status: 101, reason: "Switching Protocols", headers, body: Vec::new(), deflate: None }
    }

    /// The `200` that accepts an HTTP/2 extended CONNECT (RFC 8441 section 5): no `Upgrade`,
    /// `Connection` or `Sec-WebSocket-Accept`.
    pub(crate) fn extended_connect_accept(subprotocol: Option<&str>) -> Self {
        let mut headers = Vec::new();
        if let Some(name) = subprotocol {
            headers.push((Cow::Borrowed(SEC_WEBSOCKET_PROTOCOL), Cow::Owned(name.to_owned())));
        }
        Self { status: 200, reason: "OK", headers, body: Vec::new(), deflate: None }
    }

    /// A plain-text rejection with `message` as its body; `status` is trusted to be a 4xx or 5xx.
    pub(crate) fn rejection(status: u16, message: &str) -> Self {
        let body = message.as_bytes().to_vec();
        let headers = vec![
            (Cow::Borrowed("Content-Type"), Cow::Borrowed("text/plain; charset=utf-8")),
            (Cow::Borrowed("Content-Length"), Cow::Owned(body.len().to_string())),
            (Cow::Borrowed("Connection"), Cow::Borrowed("close")),
        ];
        Self { status, reason: reason_phrase(status), headers, body, deflate: None }
    }

    /// Agrees to permessage-deflate: records it and writes its `Sec-WebSocket-Extensions`
    /// answer (RFC 7692 section 7.1).
    pub(crate) fn set_deflate(&mut self, deflate: PerMessageDeflate, answer: String) {
        self.headers.push((Cow::Borrowed(SEC_WEBSOCKET_EXTENSIONS), Cow::Owned(answer)));
        self.deflate = Some(Box::new(deflate));
    }

    /// Appends a header without checking it; for values this module wrote itself.
    pub(crate) fn push_trusted_header(&mut self, name: &'static str, value: &'static str) {
        self.headers.push((Cow::Borrowed(name), Cow::Borrowed(value)));
    }
}

/// An edit of a header, a request or a [`Response`] that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The header name is not an RFC 7230 token (RFC 7230 section 3.2).
    InvalidName(String),
    /// The value of the named header contains CR, LF, NUL or another control character.
    InvalidValue(String),
    /// The named header is written by the handshake itself and cannot be set by hand.
    Reserved(String),
    /// A subprotocol name is not an HTTP token (RFC 6455 section 4.1, RFC 7230 section 3.2.6).
    InvalidSubprotocol(String),
    /// A subprotocol is offered twice (RFC 6455 section 4.1 item 10).
    DuplicateSubprotocol(String),
    /// Only a `101 Switching Protocols` response can select a subprotocol.
    NotAnAccept,
    /// A `101 Switching Protocols` response cannot carry a body.
    BodyOnAccept,
    /// A rejection's status must be in `400..=599`.
    InvalidStatus(u16),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(name) => write!(f, "header name {name:?} is not a token"),
            Self::InvalidValue(name) => {
                write!(f, "value of header {name:?} contains a control character")
            }
            Self::Reserved(name) => write!(f, "header {name:?} is set by the handshake itself"),
            Self::InvalidSubprotocol(name) => write!(
                f,
                "subprotocol {name:?} is not an HTTP token (RFC 7230 section 3.2.6: one or more letters, digits or \
                 !#$%&'*+-.^_`|~, no spaces, commas or separators)"
            ),
            Self::DuplicateSubprotocol(name) => write!(f, "subprotocol {name:?} is offered twice"),
            Self::NotAnAccept => f.write_str("only a 101 response can select a subprotocol"),
            Self::BodyOnAccept => f.write_str("a 101 response cannot carry a body"),
            Self::InvalidStatus(status) => write!(f, "status {status} is not a 4xx or 5xx"),
        }
    }
}

impl std::error::Error for HeaderError {}

pub(crate) const SEC_WEBSOCKET_PROTOCOL: &str = "Sec-WebSocket-Protocol";

/// The extensions header (RFC 6455 section 11.3.2).
pub(crate) const SEC_WEBSOCKET_EXTENSIONS: &str = "Sec-WebSocket-Extensions";

/// `Sec-WebSocket-Extensions` is written by the policy that negotiated the extensions, which the
/// connection then applies; a hand-written one could promise what the connection does not do.
fn check_not_extensions(name: &str) -> Result<(), HeaderError> {
    if name.eq_ignore_ascii_case(SEC_WEBSOCKET_EXTENSIONS) {
        return Err(HeaderError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// The headers of a received HTTP head, in order: each name as sent, each value with surrounding
/// whitespace trimmed.
///
/// Values are bytes, as HTTP allows octets that are not UTF-8 (RFC 7230 section 3.2); the `&str`
/// accessors skip such values, and `Debug` shows every value as text, with bytes that are not
/// UTF-8 replaced by U+FFFD.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use ferrule_core::Entropy;
/// use ferrule_core::handshake::{ClientHandshake, ClientRequest, HandshakeError, Limits};
///
/// let request = ClientRequest::new("ws://example.com/")?;
/// let mut handshake = ClientHandshake::new(request, &mut Entropy::from_os(), Limits::default(), Instant::now());
/// let reply = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n";
/// let Err(HandshakeError::NotSwitchingProtocols { headers, .. }) = handshake.handle_input(reply) else {
///     panic!("a rejection")
/// };
/// assert_eq!(headers.get("www-authenticate"), Some("Bearer"));
/// assert_eq!(format!("{headers:?}"), r#"{"WWW-Authenticate": "Bearer", "Content-Length": "0"}"#);
/// # Ok::<(), HandshakeError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every name, one after the other: three allocations hold a whole head, however many
    /// header lines it has (boxed slices, to keep an error that carries headers small).
    names: Box<str>,
    /// Every value, one after the other.
    values: Box<[u8]>,
    /// Where each header's name and value end in `names` and `values`, in order.
    ends: Box<[(usize, usize)]>,
}

impl Headers {
    /// Every header in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut start = (0, 0);
        self.ends.iter().map(move |&(name_end, value_end)| {
            let field = (&self.names[start.0..name_end], &self.values[start.1..value_end]);
            start = (name_end, value_end);
            field
        })
    }

    /// The value of the first header called `name` (compared case-insensitively), if it is
    /// UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        first_str(self, name)
    }

    /// Every value of the headers called `name` (compared case-insensitively), in order.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        values(self, name)
    }

    /// How many header lines there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v)))).finish()
    }
}

impl Headers {
    /// Headers from `(name, value)` pairs, values already trimmed.
    #[cfg(feature = "http")]
    pub(crate) fn from_fields<'a>(fields: impl ExactSizeIterator<Item = (&'a str, &'a [u8])> + Clone) -> Self {
        Self::collect(fields)
    }

    /// Headers from `(name, value)` pairs, values already trimmed, each copied once.
    fn collect<'a>(fields: impl ExactSizeIterator<Item = (&'a str, &'a [u8])> + Clone) -> Self {
        let (names, values) = fields.clone().fold((0, 0), |(n, v), (name, value)| (n + name.len(), v + value.len()));
        let (mut names, mut values, mut ends) =
            (String::with_capacity(names), Vec::with_capacity(values), Vec::with_capacity(fields.len()));
        for (name, value) in fields {
            names.push_str(name);
            values.extend_from_slice(value);
            ends.push((names.len(), values.len()));
        }
        Self { names: names.into_boxed_str(), values: values.into_boxed_slice(), ends: ends.into_boxed_slice() }
    }
}

/// Copies httparse's borrowed headers into owned [`Headers`].
pub(crate) fn owned_headers(headers: &[httparse::Header<'_>]) -> Headers {
    Headers::collect(headers.iter().map(|h| (h.name, trim_ows(h.value))))
}

/// Every value of header `name` (compared case-insensitively), in order.
pub(crate) fn values<'a, 'n>(headers: &'a Headers, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// The first value of header `name` as text, if present and valid UTF-8.
pub(crate) fn first_str<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    values(headers, name).next().and_then(|v| std::str::from_utf8(v).ok())
}

/// Whether any of `values`, read as comma-separated lists (RFC 7230 section 7), contains `token`
/// (compared case-insensitively).
pub(crate) fn list_contains<'a>(values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.flat_map(|v| v.split(|&b| b == b',')).any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
}

/// `bytes` without leading and trailing spaces and tabs.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Whether `bytes` is an RFC 7230 token: one or more `tchar`.
/// Checks a list of subprotocol names as offered or accepted (RFC 6455 sections 1.9 and 4.1
/// item 10): each must be an HTTP token (RFC 7230 section 3.2.6: no spaces, commas or other
/// separators), and none may appear twice.
///
/// # Errors
///
/// [`HeaderError::InvalidSubprotocol`] or [`HeaderError::DuplicateSubprotocol`] naming the first
/// name that does not fit.
pub fn check_subprotocols(names: &[String]) -> Result<(), HeaderError> {
    for (i, name) in names.iter().enumerate() {
        if !is_token(name.as_bytes()) {
            return Err(HeaderError::InvalidSubprotocol(name.clone()));
        }
        if names[..i].contains(name) {
            return Err(HeaderError::DuplicateSubprotocol(name.clone()));
        }
    }
    Ok(())
}

pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// RFC 7230 section 3.2.6 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// Checks a header for writing: a token name and a value free of control characters except tab.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), HeaderError> {
    if !is_token(name.as_bytes()) {
        return Err(HeaderError::InvalidName(name.to_owned()));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HeaderError::InvalidValue(name.to_owned()));
    }
    Ok(())
}

/// The standard reason phrase of the statuses this module writes.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        402..=499 => "Client Error",
        _ => "Server Error",
    }
}

/// How many header slots to give httparse: `max_headers`, but never more than the head in
/// `buffered` can hold (every complete header line ends with a line feed, and one more slot
/// is for a line still arriving), so a huge `max_headers` costs no memory and a usual head
/// fits in the slots on the stack.
pub(crate) fn header_slots(max_headers: usize, buffered: &[u8]) -> usize {
    max_headers.min(buffered.iter().filter(|&&b| b == b'\n').count() + 1)
}

/// Buffers an HTTP head of at most `max` bytes and says when a parse is worth trying.
///
/// Never holds more than `max` bytes: [`push`](Self::push) takes only what fits, and the caller
/// keeps the rest of its input (after a complete head it is the first WebSocket data).
#[derive(Debug)]
pub(crate) struct HeadReader {
    buf: Vec<u8>,
    max: usize,
    /// How much of `buf` has been scanned for the blank line that ends a head.
    scanned: usize,
    /// A blank line was seen since the last parse.
    candidate: bool,
}

impl HeadReader {
    pub(crate) fn new(max: usize) -> Self {
        Self { buf: Vec::new(), max, scanned: 0, candidate: false }
    }

    /// Appends as much of `data` as fits under the cap; returns how many bytes were taken.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let room = self.max.saturating_sub(self.buf.len());
        let taken = room.min(data.len());
        self.buf.extend_from_slice(data.get(..taken).unwrap_or_default());
        // A blank line is `\n` `\r`? `\n` (httparse also accepts bare LF line ends); one that
        // straddles the old end starts at most two bytes before it.
        let start = self.scanned.saturating_sub(2);
        let window = self.buf.get(start..).unwrap_or_default();
        let found = window.iter().enumerate().any(|(i, &b)| {
            b == b'\n'
                && matches!((window.get(i + 1), window.get(i + 2)), (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')))
        });
        self.candidate |= found;
        self.scanned = self.buf.len();
        taken
    }

    /// Whether a parse may now succeed or must settle the outcome: a blank line arrived, or the
    /// buffer is full.
    pub(crate) fn should_parse(&self) -> bool {
        self.candidate || self.is_full()
    }

    /// Records that a parse found the head still incomplete.
    pub(crate) fn parsed_partial(&mut self) {
        self.candidate = false;
    }

    /// Whether the cap is reached: an incomplete head now can never complete.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= self.max
    }

    /// The buffered bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// How many bytes are buffered.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes after the first `head_len`, followed by `rest`: what came after the head.
    pub(crate) fn leftover(&self, head_len: usize, rest: &[u8]) -> Vec<u8> {
        let after = self.buf.get(head_len..).unwrap_or_default();
        let mut leftover = Vec::with_capacity(after.len() + rest.len());
        leftover.extend_from_slice(after);
        leftover.extend_from_slice(rest);
        leftover
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_header_replaces_case_insensitively_and_keeps_position() {
        let mut r = Response::rejection(400, "x");
        r.append_header("X-A", "1").unwrap().append_header("x-a", "2").unwrap();
        r.insert_header("CONTENT-TYPE", "text/html").unwrap();
        r.insert_header("X-a", "3").unwrap();
        let headers: Vec<_> = r.headers().collect();
        assert_eq!(headers[0], ("Content-Type", "text/html"));
        assert_eq!(headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-a")).count(), 1);
        assert_eq!(r.header("X-A"), Some("3"));
    }

    #[test]
    fn insert_header_rejects_crlf_nul_and_bad_names() {
        let mut r = Response::rejection(400, "x");
        let before = r.clone();
        assert_eq!(r.insert_header("X-A", "a\r\nb").unwrap_err(), HeaderError::InvalidValue("X-A".into()));
        assert_eq!(r.insert_header("X-A", "a\nb").unwrap_err(), HeaderError::InvalidValue("X-A".into()));
        assert_eq!(r.insert_header("X-A", "a\0b").unwrap_err(), HeaderError::InvalidValue("X-A".into()));
        assert_eq!(r.insert_header("X A", "v").unwrap_err(), HeaderError::InvalidName("X A".into()));
        assert_eq!(r.insert_header("", "v").unwrap_err(), HeaderError::InvalidName(String::new()));
        assert_eq!(r.insert_header("X:A", "v").unwrap_err(), HeaderError::InvalidName("X:A".into()));
        assert_eq!(r, before);
        assert!(r.insert_header("X-A", "tab\tand utf-8 é").is_ok());
    }

    #[test]
    fn rejection_carries_plain_text_length_and_close() {
        let r = Response::rejection(403, "origin not allowed");
        assert_eq!(r.status(), 403);
        assert_eq!(r.reason(), "Forbidden");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("Connection"), Some("close"));
        assert_eq!(r.header("Content-Length"), Some(r.body().len().to_string().as_str()));
        assert_eq!(r.body(), b"origin not allowed", "the body is the message, byte for byte");
        let bytes = r.to_bytes();
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = parsed.parse(&bytes).unwrap() else { panic!("partial") };
        assert_eq!(&bytes[n..], r.body());
    }

    #[test]
    fn set_body_updates_content_length_and_is_refused_on_101() {
        let mut r = Response::rejection(400, "x");
        r.set_body("hello").unwrap();
        assert_eq!(r.header("Content-Length"), Some("5"));
        let mut accept = Response::switching_protocols("k".to_owned(), None);
        assert_eq!(accept.set_body("x").unwrap_err(), HeaderError::BodyOnAccept);
    }

    #[test]
    fn set_subprotocol_only_on_101_and_only_tokens() {
        let mut accept = Response::switching_protocols("k".to_owned(), None);
        accept.set_subprotocol(Some("chat")).unwrap();
        assert_eq!(accept.subprotocol(), Some("chat"));
        assert_eq!(accept.set_subprotocol(Some("a b")).unwrap_err(), HeaderError::InvalidSubprotocol("a b".into()));
        accept.set_subprotocol(None).unwrap();
        assert_eq!(accept.subprotocol(), None);
        let mut reject = Response::rejection(400, "x");
        assert_eq!(reject.set_subprotocol(Some("chat")).unwrap_err(), HeaderError::NotAnAccept);
    }

    #[test]
    fn reject_refuses_non_error_status() {
        assert_eq!(Response::reject(101, "x").unwrap_err(), HeaderError::InvalidStatus(101));
        assert_eq!(Response::reject(200, "x").unwrap_err(), HeaderError::InvalidStatus(200));
        assert_eq!(Response::reject(599, "x").unwrap().reason(), "Server Error");
    }

    #[test]
    fn list_contains_reads_comma_separated_tokens_case_insensitively() {
        let v: [&[u8]; 2] = [b"keep-alive", b" foo ,  Upgrade"];
        assert!(list_contains(v.into_iter(), "upgrade"));
        let v: [&[u8]; 1] = [b"upgrades, keep-alive"];
        assert!(!list_contains(v.into_iter(), "upgrade"));
    }

    #[test]
    fn trim_ows_trims_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn head_reader_never_takes_more_than_the_cap() {
        let mut reader = HeadReader::new(4);
        assert_eq!(reader.push(b"ab"), 2);
        assert_eq!(reader.push(b"cdef"), 2);
        assert!(reader.is_full());
        assert_eq!(reader.push(b"g"), 0);
        assert_eq!(reader.len(), 4);
    }

    #[test]
    fn head_reader_finds_blank_line_across_pushes() {
        for split in 0..=4 {
            let data = b"\r\n\r\n";
            let mut reader = HeadReader::new(100);
            reader.push(&data[..split]);
            reader.push(&data[split..]);
            assert!(reader.should_parse(), "split {split}");
        }
        let mut reader = HeadReader::new(100);
        reader.push(b"a\r\nb\r\n");
        assert!(!reader.should_parse());
    }
}
