//! What the Redis tests share: `redis-server`s and a Redis Cluster of the test's own, nodes
//! (a hub, its backplane and its server) on any runtime, the test bodies, and
//! [`redis_suite!`], which makes one `#[test]` of each body for a runtime.
//!
//! Without `redis-server` (and, for the Redis Cluster, `redis-cli`) on the PATH the tests pass
//! without running, saying so, unless `FERRULE_REQUIRE_REDIS=1` (CI), which makes their absence
//! a failure. Nothing decides on a wall-clock margin: each step waits for its event, under a
//! generous guard. The servers are killed and their directories removed when a test ends,
//! failed or not.

#[path = "../../../tests/tests/runtimes/async_std.rs"]
#[allow(dead_code)]
pub(crate) mod async_std_runtime;
#[path = "../../../tests/tests/runtimes/smol.rs"]
#[allow(dead_code)]
pub(crate) mod smol_runtime;
#[path = "../../../tests/tests/runtimes/tokio.rs"]
#[allow(dead_code)]
pub(crate) mod tokio_runtime;

use std::process::Command;
use std::time::Duration;

pub(crate) use async_std_runtime::AsyncStdRuntime;
use ferrule::CloseCode;
use ferrule::Options;
use ferrule::hub::{AckError, Hub};
pub(crate) use ferrule_redis::{PubSub, RedisBackplane, RedisConfig};
use ferrule_tests::cluster::cluster_test_hub;
use ferrule_tests::hub::HubClient;
pub(crate) use ferrule_tests::redis_server::{Redis, found, free_port};
use ferrule_tests::suite::{TestRuntime, sleep, within};
use serde_json::json;
pub(crate) use smol_runtime::SmolRuntime;
pub(crate) use tokio_runtime::TokioRuntime;

pub(crate) const HEARTBEAT: Duration = Duration::from_millis(200);
pub(crate) const DEAD_AFTER: Duration = Duration::from_millis(1000);
/// The guard of one step: generous, for a busy machine.
pub(crate) const STEP: Duration = Duration::from_secs(30);

/// How each runtime makes its backplane: tokio through [`RedisBackplane::new`] (the current
/// runtime), the others through [`RedisBackplane::with_runtime`].
pub(crate) trait Backplanes: TestRuntime {
    fn backplane(config: RedisConfig) -> RedisBackplane {
        RedisBackplane::with_runtime(Self::runtime(), config).expect("a backplane")
    }
}

impl Backplanes for TokioRuntime {
    fn backplane(config: RedisConfig) -> RedisBackplane {
        RedisBackplane::new(config).expect("a backplane")
    }
}

impl Backplanes for SmolRuntime {}

impl Backplanes for AsyncStdRuntime {}

/// `command`'s answer, as a string, from the Redis at `url`; `None` when it cannot be had.
pub(crate) async fn query(url: &str, command: &redis::Cmd) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut connection = client.get_multiplexed_async_connection().await.ok()?;
    command.query_async(&mut connection).await.ok()
}

/// A node: its hub, its backplane (to watch), and its server.
pub(crate) struct Node<T: TestRuntime> {
    pub(crate) hub: Hub<T::Runtime>,
    pub(crate) backplane: RedisBackplane,
    pub(crate) server: T::Server,
}

impl<T: Backplanes> Node<T> {
    pub(crate) async fn start(redis: &Redis, name: &str, pubsub: PubSub) -> Self {
        let config = RedisConfig::new(redis.url(), name).pubsub(pubsub);
        Self::start_on(config, redis.port).await
    }

    /// A node with `config`, its channels named after `port` (one cluster per test).
    pub(crate) async fn start_on(config: RedisConfig, port: u16) -> Self {
        let config =
            config.prefix(format!("test-{port}")).backoff(Duration::from_millis(50), Duration::from_millis(400));
        let backplane = T::backplane(config);
        let hub = cluster_test_hub::<T>(backplane.clone(), HEARTBEAT, DEAD_AFTER, Duration::from_secs(5));
        let server = T::serve(Options::default(), hub.handler_factory()).await;
        Self { hub, backplane, server }
    }

    pub(crate) async fn client(&self) -> HubClient {
        HubClient::connect::<T>(&self.server, "/").await
    }
}

