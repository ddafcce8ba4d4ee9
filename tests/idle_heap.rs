//! 10,000 idle connections, each with an idle timeout touched on every read, keep the timer
//! heap at one entry per connection (the O(1) deadline move of issue 2).
//!
//! This file has its own `main` (`harness = false` in Cargo.toml) because it needs two
//! processes: both ends of 10,000 connections in one process would need more descriptors
//! than a common hard limit of 20,000 allows. Run without arguments it is the test (the
//! scheduler side); run with `NETLISTENER_IDLE_CLIENTS=ctl,data` in its environment it is the
//! client side, started by the test itself.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event, Io, E_READ, E_TIMEOUT};
use netlistener::scheduler::*;

#[path = "util/deadline.rs"]
mod deadline;
use deadline::{accept_within, run_with_deadline, wait_within};

/// Long enough that no connection is reaped even when connecting 10,000 of them is slow on a
/// loaded machine: this test is about the heap's size, not about reaping.
const IDLE: Duration = Duration::from_secs(600);
const IDLE_CONNS: usize = 10_000;
const IDLE_ROUNDS: u32 = 5;
const CLIENTS_ENV: &str = "NETLISTENER_IDLE_CLIENTS";

struct Idle {
    touches: u32,
}

thread_local! {
    static TOUCHES: Cell<u64> = const { Cell::new(0) };
    static TOUCH_TARGET: Cell<u64> = const { Cell::new(0) };
}

fn main() -> ExitCode {
    if let Ok(spec) = std::env::var(CLIENTS_ENV) {
        idle_clients(&spec);
        return ExitCode::SUCCESS;
    }
    let name = "ten_thousand_idle_timeouts_keep_one_heap_entry_each";
    // A filter on the command line that does not name this test skips it, as libtest would.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }
    ten_thousand_idle_timeouts_keep_one_heap_entry_each();
    println!("test {name} ... ok");
    ExitCode::SUCCESS
}

fn idle_worker(e: &mut Event, et: i32, c: &mut Closure, now: Instant) -> i32 {
    if et & E_TIMEOUT != 0 {
        return 0;
    }
    let mut buf = [0u8; 16];
    match e.read(&mut buf) {
        Io::Done(n) => {
            c.downcast_mut::<Idle>().unwrap().touches += n as u32;
            e.set_timeout(now, Some(IDLE)); // O(1): no heap push
            let total = TOUCHES.with(|t| t.get()) + n as u64;
            TOUCHES.with(|t| t.set(total));
            if total == TOUCH_TARGET.with(|t| t.get()) {
                stop_scheduler();
            }
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

/// The client side: connects, then writes one byte per connection for each `touch` line on
/// the control connection, answering `touched`; any other line (or EOF) ends it.
fn idle_clients(spec: &str) {
    let addrs: Vec<SocketAddr> = spec.split(',').map(|a| a.parse().unwrap()).collect();
    raise_nofile(IDLE_CONNS as u64 + 100);
    let limit = Duration::from_secs(30);
    let ctl = TcpStream::connect_timeout(&addrs[0], limit).unwrap();
    ctl.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut socks: Vec<TcpStream> = (0..IDLE_CONNS)
        .map(|_| TcpStream::connect_timeout(&addrs[1], limit).unwrap())
        .collect();
    let mut out = ctl.try_clone().unwrap();
    out.write_all(b"connected\n").unwrap();
    for line in BufReader::new(ctl).lines() {
        match line.unwrap().as_str() {
            "touch" => {
                socks.iter_mut().for_each(|s| s.write_all(b"t").unwrap());
                out.write_all(b"touched\n").unwrap();
            }
            _ => return,
        }
    }
}

/// Reads one line from the child's control connection (which has a read timeout).
fn ctl_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line)
        .expect("the client process answers in time");
    line.trim().to_string()
}

fn spawn_idle_clients(ctl: SocketAddr, data: SocketAddr) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(CLIENTS_ENV, format!("{ctl},{data}"))
        .stdout(Stdio::null())
        .spawn()
        .expect("the test binary runs again as the client process")
}

/// Kills the client process if the test fails half-way (a panic unwinds through this).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        // Looks once; a client process still running is killed and reaped.
        let _ = wait_within(&mut self.0, Duration::ZERO);
    }
}

fn ten_thousand_idle_timeouts_keep_one_heap_entry_each() {
    raise_nofile(IDLE_CONNS as u64 + 500);
    let s = Scheduler::new().unwrap();
    let ctl_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let data_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Reap(spawn_idle_clients(
        ctl_l.local_addr().unwrap(),
        data_l.local_addr().unwrap(),
    ));
    let ctl = accept_within(&ctl_l, Duration::from_secs(30));
    ctl.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut ctl_w = ctl.try_clone().unwrap();
    let mut ctl_r = BufReader::new(ctl);
    let mut ids = Vec::with_capacity(IDLE_CONNS);
    for _ in 0..IDLE_CONNS {
        let c = accept_within(&data_l, Duration::from_secs(30));
        let mut ev =
            Event::build_fd_event(c.into(), E_READ, idle_worker, Box::new(Idle { touches: 0 }));
        ev.set_timeout(Instant::now(), Some(IDLE));
        ids.push(schedule_event(ev).unwrap());
    }
    assert_eq!(ctl_line(&mut ctl_r), "connected");
    assert_eq!(timer_heap_len(), IDLE_CONNS);
    for round in 0..IDLE_ROUNDS {
        ctl_w.write_all(b"touch\n").unwrap();
        assert_eq!(ctl_line(&mut ctl_r), "touched");
        // Run until every connection's byte of this round was read.
        let target = IDLE_CONNS as u64 * (round as u64 + 1);
        TOUCH_TARGET.with(|t| t.set(target));
        run_with_deadline(&s, 60);
        assert_eq!(TOUCHES.with(|t| t.get()), target, "round {round}");
        // One entry per connection, plus the test's own cleared watchdog timers (stale
        // entries that leave the heap when their deadline passes).
        let allowed = IDLE_CONNS + round as usize + 1;
        let len = timer_heap_len();
        assert!(
            len <= allowed,
            "round {round}: heap grew to {len} > {allowed}"
        );
    }
    let touches: Vec<u32> = ids
        .iter()
        .map(|&id| with_event(id, |e| e.closure_mut::<Idle>().touches).unwrap())
        .collect();
    assert!(
        touches.iter().all(|&t| t == IDLE_ROUNDS),
        "every connection touched each round"
    );
    assert_eq!(live_events(), IDLE_CONNS);
    ctl_w.write_all(b"quit\n").unwrap();
    let st = wait_within(&mut child.0, Duration::from_secs(30)).expect("client process exits");
    assert!(st.success(), "client process: {st}");
}
