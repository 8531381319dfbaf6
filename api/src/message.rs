//! Messages and the typed flavours the channel API carries: text, binary and JSON.

use std::fmt;

use bytes::Bytes;
use ferrule_core::{MessageKind, Utf8Bytes};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A complete WebSocket data message (RFC 6455 section 5.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(Utf8Bytes),
    /// Arbitrary bytes.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(Utf8Bytes::from(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// Whether this is a text or a binary message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Text(_) => MessageKind::Text,
            Self::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_str().as_bytes(),
            Self::Binary(b) => b,
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::Text(s.into())
    }
}

impl From<&'static str> for Message {
    fn from(s: &'static str) -> Self {
        Self::Text(s.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(b.into())
    }
}

/// A message type the channel API can carry: how it is made from a received [`Message`] and
/// turned into one to send.
///
/// Implemented for [`Message`] (anything), [`String`] (text), [`Bytes`] (binary) and [`Json`].
pub trait Codec: Sized + Send + 'static {
    /// Decodes a received message.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`]; the channel API reports it on the error stream and keeps the
    /// connection up.
    fn decode(message: Message) -> Result<Self, DecodeError>;

    /// Encodes a value to send.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`] when the value cannot be turned into a message (serialization failed).
    fn encode(self) -> Result<Message, EncodeError>;
}

impl Codec for Message {
    fn decode(message: Message) -> Result<Self, DecodeError> {
        Ok(message)
    }
    fn encode(self) -> Result<Message, EncodeError> {
        Ok(self)
    }
}

impl Codec for String {
    fn decode(message: Message) -> Result<Self, DecodeError> {
        match message {
            Message::Text(t) => Ok(t.into()),
            Message::Binary(b) => Err(DecodeError::UnexpectedBinary(b.len())),
        }
    }
    fn encode(self) -> Result<Message, EncodeError> {
        Ok(Message::from(self))
    }
}

impl Codec for Bytes {
    fn decode(message: Message) -> Result<Self, DecodeError> {
        match message {
            Message::Binary(b) => Ok(b),
            Message::Text(t) => Err(DecodeError::UnexpectedText(t.len())),
        }
    }
    fn encode(self) -> Result<Message, EncodeError> {
        Ok(Message::Binary(self))
    }
}

/// A JSON message: `T` is serialized into a text message and parsed from text or binary ones.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize + DeserializeOwned + Send + 'static> Codec for Json<T> {
    fn decode(message: Message) -> Result<Self, DecodeError> {
        serde_json::from_slice(message.as_bytes()).map(Json).map_err(|e| DecodeError::Json(e.to_string()))
    }
    fn encode(self) -> Result<Message, EncodeError> {
        serde_json::to_string(&self.0).map(Message::from).map_err(EncodeError::json)
    }
}

/// A received message that did not fit the channel's message type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A binary message (of this many bytes) arrived on a text channel.
    UnexpectedBinary(usize),
    /// A text message (of this many bytes) arrived on a binary channel.
    UnexpectedText(usize),
    /// JSON could not be parsed or produced; serde's message.
    Json(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedBinary(n) => write!(
                f,
                "expected a text message, got {n} bytes of binary (a `String` channel takes text only; use `Message` to take both)"
            ),
            Self::UnexpectedText(n) => write!(
                f,
                "expected a binary message, got {n} bytes of text (a `Bytes` channel takes binary only; use `Message` to take both)"
            ),
            Self::Json(e) => write!(f, "a message was not valid JSON for the channel's type: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A value that could not be turned into a message to send; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value could not be serialized as JSON (a map with non-string keys, a `Serialize`
    /// implementation that failed); serde's message.
    Json(String),
}

impl EncodeError {
    pub(crate) fn json(error: serde_json::Error) -> Self {
        Self::Json(error.to_string())
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "the value could not be serialized as JSON: {e}"),
        }
    }
}

impl std::error::Error for EncodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn json_round_trips_and_reports_bad_input() {
        let m = Json(Point { x: 1, y: -2 }).encode().unwrap();
        assert_eq!(m, Message::text(r#"{"x":1,"y":-2}"#));
        assert_eq!(Json::<Point>::decode(m).unwrap(), Json(Point { x: 1, y: -2 }));
        assert!(matches!(Json::<Point>::decode(Message::text("{nope")), Err(DecodeError::Json(_))));
    }

    #[test]
    fn json_that_cannot_be_serialized_is_an_encode_error() {
        // JSON object keys must be strings.
        let map = std::collections::BTreeMap::from([((1, 2), "a".to_owned())]);
        let e = Json(map).encode().unwrap_err();
        assert!(matches!(&e, EncodeError::Json(m) if m.contains("key must be a string")), "{e}");
        assert!(e.to_string().starts_with("the value could not be serialized as JSON"));
    }

    #[test]
    fn text_and_binary_channels_refuse_the_other_kind() {
        assert_eq!(String::decode(Message::binary(vec![1, 2])), Err(DecodeError::UnexpectedBinary(2)));
        assert_eq!(Bytes::decode(Message::text("abc")), Err(DecodeError::UnexpectedText(3)));
    }
}
