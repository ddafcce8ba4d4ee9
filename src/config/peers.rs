//! C: the Peer scope matching inside `ec_config_option_fetch_generic()`
//!
//! Longest-prefix lookup of Peer scopes, without scanning the Peers.
//!
//! A [`PeerTable`] keeps, per address family, one hash map per prefix length present (longest
//! first), keyed by the masked network address. A lookup probes at most one map per distinct
//! prefix length (≤ 33 for IPv4, ≤ 129 for IPv6, in practice a handful), whatever the number of
//! Peers.
//!
//! Every Peer block matching an address takes part in the fallback, longest first: the blocks
//! containing an address are nested, so they are the longest match, then the longest block
//! containing that one ([`PeerTable::parent`]), and so on. The generation links each Peer scope
//! to its parent once, at build time; a session then needs only the longest match.
//!
//! Contract: an IPv4-mapped IPv6 peer is looked up as IPv4 (and so never matches an IPv6 block
//! such as `::/0`). A Unix-socket peer counts as loopback: it matches the blocks containing
//! `127.0.0.1` and those containing `::1`, ordered by specificity, an IPv4 prefix `/n` ranking
//! as `/96+n` (on a tie, the IPv4 block comes first).
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

    fn matches_v4(&self, a: Ipv4Addr) -> impl Iterator<Item = (u8, ScopeId)> + '_ {
        let a = u32::from(a);
        self.v4
            .iter()
            .filter_map(move |(p, m)| m.get(&mask_v4(a, *p)).map(|id| (*p, *id)))
    }

    fn matches_v6(&self, a: Ipv6Addr) -> impl Iterator<Item = (u8, ScopeId)> + '_ {
        let a = u128::from(a);
        self.v6
            .iter()
            .filter_map(move |(p, m)| m.get(&mask_v6(a, *p)).map(|id| (*p, *id)))
    }

    /// The most specific Peer scope matching `peer`.
    pub fn lookup(&self, peer: &PeerAddr) -> Option<ScopeId> {
        if self.is_empty() {
            return None;
        }
        match *peer {
            PeerAddr::Ip(ip) => match canonical_ip(ip) {
                IpAddr::V4(a) => self.matches_v4(a).next().map(|(_, id)| id),
                IpAddr::V6(a) => self.matches_v6(a).next().map(|(_, id)| id),
            },
            PeerAddr::Unix => self.matches(peer).first().copied(),
        }
    }

    /// Every Peer scope matching `peer`, most specific first. For an IP peer this is
    /// [`PeerTable::lookup`] followed by [`PeerTable::parent`] links; a Unix peer interleaves
    /// its IPv4 and IPv6 matches (see the module contract).
    pub fn matches(&self, peer: &PeerAddr) -> Vec<ScopeId> {
        let (v4, v6): (Vec<_>, Vec<_>) = match *peer {
            PeerAddr::Ip(ip) => match canonical_ip(ip) {
                IpAddr::V4(a) => (self.matches_v4(a).collect(), Vec::new()),
                IpAddr::V6(a) => (Vec::new(), self.matches_v6(a).collect()),
            },
            PeerAddr::Unix => (
                self.matches_v4(Ipv4Addr::LOCALHOST).collect(),
                self.matches_v6(Ipv6Addr::LOCALHOST).collect(),
            ),
        };
        let (mut a, mut b) = (v4.into_iter().peekable(), v6.into_iter().peekable());
        let mut out = Vec::new();
        loop {
            let take_v4 = match (a.peek(), b.peek()) {
                (Some((p4, _)), Some((p6, _))) => 96 + u16::from(*p4) >= u16::from(*p6),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return out,
            };
            let next = if take_v4 { a.next() } else { b.next() };
            out.extend(next.map(|(_, id)| id));
        }
    }

    /// The longest Peer scope strictly containing `cidr`: the next one in the fallback for a
    /// peer whose longest match is `cidr`.
    pub fn parent(&self, cidr: Cidr) -> Option<ScopeId> {
        let shorter = |p: u8| p < cidr.prefix();
        match cidr.addr() {
            IpAddr::V4(a) => self
                .v4
                .iter()
                .filter(|(p, _)| shorter(*p))
                .find_map(|(p, m)| m.get(&mask_v4(a.into(), *p)).copied()),
            IpAddr::V6(a) => self
                .v6
                .iter()
                .filter(|(p, _)| shorter(*p))
                .find_map(|(p, m)| m.get(&mask_v6(a.into(), *p)).copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive oracle: scan every rule, keep the matching ones, longest prefix first.
    fn oracle(rules: &[(Cidr, ScopeId)], ip: IpAddr) -> Vec<ScopeId> {
        let mut m: Vec<_> = rules.iter().filter(|(c, _)| c.contains(ip)).collect();
        m.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix()));
        m.into_iter().map(|(_, id)| *id).collect()
    }

    /// xorshift64: deterministic pseudo-random numbers.
    fn rng(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Checks lookup, matches and the parent walk against the oracle for each probe.
    fn check(table: &PeerTable, rules: &[(Cidr, ScopeId)], probes: &[IpAddr]) {
        let cidr_of = |id: ScopeId| rules.iter().find(|(_, i)| *i == id).unwrap().0;
        for &ip in probes {
            let want = oracle(rules, ip);
            let peer = PeerAddr::Ip(ip);
            assert_eq!(table.lookup(&peer), want.first().copied(), "{ip}");
            assert_eq!(table.matches(&peer), want, "{ip}");
            let mut walk: Vec<ScopeId> = table.lookup(&peer).into_iter().collect();
            while let Some(p) = table.parent(cidr_of(*walk.last().unwrap())) {
                walk.push(p);
                if walk.len() > 200 {
                    panic!("parent loop at {ip}");
                }
            }
            assert_eq!(walk, want, "{ip}: parent walk");
        }
    }

    fn insert(table: &mut PeerTable, rules: &mut Vec<(Cidr, ScopeId)>, cidr: Cidr) {
        if rules.iter().all(|(c, _)| *c != cidr) {
            let id = ScopeId(rules.len() as u32);
            table.insert(cidr, id);
            rules.push((cidr, id));
        }
    }

    #[test]
    fn ipv4_matches_naive_scan() {
        let mut next = rng(0x1234_5678);
        let (mut table, mut rules) = (PeerTable::default(), Vec::new());
        for _ in 0..300 {
            let prefix = (next() % 33) as u8;
            let addr = Ipv4Addr::from(mask_v4(next() as u32 & 0x0F0F_FFFF, prefix));
            insert(
                &mut table,
                &mut rules,
                Cidr::new(IpAddr::V4(addr), prefix).unwrap(),
            );
        }
        let probes: Vec<IpAddr> = (0..5000)
            .map(|_| IpAddr::V4(Ipv4Addr::from(next() as u32 & 0x0F0F_FFFF)))
            .collect();
        check(&table, &rules, &probes);
    }

    #[test]
    fn ipv6_matches_naive_scan() {
        // Addresses share their top 16 bits, and only a few bits vary after that, so that
        // long and short prefixes overlap often.
        let mut next = rng(0xDEAD_BEEF_0042);
        let mut addr = || {
            let x = u128::from(next()) & 0x0303_0000_0000_0003;
            let y = u128::from(next()) & 0x3;
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | x << 40 | y))
        };
        let (mut table, mut rules) = (PeerTable::default(), Vec::new());
        for _ in 0..400 {
            let IpAddr::V6(a) = addr() else {
                unreachable!()
            };
            let prefix = (u128::from(a).count_ones() * 7 % 129) as u8;
            let net = Ipv6Addr::from(mask_v6(a.into(), prefix));
            insert(
                &mut table,
                &mut rules,
                Cidr::new(IpAddr::V6(net), prefix).unwrap(),
            );
        }
        insert(&mut table, &mut rules, "::/0".parse().unwrap());
        let probes: Vec<IpAddr> = (0..5000).map(|_| addr()).collect();
        check(&table, &rules, &probes);
    }

    #[test]
    fn mapped_and_unix() {
        let mut t = PeerTable::default();
        t.insert("127.0.0.0/8".parse().unwrap(), ScopeId(1));
        t.insert("::1".parse().unwrap(), ScopeId(2));
        t.insert("10.0.0.0/8".parse().unwrap(), ScopeId(3));
        t.insert("::/0".parse().unwrap(), ScopeId(5));
        let mapped = PeerAddr::Ip("::ffff:10.9.9.9".parse().unwrap());
        assert_eq!(t.lookup(&mapped), Some(ScopeId(3)));
        assert_eq!(
            t.matches(&mapped),
            [ScopeId(3)],
            "a mapped peer is IPv4 only"
        );
        // ::1/128 beats 127.0.0.0/8 (= /104 in IPv6 terms); ::/0 comes last.
        assert_eq!(t.lookup(&PeerAddr::Unix), Some(ScopeId(2)));
        let unix = [ScopeId(2), ScopeId(1), ScopeId(5)];
        assert_eq!(t.matches(&PeerAddr::Unix), unix);
        t.insert("127.0.0.1".parse().unwrap(), ScopeId(4));
        // 127.0.0.1/32 (= /128) ties with ::1/128: IPv4 wins.
        assert_eq!(t.lookup(&PeerAddr::Unix), Some(ScopeId(4)));
        let unix = [ScopeId(4), ScopeId(2), ScopeId(1), ScopeId(5)];
        assert_eq!(t.matches(&PeerAddr::Unix), unix);
        assert_eq!(
            t.lookup(&PeerAddr::Ip("::2".parse().unwrap())),
            Some(ScopeId(5))
        );
        assert_eq!(t.parent("10.0.0.0/8".parse().unwrap()), None);
    }
}
