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
//! resolved under `Runtime_Directory` (default `$RUNTIME_DIRECTORY` when systemd sets it, else
//! `<temp dir>/netlistener-<uid>`). An absent runtime directory is created 0700; an existing
//! one must be a real directory (not a symbolic link) owned by the daemon's user and writable
//! by nobody else, or the daemon refuses to start: it never changes the mode of a directory it
//! did not create. Once a shutdown is requested, reloads (`SIGHUP`, `config reload`,
//! `config set|unset`) are refused: they would reopen the Listens the drain closed.
//!
//! # Diagnostics
//! Exit status 0 after a clean shutdown or a clean `--check`; 1 for configuration errors
//! (including a `-c` directory without `*.conf` files); 2 for run-time failures (a Listen that
//! cannot open at start-up, an unsafe runtime directory, no poller). Reload errors are logged
//! and returned to the console; the running generation keeps serving.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{Generation, OptionDef, OptionType, Scopes, Slot};
use crate::event::{Closure, Event, E_TIMEOUT};
use crate::netlistener::{self as nl, NetError};
use crate::scheduler::{self, Scheduler};

/// Who the daemon is: its name and version, for `--version`, the usage text, its logs and the
/// console's `version` and `summary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaemonInfo {
    /// The program name (`netlistenerd`).
    pub name: &'static str,
    /// Its version (`0.1.0`).
    pub version: &'static str,
}

impl DaemonInfo {
    /// `netlistenerd` and this crate's version.
    pub const NETLISTENERD: DaemonInfo = DaemonInfo {
        name: "netlistenerd",
        version: env!("CARGO_PKG_VERSION"),
    };
}

static INFO: OnceLock<DaemonInfo> = OnceLock::new();

/// The running daemon's [`DaemonInfo`] ([`DaemonInfo::NETLISTENERD`] before `daemon_main`).
pub fn daemon_info() -> DaemonInfo {
    INFO.get().copied().unwrap_or(DaemonInfo::NETLISTENERD)
}

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

/// The usage text of the daemon called `name`.
pub fn usage(name: &str) -> String {
    format!(
        "usage: {name} [-c PATH] [--check] [--log-level LEVEL] [--version] [--help]
  -c, --config PATH  configuration file, or directory of *.conf files
                     (default: ./conf.d if it exists, else /etc/netlistener)
  --check            validate the configuration and exit (0 clean, 1 errors)
  --log-level LEVEL  off, error, warn, info, debug or trace (overrides Log_Level)
  -V, --version      print the version and exit
  -h, --help         print this text and exit
"
    )
}

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
        "where relative Unix socket paths live (empty: $RUNTIME_DIRECTORY, else \
         <temp dir>/netlistener-<uid>)",
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

/// The default runtime directory of the daemon: `$RUNTIME_DIRECTORY` when set (systemd sets it
/// for a unit with `RuntimeDirectory=`), else [`temp_runtime_dir`].
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("RUNTIME_DIRECTORY") {
        // systemd may list several, separated by colons: the first is ours.
        Some(v) if !v.is_empty() => {
            let v = v.to_string_lossy().into_owned();
            PathBuf::from(v.split(':').next().unwrap_or(&v))
        }
        _ => temp_runtime_dir(),
    }
}

/// `<temp dir>/netlistener-<euid>`: the runtime directory when neither `Runtime_Directory` nor
/// `$RUNTIME_DIRECTORY` names one, writable without root.
pub fn temp_runtime_dir() -> PathBuf {
    std::env::temp_dir().join(format!("netlistener-{}", crate::sys::geteuid()))
}

/// The daemon's main program: `info` names it, `modules` is its module table.
///
/// C: the `ecelerity` main program.
pub fn daemon_main(info: DaemonInfo, modules: &[ModuleDef]) -> ExitCode {
    let info = *INFO.get_or_init(|| info);
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}: {e}\n{}", info.name, usage(info.name));
            return ExitCode::from(1);
        }
    };
    if args.help {
        print!("{}", usage(info.name));
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("{} {}", info.name, info.version);
        return ExitCode::SUCCESS;
    }
    ExitCode::from(run(&args, modules))
}

