//! An echo server: every message comes back as it came. The Autobahn TestSuite's testee.
//!
//! ```text
//! cargo run --release -p ferrule-tokio --example echo [ADDR]   # default 127.0.0.1:9001
//! cargo run --release -p ferrule-tokio --example echo [ADDR] --tls CERT.pem KEY.pem   # wss://
//! cargo run --release -p ferrule-tokio --example echo [ADDR] --channels   # the channel API
//! ```
//!
//! With `--tls`, it serves `wss://` with the certificate chain in `CERT.pem` (the server's own
//! certificate first) and the private key in `KEY.pem`. With `--channels`, each connection is
//! echoed by a task of its own through the channel API (`receiver.recv()`, then
//! `sender.send()`) instead of the callback handler, so that the benchmarks can measure what
//! the channels cost.

use ferrule_tokio::{Channels, Ctx, DeflateConfig, Handler, HandlerError, Message, Options, OriginPolicy, Request};

/// Sends each message back.
struct Echo;

/// Sends each message back through the channel API, until the connection closes.
async fn echo_channels(_request: Request, mut ws: Channels) {
    while let Some(message) = ws.receiver.recv().await {
        if ws.sender.send(message).await.is_err() {
            break; // closing
        }
    }
}

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

// One thread, as the peer servers in the side-by-side benchmark run.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { addr, tls, channels } = parse_args()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The test suite sends 16 MiB messages and no browser Origin. As a conformance testee it
    // accepts every permessage-deflate offer: any window a client asks of it (up to 15 bits),
    // any window the client chooses, and either end without context takeover (it keeps its own
    // context unless the client asks it not to). It compresses every message, however short:
    // kosoku 0.1.0 errors on an uncompressed echo in the cases of 16-byte messages (12.x.1,
    // 13.x.1), though RFC 7692 section 6.1 allows one.
    let compression = DeflateConfig::default()
        .server_max_window_bits(Some(15))
        .client_max_window_bits(None)
        .server_no_context_takeover(false)
        .min_compress_size(0);
    let options = Options::builder()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .allowed_origin(OriginPolicy::InsecureAllowAny)
        .compression(compression)
        .build()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let server = match (tls, channels) {
        (Some(tls), false) => ferrule_tokio::serve_tls(listener, std::sync::Arc::new(tls), options, |_, _| Ok(Echo)),
        (Some(tls), true) => {
            ferrule_tokio::serve_channels_tls(listener, std::sync::Arc::new(tls), options, echo_channels)
        }
        (None, false) => ferrule_tokio::serve(listener, options, |_, _| Ok(Echo)),
        (None, true) => ferrule_tokio::serve_channels(listener, options, echo_channels),
    };
    eprintln!("echo server listening on {scheme}://{}", server.local_addr()?);
    tokio::signal::ctrl_c().await?;
    server.shutdown(std::time::Duration::from_secs(5)).await;
    Ok(())
}

/// The command line.
struct Args {
    /// The address to listen on.
    addr: String,
    /// The TLS configuration, for `wss://`.
    tls: Option<ferrule_tokio::tls::rustls::ServerConfig>,
    /// Echo through the channel API rather than a callback handler.
    channels: bool,
}

/// `[ADDR] [--tls CERT.pem KEY.pem] [--channels]`.
fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut parsed = Args { addr: "127.0.0.1:9001".to_owned(), tls: None, channels: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--channels" => parsed.channels = true,
            "--tls" => {
                let (Some(cert), Some(key)) = (args.next(), args.next()) else {
                    return Err("usage: echo [ADDR] [--tls CERT.pem KEY.pem] [--channels]".into());
                };
                parsed.tls = Some(ferrule_tokio::tls::server_config_from_pem_files(cert, key)?);
            }
            _ => parsed.addr = arg,
        }
    }
    Ok(parsed)
}
