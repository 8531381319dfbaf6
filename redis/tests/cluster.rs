//! Three hubs in this process, each served on its own port with its own Redis connection, against
//! a `redis-server` each test starts on a free port (no persistence, its own directory) and stops
//! at the end (`tests/tests/redis_common/`). Clients on each node: room emits, cluster-wide counts and disconnect by id, an ack
//! from a client on another node, Redis restarted mid-test, and a node killed without a goodbye.
//!
//! Without `redis-server` on the PATH the tests pass without running, saying so, unless
//! `FERRULE_REQUIRE_REDIS=1` (CI), which makes its absence a failure. Nothing decides on a
//! wall-clock margin: each step waits for its event, under a generous guard.

#[path = "../../tests/tests/runtimes/tokio.rs"]
#[allow(dead_code)]
mod tokio_runtime;

#[path = "../../tests/tests/redis_common/mod.rs"]
mod redis_common;

use std::time::Duration;

use ferrule::hub::{AckError, Hub, Socket};
use ferrule_redis::{PubSub, RedisBackplane, RedisConfig};
use ferrule_tests::hub::HubClient;
use ferrule_tests::suite::{TestRuntime, within};
use ferrule_tokio::{CloseCode, Options, Tokio};
use redis_common::Redis;
use serde_json::{Value, json};
use tokio_runtime::TokioRuntime;

const HEARTBEAT: Duration = Duration::from_millis(200);
const DEAD_AFTER: Duration = Duration::from_millis(1000);
/// The guard of one step: generous, for a busy machine.
const STEP: Duration = Duration::from_secs(30);

/// A node: its hub, its backplane (to watch), and its server.
struct Node {
    hub: Hub<Tokio>,
    backplane: RedisBackplane,
    server: ferrule_tokio::Server,
}

impl Node {
    async fn start(redis: &Redis, name: &str, pubsub: PubSub) -> Self {
        Self::start_on(redis.url(), redis.port, name, pubsub).await
    }

    async fn start_on(url: String, port: u16, name: &str, pubsub: PubSub) -> Self {
        let config = RedisConfig::new(url, name)
            .prefix(format!("test-{port}"))
            .pubsub(pubsub)
            .backoff(Duration::from_millis(50), Duration::from_millis(400));
        let backplane = RedisBackplane::new(config).expect("a backplane");
        let hub = Hub::builder(Tokio)
            .backplane(backplane.clone())
            .heartbeat(HEARTBEAT, DEAD_AFTER)
            .cluster_timeout(Duration::from_secs(5))
            .on_with_ack("join", |socket: &Socket<Tokio>, room: String| Ok(socket.join(&room)))
            .on("to", |socket: &Socket<Tokio>, (room, value): (String, Value)| {
                socket.to(&room).emit("to", &value)?;
                Ok(())
            })
            .build();
        let server = TokioRuntime::serve(Options::default(), hub.handler_factory()).await;
        Self { hub, backplane, server }
    }

    async fn client(&self) -> HubClient {
        HubClient::connect::<TokioRuntime>(&self.server, "/").await
    }
}

/// Waits (polling every 20 ms) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    within::<TokioRuntime, _>(STEP, what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Three nodes on `redis`, each knowing the two others.
async fn three(redis: &Redis, pubsub: PubSub) -> [Node; 3] {
    let nodes = [
        Node::start(redis, "a", pubsub).await,
        Node::start(redis, "b", pubsub).await,
        Node::start(redis, "c", pubsub).await,
    ];
    until("every node knows the others", || nodes.iter().all(|n| n.hub.cluster().nodes().len() == 2)).await;
    nodes
}

/// Emits a marker to everyone from `hub` and checks it is each client's next message: nothing
/// else (no duplicate) came before it.
async fn marker_is_next(hub: &Hub<Tokio>, clients: &mut [&mut HubClient], n: u32) {
    hub.emit("marker", &n).expect("encoded");
    for client in clients.iter_mut() {
        assert_eq!(client.next::<TokioRuntime>().await, json!(["marker", n]), "client {}", client.id);
    }
}

fn run<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    ferrule_tests::suite::run::<TokioRuntime, _>(false, test);
}

