//! C: `ec_config_header` (a configuration transaction), `ec_config_option_fetch_generic()`
//!
//! A loaded configuration generation and the fallback resolver.
//!
//! A [`Generation`] is immutable once built and shared as `Arc<Generation>`; sessions keep the
//! one they started with. [`Generation::fetch`] resolves an option through the fallback chain
//! and returns the value together with the scope that supplied it:
//!
//! 1. `<Type>_Listener Listen "addr" Peer "cidr"`: every block containing the peer, longest
//!    prefix first, then shorter ones
//! 2. `<Type>_Listener Peer "cidr"`: likewise
//! 3. `<Type>_Listener Listen "addr"`
//! 4. `<Type>_Listener`
//! 5. the pathway named by the `Pathway` option (itself the first value found in 1–4):
//!    `Pathway_Group "g" Pathway "p"` → `Pathway "p"` → `Pathway_Group "g"`
//! 6. global
//! 7. the default: the listener kind's own ([`Schema::set_listener_default`]), else the
//!    option's
//!
//! A pathway `p` belongs to group `g` when a `[Pathway_Group "g" Pathway "p"]` section exists;
//! a pathway may be in at most one group (checked as the scope enters the draft, from a file
//! or from `config set`, and reported there).
//!
//! All the matching Peer blocks take part, not only the longest: a `Deny` written for
//! `10.0.0.0/8` still holds for a peer in a `10.2.0.0/16` block that sets only `Idle_Time`.
//! Building a generation links each Peer scope to the longest block containing it (and lays
//! out the interleaved IPv4/IPv6 order of a Unix peer once per Peer table), so a chain holds
//! at most eight heads whatever the number of prefix lengths, and walking it allocates nothing.
//!
//! Contract:
//! - [`Generation::chain`] resolves the scope chain once per session (one longest-prefix
//!   lookup per Peer level, the pathway); [`Generation::fetch_in`] then walks it, an O(1) slot
//!   lookup per scope, and allocates nothing. A [`Chain`] must be used with the generation that
//!   made it. [`Fetched::scope`] is the scope that supplied the value, so a session cap set in
//!   a Peer is counted against that Peer's block ([`Generation::scope_cidr`]).
//! - [`ScopeId`]s are stable within a generation only.
//!
//! Diagnostics: using a `Chain` with another generation, or a slot from another schema, panics
//! naming the function (contract violations). Building a generation returns every error at once.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::error::{ConfigError, ConfigErrors};
use super::peers::{IntHasher, PeerTable};
use super::schema::{RefKind, Schema, Slot};
use super::scope::ScopePath;
use super::types::{Cidr, ListenAddr, PeerAddr, Value};

/// A scope of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScopeId(pub(crate) u32);

impl ScopeId {
    /// The global scope (always present).
    pub const GLOBAL: ScopeId = ScopeId(0);
    /// Not a scope: the value is the default (the listener kind's own, or the option's).
    pub const DEFAULT: ScopeId = ScopeId(u32::MAX);
}

/// A value and the scope that supplied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched<'a> {
    /// The value.
    pub value: &'a Value,
    /// Where it came from ([`ScopeId::DEFAULT`] for the default).
    pub scope: ScopeId,
}

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub file: Arc<str>,
    pub line: usize,
}

impl Origin {
    /// No file and no line: a value that was never written (a default kept on reload).
    pub fn none() -> Origin {
        Origin {
            file: Arc::from(""),
            line: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub slot: Slot,
    pub value: Value,
    pub origin: Origin,
}

/// Scopes and their values before indexing: what loading and `set`/`unset` produce.
///
/// Every scope enters through [`Draft::scope`], which keeps the one invariant a draft checks
/// itself: a pathway is in at most one group.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    scopes: Vec<(ScopePath, Vec<Entry>)>,
    keys: HashMap<ScopePath, usize>,
    /// Pathway name (lower case) → its `Pathway_Group "g" Pathway "p"` scope.
    groups: HashMap<String, usize>,
}

impl Draft {
    pub fn new() -> Draft {
        let mut d = Draft {
            scopes: Vec::new(),
            keys: HashMap::new(),
            groups: HashMap::new(),
        };
        d.scope(&ScopePath::Global).expect("the global scope");
        d
    }

