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

/// Starts an `Alpha_Listener` on the Unix socket `path`, whose opening is expected to fail
/// (`Fatal_Listen_Errors = false`), and returns the server with that Listen's state.
fn unix_listen_state(path: &std::path::Path) -> (Server, String) {
    let conf = format!(
        "Fatal_Listen_Errors = false\n[Alpha_Listener]\n[Alpha_Listener Listen \"{}\"]\n",
        path.display()
    );
    let srv = Server::start(&["Alpha"], Conf::Text(conf));
    let state = srv.report()[0].state.clone();
    (srv, state)
}

#[test]
fn a_live_unix_socket_is_not_stolen() {
    let dir = tempdir("busy");
    let path = dir.join("busy.sock");
    let _owner = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (_srv, state) = unix_listen_state(&path);
    assert!(
        state.starts_with("failed: bind:") && state.contains("errno 98"),
        "{}",
        state
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
fn a_port_its_accept_threads_still_hold_is_free_in_the_same_reload() {
    // Closing a Listen does not wait for its accept threads: shutdown(2) ends listening at
    // once, so the same reload binds the port again while they are still letting go of it.
    let dir = tempdir("rebind-threads");
    let file = dir.join("nl.conf");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let conf = |addr: &str| {
        format!("[Alpha_Listener]\n[Alpha_Listener Listen \"{addr}:{port}\"]\nConcurrency = 4\n")
    };
    write_conf(&file, &conf("*"));
    let srv = Server::start(&["Alpha"], Conf::Path(file.clone()));
    for round in 0..20 {
        let addr = ["127.0.0.1", "*"][round % 2];
        write_conf(&file, &conf(addr));
        reload(&srv);
        let r = srv.report();
        assert_eq!(r[0].state, "listening", "round {round} ({addr}): {r:?}");
        let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
        assert_eq!(c.line(), "Alpha hi");
    }
}

/// Linux: how many accept threads of `kind` there are, and how often they went to sleep so
/// far (their voluntary context switches, from /proc).
#[cfg(target_os = "linux")]
fn accept_thread_sleeps(kind: &str) -> (u64, u64) {
    let prefix = format!("accept-{kind}-");
    let (mut threads, mut n) = (0, 0);
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(&prefix) {
            continue;
        }
        threads += 1;
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        n += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap());
    }
    (threads, n)
}

