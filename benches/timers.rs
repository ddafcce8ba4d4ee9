//! Reactor micro-benchmarks (std harness only): ns per timer insert, cancel and expiry at 1k,
//! 100k and 1M timers, the cost of an idle-timeout reset on a scheduled event, and
//! cross-thread wake-up latency. Run with `cargo bench --bench timers` (part of
//! `make bench`).
//!
//! - insert: `schedule_event` of a pure timer (slot, heap push);
//! - cancel: `clear_timed_event` on half of them (slot freed, closure dropped; the heap entry
//!   only goes stale);
//! - expire: `Scheduler::run` once every deadline has passed, divided by the live timers: it
//!   also pops the cancelled timers' stale entries, and includes each live timer's (empty)
//!   callback, its drop, and heap compaction;
//! - idle reset: moving a scheduled fd event's deadline later through `with_event`, the
//!   scheduler's real path (`sync_timer` runs; the heap stays at one entry).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event, E_READ};
use netlistener::scheduler::*;

fn noop(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    0
}

fn stop(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    stop_scheduler();
    0
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn timers(n: usize) {
    let s = Scheduler::new().unwrap();
    s.set_timers_per_iteration(usize::MAX);
    let base = Instant::now();
    // Insert: deadlines spread over 1..=1000 ms, in a scrambled order.
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let ms = 1 + (i.wrapping_mul(7919) % 1000) as u64;
        ids.push(
            schedule_event(Event::build_event_from_now(
                base,
                Duration::from_millis(ms),
                noop,
                Box::new(()),
            ))
            .unwrap(),
        );
    }
    let insert = t.elapsed();
    // Cancel half.
    let t = Instant::now();
    for id in ids.iter().step_by(2) {
        clear_timed_event(*id);
    }
    let cancel = t.elapsed();
    let cancelled = n.div_ceil(2);
    // Expire the rest: run until all due, then one stop timer.
    let _ = schedule_event(Event::build_event_from_now(
        base,
        Duration::from_millis(1001),
        stop,
        Box::new(()),
    ));
    while Instant::now() < base + Duration::from_millis(1002) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    s.run();
    let expire = t.elapsed();
    assert_eq!(live_events(), 0);
    println!(
        "timers n={n:>8}: insert {:>7.1} ns/timer  cancel {:>7.1} ns/cancelled  \
         expire {:>7.1} ns/live timer (stale pops included)",
        ns_per(insert, n),
        ns_per(cancel, cancelled),
        ns_per(expire, n - cancelled + 1)
    );
}

fn idle_reset(n: usize) {
    // A session as the scheduler holds it: an fd event with an idle deadline, moved later on
    // every "read" through the scheduler, so `with_event` and `sync_timer` run each time.
    let _s = Scheduler::new().unwrap();
    let (a, _peer) = UnixStream::pair().unwrap();
    let now = Instant::now();
    let idle = Duration::from_secs(30);
    let mut ev = Event::build_fd_event(OwnedFd::from(a), E_READ, noop, Box::new(()));
    ev.set_timeout(now, Some(idle));
    let id = schedule_event(ev).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let later = idle + Duration::from_nanos(i as u64 + 1);
        with_event(id, |e| e.set_timeout(now, Some(later))).unwrap();
    }
    let d = t.elapsed();
    assert_eq!(timer_heap_len(), 1, "a later deadline pushes nothing");
    println!(
        "idle reset: {:>7.1} ns per deadline move via with_event (sync_timer; heap stays at 1)",
        ns_per(d, n)
    );
}

fn wake(_e: &mut Event, et: i32, c: &mut Closure, _now: Instant) -> i32 {
    assert_eq!(
        et & netlistener::event::E_ASYNC,
        netlistener::event::E_ASYNC
    );
    let tx = c.downcast_mut::<mpsc::Sender<Instant>>().unwrap();
    let _ = tx.send(Instant::now());
    0
}

fn cross_thread(rounds: usize) {
    let (htx, hrx) = mpsc::channel();
    let (tx, rx) = mpsc::channel::<Instant>();
    let sched_thread = std::thread::spawn(move || {
        let s = Scheduler::new().unwrap();
        htx.send(s.handle()).unwrap();
        s.run();
    });
    let h = hrx.recv().unwrap();
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        h.schedule_event_and_dispatch(Event::build_async_event(wake, Box::new(tx.clone())));
        let seen = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("scheduler answered");
        lat.push(seen - t);
        std::thread::sleep(Duration::from_micros(200)); // let the loop go back to sleep
    }
    h.stop();
    sched_thread.join().unwrap();
    lat.sort();
    let p = |q: f64| {
        lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_nanos() as f64 / 1000.0
    };
    println!(
        "cross-thread wake-up: p50 {:.1} us  p99 {:.1} us  ({rounds} rounds, loop asleep in poll)",
        p(0.5),
        p(0.99)
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, unoptimised,
    // as a smoke test of the same code paths (and their asserts) at small sizes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("smoke run (unoptimised, small sizes; `cargo bench --bench timers` measures)");
        timers(1_000);
        idle_reset(10_000);
        cross_thread(50);
        return;
    }
    for n in [1_000, 100_000, 1_000_000] {
        timers(n);
    }
    idle_reset(1_000_000);
    cross_thread(2_000);
}
