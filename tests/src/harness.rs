//! A deterministic two-peer harness on a virtual clock.
//!
//! Two [`Connection`]s, a client and a server, are joined by two one-way links. Each link delivers
//! bytes whole, one byte at a time, in chunks of chosen sizes, or not at all (a silent or vanished
//! peer). Time never passes by itself: [`Pair::advance_to_next_deadline`] jumps the virtual clock to
//! the earliest deadline either side asked for. Nothing sleeps on the wall clock.

use std::time::{Duration, Instant};

use ferrule_core::{Config, Connection, Event, PerMessageDeflate, Role};

/// How a link hands bytes to the receiving side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Everything pending, in one call.
    Whole,
    /// One byte per call.
    ByteAtATime,
    /// Pieces of these sizes in turn (cycled; a zero size is treated as one).
    Chunks(Vec<usize>),
    /// Nothing: the bytes are written and lost, as to a peer that stopped reading and answering.
    Drop,
    /// Nothing yet: the bytes wait in the link, as in a transport its reader has paused.
    Held,
}

/// Which end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client connection.
    Client,
    /// The server connection.
    Server,
}

/// One direction of the transport.
#[derive(Debug)]
struct Link {
    delivery: Delivery,
    chunk_index: usize,
    /// Bytes written by the sender and not yet delivered.
    in_flight: Vec<u8>,
    /// The sender shut its side down; once `in_flight` drains, the receiver sees end of stream.
    shut: bool,
    eof_delivered: bool,
}

impl Link {
    fn new(delivery: Delivery) -> Self {
        Self { delivery, chunk_index: 0, in_flight: Vec::new(), shut: false, eof_delivered: false }
    }

    /// The next piece to deliver, if any.
    fn next_piece(&mut self) -> Option<Vec<u8>> {
        if self.in_flight.is_empty() {
            return None;
        }
        let n = match &self.delivery {
            Delivery::Whole => self.in_flight.len(),
            Delivery::ByteAtATime => 1,
            Delivery::Chunks(sizes) if sizes.is_empty() => self.in_flight.len(),
            Delivery::Chunks(sizes) => {
                let n = sizes[self.chunk_index % sizes.len()].max(1);
                self.chunk_index += 1;
                n
            }
            Delivery::Drop => {
                self.in_flight.clear();
                return None;
            }
            Delivery::Held => return None,
        };
        let n = n.min(self.in_flight.len());
        Some(self.in_flight.drain(..n).collect())
    }
}

/// A client and a server connection joined by two links, on a virtual clock.
#[derive(Debug)]
pub struct Pair {
    /// The client end.
    pub client: Connection,
    /// The server end.
    pub server: Connection,
    /// The virtual clock.
    pub now: Instant,
    /// Events the client produced, in order.
    pub client_events: Vec<Event>,
    /// Events the server produced, in order.
    pub server_events: Vec<Event>,
    /// Protocol errors returned by the client's `handle_input`, in order.
    pub client_errors: Vec<ferrule_core::ProtocolError>,
    /// Protocol errors returned by the server's `handle_input`, in order.
    pub server_errors: Vec<ferrule_core::ProtocolError>,
    /// Every byte the client wrote, in order.
    pub client_wrote: Vec<u8>,
    /// Every byte the server wrote, in order.
    pub server_wrote: Vec<u8>,
    to_server: Link,
    to_client: Link,
    start: Instant,
}

impl Pair {
    /// A pair with the given configurations, both links delivering whole.
    ///
    /// # Panics
    ///
    /// When a configuration is invalid (a test bug).
    pub fn new(client: Config, server: Config) -> Self {
        Self::with_deflate(client, server, None)
    }

    /// A pair that negotiated `deflate` (the same agreed parameters and settings at both ends),
    /// both links delivering whole.
    ///
    /// # Panics
    ///
    /// When a configuration is invalid (a test bug).
    pub fn with_deflate(client: Config, server: Config, deflate: Option<PerMessageDeflate>) -> Self {
        let now = Instant::now();
        let client = Connection::with_deflate(Role::Client, client.rng_seed(Some([42; 32])), deflate.clone(), now)
            .expect("client config");
        let server = Connection::with_deflate(Role::Server, server, deflate, now).expect("server config");
        Self {
            client,
            server,
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_errors: Vec::new(),
            server_errors: Vec::new(),
            client_wrote: Vec::new(),
            server_wrote: Vec::new(),
            to_server: Link::new(Delivery::Whole),
            to_client: Link::new(Delivery::Whole),
            start: now,
        }
    }

    /// A pair with default configurations.
    pub fn default_pair() -> Self {
        Self::new(Config::default(), Config::default())
    }

    /// Sets how bytes travelling towards `to` are delivered.
    pub fn set_delivery(&mut self, to: Side, delivery: Delivery) {
        match to {
            Side::Server => self.to_server.delivery = delivery,
            Side::Client => self.to_client.delivery = delivery,
        }
    }

