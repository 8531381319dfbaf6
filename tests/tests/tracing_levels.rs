//! A connection's end is logged with its cause at the level the `ferrule` crate documents: a
//! protocol violation by the peer at `warn`, every other end at `debug`.
//!
//! A binary of its own, because it installs a global `tracing` subscriber.

use std::sync::Mutex;
use std::time::Duration;

use ferrule_tests::suite::{client_frame, raw_upgraded};
use ferrule_tokio::{Options, Request};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[path = "runtimes/tokio.rs"]
mod runtime;

/// One event: its level and its fields, `name=value` each.
#[derive(Debug, Clone)]
struct Logged {
    level: Level,
    fields: Vec<(String, String)>,
}

impl Logged {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

static LOG: Mutex<Vec<Logged>> = Mutex::new(Vec::new());

/// Records every event of the `ferrule` crate.
struct Recorder;

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("ferrule")
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        LOG.lock().expect("the log").push(Logged { level: *event.metadata().level(), fields: fields.0 });
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// The logged ends whose cause contains `text`.
fn ends_with_cause(text: &str) -> Vec<Logged> {
    let log = LOG.lock().expect("the log");
    log.iter().filter(|e| e.field("cause").is_some_and(|c| c.contains(text))).cloned().collect()
}

#[test]
fn connection_ends_are_logged_with_their_cause_at_the_documented_level() {
    tracing::subscriber::set_global_default(Recorder).expect("the only subscriber");
    tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("a runtime").block_on(
        async {
            let options = Options::builder().ping_period(None).read_timeout(Some(Duration::from_secs(5))).build();
            let options = options.expect("valid");
            let closes = ferrule_tests::suite::Inbox::default();
            let server = {
                let closes = closes.clone();
                ferrule_tokio::serve(
                    tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound"),
                    options,
                    move |_: &Request, _: &mut ferrule_tokio::Acceptance| Ok(Echo(closes.clone())),
                )
            };
            let addr = server.local_addr().expect("bound");

            // A protocol violation: an unmasked frame.
            let mut raw = raw_upgraded::<runtime::TokioRuntime>(addr).await;
            let mut unmasked = client_frame(true, 0x1, b"hi", [0; 4]);
            unmasked[1] &= 0x7F;
            unmasked.drain(2..6);
            raw.send(&unmasked).await.expect("written");
            closes.next().await;

            // A read timeout: a silent peer.
            let _silent = raw_upgraded::<runtime::TokioRuntime>(addr).await;
            closes.next().await;
        },
    );
    let violations = ends_with_cause("protocol violation");
    assert!(!violations.is_empty() && violations.iter().all(|e| e.level == Level::WARN), "{violations:?}");
    let timeouts = ends_with_cause("read_timeout");
    assert!(!timeouts.is_empty() && timeouts.iter().all(|e| e.level == Level::DEBUG), "{timeouts:?}");
}

/// Echoes, and reports each end.
struct Echo(ferrule_tests::suite::Inbox<ferrule_tokio::CloseInfo>);

impl ferrule_tokio::Handler for Echo {
    fn on_message(
        &mut self,
        ctx: &mut ferrule_tokio::Ctx<'_>,
        message: ferrule_tokio::Message,
    ) -> Result<(), ferrule_tokio::HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
    fn on_close(&mut self, info: &ferrule_tokio::CloseInfo) {
        self.0.push(info.clone());
    }
}
