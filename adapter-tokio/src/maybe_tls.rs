//! A client's stream: plain TCP for `ws://`, TLS for `wss://`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use ferrule::{ClientRequest, Error, Options};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The stream [`connect`](crate::connect) runs a WebSocket over: the TCP stream itself for
/// `ws://`, or TLS over it for `wss://` (feature `tls`, with tokio-rustls).
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream<S = TcpStream> {
    /// The transport, unencrypted (`ws://`).
    Plain(S),
    /// TLS over the transport (`wss://`).
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTlsStream<S> {
    /// `stream` as `request` needs it: as it is for `ws://`, under TLS for `wss://` with the
    /// roots [`Options::tls`] names, within the options' `handshake_timeout`.
    ///
    /// # Errors
    ///
    /// For `wss://`: [`Error::Tls`] for a certificate that does not name the URL's host or that
    /// no trusted root signed, or any other TLS failure; `HandshakeError::Timeout` past the
    /// deadline (see [`ferrule::tls::client_handshake`]). Without feature `tls`,
    /// `HandshakeError::TlsRequired`.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the stream with the TLS handshake half done.
    pub async fn connect(stream: S, request: &ClientRequest, options: &Options) -> Result<Self, Error> {
        if !request.is_secure() {
            return Ok(Self::Plain(stream));
        }
        #[cfg(feature = "tls")]
        return ferrule::tls::client_handshake(&crate::Tokio, request, options, |config, name| {
            tokio_rustls::TlsConnector::from(config).connect(name, stream)
        })
        .await
        .map(|tls| Self::Tls(Box::new(tls)));
        #[cfg(not(feature = "tls"))]
        {
            let _ = options;
            Err(Error::Handshake(ferrule::core::handshake::HandshakeError::TlsRequired))
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
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
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
