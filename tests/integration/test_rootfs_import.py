"""Issue 20, item 13: a rootfs on a file system this kernel cannot idmap.

An unprivileged container sees its image through an idmapped mount. On Debian
12's 6.1 kernel, tmpfs (idmapped only since 6.3), NFS and virtiofs refuse one;
ramfs refuses it on every kernel. cloche then says so at start-up (for the
default rootfs) and at create, and, where the depot's own file system can be
idmapped, imports the image into the depot once (kept until the source
changes) and uses that copy. Each file system is tried on a mount of the
test's own (run.sh gives every test run a private mount namespace); one this
kernel can idmap makes its case skip (tmpfs here is tested in the v2 VM, whose
kernel is 6.1: scripts/test-v2vm.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import DEFAULT_ROOTFS, unmount_below
from garden_client import GardenError

@pytest.fixture
def mounted(request):
    """mounted(fstype) -> a fresh mount of that file system (removed at teardown)."""
    made = []

    def make(fstype: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=f"cloche-{fstype}-", dir="/tmp"))
        subprocess.run(["mount", "-t", fstype, "-o", "mode=0755", fstype, str(d)], check=True)
        made.append(d)
        return d

    yield make
    for d in made:
        unmount_below(d)
        subprocess.run(["umount", "-l", str(d)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def _depot_beside_the_rootfs() -> Path:
    """A depot on the test rootfs's own file system (ext4 here and in the VM)."""
    return Path(tempfile.mkdtemp(prefix="cloche-import-depot-", dir=DEFAULT_ROOTFS.parent))


def _imports(depot: Path) -> list[str]:
    d = depot / "rootfs-imports"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.mark.parametrize("fstype", ["ramfs", "tmpfs"])
def test_rootfs_that_cannot_be_idmapped_is_imported_into_the_depot(daemon, mounted, fstype):
    src = mounted(fstype) / "busybox"
    subprocess.run(["cp", "-a", str(DEFAULT_ROOTFS), str(src)], check=True)
    depot = _depot_beside_the_rootfs()
    try:
        d = daemon(depot=depot, rootfs=src)
        log = d.log_text()
        if f"'{src}' is on {fstype}" not in log:
            pytest.skip(f"this kernel ({os.uname().release}) idmaps {fstype}")
        # Start-up says which file system it is, what happens and what would work.
        assert f"The default rootfs '{src}' is on {fstype}" in log, log
        assert "imported into" in log and "ext4, xfs or btrfs" in log, log
        client = d.client()

        client.create({"handle": "imp-a"})
        p = client.run("imp-a", {"path": "sh", "args": ["-c", "id -u; stat -c '%u %U' /bin/busybox"
                                                             "; echo x > /tmp/w && cat /tmp/w"]})
        assert p.wait(30) == 0, p.stderr
        assert p.stdout.decode().splitlines() == ["0", "0 root", "x"]
        p.close()
        assert len(_imports(depot)) == 1
        assert d.log_text().count("Imported the image") == 1
        print(next(line for line in d.log_text().splitlines() if "Imported the image" in line))

        # Kept: a second container uses the same copy.
        client.create({"handle": "imp-b"})
        assert len(_imports(depot)) == 1 and d.log_text().count("Imported the image") == 1

        # Until the source changes: then a new copy, and the old one stays for
        # the containers made from it.
        (src / "etc" / "changed").write_text("new\n")
        client.create({"handle": "imp-c"})
        p = client.run("imp-c", {"path": "cat", "args": ["/etc/changed"]})
        assert p.wait(30) == 0 and p.stdout == b"new\n", p.stderr
        p.close()
        assert len(_imports(depot)) == 2
        p = client.run("imp-a", {"path": "ls", "args": ["/bin/busybox"]})
        assert p.wait(30) == 0, p.stderr
        p.close()
        # Privileged containers need no idmapping: the source itself.
        client.create({"handle": "imp-p", "privileged": True})
        assert len(_imports(depot)) == 2
        for h in ("imp-a", "imp-b", "imp-c", "imp-p"):
            client.destroy(h)
    finally:
        unmount_below(depot)
        shutil.rmtree(depot, ignore_errors=True)


def test_neither_rootfs_nor_depot_idmappable_is_a_clear_error(daemon, mounted):
    root = mounted("ramfs")
    src = root / "busybox"
    subprocess.run(["cp", "-a", str(DEFAULT_ROOTFS), str(src)], check=True)
    d = daemon(depot=root / "depot", rootfs=src)
    if f"'{src}' is on ramfs" not in d.log_text():
        pytest.skip(f"this kernel ({os.uname().release}) idmaps ramfs")
    assert "unprivileged containers cannot be created" in d.log_text()
    client = d.client()
    with pytest.raises(GardenError) as info:
        client.create({"handle": "no-idmap"})
    msg = info.value.message
    assert f"'{src}' is on ramfs" in msg and "ext4, xfs or btrfs" in msg, msg
    assert "no-idmap" not in client.list()
    # The allowed case on the same daemon: a privileged container uses it as it is.
    client.create({"handle": "priv", "privileged": True})
    client.destroy("priv")
