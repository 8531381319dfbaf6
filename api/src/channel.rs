//! The channel API, after Go's martini-sockets and macaron sockets: per connection a receiver,
//! a sender, a done signal, a disconnect handle and an error stream, all usable from one
//! `select!` loop; the receiver is also a `Stream` and the sender a `Sink`.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ferrule_core::{CloseCode, DeflateParams};
use futures_core::{FusedStream, Stream};
use futures_sink::Sink;

use crate::callback::Ctx;
use crate::driver::FrontEnd;
use crate::error::{CloseInfo, Error, HandlerError};
use crate::handle::{Done, Handle, TrySendError};
use crate::message::{Codec, Message};
use crate::shared::{Command, Shared, store_waker};

/// The channels of one connection, typed by the message flavour `M`: [`String`] (text),
/// [`Bytes`](bytes::Bytes) (binary), [`Json<T>`](crate::Json) or [`Message`] (either).
///
/// Dropping the [`Receiver`] closes the connection with 1001 Going Away (nobody is left to read
/// it), as does returning from the per-connection task that owns these channels; messages it
/// had not returned are discarded, and the closing handshake still completes.
///
/// # Stream and Sink
///
/// The channels together are the connection as one value, a [`Stream`] of the messages it
/// receives and a [`Sink`] of those it sends (through [`receiver`](Self::receiver) and
/// [`sender`](Self::sender), which are a `Stream` and a `Sink` on their own), so the
/// combinators of the `futures` crates apply, [`StreamExt::split`] included. This is the shape
/// of a tokio-tungstenite connection, but the stream yields messages rather than results:
/// errors go to [`errors`](Self::errors), and the stream ends when the connection has.
/// Keep a clone of [`done`](Self::done) before splitting to learn how it ended.
///
/// ```
/// use ferrule::{Channels, Error};
/// use futures_util::{SinkExt, StreamExt};
///
/// /// Answers every text message in upper case; the client's close ends the loop.
/// async fn shout(ws: Channels<String>) -> Result<(), Error> {
///     let done = ws.done.clone();
///     let (mut write, mut read) = ws.split();
///     while let Some(text) = read.next().await {
///         write.send(text.to_uppercase()).await?;
///     }
///     println!("closed with {}", done.await.code);
///     Ok(())
/// }
///
/// /// Echoes until the peer closes, then closes too: `forward` closes the sink at the end.
/// async fn echo(ws: Channels) -> Result<(), Error> {
///     let Channels { receiver, sender, .. } = ws;
///     receiver.map(Ok).forward(sender).await
/// }
/// ```
///
/// A client gets the same value from the adapters, e.g.
/// `ferrule_tokio::connect(url, &options).await?.channels::<String>()`.
///
/// [`StreamExt::split`]: https://docs.rs/futures-util/0.3/futures_util/stream/trait.StreamExt.html#method.split
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
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
}

impl<M: Codec> Channels<M> {
    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the handshake (RFC 7692 section 7.1), or
    /// `None` when messages are not compressed. [`Handle::set_write_compression`] (through
    /// [`Sender::handle`] or a [`Handle`] of the connection) switches compression per message.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    pub(crate) fn new(shared: Arc<Shared>, subprotocol: Option<String>, deflate: Option<DeflateParams>) -> Self {
        let handle = Handle::new(shared.clone());
        Self {
            receiver: Receiver {
                shared: shared.clone(),
                batch: VecDeque::new(),
                taken: 0,
                taken_bytes: 0,
                ended: false,
                _m: PhantomData,
            },
            sender: Sender { handle: handle.clone(), parked: Parked::default(), _m: PhantomData },
            done: handle.done(),
            disconnect: Disconnect { handle: handle.clone() },
            errors: Errors { shared },
            subprotocol,
            deflate,
        }
    }
}

impl<M: Codec> Stream for Channels<M> {
    type Item = M;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

impl<M: Codec> FusedStream for Channels<M> {
    fn is_terminated(&self) -> bool {
        self.receiver.is_terminated()
    }
}

impl<M: Codec> Sink<M> for Channels<M> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().sender).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), Error> {
        Pin::new(&mut self.get_mut().sender).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().sender).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().sender).poll_close(cx)
    }
}

