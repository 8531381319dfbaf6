//! A Redis backplane for ferrule's hub: several servers behind a load balancer serve one set of
//! rooms, emits, acknowledgements and cluster-wide queries (see the hub's
//! [scale-out](ferrule::hub#scale-out) section for what the cluster guarantees).
//!
//! ```no_run
//! use ferrule::hub::Hub;
//! use ferrule_redis::{RedisBackplane, RedisConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Inside a tokio runtime; every node connects to the same Redis with a name of its own.
//! let backplane = RedisBackplane::new(RedisConfig::new("redis://127.0.0.1:6379/", "node-1"))?;
//! let hub = Hub::builder(ferrule_tokio::Tokio).backplane(backplane).build();
//! # let _ = hub;
//! # Ok(())
//! # }
//! ```
//!
//! On smol or async-std, [`RedisBackplane::with_runtime`] takes the hub's runtime (with the
//! crate's matching feature, see [Runtimes](#runtimes)):
//!
//! ```no_run
//! use ferrule::hub::Hub;
//! use ferrule_redis::{RedisBackplane, RedisConfig};
//! use ferrule_smol::Smol;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisConfig::new("redis://127.0.0.1:6379/", "node-1");
//! let hub = Hub::builder(Smol).backplane(RedisBackplane::with_runtime(Smol, config)?).build();
//! # let _ = hub;
//! # Ok(())
//! # }
//! ```
//!
//! # How it uses Redis
//!
//! Each node holds **one** connection to Redis (RESP3, redis-rs's multiplexed connection),
//! whatever its number of WebSocket clients, subscribed to two channels: `<prefix>:all`, where
//! every node publishes its emits, heartbeats and cluster-wide requests, and
//! `<prefix>:node:<name>`, where the others send it answers and acknowledgements. An emit is one
//! `PUBLISH` of one frame, encoded once, whatever its number of recipients and nodes; frames
//! queued together go out in one pipeline. With [`PubSub::Sharded`], the same channels are used
//! through Redis 7's `SSUBSCRIBE` and `SPUBLISH`.
//!
//! # Redis Cluster
//!
//! With the `cluster` feature (off by default: it builds redis-rs's cluster client),
//! `RedisConfig::cluster` takes the address of one master or more and uses sharded pub/sub,
//! where a channel's messages stay on the shard that owns its hash slot (plain pub/sub on a
//! Redis Cluster broadcasts every message to every node of every shard). The cluster client
//! finds the masters from the seeds and keeps one connection to each; each channel is
//! subscribed on its shard, and each batch of frames goes out as one pipeline per channel (a
//! pipeline reaches one shard). The channel every node publishes on lives on one shard, the
//! nodes' own channels on the shards their names hash to.
//!
//! ```no_run
//! # #[cfg(feature = "cluster")]
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrule_redis::{RedisBackplane, RedisConfig};
//!
//! // Inside a tokio runtime.
//! let seeds = ["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"];
//! let backplane = RedisBackplane::new(RedisConfig::cluster(seeds, "node-1"))?;
//! # let _ = backplane;
//! # Ok(())
//! # }
//! ```
//!
//! # When Redis goes away
//!
//! Redis pub/sub delivers at most once, and so does the backplane. While the connection is down,
//! local delivery carries on untouched; frames this node publishes meanwhile are dropped
//! (counted in [`RedisStats::dropped`]), and frames the others publish never reach it (the hub
//! counts them in `HubStats::remote_lost` once the connection is back, from the gaps in each
//! node's numbering). The node reconnects with exponential backoff (from
//! [`RedisConfig::backoff`]'s minimum, doubling up to its maximum) and subscribes again. The
//! queue of frames waiting for Redis is bounded ([`RedisConfig::queue`]); a frame that finds it
//! full is dropped and counted, so a slow Redis never slows down an emit. On a Redis Cluster,
//! the loss of the connection to any master counts as the loss of Redis: the node connects to
//! the cluster again, as a whole.
//!
//! # Runtimes
//!
//! Two things run: the backplane's own task (its queue, its backoff timer), on the runtime the
//! backplane is given, and redis-rs's connection (its socket, the task that reads it, its
//! timeouts), on the runtime of redis-rs's that a feature of this crate turns on:
//!
//! | feature | redis-rs | made with |
//! |---|---|---|
//! | `tokio` (default) | `tokio-comp` | [`RedisBackplane::new`] inside a tokio runtime, or [`RedisBackplane::with_runtime`]`(ferrule_tokio::Tokio, ...)` |
//! | `smol` | `smol-comp`: async-io's reactor and smol's global executor | [`RedisBackplane::with_runtime`]`(ferrule_smol::Smol, ...)` |
//! | `async-std` | `async-std-comp` | [`RedisBackplane::with_runtime`]`(ferrule_async_std::AsyncStd, ...)` |
//!
//! Take the feature of the hub's runtime, and `default-features = false` off tokio:
//! `ferrule-redis = { version = "0.1", default-features = false, features = ["smol"] }`. smol
//! and async-std share async-io, so either feature serves both (and `smol` needs no async-std:
//! use it for async-std too, async-std being discontinued upstream). With more than one feature
//! on, redis-rs runs on tokio inside a tokio runtime and otherwise on async-std if its feature
//! is on, else smol; `redis::aio::prefer_smol` (and its siblings) chooses once for the process.
//! The tests run tokio on `tokio-comp`, and smol and async-std on `smol-comp` and on
//! `async-std-comp`.
//!
//! With `tokio` as the only feature, redis-rs needs a tokio runtime: [`RedisBackplane::new`] and
//! [`RedisBackplane::with_runtime`] called outside one return [`RedisBackplaneError::NoRuntime`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use ferrule::Runtime;
use ferrule::hub::{Backplane, Inbox};
use futures_util::future::{Either, select};
use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};

