//! The `ESMTP_Listener` module: the sans-I/O engine wired to the netlistener API.
//!
//! C: the `esmtp` module's `conf_setup`, `esmtp_listener`, the session worker and its spool
//! thread hand-off (`float_event` + `ec_async_job`).
//!
//! # Summary
//! [`conf_setup`] registers the `ESMTP` listener type, its options (see the `options`
//! module) and its reject lines. Each session runs on the scheduler thread:
//!
//! - one **read buffer shared** by every session of the thread (64 KiB); a session keeps only
//!   the unconsumed tail of its input (allocated only when non-empty: a partial line of at
//!   most 511 octets, or, while its replies back up, the rest of one read), an [`OutBuf`] for
//!   replies the kernel did not take, and the engine's [`Session`];
//! - each event reads until `EWOULDBLOCK` (at most 4 reads, for fairness), feeds the engine
//!   and writes every reply of the batch with **one** write (PIPELINING);
//! - replies are bounded: the engine stops at [`OUT_HIGH_WATER`] octets of replies
//!   ([`Next::Flush`]), the rest of the input waits as the tail, and while replies are
//!   unsent the session waits for `E_WRITE` and reads nothing, so a client that does not
//!   read cannot make the server buffer more than one read and one batch of replies;
//! - `Delivery = discard` answers at once; `Delivery = maildir` **floats** the session to
//!   its `Pool_Name` pool (default `IO`) to append the body in chunks of [`SPILL`] octets
//!   (the engine is fed at most [`BodyBuf::room`] octets at a time, so no more is held) and,
//!   at the end of the message, to write the rest and queue it for the Maildir's **group
//!   commit** (see the `delivery` module): the pool thread is then free, and the committing
//!   thread resumes the session with `E_ASYNC` once the message is durable; only then does
//!   it answer `250` (or `451 4.3.0`);
//! - a `tmp/` file of a message refused, abandoned or cut off is removed by a job on the
//!   same pool, not on the scheduler thread.
//!
//! # Contract
//! - [`conf_setup`] runs on the scheduler thread, once per thread, before the configuration is
//!   loaded (the option slots are kept per thread, so several schedulers may run in a process).
//! - A floated session is touched by its pool job, then by the group commit, only; the
//!   scheduler never sees it meanwhile.
//! - A session whose generation went stale answers its next MAIL or RSET with `421 4.3.2
//!   <Reconfig_Message>` (the value of the generation now in force) and closes.
//!
//! # Diagnostics
//! Nothing panics on input. A failed write or read ends the session silently (the peer is
//! gone); Maildir failures are logged by the `delivery` module and answered `451 4.3.0`; a
//! pool that refuses a delivery job is logged and the message answered `451 4.3.0`.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::event::{Closure, Event, Io, OutBuf, E_ASYNC, E_READ, E_TIMEOUT, E_WRITE};
use crate::netlistener::{
    ec_config_fetch_globalconf, netlistener_register3, netlistener_set_reject_lines, touch,
    AcceptConstruct, NetError,
};
use crate::scheduler::{float_event, get_pool, FloatedEvent};
use crate::threadpool::{Completion, ThreadPool};

use super::delivery::{self, BodyBuf, Delivery, Maildir, MaildirWrite, Staged, FAILED, SPILL};
use super::options::{SessionConf, Slots};
use super::protocol::{Next, Session, OUT_HIGH_WATER};
use super::received::{received_header, with_keyword, ReceivedInfo};

/// Size of the read buffer shared by the sessions of one scheduler thread.
const INPUT: usize = 64 * 1024;
/// Reads per event before yielding to other sessions.
const READS_PER_EVENT: usize = 4;

thread_local! {
    static SLOTS: Cell<Option<Slots>> = const { Cell::new(None) };
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: vec![0; INPUT],
        reply: Vec::with_capacity(4096),
    });
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// Whether sessions record [`peak_session_buffers`]: off unless a test or benchmark turns it
/// on, so the read path costs one relaxed load, not the sum and the thread-local store.
static MEASURE: AtomicBool = AtomicBool::new(false);

struct Scratch {
    input: Vec<u8>,
    reply: Vec<u8>,
}

