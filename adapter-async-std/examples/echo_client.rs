//! The Autobahn TestSuite client testee: asks the fuzzing server how many cases there are, runs
//! each one by echoing every message back, then asks it to write the reports. With PARALLEL
//! above 1, that many cases run at once (each on its own connection; the fuzzing server keeps
//! them apart by case number), which shortens a run that mostly waits on the cases' timers.
//!
//! ```text
//! cargo run --release -p ferrule-async-std --example echo_client [URL [PARALLEL]]   # default ws://127.0.0.1:9001, 1
//! ```

use ferrule_async_std::{Ctx, DeflateConfig, Handler, HandlerError, Message, Options};

const AGENT: &str = "ferrule";

/// Sends each message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    async_std::task::block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    // As a conformance testee it offers permessage-deflate and takes whatever the server answers:
    // it does not limit the server's window, and offers `client_max_window_bits` without a value
    // so the server may limit the client's, and lets the server keep its context. It offers
    // `client_no_context_takeover`, the RFC 7692 section 7.1.1.2 hint that it can do without:
    // the fuzzing server asks for no context takeover (cases 13.2, 13.5, 13.6) only of a client
    // that offers it, and otherwise declines compression, which scores UNIMPLEMENTED. It
    // compresses every message, however short (see the echo example: kosoku 0.1.0 errors on an
    // uncompressed echo of a 16-byte message).
    let compression = DeflateConfig::default()
        .server_max_window_bits(None)
        .client_max_window_bits(Some(15))
        .server_no_context_takeover(false)
        .client_no_context_takeover(true)
        .min_compress_size(0);
    let options =
        Options::builder().max_message_size(64 << 20).max_frame_size(64 << 20).compression(compression).build()?;

    let conn = ferrule_async_std::connect(&format!("{base}/getCaseCount"), &options).await?;
    let (tx, rx) = std::sync::mpsc::channel();
    /// Forwards the text message that carries the case count.
    struct Count(std::sync::mpsc::Sender<String>);
    impl Handler for Count {
        fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
            if let Message::Text(t) = message {
                let _ = self.0.send(t.to_string());
            }
            Ok(())
        }
    }
    conn.run(Count(tx)).await;
    let count: u32 = rx.try_recv()?.trim().parse()?;
    let parallel: u32 = std::env::args().nth(2).map_or(Ok(1), |p| p.parse())?;
    eprintln!("running {count} cases, {parallel} at a time");

    let next = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(1));
    let workers: Vec<_> = (0..parallel.max(1))
        .map(|_| {
            let (next, base, options) = (next.clone(), base.clone(), options.clone());
            async_std::task::spawn(async move {
                loop {
                    let case = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if case > count {
                        break;
                    }
                    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
                    match ferrule_async_std::connect(&url, &options).await {
                        Ok(conn) => {
                            conn.run(Echo).await;
                        }
                        Err(e) => eprintln!("case {case}: {e}"),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await;
    }

    let conn = ferrule_async_std::connect(&format!("{base}/updateReports?agent={AGENT}"), &options).await?;
    conn.run(Echo).await;
    eprintln!("reports updated");
    Ok(())
}
