//! Signals reach registered callbacks through the self-pipe (its own test binary: signal
//! dispositions are process-wide).

use std::cell::RefCell;
use std::process::Command;
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event};
use netlistener::scheduler::*;

thread_local! {
    static GOT: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

fn on_hup(signo: i32, _now: Instant) {
    assert!(is_scheduler_thread());
    GOT.with(|g| g.borrow_mut().push(signo));
    // Raise the next one from the loop itself, proving the handler is re-armed.
    if GOT.with(|g| g.borrow().len()) == 1 {
        kill("-USR1");
    }
}

fn on_usr1(signo: i32, _now: Instant) {
    GOT.with(|g| g.borrow_mut().push(signo));
    stop_scheduler();
}

fn deadline(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    GOT.with(|g| g.borrow_mut().push(-1));
    stop_scheduler();
    0
}

fn kill(sig: &str) {
    let st = Command::new("kill")
        .args([sig, &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn signals_arrive_on_the_scheduler_thread_through_the_self_pipe() {
    let s = Scheduler::new().unwrap();
    on_signal(libc::SIGHUP, on_hup).unwrap();
    on_signal(libc::SIGUSR1, on_usr1).unwrap();
    let w = schedule_timer(Duration::from_secs(10), deadline, Box::new(()));
    kill("-HUP");
    s.run();
    clear_timed_event(w);
    assert_eq!(
        GOT.with(|g| g.borrow().clone()),
        vec![libc::SIGHUP, libc::SIGUSR1]
    );
}
