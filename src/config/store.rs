//! C: `ec_config_fetch_globalconf()`, `ec_config_release()`, the reload transaction
//!
//! The configuration store: the current generation, reloads, and runtime `set`/`unset`.
//!
//! A [`ConfigStore`] holds the generation in force behind a `RwLock<Arc<Generation>>`:
//! [`ConfigStore::current`] is a read lock and an `Arc` clone, safe and cheap from any thread.
//! [`ConfigStore::reload`], [`ConfigStore::set`] and [`ConfigStore::unset`] build a complete new
//! generation off to the side and swap it in atomically; readers see the old or the new one,
//! never a mixture.
//!
//! Contract:
//! - Updates are serialised (one at a time); each success increments the generation number.
//! - On any error the current generation stays in force and the caller gets every error.
//! - Restart-required options: a reload that changes the value a running object resolves
//!   (a thread pool, `IO` and `CPU` included, a Listen, a module, the daemon), through
//!   whatever scope, keeps the running value, warns naming it, and commits the rest;
//!   `set`/`unset` that would do so are refused (see `restart.rs`). An object that disappears
//!   takes its values with it; one that appears starts with the new ones.
//! - `set`/`unset` change the running generation only; a later `reload` re-reads the files and
//!   drops them (as in Momentum). `unset` removes a value but never a scope: an empty
//!   `Listen` scope still means "listen here".
//! - [`ConfigStore::show`] renders INI text that loads to an equal generation
//!   ([`Generation::same_config`]).
//!
//! Diagnostics: `Err(ConfigErrors)` for every load or validation problem; warnings are logged
//! with `log::warn!` and kept in [`Generation::warnings`] (see [`ConfigStore::warnings`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::error::{ConfigError, ConfigErrors};
use super::generation::{Draft, Entry, Generation, Origin};
use super::load::{check_option, load_files, read_path, SourceFile};
use super::restart;
use super::schema::Schema;
use super::scope::{parse_scope_path, ScopePath};
use super::types::representable;

#[derive(Debug)]
enum Source {
    Path(PathBuf),
    Text { name: String, text: String },
}

/// The current generation and the means to replace it.
///
/// C: the global configuration behind `ec_config_fetch_globalconf()`
#[derive(Debug)]
pub struct ConfigStore {
    schema: Arc<Schema>,
    source: Source,
    current: RwLock<Arc<Generation>>,
    update: Mutex<()>,
}

fn console_err(path: &ScopePath, option: &str, reason: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        path: "<console>".to_string(),
        line: 0,
        section: match path {
            ScopePath::Global => String::new(),
            p => p.to_string(),
        },
        option: option.to_string(),
        reason,
    }])
}

impl ConfigStore {
    /// Loads a file, or a directory of `*.conf` files, as generation 1.
    pub fn load(schema: Arc<Schema>, path: &Path) -> Result<ConfigStore, ConfigErrors> {
        ConfigStore::create(schema, Source::Path(path.to_path_buf()))
    }

    /// Loads configuration text (named `name` in messages) as generation 1.
    pub fn from_str(
        schema: Arc<Schema>,
        name: &str,
        text: &str,
    ) -> Result<ConfigStore, ConfigErrors> {
        let source = Source::Text {
            name: name.to_string(),
            text: text.to_string(),
        };
        ConfigStore::create(schema, source)
    }

