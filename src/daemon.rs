//! The daemon: command line, logging, module table, reload, drain and exit.
//!
//! C: Momentum's `ecelerity` main program: module loading (`conf_setup` of each module),
//! configuration load, the master loop, `SIGHUP` reload and orderly shutdown.
//!
//! # Summary
//! [`daemon_main`] is what `netlistenerd` runs, and what a third party's daemon built on this
//! library runs with its own module table (see `examples/custom_daemon.rs`):
//!
//! 1. parse `-c PATH`, `--check`, `--version`, `--log-level LEVEL`;
//! 2. create the scheduler, register the daemon's global options, run each module's
//!    `conf_setup` on the scheduler thread (in table order);
//! 3. load the configuration (every error printed as `path:line: …`, exit 1);
//! 4. open every Listen (a failure is exit 2, unless `Fatal_Listen_Errors = false`);
//! 5. run: `SIGHUP` and `config reload` reload; `SIGTERM`, `SIGINT` and the console's
//!    `shutdown` stop listening, let sessions finish up to `Shutdown_Timeout`, close the rest
//!    and exit 0.
//!
//! # Contract
//! One daemon per process (it owns the process's signals). Relative Unix socket paths are
//! resolved under `Runtime_Directory` (default `<temp dir>/netlistener-<uid>`, created 0700).
//!
//! # Diagnostics
//! Exit status 0 after a clean shutdown or a clean `--check`; 1 for configuration errors; 2 for
//! run-time failures (a Listen that cannot open at start-up, no poller). Reload errors are
//! logged and returned to the console; the running generation keeps serving.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Generation, OptionDef, OptionType, Scopes, Slot};
use crate::event::{Closure, Event, E_TIMEOUT};
use crate::netlistener::{self as nl, NetError};
use crate::scheduler::{self, Scheduler};

/// One entry of a daemon's static module table. C: a module's `conf_setup` hook.
#[derive(Clone, Copy, Debug)]
pub struct ModuleDef {
    /// The module's name (for logs).
    pub name: &'static str,
    /// Registers its listener types and options; runs on the scheduler thread before the
    /// configuration is loaded.
    pub conf_setup: fn() -> Result<(), NetError>,
}

/// The modules `netlistenerd` ships: the console, echo and SMTP.
pub const BUILTIN_MODULES: &[ModuleDef] = &[
    ModuleDef {
        name: "control",
        conf_setup: crate::modules::control::conf_setup,
    },
    ModuleDef {
        name: "echo",
        conf_setup: crate::modules::echo::conf_setup,
    },
    ModuleDef {
        name: "esmtp",
        conf_setup: crate::modules::esmtp::conf_setup,
    },
];

struct Slots {
    log_level: Slot,
    shutdown_timeout: Slot,
    runtime_dir: Slot,
}

struct DaemonState {
    slots: Slots,
    started: Instant,
    cli_log_level: bool,
    draining: Option<Instant>,
    exit: u8,
}

thread_local! {
    static STATE: RefCell<Option<DaemonState>> = const { RefCell::new(None) };
    static SHUTDOWN_REQUESTED: Cell<bool> = const { Cell::new(false) };
}

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `-c PATH`.
    pub config: Option<PathBuf>,
    /// `--check`.
    pub check: bool,
    /// `--version`.
    pub version: bool,
    /// `--log-level LEVEL`.
    pub log_level: Option<log::LevelFilter>,
    /// `-h`, `--help`.
    pub help: bool,
}

/// The usage text.
pub const USAGE: &str = "usage: netlistenerd [-c PATH] [--check] [--log-level LEVEL] [--version]
  -c PATH            configuration file, or directory of *.conf files
                     (default: ./conf.d if it exists, else /etc/netlistener)
  --check            validate the configuration and exit (0 clean, 1 errors)
  --log-level LEVEL  error, warn, info, debug or trace (overrides Log_Level)
  --version          print the version and exit
";

/// Parses the command line (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config" => a.config = Some(it.next().ok_or("-c needs a path")?.into()),
            "--check" => a.check = true,
            "--version" | "-V" => a.version = true,
            "-h" | "--help" => a.help = true,
            "--log-level" => {
                let v = it.next().ok_or("--log-level needs a level")?;
                a.log_level = Some(parse_level(&v)?);
            }
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(a)
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse::<log::LevelFilter>()
        .map_err(|_| format!("bad log level {s:?} (error, warn, info, debug, trace, off)"))
}

fn validate_level(v: &crate::config::Value) -> Result<(), String> {
    parse_level(v.as_str()).map(|_| ())
}

