//! C: the restart-required check of a configuration transaction (reload, `config set`)
//!
//! Restart-required options: what a new generation would change in running objects, and
//! keeping their running values.
//!
//! A restart-required option ([`OptionDef::restart_required`]) is read once, when the object
//! it configures starts: a thread pool's threads, a Listen's socket, the daemon itself. A new
//! generation must not change the value such an object *resolves*, wherever the change comes
//! from: the object's own scope, an enclosing scope (a new `[ESMTP_Listener]` section above a
//! running Listen), a pathway, or the global scope. So the comparison is per running object,
//! by resolved value, not per scope: the `IO` and `CPU` pools run without any section, and a
//! section added for them must not slip a new value past the check.
//!
//! The running objects of a generation: the daemon (options valid only in the global scope),
//! every registered module scope, every thread pool ([`Generation::threadpools`]: `IO` and
//! `CPU` always) and every Listen instance ([`Generation::listens`]).
//!
//! Contract:
//! - [`conflicts`] compares the old and the new generation per running object and option; an
//!   object absent from the new generation is not compared (it stops; one that appears starts
//!   with the new values).
//! - [`keep_running`] rebuilds the new generation with each conflicting object's running value
//!   kept in the most specific scope of that object where the option is valid (its own scope,
//!   created if need be), so that it resolves to its old value while new objects get the new
//!   one, and returns it with one warning per conflict.
//!
//! Diagnostics: nothing is logged here; warnings are returned on the generation (reload), and
//! `config set`/`unset` turn the first conflict into an error ([`Conflict::refusal`]).

use std::sync::Arc;

use super::error::{ConfigError, ConfigErrors};
use super::generation::{Draft, Entry, Fetched, Generation, Origin};
use super::schema::{applies, OptionDef, Schema, ScopeClass, Scopes, Slot};
use super::scope::ScopePath;
use super::types::{ListenAddr, Value};

/// Something that reads its restart-required options once, when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Object {
    /// The daemon: options valid in the global scope only.
    Global,
    /// A module scope.
    Module(String),
    /// A thread pool.
    Pool(String),
    /// A Listen instance (its socket).
    Listen { kind: String, addr: ListenAddr },
}

impl Object {
    /// The object's own scope: its name in messages, and the first place a kept value goes.
    fn own(&self) -> ScopePath {
        match self {
            Object::Global => ScopePath::Global,
            Object::Module(m) => ScopePath::Module(m.clone()),
            Object::Pool(p) => ScopePath::ThreadPool(p.clone()),
            Object::Listen { kind, addr } => ScopePath::Listener {
                kind: kind.clone(),
                listen: Some(addr.clone()),
                peer: None,
            },
        }
    }

    /// Where a kept value may be written, most specific first (never a pathway: that would
    /// change every listener using it).
    fn targets(&self) -> Vec<ScopePath> {
        let mut v = vec![self.own()];
        if let Object::Listen { kind, .. } = self {
            v.push(ScopePath::Listener {
                kind: kind.clone(),
                listen: None,
                peer: None,
            });
        }
        if *self != Object::Global {
            v.push(ScopePath::Global);
        }
        v
    }

    /// True when `def` configures this kind of object.
    fn reads(&self, def: &OptionDef) -> bool {
        let elsewhere = Scopes::LISTENER_ALL
            | Scopes::THREADPOOL
            | Scopes::MODULE
            | Scopes::PATHWAY
            | Scopes::PATHWAY_GROUP;
        match self {
            Object::Global => {
                def.scopes.contains(Scopes::GLOBAL) && !def.scopes.intersects(elsewhere)
            }
            Object::Module(m) => applies(def, ScopeClass::Module(m)),
            Object::Pool(_) => applies(def, ScopeClass::ThreadPool),
            Object::Listen { kind, .. } => {
                applies(def, ScopeClass::Listen(kind)) || applies(def, ScopeClass::Listener(kind))
            }
        }
    }

