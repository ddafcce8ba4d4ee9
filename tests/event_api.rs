//! Black-box tests of the event API: callbacks, timers, floating, pools, panics, idle timers.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event, EventId, Io, E_ASYNC, E_READ, E_TIMEOUT};
use netlistener::scheduler::*;
use netlistener::threadpool::{Completion, Job};

thread_local! {
    static TIMED_OUT: Cell<bool> = const { Cell::new(false) };
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn note(s: impl Into<String>) {
    LOG.with(|l| l.borrow_mut().push(s.into()));
}
fn notes() -> Vec<String> {
    LOG.with(|l| l.borrow().clone())
}

fn watchdog_cb(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    TIMED_OUT.with(|t| t.set(true));
    stop_scheduler();
    0
}

/// Runs the loop with a deadline; fails the test if the deadline is what stopped it.
fn run_with_deadline(s: &Scheduler, secs: u64) {
    let w = schedule_timer(Duration::from_secs(secs), watchdog_cb, Box::new(()));
    s.run();
    clear_timed_event(w);
    assert!(
        !TIMED_OUT.with(|t| t.get()),
        "the test hit its {secs}s deadline"
    );
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
    let (server, _) = l.accept().unwrap();
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
    let _ = e; // level-triggered pipe with unread data: fires every iteration
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
    let _ = EventId::NONE;
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

// --- 10,000 idle connections: one heap entry each, however often they are touched -------

struct Idle {
    touches: u32,
}

/// Long enough that no connection is reaped even when connecting 10,000 of them is slow on a
/// loaded machine: this test is about the heap's size, not about reaping.
const IDLE: Duration = Duration::from_secs(600);

fn idle_worker(e: &mut Event, et: i32, c: &mut Closure, now: Instant) -> i32 {
    if et & E_TIMEOUT != 0 {
        return 0;
    }
    let mut buf = [0u8; 16];
    match e.read(&mut buf) {
        Io::Done(_) => {
            c.downcast_mut::<Idle>().unwrap().touches += 1;
            e.set_timeout(now, Some(IDLE)); // O(1): no heap push
            E_READ
        }
        Io::Wait(m) => m,
        _ => 0,
    }
}

fn raise_nofile(want: u64) {
    let (soft, hard) = netlistener::sys::nofile_limit().unwrap();
    if soft < want {
        netlistener::sys::set_nofile_limit(want.min(hard), hard).unwrap();
    }
}

/// The client ends live in a child process (a Python script): 10,000 connections on each
/// side would exceed a 20,000 fd hard limit in one process.
const CLIENTS_PY: &str = r#"
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    socks.append(s)
print("connected", flush=True)
for line in sys.stdin:
    for s in socks:
        s.sendall(b"t")
    print("touched", flush=True)
"#;

#[test]
fn ten_thousand_idle_timeouts_keep_one_heap_entry_each() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    const N: usize = 10_000;
    raise_nofile(N as u64 + 500);
    let s = Scheduler::new().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut child = Command::new("python3")
        .args(["-c", CLIENTS_PY, &port.to_string(), &N.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the client side");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..N {
        let (c, _) = l.accept().unwrap();
        let mut ev =
            Event::build_fd_event(owned(c), E_READ, idle_worker, Box::new(Idle { touches: 0 }));
        ev.set_timeout(Instant::now(), Some(IDLE));
        schedule_event(ev).unwrap();
    }
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    assert_eq!(timer_heap_len(), N);
    for round in 0..5 {
        stdin.write_all(b"touch\n").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "touched");
        // Let the loop read everything: a short timer stops it.
        let stop = schedule_timer(Duration::from_millis(200), stop_cb, Box::new(()));
        run_with_deadline(&s, 30);
        clear_timed_event(stop);
        // One entry per connection, plus the test's own cleared watchdog timers (stale entries
        // that leave the heap when their 30 s deadline passes).
        let allowed = N + round + 1;
        assert!(
            timer_heap_len() <= allowed,
            "round {round}: heap grew to {} > {allowed}",
            timer_heap_len()
        );
    }
    assert_eq!(live_events(), N);
    drop(stdin);
    let _ = child.wait();
    let _ = Arc::new(Mutex::new(()));
}
