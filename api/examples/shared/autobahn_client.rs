//! The Autobahn TestSuite client testee that every adapter's `echo_client` example runs: asks
//! the fuzzing server how many cases there are, runs each one by echoing every message back,
//! then asks it to write the reports. With PARALLEL above 1, that many cases run at once (each
//! on its own connection; the fuzzing server keeps them apart by case number), which shortens a
//! run that mostly waits on the cases' timers.
//!
//! Included by each adapter's example with `#[path]`; only the runtime's `connect` differs.

use std::error::Error;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::task::Poll;

use ferrule::{Ctx, DeflateConfig, Handler, HandlerError, Message, Options, Runtime, Upgraded};
use futures_io::{AsyncRead, AsyncWrite};

const AGENT: &str = "ferrule";

/// Sends each message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

/// Forwards the text message that carries the case count.
struct Count(mpsc::Sender<String>);

impl Handler for Count {
    fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        if let Message::Text(t) = message {
            let _ = self.0.send(t.to_string());
        }
        Ok(())
    }
}

/// Runs the testee against the fuzzing server at the first argument (default
/// `ws://127.0.0.1:9001`), the second argument's number of cases at once (default 1), each
/// connection made by `connect(url, options)`.
pub(crate) async fn run<C, F, S, R>(connect: C) -> Result<(), Box<dyn Error>>
where
    C: Fn(String, Options) -> F,
    F: Future<Output = Result<Upgraded<S, R>, ferrule::Error>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let parallel: u32 = std::env::args().nth(2).map_or(Ok(1), |p| p.parse())?;
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

    let (tx, rx) = mpsc::channel();
    connect(format!("{base}/getCaseCount"), options.clone()).await?.run(Count(tx)).await;
    let count: u32 = rx.try_recv()?.trim().parse()?;
    eprintln!("running {count} cases, {parallel} at a time");

    // `parallel` workers take the next case number until none is left; they run together in
    // this task, each case's connection driven by the worker that opened it.
    let next = AtomicU32::new(1);
    let mut workers: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = (0..parallel.max(1))
        .map(|_| {
            let (next, base, options, connect) = (&next, &base, &options, &connect);
            Box::pin(async move {
                loop {
                    let case = next.fetch_add(1, Ordering::Relaxed);
                    if case > count {
                        break;
                    }
                    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
                    match connect(url, options.clone()).await {
                        Ok(conn) => {
                            conn.run(Echo).await;
                        }
                        Err(e) => eprintln!("case {case}: {e}"),
                    }
                }
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    poll_fn(|cx| {
        workers.retain_mut(|worker| worker.as_mut().poll(cx).is_pending());
        if workers.is_empty() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    drop(workers);

    connect(format!("{base}/updateReports?agent={AGENT}"), options).await?.run(Echo).await;
    eprintln!("reports updated");
    Ok(())
}
