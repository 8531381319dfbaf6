//! The hub (`ferrule::hub`) end to end over loopback TCP, on every runtime: ids, rooms, emits,
//! named events and their errors, acknowledgements both ways (timeouts on the paused clock), the
//! slow-recipient policy, disconnect by id, and the order of the on-leave and on-disconnect
//! callbacks.
//!
//! Instantiated per runtime by [`hub_suite!`](crate::hub_suite). Clients are the channel API's,
//! speaking the hub's wire format by hand, so the tests also pin the format down. A test that
//! must show a client did *not* receive something emits a marker to everyone afterwards: the
//! client's next message must be the marker.

use std::time::Duration;

use bytes::Bytes;
use ferrule::hub::{AckError, ConnId, EmitError, Hub, HubError, SlowRecipients, Socket, Values};
use ferrule::{
    Acceptance, Bound, Channels, CloseCause, CloseCode, DeflateConfig, HandlerError, Message, Options, Rejection,
    Request,
};
use serde_json::{Value, json};

use crate::suite::{Inbox, TestRuntime, addr, client_frame, now, raw_upgraded, sleep, url, within};

/// Expands to one `#[test]` per hub test for the runtime type `$rt` (a
/// [`TestRuntime`](crate::suite::TestRuntime)).
#[macro_export]
macro_rules! hub_suite {
    ($rt:ty) => {
        $crate::hub_suite!(@expand $rt;
            real hub_open_message_carries_version_and_a_random_128_bit_id,
            real hub_id_generator_sees_the_request_and_a_taken_id_is_refused,
            real hub_emit_to_rooms_reaches_each_member_once_and_no_one_else,
            real hub_socket_broadcast_and_to_leave_out_the_sender,
            real hub_emit_to_everyone_but_a_set_of_ids,
            real hub_native_messages_pass_through_untouched_both_ways,
            real hub_unknown_event_bad_payload_and_malformed_go_to_error_callbacks_and_the_connection_stays,
            real hub_client_ack_gets_the_handlers_reply_or_a_nack,
            real hub_burst_of_requests_in_one_write_gets_every_reply_and_the_client_stays,
            real hub_server_ack_returns_the_clients_reply,
            paused hub_server_ack_times_out_on_the_runtime_clock_and_a_late_reply_is_an_error,
            paused hub_broadcast_ack_collects_the_replies_that_came_in_time,
            paused hub_slow_recipient_loses_messages_under_drop_while_others_get_all,
            paused hub_slow_recipient_is_disconnected_with_1013_once_while_others_get_all,
            real hub_disconnect_by_id_closes_with_code_and_reason,
            real hub_disconnect_leaves_every_room_with_on_leave_before_removal,
            real hub_store_keeps_typed_values_per_connection,
            real hub_ping_and_pong_callbacks_fire,
            real hub_stats_count_connections_rooms_messages_and_close_causes,
            real hub_emit_with_a_reserved_name_or_an_unserializable_payload_sends_nothing,
            real hub_compressed_broadcast_reaches_compressing_and_plain_clients_intact,
            real hub_on_connect_refuses_an_upgrade_or_fills_the_store_from_the_request,
            real hub_on_connection_error_closes_with_its_code_and_leaves_nothing_behind,
        );
    };
    (@expand $rt:ty; $($mode:ident $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::suite::run::<$rt, _>($crate::hub_suite!(@mode $mode), $crate::hub::$name::<$rt>);
            }
        )*
    };
    (@mode real) => {
        false
    };
    (@mode paused) => {
        true
    };
}

/// How long a test waits for a message that must come (on the runtime's clock).
const WAIT: Duration = Duration::from_secs(10);

/// A client of a hub: its channels, and the id the hub gave it in `$open`.
pub struct HubClient {
    /// The connection.
    pub channels: Channels<Message>,
    /// The id from `$open`.
    pub id: String,
}

impl HubClient {
    /// Connects to a hub at `path` and reads its `$open`.
    pub async fn connect<T: TestRuntime>(server: &T::Server, path: &str) -> Self {
        Self::connect_with::<T>(server, path, &Options::default()).await
    }

    /// Connects with `options` to a hub at `path` and reads its `$open`.
    pub async fn connect_with<T: TestRuntime>(server: &T::Server, path: &str, options: &Options) -> Self {
        let url = format!("{}{}", url(addr(server)), path.trim_start_matches('/'));
        let upgraded = T::connect(&url, options).await.expect("connected");
        assert_eq!(upgraded.deflate().is_some(), options.compression().is_some(), "compression as asked");
        let channels = upgraded.channels::<Message>();
        let mut client = Self { channels, id: String::new() };
        let open = client.next::<T>().await;
        assert_eq!(open[0], "$open", "{open}");
        assert_eq!(open[1]["v"], 1, "{open}");
        client.id = open[1]["id"].as_str().expect("an id").to_owned();
        client
    }

    /// Sends a text message as it is.
    pub async fn send(&self, text: &str) {
        self.channels.sender.send(Message::from(text.to_owned())).await.expect("sent");
    }

    /// The next message, which must be a hub message (JSON).
    pub async fn next<T: TestRuntime>(&mut self) -> Value {
        match self.next_message::<T>().await {
            Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
            other => panic!("expected a hub message, got {other:?}"),
        }
    }

    /// The next message of any kind.
    pub async fn next_message<T: TestRuntime>(&mut self) -> Message {
        within::<T, _>(WAIT, "a message", self.channels.receiver.recv()).await.expect("a message before the end")
    }