    /// The index of a scope, created (empty) if absent. `Err(reason)` for a
    /// `Pathway_Group "g" Pathway "p"` scope when `p` is already in another group: the caller
    /// reports it where the scope was written (a file's line, `<console>`).
    pub fn scope(&mut self, path: &ScopePath) -> Result<usize, String> {
        let key = path.key();
        if let Some(&i) = self.keys.get(&key) {
            return Ok(i);
        }
        if let ScopePath::GroupPathway { pathway, .. } = &key {
            if let Some(&other) = self.groups.get(pathway) {
                let other = &self.scopes[other].0;
                return Err(format!(
                    "the pathway is already in {other}; a pathway has one group"
                ));
            }
            self.groups.insert(pathway.clone(), self.scopes.len());
        }
        self.scopes.push((path.clone(), Vec::new()));
        self.keys.insert(key, self.scopes.len() - 1);
        Ok(self.scopes.len() - 1)
    }

    pub fn find(&self, path: &ScopePath) -> Option<usize> {
        self.keys.get(&path.key()).copied()
    }

    /// Sets a value, returning the one it replaces.
    pub fn set(&mut self, scope: usize, entry: Entry) -> Option<Entry> {
        let entries = &mut self.scopes[scope].1;
        match entries.iter_mut().find(|e| e.slot == entry.slot) {
            Some(e) => Some(std::mem::replace(e, entry)),
            None => {
                entries.push(entry);
                None
            }
        }
    }

    pub fn unset(&mut self, scope: usize, slot: Slot) -> Option<Entry> {
        let entries = &mut self.scopes[scope].1;
        let i = entries.iter().position(|e| e.slot == slot)?;
        Some(entries.remove(i))
    }

    pub fn from_generation(g: &Generation) -> Draft {
        let mut d = Draft::new();
        for s in &g.scopes {
            // A generation was built from a draft: its scopes passed `scope` once already.
            let i = d
                .scope(&s.path)
                .expect("Draft::from_generation: a checked scope");
            d.scopes[i].1 = s.entries.clone();
        }
        d
    }
}

#[derive(Debug)]
struct ScopeData {
    path: ScopePath,
    entries: Vec<Entry>,
    /// slot index → position in `entries` (`u16::MAX`: unset); as long as the largest slot set.
    index: Box<[u16]>,
    /// For scopes that set `Pathway`: the pathway scopes it resolves to, most specific first.
    pathway: Option<Vec<ScopeId>>,
    /// For a Peer scope: the longest block of its table containing it (`NONE`: none, or not a
    /// Peer scope). Kept here rather than in a side table: `fetch_in` reads this struct anyway.
    next: u32,
}

impl ScopeData {
    #[inline]
    fn get(&self, slot: Slot) -> Option<&Value> {
        match self.index.get(slot.index()) {
            Some(&i) if i != u16::MAX => Some(&self.entries[usize::from(i)].value),
            _ => None,
        }
    }
}

/// A node of the Unix-peer fallback lists: a scope, and the node to try after it.
///
/// Chain nodes are `u32`s: a node without [`UNIX_NODE`] is the scope of that index, followed
/// by its `ScopeData::next` (its parent Peer block, for a Peer scope); a node with it is
/// `Generation::unix_links[node & !UNIX_NODE]`. [`NONE`] ends a list.
#[derive(Debug, Clone, Copy)]
struct Link {
    scope: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;
const UNIX_NODE: u32 = 1 << 31;

/// The Peer scopes of one listener, or of one Listen.
#[derive(Debug)]
struct PeerLevel {
    table: PeerTable,
    /// The first node of the Unix-peer order (`NONE`: no block contains the loopback).
    unix: u32,
}

impl PeerLevel {
    fn new() -> PeerLevel {
        PeerLevel {
            table: PeerTable::default(),
            unix: NONE,
        }
    }

    /// The node of the longest block containing `peer`; the links lead to the shorter ones.
    fn head(&self, peer: &PeerAddr) -> Option<u32> {
        match peer {
            PeerAddr::Unix => (self.unix != NONE).then_some(self.unix),
            ip => self.table.lookup(ip).map(|id| id.0),
        }
    }