#[cfg(target_os = "linux")]
#[test]
fn a_lone_connection_wakes_one_accept_thread_not_all() {
    const THREADS: u64 = 8;
    const N: u64 = 200;
    let conf = format!(
        "[Herd_Listener]\n[Herd_Listener Listen \"127.0.0.1:0\"]\nConcurrency = {THREADS}\n"
    );
    let srv = Server::start(&["Herd"], Conf::Text(conf));
    let addr = srv.addrs("Herd_Listener")[0];
    assert_eq!(Client::connect(addr).line(), "Herd hi");
    let (threads, before) = accept_thread_sleeps("Herd");
    // Else the count below is of no thread at all (renamed threads, say) and proves nothing.
    assert_eq!(threads, THREADS, "accept threads found by name");
    // One at a time: every thread is idle when the next connection arrives.
    for _ in 0..N {
        assert_eq!(Client::connect(addr).line(), "Herd hi");
    }
    let slept = accept_thread_sleeps("Herd").1 - before;
    assert!(slept > 0, "the accept threads never slept: not measured");
    // If every idle thread polled the socket, each connection would wake all of them, and
    // each would sleep again: >= THREADS sleeps a connection. With one thread in poll, the
    // woken one and the one taking its turn sleep again: about 2.
    assert!(
        slept < N * THREADS / 2,
        "{slept} sleeps of {THREADS} accept threads for {N} connections"
    );
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

// ---------------------------------------------------------------------------------------------
// Listener types of the tests below (each test uses its own type names: several servers run
// in parallel in this process, and the statics are shared)
// ---------------------------------------------------------------------------------------------

use std::sync::{Condvar, Mutex};

use netlistener::config::Scopes;
use netlistener::event::{Io, E_READ, E_TIMEOUT};

/// An acceptor that refuses peers from 127.0.0.3 and 127.0.0.4.
fn picky_acceptor(_e: &mut Event, _et: i32, closure: &mut Closure, _now: Instant) -> i32 {
    let ac = closure.downcast_mut::<AcceptConstruct>().unwrap();
    let ip = ac.remote_addr.map(|a| a.ip().to_string());
    match ip.as_deref() {
        Some("127.0.0.3") | Some("127.0.0.4") => 0,
        _ => 1,
    }
}

/// Reads until EOF or the deadline; true when the server closed without sending anything.
fn closed_silently(c: &mut Client) -> bool {
    let mut b = [0u8; 64];
    matches!(c.r.read(&mut b), Ok(0))
}

#[test]
fn an_acceptor_that_refuses_is_not_counted_as_a_session() {
    let conf = "[Picky_Listener]\n[Picky_Listener Listen \"127.0.0.1:0\"]\n";
    let srv = Server::start_with(
        || {
            register_test_type_with("Picky", Some(picky_acceptor), (0, 0), Scopes::LISTENER_ALL);
        },
        Conf::Text(conf.into()),
    );
    let addr = srv.addrs("Picky_Listener")[0];
    let mut kept = Vec::new();
    for i in 0..9 {
        if i % 2 == 0 {
            let mut c = Client::connect_from("127.0.0.1", addr);
            assert_eq!(c.line(), "Picky hi");
            kept.push(c);
        } else {
            let mut c = Client::connect_from("127.0.0.3", addr);
            assert!(closed_silently(&mut c), "the acceptor refused it");
        }
    }
    wait_until("refusals counted", || {
        srv.report()[0].stats.refused_acceptor == 4
    });
    let s = srv.report()[0].stats;
    assert_eq!(
        (s.accepted, s.refused, s.refused_acceptor, s.active, s.peak),
        (5, 4, 4, 5, 5),
        "accepted + refused = the 9 connections; refused ones never active: {s:?}"
    );
    let t = srv.on_sched(types_report);
    let t = t.iter().find(|(k, _)| k == "Picky_Listener").unwrap().1;
    assert_eq!(
        (t.accepted, t.refused, t.peak),
        (5, 4, 5),
        "type counters: {t:?}"
    );
    assert_eq!(
        srv.on_sched(sessions_report).len(),
        5,
        "refused ones are not listed"
    );
}

#[test]
fn refused_counters_by_reason_and_peak() {
    let conf = r#"
[Picky_Listener]
Service_Sessions = 4
[Picky_Listener Listen "127.0.0.1:0"]
Listener_Sessions = 3
[Picky_Listener Listen "127.0.0.2:0"]
[Picky_Listener Peer "127.0.0.5/32"]
Deny = true
"#;
    let srv = Server::start_with(
        || {
            register_test_type_with("Picky", Some(picky_acceptor), (0, 0), Scopes::LISTENER_ALL);
        },
        Conf::Text(conf.into()),
    );
    let a = srv.addrs("Picky_Listener");
    let (l1, l2) = (a[0], a[1]);
    // Refusals that hold no slot, first: the acceptor's (127.0.0.4) and Deny's (127.0.0.5).
    assert!(closed_silently(&mut Client::connect_from("127.0.0.4", l1)));
    assert_eq!(Client::connect_from("127.0.0.5", l1).line(), "Picky DENIED");
    let mut held: Vec<Client> = (0..3)
        .map(|_| Client::connect_from("127.0.0.1", l1))
        .collect();
    for c in held.iter_mut() {
        assert_eq!(c.line(), "Picky hi");
    }
    assert_eq!(Client::connect_from("127.0.0.1", l1).line(), "Picky BUSY");
    let mut on_l2 = Client::connect(l2);
    assert_eq!(on_l2.line(), "Picky hi");
    assert_eq!(
        Client::connect(l2).line(),
        "Picky BUSY",
        "type-wide cap of 4"
    );
    let r = srv.report();
    let (s1, s2) = (r[0].stats, r[1].stats);
    assert_eq!(
        (
            s1.accepted,
            s1.refused_acceptor,
            s1.refused_deny,
            s1.refused_listener_cap
        ),
        (3, 1, 1, 1),
        "{s1:?}"
    );
    assert_eq!((s1.refused, s1.active, s1.peak), (3, 3, 3), "{s1:?}");
    assert_eq!(
        (s2.accepted, s2.refused_service_cap, s2.refused, s2.peak),
        (1, 1, 1, 1),
        "{s2:?}"
    );
    drop(held);
    drop(on_l2);
    wait_until("sessions end", || srv.on_sched(active_sessions) == 0);
    let t = srv.on_sched(types_report)[0].1;
    assert_eq!(
        (t.accepted, t.refused, t.active, t.peak),
        (4, 4, 0, 4),
        "the peak outlives the sessions: {t:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unix socket files
// ---------------------------------------------------------------------------------------------

#[test]
fn a_live_unix_socket_with_a_full_backlog_is_neither_waited_for_nor_stolen() {
    use std::os::unix::net::UnixStream;
    let dir = tempdir("full");
    let path = dir.join("full.sock");
    // The owner never accepts; its backlog of 1 fills up.
    let owner = netlistener::sys::unix_listen(&path, 0o600, 1).unwrap();
    let mut queued = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        // Blocking connects: the first ones are queued at once, then one waits for room.
        for _ in 0..4 {
            let _ = tx.send(UnixStream::connect(&p));
        }
    });
    while let Ok(c) = rx.recv_timeout(Duration::from_millis(300)) {
        queued.push(c.expect("a queued connect"));
    }
    assert!(
        queued.len() < 4,
        "the owner's backlog is full: a blocking connect waits"
    );
    // Server::start has a deadline: a probe that blocked would fail it here.
    let (srv, state) = unix_listen_state(&path);
    let busy = format!("(errno {})", libc::EADDRINUSE);
    assert!(
        state.starts_with("failed: bind:") && state.ends_with(&busy),
        "{}",
        state
    );
    assert!(path.exists(), "the owner's file is kept");
    drop(srv);
    drop(owner);
}

#[test]
fn a_socket_file_the_probe_cannot_judge_is_left_alone() {
    // A datagram socket answers a stream connect with EPROTOTYPE: neither stale nor ours.
    let dir = tempdir("dgram");
    let path = dir.join("dgram.sock");
    let owner = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let (_srv, state) = unix_listen_state(&path);
    assert!(
        state.starts_with("failed: connect:")
            && state.ends_with(&format!("(errno {})", libc::EPROTOTYPE)),
        "the probe's own error is reported: {}",
        state
    );
    let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
    client
        .send_to(b"still there", &path)
        .expect("the owner's socket was not unlinked");
    let mut b = [0u8; 32];
    owner.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(owner.recv(&mut b).unwrap(), 11);
}

#[test]
fn close_leaves_a_socket_file_that_replaced_ours() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = tempdir("replaced");
    let path = dir.join("alpha.sock");
    let conf = format!(
        "[Alpha_Listener]\n[Alpha_Listener Listen \"{}\"]\n",
        path.display()
    );
    let srv = Server::start(&["Alpha"], Conf::Text(conf));
    // Another process takes the path over (as a restarted daemon would).
    std::fs::remove_file(&path).unwrap();
    let theirs = UnixListener::bind(&path).unwrap();
    drop(srv);
    assert!(path.exists(), "their socket file was not removed");
    let _c = UnixStream::connect(&path).expect("their socket still answers");
    theirs.accept().expect("and it is theirs");
}

