#!/usr/bin/python3
"""Benchmark: networked containers, and how create/destroy, NetIn and NetOut scale
with the number of live containers (the nftables firewall's size).

    tests/bench/network.py BUILD_DIR [--rootfs DIR] [-n N] [--cycles C]
                           [--levels 0,250,1000] [--threads T] [--no-peer]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare), with a temporary depot and a cgroup parent of
its own; at the end every container is destroyed, the daemon stopped by pid, and
the depot and cgroup parent removed. Every container is networked (a /30, a
bridge and a veth pair, nftables entries).

(a) N x (create, destroy) of an unprivileged container with memory+pids limits,
    each timed from request to reply (tests/garden_client/).
(b) The same, C cycles at each level of live containers (default 0, 250, 1000).
    Every live container has one NetIn mapping and one NetOut rule, so at 1000
    the firewall holds 1000 of each. The live containers are made with a few
    client threads; after each fill a sync and 2 s idle, so a level is measured
    without the fill's own writeback (as on a host whose containers were made
    over time). Ratios 250/0 and 1000/0 (target <= 1.3).
(c) NetIn and NetOut call latency at each level: C calls of each on a probe
    container created at that level (so the probe's own rules grow alike).

Peer: guardian's iptables layout (kawasaki) needs guardian, not runnable here.
Unless --no-peer, an approximation of its per-container iptables-nft CLI calls
(chains w--instance-H in filter and nat, a log chain, jumps from w--forward,
w--prerouting and w--postrouting found again by comment at destroy) is timed at
0 and 1000 live instance chains, pre-filled with iptables-restore; it is skipped
if iptables-nft cannot be installed, and cut short when it gets too slow.
Prints medians, p90s and ratios; asserts nothing. Not a CI test. With
CLOCHE_BENCH_LOG=PATH the daemon's debug log is kept there and (b) also prints the
median of each step the daemon timed (cgroups, namespaces and mounts, links, the
state write, and a destroy's steps) at each level. With CLOCHE_BENCH_PERF=DIR a
system-wide `perf record -g` of (b)'s cycles at each level is written to
DIR/bLEVEL.data. --cycle-gap S idles S seconds before each of (b)'s cycles: the
kernel finishes what a destroy leaves to its workers (the memory cgroup's
offlining, the network namespace's cleanup) before the next create, which
separates what grows on the create's own path from that background work.
"""
import argparse
import concurrent.futures
import ctypes
import os
import re
import shutil
import signal
import math
import stat
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from garden_client import GardenClient  # noqa: E402
from rundir import remove_tree, run_dir_args  # noqa: E402,F401 (remove_tree: for restart.py, metrics.py)

SPEC = {"limits": {"memory_limits": {"limit_in_bytes": 256 << 20}, "pid_limits": {"max": 512}}}
_libc = ctypes.CDLL(None, use_errno=True)


# ---- shared with tests/bench/metrics.py

def stats(xs):
    """(median, p90) in ms."""
    xs = sorted(xs)
    return statistics.median(xs) * 1e3, xs[max(math.ceil(len(xs) * 0.9) - 1, 0)] * 1e3


