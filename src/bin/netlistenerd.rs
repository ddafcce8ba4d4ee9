//! `netlistenerd`: the netlistener daemon (see `netlistenerd(8)`).
//!
//! All the work is in [`netlistener::daemon::daemon_main`], which a third-party daemon calls
//! with its own module table.

fn main() -> std::process::ExitCode {
    netlistener::daemon::daemon_main(netlistener::daemon::BUILTIN_MODULES)
}
