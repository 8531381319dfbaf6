//! One connection of a hub, as handlers see it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ack::{Ack, Pending};
use super::emit::{Delivery, Emitter};
use super::{ConnId, EmitError, Hub, HubError};
use crate::CloseCode;
use crate::error::Error;
use crate::handle::Handle;
use crate::message::Message;
use crate::runtime::Runtime;

/// What the hub keeps per connection.
pub(crate) struct SocketState {
    pub(crate) id: ConnId,
    pub(crate) handle: Handle,
    store: Mutex<Values>,
    acks: Mutex<Pending>,
}

impl fmt::Debug for SocketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketState").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SocketState {
    pub(crate) fn new(id: ConnId, handle: Handle, values: Values) -> Self {
        Self { id, handle, store: Mutex::new(values), acks: Mutex::new(Pending::new()) }
    }

    pub(crate) fn acks(&self) -> MutexGuard<'_, Pending> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self) -> MutexGuard<'_, Values> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Values of any type, one per type (as `http::Extensions`): a connection's store, filled at the
/// upgrade by [`HubBuilder::on_connect`](super::HubBuilder::on_connect) and then kept in its
/// [`Socket`].
#[derive(Default)]
pub struct Values(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Values").field("len", &self.0.len()).finish()
    }
}

impl Values {
    /// Stores `value`, replacing (and returning) the value of its type stored before.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let old = self.0.insert(TypeId::of::<T>(), Box::new(value));
        old.and_then(|b| b.downcast().ok()).map(|b| *b)
    }

    /// The stored value of type `T`.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref())
    }

    /// The stored value of type `T`, to change.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.0.get_mut(&TypeId::of::<T>()).and_then(|b| b.downcast_mut())
    }

    /// Removes and returns the stored value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        let old = self.0.remove(&TypeId::of::<T>());
        old.and_then(|b| b.downcast().ok()).map(|b| *b)
    }
}

/// One connection of a [`Hub`], as its callbacks and event handlers see it: its id, its rooms,
/// emitting to it or from it, its store of typed values, and a way to end it. Cheap to clone;
/// clones refer to the same connection, and may be kept and used from other tasks.
pub struct Socket<R: Runtime> {
    pub(crate) state: Arc<SocketState>,
    pub(crate) hub: Hub<R>,
}

impl<R: Runtime> Clone for Socket<R> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), hub: self.hub.clone() }
    }
}

impl<R: Runtime> fmt::Debug for Socket<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("id", &self.state.id).finish_non_exhaustive()
    }
}

impl<R: Runtime> Socket<R> {
    /// The connection's id (and the name of the room it is always in).
    pub fn id(&self) -> &ConnId {
        &self.state.id
    }

    /// The hub it belongs to.
    pub fn hub(&self) -> &Hub<R> {
        &self.hub
    }

    /// The connection's [`Handle`], to send on it without the hub's wire format.
    pub fn handle(&self) -> &Handle {
        &self.state.handle
    }

    /// Joins `room`; `true` when it was not in it already. `false` too once the connection is
    /// leaving the hub.
    pub fn join(&self, room: &str) -> bool {
        self.hub.join(self.id(), room)
    }

    /// Leaves `room`; `true` when it was in it. The room named by the connection's id cannot be
    /// left. The hub's on-leave callbacks run for the room left.
    pub fn leave(&self, room: &str) -> bool {
        self.hub.leave(self.id(), room)
    }

    /// Whether it is in `room`.
    pub fn is_joined(&self, room: &str) -> bool {
        self.hub.is_joined(self.id(), room)
    }

    /// Leaves every room but its own; returns them. The on-leave callbacks run for each.
    pub fn leave_all(&self) -> Vec<Arc<str>> {
        self.hub.leave_all(self.id())
    }

    /// The rooms it is in, in the order it joined them (its own first).
    pub fn rooms(&self) -> Vec<Arc<str>> {
        self.hub.rooms_of(self.id())
    }

    /// Emits the event `event` with `payload` to this connection (`["event", payload]`).
    ///
    /// # Errors
    ///
    /// [`EmitError`] when `event` is reserved or `payload` does not serialize.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<Delivery, EmitError> {
        self.only().emit(event, payload)
    }

    /// Emits the event and waits up to `timeout` for the client's reply (`["$ack", id, reply]`),
    /// decoded as `A`. The timeout runs on the hub's runtime clock.
    ///
    /// # Errors
    ///
    /// [`EmitError`] when `event` is reserved or `payload` does not serialize (nothing is sent).
    pub fn emit_with_ack<A: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
        timeout: Duration,
    ) -> Result<Ack<R, A>, EmitError> {
        self.only().emit_with_ack(event, payload, timeout).map(Ack)
    }

    /// Sends a native message to this connection, as it is (no hub framing).
    pub fn send(&self, message: impl Into<Message>) -> Delivery {
        self.only().send(message)
    }

    /// Emits to `room`, but not to this connection (socket.io's `socket.to(room)`); chain
    /// [`Emitter::to`] for more rooms.
    pub fn to(&self, room: &str) -> Emitter<R> {
        self.hub.to(room).except(self.id())
    }

    /// Emits to every connection but this one (socket.io's `socket.broadcast`).
    pub fn broadcast(&self) -> Emitter<R> {
        self.hub.all().except(self.id())
    }

    fn only(&self) -> Emitter<R> {
        self.hub.to(self.id())
    }

    /// Stores `value`, replacing (and returning) the value of its type stored before.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.state.store().insert(value)
    }

    /// A copy of the stored value of type `T`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.with(|value: Option<&mut T>| value.cloned())
    }

    /// Runs `f` with the stored value of type `T` (borrowed mutably; `None` when there is
    /// none). The store is locked meanwhile: `f` must not use this socket's store.
    pub fn with<T: Send + Sync + 'static, U>(&self, f: impl FnOnce(Option<&mut T>) -> U) -> U {
        f(self.state.store().get_mut())
    }

    /// Removes and returns the stored value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.state.store().remove()
    }

    /// Closes the connection with `code` and `reason` (RFC 6455 section 7.1.2).
    ///
    /// # Errors
    ///
    /// As [`Handle::close`].
    pub fn disconnect(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.state.handle.close(code, reason)
    }

    /// Passes `error` to the hub's error callbacks, as iris's `FireOnError`.
    pub fn fire_error(&self, error: impl Into<super::BoxError>) {
        self.hub.report(self, HubError::App(error.into()));
    }

    /// The messages and payload bytes waiting in this connection's send queue.
    pub fn queued(&self) -> (usize, usize) {
        self.state.handle.queued()
    }
}
