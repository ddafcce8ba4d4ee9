//! The master scheduler: one thread, one poller, fd events, timers, floating sessions.
//!
//! C: the Momentum scheduler API — `schedule_event()`, `schedule_event_and_dispatch()`,
//! `clear_timed_event()`, `clear_event_by_fd()`, `get_event_by_fd()`, `float_event()`,
//! `is_scheduler_thread()`, `ping_scheduler()`, recurring functions, and the master loop.
//!
//! # Summary
//! A [`Scheduler`] lives on the thread that creates it and owns a `polling::Poller`. Fds are
//! registered in **oneshot** mode and re-armed after their callback, which gives callers
//! level-triggered semantics with first-come-first-served order among ready fds (never edge
//! mode: the `poll(2)` backend lacks it; `sys::poller_add` says why not level mode).
//! Each loop iteration waits until
//! the next timer deadline, samples `now` once, drains the cross-thread queue, dispatches ready
//! fds, then fires due timers — at most [`Scheduler::set_timers_per_iteration`] of them (1024 by
//! default), so a storm of timers cannot starve I/O.
//!
//! The C entry points are free functions acting on the calling thread's scheduler, so a C
//! module's calls port one to one. Other threads reach the scheduler through a
//! [`SchedulerHandle`] (a queue plus `Poller::notify`).
//!
//! **Floating** ([`float_event`]): a callback asks for its event to leave the scheduler; when
//! the callback returns, the fd is removed from the poller and the event, closure included, is
//! handed as an owned `Send` [`FloatedEvent`] to a hand-off function, which typically gives it
//! to a thread pool. [`FloatedEvent::resume`] (from any thread) puts it back; its callback then
//! runs on the scheduler thread with `E_ASYNC`. A floated event is never reaped by its timeout
//! while it floats; if the deadline passed meanwhile, the `E_ASYNC` callback still runs first
//! and may move it, and a deadline it leaves in the past fires next (see [`float_event`]).
//!
//! Readiness is keyed by the event's id (slot and generation) and checked against the slot's
//! registration, so a report for an event finished earlier in the same iteration never
//! reaches a newer event in its slot or on its fd number.
//!
//! # Contract
//! - One scheduler per thread; the scheduler is `!Send`. The free functions must be called on
//!   the scheduler thread (they panic, naming themselves, elsewhere), except
//!   [`schedule_event_and_dispatch`] and [`ping_scheduler`], which work from any thread that
//!   has a handle (the scheduler thread, pool threads, or a thread that called
//!   [`SchedulerHandle::enter`]).
//! - [`Scheduler::run`] must not be called re-entrantly (from a callback): it panics.
//! - Callbacks may call every function here, including on their own event.
//! - An event with neither an fd nor a deadline after its callback returns is finished (nothing
//!   could ever fire it again).
//! - An event may give up its fd ([`Event::take_fd`]) in its callback, in a [`with_event`]
//!   closure or while floating; the scheduler forgets the fd (poller and
//!   [`get_event_by_fd`]) and the fd may be scheduled again in another event at once.
//!
//! # Diagnostics
//! A panic inside a callback is caught, logged with the event's id and fd, the event dropped
//! (fd closed) and the loop goes on. So is a panic in the destructor of a closure the
//! scheduler drops, and one in a signal callback (logged naming the signal; signals keep
//! arriving). A failed `poll` wait is logged and retried after a short pause (never a spin).
//! Registration failures are returned as `io::Error`, the event dropped outside the
//! scheduler's borrow (its closure's destructor may call the scheduler).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use polling::Poller;

use crate::event::{
    Closure, Event, EventCallback, EventId, FloatHandoff, E_ASYNC, E_READ, E_TIMEOUT, E_WRITE,
};
use crate::sys;
use crate::threadpool::{Job, PoolStats, ThreadPool};
use crate::timer::TimerHeap;

/// Default cap on timed events fired per loop iteration.
pub const DEFAULT_TIMERS_PER_ITERATION: usize = 1024;

/// Fd events taken from the poller per wait. What a wait does not return stays queued,
/// armed, for the next one (a oneshot registration is disarmed only by the report it
/// produces), and the fds reported are re-armed behind it, so nobody starves. A short batch
/// keeps a loop turn short, so timers and work from other threads wait at most 64
/// callbacks — tokio's current-thread runtime polls its I/O driver every 61 tasks. With
/// level-triggered registration (before oneshot), 500 busy echo connections got about 7 %
/// more requests with a 7 % lower p99 than with batches of 1024 (BENCHMARKS.md); with
/// oneshot the order is arrival order whatever the batch, and 256 measured the same as 64
/// within the noise. The extra waits cost a few system calls per 64 events.
pub const EVENTS_PER_WAIT: usize = 64;

/// A signal callback, run on the scheduler thread (never in signal context).
pub type SignalCallback = fn(signo: i32, now: Instant);

/// What other threads send to the scheduler.
enum Remote {
    Dispatch(Box<Event>),
    Resume(Box<Event>, i32),
    Lost(EventId),
    Run(Box<dyn FnOnce() + Send>),
    Stop,
}

struct Shared {
    poller: Poller,
    queue: Mutex<Vec<Remote>>,
    notified: AtomicBool,
    thread: ThreadId,
}

/// A cloneable, `Send + Sync` way to reach a scheduler from other threads.
#[derive(Clone)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
}

impl SchedulerHandle {
    fn send(&self, r: Remote) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
        if !self.shared.notified.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.shared.poller.notify() {
                log::warn!("scheduler notify failed: {e}");
            }
        }
    }

    /// Adds `ev` to the scheduler and runs its callback there once with `E_ASYNC`; its return
    /// value then becomes its wait mask. C: `schedule_event_and_dispatch()` from any thread.
    pub fn schedule_event_and_dispatch(&self, ev: Event) {
        self.send(Remote::Dispatch(Box::new(ev)));
    }

    /// Runs `f` on the scheduler thread at its next iteration.
    pub fn run_on_scheduler(&self, f: impl FnOnce() + Send + 'static) {
        self.send(Remote::Run(Box::new(f)));
    }

    /// Wakes the scheduler's wait. C: `ping_scheduler()`.
    pub fn ping(&self) {
        self.send(Remote::Run(Box::new(|| {})));
    }

    /// Asks the scheduler to return from [`Scheduler::run`] after its current iteration.
    pub fn stop(&self) {
        self.send(Remote::Stop);
    }

    /// Makes this handle the calling thread's handle, so the free functions
    /// [`schedule_event_and_dispatch`] and [`ping_scheduler`] work on this thread.
    pub fn enter(&self) {
        HOME.with(|h| *h.borrow_mut() = Some(self.clone()));
    }

    /// True when called on this handle's scheduler thread.
    pub fn is_scheduler_thread(&self) -> bool {
        thread::current().id() == self.shared.thread
    }
}

