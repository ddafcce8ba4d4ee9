//! The netlistener API: registered listener types, Listen sockets, sessions.
//!
//! C: `netlistener_register3()`, `netlistener_register4()`, `netlistener_register_option()`,
//! `netlistener_def`, `accept_construct`.
//!
//! # Summary
//! A module registers a listener **type** once — a name, a *listener* callback run on the
//! scheduler thread, an optional *acceptor* run at accept time (possibly on accept threads),
//! and its own options. The operator then writes `<Type>_Listener` stanzas; this layer opens
//! one socket per enabled `Listen`, accepts, applies `Deny` and the session caps, runs the
//! acceptor, and starts each session as an [`Event`](crate::event::Event) whose closure is an
//! [`AcceptConstruct`] and whose callback is the module's listener:
//!
//! ```
//! use netlistener::event::{Closure, Event, E_READ};
//! use netlistener::netlistener::*;
//! use netlistener::scheduler::Scheduler;
//! use std::time::Instant;
//!
//! fn my_worker(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
//!     0 // a real module reads and writes here
//! }
//! fn my_listener(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
//!     let ac = closure.downcast_mut::<AcceptConstruct>().unwrap();
//!     ac.accept_construct_closure = Some(Box::new(0u32)); // per-session state lives here
//!     e.callback = my_worker;
//!     my_worker(e, et, closure, now)
//! }
//! let _sched = Scheduler::new().unwrap();
//! let def = netlistener_register3("MyModule", my_listener, None, "mymodule").unwrap();
//! assert_eq!(def.scope, "MyModule_Listener");
//! let conf = "[MyModule_Listener]\n[MyModule_Listener Listen \"127.0.0.1:0\"]\n";
//! netlistener_load_config_str("inline.conf", conf).unwrap();
//! netlistener_start().unwrap();
//! assert_eq!(listeners_report()[0].state, "listening");
//! ```
//!
//! # Contract
//! - Registration happens on the scheduler thread, before the configuration is loaded;
//!   elsewhere, twice under one name, or after loading it returns an error (never UB).
//! - The layer's state is per scheduler thread: each scheduler runs its own set of listeners.
//! - Options are fetched per session from the generation the session started with
//!   ([`AcceptConstruct::fetch`]), with Listen + Peer (+ Pathway) fallback.
//!
//! # Diagnostics
//! Registration and configuration problems are returned as errors. A Listen that cannot open
//! records the failing syscall and errno (see [`listeners_report`]); at start-up it is fatal
//! unless `Fatal_Listen_Errors = false`. Accept errors never stop a listener: `EMFILE` and
//! other persistent errors back off (10 ms → 1 s), logged once per episode and Listen (see
//! the `accept` module). Stopping or restarting accept threads (reload, shutdown) never waits
//! for them and never drops a connection they admitted.

mod accept;
mod listen;
mod options;
mod session;

pub use options::CommonSlots;
pub use session::{AcceptConstruct, ListenInfo, Refusal, SessionInfo, Stats, StatsSnapshot};

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::{
    ConfigError, ConfigErrors, ConfigStore, Generation, ListenAddr, OptionDef, Schema, ScopeClass,
    ScopeKind, Slot,
};
use crate::event::EventCallback;
use crate::scheduler;
use crate::sys::SockOpts;

use listen::{Instance, ListenSettings, ListenState};
use session::Shared;

/// A registered listener type. C: `netlistener_def`.
pub struct NetlistenerDef {
    /// The prefix given at registration (`ESMTP`).
    pub name: String,
    /// Its scope kind (`ESMTP_Listener`).
    pub scope: String,
    /// Run on the scheduler thread for each new session. C: the listener function.
    pub listener: EventCallback,
    /// Run at accept time, possibly on an accept thread; returning 0 refuses the connection.
    /// It must not call scheduler functions. C: the acceptor function.
    pub acceptor: Option<EventCallback>,
    /// The registering module's name. C: `generic_module_infrastructure *self`.
    pub module: String,
    /// `SO_RCVBUF` / `SO_SNDBUF` as registered (0: OS default), for reference: the schema
    /// holds them as this type's defaults of `TCP_Recv_Buffer_Size` / `TCP_Send_Buffer_Size`
    /// ([`Schema::listener_default`]), which is what its Listens resolve and `config eval`
    /// shows; a configured value, 0 included, wins. C: `netlistener_register4()`.
    pub default_buffers: (usize, usize),
    reject: RwLock<RejectLines>,
    /// Counters of the whole type (every Listen).
    pub stats: Stats,
}

