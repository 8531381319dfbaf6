//! Several hubs as one: the [`Backplane`] trait that carries emits and cluster-wide requests
//! between nodes, the frames it carries, and the cluster-wide views ([`Cluster`]).
//!
//! Every node publishes its emits once, as one frame, to every other node, which delivers it to
//! its own connections the way a local emit would. Cluster-wide queries are published as
//! requests that every node answers straight to the asker; the asker waits for the nodes it
//! believes alive (those it heard from within [`dead_after`](HubBuilder::heartbeat)) until the
//! cluster timeout, and flags the nodes that did not answer ([`Partial`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrule_core::PreparedMessage;
use serde::{Deserialize, Serialize};

use super::ack::{AckError, Collector, RawReply};
use super::registry::Target;
use super::{ConnId, Hub, HubBuilder, Inner};
use crate::CloseCode;
use crate::runtime::Runtime;
use crate::shared::store_waker;

/// What connects a hub to the other nodes of a cluster: it carries frames (opaque bytes the hub
/// encodes) between the hubs. [`MemoryCluster`](super::MemoryCluster) connects hubs inside one
/// process; the `ferrule-redis` crate connects processes through Redis.
///
/// A backplane delivers each frame at most once, and the frames one node publishes in the order
/// it published them. It may lose frames (while its connection to a broker is down, say): the
/// hub counts the published frames it missed ([`HubStats::remote_lost`](super::HubStats)) and
/// treats a node that stays silent past its heartbeat bound as gone.
///
/// Every method is called from inside the hub's calls, often from a connection's task: none may
/// block. A backplane that does I/O queues the frame for a task of its own.
pub trait Backplane: Send + Sync + 'static {
    /// This node's name, unique in the cluster.
    fn node(&self) -> &str;

    /// Starts passing the frames other nodes publish or send to this one to `inbox`. The hub
    /// calls it once, when it is built.
    fn start(&self, inbox: Inbox);

    /// Publishes `frame` to every other node.
    fn publish(&self, frame: Bytes);

    /// Sends `frame` to the node named `node` only.
    fn send_to(&self, node: &str, frame: Bytes);
}

/// Where a [`Backplane`] passes the frames it receives: to its hub. Cheap to clone; once the hub
/// is dropped, frames are ignored.
#[derive(Clone)]
pub struct Inbox(Arc<DeliverFn>);

/// What an [`Inbox`] calls with each frame.
type DeliverFn = dyn Fn(&[u8]) + Send + Sync;

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inbox")
    }
}

impl Inbox {
    /// Passes a frame another node published or sent to this one. It may be a frame this node
    /// published itself (a broker that echoes to its publisher): the hub ignores those.
    pub fn deliver(&self, frame: &[u8]) {
        (self.0)(frame);
    }
}

/// The result of a cluster-wide query: what the nodes that answered in time said, and the nodes
/// that did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial<T> {
    /// The result over this node and every node that answered.
    pub value: T,
    /// The nodes believed alive that did not answer within the cluster timeout.
    pub missing: Vec<String>,
}

impl<T> Partial<T> {
    /// Whether every node believed alive answered.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// The cluster-wide settings of a hub with a backplane.
pub(crate) struct ClusterConfig {
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) heartbeat: Duration,
    pub(crate) dead_after: Duration,
    pub(crate) timeout: Duration,
}

/// Default interval between heartbeats.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// Default silence after which a node is taken as gone: three heartbeats.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(15);
/// Default time a cluster-wide query or a remote acknowledgement list waits for other nodes.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// How many times `dead_after` a silent node is remembered.
const FORGET_AFTER: u32 = 10;

/// A hub's cluster state: the nodes it heard from, its published-frame counter, and what waits
/// for other nodes.
pub(crate) struct ClusterState {
    pub(crate) config: ClusterConfig,
    seq: AtomicU64,
    boot: u64,
    next_request: AtomicU64,
    nodes: Mutex<HashMap<String, NodeState>>,
    requests: Mutex<HashMap<u64, Arc<Gather>>>,
    acks: Mutex<HashMap<u64, Weak<Collector>>>,
    pub(crate) counters: RemoteCounters,
}

