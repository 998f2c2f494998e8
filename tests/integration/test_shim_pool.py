"""Issue 17: the pool of idle shims (design §5, doc/processes.md).

The daemon keeps a few ``cloche-shim --idle RUN`` monitors ready; a Run hands
one the process directory instead of starting a shim for it. These tests check
from the host what the pool must keep true: a Run is taken by an idle shim,
which then names its process directory like any shim; an idle shim killed by pid
is replaced and Runs go on working (also when the kill lands just before the
Run); idle shims hold nothing of a container (no cgroup membership, never listed
as processes), end with the daemon (stopped or SIGKILLed), and a Run after a
daemon restart on the same depot works; Stop and Destroy leave no shim behind.
No timing is asserted.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import wait_until, process_alive

POOL = 2  # GARDEN_IDLE_SHIMS
WAIT = 15.0


def argv_of(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a for a in f.read().split(b"\0") if a.strip()]
    except OSError:
        return []


def shims() -> dict[int, list[bytes]]:
    """Live cloche-shim processes: pid -> argv (blank padding dropped)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = argv_of(int(entry))
        if argv and os.path.basename(argv[0]) == b"cloche-shim" and process_alive(int(entry)):
            found[int(entry)] = argv
    return found


def idle_shims(d) -> set[int]:
    """The idle shims of daemon d (their argv names its run directory)."""
    label = str(d.run_dir).encode()
    return {pid for pid, argv in shims().items()
            if len(argv) >= 3 and argv[1] == b"--idle" and argv[2] == label}


def shims_of(path: Path) -> set[int]:
    """Shims whose argv names a directory under path (process shims)."""
    needle = str(path).encode()
    return {pid for pid, argv in shims().items()
            if len(argv) >= 2 and argv[1] != b"--idle" and argv[1].startswith(needle)}


def pool_full(d) -> set[int]:
    assert wait_until(lambda: len(idle_shims(d)) == POOL, WAIT), \
        f"idle shims: {idle_shims(d)}\n{d.log_tail()}"
    return idle_shims(d)


def run_true(client, handle: str, **fields) -> str:
    p = client.run(handle, dict({"path": "true"}, **fields))
    try:
        assert p.wait(WAIT) == 0
    finally:
        p.close()
    return p.id


def recorded_shim(d, handle: str, pid: str) -> int:
    return int((d.processes(handle) / pid / "pid").read_text().split()[0])


def cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def kill_and_wait(pids) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        assert wait_until(lambda: not process_alive(pid), WAIT), f"idle shim {pid} lives on"


def test_a_run_is_taken_by_an_idle_shim_which_then_names_its_directory(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="pooled")
    idle = pool_full(d)
    # Idle shims belong to no container: not its processes, not in its cgroups.
    assert client.info(handle)["ProcessIDs"] in (None, [])
    for pid in idle:
        assert "pooled" not in cgroup_of(pid)
    p = client.run(handle, {"path": "sh", "args": ["-c", "echo hi; cat >/dev/null"], "id": "taken"},
                   stdin=True)
    try:
        p.expect("hi\n")
        shim = recorded_shim(d, handle, "taken")
        assert shim in idle, f"shim {shim} was not one of the idle {idle}"
        pdir = d.processes(handle) / "taken"
        assert argv_of(shim)[:2] == [b"cloche-shim", str(pdir).encode()]
        assert client.info(handle)["ProcessIDs"] == ["taken"]
        # The pool fills again behind it.
        assert wait_until(lambda: len(idle_shims(d)) == POOL and shim not in idle_shims(d), WAIT)
        p.close_stdin()
        assert p.wait(WAIT) == 0
    finally:
        p.close()
    assert p.stdout == b"hi\n"


