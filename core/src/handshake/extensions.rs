//! `Sec-WebSocket-Extensions` offers (RFC 6455 section 9.1).

use super::http::{is_tchar, is_token, trim_ows};

/// One extension a client offers in `Sec-WebSocket-Extensions` (RFC 6455 section 9.1): its name
/// and its parameters in order, each with an optional value (quoted values are unescaped).
///
/// # Examples
///
/// ```
/// use ferrule_core::handshake::{Limits, ServerHandshake};
///
/// let mut server = ServerHandshake::new(Limits::default(), std::time::Instant::now());
/// let request = server
///     .handle_input(
///         b"GET / HTTP/1.1\r\nHost: a\r\n\
///           Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, foo; x=\"1\"\r\n\r\n",
///     )?
///     .unwrap();
/// let offers = request.extensions();
/// assert_eq!(offers[0].name(), "permessage-deflate");
/// assert_eq!(offers[0].param("client_max_window_bits"), Some(None));
/// assert_eq!(offers[1].param("x"), Some(Some("1")));
/// # Ok::<(), ferrule_core::handshake::HandshakeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    name: String,
    params: Vec<(String, Option<String>)>,
}

impl ExtensionOffer {
    /// The extension's name, e.g. `permessage-deflate`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters in the order offered, as `(name, value)`.
    pub fn params(&self) -> &[(String, Option<String>)] {
        &self.params
    }

    /// The first parameter called `name` (compared case-insensitively): `Some(None)` when present
    /// without a value, `None` when absent.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }
}

/// Parses every `Sec-WebSocket-Extensions` value, in order; `None` when any is malformed.
///
/// Grammar (RFC 6455 section 9.1, with RFC 7230 list rules: empty elements are skipped):
/// `extension *( "," extension )`, `extension = token *( ";" param )`,
/// `param = token [ "=" ( token / quoted-string ) ]`, where a quoted value must unescape to a token.
pub(crate) fn parse_offers<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<Vec<ExtensionOffer>> {
    let mut offers = Vec::new();
    for value in values {
        let before = offers.len();
        Cursor { bytes: value, pos: 0 }.parse_list(&mut offers)?;
        if offers.len() == before {
            // `1#extension`: a header present must offer at least one.
            return None;
        }
    }
    Some(offers)
}

/// A position in one header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        let token = self.bytes.get(start..self.pos)?;
        // Token bytes are ASCII, so this never fails when non-empty.
        (!token.is_empty()).then(|| String::from_utf8(token.to_vec()).ok()).flatten()
    }

    /// A quoted-string (RFC 7230 section 3.2.6), unescaped; it must hold a token.
    fn quoted_token(&mut self) -> Option<String> {
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let escaped = self.peek()?;
                    self.pos += 1;
                    if escaped != b'\t' && (escaped < 0x20 || escaped == 0x7f) {
                        return None;
                    }
                    out.push(escaped);
                }
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => out.push(b),
                _ => return None,
            }
        }
        if !is_token(&out) {
            return None;
        }
        String::from_utf8(out).ok()
    }

    fn parse_list(&mut self, offers: &mut Vec<ExtensionOffer>) -> Option<()> {
        if trim_ows(self.bytes).is_empty() {
            return Some(());
        }
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Some(()),
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = self.token()?;
            let mut params = Vec::new();
            loop {
                self.skip_ows();
                match self.peek() {
                    None => break,
                    Some(b',') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b';') => {
                        self.pos += 1;
                        self.skip_ows();
                        let param = self.token()?;
                        self.skip_ows();
                        let value = if self.peek() == Some(b'=') {
                            self.pos += 1;
                            self.skip_ows();
                            Some(if self.peek() == Some(b'"') { self.quoted_token()? } else { self.token()? })
                        } else {
                            None
                        };
                        params.push((param, value));
                    }
                    Some(_) => return None,
                }
            }
            offers.push(ExtensionOffer { name, params });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Option<Vec<ExtensionOffer>> {
        parse_offers(values.iter().map(|v| v.as_bytes()))
    }

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> ExtensionOffer {
        ExtensionOffer {
            name: name.into(),
            params: params.iter().map(|(n, v)| ((*n).into(), v.map(Into::into))).collect(),
        }
    }

    #[test]
    fn parses_rfc6455_section_9_1_examples() {
        assert_eq!(
            parse(&["permessage-deflate; client_max_window_bits; server_max_window_bits=10", "foo"]).unwrap(),
            vec![
                offer(
                    "permessage-deflate",
                    &[("client_max_window_bits", None), ("server_max_window_bits", Some("10"))]
                ),
                offer("foo", &[]),
            ]
        );
        assert_eq!(
            parse(&["mux; max-channels=4; flow-control, deflate-stream"]).unwrap(),
            vec![offer("mux", &[("max-channels", Some("4")), ("flow-control", None)]), offer("deflate-stream", &[])]
        );
    }

    #[test]
    fn quoted_values_are_unescaped_and_must_be_tokens() {
        assert_eq!(parse(&[r#"x; a="1\0""#]).unwrap(), vec![offer("x", &[("a", Some("10"))])]);
        assert_eq!(parse(&[r#"x ; a = "b" , y"#]).unwrap().len(), 2);
        assert!(parse(&[r#"x; a="b c""#]).is_none());
        assert!(parse(&[r#"x; a="unterminated"#]).is_none());
        assert!(parse(&[r#"x; a="""#]).is_none());
    }

    #[test]
    fn malformed_lists_are_rejected() {
        for bad in ["", ";", "x;", "x; =1", "x; a=", "a b", "x; a=b c", "é", "x,;y", "x; a==b"] {
            assert!(parse(&[bad]).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        assert_eq!(parse(&[", x ,, y,"]).unwrap(), vec![offer("x", &[]), offer("y", &[])]);
    }

    #[test]
    fn no_header_is_no_offers() {
        assert_eq!(parse(&[]).unwrap(), Vec::new());
    }
}