// ---------------------------------------------------------------------------------------------
// Stopping and restarting the accept machinery
// ---------------------------------------------------------------------------------------------

fn write_conf(file: &std::path::Path, text: &str) {
    std::fs::write(file, text).unwrap();
}

fn reload(srv: &Server) {
    let r = srv.on_sched(|| netlistener_reload().map(|_| ()).map_err(|e| e.to_string()));
    r.unwrap_or_else(|e| panic!("reload: {e}"));
}

#[test]
fn reload_changing_concurrency_under_load_loses_no_connection() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = tempdir("restart");
    let file = dir.join("nl.conf");
    let conf = |c: u32, q: u32| {
        format!("[Alpha_Listener]\n[Alpha_Listener Listen \"127.0.0.1:0\"]\nConcurrency = {c}\nAccept_Queue_Backlog = {q}\nEvents_Per_Iter = 1\n")
    };
    write_conf(&file, &conf(2, 1));
    let srv = Server::start(&["Alpha"], Conf::Path(file.clone()));
    let addr = srv.addrs("Alpha_Listener")[0];
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    let mut c = Client::connect(addr);
                    let mut l = String::new();
                    c.r.read_line(&mut l)
                        .map_err(|e| format!("greeting: {e}"))?;
                    if l.trim_end() != "Alpha hi" {
                        return Err(format!("greeting {l:?}: the connection was dropped"));
                    }
                    assert_eq!(c.echo("x"), "x");
                    served.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for (i, (c, q)) in [(4, 2), (0, 1), (1, 1), (2, 3), (0, 0), (3, 1)]
        .iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        write_conf(&file, &conf(*c, *q));
        // Hold the scheduler first: the accept threads fill the queue and wait with an
        // admitted connection each, which the stop must hand over, not drop.
        srv.on_sched(|| std::thread::sleep(Duration::from_millis(30)));
        let before = served.load(Ordering::Relaxed);
        reload(&srv);
        assert_eq!(srv.report()[0].concurrency, *c as usize, "reload {i}");
        wait_until("clients progress", || {
            served.load(Ordering::Relaxed) > before + 4
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap().unwrap();
    }
    let s = srv.report()[0].stats;
    assert_eq!(s.refused, 0);
    assert_eq!(s.accepted as usize, served.load(Ordering::Relaxed), "{s:?}");
}

