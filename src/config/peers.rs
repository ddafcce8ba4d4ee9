//! C: the Peer scope matching inside `ec_config_option_fetch_generic()`
//!
//! Longest-prefix lookup of Peer scopes, without scanning the Peers.
//!
//! A [`PeerTable`] keeps, per address family, one hash map per prefix length present (longest
//! first), keyed by the masked network address. A lookup probes at most one map per distinct
//! prefix length (≤ 33 for IPv4, ≤ 129 for IPv6, in practice a handful), whatever the number of
//! Peers.
//!
//! Contract: an IPv4-mapped IPv6 peer is looked up as IPv4. A Unix-socket peer counts as
//! loopback: it is looked up as `127.0.0.1` and as `::1`, and the more specific match wins,
//! comparing an IPv4 prefix `/n` as `/96+n` (on a tie, the IPv4 rule wins).
//!
//! Diagnostics: none; an absent match is `None`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::generation::ScopeId;
use super::types::{canonical_ip, mask_v4, mask_v6, Cidr, PeerAddr};

/// A multiply-xorshift hasher for the integer keys of the prefix maps: the keys are network
/// addresses chosen by the administrator, not by the peer, so SipHash's flood resistance buys
/// nothing here while costing most of the lookup time.
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IntMap<K> = HashMap<K, ScopeId, BuildHasherDefault<IntHasher>>;

/// Peer scopes under one listener (or one Listen), for longest-prefix lookup.
#[derive(Debug, Default, Clone)]
pub(crate) struct PeerTable {
    v4: Vec<(u8, IntMap<u32>)>,
    v6: Vec<(u8, IntMap<u128>)>,
}

fn slot_for<K>(levels: &mut Vec<(u8, IntMap<K>)>, prefix: u8) -> &mut IntMap<K> {
    let pos = match levels.iter().position(|(p, _)| *p <= prefix) {
        Some(i) if levels[i].0 == prefix => i,
        Some(i) => {
            levels.insert(i, (prefix, IntMap::default()));
            i
        }
        None => {
            levels.push((prefix, IntMap::default()));
            levels.len() - 1
        }
    };
    &mut levels[pos].1
}

impl PeerTable {
    /// Adds a Peer scope; the CIDR is already normalised (host bits clear).
    pub fn insert(&mut self, cidr: Cidr, id: ScopeId) {
        match cidr.addr() {
            IpAddr::V4(a) => {
                slot_for(&mut self.v4, cidr.prefix()).insert(a.into(), id);
            }
            IpAddr::V6(a) => {
                slot_for(&mut self.v6, cidr.prefix()).insert(a.into(), id);
            }
        }
    }

    /// True when no Peer scope is present.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn lookup_v4(&self, a: Ipv4Addr) -> Option<(u8, ScopeId)> {
        let a = u32::from(a);
        self.v4
            .iter()
            .find_map(|(p, m)| m.get(&mask_v4(a, *p)).map(|id| (*p, *id)))
    }

    fn lookup_v6(&self, a: Ipv6Addr) -> Option<(u8, ScopeId)> {
        let a = u128::from(a);
        self.v6
            .iter()
            .find_map(|(p, m)| m.get(&mask_v6(a, *p)).map(|id| (*p, *id)))
    }

    /// The most specific Peer scope matching `peer`.
    pub fn lookup(&self, peer: &PeerAddr) -> Option<ScopeId> {
        if self.is_empty() {
            return None;
        }
        match *peer {
            PeerAddr::Ip(ip) => match canonical_ip(ip) {
                IpAddr::V4(a) => self.lookup_v4(a).map(|(_, id)| id),
                IpAddr::V6(a) => self.lookup_v6(a).map(|(_, id)| id),
            },
            PeerAddr::Unix => {
                let v4 = self.lookup_v4(Ipv4Addr::LOCALHOST);
                let v6 = self.lookup_v6(Ipv6Addr::LOCALHOST);
                match (v4, v6) {
                    (Some((p4, a)), Some((p6, b))) => {
                        Some(if 96 + u16::from(p4) >= u16::from(p6) {
                            a
                        } else {
                            b
                        })
                    }
                    (a, b) => a.or(b).map(|(_, id)| id),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive oracle: scan every rule, keep the longest matching prefix.
    fn oracle(rules: &[(Cidr, ScopeId)], ip: IpAddr) -> Option<ScopeId> {
        rules
            .iter()
            .filter(|(c, _)| c.contains(ip))
            .max_by_key(|(c, _)| c.prefix())
            .map(|(_, id)| *id)
    }

    #[test]
    fn matches_naive_scan() {
        // A deterministic pseudo-random set of overlapping rules and probes.
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut table = PeerTable::default();
        let mut rules = Vec::new();
        for i in 0..300 {
            let prefix = (next() % 33) as u8;
            let addr = Ipv4Addr::from(mask_v4(next() & 0x0F0F_FFFF, prefix));
            let cidr = Cidr::new(IpAddr::V4(addr), prefix).unwrap();
            if rules.iter().all(|(c, _)| *c != cidr) {
                table.insert(cidr, ScopeId(i));
                rules.push((cidr, ScopeId(i)));
            }
        }
        for _ in 0..5000 {
            let ip = IpAddr::V4(Ipv4Addr::from(next() & 0x0F0F_FFFF));
            assert_eq!(table.lookup(&PeerAddr::Ip(ip)), oracle(&rules, ip), "{ip}");
        }
    }

    #[test]
    fn mapped_and_unix() {
        let mut t = PeerTable::default();
        t.insert("127.0.0.0/8".parse().unwrap(), ScopeId(1));
        t.insert("::1".parse().unwrap(), ScopeId(2));
        t.insert("10.0.0.0/8".parse().unwrap(), ScopeId(3));
        let mapped = PeerAddr::Ip("::ffff:10.9.9.9".parse().unwrap());
        assert_eq!(t.lookup(&mapped), Some(ScopeId(3)));
        // ::1/128 beats 127.0.0.0/8 (= /104 in IPv6 terms).
        assert_eq!(t.lookup(&PeerAddr::Unix), Some(ScopeId(2)));
        t.insert("127.0.0.1".parse().unwrap(), ScopeId(4));
        // 127.0.0.1/32 (= /128) ties with ::1/128: IPv4 wins.
        assert_eq!(t.lookup(&PeerAddr::Unix), Some(ScopeId(4)));
        assert_eq!(t.lookup(&PeerAddr::Ip("::2".parse().unwrap())), None);
    }
}
