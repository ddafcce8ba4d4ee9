//! `netlistenerd`: the netlistener daemon (see `netlistenerd(8)`).
//!
//! All the work is in [`netlistener::daemon::daemon_main`], which a third-party daemon calls
//! with its own name and module table.

use netlistener::daemon::{daemon_main, DaemonInfo, BUILTIN_MODULES};

fn main() -> std::process::ExitCode {
    daemon_main(DaemonInfo::NETLISTENERD, BUILTIN_MODULES)
}
