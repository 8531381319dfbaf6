//! The query of a request target, read as `application/x-www-form-urlencoded` pairs (the WHATWG
//! URL standard's parser, which browsers use to build `?a=1&b=2`).

use std::borrow::Cow;

/// The `name=value` pairs of `query`, in order, percent-decoded with `+` read as a space.
///
/// Pairs are separated by `&`; empty pieces are skipped; a piece without `=` is a name with an
/// empty value.
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|piece| !piece.is_empty()).map(|piece| {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        (decode(name), decode(value))
    })
}

/// Decodes one form-encoded component: `+` is a space and `%XX` is the byte `XX`. A `%` that
/// is not followed by two hex digits (`%zz`, a truncated `%4`) is kept as it is. Decoded bytes
/// that are not UTF-8 become U+FFFD. Borrows when there is nothing to decode.
pub(crate) fn decode(input: &str) -> Cow<'_, str> {
    if !input.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (bytes.get(i + 1).and_then(hex_value), bytes.get(i + 2).and_then(hex_value)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// The value of one hex digit.
fn hex_value(digit: &u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_borrows_plain_text() {
        assert!(matches!(decode("plain-text_1.~"), Cow::Borrowed("plain-text_1.~")));
        assert_eq!(decode(""), "");
    }

    #[test]
    fn decode_reads_plus_as_space_and_percent_escapes_as_bytes() {
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("a%20b%2Bc%2bd"), "a b+c+d");
        assert_eq!(decode("%E2%82%AC"), "€");
        assert_eq!(decode("%26%3D"), "&=");
    }

    #[test]
    fn decode_keeps_malformed_escapes_literally() {
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("a%"), "a%");
        assert_eq!(decode("%4g"), "%4g");
        assert_eq!(decode("%g4"), "%g4");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%%41"), "%A");
        assert_eq!(decode("%4%41"), "%4A");
    }

    #[test]
    fn decode_replaces_bytes_that_are_not_utf8() {
        assert_eq!(decode("%FF"), "\u{FFFD}");
        assert_eq!(decode("a%C3"), "a\u{FFFD}");
        assert_eq!(decode("%C3%A9"), "é");
    }

    #[test]
    fn decode_never_panics_on_any_short_input() {
        let alphabet = [b'%', b'+', b'4', b'a', b'z', b'F', 0xC3, 0xA9];
        for len in 0..=4 {
            for n in 0..alphabet.len().pow(len) {
                let mut bytes = Vec::new();
                let mut k = n;
                for _ in 0..len {
                    bytes.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let text = String::from_utf8_lossy(&bytes);
                let _ = decode(&text);
            }
        }
    }

    #[test]
    fn pairs_split_on_ampersand_and_first_equals() {
        let got: Vec<_> = pairs("a=1&b=x=y&&c&=d&e=").collect();
        let want = [("a", "1"), ("b", "x=y"), ("c", ""), ("", "d"), ("e", "")];
        assert_eq!(got.len(), want.len());
        for ((name, value), (want_name, want_value)) in got.iter().zip(want) {
            assert_eq!((name.as_ref(), value.as_ref()), (want_name, want_value));
        }
    }

    #[test]
    fn pairs_decode_names_and_values() {
        let got: Vec<_> = pairs("first+name=J%C3%BCrgen&q=a%26b").collect();
        assert_eq!(got[0], (Cow::Borrowed("first name"), Cow::Borrowed("Jürgen")));
        assert_eq!(got[1].1, "a&b");
    }
}
