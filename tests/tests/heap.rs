//! Nothing leaks: 1,000 connections opened and closed leave the process's live heap where it was,
//! on every runtime.
//!
//! The heap is counted by a global allocator that wraps the system's, so the count covers the
//! whole process: this binary holds one test, which runs the runtimes one after the other, so
//! that nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use ferrule::{Acceptance, Options, Request};
use ferrule_tests::Echo;
use ferrule_tests::suite::{self, TestRuntime};

#[path = "runtimes/async_std.rs"]
mod async_std_runtime;
#[path = "runtimes/smol.rs"]
mod smol_runtime;
#[path = "runtimes/tokio.rs"]
mod tokio_runtime;

/// The system allocator, counting the bytes it has handed out and not yet taken back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments, under the same
// contract; the counter is only arithmetic on the sizes involved.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// Connections opened before the baseline is taken: runtimes, thread-local read buffers and the
/// like are allocated once, on first use, and kept.
const WARM_UP: usize = 200;
/// Connections whose memory must all come back.
const CONNECTIONS: usize = 1000;
/// What the heap may have grown by: runtime caches, which do not grow with the number of
/// connections. A leak of 17 bytes per connection would fail it.
const SLACK: isize = 16 * 1024;
/// Time for tasks that are finishing (the clients' drivers after their done signal) to end.
const SETTLE: Duration = Duration::from_millis(100);

/// The check below for an echo server on each API.
async fn heap_returns_to_baseline<T: TestRuntime>() {
    // The callback API, with a handler that keeps nothing (the suite's echo handler reports
    // every connection's handle to the test, which keeps them).
    let server = T::serve(Options::default(), |_: &Request, _: &mut Acceptance| Ok(Echo)).await;
    churn_within_slack::<T>(&server).await;
    // The channel API.
    churn_within_slack::<T>(&suite::channel_echo_server::<T, String>(Options::default()).await).await;
}

/// Opens and closes [`WARM_UP`] connections to `server`, takes the heap's size, opens and closes
/// [`CONNECTIONS`] more, and waits up to 10 s for the heap to come back within [`SLACK`] of
/// where it was, once the server has forgotten every connection and, where the runtime counts
/// them, as many tasks are alive as before.
async fn churn_within_slack<T: TestRuntime>(server: &T::Server) {
    suite::sleep::<T>(Duration::from_millis(10)).await;
    let tasks = T::alive_tasks();
    suite::churn_connections::<T>(server, WARM_UP).await;
    suite::wait_until_forgotten::<T>(server, tasks).await;
    suite::sleep::<T>(SETTLE).await;
    let baseline = LIVE.load(Ordering::SeqCst);

    suite::churn_connections::<T>(server, CONNECTIONS).await;
    suite::wait_until_forgotten::<T>(server, tasks).await;
    let start = suite::now::<T>();
    loop {
        suite::sleep::<T>(SETTLE).await;
        let grown = LIVE.load(Ordering::SeqCst) - baseline;
        if grown <= SLACK {
            eprintln!("{}: the heap grew by {grown} bytes over {CONNECTIONS} connections", std::any::type_name::<T>());
            break;
        }
        assert!(
            suite::now::<T>() - start < Duration::from_secs(10),
            "the heap is {grown} bytes above its size before {CONNECTIONS} connections came and went ({} per \
             connection)",
            grown / CONNECTIONS as isize
        );
    }
}

#[test]
fn thousand_connections_return_the_heap_to_baseline() {
    suite::run::<tokio_runtime::TokioRuntime, _>(false, heap_returns_to_baseline::<tokio_runtime::TokioRuntime>);
    suite::run::<smol_runtime::SmolRuntime, _>(false, heap_returns_to_baseline::<smol_runtime::SmolRuntime>);
    suite::run::<async_std_runtime::AsyncStdRuntime, _>(
        false,
        heap_returns_to_baseline::<async_std_runtime::AsyncStdRuntime>,
    );
}
