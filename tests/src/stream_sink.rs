//! The channel API as a `futures` `Stream` and `Sink`, on every runtime: round trips through
//! `split` halves, the bounds, cancel safety, and what the sink says once the connection closes.
//!
//! Instantiated per runtime by [`stream_sink_suite!`](crate::stream_sink_suite), on the
//! [`TestRuntime`]s of the main suite.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrule::{Bound, Channels, CloseCode, Error, Json, MessageKind, Options};
use futures_util::stream::{self, FusedStream};
use futures_util::{SinkExt, StreamExt};

use crate::suite::{Either, Inbox, TestRuntime, addr, connect_with, join, poll_once, select, within, yield_now};

/// Expands to one `#[test]` per test of this module for the runtime type `$rt`.
#[macro_export]
macro_rules! stream_sink_suite {
    ($rt:ty) => {
        $crate::stream_sink_suite!(@expand $rt;
            split_channels_round_trip_through_a_forwarding_echo_then_close_1000,
            sink_send_all_keeps_order_through_a_full_send_buffer,
            stream_next_cancelled_at_arbitrary_points_loses_nothing,
            sink_message_held_behind_a_writer_goes_out_after_it_and_cancelled_flush_loses_nothing,
            sink_after_close_reports_closed_and_the_stream_ends_for_good,
            sink_flush_of_a_held_message_reports_closed_when_the_connection_closes,
            sink_start_send_reports_an_encoding_failure_and_stays_usable,
        );
    };
    (@expand $rt:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::run::<$rt, _>(false, $crate::stream_sink::$name::<$rt>);
            }
        )*
    };
}

/// A channel-API server that echoes with `receiver.map(Ok).forward(sender)`.
async fn forwarding_echo_server<T: TestRuntime>() -> T::Server {
    T::serve_channels(Options::default(), |_request, ws: Channels<String>| async move {
        let Channels { receiver, sender, .. } = ws;
        let _ = receiver.map(Ok).forward(sender).await;
    })
    .await
}

/// A channel-API server that reports every text message it receives to `inbox`.
async fn recording_server<T: TestRuntime>(inbox: &Inbox<String>) -> T::Server {
    let inbox = inbox.clone();
    T::serve_channels(Options::default(), move |_request, mut ws: Channels<String>| {
        let inbox = inbox.clone();
        async move {
            while let Some(message) = ws.next().await {
                inbox.push(message);
            }
        }
    })
    .await
}

/// The next message the recording server received, within 10 s.
async fn next_recorded<T: TestRuntime>(inbox: &Inbox<String>) -> String {
    within::<T, _>(Duration::from_secs(10), "a message at the server", inbox.next()).await
}

/// The client splits its channels into a sink and a stream, sends with `SinkExt::send` and reads
/// the echoes with `StreamExt::next`; closing the sink closes the connection with 1000, after
/// which the stream ends and the close is clean.
pub async fn split_channels_round_trip_through_a_forwarding_echo_then_close_1000<T: TestRuntime>() {
    let server = forwarding_echo_server::<T>().await;
    let ws = connect_with::<T, String>(addr(&server), &Options::default()).await;
    let done = ws.done.clone();
    let (mut write, mut read) = ws.split();
    within::<T, _>(Duration::from_secs(10), "the round trips", async {
        for i in 0..100 {
            write.send(format!("message {i}")).await.expect("sent");
            assert_eq!(read.next().await, Some(format!("message {i}")));
        }
        write.close().await.expect("closed");
        assert_eq!(read.next().await, None, "the stream ends with the connection");
    })
    .await;
    let info = within::<T, _>(Duration::from_secs(10), "the end", done).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(info.code, CloseCode::NORMAL);
}

/// `SinkExt::send_all` through a send buffer of two messages (so `start_send` often finds it
/// full and holds the message) delivers every message once, in order, while the other half of
/// the split reads the echoes.
pub async fn sink_send_all_keeps_order_through_a_full_send_buffer<T: TestRuntime>() {
    const N: usize = 2000;
    let server = forwarding_echo_server::<T>().await;
    let options = Options::builder().send_buffer(Bound::new(2, 64)).build().expect("valid options");
    let (mut write, read) = connect_with::<T, String>(addr(&server), &options).await.split();
    let sending = async {
        let mut messages = stream::iter((0..N).map(|i| Ok(i.to_string())));
        write.send_all(&mut messages).await.expect("all sent");
    };
    let (_, echoed) = within::<T, _>(
        Duration::from_secs(30),
        "the echoes",
        join(sending, read.take(N).map(|m| m.parse::<usize>().expect("a number")).collect::<Vec<_>>()),
    )
    .await;
    assert_eq!(echoed, (0..N).collect::<Vec<_>>());
}

/// `StreamExt::next` futures dropped at arbitrary points (polled once, or raced against a yield)
/// lose no message: every one arrives once, in order.
pub async fn stream_next_cancelled_at_arbitrary_points_loses_nothing<T: TestRuntime>() {
    const N: usize = 1000;
    let server = T::serve_channels(Options::default(), |_request, mut ws: Channels<String>| async move {
        for i in 0..N {
            if SinkExt::send(&mut ws, i.to_string()).await.is_err() {
                return;
            }
            if i % 8 == 7 {
                yield_now().await;
            }
        }
        // Stay until the client goes.
        ws.done.clone().await;
    })
    .await;
    let options = Options::builder().recv_buffer(Bound::new(2, 64)).build().expect("valid options");
    let mut ws = connect_with::<T, String>(addr(&server), &options).await;
    let mut got = Vec::with_capacity(N);
    let mut cancelled = 0usize;
    within::<T, _>(Duration::from_secs(30), "every message", async {
        let mut turn = 0usize;
        while got.len() < N {
            turn += 1;
            let outcome = match turn % 3 {
                0 => poll_once(ws.next()).await,
                1 => match select(ws.next(), yield_now()).await {
                    Either::Left(m) => Some(m),
                    Either::Right(()) => None,
                },
                _ => Some(ws.next().await),
            };
            match outcome {
                Some(Some(m)) => got.push(m.parse::<usize>().expect("a number")),
                Some(None) => panic!("the stream ended after {} messages", got.len()),
                None => cancelled += 1,
            }
        }
    })
    .await;
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(cancelled > 0, "no next() was cancelled: the test tested nothing");
}

