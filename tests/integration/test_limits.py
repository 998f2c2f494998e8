"""Limits enforced at create and changed live, metrics, OOM events (issue 7).

Processes run through the Garden Run route; what they do is cloche-payload's
(tests/payload), so the figures do not depend on the image.
"""
import os
import socket
import threading
import time

import pytest

from conftest import DEFAULT_ROOTFS, wait_until
from garden_client import GardenError

PAYLOAD = "/usr/bin/cloche-payload"
MIB = 1 << 20


@pytest.fixture(scope="module")
def payload():
    path = DEFAULT_ROOTFS / PAYLOAD.lstrip("/")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing (scripts/test.sh installs it)")
    return PAYLOAD


def run(client, handle: str, args: list[str], timeout: float = 60) -> tuple[int, str]:
    p = client.run(handle, {"path": PAYLOAD, "args": args})
    status = p.wait(timeout)
    out = (p.stdout or b"").decode(errors="replace") + (p.stderr or b"").decode(errors="replace")
    p.close()
    return status, out


def sh(client, handle: str, script: str, timeout: float = 60) -> tuple[int, str]:
    p = client.run(handle, {"path": "/bin/sh", "args": ["-c", script]})
    status = p.wait(timeout)
    out = (p.stdout or b"").decode(errors="replace") + (p.stderr or b"").decode(errors="replace")
    p.close()
    return status, out


# --------------------------------------------------------------------------
# Memory and OOM


def test_memory_limit_kills_and_reports_oom_then_can_be_raised(containers, payload):
    client = containers.daemon.client()
    h = containers.create(limits={"memory_limits": {"limit_in_bytes": 48 * MIB}})
    status, out = run(client, h, ["memhog", "96M"])
    assert status == 137, out
    assert wait_until(lambda: "oom" in (client.info(h)["Events"] or []), 5), client.info(h)
    assert client.set_limits(h, "memory", {"limit_in_bytes": 256 * MIB}) == \
        {"limit_in_bytes": 256 * MIB}
    assert client.current_memory_limits(h) == {"limit_in_bytes": 256 * MIB}
    status, out = run(client, h, ["memhog", "96M"])
    assert status == 0, out


