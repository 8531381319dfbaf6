//! Benchmarks of the driver's own cost per message: an echo over an in-memory transport, so that
//! no system call, reactor or scheduler is measured, only what ferrule adds between the bytes
//! arriving and the reply being handed to the transport.
//!
//! `callback`: each iteration makes one batch of client frames readable and polls the
//! connection's future once, as a runtime does when the socket becomes readable: the driver
//! reads the batch, runs the handler for each message, writes the replies and parks on its next
//! read. `channels`: the same through the channel API, with the echo loop a user writes
//! (`while let Some(m) = receiver.recv().await { sender.send(m).await }`) in a task of its own;
//! each iteration polls the connection, then the echo task, then the connection again.
//!
//! `handshake`: a connection's whole life on the server (upgrade, close), over the same
//! in-memory transport.
//!
//! Run with `cargo bench -p ferrule --bench driver`.

#![allow(missing_docs, reason = "criterion_group! generates an undocumented pub fn")]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrule::{Channels, Ctx, Handler, HandlerError, Message, Options, OriginPolicy, Runtime};
use futures_io::{AsyncRead, AsyncWrite};

/// A runtime with the system clock and timers that never fire (the benchmark runs far shorter
/// than any deadline the options set); spawned futures are kept for the benchmark to poll.
#[derive(Clone, Default)]
struct BenchRuntime {
    spawned: Arc<Mutex<Vec<Task>>>,
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

impl BenchRuntime {
    fn take_spawned(&self) -> Task {
        self.spawned.lock().expect("not poisoned").pop().expect("a task was spawned")
    }
}

impl Runtime for BenchRuntime {
    type Sleep = std::future::Pending<()>;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        std::future::pending()
    }

    fn reset(&self, _sleep: Pin<&mut Self::Sleep>, _deadline: Instant) {}

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawned.lock().expect("not poisoned").push(Box::pin(future));
    }
}

/// An in-memory transport: reads return the pending input (the upgrade request first, then one
/// batch per `make_readable`), writes are counted and discarded.
struct Pipe {
    input: Vec<u8>,
    pos: usize,
    batch: Arc<[u8]>,
    readable: Arc<AtomicUsize>,
    written: Arc<AtomicUsize>,
}

