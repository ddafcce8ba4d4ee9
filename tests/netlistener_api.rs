//! Black-box tests of the netlistener layer over real loopback and Unix sockets.

mod util;

use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

use netlistener::event::{Closure, Event};
use netlistener::netlistener::*;
use util::*;

#[test]
fn two_types_on_several_listens_with_option_fallback() {
    let conf = r#"
Greeting = global
[Alpha_Listener]
Greeting = alpha-type
[Alpha_Listener Listen "127.0.0.1:0"]
[Alpha_Listener Listen "127.0.0.2:0"]
Greeting = alpha-listen2
[Beta_Listener]
[Beta_Listener Listen "127.0.0.1:0"]
"#;
    let srv = Server::start(&["Alpha", "Beta"], Conf::Text(conf.into()));
    let a = srv.addrs("Alpha_Listener");
    let b = srv.addrs("Beta_Listener");
    assert_eq!((a.len(), b.len()), (2, 1));
    assert!(
        a.iter().chain(&b).all(|s| s.port() != 0),
        "port 0 resolved to the bound port"
    );
    let mut c = Client::connect(a[0]);
    assert_eq!(c.line(), "Alpha alpha-type");
    assert_eq!(c.echo("ping"), "ping");
    let mut c = Client::connect(a[1]);
    assert_eq!(c.line(), "Alpha alpha-listen2");
    let mut c = Client::connect(b[0]);
    assert_eq!(c.line(), "Beta hi", "Greeting is global for Alpha only");
    assert_eq!(c.echo("pong"), "pong");
}

fn quick_connections(concurrency: u32) {
    let conf = format!("[Alpha_Listener]\n[Alpha_Listener Listen \"127.0.0.1:0\"]\nConcurrency = {concurrency}\nEvents_Per_Iter = 8\nAccept_Queue_Backlog = 64\n");
    let srv = Server::start(&["Alpha"], Conf::Text(conf));
    let addr = srv.addrs("Alpha_Listener")[0];
    const N: usize = 2000;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for i in 0..N / 4 {
                    let mut c = Client::connect(addr);
                    assert_eq!(c.line(), "Alpha hi");
                    assert_eq!(c.echo(&format!("m{i}")), format!("m{i}"));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("every connection answered");
    }
    let r = &srv.report()[0];
    assert_eq!(r.concurrency, concurrency as usize);
    assert_eq!(r.stats.accepted, N as u64, "{r:?}");
    assert_eq!(r.stats.refused, 0);
    wait_until("sessions end", || srv.on_sched(active_sessions) == 0);
}

#[test]
fn concurrency_zero_loses_no_connection() {
    quick_connections(0);
}

#[test]
fn concurrency_four_loses_no_connection() {
    quick_connections(4);
}

#[test]
fn deny_at_listener_peer_overridden_by_listen_peer() {
    let conf = r#"
[Alpha_Listener]
[Alpha_Listener Peer "127.0.0.0/8"]
Deny = true
[Alpha_Listener Listen "127.0.0.1:0"]
[Alpha_Listener Listen "127.0.0.1:0" Peer "127.0.0.2/32"]
Deny = false
"#;
    let srv = Server::start(&["Alpha"], Conf::Text(conf.into()));
    let addr = srv.addrs("Alpha_Listener")[0];
    let mut denied = Client::connect_from("127.0.0.1", addr);
    assert_eq!(denied.line(), "Alpha DENIED");
    assert!(denied.closed());
    let mut ok = Client::connect_from("127.0.0.2", addr);
    assert_eq!(ok.line(), "Alpha hi");
    assert_eq!(ok.echo("x"), "x");
    let r = &srv.report()[0];
    assert_eq!((r.stats.refused_deny, r.stats.accepted), (1, 1));
}

#[test]
fn listener_sessions_in_a_peer_caps_that_block_only() {
    let conf = r#"
[Alpha_Listener]
[Alpha_Listener Listen "127.0.0.1:0"]
[Alpha_Listener Peer "127.0.0.4/32"]
Listener_Sessions = 1
"#;
    let srv = Server::start(&["Alpha"], Conf::Text(conf.into()));
    let addr = srv.addrs("Alpha_Listener")[0];
    let mut first = Client::connect_from("127.0.0.4", addr);
    assert_eq!(first.line(), "Alpha hi");
    let mut second = Client::connect_from("127.0.0.4", addr);
    assert_eq!(second.line(), "Alpha BUSY");
    assert!(second.closed());
    // Another block is not capped.
    let mut others: Vec<Client> = (0..3)
        .map(|_| Client::connect_from("127.0.0.5", addr))
        .collect();
    for o in others.iter_mut() {
        assert_eq!(o.line(), "Alpha hi");
    }
    // The slot is released when the session ends.
    drop(first);
    wait_until("slot released", || srv.on_sched(active_sessions) == 3);
    let mut third = Client::connect_from("127.0.0.4", addr);
    assert_eq!(third.line(), "Alpha hi");
    assert_eq!(srv.report()[0].stats.refused_listener_cap, 1);
}

