//! Black-box tests of the built `netlistenerd` and `nlctl`: command line and exit codes,
//! echo over loopback, every console command, reload (console and SIGHUP), shutdown (SIGTERM,
//! console, drain deadline), the control socket's mode and backpressure on a client that never
//! reads. Each test has its own directory and ports, so they run in parallel.

#[path = "util/daemon.rs"]
mod daemon_util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use daemon_util::*;

// ---------------- helpers

/// A config with `globals` in the global scope, the Control Listen, one Echo Listen on
/// 127.0.0.1 port 0, then `sections`.
fn echo_conf(dir: &TestDir, globals: &str, sections: &str) -> String {
    format!(
        "{globals}\n{}[Echo_Listener Listen \"127.0.0.1:0\"]\n\n{sections}",
        dir.base_conf()
    )
}

/// One running daemon with one Echo Listen; returns it and the Echo address.
fn start_echo(dir: &TestDir, globals: &str, sections: &str) -> (Daemon, SocketAddr) {
    dir.write_conf("00.conf", &echo_conf(dir, globals, sections));
    let d = Daemon::start(dir);
    let addr = d.bound("Echo_Listener")[0];
    (d, addr)
}

/// True when a connection to `addr` is actively refused (nothing listens there).
fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// A daemon whose console also listens on TCP at `listen` (port 0), with `sections` appended;
/// returns it and the TCP console's bound address.
fn start_tcp_console(dir: &TestDir, listen: &str, sections: &str) -> (Daemon, SocketAddr) {
    dir.write_conf(
        "00.conf",
        &format!(
            "{}[Control_Listener Listen \"{listen}\"]\n\n{sections}",
            dir.base_conf()
        ),
    );
    let d = Daemon::start(dir);
    let tcp = d.bound("Control_Listener");
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    (d, tcp[0])
}

fn tcp_target(a: SocketAddr) -> std::path::PathBuf {
    a.to_string().into()
}

