//! The per-connection driver: one future that moves bytes between the transport and the protocol
//! core, runs the core's deadlines, and hands events to a front-end (callbacks or channels).
//!
//! Each turn of its loop: take commands from handles, read once, deliver the events (a callback
//! front-end may queue replies right there), write everything the core queued as one buffer,
//! shut the transport down when the core says so, and re-arm the timer. It parks only when no
//! step made progress. Replies to every message of one read leave in one write: write
//! coalescing is the driver's job.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use ferrule_core::{CloseCode, Connection, Event, State};
use futures_io::{AsyncRead, AsyncWrite};

use crate::callback::Ctx;
use crate::error::{CloseCause, CloseInfo, HandlerError};
use crate::handle::{Handle, truncate_reason};
use crate::message::Message;
use crate::runtime::Runtime;
use crate::sending::Sending;
use crate::shared::{Shared, store_waker};

/// Most bytes read from the transport per read call: a 64 KiB message and its header in one
/// call, several when they queue up.
const READ_CHUNK: usize = 256 * 1024;
/// Most bytes read per call while the thread is crowded (see [`CROWD`]). Each connection then
/// keeps less in flight between reading a batch and writing its replies, so that the data of
/// all of them stays in cache: at 100 connections echoing 64 KiB messages, 256 KiB reads cost
/// 10% more CPU per message than 64 KiB ones, while a single connection runs 50% faster with
/// them (a third of the system calls).
const CROWDED_READ_CHUNK: usize = 64 * 1024;
/// A connection finds its thread crowded when at least this many other connections' polls ran
/// on it since its own previous one.
const CROWD: u64 = 8;
/// A read never makes the output exceed `HIGH_WATER` by more than this (an echo of everything
/// read): reads shrink as output builds up.
const READ_OVERSHOOT: usize = 64 * 1024;

thread_local! {
    /// One read buffer per thread, shared by every driver polled on it: reads land here and are
    /// fed to the core within the same call, so no connection holds a read buffer while it
    /// waits, and the buffer is zeroed once per thread rather than on every read.
    static READ_BUFFER: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

thread_local! {
    /// How many connection polls have run on this thread.
    static POLLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a poll on this thread; returns how many polls of other connections ran on it since
/// `last` (a value this returned as its second item for the same connection) and the new mark.
fn count_poll(last: u64) -> (u64, u64) {
    POLLS.with(|polls| {
        let now = polls.get().wrapping_add(1);
        polls.set(now);
        // A connection that moved to another thread sees a meaningless difference; large or
        // wrapped, it counts as crowded, the cautious choice.
        (now.wrapping_sub(last).wrapping_sub(1), now)
    })
}

/// Runs `f` with this thread's read buffer (or, if a driver is already using it further up the
/// stack, with a fresh one).
pub(crate) fn with_read_buffer<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    READ_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; READ_CHUNK]),
    })
}
/// Most pieces of output handed to one vectored write.
const WRITE_SLICES: usize = 32;
/// While more output than this waits to be written, the driver neither reads nor takes commands:
/// a peer that does not read cannot make the output grow.
const HIGH_WATER: usize = 256 * 1024;
/// The longest the driver keeps reading a failed connection's input after shutting its write
/// half, so that the close frame reaches a peer that was still sending (see `poll_shutdown`).
const MAX_LINGER: Duration = Duration::from_secs(2);
/// Loop turns per poll before the driver yields to other tasks.
const TURNS_PER_POLL: usize = 32;
/// Bytes read per poll before the driver yields to other tasks, so that a connection with a
/// lot to say does not keep the thread from the others on it.
const READ_BUDGET_PER_POLL: usize = 1024 * 1024;
/// A connection keeps its buffers while busy and gives them back after this long without
/// traffic: freeing and re-allocating them on every message costs more than the messages (heap
/// trimming and page faults for large ones), and an idle connection should hold next to nothing.
const BUFFER_LINGER: Duration = Duration::from_secs(1);
/// An empty input buffer up to this size is kept when the driver parks (until [`BUFFER_LINGER`]
/// passes without traffic), so that a connection trading small messages does not allocate and
/// free one per message.
const KEEP_INPUT_BUFFER: usize = 4 * 1024;

