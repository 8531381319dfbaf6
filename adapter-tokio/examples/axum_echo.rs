//! The echo server of `examples/echo.rs` inside axum: every message comes back as it came, at
//! any path, over HTTP/1.1 and HTTP/2. The Autobahn TestSuite's testee through axum.
//!
//! ```text
//! cargo run --release -p ferrule-tokio --features axum --example axum_echo [ADDR]   # default 127.0.0.1:9001
//! ```

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::serve::ListenerExt;
use ferrule_tokio::axum::{Shutdown, Upgrade};
use ferrule_tokio::{Ctx, DeflateConfig, Handler, HandlerError, Message, Options, OriginPolicy};

/// Sends each message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

async fn echo(State((options, shutdown)): State<(Options, Shutdown)>, upgrade: Upgrade) -> Response {
    upgrade.options(options).shutdown(&shutdown).run(|_, _| Ok(Echo))
}

// One thread, as the echo example.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The limits and compression of the echo example: 16 MiB messages from the test suite, no
    // browser Origin, every permessage-deflate offer accepted, every message compressed.
    let compression =
        DeflateConfig::default().server_max_window_bits(Some(15)).client_max_window_bits(None).min_compress_size(0);
    let options = Options::builder()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .allowed_origin(OriginPolicy::InsecureAllowAny)
        .compression(compression)
        .build()?;
    let shutdown = Shutdown::default();
    // Any method at any path: the upgrade is a GET on HTTP/1.1 and a CONNECT on HTTP/2.
    let app = axum::Router::new().fallback(echo).with_state((options, shutdown.clone()));
    eprintln!("axum echo server listening on ws://{}", listener.local_addr()?);
    // TCP_NODELAY, as ferrule's own servers set it: the driver coalesces what it writes, so
    // Nagle's algorithm would only hold back the end of each write.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(async { _ = tokio::signal::ctrl_c().await }).await?;
    // axum no longer tracks upgraded connections: close them with 1001.
    shutdown.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