/// Waits (polling every 20 ms) until `done` holds.
pub(crate) async fn until<T: TestRuntime>(what: &str, done: impl Fn() -> bool) {
    within::<T, _>(STEP, what, async {
        while !done() {
            sleep::<T>(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Three nodes on `redis`, each knowing the two others.
pub(crate) async fn three<T: Backplanes>(redis: &Redis, pubsub: PubSub) -> [Node<T>; 3] {
    let nodes = [
        Node::start(redis, "a", pubsub).await,
        Node::start(redis, "b", pubsub).await,
        Node::start(redis, "c", pubsub).await,
    ];
    known::<T>(&nodes).await;
    nodes
}

/// Waits until every node knows the others.
pub(crate) async fn known<T: Backplanes>(nodes: &[Node<T>]) {
    let others = nodes.len() - 1;
    until::<T>("every node knows the others", || nodes.iter().all(|n| n.hub.cluster().nodes().len() == others)).await;
}

/// Emits a marker to everyone from `hub` and checks it is each client's next message: nothing
/// else (no duplicate) came before it.
pub(crate) async fn marker_is_next<T: TestRuntime>(hub: &Hub<T::Runtime>, clients: &mut [&mut HubClient], n: u32) {
    hub.emit("marker", &n).expect("encoded");
    for client in clients.iter_mut() {
        assert_eq!(client.next::<T>().await, json!(["marker", n]), "client {}", client.id);
    }
}

/// A room emit from one node reaches its members on every node once, in order; a client's
/// `to(room)` leaves only the sender out.
pub(crate) async fn room_emit_reaches_every_member_on_every_node_once<T: Backplanes>(nodes: &[Node<T>; 3]) {
    let [a, b, c] = nodes;
    let (mut a1, mut b1, mut c1, mut c2) = (a.client().await, b.client().await, c.client().await, c.client().await);
    for client in [&mut a1, &mut b1, &mut c1] {
        client.join::<T>("room").await;
    }
    for n in 0..20 {
        a.hub.to("room").emit("news", &n).expect("encoded");
    }
    for client in [&mut a1, &mut b1, &mut c1] {
        for n in 0..20 {
            assert_eq!(client.next::<T>().await, json!(["news", n]), "in order, client {}", client.id);
        }
    }
    marker_is_next::<T>(&b.hub, &mut [&mut a1, &mut b1, &mut c1, &mut c2], 1).await;
    b1.send(&json!(["to", ["room", "hi"]]).to_string()).await;
    for client in [&mut a1, &mut c1] {
        assert_eq!(client.next::<T>().await, json!(["to", "hi"]), "client {}", client.id);
    }
    marker_is_next::<T>(&c.hub, &mut [&mut a1, &mut b1, &mut c1, &mut c2], 2).await;
    for node in nodes {
        let stats = node.hub.stats();
        assert_eq!((stats.remote_lost, stats.remote_malformed), (0, 0), "{stats:?}");
    }
}

/// Cluster-wide counts and members, and disconnect by id of a connection on another node.
pub(crate) async fn counts_and_disconnect_by_id<T: Backplanes>(nodes: &[Node<T>; 3]) {
    let [a, b, c] = nodes;
    let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
    let _c2 = c.client().await;
    for client in [&mut a1, &mut b1, &mut c1] {
        client.join::<T>("counted").await;
    }
    let view = a.hub.cluster();
    let len = view.len().await;
    assert_eq!((len.value, len.is_complete()), (4, true), "{len:?}");
    let members = view.sockets_in("counted").await;
    let mut ids = vec![a1.id.clone(), b1.id.clone(), c1.id.clone()];
    ids.sort_unstable();
    assert_eq!(members.value.iter().map(|id| id.to_string()).collect::<Vec<_>>(), ids);
    assert!(view.is_connected(&c1.id).await.value);

    let closed = view.disconnect(&b1.id, CloseCode::new(4000), "moved").await;
    assert!(closed.value && closed.is_complete(), "{closed:?}");
    let info = within::<T, _>(STEP, "the close", b1.channels.done.clone()).await;
    assert_eq!((info.code.as_u16(), info.reason.as_str()), (4000, "moved"));
    until::<T>("b1 left node b", || !b.hub.is_connected(&b1.id)).await;
    assert_eq!(view.len().await.value, 3);
    assert!(!view.is_connected(&b1.id).await.value);
}

/// An acknowledged emit from node a gets the replies of clients on nodes b and c.
pub(crate) async fn ack_from_clients_on_other_nodes<T: Backplanes>(nodes: &[Node<T>; 3]) {
    let [a, b, c] = nodes;
    let (mut b1, mut c1) = (b.client().await, c.client().await);
    for client in [&mut b1, &mut c1] {
        client.join::<T>("voters").await;
    }
    let acks = a.hub.to("voters").emit_with_ack::<u32, _>("vote", "yes?", STEP).expect("encoded");
    for (client, n) in [(&mut b1, 1), (&mut c1, 2)] {
        let event = client.next::<T>().await;
        assert_eq!((&event[0], &event[1]), (&json!("vote"), &json!("yes?")), "{event}");
        let id = event[2].as_u64().expect("an ack id");
        client.send(&json!(["$ack", id, n]).to_string()).await;
    }
    let mut replies: Vec<(String, Result<u32, AckError>)> =
        within::<T, _>(STEP * 2, "the acks", acks).await.into_iter().map(|(id, r)| (id.to_string(), r)).collect();
    replies.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want = vec![(b1.id.clone(), Ok(1)), (c1.id.clone(), Ok(2))];
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(replies, want);
}

/// Redis stopped mid-test: local delivery carries on; emits published meanwhile are lost (and
/// counted: dropped by the publisher's backplane, missing at the other hubs once Redis is back);
/// after the restart every node reconnects and resubscribes, and remote delivery resumes.
pub(crate) async fn restart_local_delivery_continues_remote_resumes_losses_counted<T: Backplanes>(mut redis: Redis) {
    let [a, b, c] = three::<T>(&redis, PubSub::Plain).await;
    let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
    marker_is_next::<T>(&a.hub, &mut [&mut a1, &mut b1, &mut c1], 1).await;

    redis.stop();
    until::<T>("every node saw Redis go", || [&a, &b, &c].iter().all(|n| !n.backplane.stats().connected)).await;
    let dropped_before = a.backplane.stats().dropped;
    a.hub.emit("while-down", &1).expect("encoded");
    assert_eq!(a1.next::<T>().await, json!(["while-down", 1]), "local delivery carries on");
    assert!(a.backplane.stats().dropped > dropped_before, "the remote copy is dropped, and counted");

    redis.run::<T>().await;
    // A node counts as connected once it has subscribed again.
    until::<T>("every node reconnected", || [&a, &b, &c].iter().all(|n| n.backplane.stats().connects >= 2)).await;
    a.hub.emit("after", &2).expect("encoded");
    for client in [&mut a1, &mut b1, &mut c1] {
        assert_eq!(client.next::<T>().await, json!(["after", 2]), "client {}", client.id);
    }
    for node in [&b, &c] {
        assert!(node.hub.stats().remote_lost >= 1, "a's emit while Redis was down: {:?}", node.hub.stats());
    }
    marker_is_next::<T>(&c.hub, &mut [&mut a1, &mut b1, &mut c1], 3).await;
}

/// Bytes on the cluster's channel that are not a hub's frame (another program publishing
/// there) are counted and ignored; the node carries on.
pub(crate) async fn foreign_messages_on_the_channel_are_counted_and_ignored<T: Backplanes>(redis: Redis) {
    let [a, b, _c] = three::<T>(&redis, PubSub::Plain).await;
    let mut b1 = b.client().await;
    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connected to Redis");
    let channel = format!("test-{}:all", redis.port);
    for junk in [&b""[..], b"hello", b"\xff\xff\xff\xff{", b"\0\0\0\x02{}"] {
        let () = redis::cmd("PUBLISH").arg(&channel).arg(junk).query_async(&mut connection).await.expect("published");
    }
    until::<T>("b counted the foreign messages", || b.hub.stats().remote_malformed == 4).await;
    a.hub.emit("still", &1).expect("encoded");
    assert_eq!(b1.next::<T>().await, json!(["still", 1]));
}

/// A Redis Cluster of three masters of this test's own, each with its own directory, formed by
/// `redis-cli --cluster create`; killed and removed at the end.
pub(crate) struct RedisCluster {
    pub(crate) masters: Vec<Redis>,
}

impl RedisCluster {
    /// `None` (the test is skipped) without `redis-server` or `redis-cli`, unless
    /// `FERRULE_REQUIRE_REDIS=1`.
    pub(crate) async fn start<T: TestRuntime>() -> Option<Self> {
        if !found("redis-server") || !found("redis-cli") {
            return None;
        }
        let mut masters = Vec::new();
        for _ in 0..3 {
            // The cluster bus on a port of its own (by default, the port plus 10000).
            let args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port"];
            let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            args.push(free_port().to_string());
            masters.push(Redis::start_with::<T>(args).await);
        }
        let cluster = Self { masters };
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.masters.iter().map(|m| format!("127.0.0.1:{}", m.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli ran");
        assert!(created.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&created.stdout));
        cluster.healthy::<T>().await;
        Some(cluster)
    }

    /// Waits until every master says the cluster is whole: every slot served, every master known.
    async fn healthy<T: TestRuntime>(&self) {
        for master in &self.masters {
            let url = master.url();
            within::<T, _>(STEP, "the cluster whole", async {
                loop {
                    let info = query(&url, redis::cmd("CLUSTER").arg("INFO")).await.unwrap_or_default();
                    let ok = ["cluster_state:ok", "cluster_slots_ok:16384", "cluster_known_nodes:3"];
                    if ok.iter().all(|line| info.contains(line)) {
                        return;
                    }
                    sleep::<T>(Duration::from_millis(50)).await;
                }
            })
            .await;
        }
    }

    /// The port of the master that holds `channel`'s hash slot: the one that takes an
    /// `SPUBLISH` to it (the others answer with a redirection).
    pub(crate) async fn owner(&self, channel: &str) -> u16 {
        for master in &self.masters {
            let client = redis::Client::open(master.url()).expect("a Redis URL");
            let mut connection = client.get_multiplexed_async_connection().await.expect("connected to a master");
            let published: redis::RedisResult<i64> =
                redis::cmd("SPUBLISH").arg(channel).arg("probe").query_async(&mut connection).await;
            if published.is_ok() {
                return master.port;
            }
        }
        panic!("no master holds the slot of {channel}");
    }

    /// Names for three nodes whose channels, with the channel every node publishes on, are
    /// spread over the three shards (so that the test crosses shards), where names allow.
    pub(crate) async fn spread_names(&self, prefix: &str) -> Vec<String> {
        let mut shards = vec![self.owner(&format!("{prefix}:all")).await];
        let mut names = Vec::new();
        for n in 0..64 {
            let name = format!("n{n}");
            let shard = self.owner(&format!("{prefix}:node:{name}")).await;
            // First a name on each shard not used yet, then any.
            if !shards.contains(&shard) || shards.len() == 3 {
                shards.push(shard);
                names.push(name);
            }
            if names.len() == 3 {
                break;
            }
        }
        shards.sort_unstable();
        shards.dedup();
        assert_eq!((names.len(), shards.len()), (3, 3), "three names, channels on three shards: {names:?}");
        names
    }
}

/// Three hubs on `cluster`, each given one master's address only, in sharded pub/sub, with
/// channels on all three shards.
async fn on_cluster<T: Backplanes>(cluster: &RedisCluster) -> [Node<T>; 3] {
    let port = cluster.masters[0].port;
    let names = cluster.spread_names(&format!("test-{port}")).await;
    let mut nodes = Vec::new();
    for (name, master) in names.iter().zip(&cluster.masters) {
        nodes.push(Node::<T>::start_on(RedisConfig::cluster([master.url()], name.as_str()), port).await);
    }
    known::<T>(&nodes).await;
    nodes.try_into().unwrap_or_else(|_| unreachable!("three nodes"))
}

/// Three hubs on a Redis Cluster: room emits reach every member once, counts and disconnects by
/// id and acknowledgements cross shards.
pub(crate) async fn sharded_room_emit_counts_and_acks_on_a_redis_cluster<T: Backplanes>() {
    let Some(cluster) = RedisCluster::start::<T>().await else { return };
    let nodes = on_cluster::<T>(&cluster).await;
    room_emit_reaches_every_member_on_every_node_once::<T>(&nodes).await;
    counts_and_disconnect_by_id::<T>(&nodes).await;
    ack_from_clients_on_other_nodes::<T>(&nodes).await;
    for node in &nodes {
        let stats = node.backplane.stats();
        assert_eq!((stats.connects, stats.connected), (1, true), "{stats:?}");
        assert_eq!(node.hub.stats().remote_lost, 0, "{:?}", node.hub.stats());
    }
}

/// The master holding the channel every node publishes on killed, then started again (its
/// slots kept in its cluster config file): every node sees the loss, local delivery carries on,
/// and once the cluster is whole again every node is back on it, subscribed on every shard.
pub(crate) async fn master_restart_on_a_redis_cluster_every_node_comes_back<T: Backplanes>() {
    let Some(mut cluster) = RedisCluster::start::<T>().await else { return };
    let nodes = on_cluster::<T>(&cluster).await;
    let [a, b, c] = &nodes;
    let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
    marker_is_next::<T>(&a.hub, &mut [&mut a1, &mut b1, &mut c1], 1).await;

    let owner = cluster.owner(&format!("test-{}:all", cluster.masters[0].port)).await;
    let master = cluster.masters.iter_mut().find(|m| m.port == owner).expect("the owner is a master");
    master.stop();
    until::<T>("every node saw the master go", || nodes.iter().all(|n| !n.backplane.stats().connected)).await;
    a.hub.emit("while-down", &1).expect("encoded");
    assert_eq!(a1.next::<T>().await, json!(["while-down", 1]), "local delivery carries on");

    master.run::<T>().await;
    cluster.healthy::<T>().await;
    until::<T>("every node reconnected", || nodes.iter().all(|n| n.backplane.stats().connects >= 2)).await;
    known::<T>(&nodes).await;
    a.hub.emit("after", &2).expect("encoded");
    for client in [&mut a1, &mut b1, &mut c1] {
        assert_eq!(client.next::<T>().await, json!(["after", 2]), "client {}", client.id);
    }
    for node in [b, c] {
        assert!(node.hub.stats().remote_lost >= 1, "a's emit while the master was down: {:?}", node.hub.stats());
    }
    marker_is_next::<T>(&b.hub, &mut [&mut a1, &mut b1, &mut c1], 3).await;
}

/// One `#[test]` per test body for the runtime `$rt`, each calling `$prepare` first.
macro_rules! redis_suite {
    ($rt:ty) => {
        redis_suite!($rt, || ());
    };
    ($rt:ty, $prepare:expr) => {
        use super::*;

        fn run<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
            $prepare();
            ferrule_tests::suite::run::<$rt, _>(false, test);
        }

        #[test]
        fn redis_room_emit_reaches_every_member_on_every_node_once() {
            run(|| async {
                let Some(redis) = Redis::start::<$rt>().await else { return };
                room_emit_reaches_every_member_on_every_node_once(&three::<$rt>(&redis, PubSub::Plain).await).await;
            });
        }

        /// The same through Redis 7's sharded pub/sub (SSUBSCRIBE, SPUBLISH) on one server.
        #[test]
        fn redis_sharded_room_emit_reaches_every_member_on_every_node_once() {
            run(|| async {
                let Some(redis) = Redis::start::<$rt>().await else { return };
                room_emit_reaches_every_member_on_every_node_once(&three::<$rt>(&redis, PubSub::Sharded).await).await;
            });
        }

        #[test]
        fn redis_cluster_counts_and_disconnect_by_id() {
            run(|| async {
                let Some(redis) = Redis::start::<$rt>().await else { return };
                counts_and_disconnect_by_id(&three::<$rt>(&redis, PubSub::Plain).await).await;
            });
        }

        #[test]
        fn redis_ack_from_clients_on_other_nodes() {
            run(|| async {
                let Some(redis) = Redis::start::<$rt>().await else { return };
                ack_from_clients_on_other_nodes(&three::<$rt>(&redis, PubSub::Plain).await).await;
            });
        }

        #[test]
        fn redis_restart_local_delivery_continues_remote_resumes_losses_counted() {
            run(|| async {
                let Some(redis) = Redis::start::<$rt>().await else { return };
                restart_local_delivery_continues_remote_resumes_losses_counted::<$rt>(redis).await;
            });
        }

        #[test]
        fn redis_foreign_messages_on_the_channel_are_counted_and_ignored() {
            run(|| async {
                let Some(redis) = Redis::start::<$rt>().await else { return };
                foreign_messages_on_the_channel_are_counted_and_ignored::<$rt>(redis).await;
            });
        }

        #[test]
        fn redis_cluster_sharded_room_emit_counts_and_acks() {
            run(sharded_room_emit_counts_and_acks_on_a_redis_cluster::<$rt>);
        }

        #[test]
        fn redis_cluster_master_restart_every_node_comes_back() {
            run(master_restart_on_a_redis_cluster_every_node_comes_back::<$rt>);
        }
    };
}