/// While a `MessageWriter` has a message open, `SinkExt::feed` completes with the message held
/// by the sender. A `flush` dropped while it waits loses nothing; a `send` dropped while it waits
/// for room drops its own message (as documented) and nothing else. Once the writer finishes,
/// the held message goes out after the writer's, and later sends after it.
pub async fn sink_message_held_behind_a_writer_goes_out_after_it_and_cancelled_flush_loses_nothing<T: TestRuntime>() {
    let inbox = Inbox::default();
    let server = recording_server::<T>(&inbox).await;
    let mut ws = connect_with::<T, String>(addr(&server), &Options::default()).await;
    let mut writer = ws.sender.handle().start_message(MessageKind::Text).await.expect("a writer");
    writer.write("first ").await.expect("a fragment");
    ws.sender.feed("held".to_owned()).await.expect("fed");
    assert!(format!("{:?}", ws.sender).contains("holds_a_message: true"), "{:?}", ws.sender);
    assert!(poll_once(ws.sender.flush()).await.is_none(), "flush waits for the writer");
    assert!(poll_once(SinkExt::send(&mut ws.sender, "dropped".to_owned())).await.is_none(), "send waits for room");
    writer.finish("half").await.expect("the last fragment");
    within::<T, _>(Duration::from_secs(10), "the flush", ws.sender.flush()).await.expect("flushed");
    SinkExt::send(&mut ws.sender, "after".to_owned()).await.expect("sent");
    assert_eq!(next_recorded::<T>(&inbox).await, "first half");
    assert_eq!(next_recorded::<T>(&inbox).await, "held");
    assert_eq!(next_recorded::<T>(&inbox).await, "after", "the cancelled send's message is not sent");
}

/// After `SinkExt::close` the sink refuses messages with `Error::Closed`, flushing and closing
/// again succeed (nothing is held), and the stream ends and stays ended.
pub async fn sink_after_close_reports_closed_and_the_stream_ends_for_good<T: TestRuntime>() {
    let inbox = Inbox::default();
    let server = recording_server::<T>(&inbox).await;
    let mut ws = connect_with::<T, String>(addr(&server), &Options::default()).await;
    SinkExt::send(&mut ws, "before".to_owned()).await.expect("sent");
    SinkExt::close(&mut ws).await.expect("closed");
    assert!(matches!(SinkExt::send(&mut ws, "late".to_owned()).await, Err(Error::Closed)));
    assert!(matches!(ws.sender.feed("late".to_owned()).await, Err(Error::Closed)));
    ws.flush().await.expect("nothing is held");
    SinkExt::close(&mut ws).await.expect("closing again is not an error");
    within::<T, _>(Duration::from_secs(10), "the end of the stream", async {
        assert_eq!(ws.next().await, None);
    })
    .await;
    assert!(ws.is_terminated() && ws.receiver.is_terminated());
    assert_eq!(ws.next().await, None, "ended for good");
    let info = within::<T, _>(Duration::from_secs(10), "the end", ws.done.clone()).await;
    assert!(info.was_clean && info.code == CloseCode::NORMAL, "{info:?}");
    assert_eq!(next_recorded::<T>(&inbox).await, "before", "sent before the close frame");
}

/// A message the sender holds when the connection starts closing cannot be sent: the flush
/// reports `Error::Closed`, and drops it (the next flush has nothing to report).
pub async fn sink_flush_of_a_held_message_reports_closed_when_the_connection_closes<T: TestRuntime>() {
    let inbox = Inbox::default();
    let server = recording_server::<T>(&inbox).await;
    let mut ws = connect_with::<T, String>(addr(&server), &Options::default()).await;
    let writer = ws.sender.handle().start_message(MessageKind::Text).await.expect("a writer");
    ws.sender.feed("held".to_owned()).await.expect("fed");
    ws.disconnect.disconnect(CloseCode::NORMAL, "bye").expect("closing");
    assert!(matches!(ws.sender.flush().await, Err(Error::Closed)));
    ws.sender.flush().await.expect("nothing is held any more");
    drop(writer);
    let info = within::<T, _>(Duration::from_secs(10), "the end", ws.done.clone()).await;
    assert_eq!(info.code, CloseCode::NORMAL, "{info:?}");
    assert!(inbox.is_empty(), "the held message was not sent");
}

/// A message that does not encode fails `start_send` with `Error::Encode`; the sink stays usable.
pub async fn sink_start_send_reports_an_encoding_failure_and_stays_usable<T: TestRuntime>() {
    type Pairs = Json<BTreeMap<(u8, u8), u8>>;
    let inbox = Inbox::default();
    let server = recording_server::<T>(&inbox).await;
    let mut ws = connect_with::<T, Pairs>(addr(&server), &Options::default()).await;
    // JSON object keys must be strings: a tuple key does not encode.
    let unencodable = Json(BTreeMap::from([((1, 2), 3)]));
    assert!(matches!(SinkExt::send(&mut ws, unencodable).await, Err(Error::Encode(_))));
    SinkExt::send(&mut ws, Json(BTreeMap::new())).await.expect("sent");
    assert_eq!(next_recorded::<T>(&inbox).await, "{}");
}
