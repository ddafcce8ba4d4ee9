//! The accept path: accepting in the scheduler or on accept threads, the layer's checks, the
//! hand-off queue, and the back-off on accept errors.
//!
//! C: the netlistener accept loop and accept threads.
//!
//! # Summary
//! With `Concurrency = 0` the scheduler accepts on readiness, at most `Events_Per_Iter` per
//! wake-up. With `Concurrency = N`, N accept threads accept, run the layer's checks (`Deny`,
//! the session caps) and the module's acceptor, and queue survivors to the scheduler (bounded
//! by `Accept_Queue_Backlog`: a full queue makes them wait, leaving connections in the kernel
//! backlog); the scheduler starts at most `Events_Per_Iter` of them per iteration. The
//! socket is non-blocking: a thread calls `accept(2)` first and waits in `poll(2)` (on the
//! socket and a wake pipe) only after `EAGAIN`, one thread at a time, so a backlog costs one
//! syscall per connection and a lone connection wakes one thread, not N. A connection
//! becomes a session — counted in `accepted`, `active`, `peak` — only once the acceptor
//! passed it.
//!
//! # Contract
//! - An admitted connection is never lost. When accepting stops (a reload that changes
//!   `Concurrency`, `Events_Per_Iter` or `Accept_Queue_Backlog`; a removed Listen; shutdown),
//!   an accept thread holding one hands it over past the queue's bound; a drain of the queue
//!   is pending whenever it is not empty.
//! - Stopping never blocks the scheduler: accept threads are signalled and detached, never
//!   joined. They own only `Arc`s (the layer's state, the Listen, the queue, the wake pipe)
//!   and a `Weak` of the listening socket, upgraded only for one `accept` or one `poll` —
//!   so a closed Listen's socket really closes even while a thread sits in a slow acceptor,
//!   and a thread in `poll` lets go as soon as the stop reaches it.
//!
//! # Diagnostics
//! Accept errors never stop a listener. Errors of one connection (`ECONNABORTED`, `EINTR`,
//! `EPERM`, and the pending network errors Linux reports through `accept(2)`: `ENETDOWN`,
//! `EPROTO`, `ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`, `EHOSTUNREACH`, `EOPNOTSUPP`,
//! `ENETUNREACH`, `ETIMEDOUT`) are retried silently, up to 64 in a row (some, like an LSM
//! hook's `EPERM`, leave the connection queued: retrying them forever would spin). Any other
//! error — `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` above all — and the 65th connection error
//! in a row are counted in `failed_accepts` and stop accepting on that
//! socket for a back-off growing from 10 ms to 1 s, then accepting resumes. An episode is
//! logged once when it starts ("backing off") and once when it ends ("accepting again"), per
//! Listen, however many threads accept on it. Nothing spins.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::config::PeerAddr;
use crate::event::{Closure, Event, EventId, E_READ, E_TIMEOUT};
use crate::scheduler::{self, SchedulerHandle};
use crate::sys::{self, SockOpts};

use super::listen::ListenSettings;
use super::session::{
    begin_session, open_session, take_caps, AcceptConstruct, ListenInfo, NewSession, Refusal,
    Shared,
};

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What every part of one Listen's accept path shares.
pub(crate) struct AcceptCtx {
    pub shared: Arc<Shared>,
    pub inst: Arc<ListenInfo>,
    pub backoff: Arc<Backoff>,
}

/// The accept machinery running on one socket.
pub(crate) enum Acceptor {
    /// `Concurrency = 0`: the accept event (it watches a dup of the socket).
    InScheduler(EventId),
    /// `Concurrency = N`: the pipe that stops the threads, and their hand-off queue.
    Threads {
        wake: OwnedFd,
        queue: Arc<AcceptQueue>,
    },
}

/// Starts accepting on `sock` as `s` says.
pub(crate) fn start(
    ctx: Arc<AcceptCtx>,
    s: &ListenSettings,
    sock: &Arc<OwnedFd>,
) -> io::Result<Acceptor> {
    if s.concurrency > 0 {
        return start_threads(ctx, s, sock);
    }
    // The event owns a dup: clearing it never closes the instance's socket.
    let fd = sys::dup(sock.as_raw_fd())?;
    let st = AcceptState {
        ctx,
        per_iter: s.events_per_iter,
        retry_streak: 0,
    };
    let ev = Event::build_fd_event(fd, E_READ, accept_cb, Box::new(st));
    Ok(Acceptor::InScheduler(scheduler::schedule_event(ev)?))
}

