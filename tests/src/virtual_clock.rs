//! A clock that tests can pause, for runtimes that have none of their own (smol, async-std).
//!
//! [`Clocked`] wraps a [`Runtime`]: tasks still run on that runtime's executor and its reactor
//! still serves their I/O, but time comes from a clock each test run chooses. In real time that
//! is the wrapped runtime's own clock. Paused, it is a virtual clock that stands still while any
//! task can make progress and jumps to the next deadline when none can, as tokio's
//! `start_paused` does, so a deadline of a minute passes in no real time, and a busy machine
//! makes a test slower but never moves the clock while a task still has something to do:
//!
//! - The future given to [`Clocked::block_on`] and every task spawned through a [`Clocked`]
//!   runtime is tracked: it counts as runnable from the moment it is woken (or spawned) until
//!   its poll returns.
//! - While nothing is runnable, an advancer thread waits for [`QUIET_ROUNDS`] rounds of the
//!   wrapped runtime's own timer ([`ROUND`] of real time each) during which no tracked task is
//!   woken or polled. The wrapped runtime must serve its timers and its I/O from one reactor (as
//!   async-io does for smol and async-std): a round then ends only after the reactor has polled
//!   the operating system for I/O, so bytes that a task wrote to a loopback socket before every
//!   task went idle have woken their reader by the end of the second round (the first may fire
//!   in the same reactor turn as the reader's wake, and finish before it).
//! - Then the clock jumps to the earliest virtual deadline and wakes every timer due by then.
//!
//! What the clock cannot see is work outside the tracked tasks: a thread of a blocking pool (one
//! resolving a host name, say) or an untracked task. Tests on the paused clock keep to tracked
//! tasks and loopback sockets addressed by IP. Nor can it see bytes the kernel holds back for a
//! timer of TCP's own (a delayed acknowledgement, a zero-window probe: tens to hundreds of
//! milliseconds), as when a peer's receive buffer is full: every task is idle meanwhile, so the
//! clock moves on. tokio's paused clock has the same blind spot; the suite's tests that fill
//! socket buffers allow for it (`suite::with_clock_held`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ferrule::Runtime;

/// The real time one quiet round waits on the wrapped runtime's timer.
pub const ROUND: Duration = Duration::from_millis(1);

/// Consecutive quiet rounds after which the paused clock moves: see the [module
/// documentation](self) for why one is not enough.
pub const QUIET_ROUNDS: u32 = 2;

/// A [`Runtime`] that spawns on `R` and tells time by the clock of the test run it belongs to:
/// `R`'s own clock, or a virtual one (see the [module documentation](self)).
///
/// Made by [`Clocked::block_on`] for the test body, and by [`Clocked::current`] from inside it
/// or any task it spawned.
pub struct Clocked<R> {
    inner: R,
    clock: Arc<Clock>,
}

impl<R: Clone> Clone for Clocked<R> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), clock: self.clock.clone() }
    }
}

impl<R: fmt::Debug> fmt::Debug for Clocked<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clocked").field("inner", &self.inner).field("paused", &self.clock.paused).finish()
    }
}

impl<R: Runtime> Clocked<R> {
    /// Runs `future` to completion with `block_on` (the wrapped runtime's own), on a new clock:
    /// a virtual one when `paused`, `inner`'s otherwise. Inside, [`Clocked::current`] gives the
    /// runtime that uses this clock.
    pub fn block_on<F: Future>(
        inner: R,
        paused: bool,
        future: F,
        block_on: impl FnOnce(Tracked<F>) -> F::Output,
    ) -> F::Output {
        let clock = Arc::new(Clock::new(paused));
        let advancer = paused.then(|| {
            let (inner, clock) = (inner.clone(), clock.clone());
            thread::Builder::new()
                .name("virtual-clock".to_owned())
                .spawn(move || advance_while_running(&inner, &clock))
                .expect("spawned the virtual clock's advancer")
        });
        let _stop = StopAdvancer { clock: clock.clone(), advancer };
        block_on(Tracked::new(clock, future))
    }

    /// The runtime of the test run whose task calls this: `inner` on that run's clock.
    ///
    /// # Panics
    ///
    /// Outside the tasks of a run of [`Clocked::block_on`].
    pub fn current(inner: R) -> Self {
        Self { inner, clock: Clock::current() }
    }