    /// Appends the Unix-peer order as nodes of its own: it interleaves IPv4 and IPv6 blocks,
    /// which the per-scope parent links (one family each) cannot express.
    fn link_unix(&mut self, links: &mut Vec<Link>) {
        let mut next = NONE;
        for id in self.table.matches(&PeerAddr::Unix).iter().rev() {
            links.push(Link { scope: id.0, next });
            next = (links.len() - 1) as u32 | UNIX_NODE;
        }
        self.unix = next;
    }
}

#[derive(Debug)]
struct ListenData {
    addr: ListenAddr,
    scope: Option<ScopeId>,
    peers: PeerLevel,
}

#[derive(Debug)]
struct ListenerData {
    kind: String,
    scope: Option<ScopeId>,
    peers: PeerLevel,
    listens: Vec<ListenData>,
    /// Keyed with the cheap hasher: Listen addresses are chosen by the administrator.
    listen_index: HashMap<ListenAddr, usize, BuildHasherDefault<IntHasher>>,
}

/// The resolved scope chain of one session: owned, `Copy`, no allocation.
///
/// At most eight heads (two Peer levels, Listen, listener, three pathway scopes, global); a
/// Peer head leads on to every shorter matching block through the generation's links, so the
/// size does not depend on how many prefix lengths are configured (up to 129 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    generation: u64,
    /// The listener kind's position in the schema (its own defaults), `NONE` for none.
    kind: u32,
    len: u8,
    /// How many of the heads, at the front, are Peer nodes to walk; the rest are scope ids.
    peers: u8,
    heads: [u32; 8],
}

impl Chain {
    fn new(generation: u64) -> Chain {
        Chain {
            generation,
            kind: NONE,
            len: 0,
            peers: 0,
            heads: [NONE; 8],
        }
    }

    /// A Peer level's first node; Peer levels come first in every chain.
    fn push_peer(&mut self, node: Option<u32>) {
        if let Some(n) = node {
            debug_assert_eq!(self.len, self.peers, "Chain: a Peer head after a scope");
            self.heads[usize::from(self.len)] = n;
            self.len += 1;
            self.peers += 1;
        }
    }

    fn push(&mut self, id: Option<ScopeId>) {
        if let Some(id) = id {
            self.heads[usize::from(self.len)] = id.0;
            self.len += 1;
        }
    }

    fn heads(&self) -> &[u32] {
        &self.heads[..usize::from(self.len)]
    }

    /// The Peer heads (to walk through their links), then the plain scope ids.
    fn split(&self) -> (&[u32], &[u32]) {
        self.heads().split_at(usize::from(self.peers))
    }
}

/// One immutable, numbered configuration.
///
/// C: `ec_config_header`, obtained with `ec_config_fetch_globalconf()` and released on `Drop`
/// of the last `Arc`.
#[derive(Debug)]
pub struct Generation {
    number: u64,
    schema: Arc<Schema>,
    scopes: Vec<ScopeData>,
    by_key: HashMap<ScopePath, ScopeId>,
    listeners: Vec<ListenerData>,
    unix_links: Vec<Link>,
    threadpools: Vec<(String, ScopeId)>,
    warnings: Vec<ConfigError>,
}

fn scope_err(path: &ScopePath, option: &str, origin: &Origin, reason: String) -> ConfigError {
    ConfigError {
        path: origin.file.to_string(),
        line: origin.line,
        section: match path {
            ScopePath::Global => String::new(),
            p => p.to_string(),
        },
        option: option.to_string(),
        reason,
    }
}

impl Generation {
    /// Indexes a draft; checks references (Pathway, thread pools) and returns every error.
    pub(crate) fn build(
        schema: Arc<Schema>,
        draft: Draft,
        number: u64,
        mut warnings: Vec<ConfigError>,
    ) -> Result<Generation, ConfigErrors> {
        let mut g = Generation {
            number,
            schema,
            scopes: Vec::with_capacity(draft.scopes.len()),
            by_key: HashMap::with_capacity(draft.scopes.len()),
            listeners: Vec::new(),
            unix_links: Vec::new(),
            threadpools: Vec::new(),
            warnings: Vec::new(),
        };
        for (path, entries) in draft.scopes {
            let id = ScopeId(g.scopes.len() as u32);
            g.by_key.insert(path.key(), id);
            g.scopes.push(ScopeData {
                path,
                entries,
                index: Box::new([]),
                pathway: None,
                next: NONE,
            });
            g.index_scope(id);
        }
        let mut errors = Vec::new();
        let members = g.pathway_members();
        g.check_references(&members, &mut errors, &mut warnings);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        for s in &mut g.scopes {
            let len = s
                .entries
                .iter()
                .map(|e| e.slot.index() + 1)
                .max()
                .unwrap_or(0);
            let mut index = vec![u16::MAX; len].into_boxed_slice();
            for (i, e) in s.entries.iter().enumerate() {
                index[e.slot.index()] = i as u16;
            }
            s.index = index;
        }
        g.link_peers();
        g.warnings = warnings;
        Ok(g)
    }