/// Receives a connection's messages, decoded as `M`.
///
/// A [`Stream`] of them too (and a [`FusedStream`]: it ends once and stays ended), so
/// `receiver.next()` from `futures`' `StreamExt` is [`recv`](Self::recv), and the stream's
/// combinators apply.
///
/// # Cancel safety
///
/// `recv()` and `StreamExt::next()` are cancel safe: a message is taken from the queue only in
/// the poll that returns it, so dropping the future never loses one.
pub struct Receiver<M> {
    shared: Arc<Shared>,
    /// Messages taken from the inbox in one go and not yet returned.
    batch: VecDeque<Message>,
    /// How many messages of the batch were returned, and their bytes: they count against the
    /// receive bound until the receiver comes back to the inbox for more.
    taken: usize,
    taken_bytes: usize,
    /// `None` was returned: the connection has finished and every message was taken.
    ended: bool,
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
                if self.ended {
                    return Poll::Ready(None);
                }
                // One lock takes every message delivered so far.
                let (taken, bytes) = (std::mem::take(&mut self.taken), std::mem::take(&mut self.taken_bytes));
                if !ready!(self.shared.take_inbox(&mut self.batch, taken, bytes, cx.waker())) {
                    self.ended = true;
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

impl<M: Codec> Stream for Receiver<M> {
    type Item = M;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<M: Codec> FusedStream for Receiver<M> {
    fn is_terminated(&self) -> bool {
        self.ended
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

/// Sends messages of type `M` on a connection. Cloneable; every clone sends on the same
/// connection.
///
/// # As a `Sink`
///
/// A [`Sink`] of `M` too, so `futures`' `SinkExt::send`, `feed`, `send_all` and
/// `StreamExt::forward` work on it. The steps mean:
///
/// - `poll_ready` waits until the message the previous `start_send` could not queue (below) is
///   queued; it fails with [`Error::Closed`] once the connection is closing.
/// - `start_send` encodes the message (failing with [`Error::Encode`]) and queues it on the
///   connection at once when the send buffer has room; otherwise this `Sender` holds it, one
///   message at most, until the next `poll_ready`, `poll_flush` or `poll_close` can queue it. A
///   slow peer therefore costs the send buffer plus one message per `Sender` that feeds it.
/// - `poll_flush` waits until that held message is queued: then everything this `Sender` was
///   given is in the connection's send queue, in order, where the connection writes it to the
///   socket before anything queued later and before a close frame. It does not wait for the
///   socket: to know that the peer has everything, close and await [`Done`] (a clean close
///   means the peer read up to the close frame).
/// - `poll_close` flushes, then starts the closing handshake with 1000 Normal Closure for the
///   whole connection (every clone), as [`Disconnect::disconnect`] does; a connection already
///   closing is not an error. It does not wait for the peer's reply: await [`Done`], or read the
///   receiver to its end. `StreamExt::forward` closes its sink when its stream ends; to pump a
///   stream into a connection that stays open, use `SinkExt::send_all`.
///
/// # Cancel safety
///
/// The inherent [`send`](Self::send) is cancel safe: the message is queued only when it
/// completes. Of the `SinkExt` futures, `send` and `feed` own their message until `poll_ready`
/// lets them hand it to `start_send`: dropped before, they drop the message unsent; dropped
/// after, the message is queued or held by this `Sender`, and goes out. `flush` and `close`
/// lose nothing when dropped. A message held by a `Sender` that is dropped before flushing is
/// lost, as with any `Sink` fed and not flushed; one the `Sender` holds also goes out after
/// messages sent meanwhile through [`send`](Self::send) on the same `Sender`.
///
/// # Panics
///
/// `start_send` panics when this `Sender` still holds a message, that is, when it was not
/// preceded by a `poll_ready` that returned `Ready(Ok(()))`, as the `Sink` contract requires
/// (the `SinkExt` combinators always do).
pub struct Sender<M> {
    handle: Handle,
    parked: Parked,
    _m: PhantomData<fn(M)>,
}

impl<M> Clone for Sender<M> {
    /// Another sender on the same connection; a message this one holds stays with it.
    fn clone(&self) -> Self {
        Self { handle: self.handle.clone(), parked: Parked::default(), _m: PhantomData }
    }
}

impl<M> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("handle", &self.handle).field("holds_a_message", &self.parked.is_full()).finish()
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

impl<M> Sender<M> {
    /// Queues the message `start_send` could not, once there is room; `Ready(Ok)` when there is
    /// none. The message is dropped when the connection is closing.
    fn poll_parked(&mut self, cx: &Context<'_>) -> Poll<Result<(), Error>> {
        let Some(slot) = self.parked.slot() else { return Poll::Ready(Ok(())) };
        ready!(self.handle.shared.poll_queue(cx, slot, true)).map(drop).inspect_err(|_| *slot = None)?;
        Poll::Ready(Ok(()))
    }
}

impl<M: Codec> Sink<M> for Sender<M> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_parked(cx))?;
        if this.handle.shared.lock().is_closing() {
            return Poll::Ready(Err(Error::Closed));
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), Error> {
        let this = self.get_mut();
        assert!(!this.parked.is_full(), "Sender::start_send without a successful poll_ready: it holds a message");
        let message = item.encode().map_err(Error::Encode)?;
        match this.handle.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => {
                this.parked.put(message);
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(Error::Closed),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_parked(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_parked(cx))?;
        match this.handle.close(CloseCode::NORMAL, "") {
            Ok(()) | Err(Error::Closed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// The one message a [`Sender`]'s `Sink` accepted and could not queue yet. Boxed on first
/// use, and kept for reuse after, so that a sender that never meets a full buffer stays two
/// words.
#[derive(Default)]
struct Parked(Option<Box<Option<Command>>>);

impl Parked {
    fn is_full(&self) -> bool {
        self.0.as_ref().is_some_and(|slot| slot.is_some())
    }

    fn put(&mut self, message: Message) {
        **self.0.get_or_insert_with(Box::default) = Some(Command::Message(message));
    }

    /// The slot, when it holds a message.
    fn slot(&mut self) -> Option<&mut Option<Command>> {
        self.0.as_deref_mut().filter(|slot| slot.is_some())
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