/// An event taken out of the scheduler, free to cross threads. Resume it with
/// [`FloatedEvent::resume`]; dropping it without resuming finishes the event (its fd closes
/// and the scheduler frees its slot).
pub struct FloatedEvent {
    ev: Option<Box<Event>>,
    handle: SchedulerHandle,
}

impl FloatedEvent {
    /// The event (its fd, mask, deadline, callback).
    pub fn event(&mut self) -> &mut Event {
        self.ev
            .as_mut()
            .expect("FloatedEvent::event: already resumed")
    }

    /// The event's closure, downcast.
    ///
    /// # Panics
    /// If the closure is not a `T`.
    pub fn closure_mut<T: std::any::Any>(&mut self) -> &mut T {
        self.event().closure_mut::<T>()
    }

    /// The event's id (unchanged while floating).
    pub fn id(&self) -> EventId {
        self.ev.as_ref().map_or(EventId::NONE, |e| e.id)
    }

    /// Puts the event back into its scheduler; its callback runs there with
    /// `E_ASYNC | wake_mask`. Callable from any thread.
    pub fn resume(mut self, wake_mask: i32) {
        if let Some(ev) = self.ev.take() {
            self.handle.send(Remote::Resume(ev, wake_mask));
        }
    }
}

impl Drop for FloatedEvent {
    fn drop(&mut self) {
        if let Some(ev) = self.ev.take() {
            let id = ev.id;
            drop(ev);
            self.handle.send(Remote::Lost(id));
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    Waiting,
    Dispatching,
    Floating,
}

struct Slot {
    gen: u32,
    state: SlotState,
    ev: Option<Box<Event>>,
    /// Interest currently registered with the poller (0: not registered).
    interest: i32,
    /// The poller reported this registration, which disarmed it (oneshot): it reports
    /// nothing more until re-armed, which [`Core::set_interest`] does.
    reported: bool,
    /// The fd as registered (kept here because the event is away while dispatching).
    fd: RawFd,
    /// The loop iteration in which the fd was last added to the poller: readiness from that
    /// iteration's wait predates the registration and is ignored.
    reg_iter: u64,
    /// Sequence and deadline of this slot's live heap entry, if any.
    timer_seq: u64,
    timer_at: Option<Instant>,
    /// Cleared while its callback ran: finish it when the callback returns.
    cancelled: bool,
}

/// What to do, outside the core borrow, after a callback returned.
enum After {
    Keep,
    Drop(Box<Event>),
    Float(FloatHandoff, FloatedEvent),
}

struct Core {
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_fd: HashMap<RawFd, EventId>,
    timers: TimerHeap,
    /// Slots with a live heap entry; `timers.len() - armed` entries are stale.
    armed: usize,
    ready: VecDeque<(EventId, i32)>,
    more_timers: bool,
    now: Instant,
    running: bool,
    stop: bool,
    /// Loop iterations so far (one per poll wait).
    iteration: u64,
    timers_per_iter: usize,
    live: usize,
    signals: Vec<(i32, SignalCallback)>,
    /// The self-pipe's read event and write end.
    signal_event: Option<EventId>,
    signal_write: Option<OwnedFd>,
    pools: HashMap<String, Arc<ThreadPool>>,
    /// Set by [`shutdown_pools`]: no pool is created or handed out afterwards.
    pools_shut: bool,
}

thread_local! {
    static CORE: RefCell<Option<Rc<RefCell<Core>>>> = const { RefCell::new(None) };
    static HOME: RefCell<Option<SchedulerHandle>> = const { RefCell::new(None) };
}

fn with_core<R>(caller: &str, f: impl FnOnce(&mut Core) -> R) -> R {
    let rc = CORE.with(|c| c.borrow().clone());
    match rc {
        Some(rc) => f(&mut rc.borrow_mut()),
        None => panic!("{caller}: not on a scheduler thread"),
    }
}

fn current_core(caller: &str) -> Rc<RefCell<Core>> {
    CORE.with(|c| c.borrow().clone())
        .unwrap_or_else(|| panic!("{caller}: not on a scheduler thread"))
}

/// The master scheduler. C: the master event loop.
///
/// ```
/// use netlistener::event::{Closure, Event, E_TIMEOUT};
/// use netlistener::scheduler::{schedule_event, schedule_timer, stop_scheduler, Scheduler};
/// use std::sync::atomic::{AtomicI32, Ordering};
/// use std::time::{Duration, Instant};
///
/// static FIRED_WITH: AtomicI32 = AtomicI32::new(0);
///
/// fn tick(_e: &mut Event, et: i32, _closure: &mut Closure, _now: Instant) -> i32 {
///     FIRED_WITH.store(et, Ordering::SeqCst);
///     stop_scheduler();
///     0 // finished: the event is dropped
/// }
/// fn deadline(_e: &mut Event, _et: i32, _closure: &mut Closure, _now: Instant) -> i32 {
///     stop_scheduler(); // the example failed: never hang
///     0
/// }
/// let sched = Scheduler::new().unwrap();
/// let ev = Event::build_event_from_now(Instant::now(), Duration::from_millis(5), tick, Box::new(()));
/// schedule_event(ev).unwrap();
/// schedule_timer(Duration::from_secs(10), deadline, Box::new(()));
/// sched.run();
/// assert_eq!(FIRED_WITH.load(Ordering::SeqCst), E_TIMEOUT);
/// ```
pub struct Scheduler {
    core: Rc<RefCell<Core>>,
}

impl Scheduler {
    /// Creates the scheduler of the calling thread.
    ///
    /// # Panics
    /// If this thread already has one (`Scheduler::new: this thread already has a scheduler`).
    pub fn new() -> io::Result<Scheduler> {
        if CORE.with(|c| c.borrow().is_some()) {
            panic!("Scheduler::new: this thread already has a scheduler");
        }
        let shared = Arc::new(Shared {
            poller: Poller::new()?,
            queue: Mutex::new(Vec::new()),
            notified: AtomicBool::new(false),
            thread: thread::current().id(),
        });
        let core = Core {
            shared: shared.clone(),
            slots: Vec::new(),
            free: Vec::new(),
            by_fd: HashMap::new(),
            timers: TimerHeap::new(),
            armed: 0,
            ready: VecDeque::new(),
            more_timers: false,
            now: Instant::now(),
            running: false,
            stop: false,
            iteration: 0,
            timers_per_iter: DEFAULT_TIMERS_PER_ITERATION,
            live: 0,
            signals: Vec::new(),
            signal_event: None,
            signal_write: None,
            pools: HashMap::new(),
            pools_shut: false,
        };
        let core = Rc::new(RefCell::new(core));
        CORE.with(|c| *c.borrow_mut() = Some(core.clone()));
        HOME.with(|h| *h.borrow_mut() = Some(SchedulerHandle { shared }));
        Ok(Scheduler { core })
    }

    /// A handle other threads use to reach this scheduler.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle {
            shared: self.core.borrow().shared.clone(),
        }
    }

