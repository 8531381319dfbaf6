//! Incremental UTF-8 validation of text messages (RFC 6455 section 8.1).
//!
//! A text message arrives in fragments, and each fragment's payload may arrive in pieces, so a multi-byte character can
//! be split anywhere. [`Utf8Validator`] validates the pieces as they come and fails fast: at the first byte that can no
//! longer start or continue a valid sequence (RFC 3629 section 4, Unicode table 3-7), not at the end of the message.
//! The peer's violation maps to close code 1007 (RFC 6455 section 7.4.1).
//!
//! The bulk of each piece is checked by `std::str::from_utf8`, so a piece without a split character costs one call of
//! std's validator (which has a fast path for ASCII) and no per-byte work here. Only the at most three bytes of a
//! character split across pieces are checked one by one, against the table in [`classify`].

use std::fmt;

/// Incremental validator for the payload of one text message (RFC 6455 section 8.1).
///
/// Call [`feed`](Self::feed) with each piece of the message's payload in order, then [`finish`](Self::finish) at the
/// end of the message, which also makes the validator ready for the next message. An error is sticky: once `feed`
/// fails, every later `feed` and the next `finish` report the same error, and `finish` resets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Utf8Validator {
    /// The bytes of an incomplete character at the end of the input so far (`pending_len` of them, at most 3).
    pending: [u8; 4],
    /// How many bytes of `pending` are in use.
    pending_len: u8,
    /// Bytes of the message before `pending`, all of them valid.
    valid_up_to: usize,
    /// The first error found in this message, if any.
    error: Option<Utf8Error>,
}

/// A text message's payload is not valid UTF-8 (RFC 6455 section 8.1; the connection fails with close code 1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utf8Error {
    /// Bytes from the start of the message that are valid UTF-8: the invalid or truncated sequence starts here.
    valid_up_to: usize,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub(crate) const fn new() -> Self {
        Self { pending: [0; 4], pending_len: 0, valid_up_to: 0, error: None }
    }

    /// Validates the next piece of the message.
    ///
    /// Succeeds if everything fed so far is valid UTF-8 or a valid UTF-8 prefix (a character may be split across
    /// pieces); fails as soon as a byte cannot start or continue a valid sequence: an overlong encoding, a UTF-16
    /// surrogate, a code point above U+10FFFF, a stray continuation byte, or a byte never used in UTF-8.
    #[inline]
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len == 0 && self.error.is_none() {
            // The common case: no character split at the end of the last piece.
            return self.feed_bulk(bytes);
        }
        self.feed_slow(bytes)
    }

    /// Ends the message: fails if it ended in the middle of a character, or if an earlier [`feed`](Self::feed) failed.
    /// Either way the validator is reset for the next message.
    pub(crate) fn finish(&mut self) -> Result<(), Utf8Error> {
        let result = match self.error {
            Some(error) => Err(error),
            None if self.pending_len != 0 => Err(Utf8Error { valid_up_to: self.valid_up_to }),
            None => Ok(()),
        };
        self.reset();
        result
    }

    /// Forgets the current message, for example when the connection abandons it.
    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    /// Validates `bytes` with nothing pending.
    #[inline]
    fn feed_bulk(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        match std::str::from_utf8(bytes) {
            Ok(_) => {
                self.valid_up_to = self.valid_up_to.saturating_add(bytes.len());
                Ok(())
            }
            Err(error) => self.bulk_error(bytes, error.valid_up_to(), error.error_len()),
        }
    }

    /// Handles a failed `from_utf8`: either a valid but incomplete character at the end, kept as pending, or an invalid
    /// sequence.
    #[cold]
    fn bulk_error(&mut self, bytes: &[u8], valid: usize, error_len: Option<usize>) -> Result<(), Utf8Error> {
        let start = self.valid_up_to.saturating_add(valid);
        let tail = &bytes[valid..];
        // std documents `error_len() == None` as "the end of the input was reached unexpectedly"; checking the (at most
        // 3 bytes of) tail here keeps fail-fast exact even if some std version reported that for an invalid prefix.
        if error_len.is_none() && matches!(classify(tail), Sequence::Incomplete) {
            self.pending[..tail.len()].copy_from_slice(tail);
            // `classify` says `Incomplete` only for 1 to 3 bytes.
            self.pending_len = tail.len() as u8;
            self.valid_up_to = start;
            Ok(())
        } else {
            self.fail(start)
        }
    }

    /// Completes the pending character byte by byte, then validates the rest in bulk.
    fn feed_slow(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        while let Some((&byte, rest)) = bytes.split_first() {
            let len = usize::from(self.pending_len);
            self.pending[len] = byte;
            bytes = rest;
            match classify(&self.pending[..=len]) {
                Sequence::Incomplete => self.pending_len += 1,
                Sequence::Complete => {
                    self.valid_up_to = self.valid_up_to.saturating_add(len + 1);
                    self.pending_len = 0;
                    return self.feed_bulk(bytes);
                }
                Sequence::Invalid => return self.fail(self.valid_up_to),
            }
        }
        Ok(())
    }

    /// Records the (sticky) error for an invalid sequence starting `valid_up_to` bytes into the message.
    #[cold]
    fn fail(&mut self, valid_up_to: usize) -> Result<(), Utf8Error> {
        let error = Utf8Error { valid_up_to };
        self.error = Some(error);
        self.pending_len = 0;
        Err(error)
    }
}