#[derive(Default, Clone)]
struct RejectLines {
    deny: Vec<u8>,
    busy: Vec<u8>,
}

impl fmt::Debug for NetlistenerDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetlistenerDef")
            .field("scope", &self.scope)
            .field("module", &self.module)
            .finish()
    }
}

impl NetlistenerDef {
    /// The line written before closing a refused connection (empty: close silently).
    pub fn reject_line(&self, why: Refusal) -> Vec<u8> {
        let r = self.reject.read().unwrap_or_else(|p| p.into_inner());
        match why {
            Refusal::Deny => r.deny.clone(),
            Refusal::ListenerSessions | Refusal::ServiceSessions => r.busy.clone(),
            Refusal::Acceptor => Vec::new(),
        }
    }
}

/// Why a netlistener call failed.
#[derive(Debug)]
pub enum NetError {
    /// Called off the scheduler thread.
    NotSchedulerThread(&'static str),
    /// A type of that name exists already.
    Duplicate(String),
    /// Registration after the configuration was loaded.
    TooLate(&'static str),
    /// Nothing loaded yet.
    NotLoaded(&'static str),
    /// The configuration layer refused (option clash, bad default…).
    Config(ConfigError),
    /// Listens that failed to open at start-up.
    ListenFailed(Vec<String>),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::NotSchedulerThread(c) => write!(f, "{c}: only on the scheduler thread"),
            NetError::Duplicate(n) => write!(
                f,
                "netlistener_register: listener type {n} is already registered"
            ),
            NetError::TooLate(c) => write!(
                f,
                "{c}: the configuration is already loaded; register before loading it"
            ),
            NetError::NotLoaded(c) => write!(f, "{c}: no configuration loaded"),
            NetError::Config(e) => write!(f, "{e}"),
            NetError::ListenFailed(v) => write!(f, "{}", v.join("\n")),
        }
    }
}

impl std::error::Error for NetError {}

struct NetState {
    schema: Option<Schema>,
    slots: CommonSlots,
    defs: Vec<Arc<NetlistenerDef>>,
    shared: Option<Arc<Shared>>,
    instances: Vec<Instance>,
    runtime_dir: PathBuf,
}

thread_local! {
    static NL: RefCell<Option<NetState>> = const { RefCell::new(None) };
}

fn with_state<R>(
    caller: &'static str,
    f: impl FnOnce(&mut NetState) -> Result<R, NetError>,
) -> Result<R, NetError> {
    if !scheduler::is_scheduler_thread() {
        return Err(NetError::NotSchedulerThread(caller));
    }
    NL.with(|nl| {
        let mut nl = nl.borrow_mut();
        if nl.is_none() {
            let mut schema = Schema::new();
            let slots = CommonSlots::register(&mut schema).map_err(NetError::Config)?;
            *nl = Some(NetState {
                schema: Some(schema),
                slots,
                defs: Vec::new(),
                shared: None,
                instances: Vec::new(),
                runtime_dir: std::env::temp_dir(),
            });
        }
        f(nl.as_mut().expect("initialised above"))
    })
}

fn schema_mut<'a>(st: &'a mut NetState, caller: &'static str) -> Result<&'a mut Schema, NetError> {
    st.schema.as_mut().ok_or(NetError::TooLate(caller))
}

/// Registers the listener type `<prefix>_Listener`. C: `netlistener_register3()`.
pub fn netlistener_register3(
    prefix: &str,
    listener: EventCallback,
    acceptor: Option<EventCallback>,
    module: &str,
) -> Result<Arc<NetlistenerDef>, NetError> {
    netlistener_register4(prefix, listener, acceptor, module, 0, 0)
}

/// [`netlistener_register3`] with the type's default socket buffer sizes (0: OS default),
/// used where `TCP_Recv_Buffer_Size` / `TCP_Send_Buffer_Size` are not set: they become the
/// type's defaults of those options ([`Schema::set_listener_default`]), so `config eval`
/// shows them. A configured value wins, and a configured 0 restores the OS default.
/// C: `netlistener_register4()`.
pub fn netlistener_register4(
    prefix: &str,
    listener: EventCallback,
    acceptor: Option<EventCallback>,
    module: &str,
    recv_buffer: usize,
    send_buffer: usize,
) -> Result<Arc<NetlistenerDef>, NetError> {
    with_state("netlistener_register", |st| {
        let scope = format!("{prefix}_Listener");
        if st.defs.iter().any(|d| d.scope.eq_ignore_ascii_case(&scope)) {
            return Err(NetError::Duplicate(scope));
        }
        let slots = st.slots;
        let schema = schema_mut(st, "netlistener_register")?;
        schema
            .register_scope_kind(&scope, ScopeKind::Listener)
            .map_err(NetError::Config)?;
        for (slot, size) in [
            (slots.tcp_recv_buffer_size, recv_buffer),
            (slots.tcp_send_buffer_size, send_buffer),
        ] {
            // 0 is the options' own default: nothing to record.
            if size == 0 {
                continue;
            }
            schema
                .set_listener_default(&scope, slot, &size.to_string())
                .map_err(NetError::Config)?;
        }
        let def = Arc::new(NetlistenerDef {
            name: prefix.to_string(),
            scope,
            listener,
            acceptor,
            module: module.to_string(),
            default_buffers: (recv_buffer, send_buffer),
            reject: RwLock::new(RejectLines::default()),
            stats: Stats::default(),
        });
        st.defs.push(def.clone());
        Ok(def)
    })
}

/// Registers an option of `def`'s type (valid under its `<Type>_Listener` scopes, and wherever
/// else `opt.scopes` says), returning its slot. C: `netlistener_register_option()`.
pub fn netlistener_register_option(
    def: &NetlistenerDef,
    mut opt: OptionDef,
) -> Result<Slot, NetError> {
    with_state("netlistener_register_option", |st| {
        // The owner must be a 'static str: registered types live for the process.
        opt.owner = Some(Box::leak(def.scope.clone().into_boxed_str()));
        schema_mut(st, "netlistener_register_option")?
            .register_option(opt)
            .map_err(NetError::Config)
    })
}

/// Registers an option outside listener scopes (global, module or pool), for daemons and
/// modules. C: `ec_config_register_option()`.
pub fn register_config_option(opt: OptionDef) -> Result<Slot, NetError> {
    with_state("register_config_option", |st| {
        schema_mut(st, "register_config_option")?
            .register_option(opt)
            .map_err(NetError::Config)
    })
}

/// Registers a module scope (`[Name]`).
pub fn register_module_scope(name: &str) -> Result<(), NetError> {
    with_state("register_module_scope", |st| {
        schema_mut(st, "register_module_scope")?
            .register_scope_kind(name, ScopeKind::Module)
            .map_err(NetError::Config)
    })
}

/// Sets the lines written to a connection the layer refuses: `deny` for `Deny`, `busy` for the
/// session caps (e.g. SMTP's `554 5.7.1 …` and `421 4.4.5 …`; CRLF is appended).
pub fn netlistener_set_reject_lines(def: &NetlistenerDef, deny: &str, busy: &str) {
    let line = |s: &str| {
        if s.is_empty() {
            Vec::new()
        } else {
            format!("{s}\r\n").into_bytes()
        }
    };
    *def.reject.write().unwrap_or_else(|p| p.into_inner()) = RejectLines {
        deny: line(deny),
        busy: line(busy),
    };
}

/// Sets the type's own default `File_Mode` for Unix sockets (used when no scope sets one,
/// and shown by `config eval`), e.g. 0600 for an admin console. Like registration, it
/// must come before the configuration is loaded; a mode above 07777 is an error.
/// C: `netlistener_set_default_file_mode()`.
pub fn netlistener_set_default_file_mode(def: &NetlistenerDef, mode: u32) -> Result<(), NetError> {
    const CALLER: &str = "netlistener_set_default_file_mode";
    with_state(CALLER, |st| {
        let slot = st.slots.file_mode;
        schema_mut(st, CALLER)?
            .set_listener_default(&def.scope, slot, &format!("{mode:o}"))
            .map_err(NetError::Config)
    })
}

/// The common options' slots.
pub fn common_slots() -> Result<CommonSlots, NetError> {
    with_state("common_slots", |st| Ok(st.slots))
}

/// The slot of an option registered under `name` in the scope class `class`.
pub fn option_slot(name: &str, class: ScopeClass<'_>) -> Option<Slot> {
    with_state("option_slot", |st| {
        let schema = match &st.shared {
            Some(sh) => sh.store.schema().clone(),
            None => return Ok(st.schema.as_ref().and_then(|s| s.slot(name, class))),
        };
        Ok(schema.slot(name, class))
    })
    .ok()
    .flatten()
}

/// Where relative Unix socket paths are resolved (default: the system temp dir).
pub fn netlistener_set_runtime_dir(dir: &Path) -> Result<(), NetError> {
    with_state("netlistener_set_runtime_dir", |st| {
        st.runtime_dir = dir.to_path_buf();
        Ok(())
    })
}

/// Loads the configuration (a file or a directory) against the registered options. After
/// this, no more types or options can be registered.
pub fn netlistener_load_config(path: &Path) -> Result<Arc<ConfigStore>, ConfigErrors> {
    load_with(|schema| ConfigStore::load(schema, path))
}

/// [`netlistener_load_config`] from text (tests, examples).
pub fn netlistener_load_config_str(
    name: &str,
    text: &str,
) -> Result<Arc<ConfigStore>, ConfigErrors> {
    load_with(|schema| ConfigStore::from_str(schema, name, text))
}

fn load_with(
    f: impl FnOnce(Arc<Schema>) -> Result<ConfigStore, ConfigErrors>,
) -> Result<Arc<ConfigStore>, ConfigErrors> {
    let not_sched = || {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: 0,
            section: String::new(),
            option: String::new(),
            reason: "netlistener_load_config: only on the scheduler thread".into(),
        }])
    };
    let schema = with_state("netlistener_load_config", |st| Ok(st.schema.take()))
        .map_err(|_| not_sched())?;
    let Some(schema) = schema else {
        let e = ConfigError {
            path: String::new(),
            line: 0,
            section: String::new(),
            option: String::new(),
            reason: "netlistener_load_config: already loaded (use netlistener_reload)".into(),
        };
        return Err(ConfigErrors(vec![e]));
    };
    let schema = Arc::new(schema);
    let store = match f(schema.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            // Keep the schema so a corrected configuration can still be loaded.
            let _ = with_state("netlistener_load_config", |st| {
                st.schema = Some(Arc::try_unwrap(schema).unwrap_or_else(|a| clone_schema(&a)));
                Ok(())
            });
            return Err(e);
        }
    };
    let _ = with_state("netlistener_load_config", |st| {
        st.shared = Some(Arc::new(Shared {
            store: store.clone(),
            slots: st.slots,
            caps: Mutex::new(HashMap::new()),
            sessions: Mutex::new(session::Registry::default()),
            next_conn_id: AtomicU64::new(1),
        }));
        Ok(())
    });
    Ok(store)
}