#[test]
fn service_sessions_cap_the_whole_type() {
    let conf = "[Alpha_Listener]\nService_Sessions = 2\n[Alpha_Listener Listen \"127.0.0.1:0\"]\n[Alpha_Listener Listen \"127.0.0.2:0\"]\n";
    let srv = Server::start(&["Alpha"], Conf::Text(conf.into()));
    let a = srv.addrs("Alpha_Listener");
    let mut c1 = Client::connect(a[0]);
    let mut c2 = Client::connect(a[1]);
    assert_eq!(
        (c1.line(), c2.line()),
        ("Alpha hi".into(), "Alpha hi".into())
    );
    let mut c3 = Client::connect(a[1]);
    assert_eq!(c3.line(), "Alpha BUSY");
}

#[test]
fn ipv6_loopback_when_available() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this host: skipped");
        return;
    }
    let conf = "[Alpha_Listener]\n[Alpha_Listener Listen \"[::1]:0\"]\n[Alpha_Listener Listen \"[::1]:0\" Peer \"::1\"]\nGreeting = six\n";
    let srv = Server::start(&["Alpha"], Conf::Text(conf.into()));
    let addr = srv.addrs("Alpha_Listener")[0];
    assert!(addr.is_ipv6());
    let mut c = Client::connect(addr);
    assert_eq!(c.line(), "Alpha six");
    assert_eq!(c.echo("v6"), "v6");
}

#[test]
fn unix_socket_with_its_mode() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::UnixStream;
    let dir = tempdir("unix");
    let path = dir.join("alpha.sock");
    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let conf = format!("[Alpha_Listener]\n[Alpha_Listener Listen \"{}\"]\nFile_Mode = 0640\n[Alpha_Listener Peer \"127.0.0.1\"]\nGreeting = loopback\n", path.display());
    let srv = Server::start(&["Alpha"], Conf::Text(conf));
    let md = std::fs::metadata(&path).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o640);
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    assert_eq!(
        l.trim_end(),
        "Alpha loopback",
        "Unix peers count as loopback"
    );
    r.get_mut().write_all(b"u\r\n").unwrap();
    l.clear();
    r.read_line(&mut l).unwrap();
    assert_eq!(l.trim_end(), "u");
    drop(srv);
    assert!(!path.exists(), "socket file removed on close");
}

#[test]
fn a_live_unix_socket_is_not_stolen() {
    let dir = tempdir("busy");
    let path = dir.join("busy.sock");
    let _owner = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let conf = format!(
        "Fatal_Listen_Errors = false\n[Alpha_Listener]\n[Alpha_Listener Listen \"{}\"]\n",
        path.display()
    );
    let srv = Server::start(&["Alpha"], Conf::Text(conf));
    let r = &srv.report()[0];
    assert!(
        r.state.starts_with("failed: bind:") && r.state.contains("errno 98"),
        "{}",
        r.state
    );
}

#[test]
fn fatal_listen_error_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _s = netlistener::scheduler::Scheduler::new().unwrap();
        register_test_types(&["Alpha"]);
        netlistener_load_config_str(
            "t.conf",
            &format!("[Alpha_Listener]\n[Alpha_Listener Listen \"127.0.0.1:{port}\"]\n"),
        )
        .unwrap();
        tx.send(netlistener_start().map_err(|e| e.to_string()))
            .unwrap();
    });
    let err = rx.recv_timeout(DEADLINE).unwrap().unwrap_err();
    assert!(
        err.contains(&format!(
            "Alpha_Listener Listen \"127.0.0.1:{port}\": failed: bind:"
        )),
        "{err}"
    );
}