    /// Caps the timed events fired per iteration (`0` is taken as 1).
    pub fn set_timers_per_iteration(&self, n: usize) {
        self.core.borrow_mut().timers_per_iter = n.max(1);
    }

    /// Runs the loop until [`stop_scheduler`] or [`SchedulerHandle::stop`].
    ///
    /// # Panics
    /// When called re-entrantly from a callback, or from a thread other than the one that
    /// created the scheduler.
    pub fn run(&self) {
        {
            let mut c = self.core.borrow_mut();
            assert!(
                thread::current().id() == c.shared.thread,
                "Scheduler::run: called from a thread other than the scheduler's"
            );
            assert!(
                !c.running,
                "Scheduler::run: called re-entrantly from a callback"
            );
            c.running = true;
            c.stop = false;
        }
        let cap = std::num::NonZeroUsize::new(EVENTS_PER_WAIT).expect("a non-zero constant");
        let mut events = polling::Events::with_capacity(cap);
        loop {
            let (timeout, stop) = {
                let c = self.core.borrow();
                (c.wait_timeout(), c.stop)
            };
            if stop {
                break;
            }
            events.clear();
            let shared = self.core.borrow().shared.clone();
            if let Err(e) = shared.poller.wait(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("scheduler: poll wait failed: {e}; retrying in 10ms");
                    thread::sleep(Duration::from_millis(10));
                }
            }
            let now = Instant::now();
            {
                let mut c = self.core.borrow_mut();
                c.now = now;
                c.iteration += 1;
            }
            self.drain_remote(now);
            for pe in events.iter() {
                let bits =
                    if pe.readable { E_READ } else { 0 } | if pe.writable { E_WRITE } else { 0 };
                self.dispatch_io(pe.key, bits, now);
            }
            self.run_ready(now);
            self.run_timers(now);
        }
        self.core.borrow_mut().running = false;
    }

    fn drain_remote(&self, now: Instant) {
        let shared = self.core.borrow().shared.clone();
        // Clear the flag before taking the queue: a push after the take then notifies again.
        shared.notified.store(false, Ordering::Release);
        let items = std::mem::take(&mut *shared.queue.lock().unwrap_or_else(|p| p.into_inner()));
        for item in items {
            match item {
                Remote::Dispatch(ev) => {
                    let r = self.core.borrow_mut().insert_and_dispatch(ev, now);
                    r.unwrap_or_else(dispatch_refused);
                }
                Remote::Resume(ev, mask) => {
                    let refused = self.core.borrow_mut().resume(ev, mask);
                    if let Some(ev) = refused {
                        drop_event(ev);
                    }
                }
                Remote::Lost(id) => self.core.borrow_mut().lost(id),
                Remote::Run(f) => run_guarded("cross-thread job", f),
                Remote::Stop => self.core.borrow_mut().stop = true,
            }
        }
    }

    fn dispatch_io(&self, key: usize, bits: i32, now: Instant) {
        let target = self.core.borrow_mut().take_report(key, bits);
        if let Some((id, et)) = target {
            dispatch(&self.core, id, et, now);
        }
        // A callback that kept its interest was re-armed by `put_back`; this re-arms the
        // reports nobody was dispatched for, and drops an event whose fd cannot be re-armed.
        let dropped = self.core.borrow_mut().rearm(key);
        if let Some(ev) = dropped {
            drop_event(ev);
        }
    }

    fn run_ready(&self, now: Instant) {
        // Only what is queued now: callbacks that queue more run next iteration.
        let n = self.core.borrow().ready.len();
        for _ in 0..n {
            let next = self.core.borrow_mut().ready.pop_front();
            match next {
                Some((id, et)) => dispatch(&self.core, id, et, now),
                None => break,
            }
        }
    }

    fn run_timers(&self, now: Instant) {
        let cap = self.core.borrow().timers_per_iter;
        let mut fired = 0;
        loop {
            if fired >= cap {
                let mut c = self.core.borrow_mut();
                c.more_timers = c.timers.next_deadline().is_some_and(|d| d <= now);
                return;
            }
            let due = self.core.borrow_mut().next_due_timer(now);
            match due {
                Some(id) => {
                    fired += 1;
                    dispatch(&self.core, id, E_TIMEOUT, now);
                }
                None => break,
            }
        }
        let mut c = self.core.borrow_mut();
        c.more_timers = false;
        c.maybe_compact_timers();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let (events, pools) = {
            let mut c = self.core.borrow_mut();
            if let Some(w) = &c.signal_write {
                // Only if it is still ours: another scheduler may have taken the signals since.
                sys::clear_signal_pipe(w.as_raw_fd());
            }
            let mut evs = Vec::new();
            for i in 0..c.slots.len() {
                if let Some(ev) = c.slots[i].ev.take() {
                    c.unregister(i);
                    evs.push(ev);
                }
            }
            (evs, std::mem::take(&mut c.pools))
        };
        for p in pools.values() {
            p.shutdown();
        }
        for ev in events {
            drop_event(ev);
        }
        CORE.with(|c| *c.borrow_mut() = None);
        HOME.with(|h| *h.borrow_mut() = None);
    }
}

