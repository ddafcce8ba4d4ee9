//! A small, std-only load generator for `ESMTP_Listener`, loopback only, bounded in count and
//! time. Usage: `cargo run --release --example smtp_load [SECONDS_PER_RUN]` (default 5);
//! `SMTP_LOAD_IO_THREADS` sets the server's `IO` pool size (default 4, as shipped);
//! `SMTP_LOAD_TARGET=ip:port` instead loads another server (e.g. `smtp-sink`) the same way;
//! `SMTP_LOAD_ONLY=rate`, `memory` or `idle` runs only that part.
//!
//! The server runs in a child process (this program re-executed as `smtp_load serve …`) so its
//! peak RSS (`VmHWM`) is measured apart from the clients. It prints:
//!
//! 1. messages per second with 50 concurrent sessions sending 1 KiB messages, in `discard` and
//!    in `maildir` mode (durable before each `250`, group-committed per Maildir);
//! 2. the server's peak RSS with 200 sessions each streaming one message near
//!    `Max_Message_Size` at the same time (`discard` and `maildir`), and per session;
//! 3. the server's RSS growth per idle session (1000 sessions after EHLO).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const MAX_SIZE: usize = 2 * 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(&args[2], &args[3]);
    }
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    if let Ok(target) = std::env::var("SMTP_LOAD_TARGET") {
        // Another server (e.g. Postfix smtp-sink) under the same load, for a ratio.
        let addr = target.parse().expect("SMTP_LOAD_TARGET is ip:port");
        let (n, el) = throughput(addr, 50, 1024, Duration::from_secs(secs));
        let rate = n as f64 / el.as_secs_f64();
        println!("{target} 50 sessions, 1 KiB: {n} messages in {el:.2?} = {rate:.0} msg/s");
        return;
    }
    let base = std::env::temp_dir().join(format!("smtp_load-{}", std::process::id()));
    let only = std::env::var("SMTP_LOAD_ONLY").unwrap_or_default();
    let part = |p: &str| only.is_empty() || only == p;
    for mode in ["discard", "maildir"].into_iter().filter(|_| part("rate")) {
        let dir = base.join(mode);
        let (mut child, addr) = spawn_server(mode, &dir);
        let (n, el) = throughput(addr, 50, 1024, Duration::from_secs(secs));
        let files = std::fs::read_dir(dir.join("new")).map_or(0, |d| d.count());
        println!(
            "{mode:8} 50 sessions, 1 KiB: {n} messages in {:.2}s = {:.0} msg/s (files in new/: {files}); server peak RSS {} KiB",
            el.as_secs_f64(),
            n as f64 / el.as_secs_f64(),
            vm(&child, "VmHWM:")
        );
        stop(&mut child);
    }
    for mode in ["discard", "maildir"]
        .into_iter()
        .filter(|_| part("memory"))
    {
        let dir = base.join(format!("big-{mode}"));
        let (mut child, addr) = spawn_server(mode, &dir);
        let before = vm(&child, "VmRSS:");
        let size = MAX_SIZE - 64 * 1024;
        big_messages(addr, 200, size);
        let peak = vm(&child, "VmHWM:");
        println!(
            "{mode:8} 200 sessions x {} KiB message (Max_Message_Size {} KiB): server RSS {before} KiB before, peak {peak} KiB, {:.1} KiB per session",
            size / 1024,
            MAX_SIZE / 1024,
            (peak.saturating_sub(before)) as f64 / 200.0
        );
        stop(&mut child);
    }
    if part("idle") {
        idle(&base.join("idle"), 1000);
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Server RSS growth with `n` sessions connected after EHLO, doing nothing.
fn idle(dir: &std::path::Path, n: usize) {
    let (mut child, addr) = spawn_server("discard", dir);
    let before = vm(&child, "VmRSS:");
    let conns: Vec<Conn> = (0..n).map(|_| Conn::open(addr)).collect();
    let after = vm(&child, "VmRSS:");
    println!(
        "idle     {n} sessions after EHLO: server RSS {before} KiB before, {after} KiB after, {:.0} B per session",
        after.saturating_sub(before) as f64 * 1024.0 / n as f64
    );
    drop(conns);
    stop(&mut child);
}

/// The server side: one scheduler thread running `ESMTP_Listener` on 127.0.0.1:0.
fn serve(mode: &str, dir: &str) {
    use netlistener::netlistener::*;
    let sched = netlistener::scheduler::Scheduler::new().expect("scheduler");
    netlistener::modules::esmtp::conf_setup().expect("conf_setup");
    let io = std::env::var("SMTP_LOAD_IO_THREADS").unwrap_or_else(|_| "4".into());
    let conf = format!(
        "[ESMTP_Listener]\nDelivery = {mode}\nMaildir = {dir}\nMax_Message_Size = {MAX_SIZE}\n\
         Max_Recipients_Per_Message = 10\nListen_Backlog = 1024\n\
         [ThreadPool \"IO\"]\nConcurrency = {io}\n\
         [ESMTP_Listener Listen \"127.0.0.1:0\"]\n"
    );
    netlistener_load_config_str("smtp_load.conf", &conf).expect("configuration");
    netlistener_start().expect("listen");
    let addr = bound_address("ESMTP_Listener").expect("bound");
    println!("{addr}");
    let _ = std::io::stdout().flush();
    sched.run();
}

fn spawn_server(mode: &str, dir: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["serve", mode, &dir.display().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("bound address");
    let addr = line.trim().parse().expect("an address");
    (child, addr)
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `Vm…:` line of the child's /proc status, in KiB (0 where /proc is missing).
fn vm(child: &Child, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_nodelay(true).unwrap();
        let mut c = Conn {
            r: BufReader::new(s),
        };
        c.expect('2');
        c.send(b"EHLO load.test\r\n");
        c.expect('2');
        c
    }

    fn send(&mut self, b: &[u8]) {
        self.r.get_mut().write_all(b).expect("write");
    }

    /// Reads one reply; panics unless it starts with `first`.
    fn expect(&mut self, first: char) {
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).expect("reply") == 0 {
                panic!("server closed");
            }
            assert!(l.starts_with(first), "unexpected reply {l:?}");
            if l.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }

    /// MAIL, RCPT and DATA in one pipelined write; waits for the 354.
    fn start_message(&mut self) {
        self.send(b"MAIL FROM:<load@x.test>\r\nRCPT TO:<sink@y.test>\r\nDATA\r\n");
        self.expect('2');
        self.expect('2');
        self.expect('3');
    }
}

fn body(size: usize) -> Vec<u8> {
    let line =
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    let mut b = b"Subject: load\r\n\r\n".to_vec();
    while b.len() + line.len() <= size {
        b.extend_from_slice(line);
    }
    b.extend_from_slice(b".\r\n");
    b
}

/// `sessions` clients sending `size`-octet messages for `run`; returns (messages, elapsed).
fn throughput(addr: SocketAddr, sessions: usize, size: usize, run: Duration) -> (u64, Duration) {
    let msg = Arc::new(body(size));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..sessions)
        .map(|_| {
            let (msg, done, stop) = (msg.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                while !stop.load(Ordering::Relaxed) {
                    c.start_message();
                    c.send(&msg);
                    c.expect('2');
                    done.fetch_add(1, Ordering::Relaxed);
                }
                c.send(b"QUIT\r\n");
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let el = start.elapsed();
    for w in workers {
        let _ = w.join();
    }
    (n, el)
}

/// `sessions` clients each streaming one `size`-octet message, all at the same time.
fn big_messages(addr: SocketAddr, sessions: usize, size: usize) {
    let msg = Arc::new(body(size));
    let go = Arc::new(Barrier::new(sessions));
    let workers: Vec<_> = (0..sessions)
        .map(|_| {
            let (msg, go) = (msg.clone(), go.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                c.start_message();
                go.wait(); // every session is inside DATA before any body byte moves
                for chunk in msg.chunks(16 * 1024) {
                    c.send(chunk);
                }
                c.expect('2');
                c.send(b"QUIT\r\n");
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client");
    }
}