    /// Sends `["event", payload, id]` and returns the reply (`["$ack", id, reply]` or a `$nack`).
    pub async fn request<T: TestRuntime>(&mut self, event: &str, payload: Value, id: u64) -> Value {
        self.send(&json!([event, payload, id]).to_string()).await;
        let reply = self.next::<T>().await;
        assert_eq!(reply[1], id, "{reply}");
        reply
    }

    /// Asks the hub to put this client in `room` (the test hubs' `join` event) and waits until it
    /// did.
    pub async fn join<T: TestRuntime>(&mut self, room: &str) {
        let reply = self.request::<T>("join", json!(room), 9_000).await;
        assert_eq!(reply, json!(["$ack", 9_000, true]));
    }
}

/// What the test hubs' callbacks saw, in order.
type Seen = Inbox<String>;

/// A hub with the callbacks the tests look at: `join` (with a reply), `leave`, `echo`, `shout`
/// (to everyone else), `add` (with a reply), `typed` (a number), `count` (a value in the
/// store), and every callback recorded in `seen`.
fn test_hub<T: TestRuntime>(seen: &Seen, policy: SlowRecipients) -> Hub<T::Runtime> {
    let s = seen.clone();
    let (s1, s2, s3, s4, s5, s6) = (s.clone(), s.clone(), s.clone(), s.clone(), s.clone(), s.clone());
    Hub::builder(T::runtime())
        .slow_recipients(policy)
        .on_connection(move |socket: &Socket<T::Runtime>| {
            socket.insert(0u32);
            s1.push(format!("connect {}", socket.id()));
            Ok(())
        })
        .on_with_ack("join", |socket: &Socket<T::Runtime>, room: String| Ok(socket.join(&room)))
        .on_with_ack("leave", |socket: &Socket<T::Runtime>, room: String| Ok(socket.leave(&room)))
        .on("echo", |socket: &Socket<T::Runtime>, value: Value| {
            socket.emit("echo", &value)?;
            Ok(())
        })
        .on("shout", |socket: &Socket<T::Runtime>, value: Value| {
            socket.broadcast().emit("shout", &value)?;
            Ok(())
        })
        .on("to", |socket: &Socket<T::Runtime>, (room, value): (String, Value)| {
            socket.to(&room).emit("to", &value)?;
            Ok(())
        })
        .on_with_ack("add", |_: &Socket<T::Runtime>, (a, b): (i64, i64)| Ok(a + b))
        .on("typed", |_: &Socket<T::Runtime>, _: u32| Ok(()))
        .on("fail", |_: &Socket<T::Runtime>, ()| Err("the handler said no".into()))
        .on("fire", |socket: &Socket<T::Runtime>, what: String| {
            socket.fire_error(what);
            Ok(())
        })
        .on_with_ack("count", |socket: &Socket<T::Runtime>, ()| {
            Ok(socket.with(|n: Option<&mut u32>| {
                n.map(|n| {
                    *n += 1;
                    *n
                })
            }))
        })
        .on_error(move |socket: &Socket<T::Runtime>, error: &HubError| {
            let kind = match error {
                HubError::Malformed(_) => "malformed".to_owned(),
                HubError::UnknownEvent { event } => format!("unknown {event}"),
                HubError::BadPayload { event, .. } => format!("bad payload {event}"),
                HubError::Handler { event, error } => format!("handler {event}: {error}"),
                HubError::UnexpectedAck { id } => format!("unexpected ack {id}"),
                HubError::App(error) => format!("app: {error}"),
                other => format!("other {other}"),
            };
            s2.push(format!("error {} {kind}", socket.id()));
        })
        .on_leave(move |socket: &Socket<T::Runtime>, room: &str| {
            let registered = socket.hub().is_connected(socket.id());
            s3.push(format!("leave {} {room} registered={registered}", socket.id()));
        })
        .on_disconnect(move |socket: &Socket<T::Runtime>, info| {
            let registered = socket.hub().is_connected(socket.id());
            s4.push(format!(
                "disconnect {} {} {} registered={registered}",
                socket.id(),
                info.code,
                cause_name(&info.cause)
            ));
        })
        .on_native(move |socket: &Socket<T::Runtime>, message: &Message| {
            s5.push(format!("native {} {message:?}", socket.id()));
        })
        .on_ping(move |socket: &Socket<T::Runtime>, payload: &[u8]| {
            s6.push(format!("ping {} {}", socket.id(), String::from_utf8_lossy(payload)));
        })
        .on_pong(move |socket: &Socket<T::Runtime>, payload: &[u8]| {
            s.push(format!("pong {} {}", socket.id(), String::from_utf8_lossy(payload)));
        })
        .build()
}

fn cause_name(cause: &CloseCause) -> &'static str {
    match cause {
        CloseCause::Local { .. } => "local",
        CloseCause::Peer => "peer",
        CloseCause::CloseTimeout => "close-timeout",
        CloseCause::WriteTimeout => "write-timeout",
        CloseCause::TransportClosed => "transport-closed",
        _ => "other",
    }
}

async fn serve<T: TestRuntime>(hub: &Hub<T::Runtime>, options: Options) -> T::Server {
    T::serve(options, hub.handler_factory()).await
}