/// A gate that the acceptor of `Gate_Listener` waits on for peers from 127.0.0.9.
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: std::sync::atomic::AtomicUsize,
}

static GATE: Gate = Gate {
    open: Mutex::new(false),
    cv: Condvar::new(),
    waiting: std::sync::atomic::AtomicUsize::new(0),
};

fn gate_acceptor(_e: &mut Event, _et: i32, closure: &mut Closure, _now: Instant) -> i32 {
    let ac = closure.downcast_mut::<AcceptConstruct>().unwrap();
    if ac.remote_addr.map(|a| a.ip().to_string()).as_deref() != Some("127.0.0.9") {
        return 1;
    }
    GATE.waiting
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let g = GATE.open.lock().unwrap();
    // Longer than every deadline of the test: a scheduler waiting for this fails the test.
    let _ = GATE
        .cv
        .wait_timeout_while(g, Duration::from_secs(30), |open| !*open)
        .unwrap();
    1
}

#[test]
fn a_slow_acceptor_blocks_neither_reload_nor_shutdown_and_its_connection_is_served() {
    use std::sync::atomic::Ordering;
    let dir = tempdir("slowacc");
    let file = dir.join("nl.conf");
    let two = "[Gate_Listener]\n[Gate_Listener Listen \"127.0.0.1:0\"]\nConcurrency = 1\n[Gate_Listener Listen \"127.0.0.2:0\"]\nConcurrency = 1\n";
    write_conf(&file, two);
    let srv = Server::start_with(
        || {
            register_test_type_with("Gate", Some(gate_acceptor), (0, 0), Scopes::LISTENER_ALL);
        },
        Conf::Path(file.clone()),
    );
    let a = srv.addrs("Gate_Listener");
    let (l1, l2) = (a[0], a[1]);
    // Each Listen's only accept thread is now stuck in the acceptor.
    let mut held1 = Client::connect_from("127.0.0.9", l1);
    let mut held2 = Client::connect_from("127.0.0.9", l2);
    wait_until("both acceptors entered", || {
        GATE.waiting.load(Ordering::SeqCst) == 2
    });
    // A reload that restarts L1's threads and removes L2 returns (on_sched has a deadline).
    write_conf(
        &file,
        "[Gate_Listener]\n[Gate_Listener Listen \"127.0.0.1:0\"]\nConcurrency = 2\n",
    );
    reload(&srv);
    let r = srv.report();
    assert_eq!((r.len(), r[0].concurrency), (1, 2));
    let mut c = Client::connect(l1);
    assert_eq!(c.line(), "Gate hi", "the new threads accept");
    assert!(
        std::net::TcpStream::connect_timeout(&l2, Duration::from_secs(2)).is_err(),
        "the removed Listen's socket closed although its thread is still in the acceptor"
    );
    // Shutdown's first step returns too.
    srv.on_sched(netlistener_stop_listening);
    assert!(srv.report().is_empty());
    // Released, the held connections become sessions: an admitted connection is never lost.
    *GATE.open.lock().unwrap() = true;
    GATE.cv.notify_all();
    assert_eq!(held1.line(), "Gate hi");
    assert_eq!(held2.line(), "Gate hi");
    assert_eq!(held2.echo("late"), "late");
}

// ---------------------------------------------------------------------------------------------
// The hand-off queue and Events_Per_Iter
// ---------------------------------------------------------------------------------------------

/// A listener slow to start sessions (20 ms on the scheduler thread each): it sends one line
/// and closes.
fn slow_listener(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    std::thread::sleep(Duration::from_millis(20));
    let _ = e.write(b"slow\r\n");
    0
}

#[test]
fn a_full_hand_off_queue_makes_accept_threads_wait_and_loses_nothing() {
    let conf = "[Slow_Listener]\n[Slow_Listener Listen \"127.0.0.1:0\"]\nConcurrency = 2\nAccept_Queue_Backlog = 2\nEvents_Per_Iter = 1\n";
    let srv = Server::start_with(
        || {
            netlistener_register3("Slow", slow_listener, None, "test").unwrap();
        },
        Conf::Text(conf.into()),
    );
    let addr = srv.addrs("Slow_Listener")[0];
    const N: usize = 24;
    let mut clients: Vec<Client> = (0..N).map(|_| Client::connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.line(), "slow", "client {i}");
        assert!(c.closed());
    }
    let s = srv.report()[0].stats;
    assert_eq!((s.accepted, s.refused), (N as u64, 0), "{s:?}");
    assert!(
        s.queue_waits >= 1,
        "the accept threads waited for room: {s:?}"
    );
}