def test_memory_limit_can_be_lowered_live(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    assert run(client, h, ["memhog", "64M"])[0] == 0
    client.set_limits(h, "memory", {"limit_in_bytes": 32 * MIB})
    assert client.current_memory_limits(h) == {"limit_in_bytes": 32 * MIB}
    assert run(client, h, ["memhog", "64M"])[0] == 137


def test_oom_event_survives_a_daemon_restart_and_is_seen_after_one(daemon, payload):
    d = daemon()
    client = d.client()
    h = client.create({"limits": {"memory_limits": {"limit_in_bytes": 32 * MIB}}})
    try:
        d.kill()
        d.restart()
        client = d.client()
        assert client.info(h)["Events"] in (None, [])
        assert run(client, h, ["memhog", "64M"])[0] == 137  # the watch was re-armed
        assert wait_until(lambda: "oom" in (client.info(h)["Events"] or []), 5)
        d.stop()
        d.restart()
        assert "oom" in d.client().info(h)["Events"]
    finally:
        d.client().destroy(h)


@pytest.mark.parametrize("kind, body", [
    ("memory", {"limit_in_bytes": 0}),
    ("memory", {"limit_in_bytes": 100}),
    ("memory", {"limit_in_bytes": 1 << 62}),
    ("memory", {"limit_in_bytes": -5}),
    ("cpu", {"weight": 1 << 40}),
    ("cpu", {"cloche_millicpus": 5}),
    ("pids", {"max": 1 << 40}),
    ("bandwidth", {"rate": 1000}),
    ("disk", {"inode_hard": 100}),
])
def test_invalid_live_limits_are_refused_and_change_nothing(containers, kind, body):
    client = containers.daemon.client()
    h = containers.create(limits={"memory_limits": {"limit_in_bytes": 64 * MIB},
                                  "pid_limits": {"max": 100}})
    before = {k: client.current_limits(h, k) for k in ("memory", "cpu", "pids")}
    with pytest.raises(GardenError) as e:
        client.set_limits(h, kind, body)
    assert e.value.status == 400, e.value
    assert {k: client.current_limits(h, k) for k in ("memory", "cpu", "pids")} == before


def test_limits_of_an_unknown_container_are_404(containers):
    client = containers.daemon.client()
    with pytest.raises(GardenError) as e:
        client.set_limits("no-such-container", "memory", {"limit_in_bytes": 64 * MIB})
    assert e.value.status == 404


# --------------------------------------------------------------------------
# CPU


def cpu_share_of(client, h: str, seconds: float) -> float:
    """CPU time over wall time of `spin seconds` in the container."""
    before = client.metrics(h)["CPUStat"]["Usage"]
    t0 = time.monotonic()
    status, out = run(client, h, ["spin", str(seconds)])
    wall = time.monotonic() - t0
    assert status == 0, out
    used = (client.metrics(h)["CPUStat"]["Usage"] - before) / 1e9
    return used / wall


def test_cpu_cap_at_create_and_changed_live(containers, payload):
    client = containers.daemon.client()
    h = containers.create(limits={"cpu_limits": {"weight": 512, "cloche_millicpus": 300}})
    assert client.current_cpu_limits(h) == {"weight": 512, "cloche_millicpus": 300}
    share = cpu_share_of(client, h, 2)
    assert 0.30 * 0.85 <= share <= 0.30 * 1.15, share
    assert client.set_limits(h, "cpu", {"weight": 512, "cloche_millicpus": 600}) == \
        {"weight": 512, "cloche_millicpus": 600}
    share = cpu_share_of(client, h, 2)
    assert 0.60 * 0.85 <= share <= 0.60 * 1.15, share


# --------------------------------------------------------------------------
# Pids


def forked(out: str) -> int:
    for line in out.splitlines():
        if line.startswith("forked "):
            return int(line.split()[1])
    raise AssertionError(out)


def test_pids_limit_at_create_and_raised_live(containers, payload):
    client = containers.daemon.client()
    h = containers.create(limits={"pid_limits": {"max": 12}})
    status, out = run(client, h, ["forkbomb", "40"])
    assert status == 0 and forked(out) < 12, out
    assert client.set_limits(h, "pids", {"max": 60}) == {"max": 60}
    assert client.current_limits(h, "pids") == {"max": 60}
    status, out = run(client, h, ["forkbomb", "40"])
    assert status == 0 and forked(out) == 40, out


# --------------------------------------------------------------------------
# Disk


def test_disk_byte_limit_enospc_and_growth(containers, payload):
    client = containers.daemon.client()
    h = containers.create(limits={"disk_limits": {"byte_hard": 32 * MIB, "scope": 1}})
    assert client.current_disk_limits(h) == {"byte_hard": 32 * MIB, "scope": 1}
    rc, out = sh(client, h, "dd if=/dev/zero of=/a bs=1M count=28 2>&1")
    assert rc == 0, out
    rc, out = sh(client, h, "dd if=/dev/zero of=/b bs=1M count=8 2>&1")
    assert rc != 0 and "space" in out.lower(), out
    client.set_limits(h, "disk", {"byte_hard": 64 * MIB, "scope": 1})
    assert client.current_disk_limits(h) == {"byte_hard": 64 * MIB, "scope": 1}
    rc, out = sh(client, h, "rm -f /b; dd if=/dev/zero of=/b bs=1M count=24 2>&1")
    assert rc == 0, out
    # and shrinking is refused
    with pytest.raises(GardenError) as e:
        client.set_limits(h, "disk", {"byte_hard": 40 * MIB, "scope": 1})
    assert e.value.status == 400


def test_disk_inode_limit(containers, payload):
    client = containers.daemon.client()
    h = containers.create(limits={"disk_limits": {"byte_hard": 64 * MIB, "inode_hard": 300,
                                                  "scope": 1}})
    rc, out = sh(client, h, "mkdir /many && cd /many && i=0; "
                            "while [ $i -lt 250 ]; do : > f$i || exit 1; i=$((i+1)); done")
    assert rc == 0, out
    rc, out = sh(client, h, "cd /many && i=0; "
                            "while [ $i -lt 400 ]; do : > g$i || exit 1; i=$((i+1)); done")
    assert rc != 0, out


def test_disk_limit_total_scope_counts_the_image(containers, payload):
    client = containers.daemon.client()
    with pytest.raises(GardenError) as e:  # smaller than the busybox image itself
        containers.create(limits={"disk_limits": {"byte_hard": 2 * MIB}})
    assert e.value.status == 400
    h = containers.create(limits={"disk_limits": {"byte_hard": 64 * MIB}})
    rc, out = sh(client, h, "dd if=/dev/zero of=/a bs=1M count=70 2>&1")
    assert rc != 0, out


def test_disk_limit_cannot_be_added_to_a_container_without(containers):
    client = containers.daemon.client()
    h = containers.create()
    with pytest.raises(GardenError) as e:
        client.set_limits(h, "disk", {"byte_hard": 64 * MIB})
    assert e.value.status == 409


# --------------------------------------------------------------------------
# Bandwidth


def measure_upload(client, h: str, host_ip: str, nbytes: int) -> float:
    """Bytes per second the container sends to a server on the host side."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host_ip, 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    result = {}

    def serve():
        c, _ = srv.accept()
        total, t0 = 0, None
        while True:
            data = c.recv(1 << 16)
            if not data:
                break
            if t0 is None:
                t0 = time.monotonic()
            total += len(data)
        result["rate"] = total / (time.monotonic() - t0)
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    status, out = run(client, h, ["blast", host_ip, str(port), str(nbytes)], timeout=60)
    t.join(30)
    srv.close()
    assert status == 0, out
    return result["rate"]


def measure_download(client, h: str, host_port: int, nbytes: int) -> float:
    """Bytes per second sent from the host's loopback into the container, through
    a NetIn mapping of host_port to the container's port 9500."""
    p = client.run(h, {"path": PAYLOAD, "args": ["sink", "9500"]})
    deadline = time.monotonic() + 5
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", host_port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    chunk = b"x" * (1 << 16)
    t0 = time.monotonic()
    sent = 0
    while sent < nbytes:
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    got = s.recv(64)  # the sink answers once everything arrived
    rate = sent / (time.monotonic() - t0)
    s.close()
    assert int(got.strip()) == sent
    assert p.wait(10) == 0
    p.close()
    return rate


def test_bandwidth_limit_both_directions_and_live_change(daemon, payload):
    d = daemon("--allow-host-access")
    client = d.client()
    rate = 2 * MIB
    h = client.create({"limits": {"bandwidth_limits": {"rate": rate, "burst": 64 * 1024}}})
    try:
        info = client.info(h)
        assert client.current_bandwidth_limits(h) == {"rate": rate, "burst": 64 * 1024}
        up = measure_upload(client, h, info["HostIP"], 6 * MIB)
        assert rate * 0.8 <= up <= rate * 1.2, up
        hp, _ = client.net_in(h, 0, 9500)
        down = measure_download(client, h, hp, 6 * MIB)
        assert rate * 0.8 <= down <= rate * 1.25, down
        client.set_limits(h, "bandwidth", {"rate": 4 * MIB, "burst": 64 * 1024})
        up = measure_upload(client, h, info["HostIP"], 12 * MIB)
        assert 4 * MIB * 0.8 <= up <= 4 * MIB * 1.2, up
    finally:
        client.destroy(h)


# --------------------------------------------------------------------------
# Metrics


MEMORY_KEYS = ["active_anon", "active_file", "cache", "hierarchical_memory_limit",
               "inactive_anon", "inactive_file", "mapped_file", "pgfault", "pgmajfault",
               "pgpgin", "pgpgout", "rss", "total_active_anon", "total_active_file",
               "total_cache", "total_inactive_anon", "total_inactive_file",
               "total_mapped_file", "total_pgfault", "total_pgmajfault", "total_pgpgin",
               "total_pgpgout", "total_rss", "total_unevictable", "unevictable", "swap",
               "hierarchical_memsw_limit", "total_swap", "TotalUsageTowardLimit", "anon",
               "file", "swapcached"]


def test_metrics_reflect_what_the_container_did(containers, payload):
    client = containers.daemon.client()
    h = containers.create(limits={"memory_limits": {"limit_in_bytes": 256 * MIB},
                                  "pid_limits": {"max": 50},
                                  "disk_limits": {"byte_hard": 64 * MIB, "scope": 1}})
    m0 = client.metrics(h)
    assert list(m0["MemoryStat"]) == MEMORY_KEYS
    assert m0["MemoryStat"]["hierarchical_memory_limit"] == 256 * MIB
    assert m0["PidStat"]["Max"] == 50 and m0["PidStat"]["Current"] >= 1
    assert m0["Age"] > 0 and m0["CPUEntitlement"] > 0
    run(client, h, ["spin", "0.5"])
    sh(client, h, "dd if=/dev/zero of=/data bs=1M count=8 2>&1")
    info = client.info(h)
    try:  # some traffic into the container (refused, but counted)
        s = socket.create_connection((info["ContainerIP"], 1), timeout=1)
        s.close()
    except OSError:
        pass
    m1 = client.metrics(h)
    assert m1["CPUStat"]["Usage"] - m0["CPUStat"]["Usage"] >= 0.1e9
    assert m1["CPUStat"]["User"] + m1["CPUStat"]["System"] > 0
    assert m1["DiskStat"]["ExclusiveBytesUsed"] >= 7 * MIB
    assert m1["DiskStat"]["TotalBytesUsed"] > m1["DiskStat"]["ExclusiveBytesUsed"]
    assert m1["DiskStat"]["ExclusiveInodesUsed"] >= 1
    assert m1["NetworkStat"] is not None
    assert m1["NetworkStat"]["RxBytes"] > m0["NetworkStat"]["RxBytes"]
    assert m1["Age"] > m0["Age"]
    assert m1["MemoryStat"]["TotalUsageTowardLimit"] > 0


def test_bulk_metrics(containers, payload):
    client = containers.daemon.client()
    a, b = containers.create(), containers.create()
    got = client.bulk_metrics([a, b, "nope"])
    assert set(got) == {a, b, "nope"}
    assert got[a]["Err"] is None and got[a]["Metrics"]["PidStat"]["Current"] >= 1
    assert got[b]["Err"] is None
    assert got["nope"]["Err"] is not None


def test_bulk_metrics_disk_usage_is_refreshed_in_the_background(daemon, payload):
    """Issue 17: bulk calls take a plain writable layer's usage from a walk the
    sampler refreshes (once it is 3 intervals old: 6 s here), not from a walk of
    their own; a single Metrics walks at once."""
    d = daemon("--metrics-interval", "2")
    client = d.client()
    h = client.create({})
    try:
        before = client.metrics(h)["DiskStat"]["ExclusiveBytesUsed"]  # a fresh walk
        sh(client, h, "dd if=/dev/zero of=/data bs=1M count=6 2>&1")
        assert client.bulk_metrics([h])[h]["Metrics"]["DiskStat"]["ExclusiveBytesUsed"] \
            == before, "a bulk call walked the tree itself"
        assert wait_until(lambda: client.bulk_metrics([h])[h]["Metrics"]["DiskStat"]
                          ["ExclusiveBytesUsed"] >= before + 5 * MIB, 20, 0.5), \
            "the background refresh never showed the new file"
        assert client.metrics(h)["DiskStat"]["ExclusiveBytesUsed"] >= before + 5 * MIB
    finally:
        client.destroy(h)


# --------------------------------------------------------------------------
# Capacity and history


def test_capacity_reports_what_limits_commit(daemon):
    d = daemon()
    client = d.client()
    base = client.capacity()
    assert base["cloche_containers"] == 0 and base["cloche_committed_memory_in_bytes"] == 0
    h = client.create({"limits": {"memory_limits": {"limit_in_bytes": 64 * MIB},
                                  "disk_limits": {"byte_hard": 32 * MIB, "scope": 1}}})
    try:
        cap = client.capacity()
        assert cap["cloche_containers"] == 1
        assert cap["cloche_committed_memory_in_bytes"] == 64 * MIB
        assert cap["cloche_committed_disk_in_bytes"] == 32 * MIB
        client.set_limits(h, "memory", {"limit_in_bytes": 128 * MIB})
        assert client.capacity()["cloche_committed_memory_in_bytes"] == 128 * MIB
    finally:
        client.destroy(h)


def test_metrics_history_grows_at_the_interval_and_survives_a_restart(daemon, payload):
    d = daemon("--metrics-interval", "1")
    client = d.client()
    h = client.create({"limits": {"memory_limits": {"limit_in_bytes": 128 * MIB}}})
    try:
        t0 = int(time.time())
        run(client, h, ["spin", "2.5"])
        hist = client.metrics_history(h)
        assert hist["interval"] == 1
        samples = hist["samples"]
        assert len(samples) >= 2, hist
        times = [s["time"] for s in samples]
        assert times == sorted(set(times))
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(1 <= g <= 2 for g in gaps), gaps  # one sample per interval
        assert all(s["memory_limit"] == 128 * MIB for s in samples)
        assert max(s["cpu_percent"] for s in samples) > 20, samples
        assert all(s["memory_used"] > 0 for s in samples)
        d.stop()
        d.restart()
        client = d.client()
        after = client.metrics_history(h)["samples"]
        assert [s["time"] for s in after[:len(samples)]] == times
        assert wait_until(lambda: len(client.metrics_history(h)["samples"]) > len(after), 5)
        recent = client.metrics_history(h, since=times[-1])["samples"]
        assert recent and recent[0]["time"] >= times[-1]
        assert client.metrics_history(h, since=t0 + 10**6)["samples"] == []
        with pytest.raises(GardenError) as e:
            client.metrics_history(h, since="yesterday")
        assert e.value.status == 400
    finally:
        d.client().destroy(h)
