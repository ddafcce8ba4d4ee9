//! Reactor micro-benchmarks (std harness only): ns per timer insert, cancel and expiry at 1k,
//! 100k and 1M timers, the cost of an idle-timeout reset, and cross-thread wake-up latency.
//! Run with `cargo bench --bench timers` (part of `make bench`).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event, E_TIMEOUT};
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
        "timers n={n:>8}: insert {:>7.1} ns  cancel {:>7.1} ns  expire {:>7.1} ns/timer",
        ns_per(insert, n),
        ns_per(cancel, cancelled),
        ns_per(expire, n - cancelled + 1)
    );
}

fn idle_reset(n: usize) {
    // The idle-timeout reset is a field store plus, once per idle period, a heap re-push.
    let mut e =
        Event::build_event_from_now(Instant::now(), Duration::from_secs(30), noop, Box::new(()));
    let t = Instant::now();
    let now = Instant::now();
    for i in 0..n {
        e.set_timeout(now, Some(Duration::from_secs(30 + (i & 1) as u64)));
    }
    println!(
        "idle reset: {:>7.2} ns per set_timeout (O(1), no heap push)",
        ns_per(t.elapsed(), n)
    );
    std::hint::black_box(e.timeout);
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
    let _ = E_TIMEOUT;
    for n in [1_000, 100_000, 1_000_000] {
        timers(n);
    }
    idle_reset(10_000_000);
    cross_thread(2_000);
}
