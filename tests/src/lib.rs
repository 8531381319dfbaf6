//! Test rigs shared by ferrule's test suites.
//!
//! [`harness`] is the deterministic two-peer harness on a virtual clock that the core's lifecycle
//! tests and properties run on. [`suite`] is the integration suite, instantiated per runtime;
//! [`virtual_clock`] gives the runtimes without a clock of their own one that tests can pause.

pub mod fuzz_targets;
pub mod harness;
pub mod suite;
pub mod virtual_clock;
