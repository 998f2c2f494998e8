#!/usr/bin/python3
"""Benchmark: GET /metrics (Prometheus text) with many live containers.

    tests/bench/prometheus.py BUILD_DIR [--rootfs DIR] [--containers N] [--runs R]
                              [--threads T]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare), with the helpers of tests/bench/network.py:
one daemon with a temporary depot, a cgroup parent of its own and
--metrics-bind 127.0.0.1:PORT, removed at the end with every container.

Fills N (default 1000) containers, each with one NetIn mapping and one NetOut
rule, then times R (default 20) scrapes of GET /metrics on the Unix socket and on
the --metrics-bind listener (what Prometheus scrapes), and R BulkMetrics calls
naming all N for comparison: median, p90, reply size, series per container, and
the daemon's own cloche_scrape_duration_seconds (its time to gather the
containers' series, without the HTTP transfer). Target: 1000 containers scraped
in <= 100 ms. Prints figures; asserts nothing. Not a CI test.
"""
import argparse
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from network import (Daemon, default_rootfs, enter_sandbox, fill, remove_tree,  # noqa: E402
                     stats)


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def scrape_seconds(text):
    for line in text.splitlines():
        if line.startswith("cloche_scrape_duration_seconds "):
            return float(line.split()[1])
    return float("nan")


def bench(args, tmp):
    parent = f"cloche-bench-prometheus-{os.getpid()}"
    port = 39000 + os.getpid() % 1000
    d = Daemon(args.build, args.rootfs, tmp, parent,
               ["--network-pool", args.network_pool, "--max-containers", str(args.max_containers),
                "--metrics-bind", f"127.0.0.1:{port}"])
    c = d.client
    r = {}
    n = args.containers
    url = f"http://127.0.0.1:{port}/metrics"

    def unix_scrape():
        resp = c.request("GET", "/metrics")
        assert resp.status == 200, resp.body[:200]
        return resp.body.decode()

    def tcp_scrape():
        with urllib.request.urlopen(url, timeout=30) as f:
            return f.read().decode()

    try:
        r["fill"] = fill(c, 0, n, args.threads, prefix="p")
        handles = [f"p{i}" for i in range(n)]
        for _ in range(2):  # warm-up (and the first disk walks)
            unix_scrape()
            c.bulk_metrics(handles)
        r["unix"] = timed(unix_scrape, args.runs)
        r["tcp"] = timed(tcp_scrape, args.runs)
        r["bulk"] = timed(lambda: c.bulk_metrics(handles), args.runs)
        inner = []
        for _ in range(args.runs):
            inner.append(scrape_seconds(tcp_scrape()))
        r["inner"] = inner
        text = tcp_scrape()
        r["bytes"] = len(text)
        samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        r["samples"] = len(samples)
        r["per_container"] = sum(1 for ln in samples if 'handle="p0"' in ln)
        r["teardown"] = d.destroy_all(args.threads)
    finally:
        d.stop()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), "build"))
    ap.add_argument("--rootfs")
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--network-pool", default="10.200.0.0/19")
    ap.add_argument("--max-containers", type=int, default=2048)
    args = ap.parse_args()
    enter_sandbox()
    args.build = os.path.abspath(args.build)
    args.rootfs = os.path.abspath(args.rootfs or default_rootfs(args.build))
    tmp = tempfile.mkdtemp(prefix="cloche-bench-")
    os.chmod(tmp, 0o711)
    started = time.monotonic()
    try:
        r = bench(args, tmp)
    finally:
        remove_tree(tmp)
    n = args.containers

    def line(label, xs, extra=""):
        m, p = stats(xs)
        print(f"  {label:48s} median {m:7.2f} ms  p90 {p:7.2f} ms{extra}")

    print(f"GET /metrics, {n} live containers (1 NetIn + 1 NetOut each), 2 cores")
    print(f"  filled {n} containers in {r['fill']:.1f} s ({args.threads} threads)")
    line(f"GET /metrics on the Unix socket ({args.runs} runs)", r["unix"], "  (target <= 100)")
    line(f"GET /metrics on --metrics-bind TCP ({args.runs} runs)", r["tcp"], "  (target <= 100)")
    line("  of which gathering (cloche_scrape_duration_seconds)", r["inner"])
    line(f"GET bulk_metrics, {n} handles, for comparison", r["bulk"])
    print(f"  ratio /metrics (unix) / bulk_metrics: {stats(r['unix'])[0] / stats(r['bulk'])[0]:.2f}")
    print(f"  reply {r['bytes'] / 1024:.0f} KiB, {r['samples']} samples, "
          f"{r['per_container']} series per container")
    k, secs = r["teardown"]
    print(f"  teardown: destroyed {k} containers in {secs:.1f} s")
    print(f"  (total run time {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
