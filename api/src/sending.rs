//! How the handles' commands and a handler's sends take turns in the protocol core: frames of
//! two messages may not interleave (RFC 6455 section 5.4), so while one message is streamed in
//! fragments the others wait, in order. Every rule of that ordering lives here, behind the
//! methods of [`Sending`].

use std::collections::VecDeque;
use std::time::Instant;

use ferrule_core::{CloseCode, Connection, SendError};

use crate::error::{CloseCause, Error};
use crate::message::Message;
use crate::shared::{Command, Shared};

/// How the handles' commands and a handler's sends take turns in the core.
#[derive(Debug, Default)]
pub(crate) struct Sending {
    /// A [`MessageWriter`](crate::MessageWriter)'s message is open in the core.
    writer_open: bool,
    /// Messages the handler sent while a writer's message was open: they go out after its last
    /// fragment.
    deferred: VecDeque<Message>,
    deferred_bytes: usize,
    /// Handles' commands were put back in their queue to wait for the end of a fragmented
    /// message the handler is sending.
    commands_held: bool,
    /// What this end's application asked for when it started the closing handshake: the
    /// connection's end is put down to it if the handshake completes.
    local_close: Option<Box<CloseCause>>,
}

impl Sending {
    /// Whether a handler's sends must wait for the end of a message a
    /// [`MessageWriter`](crate::MessageWriter) is streaming (and the connection can still send).
    pub(crate) fn defers(&self, conn: &Connection) -> bool {
        self.writer_open && conn.is_sending_fragmented()
    }

    /// Keeps a handler's message to send after the writer's last fragment.
    pub(crate) fn defer(&mut self, message: &Message) {
        self.deferred_bytes += message.len();
        self.deferred.push_back(message.clone());
    }

    /// The bytes of the handler's messages that wait for a writer's message to end.
    pub(crate) fn deferred_bytes(&self) -> usize {
        self.deferred_bytes
    }

    /// What this end's application asked for when it started the closing handshake, if it did.
    pub(crate) fn local_close(&self) -> Option<&CloseCause> {
        self.local_close.as_deref()
    }

    /// Whether queued commands are worth taking: there are some, and they are not held back
    /// behind a fragmented message the handler has open.
    pub(crate) fn commands_ready(&self, conn: &Connection, shared: &Shared) -> bool {
        shared.has_commands() && !(self.commands_held && conn.is_sending_fragmented())
    }

    /// Takes the handles' commands into the core, in order.
    pub(crate) fn take_commands(&mut self, conn: &mut Connection, shared: &Shared, now: Instant) {
        self.commands_held = false;
        let mut commands = shared.take_commands();
        while let Some(command) = commands.pop_front() {
            // Frames of two messages cannot interleave. While the handler streams a message
            // with `Ctx::send_fragment`, a handle's message or writer waits for its last
            // fragment, and the commands after it wait too, in order. (While a writer streams
            // one, no other handle's message is queued: `Inner::is_streaming` holds them back.)
            let waits = match command {
                Command::Message(_) | Command::Prepared(_) => conn.is_sending_fragmented(),
                Command::Fragment(..) => conn.is_sending_fragmented() && !self.writer_open,
                Command::Ping(_) | Command::WriteCompression(_) | Command::Close { .. } => false,
            };
            if waits {
                commands.push_front(command);
                shared.hold_commands(commands);
                self.commands_held = true;
                return;
            }
            let result = match command {
                Command::Message(message) => send_message(conn, &message),
                Command::Prepared(message) => conn.send_prepared(&message),
                Command::Fragment(fragment, fin) => self.send_writer_fragment(conn, &fragment, fin),
                Command::Ping(p) => conn.ping(&p),
                Command::WriteCompression(enabled) => {
                    conn.set_write_compression(enabled);
                    Ok(())
                }
                Command::Close { code, reason, shutdown } => {
                    let cause = if shutdown { CloseCause::ServerShutdown } else { CloseCause::Local { code, reason } };
                    self.close_with(conn, cause, now)
                }
            };
            if result.is_err() {
                // The connection closed under the command (the peer closed first): the
                // handle already reports Closed for later sends.
                tracing::debug!("command dropped: the connection is closing");
            }
        }
    }

    /// Queues a fragment of a [`MessageWriter`](crate::MessageWriter)'s message; after the
    /// last one, the handler's sends that waited for it.
    fn send_writer_fragment(&mut self, conn: &mut Connection, fragment: &Message, fin: bool) -> Result<(), SendError> {
        conn.send_fragment(fragment.kind(), fragment.as_bytes(), fin)?;
        self.writer_open = !fin;
        if fin {
            self.deferred_bytes = 0;
            for message in std::mem::take(&mut self.deferred) {
                if send_message(conn, &message).is_err() {
                    tracing::debug!("deferred message dropped: the connection is closing");
                }
            }
        }
        Ok(())
    }

    /// Closes the connection from inside the driver (the handler asked, or failed): the
    /// handles' messages queued before go out first, as for [`Handle::close`], and no more are
    /// accepted.
    pub(crate) fn close(
        &mut self,
        conn: &mut Connection,
        shared: &Shared,
        code: CloseCode,
        reason: &str,
        now: Instant,
    ) -> Result<(), SendError> {
        shared.lock().start_closing();
        self.take_commands(conn, shared, now);
        self.close_with(conn, CloseCause::Local { code, reason: reason.to_owned() }, now)
    }

    /// Starts the closing handshake in the core and records why, if it was not started yet.
    fn close_with(&mut self, conn: &mut Connection, cause: CloseCause, now: Instant) -> Result<(), SendError> {
        let (code, reason) = match &cause {
            CloseCause::Local { code, reason } => (*code, reason.as_str()),
            _ => (CloseCode::GOING_AWAY, "server shutting down"),
        };
        conn.close(code, reason, now)?;
        self.local_close = Some(Box::new(cause));
        Ok(())
    }
}

/// Queues a whole message in the core. Its payload is shared, not copied: a server writes a
/// large payload straight from the message's buffer.
pub(crate) fn send_message(conn: &mut Connection, message: &Message) -> Result<(), SendError> {
    match message {
        Message::Text(t) => conn.send_text_bytes(t),
        Message::Binary(b) => conn.send_binary_bytes(b),
    }
}

/// The API's error for a send the core refused.
pub(crate) fn send_error(error: SendError) -> Error {
    match error {
        SendError::Closed => Error::Closed,
        other => Error::Send(other),
    }
}