/// Registers `ESMTP_Listener`, its options and its reject lines.
///
/// C: the module's `conf_setup`.
///
/// Errors: off the scheduler thread, after the configuration was loaded, or when called twice
/// on one thread (the type is already registered).
pub fn conf_setup() -> Result<(), NetError> {
    let def = netlistener_register3("ESMTP", esmtp_listener, None, "esmtp")?;
    netlistener_set_reject_lines(
        &def,
        "554 5.7.1 Access denied",
        "421 4.4.5 Too many connections, try again later",
    );
    let slots = Slots::register(&def)?;
    SLOTS.with(|s| s.set(Some(slots)));
    Ok(())
}

/// Makes the sessions of every scheduler thread record [`peak_session_buffers`] from now on
/// (for tests and benchmarks; off by default, and it cannot be turned off again).
pub fn measure_session_buffers() {
    MEASURE.store(true, Ordering::Relaxed);
}

/// The most octets one session of this scheduler thread held in unsent replies, unconsumed
/// input and body buffer at the end of an event, since [`measure_session_buffers`] (0
/// before). For tests and benchmarks: it stays near [`OUT_HIGH_WATER`] plus one read
/// whatever a client sends.
pub fn peak_session_buffers() -> usize {
    PEAK.with(|p| p.get())
}

fn note_buffers(s: &SmtpSess) {
    let held = s.out.pending() + s.tail.capacity() + s.body.held.capacity();
    PEAK.with(|p| p.set(p.get().max(held)));
}

/// The Maildir side of a session (only with `Delivery = maildir`).
struct Disk {
    md: Arc<Maildir>,
    host: Arc<str>,
    /// The `Pool_Name` pool, resolved at session start (`None`: no pool is left).
    pool: Option<Arc<ThreadPool>>,
    write: MaildirWrite,
    /// The current message's `Received:` header, set at its first float.
    header: Option<String>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("maildir", &self.md.path())
            .field("pool", &self.pool.as_ref().map(|p| p.name()))
            .field("write", &self.write)
            .finish()
    }
}

impl Drop for Disk {
    /// A session that ends with a file in `tmp/` (client gone, timeout) hands its removal to
    /// the pool.
    fn drop(&mut self) {
        self.write.discard(self.pool.as_deref());
    }
}

/// What the pool job of a floated session does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Spill,
    Finish,
}

/// Per-session state. C: the `esmtp` closure in `accept_construct_closure`.
#[derive(Debug)]
struct SmtpSess {
    session: Session,
    /// Unconsumed input: a partial line, or what waits while replies are flushed or a
    /// Maildir delivery runs (at most one read).
    tail: Vec<u8>,
    out: OutBuf,
    body: BodyBuf,
    disk: Option<Box<Disk>>,
    work: Option<Work>,
    /// The outcome of a finished Maildir delivery, answered at resume.
    done: Option<Result<String, String>>,
    closing: bool,
    stale_noted: bool,
}

/// Why the read loop stopped.
enum Stop {
    Wait,
    Eof,
    Close,
    /// Replies reached the high-water mark: write them before feeding the rest.
    Flush,
    Float(Work),
}

fn esmtp_listener(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let Some(ac) = closure.downcast_mut::<AcceptConstruct>() else {
        return 0;
    };
    let Some(slots) = SLOTS.with(|s| s.get()) else {
        log::error!("ESMTP_Listener: session on a thread where conf_setup did not run");
        return 0;
    };
    let conf = SessionConf::fetch(ac, &slots);
    let disk = match conf.delivery {
        Delivery::Discard => None,
        Delivery::Maildir(md) => Some(Box::new(Disk {
            md,
            host: conf.received_host,
            pool: session_pool(ac),
            write: MaildirWrite::default(),
            header: None,
        })),
    };
    let mut s = SmtpSess {
        session: Session::new(conf.params, ac.conn_id),
        tail: Vec::new(),
        out: OutBuf::new(),
        body: BodyBuf {
            keep: disk.is_some(),
            ..BodyBuf::default()
        },
        disk,
        work: None,
        done: None,
        closing: false,
        stale_noted: false,
    };
    let mut banner = Vec::with_capacity(80);
    s.session.greeting(&mut banner);
    if s.out.send(e, &banner).is_err() {
        return 0;
    }
    ac.accept_construct_closure = Some(Box::new(s));
    e.callback = esmtp_worker;
    esmtp_worker(e, et, closure, now)
}

/// The session's `Pool_Name` pool (Listen + Peer + Pathway fallback), `IO` when the name is
/// not a pool.
fn session_pool(ac: &AcceptConstruct) -> Option<Arc<ThreadPool>> {
    get_pool(ac.pool_name()).or_else(|| get_pool("IO"))
}