    /// `side` stops reading, as a driver does when its application falls behind: bytes towards it
    /// are held in the link, and its connection is told
    /// ([`Connection::handle_read_paused`]).
    pub fn pause_reading(&mut self, side: Side) {
        let now = self.now;
        self.set_delivery(side, Delivery::Held);
        self.conn(side).handle_read_paused(now);
    }

    /// `side` reads again: its connection is told first, then the held bytes are delivered whole.
    pub fn resume_reading(&mut self, side: Side) {
        let now = self.now;
        self.conn(side).handle_read_resumed(now);
        self.set_delivery(side, Delivery::Whole);
        self.run();
    }

    /// Time elapsed on the virtual clock since the pair was made.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The connection at `side`.
    pub fn conn(&mut self, side: Side) -> &mut Connection {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Events produced so far at `side`.
    pub fn events(&self, side: Side) -> &[Event] {
        match side {
            Side::Client => &self.client_events,
            Side::Server => &self.server_events,
        }
    }

    /// Moves bytes and events until nothing changes at the current instant. Returns whether
    /// anything happened.
    pub fn run(&mut self) -> bool {
        let mut any = false;
        while self.step() {
            any = true;
        }
        any
    }

    /// One round: each side writes what it has, each link delivers one piece, shutdowns become
    /// end of stream for the peer, and events are collected. Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let now = self.now;
        let mut progress = false;
        progress |= Self::drain_output(&mut self.client, &mut self.to_server, &mut self.client_wrote);
        progress |= Self::drain_output(&mut self.server, &mut self.to_client, &mut self.server_wrote);
        progress |= Self::deliver(&mut self.to_server, &mut self.server, now, &mut self.server_errors);
        progress |= Self::deliver(&mut self.to_client, &mut self.client, now, &mut self.client_errors);
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
            progress = true;
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
            progress = true;
        }
        progress
    }

    fn drain_output(conn: &mut Connection, link: &mut Link, log: &mut Vec<u8>) -> bool {
        let mut progress = false;
        if !link.shut {
            if let Some(bytes) = conn.poll_transmit() {
                let n = bytes.len();
                link.in_flight.extend_from_slice(bytes);
                log.extend_from_slice(bytes);
                conn.advance_transmit(n);
                progress = true;
            }
            if conn.should_shutdown() {
                link.shut = true;
                progress = true;
            }
        }
        progress
    }

    fn deliver(
        link: &mut Link,
        conn: &mut Connection,
        now: Instant,
        errors: &mut Vec<ferrule_core::ProtocolError>,
    ) -> bool {
        if let Some(piece) = link.next_piece() {
            if let Err(e) = conn.handle_input(&piece, now) {
                errors.push(e);
            }
            return true;
        }
        let delivers = !matches!(link.delivery, Delivery::Drop | Delivery::Held);
        if link.shut && link.in_flight.is_empty() && !link.eof_delivered && delivers {
            link.eof_delivered = true;
            conn.handle_eof(now);
            return true;
        }
        false
    }

    /// The earliest deadline of either side.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.client.poll_timeout(), self.server.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Jumps the clock to the earliest deadline (never backwards), fires timeouts on both sides
    /// and runs to quiescence. Returns the new time, or `None` when no deadline is armed.
    pub fn advance_to_next_deadline(&mut self) -> Option<Instant> {
        let at = self.next_deadline()?;
        self.now = self.now.max(at);
        let now = self.now;
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        self.run();
        Some(now)
    }

    /// Advances the clock by `d`, firing every deadline on the way in order.
    pub fn advance_by(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.next_deadline() {
            if at > end {
                break;
            }
            self.advance_to_next_deadline();
        }
        self.now = end;
        self.client.handle_timeout(end);
        self.server.handle_timeout(end);
        self.run();
    }

    /// Runs, then keeps jumping to deadlines until both sides have emitted [`Event::Closed`] or
    /// no deadline is left, or `limit` virtual time has passed. Returns whether both are closed.
    pub fn run_until_closed(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        self.run();
        loop {
            if self.closed(Side::Client) && self.closed(Side::Server) {
                return true;
            }
            match self.next_deadline() {
                Some(at) if at <= end => {
                    self.advance_to_next_deadline();
                }
                _ => return false,
            }
        }
    }

    /// The [`Event::Closed`] of `side`, if it was emitted.
    pub fn closed_event(&self, side: Side) -> Option<&ferrule_core::Closed> {
        self.events(side).iter().find_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
    }

    /// Whether `side` emitted [`Event::Closed`].
    pub fn closed(&self, side: Side) -> bool {
        self.closed_event(side).is_some()
    }

    /// Whether both links were shut by their senders.
    pub fn transports_shut(&self) -> (bool, bool) {
        (self.to_server.shut, self.to_client.shut)
    }
}
