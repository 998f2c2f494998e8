#!/usr/bin/python3
"""Benchmark: BulkMetrics, BulkInfo and Metrics with many live containers, and the
daemon's resident memory.

    tests/bench/metrics.py BUILD_DIR [--rootfs DIR] [--containers N] [--runs R]
                           [--threads T] [--metrics-interval S] [--sampler-secs W]
                           [--cold-runs C] [--cold-gap G] [--history-week]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare), like tests/bench/network.py whose helpers it
uses: one daemon with a temporary depot and a cgroup parent of its own, removed
at the end with every container.

One daemon runs with --metrics-interval S (default 1, so the history sampler
visibly works during the run). Measured, over the Unix socket with
tests/garden_client/:

  * daemon VmRSS (/proc/PID/status) with 0 containers, right after filling N
    (default 1000) containers (each with one NetIn mapping and one NetOut rule,
    made with T client threads), after the timed calls, and after the sampler ran
    W more seconds (default 10) with the containers idle; also the daemon's CPU
    use over those W seconds (the sampler's cost) and the history records held;
  * with --history-week (needs a -Dtest_hooks=true build), right after the fill
    every container is given a full week of history at S (use
    --metrics-interval 10, the default of cloched, for the issue's figure)
    through POST /containers/H/cloche/test/history?seconds=604800, which adds the
    samples one by one along the sampler's own path; VmRSS is then measured with
    a week of history each, with the history files' size on disk;
  * GET /containers/bulk_metrics?handles=<all N> and /containers/bulk_info
    likewise, R times each (default 10): median, p90, reply size. The handles
    are short (m0..m999) because the request line must fit in 16 KiB; whether
    N GUID-length handles (36 characters, Diego's) are accepted is printed;
  * GET /containers/H/metrics on single containers, with 1 and with N live.

Targets: bulk_metrics of 1000 <= 100 ms; RSS at 1000 with a week of history each
<= 64 MB. The history's records are in each container's depot directory
(metrics-history), only a few hundred bytes of bookkeeping per container stay in
memory. Prints figures; asserts nothing. Not a CI test.
"""
import argparse
import concurrent.futures
import glob
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from network import (SPEC, Daemon, default_rootfs, enter_sandbox, fill,  # noqa: E402
                     remove_tree, stats)
from garden_client import GardenClient, go_request_target  # noqa: E402

WEEK = 7 * 24 * 3600


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def history_records(client, handles):
    return statistics.median(len(client.metrics_history(h).get("samples") or []) for h in handles)


def fill_week(client, handles, threads):
    """A week of history for each container, through the test build's hook."""
    def one(h):
        resp = client.request("POST", go_request_target(
            f"/containers/{h}/cloche/test/history", {"seconds": str(WEEK)}))
        if resp.status != 200:
            raise SystemExit(f"history hook: HTTP {resp.status} {resp.body[:200]!r} "
                             "(a -Dtest_hooks=true build is needed)")
        return resp.json()["added"]
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        added = list(ex.map(one, handles))
    return time.perf_counter() - t0, statistics.median(added)


def history_disk_bytes(tmp):
    return sum(os.path.getsize(p)
               for p in glob.glob(os.path.join(tmp, "depot", "containers", "*", "metrics-history")))


