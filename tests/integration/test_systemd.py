"""Issue 15: running under systemd: the units, socket activation, readiness
notification and the configuration file.

The units are checked with `systemd-analyze verify`; the daemon is started by
`systemd-socket-activate` on sockets it did not create itself, with a
NOTIFY_SOCKET the test listens on, and serves a client there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD_DIR, REPO_ROOT, free_port, wait_until
from garden_client import GardenClient

PACKAGING = REPO_ROOT / "packaging"
ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")


def test_units_verify(tmp_path):
    if not ANALYZE:
        pytest.skip("systemd-analyze is not installed")
    service = (PACKAGING / "cloche.service").read_text()
    assert "Type=notify" in service and "KillMode=process" in service
    assert "Delegate=yes" in service
    # verify wants the ExecStart binary to exist: point it at the build.
    (tmp_path / "cloche.service").write_text(
        service.replace("/usr/sbin/cloched", str(BUILD_DIR / "cloched")))
    shutil.copy(PACKAGING / "cloche.socket", tmp_path / "cloche.socket")
    r = subprocess.run([ANALYZE, "verify", "--man=no", str(tmp_path / "cloche.service"),
                        str(tmp_path / "cloche.socket")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # And verify can fail: a unit with an unknown Type is refused.
    (tmp_path / "bad.service").write_text(service.replace("Type=notify", "Type=bogus")
                                          .replace("/usr/sbin/cloched",
                                                   str(BUILD_DIR / "cloched")))
    r = subprocess.run([ANALYZE, "verify", "--man=no", str(tmp_path / "bad.service")],
                       capture_output=True, text=True)
    assert "bogus" in r.stdout + r.stderr


class Notify:
    """A NOTIFY_SOCKET of our own: what the daemon says to its service manager."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def said(self, word: str) -> bool:
        return any(word in m.split("\n") or any(line.startswith(word) for line in m.split("\n"))
                   for m in self.poll())

    def close(self):
        self.sock.close()


def activated(daemon, tmp_path, listen: list[str], extra_env=None):
    """A daemon started by systemd-socket-activate on `listen` addresses, its own
    --bind-socket pointing somewhere that must stay unused."""
    if not ACTIVATE:
        pytest.skip("systemd-socket-activate is not installed")
    d = daemon.new(socket_enabled=False, bind_ip=None)
    notify = Notify(tmp_path / "notify.sock")
    unused = tmp_path / "unused" / "cloche.sock"
    argv = [ACTIVATE]
    for addr in listen:
        argv += ["-l", addr]
    argv += ["-E", f"NOTIFY_SOCKET={notify.path}"]
    for k, v in (extra_env or {}).items():
        argv += ["-E", f"{k}={v}"]
    argv += ["--"] + d.argv(["--bind-socket", str(unused)])
    log = open(d.log_path, "ab")
    d.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                              start_new_session=True)
    log.close()
    return d, notify, unused


def test_socket_activation_unix_and_notify(daemon, tmp_path):
    path = tmp_path / "activated.sock"
    d, notify, unused = activated(daemon, tmp_path, [str(path)])
    try:
        # systemd-socket-activate made the socket, and starts the daemon on the
        # first connection, which the daemon then serves.
        assert wait_until(path.exists, 10)
        client = GardenClient(unix_path=str(path), timeout=30)
        client.ping()
        assert wait_until(lambda: notify.said("READY=1"), 10), notify.messages
        assert any("STATUS=Serving 0 container(s)" in m for m in notify.messages)
        assert not unused.exists(), "the daemon bound its own socket as well"
        assert "socket activation" in d.log_text()
        h = client.create({})
        proc = client.run(h, {"path": "echo", "args": ["activated"]})
        assert proc.wait() == 0 and proc.stdout == b"activated\n"
        client.destroy(h)
        d.stop()
        assert wait_until(lambda: notify.said("STOPPING=1"), 5), notify.messages
    finally:
        notify.close()


def test_socket_activation_tcp_loopback(daemon, tmp_path):
    port = free_port()
    d, notify, _ = activated(daemon, tmp_path, [f"127.0.0.1:{port}"])
    try:
        client = GardenClient(host="127.0.0.1", port=port, timeout=30)

        def up():
            try:
                client.ping()
                return True
            except OSError:
                return False

        assert wait_until(up, 10)
        assert wait_until(lambda: notify.said("READY=1"), 10)
    finally:
        notify.close()


def test_socket_activation_refuses_open_tcp_without_token(daemon, tmp_path, nonloopback_ip):
    port = free_port(nonloopback_ip)
    d, notify, _ = activated(daemon, tmp_path, [f"{nonloopback_ip}:{port}"])
    try:
        def connect():  # the first connection starts the daemon
            try:
                with socket.create_connection((nonloopback_ip, port), timeout=5):
                    return True
            except OSError:
                return False

        assert wait_until(connect, 10)
        assert d.wait(10) not in (None, 0)
        assert "Refusing to serve the handed-over" in d.log_text()
        assert not notify.said("READY=1")
    finally:
        notify.close()


# --------------------------------------------------------------------------
# The configuration file


def run_version(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUILD_DIR / "cloched"), "--config", str(conf), *args],
                          capture_output=True, text=True, timeout=10)


def test_config_file_options_and_errors(daemon, tmp_path):
    conf = tmp_path / "cloched.conf"
    conf.write_text("# a comment\n\nmax-containers = 2   # trailing comment\n"
                    "default-grace-time 0\n")
    d = daemon("--config", str(conf))
    assert d.client().capacity()["max_containers"] == 2
    # The command line wins over the file.
    d.stop()
    d.extra_args += ["--max-containers", "3"]
    d.start()
    assert d.client().capacity()["max_containers"] == 3

    bad = tmp_path / "bad.conf"
    for text, message in [("nonsense = 1\n", "bad.conf:1: unknown option 'nonsense'"),
                          ("\n\nmax-containers\n", "bad.conf:3: option 'max-containers' needs a value"),
                          ("allow-host-access = yes\n", "takes no value"),
                          ("config = /etc/other\n", "unknown option 'config'"),
                          ("max-containers = lots\n", "--max-containers")]:
        bad.write_text(text)
        r = run_version(bad)
        assert r.returncode == 2, (text, r.stdout, r.stderr)
        assert message in r.stderr, (text, r.stderr)
    r = run_version(tmp_path / "missing.conf")
    assert r.returncode == 2 and "cannot read the configuration file" in r.stderr


def test_packaged_config_file_parses():
    r = subprocess.run([str(BUILD_DIR / "cloched"), "--config",
                        str(PACKAGING / "cloched.conf"), "--version"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
