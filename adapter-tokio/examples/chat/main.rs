//! The chat demo: a page where people pick a name, join a room, see who is there, talk, and
//! watch the hub's live counts. One axum application serves the page, the hub's JavaScript client
//! (`ferrule::hub::CLIENT_JS`) and the WebSocket; Ctrl-C closes every WebSocket with 1001.
//!
//! ```text
//! cargo run -p ferrule-tokio --features axum --example chat -- [[--listen] ADDR]   # default 127.0.0.1:8080
//! ```
//! Then open `http://127.0.0.1:8080/` in two browser windows.
//!
//! The same chat on several nodes through Redis (`--redis`) is ferrule-redis's `chat_cluster`
//! example, so that this one builds without a Redis client.

mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = app::Args::from_env();
    if args.redis.is_some() {
        eprintln!(
            "--redis: the cluster variant is ferrule-redis's example:\n  \
             cargo run -p ferrule-redis --example chat_cluster -- --listen ADDR --redis URL"
        );
        return std::process::ExitCode::from(2);
    }
    let served = async {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        app::serve(listener, app::hub(), async { _ = tokio::signal::ctrl_c().await }).await
    };
    match served.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