async fn room_emit_reaches_every_member_on_every_node_once(pubsub: PubSub) {
    let Some(redis) = Redis::start().await else { return };
    let [a, b, c] = three(&redis, pubsub).await;
    let (mut a1, mut b1, mut c1, mut c2) = (a.client().await, b.client().await, c.client().await, c.client().await);
    for client in [&mut a1, &mut b1, &mut c1] {
        client.join::<TokioRuntime>("room").await;
    }
    for n in 0..20 {
        a.hub.to("room").emit("news", &n).expect("encoded");
    }
    for client in [&mut a1, &mut b1, &mut c1] {
        for n in 0..20 {
            assert_eq!(client.next::<TokioRuntime>().await, json!(["news", n]), "in order, client {}", client.id);
        }
    }
    marker_is_next(&b.hub, &mut [&mut a1, &mut b1, &mut c1, &mut c2], 1).await;
    b1.send(&json!(["to", ["room", "hi"]]).to_string()).await;
    for client in [&mut a1, &mut c1] {
        assert_eq!(client.next::<TokioRuntime>().await, json!(["to", "hi"]), "client {}", client.id);
    }
    marker_is_next(&c.hub, &mut [&mut a1, &mut b1, &mut c1, &mut c2], 2).await;
    for node in [&a, &b, &c] {
        let stats = node.hub.stats();
        assert_eq!((stats.remote_lost, stats.remote_malformed), (0, 0), "{stats:?}");
    }
}

/// A room emit from one node reaches its members on every node once, in order; a client's
/// `to(room)` leaves only the sender out.
#[test]
fn redis_room_emit_reaches_every_member_on_every_node_once() {
    run(|| room_emit_reaches_every_member_on_every_node_once(PubSub::Plain));
}

/// The same through Redis 7's sharded pub/sub (SSUBSCRIBE, SPUBLISH).
#[test]
fn redis_sharded_room_emit_reaches_every_member_on_every_node_once() {
    run(|| room_emit_reaches_every_member_on_every_node_once(PubSub::Sharded));
}

/// Cluster-wide counts and members, and disconnect by id of a connection on another node.
#[test]
fn redis_cluster_counts_and_disconnect_by_id() {
    run(|| async {
        let Some(redis) = Redis::start().await else { return };
        let [a, b, c] = three(&redis, PubSub::Plain).await;
        let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
        let _c2 = c.client().await;
        for client in [&mut a1, &mut b1, &mut c1] {
            client.join::<TokioRuntime>("room").await;
        }
        let view = a.hub.cluster();
        let len = view.len().await;
        assert_eq!((len.value, len.is_complete()), (4, true), "{len:?}");
        let members = view.sockets_in("room").await;
        let mut ids = vec![a1.id.clone(), b1.id.clone(), c1.id.clone()];
        ids.sort_unstable();
        assert_eq!(members.value.iter().map(|id| id.to_string()).collect::<Vec<_>>(), ids);
        assert!(view.is_connected(&c1.id).await.value);

        let closed = view.disconnect(&b1.id, CloseCode::new(4000), "moved").await;
        assert!(closed.value && closed.is_complete(), "{closed:?}");
        let info = within::<TokioRuntime, _>(STEP, "the close", b1.channels.done.clone()).await;
        assert_eq!((info.code.as_u16(), info.reason.as_str()), (4000, "moved"));
        until("b1 left node b", || !b.hub.is_connected(&b1.id)).await;
        assert_eq!(view.len().await.value, 3);
        assert!(!view.is_connected(&b1.id).await.value);
    });
}

/// An acknowledged emit from node a gets the replies of clients on nodes b and c.
#[test]
fn redis_ack_from_clients_on_other_nodes() {
    run(|| async {
        let Some(redis) = Redis::start().await else { return };
        let [a, b, c] = three(&redis, PubSub::Plain).await;
        let (mut b1, mut c1) = (b.client().await, c.client().await);
        for client in [&mut b1, &mut c1] {
            client.join::<TokioRuntime>("room").await;
        }
        let acks = a.hub.to("room").emit_with_ack::<u32, _>("vote", "yes?", STEP).expect("encoded");
        for (client, n) in [(&mut b1, 1), (&mut c1, 2)] {
            let event = client.next::<TokioRuntime>().await;
            assert_eq!((&event[0], &event[1]), (&json!("vote"), &json!("yes?")), "{event}");
            let id = event[2].as_u64().expect("an ack id");
            client.send(&json!(["$ack", id, n]).to_string()).await;
        }
        let mut replies: Vec<(String, Result<u32, AckError>)> = within::<TokioRuntime, _>(STEP * 2, "the acks", acks)
            .await
            .into_iter()
            .map(|(id, r)| (id.to_string(), r))
            .collect();
        replies.sort_by(|x, y| x.0.cmp(&y.0));
        let mut want = vec![(b1.id.clone(), Ok(1)), (c1.id.clone(), Ok(2))];
        want.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(replies, want);
    });
}

