#!/usr/bin/env python3
"""bench/run.py -- the driver of `make bench` (Python 3 standard library only).

Each scenario measures netlistenerd and its anchor side by side in one run: a warm-up
run per side, then at least 5 counted runs alternating netlistener, anchor, netlistener,
anchor... It reports the median, min and max of every metric per side and the ratio
netlistener / anchor of the medians, and writes

    bench/results/latest.md       human-readable tables, with the machine description
    bench/results/latest.csv      one row per scenario point and metric (the summary)
    bench/results/latest-runs.csv one row per counted run (the raw figures)
    bench/results/ratios.svg      bar chart of the ratios (hand-written SVG)

Safety: every server and load generator targets 127.0.0.1 only, every load is bounded
in count and time (echoload enforces its own limits and watchdog; every subprocess
also has a timeout here), and the driver stops only the processes it started, by PID,
also on Ctrl-C, SIGTERM and exceptions.

Adding a scenario (SMTP, say): write a class with `name`, `points()`, `metrics`,
`fresh_server` and `run_once(server, point) -> {metric: value}`, give it a server
factory per side (see `tokio_echo_server` and `netlistener_server`), and list it in
`scenarios()`. Everything else (alternation, statistics, reports) is generic.
"""

import argparse
import csv
import datetime
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LOOPBACK = "127.0.0.1"  # the only address the driver ever targets
ECHOLOAD = BENCH / "echoload" / "target" / "release" / "echoload"
TOKIO_ECHO = BENCH / "tokio-echo" / "target" / "release" / "tokio-echo"
NETLISTENERD = ROOT / "target" / "release" / "netlistenerd"
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
    return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                          timeout=timeout, check=True, **kw)


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


