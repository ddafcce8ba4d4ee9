//! C: `ec_config_option_def`, `ec_config_register_option()`
//!
//! The option table: typed option definitions, the slots they get, and the scope kinds.
//!
//! A [`Schema`] knows the built-in scope kinds (global, `Listen`, `Peer`, `Pathway`,
//! `Pathway_Group`, `ThreadPool`), the kinds registered at run time (`<Type>_Listener` by the
//! netlistener layer, module scopes by modules) and every option. Registering an
//! [`OptionDef`] returns a [`Slot`], the cheap index under which each generation stores the
//! option's values.
//!
//! Contract:
//! - The schema is built once, before the first load, then shared as `Arc<Schema>`; it is not
//!   changed afterwards (there is no `&mut` access through the `Arc`).
//! - Names (of kinds and options) are case-insensitive; the registered spelling is kept for
//!   display.
//! - The same option name may be registered several times when the places it is valid in do not
//!   overlap (`Concurrency` for `ThreadPool` and, separately, for listeners). Lookup is by
//!   (name, [`ScopeClass`]).
//! - `owner: Some("ESMTP_Listener")` limits the listener bits (LISTENER, LISTEN, PEER) to that
//!   listener kind; `owner: Some(module)` is required with MODULE. Other bits (GLOBAL, PATHWAY,
//!   PATHWAY_GROUP, THREADPOOL) are unaffected by the owner.
//!
//! Diagnostics: registration returns `Err(ConfigError)` for an invalid name, a default that its
//! own type (or validator) rejects, an unknown owner, or an overlap with an existing option.
//! `Schema::def` panics on a slot from another schema (a contract violation).

use std::collections::HashMap;
use std::ops::BitOr;

use super::error::ConfigError;
use super::types::{OptionType, Value};

/// The index of a registered option; values are stored per scope by slot.
///
/// C: the `int` slot returned by `ec_config_register_option()`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub(crate) u32);

impl Slot {
    /// The slot as an index (0-based, dense).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of scope classes where an option is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(pub u32);

impl Scopes {
    /// Outside any section.
    pub const GLOBAL: Scopes = Scopes(1);
    /// `[<Type>_Listener]`.
    pub const LISTENER: Scopes = Scopes(2);
    /// `[<Type>_Listener Listen "addr"]`.
    pub const LISTEN: Scopes = Scopes(4);
    /// `[<Type>_Listener Peer "cidr"]` and `[<Type>_Listener Listen "addr" Peer "cidr"]`.
    pub const PEER: Scopes = Scopes(8);
    /// `[Pathway "p"]` and `[Pathway_Group "g" Pathway "p"]`.
    pub const PATHWAY: Scopes = Scopes(16);
    /// `[Pathway_Group "g"]`.
    pub const PATHWAY_GROUP: Scopes = Scopes(32);
    /// `[ThreadPool "name"]`.
    pub const THREADPOOL: Scopes = Scopes(64);
    /// `[<ModuleScope>]`.
    pub const MODULE: Scopes = Scopes(128);
    /// The three listener bits.
    pub const LISTENER_ALL: Scopes = Scopes(2 | 4 | 8);

    /// True when every bit of `other` is in `self`.
    pub fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when `self` and `other` share a bit.
    pub fn intersects(self, other: Scopes) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for Scopes {
    type Output = Scopes;
    fn bitor(self, rhs: Scopes) -> Scopes {
        Scopes(self.0 | rhs.0)
    }
}

/// What a kind registered at run time is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// A `<Type>_Listener` kind (takes `Listen` and `Peer` sub-scopes).
    Listener,
    /// A module scope: a bare `[Name]` section.
    Module,
}

/// What an option's value names, checked after loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A pathway: naming one that does not exist is an error.
    Pathway,
    /// A thread pool: naming one that does not exist warns and falls back to `IO`.
    ThreadPool,
}

/// Extra validation of a parsed value; `Err` holds the reason.
pub type Validator = fn(&Value) -> Result<(), String>;

