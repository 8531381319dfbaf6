//! Connection options, validated at construction, with the defaults users of Go's martini and
//! macaron sockets, iris and eyesore/ws know.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ferrule_core::handshake::{HeaderError, OriginPolicy, check_subprotocols};
use ferrule_core::{Config, ConfigError, DeflateConfig};

/// Options for server and client connections.
///
/// Build with [`Options::builder`]; [`OptionsBuilder::build`] validates every value together.
///
/// | option | default | meaning |
/// |---|---|---|
/// | `write_wait` | 60 s | a write that makes no progress for this long fails the connection; zero = never |
/// | `pong_wait` | 60 s | after a keepalive ping, the peer must send something within this |
/// | `ping_period` | 48 s | interval between keepalive pings; must be shorter than `pong_wait`; `None` = no pings |
/// | `max_message_size` | 16 MiB | larger incoming messages close the connection with 1009 |
/// | `max_frame_size` | 16 MiB | larger incoming frames close the connection with 1009 |
/// | `send_buffer` | 64 messages, 4 MiB | outgoing queue bound; a full queue makes senders wait |
/// | `recv_buffer` | 64 messages, 4 MiB | incoming queue bound; a full queue stops reading from the socket |
/// | `handshake_timeout` | 10 s | the opening handshake must complete within this |
/// | `read_timeout` | none | fail a connection on which nothing arrives for this long |
/// | `close_timeout` | 5 s | how long to wait for the peer's close frame |
/// | `allowed_origin` | same origin | [`OriginPolicy`]: same-origin, `{{host}}` patterns, or insecure allow-any |
/// | `subprotocols` | none | offered (client) or accepted (server, in preference order) |
/// | `compression` | off | permessage-deflate (RFC 7692) with these [`DeflateConfig`] settings: accepted (server) or offered (client) |
/// | `tls` | webpki roots | how a client checks a `wss://` server's certificate ([`ClientTls`](crate::tls::ClientTls)); feature `tls` |
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) write_wait: Option<Duration>,
    pub(crate) pong_wait: Duration,
    pub(crate) ping_period: Option<Duration>,
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) send_buffer: Bound,
    pub(crate) recv_buffer: Bound,
    pub(crate) handshake_timeout: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) close_timeout: Duration,
    pub(crate) allowed_origin: OriginPolicy,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) compression: Option<DeflateConfig>,
    #[cfg(feature = "tls")]
    pub(crate) tls: crate::tls::ClientTls,
    /// The protocol core's configuration made from the fields above, shared by every
    /// connection made with these options (made again by [`OptionsBuilder::build`]).
    pub(crate) core: Arc<Config>,
}

/// A queue bound, in messages and in bytes. A single message larger than the byte bound is still
/// admitted when the queue is empty, so it cannot wedge the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The most messages queued.
    pub messages: usize,
    /// The most payload bytes queued.
    pub bytes: usize,
}

impl Bound {
    /// A bound of `messages` messages and `bytes` bytes.
    pub const fn new(messages: usize, bytes: usize) -> Self {
        Self { messages, bytes }
    }

    /// Whether a queue holding `messages` messages of `bytes` bytes may take one of `extra` bytes.
    pub(crate) fn admits(&self, messages: usize, bytes: usize, extra: usize) -> bool {
        messages == 0 || (messages < self.messages && bytes.saturating_add(extra) <= self.bytes)
    }
}

impl Default for Options {
    fn default() -> Self {
        // The protocol settings' defaults are the core's, so that each has one value at every
        // layer.
        let core = Config::default();
        Self {
            write_wait: Some(Duration::from_secs(60)),
            pong_wait: core.pong_wait,
            ping_period: core.ping_period,
            max_message_size: core.max_message_size,
            max_frame_size: core.max_frame_size,
            send_buffer: Bound::new(64, 4 << 20),
            recv_buffer: Bound::new(64, 4 << 20),
            handshake_timeout: Duration::from_secs(10),
            read_timeout: core.read_timeout,
            close_timeout: core.close_timeout,
            allowed_origin: OriginPolicy::SameOrigin,
            subprotocols: Vec::new(),
            compression: None,
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
            core: Arc::new(core),
        }
    }
}

impl Options {
    /// A builder starting from the defaults.
    pub fn builder() -> OptionsBuilder {
        OptionsBuilder { options: Self::default() }
    }

