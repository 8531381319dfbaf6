//! The hub's wire format read by a real hub connection: the hub's own handler run by the
//! callback API's driver over an in-memory stream, on a runtime whose timers never fire and whose
//! task is polled by hand, so one input runs in about a millisecond and the same way every time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ferrule::core::{Config, Connection, Event, Role};
use ferrule::hub::{Ack, AckError, Hub, HubError, Socket};
use ferrule::{CloseInfo, Message, Options, OriginPolicy, accept};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::in_memory::{Manual, Pipe};

/// The hub's wire format through a hub connection: each line of the input is one message from
/// the client (`B` then bytes: binary; `T` then text; anything else: the whole line as text,
/// lossily made UTF-8).
///
/// The hub under test emits `["ask", "q", 1]` with an ack id when the connection opens and
/// handles `echo` (any JSON, emitted back), `add` (two integers, replied to), `fail` (a string,
/// returned as the handler's error). A model of the protocol table in the `hub` module docs
/// predicts what each message does, and the hub must do exactly that:
///
/// - binary messages and text not starting with `[` reach the on-native callbacks untouched;
/// - a message that is not a hub message reaches the error callbacks as
///   [`HubError::Malformed`], an unknown event as [`HubError::UnknownEvent`] (with a `$nack`
///   when it asked for an ack), a payload that does not parse as [`HubError::BadPayload`], a
///   failed handler as [`HubError::Handler`], an ack nothing waits for as
///   [`HubError::UnexpectedAck`];
/// - handled events reach their handler with their payload; what the hub sends back (emits,
///   `$ack` with the handler's reply, `$nack` with its error) decodes, on a client connection,
///   to what was encoded, in order;
/// - the first `$ack`/`$nack` for id 1 completes the server's pending ack with its payload or
///   reason;
/// - no panic, and the connection stays open and registered through it all.
pub fn hub_wire(data: &[u8]) {
    let messages: Vec<Message> = data
        .split(|&b| b == b'\n')
        .map(|line| match line.split_first() {
            Some((b'B', rest)) => Message::from(rest.to_vec()),
            Some((b'T', rest)) => Message::from(String::from_utf8_lossy(rest).into_owned()),
            _ => Message::from(String::from_utf8_lossy(line).into_owned()),
        })
        .collect();

    let runtime = Manual;
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let pending_ask: Arc<Mutex<Option<Ack<Manual, Value>>>> = Arc::default();
    let hub = test_hub(&runtime, &seen, &pending_ask);

    // The client: the upgrade request, then one masked frame per message.
    let mut client =
        Connection::new(Role::Client, Config::default().rng_seed(Some([7; 32])), Instant::now()).expect("valid config");
    let mut input = UPGRADE.to_vec();
    for message in &messages {
        match message {
            Message::Text(text) => client.send_text(text.as_str()),
            Message::Binary(bytes) => client.send_binary(bytes),
        }
        .expect("an open client connection sends");
        input.extend_from_slice(&client.take_transmit());
    }
    let stream = Pipe::new(input);
    let (written, unread) = (stream.written.clone(), stream.unread.clone());

    let options = Options::builder().allowed_origin(OriginPolicy::InsecureAllowAny).build().expect("valid options");
    let factory = hub.handler_factory();
    let mut cx = Context::from_waker(Waker::noop());
    let mut accepting = std::pin::pin!(accept(runtime.clone(), stream, &options, &factory));
    let Poll::Ready(accepted) = accepting.as_mut().poll(&mut cx) else {
        panic!("the handshake completes on input that is all there")
    };
    let (upgraded, handler) = accepted.expect("the upgrade is accepted");
    let mut driver = upgraded.run(handler);
    settle(&mut driver, &written, &unread, &mut cx);

    // What the model predicts, message by message.
    let mut model = Model::default();
    for message in &messages {
        model.read(message);
    }

    // The connection stayed open, registered, and counted every message.
    let stats = hub.stats();
    assert_eq!(hub.len(), 1, "the connection stays in the hub");
    assert_eq!(stats.messages_in, messages.len() as u64);
    assert_eq!(stats.events_in, model.events);
    assert_eq!(stats.errors, model.errors(), "errors counted");
    assert_eq!(*seen.lock().expect("not poisoned"), model.seen, "callbacks and handlers as the protocol says");

    // What the hub sent decodes, on the client, to what the model predicts.
    let out = written.lock().expect("not poisoned").split_off(0);
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("the 101 response") + 4;
    assert!(out.starts_with(b"HTTP/1.1 101 "));
    client.handle_input(&out[head_end..], Instant::now()).expect("the hub's output is valid WebSocket");
    let mut received = Vec::new();
    while let Some(event) = client.poll_event() {
        match event {
            Event::Text(text) => received.push(read_array(text.as_str())),
            Event::Closed(closed) => panic!("the connection stays open: {closed:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (open, rest) = received.split_first().expect("the hub opens with $open");
    assert_eq!((&open[0], &open[1]["v"]), (&json!("$open"), &json!(1)), "{open}");
    let mut expected = vec![json!(["ask", "q", 1])];
    expected.extend(model.replies);
    assert_eq!(rest.len(), expected.len(), "{rest:?} != {expected:?}");
    for (got, want) in rest.iter().zip(&expected) {
        assert!(same_json(got, want), "{got} != {want}");
    }

    // The server's own ack: completed by the first `$ack`/`$nack` for id 1, else still waiting.
    let mut ask = pending_ask.lock().expect("not poisoned").take().expect("the ask was emitted");
    match (Pin::new(&mut ask).poll(&mut cx), model.ask) {
        (Poll::Pending, None) => {}
        (Poll::Ready(Ok(got)), Some(Ok(raw))) => {
            let want: Value = serde_json::from_str(&raw).expect("the model decoded it");
            assert!(same_json(&got, &want), "{got} != {want}");
        }
        (Poll::Ready(Err(AckError::Decode(_))), Some(Ok(raw))) => {
            assert!(serde_json::from_str::<Value>(&raw).is_err(), "{raw} decodes")
        }
        (Poll::Ready(Err(AckError::Refused(got))), Some(Err(want))) => assert_eq!(got, want),
        (got, want) => panic!("the ask completed as {got:?}, expected {want:?}"),
    }
}

/// What the test hub's callbacks and handlers saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Native(Message),
    Error(String),
    Echo(Value),
    Add(i64, i64),
    Fail(String),
}

/// Sorts an error the way [`Model`] predicts it.
fn error_kind(error: &HubError) -> String {
    match error {
        HubError::Malformed(_) => "malformed".to_owned(),
        HubError::UnknownEvent { event } => format!("unknown {event}"),
        HubError::BadPayload { event, .. } => format!("bad payload {event}"),
        HubError::Handler { event, error } => format!("handler {event}: {error}"),
        HubError::UnexpectedAck { id } => format!("unexpected ack {id}"),
        other => format!("other {other}"),
    }
}

fn test_hub(
    runtime: &Manual,
    seen: &Arc<Mutex<Vec<Seen>>>,
    pending_ask: &Arc<Mutex<Option<Ack<Manual, Value>>>>,
) -> Hub<Manual> {
    let record = |seen: &Arc<Mutex<Vec<Seen>>>| {
        let seen = seen.clone();
        move |what: Seen| seen.lock().expect("not poisoned").push(what)
    };
    let (native, error, echo, add, fail) = (record(seen), record(seen), record(seen), record(seen), record(seen));
    let pending_ask = pending_ask.clone();
    Hub::builder(runtime.clone())
        .on_connection(move |socket: &Socket<Manual>| {
            let ask = socket.emit_with_ack("ask", "q", Duration::from_secs(60)).expect("a valid emit");
            *pending_ask.lock().expect("not poisoned") = Some(ask);
            Ok(())
        })
        .on("echo", move |socket: &Socket<Manual>, value: Value| {
            echo(Seen::Echo(value.clone()));
            socket.emit("echo", &value)?;
            Ok(())
        })
        .on_with_ack("add", move |_: &Socket<Manual>, (a, b): (i64, i64)| {
            add(Seen::Add(a, b));
            a.checked_add(b).ok_or_else(|| "overflow".into())
        })
        .on("fail", move |_: &Socket<Manual>, why: String| {
            fail(Seen::Fail(why.clone()));
            Err(why.into())
        })
        .on_native(move |_: &Socket<Manual>, message: &Message| native(Seen::Native(message.clone())))
        .on_error(move |_: &Socket<Manual>, e: &HubError| error(Seen::Error(error_kind(e))))
        .build()
}

/// The protocol table of the `hub` module docs, as a model: what each client message must make
/// the hub do.
#[derive(Default)]
struct Model {
    seen: Vec<Seen>,
    replies: Vec<Value>,
    events: u64,
    /// How the hub's ask (ack id 1) was answered: a reply's JSON text or a refusal's reason.
    ask: Option<Result<String, String>>,
}

impl Model {
    fn errors(&self) -> u64 {
        self.seen.iter().filter(|s| matches!(s, Seen::Error(_))).count() as u64
    }

    fn error(&mut self, kind: impl Into<String>) {
        self.seen.push(Seen::Error(kind.into()));
    }

    fn read(&mut self, message: &Message) {
        let text = match message {
            Message::Text(text) if text.as_str().trim_start().starts_with('[') => text.as_str(),
            _ => return self.seen.push(Seen::Native(message.clone())),
        };
        let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(text) else { return self.error("malformed") };
        let Some(Ok(name)) = parts.first().map(|raw| serde_json::from_str::<String>(raw.get())) else {
            return self.error("malformed");
        };
        let id = |at: usize| parts.get(at).and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok());
        match name.as_str() {
            "$ack" | "$nack" => {
                let Some(id) = id(1).filter(|_| parts.len() <= 3) else { return self.error("malformed") };
                if id != 1 || self.ask.is_some() {
                    return self.error(format!("unexpected ack {id}"));
                }
                self.ask = Some(if name == "$ack" {
                    Ok(parts.get(2).map_or("null", |raw| raw.get()).to_owned())
                } else {
                    // A reason that is not a JSON string is kept as its JSON text.
                    Err(parts.get(2).map_or_else(String::new, |raw| {
                        serde_json::from_str(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
                    }))
                });
            }
            reserved if reserved.starts_with('$') => self.error("malformed"),
            _ if parts.len() > 3 => self.error("malformed"),
            _ if parts.len() == 3 && id(2).is_none() => self.error("malformed"),
            _ => self.event(&name, parts.get(1).map_or("null", |raw| raw.get()), id(2)),
        }
    }

    /// A well-formed event `name` with its payload's JSON text, asking for an ack or not.
    fn event(&mut self, name: &str, payload: &str, ack: Option<u64>) {
        self.events += 1;
        // The handler's reply (JSON) or its failure: the nack's reason and the error's kind.
        let outcome: Result<Value, (String, String)> = match name {
            "echo" => parse::<Value>(name, payload).map(|value| {
                self.seen.push(Seen::Echo(value.clone()));
                self.replies.push(json!(["echo", value]));
                Value::Null
            }),
            "add" => parse::<(i64, i64)>(name, payload).and_then(|(a, b)| {
                self.seen.push(Seen::Add(a, b));
                a.checked_add(b).map(Value::from).ok_or_else(|| ("overflow".into(), "handler add: overflow".into()))
            }),
            "fail" => parse::<String>(name, payload).and_then(|why| {
                self.seen.push(Seen::Fail(why.clone()));
                Err((why.clone(), format!("handler fail: {why}")))
            }),
            _ => Err(("unknown event".into(), format!("unknown {name}"))),
        };
        match outcome {
            Ok(reply) => self.replies.extend(ack.map(|id| json!(["$ack", id, reply]))),
            Err((reason, kind)) => {
                self.replies.extend(ack.map(|id| json!(["$nack", id, reason])));
                self.error(kind);
            }
        }
    }
}

/// A handler's payload as its type, or the nack reason and error kind of a payload that does not
/// parse.
fn parse<T: DeserializeOwned>(name: &str, payload: &str) -> Result<T, (String, String)> {
    serde_json::from_str(payload).map_err(|_| ("payload did not parse".into(), format!("bad payload {name}")))
}

/// JSON equality, with numbers compared as the values they denote: a float read from text the
/// client sent, written by the hub and read again may land one unit in the last place away
/// (serde_json reads floats fast, not always correctly rounded, unless `float_roundtrip`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same_json(a, b)))
        }
        _ => a == b,
    }
}

