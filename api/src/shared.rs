//! State shared between a connection's driver and its handles and channels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use ferrule_core::CloseCode;

use crate::error::{CloseInfo, Error};
use crate::message::Message;
use crate::options::Bound;

/// At most this many errors wait on the error stream; older ones are dropped first.
const MAX_QUEUED_ERRORS: usize = 64;

/// A command from a handle to the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Message(Message),
    Ping(Bytes),
    Close(CloseCode, String),
}

#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Set when the outbox may hold commands, so an idle driver skips the lock.
    has_commands: AtomicBool,
    /// Set while the inbox is at its bound (kept by whoever changes the inbox, under the lock),
    /// so a driver with room to deliver skips the lock before each read.
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
    pub(crate) inbox: VecDeque<Message>,
    pub(crate) inbox_bytes: usize,
    pub(crate) recv_bound: Bound,
    pub(crate) receiver: Option<Waker>,
    /// The driver stopped reading because the inbox was full.
    pub(crate) driver_waits_for_inbox: bool,
    pub(crate) errors: VecDeque<Error>,
    pub(crate) errors_waker: Option<Waker>,
    /// Set once, when the driver finished.
    pub(crate) closed: Option<CloseInfo>,
    /// A close was requested or the connection is closing: sends are refused.
    pub(crate) closing: bool,
    pub(crate) done_waiters: Vec<Waker>,
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
                inbox_bytes: 0,
                recv_bound,
                receiver: None,
                driver_waits_for_inbox: false,
                errors: VecDeque::new(),
                errors_waker: None,
                closed: None,
                closing: false,
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

    /// Whether the inbox was at its bound when last changed.
    pub(crate) fn inbox_full(&self) -> bool {
        self.inbox_full.load(Ordering::Acquire)
    }

    /// Records whether the inbox is at its bound; called with the lock held after each change.
    pub(crate) fn update_inbox_full(&self, inner: &Inner) {
        let full = inner.inbox.len() >= inner.recv_bound.messages || inner.inbox_bytes >= inner.recv_bound.bytes;
        self.inbox_full.store(full, Ordering::Release);
    }

    pub(crate) fn has_commands(&self) -> bool {
        self.has_commands.load(Ordering::Acquire)
    }

    /// Queues a command for the driver and wakes it. `force` skips the bound (close, ping).
    pub(crate) fn push_command(&self, inner: &mut Inner, command: Command) {
        if let Command::Message(m) = &command {
            inner.outbox_bytes += m.len();
        }
        inner.outbox.push_back(command);
        self.has_commands.store(true, Ordering::Release);
        if let Some(w) = &inner.driver {
            w.wake_by_ref();
        }
    }

    /// Takes every queued command; wakes senders that waited for room.
    pub(crate) fn take_commands(&self) -> VecDeque<Command> {
        let mut inner = self.lock();
        self.has_commands.store(false, Ordering::Release);
        inner.outbox_bytes = 0;
        wake_all(&mut inner.send_waiters);
        std::mem::take(&mut inner.outbox)
    }

    /// Stores the driver's waker (the driver calls this when its waker changed, before it
    /// parks; [`has_commands`](Self::has_commands) then tells whether commands arrived
    /// meanwhile).
    pub(crate) fn set_driver_waker(&self, waker: &Waker) {
        self.lock().driver = Some(waker.clone());
    }

    pub(crate) fn push_error(&self, error: Error) {
        let mut inner = self.lock();
        if inner.errors.len() == MAX_QUEUED_ERRORS {
            inner.errors.pop_front();
        }
        inner.errors.push_back(error);
        if let Some(w) = inner.errors_waker.take() {
            w.wake();
        }
    }

    /// Records the end of the connection and wakes everything that waits on it.
    pub(crate) fn finish(&self, info: CloseInfo) {
        let mut inner = self.lock();
        inner.closing = true;
        inner.closed = Some(info);
        // The driver parks no more; its waker would keep its task's memory alive for as long
        // as a handle lives.
        inner.driver = None;
        wake_all(&mut inner.done_waiters);
        wake_all(&mut inner.send_waiters);
        for w in [inner.receiver.take(), inner.errors_waker.take()].into_iter().flatten() {
            w.wake();
        }
    }
}
