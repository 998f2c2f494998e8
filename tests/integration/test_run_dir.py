"""Issue 17: the process table lives in the run directory (depot.h,
doc/processes.md): <run>/processes/<handle>/<id>/ and the idle shims'
directories, best on a tmpfs (/run on a systemd host), so a Run writes nothing
to the depot's disk. What must hold: Runs leave the depot untouched; a daemon
restarted on the same run directory finds and attaches its processes; Destroy
takes the container's table with it; start-up removes tables the depot has no
container for; a container made before the run directory keeps its table where
its shims are bound."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import container_init_pid, wait_until

WAIT = 30
ECHO = {"path": "sh", "args": ["-c", "read line; echo got:$line; exit 3"]}


def tree(path: Path) -> set[str]:
    """Every name under path, relative to it."""
    found = set()
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), path))
    return found


def fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], check=True,
                          capture_output=True, text=True).stdout.strip()


def restart_and_reattach(d, h: str, pid: str, new_id: str):
    """Restart d; the process pid (ECHO) is still listed and answers an attach;
    a new Run works. Returns the client."""
    d.restart()
    client = d.client()
    assert pid in client.info(h)["ProcessIDs"]
    q = client.attach(h, pid, stdin=b"again\n")
    assert q.wait(WAIT) == 3
    assert q.stdout == b"got:again\n", q.stdout
    q.close()
    p = client.run(h, {"path": "true", "id": new_id})
    assert p.wait(WAIT) == 0
    p.close()
    return client


@pytest.fixture
def tmpfs_run():
    """A run directory on a tmpfs of the test's own (the sandbox's mount
    namespace), as /run/cloche is on a systemd host."""
    top = Path(tempfile.mkdtemp(prefix="cloche-test-run-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "tmpfs", str(top)],
                   check=True)
    try:
        yield top / "cloche"
    finally:
        subprocess.run(["umount", "-l", str(top)], check=False)
        os.rmdir(top)


def test_runs_write_their_table_to_the_run_directory_and_a_restart_finds_it(tmpfs_run,
                                                                             daemon):
    d = daemon("--run-dir", str(tmpfs_run))
    d.run_dir = tmpfs_run
    client = d.client()
    h = client.create({})
    depot_before = tree(d.depot)
    for i in range(5):
        p = client.run(h, {"path": "true", "id": f"t{i}"})
        assert p.wait(WAIT) == 0
        p.close()
    p = client.run(h, dict(ECHO, id="echo"))
    assert wait_until(lambda: (d.processes(h) / "echo" / "pid").exists(), WAIT)
    p.close()
    # The table and the idle shims are on the tmpfs; the depot gained nothing.
    assert fs_type(d.processes(h)) == "tmpfs"
    assert {f"t{i}" for i in range(5)} | {"echo"} <= set(os.listdir(d.processes(h)))
    assert all((d.processes(h) / f"t{i}" / "exit").read_text() == "0\n" for i in range(5))
    assert os.listdir(tmpfs_run / "idle-shims")
    assert tree(d.depot) == depot_before, tree(d.depot) ^ depot_before

    client = restart_and_reattach(d, h, "echo", "after")

    client.destroy(h)
    assert wait_until(lambda: not d.processes(h).exists(), WAIT), os.listdir(d.processes(h))
    assert wait_until(lambda: os.listdir(tmpfs_run / "processes") == [], WAIT), \
        os.listdir(tmpfs_run / "processes")


def test_start_up_removes_tables_the_depot_has_no_container_for(daemon):
    d = daemon()
    client = d.client()
    h = client.create({})
    p = client.run(h, {"path": "sleep", "args": ["300"], "id": "keep"})
    assert wait_until(lambda: (d.processes(h) / "keep" / "pid").exists(), WAIT)
    p.close()
    ghost = d.processes("ghost") / "p1"
    ghost.mkdir(parents=True)
    (ghost / "exit").write_text("0\n")
    trash = d.run_dir / "processes" / ".trash-1-1" / "p2"
    trash.mkdir(parents=True)
    d.restart()
    assert not d.processes("ghost").exists()
    assert not trash.parent.exists()
    client = d.client()
    assert (d.processes(h) / "keep" / "pid").exists()
    assert "keep" in client.info(h)["ProcessIDs"]
    client.destroy(h)


def test_a_container_from_before_the_run_directory_keeps_its_table(daemon):
    """An earlier cloche kept the table in <depot>/containers/<handle>/processes,
    where a live process's shim has its sockets bound: the daemon goes on
    using that table for that container (new Runs included)."""
    d = daemon()
    client = d.client()
    h = client.create({})
    p = client.run(h, dict(ECHO, id="old"))
    assert wait_until(lambda: (d.processes(h) / "old" / "pid").exists(), WAIT)
    p.close()
    d.kill()
    legacy = d.depot / "containers" / h / "processes"
    os.rename(d.processes(h), legacy)  # the same file system: the sockets move along
    client = restart_and_reattach(d, h, "old", "new")
    assert (legacy / "new" / "exit").read_text() == "0\n"
    assert not d.processes(h).exists()
    client.destroy(h)
    assert wait_until(lambda: not (d.depot / "containers" / h).exists(), WAIT)


def test_a_create_makes_only_the_layers_state_and_etc_files_in_the_depot(daemon):
    """Issue 17: the mountpoints a create needs (the overlay root, the scratch
    tmpfs) are directories it already has, in the init's own mount namespace,
    and /dev/net/tun binds one node the daemon made once in the depot's root:
    a create adds no more files to the depot's disk than its layers, its state
    and its /etc files, and its /dev/net/tun still opens. The layer's overlay is
    volatile (its unmount syncs nothing) unless a reboot may bring it back, and
    a stopped container starts again on it."""
    d = daemon()
    client = d.client()
    for privileged in (False, True):
        h = client.create({"privileged": privileged})
        # (Below rootfs/work is the overlay's own.)
        names = {n for n in tree(d.depot / "containers" / h) if not n.startswith("rootfs/work/")}
        assert names == {"rootfs", "rootfs/upper", "rootfs/work", "rootfs/lower", "state.json",
                         "hosts", "resolv.conf"}, names
        # The writable layer is volatile: it never outlives the host's uptime.
        with open(f"/proc/{container_init_pid(d, h)}/mountinfo") as f:
            root = next(line for line in f if line.split()[4] == "/")
        assert " overlay " in root and "volatile" in root, root
        # Stopped and started again: the layer mounts again (the kernel refuses
        # a volatile layer that still carries its mark) and kept its files.
        p = client.run(h, {"path": "sh", "args": ["-c", "echo kept > /root/f"]})
        assert p.wait(WAIT) == 0
        p.close()
        client.stop(h, kill=True)
        status, _, reply = client.raw("PUT", f"/containers/{h}/cloche/start", None)
        assert status == 200, reply
        p = client.run(h, {"path": "sh", "args": ["-c", "test \"$(cat /root/f)\" = kept"]})
        assert p.wait(WAIT) == 0
        p.close()
        p = client.run(h, {"path": "sh", "args": ["-c", "test -c /dev/net/tun"]})
        assert p.wait(WAIT) == 0
        p.close()
        client.destroy(h)
    # A layer that a reboot may bring back (a service restarted always) is not.
    h = client.create({"cloche_service": {"path": "sleep", "args": ["1000"], "restart": "always"}})
    with open(f"/proc/{container_init_pid(d, h)}/mountinfo") as f:
        root = next(line for line in f if line.split()[4] == "/")
    assert " overlay " in root and "volatile" not in root, root
    client.destroy(h)
    tun = os.lstat(d.depot / "tun")
    assert (tun.st_mode & 0o170000) == 0o020000 and tun.st_rdev == os.makedev(10, 200)
    assert tun.st_mode & 0o7777 == 0o666
