//! Deadlines for tests that run a scheduler, accept, or wait for a child process: a hang
//! fails the test instead of blocking CI.
#![allow(dead_code)]

use std::cell::Cell;
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event};
use netlistener::scheduler::{clear_timed_event, schedule_timer, stop_scheduler, Scheduler};

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

/// Waits for `child` to exit, killing it after `limit`.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
