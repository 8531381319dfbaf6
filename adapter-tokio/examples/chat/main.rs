//! The chat demo: a page where people pick a name, join a room, see who is there, talk, and
//! watch the hub's live counts. One axum application serves the page, the hub's JavaScript client
//! (`ferrule::hub::CLIENT_JS`) and the WebSocket; Ctrl-C closes every WebSocket with 1001.
//!
//! ```text
//! cargo run -p ferrule-tokio --features axum --example chat [ADDR]   # default 127.0.0.1:8080
//! ```
//! Then open `http://127.0.0.1:8080/` in two browser windows.

mod app;

use std::time::Duration;

use ferrule_tokio::axum::Shutdown;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let hub = app::hub();
    let counts = app::push_counts(&hub);
    let shutdown = Shutdown::default();
    let router = app::router(hub, shutdown.clone());
    eprintln!("chat: open http://{}/ (Ctrl-C stops it)", listener.local_addr()?);
    axum::serve(listener, router).with_graceful_shutdown(async { _ = tokio::signal::ctrl_c().await }).await?;
    counts.abort();
    let still_open = shutdown.shutdown(Duration::from_secs(5)).await;
    eprintln!("stopped; {still_open} WebSocket(s) did not finish closing in time");
    Ok(())
}