fn clone_schema(_a: &Arc<Schema>) -> Schema {
    // The store keeps no reference after a failed load, so try_unwrap succeeds in practice;
    // this path only exists to avoid a panic if that ever changes.
    Schema::new()
}

/// The configuration store in force. C: the source of `ec_config_fetch_globalconf()`.
pub fn netlistener_config() -> Result<Arc<ConfigStore>, NetError> {
    with_state("netlistener_config", |st| {
        st.shared
            .as_ref()
            .map(|s| s.store.clone())
            .ok_or(NetError::NotLoaded("netlistener_config"))
    })
}

/// The current configuration generation. C: `ec_config_fetch_globalconf()`.
pub fn ec_config_fetch_globalconf() -> Result<Arc<Generation>, NetError> {
    Ok(netlistener_config()?.current())
}

/// Opens every enabled Listen of the current generation and starts accepting.
/// `Err` lists the Listens that failed when `Fatal_Listen_Errors` is true for them.
pub fn netlistener_start() -> Result<(), NetError> {
    let gen = ec_config_fetch_globalconf()?;
    let fatal = netlistener_apply(&gen)?;
    if fatal.is_empty() {
        Ok(())
    } else {
        Err(NetError::ListenFailed(fatal))
    }
}

/// Re-reads the configuration; on success applies the new generation (diffing the Listen
/// set). On failure the running generation stays in force and every error is returned.
pub fn netlistener_reload() -> Result<Arc<Generation>, ConfigErrors> {
    let store = netlistener_config().map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            line: 0,
            section: String::new(),
            option: String::new(),
            reason: e.to_string(),
        }])
    })?;
    let gen = store.reload()?;
    let _ = netlistener_apply(&gen);
    Ok(gen)
}

