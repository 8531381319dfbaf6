//! The callback API, after eyesore/ws: a handler per connection, made by a factory that sees
//! the upgrade request first.

use std::task::Context;

use ferrule_core::handshake::{HeaderError, Request, Response};

use crate::driver::{Ctx, FrontEnd};
use crate::error::{CloseInfo, HandlerError};
use crate::message::Message;

/// Per-connection callbacks. They run inside the connection's driver task, so sends through
/// [`Ctx`] go straight into the protocol core and replies to a burst of messages leave in one
/// write. Keep them short; for slow work, take a [`Handle`](crate::Handle) with
/// [`Ctx::handle`] and send from another task.
///
/// Returning an error closes the connection with the error's code (1011 by default,
/// [`HandlerError`]); any error type converts with `?`.
pub trait Handler: Send + Unpin + 'static {
    /// The connection is open. May change this connection's limits with [`Ctx::set_limits`].
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        let _ = ctx;
        Ok(())
    }

    /// A complete message arrived.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError>;

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

/// A refused upgrade: the HTTP status (400-599) and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status code.
    pub status: u16,
    /// The body, sent as `text/plain`.
    pub body: String,
}

impl Rejection {
    /// A rejection with `status` and `body`; a status outside 400-599 is sent as 500.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self { status, body: body.into() }
    }

    pub(crate) fn response(&self) -> Response {
        Response::reject_or_500(self.status, &self.body)
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
    fn on_close(&mut self, info: &CloseInfo) {
        self.0.on_close(info);
    }
}
