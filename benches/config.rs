//! Option fetch cost on the accept path: `cargo bench --bench config`.
//!
//! One ESMTP_Listener with one Listen and 1, 100 or 10,000 Peer scopes (prefix lengths /20,
//! /24, /28 and /32 mixed, so a lookup probes four prefix maps). Prints ns per `fetch`,
//! per `chain` and per `fetch_in`, for peers that match a Peer scope and peers that match none.
//! Timing uses `std::time::Instant` only; nothing here asserts on time.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use netlistener::config::*;

fn schema() -> (Arc<Schema>, Slot, Slot) {
    let mut s = Schema::new();
    s.register_scope_kind("ESMTP_Listener", ScopeKind::Listener)
        .unwrap();
    let all = Scopes::GLOBAL | Scopes::LISTENER_ALL | Scopes::PATHWAY;
    let idle = s
        .register_option(OptionDef::new(
            "Idle_Time",
            OptionType::Duration,
            "300",
            all,
            "idle",
        ))
        .unwrap();
    let cap = OptionDef::new(
        "Listener_Sessions",
        OptionType::Int {
            min: 0,
            max: 1 << 20,
        },
        "0",
        all,
        "cap",
    );
    let cap = s.register_option(cap).unwrap();
    (Arc::new(s), idle, cap)
}

fn base(i: u32) -> u32 {
    0x0A00_0000 + (i << 12)
}

fn config(peers: u32) -> String {
    let mut t = String::from(
        "[Pathway \"in\"]\nIdle_Time = 60\n[ESMTP_Listener]\nIdle_Time = 120\nPathway = in\n",
    );
    t.push_str("[ESMTP_Listener Listen \"127.0.0.1:25\"]\nListener_Sessions = 100\n");
    for i in 0..peers {
        let prefix = [20, 24, 28, 32][(i % 4) as usize];
        let net = Ipv4Addr::from(base(i));
        let _ = writeln!(
            t,
            "[ESMTP_Listener Peer \"{net}/{prefix}\"]\nListener_Sessions = {i}"
        );
    }
    t
}

fn per_op(iters: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn main() {
    let (schema, idle, cap) = schema();
    let listen: ListenAddr = "127.0.0.1:25".parse().unwrap();
    println!("peers   load_ms  fetch_hit  fetch_miss  chain_hit  fetch_in(peer)  fetch_in(listener)  [ns/op]");
    for peers in [1u32, 100, 10_000] {
        let text = config(peers);
        let t0 = Instant::now();
        let store = ConfigStore::from_str(schema.clone(), "bench.conf", &text).unwrap();
        let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let g = store.current();
        // 1024 probe peers spread over the rules, so the maps are not hit in one cache line.
        let hits: Vec<PeerAddr> = (0..1024u32)
            .map(|k| PeerAddr::Ip(IpAddr::V4(Ipv4Addr::from(base((k * 7919) % peers)))))
            .collect();
        let miss = PeerAddr::Ip("192.0.2.1".parse().unwrap());
        let n = 1_000_000;
        let fetch_hit = per_op(n, |i| {
            let p = &hits[(i & 1023) as usize];
            black_box(g.fetch(idle, "ESMTP_Listener", Some(&listen), Some(p)));
        });
        let fetch_miss = per_op(n, |_| {
            black_box(g.fetch(idle, "ESMTP_Listener", Some(&listen), Some(&miss)));
        });
        let chain = per_op(n, |i| {
            let p = &hits[(i & 1023) as usize];
            black_box(g.chain("ESMTP_Listener", Some(&listen), Some(p)));
        });
        let c = g.chain("ESMTP_Listener", Some(&listen), Some(&hits[1]));
        let in_peer = per_op(n * 10, |_| {
            black_box(g.fetch_in(black_box(&c), cap));
        });
        let in_listener = per_op(n * 10, |_| {
            black_box(g.fetch_in(black_box(&c), idle));
        });
        println!(
            "{peers:>6} {load_ms:>8.1} {fetch_hit:>10.1} {fetch_miss:>11.1} {chain:>10.1} {in_peer:>15.1} {in_listener:>19.1}"
        );
    }
}
