//! Test rigs shared by ferrule's test suites.
//!
//! [`harness`] is the deterministic two-peer harness on a virtual clock that the core's lifecycle
//! tests and properties run on. [`suite`] is the integration suite, instantiated per runtime;
//! [`virtual_clock`] gives the runtimes without a clock of their own one that tests can pause.

pub mod client_handshake;
pub mod cluster;
pub mod compression;
pub mod fuzz_targets;
pub mod harness;
pub mod hub;
pub mod redis_server;
pub mod stream_sink;
pub mod suite;
#[cfg(feature = "tls")]
pub mod tls;
pub mod virtual_clock;

use ferrule::{Ctx, Handler, HandlerError, Message};

/// The callback echo the suites serve: sends each message back as it came.
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

// The README's Rust examples, compiled as doc tests (`cargo test --doc -p ferrule-tests`): this
// crate depends on every adapter, so an example for any runtime compiles here.
#[cfg(doctest)]
#[doc = include_str!(concat!(env!("OUT_DIR"), "/readme.md"))]
mod readme {}