/// A hub message the hub sent, as a JSON array of its elements. Read element by element: an
/// echoed payload as deep as serde_json's recursion limit allows is one level deeper inside the
/// array, and the limit is the reader's, not the wire format's.
fn read_array(text: &str) -> Value {
    let parts: Vec<&RawValue> = serde_json::from_str(text).expect("a JSON array");
    Value::Array(parts.iter().map(|raw| serde_json::from_str(raw.get()).expect("a JSON element")).collect())
}

/// Polls the connection's driver until it has read all its input and stopped writing. It must
/// not finish: nothing here ends the connection.
fn settle(
    driver: &mut (impl Future<Output = CloseInfo> + Unpin),
    written: &Mutex<Vec<u8>>,
    unread: &AtomicUsize,
    cx: &mut Context<'_>,
) {
    let mut quiet = 0;
    for _ in 0..10_000 {
        let before = written.lock().expect("not poisoned").len();
        if let Poll::Ready(info) = Pin::new(&mut *driver).poll(cx) {
            panic!("the connection ended: {info:?}");
        }
        let after = written.lock().expect("not poisoned").len();
        quiet = if after == before && unread.load(Ordering::Relaxed) == 0 { quiet + 1 } else { 0 };
        if quiet == 3 {
            return;
        }
    }
    panic!("the connection never settled");
}

const UPGRADE: &[u8] = b"GET /hub HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