/// A [`test_hub`] that drops messages for slow recipients, served with the default options, and
/// what its callbacks saw.
async fn start<T: TestRuntime>() -> (Seen, Hub<T::Runtime>, T::Server) {
    let seen = Seen::default();
    let hub = test_hub::<T>(&seen, SlowRecipients::Drop);
    let server = serve::<T>(&hub, Options::default()).await;
    (seen, hub, server)
}

/// `N` clients of the hub `server` serves, connected at `/` one after the other.
async fn clients<T: TestRuntime, const N: usize>(server: &T::Server) -> [HubClient; N] {
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        clients.push(HubClient::connect::<T>(server, "/").await);
    }
    let Ok(clients) = clients.try_into() else { unreachable!("{N} clients were connected") };
    clients
}

/// Waits for the next item `seen` records that starts with `prefix`, skipping others.
async fn seen_next<T: TestRuntime>(seen: &Seen, prefix: &str) -> String {
    within::<T, _>(WAIT, prefix, async {
        loop {
            let item = seen.next().await;
            if item.starts_with(prefix) {
                return item;
            }
        }
    })
    .await
}

/// Emits a marker to everyone from `hub` and checks it is each client's next message.
pub(crate) async fn marker_is_next<T: TestRuntime>(hub: &Hub<T::Runtime>, clients: &mut [&mut HubClient], n: u32) {
    hub.emit("marker", &n).expect("encoded");
    for client in clients.iter_mut() {
        assert_eq!(client.next::<T>().await, json!(["marker", n]), "client {}", client.id);
    }
}

/// Each connection's first message is `$open` with the wire format's version and its id: 128 random
/// bits as 32 hex digits, different for each, registered and in its own room.
pub async fn hub_open_message_carries_version_and_a_random_128_bit_id<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let [a, b] = clients::<T, 2>(&server).await;
    for client in [&a, &b] {
        assert_eq!(client.id.len(), 32, "{}", client.id);
        assert!(client.id.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{}", client.id);
        assert!(hub.is_connected(&client.id));
        assert!(hub.is_joined(&client.id, &client.id), "in its own room");
    }
    assert_ne!(a.id, b.id);
    assert_eq!(hub.len(), 2);
    let ids: Vec<String> = hub.sockets().iter().map(|s| s.id().to_string()).collect();
    assert!(ids.contains(&a.id) && ids.contains(&b.id));
    assert_eq!(hub.get(&a.id).map(|s| s.id().to_string()), Some(a.id.clone()));
}

/// A custom id generator makes the id from the upgrade request; a second connection with a taken id
/// is refused with 409.
pub async fn hub_id_generator_sees_the_request_and_a_taken_id_is_refused<T: TestRuntime>() {
    let hub =
        Hub::builder(T::runtime()).id_generator(|request| ConnId::from(request.path().trim_start_matches('/'))).build();
    let server = serve::<T>(&hub, Options::default()).await;
    let alice = HubClient::connect::<T>(&server, "/alice").await;
    assert_eq!(alice.id, "alice");
    assert!(hub.is_connected("alice"));
    let again = T::connect(&format!("{}alice", url(addr(&server))), &Options::default()).await;
    let Err(error) = again else { panic!("a second alice was accepted") };
    assert!(error.to_string().contains("409"), "{error}");
    assert_eq!(hub.len(), 1);
}

/// An emit to several rooms reaches each member once (a member of two rooms too) and nobody else;
/// to an id, that connection only; after leaving a room, its emits stop.
pub async fn hub_emit_to_rooms_reaches_each_member_once_and_no_one_else<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let [mut a, mut b, mut c] = clients::<T, 3>(&server).await;
    a.join::<T>("x").await;
    a.join::<T>("y").await;
    b.join::<T>("y").await;
    assert!(hub.is_joined(&a.id, "x") && hub.is_joined(&b.id, "y") && !hub.is_joined(&c.id, "y"));
    assert_eq!(hub.sockets_in("y").len(), 2);

    let delivery = hub.to("x").to("y").emit("news", &json!({"n": 1})).expect("encoded");
    assert_eq!(delivery.queued, 2, "a is in both rooms and counted once");
    assert_eq!(a.next::<T>().await, json!(["news", {"n": 1}]));
    assert_eq!(b.next::<T>().await, json!(["news", {"n": 1}]));
    marker_is_next::<T>(&hub, &mut [&mut a, &mut b, &mut c], 1).await;

    // To one connection: its own room.
    hub.to(&c.id).emit("private", "psst").expect("encoded");
    assert_eq!(c.next::<T>().await, json!(["private", "psst"]));
    marker_is_next::<T>(&hub, &mut [&mut a, &mut b, &mut c], 2).await;

    // After leaving, a room's emits no longer arrive.
    assert_eq!(a.request::<T>("leave", json!("y"), 5).await, json!(["$ack", 5, true]));
    assert_eq!(a.request::<T>("leave", json!(a.id.clone()), 6).await, json!(["$ack", 6, false]), "its own room stays");
    hub.to("y").emit("news", &2).expect("encoded");
    assert_eq!(b.next::<T>().await, json!(["news", 2]));
    marker_is_next::<T>(&hub, &mut [&mut a, &mut b, &mut c], 3).await;
}

