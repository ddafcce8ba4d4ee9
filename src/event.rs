//! The event: one watched fd or one timer, with a swappable callback.
//!
//! C: `struct _Event`, `E_READ`, `E_WRITE`, `E_EXCEPTION`, `E_TIMEOUT`, `E_ASYNC`,
//! `build_fd_event()`, `build_event_from_now()`.
//!
//! # Summary
//! An [`Event`] holds the fd it watches (if any), its wait mask, a **plain function pointer**
//! callback that may be replaced at any time (the listener → worker idiom), its closure (an
//! owned, `Send`, downcastable value) and its scheduling state (deadline, recurrence, id).
//!
//! The callback has the C shape `int (*)(Event *e, int eventtype, void *closure, struct
//! timeval *now)`:
//!
//! ```
//! use netlistener::event::{Event, Closure, E_READ};
//! use std::time::Instant;
//! fn worker(e: &mut Event, eventtype: i32, closure: &mut Closure, now: Instant) -> i32 {
//!     let count = closure.downcast_mut::<u64>().expect("closure is a u64");
//!     *count += 1;
//!     E_READ // keep waiting for input; 0 would finish the event and close its fd
//! }
//! fn listener(e: &mut Event, eventtype: i32, closure: &mut Closure, now: Instant) -> i32 {
//!     e.callback = worker; // swap, then tail-call: the C idiom, one to one
//!     worker(e, eventtype, closure, now)
//! }
//! ```
//!
//! # Contract
//! - The returned value is the new wait mask: any of `E_READ | E_WRITE` for the fd,
//!   `E_TIMEOUT` to keep a pure timer alive; `0` finishes the event: it is dropped and its fd
//!   closed (ownership replaces C's explicit `close()`).
//! - While its callback runs, the closure is lent to the callback as the `closure` argument;
//!   `e` itself then holds an empty placeholder. Downcast the argument, not the field.
//! - The deadline (`e.timeout`) is independent of the mask: when it passes, the callback runs
//!   with `E_TIMEOUT`, the deadline having been cleared first. Moving the deadline is O(1)
//!   ([`Event::set_timeout`]); the scheduler re-checks it when its heap entry fires.
//!
//! # Diagnostics
//! Nothing here panics except [`Event::closure_mut`] on a type mismatch, which names itself.

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::sys;

/// The fd is readable (or at end of file / in error: a read will say which).
pub const E_READ: i32 = 0x1;
/// The fd is writable.
pub const E_WRITE: i32 = 0x2;
/// An exceptional condition. Kept for porting: `polling` reports errors as readiness, so the
/// scheduler never delivers this bit on its own; modules may use it in their own masks.
pub const E_EXCEPTION: i32 = 0x4;
/// The event's deadline passed.
pub const E_TIMEOUT: i32 = 0x8;
/// The event was resumed from another thread (floating), or dispatched from another thread.
pub const E_ASYNC: i32 = 0x10;

/// An event's closure: any owned, thread-movable value, downcast by the module that made it.
/// C: `void *closure`.
pub type Closure = dyn Any + Send;

/// An event callback. C: `int (*callback)(Event *e, int eventtype, void *closure, struct
/// timeval *now)`. Returns the new wait mask; `0` finishes the event.
pub type EventCallback =
    fn(e: &mut Event, eventtype: i32, closure: &mut Closure, now: Instant) -> i32;

/// What a floated event's hand-off function receives (see [`crate::scheduler::float_event`]).
pub type FloatHandoff = fn(crate::scheduler::FloatedEvent);

/// The identity of a scheduled event: a slab index and a generation, so a stale id never
/// reaches a newer event in the same slot. Never compare callbacks to identify events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub(crate) u64);

impl EventId {
    /// The id of an event that was never scheduled.
    pub const NONE: EventId = EventId(u64::MAX);

