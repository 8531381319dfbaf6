//! # ferrule
//!
//! The async layer of the ferrule WebSocket library ([RFC 6455]). One driver per connection
//! moves bytes between the transport and the sans-IO [`ferrule_core`] protocol machine; two
//! front-ends sit on that one driver, so they cannot drift apart:
//!
//! - the **callback API** ([`Handler`], [`HandlerFactory`]): `on_connect` may accept or reject
//!   the upgrade, then `on_open`, `on_message` and `on_close` (with a [`CloseInfo`]: was it
//!   clean, the code, the reason, and the [`CloseCause`]) run inside
//!   the driver, with sends going straight into the protocol core;
//! - the **channel API** ([`Channels`]): a receiver, a sender, a done signal, a disconnect
//!   handle and an error stream, typed as text, binary or JSON, usable from one `select!` loop.
//!   The receiver is a `futures` `Stream`, the sender a `Sink`, and the channels together both,
//!   so `StreamExt::split`, `SinkExt::send` and `StreamExt::forward` work as users of other
//!   async WebSocket crates expect (see [`Channels`]).
//!
//! On the callback API sits the [`hub`]: connection ids, rooms, named events with typed
//! payloads, acknowledgements, and broadcasts framed once for every recipient.
//!
//! Everything is generic over the futures-io traits and a small [`Runtime`] trait; the crates
//! `ferrule-tokio`, `ferrule-async-std` and `ferrule-smol` supply the runtime, a listener and a
//! connector.
//!
//! With feature `tls`, module [`tls`] holds what TLS (`wss://`) needs on every runtime: client
//! configurations, [`Error::Tls`], and the server's bounded set of TLS handshakes; feature
//! `futures-rustls` adds TLS over the futures-io traits for the runtimes on async-io.
//!
//! Logging goes through `tracing` and prints nothing unless the application installs a
//! subscriber. The levels map those of the Go socket libraries: `error` (failures of the
//! server itself), `warn` (peers that violate the protocol), `info` (refused upgrades), `debug`
//! (upgrades, closes, transport errors).
//!
//! [RFC 6455]: https://www.rfc-editor.org/rfc/rfc6455

#[cfg(feature = "async-io")]
pub mod async_io_tcp;
mod callback;
mod channel;
mod driver;
mod error;
mod handle;
pub mod hub;
mod maybe_tls;
mod message;
mod options;
mod runtime;
mod sending;
mod server;
mod shared;
mod shutdown;
#[cfg(feature = "tls")]
pub mod tls;
mod upgrade;

pub use callback::{Acceptance, Ctx, Handler, HandlerFactory, Rejection};
pub use channel::{Channels, Disconnect, Errors, Receiver, Sender};
pub use error::{CloseCause, CloseInfo, Error, HandlerError};
pub use ferrule_core as core;
pub use ferrule_core::handshake::{ClientRequest, OriginPattern, OriginPolicy, Request};
pub use ferrule_core::{CloseCode, DeflateConfig, DeflateParams, MessageKind, SendError, Utf8Bytes};
pub use handle::{Done, Handle, MessageWriter, TrySendError};
pub use maybe_tls::MaybeTlsStream;
pub use message::{Codec, DecodeError, EncodeError, Json, Message};
pub use options::{Bound, Options, OptionsBuilder, OptionsError};
pub use runtime::Runtime;
pub use server::{Listener, Server, serve, serve_channels};
pub use shutdown::{Registration, Shutdown};
pub use upgrade::{
    Refusal, Upgraded, accept, check_upgrade, client_request, connect_stream, serve_connection, tcp_client_request,
};
