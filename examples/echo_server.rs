//! An echo server on the event API alone (no netlistener, no configuration): the reader's first
//! example. Usage: `cargo run --example echo_server [ADDR]` (default 127.0.0.1:0; the bound
//! address is printed). Each connection gets a 30-second idle timeout, reset on every read.
//!
//! The shape is the C one: a listening-socket event whose callback accepts and schedules one
//! event per connection; the connection's callback reads, writes back, and returns the mask it
//! waits for next. When `accept` fails (out of descriptors, say), the listener stops reading
//! for 100 ms instead of spinning: the scheduler re-arms a read interest after each callback,
//! so the pending connection would wake the loop again at once. SIGTERM and SIGINT stop the server (exit status 0).

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event, Io, OutBuf, E_READ, E_TIMEOUT, E_WRITE};
use netlistener::scheduler::{on_signal, schedule_event, stop_scheduler, Scheduler};

const IDLE: Duration = Duration::from_secs(30);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Per-connection state: only what is waiting to be written back.
struct Conn {
    out: OutBuf,
}

fn conn_cb(e: &mut Event, eventtype: i32, closure: &mut Closure, now: Instant) -> i32 {
    let conn = closure.downcast_mut::<Conn>().expect("closure is a Conn");
    if eventtype & E_TIMEOUT != 0 {
        return 0; // idle too long: finishing the event closes the socket
    }
    if conn.out.pending() > 0 {
        match conn.out.flush(e) {
            Ok(true) => {}
            Ok(false) => return E_WRITE, // still blocked: stop reading (backpressure)
            Err(_) => return 0,
        }
    }
    let mut buf = [0u8; 4096];
    loop {
        match e.read(&mut buf) {
            Io::Done(n) => {
                e.set_timeout(now, Some(IDLE)); // O(1) reset
                if conn.out.send(e, &buf[..n]).is_err() {
                    return 0;
                }
                if conn.out.pending() > 0 {
                    return E_WRITE;
                }
            }
            Io::Wait(_) => return E_READ,
            Io::Closed | Io::Err(_) => return 0,
        }
    }
}

fn accept_cb(e: &mut Event, eventtype: i32, _closure: &mut Closure, now: Instant) -> i32 {
    if eventtype & E_TIMEOUT != 0 {
        return E_READ; // the back-off is over: listen again
    }
    loop {
        match netlistener::sys::accept(e.fd()) {
            Ok((fd, _peer)) => {
                let mut ev = Event::build_fd_event(
                    fd,
                    E_READ,
                    conn_cb,
                    Box::new(Conn { out: OutBuf::new() }),
                );
                ev.set_timeout(now, Some(IDLE));
                if let Err(err) = schedule_event(ev) {
                    eprintln!("cannot schedule a connection: {err}");
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return E_READ,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(err) => {
                // EMFILE, ENFILE, ENOBUFS…: the connection stays queued and the socket stays
                // readable, so drop read interest until the deadline (the event keeps its fd).
                eprintln!("accept: {err}; backing off {ACCEPT_BACKOFF:?}");
                e.set_timeout(now, Some(ACCEPT_BACKOFF));
                return E_TIMEOUT;
            }
        }
    }
}

fn on_term(_signo: i32, _now: Instant) {
    stop_scheduler();
}

fn main() -> std::io::Result<()> {
    netlistener::sys::ignore_sigpipe();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = TcpListener::bind(&addr)?;
    println!("echo_server listening on {}", listener.local_addr()?);
    let sched = Scheduler::new()?;
    on_signal(libc::SIGTERM, on_term)?;
    on_signal(libc::SIGINT, on_term)?;
    schedule_event(Event::build_fd_event(
        OwnedFd::from(listener),
        E_READ,
        accept_cb,
        Box::new(()),
    ))?;
    sched.run();
    Ok(())
}