    fn create(schema: Arc<Schema>, source: Source) -> Result<ConfigStore, ConfigErrors> {
        let (draft, errors) = read_source(&schema, &source)?;
        let generation = build(&schema, draft, errors, 1, Vec::new())?;
        for w in generation.warnings() {
            log::warn!("{w}");
        }
        Ok(ConfigStore {
            schema,
            source,
            current: RwLock::new(Arc::new(generation)),
            update: Mutex::new(()),
        })
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The generation in force; keep the `Arc` for as long as a session needs a stable view.
    ///
    /// C: `ec_config_fetch_globalconf()` (the release is the `Arc`'s `Drop`)
    pub fn current(&self) -> Arc<Generation> {
        // A writer panicking while holding the lock cannot leave a torn generation (the swap is
        // one assignment), so a poisoned lock is still safe to read.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Warnings of the generation in force (Pool_Name fallbacks, restart-required values kept).
    pub fn warnings(&self) -> Vec<ConfigError> {
        self.current().warnings().to_vec()
    }

    fn commit(&self, g: Generation) -> Arc<Generation> {
        for w in g.warnings() {
            log::warn!("{w}");
        }
        let g = Arc::new(g);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&g);
        g
    }

    /// Re-reads the files (or text) and swaps the new generation in; on error the current one
    /// stays.
    pub fn reload(&self) -> Result<Arc<Generation>, ConfigErrors> {
        let _guard = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current();
        let (draft, errors) = read_source(&self.schema, &self.source)?;
        let g = build(&self.schema, draft, errors, old.number() + 1, Vec::new())?;
        let g = restart::keep_running(&self.schema, &old, g)?;
        log::info!("configuration generation {} in force", g.number());
        Ok(self.commit(g))
    }

    /// Sets `option` to `value` in the scope named by `scope_path` (a header without brackets;
    /// empty or `global` for the global scope), validated like a file.
    ///
    /// Refused: a value or scope instance that `show` could not write back ([`representable`]).
    /// The warnings of this update (a `Pool_Name` naming no `ThreadPool`) are the returned
    /// generation's [`Generation::warnings`]; they are logged too.
    pub fn set(
        &self,
        scope_path: &str,
        option: &str,
        value: &str,
    ) -> Result<Arc<Generation>, ConfigErrors> {
        let _guard = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current();
        let path = self.parse_path(scope_path, option)?;
        // What `show` could not write back is refused, so that show → load is always equal.
        if path.instances().iter().any(|i| !representable(i)) {
            let why = "a scope instance cannot hold line breaks, \" #\" or \" ;\"".to_string();
            return Err(console_err(&path, option, why));
        }
        if !representable(value) {
            let why = "a value cannot hold line breaks, \" #\" or \" ;\"".to_string();
            return Err(console_err(&path, option, why));
        }
        let (slot, value) = check_option(&self.schema, &path, option, value)
            .map_err(|e| console_err(&path, option, e))?;
        let mut draft = Draft::from_generation(&old);
        let scope = draft
            .scope(&path)
            .map_err(|why| console_err(&path, option, why))?;
        let origin = Origin {
            file: Arc::from("<console>"),
            line: 0,
        };
        draft.set(
            scope,
            Entry {
                slot,
                value,
                origin,
            },
        );
        let g = Generation::build(
            Arc::clone(&self.schema),
            draft,
            old.number() + 1,
            Vec::new(),
        )?;
        self.refuse_restart_change(&old, &g, &path)?;
        Ok(self.commit(g))
    }

    /// Removes `option` from exactly that scope (the scope itself stays). Warnings as for
    /// [`ConfigStore::set`].
    pub fn unset(&self, scope_path: &str, option: &str) -> Result<Arc<Generation>, ConfigErrors> {
        let _guard = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current();
        let path = self.parse_path(scope_path, option)?;
        let slot = self.schema.slot(option, path.class());
        let mut draft = Draft::from_generation(&old);
        let removed = match (slot, draft.find(&path)) {
            (Some(slot), Some(scope)) => draft.unset(scope, slot),
            _ => None,
        };
        if removed.is_none() {
            return Err(console_err(
                &path,
                option,
                "is not set in this scope".into(),
            ));
        }
        let g = Generation::build(
            Arc::clone(&self.schema),
            draft,
            old.number() + 1,
            Vec::new(),
        )?;
        self.refuse_restart_change(&old, &g, &path)?;
        Ok(self.commit(g))
    }

    fn parse_path(&self, scope_path: &str, option: &str) -> Result<ScopePath, ConfigErrors> {
        parse_scope_path(&self.schema, scope_path).map_err(|reason| {
            ConfigErrors(vec![ConfigError {
                path: "<console>".to_string(),
                line: 0,
                section: scope_path.trim().to_string(),
                option: option.to_string(),
                reason,
            }])
        })
    }

    /// `set`/`unset` may not change what a running object reads for a restart-required
    /// option (through whatever scope): the first such change is the error.
    fn refuse_restart_change(
        &self,
        old: &Generation,
        new: &Generation,
        path: &ScopePath,
    ) -> Result<(), ConfigErrors> {
        match restart::conflicts(&self.schema, old, new).first() {
            None => Ok(()),
            Some(c) => {
                let name = self.schema.def(c.slot).name;
                Err(console_err(path, name, c.refusal(path)))
            }
        }
    }

    /// The generation in force as INI text that loads to an equal generation.
    pub fn show(&self) -> String {
        render(&self.current())
    }
}

/// Reads and checks the source. Returns the draft and the errors found so far; reference
/// errors come later, from [`build`].
fn read_source(schema: &Schema, source: &Source) -> Result<(Draft, LoadErrors), ConfigErrors> {
    let (files, mut errors) = match source {
        Source::Path(p) => read_path(p),
        Source::Text { name, text } => {
            let file = SourceFile {
                name: name.clone(),
                text: text.clone(),
            };
            (vec![file], Vec::new())
        }
    };
    let draft = load_files(schema, &files, &mut errors);
    let files = files.into_iter().map(|f| f.name).collect();
    Ok((draft, LoadErrors { errors, files }))
}

/// Errors found while loading, and the files in load order (to sort all errors by file, line).
struct LoadErrors {
    errors: Vec<ConfigError>,
    files: Vec<String>,
}

/// Builds a generation, reporting load errors and reference errors together.
fn build(
    schema: &Arc<Schema>,
    draft: Draft,
    load: LoadErrors,
    number: u64,
    warnings: Vec<ConfigError>,
) -> Result<Generation, ConfigErrors> {
    let mut all = load.errors;
    match Generation::build(Arc::clone(schema), draft, number, warnings) {
        Ok(g) if all.is_empty() => return Ok(g),
        Ok(_) => {}
        Err(ConfigErrors(more)) => all.extend(more),
    }
    let files = load.files;
    all.sort_by_key(|e| (files.iter().position(|f| *f == e.path), e.line));
    Err(ConfigErrors(all))
}

/// Renders a generation as INI: global options first (no header), then each scope in order.
pub(crate) fn render(g: &Generation) -> String {
    let mut out = String::new();
    for (_, path, values) in g.scopes() {
        if *path != ScopePath::Global {
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "[{path}]");
        }
        for (slot, value) in values {
            let _ = writeln!(out, "{} = {}", g.schema().def(slot).name, value);
        }
    }
    out
}
