//! echoload — the closed-loop echo load generator of `make bench` (std only).
//!
//! Closed loop (`--conns N`): the connections are opened one after another by the main
//! thread, then shared round-robin among T worker threads (default T = N: one blocking
//! thread per connection, which is exact and costs no CPU while waiting; 1000 connections
//! at most). A worker sends SIZE bytes on each of its connections, then reads each full
//! echo back and checks it, and starts again: every connection has exactly one request
//! in flight. With T < N a worker reads its connections in order, so a latency may include
//! the time spent waiting behind a sibling connection: keep T = N when p99 matters.
//! Latencies are recorded in a per-thread fixed-memory histogram merged at the end.
//! A request is counted when it was sent after the warm-up and completed before the end.
//!
//! Both modes open their connections from the main thread, `--batch` at a time, and echo
//! one byte on each connection of a batch before opening the next (see `open_paced`).
//!
//! Idle (`--idle N`): opens N connections that way (blocking connects with a timeout),
//! so the server has accepted and served every one of them, then prints `opened=K errors=E` (flushed) for a driver to measure the server's memory,
//! holds them for `--hold`, and exits.
//!
//! TIME_WAIT hazard: the side that closes first keeps each connection in TIME_WAIT for
//! 60 s. If this process closes 10,000 connections first, two runs a minute apart use up
//! the half of the ephemeral port range that Linux's connect() prefers, and every later
//! connect() scans it: a 1.5 s open phase became 50 s. A driver should therefore stop
//! the server first (its FINs put TIME_WAIT on the server's fixed port) and then this
//! process, as bench/run.py does; `--hold` is then only an upper bound. This process needs N + a few file descriptors: std
//! cannot raise RLIMIT_NOFILE, so run it under `ulimit -n` (the bench driver does).
//!
//! Bounds: only loopback targets; conns ≤ 1000, idle ≤ 100000, durations ≤ 600 s, every
//! socket read and write has a timeout, and a watchdog thread ends the process (status 3)
//! if a run overstays its time by more than the timeout plus 10 s.

mod args;
mod hist;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use args::{Args, Mode};
use hist::Histogram;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("echoload: {e}");
            }
            eprintln!("{}", args::USAGE);
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let status = match args.mode.clone() {
        Mode::Closed { .. } => run_closed(&args),
        Mode::Idle { conns, hold } => run_idle(&args, conns, hold),
    };
    std::process::exit(status);
}

/// Ends the whole process if it is still running after `limit`: a hung server must fail
/// the run, not block the bench.
fn start_watchdog(limit: Duration) {
    std::thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("echoload: watchdog: still running after {limit:?}, giving up");
            std::process::exit(3);
        })
        .expect("echoload: cannot spawn the watchdog thread");
}

fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

fn report_error(errors: u64, what: &str, e: &dyn std::fmt::Display) {
    // The first few errors are enough to diagnose; the count is in the result line.
    if errors <= 5 {
        eprintln!("echoload: {what}: {e}");
    }
}

struct Window {
    start: Instant,
    end: Instant,
}

struct WorkerResult {
    hist: Histogram,
    requests: u64,
    errors: u64,
    stopped: Instant,
}

fn run_closed(args: &Args) -> i32 {
    let Mode::Closed {
        conns,
        threads,
        size,
        duration,
        warmup,
        max_requests,
        max_errors,
    } = args.mode.clone()
    else {
        unreachable!("run_closed: called for another mode")
    };
    start_watchdog(warmup + duration + args.timeout * 2 + Duration::from_secs(10));
    let (conns_open, mut errors) = open_paced(
        args.addr,
        conns,
        args.timeout,
        args.batch,
        Duration::from_secs(60),
    );
    let mut groups: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in conns_open.into_iter().enumerate() {
        groups[i % threads].push(s);
    }
    let msg: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let start = Instant::now() + warmup;
    let win = std::sync::Arc::new(Window {
        start,
        end: start + duration,
    });
    let msg = std::sync::Arc::new(msg);
    let mut handles = Vec::new();
    for group in groups.into_iter().filter(|g| !g.is_empty()) {
        // Share of the request cap in proportion to the connections this worker owns.
        let cap = max_requests.map(|m| (m * group.len() as u64).div_ceil(conns as u64));
        let (win, msg) = (win.clone(), msg.clone());
        let h = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || worker(group, &msg, &win, cap))
            .expect("echoload: cannot spawn a worker thread");
        handles.push(h);
    }
    let mut hist = Histogram::new();
    let (mut requests, mut stopped) = (0u64, win.start);
    for h in handles {
        let r = h.join().expect("echoload: worker thread panicked");
        hist.merge(&r.hist);
        requests += r.requests;
        errors += r.errors;
        stopped = stopped.max(r.stopped);
    }
    let secs = stopped.saturating_duration_since(win.start).as_secs_f64();
    let rps = if secs > 0.0 {
        requests as f64 / secs
    } else {
        0.0
    };
    debug_assert_eq!(hist.total(), requests);
    println!(
        "conns={conns} size={size} duration_s={secs:.3} requests={requests} rps={rps:.1} \
         p50_us={:.1} p99_us={:.1} errors={errors}",
        hist.quantile(0.50) / 1000.0,
        hist.quantile(0.99) / 1000.0,
    );
    if errors > max_errors || requests == 0 {
        eprintln!("echoload: {errors} errors (allowed: {max_errors}), {requests} requests");
        return 1;
    }
    0
}

