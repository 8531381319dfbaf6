//! Hubs as a cluster (`ferrule::hub::MemoryCluster`): three servers in the test, each with its
//! own hub and clients, connected by the in-memory backplane, on every runtime with the paused
//! clock. Emits across nodes, cluster-wide counts and changes, acknowledgements from clients on
//! other nodes, a node cut off (partial results, the heartbeat bound, lost frames counted) and
//! frames that do not decode.
//!
//! Instantiated per runtime by [`cluster_suite!`](crate::cluster_suite).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrule::hub::{AckError, Backplane, Hub, Inbox, MemoryCluster, Socket};
use ferrule::{CloseCode, Message, Options};
use serde_json::{Value, json};

use crate::hub::{HubClient, marker_is_next};
use crate::suite::{TestRuntime, now, sleep, within};

/// Expands to one `#[test]` per cluster test for the runtime type `$rt` (a
/// [`TestRuntime`](crate::suite::TestRuntime)); all on the paused clock.
#[macro_export]
macro_rules! cluster_suite {
    ($rt:ty) => {
        $crate::cluster_suite!(@expand $rt;
            cluster_room_emit_reaches_every_member_on_every_node_once,
            cluster_counts_members_and_changes_reach_the_node_holding_the_connection,
            cluster_acks_come_from_clients_on_other_nodes_within_the_same_timeout,
            cluster_cut_node_gives_partial_results_then_leaves_the_view_within_the_bound,
            cluster_frames_that_do_not_decode_are_counted_and_ignored,
            cluster_dropped_hub_says_goodbye_and_leaves_the_view_at_once,
        );
    };
    (@expand $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::run::<$rt, _>(true, $crate::cluster::$name::<$rt>);
            }
        )*
    };
}

const HEARTBEAT: Duration = Duration::from_secs(1);
const DEAD_AFTER: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(60);

/// A node: its hub (with `join`, `leave` and `to` events) and its server.
struct Node<T: TestRuntime> {
    hub: Hub<T::Runtime>,
    server: T::Server,
}

/// A node's hub for the cluster tests, over any backplane (the in-memory one here, Redis in
/// ferrule-redis's tests): heartbeats every `heartbeat`, a node silent for `dead_after` leaves
/// the views, cluster-wide queries wait `timeout`; the event `join` (acknowledged with whether
/// the connection was not yet in the room) and `to` (`[room, value]`: emits `to` with `value` to
/// the room).
pub fn cluster_test_hub<T: TestRuntime>(
    backplane: impl Backplane,
    heartbeat: Duration,
    dead_after: Duration,
    timeout: Duration,
) -> Hub<T::Runtime> {
    Hub::builder(T::runtime())
        .backplane(backplane)
        .heartbeat(heartbeat, dead_after)
        .cluster_timeout(timeout)
        .on_with_ack("join", |socket: &Socket<T::Runtime>, room: String| Ok(socket.join(&room)))
        .on("to", |socket: &Socket<T::Runtime>, (room, value): (String, Value)| {
            socket.to(&room).emit("to", &value)?;
            Ok(())
        })
        .build()
}

impl<T: TestRuntime> Node<T> {
    async fn start(cluster: &MemoryCluster, name: &str) -> Self {
        let hub = cluster_test_hub::<T>(cluster.node(name), HEARTBEAT, DEAD_AFTER, TIMEOUT);
        let server = T::serve(Options::default(), hub.handler_factory()).await;
        Self { hub, server }
    }

    async fn client(&self) -> HubClient {
        HubClient::connect::<T>(&self.server, "/").await
    }
}

/// Three nodes, each knowing the two others.
async fn three<T: TestRuntime>(cluster: &MemoryCluster) -> [Node<T>; 3] {
    let nodes = [Node::start(cluster, "a").await, Node::start(cluster, "b").await, Node::start(cluster, "c").await];
    until::<T>("every node knows the others", || nodes.iter().all(|n| n.hub.cluster().nodes().len() == 2)).await;
    nodes
}

