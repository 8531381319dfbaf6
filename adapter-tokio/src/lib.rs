//! Runs ferrule WebSockets on tokio: a runtime implementation, a listener and a connector.
//!
//! **Status:** not written yet. Today this crate only re-exports [`ferrule`]; the listener,
//! connector and runtime glue for tokio arrive with the async driver.

pub use ferrule;