#[derive(Debug, Default)]
pub(crate) struct RemoteCounters {
    pub(crate) published: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    /// Frames lost from nodes since forgotten or restarted; those of the nodes known now are
    /// counted from their [`Numbering`].
    pub(crate) lost_retired: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct NodeState {
    last_seen: Instant,
    /// The instance of the node (a restarted node numbers its frames from 1 again).
    boot: u64,
    /// `None` until a frame told where its numbering stands.
    numbering: Option<Numbering>,
}

/// What arrived of one node's numbered (published) frames: frames can overtake one another when
/// the node publishes from several threads at once, so the count of frames lost is the numbers
/// not seen in the range seen, not the gaps between consecutive frames.
#[derive(Debug, Clone, Copy, Default)]
struct Numbering {
    /// The number before the first frame seen.
    base: u64,
    highest: u64,
    received: u64,
}

impl Numbering {
    fn lost(&self) -> u64 {
        self.highest.saturating_sub(self.base).saturating_sub(self.received)
    }
}

impl ClusterState {
    pub(crate) fn new(config: ClusterConfig) -> Self {
        Self {
            config,
            seq: AtomicU64::new(0),
            boot: rand::RngCore::next_u64(&mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng()),
            next_request: AtomicU64::new(1),
            nodes: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            counters: RemoteCounters::default(),
        }
    }

    fn nodes(&self) -> MutexGuard<'_, HashMap<String, NodeState>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, HashMap<u64, Arc<Gather>>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acks(&self) -> MutexGuard<'_, HashMap<u64, Weak<Collector>>> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn me(&self) -> &str {
        self.config.backplane.node()
    }

    /// The other nodes heard from within `dead_after` of `now`, sorted. A silent node is kept
    /// (to count what it published meanwhile when it comes back) for [`FORGET_AFTER`] times
    /// `dead_after`, then forgotten.
    fn alive(&self, now: Instant) -> Vec<String> {
        let dead_after = self.config.dead_after;
        let mut nodes = self.nodes();
        nodes.retain(|_, node| {
            let keep = now.saturating_duration_since(node.last_seen) <= dead_after * FORGET_AFTER;
            if !keep {
                self.retire(&node.numbering);
            }
            keep
        });
        let mut alive: Vec<String> = nodes
            .iter()
            .filter(|(_, node)| now.saturating_duration_since(node.last_seen) <= dead_after)
            .map(|(name, _)| name.clone())
            .collect();
        alive.sort_unstable();
        alive
    }

    fn publish(&self, body: &Body, payload: &[u8]) {
        let frame = encode(&self.header(false, body.clone()), payload);
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        self.config.backplane.publish(frame);
    }

    fn send_to(&self, node: &str, body: Body) {
        let frame = encode(&self.header(true, body), &[]);
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.config.backplane.send_to(node, frame);
    }

    fn header(&self, direct: bool, body: Body) -> Header {
        let seq = if direct { self.seq.load(Ordering::Relaxed) } else { self.seq.fetch_add(1, Ordering::Relaxed) + 1 };
        Header { from: self.me().to_owned(), boot: self.boot, seq, direct, body }
    }

    /// Notes a frame from `from`: it is alive, and numbers missing from its numbered frames are
    /// frames lost. `true` when it is a node (or an instance of it) not known before.
    fn heard(&self, header: &Header, now: Instant) -> bool {
        let mut nodes = self.nodes();
        let fresh = NodeState { last_seen: now, boot: header.boot, numbering: None };
        let mut new = false;
        let node = nodes.entry(header.from.clone()).or_insert_with(|| {
            new = true;
            fresh
        });
        if node.boot != header.boot {
            // A restarted node numbers from 1 again.
            self.retire(&node.numbering);
            *node = fresh;
            new = true;
        }
        node.last_seen = node.last_seen.max(now);
        let seq = header.seq;
        match (&mut node.numbering, header.direct) {
            // A frame sent to this node alone carries the number of the sender's last published
            // frame: those before it are from before this node's time.
            (None, true) => node.numbering = Some(Numbering { base: seq, highest: seq, received: 0 }),
            (None, false) => {
                node.numbering = Some(Numbering { base: seq.saturating_sub(1), highest: seq, received: 1 })
            }
            (Some(_), true) => {}
            (Some(n), false) => {
                if seq > n.base {
                    n.highest = n.highest.max(seq);
                    n.received += 1;
                }
            }
        }
        new
    }

