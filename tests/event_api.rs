//! Black-box tests of the event API: callbacks, timers, floating, pools, panics, idle timers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event, EventId, Io, E_ASYNC, E_READ, E_TIMEOUT};
use netlistener::scheduler::*;
use netlistener::threadpool::{Completion, Job};

#[path = "util/deadline.rs"]
mod deadline;
use deadline::{accept_within, run_with_deadline, wait_within};

thread_local! {
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn note(s: impl Into<String>) {
    LOG.with(|l| l.borrow_mut().push(s.into()));
}
fn notes() -> Vec<String> {
    LOG.with(|l| l.borrow().clone())
}

fn stop_cb(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    stop_scheduler();
    0
}

fn owned(s: impl Into<OwnedFd>) -> OwnedFd {
    s.into()
}

/// The peer end must see the close: EOF, or a reset when data was left unread.
fn assert_closed(b: &mut impl Read, what: &str) {
    let mut buf = [0u8; 8];
    match b.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected EOF/reset, got {other:?}"),
    }
}

// --- callback swap (listener -> worker) -------------------------------------------------

fn worker(e: &mut Event, et: i32, closure: &mut Closure, _now: Instant) -> i32 {
    let seen = closure.downcast_mut::<Vec<u8>>().unwrap();
    let mut buf = [0u8; 64];
    match e.read(&mut buf) {
        Io::Done(n) => {
            seen.extend_from_slice(&buf[..n]);
            note(format!("worker et={et}"));
            if seen.ends_with(b"\n") {
                stop_scheduler();
                return 0;
            }
            E_READ
        }
        Io::Wait(m) => m,
        _ => 0,
    }
}

fn listener(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    note("listener");
    e.callback = worker;
    worker(e, et, closure, now)
}

#[test]
fn callback_swap_listener_to_worker() {
    let s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        listener,
        Box::new(Vec::<u8>::new()),
    ))
    .unwrap();
    b.write_all(b"one").unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        b.write_all(b" two\n").unwrap();
        b
    });
    run_with_deadline(&s, 10);
    writer.join().unwrap();
    let n = notes();
    assert_eq!(n[0], "listener");
    assert_eq!(
        n.iter().filter(|x| *x == "listener").count(),
        1,
        "listener ran once: {n:?}"
    );
    assert!(n.len() >= 3, "worker ran for each read: {n:?}");
}

// --- returning 0 closes the fd ------------------------------------------------------------

fn close_at_once(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    stop_scheduler();
    0
}

#[test]
fn returning_zero_closes_the_fd() {
    let s = Scheduler::new().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let server = accept_within(&l, Duration::from_secs(10));
    client.write_all(b"x").unwrap();
    let id = schedule_event(Event::build_fd_event(
        owned(server),
        E_READ,
        close_at_once,
        Box::new(()),
    ))
    .unwrap();
    run_with_deadline(&s, 10);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 8];
    // The server side was closed with unread data pending: EOF or a reset, never a hang.
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF/reset after the event finished, got {other:?}"),
    }
    assert!(!clear_timed_event(id), "the finished event's id is stale");
    assert_eq!(live_events(), 0);
}

// --- cross-thread dispatch -------------------------------------------------------------

fn async_cb(_e: &mut Event, et: i32, closure: &mut Closure, _now: Instant) -> i32 {
    let from = closure.downcast_mut::<std::thread::ThreadId>().unwrap();
    assert_ne!(*from, std::thread::current().id());
    note(format!("async et={et:#x} sched={}", is_scheduler_thread()));
    stop_scheduler();
    0
}

#[test]
fn schedule_event_and_dispatch_from_another_thread() {
    let s = Scheduler::new().unwrap();
    let h = s.handle();
    let t = std::thread::spawn(move || {
        assert!(!h.is_scheduler_thread());
        std::thread::sleep(Duration::from_millis(20));
        let me = std::thread::current().id();
        h.schedule_event_and_dispatch(Event::build_async_event(async_cb, Box::new(me)));
    });
    run_with_deadline(&s, 10);
    t.join().unwrap();
    assert_eq!(notes(), vec![format!("async et={E_ASYNC:#x} sched=true")]);
}

// --- float -> pool -> resume ------------------------------------------------------------

struct Session {
    log: Vec<String>,
    worker_thread: Option<std::thread::ThreadId>,
}

fn float_cb(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let sess = closure.downcast_mut::<Session>().unwrap();
    if et & E_ASYNC != 0 {
        sess.log.push(format!("resumed et={et:#x}"));
        assert!(is_scheduler_thread());
        note(sess.log.join(","));
        stop_scheduler();
        return 0;
    }
    if et & E_TIMEOUT != 0 {
        note("reaped by timeout");
        stop_scheduler();
        return 0;
    }
    sess.log.push("floating".into());
    // A timeout much shorter than the job: a floated event must not be reaped by it.
    e.set_timeout(now, Some(Duration::from_millis(20)));
    float_event(e, to_pool);
    E_READ
}

fn to_pool(mut fe: FloatedEvent) {
    let job = Job::new(move || {
        std::thread::sleep(Duration::from_millis(150));
        let s = fe.closure_mut::<Session>();
        s.worker_thread = Some(std::thread::current().id());
        s.log.push("job".into());
        Completion::Resume(fe, E_READ)
    });
    assert!(threadpool_submit("IO", job).is_ok());
}

