//! A connection's end says why: one test per [`CloseCause`], each showing the cause reach the
//! callback API's `on_close`, the channel API's done signal and (for failures) its error stream,
//! on every runtime.
//!
//! Each scenario has one possible outcome: the deadlines that must not fire are switched off, so
//! a busy machine can make a test slower but never change what it sees.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ferrule::{Channels, CloseCause, CloseCode, CloseInfo, Error, Handle, Message, Options};

use super::{
    Inbox, Probe, RawClient, TestRuntime, TestServer, addr, client_frame, connect_channels, echo_server,
    handover_server, join, poll_once, raw_upgraded, read_some, within,
};

/// How one server connection ended, as each API reports it.
struct Ends {
    /// `on_close`, on a callback-API server.
    callback: CloseInfo,
    /// The done signal, on a channel-API server.
    channels: CloseInfo,
    /// The channel-API server's error stream once done completed, in order.
    errors: Vec<Error>,
}

/// A short deadline for the one timer a scenario is about (virtual time where the runtime can
/// pause its clock).
const DEADLINE: Duration = Duration::from_millis(300);

/// Options with every deadline off but the write wait (60 s, never reached by a scenario that
/// does not stall writes): each scenario turns on the one it is about.
fn quiet() -> Options {
    Options::builder().ping_period(None).build().expect("valid")
}

/// Runs `scenario` against a callback-API server and then against a channel-API server, both with
/// `options`, and returns how the server's connection ended in each. The scenario gets the
/// server's address and an inbox where the server-side connection's [`Handle`] arrives once it is
/// open; whatever it returns (a client to keep open) is dropped only after the end was seen.
async fn server_ends<T, S, Fut, K>(options: Options, scenario: S) -> Ends
where
    T: TestRuntime,
    S: Fn(SocketAddr, Inbox<Handle>) -> Fut,
    Fut: Future<Output = K>,
{
    let probe = Probe::default();
    let server = echo_server::<T>(options.clone(), &probe).await;
    let kept = scenario(addr(&server), probe.handles.clone()).await;
    let callback = within::<T, _>(Duration::from_secs(30), "on_close", probe.closes.next()).await;
    drop(kept);

    let inbox = Inbox::<Channels<Message>>::default();
    let server = handover_server::<T, Message>(options, &inbox).await;
    let handles = Inbox::<Handle>::default();
    let hand_over = async {
        let channels = inbox.next().await;
        handles.push(channels.sender.handle().clone());
        channels
    };
    let (kept, mut channels) = join(scenario(addr(&server), handles.clone()), hand_over).await;
    let info = within::<T, _>(Duration::from_secs(30), "the done signal", channels.done.clone()).await;
    // The error is on the stream by the time done completes: a loop that returns on done can
    // still take it without waiting.
    let mut errors = Vec::new();
    while let Some(Some(error)) = poll_once(channels.errors.recv()).await {
        errors.push(error);
    }
    assert!(matches!(poll_once(channels.errors.recv()).await, Some(None)), "the error stream ends after done");
    drop(kept);
    Ends { callback, channels: info, errors }
}

/// Checks that both APIs report a cause `is_expected` accepts, and that the error stream carried
/// it as [`Error::Failed`] exactly when it is a failure.
fn assert_cause(ends: &Ends, what: &str, is_expected: impl Fn(&CloseCause) -> bool) {
    assert!(is_expected(&ends.callback.cause), "on_close: expected {what}, got {:?}", ends.callback);
    assert!(is_expected(&ends.channels.cause), "done: expected {what}, got {:?}", ends.channels);
    if ends.channels.cause.is_failure() {
        match ends.errors.as_slice() {
            [Error::Failed(cause)] if is_expected(cause) => {}
            other => panic!("the error stream should carry {what} once, got {other:?}"),
        }
        assert!(!ends.callback.was_clean && !ends.channels.was_clean, "a failure is never clean: {:?}", ends.channels);
    } else {
        assert!(ends.errors.is_empty(), "a closing handshake is no error, got {:?}", ends.errors);
    }
}

/// A raw client that upgrades and then neither reads nor writes.
async fn silent_client<T: TestRuntime>(addr: SocketAddr) -> RawClient<T::Stream> {
    raw_upgraded::<T>(addr).await
}

