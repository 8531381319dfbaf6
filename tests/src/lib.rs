//! Test rigs shared by ferrule's test suites.
//!
//! [`harness`] is the deterministic two-peer harness on a virtual clock that the core's lifecycle
//! tests and properties run on.

pub mod fuzz_targets;
pub mod harness;
pub mod suite;
