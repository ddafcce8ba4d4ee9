//! System calls: the only `unsafe` in the crate.
//!
//! C: the raw `read(2)`, `write(2)`, `accept(2)`, `setsockopt(2)`, `sigaction(2)` calls that
//! Momentum makes directly from `ec_*` helpers.
//!
//! # Summary
//! Thin, safe wrappers over `libc` and over the `unsafe` part of `polling`'s API. Every
//! `unsafe` block in the crate lives here and carries a `SAFETY:` line naming its invariant.
//!
//! # Contract
//! Functions taking a `RawFd` borrow it for the duration of the call only; they never close it.
//! Ownership of descriptors is expressed with [`OwnedFd`]: whoever holds it closes it on drop.
//!
//! # Diagnostics
//! Every OS failure is returned as `io::Error` (with `errno` preserved); nothing here panics or
//! logs.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use polling::{PollMode, Poller};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// Poller registration (polling 3 makes `add` unsafe: the source must be deleted before close).
// ---------------------------------------------------------------------------------------------

/// Registers `fd` with `poller` in oneshot mode under `key`: a report disarms the
/// registration until [`poller_modify`] re-arms it (the scheduler does after each dispatch,
/// which gives callers level-triggered semantics).
///
/// Never edge mode: the `poll(2)` backend small Unix targets get has none. Not level mode:
/// epoll keeps a level-triggered fd at its place in the ready list after reporting it, so
/// the connections served last in one turn stay last in every later turn, and their
/// requests wait a whole extra turn whenever they arrive just after the scan passed them.
/// A oneshot fd re-armed after its callback queues behind the fds that became ready
/// before it (first come, first served): with 50 busy echo connections the p99 latency
/// fell by 11–26 % for one `epoll_ctl` per dispatch (`BENCHMARKS.md`, "Echo p99").
pub(crate) fn poller_add(
    poller: &Poller,
    fd: RawFd,
    key: usize,
    r: bool,
    w: bool,
) -> io::Result<()> {
    let ev = polling::Event::new(key, r, w);
    // SAFETY: the scheduler calls `poller_delete` for this fd before the `OwnedFd` holding it is
    // dropped (see `Core::unregister` and `Core::finish`), which is polling's requirement.
    unsafe { poller.add_with_mode(fd, ev, PollMode::Oneshot) }
}

/// Changes the interest of an fd registered with [`poller_add`], and re-arms it.
pub(crate) fn poller_modify(
    poller: &Poller,
    fd: RawFd,
    key: usize,
    r: bool,
    w: bool,
) -> io::Result<()> {
    // SAFETY: the fd is registered, hence open: it is removed from the poller before it closes.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    poller.modify_with_mode(bfd, polling::Event::new(key, r, w), PollMode::Oneshot)
}

/// Removes an fd registered with [`poller_add`].
pub(crate) fn poller_delete(poller: &Poller, fd: RawFd) -> io::Result<()> {
    // SAFETY: called while the fd is still open (before its owner drops it).
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    poller.delete(bfd)
}

// ---------------------------------------------------------------------------------------------
// Plain I/O
// ---------------------------------------------------------------------------------------------

/// `read(2)` into `buf`. `Ok(0)` is end of file.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the whole call.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)` (`send(2)` with `MSG_NOSIGNAL` where it exists, so a vanished peer is `EPIPE`,
/// not a `SIGPIPE`).
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd"
    ))]
    {
        // SAFETY: `buf` is a valid readable region of `buf.len()` bytes for the whole call.
        let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        match cvt_size(r) {
            // Not a socket (a pipe in a test, say): fall back to write(2).
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {}
            other => return other,
        }
    }
    // SAFETY: as above.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a caller-owned fd with integer arguments only.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// Sets `FD_CLOEXEC`.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a caller-owned fd with integer arguments only.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    Ok(())
}

/// A non-blocking, close-on-exec pipe: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: pipe(2) succeeded, so both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&r, &w] {
        set_nonblocking(fd.as_raw_fd(), true)?;
        set_cloexec(fd.as_raw_fd())?;
    }
    Ok((r, w))
}

/// `dup(2)` with close-on-exec, as an owned descriptor.
pub fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a caller-owned fd; the result is a fresh fd we own.
    let n = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `n` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