/// `socket.broadcast()` and `socket.to(room)` leave the sender out.
pub async fn hub_socket_broadcast_and_to_leave_out_the_sender<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let [mut a, mut b, mut c] = clients::<T, 3>(&server).await;
    a.send(r#"["shout", "hello"]"#).await;
    assert_eq!(b.next::<T>().await, json!(["shout", "hello"]));
    assert_eq!(c.next::<T>().await, json!(["shout", "hello"]));
    marker_is_next::<T>(&hub, &mut [&mut a, &mut b, &mut c], 1).await;

    a.join::<T>("r").await;
    b.join::<T>("r").await;
    a.send(r#"["to", ["r", "in r"]]"#).await;
    assert_eq!(b.next::<T>().await, json!(["to", "in r"]));
    marker_is_next::<T>(&hub, &mut [&mut a, &mut b, &mut c], 2).await;

    a.send(r#"["echo", [1, "two"]]"#).await;
    assert_eq!(a.next::<T>().await, json!(["echo", [1, "two"]]));
    marker_is_next::<T>(&hub, &mut [&mut a, &mut b, &mut c], 3).await;
}

/// An emit to everyone but a set of ids reaches only the others.
pub async fn hub_emit_to_everyone_but_a_set_of_ids<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let [mut a, mut b, mut c] = clients::<T, 3>(&server).await;
    let delivery = hub.all().except(&a.id).except(&c.id).emit("only-b", &()).expect("encoded");
    assert_eq!(delivery.queued, 1);
    assert_eq!(b.next::<T>().await, json!(["only-b", null]));
    marker_is_next::<T>(&hub, &mut [&mut a, &mut b, &mut c], 1).await;
}

/// Native messages (text that is not a JSON array, and binary) reach the native callbacks as sent,
/// and `send` delivers them to clients untouched.
pub async fn hub_native_messages_pass_through_untouched_both_ways<T: TestRuntime>() {
    let (seen, hub, server) = start::<T>().await;
    let mut a = HubClient::connect::<T>(&server, "/").await;
    let id = a.id.clone();
    assert_eq!(seen_next::<T>(&seen, "connect").await, format!("connect {id}"));

    a.send("plain text").await;
    let binary = Bytes::from_static(b"[\x00\x01binary");
    a.channels.sender.send(Message::Binary(binary.clone())).await.expect("sent");
    assert_eq!(seen_next::<T>(&seen, "native").await, format!("native {id} {:?}", Message::from("plain text")));
    assert_eq!(seen_next::<T>(&seen, "native").await, format!("native {id} {:?}", Message::Binary(binary.clone())));

    let delivery = hub.to(&id).send(Message::from("raw text"));
    assert_eq!(delivery.queued, 1);
    hub.all().send(binary.clone());
    assert_eq!(a.next_message::<T>().await, Message::from("raw text"));
    assert_eq!(a.next_message::<T>().await, Message::Binary(binary));
}

/// An unknown event, a payload of the wrong type, malformed or unknown reserved messages, a
/// handler's error, the application's fired error and an ack nothing waits for each reach the error
/// callbacks, and the connection stays open.
pub async fn hub_unknown_event_bad_payload_and_malformed_go_to_error_callbacks_and_the_connection_stays<
    T: TestRuntime,
>() {
    let (seen, hub, server) = start::<T>().await;
    let mut a = HubClient::connect::<T>(&server, "/").await;
    let id = a.id.clone();
    for (sent, expected) in [
        (r#"["nope", 1]"#, "unknown nope"),
        (r#"["typed", "not a number"]"#, "bad payload typed"),
        (r#"["typed", 1, 2, 3]"#, "malformed"),
        ("[not json", "malformed"),
        (r#"["$bogus", 1]"#, "malformed"),
        (r#"["fail"]"#, "handler fail: the handler said no"),
        (r#"["fire", "from the app"]"#, "app: from the app"),
        (r#"["$ack", 424242, 1]"#, "unexpected ack 424242"),
    ] {
        a.send(sent).await;
        assert_eq!(seen_next::<T>(&seen, "error").await, format!("error {id} {expected}"), "after {sent}");
    }
    // Still connected and served.
    a.send(r#"["echo", "still here"]"#).await;
    assert_eq!(a.next::<T>().await, json!(["echo", "still here"]));
    assert!(hub.is_connected(&id));
    assert_eq!(hub.stats().errors, 8);
}

/// A client's event with an ack id gets the handler's reply after whatever the handler emitted,
/// `null` from a handler without a reply, and a `$nack` for an unknown event, a bad payload or a
/// failed handler.
pub async fn hub_client_ack_gets_the_handlers_reply_or_a_nack<T: TestRuntime>() {
    let (_, _, server) = start::<T>().await;
    let mut a = HubClient::connect::<T>(&server, "/").await;
    assert_eq!(a.request::<T>("add", json!([2, 3]), 7).await, json!(["$ack", 7, 5]));
    a.send(r#"["echo", "x", 8]"#).await;
    assert_eq!(a.next::<T>().await, json!(["echo", "x"]), "what the handler emitted comes before the ack");
    assert_eq!(a.next::<T>().await, json!(["$ack", 8, null]), "a handler without a reply acknowledges with null");
    let nack = a.request::<T>("nope", json!(1), 9).await;
    assert_eq!(nack, json!(["$nack", 9, "unknown event"]));
    let nack = a.request::<T>("add", json!("two numbers"), 10).await;
    assert_eq!(nack[0], "$nack");
    let nack = a.request::<T>("fail", json!(null), 11).await;
    assert_eq!(nack, json!(["$nack", 11, "the handler said no"]));
}

/// More requests in one write than a send queue holds (64 messages by default) get every reply,
/// in order, and the client is not disconnected as slow (1013): the replies go into the
/// connection as they are made, so the queue fills only when the client stops reading.
pub async fn hub_burst_of_requests_in_one_write_gets_every_reply_and_the_client_stays<T: TestRuntime>() {
    let seen = Seen::default();
    let hub = test_hub::<T>(&seen, SlowRecipients::default());
    let server = serve::<T>(&hub, Options::default()).await;
    let mut client = raw_upgraded::<T>(addr(&server)).await;
    let open = within::<T, _>(WAIT, "$open", client.read_frame()).await.expect("$open");
    let open: Value = serde_json::from_slice(&open.payload).expect("JSON");
    let id = open[1]["id"].as_str().expect("an id").to_owned();
    let burst: Vec<u8> = (0..200u64)
        .flat_map(|i| client_frame(true, 1, json!(["add", [i, 1], i + 1]).to_string().as_bytes(), [7, 1, 2, 9]))
        .collect();
    client.send(&burst).await.expect("the burst was written");
    for i in 0..200u64 {
        let reply = within::<T, _>(WAIT, "a reply", client.read_frame()).await.expect("a reply before the end");
        assert_eq!(reply.opcode, 1, "a text frame, not a close: {reply:?}");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(reply, json!(["$ack", i + 1, i + 1]));
    }
    assert!(hub.is_connected(&id));
    assert_eq!(hub.stats().slow_disconnects, 0);
}

/// A server emit with an ack gets the client's reply decoded, a refusal, a decode error, or
/// `Disconnected` when the connection ends first.
pub async fn hub_server_ack_returns_the_clients_reply<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let mut a = HubClient::connect::<T>(&server, "/").await;
    let socket = hub.get(&a.id).expect("registered");
    let ack =
        socket.emit_with_ack::<String, _>("question", &json!({"q": 1}), Duration::from_secs(30)).expect("encoded");
    let asked = a.next::<T>().await;
    assert_eq!(asked[0], "question");
    assert_eq!(asked[1], json!({"q": 1}));
    let id = asked[2].as_u64().expect("an ack id");
    a.send(&json!(["$ack", id, "yes"]).to_string()).await;
    assert_eq!(within::<T, _>(WAIT, "the ack", ack).await, Ok("yes".to_owned()));

    // A refusal, and a reply of the wrong type.
    let ack = socket.emit_with_ack::<String, _>("question", &2, Duration::from_secs(30)).expect("encoded");
    let id = a.next::<T>().await[2].as_u64().expect("an ack id");
    a.send(&json!(["$nack", id, "rather not"]).to_string()).await;
    assert_eq!(within::<T, _>(WAIT, "the nack", ack).await, Err(AckError::Refused("rather not".into())));
    let ack = socket.emit_with_ack::<String, _>("question", &3, Duration::from_secs(30)).expect("encoded");
    let id = a.next::<T>().await[2].as_u64().expect("an ack id");
    a.send(&json!(["$ack", id, 42]).to_string()).await;
    assert!(matches!(within::<T, _>(WAIT, "the ack", ack).await, Err(AckError::Decode(_))));

    // The connection ends while the server waits.
    let ack = socket.emit_with_ack::<String, _>("question", &4, Duration::from_secs(30)).expect("encoded");
    a.next::<T>().await;
    a.channels.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
    assert_eq!(within::<T, _>(WAIT, "the ack", ack).await, Err(AckError::Disconnected));
}

/// A server emit with an ack that gets no reply times out at its deadline on the runtime's (paused)
/// clock; a reply after that goes to the error callbacks.
pub async fn hub_server_ack_times_out_on_the_runtime_clock_and_a_late_reply_is_an_error<T: TestRuntime>() {
    let (seen, hub, server) = start::<T>().await;
    let mut a = HubClient::connect::<T>(&server, "/").await;
    let socket = hub.get(&a.id).expect("registered");
    let timeout = Duration::from_secs(5);
    let started = now::<T>();
    let ack = socket.emit_with_ack::<String, _>("question", &1, timeout).expect("encoded");
    let id = a.next::<T>().await[2].as_u64().expect("an ack id");
    assert_eq!(within::<T, _>(Duration::from_secs(60), "the timeout", ack).await, Err(AckError::Timeout));
    let waited = now::<T>() - started;
    assert!(waited >= timeout && waited < timeout + Duration::from_secs(1), "{waited:?}");
    a.send(&json!(["$ack", id, "too late"]).to_string()).await;
    assert_eq!(seen_next::<T>(&seen, "error").await, format!("error {} unexpected ack {id}", a.id));
}

/// A broadcast with acks sends one encoding (one ack id) to every recipient and collects the
/// replies that came within the timeout, the others as timeouts; when all reply, it ends early.
pub async fn hub_broadcast_ack_collects_the_replies_that_came_in_time<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let [mut a, mut b, mut c] = clients::<T, 3>(&server).await;
    let timeout = Duration::from_secs(5);
    let started = now::<T>();
    let acks = hub.all().emit_with_ack::<u32, _>("vote", "yes or no?", timeout).expect("encoded");
    let mut ids = Vec::new();
    for client in [&mut a, &mut b, &mut c] {
        let asked = client.next::<T>().await;
        assert_eq!((&asked[0], &asked[1]), (&json!("vote"), &json!("yes or no?")));
        ids.push(asked[2].as_u64().expect("an ack id"));
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one encoding, one id for every recipient: {ids:?}");
    a.send(&json!(["$ack", ids[0], 1]).to_string()).await;
    b.send(&json!(["$ack", ids[0], 2]).to_string()).await;
    let mut replies = within::<T, _>(Duration::from_secs(60), "the acks", acks).await;
    assert!(now::<T>() - started >= timeout, "c never replied, so the wait lasted the timeout");
    replies.sort_by_key(|(id, _)| [&a.id, &b.id, &c.id].iter().position(|x| **x == id.as_str()));
    let replies: Vec<_> = replies.into_iter().map(|(id, r)| (id.to_string(), r)).collect();
    assert_eq!(replies, [(a.id.clone(), Ok(1)), (b.id.clone(), Ok(2)), (c.id.clone(), Err(AckError::Timeout))]);

    // When everyone replies, the wait ends without the timeout.
    let started = now::<T>();
    let acks = hub.all().except(&c.id).emit_with_ack::<u32, _>("vote", &(), timeout).expect("encoded");
    for (client, n) in [(&mut a, 3), (&mut b, 4)] {
        let id = client.next::<T>().await[2].as_u64().expect("an ack id");
        client.send(&json!(["$ack", id, n]).to_string()).await;
    }
    let replies = within::<T, _>(Duration::from_secs(60), "the acks", acks).await;
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|(_, r)| r.is_ok()), "{replies:?}");
    assert!(now::<T>() - started < timeout);
}

/// A hub with one client that reads everything and one raw client that reads nothing; emits
/// 64 KiB messages until the silent one's send queue (2 messages) is full several times over.
/// Returns the hub, the fast client, the silent one's id, and the deliveries.
async fn slow_recipient_run<T: TestRuntime>(
    policy: SlowRecipients,
    seen: &Seen,
) -> (Hub<T::Runtime>, T::Server, HubClient, String, Vec<ferrule::hub::Delivery>, impl Sized) {
    const LEN: usize = 64 * 1024;
    let hub = test_hub::<T>(seen, policy);
    let options = Options::builder().send_buffer(Bound::new(2, 1 << 20)).build().expect("valid");
    let server = serve::<T>(&hub, options).await;
    let mut fast = HubClient::connect::<T>(&server, "/").await;
    let silent = raw_upgraded::<T>(addr(&server)).await;
    let silent_id = loop {
        if let Some(s) = hub.sockets().into_iter().find(|s| s.id().as_str() != fast.id) {
            break s.id().to_string();
        }
        sleep::<T>(Duration::from_millis(1)).await;
    };
    let payload = "x".repeat(LEN);
    let mut deliveries = Vec::new();
    let mut past_bound = 0;
    for n in 0..2048u32 {
        let delivery = hub.emit("bulk", &(n, &payload)).expect("encoded");
        deliveries.push(delivery);
        let message = fast.next::<T>().await;
        assert_eq!(message[1][0], n, "the fast client gets every message, in order");
        if delivery.dropped + delivery.disconnected + delivery.closed > 0 {
            past_bound += 1;
            if past_bound == 4 {
                break;
            }
        }
        // Lets the silent connection's driver take its queue while the kernel has room.
        sleep::<T>(Duration::from_millis(1)).await;
    }
    assert_eq!(past_bound, 4, "64 KiB messages went on being queued for a peer that reads nothing: unbounded");
    (hub, server, fast, silent_id, deliveries, silent)
}

/// Under `SlowRecipients::Drop`, a recipient that reads nothing loses the messages past its send
/// queue's bound, stays connected, and is counted; a reading client gets every message.
pub async fn hub_slow_recipient_loses_messages_under_drop_while_others_get_all<T: TestRuntime>() {
    let seen = Seen::default();
    let (hub, _server, _fast, silent_id, deliveries, _silent) =
        slow_recipient_run::<T>(SlowRecipients::Drop, &seen).await;
    let dropped: usize = deliveries.iter().map(|d| d.dropped).sum();
    assert_eq!(dropped, 4, "each emit past the bound dropped the message for the silent one");
    assert!(deliveries.iter().all(|d| d.disconnected == 0 && d.closed == 0 && d.recipients() == 2));
    assert!(hub.is_connected(&silent_id), "dropping keeps the connection");
    let stats = hub.stats();
    assert_eq!(stats.dropped, 4);
    assert_eq!(stats.slow_disconnects, 0);
    assert_eq!(stats.max_queued_messages, 2, "the silent one's queue is at its bound");
}

/// Under the default policy, a recipient that reads nothing is disconnected with 1013 once its send
/// queue is full, counted once, and removed; a reading client gets every message.
pub async fn hub_slow_recipient_is_disconnected_with_1013_once_while_others_get_all<T: TestRuntime>() {
    let seen = Seen::default();
    let (hub, _server, _fast, silent_id, deliveries, _silent) =
        slow_recipient_run::<T>(SlowRecipients::default(), &seen).await;
    let disconnected: usize = deliveries.iter().map(|d| d.disconnected).sum();
    let closed: usize = deliveries.iter().map(|d| d.closed).sum();
    assert_eq!((disconnected, closed), (1, 3), "disconnected once; later emits find it closing");
    assert_eq!(hub.stats().slow_disconnects, 1);
    // The close frame waits behind output the peer never reads: the connection ends at the
    // close timeout, or sooner when the write timeout notices the stalled writes.
    let end = seen_next_within::<T>(&seen, &format!("disconnect {silent_id}"), Duration::from_secs(120)).await;
    assert!(end.contains(" 1013 ") || end.contains("timeout"), "{end}");
    assert!(!hub.is_connected(&silent_id));
}

async fn seen_next_within<T: TestRuntime>(seen: &Seen, prefix: &str, limit: Duration) -> String {
    within::<T, _>(limit, prefix, async {
        loop {
            let item = seen.next().await;
            if item.starts_with(prefix) {
                return item;
            }
        }
    })
    .await
}

/// Disconnecting by id closes with the code and reason given; an unknown id reports `false`.
pub async fn hub_disconnect_by_id_closes_with_code_and_reason<T: TestRuntime>() {
    let (seen, hub, server) = start::<T>().await;
    let a = HubClient::connect::<T>(&server, "/").await;
    assert!(matches!(hub.disconnect(&a.id, CloseCode::new(4001), "bye"), Ok(true)));
    let info = within::<T, _>(WAIT, "the end", a.channels.done.clone()).await;
    assert_eq!((info.code.as_u16(), info.reason.as_str()), (4001, "bye"));
    assert_eq!(seen_next::<T>(&seen, "disconnect").await, format!("disconnect {} 4001 local registered=false", a.id));
    assert!(!hub.is_connected(&a.id));
    assert!(matches!(hub.disconnect(&a.id, CloseCode::NORMAL, ""), Ok(false)));
    assert!(matches!(hub.disconnect("nobody", CloseCode::NORMAL, ""), Ok(false)));
}

/// When a connection ends, it leaves every room (its own last) with an on-leave callback for each
/// while still registered, and only then is removed and the on-disconnect callbacks run.
pub async fn hub_disconnect_leaves_every_room_with_on_leave_before_removal<T: TestRuntime>() {
    let (seen, hub, server) = start::<T>().await;
    let mut a = HubClient::connect::<T>(&server, "/").await;
    let id = a.id.clone();
    a.join::<T>("x").await;
    a.join::<T>("y").await;
    a.join::<T>("z").await;
    assert_eq!(a.request::<T>("leave", json!("z"), 1).await, json!(["$ack", 1, true]));
    let socket = hub.get(&id).expect("registered");
    assert_eq!(socket.rooms().iter().map(|r| r.to_string()).collect::<Vec<_>>(), [id.as_str(), "x", "y"]);
    a.channels.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
    let mut order = Vec::new();
    within::<T, _>(WAIT, "the callbacks", async {
        loop {
            let item = seen.next().await;
            if item.starts_with("leave") || item.starts_with("disconnect") {
                let last = item.starts_with("disconnect");
                order.push(item);
                if last {
                    break;
                }
            }
        }
    })
    .await;
    assert_eq!(
        order,
        [
            format!("leave {id} z registered=true"),
            format!("leave {id} x registered=true"),
            format!("leave {id} y registered=true"),
            format!("leave {id} {id} registered=true"),
            format!("disconnect {id} 1000 peer registered=false"),
        ]
    );
    assert!(hub.sockets_in("x").is_empty());
    assert_eq!(hub.stats().rooms, 0);
}

/// Each connection's store keeps typed values of its own, set from on_connection or later.
pub async fn hub_store_keeps_typed_values_per_connection<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let [mut a, mut b] = clients::<T, 2>(&server).await;
    assert_eq!(a.request::<T>("count", json!(null), 1).await, json!(["$ack", 1, 1]));
    assert_eq!(a.request::<T>("count", json!(null), 2).await, json!(["$ack", 2, 2]));
    assert_eq!(b.request::<T>("count", json!(null), 3).await, json!(["$ack", 3, 1]), "b has its own");
    let socket = hub.get(&a.id).expect("registered");
    assert_eq!(socket.get::<u32>(), Some(2));
    assert_eq!(socket.insert(String::from("alice")), None);
    assert_eq!(socket.get::<String>().as_deref(), Some("alice"));
    assert_eq!(socket.remove::<u32>(), Some(2));
    assert_eq!(a.request::<T>("count", json!(null), 4).await, json!(["$ack", 4, null]));
}

/// The ping and pong callbacks see the client's ping and its pong to the server's ping.
pub async fn hub_ping_and_pong_callbacks_fire<T: TestRuntime>() {
    let (seen, hub, server) = start::<T>().await;
    let a = HubClient::connect::<T>(&server, "/").await;
    a.channels.sender.handle().ping(&b"from client"[..]).expect("ping");
    assert_eq!(seen_next::<T>(&seen, "ping").await, format!("ping {} from client", a.id));
    hub.get(&a.id).expect("registered").handle().ping(&b"from server"[..]).expect("ping");
    assert_eq!(seen_next::<T>(&seen, "pong").await, format!("pong {} from server", a.id));
}

/// The hub's stats count connections, rooms, messages in and out, and how connections ended.
pub async fn hub_stats_count_connections_rooms_messages_and_close_causes<T: TestRuntime>() {
    let (seen, hub, server) = start::<T>().await;
    let [mut a, mut b] = clients::<T, 2>(&server).await;
    a.join::<T>("r").await;
    b.join::<T>("r").await;
    hub.to("r").emit("hi", &1).expect("encoded");
    a.next::<T>().await;
    b.next::<T>().await;
    a.send("native").await;
    seen_next::<T>(&seen, "native").await;
    let stats = hub.stats();
    assert_eq!((stats.connections, stats.rooms, stats.connects), (2, 3, 2));
    assert_eq!((stats.messages_in, stats.events_in), (3, 2), "two joins and a native message");
    assert_eq!(stats.messages_out, 4, "two acknowledgements and an emit to two");
    a.channels.disconnect.disconnect(CloseCode::NORMAL, "").expect("close");
    seen_next::<T>(&seen, &format!("disconnect {}", a.id)).await;
    hub.disconnect(&b.id, CloseCode::NORMAL, "").expect("close");
    seen_next::<T>(&seen, &format!("disconnect {}", b.id)).await;
    let stats = hub.stats();
    assert_eq!((stats.connections, stats.rooms), (0, 0));
    assert_eq!((stats.closes.peer, stats.closes.local), (1, 1));
}

/// An emit with a `$` name, or a payload that does not serialize, is refused with a typed error
/// and sends nothing.
pub async fn hub_emit_with_a_reserved_name_or_an_unserializable_payload_sends_nothing<T: TestRuntime>() {
    let (_, hub, server) = start::<T>().await;
    let mut a = HubClient::connect::<T>(&server, "/").await;
    assert!(matches!(hub.emit("$open", &1), Err(EmitError::ReservedName(name)) if name == "$open"));
    let not_json = std::collections::HashMap::from([((1, 2), 3)]);
    assert!(matches!(hub.emit("map", &not_json), Err(EmitError::Encode(_))));
    let socket = hub.get(&a.id).expect("registered");
    assert!(socket.emit_with_ack::<(), _>("$ack", &1, Duration::from_secs(1)).is_err());
    marker_is_next::<T>(&hub, &mut [&mut a], 1).await;
}

/// With permessage-deflate and no server context takeover, one broadcast reaches clients that
/// compress (sharing one compressed encoding) and a client that does not, intact.
pub async fn hub_compressed_broadcast_reaches_compressing_and_plain_clients_intact<T: TestRuntime>() {
    let seen = Seen::default();
    let hub = test_hub::<T>(&seen, SlowRecipients::Drop);
    let compression = DeflateConfig::default().server_no_context_takeover(true).min_compress_size(0);
    let options = Options::builder().compression(compression).build().expect("valid");
    let server = serve::<T>(&hub, options).await;
    let compressing = Options::builder().compression(DeflateConfig::default()).build().expect("valid");
    let mut a = HubClient::connect_with::<T>(&server, "/", &compressing).await;
    let mut b = HubClient::connect_with::<T>(&server, "/", &compressing).await;
    let mut plain = HubClient::connect::<T>(&server, "/").await;
    let text = "squeeze me ".repeat(2000);
    for n in 0..3 {
        assert_eq!(hub.emit("big", &(n, &text)).expect("encoded").queued, 3);
        for client in [&mut a, &mut b, &mut plain] {
            assert_eq!(client.next::<T>().await, json!(["big", [n, text]]));
        }
    }
}

/// The hub's on-connect callback sees the upgrade request: it refuses one with its status, and
/// fills the store of another, which its socket then holds.
pub async fn hub_on_connect_refuses_an_upgrade_or_fills_the_store_from_the_request<T: TestRuntime>() {
    #[derive(Clone)]
    struct User(String);
    let hub = Hub::builder(T::runtime())
        .on_connect(|request: &Request, acceptance: &mut Acceptance, values: &mut Values| {
            let Some(user) = request.path().strip_prefix("/users/") else {
                return Err(Rejection::new(403, "who are you?"));
            };
            values.insert(User(user.to_owned()));
            acceptance.insert_header("X-User", user).map_err(|_| Rejection::new(400, "bad user"))?;
            Ok(())
        })
        .on_with_ack("whoami", |socket: &Socket<T::Runtime>, ()| Ok(socket.get::<User>().map(|u| u.0)))
        .build();
    let server = serve::<T>(&hub, Options::default()).await;
    let refused = T::connect(&format!("{}anonymous", url(addr(&server))), &Options::default()).await;
    let Err(error) = refused else { panic!("an anonymous upgrade was accepted") };
    assert!(error.to_string().contains("403"), "{error}");
    assert!(hub.is_empty());
    let mut alice = HubClient::connect::<T>(&server, "/users/alice").await;
    assert_eq!(alice.request::<T>("whoami", json!(null), 1).await, json!(["$ack", 1, "alice"]));
}

/// An on-connection callback's error closes the connection with the error's code, and the hub
/// keeps nothing of it.
pub async fn hub_on_connection_error_closes_with_its_code_and_leaves_nothing_behind<T: TestRuntime>() {
    let left = Inbox::<String>::default();
    let on_leave = left.clone();
    let hub = Hub::builder(T::runtime())
        .on_connection(|socket: &Socket<T::Runtime>| {
            socket.join("lobby");
            Err(HandlerError::with_code(CloseCode::new(4003), "not today"))
        })
        .on_leave(move |_: &Socket<T::Runtime>, room: &str| on_leave.push(room.to_owned()))
        .build();
    let server = serve::<T>(&hub, Options::default()).await;
    let mut client = HubClient::connect::<T>(&server, "/").await;
    assert_eq!(within::<T, _>(WAIT, "the end", client.channels.receiver.recv()).await, None);
    let info = within::<T, _>(WAIT, "the end", client.channels.done.clone()).await;
    assert_eq!((info.code.as_u16(), info.reason.as_str()), (4003, "not today"));
    assert_eq!(within::<T, _>(WAIT, "on_leave", left.next()).await, "lobby");
    assert_eq!(within::<T, _>(WAIT, "on_leave", left.next()).await, client.id);
    while !hub.is_empty() {
        sleep::<T>(Duration::from_millis(1)).await;
    }
    assert_eq!(hub.stats().rooms, 0);
}
