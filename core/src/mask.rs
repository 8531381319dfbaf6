//! Payload masking (RFC 6455 section 5.3).
//!
//! Every frame a client sends is masked: byte `i` of the payload is XORed with byte `i % 4` of the frame's 32-bit
//! masking key. Masking and unmasking are the same operation. [`apply_mask`] is the fast path used by the encoder and
//! the decoder; [`apply_mask_offset`] continues a mask in the middle of a payload that arrives in pieces.
//!
//! The fast path is plain safe code: the key is widened to a `u64` and the buffer is processed in 32-byte blocks of
//! four unaligned 64-bit words, which LLVM turns into SIMD loads and stores on every target with vector registers. A
//! benchmark (`cargo bench -p ferrule-core -- mask`) showed neither aligning the head, nor `align_to_mut`, nor an
//! explicit AVX2 path going any faster, so there is no `unsafe` here.

use bytes::BytesMut;

/// Masks (or unmasks) `buf` in place with the 4-byte masking `key` (RFC 6455 section 5.3).
///
/// Byte `i` of `buf` is XORed with `key[i % 4]`, so `buf` must start at byte 0 of the payload. Applying the same key
/// twice restores the original bytes.
///
/// ```
/// let mut payload = *b"Hello";
/// ferrule_core::apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
/// // The masked "Hello" of the RFC 6455 section 5.7 example frame.
/// assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ferrule_core::apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(&payload, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    // The key repeated twice, in memory order: XORing a word read with `from_ne_bytes` by it masks eight bytes whose
    // first one sits at a multiple of 4 from the start of `buf`, on either endianness.
    let key_word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);

    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for word in block.chunks_exact_mut(8) {
            xor_word(word, key_word);
        }
    }
    // Every block and every word is a multiple of 4 bytes long, so the key's phase is still 0 at each step below.
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for word in &mut words {
        xor_word(word, key_word);
    }
    for (byte, key_byte) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= key_byte;
    }
}

/// Appends `src` to `dst` masked (or unmasked) with `key`, as if `src` started at byte `offset` of the payload: one
/// pass over the bytes where copying them and then masking in place would take two.
pub(crate) fn extend_masked(dst: &mut BytesMut, src: &[u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    let key_word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    dst.reserve(src.len());
    let spare = &mut dst.spare_capacity_mut()[..src.len()];
    let mut out = spare.chunks_exact_mut(8);
    let mut words = src.chunks_exact(8);
    for (out, word) in (&mut out).zip(&mut words) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        for (out, byte) in out.iter_mut().zip((u64::from_ne_bytes(bytes) ^ key_word).to_ne_bytes()) {
            out.write(byte);
        }
    }
    // Every word is 8 bytes long, so the key's phase is still 0 here.
    for ((out, byte), key_byte) in out.into_remainder().iter_mut().zip(words.remainder()).zip(key.iter().cycle()) {
        out.write(byte ^ key_byte);
    }
    // SAFETY: the loops above wrote each of the first `src.len()` bytes of the spare capacity (`spare` is exactly that
    // long, and the word loop and the remainder loop together cover it), and `reserve` made that much room.
    unsafe { dst.set_len(dst.len() + src.len()) };
}

/// Masks `buf` as if it started at byte `offset` of the payload: byte `i` is XORed with `key[(offset + i) % 4]`.
///
/// The frame decoder uses this to unmask a payload that arrives in pieces, passing the number of payload bytes already
/// unmasked as `offset`.
#[inline]
pub(crate) fn apply_mask_offset(buf: &mut [u8], key: [u8; 4], offset: usize) {
    apply_mask(buf, rotate_key(key, offset));
}

/// The obvious byte-at-a-time masking loop: the reference the fast path is tested and benchmarked against.
#[doc(hidden)]
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Bytes per block of the main loop: four 64-bit words, which LLVM vectorizes as two SSE2 or one AVX2 operation.
const BLOCK: usize = 32;

/// XORs an 8-byte chunk with `key_word`.
#[inline(always)]
fn xor_word(word: &mut [u8], key_word: u64) {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(word);
    word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ key_word).to_ne_bytes());
}

