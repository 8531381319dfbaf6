//! A small broadcast chat: every text message a client sends goes to every other client, with a
//! join and leave notice. Messages to a client whose send buffer is full are dropped for that
//! client alone (a slow reader never holds up the room).
//!
//! ```text
//! cargo run --release -p ferrule-smol --example smol_chat [ADDR]   # default 127.0.0.1:9001
//! ```
//!
//! Try it from a browser console on any page:
//! `ws = new WebSocket("ws://127.0.0.1:9001"); ws.onmessage = e => console.log(e.data); ws.send("hi")`
//! (the demo accepts any Origin; a real server keeps the same-origin default).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferrule_smol::{CloseInfo, Ctx, Handle, Handler, HandlerError, Message, Options, OriginPolicy};

/// The members of the room.
#[derive(Default)]
struct Room {
    next_id: AtomicU64,
    members: Mutex<HashMap<u64, Handle>>,
}

impl Room {
    /// Sends `text` to every member but `from`.
    fn broadcast(&self, from: u64, text: &str) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for (&id, handle) in members.iter() {
            if id != from {
                // Full send buffer or closing: this member misses the message; the others don't.
                let _ = handle.try_send(Message::text(text));
            }
        }
    }
}

/// One member's connection.
struct Member {
    id: u64,
    room: Arc<Room>,
}

impl Handler for Member {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandlerError> {
        self.room.members.lock().unwrap_or_else(|e| e.into_inner()).insert(self.id, ctx.handle());
        ctx.send_text(&format!("welcome, you are user {}", self.id))?;
        self.room.broadcast(self.id, &format!("user {} joined", self.id));
        Ok(())
    }

    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        if let Message::Text(text) = message {
            self.room.broadcast(self.id, &format!("user {}: {}", self.id, text));
        }
        Ok(())
    }

    fn on_close(&mut self, _info: &CloseInfo) {
        self.room.members.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        self.room.broadcast(self.id, &format!("user {} left", self.id));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = smol::net::TcpListener::bind(&addr).await?;
    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build()?;
    let room = Arc::new(Room::default());
    let server = ferrule_smol::serve(listener, options, move |_, _| {
        Ok(Member { id: room.next_id.fetch_add(1, Ordering::Relaxed), room: room.clone() })
    });
    eprintln!("chat server listening on ws://{} (Ctrl-C stops it)", server.local_addr()?);
    let mut ctrl_c = async_signal::Signals::new([async_signal::Signal::Int])?;
    smol::stream::StreamExt::next(&mut ctrl_c).await;
    let left = server.shutdown(std::time::Duration::from_secs(5)).await;
    eprintln!("stopped ({left} connections did not close in time)");
    Ok(())
}
