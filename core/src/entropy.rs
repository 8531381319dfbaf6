//! Injected randomness: masking keys and `Sec-WebSocket-Key` values.
//!
//! RFC 6455 section 5.3 requires client masking keys to be unpredictable, so the default source is a
//! cryptographically secure generator seeded from the operating system. Tests and fuzzers seed it
//! explicitly so that client output can be checked byte for byte.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// A source of random bytes for masking keys and handshake keys.
///
/// Created from the operating system's entropy ([`Entropy::from_os`]) or from a fixed seed
/// ([`Entropy::from_seed`]) for reproducible output.
#[derive(Debug, Clone)]
pub struct Entropy {
    rng: StdRng,
}

impl Entropy {
    /// A generator seeded from the operating system (the default for every connection).
    pub fn from_os() -> Self {
        Self { rng: StdRng::from_os_rng() }
    }

    /// A deterministic generator: the same seed always yields the same bytes.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { rng: StdRng::from_seed(seed) }
    }

    /// A generator from an optional seed: seeded when `Some`, from the operating system when `None`.
    pub fn from_optional_seed(seed: Option<[u8; 32]>) -> Self {
        match seed {
            Some(seed) => Self::from_seed(seed),
            None => Self::from_os(),
        }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.rng.fill_bytes(buf);
    }

    /// A fresh 32-bit masking key (RFC 6455 section 5.3).
    pub fn mask_key(&mut self) -> [u8; 4] {
        self.rng.next_u32().to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_entropy_is_reproducible() {
        let mut a = Entropy::from_seed([7; 32]);
        let mut b = Entropy::from_seed([7; 32]);
        let (mut x, mut y) = ([0u8; 24], [0u8; 24]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_eq!(a.mask_key(), b.mask_key());
    }

    #[test]
    fn different_seeds_give_different_bytes() {
        let mut a = Entropy::from_seed([1; 32]);
        let mut b = Entropy::from_seed([2; 32]);
        let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_ne!(x, y);
    }
}
