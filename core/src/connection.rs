//! The per-connection protocol state machine (RFC 6455 sections 5, 6 and 7).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, MAX_CLOSE_REASON, parse_close_payload};
use crate::config::{Config, ConfigError, Role};
use crate::deflate::{DeflateCodec, DeflateParams, PerMessageDeflate, RSV1};
use crate::entropy::Entropy;
use crate::error::{ProtocolError, SendError};
use crate::event::{Closed, Event, Failure, Initiator, State, Utf8Bytes};
use crate::extension::Extension;
use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::mask::{apply_mask, apply_mask_offset, extend_masked};
use crate::prepared::{PreparedMessage, Variant, encode_frames};
use crate::utf8::Utf8Validator;

/// The kind of a data message (RFC 6455 section 5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode `0x1`).
    Text,
    /// Arbitrary bytes (opcode `0x2`).
    Binary,
}

impl MessageKind {
    pub(crate) fn opcode(self) -> OpCode {
        match self {
            Self::Text => OpCode::Text,
            Self::Binary => OpCode::Binary,
        }
    }
}

/// One WebSocket connection after the opening handshake, as a pure state machine.
///
/// It performs no I/O and never reads the clock: the caller moves bytes and time in and out.
///
/// # Call order
///
/// Loop until nothing changes, then wait for the socket or the deadline:
///
/// 1. Feed received bytes with [`handle_input`](Self::handle_input) (the end of the stream with
///    [`handle_eof`](Self::handle_eof)), and expired deadlines with
///    [`handle_timeout`](Self::handle_timeout). A driver that stops reading for its
///    application's sake says so with [`handle_read_paused`](Self::handle_read_paused), and
///    with [`handle_read_resumed`](Self::handle_read_resumed) before it reads again.
/// 2. Queue outgoing messages with [`send_text`](Self::send_text),
///    [`send_binary`](Self::send_binary) (or, without copying a large payload on a server,
///    [`send_text_bytes`](Self::send_text_bytes) and
///    [`send_binary_bytes`](Self::send_binary_bytes)), [`send_fragment`](Self::send_fragment),
///    [`ping`](Self::ping), [`pong`](Self::pong) and [`close`](Self::close).
/// 3. Write [`poll_transmit`](Self::poll_transmit) (or, in one vectored write,
///    [`poll_transmit_vectored`](Self::poll_transmit_vectored)) to the socket and report what
///    was written with [`advance_transmit`](Self::advance_transmit).
/// 4. Drain [`poll_event`](Self::poll_event); [`Event::Closed`] is always the last event.
/// 5. Arm a timer for [`poll_timeout`](Self::poll_timeout).
/// 6. Once [`should_shutdown`](Self::should_shutdown) is true, shut the transport down: the
///    closing handshake is over (or failed) and every byte is flushed.
///
/// Input and commands can be interleaved in any order; all calls tolerate any input without
/// panicking.
///
/// # Compression
///
/// A connection made with the permessage-deflate its handshake agreed to
/// ([`with_deflate`](Self::with_deflate), [RFC 7692]) inflates messages whose first frame has
/// RSV1 set, holding them to [`Config::max_message_size`] as they inflate and validating text
/// on the inflated bytes, and deflates the messages it sends from
/// [`DeflateConfig::min_compress_size`](crate::DeflateConfig::min_compress_size) bytes up, RSV1
/// on their first frame. [`deflate`](Self::deflate) shows what was agreed.
///
/// [RFC 7692]: https://www.rfc-editor.org/rfc/rfc7692
///
/// # Keepalive and timeouts
///
/// With [`Config::ping_period`] set, a ping is sent every interval. Any bytes received from the
/// peer prove it alive; if nothing arrives within [`Config::pong_wait`] of a ping, the
/// connection fails with [`Failure::PeerUnresponsive`]. A silent peer is therefore detected within
/// `ping_period + pong_wait`. [`Config::read_timeout`] fails a connection on which nothing
/// was received for that long, and [`Config::close_timeout`] bounds the closing handshake.
///
/// Those two liveness deadlines count only time during which the transport is read. A driver
/// that stops reading for its application's sake (its receive queue is full) reports it with
/// [`handle_read_paused`](Self::handle_read_paused): the peer's pongs and messages then wait
/// unread in the transport, and silence is not the peer's fault. The liveness clock stands still
/// until [`handle_read_resumed`](Self::handle_read_resumed), and the deadlines move later by the
/// length of the pause. Keepalive pings and the closing handshake's deadline run on.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    /// Shared with the server's other connections until this one changes it: an idle
    /// connection's memory counts, and a server's connections mostly agree.
    config: Arc<Config>,
    /// Masking keys for a client, made on first use: a server never needs them, and the
    /// generator's state is most of an idle connection's size.
    entropy: Option<Box<Entropy>>,
    now: Instant,

    /// Received bytes not yet consumed. Payload bytes of `frame` before `frame.processed` are
    /// already unmasked and validated in place.
    inbuf: BytesMut,
    /// An upper bound on the size of the block `inbuf` lives in. Once a received message has
    /// been split off, `inbuf` may show no capacity and still hold its block, which it takes
    /// back for the next input when the message is gone.
    inbuf_block: usize,
    /// The frame whose header has been decoded and whose payload is being received.
    frame: Option<InFrame>,
    /// Kind of the fragmented message being received, if one is in progress.
    msg_kind: Option<MessageKind>,
    /// Fragments of the message being received (first fragment onwards).
    msg_buf: BytesMut,
    /// Incremental validator for the text message being received.
    rx_utf8: Utf8Validator,
    /// The message being received is compressed (RSV1 on its first frame, RFC 7692 section 6):
    /// its frames go through the extension's decompressor instead of `msg_buf`.
    rx_compressed: bool,
    /// The extension negotiated in the opening handshake, if any.
    extension: Option<Extension>,

    /// Output that goes before `out`: frozen encoded frames and payloads queued by reference.
    segments: VecDeque<Bytes>,
    /// Total length of `segments`.
    segments_len: usize,
    /// Encoded frames waiting to be written, after `segments`.
    out: BytesMut,
    /// The latest ping still to be answered while pongs are coalesced (see
    /// [`COALESCE_PONGS_ABOVE`]).
    pending_pong: Option<Bytes>,
    /// Kind of the fragmented message being sent, if one is in progress.
    tx_fragment: Option<MessageKind>,
    /// Validator for outgoing text fragments.
    tx_utf8: Utf8Validator,
    /// The fragmented message being sent is compressed.
    tx_compressed: bool,

    phase: Phase,
    initiator: Option<Initiator>,
    failure: Option<ProtocolError>,
    /// A violation found after events that precede it in the stream; applied once those events
    /// are drained, so replies to them go out before the close frame.
    pending_failure: Option<ProtocolError>,
    events: VecDeque<Event>,
    timers: Timers,
    /// When the driver stopped reading the transport, while it has (see
    /// [`handle_read_paused`](Connection::handle_read_paused)).
    read_paused_at: Option<Instant>,
}

