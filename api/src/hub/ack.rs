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

/// Where a collector on a node other than the emitter's passes each reply (to the emitting
/// node, through the backplane).
pub(crate) type Forward = Box<dyn Fn(&ConnId, &RawReply) + Send + Sync>;

/// The replies expected for one emit: one slot per recipient, filled by the connections as the
/// replies arrive, read by the waiting [`Acks`] future. With a backplane, the emitting node's
/// collector also waits for each other node to say which of its connections will reply.
#[derive(Default)]
pub(crate) struct Collector {
    state: Mutex<CollectorState>,
    forward: Option<Forward>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector").field("state", &*self.lock()).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct CollectorState {
    /// Each recipient, whether it replied, and its state to cancel the wait on (none for a
    /// connection on another node).
    recipients: Vec<(ConnId, Option<RawReply>, Weak<SocketState>)>,
    waiting: usize,
    /// Other nodes that have not yet said which of their connections will reply.
    nodes_waiting: usize,
    finished: bool,
    waker: Option<Waker>,
}

impl CollectorState {
    fn all_in(&self) -> bool {
        self.waiting == 0 && self.nodes_waiting == 0
    }

    fn wake_if_all_in(&mut self) {
        if self.all_in() {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }
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

    /// A collector whose replies go to `forward` as they come (on a node that delivers
    /// another node's emit).
    pub(crate) fn forwarding(forward: Forward) -> Self {
        Self { state: Mutex::default(), forward: Some(forward) }
    }

    /// The reply of `id` (or why there will be none).
    pub(crate) fn complete(&self, id: &ConnId, reply: RawReply) {
        let mut state = self.lock();
        let Some(slot) = state.recipients.iter_mut().find(|(r, done, _)| r == id && done.is_none()) else { return };
        if let Some(forward) = &self.forward {
            forward(id, &reply);
        }
        slot.1 = Some(reply);
        state.waiting -= 1;
        state.wake_if_all_in();
    }

    /// Waits, besides the local recipients, for `nodes` other nodes to list theirs.
    pub(crate) fn expect_nodes(&self, nodes: usize) {
        self.lock().nodes_waiting += nodes;
    }

    /// Another node's list of the connections that will reply (its part of the emit).
    pub(crate) fn node_expects(&self, ids: Vec<ConnId>) {
        let mut state = self.lock();
        if state.finished || state.nodes_waiting == 0 {
            return;
        }
        state.nodes_waiting -= 1;
        for id in ids {
            // A reply can overtake its node's list: it is then in already.
            if !state.recipients.iter().any(|(r, _, _)| *r == id) {
                state.recipients.push((id, None, Weak::new()));
                state.waiting += 1;
            }
        }
        state.wake_if_all_in();
    }

    /// The reply of a connection on another node.
    pub(crate) fn complete_remote(&self, id: ConnId, reply: RawReply) {
        let mut state = self.lock();
        if state.finished {
            return;
        }
        match state.recipients.iter_mut().find(|(r, _, _)| *r == id) {
            Some(slot) if slot.1.is_none() => {
                slot.1 = Some(reply);
                state.waiting -= 1;
                state.wake_if_all_in();
            }
            Some(_) => {}
            // Before its node's list, which will not count it again.
            None => state.recipients.push((id, Some(reply), Weak::new())),
        }
    }

    /// Ends the wait: those that did not reply get [`AckError::Timeout`], and stop being
    /// waited for by their connections under ack id `id`.
    pub(crate) fn finish(&self, id: u64) -> Vec<(ConnId, RawReply)> {
        let recipients = {
            let mut state = self.lock();
            state.finished = true;
            std::mem::take(&mut state.recipients)
        };
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
            state.all_in()
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