def test_a_killed_idle_shim_is_replaced_and_runs_still_work(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="killed")
    run_true(client, handle)
    old = pool_full(d)
    kill_and_wait(old)
    # Replaced without a Run to notice it.
    assert wait_until(lambda: len(idle_shims(d)) == POOL and not idle_shims(d) & old, WAIT)
    pid = run_true(client, handle, id="after-kill")
    assert recorded_shim(d, handle, pid) not in old
    # Killed just before a Run (nothing waits for the kill to be noticed): the
    # Run goes to another shim and succeeds.
    for i in range(3):
        pids = pool_full(d)
        for victim in pids:
            os.kill(victim, signal.SIGKILL)
        pid = run_true(client, handle, id=f"raced-{i}")
        assert recorded_shim(d, handle, pid) not in pids
    pool_full(d)


def test_idle_shims_end_with_the_daemon_and_a_run_after_a_restart_works(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="restarted")
    run_true(client, handle)
    before = pool_full(d)
    assert d.kill() == -signal.SIGKILL
    assert wait_until(lambda: not any(process_alive(p) for p in before), WAIT), \
        f"idle shims outlived the daemon: {idle_shims(d)}"
    d.start()
    client = d.client()
    assert client.info(handle)["ProcessIDs"] in (None, [])
    run_true(client, handle, id="after-restart")
    after = pool_full(d)
    assert not after & before
    assert d.stop() == 0
    assert wait_until(lambda: not idle_shims(d), WAIT), f"left: {idle_shims(d)}"
    d.start()  # for the teardown's destroy


def test_stop_and_destroy_leave_no_shim_and_the_pool_serves_on(containers):
    d = containers.daemon
    client = d.client()
    handles = [containers.create(handle=f"ended-{i}") for i in range(2)]
    procs = []
    for h in handles:
        for i in range(3):  # more than the pool holds
            p = client.run(h, {"path": "sleep", "args": ["100"], "id": f"s{i}"})
            procs.append(p)
    cdirs = [d.processes(h) for h in handles]
    assert all(len(shims_of(c)) == 3 for c in cdirs)
    client.stop(handles[0])
    assert wait_until(lambda: not shims_of(cdirs[0]), WAIT), f"left: {shims_of(cdirs[0])}"
    client.destroy(handles[1])
    assert wait_until(lambda: not shims_of(cdirs[1]), WAIT), f"left: {shims_of(cdirs[1])}"
    for p in procs:
        p.close()
    # The pool is untouched by either, and serves another container.
    idle = pool_full(d)
    other = containers.create(handle="other")
    pid = run_true(client, other)
    assert recorded_shim(d, other, pid) in idle
    client.destroy(handles[0])
    client.destroy(other)
    assert not shims_of(d.run_dir / "processes")


def test_the_spec_goes_in_the_message_or_through_a_file_when_large(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="specs")
    pdir = d.processes(handle)
    for name, size in (("small", 10), ("large", 100 << 10)):  # SHIM_IDLE_SPEC_MAX is 64 KiB
        idle = pool_full(d)
        p = client.run(handle, {"path": "sh", "args": ["-c", 'echo ${#BIG}'], "id": name,
                                "env": ["BIG=" + "x" * size]})
        try:
            assert p.wait(WAIT) == 0
        finally:
            p.close()
        assert p.stdout == f"{size}\n".encode()
        assert recorded_shim(d, handle, name) in idle
        assert (pdir / name / "spec").exists() == (name == "large")


# --------------------------------------------------------------------------
# Each idle shim's process directory, prepared ahead of need


def idle_dirs(d) -> Path:
    return d.run_dir / "idle-shims"


def prepared(d, pid: int) -> Path:
    """The directory idle shim pid prepared, its sockets listening."""
    path = idle_dirs(d) / str(pid)
    assert wait_until(lambda: (path / "ctl").is_socket(), WAIT), f"{path}: {d.log_tail()}"
    return path


