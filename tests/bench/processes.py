#!/usr/bin/python3
"""Benchmark: processes in an existing container, through cloche's API exactly as
the Go client drives it, beside `crun exec` of the same in a crun container.

    tests/bench/processes.py [--build DIR] [--rootfs DIR] [-n N] [--gib G]
                             [--no-peer] [--no-throughput]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare), with a temporary depot and a cgroup parent of
its own, removed at the end.

(a) Run latency: N x Run of /bin/true (busybox) in one unprivileged container,
    timed from the Run request to the exit status with tests/garden_client/:
    the control connection, then the stdout and stderr connections, and Wait
    returning once the status has arrived and both streams reached EOF (Go's
    Wait). Also shown: the same without stream connections (a Go client with
    nil writers), and both again from tests/bench/run-client.c, which sends
    the same bytes in the same order from C, so that the figure is the
    server's and not the Python client's. Beside it, N x `crun exec <id> /bin/true` into a crun
    container running `sleep 1000` from the same rootfs (same namespaces, a
    65536-id user namespace, memory/pids limits); crun refuses this machine's
    hybrid cgroups, so it runs in a mount namespace where the cgroup2 `unified`
    mount is hidden (as tests/bench/containers.py does).
(b) stdout throughput: one process writing G GiB of zeros (busybox `dd bs=1M`,
    and `head -c`), read through the stdout stream connection, in MB/s
    (10^6 bytes per second), from the Run request to Wait.

Targets (design §9): Run of `true` to exit status, median <= 2 ms; stdout
>= 1 GB/s. Prints figures and ratios; asserts no timing. Not a CI test.
"""
import argparse
import fcntl
import json
import os
import shutil
import math
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from garden_client import GardenClient  # noqa: E402
from rundir import remove_tree, run_dir_args  # noqa: E402

GIB = 1 << 30


def busy_ms():
    """CPU time the whole machine has spent busy so far (every process and the
    kernel: user, nice, system, irq, softirq), in ms."""
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return sum(int(v[i]) for i in (0, 1, 2, 5, 6)) * 1000 / os.sysconf("SC_CLK_TCK")


def stats(xs):
    xs = sorted(xs)
    return statistics.median(xs) * 1e3, xs[max(math.ceil(len(xs) * 0.9) - 1, 0)] * 1e3


