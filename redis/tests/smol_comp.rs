//! The smol and async-std tests of `cluster.rs` with redis-rs on smol (its `smol-comp`, what
//! ferrule-redis's `smol` feature turns on), chosen for this whole test binary by
//! `redis::aio::prefer_smol` (all of ferrule-redis's runtime features are on in its tests, and
//! without a choice redis-rs runs on async-std outside a tokio runtime).

#[allow(dead_code)]
#[macro_use]
mod common;

use common::*;

/// redis-rs on smol for every test of this binary (the first call chooses; the others find it
/// chosen).
fn prefer_smol() {
    let _ = redis::aio::prefer_smol();
}

mod on_smol {
    redis_suite!(SmolRuntime, prefer_smol);
}

mod on_async_std {
    redis_suite!(AsyncStdRuntime, prefer_smol);
}
