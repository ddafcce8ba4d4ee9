//! `Control_Listener`: the admin console, spoken by `nlctl`.
//!
//! C: Momentum's `ec_console` control listener.
//!
//! # Summary
//! A line protocol: the client sends one command per line; every reply is length-framed,
//! `OK <n>\n` or `ERR <n>\n` followed by exactly `n` bytes of text. The socket is a Unix socket
//! by default (mode 0600 unless `File_Mode` says otherwise) and only root or the daemon's own
//! uid may use it (`SO_PEERCRED` / `getpeereid`). A TCP Listen is possible; non-loopback peers
//! are refused unless `Allow_Remote` is true for their Peer scope.
//!
//! Commands: `help`, `version`, `pid`, `summary`, `listeners`, `show inbound`,
//! `count <type> <cidr>`, `threads stats`, `config eval|get|set|unset|show|reload`, `shutdown`.
//!
//! # Contract
//! Commands run on the scheduler thread between I/O events; they are short. `config set`,
//! `unset` and `reload` apply the new generation at once (a `Listen` set to `Enable false`
//! stops listening; live sessions go on).
//!
//! # Diagnostics
//! Unknown commands and bad arguments answer `ERR` with a reason; the session goes on. A line
//! over 4 KiB is refused the same way.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Instant;

use crate::config::{OptionDef, OptionType, Scopes, Slot};
use crate::event::{Closure, Event, Io, LineReader, OutBuf, E_READ, E_TIMEOUT, E_WRITE};
use crate::netlistener::{self as nl, AcceptConstruct, NetError};
use crate::scheduler;
use crate::sys;

const MAX_LINE: usize = 4096;
/// Reply bytes waiting for a client before the session stops reading its commands.
const MAX_PENDING: usize = 1 << 20;

