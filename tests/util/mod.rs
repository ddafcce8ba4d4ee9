//! Shared helpers for the black-box tests: a scheduler thread running netlistener with a small
//! test module, and clients with deadlines.
#![allow(dead_code)]

pub mod deadline;
pub mod temp_dir;

pub use deadline::poll_until;
pub use temp_dir::tempdir;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netlistener::config::{ListenAddr, OptionDef, OptionType, Scopes, Slot};
use netlistener::event::{Closure, Event, Io, OutBuf, E_READ, E_TIMEOUT, E_WRITE};
use netlistener::netlistener::*;
use netlistener::scheduler::{Scheduler, SchedulerHandle};

pub const DEADLINE: Duration = Duration::from_secs(10);

thread_local! {
    static GREETING: std::cell::RefCell<Vec<(String, Slot)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Per-session state of the test module.
struct Sess {
    out: OutBuf,
}

/// The test module's listener: greets with its `Greeting` option (fetched per session with
/// Listen + Peer fallback), then echoes.
fn t_listener(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure.downcast_mut::<AcceptConstruct>().unwrap();
    let slot = GREETING
        .with(|g| {
            g.borrow()
                .iter()
                .find(|(k, _)| *k == ac.inst.def.scope)
                .map(|(_, s)| *s)
        })
        .unwrap();
    let line = format!("{} {}\r\n", ac.kind(), ac.fetch(slot).as_str());
    let mut s = Sess { out: OutBuf::new() };
    if s.out.send(e, line.as_bytes()).is_err() {
        return 0;
    }
    ac.accept_construct_closure = Some(Box::new(s));
    e.callback = t_worker;
    t_worker(e, et, closure, now)
}

fn t_worker(e: &mut Event, et: i32, closure: &mut Closure, now: Instant) -> i32 {
    let ac = closure.downcast_mut::<AcceptConstruct>().unwrap();
    if et & E_TIMEOUT != 0 {
        ac.note_timeout();
        return 0;
    }
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    let mut closed = false;
    loop {
        match e.read(&mut buf) {
            Io::Done(n) => got.extend_from_slice(&buf[..n]),
            Io::Wait(_) => break,
            Io::Closed | Io::Err(_) => {
                closed = true;
                break;
            }
        }
    }
    if !got.is_empty() {
        touch(e, ac, now);
    }
    let s = ac.closure_mut::<Sess>().unwrap();
    if s.out.send(e, &got).is_err() || closed {
        return 0;
    }
    if s.out.pending() > 0 {
        E_WRITE
    } else {
        E_READ
    }
}

/// Registers the test types `names` (each with a `Greeting` option) on this thread.
pub fn register_test_types(names: &[&str]) {
    for (i, n) in names.iter().enumerate() {
        // An option valid at global scope belongs to one type only: the first gets GLOBAL.
        let scopes = if i == 0 {
            Scopes::LISTENER_ALL | Scopes::GLOBAL
        } else {
            Scopes::LISTENER_ALL
        };
        register_test_type_with(n, None, (0, 0), scopes);
    }
}

/// Registers one greeting + echo test type like [`register_test_types`], with the module's
/// `acceptor`, default socket buffers (`netlistener_register4`) and the scopes of its
/// `Greeting` option. Reject lines are `<name> DENIED` and `<name> BUSY`.
pub fn register_test_type_with(
    name: &str,
    acceptor: Option<netlistener::event::EventCallback>,
    buffers: (usize, usize),
    greeting_scopes: Scopes,
) -> std::sync::Arc<NetlistenerDef> {
    let def =
        netlistener_register4(name, t_listener, acceptor, "test", buffers.0, buffers.1).unwrap();
    netlistener_set_reject_lines(&def, &format!("{name} DENIED"), &format!("{name} BUSY"));
    let slot = netlistener_register_option(
        &def,
        OptionDef::new(
            "Greeting",
            OptionType::Str,
            "hi",
            greeting_scopes,
            "test greeting",
        ),
    )
    .unwrap();
    GREETING.with(|g| g.borrow_mut().push((def.scope.clone(), slot)));
    def
}

/// A netlistener running on its own scheduler thread.
pub struct Server {
    pub handle: SchedulerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub enum Conf {
    Text(String),
    Path(std::path::PathBuf),
}

impl Server {
    /// Starts a scheduler thread with the test types and `conf`.
    pub fn start(types: &[&'static str], conf: Conf) -> Server {
        let types: Vec<&'static str> = types.to_vec();
        Server::start_with(move || register_test_types(&types), conf)
    }

    /// Starts a scheduler thread that runs `register` (the test's own listener types), then
    /// loads `conf` and starts listening; panics if the configuration is refused.
    pub fn start_with(register: impl FnOnce() + Send + 'static, conf: Conf) -> Server {
        Server::try_start_with(register, conf).unwrap_or_else(|e| panic!("config: {e}"))
    }

    /// Like [`Server::start_with`], returning the configuration errors (their text) when
    /// `conf` is refused; the scheduler thread has ended then.
    pub fn try_start_with(
        register: impl FnOnce() + Send + 'static,
        conf: Conf,
    ) -> Result<Server, String> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let s = Scheduler::new().unwrap();
            register();
            let loaded = match conf {
                Conf::Text(t) => netlistener_load_config_str("test.conf", &t).map(|_| ()),
                Conf::Path(p) => netlistener_load_config(&p).map(|_| ()),
            };
            if let Err(e) = loaded {
                let _ = tx.send(Err(e.to_string()));
                netlistener_reset();
                return;
            }
            netlistener_start().unwrap();
            tx.send(Ok(s.handle())).unwrap();
            s.run();
            netlistener_reset();
        });
        match rx.recv_timeout(DEADLINE).expect("server started") {
            Ok(handle) => Ok(Server {
                handle,
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// Runs `f` on the scheduler thread and returns its result.
    pub fn on_sched<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.handle.run_on_scheduler(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(DEADLINE).expect("scheduler answered")
    }

    /// Bound TCP addresses of every listening instance of `kind`, in configuration order.
    pub fn addrs(&self, kind: &'static str) -> Vec<SocketAddr> {
        self.on_sched(move || {
            listeners_report()
                .into_iter()
                .filter(|r| r.kind == kind && r.state == "listening")
                .filter_map(|r| r.bound.parse().ok())
                .collect()
        })
    }

    pub fn report(&self) -> Vec<ListenReport> {
        self.on_sched(listeners_report)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn bound(kind: &str) -> Option<ListenAddr> {
    bound_address(kind)
}

/// A client with deadlines on every read and write.
pub struct Client {
    pub r: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::wrap(TcpStream::connect_timeout(&addr, DEADLINE).expect("connect"))
    }

    pub fn connect_from(local: &str, addr: SocketAddr) -> Client {
        let ip: IpAddr = local.parse().unwrap();
        Client::wrap(netlistener::sys::tcp_connect_from(ip, &addr).expect("connect from"))
    }

    pub fn wrap(s: TcpStream) -> Client {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        Client {
            r: BufReader::new(s),
        }
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r
            .read_line(&mut l)
            .expect("read a line before the deadline");
        l.trim_end().to_string()
    }

    pub fn send(&mut self, s: &str) {
        self.r.get_mut().write_all(s.as_bytes()).unwrap();
    }

    /// Sends a line and expects it echoed.
    pub fn echo(&mut self, s: &str) -> String {
        self.send(&format!("{s}\r\n"));
        self.line()
    }

    /// True when the server closed the connection (EOF or reset) before the deadline.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(self.r.read(&mut b), Ok(0))
            || matches!(self.r.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

/// Polls `cond` until it holds, or fails the test after [`DEADLINE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    poll_until(what, DEADLINE, || cond().then_some(()));
}