    /// Whether this runtime's clock is virtual.
    pub fn is_paused(&self) -> bool {
        self.clock.paused
    }
}

/// How many tracked tasks of the current test run are alive (spawned and not yet finished or
/// dropped), the test body included.
///
/// # Panics
///
/// Outside the tasks of a run of [`Clocked::block_on`].
pub fn alive_tasks() -> usize {
    Clock::current().alive.load(Ordering::SeqCst)
}

impl<R: Runtime> Runtime for Clocked<R> {
    type Sleep = Sleep<R>;

    fn now(&self) -> Instant {
        if self.clock.paused { self.clock.timers().now } else { self.inner.now() }
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep<R> {
        if self.clock.paused {
            let id = self.clock.next_timer.fetch_add(1, Ordering::Relaxed);
            Sleep(SleepOn::Virtual { clock: self.clock.clone(), id, deadline })
        } else {
            Sleep(SleepOn::Real(Box::pin(self.inner.sleep_until(deadline))))
        }
    }

    fn reset(&self, sleep: Pin<&mut Sleep<R>>, new_deadline: Instant) {
        match &mut sleep.get_mut().0 {
            SleepOn::Real(sleep) => self.inner.reset(sleep.as_mut(), new_deadline),
            SleepOn::Virtual { clock, id, deadline } => {
                *deadline = new_deadline;
                let mut timers = clock.timers();
                let now = timers.now;
                if let Some(armed) = timers.armed.get_mut(id) {
                    armed.deadline = new_deadline;
                    // A timer moved into the past fires, as the runtimes' own do.
                    if new_deadline <= now {
                        let armed = timers.armed.remove(id).expect("just found");
                        drop(timers);
                        armed.waker.wake();
                    }
                }
            }
        }
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(Tracked::new(self.clock.clone(), future));
    }
}

/// [`Clocked`]'s timer: `R`'s own, or one on the virtual clock.
pub struct Sleep<R: Runtime>(SleepOn<R>);

enum SleepOn<R: Runtime> {
    Real(Pin<Box<R::Sleep>>),
    Virtual { clock: Arc<Clock>, id: u64, deadline: Instant },
}

impl<R: Runtime> fmt::Debug for Sleep<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SleepOn::Real(_) => f.write_str("Sleep(real)"),
            SleepOn::Virtual { deadline, .. } => f.debug_tuple("Sleep").field(deadline).finish(),
        }
    }
}

impl<R: Runtime> Future for Sleep<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            SleepOn::Real(sleep) => sleep.as_mut().poll(cx),
            SleepOn::Virtual { clock, id, deadline } => {
                // Under the lock, so that an advance cannot pass between the check and the
                // registration and leave the timer without a wake.
                let mut timers = clock.timers();
                if *deadline <= timers.now {
                    timers.armed.remove(id);
                    return Poll::Ready(());
                }
                timers.armed.insert(*id, Armed { deadline: *deadline, waker: cx.waker().clone() });
                Poll::Pending
            }
        }
    }
}

impl<R: Runtime> Drop for Sleep<R> {
    fn drop(&mut self) {
        if let SleepOn::Virtual { clock, id, .. } = &self.0 {
            clock.timers().armed.remove(id);
        }
    }
}

/// A future run as a tracked task: its clock knows when it is runnable. Made by
/// [`Clocked::block_on`] and by spawning on a [`Clocked`] runtime.
pub struct Tracked<F> {
    /// `None` once dropped, so that the future is dropped with the run's clock current.
    future: Option<Pin<Box<F>>>,
    task: Arc<Task>,
    /// The waker the future sees: it marks the task runnable, then wakes the executor's.
    waker: Waker,
}

impl<F> Tracked<F> {
    fn new(clock: Arc<Clock>, future: F) -> Self {
        clock.alive.fetch_add(1, Ordering::SeqCst);
        // Spawned means runnable: the executor polls it first thing.
        clock.runnable.fetch_add(1, Ordering::SeqCst);
        clock.activity.fetch_add(1, Ordering::SeqCst);
        let task = Arc::new(Task { clock, state: AtomicU8::new(SCHEDULED), executor: Mutex::new(None) });
        Self { future: Some(Box::pin(future)), waker: Waker::from(task.clone()), task }
    }
}

