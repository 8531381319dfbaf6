//! Fan-out through the hub: every native text message a client sends goes, unchanged, to every
//! other connected client (the hub's broadcast-but-me). The fan-out benchmark's server.
//!
//! ```text
//! cargo run --release -p ferrule-tokio --example fanout [ADDR]   # default 127.0.0.1:9001
//! ```
//!
//! Each client first receives the hub's greeting `["$open", {"v": 1, "id": ...}]`; after that,
//! what the others send. A text message that starts with `[` is a hub event, not a native
//! message (see `ferrule::hub`), so it is not relayed.

use std::time::Duration;

use ferrule_tokio::hub::{Hub, SlowRecipients, Socket};
use ferrule_tokio::{Message, Options, OriginPolicy, Tokio};

// One thread, as the peer servers in the fan-out benchmark run.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let hub = Hub::builder(Tokio)
        // A subscriber that cannot keep up loses messages rather than holding up the others.
        .slow_recipients(SlowRecipients::Drop)
        .on_native(|socket: &Socket<Tokio>, message: &Message| {
            if let Message::Text(_) = message {
                // Framed once; every other connection queues the same bytes by reference.
                socket.broadcast().send(message.clone());
            }
        })
        .build();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // Load generators send no Origin; any is accepted.
    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build()?;
    let server = ferrule_tokio::serve(listener, options, hub.handler_factory());
    eprintln!("fanout listening on ws://{}", server.local_addr()?);
    tokio::signal::ctrl_c().await?;
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
