//! An echo WebSocket inside a plain hyper 1.x server, HTTP/1.1 and HTTP/2 (h2c) on one port.
//!
//! ```text
//! cargo run -p ferrule-tokio --features hyper --example hyper_echo [ADDR]   # default 127.0.0.1:9001
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use ferrule_tokio::hyper::{UpgradeResponse, is_upgrade_request, upgrade};
use ferrule_tokio::{Ctx, Handler, HandlerError, Message, Options};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// Sends each message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

async fn handle(request: hyper::Request<Incoming>, options: Arc<Options>) -> Result<UpgradeResponse, Infallible> {
    if !is_upgrade_request(&request) {
        return Ok(hyper::Response::new(Full::new(Bytes::from_static(b"a WebSocket echo lives here\n"))));
    }
    match upgrade(request, &options, |_request, _acceptance| Ok(())) {
        Ok((response, pending, ())) => {
            // hyper switches the connection after the response has gone out.
            tokio::spawn(async move {
                match pending.await {
                    Ok(websocket) => {
                        websocket.run(Echo).await;
                    }
                    Err(error) => eprintln!("upgrade failed: {error}"),
                }
            });
            Ok(response)
        }
        Err(refused) => Ok(refused.response),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let options = Arc::new(Options::default());
    eprintln!("hyper echo listening on ws://{}", listener.local_addr()?);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // RFC 8441 section 3: announce extended CONNECT, or HTTP/2 clients cannot open WebSockets.
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    loop {
        let (stream, _) = listener.accept().await?;
        // TCP_NODELAY, as ferrule's own servers set it: messages go out when written.
        stream.set_nodelay(true)?;
        let (builder, options) = (builder.clone(), options.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, options.clone()));
            // `with_upgrades`: without it, hyper never hands over an HTTP/1.1 connection.
            if let Err(error) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                eprintln!("connection error: {error}");
            }
        });
    }
}
