#!/usr/bin/env python3
"""bench/run.py -- the driver of `make bench` (Python 3 standard library only).

Each scenario measures netlistenerd and its anchor side by side in one run: a warm-up
run per side, then at least 5 counted runs alternating netlistener, anchor, netlistener,
anchor... It reports the median, min and max of every metric per side and the ratio
netlistener / anchor of the medians, with a verdict on every performance target of the design (BENCHMARKS.md lists them), and
then the micro-benchmarks (`cargo bench --bench timers|config`). It writes

    bench/results/latest.md       human-readable tables, with the machine description
    bench/results/latest.csv      one row per scenario point and metric (the summary)
    bench/results/latest-runs.csv one row per counted run (the raw figures)
    bench/results/ratios.svg      bar chart of the ratios (hand-written SVG)

Scenarios: echo and idle (anchor: tokio-echo), smtp (anchor: Postfix smtp-sink, load:
Postfix smtp-source, installed with apt when missing and running as root) and maildir
(netlistenerd writing a Maildir, anchor: netlistenerd discarding).

Safety: every server and load generator targets 127.0.0.1 only, every load is bounded
in count and time (echoload enforces its own limits and watchdog; smtp-source gets a
message count; every subprocess also has a timeout here), and the driver stops only
the processes it started, by PID, also on Ctrl-C, SIGTERM and exceptions.

Adding a scenario: write a class with `name`, `points()`, `metrics`, `fresh_server`
and `run_once(server, point) -> {metric: value}` (optional: `warm_up`, `calibrate`,
`ratio_target`, `abs_target`, `report_notes`), give it a server factory per side (see
`tokio_echo_server`, `netlistener_server`, `smtp_sink_server`), and list it in
`scenarios()`. Everything else (alternation, statistics, reports) is generic.
"""

import argparse
import csv
import datetime
import fcntl
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LOOPBACK = "127.0.0.1"  # the only address the driver ever targets
ECHOLOAD = BENCH / "echoload" / "target" / "release" / "echoload"
TOKIO_ECHO = BENCH / "tokio-echo" / "target" / "release" / "tokio-echo"
NETLISTENERD = ROOT / "target" / "release" / "netlistenerd"
POSTFIX = {}  # {'sink': path, 'source': path} once ensure_postfix() found them
SMTP_SESSIONS = (1, 10, 50, 200)
SMTP_BACKLOG = 1024  # listen(2) backlog of both SMTP servers
NOFILE_WANTED = 20000  # idle scenario: 10,000 connections on each end, plus slack

QUICK_BUDGET_S = 120
FULL_BUDGET_S = 15 * 60


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes

class Procs:
    """Every process the driver starts, so that it can stop exactly those, by PID."""

    live = []

    @classmethod
    def popen(cls, argv, **kw):
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, **kw)
        cls.live.append(p)
        return p

    @classmethod
    def stop(cls, p, grace=5.0):
        """SIGTERM, then SIGKILL after `grace` seconds (at once if grace <= 0); returns
        the exit status."""
        if p.poll() is None and grace <= 0:
            p.kill()
            p.wait(10)
        elif p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} ignored SIGTERM for {grace}s; killing it")
                p.kill()
                p.wait(grace)
        if p in cls.live:
            cls.live.remove(p)
        return p.returncode

    @classmethod
    def stop_all(cls):
        for p in list(cls.live):
            cls.stop(p, grace=3.0)


def run_checked(argv, timeout, **kw):
    """Runs a command to completion; subprocess.run kills it (by PID) on timeout."""
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    return subprocess.run([str(a) for a in argv], timeout=timeout, check=True, **kw)


def raise_nofile(wanted):
    """Raises the soft RLIMIT_NOFILE (inherited by servers and loaders) up to the hard one.

    This is the `ulimit -n 20000` that echoload's idle mode needs: std cannot do it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid):
    """VmRSS (current) and VmHWM (peak) of a process, in kB, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0])
    return out


def cpu_ns(pid):
    """CPU time of all threads of a process so far, in ns (/proc/PID/task/*/schedstat).
    Threads that already exited are missed: the servers' pool threads live as long as
    the server."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread exited while we read
    return total


def children_cpu_s():
    """User + system CPU seconds of the children this process has waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def free_port():
    """A port that was free a moment ago. Race: another process may take it between this
    close and the server's bind; the server then fails to start and the run says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- postfix

POSTFIX_SBIN = Path("/usr/sbin")  # Debian's postfix package puts smtp-sink/-source here
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
# "No configuration": the package installs its binaries but no main.cf, and its postinst
# neither configures nor starts the mail system.
POSTFIX_PRESEED = "postfix postfix/main_mailer_type select No configuration\n"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
POLICY_DENY = "#!/bin/sh\n# bench/run.py: no service starts while it installs postfix\nexit 101\n"
HOW_TO_INSTALL = ("as root: echo 'postfix postfix/main_mailer_type select No configuration' "
                  "| debconf-set-selections && DEBIAN_FRONTEND=noninteractive apt-get install "
                  "-y postfix  (Debian/Ubuntu; smtp-sink and smtp-source land in /usr/sbin)")


def postfix_tools():
    """{'sink': path, 'source': path} of Postfix's smtp-sink and smtp-source, or None."""
    tools = {}
    for key, name in (("sink", "smtp-sink"), ("source", "smtp-source")):
        path = shutil.which(name) or POSTFIX_SBIN / name
        if not Path(path).is_file():
            return None
        tools[key] = Path(path)
    return tools


def ensure_postfix():
    """Postfix's tools, installing the package when root with apt; None (SMTP skipped) else."""
    tools = postfix_tools()
    if tools:
        return tools
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("smtp-sink/smtp-source not found and not root with apt-get: SMTP scenarios "
            f"skipped. To install them, {HOW_TO_INSTALL}")
        return None
    try:
        install_postfix()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        log(f"installing postfix failed ({e}): SMTP scenarios skipped. By hand, {HOW_TO_INSTALL}")
    return postfix_tools()


def install_postfix():
    """apt-get install postfix, with debconf preseeded and service starts denied.

    Hazard: the package's postinst may start the Postfix master daemon. policy-rc.d
    exiting 101 forbids that; should one appear anyway, only a master that did not exist
    before this install (so ours) is stopped, by its PID."""
    log("installing Postfix for smtp-sink/smtp-source (apt-get; no mail system is configured "
        "or started)")
    before = postfix_master_pids()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_checked(["debconf-set-selections"], timeout=60, input=POSTFIX_PRESEED, text=True)
    # Lock::Timeout: wait for another apt/dpkg run on the machine instead of failing.
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    with services_denied():
        run_checked(apt + ["update", "-q"], timeout=900, env=env, stdout=subprocess.DEVNULL)
        run_checked(apt + ["install", "-y", "-q", "--no-install-recommends", "postfix"],
                    timeout=900, env=env, stdout=subprocess.DEVNULL)
    for pid in postfix_master_pids() - before:
        log(f"the postfix install started a master daemon (pid {pid}): stopping it")
        os.kill(pid, signal.SIGTERM)