#[test]
fn float_to_pool_and_resume_outliving_timeout() {
    let s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"go").unwrap();
    let sess = Session {
        log: vec![],
        worker_thread: None,
    };
    schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        float_cb,
        Box::new(sess),
    ))
    .unwrap();
    run_with_deadline(&s, 10);
    assert_eq!(
        notes(),
        vec![format!("floating,job,resumed et={:#x}", E_ASYNC | E_READ)]
    );
    let stats = pool_stats();
    assert_eq!(stats[0].name, "IO");
    assert_eq!(stats[0].completed, 1);
    shutdown_pools();
}

// --- a floated event dropped without resuming frees its slot and closes its fd ----------

fn float_and_lose(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    float_event(e, |fe| {
        let job = Job::new(move || {
            drop(fe); // lost: never resumed
            Completion::OnScheduler(Box::new(stop_scheduler))
        });
        threadpool_submit("IO", job).ok().unwrap();
    });
    E_READ
}

#[test]
fn lost_floated_event_is_finished() {
    let s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"x").unwrap();
    schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        float_and_lose,
        Box::new(()),
    ))
    .unwrap();
    run_with_deadline(&s, 10);
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_closed(&mut b, "fd closed by the drop on the pool thread");
    // The Lost message may arrive in the same iteration as the stop; run once more to drain.
    schedule_timer(Duration::from_millis(20), stop_cb, Box::new(()));
    run_with_deadline(&s, 10);
    assert_eq!(live_events(), 0);
    shutdown_pools();
}

// --- panic isolation -------------------------------------------------------------------

fn panicking(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    panic!("boom in a callback");
}

fn survivor(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    note("survivor ran");
    stop_scheduler();
    0
}

#[test]
fn panic_in_callback_drops_only_that_event() {
    let s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"x").unwrap();
    schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        panicking,
        Box::new(()),
    ))
    .unwrap();
    schedule_timer(Duration::from_millis(30), survivor, Box::new(()));
    run_with_deadline(&s, 10);
    assert_eq!(notes(), vec!["survivor ran"]);
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_closed(&mut b, "the panicking event's fd was closed");
    assert_eq!(live_events(), 0);
}

// --- timers: cap per iteration, FIFO, cancel, recurring ---------------------------------

thread_local! {
    static ITER: Cell<u32> = const { Cell::new(0) };
    static FIRED_AT: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

fn iteration_counter(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let _ = e; // unread data in the pipe: reported again on every iteration
    ITER.with(|i| i.set(i.get() + 1));
    E_READ
}

fn counted_timer(_e: &mut Event, _et: i32, c: &mut Closure, _now: Instant) -> i32 {
    let k = *c.downcast_mut::<u32>().unwrap();
    FIRED_AT.with(|f| f.borrow_mut().push(ITER.with(|i| i.get())));
    note(format!("{k}"));
    if k == 99 {
        stop_scheduler();
    }
    0
}

#[test]
fn timers_are_capped_per_iteration_and_fifo() {
    let s = Scheduler::new().unwrap();
    s.set_timers_per_iteration(10);
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"x").unwrap();
    schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        iteration_counter,
        Box::new(()),
    ))
    .unwrap();
    let now = Instant::now();
    for k in 0..100u32 {
        // Same deadline for all: they must fire in insertion order.
        schedule_event(Event::build_event_from_now(
            now,
            Duration::from_millis(5),
            counted_timer,
            Box::new(k),
        ))
        .unwrap();
    }
    run_with_deadline(&s, 10);
    let order: Vec<u32> = notes().iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(
        order,
        (0..100).collect::<Vec<_>>(),
        "FIFO among equal deadlines"
    );
    let fired = FIRED_AT.with(|f| f.borrow().clone());
    let mut per_iter = std::collections::HashMap::new();
    for it in fired {
        *per_iter.entry(it).or_insert(0) += 1;
    }
    assert!(
        per_iter.values().all(|&n| n <= 10),
        "at most 10 timers per iteration: {per_iter:?}"
    );
    assert!(
        per_iter.len() >= 10,
        "I/O ran between timer batches: {per_iter:?}"
    );
}

fn recurring_cb(_e: &mut Event, et: i32, c: &mut Closure, _now: Instant) -> i32 {
    assert_eq!(et, E_TIMEOUT);
    let n = c.downcast_mut::<u32>().unwrap();
    *n += 1;
    if *n == 3 {
        note("third");
        stop_scheduler();
        return 0;
    }
    E_TIMEOUT
}

fn never(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    panic!("a cancelled timer fired");
}

#[test]
fn recurring_and_cancelled_timers() {
    let s = Scheduler::new().unwrap();
    let t0 = Instant::now();
    schedule_recurring(Duration::from_millis(10), recurring_cb, Box::new(0u32));
    let c = schedule_timer(Duration::from_millis(5), never, Box::new(()));
    assert!(clear_timed_event(c));
    assert!(
        !clear_timed_event(c),
        "second clear of the same id is refused"
    );
    run_with_deadline(&s, 10);
    assert_eq!(notes(), vec!["third"]);
    assert!(
        t0.elapsed() >= Duration::from_millis(30),
        "three periods elapsed at least"
    );
}

// --- order among ready fds: first come, first served ---------------------------------------

