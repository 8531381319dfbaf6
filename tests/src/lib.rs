//! Test rigs shared by ferrule's test suites.
//!
//! [`harness`] is the deterministic two-peer harness on a virtual clock that the core's lifecycle
//! tests and properties run on.

pub mod client_handshake;
pub mod compression;
pub mod fuzz_targets;
pub mod harness;
pub mod stream_sink;
pub mod suite;

// The README's Rust examples, compiled as doc tests (`cargo test --doc -p ferrule-tests`): this
// crate depends on every adapter, so an example for any runtime compiles here.
#[cfg(doctest)]
#[doc = include_str!(concat!(env!("OUT_DIR"), "/readme.md"))]
mod readme {}