class services_denied:
    """Context manager: /usr/sbin/policy-rc.d denies every service start (exit 101).

    An existing policy that already denies is left as it is; any other is moved aside
    and put back afterwards (also on exceptions)."""

    def __enter__(self):
        self.backup = None
        if POLICY_RC_D.exists():
            rc = subprocess.run([str(POLICY_RC_D), "postfix", "start"], timeout=30,
                                stdin=subprocess.DEVNULL, capture_output=True).returncode
            if rc == 101:
                self.ours = False
                return self
            self.backup = POLICY_RC_D.with_name("policy-rc.d.bench-saved")
            POLICY_RC_D.rename(self.backup)
        POLICY_RC_D.write_text(POLICY_DENY)
        POLICY_RC_D.chmod(0o755)
        self.ours = True
        return self

    def __exit__(self, *exc):
        if self.ours:
            POLICY_RC_D.unlink(missing_ok=True)
            if self.backup:
                self.backup.rename(POLICY_RC_D)
        return False


def postfix_master_pids():
    """PIDs of running Postfix master daemons (by their executable)."""
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "exe") == POSTFIX_MASTER:
                    pids.add(int(d.name))
            except OSError:
                pass  # gone, or not ours to read
    return pids


# ----------------------------------------------------------------------------- servers

class Server:
    def __init__(self, label, proc, port, logfile):
        self.label, self.proc, self.port, self.logfile = label, proc, port, logfile

    @property
    def pid(self):
        return self.proc.pid

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.label} (pid {self.pid}) exited with status "
                               f"{self.proc.returncode}; log: {self.logfile}\n{tail(self.logfile)}")

    def stop(self):
        Procs.stop(self.proc)

    def kill(self):
        Procs.stop(self.proc, grace=0)


def tail(path, n=20):
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(True)[-n:])
    except OSError:
        return ""


def wait_stdout_port(proc, timeout=10.0):
    """Reads `listening on ADDR:PORT` from the server's stdout."""
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if line.startswith("listening on "):
                    return int(line.rsplit(":", 1)[1])
        if proc.poll() is not None:
            break
    raise RuntimeError(f"pid {proc.pid} did not report its port within {timeout}s "
                       f"(stdout so far: {buf!r})")