    pub(crate) fn new(index: u32, gen: u32) -> EventId {
        EventId(((gen as u64) << 32) | index as u64)
    }
    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    pub(crate) fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The raw value, for logs and the console.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == EventId::NONE {
            f.write_str("-")
        } else {
            write!(f, "{}.{}", self.index(), self.gen())
        }
    }
}

/// One watched fd or timer. C: `struct _Event`.
pub struct Event {
    /// The function called when the event fires. Swappable at any time, including from inside
    /// the callback itself. C: `e->callback`.
    pub callback: EventCallback,
    /// The closure. Empty while the callback runs (it is passed as an argument instead).
    pub(crate) closure: Box<Closure>,
    /// The watched fd, owned: dropping the event closes it.
    pub(crate) fd: Option<OwnedFd>,
    /// The wait mask: what the event waits for next (last value returned by the callback, or
    /// the initial mask). C: `e->mask`.
    pub mask: i32,
    /// The absolute deadline; `None` for no timeout. C: `e->timeout`.
    pub timeout: Option<Instant>,
    /// For recurring events: re-armed at `now + period` after each firing.
    pub period: Option<Duration>,
    pub(crate) id: EventId,
    pub(crate) float_to: Option<FloatHandoff>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("fd", &self.fd())
            .field("mask", &self.mask)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Event {
    /// A new event watching `fd` for `mask` (`E_READ`, `E_WRITE` or both), owning the fd.
    /// C: `build_fd_event(fd, mask, callback, closure)`.
    ///
    /// The fd is switched to non-blocking mode.
    pub fn build_fd_event(
        fd: OwnedFd,
        mask: i32,
        callback: EventCallback,
        closure: Box<Closure>,
    ) -> Event {
        // A caller handing us a blocking fd would stall the whole loop on the first read.
        let _ = sys::set_nonblocking(fd.as_raw_fd(), true);
        Event {
            callback,
            closure,
            fd: Some(fd),
            mask,
            timeout: None,
            period: None,
            id: EventId::NONE,
            float_to: None,
        }
    }

    /// A pure timer firing `E_TIMEOUT` at `now + delay`. C: `build_event_from_now(tv, ...)`.
    pub fn build_event_from_now(
        now: Instant,
        delay: Duration,
        callback: EventCallback,
        closure: Box<Closure>,
    ) -> Event {
        Event {
            callback,
            closure,
            fd: None,
            mask: E_TIMEOUT,
            timeout: Some(now + delay),
            period: None,
            id: EventId::NONE,
            float_to: None,
        }
    }

    /// An event with neither fd nor deadline, run once when dispatched from another thread
    /// (see [`crate::scheduler::schedule_event_and_dispatch`]).
    pub fn build_async_event(callback: EventCallback, closure: Box<Closure>) -> Event {
        Event {
            callback,
            closure,
            fd: None,
            mask: 0,
            timeout: None,
            period: None,
            id: EventId::NONE,
            float_to: None,
        }
    }

    /// The fd, or `-1` when the event has none (as in C).
    pub fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// The id assigned when the event was scheduled ([`EventId::NONE`] before).
    pub fn id(&self) -> EventId {
        self.id
    }

    /// Sets the deadline to `now + d` (or clears it with `None`). O(1): no heap work happens
    /// here; the scheduler re-checks the deadline when the earlier heap entry fires.
    pub fn set_timeout(&mut self, now: Instant, d: Option<Duration>) {
        self.timeout = d.map(|d| now + d);
    }

    /// The closure, downcast. Only meaningful outside the event's own callback (inside it, use
    /// the `closure` argument).
    ///
    /// # Panics
    /// If the closure is not a `T`: `Event::closure_mut: closure is not a <T>`.
    pub fn closure_mut<T: Any>(&mut self) -> &mut T {
        match self.closure.downcast_mut::<T>() {
            Some(t) => t,
            None => panic!(
                "Event::closure_mut: closure is not a {}",
                std::any::type_name::<T>()
            ),
        }
    }

    /// Replaces the closure, returning the old one.
    pub fn replace_closure(&mut self, c: Box<Closure>) -> Box<Closure> {
        std::mem::replace(&mut self.closure, c)
    }

    /// Takes the fd out of the event (the event then watches nothing). Used when a session is
    /// handed to another owner, which may schedule it in a new event at once.
    ///
    /// From the event's callback or a [`crate::scheduler::with_event`] closure, the fd leaves
    /// the poller here; on a pool thread, when the floated event is resumed. Either way the
    /// scheduler then forgets it (`get_event_by_fd` no longer finds this event), so a later
    /// event reusing the fd number is never disturbed.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        let fd = self.fd.take()?;
        crate::scheduler::fd_taken(self.id, fd.as_raw_fd());
        Some(fd)
    }

