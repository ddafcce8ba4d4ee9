//! The ESMTP listener module (C: Momentum's `esmtp` module, `ESMTP_Listener`).
//!
//! This directory holds the SMTP receiver. The pieces that exist so far are pure and do no
//! I/O, so they can be tested byte for byte and driven by any event loop:
//!
//! - [`params`]: the per-session settings ([`params::Params`], [`params::Extensions`]);
//! - [`protocol`]: the sans-I/O ESMTP server session (RFC 5321 with PIPELINING, SIZE,
//!   8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8 and CHUNKING);
//! - [`received`]: the `Received:` trace header and the RFC 5322 date it carries.
//!
//! Contract: nothing here touches sockets, threads or the configuration system; the glue that
//! registers `ESMTP_Listener` fills [`protocol::Params`] from the configuration and owns the
//! socket, the shared read buffer and the delivery.
//!
//! Diagnostics: nothing in this module logs; refusals are SMTP replies.
mod command;
pub mod params;
pub mod protocol;
pub mod received;
mod reply;
mod scan;
