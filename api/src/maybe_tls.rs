//! A client's stream over the futures-io traits: plain for `ws://`, TLS for `wss://`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use ferrule_core::handshake::ClientRequest;
#[cfg(not(feature = "futures-rustls"))]
use ferrule_core::handshake::HandshakeError;
use futures_io::{AsyncRead, AsyncWrite};

use crate::error::Error;
use crate::options::Options;
use crate::runtime::Runtime;

/// The stream a client connects over: the transport itself for `ws://`, or TLS over it for
/// `wss://` (feature `futures-rustls`). Every adapter's `connect` returns a WebSocket over one
/// (tokio's over its streams adapted to the futures-io traits).
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream<S> {
    /// The transport, unencrypted (`ws://`).
    Plain(S),
    /// TLS over the transport (`wss://`).
    #[cfg(feature = "futures-rustls")]
    Tls(Box<futures_rustls::client::TlsStream<S>>),
}

impl<S> MaybeTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// `stream` as `request` needs it: as it is for `ws://`, under TLS for `wss://` (see
    /// [`tls::connect`](crate::tls::connect)).
    ///
    /// # Errors
    ///
    /// As [`tls::client_handshake`](crate::tls::client_handshake) for `wss://`; without feature
    /// `futures-rustls`, `HandshakeError::TlsRequired` for `wss://`.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the stream with the TLS handshake half done.
    pub async fn connect<R: Runtime>(
        runtime: &R,
        stream: S,
        request: &ClientRequest,
        options: &Options,
    ) -> Result<Self, Error> {
        if !request.is_secure() {
            return Ok(Self::Plain(stream));
        }
        #[cfg(feature = "futures-rustls")]
        return Ok(Self::Tls(Box::new(crate::tls::connect(runtime, stream, request, options).await?)));
        #[cfg(not(feature = "futures-rustls"))]
        {
            let _ = (runtime, options);
            Err(Error::Handshake(HandshakeError::TlsRequired))
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "futures-rustls")]
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "futures-rustls")]
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "futures-rustls")]
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "futures-rustls")]
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_close(cx),
            #[cfg(feature = "futures-rustls")]
            Self::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}