thread_local! {
    static ALLOW_REMOTE: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

struct ControlSession {
    lines: LineReader,
    out: OutBuf,
    quit: bool,
}

/// Registers `Control_Listener` and its `Allow_Remote` option.
pub fn conf_setup() -> Result<(), NetError> {
    let def = nl::netlistener_register3(
        "Control",
        control_listener,
        Some(control_acceptor),
        "control",
    )?;
    nl::netlistener_set_default_file_mode(&def, 0o600);
    // The layer appends CRLF to a reject line: the lengths count it, so the frame is exact.
    nl::netlistener_set_reject_lines(&def, "ERR 19\npermission denied", "ERR 6\nbusy");
    let opt = OptionDef::new(
        "Allow_Remote",
        OptionType::Bool,
        "false",
        Scopes::LISTENER_ALL,
        "accept console connections from non-loopback peers",
    );
    let slot = nl::netlistener_register_option(&def, opt)?;
    ALLOW_REMOTE.with(|s| *s.borrow_mut() = Some(slot));
    Ok(())
}

/// At accept time (maybe on an accept thread): check who is connecting.
fn control_acceptor(e: &mut Event, _et: i32, closure: &mut Closure, _now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("control: accept_construct");
    let ok = match ac.remote_addr {
        None => matches!(sys::peer_uid(e.fd()), Ok(uid) if uid == 0 || uid == sys::geteuid()),
        Some(sa) if sa.ip().to_canonical().is_loopback() => true,
        Some(_) => ALLOW_REMOTE
            .with(|s| s.borrow().map(|slot| ac.fetch(slot).as_bool()))
            .unwrap_or(false),
    };
    if !ok {
        // The same frame as the layer's Deny line (see conf_setup).
        let _ = e.write(b"ERR 19\npermission denied\r\n");
        log::warn!(
            "control: refused a console connection from {:?}",
            ac.remote_addr
        );
    }
    i32::from(ok)
}

fn control_listener(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("control: accept_construct");
    ac.accept_construct_closure = Some(Box::new(ControlSession {
        lines: LineReader::new(MAX_LINE),
        out: OutBuf::new(),
        quit: false,
    }));
    e.callback = control_worker;
    control_worker(e, et, closure, now)
}

fn control_worker(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("control: accept_construct");
    if et & E_TIMEOUT != 0 {
        ac.note_timeout();
        return 0;
    }
    nl::touch(e, ac, now);
    let s = ac
        .closure_mut::<ControlSession>()
        .expect("control: session");
    // A client that sends commands but never reads replies: stop reading until it does.
    match s.out.flush(e) {
        Err(_) => return 0,
        Ok(false) if s.out.pending() >= MAX_PENDING => return E_WRITE,
        Ok(_) => {}
    }
    let mut buf = [0u8; 4096];
    let mut commands = Vec::new();
    let mut eof = false;
    // Bounded reads per wake-up; replies are queued at most one batch past MAX_PENDING.
    for _ in 0..16 {
        match e.read(&mut buf) {
            Io::Done(n) => s.lines.feed(&buf[..n], |l| {
                commands.push(l.map(|b| String::from_utf8_lossy(b).into_owned()))
            }),
            Io::Wait(_) => break,
            Io::Closed | Io::Err(_) => {
                eof = true;
                break;
            }
        }
    }
    for c in commands {
        let reply = match c {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => execute(line.trim(), &mut s.quit),
            // Every reply text ends in a newline, as nlctl prints it as it is.
            Err(_) => Err(format!("command line longer than {MAX_LINE} bytes\n")),
        };
        let (tag, text) = match reply {
            Ok(t) => ("OK", t),
            Err(t) => ("ERR", t),
        };
        if s.out
            .send(e, format!("{tag} {}\n{text}", text.len()).as_bytes())
            .is_err()
        {
            return 0;
        }
    }
    match s.out.flush(e) {
        Err(_) => 0,
        Ok(true) if eof || s.quit => 0,
        Ok(true) => E_READ,
        Ok(false) => E_READ | E_WRITE,
    }
}

const HELP: &str = "\
help                          this list
version                       the daemon's version
pid                           the daemon's process id
summary                       sessions, counters, uptime, configuration generation
listeners                     every Listen: type, address, state, counters
show inbound                  live sessions: id, fd, type, peer, age, state
count <type> <cidr>           live sessions of <type> from <cidr>
threads stats                 thread pools: concurrency, queued, running, completed
config eval <scope> <option>  value with fallback, and the scope that supplied it
config get <scope> <option>   value set in exactly this scope
config set <scope> <option> <value>   change the running configuration (applied at once)
config unset <scope> <option>         remove a value from the running configuration
config show                   the running configuration as INI
config reload                 re-read the configuration files
shutdown                      stop listening, drain sessions, exit
quit                          close this console session
";

/// Runs one console command. `Ok` and `Err` both carry the text to send.
pub fn execute(line: &str, quit: &mut bool) -> Result<String, String> {
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("").to_ascii_lowercase();
    // Keywords are case-insensitive; `config` arguments keep their case (values, paths).
    let lower: Vec<String> = words.map(str::to_ascii_lowercase).collect();
    let rest: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (cmd.as_str(), rest.as_slice()) {
        ("help", []) => Ok(HELP.to_string()),
        ("version", []) => Ok(format!("netlistenerd {}\n", env!("CARGO_PKG_VERSION"))),
        ("pid", []) => Ok(format!("{}\n", std::process::id())),
        ("summary", []) => Ok(summary()),
        ("listeners", []) => Ok(listeners()),
        ("show", ["inbound"]) => Ok(inbound()),
        ("count", [_, _]) => {
            let orig: Vec<&str> = line.split_whitespace().skip(1).collect();
            count(orig[0], orig[1])
        }
        ("threads", ["stats"]) => Ok(threads()),
        ("config", _) => config(line.trim_start()["config".len()..].trim()),
        ("shutdown", []) => {
            crate::daemon::request_shutdown();
            // This session ends after the reply, or it would hold the drain it just started
            // (an interactive nlctl stays connected) until Shutdown_Timeout.
            *quit = true;
            Ok("shutting down\n".to_string())
        }
        ("quit" | "exit", []) => {
            *quit = true;
            Ok("bye\n".to_string())
        }
        _ => Err(format!(
            "unknown command or bad arguments: {line} (try help)\n"
        )),
    }
}

fn summary() -> String {
    let mut s = String::new();
    let gen = nl::ec_config_fetch_globalconf()
        .map(|g| g.number())
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "version {}  pid {}  uptime {}s  config generation {gen}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        crate::daemon::uptime().as_secs()
    );
    let _ = writeln!(
        s,
        "{:<20} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "type", "active", "accepted", "refused", "timeouts", "peak"
    );
    for (kind, st) in nl::types_report() {
        let _ = writeln!(
            s,
            "{kind:<20} {:>8} {:>10} {:>8} {:>8} {:>8}",
            st.active, st.accepted, st.refused, st.timeouts, st.peak
        );
    }
    s
}

