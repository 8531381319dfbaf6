//! The callback API, after eyesore/ws: a handler per connection, made by a factory that sees
//! the upgrade request first.

use std::task::Context;
use std::time::Instant;

use bytes::Bytes;
use ferrule_core::handshake::{HeaderError, Request, Response};
use ferrule_core::{CloseCode, Connection, DeflateParams, MessageKind, SendError};
use serde::Serialize;

use crate::driver::FrontEnd;
use crate::error::{CloseInfo, Error, HandlerError};
use crate::handle::{Handle, truncate_reason};
use crate::message::Message;
use crate::sending::{Sending, send_error, send_message};

/// Per-connection callbacks. They run inside the connection's driver task, so sends through
/// [`Ctx`] go straight into the protocol core and replies to a burst of messages leave in one
/// write. Keep them short; for slow work, take a [`Handle`](crate::Handle) with
/// [`Ctx::handle`] and send from another task.
///
/// Returning an error closes the connection with the error's code (1011 by default,
/// [`HandlerError`]); any error type converts with `?`.
pub trait Handler: Send + Unpin + 'static {
    /// The connection is open. May change this connection's limits with
    /// [`Ctx::set_max_message_size`] and [`Ctx::set_max_frame_size`].
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        let _ = ctx;
        Ok(())
    }

    /// A complete message arrived.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError>;

    /// A ping arrived; the pong that answers it is already queued (RFC 6455 section 5.5.2).
    fn on_ping(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        let _ = (ctx, payload);
    }

    /// A pong arrived: an answer to a ping, or unsolicited (RFC 6455 section 5.5.3).
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        let _ = (ctx, payload);
    }

    /// The connection finished: whether the closing handshake completed, the close code and
    /// the reason ([`CloseInfo`]). Called exactly once per opened connection, also when the
    /// connection's task is dropped before the end (a runtime shutting down): then as an
    /// abnormal closure, 1006.
    fn on_close(&mut self, info: &CloseInfo) {
        let _ = info;
    }
}

/// Makes a [`Handler`] for each accepted upgrade request, or refuses it.
pub trait HandlerFactory: Send + Sync + 'static {
    /// The handler type.
    type Handler: Handler;

    /// Decides on an upgrade request that already passed the protocol and origin checks:
    /// accept with a handler (optionally choosing the subprotocol or adding headers through
    /// `accept`), or reject with a status and body.
    ///
    /// # Errors
    ///
    /// A [`Rejection`], sent to the client as an HTTP response.
    fn on_connect(&self, request: &Request, accept: &mut Acceptance) -> Result<Self::Handler, Rejection>;
}

impl<F, H> HandlerFactory for F
where
    F: Fn(&Request, &mut Acceptance) -> Result<H, Rejection> + Send + Sync + 'static,
    H: Handler,
{
    type Handler = H;

    fn on_connect(&self, request: &Request, accept: &mut Acceptance) -> Result<H, Rejection> {
        self(request, accept)
    }
}

/// The `101 Switching Protocols` about to be sent, open to edits in
/// [`HandlerFactory::on_connect`].
#[derive(Debug)]
pub struct Acceptance {
    pub(crate) response: Response,
}

impl Acceptance {
    /// The subprotocol chosen so far (the first of the server's, in preference order, that the
    /// client offered).
    pub fn subprotocol(&self) -> Option<&str> {
        self.response.subprotocol()
    }

    /// Chooses the subprotocol (it should be one the client offered) or none.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] when the name is not a valid token.
    pub fn set_subprotocol(&mut self, subprotocol: Option<&str>) -> Result<&mut Self, HeaderError> {
        self.response.set_subprotocol(subprotocol)?;
        Ok(self)
    }

    /// The permessage-deflate parameters this response agrees to (RFC 7692 section 7.1): the
    /// client's first offer that fits the server's `compression` option. `None` when compression
    /// is off, the client offered none that fits, or it was declined.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.response.deflate().map(|d| d.params())
    }

    /// Declines permessage-deflate for this connection: the response agrees to no extension,
    /// and messages go uncompressed both ways. For a connection that would not gain from
    /// compression, or to keep a busy server's memory down (see
    /// [`DeflateConfig`](ferrule_core::DeflateConfig) for what compression holds per connection).
    /// The `compression` option's `required` is not consulted again: the connection opens without.
    pub fn decline_deflate(&mut self) -> &mut Self {
        self.response.remove_header("Sec-WebSocket-Extensions");
        self
    }

    /// Adds or replaces a response header.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] for an invalid name or value, or a header the handshake owns.
    pub fn insert_header(&mut self, name: &str, value: &str) -> Result<&mut Self, HeaderError> {
        self.response.insert_header(name, value)?;
        Ok(self)
    }

    /// The response as it stands.
    pub fn response(&self) -> &Response {
        &self.response
    }
}