/// The server's application closes with 4001: [`CloseCause::Local`] with that code and reason.
pub async fn end_closed_by_the_server_application_is_local<T: TestRuntime>() {
    let ends = server_ends::<T, _, _, _>(quiet(), |addr, handles| async move {
        let client = connect_channels::<T, Message>(addr).await;
        handles.next().await.close(CloseCode::new(4001), "app").expect("close");
        within::<T, _>(Duration::from_secs(10), "the client's end", client.done.clone()).await;
        client
    })
    .await;
    let local = CloseCause::Local { code: CloseCode::new(4001), reason: "app".to_owned() };
    assert_cause(&ends, "Local(4001)", |c| *c == local);
    assert!(ends.callback.was_clean && ends.channels.was_clean);
}

/// A channel-API server whose receiver is full and not drained closes and waits for the end: the
/// closing handshake still completes cleanly (the driver reads on past the receive bound once
/// closing), rather than ending at the close timeout.
pub async fn end_closed_with_a_full_receive_queue_is_still_clean<T: TestRuntime>() {
    let options = Options::builder()
        .ping_period(None)
        .recv_buffer(ferrule::Bound::new(2, 1 << 20))
        .close_timeout(Duration::from_secs(3600))
        .build()
        .expect("valid");
    let inbox = Inbox::<Channels<Message>>::default();
    let server = handover_server::<T, Message>(options, &inbox).await;
    let client = connect_channels::<T, Message>(addr(&server)).await;
    let mut channels = inbox.next().await;
    for i in 0..20 {
        client.sender.send(Message::text(format!("m{i}"))).await.expect("sent");
    }
    // Take one message, so that deliveries have begun: with a bound of two, the queue is full
    // once one more arrives, and the driver stops reading. (The mechanism itself is checked
    // exactly by `shared`'s unit tests; here it runs end to end.)
    assert_eq!(channels.receiver.recv().await, Some(Message::text("m0")));
    for _ in 0..100 {
        super::yield_now().await;
    }
    channels.disconnect.disconnect(CloseCode::NORMAL, "done").expect("close");
    let info = within::<T, _>(Duration::from_secs(60), "the end", channels.done.clone()).await;
    let local = CloseCause::Local { code: CloseCode::NORMAL, reason: "done".to_owned() };
    assert_eq!((info.was_clean, &info.cause), (true, &local), "{info:?}");
    drop(client);
}

/// The client closes with 4002: the server sees [`CloseCause::Peer`].
pub async fn end_closed_by_the_peer_is_peer<T: TestRuntime>() {
    let ends = server_ends::<T, _, _, _>(quiet(), |addr, _handles| async move {
        let client = connect_channels::<T, Message>(addr).await;
        client.disconnect.disconnect(CloseCode::new(4002), "client").expect("close");
        within::<T, _>(Duration::from_secs(10), "the client's end", client.done.clone()).await;
        client
    })
    .await;
    assert_cause(&ends, "Peer", |c| *c == CloseCause::Peer);
    assert_eq!((ends.channels.code, ends.channels.reason.as_str()), (CloseCode::new(4002), "client"));
}

/// `Server::shutdown` ends each connection with [`CloseCause::ServerShutdown`], on both APIs.
pub async fn end_by_server_shutdown_is_server_shutdown<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(quiet(), &probe).await;
    let client = connect_channels::<T, Message>(addr(&server)).await;
    probe.handles.next().await;
    assert_eq!(server.shutdown(Duration::from_secs(10)).await, 0);
    let info = probe.closes.next().await;
    assert_eq!(info.cause, CloseCause::ServerShutdown, "{info:?}");
    assert_eq!(info.code, CloseCode::GOING_AWAY);
    assert_eq!(within::<T, _>(Duration::from_secs(10), "the client's end", client.done).await.cause, CloseCause::Peer);

    let inbox = Inbox::<Channels<Message>>::default();
    let server = handover_server::<T, Message>(quiet(), &inbox).await;
    let _client = connect_channels::<T, Message>(addr(&server)).await;
    let mut channels = inbox.next().await;
    assert_eq!(server.shutdown(Duration::from_secs(10)).await, 0);
    let info = channels.done.clone().await;
    assert_eq!(info.cause, CloseCause::ServerShutdown, "{info:?}");
    assert!(channels.errors.recv().await.is_none(), "a shutdown is no error");
}

