//! An echo server: every message comes back as it came. The Autobahn TestSuite's testee.
//!
//! ```text
//! cargo run --release -p ferrule-smol --example smol_echo [ADDR]   # default 127.0.0.1:9001
//! cargo run --release -p ferrule-smol --example smol_echo [ADDR] --tls CERT.pem KEY.pem   # wss://
//! ```
//!
//! With `--tls`, it serves `wss://` with the certificate chain in `CERT.pem` (the server's own
//! certificate first) and the private key in `KEY.pem`.

use ferrule_smol::{Ctx, DeflateConfig, Handler, HandlerError, Message, Options, OriginPolicy};

/// Sends each message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

// One thread, as the peer servers in the side-by-side benchmark run: smol's global executor has
// one thread (unless SMOL_THREADS says otherwise) that runs every task and the I/O reactor. This
// thread only waits for it: `future::block_on` does not poll the reactor, so it does not compete.
fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    smol::future::block_on(smol::spawn(run()))
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (addr, tls) = parse_args()?;
    let listener = smol::net::TcpListener::bind(&addr).await?;
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
    let server = match tls {
        Some(tls) => ferrule_smol::serve_tls(listener, std::sync::Arc::new(tls), options, |_, _| Ok(Echo)),
        None => ferrule_smol::serve(listener, options, |_, _| Ok(Echo)),
    };
    eprintln!("echo server listening on {scheme}://{}", server.local_addr()?);
    let mut ctrl_c = async_signal::Signals::new([async_signal::Signal::Int])?;
    smol::stream::StreamExt::next(&mut ctrl_c).await;
    server.shutdown(std::time::Duration::from_secs(5)).await;
    Ok(())
}

/// `[ADDR] [--tls CERT.pem KEY.pem]`: the address to listen on, and the TLS configuration.
fn parse_args()
-> Result<(String, Option<ferrule_smol::tls::rustls::ServerConfig>), Box<dyn std::error::Error + Send + Sync>> {
    let mut addr = "127.0.0.1:9001".to_owned();
    let mut tls = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg != "--tls" {
            addr = arg;
            continue;
        }
        let (Some(cert), Some(key)) = (args.next(), args.next()) else {
            return Err("usage: smol_echo [ADDR] [--tls CERT.pem KEY.pem]".into());
        };
        tls = Some(ferrule_smol::tls::server_config_from_pem_files(cert, key)?);
    }
    Ok((addr, tls))
}
