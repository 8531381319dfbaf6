//! The chat demo's application: the hub (rooms, presence, messages, live counts) and the axum
//! router that serves the page, the hub's JavaScript client and the WebSocket on one port. Kept
//! apart from `main.rs` so that the browser test (`tests/tests/interop_browser.rs`) serves the same
//! application.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, Response};
use axum::routing::{any, get};
use ferrule_tokio::axum::{Shutdown, Upgrade};
use ferrule_tokio::hub::{BoxError, CLIENT_JS, CLIENT_TS, Hub, SlowRecipients, Socket};
use ferrule_tokio::{Options, Tokio};
use serde::{Deserialize, Serialize};

/// The page: HTML, CSS and a module script that imports the hub client from `/ferrule-hub.js`.
const PAGE: &str = include_str!("index.html");

/// The longest name, room name and message, in characters.
const MAX_NAME: usize = 24;
const MAX_TEXT: usize = 500;

/// Who a connection is, once it has joined.
#[derive(Clone)]
struct Member {
    name: Arc<str>,
    room: Arc<str>,
}

/// `join`: the name to go by and the room to enter.
#[derive(Deserialize)]
struct Join {
    name: String,
    room: String,
}

/// One person in a room, as the page lists them.
#[derive(Serialize)]
struct Presence<'a> {
    id: &'a str,
    name: &'a str,
}

/// A line said in a room.
#[derive(Serialize)]
struct Said<'a> {
    id: &'a str,
    from: &'a str,
    text: &'a str,
}

/// A join or a leave, as a line in the room.
#[derive(Serialize)]
struct Notice<'a> {
    name: &'a str,
    joined: bool,
}

/// The hub's counts, pushed to every page each second.
#[derive(Serialize)]
struct Counts {
    connections: usize,
    rooms: usize,
    messages_in: u64,
    messages_out: u64,
    dropped: u64,
}

/// The chat's hub: `join` (acknowledged with the room's members), `say` (acknowledged with how
/// many others it reached), presence pushed as `members` to the room on every join and leave.
pub(crate) fn hub() -> Hub<Tokio> {
    Hub::builder(Tokio)
        // A page that cannot keep up loses chat lines rather than holding up the room.
        .slow_recipients(SlowRecipients::Drop)
        .on_with_ack("join", |socket: &Socket<Tokio>, join: Join| {
            let name = checked("name", &join.name, MAX_NAME)?;
            let room = checked("room", &join.room, MAX_NAME)?;
            // One room at a time: leaving the old one tells its members.
            socket.leave_all();
            socket.insert(Member { name: name.into(), room: room.into() });
            socket.join(room);
            socket.to(room).emit("notice", &Notice { name, joined: true })?;
            send_members(socket.hub(), room)?;
            Ok(room.to_owned())
        })
        .on_with_ack("say", |socket: &Socket<Tokio>, text: String| {
            let member = socket.get::<Member>().ok_or("join a room first")?;
            let text = checked("message", &text, MAX_TEXT)?;
            let said = Said { id: socket.id(), from: &member.name, text };
            let delivery = socket.hub().to(&member.room).emit("message", &said)?;
            // The sender is one of the recipients.
            Ok(delivery.recipients().saturating_sub(1))
        })
        .on_leave(|socket: &Socket<Tokio>, room: &str| {
            let Some(member) = socket.get::<Member>() else { return };
            if &*member.room == room {
                let _ = socket.hub().to(room).emit("notice", &Notice { name: &member.name, joined: false });
                let _ = send_members(socket.hub(), room);
            }
        })
        .on_error(|socket: &Socket<Tokio>, error| eprintln!("{}: {error}", socket.id()))
        .build()
}

/// Trims `value` and checks it is 1 to `max` characters long.
fn checked<'a>(what: &str, value: &'a str, max: usize) -> Result<&'a str, BoxError> {
    let value = value.trim();
    match value.chars().count() {
        0 => Err(format!("the {what} is empty").into()),
        n if n > max => Err(format!("the {what} is longer than {max} characters").into()),
        _ => Ok(value),
    }
}

/// Sends the members of `room` to the room.
fn send_members(hub: &Hub<Tokio>, room: &str) -> Result<(), BoxError> {
    let sockets = hub.sockets_in(room);
    let members: Vec<(String, Member)> =
        sockets.iter().filter_map(|s| Some((s.id().to_string(), s.get::<Member>()?))).collect();
    let list: Vec<Presence<'_>> = members.iter().map(|(id, m)| Presence { id, name: &m.name }).collect();
    hub.to(room).emit("members", &list)?;
    Ok(())
}

/// Pushes the hub's counts to every page once a second, for as long as the hub lives.
pub(crate) fn push_counts(hub: &Hub<Tokio>) -> tokio::task::JoinHandle<()> {
    let hub = hub.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let s = hub.stats();
            let counts = Counts {
                connections: s.connections,
                rooms: s.rooms.saturating_sub(s.connections), // not each connection's own room
                messages_in: s.messages_in,
                messages_out: s.messages_out,
                dropped: s.dropped,
            };
            let _ = hub.emit("counts", &counts);
        }
    })
}

#[derive(Clone)]
struct App {
    hub: Hub<Tokio>,
    options: Options,
    shutdown: Shutdown,
}

/// The application: `/` the page, `/ferrule-hub.js` and `/ferrule-hub.d.ts` the client, `/ws`
/// the hub. `shutdown` closes its WebSockets with 1001 when the server stops.
pub(crate) fn router(hub: Hub<Tokio>, shutdown: Shutdown) -> Router {
    // The default origin policy accepts only pages served from this host: this one.
    let app = App { hub, options: Options::default(), shutdown };
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ferrule-hub.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], CLIENT_JS) }))
        .route("/ferrule-hub.d.ts", get(|| async { ([(header::CONTENT_TYPE, "application/typescript")], CLIENT_TS) }))
        .route("/ws", any(websocket))
        .with_state(app)
}

async fn websocket(State(app): State<App>, upgrade: Upgrade) -> Response {
    upgrade.options(app.options).shutdown(&app.shutdown).run(app.hub.handler_factory())
}
