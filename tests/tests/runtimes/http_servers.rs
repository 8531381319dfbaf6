//! [`TestRuntime`]s whose server side is another HTTP server: axum 0.8 ([`AxumRuntime`]) and a
//! plain hyper 1.x server ([`HyperRuntime`]), both on tokio, serving every path over HTTP/1.1 and
//! HTTP/2. The client side, the clock and raw TCP are [`TokioRuntime`]'s.
//!
//! Each server registers its WebSockets with a `Shutdown`; the suite's shutdown stops the HTTP
//! server from accepting (its listener is dropped), then closes every WebSocket with 1001.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use ferrule_tests::suite::{TestRuntime, TestServer};
use ferrule_tokio::axum::{Shutdown, Upgrade};
use ferrule_tokio::hyper::{HyperWebSocket, PendingUpgrade, UpgradeResponse};
use ferrule_tokio::{Channels, Codec, Error, HandlerFactory, MaybeTlsStream, Options, Request, Tokio, Upgraded};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::runtime::TokioRuntime;

/// The parts of a [`TestRuntime`] that are [`TokioRuntime`]'s: the runtime, the clock, the
/// client and raw TCP.
macro_rules! tokio_client_side {
    () => {
        fn block_on<F: Future>(paused: bool, future: F) -> F::Output {
            TokioRuntime::block_on(paused, future)
        }

        fn runtime() -> Tokio {
            Tokio
        }

        async fn connect(url: &str, options: &Options) -> Result<Upgraded<MaybeTlsStream, Tokio>, Error> {
            TokioRuntime::connect(url, options).await
        }

        async fn tcp(addr: SocketAddr) -> io::Result<MaybeTlsStream> {
            TokioRuntime::tcp(addr).await
        }

        fn alive_tasks() -> Option<usize> {
            TokioRuntime::alive_tasks()
        }
    };
}

/// A server behind axum or hyper, as the suite drives it.
pub(crate) struct HttpServer {
    addr: SocketAddr,
    shutdown: Shutdown,
    stop: oneshot::Sender<()>,
    served: JoinHandle<()>,
}

impl TestServer for HttpServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn connections(&self) -> usize {
        self.shutdown.connections()
    }

    async fn shutdown(self, deadline: Duration) -> usize {
        let _ = self.stop.send(());
        // Once the HTTP server has returned, its listener is gone and new connects are refused.
        let _ = self.served.await;
        self.shutdown.shutdown(deadline).await
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener")
}

/// Runs the suite's server side through axum's `Upgrade` extractor, at every path and method.
pub(crate) struct AxumRuntime;

/// Serves `router` with `axum::serve` (which announces extended CONNECT on HTTP/2 by itself).
async fn serve_axum(router: axum::Router, shutdown: Shutdown) -> HttpServer {
    use axum::serve::ListenerExt as _;
    let listener = listener().await;
    let addr = listener.local_addr().expect("a bound listener");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    HttpServer { addr, shutdown, stop, served }
}

impl TestRuntime for AxumRuntime {
    type Runtime = Tokio;
    type Server = HttpServer;
    type Stream = MaybeTlsStream;

    tokio_client_side!();

    async fn serve<F: HandlerFactory>(options: Options, factory: F) -> HttpServer {
        let shutdown = Shutdown::default();
        let (factory, registry) = (Arc::new(factory), shutdown.clone());
        let route = move |upgrade: Upgrade| async move {
            upgrade
                .options(options)
                .shutdown(&registry)
                .run(|request, acceptance| factory.on_connect(request, acceptance))
        };
        serve_axum(axum::Router::new().fallback(route), shutdown).await
    }

    async fn serve_channels<M, F, Fut>(options: Options, task: F) -> HttpServer
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = Shutdown::default();
        let (task, registry) = (Arc::new(task), shutdown.clone());
        let route = move |upgrade: Upgrade| async move {
            let response: Response = upgrade.options(options).shutdown(&registry).channels(
                |request, _| Ok(request.clone()),
                move |request, channels: Channels<M>| task(request, channels),
            );
            response
        };
        serve_axum(axum::Router::new().fallback(route), shutdown).await
    }
}

/// Runs the suite's server side through `ferrule_tokio::hyper::upgrade` in a plain hyper service.
pub(crate) struct HyperRuntime;

/// How the hyper service answers a request, and what runs the connection once upgraded.
type Answer = Arc<dyn Fn(hyper::Request<Incoming>, &Shutdown) -> UpgradeResponse + Send + Sync>;

/// Serves `answer` on a hyper-util server (HTTP/1.1 and HTTP/2, with upgrades and extended
/// CONNECT enabled) until stopped.
async fn serve_hyper(answer: Answer) -> HttpServer {
    let listener = listener().await;
    let addr = listener.local_addr().expect("a bound listener");
    let shutdown = Shutdown::default();
    let registry = shutdown.clone();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http2().enable_connect_protocol();
        let builder = Arc::new(builder);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = &mut stopped => return,
            };
            let _ = stream.set_nodelay(true);
            let (builder, answer, registry) = (builder.clone(), answer.clone(), registry.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = answer(request, &registry);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
            });
        }
    });
    HttpServer { addr, shutdown, stop, served }
}

/// Once hyper has upgraded, runs `start` with the connection registered with `shutdown` until
/// it has finished.
fn spawn_upgraded<T, Fut>(
    pending: PendingUpgrade,
    shutdown: &Shutdown,
    value: T,
    start: impl FnOnce(HyperWebSocket, T) -> Fut + Send + 'static,
) where
    T: Send + 'static,
    Fut: Future + Send,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let Ok(websocket) = pending.await else { return };
        let handle = websocket.handle();
        let _registration = shutdown.register(handle.clone());
        start(websocket, value).await;
        handle.done().await;
    });
}

impl TestRuntime for HyperRuntime {
    type Runtime = Tokio;
    type Server = HttpServer;
    type Stream = MaybeTlsStream;

    tokio_client_side!();

    async fn serve<F: HandlerFactory>(options: Options, factory: F) -> HttpServer {
        serve_hyper(Arc::new(move |request, shutdown| {
            match ferrule_tokio::hyper::upgrade(request, &options, |r, a| factory.on_connect(r, a)) {
                Ok((response, pending, handler)) => {
                    spawn_upgraded(pending, shutdown, handler, |websocket, handler| websocket.run(handler));
                    response
                }
                Err(refused) => refused.response,
            }
        }))
        .await
    }

    async fn serve_channels<M, F, Fut>(options: Options, task: F) -> HttpServer
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task = Arc::new(task);
        serve_hyper(Arc::new(move |request, shutdown| {
            match ferrule_tokio::hyper::upgrade(request, &options, |request, _| Ok(request.clone())) {
                Ok((response, pending, request)) => {
                    let task = task.clone();
                    spawn_upgraded(pending, shutdown, request, move |websocket, request| {
                        task(request, websocket.channels::<M>())
                    });
                    response
                }
                Err(refused) => refused.response,
            }
        }))
        .await
    }
}
