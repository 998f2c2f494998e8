#!/usr/bin/python3
"""Peer for issue 17's scale rows: how `crun run` slows down with many crun
containers alive, beside network.py's figures for cloche.

    tests/bench/crun_scale.py [--rootfs DIR] [--levels 0,1000,4096] [--cycles C]
                              [--threads T] [--cycle-gap S] [--no-veth]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare), where the cgroup2 `unified` mount of this
machine's hybrid layout is hidden (crun refuses hybrid hosts otherwise) and
crun's state lives in a temporary --root. Every container is what network.py
makes of cloche's, as near as crun allows: new pid, mount, uts, ipc, net, user
(65536 ids) and cgroup namespaces, a read-only root (the same busybox rootfs),
256 MiB memory and 512 pids limits, and unless --no-veth a veth pair, made by a
createRuntime hook (one `ip -batch`: the peer moved into the container's network
namespace, the host end on a bridge), as a CNI plugin would. After each fill,
as network.py does, a sync and 2 s idle: a level is measured without the fill's
own writeback.

At each level L of live containers (`crun run --detach` of `sleep`, filled with T
threads), C cycles of `crun run` of /bin/true are timed back to back: create,
start, wait, delete, the whole life of a container. Prints each level's median
and p90, the ratio to level 0 and the difference in ms (the hook's fixed cost
is in every level alike, so the difference is what grew). With --cycle-gap S
each cycle starts after S seconds idle, as network.py's. Everything is removed
at the end (crun delete --force of each, then the bench's own cgroups). Not a CI
test: it asserts nothing.
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import network  # noqa: E402 (its sandbox and stats)
from network import stats  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRIDGE = "cbr-crun"
SETTLE_S = 2.0
HOOK = """#!/bin/sh
# createRuntime hook: the container's state (one line of JSON) on stdin; a veth
# pair whose peer is the container's eth0 and whose host end is on one of the
# bench's bridges (a bridge takes 1,024 ports at most: container fN goes on
# bridge N / 1000). Shell built-ins and one ip(8), so the hook's own cost stays small.
IFS= read -r state
pid=${state#*'"pid":'}; pid=${pid%%[!0-9]*}
id=${state#*'"id":"'}; id=${id%%'"'*}
exec ip -batch - <<EOF
link add v$id type veth peer name eth0 netns $pid
link set v$id master {bridge}$((${id#?} / 1000)) up
EOF
"""


def enter_sandbox():
    """network.py's sandbox (private net and mount namespaces), with this
    machine's hybrid `unified` mount hidden from crun."""
    network.enter_sandbox()
    if os.path.ismount("/sys/fs/cgroup/unified"):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "hide-unified",
                        "/sys/fs/cgroup/unified"], check=True)


class Crun:
    def __init__(self, rootfs, tmp, veth, max_live):
        self.tmp = tmp
        self.bridges = []
        self.state = os.path.join(tmp, "state")
        os.makedirs(self.state)
        self.parent = f"cloche-bench-crunscale-{os.getpid()}"
        self.live = []
        self.serial = 0
        hooks = None
        if veth:
            hook = os.path.join(tmp, "veth-hook")
            with open(hook, "w") as f:
                f.write(HOOK.replace("{bridge}", BRIDGE))
            os.chmod(hook, 0o755)
            hooks = {"createRuntime": [{"path": hook}]}
            self.bridges = [f"{BRIDGE}{k}" for k in range(max_live // 1000 + 1)]
            for b in self.bridges:
                subprocess.run(["ip", "link", "add", b, "type", "bridge"], check=True)
                subprocess.run(["ip", "link", "set", b, "up"], check=True)
        self.bundle = os.path.join(tmp, "bundle")
        os.makedirs(self.bundle)
        subprocess.run(["crun", "spec"], cwd=self.bundle, check=True)
        with open(os.path.join(self.bundle, "config.json")) as f:
            base = json.load(f)
        base["process"]["terminal"] = False
        base["root"] = {"path": rootfs, "readonly": True}
        base["hostname"] = "crun"
        linux = base["linux"]
        linux["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                      "user", "cgroup")]
        linux["uidMappings"] = [{"containerID": 0, "hostID": 0x30000000, "size": 65536}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": 0x30000000, "size": 65536}]
        linux["resources"] = {"memory": {"limit": 256 << 20}, "pids": {"limit": 512}}
        if hooks:
            base["hooks"] = hooks
        self.base = base

    def _config(self, name, args):
        """A config file of this container's own (its own cgroup below the bench's)."""
        cfg = json.loads(json.dumps(self.base))
        cfg["process"]["args"] = args
        cfg["linux"]["cgroupsPath"] = f"/{self.parent}/{name}"
        path = os.path.join(self.tmp, "configs", f"{name}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def _crun(self, *args, check=True):
        # stderr to a file, not a pipe: a detached container would hold a pipe open.
        with tempfile.TemporaryFile("w+") as err:
            r = subprocess.run(["crun", "--root", self.state] + list(args),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            if check and r.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"crun {' '.join(args)}: exit {r.returncode}: "
                                   f"{err.read().strip()}")
        return r

    def start_live(self, i):
        name = f"f{i}"
        cfg = self._config(name, ["/bin/sleep", "1000000"])
        self._crun("run", "--detach", "--bundle", self.bundle, "--config", cfg, name)
        self.live.append(name)

    def fill(self, target, threads):
        todo = list(range(len(self.live), target))
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(self.start_live, todo))

    def cycle(self):
        """One `crun run` of /bin/true, timed (its config written beforehand)."""
        self.serial += 1
        name = f"c{self.serial}"
        cfg = self._config(name, ["/bin/true"])
        t = time.perf_counter()
        self._crun("run", "--bundle", self.bundle, "--config", cfg, name)
        return time.perf_counter() - t

    def teardown(self, threads):
        """Every container in the bench's crun state, not only those it counted
        (a fill cut short by an error leaves some it never heard back about)."""
        def delete(name):
            self._crun("delete", "--force", name, check=False)
        names = set(self.live) | set(os.listdir(self.state))
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(delete, sorted(names)))
        self.live = []
        for b in self.bridges:
            subprocess.run(["ip", "link", "del", b], check=False)
        # crun leaves its cgroups' parent behind; the bench made it, so it goes.
        for ctrl in os.listdir("/sys/fs/cgroup"):
            if ctrl == "unified":  # the tmpfs hiding it, private to this namespace
                continue
            top = os.path.join("/sys/fs/cgroup", ctrl, self.parent)
            if not os.path.isdir(top):
                continue
            for d in sorted(os.listdir(top)):
                p = os.path.join(top, d)
                if os.path.isdir(p):
                    try:
                        os.rmdir(p)
                    except OSError:
                        pass
            try:
                os.rmdir(top)
            except OSError as e:
                print(f"  could not remove {top}: {e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", default=None)
    ap.add_argument("--levels", default="0,1000,4096")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--cycle-gap", type=float, default=0.0)
    ap.add_argument("--no-veth", action="store_true")
    args = ap.parse_args()
    rootfs = args.rootfs or os.path.join(ROOT, "build-test", "rootfs", "busybox")
    if not os.path.isdir(rootfs):
        sys.exit(f"crun_scale: no rootfs at {rootfs} (--rootfs)")
    if not shutil.which("crun"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "crun"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    enter_sandbox()
    # A SIGTERM (timeout(1), a CI runner) still tears down what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="crun-scale-") as tmp:
        c = Crun(os.path.abspath(rootfs), tmp, not args.no_veth, max(levels, default=0))
        results = {}
        started = time.monotonic()
        try:
            for level in levels:
                t0 = time.monotonic()
                before = len(c.live)
                c.fill(level, args.threads)
                if level > before:
                    took = time.monotonic() - t0
                    t1 = time.monotonic()
                    os.sync()  # as network.py's settle(): not the fill's own writeback
                    synced = time.monotonic() - t1
                    time.sleep(SETTLE_S)
                    print(f"    filled {before} -> {level} live crun containers "
                          f"({args.threads} threads): {took:.1f} s, "
                          f"{(level - before) / took:.0f} containers/s; then sync {synced:.1f} s "
                          f"and {SETTLE_S:g} s idle", flush=True)
                for _ in range(3):  # warm-up
                    c.cycle()
                times = []
                for _ in range(args.cycles):
                    if args.cycle_gap:
                        time.sleep(args.cycle_gap)
                    times.append(c.cycle())
                results[level] = times
        finally:
            t0 = time.monotonic()
            n = len(c.live)
            c.teardown(args.threads)
            print(f"  teardown: deleted {n} crun containers in {time.monotonic() - t0:.1f} s")
    veth = "no veth" if args.no_veth else "a veth pair from a createRuntime hook"
    gap = f", {args.cycle_gap} s idle before each" if args.cycle_gap else ", back to back"
    print(f"peer: crun run /bin/true at each level of live crun containers ({veth}; "
          f"{args.cycles} cycles{gap})")
    base = stats(results[levels[0]])[0] if levels else None
    for level in levels:
        med, p90 = stats(results[level])
        line = f"  {level:5d} live  crun run                median {med:7.2f} ms  p90 {p90:7.2f} ms"
        if level != levels[0]:
            line += f"   {med / base:.2f}x of {levels[0]} live, {med - base:+.2f} ms"
        print(line)
    print(f"  (total run time {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
