//! The hub: connection ids, rooms, named events with typed payloads, acknowledgements and
//! broadcast, on top of the callback API (after iris's `websocket` package, socket.io and
//! socketioxide).
//!
//! A [`Hub`] is built once with its event handlers and callbacks, then served by the ordinary
//! `serve` of any adapter through [`Hub::handler_factory`]. Every connection gets an id from the
//! hub's generator (by default 128 random bits from the operating system's generator, as 32 hex
//! digits), is registered under it, and is always in the room named by it, so that emitting to
//! one connection and emitting to a room are the same thing.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrule::hub::{Hub, Socket};
//! use ferrule::{Listener, Options, Runtime, serve};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Chat {
//!     room: String,
//!     text: String,
//! }
//!
//! fn run<R: Runtime, L: Listener>(runtime: R, listener: L) {
//!     let hub = Hub::builder(runtime.clone())
//!         .on_connection(|socket: &Socket<R>| {
//!             socket.insert(String::from("anonymous"));
//!             Ok(())
//!         })
//!         .on("join", |socket: &Socket<R>, room: String| {
//!             socket.join(&room);
//!             Ok(())
//!         })
//!         .on("chat", |socket: &Socket<R>, chat: Chat| {
//!             // Serialized and framed once, queued by reference for every member but the sender.
//!             socket.to(&chat.room).emit("chat", &chat)?;
//!             Ok(())
//!         })
//!         .on_with_ack("add", |_socket: &Socket<R>, (a, b): (i64, i64)| Ok(a + b))
//!         .on_error(|socket: &Socket<R>, error| eprintln!("{}: {error}", socket.id()))
//!         .build();
//!     let server = serve(runtime, listener, Options::default(), hub.handler_factory());
//!     # let _ = server;
//! }
//! ```
//!
//! # Protocol
//!
//! Hub messages are JSON arrays in text messages, readable as they are in a browser's developer
//! tools. Version 1:
//!
//! | direction | message | meaning |
//! |---|---|---|
//! | server → client | `["$open", {"v": 1, "id": "<id>"}]` | the first message: the wire format's version and the connection's id |
//! | both | `["<event>", <payload>]` | the event `<event>` with a JSON payload (`["<event>"]`: payload `null`) |
//! | both | `["<event>", <payload>, <n>]` | the same, asking for an acknowledgement with the id `<n>` (an integer, 1 to 2<sup>53</sup>) |
//! | both | `["$ack", <n>, <reply>]` | the reply to the event with ack id `<n>` |
//! | both | `["$nack", <n>, "<reason>"]` | no reply to ack id `<n>`: the event was unknown, its payload did not parse, or its handler failed |
//!
//! Event names starting with `$` are reserved for the hub. A text message that does not start
//! with `[` (after whitespace), and every binary message, is a *native* message: it passes
//! through untouched to the [`on_native`](HubBuilder::on_native) callbacks, and
//! [`Emitter::send`] sends one. A native text message that starts with `[` would be read as a
//! hub message, so send such as binary. A text message that starts with `[` but is not one of
//! the above goes to the error callbacks ([`HubError::Malformed`]); so does an event nobody
//! handles ([`HubError::UnknownEvent`]) or whose payload does not parse
//! ([`HubError::BadPayload`]). The connection stays open in each case.
//!
//! A later version may add messages; a client should ignore reserved names it does not know, and
//! read the version in `$open`.
//!
//! # The browser client
//!
//! [`CLIENT_JS`] is a JavaScript ES module (no dependencies, no build step) that speaks this
//! protocol from a browser: `connect(url, options)`, `on`/`off`, `emit`, `emitWithAck` (a
//! Promise, with a timeout), replies to the server's ack requests from a handler's return value,
//! native messages, the connection's id, and reconnection with exponential backoff and jitter
//! (off by default). Serve it at a path of the application's choosing with the content type
//! `text/javascript`, and [`CLIENT_TS`], its TypeScript declarations, beside it; the module's
//! header documents its events. `adapter-tokio/examples/chat` serves both from axum.
//!
//! # Broadcast cost
//!
//! An emit serializes its payload once and frames it once, as a [`PreparedMessage`](crate::core::PreparedMessage):
//! a server's frames are unmasked (RFC 6455 section 5.1), so they are the same bytes for every
//! recipient, and each recipient's connection queues them by reference. Per recipient, an emit
//! costs a lock of its send queue, a reference count and a wake of its task, and holds a
//! reference rather than a copy of the message until it is written. `benches/hub.rs` measures
//! an emit of 1 KiB of JSON to a room of 1000 connections over in-memory transports, each
//! connection's task then taking the message into its core and writing it: about 0.55 µs per
//! recipient in all, against 2.1 µs when each recipient serializes and frames its own copy (on
//! a shared 2-core machine; the protocol core's part is 37 ns by reference against 69 ns
//! framing a copy). With permessage-deflate (RFC 7692), the compressed frames are shared too
//! when the server keeps no context between messages (`server_no_context_takeover`, section
//! 7.1.1.1); a connection that keeps its context compresses the message itself.
//!
//! # Slow recipients
//!
//! An emit never waits for a recipient. Each connection's send queue is bounded by the
//! `send_buffer` option ([`Bound`](crate::Bound)); a recipient whose queue is at its bound is
//! handled by the hub's [`SlowRecipients`] policy: it loses the message, or it is disconnected
//! with a close code (by default 1013 Try Again Later). Each emit reports what became of it
//! ([`Delivery`]) and the hub counts both outcomes ([`HubStats`]). The bound counts a shared
//! message's payload against every recipient's queue, though its bytes are held once.
//!
//! A connection's queue holds what its task has not yet taken into the protocol core; the task
//! takes messages while less than 256 KiB of output waits for the socket. So a recipient that
//! stops reading costs its socket's buffers, that 256 KiB, and its queue's bound, and then
//! meets the policy.
//!
//! # Scale-out
//!
//! Several servers behind a load balancer serve one application when their hubs share a
//! [`Backplane`] ([`HubBuilder::backplane`]): [`MemoryCluster`] inside one process, the
//! `ferrule-redis` crate through Redis. The hub's calls stay the same; what changes:
//!
//! - **Emits** ([`Hub::to`], [`Socket::to`], [`Hub::all`], `except`, acknowledged or not) reach
//!   their recipients on every node. Each emit is published once, as one frame holding the
//!   payload as the clients get it; each other node frames it once for all its recipients.
//!   [`Delivery`] counts this node's recipients only. An emit to one connection of this node is
//!   not published.
//! - **Delivery is at most once.** A frame a node misses (its backplane was cut off) is not
//!   sent again; [`HubStats::remote_lost`] counts the frames missed, from the gaps in each
//!   node's numbering. The frames of one node arrive in the order it published them, so the
//!   emits of one publisher to one room keep their order.
//! - **Acknowledgements** come from every node: an acknowledged emit waits for each other
//!   node's list of recipients and for their replies, with the same timeout as on one node.
//!   Each node gives the emit an ack id of its own, so ids never clash.
//! - **Cluster-wide views** ([`Hub::cluster`]): counts, a room's members, is-connected, and
//!   disconnect, join and leave for a connection on whichever node holds it. They ask the nodes
//!   believed alive and wait up to the cluster timeout; nodes that did not answer are named in
//!   the [`Partial`] result. The hub's own [`Hub::len`], [`Hub::get`], [`Hub::sockets_in`] stay
//!   local.
//! - **Heartbeats**: every node publishes one each `interval` ([`HubBuilder::heartbeat`]). A
//!   node nothing was heard from for `dead_after` is no longer asked, so a dead node's
//!   connections leave the cluster-wide views at most `dead_after` after its last frame (and
//!   at once when its hub is dropped and says goodbye); until then, queries name it missing.

