//! Helpers for black-box tests of the built `netlistenerd` and `nlctl` binaries.
//!
//! Each test gets its own directory (configuration in `<dir>/conf.d`, `Runtime_Directory` and
//! the control socket in `<dir>`, the daemon's stderr in `<dir>/daemon.log`), so tests run in
//! parallel. Every wait has a deadline; a [`Daemon`] kills its process (by PID, through
//! `Child::kill`) when dropped, so a failing test never leaves a daemon behind.
#![allow(dead_code)]

// A binary that also has `mod util;` (which includes it too) gets two copies of these few
// functions: harmless, and what lets either helper set be included alone.
#[allow(clippy::duplicate_mod)]
#[path = "deadline.rs"]
mod deadline;

pub use deadline::{poll_until, wait_within};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The daemon binary cargo built for this test run.
pub const NETLISTENERD: &str = env!("CARGO_BIN_EXE_netlistenerd");
/// The console client binary cargo built for this test run.
pub const NLCTL: &str = env!("CARGO_BIN_EXE_nlctl");

/// How long a daemon may take to answer on its control socket after it was spawned.
pub const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A unique directory under the system temp dir, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    /// Creates `<temp>/nld-<test>-<pid>-<n>` (mode 0755 whatever the umask: it is the
    /// daemon's runtime directory, which must not be group- or world-writable) with an empty
    /// `conf.d` inside.
    pub fn new(test: &str) -> TestDir {
        use std::os::unix::fs::PermissionsExt;
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "nld-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("conf.d")).expect("create test dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod test dir");
        TestDir { path }
    }

    /// The configuration directory passed to `-c`.
    pub fn conf_dir(&self) -> PathBuf {
        self.path.join("conf.d")
    }

    /// Writes `conf.d/<name>` and returns its path.
    pub fn write_conf(&self, name: &str, text: &str) -> PathBuf {
        let p = self.conf_dir().join(name);
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// The control socket path (`control.sock` under the runtime directory).
    pub fn control_sock(&self) -> PathBuf {
        self.path.join("control.sock")
    }

    /// The global lines every test config starts with: the runtime directory is this dir, and
    /// the console listens on `control.sock` in it.
    pub fn base_conf(&self) -> String {
        format!(
            "Runtime_Directory = {}\n\n[Control_Listener Listen \"control.sock\"]\n\n",
            self.path.display()
        )
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs `cmd` with stdout and stderr captured and stdin on `/dev/null`; fails the test (the
/// command killed) if it does not finish within `deadline`.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Output {
    run_captured(cmd, None, deadline)
}

/// Like [`run_with_deadline`], with `input` written to the command's stdin, which is then
/// closed.
pub fn run_with_input(cmd: &mut Command, input: &[u8], deadline: Duration) -> Output {
    run_captured(cmd, Some(input.to_vec()), deadline)
}

/// How long the pipes of a command that has exited may stay open: longer only when a
/// process it started still holds them.
const PIPE_GRACE: Duration = Duration::from_secs(10);

fn run_captured(cmd: &mut Command, input: Option<Vec<u8>>, deadline: Duration) -> Output {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Written on its own thread: a command that does not read its input must not block the
    // test before the deadline below is even reached. Dropping the pipe closes stdin.
    if let (Some(data), Some(mut w)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let out = read_to_end_on_thread(child.stdout.take().expect("stdout"));
    let err = read_to_end_on_thread(child.stderr.take().expect("stderr"));
    let status = wait_within(&mut child, deadline)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {deadline:?}"));
    let collect = |rx: mpsc::Receiver<Vec<u8>>, what: &str| {
        rx.recv_timeout(PIPE_GRACE)
            .unwrap_or_else(|_| panic!("{cmd:?} exited but its {what} stayed open"))
    };
    Output {
        status,
        stdout: collect(out, "stdout"),
        stderr: collect(err, "stderr"),
    }
}

/// Reads `r` to its end on a thread; the bytes arrive on the channel (what was read before
/// an error, if one comes).
fn read_to_end_on_thread(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

/// `netlistenerd ARGS` run to completion (for `--check`, `--version`, start-up failures).
pub fn netlistenerd(args: &[&str]) -> Output {
    run_with_deadline(Command::new(NETLISTENERD).args(args), READY_DEADLINE)
}

/// The result of one `nlctl` run.
#[derive(Debug)]
pub struct Ctl {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `nlctl -s SOCKET ARGS`.
pub fn nlctl_at(socket: &Path, args: &[&str]) -> Ctl {
    let o = run_with_deadline(
        Command::new(NLCTL).arg("-s").arg(socket).args(args),
        Duration::from_secs(20),
    );
    Ctl {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A running `netlistenerd`, killed on drop if it is still running.
pub struct Daemon {
    pub child: Child,
    pub sock: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Spawns `netlistenerd -c <dir>/conf.d --log-level debug` and waits until its console
    /// answers `pid` (panics with the log if it exits or does not answer in time).
    pub fn start(dir: &TestDir) -> Daemon {
        Daemon::start_with(dir, dir.control_sock(), &["--log-level", "debug"])
    }

    /// Like [`Daemon::start`], with `args` instead of `--log-level debug`, and the console
    /// at `sock`.
    pub fn start_with(dir: &TestDir, sock: PathBuf, args: &[&str]) -> Daemon {
        Daemon::start_env(dir, sock, args, &[])
    }

    /// Like [`Daemon::start_with`], with `env` added to the daemon's environment.
    pub fn start_env(dir: &TestDir, sock: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_bin(Path::new(NETLISTENERD), dir, sock, args, env)
    }

    /// Like [`Daemon::start_env`], running the daemon binary `bin` (a daemon built on the
    /// library, such as `examples/custom_daemon`).
    pub fn start_bin(
        bin: &Path,
        dir: &TestDir,
        sock: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let log = dir.path.join("daemon.log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.conf_dir())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create daemon.log"))
            .spawn()
            .expect("spawn netlistenerd");
        let mut d = Daemon { child, sock, log };
        let end = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(st) = d.child.try_wait().expect("try_wait") {
                panic!("netlistenerd exited at start-up ({st}):\n{}", d.log_text());
            }
            if d.sock.exists() {
                let r = d.ctl(&["pid"]);
                if r.code == Some(0) {
                    assert_eq!(r.stdout.trim(), d.pid().to_string(), "pid command");
                    return d;
                }
            }
            assert!(
                Instant::now() < end,
                "netlistenerd did not answer within {READY_DEADLINE:?}:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `nlctl -s <control.sock> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Ctl {
        nlctl_at(&self.sock, args)
    }

    /// `nlctl … ARGS`, asserting exit status 0; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let r = self.ctl(args);
        assert_eq!(
            r.code,
            Some(0),
            "nlctl {args:?}: {r:?}\n{}",
            self.log_text()
        );
        r.stdout
    }

    /// Sends signal `signo` (`libc::SIGHUP`, `libc::SIGTERM`, …) to the daemon.
    pub fn signal(&self, signo: i32) {
        netlistener::sys::kill(self.pid(), signo)
            .unwrap_or_else(|e| panic!("kill({}, {signo}): {e}", self.pid()));
    }

    /// The rows of `listeners` for `kind`: (configured address, bound address, state).
    pub fn listeners(&self, kind: &str) -> Vec<(String, String, String)> {
        parse_listeners(&self.ctl_ok(&["listeners"]), kind)
    }

    /// The bound TCP addresses of `kind`'s listening Listens, in configuration order (Unix
    /// socket Listens left out).
    pub fn bound(&self, kind: &str) -> Vec<SocketAddr> {
        self.listeners(kind)
            .into_iter()
            .filter(|(_, _, state)| state == "listening")
            .filter_map(|(_, b, _)| b.parse().ok())
            .collect()
    }

    /// Waits for the daemon to exit, up to `deadline`; `None` if it had not (it is killed
    /// then).
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        wait_within(&mut self.child, deadline)
    }

    /// The daemon's resident set size in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The columns of `listeners` before the state: type, listen, bound, thr, active, peak,
/// accepted, refused, deny, lcap, scap, acceptor, failed, qwait.
pub const LISTENERS_COUNTERS: usize = 14;

/// Parses `listeners` output: rows whose type is `kind`, as (listen, bound, state). The state
/// column is everything after the counters (`failed: …` holds spaces).
pub fn parse_listeners(text: &str, kind: &str) -> Vec<(String, String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() <= LISTENERS_COUNTERS || !w[0].eq_ignore_ascii_case(kind) {
                return None;
            }
            let state = w[LISTENERS_COUNTERS..].join(" ");
            Some((w[1].to_string(), w[2].to_string(), state))
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Connects with deadlines on every read and write.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes `data` and reads back exactly as many bytes; asserts they are the same.
pub fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("echo write");
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).expect("echo read");
    assert_eq!(got, data, "echo returned different bytes");
}

/// Connects to an Echo Listen and does one round trip.
pub fn echo_once(addr: SocketAddr, data: &[u8]) {
    let mut s = connect(addr);
    round_trip(&mut s, data);
}
