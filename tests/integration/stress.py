"""Concurrent clients against one daemon, and the traces a daemon leaves behind.

Used by test_concurrency.py (a bounded run in CI) and tests/bench/stress.py (a
longer one). Everything here looks at the sandbox's own namespaces: the links,
the nftables table and the loop devices of the daemon under test only.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from conftest import cgroup_children, wait_until
from garden_client import GardenError, ProcessError, ProtocolError

# What a 5xx may say under concurrency and still be right: Garden's own answer to
# a second Destroy while the first runs (garden-protocol.md, Destroy).
DOCUMENTED_5XX = ("container already being destroyed",)


# --------------------------------------------------------------------------
# Traces


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def daemon_links(d) -> list[str]:
    """Links whose names carry this daemon's prefix (bridges, veths, IFBs)."""
    prefix = f"cl{d.net_tag}"
    out = _sh("ip", "-o", "link", "show")
    names = [m.group(1).split("@")[0] for m in re.finditer(r"^\d+: ([^:]+):", out, re.M)]
    return [n for n in names if n.startswith(prefix)]


def nft_container_state(d) -> list[str]:
    """Per-container state in the daemon's table: log chains log-*, and the
    elements of its netin, owner, ifaddr, netout_log maps and sets and of the
    NetOut sets (netout_l4_N, netout_icmp_N, netout_any_N)."""
    out = _sh("nft", "-j", "list", "table", "inet", f"cloche{d.net_tag}")
    if not out.strip():
        return []
    found = []
    for item in json.loads(out).get("nftables", []):
        if "chain" in item and item["chain"]["name"].startswith(("ctr-", "log-")):
            found.append(f"chain {item['chain']['name']}")
        for kind in ("map", "set"):
            if kind in item and (item[kind]["name"] in ("netin", "owner", "ifaddr", "netout_log")
                                 or (item[kind]["name"].startswith("netout_")
                                     and item[kind]["name"] != "netout_shards")):
                for e in item[kind].get("elem", []):
                    found.append(f"{item[kind]['name']} {json.dumps(e)}")
    return found


def loop_devices(d) -> list[str]:
    """Loop devices whose backing file is in the daemon's depot."""
    out = _sh("losetup", "-J", "-l")
    if not out.strip():
        return []
    depot = str(d.depot)
    return [dev["name"] for dev in json.loads(out).get("loopdevices", [])
            if (dev.get("back-file") or "").startswith(depot)]


def depot_mounts(d) -> list[str]:
    prefix = str(d.depot).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                found.append(point)
    return found


def depot_containers(d) -> list[str]:
    try:
        return sorted(os.listdir(d.depot / "containers"))
    except FileNotFoundError:
        return []


def daemon_traces(d) -> dict[str, list]:
    """Everything a daemon with no containers must not have."""
    traces = {
        "containers": d.client().list({"garden.state": "all"}),
        "depot": depot_containers(d),
        "cgroups": cgroup_children(d.cgroup_parent),
        "links": daemon_links(d),
        "nftables": nft_container_state(d),
        "loop devices": loop_devices(d),
        "mounts": depot_mounts(d),
    }
    return {k: v for k, v in traces.items() if v}


def wait_no_traces(d, timeout: float = 15.0) -> dict[str, list]:
    """Wait for background work (the depot's trash, the bridge reaper, destroy
    retries) to finish; returns what is still there after timeout."""
    left: dict[str, list] = {}

    def clean() -> bool:
        nonlocal left
        left = daemon_traces(d)
        return not left

    wait_until(clean, timeout, 0.2)
    return left


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    """What the daemon's descriptors point at, counted by kind."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = re.sub(r"[0-9]+", "N", target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


# --------------------------------------------------------------------------
# The stress run

# GET /ping every 100 ms on the Unix socket for SECONDS; prints the times as JSON.
PINGER = r"""
import json, socket, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
times, failures = [], []
end = time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        s.close()
        if not reply.startswith(b"HTTP/1.1 200"):
            failures.append(reply[:80].decode(errors="replace"))
        times.append(time.monotonic() - t)
    except OSError as e:
        failures.append(repr(e))
    time.sleep(0.1)
