//! A client for the `chat` example: each line typed on stdin goes to the room, and every message
//! that arrives is printed. Start the server, then one client per terminal:
//!
//! ```text
//! cargo run --release -p ferrule-tokio --example chat
//! cargo run --release -p ferrule-tokio --example chat_client [URL]   # default ws://127.0.0.1:9001
//! ```
//!
//! Ctrl-D (the end of input) leaves the room with a close 1000.

use ferrule_tokio::{CloseCode, Options};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let mut ws = ferrule_tokio::connect(&url, &Options::default()).await?.channels::<String>();
    eprintln!("connected to {url}: type a line to send it, Ctrl-D to leave");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            message = ws.receiver.recv() => match message {
                Some(text) => println!("{text}"),
                None => break, // the connection ended
            },
            // `next_line` is cancel safe: a line half read when a message arrives is kept.
            line = lines.next_line() => match line? {
                Some(line) => {
                    if ws.sender.send(line).await.is_err() {
                        break; // closing
                    }
                }
                None => {
                    let _ = ws.disconnect.disconnect(CloseCode::NORMAL, "bye");
                    break;
                }
            },
        }
    }
    // Closing or closed. Dropping the receiver discards what still arrives, so a full receive
    // queue cannot stop the connection from reading the server's close; then wait for the end.
    drop(ws.receiver);
    let info = ws.done.await;
    eprintln!("closed: clean={} code={}", info.was_clean, info.code);
    Ok(())
}