mod ack;
mod cluster;
mod connection;
mod emit;
mod memory;
mod registry;
mod socket;
mod wire;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ferrule_core::handshake::Request;
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

pub use ack::{Ack, AckError, Acks};
pub use cluster::{Backplane, Cluster, Inbox, Partial};
pub use connection::HubConnection;
pub use emit::{Delivery, Emitter};
pub use memory::{MemoryBackplane, MemoryCluster};
pub use socket::{Socket, Values};

use cluster::{ClusterConfig, ClusterState};
use registry::{Registry, Target};
use socket::SocketState;

use crate::CloseCode;
use crate::callback::{Acceptance, Rejection};
use crate::error::{CloseCause, CloseInfo, Error, HandlerError};
use crate::message::Message;
use crate::runtime::Runtime;

/// The browser client of the hub's wire format version 1: an ES module to serve as
/// `text/javascript` (see [the module docs](self#the-browser-client)).
pub const CLIENT_JS: &str = include_str!("client/ferrule-hub.js");

/// The TypeScript declarations of [`CLIENT_JS`], to serve beside it (as `ferrule-hub.d.ts`
/// when the module is `ferrule-hub.js`).
pub const CLIENT_TS: &str = include_str!("client/ferrule-hub.d.ts");

/// Any error an event handler or the application reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection's id: the name of the room it is always in. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(Arc<str>);