/// Plain or sharded pub/sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PubSub {
    /// `SUBSCRIBE` and `PUBLISH` (any Redis).
    #[default]
    Plain,
    /// `SSUBSCRIBE` and `SPUBLISH` (Redis 7 and later).
    Sharded,
}

/// Where the Redis is: one server, or a Redis Cluster's seed nodes.
#[derive(Debug, Clone)]
enum Servers {
    One(String),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

/// How a node connects to Redis. [`RedisConfig::new`] takes the URL and the node's name; the
/// rest has defaults.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    servers: Servers,
    node: String,
    prefix: String,
    pubsub: PubSub,
    backoff: (Duration, Duration),
    queue: usize,
}

impl RedisConfig {
    /// A node named `node` (unique in the cluster) on the Redis at `url`
    /// (`redis://host:port/`; RESP3 is asked for by the backplane).
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self::on(Servers::One(url.into()), node.into(), PubSub::Plain)
    }

    /// A node named `node` (unique in the cluster) on the Redis Cluster whose nodes include
    /// `seeds` (`redis://host:port/` each; one is enough, the others are found from it), through
    /// redis-rs's cluster client, with sharded pub/sub ([`PubSub::Sharded`]) unless
    /// [`pubsub`](Self::pubsub) says otherwise. Feature `cluster`.
    ///
    /// Each channel lives on the shard that owns its hash slot: the channel every node
    /// publishes on is on one shard, each node's own channel on the shard its name hashes to.
    #[cfg(feature = "cluster")]
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>, node: impl Into<String>) -> Self {
        Self::on(Servers::Cluster(seeds.into_iter().map(Into::into).collect()), node.into(), PubSub::Sharded)
    }

    fn on(servers: Servers, node: String, pubsub: PubSub) -> Self {
        Self {
            servers,
            node,
            prefix: "ferrule".to_owned(),
            pubsub,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            queue: 16 * 1024,
        }
    }

    /// The prefix of the channel names (default `ferrule`): clusters sharing a Redis need
    /// different ones.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Plain or sharded pub/sub (default plain on one server, sharded on a Redis Cluster).
    pub fn pubsub(mut self, pubsub: PubSub) -> Self {
        self.pubsub = pubsub;
        self
    }

    /// The wait before reconnecting after a failure: from `min`, doubling up to `max` (default
    /// 100 ms to 5 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max.max(min));
        self
    }

    /// How many frames may wait for Redis (default 16384); more are dropped and counted.
    pub fn queue(mut self, frames: usize) -> Self {
        self.queue = frames.max(1);
        self
    }

    fn channel_all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    fn channel_of(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
}

/// `url` with RESP3 asked for (push messages need it), unless it names a protocol itself.
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// Why a backplane could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisBackplaneError {
    /// The URL is not a Redis URL (or, for a Redis Cluster, there is no seed).
    Url(redis::RedisError),
    /// Outside a tokio runtime, where one is needed: [`RedisBackplane::new`], or
    /// [`RedisBackplane::with_runtime`] when `tokio` is the crate's only runtime feature
    /// (redis-rs then runs on tokio).
    NoRuntime,
}

