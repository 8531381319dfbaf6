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
//! # How it uses Redis
//!
//! Each node holds **one** connection to Redis (RESP3, redis-rs's multiplexed connection),
//! whatever its number of WebSocket clients, subscribed to two channels: `<prefix>:all`, where
//! every node publishes its emits, heartbeats and cluster-wide requests, and
//! `<prefix>:node:<name>`, where the others send it answers and acknowledgements. An emit is one
//! `PUBLISH` of one frame, encoded once, whatever its number of recipients and nodes; frames
//! queued together go out in one pipeline. With [`PubSub::Sharded`], the same channels are used
//! through Redis 7's `SSUBSCRIBE` and `SPUBLISH` (for Redis Cluster, where plain pub/sub
//! broadcasts every message to every shard).
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
//! full is dropped and counted, so a slow Redis never slows down an emit.
//!
//! # Runtimes
//!
//! The backplane runs on tokio (redis-rs's `tokio-comp`): build it inside a tokio runtime. Hubs
//! on smol or async-std are not served yet; redis-rs's `smol-comp` and `async-std-comp` features
//! would carry the same code with a spawn and a timer of those runtimes.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use ferrule::hub::{Backplane, Inbox};
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};

/// Plain or sharded pub/sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PubSub {
    /// `SUBSCRIBE` and `PUBLISH` (any Redis).
    #[default]
    Plain,
    /// `SSUBSCRIBE` and `SPUBLISH` (Redis 7 and later).
    Sharded,
}

/// How a node connects to Redis. [`RedisConfig::new`] takes the URL and the node's name; the
/// rest has defaults.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    url: String,
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
        Self {
            url: url.into(),
            node: node.into(),
            prefix: "ferrule".to_owned(),
            pubsub: PubSub::Plain,
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

    /// Plain (default) or sharded pub/sub.
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

/// Why a backplane could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisBackplaneError {
    /// The URL is not a Redis URL.
    Url(redis::RedisError),
    /// Not inside a tokio runtime.
    NoRuntime,
}

impl fmt::Display for RedisBackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => write!(f, "not a Redis URL: {e}"),
            Self::NoRuntime => f.write_str("the Redis backplane must be made inside a tokio runtime"),
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

struct Shared {
    config: RedisConfig,
    client: redis::Client,
    runtime: tokio::runtime::Handle,
    queue: mpsc::Sender<Out>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<Out>>>,
    inbox: OnceLock<Inbox>,
    connected: AtomicBool,
    connects: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    read: AtomicU64,
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
    /// A backplane for the node `config` names. It connects once the hub starts it (and keeps
    /// trying until Redis answers).
    ///
    /// # Errors
    ///
    /// [`RedisBackplaneError`]: a URL that is not Redis's, or no tokio runtime.
    pub fn new(config: RedisConfig) -> Result<Self, RedisBackplaneError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RedisBackplaneError::NoRuntime)?;
        let url = if config.url.contains("protocol=") {
            config.url.clone()
        } else if config.url.contains('?') {
            format!("{}&protocol=resp3", config.url)
        } else {
            format!("{}?protocol=resp3", config.url)
        };
        let client = redis::Client::open(url).map_err(RedisBackplaneError::Url)?;
        let (queue, receiver) = mpsc::channel(config.queue);
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                client,
                runtime,
                queue,
                receiver: std::sync::Mutex::new(Some(receiver)),
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
        let receiver = self.shared.receiver.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (Some(receiver), Ok(())) = (receiver, self.shared.inbox.set(inbox)) else {
            tracing::warn!("a Redis backplane serves one hub: started twice");
            return;
        };
        let shared = Arc::downgrade(&self.shared);
        self.shared.runtime.spawn(run(shared, receiver));
    }

    fn publish(&self, frame: Bytes) {
        self.queue(self.shared.config.channel_all(), frame);
    }

    fn send_to(&self, node: &str, frame: Bytes) {
        self.queue(self.shared.config.channel_of(node), frame);
    }
}

/// The most frames written in one pipeline.
const BATCH: usize = 256;

/// The connection's life: connect and subscribe, write what the hub queues, and on failure
/// wait (backoff) and start again. Ends when the backplane is dropped.
async fn run(shared: Weak<Shared>, mut receiver: mpsc::Receiver<Out>) {
    let mut backoff: Option<Duration> = None;
    loop {
        if let Some(wait) = backoff {
            tokio::time::sleep(wait).await;
        }
        let Some((min, max)) = shared.upgrade().map(|s| s.config.backoff) else { return };
        backoff = match serve(&shared, &mut receiver).await {
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

/// One connection: made, subscribed, then writing the queued frames until it fails.
async fn serve(shared: &Weak<Shared>, receiver: &mut mpsc::Receiver<Out>) -> Ended {
    let Some(s) = shared.upgrade() else { return Ended::Dropped };
    let lost = Arc::new(Notify::new());
    let mut connection = match connect(&s, lost.clone()).await {
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
        tokio::select! {
            biased;
            () = lost.notified() => break,
            n = receiver.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return Ended::Dropped;
                }
                let mut pipe = redis::pipe();
                for out in &batch {
                    pipe.cmd(command).arg(&out.channel).arg(&out.frame[..]).ignore();
                }
                // Written even when the backplane is gone meanwhile: its hub's goodbye is among
                // the last frames.
                let result: redis::RedisResult<()> = pipe.query_async(&mut connection).await;
                batch.clear();
                let Some(s) = shared.upgrade() else { continue };
                if let Err(e) = result {
                    tracing::warn!(node = %s.config.node, error = %e, "writing to Redis failed");
                    s.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    break;
                }
                s.written.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
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

/// Connects with frames from the subscriptions going to the hub's inbox, and subscribes.
async fn connect(s: &Arc<Shared>, lost: Arc<Notify>) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let weak = Arc::downgrade(s);
    let push = move |info: PushInfo| -> Result<(), std::convert::Infallible> {
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
            PushKind::Disconnection => lost.notify_one(),
            _ => {}
        }
        Ok(())
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(Duration::from_secs(5))
        .set_push_sender(push);
    let mut connection = s.client.get_multiplexed_async_connection_with_config(&config).await?;
    let channels = [s.config.channel_all(), s.config.channel_of(&s.config.node)];
    match s.config.pubsub {
        PubSub::Plain => connection.subscribe(&channels).await?,
        PubSub::Sharded => {
            // One SSUBSCRIBE per channel: on Redis Cluster, the two may live on different shards.
            for channel in &channels {
                redis::cmd("SSUBSCRIBE").arg(channel).exec_async(&mut connection).await?;
            }
        }
    }
    Ok(connection)
}