def remove_cgroup_parent(parent):
    """rmdir <hierarchy>/<parent>, deepest first, in every hierarchy."""
    for ctrl in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", ctrl, parent)
        if not os.path.isdir(top):
            continue
        dirs = [d for d, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda s: s.count("/"), reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


class Counter:
    """An io.Writer that only counts."""

    def __init__(self):
        self.n = 0

    def write(self, data):
        self.n += len(data)


def start_daemon(build, rootfs, tmp, parent):
    sock = os.path.join(tmp, "cloche.sock")
    # CLOCHE_BENCH_LOG=PATH keeps a debug log (each Run's steps timed) there.
    keep = os.environ.get("CLOCHE_BENCH_LOG")
    log = open(keep or os.path.join(tmp, "cloched.log"), "w")
    daemon = subprocess.Popen([os.path.join(build, "cloched"), "--bind-socket", sock,
                               "--depot", os.path.join(tmp, "depot"), "--cgroup-parent", parent,
                               "--default-rootfs", rootfs, "--log-level",
                               "debug" if keep else "warn"] + run_dir_args(tmp),
                              stdout=log, stderr=log)
    client = GardenClient(sock, timeout=120)
    for _ in range(200):
        try:
            client.ping()
            return daemon, client
        except OSError:
            time.sleep(0.05)
    daemon.terminate()
    raise RuntimeError(f"cloched did not start; see {log.name}")


def bench_cloche(build, rootfs, n, gib, tmp, throughput=True):
    parent = f"cloche-bench-proc-{os.getpid()}"
    if not os.access(os.path.join(build, "cloche-shim"), os.X_OK):
        raise SystemExit(f"{build}/cloche-shim is missing: cloched cannot run processes")
    daemon, client = start_daemon(build, rootfs, tmp, parent)
    results = {}
    try:
        handle = client.create({"handle": "bench", "limits": {
            "memory_limits": {"limit_in_bytes": 256 << 20}, "pid_limits": {"max": 512}}})
        spec = {"path": "/bin/true"}

        def run_true(streams):
            t0 = time.perf_counter()
            p = client.run(handle, spec, stdout=streams, stderr=streams)
            status = p.wait(30)
            t1 = time.perf_counter()
            p.close()
            if status != 0:
                raise RuntimeError(f"/bin/true exited {status}")
            return t1 - t0

        for _ in range(10):  # warm-up
            run_true(True)
        results["run"] = [run_true(True) for _ in range(n)]
        results["run_nostreams"] = [run_true(False) for _ in range(n)]
        # The same sequence from a C client (tests/bench/run-client.c), so the
        # client's own cost is the Go client's order of magnitude, not Python's.
        c_client = os.path.join(build, "tests", "bench", "run-client")
        if os.access(c_client, os.X_OK):
            for key, mode in (("c_run", "streams"), ("c_run_nostreams", "nostreams")):
                b0 = busy_ms()
                out = subprocess.run([c_client, client.unix_path, handle, str(n), mode],
                                     check=True, capture_output=True, text=True).stdout
                results[key + "_cpu"] = (busy_ms() - b0) / n
                results[key] = [float(x) for x in out.split()]

        size = gib * GIB
        for name, argv in () if not throughput else (("dd", ["dd", "if=/dev/zero", "bs=1M", f"count={gib * 1024}"]),
                           ("head", ["head", "-c", str(size), "/dev/zero"])):
            sink = Counter()
            t0 = time.perf_counter()
            p = client.run(handle, {"path": argv[0], "args": argv[1:]}, stdout=sink)
            status = p.wait(600)
            t1 = time.perf_counter()
            p.close()
            if status != 0:
                raise RuntimeError(f"{argv}: exit status {status}")
            results[f"tput_{name}"] = (size, sink.n, t1 - t0)
        client.destroy(handle)
    finally:
        daemon.terminate()
        daemon.wait()
        remove_cgroup_parent(parent)
    return results


def bench_host_pipe(gib):
    """The ceiling without cloche: the same dd on the host, read from a 1 MiB pipe
    (as the shim's) into the same 256 KiB buffer the test client uses."""
    size = gib * GIB
    t0 = time.perf_counter()
    proc = subprocess.Popen(["dd", "if=/dev/zero", "bs=1M", f"count={gib * 1024}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    fcntl.fcntl(proc.stdout.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ
    buf = bytearray(256 << 10)
    n = 0
    while True:
        k = proc.stdout.readinto(buf)
        if not k:
            break
        n += k
    proc.wait()
    if n != size:
        raise RuntimeError(f"host dd gave {n} of {size} bytes")
    return size, time.perf_counter() - t0


CRUN_INNER = r'''
import json, os, subprocess, sys, time
bundle, n = sys.argv[1], int(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "hide-unified", "/sys/fs/cgroup/unified"],
               check=True)
cid = f"bench-exec-{os.getpid()}"
subprocess.run(["crun", "run", "--detach", "--bundle", bundle, cid], check=True,
               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def busy_ms():
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return sum(int(v[i]) for i in (0, 1, 2, 5, 6)) * 1000 / os.sysconf("SC_CLK_TCK")
try:
    times = []
    for i in range(n + 10):
        if i == 10:
            b0 = busy_ms()
        t = time.perf_counter()
        subprocess.run(["crun", "exec", cid, "/bin/true"], check=True, stdin=subprocess.DEVNULL)
        if i >= 10:
            times.append(time.perf_counter() - t)
finally:
    subprocess.run(["crun", "kill", cid, "KILL"], stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["crun", "delete", "-f", cid], stderr=subprocess.DEVNULL).returncode == 0:
            break
        time.sleep(0.05)
print(json.dumps({"times": times, "cpu_ms": (busy_ms() - b0) / n}))
'''


def bench_crun(rootfs, n, tmp):
    if not shutil.which("crun"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "crun"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    bundle = os.path.join(tmp, "bundle")
    os.makedirs(bundle)
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/sleep", "1000"]
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["hostname"] = "crun"
    linux = cfg["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user",
                                                  "cgroup")]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 0x30000000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 0x30000000, "size": 65536}]
    parent = f"cloche-bench-crun-exec-{os.getpid()}"
    linux["cgroupsPath"] = f"/{parent}/c"
    linux["resources"] = {"memory": {"limit": 256 << 20}, "pids": {"limit": 512}}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    try:
        out = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                              CRUN_INNER, bundle, str(n)], check=True, capture_output=True,
                             text=True)
    finally:
        remove_cgroup_parent(parent)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return got["times"], got["cpu_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build", "rootfs", "busybox"))
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--gib", type=int, default=1, help="GiB written for the throughput run")
    ap.add_argument("--no-peer", action="store_true", help="skip crun exec and the host pipe")
    ap.add_argument("--no-throughput", action="store_true", help="skip the stdout throughput runs")
    args = ap.parse_args()
    if os.environ.get("CLOCHE_BENCH_SANDBOX") != "1":
        os.execvp("unshare", ["unshare", "--mount", "--net", "--propagation", "private", "--fork",
                              "env", "CLOCHE_BENCH_SANDBOX=1", sys.executable] + sys.argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    args.build = os.path.abspath(args.build)
    args.rootfs = os.path.abspath(args.rootfs)
    if not os.path.isdir(args.rootfs):
        subprocess.run([os.path.join(ROOT, "rootfs-tools", "mkrootfs-busybox.sh"), args.rootfs],
                       check=True)
    tmp = tempfile.mkdtemp(prefix="cloche-bench-")
    os.chmod(tmp, 0o711)
    try:
        res = bench_cloche(args.build, args.rootfs, args.n, args.gib, tmp,
                           throughput=not args.no_throughput)
        crun = None if args.no_peer else bench_crun(args.rootfs, args.n, tmp)
        host = None if args.no_peer or args.no_throughput else bench_host_pipe(args.gib)
    finally:
        remove_tree(tmp)
    r_med, r_p90 = stats(res["run"])
    s_med, s_p90 = stats(res["run_nostreams"])
    print(f"processes, {args.n} runs each, unprivileged container, 2 cores")
    print(f"  cloche Run /bin/true to exit status (3 connections)  "
          f"median {r_med:6.2f} ms  p90 {r_p90:6.2f} ms  (target <= 2)")
    print(f"  cloche Run /bin/true, no stream connections          "
          f"median {s_med:6.2f} ms  p90 {s_p90:6.2f} ms")
    if "c_run" in res:
        cr_med, cr_p90 = stats(res["c_run"])
        cs_med, cs_p90 = stats(res["c_run_nostreams"])
        print(f"  the same from a C client (3 connections)             "
              f"median {cr_med:6.2f} ms  p90 {cr_p90:6.2f} ms  (target <= 2)")
        print(f"  the same from a C client, no stream connections      "
              f"median {cs_med:6.2f} ms  p90 {cs_p90:6.2f} ms")
        print(f"  CPU per Run from C, the whole machine (client, daemon, shims, process, "
              f"kernel): {res['c_run_cpu']:.2f} ms")
    if crun is not None:
        crun, crun_cpu = crun
        c_med, c_p90 = stats(crun)
        print(f"  crun exec /bin/true                                  "
              f"median {c_med:6.2f} ms  p90 {c_p90:6.2f} ms")
        print(f"  CPU per crun exec, the whole machine: {crun_cpu:.2f} ms")
        print(f"  ratio cloche Run / crun exec: {r_med / c_med:.2f}")
    for name in () if args.no_throughput else ("dd", "head"):
        size, got, secs = res[f"tput_{name}"]
        lost = f"  ({size - got} BYTES LOST)" if got != size else ""
        print(f"  stdout throughput, {size / GIB:.0f} GiB via {name:4s}: "
              f"{got / secs / 1e6:7.0f} MB/s in {secs:.2f} s  (target >= 1000){lost}")
    if host is None:
        return
    size, secs = host
    print(f"  for scale: host dd -> 1 MiB pipe -> this reader: {size / secs / 1e6:7.0f} MB/s "
          f"(busybox head writes in small pieces: its figure is head's own limit)")


if __name__ == "__main__":
    main()