// ---------------------------------------------------------------------------------------------
// Signals through a self-pipe
// ---------------------------------------------------------------------------------------------

/// Signal numbers the handler records: 1 to 64 (Linux's real-time signals end at 64; the BSDs
/// and macOS stop at 32 or 33).
pub(crate) const MAX_SIGNAL: usize = 64;

static SIGNAL_PIPE_FD: AtomicI32 = AtomicI32::new(-1);

// An array of atomics needs a const item to repeat; it is never used by value.
#[allow(clippy::declare_interior_mutable_const)]
const NOT_PENDING: AtomicBool = AtomicBool::new(false);

/// One flag per signal number, set by the handler and swapped back by the loop. The pipe only
/// wakes the loop: a full pipe drops wake-up bytes, never a signal.
static SIGNAL_PENDING: [AtomicBool; MAX_SIGNAL + 1] = [NOT_PENDING; MAX_SIGNAL + 1];

extern "C" fn on_signal(signo: libc::c_int) {
    let Some(flag) = usize::try_from(signo)
        .ok()
        .and_then(|s| SIGNAL_PENDING.get(s))
    else {
        return;
    };
    // The flag first: the loop reads the pipe, then swaps the flags, so a byte it has already
    // drained can never hide a flag set after it.
    flag.store(true, Ordering::SeqCst);
    let fd = SIGNAL_PIPE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 0u8;
        // SAFETY: write(2) is async-signal-safe; `b` lives for the call. errno is saved and
        // restored so the interrupted code does not see it change. A full pipe (EAGAIN) is
        // fine: its bytes already guarantee a wake-up.
        unsafe {
            let saved = *errno_location();
            libc::write(fd, (&b as *const u8).cast(), 1);
            *errno_location() = saved;
        }
    }
}

// Where each OS keeps errno; the handler saves and restores it. An OS missing here does not
// build: add its errno accessor and its row to the platform table in lib.rs.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn errno_location() -> *mut libc::c_int {
    libc::__errno_location()
}
#[cfg(any(
    target_os = "freebsd",
    target_os = "macos",
    target_os = "ios",
    target_os = "dragonfly"
))]
unsafe fn errno_location() -> *mut libc::c_int {
    libc::__error()
}
#[cfg(any(target_os = "openbsd", target_os = "netbsd"))]
unsafe fn errno_location() -> *mut libc::c_int {
    libc::__errno()
}
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "macos",
    target_os = "ios",
    target_os = "dragonfly",
    target_os = "openbsd",
    target_os = "netbsd"
)))]
compile_error!(
    "netlistener: unsupported OS (no errno accessor for the signal handler in src/sys.rs; \
     see the platform table in src/lib.rs)"
);

/// Points the process's signal self-pipe at `write_fd`. The handler only sets the signal's
/// pending flag and writes one wake-up byte there: no other work is done in signal context.
pub(crate) fn set_signal_pipe(write_fd: RawFd) {
    SIGNAL_PIPE_FD.store(write_fd, Ordering::SeqCst);
}

/// Detaches the self-pipe if it is still `write_fd` (another scheduler may own it by now).
pub(crate) fn clear_signal_pipe(write_fd: RawFd) {
    let _ = SIGNAL_PIPE_FD.compare_exchange(write_fd, -1, Ordering::SeqCst, Ordering::SeqCst);
}

/// Clears and returns the signals that arrived since the last call, in numeric order (repeats
/// of one signal coalesce, as the kernel's do).
pub(crate) fn take_pending_signals() -> Vec<i32> {
    (1..=MAX_SIGNAL)
        .filter(|&s| SIGNAL_PENDING[s].swap(false, Ordering::SeqCst))
        .map(|s| s as i32)
        .collect()
}

/// Installs the self-pipe handler for `signo` (`SA_RESTART`). `Err(InvalidInput)` for a
/// signal number above [`MAX_SIGNAL`].
pub(crate) fn install_signal_handler(signo: i32) -> io::Result<()> {
    if !(1..=MAX_SIGNAL as i32).contains(&signo) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signo} out of range 1..={MAX_SIGNAL}"),
        ));
    }
    // SAFETY: a zeroed sigaction is a valid starting value; we set the handler, an empty mask
    // and flags before passing it to sigaction(2). The handler is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        cvt(libc::sigaction(signo, &sa, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Sends `signo` to the calling thread (`raise(3)`), for tests of signal handling.