/// Where a connection is in its lifecycle: one value rather than flags for "close sent",
/// "close received", "closed" and "shut down", so that no impossible mix of them can be
/// represented. [`State`] is the public view of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Messages flow both ways.
    Open,
    /// This end sent a close frame and waits for the peer's (section 7.1.2).
    CloseSent,
    /// The closing handshake completed on a client, which waits for the server to close the
    /// transport first (section 7.1.1), for at most the close timeout.
    AwaitingShutdown,
    /// Closed: the transport is to be shut once the output is flushed.
    Shutdown,
}

impl Phase {
    /// The closing handshake completed or the connection failed.
    fn is_closed(self) -> bool {
        matches!(self, Self::AwaitingShutdown | Self::Shutdown)
    }
}

#[derive(Debug, Clone, Copy)]
struct InFrame {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
    /// For an uncompressed frame: payload bytes at the start of `inbuf` already unmasked and
    /// validated. For a compressed one: payload bytes already inflated and dropped from `inbuf`,
    /// which then holds only the rest.
    processed: usize,
    /// A data frame of a compressed message (RFC 7692 section 6).
    compressed: bool,
}

/// Buffers larger than this are given back once empty, so a burst does not pin memory.
const SHRINK_ABOVE: usize = 1 << 20;

/// Masked data frames with at least this much payload are unmasked as they are appended to the
/// input buffer (below it, a copy and an unmask in place cost no more, and the fused loop has a
/// longer setup).
const UNMASK_ON_ARRIVAL_FROM: usize = 8 * 1024;

/// A smaller masked data frame is unmasked as it is appended when it is all of the input given
/// (a round trip's message) and has at least this much payload. Not when other frames come with
/// it: appending each on its own would take a new buffer for each while the earlier payloads
/// still hold the last one, where one copy of the whole read serves them all.
const UNMASK_ALONE_FROM: usize = 512;

/// The most input buffer reserved ahead of a frame's payload before it has arrived.
const RESERVE_AHEAD: usize = 256 * 1024;

/// Frame payloads at least this long, given as [`Bytes`] to a server connection, are queued by
/// reference and written from where they are (vectored output) instead of being copied.
const SHARE_PAYLOAD_ABOVE: usize = 8 * 1024;

/// While more output than this is unflushed, pongs are coalesced: only the latest ping is
/// answered (RFC 6455 section 5.5.3 allows it), so a ping flood from a peer that does not read
/// cannot grow the output without bound. Below it every ping gets its own pong.
const COALESCE_PONGS_ABOVE: usize = 64 * 1024;