def free_port():
    """A port that was free a moment ago. Race: another process may take it between this
    close and the server's bind; the server then fails to start and the run says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


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


def netlistenerd_cmd(kind, conf_dir):
    """argv and port of a netlistenerd serving `kind` from a config generated in conf_dir."""
    port = free_port()
    if kind == "echo":
        # Disable_Nagle_Algorithm mirrors tokio-echo's set_nodelay(true).
        conf = ("Log_Level = warn\n"
                "[Echo_Listener]\n"
                "Disable_Nagle_Algorithm = true\n"
                f'[Echo_Listener Listen "{LOOPBACK}:{port}"]\n')
    else:
        raise NotImplementedError(f"netlistenerd_cmd: no bench config for kind {kind!r} yet")
    (Path(conf_dir) / "bench.conf").write_text(conf)
    return [NETLISTENERD, "-c", conf_dir], port


def netlistener_server(kind):
    def start(workdir):
        conf_dir = Path(workdir) / f"netlistenerd-{kind}"
        conf_dir.mkdir(exist_ok=True)
        argv, port = netlistenerd_cmd(kind, conf_dir)
        logfile = conf_dir / "netlistenerd.log"
        with open(logfile, "wb") as out:
            proc = Procs.popen(argv, stdout=out, stderr=subprocess.STDOUT)
        server = Server("netlistenerd", proc, port, logfile)
        try:
            wait_connectable(proc, port)
        except RuntimeError as e:
            server.stop()
            raise RuntimeError(f"netlistenerd did not start: {e}\n{tail(logfile)}") from None
        return server
    return start


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

    def __init__(self, conns, duration, warmup, size=64, threads=None):
        self.conns, self.duration, self.warmup, self.size = conns, duration, warmup, size
        self.threads = threads  # echoload --threads; None: one thread per connection

    def points(self):
        return [f"conns={n}" for n in self.conns]

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
    for point in sc.points():
        log(f"{sc.name} {point}: warm-up + {runs} rounds x {len(sides)} sides")
        servers = {}
        try:
            if not sc.fresh_server:
                servers = {label: start(workdir) for label, start in sides}
            per_side = {label: [] for label, _ in sides}
            for rnd in range(runs + 1):
                for label, start in sides:
                    res = one_run(sc, point, servers.get(label) or start(workdir))
                    if rnd > 0:
                        per_side[label].append(res)
                    log(f"  {'warm-up' if rnd == 0 else f'run {rnd}'} {label}: "
                        + " ".join(f"{k}={v:.1f}" for k, v in res.items()))
            out[point] = per_side
        finally:
            for s in servers.values():
                s.stop()
    return out


def one_run(sc, point, server):
    try:
        return sc.run_once(server, point)
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
                   "better": m.better, "runs": len(per_side[anchor_label])}
            for side, label in (("nl", nl_label), ("anchor", anchor_label)):
                vals = [r[m.key] for r in per_side.get(label, [])]
                row[f"{side}_median"] = statistics.median(vals) if vals else None
                row[f"{side}_min"] = min(vals) if vals else None
                row[f"{side}_max"] = max(vals) if vals else None
            a, b = row["nl_median"], row["anchor_median"]
            row["ratio"] = a / b if a is not None and b else None
            rows.append(row)
    return rows


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


def write_markdown(path, rows, scs, meta):
    lines = ["# netlistener benchmark results", "",
             f"- date: {meta['date']}", f"- mode: {meta['mode']}",
             f"- machine: {meta['machine']}", f"- load: {meta['load']}",
             f"- 1-minute load average: {meta['loadavg']} (other work on the machine skews "
             "absolute figures; alternation keeps the ratios fairer)",
             f"- counted runs per side and point: {meta['runs']} (after one warm-up run "
             "per side), sides alternating", f"- total time: {meta['elapsed']:.0f} s", ""]
    if meta.get("note"):
        lines += [f"> {meta['note']}", ""]
    for sc in scs:
        lines += [f"## {sc.title}", "", f"Sides: {meta['sides'][sc.name]}.", ""]
        for m in sc.metrics:
            lines += [f"### {m.key} ({m.unit}, {m.better} is better)", "",
                      f"| point | netlistenerd median [min–max] | {sc.anchor} median "
                      f"[min–max] | ratio netlistenerd/{sc.anchor} ({m.better} is better) |",
                      "|---|---|---|---|"]
            for r in rows:
                if r["scenario"] == sc.name and r["metric"] == m.key:
                    lines.append(
                        f"| {r['point']} | {fmt(r['nl_median'])} [{fmt(r['nl_min'])}–"
                        f"{fmt(r['nl_max'])}] | {fmt(r['anchor_median'])} "
                        f"[{fmt(r['anchor_min'])}–{fmt(r['anchor_max'])}] | "
                        f"{ratio_text(r['ratio'])} |")
            lines.append("")
    path.write_text("\n".join(lines))


def ratio_text(r):
    return "n/a" if r is None else f"{r:.2f}×"


SUMMARY_FIELDS = ["scenario", "anchor", "point", "metric", "unit", "better", "runs",
                  "nl_median", "nl_min", "nl_max", "anchor_median", "anchor_min",
                  "anchor_max", "ratio"]


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
    width, left, right, bar_h, gap, top = 760, 250, 70, 18, 8, 60
    height = top + max(1, len(bars)) * (bar_h + gap) + 50
    vmax = max([2.0] + [r["ratio"] for r in bars if r["ratio"] is not None])
    scale = (width - left - right) / vmax
    x1 = left + scale
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">netlistenerd / anchor '
           f'ratios ({svg_escape(meta["mode"])}, {svg_escape(meta["date"])})</text>',
           '<text x="10" y="42" fill="#555">green: netlistenerd at least as good as its '
           'anchor; (↑) higher is better, (↓) lower is better</text>']
    for i, r in enumerate(bars):
        y = top + i * (bar_h + gap)
        arrow = "↑" if r["better"] == "higher" else "↓"
        label = f"{r['scenario']} {r['point']} {r['metric']} ({arrow})"
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{svg_escape(label)}</text>')
        if r["ratio"] is None:
            out.append(f'<text x="{left + 4}" y="{y + 13}" fill="#888">n/a (no netlistenerd side)</text>')
            continue
        good = r["ratio"] >= 1.0 if r["better"] == "higher" else r["ratio"] <= 1.0
        w = max(1.0, r["ratio"] * scale)
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                   f'fill="{"#3a9d5d" if good else "#c8553d"}"/>')
        out.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{r["ratio"]:.2f}×</text>')
    bottom = top + max(1, len(bars)) * (bar_h + gap)
    out.append(f'<line x1="{x1:.1f}" y1="{top - 6}" x2="{x1:.1f}" y2="{bottom}" '
               'stroke="black" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1:.1f}" y="{bottom + 16}" text-anchor="middle">1.0</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


# -------------------------------------------------------------------------------- main

def build(with_netlistenerd):
    for proj in ("echoload", "tokio-echo"):
        log(f"building bench/{proj}")
        run_checked(["cargo", "build", "--release", "--quiet", "--manifest-path",
                     BENCH / proj / "Cargo.toml"], timeout=900)
    if with_netlistenerd and (ROOT / "src" / "bin" / "netlistenerd.rs").exists():
        log("building netlistenerd")
        run_checked(["cargo", "build", "--release", "--quiet", "--bin", "netlistenerd",
                     "--manifest-path", ROOT / "Cargo.toml"], timeout=900)


def scenarios(args):
    t = args.echo_threads
    if args.quick:
        return [EchoScenario([50], duration=2, warmup=0.5, threads=t), IdleScenario([10000])]
    return [EchoScenario([1, 50, 500], duration=3, warmup=1, threads=t), IdleScenario([10000])]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"one point per scenario (budget {QUICK_BUDGET_S}s); default: full "
                        f"(budget {FULL_BUDGET_S}s)")
    p.add_argument("--runs", type=int, default=5,
                   help="counted runs per side and point, after one warm-up (default 5; "
                        "fewer is for debugging the driver only)")
    p.add_argument("--only", action="append", choices=["echo", "idle"],
                   help="run only this scenario (repeatable)")
    p.add_argument("--netlistenerd", type=Path, default=NETLISTENERD,
                   help="netlistenerd binary (default: target/release/netlistenerd)")
    p.add_argument("--self-test", action="store_true",
                   help="run the anchor on both sides, to check the driver: ratios ≈ 1.0")
    p.add_argument("--echo-threads", type=int, metavar="T",
                   help="echoload worker threads (default: one per connection, exact "
                        "latencies; T=2 leaves the server more CPU but sends in bursts)")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    return p.parse_args()


ANCHORS = {"tokio-echo": tokio_echo_server}  # anchor label -> server factory


def choose_sides(args, sc):
    """[(label, factory)] for one scenario, netlistenerd first, and a note for the report."""
    anchor = (sc.anchor, ANCHORS[sc.anchor])
    if args.self_test:
        return ([("netlistenerd", anchor[1]), anchor],
                f"SELF-TEST: the 'netlistenerd' side is {sc.anchor} too; ratios should be ≈ 1.0.")
    if not NETLISTENERD.exists():
        return [anchor], (f"{NETLISTENERD} does not exist (the daemon is not built yet): only "
                          "the anchor side was measured, ratios are n/a.")
    return [("netlistenerd", netlistener_server(sc.kind)), anchor], ""


def on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    args = parse_args()
    global NETLISTENERD, RESULTS
    NETLISTENERD, RESULTS = args.netlistenerd.resolve(), args.out.resolve()
    signal.signal(signal.SIGTERM, on_sigterm)
    if args.runs < 5:
        log(f"WARNING: --runs {args.runs} < 5: fine for checking the driver, not for results")
    nofile = raise_nofile(NOFILE_WANTED)
    load_start = loadavg()
    if load_start > 0.5:
        log(f"WARNING: load average is {load_start:.2f} before the run: other work on this "
            "machine will skew the figures (ratios suffer less than absolute rates)")
    t0 = time.monotonic()
    scs = [sc for sc in scenarios(args) if not args.only or sc.name in args.only]
    if nofile < NOFILE_WANTED and any(sc.name == "idle" for sc in scs):
        sys.exit(f"bench: RLIMIT_NOFILE hard limit is {nofile}, the idle scenario needs "
                 f"{NOFILE_WANTED}: raise it (e.g. `ulimit -Hn {NOFILE_WANTED}` as root)")
    if not args.no_build:
        build(with_netlistenerd=not args.self_test)
    workdir = tempfile.mkdtemp(prefix="netlistener-bench-")
    all_results, rows, sides_of, notes = {}, [], {}, []
    try:
        for sc in scs:
            sides, note = choose_sides(args, sc)
            if note and note not in notes:
                log("NOTE: " + note)
                notes.append(note)
            sides_of[sc.name] = ", ".join(label for label, _ in sides)
            all_results[sc.name] = run_scenario(sc, sides, args.runs, workdir)
            rows += summarize(sc, all_results[sc.name])
    except KeyboardInterrupt:
        log("interrupted: stopping the processes this driver started")
        raise SystemExit(130)
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        log(f"ERROR: {e}")
        raise SystemExit(1)
    finally:
        Procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if args.quick else "full", "machine": machine_description(),
            "sides": sides_of, "runs": args.runs, "elapsed": elapsed, "note": " ".join(notes),
            "load": f"echoload threads: {args.echo_threads or 'one per connection'}",
            "loadavg": f"{load_start:.2f} before the build, {loadavg():.2f} at the end"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_markdown(RESULTS / "latest.md", rows, scs, meta)
    write_csvs(rows, all_results, scs)
    write_svg(RESULTS / "ratios.svg", rows, scs, meta)
    print((RESULTS / "latest.md").read_text())
    budget = QUICK_BUDGET_S if args.quick else FULL_BUDGET_S
    if elapsed > budget:
        log(f"WARNING: took {elapsed:.0f}s, over the {budget}s budget of this mode")
    log(f"done in {elapsed:.0f}s; results in {RESULTS}")


if __name__ == "__main__":
    main()
