//! The read phase both ends of the handshake share: a bounded head buffer, the opening-handshake
//! deadline, and the bytes that followed the head.

use std::time::Instant;

use bytes::Bytes;

use super::Limits;
use super::error::HandshakeError;
use super::http::{HeadReader, header_slots};

/// Header slots kept on the stack while a head is parsed: enough for a browser's upgrade
/// request; a head with more header lines takes its slots from the heap.
const STACK_SLOTS: usize = 32;

/// Where a handshake's read phase is.
#[derive(Debug)]
enum State {
    /// Collecting the head.
    Reading(HeadReader),
    /// The head was parsed; the bytes after it (and any fed since).
    Complete(Vec<u8>),
    /// Failed for good; the error is returned again on every call.
    Failed(HandshakeError),
}

/// Reads one HTTP head, bounded in bytes, header count and time.
#[derive(Debug)]
pub(crate) struct HeadPhase {
    deadline: Option<Instant>,
    max_headers: usize,
    state: State,
}

/// What a head parser reports: `Ok(None)` while the head is incomplete, or the head's length
/// and the parsed value.
pub(crate) type ParseOutcome<T> = Result<Option<(usize, T)>, HandshakeError>;

impl HeadPhase {
    /// Starts reading; the deadline is `now + limits.timeout`.
    pub(crate) fn new(limits: &Limits, now: Instant) -> Self {
        Self {
            deadline: limits.timeout.and_then(|t| now.checked_add(t)),
            max_headers: limits.max_headers,
            state: State::Reading(HeadReader::new(limits.max_header_bytes)),
        }
    }

    /// Buffers `data` and, when a head may be complete, runs `parse` over the buffered bytes with
    /// header slots to fill. An incomplete head at the byte cap fails with
    /// [`HandshakeError::HeadersTooLarge`]. Errors are sticky; after completion, input is
    /// appended to the leftover and `Ok(None)` is returned.
    pub(crate) fn feed<T>(
        &mut self,
        data: &[u8],
        parse: impl for<'b> FnOnce(&'b [u8], &mut [httparse::Header<'b>]) -> ParseOutcome<T>,
    ) -> Result<Option<T>, HandshakeError> {
        let reader = match &mut self.state {
            State::Reading(reader) => reader,
            State::Complete(leftover) => {
                leftover.extend_from_slice(data);
                return Ok(None);
            }
            State::Failed(error) => return Err(error.clone()),
        };
        let taken = reader.push(data);
        if !reader.should_parse() {
            return Ok(None);
        }
        // Slots on the stack for a usual head; a larger one (up to `max_headers`) gets them from
        // the heap.
        let wanted = header_slots(self.max_headers, reader.bytes());
        let mut stack = [httparse::EMPTY_HEADER; STACK_SLOTS];
        let mut heap = Vec::new();
        let slots = if wanted <= STACK_SLOTS {
            &mut stack[..wanted]
        } else {
            heap.resize(wanted, httparse::EMPTY_HEADER);
            &mut heap[..]
        };
        let outcome = match parse(reader.bytes(), slots) {
            Ok(Some((head_len, value))) => {
                let rest = data.get(taken..).unwrap_or_default();
                Ok((value, reader.leftover(head_len, rest)))
            }
            Ok(None) if reader.is_full() => Err(HandshakeError::HeadersTooLarge),
            Ok(None) => {
                reader.parsed_partial();
                return Ok(None);
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok((value, leftover)) => {
                self.state = State::Complete(leftover);
                Ok(Some(value))
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Fails the phase for good (a complete head that did not validate); returns the error.
    pub(crate) fn fail(&mut self, error: HandshakeError) -> HandshakeError {
        self.state = State::Failed(error.clone());
        error
    }

    /// The deadline, whatever the state.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The error the phase failed with, if it did.
    pub(crate) fn failure(&self) -> Option<&HandshakeError> {
        match &self.state {
            State::Failed(error) => Some(error),
            State::Reading(_) | State::Complete(_) => None,
        }
    }

    /// Takes the bytes that followed a complete head; empty unless the head completed.
    pub(crate) fn take_leftover(&mut self) -> Vec<u8> {
        match &mut self.state {
            State::Complete(leftover) => std::mem::take(leftover),
            State::Reading(_) | State::Failed(_) => Vec::new(),
        }
    }

    /// The deadline, while the head is still being read.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Reading(_) => self.deadline,
            State::Complete(_) | State::Failed(_) => None,
        }
    }

    /// Fails with [`HandshakeError::Timeout`] once the deadline has passed with the head
    /// incomplete; early calls and calls after completion or another error do nothing, and once
    /// timed out every later call returns the timeout again.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        match &self.state {
            State::Reading(_) if self.deadline.is_some_and(|deadline| now >= deadline) => {
                Err(self.fail(HandshakeError::Timeout))
            }
            State::Failed(HandshakeError::Timeout) => Err(HandshakeError::Timeout),
            _ => Ok(()),
        }
    }

    /// Bytes of an incomplete head buffered; zero once complete or failed.
    pub(crate) fn buffered_len(&self) -> usize {
        match &self.state {
            State::Reading(reader) => reader.len(),
            State::Complete(_) | State::Failed(_) => 0,
        }
    }

    /// The bytes that followed the head; empty unless the head completed.
    pub(crate) fn into_leftover(self) -> Bytes {
        match self.state {
            State::Complete(leftover) => Bytes::from(leftover),
            State::Reading(_) | State::Failed(_) => Bytes::new(),
        }
    }
}
