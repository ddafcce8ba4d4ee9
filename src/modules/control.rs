//! `Control_Listener`: the admin console, spoken by `nlctl`.
//!
//! C: Momentum's `ec_console` control listener.
//!
//! # Summary
//! A line protocol: the client sends one command per line; every reply is length-framed,
//! `OK <n>\n` or `ERR <n>\n` followed by exactly `n` bytes of text. The socket is a Unix socket
//! by default (mode 0600 unless `File_Mode` says otherwise) and only root or the daemon's own
//! uid may use it (`SO_PEERCRED` / `getpeereid`). A TCP Listen is possible; it has **no** user
//! check (anyone who can connect is admitted): loopback peers are always admitted, other peers
//! are refused unless `Allow_Remote` is true for their Peer scope.
//!
//! Commands: `help`, `version`, `pid`, `summary`, `listeners`, `show inbound`,
//! `count <type> <cidr>`, `threads stats`, `config eval|get|set|unset|show|reload`, `shutdown`.
//!
//! # Contract
//! Commands run on the scheduler thread between I/O events; they are short. `config set`,
//! `unset` and `reload` apply the new generation at once (a `Listen` set to `Enable false`
//! stops listening; live sessions go on), name the Listens they opened or closed, and are
//! logged with the peer (uid or address). Once a shutdown is requested they are refused.
//! The acceptor may run on an accept thread (`Concurrency` ≥ 1): what it reads is static.
//!
//! # Diagnostics
//! Unknown commands and bad arguments answer `ERR` with a reason; the session goes on. A line
//! over 4 KiB is refused the same way. Control characters in replies are escaped (`\t`,
//! `\u{1}`), so a command echoed back in an error cannot drive the operator's terminal.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::{OptionDef, OptionType, Scopes, Slot};
use crate::event::{Closure, Event, Io, LineReader, OutBuf, E_READ, E_TIMEOUT, E_WRITE};
use crate::netlistener::{self as nl, AcceptConstruct, NetError};
use crate::scheduler;
use crate::sys;

const MAX_LINE: usize = 4096;
/// Reply bytes waiting for a client before the session stops reading its commands.
const MAX_PENDING: usize = 1 << 20;

/// The `Allow_Remote` slot. Static, not thread-local: the acceptor that reads it runs on the
/// Listen's accept threads when `Concurrency` ≥ 1.
static ALLOW_REMOTE: Mutex<Option<Slot>> = Mutex::new(None);