fn register_daemon_options() -> Result<Slots, NetError> {
    let mut level = OptionDef::new(
        "Log_Level",
        OptionType::Str,
        "info",
        Scopes::GLOBAL,
        "error, warn, info, debug or trace",
    );
    level.validator = Some(validate_level);
    let mut rd = OptionDef::new(
        "Runtime_Directory",
        OptionType::Str,
        "",
        Scopes::GLOBAL,
        "where relative Unix socket paths live (empty: <temp dir>/netlistener-<uid>)",
    );
    rd.restart_required = true;
    Ok(Slots {
        log_level: nl::register_config_option(level)?,
        shutdown_timeout: nl::register_config_option(OptionDef::new(
            "Shutdown_Timeout",
            OptionType::Duration,
            "30s",
            Scopes::GLOBAL,
            "how long sessions may finish after a shutdown request",
        ))?,
        runtime_dir: nl::register_config_option(rd)?,
    })
}

/// The default configuration path: `./conf.d` when it exists, else `/etc/netlistener`.
pub fn default_config_path() -> PathBuf {
    let local = Path::new("conf.d");
    if local.is_dir() {
        local.to_path_buf()
    } else {
        PathBuf::from("/etc/netlistener")
    }
}

/// The default runtime directory: `<temp dir>/netlistener-<euid>`.
pub fn default_runtime_dir() -> PathBuf {
    std::env::temp_dir().join(format!("netlistener-{}", crate::sys::geteuid()))
}

/// The daemon's main program, with `modules` as its module table.
pub fn daemon_main(modules: &[ModuleDef]) -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("netlistenerd: {e}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("netlistenerd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    ExitCode::from(run(&args, modules))
}

fn run(args: &Args, modules: &[ModuleDef]) -> u8 {
    crate::sys::ignore_sigpipe();
    if !args.check {
        init_logging(args.log_level.unwrap_or(log::LevelFilter::Info));
    }
    let sched = match Scheduler::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netlistenerd: cannot create the poller: {e}");
            return 2;
        }
    };
    let slots = match setup(modules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netlistenerd: module setup: {e}");
            return 2;
        }
    };
    let path = args.config.clone().unwrap_or_else(default_config_path);
    let store = match nl::netlistener_load_config(&path) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "netlistenerd: {}: {} configuration error(s)",
                path.display(),
                errors.0.len()
            );
            return 1;
        }
    };
    for w in store.warnings() {
        eprintln!("warning: {w}");
    }
    if args.check {
        println!("{}: configuration OK", path.display());
        return 0;
    }
    let gen = store.current();
    STATE.with(|s| {
        *s.borrow_mut() = Some(DaemonState {
            slots,
            started: Instant::now(),
            cli_log_level: args.log_level.is_some(),
            draining: None,
            exit: 0,
        })
    });
    apply_log_level(&gen);
    if let Err(code) = start(&gen) {
        return code;
    }
    log::info!(
        "netlistenerd {} started: pid {}, configuration {} (generation {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        path.display(),
        gen.number()
    );
    sched.run();
    let code = STATE.with(|s| s.borrow().as_ref().map_or(0, |d| d.exit));
    nl::netlistener_reset();
    code
}

fn setup(modules: &[ModuleDef]) -> Result<Slots, NetError> {
    let slots = register_daemon_options()?;
    for m in modules {
        (m.conf_setup)().map_err(|e| {
            NetError::Config(crate::config::ConfigError {
                path: String::new(),
                line: 0,
                section: String::new(),
                option: String::new(),
                reason: format!("module {}: {e}", m.name),
            })
        })?;
    }
    Ok(slots)
}

fn init_logging(level: log::LevelFilter) {
    // Timestamps in UTC: simple_logger's local-time offset is unsound to query with threads.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Trace)
        .with_utc_timestamps()
        .init();
    log::set_max_level(level);
}

fn start(gen: &Arc<Generation>) -> Result<(), u8> {
    let rd = runtime_dir(gen);
    if let Err(e) = std::fs::create_dir_all(&rd).and_then(|_| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rd, std::fs::Permissions::from_mode(0o700))
    }) {
        eprintln!("netlistenerd: runtime directory {}: {e}", rd.display());
        return Err(2);
    }
    let _ = nl::netlistener_set_runtime_dir(&rd);
    if let Err(e) = nl::netlistener_start() {
        eprintln!("netlistenerd: cannot start listening:\n{e}");
        log::error!("cannot start listening: {e}");
        return Err(2);
    }
    for (sig, cb) in [
        (libc::SIGHUP, on_hup as scheduler::SignalCallback),
        (libc::SIGTERM, on_term),
        (libc::SIGINT, on_term),
    ] {
        if let Err(e) = scheduler::on_signal(sig, cb) {
            eprintln!("netlistenerd: cannot install signal handler {sig}: {e}");
            return Err(2);
        }
    }
    Ok(())
}

