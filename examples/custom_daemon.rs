//! A third party's daemon built on the library: its own module with its own option, started
//! through the same entry point `netlistenerd` uses. This is how a C module is ported.
//!
//! ```text
//! cargo run --example custom_daemon -- -c examples/custom_daemon.conf
//! nc 127.0.0.1 7100          # -> "HELLO from 127.0.0.1:7100" then echoes in upper case
//! ```
//!
//! The module `Shout` registers `Shout_Listener` and one option, `Greeting`, which (like every
//! netlistener option) can differ per Listen and per Peer.

use std::cell::Cell;
use std::process::ExitCode;
use std::time::Instant;

use netlistener::config::{OptionDef, OptionType, Scopes, Slot};
use netlistener::daemon::{daemon_main, ModuleDef, BUILTIN_MODULES};
use netlistener::event::{Closure, Event, Io, OutBuf, E_READ, E_TIMEOUT, E_WRITE};
use netlistener::netlistener::{
    netlistener_register3, netlistener_register_option, touch, AcceptConstruct, NetError,
};

thread_local! {
    // C: `static int my_option_slot = -1;`
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
        return 0;
    }
    let mut buf = [0u8; 4096];
    let mut read_any = false;
    let s = ac.closure_mut::<Shout>().expect("set by the listener");
    loop {
        match e.read(&mut buf) {
            Io::Done(n) => {
                read_any = true;
                buf[..n].make_ascii_uppercase();
                if s.out.send(e, &buf[..n]).is_err() {
                    return 0;
                }
            }
            Io::Wait(_) => break,
            Io::Closed | Io::Err(_) => return 0,
        }
    }
    let pending = s.out.pending() > 0;
    if read_any {
        touch(e, ac, now);
    }
    if pending {
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
    daemon_main(&modules)
}
