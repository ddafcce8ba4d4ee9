//! Deadlines for every test binary: running a scheduler, accepting, polling a condition and
//! waiting for a child process all fail the test (or report `None`) at their deadline
//! instead of blocking CI.
//!
//! The one copy of these waits: `util/mod.rs` and `util/daemon.rs` include this file and
//! re-export what they need, other binaries include it by `#[path = "util/deadline.rs"]`.
#![allow(dead_code)]

use std::cell::Cell;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event};
use netlistener::scheduler::{clear_timed_event, schedule_timer, stop_scheduler, Scheduler};

/// How often the polling waits below look again.
const POLL: Duration = Duration::from_millis(10);

thread_local! {
    static TIMED_OUT: Cell<bool> = const { Cell::new(false) };
}

fn watchdog_cb(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    TIMED_OUT.with(|t| t.set(true));
    stop_scheduler();
    0
}

/// Runs the loop with a deadline; fails the test if the deadline is what stopped it.
pub fn run_with_deadline(s: &Scheduler, secs: u64) {
    let w = schedule_timer(Duration::from_secs(secs), watchdog_cb, Box::new(()));
    s.run();
    clear_timed_event(w);
    assert!(
        !TIMED_OUT.with(|t| t.get()),
        "the test hit its {secs}s deadline"
    );
}

/// Accepts one connection, failing the test after `limit` instead of blocking.
pub fn accept_within(l: &TcpListener, limit: Duration) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false).unwrap();
                return c;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < end, "no connection within {limit:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Waits for `child` to exit, up to `limit` (`Duration::ZERO`: looks once). A child still
/// running then is killed and reaped, so a hung one never outlives its test, and the result
/// is `None`.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `f` until it returns `Some`, or fails the test with `what` after `deadline`.
pub fn poll_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?}: {what}");
        std::thread::sleep(POLL);
    }
}