fn run(args: &Args, modules: &[ModuleDef]) -> u8 {
    let name = daemon_info().name;
    crate::sys::ignore_sigpipe();
    if !args.check {
        init_logging(args.log_level.unwrap_or(log::LevelFilter::Info));
    }
    let sched = match Scheduler::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: cannot create the poller: {e}");
            return 2;
        }
    };
    let slots = match setup(modules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: module setup: {e}");
            return 2;
        }
    };
    let path = args.config.clone().unwrap_or_else(default_config_path);
    let Some(store) = load(&path, args.check) else {
        return 1;
    };
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
            exit: 0,
        })
    });
    apply_log_level(&gen);
    if let Err(code) = start(&gen) {
        return code;
    }
    log::info!(
        "{name} {} started: pid {}, configuration {} (generation {})",
        daemon_info().version,
        std::process::id(),
        path.display(),
        gen.number()
    );
    sched.run();
    let code = STATE.with(|s| s.borrow().as_ref().map_or(0, |d| d.exit));
    nl::netlistener_reset();
    code
}

/// Loads the configuration at `path`; on errors prints every one and returns `None`. Warnings
/// are logged by the store; with `--check` (no logger) they are printed here.
fn load(path: &Path, check: bool) -> Option<Arc<crate::config::ConfigStore>> {
    let name = daemon_info().name;
    match nl::netlistener_load_config(path) {
        Ok(store) => {
            if check {
                for w in store.warnings() {
                    eprintln!("warning: {w}");
                }
            }
            Some(store)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            let n = errors.0.len();
            eprintln!("{name}: {}: {n} configuration error(s)", path.display());
            None
        }
    }
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
    let name = daemon_info().name;
    let rd = runtime_dir(gen);
    if let Err(e) = prepare_runtime_dir(&rd) {
        eprintln!("{name}: runtime directory {}: {e}", rd.display());
        log::error!("runtime directory {}: {e}", rd.display());
        return Err(2);
    }
    let _ = nl::netlistener_set_runtime_dir(&rd);
    if let Err(e) = nl::netlistener_start() {
        eprintln!("{name}: cannot start listening:\n{e}");
        log::error!("cannot start listening: {e}");
        return Err(2);
    }
    for (sig, cb) in [
        (libc::SIGHUP, on_hup as scheduler::SignalCallback),
        (libc::SIGTERM, on_term),
        (libc::SIGINT, on_term),
    ] {
        if let Err(e) = scheduler::on_signal(sig, cb) {
            eprintln!("{name}: cannot install signal handler {sig}: {e}");
            return Err(2);
        }
    }
    Ok(())
}

/// Makes `rd` ready for sockets. Absent: created 0700 (missing parents created normally).
/// Present: it must pass [`check_runtime_dir`] as it is; nothing is chmodded, since another
/// user may have planted it (a symlink to a directory of theirs, or a shared 1777 directory).
fn prepare_runtime_dir(rd: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(parent) = rd.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    // mkdir(2) does not follow a symlink in the last component: a planted one is EEXIST.
    match std::fs::DirBuilder::new().mode(0o700).create(rd) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    let m = std::fs::symlink_metadata(rd).map_err(|e| format!("cannot stat it: {e}"))?;
    let euid = crate::sys::geteuid();
    check_runtime_dir(
        m.file_type().is_symlink(),
        m.is_dir(),
        m.uid(),
        m.mode(),
        euid,
    )
    .map_err(|why| {
        format!(
            "{why}; refusing it (remove it, or set Runtime_Directory to a directory \
                 that only uid {euid} can write)"
        )
    })
}