/// One option definition.
///
/// C: `ec_config_option_def`
#[derive(Debug, Clone)]
pub struct OptionDef {
    /// The name, as displayed (lookup is case-insensitive).
    pub name: &'static str,
    /// The type, which picks the parser.
    pub ty: OptionType,
    /// The default, as text; parsed (and validated) at registration.
    pub default: &'static str,
    /// Where the option may be set.
    pub scopes: Scopes,
    /// The listener kind or module scope that owns the option; `None`: common to all listeners.
    pub owner: Option<&'static str>,
    /// Extra validation after parsing.
    pub validator: Option<Validator>,
    /// A reload cannot change it: the running value is kept and a warning issued.
    pub restart_required: bool,
    /// What the value names, if anything.
    pub refers_to: Option<RefKind>,
    /// One line of documentation, for help listings and man pages.
    pub doc: &'static str,
}

impl OptionDef {
    /// A definition with the common defaults: no owner, no validator, no reference, reloadable.
    pub const fn new(
        name: &'static str,
        ty: OptionType,
        default: &'static str,
        scopes: Scopes,
        doc: &'static str,
    ) -> OptionDef {
        OptionDef {
            name,
            ty,
            default,
            scopes,
            owner: None,
            validator: None,
            restart_required: false,
            refers_to: None,
            doc,
        }
    }
}

