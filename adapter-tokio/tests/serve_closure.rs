//! `serve` takes its factory as a closure written without type annotations.

use ferrule_tokio::core::handshake::HandshakeError;
use ferrule_tokio::{Ctx, Error, Handler, HandlerError, Message, Options, Rejection};

/// Sends each message back.
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), HandlerError> {
        ctx.send(&message)?;
        Ok(())
    }
}

/// A factory `|request, acceptance| ...` with no annotations compiles (through a bound on
/// `HandlerFactory` alone it failed with "implementation of `FnOnce` is not general enough") and
/// works: it reads the request's path, edits the response, and its `Rejection` is sent as the
/// HTTP status.
#[tokio::test]
async fn serve_unannotated_closure_routes_by_path_and_rejects_with_404() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound a loopback listener");
    let server = ferrule_tokio::serve(listener, Options::default(), |request, acceptance| {
        if request.path() != "/echo" {
            return Err(Rejection::new(404, "no WebSocket here"));
        }
        acceptance.insert_header("X-Route", "echo").map_err(|e| Rejection::new(500, e.to_string()))?;
        Ok(Echo)
    });
    let addr = server.local_addr().expect("the server's address");

    let ws = ferrule_tokio::connect(&format!("ws://{addr}/echo"), &Options::default()).await.expect("upgraded");
    let mut channels = ws.channels::<String>();
    channels.sender.send("over the closure".to_owned()).await.expect("queued");
    assert_eq!(channels.receiver.recv().await.as_deref(), Some("over the closure"), "the echo");
    drop(channels.receiver);
    let info = channels.done.await;
    assert!(info.was_clean, "{info:?}");

    match ferrule_tokio::connect(&format!("ws://{addr}/elsewhere"), &Options::default()).await {
        Err(Error::Handshake(HandshakeError::NotSwitchingProtocols { status: 404, .. })) => {}
        other => panic!("expected the factory's 404, got {other:?}"),
    }
    assert_eq!(server.shutdown(std::time::Duration::from_secs(5)).await, 0, "connections left open");
}
