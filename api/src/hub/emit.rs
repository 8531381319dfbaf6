//! Emitting to rooms: who a message reaches, and what became of it for each recipient.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrule_core::PreparedMessage;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ack::{AckError, Acks, Collector};
use super::registry::Target;
use super::socket::SocketState;
use super::{EmitError, Hub, SlowRecipients, wire};
use crate::handle::Offer;
use crate::message::Message;
use crate::runtime::Runtime;

/// What became of one emit, counted over its recipients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// Recipients whose send queue took the message.
    pub queued: usize,
    /// Recipients past their send queue's bound that lost the message
    /// ([`SlowRecipients::Drop`]).
    pub dropped: usize,
    /// Recipients past their send queue's bound that are being disconnected
    /// ([`SlowRecipients::Disconnect`]).
    pub disconnected: usize,
    /// Recipients already closing, which nothing more can be sent to.
    pub closed: usize,
}

impl Delivery {
    /// How many connections the emit reached or tried to reach.
    pub fn recipients(&self) -> usize {
        self.queued + self.dropped + self.disconnected + self.closed
    }
}

/// Emits to some connections of a hub: made by [`Hub::to`], [`Hub::all`], [`Socket::to`] and
/// [`Socket::broadcast`](super::Socket::broadcast), narrowed with [`to`](Self::to) and
/// [`except`](Self::except), then used with [`emit`](Self::emit), [`emit_with_ack`](Self::emit_with_ack)
/// or [`send`](Self::send).
///
/// The payload is serialized once and framed once, whatever the number of recipients; every
/// recipient's connection queues the same bytes by reference (see [`hub`](super) for the cost).
///
/// [`Socket::to`]: super::Socket::to
#[must_use = "an emitter sends nothing until emit or send is called"]
pub struct Emitter<R: Runtime> {
    hub: Hub<R>,
    target: Target,
}

impl<R: Runtime> fmt::Debug for Emitter<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter").field("target", &self.target).finish_non_exhaustive()
    }
}

impl<R: Runtime> Emitter<R> {
    pub(crate) fn new(hub: Hub<R>, target: Target) -> Self {
        Self { hub, target }
    }

    /// Adds `room` to the rooms emitted to (an emitter to everyone then emits to the rooms
    /// named only). A connection in several of them receives the message once.
    pub fn to(mut self, room: &str) -> Self {
        self.target.rooms.get_or_insert_with(Vec::new).push(Arc::from(room));
        self
    }

    /// Leaves out the members of `room`, or the connection with that id.
    pub fn except(mut self, room_or_id: &str) -> Self {
        self.target.except.push(Arc::from(room_or_id));
        self
    }

    /// Emits the event `event` with `payload` (`["event", payload]`).
    ///
    /// # Errors
    ///
    /// [`EmitError`] when `event` starts with `$` (reserved for the hub's own messages) or
    /// `payload` does not serialize; nothing is sent.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<Delivery, EmitError> {
        let message = PreparedMessage::text(encode(event, payload, None)?);
        let delivery = self.hub.deliver(&self.target, &message, None);
        self.hub.publish_emit(&self.target, &message, None);
        Ok(delivery)
    }

    /// Emits the event with an ack id (`["event", payload, id]`) and collects the replies that
    /// come within `timeout` on the runtime's clock; the future completes early once every
    /// recipient replied. Each recipient's entry is its reply decoded as `A`, or why there is
    /// none ([`AckError`]).
    ///
    /// # Errors
    ///
    /// As [`emit`](Self::emit).
    pub fn emit_with_ack<A: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
        timeout: Duration,
    ) -> Result<Acks<R, A>, EmitError> {
        let id = self.hub.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        // Other nodes get the event without the id, and add their own.
        let without_id = encode(event, payload, None)?;
        let text = super::cluster::with_ack_id(&without_id, id);
        let collector = Arc::new(Collector::default());
        let deadline = self.hub.inner.runtime.now() + timeout;
        let remote = PreparedMessage::text(without_id);
        self.hub.publish_emit(&self.target, &remote, Some((id, &collector, timeout)));
        self.hub.deliver(&self.target, &PreparedMessage::text(text), Some((id, &collector)));
        Ok(Acks::new(self.hub.inner.runtime.clone(), id, collector, deadline))
    }

    /// Sends a native message, as it is (no hub framing).
    pub fn send(&self, message: impl Into<Message>) -> Delivery {
        let prepared = match message.into() {
            Message::Text(text) => PreparedMessage::text(text),
            Message::Binary(data) => PreparedMessage::binary(data),
        };
        let delivery = self.hub.deliver(&self.target, &prepared, None);
        self.hub.publish_emit(&self.target, &prepared, None);
        delivery
    }
}

/// An event message, checked and serialized.
fn encode<T: Serialize + ?Sized>(event: &str, payload: &T, ack: Option<u64>) -> Result<String, EmitError> {
    if !wire::is_event_name(event) {
        return Err(EmitError::ReservedName(event.to_owned()));
    }
    wire::encode_event(event, payload, ack).map_err(EmitError::Encode)
}

impl<R: Runtime> Hub<R> {
    /// Queues `message` on every connection `target` reaches, applying the slow-recipient policy
    /// to those whose queue is full; with `ack`, each recipient is expected to reply.
    pub(crate) fn deliver(
        &self,
        target: &Target,
        message: &PreparedMessage,
        ack: Option<(u64, &Arc<Collector>)>,
    ) -> Delivery {
        let mut delivery = Delivery::default();
        let registry = self.registry();
        registry.for_each_recipient(target, |id, socket| {
            if let Some((ack_id, collector)) = ack {
                collector.expect(socket);
                socket.acks().insert(ack_id, collector.clone());
            }
            let offer = self.offer(socket, message, &mut delivery);
            if let (Some((ack_id, collector)), false) = (ack, offer == Offer::Queued) {
                socket.acks().remove(&ack_id);
                collector.complete(id, Err(AckError::NotSent));
            }
        });
        drop(registry);
        self.count(delivery);
        delivery
    }

    /// Queues `message` on one connection (a reply to it, say), as an emit would.
    pub(crate) fn deliver_to(&self, socket: &SocketState, message: &PreparedMessage) -> Delivery {
        let mut delivery = Delivery::default();
        self.offer(socket, message, &mut delivery);
        self.count(delivery);
        delivery
    }

    /// Offers `message` to one recipient, applying the slow-recipient policy when its queue is
    /// full, and counts the outcome in `delivery`.
    fn offer(&self, socket: &SocketState, message: &PreparedMessage, delivery: &mut Delivery) -> Offer {
        let offer = socket.handle.offer_prepared(message);
        match offer {
            Offer::Queued => delivery.queued += 1,
            Offer::Closed => delivery.closed += 1,
            Offer::Full => match self.inner.config.slow_recipients {
                SlowRecipients::Drop => {
                    tracing::debug!(id = %socket.id, "send queue full: message dropped for this connection");
                    delivery.dropped += 1;
                }
                SlowRecipients::Disconnect(code) => {
                    tracing::debug!(id = %socket.id, code = %code, "send queue full: disconnecting");
                    let _ = socket.handle.close(code, "send queue full");
                    delivery.disconnected += 1;
                }
            },
        }
        offer
    }

    fn count(&self, delivery: Delivery) {
        let stats = &self.inner.stats;
        stats.messages_out.fetch_add(delivery.queued as u64, Ordering::Relaxed);
        stats.dropped.fetch_add(delivery.dropped as u64, Ordering::Relaxed);
        stats.slow_disconnects.fetch_add(delivery.disconnected as u64, Ordering::Relaxed);
    }
}
