//! `Echo_Listener`: echoes back what it reads. The module to copy when writing your own.
//!
//! C: a minimal Momentum netlistener module (`my_module_conf_setup`, `mymodule_listener`,
//! `mymodule_worker` from the netlistener API documentation).
//!
//! # Summary
//! Everything a module does, in order:
//! 1. `conf_setup` registers the listener type (and would register its options).
//! 2. The **listener** callback runs once per connection on the scheduler thread: it stores the
//!    per-session state in `accept_construct_closure`, swaps `e.callback` to the **worker**
//!    and tail-calls it (the C idiom, one to one).
//! 3. The **worker** runs on every readiness: it reads into a buffer shared by all sessions,
//!    writes back, touches the idle timeout, and returns what it waits for next.
//!
//! # Contract
//! Backpressure: a client that sends but never reads makes the session stop reading once
//! [`MAX_PENDING`] bytes wait to be written; memory per session stays bounded by that plus
//! one read.
//!
//! # Diagnostics
//! None: a session ends (fd closed) on EOF, a write error or its idle timeout.

use std::cell::RefCell;
use std::time::Instant;

use crate::event::{Closure, Event, Io, OutBuf, E_READ, E_TIMEOUT, E_WRITE};
use crate::netlistener::{netlistener_register3, touch, AcceptConstruct, NetError};

/// Bytes waiting to be written before the session stops reading.
pub const MAX_PENDING: usize = 64 * 1024;

thread_local! {
    /// One read buffer for every session of the scheduler thread: an idle session holds none.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 16 * 1024]);
}

/// Per-session state: only the bytes the peer has not taken yet (no allocation when empty).
struct EchoSession {
    out: OutBuf,
}

/// Registers `Echo_Listener`. C: `my_module_conf_setup()`.
pub fn conf_setup() -> Result<(), NetError> {
    netlistener_register3("Echo", echo_listener, None, "echo")?;
    Ok(())
}

/// Runs once per connection. C: `mymodule_listener()`.
fn echo_listener(e: &mut Event, eventtype: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("echo: closure is an accept_construct");
    // Do not replace the event's closure: per-session state goes here.
    ac.accept_construct_closure = Some(Box::new(EchoSession { out: OutBuf::new() }));
    e.callback = echo_worker;
    echo_worker(e, eventtype, closure, now)
}

/// Runs on every readiness of the session. C: `mymodule_worker()`.
fn echo_worker(e: &mut Event, eventtype: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("echo: closure is an accept_construct");
    if eventtype & E_TIMEOUT != 0 {
        ac.note_timeout();
        return 0; // finishing the event closes the connection
    }
    let sess = ac
        .closure_mut::<EchoSession>()
        .expect("echo: session state set by the listener");
    // Drain what is queued first; while it cannot drain, do not read more (backpressure).
    match sess.out.flush(e) {
        Ok(true) => {}
        Ok(false) if sess.out.pending() >= MAX_PENDING => return E_WRITE,
        Ok(false) => {}
        Err(_) => return 0,
    }
    let mask = READ_BUF.with(|b| echo_reads(e, &mut sess.out, &mut b.borrow_mut()));
    if mask != 0 && mask != E_WRITE {
        touch(e, ac, now); // activity: push the idle deadline (O(1))
    }
    mask
}

/// Reads and echoes until the socket is empty or the output backs up. Returns the wait mask.
fn echo_reads(e: &Event, out: &mut OutBuf, buf: &mut [u8]) -> i32 {
    // A bounded number of reads per wake-up keeps one busy peer from starving the others,
    // and a short read means the socket is drained: back to the poller, which is fairer to
    // the other sessions and saves the read that would return EAGAIN.
    for _ in 0..16 {
        match e.read(buf) {
            Io::Done(n) => {
                if out.send(e, &buf[..n]).is_err() {
                    return 0;
                }
                if out.pending() >= MAX_PENDING {
                    return E_WRITE;
                }
                if n < buf.len() {
                    break;
                }
            }
            Io::Wait(_) => break,
            Io::Closed | Io::Err(_) => return 0,
        }
    }
    if out.pending() > 0 {
        E_READ | E_WRITE
    } else {
        E_READ
    }
}
