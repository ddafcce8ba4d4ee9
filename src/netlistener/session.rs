//! Sessions: the `accept_construct`, session caps, counters and the live-session registry.
//!
//! C: `accept_construct` (`remote_addr`, `local_addr`, `inst`, `accept_construct_closure`)
//! and the netlistener's per-instance statistics.
//!
//! # Summary
//! Every accepted connection becomes an [`Event`](crate::event::Event) whose closure is an
//! [`AcceptConstruct`]: addresses, the listen instance, a unique connection id, the
//! configuration generation the session started with, its resolved scope chain (so option
//! fetches are a short walk, no Peer lookup), and `accept_construct_closure` for the module.
//!
//! # Contract
//! Modules store their per-session state in `accept_construct_closure`, never by replacing
//! the event's closure. The session's place in the caps and the registry is released when the
//! `AcceptConstruct` drops — however the session ends (return 0, timeout, panic, a floated
//! session lost on a pool thread).
//!
//! # Diagnostics
//! None: counters saturate rather than fail.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Chain, Cidr, ConfigStore, Generation, ListenAddr, PeerAddr, Slot, Value};
use crate::event::EventId;

use super::options::CommonSlots;
use super::NetlistenerDef;

/// Why a connection was refused by the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Deny` in the most specific Peer.
    Deny,
    /// `Listener_Sessions` reached.
    ListenerSessions,
    /// `Service_Sessions` reached.
    ServiceSessions,
    /// The module's acceptor returned 0.
    Acceptor,
}

