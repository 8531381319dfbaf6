//! The set of open connections that a graceful shutdown closes with 1001 Going Away: the one
//! inside [`Server`](crate::Server), and [`Shutdown`] for connections served by another HTTP
//! server (hyper, axum).

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::handle::Handle;
use crate::runtime::Runtime;
use crate::shared::register;

/// Closes every connection registered with it with 1001 Going Away (RFC 6455 section 7.4.1)
/// and waits for them to finish, as [`Server::shutdown`](crate::Server::shutdown) does for its
/// own: for connections that another HTTP server (hyper, axum) upgraded and ferrule runs.
///
/// Clones share one set. [`register`](Self::register) each connection's [`Handle`] and keep the
/// [`Registration`] until the connection has finished; a connection registered after
/// [`shutdown`](Self::shutdown) began is closed at once.
///
/// # Examples
///
/// ```
/// # async fn demo<R: ferrule::Runtime>(runtime: R, handle: ferrule::Handle) {
/// let shutdown = ferrule::Shutdown::new(runtime);
/// let registration = shutdown.register(handle.clone());
/// // ... in the connection's task, once it finished:
/// handle.done().await;
/// drop(registration);
/// // ... and when the application stops:
/// let still_open = shutdown.shutdown(std::time::Duration::from_secs(5)).await;
/// # }
/// ```
#[derive(Clone)]
pub struct Shutdown<R> {
    runtime: R,
    registry: Arc<Registry>,
}

impl<R> fmt::Debug for Shutdown<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown").field("connections", &self.registry.len()).finish_non_exhaustive()
    }
}

impl<R: Runtime + Default> Default for Shutdown<R> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

impl<R: Runtime> Shutdown<R> {
    /// An empty set, whose [`shutdown`](Self::shutdown) waits on `runtime`'s clock.
    pub fn new(runtime: R) -> Self {
        Self { runtime, registry: Arc::new(Registry::default()) }
    }

    /// Adds a connection; it leaves the set when the returned [`Registration`] is dropped.
    #[must_use = "the connection leaves the set when the registration is dropped"]
    pub fn register(&self, handle: Handle) -> Registration {
        let id = self.registry.insert(handle);
        Registration { registry: self.registry.clone(), id }
    }

    /// How many registered connections are open.
    pub fn connections(&self) -> usize {
        self.registry.len()
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_stopping(&self) -> bool {
        self.registry.is_stopping()
    }

    /// Closes every registered connection with 1001 Going Away, and waits up to `deadline` for
    /// them all to leave the set. Returns how many were still there; those end on their own
    /// close timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the close frames are queued before the first await; dropping the future
    /// only stops the waiting.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.registry.close_all();
        self.registry.wait_empty(&self.runtime, deadline).await;
        self.registry.len()
    }
}

/// A connection's place in a [`Shutdown`] set: dropping it removes the connection.
#[derive(Debug)]
#[must_use = "the connection leaves the set when the registration is dropped"]
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// The open connections, by id, and who waits for them to go.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next_id: AtomicU64,
    stopping: AtomicBool,
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
pub(crate) struct RegistryState {
    live: HashMap<u64, Handle>,
    /// The accept loop of a [`Server`](crate::Server), woken when shutdown starts.
    pub(crate) accept_loop: Option<Waker>,
    /// Shutdown waiters, woken as connections leave.
    waiters: Vec<Waker>,
}

impl Registry {
    pub(crate) fn state(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn len(&self) -> usize {
        self.state().live.len()
    }

    /// Adds a connection; one added after shutdown began is closed at once.
    pub(crate) fn insert(&self, handle: Handle) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        if self.is_stopping() {
            let _ = handle.close_for_shutdown();
        }
        state.live.insert(id, handle);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        let mut state = self.state();
        state.live.remove(&id);
        for w in state.waiters.drain(..) {
            w.wake();
        }
    }

    /// Marks the set stopping, queues 1001 on every connection, and wakes the accept loop.
    pub(crate) fn close_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut state = self.state();
        for handle in state.live.values() {
            let _ = handle.close_for_shutdown();
        }
        if let Some(w) = state.accept_loop.take() {
            w.wake();
        }
    }

    /// Waits until no connection is left, or `deadline` passed.
    pub(crate) async fn wait_empty<R: Runtime>(&self, runtime: &R, deadline: Duration) {
        let mut timer = Box::pin(runtime.sleep_until(runtime.now() + deadline));
        poll_fn(|cx| {
            let mut state = self.state();
            if state.live.is_empty() {
                return Poll::Ready(());
            }
            register(&mut state.waiters, cx.waker());
            drop(state);
            timer.as_mut().poll(cx)
        })
        .await;
    }
}
