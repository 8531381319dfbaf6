//! Acknowledgements: waiting for the replies to an emit, with a timeout on the runtime's clock.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::ConnId;
use super::socket::SocketState;
use crate::runtime::Runtime;
use crate::shared::store_waker;

/// Why an acknowledgement did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// No reply within the timeout.
    Timeout,
    /// The connection ended before it replied.
    Disconnected,
    /// The message was not sent: the connection was closing, or its send queue was full (the
    /// hub's [`SlowRecipients`](super::SlowRecipients) policy then applied).
    NotSent,
    /// The peer refused to reply (`["$nack", id, reason]`), with its reason.
    Refused(String),
    /// The reply did not decode as the type asked for.
    Decode(String),
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("no acknowledgement within the timeout"),
            Self::Disconnected => f.write_str("the connection ended before it acknowledged"),
            Self::NotSent => f.write_str("the message was not sent: the connection was closing or too slow"),
            Self::Refused(reason) => write!(f, "the peer refused to acknowledge: {reason}"),
            Self::Decode(e) => write!(f, "the acknowledgement did not decode: {e}"),
        }
    }
}

impl std::error::Error for AckError {}

/// A raw reply: the JSON text of the payload (`null` when it had none), or why there is none.
pub(crate) type RawReply = Result<String, AckError>;

/// The replies expected for one emit: one slot per recipient, filled by the connections as the
/// replies arrive, read by the waiting [`Acks`] future.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    state: Mutex<CollectorState>,
}

#[derive(Debug, Default)]
struct CollectorState {
    /// Each recipient, whether it replied, and its state to cancel the wait on.
    recipients: Vec<(ConnId, Option<RawReply>, Weak<SocketState>)>,
    waiting: usize,
    waker: Option<Waker>,
}

impl Collector {
    fn lock(&self) -> MutexGuard<'_, CollectorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Expects a reply from `socket`.
    pub(crate) fn expect(&self, socket: &Arc<SocketState>) {
        let mut state = self.lock();
        state.recipients.push((socket.id.clone(), None, Arc::downgrade(socket)));
        state.waiting += 1;
    }

    /// The reply of `id` (or why there will be none).
    pub(crate) fn complete(&self, id: &ConnId, reply: RawReply) {
        let mut state = self.lock();
        let Some(slot) = state.recipients.iter_mut().find(|(r, done, _)| r == id && done.is_none()) else { return };
        slot.1 = Some(reply);
        state.waiting -= 1;
        if state.waiting == 0 {
            if let Some(w) = state.waker.take() {
                w.wake();
            }
        }
    }

    /// Ends the wait: those that did not reply get [`AckError::Timeout`], and stop being
    /// waited for by their connections under ack id `id`.
    fn finish(&self, id: u64) -> Vec<(ConnId, RawReply)> {
        let recipients = std::mem::take(&mut self.lock().recipients);
        recipients
            .into_iter()
            .map(|(conn, reply, socket)| {
                if reply.is_none() {
                    if let Some(socket) = socket.upgrade() {
                        socket.acks().remove(&id);
                    }
                }
                (conn, reply.unwrap_or(Err(AckError::Timeout)))
            })
            .collect()
    }
}

/// The acks a connection waits for, by id.
pub(crate) type Pending = HashMap<u64, Arc<Collector>>;

/// The future of an emit that asked for acknowledgements: completes with every recipient's
/// reply once all came, or at the timeout with those that came in time (the others as
/// [`AckError::Timeout`]). Dropping it stops the wait; replies that come later are ignored.
#[must_use = "the replies are collected only while the future is polled"]
pub struct Acks<R: Runtime, A> {
    id: u64,
    collector: Arc<Collector>,
    deadline: Instant,
    sleep: Option<Pin<Box<R::Sleep>>>,
    runtime: R,
    done: bool,
    _reply: PhantomData<fn() -> A>,
}

impl<R: Runtime, A> fmt::Debug for Acks<R, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acks").field("id", &self.id).field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl<R: Runtime, A> Acks<R, A> {
    pub(crate) fn new(runtime: R, id: u64, collector: Arc<Collector>, deadline: Instant) -> Self {
        Self { id, collector, deadline, sleep: None, runtime, done: false, _reply: PhantomData }
    }
}

// Nothing in `Acks` is structurally pinned (the timer is boxed), so moving it is fine.
impl<R: Runtime, A> Unpin for Acks<R, A> {}

impl<R: Runtime, A: DeserializeOwned> Future for Acks<R, A> {
    type Output = Vec<(ConnId, Result<A, AckError>)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "Acks polled after it completed");
        let all_in = {
            let mut state = this.collector.lock();
            store_waker(&mut state.waker, cx.waker());
            state.waiting == 0
        };
        if !all_in {
            let (runtime, deadline) = (&this.runtime, this.deadline);
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(runtime.sleep_until(deadline)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.done = true;
        let replies = this.collector.finish(this.id);
        Poll::Ready(
            replies
                .into_iter()
                .map(|(conn, raw)| {
                    let reply =
                        raw.and_then(|json| serde_json::from_str(&json).map_err(|e| AckError::Decode(e.to_string())));
                    (conn, reply)
                })
                .collect(),
        )
    }
}

impl<R: Runtime, A> Drop for Acks<R, A> {
    fn drop(&mut self) {
        if !self.done {
            self.collector.finish(self.id);
        }
    }
}

/// The future of an emit to one connection that asked for an acknowledgement: its reply, or
/// why there is none.
#[must_use = "the reply is collected only while the future is polled"]
#[derive(Debug)]
pub struct Ack<R: Runtime, A>(pub(crate) Acks<R, A>);

impl<R: Runtime, A: DeserializeOwned> Future for Ack<R, A> {
    type Output = Result<A, AckError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let acks = Pin::new(&mut self.get_mut().0);
        acks.poll(cx).map(|replies| replies.into_iter().next().map_or(Err(AckError::NotSent), |(_, reply)| reply))
    }
}
