//! Which `Origin`s a server accepts (RFC 6455 section 4.2.1 item 8 and section 10.2).

/// Which values of the `Origin` header a server accepts; a refused origin gets a 403.
///
/// Browsers send `Origin` on every WebSocket handshake (RFC 6455 section 10.2), so checking it is
/// what stops another site's page from opening a connection with the user's cookies. A request
/// **without** an `Origin` header is allowed under every policy: non-browser clients do not send
/// one, and a client that omits it carries no ambient browser credentials to abuse.
///
/// # Examples
///
/// ```
/// use ferrule_core::handshake::{OriginPattern, OriginPolicy};
///
/// let same = OriginPolicy::SameOrigin;
/// assert!(same.allows(Some("https://Example.com"), "example.com"));
/// assert!(!same.allows(Some("https://evil.example"), "example.com"));
/// assert!(same.allows(None, "example.com"));
///
/// let list = OriginPolicy::AllowList(vec![OriginPattern::new("https://*.example.com")]);
/// assert!(list.allows(Some("https://app.example.com"), "api.example.com"));
/// assert!(!list.allows(Some("https://example.com"), "api.example.com"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// The origin's host and port must equal the `Host` header's (the default).
    ///
    /// The origin must be exactly `scheme://host[:port]` with scheme `http`, `https`, `ws` or `wss`;
    /// hosts compare case-insensitively, and a port left out means the scheme's default (80 for
    /// `http`/`ws`, 443 for `https`/`wss`), also for a `Host` header without a port. `Origin: null`
    /// and unparseable origins are refused.
    #[default]
    SameOrigin,
    /// The origin must match one of these patterns.
    AllowList(Vec<OriginPattern>),
    /// Every origin is accepted: any web page can open a connection with its visitors' cookies.
    InsecureAllowAny,
}

impl OriginPolicy {
    /// Whether a request with this `Origin` value (`None` when the header is absent) and this
    /// `Host` header value is allowed.
    pub fn allows(&self, origin: Option<&str>, host: &str) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        match self {
            Self::SameOrigin => same_origin(origin.trim(), host.trim()),
            Self::AllowList(patterns) => patterns.iter().any(|p| p.matches(origin, host)),
            Self::InsecureAllowAny => true,
        }
    }
}

/// A pattern for an allowed `Origin`, matched against the whole value, case-insensitively.
///
/// `{{host}}` stands for the request's `Host` header value (taken literally), and `*` matches any
/// run of characters other than `/`. So `https://*.example.com` allows every subdomain over
/// HTTPS, and `http*://{{host}}` allows the server's own host over HTTP or HTTPS. Ports are not
/// normalized: `https://example.com` does not match `https://example.com:443`.
///
/// # Examples
///
/// ```
/// use ferrule_core::handshake::OriginPattern;
///
/// let pattern = OriginPattern::new("http*://{{host}}");
/// assert!(pattern.matches("https://chat.example:8080", "chat.example:8080"));
/// assert!(!pattern.matches("https://chat.example", "other.example"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    source: String,
    parts: Vec<Part>,
}

/// A piece of a compiled [`OriginPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Bytes to match literally, lowercased.
    Literal(Vec<u8>),
    /// The `Host` header value, matched literally.
    Host,
    /// Any run of bytes other than `/`.
    Star,
}

/// The placeholder for the request's `Host` value.
const HOST_PLACEHOLDER: &str = "{{host}}";