impl<F> fmt::Debug for Tracked<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked").field("state", &self.task.state.load(Ordering::SeqCst)).finish_non_exhaustive()
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let task = &this.task;
        {
            let mut executor = lock(&task.executor);
            if !executor.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *executor = Some(cx.waker().clone());
            }
        }
        let clock = &task.clock;
        // The poll holds one count of `runnable`: the wake's, or its own if polled unwoken.
        if task.state.swap(IDLE, Ordering::SeqCst) != SCHEDULED {
            clock.runnable.fetch_add(1, Ordering::SeqCst);
        }
        clock.activity.fetch_add(1, Ordering::SeqCst);
        let _polling = Polling { clock };
        let _current = Current::enter(clock);
        let future = this.future.as_mut().expect("a tracked task polled after it finished");
        let poll = future.as_mut().poll(&mut Context::from_waker(&this.waker));
        if poll.is_ready() {
            task.finish();
        }
        poll
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            let _current = Current::enter(&self.task.clock);
            drop(future);
        }
        self.task.finish();
    }
}

/// A tracked task's state (one of [`IDLE`], [`SCHEDULED`], [`DONE`]) and the executor's waker.
struct Task {
    clock: Arc<Clock>,
    state: AtomicU8,
    /// The waker of the executor's task, from the latest poll.
    executor: Mutex<Option<Waker>>,
}

/// Waiting, or being polled and not woken since the poll began.
const IDLE: u8 = 0;
/// Woken (or spawned) and not yet polled: counted in `runnable`.
const SCHEDULED: u8 = 1;
/// Finished or dropped.
const DONE: u8 = 2;

impl Task {
    /// Marks the task finished (once), giving back its count in `runnable` if it was woken.
    fn finish(&self) {
        let clock = &self.clock;
        match self.state.swap(DONE, Ordering::SeqCst) {
            DONE => return,
            SCHEDULED => {
                clock.runnable.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        }
        clock.alive.fetch_sub(1, Ordering::SeqCst);
        clock.activity.fetch_add(1, Ordering::SeqCst);
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Counted before the executor hears of it, so that it is runnable until polled.
        if self.state.compare_exchange(IDLE, SCHEDULED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.clock.runnable.fetch_add(1, Ordering::SeqCst);
        }
        self.clock.activity.fetch_add(1, Ordering::SeqCst);
        let executor = lock(&self.executor).clone();
        if let Some(waker) = executor {
            waker.wake();
        }
    }
}

thread_local! {
    /// The clock of the tracked task this thread is polling.
    static CURRENT: RefCell<Option<Arc<Clock>>> = const { RefCell::new(None) };
}

/// A tracked task's poll in progress: on the way out, a panic included, gives back the poll's
/// count in `runnable`.
struct Polling<'a> {
    clock: &'a Clock,
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.clock.runnable.fetch_sub(1, Ordering::SeqCst);
        self.clock.activity.fetch_add(1, Ordering::SeqCst);
    }
}

/// Makes a run's clock current on this thread, and restores the previous one when dropped.
struct Current {
    previous: Option<Arc<Clock>>,
}

impl Current {
    fn enter(clock: &Arc<Clock>) -> Self {
        Self { previous: CURRENT.with(|current| current.borrow_mut().replace(clock.clone())) }
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.with(|current| *current.borrow_mut() = self.previous.take());
    }
}

/// The clock of one test run, and what the advancer watches.
struct Clock {
    paused: bool,
    timers: Mutex<Timers>,
    next_timer: AtomicU64,
    /// Tracked tasks woken and not yet polled, or being polled.
    runnable: AtomicUsize,
    /// Bumped by every wake, poll and end of a tracked task: unchanged over a round means
    /// nothing happened in it.
    activity: AtomicU64,
    /// Tracked tasks spawned and not yet finished or dropped.
    alive: AtomicUsize,
    stopped: AtomicBool,
}

/// The virtual time and the timers waiting on it.
struct Timers {
    now: Instant,
    armed: HashMap<u64, Armed>,
}

struct Armed {
    deadline: Instant,
    waker: Waker,
}