/// A local non-loopback IPv4 address (the source of the default route), if the host has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends no packet: it only picks a route and its source address.
    ["198.51.100.1:9", "10.255.255.1:9", "192.0.2.1:9"]
        .iter()
        .find_map(|target| {
            let u = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            u.connect(target).ok()?;
            let ip = u.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

/// Runs `nlctl -s SOCKET` with `input` on its standard input (pipe mode).
fn nlctl_piped(sock: &std::path::Path, input: &[u8]) -> Ctl {
    use std::process::{Command, Stdio};
    let mut child = Command::new(NLCTL)
        .arg("-s")
        .arg(sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let st = wait_deadline(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("nlctl with a pipe did not finish");
    });
    feeder.join().unwrap();
    Ctl {
        code: st.code(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// A fake daemon on a Unix socket: reads one command line, answers `reply`, closes.
fn fake_console(dir: &TestDir, reply: &'static [u8]) -> std::path::PathBuf {
    let path = dir.path.join("fake.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 256];
            let _ = s.read(&mut b);
            let _ = s.write_all(reply);
        }
    });
    path
}

// ---------------- command line, --check, exit codes

#[test]
fn version_flag() {
    let o = netlistenerd(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("netlistenerd {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_command_lines() {
    let o = netlistenerd(&["--frobnicate"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("netlistenerd: unknown argument: --frobnicate\nusage: netlistenerd "),
        "{err}"
    );
    let o = netlistenerd(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("usage: netlistenerd "));

    let o = run_with_deadline(
        std::process::Command::new(NLCTL).arg("-s"),
        Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "usage: nlctl [-s SOCKET] COMMAND...\n"
    );
    let o = run_with_deadline(
        std::process::Command::new(NLCTL).arg("--help"),
        Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

#[test]
fn check_good_config() {
    let dir = TestDir::new("check-good");
    dir.write_conf(
        "00.conf",
        &echo_conf(&dir, "", "[Echo_Listener]\nIdle_Time = 60s\n"),
    );
    let conf = dir.conf_dir();
    let o = netlistenerd(&["-c", conf.to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}: configuration OK\n", conf.display())
    );
    // --check opens nothing.
    assert!(!dir.control_sock().exists());
}

#[test]
fn shipped_conf_d_passes_check() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf.d");
    let o = netlistenerd(&["-c", conf, "--check"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{conf}: configuration OK\n")
    );
    assert!(o.stderr.is_empty(), "{o:?}");
}

#[test]
fn check_broken_config_reports_every_error_with_path_and_line() {
    let dir = TestDir::new("check-broken");
    let file = dir.write_conf(
        "00.conf",
        "Log_Level = info\n\
         [Echo_Listener]\n\
         Idle_Time = banana\n\
         [Echo_Listener Listen \"127.0.0.1:0\"]\n\
         Frobnicate = 1\n",
    );
    let conf = dir.conf_dir();
    let o = netlistenerd(&["-c", conf.to_str().unwrap(), "--check"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    let f = file.display();
    assert_eq!(
        err,
        format!(
            "{f}:3: [Echo_Listener] Idle_Time: \"banana\" is not a duration (seconds, or a number with ms, s, m or h)\n\
             {f}:5: [Echo_Listener Listen \"127.0.0.1:0\"] Frobnicate: unknown option\n\
             netlistenerd: {}: 2 configuration error(s)\n",
            conf.display()
        )
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn start_with_config_error_exits_1() {
    let dir = TestDir::new("start-broken");
    dir.write_conf(
        "00.conf",
        &echo_conf(&dir, "", "[Echo_Listener]\nIdle_Time = banana\n"),
    );
    let conf = dir.conf_dir();
    let o = netlistenerd(&["-c", conf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(":9: [Echo_Listener] Idle_Time:"));
    assert!(!dir.control_sock().exists());
}

#[test]
fn listen_that_cannot_bind_at_start_exits_2() {
    let dir = TestDir::new("bind-fail");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    dir.write_conf(
        "00.conf",
        &format!("{}[Echo_Listener Listen \"{addr}\"]\n", dir.base_conf()),
    );
    let conf = dir.conf_dir();
    let o = netlistenerd(&["-c", conf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("Echo_Listener Listen \"{addr}\": failed: bind: "))
            && err.contains(&format!("(errno {})", libc::EADDRINUSE)),
        "{err}"
    );
    drop(taken);
}

// ---------------- echo

#[test]
fn echo_round_trips_on_two_listens_at_once() {
    let dir = TestDir::new("echo-two");
    // One Listen accepts in the scheduler thread, the other in two accept threads.
    let (d, a) = start_echo(
        &dir,
        "",
        "[Echo_Listener Listen \"127.0.0.2:0\"]\nConcurrency = 2\n",
    );
    let thr: Vec<String> = d
        .ctl_ok(&["listeners"])
        .lines()
        .filter(|l| l.starts_with("Echo_Listener"))
        .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
        .collect();
    assert_eq!(thr, ["0", "2"]);
    let bound = d.bound("Echo_Listener");
    assert_eq!(bound.len(), 2, "{bound:?}");
    assert_eq!(bound[0], a);
    assert_eq!(bound[1].ip().to_string(), "127.0.0.2");
    // Both sessions open at once, interleaved, with payloads bigger than one read.
    let mut s1 = connect(bound[0]);
    let mut s2 = connect(bound[1]);
    let p1: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let p2: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    for (c1, c2) in p1.chunks(10_000).zip(p2.chunks(10_000)) {
        round_trip(&mut s1, c1);
        round_trip(&mut s2, c2);
    }
    round_trip(&mut s1, b"hello\r\n");
    round_trip(&mut s2, b"world\r\n");
    let summary = d.ctl_ok(&["summary"]);
    let row = summary
        .lines()
        .find(|l| l.starts_with("Echo_Listener"))
        .expect("Echo row");
    let w: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((w[1], w[2]), ("2", "2"), "active, accepted: {summary}");
}

#[test]
fn peer_idle_time_closes_a_silent_session() {
    let dir = TestDir::new("idle");
    let (d, echo) = start_echo(
        &dir,
        "",
        "[Echo_Listener]\nIdle_Time = 1h\n\n[Echo_Listener Peer \"127.0.0.1/32\"]\nIdle_Time = 300ms\n",
    );
    assert_eq!(
        d.ctl_ok(&[
            "config",
            "eval",
            "Echo_Listener",
            "Peer",
            "127.0.0.1",
            "Idle_Time"
        ]),
        "Idle_Time = 300ms (from Echo_Listener Peer \"127.0.0.1/32\")\n"
    );
    let mut s = connect(echo);
    round_trip(&mut s, b"then silence");
    let t0 = Instant::now();
    let mut b = [0u8; 8];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("silent session not timed out: {other:?}"),
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    let summary = d.ctl_ok(&["summary"]);
    let row: Vec<&str> = summary
        .lines()
        .find(|l| l.starts_with("Echo_Listener"))
        .expect("Echo row")
        .split_whitespace()
        .collect();
    assert_eq!(row[4], "1", "timeouts: {summary}");
}

#[test]
fn client_that_never_reads_has_bounded_memory() {
    const MIB: usize = 1 << 20;
    let dir = TestDir::new("no-read");
    // Small server-side socket buffers (inherited from the Listen by accepted sockets) keep
    // what the kernel can absorb far below what the writer offers.
    let (d, echo) = start_echo(
        &dir,
        "",
        "[Echo_Listener]\nTCP_Recv_Buffer_Size = 64k\nTCP_Send_Buffer_Size = 64k\n",
    );
    echo_once(echo, b"warm up");
    let base = d.rss_kib().expect("VmRSS");
    let s = connect(echo);
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let writer = std::thread::spawn(move || {
        let mut s = s;
        let chunk = vec![b'z'; 64 * 1024];
        let mut sent = 0usize;
        // Stops at the write timeout, once the server stopped reading and buffers are full.
        while sent < 64 * MIB {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        (s, sent)
    });
    let (s, sent) = writer.join().unwrap();
    // What the kernel can hold is the client's send buffer (tcp_wmem max, 4 MiB by default)
    // plus the small buffers above: a writer that never stalls within 64 MiB shows a server
    // reading without bound.
    assert!(
        sent < 64 * MIB,
        "the server read all {sent} bytes: no backpressure"
    );
    let rss = d.rss_kib().expect("VmRSS");
    assert!(
        rss < base + 32 * 1024,
        "RSS grew from {base} KiB to {rss} KiB"
    );
    // The loop still serves everyone else.
    echo_once(echo, b"another client");
    // The stalled session is still there once the other one has gone.
    poll_until("one echo session left", Duration::from_secs(10), || {
        (d.ctl_ok(&["count", "Echo", "127.0.0.1/32"]) == "1\n").then_some(())
    });
    drop(s);
}

// ---------------- console through nlctl

#[test]
fn console_commands_through_nlctl() {
    let dir = TestDir::new("console");
    let (d, echo) = start_echo(&dir, "", "[ThreadPool \"IO\"]\nConcurrency = 3\n");

    let help = d.ctl_ok(&["help"]);
    for cmd in [
        "version",
        "pid",
        "summary",
        "listeners",
        "show inbound",
        "count <type> <cidr>",
        "threads stats",
        "config eval",
        "config reload",
        "shutdown",
    ] {
        assert!(help.contains(cmd), "help lacks {cmd}: {help}");
    }
    assert_eq!(
        d.ctl_ok(&["version"]),
        format!("netlistenerd {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(d.ctl_ok(&["pid"]), format!("{}\n", d.pid()));

    let summary = d.ctl_ok(&["summary"]);
    assert!(
        summary.contains(&format!("pid {}", d.pid())) && summary.contains("config generation 1"),
        "{summary}"
    );

    let ls = d.ctl_ok(&["listeners"]);
    let ctl = parse_listeners(&ls, "Control_Listener");
    assert_eq!(ctl.len(), 1, "{ls}");
    assert_eq!(ctl[0].0, "control.sock");
    assert_eq!(ctl[0].1, dir.control_sock().display().to_string());
    assert_eq!(ctl[0].2, "listening");
    assert_eq!(
        parse_listeners(&ls, "Echo_Listener"),
        vec![(
            "127.0.0.1:0".to_string(),
            echo.to_string(),
            "listening".to_string()
        )]
    );

    // With one echo session open: show inbound lists it, count finds it by CIDR.
    let mut s = connect(echo);
    round_trip(&mut s, b"ping");
    let me = s.local_addr().unwrap().to_string();
    let inbound = d.ctl_ok(&["show", "inbound"]);
    assert!(
        inbound
            .lines()
            .any(|l| l.contains("Echo_Listener") && l.contains(&me)),
        "session {me} not in:\n{inbound}"
    );
    // nlctl's own console session is listed too.
    assert!(inbound.lines().any(|l| l.contains("Control_Listener")));
    assert_eq!(d.ctl_ok(&["count", "Echo", "127.0.0.0/8"]), "1\n");
    assert_eq!(d.ctl_ok(&["count", "Echo_Listener", "127.0.0.1/32"]), "1\n");
    assert_eq!(d.ctl_ok(&["count", "Echo", "10.0.0.0/8"]), "0\n");
    drop(s);
    poll_until("echo session gone", Duration::from_secs(10), || {
        (d.ctl_ok(&["count", "Echo", "127.0.0.0/8"]) == "0\n").then_some(())
    });

    let threads = d.ctl_ok(&["threads", "stats"]);
    let io = threads
        .lines()
        .find(|l| l.starts_with("IO "))
        .unwrap_or_else(|| panic!("no IO pool: {threads}"));
    assert_eq!(io.split_whitespace().nth(1), Some("3"), "{threads}");
    assert!(threads.lines().any(|l| l.starts_with("CPU ")), "{threads}");

    // config get / set / unset / show.
    assert_eq!(
        d.ctl_ok(&["config", "get", "Echo_Listener", "Idle_Time"]),
        "Idle_Time is not set in Echo_Listener\n"
    );
    assert_eq!(
        d.ctl_ok(&["config", "set", "Echo_Listener", "Idle_Time", "45s"]),
        "ok: generation 2\n"
    );
    assert_eq!(
        d.ctl_ok(&["config", "get", "Echo_Listener", "Idle_Time"]),
        "Idle_Time = 45\n"
    );
    let show = d.ctl_ok(&["config", "show"]);
    assert!(show.contains("[Echo_Listener]\nIdle_Time = 45"), "{show}");
    assert_eq!(
        d.ctl_ok(&["config", "unset", "Echo_Listener", "Idle_Time"]),
        "ok: generation 3\n"
    );
    assert!(!d.ctl_ok(&["config", "show"]).contains("Idle_Time"));
    // A bad value is refused with the reason, and the generation does not move.
    let bad = d.ctl(&["config", "set", "Echo_Listener", "Idle_Time", "banana"]);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(
        bad.stderr.contains("\"banana\" is not a duration"),
        "{bad:?}"
    );
    assert!(d.ctl_ok(&["summary"]).contains("config generation 3"));

    // Errors: exit 1, the reason on stderr.
    let r = d.ctl(&["bogus"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "unknown command or bad arguments: bogus (try help)\n"
    );
    let r = d.ctl(&["count", "Echo", "nonsense"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("is not a CIDR"), "{r:?}");

    // Commands from a pipe share one session; blank lines are skipped.
    let r = nlctl_piped(&d.sock, b"pid\nversion\n\nquit\n");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        format!(
            "{}\nnetlistenerd {}\nbye\n",
            d.pid(),
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn config_eval_names_the_supplying_scope() {
    let dir = TestDir::new("eval");
    let (d, _) = start_echo(
        &dir,
        "",
        "[Echo_Listener]\n\
         Idle_Time = 60s\n\
         [Echo_Listener Peer \"127.0.0.2/32\"]\n\
         Idle_Time = 10s\n",
    );
    let eval = |args: &str| {
        let mut v = vec!["config", "eval"];
        v.extend(args.split(' '));
        d.ctl_ok(&v)
    };
    assert_eq!(
        eval("Echo_Listener Idle_Time"),
        "Idle_Time = 60 (from Echo_Listener)\n"
    );
    assert_eq!(
        eval("Echo_Listener Peer 127.0.0.2 Idle_Time"),
        "Idle_Time = 10 (from Echo_Listener Peer \"127.0.0.2/32\")\n"
    );
    assert_eq!(
        eval("Echo_Listener Peer 127.0.0.3 Idle_Time"),
        "Idle_Time = 60 (from Echo_Listener)\n"
    );
    assert_eq!(
        eval("Control_Listener Idle_Time"),
        "Idle_Time = 0 (from default)\n"
    );
    assert_eq!(
        eval("Shutdown_Timeout"),
        "Shutdown_Timeout = 30 (from default)\n"
    );
    // A global value reaches a listener type that does not set its own.
    d.ctl_ok(&["config", "set", "global", "Idle_Time", "5m"]);
    assert_eq!(
        eval("Control_Listener Idle_Time"),
        "Idle_Time = 300 (from global)\n"
    );
    // The Listen-level value wins over the type's.
    d.ctl_ok(&[
        "config",
        "set",
        "Echo_Listener Listen \"127.0.0.1:0\"",
        "Idle_Time",
        "20s",
    ]);
    assert_eq!(
        d.ctl_ok(&[
            "config",
            "eval",
            "Echo_Listener Listen \"127.0.0.1:0\" Idle_Time"
        ]),
        "Idle_Time = 20 (from Echo_Listener Listen \"127.0.0.1:0\")\n"
    );
    let r = d.ctl(&["config", "eval", "Echo_Listener", "Frobnicate"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr, "Frobnicate: unknown option\n");
}

#[test]
fn enable_false_refuses_new_connections_but_keeps_sessions() {
    let dir = TestDir::new("enable");
    let (d, echo) = start_echo(&dir, "", "");
    let mut live = connect(echo);
    round_trip(&mut live, b"before");
    assert_eq!(
        d.ctl_ok(&[
            "config",
            "set",
            "Echo_Listener Listen \"127.0.0.1:0\"",
            "Enable",
            "false"
        ]),
        "ok: generation 2\n"
    );
    assert_eq!(
        d.listeners("Echo_Listener"),
        vec![(
            "127.0.0.1:0".to_string(),
            "-".to_string(),
            "disabled".to_string()
        )]
    );
    assert!(refused(echo), "a disabled Listen still accepts");
    round_trip(&mut live, b"after: the session goes on");
    // Enabling again opens a new socket (port 0: a new port) that serves.
    d.ctl_ok(&[
        "config",
        "unset",
        "Echo_Listener Listen \"127.0.0.1:0\"",
        "Enable",
    ]);
    let again = d.bound("Echo_Listener");
    assert_eq!(again.len(), 1);
    echo_once(again[0], b"re-enabled");
    round_trip(&mut live, b"still");
}

#[test]
fn console_refuses_an_overlong_line_and_goes_on() {
    let dir = TestDir::new("long-line");
    let (d, _) = start_echo(&dir, "", "");
    let mut input = format!("pid {}\n", "x".repeat(5000)).into_bytes();
    input.extend_from_slice(b"pid\n");
    let r = nlctl_piped(&d.sock, &input);
    assert_eq!(r.stderr, "command line longer than 4096 bytes\n", "{r:?}");
    assert_eq!(r.stdout, format!("{}\n", d.pid()), "{r:?}");
    assert_eq!(r.code, Some(0), "the last command's status: {r:?}");
    // Exit status in pipe mode is the last command's.
    let r = nlctl_piped(&d.sock, b"pid\nbogus\n");
    assert_eq!(r.code, Some(1), "{r:?}");
}

#[test]
fn config_reload_with_extra_words_is_a_usage_error() {
    let dir = TestDir::new("reload-usage");
    let (d, _) = start_echo(&dir, "", "");
    let r = d.ctl(&["config", "reload", "now"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.starts_with("usage: config reload"), "{r:?}");
    assert!(d.ctl_ok(&["summary"]).contains("config generation 1"));
}

// ---------------- console access: socket mode, TCP console, refusals

#[test]
fn control_socket_mode_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("mode");
    let (_d, _) = start_echo(&dir, "", "");
    let mode = std::fs::metadata(dir.control_sock())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let rd = std::fs::metadata(&dir.path).unwrap().permissions().mode();
    assert_eq!(rd & 0o777, 0o700, "runtime directory mode {rd:o}");
}

#[test]
fn control_socket_in_use_or_stale() {
    let dir = TestDir::new("stale");
    let (mut d, _) = start_echo(&dir, "", "");
    // A second daemon on the same, live, control socket cannot start: exit 2.
    let conf = dir.conf_dir();
    let o = netlistenerd(&["-c", conf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Control_Listener Listen \"control.sock\": failed: bind: "),
        "{o:?}"
    );
    assert_eq!(
        d.ctl_ok(&["pid"]),
        format!("{}\n", d.pid()),
        "the first one goes on"
    );
    // After a crash (SIGKILL) the socket file stays; the next daemon replaces it.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    assert!(dir.control_sock().exists());
    let d2 = Daemon::start(&dir);
    assert!(d2.log_text().contains("removing stale socket file"));
}

#[test]
fn tcp_console_serves_loopback_peers() {
    let dir = TestDir::new("tcp-console");
    let (d, tcp) = start_tcp_console(&dir, "127.0.0.1:0", "");
    let r = nlctl_at(&tcp_target(tcp), &["pid"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, format!("{}\n", d.pid()));
}

#[test]
fn console_denied_peer_gets_a_well_framed_refusal() {
    let dir = TestDir::new("console-deny");
    let (_d, tcp) = start_tcp_console(
        &dir,
        "127.0.0.1:0",
        // Unix-socket peers count as loopback: deny in the TCP Listen's own Peer scope only.
        "[Control_Listener Listen \"127.0.0.1:0\" Peer \"127.0.0.0/8\"]\nDeny = true\n",
    );
    let r = nlctl_at(&tcp_target(tcp), &["pid"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr, "permission denied\r\n", "{r:?}");
}

#[test]
fn console_over_its_session_cap_gets_a_well_framed_busy() {
    let dir = TestDir::new("console-busy");
    let (d, tcp) = start_tcp_console(
        &dir,
        "127.0.0.1:0",
        "[Control_Listener Listen \"127.0.0.1:0\"]\nListener_Sessions = 1\n",
    );
    // Hold the one session the TCP console allows (an idle console session stays open).
    let hold = connect(tcp);
    let me = hold.local_addr().unwrap().to_string();
    poll_until(
        "the held session is listed",
        Duration::from_secs(10),
        || d.ctl_ok(&["show", "inbound"]).contains(&me).then_some(()),
    );
    let r = nlctl_at(&tcp_target(tcp), &["pid"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr, "busy\r\n", "{r:?}");
    drop(hold);
}

#[test]
fn tcp_console_refuses_remote_peers_unless_allowed() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this host has no non-loopback IPv4 address");
        return;
    };
    let dir = TestDir::new("console-remote");
    let (d, tcp) = start_tcp_console(&dir, &format!("{ip}:0"), "");
    // The peer is this host's own non-loopback address: not loopback, so refused.
    let r = nlctl_at(&tcp_target(tcp), &["pid"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr, "permission denied\r\n", "{r:?}");
    // Allow_Remote in its Peer scope lets it in.
    d.ctl_ok(&[
        "config",
        "set",
        &format!("Control_Listener Peer \"{ip}/32\""),
        "Allow_Remote",
        "true",
    ]);
    let r = nlctl_at(&tcp_target(tcp), &["pid"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, format!("{}\n", d.pid()));
}

// ---------------- nlctl on its own

#[test]
fn nlctl_against_a_stopped_daemon_fails_clearly() {
    let dir = TestDir::new("stopped");
    let (mut d, _) = start_echo(&dir, "", "");
    d.ctl_ok(&["shutdown"]);
    d.wait_exit(Duration::from_secs(10)).expect("daemon exits");
    let r = d.ctl(&["pid"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.starts_with(&format!(
            "nlctl: cannot reach netlistenerd at {}: ",
            d.sock.display()
        )) && r.stderr.contains("is the daemon running?"),
        "{r:?}"
    );
    assert!(r.stdout.is_empty());
    // A TCP console address where nothing listens: the same.
    let r = nlctl_at(
        std::path::Path::new(&format!("127.0.0.1:{}", free_port())),
        &["pid"],
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("cannot reach netlistenerd"), "{r:?}");
}

#[test]
fn nlctl_rejects_malformed_replies() {
    for (reply, want) in [
        (&b"HELLO\n"[..], "nlctl: malformed reply header: "),
        (b"OK many\nx", "nlctl: malformed reply length: "),
        (b"MAYBE 2\nhi", "nlctl: malformed reply tag: \"MAYBE\"\n"),
        (b"OK 10\nshort", "nlctl: read: "),
        (b"", "nlctl: the daemon closed the connection\n"),
    ] {
        let dir = TestDir::new("fake");
        let sock = fake_console(&dir, reply);
        let r = nlctl_at(&sock, &["pid"]);
        assert_eq!(r.code, Some(2), "{reply:?}: {r:?}");
        assert!(r.stderr.starts_with(want), "{reply:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{reply:?}: {r:?}");
    }
}

// ---------------- reload

const BROKEN: &str = "[Echo_Listener]\nIdle_Time = banana\n";

#[test]
fn console_reload_with_broken_file_is_refused_and_serving_goes_on() {
    let dir = TestDir::new("reload-broken");
    let (d, echo) = start_echo(&dir, "", "");
    let mut live = connect(echo);
    let bad = dir.write_conf("50-broken.conf", BROKEN);
    let r = d.ctl(&["config", "reload"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .starts_with("reload refused; generation 1 keeps serving:\n"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains(&format!(
            "{}:2: [Echo_Listener] Idle_Time: \"banana\" is not a duration",
            bad.display()
        )),
        "{r:?}"
    );
    assert!(d.ctl_ok(&["summary"]).contains("config generation 1"));
    round_trip(&mut live, b"live session");
    echo_once(echo, b"new session");
}

#[test]
fn sighup_with_broken_file_is_refused_and_serving_goes_on() {
    let dir = TestDir::new("hup-broken");
    let (d, echo) = start_echo(&dir, "", "");
    let bad = dir.write_conf("50-broken.conf", BROKEN);
    d.signal("HUP");
    let needle = format!(
        "reload refused: {}:2: [Echo_Listener] Idle_Time",
        bad.display()
    );
    poll_until("reload refused in the log", Duration::from_secs(10), || {
        d.log_text().contains(&needle).then_some(())
    });
    assert!(d.ctl_ok(&["summary"]).contains("config generation 1"));
    echo_once(echo, b"still serving");
}

#[test]
fn console_reload_with_new_listen_serves_it() {
    let dir = TestDir::new("reload-new");
    let (d, echo) = start_echo(&dir, "", "");
    let port = free_port();
    dir.write_conf(
        "50-new.conf",
        &format!("[Echo_Listener Listen \"127.0.0.1:{port}\"]\n"),
    );
    assert_eq!(
        d.ctl_ok(&["config", "reload"]),
        "configuration reloaded: generation 2\n"
    );
    let new: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(d.bound("Echo_Listener"), vec![echo, new]);
    echo_once(new, b"new listen");
    echo_once(echo, b"old listen, same port");
}

#[test]
fn sighup_with_new_listen_serves_it() {
    let dir = TestDir::new("hup-new");
    let (d, echo) = start_echo(&dir, "", "");
    let port = free_port();
    dir.write_conf(
        "50-new.conf",
        &format!("[Echo_Listener Listen \"127.0.0.1:{port}\"]\n"),
    );
    d.signal("HUP");
    let new: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    poll_until(
        "the new Listen after SIGHUP",
        Duration::from_secs(10),
        || d.bound("Echo_Listener").contains(&new).then_some(()),
    );
    assert!(d.ctl_ok(&["summary"]).contains("config generation 2"));
    echo_once(new, b"new listen");
    echo_once(echo, b"old listen");
}

#[test]
fn reload_that_removes_a_listen_closes_it_and_keeps_its_sessions() {
    let dir = TestDir::new("reload-remove");
    let (d, echo) = start_echo(&dir, "", "");
    let port = free_port();
    let extra = dir.write_conf(
        "50-extra.conf",
        &format!("[Echo_Listener Listen \"127.0.0.1:{port}\"]\n"),
    );
    d.ctl_ok(&["config", "reload"]);
    let gone: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut live = connect(gone);
    round_trip(&mut live, b"on the extra Listen");
    std::fs::remove_file(extra).unwrap();
    d.ctl_ok(&["config", "reload"]);
    assert_eq!(d.bound("Echo_Listener"), vec![echo]);
    assert!(refused(gone), "a removed Listen still accepts");
    round_trip(&mut live, b"the session outlives its Listen");
    echo_once(echo, b"the kept Listen");
}

#[test]
fn listen_failing_on_reload_shows_syscall_and_errno() {
    let dir = TestDir::new("reload-fail");
    let (d, echo) = start_echo(&dir, "", "");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    dir.write_conf(
        "50-taken.conf",
        &format!("[Echo_Listener Listen \"{addr}\"]\n"),
    );
    // The configuration itself is valid: the reload succeeds, the one Listen fails, and the
    // reply says so next to its OK.
    let reply = d.ctl_ok(&["config", "reload"]);
    assert!(
        reply.contains(&format!(
            "warning: Echo_Listener Listen \"{addr}\": failed: bind: "
        )),
        "{reply}"
    );
    let rows = d.listeners("Echo_Listener");
    let row = rows
        .iter()
        .find(|r| r.0 == addr.to_string())
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row.1, "-");
    assert!(
        row.2.starts_with("failed: bind: ")
            && row.2.ends_with(&format!("(errno {})", libc::EADDRINUSE)),
        "{row:?}"
    );
    echo_once(echo, b"the other Listen serves");
    // Once the port is free, a reload opens it.
    drop(taken);
    d.ctl_ok(&["config", "reload"]);
    assert!(d.bound("Echo_Listener").contains(&addr));
    echo_once(addr, b"now open");
}

// ---------------- shutdown

#[test]
fn sigterm_drains_an_open_session_then_exits_0() {
    sigterm_drains(0);
}

#[test]
fn sigterm_drains_with_accept_threads() {
    sigterm_drains(2);
}

/// SIGTERM with one echo session open, the Listen accepting with `concurrency` threads.
fn sigterm_drains(concurrency: u32) {
    let dir = TestDir::new(&format!("term{concurrency}"));
    let (mut d, echo) = start_echo(
        &dir,
        "Shutdown_Timeout = 30s\n",
        &format!("[Echo_Listener]\nConcurrency = {concurrency}\n"),
    );
    let ls = d.ctl_ok(&["listeners"]);
    let row = ls.lines().find(|l| l.starts_with("Echo_Listener")).unwrap();
    assert_eq!(
        row.split_whitespace().nth(3),
        Some(&*concurrency.to_string())
    );
    let mut live = connect(echo);
    round_trip(&mut live, b"before");
    d.signal("TERM");
    poll_until(
        "listener closed after SIGTERM",
        Duration::from_secs(10),
        || refused(echo).then_some(()),
    );
    // The session is drained, not cut: it still works, and the daemon waits for it.
    round_trip(&mut live, b"during the drain");
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "exited with a session open"
    );
    drop(live);
    let st = d
        .wait_exit(Duration::from_secs(10))
        .expect("daemon exits once the session ends");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert!(!dir.control_sock().exists(), "control socket left behind");
}

#[test]
fn sigint_stops_like_sigterm() {
    let dir = TestDir::new("int");
    let (mut d, _) = start_echo(&dir, "", "");
    d.signal("INT");
    let st = d.wait_exit(Duration::from_secs(10)).expect("daemon exits");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
}

#[test]
fn nlctl_shutdown_exits_0() {
    let dir = TestDir::new("shutdown");
    let (mut d, _) = start_echo(&dir, "", "");
    assert_eq!(d.ctl_ok(&["shutdown"]), "shutting down\n");
    let st = d.wait_exit(Duration::from_secs(10)).expect("daemon exits");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
}

#[test]
fn console_session_that_asks_for_shutdown_does_not_hold_the_drain() {
    let dir = TestDir::new("shutdown-session");
    let (mut d, _) = start_echo(&dir, "Shutdown_Timeout = 60s\n", "");
    // An interactive console: the connection stays open after the command.
    let mut c = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"shutdown\n").unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply)
        .expect("the daemon closes the session");
    assert_eq!(reply, b"OK 14\nshutting down\n");
    // Far less than the 60 s Shutdown_Timeout: nothing is left to drain.
    let st = d
        .wait_exit(Duration::from_secs(20))
        .expect("daemon exits without waiting for Shutdown_Timeout");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert!(!d.log_text().contains("shutdown deadline reached"));
}

#[test]
fn shutdown_timeout_closes_a_session_that_never_ends() {
    let dir = TestDir::new("drain-deadline");
    let (mut d, echo) = start_echo(&dir, "Shutdown_Timeout = 1s\n", "");
    let mut live = connect(echo);
    round_trip(&mut live, b"x");
    let t0 = Instant::now();
    d.ctl_ok(&["shutdown"]);
    let st = d
        .wait_exit(Duration::from_secs(1) + Duration::from_secs(10))
        .expect("daemon exits within Shutdown_Timeout + margin");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    // Lower bound only: it waited for the session before closing it.
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        d.log_text()
            .contains("shutdown deadline reached: closed 1 session(s)"),
        "{}",
        d.log_text()
    );
    let mut b = [0u8; 8];
    match live.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("session not closed: {other:?}"),
    }
}
