//! Listen instances: sockets, accept threads, the accept path and its back-off.
//!
//! C: `netlistener_inst`, the accept loop and accept threads of the netlistener layer.
//!
//! # Summary
//! One [`Instance`] per enabled `Listen`. Its socket is opened once (`SO_REUSEADDR`, backlog,
//! buffers, non-blocking, close-on-exec; Unix sockets with `File_Mode`) and kept across
//! reloads as long as the Listen stays. With `Concurrency = 0` the scheduler accepts on
//! readiness, at most `Events_Per_Iter` per wake-up. With `Concurrency = N`, N accept threads
//! block in `poll(2)` on the socket and a wake pipe, accept, run the layer's checks and the
//! module's acceptor, and queue survivors to the scheduler (bounded by `Accept_Queue_Backlog`:
//! a full queue makes them wait, leaving connections in the kernel backlog); the scheduler
//! starts at most `Events_Per_Iter` of them per iteration.
//!
//! # Contract
//! Created, reconfigured and closed on the scheduler thread only.
//!
//! # Diagnostics
//! `EMFILE`/`ENFILE` stop accepting on that socket for a growing back-off (10 ms → 1 s) and
//! resume; the episode is logged once when it starts and once when it ends, never per attempt.
//! `ECONNABORTED`, `EINTR`, `EAGAIN`, `EPROTO` are retried silently. Other accept errors are
//! counted and logged at debug level.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{ListenAddr, PeerAddr};
use crate::event::{Closure, Event, E_READ, E_TIMEOUT};
use crate::scheduler::{self, SchedulerHandle};
use crate::sys::{self, SockError, SockOpts};

use super::session::{
    open_session, take_caps, AcceptConstruct, ListenInfo, NewSession, Refusal, Shared,
};

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The socket-level settings of one Listen, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenSettings {
    pub sock: SockOpts,
    pub concurrency: usize,
    pub queue_backlog: usize,
    pub events_per_iter: usize,
    pub file_mode: u32,
}

/// Where an instance stands, for the console.
#[derive(Debug)]
pub enum ListenState {
    /// Accepting.
    Listening,
    /// Configured with `Enable = false`.
    Disabled,
    /// The socket could not be opened.
    Failed(SockError),
}

/// Accepted connections waiting for the scheduler (accept-thread mode).
struct AcceptQueue {
    q: Mutex<VecDeque<Event>>,
    not_full: Condvar,
    cap: usize,
    per_iter: usize,
    scheduled: AtomicBool,
    stop: AtomicBool,
}