print(json.dumps({"max": max(times, default=0.0), "times": times, "failures": failures}))
"""


@dataclass
class StressResult:
    calls: dict = field(default_factory=dict)     # op -> count
    statuses: dict = field(default_factory=dict)  # (op, status) -> count
    unexpected: list = field(default_factory=list)  # (op, handle, status, message)
    stream_errors: int = 0
    max_ping_s: float = 0.0
    slow_pings: list = field(default_factory=list)
    ping_failures: list = field(default_factory=list)


def _spec(handle: str, rnd: random.Random) -> dict:
    spec: dict = {"handle": handle}
    if rnd.random() < 0.5:
        spec["limits"] = {"memory_limits": {"limit_in_bytes": 64 << 20},
                          "pid_limits": {"max": 256}}
    if rnd.random() < 0.2:
        spec["properties"] = {"stress": "yes"}
    return spec


def _one_op(client, op: str, handle: str, rnd: random.Random):
    if op == "create":
        client.create(_spec(handle, rnd))
    elif op == "destroy":
        client.destroy(handle)
    elif op == "stop":
        client.stop(handle, kill=rnd.random() < 0.5)
    elif op == "run":
        proc = client.run(handle, {"path": "sh", "args": ["-c", "echo out; echo err >&2"]})
        proc.wait(timeout=30)
    elif op == "attach":
        proc = client.run(handle, {"path": "sleep", "args": ["0.2"]})
        again = client.attach(handle, proc.id)
        again.wait(timeout=30)
    elif op == "netin":
        client.net_in(handle, 0, 8080)
    elif op == "limits":
        kind = rnd.choice(["memory", "cpu", "pids"])
        body = {"memory": {"limit_in_bytes": rnd.choice([64, 96, 128]) << 20},
                "cpu": {"weight": rnd.choice([256, 512, 1024])},
                "pids": {"max": rnd.choice([128, 256])}}[kind]
        client.set_limits(handle, kind, body)
    elif op == "properties":
        key = rnd.choice(["a", "b", "c"])
        if rnd.random() < 0.5:
            client.set_property(handle, key, "v" * rnd.randint(1, 20))
        else:
            client.remove_property(handle, key)
    elif op == "info":
        client.info(handle)
    elif op == "list":
        client.list()
    elif op == "metrics":
        client.metrics(handle)
    elif op == "bulk":
        client.bulk_metrics([handle, "no-such-handle"])
    else:
        raise AssertionError(op)


# Weighted: destroys cancel creates, so fewer of them leave containers time to be used.
OPS = ["create", "create", "destroy", "stop", "run", "run", "run", "attach", "attach",
       "netin", "limits", "limits", "properties", "properties", "info", "list", "metrics",
       "bulk"]


def stress(d, seconds: float, clients: int = 32, handles: int = 8, seed: int = 1,
           ping_budget_s: float = 0.5) -> StressResult:
    """clients threads doing random operations on `handles` shared handles for
    `seconds`, while one more thread pings every 100 ms."""
    result = StressResult()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    names = [f"stress-{i}" for i in range(handles)]

    def record(op, status=None, handle="", message=""):
        with lock:
            result.calls[op] = result.calls.get(op, 0) + 1
            if status is not None:
                key = f"{op} {status}"
                result.statuses[key] = result.statuses.get(key, 0) + 1
                if status >= 500 and not message.startswith(DOCUMENTED_5XX):
                    result.unexpected.append((op, handle, status, message))

    def worker(n: int):
        rnd = random.Random(seed * 1000 + n)
        client = d.client(timeout=60)
        while time.monotonic() < stop_at:
            op = rnd.choice(OPS)
            handle = rnd.choice(names)
            try:
                _one_op(client, op, handle, rnd)
                record(op, 200)
            except GardenError as e:
                record(op, e.status, handle, e.message)
            except (OSError, EOFError, ValueError, RuntimeError, TimeoutError, ProcessError,
                    ProtocolError) as e:
                # A process stream cut by a concurrent stop or destroy.
                with lock:
                    result.stream_errors += 1
                record(op, None)
                if not d.alive():
                    with lock:
                        result.unexpected.append((op, handle, 0, f"daemon died: {e!r}"))
                    return

    # The pinger is a process of its own: 32 busy threads here share one GIL,
    # which would be measured along with the daemon.
    pinger = subprocess.Popen(
        [sys.executable, "-c", PINGER, str(d.socket_path), str(seconds)],
        stdout=subprocess.PIPE, text=True)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    out, _ = pinger.communicate(timeout=60)
    report = json.loads(out or "{}")
    result.max_ping_s = report.get("max", 0.0)
    result.slow_pings = [t for t in report.get("times", []) if t > ping_budget_s]
    result.ping_failures = report.get("failures", [])
    return result


def destroy_all(d, names=None) -> None:
    client = d.client(timeout=60)
    for h in names if names is not None else client.list({"garden.state": "all"}):
        for _ in range(50):
            try:
                client.destroy(h)
                break
            except GardenError as e:
                if e.status == 404:
                    break
                time.sleep(0.2)  # being destroyed, or a failed destroy: try again