fn worker(conns: Vec<TcpStream>, msg: &[u8], win: &Window, cap: Option<u64>) -> WorkerResult {
    let mut live: Vec<Option<TcpStream>> = conns.into_iter().map(Some).collect();
    let mut sent_at = vec![Instant::now(); live.len()];
    let mut buf = vec![0u8; msg.len()];
    let mut r = WorkerResult {
        hist: Histogram::new(),
        requests: 0,
        errors: 0,
        stopped: win.start,
    };
    loop {
        let now = Instant::now();
        if now >= win.end
            || cap.is_some_and(|c| r.requests >= c)
            || live.iter().all(Option::is_none)
        {
            r.stopped = r.stopped.max(now.min(win.end));
            return r;
        }
        for (slot, t) in live.iter_mut().zip(sent_at.iter_mut()) {
            let Some(s) = slot else { continue };
            *t = Instant::now();
            if let Err(e) = s.write_all(msg) {
                r.errors += 1;
                report_error(r.errors, "write", &e);
                *slot = None;
            }
        }
        for (slot, t) in live.iter_mut().zip(sent_at.iter()) {
            let Some(s) = slot else { continue };
            if let Err(e) = read_echo(s, &mut buf, msg) {
                r.errors += 1;
                report_error(r.errors, "read", &e);
                *slot = None;
                continue;
            }
            let done = Instant::now();
            if *t >= win.start && done <= win.end {
                r.hist.record(done.duration_since(*t).as_nanos() as u64);
                r.requests += 1;
                r.stopped = done;
            }
        }
    }
}

fn read_echo(s: &mut TcpStream, buf: &mut [u8], msg: &[u8]) -> std::io::Result<()> {
    s.read_exact(buf)?;
    if buf != msg {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "echo differs from the message sent",
        ));
    }
    Ok(())
}

fn run_idle(args: &Args, n: usize, hold: Duration) -> i32 {
    start_watchdog(hold + Duration::from_secs(60) + args.timeout * 2 + Duration::from_secs(10));
    let (conns, errors) = open_paced(
        args.addr,
        n,
        args.timeout,
        args.batch,
        Duration::from_secs(60),
    );
    println!("opened={} errors={errors}", conns.len());
    let _ = std::io::stdout().flush();
    std::thread::sleep(hold);
    println!("idle_conns={n} opened={} errors={errors}", conns.len());
    if conns.len() == n && errors == 0 {
        0
    } else {
        1
    }
}

/// Makes one connection attempt per wanted connection (a failed attempt is counted as an
/// error, not retried), `batch` at a time, and echoes one byte on each connection of a
/// batch before opening the next one.
///
/// Pacing hazard: connect() completes as soon as the kernel queues the connection, long
/// before the server accepts it. Opening 10,000 connections flat out overflows the listen
/// backlog (1024 for tokio, 500 for netlistenerd by default); the kernel then drops SYNs
/// and every dropped one costs a 1 s retransmission (a 1.5 s open phase became 45 s).
/// The echo proves the server accepted and served the batch, so at most `batch`
/// connections wait in its queue. The phase ends at `deadline` whatever happens.
fn open_paced(
    addr: SocketAddr,
    n: usize,
    timeout: Duration,
    batch: usize,
    deadline: Duration,
) -> (Vec<TcpStream>, u64) {
    let deadline = Instant::now() + deadline;
    let mut conns = Vec::with_capacity(n);
    let mut errors = 0u64;
    let mut attempts = 0;
    'open: while attempts < n && Instant::now() < deadline {
        let mut fresh = Vec::with_capacity(batch);
        while fresh.len() < batch && attempts < n {
            attempts += 1;
            match connect(addr, timeout) {
                Ok(s) => fresh.push(s),
                Err(e) => {
                    errors += 1;
                    report_error(errors, "connect", &e);
                    if e.raw_os_error() == Some(24) {
                        eprintln!(
                            "echoload: out of file descriptors after {} connections: run \
                             under `ulimit -n {}` or more",
                            conns.len() + fresh.len(),
                            n + 64
                        );
                    }
                    if e.raw_os_error() == Some(24) {
                        errors += touch_all(&mut fresh);
                        conns.append(&mut fresh);
                        break 'open;
                    }
                }
            }
        }
        errors += touch_all(&mut fresh);
        conns.append(&mut fresh);
    }
    (conns, errors)
}

/// One byte out on every connection, then one byte back from every one: afterwards the
/// server has accepted each connection and run its session at least once.
fn touch_all(conns: &mut Vec<TcpStream>) -> u64 {
    let mut errors = 0u64;
    let mut ok = vec![true; conns.len()];
    for (s, ok) in conns.iter_mut().zip(ok.iter_mut()) {
        if let Err(e) = s.write_all(b"i") {
            errors += 1;
            report_error(errors, "touch write", &e);
            *ok = false;
        }
    }
    for (s, ok) in conns.iter_mut().zip(ok.iter_mut()) {
        let mut b = [0u8; 1];
        if *ok {
            if let Err(e) = s.read_exact(&mut b) {
                errors += 1;
                report_error(errors, "touch read", &e);
                *ok = false;
            }
        }
    }
    let mut it = ok.iter();
    conns.retain(|_| *it.next().unwrap_or(&false));
    errors
}