    /// Non-blocking read into `buf`. C: `read()` plus the caller's `EAGAIN` test.
    pub fn read(&self, buf: &mut [u8]) -> Io {
        Io::from_result(sys::read(self.fd(), buf), E_READ)
    }

    /// Non-blocking write of `buf` (possibly partial).
    pub fn write(&self, buf: &[u8]) -> Io {
        Io::from_result(sys::write(self.fd(), buf), E_WRITE)
    }
}

/// The outcome of a non-blocking read or write: how much moved, or what to wait for next.
#[derive(Debug)]
pub enum Io {
    /// `n` bytes moved (`n > 0`).
    Done(usize),
    /// Nothing moved now; return this mask (`E_READ` or `E_WRITE`) and try again when ready.
    Wait(i32),
    /// End of file on read (the peer closed), or a zero-length write.
    Closed,
    /// A hard error: the connection is unusable.
    Err(io::Error),
}

impl Io {
    fn from_result(r: io::Result<usize>, wait: i32) -> Io {
        match r {
            Ok(0) => Io::Closed,
            Ok(n) => Io::Done(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Io::Wait(wait),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::Wait(wait),
            Err(e) => Io::Err(e),
        }
    }
}

/// An output queue for one session: bytes not yet accepted by the kernel. Empty (and holding
/// no heap memory) in the common case where a write completes at once.
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    start: usize,
}

