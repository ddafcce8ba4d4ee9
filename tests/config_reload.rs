//! Generations: reload keeps the old one on error, restart-required options, sessions keeping
//! their generation, and readers racing reloads.

#[path = "util/config_schema.rs"]
mod config_schema;
#[path = "util/temp_dir.rs"]
mod temp_dir;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use netlistener::config::*;
use temp_dir::tempdir;

#[test]
fn broken_reload_keeps_the_old_generation() {
    let dir = tempdir("config-broken");
    let (schema, s) = config_schema::schema();
    dir.replace("10-main.conf", "[ESMTP_Listener]\nIdle_Time = 60\n");
    let store = ConfigStore::load(schema, &dir).unwrap();
    let g1 = store.current();
    assert_eq!(g1.number(), 1);

    dir.replace(
        "10-main.conf",
        "[ESMTP_Listener]\nIdle_Time = 61\nDeny = true\n",
    );
    dir.replace("20-more.conf", "[Bogus]\nIdle_Time = x\n");
    let errors = store.reload().unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.0.len(), 2, "{text}");
    assert!(
        text.contains("10-main.conf:3: [ESMTP_Listener] Deny: not valid here"),
        "{text}"
    );
    assert!(
        text.contains("20-more.conf:1: [Bogus] unknown scope Bogus"),
        "{text}"
    );
    let still = store.current();
    assert_eq!(still.number(), 1);
    assert!(Arc::ptr_eq(&still, &g1));
    let f = still.fetch(s.idle_time, "ESMTP_Listener", None, None);
    assert_eq!(f.value.as_duration(), Duration::from_secs(60));

    fs::remove_file(dir.join("20-more.conf")).unwrap();
    dir.replace("10-main.conf", "[ESMTP_Listener]\nIdle_Time = 61\n");
    let g2 = store.reload().unwrap();
    assert_eq!(g2.number(), 2);
    let f = g2.fetch(s.idle_time, "ESMTP_Listener", None, None);
    assert_eq!(f.value.as_duration(), Duration::from_secs(61));
    // A session that started on generation 1 still sees it.
    assert_eq!(
        g1.fetch(s.idle_time, "ESMTP_Listener", None, None)
            .value
            .as_duration()
            .as_secs(),
        60
    );
}

#[test]
fn restart_required_option_is_kept_and_the_rest_committed() {
    let dir = tempdir("config-restart");
    let (schema, s) = config_schema::schema();
    let conf = |backlog: u32, idle: u32| {
        format!("[ESMTP_Listener Listen \"127.0.0.1:25\"]\nListen_Backlog = {backlog}\nIdle_Time = {idle}\n")
    };
    dir.replace("main.conf", &conf(100, 10));
    let store = ConfigStore::load(schema, &dir.join("main.conf")).unwrap();
    dir.replace("main.conf", &conf(200, 20));
    let g = store.reload().unwrap();
    let listen: ListenAddr = "127.0.0.1:25".parse().unwrap();
    let get = |slot| {
        g.fetch(slot, "ESMTP_Listener", Some(&listen), None)
            .value
            .clone()
    };
    assert_eq!(get(s.listen_backlog), Value::Int(100));
    assert_eq!(get(s.idle_time), Value::Duration(Duration::from_secs(20)));
    let warnings: Vec<String> = store.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].ends_with(
            "main.conf:2: [ESMTP_Listener Listen \"127.0.0.1:25\"] Listen_Backlog: \
             changed, but takes effect only after a restart; keeping 100"
        ),
        "{warnings:?}"
    );
    // Removing it also waits for a restart; a new Listen scope may set it freely.
    dir.replace(
        "main.conf",
        "[ESMTP_Listener Listen \"127.0.0.1:25\"]\n[ESMTP_Listener Listen \"127.0.0.1:26\"]\nListen_Backlog = 7\n",
    );
    let g = store.reload().unwrap();
    let l26: ListenAddr = "127.0.0.1:26".parse().unwrap();
    assert_eq!(
        g.fetch(s.listen_backlog, "ESMTP_Listener", Some(&listen), None)
            .value
            .as_int(),
        100
    );
    assert_eq!(
        g.fetch(s.listen_backlog, "ESMTP_Listener", Some(&l26), None)
            .value
            .as_int(),
        7
    );
    assert_eq!(g.warnings().len(), 1);
}