/// Every listener callback of the `Count*` types, with the `now` of its loop iteration (one
/// value per iteration, sampled once by the scheduler).
static STARTS: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

fn counting_listener(_e: &mut Event, _et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure.downcast_mut::<AcceptConstruct>().unwrap();
    STARTS
        .lock()
        .unwrap()
        .push((ac.inst.def.scope.clone(), now));
    0
}

fn events_per_iter_is_honoured(kind: &'static str, concurrency: u32) {
    let scope = format!("{kind}_Listener");
    let conf = format!("[{scope}]\n[{scope} Listen \"127.0.0.1:0\"]\nConcurrency = {concurrency}\nEvents_Per_Iter = 4\n");
    let srv = Server::start_with(
        move || {
            netlistener_register3(kind, counting_listener, None, "test").unwrap();
        },
        Conf::Text(conf),
    );
    let addr = srv.addrs(Box::leak(scope.clone().into_boxed_str()))[0];
    // Hold the scheduler while 30 connections queue up (in the kernel, or in the hand-off
    // queue), then let it go.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    srv.handle.run_on_scheduler(move || {
        let _ = rx.recv_timeout(DEADLINE);
    });
    const N: usize = 30;
    let clients: Vec<_> = (0..N).map(|_| Client::connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    tx.send(()).unwrap();
    let mine = || -> Vec<Instant> {
        let v = STARTS.lock().unwrap();
        v.iter()
            .filter(|(k, _)| *k == scope)
            .map(|(_, t)| *t)
            .collect()
    };
    wait_until("every session started", || mine().len() == N);
    let mut per_iteration = std::collections::BTreeMap::new();
    for t in mine() {
        *per_iteration.entry(t).or_insert(0) += 1;
    }
    let most = per_iteration.values().copied().max().unwrap();
    assert_eq!(
        most, 4,
        "at most Events_Per_Iter per iteration, and batches of it: {per_iteration:?}"
    );
    assert!(per_iteration.len() >= N / 4);
    drop(clients);
}

#[test]
fn events_per_iter_is_honoured_when_the_scheduler_accepts() {
    events_per_iter_is_honoured("CountZero", 0);
}

#[test]
fn events_per_iter_is_honoured_with_accept_threads() {
    events_per_iter_is_honoured("CountTwo", 2);
}

// ---------------------------------------------------------------------------------------------
// Session caps: their semantics, and the slot given back however a session ends
// ---------------------------------------------------------------------------------------------

#[test]
fn a_peer_cap_replaces_the_listen_cap_for_its_block() {
    let conf = r#"
[Alpha_Listener]
[Alpha_Listener Listen "127.0.0.1:0"]
Listener_Sessions = 2
[Alpha_Listener Peer "127.0.0.4/32"]
Listener_Sessions = 1
"#;
    let srv = Server::start(&["Alpha"], Conf::Text(conf.into()));
    let addr = srv.addrs("Alpha_Listener")[0];
    let mut from4 = Client::connect_from("127.0.0.4", addr);
    assert_eq!(from4.line(), "Alpha hi");
    // The session from the capped block does not count toward the Listen's 2.
    let mut others: Vec<Client> = (0..2)
        .map(|_| Client::connect_from("127.0.0.5", addr))
        .collect();
    for o in others.iter_mut() {
        assert_eq!(o.line(), "Alpha hi");
    }
    assert_eq!(Client::connect_from("127.0.0.5", addr).line(), "Alpha BUSY");
    assert_eq!(Client::connect_from("127.0.0.4", addr).line(), "Alpha BUSY");
    assert_eq!(srv.report()[0].stats.refused_listener_cap, 2);
}

#[test]
fn a_peer_cap_counts_the_block_of_the_peer_that_sets_it() {
    // 127.0.0.6 matches both Peers; the cap comes from the /8, so the /8 block is counted.
    let conf = r#"
[Alpha_Listener]
[Alpha_Listener Listen "127.0.0.1:0"]
[Alpha_Listener Peer "127.0.0.0/8"]
Listener_Sessions = 2
[Alpha_Listener Peer "127.0.0.6/32"]
Greeting = six
"#;
    let srv = Server::start(&["Alpha"], Conf::Text(conf.into()));
    let addr = srv.addrs("Alpha_Listener")[0];
    let mut six = Client::connect_from("127.0.0.6", addr);
    assert_eq!(six.line(), "Alpha six");
    let mut five = Client::connect_from("127.0.0.5", addr);
    assert_eq!(five.line(), "Alpha hi");
    assert_eq!(Client::connect_from("127.0.0.6", addr).line(), "Alpha BUSY");
    assert_eq!(Client::connect_from("127.0.0.7", addr).line(), "Alpha BUSY");
}