def bench(args, tmp):
    parent = f"cloche-bench-metrics-{os.getpid()}"
    d = Daemon(args.build, args.rootfs, tmp, parent,
               ["--network-pool", args.network_pool, "--max-containers", str(args.max_containers),
                "--metrics-interval", str(args.metrics_interval)])
    c = d.client
    r = {"rss": []}
    n = args.containers
    try:
        time.sleep(0.5)
        r["rss"].append(("0 containers, daemon just started", d.rss_kib(), None))
        probe = c.create(dict(SPEC, handle="probe"))
        for _ in range(5):
            c.metrics(probe)
        r["metrics1"] = timed(lambda: c.metrics(probe), args.single)
        c.destroy(probe)
        r["rss"].append(("0 containers, after 1 create/Metrics/destroy", d.rss_kib(), None))

        r["fill"] = fill(c, 0, n, args.threads, prefix="m")
        handles = [f"m{i}" for i in range(n)]
        few = handles[:: max(n // 20, 1)]
        r["rss"].append((f"{n} containers, just filled", d.rss_kib(), history_records(c, few)))
        if args.history_week:
            r["week"] = fill_week(c, handles, args.threads)
            r["week_disk"] = history_disk_bytes(tmp)
            r["rss"].append((f"{n} containers, a week of history each", d.rss_kib(),
                             history_records(c, few)))
            r["week_rss"] = r["rss"][-1][1]

        for _ in range(2):  # warm-up
            c.bulk_metrics(handles)
            c.bulk_info(handles)
        r["bulk_metrics"] = timed(lambda: c.bulk_metrics(handles), args.runs)
        r["bulk_info"] = timed(lambda: c.bulk_info(handles), args.runs)
        r["target_len"] = len(go_request_target("/containers/bulk_metrics",
                                                {"handles": ",".join(handles)}))
        for route in ("bulk_metrics", "bulk_info"):
            resp = c.request("GET", go_request_target(f"/containers/{route}",
                                                      {"handles": ",".join(handles)}))
            r[f"{route}_bytes"] = len(resp.body)
            r[f"{route}_ok"] = sum(1 for v in resp.json().values() if v.get("Err") is None)
        step = max(n // args.single, 1)
        r["metricsN"] = timed(lambda it=iter(handles[::step] * 2): c.metrics(next(it)),
                              args.single)
        guids = [str(uuid.uuid4()) for _ in range(n)]
        target = go_request_target("/containers/bulk_metrics", {"handles": ",".join(guids)})
        r["guid"] = (len(target), c.request("GET", target).status)
        r["rss"].append((f"{n} containers, after the timed calls", d.rss_kib(),
                         history_records(c, few)))

        cpu0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
        time.sleep(args.sampler_secs)
        r["sampler_cpu"] = (cpu_seconds(d.proc.pid) - cpu0) / (time.monotonic() - t0)
        # Cold calls, as a rep polls (every 15-30 s): each after --cold-gap s idle,
        # past the 10 s a bulk call may reuse a walk of its own.
        r["bulk_cold"] = []
        for _ in range(args.cold_runs):
            time.sleep(args.cold_gap)
            r["bulk_cold"] += timed(lambda: c.bulk_metrics(handles), 1)
        r["rss"].append((f"{n} containers, +{args.sampler_secs:.0f} s idle sampling",
                         d.rss_kib(), history_records(c, few)))
        r["interval"] = c.metrics_history(handles[0]).get("interval")
        r["teardown"] = d.destroy_all(args.threads)
        r["rss"].append(("0 containers, after destroying all", d.rss_kib(), None))
        r["left"] = len(c.list())
    finally:
        d.stop()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), "build"))
    ap.add_argument("--rootfs")
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10, help="bulk calls timed")
    ap.add_argument("--single", type=int, default=100, help="single Metrics calls timed")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--network-pool", default="10.200.0.0/19")
    ap.add_argument("--max-containers", type=int, default=2048)
    ap.add_argument("--metrics-interval", type=int, default=1)
    ap.add_argument("--sampler-secs", type=float, default=10.0)
    ap.add_argument("--cold-runs", type=int, default=3, help="bulk_metrics calls after a gap")
    ap.add_argument("--cold-gap", type=float, default=12.0, help="seconds idle before each")
    ap.add_argument("--history-week", action="store_true",
                    help="give every container a week of history (test_hooks build)")
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
        print(f"  {label:44s} median {m:7.2f} ms  p90 {p:7.2f} ms{extra}")

    print(f"metrics, {n} live unprivileged containers (memory+pids limits, 1 NetIn + 1 NetOut "
          f"each), --metrics-interval {args.metrics_interval}, 2 cores")
    print(f"  filled {n} containers in {r['fill']:.1f} s ({args.threads} threads)")
    line(f"GET bulk_metrics, {n} handles ({args.runs} runs)", r["bulk_metrics"],
         "  (target <= 100)")
    print(f"  {'':44s} reply {r['bulk_metrics_bytes'] / 1024:.0f} KiB, {r['bulk_metrics_ok']} "
          f"without Err, {stats(r['bulk_metrics'])[0] * 1e3 / n:.0f} us per container")
    line(f"GET bulk_metrics, {n}, cold ({args.cold_runs} x after {args.cold_gap:.0f} s idle)",
         r["bulk_cold"], "  (target <= 100)")
    line(f"GET bulk_info, {n} handles ({args.runs} runs)", r["bulk_info"])
    print(f"  {'':44s} reply {r['bulk_info_bytes'] / 1024:.0f} KiB, {r['bulk_info_ok']} "
          f"without Err, {stats(r['bulk_info'])[0] * 1e3 / n:.0f} us per container")
    line(f"GET Metrics, 1 live ({args.single} calls)", r["metrics1"])
    line(f"GET Metrics, {n} live ({args.single} calls)", r["metricsN"])
    print(f"  ratio Metrics {n} / 1 live: {stats(r['metricsN'])[0] / stats(r['metrics1'])[0]:.2f}"
          f";  bulk_metrics / ({n} x Metrics): "
          f"{stats(r['bulk_metrics'])[0] / (n * stats(r['metricsN'])[0]):.2f}")
    glen, gstatus = r["guid"]
    print(f"  request target with {n} short handles: {r['target_len']} bytes; with {n} "
          f"GUID handles: {glen} bytes -> HTTP {gstatus} (header limit 16 KiB)")
    print("  daemon VmRSS:")
    for label, kib, recs in r["rss"]:
        h = f"  (history: median {recs:.0f} records/container)" if recs is not None else ""
        print(f"    {label:46s} {kib / 1024:7.1f} MiB{h}")
    rss0 = r["rss"][0][1]
    rss_n = r["rss"][2][1]
    print(f"  RSS at {n} containers, just filled: {rss_n / 1024:.1f} MiB (target <= 64 MB = "
          f"{64e6 / 2**20:.1f} MiB); {(rss_n - rss0) / n:.1f} KiB per container")
    if "week" in r:
        secs, added = r["week"]
        print(f"  a week of history for {n} containers ({added:.0f} samples each) added in "
              f"{secs:.1f} s; files on disk {r['week_disk'] / 2**20:.1f} MiB")
        print(f"  RSS at {n} containers with a week of history each: {r['week_rss'] / 1024:.1f} "
              f"MiB (target <= 64 MB = {64e6 / 2**20:.1f} MiB)")
    print(f"  sampler every {r['interval']} s over {n} idle containers: daemon CPU "
          f"{r['sampler_cpu'] * 100:.1f}% of one core")
    k, secs = r["teardown"]
    print(f"  teardown: destroyed {k} containers in {secs:.1f} s; {r['left']} left")
    print(f"  (total run time {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
