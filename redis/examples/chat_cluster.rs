//! The chat demo (`adapter-tokio/examples/chat/`, whose application this serves unchanged) on
//! several nodes: each process joins the others through Redis, so a page on one node talks to
//! pages on the others, sees them in the room's member list, and counts every node's
//! connections.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run -p ferrule-redis --example chat_cluster -- --listen 127.0.0.1:8081 --redis redis://127.0.0.1:6379/ &
//! cargo run -p ferrule-redis --example chat_cluster -- --listen 127.0.0.1:8082 --redis redis://127.0.0.1:6379/
//! ```
//!
//! Then open `http://127.0.0.1:8081/` and `http://127.0.0.1:8082/`. Options: `[--listen] ADDR`
//! (default 127.0.0.1:8080), `--redis URL` (without it, one node as the chat example), `--node
//! NAME` (unique in the cluster; random by default).

#[path = "../../adapter-tokio/examples/chat/app.rs"]
pub(crate) mod app;

use std::future::Future;

use ferrule_redis::{RedisBackplane, RedisConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(app::Args::from_env(), async { _ = tokio::signal::ctrl_c().await }).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves the chat as `args` say until `stop` completes: on its own, or as a node of the
/// cluster of the nodes on the same Redis.
pub(crate) async fn run(
    args: app::Args,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let mut hub = app::builder();
    if let Some(url) = args.redis {
        let node = args.node.unwrap_or_else(|| format!("chat-{}", ferrule::hub::ConnId::random()));
        hub = hub.backplane(RedisBackplane::new(RedisConfig::new(url.clone(), node.clone()))?);
        eprintln!("chat: node {node} of the cluster on {url}");
    }
    app::serve(listener, hub.build(), stop).await?;
    Ok(())
}
