//! Signals reach registered callbacks through the self-pipe (its own test binary: signal
//! dispositions are process-wide). The tests take turns (`SIGNALS`): they share the
//! process's handlers and its one self-pipe.

#[path = "util/deadline.rs"]
mod deadline;

use std::cell::RefCell;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event};
use netlistener::scheduler::*;
use netlistener::sys::raise_signal;

use deadline::run_with_deadline;

static SIGNALS: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    SIGNALS.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    static GOT: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

fn got() -> Vec<i32> {
    GOT.with(|g| g.borrow().clone())
}

fn record(signo: i32) {
    assert!(is_scheduler_thread());
    GOT.with(|g| g.borrow_mut().push(signo));
}

/// Sends `signo` to this process with kill(2): to the process, not to one thread as
/// `raise_signal` does, as another process would.
fn kill(signo: i32) {
    netlistener::sys::kill(std::process::id(), signo).unwrap();
}

fn on_hup(signo: i32, _now: Instant) {
    record(signo);
    // Raise the next one from the loop itself, proving the handler is re-armed.
    if got().len() == 1 {
        kill(libc::SIGUSR1);
    }
}

fn record_and_stop(signo: i32, _now: Instant) {
    record(signo);
    stop_scheduler();
}

#[test]
fn signals_arrive_on_the_scheduler_thread_through_the_self_pipe() {
    let _turn = take_turn();
    let s = Scheduler::new().unwrap();
    on_signal(libc::SIGHUP, on_hup).unwrap();
    on_signal(libc::SIGUSR1, record_and_stop).unwrap();
    kill(libc::SIGHUP);
    run_with_deadline(&s, 10);
    assert_eq!(got(), vec![libc::SIGHUP, libc::SIGUSR1]);
}

fn record_term_int(signo: i32, _now: Instant) {
    record(signo);
    if got().len() == 2 {
        stop_scheduler();
    }
}

#[test]
fn sigterm_and_sigint_reach_their_callbacks() {
    let _turn = take_turn();
    let s = Scheduler::new().unwrap();
    on_signal(libc::SIGTERM, record_term_int).unwrap();
    on_signal(libc::SIGINT, record_term_int).unwrap();
    raise_signal(libc::SIGTERM).unwrap();
    raise_signal(libc::SIGINT).unwrap();
    run_with_deadline(&s, 10);
    // Pending signals are delivered in numeric order: INT (2) before TERM (15).
    assert_eq!(got(), vec![libc::SIGINT, libc::SIGTERM]);
}

fn panicking_hup(signo: i32, _now: Instant) {
    record(signo);
    panic!("a reload failed");
}

fn raise_term_later(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    raise_signal(libc::SIGTERM).unwrap();
    0
}

#[test]
fn a_panicking_signal_callback_does_not_stop_later_signals() {
    let _turn = take_turn();
    let s = Scheduler::new().unwrap();
    on_signal(libc::SIGHUP, panicking_hup).unwrap();
    on_signal(libc::SIGTERM, record_and_stop).unwrap();
    raise_signal(libc::SIGHUP).unwrap();
    // In a later iteration, after the panic was handled.
    schedule_timer(Duration::from_millis(50), raise_term_later, Box::new(()));
    run_with_deadline(&s, 10);
    assert_eq!(got(), vec![libc::SIGHUP, libc::SIGTERM]);
}

fn count_hup(signo: i32, _now: Instant) {
    record(signo);
}

#[test]
fn a_full_self_pipe_never_hides_a_signal() {
    let _turn = take_turn();
    let s = Scheduler::new().unwrap();
    on_signal(libc::SIGHUP, count_hup).unwrap();
    on_signal(libc::SIGTERM, record_and_stop).unwrap();
    // More than a pipe holds (64 KiB on Linux, less elsewhere) before the loop reads any.
    for _ in 0..70_000 {
        raise_signal(libc::SIGHUP).unwrap();
    }
    raise_signal(libc::SIGTERM).unwrap();
    run_with_deadline(&s, 10);
    // Repeated HUPs coalesce (as the kernel's pending signals do); the TERM is not lost.
    assert_eq!(got(), vec![libc::SIGHUP, libc::SIGTERM]);
}

fn unused(_signo: i32, _now: Instant) {}

#[test]
fn dropping_a_scheduler_that_lost_the_signals_leaves_them_to_their_owner() {
    let _turn = take_turn();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (drop_tx, drop_rx) = mpsc::channel::<()>();
    // The first scheduler owns the signals, until the second one takes them.
    let first = std::thread::spawn(move || {
        let s = Scheduler::new().unwrap();
        on_signal(libc::SIGUSR2, unused).unwrap();
        ready_tx.send(()).unwrap();
        drop_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(s);
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let s = Scheduler::new().unwrap();
    on_signal(libc::SIGTERM, record_and_stop).unwrap();
    drop_tx.send(()).unwrap();
    first.join().unwrap();
    raise_signal(libc::SIGTERM).unwrap();
    run_with_deadline(&s, 10);
    assert_eq!(got(), vec![libc::SIGTERM]);
}