/// Runs one callback with the core unborrowed, then settles the event.
fn dispatch(core: &Rc<RefCell<Core>>, id: EventId, et: i32, now: Instant) {
    let mut ev = match core.borrow_mut().take_for_dispatch(id) {
        Some(ev) => ev,
        None => return,
    };
    // Lend the closure to the callback; a `Box<()>` placeholder does not allocate.
    let mut closure = std::mem::replace(&mut ev.closure, Box::new(()));
    let cb = ev.callback;
    let result = catch_unwind(AssertUnwindSafe(|| cb(&mut ev, et, &mut *closure, now)));
    ev.closure = closure;
    let after = core.borrow_mut().after_dispatch(ev, result, now);
    // Dropping or handing off happens outside the borrow: closure destructors and hand-off
    // functions may call back into the scheduler.
    match after {
        After::Keep => {}
        After::Drop(ev) => drop_event(ev),
        After::Float(handoff, fe) => {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| handoff(fe))) {
                log::error!(
                    "event {id}: float hand-off panicked: {}; event dropped",
                    panic_message(&p)
                );
            }
        }
    }
}

/// Drops a finished event outside the core borrow, containing a panicking closure destructor
/// (the fields after the panicking one, the fd included, are still dropped by the unwind).
fn drop_event(ev: Box<Event>) {
    let (id, fd) = (ev.id, ev.fd());
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(ev))) {
        log::error!(
            "event {id} (fd {fd}): its closure's destructor panicked: {}",
            panic_message(&p)
        );
    }
}

/// An event for `schedule_event_and_dispatch` (local or from another thread) that could not be
/// registered: the loop goes on without it; dropping it closes its fd.
fn dispatch_refused((e, ev): (io::Error, Box<Event>)) {
    log::warn!("schedule_event_and_dispatch: cannot register event: {e}");
    drop_event(ev);
}

fn run_guarded(what: &str, f: Box<dyn FnOnce() + Send>) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        log::error!("{what} panicked: {}", panic_message(&p));
    }
}

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The poller key of an event: its whole id where `usize` has room (64-bit), its slot index
/// (the id's low half) on 32-bit targets, where [`Slot::reg_iter`] alone rejects stale
/// readiness.
fn poll_key(id: EventId) -> usize {
    id.as_u64() as usize
}

impl Core {
    fn wait_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() || self.more_timers || self.stop {
            return Some(Duration::ZERO);
        }
        self.timers
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The iteration's `now` inside `run`, the clock outside it.
    fn clock(&self) -> Instant {
        if self.running {
            self.now
        } else {
            Instant::now()
        }
    }

    fn slot_id(&self, i: usize) -> EventId {
        EventId::new(i as u32, self.slots[i].gen)
    }

    fn alloc_slot(&mut self) -> usize {
        if let Some(i) = self.free.pop() {
            return i as usize;
        }
        self.slots.push(Slot {
            gen: 0,
            state: SlotState::Free,
            ev: None,
            interest: 0,
            reported: false,
            fd: -1,
            reg_iter: 0,
            timer_seq: 0,
            timer_at: None,
            cancelled: false,
        });
        self.slots.len() - 1
    }

    /// Adds an event. On error the event is handed back, to be dropped outside the borrow
    /// (its closure's destructor may call the scheduler).
    fn insert(
        &mut self,
        mut ev: Box<Event>,
        now: Instant,
    ) -> Result<EventId, (io::Error, Box<Event>)> {
        let i = self.alloc_slot();
        let id = self.slot_id(i);
        ev.id = id;
        let fd = ev.fd();
        {
            let s = &mut self.slots[i];
            s.state = SlotState::Waiting;
            s.fd = fd;
            s.cancelled = false;
        }
        if let Err(e) = self.set_interest(i, ev.mask) {
            self.free_slot(i);
            ev.id = EventId::NONE;
            return Err((e, ev));
        }
        if fd >= 0 {
            self.by_fd.insert(fd, id);
        }
        if ev.timeout.is_none() {
            if let Some(p) = ev.period {
                ev.timeout = Some(now + p);
            }
        }
        self.sync_timer(i, ev.timeout);
        self.slots[i].ev = Some(ev);
        self.live += 1;
        Ok(id)
    }

    fn insert_and_dispatch(
        &mut self,
        ev: Box<Event>,
        now: Instant,
    ) -> Result<(), (io::Error, Box<Event>)> {
        let id = self.insert(ev, now)?;
        self.ready.push_back((id, E_ASYNC));
        Ok(())
    }

    fn set_interest(&mut self, i: usize, mask: i32) -> io::Result<()> {
        let want = mask & (E_READ | E_WRITE);
        let s = &self.slots[i];
        let (have, fd) = (s.interest, s.fd);
        if (want == have && !s.reported) || fd < 0 {
            return Ok(());
        }
        let (r, w) = (want & E_READ != 0, want & E_WRITE != 0);
        let key = poll_key(self.slot_id(i));
        let p = &self.shared.poller;
        // Not registered while the interest is empty: a hung-up fd is reported whatever its
        // interest (once per re-arm, which would be every wait: a spin).
        if have == 0 {
            sys::poller_add(p, fd, key, r, w)?;
            self.slots[i].reg_iter = self.iteration;
        } else if want == 0 {
            sys::poller_delete(p, fd)?;
        } else {
            sys::poller_modify(p, fd, key, r, w)?;
        }
        let s = &mut self.slots[i];
        s.interest = want;
        s.reported = false;
        Ok(())
    }

    /// Takes a readiness report from this iteration's wait: marks the registration that
    /// produced it disarmed, and returns the event it is for and the bits it waits for.
    /// A stale report is ignored: its slot was freed and reused (the generation in the key
    /// differs), or the fd was registered after the wait returned (the report came from
    /// the registration before; the new one is armed).
    fn take_report(&mut self, key: usize, bits: i32) -> Option<(EventId, i32)> {
        let i = EventId(key as u64).index();
        let iteration = self.iteration;
        let s = self.slots.get_mut(i)?;
        let id = EventId::new(i as u32, s.gen);
        if poll_key(id) != key || s.interest == 0 || s.reg_iter == iteration {
            return None;
        }
        s.reported = true;
        let et = bits & s.interest;
        (s.state == SlotState::Waiting && et != 0).then_some((id, et))
    }

