#!/usr/bin/python3
"""Benchmark: daemon restart with many live containers, from exec to serving every
one (issue 17's row: 4,096 containers, target <= 2 s).

    tests/bench/restart.py BUILD_DIR [--rootfs DIR] [-n N] [--threads T]
                           [--restarts R] [--network-pool CIDR] [--net-rules]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare), with a temporary depot and a cgroup parent of
its own. Creates N networked containers (T client threads; with --net-rules each
also gets a NetIn mapping and a NetOut rule), then R times: SIGKILL the daemon
(containers and their processes keep running, as after a crash) and exec a new
one on the same depot, timing from the exec to
  - the first answered /ping,
  - a bulk_info of every handle with no error in it (a container not restored yet
    is waited for, so this is "serving every one"),
  - a Run of /bin/true in one container, to its exit status.
At the end every container is destroyed, the daemon stopped by pid and the depot
and cgroup parent removed. Peer: none runs here (guardian's restore is a serial
walk of its depot, `runc state` per container). Asserts nothing.
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from network import (SPEC, Daemon, default_rootfs, enter_sandbox, fill,  # noqa: E402
                     remove_tree, stats)


def wait_ping(client, proc, deadline):
    while time.monotonic() < deadline:
        try:
            client.ping()
            return time.perf_counter()
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("cloched exited during start-up")
            time.sleep(0.001)
    raise RuntimeError("cloched did not answer /ping")


def one_restart(d, handles, extra):
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    os.unlink(d.sock)
    t0 = time.perf_counter()
    d.respawn(extra)
    t_ping = wait_ping(d.client, d.proc, time.monotonic() + 120) - t0
    info = d.client.bulk_info(handles)
    t_all = time.perf_counter() - t0
    bad = [h for h, v in info.items() if v.get("Err")]
    if len(info) != len(handles) or bad:
        raise RuntimeError(f"{len(bad)} containers not served after the restart: {bad[:3]}")
    p = d.client.run(handles[0], {"path": "/bin/true"})
    status = p.wait()
    t_run = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"Run after the restart: exit status {status}")
    return t_ping, t_all, t_run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build"))
    ap.add_argument("--rootfs")
    ap.add_argument("-n", type=int, default=4096, help="live containers")
    ap.add_argument("--threads", type=int, default=4, help="client threads filling")
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--network-pool", default="10.192.0.0/17")
    ap.add_argument("--net-rules", action="store_true", help="a NetIn and a NetOut each")
    args = ap.parse_args()
    enter_sandbox()
    args.build = os.path.abspath(args.build)
    args.rootfs = args.rootfs or default_rootfs(args.build)
    tmp = tempfile.mkdtemp(prefix="cloche-bench-restart-")
    os.chmod(tmp, 0o711)
    parent = f"cloche-bench-restart-{os.getpid()}"
    extra = ["--network-pool", args.network_pool, "--max-containers", str(args.n + 16)]
    d = Daemon(args.build, args.rootfs, tmp, parent, extra)
    pings, alls, runs = [], [], []
    try:
        secs = fill(d.client, 0, args.n, args.threads, netin=args.net_rules,
                    netout=args.net_rules)
        print(f"  [{args.n} containers created in {secs:.1f} s]", file=sys.stderr)
        handles = sorted(d.client.list())
        for i in range(args.restarts):
            p, a, r = one_restart(d, handles, extra)
            print(f"  [restart {i}: ping {p * 1e3:.0f} ms, all {a * 1e3:.0f} ms, "
                  f"run {r * 1e3:.0f} ms]", file=sys.stderr)
            pings.append(p)
            alls.append(a)
            runs.append(r)
        n, secs = d.destroy_all(args.threads)
        print(f"  [{n} containers destroyed in {secs:.1f} s]", file=sys.stderr)
    finally:
        d.stop()
        remove_tree(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"daemon restart (SIGKILL, exec on the same depot), {args.n} live containers, "
          f"{args.restarts} restarts, 2 cores")
    for label, xs in (("exec to first /ping", pings), ("exec to serving every one", alls),
                      ("exec to a Run's exit", runs)):
        med, p90 = stats(xs)
        print(f"  {label:28s} median {med:8.1f} ms  p90 {p90:8.1f} ms" +
              ("  (target <= 2000)" if label.startswith("exec to serving") else ""))


if __name__ == "__main__":
    main()