/// A peer that answers nothing after a keepalive ping: [`CloseCause::PeerUnresponsive`].
pub async fn end_by_silent_peer_is_peer_unresponsive<T: TestRuntime>() {
    let options = Options::builder().ping_period(Some(DEADLINE / 2)).pong_wait(DEADLINE).build().expect("valid");
    let ends = server_ends::<T, _, _, _>(options, |addr, _| silent_client::<T>(addr)).await;
    assert_cause(&ends, "PeerUnresponsive", |c| *c == CloseCause::PeerUnresponsive);
    assert_eq!(ends.channels.code, CloseCode::ABNORMAL);
}

/// Nothing received within the read timeout: [`CloseCause::ReadTimeout`].
pub async fn end_by_read_timeout_is_read_timeout<T: TestRuntime>() {
    let options = Options::builder().ping_period(None).read_timeout(Some(DEADLINE)).build().expect("valid");
    let ends = server_ends::<T, _, _, _>(options, |addr, _| silent_client::<T>(addr)).await;
    assert_cause(&ends, "ReadTimeout", |c| *c == CloseCause::ReadTimeout);
}

/// The server closes and the peer never answers: [`CloseCause::CloseTimeout`].
pub async fn end_by_unanswered_close_is_close_timeout<T: TestRuntime>() {
    let options = Options::builder().ping_period(None).close_timeout(DEADLINE).build().expect("valid");
    let ends = server_ends::<T, _, _, _>(options, |addr, handles| async move {
        let client = silent_client::<T>(addr).await;
        handles.next().await.close(CloseCode::NORMAL, "").expect("close");
        client
    })
    .await;
    assert_cause(&ends, "CloseTimeout", |c| *c == CloseCause::CloseTimeout);
}

/// The peer stops reading while the server sends: its writes stall and
/// [`CloseCause::WriteTimeout`] ends the connection.
pub async fn end_by_stalled_writes_is_write_timeout<T: TestRuntime>() {
    let options = Options::builder().ping_period(None).write_wait(DEADLINE).build().expect("valid");
    let ends = server_ends::<T, _, _, _>(options, |addr, handles| async move {
        let client = silent_client::<T>(addr).await;
        let handle = handles.next().await;
        let block = Bytes::from(vec![7u8; 1 << 20]);
        // The sends wait while the send buffer is full and fail once the connection has ended;
        // no socket buffer holds a gibibyte.
        for _ in 0..1024 {
            if handle.send(Message::Binary(block.clone())).await.is_err() {
                break;
            }
        }
        client
    })
    .await;
    assert_cause(&ends, "WriteTimeout", |c| *c == CloseCause::WriteTimeout);
}

/// An unmasked frame from a client: [`CloseCause::Protocol`] with the violation, and 1002 sent.
pub async fn end_by_protocol_violation_is_protocol<T: TestRuntime>() {
    let ends = server_ends::<T, _, _, _>(quiet(), |addr, _| async move {
        let mut client = silent_client::<T>(addr).await;
        let mut unmasked = client_frame(true, 0x1, b"hi", [0; 4]);
        unmasked[1] &= 0x7F;
        unmasked.drain(2..6);
        client.send(&unmasked).await.expect("written");
        client
    })
    .await;
    assert_cause(
        &ends,
        "Protocol(1002)",
        |c| matches!(c, CloseCause::Protocol(e) if e.close_code() == CloseCode::PROTOCOL_ERROR),
    );
    assert_eq!(ends.channels.code, CloseCode::PROTOCOL_ERROR);
}