pub fn raise_signal(signo: i32) -> io::Result<()> {
    // SAFETY: raise(3) takes an integer and has no memory-safety preconditions.
    if unsafe { libc::raise(signo) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signo` to process `pid` (`kill(2)`), e.g. to stop a child server in a test.
pub fn kill(pid: u32, signo: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes integers and has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, signo) })?;
    Ok(())
}

/// Ignores `SIGPIPE` process-wide: writes to a vanished peer then fail with `EPIPE`.
pub fn ignore_sigpipe() {
    // SAFETY: setting SIG_IGN for SIGPIPE has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

/// A socket address in the form the kernel takes, with its length.
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn zeroed() -> RawAddr {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        RawAddr {
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as _,
        }
    }

    fn from_inet(addr: &SocketAddr) -> RawAddr {
        let mut raw = RawAddr::zeroed();
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(&mut raw.storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                raw.len = mem::size_of::<libc::sockaddr_in>() as _;
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut raw.storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                raw.len = mem::size_of::<libc::sockaddr_in6>() as _;
            }
        }
        raw
    }

    fn from_unix(path: &Path) -> io::Result<RawAddr> {
        use std::os::unix::ffi::OsStrExt;
        let mut raw = RawAddr::zeroed();
        // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_un.
        let sun = unsafe { &mut *(&mut raw.storage as *mut _ as *mut libc::sockaddr_un) };
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unix socket path too long or invalid: {}", path.display()),
            ));
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        raw.len = (mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as _;
        Ok(raw)
    }

    /// The address as a `SocketAddr`, or `None` for AF_UNIX and unknown families.
    fn to_inet(&self) -> Option<SocketAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the kernel wrote an AF_INET address, so the storage holds a sockaddr_in.
                let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote an AF_INET6 address, so the storage holds a sockaddr_in6.
                let s = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(s.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(s.sin6_port),
                    s.sin6_flowinfo,
                    s.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

fn socket(family: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    let ty = ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: socket(2) with integer arguments; on success we own the returned fd.
    let fd = cvt(unsafe { libc::socket(family, ty, 0) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Platforms without SOCK_CLOEXEC/SOCK_NONBLOCK (macOS): set both with fcntl.
    set_cloexec(fd.as_raw_fd())?;
    set_nonblocking(fd.as_raw_fd(), true)?;
    Ok(fd)
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int for the duration of the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as _,
        )
    })?;
    Ok(())
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the duration of the call.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// Which system call of a listening socket's set-up failed, for the console's report.
#[derive(Debug)]
pub struct SockError {
    /// The failing call: `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen`, `chmod`…
    pub syscall: &'static str,
    /// The OS error, `errno` preserved.
    pub error: io::Error,
}

impl std::fmt::Display for SockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // std's text ends in " (os error N)"; the errno is printed once, our way.
        let text = self.error.to_string();
        let text = text.split(" (os error ").next().unwrap_or(&text);
        match self.error.raw_os_error() {
            Some(n) => write!(f, "{}: {text} (errno {n})", self.syscall),
            None => write!(f, "{}: {text}", self.syscall),
        }
    }
}

impl std::error::Error for SockError {}

fn step<T>(syscall: &'static str, r: io::Result<T>) -> Result<T, SockError> {
    r.map_err(|error| SockError { syscall, error })
}

/// Socket options of a listening socket. The buffer sizes are set on it (before `listen(2)`,
/// or later on the live socket) and inherited by the sockets it accepts afterwards;
/// `TCP_NODELAY` is set on each accepted socket by the netlistener layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOpts {
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// `SO_RCVBUF` in bytes; 0 leaves the OS default.
    pub recv_buffer: usize,
    /// `SO_SNDBUF` in bytes; 0 leaves the OS default.
    pub send_buffer: usize,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
}

fn bind(fd: RawFd, ra: &RawAddr) -> io::Result<()> {
    let sa = (&ra.storage as *const libc::sockaddr_storage).cast();
    // SAFETY: `ra.storage` holds a valid sockaddr of length `ra.len` for the whole call.
    cvt(unsafe { libc::bind(fd, sa, ra.len) }).map(|_| ())
}

/// Opens a non-blocking, close-on-exec TCP listening socket with `SO_REUSEADDR`.
/// An IPv6 socket is `IPV6_V6ONLY`: `[::]` binds IPv6 only, `*` binds IPv4.
pub fn tcp_listen(addr: &SocketAddr, opts: &SockOpts) -> Result<OwnedFd, SockError> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = step("socket", socket(family, libc::SOCK_STREAM))?;
    let raw = fd.as_raw_fd();
    step(
        "setsockopt(SO_REUSEADDR)",
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1),
    )?;
    if addr.is_ipv6() {
        step(
            "setsockopt(IPV6_V6ONLY)",
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1),
        )?;
    }
    apply_buffers(raw, opts)?;
    step("bind", bind(raw, &RawAddr::from_inet(addr)))?;
    step("listen", set_listen_backlog(raw, opts.backlog))?;
    Ok(fd)
}

fn apply_buffers(raw: RawFd, opts: &SockOpts) -> Result<(), SockError> {
    if opts.recv_buffer > 0 {
        let v = opts.recv_buffer.min(i32::MAX as usize) as i32;
        step(
            "setsockopt(SO_RCVBUF)",
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, v),
        )?;
    }
    if opts.send_buffer > 0 {
        let v = opts.send_buffer.min(i32::MAX as usize) as i32;
        step(
            "setsockopt(SO_SNDBUF)",
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, v),
        )?;
    }
    Ok(())
}

/// Sets `TCP_NODELAY` and the buffer sizes on an accepted TCP socket.
pub fn apply_accepted_opts(fd: RawFd, opts: &SockOpts) -> io::Result<()> {
    if opts.nodelay {
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    }
    apply_buffers(fd, opts).map_err(|e| e.error)
}

/// Opens a non-blocking, close-on-exec Unix stream listening socket at `path` with `mode`.
/// The caller decides what to do about an existing file first (see the netlistener layer).
pub fn unix_listen(path: &Path, mode: u32, backlog: i32) -> Result<OwnedFd, SockError> {
    let fd = step("socket", socket(libc::AF_UNIX, libc::SOCK_STREAM))?;
    let raw = fd.as_raw_fd();
    let ra = step("bind", RawAddr::from_unix(path))?;
    step("bind", bind(raw, &ra))?;
    use std::os::unix::fs::PermissionsExt;
    step(
        "chmod",
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
    )?;
    step("listen", set_listen_backlog(raw, backlog))?;
    Ok(fd)
}

type SockNameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn sock_name(fd: RawFd, call: SockNameFn) -> io::Result<Option<SocketAddr>> {
    let mut ra = RawAddr::zeroed();
    let sa = (&mut ra.storage as *mut libc::sockaddr_storage).cast();
    // SAFETY: `call` is getsockname or getpeername; `ra.storage`/`ra.len` are valid for writes
    // and the kernel writes at most `len` bytes.
    cvt(unsafe { call(fd, sa, &mut ra.len) })?;
    Ok(ra.to_inet())
}

/// The address a socket is bound to; `None` for Unix sockets.
pub fn local_addr(fd: RawFd) -> io::Result<Option<SocketAddr>> {
    sock_name(fd, libc::getsockname)
}

/// The peer of an accepted socket; `None` for Unix sockets.
pub fn peer_addr(fd: RawFd) -> io::Result<Option<SocketAddr>> {
    sock_name(fd, libc::getpeername)
}

/// `accept(2)`: a non-blocking, close-on-exec connection and its peer (`None` for Unix).
pub fn accept(listen_fd: RawFd) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    let mut ra = RawAddr::zeroed();
    let storage = (&mut ra.storage as *mut libc::sockaddr_storage).cast();
    let fd = accept_flagged(listen_fd, storage, &mut ra.len)?;
    Ok((fd, ra.to_inet()))
}

/// `accept4(2)` with `SOCK_CLOEXEC | SOCK_NONBLOCK`: the flags are set atomically, with no
/// further call.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
fn accept_flagged(
    listen_fd: RawFd,
    storage: *mut libc::sockaddr,
    len: &mut libc::socklen_t,
) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: `storage`/`len` are valid for writes (the caller's RawAddr); on success the
    // returned fd is new and owned by nobody else.
    let fd = cvt(unsafe { libc::accept4(listen_fd, storage, len, flags) })?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `accept(2)`, then `FD_CLOEXEC` and `O_NONBLOCK` by `fcntl` (no `accept4` here, e.g. macOS).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
fn accept_flagged(
    listen_fd: RawFd,
    storage: *mut libc::sockaddr,
    len: &mut libc::socklen_t,
) -> io::Result<OwnedFd> {
    // SAFETY: as in the accept4 variant.
    let fd = cvt(unsafe { libc::accept(listen_fd, storage, len) })?;
    // SAFETY: as above.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(fd.as_raw_fd())?;
    set_nonblocking(fd.as_raw_fd(), true)?;
    Ok(fd)
}

/// What a connection attempt says about an existing Unix socket file.
#[derive(Debug)]
pub enum UnixProbe {
    /// Nobody listens on it (`ECONNREFUSED`) or it vanished (`ENOENT`): safe to replace.
    Stale,
    /// A process listens on it (the connect succeeded, or its backlog is full: `EAGAIN`,
    /// `EINPROGRESS`): it is in use.
    Live,
    /// Anything else (`EACCES` on another user's socket, `EPROTOTYPE` on a datagram
    /// socket…): what is there is unknown, so it must be left alone.
    Failed(SockError),
}

/// Probes a Unix socket file with a **non-blocking** connect, so a live owner with a full
/// backlog cannot hang the caller (the scheduler thread, at start-up or reload).
///
/// Linux and the BSDs differ on a full backlog: Linux says `EAGAIN`, the BSDs say
/// `ECONNREFUSED`, the same as a stale file. On the BSDs a refusal is therefore probed twice
/// more, 10 ms apart (a live owner drains its backlog; a stale file stays refused).
pub fn unix_connect_probe(path: &Path) -> UnixProbe {
    let retries = if cfg!(any(target_os = "linux", target_os = "android")) {
        0
    } else {
        2
    };
    let mut probe = unix_connect_once(path);
    for _ in 0..retries {
        if !matches!(probe, UnixProbe::Stale) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        probe = unix_connect_once(path);
    }
    probe
}

fn unix_connect_once(path: &Path) -> UnixProbe {
    let failed = |syscall, error| UnixProbe::Failed(SockError { syscall, error });
    let fd = match socket(libc::AF_UNIX, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(e) => return failed("socket", e),
    };
    let ra = match RawAddr::from_unix(path) {
        Ok(ra) => ra,
        Err(e) => return failed("connect", e),
    };
    let sa = (&ra.storage as *const libc::sockaddr_storage).cast();
    // SAFETY: `ra.storage` holds a valid sockaddr_un of length `ra.len`; the fd is ours and
    // non-blocking, so the call returns at once.
    match cvt(unsafe { libc::connect(fd.as_raw_fd(), sa, ra.len) }) {
        Ok(_) => UnixProbe::Live,
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED) | Some(libc::ENOENT) => UnixProbe::Stale,
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => UnixProbe::Live,
            _ => failed("connect", e),
        },
    }
}

/// `listen(2)` with `backlog` (at least 1); again on a listening socket, the kernel takes
/// the new backlog.
pub fn set_listen_backlog(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen(2) with integer arguments on a caller-owned fd.
    cvt(unsafe { libc::listen(fd, backlog.max(1)) }).map(|_| ())
}

/// `SO_RCVBUF` and `SO_SNDBUF` of a socket, as the kernel reports them (Linux reports twice
/// the size set, its bookkeeping included).
pub fn buffer_sizes(fd: RawFd) -> io::Result<(usize, usize)> {
    let r = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
    let s = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    Ok((r.max(0) as usize, s.max(0) as usize))
}

/// The uid of the process at the other end of a Unix socket.
/// C: `getpeereid()` on the BSDs, `SO_PEERCRED` on Linux.
pub fn peer_uid(fd: RawFd) -> io::Result<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: a zeroed ucred is valid; getsockopt writes at most `len` bytes into it.
        unsafe {
            let mut cred: libc::ucred = mem::zeroed();
            let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
            cvt(libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            ))?;
            Ok(cred.uid)
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let mut uid: libc::uid_t = 0;
        let mut gid: libc::gid_t = 0;
        // SAFETY: `uid` and `gid` are valid for writes for the duration of the call.
        cvt(unsafe { libc::getpeereid(fd, &mut uid, &mut gid) })?;
        Ok(uid)
    }
}

/// The effective uid of this process.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `SO_ERROR` of a socket (0 when none is pending).
pub fn socket_error(fd: RawFd) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

/// Current soft and hard `RLIMIT_NOFILE`.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    // SAFETY: a zeroed rlimit is valid; getrlimit writes into it.
    unsafe {
        let mut rl: libc::rlimit = mem::zeroed();
        cvt(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl))?;
        Ok((rl.rlim_cur as u64, rl.rlim_max as u64))
    }
}

/// Sets the soft and hard `RLIMIT_NOFILE`.
pub fn set_nofile_limit(soft: u64, hard: u64) -> io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `rl` is a valid rlimit for the duration of the call.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })?;
    Ok(())
}

/// User and system CPU time consumed by this process, in microseconds.
pub fn cpu_time_us() -> u64 {
    // SAFETY: a zeroed rusage is valid; getrusage writes into it.
    unsafe {
        let mut ru: libc::rusage = mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// `fsync(2)`-style durability for a directory (after a rename into it).
pub fn fsync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Shuts down the write side of a socket (best effort).
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown(2) with integer arguments; an error is deliberately ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// Shuts down the read side of a socket (best effort). On a listening socket this ends
/// listening for every descriptor of it and wakes threads in `poll(2)` or `accept(2)` on it
/// (Linux; other systems may only wake them, see `netlistener::listen`).
pub fn shutdown_read(fd: RawFd) {
    // SAFETY: shutdown(2) with integer arguments; an error is deliberately ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RD);
    }
}

/// Waits until `fd` or `wake_fd` is readable (or `timeout_ms` passes; -1 waits forever).
/// Returns `(fd readable, wake_fd readable)`. Used by accept threads, which block here
/// instead of spinning on a non-blocking listening socket.
pub fn poll_two(fd: RawFd, wake_fd: RawFd, timeout_ms: i32) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake_fd,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd structs for the duration of the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(e);
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}

/// A blocking TCP connection to `remote` from the local address `local` (port 0 lets the kernel
/// pick). Lets tests and tools on one host appear as different loopback peers (127.0.0.2…).
pub fn tcp_connect_from(
    local: std::net::IpAddr,
    remote: &SocketAddr,
) -> io::Result<std::net::TcpStream> {
    let family = if remote.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = socket(family, libc::SOCK_STREAM)?;
    set_nonblocking(fd.as_raw_fd(), false)?;
    bind(
        fd.as_raw_fd(),
        &RawAddr::from_inet(&SocketAddr::new(local, 0)),
    )?;
    let ra = RawAddr::from_inet(remote);
    // SAFETY: `ra.storage` holds a valid sockaddr of length `ra.len`.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&ra.storage as *const libc::sockaddr_storage).cast(),
            ra.len,
        )
    })?;
    Ok(std::net::TcpStream::from(fd))
}

/// `syncfs(2)`: writes back every dirty page and inode of the filesystem holding `fd`. On
/// Linux 5.8 and later it also reports writeback errors of that filesystem that happened
/// since `fd` was opened; before 5.8 it returns 0 even when writeback failed, so a caller
/// that needs durability must not rely on it there (see `syncfs_reports_errors`).
#[cfg(target_os = "linux")]
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: syncfs(2) takes an integer fd, borrowed (so open) for the whole call.
    cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(|_| ())
}

/// True when this kernel's [`syncfs`] reports writeback errors (Linux 5.8 or later), read
/// once from `/proc/sys/kernel/osrelease`; false when that cannot be read.
#[cfg(target_os = "linux")]
pub fn syncfs_reports_errors() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = rel
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        (major, minor) >= (5, 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sock_error_names_the_syscall_and_the_errno_once() {
        let e = SockError {
            syscall: "bind",
            error: io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        let text = e.to_string();
        assert!(text.starts_with("bind: "), "{text}");
        assert!(
            text.ends_with(&format!("(errno {})", libc::EADDRINUSE)),
            "{text}"
        );
        assert!(!text.contains("os error"), "{text}");
        let e = SockError {
            syscall: "listen",
            error: io::Error::other("no errno here"),
        };
        assert_eq!(e.to_string(), "listen: no errno here");
    }
}