/// The key as seen from byte `offset` of the payload: `rotate_key(key, offset)[i] == key[(offset + i) % 4]`.
#[inline]
fn rotate_key(mut key: [u8; 4], offset: usize) -> [u8; 4] {
    key.rotate_left(offset % 4);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys used by the exhaustive tests: the identity, a palindrome-free one, all ones, and two "random" ones.
    const KEYS: [[u8; 4]; 5] = [[0; 4], [1, 2, 3, 4], [0xff; 4], [0x37, 0xfa, 0x21, 0x3d], [0x9e, 0x05, 0xc4, 0x71]];

    /// The keys the exhaustive tests loop over: all of them, or two under miri, which is slow.
    const TEST_KEYS: &[[u8; 4]] = if cfg!(miri) { &[[0; 4], [0x37, 0xfa, 0x21, 0x3d]] } else { &KEYS };

    /// Lengths above the exhaustive 0..=64 range; skipped under miri, which is too slow for them.
    const LARGE_LENGTHS: &[usize] = if cfg!(miri) { &[100] } else { &[1000, 4096 + 3, 65536] };

    /// A buffer of `len` bytes that are not all equal, so a wrong key phase shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
    }

    /// Checks `apply_mask` against the reference on `buf[align..align + len]` of a larger buffer, and that the bytes
    /// around the sub-slice are untouched.
    fn check_against_reference(len: usize, align: usize, key: [u8; 4]) {
        let original = pattern(align + len + 16);
        let mut fast = original.clone();
        let mut reference = original.clone();
        apply_mask(&mut fast[align..align + len], key);
        apply_mask_reference(&mut reference[align..align + len], key);
        assert_eq!(fast, reference, "len {len}, align {align}, key {key:02x?}");
    }

    #[test]
    fn mask_matches_reference_every_length_to_64_every_alignment_to_16() {
        for &key in TEST_KEYS {
            for align in 0..16 {
                for len in 0..=64 {
                    check_against_reference(len, align, key);
                }
            }
        }
    }

    #[test]
    fn mask_matches_reference_large_lengths_every_alignment_to_16() {
        for &key in TEST_KEYS {
            for align in 0..16 {
                for &len in LARGE_LENGTHS {
                    check_against_reference(len, align, key);
                }
            }
        }
    }

    #[test]
    fn mask_rfc6455_section_5_7_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn mask_zero_key_is_identity() {
        let original = pattern(100);
        let mut buf = original.clone();
        apply_mask(&mut buf, [0; 4]);
        assert_eq!(buf, original);
    }

    #[test]
    fn mask_applied_twice_is_identity() {
        for &key in TEST_KEYS {
            for len in (0..=64).chain(LARGE_LENGTHS.iter().copied()) {
                let original = pattern(len);
                let mut buf = original.clone();
                apply_mask(&mut buf, key);
                apply_mask(&mut buf, key);
                assert_eq!(buf, original, "len {len}, key {key:02x?}");
            }
        }
    }

    #[test]
    fn mask_offset_matches_reference_offsets_0_to_8() {
        for &key in TEST_KEYS {
            for offset in 0..8 {
                for len in 0..=64 {
                    // Mask `offset` filler bytes plus the buffer with the reference, then compare the tail.
                    let original = pattern(offset + len);
                    let mut reference = original.clone();
                    apply_mask_reference(&mut reference, key);
                    let mut fast = original[offset..].to_vec();
                    apply_mask_offset(&mut fast, key, offset);
                    assert_eq!(fast, reference[offset..], "len {len}, offset {offset}, key {key:02x?}");
                }
            }
        }
    }

    #[test]
    fn extend_masked_matches_reference_offsets_0_to_8() {
        for &key in TEST_KEYS {
            for offset in 0..8 {
                for len in (0..=64).chain(LARGE_LENGTHS.iter().copied()) {
                    let original = pattern(offset + len);
                    let mut reference = original.clone();
                    apply_mask_reference(&mut reference, key);
                    // Appended after bytes already there, which it leaves alone.
                    let mut buf = BytesMut::from(&b"kept"[..]);
                    extend_masked(&mut buf, &original[offset..], key, offset);
                    assert_eq!(&buf[..4], b"kept");
                    assert_eq!(buf[4..], reference[offset..], "len {len}, offset {offset}, key {key:02x?}");
                }
            }
        }
    }

    #[test]
    fn mask_offset_large_offset_wraps_key() {
        let key = [1, 2, 3, 4];
        let mut buf = [0; 4];
        apply_mask_offset(&mut buf, key, usize::MAX);
        // usize::MAX % 4 == 3
        assert_eq!(buf, [4, 1, 2, 3]);
    }

    fn proptest_config() -> ProptestConfig {
        if cfg!(miri) {
            ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() }
        } else {
            ProptestConfig { cases: 512, ..ProptestConfig::default() }
        }
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn mask_in_pieces_with_running_offset_equals_mask_whole(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            key in any::<[u8; 4]>(),
            start in 0usize..8,
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            // `start` plays the part of payload bytes unmasked before this buffer arrived.
            let mut whole = vec![0; start];
            whole.extend_from_slice(&payload);
            apply_mask_reference(&mut whole, key);

            let mut cuts: Vec<usize> =
                cuts.iter().map(|cut| cut.index(payload.len() + 1)).collect();
            cuts.push(0);
            cuts.push(payload.len());
            cuts.sort_unstable();
            let mut pieces = payload.clone();
            for window in cuts.windows(2) {
                let (from, to) = (window[0], window[1]);
                apply_mask_offset(&mut pieces[from..to], key, start + from);
            }
            prop_assert_eq!(&pieces[..], &whole[start..]);
        }

        #[test]
        fn mask_matches_reference_random(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            key in any::<[u8; 4]>(),
            align in 0usize..16,
        ) {
            let mut buf = vec![0; align];
            buf.extend_from_slice(&payload);
            let mut reference = buf.clone();
            apply_mask(&mut buf[align..], key);
            apply_mask_reference(&mut reference[align..], key);
            prop_assert_eq!(buf, reference);
        }
    }
}