fn drain_and_note(e: &mut Event, _et: i32, c: &mut Closure, _now: Instant) -> i32 {
    let mut buf = [0u8; 16];
    assert!(
        matches!(e.read(&mut buf), Io::Done(1)),
        "one byte per wake-up"
    );
    note(*c.downcast_ref::<&str>().unwrap());
    if notes().len() == 4 {
        stop_scheduler();
    }
    E_READ
}

/// A and B are ready at registration (reported A, B); after both were served, a timer (due
/// at once, so it fires in the same iteration, after the fds) makes B ready, then A. They
/// must then be served B, A: in the order they became ready, not in the order they were
/// reported before (which is what a level-triggered epoll keeps: a connection served late
/// stays late, and its requests wait an extra turn).
#[test]
fn ready_fds_are_served_in_the_order_they_became_ready() {
    let s = Scheduler::new().unwrap();
    let (a, mut pa) = UnixStream::pair().unwrap();
    let (b, mut pb) = UnixStream::pair().unwrap();
    pa.write_all(b"1").unwrap();
    pb.write_all(b"1").unwrap();
    for (fd, name) in [(a, "A"), (b, "B")] {
        let ev = Event::build_fd_event(owned(fd), E_READ, drain_and_note, Box::new(name));
        schedule_event(ev).unwrap();
    }
    // `write_to_peers` writes to B's peer, then A's.
    PEERS.with(|p| *p.borrow_mut() = vec![pb, pa]);
    schedule_timer(Duration::ZERO, write_to_peers, Box::new(()));
    run_with_deadline(&s, 10);
    assert_eq!(notes(), vec!["A", "B", "B", "A"]);
}

fn count_reports(e: &mut Event, _et: i32, c: &mut Closure, _now: Instant) -> i32 {
    let n = c.downcast_mut::<u32>().unwrap();
    *n += 1;
    let mut buf = [0u8; 1];
    match e.read(&mut buf) {
        Io::Done(1) => note(format!("report {n}")),
        // A note, not a panic: the scheduler would catch a panic and drop the event, and
        // the notes would still look right.
        other => note(format!("report {n} of a drained fd: {other:?}")),
    }
    E_READ
}

/// Level-triggered semantics over oneshot registrations: a byte left unread is reported
/// again on the next wait (until none is left), and a drained fd is not reported again.
#[test]
fn unread_data_is_reported_again_and_a_drained_fd_is_not() {
    let s = Scheduler::new().unwrap();
    let (a, mut pa) = UnixStream::pair().unwrap();
    pa.write_all(b"xyz").unwrap();
    let ev = Event::build_fd_event(owned(a), E_READ, count_reports, Box::new(0u32));
    schedule_event(ev).unwrap();
    schedule_timer(Duration::from_millis(100), stop_cb, Box::new(()));
    run_with_deadline(&s, 10);
    assert_eq!(notes(), vec!["report 1", "report 2", "report 3"]);
    drop(pa);
}

// --- clear / get by fd ----------------------------------------------------------------

#[test]
fn get_and_clear_event_by_fd() {
    let _s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
    let id = schedule_event(Event::build_fd_event(owned(a), E_READ, never, Box::new(()))).unwrap();
    assert_eq!(get_event_by_fd(fd), Some(id));
    assert!(clear_event_by_fd(fd));
    assert_eq!(get_event_by_fd(fd), None);
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    assert_eq!(with_event(id, |_| ()), None::<()>);
}

// --- contract violations ---------------------------------------------------------------

thread_local! {
    static SCHED: RefCell<Option<std::rc::Rc<Scheduler>>> = const { RefCell::new(None) };
}

fn reenter(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let s = SCHED.with(|s| s.borrow().clone()).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run()));
    let msg = r.err().and_then(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
    });
    note(msg.unwrap_or_default());
    stop_scheduler();
    0
}

#[test]
fn reentrant_run_panics_clearly() {
    let s = std::rc::Rc::new(Scheduler::new().unwrap());
    SCHED.with(|x| *x.borrow_mut() = Some(s.clone()));
    schedule_timer(Duration::from_millis(1), reenter, Box::new(()));
    run_with_deadline(&s, 10);
    SCHED.with(|x| *x.borrow_mut() = None);
    assert!(
        notes()[0].contains("Scheduler::run: called re-entrantly"),
        "{:?}",
        notes()
    );
}

#[test]
fn free_functions_off_the_scheduler_thread_panic() {
    let r =
        std::thread::spawn(|| schedule_timer(Duration::from_secs(1), never, Box::new(()))).join();
    let p = r.expect_err("must panic");
    let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("schedule_timer: not on a scheduler thread"),
        "{msg}"
    );
}

/// The slot index inside an id (its low half), to show that a slot was reused.
fn slot_of(id: EventId) -> u64 {
    id.as_u64() & 0xffff_ffff
}

// --- stale readiness ---------------------------------------------------------------------

thread_local! {
    static PAIR_IDS: RefCell<Vec<EventId>> = const { RefCell::new(Vec::new()) };
    static PEERS: RefCell<Vec<UnixStream>> = const { RefCell::new(Vec::new()) };
}

fn newcomer(_e: &mut Event, et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    note(format!("newcomer ran et={et:#x}"));
    E_READ
}