impl ConnId {
    /// A fresh random id: 128 bits from a generator seeded by the operating system, as 32
    /// lowercase hex digits. Not guessable, so an id can be handed to a client as a reference
    /// to its connection.
    pub fn random() -> Self {
        thread_local! {
            static RNG: std::cell::RefCell<rand::rngs::StdRng> = std::cell::RefCell::new(rand::rngs::StdRng::from_os_rng());
        }
        let mut bytes = [0u8; 16];
        RNG.with(|rng| rng.borrow_mut().fill_bytes(&mut bytes));
        Self(Arc::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for ConnId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ConnId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ConnId {
    fn from(id: &str) -> Self {
        Self(Arc::from(id))
    }
}

impl From<String> for ConnId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

/// What the hub does with a recipient whose send queue is at its bound when an emit reaches it.
/// Either way, the emit goes on to the other recipients without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowRecipients {
    /// The recipient loses this message and stays connected (socket.io's volatile emits). For
    /// messages that a later one supersedes: positions, prices, presence.
    Drop,
    /// The recipient is disconnected with this close code (1008 Policy Violation or 1013 Try
    /// Again Later are the usual ones), and its client can reconnect and catch up. Messages it
    /// queued before are still sent first.
    Disconnect(CloseCode),
}

impl Default for SlowRecipients {
    /// Disconnect with 1013 Try Again Later: a recipient that cannot keep up does not silently
    /// miss messages.
    fn default() -> Self {
        Self::Disconnect(CloseCode::TRY_AGAIN_LATER)
    }
}

/// An error the hub passes to its error callbacks ([`HubBuilder::on_error`]). None of them
/// closes the connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// A text message that starts with `[` but is not a hub message.
    Malformed(String),
    /// An event no handler is registered for.
    UnknownEvent {
        /// The event's name.
        event: String,
    },
    /// An event whose payload did not parse as its handler's type.
    BadPayload {
        /// The event's name.
        event: String,
        /// What serde said.
        error: serde_json::Error,
    },
    /// An event handler returned an error.
    Handler {
        /// The event's name.
        event: String,
        /// The handler's error.
        error: BoxError,
    },
    /// An acknowledgement for an id nothing waits for (it came after its timeout, or was never
    /// asked for).
    UnexpectedAck {
        /// The ack id.
        id: u64,
    },
    /// The application's own error ([`Socket::fire_error`], [`Hub::fire_error`]).
    App(BoxError),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => f.write_str(why),
            Self::UnknownEvent { event } => write!(f, "no handler for the event {event:?}"),
            Self::BadPayload { event, error } => write!(f, "the payload of {event:?} did not parse: {error}"),
            Self::Handler { event, error } => write!(f, "the handler of {event:?} failed: {error}"),
            Self::UnexpectedAck { id } => write!(f, "an acknowledgement nothing waits for (id {id})"),
            Self::App(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadPayload { error, .. } => Some(error),
            Self::Handler { error, .. } | Self::App(error) => Some(&**error),
            _ => None,
        }
    }
}

/// Why an emit sent nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmitError {
    /// The event's name starts with `$`, which is reserved for the hub's own messages.
    ReservedName(String),
    /// The payload did not serialize as JSON.
    Encode(serde_json::Error),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedName(name) => {
                write!(f, "the event name {name:?} is reserved: names starting with '$' are the hub's")
            }
            Self::Encode(e) => write!(f, "the payload did not serialize: {e}"),
        }
    }
}

impl std::error::Error for EmitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            Self::ReservedName(_) => None,
        }
    }
}

