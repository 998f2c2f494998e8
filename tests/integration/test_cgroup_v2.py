"""Pure cgroup v2 only: the delegated mode (systemd's Delegate=yes) and the v2
"no internal processes" rule. Skipped on v1 and hybrid hosts; scripts/test.sh runs
it inside the v2 VM (scripts/test-v2vm.sh)."""
import os
import secrets

import pytest

from conftest import wait_until

V2 = "/sys/fs/cgroup"
MIB = 1 << 20

pytestmark = pytest.mark.skipif(not os.path.exists(f"{V2}/cgroup.controllers"),
                                reason="not a pure cgroup v2 host")


def procs(path: str) -> list[int]:
    with open(f"{path}/cgroup.procs") as f:
        return [int(x) for x in f.read().split()]


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def rmdir_tree(path: str) -> None:
    for root, dirs, _ in os.walk(path, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


@pytest.fixture
def delegated_group(daemon):
    """A group standing for systemd's cloched.service with Delegate=yes."""
    path = f"{V2}/cloche-test-svc-{secrets.token_hex(4)}"
    os.mkdir(path)
    yield path
    daemon.cleanup()  # the daemons first: one may still sit in the group
    rmdir_tree(path)
    assert not os.path.exists(path), f"{path} left behind"


def test_delegated_mode_builds_the_tree_inside_the_own_group(daemon, delegated_group):
    d = daemon.new("--cgroup-delegated", "--cgroup-parent", "containers")
    d.start_cgroup = delegated_group
    d.start()
    client = d.client()
    # the daemon left the group for a leaf, and enabled controllers for its children
    assert d.pid in procs(f"{delegated_group}/daemon")
    assert procs(delegated_group) == []
    enabled = read(f"{delegated_group}/cgroup.subtree_control").split()
    assert {"cpu", "memory", "pids"} <= set(enabled)
    h = client.create({"limits": {"memory_limits": {"limit_in_bytes": 64 * MIB},
                                  "pid_limits": {"max": 30}}})
    group = f"{delegated_group}/containers/{h}"
    assert read(f"{group}/memory.max") == str(64 * MIB)
    assert read(f"{group}/pids.max") == "30"
    assert procs(f"{delegated_group}/containers") == []  # inner groups hold no process
    assert len(procs(group)) >= 1
    client.destroy(h)
    assert not os.path.exists(group)
    d.stop()
    d.cleanup()


def test_delegated_mode_refuses_a_group_without_the_controllers(daemon, delegated_group):
    # the group's parent hands down no memory controller to it
    inner = f"{delegated_group}/svc"
    os.mkdir(inner)
    with open(f"{delegated_group}/cgroup.subtree_control", "w") as f:
        f.write("+pids")
    d = daemon.new("--cgroup-delegated", "--cgroup-parent", "containers")
    d.start_cgroup = inner
    proc = d.spawn()
    assert proc.wait(30) != 0
    assert wait_until(lambda: "was not delegated" in d.log_text(), 5), d.log_tail()
    d.cleanup()