impl Clock {
    fn new(paused: bool) -> Self {
        Self {
            paused,
            timers: Mutex::new(Timers { now: Instant::now(), armed: HashMap::new() }),
            next_timer: AtomicU64::new(0),
            runnable: AtomicUsize::new(0),
            activity: AtomicU64::new(0),
            alive: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    fn current() -> Arc<Self> {
        CURRENT
            .with(|current| current.borrow().clone())
            .expect("no test clock here: call from a task of a run of `Clocked::block_on`")
    }

    fn timers(&self) -> MutexGuard<'_, Timers> {
        lock(&self.timers)
    }

    /// Moves the virtual time to the earliest armed deadline and wakes every timer due by then.
    fn advance(&self) {
        let due: Vec<Waker> = {
            let mut timers = self.timers();
            let Some(next) = timers.armed.values().map(|armed| armed.deadline).min() else { return };
            timers.now = timers.now.max(next);
            let now = timers.now;
            let due: Vec<u64> =
                timers.armed.iter().filter(|(_, armed)| armed.deadline <= now).map(|(&id, _)| id).collect();
            due.into_iter().filter_map(|id| timers.armed.remove(&id)).map(|armed| armed.waker).collect()
        };
        for waker in due {
            waker.wake();
        }
    }

    /// Whether no tracked task is runnable, and the activity count.
    fn idle(&self) -> (bool, u64) {
        let activity = self.activity.load(Ordering::SeqCst);
        (self.runnable.load(Ordering::SeqCst) == 0, activity)
    }
}

/// The advancer: moves the paused clock whenever the run has been quiet for [`QUIET_ROUNDS`]
/// rounds of `inner`'s timer, until the run ends.
fn advance_while_running<R: Runtime>(inner: &R, clock: &Clock) {
    let mut quiet = 0;
    let mut seen = clock.activity.load(Ordering::SeqCst);
    while !clock.stopped.load(Ordering::SeqCst) {
        wait_on_thread(inner.sleep_until(inner.now() + ROUND));
        let (idle, activity) = clock.idle();
        // `runnable` only falls at the end of a poll, which bumps `activity`: idle now with
        // `activity` unchanged means idle all round.
        if !idle || activity != seen {
            seen = activity;
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet == QUIET_ROUNDS {
            clock.advance();
            quiet = 0;
        }
    }
}

/// Stops the advancer when the run ends, a panicking one included.
struct StopAdvancer {
    clock: Arc<Clock>,
    advancer: Option<JoinHandle<()>>,
}

impl Drop for StopAdvancer {
    fn drop(&mut self) {
        self.clock.stopped.store(true, Ordering::SeqCst);
        if let Some(advancer) = self.advancer.take() {
            let _ = advancer.join();
        }
    }
}

/// Blocks this thread until `future` completes; its wakes unpark the thread. The wrapped
/// runtime's reactor runs on its own threads.
fn wait_on_thread<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return output;
        }
        thread::park();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use ferrule_smol::Smol;

    use super::*;
    use crate::suite::{Either, Inbox, read_some, select, write_all, yield_now};

    fn run_paused<F: Future>(future: F) -> F::Output {
        Clocked::block_on(Smol, true, future, smol::block_on)
    }

