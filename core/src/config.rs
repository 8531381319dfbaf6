//! Connection configuration: limits, keepalive and close-handshake deadlines, randomness.

use std::fmt;
use std::time::Duration;

/// Which end of the connection this is (RFC 6455 section 5.1: clients mask, servers do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that accepted the opening handshake. Requires masked frames, sends unmasked ones.
    Server,
    /// The end that sent the opening handshake. Sends masked frames, rejects masked ones.
    Client,
}

/// Settings of one [`Connection`](crate::Connection).
///
/// Every field has a documented default ([`Config::default`]); [`Config::validate`] checks that the
/// values fit together and is called by [`Connection::new`](crate::Connection::new).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of a single incoming frame, in bytes. Default 16 MiB.
    ///
    /// Checked when the frame header is decoded, before any payload is buffered; a larger frame
    /// closes the connection with 1009 (RFC 6455 section 7.4.1).
    pub max_frame_size: usize,
    /// Largest incoming message (all fragments together), in bytes. Default 16 MiB.
    ///
    /// Checked when each frame header is decoded; a larger message closes with 1009.
    pub max_message_size: usize,
    /// Largest payload of an outgoing frame; larger messages are split into fragments of this size
    /// (RFC 6455 section 5.4). Default 16 MiB. Must be at least 1.
    pub outgoing_frame_size: usize,
    /// Answer each incoming ping with a pong carrying the same payload (RFC 6455 section 5.5.2).
    /// Default `true`. When `false`, pings are still reported as events and the application answers.
    pub auto_pong: bool,
    /// Send a keepalive ping this often; `None` disables keepalive. Default 48 s (four fifths of
    /// [`pong_wait`](Self::pong_wait), the ratio of the Go socket libraries).
    ///
    /// Must be shorter than [`pong_wait`](Self::pong_wait) when both are set.
    pub ping_period: Option<Duration>,
    /// How long to wait for any frame from the peer after a keepalive ping before the peer is
    /// declared dead (the connection fails with 1006 and no close frame). Default 60 s.
    /// Only used when [`ping_period`](Self::ping_period) is set.
    pub pong_wait: Duration,
    /// Fail the connection when nothing at all is received for this long (the connection's
    /// idle timeout); `None` disables it. Default `None`.
    pub read_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame (and, on a client, for the server to close the
    /// transport) once a close has been sent. Default 5 s.
    pub close_timeout: Duration,
    /// Seed for the random source behind masking keys; `None` (the default) seeds from the
    /// operating system. Set it only to make client output reproducible in tests.
    pub rng_seed: Option<[u8; 32]>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            outgoing_frame_size: 16 << 20,
            auto_pong: true,
            ping_period: Some(Duration::from_secs(48)),
            pong_wait: Duration::from_secs(60),
            read_timeout: None,
            close_timeout: Duration::from_secs(5),
            rng_seed: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_frame_size", &self.max_frame_size)
            .field("max_message_size", &self.max_message_size)
            .field("outgoing_frame_size", &self.outgoing_frame_size)
            .field("auto_pong", &self.auto_pong)
            .field("ping_period", &self.ping_period)
            .field("pong_wait", &self.pong_wait)
            .field("read_timeout", &self.read_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("rng_seed", &self.rng_seed.map(|_| "<seeded>"))
            .finish()
    }
}

impl Config {
    /// Sets [`max_frame_size`](Self::max_frame_size).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }
    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// Sets [`outgoing_frame_size`](Self::outgoing_frame_size).
    pub fn outgoing_frame_size(mut self, bytes: usize) -> Self {
        self.outgoing_frame_size = bytes;
        self
    }
    /// Sets [`auto_pong`](Self::auto_pong).
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }
    /// Sets [`ping_period`](Self::ping_period).
    pub fn ping_period(mut self, interval: Option<Duration>) -> Self {
        self.ping_period = interval;
        self
    }
    /// Sets [`pong_wait`](Self::pong_wait).
    pub fn pong_wait(mut self, timeout: Duration) -> Self {
        self.pong_wait = timeout;
        self
    }
    /// Sets [`read_timeout`](Self::read_timeout).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }
    /// Sets [`close_timeout`](Self::close_timeout).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
    /// Sets [`rng_seed`](Self::rng_seed).
    pub fn rng_seed(mut self, seed: Option<[u8; 32]>) -> Self {
        self.rng_seed = seed;
        self
    }

    /// Checks that the settings are usable together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_frame_size == 0 {
            return Err(ConfigError::ZeroLimit("max_frame_size"));
        }
        if self.max_message_size == 0 {
            return Err(ConfigError::ZeroLimit("max_message_size"));
        }
        if self.outgoing_frame_size == 0 {
            return Err(ConfigError::ZeroLimit("outgoing_frame_size"));
        }
        if let Some(interval) = self.ping_period {
            if interval.is_zero() {
                return Err(ConfigError::ZeroDuration("ping_period"));
            }
            if self.pong_wait.is_zero() {
                return Err(ConfigError::ZeroDuration("pong_wait"));
            }
            if interval >= self.pong_wait {
                return Err(ConfigError::PingPeriodNotBelowPongWait {
                    ping_period: interval,
                    pong_wait: self.pong_wait,
                });
            }
        }
        if self.read_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::ZeroDuration("read_timeout"));
        }
        Ok(())
    }
}

/// A [`Config`] whose values do not fit together.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A size limit was set to zero; the field is named.
    ZeroLimit(&'static str),
    /// A duration that must be positive was zero; the field is named.
    ZeroDuration(&'static str),
    /// `ping_period` must be shorter than `pong_wait`, or a live peer would be declared dead.
    PingPeriodNotBelowPongWait {
        /// The configured `ping_period`.
        ping_period: Duration,
        /// The configured `pong_wait`.
        pong_wait: Duration,
    },
    /// A setting is outside its range (a permessage-deflate window, level or memory level,
    /// RFC 7692 section 7.1.2); the field is named.
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: usize,
        /// The smallest value allowed.
        min: usize,
        /// The largest value allowed.
        max: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroLimit(field) => write!(f, "`{field}` must be at least 1 byte"),
            Self::ZeroDuration(field) => write!(f, "`{field}` must be longer than zero"),
            Self::PingPeriodNotBelowPongWait { ping_period, pong_wait } => {
                write!(f, "`ping_period` ({ping_period:?}) must be shorter than `pong_wait` ({pong_wait:?})")
            }
            Self::OutOfRange { field, value, min, max } => {
                write!(f, "`{field}` is {value}, outside {min} to {max}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn ping_period_equal_to_pong_wait_is_rejected() {
        let c = Config::default().ping_period(Some(Duration::from_secs(10))).pong_wait(Duration::from_secs(10));
        assert!(matches!(c.validate(), Err(ConfigError::PingPeriodNotBelowPongWait { .. })));
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert_eq!(Config::default().max_frame_size(0).validate(), Err(ConfigError::ZeroLimit("max_frame_size")));
        assert_eq!(Config::default().max_message_size(0).validate(), Err(ConfigError::ZeroLimit("max_message_size")));
        assert_eq!(
            Config::default().outgoing_frame_size(0).validate(),
            Err(ConfigError::ZeroLimit("outgoing_frame_size"))
        );
    }

    #[test]
    fn zero_durations_are_rejected() {
        let c = Config::default().ping_period(Some(Duration::ZERO));
        assert_eq!(c.validate(), Err(ConfigError::ZeroDuration("ping_period")));
        let c = Config::default().read_timeout(Some(Duration::ZERO));
        assert_eq!(c.validate(), Err(ConfigError::ZeroDuration("read_timeout")));
    }
}
