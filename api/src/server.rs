//! A standalone server, generic over the runtime and the listener: accept loop, connection
//! registry, and graceful shutdown. Adapters only supply a [`Listener`].

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferrule_core::handshake::Request;
use futures_io::{AsyncRead, AsyncWrite};

use crate::callback::HandlerFactory;
use crate::channel::Channels;
use crate::error::Error;
use crate::message::Codec;
use crate::options::Options;
use crate::runtime::Runtime;
use crate::shared::store_waker;
use crate::shutdown::Registry;
use crate::upgrade::accept;

/// After a failed accept (out of file descriptors, say), wait this long before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A source of incoming connections (a TCP listener on some runtime).
pub trait Listener: Send + 'static {
    /// An accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Polls for the next connection.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Stream>>;

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// The operating system's error.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A running standalone server ([`serve`], [`serve_channels`]): stop it with
/// [`Server::shutdown`].
#[derive(Debug)]
pub struct Server<R> {
    runtime: R,
    registry: Arc<Registry>,
    local_addr: Result<SocketAddr, (io::ErrorKind, String)>,
}

impl<R: Runtime> Server<R> {
    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// The error the listener gave when asked, if it could not tell.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.local_addr.clone().map_err(|(kind, message)| io::Error::new(kind, message))
    }

    /// How many upgraded connections are open.
    pub fn connections(&self) -> usize {
        self.registry.len()
    }

    /// Graceful shutdown: stops accepting (the listener is dropped), closes every open
    /// connection with 1001 Going Away, and waits up to `deadline` for them to finish. Returns
    /// how many were still open then; those end on their own close timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: accepting stops and the close frames are queued before the first await;
    /// dropping the future only stops the waiting.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        self.registry.close_all();
        self.registry.wait_empty(&self.runtime, deadline).await;
        self.connections()
    }
}

/// Serves WebSocket upgrades from `listener` with the callback API: each accepted connection
/// gets a handler from `factory` and runs in its own task. Connections that fail the handshake
/// get the right HTTP status.
pub fn serve<R, L, F>(runtime: R, listener: L, options: Options, factory: F) -> Server<R>
where
    R: Runtime,
    L: Listener,
    F: HandlerFactory,
{
    let factory = Arc::new(factory);
    spawn_server(runtime, listener, options, move |runtime, stream, options, registry| {
        let factory = factory.clone();
        async move {
            // The handshake is boxed, so its state lives on the heap only while it runs, and the
            // upgraded connection is scoped to the block, so only the driver stays in this task's
            // future for the connection's whole life.
            let (mut driver, id) = {
                let accepted = Box::pin(accept(runtime, stream, &options, |request, acceptance| {
                    factory.on_connect(request, acceptance)
                }))
                .await;
                let (upgraded, handler) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => return ended_before_upgrade(&e),
                };
                let id = registry.insert(upgraded.handle());
                (upgraded.run(handler), id)
            };
            // Polled in place: `driver.await` would move the driver into a second slot of this
            // future, and the task would keep room for both (840 bytes each on tokio) for the
            // connection's whole life.
            poll_fn(|cx| Pin::new(&mut driver).poll(cx)).await;
            registry.remove(id);
        }
    })
}

/// Serves WebSocket upgrades from `listener` with the channel API: for each accepted connection,
/// `task(request, channels)` runs in its own task. When it returns, the connection is closed
/// with 1001 (its receiver is dropped).
pub fn serve_channels<R, L, M, T, Fut>(runtime: R, listener: L, options: Options, task: T) -> Server<R>
where
    R: Runtime,
    L: Listener,
    M: Codec,
    T: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let task = Arc::new(task);
    spawn_server(runtime, listener, options, move |runtime, stream, options, registry| {
        let task = task.clone();
        async move {
            let accepted = Box::pin(accept(runtime, stream, &options, |request, _| Ok(request.clone()))).await;
            let (upgraded, request) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => return ended_before_upgrade(&e),
            };
            let id = registry.insert(upgraded.handle());
            let channels = upgraded.channels::<M>();
            let done = channels.done.clone();
            task(request, channels).await;
            done.await;
            registry.remove(id);
        }
    })
}

/// Logs a connection that failed before its upgrade (the handshake answered it already).
fn ended_before_upgrade(error: &Error) {
    tracing::debug!(error = %error, "connection ended before the upgrade");
}

fn spawn_server<R, L, C, Fut>(runtime: R, mut listener: L, options: Options, per_connection: C) -> Server<R>
where
    R: Runtime,
    L: Listener,
    C: Fn(R, L::Stream, Arc<Options>, Arc<Registry>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let registry = Arc::new(Registry::default());
    let local_addr = listener.local_addr().map_err(|e| (e.kind(), e.to_string()));
    let options = Arc::new(options);
    let loop_registry = registry.clone();
    let loop_runtime = runtime.clone();
    runtime.spawn(async move {
        let registry = loop_registry;
        let runtime = loop_runtime;
        let mut backoff: Option<Pin<Box<R::Sleep>>> = None;
        poll_fn(|cx| {
            loop {
                if registry.is_stopping() {
                    return Poll::Ready(());
                }
                store_waker(&mut registry.state().accept_loop, cx.waker());
                if let Some(sleep) = backoff.as_mut() {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    backoff = None;
                }
                match listener.poll_accept(cx) {
                    Poll::Ready(Ok(stream)) => {
                        // Spawned as it is: a wrapper awaiting it would keep a second copy's room.
                        runtime.spawn(per_connection(runtime.clone(), stream, options.clone(), registry.clone()));
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::error!(error = %e, "accept failed");
                        backoff = Some(Box::pin(runtime.sleep_until(runtime.now() + ACCEPT_BACKOFF)));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        // Dropping the listener here stops accepting at the OS level.
        drop(listener);
    });
    Server { runtime, registry, local_addr }
}