    /// Re-arms the slot's registration if a report disarmed it and no callback re-armed it
    /// since. If the poller refuses, the event is finished and handed back, to be dropped
    /// outside the borrow: left disarmed, it would never fire again.
    fn rearm(&mut self, key: usize) -> Option<Box<Event>> {
        let i = EventId(key as u64).index();
        let s = self.slots.get(i)?;
        if !s.reported || s.state != SlotState::Waiting {
            return None;
        }
        let (interest, fd) = (s.interest, s.fd);
        let e = self.set_interest(i, interest).err()?;
        let id = self.slot_id(i);
        log::warn!("event {id} (fd {fd}): cannot re-arm its fd: {e}; event dropped");
        let ev = self.slots[i].ev.take();
        self.finish(i);
        ev
    }

    /// Removes the slot's fd from the poller (the fd stays recorded: a floating event keeps
    /// it, and `get_event_by_fd` still finds it).
    fn unregister(&mut self, i: usize) {
        let id = self.slot_id(i);
        let s = &mut self.slots[i];
        // Not ours in `by_fd`: our fd was closed and its number now belongs to a newer event,
        // whose registration this is; the kernel dropped ours with the close.
        if s.interest != 0 && s.fd >= 0 && self.by_fd.get(&s.fd) == Some(&id) {
            let _ = sys::poller_delete(&self.shared.poller, s.fd);
        }
        s.interest = 0;
        s.reported = false;
    }

    /// Forgets the slot's fd entirely: poller registration and `by_fd` entry.
    fn forget_fd(&mut self, i: usize) {
        self.unregister(i);
        let id = self.slot_id(i);
        let fd = std::mem::replace(&mut self.slots[i].fd, -1);
        if fd >= 0 && self.by_fd.get(&fd) == Some(&id) {
            self.by_fd.remove(&fd);
        }
    }

    /// Follows a change of the event's fd made while it was out of its slot
    /// ([`Event::take_fd`] off the scheduler thread, say): the old registration goes while
    /// the old number is still known (if that fd is closed already the delete fails, which
    /// is expected and ignored), `by_fd` follows, and the new fd starts unregistered — the
    /// caller registers it with the event's mask.
    fn sync_fd(&mut self, i: usize, fd: RawFd) {
        if self.slots[i].fd == fd {
            return;
        }
        self.forget_fd(i);
        self.slots[i].fd = fd;
        if fd >= 0 {
            let id = self.slot_id(i);
            self.by_fd.insert(fd, id);
        }
    }

    fn sync_timer(&mut self, i: usize, deadline: Option<Instant>) {
        let Some(t) = deadline else { return };
        let s = &self.slots[i];
        // An entry at or before the new deadline will fire first and re-check: nothing to push.
        if matches!(s.timer_at, Some(h) if h <= t) {
            return;
        }
        let was_armed = s.timer_at.is_some();
        let key = self.slot_id(i).0;
        let seq = self.timers.push(t, key);
        let s = &mut self.slots[i];
        s.timer_seq = seq;
        s.timer_at = Some(t);
        if !was_armed {
            self.armed += 1;
        }
    }

    fn disarm(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.timer_at.take().is_some() {
            s.timer_seq = 0;
            self.armed -= 1;
        }
    }

    fn free_slot(&mut self, i: usize) {
        self.disarm(i);
        self.forget_fd(i);
        let s = &mut self.slots[i];
        s.state = SlotState::Free;
        s.gen = s.gen.wrapping_add(1);
        s.ev = None;
        s.cancelled = false;
        self.free.push(i as u32);
    }

    fn finish(&mut self, i: usize) {
        self.free_slot(i);
        self.live -= 1;
    }

    fn valid(&self, id: EventId) -> Option<usize> {
        let i = id.index();
        match self.slots.get(i) {
            Some(s) if s.gen == id.gen() && s.state != SlotState::Free => Some(i),
            _ => None,
        }
    }

    fn take_for_dispatch(&mut self, id: EventId) -> Option<Box<Event>> {
        let i = self.valid(id)?;
        let s = &mut self.slots[i];
        if s.state != SlotState::Waiting {
            return None;
        }
        s.state = SlotState::Dispatching;
        s.ev.take()
    }

    fn after_dispatch(
        &mut self,
        mut ev: Box<Event>,
        result: std::thread::Result<i32>,
        now: Instant,
    ) -> After {
        let i = ev.id.index();
        // First: every path below (finish included) must act on the fd the event holds now.
        self.sync_fd(i, ev.fd());
        let mask = match result {
            Ok(m) => m,
            Err(p) => {
                log::error!(
                    "event {} (fd {}) panicked in its callback: {}; event dropped",
                    ev.id,
                    ev.fd(),
                    panic_message(&p)
                );
                0
            }
        };
        if mask == 0 || self.slots[i].cancelled {
            self.finish(i);
            return After::Drop(ev);
        }
        if let Some(h) = ev.float_to.take() {
            self.unregister(i);
            self.slots[i].state = SlotState::Floating;
            let handle = SchedulerHandle {
                shared: self.shared.clone(),
            };
            return After::Float(
                h,
                FloatedEvent {
                    ev: Some(ev),
                    handle,
                },
            );
        }
        if ev.timeout.is_none() {
            if let Some(p) = ev.period {
                ev.timeout = Some(now + p);
            }
        }
        if ev.fd.is_none() && ev.timeout.is_none() {
            log::debug!(
                "event {}: no fd and no deadline after its callback; finished",
                ev.id
            );
            self.finish(i);
            return After::Drop(ev);
        }
        ev.mask = mask;
        match self.put_back(ev, "callback") {
            Some(ev) => After::Drop(ev),
            None => After::Keep,
        }
    }

