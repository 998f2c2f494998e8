#!/usr/bin/python3
"""Benchmark: container create and destroy through cloche's API, beside `crun run`
of the same root file system, in one run.

    tests/bench/containers.py [--build DIR] [--against DIR] [--rootfs DIR] [-n N] [--no-peer]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare). cloche: N x (POST /containers, DELETE) of an
unprivileged container with the default limits, timed from request to reply over
the Unix socket; then N x (create, Run /bin/true to its exit status through
tests/garden_client/ as the Go client does it, with its stdout and stderr
connections, destroy), the whole cycle timed, and the same cycle again from
tests/bench/run-client.c (the Go client's bytes, sent from C). crun: N x `crun run` of
/bin/true in the same rootfs, with new
pid, mount, uts, ipc and net namespaces, a user namespace with a 65536-id map and
memory/pids limits; crun refuses this machine's hybrid cgroups, so it runs in a
mount namespace where the cgroup2 `unified` mount is hidden (kernel notes §5).
Prints medians, p90s and ratios. Not a CI test: timing depends on the machine.

--against DIR: a second build's daemon runs beside the first (its own depot,
cgroup parent, network tag and pool) and every cycle alternates between the two,
each in turn first, so an A/B comparison sees the same load on a busy machine.
With CLOCHE_BENCH_LOG=PATH (PATH.against for the second build) it also prints the
daemons' own step timings of a create and a destroy, from their debug logs.
"""
import argparse
import json
import os
import re
import shutil
import socket
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


