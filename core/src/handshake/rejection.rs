//! A server's refusal of the upgrade (a response other than `101`), read to its end so that the
//! client can say why: the body is framed by `Content-Length`, the chunked transfer coding or
//! the end of the connection (RFC 7230 section 3.3.3), and at most
//! [`Limits::max_rejection_body`](super::Limits::max_rejection_body) bytes of it are kept.

use bytes::Bytes;

use super::HandshakeError;
use super::http::{Headers, list_contains, values};

/// A refusal whose body is being read.
#[derive(Debug)]
pub(crate) struct Rejection {
    status: u16,
    reason: String,
    headers: Headers,
    body: Vec<u8>,
    /// The most body bytes kept.
    max: usize,
    framing: Framing,
}

/// How the rest of the body is delimited.
#[derive(Debug)]
enum Framing {
    /// The body has ended.
    Ended,
    /// `Content-Length`: this many bytes are still to come.
    Length(usize),
    /// `Transfer-Encoding: chunked`, in this part of a chunk.
    Chunked(Chunk),
    /// The body runs to the end of the connection.
    UntilClose,
}

/// Where a chunked body is (RFC 7230 section 4.1).
#[derive(Debug)]
enum Chunk {
    /// In a chunk-size line: the size so far, whether it has a digit, and whether its extension
    /// (after `;`) started.
    Size { size: usize, digits: bool, extension: bool },
    /// In chunk data: this many bytes are still to come.
    Data(usize),
    /// After chunk data, up to the end of its line.
    DataEnd,
}

impl Rejection {
    /// Starts reading the body of a response with `status` and `headers`, keeping at most `max`
    /// bytes of it.
    pub(crate) fn new(status: u16, reason: String, headers: Headers, max: usize) -> Self {
        let framing = if matches!(status, 100..=199 | 204 | 304) {
            Framing::Ended
        } else if let Some(last) = values(&headers, "Transfer-Encoding").last() {
            // RFC 7230 section 3.3.3 items 3 and 5: chunked when it is the final coding,
            // otherwise until the connection closes; Transfer-Encoding overrides Content-Length.
            let last_coding = last.rsplit(|&b| b == b',').next().unwrap_or_default();
            if list_contains(std::iter::once(last_coding), "chunked") {
                Framing::Chunked(Chunk::Size { size: 0, digits: false, extension: false })
            } else {
                Framing::UntilClose
            }
        } else {
            match content_length(&headers) {
                Some(0) => Framing::Ended,
                Some(length) => Framing::Length(length),
                None => Framing::UntilClose,
            }
        };
        Self { status, reason, headers, body: Vec::new(), max, framing }
    }

    /// Reads body bytes; bytes after the end of the body are ignored.
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.is_complete() {
            let taken = match &mut self.framing {
                Framing::Ended => return,
                Framing::UntilClose => {
                    let n = data.len();
                    keep(&mut self.body, self.max, data);
                    n
                }
                Framing::Length(remaining) => {
                    let n = (*remaining).min(data.len());
                    *remaining -= n;
                    keep(&mut self.body, self.max, data.get(..n).unwrap_or_default());
                    if *remaining == 0 {
                        self.framing = Framing::Ended;
                    }
                    n
                }
                Framing::Chunked(chunk) => {
                    let (n, ended) = dechunk(chunk, data, &mut self.body, self.max);
                    if ended {
                        self.framing = Framing::Ended;
                    }
                    n
                }
            };
            data = data.get(taken..).unwrap_or_default();
        }
    }

    /// Whether the body has ended or as much of it as is kept has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.framing, Framing::Ended) || self.body.len() >= self.max
    }

    /// The error that reports the refusal, with the body that arrived.
    pub(crate) fn into_error(self) -> HandshakeError {
        HandshakeError::NotSwitchingProtocols {
            status: self.status,
            reason: self.reason,
            headers: self.headers,
            body: Bytes::from(self.body),
        }
    }
}

/// Appends as much of `data` to `body` as fits under `max`.
fn keep(body: &mut Vec<u8>, max: usize, data: &[u8]) {
    let room = max.saturating_sub(body.len());
    body.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
}