fn esmtp_worker(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let Some(ac) = closure.downcast_mut::<AcceptConstruct>() else {
        return 0;
    };
    // Lend the session state out of `ac` so both can be borrowed (moving a Box: no copy).
    let Some(mut state) = ac.accept_construct_closure.take() else {
        return 0;
    };
    let mask = match state.downcast_mut::<SmtpSess>() {
        Some(s) => step(e, et, ac, s, now),
        None => 0,
    };
    ac.accept_construct_closure = Some(state);
    mask
}

fn step(e: &mut Event, et: i32, ac: &AcceptConstruct, s: &mut SmtpSess, now: Instant) -> i32 {
    if et & E_TIMEOUT != 0 {
        if !s.closing {
            let mut v = Vec::new();
            s.session.timeout(&mut v, &mut s.body);
            let _ = s.out.send(e, &v);
        }
        ac.note_timeout();
        return 0;
    }
    if et & E_ASYNC != 0 {
        touch(e, ac, now);
    }
    if s.closing {
        return finish_close(e, s);
    }
    match s.out.flush(e) {
        Err(_) => return 0,
        Ok(false) if s.done.is_none() => return E_WRITE,
        _ => {}
    }
    SCRATCH.with(|sc| match sc.try_borrow_mut() {
        Ok(mut sc) => {
            let Scratch { input, reply } = &mut *sc;
            let mask = pump(e, ac, s, now, input, reply);
            if MEASURE.load(Ordering::Relaxed) {
                note_buffers(s);
            }
            mask
        }
        Err(_) => E_READ, // unreachable: callbacks do not nest
    })
}

/// Feeds what is buffered, then reads and feeds until the socket is drained, the engine
/// stops, or the per-event cap is reached; writes the batch's replies once.
fn pump(
    e: &mut Event,
    ac: &AcceptConstruct,
    s: &mut SmtpSess,
    now: Instant,
    input: &mut [u8],
    reply: &mut Vec<u8>,
) -> i32 {
    reply.clear();
    if let Some(result) = s.done.take() {
        delivery::count(Some(result.is_ok()), s.body.total);
        s.session.delivery_done(result, reply);
        end_of_message(s);
    }
    let mut len = s.tail.len();
    input[..len].copy_from_slice(&s.tail);
    s.tail = Vec::new();
    if !s.stale_noted && ac.config_is_stale() {
        s.stale_noted = true;
        s.session
            .stale_config(current_reconfig_message(ac).as_deref());
    }
    let stop = match feed_all(ac, s, input, &mut len, reply) {
        Some(stop) => stop,
        None => read_and_feed(e, ac, s, now, input, &mut len, reply),
    };
    if len > 0 {
        s.tail = input[..len].to_vec();
    }
    if !reply.is_empty() && s.out.send(e, reply).is_err() {
        return 0;
    }
    match stop {
        Stop::Eof => 0,
        Stop::Close => {
            s.closing = true;
            finish_close(e, s)
        }
        Stop::Float(work) => {
            s.work = Some(work);
            float_event(e, float_handoff);
            E_READ
        }
        // Writable at once if the kernel took everything: the tail is fed then.
        Stop::Flush => E_WRITE,
        Stop::Wait if s.out.pending() > 0 => E_WRITE,
        Stop::Wait => E_READ,
    }
}

/// `Reconfig_Message` as the generation now in force resolves it for this session.
fn current_reconfig_message(ac: &AcceptConstruct) -> Option<String> {
    let slots = SLOTS.with(|s| s.get())?;
    let gen = ec_config_fetch_globalconf().ok()?;
    let def = &ac.inst.def;
    let chain = gen.chain(&def.scope, Some(&ac.inst.address), Some(&ac.peer()));
    let text = gen.fetch_in(&chain, slots.reconfig_message).value.as_str();
    Some(text.to_string())
}

