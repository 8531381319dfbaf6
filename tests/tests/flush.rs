//! A transport that, like a TLS stream, accepts a write into a buffer of its own when the socket
//! under it is full, and sends the rest on only when written to or flushed again. The driver
//! flushes once its output is all written, so a message echoed through such a transport arrives
//! whole; without that flush, its tail would wait in the transport's buffer for ever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ferrule_tests::Echo;
use ferrule_tokio::{ClientRequest, Message, Options, OriginPolicy};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// Forwards writes to `inner` as far as it takes them and keeps the rest, reporting the whole
/// write as done (as tokio-rustls does with the records of a write the socket cannot take yet).
struct Buffering {
    inner: DuplexStream,
    held: Vec<u8>,
}

impl Buffering {
    /// Sends on what is held, as far as `inner` takes it.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Buffering {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffering {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.held.extend_from_slice(buf);
        // Pending only means the rest waits: the write itself is taken.
        let _ = self.poll_send_held(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A 64 KiB message echoed through a 512-byte pipe: the server's write of the echo is taken
/// whole while the pipe holds only 512 bytes of it, and the rest arrives because the driver
/// flushes.
#[tokio::test]
async fn an_echo_written_into_a_transports_buffer_is_flushed_whole() {
    let (server_end, client_end) = tokio::io::duplex(512);
    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build().expect("options");
    let server_options = options.clone();
    let server = tokio::spawn(async move {
        let stream = Buffering { inner: server_end, held: Vec::new() };
        let (upgraded, ()) = ferrule_tokio::accept(stream, &server_options, |_, _| Ok(())).await.expect("accepted");
        upgraded.run(Echo).await
    });
    let request = ClientRequest::new("ws://localhost/").expect("a URL");
    let client = ferrule_tokio::connect_stream(client_end, request, &options).await.expect("connected");
    let mut channels = client.channels::<Message>();
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    channels.sender.send(Message::binary(payload.clone())).await.expect("sent");
    // A guard only: the echo arrives in milliseconds, or never without the flush.
    let echoed = tokio::time::timeout(Duration::from_secs(60), channels.receiver.recv())
        .await
        .expect("the echo arrived whole")
        .expect("a message");
    assert_eq!(echoed, Message::binary(payload));
    drop(channels);
    server.abort();
}