fn runtime_dir(gen: &Generation) -> PathBuf {
    let slot = STATE.with(|s| s.borrow().as_ref().map(|d| d.slots.runtime_dir));
    match slot.map(|s| gen.global(s).as_str().to_string()) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_runtime_dir(),
    }
}

fn apply_log_level(gen: &Generation) {
    let (slot, cli) = STATE.with(|s| {
        s.borrow()
            .as_ref()
            .map_or((None, true), |d| (Some(d.slots.log_level), d.cli_log_level))
    });
    if let (Some(slot), false) = (slot, cli) {
        if let Ok(l) = parse_level(gen.global(slot).as_str()) {
            log::set_max_level(l);
        }
    }
}

/// Applies a new generation: Listens diffed, pools sized, log level set. Returns one
/// `warning: …` line per Listen that is now in a failed state (already logged), so the console
/// can show it next to its OK.
pub fn apply_generation(gen: &Arc<Generation>) -> String {
    apply_log_level(gen);
    if let Err(e) = nl::netlistener_apply(gen) {
        log::error!("applying configuration generation {}: {e}", gen.number());
    }
    nl::listeners_report()
        .into_iter()
        .filter(|r| r.state.starts_with("failed"))
        .map(|r| {
            format!(
                "warning: {} Listen \"{}\": {}\n",
                r.kind, r.address, r.state
            )
        })
        .collect()
}

/// Re-reads the configuration and applies it; on error the running generation stays and the
/// errors are logged and returned. C: the `SIGHUP` handler's work.
pub fn reload() -> Result<String, String> {
    let store = nl::netlistener_config().map_err(|e| e.to_string())?;
    match store.reload() {
        Ok(gen) => {
            let failed = apply_generation(&gen);
            log::info!("configuration reloaded: generation {}", gen.number());
            let mut out = format!(
                "configuration reloaded: generation {}\n{failed}",
                gen.number()
            );
            for w in gen.warnings() {
                log::warn!("{w}");
                out.push_str(&format!("warning: {w}\n"));
            }
            Ok(out)
        }
        Err(errors) => {
            for e in &errors.0 {
                log::error!("reload refused: {e}");
            }
            Err(format!(
                "reload refused; generation {} keeps serving:\n{errors}",
                store.current().number()
            ))
        }
    }
}

fn on_hup(_signo: i32, _now: Instant) {
    let _ = reload();
}

fn on_term(signo: i32, _now: Instant) {
    log::info!("signal {signo}: shutting down");
    request_shutdown();
}

/// Seconds since the daemon started.
pub fn uptime() -> Duration {
    STATE.with(|s| {
        s.borrow()
            .as_ref()
            .map_or(Duration::ZERO, |d| d.started.elapsed())
    })
}

/// Starts an orderly shutdown: stop listening, let sessions finish up to `Shutdown_Timeout`,
/// close the rest, stop the loop. Idempotent.
pub fn request_shutdown() {
    if SHUTDOWN_REQUESTED.with(|r| r.replace(true)) {
        return;
    }
    let timeout = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let d = s.as_mut()?;
        d.draining = Some(Instant::now());
        let gen = nl::ec_config_fetch_globalconf().ok()?;
        Some(gen.global(d.slots.shutdown_timeout).as_duration())
    });
    nl::netlistener_stop_listening();
    let deadline = Instant::now() + timeout.unwrap_or(Duration::ZERO);
    log::info!(
        "listeners closed; {} session(s) draining for up to {:?}",
        nl::active_sessions(),
        timeout.unwrap_or_default()
    );
    scheduler::schedule_recurring(Duration::from_millis(50), drain_tick, Box::new(deadline));
}

fn drain_tick(_e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    debug_assert!(et & E_TIMEOUT != 0);
    let deadline = *closure
        .downcast_mut::<Instant>()
        .expect("drain_tick: deadline");
    let active = nl::active_sessions();
    if active > 0 && now < deadline {
        return E_TIMEOUT;
    }
    if active > 0 {
        let n = nl::netlistener_close_sessions();
        log::warn!("shutdown deadline reached: closed {n} session(s)");
    }
    scheduler::shutdown_pools();
    log::info!("netlistenerd stopped");
    scheduler::stop_scheduler();
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn command_line() {
        let a = args(&["-c", "x.conf", "--check", "--log-level", "debug"]).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("x.conf")));
        assert!(a.check);
        assert_eq!(a.log_level, Some(log::LevelFilter::Debug));
        assert!(args(&["-c"]).is_err());
        assert!(args(&["--log-level", "loud"])
            .unwrap_err()
            .contains("bad log level"));
        assert_eq!(
            args(&["--frobnicate"]).unwrap_err(),
            "unknown argument: --frobnicate"
        );
    }
}