    /// The value the object reads, with its fallback, and the scope that supplied it.
    fn resolve<'g>(&self, g: &'g Generation, slot: Slot) -> Fetched<'g> {
        match self {
            Object::Global => g.global_fetch(slot),
            Object::Module(m) => g.module_fetch(m, slot),
            Object::Pool(p) => g.threadpool_fetch(p, slot),
            Object::Listen { kind, addr } => g.fetch(slot, kind, Some(addr), None),
        }
    }

    fn exists_in(&self, g: &Generation) -> bool {
        match self {
            Object::Global | Object::Module(_) => true,
            Object::Pool(p) => g.threadpools().iter().any(|n| n.eq_ignore_ascii_case(p)),
            Object::Listen { kind, addr } => g.listens(kind).contains(addr),
        }
    }
}

/// The running objects of a generation.
fn running(schema: &Schema, g: &Generation) -> Vec<Object> {
    let mut v = vec![Object::Global];
    v.extend(
        schema
            .module_scopes()
            .map(|m| Object::Module(m.to_string())),
    );
    v.extend(g.threadpools().into_iter().map(Object::Pool));
    for kind in g.listener_kinds() {
        for addr in g.listens(&kind) {
            let kind = kind.clone();
            v.push(Object::Listen { kind, addr });
        }
    }
    v
}

/// A restart-required value that a new generation would change for a running object.
#[derive(Debug)]
pub(crate) struct Conflict {
    object: Object,
    /// The option.
    pub slot: Slot,
    /// The running value.
    old: Value,
    /// Where the running value was written (`None`: it is the default).
    old_at: Option<(ScopePath, Origin)>,
    /// Where the new value was written (`None`: it is the default).
    new_at: Option<(ScopePath, Origin)>,
}

/// Where the value a fetch found was written; `None` for the default, including a default
/// that an earlier reload had to write down to keep it ([`Origin::none`]).
fn written_at(g: &Generation, f: &Fetched<'_>, slot: Slot) -> Option<(ScopePath, Origin)> {
    let path = g.scope_path(f.scope)?.clone();
    let origin = g.origin(f.scope, slot)?;
    (!origin.file.is_empty()).then(|| (path, origin.clone()))
}

/// Every restart-required value `new` would change for an object running under `old`.
pub(crate) fn conflicts(schema: &Schema, old: &Generation, new: &Generation) -> Vec<Conflict> {
    let restart: Vec<(Slot, &OptionDef)> = schema
        .options()
        .filter(|(_, d)| d.restart_required)
        .collect();
    let mut out = Vec::new();
    if restart.is_empty() {
        return out;
    }
    for object in running(schema, old) {
        if !object.exists_in(new) {
            continue;
        }
        for &(slot, _) in restart.iter().filter(|(_, d)| object.reads(d)) {
            let (o, n) = (object.resolve(old, slot), object.resolve(new, slot));
            if o.value == n.value {
                continue;
            }
            out.push(Conflict {
                object: object.clone(),
                slot,
                old: o.value.clone(),
                old_at: written_at(old, &o, slot),
                new_at: written_at(new, &n, slot),
            });
        }
    }
    out
}

impl Conflict {
    /// " for <object>" when the change was written in another scope than the object's own.
    fn whom(&self, path: &ScopePath) -> String {
        let own = self.object.own();
        if path.key() == own.key() {
            String::new()
        } else {
            format!(" for {own}")
        }
    }

    /// The reload warning, at the line that made the change (the new value's, or the removed
    /// old one's).
    pub fn warning(&self, schema: &Schema) -> ConfigError {
        let (path, origin) = match self.new_at.as_ref().or(self.old_at.as_ref()) {
            Some((p, o)) => (p.clone(), o.clone()),
            // Unreachable: two defaults of one slot are equal.
            None => (self.object.own(), Origin::none()),
        };
        let kept = match &self.old_at {
            Some(_) => self.old.to_string(),
            None => format!("the default {}", self.old),
        };
        ConfigError {
            path: origin.file.to_string(),
            line: origin.line,
            section: match &path {
                ScopePath::Global => String::new(),
                p => p.to_string(),
            },
            option: schema.def(self.slot).name.to_string(),
            reason: format!(
                "changed{}, but takes effect only after a restart; keeping {kept}",
                self.whom(&path)
            ),
        }
    }

