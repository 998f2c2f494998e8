"""A container's init joins its groups in every hierarchy before it runs anything.

On v1 hierarchies the child writes "0" to its groups' "tasks" files itself,
through files the daemon opened (cgroup_open_v1_tasks); v2 is joined with
CLONE_INTO_CGROUP. Either way the init must be found in every one of its groups,
counted once by the pids controller, and charged by its memory group."""
import os

from conftest import cgroup_group_dirs, cgroup_pids, container_init_pid


def own_group(pid: int, mount: str) -> "str | None":
    """The process's group path (from /proc/PID/cgroup) in the hierarchy at mount."""
    controllers = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == mount:
                sep = fields.index("-")
                if fields[sep + 1] == "cgroup2":
                    controllers = {""}
                else:
                    controllers = set(fields[sep + 3].split(","))
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            names = set(ctrl.split(",")) if ctrl else {""}
            if names & controllers:
                return path
    return None


def test_init_is_in_its_group_in_every_hierarchy(containers):
    d = containers.daemon
    handle = containers.create({"handle": "joined", "limits": {"pid_limits": {"max": 4}}})
    pid = container_init_pid(d, handle)
    groups = cgroup_group_dirs(d.cgroup_parent, handle)
    # Hybrid and v1 hosts: a group per v1 hierarchy and the v2 one; pure v2: one.
    pure_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    assert len(groups) >= (1 if pure_v2 else 2), groups
    for group in groups:
        mount = group[: -len(f"/{d.cgroup_parent}/{handle}")]
        assert pid in cgroup_pids(group), f"init {pid} not in {group}"
        assert own_group(pid, mount) == f"/{d.cgroup_parent}/{handle}", (group, mount)
    # Counted once by the pids controller, and a Run's process still fits.
    pids = [g for g in groups if os.path.exists(f"{g}/pids.current")]
    assert pids, groups
    with open(f"{pids[0]}/pids.current") as f:
        assert f.read().strip() == "1"
    proc = d.client().run(handle, {"path": "sh", "args": ["-c", "echo alive"]})
    assert proc.wait(timeout=30) == 0
    assert proc.stdout == b"alive\n"