    /// The per-write timeout; `None` when writes never time out.
    pub fn write_wait(&self) -> Option<Duration> {
        self.write_wait
    }
    /// How long the peer has to show life after a keepalive ping.
    pub fn pong_wait(&self) -> Duration {
        self.pong_wait
    }
    /// The keepalive ping interval.
    pub fn ping_period(&self) -> Option<Duration> {
        self.ping_period
    }
    /// The incoming message size limit.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }
    /// The incoming frame size limit.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }
    /// The outgoing queue bound.
    pub fn send_buffer(&self) -> Bound {
        self.send_buffer
    }
    /// The incoming queue bound.
    pub fn recv_buffer(&self) -> Bound {
        self.recv_buffer
    }
    /// The opening handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
    /// The idle read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }
    /// The closing handshake timeout.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }
    /// The origin policy.
    pub fn allowed_origin(&self) -> &OriginPolicy {
        &self.allowed_origin
    }
    /// The subprotocols.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }
    /// The permessage-deflate settings, or `None` when compression is off.
    pub fn compression(&self) -> Option<&DeflateConfig> {
        self.compression.as_ref()
    }
    /// How a client checks a `wss://` server's certificate.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> &crate::tls::ClientTls {
        &self.tls
    }

    /// The protocol core's configuration for these options, shared by their connections.
    pub(crate) fn core_config(&self) -> Arc<Config> {
        self.core.clone()
    }

    /// The protocol core's configuration made from these options' fields.
    fn make_core_config(&self) -> Config {
        Config::default()
            .max_frame_size(self.max_frame_size)
            .max_message_size(self.max_message_size)
            .ping_period(self.ping_period)
            .pong_wait(self.pong_wait)
            .read_timeout(self.read_timeout)
            .close_timeout(self.close_timeout)
    }
}

/// Builds validated [`Options`].
#[derive(Clone, Debug)]
pub struct OptionsBuilder {
    options: Options,
}