fn settings(
    gen: &Generation,
    slots: &CommonSlots,
    def: &NetlistenerDef,
    addr: &ListenAddr,
) -> (bool, ListenSettings, bool) {
    // Unset options resolve to the type's own defaults (buffer sizes, File_Mode) in the
    // schema; a buffer size set to 0, there or in a scope, is the OS default.
    let chain = gen.chain(&def.scope, Some(addr), None);
    let f = |s: Slot| gen.fetch_in(&chain, s).value;
    let per_iter = f(slots.events_per_iter).as_int();
    let st = ListenSettings {
        sock: SockOpts {
            backlog: f(slots.listen_backlog).as_int() as i32,
            recv_buffer: f(slots.tcp_recv_buffer_size).as_size() as usize,
            send_buffer: f(slots.tcp_send_buffer_size).as_size() as usize,
            nodelay: f(slots.disable_nagle).as_bool(),
        },
        concurrency: f(slots.concurrency).as_int() as usize,
        queue_backlog: f(slots.accept_queue_backlog).as_int() as usize,
        events_per_iter: if per_iter <= 0 { 1 } else { per_iter as usize },
        file_mode: f(slots.file_mode).as_mode(),
    };
    (
        f(slots.enable).as_bool(),
        st,
        f(slots.fatal_listen_errors).as_bool(),
    )
}