    fn retire(&self, numbering: &Option<Numbering>) {
        self.counters.lost_retired.fetch_add(numbering.map_or(0, |n| n.lost()), Ordering::Relaxed);
    }

    /// Frames published by other nodes that never reached this one.
    pub(crate) fn lost(&self) -> u64 {
        let known: u64 = self.nodes().values().map(|node| node.numbering.map_or(0, |n| n.lost())).sum();
        known + self.counters.lost_retired.load(Ordering::Relaxed)
    }
}

/// A frame between nodes: a header (JSON, its length first as 4 bytes big-endian) and, for an
/// emit, the message's payload as it goes to the clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    from: String,
    /// Random, per hub: tells a restarted node from the one before it.
    boot: u64,
    /// Published: its number, counting from 1. Sent to one node: the number of the sender's
    /// last published frame.
    seq: u64,
    /// Sent to one node rather than published.
    direct: bool,
    body: Body,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Body {
    /// A node is alive.
    Heartbeat,
    /// A node is leaving (its hub was dropped).
    Bye,
    /// An emit; the payload follows the header. With `ack`, the payload is the event without
    /// its ack id, which each node adds (its own), and the replies go back to `from`.
    Emit { rooms: Option<Vec<String>>, except: Vec<String>, binary: bool, ack: Option<RemoteAck> },
    /// Which connections of the sender will reply to the emit with ack id `ack`.
    AckExpect { ack: u64, ids: Vec<String> },
    /// One connection's reply to the emit with ack id `ack`.
    AckReply { ack: u64, id: String, reply: Result<String, WireAckError> },
    /// A cluster-wide request.
    Request { id: u64, op: Op },
    /// A node's answer to request `id`.
    Response { id: u64, answer: Answer },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct RemoteAck {
    id: u64,
    timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum WireAckError {
    Disconnected,
    NotSent,
    Refused(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Op {
    Count,
    Members(String),
    IsConnected(String),
    Disconnect(String, u16, String),
    Join(String, String),
    Leave(String, String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Answer {
    Count(usize),
    Members(Vec<String>),
    Yes(bool),
}

fn encode(header: &Header, payload: &[u8]) -> Bytes {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let mut frame = Vec::with_capacity(4 + json.len() + payload.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

fn decode(frame: &[u8]) -> Option<(Header, &[u8])> {
    let len = u32::from_be_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let json = frame.get(4..4usize.checked_add(len)?)?;
    let header = serde_json::from_slice(json).ok()?;
    Some((header, &frame[4 + len..]))
}

/// `["event", payload]` with an ack id added: `["event", payload, id]`.
pub(crate) fn with_ack_id(event: &str, id: u64) -> String {
    let body = event.strip_suffix(']').unwrap_or(event);
    format!("{body},{id}]")
}

impl<R: Runtime> HubBuilder<R> {
    /// Connects the hub to other nodes through `backplane` ([`MemoryCluster`](super::MemoryCluster)
    /// in one process, `ferrule-redis` across processes): emits reach their recipients on every
    /// node, acknowledgements come back from them, and [`Hub::cluster`] answers for the whole
    /// cluster. The hub's own calls ([`Hub::len`], [`Hub::get`], ...) stay local.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.cluster = Some(ClusterConfig {
            backplane: Arc::new(backplane),
            heartbeat: HEARTBEAT,
            dead_after: DEAD_AFTER,
            timeout: TIMEOUT,
        });
        self
    }

    /// How often the hub tells the other nodes it is alive (default 5 s), and after how long
    /// without a frame from a node its connections leave the cluster-wide views (default 15 s,
    /// three heartbeats; it should be at least two). No effect without a backplane.
    pub fn heartbeat(mut self, interval: Duration, dead_after: Duration) -> Self {
        if let Some(cluster) = &mut self.cluster {
            cluster.heartbeat = interval;
            cluster.dead_after = dead_after;
        }
        self
    }

    /// How long a cluster-wide query waits for the other nodes' answers, and an acknowledged
    /// emit for the other nodes' lists of recipients (default 2 s). No effect without a
    /// backplane.
    pub fn cluster_timeout(mut self, timeout: Duration) -> Self {
        if let Some(cluster) = &mut self.cluster {
            cluster.timeout = timeout;
        }
        self
    }
}

impl<R: Runtime> Hub<R> {
    /// Connects a freshly built hub to its backplane: its inbox, and the heartbeat task.
    pub(crate) fn start_cluster(&self) {
        let Some(cluster) = &self.inner.cluster else { return };
        let weak = Arc::downgrade(&self.inner);
        cluster.config.backplane.start(Inbox(Arc::new(move |frame: &[u8]| {
            if let Some(inner) = weak.upgrade() {
                Hub { inner }.receive(frame);
            }
        })));
        let weak = Arc::downgrade(&self.inner);
        let runtime = self.inner.runtime.clone();
        let interval = cluster.config.heartbeat;
        self.inner.runtime.spawn(async move {
            loop {
                let next = {
                    let Some(inner) = weak.upgrade() else { return };
                    let Some(cluster) = &inner.cluster else { return };
                    cluster.publish(&Body::Heartbeat, &[]);
                    inner.runtime.now() + interval
                };
                runtime.sleep_until(next).await;
            }
        });
    }

    /// Publishes a local emit to the other nodes (nothing without a backplane, or when the
    /// target is one connection of this node). `ack`: the emit's ack id and collector, which
    /// then also waits for the other nodes' lists of recipients.
    pub(crate) fn publish_emit(
        &self,
        target: &Target,
        message: &PreparedMessage,
        ack: Option<(u64, &Arc<Collector>, Duration)>,
    ) {
        let Some(cluster) = &self.inner.cluster else { return };
        if let Some([room]) = target.rooms.as_deref() {
            if self.registry().get(room).is_some() {
                return;
            }
        }
        let strings = |rooms: &[Arc<str>]| rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let remote_ack = ack.map(|(id, collector, timeout)| {
            let alive = cluster.alive(self.inner.runtime.now());
            collector.expect_nodes(alive.len());
            let mut acks = cluster.acks();
            acks.retain(|_, c| c.strong_count() > 0);
            acks.insert(id, Arc::downgrade(collector));
            RemoteAck { id, timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) }
        });
        let body = Body::Emit {
            rooms: target.rooms.as_deref().map(strings),
            except: strings(&target.except),
            binary: message.kind() == ferrule_core::MessageKind::Binary,
            ack: remote_ack,
        };
        cluster.publish(&body, message.payload());
    }

    /// A frame from the backplane.
    fn receive(&self, frame: &[u8]) {
        let Some(cluster) = &self.inner.cluster else { return };
        let Some((header, payload)) = decode(frame) else {
            cluster.counters.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(len = frame.len(), "backplane frame that does not decode");
            return;
        };
        if header.from == cluster.me() {
            return;
        }
        cluster.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        let new = cluster.heard(&header, self.inner.runtime.now());
        match header.body {
            // A node heard for the first time learns of this one at once, not at its next
            // heartbeat.
            Body::Heartbeat if new => cluster.send_to(&header.from, Body::Heartbeat),
            Body::Heartbeat => {}
            Body::Bye => {
                let gone = cluster.nodes().remove(&header.from);
                if let Some(node) = gone {
                    cluster.retire(&node.numbering);
                }
            }
            Body::Emit { rooms, except, binary, ack } => {
                let arcs = |rooms: Vec<String>| rooms.into_iter().map(Arc::from).collect::<Vec<Arc<str>>>();
                let target = Target { rooms: rooms.map(arcs), except: arcs(except) };
                self.deliver_remote(&header.from, &target, binary, payload, ack);
            }
            Body::AckExpect { ack, ids } => {
                let collector = cluster.acks().get(&ack).and_then(Weak::upgrade);
                if let Some(collector) = collector {
                    collector.node_expects(ids.into_iter().map(ConnId::from).collect());
                }
            }
            Body::AckReply { ack, id, reply } => {
                let collector = cluster.acks().get(&ack).and_then(Weak::upgrade);
                if let Some(collector) = collector {
                    let reply = reply.map_err(|e| match e {
                        WireAckError::Disconnected => AckError::Disconnected,
                        WireAckError::NotSent => AckError::NotSent,
                        WireAckError::Refused(reason) => AckError::Refused(reason),
                    });
                    collector.complete_remote(ConnId::from(id), reply);
                }
            }
            Body::Request { id, op } => {
                let answer = self.answer(op);
                cluster.send_to(&header.from, Body::Response { id, answer });
            }
            Body::Response { id, answer } => {
                let gather = cluster.requests().get(&id).cloned();
                if let Some(gather) = gather {
                    gather.answer(&header.from, answer);
                }
            }
        }
    }

    /// Delivers another node's emit here: the message is made once for this node.
    fn deliver_remote(&self, from: &str, target: &Target, binary: bool, payload: &[u8], ack: Option<RemoteAck>) {
        let Some(cluster) = &self.inner.cluster else { return };
        let text = || String::from_utf8_lossy(payload).into_owned();
        let Some(remote) = ack else {
            let message = if binary {
                PreparedMessage::binary(Bytes::copy_from_slice(payload))
            } else {
                PreparedMessage::text(text())
            };
            self.deliver(target, &message, None);
            return;
        };
        // The emit asks for replies: this node gives it an ack id of its own (so that it cannot
        // clash with the ids of its own emits), and passes each reply back to the emitter.
        let local_id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let message = PreparedMessage::text(with_ack_id(&text(), local_id));
        let (hub, origin) = (Arc::downgrade(&self.inner), from.to_owned());
        let collector = Arc::new(Collector::forwarding(Box::new(move |id: &ConnId, reply: &RawReply| {
            let reply = match reply {
                Ok(json) => Ok(json.clone()),
                Err(AckError::NotSent) => Err(WireAckError::NotSent),
                Err(AckError::Refused(reason)) => Err(WireAckError::Refused(reason.clone())),
                Err(_) => Err(WireAckError::Disconnected),
            };
            if let Some(cluster) = hub.upgrade().as_ref().and_then(|inner| inner.cluster.as_ref()) {
                cluster.send_to(&origin, Body::AckReply { ack: remote.id, id: id.to_string(), reply });
            }
        })));
        let mut ids = Vec::new();
        self.registry().for_each_recipient(target, |id, _| ids.push(id.to_string()));
        self.deliver(target, &message, Some((local_id, &collector)));
        cluster.send_to(from, Body::AckExpect { ack: remote.id, ids });
        // At the emitter's timeout, this node stops waiting too.
        let runtime = self.inner.runtime.clone();
        let deadline = runtime.now() + Duration::from_millis(remote.timeout_ms);
        self.inner.runtime.spawn(async move {
            runtime.sleep_until(deadline).await;
            collector.finish(local_id);
        });
    }

    /// This node's answer to a cluster-wide request.
    fn answer(&self, op: Op) -> Answer {
        match op {
            Op::Count => Answer::Count(self.len()),
            Op::Members(room) => Answer::Members(self.sockets_in(&room).iter().map(|s| s.id().to_string()).collect()),
            Op::IsConnected(id) => Answer::Yes(self.is_connected(&id)),
            Op::Disconnect(id, code, reason) => {
                Answer::Yes(self.disconnect(&id, CloseCode::from(code), &reason).unwrap_or(false))
            }
            Op::Join(id, room) => Answer::Yes(self.join(&id, &room)),
            Op::Leave(id, room) => Answer::Yes(self.leave(&id, &room)),
        }
    }

    /// The whole cluster's view: counts, members, connections and changes to them on whichever
    /// node holds them. Without a backplane, the same answers for this hub alone.
    pub fn cluster(&self) -> Cluster<R> {
        Cluster { hub: self.clone() }
    }
}

impl<R: Runtime> Drop for Inner<R> {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(&Body::Bye, &[]);
        }
    }
}

/// Cluster-wide queries and changes (from [`Hub::cluster`]): each asks every other node believed
/// alive and waits up to the cluster timeout (on the hub's runtime clock) for their answers.
/// A node that does not answer in time is named in the result's [`Partial::missing`], and left
/// out of its value.
#[derive(Debug, Clone)]
pub struct Cluster<R: Runtime> {
    hub: Hub<R>,
}

impl<R: Runtime> Cluster<R> {
    /// The other nodes believed alive now (heard from within the heartbeat bound), sorted.
    pub fn nodes(&self) -> Vec<String> {
        self.hub.inner.cluster.as_ref().map(|c| c.alive(self.hub.inner.runtime.now())).unwrap_or_default()
    }

    /// How many connections the cluster has.
    pub async fn len(&self) -> Partial<usize> {
        let (answers, missing) = self.ask(Op::Count).await;
        let remote: usize = answers.iter().map(|a| if let Answer::Count(n) = a { *n } else { 0 }).sum();
        Partial { value: self.hub.len() + remote, missing }
    }

    /// The ids of the members of `room` on every node, sorted.
    pub async fn sockets_in(&self, room: &str) -> Partial<Vec<ConnId>> {
        let (answers, missing) = self.ask(Op::Members(room.to_owned())).await;
        let mut ids: Vec<ConnId> = self.hub.sockets_in(room).iter().map(|s| s.id().clone()).collect();
        for answer in answers {
            if let Answer::Members(members) = answer {
                ids.extend(members.into_iter().map(ConnId::from));
            }
        }
        ids.sort_unstable();
        Partial { value: ids, missing }
    }

    /// Whether a connection with id `id` is on any node (answered at once when it is on this one).
    pub async fn is_connected(&self, id: &str) -> Partial<bool> {
        if self.hub.is_connected(id) {
            return Partial { value: true, missing: Vec::new() };
        }
        self.any(Op::IsConnected(id.to_owned())).await
    }

    /// Closes the connection `id` with `code` and `reason` on whichever node holds it; `true`
    /// when one did. A code that may not be sent closes nothing (`false`).
    pub async fn disconnect(&self, id: &str, code: CloseCode, reason: &str) -> Partial<bool> {
        if self.hub.is_connected(id) {
            return Partial { value: self.hub.disconnect(id, code, reason).unwrap_or(false), missing: Vec::new() };
        }
        self.any(Op::Disconnect(id.to_owned(), code.as_u16(), reason.to_owned())).await
    }

    /// Puts the connection `id` in `room` on whichever node holds it; `true` when it was not in it.
    pub async fn join(&self, id: &str, room: &str) -> Partial<bool> {
        if self.hub.is_connected(id) {
            return Partial { value: self.hub.join(id, room), missing: Vec::new() };
        }
        self.any(Op::Join(id.to_owned(), room.to_owned())).await
    }

    /// Takes the connection `id` out of `room` on whichever node holds it (with that node's
    /// on-leave callbacks); `true` when it was in it.
    pub async fn leave(&self, id: &str, room: &str) -> Partial<bool> {
        if self.hub.is_connected(id) {
            return Partial { value: self.hub.leave(id, room), missing: Vec::new() };
        }
        self.any(Op::Leave(id.to_owned(), room.to_owned())).await
    }

    async fn any(&self, op: Op) -> Partial<bool> {
        let (answers, missing) = self.ask(op).await;
        Partial { value: answers.iter().any(|a| matches!(a, Answer::Yes(true))), missing }
    }

    /// Publishes `op` and waits for the answers of the nodes alive now.
    async fn ask(&self, op: Op) -> (Vec<Answer>, Vec<String>) {
        let inner = &self.hub.inner;
        let Some(cluster) = &inner.cluster else { return (Vec::new(), Vec::new()) };
        let now = inner.runtime.now();
        let alive = cluster.alive(now);
        if alive.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let id = cluster.next_request.fetch_add(1, Ordering::Relaxed);
        let gather = Arc::new(Gather::new(alive));
        cluster.requests().insert(id, gather.clone());
        cluster.publish(&Body::Request { id, op }, &[]);
        let deadline = now + cluster.config.timeout;
        let waiting = Waiting { gather: &gather, sleep: Box::pin(inner.runtime.sleep_until(deadline)) };
        waiting.await;
        cluster.requests().remove(&id);
        gather.take()
    }
}

/// The answers to one request, by node.
struct Gather {
    state: Mutex<GatherState>,
}

struct GatherState {
    waiting: Vec<String>,
    answers: Vec<Answer>,
    waker: Option<Waker>,
}

impl Gather {
    fn new(nodes: Vec<String>) -> Self {
        Self { state: Mutex::new(GatherState { waiting: nodes, answers: Vec::new(), waker: None }) }
    }

    fn lock(&self) -> MutexGuard<'_, GatherState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self, node: &str, answer: Answer) {
        let mut state = self.lock();
        let Some(at) = state.waiting.iter().position(|n| n == node) else { return };
        state.waiting.swap_remove(at);
        state.answers.push(answer);
        if state.waiting.is_empty() {
            if let Some(w) = state.waker.take() {
                w.wake();
            }
        }
    }

    /// The answers, and the nodes that did not answer (sorted).
    fn take(&self) -> (Vec<Answer>, Vec<String>) {
        let mut state = self.lock();
        let mut missing = std::mem::take(&mut state.waiting);
        missing.sort_unstable();
        (std::mem::take(&mut state.answers), missing)
    }
}

/// Until every node answered or the deadline.
struct Waiting<'a, S> {
    gather: &'a Gather,
    sleep: Pin<Box<S>>,
}

impl<S: Future<Output = ()>> Future for Waiting<'_, S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut state = self.gather.lock();
            if state.waiting.is_empty() {
                return Poll::Ready(());
            }
            store_waker(&mut state.waker, cx.waker());
        }
        self.sleep.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncated_ones_do_not_decode() {
        let header = Header { from: "a".into(), boot: 1, seq: 7, direct: false, body: Body::Heartbeat };
        let frame = encode(&header, b"payload");
        let (back, payload) = decode(&frame).expect("decodes");
        assert_eq!((back.from.as_str(), back.seq, payload), ("a", 7, &b"payload"[..]));
        for end in 0..frame.len() - b"payload".len() {
            assert!(decode(&frame[..end]).is_none(), "{end}");
        }
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, b'{']).is_none());
        assert!(decode(b"\0\0\0\x02{}").is_none(), "a header without its fields");
    }

    #[test]
    fn a_remote_reply_that_overtakes_its_nodes_list_counts_once() {
        let collector = Collector::default();
        collector.expect_nodes(2);
        let (x, y) = (ConnId::from("x"), ConnId::from("y"));
        collector.complete_remote(x.clone(), Ok("1".into()));
        collector.node_expects(vec![x.clone(), y.clone()]);
        collector.node_expects(vec![]);
        collector.complete_remote(y.clone(), Err(AckError::NotSent));
        collector.complete_remote(y.clone(), Ok("late".into()));
        let replies = collector.finish(1);
        assert_eq!(replies, [(x, Ok("1".to_owned())), (y, Err(AckError::NotSent))]);
        // After the end, nothing is added.
        collector.node_expects(vec![ConnId::from("z")]);
        collector.complete_remote(ConnId::from("z"), Ok("2".into()));
        assert!(collector.finish(1).is_empty());
    }

    #[test]
    fn frames_lost_are_the_numbers_missing_whatever_the_order_and_a_restart_counts_afresh() {
        let cluster = ClusterState::new(ClusterConfig {
            backplane: Arc::new(super::super::MemoryCluster::new().node("me")),
            heartbeat: HEARTBEAT,
            dead_after: DEAD_AFTER,
            timeout: TIMEOUT,
        });
        let now = Instant::now();
        let frame = |boot, seq, direct| Header { from: "a".into(), boot, seq, direct, body: Body::Heartbeat };
        assert!(cluster.heard(&frame(1, 3, true), now), "a new node");
        for seq in [5, 4, 9, 7, 6] {
            assert!(!cluster.heard(&frame(1, seq, false), now));
        }
        assert_eq!(cluster.lost(), 1, "8 never came; 1 to 3 were before this node heard of a");
        assert!(cluster.heard(&frame(2, 1, false), now), "a restarted");
        cluster.heard(&frame(2, 3, false), now);
        assert_eq!(cluster.lost(), 2, "8 of the first a, 2 of the second");
    }

    #[test]
    fn ack_id_is_added_as_the_last_element() {
        assert_eq!(with_ack_id(r#"["ev",{"a":[1]}]"#, 42), r#"["ev",{"a":[1]},42]"#);
    }
}