def test_a_run_takes_the_directory_its_idle_shim_prepared(containers):
    """The directory (sock and ctl bound) is renamed into place: the process
    directory is that very directory, and the prepared ones are only the idle
    shims' own."""
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="prepared")
    idle = pool_full(d)
    inodes = {prepared(d, pid).stat().st_ino: pid for pid in idle}
    assert sorted(os.listdir(idle_dirs(d))) == sorted(str(pid) for pid in idle)
    p = client.run(handle, {"path": "cat", "id": "moved"}, stdin=True)
    try:
        pdir = d.processes(handle) / "moved"
        shim = recorded_shim(d, handle, "moved")
        assert inodes.get(pdir.stat().st_ino) == shim, (inodes, shim)
        assert (pdir / "sock").is_socket() and (pdir / "ctl").is_socket()
        assert not (idle_dirs(d) / str(shim)).exists()
        p.write_stdin(b"through the prepared socket\n")
        p.expect("through the prepared socket\n")
        p.close_stdin()
        assert p.wait(WAIT) == 0
    finally:
        p.close()
    # The taken shim's place is filled by a new one with its own directory.
    after = pool_full(d)
    assert wait_until(lambda: sorted(os.listdir(idle_dirs(d))) == sorted(map(str, after)), WAIT)


def test_without_its_directory_an_idle_shim_binds_in_the_one_it_is_given(containers):
    """The prepared directory gone (or on another file system), the daemon makes
    the process directory and the idle shim binds its sockets there."""
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="unprepared")
    for pid in pool_full(d):
        path = prepared(d, pid)
        for name in ("sock", "ctl"):
            (path / name).unlink()
        path.rmdir()
    pid = run_true(client, handle, id="fallback")
    assert recorded_shim(d, handle, pid) is not None
    p = client.run(handle, {"path": "sh", "args": ["-c", "echo again"], "id": "fallback-2"})
    try:
        assert p.wait(WAIT) == 0
        assert p.stdout == b"again\n"
    finally:
        p.close()


def test_a_killed_idle_shims_directory_goes_with_it_and_stale_ones_at_start(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="stale")
    idle = pool_full(d)
    for pid in idle:
        prepared(d, pid)
    kill_and_wait(idle)
    assert wait_until(lambda: not any((idle_dirs(d) / str(p)).exists() for p in idle), WAIT)
    after = pool_full(d)
    assert wait_until(lambda: sorted(os.listdir(idle_dirs(d))) == sorted(map(str, after)), WAIT)
    # A daemon killed with its idle shims: what they left is removed at the next start.
    assert d.kill() == -signal.SIGKILL
    kill_and_wait([p for p in after if process_alive(p)])
    stale = idle_dirs(d) / "999999"
    stale.mkdir()
    (stale / "sock").write_text("")
    d.start()
    client = d.client()
    fresh = pool_full(d)
    assert wait_until(lambda: sorted(os.listdir(idle_dirs(d))) == sorted(map(str, fresh)), WAIT)
    run_true(client, handle, id="after-stale")