/// Whichever of the two readable events runs first clears the other, whose readiness is in
/// the same batch, and schedules an event that is not readable; LIFO slot reuse gives the
/// newcomer the cleared event's slot.
fn clear_the_other(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let mut buf = [0u8; 8];
    let _ = e.read(&mut buf);
    let ids = PAIR_IDS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if let Some(&other) = ids.iter().find(|&&id| id != e.id()) {
        assert!(clear_timed_event(other));
        let (x, y) = UnixStream::pair().unwrap();
        PEERS.with(|p| p.borrow_mut().push(y));
        let id = schedule_event(Event::build_fd_event(
            owned(x),
            E_READ,
            newcomer,
            Box::new(()),
        ));
        let id = id.unwrap();
        note(format!("slot reused: {}", slot_of(id) == slot_of(other)));
    }
    E_READ
}

#[test]
fn readiness_of_a_cleared_event_never_reaches_the_event_reusing_its_slot() {
    let s = Scheduler::new().unwrap();
    let (a, mut pa) = UnixStream::pair().unwrap();
    let (b, mut pb) = UnixStream::pair().unwrap();
    pa.write_all(b"x").unwrap();
    pb.write_all(b"y").unwrap();
    let ia = schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        clear_the_other,
        Box::new(()),
    ));
    let ib = schedule_event(Event::build_fd_event(
        owned(b),
        E_READ,
        clear_the_other,
        Box::new(()),
    ));
    PAIR_IDS.with(|p| *p.borrow_mut() = vec![ia.unwrap(), ib.unwrap()]);
    schedule_timer(Duration::from_millis(100), stop_cb, Box::new(()));
    run_with_deadline(&s, 10);
    // The newcomer's socket was never written to: any dispatch is the cleared event's.
    assert_eq!(notes(), vec!["slot reused: true"]);
    PEERS.with(|p| p.borrow_mut().clear());
}

// --- an fd given up by its event ------------------------------------------------------------

fn read_and_stop(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let mut buf = [0u8; 8];
    note(format!("new owner read {:?}", e.read(&mut buf)));
    stop_scheduler();
    0
}

/// Hands its fd to a new event from inside its own callback, then finishes.
fn hand_fd_over(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let fd = e.take_fd().unwrap();
    let raw = fd.as_raw_fd();
    let r = schedule_event(Event::build_fd_event(
        fd,
        E_READ,
        read_and_stop,
        Box::new(()),
    ));
    note(format!("rescheduled: {}", r.is_ok()));
    if let Ok(id) = r {
        note(format!("found by fd: {}", get_event_by_fd(raw) == Some(id)));
    }
    0 // finished: it holds no fd any more, so nothing closes
}

#[test]
fn an_fd_taken_in_a_callback_can_be_scheduled_again_at_once() {
    let s = Scheduler::new().unwrap();
    let (a, mut pa) = UnixStream::pair().unwrap();
    pa.write_all(b"x").unwrap();
    schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        hand_fd_over,
        Box::new(()),
    ))
    .unwrap();
    run_with_deadline(&s, 10);
    assert_eq!(
        notes(),
        vec![
            "rescheduled: true",
            "found by fd: true",
            "new owner read Done(1)"
        ]
    );
}

