"""Issue 15: the Debian package, installed with dpkg into a throw-away Debian 12
root made by `debootstrap --variant=minbase`, runs there and serves a client.

scripts/test.sh builds the package (scripts/package.sh, lintian included) and
the root (scripts/debroot.sh, which needs a Debian mirror once, then reuses its
tarball) before the integration tests, and passes them here as
CLOCHE_PACKAGE_DEB and CLOCHE_PACKAGE_ROOT. Without them the test is skipped
and says why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import remove_cgroups, wait_until
from garden_client import GardenClient, GardenError

DEB = os.environ.get("CLOCHE_PACKAGE_DEB")
ROOT_TGZ = os.environ.get("CLOCHE_PACKAGE_ROOT")

pytestmark = pytest.mark.skipif(
    not (DEB and ROOT_TGZ and os.path.exists(DEB) and os.path.exists(ROOT_TGZ)),
    reason="no package or Debian root (scripts/test.sh makes them with scripts/package.sh "
           "and scripts/debroot.sh; debroot.sh needs a Debian mirror once)")


def sh(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def mounts_below(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


class DebRoot:
    """The extracted root, with /proc, /sys, /dev and /run for the daemon."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="cloche-debroot-", dir="/var/tmp"))
        sh("tar", "-C", str(self.dir), "-xzf", ROOT_TGZ)

    def mount(self):
        sh("mount", "-t", "proc", "proc", str(self.dir / "proc"))
        sh("mount", "--rbind", "/sys", str(self.dir / "sys"))
        sh("mount", "--make-rslave", str(self.dir / "sys"))
        sh("mount", "--rbind", "/dev", str(self.dir / "dev"))
        sh("mount", "--make-rslave", str(self.dir / "dev"))
        sh("mount", "-t", "tmpfs", "run", str(self.dir / "run"))

    def chroot(self, *argv, check=True, **kw):
        return sh("chroot", str(self.dir), *argv, check=check, **kw)

    def cleanup(self):
        # Never remove a tree with /sys or /dev still bound inside it.
        for point in sorted(mounts_below(self.dir), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if not mounts_below(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def debroot():
    r = DebRoot()
    try:
        yield r
    finally:
        r.cleanup()


# The daemon runs with the Debian root as its root through pivot_root in a mount
# namespace of its own: a chrooted process may not create user namespaces.
PIVOT = """set -e
mount --rbind "$1" "$1"
cd "$1"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
shift
exec "$@"
"""


def start_daemon(root: DebRoot, d) -> subprocess.Popen:
    """The installed cloched, with the packaged configuration file, and the
    test's own cgroup parent, network tag and pools on the command line."""
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", PIVOT, "sh",
            str(root.dir), "/usr/sbin/cloched", "--config", "/etc/cloche/cloched.conf",
            "--cgroup-parent", d.cgroup_parent, "--network-tag", d.net_tag,
            "--network-pool", d.network_pool, "--port-pool-start", str(d.port_pool_start),
            "--port-pool-size", str(d.port_pool_size)]
    log = open(d.log_path, "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    log.close()
    sock = root.dir / "run/cloche/cloche.sock"

    def up():
        try:
            GardenClient(unix_path=str(sock), timeout=5).ping()
            return True
        except (OSError, GardenError):
            return False

    assert wait_until(up, 20), d.log_text()[-3000:]
    return proc


def stop_daemon(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_package_installs_runs_and_upgrades(debroot, daemon):
    d = daemon.new()  # for its unique cgroup parent, tag, pools and log file
    shutil.copy(DEB, debroot.dir / "tmp" / "cloche.deb")
    os.chmod(debroot.dir, 0o755)  # mkdtemp made it 0700
    r = debroot.chroot("dpkg", "-i", "/tmp/cloche.deb")
    assert "Setting up cloche" in r.stdout, r.stdout
    for path in ["usr/sbin/cloched", "usr/bin/cloche", "usr/libexec/cloche/cloche-init",
                 "usr/libexec/cloche/cloche-shim", "usr/libexec/cloche/cloche-tar",
                 "etc/cloche/cloched.conf", "lib/systemd/system/cloche.service",
                 "lib/systemd/system/cloche.socket", "var/lib/cloche/rootfs/busybox/bin/sh",
                 "usr/share/man/man1/cloche.1.gz", "usr/share/man/man8/cloched.8.gz"]:
        assert (debroot.dir / path).exists(), f"/{path} is not installed"
    assert "/etc/cloche/cloched.conf" in debroot.chroot("dpkg-query", "-W", "-f=${Conffiles}",
                                                        "cloche").stdout

    debroot.mount()
    proc = start_daemon(debroot, d)
    try:
        client = GardenClient(unix_path=str(debroot.dir / "run/cloche/cloche.sock"), timeout=30)
        # The installed command line client, inside the Debian root.
        r = debroot.chroot("cloche", "create", "from-the-package")
        assert r.stdout.strip() == "from-the-package"
        h = "from-the-package"
        r = debroot.chroot("cloche", "run", h, "sh", "-c", "echo installed; hostname")
        assert r.stdout.split() == ["installed", "from-the-package"]
        r = debroot.chroot("cloche", "run", h, "sh", "-c", "exit 7", check=False)
        assert r.returncode == 7
        assert "from-the-package" in debroot.chroot("cloche", "ls").stdout
        long_running = client.run(h, {"path": "sleep", "args": ["600"]}, stdout=False,
                                  stderr=False)

        # An upgrade (the same package again: prerm, unpack, postinst) with the
        # daemon stopped and started around it, as the unit's restart does:
        # the depot and the running container are kept.
        stop_daemon(proc)
        r = debroot.chroot("dpkg", "-i", "/tmp/cloche.deb")
        assert "Setting up cloche" in r.stdout
        proc = start_daemon(debroot, d)
        client = GardenClient(unix_path=str(debroot.dir / "run/cloche/cloche.sock"), timeout=30)
        assert client.list() == ["from-the-package"]
        info = client.info(h)
        assert long_running.id in info["ProcessIDs"], info
        p = client.run(h, {"path": "echo", "args": ["after the upgrade"]})
        assert p.wait() == 0 and p.stdout == b"after the upgrade\n"
        debroot.chroot("cloche", "rm", h)
        assert client.list() == []
        r = debroot.chroot("cloche", "info", h, check=False)
        assert r.returncode != 0 and "unknown handle" in r.stderr
    finally:
        stop_daemon(proc)
        time.sleep(0.1)
        left = remove_cgroups(d.cgroup_parent)
        assert not left, left