/// The runtime directory rules on an `lstat(2)` of it: a directory (not a symbolic link),
/// owned by `euid`, writable by neither its group nor others.
fn check_runtime_dir(
    symlink: bool,
    dir: bool,
    uid: u32,
    mode: u32,
    euid: u32,
) -> Result<(), String> {
    if symlink {
        Err("is a symbolic link".to_string())
    } else if !dir {
        Err("is not a directory".to_string())
    } else if uid != euid {
        Err(format!(
            "is owned by uid {uid}, not by this daemon's uid {euid}"
        ))
    } else if mode & 0o022 != 0 {
        Err(format!(
            "is writable by its group or by others (mode {:04o})",
            mode & 0o7777
        ))
    } else {
        Ok(())
    }
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

/// Applies a new generation: Listens diffed, pools sized, log level set. Returns what changed
/// for the console to show next to its OK: one `closed …` / `opened …` line per Listen that
/// stopped or started listening, and one `warning: …` line per Listen now in a failed state
/// (already logged).
pub fn apply_generation(gen: &Arc<Generation>) -> String {
    apply_log_level(gen);
    let before = nl::listeners_report();
    if let Err(e) = nl::netlistener_apply(gen) {
        log::error!("applying configuration generation {}: {e}", gen.number());
    }
    listen_changes(&before, &nl::listeners_report())
}

/// The `closed`, `opened` and `warning` lines of [`apply_generation`], from the `listeners`
/// reports before and after.
fn listen_changes(before: &[nl::ListenReport], after: &[nl::ListenReport]) -> String {
    let same = |a: &nl::ListenReport, b: &nl::ListenReport| {
        a.kind.eq_ignore_ascii_case(&b.kind) && a.address == b.address
    };
    let listening = |r: &nl::ListenReport| r.state == "listening";
    let mut out = String::new();
    for b in before.iter().filter(|b| listening(b)) {
        if !after.iter().any(|a| same(a, b) && listening(a)) {
            out.push_str(&format!("closed {} Listen \"{}\"\n", b.kind, b.address));
        }
    }
    for a in after.iter().filter(|a| listening(a)) {
        if !before.iter().any(|b| same(a, b) && listening(b)) {
            let (k, addr, bound) = (&a.kind, &a.address, &a.bound);
            out.push_str(&format!("opened {k} Listen \"{addr}\" on {bound}\n"));
        }
    }
    for a in after.iter().filter(|a| a.state.starts_with("failed")) {
        let (k, addr, state) = (&a.kind, &a.address, &a.state);
        out.push_str(&format!("warning: {k} Listen \"{addr}\": {state}\n"));
    }
    out
}

/// True once a shutdown was requested (signal or console): the drain is running.
pub fn shutting_down() -> bool {
    SHUTDOWN_REQUESTED.with(Cell::get)
}

/// The reply to a reload, `config set` or `config unset` asked for during the drain: applying
/// a generation would reopen the Listens the drain closed.
pub const RELOAD_REFUSED_SHUTDOWN: &str = "shutting down; reload refused";

/// The one shutdown guard of configuration changes (`SIGHUP`, `config reload|set|unset`):
/// once a shutdown was requested, `change` does not run.
fn unless_shutting_down(change: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    if shutting_down() {
        log::warn!("{RELOAD_REFUSED_SHUTDOWN}");
        return Err(RELOAD_REFUSED_SHUTDOWN.to_string());
    }
    change()
}

/// Re-reads the configuration and applies it; on error the running generation stays and the
/// errors are logged and returned. Refused once a shutdown was requested.
///
/// C: the `SIGHUP` handler's work.
pub fn reload() -> Result<String, String> {
    unless_shutting_down(reload_now)
}

/// A console `config` command that changes the configuration (`args` is what follows
/// `config `: `reload`, `set …` or `unset …`), applied at once: Listens open or close as the
/// new generation says, and the reply names them (see [`apply_generation`]). Refused once a
/// shutdown was requested, like [`reload`]; on any error nothing changes.
pub fn config_change(args: &str) -> Result<String, String> {
    unless_shutting_down(|| {
        let mut words = args.split_whitespace();
        // `reload` alone; with more words the grammar answers its usage error.
        if let (Some(w), None) = (words.next(), words.next()) {
            if w.eq_ignore_ascii_case("reload") {
                return reload_now();
            }
        }
        let store = nl::netlistener_config().map_err(|e| e.to_string())?;
        let mut out = crate::config::console::config_command(&store, args)?;
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&apply_generation(&store.current()));
        Ok(out)
    })
}