thread_local! {
    static REUSE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Closes its fd and, if the number comes straight back for a new socket (it is the lowest
/// free one unless another test thread takes it first), schedules a new event on it; then
/// returns a mask with neither fd nor deadline left, so it is finished.
fn close_and_reuse_number(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let old = e.take_fd().unwrap();
    let raw = old.as_raw_fd();
    drop(old);
    let (x, y) = UnixStream::pair().unwrap();
    let reused = x.as_raw_fd() == raw;
    REUSE.with(|r| r.set(Some(reused)));
    if reused {
        PEERS.with(|p| p.borrow_mut().push(y));
        let ev = Event::build_fd_event(owned(x), E_READ, read_and_stop, Box::new(()));
        schedule_event(ev).unwrap();
    } else {
        stop_scheduler();
    }
    E_READ
}

fn write_to_peers(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    PEERS.with(|p| {
        p.borrow_mut()
            .iter_mut()
            .for_each(|y| y.write_all(b"z").unwrap())
    });
    0
}

#[test]
fn finishing_an_event_after_take_fd_leaves_its_old_fd_number_alone() {
    let s = Scheduler::new().unwrap();
    for _attempt in 0..50 {
        let (a, mut pa) = UnixStream::pair().unwrap();
        pa.write_all(b"x").unwrap();
        let ev = Event::build_fd_event(owned(a), E_READ, close_and_reuse_number, Box::new(()));
        schedule_event(ev).unwrap();
        // The write comes after the first event finished; the new owner must still see it.
        let w = schedule_timer(Duration::from_millis(30), write_to_peers, Box::new(()));
        run_with_deadline(&s, 10);
        clear_timed_event(w);
        if REUSE.with(|r| r.get()) == Some(true) {
            assert_eq!(notes(), vec!["new owner read Done(1)"]);
            assert_eq!(live_events(), 0);
            return;
        }
    }
    panic!("the fd number was never reused in 50 attempts");
}

struct Taken {
    raw: RawFd,
}

fn float_and_take_fd(e: &mut Event, et: i32, c: &mut Closure, _now: Instant) -> i32 {
    if et & E_ASYNC != 0 {
        let raw = c.downcast_mut::<Taken>().unwrap().raw;
        note(format!("fd {} after resume", e.fd()));
        note(format!("found by old fd: {:?}", get_event_by_fd(raw)));
        stop_scheduler();
        return 0;
    }
    c.downcast_mut::<Taken>().unwrap().raw = e.fd();
    float_event(e, |mut fe| {
        let job = Job::new(move || {
            drop(fe.event().take_fd()); // closed on the pool thread
            Completion::Resume(fe, 0)
        });
        threadpool_submit("IO", job).ok().unwrap();
    });
    E_READ
}

#[test]
fn an_fd_taken_while_floating_is_forgotten_on_resume() {
    let s = Scheduler::new().unwrap();
    let (a, mut pa) = UnixStream::pair().unwrap();
    pa.write_all(b"x").unwrap();
    let ev = Event::build_fd_event(
        owned(a),
        E_READ,
        float_and_take_fd,
        Box::new(Taken { raw: -1 }),
    );
    schedule_event(ev).unwrap();
    run_with_deadline(&s, 10);
    assert_eq!(notes(), vec!["fd -1 after resume", "found by old fd: None"]);
    shutdown_pools();
}

#[test]
fn an_fd_taken_in_with_event_is_forgotten_at_once() {
    let s = Scheduler::new().unwrap();
    let (a, mut pa) = UnixStream::pair().unwrap();
    let raw = a.as_raw_fd();
    let id = schedule_event(Event::build_fd_event(owned(a), E_READ, never, Box::new(()))).unwrap();
    let fd = with_event(id, |e| e.take_fd()).flatten().unwrap();
    assert_eq!(get_event_by_fd(raw), None);
    let ev = Event::build_fd_event(fd, E_READ, read_and_stop, Box::new(()));
    let new = schedule_event(ev).expect("the taken fd registers again");
    assert_eq!(get_event_by_fd(raw), Some(new));
    pa.write_all(b"x").unwrap();
    run_with_deadline(&s, 10);
    assert_eq!(notes(), vec!["new owner read Done(1)"]);
    // The old event is a pure, deadline-less waiter now; clearing it closes nothing.
    assert!(clear_timed_event(id));
    assert_eq!(live_events(), 0);
}

// --- clearing from with_event and from the event's own callback ------------------------------

#[test]
fn clear_timed_event_inside_with_event_finishes_the_event() {
    let _s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut ev = Event::build_fd_event(owned(a), E_READ, never, Box::new(()));
    ev.set_timeout(Instant::now(), Some(Duration::from_secs(60)));
    let id = schedule_event(ev).unwrap();
    assert_eq!(with_event(id, |_| clear_timed_event(id)), Some(true));
    assert_eq!(event_state(id), None);
    assert_eq!(live_events(), 0);
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_closed(&mut b, "the cleared event's fd was closed");
}

fn clear_myself(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    note(format!("cleared: {}", clear_timed_event(e.id())));
    E_READ // ignored: the event was cleared
}

#[test]
fn a_callback_clearing_its_own_event_finishes_it() {
    let s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"x").unwrap(); // left unread: in level mode it would fire on every iteration
    schedule_event(Event::build_fd_event(
        owned(a),
        E_READ,
        clear_myself,
        Box::new(()),
    ))
    .unwrap();
    schedule_timer(Duration::from_millis(50), stop_cb, Box::new(()));
    run_with_deadline(&s, 10);
    assert_eq!(notes(), vec!["cleared: true"], "ran once");
    assert_eq!(live_events(), 0);
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_closed(&mut b, "the event's fd was closed");
}

// --- panics in closure destructors ------------------------------------------------------------

struct PanicsOnDrop;
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a closure's destructor panicked");
    }
}

fn finish_at_once(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    0
}

#[test]
fn a_panicking_closure_destructor_does_not_stop_the_loop() {
    let s = Scheduler::new().unwrap();
    schedule_timer(
        Duration::from_millis(1),
        finish_at_once,
        Box::new(PanicsOnDrop),
    );
    schedule_timer(Duration::from_millis(30), survivor, Box::new(()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_with_deadline(&s, 10)));
    assert!(r.is_ok(), "Scheduler::run unwound");
    assert_eq!(notes(), vec!["survivor ran"]);
    assert_eq!(live_events(), 0);
}

struct CallsSchedulerOnDrop;
impl Drop for CallsSchedulerOnDrop {
    fn drop(&mut self) {
        note(format!("dropped, {} live", live_events()));
    }
}

/// epoll refuses regular files (EPERM); kqueue accepts them, so this registration failure
/// has no portable equivalent.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn a_registration_error_drops_the_event_outside_the_scheduler_borrow() {
    let _s = Scheduler::new().unwrap();
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let ev = Event::build_fd_event(owned(file), E_READ, never, Box::new(CallsSchedulerOnDrop));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| schedule_event(ev)));
    let r = r.expect("schedule_event must not panic");
    assert!(r.is_err(), "a regular file cannot be polled: {r:?}");
    assert_eq!(notes(), vec!["dropped, 0 live"]);
}

// --- a deadline that passes while floating -------------------------------------------------

struct FloatLog {
    move_on_resume: Option<Duration>,
    resumed_at: Option<Instant>,
}