fn allow_remote_slot() -> Option<Slot> {
    *ALLOW_REMOTE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who is at the other end of a console connection.
#[derive(Debug)]
enum Peer {
    /// A Unix socket peer: its uid (`SO_PEERCRED` / `getpeereid`), or why it is unknown.
    Unix(Result<u32, String>),
    /// A TCP peer.
    Tcp(SocketAddr),
}

impl Peer {
    fn of(e: &Event, remote: Option<SocketAddr>) -> Peer {
        match remote {
            Some(sa) => Peer::Tcp(sa),
            None => Peer::Unix(sys::peer_uid(e.fd()).map_err(|err| err.to_string())),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Unix(Ok(uid)) => write!(f, "uid {uid}"),
            Peer::Unix(Err(e)) => write!(f, "a peer of unknown uid ({e})"),
            Peer::Tcp(sa) => write!(f, "{sa}"),
        }
    }
}

/// The admission rule: a Unix peer must be root or `euid`; a TCP peer on loopback is admitted
/// (no user check is possible), another only when `allow_remote()` says so for its scope.
fn admitted(peer: &Peer, euid: u32, allow_remote: impl FnOnce() -> bool) -> bool {
    match peer {
        Peer::Unix(Ok(uid)) => *uid == 0 || *uid == euid,
        Peer::Unix(Err(_)) => false,
        Peer::Tcp(sa) if sa.ip().to_canonical().is_loopback() => true,
        Peer::Tcp(_) => allow_remote(),
    }
}

struct ControlSession {
    lines: LineReader,
    out: OutBuf,
    quit: bool,
    /// The peer, for the log lines of configuration changes.
    who: String,
}

/// Registers `Control_Listener` and its `Allow_Remote` option.
pub fn conf_setup() -> Result<(), NetError> {
    let def = nl::netlistener_register3(
        "Control",
        control_listener,
        Some(control_acceptor),
        "control",
    )?;
    nl::netlistener_set_default_file_mode(&def, 0o600)?;
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
    *ALLOW_REMOTE.lock().unwrap_or_else(|p| p.into_inner()) = Some(slot);
    Ok(())
}

/// At accept time (on an accept thread when `Concurrency` ≥ 1): check who is connecting.
fn control_acceptor(e: &mut Event, _et: i32, closure: &mut Closure, _now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("control: accept_construct");
    let peer = Peer::of(e, ac.remote_addr);
    let allow = || allow_remote_slot().is_some_and(|slot| ac.fetch(slot).as_bool());
    let ok = admitted(&peer, sys::geteuid(), allow);
    if !ok {
        // The same frame as the layer's Deny line (see conf_setup).
        let _ = e.write(b"ERR 19\npermission denied\r\n");
        log::warn!("control: refused a console connection from {peer}");
    } else {
        // Handed to control_listener: one SO_PEERCRED lookup per connection, not two.
        ac.accept_construct_closure = Some(Box::new(peer));
    }
    i32::from(ok)
}

fn control_listener(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure
        .downcast_mut::<AcceptConstruct>()
        .expect("control: accept_construct");
    // The acceptor (which always runs first) left the peer it admitted.
    let peer = ac
        .accept_construct_closure
        .take()
        .and_then(|b| b.downcast::<Peer>().ok());
    let who = peer
        .map_or_else(|| Peer::of(e, ac.remote_addr), |p| *p)
        .to_string();
    ac.accept_construct_closure = Some(Box::new(ControlSession {
        lines: LineReader::new(MAX_LINE),
        out: OutBuf::new(),
        quit: false,
        who,
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
            Ok(line) => execute(line.trim(), &s.who, &mut s.quit),
            // Every reply text ends in a newline, as nlctl prints it as it is.
            Err(_) => Err(format!("command line longer than {MAX_LINE} bytes\n")),
        };
        let (tag, text) = match reply {
            Ok(t) => ("OK", escape_controls(&t)),
            Err(t) => ("ERR", escape_controls(&t)),
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

/// Escapes every control character but the line feed, so replies that echo a command cannot
/// send terminal escapes to the operator.
fn escape_controls(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c {
            '\n' => "\n".to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Runs one console command from `who` (for the log). `Ok` and `Err` both carry the text to
/// send.
pub fn execute(line: &str, who: &str, quit: &mut bool) -> Result<String, String> {
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("").to_ascii_lowercase();
    // Keywords are case-insensitive; `config` arguments keep their case (values, paths).
    let lower: Vec<String> = words.map(str::to_ascii_lowercase).collect();
    let rest: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (cmd.as_str(), rest.as_slice()) {
        ("help", []) => Ok(HELP.to_string()),
        ("version", []) => {
            let d = crate::daemon::daemon_info();
            Ok(format!("{} {}\n", d.name, d.version))
        }
        ("pid", []) => Ok(format!("{}\n", std::process::id())),
        ("summary", []) => Ok(summary()),
        ("listeners", []) => Ok(listeners()),
        ("show", ["inbound"]) => Ok(inbound()),
        ("count", [_, _]) => {
            let orig: Vec<&str> = line.split_whitespace().skip(1).collect();
            count(orig[0], orig[1])
        }
        ("threads", ["stats"]) => Ok(threads()),
        ("config", _) => config(line.trim_start()["config".len()..].trim(), who),
        ("shutdown", []) => {
            log::info!("control: {who}: shutdown");
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

/// Lays out a table: each column as wide as its widest cell, aligned as `align` says, one
/// letter per column (`l` left, `r` right); trailing blanks trimmed.
fn table(header: &[&str], align: &str, rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, ((c, w), a)) in r.iter().zip(&width).zip(align.chars()).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            let _ = match a {
                'l' => write!(line, "{sep}{c:<w$}"),
                _ => write!(line, "{sep}{c:>w$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn summary() -> String {
    let gen = nl::ec_config_fetch_globalconf()
        .map(|g| g.number())
        .unwrap_or(0);
    let mut s = format!(
        "version {}  pid {}  uptime {}s  config generation {gen}\n",
        crate::daemon::daemon_info().version,
        std::process::id(),
        crate::daemon::uptime().as_secs()
    );
    let rows: Vec<Vec<String>> = nl::types_report()
        .into_iter()
        .map(|(kind, st)| {
            let n = [st.active, st.accepted, st.refused, st.timeouts, st.peak];
            std::iter::once(kind)
                .chain(n.iter().map(u64::to_string))
                .collect()
        })
        .collect();
    let header = ["type", "active", "accepted", "refused", "timeouts", "peak"];
    s.push_str(&table(&header, "lrrrrr", &rows));
    s
}

fn listeners() -> String {
    listeners_table(nl::listeners_report())
}

fn listeners_table(reports: Vec<nl::ListenReport>) -> String {
    let rows: Vec<Vec<String>> = reports
        .into_iter()
        .map(|r| {
            let st = r.stats;
            let n = [
                r.concurrency as u64,
                st.active,
                st.peak,
                st.accepted,
                st.refused,
                st.refused_deny,
                st.refused_listener_cap,
                st.refused_service_cap,
                st.refused_acceptor,
                st.failed_accepts,
                st.queue_waits,
            ];
            [r.kind, r.address, r.bound]
                .into_iter()
                .chain(n.iter().map(u64::to_string))
                .chain(std::iter::once(r.state))
                .collect()
        })
        .collect();
    let header = [
        "type", "listen", "bound", "thr", "active", "peak", "accepted", "refused", "deny", "lcap",
        "scap", "acceptor", "failed", "qwait", "state",
    ];
    table(&header, "lllrrrrrrrrrrrl", &rows)
}

fn inbound() -> String {
    let now = Instant::now();
    let rows: Vec<Vec<String>> = nl::sessions_report()
        .into_iter()
        .map(|x| {
            let state = scheduler::event_state(x.event).unwrap_or("starting");
            let age = now.saturating_duration_since(x.started).as_secs_f64();
            vec![
                x.conn_id.to_string(),
                x.fd.to_string(),
                x.kind().to_string(),
                x.peer(),
                format!("{age:.1}s"),
                state.to_string(),
            ]
        })
        .collect();
    let header = ["id", "fd", "type", "peer", "age", "state"];
    table(&header, "rrllrl", &rows)
}

fn count(kind: &str, cidr: &str) -> Result<String, String> {
    let want = if kind.to_ascii_lowercase().ends_with("_listener") {
        kind.to_string()
    } else {
        format!("{kind}_Listener")
    };
    let types: Vec<String> = nl::types_report().into_iter().map(|(k, _)| k).collect();
    let Some(kind) = types.iter().find(|k| k.eq_ignore_ascii_case(&want)) else {
        return Err(format!(
            "{kind}: unknown listener type (known: {})\n",
            types.join(", ")
        ));
    };
    let c: crate::config::Cidr = cidr.parse().map_err(|e| format!("{cidr}: {e}\n"))?;
    Ok(format!("{}\n", nl::count_sessions(kind, &c)))
}

fn threads() -> String {
    let rows: Vec<Vec<String>> = scheduler::pool_stats()
        .into_iter()
        .map(|p| {
            let n = [p.concurrency, p.backlog, p.queued, p.running];
            std::iter::once(p.name.to_string())
                .chain(n.iter().map(|v| v.to_string()))
                .chain(std::iter::once(p.completed.to_string()))
                .collect()
        })
        .collect();
    let header = [
        "pool",
        "concurrency",
        "backlog",
        "queued",
        "running",
        "completed",
    ];
    table(&header, "lrrrrr", &rows)
}

fn config(args: &str, who: &str) -> Result<String, String> {
    let verb = args
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(verb.as_str(), "set" | "unset" | "reload") {
        // Log before running: the operator sees who asked even if it fails.
        log::info!("control: {who}: config {}", escape_controls(args));
        // The daemon applies the change, and refuses it during a shutdown.
        let reply = crate::daemon::config_change(args);
        return reply.map(|o| ensure_nl(&o)).map_err(|e| ensure_nl(&e));
    }
    let store = nl::netlistener_config().map_err(|e| format!("{e}\n"))?;
    let out = crate::config::console::config_command(&store, args).map_err(|e| ensure_nl(&e))?;
    Ok(ensure_nl(&out))
}

fn ensure_nl(s: &str) -> String {
    if s.ends_with('\n') || s.is_empty() {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Peer {
        Peer::Tcp(s.parse().unwrap())
    }

    #[test]
    fn unix_peers_must_be_root_or_the_daemons_user() {
        let never = || panic!("Allow_Remote is not consulted for Unix peers");
        assert!(admitted(&Peer::Unix(Ok(0)), 1000, never));
        assert!(admitted(&Peer::Unix(Ok(1000)), 1000, never));
        assert!(!admitted(&Peer::Unix(Ok(65534)), 1000, never));
        assert!(!admitted(&Peer::Unix(Err("EINVAL".into())), 0, never));
        assert_eq!(Peer::Unix(Ok(65534)).to_string(), "uid 65534");
    }

    #[test]
    fn tcp_peers_off_loopback_need_allow_remote() {
        let never = || panic!("Allow_Remote is not consulted for loopback peers");
        assert!(admitted(&tcp("127.0.0.1:5000"), 0, never));
        assert!(admitted(&tcp("[::1]:5000"), 0, never));
        assert!(admitted(&tcp("[::ffff:127.0.0.1]:5000"), 0, never));
        assert!(!admitted(&tcp("192.0.2.7:5000"), 0, || false));
        assert!(admitted(&tcp("192.0.2.7:5000"), 0, || true));
        assert_eq!(tcp("192.0.2.7:5000").to_string(), "192.0.2.7:5000");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain\n"), "plain\n");
        assert_eq!(
            escape_controls("a\x1b[31mb\tc\r\n"),
            "a\\u{1b}[31mb\\tc\\r\n"
        );
    }

    #[test]
    fn listeners_show_queue_waits_before_the_state() {
        let report = |kind: &str, state: &str, queue_waits: u64| nl::ListenReport {
            kind: kind.to_string(),
            address: "127.0.0.1:0".to_string(),
            bound: "127.0.0.1:2525".to_string(),
            state: state.to_string(),
            concurrency: 4,
            fd: 7,
            stats: nl::StatsSnapshot {
                failed_accepts: 3,
                queue_waits,
                ..Default::default()
            },
        };
        let t = listeners_table(vec![
            report("ESMTP_Listener", "listening", 12345),
            report("Echo_Listener", "failed: bind: in use (errno 98)", 0),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].ends_with("  failed  qwait  state"), "{t}");
        let qwait_end = lines[0].find("qwait").unwrap() + "qwait".len();
        let state_at = lines[0].find("state").unwrap();
        assert!(lines[1].ends_with("  3  12345  listening"), "{t}");
        assert_eq!(&lines[1][qwait_end - 5..qwait_end], "12345", "{t}");
        assert_eq!(lines[2].find("failed: bind"), Some(state_at), "{t}");
        assert_eq!(&lines[2][qwait_end - 1..qwait_end], "0", "{t}");
    }

    #[test]
    fn tables_fit_their_widest_cell() {
        let rows = vec![
            vec![
                "Echo".to_string(),
                "/a/very/long/path.sock".to_string(),
                "7".to_string(),
                "ok".to_string(),
            ],
            vec![
                "E".to_string(),
                "x".to_string(),
                "12345".to_string(),
                "failed: a b".to_string(),
            ],
        ];
        let t = table(&["type", "listen", "n", "state"], "llrl", &rows);
        assert_eq!(
            t,
            "type  listen                      n  state\n\
             Echo  /a/very/long/path.sock      7  ok\n\
             E     x                       12345  failed: a b\n"
        );
    }
}
