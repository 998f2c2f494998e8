"""Issue 14: a container's service (``cloche_service`` in the create body),
supervised by its cloche-shim: restart policies with growing back-off, state in
Info and the properties, the policy at work while the daemon is SIGKILLed and
down, and the image's Entrypoint/Cmd, WorkingDir, User and Env for ``{}``.

The logs the shim writes (rotation, tail, since, follow, curl) are in
test_logs.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

import imagekit
from conftest import DEFAULT_ROOTFS, process_alive, remove_tree, wait_until
from garden_client import GardenError

WAIT = 20.0


def service(script: str, **fields) -> dict:
    return dict(fields, path="/bin/sh", args=["-c", script])


def props(client, handle: str) -> dict:
    return client.info(handle)["Properties"]


def state_file(d, handle: str) -> Path:
    return d.processes(handle) / "service" / "state"


def log_records(d, handle: str) -> list[tuple[float, str, str]]:
    """(time, stream, text) of every record of the service's current log file."""
    path = d.depot / "containers" / handle / "logs" / "service.log"
    out = []
    for line in path.read_text().splitlines():
        when, stream, text = line.split(" ", 2)
        out.append((float(when), stream, text))
    return out


def test_on_failure_restarts_with_growing_delays_then_stops(containers):
    c = containers.daemon.client()
    h = containers.create(cloche_service=service(
        "echo run; exit 1", restart="on-failure", max_restarts=3,
        backoff={"initial_ms": 200, "max_ms": 5000, "reset_after_ms": 60000}))
    assert wait_until(lambda: props(c, h).get("cloche.service.state") == "exited", WAIT)
    p = props(c, h)
    assert p["cloche.service.restarts"] == "3"
    assert p["cloche.service.exit-status"] == "1"
    assert p["cloche.service.restart"] == "on-failure"
    assert abs(int(p["cloche.service.started-at"]) - time.time()) < 30
    # Four runs, each started after twice the delay of the one before.
    runs = [t for t, stream, text in log_records(containers.daemon, h) if text == "run"]
    assert len(runs) == 4, runs
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    for gap, delay in zip(gaps, (0.2, 0.4, 0.8)):
        assert delay <= gap < delay + 1.0, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps
    print("restart gaps (s), back-off 0.2/0.4/0.8:", " ".join(f"{g:.3f}" for g in gaps))
    # Stopped for good: no monitor left, no more runs.
    assert "service" not in (c.info(h)["ProcessIDs"] or [])
    time.sleep(1.0)
    assert props(c, h)["cloche.service.restarts"] == "3"
    # The single-property route serves the live state too.
    assert c.property(h, "cloche.service.state") == "exited"


def test_always_restarts_after_exit_0_and_no_does_not(containers):
    c = containers.daemon.client()
    always = containers.create(cloche_service=service(
        "echo up; exit 0", restart="always", backoff={"initial_ms": 50, "max_ms": 100}))
    never = containers.create(cloche_service=service("echo once; exit 0", restart="no"))
    assert wait_until(lambda: int(props(c, always)["cloche.service.restarts"]) >= 3, WAIT)
    p = props(c, always)
    assert p["cloche.service.state"] in ("running", "backoff", "restarting")
    assert p["cloche.service.exit-status"] == "0"
    assert "service" in c.info(always)["ProcessIDs"]
    assert wait_until(lambda: props(c, never)["cloche.service.state"] == "exited", WAIT)
    assert props(c, never)["cloche.service.restarts"] == "0"
    assert props(c, never)["cloche.service.exit-status"] == "0"
    # Garden's Stop ends the service for good.
    c.stop(always)
    assert wait_until(lambda: props(c, always)["cloche.service.state"] == "exited", WAIT)
    n = props(c, always)["cloche.service.restarts"]
    time.sleep(0.5)
    assert props(c, always)["cloche.service.restarts"] == n
    assert "service" not in (c.info(always)["ProcessIDs"] or [])


