//! Three hubs in this process, each served on its own port with its own Redis connection, against
//! a `redis-server` each test starts on a free port (no persistence, its own directory) and stops
//! at the end, on each runtime (tokio, smol, async-std): room emits, cluster-wide counts and
//! disconnect by id, an ack from a client on another node, Redis restarted mid-test, foreign
//! messages on the channel; on tokio, a node killed without a goodbye. Then the same hubs
//! against a Redis Cluster of three masters, through sharded pub/sub. What runs how is in
//! `common/`.
//!
//! With all of ferrule-redis's runtime features on (as here), redis-rs runs on tokio inside a
//! tokio runtime and on async-std elsewhere (smol included); `smol_comp.rs` runs the smol and
//! async-std tests with redis-rs on smol.

#[allow(dead_code)]
#[macro_use]
mod common;

use common::*;
use ferrule_redis::{RedisBackplane, RedisBackplaneError, RedisConfig};

mod on_tokio {
    redis_suite!(TokioRuntime);

    /// A node killed without a goodbye (its runtime stopped: its tasks and its Redis connection
    /// gone): once `dead_after` has passed since the others last heard from it, it is out of
    /// their view, and cluster-wide queries are complete again without its connections.
    #[test]
    fn redis_killed_node_leaves_the_cluster_view_within_the_bound() {
        run(|| async {
            let Some(redis) = Redis::start::<TokioRuntime>().await else { return };
            let a = Node::<TokioRuntime>::start(&redis, "a", PubSub::Plain).await;
            let b = Node::<TokioRuntime>::start(&redis, "b", PubSub::Plain).await;
            let doomed =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
            let config = RedisConfig::new(redis.url(), "c");
            let port = redis.port;
            let c = doomed
                .spawn(async move { Node::<TokioRuntime>::start_on(config, port).await })
                .await
                .expect("node c started");
            let nodes = [&a, &b, &c];
            until::<TokioRuntime>("every node knows the others", || {
                nodes.iter().all(|n| n.hub.cluster().nodes().len() == 2)
            })
            .await;
            let (_a1, _b1, _c1, _c2) = (a.client().await, b.client().await, c.client().await, c.client().await);
            let len = a.hub.cluster().len().await;
            assert_eq!((len.value, len.is_complete()), (4, true), "{len:?}");

            doomed.shutdown_background();
            until::<TokioRuntime>("c is out of a's and b's views", || {
                a.hub.cluster().nodes() == ["b"] && b.hub.cluster().nodes() == ["a"]
            })
            .await;
            let len = a.hub.cluster().len().await;
            assert_eq!((len.value, len.is_complete()), (2, true), "{len:?}");
            drop(c);
        });
    }
}

mod on_smol {
    redis_suite!(SmolRuntime);
}

mod on_async_std {
    redis_suite!(AsyncStdRuntime);
}

/// A URL that is not Redis's (or a Redis Cluster without a seed) is a typed error, as is [`RedisBackplane::new`] outside a tokio
/// runtime (the other runtimes go through [`RedisBackplane::with_runtime`]).
#[test]
fn redis_backplane_errors_are_typed() {
    let new = RedisBackplane::new(RedisConfig::new("redis://127.0.0.1/", "a"));
    assert!(matches!(new, Err(RedisBackplaneError::NoRuntime)), "{new:?}");
    let no_seed: [&str; 0] = [];
    let configs = [
        RedisConfig::new("http://nowhere/", "a"),
        RedisConfig::cluster(["nowhere"], "a"),
        RedisConfig::cluster(no_seed, "a"),
    ];
    for config in configs {
        let made = RedisBackplane::with_runtime(ferrule_smol::Smol, config);
        assert!(matches!(made, Err(RedisBackplaneError::Url(_))), "{made:?}");
    }
}