    /// Returns an event taken by `take_for_dispatch` to its slot, waiting for `ev.mask` until
    /// its deadline. Hands the event back, to be dropped outside the borrow, if it was cleared
    /// meanwhile or its mask cannot be registered.
    fn put_back(&mut self, ev: Box<Event>, after: &str) -> Option<Box<Event>> {
        let i = ev.id.index();
        self.sync_fd(i, ev.fd());
        if self.slots[i].cancelled {
            self.finish(i);
            return Some(ev);
        }
        if let Err(e) = self.set_interest(i, ev.mask) {
            log::warn!(
                "event {} (fd {}): cannot wait for mask {:#x} after its {after}: {e}; event dropped",
                ev.id,
                ev.fd(),
                ev.mask
            );
            self.finish(i);
            return Some(ev);
        }
        self.sync_timer(i, ev.timeout);
        let s = &mut self.slots[i];
        s.ev = Some(ev);
        s.state = SlotState::Waiting;
        None
    }

    fn next_due_timer(&mut self, now: Instant) -> Option<EventId> {
        while let Some(entry) = self.timers.pop_due(now) {
            let id = EventId(entry.key);
            let Some(i) = self.valid(id) else { continue };
            if self.slots[i].timer_seq != entry.seq {
                continue; // superseded by an earlier entry for the same event
            }
            self.disarm(i);
            if self.slots[i].state != SlotState::Waiting {
                continue; // floating: never reaped; re-armed when its E_ASYNC callback returns
            }
            let deadline = self.slots[i].ev.as_ref().and_then(|e| e.timeout);
            match deadline {
                None => continue,
                // Moved later: back in at its deadline, even one already due, so due timers
                // still fire in deadline order when the loop runs late.
                Some(t) if t > entry.deadline => self.sync_timer(i, Some(t)),
                Some(_) => {
                    if let Some(ev) = self.slots[i].ev.as_mut() {
                        ev.timeout = None;
                    }
                    return Some(id);
                }
            }
        }
        None
    }

    fn maybe_compact_timers(&mut self) {
        let stale = self.timers.len() - self.armed;
        if stale > 1024 && stale > self.armed {
            let slots = &self.slots;
            self.timers.compact(|e| {
                let id = EventId(e.key);
                slots.get(id.index()).is_some_and(|s| {
                    s.gen == id.gen() && s.state != SlotState::Free && s.timer_seq == e.seq
                })
            });
        }
    }

    /// Puts a floated event back and queues its `E_ASYNC` callback. Its deadline is not
    /// re-armed here: that callback runs first and sees it (see [`float_event`]). An event
    /// that is not floating here is handed back, to be dropped outside the borrow.
    fn resume(&mut self, mut ev: Box<Event>, mask: i32) -> Option<Box<Event>> {
        let id = ev.id;
        let Some(i) = self
            .valid(id)
            .filter(|&i| self.slots[i].state == SlotState::Floating)
        else {
            log::error!("resume: event {id} is not floating here; dropped");
            return Some(ev);
        };
        ev.float_to = None;
        self.sync_fd(i, ev.fd());
        self.slots[i].ev = Some(ev);
        self.slots[i].state = SlotState::Waiting;
        self.ready.push_back((id, E_ASYNC | mask));
        None
    }

    fn lost(&mut self, id: EventId) {
        if let Some(i) = self
            .valid(id)
            .filter(|&i| self.slots[i].state == SlotState::Floating)
        {
            log::debug!("floated event {id} dropped without resuming");
            self.finish(i);
        }
    }

