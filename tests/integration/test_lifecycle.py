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
import threading
import time

import pytest

from conftest import (DEFAULT_ROOTFS, cgroup_controller_dir, container_init_pid, process_alive,
                      wait_until)
from test_network import busybox, host_connect, in_container, run_bg, wait_serving

PAYLOAD = "/usr/bin/cloche-payload"


@pytest.fixture(scope="module")
def payload():
    path = DEFAULT_ROOTFS / PAYLOAD.lstrip("/")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing (scripts/test.sh installs it)")
    return PAYLOAD


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
