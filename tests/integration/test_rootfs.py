"""rootfs-tools/mkrootfs-busybox.sh builds the tests' default rootfs.

Every container test depends on this tree, so its layout is checked here once:
busybox applets that resolve inside the rootfs, the vcap user Garden clients
expect, a sticky /tmp, and a rebuild only when busybox or the layout changes.
"""

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, remove_tree

SCRIPT = REPO_ROOT / "rootfs-tools" / "mkrootfs-busybox.sh"
STAMP = ".cloche-rootfs-stamp"


def build(dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), str(dest)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    # tmp_path_factory lives under /tmp; removed with remove_tree so nothing
    # mounted by accident is followed.
    path = tmp_path_factory.mktemp("rootfs")
    yield path
    remove_tree(path)


@pytest.fixture(scope="module")
def rootfs(workdir) -> Path:
    dest = workdir / "busybox"
    result = build(dest)
    assert result.returncode == 0, result.stderr
    return dest


def test_busybox_binary_is_copied(rootfs):
    st = (rootfs / "bin" / "busybox").lstat()
    assert stat.S_ISREG(st.st_mode)
    assert st.st_mode & 0o111


@pytest.mark.parametrize("applet", ["bin/sh", "bin/ls", "bin/cat", "usr/bin/env"])
def test_applets_link_to_busybox_inside_the_rootfs(rootfs, applet):
    link = rootfs / applet
    assert link.is_symlink(), f"{applet} is not a symlink"
    assert os.readlink(link) == "/bin/busybox"


def test_directories(rootfs):
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home/vcap", "tmp",
              "proc", "sys", "dev", "var/tmp"]:
        assert (rootfs / d).is_dir(), d
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((rootfs / "var" / "tmp").stat().st_mode) == 0o1777


def test_users_and_groups(rootfs):
    passwd = (rootfs / "etc" / "passwd").read_text().splitlines()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    assert "vcap:x:1000:1000::/home/vcap:/bin/sh" in passwd
    groups = [line.split(":")[0] for line in (rootfs / "etc" / "group").read_text().splitlines()]
    assert {"root", "vcap"} <= set(groups)
    home = (rootfs / "home" / "vcap").stat()
    assert (home.st_uid, home.st_gid) == (1000, 1000)


def test_empty_name_service_files(rootfs):
    for name in ("hosts", "resolv.conf"):
        f = rootfs / "etc" / name
        assert f.is_file() and f.stat().st_size == 0, name


def test_shell_runs_in_a_chroot(rootfs):
    result = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", "echo hello from $0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from /bin/sh\n"


def test_no_temporary_tree_left(rootfs):
    assert not Path(f"{rootfs}.tmp").exists()
    assert not Path(f"{rootfs}.old").exists()


def test_second_run_is_a_quick_no_op(rootfs):
    inode = (rootfs / "bin" / "busybox").stat().st_ino
    started = time.monotonic()
    result = build(rootfs)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5
    assert (rootfs / "bin" / "busybox").stat().st_ino == inode, "the tree was rebuilt"


def test_stale_stamp_triggers_rebuild(workdir):
    dest = workdir / "stale"
    assert build(dest).returncode == 0
    (dest / STAMP).write_text("busybox-static 0.0 layout:0\n")
    (dest / "leftover").write_text("from the old tree\n")
    result = build(dest)
    assert result.returncode == 0, result.stderr
    assert not (dest / "leftover").exists(), "the old tree was not replaced"
    assert (dest / STAMP).read_text().startswith("busybox-static ")
    assert "layout:0" not in (dest / STAMP).read_text()
