//! C: the `config` console command family (`config eval`, `config get`, `config set`, …)
//!
//! The `config …` console commands, as library functions for the control listener.
//!
//! Grammar (`args` is everything after `config `); a scope path is written like a section
//! header without brackets, quotes around instances optional; an empty path, or `global`, is
//! the global scope:
//!
//! ```text
//! reload
//! show
//! eval  <scope path, Peer given as an IP or "unix"> <option>
//! get   <exact scope path> <option>
//! set   <exact scope path> <option> <value>      (quote a value holding spaces or commas)
//! unset <exact scope path> <option>
//! ```
//!
//! Contract: `eval` resolves with fallback and names the supplying scope
//! (`Idle_Time = 300 (from ESMTP_Listener Peer "10.0.0.0/8")`); `get` looks at that scope only
//! and says when the option is unset there; `set`/`unset` produce a new generation, validated
//! like a file; `reload` re-reads the configuration. A successful `set`, `unset` or `reload`
//! replies `ok: generation N`, followed by one `warning: …` line per warning of that update
//! (the same as [`Generation::warnings`] of the generation it returns).
//!
//! Diagnostics: `Err(text)` for usage mistakes and for every configuration error (one per line).

use super::generation::{Fetched, Generation};
use super::schema::{ScopeClass, Slot, BUILTIN_KINDS};
use super::scope::{parse_tokens, tokenize, ScopePath};
use super::store::ConfigStore;
use super::types::PeerAddr;

const USAGE: &str = "usage: config reload | show | eval <scope> <option> | get <scope> <option> \
                     | set <scope> <option> <value> | unset <scope> <option>";

/// Runs one `config` command and returns its reply text.
pub fn config_command(store: &ConfigStore, args: &str) -> Result<String, String> {
    let toks = tokenize(args)?;
    let Some((cmd, rest)) = toks.split_first() else {
        return Err(USAGE.to_string());
    };
    if let Some(word) = scope_in_option_place(store, cmd, rest) {
        return Err(format!(
            "{USAGE}\n({word} names a scope, not an option: is a word missing?)"
        ));
    }
    match (cmd.to_ascii_lowercase().as_str(), rest.len()) {
        ("show", 0) => Ok(store.show()),
        ("eval", n) if n >= 1 => eval(store, &rest[..n - 1], &rest[n - 1]),
        ("get", n) if n >= 1 => get(store, &rest[..n - 1], &rest[n - 1]),
        ("set", n) if n >= 2 => {
            let g = store
                .set(&requote(&rest[..n - 2]), &rest[n - 2], &rest[n - 1])
                .map_err(|e| e.to_string())?;
            Ok(committed(&g))
        }
        ("unset", n) if n >= 1 => {
            let g = store
                .unset(&requote(&rest[..n - 1]), &rest[n - 1])
                .map_err(|e| e.to_string())?;
            Ok(committed(&g))
        }
        ("reload", 0) => {
            let g = store.reload().map_err(|e| e.to_string())?;
            Ok(committed(&g))
        }
        _ => Err(USAGE.to_string()),
    }
}

/// The word where `cmd` expects an option name, when it names a scope kind and no option:
/// `set Echo_Listener Idle_Time` (value missing) would otherwise read `Echo_Listener` as a
/// global option and answer "unknown option".
fn scope_in_option_place<'t>(
    store: &ConfigStore,
    cmd: &str,
    rest: &'t [String],
) -> Option<&'t str> {
    let back = match cmd.to_ascii_lowercase().as_str() {
        "set" => 2,
        "unset" | "get" | "eval" => 1,
        _ => return None,
    };
    let word = rest.get(rest.len().checked_sub(back)?)?;
    let scope = word.eq_ignore_ascii_case("global")
        || BUILTIN_KINDS.iter().any(|k| k.eq_ignore_ascii_case(word))
        || store.schema().scope_kind(word).is_some();
    (scope && !store.schema().is_known(word)).then_some(word.as_str())
}

/// Joins tokens back into a scope path as the user would write it: a token is quoted only
/// when it holds blanks (or is empty), so that error messages show the path as typed.
fn requote(toks: &[String]) -> String {
    let quote = |t: &String| {
        if t.is_empty() || t.contains(char::is_whitespace) {
            format!("\"{t}\"")
        } else {
            t.clone()
        }
    };
    toks.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// The reply to a committed update: `ok: generation N`, then one `warning: …` line for each
/// warning of that update (a `Pool_Name` naming no pool, a restart-required value kept).
fn committed(g: &Generation) -> String {
    let mut out = format!("ok: generation {}", g.number());
    for w in g.warnings() {
        out.push_str(&format!("\nwarning: {w}"));
    }
    out
}

fn not_found(store: &ConfigStore, option: &str, path: &ScopePath) -> String {
    if store.schema().is_known(option) {
        let valid = store.schema().where_valid(option);
        format!("{option}: not valid in {path} (valid in: {valid})")
    } else {
        format!("{option}: unknown option")
    }
}

fn eval(store: &ConfigStore, path: &[String], option: &str) -> Result<String, String> {
    let g = store.current();
    let schema = g.schema();
    let raw = parse_tokens(schema, path)?;
    let peer = match &raw.peer {
        Some(t) => Some(t.parse::<PeerAddr>()?),
        None => None,
    };
    let classes: Vec<ScopeClass<'_>> = match &raw.path {
        ScopePath::Listener { kind, .. } => vec![
            ScopeClass::Peer(kind),
            ScopeClass::Listen(kind),
            ScopeClass::Listener(kind),
            ScopeClass::Pathway,
            ScopeClass::PathwayGroup,
            ScopeClass::Global,
        ],
        ScopePath::Pathway(_) | ScopePath::GroupPathway { .. } => {
            vec![
                ScopeClass::Pathway,
                ScopeClass::PathwayGroup,
                ScopeClass::Global,
            ]
        }
        p => vec![p.class(), ScopeClass::Global],
    };
    let slot: Slot = classes
        .into_iter()
        .find_map(|c| schema.slot(option, c))
        .ok_or_else(|| not_found(store, option, &raw.path))?;
    let f = resolve(&g, &raw.path, peer.as_ref(), slot);
    Ok(format!(
        "{} = {} (from {})",
        schema.def(slot).name,
        f.value,
        g.scope_name(f.scope)
    ))
}

fn resolve<'g>(
    g: &'g Generation,
    path: &ScopePath,
    peer: Option<&PeerAddr>,
    slot: Slot,
) -> Fetched<'g> {
    match path {
        ScopePath::Listener { kind, listen, .. } => g.fetch(slot, kind, listen.as_ref(), peer),
        ScopePath::Pathway(p) | ScopePath::GroupPathway { pathway: p, .. } => {
            g.fetch_in(&g.pathway_chain_of(p), slot)
        }
        // The pool's own default: the CPU pool runs one thread per CPU.
        ScopePath::ThreadPool(p) => g.threadpool_fetch(p, slot),
        // Global, a module, a pathway group: its own scope, then global, then the default.
        other => g.own_then_global(g.scope_id(other), slot, g.schema().default_value(slot)),
    }
}

fn get(store: &ConfigStore, path: &[String], option: &str) -> Result<String, String> {
    let g = store.current();
    let schema = g.schema();
    let path = super::scope::parse_scope_path(schema, &requote(path))?;
    let slot = schema
        .slot(option, path.class())
        .ok_or_else(|| not_found(store, option, &path))?;
    let name = schema.def(slot).name;
    Ok(match g.get(&path, slot) {
        Some(v) => format!("{name} = {v}"),
        None => format!("{name} is not set in {path}"),
    })
}