/// What the driver hands events to.
pub(crate) trait FrontEnd: Send + Unpin + 'static {
    /// Whether the driver may read more now; when not, the front-end arranges for the driver to
    /// be woken once it may.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> bool;
    /// The connection is open.
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError>;
    /// A message arrived.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError>;
    /// A ping arrived (the core answers it).
    fn on_ping(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        let _ = (ctx, payload);
    }
    /// A pong arrived.
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        let _ = (ctx, payload);
    }
    /// The messages of one delivery (everything decoded from one read) were handed over.
    fn flush(&mut self) {}
    /// The connection finished.
    fn on_close(&mut self, info: &CloseInfo);
}

/// The cause of a connection's end for a transport error.
fn transport_error(error: std::io::Error) -> CloseCause {
    CloseCause::Transport(Arc::new(error))
}

/// One connection's driver future; completes when the transport has been shut down.
pub(crate) struct Driver<S, R: Runtime, F: FrontEnd> {
    io: S,
    runtime: R,
    conn: Connection,
    front: F,
    handle: Handle,
    sleep: Option<Pin<Box<R::Sleep>>>,
    /// The deadline the timer is set to, until it fires.
    armed: Option<Instant>,
    /// The waker the timer last saw: polling it again with the same one changes nothing.
    sleep_waker: Option<Waker>,
    /// The waker last left with the handles (in `Shared`), for the same reason.
    parked_waker: Option<Waker>,
    /// This thread's poll count at this connection's previous poll (see [`count_poll`]).
    last_poll: u64,
    write_wait: Option<Duration>,
    write_deadline: Option<Instant>,
    /// When to give the core's buffers back, if it holds any.
    release_at: Option<Instant>,
    /// How the handles' commands and the handler's sends take turns.
    sending: Sending,
    read_closed: bool,
    write_broken: bool,
    /// Bytes were written since the transport was last flushed. A TLS stream may accept a write
    /// into its own buffer when the socket is full, and sends that on only when written to or
    /// flushed again: the driver flushes once its output is all written.
    unflushed: bool,
    /// What went wrong with the transport, if something did: the core hears of it as an end of
    /// stream, and the connection's end is put down to this instead.
    transport_failure: Option<Box<CloseCause>>,
    opened: bool,
    closed: Option<Box<CloseInfo>>,
    /// The peer's end of stream (or a read error) was seen: nothing more will arrive.
    input_done: bool,
    /// Where the transport's shutdown is, once the connection has finished.
    shutdown: Shutdown,
    done: bool,
}

// The driver never pins its fields in place (the timer is pinned in its own box), so it may
// move freely whatever the runtime type is.
impl<S: Unpin, R: Runtime, F: FrontEnd> Unpin for Driver<S, R, F> {}