impl OriginPattern {
    /// Compiles a pattern; every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = pattern;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix(HOST_PLACEHOLDER) {
                flush(&mut parts, &mut literal);
                parts.push(Part::Host);
                rest = after;
            } else if c == '*' {
                flush(&mut parts, &mut literal);
                parts.push(Part::Star);
                rest = &rest[1..];
            } else {
                let mut buf = [0; 4];
                literal.extend(c.encode_utf8(&mut buf).bytes().map(|b| b.to_ascii_lowercase()));
                rest = &rest[c.len_utf8()..];
            }
        }
        flush(&mut parts, &mut literal);
        Self { source: pattern.to_owned(), parts }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `origin` matches, with `host` standing for `{{host}}`.
    pub fn matches(&self, origin: &str, host: &str) -> bool {
        let text: Vec<u8> = origin.trim().bytes().map(|b| b.to_ascii_lowercase()).collect();
        let host: Vec<u8> = host.trim().bytes().map(|b| b.to_ascii_lowercase()).collect();
        // reachable[j]: the parts so far can match exactly text[..j]. O(pattern x origin).
        let mut reachable = vec![false; text.len() + 1];
        if let Some(first) = reachable.first_mut() {
            *first = true;
        }
        let mut next = vec![false; text.len() + 1];
        for part in &self.parts {
            next.iter_mut().for_each(|r| *r = false);
            match part {
                Part::Literal(bytes) => advance_literal(&reachable, &mut next, &text, bytes),
                Part::Host => advance_literal(&reachable, &mut next, &text, &host),
                Part::Star => {
                    let mut run = false;
                    for (j, slot) in next.iter_mut().enumerate() {
                        // Extend a star run over text[j - 1] unless it is a `/`.
                        let extends = run && j > 0 && text.get(j - 1).is_some_and(|&b| b != b'/');
                        run = reachable.get(j).copied().unwrap_or(false) || extends;
                        *slot = run;
                    }
                }
            }
            std::mem::swap(&mut reachable, &mut next);
        }
        reachable.last().copied().unwrap_or(false)
    }
}

fn flush(parts: &mut Vec<Part>, literal: &mut Vec<u8>) {
    if !literal.is_empty() {
        parts.push(Part::Literal(std::mem::take(literal)));
    }
}

/// `next[j + len] = reachable[j] && text[j..j + len] == bytes`.
fn advance_literal(reachable: &[bool], next: &mut [bool], text: &[u8], bytes: &[u8]) {
    for (j, _) in reachable.iter().enumerate().filter(|(_, r)| **r) {
        let end = j + bytes.len();
        match next.get_mut(end) {
            Some(slot) if text.get(j..end) == Some(bytes) => *slot = true,
            _ => {}
        }
    }
}

/// The SameOrigin rule: the origin's host and port equal the `Host` header's.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        80
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        443
    } else {
        return false;
    };
    let (Some((origin_host, origin_port)), Some((host_host, host_port))) =
        (parse_authority(authority), parse_authority(host))
    else {
        return false;
    };
    origin_host.eq_ignore_ascii_case(host_host)
        && origin_port.unwrap_or(default_port) == host_port.unwrap_or(default_port)
}

/// Splits `host[:port]` (the host may be a bracketed IPv6 literal, kept with its brackets).
/// `None` for an empty host, a bad port, or characters outside an RFC 3986 host.
pub(crate) fn parse_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, rest) = authority.split_at(close + 1);
        let inner = host.get(1..host.len() - 1)?;
        if !inner.contains(':') || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || !(host.starts_with('[') || host.bytes().all(is_reg_name_byte)) {
        return None;
    }
    let port = match port {
        None => None,
        Some(port) => Some(parse_port(port)?),
    };
    Some((host, port))
}

/// A decimal port of one to five digits, at most 65535 (0 is accepted here).
pub(crate) fn parse_port(port: &str) -> Option<u16> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

