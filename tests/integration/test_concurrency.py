"""Issue 12: the model under concurrent clients.

32 clients on overlapping handles, destroys landing at each step of a create,
stops during creates, metrics during destroys, capacity under parallel creates,
teardowns that fail and are retried, and the daemon killed at every named step
of create, destroy, NetIn, NetOut, limit changes and process start. After each,
nothing may be left: no container, cgroup, link, nftables element, loop device,
mount, uid range or depot entry.

Crash points, faults and delays are the daemon's test hooks (CLOCHE_TEST_CRASH,
CLOCHE_TEST_FAULT, CLOCHE_TEST_DELAY), compiled in by -Dtest_hooks=true, which
the test builds of scripts/test.sh use; against a build without them these tests
are skipped.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from conftest import BUILD_DIR, cgroup_controller_dir, wait_until
from garden_client import GardenError
from stress import (daemon_traces, destroy_all, fd_count, fd_kinds, nft_container_state, stress,
                    wait_no_traces)

STRESS_SECONDS = float(os.environ.get("CLOCHE_STRESS_SECONDS", "45"))
UID_POOL = 8  # ranges: after the stress every one must be free again


def _has_test_hooks() -> bool:
    try:
        out = subprocess.run([str(BUILD_DIR / "cloched"), "--version"], capture_output=True,
                             text=True, timeout=10).stdout
    except OSError:
        return False
    return "test hooks" in out


needs_hooks = pytest.mark.skipif(not _has_test_hooks(),
                                 reason="cloched built without -Dtest_hooks=true")


def hooked(daemon, env: dict, *args: str):
    """A daemon started with test hooks armed through its environment."""
    d = daemon.new(*args)
    d.env.update(env)
    return d.start()


def sanitizer_reports(d) -> list[str]:
    return [line for line in d.log_text().splitlines()
            if "AddressSanitizer" in line or "runtime error:" in line
            or "LeakSanitizer" in line]


def assert_clean(d, timeout: float = 15.0) -> None:
    left = wait_no_traces(d, timeout)
    assert not left, f"left behind: {left}\n{d.log_tail(60)}"


def whole(client, handle: str) -> None:
    """The container answers Info and runs a process to its exit status."""
    client.info(handle)
    proc = client.run(handle, {"path": "sh", "args": ["-c", "echo alive"]})
    assert proc.wait(timeout=30) == 0
    assert proc.stdout == b"alive\n"


# --------------------------------------------------------------------------
# The stress run


def test_stress_32_clients_on_8_handles(daemon):
    d = daemon("--uid-pool-size", str(UID_POOL), "--metrics-interval", "1")
    client = d.client()
    # Warm up once, so lazily opened descriptors are in the baseline.
    client.create({"handle": "warm"})
    client.net_in("warm", 0, 80)
    client.run("warm", {"path": "true"}).wait()
    client.destroy("warm")
    assert_clean(d)
    fds_before = fd_count(d.pid)

    result = stress(d, STRESS_SECONDS)
    assert d.alive(), f"the daemon died\n{d.log_tail(80)}"
    summary = (f"calls {result.calls}\nstatuses {result.statuses}\n"
               f"stream errors {result.stream_errors}, slowest ping {result.max_ping_s:.3f} s")
    print(summary)
    kinds = sorted({(op, status, msg) for op, _, status, msg in result.unexpected})
    assert not result.unexpected, f"unexpected 5xx: {kinds[:20]}\n{summary}"
    assert not result.ping_failures, f"ping failed: {result.ping_failures[:5]}"
    assert not result.slow_pings, f"pings over 500 ms: {result.slow_pings[:10]}"
    # The run really exercised the model: creates and destroys both succeeded.
    assert result.statuses.get("create 200", 0) >= 10, summary
    assert result.statuses.get("destroy 200", 0) >= 10, summary
    assert result.statuses.get("run 200", 0) >= 10, summary

    destroy_all(d)
    assert_clean(d, 30)
    # Every uid range is free again: the pool's size in containers at once.
    for i in range(UID_POOL):
        client.create({"handle": f"after-{i}"})
    destroy_all(d)
    assert_clean(d, 30)
    # A process's relay waits up to 60 s after the exit for output streams its
    # client announced but never connected (attach.c, LATE_STREAM_MS).
    t0 = time.monotonic()
    assert wait_until(lambda: fd_count(d.pid) <= fds_before, 75), \
        f"descriptors: {fds_before} before, {fd_count(d.pid)} after: {fd_kinds(d.pid)}"
    print(f"descriptors back to {fds_before} after {time.monotonic() - t0:.1f} s")
    assert not sanitizer_reports(d), "\n".join(sanitizer_reports(d)[:20])


# --------------------------------------------------------------------------
# Destroy and stop during create

CREATE_POINTS = ["create.directory", "create.record", "create.ids", "create.address",
                 "create.cgroup", "create.sandbox", "create.limits", "create.active"]


def _create_in_thread(client, spec):
    out: dict = {}

    def go():
        try:
            out["handle"] = client.create(spec)
        except GardenError as e:
            out["error"] = e

    t = threading.Thread(target=go)
    t.start()
    return t, out


@needs_hooks
@pytest.mark.parametrize("point", CREATE_POINTS)
def test_destroy_during_create(daemon, point):
    d = hooked(daemon, {"CLOCHE_TEST_DELAY": f"{point}:600"})
    client = d.client()
    t, out = _create_in_thread(client, {"handle": "racing"})
    # The create is parked at the point (600 ms); land the destroy there.
    assert wait_until(lambda: "racing" in client.list({"garden.state": "all"}), 5)
    time.sleep(0.1)
    client.destroy("racing")  # succeeds: the create is cancelled or completes first
    t.join(30)
    assert not t.is_alive()
    if "error" in out:
        assert out["error"].status == 409, out["error"]
        assert "destroyed while it was being created" in out["error"].message
    with pytest.raises(GardenError) as info:
        client.info("racing")
    assert info.value.status == 404
    assert_clean(d)
    # And the allowed case on the same daemon: a create left alone works.
    h = client.create({"handle": "alone"})
    whole(client, h)
    client.destroy(h)
    assert_clean(d)


def test_destroy_before_create_is_unknown(daemon):
    d = daemon()
    client = d.client()
    with pytest.raises(GardenError) as info:
        client.destroy("later")
    assert info.value.status == 404
    assert client.create({"handle": "later"}) == "later"
    whole(client, "later")
    client.destroy("later")
    assert_clean(d)


@needs_hooks
def test_two_destroys_during_create(daemon):
    d = hooked(daemon, {"CLOCHE_TEST_DELAY": "create.sandbox:600"})
    client = d.client()
    t, out = _create_in_thread(client, {"handle": "twice"})
    assert wait_until(lambda: "twice" in client.list({"garden.state": "all"}), 5)
    results = []

    def destroy():
        try:
            client.destroy("twice")
            results.append("ok")
        except GardenError as e:
            results.append(e)

    ds = [threading.Thread(target=destroy) for _ in range(2)]
    for x in ds:
        x.start()
    for x in ds:
        x.join(30)
    t.join(30)
    # Each destroy either did it, found it done (404: a thread that started
    # late on a busy machine), or was told it was being destroyed.
    for r in results:
        assert r == "ok" or r.status == 404 or (
            r.status == 500 and r.message == "container already being destroyed"), r
    assert "ok" in results
    assert_clean(d)


@needs_hooks
def test_stop_during_create(daemon):
    d = hooked(daemon, {"CLOCHE_TEST_DELAY": "create.limits:500"})
    client = d.client()
    t, out = _create_in_thread(client, {"handle": "stopme"})
    assert wait_until(lambda: "stopme" in client.list({"garden.state": "all"}), 5)
    client.stop("stopme")  # waits for the create, then stops
    t.join(30)
    assert out.get("handle") == "stopme", out
    assert client.info("stopme")["State"] == "stopped"
    # A stopped container still runs processes and can be destroyed.
    whole(client, "stopme")
    client.destroy("stopme")
    assert_clean(d)


def test_operations_wait_for_create(daemon):
    """Run, NetIn and limits on a container still being created wait for it."""
    d = daemon()
    client = d.client()
    errors = []

    def op(fn):
        def go():
            try:
                fn()
            except GardenError as e:
                if e.status != 404:
                    errors.append(e)
        return threading.Thread(target=go)

    for round_ in range(5):
        h = f"early-{round_}"
        t, out = _create_in_thread(client, {"handle": h})
        ops = [op(lambda: client.net_in(h, 0, 80)),
               op(lambda: client.set_limits(h, "memory", {"limit_in_bytes": 96 << 20})),
               op(lambda: client.run(h, {"path": "true"}).wait()),
               op(lambda: client.set_property(h, "k", "v"))]
        for x in ops:
            x.start()
        t.join(30)
        for x in ops:
            x.join(30)
        assert out.get("handle") == h, out
    assert not errors, errors
    destroy_all(d)
    assert_clean(d)


# --------------------------------------------------------------------------
# Readers during destroy, capacity


def test_metrics_and_sampler_during_destroy(daemon):
    d = daemon("--metrics-interval", "1")
    client = d.client()
    bad = []
    stop = threading.Event()

    def reader(h):
        c = d.client()
        while not stop.is_set():
            for call in (lambda: c.metrics(h), lambda: c.bulk_metrics([h]),
                         lambda: c.info(h), lambda: c.metrics_history(h)):
                try:
                    call()
                except GardenError as e:
                    if e.status != 404:
                        bad.append(e)

    for i in range(15):
        h = f"m{i}"
        client.create({"handle": h, "limits": {"memory_limits": {"limit_in_bytes": 64 << 20}}})
        readers = [threading.Thread(target=reader, args=(h,)) for _ in range(4)]
        for r in readers:
            r.start()
        time.sleep(0.05)
        client.destroy(h)
        time.sleep(0.05)
        stop.set()
        for r in readers:
            r.join(30)
        stop.clear()
    assert d.alive()
    assert not bad, bad[:5]
    assert_clean(d)
    assert not sanitizer_reports(d)


def test_max_containers_with_32_parallel_creates(daemon):
    d = daemon("--max-containers", "5")
    client = d.client()
    made, refused, other = [], [], []

    def create(i):
        try:
            made.append(d.client().create({"handle": f"cap-{i}"}))
        except GardenError as e:
            (refused if e.message == "max containers reached" else other).append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not other, other[:5]
    assert len(made) == 5, (made, len(refused))
    assert len(refused) == 27
    assert sorted(client.list()) == sorted(made)
    destroy_all(d)
    assert_clean(d)
    # The places are free again.
    client.create({"handle": "cap-again"})
    destroy_all(d)
    assert_clean(d)


# --------------------------------------------------------------------------
# Failures undone


@needs_hooks
def test_create_undo_meets_failing_cgroup_removal(daemon):
    d = hooked(daemon, {"CLOCHE_TEST_FAULT": "create.limits:1,cgroup.destroy:1"})
    client = d.client()
    with pytest.raises(GardenError) as info:
        client.create({"handle": "undo", "limits": {"disk_limits": {"byte_hard": 64 << 20}}})
    assert "Test fault" in info.value.message
    # The undo's cgroup removal failed once: the container waits, hidden, for the
    # retry, which removes everything.
    assert "undo" not in client.list()
    assert_clean(d, 20)
    assert "Retrying the destroy of container 'undo'" in d.log_text()
    h = client.create({"handle": "undo"})  # the handle is free again
    whole(client, h)
    client.destroy(h)
    assert_clean(d)


@needs_hooks
def test_destroy_whose_teardown_fails_is_retried(daemon):
    d = hooked(daemon, {"CLOCHE_TEST_FAULT": "cgroup.destroy:1"})
    client = d.client()
    client.create({"handle": "retry"})
    with pytest.raises(GardenError) as info:
        client.destroy("retry")
    assert info.value.status == 500
    assert "retried in the background" in info.value.message
    assert "retry" not in client.list()
    assert_clean(d, 20)
    # A second destroy of a container already gone is a plain 404.
    with pytest.raises(GardenError) as info:
        client.destroy("retry")
    assert info.value.status == 404


@needs_hooks
def test_netin_whose_record_fails_leaves_no_mapping(daemon):
    d = hooked(daemon, {"CLOCHE_TEST_FAULT": "netin.record:1"})
    client = d.client()
    client.create({"handle": "ports"})
    with pytest.raises(GardenError) as info:
        client.net_in("ports", 0, 8080)
    assert info.value.status == 500
    assert not [e for e in nft_container_state(d) if e.startswith("netin ")]
    assert client.info("ports")["MappedPorts"] in (None, [])
    host_port, _ = client.net_in("ports", 0, 8080)  # the port went back to the pool
    assert [e for e in nft_container_state(d) if e.startswith("netin ")]
    assert client.info("ports")["MappedPorts"] == [{"HostPort": host_port,
                                                   "ContainerPort": 8080}]
    client.destroy("ports")
    assert_clean(d)


@needs_hooks
def test_limit_change_whose_record_fails_is_undone(daemon):
    d = hooked(daemon, {"CLOCHE_TEST_FAULT": "limits.record:1"})
    client = d.client()
    client.create({"handle": "lim", "limits": {"memory_limits": {"limit_in_bytes": 64 << 20}}})
    mem = cgroup_controller_dir(d.cgroup_parent, "lim", "memory")

    def kernel_limit() -> int:
        for name in ("memory.max", "memory.limit_in_bytes"):
            p = os.path.join(mem, name)
            if os.path.exists(p):
                return int(open(p).read())
        raise AssertionError("no memory limit file")

    with pytest.raises(GardenError):
        client.set_limits("lim", "memory", {"limit_in_bytes": 128 << 20})
    assert kernel_limit() == 64 << 20
    assert client.current_limits("lim", "memory")["limit_in_bytes"] == 64 << 20
    client.set_limits("lim", "memory", {"limit_in_bytes": 128 << 20})
    assert kernel_limit() == 128 << 20
    client.destroy("lim")
    assert_clean(d)


# --------------------------------------------------------------------------
# Crash points: the daemon killed at each step, then restarted


def _prepare(client, point: str) -> None:
    """What must exist before the operation that reaches `point`."""
    if not point.startswith("create."):
        client.create({"handle": "victim", "limits": {"memory_limits": {"limit_in_bytes": 64 << 20}}})


def _act(client, point: str) -> None:
    if point.startswith("create."):
        spec = {"handle": "victim", "limits": {"memory_limits": {"limit_in_bytes": 64 << 20}}}
        if point == "create.disk":
            spec["limits"]["disk_limits"] = {"byte_hard": 64 << 20}
        client.create(spec)
    elif point.startswith("destroy."):
        client.destroy("victim")
    elif point.startswith("netin."):
        client.net_in("victim", 0, 8080)
    elif point.startswith("netout."):
        client.net_out("victim", {"protocol": 1, "networks": [{"start": "10.9.0.1"}],
                                  "ports": [{"start": 5432}]})
    elif point.startswith("limits."):
        client.set_limits("victim", "memory", {"limit_in_bytes": 128 << 20})
    elif point.startswith("run."):
        client.run("victim", {"path": "sleep", "args": ["1"]}).wait()
    else:
        raise AssertionError(point)


CRASH_POINTS = CREATE_POINTS + ["create.disk",
                                "destroy.record", "destroy.killed", "destroy.network",
                                "destroy.teardown", "destroy.depot",
                                "netin.record", "netin.firewall", "netout.record",
                                "limits.applied", "run.directory", "run.spec", "run.started"]


@needs_hooks
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_point(daemon, point):
    d = daemon.new()
    d.env["CLOCHE_TEST_CRASH"] = point
    d.start()
    client = d.client()
    _prepare(client, point)
    with pytest.raises((GardenError, OSError, Exception)):
        _act(client, point)
    assert d.wait(10) is not None, "the daemon did not stop at the crash point"
    assert "test crash point reached" in d.log_text()

    d.env["CLOCHE_TEST_CRASH"] = None
    d.start()
    client = d.client()
    handles = client.list({"garden.state": "all"})
    assert handles in ([], ["victim"]), handles
    if handles:
        # Whole: usable, and what it says it has is really there.
        whole(client, "victim")
        info = client.info("victim")
        ports = info.get("MappedPorts") or []
        netin = [e for e in nft_container_state(d) if e.startswith("netin ")]
        assert len(netin) == len(ports), (netin, ports)
        limit = client.current_limits("victim", "memory")["limit_in_bytes"]
        mem = cgroup_controller_dir(d.cgroup_parent, "victim", "memory")
        for name in ("memory.max", "memory.limit_in_bytes"):
            p = os.path.join(mem, name)
            if os.path.exists(p):
                assert int(open(p).read()) == limit
    else:
        left = wait_no_traces(d)
        assert not left, f"gone, but left behind: {left}"
    destroy_all(d)
    assert_clean(d)
    # The daemon still creates (the uid range and address were given back).
    h = client.create({"handle": "after"})
    whole(client, h)
    client.destroy(h)
    assert_clean(d)
