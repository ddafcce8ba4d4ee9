//! Listen instances: opening, reconfiguring and closing the socket of one `Listen`.
//!
//! C: `netlistener_inst` and the socket set-up of the netlistener layer.
//!
//! # Summary
//! One [`Instance`] per enabled `Listen`. Its socket is opened once (`SO_REUSEADDR`, backlog,
//! buffers, non-blocking, close-on-exec; Unix sockets with `File_Mode`) and kept across
//! reloads as long as the Listen stays; a reload applies socket-option changes to the live
//! socket where the OS allows ([`Instance::reconfigure`]). The accept machinery that runs on
//! the socket is in the `accept` module.
//!
//! # Contract
//! Created, reconfigured and closed on the scheduler thread only. Nothing here blocks that
//! thread on another thread: stopping signals the accept threads and never joins them, and
//! closing ends listening with `shutdown(2)` and lets the last accept thread holding the
//! socket close it — on Linux without waiting; elsewhere, where only the last close frees
//! the port, it waits at most 5 ms for the threads to let go.
//!
//! # Diagnostics
//! A socket that cannot open records the failing syscall and errno ([`ListenState::Failed`])
//! and is logged. An existing Unix socket file is probed without blocking: a stale one
//! (refused) is replaced; a live one fails the Listen with `bind: EADDRINUSE`; any other probe
//! error fails it with that error, and the file is left alone. On close the socket file is
//! removed only if it is still ours (same device and inode as right after `bind`). A socket
//! option change that cannot reach a live socket is logged once, by the reload that makes it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::ListenAddr;
use crate::sys::{self, SockError, SockOpts, UnixProbe};

use super::accept::{self, AcceptCtx, Acceptor, Backoff};
use super::session::{ListenInfo, Shared};

/// True where `shutdown(2)` on a listening TCP socket ends listening for every descriptor of
/// it, so the port can be bound again at once (with `SO_REUSEADDR`) while an accept thread
/// still holds a descriptor: Linux and Android, where the socket leaves `LISTEN` (pending
/// connections are reset, as a close does). Elsewhere the port is free only once the last
/// descriptor closes.
const SHUTDOWN_ENDS_LISTENING: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Where [`SHUTDOWN_ENDS_LISTENING`] is false: how long a close waits for the accept threads,
/// already told to stop, to let go of the socket. They hold it for one non-blocking `accept`
/// or one `poll` that the stop ends, so a few microseconds; this bounds a thread the OS has
/// not run yet.
const SOCKET_RELEASE_WAIT: Duration = Duration::from_millis(5);

/// The socket-level settings of one Listen, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenSettings {
    pub sock: SockOpts,
    pub concurrency: usize,
    pub queue_backlog: usize,
    pub events_per_iter: usize,
    pub file_mode: u32,
}

impl ListenSettings {
    /// True when the accept machinery must restart to take `new`.
    fn accept_shape_differs(&self, new: &ListenSettings) -> bool {
        self.concurrency != new.concurrency
            || self.events_per_iter != new.events_per_iter
            || self.queue_backlog != new.queue_backlog
    }
}

/// Where an instance stands, for the console.
#[derive(Debug)]
pub enum ListenState {
    /// Accepting.
    Listening,
    /// Configured with `Enable = false`.
    Disabled,
    /// The socket could not be opened.
    Failed(SockError),
}

/// The socket file of a Unix Listen, and its identity right after `bind`.
struct UnixFile {
    path: PathBuf,
    dev_ino: (u64, u64),
}

impl UnixFile {
    /// True when the path still names the socket we bound (not one that replaced it).
    fn is_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|md| (md.dev(), md.ino()) == self.dev_ino)
    }
}