/// The read loop of [`pump`]: appends reads to `input[..len]` and feeds them, until the
/// socket would block, the engine stops, or the fairness and reply caps are reached.
fn read_and_feed(
    e: &mut Event,
    ac: &AcceptConstruct,
    s: &mut SmtpSess,
    now: Instant,
    input: &mut [u8],
    len: &mut usize,
    reply: &mut Vec<u8>,
) -> Stop {
    for _ in 0..READS_PER_EVENT {
        if *len >= input.len() {
            // The engine leaves under 512 octets unconsumed, so this cannot happen; were it
            // to, closing beats waiting for readiness that would fire again at once (a spin).
            log::warn!(
                "ESMTP_Listener: session {}: input not consumed; closed",
                ac.conn_id
            );
            return Stop::Eof;
        }
        if reply.len() >= OUT_HIGH_WATER {
            return Stop::Flush;
        }
        // With a Maildir, read no more than the body buffer has room for.
        let end = len.saturating_add(s.body.room()).min(input.len());
        let want = end - *len;
        let stop = match e.read(&mut input[*len..end]) {
            Io::Done(n) => {
                *len += n;
                touch(e, ac, now);
                // A short read means the socket is drained: back to the poller instead of
                // a read that would only return EAGAIN.
                feed_all(ac, s, input, len, reply).or((n < want).then_some(Stop::Wait))
            }
            Io::Wait(_) => Some(Stop::Wait),
            Io::Closed | Io::Err(_) => Some(Stop::Eof),
        };
        if let Some(stop) = stop {
            return stop;
        }
    }
    Stop::Wait
}

/// Feeds `input[..len]` to the engine, in slices of at most [`BodyBuf::room`] octets, until
/// it needs more input, must deliver to disk, has replies to flush, or closes; leaves the
/// unconsumed rest at the front of `input`. `None`: read more.
fn feed_all(
    ac: &AcceptConstruct,
    s: &mut SmtpSess,
    input: &mut [u8],
    len: &mut usize,
    reply: &mut Vec<u8>,
) -> Option<Stop> {
    let mut start = 0usize;
    let stop = loop {
        let end = start.saturating_add(s.body.room()).min(*len);
        let f = s.session.feed(&input[start..end], reply, &mut s.body);
        start += f.consumed;
        if s.body.aborted {
            s.body.aborted = false;
            if let Some(d) = s.disk.as_deref_mut() {
                // A refused body that already spilled: its file goes, off this thread.
                d.write.discard(d.pool.as_deref());
                d.header = None;
            }
        }
        match f.next {
            Next::Read if s.body.wants_spill() => break Some(Stop::Float(Work::Spill)),
            // A slice is at least one command line, so the engine always consumed some.
            Next::Read if end < *len && f.consumed > 0 => continue,
            Next::Read => break None,
            Next::Flush => break Some(Stop::Flush),
            Next::Close => break Some(Stop::Close),
            Next::Deliver => match s.disk.as_deref_mut() {
                None => {
                    delivery::count(None, s.body.total);
                    s.session.delivery_done(Ok(discard_id(ac)), reply);
                    end_of_message(s);
                }
                Some(d) => {
                    prepare(d, ac, &s.session);
                    break Some(Stop::Float(Work::Finish));
                }
            },
        }
    };
    input.copy_within(start..*len, 0);
    *len -= start;
    if matches!(stop, Some(Stop::Float(Work::Spill))) {
        if let Some(d) = s.disk.as_deref_mut() {
            prepare(d, ac, &s.session);
        }
    }
    stop
}

fn discard_id(ac: &AcceptConstruct) -> String {
    thread_local!(static N: Cell<u64> = const { Cell::new(0) });
    let n = N.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    format!("{:X}.{n:X}", ac.conn_id)
}

/// Builds the message's `Received:` header (at its first float; the file is named on the
/// pool thread when it is created).
fn prepare(d: &mut Disk, ac: &AcceptConstruct, session: &Session) {
    if d.header.is_some() {
        return;
    }
    let (helo, _, rcpts) = session.envelope();
    let id = session.session_id().to_string();
    let peer = ac
        .remote_addr
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let info = ReceivedInfo {
        helo,
        peer_ip: peer,
        by_host: &d.host,
        protocol: with_keyword(session.is_esmtp(), false, false, session.is_smtputf8()),
        id: &id,
        for_rcpt: (rcpts.len() == 1).then(|| rcpts[0].as_str()),
        time: SystemTime::now(),
    };
    d.header = Some(received_header(&info));
}

/// Forgets the delivered (or failed) message and releases its buffer.
fn end_of_message(s: &mut SmtpSess) {
    s.body.held = Vec::new();
    s.body.open = false;
    s.body.keep = s.disk.is_some();
    if let Some(d) = s.disk.as_deref_mut() {
        d.write.discard(d.pool.as_deref());
        d.header = None;
    }
}