#[test]
fn reload_adds_and_removes_listens_keeping_sessions() {
    let dir = tempdir("reload");
    let file = dir.join("nl.conf");
    std::fs::write(&file, "[Alpha_Listener]\n[Alpha_Listener Listen \"127.0.0.1:0\"]\n[Alpha_Listener Listen \"127.0.0.2:0\"]\n").unwrap();
    let srv = Server::start(&["Alpha"], Conf::Path(file.clone()));
    let before = srv.report();
    let (a, b) = (
        before[0].bound.parse().unwrap(),
        before[1].bound.parse().unwrap(),
    );
    let fd_a = before[0].fd;
    let mut on_b = Client::connect(b);
    assert_eq!(on_b.line(), "Alpha hi");
    // Remove B, keep A, add C; reload.
    std::fs::write(&file, "[Alpha_Listener]\nGreeting = v2\n[Alpha_Listener Listen \"127.0.0.1:0\"]\n[Alpha_Listener Listen \"127.0.0.3:0\"]\n").unwrap();
    let r = srv.on_sched(|| {
        netlistener_reload()
            .map(|g| g.number())
            .map_err(|e| e.to_string())
    });
    assert!(r.is_ok(), "{r:?}");
    let after = srv.report();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].fd, fd_a, "unchanged Listen keeps its fd");
    assert_eq!(after[0].bound.parse::<std::net::SocketAddr>().unwrap(), a);
    assert!(after[1].bound.starts_with("127.0.0.3:"));
    assert!(
        std::net::TcpStream::connect_timeout(&b, Duration::from_secs(2)).is_err(),
        "removed Listen refuses"
    );
    // The session on the removed Listen keeps working, with its old generation.
    assert_eq!(on_b.echo("still"), "still");
    let mut on_c = Client::connect(after[1].bound.parse().unwrap());
    assert_eq!(on_c.line(), "Alpha v2");
    // A broken file is refused and the running generation stays.
    std::fs::write(&file, "[Alpha_Listener]\nNo_Such_Option = 1\n").unwrap();
    let r = srv.on_sched(|| {
        netlistener_reload()
            .map(|g| g.number())
            .map_err(|e| e.to_string())
    });
    let err = r.unwrap_err();
    assert!(
        err.contains("nl.conf:2:") && err.contains("No_Such_Option"),
        "{err}"
    );
    assert_eq!(srv.report().len(), 2);
}

