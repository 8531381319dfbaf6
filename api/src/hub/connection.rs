//! The hub as a callback-API handler: each upgraded connection gets a [`HubConnection`], which
//! registers it, reads the wire format and dispatches events, and takes it out of its rooms and
//! the registry at the end.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrule_core::PreparedMessage;
use ferrule_core::handshake::Request;

use super::socket::{Socket, SocketState, Values};
use super::wire::{self, Incoming};
use super::{ConnId, EventFailure, Hub, HubError};
use crate::CloseCode;
use crate::callback::{Acceptance, Ctx, Handler, Rejection};
use crate::error::{CloseInfo, HandlerError};
use crate::message::Message;
use crate::runtime::Runtime;

impl<R: Runtime> Hub<R> {
    /// Decides on an upgrade: gives the connection its id, or refuses a taken id with 409.
    pub(crate) fn accept(&self, request: &Request, acceptance: &mut Acceptance) -> Result<HubConnection<R>, Rejection> {
        let mut values = Values::default();
        for callback in &self.inner.callbacks.on_connect {
            callback(request, acceptance, &mut values)?;
        }
        let id = (self.inner.config.id_generator)(request);
        if self.is_connected(&id) {
            tracing::info!(id = %id, "upgrade refused: the connection id is taken");
            return Err(Rejection::new(409, "connection id already in use"));
        }
        Ok(HubConnection { hub: self.clone(), opening: Some((id, values)), socket: None })
    }
}

/// One connection of a [`Hub`], run by the callback API's driver; the handler
/// [`Hub::handler_factory`] makes.
#[derive(Debug)]
pub struct HubConnection<R: Runtime> {
    hub: Hub<R>,
    /// Until it opens: its id and the values `on_connect` stored.
    opening: Option<(ConnId, Values)>,
    socket: Option<Socket<R>>,
}

impl<R: Runtime> Handler for HubConnection<R> {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        let Some((id, values)) = self.opening.take() else { return Ok(()) };
        let state = Arc::new(SocketState::new(id.clone(), ctx.handle(), values));
        if !self.hub.registry().insert(id.clone(), state.clone()) {
            // Another connection took the id between the upgrade and now (a generator that
            // repeats itself).
            return Err(HandlerError::with_code(CloseCode::POLICY_VIOLATION, "connection id already in use"));
        }
        let socket = Socket { state, hub: self.hub.clone() };
        self.socket = Some(socket.clone());
        self.hub.inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = %id, "hub connection open");
        ctx.send_text(&wire::encode_open(&id))?;
        for callback in &self.hub.inner.callbacks.on_connection {
            callback(&socket)?;
        }
        Ok(())
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        let Some(socket) = &self.socket else { return Ok(()) };
        let hub = &self.hub;
        hub.inner.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let text = match &message {
            Message::Text(text) if wire::is_hub_message(text.as_str()) => text.as_str(),
            _ => {
                for callback in &hub.inner.callbacks.on_native {
                    callback(socket, &message);
                }
                return Ok(());
            }
        };
        let incoming = match wire::decode(text) {
            Ok(incoming) => incoming,
            Err(e) => {
                hub.report(socket, HubError::Malformed(e.to_string()));
                return Ok(());
            }
        };
        match incoming {
            Incoming::Event { name, payload, ack } => {
                hub.inner.stats.events_in.fetch_add(1, Ordering::Relaxed);
                let Some(handler) = hub.inner.events.get(name.as_str()) else {
                    if let Some(id) = ack {
                        self.reply(socket, wire::encode_nack(id, "unknown event"));
                    }
                    hub.report(socket, HubError::UnknownEvent { event: name });
                    return Ok(());
                };
                match handler(socket, payload) {
                    Ok(reply) => {
                        if let Some(id) = ack {
                            let reply = reply.unwrap_or_else(|| "null".to_owned());
                            self.reply(socket, wire::encode_ack(id, &reply));
                        }
                    }
                    Err(failure) => {
                        if let Some(id) = ack {
                            self.reply(socket, wire::encode_nack(id, &failure.to_string()));
                        }
                        let error = match failure {
                            EventFailure::Payload(e) => HubError::BadPayload { event: name, error: e },
                            EventFailure::Handler(e) => HubError::Handler { event: name, error: e },
                            EventFailure::Reply(e) => HubError::Handler { event: name, error: Box::new(e) },
                        };
                        hub.report(socket, error);
                    }
                }
            }
            Incoming::Ack { id, payload } => {
                let reply = payload.map_or_else(|| "null".to_owned(), |raw| raw.get().to_owned());
                self.complete_ack(id, Ok(reply));
            }
            Incoming::Nack { id, reason } => self.complete_ack(id, Err(super::AckError::Refused(reason))),
        }
        Ok(())
    }

    fn on_ping(&mut self, _ctx: &mut Ctx<'_>, payload: &[u8]) {
        if let Some(socket) = &self.socket {
            for callback in &self.hub.inner.callbacks.on_ping {
                callback(socket, payload);
            }
        }
    }

    fn on_pong(&mut self, _ctx: &mut Ctx<'_>, payload: &[u8]) {
        if let Some(socket) = &self.socket {
            for callback in &self.hub.inner.callbacks.on_pong {
                callback(socket, payload);
            }
        }
    }

    fn on_close(&mut self, info: &CloseInfo) {
        let Some(socket) = self.socket.take() else { return };
        let hub = &self.hub;
        let id = socket.id();
        // Its rooms first, each with its on-leave callbacks, while it is still registered...
        let rooms = hub.registry().leave_all_for_removal(id);
        for room in &rooms {
            hub.fire_leave(&socket, room);
        }
        // ...then out of the registry, and nobody waits for its replies any more.
        hub.registry().remove(id);
        let pending: Vec<_> = socket.state.acks().drain().collect();
        for (_, collector) in pending {
            collector.complete(id, Err(super::AckError::Disconnected));
        }
        hub.inner.stats.count_close(&info.cause);
        tracing::debug!(id = %id, code = %info.code, cause = %info.cause, "hub connection closed");
        for callback in &hub.inner.callbacks.on_disconnect {
            callback(&socket, info);
        }
    }
}

impl<R: Runtime> HubConnection<R> {
    /// Sends an acknowledgement through the connection's send queue, behind whatever the event's
    /// handler emitted, so the client sees them in the order they were made.
    fn reply(&self, socket: &Socket<R>, text: String) {
        self.hub.deliver_to(&socket.state, &PreparedMessage::text(text));
    }

    fn complete_ack(&self, id: u64, reply: super::ack::RawReply) {
        let Some(socket) = &self.socket else { return };
        let collector = socket.state.acks().remove(&id);
        match collector {
            Some(collector) => collector.complete(socket.id(), reply),
            // Late (after its timeout), or never asked for.
            None => self.hub.report(socket, HubError::UnexpectedAck { id }),
        }
    }
}
