//! [`TestRuntime`] for smol.
//!
//! Each test body runs in `smol::block_on` on the test's thread; the library's tasks run on smol's
//! global executor. smol's clock cannot be paused, so the keepalive and slowloris tests run in
//! real time with deadlines of a few hundred milliseconds.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use ferrule_smol::{Channels, Codec, Error, HandlerFactory, Options, Request, Smol, TcpStream, Upgraded};
use ferrule_tests::suite::TestRuntime;
use smol::net::TcpListener;

/// The suite's interface to smol.
pub(crate) struct SmolRuntime;

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener")
}

impl TestRuntime for SmolRuntime {
    type Runtime = Smol;
    type Stream = TcpStream;

    const CAN_PAUSE: bool = false;

    fn block_on<F: Future>(_paused: bool, future: F) -> F::Output {
        smol::block_on(future)
    }

    fn runtime() -> Smol {
        Smol
    }

    async fn serve<F: HandlerFactory>(options: Options, factory: F) -> ferrule_smol::Server {
        // The adapter's `serve` takes a closure; a factory type goes through one.
        ferrule_smol::serve(listener().await, options, move |request, acceptance| {
            factory.on_connect(request, acceptance)
        })
    }

    async fn serve_channels<M, F, Fut>(options: Options, task: F) -> ferrule_smol::Server
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ferrule_smol::serve_channels(listener().await, options, task)
    }

    async fn connect(url: &str, options: &Options) -> Result<Upgraded<TcpStream, Smol>, Error> {
        ferrule_smol::connect(url, options).await
    }

    async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = smol::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(TcpStream::from(std::sync::Arc::from(stream)))
    }

    /// smol does not count its tasks.
    fn alive_tasks() -> Option<usize> {
        None
    }
}