    /// Links every Peer scope to the longest block of its table that contains it, and lays
    /// out each table's Unix-peer order.
    fn link_peers(&mut self) {
        for i in 0..self.scopes.len() {
            let ScopePath::Listener {
                kind,
                listen,
                peer: Some(cidr),
            } = &self.scopes[i].path
            else {
                continue;
            };
            let level = self.peer_level(kind, listen.as_ref());
            let parent = level.and_then(|l| l.table.parent(*cidr));
            self.scopes[i].next = parent.map_or(NONE, |p| p.0);
        }
        let mut links = Vec::new();
        for l in &mut self.listeners {
            l.peers.link_unix(&mut links);
            for d in &mut l.listens {
                d.peers.link_unix(&mut links);
            }
        }
        self.unix_links = links;
    }

    /// A chain node's scope, and the node after it.
    #[inline(always)]
    fn step(&self, node: u32) -> (u32, u32) {
        if node & UNIX_NODE == 0 {
            (node, self.scopes[node as usize].next)
        } else {
            let l = self.unix_links[(node & !UNIX_NODE) as usize];
            (l.scope, l.next)
        }
    }

    fn peer_level(&self, kind: &str, listen: Option<&ListenAddr>) -> Option<&PeerLevel> {
        let l = self.listener(kind)?;
        match listen {
            None => Some(&l.peers),
            Some(a) => l.listen_index.get(a).map(|&i| &l.listens[i].peers),
        }
    }

    fn listener_mut(&mut self, kind: &str) -> &mut ListenerData {
        let i = match self.listeners.iter().position(|l| l.kind == kind) {
            Some(i) => i,
            None => {
                self.listeners.push(ListenerData {
                    kind: kind.to_string(),
                    scope: None,
                    peers: PeerLevel::new(),
                    listens: Vec::new(),
                    listen_index: HashMap::default(),
                });
                self.listeners.len() - 1
            }
        };
        &mut self.listeners[i]
    }

    fn index_scope(&mut self, id: ScopeId) {
        let path = self.scopes[id.0 as usize].path.clone();
        match path {
            ScopePath::Listener { kind, listen, peer } => {
                let l = self.listener_mut(&kind);
                let ld = listen.map(|addr| {
                    let next = l.listens.len();
                    let i = *l.listen_index.entry(addr.clone()).or_insert(next);
                    if i == next {
                        l.listens.push(ListenData {
                            addr,
                            scope: None,
                            peers: PeerLevel::new(),
                        });
                    }
                    &mut l.listens[i]
                });
                match (ld, peer) {
                    (Some(ld), Some(c)) => ld.peers.table.insert(c, id),
                    (Some(ld), None) => ld.scope = Some(id),
                    (None, Some(c)) => l.peers.table.insert(c, id),
                    (None, None) => l.scope = Some(id),
                }
            }
            ScopePath::ThreadPool(name) => self.threadpools.push((name, id)),
            _ => {}
        }
    }

    /// pathway (lower case) → its group-pathway scope and group scope (one group per
    /// pathway: [`Draft::scope`] refused a second one).
    fn pathway_members(&self) -> HashMap<String, (ScopeId, Option<ScopeId>)> {
        let mut members: HashMap<String, (ScopeId, Option<ScopeId>)> = HashMap::new();
        for (i, s) in self.scopes.iter().enumerate() {
            let ScopePath::GroupPathway { group, pathway } = &s.path else {
                continue;
            };
            let group_scope = self.lookup(&ScopePath::PathwayGroup(group.clone()));
            let old = members.insert(
                pathway.to_ascii_lowercase(),
                (ScopeId(i as u32), group_scope),
            );
            debug_assert!(old.is_none(), "Draft::scope let a pathway into two groups");
        }
        members
    }