fn slot_listener(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let _ = e.write(b"hi\r\n");
    e.callback = slot_worker;
    E_READ
}

/// Ends the session as the client asks: `panic`, `float` (the session is dropped on a pool
/// thread); silence ends it by its idle timeout.
fn slot_worker(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure.downcast_mut::<AcceptConstruct>().unwrap();
    if et & E_TIMEOUT != 0 {
        ac.note_timeout();
        return 0;
    }
    let mut b = [0u8; 64];
    match e.read(&mut b) {
        Io::Done(n) => {
            touch(e, ac, now);
            match &b[..n] {
                b"panic\r\n" => panic!("slot_worker: panics as the client asked"),
                b"float\r\n" => {
                    netlistener::scheduler::float_event(e, drop_on_a_pool);
                    E_READ
                }
                _ => E_READ,
            }
        }
        Io::Wait(_) => E_READ,
        Io::Closed | Io::Err(_) => 0,
    }
}

fn drop_on_a_pool(fe: netlistener::scheduler::FloatedEvent) {
    use netlistener::threadpool::{Completion, Job};
    let job = Job::new(move || {
        drop(fe);
        Completion::Nothing
    });
    assert!(netlistener::scheduler::threadpool_submit("IO", job).is_ok());
}

/// Connects until the Listen admits (a `BUSY` means the last slot is not free yet).
fn admitted(addr: std::net::SocketAddr) -> Client {
    let end = Instant::now() + DEADLINE;
    loop {
        let mut c = Client::connect(addr);
        match c.line().as_str() {
            "hi" => return c,
            "Slot BUSY" if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            other => panic!("not admitted before the deadline: {other:?}"),
        }
    }
}

#[test]
fn the_cap_slot_is_released_however_the_session_ends() {
    let conf = "[Slot_Listener]\nListener_Sessions = 1\n[Slot_Listener Listen \"127.0.0.1:0\"]\n[Slot_Listener Peer \"127.0.0.7/32\"]\nIdle_Time = 300ms\n";
    let srv = Server::start_with(
        || {
            let def = netlistener_register3("Slot", slot_listener, None, "test").unwrap();
            netlistener_set_reject_lines(&def, "Slot DENIED", "Slot BUSY");
        },
        Conf::Text(conf.into()),
    );
    let addr = srv.addrs("Slot_Listener")[0];
    let busy = || assert_eq!(Client::connect(addr).line(), "Slot BUSY", "the cap holds");
    let mut c = admitted(addr);
    busy();
    c.send("panic\r\n");
    assert!(c.closed(), "a panicking worker ends its session");
    let mut c = admitted(addr);
    busy();
    c.send("float\r\n");
    assert!(c.closed(), "a floated session dropped on a pool ends");
    let mut c = admitted(addr);
    busy();
    assert_eq!(srv.on_sched(netlistener_close_sessions), 1);
    assert!(c.closed(), "the shutdown close ends it");
    let _ = admitted(addr);
    wait_until("the last one ends", || srv.on_sched(active_sessions) == 0);
    // Only 127.0.0.7 has an idle timeout.
    let mut silent = Client::connect_from("127.0.0.7", addr);
    assert_eq!(silent.line(), "hi");
    assert!(silent.closed(), "reaped by its idle timeout");
    let _ = admitted(addr);
    assert_eq!(
        srv.report()[0].stats.timeouts,
        1,
        "no other session timed out"
    );
}

// ---------------------------------------------------------------------------------------------
// Socket options
// ---------------------------------------------------------------------------------------------

/// Sends the accepted socket's `SO_RCVBUF` and `SO_SNDBUF`, and closes.
fn buffer_listener(e: &mut Event, _et: i32, _c: &mut Closure, _now: Instant) -> i32 {
    let (r, s) = netlistener::sys::buffer_sizes(e.fd()).unwrap_or((0, 0));
    let _ = e.write(format!("{r} {s}\r\n").as_bytes());
    0
}

fn buffer_sizes_at(addr: std::net::SocketAddr) -> (usize, usize) {
    let l = Client::connect(addr).line();
    let mut w = l.split(' ').map(|n| n.parse::<usize>().unwrap());
    (w.next().unwrap(), w.next().unwrap())
}

