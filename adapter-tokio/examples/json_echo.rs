//! A JSON echo with a 30-minute cap, as one `select!` loop: every `Chat` message comes back as
//! it came, a message that is not valid JSON for `Chat` is reported and skipped, and after 30
//! minutes the server closes the connection, whatever the client does. `tests/json_echo_cap.rs`
//! runs `connection` against a client that never answers the close.
//!
//! ```text
//! cargo run -p ferrule-tokio --example json_echo [ADDR]   # default 127.0.0.1:9001
//! ```

use std::time::Duration;

use ferrule_tokio::{Channels, CloseCode, Json, Options, Request};

/// How long a connection may stay open.
pub(crate) const CAP: Duration = Duration::from_secs(30 * 60);

/// One chat message, as JSON: `{"user":"ann","text":"hi"}`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Chat {
    user: String,
    text: String,
}

/// Serves one connection.
pub(crate) async fn connection(_request: Request, mut ws: Channels<Json<Chat>>) {
    let cap = tokio::time::sleep(CAP);
    tokio::pin!(cap);
    loop {
        tokio::select! {
            // A message that is not valid JSON for `Chat` goes to `errors`, not here.
            Some(message) = ws.receiver.recv() => {
                if ws.sender.send(message).await.is_err() {
                    break; // closing
                }
            }
            Some(error) = ws.errors.recv() => println!("error: {error}"),
            () = &mut cap => {
                // Close after 30 minutes, whatever happens. Then leave the loop: a timer that
                // fired stays ready, so a loop that polled it again would spin until the end.
                let _ = ws.disconnect.disconnect(CloseCode::NORMAL, "time is up");
                break;
            }
            _ = ws.done.clone() => break,
        }
    }
    // Closing or closed. Dropping the receiver discards what still arrives, so a full receive
    // queue cannot stop the connection from reading the client's close; then wait for the end,
    // which the close timeout bounds.
    drop(ws.receiver);
    let info = ws.done.await;
    println!("closed: clean={} code={}", info.was_clean, info.code);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let server = ferrule_tokio::serve_channels(listener, Options::default(), connection);
    eprintln!("JSON echo listening on ws://{} (Ctrl-C stops it)", server.local_addr()?);
    tokio::signal::ctrl_c().await?;
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
