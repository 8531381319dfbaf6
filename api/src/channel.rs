//! The channel API, after Go's martini-sockets and macaron sockets: per connection a receiver,
//! a sender, a done signal, a disconnect handle and an error stream, all usable from one
//! `select!` loop.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ferrule_core::CloseCode;

use crate::callback::Ctx;
use crate::driver::FrontEnd;
use crate::error::{CloseInfo, Error, HandlerError};
use crate::handle::{Done, Handle};
use crate::message::{Codec, Message};
use crate::shared::{Shared, store_waker};

/// The channels of one connection, typed by the message flavour `M`: [`String`] (text),
/// [`Bytes`](bytes::Bytes) (binary), [`Json<T>`](crate::Json) or [`Message`] (either).
///
/// Dropping the [`Receiver`] closes the connection with 1001 Going Away (nobody is left to read
/// it), as does returning from the per-connection task that owns these channels; messages it
/// had not returned are discarded, and the closing handshake still completes.
#[derive(Debug)]
pub struct Channels<M: Codec = Message> {
    /// Incoming messages.
    pub receiver: Receiver<M>,
    /// Outgoing messages.
    pub sender: Sender<M>,
    /// Completes when the connection has finished.
    pub done: Done,
    /// Closes the connection with a code and reason.
    pub disconnect: Disconnect,
    /// Errors: messages that did not decode as `M` (the connection stays up for those), and
    /// the connection's end when it was a failure ([`Error::Failed`] with its
    /// [`CloseCause`](crate::CloseCause): a protocol violation, a timeout, a transport error).
    /// That last error is queued before `done` completes, so a loop that returns on `done` can
    /// still take it from here.
    pub errors: Errors,
}

impl<M: Codec> Channels<M> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let handle = Handle::new(shared.clone());
        Self {
            receiver: Receiver {
                shared: shared.clone(),
                batch: VecDeque::new(),
                taken: 0,
                taken_bytes: 0,
                _m: PhantomData,
            },
            sender: Sender { handle: handle.clone(), _m: PhantomData },
            done: handle.done(),
            disconnect: Disconnect { handle: handle.clone() },
            errors: Errors { shared },
        }
    }
}

/// Receives a connection's messages, decoded as `M`.
pub struct Receiver<M> {
    shared: Arc<Shared>,
    /// Messages taken from the inbox in one go and not yet returned.
    batch: VecDeque<Message>,
    /// How many messages of the batch were returned, and their bytes: they count against the
    /// receive bound until the receiver comes back to the inbox for more.
    taken: usize,
    taken_bytes: usize,
    _m: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for Receiver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<M: Codec> Receiver<M> {
    /// The next message; `None` once the connection has finished and every received message
    /// was taken. A message that does not decode as `M` goes to the error stream and is skipped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken from the queue only in the poll that returns it, so
    /// dropping the future never loses one.
    pub async fn recv(&mut self) -> Option<M> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message (see [`recv`](Self::recv)).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<M>> {
        loop {
            let Some(message) = self.batch.pop_front() else {
                // One lock takes every message delivered so far.
                let (taken, bytes) = (std::mem::take(&mut self.taken), std::mem::take(&mut self.taken_bytes));
                if !ready!(self.shared.take_inbox(&mut self.batch, taken, bytes, cx.waker())) {
                    return Poll::Ready(None);
                }
                continue;
            };
            self.taken += 1;
            self.taken_bytes += message.len();
            match M::decode(message) {
                Ok(m) => return Poll::Ready(Some(m)),
                Err(e) => self.shared.push_error(Error::Decode(e)),
            }
        }
    }
}

impl<M> Drop for Receiver<M> {
    fn drop(&mut self) {
        // Nobody reads this connection any more: close it (an error only means it is already
        // closing), and let the driver read on to the end of the closing handshake.
        self.shared.receiver_dropped();
        let _ = Handle::new(self.shared.clone()).close(CloseCode::GOING_AWAY, "");
    }
}

/// Sends messages of type `M` on a connection. Cloneable.
pub struct Sender<M> {
    handle: Handle,
    _m: PhantomData<fn(M)>,
}

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Self { handle: self.handle.clone(), _m: PhantomData }
    }
}

impl<M> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("handle", &self.handle).finish()
    }
}

impl<M: Codec> Sender<M> {
    /// Queues a message, waiting while the send buffer is full.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when encoding fails; [`Error::Closed`] once the connection is closing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the message is queued only when the future completes with `Ok`.
    pub async fn send(&self, message: M) -> Result<(), Error> {
        self.handle.send_as(message).await
    }

    /// The untyped handle behind this sender.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Closes a connection with a close code and reason (the martini `disconnect` channel).
#[derive(Clone, Debug)]
pub struct Disconnect {
    handle: Handle,
}

impl Disconnect {
    /// Starts the closing handshake with `code` and `reason`; messages queued before are sent
    /// first. See [`Handle::close`].
    ///
    /// # Errors
    ///
    /// [`Error::Send`] for a code that may not be sent (RFC 6455 section 7.4);
    /// [`Error::Closed`] when the connection is already closing.
    pub fn disconnect(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.handle.close(code, reason)
    }
}

/// A connection's error stream.
pub struct Errors {
    shared: Arc<Shared>,
}

impl fmt::Debug for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Errors").finish_non_exhaustive()
    }
}

impl Errors {
    /// The next error; `None` once the connection has finished and every error was taken. At
    /// most 64 errors wait; older ones are dropped first. A failure that ends the connection
    /// is queued before the done signal completes, and is the last error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Receiver::recv`].
    pub async fn recv(&mut self) -> Option<Error> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if let Some(e) = inner.errors.pop_front() {
                return Poll::Ready(Some(e));
            }
            if inner.closed.is_some() {
                return Poll::Ready(None);
            }
            store_waker(&mut inner.errors_waker, cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// Delivers messages into the shared inbox for a [`Receiver`]: the messages of one delivery
/// (everything decoded from one read) go in together, under one lock.
pub(crate) struct ChannelFront {
    shared: Arc<Shared>,
    batch: VecDeque<Message>,
    batch_bytes: usize,
}

impl ChannelFront {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, batch: VecDeque::new(), batch_bytes: 0 }
    }
}

impl FrontEnd for ChannelFront {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> bool {
        self.shared.inbox_has_room(cx.waker())
    }

    fn on_open(&mut self, _ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        Ok(())
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        self.batch_bytes += message.len();
        self.batch.push_back(message);
        Ok(())
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.shared.deliver(&mut self.batch, std::mem::take(&mut self.batch_bytes));
        }
    }

    fn on_close(&mut self, _info: &CloseInfo) {}
}