/// Waits (on the runtime's clock, in small steps) until `done` holds.
async fn until<T: TestRuntime>(what: &str, done: impl Fn() -> bool) {
    within::<T, _>(WAIT, what, async {
        while !done() {
            sleep::<T>(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A room emit from one node reaches its members on every node once and nobody else; `except`
/// and a socket's `to` leave connections on other nodes out; a member of two rooms on another
/// node gets a message to both once; a binary native message crosses intact. The emit is
/// published as one frame, whatever the number of recipients and nodes.
pub async fn cluster_room_emit_reaches_every_member_on_every_node_once<T: TestRuntime>() {
    let cluster = MemoryCluster::new();
    let [a, b, c] = three::<T>(&cluster).await;
    let (mut a1, mut b1, mut b2, mut c1, mut c2) =
        (a.client().await, b.client().await, b.client().await, c.client().await, c.client().await);
    for client in [&mut a1, &mut b1, &mut b2, &mut c1] {
        client.join::<T>("room").await;
    }
    c1.join::<T>("other").await;

    let published = a.hub.stats().remote_published;
    let delivery = a.hub.to("room").emit("news", &1).expect("encoded");
    assert_eq!(a.hub.stats().remote_published, published + 1, "one frame for every node and recipient");
    assert_eq!(delivery.queued, 1, "the delivery counts this node's recipients");
    for client in [&mut a1, &mut b1, &mut b2, &mut c1] {
        assert_eq!(client.next::<T>().await, json!(["news", 1]), "client {}", client.id);
    }
    marker_is_next::<T>(&b.hub, &mut [&mut a1, &mut b1, &mut b2, &mut c1, &mut c2], 1).await;

    // Leaving out a connection on another node, and a member of two rooms reached once.
    c.hub.to("room").to("other").except(&b2.id).emit("news", &2).expect("encoded");
    for client in [&mut a1, &mut b1, &mut c1] {
        assert_eq!(client.next::<T>().await, json!(["news", 2]), "client {}", client.id);
    }
    marker_is_next::<T>(&a.hub, &mut [&mut a1, &mut b1, &mut b2, &mut c1, &mut c2], 2).await;

    // A client's `to(room)` from node b: everyone in the room on every node but the sender.
    b1.send(&json!(["to", ["room", "hi"]]).to_string()).await;
    for client in [&mut a1, &mut b2, &mut c1] {
        assert_eq!(client.next::<T>().await, json!(["to", "hi"]), "client {}", client.id);
    }
    marker_is_next::<T>(&c.hub, &mut [&mut a1, &mut b1, &mut b2, &mut c1, &mut c2], 3).await;

    // Native binary, to everyone.
    a.hub.all().send(Message::Binary(Bytes::from_static(&[0, 159, 146, 150])));
    for client in [&mut a1, &mut b1, &mut b2, &mut c1, &mut c2] {
        let message = client.next_message::<T>().await;
        assert_eq!(message, Message::Binary(Bytes::from_static(&[0, 159, 146, 150])), "client {}", client.id);
    }
    for node in [&a, &b, &c] {
        let stats = node.hub.stats();
        assert_eq!((stats.remote_lost, stats.remote_malformed), (0, 0), "{stats:?}");
    }
}

/// Counts and members over the whole cluster, is-connected, and join, leave and disconnect for a
/// connection on another node, each complete when every node answers.
pub async fn cluster_counts_members_and_changes_reach_the_node_holding_the_connection<T: TestRuntime>() {
    let cluster = MemoryCluster::new();
    let [a, b, c] = three::<T>(&cluster).await;
    let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
    let mut c2 = c.client().await;
    for client in [&mut a1, &mut b1, &mut c1] {
        client.join::<T>("room").await;
    }
    let view = a.hub.cluster();
    let len = view.len().await;
    assert_eq!((len.value, len.is_complete()), (4, true), "{len:?}");
    assert_eq!(a.hub.len(), 1, "the hub's own count stays local");
    let mut ids = vec![a1.id.clone(), b1.id.clone(), c1.id.clone()];
    ids.sort_unstable();
    let members = view.sockets_in("room").await;
    assert_eq!(members.value.iter().map(|id| id.to_string()).collect::<Vec<_>>(), ids);
    assert!(members.is_complete());
    assert!(view.is_connected(&c2.id).await.value);
    assert!(view.is_connected(&a1.id).await.value);
    assert!(!view.is_connected("nobody").await.value);

    // Join a connection on node c to the room, from node a: room emits then reach it.
    let joined = view.join(&c2.id, "room").await;
    assert!(joined.value && joined.is_complete(), "{joined:?}");
    assert!(!view.join(&c2.id, "room").await.value, "already in it");
    assert!(c.hub.is_joined(&c2.id, "room"));
    b.hub.to("room").emit("news", &1).expect("encoded");
    for client in [&mut a1, &mut b1, &mut c1, &mut c2] {
        assert_eq!(client.next::<T>().await, json!(["news", 1]), "client {}", client.id);
    }
    assert!(view.leave(&c2.id, "room").await.value);
    assert!(!c.hub.is_joined(&c2.id, "room"));
    assert_eq!(view.sockets_in("room").await.value.len(), 3);

    // Disconnect a connection on node b by its id, from node a.
    let closed = view.disconnect(&b1.id, CloseCode::new(4000), "moved").await;
    assert!(closed.value && closed.is_complete(), "{closed:?}");
    let info = within::<T, _>(WAIT, "the end", b1.channels.done.clone()).await;
    assert_eq!((info.code.as_u16(), info.reason.as_str()), (4000, "moved"));
    until::<T>("b1 left node b", || !b.hub.is_connected(&b1.id)).await;
    assert_eq!(view.len().await.value, 3);
    assert!(!view.disconnect(&b1.id, CloseCode::NORMAL, "").await.value, "nobody holds it any more");
}

/// An acknowledged emit from node a collects the replies of its recipients on every node; one
/// that does not reply counts as timed out at the emit's own timeout; when everyone replies, the
/// wait ends early. Each node gives the emit its own ack id.
pub async fn cluster_acks_come_from_clients_on_other_nodes_within_the_same_timeout<T: TestRuntime>() {
    let cluster = MemoryCluster::new();
    let [a, b, c] = three::<T>(&cluster).await;
    let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
    for client in [&mut a1, &mut b1, &mut c1] {
        client.join::<T>("room").await;
    }
    let timeout = Duration::from_secs(5);
    let started = now::<T>();
    let acks = a.hub.to("room").emit_with_ack::<u32, _>("vote", "yes?", timeout).expect("encoded");
    let mut asked = Vec::new();
    for client in [&mut a1, &mut b1, &mut c1] {
        let event = client.next::<T>().await;
        assert_eq!((&event[0], &event[1]), (&json!("vote"), &json!("yes?")), "{event}");
        asked.push(event[2].as_u64().expect("an ack id"));
    }
    a1.send(&json!(["$ack", asked[0], 1]).to_string()).await;
    b1.send(&json!(["$ack", asked[1], 2]).to_string()).await;
    let mut replies = within::<T, _>(WAIT, "the acks", acks).await;
    assert!(now::<T>() - started >= timeout, "c1 never replied, so the wait lasted the timeout");
    replies.sort_by_key(|(id, _)| [&a1.id, &b1.id, &c1.id].iter().position(|x| **x == id.as_str()));
    let replies: Vec<_> = replies.into_iter().map(|(id, r)| (id.to_string(), r)).collect();
    assert_eq!(replies, [(a1.id.clone(), Ok(1)), (b1.id.clone(), Ok(2)), (c1.id.clone(), Err(AckError::Timeout))]);

    // Everyone replies (a refusal too): the wait ends before the timeout.
    let started = now::<T>();
    let acks = b.hub.to("room").emit_with_ack::<u32, _>("vote", &(), timeout).expect("encoded");
    for (client, n) in [(&mut a1, 3), (&mut b1, 4)] {
        let id = client.next::<T>().await[2].as_u64().expect("an ack id");
        client.send(&json!(["$ack", id, n]).to_string()).await;
    }
    let id = c1.next::<T>().await[2].as_u64().expect("an ack id");
    c1.send(&json!(["$nack", id, "abstain"]).to_string()).await;
    let replies = within::<T, _>(WAIT, "the acks", acks).await;
    assert!(now::<T>() - started < timeout, "everyone replied");
    let mut got: Vec<_> = replies.into_iter().map(|(id, r)| (id.to_string(), r)).collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want =
        vec![(a1.id.clone(), Ok(3)), (b1.id.clone(), Ok(4)), (c1.id.clone(), Err(AckError::Refused("abstain".into())))];
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got, want);
}

/// A node cut off from the others (a crash, or its broker gone): local delivery carries on;
/// queries name it missing until `dead_after` has passed since its last frame, then leave it
/// out; its clients are not in the cluster's count. Healed, it is back in the view and
/// remote delivery resumes, and each side counts the published frames it missed.
pub async fn cluster_cut_node_gives_partial_results_then_leaves_the_view_within_the_bound<T: TestRuntime>() {
    let cluster = MemoryCluster::new();
    let [a, b, c] = three::<T>(&cluster).await;
    let (mut a1, mut b1, mut c1) = (a.client().await, b.client().await, c.client().await);
    let view = a.hub.cluster();
    assert_eq!(view.len().await.value, 3);

    let cut_at = now::<T>();
    cluster.cut("c");
    let len = view.len().await;
    assert_eq!((len.value, len.missing.clone()), (2, vec!["c".to_owned()]), "partial, and flagged");
    assert!(now::<T>() - cut_at >= TIMEOUT, "it waited the cluster timeout for c");
    assert!(!view.is_connected(&c1.id).await.is_complete());

    // Local delivery on every node carries on, c's too.
    c.hub.emit("local", &1).expect("encoded");
    assert_eq!(c1.next::<T>().await, json!(["local", 1]));
    a.hub.emit("remote", &1).expect("encoded");
    b.hub.emit("remote", &2).expect("encoded");
    assert_eq!(a1.next::<T>().await, json!(["remote", 1]));
    assert_eq!(b1.next::<T>().await, json!(["remote", 1]));
    assert_eq!(a1.next::<T>().await, json!(["remote", 2]));
    assert_eq!(b1.next::<T>().await, json!(["remote", 2]));

    // The bound: `dead_after` after c's last frame, c is out of the view, and queries are
    // complete again without it.
    sleep::<T>(DEAD_AFTER.saturating_sub(now::<T>() - cut_at) + Duration::from_millis(1)).await;
    assert_eq!(view.nodes(), ["b"]);
    let started = now::<T>();
    let len = view.len().await;
    assert_eq!((len.value, len.is_complete()), (2, true), "{len:?}");
    assert!(now::<T>() - started < TIMEOUT, "nobody left to wait for");

    // Healed: c is heard again at its next heartbeat, and remote emits reach it.
    cluster.heal("c");
    until::<T>("c is back in a's view", || view.nodes() == ["b", "c"]).await;
    a.hub.emit("remote", &3).expect("encoded");
    b.hub.emit("remote", &4).expect("encoded");
    for client in [&mut a1, &mut b1, &mut c1] {
        assert_eq!(client.next::<T>().await, json!(["remote", 3]), "client {}", client.id);
        assert_eq!(client.next::<T>().await, json!(["remote", 4]), "client {}", client.id);
    }
    // Nothing asked c alone meanwhile, so every frame it missed was one a or b published.
    assert!(cluster.lost("c") > 2, "two emits and some heartbeats");
    assert_eq!(c.hub.stats().remote_lost, cluster.lost("c"), "every frame a and b published meanwhile");
    assert!(a.hub.stats().remote_lost > 0, "a missed c's heartbeats");
    let len = view.len().await;
    assert_eq!((len.value, len.is_complete()), (3, true), "{len:?}");
}

/// A backplane that hands its inbox to the test, to deliver any bytes to the hub.
struct Tap(Arc<Mutex<Option<Inbox>>>);

impl Backplane for Tap {
    fn node(&self) -> &str {
        "tap"
    }
    fn start(&self, inbox: Inbox) {
        *self.0.lock().expect("not poisoned") = Some(inbox);
    }
    fn publish(&self, _frame: Bytes) {}
    fn send_to(&self, _node: &str, _frame: Bytes) {}
}

/// Frames that are not the hub's (truncated, a length past the end, JSON of another shape) are
/// counted and ignored; the hub's own frames coming back are ignored silently.
pub async fn cluster_frames_that_do_not_decode_are_counted_and_ignored<T: TestRuntime>() {
    let slot = Arc::new(Mutex::new(None));
    let hub = Hub::builder(T::runtime()).backplane(Tap(slot.clone())).build();
    let inbox = slot.lock().expect("not poisoned").clone().expect("the hub started its backplane");
    let bad: [&[u8]; 5] = [b"", b"\0\0", b"\xff\xff\xff\xff{}", b"\0\0\0\x02{}", b"\0\0\0\x0b{\"from\":1}x"];
    for frame in bad {
        inbox.deliver(frame);
    }
    let own = br#"{"from":"tap","boot":1,"seq":1,"direct":false,"body":"Heartbeat"}"#;
    let mut frame = (own.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(own);
    inbox.deliver(&frame);
    let stats = hub.stats();
    assert_eq!((stats.remote_malformed, stats.remote_in), (5, 0), "{stats:?}");
    assert!(hub.cluster().nodes().is_empty());

    // A frame from another node is read.
    let other = br#"{"from":"elsewhere","boot":1,"seq":1,"direct":false,"body":"Heartbeat"}"#;
    let mut frame = (other.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(other);
    inbox.deliver(&frame);
    assert_eq!(hub.stats().remote_in, 1);
    assert_eq!(hub.cluster().nodes(), ["elsewhere"]);
}

/// A hub that is dropped (a node shutting down) says goodbye: it leaves the others' views at
/// once, without waiting for `dead_after`.
pub async fn cluster_dropped_hub_says_goodbye_and_leaves_the_view_at_once<T: TestRuntime>() {
    let cluster = MemoryCluster::new();
    let a = Hub::builder(T::runtime()).backplane(cluster.node("a")).heartbeat(HEARTBEAT, DEAD_AFTER).build();
    let b = Hub::builder(T::runtime()).backplane(cluster.node("b")).heartbeat(HEARTBEAT, DEAD_AFTER).build();
    until::<T>("a knows b", || a.cluster().nodes() == ["b"]).await;
    drop(b);
    assert!(a.cluster().nodes().is_empty());
    let len = a.cluster().len().await;
    assert_eq!((len.value, len.is_complete()), (0, true));
}