impl<S, R, F> Driver<S, R, F>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
    F: FrontEnd,
{
    pub(crate) fn new(
        io: S,
        runtime: R,
        conn: Connection,
        front: F,
        shared: Arc<Shared>,
        write_wait: Option<Duration>,
    ) -> Self {
        Self {
            io,
            runtime,
            conn,
            front,
            handle: Handle::new(shared),
            sleep: None,
            armed: None,
            sleep_waker: None,
            parked_waker: None,
            last_poll: 0,
            write_wait,
            write_deadline: None,
            release_at: None,
            sending: Sending::default(),
            read_closed: false,
            write_broken: false,
            unflushed: false,
            transport_failure: None,
            opened: false,
            closed: None,
            input_done: false,
            shutdown: Shutdown::Running,
            done: false,
        }
    }

    /// Feeds bytes that arrived with the handshake.
    pub(crate) fn feed(&mut self, leftover: &[u8]) {
        if !leftover.is_empty() {
            let now = self.runtime.now();
            if let Err(e) = self.conn.handle_input(leftover, now) {
                self.protocol_failed(&e);
            }
        }
    }

    /// The peer violated the protocol: stop reading. The core has failed the connection (the
    /// violation is the end's cause) and would discard anything more; its error is sticky, so
    /// reading on while the close frame waits to be written would only repeat it.
    fn protocol_failed(&mut self, error: &ferrule_core::ProtocolError) {
        tracing::trace!(%error, "stopped reading after a protocol violation");
        self.read_closed = true;
    }

    fn ctx(&mut self, now: Instant) -> (Ctx<'_>, &mut F) {
        (Ctx::new(&mut self.conn, &self.handle, now, &mut self.sending), &mut self.front)
    }

    fn handler_failed(&mut self, err: HandlerError, now: Instant) {
        tracing::debug!(code = %err.code, reason = %err.reason, "handler closed the connection");
        let code = if err.code.is_sendable() { err.code } else { CloseCode::INTERNAL_ERROR };
        let reason = truncate_reason(&err.reason);
        let _ = self.sending.close(&mut self.conn, &self.handle.shared, code, &reason, now);
    }

    /// Whether to take the handles' commands this turn: some are ready, and the output has
    /// room for them or a close was requested (a close must start its timeout even when the
    /// peer stopped reading; what is queued before it is bounded by the send buffer).
    fn may_take_commands(&self) -> bool {
        self.sending.commands_ready(&self.conn, &self.handle.shared)
            && (self.conn.buffered_amount() < HIGH_WATER || self.handle.shared.lock().is_closing())
    }

    /// Output queued and not yet written, including the handler's sends that wait for a
    /// writer's message: the driver reads only while this is under [`HIGH_WATER`].
    fn backlog(&self) -> usize {
        self.conn.buffered_amount() + self.sending.deferred_bytes()
    }

    fn deliver_events(&mut self, now: Instant) {
        loop {
            // What a handler queued through a handle for the previous event (a hub's reply, an
            // emit to this connection) goes into the core before the next event: one read can
            // hold hundreds of small requests, and their replies would otherwise pile up in the
            // handles' bounded queue, which is meant to fill only when the peer stops reading.
            if self.may_take_commands() {
                self.sending.take_commands(&mut self.conn, &self.handle.shared, now);
            }
            let Some(event) = self.conn.poll_event() else { break };
            let message = match event {
                Event::Text(t) => Message::Text(t),
                Event::Binary(b) => Message::Binary(b),
                Event::Closed(closed) => {
                    self.handle.shared.lock().start_closing();
                    let (local, transport) = (self.sending.local_close(), self.transport_failure.as_deref());
                    self.closed = Some(Box::new(CloseInfo::from_core(&closed, local, transport)));
                    continue;
                }
                Event::Ping(payload) => {
                    let (mut ctx, front) = self.ctx(now);
                    front.on_ping(&mut ctx, &payload);
                    continue;
                }
                Event::Pong(payload) => {
                    let (mut ctx, front) = self.ctx(now);
                    front.on_pong(&mut ctx, &payload);
                    continue;
                }
                _ => continue,
            };
            let (mut ctx, front) = self.ctx(now);
            if let Err(err) = front.on_message(&mut ctx, message) {
                self.handler_failed(err, now);
            }
        }
        self.front.flush();
    }

    /// Writes queued output; returns whether any byte was written.
    fn write(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        while !self.write_broken {
            if self.conn.buffered_amount() == 0 {
                // All written: flush once (a TLS stream may still hold the tail), and done.
                if !self.unflushed {
                    self.write_deadline = None;
                    break;
                }
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.unflushed = false;
                        self.write_deadline = None;
                    }
                    Poll::Ready(Err(e)) => self.break_write(transport_error(e), now),
                    Poll::Pending => {
                        if self.write_deadline.is_none() {
                            self.write_deadline = self.write_wait.map(|w| now + w);
                        }
                    }
                }
                break;
            }
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let filled = self.conn.poll_transmit_vectored(&mut slices);
            let io = Pin::new(&mut self.io);
            let written = match filled {
                // Output is pending, so the core filled at least one slice.
                0 => break,
                1 => io.poll_write(cx, &slices[0]),
                _ => io.poll_write_vectored(cx, &slices[..filled]),
            };
            match written {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.conn.advance_transmit(n);
                    self.write_deadline = None;
                    self.unflushed = true;
                    progress = true;
                }
                Poll::Ready(Ok(_)) => self.break_write(transport_error(std::io::ErrorKind::WriteZero.into()), now),
                Poll::Ready(Err(e)) => self.break_write(transport_error(e), now),
                Poll::Pending => {
                    if self.write_deadline.is_none() {
                        self.write_deadline = self.write_wait.map(|w| now + w);
                    }
                    break;
                }
            }
        }
        progress
    }

    /// Writing failed for `cause` (a transport error or the write timeout): nothing more can be
    /// sent, so the core is told the transport ended.
    fn break_write(&mut self, cause: CloseCause, now: Instant) {
        self.write_broken = true;
        self.write_deadline = None;
        self.transport_failure.get_or_insert_with(|| Box::new(cause));
        self.conn.handle_eof(now);
    }

    /// Reads once, at most `chunk` bytes; returns how many bytes arrived (0 at the end of the
    /// stream or on an error), or `None` when none are ready.
    fn read(&mut self, cx: &mut Context<'_>, now: Instant, chunk: usize) -> Option<usize> {
        // Called only below HIGH_WATER, so this is at least READ_OVERSHOOT.
        let limit = (HIGH_WATER + READ_OVERSHOOT).saturating_sub(self.backlog()).min(chunk);
        let polled = with_read_buffer(|buf| match Pin::new(&mut self.io).poll_read(cx, &mut buf[..limit]) {
            Poll::Ready(Ok(n)) if n > 0 => {
                if let Err(e) = self.conn.handle_input(&buf[..n.min(buf.len())], now) {
                    self.protocol_failed(&e);
                }
                Poll::Ready(Ok(n))
            }
            other => other,
        });
        match polled {
            Poll::Ready(Ok(0)) => {
                // Before the end of the closing handshake, the core fails the connection with
                // `TransportClosed`: the peer vanished.
                self.read_closed = true;
                self.input_done = true;
                self.conn.handle_eof(now);
            }
            Poll::Ready(Ok(n)) => return Some(n),
            Poll::Ready(Err(e)) => {
                self.read_closed = true;
                self.input_done = true;
                self.transport_failure.get_or_insert_with(|| Box::new(transport_error(e)));
                self.conn.handle_eof(now);
            }
            Poll::Pending => return None,
        }
        Some(0)
    }

    /// Leaves the task's waker with the handles, for their commands; returns whether commands
    /// arrived meanwhile.
    fn park(&mut self, cx: &Context<'_>) -> bool {
        if store_waker(&mut self.parked_waker, cx.waker()) {
            self.handle.shared.set_driver_waker(cx.waker());
        }
        self.handle.shared.has_commands()
    }

    /// Arms the timer for the next deadline and polls it; returns whether a deadline passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.release_at.is_some_and(|at| at <= now) {
            self.release_at = None;
            if self.conn.buffered_amount() == 0 {
                self.conn.release_buffers();
            }
        }
        let deadline = [self.conn.poll_timeout(), self.write_deadline, self.release_at].into_iter().flatten().min();
        let Some(deadline) = deadline else { return false };
        if deadline <= now {
            if self.write_deadline.is_some_and(|d| d <= now) {
                self.break_write(CloseCause::WriteTimeout, now);
            }
            self.conn.handle_timeout(now);
            return true;
        }
        if self.poll_sleep(cx, deadline, now) {
            let now = self.runtime.now();
            self.conn.handle_timeout(now);
            if self.write_deadline.is_some_and(|d| d <= now) {
                self.break_write(CloseCause::WriteTimeout, now);
            }
            // A release deadline that passed is handled at the top of the next turn.
            return true;
        }
        false
    }

    fn finished(&self) -> bool {
        self.conn.should_shutdown() || (self.write_broken && self.conn.state() == State::Closed)
    }

    /// The connection is over: tells the front-end and the handles (once), and starts shutting
    /// the transport down.
    fn finish(&mut self) {
        self.done = true;
        // The core always reports its end before it asks for the shutdown that leads here.
        let info = self.closed.take().unwrap_or_else(|| Box::new(CloseInfo::aborted()));
        if matches!(info.cause, CloseCause::Protocol(_)) {
            tracing::warn!(cause = %info.cause, "connection failed");
        } else {
            tracing::debug!(clean = info.was_clean, code = %info.code, cause = %info.cause, "connection closed");
        }
        self.front.on_close(&info);
        self.handle.shared.finish(CloseInfo::clone(&info));
        self.shutdown = Shutdown::Closing(info);
    }

    /// Shuts the transport's write half; unless the closing handshake completed, then reads and
    /// discards whatever the peer still sends until it closes its side or [`MAX_LINGER`] (at
    /// most the close timeout) passes, and only then lets the transport go. Closing a socket with unread input makes the kernel send a reset, which can destroy
    /// the close frame just written before the peer reads it (a browser then reports 1006
    /// instead of the code sent); this is the lingering close HTTP servers do for the same
    /// reason.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<CloseInfo> {
        loop {
            match &self.shutdown {
                Shutdown::Running => unreachable!("poll_shutdown runs only after finish"),
                Shutdown::Done => panic!("a connection's driver was polled after it completed"),
                Shutdown::Closing(_) => {
                    let closed = ready!(Pin::new(&mut self.io).poll_close(cx));
                    let Shutdown::Closing(info) = std::mem::replace(&mut self.shutdown, Shutdown::Done) else {
                        unreachable!()
                    };
                    // After a completed closing handshake a conforming peer sends nothing more, and
                    // the server closes first as RFC 6455 section 7.1.1 asks.
                    if self.input_done || info.was_clean || closed.is_err() {
                        return Poll::Ready(*info);
                    }
                    let until = self.runtime.now() + self.conn.config().close_timeout.min(MAX_LINGER);
                    self.shutdown = Shutdown::Draining(info, until);
                }
                Shutdown::Draining(_, until) => {
                    let until = *until;
                    let mut budget = READ_BUDGET_PER_POLL;
                    let ended = loop {
                        match with_read_buffer(|buf| Pin::new(&mut self.io).poll_read(cx, buf)) {
                            Poll::Ready(Ok(0) | Err(_)) => break true,
                            Poll::Ready(Ok(n)) if n < budget => budget -= n,
                            Poll::Ready(Ok(_)) => {
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                            Poll::Pending => break false,
                        }
                    };
                    if !ended && !self.poll_sleep(cx, until, self.runtime.now()) {
                        return Poll::Pending;
                    }
                    let Shutdown::Draining(info, _) = std::mem::replace(&mut self.shutdown, Shutdown::Done) else {
                        unreachable!()
                    };
                    return Poll::Ready(*info);
                }
            }
        }
    }

    /// Makes sure the task is woken at `deadline` (or earlier); returns whether it passed.
    ///
    /// A timer set at or before `deadline` that has not fired yet is left alone, and is not
    /// polled again with the waker it already has. Deadlines that move later on every message
    /// (the read timeout) or stay put (keepalive) thus cost no timer operation per message; a
    /// timer that fires early only wakes the task, which sets it again for the real deadline.
    fn poll_sleep(&mut self, cx: &mut Context<'_>, deadline: Instant, now: Instant) -> bool {
        if deadline <= now {
            return true;
        }
        let runtime = &self.runtime;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(runtime.sleep_until(deadline)));
        loop {
            let keep = self.armed.is_some_and(|armed| armed <= deadline && armed > now);
            if keep && self.sleep_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return false;
            }
            if !keep {
                runtime.reset(sleep.as_mut(), deadline);
                self.armed = Some(deadline);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                store_waker(&mut self.sleep_waker, cx.waker());
                return false;
            }
            // It fired: at `deadline`, or at an earlier one, in which case it is set again.
            if self.armed.take() == Some(deadline) {
                return true;
            }
        }
    }
}