/// The `Content-Length`, when it is one decimal number (repeated values must agree).
fn content_length(headers: &Headers) -> Option<usize> {
    let mut length = None;
    for value in values(headers, "Content-Length").flat_map(|v| v.split(|&b| b == b',')) {
        let value = std::str::from_utf8(super::http::trim_ows(value)).ok()?;
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: usize = value.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// Decodes chunked bytes from `data` into `body` (up to `max`); returns how many bytes were
/// read and whether the last chunk was reached (trailers are not read). A malformed size line
/// ends the body.
fn dechunk(chunk: &mut Chunk, data: &[u8], body: &mut Vec<u8>, max: usize) -> (usize, bool) {
    let mut read = 0;
    while let Some(rest) = data.get(read..).filter(|rest| !rest.is_empty()) {
        if body.len() >= max {
            break;
        }
        match chunk {
            Chunk::Size { size, digits, extension } => {
                let byte = rest[0];
                read += 1;
                match byte {
                    b'\n' if *digits && *size > 0 => *chunk = Chunk::Data(*size),
                    // The last chunk, or a size line with no digits.
                    b'\n' => return (read, true),
                    _ if *extension || byte == b'\r' => {}
                    b';' | b' ' | b'\t' => *extension = true,
                    _ => match (byte as char).to_digit(16) {
                        Some(digit) => {
                            *size = size.saturating_mul(16).saturating_add(digit as usize);
                            *digits = true;
                        }
                        None => return (read, true),
                    },
                }
            }
            Chunk::Data(remaining) => {
                let n = (*remaining).min(rest.len());
                keep(body, max, rest.get(..n).unwrap_or_default());
                read += n;
                *remaining -= n;
                if *remaining == 0 {
                    *chunk = Chunk::DataEnd;
                }
            }
            Chunk::DataEnd => {
                read += 1;
                if rest[0] == b'\n' {
                    *chunk = Chunk::Size { size: 0, digits: false, extension: false };
                }
            }
        }
    }
    (read, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::http::owned_headers;

    fn rejection(headers: &[(&str, &str)], max: usize) -> Rejection {
        let parsed: Vec<_> =
            headers.iter().map(|(name, value)| httparse::Header { name, value: value.as_bytes() }).collect();
        Rejection::new(400, "Bad Request".into(), owned_headers(&parsed), max)
    }

    fn body(rejection: Rejection) -> Vec<u8> {
        match rejection.into_error() {
            HandshakeError::NotSwitchingProtocols { body, .. } => body.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_body_completes_at_its_length_in_any_pieces() {
        let data = b"hello, worldEXTRA";
        for split in 0..=12 {
            let mut r = rejection(&[("Content-Length", "12")], 1024);
            r.push(&data[..split]);
            assert_eq!(r.is_complete(), split == 12, "split {split}");
            r.push(&data[split..]);
            assert!(r.is_complete());
            assert_eq!(body(r), b"hello, world");
        }
    }

    #[test]
    fn body_is_cut_at_the_bound() {
        let mut r = rejection(&[("Content-Length", "100000")], 8);
        r.push(b"0123456789");
        assert!(r.is_complete());
        assert_eq!(body(r), b"01234567");
        let mut r = rejection(&[], 4);
        r.push(b"ab");
        assert!(!r.is_complete(), "a body that runs to the close waits for more");
        r.push(b"cdef");
        assert!(r.is_complete());
        assert_eq!(body(r), b"abcd");
        let mut r = rejection(&[("Transfer-Encoding", "chunked")], 3);
        r.push(b"a\r\n0123456789\r\n");
        assert!(r.is_complete());
        assert_eq!(body(r), b"012");
    }

    #[test]
    fn chunked_body_is_decoded_in_any_pieces() {
        let data = b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 0..data.len() {
            let mut r = rejection(&[("Transfer-Encoding", "gzip, chunked"), ("Content-Length", "3")], 1024);
            r.push(&data[..split]);
            r.push(&data[split..]);
            assert!(r.is_complete(), "split {split}");
            assert_eq!(body(r), b"hello, world", "split {split}");
        }
    }

    #[test]
    fn malformed_chunk_size_ends_the_body() {
        let mut r = rejection(&[("Transfer-Encoding", "chunked")], 1024);
        r.push(b"2\r\nok\r\nzz\r\nmore");
        assert!(r.is_complete());
        assert_eq!(body(r), b"ok");
        let mut r = rejection(&[("Transfer-Encoding", "chunked")], 1024);
        r.push(b"fffffffffffffffffffffffff\r\nxy");
        assert!(!r.is_complete(), "a huge chunk is read up to the bound");
        assert_eq!(body(r), b"xy");
    }

    #[test]
    fn responses_without_a_body_complete_at_once() {
        for status in [204, 304] {
            let r = Rejection::new(status, String::new(), Headers::default(), 1024);
            assert!(r.is_complete());
        }
        assert!(rejection(&[("Content-Length", "0")], 1024).is_complete());
        assert!(rejection(&[], 0).is_complete(), "nothing is kept with a bound of 0");
    }

    #[test]
    fn invalid_or_conflicting_content_length_reads_to_the_close() {
        for value in ["-1", "1x", "", "3, 4"] {
            let mut r = rejection(&[("Content-Length", value)], 1024);
            r.push(b"abcdef");
            assert!(!r.is_complete(), "{value:?}");
        }
        let mut r = rejection(&[("Content-Length", "3"), ("content-length", "3")], 1024);
        r.push(b"abcdef");
        assert_eq!(body(r), b"abc");
    }

    #[test]
    fn non_chunked_transfer_coding_reads_to_the_close() {
        let mut r = rejection(&[("Transfer-Encoding", "chunked, gzip"), ("Content-Length", "1")], 1024);
        r.push(b"abc");
        assert!(!r.is_complete());
    }
}