/// Why an event handler produced no reply.
#[derive(Debug)]
pub(crate) enum EventFailure {
    Payload(serde_json::Error),
    Handler(BoxError),
    Reply(serde_json::Error),
}

impl fmt::Display for EventFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Payload(_) => f.write_str("payload did not parse"),
            Self::Handler(e) => write!(f, "{e}"),
            Self::Reply(_) => f.write_str("reply did not serialize"),
        }
    }
}

type EventFn<R> = Box<dyn Fn(&Socket<R>, Option<&RawValue>) -> Result<Option<String>, EventFailure> + Send + Sync>;
type SocketFn<R> = Box<dyn Fn(&Socket<R>) -> Result<(), HandlerError> + Send + Sync>;
/// A callback about a connection and a value of type `A` (a `str`, a `[u8]`, ...).
type Callback<R, A> = Box<dyn Fn(&Socket<R>, &A) + Send + Sync>;

/// A callback on an upgrade request.
type UpgradeFn = Box<dyn Fn(&Request, &mut Acceptance, &mut Values) -> Result<(), Rejection> + Send + Sync>;

struct Callbacks<R: Runtime> {
    on_connect: Vec<UpgradeFn>,
    on_connection: Vec<SocketFn<R>>,
    on_disconnect: Vec<Callback<R, CloseInfo>>,
    on_error: Vec<Callback<R, HubError>>,
    on_ping: Vec<Callback<R, [u8]>>,
    on_pong: Vec<Callback<R, [u8]>>,
    on_leave: Vec<Callback<R, str>>,
    on_native: Vec<Callback<R, Message>>,
}

impl<R: Runtime> Default for Callbacks<R> {
    fn default() -> Self {
        Self {
            on_connect: Vec::new(),
            on_connection: Vec::new(),
            on_disconnect: Vec::new(),
            on_error: Vec::new(),
            on_ping: Vec::new(),
            on_pong: Vec::new(),
            on_leave: Vec::new(),
            on_native: Vec::new(),
        }
    }
}

type IdGenerator = Box<dyn Fn(&Request) -> ConnId + Send + Sync>;

struct Config {
    id_generator: IdGenerator,
    slow_recipients: SlowRecipients,
}

/// A hub: its registry of connections and rooms, its event handlers and callbacks, and its
/// counters. Cheap to clone; clones are the same hub. Built with [`Hub::builder`].
pub struct Hub<R: Runtime> {
    inner: Arc<Inner<R>>,
}

struct Inner<R: Runtime> {
    runtime: R,
    registry: Mutex<Registry<Arc<SocketState>>>,
    events: HashMap<String, EventFn<R>>,
    callbacks: Callbacks<R>,
    config: Config,
    stats: Counters,
    next_ack: AtomicU64,
    cluster: Option<ClusterState>,
}

