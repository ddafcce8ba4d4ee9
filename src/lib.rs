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
//! | Linux, Android | epoll | `SO_PEERCRED`, `accept4`, `MSG_NOSIGNAL`; errno via `__errno_location` |
//! | FreeBSD, DragonFly | kqueue | `getpeereid`, `accept4`; errno via `__error` |
//! | NetBSD, OpenBSD | kqueue | `getpeereid`, `accept4`; errno via `__errno` |
//! | macOS, iOS | kqueue | `accept` + `fcntl` for close-on-exec / non-blocking; errno via `__error` |
//!
//! Other Unixes do not build yet: the signal handler saves and restores `errno`, and
//! `sys.rs` knows where errno lives only on the systems above (elsewhere a `compile_error!`
//! says so). A port adds its errno accessor there, checks the other `cfg` lists in `sys.rs`,
//! and adds a row here. The crate registers fds in oneshot mode only (never edge), so
//! `polling`'s `poll(2)` backend, which such systems get, needs nothing more.
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
