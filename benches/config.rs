//! Option fetch cost on the accept path: `cargo bench --bench config`.
//!
//! One ESMTP_Listener with one Listen and 1, 100 or 10,000 Peer scopes, in three layouts:
//!
//! - `v4` and `v6`: four prefix lengths mixed (/20, /24, /28, /32 and /48, /56, /64, /128),
//!   blocks disjoint, so a lookup probes four prefix maps and a peer matches one block;
//! - `v4 nest` and `v6 nest`: every prefix length present (33 and 129) and the blocks nested,
//!   the worst case on both counts: a miss probes every length, and a peer matches a block of
//!   every length, all of which `fetch_in` walks for an option that no Peer sets.
//!
//! Prints ns per `fetch` and per `chain` for peers that match (hit) and that match nothing or
//! only the shortest blocks (miss), and per `fetch_in` for an option set in the longest
//! matching Peer (peer) and one set only at listener level (listener). Timing uses
//! `std::time::Instant` only; nothing here asserts on time.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
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

/// A Peer layout: the blocks, the addresses that match them, and one that misses.
struct Layout {
    name: &'static str,
    blocks: Vec<Cidr>,
    hits: Vec<IpAddr>,
    miss: IpAddr,
}

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(a.into())
}

fn v6(a: u128) -> IpAddr {
    IpAddr::V6(a.into())
}

fn mask(a: u128, bits: u8, prefix: u8) -> u128 {
    let host = u32::from(bits - prefix);
    a & u128::MAX.checked_shl(host).unwrap_or(0) & (u128::MAX >> (128 - u32::from(bits)))
}

fn cidr(ip: IpAddr, prefix: u8) -> Cidr {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let net = match ip {
        IpAddr::V4(a) => v4(mask(u32::from(a).into(), bits, prefix) as u32),
        IpAddr::V6(a) => v6(mask(a.into(), bits, prefix)),
    };
    Cidr::new(net, prefix).unwrap()
}

/// Disjoint blocks of four prefix lengths, each at its own base address.
fn disjoint(name: &'static str, peers: u32, ipv6: bool) -> Layout {
    let base = |i: u32| {
        if ipv6 {
            v6(0x2001_0db8_u128 << 96 | u128::from(i) << 80)
        } else {
            v4(0x0A00_0000 + (i << 12))
        }
    };
    let lengths: [u8; 4] = if ipv6 {
        [48, 56, 64, 128]
    } else {
        [20, 24, 28, 32]
    };
    let blocks = (0..peers)
        .map(|i| cidr(base(i), lengths[(i % 4) as usize]))
        .collect();
    // 1024 probe peers spread over the blocks, so the maps are not hit in one cache line.
    let hits = (0..1024u32).map(|k| base((k * 7919) % peers)).collect();
    let miss = if ipv6 {
        "2001:db9::1".parse().unwrap()
    } else {
        "192.0.2.1".parse().unwrap()
    };
    Layout {
        name,
        blocks,
        hits,
        miss,
    }
}

/// Families of nested blocks: each family is an address with a block of every prefix length
/// around it (shorter blocks shared between families), until there are `peers` blocks.
fn nested(name: &'static str, peers: u32, ipv6: bool) -> Layout {
    let bits: u8 = if ipv6 { 128 } else { 32 };
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut blocks, mut seen, mut hits) = (Vec::new(), HashSet::new(), Vec::new());
    while blocks.len() < peers as usize {
        // Top bit clear: the miss address below (top bit set) matches only the /0 block.
        let a = if ipv6 {
            v6((u128::from(next()) << 64 | u128::from(next())) >> 1)
        } else {
            v4((next() as u32) >> 1)
        };
        hits.push(a);
        for p in (0..=bits).rev() {
            let c = cidr(a, p);
            if blocks.len() < peers as usize && seen.insert(c) {
                blocks.push(c);
            }
        }
    }
    let hits = (0..1024).map(|k| hits[k % hits.len()]).collect();
    let miss = if ipv6 {
        v6(1 << 127 | 1)
    } else {
        v4(1 << 31 | 1)
    };
    Layout {
        name,
        blocks,
        hits,
        miss,
    }
}

fn config(layout: &Layout) -> String {
    let mut t = String::from(
        "[Pathway \"in\"]\nIdle_Time = 60\n[ESMTP_Listener]\nIdle_Time = 120\nPathway = in\n",
    );
    t.push_str("[ESMTP_Listener Listen \"127.0.0.1:25\"]\nListener_Sessions = 100\n");
    for (i, c) in layout.blocks.iter().enumerate() {
        let _ = writeln!(t, "[ESMTP_Listener Peer \"{c}\"]\nListener_Sessions = {i}");
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

fn run(layout: &Layout, (schema, idle, cap): &(Arc<Schema>, Slot, Slot), n: u32) {
    let listen: ListenAddr = "127.0.0.1:25".parse().unwrap();
    let text = config(layout);
    let t0 = Instant::now();
    let store = ConfigStore::from_str(schema.clone(), "bench.conf", &text).unwrap();
    let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let g = store.current();
    let hits: Vec<PeerAddr> = layout.hits.iter().map(|&a| PeerAddr::Ip(a)).collect();
    let miss = PeerAddr::Ip(layout.miss);
    let (idle, cap) = (*idle, *cap);
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
        "{:<8} {:>6} {load_ms:>8.1} {fetch_hit:>10.1} {fetch_miss:>11.1} {chain:>10.1} {in_peer:>15.1} {in_listener:>19.1}",
        layout.name,
        layout.blocks.len()
    );
}

fn main() {
    let schema = schema();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, unoptimised,
    // as a smoke test of the same lookups at small sizes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("smoke run (unoptimised, small sizes; `cargo bench --bench config` measures)");
        run(&disjoint("v4", 100, false), &schema, 10_000);
        run(&disjoint("v6", 100, true), &schema, 10_000);
        run(&nested("v4 nest", 1_000, false), &schema, 1_000);
        return;
    }
    println!("layout    peers  load_ms  fetch_hit  fetch_miss  chain_hit  fetch_in(peer)  fetch_in(listener)  [ns/op]");
    for peers in [1u32, 100, 10_000] {
        run(&disjoint("v4", peers, false), &schema, 1_000_000);
    }
    for peers in [1u32, 100, 10_000] {
        run(&disjoint("v6", peers, true), &schema, 1_000_000);
    }
    // Walking 33 or 129 matching blocks per fetch is slow by design: fewer iterations.
    run(&nested("v4 nest", 10_000, false), &schema, 200_000);
    run(&nested("v6 nest", 10_000, true), &schema, 100_000);
}