impl fmt::Display for RedisBackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => write!(f, "not a Redis URL: {e}"),
            Self::NoRuntime => f.write_str(
                "not inside a tokio runtime, which the Redis backplane needs here (RedisBackplane::new, or ferrule-redis \
                 with the `tokio` feature alone: add `smol` or `async-std` for the other runtimes)",
            ),
        }
    }
}

impl std::error::Error for RedisBackplaneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Url(e) => Some(e),
            Self::NoRuntime => None,
        }
    }
}

/// What the backplane did, from [`RedisBackplane::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Whether the connection to Redis is up and subscribed now.
    pub connected: bool,
    /// Connections made (the first one included).
    pub connects: u64,
    /// Frames written to Redis.
    pub written: u64,
    /// Frames dropped: published while Redis was unreachable, or past the queue's bound.
    pub dropped: u64,
    /// Frames read from Redis.
    pub read: u64,
}

/// A [`Backplane`] through Redis pub/sub. Give it to one hub ([`HubBuilder::backplane`]); a
/// clone's [`stats`](Self::stats) watches it afterwards.
///
/// [`HubBuilder::backplane`]: ferrule::hub::HubBuilder::backplane
#[derive(Clone)]
pub struct RedisBackplane {
    shared: Arc<Shared>,
}

/// Starts the backplane's task on the runtime it was made for.
type Starter = Box<dyn FnOnce(Weak<Shared>) + Send>;

struct Shared {
    config: RedisConfig,
    client: Client,
    queue: async_channel::Sender<Out>,
    starter: Mutex<Option<Starter>>,
    inbox: OnceLock<Inbox>,
    connected: AtomicBool,
    connects: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    read: AtomicU64,
}

/// redis-rs's client for one server or for a Redis Cluster. The cluster's client is made at
/// each connection, as its push handler (which feeds this backplane) is part of it.
#[derive(Clone)]
enum Client {
    One(redis::Client),
    #[cfg(feature = "cluster")]
    Cluster(Vec<redis::ConnectionInfo>),
}

/// A frame waiting for Redis, with its channel.
struct Out {
    channel: String,
    frame: Bytes,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane").field("node", &self.shared.config.node).field("stats", &self.stats()).finish()
    }
}

impl RedisBackplane {
    /// A backplane for the node `config` names, on the current tokio runtime. It connects once
    /// the hub starts it (and keeps trying until Redis answers). Feature `tokio` (default).
    ///
    /// # Errors
    ///
    /// [`RedisBackplaneError`]: a URL that is not Redis's, or no tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn new(config: RedisConfig) -> Result<Self, RedisBackplaneError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| RedisBackplaneError::NoRuntime)?;
        Self::with_runtime(TokioHandle(handle), config)
    }

    /// A backplane for the node `config` names, whose task runs on `runtime`: the hub's
    /// runtime (`ferrule_tokio::Tokio`, `ferrule_smol::Smol`, `ferrule_async_std::AsyncStd`).
    /// It connects once the hub starts it (and keeps trying until Redis answers); redis-rs's
    /// own tasks run on the runtime its feature names (see [Runtimes](crate#runtimes)).
    ///
    /// # Errors
    ///
    /// [`RedisBackplaneError`]: a URL that is not Redis's; with `tokio` as the crate's only
    /// runtime feature, no tokio runtime.
    pub fn with_runtime<R: Runtime>(runtime: R, config: RedisConfig) -> Result<Self, RedisBackplaneError> {
        // redis-rs on tokio alone would panic at its first connection.
        #[cfg(all(feature = "tokio", not(any(feature = "smol", feature = "async-std"))))]
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisBackplaneError::NoRuntime);
        }
        let client = match &config.servers {
            Servers::One(url) => Client::One(redis::Client::open(resp3(url)).map_err(RedisBackplaneError::Url)?),
            #[cfg(feature = "cluster")]
            Servers::Cluster(seeds) => {
                let seeds: Vec<redis::ConnectionInfo> = seeds
                    .iter()
                    .map(|url| redis::IntoConnectionInfo::into_connection_info(resp3(url)))
                    .collect::<Result<_, _>>()
                    .map_err(RedisBackplaneError::Url)?;
                // The cluster client's own checks (at least one seed, ...) now, not at each
                // connection.
                redis::cluster::ClusterClient::new(seeds.clone()).map_err(RedisBackplaneError::Url)?;
                Client::Cluster(seeds)
            }
        };
        let (queue, receiver) = async_channel::bounded(config.queue);
        let starter: Starter = Box::new(move |shared| runtime.spawn(run(runtime.clone(), shared, receiver)));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                client,
                queue,
                starter: Mutex::new(Some(starter)),
                inbox: OnceLock::new(),
                connected: AtomicBool::new(false),
                connects: AtomicU64::new(0),
                written: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                read: AtomicU64::new(0),
            }),
        })
    }

    /// What the backplane did so far.
    pub fn stats(&self) -> RedisStats {
        let s = &self.shared;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisStats {
            connected: s.connected.load(Ordering::Relaxed),
            connects: get(&s.connects),
            written: get(&s.written),
            dropped: get(&s.dropped),
            read: get(&s.read),
        }
    }

    fn queue(&self, channel: String, frame: Bytes) {
        let s = &self.shared;
        // While Redis is away, a frame would only wait to be dropped: drop it now.
        if !s.connected.load(Ordering::Relaxed) || s.queue.try_send(Out { channel, frame }).is_err() {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Backplane for RedisBackplane {
    fn node(&self) -> &str {
        &self.shared.config.node
    }

    fn start(&self, inbox: Inbox) {
        let starter = self.shared.starter.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (Some(starter), Ok(())) = (starter, self.shared.inbox.set(inbox)) else {
            tracing::warn!("a Redis backplane serves one hub: started twice");
            return;
        };
        starter(Arc::downgrade(&self.shared));
    }

    fn publish(&self, frame: Bytes) {
        self.queue(self.shared.config.channel_all(), frame);
    }

    fn send_to(&self, node: &str, frame: Bytes) {
        self.queue(self.shared.config.channel_of(node), frame);
    }
}

/// The current tokio runtime, wherever [`RedisBackplane::new`] was called: its task is spawned
/// there even when the hub is built elsewhere.
#[cfg(feature = "tokio")]
#[derive(Clone)]
struct TokioHandle(tokio::runtime::Handle);

#[cfg(feature = "tokio")]
impl Runtime for TokioHandle {
    type Sleep = tokio::time::Sleep;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.into())
    }

    fn reset(&self, sleep: std::pin::Pin<&mut Self::Sleep>, deadline: std::time::Instant) {
        sleep.reset(deadline.into());
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        self.0.spawn(future);
    }
}

