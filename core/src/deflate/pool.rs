//! Compressors and decompressors lent between messages on one thread, for connections that keep
//! no context (RFC 7692 sections 7.1.1.1 and 7.1.1.2).
//!
//! Without context takeover, a compressor or decompressor holds nothing between messages, so a
//! connection need not keep one: it borrows one for a message and gives it back, reset. The
//! thread's connections then share a few, and an idle connection holds none (uWebSockets'
//! shared compressor, per thread here so the core stays free of locks). zlib-rs's compressor
//! takes about 160 KiB whatever its memory level (a fixed 128 KiB hash table) and its
//! decompressor about 46 KiB, so this is what lets a server of many connections compress at a
//! few KiB each. A returned compressor is reset, which zeroes its hash table: cheaper than the
//! allocation and first-touch page faults of a new one.
//!
//! At most [`KEEP`] of each kind are kept per thread; the rest are dropped when given back.

use std::cell::RefCell;

use zlib_rs::{Deflate, Inflate};

/// The most compressors (of each setting) and decompressors a thread keeps for reuse: as many
/// as the messages it compresses or inflates at once, which on one thread is usually one, while
/// a streamed message holds its own until it ends.
const KEEP: usize = 4;

/// What a compressor is made with: (level, window bits, memory level).
pub(crate) type DeflateKey = (i32, i32, i32);

#[derive(Default)]
struct Pool {
    deflaters: Vec<(DeflateKey, Deflate)>,
    inflaters: Vec<Inflate>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// A reset compressor made with `key`, if this thread has one to lend.
pub(crate) fn take_deflater(key: DeflateKey) -> Option<Deflate> {
    POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool.deflaters.iter().rposition(|(k, _)| *k == key)?;
        Some(pool.deflaters.swap_remove(at).1)
    })
    .ok()
    .flatten()
}

/// Gives a compressor back after a message: reset, and kept when the thread has room.
pub(crate) fn give_deflater(key: DeflateKey, mut deflater: Deflate) {
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.deflaters.iter().filter(|(k, _)| *k == key).count() < KEEP {
            deflater.reset();
            pool.deflaters.push((key, deflater));
        }
    });
}

/// A reset decompressor, if this thread has one to lend.
pub(crate) fn take_inflater() -> Option<Inflate> {
    POOL.try_with(|pool| pool.borrow_mut().inflaters.pop()).ok().flatten()
}

/// Gives a decompressor back after a message: reset, and kept when the thread has room.
pub(crate) fn give_inflater(mut inflater: Inflate) {
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.inflaters.len() < KEEP {
            inflater.reset(false);
            pool.inflaters.push(inflater);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_back_what_was_given_by_setting_and_keeps_at_most_a_few() {
        let key = (6, -12, 5);
        assert!(take_deflater(key).is_none());
        for _ in 0..KEEP + 2 {
            give_deflater(key, Deflate::new(6, false, 12));
        }
        assert!(take_deflater((6, -15, 5)).is_none(), "another setting is not lent");
        let lent = std::iter::from_fn(|| take_deflater(key)).count();
        assert_eq!(lent, KEEP);
        for _ in 0..KEEP + 1 {
            give_inflater(Inflate::new(false, 15));
        }
        assert_eq!(std::iter::from_fn(take_inflater).count(), KEEP);
    }
}
