//! [`TestRuntime`] for async-std.
//!
//! Each test body runs in `async_std::task::block_on` on the test's thread; the library's tasks
//! run on async-std's executor. async-std's clock cannot be paused, so the keepalive and slowloris
//! tests run in real time with deadlines of a few hundred milliseconds.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use async_std::net::TcpListener;
use ferrule_async_std::{AsyncStd, Channels, Codec, Error, HandlerFactory, Options, Request, TcpStream, Upgraded};
use ferrule_tests::suite::TestRuntime;

/// The suite's interface to async-std.
pub(crate) struct AsyncStdRuntime;

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener")
}

impl TestRuntime for AsyncStdRuntime {
    type Runtime = AsyncStd;
    type Stream = TcpStream;

    const CAN_PAUSE: bool = false;

    fn block_on<F: Future>(_paused: bool, future: F) -> F::Output {
        async_std::task::block_on(future)
    }

    fn runtime() -> AsyncStd {
        AsyncStd
    }

    async fn serve<F: HandlerFactory>(options: Options, factory: F) -> ferrule_async_std::Server {
        // The adapter's `serve` takes a closure; a factory type goes through one.
        ferrule_async_std::serve(listener().await, options, move |request, acceptance| {
            factory.on_connect(request, acceptance)
        })
    }

    async fn serve_channels<M, F, Fut>(options: Options, task: F) -> ferrule_async_std::Server
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ferrule_async_std::serve_channels(listener().await, options, task)
    }

    async fn connect(url: &str, options: &Options) -> Result<Upgraded<TcpStream, AsyncStd>, Error> {
        ferrule_async_std::connect(url, options).await
    }

    async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = async_std::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        TcpStream::new(stream.try_into()?)
    }

    /// async-std does not count its tasks.
    fn alive_tasks() -> Option<usize> {
        None
    }
}