impl AsyncRead for Pipe {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.pos == self.input.len() {
            if self.readable.swap(0, Ordering::Relaxed) == 0 {
                return Poll::Pending;
            }
            let batch = self.batch.clone();
            self.input.clear();
            self.input.extend_from_slice(&batch);
            self.pos = 0;
        }
        let n = buf.len().min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.written.fetch_add(buf.len(), Ordering::Relaxed);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.written.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The plain echo handler of the side-by-side benchmark's ferrule row.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

/// A masked client frame (RFC 6455 section 5.2) carrying `len` bytes of binary payload.
fn client_frame(len: usize) -> Vec<u8> {
    let mut frame = vec![0x82];
    match len {
        0..=125 => frame.push(0x80 | len as u8),
        126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    frame.extend_from_slice(&key);
    frame.extend((0..len).map(|i| (i as u8) ^ key[i % 4]));
    frame
}

const UPGRADE: &[u8] = b"GET /bench HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The server's answer to [`UPGRADE`] (RFC 6455 section 4.2.2).
const ACCEPTED: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Polls `future` to completion with a waker that does nothing (the pipe never parks).
fn block_on<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// A pipe that reads the upgrade request first, then `batch` when made readable, with the
/// counters it shares with the benchmark.
fn new_pipe(batch: Arc<[u8]>) -> (Pipe, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let readable = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let pipe = Pipe { input: UPGRADE.to_vec(), pos: 0, batch, readable: readable.clone(), written: written.clone() };
    (pipe, readable, written)
}

/// `echo/{size}x{batch}`: one batch of `batch` messages of `size` bytes read and echoed, through
/// each API; throughput counts messages.
fn echo(c: &mut Criterion) {
    let options = Options::builder()
        .max_message_size(64 << 20)
        .allowed_origin(OriginPolicy::InsecureAllowAny)
        .build()
        .expect("valid options");
    for (size, batch) in [(16, 1), (1024, 1), (16, 32), (1024, 32), (4096, 32), (65536, 1)] {
        let name = format!("echo/{size}Bx{batch}");
        let mut group = c.benchmark_group(&name);
        group
            .throughput(Throughput::Elements(batch as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(30);
        let frames: Arc<[u8]> = client_frame(size).repeat(batch).into();
        // Every message comes back, whole: an unmasked server frame per message.
        let header = if size < 126 {
            2
        } else if size < 65536 {
            4
        } else {
            10
        };
        let reply = batch * (header + size);
        let mut cx = Context::from_waker(Waker::noop());

        let (pipe, readable, written) = new_pipe(frames.clone());
        let (upgraded, handler) = block_on(ferrule::accept(BenchRuntime::default(), pipe, &options, |_, _| Ok(Echo)))
            .expect("the upgrade request is valid");
        let mut connection = Box::pin(upgraded.run(handler));
        let before = written.load(Ordering::Relaxed);
        let mut polls = 0;
        group.bench_function("callback", |b| {
            b.iter(|| {
                readable.store(1, Ordering::Relaxed);
                assert!(connection.as_mut().poll(&mut cx).is_pending());
                polls += 1;
            });
        });
        assert_eq!(written.load(Ordering::Relaxed) - before, polls * reply);

        let (pipe, readable, written) = new_pipe(frames);
        let runtime = BenchRuntime::default();
        let (upgraded, ()) = block_on(ferrule::accept(runtime.clone(), pipe, &options, |_, _| Ok(())))
            .expect("the upgrade request is valid");
        let Channels { mut receiver, sender, .. } = upgraded.channels::<Bytes>();
        let mut connection = runtime.take_spawned();
        let mut echo = Box::pin(async move {
            while let Some(message) = receiver.recv().await {
                sender.send(message).await.expect("the connection is open");
            }
        });
        let before = written.load(Ordering::Relaxed);
        let mut polls = 0;
        group.bench_function("channels", |b| {
            b.iter(|| {
                readable.store(1, Ordering::Relaxed);
                assert!(connection.as_mut().poll(&mut cx).is_pending());
                assert!(echo.as_mut().poll(&mut cx).is_pending());
                assert!(connection.as_mut().poll(&mut cx).is_pending());
                polls += 1;
            });
        });
        assert_eq!(written.load(Ordering::Relaxed) - before, polls * reply);
        group.finish();
    }
}

/// `echo_many/16Bx1`: 100 connections polled in turn, one 16-byte message each per turn, as a
/// thread serving many connections does: each poll finds its connection's state out of the
/// cache more often than `echo/16Bx1` does. Throughput counts messages.
fn echo_many(c: &mut Criterion) {
    const CONNECTIONS: usize = 100;
    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build().expect("valid options");
    let mut group = c.benchmark_group("echo_many/16Bx1");
    group
        .throughput(Throughput::Elements(CONNECTIONS as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    let frames: Arc<[u8]> = client_frame(16).into();
    let mut cx = Context::from_waker(Waker::noop());
    let mut connections: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (pipe, readable, written) = new_pipe(frames.clone());
            let (upgraded, handler) =
                block_on(ferrule::accept(BenchRuntime::default(), pipe, &options, |_, _| Ok(Echo)))
                    .expect("the upgrade request is valid");
            (Box::pin(upgraded.run(handler)), readable, written)
        })
        .collect();
    let before: Vec<usize> = connections.iter().map(|(_, _, w)| w.load(Ordering::Relaxed)).collect();
    let mut rounds = 0;
    group.bench_function("callback", |b| {
        b.iter(|| {
            for (connection, readable, _) in &mut connections {
                readable.store(1, Ordering::Relaxed);
                assert!(connection.as_mut().poll(&mut cx).is_pending());
            }
            rounds += 1;
        });
    });
    group.finish();
    for ((_, _, written), before) in connections.iter().zip(before) {
        assert_eq!(written.load(Ordering::Relaxed) - before, rounds * (2 + 16));
    }
}

/// A masked client close frame with status 1000 (RFC 6455 section 5.5.1).
fn client_close() -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x88, 0x80 | 2];
    frame.extend_from_slice(&key);
    frame.extend(1000u16.to_be_bytes().iter().zip(key).map(|(b, k)| b ^ k));
    frame
}

/// `handshake/accept_close`: a connection's whole life on the server over an in-memory
/// transport: the upgrade request read, checked and answered, then the client's close frame
/// read and answered, and the connection ended. The side-by-side benchmark's handshake cells
/// measure the same cycle with the system calls and the runtime's task added.
fn handshake(c: &mut Criterion) {
    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build().expect("valid options");
    let close: Arc<[u8]> = client_close().into();
    let mut group = c.benchmark_group("handshake");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    let mut cx = Context::from_waker(Waker::noop());
    group.bench_function("accept_close", |b| {
        b.iter(|| {
            let (pipe, readable, written) = new_pipe(close.clone());
            let (upgraded, handler) =
                block_on(ferrule::accept(BenchRuntime::default(), pipe, &options, |_, _| Ok(Echo)))
                    .expect("the upgrade request is valid");
            let mut connection = Box::pin(upgraded.run(handler));
            readable.store(1, Ordering::Relaxed);
            let Poll::Ready(closed) = connection.as_mut().poll(&mut cx) else {
                panic!("the close ends the connection")
            };
            assert!(closed.was_clean);
            // The 101, then the close frame's echo: a 2-byte header and the 2-byte code.
            assert_eq!(written.load(Ordering::Relaxed), ACCEPTED.len() + 4);
        });
    });
    group.finish();
}

criterion_group!(benches, echo, echo_many, handshake);
criterion_main!(benches);