/// Applies `gen` to the open sockets: unchanged Listens keep their fd, new ones open, removed
/// or disabled ones close (their live sessions go on). Also sizes the thread pools. Returns
/// the failures that `Fatal_Listen_Errors` makes fatal.
pub fn netlistener_apply(gen: &Arc<Generation>) -> Result<Vec<String>, NetError> {
    configure_pools(gen);
    with_state("netlistener_apply", |st| {
        let shared = st
            .shared
            .clone()
            .ok_or(NetError::NotLoaded("netlistener_apply"))?;
        let mut wanted = Vec::new();
        for def in &st.defs {
            for addr in gen.listens(&def.scope) {
                let (enabled, s, fatal) = settings(gen, &st.slots, def, &addr);
                wanted.push((def.clone(), addr, enabled, s, fatal));
            }
        }
        let key = |scope: &str, a: &ListenAddr| (scope.to_ascii_lowercase(), a.to_string());
        // Close first: a wildcard and a specific address on one port cannot both be bound.
        let mut keep: HashMap<(String, String), Instance> = HashMap::new();
        for mut inst in std::mem::take(&mut st.instances) {
            let k = key(&inst.info.def.scope, &inst.info.address);
            let still = wanted
                .iter()
                .any(|(d, a, en, _, _)| *en && key(&d.scope, a) == k);
            if still && matches!(inst.state, ListenState::Listening) {
                keep.insert(k, inst);
            } else {
                if matches!(inst.state, ListenState::Listening) {
                    log::info!(
                        "{} Listen \"{}\": closing",
                        inst.info.def.scope,
                        inst.info.address
                    );
                }
                inst.close();
            }
        }
        let mut fatal = Vec::new();
        for (def, addr, enabled, s, is_fatal) in wanted {
            let k = key(&def.scope, &addr);
            if let Some(mut inst) = keep.remove(&k) {
                inst.reconfigure(&shared, s);
                st.instances.push(inst);
                continue;
            }
            let info = Arc::new(ListenInfo {
                def: def.clone(),
                address: addr.clone(),
                bound: Mutex::new(None),
                stats: Stats::default(),
                serial: listen::next_serial(),
            });
            if !enabled {
                st.instances
                    .push(Instance::new(info, s, ListenState::Disabled));
                continue;
            }
            let mut inst = Instance::new(info, s, ListenState::Disabled);
            match inst.open(&st.runtime_dir) {
                Ok(()) => {
                    log::info!(
                        "{} Listen \"{addr}\": listening on {}",
                        def.scope,
                        bound_text(&inst.info)
                    );
                    if inst.start(&shared).is_err() && is_fatal {
                        fatal.push(format!(
                            "{} Listen \"{addr}\": {}",
                            def.scope,
                            state_text(&inst.state)
                        ));
                    }
                }
                Err(()) if is_fatal => fatal.push(format!(
                    "{} Listen \"{addr}\": {}",
                    def.scope,
                    state_text(&inst.state)
                )),
                Err(()) => {}
            }
            st.instances.push(inst);
        }
        Ok(fatal)
    })
}