/// The running objects are compared by the value they resolve, not scope by scope: a section
/// added for the `IO` and `CPU` pools (which run without one), or a listener-level value above
/// a running Listen, cannot slip a restart-required change through.
#[test]
fn a_new_scope_cannot_change_a_running_object() {
    let dir = tempdir("config-restart-scope");
    let (schema, s) = config_schema::schema();
    let conc = schema.slot("Concurrency", ScopeClass::ThreadPool).unwrap();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as i64;
    dir.replace("main.conf", "[ESMTP_Listener Listen \"127.0.0.1:25\"]\n");
    let store = ConfigStore::load(schema, &dir.join("main.conf")).unwrap();
    let cpu_wanted = if cpus == 1 { 2 } else { 1 };
    let text = format!(
        "[ThreadPool \"IO\"]\nConcurrency = 9\n[ThreadPool \"CPU\"]\nConcurrency = {cpu_wanted}\n\
         [ThreadPool \"new\"]\nConcurrency = 3\n\
         [ESMTP_Listener]\nListen_Backlog = 7\nIdle_Time = 5\n\
         [ESMTP_Listener Listen \"127.0.0.1:25\"]\n[ESMTP_Listener Listen \"127.0.0.1:26\"]\n"
    );
    dir.replace("main.conf", &text);
    let expected = [
        "main.conf:2: [ThreadPool \"IO\"] Concurrency: changed, but takes effect only after a restart; keeping the default 4".to_string(),
        format!("main.conf:4: [ThreadPool \"CPU\"] Concurrency: changed, but takes effect only after a restart; keeping the default {cpus}"),
        "main.conf:8: [ESMTP_Listener] Listen_Backlog: changed for ESMTP_Listener Listen \"127.0.0.1:25\", but takes effect only after a restart; keeping the default 500".to_string(),
    ];
    let (l25, l26): (ListenAddr, ListenAddr) = (
        "127.0.0.1:25".parse().unwrap(),
        "127.0.0.1:26".parse().unwrap(),
    );
    // The file still asks for the change on the second reload: the same values are kept.
    for round in 0..2 {
        let g = store.reload().unwrap();
        assert_eq!(g.threadpool("IO", conc).as_int(), 4, "round {round}");
        assert_eq!(g.threadpool("CPU", conc).as_int(), cpus, "round {round}");
        assert_eq!(
            g.threadpool("new", conc).as_int(),
            3,
            "a new pool starts as written"
        );
        let get = |slot, l| g.fetch(slot, "ESMTP_Listener", Some(l), None).value.clone();
        assert_eq!(
            get(s.listen_backlog, &l25),
            Value::Int(500),
            "round {round}"
        );
        assert_eq!(
            get(s.listen_backlog, &l26),
            Value::Int(7),
            "a new Listen starts as written"
        );
        assert_eq!(
            get(s.idle_time, &l25),
            Value::Duration(Duration::from_secs(5))
        );
        let warnings: Vec<String> = g.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 3, "round {round}: {warnings:?}");
        for (w, e) in warnings.iter().zip(&expected) {
            assert!(
                w.ends_with(e.as_str()),
                "round {round}:\n{w}\nshould end with\n{e}"
            );
        }
    }
    // Setting them back to what runs is no change at all.
    dir.replace(
        "main.conf",
        "[ESMTP_Listener Listen \"127.0.0.1:25\"]\n[ThreadPool \"new\"]\nConcurrency = 3\n",
    );
    let g = store.reload().unwrap();
    assert!(g.warnings().is_empty(), "{:?}", g.warnings());
}

/// Writers reload configurations in which two options always hold the same number; readers
/// check that every generation they see is internally consistent and that numbers never go
/// backwards. A torn swap would show two different numbers.
#[test]
fn readers_never_see_a_torn_generation() {
    let dir = tempdir("config-race");
    let (schema, s) = config_schema::schema();
    let conf = |n: u32| {
        format!("[ESMTP_Listener]\nIdle_Time = {n}\nListener_Sessions = {n}\n[ESMTP_Listener Peer \"10.0.0.0/8\"]\nBanner = b{n}\n")
    };
    dir.replace("main.conf", &conf(0));
    let store = Arc::new(ConfigStore::load(schema, &dir).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let peer = PeerAddr::Ip("10.1.2.3".parse().unwrap());
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            let (idle, sessions, banner) = (s.idle_time, s.listener_sessions, s.banner);
            thread::spawn(move || {
                let (mut last, mut seen) = (0, 0u64);
                while !done.load(Ordering::Relaxed) || seen == 0 {
                    let g = store.current();
                    assert!(g.number() >= last, "generation went backwards");
                    last = g.number();
                    let chain = g.chain("ESMTP_Listener", None, Some(&peer));
                    let a = g.fetch_in(&chain, idle).value.as_duration().as_secs() as i64;
                    let b = g.fetch_in(&chain, sessions).value.as_int();
                    let c = g.fetch_in(&chain, banner).value.as_str().to_string();
                    assert_eq!(a, b, "torn generation {}", g.number());
                    assert_eq!(format!("b{a}"), c, "torn generation {}", g.number());
                    seen += 1;
                }
                (last, seen)
            })
        })
        .collect();
    for n in 1..=200 {
        dir.replace("main.conf", &conf(n));
        let g = store.reload().unwrap();
        assert_eq!(g.number(), u64::from(n) + 1);
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        let (last, seen) = r.join().expect("reader panicked");
        assert!(seen > 0 && last >= 1);
    }
    assert_eq!(
        store.current().global(s.idle_time).as_duration().as_secs(),
        300
    );
}

#[test]
fn shared_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ConfigStore>();
    send_sync::<Generation>();
    send_sync::<Chain>();
    send_sync::<ScopeId>();
    send_sync::<Schema>();
}
