//! An axum application with an HTML page and its WebSocket on one port: a tiny broadcast-free
//! chat echo that greets each connection, using the channel API, and a graceful shutdown that
//! closes every WebSocket with 1001 Going Away.
//!
//! ```text
//! cargo run -p ferrule-tokio --features axum --example axum_app [ADDR]   # default 127.0.0.1:3000
//! ```
//! Then open `http://127.0.0.1:3000/` in a browser.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use ferrule_tokio::axum::{Shutdown, Upgrade};
use ferrule_tokio::{Channels, Options, Rejection};
use futures_util::{SinkExt, StreamExt};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>ferrule + axum</title>
<input id="text" placeholder="say something" autofocus>
<pre id="log"></pre>
<script>
  const log = (line) => document.getElementById("log").textContent += line + "\n";
  const ws = new WebSocket(`ws://${location.host}/ws?name=guest`);
  ws.onmessage = (event) => log("< " + event.data);
  ws.onclose = (event) => log(`closed: ${event.code} ${event.reason}`);
  document.getElementById("text").onkeydown = (event) => {
    if (event.key === "Enter") { ws.send(event.target.value); log("> " + event.target.value); event.target.value = ""; }
  };
</script>
"#;

#[derive(Clone)]
struct App {
    options: Options,
    shutdown: Shutdown,
}

async fn ws(State(app): State<App>, upgrade: Upgrade) -> Response {
    upgrade.options(app.options).shutdown(&app.shutdown).channels(
        |request, _acceptance| match request.query_param("name") {
            Some(name) => Ok(name.into_owned()),
            None => Err(Rejection::new(400, "who are you? add ?name=...\n")),
        },
        |name: String, mut channels: Channels<String>| async move {
            if channels.send(format!("hello, {name}")).await.is_err() {
                return;
            }
            while let Some(text) = channels.next().await {
                if channels.send(format!("{name} said: {text}")).await.is_err() {
                    return;
                }
            }
        },
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The default origin policy accepts only pages served from this host: the page above.
    let app = App { options: Options::default(), shutdown: Shutdown::default() };
    let shutdown = app.shutdown.clone();
    let router = Router::new().route("/", get(|| async { Html(PAGE) })).route("/ws", any(ws)).with_state(app);
    eprintln!("open http://{}/", listener.local_addr()?);
    // TCP_NODELAY, as ferrule's own servers set it: messages go out when written.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(async { _ = tokio::signal::ctrl_c().await }).await?;
    let still_open = shutdown.shutdown(Duration::from_secs(5)).await;
    eprintln!("stopped; {still_open} WebSocket(s) did not finish closing in time");
    Ok(())
}
