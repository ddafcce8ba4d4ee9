#!/usr/bin/env python3
"""bench/ab_echo.py -- echo rounds interleaved across several netlistenerd builds and
tokio-echo, for comparing builds against the anchor at one point (Python standard
library; the servers, load and limits are those of run.py).

    python3 bench/ab_echo.py BUILD [BUILD...] [--conns 50] [--rounds 20] [--no-build]

Starts every build (echo configuration of run.py) and tokio-echo once, then runs
`--rounds` rounds after one warm-up round; a round is one echoload run (1.5 s after 0.5 s
of warm-up) against each server in turn. Prints every run, then per build the median
(and range) of its per-round ratios to tokio-echo for req/s and p99: a ratio taken within
one round, seconds apart, is less exposed to the machine's drift than medians of whole
runs. Loopback only; every load bounded (echoload's limits and run.py's timeouts); the
servers are stopped by PID at the end, also on Ctrl-C."""

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import run


def ratio_line(label, pairs):
    rps = [a["rps"] / t["rps"] for a, t in pairs]
    p99 = [a["p99_us"] / t["p99_us"] for a, t in pairs]
    return (f"{label}: req/s {statistics.median(rps):.3f}x [{min(rps):.2f}-{max(rps):.2f}]  "
            f"p99 {statistics.median(p99):.3f}x [{min(p99):.2f}-{max(p99):.2f}]  "
            f"({len(pairs)} rounds, ratio to tokio-echo)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("builds", nargs="+", type=Path, help="netlistenerd binaries")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--no-build", action="store_true", help="do not build echoload/tokio-echo")
    args = p.parse_args()
    for b in args.builds:
        if not b.is_file():
            raise SystemExit(f"ab_echo: {b}: no such file")
    if not args.no_build:
        run.build(with_netlistenerd=False, with_micro=False)
    point = f"conns={args.conns}"
    sc = run.EchoScenario([args.conns], duration=1.5, warmup=0.5)
    workdir = tempfile.mkdtemp(prefix="netlistener-ab-echo-")
    try:
        servers = [(f"{i}:{b}", run.netlistener_server("echo", b.resolve())(workdir))
                   for i, b in enumerate(args.builds)]
        servers.append(("tokio-echo", run.tokio_echo_server(workdir)))
        runs = {label: [] for label, _ in servers}
        for rnd in range(args.rounds + 1):
            for label, server in servers:
                r = sc.run_once(server, point)
                print(f"{'warm-up' if rnd == 0 else f'round {rnd}'} {label} "
                      f"rps={r['rps']:.0f} p99_us={r['p99_us']:.0f}", flush=True)
                if rnd:
                    runs[label].append(r)
        for label, _ in servers[:-1]:
            print(ratio_line(label, list(zip(runs[label], runs["tokio-echo"]))))
    finally:
        run.Procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