#[test]
fn register4_buffers_apply_unless_set_and_a_set_zero_is_the_os_default() {
    let dir = tempdir("bufs");
    let file = dir.join("nl.conf");
    let conf = |first: &str| {
        format!("[Buf_Listener]\n[Buf_Listener Listen \"127.0.0.1:0\"]\n{first}\n[Buf_Listener Listen \"127.0.0.2:0\"]\nTCP_Recv_Buffer_Size = 0\n[Plain_Listener]\n[Plain_Listener Listen \"127.0.0.1:0\"]\n")
    };
    write_conf(&file, &conf(""));
    let srv = Server::start_with(
        || {
            netlistener_register4("Buf", buffer_listener, None, "test", 16384, 16384).unwrap();
            netlistener_register3("Plain", buffer_listener, None, "test").unwrap();
        },
        Conf::Path(file.clone()),
    );
    let b = srv.addrs("Buf_Listener");
    let plain = srv.addrs("Plain_Listener")[0];
    // Linux reports twice the size set; the BSDs the size itself.
    let is_16k = |n: usize| (16384..=32768).contains(&n);
    let typed = buffer_sizes_at(b[0]);
    let os = buffer_sizes_at(plain);
    let zero = buffer_sizes_at(b[1]);
    assert!(
        is_16k(typed.0) && is_16k(typed.1),
        "unset: the type's default: {typed:?}"
    );
    assert_ne!(os.0, typed.0, "the OS default differs from 16 KiB here");
    assert_eq!(zero.0, os.0, "a configured 0 restores the OS default");
    assert!(is_16k(zero.1), "the send side is still unset: {zero:?}");
    // A change on a kept Listen reaches its live socket: connections accepted afterwards.
    let fd = srv.report()[0].fd;
    write_conf(&file, &conf("TCP_Recv_Buffer_Size = 48k"));
    reload(&srv);
    assert_eq!(srv.report()[0].fd, fd, "the socket is kept");
    let live = buffer_sizes_at(b[0]);
    assert!((49152..=98304).contains(&live.0), "{live:?}");
    assert!(is_16k(live.1), "{live:?}");
}