impl OptionsBuilder {
    /// Per-write timeout; `Duration::ZERO` means writes never time out. Default 60 s.
    pub fn write_wait(mut self, wait: Duration) -> Self {
        self.options.write_wait = (!wait.is_zero()).then_some(wait);
        self
    }
    /// Time allowed for the peer to show life after a ping. Default 60 s.
    ///
    /// Only time during which the connection reads counts: while a full
    /// [`recv_buffer`](Self::recv_buffer) holds reading back, the peer's pong waits unread, so
    /// the wait stands still until the receiver catches up. A peer that stops reading what it is
    /// sent also stops being read once the output backs up, and there the wait runs on: a peer
    /// that does neither is dropped.
    pub fn pong_wait(mut self, wait: Duration) -> Self {
        self.options.pong_wait = wait;
        self
    }
    /// Keepalive ping interval (must be shorter than `pong_wait`); `None` disables pings.
    /// Default 48 s.
    pub fn ping_period(mut self, period: Option<Duration>) -> Self {
        self.options.ping_period = period;
        self
    }
    /// Largest incoming message in bytes. Default 16 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.max_message_size = bytes;
        self
    }
    /// Largest incoming frame in bytes. Default 16 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.options.max_frame_size = bytes;
        self
    }
    /// Outgoing queue bound. Default 64 messages, 4 MiB.
    pub fn send_buffer(mut self, bound: Bound) -> Self {
        self.options.send_buffer = bound;
        self
    }
    /// Incoming queue bound of the channel API. Default 64 messages, 4 MiB.
    ///
    /// It counts the messages received and not yet returned by
    /// [`Receiver::recv`](crate::Receiver::recv). Once they reach the bound, the connection stops
    /// reading from the socket (so TCP flow control slows the peer) until the receiver comes
    /// back for more; meanwhile the peer is not held to `pong_wait` or `read_timeout`, whose
    /// clocks stand still. The messages decoded from one read are delivered together, so the queue
    /// can pass the bound by one read's worth (at most 256 KiB). Once the connection is closing
    /// (either end asked), the bound no longer holds reading back: messages that arrive past it
    /// are discarded, so that the closing handshake completes even if nobody drains the
    /// receiver. The callback API has no queue: its handler runs as each message is decoded.
    pub fn recv_buffer(mut self, bound: Bound) -> Self {
        self.options.recv_buffer = bound;
        self
    }
    /// Opening handshake timeout. Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.options.handshake_timeout = timeout;
        self
    }
    /// Idle read timeout; `None` disables it. Default none.
    ///
    /// As for [`pong_wait`](Self::pong_wait), time during which a full
    /// [`recv_buffer`](Self::recv_buffer) holds reading back does not count.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.read_timeout = timeout;
        self
    }
    /// Closing handshake timeout. Default 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.options.close_timeout = timeout;
        self
    }
    /// Which origins a server accepts. Default same-origin.
    pub fn allowed_origin(mut self, policy: OriginPolicy) -> Self {
        self.options.allowed_origin = policy;
        self
    }
    /// Subprotocols: offered by a client, accepted in this preference order by a server.
    pub fn subprotocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }
    /// permessage-deflate (RFC 7692) with these settings, or `None` for none. Default off, as in
    /// gorilla/websocket and iris: compression costs every connection a compressor and a
    /// decompressor (see [`DeflateConfig`] for how much, and the settings that bound it).
    ///
    /// A server accepts a client's offer that fits the settings and declines the others
    /// ([`Acceptance::decline_deflate`](crate::Acceptance::decline_deflate) declines it for one
    /// connection); a client offers it, in place of any offer its request carries. What was
    /// agreed is [`Upgraded::deflate`](crate::Upgraded::deflate) and
    /// [`Ctx::deflate`](crate::Ctx::deflate).
    ///
    /// ```
    /// use ferrule::{DeflateConfig, Options};
    ///
    /// let options = Options::builder().compression(DeflateConfig::default()).build()?;
    /// assert!(options.compression().is_some());
    /// let options = Options::builder().compression(None).build()?;
    /// assert!(options.compression().is_none());
    /// # Ok::<(), ferrule::OptionsError>(())
    /// ```
    pub fn compression(mut self, config: impl Into<Option<DeflateConfig>>) -> Self {
        self.options.compression = config.into();
        self
    }

    /// How a client checks a `wss://` server's certificate: Mozilla's roots compiled in (the
    /// default), the operating system's verifier, or a `rustls::ClientConfig` of your own (your
    /// roots, a client certificate). Servers ignore it. Feature `tls`.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use ferrule::Options;
    /// use ferrule::tls::{ClientTls, rustls};
    ///
    /// let mut roots = rustls::RootCertStore::empty();
    /// # let _ = &mut roots; // a real program adds its private CA here
    /// let config = rustls::ClientConfig::builder_with_provider(ferrule::tls::crypto_provider())
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let options = Options::builder().tls(ClientTls::Config(Arc::new(config))).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.options.tls = tls;
        self
    }

    /// Validates and returns the options.
    ///
    /// # Errors
    ///
    /// [`OptionsError`] naming the first value that does not fit.
    pub fn build(self) -> Result<Options, OptionsError> {
        let o = &self.options;
        for (name, bound) in [("send_buffer", o.send_buffer), ("recv_buffer", o.recv_buffer)] {
            if bound.messages == 0 || bound.bytes == 0 {
                return Err(OptionsError::EmptyBuffer(name));
            }
        }
        if o.handshake_timeout.is_zero() {
            return Err(OptionsError::ZeroTimeout("handshake_timeout"));
        }
        if o.close_timeout.is_zero() {
            return Err(OptionsError::ZeroTimeout("close_timeout"));
        }
        let core = o.make_core_config();
        core.validate().map_err(OptionsError::Protocol)?;
        check_subprotocols(&o.subprotocols).map_err(OptionsError::Subprotocol)?;
        if let Some(config) = &o.compression {
            config.validate().map_err(OptionsError::Compression)?;
        }
        let mut options = self.options;
        options.core = Arc::new(core);
        Ok(options)
    }
}