/// The transport's shutdown, after the connection finished. The result is boxed, like every
/// record of the end the driver keeps: a running connection carries only the pointer.
enum Shutdown {
    /// The connection is running.
    Running,
    /// Shutting the write half down; then the result.
    Closing(Box<CloseInfo>),
    /// Discarding input until the peer closes or the deadline passes; then the result.
    Draining(Box<CloseInfo>, Instant),
    /// The result was returned.
    Done,
}

impl<S, R: Runtime, F: FrontEnd> Drop for Driver<S, R, F> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before the end (cancelled, or the runtime shut down): the handler and
            // whoever waits on the done signal learn that the connection ended abnormally.
            let info = CloseInfo::aborted();
            if self.opened {
                self.front.on_close(&info);
            }
            self.handle.shared.finish(info);
        }
    }
}

impl<S, R, F> Future for Driver<S, R, F>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
    F: FrontEnd,
{
    type Output = CloseInfo;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseInfo> {
        let this = self.get_mut();
        if !matches!(this.shutdown, Shutdown::Running) {
            return this.poll_shutdown(cx);
        }
        // One clock reading per poll: a poll takes microseconds, and deadlines are milliseconds.
        let now = this.runtime.now();
        let (others, mark) = count_poll(this.last_poll);
        this.last_poll = mark;
        let read_chunk = if others >= CROWD { CROWDED_READ_CHUNK } else { READ_CHUNK };
        if !this.opened {
            this.opened = true;
            let (mut ctx, front) = this.ctx(now);
            if let Err(err) = front.on_open(&mut ctx) {
                this.handler_failed(err, now);
            }
        }
        let mut read_budget = READ_BUDGET_PER_POLL;
        for _ in 0..TURNS_PER_POLL {
            let mut progress = false;
            if this.may_take_commands() {
                this.sending.take_commands(&mut this.conn, &this.handle.shared, now);
            }
            if !this.read_closed && this.backlog() < HIGH_WATER {
                if this.front.poll_ready(cx) {
                    if this.conn.is_read_paused() {
                        this.conn.handle_read_resumed(now);
                    }
                    if let Some(n) = this.read(cx, now, read_chunk) {
                        progress = true;
                        read_budget = read_budget.saturating_sub(n);
                    }
                } else if !this.conn.is_read_paused() {
                    // The application is behind, not the peer: what the peer sends (its pongs
                    // too) waits unread, so the liveness deadlines stand still until it catches up.
                    this.conn.handle_read_paused(now);
                }
            }
            this.deliver_events(now);
            progress |= this.write(cx, now);
            if this.finished() {
                this.finish();
                return this.poll_shutdown(cx);
            }
            progress |= this.poll_timer(cx, now);
            if !progress {
                // Queued commands are worth another turn only when the output has room for
                // them; otherwise the driver would spin until the peer reads.
                if this.park(cx) && this.may_take_commands() {
                    continue;
                }
                this.conn.release_input_buffers(KEEP_INPUT_BUFFER);
                if this.release_at.is_none() && this.conn.buffer_capacity() > 0 {
                    // Armed once per quiet spell, and only while there is something to give
                    // back, so an idle connection is never woken for it. The timer is polled
                    // on the next turn; arming it here must not be missed, so loop once more.
                    this.release_at = Some(now + BUFFER_LINGER);
                    continue;
                }
                return Poll::Pending;
            }
            if read_budget == 0 {
                break;
            }
        }
        // Out of turns or of read budget with work left: run again after the other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::count_poll;

    #[test]
    fn count_poll_counts_the_other_polls_in_between() {
        // A thread of its own, so that no other test's polls are counted.
        std::thread::spawn(|| {
            let (_, first) = count_poll(0);
            count_poll(0);
            count_poll(0);
            let (others, again) = count_poll(first);
            assert_eq!(others, 2);
            let (others, _) = count_poll(again);
            assert_eq!(others, 0, "polled twice in a row");
        })
        .join()
        .expect("the checks passed");
    }
}