impl Acceptor {
    /// Stops accepting without waiting for anything (see the module's contract).
    pub fn stop(self) {
        match self {
            Acceptor::InScheduler(id) => {
                // At thread exit the scheduler may be gone already, its events with it.
                if scheduler::is_scheduler_thread() {
                    scheduler::clear_timed_event(id);
                }
            }
            Acceptor::Threads { wake, queue } => {
                queue.stop.store(true, Ordering::SeqCst);
                queue.not_full.notify_all();
                // A byte, then the write end closes: every thread's poll finds the pipe
                // readable (data, then POLLHUP) from now on.
                let _ = sys::write(wake.as_raw_fd(), b"x");
                drop(wake);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Accept errors and the back-off
// ---------------------------------------------------------------------------------------------

/// One Listen's accept-error episode, shared by every thread accepting on it: the first
/// failure opens it, the first success after closes it; meanwhile every accepter stays away
/// from the socket until the episode's deadline, which moves further out (10 ms → 1 s) each
/// time a retry fails.
///
/// Threads race at the edges, so each outcome carries the instant its attempt *started*: a
/// success whose attempt began before the episode opened (it took the last descriptor while
/// another thread's accept failed) does not close it, and a failure whose attempt began
/// before the episode closed does not open a new one.
#[derive(Default)]
pub(crate) struct Backoff {
    /// False when no episode is open: the check on every successful accept takes no lock.
    open: AtomicBool,
    state: Mutex<BackoffState>,
}

#[derive(Default)]
struct BackoffState {
    episode: Option<Episode>,
    /// When the attempt that closed the last episode started.
    closed_by: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Episode {
    since: Instant,
    delay: Duration,
    until: Instant,
}

/// What a failed accept means for the episode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It opened the episode (log it): stay away this long.
    Opened(Duration),
    /// The episode goes on: stay away this long.
    Ongoing(Duration),
    /// It belongs to the episode that just closed: try again at once.
    Stale,
}

impl Backoff {
    /// An accept attempt started at `attempt` failed at `now`.
    pub fn failed(&self, attempt: Instant, now: Instant) -> Failure {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if g.episode.is_none() && g.closed_by.is_some_and(|c| attempt < c) {
            return Failure::Stale;
        }
        let opened = g.episode.is_none();
        let ep = g.episode.get_or_insert(Episode {
            since: now,
            delay: BACKOFF_MIN,
            until: now + BACKOFF_MIN,
        });
        if !opened && now >= ep.until {
            // A retry after the back-off failed too: stay away longer.
            ep.delay = (ep.delay * 2).min(BACKOFF_MAX);
            ep.until = now + ep.delay;
        }
        let away = ep.until.saturating_duration_since(now);
        self.open.store(true, Ordering::Release);
        if opened {
            Failure::Opened(away)
        } else {
            Failure::Ongoing(away)
        }
    }

    /// An accept attempt started at `attempt` succeeded at `now`: the episode's length if
    /// this success closed one.
    pub fn succeeded(&self, attempt: Instant, now: Instant) -> Option<Duration> {
        if !self.open.load(Ordering::Acquire) {
            return None;
        }
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let since = g.episode.filter(|ep| attempt >= ep.since)?.since;
        g.episode = None;
        g.closed_by = Some(attempt);
        self.open.store(false, Ordering::Release);
        Some(now.saturating_duration_since(since))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum AcceptError {
    /// Nothing to accept: wait for readiness.
    Empty,
    /// An error of one connection: accept the next one at once.
    Retry,
    /// An error of the socket or the process (out of descriptors…): back off.
    Persistent,
}

fn classify_accept_error(e: &io::Error) -> AcceptError {
    match e.raw_os_error() {
        _ if e.kind() == io::ErrorKind::WouldBlock => AcceptError::Empty, // EAGAIN, EWOULDBLOCK
        Some(n) if is_connection_error(n) => AcceptError::Retry,
        _ => AcceptError::Persistent,
    }
}

/// Errors that concern one connection, not the socket. Linux's `accept(2)` passes on the new
/// connection's pending network errors (see "Error handling" there); `ECONNABORTED` is a
/// peer that gave up before the accept, `EPERM` a firewall rule refusing it.
fn is_connection_error(errno: i32) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if errno == libc::ENONET {
        return true;
    }
    matches!(
        errno,
        libc::ECONNABORTED
            | libc::EINTR
            | libc::EPERM
            | libc::ENETDOWN
            | libc::EPROTO
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ETIMEDOUT
    )
}

/// What an accepter does after a failed call.
enum Next {
    /// Wait for the socket to be readable again.
    Readiness,
    /// Accept again at once.
    Again,
    /// Stay away from the socket this long.
    Away(Duration),
}

/// Connection errors in a row an accepter retries at once; past this they back off like an
/// error of the socket. Most take their connection off the queue, but not all (an LSM hook
/// refusing with `EPERM` fails before the connection is dequeued): retrying such an error
/// at once would spin.
const RETRY_STREAK_MAX: u32 = 64;

/// What an accepter does with `err`, given `streak`, its connection errors since its last
/// accepted connection (counted here): a connection error past [`RETRY_STREAK_MAX`] in a
/// row backs off.
fn triage(err: &io::Error, streak: &mut u32) -> AcceptError {
    match classify_accept_error(err) {
        AcceptError::Retry if *streak < RETRY_STREAK_MAX => {
            *streak += 1;
            AcceptError::Retry
        }
        AcceptError::Retry => AcceptError::Persistent,
        other => other,
    }
}

/// `attempt`: when the failed call started; `now`: when it returned; `streak`: the
/// accepter's connection errors since its last accepted connection.
fn after_error(
    ctx: &AcceptCtx,
    call: &str,
    err: &io::Error,
    (attempt, now): (Instant, Instant),
    streak: &mut u32,
) -> Next {
    let away = match triage(err, streak) {
        AcceptError::Empty => return Next::Readiness,
        AcceptError::Retry => return Next::Again,
        AcceptError::Persistent => {
            ctx.inst
                .stats
                .failed_accepts
                .fetch_add(1, Ordering::Relaxed);
            ctx.backoff.failed(attempt, now)
        }
    };
    let (scope, addr) = (&ctx.inst.def.scope, &ctx.inst.address);
    match away {
        Failure::Stale => Next::Again,
        Failure::Opened(d) => {
            log::warn!("{scope} Listen \"{addr}\": {call}: {err}; backing off");
            Next::Away(d)
        }
        Failure::Ongoing(d) => {
            // At most once per accepter and back-off delay (≤ 100/s, then 1/s).
            log::debug!("{scope} Listen \"{addr}\": {call}: {err}; next try in {d:?}");
            Next::Away(d)
        }
    }
}

fn after_success(ctx: &AcceptCtx, attempt: Instant, now: Instant) {
    if let Some(len) = ctx.backoff.succeeded(attempt, now) {
        log::warn!(
            "{} Listen \"{}\": accepting again after {len:?}",
            ctx.inst.def.scope,
            ctx.inst.address
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The checks shared by both modes
// ---------------------------------------------------------------------------------------------

/// Runs the layer's checks and the module's acceptor on a fresh connection. `None` when it was
/// refused (the reject line already written, the fd closed).
fn admit(ctx: &AcceptCtx, fd: OwnedFd, remote: Option<SocketAddr>, now: Instant) -> Option<Event> {
    let (shared, inst) = (&ctx.shared, &ctx.inst);
    let gen = shared.store.current();
    let peer = match remote {
        Some(sa) => PeerAddr::Ip(sa.ip().to_canonical()),
        None => PeerAddr::Unix,
    };
    let def = &inst.def;
    let chain = gen.chain(&def.scope, Some(&inst.address), Some(&peer));
    if gen.fetch_in(&chain, shared.slots.deny).value.as_bool() {
        return refuse(inst, fd, Refusal::Deny);
    }
    let caps = match take_caps(shared, &gen, &chain, inst) {
        Ok(c) => c,
        Err(why) => return refuse(inst, fd, why),
    };
    let nodelay = gen.fetch_in(&chain, shared.slots.disable_nagle).value;
    if remote.is_some() && nodelay.as_bool() {
        let opts = SockOpts {
            nodelay: true,
            ..SockOpts::default()
        };
        let _ = sys::apply_accepted_opts(fd.as_raw_fd(), &opts);
    }
    let idle = gen.fetch_in(&chain, shared.slots.idle_time).value;
    let idle = idle.as_duration();
    let n = NewSession {
        remote_addr: remote,
        idle_time: (!idle.is_zero()).then_some(idle),
        chain,
        config: gen,
        caps,
    };
    let ac = open_session(shared, inst, n);
    // Mask 0: the listener callback runs first through `start_session`, not on readiness.
    let mut ev = Event::build_fd_event(fd, 0, def.listener, Box::new(ac));
    if let Some(acceptor) = def.acceptor {
        if !run_acceptor(acceptor, &mut ev, now) {
            inst.stats.refused(Refusal::Acceptor);
            inst.def.stats.refused(Refusal::Acceptor);
            return None; // dropping the event closes the fd and gives back the caps
        }
    }
    let fd = ev.fd();
    begin_session(ev.closure_mut::<AcceptConstruct>(), fd, now);
    Some(ev)
}

fn run_acceptor(acceptor: crate::event::EventCallback, ev: &mut Event, now: Instant) -> bool {
    let mut cl = ev.replace_closure(Box::new(()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        acceptor(ev, E_READ, &mut *cl, now)
    }));
    ev.replace_closure(cl);
    match r {
        Ok(v) => v != 0,
        Err(p) => {
            log::error!(
                "acceptor panicked: {}; connection refused",
                crate::scheduler::panic_message(&p)
            );
            false
        }
    }
}

fn refuse(inst: &ListenInfo, fd: OwnedFd, why: Refusal) -> Option<Event> {
    inst.stats.refused(why);
    inst.def.stats.refused(why);
    let line = inst.def.reject_line(why);
    if !line.is_empty() {
        // Best effort, non-blocking: a fresh socket's send buffer takes one line.
        let _ = sys::write(fd.as_raw_fd(), &line);
    }
    log::debug!(
        "{} Listen \"{}\": connection refused ({why:?})",
        inst.def.scope,
        inst.address
    );
    None
}

/// Schedules an admitted session and runs the module's listener callback on it now.
fn start_session(mut ev: Event, now: Instant) {
    let (idle, conn_id) = {
        let ac = ev.closure_mut::<AcceptConstruct>();
        (ac.idle_time, ac.conn_id)
    };
    ev.set_timeout(now, idle);
    let fd = ev.fd();
    match scheduler::schedule_event(ev) {
        Ok(id) => {
            scheduler::with_event(id, |e| e.closure_mut::<AcceptConstruct>().set_event(id, fd));
            scheduler::wake_event(id, E_READ);
        }
        Err(e) => log::warn!("cannot schedule session {conn_id}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency = 0: accepting on the scheduler thread
// ---------------------------------------------------------------------------------------------

struct AcceptState {
    ctx: Arc<AcceptCtx>,
    per_iter: usize,
    /// See [`RETRY_STREAK_MAX`].
    retry_streak: u32,
}

fn accept_cb(e: &mut Event, _eventtype: i32, closure: &mut Closure, now: Instant) -> i32 {
    // E_TIMEOUT only means: the back-off is over, try again.
    let st = closure
        .downcast_mut::<AcceptState>()
        .expect("accept_cb: closure is an AcceptState");
    for _ in 0..st.per_iter {
        match sys::accept(e.fd()) {
            Ok((fd, remote)) => {
                after_success(&st.ctx, now, now);
                st.retry_streak = 0;
                if let Some(ev) = admit(&st.ctx, fd, remote, now) {
                    start_session(ev, now);
                }
            }
            Err(err) => {
                match after_error(&st.ctx, "accept", &err, (now, now), &mut st.retry_streak) {
                    Next::Readiness => break,
                    Next::Again => continue,
                    Next::Away(d) => {
                        // Leave the poller (no E_READ) until the deadline: no spin while failing.
                        e.set_timeout(now, Some(d));
                        return E_TIMEOUT;
                    }
                }
            }
        }
    }
    e.timeout = None;
    E_READ
}

// ---------------------------------------------------------------------------------------------
// Concurrency = N: accept threads
// ---------------------------------------------------------------------------------------------

/// Admitted connections waiting for the scheduler.
pub(crate) struct AcceptQueue {
    q: Mutex<VecDeque<Event>>,
    not_full: Condvar,
    /// `Accept_Queue_Backlog` (0: unbounded).
    cap: usize,
    per_iter: usize,
    /// A drain is pending on the scheduler.
    scheduled: AtomicBool,
    stop: AtomicBool,
}

fn start_threads(
    ctx: Arc<AcceptCtx>,
    s: &ListenSettings,
    sock: &Arc<OwnedFd>,
) -> io::Result<Acceptor> {
    let (wake_r, wake_w) = sys::pipe()?;
    let wake_r = Arc::new(wake_r);
    let queue = Arc::new(AcceptQueue {
        q: Mutex::new(VecDeque::new()),
        not_full: Condvar::new(),
        cap: s.queue_backlog,
        per_iter: s.events_per_iter,
        scheduled: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let acceptor = Acceptor::Threads {
        wake: wake_w,
        queue: queue.clone(),
    };
    let handle = scheduler::current_handle();
    let poll_turn = Arc::new(Mutex::new(()));
    for n in 0..s.concurrency {
        let t = AcceptThread {
            ctx: ctx.clone(),
            sock: Arc::downgrade(sock),
            wake: wake_r.clone(),
            queue: queue.clone(),
            handle: handle.clone(),
            poll_turn: poll_turn.clone(),
        };
        let name = format!("accept-{}-{n}", ctx.inst.def.name);
        // Detached: see the module's contract.
        if let Err(e) = std::thread::Builder::new()
            .name(name)
            .spawn(move || t.run())
        {
            acceptor.stop(); // the threads already running exit
            return Err(e);
        }
    }
    Ok(acceptor)
}

struct AcceptThread {
    ctx: Arc<AcceptCtx>,
    sock: Weak<OwnedFd>,
    wake: Arc<OwnedFd>,
    queue: Arc<AcceptQueue>,
    handle: SchedulerHandle,
    /// The turn to wait in `poll` on the socket, shared by the threads of one start.
    poll_turn: Arc<Mutex<()>>,
}

/// One accept call; `Instant`: when it started.
enum Step {
    Stop,
    Accepted(Instant, OwnedFd, Option<SocketAddr>),
    Failed(Instant, io::Error),
}

/// How a wait for the socket to become readable ended.
enum Wait<'a> {
    /// Readable: the turn, to hold through the accept that follows.
    Ready(MutexGuard<'a, ()>),
    Stop,
    Failed(Instant, io::Error),
}

impl AcceptThread {
    /// Accepts until stopped: `accept(2)` first — the socket is non-blocking — and `poll(2)`
    /// only after `EAGAIN`, so a backlog is drained at one syscall a connection.
    fn run(self) {
        // Held from a readiness report through the accept it announced (see `wait_readable`).
        let mut turn = None;
        let mut streak = 0; // see RETRY_STREAK_MAX
        while !self.stopped() {
            let step = self.accept();
            drop(turn.take());
            let (attempt, err) = match step {
                Step::Stop => return,
                Step::Accepted(attempt, fd, remote) => {
                    let now = Instant::now();
                    after_success(&self.ctx, attempt, now);
                    streak = 0;
                    if let Some(ev) = admit(&self.ctx, fd, remote, now) {
                        self.enqueue(ev);
                    }
                    continue;
                }
                Step::Failed(attempt, err) => (attempt, err),
            };
            // A close's shutdown(2) fails the accept of a thread told to stop: not an error
            // of the socket, so neither counted nor logged.
            if self.stopped() {
                return;
            }
            if let Next::Readiness = self.failed("accept", attempt, &err, &mut streak) {
                match self.wait_readable() {
                    Wait::Ready(t) => turn = Some(t),
                    Wait::Stop => return,
                    Wait::Failed(at, e) => {
                        self.failed("poll", at, &e, &mut streak);
                    }
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        self.queue.stop.load(Ordering::Acquire)
    }

    /// One non-blocking accept. The socket is held only for the call.
    fn accept(&self) -> Step {
        let Some(sock) = self.sock.upgrade() else {
            return Step::Stop;
        };
        let attempt = Instant::now();
        match sys::accept(sock.as_raw_fd()) {
            Ok((fd, remote)) => Step::Accepted(attempt, fd, remote),
            Err(e) => Step::Failed(attempt, e),
        }
    }

    /// The accept-error path shared with the scheduler mode; rests out a back-off here, on
    /// the wake pipe, so a stop is not delayed by it.
    fn failed(&self, call: &str, attempt: Instant, err: &io::Error, streak: &mut u32) -> Next {
        let next = after_error(&self.ctx, call, err, (attempt, Instant::now()), streak);
        if let Next::Away(d) = next {
            // Round up so a sub-millisecond rest never becomes a busy loop.
            let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let w = self.wake.as_raw_fd();
            let _ = sys::poll_two(w, w, ms);
        }
        next
    }

    /// Waits until the socket is readable or accepting stops. One thread of the Listen at a
    /// time waits in `poll`, the others wait for its turn, so a connection wakes one thread,
    /// not all N (N polls, then N − 1 accepts failing with `EAGAIN`). The turn is returned
    /// to be held through the accept that follows, so the next thread's poll does not report
    /// the same connection again. The socket is held only while polling; the poll ends at
    /// once on a stop (the wake pipe), so closing a Listen never waits for a thread.
    fn wait_readable(&self) -> Wait<'_> {
        let turn = self.poll_turn.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.stopped() {
                return Wait::Stop;
            }
            let Some(sock) = self.sock.upgrade() else {
                return Wait::Stop;
            };
            let polled = Instant::now();
            match sys::poll_two(sock.as_raw_fd(), self.wake.as_raw_fd(), -1) {
                Ok((_, true)) => return Wait::Stop,
                Ok((true, false)) => return Wait::Ready(turn),
                Ok((false, false)) => {} // EINTR
                Err(e) => return Wait::Failed(polled, e),
            }
        }
    }

    /// Queues an admitted session for the scheduler, waiting while the queue is full — unless
    /// accepting stopped: then it goes in past the bound, never dropped (a drain is pending
    /// for it, scheduled below if need be).
    fn enqueue(&self, ev: Event) {
        let q = &self.queue;
        let mut g = q.q.lock().unwrap_or_else(|p| p.into_inner());
        let mut waited = false;
        while q.cap > 0 && g.len() >= q.cap && !q.stop.load(Ordering::Acquire) {
            if !waited {
                waited = true;
                let stats = &self.ctx.inst.stats;
                stats.queue_waits.fetch_add(1, Ordering::Relaxed);
            }
            g = q
                .not_full
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        g.push_back(ev);
        drop(g);
        if !q.scheduled.swap(true, Ordering::AcqRel) {
            let q2 = q.clone();
            self.handle.run_on_scheduler(move || drain_queue(q2));
        }
    }
}

/// On the scheduler thread: start at most `Events_Per_Iter` queued sessions, and come back next
/// iteration for the rest.
fn drain_queue(q: Arc<AcceptQueue>) {
    q.scheduled.store(false, Ordering::Release);
    let now = scheduler::scheduler_now();
    // What is left past `per_iter` needs another drain; what arrives from now on has its
    // own (the enqueuer sees `scheduled` false and schedules it).
    let (batch, more): (Vec<Event>, bool) = {
        let mut g = q.q.lock().unwrap_or_else(|p| p.into_inner());
        let n = g.len().min(q.per_iter);
        (g.drain(..n).collect(), !g.is_empty())
    };
    q.not_full.notify_all();
    for ev in batch {
        start_session(ev, now);
    }
    if more && !q.scheduled.swap(true, Ordering::AcqRel) {
        let q2 = q.clone();
        scheduler::current_handle().run_on_scheduler(move || drain_queue(q2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(n: i32) -> AcceptError {
        classify_accept_error(&io::Error::from_raw_os_error(n))
    }

    #[test]
    fn connection_errors_are_retried_and_the_rest_backs_off() {
        assert_eq!(err(libc::EAGAIN), AcceptError::Empty);
        for n in [
            libc::ECONNABORTED,
            libc::EINTR,
            libc::EPERM,
            libc::ENETDOWN,
            libc::EPROTO,
            libc::ENOPROTOOPT,
            libc::EHOSTDOWN,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
            libc::ENETUNREACH,
            libc::ETIMEDOUT,
        ] {
            assert_eq!(err(n), AcceptError::Retry, "errno {n}");
        }
        #[cfg(target_os = "linux")]
        assert_eq!(err(libc::ENONET), AcceptError::Retry);
        for n in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EBADF,
            libc::EINVAL,
            libc::ENOTSOCK,
        ] {
            assert_eq!(err(n), AcceptError::Persistent, "errno {n}");
        }
    }

    #[test]
    fn a_connection_error_that_keeps_coming_backs_off() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let mut streak = 0;
        for i in 0..RETRY_STREAK_MAX {
            assert_eq!(triage(&eperm, &mut streak), AcceptError::Retry, "error {i}");
        }
        assert_eq!(triage(&eperm, &mut streak), AcceptError::Persistent);
        assert_eq!(triage(&eperm, &mut streak), AcceptError::Persistent);
        // An empty queue is no error at all, whatever the streak.
        let eagain = io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(triage(&eagain, &mut streak), AcceptError::Empty);
        streak = 0; // what an accepted connection does
        assert_eq!(triage(&eperm, &mut streak), AcceptError::Retry);
    }

    #[test]
    fn one_episode_however_many_accepters_and_the_delay_grows_to_one_second() {
        let b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.succeeded(t0, t0), None, "no episode, nothing to log");
        // Four threads fail at once: one opens the episode, all stay away until its deadline.
        assert_eq!(b.failed(t0, t0), Failure::Opened(BACKOFF_MIN));
        for _ in 0..3 {
            assert_eq!(b.failed(t0, t0), Failure::Ongoing(BACKOFF_MIN));
        }
        // Each failed retry after the deadline doubles the delay, up to 1 s.
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..10 {
            let Failure::Ongoing(d) = b.failed(now, now) else {
                panic!("one episode")
            };
            now += d;
            delays.push(d);
        }
        assert_eq!(delays[0], BACKOFF_MIN, "still inside the first delay");
        assert_eq!(delays[1], BACKOFF_MIN * 2);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), BACKOFF_MAX);
        // The first success closes the episode, once.
        assert_eq!(b.succeeded(now, now), Some(now - t0));
        assert_eq!(b.succeeded(now, now), None);
        // A later failure opens a new episode at the minimum delay.
        let later = now + BACKOFF_MAX;
        assert_eq!(b.failed(later, later), Failure::Opened(BACKOFF_MIN));
    }

    #[test]
    fn outcomes_of_attempts_that_straddle_an_edge_do_not_make_episodes() {
        let ms = Duration::from_millis;
        let b = Backoff::default();
        let t0 = Instant::now();
        // Thread A's accept fails at t0+2; thread B's, started at t0+1, took the last
        // descriptor and reports later: it does not end A's episode.
        assert_eq!(
            b.failed(t0 + ms(1), t0 + ms(2)),
            Failure::Opened(BACKOFF_MIN)
        );
        assert_eq!(b.succeeded(t0 + ms(1), t0 + ms(3)), None);
        assert_eq!(b.failed(t0 + ms(3), t0 + ms(4)), Failure::Ongoing(ms(8)));
        // Descriptors free again: a success started after the episode opened ends it; a
        // failure started before that success belongs to the old episode.
        assert_eq!(b.succeeded(t0 + ms(20), t0 + ms(21)), Some(ms(19)));
        assert_eq!(b.failed(t0 + ms(19), t0 + ms(22)), Failure::Stale);
        assert_eq!(
            b.failed(t0 + ms(30), t0 + ms(31)),
            Failure::Opened(BACKOFF_MIN)
        );
    }
}
