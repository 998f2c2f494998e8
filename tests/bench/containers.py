#!/usr/bin/python3
"""Benchmark: container create and destroy through cloche's API, beside `crun run`
of the same root file system, in one run.

    tests/bench/containers.py [--build DIR] [--rootfs DIR] [-n N]

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
"""
import argparse
import json
import os
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


def bench_cloche(build, rootfs, n, tmp):
    sock = os.path.join(tmp, "cloche.sock")
    parent = f"cloche-bench-{os.getpid()}"
    # CLOCHE_BENCH_LOG=PATH keeps a debug log (each create's steps timed) there.
    keep = os.environ.get("CLOCHE_BENCH_LOG")
    log = open(keep or os.path.join(tmp, "cloched.log"), "w")
    daemon = subprocess.Popen([os.path.join(build, "cloched"), "--bind-socket", sock,
                               "--depot", os.path.join(tmp, "depot"), "--cgroup-parent", parent,
                               "--default-rootfs", rootfs,
                               "--log-level", "debug" if keep else "warn"], stderr=log)
    try:
        for _ in range(600):  # until it answers, not just until the socket file exists
            try:
                call(sock, "GET", "/ping")
                break
            except (OSError, RuntimeError, IndexError):
                time.sleep(0.05)
        spec = {"limits": {"memory_limits": {"limit_in_bytes": 256 << 20},
                           "pid_limits": {"max": 512}}}
        for i in range(5):  # warm-up
            call(sock, "POST", "/containers", dict(spec, handle=f"w{i}"))
            call(sock, "DELETE", f"/containers/w{i}")
        create, destroy, cycle = [], [], []
        for i in range(n):
            t0 = time.perf_counter()
            call(sock, "POST", "/containers", dict(spec, handle=f"b{i}"))
            t1 = time.perf_counter()
            call(sock, "DELETE", f"/containers/b{i}")
            t2 = time.perf_counter()
            create.append(t1 - t0)
            destroy.append(t2 - t1)
            cycle.append(t2 - t0)
        client = GardenClient(sock, timeout=60)
        full = []
        for i in range(n + 3):
            t0 = time.perf_counter()
            call(sock, "POST", "/containers", dict(spec, handle=f"r{i}"))
            p = client.run(f"r{i}", {"path": "/bin/true"})
            status = p.wait(30)
            p.close()
            call(sock, "DELETE", f"/containers/r{i}")
            if status != 0:
                raise RuntimeError(f"/bin/true exited {status}")
            if i >= 3:  # warm-up
                full.append(time.perf_counter() - t0)
        # The same cycle from a C client (tests/bench/run-client.c), whose own
        # cost is of the Go client's order, not Python's.
        c_full = None
        c_client = os.path.join(build, "tests", "bench", "run-client")
        if os.access(c_client, os.X_OK):
            out = subprocess.run([c_client, sock, "--cycle", str(n), json.dumps(spec)],
                                 check=True, capture_output=True, text=True).stdout
            c_full = [sum(float(x) for x in line.split()) for line in out.splitlines()]
        return create, destroy, cycle, full, c_full
    finally:
        daemon.terminate()
        daemon.wait()
        for ctrl in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", ctrl, parent))
            except OSError:
                pass


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
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build", "rootfs", "busybox"))
    ap.add_argument("-n", type=int, default=100)
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
    try:
        create, destroy, cycle, full, c_full = bench_cloche(args.build, args.rootfs, args.n, tmp)
        crun = bench_crun(args.rootfs, args.n, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c_med, c_p90 = stats(create)
    d_med, d_p90 = stats(destroy)
    y_med, y_p90 = stats(cycle)
    f_med, f_p90 = stats(full)
    r_med, r_p90 = stats(crun)
    print(f"containers, {args.n} runs each, unprivileged, memory+pids limits, 2 cores")
    print(f"  cloche create             median {c_med:6.2f} ms  p90 {c_p90:6.2f} ms  (target <= 10)")
    print(f"  cloche destroy            median {d_med:6.2f} ms  p90 {d_p90:6.2f} ms  (target <= 10)")
    print(f"  cloche create+destroy     median {y_med:6.2f} ms  p90 {y_p90:6.2f} ms")
    print(f"  cloche create+run+destroy median {f_med:6.2f} ms  p90 {f_p90:6.2f} ms  "
          "(Run /bin/true to its exit status, 3 connections)")
    if c_full:
        cf_med, cf_p90 = stats(c_full)
        print(f"  the same from a C client  median {cf_med:6.2f} ms  p90 {cf_p90:6.2f} ms")
    print(f"  crun run /bin/true        median {r_med:6.2f} ms  p90 {r_p90:6.2f} ms")
    print(f"  ratio cloche create+destroy / crun run: {y_med / r_med:.2f}")
    print(f"  ratio cloche create+run+destroy / crun run: {f_med / r_med:.2f} (target <= 1.0)")
    if c_full:
        print(f"  ratio from the C client / crun run: {cf_med / r_med:.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