    fn pathway_chain(
        &self,
        name: &str,
        members: &HashMap<String, (ScopeId, Option<ScopeId>)>,
    ) -> Option<Vec<ScopeId>> {
        let top = self.lookup(&ScopePath::Pathway(name.to_string()));
        let member = members.get(&name.to_ascii_lowercase());
        if top.is_none() && member.is_none() {
            return None;
        }
        let mut v = Vec::with_capacity(3);
        v.extend(member.map(|m| m.0));
        v.extend(top);
        v.extend(member.and_then(|m| m.1));
        Some(v)
    }

    fn check_references(
        &mut self,
        members: &HashMap<String, (ScopeId, Option<ScopeId>)>,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<ConfigError>,
    ) {
        let schema = Arc::clone(&self.schema);
        for i in 0..self.scopes.len() {
            for j in 0..self.scopes[i].entries.len() {
                let e = &self.scopes[i].entries[j];
                let def = schema.def(e.slot);
                let (path, origin) = (&self.scopes[i].path, &e.origin);
                match (def.refers_to, &e.value) {
                    (Some(RefKind::Pathway), Value::Str(name)) => {
                        let resolved = if name.is_empty() {
                            Some(Vec::new())
                        } else {
                            self.pathway_chain(name, members)
                        };
                        match resolved {
                            Some(chain) if e.slot == schema.pathway_slot() => {
                                self.scopes[i].pathway = Some(chain);
                            }
                            Some(_) => {}
                            None => {
                                let why = format!("names no pathway \"{name}\"");
                                errors.push(scope_err(path, def.name, origin, why));
                            }
                        }
                    }
                    (Some(RefKind::ThreadPool), Value::Str(name)) if !self.pool_exists(name) => {
                        let why = format!("names no ThreadPool \"{name}\"; using IO");
                        warnings.push(scope_err(path, def.name, origin, why));
                        self.scopes[i].entries[j].value = Value::Str("IO".to_string());
                    }
                    _ => {}
                }
            }
        }
    }

    fn pool_exists(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("IO")
            || name.eq_ignore_ascii_case("CPU")
            || self
                .threadpools
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn lookup(&self, path: &ScopePath) -> Option<ScopeId> {
        self.by_key.get(&path.key()).copied()
    }

    /// The generation number: one more for each successful load, reload, `set` or `unset`.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The schema this generation was validated against.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Warnings issued while building this generation (also logged).
    pub fn warnings(&self) -> &[ConfigError] {
        &self.warnings
    }

    /// The listener kinds that appear in sections, as registered, in file order.
    pub fn listener_kinds(&self) -> Vec<String> {
        self.listeners.iter().map(|l| l.kind.clone()).collect()
    }

    fn listener(&self, kind: &str) -> Option<&ListenerData> {
        self.listeners
            .iter()
            .find(|l| l.kind.eq_ignore_ascii_case(kind))
    }

    /// Every Listen instance of a listener kind, normalised, in file order.
    pub fn listens(&self, listener_kind: &str) -> Vec<ListenAddr> {
        self.listener(listener_kind)
            .map(|l| l.listens.iter().map(|d| d.addr.clone()).collect())
            .unwrap_or_default()
    }

    /// The thread pools to run: `IO` and `CPU` (always), then those configured, in file order.
    pub fn threadpools(&self) -> Vec<String> {
        let mut v = vec!["IO".to_string(), "CPU".to_string()];
        for (name, _) in &self.threadpools {
            if !v.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                v.push(name.clone());
            }
        }
        v
    }

    fn value_in(&self, id: ScopeId, slot: Slot) -> Option<&Value> {
        self.scopes.get(id.0 as usize)?.get(slot)
    }

    fn default_of(&self, slot: Slot) -> &Value {
        self.schema.default_value(slot)
    }

    /// The global value of an option, or its default.
    pub fn global(&self, slot: Slot) -> &Value {
        self.global_fetch(slot).value
    }

    /// [`Generation::global`], and the scope that supplied the value ([`ScopeId::GLOBAL`] or
    /// [`ScopeId::DEFAULT`]).
    pub fn global_fetch(&self, slot: Slot) -> Fetched<'_> {
        self.own_then_global(None, slot, self.default_of(slot))
    }