fn float_past_deadline(e: &mut Event, et: i32, c: &mut Closure, now: Instant) -> i32 {
    let fl = c.downcast_mut::<FloatLog>().unwrap();
    if et & E_ASYNC != 0 {
        let passed = e.timeout.is_some_and(|t| t <= now);
        note(format!("async, deadline passed: {passed}"));
        fl.resumed_at = Some(now);
        if let Some(d) = fl.move_on_resume {
            e.set_timeout(now, Some(d));
        }
        return E_READ;
    }
    if et & E_TIMEOUT != 0 {
        note("timeout");
        if let (Some(d), Some(at)) = (fl.move_on_resume, fl.resumed_at) {
            note(format!("not before the moved deadline: {}", now >= at + d));
        }
        stop_scheduler();
        return 0;
    }
    let mut buf = [0u8; 8];
    let _ = e.read(&mut buf);
    note("floating");
    e.set_timeout(now, Some(Duration::from_millis(20)));
    float_event(e, |fe| {
        let job = Job::new(move || {
            std::thread::sleep(Duration::from_millis(100)); // outlives the 20 ms deadline
            Completion::Resume(fe, 0)
        });
        threadpool_submit("IO", job).ok().unwrap();
    });
    E_READ
}

fn run_float_past_deadline(move_on_resume: Option<Duration>) -> Vec<String> {
    let s = Scheduler::new().unwrap();
    let (a, mut pa) = UnixStream::pair().unwrap();
    pa.write_all(b"x").unwrap();
    let fl = FloatLog {
        move_on_resume,
        resumed_at: None,
    };
    let ev = Event::build_fd_event(owned(a), E_READ, float_past_deadline, Box::new(fl));
    schedule_event(ev).unwrap();
    run_with_deadline(&s, 10);
    shutdown_pools();
    notes()
}

#[test]
fn a_deadline_passed_while_floating_fires_after_the_resume_callback() {
    let got = run_float_past_deadline(None);
    let want = ["floating", "async, deadline passed: true", "timeout"];
    assert_eq!(got, want);
}

#[test]
fn the_resume_callback_may_move_a_deadline_passed_while_floating() {
    let got = run_float_past_deadline(Some(Duration::from_millis(50)));
    let want = [
        "floating",
        "async, deadline passed: true",
        "timeout",
        "not before the moved deadline: true",
    ];
    assert_eq!(got, want);
}

// --- timers against a naive model ------------------------------------------------------------

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What the scheduler should do: every live timer fires once, in deadline order, never
/// before its deadline; cancelled ones never fire.
struct Model {
    rng: Rng,
    live: BTreeMap<u32, (EventId, Instant)>,
    fired: Vec<Instant>,
    errors: Vec<String>,
    next_key: u32,
    spawn_limit: u32,
}

thread_local! {
    static MODEL: RefCell<Option<Model>> = const { RefCell::new(None) };
}

/// A deadline unique per key (the key in nanoseconds breaks every tie), so the expected
/// order is the deadline order.
fn model_deadline(from: Instant, ms: u64, key: u32) -> Instant {
    from + Duration::from_millis(ms) + Duration::from_nanos(key as u64)
}

impl Model {
    fn spawn(&mut self, from: Instant, ms: u64) {
        let key = self.next_key;
        self.next_key += 1;
        let at = model_deadline(from, ms, key);
        let ev = Event::build_event_from_now(at, Duration::ZERO, model_cb, Box::new(key));
        self.live.insert(key, (schedule_event(ev).unwrap(), at));
    }

    fn pick(&mut self) -> Option<u32> {
        let n = self.live.len() as u64;
        (n > 0).then(|| *self.live.keys().nth(self.rng.below(n) as usize).unwrap())
    }

    fn cancel_one(&mut self) {
        if let Some(k) = self.pick() {
            let (id, _) = self.live.remove(&k).unwrap();
            if !clear_timed_event(id) {
                self.errors.push(format!("timer {k}: clear refused"));
            }
        }
    }

    /// Moves a live timer's deadline, earlier or later, to `from + ms`.
    fn move_one(&mut self, from: Instant, ms: u64) {
        if let Some(k) = self.pick() {
            let at = model_deadline(from, ms, k);
            let entry = self.live.get_mut(&k).unwrap();
            entry.1 = at;
            if with_event(entry.0, |e| e.timeout = Some(at)).is_none() {
                self.errors.push(format!("timer {k}: with_event refused"));
            }
        }
    }

    /// Records a firing; then, at random, schedules, moves or cancels others (always to a
    /// deadline after `now`, so the deadline order stays the firing order).
    fn on_fire(&mut self, key: u32, et: i32, now: Instant) {
        match self.live.remove(&key) {
            None => self
                .errors
                .push(format!("timer {key} fired but is not live")),
            Some((_, at)) if et != E_TIMEOUT || now < at => self.errors.push(format!(
                "timer {key}: et {et:#x}, fired early: {}",
                now < at
            )),
            Some((_, at)) => self.fired.push(at),
        }
        match self.rng.below(10) {
            0..=2 if self.next_key < self.spawn_limit => {
                let ms = 1 + self.rng.below(50);
                self.spawn(now, ms);
            }
            3 | 4 => {
                let ms = 1 + self.rng.below(50);
                self.move_one(now, ms);
            }
            5 => self.cancel_one(),
            _ => {}
        }
    }
}