def enter_sandbox():
    """Re-execute under unshare --net --mount (never on the host's network)."""
    if os.environ.get("CLOCHE_BENCH_SANDBOX") != "1":
        os.execvp("unshare", ["unshare", "--mount", "--net", "--propagation", "private", "--fork",
                              "env", "CLOCHE_BENCH_SANDBOX=1", sys.executable] + sys.argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def default_rootfs(build):
    for d in (os.path.join(build, "rootfs", "busybox"), os.path.join(ROOT, "build", "rootfs",
              "busybox"), os.path.join(ROOT, "build-test", "rootfs", "busybox")):
        if os.path.isdir(d):
            return d
    d = os.path.join(ROOT, "build", "rootfs", "busybox")
    subprocess.run([os.path.join(ROOT, "rootfs-tools", "mkrootfs-busybox.sh"), d], check=True)
    return d


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Daemon:
    """One cloched with a temporary depot and a cgroup parent of its own."""

    def __init__(self, build, rootfs, tmp, parent, extra=()):
        self.sock = os.path.join(tmp, "cloche.sock")
        self.parent = parent
        self.build, self.rootfs, self.tmp = build, rootfs, tmp
        self.log = os.environ.get("CLOCHE_BENCH_LOG") or os.path.join(tmp, "cloched.log")
        self.respawn(extra, mode="w")
        self.client = GardenClient(self.sock, timeout=120)
        for _ in range(200):
            try:
                self.client.ping()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"cloched did not start; see {self.log}")

    def respawn(self, extra=(), mode="a"):
        """Exec a daemon (the previous one, if any, must be gone) without waiting."""
        with open(self.log, mode) as log:
            self.proc = subprocess.Popen(
                [os.path.join(self.build, "cloched"), "--bind-socket", self.sock,
                 "--depot", os.path.join(self.tmp, "depot"), "--cgroup-parent", self.parent,
                 "--default-rootfs", self.rootfs, "--log-level",
                 "debug" if os.environ.get("CLOCHE_BENCH_LOG") else "warn"] + list(extra)
                + run_dir_args(self.tmp),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def address_space(self):
        """What the daemon's address space holds (what each clone of it copies): RSS,
        anonymous and page-table KiB, mappings and threads."""
        out = {}
        try:
            with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("Rss", "Anonymous"):
                        out[k] = int(v.split()[0])
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmPTE:", "Threads:")):
                        out[line.split(":")[0]] = int(line.split()[1])
            with open(f"/proc/{self.proc.pid}/maps") as f:
                out["VMAs"] = sum(1 for _ in f)
        except OSError:
            pass
        return out

    def destroy_all(self, threads):
        """Destroy every container; (count, seconds). A destroy that fails (a
        client timeout, say) is reported on stderr and retried once at the end, so
        the figures measured before are not lost."""
        handles = self.client.list()
        failed = []

        def one(h):
            try:
                self.client.destroy(h)
            except Exception as e:  # noqa: BLE001 - reported, then retried
                print(f"  [destroy {h} failed: {e!r}]", file=sys.stderr)
                failed.append(h)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(one, handles))
        for h in failed:
            try:
                self.client.destroy(h)
            except Exception as e:  # noqa: BLE001
                print(f"  [destroy {h} failed again: {e!r}]", file=sys.stderr)
        return len(handles), time.perf_counter() - t0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        remove_cgroup_parent(self.parent)


def remove_cgroup_parent(parent):
    """rmdir <hierarchy>/<parent>, deepest first, in every hierarchy. Processes left
    inside (a container a failed run left behind) can only be this run's: killed by pid."""
    for ctrl in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", ctrl, parent)
        if not os.path.isdir(top) or os.path.islink(os.path.join("/sys/fs/cgroup", ctrl)):
            continue
        dirs = [d for d, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda s: s.count("/"), reverse=True):
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    try:
                        with open(os.path.join(d, "cgroup.procs")) as f:
                            for pid in f.read().split():
                                try:
                                    os.kill(int(pid), signal.SIGKILL)
                                except ProcessLookupError:
                                    pass
                    except OSError:
                        pass
                    time.sleep(0.05)


def netout_rule(i):
    """A distinct TCP rule per container: one address of 198.18.0.0/15, port 443."""
    return {"protocol": 1, "networks": [{"start": f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}."
                                                 f"{i & 255}",
                                         "end": f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}."
                                                f"{i & 255}"}],
            "ports": [{"start": 443, "end": 443}]}


SETTLE_S = 2.0


def settle():
    """After a fill: write back what it left dirty and idle a moment, so that a
    level is measured as on a host whose containers were made over time, not
    under the fill's own writeback and deferred kernel work. Returns the sync's
    seconds."""
    t = time.monotonic()
    os.sync()
    took = time.monotonic() - t
    time.sleep(SETTLE_S)
    return took


def fill(client, start, stop, threads, prefix="live", netin=True, netout=True):
    """Create containers prefix<start..stop-1> with T client threads, each with one
    NetIn mapping and one NetOut rule. Returns the seconds taken."""
    def one(i):
        h = client.create(dict(SPEC, handle=f"{prefix}{i}"))
        if netin:
            client.net_in(h, 0, 8080)
        if netout:
            client.net_out(h, netout_rule(i))
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(start, stop)))
    return time.perf_counter() - t0