    /// Why `config set`/`unset` in `path` is refused.
    pub fn refusal(&self, path: &ScopePath) -> String {
        let whom = self.whom(path);
        let whom = whom
            .strip_prefix(" for ")
            .map(|o| format!(" (it would change {o})"));
        format!(
            "takes effect only after a restart{}; change it in the file",
            whom.unwrap_or_default()
        )
    }

    /// Writes the running value back into `draft`, in the object's most specific scope where
    /// the option is valid. A running default is restored by removing the new value there, or,
    /// with `explicit` (a less specific scope still supplies one), by writing the default.
    fn keep(&self, schema: &Schema, draft: &mut Draft, explicit: bool) {
        let def = schema.def(self.slot);
        let Some(target) = self
            .object
            .targets()
            .into_iter()
            .find(|p| applies(def, p.class()))
        else {
            return;
        };
        let origin = match (&self.old_at, explicit) {
            (Some((_, origin)), _) => origin.clone(),
            (None, true) => Origin::none(),
            (None, false) => {
                if let Some(i) = draft.find(&target) {
                    draft.unset(i, self.slot);
                }
                return;
            }
        };
        // A kept value's scope is the object's own, its listener's or global: never a group.
        let i = draft
            .scope(&target)
            .expect("Conflict::keep: not a group pathway");
        let (slot, value) = (self.slot, self.old.clone());
        draft.set(
            i,
            Entry {
                slot,
                value,
                origin,
            },
        );
    }
}

/// `new` with the running value of every restart-required option kept for the objects running
/// under `old`, and a warning for each; `new` itself when nothing conflicts.
pub(crate) fn keep_running(
    schema: &Arc<Schema>,
    old: &Generation,
    new: Generation,
) -> Result<Generation, ConfigErrors> {
    let found = conflicts(schema, old, &new);
    if found.is_empty() {
        return Ok(new);
    }
    let mut warnings = new.warnings().to_vec();
    warnings.extend(found.iter().map(|c| c.warning(schema)));
    let number = new.number();
    let rebuild = |g: &Generation, cs: &[Conflict], explicit: bool| {
        let mut draft = Draft::from_generation(g);
        for c in cs {
            c.keep(schema, &mut draft, explicit);
        }
        Generation::build(Arc::clone(schema), draft, number, warnings.clone())
    };
    let g = rebuild(&new, &found, false)?;
    // Removing a new value can uncover another one further out (a new global value, say):
    // those objects get their running default written explicitly.
    let left = conflicts(schema, old, &g);
    if left.is_empty() {
        return Ok(g);
    }
    rebuild(&g, &left, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OptionType, ScopeKind};

    #[test]
    fn each_option_belongs_to_the_objects_it_configures() {
        let mut schema = Schema::new();
        schema
            .register_scope_kind("Echo_Listener", ScopeKind::Listener)
            .unwrap();
        let def = |scopes| OptionDef::new("X", OptionType::Bool, "no", scopes, "");
        let listen = Object::Listen {
            kind: "Echo_Listener".into(),
            addr: "127.0.0.1:7".parse().unwrap(),
        };
        let pool = Object::Pool("IO".into());
        let global_only = def(Scopes::GLOBAL);
        assert!(Object::Global.reads(&global_only));
        assert!(!listen.reads(&global_only) && !pool.reads(&global_only));
        // A listener option with a global fallback configures Listens, not the daemon.
        let socket = def(Scopes::GLOBAL | Scopes::LISTENER | Scopes::LISTEN);
        assert!(listen.reads(&socket) && !Object::Global.reads(&socket));
        assert!(pool.reads(&def(Scopes::THREADPOOL)) && !listen.reads(&def(Scopes::THREADPOOL)));
        assert!(
            !listen.reads(&def(Scopes::PEER)),
            "per-peer values are not socket settings"
        );
        let targets: Vec<String> = listen.targets().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            targets,
            [
                "Echo_Listener Listen \"127.0.0.1:7\"",
                "Echo_Listener",
                "global"
            ]
        );
    }
}