    fn runtime() -> Clocked<Smol> {
        Clocked::current(Smol)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn timers_fire_in_deadline_order_at_their_deadlines() {
        run_paused(async {
            let rt = runtime();
            let start = rt.now();
            let fired = Inbox::default();
            for n in [30, 10, 20] {
                let (rt, fired) = (rt.clone(), fired.clone());
                runtime().spawn(async move {
                    rt.sleep_until(start + secs(n)).await;
                    fired.push((n, rt.now() - start));
                });
            }
            for expected in [10, 20, 30] {
                assert_eq!(fired.next().await, (expected, secs(expected)));
            }
            rt.sleep_until(start + secs(60)).await;
            assert_eq!(rt.now() - start, secs(60));
        });
    }

    #[test]
    fn a_reset_timer_fires_at_its_new_deadline() {
        run_paused(async {
            let rt = runtime();
            let start = rt.now();
            let mut sleep = pin!(rt.sleep_until(start + secs(10)));
            assert!(crate::suite::poll_once(sleep.as_mut()).await.is_none(), "armed for 10 s");
            rt.reset(sleep.as_mut(), start + secs(4));
            sleep.as_mut().await;
            assert_eq!(rt.now() - start, secs(4));
            // Moved into the past, it fires without the clock moving.
            let mut sleep = pin!(rt.sleep_until(start + secs(20)));
            assert!(crate::suite::poll_once(sleep.as_mut()).await.is_none(), "armed for 20 s");
            rt.reset(sleep.as_mut(), start);
            sleep.await;
            assert_eq!(rt.now() - start, secs(4));
        });
    }

    #[test]
    fn a_wait_that_nothing_ends_is_ended_by_the_next_deadline() {
        run_paused(async {
            let rt = runtime();
            let start = rt.now();
            let guard = rt.sleep_until(start + secs(3600));
            assert!(matches!(select(pending::<()>(), guard).await, Either::Right(())));
            assert_eq!(rt.now() - start, secs(3600));
        });
    }

    #[test]
    fn the_clock_stands_still_while_a_task_is_runnable() {
        run_paused(async {
            let rt = runtime();
            let start = rt.now();
            let done = Inbox::default();
            let (busy_rt, busy_done) = (rt.clone(), done.clone());
            // Runnable all along: it yields (wakes itself) for 50 ms of real time.
            rt.spawn(async move {
                let real = Instant::now();
                while real.elapsed() < Duration::from_millis(50) {
                    yield_now().await;
                }
                busy_done.push(busy_rt.now());
            });
            match select(done.next(), rt.sleep_until(start + secs(1))).await {
                Either::Left(at) => assert_eq!(at, start, "the clock moved while a task was runnable"),
                Either::Right(()) => panic!("a timer fired while a task was runnable"),
            }
            // The test body itself counts too.
            let real = Instant::now();
            while real.elapsed() < Duration::from_millis(50) {
                assert!(crate::suite::poll_once(rt.sleep_until(start + secs(1))).await.is_none());
                yield_now().await;
            }
            assert_eq!(rt.now(), start, "the clock moved while the test body was runnable");
            // Idle, it moves.
            rt.sleep_until(start + secs(1)).await;
            assert_eq!(rt.now() - start, secs(1));
        });
    }

    #[test]
    fn a_task_woken_by_loopback_io_holds_the_clock() {
        run_paused(async {
            let rt = runtime();
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
            let mut client =
                smol::net::TcpStream::connect(listener.local_addr().expect("an address")).await.expect("connected");
            let (server, _) = listener.accept().await.expect("accepted");
            let received = Inbox::default();
            let (reader_rt, report) = (rt.clone(), received.clone());
            rt.spawn(async move {
                let mut server = server;
                let mut buf = [0u8; 4];
                loop {
                    let n = read_some(&mut server, &mut buf).await.expect("read");
                    report.push((n, reader_rt.now()));
                    if n == 0 {
                        return;
                    }
                }
            });
            for round in 0u32..100 {
                // Idle first, so that the reader waits on the reactor for the bytes.
                rt.sleep_until(rt.now() + Duration::from_millis(1)).await;
                let written = rt.now();
                write_all(&mut client, &round.to_be_bytes()).await.expect("written");
                match select(received.next(), rt.sleep_until(written + secs(1))).await {
                    Either::Left((n, at)) => {
                        assert_eq!(n, 4, "round {round}");
                        assert_eq!(at, written, "round {round}: the clock moved with bytes in flight");
                    }
                    Either::Right(()) => panic!("round {round}: the clock moved with bytes in flight"),
                }
            }
        });
    }

    #[test]
    fn alive_tasks_counts_the_unfinished_tasks_of_the_run() {
        run_paused(async {
            let rt = runtime();
            assert_eq!(alive_tasks(), 1, "the test body");
            let releases: Vec<Inbox<()>> = (0..3).map(|_| Inbox::default()).collect();
            for release in &releases {
                let release = release.clone();
                rt.spawn(async move { release.next().await });
            }
            assert_eq!(alive_tasks(), 4);
            for release in &releases {
                release.push(());
            }
            // Idle after the three finished.
            rt.sleep_until(rt.now() + secs(1)).await;
            assert_eq!(alive_tasks(), 1);
        });
    }

    #[test]
    fn in_real_time_the_timers_are_the_wrapped_runtimes() {
        Clocked::block_on(
            Smol,
            false,
            async {
                let rt = runtime();
                assert!(!rt.is_paused());
                let start = Instant::now();
                rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
                assert!(start.elapsed() >= Duration::from_millis(5), "a real timer fired early");
            },
            smol::block_on,
        );
    }
}
