//! The fallback chain, one row per level, through `Generation::fetch` and `fetch_in`.

#[path = "util/config_schema.rs"]
mod config_schema;

use std::time::Duration;

use netlistener::config::*;

const CONF: &str = r#"
Idle_Time = 900
Banner = global

[Pathway "inbound"]
Idle_Time = 60
Banner = inbound

[Pathway "solo"]
Banner = solo

[Pathway_Group "edge"]
Idle_Time = 45
Banner = edge
Max_Message_Size = 20m

[Pathway_Group "edge" Pathway "partners"]
Idle_Time = 30

[Pathway "partners"]
Banner = partners

[ESMTP_Listener]
Pathway = inbound
Listener_Sessions = 100

[ESMTP_Listener Listen "127.0.0.1:2525"]
Concurrency = 2
Idle_Time = 300

[ESMTP_Listener Listen "[::1]:2525"]
Pathway = partners

[ESMTP_Listener Listen "127.0.0.1:2526"]
Pathway = ""

[ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.0.0.0/8"]
Deny = true
Listener_Sessions = 1

[ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.2.0.0/16"]
Pathway = solo

[ESMTP_Listener Peer "10.0.0.0/8"]
Idle_Time = 120
Listener_Sessions = 10

[ESMTP_Listener Peer "10.1.0.0/16"]
Idle_Time = 20

[ESMTP_Listener Peer "10.1.2.0/24"]
Idle_Time = 15

[ESMTP_Listener Peer "127.0.0.0/8"]
Idle_Time = 7
Listener_Sessions = 3

[ESMTP_Listener Peer "::1"]
Idle_Time = 6

[ESMTP_Listener Peer "::/0"]
Banner = any6

[ESMTP_Listener Peer "2001:db8::/32"]
Idle_Time = 11

[ESMTP_Listener Peer "2001:db8:1::/48"]
Banner = v6deep

[ESMTP_Listener Peer "192.168.0.0/16"]
Deny = true

[ESMTP_Listener Peer "192.168.1.0/24"]
Idle_Time = 9

[ESMTP_Listener Peer "192.168.1.128/25"]
Banner = deep

[Echo_Listener Listen "*:7"]
Idle_Time = 1
"#;

struct Row {
    kind: &'static str,
    listen: Option<&'static str>,
    peer: Option<&'static str>,
    option: &'static str,
    value: &'static str,
    scope: &'static str,
}

const fn row(
    kind: &'static str,
    listen: Option<&'static str>,
    peer: Option<&'static str>,
    option: &'static str,
    value: &'static str,
    scope: &'static str,
) -> Row {
    Row {
        kind,
        listen,
        peer,
        option,
        value,
        scope,
    }
}

const E: &str = "ESMTP_Listener";
const L1: Option<&str> = Some("127.0.0.1:2525");
const L6: Option<&str> = Some("[::1]:2525");

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // 1. Listen::Peer beats everything, including a longer listener-level Peer.
    row(E, L1, Some("10.1.2.3"), "Deny", "true", r#"ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.0.0.0/8""#),
    row(E, L1, Some("10.1.2.3"), "Listener_Sessions", "1", r#"ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.0.0.0/8""#),
    // 2. Listener::Peer, longest prefix among overlapping blocks; beats Listen.
    row(E, L1, Some("10.1.2.3"), "Idle_Time", "15", r#"ESMTP_Listener Peer "10.1.2.0/24""#),
    row(E, L1, Some("10.1.9.9"), "Idle_Time", "20", r#"ESMTP_Listener Peer "10.1.0.0/16""#),
    row(E, L1, Some("10.9.9.9"), "Idle_Time", "120", r#"ESMTP_Listener Peer "10.0.0.0/8""#),
    row(E, None, Some("10.9.9.9"), "Listener_Sessions", "10", r#"ESMTP_Listener Peer "10.0.0.0/8""#),
    // Nested blocks: every matching block takes part, longest first, at each Peer level. A
    // more specific block that sets other options does not cancel the enclosing block's Deny.
    row(E, L1, Some("10.2.3.4"), "Deny", "true", r#"ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.0.0.0/8""#),
    row(E, L1, Some("10.2.3.4"), "Listener_Sessions", "1", r#"ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.0.0.0/8""#),
    // ...and all Listen::Peer blocks come before the listener's Peer blocks.
    row(E, L1, Some("10.2.3.4"), "Idle_Time", "120", r#"ESMTP_Listener Peer "10.0.0.0/8""#),
    row(E, L1, Some("192.168.1.200"), "Banner", "deep", r#"ESMTP_Listener Peer "192.168.1.128/25""#),
    row(E, L1, Some("192.168.1.200"), "Idle_Time", "9", r#"ESMTP_Listener Peer "192.168.1.0/24""#),
    row(E, L1, Some("192.168.1.200"), "Deny", "true", r#"ESMTP_Listener Peer "192.168.0.0/16""#),
    row(E, None, Some("::ffff:192.168.7.7"), "Deny", "true", r#"ESMTP_Listener Peer "192.168.0.0/16""#),
    row(E, L1, Some("192.168.1.5"), "Banner", "inbound", r#"Pathway "inbound""#),
    row(E, L1, Some("192.169.0.1"), "Deny", "false", "default"),
    row(E, L1, Some("2001:db8:1::5"), "Banner", "v6deep", r#"ESMTP_Listener Peer "2001:db8:1::/48""#),
    row(E, L1, Some("2001:db8:1::5"), "Idle_Time", "11", r#"ESMTP_Listener Peer "2001:db8::/32""#),
    row(E, L1, Some("2001:db9::5"), "Banner", "any6", r#"ESMTP_Listener Peer "::/0""#),
    // A Unix peer interleaves loopback blocks by specificity: ::1/128, 127.0.0.0/8 (= /104), ::/0.
    row(E, L1, Some("unix"), "Listener_Sessions", "3", r#"ESMTP_Listener Peer "127.0.0.0/8""#),
    row(E, L1, Some("unix"), "Banner", "any6", r#"ESMTP_Listener Peer "::/0""#),
    // A v4-mapped peer is IPv4 only: ::/0 does not match it.
    row(E, L1, Some("::ffff:192.0.2.1"), "Banner", "inbound", r#"Pathway "inbound""#),
    // v4-mapped v6 peers match IPv4 rules; IPv6 text is normalised.
    row(E, L1, Some("::ffff:10.1.2.3"), "Idle_Time", "15", r#"ESMTP_Listener Peer "10.1.2.0/24""#),
    row(E, L1, Some("2001:DB8:0::1"), "Idle_Time", "11", r#"ESMTP_Listener Peer "2001:db8::/32""#),
    // Unix peers count as loopback; ::1/128 is more specific than 127.0.0.0/8.
    row(E, L1, Some("unix"), "Idle_Time", "6", r#"ESMTP_Listener Peer "::1/128""#),
    row(E, L1, Some("127.0.0.9"), "Idle_Time", "7", r#"ESMTP_Listener Peer "127.0.0.0/8""#),
    // 3. Listen.
    row(E, L1, Some("192.0.2.1"), "Idle_Time", "300", r#"ESMTP_Listener Listen "127.0.0.1:2525""#),
    row(E, L1, Some("10.1.2.3"), "Concurrency", "2", r#"ESMTP_Listener Listen "127.0.0.1:2525""#),
    // 4. The listener.
    row(E, L1, Some("192.0.2.1"), "Listener_Sessions", "100", "ESMTP_Listener"),
    // 5. The pathway named by the listener: a pathway outside any group.
    row(E, Some("127.0.0.1:9"), Some("192.0.2.1"), "Idle_Time", "60", r#"Pathway "inbound""#),
    row(E, L1, Some("192.0.2.1"), "Banner", "inbound", r#"Pathway "inbound""#),
    // Pathway named by a Listen, in a group: group pathway → pathway → group.
    row(E, L6, None, "Idle_Time", "30", r#"Pathway_Group "edge" Pathway "partners""#),
    row(E, L6, None, "Banner", "partners", r#"Pathway "partners""#),
    row(E, L6, None, "Max_Message_Size", "20m", r#"Pathway_Group "edge""#),
    // Pathway named by a Listen::Peer (the Pathway option itself falls back).
    row(E, L1, Some("10.2.3.4"), "Banner", "solo", r#"Pathway "solo""#),
    // An explicit empty Pathway: no pathway, straight to global.
    row(E, Some("127.0.0.1:2526"), None, "Banner", "global", "global"),
    // 6. Global, 7. default.
    row(E, L1, Some("192.0.2.1"), "Max_Message_Size", "10m", "default"),
    row("Echo_Listener", Some("0.0.0.0:7"), Some("10.1.2.3"), "Idle_Time", "1", r#"Echo_Listener Listen "0.0.0.0:7""#),
    row("Echo_Listener", Some("0.0.0.0:8"), None, "Idle_Time", "900", "global"),
    row("Echo_Listener", None, None, "Banner", "global", "global"),
    row("No_Such_Listener", None, None, "Idle_Time", "900", "global"),
    row(E, L1, Some("192.0.2.1"), "File_Mode", "0660", "default"),
];

fn load() -> (std::sync::Arc<Generation>, config_schema::Slots) {
    let (schema, slots) = config_schema::schema();
    let store = ConfigStore::from_str(schema, "table.conf", CONF).unwrap_or_else(|e| panic!("{e}"));
    (store.current(), slots)
}

#[test]
fn every_fallback_level() {
    let (g, _) = load();
    let mut failures = Vec::new();
    for (i, r) in TABLE.iter().enumerate() {
        let listen: Option<ListenAddr> = r.listen.map(|l| l.parse().unwrap());
        let peer: Option<PeerAddr> = r.peer.map(|p| p.parse().unwrap());
        let slot = g
            .schema()
            .options()
            .find(|(_, d)| {
                d.name == r.option && d.scopes.intersects(Scopes::LISTENER_ALL | Scopes::PATHWAY)
            })
            .map(|(s, _)| s)
            .unwrap();
        let f = g.fetch(slot, r.kind, listen.as_ref(), peer.as_ref());
        let chain = g.chain(r.kind, listen.as_ref(), peer.as_ref());
        assert_eq!(
            g.fetch_in(&chain, slot),
            f,
            "row {i}: fetch_in differs from fetch"
        );
        let got = (f.value.to_string(), g.scope_name(f.scope));
        if got != (r.value.to_string(), r.scope.to_string()) {
            failures.push(format!(
                "row {i} {} {:?} {:?} {}: expected {} from {}, got {} from {}",
                r.kind, r.listen, r.peer, r.option, r.value, r.scope, got.0, got.1
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn generation_inventory() {
    let (g, s) = load();
    assert_eq!(g.listener_kinds(), ["ESMTP_Listener", "Echo_Listener"]);
    let listens: Vec<String> = g
        .listens("esmtp_listener")
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(listens, ["127.0.0.1:2525", "[::1]:2525", "127.0.0.1:2526"]);
    assert_eq!(g.threadpools(), ["IO", "CPU"]);
    assert_eq!(
        g.global(s.idle_time).as_duration(),
        Duration::from_secs(900)
    );
    assert_eq!(g.global(s.log_level).as_str(), "info");
    // global_fetch says which of the two supplied it.
    assert_eq!(g.global_fetch(s.idle_time).scope, ScopeId::GLOBAL);
    assert_eq!(g.global_fetch(s.log_level).scope, ScopeId::DEFAULT);
    let peer = PeerAddr::Ip("10.1.2.3".parse().unwrap());
    let f = g.fetch(s.idle_time, "ESMTP_Listener", None, Some(&peer));
    assert_eq!(g.scope_cidr(f.scope), Some("10.1.2.0/24".parse().unwrap()));
    assert_eq!(g.scope_cidr(ScopeId::GLOBAL), None);
    assert_eq!(g.scope_cidr(ScopeId::DEFAULT), None);
    // A cap supplied by an enclosing block is counted against that block.
    let l1: ListenAddr = "127.0.0.1:2525".parse().unwrap();
    let peer = PeerAddr::Ip("10.2.3.4".parse().unwrap());
    let f = g.fetch(
        s.listener_sessions,
        "ESMTP_Listener",
        Some(&l1),
        Some(&peer),
    );
    assert_eq!(g.scope_cidr(f.scope), Some("10.0.0.0/8".parse().unwrap()));
}

#[test]
fn chain_lists_every_matching_block_longest_first() {
    let (g, _) = load();
    let l1: ListenAddr = "127.0.0.1:2525".parse().unwrap();
    let names = |peer: &str| -> Vec<String> {
        let peer: PeerAddr = peer.parse().unwrap();
        let chain = g.chain("ESMTP_Listener", Some(&l1), Some(&peer));
        g.chain_scopes(&chain).map(|id| g.scope_name(id)).collect()
    };
    let tail = [
        r#"ESMTP_Listener Listen "127.0.0.1:2525""#,
        "ESMTP_Listener",
        r#"Pathway "inbound""#,
        "global",
    ];
    let with_tail = |head: &[&str]| -> Vec<String> {
        head.iter().chain(&tail).map(|s| s.to_string()).collect()
    };
    assert_eq!(
        names("192.168.1.200"),
        with_tail(&[
            r#"ESMTP_Listener Peer "192.168.1.128/25""#,
            r#"ESMTP_Listener Peer "192.168.1.0/24""#,
            r#"ESMTP_Listener Peer "192.168.0.0/16""#,
        ])
    );
    assert_eq!(
        names("unix"),
        with_tail(&[
            r#"ESMTP_Listener Peer "::1/128""#,
            r#"ESMTP_Listener Peer "127.0.0.0/8""#,
            r#"ESMTP_Listener Peer "::/0""#,
        ])
    );
    // Listen::Peer blocks (with the pathway one of them names) come first.
    let mut want: Vec<String> = [
        r#"ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.2.0.0/16""#,
        r#"ESMTP_Listener Listen "127.0.0.1:2525" Peer "10.0.0.0/8""#,
        r#"ESMTP_Listener Peer "10.0.0.0/8""#,
        r#"ESMTP_Listener Listen "127.0.0.1:2525""#,
        "ESMTP_Listener",
        r#"Pathway "solo""#,
        "global",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(names("10.2.3.4"), want);
    want.remove(0);
    want[4] = r#"Pathway "inbound""#.to_string();
    assert_eq!(names("10.9.9.9"), want);
}

/// 129 nested IPv6 blocks (every prefix length) under one listener: the chain still fits, and
/// a fetch walks from the longest to the only block that sets the option.
#[test]
fn every_ipv6_prefix_length_nests() {
    let (schema, s) = config_schema::schema();
    let mut text = String::new();
    for p in 0..=128u32 {
        let addr = std::net::Ipv6Addr::from(u128::MAX.checked_shl(128 - p).unwrap_or(0));
        text.push_str(&format!("[ESMTP_Listener Peer \"{addr}/{p}\"]\n"));
        if p == 3 {
            text.push_str("Deny = true\n");
        }
    }
    let g = ConfigStore::from_str(schema, "v6.conf", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .current();
    let peer = PeerAddr::Ip(std::net::Ipv6Addr::from(u128::MAX).into());
    let chain = g.chain("ESMTP_Listener", None, Some(&peer));
    assert_eq!(
        g.chain_scopes(&chain).count(),
        129 + 1,
        "every block, then global"
    );
    let f = g.fetch_in(&chain, s.deny);
    assert_eq!(g.scope_name(f.scope), r#"ESMTP_Listener Peer "e000::/3""#);
}

#[test]
fn threadpool_and_module_scopes() {
    let (schema, s) = config_schema::schema();
    let text = "[ThreadPool \"smtp\"]\nConcurrency = 8\n[Maildir]\nDirectory = /srv/mail\n";
    let g = ConfigStore::from_str(schema, "t.conf", text)
        .unwrap()
        .current();
    let conc = g
        .schema()
        .slot("Concurrency", ScopeClass::ThreadPool)
        .unwrap();
    assert_eq!(g.threadpool("SMTP", conc).as_int(), 8);
    assert_eq!(g.threadpool("IO", conc).as_int(), 4);
    // The CPU pool's default is what the scheduler runs: one thread per CPU.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(g.threadpool("cpu", conc).as_int(), cpus as i64);
    assert_eq!(g.threadpool_fetch("CPU", conc).scope, ScopeId::DEFAULT);
    let store = ConfigStore::from_str(g.schema().clone(), "t.conf", "").unwrap();
    assert_eq!(
        netlistener::config::console::config_command(&store, "eval ThreadPool CPU Concurrency"),
        Ok(format!("Concurrency = {cpus} (from default)"))
    );
    assert_eq!(g.threadpools(), ["IO", "CPU", "smtp"]);
    assert_eq!(g.module("maildir", s.directory).as_str(), "/srv/mail");
}

#[test]
#[should_panic(expected = "Generation::fetch_in")]
fn chain_of_another_generation_panics() {
    let (schema, s) = config_schema::schema();
    let store = ConfigStore::from_str(schema, "t.conf", "Idle_Time = 5\n").unwrap();
    let old = store.current();
    let chain = old.chain("ESMTP_Listener", None, None);
    let new = store.set("", "Idle_Time", "6").unwrap();
    new.fetch_in(&chain, s.idle_time);
}
