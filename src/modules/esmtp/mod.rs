//! The ESMTP listener module (C: Momentum's `esmtp` module, `ESMTP_Listener`).
//!
//! This directory holds the SMTP receiver. The engine is pure and does no I/O, so it can be
//! tested byte for byte and driven by any event loop:
//!
//! - [`params`]: the per-session settings ([`params::Params`], [`params::Extensions`]);
//! - [`protocol`]: the sans-I/O ESMTP server session (RFC 5321 with PIPELINING, SIZE,
//!   8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8 and CHUNKING);
//! - [`received`]: the `Received:` trace header and the RFC 5322 date it carries.
//!
//! The glue that makes it a listener:
//!
//! - [`module`]: [`conf_setup`] registers `ESMTP_Listener`; sessions share one read buffer
//!   per scheduler thread and float to a thread pool for Maildir writes;
//! - [`options`]: the `ESMTP_Listener` options and the per-session snapshot;
//! - [`delivery`]: `discard` and durable Maildir delivery (group commit per Maildir).
//!
//! Contract: the engine modules touch no sockets, threads or configuration; only `module`,
//! `options` and `delivery` do. [`conf_setup`] runs on the scheduler thread before the
//! configuration is loaded.
//!
//! Diagnostics: the engine never logs (refusals are SMTP replies); the glue logs disk and pool
//! failures with `log::warn!`.
mod command;
pub mod delivery;
pub mod module;
pub mod options;
pub mod params;
pub mod protocol;
pub mod received;
mod reply;
mod scan;

pub use module::conf_setup;