/// A handler that lowers its connection's message limit in `on_open` (eyesore's per-connection
/// `MaxMessageSize`): a message over it ends the connection with 1009, while one at the limit
/// and frames of any allowed size still pass.
pub async fn end_by_message_over_the_per_connection_limit_is_protocol_1009<T: TestRuntime>() {
    struct Limited(Inbox<CloseInfo>);
    impl ferrule::Handler for Limited {
        fn on_open(&mut self, ctx: &mut ferrule::Ctx<'_>) -> Result<(), ferrule::HandlerError> {
            ctx.set_max_message_size(10)?;
            ctx.set_max_frame_size(1000)?;
            assert!(ctx.set_max_message_size(0).is_err(), "a zero limit is refused");
            Ok(())
        }
        fn on_message(&mut self, ctx: &mut ferrule::Ctx<'_>, message: Message) -> Result<(), ferrule::HandlerError> {
            ctx.send(&message)?;
            Ok(())
        }
        fn on_close(&mut self, info: &CloseInfo) {
            self.0.push(info.clone());
        }
    }
    let closes = Inbox::<CloseInfo>::default();
    let server = {
        let closes = closes.clone();
        T::serve(quiet(), move |_: &ferrule::Request, _: &mut ferrule::Acceptance| Ok(Limited(closes.clone()))).await
    };
    let mut client = connect_channels::<T, Message>(addr(&server)).await;
    client.sender.send(Message::text("0123456789")).await.expect("sent");
    let echo = within::<T, _>(Duration::from_secs(10), "the echo", client.receiver.recv()).await;
    assert_eq!(echo, Some(Message::text("0123456789")), "a message at the limit passes");
    client.sender.send(Message::text("0123456789a")).await.expect("sent");
    let info = within::<T, _>(Duration::from_secs(10), "the server's end", closes.next()).await;
    assert!(matches!(&info.cause, CloseCause::Protocol(e) if e.close_code() == CloseCode::MESSAGE_TOO_BIG), "{info:?}");
    let client_end = within::<T, _>(Duration::from_secs(10), "the client's end", client.done).await;
    assert_eq!(client_end.code, CloseCode::MESSAGE_TOO_BIG, "{client_end:?}");
}

/// The peer resets the TCP connection: [`CloseCause::Transport`] with the error.
pub async fn end_by_reset_is_transport<T: TestRuntime>() {
    let ends = server_ends::<T, _, _, _>(quiet(), |addr, handles| async move {
        let mut client = silent_client::<T>(addr).await;
        handles.next().await.send(Message::text("unread")).await.expect("queued");
        // Read one byte, so the rest of the frame is known to be here and unread: closing a
        // socket with unread input makes the kernel send a reset instead of a FIN.
        let mut one = [0u8; 1];
        let n = within::<T, _>(Duration::from_secs(10), "the message", read_some(&mut client.io, &mut one)).await;
        assert_eq!(n.expect("read"), 1);
        drop(client);
    })
    .await;
    assert_cause(
        &ends,
        "Transport",
        |c| matches!(c, CloseCause::Transport(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
    );
}

/// The peer closes the TCP connection without a closing handshake:
/// [`CloseCause::TransportClosed`].
pub async fn end_by_vanished_peer_is_transport_closed<T: TestRuntime>() {
    let ends = server_ends::<T, _, _, _>(quiet(), |addr, handles| async move {
        let client = silent_client::<T>(addr).await;
        handles.next().await;
        drop(client);
    })
    .await;
    assert_cause(&ends, "TransportClosed", |c| *c == CloseCause::TransportClosed);
}

/// A client connection whose driver future is dropped mid-connection: `on_close` and the done
/// signal report [`CloseCause::Aborted`].
pub async fn end_by_dropped_driver_is_aborted<T: TestRuntime>() {
    let probe = Probe::default();
    let server = echo_server::<T>(quiet(), &probe).await;
    let upgraded = T::connect(&super::url(addr(&server)), &quiet()).await.expect("connected");
    let done = upgraded.handle().done();
    let closes = Inbox::<CloseInfo>::default();
    let run = upgraded.run(Recorder(closes.clone()));
    // Run it until the server has the connection, then drop it.
    let ran = super::select(run, probe.handles.next()).await;
    assert!(matches!(ran, super::Either::Right(_)), "the client ran to its end by itself");
    let info = closes.try_next().expect("on_close ran when the driver was dropped");
    assert_eq!(info.cause, CloseCause::Aborted, "{info:?}");
    assert_eq!(done.await.cause, CloseCause::Aborted);
    // The server sees the transport go.
    let server_side = within::<T, _>(Duration::from_secs(10), "the server's end", probe.closes.next()).await;
    assert!(server_side.cause.is_failure(), "{server_side:?}");
}

/// Records `on_close`.
struct Recorder(Inbox<CloseInfo>);

impl ferrule::Handler for Recorder {
    fn on_message(&mut self, _ctx: &mut ferrule::Ctx<'_>, _message: Message) -> Result<(), ferrule::HandlerError> {
        Ok(())
    }
    fn on_close(&mut self, info: &CloseInfo) {
        self.0.push(info.clone());
    }
}