/// The class of a section, for option lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeClass<'a> {
    /// Outside any section.
    Global,
    /// `[Kind]` for a listener kind.
    Listener(&'a str),
    /// `[Kind Listen "…"]`.
    Listen(&'a str),
    /// `[Kind Peer "…"]` or `[Kind Listen "…" Peer "…"]`.
    Peer(&'a str),
    /// `[Pathway "…"]` (in a group or not).
    Pathway,
    /// `[Pathway_Group "…"]`.
    PathwayGroup,
    /// `[ThreadPool "…"]`.
    ThreadPool,
    /// `[Module]`.
    Module(&'a str),
}

impl ScopeClass<'_> {
    fn bits_and_owner(&self) -> (Scopes, Option<&str>) {
        match *self {
            ScopeClass::Global => (Scopes::GLOBAL, None),
            ScopeClass::Listener(k) => (Scopes::LISTENER, Some(k)),
            ScopeClass::Listen(k) => (Scopes::LISTEN, Some(k)),
            ScopeClass::Peer(k) => (Scopes::PEER, Some(k)),
            ScopeClass::Pathway => (Scopes::PATHWAY, None),
            ScopeClass::PathwayGroup => (Scopes::PATHWAY_GROUP, None),
            ScopeClass::ThreadPool => (Scopes::THREADPOOL, None),
            ScopeClass::Module(m) => (Scopes::MODULE, Some(m)),
        }
    }
}

/// True when `def` may be set in a section of class `class`.
pub(crate) fn applies(def: &OptionDef, class: ScopeClass<'_>) -> bool {
    let (bit, kind) = class.bits_and_owner();
    if !def.scopes.contains(bit) {
        return false;
    }
    if bit.intersects(Scopes::LISTENER_ALL | Scopes::MODULE) {
        return match def.owner {
            None => bit != Scopes::MODULE,
            Some(o) => kind.is_some_and(|k| o.eq_ignore_ascii_case(k)),
        };
    }
    true
}

#[derive(Debug)]
struct KindEntry {
    name: String,
    kind: ScopeKind,
    /// A listener kind's own defaults of common options ([`Schema::set_listener_default`]).
    defaults: Vec<(Slot, Value)>,
}

/// The option table and the scope kinds.
#[derive(Debug)]
pub struct Schema {
    kinds: Vec<KindEntry>,
    kind_index: HashMap<String, usize>,
    defs: Vec<OptionDef>,
    defaults: Vec<Value>,
    by_name: HashMap<String, Vec<Slot>>,
    pathway_slot: Slot,
    pool_concurrency: Slot,
    /// The `CPU` pool's own `Concurrency` default: one thread per CPU
    /// ([`crate::scheduler::cpu_pool_concurrency`]).
    cpu_threads: Value,
}

/// Scope kind names that are built in and cannot be registered again.
pub(crate) const BUILTIN_KINDS: [&str; 5] =
    ["Listen", "Peer", "Pathway", "Pathway_Group", "ThreadPool"];

fn schema_err(option: &str, reason: String) -> ConfigError {
    ConfigError {
        path: "schema".to_string(),
        line: 0,
        section: String::new(),
        option: option.to_string(),
        reason,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Default for Schema {
    fn default() -> Self {
        Schema::new()
    }
}

impl Schema {
    /// A schema with the built-in kinds and options: `Pathway` (listeners), and ThreadPool's
    /// `Concurrency` (1..=1024, default 4, but one thread per CPU for the `CPU` pool: see
    /// [`Schema::pool_default`]) and `Backlog` (0..=1,000,000, default 1024; 0 = unbounded).
    pub fn new() -> Schema {
        let mut s = Schema {
            kinds: Vec::new(),
            kind_index: HashMap::new(),
            defs: Vec::new(),
            defaults: Vec::new(),
            by_name: HashMap::new(),
            pathway_slot: Slot(0),
            pool_concurrency: Slot(0),
            cpu_threads: Value::Int(crate::scheduler::cpu_pool_concurrency() as i64),
        };
        let mut pathway = OptionDef::new(
            "Pathway",
            OptionType::Str,
            "",
            Scopes::LISTENER_ALL,
            "The pathway whose settings this listener falls back to",
        );
        pathway.refers_to = Some(RefKind::Pathway);
        s.pathway_slot = s.register_option(pathway).expect("built-in Pathway");
        let builtins = [
            OptionDef::new(
                "Concurrency",
                OptionType::Int { min: 1, max: 1024 },
                "4",
                Scopes::THREADPOOL,
                "Number of threads in the pool (the CPU pool defaults to the number of CPUs)",
            ),
            OptionDef::new(
                "Backlog",
                OptionType::Int {
                    min: 0,
                    max: 1_000_000,
                },
                "1024",
                Scopes::THREADPOOL,
                "Jobs queued before a submitter waits for a place (0 = unbounded)",
            ),
        ];
        for mut def in builtins {
            // A running pool keeps its threads: a reload that changes these warns.
            def.restart_required = true;
            s.register_option(def).expect("built-in ThreadPool option");
        }
        s.pool_concurrency = s
            .slot("Concurrency", ScopeClass::ThreadPool)
            .expect("built-in ThreadPool Concurrency");
        s
    }

    /// The default of a `ThreadPool` option for one pool: the option's default, except the
    /// `CPU` pool's `Concurrency`, which is the number of CPUs (as the scheduler sizes that
    /// pool when no section sets it).
    pub fn pool_default(&self, pool: &str, slot: Slot) -> &Value {
        if slot == self.pool_concurrency && pool.eq_ignore_ascii_case("CPU") {
            &self.cpu_threads
        } else {
            self.default_value(slot)
        }
    }

    /// The registered module scopes, as registered.
    pub(crate) fn module_scopes(&self) -> impl Iterator<Item = &str> + '_ {
        self.kinds
            .iter()
            .filter(|k| k.kind == ScopeKind::Module)
            .map(|k| k.name.as_str())
    }

    /// Registers a `<Type>_Listener` kind or a module scope.
    pub fn register_scope_kind(&mut self, name: &str, kind: ScopeKind) -> Result<(), ConfigError> {
        let key = name.to_ascii_lowercase();
        if !valid_name(name) {
            return Err(schema_err("", format!("bad scope name \"{name}\"")));
        }
        if BUILTIN_KINDS.iter().any(|b| b.eq_ignore_ascii_case(name))
            || key == "global"
            || self.kind_index.contains_key(&key)
        {
            return Err(schema_err("", format!("scope kind {name} already exists")));
        }
        if kind == ScopeKind::Listener && !key.ends_with("_listener") {
            return Err(schema_err(
                "",
                format!("listener kind {name} must end in _Listener"),
            ));
        }
        self.kind_index.insert(key, self.kinds.len());
        self.kinds.push(KindEntry {
            name: name.to_string(),
            kind,
            defaults: Vec::new(),
        });
        Ok(())
    }

    /// Gives listener kind `kind` its own default for `slot` (text, parsed and validated like
    /// [`OptionDef::default`]): what that kind's Listens and sessions resolve when no scope
    /// sets the option, global included, and what `config eval` shows as `(from default)`.
    /// Setting it again replaces it.
    ///
    /// C: the buffer sizes of `netlistener_register4()`, `netlistener_set_default_file_mode()`
    pub fn set_listener_default(
        &mut self,
        kind: &str,
        slot: Slot,
        default: &str,
    ) -> Result<(), ConfigError> {
        let def = self.def(slot);
        let name = def.name;
        let i = match self.kind_index.get(&kind.to_ascii_lowercase()) {
            Some(&i) if self.kinds[i].kind == ScopeKind::Listener => i,
            _ => return Err(schema_err(name, format!("{kind} is no listener kind"))),
        };
        let k = self.kinds[i].name.as_str();
        let classes = [
            ScopeClass::Listener(k),
            ScopeClass::Listen(k),
            ScopeClass::Peer(k),
        ];
        if !classes.iter().any(|c| applies(def, *c)) {
            return Err(schema_err(name, format!("not an option of {k}")));
        }
        let value = def
            .ty
            .parse(default)
            .map_err(|e| schema_err(name, format!("bad default for {k}: {e}")))?;
        if let Some(v) = def.validator {
            v(&value).map_err(|e| schema_err(name, format!("bad default for {k}: {e}")))?;
        }
        let defaults = &mut self.kinds[i].defaults;
        defaults.retain(|(s, _)| *s != slot);
        defaults.push((slot, value));
        Ok(())
    }

    /// The default of `slot` for listener kind `kind`: its own ([`Schema::set_listener_default`])
    /// or the option's.
    pub fn listener_default(&self, kind: &str, slot: Slot) -> &Value {
        self.kind_default(self.kind_position(kind), slot)
    }

    /// The position of kind `name` (any case) among the kinds, without allocating (a chain
    /// is resolved per session); `u32::MAX` for none.
    pub(crate) fn kind_position(&self, name: &str) -> u32 {
        self.kinds
            .iter()
            .position(|k| k.name.eq_ignore_ascii_case(name))
            .map_or(u32::MAX, |i| i as u32)
    }

    /// The default of `slot` for the kind at `position` ([`Schema::kind_position`]).
    pub(crate) fn kind_default(&self, position: u32, slot: Slot) -> &Value {
        let own = self.kinds.get(position as usize).and_then(|k| {
            k.defaults
                .iter()
                .find_map(|(s, v)| (*s == slot).then_some(v))
        });
        own.unwrap_or_else(|| self.default_value(slot))
    }

    /// The registered kind of `name` (any case) and its canonical spelling.
    pub fn scope_kind(&self, name: &str) -> Option<(&str, ScopeKind)> {
        let i = *self.kind_index.get(&name.to_ascii_lowercase())?;
        Some((&self.kinds[i].name, self.kinds[i].kind))
    }

    /// Registers an option and returns its slot.
    ///
    /// C: `ec_config_register_option()`
    pub fn register_option(&mut self, def: OptionDef) -> Result<Slot, ConfigError> {
        let name = def.name;
        if !valid_name(name) {
            return Err(schema_err(name, "bad option name".to_string()));
        }
        if def.scopes.0 == 0 {
            return Err(schema_err(name, "valid in no scope".to_string()));
        }
        let default = def
            .ty
            .parse(def.default)
            .map_err(|e| schema_err(name, format!("bad default: {e}")))?;
        if let Some(v) = def.validator {
            v(&default).map_err(|e| schema_err(name, format!("bad default: {e}")))?;
        }
        self.check_owner(&def)?;
        let key = name.to_ascii_lowercase();
        for other in self.by_name.get(&key).into_iter().flatten() {
            if self.overlaps(&self.defs[other.index()], &def) {
                return Err(schema_err(
                    name,
                    "already registered for these scopes".into(),
                ));
            }
        }
        let slot = Slot(self.defs.len() as u32);
        self.defs.push(def);
        self.defaults.push(default);
        self.by_name.entry(key).or_default().push(slot);
        Ok(slot)
    }

    fn check_owner(&self, def: &OptionDef) -> Result<(), ConfigError> {
        let owner_kind = match def.owner {
            None => None,
            Some(o) => match self.scope_kind(o) {
                Some((_, k)) => Some(k),
                None => return Err(schema_err(def.name, format!("unknown owner scope {o}"))),
            },
        };
        let module = def.scopes.intersects(Scopes::MODULE);
        let listener = def.scopes.intersects(Scopes::LISTENER_ALL);
        match owner_kind {
            Some(ScopeKind::Module) if listener => Err(schema_err(
                def.name,
                "a module option cannot be set in listeners".into(),
            )),
            Some(ScopeKind::Listener) if module => Err(schema_err(
                def.name,
                "a listener option cannot be set in modules".into(),
            )),
            None if module => Err(schema_err(def.name, "MODULE needs an owner".into())),
            _ => Ok(()),
        }
    }

    fn overlaps(&self, a: &OptionDef, b: &OptionDef) -> bool {
        let common = Scopes(a.scopes.0 & b.scopes.0);
        if common.intersects(Scopes(
            Scopes::GLOBAL.0 | Scopes::PATHWAY.0 | Scopes::PATHWAY_GROUP.0 | Scopes::THREADPOOL.0,
        )) {
            return true;
        }
        if !common.intersects(Scopes::LISTENER_ALL | Scopes::MODULE) {
            return false;
        }
        match (a.owner, b.owner) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => true,
        }
    }

    /// The slot of option `name` (any case) valid in a section of class `class`.
    pub fn slot(&self, name: &str, class: ScopeClass<'_>) -> Option<Slot> {
        self.by_name
            .get(&name.to_ascii_lowercase())?
            .iter()
            .copied()
            .find(|s| applies(&self.defs[s.index()], class))
    }

    /// Where option `name` may be set, for messages: `global, ESMTP_Listener Peer, Pathway`.
    pub fn where_valid(&self, name: &str) -> String {
        let mut places: Vec<String> = Vec::new();
        for slot in self
            .by_name
            .get(&name.to_ascii_lowercase())
            .into_iter()
            .flatten()
        {
            let d = &self.defs[slot.index()];
            let owner = d.owner.unwrap_or("<Type>_Listener");
            let names = [
                (Scopes::GLOBAL, "global".to_string()),
                (Scopes::LISTENER, owner.to_string()),
                (Scopes::LISTEN, format!("{owner} Listen")),
                (Scopes::PEER, format!("{owner} Peer")),
                (Scopes::PATHWAY, "Pathway".to_string()),
                (Scopes::PATHWAY_GROUP, "Pathway_Group".to_string()),
                (Scopes::THREADPOOL, "ThreadPool".to_string()),
                (Scopes::MODULE, owner.to_string()),
            ];
            for (bit, place) in names {
                if d.scopes.contains(bit) && !places.contains(&place) {
                    places.push(place);
                }
            }
        }
        places.join(", ")
    }

    /// True when some option of this name (any case) is registered, wherever it is valid.
    pub fn is_known(&self, name: &str) -> bool {
        self.by_name.contains_key(&name.to_ascii_lowercase())
    }

    /// The definition behind a slot.
    pub fn def(&self, slot: Slot) -> &OptionDef {
        match self.defs.get(slot.index()) {
            Some(d) => d,
            None => panic!("Schema::def: slot {} is not from this schema", slot.0),
        }
    }

    /// The parsed default of a slot.
    pub fn default_value(&self, slot: Slot) -> &Value {
        match self.defaults.get(slot.index()) {
            Some(v) => v,
            None => panic!(
                "Schema::default_value: slot {} is not from this schema",
                slot.0
            ),
        }
    }

    /// Every option in registration order, for help listings and man pages.
    pub fn options(&self) -> impl Iterator<Item = (Slot, &OptionDef)> + '_ {
        self.defs
            .iter()
            .enumerate()
            .map(|(i, d)| (Slot(i as u32), d))
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// True when no option is registered (never, after [`Schema::new`]).
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The slot of the built-in `Pathway` option.
    pub fn pathway_slot(&self) -> Slot {
        self.pathway_slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let mut s = Schema::new();
        s.register_scope_kind("ESMTP_Listener", ScopeKind::Listener)
            .unwrap();
        s.register_scope_kind("Echo_Listener", ScopeKind::Listener)
            .unwrap();
        s.register_scope_kind("Maildir", ScopeKind::Module).unwrap();
        s
    }

    #[test]
    fn same_name_in_disjoint_scopes() {
        let mut s = schema();
        let ty = OptionType::Int { min: 0, max: 64 };
        let l = s
            .register_option(OptionDef::new(
                "Concurrency",
                ty,
                "0",
                Scopes::LISTENER | Scopes::LISTEN,
                "",
            ))
            .unwrap();
        let tp = s.slot("concurrency", ScopeClass::ThreadPool).unwrap();
        assert_ne!(l, tp);
        assert_eq!(
            s.slot("CONCURRENCY", ScopeClass::Listen("esmtp_listener")),
            Some(l)
        );
        assert_eq!(
            s.slot("Concurrency", ScopeClass::Peer("ESMTP_Listener")),
            None
        );
        let again = OptionDef::new("Concurrency", ty, "0", Scopes::LISTEN, "");
        assert!(s.register_option(again).is_err());
    }

    #[test]
    fn owners_limit_listener_kinds() {
        let mut s = schema();
        let mut d = OptionDef::new(
            "SMTP_Extensions",
            OptionType::List,
            "",
            Scopes::LISTENER_ALL,
            "",
        );
        d.owner = Some("ESMTP_Listener");
        let slot = s.register_option(d.clone()).unwrap();
        assert_eq!(
            s.slot("smtp_extensions", ScopeClass::Peer("ESMTP_Listener")),
            Some(slot)
        );
        assert_eq!(
            s.slot("smtp_extensions", ScopeClass::Listener("Echo_Listener")),
            None
        );
        d.owner = Some("Echo_Listener");
        assert!(s.register_option(d.clone()).is_ok(), "disjoint owner");
        d.owner = None;
        assert!(s.register_option(d).is_err(), "common overlaps both");
    }

    #[test]
    fn defaults_are_validated() {
        let mut s = schema();
        let bad = OptionDef::new("X", OptionType::Bool, "perhaps", Scopes::GLOBAL, "");
        assert!(s
            .register_option(bad)
            .unwrap_err()
            .reason
            .contains("bad default"));
        let mut v = OptionDef::new(
            "Y",
            OptionType::Int { min: 0, max: 9 },
            "3",
            Scopes::GLOBAL,
            "",
        );
        v.validator = Some(|v| {
            if v.as_int() % 2 == 0 {
                Ok(())
            } else {
                Err("odd".into())
            }
        });
        assert!(s.register_option(v).is_err());
        let m = OptionDef::new("Z", OptionType::Str, "", Scopes::MODULE, "");
        assert!(s.register_option(m).is_err(), "module option without owner");
    }

    /// The pools' configuration defaults are the sizes the scheduler gives a pool it creates
    /// on first use (`IO`, `CPU`), so `config eval` shows what runs.
    #[test]
    fn pool_defaults_are_the_schedulers() {
        let s = schema();
        let c = s.slot("Concurrency", ScopeClass::ThreadPool).unwrap();
        let cpu = crate::scheduler::cpu_pool_concurrency();
        assert_eq!(s.pool_default("cpu", c).as_int(), cpu as i64);
        let io = crate::scheduler::IO_POOL_CONCURRENCY as i64;
        assert_eq!(s.pool_default("IO", c).as_int(), io);
        assert_eq!(s.pool_default("other", c).as_int(), io);
    }

    #[test]
    fn kinds() {
        let mut s = schema();
        assert_eq!(
            s.scope_kind("esmtp_LISTENER"),
            Some(("ESMTP_Listener", ScopeKind::Listener))
        );
        assert!(s.register_scope_kind("Peer", ScopeKind::Module).is_err());
        assert!(s
            .register_scope_kind("esmtp_listener", ScopeKind::Listener)
            .is_err());
        assert!(s.register_scope_kind("Foo", ScopeKind::Listener).is_err());
    }
}
