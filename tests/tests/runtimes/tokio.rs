//! [`TestRuntime`] for tokio.
//!
//! Real-time tests run on a two-worker multi-thread runtime; paused-clock tests on a
//! current-thread runtime started paused, whose clock jumps to the next timer whenever every task
//! is idle.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use ferrule_tests::suite::TestRuntime;
use ferrule_tokio::{
    Channels, Codec, Compat, Error, HandlerFactory, MaybeTlsStream, Options, Request, Tokio, Upgraded,
};
use tokio::net::{TcpListener, TcpStream};

/// The suite's interface to tokio.
pub(crate) struct TokioRuntime;

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener")
}

impl TestRuntime for TokioRuntime {
    type Runtime = Tokio;
    type Server = ferrule_tokio::Server;
    type Stream = MaybeTlsStream;

    fn block_on<F: Future>(paused: bool, future: F) -> F::Output {
        let runtime = if paused {
            tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
        };
        runtime.expect("a tokio runtime").block_on(future)
    }

    fn runtime() -> Tokio {
        Tokio
    }

    async fn serve<F: HandlerFactory>(options: Options, factory: F) -> ferrule_tokio::Server {
        // The adapter's `serve` takes a closure; a factory type goes through one.
        ferrule_tokio::serve(listener().await, options, move |request, acceptance| {
            factory.on_connect(request, acceptance)
        })
    }

    async fn serve_channels<M, F, Fut>(options: Options, task: F) -> ferrule_tokio::Server
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ferrule_tokio::serve_channels(listener().await, options, task)
    }

    async fn connect(url: &str, options: &Options) -> Result<Upgraded<MaybeTlsStream, Tokio>, Error> {
        ferrule_tokio::connect(url, options).await
    }

    async fn tcp(addr: SocketAddr) -> io::Result<MaybeTlsStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(MaybeTlsStream::Plain(Compat(stream)))
    }

    fn alive_tasks() -> Option<usize> {
        Some(tokio::runtime::Handle::current().metrics().num_alive_tasks())
    }
}