    /// Resolves an option for a listener kind, Listen instance and peer, and says which scope
    /// supplied the value.
    ///
    /// C: `ec_config_option_fetch_generic(txn, slot, …, "Listen", addr, "Peer", ip)`
    pub fn fetch(
        &self,
        slot: Slot,
        listener_kind: &str,
        listen: Option<&ListenAddr>,
        peer: Option<&PeerAddr>,
    ) -> Fetched<'_> {
        self.fetch_in(&self.chain(listener_kind, listen, peer), slot)
    }

    /// Resolves the scope chain once, for many fetches.
    pub fn chain(
        &self,
        listener_kind: &str,
        listen: Option<&ListenAddr>,
        peer: Option<&PeerAddr>,
    ) -> Chain {
        let mut c = Chain::new(self.number);
        c.kind = self.schema.kind_position(listener_kind);
        if let Some(l) = self.listener(listener_kind) {
            let ld = listen
                .and_then(|a| l.listen_index.get(a))
                .map(|&i| &l.listens[i]);
            if let Some(p) = peer {
                c.push_peer(ld.and_then(|d| d.peers.head(p)));
                c.push_peer(l.peers.head(p));
            }
            c.push(ld.and_then(|d| d.scope));
            c.push(l.scope);
            let pathway = self
                .chain_scopes(&c)
                .find_map(|id| self.scopes[id.0 as usize].pathway.as_ref());
            for id in pathway.into_iter().flatten() {
                c.push(Some(*id));
            }
        }
        c.push(Some(ScopeId::GLOBAL));
        c
    }

    /// The chain of a pathway by name (group pathway → pathway → group → global), for
    /// `config eval`; an unknown pathway gives just global.
    pub fn pathway_chain_of(&self, name: &str) -> Chain {
        let mut c = Chain::new(self.number);
        let member = self
            .scopes
            .iter()
            .enumerate()
            .find_map(|(i, s)| match &s.path {
                ScopePath::GroupPathway { group, pathway }
                    if pathway.eq_ignore_ascii_case(name) =>
                {
                    Some((ScopeId(i as u32), group.clone()))
                }
                _ => None,
            });
        c.push(member.as_ref().map(|m| m.0));
        c.push(self.lookup(&ScopePath::Pathway(name.to_string())));
        c.push(member.and_then(|m| self.lookup(&ScopePath::PathwayGroup(m.1))));
        c.push(Some(ScopeId::GLOBAL));
        c
    }

    #[inline(always)]
    fn check_chain(&self, chain: &Chain, func: &str) {
        #[cold]
        #[inline(never)]
        fn wrong(func: &str, chain: u64, this: u64) -> ! {
            panic!("Generation::{func}: chain of generation {chain} used with generation {this}")
        }
        if chain.generation != self.number {
            wrong(func, chain.generation, self.number);
        }
    }

    /// Fetches along a chain made by [`Generation::chain`] of this generation; allocation-free.
    // Always inlined, as it was when it was one loop: called per option per session, a call
    // costs as much as the walk (the config bench halves with it).
    #[inline(always)]
    pub fn fetch_in(&self, chain: &Chain, slot: Slot) -> Fetched<'_> {
        self.check_chain(chain, "fetch_in");
        let (peers, scopes) = chain.split();
        for &head in peers {
            let mut node = head;
            while node != NONE {
                let (id, next) = self.step(node);
                if let Some(value) = self.scopes[id as usize].get(slot) {
                    let scope = ScopeId(id);
                    return Fetched { value, scope };
                }
                node = next;
            }
        }
        // Scopes other than Peers have no links: the loop of a chain without Peers.
        for &id in scopes {
            if let Some(value) = self.scopes[id as usize].get(slot) {
                let scope = ScopeId(id);
                return Fetched { value, scope };
            }
        }
        Fetched {
            value: self.schema.kind_default(chain.kind, slot),
            scope: ScopeId::DEFAULT,
        }
    }

    /// The scopes of a chain in fallback order, every matching Peer block included (the
    /// default is implied after the last), as [`Generation::fetch_in`] tries them.
    pub fn chain_scopes<'g>(&'g self, chain: &'g Chain) -> impl Iterator<Item = ScopeId> + 'g {
        self.check_chain(chain, "chain_scopes");
        chain.heads().iter().flat_map(move |&head| {
            let next = move |&n: &u32| Some(self.step(n).1).filter(|&m| m != NONE);
            std::iter::successors(Some(head), next).map(move |n| ScopeId(self.step(n).0))
        })
    }

    /// The scope's name as a header path (`global`, `default`, `ESMTP_Listener Peer "…"`).
    pub fn scope_name(&self, scope: ScopeId) -> String {
        match self.scopes.get(scope.0 as usize) {
            Some(s) => s.path.to_string(),
            None => "default".to_string(),
        }
    }

    /// The scope's path; `None` for [`ScopeId::DEFAULT`].
    pub fn scope_path(&self, scope: ScopeId) -> Option<&ScopePath> {
        self.scopes.get(scope.0 as usize).map(|s| &s.path)
    }

    /// The Peer block of a Peer scope (sessions are counted per block, keyed by `ScopeId`).
    pub fn scope_cidr(&self, scope: ScopeId) -> Option<Cidr> {
        match self.scope_path(scope)? {
            ScopePath::Listener { peer, .. } => *peer,
            _ => None,
        }
    }

    /// A `ThreadPool` option: the pool's scope → global → the pool's default
    /// ([`Schema::pool_default`]: the `CPU` pool's `Concurrency` is the number of CPUs).
    pub fn threadpool(&self, name: &str, slot: Slot) -> &Value {
        self.threadpool_fetch(name, slot).value
    }

    /// [`Generation::threadpool`], and the scope that supplied the value.
    pub fn threadpool_fetch(&self, name: &str, slot: Slot) -> Fetched<'_> {
        let id = self
            .threadpools
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, id)| *id);
        self.own_then_global(id, slot, self.schema.pool_default(name, slot))
    }

    /// A module option: the module scope → global → default.
    pub fn module(&self, module_scope: &str, slot: Slot) -> &Value {
        self.module_fetch(module_scope, slot).value
    }

    /// [`Generation::module`], and the scope that supplied the value.
    pub fn module_fetch(&self, module_scope: &str, slot: Slot) -> Fetched<'_> {
        let id = self.lookup(&ScopePath::Module(module_scope.to_string()));
        self.own_then_global(id, slot, self.default_of(slot))
    }

    /// The value in scope `own` (if any), else the global one, else `default`: the fallback of
    /// every scope outside listeners and pathways (global, modules, pools, groups).
    pub(crate) fn own_then_global<'g>(
        &'g self,
        own: Option<ScopeId>,
        slot: Slot,
        default: &'g Value,
    ) -> Fetched<'g> {
        let found = own.into_iter().chain([ScopeId::GLOBAL]).find_map(|id| {
            Some(Fetched {
                value: self.value_in(id, slot)?,
                scope: id,
            })
        });
        found.unwrap_or(Fetched {
            value: default,
            scope: ScopeId::DEFAULT,
        })
    }

    /// Where the value of `slot` in `scope` was written.
    pub(crate) fn origin(&self, scope: ScopeId, slot: Slot) -> Option<&Origin> {
        let s = self.scopes.get(scope.0 as usize)?;
        s.entries.iter().find(|e| e.slot == slot).map(|e| &e.origin)
    }

    /// The id of the scope named by `path`, if it exists in this generation.
    pub fn scope_id(&self, path: &ScopePath) -> Option<ScopeId> {
        self.lookup(path)
    }

    /// The value set in exactly this scope, if any (no fallback).
    pub fn get(&self, path: &ScopePath, slot: Slot) -> Option<&Value> {
        self.value_in(self.lookup(path)?, slot)
    }

    /// Every scope in order (global first) with its values in the order they were set.
    pub fn scopes(&self) -> impl Iterator<Item = (ScopeId, &ScopePath, Vec<(Slot, &Value)>)> {
        self.scopes.iter().enumerate().map(|(i, s)| {
            let values = s.entries.iter().map(|e| (e.slot, &e.value)).collect();
            (ScopeId(i as u32), &s.path, values)
        })
    }

    /// True when both generations hold the same scopes and values (numbers and order aside).
    pub fn same_config(&self, other: &Generation) -> bool {
        if self.scopes.len() != other.scopes.len() {
            return false;
        }
        self.scopes.iter().all(|s| {
            let Some(id) = other.lookup(&s.path) else {
                return false;
            };
            let o = &other.scopes[id.0 as usize];
            o.entries.len() == s.entries.len()
                && s.entries.iter().all(|e| o.get(e.slot) == Some(&e.value))
        })
    }
}
