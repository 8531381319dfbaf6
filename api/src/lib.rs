//! # ferrule
//!
//! The async layer of the ferrule WebSocket library: one per-connection driver over the
//! [`ferrule_core`] protocol machine, with a channel API, a callback API and a hub, generic over
//! a small runtime trait so that the tokio, async-std and smol adapters share all of it.
//!
//! **Status:** the driver and the front-ends are not written yet. Today this crate only
//! re-exports the sans-IO core, which is complete and usable on its own; see
//! [`ferrule_core::Connection`] for how to drive a connection by hand.

pub use ferrule_core as core;