    /// Removes a waiting event (returned, to be dropped outside the borrow) or marks a
    /// dispatching one for removal when its callback returns.
    fn clear(&mut self, id: EventId) -> (bool, Option<Box<Event>>) {
        let Some(i) = self.valid(id) else {
            return (false, None);
        };
        match self.slots[i].state {
            SlotState::Waiting => {
                let ev = self.slots[i].ev.take();
                self.finish(i);
                (true, ev)
            }
            SlotState::Dispatching => {
                self.slots[i].cancelled = true;
                (true, None)
            }
            _ => (false, None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The C entry points, on the calling thread's scheduler.
// ---------------------------------------------------------------------------------------------

/// Adds an event to this thread's scheduler: its fd is watched for `ev.mask` and its deadline
/// armed. Returns its id. On error the event is dropped (its fd closed).
/// C: `schedule_event()`.
///
/// # Panics
/// Off the scheduler thread.
pub fn schedule_event(ev: Event) -> io::Result<EventId> {
    let r = with_core("schedule_event", |c| {
        let now = c.clock();
        c.insert(Box::new(ev), now)
    });
    r.map_err(|(e, ev)| {
        drop_event(ev);
        e
    })
}

/// Adds `ev` and runs its callback once with `E_ASYNC` at the next iteration. From any thread
/// with a handle (see the module docs). C: `schedule_event_and_dispatch()`.
///
/// # Panics
/// On a thread with no scheduler handle.
pub fn schedule_event_and_dispatch(ev: Event) {
    let on_sched = CORE.with(|c| c.borrow().clone());
    if let Some(rc) = on_sched {
        let r = {
            let mut c = rc.borrow_mut();
            let now = c.clock();
            c.insert_and_dispatch(Box::new(ev), now)
        };
        r.unwrap_or_else(dispatch_refused);
        return;
    }
    home_handle("schedule_event_and_dispatch").schedule_event_and_dispatch(ev);
}

fn home_handle(caller: &str) -> SchedulerHandle {
    HOME.with(|h| h.borrow().clone()).unwrap_or_else(|| {
        panic!("{caller}: this thread has no scheduler handle (call SchedulerHandle::enter)")
    })
}

/// Builds and schedules a pure timer firing at `now + delay`. C: `build_event_from_now()` +
/// `schedule_event()`.
pub fn schedule_timer(delay: Duration, callback: EventCallback, closure: Box<Closure>) -> EventId {
    let now = with_core("schedule_timer", |c| c.clock());
    schedule_event(Event::build_event_from_now(now, delay, callback, closure))
        .expect("a timer without fd cannot fail to register")
}

/// Schedules `callback` every `interval` until it returns 0 or is cleared.
/// C: `schedule_recurring_function()`.
pub fn schedule_recurring(
    interval: Duration,
    callback: EventCallback,
    closure: Box<Closure>,
) -> EventId {
    let now = with_core("schedule_recurring", |c| c.clock());
    let mut ev = Event::build_event_from_now(now, interval, callback, closure);
    ev.period = Some(interval);
    schedule_event(ev).expect("a timer without fd cannot fail to register")
}

/// Removes a scheduled event (closing its fd). Called on an event whose callback is running,
/// the event is finished when that callback returns. `false` if the id is stale or floating.
/// C: `clear_timed_event()`.
pub fn clear_timed_event(id: EventId) -> bool {
    let (found, ev) = with_core("clear_timed_event", |c| c.clear(id));
    if let Some(ev) = ev {
        drop_event(ev);
    }
    found
}

/// Removes the event watching `fd` (closing it). C: `clear_event_by_fd()`.
pub fn clear_event_by_fd(fd: RawFd) -> bool {
    match get_event_by_fd(fd) {
        Some(id) => clear_timed_event(id),
        None => false,
    }
}

/// The event watching `fd`, if any (a floating event included). C: `get_event_by_fd()`.
pub fn get_event_by_fd(fd: RawFd) -> Option<EventId> {
    with_core("get_event_by_fd", |c| {
        let id = *c.by_fd.get(&fd)?;
        let i = c.valid(id)?;
        (c.slots[i].fd == fd).then_some(id)
    })
}

/// Called by [`Event::take_fd`] on an event whose callback (or [`with_event`] closure) is
/// running, or that floats, on this thread: the fd leaves the poller at once, while it is
/// surely still open, so it can be scheduled again in a new event at once. Elsewhere (a pool
/// thread) nothing happens here; the scheduler catches up when the event comes back.
pub(crate) fn fd_taken(id: EventId, fd: RawFd) {
    let Ok(Some(rc)) = CORE.try_with(|c| c.borrow().clone()) else {
        return;
    };
    let Ok(mut c) = rc.try_borrow_mut() else {
        return;
    };
    let out_of_slot = |s: &Slot| matches!(s.state, SlotState::Dispatching | SlotState::Floating);
    if let Some(i) = c.valid(id) {
        if out_of_slot(&c.slots[i]) && c.slots[i].fd == fd {
            c.forget_fd(i);
        }
    }
}

/// Asks for `e` to be floated when its callback returns: the fd leaves the poller and
/// `handoff` receives the event as an owned [`FloatedEvent`] (usually to give it to a pool).
/// Call from inside `e`'s callback; the mask the callback returns is then ignored (but must be
/// non-zero: returning 0 finishes the event instead). C: `float_event()`.
///
/// The deadline keeps running while the event floats but is never acted on: a floating event
/// is not reaped. When it is resumed, its `E_ASYNC` callback runs first, whether or not the
/// deadline passed meanwhile, and may move it (`e.timeout` shows it; modules usually reset
/// their idle timeout there). If that callback leaves a deadline that has passed, `E_TIMEOUT`
/// follows in the same iteration's timer phase (or a later one, if the per-iteration timer
/// cap is reached first).
pub fn float_event(e: &mut Event, handoff: FloatHandoff) {
    e.float_to = Some(handoff);
}

/// Runs `f` on a waiting event outside its callback (to read its state or move its deadline).
/// `None` if the id is stale, or the event is floating or running its callback.
///
/// `f` may clear the event ([`clear_timed_event`]): it is finished when `f` returns. A new
/// deadline or mask takes effect when `f` returns.
pub fn with_event<R>(id: EventId, f: impl FnOnce(&mut Event) -> R) -> Option<R> {
    let core = current_core("with_event");
    let mut ev = core.borrow_mut().take_for_dispatch(id)?;
    let r = catch_unwind(AssertUnwindSafe(|| f(&mut ev)));
    let finished = core.borrow_mut().put_back(ev, "with_event closure");
    if let Some(ev) = finished {
        drop_event(ev);
    }
    match r {
        Ok(r) => Some(r),
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Runs the event's callback with `eventtype` at the next iteration (as if it had fired).
pub fn wake_event(id: EventId, eventtype: i32) {
    with_core("wake_event", |c| c.ready.push_back((id, eventtype)));
}

/// The state of an event, for the console: `"waiting"`, `"running"` (its callback is on the
/// stack) or `"floating"`; `None` for a stale id.
pub fn event_state(id: EventId) -> Option<&'static str> {
    with_core("event_state", |c| {
        let i = c.valid(id)?;
        Some(match c.slots[i].state {
            SlotState::Waiting => "waiting",
            SlotState::Dispatching => "running",
            SlotState::Floating => "floating",
            SlotState::Free => return None,
        })
    })
}

/// True on a thread that owns a scheduler. C: `is_scheduler_thread()`.
pub fn is_scheduler_thread() -> bool {
    // try_with: false (not a panic) while thread-locals are being destroyed at thread exit.
    CORE.try_with(|c| c.borrow().is_some()).unwrap_or(false)
}

/// Wakes this thread's scheduler from its wait (any thread with a handle).
/// C: `ping_scheduler()`.
pub fn ping_scheduler() {
    home_handle("ping_scheduler").ping();
}

/// Makes [`Scheduler::run`] return after the current iteration.
pub fn stop_scheduler() {
    with_core("stop_scheduler", |c| c.stop = true);
}

/// The `now` of the current iteration (or the current time outside `run`).
pub fn scheduler_now() -> Instant {
    with_core("scheduler_now", |c| c.clock())
}

/// Entries in the timer heap, live and stale (for tests and the console).
pub fn timer_heap_len() -> usize {
    with_core("timer_heap_len", |c| c.timers.len())
}

/// Events currently scheduled, floating ones included.
pub fn live_events() -> usize {
    with_core("live_events", |c| c.live)
}

/// A handle to this thread's scheduler.
pub fn current_handle() -> SchedulerHandle {
    with_core("current_handle", |c| SchedulerHandle {
        shared: c.shared.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Signals, through a self-pipe
// ---------------------------------------------------------------------------------------------

/// Calls `cb` on the scheduler thread whenever `signo` arrives (HUP, TERM, INT…), replacing
/// an earlier callback for it. The signal handler only sets the signal's pending flag and
/// writes a wake-up byte into a self-pipe; the loop drains the pipe, then runs the callback of
/// every pending signal, in numeric order. Repeats of one signal before the loop gets to them
/// coalesce into one call (as the kernel's own pending signals do); a full pipe loses wake-up
/// bytes, never a signal. A panicking callback is logged, naming the signal, and delivery goes
/// on. Only one scheduler per process should own signals (the last to call this gets them).
///
/// `Err` if the pipe cannot be made or registered, or `signo` is not a signal number the
/// handler records (1 to 64).
pub fn on_signal(signo: i32, cb: SignalCallback) -> io::Result<()> {
    ensure_signal_pipe()?;
    sys::install_signal_handler(signo)?;
    with_core("on_signal", |c| {
        c.signals.retain(|(s, _)| *s != signo);
        c.signals.push((signo, cb));
    });
    Ok(())
}

/// Makes the self-pipe unless its read event is alive.
fn ensure_signal_pipe() -> io::Result<()> {
    let alive = with_core("on_signal", |c| {
        c.signal_event.is_some_and(|id| c.valid(id).is_some())
    });
    if alive {
        return Ok(());
    }
    let (r, w) = sys::pipe()?;
    // Register the read end before publishing the write end: no byte goes to a dead pipe.
    let id = schedule_event(Event::build_fd_event(
        r,
        E_READ,
        signal_pipe_cb,
        Box::new(()),
    ))?;
    sys::set_signal_pipe(w.as_raw_fd());
    let old = with_core("on_signal", |c| {
        c.signal_event = Some(id);
        c.signal_write.replace(w)
    });
    drop(old);
    Ok(())
}

/// Never returns 0 and never unwinds: the pipe's event must outlive every callback.
fn signal_pipe_cb(e: &mut Event, _et: i32, _cl: &mut Closure, now: Instant) -> i32 {
    let mut buf = [0u8; 64];
    // Drain first, then take the flags: a flag set after the drain comes with a new byte.
    while matches!(sys::read(e.fd(), &mut buf), Ok(n) if n > 0) {}
    for signo in sys::take_pending_signals() {
        let cbs: Vec<SignalCallback> = with_core("signal", |c| {
            c.signals
                .iter()
                .filter(|(s, _)| *s == signo)
                .map(|(_, f)| *f)
                .collect()
        });
        for cb in cbs {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(signo, now))) {
                log::error!(
                    "{} callback panicked: {}; signal delivery goes on",
                    signal_name(signo),
                    panic_message(&p)
                );
            }
        }
    }
    E_READ
}

fn signal_name(signo: i32) -> String {
    let name = match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("signal {signo}"),
    };
    format!("{name} ({signo})")
}

// ---------------------------------------------------------------------------------------------
// Thread pools, by name
// ---------------------------------------------------------------------------------------------

/// Default `IO` pool size (blocking disk work).
pub const IO_POOL_CONCURRENCY: usize = 4;

/// Default `CPU` pool size: one thread per CPU (2 when the count is unknown), within the
/// `ThreadPool` `Concurrency` range 1..=1024. The one definition: the configuration's default
/// for that pool ([`Schema::pool_default`](crate::config::Schema::pool_default)), which
/// `config eval` shows, and a pool created on first use both take it from here.
pub fn cpu_pool_concurrency() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 1024))
}

/// Creates the named pool on this scheduler, or returns the existing one unchanged: a pool's
/// concurrency and backlog are fixed when it is created (a different setting is logged and
/// takes effect on restart). `backlog` 0 means unbounded. After [`shutdown_pools`] the pool
/// returned is already shut down (it refuses every job) and is not kept.
/// C: thread pool configuration (`ThreadPool` stanzas).
pub fn configure_pool(name: &str, concurrency: usize, backlog: usize) -> Arc<ThreadPool> {
    let handle = current_handle();
    with_core("configure_pool", |c| {
        let key = name.to_ascii_lowercase();
        if c.pools_shut {
            let p = ThreadPool::new(name, concurrency, backlog, handle);
            p.shutdown();
            return Arc::new(p);
        }
        if let Some(p) = c.pools.get(&key) {
            if p.concurrency() == concurrency.max(1) && p.backlog() == backlog {
                return p.clone();
            }
            log::info!("thread pool {name}: concurrency/backlog change takes effect on restart");
            return p.clone();
        }
        let p = Arc::new(ThreadPool::new(name, concurrency, backlog, handle));
        c.pools.insert(key, p.clone());
        p
    })
}

/// The pool named `name` (case-insensitive). `IO` and `CPU` are created on first use.
/// `None` for an unknown name, and for every name after [`shutdown_pools`].
pub fn get_pool(name: &str) -> Option<Arc<ThreadPool>> {
    let key = name.to_ascii_lowercase();
    let (found, shut) = with_core("get_pool", |c| (c.pools.get(&key).cloned(), c.pools_shut));
    if shut || found.is_some() {
        return found;
    }
    match key.as_str() {
        "io" => Some(configure_pool("IO", IO_POOL_CONCURRENCY, 0)),
        "cpu" => Some(configure_pool("CPU", cpu_pool_concurrency(), 0)),
        _ => None,
    }
}

/// Submits `job` to the named pool (blocking while its backlog is full). `Err(job)` if there is
/// no such pool or it is shut down. C: `ec_async_job` submission.
pub fn threadpool_submit(pool: &str, job: Job) -> Result<(), Job> {
    match get_pool(pool) {
        Some(p) => p.submit(job),
        None => Err(job),
    }
}

/// Statistics of every pool on this scheduler (for the console's `threads stats`).
pub fn pool_stats() -> Vec<PoolStats> {
    let mut v: Vec<PoolStats> = with_core("pool_stats", |c| {
        c.pools.values().map(|p| p.stats()).collect()
    });
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Shuts every pool down: queued jobs that ask to be drained run, the others are dropped,
/// and the workers are joined. From then on [`get_pool`] finds no pool and
/// [`threadpool_submit`] refuses every job (nothing would join new workers).
pub fn shutdown_pools() {
    let pools: Vec<Arc<ThreadPool>> = with_core("shutdown_pools", |c| {
        c.pools_shut = true;
        c.pools.drain().map(|(_, p)| p).collect()
    });
    for p in pools {
        p.shutdown();
    }
}
