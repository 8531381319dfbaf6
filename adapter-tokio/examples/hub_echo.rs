//! A hub on tokio: rooms, named events with typed payloads, an acknowledgement, and the stats.
//!
//! ```text
//! cargo run -p ferrule-tokio --example hub_echo [ADDR]   # default 127.0.0.1:9001
//! ```
//!
//! Try it from a browser console on any page (the wire format is in `ferrule::hub`'s docs):
//!
//! ```text
//! ws = new WebSocket("ws://127.0.0.1:9001"); ws.onmessage = e => console.log(e.data)
//! ws.send('["join", "lobby"]')                       // join a room
//! ws.send('["say", {"room": "lobby", "text": "hi"}]')  // everyone else in the lobby gets it
//! ws.send('["echo", "back to me"]')                  // comes back to this connection
//! ws.send('["add", [2, 3], 1]')                      // replies ["$ack",1,5]
//! ```

use std::time::Duration;

use ferrule_tokio::hub::{Hub, SlowRecipients, Socket};
use ferrule_tokio::{Options, OriginPolicy, Tokio};
use serde::{Deserialize, Serialize};

/// A line said in a room.
#[derive(Serialize, Deserialize)]
struct Say {
    room: String,
    text: String,
}

/// What the other members of the room receive.
#[derive(Serialize)]
struct Said<'a> {
    from: &'a str,
    text: &'a str,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let hub = Hub::builder(Tokio)
        // A chat line superseded by the next can be lost by a reader that cannot keep up.
        .slow_recipients(SlowRecipients::Drop)
        .on_connection(|socket: &Socket<Tokio>| {
            socket.join("lobby");
            Ok(())
        })
        .on("join", |socket: &Socket<Tokio>, room: String| {
            socket.join(&room);
            Ok(())
        })
        .on("say", |socket: &Socket<Tokio>, say: Say| {
            // Serialized once and framed once for every recipient.
            socket.to(&say.room).emit("said", &Said { from: socket.id(), text: &say.text })?;
            Ok(())
        })
        .on("echo", |socket: &Socket<Tokio>, value: serde_json::Value| {
            socket.emit("echo", &value)?;
            Ok(())
        })
        .on_with_ack("add", |_: &Socket<Tokio>, (a, b): (i64, i64)| Ok(a.saturating_add(b)))
        .on_leave(|socket: &Socket<Tokio>, room: &str| {
            let _ = socket.hub().to(room).emit("left", socket.id().as_str());
        })
        .on_error(|socket: &Socket<Tokio>, error| eprintln!("{}: {error}", socket.id()))
        .build();

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The demo accepts any Origin; a real server keeps the same-origin default.
    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build()?;
    let server = ferrule_tokio::serve(listener, options, hub.handler_factory());
    eprintln!("hub listening on ws://{}", server.local_addr()?);

    let stats_hub = hub.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let stats = stats_hub.stats();
            eprintln!(
                "{} connections, {} rooms, {} in, {} out, {} dropped",
                stats.connections, stats.rooms, stats.messages_in, stats.messages_out, stats.dropped
            );
        }
    });
    tokio::signal::ctrl_c().await?;
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
