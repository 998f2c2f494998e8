"""Issue 14: start and restart of a stopped container (cloche extensions), and
containers brought back after a (simulated) reboot.

A start gives a stopped container a new init; everything else must be as it
was: its address, its NetIn host ports (a client on the host reaches a server in
the container through the same port), its NetOut rules, its limits, properties
and files.  Servers and clients in containers are cloche-payload's ``serve``
and ``connect`` (tests/payload), started through Run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import (DEFAULT_ROOTFS, cgroup_controller_dir, cgroup_core_dir, cgroup_pids,
                      container_init_pid, process_alive, remove_cgroups, unmount_below, wait_until)
from garden_client import GardenError
from test_concurrency import assert_clean, hooked, needs_hooks, whole
from test_network import busybox, host_connect, in_container, link_names, run_bg, wait_serving
from test_processes import shims_of

PAYLOAD = "/usr/bin/cloche-payload"


@pytest.fixture(scope="module")
def payload():
    path = DEFAULT_ROOTFS / PAYLOAD.lstrip("/")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing (scripts/test.sh installs it)")
    return PAYLOAD


def events_of(d, query: str = "") -> list[dict]:
    status, _, body = d.client().raw("GET", "/cloche/events" + (f"?{query}" if query else ""))
    assert status == 200, body
    return [json.loads(line) for line in body.decode().splitlines() if line]


def put(client, handle: str, what: str, body: "bytes | None" = None) -> tuple[int, dict]:
    status, _, reply = client.raw("PUT", f"/containers/{handle}/cloche/{what}", body)
    return status, json.loads(reply)


def test_stop_then_start_keeps_address_ports_rules_and_files(containers, payload):
    d = containers.daemon
    client = d.client()
    a = containers.create({"properties": {"team": "blue"}})
    b = containers.create()
    client.set_limits(a, "pids", {"max": 123})
    ia, ib = client.info(a)["ContainerIP"], client.info(b)["ContainerIP"]
    hp, _ = client.net_in(a, 0, 8080)
    client.net_out(a, {"protocol": 1, "networks": [{"start": ib, "end": ib}],
                       "ports": [{"start": 9090, "end": 9090}]})
    run_bg(client, b, ["serve", "tcp", "9090"])
    wait_serving("tcp", ib, 9090)
    assert busybox(client, a, ["sh", "-c", "echo kept > /root/file"])[0] == 0
    run_bg(client, a, ["serve", "tcp", "8080"])
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{a}:ping"
    old_init = container_init_pid(d, a)
    before = client.info(a)

    client.stop(a)
    info = client.info(a)
    assert info["State"] == "stopped"
    assert client.properties(a)["cloche.state"] == "stopped"
    assert host_connect("tcp", "127.0.0.1", hp, timeout=0.5) is None

    assert put(client, a, "start") == (200, {})
    info = client.info(a)
    assert info["State"] == "active"
    props = client.properties(a)
    assert props["cloche.state"] == "active" and props["team"] == "blue"
    assert info["ContainerIP"] == ia and info["HostIP"] == before["HostIP"]
    assert info["MappedPorts"] == before["MappedPorts"] == [{"HostPort": hp,
                                                             "ContainerPort": 8080}]
    assert info["ProcessIDs"] == []
    new_init = container_init_pid(d, a)
    assert new_init != old_init and not process_alive(old_init)
    assert client.current_limits(a, "pids") == {"max": 123}
    pids_dir = cgroup_controller_dir(d.cgroup_parent, a, "pids")
    assert open(os.path.join(pids_dir, "pids.max")).read().strip() == "123"
    # The writable layer is the same one.
    rc, out = busybox(client, a, ["cat", "/root/file"])
    assert rc == 0 and out == "kept\n"
    # The container's address inside is the same, and the host reaches a new
    # server in it through the same host port.
    rc, out = busybox(client, a, ["ip", "-o", "-4", "addr"])
    assert ia in out, out
    # Its MAC is its address's (0a:58 and the four bytes), the same as before the
    # stop: the host's neighbour entry for the address, still valid, reaches it.
    mac = "0a:58:" + ":".join(f"{int(x):02x}" for x in ia.split("."))
    rc, out = busybox(client, a, ["ip", "-o", "link"])
    assert rc == 0 and mac in out, out
    run_bg(client, a, ["serve", "tcp", "8080"])
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{a}:ping"
    assert host_connect("tcp", before["HostIP"], hp) == f"{a}:ping"
    # The NetOut rule holds: b's port 9090 is open to a, others are not.
    rc, out = in_container(client, a, ["connect", "tcp", ib, "9090"])
    assert rc == 0 and out.startswith(f"{b}:ping"), out
    run_bg(client, b, ["serve", "tcp", "9091"])
    wait_serving("tcp", ib, 9091)
    rc, out = in_container(client, a, ["connect", "tcp", ib, "9091", "1"])
    assert rc != 0, out


def test_restart_and_start_errors(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    hp, _ = client.net_in(h, 0, 8080)
    # Starting an active container is a 409 ...
    status, err = put(client, h, "start")
    assert status == 409 and "only a stopped container" in err["Message"], err
    # ... and an unknown handle a 404.
    status, err = put(client, h + "-nope", "start")
    assert status == 404 and err["Type"] == "ContainerNotFoundError", err
    status, err = put(client, h + "-nope", "restart")
    assert status == 404 and err["Type"] == "ContainerNotFoundError", err
    status, err = put(client, h, "restart", b"{\"kill\":\"yes\"}")
    assert status == 400, err
    # Restart works on an active container (stop, then start) ...
    old_init = container_init_pid(d, h)
    run_bg(client, h, ["serve", "tcp", "8080"])
    wait_serving("tcp", "127.0.0.1", hp)
    assert put(client, h, "restart", b"{\"kill\":true}") == (200, {})
    assert client.info(h)["State"] == "active"
    assert container_init_pid(d, h) != old_init
    assert host_connect("tcp", "127.0.0.1", hp, timeout=0.5) is None  # the server was stopped
    run_bg(client, h, ["serve", "tcp", "8080"])
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
    # ... and on a stopped one, without a body.
    client.stop(h)
    assert put(client, h, "restart") == (200, {})
    assert client.info(h)["State"] == "active"
    # The allowed case of the 409 above: a stopped container starts.
    client.stop(h)
    assert put(client, h, "start") == (200, {})
    # Started again, it stops and is destroyed as usual.
    client.stop(h)
    client.destroy(h)
    containers.handles.remove(h)


def web_service(restart: str) -> dict:
    """A service serving "HANDLE:ping" on 8080 (cloche-payload's serve)."""
    return {"path": PAYLOAD, "args": ["serve", "tcp", "8080"], "restart": restart}


def test_start_and_restart_bring_the_service_back(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create(cloche_service=web_service("always"))
    hp, _ = client.net_in(h, 0, 8080)
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
    assert "service" in client.info(h)["ProcessIDs"]
    client.stop(h)
    assert client.info(h)["State"] == "stopped"
    assert host_connect("tcp", "127.0.0.1", hp, timeout=0.5) is None
    time.sleep(1)  # the stopped service is not restarted by its "always" policy
    assert host_connect("tcp", "127.0.0.1", hp, timeout=0.5) is None
    assert put(client, h, "start") == (200, {})
    info = client.info(h)
    assert info["State"] == "active" and "service" in info["ProcessIDs"]
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
    assert client.properties(h)["cloche.service.state"] == "running"
    # Restart: the service is a new process, on the same host port.
    old = client.info(h)
    assert put(client, h, "restart") == (200, {})
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
    assert client.info(h)["MappedPorts"] == old["MappedPorts"]
    # The events say so, in order.
    events = events_of(d, f"handle={h}")
    types = [e["type"] for e in events if not e["type"].startswith("service_")]
    assert types == ["created", "stopped", "started", "stopped", "started"], types
    # Each stop ended the service's run for good (the policy does not restart it).
    ended = [e for e in events if e["type"] == "service_exited"]
    assert len(ended) >= 2 and all(e["process_id"] == "service" for e in ended), events


def test_a_service_that_cannot_start_leaves_the_container_stopped(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create(cloche_service=web_service("always"))
    client.stop(h)
    # Its program gone from the writable layer, the service cannot start.
    assert busybox(client, h, ["rm", PAYLOAD])[0] == 0
    status, reply = put(client, h, "start")
    assert status >= 400, reply
    assert client.info(h)["State"] == "stopped"
    # The allowed case: with the program back, the start works.
    with open(DEFAULT_ROOTFS / PAYLOAD.lstrip("/"), "rb") as f:
        status, _, body = client.raw(
            "PUT", f"/containers/{h}/files?destination={PAYLOAD}", f.read(),
            content_type="application/octet-stream")
    assert status == 200, body
    assert busybox(client, h, ["chmod", "755", PAYLOAD])[0] == 0
    assert put(client, h, "start") == (200, {})
    assert "service" in client.info(h)["ProcessIDs"]


# --------------------------------------------------------------------------
# Concurrency and failures


def _in_thread(fn):
    out: dict = {}

    def go():
        try:
            out["reply"] = fn()
        except Exception as e:  # noqa: BLE001 (kept for the assertion)
            out["error"] = e

    t = threading.Thread(target=go)
    t.start()
    return t, out


START_POINTS = ["start.ended", "start.cgroup", "start.sandbox", "start.limits"]


@needs_hooks
@pytest.mark.parametrize("point", START_POINTS)
def test_destroy_during_start(daemon, point):
    d = hooked(daemon, {"CLOCHE_TEST_DELAY": f"{point}:600"})
    client = d.client()
    h = client.create({"handle": "racing"})
    client.net_in(h, 0, 8080)
    client.stop(h)
    t, out = _in_thread(lambda: put(client, h, "start"))
    time.sleep(0.2)  # the start is parked at the point (600 ms): land the destroy there
    client.destroy(h)
    t.join(30)
    assert not t.is_alive()
    status, reply = out["reply"]
    assert status in (200, 409), reply
    if status == 409:
        assert "destroyed while it was being started" in reply["Message"], reply
    status, reply = put(client, h, "start")
    assert status == 404, reply
    assert_clean(d)
    # The allowed case on the same daemon: a start left alone works.
    h = client.create({"handle": "alone"})
    client.stop(h)
    assert put(client, h, "start") == (200, {})
    whole(client, h)
    client.destroy(h)
    assert_clean(d)


@needs_hooks
def test_two_concurrent_starts_run_one_after_the_other(daemon):
    d = hooked(daemon, {"CLOCHE_TEST_DELAY": "start.sandbox:500"})
    client = d.client()
    h = client.create({"handle": "twice"})
    ip = client.info(h)["ContainerIP"]
    client.stop(h)
    threads = [_in_thread(lambda: put(client, h, "start")) for _ in range(2)]
    # Info waits for the start (it reads the model only: it answers at once).
    for t, _ in threads:
        t.join(30)
    statuses = sorted(out["reply"][0] for _, out in threads)
    assert statuses == [200, 409], [out for _, out in threads]
    info = client.info(h)
    assert info["State"] == "active" and info["ContainerIP"] == ip
    whole(client, h)
    client.destroy(h)
    assert_clean(d)


@needs_hooks
@pytest.mark.parametrize("fault", ["start.sandbox", "start.record"])
def test_a_failed_start_leaves_it_stopped_and_a_later_start_works(daemon, fault):
    d = hooked(daemon, {"CLOCHE_TEST_FAULT": f"{fault}:1"})
    client = d.client()
    h = client.create({"handle": "flaky"})
    hp, _ = client.net_in(h, 0, 8080)
    ip = client.info(h)["ContainerIP"]
    client.stop(h)
    status, reply = put(client, h, "start")
    assert status == 500, reply
    info = client.info(h)
    assert info["State"] == "stopped" and info["ContainerIP"] == ip
    assert client.properties(h)["cloche.state"] == "stopped"
    # Nothing of the failed start is left running in the container's cgroup.
    with pytest.raises(AssertionError):
        container_init_pid(d, h)
    # The address and the host port stay the container's: another container
    # cannot take the port meanwhile.
    other = client.create({"handle": "other"})
    with pytest.raises(GardenError):
        client.net_in(other, hp, 80)
    assert client.info(other)["ContainerIP"] != ip
    # The allowed case: the next start works, with the same address and port.
    assert put(client, h, "start") == (200, {})
    info = client.info(h)
    assert info["State"] == "active" and info["ContainerIP"] == ip
    assert info["MappedPorts"] == [{"HostPort": hp, "ContainerPort": 8080}]
    whole(client, h)
    client.destroy(h)
    client.destroy(other)
    assert_clean(d)


@needs_hooks
@pytest.mark.parametrize("point", ["start.ended", "start.sandbox", "start.limits"])
def test_a_daemon_killed_during_a_start_keeps_the_container(daemon, point):
    d = daemon.new()
    d.env["CLOCHE_TEST_CRASH"] = point
    d.start()
    client = d.client()
    h = client.create({"handle": "victim"})
    hp, _ = client.net_in(h, 0, 8080)
    ip = client.info(h)["ContainerIP"]
    client.stop(h)
    with pytest.raises(Exception):
        put(client, h, "start")
    assert d.wait(10) is not None, "the daemon did not stop at the crash point"
    d.env["CLOCHE_TEST_CRASH"] = None
    d.start()
    client = d.client()
    # Whatever the point, the container is there, stopped or active, whole.
    info = client.info(h)
    if info["State"] == "stopped":
        assert put(client, h, "start") == (200, {})
        info = client.info(h)
    assert info["State"] == "active" and info["ContainerIP"] == ip
    assert info["MappedPorts"] == [{"HostPort": hp, "ContainerPort": 8080}]
    # One init: nothing of the cut-short start is left in the container.
    assert cgroup_pids(cgroup_core_dir(d.cgroup_parent, h)) == [container_init_pid(d, h)]
    whole(client, h)
    run_bg(client, h, ["serve", "tcp", "8080"])
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
    client.destroy(h)
    assert_clean(d)


# --------------------------------------------------------------------------
# After a reboot


def simulate_reboot(d) -> None:
    """Leave what a host reboot leaves of d's containers, inside the test sandbox
    and touching only this daemon's own objects: SIGKILL the daemon, every shim
    and every process of its containers; remove its cgroups (the run's unique
    parent only), its links (named by its network tag), its nftables table and
    every mount below its depot (disk images). Then start the daemon again."""
    shims = shims_of(d.depot)
    inits = [container_init_pid(d, h) for h in d.client().list({"garden.state": "all"})]
    d.kill()
    for pid in shims + inits:  # an init's death ends every process of its container
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert wait_until(lambda: not any(process_alive(p) for p in shims + inits), 10)
    leftovers = remove_cgroups(d.cgroup_parent)  # kills what is left in them, by pid
    assert not leftovers, leftovers
    prefix = f"cl{d.net_tag}"
    for name in link_names():
        if name.startswith(prefix):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["nft", "delete", "table", "inet", f"cloche{d.net_tag}"], capture_output=True)
    unmount_below(d.depot)
    assert not [n for n in link_names() if n.startswith(prefix)]
    d.start()


def test_a_reboot_removes_containers_without_a_restart_policy(daemon, payload):
    d = daemon()
    client = d.client()
    plain = client.create({"handle": "plain"})
    stopped = client.create({"handle": "stopped"})
    client.stop(stopped)
    inits = [container_init_pid(d, h) for h in (plain, stopped)]
    simulate_reboot(d)
    assert all(not process_alive(p) for p in inits)
    client = d.client()
    assert client.list({"garden.state": "all"}) == []
    for h in (plain, stopped):
        with pytest.raises(GardenError) as info:
            client.info(h)
        assert info.value.status == 404
    assert wait_until(lambda: not os.listdir(d.depot / "containers"), 10)  # trash goes too
    # Each removal is an event of the new daemon.
    got = {e["handle"]: e for e in events_of(d)}
    assert got["plain"]["type"] == got["stopped"]["type"] == "destroyed"
    # The allowed case: the daemon after the reboot creates and serves as before.
    h = client.create({"handle": "plain"})
    hp, _ = client.net_in(h, 0, 8080)
    run_bg(client, h, ["serve", "tcp", "8080"])
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
    client.destroy(h)


def test_a_reboot_brings_back_always_containers_with_their_service(daemon, payload):
    d = daemon()
    client = d.client()
    keep = {}
    for policy in ("always", "unless-stopped"):
        h = client.create({"handle": f"app-{policy}", "cloche_service": web_service(policy),
                           "properties": {"tier": "web"}})
        hp, _ = client.net_in(h, 0, 8080)
        assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
        assert busybox(client, h, ["sh", "-c", f"echo {policy} > /root/state"])[0] == 0
        keep[h] = (hp, client.info(h))
    gone = [client.create({"handle": "app-no", "cloche_service": web_service("no")}),
            client.create({"handle": "app-on-failure",
                           "cloche_service": web_service("on-failure")}),
            client.create({"handle": "no-service"}),
            client.create({"handle": "stopped-always", "cloche_service": web_service("always")})]
    client.stop("stopped-always")
    simulate_reboot(d)

    client = d.client()
    assert sorted(client.list()) == sorted(keep)
    for h in gone:
        with pytest.raises(GardenError) as info:
            client.info(h)
        assert info.value.status == 404
    for h, (hp, before) in keep.items():
        info = client.info(h)
        assert info["State"] == "active" and "service" in info["ProcessIDs"]
        assert info["ContainerIP"] == before["ContainerIP"]
        assert info["MappedPorts"] == before["MappedPorts"]
        assert info["Properties"]["tier"] == "web"
        assert info["Properties"]["cloche.state"] == "active"
        # The service answers on the same host port, and the layer is the same.
        assert wait_serving("tcp", "127.0.0.1", hp, timeout=10) == f"{h}:ping"
        policy = h.split("-", 1)[1]
        assert busybox(client, h, ["cat", "/root/state"]) == (0, f"{policy}\n")
    # The new daemon's events: the two back, the others removed.
    got = {e["handle"]: e["type"] for e in events_of(d)}
    assert got == {**{h: "started" for h in keep}, **{h: "destroyed" for h in gone}}, got
    # A new container does not take their addresses or ports.
    other = client.create({"handle": "other"})
    assert client.info(other)["ContainerIP"] not in [b["ContainerIP"] for _, b in keep.values()]
    for hp, _ in keep.values():
        with pytest.raises(GardenError):
            client.net_in(other, hp, 80)


def test_a_disk_limited_container_keeps_its_disk_across_start_and_reboot(daemon, payload):
    d = daemon()
    client = d.client()
    mib = 1 << 20
    h = client.create({"handle": "disky", "cloche_service": web_service("always"),
                       "limits": {"disk_limits": {"byte_hard": 32 * mib, "scope": 1}}})

    def sh(script: str) -> tuple[int, str]:
        return busybox(client, h, ["sh", "-c", script])

    rc, out = sh("dd if=/dev/zero of=/data bs=1M count=20 2>&1 && sync")
    assert rc == 0, out
    client.stop(h)
    assert put(client, h, "start") == (200, {})
    simulate_reboot(d)
    client = d.client()
    assert client.info(h)["State"] == "active"
    assert sh("wc -c < /data") == (0, f"{20 * mib}\n")
    # The limit holds on the disk mounted again: 20 MiB more do not fit ...
    rc, out = sh("dd if=/dev/zero of=/more bs=1M count=20 2>&1")
    assert rc != 0 and "space" in out.lower(), out
    # ... and what does fit is written (the allowed case).
    rc, out = sh("rm -f /more; dd if=/dev/zero of=/more bs=1M count=8 2>&1")
    assert rc == 0, out
    assert client.current_disk_limits(h) == {"byte_hard": 32 * mib, "scope": 1}
    client.destroy(h)