def call(sock_path, method, path, body=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: api\r\nContent-Length: {len(data)}\r\n" \
           "Content-Type: application/json\r\nConnection: close\r\n\r\n"
    s.sendall(head.encode() + data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    status = int(out.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(out.decode(errors="replace"))
    return out


def stats(xs):
    xs = sorted(xs)
    return statistics.median(xs) * 1e3, xs[max(math.ceil(len(xs) * 0.9) - 1, 0)] * 1e3


class Bench:
    """One daemon of a build, with its own socket, depot, cgroup parent and network."""

    def __init__(self, build, rootfs, tmp, name, log_path=None, net=None):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "cloche.sock")
        self.parent = f"cloche-bench-{os.getpid()}-{name}"
        self.log_path = log_path or os.path.join(self.dir, "cloched.log")
        extra = ["--network-tag", net[0], "--network-pool", net[1]] if net else []
        self.log = open(self.log_path, "w")
        self.daemon = subprocess.Popen(
            [os.path.join(build, "cloched"), "--bind-socket", self.sock,
             "--depot", os.path.join(self.dir, "depot"), "--cgroup-parent", self.parent,
             "--default-rootfs", rootfs, "--log-level", "debug" if log_path else "warn"] + extra
            + run_dir_args(self.dir),
            stderr=self.log)
        for _ in range(600):  # until it answers, not just until the socket file exists
            try:
                call(self.sock, "GET", "/ping")
                break
            except (OSError, RuntimeError, IndexError):
                time.sleep(0.05)
        self.client = GardenClient(self.sock, timeout=60)
        self.create, self.destroy, self.cycle, self.full, self.c_full = [], [], [], [], []
        # The same cycle from a C client (tests/bench/run-client.c), whose own
        # cost is of the Go client's order, not Python's.
        self.c_client = os.path.join(build, "tests", "bench", "run-client")
        if not os.access(self.c_client, os.X_OK):
            self.c_client = None
        for i in range(5):  # warm-up
            call(self.sock, "POST", "/containers", dict(SPEC, handle=f"w{i}"))
            call(self.sock, "DELETE", f"/containers/w{i}")

    def create_destroy(self, i):
        t0 = time.perf_counter()
        call(self.sock, "POST", "/containers", dict(SPEC, handle=f"b{i}"))
        t1 = time.perf_counter()
        call(self.sock, "DELETE", f"/containers/b{i}")
        t2 = time.perf_counter()
        self.create.append(t1 - t0)
        self.destroy.append(t2 - t1)
        self.cycle.append(t2 - t0)

    def create_run_destroy(self, i, keep=True):
        t0 = time.perf_counter()
        call(self.sock, "POST", "/containers", dict(SPEC, handle=f"r{i}"))
        p = self.client.run(f"r{i}", {"path": "/bin/true"})
        status = p.wait(30)
        p.close()
        call(self.sock, "DELETE", f"/containers/r{i}")
        if status != 0:
            raise RuntimeError(f"/bin/true exited {status}")
        if keep:
            self.full.append(time.perf_counter() - t0)

    def c_cycles(self, count):
        if not self.c_client:
            return
        out = subprocess.run([self.c_client, self.sock, "--cycle", str(count), json.dumps(SPEC)],
                             check=True, capture_output=True, text=True).stdout
        self.c_full += [sum(float(x) for x in line.split()) for line in out.splitlines()]

    def stop(self):
        self.daemon.terminate()
        self.daemon.wait()
        for ctrl in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", ctrl, self.parent))
            except OSError:
                pass


SPEC = {"limits": {"memory_limits": {"limit_in_bytes": 256 << 20}, "pid_limits": {"max": 512}}}


def bench_cloche(builds, rootfs, n, tmp):
    """N create+destroy and N create+run+destroy cycles on each build's daemon;
    with two builds the daemons run side by side and their cycles alternate (in
    turn first), so both see the same load."""
    # CLOCHE_BENCH_LOG=PATH keeps a debug log (each create's steps timed) there;
    # the second build's at PATH.against.
    keep = os.environ.get("CLOCHE_BENCH_LOG")
    logs = [keep, keep + ".against"] if keep else [None, None]
    nets = [None] if len(builds) == 1 else [("ba", "10.201.0.0/22"), ("bb", "10.202.0.0/22")]
    benches = []
    try:
        for k, build in enumerate(builds):
            benches.append(Bench(build, rootfs, tmp, f"d{k}", logs[k], nets[k]))
        for i in range(n):
            for b in benches if i % 2 == 0 else benches[::-1]:
                b.create_destroy(i)
        for i in range(n + 3):
            for b in benches if i % 2 == 0 else benches[::-1]:
                b.create_run_destroy(i, keep=i >= 3)  # 3 warm-up cycles
        for i in range(0, n, 10):  # the C client's, in runs of 10 alternating
            for b in benches if i % 20 == 0 else benches[::-1]:
                b.c_cycles(min(10, n - i))
        return benches
    finally:
        for b in benches:
            b.stop()


STEPS = [
    (r"'b\d+': /etc files ([\d.]+) ms, cgroups ([\d.]+) ms, namespaces and mounts ([\d.]+) ms "
     r"\(network ([\d.]+)(?: ms, record staged ([\d.]+))?",
     ["/etc files", "cgroups", "namespaces and mounts", "  (network)", "  (record staged)"]),
    (r"'b\d+': state written in ([\d.]+)", ["state written"]),
    (r"'b\d+': created in ([\d.]+)", ["created"]),
    (r"'b\d+': shims ([\d.]+) ms, cgroups ([\d.]+) ms", ["destroy: shims", "destroy: cgroups"]),
    (r"'b\d+': torn down in ([\d.]+) ms", ["destroy: torn down"]),
]


def log_steps(path):
    """{step: [ms]} of the create+destroy cycles in a daemon's debug log."""
    found = {}
    pats = [(re.compile(p), names) for p, names in STEPS]
    with open(path, errors="replace") as f:
        for line in f:
            for pat, names in pats:
                m = pat.search(line)
                if m:
                    for name, v in zip(names, m.groups()):
                        if v is not None:
                            found.setdefault(name, []).append(float(v) / 1e3)
    return found


CRUN_INNER = r'''
import json, os, subprocess, sys, time
bundle, n = sys.argv[1], int(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "hide-unified", "/sys/fs/cgroup/unified"], check=True)
times = []
for i in range(n + 3):
    t = time.perf_counter()
    subprocess.run(["crun", "run", "--bundle", bundle, f"bench-{os.getpid()}-{i}"], check=True,
                   stdin=subprocess.DEVNULL)
    if i >= 3:
        times.append(time.perf_counter() - t)
print(json.dumps(times))
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
    cfg["process"]["args"] = ["/bin/true"]
    cfg["root"] = {"path": rootfs, "readonly": True}
    cfg["hostname"] = "crun"
    linux = cfg["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user",
                                                  "cgroup")]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 0x30000000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 0x30000000, "size": 65536}]
    linux["cgroupsPath"] = f"/cloche-bench-crun-{os.getpid()}/c"
    linux["resources"] = {"memory": {"limit": 256 << 20}, "pids": {"limit": 512}}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    out = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                          CRUN_INNER, bundle, str(n)], check=True, capture_output=True, text=True)
    for ctrl in os.listdir("/sys/fs/cgroup"):
        for d in (f"cloche-bench-crun-{os.getpid()}/c", f"cloche-bench-crun-{os.getpid()}"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", ctrl, d))
            except OSError:
                pass
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--against", metavar="BUILD",
                    help="a second build, run side by side, its cycles alternating with "
                    "--build's (A/B under the same load)")
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build", "rootfs", "busybox"))
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--no-peer", action="store_true", help="skip crun run")
    args = ap.parse_args()
    if os.environ.get("CLOCHE_BENCH_SANDBOX") != "1":
        os.execvp("unshare", ["unshare", "--mount", "--net", "--propagation", "private", "--fork",
                              "env", "CLOCHE_BENCH_SANDBOX=1", sys.executable] + sys.argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    if not os.path.isdir(args.rootfs):
        subprocess.run([os.path.join(ROOT, "rootfs-tools", "mkrootfs-busybox.sh"), args.rootfs],
                       check=True)
    tmp = tempfile.mkdtemp(prefix="cloche-bench-")
    os.chmod(tmp, 0o711)
    builds = [args.build] + ([args.against] if args.against else [])
    try:
        benches = bench_cloche(builds, args.rootfs, args.n, tmp)
        crun = None if args.no_peer else bench_crun(args.rootfs, args.n, tmp)
    finally:
        remove_tree(tmp)
    r_med = stats(crun)[0] if crun else None
    print(f"containers, {args.n} runs each, unprivileged, memory+pids limits, 2 cores")
    for k, b in enumerate(benches):
        if len(benches) > 1:
            print(f" {'A' if k == 0 else 'B'}: {builds[k]}")
        c_med, c_p90 = stats(b.create)
        d_med, d_p90 = stats(b.destroy)
        y_med, y_p90 = stats(b.cycle)
        f_med, f_p90 = stats(b.full)
        print(f"  cloche create             median {c_med:6.2f} ms  p90 {c_p90:6.2f} ms  "
              "(target <= 10)")
        print(f"  cloche destroy            median {d_med:6.2f} ms  p90 {d_p90:6.2f} ms  "
              "(target <= 10)")
        print(f"  cloche create+destroy     median {y_med:6.2f} ms  p90 {y_p90:6.2f} ms")
        print(f"  cloche create+run+destroy median {f_med:6.2f} ms  p90 {f_p90:6.2f} ms  "
              "(Run /bin/true to its exit status, 3 connections)")
        if b.c_full:
            cf_med, cf_p90 = stats(b.c_full)
            print(f"  the same from a C client  median {cf_med:6.2f} ms  p90 {cf_p90:6.2f} ms")
        if k == len(benches) - 1 and crun:
            print(f"  crun run /bin/true        median {r_med:6.2f} ms  p90 {stats(crun)[1]:6.2f} ms")
        if crun:
            print(f"  ratio cloche create+destroy / crun run: {y_med / r_med:.2f}")
            print(f"  ratio cloche create+run+destroy / crun run: {f_med / r_med:.2f} "
                  "(target <= 1.0)")
            if b.c_full:
                print(f"  ratio from the C client / crun run: {cf_med / r_med:.2f} "
                      "(target <= 1.0)")
    if os.environ.get("CLOCHE_BENCH_LOG"):
        steps = [log_steps(b.log_path) for b in benches]
        print("  the daemon's own steps of a create+destroy (its debug log), median ms"
              + ("  A / B" if len(benches) > 1 else ""))
        for name in [n for _, names in STEPS for n in names]:
            vals = [f"{stats(st[name])[0]:6.2f}" if st.get(name) else "     -" for st in steps]
            print(f"    {name:24s} " + " / ".join(vals))


if __name__ == "__main__":
    main()