def wait_connectable(proc, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pid {proc.pid} exited with status {proc.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing accepts on {LOOPBACK}:{port} after {timeout}s")


def tokio_echo_server(workdir):
    logfile = Path(workdir) / "tokio-echo.log"
    with open(logfile, "wb") as err:
        proc = Procs.popen([TOKIO_ECHO, f"{LOOPBACK}:0"], stdout=subprocess.PIPE, stderr=err)
    port = wait_stdout_port(proc)
    return Server("tokio-echo", proc, port, logfile)


def netlistenerd_cmd(kind, conf_dir, binary=None):
    """argv and port of a netlistenerd (`binary`, default NETLISTENERD) serving `kind` from
    a config generated in conf_dir.

    kinds: "echo"; "smtp-discard" and "smtp-maildir" (a new Maildir per start, see
    fresh_maildir)."""
    port = free_port()
    if kind == "echo":
        # Disable_Nagle_Algorithm mirrors tokio-echo's set_nodelay(true).
        conf = ("Log_Level = warn\n"
                "[Echo_Listener]\n"
                "Disable_Nagle_Algorithm = true\n"
                f'[Echo_Listener Listen "{LOOPBACK}:{port}"]\n')
    elif kind in ("smtp-discard", "smtp-maildir"):
        conf = esmtp_conf(port, kind, fresh_maildir(conf_dir))
    else:
        raise NotImplementedError(f"netlistenerd_cmd: no bench config for kind {kind!r} yet")
    (Path(conf_dir) / "bench.conf").write_text(conf)
    return [binary or NETLISTENERD, "-c", conf_dir], port


def fresh_maildir(conf_dir):
    """A Maildir path not used before, under conf_dir/maildirs (see top_dir); written to
    conf_dir/maildir.path so that the server object finds it.

    Hazard (measured): on this machine's ext4, which has no journal, allocating an inode
    skips every inode of its block group deleted in the last 60-300 s, reading its inode
    block each time (kernel: find_inode_bit -> recently_deleted). Emptying the Maildir
    between runs made the next run's deliveries cost ~1 ms of kernel CPU each (perf: the
    IO threads in find_get_block_common / recently_deleted) and halved the rate. So no
    file is deleted until the whole run ends (the work dir goes then), and each Maildir
    is a new directory in a top directory, which ext4 places in a block group picked by
    a hash of its name: a random name, or the same group as the previous bench run's
    (just deleted) Maildir of that name is picked again."""
    parent = top_dir(Path(conf_dir) / "maildirs")
    path = parent / f"Maildir-{os.urandom(6).hex()}"
    (Path(conf_dir) / "maildir.path").write_text(str(path))
    return path


def maildir_of(conf_dir):
    return Path((Path(conf_dir) / "maildir.path").read_text())


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def top_dir(path):
    """mkdir -p, then chattr +T: ext2/3/4 place the subdirectories of a "top directory"
    with the Orlov allocator, in block groups with many free inodes (so, here, away from
    the inodes the machine deleted recently). Elsewhere the flag is refused: no effect."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            buf = bytearray(fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8))
            flags = int.from_bytes(buf[:4], sys.byteorder) | FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags.to_bytes(4, sys.byteorder) + b"\0" * 4)
        finally:
            os.close(fd)
    except OSError:
        pass  # not ext2/3/4, or not allowed: placement is then the filesystem's choice
    return path


def esmtp_conf(port, kind, maildir):
    """The shipped ESMTP defaults (conf.d/30-esmtp.conf), with the backlog and limits of
    the smtp-sink it is compared with: listen(2) backlog 1024 as on smtp-sink's command
    line, Nagle left on (smtp-sink does not set TCP_NODELAY either), and no per-connection
    or per-listener caps. The IO pool keeps its default size (4) in maildir mode."""
    conf = ("Log_Level = warn\n"
            "[ESMTP_Listener]\n"
            "SMTP_Extensions = PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES\n"
            "Banner_Hostname = bench.example\n"
            "Max_Message_Size = 10m\n"
            "Idle_Time = 100s\n"  # smtp-sink's -t default
            f"Listen_Backlog = {SMTP_BACKLOG}\n")
    if kind == "smtp-maildir":
        conf += f"Delivery = maildir\nMaildir = {maildir}\n"
    else:
        conf += "Delivery = discard\n"
    return conf + f'[ESMTP_Listener Listen "{LOOPBACK}:{port}"]\n'


def netlistener_server(kind, binary=None):
    """A factory of netlistenerd servers of `kind`; `binary`: another build (--against)."""
    def start(workdir):
        # A directory per server: several may run at once (--against, ab_echo.py).
        conf_dir = Path(tempfile.mkdtemp(dir=workdir, prefix=f"netlistenerd-{kind}-"))
        argv, port = netlistenerd_cmd(kind, conf_dir, binary)
        server = start_server("netlistenerd", argv, port, conf_dir / "netlistenerd.log")
        server.maildir = maildir_of(conf_dir) if kind == "smtp-maildir" else None
        return server
    return start


def start_server(label, argv, port, logfile):
    """Starts a server that logs to `logfile` and waits until `port` accepts; on failure it
    is stopped and the error shows the log's tail. Records its RSS at rest (`base_rss`)."""
    with open(logfile, "wb") as out:
        proc = Procs.popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = Server(label, proc, port, logfile)
    try:
        wait_connectable(proc, port)
    except RuntimeError as e:
        server.stop()
        raise RuntimeError(f"{label} did not start: {e}\n{tail(logfile)}") from None
    server.maildir, server.base_rss = None, rss_kb(proc.pid)["VmRSS"]
    return server


def smtp_sink_server(workdir):
    """Postfix smtp-sink on a free loopback port. As root it must drop privileges (-u);
    `nobody` keeps it from owning anything. -m raises its concurrency cap (default 256)
    above the largest session count, so that it never queues sessions in the backlog."""
    port = free_port()
    logfile = Path(workdir) / "smtp-sink.log"
    argv = [POSTFIX["sink"], "-h", "bench.example", "-m", 4 * max(SMTP_SESSIONS)]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    argv += [f"{LOOPBACK}:{port}", SMTP_BACKLOG]
    return start_server("smtp-sink", argv, port, logfile)


# --------------------------------------------------------------------------- scenarios

class Metric:
    def __init__(self, key, unit, better, chart=True):
        assert better in ("higher", "lower")
        self.key, self.unit, self.better, self.chart = key, unit, better, chart


def parse_kv(line):
    return {k: v for k, _, v in (w.partition("=") for w in line.split())}


class EchoScenario:
    """Closed-loop echo round trips: echoload with N connections, 64-byte messages."""

    name = "echo"
    kind = "echo"  # netlistenerd_cmd() config
    anchor = "tokio-echo"
    title = "Echo round trips (closed loop, 64-byte messages)"
    fresh_server = False
    metrics = [Metric("rps", "req/s", "higher"),
               Metric("p50_us", "us", "lower", chart=False),
               Metric("p99_us", "us", "lower")]

    def __init__(self, conns, duration, warmup, size=64, threads=None, min_runs=None):
        self.conns, self.duration, self.warmup, self.size = conns, duration, warmup, size
        self.threads = threads  # echoload --threads; None: one thread per connection
        # More and shorter rounds than the other scenarios: a p99 moves by ±30 % from one
        # run to the next on a shared 2-CPU machine, and a 10 % difference in it shows
        # only in the median of many alternating rounds (24 rounds of 1.5 s separated
        # what 5 rounds of 3 s could not; BENCHMARKS.md, "Echo p99").
        self.min_runs = min_runs

    def points(self):
        return [f"conns={n}" for n in self.conns]

    def ratio_target(self, point, m):
        """Target: rps >= 1.0x tokio at 50 and 500 connections, p99 no worse."""
        if m.key in ("rps", "p99_us") and point in ("conns=50", "conns=500"):
            return 1.0
        return None

    def run_once(self, server, point):
        n = int(point.split("=")[1])
        argv = [ECHOLOAD, "--addr", f"{LOOPBACK}:{server.port}", "--conns", n,
                "--size", self.size, "--duration", f"{self.duration}s",
                "--warmup", f"{self.warmup}s", "--timeout", "5s"]
        if self.threads:
            argv += ["--threads", min(self.threads, n)]
        out = run_checked(argv, timeout=self.warmup + self.duration + 40,
                          stdout=subprocess.PIPE, text=True).stdout
        server.check_alive()
        kv = parse_kv(out.strip().splitlines()[-1])
        return {m.key: float(kv[m.key]) for m in self.metrics}


class IdleScenario:
    """N idle connections held against a fresh server: its RSS growth per connection.

    Order matters: after measuring, the server is killed first and the loader second, so
    that the TIME_WAIT states land on the server's port and not on 10,000 ephemeral ports
    of the loader (which would make the next runs' connect() calls crawl; see echoload).
    SIGKILL because a draining daemon would wait for idle sessions; nothing is measured
    after this point."""

    name = "idle"
    kind = "echo"
    anchor = "tokio-echo"
    title = "Idle connections (RSS growth of the server per connection)"
    fresh_server = True
    metrics = [Metric("rss_per_conn_B", "bytes", "lower"),
               Metric("rss_held_kB", "kB", "lower", chart=False)]
    HOLD_CEILING_S = 60  # the loader's own bound; the driver ends it much earlier

    def __init__(self, counts):
        self.counts = counts

    def points(self):
        return [f"idle={n}" for n in self.counts]

    def ratio_target(self, point, m):
        return None  # the target is absolute: see abs_target

    def abs_target(self, point, m):
        """Target: <= 512 B RSS per idle connection at 10,000 connections."""
        return 512 if m.key == "rss_per_conn_B" else None

    def run_once(self, server, point):
        n = int(point.split("=")[1])
        time.sleep(0.2)
        base = rss_kb(server.pid)["VmRSS"]
        argv = [ECHOLOAD, "--addr", f"{LOOPBACK}:{server.port}", "--idle", n,
                "--hold", f"{self.HOLD_CEILING_S}s", "--timeout", "5s"]
        loader = Procs.popen(argv, stdout=subprocess.PIPE)
        try:
            kv = self._wait_opened(loader)
            held = settled_rss(server.pid)
            server.check_alive()
        finally:
            server.kill()
            Procs.stop(loader)
        opened, errors = int(kv["opened"]), int(kv.get("errors", "0"))
        if opened != n or errors:
            raise RuntimeError(f"echoload --idle {n}: opened {opened}, errors {errors}")
        return {"rss_per_conn_B": (held - base) * 1024 / opened, "rss_held_kB": held}

    @staticmethod
    def _wait_opened(loader, timeout=90.0):
        ready, _, _ = select.select([loader.stdout], [], [], timeout)
        line = loader.stdout.readline().decode(errors="replace") if ready else ""
        if not line.startswith("opened="):
            raise RuntimeError(f"echoload --idle: no 'opened=' line within {timeout}s ({line!r})")
        return parse_kv(line)


class SmtpPoint:
    """One SMTP load: parallel sessions, payload size, new connection per message or not."""

    def __init__(self, sessions, size_kib, keep):
        self.sessions, self.size, self.keep = sessions, size_kib * 1024, keep
        self.label = f"s={sessions} {size_kib}KiB {'keep' if keep else 'new'}"


class SmtpScenario:
    """smtp-source against an SMTP server: messages per second, and at 200 sessions the
    server's peak RSS per concurrent session.

    Rate = count / wall-clock of smtp-source (start to exit). The count is calibrated per
    point: each side's warm-up grows it until a run lasts WARMUP_S, and the counted runs
    of both sides then send the same count, sized from the geometric mean of the warm-up
    rates to last about run_s. A fresh server per run: its RSS at start is the baseline
    for VmHWM, and a Maildir is emptied between runs."""

    name = "smtp"
    kind = "smtp-discard"  # netlistenerd_cmd() config
    anchor = "smtp-sink"
    nl_title = "netlistenerd (discard)"
    title = "SMTP receive rate: netlistenerd Delivery = discard vs Postfix smtp-sink"
    fresh_server = True
    MEM_SESSIONS = 200  # where memory per session is measured
    WARMUP_S = 0.5
    MAX_COUNT = 300_000  # bound on one run, whatever the calibration says
    RUN_TIMEOUT_S = 60
    metrics = [Metric("msgs_per_s", "msg/s", "higher"),
               Metric("cpu_us_per_msg", "us", "lower", chart=False),
               Metric("client_cpu_us_per_msg", "us", "lower", chart=False),
               Metric("rss_per_session_kB", "KiB", "lower", chart=False)]

    def __init__(self, points, run_s):
        self.pts = {p.label: p for p in points}
        self.run_s, self.counts = run_s, {}

    def points(self):
        return list(self.pts)

    def ratio_target(self, point, m):
        """Target: discard >= 1.0x smtp-sink at every point, >= 1.2x at 100 KiB;
        memory and CPU are not ratio targets (memory: see abs_target)."""
        if m.key != "msgs_per_s":
            return None
        return 1.2 if self.pts[point].size >= 100 * 1024 else 1.0

    def abs_target(self, point, m):
        """Target: <= 16 KiB per concurrent SMTP session."""
        return 16 if m.key == "rss_per_session_kB" else None

    def report_notes(self):
        return ["Messages per counted run (both sides): " + ", ".join(
            f"{label}: {n:,}" for label, n in self.counts.items()) + "."]

    def warm_up(self, server, point):
        """Grows the count until one run lasts WARMUP_S (bounded: at most 8 runs)."""
        p, count = self.pts[point], self.min_count(self.pts[point])
        for _ in range(8):
            res, elapsed = self.send(server, p, count)
            if elapsed >= self.WARMUP_S or count >= self.max_count(p):
                break
            count = min(self.max_count(p),
                        int(count * min(10.0, 1.2 * self.WARMUP_S / elapsed)))
        return res

    def calibrate(self, point, warmups):
        rate = statistics.geometric_mean([w["msgs_per_s"] for w in warmups])
        p = self.pts[point]
        self.counts[point] = max(self.min_count(p), min(self.max_count(p),
                                                        round(rate * self.run_s)))

    @staticmethod
    def min_count(p):
        return max(100, 4 * p.sessions)  # every session sends a few messages

    def max_count(self, p):
        return self.MAX_COUNT

    def run_once(self, server, point):
        p = self.pts[point]
        return self.send(server, p, self.counts[point])[0]

    def send(self, server, p, count):
        """One smtp-source run; ({metric: value}, elapsed seconds)."""
        argv = [POSTFIX["source"], "-M", "bench.example", "-s", p.sessions, "-m", count,
                "-l", p.size] + (["-d"] if p.keep else []) + [f"{LOOPBACK}:{server.port}"]
        cpu0, client0, t0 = cpu_ns(server.pid), children_cpu_s(), time.monotonic()
        done = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=self.RUN_TIMEOUT_S)
        elapsed = time.monotonic() - t0
        client = children_cpu_s() - client0  # smtp-source: the only child reaped meanwhile
        server.check_alive()
        cpu = cpu_ns(server.pid) - cpu0
        if done.returncode != 0:
            raise RuntimeError(f"smtp-source against {server.label} ({p.label}, {count} msgs) "
                               f"exited {done.returncode}: {done.stderr.strip()[-500:]}")
        # CPU per message: the server's own cost, less sensitive than the rate to what
        # else runs on the machine (but it still counts cache misses and steal).
        res = {"msgs_per_s": count / elapsed, "cpu_us_per_msg": cpu / 1000 / count,
               "client_cpu_us_per_msg": client * 1e6 / count}
        if p.sessions == self.MEM_SESSIONS:
            # VmHWM: the peak over the whole run, of a server started for this run.
            res["rss_per_session_kB"] = (rss_kb(server.pid)["VmHWM"] - server.base_rss) / p.sessions
        if server.maildir:
            server.stored = getattr(server, "stored", 0) + count  # warm-up: several runs
            check_maildir(server.maildir, server.stored)
        return res, elapsed


def check_maildir(maildir, count):
    """Every message acknowledged is a file in new/. The files stay until the run ends
    (see fresh_maildir); the calibrated counts bound them (MaildirScenario.DISK_GIB)."""
    new = Path(maildir) / "new"
    files = sum(1 for _ in new.iterdir()) if new.is_dir() else 0
    if files != count:
        raise RuntimeError(f"maildir: {files} files in new/ after {count} messages accepted")


class MaildirScenario(SmtpScenario):
    """The same loads against netlistenerd in Delivery = maildir (every message durable
    before its 250: fsyncs or a group commit), its anchor being netlistenerd in discard
    mode: the cost of the disk.

    After each maildir run it also measures what the disk makes a delivery cost
    (fsync_latency, on the maildir side only): fsync_file_us and fsync_dir_us of wall
    time, and disk_cpu_us, the kernel CPU of fsync + rename + fsync."""

    name = "maildir"
    kind = "smtp-maildir"
    anchor = "netlistenerd-discard"
    nl_title = "netlistenerd (maildir)"
    title = "SMTP into a Maildir (durable before the 250) vs discard, both netlistenerd"
    metrics = [Metric("msgs_per_s", "msg/s", "higher"),
               Metric("cpu_us_per_msg", "us", "lower", chart=False),
               Metric("client_cpu_us_per_msg", "us", "lower", chart=False),
               Metric("fsync_file_us", "us", "lower", chart=False),
               Metric("fsync_dir_us", "us", "lower", chart=False),
               Metric("disk_cpu_us", "us", "lower", chart=False)]
    RUN_BYTES = 400 << 20  # bound on what one run writes (files stay until the end)

    def __init__(self, points, run_s, workdir_fn):
        super().__init__(points, run_s)
        self.workdir_fn = workdir_fn

    def max_count(self, p):
        return max(self.min_count(p), min(self.MAX_COUNT, self.RUN_BYTES // p.size))

    def abs_target(self, point, m):
        return None

    def ratio_target(self, point, m):
        """Target: maildir >= 0.5x discard at 50 sessions."""
        return 0.5 if m.key == "msgs_per_s" and self.pts[point].sessions == 50 else None

    def disk_needed(self, runs):
        """Bytes this scenario may leave on disk: every run of the maildir side at most
        RUN_BYTES (a warm-up at most 8 of them), plus the fsync probes (half a second)."""
        return len(self.pts) * (runs + 8 + 4) * self.RUN_BYTES

    def run_once(self, server, point):
        """The SMTP run, then (maildir side only) the disk's fsync latencies right after
        it, so that each run carries the state of the disk it ran on."""
        res = super().run_once(server, point)
        if server.maildir:
            res["fsync_file_us"], res["fsync_dir_us"], res["disk_cpu_us"] = fsync_latency(
                self.workdir_fn(), self.pts[point].size)
        return res


def fsync_latency(workdir, size, seconds=0.3):
    """What the disk makes one Maildir delivery cost, measured from Python with no SMTP,
    one delivery at a time: medians of the wall time of fsync(file) and of fsync(new/)
    after the rename, in us, and of the CPU time (the kernel's: Python runs no code
    inside these calls) of fsync + rename + fsync. (Python's own overhead is outside
    every timed interval.)"""
    root = top_dir(Path(workdir) / "fsync-probe") / os.urandom(6).hex()  # see fresh_maildir
    for sub in ("tmp", "new"):
        (root / sub).mkdir(parents=True)
    payload, files, dirs, cpus = b"x" * size, [], [], []
    new_fd = os.open(root / "new", os.O_RDONLY | os.O_DIRECTORY)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            tmp = root / "tmp" / str(len(files))
            new = root / "new" / tmp.name
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, payload)
            c0, t0 = time.thread_time(), time.perf_counter()
            os.fsync(fd)
            t1, c1 = time.perf_counter(), time.thread_time()
            os.close(fd)
            c2 = time.thread_time()
            os.rename(tmp, new)
            t2 = time.perf_counter()
            os.fsync(new_fd)
            t3, c3 = time.perf_counter(), time.thread_time()
            files.append(t1 - t0)
            dirs.append(t3 - t2)
            cpus.append((c1 - c0) + (c3 - c2))
    finally:
        os.close(new_fd)
    return tuple(statistics.median(v) * 1e6 for v in (files, dirs, cpus))


def settled_rss(pid, interval=0.1, timeout=3.0):
    """VmRSS once two samples in a row agree (the server may still be touching pages)."""
    last = rss_kb(pid)["VmRSS"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = rss_kb(pid)["VmRSS"]
        if now == last:
            break
        last = now
    return last


# ------------------------------------------------------------------------------ runner

def run_scenario(sc, sides, runs, workdir):
    """Warm-up then `runs` counted rounds, sides alternating. Returns
    {point: {side_label: [ {metric: value}, ... ]}}."""
    out = {}
    runs = max(runs, getattr(sc, "min_runs", None) or 0)
    for point in sc.points():
        log(f"{sc.name} {point}: warm-up + {runs} rounds x {len(sides)} sides")
        servers = {}
        try:
            if not sc.fresh_server:
                servers = {label: start(workdir) for label, start in sides}
            per_side = {label: [] for label, _ in sides}
            for rnd in range(runs + 1):
                warmups = []
                for label, start in sides:
                    res = one_run(sc, point, servers.get(label) or start(workdir), rnd == 0)
                    (warmups if rnd == 0 else per_side[label]).append(res)
                    log(f"  {'warm-up' if rnd == 0 else f'run {rnd}'} {label}: "
                        + " ".join(f"{k}={v:.1f}" for k, v in res.items()))
                if rnd == 0 and hasattr(sc, "calibrate"):
                    sc.calibrate(point, warmups)  # e.g. SMTP: messages per counted run
            out[point] = per_side
        finally:
            for s in servers.values():
                s.stop()
    return out


def one_run(sc, point, server, warm):
    """One run; a scenario may warm up differently (SMTP calibrates its message count)."""
    run = sc.warm_up if warm and hasattr(sc, "warm_up") else sc.run_once
    try:
        return run(server, point)
    finally:
        if sc.fresh_server:
            server.stop()


def summarize(sc, results, nl_label="netlistenerd"):
    anchor_label = sc.anchor
    rows = []
    for point, per_side in results.items():
        for m in sc.metrics:
            row = {"scenario": sc.name, "anchor": anchor_label, "point": point,
                   "metric": m.key, "unit": m.unit,
                   "better": m.better, "runs": len(per_side.get(anchor_label, []))}
            if not any(m.key in r for runs in per_side.values() for r in runs):
                continue  # a metric measured at some points only (SMTP memory: 200 sessions)
            vals = {}
            for side, label in (("nl", nl_label), ("anchor", anchor_label)):
                vals[side] = [r[m.key] for r in per_side.get(label, []) if m.key in r]
                v = vals[side]
                row[f"{side}_median"] = statistics.median(v) if v else None
                row[f"{side}_min"] = min(v) if v else None
                row[f"{side}_max"] = max(v) if v else None
            a, b = row["nl_median"], row["anchor_median"]
            row["ratio"] = a / b if a is not None and b else None
            # Round i's two runs ran back to back: their ratio shows the spread.
            pairs = [x / y for x, y in zip(vals["nl"], vals["anchor"]) if y]
            row["ratio_min"] = min(pairs) if pairs else None
            row["ratio_max"] = max(pairs) if pairs else None
            row["target"] = ratio_target(sc, point, m)
            row["abs_target"] = sc.abs_target(point, m) if hasattr(sc, "abs_target") else None
            rows.append(row)
    return rows


def ratio_target(sc, point, m):
    """The ratio the design asks of this point and metric: at least it (higher is better)
    or at most it (lower is better); 1.0, no worse than the anchor, unless the scenario
    says otherwise."""
    return sc.ratio_target(point, m) if hasattr(sc, "ratio_target") else 1.0


def meets(ratio, target, better):
    return ratio >= target if better == "higher" else ratio <= target


def verdict(r):
    """"met", or "MISSED", with a note when the target lies inside the range of the
    per-round ratios (ratio_min..ratio_max): a miss the rounds cannot tell from parity,
    unlike one whose every round misses."""
    if meets(r["ratio"], r["target"], r["better"]):
        return "met"
    lo, hi = r.get("ratio_min"), r.get("ratio_max")
    if lo is not None and hi is not None and lo <= r["target"] <= hi:
        return "MISSED (inside the round range)"
    return "MISSED"


# ----------------------------------------------------------------------------- reports

def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def loadavg():
    """1-minute load average: other work on the machine skews every figure."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def machine_description():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration):
        mem_kb = 0
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True, timeout=30).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} CPUs, {mem_kb / 1048576:.1f} GiB RAM; "
            f"{platform.system()} {platform.release()}; {rustc}; Python {platform.python_version()}")


def source_description():
    """The commit measured, and whether the working tree differed from it."""
    def git(*a):
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    try:
        head = git("log", "-1", "--format=%h %s")
        dirty = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git)"
    return head + (" (plus uncommitted changes in src/)" if dirty else "")


def more_runs(scs, runs):
    """", echo: 15" for the scenarios that count more rounds than `runs` (min_runs)."""
    more = [f"{sc.name}: {sc.min_runs}" for sc in scs
            if (getattr(sc, "min_runs", None) or 0) > runs]
    return "".join(f", {m}" for m in more)


def write_markdown(path, rows, scs, meta):
    lines = ["# netlistener benchmark results", "",
             f"- date: {meta['date']}", f"- mode: {meta['mode']}",
             f"- machine: {meta['machine']}", f"- netlistenerd source: {meta['source']}",
             f"- load: {meta['load']}",
             f"- 1-minute load average: {meta['loadavg']} (other work on the machine skews "
             "absolute figures; alternation keeps the ratios fairer)",
             f"- counted runs per side and point: {meta['runs']}{more_runs(scs, meta['runs'])}"
             " (after one warm-up run per side), sides alternating",
             f"- total time: {meta['elapsed']:.0f} s measuring and cleaning up "
             f"({meta['times']['cleanup']:.0f} s of it removing files), plus "
             f"{meta['times']['build']:.0f} s of builds", ""]
    if meta.get("note"):
        lines += [f"> {line}" for line in meta["note"]] + [""]
    if not meta.get("self_test"):  # a self-test's verdicts would be about the anchor
        lines += targets_markdown(rows, scs)
    for sc in scs:
        nl = getattr(sc, "nl_title", "netlistenerd")
        lines += [f"## {sc.title}", "", f"Sides: {meta['sides'][sc.name]}.", ""]
        if hasattr(sc, "report_notes"):
            lines += sc.report_notes() + [""]
        for m in sc.metrics:
            if not any(r["scenario"] == sc.name and r["metric"] == m.key for r in rows):
                continue
            lines += [f"### {m.key} ({m.unit}, {m.better} is better)", "",
                      f"| point | {nl} median [min–max] | {sc.anchor} median "
                      f"[min–max] | ratio {nl}/{sc.anchor} ({m.better} is better) |",
                      "|---|---|---|---|"]
            for r in rows:
                if r["scenario"] == sc.name and r["metric"] == m.key:
                    lines.append(
                        f"| {r['point']} | {fmt(r['nl_median'])} [{fmt(r['nl_min'])}–"
                        f"{fmt(r['nl_max'])}] | {fmt(r['anchor_median'])} "
                        f"[{fmt(r['anchor_min'])}–{fmt(r['anchor_max'])}] | "
                        f"{ratio_text(r['ratio'])}{target_text(r)} |")
            lines += abs_target_lines(sc, m, rows, nl)
            lines.append("")
    lines += micro_markdown(meta.get("micro", {}))
    path.write_text("\n".join(lines))


def ratio_text(r):
    return "n/a" if r is None else f"{r:.2f}×"


def targets_markdown(rows, scs):
    """One table of every performance target measured in this run, with its verdict."""
    names = {sc.name: getattr(sc, "nl_title", "netlistenerd") for sc in scs}
    out = ["## Targets (the design's performance targets)", "",
           "Ratio: of the medians; in brackets the lowest and highest ratio of the two "
           "back-to-back runs of one round.", "",
           "| scenario | point | metric | measured | target | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["scenario"] not in names:
            continue
        if r.get("target") is not None and r["ratio"] is not None:
            op = "≥" if r["better"] == "higher" else "≤"
            out.append(f"| {r['scenario']} | {r['point']} | {r['metric']} ratio "
                       f"{names[r['scenario']]}/{r['anchor']} | {ratio_text(r['ratio'])} "
                       f"[{ratio_text(r['ratio_min'])}–{ratio_text(r['ratio_max'])}] | "
                       f"{op} {r['target']:.2f}× | "
                       f"{verdict(r)} |")
        if r.get("abs_target") is not None and r["nl_median"] is not None:
            out.append(f"| {r['scenario']} | {r['point']} | {r['metric']} of "
                       f"{names[r['scenario']]} | {fmt(r['nl_median'])} [{fmt(r['nl_min'])}–"
                       f"{fmt(r['nl_max'])}] {r['unit']} | ≤ {r['abs_target']} {r['unit']} | "
                       f"{'met' if r['nl_median'] <= r['abs_target'] else 'MISSED'} |")
    return out + [""]


def abs_target_lines(sc, m, rows, nl):
    """Verdicts on the absolute targets (netlistenerd's median against a bound)."""
    out = []
    for r in rows:
        if r["scenario"] == sc.name and r["metric"] == m.key and r.get("abs_target"):
            if r["nl_median"] is None:
                continue
            ok = r["nl_median"] <= r["abs_target"]
            out.append(f"- target {nl} ≤ {r['abs_target']} {m.unit} at {r['point']}: "
                       f"{fmt(r['nl_median'])}, {'met' if ok else 'MISSED'}")
    return [""] + out if out else []


def target_text(r):
    """ " (target ≥ 1.20×: met)" for the ratios the design sets, else "". """
    if r["ratio"] is None or r["target"] is None:
        return ""
    op = "≥" if r["better"] == "higher" else "≤"
    return f" (target {op} {r['target']:.2f}×: {verdict(r)})"


SUMMARY_FIELDS = ["scenario", "anchor", "point", "metric", "unit", "better", "runs",
                  "nl_median", "nl_min", "nl_max", "anchor_median", "anchor_min",
                  "anchor_max", "ratio", "ratio_min", "ratio_max", "target", "abs_target"]


def write_csvs(rows, all_results, scs):
    with open(RESULTS / "latest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in SUMMARY_FIELDS})
    with open(RESULTS / "latest-runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "point", "side", "run", "metric", "value"])
        for sc in scs:
            for point, per_side in all_results[sc.name].items():
                for side, runs in per_side.items():
                    for i, res in enumerate(runs, 1):
                        for k, v in res.items():
                            w.writerow([sc.name, point, side, i, k, v])


def svg_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_svg(path, rows, scs, meta):
    """Horizontal bars of netlistenerd/anchor ratios with a reference line at 1.0."""
    charted = {(sc.name, m.key) for sc in scs for m in sc.metrics if m.chart}
    bars = [r for r in rows if (r["scenario"], r["metric"]) in charted]
    width, left, right, bar_h, gap, top = 820, 300, 60, 18, 8, 60
    height = top + max(1, len(bars)) * (bar_h + gap) + 50
    vmax = max([2.0] + [r["ratio"] for r in bars if r["ratio"] is not None])
    scale = (width - left - right) / vmax
    x1 = left + scale
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">netlistenerd / anchor '
           f'ratios ({svg_escape(meta["mode"])}, {svg_escape(meta["date"])})</text>',
           '<text x="10" y="42" fill="#555">green: the ratio meets its target (see BENCHMARKS.md; '
           'tick mark where it is not 1.0); (↑) higher is better, (↓) lower is better</text>']
    for i, r in enumerate(bars):
        y = top + i * (bar_h + gap)
        arrow = "↑" if r["better"] == "higher" else "↓"
        label = f"{r['scenario']} {r['point']} {r['metric']} ({arrow})"
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{svg_escape(label)}</text>')
        if r["ratio"] is None:
            out.append(f'<text x="{left + 4}" y="{y + 13}" fill="#888">n/a (no netlistenerd side)</text>')
            continue
        target = 1.0 if r["target"] is None else r["target"]  # no target: the anchor's level
        good = meets(r["ratio"], target, r["better"])
        w = max(1.0, r["ratio"] * scale)
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                   f'fill="{"#3a9d5d" if good else "#c8553d"}"/>')
        out.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{r["ratio"]:.2f}×</text>')
        if target != 1.0:
            xt = left + target * scale
            out.append(f'<line x1="{xt:.1f}" y1="{y - 2}" x2="{xt:.1f}" y2="{y + bar_h + 2}" '
                       'stroke="black" stroke-width="2"/>')
    bottom = top + max(1, len(bars)) * (bar_h + gap)
    out.append(f'<line x1="{x1:.1f}" y1="{top - 6}" x2="{x1:.1f}" y2="{bottom}" '
               'stroke="black" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1:.1f}" y="{bottom + 16}" text-anchor="middle">1.0</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


# -------------------------------------------------------------------- micro-benchmarks

MICRO_BENCHES = ("timers", "config")  # benches/*.rs of the main crate, std harness


def run_micro():
    """`cargo bench --bench NAME` for each micro-benchmark: {name: its stdout}. They run
    alone (no server, no load), one after the other, so they see the same machine."""
    out = {}
    for name in MICRO_BENCHES:
        log(f"micro-benchmark: cargo bench --bench {name}")
        done = run_checked(["cargo", "bench", "--quiet", "--bench", name,
                            "--manifest-path", ROOT / "Cargo.toml"], timeout=900,
                           stdout=subprocess.PIPE, text=True)
        out[name] = done.stdout.strip()
    return out


def micro_markdown(micro):
    if not micro:
        return []
    lines = ["## Micro-benchmarks (`cargo bench`, no anchor)", "",
             "Reactor timers (`benches/timers.rs`) and configuration lookups "
             "(`benches/config.rs`), run by the driver after the scenarios.", ""]
    for name, text in micro.items():
        lines += [f"### cargo bench --bench {name}", "", "```", text, "```", ""]
    return lines


# -------------------------------------------------------------------------------- main

def build(with_netlistenerd, with_micro):
    for proj in ("echoload", "tokio-echo"):
        log(f"building bench/{proj}")
        run_checked(["cargo", "build", "--release", "--quiet", "--manifest-path",
                     BENCH / proj / "Cargo.toml"], timeout=900)
    if with_netlistenerd and (ROOT / "src" / "bin" / "netlistenerd.rs").exists():
        log("building netlistenerd")
        run_checked(["cargo", "build", "--release", "--quiet", "--bin", "netlistenerd",
                     "--manifest-path", ROOT / "Cargo.toml"], timeout=900)
    if with_micro:
        # Compiled now, so that compiling is not timed with the run (run_micro then only
        # recompiles if someone changed src/ meanwhile).
        log("building the micro-benchmarks")
        run_checked(["cargo", "bench", "--no-run", "--quiet", "--manifest-path",
                     ROOT / "Cargo.toml"] + [a for b in MICRO_BENCHES for a in ("--bench", b)],
                    timeout=900, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def smtp_points(sessions, sizes_kib):
    return [SmtpPoint(n, kib, keep) for n in sessions for kib in sizes_kib
            for keep in (False, True)]


def scenarios(args, workdir_fn):
    t = args.echo_threads
    if args.quick:
        return [EchoScenario([50], duration=1.5, warmup=0.5, threads=t, min_runs=8),
                IdleScenario([10000]),
                SmtpScenario([SmtpPoint(200, 100, True)], run_s=1.0),
                MaildirScenario([SmtpPoint(50, 1, True)], run_s=1.0, workdir_fn=workdir_fn)]
    return [EchoScenario([1, 50, 500], duration=1.5, warmup=0.5, threads=t, min_runs=15),
            IdleScenario([10000]),
            SmtpScenario(smtp_points(SMTP_SESSIONS, (1, 100)), run_s=1.8),
            MaildirScenario([SmtpPoint(50, 1, False), SmtpPoint(50, 1, True),
                             SmtpPoint(50, 100, True)], run_s=1.5, workdir_fn=workdir_fn)]


SCENARIO_NAMES = ["echo", "idle", "smtp", "maildir", "micro"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"one point per scenario (budget {QUICK_BUDGET_S}s); default: full "
                        f"(budget {FULL_BUDGET_S}s)")
    p.add_argument("--runs", type=int, default=5,
                   help="counted runs per side and point, after one warm-up (default 5; "
                        "fewer is for debugging the driver only)")
    p.add_argument("--only", action="append", choices=SCENARIO_NAMES,
                   help="run only this scenario (repeatable; micro: the cargo bench "
                        "micro-benchmarks)")
    p.add_argument("--netlistenerd", type=Path, default=NETLISTENERD,
                   help="netlistenerd binary (default: target/release/netlistenerd)")
    p.add_argument("--self-test", action="store_true",
                   help="run the anchor on both sides, to check the driver: ratios ≈ 1.0")
    p.add_argument("--against", type=Path, metavar="PATH",
                   help="measure netlistenerd against another netlistenerd build (PATH) "
                        "instead of the anchors, same configs: an A/B of two commits")
    p.add_argument("--echo-threads", type=int, metavar="T",
                   help="echoload worker threads (default: one per connection, exact "
                        "latencies; T=2 leaves the server more CPU but sends in bursts)")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--chart-only", action="store_true",
                   help="only redraw OUT/ratios.svg from OUT/latest.csv (no measuring)")
    return p.parse_args()


AGAINST, AGAINST_NAME = None, ""  # --against: the other netlistenerd build, and its name

ANCHORS = {"tokio-echo": tokio_echo_server,  # anchor label -> server factory
           "smtp-sink": smtp_sink_server,
           "netlistenerd-discard": netlistener_server("smtp-discard")}


def choose_sides(args, sc):
    """[(label, factory)] for one scenario, netlistenerd first, and a note for the report.
    No sides (skip the scenario) when a tool it needs is missing."""
    if sc.name in ("smtp", "maildir") and not POSTFIX:
        return [], (f"{sc.name}: skipped, Postfix's smtp-sink/smtp-source are not installed; "
                    f"{HOW_TO_INSTALL}")
    if sc.name == "maildir":
        free = shutil.disk_usage(tempfile.gettempdir()).free
        if free < sc.disk_needed(args.runs) + (2 << 30):
            return [], (f"maildir: skipped, {free >> 30} GiB free under "
                        f"{tempfile.gettempdir()}, it may write "
                        f"{sc.disk_needed(args.runs) >> 30} GiB (kept until the run ends)")
    if sc.anchor.startswith("netlistenerd") and not NETLISTENERD.exists():
        return [], f"{sc.name}: skipped, its anchor is {NETLISTENERD}, which does not exist."
    anchor = (sc.anchor, ANCHORS[sc.anchor])
    if AGAINST:
        if not NETLISTENERD.exists():
            return [], f"{sc.name}: skipped, {NETLISTENERD} does not exist."
        # The other build keeps the anchor's label, so the tables and the chart read as
        # usual; the note says what the label means in this run.
        return ([("netlistenerd", netlistener_server(sc.kind)),
                 (sc.anchor, netlistener_server(sc.kind, AGAINST))],
                f"AGAINST: the '{sc.anchor}' side of {sc.name} is netlistenerd {AGAINST_NAME}, "
                f"same configuration; ratios compare the two builds (no verdicts).")
    if args.self_test:
        return ([("netlistenerd", anchor[1]), anchor],
                f"SELF-TEST: the 'netlistenerd' side is {sc.anchor} too; ratios should be ≈ 1.0.")
    if not NETLISTENERD.exists():
        return [anchor], (f"{NETLISTENERD} does not exist (the daemon is not built yet): only "
                          "the anchor side was measured, ratios are n/a.")
    return [("netlistenerd", netlistener_server(sc.kind)), anchor], ""


def on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def redraw_chart():
    """ratios.svg again from latest.csv (after a change to the chart's layout)."""
    with open(RESULTS / "latest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    numeric = [k for k in SUMMARY_FIELDS if k.endswith(("median", "min", "max")) or k in (
        "ratio", "target", "abs_target")]
    for r in rows:
        for k in numeric:
            r[k] = float(r[k]) if r.get(k) not in (None, "") else None
    md = (RESULTS / "latest.md").read_text()
    mode = "full" if "- mode: full" in md else "quick"
    date = next((l[len("- date: "):] for l in md.splitlines() if l.startswith("- date: ")), "")
    names = list(dict.fromkeys(r["scenario"] for r in rows))
    scs = [sc for sc in scenarios(argparse.Namespace(quick=False, echo_threads=None),
                                  lambda: None) if sc.name in names]
    write_svg(RESULTS / "ratios.svg", rows, scs, {"mode": mode, "date": date})
    log(f"redrew {RESULTS / 'ratios.svg'} from latest.csv")


def main():
    args = parse_args()
    global NETLISTENERD, RESULTS, AGAINST, AGAINST_NAME
    NETLISTENERD, RESULTS = args.netlistenerd.resolve(), args.out.resolve()
    if args.against:
        if args.self_test:
            sys.exit("bench: --against and --self-test exclude each other")
        AGAINST_NAME = str(args.against)
        if not args.against.is_file():
            sys.exit(f"bench: --against {args.against}: no such file")
    if args.chart_only:
        return redraw_chart()
    signal.signal(signal.SIGTERM, on_sigterm)
    if args.runs < 5:
        log(f"WARNING: --runs {args.runs} < 5: fine for checking the driver, not for results")
    nofile = raise_nofile(NOFILE_WANTED)
    load_start = loadavg()
    if load_start > 0.5:
        log(f"WARNING: load average is {load_start:.2f} before the run: other work on this "
            "machine will skew the figures (ratios suffer less than absolute rates)")
    t0 = time.monotonic()
    workdir = None  # made after the build
    scs = [sc for sc in scenarios(args, lambda: workdir)
           if not args.only or sc.name in args.only]
    with_micro = not args.only or "micro" in args.only
    if nofile < NOFILE_WANTED and any(sc.name == "idle" for sc in scs):
        sys.exit(f"bench: RLIMIT_NOFILE hard limit is {nofile}, the idle scenario needs "
                 f"{NOFILE_WANTED}: raise it (e.g. `ulimit -Hn {NOFILE_WANTED}` as root)")
    if any(sc.name in ("smtp", "maildir") for sc in scs):
        POSTFIX.update(ensure_postfix() or {})
    if not args.no_build:
        build(not args.self_test, with_micro)
    t_built = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="netlistener-bench-")
    if NETLISTENERD.exists() and not args.self_test:
        # Hazard: others may rebuild target/release while this runs; every run must
        # measure the same binary, so the driver runs a private copy.
        NETLISTENERD = Path(shutil.copy2(NETLISTENERD, Path(workdir) / "netlistenerd"))
    if args.against:
        AGAINST = Path(shutil.copy2(args.against, Path(workdir) / "netlistenerd-against"))
    meta = {"source": source_description(), "load_start": load_start}
    try:
        out = measure(args, scs, workdir, with_micro)
    finally:
        Procs.stop_all()
        t_measured = time.monotonic()
        remove_workdir(workdir)
    now = time.monotonic()
    meta["times"] = {"build": t_built - t0, "measure": t_measured - t_built,
                     "cleanup": now - t_measured}
    report(args, out, meta)


def measure(args, scs, workdir, with_micro):
    """Runs the scenarios, then the micro-benchmarks. Exits on errors and Ctrl-C (the
    caller's `finally` stops the processes started)."""
    out = {"results": {}, "rows": [], "sides": {}, "notes": [], "ran": [], "micro": {}}
    try:
        for sc in scs:
            sides, note = choose_sides(args, sc)
            if note and note not in out["notes"]:
                log("NOTE: " + note)
                out["notes"].append(note)
            if not sides:
                continue
            out["sides"][sc.name] = ", ".join(label for label, _ in sides)
            out["results"][sc.name] = run_scenario(sc, sides, args.runs, workdir)
            out["rows"] += summarize(sc, out["results"][sc.name])
            out["ran"].append(sc)
        if with_micro:
            out["micro"] = run_micro()
    except KeyboardInterrupt:
        log("interrupted: stopping the processes this driver started")
        raise SystemExit(130)
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        log(f"ERROR: {e}")
        raise SystemExit(1)
    return out


def remove_workdir(workdir):
    """Removes the work dir, Maildirs included. Slow on this machine: its ext4 (no
    journal, mounted with `discard`) spends ~3 ms per unlink of a synced file."""
    n = sum(len(files) for _, _, files in os.walk(workdir))
    if n > 1000:
        log(f"removing {n:,} files of the work dir {workdir}")
    shutil.rmtree(workdir, ignore_errors=True)


def report(args, out, meta):
    t = meta["times"]
    elapsed = t["measure"] + t["cleanup"]
    meta.update({
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full", "machine": machine_description(),
        "sides": out["sides"], "runs": args.runs, "elapsed": elapsed, "note": out["notes"],
        "micro": out["micro"], "self_test": args.self_test or bool(args.against),
        "load": f"echoload threads: {args.echo_threads or 'one per connection'}",
        "loadavg": f"{meta['load_start']:.2f} before the build, {loadavg():.2f} at the end"})
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_markdown(RESULTS / "latest.md", out["rows"], out["ran"], meta)
    write_csvs(out["rows"], out["results"], out["ran"])
    write_svg(RESULTS / "ratios.svg", out["rows"], out["ran"], meta)
    print((RESULTS / "latest.md").read_text())
    budget = QUICK_BUDGET_S if args.quick else FULL_BUDGET_S
    if elapsed > budget:
        log(f"WARNING: took {elapsed:.0f}s (builds excluded), over the {budget}s budget "
            "of this mode")
    log(f"done in {elapsed:.0f}s, plus {t['build']:.0f}s of builds; results in {RESULTS}")


if __name__ == "__main__":
    main()