/// Redis stopped mid-test: local delivery carries on; emits published meanwhile are lost (and
/// counted: dropped by the publisher's backplane, missing at the other hubs once Redis is back);
/// after the restart every node reconnects and resubscribes, and remote delivery resumes.
#[test]
fn redis_restart_local_delivery_continues_remote_resumes_losses_counted() {
    run(|| async {
        let Some(mut redis) = Redis::start().await else { return };
        let [a, b, c] = three(&redis, PubSub::Plain).await;
        let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
        marker_is_next(&a.hub, &mut [&mut a1, &mut b1, &mut c1], 1).await;

        redis.stop().await;
        until("every node saw Redis go", || [&a, &b, &c].iter().all(|n| !n.backplane.stats().connected)).await;
        let dropped_before = a.backplane.stats().dropped;
        a.hub.emit("while-down", &1).expect("encoded");
        assert_eq!(a1.next::<TokioRuntime>().await, json!(["while-down", 1]), "local delivery carries on");
        assert!(a.backplane.stats().dropped > dropped_before, "the remote copy is dropped, and counted");

        redis.run().await;
        // A node counts as connected once it has subscribed again.
        until("every node reconnected", || [&a, &b, &c].iter().all(|n| n.backplane.stats().connects >= 2)).await;
        a.hub.emit("after", &2).expect("encoded");
        for client in [&mut a1, &mut b1, &mut c1] {
            assert_eq!(client.next::<TokioRuntime>().await, json!(["after", 2]), "client {}", client.id);
        }
        for node in [&b, &c] {
            assert!(node.hub.stats().remote_lost >= 1, "a's emit while Redis was down: {:?}", node.hub.stats());
        }
        marker_is_next(&c.hub, &mut [&mut a1, &mut b1, &mut c1], 3).await;
    });
}

/// A node killed without a goodbye (its runtime stopped: its tasks and its Redis connection
/// gone): once `dead_after` has passed since the others last heard from it, it is out of their
/// view, and cluster-wide queries are complete again without its connections.
#[test]
fn redis_killed_node_leaves_the_cluster_view_within_the_bound() {
    run(|| async {
        let Some(redis) = Redis::start().await else { return };
        let a = Node::start(&redis, "a", PubSub::Plain).await;
        let b = Node::start(&redis, "b", PubSub::Plain).await;
        let doomed =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let url = redis.url();
        let port = redis.port;
        let c = doomed
            .spawn(async move { Node::start_on(url, port, "c", PubSub::Plain).await })
            .await
            .expect("node c started");
        let nodes = [&a, &b, &c];
        until("every node knows the others", || nodes.iter().all(|n| n.hub.cluster().nodes().len() == 2)).await;
        let (_a1, _b1, _c1, _c2) = (a.client().await, b.client().await, c.client().await, c.client().await);
        let len = a.hub.cluster().len().await;
        assert_eq!((len.value, len.is_complete()), (4, true), "{len:?}");

        doomed.shutdown_background();
        until("c is out of a's and b's views", || a.hub.cluster().nodes() == ["b"] && b.hub.cluster().nodes() == ["a"])
            .await;
        let len = a.hub.cluster().len().await;
        assert_eq!((len.value, len.is_complete()), (2, true), "{len:?}");
        drop(c);
    });
}

/// Bytes on the cluster's channel that are not a hub's frame (another program publishing
/// there) are counted and ignored; the node carries on.
#[test]
fn redis_foreign_messages_on_the_channel_are_counted_and_ignored() {
    run(|| async {
        let Some(redis) = Redis::start().await else { return };
        let [a, b, _c] = three(&redis, PubSub::Plain).await;
        let mut b1 = b.client().await;
        let client = redis::Client::open(redis.url()).expect("a Redis URL");
        let mut connection = client.get_multiplexed_async_connection().await.expect("connected to Redis");
        let channel = format!("test-{}:all", redis.port);
        for junk in [&b""[..], b"hello", b"\xff\xff\xff\xff{", b"\0\0\0\x02{}"] {
            let () =
                redis::cmd("PUBLISH").arg(&channel).arg(junk).query_async(&mut connection).await.expect("published");
        }
        until("b counted the foreign messages", || b.hub.stats().remote_malformed == 4).await;
        a.hub.emit("still", &1).expect("encoded");
        assert_eq!(b1.next::<TokioRuntime>().await, json!(["still", 1]));
    });
}
