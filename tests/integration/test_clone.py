"""Issue 17: a container's init is cloned sharing the daemon's memory until its
exec (src/util/vmclone.c), or as a copy of it with CLOCHE_CLONE_COPY=1 in the
daemon's environment (the way on architectures without vmclone). Both ways make
the same containers: unprivileged and privileged ones come up with cloche-init
as their pid 1 and their handle as hostname, run a process as their root, report
a step that fails inside the child as that step's own error and leave nothing
behind (not a descriptor in the daemon either: the child shares the daemon's
memory, and must not write the plan the daemon closes afterwards), and the
daemon serves on after each.
"""

import os

import pytest

from conftest import wait_until
from garden_client import GardenError
from test_limits import sh as run_sh

PROBE = "id -u; tr '\\0' ' ' </proc/1/cmdline; echo; hostname; echo ok"


@pytest.mark.parametrize("mode", ["shared", "copy"])
def test_both_ways_of_cloning_an_init_make_the_same_containers(daemon, mode):
    d = daemon.new()
    if mode == "copy":
        d.env["CLOCHE_CLONE_COPY"] = "1"
    d.start()
    client = d.client()
    # One first, so that what the daemon opens once is open before the count.
    client.destroy(client.create({"handle": f"{mode}-warm"}))
    before = len(os.listdir(f"/proc/{d.pid}/fd"))
    for i in range(3):  # several in a row: the helper threads come and go
        for privileged in (False, True):
            h = client.create({"handle": f"{mode}-{i}-{int(privileged)}",
                               "privileged": privileged})
            try:
                status, out = run_sh(client, h, PROBE)
                assert status == 0, out
                lines = out.split("\n")
                assert lines[0] == "0" and lines[1].startswith("garden-init"), out
                assert lines[2] == h and lines[3] == "ok", out
            finally:
                client.destroy(h)
    # A step that fails in the child (a bind mount whose source is missing inside
    # the container) is reported as that step, and nothing is left of it.
    with pytest.raises(GardenError) as e:
        client.create({"handle": f"{mode}-bad", "bind_mounts": [
            {"src_path": "/no/such/dir", "dst_path": "/mnt/x", "mode": 0, "origin": 1}]})
    assert "Bind mount source does not exist in the container" in e.value.message, e.value
    assert f"{mode}-bad" not in client.list()
    # The allowed case on the same daemon: an existing source binds.
    h = client.create({"handle": f"{mode}-good", "bind_mounts": [
        {"src_path": "/etc", "dst_path": "/mnt/x", "mode": 0, "origin": 1}]})
    try:
        status, out = run_sh(client, h, "test -e /mnt/x/passwd && echo bound")
        assert status == 0 and "bound" in out, out
    finally:
        client.destroy(h)
    assert client.list() == []
    # Seven containers made and destroyed, a cgroup view each (one descriptor per
    # hierarchy): a leak of any would show many times over; idle shims' sockets
    # and a stream thread may come and go.
    # On a busy machine they may still be closing: what is left after a few
    # seconds counts.
    def count() -> int:
        return len(os.listdir(f"/proc/{d.pid}/fd"))

    def links() -> list:
        out = []
        for fd in os.listdir(f"/proc/{d.pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{d.pid}/fd/{fd}"))
            except FileNotFoundError:  # closed meanwhile
                pass
        return sorted(out)

    assert wait_until(lambda: count() <= before + 3, 5), (before, count(), links())