impl<R: Runtime> Clone for Hub<R> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<R: Runtime> fmt::Debug for Hub<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.len())
            .field("slow_recipients", &self.inner.config.slow_recipients)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Hub`]: its event handlers, callbacks, id generator and slow-recipient policy.
/// Several callbacks of one kind run in the order they were added.
///
/// Every callback and handler runs inside the connection's task, between its reads (as the
/// callback API's [`Handler`](crate::Handler)): keep them short, and take a [`Socket`] clone
/// to another task for slow work.
#[must_use = "a builder does nothing until built"]
pub struct HubBuilder<R: Runtime> {
    runtime: R,
    events: HashMap<String, EventFn<R>>,
    callbacks: Callbacks<R>,
    config: Config,
    cluster: Option<ClusterConfig>,
}

impl<R: Runtime> fmt::Debug for HubBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder").field("events", &self.events.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl<R: Runtime> HubBuilder<R> {
    /// Handles the event `event`, whose payload is parsed as `T` (JSON, with serde). A payload
    /// that does not parse goes to the error callbacks ([`HubError::BadPayload`]), and so does
    /// an error the handler returns ([`HubError::Handler`]). When the client asked for an
    /// acknowledgement, it gets `null` once the handler succeeded (`["$ack", id, null]`), or a
    /// `$nack` when it failed.
    ///
    /// # Panics
    ///
    /// When `event` starts with `$` (reserved for the hub).
    pub fn on<T, F>(self, event: &str, handler: F) -> Self
    where
        T: DeserializeOwned,
        F: Fn(&Socket<R>, T) -> Result<(), BoxError> + Send + Sync + 'static,
    {
        self.on_with_ack(event, move |socket, payload: T| handler(socket, payload).map(|()| None::<()>))
    }

    /// Handles the event `event` and replies to it: when the client asked for an
    /// acknowledgement (`["event", payload, id]`), the handler's value is sent back as
    /// `["$ack", id, value]` (socket.io's `emitWithAck` from the client); otherwise it is
    /// dropped. Errors go as for [`on`](Self::on).
    ///
    /// # Panics
    ///
    /// When `event` starts with `$` (reserved for the hub).
    pub fn on_with_ack<T, A, F>(mut self, event: &str, handler: F) -> Self
    where
        T: DeserializeOwned,
        A: Serialize,
        F: Fn(&Socket<R>, T) -> Result<A, BoxError> + Send + Sync + 'static,
    {
        assert!(wire::is_event_name(event), "event names starting with '$' are reserved for the hub");
        let erased: EventFn<R> = Box::new(move |socket, payload| {
            let raw = payload.map_or("null", RawValue::get);
            let value: T = serde_json::from_str(raw).map_err(EventFailure::Payload)?;
            let reply = handler(socket, value).map_err(EventFailure::Handler)?;
            serde_json::to_string(&reply).map(Some).map_err(EventFailure::Reply)
        });
        self.events.insert(event.to_owned(), erased);
        self
    }

    /// Runs for each upgrade request, before the connection opens (the callback API's
    /// [`HandlerFactory::on_connect`](crate::HandlerFactory::on_connect)): it may refuse the
    /// upgrade with a [`Rejection`], edit the response through the [`Acceptance`], and fill the
    /// connection's store from the request (a user from a header or a cookie, say), which its
    /// [`Socket`] then holds. Runs before the id generator.
    pub fn on_connect(
        mut self,
        callback: impl Fn(&Request, &mut Acceptance, &mut Values) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.on_connect.push(Box::new(callback));
        self
    }

    /// Runs when a connection has joined the hub (registered, in its own room, `$open` sent):
    /// the place to store values in its [`Socket`] and join it to rooms. An error closes the
    /// connection with the error's code ([`HandlerError`]).
    pub fn on_connection(
        mut self,
        callback: impl Fn(&Socket<R>) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.on_connection.push(Box::new(callback));
        self
    }

    /// Runs when a connection has ended, with how ([`CloseInfo`], its [`CloseCause`]): after it
    /// left its rooms (with their on-leave callbacks) and was removed from the hub.
    pub fn on_disconnect(mut self, callback: impl Fn(&Socket<R>, &CloseInfo) + Send + Sync + 'static) -> Self {
        self.callbacks.on_disconnect.push(Box::new(callback));
        self
    }

    /// Runs for each [`HubError`] on a connection, and for the application's own
    /// ([`Socket::fire_error`]).
    pub fn on_error(mut self, callback: impl Fn(&Socket<R>, &HubError) + Send + Sync + 'static) -> Self {
        self.callbacks.on_error.push(Box::new(callback));
        self
    }

    /// Runs for each ping a client sends (the pong is already queued).
    pub fn on_ping(mut self, callback: impl Fn(&Socket<R>, &[u8]) + Send + Sync + 'static) -> Self {
        self.callbacks.on_ping.push(Box::new(callback));
        self
    }

    /// Runs for each pong a client sends.
    pub fn on_pong(mut self, callback: impl Fn(&Socket<R>, &[u8]) + Send + Sync + 'static) -> Self {
        self.callbacks.on_pong.push(Box::new(callback));
        self
    }

    /// Runs each time a connection leaves a room: through [`Socket::leave`] and the like, and
    /// for every room it was in when it ends (its own room last), before it is removed from the
    /// hub and before the on-disconnect callbacks.
    pub fn on_leave(mut self, callback: impl Fn(&Socket<R>, &str) + Send + Sync + 'static) -> Self {
        self.callbacks.on_leave.push(Box::new(callback));
        self
    }

    /// Runs for each native message: every binary message, and text that is not a hub message
    /// (see the [protocol](self#protocol)).
    pub fn on_native(mut self, callback: impl Fn(&Socket<R>, &Message) + Send + Sync + 'static) -> Self {
        self.callbacks.on_native.push(Box::new(callback));
        self
    }

    /// Makes each connection's id from its upgrade request (iris's `IDGenerator`): a user id from
    /// a header or a query parameter, say. An id that is taken refuses the upgrade with 409.
    /// The default is [`ConnId::random`].
    pub fn id_generator(mut self, generator: impl Fn(&Request) -> ConnId + Send + Sync + 'static) -> Self {
        self.config.id_generator = Box::new(generator);
        self
    }

    /// What happens to a recipient whose send queue is full ([`SlowRecipients`]; by default,
    /// disconnect with 1013).
    pub fn slow_recipients(mut self, policy: SlowRecipients) -> Self {
        self.config.slow_recipients = policy;
        self
    }

    /// The hub.
    pub fn build(self) -> Hub<R> {
        let hub = Hub {
            inner: Arc::new(Inner {
                runtime: self.runtime,
                registry: Mutex::new(Registry::default()),
                events: self.events,
                callbacks: self.callbacks,
                config: self.config,
                stats: Counters::default(),
                next_ack: AtomicU64::new(1),
                cluster: self.cluster.map(ClusterState::new),
            }),
        };
        hub.start_cluster();
        hub
    }
}

impl<R: Runtime> Hub<R> {
    /// Starts building a hub whose timers (acknowledgement timeouts) run on `runtime`.
    pub fn builder(runtime: R) -> HubBuilder<R> {
        HubBuilder {
            runtime,
            events: HashMap::new(),
            callbacks: Callbacks::default(),
            config: Config { id_generator: Box::new(|_| ConnId::random()), slow_recipients: SlowRecipients::default() },
            cluster: None,
        }
    }

    /// What serves this hub: pass it to an adapter's `serve` (`ferrule_tokio::serve(listener,
    /// options, hub.handler_factory())`) or to [`serve`](crate::serve). It is a
    /// [`HandlerFactory`](crate::HandlerFactory), in the shape of a closure so that every
    /// adapter's `serve` takes it. Each upgrade gets its id from the hub's generator; a taken id
    /// is refused with 409.
    pub fn handler_factory(
        &self,
    ) -> impl Fn(&Request, &mut Acceptance) -> Result<HubConnection<R>, Rejection> + Clone + Send + Sync + 'static {
        let hub = self.clone();
        move |request, acceptance| hub.accept(request, acceptance)
    }

    fn registry(&self) -> MutexGuard<'_, Registry<Arc<SocketState>>> {
        // Every change to the registry is complete before the lock is released, so a poisoned
        // lock is still consistent.
        self.inner.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn socket(&self, state: &Arc<SocketState>) -> Socket<R> {
        Socket { state: state.clone(), hub: self.clone() }
    }

    /// The connection with id `id`.
    pub fn get(&self, id: &str) -> Option<Socket<R>> {
        self.registry().get(id).map(|state| self.socket(state))
    }

    /// Every connection.
    pub fn sockets(&self) -> Vec<Socket<R>> {
        self.registry().iter().map(|(_, state)| self.socket(state)).collect()
    }

    /// The connections in `room`.
    pub fn sockets_in(&self, room: &str) -> Vec<Socket<R>> {
        let mut sockets = Vec::new();
        let target = Target { rooms: Some(vec![Arc::from(room)]), except: Vec::new() };
        self.registry().for_each_recipient(&target, |_, state| sockets.push(self.socket(state)));
        sockets
    }

    /// How many connections are in the hub.
    pub fn len(&self) -> usize {
        self.registry().len()
    }

    /// Whether no connection is in the hub.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a connection with id `id` is in the hub.
    pub fn is_connected(&self, id: &str) -> bool {
        self.registry().get(id).is_some()
    }

    /// Closes the connection with id `id` with `code` and `reason`; `Ok(false)` when there is
    /// none.
    ///
    /// # Errors
    ///
    /// As [`Handle::close`](crate::Handle::close): a code that may not be sent, or a connection
    /// already closing.
    pub fn disconnect(&self, id: &str, code: CloseCode, reason: &str) -> Result<bool, Error> {
        let handle = self.registry().get(id).map(|state| state.handle.clone());
        match handle {
            Some(handle) => handle.close(code, reason).map(|()| true),
            None => Ok(false),
        }
    }

    /// Puts the connection `id` in `room`; `true` when it was not in it.
    pub fn join(&self, id: &str, room: &str) -> bool {
        self.registry().join(id, room).unwrap_or(false)
    }

    /// Takes the connection `id` out of `room`, with the on-leave callbacks; `true` when it was
    /// in it.
    pub fn leave(&self, id: &str, room: &str) -> bool {
        let left = self.registry().leave(id, room);
        if left {
            if let Some(socket) = self.get(id) {
                self.fire_leave(&socket, room);
            }
        }
        left
    }

    /// Takes the connection `id` out of every room but its own, with the on-leave callbacks;
    /// returns the rooms left.
    pub fn leave_all(&self, id: &str) -> Vec<Arc<str>> {
        let left = self.registry().leave_all(id);
        if let Some(socket) = self.get(id) {
            for room in &left {
                self.fire_leave(&socket, room);
            }
        }
        left
    }

    /// Whether the connection `id` is in `room`.
    pub fn is_joined(&self, id: &str, room: &str) -> bool {
        self.registry().is_joined(id, room)
    }

    /// The rooms the connection `id` is in, in the order joined (its own first).
    pub fn rooms_of(&self, id: &str) -> Vec<Arc<str>> {
        self.registry().rooms_of(id)
    }

    /// Emits to the members of `room` (or to the connection with that id); chain
    /// [`Emitter::to`] for more rooms and [`Emitter::except`] to leave some out.
    pub fn to(&self, room: &str) -> Emitter<R> {
        Emitter::new(self.clone(), Target { rooms: Some(vec![Arc::from(room)]), except: Vec::new() })
    }

    /// Emits to every connection; chain [`Emitter::except`] to leave some out.
    pub fn all(&self) -> Emitter<R> {
        Emitter::new(self.clone(), Target::default())
    }

    /// Emits the event to every connection: `hub.all().emit(event, payload)`.
    ///
    /// # Errors
    ///
    /// [`EmitError`] when `event` is reserved or `payload` does not serialize.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<Delivery, EmitError> {
        self.all().emit(event, payload)
    }

    /// Passes the application's `error` about `socket` to the error callbacks (iris's
    /// `FireOnError`).
    pub fn fire_error(&self, socket: &Socket<R>, error: impl Into<BoxError>) {
        self.report(socket, HubError::App(error.into()));
    }

    /// The hub's counters and the state of its connections now. Reading the queue depths locks
    /// each connection's queue in turn, so this costs a little per connection.
    pub fn stats(&self) -> HubStats {
        let registry = self.registry();
        let (mut queued_messages, mut queued_bytes, mut max_queued_messages) = (0, 0, 0);
        for (_, state) in registry.iter() {
            let (messages, bytes) = state.handle.queued();
            queued_messages += messages;
            queued_bytes += bytes;
            max_queued_messages = max_queued_messages.max(messages);
        }
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let remote = self.inner.cluster.as_ref().map(|c| &c.counters);
        let remote = |f: fn(&cluster::RemoteCounters) -> &AtomicU64| remote.map_or(0, |r| get(f(r)));
        HubStats {
            connections: registry.len(),
            rooms: registry.room_count(),
            connects: get(&s.connects),
            messages_in: get(&s.messages_in),
            events_in: get(&s.events_in),
            messages_out: get(&s.messages_out),
            dropped: get(&s.dropped),
            slow_disconnects: get(&s.slow_disconnects),
            errors: get(&s.errors),
            queued_messages,
            queued_bytes,
            max_queued_messages,
            closes: CloseCounts::from_counters(&s.closes),
            remote_published: remote(|r| &r.published),
            remote_sent: remote(|r| &r.sent),
            remote_in: remote(|r| &r.frames_in),
            remote_lost: self.inner.cluster.as_ref().map_or(0, ClusterState::lost),
            remote_malformed: remote(|r| &r.malformed),
        }
    }

    fn report(&self, socket: &Socket<R>, error: HubError) {
        self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = %socket.id(), error = %error, "hub error");
        for callback in &self.inner.callbacks.on_error {
            callback(socket, &error);
        }
    }

    fn fire_leave(&self, socket: &Socket<R>, room: &str) {
        for callback in &self.inner.callbacks.on_leave {
            callback(socket, room);
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    messages_in: AtomicU64,
    events_in: AtomicU64,
    messages_out: AtomicU64,
    dropped: AtomicU64,
    slow_disconnects: AtomicU64,
    errors: AtomicU64,
    closes: [AtomicU64; CLOSE_CAUSES],
}

const CLOSE_CAUSES: usize = 11;

impl Counters {
    fn count_close(&self, cause: &CloseCause) {
        let at = match cause {
            CloseCause::Local { .. } => 0,
            CloseCause::Peer => 1,
            CloseCause::ServerShutdown => 2,
            CloseCause::PeerUnresponsive => 3,
            CloseCause::ReadTimeout => 4,
            CloseCause::CloseTimeout => 5,
            CloseCause::WriteTimeout => 6,
            CloseCause::Protocol(_) => 7,
            CloseCause::Transport(_) => 8,
            CloseCause::TransportClosed => 9,
            CloseCause::Aborted => 10,
        };
        self.closes[at].fetch_add(1, Ordering::Relaxed);
    }
}

/// A hub's counters (since it was built) and the state of its connections, from [`Hub::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Connections in the hub now.
    pub connections: usize,
    /// Rooms with members now, each connection's own room included.
    pub rooms: usize,
    /// Connections that joined the hub.
    pub connects: u64,
    /// Messages received (hub messages and native ones).
    pub messages_in: u64,
    /// Events received (named, whether handled or not).
    pub events_in: u64,
    /// Messages queued to recipients: by emits (one per recipient) and acknowledgements.
    pub messages_out: u64,
    /// Messages a recipient lost because its send queue was full ([`SlowRecipients::Drop`]).
    pub dropped: u64,
    /// Recipients disconnected because their send queue was full
    /// ([`SlowRecipients::Disconnect`]).
    pub slow_disconnects: u64,
    /// Errors passed to the error callbacks.
    pub errors: u64,
    /// Messages waiting in the connections' send queues now, in all.
    pub queued_messages: usize,
    /// Payload bytes waiting in the connections' send queues now, in all.
    pub queued_bytes: usize,
    /// The most messages waiting in one connection's send queue now.
    pub max_queued_messages: usize,
    /// How the connections that left the hub ended.
    pub closes: CloseCounts,
    /// Frames this node published to every other node through its [`Backplane`]: emits,
    /// heartbeats and cluster-wide requests.
    pub remote_published: u64,
    /// Frames this node sent to one other node: answers to requests, acknowledgements.
    pub remote_sent: u64,
    /// Frames from other nodes this node read.
    pub remote_in: u64,
    /// Frames other nodes published that never reached this node (the gaps in their
    /// numbering): remote emits lost while the backplane was cut off, say.
    pub remote_lost: u64,
    /// Frames from the backplane that did not decode (and were ignored).
    pub remote_malformed: u64,
}