def test_stop_sigterm_does_not_restart_a_long_running_service(containers):
    c = containers.daemon.client()
    h = containers.create(cloche_service=service(
        "trap 'exit 143' TERM; while true; do sleep 0.1; done", restart="always",
        backoff={"initial_ms": 10, "max_ms": 10}))
    assert wait_until(lambda: props(c, h)["cloche.service.state"] == "running", WAIT)
    # An exit of its own (here a SIGKILL from outside) is restarted...
    pid_before = open(state_file(containers.daemon, h)).read().split()[4]
    os.kill(int(pid_before), signal.SIGKILL)
    assert wait_until(lambda: props(c, h)["cloche.service.restarts"] == "1", WAIT)
    assert wait_until(lambda: props(c, h)["cloche.service.state"] == "running", WAIT)
    # ...while Stop's SIGTERM is the end of it.
    c.stop(h)
    p = props(c, h)
    assert p["cloche.service.state"] == "exited", p
    assert p["cloche.service.exit-status"] == "143", p
    assert p["cloche.service.restarts"] == "1"


def test_policy_goes_on_while_the_daemon_is_down(containers):
    d = containers.daemon
    c = d.client()
    h = containers.create(cloche_service=service(
        "echo run; exit 3", restart="on-failure",
        backoff={"initial_ms": 100, "max_ms": 300, "reset_after_ms": 60000}))
    assert wait_until(lambda: int(props(c, h)["cloche.service.restarts"]) >= 1, WAIT)
    assert d.kill() == -signal.SIGKILL
    before = int(state_file(d, h).read_text().split()[1])
    runs_before = len(log_records(d, h))
    time.sleep(2.0)
    after = int(state_file(d, h).read_text().split()[1])
    assert after >= before + 4, (before, after)
    assert len(log_records(d, h)) >= runs_before + 4
    d.start()
    c = d.client()
    p = props(c, h)
    assert int(p["cloche.service.restarts"]) >= after
    assert p["cloche.service.exit-status"] == "3"
    assert "service" in c.info(h)["ProcessIDs"]
    # The new daemon watches the restored service: its restarts are events again.
    assert wait_until(lambda: any(e["type"] == "service_restarted"
                                  for e in service_events(c, h)), WAIT)
    c.destroy(h)
    assert not (d.depot / "containers" / h).exists() or wait_until(
        lambda: not (d.depot / "containers" / h).exists(), WAIT)


def test_service_is_an_ordinary_process(containers):
    """Attach and signal through the usual routes, under the id "service"."""
    c = containers.daemon.client()
    h = containers.create(env=["FROM_CONTAINER=1"], cloche_service=service(
        "trap 'echo bye; exit 5' USR1; "
        "echo env=$FROM_CONTAINER,$MINE dir=$(pwd) user=$(id -u); while true; do sleep 0.1; done",
        env=["MINE=2"], dir="/tmp", user="1000:1000", restart="no"))
    assert wait_until(lambda: "service" in (c.info(h)["ProcessIDs"] or []), WAIT)
    p = c.attach(h, "service")
    p.expect("env=")
    p.signal(signal.SIGUSR1)
    assert p.wait(WAIT) == 5
    assert b"bye" in p.stdout
    text = "\n".join(t for _, _, t in log_records(containers.daemon, h))
    assert "env=1,2 dir=/tmp user=1000" in text, text
    assert "bye" in text


def test_bad_service_specs_are_400(containers):
    c = containers.daemon.client()
    bad = [
        ({"restart": "sometimes", "path": "/bin/true"}, "cloche_service.restart"),
        ({"path": "/bin/true", "max_restarts": 10 ** 7}, "cloche_service.max_restarts"),
        ({"path": "/bin/true", "backoff": {"initial_ms": 5}}, "cloche_service.backoff.initial_ms"),
        ({"path": "/bin/true", "backoff": {"initial_ms": 500, "max_ms": 100}},
         "cloche_service.backoff.max_ms"),
        ({"path": "/bin/true", "log": {"max_size": 100}}, "cloche_service.log.max_size"),
        ({"path": "/bin/true", "log": {"max_files": 0}}, "cloche_service.log.max_files"),
        ({"args": ["x"]}, "cloche_service.args"),
        ("yes", "cloche_service"),
        # A raw root file system has no Entrypoint or Cmd to take.
        ({}, "no 'path'"),
    ]
    for spec, word in bad:
        with pytest.raises(GardenError) as e:
            c.create({"cloche_service": spec})
        assert e.value.status == 400, (spec, e.value)
        assert word in e.value.message, (spec, e.value.message)
    assert c.list() == []
    # The allowed form of the same works.
    h = containers.create(cloche_service={"path": "/bin/true", "restart": "no",
                                          "log": {"max_size": 4096, "max_files": 1}})
    assert wait_until(lambda: props(c, h)["cloche.service.state"] == "exited", WAIT)