/// Counters of one Listen instance (or one listener type), updated from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections that passed every check (the acceptor's too) and became sessions.
    /// `accepted + refused` is the number of connections accepted from the kernel.
    pub accepted: AtomicU64,
    /// Refused by `Deny`.
    pub refused_deny: AtomicU64,
    /// Refused by `Listener_Sessions`.
    pub refused_listener_cap: AtomicU64,
    /// Refused by `Service_Sessions`.
    pub refused_service_cap: AtomicU64,
    /// Refused by the module's acceptor.
    pub refused_acceptor: AtomicU64,
    /// Sessions alive now.
    pub active: AtomicU64,
    /// Highest `active` seen.
    pub peak: AtomicU64,
    /// `accept(2)` failures other than the harmless ones.
    pub failed_accepts: AtomicU64,
    /// Sessions ended by their idle timeout (reported by modules).
    pub timeouts: AtomicU64,
    /// Times an accept thread found the hand-off queue full (`Accept_Queue_Backlog`) and
    /// waited, leaving new connections in the kernel's backlog.
    pub queue_waits: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::accepted`].
    pub accepted: u64,
    /// All refusals.
    pub refused: u64,
    /// See [`Stats::refused_deny`].
    pub refused_deny: u64,
    /// See [`Stats::refused_listener_cap`].
    pub refused_listener_cap: u64,
    /// See [`Stats::refused_service_cap`].
    pub refused_service_cap: u64,
    /// See [`Stats::refused_acceptor`].
    pub refused_acceptor: u64,
    /// See [`Stats::active`].
    pub active: u64,
    /// See [`Stats::peak`].
    pub peak: u64,
    /// See [`Stats::failed_accepts`].
    pub failed_accepts: u64,
    /// See [`Stats::timeouts`].
    pub timeouts: u64,
    /// See [`Stats::queue_waits`].
    pub queue_waits: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (d, lc, sc, ac) = (
            l(&self.refused_deny),
            l(&self.refused_listener_cap),
            l(&self.refused_service_cap),
            l(&self.refused_acceptor),
        );
        StatsSnapshot {
            accepted: l(&self.accepted),
            refused: d + lc + sc + ac,
            refused_deny: d,
            refused_listener_cap: lc,
            refused_service_cap: sc,
            refused_acceptor: ac,
            active: l(&self.active),
            peak: l(&self.peak),
            failed_accepts: l(&self.failed_accepts),
            timeouts: l(&self.timeouts),
            queue_waits: l(&self.queue_waits),
        }
    }

    pub(crate) fn refused(&self, why: Refusal) {
        let c = match why {
            Refusal::Deny => &self.refused_deny,
            Refusal::ListenerSessions => &self.refused_listener_cap,
            Refusal::ServiceSessions => &self.refused_service_cap,
            Refusal::Acceptor => &self.refused_acceptor,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn started(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn ended(&self) {
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }
}

/// One Listen instance as sessions see it. C: `netlistener_inst`.
#[derive(Debug)]
pub struct ListenInfo {
    /// The listener type.
    pub def: Arc<NetlistenerDef>,
    /// The configured (normalised) address: the `Listen` scope's instance.
    pub address: ListenAddr,
    /// The address actually bound (differs for port 0); `None` before it opens.
    pub bound: Mutex<Option<ListenAddr>>,
    /// Counters of this instance.
    pub stats: Stats,
    /// Unique per opened instance (a cap key).
    pub serial: u64,
}

/// What a session cap counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CapKey {
    Listener(u64, Option<Cidr>),
    Service(String, Option<Cidr>),
}

/// A live session, as the console shows it. Holds no strings: an idle session's registry
/// entry costs a few dozen bytes.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Connection id.
    pub conn_id: u64,
    /// The session's fd.
    pub fd: i32,
    /// The Listen instance (its type and address).
    pub inst: Arc<ListenInfo>,
    /// The peer (`None` on a Unix socket).
    pub remote: Option<SocketAddr>,
    /// When it was accepted.
    pub started: Instant,
    /// Its event, once scheduled.
    pub event: EventId,
}

impl SessionInfo {
    /// The listener type's scope name (`ESMTP_Listener`).
    pub fn kind(&self) -> &str {
        &self.inst.def.scope
    }

    /// The peer as text: `ip:port`, or `unix`.
    pub fn peer(&self) -> String {
        self.remote
            .map_or_else(|| "unix".to_string(), |a| a.to_string())
    }
}

/// The live sessions: a slab (no per-entry hashing), indexed by a session's `reg` slot.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Vec<Option<SessionInfo>>,
    free: Vec<u32>,
    live: usize,
}

impl Registry {
    fn insert(&mut self, info: SessionInfo) -> u32 {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(info);
                i
            }
            None => {
                self.slots.push(Some(info));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, i: u32) {
        if let Some(slot) = self.slots.get_mut(i as usize) {
            if slot.take().is_some() {
                self.live -= 1;
                self.free.push(i);
            }
        }
    }

    /// Sessions alive.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Every live session.
    pub fn iter(&self) -> impl Iterator<Item = &SessionInfo> {
        self.slots.iter().flatten()
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut SessionInfo> {
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }
}

/// State shared by the scheduler thread and the accept threads.
pub(crate) struct Shared {
    pub store: Arc<ConfigStore>,
    pub slots: CommonSlots,
    pub caps: Mutex<HashMap<CapKey, u64>>,
    pub sessions: Mutex<Registry>,
    pub next_conn_id: AtomicU64,
}

/// The closure of every session event. C: `accept_construct`.
///
/// Kept small (an idle session costs its event, this, and a registry slot): what can be
/// derived on demand (`peer()`, `local_addr()`) is not stored.
pub struct AcceptConstruct {
    /// The peer's address (`None` on a Unix socket). C: `remote_addr`.
    pub remote_addr: Option<SocketAddr>,
    /// The Listen instance. C: `inst`.
    pub inst: Arc<ListenInfo>,
    /// Unique connection id.
    pub conn_id: u64,
    /// The configuration generation this session started with (kept until it ends).
    pub config: Arc<Generation>,
    /// The session's resolved scope chain (Listen + Peer + Pathway fallback).
    pub chain: Chain,
    /// `Idle_Time` for this session (`None`: no timeout).
    pub idle_time: Option<Duration>,
    /// The module's per-session state. C: `accept_construct_closure.vptr`.
    pub accept_construct_closure: Option<Box<dyn Any + Send>>,
    shared: Arc<Shared>,
    caps: Option<Box<[CapKey]>>,
    reg: u32,
}

impl Drop for AcceptConstruct {
    /// Releases the session's caps, registry slot and counters, however it ended (a
    /// connection the acceptor refused only gives back its caps: it was never counted).
    fn drop(&mut self) {
        if let Some(caps) = self.caps.take() {
            let mut held = self.shared.caps.lock().unwrap_or_else(|p| p.into_inner());
            for k in caps.iter() {
                if let Some(n) = held.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        held.remove(k);
                    }
                }
            }
        }
        if self.reg == NOT_STARTED {
            return;
        }
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.reg);
        self.inst.stats.ended();
        self.inst.def.stats.ended();
    }
}

impl std::fmt::Debug for AcceptConstruct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptConstruct")
            .field("conn_id", &self.conn_id)
            .field("remote", &self.remote_addr)
            .field("listen", &self.inst.address.to_string())
            .finish()
    }
}

impl AcceptConstruct {
    /// An option for this session, with Listen + Peer + Pathway fallback, from the generation
    /// the session started with. C: the `get_option()` idiom over
    /// `ec_config_option_fetch_generic(txn, slot, …, "Listen", addr, "Peer", peer)`.
    pub fn fetch(&self, slot: Slot) -> &Value {
        self.config.fetch_in(&self.chain, slot).value
    }

    /// The peer without port, as Peer scopes match it (Unix peers count as loopback).
    pub fn peer(&self) -> PeerAddr {
        match self.remote_addr {
            Some(sa) => PeerAddr::Ip(sa.ip().to_canonical()),
            None => PeerAddr::Unix,
        }
    }

    /// Our end's address (`None` on a Unix socket), asked of the kernel. C: `local_addr`.
    pub fn local_addr(&self, fd: std::os::fd::RawFd) -> Option<SocketAddr> {
        crate::sys::local_addr(fd).ok().flatten()
    }

    /// The module's session state, downcast; `None` until the module sets it.
    pub fn closure_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.accept_construct_closure.as_mut()?.downcast_mut::<T>()
    }

    /// True when a newer configuration generation than the session's is in force.
    pub fn config_is_stale(&self) -> bool {
        self.shared.store.current().number() != self.config.number()
    }

    /// `Pool_Name` for this session's blocking work (resolved with the session's fallback).
    pub fn pool_name(&self) -> &str {
        self.fetch(self.shared.slots.pool_name).as_str()
    }

    /// When the connection was accepted.
    pub fn started(&self) -> Instant {
        let reg = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        reg.slots
            .get(self.reg as usize)
            .and_then(|s| s.as_ref())
            .map_or_else(Instant::now, |s| s.started)
    }

    /// Counts an idle timeout for the console.
    pub fn note_timeout(&self) {
        self.inst.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        self.inst.def.stats.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// The listener type's name (`ESMTP`).
    pub fn kind(&self) -> &str {
        &self.inst.def.name
    }

    /// Records the session's event once it is scheduled (for the console and shutdown).
    pub(crate) fn set_event(&self, id: EventId, fd: i32) {
        if let Some(s) = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(self.reg)
        {
            s.event = id;
            s.fd = fd;
        }
    }
}

/// The parts of a new session's `AcceptConstruct` that the accept path resolved.
pub(crate) struct NewSession {
    pub remote_addr: Option<SocketAddr>,
    pub config: Arc<Generation>,
    pub chain: Chain,
    pub idle_time: Option<Duration>,
    pub caps: Vec<CapKey>,
}

/// `reg` of a connection that is not a session yet (its acceptor has not passed it).
const NOT_STARTED: u32 = u32::MAX;

/// Builds a new connection's `AcceptConstruct` (holding its caps). It is not counted nor
/// listed until [`begin_session`] — after the module's acceptor passed it.
pub(crate) fn open_session(
    shared: &Arc<Shared>,
    inst: &Arc<ListenInfo>,
    n: NewSession,
) -> AcceptConstruct {
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    AcceptConstruct {
        remote_addr: n.remote_addr,
        inst: inst.clone(),
        conn_id,
        config: n.config,
        chain: n.chain,
        idle_time: n.idle_time,
        accept_construct_closure: None,
        shared: shared.clone(),
        caps: (!n.caps.is_empty()).then(|| n.caps.into_boxed_slice()),
        reg: NOT_STARTED,
    }
}

/// Makes an admitted connection a session: counted (accepted, active, peak) and listed in the
/// registry. Called once, after the acceptor; its `Drop` undoes both.
pub(crate) fn begin_session(ac: &mut AcceptConstruct, fd: i32, now: Instant) {
    if ac.reg != NOT_STARTED {
        return;
    }
    ac.inst.stats.started();
    ac.inst.def.stats.started();
    let info = SessionInfo {
        conn_id: ac.conn_id,
        fd,
        inst: ac.inst.clone(),
        remote: ac.remote_addr,
        started: now,
        event: EventId::NONE,
    };
    ac.reg = ac
        .shared
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(info);
}

/// Checks the caps for a new session and takes its places; `Err` names the cap that refused.
///
/// Each cap is fetched like any option: the first scope of the session's chain that sets it
/// supplies the value **and** the block it counts (`scope_cidr` of that scope: the Peer's
/// CIDR, or none for a Listen/listener/global value). So a Peer that sets its own
/// `Listener_Sessions` replaces the Listen-wide cap for its block: those sessions count
/// against the block's cap only. With several matching Peers in the chain (longest prefix
/// first), the most specific Peer that sets the cap is the block counted.
pub(crate) fn take_caps(
    shared: &Arc<Shared>,
    gen: &Generation,
    chain: &Chain,
    inst: &ListenInfo,
) -> Result<Vec<CapKey>, Refusal> {
    let mut keys = Vec::new();
    let l = gen.fetch_in(chain, shared.slots.listener_sessions);
    let s = gen.fetch_in(chain, shared.slots.service_sessions);
    let wanted = [
        (
            l.value.as_int(),
            CapKey::Listener(inst.serial, gen.scope_cidr(l.scope)),
            Refusal::ListenerSessions,
        ),
        (
            s.value.as_int(),
            CapKey::Service(inst.def.scope.to_ascii_lowercase(), gen.scope_cidr(s.scope)),
            Refusal::ServiceSessions,
        ),
    ];
    if wanted.iter().all(|(max, _, _)| *max <= 0) {
        return Ok(keys);
    }
    let mut caps = shared.caps.lock().unwrap_or_else(|p| p.into_inner());
    for (max, key, why) in wanted {
        if max <= 0 {
            continue;
        }
        if caps.get(&key).copied().unwrap_or(0) >= max as u64 {
            for k in &keys {
                if let Some(n) = caps.get_mut(k) {
                    *n -= 1;
                }
            }
            return Err(why);
        }
        *caps.entry(key.clone()).or_insert(0) += 1;
        keys.push(key);
    }
    Ok(keys)
}
