//! State shared between a connection's driver and its handles and channels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use ferrule_core::{CloseCode, PreparedMessage};

use crate::error::{CloseInfo, Error};
use crate::message::Message;
use crate::options::Bound;

/// At most this many errors wait on the error stream; older ones are dropped first.
const MAX_QUEUED_ERRORS: usize = 64;

/// A command from a handle to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Message(Message),
    /// A message framed once for many connections (a hub's broadcast).
    Prepared(PreparedMessage),
    /// A fragment of a message streamed through a [`MessageWriter`](crate::MessageWriter);
    /// `true` for the last one.
    Fragment(Message, bool),
    Ping(Bytes),
    /// Switch compression of the messages queued after this one ([`Handle::set_write_compression`](crate::Handle::set_write_compression)).
    WriteCompression(bool),
    /// Start the closing handshake with this code and reason; `shutdown` when the server's
    /// shutdown asks (the end's cause is then [`CloseCause::ServerShutdown`](crate::CloseCause::ServerShutdown)).
    Close {
        code: CloseCode,
        reason: String,
        shutdown: bool,
    },
}

impl Command {
    /// The payload bytes a message counts against the send bound (other commands count none).
    fn message_len(&self) -> usize {
        match self {
            Self::Message(m) | Self::Fragment(m, _) => m.len(),
            Self::Prepared(m) => m.len(),
            Self::Ping(_) | Self::WriteCompression(_) | Self::Close { .. } => 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Set when the outbox may hold commands, so an idle driver skips the lock.
    has_commands: AtomicBool,
    /// Set while the messages received and not yet taken are at the receive bound (kept under
    /// the lock by whoever changes them), so a driver with room to deliver skips the lock
    /// before each read.
    inbox_full: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) outbox: VecDeque<Command>,
    pub(crate) outbox_bytes: usize,
    pub(crate) send_bound: Bound,
    pub(crate) send_waiters: Vec<Waker>,
    /// Wakes the driver. It stays in place when used (the driver changes it only when its
    /// waker changes), so a driver with nothing to do parks without taking the lock.
    pub(crate) driver: Option<Waker>,
    /// Messages for the channel API's receiver, delivered a batch at a time.
    pub(crate) inbox: VecDeque<Message>,
    /// Messages received and not yet taken: those in the inbox and those of the batch the
    /// receiver last took from it (counted until it comes back for more), and their bytes.
    /// This is what the receive bound limits.
    pub(crate) received: usize,
    pub(crate) received_bytes: usize,
    pub(crate) recv_bound: Bound,
    /// The receiver's waker, kept between wakes; woken only while `receiver_waits`.
    pub(crate) receiver: Option<Waker>,
    pub(crate) receiver_waits: bool,
    /// The driver stopped reading because the receive bound was reached.
    pub(crate) driver_waits_for_inbox: bool,
    /// The channel API's receiver was dropped: received messages are discarded.
    pub(crate) receiver_gone: bool,
    pub(crate) errors: VecDeque<Error>,
    pub(crate) errors_waker: Option<Waker>,
    /// Set once, when the driver finished. Boxed: every connection holds this struct for its
    /// whole life, and the record only once it has ended.
    pub(crate) closed: Option<Box<CloseInfo>>,
    /// A close was requested or the connection is closing: sends are refused.
    closing: bool,
    /// A [`MessageWriter`](crate::MessageWriter) has a message open: other sends wait.
    streaming: bool,
    pub(crate) done_waiters: Vec<Waker>,
}

/// Puts `waker` in `slot` unless an equivalent one is there already (so a task polled again
/// costs no clone); returns whether the slot changed.
pub(crate) fn store_waker(slot: &mut Option<Waker>, waker: &Waker) -> bool {
    if slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
        return false;
    }
    *slot = Some(waker.clone());
    true
}

