//! The chat demo's application: the hub (rooms, presence, messages, live counts), the axum
//! router that serves the page, the hub's JavaScript client and the WebSocket on one port, and
//! the server's life (options, Ctrl-C, closing every WebSocket with 1001). Kept apart from
//! `main.rs` so that the cluster variant (`redis/examples/chat_cluster.rs`, the same chat through
//! a Redis backplane) and the browser tests (`tests/tests/interop_browser.rs`) serve the same
//! application.
//!
//! Everything a page sees is cluster-wide when the hub has a backplane: messages, notices and
//! presence go to the room on every node, the member list is a roll call answered by the pages of
//! every node, a line's acknowledgement counts the pages on every node that confirmed it, and
//! the connection count is the cluster's. With one hub, the same code serves one node.

// Each program that includes this module uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use ferrule_tokio::axum::{Shutdown, Upgrade};
use ferrule_tokio::hub::{BoxError, CLIENT_JS, CLIENT_TS, Hub, HubBuilder, SlowRecipients, Socket};
use ferrule_tokio::{Options, Tokio};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// The page: HTML, CSS and a module script that imports the hub client from `/ferrule-hub.js`.
const PAGE: &str = include_str!("index.html");

/// The longest name, room name and message, in characters.
const MAX_NAME: usize = 24;
const MAX_TEXT: usize = 500;

/// How long a roll call waits for the pages of the room, and a line for its confirmations: a
/// page that has not answered by then is left out (a page that went away answers at once, with
/// its connection's end).
const ROLL_CALL: Duration = Duration::from_secs(10);
const CONFIRM: Duration = Duration::from_secs(10);

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

/// `say`: a line, and the page's own number for it (to match its `delivered`).
#[derive(Deserialize)]
struct Say {
    text: String,
    line: u64,
}

/// One person in a room, as the page lists them.
#[derive(Serialize)]
struct Presence {
    id: String,
    name: String,
}

/// A line said in a room.
#[derive(Serialize)]
struct Said<'a> {
    id: &'a str,
    from: &'a str,
    text: &'a str,
}

/// How many other pages confirmed they got line `line`, and how many did not in time.
#[derive(Serialize)]
struct Delivered {
    line: u64,
    others: usize,
    unconfirmed: usize,
}

/// A join or a leave, as a line in the room.
#[derive(Serialize)]
struct Notice<'a> {
    name: &'a str,
    joined: bool,
}

/// The hub's counts, pushed to every page each second: nodes and connections over the
/// cluster, the rest this node's.
#[derive(Serialize)]
struct Counts {
    nodes: usize,
    connections: usize,
    rooms: usize,
    messages_in: u64,
    messages_out: u64,
    dropped: u64,
}

/// The chat's hub, for a backplane to be added or not: `join` (acknowledged with the room's
/// name), `say` (acknowledged at once, then `delivered` once the room's other pages confirmed
/// it), and presence pushed as `members` to the room on every join and leave.
pub(crate) fn builder() -> HubBuilder<Tokio> {
    let roll_calls = Arc::new(RollCalls::default());
    let on_leave_calls = roll_calls.clone();
    Hub::builder(Tokio)
        // A page that cannot keep up loses chat lines rather than holding up the room.
        .slow_recipients(SlowRecipients::Drop)
        .on_with_ack("join", move |socket: &Socket<Tokio>, join: Join| {
            let name = checked("name", &join.name, MAX_NAME)?;
            let room = checked("room", &join.room, MAX_NAME)?;
            // One room at a time: leaving the old one tells its members.
            socket.leave_all();
            socket.insert(Member { name: name.into(), room: room.into() });
            socket.join(room);
            socket.to(room).emit("notice", &Notice { name, joined: true })?;
            roll_calls.start(socket.hub(), room)?;
            Ok(room.to_owned())
        })
        .on_with_ack("say", |socket: &Socket<Tokio>, say: Say| {
            let member = socket.get::<Member>().ok_or("join a room first")?;
            let text = checked("message", &say.text, MAX_TEXT)?;
            let said = Said { id: socket.id(), from: &member.name, text };
            // Each other page of the room, on whichever node, acknowledges the line once shown.
            let confirmations = socket.to(&member.room).emit_with_ack::<IgnoredAny, _>("message", &said, CONFIRM)?;
            let (hub, me, line) = (socket.hub().clone(), socket.id().to_string(), say.line);
            tokio::spawn(async move {
                let replies = confirmations.await;
                let others = replies.iter().filter(|(_, reply)| reply.is_ok()).count();
                let delivered = Delivered { line, others, unconfirmed: replies.len() - others };
                let _ = hub.to(&me).emit("delivered", &delivered);
            });
            Ok(())
        })
        .on_leave(move |socket: &Socket<Tokio>, room: &str| {
            let Some(member) = socket.get::<Member>() else { return };
            if &*member.room == room {
                let _ = socket.hub().to(room).emit("notice", &Notice { name: &member.name, joined: false });
                let _ = on_leave_calls.start(socket.hub(), room);
            }
        })
        .on_error(|socket: &Socket<Tokio>, error| eprintln!("{}: {error}", socket.id()))
}

