//! Command-line parsing for echoload (std only, no argument-parsing crate).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const MAX_CONNS: usize = 1000;
pub const MAX_IDLE: usize = 100_000;
pub const MAX_SIZE: usize = 1 << 20;
pub const MAX_DURATION: Duration = Duration::from_secs(600);

pub const USAGE: &str = "\
usage: echoload --addr 127.0.0.1:PORT --conns N [--size BYTES] [--duration 5s]
                [--warmup 1s] [--max-requests M] [--threads T] [--max-errors E]
                [--timeout 5s]
       echoload --addr 127.0.0.1:PORT --idle N [--hold 10s] [--timeout 5s]
Both: [--batch B]  connections are opened B at a time (default 128), each batch
                   echoing one byte per connection before the next batch opens

Closed loop: N connections, each sends SIZE bytes and waits for the whole echo before
sending again. Prints one line:
  conns=N size=S duration_s=D requests=R rps=X p50_us=A p99_us=B errors=E
Idle: opens N connections, prints
  opened=K errors=E  (once they are all open), holds them for --hold, then prints
  idle_conns=N opened=K errors=E
Only loopback targets (127.0.0.0/8, ::1) are accepted. Durations: 500ms, 5s, 1m, or
plain seconds. Exit status: 0 ok, 1 errors above --max-errors, 2 usage, 3 watchdog.";

#[derive(Debug, Clone)]
pub enum Mode {
    Closed {
        conns: usize,
        threads: usize,
        size: usize,
        duration: Duration,
        warmup: Duration,
        max_requests: Option<u64>,
        max_errors: u64,
    },
    Idle {
        conns: usize,
        hold: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Args {
    pub addr: SocketAddr,
    pub timeout: Duration,
    pub batch: usize,
    pub mode: Mode,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&secs) {
        return Err(format!("duration {s:?} out of range (0..=600s)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves `s` and refuses anything that is not a loopback address: this tool is only
/// ever pointed at servers on this machine.
pub fn parse_loopback_addr(s: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("--addr {s:?}: {e}"))?
        .collect();
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(bad) => Err(format!(
            "--addr {s:?} resolves to {bad}, which is not loopback; echoload only targets \
             127.0.0.0/8 or ::1"
        )),
        None => addrs
            .first()
            .copied()
            .ok_or_else(|| format!("--addr {s:?}: no address")),
    }
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: bad number {v:?}"))
}

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut addr = None;
    let (mut conns, mut idle, mut threads, mut max_requests) = (None, None, None, None);
    let (mut size, mut max_errors, mut batch) = (64usize, 0u64, 128usize);
    let mut duration = Duration::from_secs(5);
    let mut warmup = Duration::from_secs(1);
    let mut hold = Duration::from_secs(10);
    let mut timeout = Duration::from_secs(5);
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let v = it.next().ok_or_else(|| format!("{flag}: missing value"))?;
        match flag.as_str() {
            "--addr" => addr = Some(parse_loopback_addr(v)?),
            "--conns" => conns = Some(num::<usize>(flag, v)?),
            "--idle" => idle = Some(num::<usize>(flag, v)?),
            "--size" => size = num(flag, v)?,
            "--batch" => batch = num(flag, v)?,
            "--threads" => threads = Some(num::<usize>(flag, v)?),
            "--max-requests" => max_requests = Some(num::<u64>(flag, v)?),
            "--max-errors" => max_errors = num(flag, v)?,
            "--duration" => duration = parse_duration(v)?,
            "--warmup" => warmup = parse_duration(v)?,
            "--hold" => hold = parse_duration(v)?,
            "--timeout" => timeout = parse_duration(v)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    if batch == 0 || batch > 1000 {
        return Err("--batch must be 1..=1000".into());
    }
    if timeout.is_zero() {
        return Err("--timeout must be > 0".into());
    }
    let mode = match (conns, idle) {
        (Some(_), Some(_)) => return Err("--conns and --idle are exclusive".into()),
        (None, None) => return Err("one of --conns or --idle is required".into()),
        (None, Some(n)) => {
            if n == 0 || n > MAX_IDLE {
                return Err(format!("--idle must be 1..={MAX_IDLE}"));
            }
            Mode::Idle { conns: n, hold }
        }
        (Some(n), None) => {
            if n == 0 || n > MAX_CONNS {
                return Err(format!("--conns must be 1..={MAX_CONNS}"));
            }
            if size == 0 || size > MAX_SIZE {
                return Err(format!("--size must be 1..={MAX_SIZE}"));
            }
            if duration.is_zero() {
                return Err("--duration must be > 0".into());
            }
            let threads = threads.unwrap_or(n);
            if threads == 0 || threads > n {
                return Err("--threads must be 1..=conns".into());
            }
            Mode::Closed {
                conns: n,
                threads,
                size,
                duration,
                warmup,
                max_requests,
                max_errors,
            }
        }
    };
    Ok(Args {
        addr,
        timeout,
        batch,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_loopback() {
        assert!(parse_loopback_addr("127.0.0.1:7").is_ok());
        assert!(parse_loopback_addr("127.9.9.9:7").is_ok());
        assert!(parse_loopback_addr("[::1]:7").is_ok());
        assert!(parse_loopback_addr("10.0.0.1:7").is_err());
        assert!(parse_loopback_addr("192.0.2.1:7").is_err());
        assert!(parse_loopback_addr("[::ffff:127.0.0.1]:7").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("11m").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