impl OutBuf {
    /// An empty queue (no allocation).
    pub const fn new() -> OutBuf {
        OutBuf {
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Bytes still queued.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Writes `data` after anything queued; what the kernel does not take is queued.
    /// Returns `Err` on a hard error (the connection is gone).
    pub fn send(&mut self, e: &Event, data: &[u8]) -> io::Result<()> {
        if self.pending() > 0 {
            self.buf.extend_from_slice(data);
            return self.flush(e).map(|_| ());
        }
        let mut off = 0;
        while off < data.len() {
            match e.write(&data[off..]) {
                Io::Done(n) => off += n,
                Io::Wait(_) => break,
                Io::Closed => return Err(io::ErrorKind::WriteZero.into()),
                Io::Err(err) => return Err(err),
            }
        }
        if off < data.len() {
            self.buf.extend_from_slice(&data[off..]);
        }
        Ok(())
    }

    /// Writes as much of the queue as the kernel takes. `Ok(true)` when the queue is empty.
    /// The buffer's memory is released once it drains.
    pub fn flush(&mut self, e: &Event) -> io::Result<bool> {
        while self.start < self.buf.len() {
            match e.write(&self.buf[self.start..]) {
                Io::Done(n) => self.start += n,
                Io::Wait(_) => return Ok(false),
                Io::Closed => return Err(io::ErrorKind::WriteZero.into()),
                Io::Err(err) => return Err(err),
            }
        }
        self.buf = Vec::new();
        self.start = 0;
        Ok(true)
    }
}

/// Why a line was refused by [`LineReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Splits input into CRLF-terminated lines with a maximum length, keeping only the partial
/// tail between reads. It never grows past `max` bytes: an overlong line is reported once as
/// [`LineTooLong`] and skipped up to its end.
///
/// ```
/// use netlistener::event::LineReader;
/// let mut r = LineReader::new(16);
/// let mut lines = Vec::new();
/// r.feed(b"HELO a\r\nNO", |l| lines.push(l.map(|b| b.to_vec())));
/// r.feed(b"OP\r\n", |l| lines.push(l.map(|b| b.to_vec())));
/// assert_eq!(lines, vec![Ok(b"HELO a".to_vec()), Ok(b"NOOP".to_vec())]);
/// ```
#[derive(Debug)]
pub struct LineReader {
    pending: Vec<u8>,
    max: usize,
    skipping: bool,
}

impl LineReader {
    /// A reader for lines of at most `max` bytes including the CRLF.
    pub fn new(max: usize) -> LineReader {
        LineReader {
            pending: Vec::new(),
            max: max.max(2),
            skipping: false,
        }
    }

    /// Bytes held from an incomplete line.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds `data`, calling `on_line` for each complete line (without its CRLF; a bare LF
    /// also ends a line and is passed with any CR stripped) or `Err(LineTooLong)` once per
    /// overlong line.
    pub fn feed(&mut self, mut data: &[u8], mut on_line: impl FnMut(Result<&[u8], LineTooLong>)) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            if self.skipping {
                match nl {
                    Some(i) => {
                        self.skipping = false;
                        data = &data[i + 1..];
                        continue;
                    }
                    None => return,
                }
            }
            match nl {
                Some(i) if self.pending.len() + i < self.max => {
                    if self.pending.is_empty() {
                        on_line(Ok(strip_cr(&data[..i])));
                    } else {
                        self.pending.extend_from_slice(&data[..i]);
                        let line = std::mem::take(&mut self.pending);
                        on_line(Ok(strip_cr(&line)));
                    }
                    data = &data[i + 1..];
                }
                Some(i) => {
                    self.pending = Vec::new();
                    on_line(Err(LineTooLong));
                    data = &data[i + 1..];
                }
                None if self.pending.len() + data.len() < self.max => {
                    self.pending.extend_from_slice(data);
                    return;
                }
                None => {
                    self.pending = Vec::new();
                    self.skipping = true;
                    on_line(Err(LineTooLong));
                    return;
                }
            }
        }
    }
}

fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &mut LineReader, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, LineTooLong>> {
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, |l| out.push(l.map(|b| b.to_vec())));
        }
        out
    }

    #[test]
    fn lines_split_across_reads() {
        let mut r = LineReader::new(100);
        let got = collect(&mut r, &[b"ab", b"c\r", b"\nde\r\nf", b"\r\n"]);
        assert_eq!(
            got,
            vec![Ok(b"abc".to_vec()), Ok(b"de".to_vec()), Ok(b"f".to_vec())]
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn overlong_line_reported_once_and_skipped() {
        let mut r = LineReader::new(8);
        let got = collect(&mut r, &[b"0123456789", b"abcdef", b"\r\nok\r\n"]);
        assert_eq!(got, vec![Err(LineTooLong), Ok(b"ok".to_vec())]);
        assert!(r.pending() < 8);
        let got = collect(&mut r, &[b"123456789\r\nx\r\n"]);
        assert_eq!(got, vec![Err(LineTooLong), Ok(b"x".to_vec())]);
    }

    #[test]
    fn line_at_exact_limit() {
        let mut r = LineReader::new(6);
        let got = collect(&mut r, &[b"abcd\r\n", b"abcde\r\n"]);
        assert_eq!(got, vec![Ok(b"abcd".to_vec()), Err(LineTooLong)]);
    }

    #[test]
    fn event_id_roundtrip() {
        let id = EventId::new(7, 3);
        assert_eq!((id.index(), id.gen()), (7, 3));
        assert_eq!(id.to_string(), "7.3");
        assert_eq!(EventId::NONE.to_string(), "-");
    }
}