/// One Listen: its socket and its accept machinery.
pub(crate) struct Instance {
    pub info: Arc<ListenInfo>,
    pub settings: ListenSettings,
    pub state: ListenState,
    /// The socket; accept threads hold clones of the `Arc`.
    sock: Option<Arc<OwnedFd>>,
    /// Concurrency 0: the accept event (watching a dup of the socket).
    accept_event: Option<crate::event::EventId>,
    /// Concurrency N: the threads, the pipe that wakes them, their queue.
    threads: Vec<JoinHandle<()>>,
    wake: Option<OwnedFd>,
    queue: Option<Arc<AcceptQueue>>,
    unix_path: Option<PathBuf>,
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_serial() -> u64 {
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

impl Instance {
    /// A closed instance in state `state`.
    pub fn new(info: Arc<ListenInfo>, settings: ListenSettings, state: ListenState) -> Instance {
        Instance {
            info,
            settings,
            state,
            sock: None,
            accept_event: None,
            threads: Vec::new(),
            wake: None,
            queue: None,
            unix_path: None,
        }
    }

    /// Opens the socket (resolving relative Unix paths under `runtime_dir`).
    pub fn open(&mut self, runtime_dir: &Path) -> Result<(), ()> {
        let r = match &self.info.address {
            ListenAddr::Inet(sa) => sys::tcp_listen(sa, &self.settings.sock).map(|fd| (fd, None)),
            ListenAddr::Unix(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    runtime_dir.join(p)
                };
                open_unix(&path, self.settings.file_mode, self.settings.sock.backlog)
                    .map(|fd| (fd, Some(path)))
            }
        };
        match r {
            Ok((fd, path)) => {
                let bound = match sys::local_addr(fd.as_raw_fd()) {
                    Ok(Some(sa)) => ListenAddr::Inet(sa),
                    _ => ListenAddr::Unix(path.clone().unwrap_or_default()),
                };
                *self.info.bound.lock().unwrap_or_else(|p| p.into_inner()) = Some(bound);
                self.sock = Some(Arc::new(fd));
                self.unix_path = path;
                self.state = ListenState::Listening;
                Ok(())
            }
            Err(e) => {
                log::error!(
                    "{} Listen \"{}\": cannot open: {e}",
                    self.info.def.scope,
                    self.info.address
                );
                self.state = ListenState::Failed(e);
                Err(())
            }
        }
    }

    /// Starts accepting in the configured mode.
    pub fn start(&mut self, shared: &Arc<Shared>) {
        let Some(sock) = self.sock.clone() else {
            return;
        };
        if self.settings.concurrency == 0 {
            match self.start_in_scheduler(shared, &sock) {
                Ok(id) => self.accept_event = Some(id),
                Err(e) => log::error!(
                    "{} Listen \"{}\": cannot watch the socket: {e}",
                    self.info.def.scope,
                    self.info.address
                ),
            }
        } else if let Err(e) = self.start_threads(shared, sock) {
            log::error!(
                "{} Listen \"{}\": cannot start accept threads: {e}",
                self.info.def.scope,
                self.info.address
            );
        }
    }

    fn start_in_scheduler(
        &self,
        shared: &Arc<Shared>,
        sock: &Arc<OwnedFd>,
    ) -> io::Result<crate::event::EventId> {
        // The event owns a dup: clearing it never closes the instance's socket.
        let fd = sys::dup(sock.as_raw_fd())?;
        let st = AcceptState {
            shared: shared.clone(),
            inst: self.info.clone(),
            per_iter: self.settings.events_per_iter,
            backoff: None,
        };
        scheduler::schedule_event(Event::build_fd_event(fd, E_READ, accept_cb, Box::new(st)))
    }

    fn start_threads(&mut self, shared: &Arc<Shared>, sock: Arc<OwnedFd>) -> io::Result<()> {
        let (wake_r, wake_w) = sys::pipe()?;
        let wake_r = Arc::new(wake_r);
        let queue = Arc::new(AcceptQueue {
            q: Mutex::new(VecDeque::new()),
            not_full: Condvar::new(),
            cap: self.settings.queue_backlog,
            per_iter: self.settings.events_per_iter,
            scheduled: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let handle = scheduler::current_handle();
        for n in 0..self.settings.concurrency {
            let t = AcceptThread {
                shared: shared.clone(),
                inst: self.info.clone(),
                sock: sock.clone(),
                wake: wake_r.clone(),
                queue: queue.clone(),
                handle: handle.clone(),
            };
            let name = format!("accept-{}-{n}", self.info.def.name);
            self.threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || t.run())?,
            );
        }
        self.wake = Some(wake_w);
        self.queue = Some(queue);
        Ok(())
    }

    /// Stops accepting (threads joined, accept event cleared); the socket stays open.
    pub fn stop(&mut self) {
        if let Some(id) = self.accept_event.take() {
            // At thread exit the scheduler may be gone already, its events with it.
            if scheduler::is_scheduler_thread() {
                scheduler::clear_timed_event(id);
            }
        }
        if let Some(q) = self.queue.take() {
            q.stop.store(true, Ordering::SeqCst);
            q.not_full.notify_all();
        }
        if let Some(w) = self.wake.take() {
            let _ = sys::write(w.as_raw_fd(), b"x");
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    /// Stops accepting and closes the socket (removing a Unix socket file).
    pub fn close(&mut self) {
        self.stop();
        self.sock = None;
        if let Some(p) = self.unix_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The socket's fd, for the console and tests (`-1` when closed).
    pub fn fd(&self) -> RawFd {
        self.sock.as_ref().map_or(-1, |s| s.as_raw_fd())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_unix(path: &Path, mode: u32, backlog: i32) -> Result<OwnedFd, SockError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        let busy = || SockError {
            syscall: "bind",
            error: io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        if !md.file_type().is_socket() {
            // Never delete something that is not a socket.
            return Err(busy());
        }
        if sys::unix_connect_probe(path) {
            return Err(busy()); // someone answers: not stale
        }
        log::info!("removing stale socket file {}", path.display());
        let _ = std::fs::remove_file(path);
    }
    sys::unix_listen(path, mode, backlog)
}

// ---------------------------------------------------------------------------------------------
// The accept path shared by both modes
// ---------------------------------------------------------------------------------------------

/// Runs the layer's checks and the module's acceptor on a fresh connection. `None` when it was
/// refused (the reject line already written, the fd closed).
fn admit(
    shared: &Arc<Shared>,
    inst: &Arc<ListenInfo>,
    fd: OwnedFd,
    remote: Option<std::net::SocketAddr>,
    now: Instant,
) -> Option<Event> {
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
    let nodelay = gen
        .fetch_in(&chain, shared.slots.disable_nagle)
        .value
        .as_bool();
    if remote.is_some() && nodelay {
        let _ = sys::apply_accepted_opts(
            fd.as_raw_fd(),
            &SockOpts {
                nodelay,
                ..SockOpts::default()
            },
        );
    }
    let idle = gen
        .fetch_in(&chain, shared.slots.idle_time)
        .value
        .as_duration();
    let n = NewSession {
        remote_addr: remote,
        idle_time: (!idle.is_zero()).then_some(idle),
        chain,
        config: gen,
        caps,
        fd: fd.as_raw_fd(),
        now,
    };
    let ac = open_session(shared, inst, n);
    // Mask 0: the listener callback runs first through `start_session`, not on readiness.
    let mut ev = Event::build_fd_event(fd, 0, def.listener, Box::new(ac));
    if let Some(acceptor) = def.acceptor {
        if !run_acceptor(acceptor, &mut ev, now) {
            inst.stats.refused(Refusal::Acceptor);
            inst.def.stats.refused(Refusal::Acceptor);
            return None; // dropping the event closes the fd and releases the ticket
        }
    }
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

fn classify_accept_error(e: &io::Error) -> AcceptError {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
            AcceptError::Resources
        }
        Some(libc::EAGAIN) => AcceptError::Empty,
        Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO) | Some(libc::EPERM) => {
            AcceptError::Retry
        }
        _ if e.kind() == io::ErrorKind::WouldBlock => AcceptError::Empty,
        _ => AcceptError::Other,
    }
}

enum AcceptError {
    Empty,
    Retry,
    Resources,
    Other,
}

fn next_backoff(cur: Option<Duration>) -> Duration {
    cur.map_or(BACKOFF_MIN, |d| (d * 2).min(BACKOFF_MAX))
}

// ---------------------------------------------------------------------------------------------
// Concurrency = 0: accepting on the scheduler thread
// ---------------------------------------------------------------------------------------------

struct AcceptState {
    shared: Arc<Shared>,
    inst: Arc<ListenInfo>,
    per_iter: usize,
    /// Set while backing off after EMFILE/ENFILE.
    backoff: Option<(Duration, Instant)>,
}

fn accept_cb(e: &mut Event, eventtype: i32, closure: &mut Closure, now: Instant) -> i32 {
    let st = closure
        .downcast_mut::<AcceptState>()
        .expect("accept_cb: closure is an AcceptState");
    let _ = eventtype & E_TIMEOUT; // a timeout only means: the back-off is over, try again
    for _ in 0..st.per_iter {
        match sys::accept(e.fd()) {
            Ok((fd, remote)) => {
                if let Some((_, since)) = st.backoff.take() {
                    log::warn!(
                        "{} Listen \"{}\": accepting again after {:?} out of descriptors",
                        st.inst.def.scope,
                        st.inst.address,
                        now - since
                    );
                }
                if let Some(ev) = admit(&st.shared, &st.inst, fd, remote, now) {
                    start_session(ev, now);
                }
            }
            Err(err) => match classify_accept_error(&err) {
                AcceptError::Empty => break,
                AcceptError::Retry => continue,
                AcceptError::Other => {
                    st.inst.stats.failed_accepts.fetch_add(1, Ordering::Relaxed);
                    log::debug!("accept on {}: {err}", st.inst.address);
                    break;
                }
                AcceptError::Resources => {
                    st.inst.stats.failed_accepts.fetch_add(1, Ordering::Relaxed);
                    let d = next_backoff(st.backoff.map(|b| b.0));
                    if st.backoff.is_none() {
                        log::warn!(
                            "{} Listen \"{}\": accept: {err}; backing off",
                            st.inst.def.scope,
                            st.inst.address
                        );
                    }
                    st.backoff = Some((d, st.backoff.map_or(now, |b| b.1)));
                    // Leave the poller (no E_READ) until the deadline: no spin while out of fds.
                    e.set_timeout(now, Some(d));
                    return E_TIMEOUT;
                }
            },
        }
    }
    e.timeout = None;
    E_READ
}

// ---------------------------------------------------------------------------------------------
// Concurrency = N: accept threads
// ---------------------------------------------------------------------------------------------

struct AcceptThread {
    shared: Arc<Shared>,
    inst: Arc<ListenInfo>,
    sock: Arc<OwnedFd>,
    wake: Arc<OwnedFd>,
    queue: Arc<AcceptQueue>,
    handle: SchedulerHandle,
}

impl AcceptThread {
    fn run(self) {
        let mut backoff: Option<Duration> = None;
        while !self.queue.stop.load(Ordering::Acquire) {
            match sys::poll_two(self.sock.as_raw_fd(), self.wake.as_raw_fd(), -1) {
                Ok((_, true)) => return,
                Ok((false, false)) => continue,
                Ok((true, false)) => {}
                Err(e) => {
                    log::error!("accept thread on {}: poll: {e}", self.inst.address);
                    std::thread::sleep(BACKOFF_MAX);
                    continue;
                }
            }
            match sys::accept(self.sock.as_raw_fd()) {
                Ok((fd, remote)) => {
                    if backoff.take().is_some() {
                        log::warn!(
                            "{} Listen \"{}\": accepting again",
                            self.inst.def.scope,
                            self.inst.address
                        );
                    }
                    if let Some(ev) = admit(&self.shared, &self.inst, fd, remote, Instant::now()) {
                        self.enqueue(ev);
                    }
                }
                Err(err) => match classify_accept_error(&err) {
                    AcceptError::Empty | AcceptError::Retry => {}
                    AcceptError::Other => {
                        self.inst
                            .stats
                            .failed_accepts
                            .fetch_add(1, Ordering::Relaxed);
                        log::debug!("accept on {}: {err}", self.inst.address);
                    }
                    AcceptError::Resources => {
                        self.inst
                            .stats
                            .failed_accepts
                            .fetch_add(1, Ordering::Relaxed);
                        if backoff.is_none() {
                            log::warn!(
                                "{} Listen \"{}\": accept: {err}; backing off",
                                self.inst.def.scope,
                                self.inst.address
                            );
                        }
                        let d = next_backoff(backoff);
                        backoff = Some(d);
                        // Sleep on the wake pipe so a stop is not delayed by the back-off.
                        let _ = sys::poll_two(
                            self.wake.as_raw_fd(),
                            self.wake.as_raw_fd(),
                            d.as_millis() as i32,
                        );
                    }
                },
            }
        }
    }

    fn enqueue(&self, ev: Event) {
        let q = &self.queue;
        let mut g = q.q.lock().unwrap_or_else(|p| p.into_inner());
        while q.cap > 0 && g.len() >= q.cap && !q.stop.load(Ordering::Acquire) {
            g = q
                .not_full
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if q.stop.load(Ordering::Acquire) {
            return; // shutting down: the connection is dropped (closed)
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
    let batch: Vec<Event> = {
        let mut g = q.q.lock().unwrap_or_else(|p| p.into_inner());
        let n = g.len().min(q.per_iter);
        g.drain(..n).collect()
    };
    q.not_full.notify_all();
    for ev in batch {
        start_session(ev, now);
    }
    let more = !q.q.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
    if more && !q.scheduled.swap(true, Ordering::AcqRel) {
        let q2 = q.clone();
        scheduler::current_handle().run_on_scheduler(move || drain_queue(q2));
    }
}
