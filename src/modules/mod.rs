//! Listener modules built into the daemon (C: the Momentum modules `esmtp`, `echo`, `control`).
pub mod control;
pub mod echo;
pub mod esmtp;
