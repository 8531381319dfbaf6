//! What a hub's emit costs per recipient: 1000 connections over in-memory transports, so that no
//! system call, reactor or scheduler is measured.
//!
//! `emit/all_but_sender`: a 16-byte native message from one connection to every other one, as
//! the fan-out benchmark sends. `emit/room`: one emit to a room of every connection: the payload is serialized and framed
//! once, and each connection queues the same bytes by reference; then each connection's task is
//! polled once, as a runtime would after the wake, so that it takes the message into its core
//! and writes it. `emit/each`: the same messages sent by one emit per connection, each
//! serializing and framing its own copy: what encoding per recipient would cost. Throughput
//! counts recipients, so the time per element is the cost per recipient.
//!
//! `core/prepared` and `core/framed`: the protocol core alone, 1000 server connections queueing
//! one message: by reference to one encoding, or each encoding (copying) its own.
//!
//! Run with `cargo bench -p ferrule --bench hub`.

#![allow(missing_docs, reason = "criterion_group! generates an undocumented pub fn")]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferrule::core::{Config, Connection, PreparedMessage, Role};
use ferrule::hub::{Hub, Socket};
use ferrule::{Options, OriginPolicy, Runtime, accept};
use futures_io::{AsyncRead, AsyncWrite};
use serde::Serialize;

const RECIPIENTS: usize = 1000;

/// A runtime whose timers never fire and whose spawned tasks the benchmark polls by hand.
#[derive(Clone, Default)]
struct Manual {
    tasks: Arc<Mutex<Vec<Task>>>,
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Runtime for Manual {
    type Sleep = std::future::Pending<()>;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        std::future::pending()
    }

    fn reset(&self, _sleep: Pin<&mut Self::Sleep>, _deadline: Instant) {}

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        self.tasks.lock().expect("not poisoned").push(Box::pin(future));
    }
}

impl Manual {
    /// Polls every task once.
    fn run_once(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        for task in self.tasks.lock().expect("not poisoned").iter_mut() {
            let _ = task.as_mut().poll(&mut cx);
        }
    }
}

/// A client that sent its upgrade request, then sends nothing and reads everything.
struct Sink {
    request: &'static [u8],
}

impl AsyncRead for Sink {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.request.is_empty() {
            return Poll::Pending;
        }
        let n = buf.len().min(self.request.len());
        buf[..n].copy_from_slice(&self.request[..n]);
        self.request = &self.request[n..];
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Sink {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const UPGRADE: &[u8] = b"GET /hub HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A chat line of about 1 KiB of JSON.
#[derive(Serialize)]
struct Line {
    from: &'static str,
    room: &'static str,
    text: String,
    seq: u64,
}

fn line() -> Line {
    Line { from: "4f3c2a1b", room: "lobby", text: "lorem ipsum dolor sit amet ".repeat(36), seq: 42 }
}

/// A hub with `RECIPIENTS` open connections in the room "all".
fn hub_with_connections() -> (Hub<Manual>, Manual) {
    let runtime = Manual::default();
    let hub = Hub::builder(runtime.clone())
        .on_connection(|socket: &Socket<Manual>| {
            socket.join("all");
            Ok(())
        })
        .build();
    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build().expect("valid options");
    let factory = hub.handler_factory();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..RECIPIENTS {
        let mut accepting = std::pin::pin!(accept(runtime.clone(), Sink { request: UPGRADE }, &options, &factory));
        let (upgraded, handler) = loop {
            if let Poll::Ready(out) = accepting.as_mut().poll(&mut cx) {
                break out.expect("upgraded");
            }
        };
        upgraded.spawn(handler);
    }
    // The first poll opens each connection: it joins the hub and writes `$open`.
    runtime.run_once();
    assert_eq!(hub.sockets_in("all").len(), RECIPIENTS);
    (hub, runtime)
}

fn emit(c: &mut Criterion) {
    let (hub, runtime) = hub_with_connections();
    let sockets = hub.sockets();
    let line = line();
    let mut group = c.benchmark_group("emit");
    group
        .throughput(Throughput::Elements(RECIPIENTS as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    group.bench_function("room", |b| {
        b.iter(|| {
            let delivery = hub.to("all").emit("line", &line).expect("encoded");
            assert_eq!(delivery.queued, RECIPIENTS);
            runtime.run_once();
        });
    });
    // The fan-out benchmark's shape: a native message to everyone but the sender.
    let sender = &sockets[0];
    let native = ferrule::Message::text("x".repeat(16));
    group.bench_function("all_but_sender", |b| {
        b.iter(|| {
            let delivery = sender.broadcast().send(native.clone());
            assert_eq!(delivery.queued, RECIPIENTS - 1);
            runtime.run_once();
        });
    });
    group.bench_function("each", |b| {
        b.iter(|| {
            for socket in &sockets {
                socket.emit("line", &line).expect("encoded");
            }
            runtime.run_once();
        });
    });
    group.finish();
}

fn core(c: &mut Criterion) {
    let now = Instant::now();
    let text = serde_json::to_string(&("line", line())).expect("encoded");
    let mut conns: Vec<Connection> =
        (0..RECIPIENTS).map(|_| Connection::new(Role::Server, Config::default(), now).expect("valid")).collect();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(RECIPIENTS as u64)).sample_size(30);
    group.bench_function("prepared", |b| {
        b.iter_batched(
            || PreparedMessage::text(text.clone()),
            |message| {
                for conn in &mut conns {
                    conn.send_prepared(&message).expect("open");
                    let n = conn.buffered_amount();
                    conn.advance_transmit(n);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("framed", |b| {
        b.iter(|| {
            for conn in &mut conns {
                conn.send_text(&text).expect("open");
                let n = conn.buffered_amount();
                conn.advance_transmit(n);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, emit, core);
criterion_main!(benches);