fn model_cb(_e: &mut Event, et: i32, c: &mut Closure, now: Instant) -> i32 {
    let key = *c.downcast_mut::<u32>().unwrap();
    MODEL.with(|m| {
        let mut m = m.borrow_mut();
        let m = m.as_mut().unwrap();
        m.on_fire(key, et, now);
        if m.live.is_empty() {
            stop_scheduler();
        }
    });
    0
}

#[test]
fn timers_match_a_naive_model_under_schedule_move_cancel_and_reuse() {
    let s = Scheduler::new().unwrap();
    let base = Instant::now();
    let mut m = Model {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        live: BTreeMap::new(),
        fired: Vec::new(),
        errors: Vec::new(),
        next_key: 0,
        spawn_limit: 8_000,
    };
    for _ in 0..3_000 {
        let ms = m.rng.below(200);
        m.spawn(base, ms);
    }
    // Enough cancels that stale heap entries outnumber live ones: the loop compacts the heap.
    for _ in 0..1_500 {
        m.cancel_one();
    }
    for _ in 0..500 {
        let ms = m.rng.below(300);
        m.move_one(base, ms);
    }
    for _ in 0..1_000 {
        let ms = m.rng.below(200);
        m.spawn(base, ms); // into the slots the cancels freed
    }
    MODEL.with(|x| *x.borrow_mut() = Some(m));
    run_with_deadline(&s, 30);
    let m = MODEL.with(|x| x.borrow_mut().take()).unwrap();
    assert_eq!(m.errors, Vec::<String>::new());
    assert!(m.live.is_empty(), "{} timers never fired", m.live.len());
    assert!(m.fired.len() > 2_000, "only {} timers fired", m.fired.len());
    let bad: Vec<_> = m
        .fired
        .windows(2)
        .enumerate()
        // Equal deadlines are in order either way (two spawned in one callback with the
        // same `now` and delay): only a later deadline before an earlier one is wrong.
        .filter(|(_, w)| w[0] > w[1])
        .map(|(i, w)| (i, w[0].duration_since(base), w[1].duration_since(base)))
        .take(5)
        .collect();
    assert!(
        bad.is_empty(),
        "timers fired out of deadline order: {bad:?} of {}",
        m.fired.len()
    );
    assert_eq!(live_events(), 0);
}

thread_local! {
    static SURVIVORS: Cell<u32> = const { Cell::new(0) };
}

fn survivor_timer(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    SURVIVORS.with(|n| n.set(n.get() + 1));
    if SURVIVORS.with(|n| n.get()) == 500 {
        stop_scheduler();
    }
    0
}

#[test]
fn cancelled_timers_are_compacted_away_and_live_ones_survive() {
    let s = Scheduler::new().unwrap();
    let mut ids = Vec::new();
    for i in 0..3_000u64 {
        // 500 survivors due in 50..100 ms; the 2,500 others far away, then cancelled.
        let d = if i % 6 == 0 {
            Duration::from_millis(50 + i % 50)
        } else {
            Duration::from_secs(600)
        };
        ids.push((i, schedule_timer(d, survivor_timer, Box::new(()))));
    }
    for (_, id) in ids.iter().filter(|(i, _)| i % 6 != 0) {
        assert!(clear_timed_event(*id));
    }
    assert_eq!(timer_heap_len(), 3_000, "cancelling is lazy");
    run_with_deadline(&s, 10);
    assert_eq!(SURVIVORS.with(|n| n.get()), 500);
    // Without compaction the 2,500 cancelled entries (due in 600 s) would still be there;
    // what is left is at most the watchdog's stale entry.
    assert!(timer_heap_len() <= 1, "heap holds {}", timer_heap_len());
}

// --- idle deadlines ----------------------------------------------------------------------------

struct IdleReset {
    reset_at: Option<Instant>,
}

const FIRST_IDLE: Duration = Duration::from_millis(50);
const RESET_IDLE: Duration = Duration::from_millis(150);

fn idle_reset_cb(e: &mut Event, et: i32, c: &mut Closure, now: Instant) -> i32 {
    let st = c.downcast_mut::<IdleReset>().unwrap();
    if et & E_TIMEOUT != 0 {
        let at = st.reset_at.expect("reset before the first deadline");
        note(format!(
            "reaped, not before the new deadline: {}",
            now >= at + RESET_IDLE
        ));
        stop_scheduler();
        return 0;
    }
    let mut buf = [0u8; 8];
    if let Io::Done(_) = e.read(&mut buf) {
        HEAP_AT.with(|h| h.borrow_mut().push(timer_heap_len()));
        e.set_timeout(now, Some(RESET_IDLE)); // later than the first deadline: no heap push
        st.reset_at = Some(now);
        note("reset");
        // Fires in this iteration, after the deadline move was applied to the heap.
        schedule_timer(Duration::ZERO, heap_probe, Box::new(()));
    }
    E_READ
}