def status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def test_an_idle_shim_holds_none_of_the_daemons_descriptors(containers):
    """Issue 17: an idle shim spawned while the daemon holds a container's
    long-lived descriptors (a pidfd and an eventfd, above fd_high_base) holds none
    of them, and takes Runs. (That its spawn copies none of them either is
    test-spawn's: the monitor is forked after the exec, from a table the exec
    emptied, so its own table shows nothing of the spawn.)"""
    d = containers.daemon
    client = d.client()
    with open(f"/proc/{d.pid}/limits") as f:
        soft = next(int(line.split()[3]) for line in f if line.startswith("Max open files"))
    if soft < 8192:
        import pytest
        pytest.skip(f"RLIMIT_NOFILE {soft}: the daemon keeps no high descriptor range")
    base = min(soft // 2, 16384)
    handle = containers.create(handle="fdtable")
    run_true(client, handle)
    high = [int(fd) for fd in os.listdir(f"/proc/{d.pid}/fd") if int(fd) >= base]
    # The allowed case: the daemon itself holds descriptors up there, a table that
    # large (a spawn that copied it would give the shim one as large).
    assert high and status_field(d.pid, "FDSize") > base, (high, base)
    old = pool_full(d)
    kill_and_wait(old)  # spawned again now, with the container's descriptors open
    assert wait_until(lambda: len(idle_shims(d)) == POOL and not idle_shims(d) & old, WAIT)
    # Sockets, pipes and files name themselves uniquely (anon inodes do not).
    daemon_fds = {t for t in (os.readlink(f"/proc/{d.pid}/fd/{fd}") for fd in high)
                  if not t.startswith("anon_inode:")}
    for pid in idle_shims(d):
        fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert max(fds) < base, (pid, fds)
        assert not daemon_fds & set(fds.values()), (pid, fds)
    pid = run_true(client, handle, id="small-table")
    assert recorded_shim(d, handle, pid) not in old


def zygotes(d) -> set[int]:
    """Daemon d's zygote(s): `cloche-shim --zygote RUN`."""
    label = str(d.run_dir).encode()
    return {pid for pid, argv in shims().items()
            if len(argv) >= 3 and argv[1] == b"--zygote" and argv[2] == label}


def parent_of(pid: int) -> int:
    return status_field(pid, "PPid")


def test_idle_shims_are_forked_by_one_detached_zygote(containers):
    """Issue 17: the pool's shims come from a zygote that forks them (no exec,
    no detaching fork each), detached from the daemon like every shim; its
    children are sessions of their own, and the same zygote serves refill after
    refill."""
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="zygote")
    idle = pool_full(d)
    (zygote,) = zygotes(d)
    assert parent_of(zygote) != d.pid
    for pid in idle:
        assert parent_of(pid) == zygote
        assert os.getsid(pid) == pid and os.getsid(zygote) == zygote
    for i in range(5):
        run_true(client, handle, id=f"z{i}")
    after = pool_full(d)
    assert after - idle and zygotes(d) == {zygote}  # (the pool is a stack: one may stay)
    assert all(parent_of(pid) == zygote for pid in after)
    # The zygote is no subreaper: a process whose shim died is not adopted by it.
    p = client.run(handle, {"path": "sleep", "args": ["300"], "id": "orphan"})
    try:
        assert wait_until(lambda: (d.processes(handle) / "orphan" / "pid").exists(), WAIT)
        fields = (d.processes(handle) / "orphan" / "pid").read_text().split()
        shim, host_pid = int(fields[0]), int(fields[2])
        assert parent_of(host_pid) == shim
        kill_and_wait([shim])
        assert wait_until(lambda: parent_of(host_pid) != shim, WAIT)
        assert parent_of(host_pid) != zygote
    finally:
        p.close()


def test_a_killed_zygote_is_replaced_and_runs_go_on(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create(handle="zygote-killed")
    pool_full(d)
    (old,) = zygotes(d)
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: not process_alive(old), WAIT)
    for i in range(2 * POOL + 1):  # past the shims it made, into new ones
        run_true(client, handle, id=f"after-{i}")
    assert wait_until(lambda: len(zygotes(d)) == 1, WAIT), d.log_tail()
    (new,) = zygotes(d)
    assert new != old
    # (The pool is a stack: a shim of the old zygote may wait at its bottom.)
    assert wait_until(lambda: len(idle_shims(d)) == POOL
                      and any(parent_of(p) == new for p in idle_shims(d)), WAIT)
    run_true(client, handle, id="from-the-new-zygote")


def test_the_zygote_ends_with_the_daemon(containers):
    d = containers.daemon
    pool_full(d)
    (zygote,) = zygotes(d)
    assert d.stop() == 0
    assert wait_until(lambda: not process_alive(zygote), WAIT), "the zygote outlived its daemon"
    d.start()  # for the teardown
    pool_full(d)
    assert len(zygotes(d)) == 1 and zygote not in zygotes(d)
