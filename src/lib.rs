//! netlistener: Momentum's event API, scoped configuration and netlistener API in Rust.
#![deny(missing_docs)]

pub mod config;
pub mod modules;
