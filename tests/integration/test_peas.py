"""Issue 21: peas, processes with a root file system of their own in a container.

A Run whose ProcessSpec has an ``image`` starts a process in a new mount
namespace rooted at an overlay of that image (its own writable layer, removed
when it ends) that shares the container's user, network, pid, IPC, UTS and
cgroup namespaces; ``limits`` (OverrideContainerLimits) gives it a cgroup of
its own under the container's.  Everything here is observed from the host as
well: /proc/PID/ns links, the depot's process directories, cgroupfs and the
mount table.

The pea image is a copy of the busybox test rootfs with a marker file, so a
pea and its container can be told apart by what they see.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from conftest import (DEFAULT_ROOTFS, cgroup_core_dir, cgroup_controller_dir, container_init_pid,
                      process_alive, wait_until)
from garden_client import GardenError

PAYLOAD = "/usr/bin/cloche-payload"
WAIT = 20.0
MIB = 1 << 20
NAMESPACES = ("net", "pid", "ipc", "uts", "user", "mnt", "cgroup")


# --------------------------------------------------------------------------
# Helpers and fixtures


@pytest.fixture(scope="module")
def pea_image(tmp_path_factory) -> Path:
    """A root file system of its own: the busybox rootfs plus /pea-marker, and a
    passwd naming a user the container's does not have."""
    root = tmp_path_factory.mktemp("pea-image") / "rootfs"
    shutil.copytree(DEFAULT_ROOTFS, root, symlinks=True)
    (root / "pea-marker").write_text("pea\n")
    passwd = root / "etc" / "passwd"
    text = passwd.read_text() if passwd.exists() else "root:x:0:0:root:/root:/bin/sh\n"
    passwd.write_text(text + "peauser:x:4321:4322:pea user:/home/peauser:/bin/sh\n")
    return root


def sh(script: str, **fields) -> dict:
    return dict(fields, path="sh", args=["-c", script])


def pea(image: Path, script: str, **fields) -> dict:
    return sh(script, image={"uri": f"raw://{image}"}, **fields)


def output(client, handle: str, spec: dict, timeout: float = WAIT) -> tuple[int, str, str]:
    p = client.run(handle, spec)
    status = p.wait(timeout)
    out = (p.stdout or b"").decode(errors="replace")
    err = (p.stderr or b"").decode(errors="replace")
    p.close()
    return status, out, err


def process_dir(d, handle: str, pid: str) -> Path:
    return d.depot / "containers" / handle / "processes" / pid


def process_host_pid(d, handle: str, pid: str) -> int:
    text = (process_dir(d, handle, pid) / "pid").read_text().split()
    return int(text[2])


def ns_links(pid: int) -> dict:
    return {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in NAMESPACES}


def mounts_naming(path_part: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path_part in line]


@pytest.fixture
def container(daemon):
    d = daemon()
    client = d.client()
    h = client.create({})
    yield d, client, h


# --------------------------------------------------------------------------
# Namespaces and file systems


def test_pea_shares_every_namespace_but_mnt(container, pea_image):
    d, client, h = container
    p = client.run(h, pea(pea_image, "cat /pea-marker; sleep 30", id="ns-pea"))
    init = container_init_pid(d, h)
    assert wait_until(lambda: (process_dir(d, h, "ns-pea") / "pid").exists(), WAIT)
    host_pid = process_host_pid(d, h, "ns-pea")
    theirs, ours = ns_links(init), ns_links(host_pid)
    for ns in ("net", "pid", "ipc", "uts", "user", "cgroup"):
        assert ours[ns] == theirs[ns], ns
    assert ours["mnt"] != theirs["mnt"]
    # An ordinary process of the same container shares the mount namespace:
    # the difference is the pea's.
    q = client.run(h, sh("sleep 30", id="plain"))
    assert wait_until(lambda: (process_dir(d, h, "plain") / "pid").exists(), WAIT)
    assert ns_links(process_host_pid(d, h, "plain"))["mnt"] == theirs["mnt"]
    assert "ns-pea" in client.info(h)["ProcessIDs"]
    for proc in (p, q):
        proc.signal(1)  # Garden's kill
        assert proc.wait(WAIT) == 128 + signal.SIGKILL
        proc.close()