/// How many connections ended with each [`CloseCause`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseCounts {
    /// [`CloseCause::Local`]: this server closed (including slow recipients disconnected).
    pub local: u64,
    /// [`CloseCause::Peer`].
    pub peer: u64,
    /// [`CloseCause::ServerShutdown`].
    pub server_shutdown: u64,
    /// [`CloseCause::PeerUnresponsive`].
    pub peer_unresponsive: u64,
    /// [`CloseCause::ReadTimeout`].
    pub read_timeout: u64,
    /// [`CloseCause::CloseTimeout`].
    pub close_timeout: u64,
    /// [`CloseCause::WriteTimeout`].
    pub write_timeout: u64,
    /// [`CloseCause::Protocol`].
    pub protocol: u64,
    /// [`CloseCause::Transport`].
    pub transport: u64,
    /// [`CloseCause::TransportClosed`].
    pub transport_closed: u64,
    /// [`CloseCause::Aborted`].
    pub aborted: u64,
}

impl CloseCounts {
    fn from_counters(c: &[AtomicU64; CLOSE_CAUSES]) -> Self {
        let get = |i: usize| c[i].load(Ordering::Relaxed);
        Self {
            local: get(0),
            peer: get(1),
            server_shutdown: get(2),
            peer_unresponsive: get(3),
            read_timeout: get(4),
            close_timeout: get(5),
            write_timeout: get(6),
            protocol: get(7),
            transport: get(8),
            transport_closed: get(9),
            aborted: get(10),
        }
    }
}