# ---- cloche

def cycles(client, n, tag, gap=0.0):
    create, destroy = [], []
    for i in range(n):
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter()
        client.create(dict(SPEC, handle=f"{tag}-{i}"))
        t1 = time.perf_counter()
        client.destroy(f"{tag}-{i}")
        t2 = time.perf_counter()
        create.append(t1 - t0)
        destroy.append(t2 - t1)
    return create, destroy


def perf_start(tag):
    """With CLOCHE_BENCH_PERF=DIR, a system-wide `perf record -g` of the cycles
    at each level goes to DIR/TAG.data (for `perf diff` between levels)."""
    out = os.environ.get("CLOCHE_BENCH_PERF")
    if not out:
        return None
    os.makedirs(out, exist_ok=True)
    p = subprocess.Popen(["perf", "record", "-q", "-a", "-g", "-o",
                          os.path.join(out, f"{tag}.data")], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return p


def perf_stop(p):
    if p:
        p.send_signal(signal.SIGINT)
        p.wait()


def probe_net_calls(client, n, tag):
    h = client.create(dict(SPEC, handle=f"probe-{tag}"))
    netin, netout = [], []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            client.net_in(h, 0, 9000 + i)
            netin.append(time.perf_counter() - t0)
        for i in range(n):
            t0 = time.perf_counter()
            client.net_out(h, netout_rule(100000 + i))
            netout.append(time.perf_counter() - t0)
    finally:
        client.destroy(h)
    return netin, netout


def firewall_counts():
    """(NetIn map elements, per-container chains, NetOut rule elements) in cloche's
    table. Chains: the older layout's ctr-<id> and today's log-<id> (logged rules
    only); NetOut: the fill's tcp-443 rule, an element of a netout_l4 shard (or a
    rule of the older layout)."""
    out = subprocess.run(["nft", "list", "table", "inet", "cloche"], capture_output=True,
                         text=True).stdout
    netin = out.count(". 8080")
    chains = out.count("chain ctr-") + out.count("chain log-")
    netout = (out.count("dport 443 accept") + len(re.findall(r" \. (?:tcp|6) \. 443\b", out)))
    return netin, chains, netout


def bench_cloche(args, tmp):
    parent = f"cloche-bench-net-{os.getpid()}"
    d = Daemon(args.build, args.rootfs, tmp, parent,
               ["--network-pool", args.network_pool, "--max-containers", str(args.max_containers)])
    res = {"levels": {}}
    try:
        c = d.client
        for i in range(5):  # warm-up
            c.create(dict(SPEC, handle=f"w{i}"))
            c.destroy(f"w{i}")
        res["a"] = cycles(c, args.n, "a")
        live = 0
        for level in args.levels:
            if level > live:
                secs = fill(c, live, level, args.threads)
                res.setdefault("fill", []).append((live, level, secs, settle()))
                live = level
            counts = firewall_counts()
            space = d.address_space()
            perf = perf_start(f"b{level}")
            cr, de = cycles(c, args.cycles, f"b{level}", args.cycle_gap)
            perf_stop(perf)
            ni, no = probe_net_calls(c, args.cycles, level)
            res["levels"][level] = {"create": cr, "destroy": de,
                                    "cycle": [x + y for x, y in zip(cr, de)],
                                    "netin": ni, "netout": no, "counts": counts,
                                    "space": space}
            print(f"  [level {level}: {counts[0]} NetIn mappings, {counts[1]} container "
                  f"chains, {counts[2]} NetOut rules; create %.2f/%.2f, destroy %.2f/%.2f, "
                  f"NetIn %.2f/%.2f, NetOut %.2f/%.2f ms (median/p90)]"
                  % (*stats(cr), *stats(de), *stats(ni), *stats(no)), file=sys.stderr)
        if args.restarts:
            # The daemon restarted on the same depot with the top level alive, as
            # restart.py does, without filling again.
            from restart import one_restart
            handles = sorted(c.list())
            extra = ["--network-pool", args.network_pool, "--max-containers",
                     str(args.max_containers)]
            res["restarts"] = []
            for i in range(args.restarts):
                p, a, r = one_restart(d, handles, extra)
                c = d.client
                print(f"  [restart {i}: ping {p * 1e3:.0f} ms, all {a * 1e3:.0f} ms, "
                      f"run {r * 1e3:.0f} ms]", file=sys.stderr)
                res["restarts"].append((p, a, r))
        res["teardown"] = d.destroy_all(args.threads)
        res["left"] = len(c.list())
    finally:
        d.stop()
    return res


# The daemon's own timing of each create's and destroy's steps (debug log lines
# of garden/lifecycle.c, network.c and registry.c), by the handle's cycle tag.
PHASES = [
    (r"'{}-\d+': /etc files ([\d.]+) ms, cgroups ([\d.]+) ms, namespaces and mounts ([\d.]+) ms "
     r"\(network ([\d.]+)", ["/etc", "cgroups+disk", "ns+mounts", "(network)"]),
    (r"'{}-\d+': links ([\d.]+) ms, firewall ([\d.]+) ms", ["(links)", "(firewall)"]),
    (r"'{}-\d+': state written in ([\d.]+)", ["state"]),
    (r"'{}-\d+': created in ([\d.]+)", ["created"]),
    (r"'{}-\d+': shims ([\d.]+) ms, cgroups ([\d.]+) ms", ["d:shims", "d:cgroups"]),
    (r"'{}-\d+': firewall state removed in ([\d.]+)", ["d:firewall"]),
    (r"'{}-\d+': torn down in ([\d.]+) ms, removed from the depot in ([\d.]+)",
     ["d:torn down", "d:depot"]),
]


def log_phases(log, tag):
    """{step: median ms} of the cycles tagged tag in the daemon's debug log."""
    found = {}
    pats = [(re.compile(p.format(re.escape(tag))), names) for p, names in PHASES]
    try:
        with open(log, errors="replace") as f:
            for line in f:
                for pat, names in pats:
                    m = pat.search(line)
                    if m:
                        for name, v in zip(names, m.groups()):
                            found.setdefault(name, []).append(float(v))
    except OSError:
        return {}
    return {k: statistics.median(v) for k, v in found.items()}


# ---- peer: guardian-like iptables-nft calls

def ipt(*argv):
    subprocess.run(["iptables-nft", "-w"] + list(argv), check=True, stdout=subprocess.DEVNULL)


def peer_subnet(i):
    return f"10.{128 + (i >> 14)}.{(i >> 6) & 255}.{(i & 63) * 4}/30"


def peer_ip(i):
    a, b, c, d = peer_subnet(i).split("/")[0].split(".")
    return f"{a}.{b}.{c}.{int(d) + 2}"


def peer_create(i):
    """The iptables calls kawasaki makes to set up one container (approximately)."""
    h, sub, ip = f"p{i}", peer_subnet(i), peer_ip(i)
    ipt("-t", "nat", "-N", f"w--instance-{h}")
    ipt("-t", "nat", "-A", "w--prerouting", "-j", f"w--instance-{h}",
        "-m", "comment", "--comment", h)
    ipt("-t", "nat", "-A", "w--postrouting", "-s", sub, "!", "-d", sub, "-j", "MASQUERADE",
        "-m", "comment", "--comment", h)
    ipt("-t", "filter", "-N", f"w--instance-{h}")
    ipt("-t", "filter", "-N", f"w--instance-{h}-log")
    ipt("-t", "filter", "-A", f"w--instance-{h}-log", "-m", "conntrack", "--ctstate",
        "NEW,UNTRACKED,INVALID", "-p", "tcp", "-j", "LOG", "--log-prefix", h)
    ipt("-t", "filter", "-A", f"w--instance-{h}-log", "-j", "RETURN")
    ipt("-t", "filter", "-A", f"w--instance-{h}", "-s", ip, "-d", sub, "-j", "ACCEPT")
    ipt("-t", "filter", "-A", f"w--instance-{h}", "-g", "w--default")
    ipt("-t", "filter", "-I", "w--forward", "2", "-i", f"wbrdg-{i:08x}", "-s", ip,
        "-g", f"w--instance-{h}", "-m", "comment", "--comment", h)


def peer_netin(i, port):
    h, ip = f"p{i}", peer_ip(i)
    ipt("-t", "nat", "-A", f"w--instance-{h}", "-d", "192.0.2.1", "-p", "tcp", "-m", "tcp",
        "--dport", str(port), "-j", "DNAT", "--to-destination", f"{ip}:8080",
        "-m", "comment", "--comment", h)


def peer_netout(i, k):
    ipt("-t", "filter", "-I", f"w--instance-p{i}", "1", "-p", "tcp", "-d",
        f"198.19.{(k >> 8) & 255}.{k & 255}", "-m", "tcp", "--dport", "443", "-j", "RETURN")


def peer_destroy(i):
    """Find the jumps again by comment (iptables -S), delete them, flush and delete chains."""
    h = f"p{i}"
    for table, chain in (("filter", "w--forward"), ("nat", "w--prerouting"),
                         ("nat", "w--postrouting")):
        out = subprocess.run(["iptables-nft", "-w", "-t", table, "-S", chain], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"--comment {h} " in line + " ":
                ipt("-t", table, *line.replace("-A ", "-D ", 1).split())
    for table, chain in (("nat", f"w--instance-{h}"), ("filter", f"w--instance-{h}"),
                         ("filter", f"w--instance-{h}-log")):
        ipt("-t", table, "-F", chain)
        ipt("-t", table, "-X", chain)


def peer_fill(n):
    """n instance chains with one NetIn and one NetOut each, in one iptables-restore."""
    nat, flt = ["*nat"], ["*filter"]
    for i in range(n):
        h, sub, ip = f"p{i}", peer_subnet(i), peer_ip(i)
        nat.append(f":w--instance-{h} - [0:0]")
        flt += [f":w--instance-{h} - [0:0]", f":w--instance-{h}-log - [0:0]"]
    for i in range(n):
        h, sub, ip = f"p{i}", peer_subnet(i), peer_ip(i)
        nat += [f"-A w--prerouting -j w--instance-{h} -m comment --comment {h}",
                f"-A w--postrouting -s {sub} ! -d {sub} -j MASQUERADE -m comment --comment {h}",
                f"-A w--instance-{h} -d 192.0.2.1 -p tcp -m tcp --dport {20000 + i} -j DNAT "
                f"--to-destination {ip}:8080 -m comment --comment {h}"]
        flt += [f"-A w--instance-{h}-log -m conntrack --ctstate NEW,UNTRACKED,INVALID -p tcp "
                f"-j LOG --log-prefix {h}",
                f"-A w--instance-{h}-log -j RETURN",
                f"-A w--instance-{h} -p tcp -d 198.18.{(i >> 8) & 255}.{i & 255} -m tcp "
                f"--dport 443 -j RETURN",
                f"-A w--instance-{h} -s {ip} -d {sub} -j ACCEPT",
                f"-A w--instance-{h} -g w--default",
                f"-A w--forward -i wbrdg-{i:08x} -s {ip} -g w--instance-{h} "
                f"-m comment --comment {h}"]
    data = "\n".join(nat + ["COMMIT"] + flt + ["COMMIT", ""])
    subprocess.run(["iptables-nft-restore", "--noflush"], input=data, text=True, check=True)


def bench_peer(args):
    if not shutil.which("iptables-nft"):
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "iptables"],
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0 or not shutil.which("iptables-nft"):
            return None
    ipt("-t", "filter", "-N", "w--forward")
    ipt("-t", "filter", "-N", "w--default")
    ipt("-t", "filter", "-A", "w--forward", "-m", "conntrack", "--ctstate",
        "RELATED,ESTABLISHED", "-j", "ACCEPT")
    ipt("-t", "filter", "-A", "FORWARD", "-j", "w--forward")
    ipt("-t", "nat", "-N", "w--prerouting")
    ipt("-t", "nat", "-N", "w--postrouting")
    ipt("-t", "nat", "-A", "PREROUTING", "-j", "w--prerouting")
    ipt("-t", "nat", "-A", "POSTROUTING", "-j", "w--postrouting")
    top = max(args.levels)
    res = {}
    base = 1 << 16
    for level in (0, top):
        if level:
            t0 = time.perf_counter()
            peer_fill(level)
            res["fill"] = time.perf_counter() - t0
        create, destroy, netin, netout = [], [], [], []
        deadline = time.monotonic() + args.peer_budget
        for k in range(args.cycles):
            i = base + level + k
            t0 = time.perf_counter()
            peer_create(i)
            t1 = time.perf_counter()
            peer_netin(i, 30000 + k)
            t2 = time.perf_counter()
            peer_netout(i, k)
            t3 = time.perf_counter()
            peer_destroy(i)
            t4 = time.perf_counter()
            create.append(t1 - t0)
            netin.append(t2 - t1)
            netout.append(t3 - t2)
            destroy.append(t4 - t3)
            if time.monotonic() > deadline:
                break
        res[level] = {"create": create, "destroy": destroy,
                      "cycle": [x + y for x, y in zip(create, destroy)],
                      "netin": netin, "netout": netout}
    for table in ("filter", "nat"):  # our own netns; leave it empty anyway
        subprocess.run(["iptables-nft", "-w", "-t", table, "-F"], stdout=subprocess.DEVNULL)
        subprocess.run(["iptables-nft", "-w", "-t", table, "-X"], stdout=subprocess.DEVNULL)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rootfs")
    ap.add_argument("-n", type=int, default=100, help="create/destroy runs for (a)")
    ap.add_argument("--cycles", type=int, default=30, help="cycles and calls at each level")
    ap.add_argument("--levels", default="0,250,1000", help="live containers, comma-separated")
    ap.add_argument("--threads", type=int, default=4, help="client threads filling levels")
    ap.add_argument("--network-pool", default="10.200.0.0/19")
    ap.add_argument("--max-containers", type=int, default=2048)
    ap.add_argument("--no-peer", action="store_true", help="skip the iptables-nft peer")
    ap.add_argument("--cycle-gap", type=float, default=0.0,
                    help="seconds idle before each cycle of (b), so that the kernel's "
                         "deferred work of the last destroy is done before the next create")
    ap.add_argument("--restarts", type=int, default=0,
                    help="then restart the daemon R times with the top level alive (as "
                         "restart.py, without a fill of its own)")
    ap.add_argument("--peer-budget", type=float, default=40.0,
                    help="seconds at most per peer level (fewer cycles when slower)")
    args = ap.parse_args()
    args.levels = sorted({int(x) for x in args.levels.split(",")} | {0})
    enter_sandbox()
    args.build = os.path.abspath(args.build)
    args.rootfs = os.path.abspath(args.rootfs or default_rootfs(args.build))
    tmp = tempfile.mkdtemp(prefix="cloche-bench-")
    os.chmod(tmp, 0o711)
    started = time.monotonic()
    try:
        res = bench_cloche(args, tmp)
        peer = None if args.no_peer else bench_peer(args)
    finally:
        remove_tree(tmp)
    top = max(args.levels)

    def line(label, xs, extra=""):
        m, p = stats(xs)
        print(f"  {label:40s} median {m:7.2f} ms  p90 {p:7.2f} ms{extra}")

    print(f"network, unprivileged networked containers (memory+pids limits), 2 cores, "
          f"pool {args.network_pool}")
    print(f"(a) {args.n} creates and destroys, no other container")
    line("create", res["a"][0])
    line("destroy", res["a"][1])
    line("create+destroy", [x + y for x, y in zip(*res["a"])])
    for lo, hi, secs, synced in res.get("fill", []):
        print(f"    filled {lo} -> {hi} live (create+NetIn+NetOut, {args.threads} threads): "
              f"{secs:.1f} s, {(hi - lo) / secs:.0f} containers/s; then sync {synced:.1f} s "
              f"and {SETTLE_S:g} s idle")
    print(f"(b) {args.cycles} create/destroy cycles at each level; every live container has "
          f"1 NetIn + 1 NetOut" + (f"; {args.cycle_gap:g} s idle before each cycle"
                                   if args.cycle_gap else ""))
    lv = res["levels"]
    for level in args.levels:
        n_in, n_ch, n_out = lv[level]["counts"]
        print(f"  {level} live  (firewall: {n_in} NetIn, {n_ch} chains, {n_out} NetOut rules)")
        line("  create", lv[level]["create"])
        line("  destroy", lv[level]["destroy"])
        line("  create+destroy", lv[level]["cycle"])
    base = stats(lv[0]["cycle"])[0]
    for level in args.levels[1:]:
        r = stats(lv[level]["cycle"])[0] / base
        tgt = "  (target <= 1.3)" if level == top else ""
        print(f"  ratio create+destroy {level} / 0 live: {r:.2f}{tgt}")
    for level in args.levels[1:]:
        print(f"  ratio create {level} / 0: {stats(lv[level]['create'])[0] / stats(lv[0]['create'])[0]:.2f}"
              f"   destroy {level} / 0: "
              f"{stats(lv[level]['destroy'])[0] / stats(lv[0]['destroy'])[0]:.2f}")
    if os.environ.get("CLOCHE_BENCH_LOG"):
        steps = {level: log_phases(os.environ["CLOCHE_BENCH_LOG"], f"b{level}")
                 for level in args.levels}
        names = [n for _, ns in PHASES for n in ns if any(n in steps[lv] for lv in args.levels)]
        print("  the daemon's steps (debug log), median ms; in parentheses: part of ns+mounts, in "
              "parallel with the init's mounts")
        print("    " + "level".rjust(12) + "".join(f"{lv:>9}" for lv in args.levels))
        for n in names:
            print("    " + n.rjust(12) + "".join(
                f"{steps[lv][n]:9.2f}" if n in steps[lv] else " " * 9 for lv in args.levels))
    print("  the daemon's address space at each level, before the cycles (KiB, or a count)")
    for level in args.levels:
        print(f"    {level:>6} live: " + ", ".join(f"{k} {v}" for k, v in
                                                   lv[level].get("space", {}).items()))
    print(f"(c) NetIn and NetOut, {args.cycles} calls each on a probe container at each level")
    for level in args.levels:
        line(f"NetIn  at {level} live", lv[level]["netin"])
        line(f"NetOut at {level} live", lv[level]["netout"])
    for k in ("netin", "netout"):
        print(f"  ratio {'NetIn ' if k == 'netin' else 'NetOut'} {top} / 0 live: "
              f"{stats(lv[top][k])[0] / stats(lv[0][k])[0]:.2f}")
    if res.get("restarts"):
        top_live = max(args.levels)
        print(f"(d) daemon restart (SIGKILL, exec on the same depot), {top_live} live "
              f"containers, {len(res['restarts'])} restarts")
        for k, label in enumerate(("exec to first /ping", "exec to serving every one",
                                   "exec to a Run's exit")):
            line(label, [x[k] for x in res["restarts"]],
                 "  (target <= 2000)" if k == 1 else "")
    n, secs = res["teardown"]
    print(f"  teardown: destroyed {n} containers in {secs:.1f} s ({args.threads} threads); "
          f"{res['left']} left")
    print("peer: guardian's iptables layout (kawasaki) cannot be run here (no guardian).")
    if args.no_peer:
        print("  iptables-nft approximation skipped (--no-peer)")
    elif peer is None:
        print("  iptables-nft approximation skipped (iptables not installable)")
    else:
        print(f"  approximation: kawasaki-like iptables-nft CLI calls per container "
              f"(10 to create, 1 NetIn, 1 NetOut, ~12 to destroy); {top} instances pre-filled "
              f"in {peer['fill']:.1f} s by iptables-restore")
        for level in (0, top):
            p = peer[level]
            print(f"  {level} live  ({len(p['cycle'])} cycles)")
            line("  iptables create", p["create"])
            line("  iptables destroy", p["destroy"])
            line("  iptables create+destroy", p["cycle"])
            line("  iptables NetIn", p["netin"])
            line("  iptables NetOut", p["netout"])
        pr = stats(peer[top]["cycle"])[0] / stats(peer[0]["cycle"])[0]
        print(f"  ratio iptables create+destroy {top} / 0 live: {pr:.2f}")
        print(f"  ratio cloche / iptables create+destroy at {top} live: "
              f"{stats(lv[top]['cycle'])[0] / stats(peer[top]['cycle'])[0]:.2f}   "
              f"NetIn: {stats(lv[top]['netin'])[0] / stats(peer[top]['netin'])[0]:.2f}   "
              f"NetOut: {stats(lv[top]['netout'])[0] / stats(peer[top]['netout'])[0]:.2f}")
    print(f"  (total run time {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
