//! The `Cookie` request header (RFC 6265 section 5.4): `name=value` pairs separated by `; `.

/// The `(name, value)` pairs of one `Cookie` header value, in order.
///
/// Pairs are split at `;` and their first `=`, with spaces and tabs around names and values
/// trimmed; a value in double quotes (allowed by RFC 6265 section 4.1.1) is given without them;
/// empty pieces are skipped. A piece without `=` is a cookie with an empty name (how RFC 6265bis
/// section 5.7.3 serializes a nameless cookie). Nothing is percent-decoded: cookie values are
/// opaque.
pub(crate) fn pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|piece| {
        let piece = trim(piece);
        if piece.is_empty() {
            return None;
        }
        let (name, value) = piece.split_once('=').unwrap_or(("", piece));
        let value = trim(value);
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        Some((trim(name), value))
    })
}

fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_rfc6265_section_5_4() {
        let got: Vec<_> = pairs("SID=31d4d96e407aad42; lang=en-US").collect();
        assert_eq!(got, [("SID", "31d4d96e407aad42"), ("lang", "en-US")]);
    }

    #[test]
    fn pairs_trim_unquote_and_skip_empty_pieces() {
        let got: Vec<_> = pairs(" a = 1 ;;b=\"two words\";c=x=y; d=;\"\";nameless ;e=\"").collect();
        assert_eq!(
            got,
            [("a", "1"), ("b", "two words"), ("c", "x=y"), ("d", ""), ("", ""), ("", "nameless"), ("e", "\"")]
        );
    }
}