fn configure_pools(gen: &Generation) {
    let schema = gen.schema();
    let (Some(c), Some(b)) = (
        schema.slot("Concurrency", ScopeClass::ThreadPool),
        schema.slot("Backlog", ScopeClass::ThreadPool),
    ) else {
        return;
    };
    for name in gen.threadpools() {
        // The pool's own default included: the CPU pool runs one thread per CPU.
        let conc = gen.threadpool(&name, c).as_int().max(1) as usize;
        let backlog = gen.threadpool(&name, b).as_int().max(0) as usize;
        scheduler::configure_pool(&name, conc, backlog);
    }
}

fn bound_text(info: &ListenInfo) -> String {
    info.bound
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map_or_else(|| "-".to_string(), |b| b.to_string())
}

fn state_text(s: &ListenState) -> String {
    match s {
        ListenState::Listening => "listening".into(),
        ListenState::Disabled => "disabled".into(),
        ListenState::Failed(e) => format!("failed: {e}"),
    }
}

/// One Listen, as the console's `listeners` command shows it.
#[derive(Debug, Clone)]
pub struct ListenReport {
    /// The type's scope (`Echo_Listener`).
    pub kind: String,
    /// The configured address.
    pub address: String,
    /// The address as bound (`-` when not open).
    pub bound: String,
    /// `listening`, `disabled`, or `failed: <syscall>: <error> (errno N)`.
    pub state: String,
    /// Accept threads (0: in the scheduler).
    pub concurrency: usize,
    /// The socket's fd (-1 when closed).
    pub fd: i32,
    /// Counters.
    pub stats: StatsSnapshot,
}

/// Every configured Listen with its state and counters.
pub fn listeners_report() -> Vec<ListenReport> {
    with_state("listeners_report", |st| {
        Ok(st
            .instances
            .iter()
            .map(|i| ListenReport {
                kind: i.info.def.scope.clone(),
                address: i.info.address.to_string(),
                bound: bound_text(&i.info),
                state: state_text(&i.state),
                concurrency: i.settings.concurrency,
                fd: i.fd(),
                stats: i.info.stats.snapshot(),
            })
            .collect())
    })
    .unwrap_or_default()
}