fn reload_now() -> Result<String, String> {
    let store = nl::netlistener_config().map_err(|e| e.to_string())?;
    match store.reload() {
        Ok(gen) => {
            let changes = apply_generation(&gen);
            log::info!("configuration reloaded: generation {}", gen.number());
            // The store logged the generation's warnings already: only the reply shows them.
            let mut out = format!(
                "configuration reloaded: generation {}\n{changes}",
                gen.number()
            );
            for w in gen.warnings() {
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
    log::info!("SIGHUP: reloading the configuration");
    // reload() logs its outcome, success or refusal.
    let _ = reload();
}

fn on_term(signo: i32, _now: Instant) {
    if shutting_down() {
        log::info!("signal {signo}: already shutting down");
        return;
    }
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
        let s = s.borrow();
        let d = s.as_ref()?;
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
    log::info!("{} stopped", daemon_info().name);
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

    #[test]
    fn runtime_directory_rules() {
        let ok = check_runtime_dir(false, true, 1000, 0o40700, 1000);
        assert_eq!(ok, Ok(()));
        assert_eq!(check_runtime_dir(false, true, 1000, 0o40755, 1000), Ok(()));
        assert_eq!(
            check_runtime_dir(true, false, 1000, 0o120777, 1000).unwrap_err(),
            "is a symbolic link"
        );
        assert_eq!(
            check_runtime_dir(false, false, 1000, 0o100600, 1000).unwrap_err(),
            "is not a directory"
        );
        assert_eq!(
            check_runtime_dir(false, true, 65534, 0o40700, 0).unwrap_err(),
            "is owned by uid 65534, not by this daemon's uid 0"
        );
        for mode in [0o41777, 0o40770, 0o40702] {
            let e = check_runtime_dir(false, true, 0, mode, 0).unwrap_err();
            assert!(
                e.starts_with("is writable by its group or by others"),
                "{e}"
            );
        }
        assert!(check_runtime_dir(false, true, 0, 0o41777, 0)
            .unwrap_err()
            .contains("(mode 1777)"));
    }

    fn report(kind: &str, address: &str, state: &str) -> nl::ListenReport {
        nl::ListenReport {
            kind: kind.to_string(),
            address: address.to_string(),
            bound: if state == "listening" { address } else { "-" }.to_string(),
            state: state.to_string(),
            concurrency: 0,
            fd: -1,
            stats: Default::default(),
        }
    }

    #[test]
    fn listen_changes_name_what_opened_closed_and_failed() {
        let before = [
            report("Echo_Listener", "127.0.0.1:1", "listening"),
            report("Echo_Listener", "127.0.0.1:2", "listening"),
        ];
        let after = [
            report("Echo_Listener", "127.0.0.1:1", "listening"),
            report("Echo_Listener", "127.0.0.1:2", "disabled"),
            report("Echo_Listener", "127.0.0.1:3", "listening"),
            report("Echo_Listener", "127.0.0.1:4", "failed: bind: x (errno 98)"),
        ];
        assert_eq!(
            listen_changes(&before, &after),
            "closed Echo_Listener Listen \"127.0.0.1:2\"\n\
             opened Echo_Listener Listen \"127.0.0.1:3\" on 127.0.0.1:3\n\
             warning: Echo_Listener Listen \"127.0.0.1:4\": failed: bind: x (errno 98)\n"
        );
        assert_eq!(listen_changes(&before, &before), "");
    }
}