#[test]
fn a_v6_only_wildcard_and_a_v4_wildcard_share_a_port() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this host: skipped");
        return;
    }
    // A dual-stack probe: the port is free in both families.
    let free = || {
        let l = std::net::TcpListener::bind("[::]:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (p, q) = (free(), free());
    let conf = format!(
        "[Alpha_Listener]\n\
         [Alpha_Listener Listen \"[::]:{p}\"]\nGreeting = six\n\
         [Alpha_Listener Listen \"*:{p}\"]\nGreeting = four\n\
         [Alpha_Listener Listen \"[::]:{q}\"]\nGreeting = six\n\
         [Alpha_Listener Listen \"0.0.0.0:{q}\"]\nGreeting = four\n"
    );
    let srv = Server::start(&["Alpha"], Conf::Text(conf));
    let r = srv.report();
    assert!(r.iter().all(|l| l.state == "listening"), "{r:?}");
    for port in [p, q] {
        let six = Client::connect(format!("[::1]:{port}").parse().unwrap()).line();
        let four = Client::connect(format!("127.0.0.1:{port}").parse().unwrap()).line();
        assert_eq!((six.as_str(), four.as_str()), ("Alpha six", "Alpha four"));
    }
}

#[test]
fn socket_options_are_refused_inside_peer() {
    let conf = "[Alpha_Listener]\n\
                [Alpha_Listener Listen \"127.0.0.1:0\"]\n\
                [Alpha_Listener Peer \"10.0.0.0/8\"]\n\
                Listen_Backlog = 10\n\
                Idle_Time = 5\n\
                [Alpha_Listener Listen \"127.0.0.1:0\" Peer \"10.0.0.0/8\"]\n\
                Concurrency = 2\n\
                TCP_Recv_Buffer_Size = 4k\n";
    let err = std::thread::spawn(move || {
        let _s = netlistener::scheduler::Scheduler::new().unwrap();
        register_test_types(&["Alpha"]);
        netlistener_load_config_str("peer.conf", conf)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    })
    .join()
    .unwrap();
    for (line, section, option) in [
        (4, "[Alpha_Listener Peer \"10.0.0.0/8\"]", "Listen_Backlog"),
        (
            7,
            "[Alpha_Listener Listen \"127.0.0.1:0\" Peer \"10.0.0.0/8\"]",
            "Concurrency",
        ),
        (
            8,
            "[Alpha_Listener Listen \"127.0.0.1:0\" Peer \"10.0.0.0/8\"]",
            "TCP_Recv_Buffer_Size",
        ),
    ] {
        let want = format!("peer.conf:{line}: {section} {option}:");
        assert!(err.contains(&want), "{want}\nin:\n{err}");
    }
    assert!(
        !err.contains("Idle_Time"),
        "Idle_Time is valid in a Peer:\n{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// EMFILE: the real daemon under a low RLIMIT_NOFILE
// ---------------------------------------------------------------------------------------------

#[path = "util/daemon_limits.rs"]
mod daemon_limits;
#[path = "util/daemon.rs"]
mod daemon_util;

/// Runs `netlistenerd` under `ulimit -n 64` with more connections than it has descriptors:
/// the episode is logged once each way, the daemon does not spin, and the connections that
/// waited in the kernel's backlog are served once descriptors are free again.
fn emfile_episode(concurrency: u32) {
    use daemon_limits::{bound_from_log, cpu_time, start_with_nofile};
    use daemon_util::{round_trip, TestDir};
    // 64 descriptors: about 15 go to the daemon itself, so ~49 sessions fit. Of the 88
    // connections, ~39 wait; after the first 78 close, the ~39 still to accept all fit.
    const NOFILE: u32 = 64;
    const CONNS: usize = 88;
    const KEPT: usize = 10;
    let dir = TestDir::new(&format!("emfile{concurrency}"));
    let conf = format!(
        "{}[Echo_Listener]\n[Echo_Listener Listen \"127.0.0.1:0\"]\nConcurrency = {concurrency}\n",
        dir.base_conf()
    );
    dir.write_conf("a.conf", &conf);
    let d = start_with_nofile(&dir, NOFILE);
    // Not asked on the console: its session would free a descriptor during the episode.
    let addr = bound_from_log(&d, "Echo_Listener");
    let mut conns: Vec<_> = (0..CONNS).map(|_| daemon_util::connect(addr)).collect();
    let count = |what: &str| d.log_text().lines().filter(|l| l.contains(what)).count();
    daemon_util::poll_until("EMFILE", DEADLINE, || {
        (count("; backing off") > 0).then_some(())
    });
    let t0 = Instant::now();
    #[cfg(target_os = "linux")]
    let cpu0 = cpu_time(&d).expect("/proc/PID/stat");
    std::thread::sleep(Duration::from_millis(1500));
    #[cfg(target_os = "linux")]
    {
        let (cpu, wall) = (cpu_time(&d).unwrap() - cpu0, t0.elapsed());
        // A spin detector, not a speed test: a spinning loop uses ~100% of a CPU.
        assert!(
            cpu < wall * 3 / 10,
            "{cpu:?} of CPU in {wall:?} out of descriptors: spinning"
        );
    }
    let _ = t0;
    // Free descriptors just after a failed retry: the next one is ≥ 640 ms away, so every
    // close has reached the daemon when it comes.
    let retries = count("next try in");
    daemon_util::poll_until("a retry", DEADLINE, || {
        (count("next try in") > retries).then_some(())
    });
    let kept = conns.split_off(CONNS - KEPT);
    drop(conns);
    for mut c in kept {
        round_trip(&mut c, b"served after the episode\n");
    }
    let log = d.log_text();
    assert_eq!(
        count("; backing off"),
        1,
        "one episode, logged once:\n{log}"
    );
    assert_eq!(count("accepting again"), 1, "and its end, once:\n{log}");
}

#[test]
fn emfile_in_the_scheduler_backs_off_without_spinning_and_resumes() {
    emfile_episode(0);
}

#[test]
fn emfile_on_four_accept_threads_is_one_episode_and_resumes() {
    emfile_episode(4);
}

#[test]
fn a_socket_option_a_live_socket_cannot_take_is_reported_once() {
    use daemon_util::{Daemon, TestDir};
    let dir = TestDir::new("bufonce");
    let conf = |size: &str| {
        format!(
            "{}[Echo_Listener]\n[Echo_Listener Listen \"127.0.0.1:0\"]\nTCP_Recv_Buffer_Size = {size}\n",
            dir.base_conf()
        )
    };
    dir.write_conf("a.conf", &conf("64k"));
    let d = Daemon::start(&dir);
    // Back to the OS default: a live socket cannot unset SO_RCVBUF.
    dir.write_conf("a.conf", &conf("0"));
    d.ctl_ok(&["config", "reload"]);
    d.ctl_ok(&["config", "reload"]);
    d.ctl_ok(&["config", "reload"]);
    let log = d.log_text();
    let n = log
        .lines()
        .filter(|l| l.contains("applies when the socket re-opens"))
        .count();
    assert_eq!(n, 1, "once, by the reload that made the change:\n{log}");
}