impl Utf8Error {
    /// Bytes from the start of the message that are valid UTF-8; the invalid or truncated sequence starts here.
    pub(crate) fn valid_up_to(&self) -> usize {
        self.valid_up_to
    }
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid UTF-8 in text message after {} valid bytes", self.valid_up_to())
    }
}

impl std::error::Error for Utf8Error {}

/// Validates `message` as one piece with [`Utf8Validator`]; `true` if it is valid UTF-8. For `benches/core.rs`, which
/// cannot reach the crate-private validator; not part of the API.
#[doc(hidden)]
pub fn utf8_validate_whole(message: &[u8]) -> bool {
    let mut validator = Utf8Validator::new();
    validator.feed(message).is_ok() && validator.finish().is_ok()
}

/// Validates `message` fed in pieces of `piece_len` bytes (the last may be shorter); `true` if it is valid UTF-8. For
/// `benches/core.rs`; not part of the API.
///
/// # Panics
///
/// If `piece_len` is 0.
#[doc(hidden)]
pub fn utf8_validate_in_pieces(message: &[u8], piece_len: usize) -> bool {
    let mut validator = Utf8Validator::new();
    message.chunks(piece_len).all(|piece| validator.feed(piece).is_ok()) && validator.finish().is_ok()
}

/// What the bytes of one possibly partial character are.
enum Sequence {
    /// A whole, valid character.
    Complete,
    /// A valid prefix of a character: 1 to 3 bytes.
    Incomplete,
    /// Not a prefix of any valid character.
    Invalid,
}

