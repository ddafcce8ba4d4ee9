//! netlistener: Momentum's event API, scoped configuration and netlistener API in Rust.
//!
//! # The model
//! One **scheduler** thread owns a poller ([`scheduler`]) and runs [`event::Event`]s: an fd or
//! a timer with a plain function-pointer callback that may swap itself (the listener → worker
//! idiom of the C API). Blocking work leaves the loop by **floating** an event to a named
//! [`threadpool`]. The **configuration** ([`config`]) is a scoped INI tree with fallback from
//! the most specific scope to the global one. The **netlistener** layer turns
//! `<Type>_Listener` stanzas into listening sockets, accept threads and sessions.
//!
//! # Dependencies
//! At run time exactly: `polling`, `libc`, `rust-ini`, `log`, `simple_logger`.
//!
//! # Platforms
//! | OS | poller backend (via `polling`) | notes |
//! |----|-------------------------------|-------|
//! | Linux, Android | epoll | `SO_PEERCRED`, `accept4`, `MSG_NOSIGNAL` |
//! | FreeBSD, NetBSD, OpenBSD, DragonFly | kqueue | `getpeereid`, `accept4` |
//! | macOS | kqueue | `accept` + `fcntl` for close-on-exec / non-blocking |
//! | other Unix | poll(2) | level mode only (the crate never uses edge mode) |
//!
//! The porting table from C names to Rust paths is in [`porting`].
#![deny(missing_docs)]

pub mod config;
pub mod daemon;
pub mod event;
pub mod modules;
pub mod netlistener;
pub mod porting;
pub mod scheduler;
pub mod sys;
pub mod threadpool;
pub mod timer;