thread_local! {
    /// Timer heap sizes: just before the idle reset, then just after it took effect.
    static HEAP_AT: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn heap_probe(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    // The probe's own entry is out of the heap while it runs.
    HEAP_AT.with(|h| h.borrow_mut().push(timer_heap_len()));
    0
}

#[test]
fn an_idle_deadline_moved_later_is_reaped_at_the_new_time_only() {
    let s = Scheduler::new().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    PEERS.with(|p| p.borrow_mut().push(b));
    let mut ev = Event::build_fd_event(
        owned(a),
        E_READ,
        idle_reset_cb,
        Box::new(IdleReset { reset_at: None }),
    );
    ev.set_timeout(Instant::now(), Some(FIRST_IDLE));
    schedule_event(ev).unwrap();
    let before = timer_heap_len();
    // Activity well before the first deadline.
    schedule_timer(Duration::from_millis(10), write_to_peers, Box::new(()));
    run_with_deadline(&s, 10);
    assert_eq!(
        notes(),
        vec!["reset", "reaped, not before the new deadline: true"]
    );
    assert!(
        timer_heap_len() <= before + 1,
        "the reset pushed no heap entry of its own"
    );
    let at = HEAP_AT.with(|h| h.borrow().clone());
    assert_eq!(at.len(), 2, "{at:?}");
    assert_eq!(at[0], at[1], "the reset pushed no heap entry: {at:?}");
    PEERS.with(|p| p.borrow_mut().clear());
}

// --- the default timer cap ---------------------------------------------------------------------

#[test]
fn at_most_1024_timers_fire_per_iteration_by_default() {
    let s = Scheduler::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"x").unwrap();
    let counter = Event::build_fd_event(owned(a), E_READ, iteration_counter, Box::new(()));
    schedule_event(counter).unwrap();
    let now = Instant::now();
    for k in 0..3_000u32 {
        let k = if k == 2_999 { 99 } else { k % 99 }; // the last one (key 99) stops the loop
        let ev =
            Event::build_event_from_now(now, Duration::from_millis(5), counted_timer, Box::new(k));
        schedule_event(ev).unwrap();
    }
    run_with_deadline(&s, 10);
    let fired = FIRED_AT.with(|f| f.borrow().clone());
    assert_eq!(fired.len(), 3_000);
    let mut per_iter = std::collections::HashMap::new();
    for it in fired {
        *per_iter.entry(it).or_insert(0) += 1;
    }
    let max = per_iter.values().copied().max().unwrap();
    assert_eq!(max, DEFAULT_TIMERS_PER_ITERATION, "{per_iter:?}");
    assert_eq!(DEFAULT_TIMERS_PER_ITERATION, 1024);
}

// --- 10,000 idle connections: one heap entry each, however often they are touched -------

// --- examples/echo_server ----------------------------------------------------------------------

/// Builds the example (the integration test does not depend on it) and returns its path.
fn echo_server_path() -> std::path::PathBuf {
    // target/<profile>/deps/event_api-… → target/<profile>
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let profile = dir.file_name().unwrap().to_str().unwrap().to_string();
    let profile = if profile == "debug" {
        "dev".to_string()
    } else {
        profile
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            "echo_server",
            "--profile",
            &profile,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(st.success(), "cargo build --example echo_server: {st}");
    dir.join("examples/echo_server")
}

/// Lines of a child's output, on a channel (so every read has a deadline).
fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Starts the example through `sh` (so a shell `ulimit` may come first) and returns it with
/// its bound address and its stderr lines.
fn start_echo_server(prelude: &str) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let path = echo_server_path();
    let mut child = Command::new("sh")
        .args(["-c", &format!("{prelude} exec \"$0\" 127.0.0.1:0")])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs the example");
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let line = out
        .recv_timeout(Duration::from_secs(30))
        .expect("the example prints its address");
    let addr = line
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("an address");
    (child, addr, err)
}

fn echo_round_trip(addr: SocketAddr, line: &[u8]) {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(line).unwrap();
    let mut back = vec![0u8; line.len()];
    c.read_exact(&mut back).expect("the line comes back");
    assert_eq!(back, line);
}

#[test]
fn echo_server_example_echoes_and_stops_on_sigterm() {
    let (mut child, addr, _err) = start_echo_server("");
    echo_round_trip(addr, b"hello, echo\n");
    netlistener::sys::kill(child.id(), libc::SIGTERM).unwrap();
    let st = wait_within(&mut child, Duration::from_secs(10)).expect("SIGTERM stops it");
    assert!(st.success(), "exit status {st}");
}

#[test]
fn echo_server_example_backs_off_when_out_of_descriptors() {
    let (mut child, addr, err) = start_echo_server("ulimit -n 16 &&");
    let t0 = Instant::now();
    // More connections than it has descriptors for: the rest wait in the listen queue.
    let clients: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let errors: Vec<String> = err
        .try_iter()
        .filter(|l| l.starts_with("accept:"))
        .collect();
    let elapsed = t0.elapsed();
    assert!(
        !errors.is_empty(),
        "accept never failed: the limit did not bite"
    );
    // Each failure starts a back-off of at least 100 ms (a lower bound on the timer), so
    // there can be no more than one per 100 ms; a spinning loop logs thousands.
    let bound = (elapsed.as_millis() / 100) as usize + 2;
    assert!(
        errors.len() <= bound,
        "{} accept errors in {elapsed:?}",
        errors.len()
    );
    drop(clients); // their descriptors free up in the server as it sees the EOFs
    echo_round_trip(addr, b"served again\n");
    netlistener::sys::kill(child.id(), libc::SIGTERM).unwrap();
    let st = wait_within(&mut child, Duration::from_secs(10)).expect("SIGTERM stops it");
    assert!(st.success(), "exit status {st}");
}