/// A refused upgrade: the HTTP response sent instead of the `101`, with a status (400-599), a
/// plain-text body sent byte for byte, and any headers the refusal needs.
///
/// # Examples
///
/// ```
/// use ferrule::Rejection;
///
/// let mut rejection = Rejection::new(401, "log in first");
/// rejection.insert_header("WWW-Authenticate", "Bearer realm=\"chat\"")?;
/// assert_eq!(rejection.status(), 401);
/// assert_eq!(rejection.body(), "log in first");
/// # Ok::<(), ferrule::core::handshake::HeaderError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    body: String,
    response: Response,
}

impl Rejection {
    /// A rejection with `status` and `body` (sent as `text/plain`, exactly as given); a status
    /// outside 400-599 is sent as 500.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        let body = body.into();
        let response = Response::reject_or_500(status, &body);
        Self { body, response }
    }

    /// The HTTP status sent.
    pub fn status(&self) -> u16 {
        self.response.status()
    }

    /// The body sent.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Adds or replaces a response header, such as `WWW-Authenticate` on a 401 or `Retry-After`
    /// on a 503.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] for a name that is not a token, or a value with control characters (no
    /// header injection); the rejection is then unchanged.
    pub fn insert_header(&mut self, name: &str, value: &str) -> Result<&mut Self, HeaderError> {
        self.response.insert_header(name, value)?;
        Ok(self)
    }

    /// The response as it will be sent.
    pub fn response(&self) -> &Response {
        &self.response
    }
}