/// Flushes the last replies, then ends the session (shutting the write side first, and
/// draining what the client already sent, so a pipelining client reads the reply instead of
/// a reset).
fn finish_close(e: &mut Event, s: &mut SmtpSess) -> i32 {
    match s.out.flush(e) {
        Ok(true) => {
            let mut sink = [0u8; 1024];
            let mut peer_gone = false;
            for _ in 0..4 {
                match e.read(&mut sink) {
                    Io::Done(_) => {}
                    Io::Wait(_) => break,
                    Io::Closed | Io::Err(_) => {
                        peer_gone = true; // nothing left to half-close for
                        break;
                    }
                }
            }
            if !peer_gone {
                crate::sys::shutdown_write(e.fd());
            }
            0
        }
        Ok(false) => E_WRITE,
        Err(_) => 0,
    }
}

/// The session state inside a floated session's `AcceptConstruct`.
fn session_of(fe: &mut FloatedEvent) -> Option<&mut SmtpSess> {
    fe.closure_mut::<AcceptConstruct>()
        .closure_mut::<SmtpSess>()
}

/// Runs on the scheduler thread once the session left the poller: hands it to its pool.
fn float_handoff(mut fe: FloatedEvent) {
    let pool = session_of(&mut fe).and_then(|s| s.disk.as_ref().and_then(|d| d.pool.clone()));
    let refused = match pool {
        Some(pool) => pool.submit_with(fe, disk_work).err(),
        None => Some(fe),
    };
    if let Some(fe) = refused {
        refuse(fe);
    }
}

/// The pool refused the job (it is shut down): the message is answered `451 4.3.0` rather
/// than the session closed without a word.
fn refuse(mut fe: FloatedEvent) {
    log::warn!("ESMTP_Listener: no pool took a delivery job; answering 451");
    if let Some(s) = session_of(&mut fe) {
        match s.work.take() {
            Some(Work::Finish) => s.done = Some(Err(FAILED.to_string())),
            _ => {
                // The spill did not happen: stop holding, the message ends in 451.
                if let Some(d) = s.disk.as_deref_mut() {
                    d.write.failed = true;
                }
                s.body.spilled();
                s.body.keep = false;
            }
        }
    }
    fe.resume(E_READ);
}

/// What a pool job does after its disk work.
enum After {
    Resume,
    Commit(Arc<Maildir>, Staged),
}

/// The blocking part, on a pool thread, with the session floated (no other thread sees it).
/// A finished message goes to its Maildir's group commit, which resumes the session.
fn disk_work(mut fe: FloatedEvent) -> Completion {
    let after = session_of(&mut fe).map_or(After::Resume, work);
    match after {
        After::Resume => Completion::Resume(fe, E_READ),
        After::Commit(md, staged) => {
            delivery::commit(&md, staged, Box::new(move |r| resume_with(fe, r)));
            Completion::Nothing
        }
    }
}

fn work(s: &mut SmtpSess) -> After {
    let (Some(work), Some(d)) = (s.work.take(), s.disk.as_deref_mut()) else {
        return After::Resume;
    };
    let header = d.header.as_deref().unwrap_or("");
    match work {
        Work::Spill => {
            d.write.spill(&d.md, &d.host, header, &s.body.held);
            s.body.spilled();
            // After a failure keep counting, stop holding: the message ends in 451 anyway.
            s.body.keep = !d.write.failed;
            After::Resume
        }
        Work::Finish => {
            let staged = d.write.stage(&d.md, &d.host, header, &s.body.held);
            s.body.held = Vec::new();
            match staged {
                Ok(staged) => After::Commit(d.md.clone(), staged),
                Err(why) => {
                    s.done = Some(Err(why));
                    After::Resume
                }
            }
        }
    }
}

/// Called by the group commit (any thread): records the outcome and resumes the session.
fn resume_with(mut fe: FloatedEvent, result: Result<String, String>) {
    if let Some(s) = session_of(&mut fe) {
        s.done = Some(result);
    }
    fe.resume(E_READ);
}

const _: () = assert!(SPILL < OUT_HIGH_WATER);
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_state_is_small() {
        // The per-session heap cost besides the layer's: this struct (boxed) and the engine's
        // transaction while one is open. Idle sessions hold no buffers.
        let n = std::mem::size_of::<SmtpSess>();
        assert!(n <= 256, "SmtpSess is {n} bytes");
    }
}