def test_pea_files_are_its_own(container, pea_image):
    d, client, h = container
    # The container writes a file; the pea does not see it, and writes its own.
    assert output(client, h, sh("echo from-container > /container-file"))[0] == 0
    status, out, err = output(client, h, pea(pea_image, """
        cat /pea-marker
        test -e /container-file && echo LEAK
        echo from-pea > /pea-file
        cat /pea-file
        hostname
        cat /etc/hosts /etc/resolv.conf | head -c 4096 >/dev/null
        test -c /dev/null && test -d /proc/self && test -d /sys/fs/cgroup && echo mounts-ok
        pwd
    """))
    assert status == 0, err
    lines = out.split()
    assert lines[0] == "pea" and "LEAK" not in lines and "from-pea" in lines, out
    assert h in lines and "mounts-ok" in lines, out
    assert lines[-1] == "/", out  # dir defaults to /
    # ...and the container sees neither the pea's file nor its image.
    status, out, _ = output(client, h, sh("ls /pea-file /pea-marker 2>&1; cat /container-file"))
    assert "from-container" in out and "No such file" in out, out
    # The pea's image on the host is untouched; its layer went with it.
    assert not (pea_image / "pea-file").exists()
    pdirs = list((d.depot / "containers" / h / "processes").iterdir())
    assert all(not (p / "rootfs").exists() for p in pdirs), pdirs


def test_pea_hosts_and_resolv_conf_are_the_containers(container, pea_image):
    d, client, h = container
    status, theirs, _ = output(client, h, sh("cat /etc/hosts /etc/resolv.conf"))
    assert status == 0
    status, ours, err = output(client, h, pea(pea_image, "cat /etc/hosts /etc/resolv.conf"))
    assert status == 0, err
    assert ours == theirs and h in ours


def test_pea_user_from_its_own_passwd(container, pea_image):
    d, client, h = container
    status, out, err = output(client, h, pea(pea_image, "id -u; id -g; echo $HOME",
                                             user="peauser"))
    assert status == 0, err
    assert out.split() == ["4321", "4322", "/home/peauser"], out
    assert output(client, h, pea(pea_image, "id -u", user="1234:5678"))[1].split() == ["1234"]
    assert output(client, h, pea(pea_image, "id -u"))[1].split() == ["0"]
    # The container's passwd does not have it: an ordinary process is refused...
    with pytest.raises(GardenError) as e:
        client.run(h, sh("id -u", user="peauser"))
    assert "peauser" in e.value.message
    # ...and so is a pea with a name its own passwd lacks.
    with pytest.raises(GardenError) as e:
        client.run(h, pea(pea_image, "id -u", user="nobody-here"))
    assert "nobody-here" in e.value.message


def test_pea_root_without_passwd(container, tmp_path):
    d, client, h = container
    image = tmp_path / "bare"
    shutil.copytree(DEFAULT_ROOTFS, image, symlinks=True)
    (image / "etc" / "passwd").unlink(missing_ok=True)
    status, out, err = output(client, h, pea(image, "id -u"))
    assert status == 0 and out.split() == ["0"], err
    with pytest.raises(GardenError) as e:
        client.run(h, pea(image, "id -u", user="alice"))
    assert "alice" in e.value.message


def test_pea_missing_executable_is_the_same_error(container, pea_image):
    d, client, h = container
    errors = []
    for spec in ({"path": "/no/such/exe"},
                 {"path": "/no/such/exe", "image": {"uri": f"raw://{pea_image}"}}):
        with pytest.raises(GardenError) as e:
            client.run(h, spec)
        errors.append((e.value.status, e.value.type))
    assert errors[0] == errors[1], errors
    assert errors[0][1] == "ExecutableNotFoundError"
    # A bad image is refused with a 4xx and leaves nothing behind.
    with pytest.raises(GardenError) as e:
        client.run(h, sh("true", image={"uri": "/no/such/image"}))
    assert 400 <= e.value.status < 500
    assert output(client, h, pea(pea_image, "true"))[0] == 0
    pdirs = list((d.depot / "containers" / h / "processes").iterdir())
    assert all(not (p / "rootfs").exists() for p in pdirs), pdirs


def test_pea_stdio_tty_signals_and_exit_status(container, pea_image):
    d, client, h = container
    p = client.run(h, pea(pea_image, "read line; echo got:$line; echo err >&2; exit 7"),
                   stdin=b"hello\n")
    assert p.wait(WAIT) == 7
    assert (p.stdout or b"").decode() == "got:hello\n" and (p.stderr or b"").decode() == "err\n"
    p.close()
    status, out, _ = output(client, h, pea(pea_image, "tty; test -t 0 && echo is-tty",
                                           tty={"window_size": {"columns": 80, "rows": 24}}))
    assert status == 0 and "/dev/pts/" in out and "is-tty" in out, out
    p = client.run(h, pea(pea_image, "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
                          id="sig-pea"))
    assert wait_until(lambda: b"ready" in p.stdout, WAIT)
    p.signal(0)  # Garden's terminate
    assert p.wait(WAIT) == 42
    p.close()