/// Options whose values do not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// A buffer bound of zero messages or zero bytes; the option is named.
    EmptyBuffer(&'static str),
    /// A timeout that must be positive was zero; the option is named.
    ZeroTimeout(&'static str),
    /// A protocol setting is invalid, e.g. `ping_period` not shorter than `pong_wait`.
    Protocol(ConfigError),
    /// A name in `subprotocols` is not an HTTP token, or is given twice: no client could offer
    /// it, so a server would never select it.
    Subprotocol(HeaderError),
    /// A `compression` setting is out of its range, e.g. a window of 16 bits; the setting is
    /// named.
    Compression(ConfigError),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyBuffer(name) => write!(f, "`{name}` must allow at least one message and one byte"),
            Self::ZeroTimeout(name) => write!(f, "`{name}` must be longer than zero"),
            Self::Protocol(e) => write!(f, "{e}"),
            Self::Subprotocol(e) => write!(f, "`subprotocols`: {e}"),
            Self::Compression(e) => write!(f, "`compression`: {e}"),
        }
    }
}

impl std::error::Error for OptionsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Options::builder().build().unwrap();
    }

    #[test]
    fn ping_period_not_below_pong_wait_is_refused() {
        let e = Options::builder()
            .ping_period(Some(Duration::from_secs(60)))
            .pong_wait(Duration::from_secs(60))
            .build()
            .unwrap_err();
        assert!(matches!(e, OptionsError::Protocol(ConfigError::PingPeriodNotBelowPongWait { .. })));
        assert_eq!(e.to_string(), "`ping_period` (60s) must be shorter than `pong_wait` (60s)");
    }

    #[test]
    fn empty_buffers_and_zero_timeouts_are_refused() {
        let e = Options::builder().send_buffer(Bound::new(0, 10)).build().unwrap_err();
        assert_eq!(e, OptionsError::EmptyBuffer("send_buffer"));
        let e = Options::builder().recv_buffer(Bound::new(1, 0)).build().unwrap_err();
        assert_eq!(e, OptionsError::EmptyBuffer("recv_buffer"));
        let e = Options::builder().handshake_timeout(Duration::ZERO).build().unwrap_err();
        assert_eq!(e, OptionsError::ZeroTimeout("handshake_timeout"));
        let e = Options::builder().max_message_size(0).build().unwrap_err();
        assert!(matches!(e, OptionsError::Protocol(ConfigError::ZeroLimit("max_message_size"))));
    }

    #[test]
    fn subprotocols_that_are_not_tokens_or_repeat_are_refused() {
        let e = Options::builder().subprotocols(["chat v2"]).build().unwrap_err();
        assert_eq!(e, OptionsError::Subprotocol(HeaderError::InvalidSubprotocol("chat v2".to_owned())));
        assert!(e.to_string().starts_with("`subprotocols`: "), "{e}");
        let e = Options::builder().subprotocols(["chat", "chat"]).build().unwrap_err();
        assert_eq!(e, OptionsError::Subprotocol(HeaderError::DuplicateSubprotocol("chat".to_owned())));
        Options::builder().subprotocols(["chat", "superchat.v2"]).build().unwrap();
    }

    #[test]
    fn compression_is_off_by_default_and_checked_when_on() {
        assert_eq!(Options::default().compression(), None);
        let o = Options::builder().compression(DeflateConfig::default()).build().unwrap();
        assert_eq!(o.compression(), Some(&DeflateConfig::default()));
        assert_eq!(
            Options::builder().compression(DeflateConfig::default()).compression(None).build().unwrap().compression(),
            None
        );
        let e = Options::builder()
            .compression(DeflateConfig::default().client_max_window_bits(Some(16)))
            .build()
            .unwrap_err();
        assert!(matches!(
            e,
            OptionsError::Compression(ConfigError::OutOfRange { field: "client_max_window_bits", .. })
        ));
        assert_eq!(e.to_string(), "`compression`: `client_max_window_bits` is 16, outside 8 to 15");
        let e = Options::builder().compression(DeflateConfig::default().memory_level(0)).build().unwrap_err();
        assert!(e.to_string().starts_with("`compression`: `memory_level`"), "{e}");
    }

    #[test]
    fn zero_write_wait_means_never() {
        let o = Options::builder().write_wait(Duration::ZERO).build().unwrap();
        assert_eq!(o.write_wait(), None);
    }

    #[test]
    fn bound_admits_one_oversized_message_into_an_empty_queue() {
        let b = Bound::new(2, 10);
        assert!(b.admits(0, 0, 100));
        assert!(!b.admits(1, 5, 6));
        assert!(b.admits(1, 5, 5));
        assert!(!b.admits(2, 0, 0));
    }
}