#[test]
fn wildcard_to_specific_on_the_same_port_in_one_reload() {
    let dir = tempdir("wild");
    let file = dir.join("nl.conf");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    std::fs::write(
        &file,
        format!("[Alpha_Listener]\n[Alpha_Listener Listen \"*:{port}\"]\n"),
    )
    .unwrap();
    let srv = Server::start(&["Alpha"], Conf::Path(file.clone()));
    assert_eq!(srv.report()[0].bound, format!("0.0.0.0:{port}"));
    std::fs::write(
        &file,
        format!("[Alpha_Listener]\n[Alpha_Listener Listen \"127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    srv.on_sched(|| netlistener_reload().map(|_| ()).map_err(|e| e.to_string()))
        .unwrap();
    let r = srv.report();
    assert_eq!(
        (r[0].state.as_str(), r[0].bound.clone()),
        ("listening", format!("127.0.0.1:{port}"))
    );
    std::fs::write(
        &file,
        format!("[Alpha_Listener]\n[Alpha_Listener Listen \"*:{port}\"]\n"),
    )
    .unwrap();
    srv.on_sched(|| netlistener_reload().map(|_| ()).map_err(|e| e.to_string()))
        .unwrap();
    assert_eq!(srv.report()[0].state, "listening");
    let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(c.line(), "Alpha hi");
}

#[test]
fn idle_timeout_reaps_the_silent_client_only() {
    let conf = "[Alpha_Listener]\nIdle_Time = 300ms\n[Alpha_Listener Listen \"127.0.0.1:0\"]\n";
    let srv = Server::start(&["Alpha"], Conf::Text(conf.into()));
    let addr = srv.addrs("Alpha_Listener")[0];
    let mut silent = Client::connect(addr);
    let mut active = Client::connect(addr);
    assert_eq!(silent.line(), "Alpha hi");
    assert_eq!(active.line(), "Alpha hi");
    let t0 = Instant::now();
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(active.echo(&format!("{i}")), format!("{i}"));
    }
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert!(silent.closed(), "the silent client was reaped");
    assert_eq!(active.echo("alive"), "alive");
    assert!(srv.report()[0].stats.timeouts >= 1);
}

fn nop(_e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    0
}

#[test]
fn registration_off_the_scheduler_thread_is_refused() {
    let r = std::thread::spawn(|| {
        netlistener_register3("Off", nop, None, "test")
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap();
    assert_eq!(
        r.unwrap_err(),
        "netlistener_register: only on the scheduler thread"
    );
}

#[test]
fn duplicate_registration_and_late_registration_are_refused() {
    std::thread::spawn(|| {
        let _s = netlistener::scheduler::Scheduler::new().unwrap();
        netlistener_register3("Dup", nop, None, "test").unwrap();
        let e = netlistener_register3("dup", nop, None, "test").unwrap_err();
        assert!(e.to_string().contains("already registered"), "{e}");
        netlistener_load_config_str("t.conf", "").unwrap();
        let e = netlistener_register3("Late", nop, None, "test").unwrap_err();
        assert!(e.to_string().contains("already loaded"), "{e}");
    })
    .join()
    .unwrap();
}

/// EMFILE: the child (this test binary, re-run with one ignored test) runs a listener under a
/// low RLIMIT_NOFILE; the parent holds enough connections to exhaust it, checks the child's CPU
/// time during the episode stays small, then frees fds and checks accepting resumes.
#[test]
fn emfile_backs_off_without_spinning_and_resumes() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "emfile_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NL_EMFILE_CHILD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    let port: u16 = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        // The harness prints "test emfile_child ... " on the same line.
        if let Some(i) = line.find("PORT ") {
            break line[i + 5..].trim().parse().unwrap();
        }
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The child's limit is 40 fds: 60 connections cannot all be accepted.
    let mut conns: Vec<std::net::TcpStream> = (0..60)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut ask = |cmd: &str| -> String {
        stdin.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        l.trim().to_string()
    };
    std::thread::sleep(Duration::from_millis(300));
    let cpu0: u64 = ask("cpu").parse().unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let cpu1: u64 = ask("cpu").parse().unwrap();
    let wall = t0.elapsed().as_micros() as u64;
    let failed: u64 = ask("failed").parse().unwrap();
    assert!(failed >= 1, "EMFILE was provoked");
    assert!(
        cpu1 - cpu0 < wall / 4,
        "child used {} us CPU in {} us of EMFILE episode: spinning",
        cpu1 - cpu0,
        wall
    );
    // Free descriptors: close the first 40 connections; the rest must be accepted and served.
    let rest = conns.split_off(40);
    drop(conns);
    for mut c in rest {
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut b = [0u8; 64];
        let n = c.read(&mut b).expect("greeting after fds were freed");
        assert!(std::str::from_utf8(&b[..n])
            .unwrap()
            .starts_with("Alpha hi"));
    }
    drop(stdin);
    let _ = child.wait();
}

#[test]
#[ignore = "child half of emfile_backs_off_without_spinning_and_resumes"]
fn emfile_child() {
    if std::env::var_os("NL_EMFILE_CHILD").is_none() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let s = netlistener::scheduler::Scheduler::new().unwrap();
        register_test_types(&["Alpha"]);
        netlistener_load_config_str("t.conf", "[Alpha_Listener]\nListen_Backlog = 128\n[Alpha_Listener Listen \"127.0.0.1:0\"]\nEvents_Per_Iter = 16\n").unwrap();
        netlistener_start().unwrap();
        tx.send(s.handle()).unwrap();
        s.run();
    });
    let h = rx.recv().unwrap();
    let (ptx, prx) = std::sync::mpsc::channel();
    h.run_on_scheduler(move || ptx.send(listeners_report()[0].bound.clone()).unwrap());
    let bound: std::net::SocketAddr = prx.recv().unwrap().parse().unwrap();
    let (soft, hard) = netlistener::sys::nofile_limit().unwrap();
    let _ = soft;
    netlistener::sys::set_nofile_limit(40, hard).unwrap();
    println!("PORT {}", bound.port());
    for cmd in std::io::stdin().lines() {
        let cmd = cmd.unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        match cmd.as_str() {
            "cpu" => tx.send(netlistener::sys::cpu_time_us()).unwrap(),
            "failed" => h.run_on_scheduler(move || {
                tx.send(listeners_report()[0].stats.failed_accepts).unwrap()
            }),
            _ => continue,
        }
        println!("{}", rx.recv().unwrap());
    }
    h.stop();
    let _ = t.join();
}
