//! The hub's wire format (see the module docs of [`hub`](super)): JSON arrays in text messages.

use serde::Serialize;
use serde_json::value::RawValue;

/// The version of the wire format, sent in the `$open` message.
pub(crate) const VERSION: u32 = 1;

/// A message the hub read from a client.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// `["name", payload]` or `["name", payload, ack id]`.
    Event { name: String, payload: Option<&'a RawValue>, ack: Option<u64> },
    /// `["$ack", id, payload]`: the reply to an event the server emitted with an ack id.
    Ack { id: u64, payload: Option<&'a RawValue> },
    /// `["$nack", id, "reason"]`: the client refused to reply to an event.
    Nack { id: u64, reason: String },
}

/// A text message that looks like the hub's (starts with `[`) but is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    /// Not a JSON array of the right shape.
    Malformed(String),
    /// A name with the reserved `$` prefix that the hub does not know.
    UnknownReserved(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed hub message: {why}"),
            Self::UnknownReserved(name) => write!(f, "unknown reserved message {name:?}"),
        }
    }
}

/// Whether a text message is for the hub to read (a JSON array) rather than a native message.
pub(crate) fn is_hub_message(text: &str) -> bool {
    text.trim_start().starts_with('[')
}

/// Reads a hub message (one [`is_hub_message`] accepted).
pub(crate) fn decode(text: &str) -> Result<Incoming<'_>, WireError> {
    let parts: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| WireError::Malformed(e.to_string()))?;
    let Some(first) = parts.first() else { return Err(WireError::Malformed("an empty array".into())) };
    let name: String = serde_json::from_str(first.get())
        .map_err(|_| WireError::Malformed("the first element is not a string".into()))?;
    let id = |at: usize| -> Result<u64, WireError> {
        let raw = parts.get(at).ok_or_else(|| WireError::Malformed(format!("{name} without an id")))?;
        serde_json::from_str(raw.get())
            .map_err(|_| WireError::Malformed(format!("{name} id is not an unsigned integer")))
    };
    if let Some(reserved) = name.strip_prefix('$') {
        return match reserved {
            "ack" if parts.len() <= 3 => Ok(Incoming::Ack { id: id(1)?, payload: parts.get(2).copied() }),
            "nack" if parts.len() <= 3 => {
                let reason = match parts.get(2) {
                    Some(raw) => serde_json::from_str(raw.get()).unwrap_or_else(|_| raw.get().to_owned()),
                    None => String::new(),
                };
                Ok(Incoming::Nack { id: id(1)?, reason })
            }
            "ack" | "nack" => Err(WireError::Malformed(format!("{name} with more than three elements"))),
            _ => Err(WireError::UnknownReserved(name)),
        };
    }
    if parts.len() > 3 {
        return Err(WireError::Malformed("an event with more than three elements".into()));
    }
    let ack = if parts.len() == 3 { Some(id(2)?) } else { None };
    Ok(Incoming::Event { name, payload: parts.get(1).copied(), ack })
}

/// `["name", payload]`, or `["name", payload, id]` when an ack is wanted.
pub(crate) fn encode_event<T: Serialize + ?Sized>(
    name: &str,
    payload: &T,
    ack: Option<u64>,
) -> Result<String, serde_json::Error> {
    match ack {
        None => serde_json::to_string(&(name, payload)),
        Some(id) => serde_json::to_string(&(name, payload, id)),
    }
}

/// `["$ack", id, reply]`, for a reply already serialized as JSON.
pub(crate) fn encode_ack(id: u64, reply_json: &str) -> String {
    format!("[\"$ack\",{id},{reply_json}]")
}

/// `["$nack", id, "reason"]`.
pub(crate) fn encode_nack(id: u64, reason: &str) -> String {
    serde_json::to_string(&("$nack", id, reason)).unwrap_or_else(|_| format!("[\"$nack\",{id},\"\"]"))
}

/// `["$open", {"v": 1, "id": "..."}]`, the hub's first message on a connection.
pub(crate) fn encode_open(id: &str) -> String {
    #[derive(Serialize)]
    struct Open<'a> {
        v: u32,
        id: &'a str,
    }
    serde_json::to_string(&("$open", Open { v: VERSION, id })).unwrap_or_default()
}

/// Whether `name` may name an application's event (the `$` prefix is the hub's).
pub(crate) fn is_event_name(name: &str) -> bool {
    !name.starts_with('$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_without_ack() {
        let Incoming::Event { name, payload, ack } = decode(r#"["chat", {"text": "hi"}]"#).unwrap() else { panic!() };
        assert_eq!(name, "chat");
        assert_eq!(payload.unwrap().get(), r#"{"text": "hi"}"#);
        assert_eq!(ack, None);
    }

    #[test]
    fn event_with_ack_and_without_payload() {
        assert!(matches!(decode(r#"["add", [1, 2], 7]"#), Ok(Incoming::Event { ack: Some(7), .. })));
        assert!(matches!(decode(r#"["tick"]"#), Ok(Incoming::Event { payload: None, ack: None, .. })));
    }

    #[test]
    fn ack_and_nack() {
        let Incoming::Ack { id, payload } = decode(r#"["$ack", 3, "ok"]"#).unwrap() else { panic!() };
        assert_eq!((id, payload.unwrap().get()), (3, r#""ok""#));
        let Incoming::Nack { id, reason } = decode(r#"["$nack", 4, "no"]"#).unwrap() else { panic!() };
        assert_eq!((id, reason.as_str()), (4, "no"));
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in ["[", "[]", "[1, 2]", r#"["a", 1, -1]"#, r#"["a", 1, "x"]"#, r#"["a", 1, 2, 3]"#, r#"["$ack"]"#] {
            assert!(matches!(decode(bad), Err(WireError::Malformed(_))), "{bad}");
        }
        assert_eq!(decode(r#"["$hello", 1]"#).unwrap_err(), WireError::UnknownReserved("$hello".into()));
    }

    #[test]
    fn encodings() {
        assert_eq!(encode_event("chat", &("hi", 1), None).unwrap(), r#"["chat",["hi",1]]"#);
        assert_eq!(encode_event("chat", "hi", Some(9)).unwrap(), r#"["chat","hi",9]"#);
        assert_eq!(encode_ack(9, "true"), r#"["$ack",9,true]"#);
        assert_eq!(encode_nack(9, "no \"way\""), r#"["$nack",9,"no \"way\""]"#);
        assert_eq!(encode_open("abc"), r#"["$open",{"v":1,"id":"abc"}]"#);
    }

    #[test]
    fn only_arrays_are_hub_messages() {
        assert!(is_hub_message("  [1]"));
        assert!(!is_hub_message("hello"));
        assert!(!is_hub_message("{\"a\":1}"));
    }
}