/// Classifies `seq`, the bytes of one character from its first byte on (at most 4 of them), after Unicode table 3-7
/// ("well-formed UTF-8 byte sequences"), which rules out overlong forms, surrogates and code points above U+10FFFF by
/// narrowing the range of the second byte.
fn classify(seq: &[u8]) -> Sequence {
    let Some((&first, rest)) = seq.split_first() else {
        return Sequence::Invalid;
    };
    // The character's length, and the range its second byte must lie in.
    let (len, second) = match first {
        0x00..=0x7f => (1, 0x80..=0xbf),
        0xc2..=0xdf => (2, 0x80..=0xbf),
        0xe0 => (3, 0xa0..=0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80..=0xbf),
        0xed => (3, 0x80..=0x9f),
        0xf0 => (4, 0x90..=0xbf),
        0xf1..=0xf3 => (4, 0x80..=0xbf),
        0xf4 => (4, 0x80..=0x8f),
        // 0x80..=0xbf continuation, 0xc0..=0xc1 overlong, 0xf5..=0xff beyond U+10FFFF or unused.
        _ => return Sequence::Invalid,
    };
    if seq.len() > len {
        return Sequence::Invalid;
    }
    for (i, byte) in rest.iter().enumerate() {
        let valid = if i == 0 { second.contains(byte) } else { (0x80..=0xbf).contains(byte) };
        if !valid {
            return Sequence::Invalid;
        }
    }
    if seq.len() == len { Sequence::Complete } else { Sequence::Incomplete }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `pieces` then finishes; returns the index of the failing piece (`pieces.len()` for `finish`) and the
    /// error, or `None` if the message is valid.
    fn run(pieces: &[&[u8]]) -> Option<(usize, Utf8Error)> {
        let mut validator = Utf8Validator::new();
        for (i, piece) in pieces.iter().enumerate() {
            if let Err(error) = validator.feed(piece) {
                return Some((i, error));
            }
        }
        validator.finish().err().map(|error| (pieces.len(), error))
    }

    /// Feeds `bytes` one byte at a time; returns the index of the byte whose feed failed (`bytes.len()` for `finish`)
    /// and the error's `valid_up_to`.
    fn fail_position_bytewise(bytes: &[u8]) -> Option<(usize, usize)> {
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        run(&pieces).map(|(i, error)| (i, error.valid_up_to()))
    }

    /// The index of the first byte at which `bytes` stops being a valid UTF-8 prefix, by std's own judgement of every
    /// prefix; `None` if every prefix is a valid prefix.
    fn decisive_position(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find(|&end| matches!(std::str::from_utf8(&bytes[..=end]), Err(e) if e.error_len().is_some()))
    }

    #[test]
    fn utf8_valid_ascii_whole_and_bytewise() {
        let text = b"Hello, WebSocket! {\"json\": [1, 2, 3]}";
        assert_eq!(run(&[text]), None);
        assert_eq!(fail_position_bytewise(text), None);
    }

    #[test]
    fn utf8_valid_empty_message() {
        assert_eq!(run(&[]), None);
        assert_eq!(run(&[b"", b""]), None);
    }

    #[test]
    fn utf8_valid_kuhn_first_and_last_of_each_length() {
        // Markus Kuhn's UTF-8 stress test, sections 2.1 to 2.3: boundary characters of every length.
        for c in ['\u{0}', '\u{7f}', '\u{80}', '\u{7ff}', '\u{800}', '\u{d7ff}', '\u{e000}', '\u{fffd}', '\u{ffff}'] {
            assert_eq!(fail_position_bytewise(c.to_string().as_bytes()), None, "U+{:04X}", c as u32);
        }
        for c in ['\u{10000}', '\u{10ffff}'] {
            assert_eq!(fail_position_bytewise(c.to_string().as_bytes()), None, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn utf8_valid_autobahn_6_2_hello_kosme_split_at_every_byte() {
        let text = "Hello-µ@ßöäüàá-UTF-8!!".as_bytes();
        let kosme = "κόσμε".as_bytes();
        for message in [text, kosme] {
            for split in 0..=message.len() {
                assert_eq!(run(&[&message[..split], &message[split..]]), None, "split at {split}");
            }
        }
    }

    #[test]
    fn utf8_valid_every_string_split_at_every_pair_of_positions() {
        let samples = [
            "",
            "a",
            "ascii only",
            "κόσμε",
            "\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
            "mixed: ü, €, 𝄞, 中文, emoji 😀!",
            "\u{d7ff}\u{e000}\u{fffd}",
        ];
        for sample in samples {
            let bytes = sample.as_bytes();
            for a in 0..=bytes.len() {
                for b in a..=bytes.len() {
                    assert_eq!(run(&[&bytes[..a], &bytes[a..b], &bytes[b..]]), None, "{sample:?} split {a} {b}");
                }
            }
        }
    }

    #[test]
    fn utf8_incomplete_prefix_feed_succeeds_finish_fails() {
        // "κ" then the first two bytes of "ό" (U+1F79): a valid prefix, so feeding succeeds.
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(&[0xce, 0xba, 0xe1, 0xbd]), Ok(()));
        assert_eq!(validator.finish(), Err(Utf8Error { valid_up_to: 2 }));
        // `finish` reset the validator.
        assert_eq!(validator.feed(b"ok"), Ok(()));
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn utf8_fail_fast_beyond_10ffff_at_second_byte() {
        assert_eq!(run(&[&[0xf4, 0x90]]), Some((0, Utf8Error { valid_up_to: 0 })));
        assert_eq!(fail_position_bytewise(&[0xf4, 0x90]), Some((1, 0)));
        assert_eq!(fail_position_bytewise(b"ab\xf4\x90\x80\x80"), Some((3, 2)));
    }

    #[test]
    fn utf8_fail_fast_surrogate_at_second_byte() {
        assert_eq!(run(&[&[0xed, 0xa0]]), Some((0, Utf8Error { valid_up_to: 0 })));
        assert_eq!(fail_position_bytewise(&[0xed, 0xa0, 0x80]), Some((1, 0)));
        // Low surrogate U+DC00 and the largest, U+DFFF.
        assert_eq!(fail_position_bytewise(&[0xed, 0xb0, 0x80]), Some((1, 0)));
        assert_eq!(fail_position_bytewise(&[0xed, 0xbf, 0xbf]), Some((1, 0)));
    }

    #[test]
    fn utf8_fail_fast_c0_c1_f5_ff_at_first_byte() {
        for byte in [0xc0, 0xc1, 0xf5, 0xf6, 0xf7, 0xf8, 0xfb, 0xfc, 0xfd, 0xfe, 0xff] {
            assert_eq!(run(&[&[byte]]), Some((0, Utf8Error { valid_up_to: 0 })), "{byte:#04x}");
            assert_eq!(fail_position_bytewise(&[b'x', byte]), Some((1, 1)), "{byte:#04x}");
        }
    }

    #[test]
    fn utf8_fail_fast_overlong_at_second_byte() {
        // Kuhn 4.1 to 4.3: overlong "/", the largest overlong of each length, and overlong NUL.
        let cases: [&[u8]; 8] = [
            &[0xe0, 0x80, 0xaf],
            &[0xf0, 0x80, 0x80, 0xaf],
            &[0xe0, 0x9f, 0xbf],
            &[0xf0, 0x8f, 0xbf, 0xbf],
            &[0xe0, 0x80, 0x80],
            &[0xf0, 0x80, 0x80, 0x80],
            &[0xe0, 0x80],
            &[0xf0, 0x80],
        ];
        for case in cases {
            assert_eq!(fail_position_bytewise(case), Some((1, 0)), "{case:02x?}");
            assert_eq!(run(&[case]), Some((0, Utf8Error { valid_up_to: 0 })), "{case:02x?}");
        }
        // Two-byte overlongs fail at their first byte, which is never valid.
        for case in [[0xc0, 0xaf], [0xc1, 0xbf], [0xc0, 0x80]] {
            assert_eq!(fail_position_bytewise(&case), Some((0, 0)), "{case:02x?}");
        }
        // Five- and six-byte forms (Kuhn 4.1) fail at their first byte.
        assert_eq!(fail_position_bytewise(&[0xf8, 0x80, 0x80, 0x80, 0xaf]), Some((0, 0)));
        assert_eq!(fail_position_bytewise(&[0xfc, 0x80, 0x80, 0x80, 0x80, 0xaf]), Some((0, 0)));
    }

    #[test]
    fn utf8_fail_fast_lone_continuation_bytes() {
        // Kuhn 3.1: every continuation byte alone, and after a complete character.
        for byte in 0x80..=0xbf {
            assert_eq!(fail_position_bytewise(&[byte]), Some((0, 0)), "{byte:#04x}");
            assert_eq!(fail_position_bytewise(&[0xc3, 0xa9, byte]), Some((2, 2)), "{byte:#04x}");
            assert_eq!(run(&[b"ab", &[0xc3], &[0xa9, byte]]), Some((2, Utf8Error { valid_up_to: 4 })));
        }
    }

    #[test]
    fn utf8_fail_fast_start_byte_followed_by_non_continuation() {
        // Kuhn 3.2: lonely start characters followed by a space.
        for (first, len) in [(0xc2, 2), (0xdf, 2), (0xe1, 3), (0xef, 3), (0xf1, 4), (0xf3, 4)] {
            let mut bytes = vec![first];
            bytes.extend(std::iter::repeat_n(0x80, len - 2));
            bytes.push(b' ');
            assert_eq!(fail_position_bytewise(&bytes), Some((len - 1, 0)), "{bytes:02x?}");
        }
    }

    #[test]
    fn utf8_truncated_sequences_fail_at_message_end() {
        // Kuhn 3.3: sequences with the last continuation byte missing, each a valid prefix until `finish`.
        let cases: [&[u8]; 8] = [
            &[0xc2],
            &[0xdf],
            &[0xe0, 0xa0],
            &[0xef, 0xbf],
            &[0xf0, 0x90, 0x80],
            &[0xf4, 0x8f, 0xbf],
            &[0xe1],
            &[0xf3],
        ];
        for case in cases {
            let mut message = b"abc".to_vec();
            message.extend_from_slice(case);
            assert_eq!(fail_position_bytewise(&message), Some((message.len(), 3)), "{case:02x?}");
            assert_eq!(run(&[&message]), Some((1, Utf8Error { valid_up_to: 3 })), "{case:02x?}");
        }
        // Kuhn 3.4: truncated sequences back to back fail at the second, whose first byte cannot continue the first.
        assert_eq!(fail_position_bytewise(&[0xc2, 0xe0, 0xa0]), Some((1, 0)));
    }

    #[test]
    fn utf8_error_is_sticky_until_finish() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(b"ok\xff"), Err(Utf8Error { valid_up_to: 2 }));
        assert_eq!(validator.feed(b"more"), Err(Utf8Error { valid_up_to: 2 }));
        assert_eq!(validator.finish(), Err(Utf8Error { valid_up_to: 2 }));
        assert_eq!(validator.feed(b"next message"), Ok(()));
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn utf8_reset_drops_pending_bytes() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(&[b'a', 0xe2, 0x82]), Ok(()));
        validator.reset();
        assert_eq!(validator.feed(b"b"), Ok(()));
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn utf8_valid_up_to_counts_across_pieces() {
        // "€" split 1 + 2, then an invalid byte after 7 valid bytes.
        let pieces: [&[u8]; 4] = [b"ab", &[0xe2], &[0x82, 0xac, b'c'], &[b'd', 0xc0]];
        assert_eq!(run(&pieces), Some((3, Utf8Error { valid_up_to: 7 })));
        assert_eq!(Utf8Error { valid_up_to: 7 }.to_string(), "invalid UTF-8 in text message after 7 valid bytes");
    }

    #[test]
    fn utf8_bytewise_agrees_with_std_on_all_short_prefixes() {
        // Every 1- and 2-byte sequence, and 3-byte ones with the third byte sampled around the continuation range
        // (under miri, the second byte sampled around the range boundaries).
        let boundaries: &[u8] = &[0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
        let thirds: &[u8] = if cfg!(miri) { &[0x00, 0x80] } else { &[0x00, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0] };
        for first in 0..=0xffu8 {
            for second in 0..=0xffu8 {
                if cfg!(miri) && !boundaries.contains(&second) {
                    continue;
                }
                for &third in thirds {
                    let bytes = [first, second, third];
                    for len in 1..=3 {
                        let prefix = &bytes[..len];
                        let std_prefix_ok = decisive_position(prefix).is_none();
                        let ours_ok = fail_position_bytewise(prefix).is_none_or(|(at, _)| at == len);
                        assert_eq!(ours_ok, std_prefix_ok, "{prefix:02x?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bench_entry_points_agree() {
        let text = "κόσμε €𝄞".repeat(10);
        assert!(utf8_validate_whole(text.as_bytes()));
        assert!(utf8_validate_in_pieces(text.as_bytes(), 7));
        assert!(!utf8_validate_in_pieces(&text.as_bytes()[..text.len() - 1], 7));
        assert!(!utf8_validate_whole(b"\xed\xa0\x80"));
    }

    fn proptest_config() -> ProptestConfig {
        if cfg!(miri) {
            ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() }
        } else {
            ProptestConfig { cases: 2048, ..ProptestConfig::default() }
        }
    }

    /// Byte vectors that are mostly UTF-8 (so errors land anywhere, not just at the first byte) with some noise.
    fn mostly_utf8() -> impl Strategy<Value = Vec<u8>> {
        let atom = prop_oneof![
            4 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
            2 => "[a-z ]{1,4}".prop_map(String::into_bytes),
            1 => any::<u8>().prop_map(|b| vec![b]),
            1 => proptest::collection::vec(0x80u8..=0xff, 1..4),
        ];
        proptest::collection::vec(atom, 0..24).prop_map(|atoms| atoms.concat())
    }

    /// Splits `bytes` at the given cut points (taken modulo its length) into pieces.
    fn split<'a>(bytes: &'a [u8], cuts: &[proptest::sample::Index]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.windows(2).map(|window| &bytes[window[0]..window[1]]).collect()
    }

    fn check_split(bytes: &[u8], cuts: &[proptest::sample::Index]) -> Result<(), TestCaseError> {
        let pieces = split(bytes, cuts);
        let outcome = run(&pieces);
        match std::str::from_utf8(bytes) {
            Ok(_) => prop_assert_eq!(outcome, None),
            Err(std_error) => {
                let Some((failed_piece, error)) = outcome else {
                    return Err(TestCaseError::fail(format!("accepted invalid {bytes:02x?}")));
                };
                prop_assert_eq!(error.valid_up_to(), std_error.valid_up_to());
                // The piece holding the first byte that makes the input no longer a valid prefix, or `finish` if the
                // message merely ends early.
                let expected_piece = match decisive_position(bytes) {
                    Some(position) => {
                        let mut end = 0;
                        pieces.iter().position(|piece| {
                            end += piece.len();
                            position < end
                        })
                    }
                    None => None,
                }
                .unwrap_or(pieces.len());
                prop_assert_eq!(failed_piece, expected_piece, "pieces {:02x?}", pieces);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn utf8_in_pieces_accepts_iff_std_accepts_and_fails_in_decisive_piece_mostly_utf8(
            bytes in mostly_utf8(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            check_split(&bytes, &cuts)?;
        }

        #[test]
        fn utf8_in_pieces_accepts_iff_std_accepts_and_fails_in_decisive_piece_random_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            check_split(&bytes, &cuts)?;
        }

        #[test]
        fn utf8_valid_string_in_pieces_accepted(
            text in any::<String>(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            prop_assert_eq!(run(&split(text.as_bytes(), &cuts)), None);
        }
    }
}
