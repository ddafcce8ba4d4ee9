//! Helpers for tests of the real `netlistenerd` under resource limits: start it with a low
//! `RLIMIT_NOFILE`, and read the CPU time it has used.
//!
//! Include it next to `util/daemon.rs`, which must be the crate's `daemon_util` module:
//!
//! ```ignore
//! #[path = "util/daemon.rs"]
//! mod daemon_util;
//! #[path = "util/daemon_limits.rs"]
//! mod daemon_limits;
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::daemon_util::{poll_until, Daemon, TestDir, NETLISTENERD, READY_DEADLINE};

/// Like `Daemon::start`, under `RLIMIT_NOFILE = nofile`: `sh -c 'ulimit -n N; exec …'`, so
/// the PID is the daemon's own and dropping the `Daemon` still kills it. Readiness is read
/// from the log ("started"), not asked on the console: a console session holds a descriptor
/// for a moment after the client is gone, which a test counting descriptors cannot afford.
pub fn start_with_nofile(dir: &TestDir, nofile: u32) -> Daemon {
    let log = dir.path.join("daemon.log");
    let script = format!("ulimit -n {nofile} || exit 97; exec \"$0\" -c \"$1\" --log-level debug");
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(NETLISTENERD)
        .arg(dir.conf_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create daemon.log"))
        .spawn()
        .expect("spawn sh -c 'ulimit -n …; exec netlistenerd'");
    let mut d = Daemon {
        child,
        sock: dir.control_sock(),
        log,
    };
    poll_until("netlistenerd logs that it started", READY_DEADLINE, || {
        if let Some(st) = d.child.try_wait().expect("try_wait") {
            panic!("netlistenerd exited at start-up ({st}):\n{}", d.log_text());
        }
        d.log_text().contains(" started: pid ").then_some(())
    });
    d
}

/// The address the first Listen of `kind` bound, from its "listening on" log line.
pub fn bound_from_log(d: &Daemon, kind: &str) -> SocketAddr {
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{kind} Listen ")) && l.contains("listening on "))
        .unwrap_or_else(|| panic!("no {kind} Listen in the log:\n{log}"));
    let addr = line.rsplit("listening on ").next().unwrap_or_default();
    addr.trim().parse().expect("a TCP address")
}

/// User + system CPU time the daemon has used (all its threads), from `/proc/PID/stat`;
/// `None` where there is no such file (other OSes than Linux).
pub fn cpu_time(d: &Daemon) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid())).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: the
    // first of them is field 3 of proc(5), so utime (14) and stime (15) are 11 and 12 here.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let out = Command::new("getconf").arg("CLK_TCK").output().ok()?;
    let hz: u64 = std::str::from_utf8(&out.stdout).ok()?.trim().parse().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / hz.max(1)))
}