/// Adds `waker` to `list` unless an equivalent one is there already.
pub(crate) fn register(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

fn wake_all(list: &mut Vec<Waker>) {
    for w in list.drain(..) {
        w.wake();
    }
}

impl Inner {
    /// Whether a close was requested or the connection is closing: sends are refused.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Marks the connection as closing; returns whether it was not already (so the caller is
    /// the one that closes it).
    pub(crate) fn start_closing(&mut self) -> bool {
        !std::mem::replace(&mut self.closing, true)
    }

    /// Whether a [`MessageWriter`](crate::MessageWriter) has a message open, so that other
    /// sends wait for its end.
    pub(crate) fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// A [`MessageWriter`](crate::MessageWriter) opened a message.
    pub(crate) fn start_streaming(&mut self) {
        self.streaming = true;
    }

    fn at_recv_bound(&self) -> bool {
        self.received >= self.recv_bound.messages || self.received_bytes >= self.recv_bound.bytes
    }

    /// Wakes the driver if it stopped reading at the receive bound.
    fn wake_driver_waiting_for_inbox(&mut self) {
        if std::mem::take(&mut self.driver_waits_for_inbox) {
            if let Some(w) = &self.driver {
                w.wake_by_ref();
            }
        }
    }
}

impl Shared {
    pub(crate) fn new(send_bound: Bound, recv_bound: Bound) -> Self {
        Self {
            inner: Mutex::new(Inner {
                outbox: VecDeque::new(),
                outbox_bytes: 0,
                send_bound,
                send_waiters: Vec::new(),
                driver: None,
                inbox: VecDeque::new(),
                received: 0,
                received_bytes: 0,
                recv_bound,
                receiver: None,
                receiver_waits: false,
                driver_waits_for_inbox: false,
                receiver_gone: false,
                errors: VecDeque::new(),
                errors_waker: None,
                closed: None,
                closing: false,
                streaming: false,
                done_waiters: Vec::new(),
            }),
            has_commands: AtomicBool::new(false),
            inbox_full: AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the queues inconsistent (each update is a
        // single push or pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the driver may read more for the channel API: the messages received and not yet
    /// taken are below the receive bound. When not, `waker` (the driver's) is left for the
    /// receiver to wake once it takes more.
    pub(crate) fn inbox_has_room(&self, waker: &Waker) -> bool {
        if !self.inbox_full.load(Ordering::Acquire) {
            return true;
        }
        let mut inner = self.lock();
        // Once closing, reading goes on past the bound (what arrives there is discarded, see
        // `deliver`), so that the peer's close reply is read even while nobody drains the
        // receiver: an application that closes and then waits for the end does not wait for
        // the close timeout.
        if !inner.at_recv_bound() || inner.closing {
            return true;
        }
        inner.driver_waits_for_inbox = true;
        // Stored here, under the same lock, rather than left to the driver's park: a receiver
        // that took messages in between would find the flag and no waker, and the wake would
        // be lost.
        store_waker(&mut inner.driver, waker);
        false
    }

    /// Moves a batch of received messages of `bytes` bytes in all into the inbox under one
    /// lock, and wakes the receiver if it waits.
    pub(crate) fn deliver(&self, batch: &mut VecDeque<Message>, bytes: usize) {
        let mut inner = self.lock();
        if inner.receiver_gone || (inner.closing && inner.at_recv_bound()) {
            if !inner.receiver_gone {
                tracing::debug!(messages = batch.len(), "closing with a full receive queue: messages discarded");
            }
            batch.clear();
            return;
        }
        inner.received += batch.len();
        inner.received_bytes += bytes;
        if inner.inbox.is_empty() {
            // The usual case: hand the batch's buffer over, and keep the inbox's spare one.
            std::mem::swap(&mut inner.inbox, batch);
        } else {
            inner.inbox.append(batch);
        }
        self.update_inbox_full(&inner);
        if std::mem::take(&mut inner.receiver_waits) {
            if let Some(w) = &inner.receiver {
                w.wake_by_ref();
            }
        }
    }

    /// For the receiver, whose previous batch of `taken` messages of `taken_bytes` bytes has
    /// been consumed: takes every message in the inbox into `batch` (empty on entry).
    /// `Ready(true)` when there were some, `Ready(false)` when there were none and the
    /// connection has finished, and `Pending` otherwise, with `waker` left to be woken by the
    /// next delivery or the end.
    pub(crate) fn take_inbox(
        &self,
        batch: &mut VecDeque<Message>,
        taken: usize,
        taken_bytes: usize,
        waker: &Waker,
    ) -> Poll<bool> {
        let mut inner = self.lock();
        inner.received -= taken;
        inner.received_bytes -= taken_bytes;
        self.update_inbox_full(&inner);
        if !inner.at_recv_bound() {
            inner.wake_driver_waiting_for_inbox();
        }
        if !inner.inbox.is_empty() {
            std::mem::swap(&mut inner.inbox, batch);
            return Poll::Ready(true);
        }
        if inner.closed.is_some() {
            return Poll::Ready(false);
        }
        store_waker(&mut inner.receiver, waker);
        inner.receiver_waits = true;
        Poll::Pending
    }

    /// The receiver was dropped: nobody will take the messages waiting for it, so they are
    /// dropped, and the driver, if it waits for room, reads on (the peer's close reply must
    /// still be read).
    pub(crate) fn receiver_dropped(&self) {
        let mut inner = self.lock();
        inner.receiver_gone = true;
        inner.inbox.clear();
        inner.received = 0;
        inner.received_bytes = 0;
        inner.receiver = None;
        inner.receiver_waits = false;
        self.update_inbox_full(&inner);
        inner.wake_driver_waiting_for_inbox();
    }

    /// Records whether the receive bound is reached; called with the lock held after each
    /// change.
    fn update_inbox_full(&self, inner: &Inner) {
        self.inbox_full.store(inner.at_recv_bound(), Ordering::Release);
    }

    pub(crate) fn has_commands(&self) -> bool {
        self.has_commands.load(Ordering::Acquire)
    }

    /// Queues the command in `slot` once the connection accepts sends and the send bound has
    /// room for it (and, for `behind_writer`, no [`MessageWriter`](crate::MessageWriter) has a
    /// message open); returns the lock, still held, so the caller can finish under it.
    pub(crate) fn poll_queue(
        &self,
        cx: &Context<'_>,
        slot: &mut Option<Command>,
        behind_writer: bool,
    ) -> Poll<Result<MutexGuard<'_, Inner>, Error>> {
        let mut inner = self.lock();
        if inner.closing {
            return Poll::Ready(Err(Error::Closed));
        }
        let len = slot.as_ref().map_or(0, Command::message_len);
        if (behind_writer && inner.streaming) || !inner.send_bound.admits(inner.outbox.len(), inner.outbox_bytes, len) {
            register(&mut inner.send_waiters, cx.waker());
            return Poll::Pending;
        }
        if let Some(command) = slot.take() {
            self.push_command(&mut inner, command);
        }
        Poll::Ready(Ok(inner))
    }

    /// Queues a command for the driver and wakes it.
    pub(crate) fn push_command(&self, inner: &mut Inner, command: Command) {
        inner.outbox_bytes += command.message_len();
        inner.outbox.push_back(command);
        // Already set: the driver was woken when it was set and has not taken the commands yet
        // (it clears the flag under this lock), so it will see this one too.
        if !self.has_commands.swap(true, Ordering::AcqRel) {
            if let Some(w) = &inner.driver {
                w.wake_by_ref();
            }
        }
    }

    /// The open [`MessageWriter`](crate::MessageWriter) is done: other sends may go ahead.
    pub(crate) fn end_streaming(&self, inner: &mut Inner) {
        inner.streaming = false;
        wake_all(&mut inner.send_waiters);
    }

    /// Takes every queued command; wakes senders that waited for room.
    pub(crate) fn take_commands(&self) -> VecDeque<Command> {
        let mut inner = self.lock();
        self.has_commands.store(false, Ordering::Release);
        inner.outbox_bytes = 0;
        wake_all(&mut inner.send_waiters);
        std::mem::take(&mut inner.outbox)
    }

    /// Puts commands the driver took but cannot carry out yet back at the front of the queue,
    /// ahead of any queued since, and leaves the queue flagged as holding commands.
    pub(crate) fn hold_commands(&self, mut held: VecDeque<Command>) {
        let mut inner = self.lock();
        inner.outbox_bytes += held.iter().map(Command::message_len).sum::<usize>();
        held.append(&mut inner.outbox);
        inner.outbox = held;
        self.has_commands.store(true, Ordering::Release);
    }

    /// Stores the driver's waker (the driver calls this when its waker changed, before it
    /// parks; [`has_commands`](Self::has_commands) then tells whether commands arrived
    /// meanwhile).
    pub(crate) fn set_driver_waker(&self, waker: &Waker) {
        self.lock().driver = Some(waker.clone());
    }

    /// Puts an error on the error stream and wakes its reader.
    pub(crate) fn push_error(&self, error: Error) {
        let mut inner = self.lock();
        Self::queue_error(&mut inner, error);
        if let Some(w) = inner.errors_waker.take() {
            w.wake();
        }
    }

    fn queue_error(inner: &mut Inner, error: Error) {
        if inner.errors.len() == MAX_QUEUED_ERRORS {
            inner.errors.pop_front();
        }
        inner.errors.push_back(error);
    }

    /// Records the end of the connection and wakes everything that waits on it. A failure is
    /// put on the error stream first, under the same lock, so that whoever wakes on the done
    /// signal finds it there.
    pub(crate) fn finish(&self, info: CloseInfo) {
        let mut inner = self.lock();
        if info.cause.is_failure() {
            Self::queue_error(&mut inner, Error::Failed(info.cause.clone()));
        }
        inner.closing = true;
        inner.closed = Some(Box::new(info));
        // The driver parks no more; its waker would keep its task's memory alive for as long
        // as a handle lives.
        inner.driver = None;
        wake_all(&mut inner.done_waiters);
        wake_all(&mut inner.send_waiters);
        inner.receiver_waits = false;
        for w in [inner.receiver.take(), inner.errors_waker.take()].into_iter().flatten() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Poll, Wake, Waker};

    use bytes::Bytes;

    use super::Shared;
    use crate::message::Message;
    use crate::options::Bound;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Once closing, the receive bound no longer stops reading, and what arrives past it is
    /// discarded: the peer's close reply must be read even if nobody drains the receiver.
    #[test]
    fn closing_reads_past_the_receive_bound_and_discards_the_excess() {
        let shared = Shared::new(Bound::new(4, 1024), Bound::new(1, 1024));
        let mut batch = VecDeque::from([Message::Binary(Bytes::from_static(b"one"))]);
        shared.deliver(&mut batch, 3);
        assert!(!shared.inbox_has_room(Waker::noop()), "one message reaches a bound of one");
        assert!(shared.lock().start_closing());
        assert!(shared.inbox_has_room(Waker::noop()), "closing reads on");
        let mut late = VecDeque::from([Message::Binary(Bytes::from_static(b"two"))]);
        shared.deliver(&mut late, 3);
        assert!(late.is_empty());
        let mut taken = VecDeque::new();
        assert_eq!(shared.take_inbox(&mut taken, 0, 0, Waker::noop()), Poll::Ready(true));
        assert_eq!(taken, [Message::Binary(Bytes::from_static(b"one"))], "the message past the bound was discarded");
    }

    /// A driver that finds the receive bound reached is woken once the receiver has taken the
    /// messages and comes back, even if it never parked before (so its waker was never stored
    /// by a park).
    #[test]
    fn driver_at_the_receive_bound_is_woken_when_the_receiver_comes_back() {
        let shared = Shared::new(Bound::new(4, 1024), Bound::new(1, 1024));
        let mut batch = VecDeque::from([Message::Binary(Bytes::from_static(b"one"))]);
        shared.deliver(&mut batch, 3);
        let driver = Arc::new(CountingWaker::default());
        let driver_waker = Waker::from(driver.clone());
        assert!(!shared.inbox_has_room(&driver_waker), "one message reaches a bound of one");

        let mut taken = VecDeque::new();
        assert_eq!(shared.take_inbox(&mut taken, 0, 0, Waker::noop()), Poll::Ready(true));
        let message = taken.pop_front().expect("the delivered message");
        assert_eq!(driver.0.load(Ordering::SeqCst), 0, "a taken message counts until the receiver comes back");
        assert!(!shared.inbox_has_room(&driver_waker));

        assert!(shared.take_inbox(&mut taken, 1, message.len(), Waker::noop()).is_pending());
        assert_eq!(driver.0.load(Ordering::SeqCst), 1, "the waiting driver was woken");
        assert!(shared.inbox_has_room(&driver_waker));
    }
}