/// What a handler can do with its connection while it runs inside the driver: send (queued
/// directly in the protocol core, no channel hop), ping, close, change limits, or take a
/// [`Handle`] to send from elsewhere.
pub struct Ctx<'a> {
    conn: &'a mut Connection,
    handle: &'a Handle,
    now: Instant,
    sending: &'a mut Sending,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(conn: &'a mut Connection, handle: &'a Handle, now: Instant, sending: &'a mut Sending) -> Self {
        Self { conn, handle, now, sending }
    }
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("state", &self.conn.state()).finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// Sends a message. Its payload is shared, not copied: a server writes a large payload
    /// (8 KiB and up) straight from the message's buffer, so echoing or forwarding a received
    /// message costs no copy.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once a close frame was sent; [`Error::Send`] with
    /// [`SendError::FragmentedMessageInProgress`] while a message sent with
    /// [`send_fragment`](Self::send_fragment) is open (nothing is sent).
    ///
    /// While a [`MessageWriter`](crate::MessageWriter) streams a message on this connection
    /// (from another task), the message waits, and goes out after the writer's last fragment.
    pub fn send(&mut self, message: &Message) -> Result<(), Error> {
        if self.defers() {
            self.sending.defer(message);
            return Ok(());
        }
        send_message(self.conn, message).map_err(send_error)
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        if self.defers() {
            return self.send(&Message::text(text));
        }
        self.conn.send_text(text).map_err(send_error)
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.defers() {
            return self.send(&Message::binary(Bytes::copy_from_slice(data)));
        }
        self.conn.send_binary(data).map_err(send_error)
    }

    /// Whether sends wait for the end of a message a [`MessageWriter`](crate::MessageWriter)
    /// is streaming (and the connection can still send).
    fn defers(&self) -> bool {
        self.sending.defers(self.conn)
    }

    /// Serializes `value` as JSON and sends it as text.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when serialization fails; otherwise as [`send`](Self::send).
    pub fn send_json<T: Serialize>(&mut self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(|e| Error::Encode(crate::message::EncodeError::json(e)))?;
        self.send_text(&text)
    }

    /// Sends one fragment of a message streamed in pieces (RFC 6455 section 5.4): the first call
    /// opens a message of `kind`, later calls continue it, and the call with `fin` set ends it.
    /// Text may be split inside a character; the message as a whole must be UTF-8.
    ///
    /// Data frames of two messages cannot interleave (section 5.4), so until the message ends
    /// this context's other sends are refused, and messages sent through a [`Handle`] wait in
    /// its queue and go out after the last fragment, in order. Pings and a close still go out
    /// at once (a close ends the connection with the message unfinished).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closing; [`Error::Send`] for a kind that differs from the open
    /// message's or text that stops being UTF-8 (nothing of this fragment is sent), and with
    /// [`SendError::FragmentedMessageInProgress`] while a
    /// [`MessageWriter`](crate::MessageWriter) streams a message on this connection.
    pub fn send_fragment(&mut self, kind: MessageKind, payload: &[u8], fin: bool) -> Result<(), Error> {
        if self.defers() {
            return Err(Error::Send(SendError::FragmentedMessageInProgress));
        }
        self.conn.send_fragment(kind, payload, fin).map_err(send_error)
    }

    /// Sends a ping (payload cut to 125 bytes).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closing.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.conn.ping(&payload[..payload.len().min(125)]).map_err(|_| Error::Closed)
    }

    /// Starts the closing handshake (the reason is cut to 123 bytes at a character boundary).
    ///
    /// # Errors
    ///
    /// [`Error::Send`] for a code that may not be sent (RFC 6455 section 7.4), as
    /// [`Handle::close`]; [`Error::Closed`] when a close frame was already sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        crate::handle::check_sendable(code)?;
        let reason = truncate_reason(reason);
        self.sending.close(self.conn, &self.handle.shared, code, &reason, self.now).map_err(|_| Error::Closed)
    }

    /// Changes this connection's largest incoming message, in bytes (from `on_open`, for
    /// example; eyesore's per-connection `MaxMessageSize`). A larger message closes the
    /// connection with 1009. Messages already started keep the limit they started with.
    ///
    /// # Errors
    ///
    /// [`Error::Options`] when `bytes` is zero; the limit is then unchanged.
    pub fn set_max_message_size(&mut self, bytes: usize) -> Result<(), Error> {
        self.conn.set_max_message_size(bytes).map_err(|e| Error::Options(crate::OptionsError::Protocol(e)))
    }

    /// Changes this connection's largest incoming frame, in bytes; see
    /// [`set_max_message_size`](Self::set_max_message_size).
    ///
    /// # Errors
    ///
    /// [`Error::Options`] when `bytes` is zero; the limit is then unchanged.
    pub fn set_max_frame_size(&mut self, bytes: usize) -> Result<(), Error> {
        self.conn.set_max_frame_size(bytes).map_err(|e| Error::Options(crate::OptionsError::Protocol(e)))
    }

    /// Bytes queued for the transport and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// A handle that sends on this connection from any task.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The permessage-deflate parameters agreed in the handshake (RFC 7692 section 7.1), or
    /// `None` when messages are not compressed.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.conn.deflate()
    }

    /// Switches compression of the messages this connection sends from now on, when
    /// permessage-deflate was agreed: eyesore's per-connection
    /// `EnableWriteCompression` in `OnOpen`. `false` sends them uncompressed (RFC 7692 section 6
    /// allows that for any message) and saves the compressor's CPU, and its memory when this end
    /// keeps no context; `true` compresses them again. A message being streamed keeps the
    /// setting it started with. Without permessage-deflate this does nothing.
    pub fn set_write_compression(&mut self, enabled: bool) {
        self.conn.set_write_compression(enabled);
    }

    /// Whether the messages this connection sends from now on are compressed (those of at least
    /// [`DeflateConfig::min_compress_size`](crate::DeflateConfig::min_compress_size) bytes):
    /// permessage-deflate was agreed and [`set_write_compression`](Self::set_write_compression)
    /// has not switched it off.
    pub fn write_compression(&self) -> bool {
        self.conn.write_compression()
    }
}

/// Runs a [`Handler`] as the driver's front-end.
pub(crate) struct CallbackFront<H>(pub(crate) H);

impl<H: Handler> FrontEnd for CallbackFront<H> {
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> bool {
        true
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        self.0.on_open(ctx)
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        self.0.on_message(ctx, message)
    }
    fn on_ping(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        self.0.on_ping(ctx, payload);
    }
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, payload: &[u8]) {
        self.0.on_pong(ctx, payload);
    }
    fn on_close(&mut self, info: &CloseInfo) {
        self.0.on_close(info);
    }
}
