//! [`TestRuntime`] for async-std.
//!
//! Each test body runs in `async_std::task::block_on` on the test's thread; the library's tasks
//! run on async-std's executor. async-std's clock cannot be paused, so the library runs on
//! [`Clocked<AsyncStd>`](Clocked): async-std's executor, its (async-io) reactor and, in real-time
//! tests, its timers; in paused tests a virtual clock that jumps to the next deadline whenever
//! every task is idle. The server and the client are therefore set up through ferrule's
//! runtime-generic `serve`, `serve_channels` and `connect_stream`, exactly as
//! `ferrule_async_std`'s own functions set them up for [`AsyncStd`];
//! `adapter_serve_and_connect_echo` in `async_std.rs` runs those functions themselves.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use async_std::net::TcpListener;
use ferrule_async_std::{
    AsyncStd, Channels, ClientRequest, Codec, Error, HandlerFactory, Options, Request, TcpAcceptor, TcpStream,
    Upgraded, tcp_client_request,
};
use ferrule_tests::suite::TestRuntime;
use ferrule_tests::virtual_clock::{self, Clocked};

/// The suite's interface to async-std.
pub(crate) struct AsyncStdRuntime;

async fn acceptor() -> TcpAcceptor {
    TcpAcceptor::from(TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener"))
}

impl TestRuntime for AsyncStdRuntime {
    type Runtime = Clocked<AsyncStd>;
    type Server = ferrule::Server<Clocked<AsyncStd>>;
    type Stream = TcpStream;

    fn block_on<F: Future>(paused: bool, future: F) -> F::Output {
        Clocked::block_on(AsyncStd, paused, future, async_std::task::block_on)
    }

    fn runtime() -> Clocked<AsyncStd> {
        Clocked::current(AsyncStd)
    }

    async fn serve<F: HandlerFactory>(options: Options, factory: F) -> ferrule::Server<Clocked<AsyncStd>> {
        ferrule::serve(Self::runtime(), acceptor().await, options, factory)
    }

    async fn serve_channels<M, F, Fut>(options: Options, task: F) -> ferrule::Server<Clocked<AsyncStd>>
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ferrule::serve_channels(Self::runtime(), acceptor().await, options, task)
    }

    /// As `ferrule_async_std::connect` does it.
    async fn connect(url: &str, options: &Options) -> Result<Upgraded<TcpStream, Clocked<AsyncStd>>, Error> {
        let request = tcp_client_request(ClientRequest::new(url)?, options)?;
        let stream = async_std::net::TcpStream::connect((request.host(), request.port())).await?;
        stream.set_nodelay(true)?;
        ferrule::connect_stream(Self::runtime(), TcpStream::new(stream.try_into()?)?, request, options).await
    }

    async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = async_std::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        TcpStream::new(stream.try_into()?)
    }

    /// The test run's tasks, as the virtual clock counts them.
    fn alive_tasks() -> Option<usize> {
        Some(virtual_clock::alive_tasks())
    }
}
