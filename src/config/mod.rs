//! C: `ec_config_*` (`ec_config_register_option()`, `ec_config_fetch_globalconf()`,
//! `ec_config_option_fetch_generic()`)
//!
//! The scoped configuration system: typed options, INI loading, fallback and generations.
//!
//! The pieces, one C concept per file:
//!
//! | file            | what                                                   | C counterpart                         |
//! |-----------------|--------------------------------------------------------|---------------------------------------|
//! | `types.rs`      | [`OptionType`], [`Value`], [`Cidr`], [`ListenAddr`]    | `ECCFGTYPE_*`, `ec_config_value`      |
//! | `schema.rs`     | [`OptionDef`], [`Schema`], [`Slot`], [`Scopes`]        | `ec_config_option_def`, `ec_config_register_option()` |
//! | `scope.rs`      | [`ScopePath`]: section headers                         | scope/instance pairs                  |
//! | `load.rs`       | reading files, line numbers, option validation         | `ec_config_load()`                    |
//! | `generation.rs` | [`Generation`], fallback, [`Chain`]                    | `ec_config_option_fetch_generic()`    |
//! | `peers.rs`      | longest-prefix Peer lookup                             | Peer scope matching                   |
//! | `store.rs`      | [`ConfigStore`]: current generation, reload, set/unset | `ec_config_fetch_globalconf()`        |
//! | `restart.rs`    | restart-required values kept per running object        | the reload transaction's commit       |
//! | `console.rs`    | [`console::config_command`]                            | the `config` console command          |
//! | `error.rs`      | [`ConfigError`], [`ConfigErrors`]                      | error reporting                       |
//!
//! Fallback: a session takes each option from the first scope of its [`Chain`] that sets it:
//! the `<Type>_Listener Listen "addr" Peer "cidr"` blocks containing the peer (longest
//! matching prefix first, then shorter ones) → the `<Type>_Listener Peer "cidr"` blocks
//! (likewise) → `Listen "addr"` → `<Type>_Listener` → the pathway named by the `Pathway` option
//! (`Pathway_Group "g" Pathway "p"` → `Pathway "p"` → `Pathway_Group "g"`) → global → the
//! default (the listener kind's own, [`Schema::set_listener_default`], else the option's). See
//! [`Generation::fetch`]; [`Fetched::scope`] names the supplier.
//!
//! Contract: build a [`Schema`] (register listener kinds, module scopes and options, keeping the
//! returned [`Slot`]s), share it as `Arc<Schema>`, load a [`ConfigStore`], and on each session
//! take [`ConfigStore::current`] once and fetch from that generation.
//!
//! ```
//! use std::sync::Arc;
//! use netlistener::config::*;
//!
//! let mut schema = Schema::new();
//! schema.register_scope_kind("ESMTP_Listener", ScopeKind::Listener).unwrap();
//! let idle = schema
//!     .register_option(OptionDef::new(
//!         "Idle_Time",
//!         OptionType::Duration,
//!         "300",
//!         Scopes::GLOBAL | Scopes::LISTENER_ALL | Scopes::PATHWAY,
//!         "Seconds a session may stay idle",
//!     ))
//!     .unwrap();
//! let text = "[ESMTP_Listener]\nIdle_Time = 60\n\n[ESMTP_Listener Peer \"10.0.0.0/8\"]\nIdle_Time = 5\n";
//! let store = ConfigStore::from_str(Arc::new(schema), "example.conf", text).unwrap();
//! let generation = store.current();
//! let addr: ListenAddr = "127.0.0.1:0".parse().unwrap();
//! let peer = PeerAddr::Ip("10.1.2.3".parse().unwrap());
//! let f = generation.fetch(idle, "ESMTP_Listener", Some(&addr), Some(&peer));
//! assert_eq!(f.value.as_duration().as_secs(), 5);
//! assert_eq!(generation.scope_name(f.scope), "ESMTP_Listener Peer \"10.0.0.0/8\"");
//! ```
//!
//! Diagnostics: loading and updates return [`ConfigErrors`] (every problem, each as
//! `path:line: [section] option: reason`); warnings are logged and kept on the generation;
//! contract violations (wrong `Value` accessor, a `Chain` of another generation) panic.

pub mod console;
mod error;
mod generation;
mod load;
mod peers;
mod restart;
mod schema;
mod scope;
mod store;
mod types;

pub use error::{ConfigError, ConfigErrors};
pub use generation::{Chain, Fetched, Generation, ScopeId};
pub use schema::{OptionDef, RefKind, Schema, ScopeClass, ScopeKind, Scopes, Slot, Validator};
pub use scope::{parse_header, parse_scope_path, ScopePath};
pub use store::ConfigStore;
pub use types::{representable, Cidr, ListenAddr, OptionType, PeerAddr, Value};
