//! A cloneable handle that sends on a connection from any task, and the done signal.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use ferrule_core::{CloseCode, MessageKind, PreparedMessage, SendError};
use serde::Serialize;

use crate::error::{CloseInfo, Error};
use crate::message::{Codec, EncodeError, Message};
use crate::shared::{Command, Shared, register};

/// Sends on one connection from any task. Cheap to clone; every clone talks to the same
/// connection. Sending after the connection closed gives [`Error::Closed`].
///
/// Messages queued through handles go out in the order they were queued, whichever clone
/// queued them. The connection takes them between its reads: a message a handler queues through
/// a handle during a callback goes out after whatever it sends through its
/// [`Ctx`](crate::Ctx) in that callback, which is written in place. A handler that needs one
/// order for both sends through its `Ctx`.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("closed", &self.is_closed()).finish()
    }
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Queues a message, waiting while the send buffer is full or a [`MessageWriter`] has a
    /// message open.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the message is queued only when the future completes with `Ok`; dropping
    /// the future earlier sends nothing.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        let mut command = Some(Command::Message(message.into()));
        std::future::poll_fn(|cx| self.shared.poll_queue(cx, &mut command, true).map_ok(drop)).await
    }

    /// Encodes and queues a typed message ([`Codec`]), waiting while the send buffer is full.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when encoding fails, [`Error::Closed`] once closing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`send`](Self::send).
    pub async fn send_as<M: Codec>(&self, value: M) -> Result<(), Error> {
        let message = value.encode().map_err(Error::Encode)?;
        self.send(message).await
    }

    /// Serializes `value` as JSON and queues it as a text message.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when serialization fails, [`Error::Closed`] once closing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`send`](Self::send).
    pub async fn send_json<T: Serialize>(&self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(|e| Error::Encode(EncodeError::json(e)))?;
        self.send(Message::from(text)).await
    }

    /// Queues a message without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (with the message back) when the send buffer is full or a
    /// [`MessageWriter`] has a message open; [`TrySendError::Closed`] once closing.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        let message = message.into();
        let mut inner = self.shared.lock();
        if inner.is_closing() {
            return Err(TrySendError::Closed(message));
        }
        if inner.is_streaming() || !inner.send_bound.admits(inner.outbox.len(), inner.outbox_bytes, message.len()) {
            return Err(TrySendError::Full(message));
        }
        self.shared.push_command(&mut inner, Command::Message(message));
        Ok(())
    }

    /// Queues a message framed once for many connections without waiting; the hub's broadcast.
    pub(crate) fn offer_prepared(&self, message: &PreparedMessage) -> Offer {
        let mut inner = self.shared.lock();
        if inner.is_closing() {
            return Offer::Closed;
        }
        if inner.is_streaming() || !inner.send_bound.admits(inner.outbox.len(), inner.outbox_bytes, message.len()) {
            return Offer::Full;
        }
        self.shared.push_command(&mut inner, Command::Prepared(message.clone()));
        Offer::Queued
    }

    /// The messages and payload bytes queued and not yet taken by the connection.
    pub(crate) fn queued(&self) -> (usize, usize) {
        let inner = self.shared.lock();
        (inner.outbox.len(), inner.outbox_bytes)
    }

    /// Starts a message of `kind` sent in fragments (RFC 6455 section 5.4), for a message whose
    /// size is not known up front or that should not be held in memory whole: a file, a
    /// stream of records. Waits while another [`MessageWriter`] on this connection has a
    /// message open.
    ///
    /// Frames of two messages cannot interleave, so while the writer has its message open,
    /// every other send on this connection waits for its end: [`send`](Self::send) and
    /// [`Sender::send`](crate::Sender::send) wait, [`try_send`](Self::try_send) reports
    /// [`TrySendError::Full`], and a callback handler's [`Ctx`](crate::Ctx) sends are queued
    /// behind it. Pings, the keepalive and [`close`](Self::close) still go out.
    ///
    /// A task that holds a writer must therefore not wait on another send on the same
    /// connection before it finishes the message: that send would wait for the writer, and the
    /// writer for the task.
    ///
    /// ```no_run
    /// # async fn example(handle: ferrule::Handle) -> Result<(), ferrule::Error> {
    /// use ferrule::MessageKind;
    ///
    /// let mut writer = handle.start_message(MessageKind::Text).await?;
    /// for record in ["one", "two", "three"] {
    ///     writer.write(format!("{record}\n")).await?;
    /// }
    /// writer.finish("").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the message is started only when the future completes with `Ok`.
    pub async fn start_message(&self, kind: MessageKind) -> Result<MessageWriter, Error> {
        std::future::poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.is_closing() {
                return Poll::Ready(Err(Error::Closed));
            }
            if inner.is_streaming() {
                register(&mut inner.send_waiters, cx.waker());
                return Poll::Pending;
            }
            inner.start_streaming();
            Poll::Ready(Ok(MessageWriter { shared: self.shared.clone(), kind, open: true, started: false }))
        })
        .await
    }

    /// Queues a ping with `payload` (at most 125 bytes; longer payloads are cut).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closing.
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let mut payload = payload.into();
        payload.truncate(125);
        let mut inner = self.shared.lock();
        if inner.is_closing() {
            return Err(Error::Closed);
        }
        self.shared.push_command(&mut inner, Command::Ping(payload));
        Ok(())
    }

    /// Switches compression of the messages queued after this call, when permessage-deflate was
    /// agreed (gorilla/websocket's `EnableWriteCompression`): `false` sends them uncompressed,
    /// which RFC 7692 section 6 allows for any message, `true` compresses them again (those of
    /// at least [`DeflateConfig::min_compress_size`](crate::DeflateConfig::min_compress_size)
    /// bytes). Messages queued earlier keep the setting they were queued under. Without
    /// permessage-deflate this does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closing.
    pub fn set_write_compression(&self, enabled: bool) -> Result<(), Error> {
        let mut inner = self.shared.lock();
        if inner.is_closing() {
            return Err(Error::Closed);
        }
        self.shared.push_command(&mut inner, Command::WriteCompression(enabled));
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason` (RFC 6455 section 7.1.2). Messages
    /// queued before are sent first. Never waits; later sends fail with [`Error::Closed`].
    ///
    /// A reason longer than 123 bytes is cut at a character boundary.
    ///
    /// # Errors
    ///
    /// [`Error::Send`] with [`SendError::InvalidCloseCode`](crate::SendError::InvalidCloseCode) for a code
    /// that may not be sent (section 7.4: 1005, 1006, 1015, codes below 1000 and unassigned
    /// ones below 3000); [`Error::Closed`] when a close was already requested or the connection
    /// is closed.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        check_sendable(code)?;
        self.request_close(code, reason, false)
    }

    /// Closes with 1001 Going Away for the server's shutdown.
    pub(crate) fn close_for_shutdown(&self) -> Result<(), Error> {
        self.request_close(CloseCode::GOING_AWAY, "server shutting down", true)
    }

    fn request_close(&self, code: CloseCode, reason: &str, shutdown: bool) -> Result<(), Error> {
        let mut inner = self.shared.lock();
        if !inner.start_closing() {
            return Err(Error::Closed);
        }
        self.shared.push_command(&mut inner, Command::Close { code, reason: truncate_reason(reason), shutdown });
        Ok(())
    }

    /// Whether the connection has finished.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// A future that completes when the connection has finished, with how it ended.
    pub fn done(&self) -> Done {
        Done { shared: self.shared.clone() }
    }
}

/// Sends one message in fragments, from [`Handle::start_message`]: [`write`](Self::write) for
/// each fragment but the last, then [`finish`](Self::finish).
///
/// A writer dropped after it sent a fragment and before [`finish`](Self::finish) closes the
/// connection with 1011: the peer holds the start of a message that will never end, and
/// ending it early would hand the peer a truncated message as if it were whole. A writer
/// dropped before its first fragment sends nothing and closes nothing.
pub struct MessageWriter {
    shared: Arc<Shared>,
    kind: MessageKind,
    /// The message has not ended (neither finished nor abandoned).
    open: bool,
    /// A fragment was queued.
    started: bool,
}

impl fmt::Debug for MessageWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageWriter").field("kind", &self.kind).field("open", &self.open).finish_non_exhaustive()
    }
}

impl MessageWriter {
    /// The kind of the message being written.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Queues `fragment` as the next part of the message, waiting while the send buffer is
    /// full. An empty fragment is allowed.
    ///
    /// # Errors
    ///
    /// [`Error::Send`] with [`SendError::FragmentKindMismatch`] for a fragment whose kind
    /// differs from the writer's (text to a binary message or the reverse), and with
    /// [`SendError::NoFragmentedMessageInProgress`] after [`finish`](Self::finish);
    /// [`Error::Closed`] once the connection is closing or closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the fragment is queued only when the future completes with `Ok`.
    pub async fn write(&mut self, fragment: impl Into<Message>) -> Result<(), Error> {
        self.push(fragment.into(), false).await
    }

    /// Queues `last` as the final fragment, which ends the message; other sends on the
    /// connection then go ahead.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the fragment is queued, and the message ended, only when the future
    /// completes with `Ok`; until then the writer can be used again.
    pub async fn finish(&mut self, last: impl Into<Message>) -> Result<(), Error> {
        self.push(last.into(), true).await
    }

    async fn push(&mut self, fragment: Message, fin: bool) -> Result<(), Error> {
        if !self.open {
            return Err(Error::Send(SendError::NoFragmentedMessageInProgress));
        }
        if fragment.kind() != self.kind {
            return Err(Error::Send(SendError::FragmentKindMismatch));
        }
        let mut command = Some(Command::Fragment(fragment, fin));
        std::future::poll_fn(|cx| {
            let mut inner = ready!(self.shared.poll_queue(cx, &mut command, false))?;
            if fin {
                self.shared.end_streaming(&mut inner);
            }
            Poll::Ready(Ok::<(), Error>(()))
        })
        .await?;
        self.started = true;
        self.open = !fin;
        Ok(())
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let mut inner = self.shared.lock();
        self.shared.end_streaming(&mut inner);
        if self.started && inner.start_closing() {
            tracing::debug!("a message writer was dropped before its last fragment: closing with 1011");
            let reason = "message left unfinished".to_owned();
            self.shared
                .push_command(&mut inner, Command::Close { code: CloseCode::INTERNAL_ERROR, reason, shutdown: false });
        }
    }
}

/// Cuts a close reason to the 123 bytes a close frame can carry, at a character boundary.
pub(crate) fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(ferrule_core::MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// The done signal: completes with the [`CloseInfo`] once the connection has finished, saying
/// how and why ([`CloseInfo::cause`]). Can be polled from several tasks (clone it) and after
/// completion. When the end was a failure, the channel API's error stream already holds it as
/// [`Error::Failed`] by the time this completes.
///
/// # Cancel safety
///
/// Cancel safe: it only observes.
#[derive(Clone)]
pub struct Done {
    shared: Arc<Shared>,
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done").finish_non_exhaustive()
    }
}

impl Future for Done {
    type Output = CloseInfo;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseInfo> {
        let mut inner = self.shared.lock();
        if let Some(info) = &inner.closed {
            return Poll::Ready(CloseInfo::clone(info));
        }
        register(&mut inner.done_waiters, cx.waker());
        Poll::Pending
    }
}

/// Why [`Handle::try_send`] did not queue a message; the message is given back.
#[derive(Debug)]
pub enum TrySendError {
    /// The send buffer is full.
    Full(Message),
    /// The connection is closing or closed.
    Closed(Message),
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str(
                "the send buffer is full: wait with `send().await`, or raise `send_buffer` (the message is given back)",
            ),
            Self::Closed(_) => f.write_str("the connection is closing or closed: nothing more can be sent"),
        }
    }
}

impl std::error::Error for TrySendError {}

/// What became of a message offered without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued.
    Queued,
    /// The send queue is at its bound (or a message writer has a message open).
    Full,
    /// The connection is closing or closed.
    Closed,
}

/// The error for a close code that may not be sent (RFC 6455 section 7.4).
pub(crate) fn check_sendable(code: CloseCode) -> Result<(), Error> {
    if code.is_sendable() { Ok(()) } else { Err(Error::Send(SendError::InvalidCloseCode(code.as_u16()))) }
}
