//! A third party's daemon built on the library: its own module with its own option, started
//! through the same entry point `netlistenerd` uses, under its own name. This is how a C
//! module is ported.
//!
//! ```text
//! cargo run --example custom_daemon -- -c examples/custom_daemon.conf
//! nc 127.0.0.1 7100          # -> "HELLO from 127.0.0.1:7100" then echoes in upper case
//! cargo run --example custom_daemon -- --version     # -> "shoutd 1.0.0"
//! ```
//!
//! The module `Shout` registers `Shout_Listener` and one option, `Greeting`, which (like every
//! netlistener option) can differ per Listen and per Peer. Its worker is written like
//! `src/modules/echo.rs`: bounded reads per wake-up, bounded pending output (a client that
//! never reads makes the session stop reading), and `Idle_Time` counted in the statistics.

use std::cell::Cell;
use std::process::ExitCode;
use std::time::Instant;

use netlistener::config::{OptionDef, OptionType, Scopes, Slot};
use netlistener::daemon::{daemon_main, DaemonInfo, ModuleDef, BUILTIN_MODULES};
use netlistener::event::{Closure, Event, Io, OutBuf, E_READ, E_TIMEOUT, E_WRITE};
use netlistener::netlistener::{
    netlistener_register3, netlistener_register_option, touch, AcceptConstruct, NetError,
};

/// Bytes waiting for the client before the session stops reading from it.
const MAX_PENDING: usize = 64 * 1024;

thread_local! {
    // C: `static int my_option_slot = -1;` (conf_setup and the listener both run on the
    // scheduler thread; an acceptor, which may run on an accept thread, would need a static).
    static GREETING: Cell<Option<Slot>> = const { Cell::new(None) };
}

/// C: `my_module_conf_setup()`.
fn shout_conf_setup() -> Result<(), NetError> {
    let def = netlistener_register3("Shout", shout_listener, None, "shout")?;
    let opt = OptionDef::new(
        "Greeting",
        OptionType::Str,
        "HELLO",
        Scopes::LISTENER_ALL,
        "first line sent to a client",
    );
    let slot = netlistener_register_option(&def, opt)?;
    GREETING.with(|g| g.set(Some(slot)));
    Ok(())
}

struct Shout {
    out: OutBuf,
}

/// C: `mymodule_listener()`: set up the session, swap the callback, tail-call the worker.
fn shout_listener(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("accept_construct");
    let slot = GREETING
        .with(|g| g.get())
        .expect("registered in conf_setup");
    let hello = format!("{} from {}\r\n", ac.fetch(slot).as_str(), ac.inst.address);
    let mut s = Shout { out: OutBuf::new() };
    if s.out.send(e, hello.as_bytes()).is_err() {
        return 0;
    }
    ac.accept_construct_closure = Some(Box::new(s));
    e.callback = shout_worker;
    shout_worker(e, et, closure, now)
}

/// C: `mymodule_worker()`.
fn shout_worker(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("accept_construct");
    if et & E_TIMEOUT != 0 {
        ac.note_timeout(); // counted in `nlctl summary`
        return 0;
    }
    let s = ac.closure_mut::<Shout>().expect("set by the listener");
    // Drain what is queued first; while it cannot drain, read nothing more (backpressure).
    match s.out.flush(e) {
        Err(_) => return 0,
        Ok(false) if s.out.pending() >= MAX_PENDING => return E_WRITE,
        Ok(_) => {}
    }
    let mask = shout_reads(e, &mut s.out);
    if mask & E_READ != 0 {
        touch(e, ac, now); // activity: push the idle deadline
    }
    mask
}

/// Reads, shouts back, and returns the wait mask; at most 16 reads per wake-up, so one busy
/// client does not starve the others, and no more once `MAX_PENDING` bytes wait.
fn shout_reads(e: &Event, out: &mut OutBuf) -> i32 {
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match e.read(&mut buf) {
            Io::Done(n) => {
                buf[..n].make_ascii_uppercase();
                if out.send(e, &buf[..n]).is_err() {
                    return 0;
                }
                if out.pending() >= MAX_PENDING {
                    return E_WRITE;
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

fn main() -> ExitCode {
    let mut modules: Vec<ModuleDef> = BUILTIN_MODULES.to_vec();
    modules.push(ModuleDef {
        name: "shout",
        conf_setup: shout_conf_setup,
    });
    let info = DaemonInfo {
        name: "shoutd",
        version: "1.0.0",
    };
    daemon_main(info, &modules)
}