fn listeners() -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:<28} {:<28} {:>4} {:>7} {:>9} {:>8} {:>6}  state",
        "type", "listen", "bound", "thr", "active", "accepted", "refused", "failed"
    );
    for r in nl::listeners_report() {
        let st = r.stats;
        let _ = writeln!(
            s,
            "{:<18} {:<28} {:<28} {:>4} {:>7} {:>9} {:>8} {:>6}  {}",
            r.kind,
            r.address,
            r.bound,
            r.concurrency,
            st.active,
            st.accepted,
            st.refused,
            st.failed_accepts,
            r.state
        );
    }
    s
}

fn inbound() -> String {
    let mut s = String::new();
    let now = Instant::now();
    let _ = writeln!(
        s,
        "{:>8} {:>5} {:<18} {:<28} {:>8}  state",
        "id", "fd", "type", "peer", "age"
    );
    for x in nl::sessions_report() {
        let state = scheduler::event_state(x.event).unwrap_or("starting");
        let age = now.saturating_duration_since(x.started).as_secs_f64();
        let _ = writeln!(
            s,
            "{:>8} {:>5} {:<18} {:<28} {:>7.1}s  {state}",
            x.conn_id,
            x.fd,
            x.kind(),
            x.peer(),
            age
        );
    }
    s
}

fn count(kind: &str, cidr: &str) -> Result<String, String> {
    let c: crate::config::Cidr = cidr.parse().map_err(|e| format!("{cidr}: {e}\n"))?;
    let kind = if kind.to_ascii_lowercase().ends_with("_listener") {
        kind.to_string()
    } else {
        format!("{kind}_Listener")
    };
    Ok(format!("{}\n", nl::count_sessions(&kind, &c)))
}

fn threads() -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:>11} {:>8} {:>7} {:>8} {:>10}",
        "pool", "concurrency", "backlog", "queued", "running", "completed"
    );
    for p in scheduler::pool_stats() {
        let _ = writeln!(
            s,
            "{:<12} {:>11} {:>8} {:>7} {:>8} {:>10}",
            p.name, p.concurrency, p.backlog, p.queued, p.running, p.completed
        );
    }
    s
}

fn config(args: &str) -> Result<String, String> {
    let verb = args
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    // `config reload` alone; with more words it falls through to the grammar's usage error.
    if verb == "reload" && args.split_whitespace().count() == 1 {
        return crate::daemon::reload().map_err(|e| format!("{e}\n"));
    }
    let store = nl::netlistener_config().map_err(|e| format!("{e}\n"))?;
    let out = crate::config::console::config_command(&store, args).map_err(|e| ensure_nl(&e))?;
    if verb == "set" || verb == "unset" {
        // Apply the new generation now: sockets open or close as the values say.
        let gen = store.current();
        let failed = crate::daemon::apply_generation(&gen);
        return Ok(ensure_nl(&out) + &failed);
    }
    Ok(ensure_nl(&out))
}

fn ensure_nl(s: &str) -> String {
    if s.ends_with('\n') || s.is_empty() {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}