impl Connection {
    /// A connection in the [`State::Open`] state, as left by a successful opening handshake.
    ///
    /// `now` arms the keepalive and idle deadlines. `config` may be an `Arc<Config>` that many
    /// connections share (the connection copies it only if changed with
    /// [`set_max_message_size`](Self::set_max_message_size) or
    /// [`set_max_frame_size`](Self::set_max_frame_size)).
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] from [`Config::validate`].
    pub fn new(role: Role, config: impl Into<Arc<Config>>, now: Instant) -> Result<Self, ConfigError> {
        Self::with_deflate(role, config, None, now)
    }

    /// A connection in the [`State::Open`] state with the permessage-deflate agreed in the
    /// opening handshake, if any (RFC 7692): from
    /// [`ServerHandshake::into_connection`](crate::handshake::ServerHandshake::into_connection)
    /// and [`ClientHandshake::into_connection`](crate::handshake::ClientHandshake::into_connection),
    /// or made by hand with [`PerMessageDeflate::new`] for a handshake done elsewhere.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] from [`Config::validate`].
    pub fn with_deflate(
        role: Role,
        config: impl Into<Arc<Config>>,
        deflate: Option<PerMessageDeflate>,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let config = config.into();
        config.validate()?;
        let mut timers = Timers::default();
        if let Some(interval) = config.ping_period {
            timers.set(Timer::Ping, now + interval);
        }
        if let Some(idle) = config.read_timeout {
            timers.set(Timer::Idle, now + idle);
        }
        Ok(Self {
            role,
            entropy: None,
            config,
            now,
            inbuf: BytesMut::new(),
            inbuf_block: 0,
            frame: None,
            msg_kind: None,
            msg_buf: BytesMut::new(),
            rx_utf8: Utf8Validator::new(),
            rx_compressed: false,
            extension: deflate.map(|d| Extension::PerMessageDeflate(Box::new(DeflateCodec::new(d, role)))),
            segments: VecDeque::new(),
            segments_len: 0,
            out: BytesMut::new(),
            pending_pong: None,
            tx_fragment: None,
            tx_utf8: Utf8Validator::new(),
            tx_compressed: false,
            phase: Phase::Open,
            initiator: None,
            failure: None,
            pending_failure: None,
            events: VecDeque::new(),
            timers,
            read_paused_at: None,
        })
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The permessage-deflate parameters agreed in the opening handshake (RFC 7692 section 7.1),
    /// or `None` when messages are not compressed.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.extension.as_ref().map(|e| e.deflate().params())
    }

    /// Switches compression of the messages this end sends from now on, when permessage-deflate
    /// was agreed (gorilla/websocket's `EnableWriteCompression`). RFC 7692 section 6 lets an
    /// endpoint send any message uncompressed, so switching off needs nothing from the peer, and
    /// the compressor's context (when kept) resumes where it was when switched back on. A message
    /// being streamed keeps the choice it started with. Without permessage-deflate this does
    /// nothing. On by default.
    pub fn set_write_compression(&mut self, enabled: bool) {
        if let Some(extension) = &mut self.extension {
            extension.deflate_mut().set_write_enabled(enabled);
        }
    }

    /// Whether the messages this end sends from now on are compressed (those that reach
    /// [`DeflateConfig::min_compress_size`](crate::DeflateConfig::min_compress_size)): `false`
    /// when permessage-deflate was not agreed or was switched off with
    /// [`set_write_compression`](Self::set_write_compression).
    pub fn write_compression(&self) -> bool {
        self.extension.as_ref().is_some_and(|e| e.deflate().write_enabled())
    }

    /// Where the connection is in its lifecycle.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Open => State::Open,
            Phase::CloseSent => State::Closing,
            Phase::AwaitingShutdown | Phase::Shutdown => State::Closed,
        }
    }

    /// Changes the largest incoming frame payload, for frames not yet started (a driver may
    /// tighten it per connection after the handshake).
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroLimit`] when `bytes` is zero; the limit is then unchanged.
    pub fn set_max_frame_size(&mut self, bytes: usize) -> Result<(), ConfigError> {
        self.set_config(Config::clone(&self.config).max_frame_size(bytes))
    }

    /// Changes the largest incoming message, for frames not yet started (eyesore's per-connection
    /// `MaxMessageSize`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroLimit`] when `bytes` is zero; the limit is then unchanged.
    pub fn set_max_message_size(&mut self, bytes: usize) -> Result<(), ConfigError> {
        self.set_config(Config::clone(&self.config).max_message_size(bytes))
    }

    fn set_config(&mut self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        self.config = Arc::new(config);
        Ok(())
    }

    // ---- input ------------------------------------------------------------------------------

    /// Feeds bytes received from the peer, in any split.
    ///
    /// Complete messages and control frames become events. Bytes after the peer's close frame
    /// are discarded (section 5.5.1).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the peer violated the protocol. The connection is then failed
    /// (section 7.1.7): a close frame with the error's code is queued, [`Event::Closed`] is
    /// emitted, and the transport should be shut once flushed. Events decoded from frames that
    /// preceded the violation are still delivered first, and whatever is sent in reply to them
    /// goes out before the close frame. The error is sticky: later calls return it again.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), ProtocolError> {
        self.now = now;
        if let Some(err) = &self.failure {
            return Err(err.clone());
        }
        if self.phase.is_closed() || data.is_empty() {
            return Ok(());
        }
        self.saw_peer(now);
        match self.take_input(data) {
            Ok(()) => {
                if self.inbuf.is_empty() && self.inbuf_block > SHRINK_ABOVE {
                    self.drop_inbuf();
                }
                Ok(())
            }
            Err(err) => {
                self.failure = Some(err.clone());
                self.frame = None;
                self.drop_inbuf();
                if self.events.is_empty() {
                    self.fail(err.clone());
                } else {
                    self.pending_failure = Some(err.clone());
                }
                Err(err)
            }
        }
    }

    /// Reports that the peer closed its side of the transport (a read returned end of stream).
    ///
    /// Before the closing handshake completed this fails the connection with 1006
    /// ([`Failure::TransportClosed`]); after it, a client stops waiting and may shut down.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if self.phase.is_closed() {
            self.phase = Phase::Shutdown;
            self.timers.clear_all();
        } else {
            self.fail_without_close(Failure::TransportClosed);
        }
    }

    /// Reports that the driver stopped reading the transport on its own account, for instance
    /// because the application's receive queue is full, although the peer may be sending.
    ///
    /// Until [`handle_read_resumed`](Self::handle_read_resumed), the liveness deadlines (the pong
    /// wait after a keepalive ping, and [`Config::read_timeout`]) stand still: whatever the peer
    /// sent meanwhile, pongs included, waits unread, so its silence proves nothing. Keepalive
    /// pings still go out, and the closing handshake's deadline runs on. Repeated calls keep the
    /// first pause's start.
    pub fn handle_read_paused(&mut self, now: Instant) {
        self.now = now;
        self.read_paused_at.get_or_insert(now);
    }

    /// Reports that the driver reads the transport again after
    /// [`handle_read_paused`](Self::handle_read_paused): the liveness deadlines move later by the
    /// length of the pause, so that each counts only time during which the peer could be heard.
    /// Without a pause in progress this does nothing.
    pub fn handle_read_resumed(&mut self, now: Instant) {
        self.now = now;
        if let Some(since) = self.read_paused_at.take() {
            let paused = now.saturating_duration_since(since);
            for timer in [Timer::Pong, Timer::Idle] {
                if let Some(at) = self.timers.get(timer) {
                    self.timers.set(timer, at + paused);
                }
            }
        }
    }

    /// Whether reading is paused: [`handle_read_paused`](Self::handle_read_paused) was called
    /// and [`handle_read_resumed`](Self::handle_read_resumed) not since.
    #[inline]
    #[must_use]
    pub fn is_read_paused(&self) -> bool {
        self.read_paused_at.is_some()
    }

    /// Processes deadlines that have passed by `now`. Early, late and repeated calls are fine.
    ///
    /// A connection that fails on a deadline (the peer unresponsive or idle, the closing
    /// handshake not completed within [`Config::close_timeout`]) drops the output it still
    /// had queued, so that a peer that stopped reading cannot hold the transport open; so does
    /// one whose failure's close frame is not written within the close timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.timers.expired(Timer::Close, now) {
            self.timers.clear(Timer::Close);
            if self.phase.is_closed() {
                // A client waited long enough for the server to close the transport, or the
                // close frame of a failure could not be flushed in time.
                self.phase = Phase::Shutdown;
                self.discard_output();
            } else {
                self.fail_without_close(Failure::CloseTimeout);
            }
            return;
        }
        if self.phase.is_closed() {
            return;
        }
        if self.read_paused_at.is_none() {
            if self.timers.expired(Timer::Pong, now) {
                self.fail_without_close(Failure::PeerUnresponsive);
                return;
            }
            if self.timers.expired(Timer::Idle, now) {
                self.fail_without_close(Failure::ReadTimeout);
                return;
            }
        }
        if self.timers.expired(Timer::Ping, now) {
            if let Some(interval) = self.config.ping_period {
                if self.phase == Phase::Open {
                    self.flush_pending_pong();
                    self.write_frame(true, OpCode::Ping, &[]);
                    if self.timers.get(Timer::Pong).is_none() {
                        let sent = self.liveness_now(now);
                        self.timers.set(Timer::Pong, sent + self.config.pong_wait);
                    }
                    self.timers.set(Timer::Ping, now + interval);
                } else {
                    self.timers.clear(Timer::Ping);
                }
            }
        }
    }

    // ---- output -----------------------------------------------------------------------------

    /// The next event, in the order events happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        let err = self.pending_failure.take()?;
        self.fail(err);
        self.events.pop_front()
    }

    /// The next bytes to write to the transport, or `None` when nothing is pending. Report how
    /// many were written with [`advance_transmit`](Self::advance_transmit); the same bytes are
    /// returned until then.
    ///
    /// Frames from every command are coalesced into one buffer, except large payloads a server
    /// queued by reference ([`send_binary_bytes`](Self::send_binary_bytes)): those come as
    /// pieces of their own, so a driver that can write vectored should prefer
    /// [`poll_transmit_vectored`](Self::poll_transmit_vectored).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<&[u8]> {
        self.flush_pending_pong();
        match self.segments.front() {
            Some(segment) => Some(segment),
            None if self.out.is_empty() => None,
            None => Some(&self.out),
        }
    }

    /// Fills `bufs` with the pending output, in order, for one vectored write; returns how many
    /// slices were filled (0 when nothing is pending). Report what was written with
    /// [`advance_transmit`](Self::advance_transmit).
    pub fn poll_transmit_vectored<'a>(&'a mut self, bufs: &mut [IoSlice<'a>]) -> usize {
        self.flush_pending_pong();
        let this: &'a Self = self;
        let tail = (!this.out.is_empty()).then_some(&this.out[..]);
        let pieces = this.segments.iter().map(|s| &s[..]).chain(tail);
        let mut filled = 0;
        for (slot, piece) in bufs.iter_mut().zip(pieces) {
            *slot = IoSlice::new(piece);
            filled += 1;
        }
        filled
    }

    /// Takes every pending output byte as one owned buffer (for drivers that hold the buffer
    /// across an await). Empty when nothing is pending.
    #[must_use]
    pub fn take_transmit(&mut self) -> Bytes {
        self.flush_pending_pong();
        if self.segments.is_empty() {
            return self.out.split().freeze();
        }
        let mut all = BytesMut::with_capacity(self.segments_len + self.out.len());
        for segment in self.segments.drain(..) {
            all.extend_from_slice(&segment);
        }
        self.segments_len = 0;
        all.extend_from_slice(&self.out.split());
        all.freeze()
    }

    /// Marks `n` bytes of pending output ([`poll_transmit`](Self::poll_transmit) or
    /// [`poll_transmit_vectored`](Self::poll_transmit_vectored)) as written.
    pub fn advance_transmit(&mut self, mut n: usize) {
        while n > 0 {
            let Some(segment) = self.segments.front_mut() else { break };
            let step = n.min(segment.len());
            segment.advance(step);
            self.segments_len -= step;
            n -= step;
            if segment.is_empty() {
                self.segments.pop_front();
            }
        }
        let n = n.min(self.out.len());
        self.out.advance(n);
        if self.out.is_empty() && self.out.capacity() > SHRINK_ABOVE {
            self.out = BytesMut::new();
        }
    }

    /// Bytes queued for the transport and not yet reported written: the figure an adapter uses
    /// for backpressure.
    pub fn buffered_amount(&self) -> usize {
        self.segments_len + self.out.len() + self.pending_pong.as_ref().map_or(0, |p| p.len() + MAX_HEADER_LEN)
    }

    /// Whether a message sent with [`send_fragment`](Self::send_fragment) is open: its last
    /// fragment is not queued yet and the connection can still send. Meanwhile other messages
    /// are refused with [`SendError::FragmentedMessageInProgress`] (section 5.4), so a caller
    /// with messages of its own to send holds them until this turns false.
    #[must_use]
    pub fn is_sending_fragmented(&self) -> bool {
        self.tx_fragment.is_some() && self.check_can_send().is_ok()
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.should_shutdown() {
            None
        } else if self.read_paused_at.is_some() {
            // The liveness deadlines stand still while reading is paused.
            [self.timers.get(Timer::Ping), self.timers.get(Timer::Close)].into_iter().flatten().min()
        } else {
            self.timers.earliest()
        }
    }

    /// Whether the transport should now be shut down: the connection is closed (cleanly or not),
    /// every output byte has been reported written, and, on a client after a clean close, the
    /// server closed the transport or `close_timeout` passed (RFC 6455 section 7.1.1: the server
    /// closes the TCP connection first).
    #[must_use]
    pub fn should_shutdown(&self) -> bool {
        self.phase == Phase::Shutdown && self.out.is_empty() && self.segments.is_empty()
    }

    /// Bytes of buffer capacity the connection holds (input, output and message assembly): what
    /// [`release_buffers`](Self::release_buffers) could give back.
    pub fn buffer_capacity(&self) -> usize {
        self.inbuf_block
            + self.out.capacity()
            + self.msg_buf.capacity()
            + self.extension.as_ref().map_or(0, |e| e.deflate().buffer_capacity())
    }

    /// Gives back the capacity of the empty input buffers (received bytes and message assembly)
    /// that hold more than `keep` bytes, keeping the output buffer; a driver may call this
    /// whenever it parks. Keeping a small buffer spares a busy connection an allocation per
    /// message ([`release_buffers`](Self::release_buffers) gives it back once the connection
    /// goes quiet); a large one usually backs a received message that is still in use, and
    /// would cost its size per connection.
    pub fn release_input_buffers(&mut self, keep: usize) {
        if self.inbuf.is_empty() && self.inbuf_block > keep {
            self.drop_inbuf();
        }
        if self.msg_kind.is_none() && self.msg_buf.capacity() > keep {
            self.msg_buf = BytesMut::new();
        }
    }

    /// Gives back the capacity of empty internal buffers; a driver may call this once a
    /// connection has gone quiet.
    pub fn release_buffers(&mut self) {
        if self.inbuf.is_empty() {
            self.drop_inbuf();
        }
        if self.out.is_empty() {
            self.out = BytesMut::new();
        }
        if self.msg_kind.is_none() {
            self.msg_buf = BytesMut::new();
        }
    }

    // ---- commands ---------------------------------------------------------------------------

    /// Queues a text message, split into frames of at most [`Config::outgoing_frame_size`].
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] after a close frame was sent or the connection failed;
    /// [`SendError::FragmentedMessageInProgress`] while [`send_fragment`](Self::send_fragment)
    /// has a message open.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_message(MessageKind::Text, text.as_bytes(), None)
    }

    /// Queues a binary message, split into frames of at most [`Config::outgoing_frame_size`].
    ///
    /// # Errors
    ///
    /// As for [`send_text`](Self::send_text).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_message(MessageKind::Binary, data, None)
    }

    /// Queues a binary message held in shared memory. On a server a large payload is not
    /// copied: the frame header is queued, and the payload is written from `data` itself (see
    /// [`poll_transmit_vectored`](Self::poll_transmit_vectored)); `data` is cloned (a reference
    /// count) only then. A small payload, every payload of a client (which masks it, RFC 6455
    /// section 5.3), and a payload to be compressed (RFC 7692), is copied as
    /// [`send_binary`](Self::send_binary) does.
    ///
    /// # Errors
    ///
    /// As for [`send_text`](Self::send_text).
    pub fn send_binary_bytes(&mut self, data: &Bytes) -> Result<(), SendError> {
        self.send_message(MessageKind::Binary, data, Some(data))
    }

    /// Queues a text message held in shared memory, without copying a large payload on a
    /// server (as [`send_binary_bytes`](Self::send_binary_bytes)).
    ///
    /// # Errors
    ///
    /// As for [`send_text`](Self::send_text).
    pub fn send_text_bytes(&mut self, text: &Utf8Bytes) -> Result<(), SendError> {
        let data = text.as_shared_bytes();
        self.send_message(MessageKind::Text, data, Some(data))
    }

    /// Queues a [`PreparedMessage`]. On a server, its frames are encoded once for every
    /// connection with the same settings and queued here by reference (see
    /// [`PreparedMessage`] for when compressed frames can be shared); a client frames and masks
    /// it as [`send_binary_bytes`](Self::send_binary_bytes) does.
    ///
    /// # Errors
    ///
    /// As for [`send_text`](Self::send_text).
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), SendError> {
        let kind = message.kind();
        if self.role == Role::Client {
            return self.send_message(kind, message.payload(), Some(message.payload()));
        }
        self.check_can_send()?;
        if self.tx_fragment.is_some() {
            return Err(SendError::FragmentedMessageInProgress);
        }
        let frame_size = self.config.outgoing_frame_size;
        let compressor = self
            .extension
            .as_ref()
            .filter(|extension| extension.deflate().should_compress(message.len()))
            .map(|extension| extension.deflate().fresh_compressor());
        let frames = match compressor {
            // This end's compressor keeps its context: its output depends on what this
            // connection sent before, so the message is compressed here alone.
            Some(None) => return self.send_message(kind, message.payload(), None),
            Some(Some(settings)) => {
                let codec = self.extension.as_mut().map(Extension::deflate_mut);
                message.frames(Variant { frame_size, deflate: Some(settings) }, |payload| {
                    // A compressor that keeps no context starts fresh for every message, so this
                    // connection's output is the output of any connection with these settings.
                    let mut compressed = Vec::new();
                    if let Some(codec) = codec {
                        codec.compress(payload, true, &mut compressed);
                    }
                    encode_frames(kind, &compressed, frame_size, RSV1)
                })
            }
            None => message
                .frames(Variant { frame_size, deflate: None }, |payload| encode_frames(kind, payload, frame_size, 0)),
        };
        self.flush_pending_pong();
        if !self.out.is_empty() {
            self.segments_len += self.out.len();
            self.segments.push_back(self.out.split().freeze());
        }
        self.segments_len += frames.len();
        self.segments.push_back(frames);
        Ok(())
    }

    /// Queues one fragment of a message whose size is not known up front (section 5.4).
    ///
    /// The first call opens a message of `kind`; later calls continue it (their `kind` must
    /// match) until a call with `fin` set ends it. Control frames may be sent in between. Text
    /// fragments may split a character between calls; the message as a whole must be UTF-8.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`]; [`SendError::FragmentKindMismatch`] when `kind` differs from
    /// the open message's; [`SendError::InvalidUtf8`] when text fragments stop being a valid
    /// UTF-8 prefix (nothing of this fragment is sent and the message stays open).
    pub fn send_fragment(&mut self, kind: MessageKind, payload: &[u8], fin: bool) -> Result<(), SendError> {
        self.check_can_send()?;
        let opcode = match self.tx_fragment {
            None => kind.opcode(),
            Some(open) if open == kind => OpCode::Continuation,
            Some(_) => return Err(SendError::FragmentKindMismatch),
        };
        if kind == MessageKind::Text {
            let mut validator = self.tx_utf8.clone();
            validator.feed(payload).map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                validator.finish().map_err(|_| SendError::InvalidUtf8)?;
            }
            self.tx_utf8 = validator;
        }
        self.flush_pending_pong();
        // A streamed message is compressed as one (RFC 7692 section 7.2.1): one deflate stream
        // across its fragments, each flushed so it carries all its data, RSV1 on the first frame
        // only. Its size is unknown, so only a first fragment that also ends it is held to the
        // size threshold.
        let compress = match (&self.tx_fragment, &self.extension) {
            (Some(_), _) => self.tx_compressed,
            (None, Some(extension)) => {
                extension.deflate().write_enabled() && (!fin || extension.deflate().should_compress(payload.len()))
            }
            (None, None) => false,
        };
        match &mut self.extension {
            Some(extension) if compress => {
                let mut compressed = Vec::new();
                extension.deflate_mut().compress(payload, fin, &mut compressed);
                let rsv = if self.tx_fragment.is_none() { RSV1 } else { 0 };
                self.write_chunked(opcode, &compressed, None, fin, rsv);
            }
            _ => self.write_chunked(opcode, payload, None, fin, 0),
        }
        self.tx_compressed = compress && !fin;
        self.tx_fragment = if fin { None } else { Some(kind) };
        Ok(())
    }

    /// Queues a ping (section 5.5.2).
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`], or [`SendError::ControlPayloadTooLong`] over 125 bytes.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong or a manual answer to a ping (section 5.5.3).
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`], or [`SendError::ControlPayloadTooLong`] over 125 bytes.
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    /// Starts the closing handshake (section 7.1.2): queues a close frame and arms
    /// [`Config::close_timeout`]. Messages still arriving are delivered until the peer's close.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] when a close frame was already sent or the connection is closed;
    /// [`SendError::InvalidCloseCode`] for a code that may not be sent (section 7.4.1);
    /// [`SendError::CloseReasonTooLong`] for a reason over 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), SendError> {
        self.now = now;
        if self.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        if !code.is_sendable() {
            return Err(SendError::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::CloseReasonTooLong(reason.len()));
        }
        self.send_close_frame(Some(code), reason);
        self.phase = Phase::CloseSent;
        self.initiator = Some(Initiator::Local);
        self.timers.clear_all();
        self.timers.set(Timer::Close, now + self.config.close_timeout);
        Ok(())
    }

    // ---- internals: receiving ---------------------------------------------------------------

    /// Records the block `inbuf` lives in after it may have grown (`before` is where its bytes
    /// started then). Bytes that moved sit at the start of their (new or reclaimed) block, so
    /// length and capacity together are its size; in place, the block is at least that.
    fn note_inbuf_block(&mut self, before: *const u8) {
        let spans = self.inbuf.len() + self.inbuf.capacity();
        self.inbuf_block = if self.inbuf.as_ptr() == before { self.inbuf_block.max(spans) } else { spans };
    }

    fn drop_inbuf(&mut self) {
        self.inbuf = BytesMut::new();
        self.inbuf_block = 0;
    }

    fn saw_peer(&mut self, now: Instant) {
        self.timers.clear(Timer::Pong);
        if let (Some(idle), Phase::Open) = (self.config.read_timeout, self.phase) {
            let heard = self.liveness_now(now);
            self.timers.set(Timer::Idle, heard + idle);
        }
    }

    /// The time on the liveness clock, which stands still while reading is paused (see
    /// [`handle_read_paused`](Self::handle_read_paused)).
    fn liveness_now(&self, now: Instant) -> Instant {
        self.read_paused_at.unwrap_or(now)
    }

    /// Adds `data` to the received bytes and processes them. The payload of a large masked data
    /// frame is appended unmasked ([`extend_masked`]): one pass over its bytes instead of a copy
    /// and then an unmask in place. That applies from the first payload byte when the frame's
    /// header starts `data` with nothing buffered before it, the usual case; other bytes are
    /// appended as they are and processed in place.
    fn take_input(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        // No frame of this input was processed yet (see `UNMASK_ALONE_FROM`).
        let mut alone = true;
        loop {
            if self.phase.is_closed() {
                return Ok(());
            }
            match self.frame {
                None if self.inbuf.is_empty() => {
                    if let Some((header, header_len)) = FrameHeader::decode(data)?
                        && header.mask.is_some()
                        && header.rsv == 0
                        && !header.opcode.is_control()
                        && (header.payload_len >= UNMASK_ON_ARRIVAL_FROM as u64
                            || (alone
                                && header.payload_len >= UNMASK_ALONE_FROM as u64
                                && header.payload_len == (data.len() - header_len) as u64))
                    {
                        let frame = self.start_frame(&header)?;
                        data = &data[header_len..];
                        self.reserve_input(frame.len.min(RESERVE_AHEAD));
                        self.frame = Some(frame);
                        continue;
                    }
                }
                Some(mut frame)
                    if self.inbuf.len() == frame.processed && !frame.opcode.is_control() && !frame.compressed =>
                {
                    if let Some(key) = frame.mask {
                        let fresh = (frame.len - frame.processed).min(data.len());
                        let before = self.inbuf.as_ptr();
                        extend_masked(&mut self.inbuf, &data[..fresh], key, frame.processed);
                        self.note_inbuf_block(before);
                        if self.frame_is_text(&frame) {
                            let start = frame.processed;
                            self.rx_utf8.feed(&self.inbuf[start..]).map_err(|_| ProtocolError::InvalidUtf8)?;
                        }
                        frame.processed += fresh;
                        self.frame = Some(frame);
                        data = &data[fresh..];
                        // Completes the frame, or makes room for the rest of it.
                        self.process_input()?;
                        alone = false;
                        if data.is_empty() {
                            return Ok(());
                        }
                        continue;
                    }
                }
                _ => {}
            }
            let before = self.inbuf.as_ptr();
            self.inbuf.extend_from_slice(data);
            self.note_inbuf_block(before);
            return self.process_input();
        }
    }

    fn reserve_input(&mut self, additional: usize) {
        let before = self.inbuf.as_ptr();
        self.inbuf.reserve(additional);
        self.note_inbuf_block(before);
    }

    fn process_input(&mut self) -> Result<(), ProtocolError> {
        loop {
            if self.phase.is_closed() {
                self.inbuf.clear();
                return Ok(());
            }
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let Some((header, header_len)) = FrameHeader::decode(&self.inbuf)? else {
                        return Ok(());
                    };
                    let frame = self.start_frame(&header)?;
                    self.inbuf.advance(header_len);
                    frame
                }
            };
            if frame.compressed {
                self.process_compressed(frame)?;
                if self.frame.is_some() {
                    return Ok(());
                }
                continue;
            }
            let available = self.inbuf.len().min(frame.len);
            if !frame.opcode.is_control() && available > frame.processed {
                // Unmask and validate what has arrived so far, so invalid UTF-8 fails at once
                // rather than at the end of a large frame.
                let is_text = self.frame_is_text(&frame);
                let fresh = &mut self.inbuf[frame.processed..available];
                if let Some(key) = frame.mask {
                    apply_mask_offset(fresh, key, frame.processed);
                }
                if is_text {
                    self.rx_utf8.feed(fresh).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                frame.processed = available;
            }
            if available < frame.len {
                // Make room for the rest of the frame now, so the payload is not moved again as
                // it trickles in; bounded, so a header alone cannot make the buffer large.
                self.reserve_input((frame.len - available).min(RESERVE_AHEAD));
                self.frame = Some(frame);
                return Ok(());
            }
            self.frame = None;
            let payload = self.inbuf.split_to(frame.len);
            self.handle_frame(frame, payload)?;
        }
    }

    /// Whether the frame's payload is text to validate as it arrives (a compressed message is
    /// validated once inflated).
    fn frame_is_text(&self, frame: &InFrame) -> bool {
        if frame.compressed {
            return false;
        }
        match frame.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.msg_kind == Some(MessageKind::Text),
            _ => false,
        }
    }

    /// Checks a frame header and, when it starts a data message, notes whether the message is
    /// compressed.
    fn start_frame(&mut self, header: &FrameHeader) -> Result<InFrame, ProtocolError> {
        let frame = self.check_header(header)?;
        if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
            self.rx_compressed = frame.compressed;
        }
        Ok(frame)
    }

    fn check_header(&self, header: &FrameHeader) -> Result<InFrame, ProtocolError> {
        // The negotiated extension says which reserved bits it defines for this frame (RFC 6455
        // section 5.2); with none, every set bit fails the connection.
        let allowed = self.extension.as_ref().map_or(0, |e| e.allowed_rsv(header.opcode));
        if header.rsv & !allowed != 0 {
            return Err(ProtocolError::ReservedBits(header.rsv));
        }
        let compressed = match header.opcode {
            OpCode::Text | OpCode::Binary => header.rsv & RSV1 != 0,
            OpCode::Continuation => self.rx_compressed,
            _ => false,
        };
        match (self.role, header.mask) {
            (Role::Server, None) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, Some(_)) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let opcode = header.opcode;
        if opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if header.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        } else {
            match (opcode, self.msg_kind) {
                (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                _ => {}
            }
            let max = self.config.max_frame_size;
            if header.payload_len > max as u64 {
                return Err(ProtocolError::FrameTooLarge { size: header.payload_len, max });
            }
            // A compressed message is held to the limit as it is inflated instead.
            let max = self.config.max_message_size;
            let size = self.msg_buf.len() as u64 + header.payload_len;
            if !compressed && size > max as u64 {
                return Err(ProtocolError::MessageTooLarge { size, max });
            }
        }
        // Bounded above by max_frame_size (a usize) or 125, so the conversion is lossless.
        let len = usize::try_from(header.payload_len).map_err(|_| ProtocolError::InvalidLength)?;
        Ok(InFrame { fin: header.fin, opcode, mask: header.mask, len, processed: 0, compressed })
    }

    fn handle_frame(&mut self, frame: InFrame, mut payload: BytesMut) -> Result<(), ProtocolError> {
        match frame.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let kind = match frame.opcode {
                    OpCode::Text => MessageKind::Text,
                    OpCode::Binary => MessageKind::Binary,
                    _ => self.msg_kind.ok_or(ProtocolError::UnexpectedContinuation)?,
                };
                if frame.fin && self.msg_kind.is_none() {
                    self.deliver(kind, payload.freeze())
                } else {
                    if self.msg_buf.is_empty() {
                        self.msg_buf = payload;
                    } else {
                        self.msg_buf.extend_from_slice(&payload);
                    }
                    self.msg_kind = Some(kind);
                    if frame.fin {
                        self.msg_kind = None;
                        let message = std::mem::take(&mut self.msg_buf);
                        self.deliver(kind, message.freeze())?;
                    }
                    Ok(())
                }
            }
            control => {
                if let Some(key) = frame.mask {
                    apply_mask(&mut payload, key);
                }
                let payload = payload.freeze();
                match control {
                    OpCode::Ping => {
                        if self.config.auto_pong && self.phase == Phase::Open {
                            if self.segments_len + self.out.len() > COALESCE_PONGS_ABOVE {
                                self.pending_pong = Some(payload.clone());
                            } else {
                                self.flush_pending_pong();
                                self.write_frame(true, OpCode::Pong, &payload);
                            }
                        }
                        self.events.push_back(Event::Ping(payload));
                    }
                    OpCode::Pong => self.events.push_back(Event::Pong(payload)),
                    _ => self.handle_close_frame(&payload)?,
                }
                Ok(())
            }
        }
    }

    /// Inflates what has arrived of a compressed data frame's payload, and ends the message at
    /// its last frame (RFC 7692 section 7.2.2). Leaves `self.frame` set while the frame is
    /// incomplete.
    fn process_compressed(&mut self, mut frame: InFrame) -> Result<(), ProtocolError> {
        let kind = match frame.opcode {
            OpCode::Text => MessageKind::Text,
            OpCode::Binary => MessageKind::Binary,
            _ => self.msg_kind.ok_or(ProtocolError::UnexpectedContinuation)?,
        };
        let fresh = self.inbuf.len().min(frame.len - frame.processed);
        if fresh > 0 {
            let payload = &mut self.inbuf[..fresh];
            if let Some(key) = frame.mask {
                apply_mask_offset(payload, key, frame.processed);
            }
            let limit = self.config.max_message_size;
            let codec = self.extension.as_mut().ok_or(ProtocolError::ReservedBits(RSV1))?.deflate_mut();
            let new = codec.inflate(payload, limit, frame.len)?;
            if kind == MessageKind::Text {
                self.rx_utf8.feed(codec.inflated(new)).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            self.inbuf.advance(fresh);
            frame.processed += fresh;
        }
        if frame.processed < frame.len {
            self.frame = Some(frame);
            return Ok(());
        }
        self.frame = None;
        if !frame.fin {
            self.msg_kind = Some(kind);
            return Ok(());
        }
        self.msg_kind = None;
        let limit = self.config.max_message_size;
        let codec = self.extension.as_mut().ok_or(ProtocolError::ReservedBits(RSV1))?.deflate_mut();
        let new = codec.finish_message(limit)?;
        if kind == MessageKind::Text {
            self.rx_utf8.feed(codec.inflated(new)).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        let message = codec.take_message();
        self.deliver(kind, message)
    }

    fn deliver(&mut self, kind: MessageKind, message: Bytes) -> Result<(), ProtocolError> {
        let event = match kind {
            MessageKind::Text => {
                self.rx_utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Event::Text(Utf8Bytes::from_validated(message))
            }
            MessageKind::Binary => Event::Binary(message),
        };
        self.events.push_back(event);
        Ok(())
    }

    fn handle_close_frame(&mut self, payload: &[u8]) -> Result<(), ProtocolError> {
        let (code, reason) = parse_close_payload(payload)?;
        let initiator = if self.phase == Phase::CloseSent {
            Initiator::Local
        } else {
            // Echo the status code (section 5.5.1); an empty close is echoed empty.
            let echo = (code != CloseCode::NO_STATUS).then_some(code);
            self.send_close_frame(echo, "");
            Initiator::Peer
        };
        self.initiator = Some(initiator);
        let closed = Closed { clean: true, code, reason: reason.to_owned(), initiator: Some(initiator), failure: None };
        self.timers.clear_all();
        match self.role {
            Role::Server => self.phase = Phase::Shutdown,
            // Section 7.1.1: the client waits for the server to close the transport.
            Role::Client => {
                self.phase = Phase::AwaitingShutdown;
                self.timers.set(Timer::Close, self.now + self.config.close_timeout);
            }
        }
        self.events.push_back(Event::Closed(closed));
        Ok(())
    }

    /// Fails the connection for a protocol violation (section 7.1.7): sends the matching close
    /// frame (unless one was sent already) and asks for the transport to be shut.
    fn fail(&mut self, err: ProtocolError) {
        self.pending_failure = None;
        if self.phase.is_closed() {
            return;
        }
        if self.phase == Phase::Open {
            self.send_close_frame(Some(err.close_code()), err.close_reason());
            self.initiator = Some(Initiator::Local);
        }
        let closed = Closed {
            clean: false,
            code: err.close_code(),
            reason: err.close_reason().to_owned(),
            initiator: self.initiator,
            failure: Some(Failure::Protocol(err.clone())),
        };
        self.failure = Some(err);
        self.finish_unclean(closed);
        // The close frame is flushed before the transport is shut, but not for longer than the
        // close timeout: a peer that stopped reading cannot keep the transport open.
        self.timers.set(Timer::Close, self.now + self.config.close_timeout);
    }

    /// Fails the connection without sending anything (timeouts, a vanished transport).
    fn fail_without_close(&mut self, failure: Failure) {
        if let Some(err) = self.pending_failure.take() {
            // The peer's violation came first in the stream: report that one.
            self.fail(err);
            return;
        }
        self.pending_pong = None;
        if self.phase.is_closed() {
            return;
        }
        let transport_closed = matches!(failure, Failure::TransportClosed);
        let closed = Closed {
            clean: false,
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            initiator: self.initiator,
            failure: Some(failure),
        };
        self.finish_unclean(closed);
        if !transport_closed {
            // A deadline passed: nothing more is worth writing, and a peer that stopped reading
            // would otherwise keep the transport open until the queued bytes drain, which may
            // be never. (After the peer's end of stream, what is queued may still be read.)
            self.discard_output();
        }
    }

    fn discard_output(&mut self) {
        self.out = BytesMut::new();
        self.segments.clear();
        self.segments_len = 0;
        self.pending_pong = None;
    }

    fn finish_unclean(&mut self, closed: Closed) {
        self.phase = Phase::Shutdown;
        self.frame = None;
        self.drop_inbuf();
        self.msg_buf = BytesMut::new();
        self.msg_kind = None;
        if let Some(extension) = &mut self.extension {
            extension.deflate_mut().abandon_message();
        }
        self.timers.clear_all();
        self.events.push_back(Event::Closed(closed));
    }

    // ---- internals: sending -----------------------------------------------------------------

    fn check_can_send(&self) -> Result<(), SendError> {
        if self.phase == Phase::Open { Ok(()) } else { Err(SendError::Closed) }
    }

    /// `shared` is `data` held in shared memory, when the caller has it so.
    fn send_message(&mut self, kind: MessageKind, data: &[u8], shared: Option<&Bytes>) -> Result<(), SendError> {
        self.check_can_send()?;
        if self.tx_fragment.is_some() {
            return Err(SendError::FragmentedMessageInProgress);
        }
        self.flush_pending_pong();
        match &mut self.extension {
            Some(extension) if extension.deflate().should_compress(data.len()) => {
                // RFC 7692 section 7.2.1: the whole message is one compressed payload, split
                // into frames afterwards, with RSV1 on the first (section 6).
                let mut compressed = Vec::new();
                extension.deflate_mut().compress(data, true, &mut compressed);
                self.write_chunked(kind.opcode(), &compressed, None, true, RSV1);
            }
            _ => self.write_chunked(kind.opcode(), data, shared, true, 0),
        }
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_can_send()?;
        if payload.len() > 125 {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.flush_pending_pong();
        self.write_frame(true, opcode, payload);
        Ok(())
    }

    fn send_close_frame(&mut self, code: Option<CloseCode>, reason: &str) {
        self.flush_pending_pong();
        let mut payload = [0u8; 125];
        let len = match code {
            Some(code) => {
                let reason = &reason.as_bytes()[..reason.len().min(MAX_CLOSE_REASON)];
                payload[..2].copy_from_slice(&code.as_u16().to_be_bytes());
                payload[2..2 + reason.len()].copy_from_slice(reason);
                2 + reason.len()
            }
            None => 0,
        };
        self.write_frame(true, OpCode::Close, &payload[..len]);
        self.pending_pong = None;
    }

    /// Writes `data` as frames of at most `outgoing_frame_size`, the first with `opcode` and
    /// reserved bits `rsv`, the rest as continuations without; FIN on the last one only when
    /// `fin`. With `shared` (the same bytes in shared memory), a server queues each large frame's
    /// payload by reference instead of copying it.
    fn write_chunked(&mut self, opcode: OpCode, data: &[u8], shared: Option<&Bytes>, fin: bool, rsv: u8) {
        let size = self.config.outgoing_frame_size;
        let count = data.len().div_ceil(size).max(1);
        let mut start = 0usize;
        for i in 0..count {
            let end = data.len().min(start.saturating_add(size));
            let (op, rsv) = if i == 0 { (opcode, rsv) } else { (OpCode::Continuation, 0) };
            let last = fin && i + 1 == count;
            match shared {
                Some(bytes) if self.role == Role::Server && end - start >= SHARE_PAYLOAD_ABOVE => {
                    self.write_header(last, rsv, op, end - start, None);
                    self.segments_len += self.out.len() + (end - start);
                    self.segments.push_back(self.out.split().freeze());
                    self.segments.push_back(bytes.slice(start..end));
                }
                _ => self.write_frame_rsv(last, rsv, op, &data[start..end]),
            }
            start = end;
        }
    }

    fn write_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        self.write_frame_rsv(fin, 0, opcode, payload);
    }

    fn write_frame_rsv(&mut self, fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) {
        let mask = match self.role {
            Role::Client => {
                let seed = self.config.rng_seed;
                Some(self.entropy.get_or_insert_with(|| Box::new(Entropy::from_optional_seed(seed))).mask_key())
            }
            Role::Server => None,
        };
        self.out.reserve(MAX_HEADER_LEN + payload.len());
        self.write_header(fin, rsv, opcode, payload.len(), mask);
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut self.out[start..], key);
        }
    }

    fn write_header(&mut self, fin: bool, rsv: u8, opcode: OpCode, len: usize, mask: Option<[u8; 4]>) {
        let header = FrameHeader { fin, rsv, opcode, mask, payload_len: len as u64 };
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode_into(&mut head);
        self.out.extend_from_slice(&head[..head_len]);
    }

    fn flush_pending_pong(&mut self) {
        if let Some(payload) = self.pending_pong.take() {
            self.write_frame(true, OpCode::Pong, &payload);
        }
    }
}

/// The connection's deadlines (DESIGN: one small table keyed by a private enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Time to send the next keepalive ping.
    Ping = 0,
    /// The peer must have sent something by then.
    Pong = 1,
    /// Nothing received for `read_timeout`.
    Idle = 2,
    /// The closing handshake (or a client's wait for the server's transport close) ends.
    Close = 3,
}

#[derive(Debug, Default, Clone)]
struct Timers([Option<Instant>; 4]);

impl Timers {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }
    fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }
    fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }
    fn clear_all(&mut self) {
        self.0 = [None; 4];
    }
    fn expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }
    fn earliest(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}