/// The most frames written in one pipeline.
const BATCH: usize = 256;

/// The connection's life: connect and subscribe, write what the hub queues, and on failure
/// wait (backoff) and start again. Ends when the backplane is dropped.
async fn run<R: Runtime>(runtime: R, shared: Weak<Shared>, receiver: async_channel::Receiver<Out>) {
    let mut backoff: Option<Duration> = None;
    loop {
        if let Some(wait) = backoff {
            runtime.sleep_until(runtime.now() + wait).await;
        }
        let Some((min, max)) = shared.upgrade().map(|s| s.config.backoff) else { return };
        backoff = match serve(&shared, &receiver).await {
            Ended::Dropped => return,
            Ended::Lost => Some(min),
            Ended::Unreachable => Some(backoff.map_or(min, |wait| (wait * 2).min(max))),
        };
    }
}

/// How a connection ended.
enum Ended {
    /// The backplane was dropped.
    Dropped,
    /// It was up, and went away.
    Lost,
    /// It could not be made.
    Unreachable,
}

/// How long a connection may take to be made, and a command to be answered.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One connection: made, subscribed, then writing the queued frames until it fails.
async fn serve(shared: &Weak<Shared>, receiver: &async_channel::Receiver<Out>) -> Ended {
    let Some(s) = shared.upgrade() else { return Ended::Dropped };
    let (lost, gone) = async_channel::bounded(1);
    let push = pusher(&s, lost);
    match s.client.clone() {
        Client::One(client) => {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(TIMEOUT)
                .set_response_timeout(TIMEOUT)
                .set_push_sender(push);
            let connection = client.get_multiplexed_async_connection_with_config(&config).await;
            pump(s, shared, receiver, connection, gone, false).await
        }
        #[cfg(feature = "cluster")]
        Client::Cluster(seeds) => {
            let connection = async {
                redis::cluster::ClusterClientBuilder::new(seeds)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .push_sender(push)
                    .build()?
                    .get_async_connection()
                    .await
            }
            .await;
            // Commands go to their channel's shard: one pipeline per channel.
            pump(s, shared, receiver, connection, gone, true).await
        }
    }
}