/// RFC 3986 `reg-name` bytes: unreserved, percent-encoding and sub-delims.
pub(crate) fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_allows_matching_host_case_insensitively() {
        let p = OriginPolicy::SameOrigin;
        assert!(p.allows(Some("http://example.com"), "example.com"));
        assert!(p.allows(Some("HTTP://EXAMPLE.com"), "Example.COM"));
        assert!(p.allows(Some("https://example.com"), "example.com"));
        assert!(p.allows(Some("wss://example.com"), "example.com"));
    }

    #[test]
    fn same_origin_normalizes_default_ports() {
        let p = OriginPolicy::SameOrigin;
        assert!(p.allows(Some("http://example.com:80"), "example.com"));
        assert!(p.allows(Some("http://example.com"), "example.com:80"));
        assert!(p.allows(Some("https://example.com"), "example.com:443"));
        assert!(p.allows(Some("https://example.com:8443"), "example.com:8443"));
        assert!(!p.allows(Some("http://example.com"), "example.com:443"));
        assert!(!p.allows(Some("https://example.com"), "example.com:80"));
        assert!(!p.allows(Some("http://example.com:8080"), "example.com"));
        assert!(!p.allows(Some("http://example.com:8080"), "example.com:8081"));
    }

    #[test]
    fn same_origin_refuses_other_hosts_null_and_garbage() {
        let p = OriginPolicy::SameOrigin;
        for origin in [
            "http://evil.com",
            "null",
            "",
            "example.com",
            "ftp://example.com",
            "http://example.com/",
            "http://user@example.com",
            "http://example.com:",
            "http://example.com:99999",
            "http://example.com:+80",
            "http://",
            "http://[::1",
            "http://example.com.evil.com",
        ] {
            assert!(!p.allows(Some(origin), "example.com"), "{origin}");
        }
    }

    #[test]
    fn same_origin_handles_ipv6_literals() {
        let p = OriginPolicy::SameOrigin;
        assert!(p.allows(Some("http://[::1]:9001"), "[::1]:9001"));
        assert!(p.allows(Some("http://[::1]"), "[::1]:80"));
        assert!(!p.allows(Some("http://[::1]:9001"), "[::2]:9001"));
        assert!(!p.allows(Some("http://[zz]"), "[zz]"));
    }

    #[test]
    fn missing_origin_is_allowed_under_every_policy() {
        for p in [OriginPolicy::SameOrigin, OriginPolicy::AllowList(vec![]), OriginPolicy::InsecureAllowAny] {
            assert!(p.allows(None, "example.com"), "{p:?}");
        }
    }

    #[test]
    fn insecure_allow_any_allows_everything() {
        let p = OriginPolicy::InsecureAllowAny;
        assert!(p.allows(Some("null"), "example.com"));
        assert!(p.allows(Some("https://evil.com"), "example.com"));
    }

    #[test]
    fn allow_list_matches_wildcards_not_across_slashes() {
        let p = OriginPolicy::AllowList(vec![OriginPattern::new("https://*.example.com")]);
        assert!(p.allows(Some("https://a.example.com"), "x"));
        assert!(p.allows(Some("https://a.b.example.com"), "x"));
        assert!(p.allows(Some("HTTPS://A.Example.COM"), "x"));
        assert!(!p.allows(Some("https://example.com"), "x"));
        assert!(!p.allows(Some("http://a.example.com"), "x"));
        assert!(!p.allows(Some("https://a.example.com.evil.com"), "x"));
        assert!(!p.allows(Some("https://evil.com/.example.com"), "x"));
        assert!(!p.allows(Some("https://a.example.com:8443"), "x"));
        assert!(!p.allows(Some("null"), "x"));
    }

    #[test]
    fn allow_list_substitutes_host() {
        let p = OriginPolicy::AllowList(vec![OriginPattern::new("http*://{{host}}")]);
        assert!(p.allows(Some("http://example.com"), "example.com"));
        assert!(p.allows(Some("https://Example.com:8080"), "example.COM:8080"));
        assert!(!p.allows(Some("https://example.com"), "example.com:8080"));
        assert!(!p.allows(Some("https://evil.com"), "example.com"));
        // The host value is literal: a `*` in it is no wildcard.
        assert!(!p.allows(Some("https://evil.com"), "*"));
        assert!(p.allows(Some("https://*"), "*"));
    }

    #[test]
    fn allow_list_exact_and_multiple_patterns() {
        let p = OriginPolicy::AllowList(vec![
            OriginPattern::new("https://app.example.com"),
            OriginPattern::new("http://localhost:*"),
        ]);
        assert!(p.allows(Some("https://app.example.com"), "x"));
        assert!(p.allows(Some("http://localhost:3000"), "x"));
        assert!(p.allows(Some("http://localhost:"), "x"));
        assert!(!p.allows(Some("http://localhost"), "x"));
        assert!(!p.allows(Some("https://app.example.co"), "x"));
        assert!(!p.allows(Some("https://app.example.comm"), "x"));
        assert!(!OriginPolicy::AllowList(vec![]).allows(Some("https://a"), "a"));
    }

    #[test]
    fn pattern_star_backtracks() {
        let p = OriginPattern::new("*a*b");
        assert!(p.matches("xxaxxaxxb", "h"));
        assert!(!p.matches("xxaxxaxx", "h"));
        assert!(OriginPattern::new("*").matches("", "h"));
        assert!(OriginPattern::new("").matches("", "h"));
        assert!(!OriginPattern::new("").matches("a", "h"));
        assert!(OriginPattern::new("é*").matches("éa", "h"));
        assert_eq!(OriginPattern::new("a*{{host}}").as_str(), "a*{{host}}");
    }
}