/// One Listen: its socket and its accept machinery.
pub(crate) struct Instance {
    pub info: Arc<ListenInfo>,
    pub settings: ListenSettings,
    pub state: ListenState,
    /// The socket. Accept threads hold a `Weak` of it, upgraded for one call at a time, so
    /// dropping this closes it (or the thread that still holds it does, a moment later).
    sock: Option<Arc<OwnedFd>>,
    acceptor: Option<Acceptor>,
    unix: Option<UnixFile>,
    /// The accept-error episode, shared by whatever accepts on this socket.
    backoff: Arc<Backoff>,
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_serial() -> u64 {
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

impl Instance {
    /// A closed instance in state `state`.
    pub fn new(info: Arc<ListenInfo>, settings: ListenSettings, state: ListenState) -> Instance {
        Instance {
            info,
            settings,
            state,
            sock: None,
            acceptor: None,
            unix: None,
            backoff: Arc::new(Backoff::default()),
        }
    }

    /// Opens the socket (resolving relative Unix paths under `runtime_dir`).
    pub fn open(&mut self, runtime_dir: &Path) -> Result<(), ()> {
        let r = match &self.info.address {
            ListenAddr::Inet(sa) => sys::tcp_listen(sa, &self.settings.sock).map(|fd| (fd, None)),
            ListenAddr::Unix(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    runtime_dir.join(p)
                };
                open_unix(&path, self.settings.file_mode, self.settings.sock.backlog)
                    .map(|(fd, f)| (fd, Some(f)))
            }
        };
        match r {
            Ok((fd, unix)) => {
                let bound = match sys::local_addr(fd.as_raw_fd()) {
                    Ok(Some(sa)) => ListenAddr::Inet(sa),
                    _ => {
                        ListenAddr::Unix(unix.as_ref().map(|u| u.path.clone()).unwrap_or_default())
                    }
                };
                *self.info.bound.lock().unwrap_or_else(|p| p.into_inner()) = Some(bound);
                self.sock = Some(Arc::new(fd));
                self.unix = unix;
                self.state = ListenState::Listening;
                Ok(())
            }
            Err(e) => {
                log::error!(
                    "{} Listen \"{}\": cannot open: {e}",
                    self.info.def.scope,
                    self.info.address
                );
                self.state = ListenState::Failed(e);
                Err(())
            }
        }
    }

    /// Starts accepting in the configured mode. If it cannot (no fd or thread left, say),
    /// the Listen is closed and marked failed, not left listening with nobody accepting:
    /// a later reload opens it again.
    pub fn start(&mut self, shared: &Arc<Shared>) -> Result<(), ()> {
        match self.new_acceptor(shared, &self.settings) {
            Ok(a) => {
                self.acceptor = a;
                Ok(())
            }
            Err(error) => {
                log::error!(
                    "{} Listen \"{}\": cannot start accepting: {error}; closed",
                    self.info.def.scope,
                    self.info.address
                );
                self.close();
                self.state = ListenState::Failed(SockError {
                    syscall: "start accepting",
                    error,
                });
                Err(())
            }
        }
    }

    fn new_acceptor(
        &self,
        shared: &Arc<Shared>,
        settings: &ListenSettings,
    ) -> io::Result<Option<Acceptor>> {
        let Some(sock) = &self.sock else {
            return Ok(None);
        };
        let ctx = Arc::new(AcceptCtx {
            shared: shared.clone(),
            inst: self.info.clone(),
            backoff: self.backoff.clone(),
        });
        accept::start(ctx, settings, sock).map(Some)
    }

    /// Stops accepting; the socket stays open. Never waits for an accept thread (one may be
    /// in a slow acceptor): they are told to stop and finish on their own, handing over any
    /// connection they admitted.
    pub fn stop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.stop();
        }
    }

    /// Takes a kept Listen's new settings from a reload.
    ///
    /// Socket options reach the live socket where the OS allows: `Listen_Backlog` by calling
    /// `listen(2)` again, non-zero `TCP_*_Buffer_Size` by `setsockopt` on the listening
    /// socket (connections accepted afterwards inherit them), `File_Mode` by `chmod`;
    /// `Disable_Nagle_Algorithm` is applied per accepted connection anyway. A buffer size set
    /// back to 0 (the OS default) cannot be undone on a live socket: that is logged, and
    /// applies when the socket re-opens. The accept machinery restarts when `Concurrency`,
    /// `Events_Per_Iter` or `Accept_Queue_Backlog` changed: the new one starts before the
    /// old one stops, and if it cannot start, the old one goes on with its settings (logged;
    /// the next reload tries again). The other new settings are recorded in every case, so
    /// each change is reported once.
    pub fn reconfigure(&mut self, shared: &Arc<Shared>, mut new: ListenSettings) {
        if new == self.settings {
            return;
        }
        self.apply_socket_options(&new);
        if self.settings.accept_shape_differs(&new) {
            match self.new_acceptor(shared, &new) {
                Ok(a) => {
                    self.stop();
                    self.acceptor = a;
                }
                Err(e) => {
                    log::error!(
                        "{} Listen \"{}\": cannot restart accepting with the new settings: {e}; \
                         still accepting with the old ones",
                        self.info.def.scope,
                        self.info.address
                    );
                    new.concurrency = self.settings.concurrency;
                    new.events_per_iter = self.settings.events_per_iter;
                    new.queue_backlog = self.settings.queue_backlog;
                }
            }
        }
        self.settings = new;
    }

    fn apply_socket_options(&self, new: &ListenSettings) {
        let Some(sock) = &self.sock else {
            return;
        };
        let fd = sock.as_raw_fd();
        let (old, to) = (&self.settings.sock, &new.sock);
        if old.backlog != to.backlog {
            self.warn_failed("listen", sys::set_listen_backlog(fd, to.backlog));
        }
        if let Some(u) = &self.unix {
            if new.file_mode != self.settings.file_mode && u.is_ours() {
                use std::os::unix::fs::PermissionsExt;
                let perm = std::fs::Permissions::from_mode(new.file_mode);
                self.warn_failed("chmod", std::fs::set_permissions(&u.path, perm));
            }
            return; // no TCP buffers on a Unix socket
        }
        let changed = |a: usize, b: usize| if a != b { b } else { 0 };
        let bufs = SockOpts {
            recv_buffer: changed(old.recv_buffer, to.recv_buffer),
            send_buffer: changed(old.send_buffer, to.send_buffer),
            ..SockOpts::default()
        };
        if bufs.recv_buffer > 0 || bufs.send_buffer > 0 {
            let r = sys::apply_accepted_opts(fd, &bufs);
            self.warn_failed("setsockopt(SO_RCVBUF/SO_SNDBUF)", r);
        }
        let back_to_os = |a: usize, b: usize| a > 0 && b == 0;
        if back_to_os(old.recv_buffer, to.recv_buffer)
            || back_to_os(old.send_buffer, to.send_buffer)
        {
            log::info!(
                "{} Listen \"{}\": a buffer size back to 0 (the OS default) applies when the socket re-opens",
                self.info.def.scope,
                self.info.address
            );
        }
    }

    fn warn_failed(&self, call: &str, r: io::Result<()>) {
        if let Err(e) = r {
            log::warn!(
                "{} Listen \"{}\": {call} on the live socket: {e}; the change applies when the socket re-opens",
                self.info.def.scope,
                self.info.address
            );
        }
    }

    /// Stops accepting and closes the socket (removing its Unix socket file if still ours).
    pub fn close(&mut self) {
        self.stop();
        self.release_socket();
        if let Some(u) = self.unix.take() {
            if u.is_ours() {
                let _ = std::fs::remove_file(&u.path);
            } else if u.path.exists() {
                log::info!(
                    "{} Listen \"{}\": {} is no longer our socket; left in place",
                    self.info.def.scope,
                    self.info.address,
                    u.path.display()
                );
            }
        }
    }

    /// Ends listening and drops our reference to the socket, so the same reload can bind its
    /// port or path again. The accept threads, already told to stop, let go within one call;
    /// the last one closes it. Where `shutdown(2)` does not end listening
    /// ([`SHUTDOWN_ENDS_LISTENING`]), waits at most [`SOCKET_RELEASE_WAIT`] for them.
    fn release_socket(&mut self) {
        let Some(sock) = self.sock.take() else {
            return;
        };
        sys::shutdown_read(sock.as_raw_fd());
        if SHUTDOWN_ENDS_LISTENING {
            return;
        }
        let end = Instant::now() + SOCKET_RELEASE_WAIT;
        let mut sock = sock;
        while let Err(s) = Arc::try_unwrap(sock) {
            if Instant::now() >= end {
                log::debug!(
                    "{} Listen \"{}\": an accept thread still holds the socket; it closes when that thread lets go",
                    self.info.def.scope,
                    self.info.address
                );
                return;
            }
            sock = s;
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The socket's fd, for the console and tests (`-1` when closed).
    pub fn fd(&self) -> RawFd {
        self.sock.as_ref().map_or(-1, |s| s.as_raw_fd())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.close();
    }
}

/// Opens a Unix Listen at `path`, replacing a stale socket file (never anything else), and
/// records the new file's identity.
fn open_unix(path: &Path, mode: u32, backlog: i32) -> Result<(OwnedFd, UnixFile), SockError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        let busy = || SockError {
            syscall: "bind",
            error: io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        if !md.file_type().is_socket() {
            return Err(busy()); // never delete something that is not a socket
        }
        match sys::unix_connect_probe(path) {
            UnixProbe::Live => return Err(busy()),
            UnixProbe::Failed(e) => return Err(e),
            UnixProbe::Stale => {
                log::info!("removing stale socket file {}", path.display());
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let fd = sys::unix_listen(path, mode, backlog)?;
    let md = std::fs::symlink_metadata(path).map_err(|error| SockError {
        syscall: "stat",
        error,
    })?;
    let file = UnixFile {
        path: path.to_path_buf(),
        dev_ino: (md.dev(), md.ino()),
    };
    Ok((fd, file))
}