def test_missing_executable_fails_the_create_cleanly(containers):
    c = containers.daemon.client()
    with pytest.raises(GardenError) as e:
        c.create({"handle": "nosvc", "cloche_service": {"path": "/no/such/thing"}})
    assert e.value.status >= 400
    assert "nosvc" not in c.list()
    assert not (containers.daemon.depot / "containers" / "nosvc").exists() or wait_until(
        lambda: not (containers.daemon.depot / "containers" / "nosvc").exists(), WAIT)
    h = containers.create({"handle": "nosvc", "cloche_service": {"path": "/bin/true"}})
    assert h == "nosvc"


@pytest.mark.skipif(not shutil.which("umoci"), reason="umoci is missing")
def test_empty_service_takes_the_image_config(containers, tmp_path):
    layout = tmp_path / "layout"
    imagekit.sh("umoci", "init", "--layout", layout)
    imagekit.sh("umoci", "new", "--image", f"{layout}:app")
    bundle = tmp_path / "bundle"
    imagekit.sh("umoci", "unpack", "--image", f"{layout}:app", bundle)
    imagekit.sh("cp", "-a", f"{DEFAULT_ROOTFS}/.", bundle / "rootfs")
    imagekit.sh("umoci", "repack", "--image", f"{layout}:app", bundle)
    remove_tree(bundle)
    imagekit.sh("umoci", "config", "--image", f"{layout}:app", "--config.env", "FROM_IMAGE=yes",
                "--config.user", "1000:1000", "--config.workingdir", "/tmp",
                "--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
                "--config.cmd", "echo image=$FROM_IMAGE dir=$(pwd) user=$(id -u); exit 4")
    c = containers.daemon.client()
    h = containers.create({"image": {"uri": f"oci://{layout}#app"},
                           "cloche_service": {"restart": "no"}})
    assert wait_until(lambda: props(c, h)["cloche.service.state"] == "exited", WAIT)
    assert props(c, h)["cloche.service.exit-status"] == "4"
    texts = [t for _, _, t in log_records(containers.daemon, h)]
    assert texts == ["image=yes dir=/tmp user=1000"], texts
    # A path of its own wins over the image's.
    h2 = containers.create({"image": {"uri": f"oci://{layout}#app"},
                            "cloche_service": {"path": "/bin/sh", "args": ["-c", "exit 6"],
                                               "restart": "no"}})
    assert wait_until(lambda: props(c, h2).get("cloche.service.exit-status") == "6", WAIT)


def service_events(client, handle: str) -> list[dict]:
    status, _, body = client.raw("GET", f"/cloche/events?handle={handle}")
    assert status == 200, body
    return [e for e in (json.loads(l) for l in body.decode().splitlines() if l)
            if e["type"].startswith("service_")]


def test_service_events_in_order(containers):
    c = containers.daemon.client()
    h = containers.create(cloche_service=service(
        "echo run; exit 1", restart="on-failure", max_restarts=2,
        backoff={"initial_ms": 100, "max_ms": 1000}))
    want = ["service_exited", "service_restarted"] * 2 + ["service_exited"]
    assert wait_until(lambda: [e["type"] for e in service_events(c, h)] == want, WAIT), \
        service_events(c, h)
    got = service_events(c, h)
    assert all(e["process_id"] == "service" for e in got)
    assert [e.get("exit_status") for e in got if e["type"] == "service_exited"] == [1, 1, 1]
    assert [e["message"] for e in got] == ["to be restarted", "restart 1", "to be restarted",
                                          "restart 2", "exited for good"]
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs)
    # A service that runs on makes no service event; its Stop ends it with one.
    quiet = containers.create(cloche_service=service("sleep 1000", restart="always"))
    time.sleep(0.5)
    assert service_events(c, quiet) == []
    c.stop(quiet)
    assert wait_until(lambda: [e["type"] for e in service_events(c, quiet)] ==
                      ["service_exited"], WAIT)
    assert service_events(c, quiet)[0]["exit_status"] == 143