/// Subscribes on `connection`, then writes the queued frames to it until it fails (a failed
/// write, or `gone`: redis-rs saw it close).
async fn pump<C: ConnectionLike + Send>(
    s: Arc<Shared>,
    shared: &Weak<Shared>,
    receiver: &async_channel::Receiver<Out>,
    connection: redis::RedisResult<C>,
    gone: async_channel::Receiver<()>,
    by_channel: bool,
) -> Ended {
    let subscribed = match connection {
        Ok(mut connection) => subscribe(&s.config, &mut connection).await.map(|()| connection),
        Err(e) => Err(e),
    };
    let mut connection = match subscribed {
        Ok(connection) => connection,
        Err(e) => {
            tracing::warn!(node = %s.config.node, error = %e, "Redis unreachable");
            return Ended::Unreachable;
        }
    };
    s.connects.fetch_add(1, Ordering::Relaxed);
    s.connected.store(true, Ordering::Relaxed);
    tracing::info!(node = %s.config.node, "connected to Redis");
    let command = match s.config.pubsub {
        PubSub::Plain => "PUBLISH",
        PubSub::Sharded => "SPUBLISH",
    };
    drop(s);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = {
            let lost = std::pin::pin!(gone.recv());
            let next = std::pin::pin!(receiver.recv());
            // The loss first: frames queued meanwhile cannot go out on a connection that is gone.
            match select(lost, next).await {
                Either::Left(_) => break,
                Either::Right((next, _)) => next,
            }
        };
        let Ok(first) = next else { return Ended::Dropped };
        batch.push(first);
        while batch.len() < BATCH {
            let Ok(out) = receiver.try_recv() else { break };
            batch.push(out);
        }
        let n = batch.len() as u64;
        // Written even when the backplane is gone meanwhile: its hub's goodbye is among the
        // last frames.
        let result = write(&mut connection, command, &mut batch, by_channel).await;
        let Some(s) = shared.upgrade() else { continue };
        if let Err(e) = result {
            tracing::warn!(node = %s.config.node, error = %e, "writing to Redis failed");
            s.dropped.fetch_add(n, Ordering::Relaxed);
            break;
        }
        s.written.fetch_add(n, Ordering::Relaxed);
    }
    let Some(s) = shared.upgrade() else { return Ended::Dropped };
    s.connected.store(false, Ordering::Relaxed);
    // What was queued before the loss cannot go out on a connection that is gone.
    let mut stale = 0;
    while receiver.try_recv().is_ok() {
        stale += 1;
    }
    s.dropped.fetch_add(stale, Ordering::Relaxed);
    tracing::warn!(node = %s.config.node, "lost the connection to Redis; reconnecting");
    Ended::Lost
}

/// Writes `batch` (and empties it) in one pipeline, or, `by_channel` (Redis Cluster, where a
/// pipeline goes to one shard), in one pipeline per channel, each channel's frames in order.
async fn write<C: ConnectionLike>(
    connection: &mut C,
    command: &str,
    batch: &mut Vec<Out>,
    by_channel: bool,
) -> redis::RedisResult<()> {
    while !batch.is_empty() {
        let channel = batch[0].channel.clone();
        let mut pipe = redis::pipe();
        batch.retain(|out| {
            let here = !by_channel || out.channel == channel;
            if here {
                pipe.cmd(command).arg(&out.channel).arg(&out.frame[..]).ignore();
            }
            !here
        });
        let result = pipe.exec_async(connection).await;
        if result.is_err() {
            batch.clear();
        }
        result?;
    }
    Ok(())
}

/// Subscribes to the node's two channels.
async fn subscribe<C: ConnectionLike>(config: &RedisConfig, connection: &mut C) -> redis::RedisResult<()> {
    let channels = [config.channel_all(), config.channel_of(&config.node)];
    let command = match config.pubsub {
        PubSub::Plain => "SUBSCRIBE",
        PubSub::Sharded => "SSUBSCRIBE",
    };
    // One command per channel: on Redis Cluster, the two may live on different shards.
    for channel in &channels {
        redis::cmd(command).arg(channel).exec_async(connection).await?;
    }
    Ok(())
}

/// What redis-rs calls with each push message: frames from the subscriptions go to the hub's
/// inbox, and the connection's end to `lost`.
fn pusher(
    s: &Arc<Shared>,
    lost: async_channel::Sender<()>,
) -> impl Fn(PushInfo) -> Result<(), std::convert::Infallible> + Send + Sync + 'static {
    let weak = Arc::downgrade(s);
    move |info: PushInfo| {
        let Some(s) = weak.upgrade() else { return Ok(()) };
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                if let Some(Value::BulkString(frame)) = info.data.get(1) {
                    s.read.fetch_add(1, Ordering::Relaxed);
                    if let Some(inbox) = s.inbox.get() {
                        inbox.deliver(frame);
                    }
                }
            }
            PushKind::Disconnection => {
                let _ = lost.try_send(());
            }
            _ => {}
        }
        Ok(())
    }
}
