//! The small runtime interface the driver needs: a clock, timers and spawning.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// What ferrule needs from an async runtime. Adapters implement it for tokio, async-std and
/// smol; a test runtime can pause its clock.
///
/// `now` must come from the same clock the timers use, so that a paused clock (tokio's
/// `start_paused`) pauses keepalive and timeouts too.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A timer future that completes at its deadline.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// The current time on the runtime's clock.
    fn now(&self) -> Instant;

    /// A timer that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// Moves a timer to a new deadline without allocating a new one.
    fn reset(&self, sleep: Pin<&mut Self::Sleep>, deadline: Instant);

    /// Runs `future` to completion in the background.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;
}