/// The chat's hub on one node.
pub(crate) fn hub() -> Hub<Tokio> {
    builder().build()
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

/// This node's roll calls: presence as the pages of every node answer it. The hub's
/// cluster-wide queries give a room's connection ids, not what each node stores about them, so
/// each call asks every page in the room, on every node, for its name (`who`, acknowledged with
/// the name it joined with, checked as a `join` checks it) and sends the room the list of those
/// that answered.
///
/// Calls are numbered: a call that finishes after a newer one of the same room (its pages
/// answered later) sends nothing, so this node never replaces a list with an older one.
#[derive(Default)]
struct RollCalls {
    started: AtomicU64,
    /// By room, the number of the call whose list went out last; a room is forgotten when its
    /// list is empty.
    sent: Mutex<HashMap<String, u64>>,
}

impl RollCalls {
    /// Starts a roll call of `room`; its list goes out once every page answered, or at
    /// [`ROLL_CALL`].
    fn start(self: &Arc<Self>, hub: &Hub<Tokio>, room: &str) -> Result<(), BoxError> {
        let number = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let answers = hub.to(room).emit_with_ack::<String, _>("who", &(), ROLL_CALL)?;
        let (calls, hub, room) = (self.clone(), hub.clone(), room.to_owned());
        tokio::spawn(async move {
            let mut list: Vec<Presence> = answers
                .await
                .into_iter()
                .filter_map(|(id, name)| {
                    let name = checked("name", &name.ok()?, MAX_NAME).ok()?.to_owned();
                    Some(Presence { id: id.to_string(), name })
                })
                .collect();
            list.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            // Under the lock, so that two lists of one room go out in their calls' order.
            let mut sent = calls.sent.lock().unwrap_or_else(|e| e.into_inner());
            let last = sent.get(&room).copied().unwrap_or(0);
            if number > last {
                let _ = hub.to(&room).emit("members", &list);
                if list.is_empty() {
                    sent.remove(&room);
                } else {
                    sent.insert(room, number);
                }
            }
        });
        Ok(())
    }
}

/// Pushes the counts to every page of this node once a second, for as long as the hub lives.
pub(crate) fn push_counts(hub: &Hub<Tokio>) -> tokio::task::JoinHandle<()> {
    let hub = hub.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let cluster = hub.cluster();
            // This node's count and every other node's that answers in time.
            let connections = cluster.len().await.value;
            let s = hub.stats();
            let counts = Counts {
                nodes: cluster.nodes().len() + 1,
                connections,
                rooms: s.rooms.saturating_sub(s.connections), // not each connection's own room
                messages_in: s.messages_in,
                messages_out: s.messages_out,
                dropped: s.dropped,
            };
            // To this node's pages only: every node sends its own.
            for socket in hub.sockets() {
                let _ = socket.emit("counts", &counts);
            }
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

/// Serves the chat on `listener` with `hub` until `stop` completes, then closes every
/// WebSocket with 1001 (giving them 5 s).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    hub: Hub<Tokio>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let counts = push_counts(&hub);
    let shutdown = Shutdown::default();
    let router = router(hub, shutdown.clone());
    eprintln!("chat: open http://{}/", listener.local_addr()?);
    // TCP_NODELAY, as ferrule's own servers set it: messages go out when written.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(stop).await?;
    counts.abort();
    let still_open = shutdown.shutdown(Duration::from_secs(5)).await;
    eprintln!("stopped; {still_open} WebSocket(s) did not finish closing in time");
    Ok(())
}

/// The command line: `[--listen] ADDR` (default 127.0.0.1:8080), `--redis URL` and `--node NAME`
/// (the cluster variant's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) listen: String,
    pub(crate) redis: Option<String>,
    pub(crate) node: Option<String>,
}

/// What `--help` and a bad command line print.
pub(crate) const USAGE: &str = "usage: chat [[--listen] ADDR] [--redis redis://HOST:PORT/ [--node NAME]]\n\
    ADDR defaults to 127.0.0.1:8080; --redis joins the nodes of that Redis \
    (NAME, unique in the cluster, defaults to a random one)";

impl Args {
    /// The process's arguments; `--help` prints the usage and exits, a bad command line prints
    /// why and exits with 2.
    pub(crate) fn from_env() -> Self {
        Self::parse(std::env::args().skip(1)).unwrap_or_else(|message| {
            eprintln!("{message}");
            std::process::exit(if message == USAGE { 0 } else { 2 })
        })
    }

    /// Parses the arguments after the program's name.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self { listen: "127.0.0.1:8080".to_owned(), redis: None, node: None };
        let mut listen = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with('-') {
                if listen.replace(arg).is_some() {
                    return Err(format!("one listen address only\n{USAGE}"));
                }
                continue;
            }
            let slot = match arg.as_str() {
                "--listen" => &mut listen,
                "--redis" => &mut parsed.redis,
                "--node" => &mut parsed.node,
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            };
            let value = args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
            if slot.replace(value).is_some() {
                return Err(format!("{arg} given twice\n{USAGE}"));
            }
        }
        if parsed.node.is_some() && parsed.redis.is_none() {
            return Err(format!("--node names a node of a cluster: it needs --redis\n{USAGE}"));
        }
        parsed.listen = listen.unwrap_or(parsed.listen);
        Ok(parsed)
    }
}