/// The bound address of the first listening instance of `kind` (`Echo_Listener`), for tests
/// and examples that bind port 0.
pub fn bound_address(kind: &str) -> Option<ListenAddr> {
    with_state("bound_address", |st| {
        Ok(st
            .instances
            .iter()
            .filter(|i| i.info.def.scope.eq_ignore_ascii_case(kind))
            .find_map(|i| {
                i.info
                    .bound
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            }))
    })
    .ok()
    .flatten()
}

/// Every registered type with its counters.
pub fn types_report() -> Vec<(String, StatsSnapshot)> {
    with_state("types_report", |st| {
        Ok(st
            .defs
            .iter()
            .map(|d| (d.scope.clone(), d.stats.snapshot()))
            .collect())
    })
    .unwrap_or_default()
}

/// Live sessions (oldest first), as the console's `show inbound` lists them.
pub fn sessions_report() -> Vec<SessionInfo> {
    with_state("sessions_report", |st| {
        let Some(sh) = &st.shared else {
            return Ok(Vec::new());
        };
        let mut v: Vec<SessionInfo> = sh
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        v.sort_by_key(|s| s.conn_id);
        Ok(v)
    })
    .unwrap_or_default()
}

/// Live sessions of type `kind` whose peer lies in `cidr` (the console's `count`).
pub fn count_sessions(kind: &str, cidr: &crate::config::Cidr) -> usize {
    sessions_report()
        .iter()
        .filter(|s| s.kind().eq_ignore_ascii_case(kind))
        .filter(|s| {
            let ip = s.remote.map(|a| a.ip().to_canonical());
            match ip {
                Some(ip) => cidr.contains(ip),
                None => {
                    cidr.contains(std::net::Ipv4Addr::LOCALHOST.into())
                        || cidr.contains(std::net::Ipv6Addr::LOCALHOST.into())
                }
            }
        })
        .count()
}

/// Stops every listener (sockets closed; accept threads told to stop, never waited for, and
/// the connections they already admitted still started); sessions go on.
pub fn netlistener_stop_listening() {
    let _ = with_state("netlistener_stop_listening", |st| {
        for mut i in std::mem::take(&mut st.instances) {
            i.close();
        }
        Ok(())
    });
}

/// Closes every remaining session that is not floating (its fd closes; floating sessions end
/// when their job resumes or drops them). Returns how many were closed.
pub fn netlistener_close_sessions() -> usize {
    let ids: Vec<_> = sessions_report().into_iter().map(|s| s.event).collect();
    ids.into_iter()
        .filter(|id| scheduler::clear_timed_event(*id))
        .count()
}

/// Live sessions.
pub fn active_sessions() -> usize {
    with_state("active_sessions", |st| {
        Ok(st.shared.as_ref().map_or(0, |s| {
            s.sessions.lock().unwrap_or_else(|p| p.into_inner()).len()
        }))
    })
    .unwrap_or(0)
}

/// Drops this thread's netlistener state (all sockets closed). For tests and embedders that
/// run several schedulers in sequence on one thread.
pub fn netlistener_reset() {
    NL.with(|nl| {
        if let Some(mut st) = nl.borrow_mut().take() {
            for mut i in st.instances.drain(..) {
                i.close();
            }
        }
    });
}

/// Sets the session's idle deadline to `now + Idle_Time` (nothing when it has none). O(1).
/// Modules call this on activity.
pub fn touch(e: &mut crate::event::Event, ac: &AcceptConstruct, now: Instant) {
    if let Some(d) = ac.idle_time {
        e.set_timeout(now, Some(d));
    }
}

/// How long sessions have been given so far to finish, for drain loops.
pub fn drain_elapsed(since: Instant) -> Duration {
    Instant::now().saturating_duration_since(since)
}
