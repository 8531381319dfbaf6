//! [`TestRuntime`] for smol.
//!
//! Each test body runs in `smol::block_on` on the test's thread; the library's tasks run on smol's
//! global executor. smol's clock cannot be paused, so the library runs on
//! [`Clocked<Smol>`](Clocked): smol's executor, reactor and, in real-time tests, timers; in
//! paused tests a virtual clock that jumps to the next deadline whenever every task is idle. The
//! server and the client are therefore set up through ferrule's runtime-generic `serve`,
//! `serve_channels` and `connect_stream`, exactly as `ferrule_smol`'s own functions set them up
//! for [`Smol`]; `adapter_serve_and_connect_echo` in `smol.rs` runs those functions themselves.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use ferrule_smol::{
    Channels, ClientRequest, Codec, Error, HandlerFactory, Options, Request, Smol, TcpAcceptor, TcpStream, Upgraded,
    tcp_client_request,
};
use ferrule_tests::suite::TestRuntime;
use ferrule_tests::virtual_clock::{self, Clocked};
use smol::net::TcpListener;

/// The suite's interface to smol.
pub(crate) struct SmolRuntime;

async fn acceptor() -> TcpAcceptor {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
    TcpAcceptor::from(Arc::from(listener))
}

impl TestRuntime for SmolRuntime {
    type Runtime = Clocked<Smol>;
    type Server = ferrule::Server<Clocked<Smol>>;
    type Stream = TcpStream;

    fn block_on<F: Future>(paused: bool, future: F) -> F::Output {
        Clocked::block_on(Smol, paused, future, smol::block_on)
    }

    fn runtime() -> Clocked<Smol> {
        Clocked::current(Smol)
    }

    async fn serve<F: HandlerFactory>(options: Options, factory: F) -> ferrule::Server<Clocked<Smol>> {
        ferrule::serve(Self::runtime(), acceptor().await, options, factory)
    }

    async fn serve_channels<M, F, Fut>(options: Options, task: F) -> ferrule::Server<Clocked<Smol>>
    where
        M: Codec,
        F: Fn(Request, Channels<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ferrule::serve_channels(Self::runtime(), acceptor().await, options, task)
    }

    /// As `ferrule_smol::connect` does it.
    async fn connect(url: &str, options: &Options) -> Result<Upgraded<TcpStream, Clocked<Smol>>, Error> {
        let request = tcp_client_request(ClientRequest::new(url)?, options)?;
        let stream = smol::net::TcpStream::connect((request.host(), request.port())).await?;
        stream.set_nodelay(true)?;
        ferrule::connect_stream(Self::runtime(), TcpStream::from(Arc::from(stream)), request, options).await
    }

    async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = smol::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(TcpStream::from(Arc::from(stream)))
    }

    /// The test run's tasks, as the virtual clock counts them.
    fn alive_tasks() -> Option<usize> {
        Some(virtual_clock::alive_tasks())
    }
}
