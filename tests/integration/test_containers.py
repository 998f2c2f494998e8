"""Issue 3: containers created, inspected, stopped and destroyed for real.

Every test here makes real kernel objects (namespaces, an overlay root,
cgroups under the daemon's own --cgroup-parent) inside the test sandbox, and
checks them from the host side as well as through the API: the cgroup
directories in every hierarchy, the container's init process, its uid map,
the depot directory, the mounts.  Commands run inside a container through
conftest.container_exec, a test-side stand-in for Run (nsenter into the
init's namespaces after joining the container's cgroups), until cloche can
run processes itself.

Limit tests use cloche-payload (tests/payload), which scripts/test.sh copies
into the test rootfs as /usr/bin/cloche-payload.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (wait_until, DEFAULT_ROOTFS, UID_POOL_BASE, UID_RANGE_SIZE, cgroup_children,
                      cgroup_controller_dir, cgroup_core_dir, cgroup_group_dirs, cgroup_pids,
                      container_exec, container_init_pid, container_spawn, kill_exec,
                      process_alive, process_start_time, remove_tree)
from garden_client import GardenError

MIB = 1 << 20
PAYLOAD = "/usr/bin/cloche-payload"
SECOND_NS = 1_000_000_000
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------
# Helpers


def create_error(client, spec: dict) -> GardenError:
    with pytest.raises(GardenError) as info:
        client.create(spec)
    return info.value


def depot_dir(d, handle: str) -> Path:
    return d.depot / "containers" / handle


def depot_entries(d, settle: float = 5.0) -> list[str]:
    """What is in the depot's containers/ directory. A destroyed container's
    directory is renamed to a hidden ".trash-*" name at once and deleted by the
    daemon right after its reply; wait (up to settle seconds) for those to go, so
    that a leftover still fails the test."""
    deadline = time.monotonic() + settle
    while True:
        try:
            entries = sorted(os.listdir(d.depot / "containers"))
        except FileNotFoundError:
            return []
        if not any(e.startswith(".trash-") for e in entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


def mounts_below(path) -> list[str]:
    """Mount points at or below path in this (the daemon's) mount namespace."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def daemon_children(d) -> list[int]:
    """Live child processes of the daemon (any thread's)."""
    kids = set()
    try:
        tids = os.listdir(f"/proc/{d.pid}/task")
    except OSError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{d.pid}/task/{tid}/children") as f:
                kids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return sorted(p for p in kids if process_alive(p))



def assert_gone(pid: int, timeout: float = 2.0) -> None:
    assert wait_until(lambda: not process_alive(pid), timeout), f"process {pid} still alive"


def assert_nothing_left(d, handle: str, init_pid: "int | None" = None) -> None:
    """No trace of container `handle`: not listed, no depot directory, no cgroup
    directory in any hierarchy, no mount of its files, and its init is gone."""
    client = d.client()
    assert handle not in client.list(), "still listed"
    with pytest.raises(GardenError) as info:
        client.info(handle)
    assert info.value.status == 404
    # A destroy the grace timer started runs on while List already hides the
    # container: give it a moment to finish before looking for traces.
    wait_until(lambda: not depot_dir(d, handle).exists()
               and cgroup_group_dirs(d.cgroup_parent, handle) == [], 5, 0.05)
    leftovers = [e for e in depot_entries(d) if handle in e]
    assert not leftovers, f"depot entries left behind: {leftovers}"
    assert not depot_dir(d, handle).exists()
    assert cgroup_group_dirs(d.cgroup_parent, handle) == [], "cgroup directories left behind"
    assert mounts_below(depot_dir(d, handle)) == [], "mounts left behind"
    if init_pid is not None:
        assert_gone(init_pid)
        assert not os.path.exists(f"/proc/{init_pid}/mountinfo") or not process_alive(init_pid)


def wait_for_process(d, handle: str, argv: list[str], proc, timeout: float = 15.0) -> int:
    """Wait until a process running argv is in the container (started by
    container_spawn as proc); return its host pid."""
    want = "\0".join(argv) + "\0"

    def find():
        for pid in cgroup_pids(cgroup_core_dir(d.cgroup_parent, handle) or "/nonexistent"):
            try:
                with open(f"/proc/{pid}/cmdline") as f:
                    if f.read() == want:
                        return pid
            except OSError:
                pass
        return None

    deadline = time.monotonic() + timeout
    while True:
        pid = find()
        if pid is not None:
            return pid
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{argv} ended early ({proc.returncode}): {out!r} {err!r}")
        assert time.monotonic() < deadline, f"{argv} did not start in {handle}"
        time.sleep(0.02)


def status_ids(pid: int, key: str) -> list[int]:
    """The Uid: or Gid: line of /proc/PID/status (real, effective, saved, fs)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {key} line for {pid}")


def id_map(pid: int, kind: str = "uid") -> list[tuple[int, int, int]]:
    with open(f"/proc/{pid}/{kind}_map") as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def exec_ok(d, handle: str, argv: list[str], **kw) -> str:
    rc, out, err = container_exec(d, handle, argv, **kw)
    assert rc == 0, f"{argv} exited {rc}: stdout {out!r} stderr {err!r}"
    return out


@pytest.fixture(scope="module")
def payload():
    """The rootfs must carry cloche-payload (scripts/test.sh installs it)."""
    path = DEFAULT_ROOTFS / PAYLOAD.lstrip("/")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build tests/payload and copy cloche-payload there "
                    "(scripts/test.sh does)")
    return PAYLOAD


@pytest.fixture(scope="module")
def alt_rootfs():
    """A copy of the default rootfs with a marker file, to tell images apart.

    Made beside the default rootfs, on the same file system: unprivileged
    containers see their image through an idmapped mount, which not every
    file system supports (tmpfs before Linux 6.3, virtiofs).
    """
    if not (DEFAULT_ROOTFS / "bin" / "busybox").exists():
        pytest.fail(f"no rootfs at {DEFAULT_ROOTFS}: run rootfs-tools/mkrootfs-busybox.sh")
    top = Path(tempfile.mkdtemp(prefix=".cloche-alt-rootfs-", dir=DEFAULT_ROOTFS.parent))
    os.chmod(top, 0o755)
    dest = top / "rootfs"
    subprocess.run(["cp", "-a", str(DEFAULT_ROOTFS), str(dest)], check=True)
    marker = f"alt-{os.getpid()}-{time.monotonic_ns()}"
    (dest / "etc" / "cloche-marker").write_text(marker + "\n")
    yield dest, marker
    remove_tree(top)


@pytest.fixture
def host_dir():
    """A fresh directory on the host, removed (never through a mount) at the end."""
    path = Path(tempfile.mkdtemp(prefix="cloche-bind-", dir="/tmp"))
    # Readable by anyone: an unprivileged container's root is not host root.
    os.chmod(path, 0o755)
    yield path
    remove_tree(path)


# --------------------------------------------------------------------------
# Create: handles and images


def test_empty_handle_gets_a_uuid_and_duplicates_are_refused(containers):
    d = containers.daemon
    client = d.client()
    generated = containers.create({})
    assert UUID4.match(generated), generated
    assert client.info(generated)["State"] == "active"

    handle = containers.create({"handle": "dup"})
    assert handle == "dup"
    init = container_init_pid(d, "dup")
    err = create_error(client, {"handle": "dup"})
    assert err.status == 409, err
    assert "already in use" in err.message
    # The refused duplicate did not harm the original.
    assert container_init_pid(d, "dup") == init
    assert client.info("dup")["State"] == "active"
    assert sorted(client.list()) == sorted([generated, "dup"])


IMAGE_FORMS = [
    ("image-default", lambda alt: {"image": {"uri": ""}}, False),
    ("image-raw", lambda alt: {"image": {"uri": f"raw://{alt}"}}, True),
    ("image-path", lambda alt: {"image": {"uri": str(alt)}}, True),
    ("rootfs-default", lambda alt: {"rootfs": "", "image": {}}, False),
    ("rootfs-raw", lambda alt: {"rootfs": f"raw://{alt}", "image": {}}, True),
    ("rootfs-path", lambda alt: {"rootfs": str(alt), "image": {}}, True),
]


@pytest.mark.parametrize("name,make_spec,uses_alt", IMAGE_FORMS, ids=[f[0] for f in IMAGE_FORMS])
def test_create_with_each_image_form(containers, alt_rootfs, name, make_spec, uses_alt):
    alt, marker = alt_rootfs
    d = containers.daemon
    handle = containers.create(make_spec(alt), handle=name)
    assert handle == name
    rc, out, err = container_exec(d, handle, ["cat", "/etc/cloche-marker"])
    if uses_alt:
        assert (rc, out) == (0, marker + "\n"), err
    else:
        assert rc != 0, f"the default rootfs has no marker, yet: {out!r}"
        assert exec_ok(d, handle, ["ls", "/bin/busybox"]).strip() == "/bin/busybox"


def test_rootfs_writes_go_to_the_containers_own_layer(containers, alt_rootfs):
    alt, _ = alt_rootfs
    d = containers.daemon
    a = containers.create({"handle": "layer-a", "image": {"uri": f"raw://{alt}"}})
    b = containers.create({"handle": "layer-b", "image": {"uri": f"raw://{alt}"}})
    exec_ok(d, a, ["sh", "-c", "echo from-a > /etc/written && rm /etc/cloche-marker"])
    assert exec_ok(d, a, ["cat", "/etc/written"]) == "from-a\n"
    # The image is the read-only lower: untouched, and the other container
    # sees it as it was.
    assert not (alt / "etc" / "written").exists()
    assert (alt / "etc" / "cloche-marker").exists()
    rc, _, _ = container_exec(d, b, ["cat", "/etc/written"])
    assert rc != 0
    exec_ok(d, b, ["cat", "/etc/cloche-marker"])
    # The change lives in the container's upper layer in the depot.
    found = [os.path.join(dp, f) for dp, _, files in os.walk(depot_dir(d, a) / "rootfs")
             for f in files if f == "written"]
    assert found, f"no upper-layer copy of /etc/written under {depot_dir(d, a) / 'rootfs'}"


REFUSED_IMAGES = [
    ("unknown-scheme-uri", {"image": {"uri": "ftp://example.com/busybox"}}, 400, "raw://"),
    ("unknown-scheme-rootfs", {"rootfs": "ftp://example.com/busybox", "image": {}}, 400,
     "raw://"),
    ("malformed-docker", {"image": {"uri": "docker:///Busy_Box"}}, 400, "invalid repository"),
    ("missing-dir-raw", {"image": {"uri": "raw:///nonexistent/cloche-rootfs"}}, 400, None),
    ("missing-dir-path", {"image": {"uri": "/nonexistent/cloche-rootfs"}}, 400, None),
]


@pytest.mark.parametrize("name,spec,status,mentions", REFUSED_IMAGES,
                         ids=[r[0] for r in REFUSED_IMAGES])
def test_refused_image_leaves_nothing_behind(containers, name, spec, status, mentions):
    d = containers.daemon
    client = d.client()
    err = create_error(client, dict(spec, handle=name))
    assert err.status == status, err
    if mentions:
        assert mentions in err.message, f"the error should name the supported forms: {err}"
    assert_nothing_left(d, name)
    assert depot_entries(d) == []
    assert cgroup_children(d.cgroup_parent) == []
    # The pool's idle shims are started in the background (their first process
    # a child of the daemon for a moment): a leak stays, a start does not.
    assert wait_until(lambda: daemon_children(d) == [], 5), daemon_children(d)
    # The handle was released: the same handle now works.
    assert containers.create({"handle": name}) == name


def set_policy(pid: int, policy: int) -> None:
    """Every thread of pid to policy (threads started later inherit it)."""
    prio = os.sched_get_priority_min(policy) if policy != os.SCHED_OTHER else 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setscheduler(int(tid), policy, os.sched_param(prio))


def test_a_child_that_fails_before_its_go_reports_its_own_error(containers):
    """The init fails before it reads the daemon's go, which stays unread in its
    socket: the kernel then reports a reset ahead of the init's report, and the
    create used to fail with "Lost contact with the container". Provoked here with
    a real-time daemon: an init inheriting SCHED_FIFO may not join a v1 cpu group
    that has no real-time runtime (kernels with RT group scheduling)."""
    d = containers.daemon
    client = d.client()
    set_policy(d.pid, os.SCHED_FIFO)
    try:
        try:
            handle = containers.create({"handle": "rt"})
        except GardenError as e:
            err = e
        else:
            client.destroy(handle)
            pytest.skip("a real-time init joins its groups on this kernel: nothing fails")
    finally:
        set_policy(d.pid, os.SCHED_OTHER)
    assert err.status == 500, err
    assert "Failed to join the container's cgroups" in err.message, err
    assert "Lost contact" not in err.message, err
    assert_nothing_left(d, "rt")
    assert cgroup_children(d.cgroup_parent) == []
    # The allowed case, on the same daemon: back to SCHED_OTHER, it works.
    assert containers.create({"handle": "rt"}) == "rt"


# --------------------------------------------------------------------------
# Inside the container


def test_a_handle_longer_than_a_hostname_works(containers):
    """Handles go to 128 bytes; the kernel's hostname to 64: the first 64 bytes."""
    d = containers.daemon
    short = containers.create({"handle": "h" * 64})
    assert exec_ok(d, short, ["hostname"]).strip() == short
    long = containers.create({"handle": "x" * 100 + "-long"})
    assert exec_ok(d, long, ["hostname"]).strip() == ("x" * 100)[:64]


def test_hostname_is_the_handle_and_the_view_is_private(containers, payload):
    d = containers.daemon
    handle = containers.create({"handle": "inside-view"})
    assert exec_ok(d, handle, ["hostname"]).strip() == handle
    facts = {}
    cgroups = []
    for line in exec_ok(d, handle, [payload, "pidinfo"]).splitlines():
        key, _, value = line.partition(" ")
        if key == "cgroup":
            cgroups.append(value)
        else:
            facts[key] = value
    assert facts["hostname"] == handle
    assert facts["uid"] == "0" and facts["euid"] == "0"
    # Own pid namespace: only init and this process are visible.
    assert int(facts["procs"]) <= 3, facts
    assert exec_ok(d, handle, ["cat", "/proc/1/cmdline"]).split("\0")[0] == "garden-init"
    # Own cgroup namespace: the container's group is the root of its view.
    assert all(c.endswith(":/") for c in cgroups), cgroups
    # /dev works, /sys is read-only, the name service files are there.
    exec_ok(d, handle, ["sh", "-c", "echo x > /dev/null && head -c 4 /dev/zero | wc -c"])
    rc, _, err = container_exec(d, handle, [payload, "write", "/sys/kernel/cloche-test", "x"])
    assert rc == 1 and "Read-only file system" in err, err
    exec_ok(d, handle, ["test", "-f", "/etc/hosts"])
    exec_ok(d, handle, ["test", "-f", "/etc/resolv.conf"])


def test_env_is_accepted_and_properties_are_kept(containers):
    d = containers.daemon
    client = d.client()
    props = {"owner": "env-test", "team": "cloche"}
    handle = containers.create({"handle": "env", "env": ["FOO=bar", "EMPTY="],
                                "properties": props})
    info = client.info(handle)
    assert info["State"] == "active"
    assert props.items() <= (info["Properties"] or {}).items()
    assert not any("FOO=bar" in str(v) for v in (info["Properties"] or {}).values())


# --------------------------------------------------------------------------
# Bind mounts


def test_bind_mount_host_ro_is_read_only_recursively(containers, host_dir, payload):
    d = containers.daemon
    (host_dir / "file").write_text("from the host\n")
    sub = host_dir / "sub"
    sub.mkdir()
    # A mount below the source: RO must apply to it too (recursive bind, RO
    # set recursively).  Mounted in the sandbox's mount namespace only.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "cloche-test", str(sub)], check=True)
    try:
        (sub / "inner").write_text("in the submount\n")
        handle = containers.create({"handle": "bind-ro", "bind_mounts": [
            {"src_path": str(host_dir), "dst_path": "/mnt/ro", "mode": 0, "origin": 0}]})
        assert exec_ok(d, handle, ["cat", "/mnt/ro/file"]) == "from the host\n"
        assert exec_ok(d, handle, ["cat", "/mnt/ro/sub/inner"]) == "in the submount\n"
        for target in ("/mnt/ro/new", "/mnt/ro/file", "/mnt/ro/sub/new"):
            rc, _, err = container_exec(d, handle, [payload, "write", target, "x"])
            assert rc == 1, f"writing {target} succeeded"
            assert "Read-only file system" in err, err
        assert not (host_dir / "new").exists()
        assert not (sub / "new").exists()
        containers.daemon.client().destroy(handle)
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=False)


@pytest.mark.parametrize("privileged", [False, True], ids=["unprivileged", "privileged"])
def test_bind_mount_host_rw_writes_land_on_the_host(containers, host_dir, payload, privileged):
    d = containers.daemon
    os.chmod(host_dir, 0o777)  # container root is an unprivileged host uid
    handle = containers.create({"handle": "bind-rw", "privileged": privileged, "bind_mounts": [
        {"src_path": str(host_dir), "dst_path": "/mnt/rw", "mode": 1, "origin": 0}]})
    exec_ok(d, handle, [payload, "write", "/mnt/rw/out", "hello host"])
    assert (host_dir / "out").read_text() == "hello host"
    # From the host, the writer was the container's root: its range base, or
    # root itself for a privileged container.
    init = container_init_pid(d, handle)
    expected_uid = 0 if privileged else status_ids(init, "Uid")[0]
    assert (host_dir / "out").stat().st_uid == expected_uid
    (host_dir / "back").write_text("from the host")
    assert exec_ok(d, handle, ["cat", "/mnt/rw/back"]) == "from the host"


def test_bind_mount_container_origin(containers, payload):
    d = containers.daemon
    handle = containers.create({"handle": "bind-origin", "bind_mounts": [
        {"src_path": "/etc", "dst_path": "/mnt/etc-ro", "mode": 0, "origin": 1},
        {"src_path": "/home/vcap", "dst_path": "/mnt/vcap-rw", "mode": 1, "origin": 1}]})
    passwd = exec_ok(d, handle, ["cat", "/etc/passwd"])
    assert exec_ok(d, handle, ["cat", "/mnt/etc-ro/passwd"]) == passwd
    rc, _, err = container_exec(d, handle, [payload, "write", "/mnt/etc-ro/new", "x"])
    assert rc == 1 and "Read-only file system" in err, err
    exec_ok(d, handle, [payload, "write", "/mnt/vcap-rw/note", "same dir"])
    assert exec_ok(d, handle, ["cat", "/home/vcap/note"]) == "same dir"


def test_bind_mount_missing_host_source_leaves_nothing_behind(containers, host_dir):
    d = containers.daemon
    client = d.client()
    err = create_error(client, {"handle": "bad-bind", "bind_mounts": [
        {"src_path": str(host_dir), "dst_path": "/mnt/ok", "mode": 0, "origin": 0},
        {"src_path": str(host_dir / "missing"), "dst_path": "/mnt/x", "mode": 1, "origin": 0}]})
    assert err.status == 400, err
    assert str(host_dir / "missing") in err.message
    assert_nothing_left(d, "bad-bind")
    assert depot_entries(d) == []
    assert cgroup_children(d.cgroup_parent) == []
    # The pool's idle shims are started in the background (their first process
    # a child of the daemon for a moment): a leak stays, a start does not.
    assert wait_until(lambda: daemon_children(d) == [], 5), daemon_children(d)
    assert mounts_below(host_dir) == []
    assert containers.create({"handle": "bad-bind"}) == "bad-bind"


# --------------------------------------------------------------------------
# Users: unprivileged ranges, privileged root


def unprivileged_base(pid: int) -> int:
    uid_map = id_map(pid, "uid")
    assert len(uid_map) == 1, uid_map
    inside, base, count = uid_map[0]
    assert (inside, count) == (0, UID_RANGE_SIZE), uid_map
    assert base >= UID_POOL_BASE and (base - UID_POOL_BASE) % UID_RANGE_SIZE == 0, base
    assert id_map(pid, "gid") == [(0, base, UID_RANGE_SIZE)]
    return base


def test_unprivileged_root_is_the_range_base(containers):
    d = containers.daemon
    handle = containers.create({"handle": "unpriv"})
    assert exec_ok(d, handle, ["id", "-u"]).strip() == "0"
    assert exec_ok(d, handle, ["id", "-g"]).strip() == "0"
    init = container_init_pid(d, handle)
    base = unprivileged_base(init)
    assert status_ids(init, "Uid") == [base] * 4
    assert status_ids(init, "Gid") == [base] * 4
    # The image shows as owned by container root (idmapped lower).
    assert exec_ok(d, handle, ["stat", "-c", "%u:%g", "/bin/busybox"]).strip() == "0:0"


def test_two_unprivileged_containers_get_disjoint_ranges(containers):
    d = containers.daemon
    a = containers.create({"handle": "range-a"})
    b = containers.create({"handle": "range-b"})
    base_a = unprivileged_base(container_init_pid(d, a))
    base_b = unprivileged_base(container_init_pid(d, b))
    assert abs(base_a - base_b) >= UID_RANGE_SIZE, (base_a, base_b)


def test_privileged_root_is_host_root(containers):
    d = containers.daemon
    handle = containers.create({"handle": "priv", "privileged": True})
    assert exec_ok(d, handle, ["id", "-u"]).strip() == "0"
    init = container_init_pid(d, handle)
    assert status_ids(init, "Uid") == [0, 0, 0, 0]
    # No user namespace of its own: the same id map as the test's.
    assert id_map(init, "uid") == id_map(os.getpid(), "uid")
    assert os.readlink(f"/proc/{init}/ns/user") == os.readlink("/proc/self/ns/user")
    # ... but its own other namespaces.
    for ns in ("mnt", "pid", "uts", "ipc", "net", "cgroup"):
        assert os.readlink(f"/proc/{init}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns


def test_unprivileged_container_has_every_namespace(containers):
    d = containers.daemon
    init = container_init_pid(d, containers.create({"handle": "ns-all"}))
    for ns in ("user", "mnt", "pid", "uts", "ipc", "net", "cgroup"):
        assert os.readlink(f"/proc/{init}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns


# --------------------------------------------------------------------------
# Limits


def read_first(paths: list[str]) -> "str | None":
    for p in paths:
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError:
            continue
    return None


def test_memory_limit_is_enforced(containers, payload):
    d = containers.daemon
    client = d.client()
    limit = 64 * MIB
    handle = containers.create({"handle": "mem", "limits": {
        "memory_limits": {"limit_in_bytes": limit}}})
    assert client.current_memory_limits(handle) == {"limit_in_bytes": limit}
    mem = cgroup_controller_dir(d.cgroup_parent, handle, "memory")
    assert mem, "no memory cgroup"
    assert read_first([f"{mem}/memory.limit_in_bytes", f"{mem}/memory.max"]) == str(limit)

    rc, _, err = container_exec(d, handle, [payload, "memhog", str(limit // 2)])
    assert rc == 0, f"half the limit should fit: {rc} {err[-300:]!r}"
    rc, _, err = container_exec(d, handle, [payload, "memhog", str(3 * limit)])
    assert rc == 128 + signal.SIGKILL, f"memhog of 3x the limit: exit {rc}, {err[-300:]!r}"
    assert "memhog: done" not in err
    # The container itself survives its OOM.
    assert process_alive(container_init_pid(d, handle))
    assert client.info(handle)["State"] == "active"


def test_pids_limit_is_enforced(containers, payload):
    d = containers.daemon
    handle = containers.create({"handle": "pids", "limits": {"pid_limits": {"max": 20}}})
    pids = cgroup_controller_dir(d.cgroup_parent, handle, "pids")
    assert pids, "no pids cgroup"
    assert read_first([f"{pids}/pids.max"]) == "20"
    out = exec_ok(d, handle, [payload, "forkbomb", "5"])
    assert "forked 5 of 5" in out, out
    out = exec_ok(d, handle, [payload, "forkbomb", "100"])
    m = re.search(r"forked (\d+) of 100", out)
    assert m, out
    assert int(m.group(1)) < 20, out
    assert "EAGAIN" in out, out


def test_limits_are_reported_as_given(containers):
    client = containers.daemon.client()
    h1 = containers.create({"handle": "lim-given", "limits": {
        "memory_limits": {"limit_in_bytes": 128 * MIB},
        "cpu_limits": {"weight": 512, "limit_in_shares": 256}}})
    assert client.current_memory_limits(h1) == {"limit_in_bytes": 128 * MIB}
    assert client.current_cpu_limits(h1) == {"limit_in_shares": 256, "weight": 512}
    h2 = containers.create({"handle": "lim-shares", "limits": {
        "cpu_limits": {"limit_in_shares": 300}}})
    assert client.current_cpu_limits(h2) == {"limit_in_shares": 300}
    h3 = containers.create({"handle": "lim-none"})
    assert client.current_memory_limits(h3) == {}
    assert client.current_cpu_limits(h3) == {}


INVALID_LIMITS = [
    ("disk-inodes-alone", {"disk_limits": {"inode_soft": 1000}}),
    ("disk-too-small", {"disk_limits": {"byte_hard": 4096}}),
    ("bandwidth-no-burst", {"bandwidth_limits": {"rate": 1 << 20}}),
    ("memory-too-small", {"memory_limits": {"limit_in_bytes": 1024}}),
    ("pids-absurd", {"pid_limits": {"max": 1 << 40}}),
    ("cpu-cap-absurd", {"cpu_limits": {"cloche_millicpus": 1}}),
]


@pytest.mark.parametrize("name,limits", INVALID_LIMITS, ids=[x[0] for x in INVALID_LIMITS])
def test_invalid_limits_are_refused_and_leave_nothing(containers, name, limits):
    d = containers.daemon
    err = create_error(d.client(), {"handle": name, "limits": limits})
    assert err.status == 400, err
    assert_nothing_left(d, name)
    assert cgroup_children(d.cgroup_parent) == []
    assert depot_entries(d) == []


# --------------------------------------------------------------------------
# Info, Stop, Destroy


def test_info_and_bulk_info(containers):
    d = containers.daemon
    client = d.client()
    a = containers.create({"handle": "info-a", "properties": {"k": "a"}})
    b = containers.create({"handle": "info-b", "properties": {"k": "b", "x": "y"}})
    info = client.info(a)
    assert info["State"] == "active"
    assert os.path.realpath(info["ContainerPath"]) == os.path.realpath(depot_dir(d, a))
    assert info["Properties"]["k"] == "a"
    bulk = client.bulk_info([a, b, "no-such-handle"])
    assert set(bulk) == {a, b, "no-such-handle"}
    assert bulk[a]["Err"] is None and bulk[a]["Info"]["State"] == "active"
    assert bulk[b]["Err"] is None and bulk[b]["Info"]["Properties"]["x"] == "y"
    assert bulk["no-such-handle"]["Err"], bulk["no-such-handle"]
    assert client.list({"k": "b"}) == [b]


def test_stop_terminates_processes_and_info_says_stopped(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create({"handle": "stop-term"})
    init = container_init_pid(d, handle)
    start = process_start_time(init)
    proc = container_spawn(d, handle, ["sleep", "1000"])
    try:
        wait_for_process(d, handle, ["sleep", "1000"], proc)
        started = time.monotonic()
        client.stop(handle, kill=False)
        assert proc.wait(timeout=15) != 0
        assert time.monotonic() - started < 9, "sleep ignores nothing: TERM should do"
    finally:
        if proc.poll() is None:
            kill_exec(proc)
    assert client.info(handle)["State"] == "stopped"
    # Init stays: the container is stopped, not destroyed.
    assert process_alive(init) and process_start_time(init) == start
    assert handle in client.list()


def test_stop_with_kill_is_immediate(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create({"handle": "stop-kill"})
    init = container_init_pid(d, handle)
    proc = container_spawn(d, handle, ["sh", "-c", "trap '' TERM; sleep 1000"])
    try:
        wait_for_process(d, handle, ["sleep", "1000"], proc)
        started = time.monotonic()
        client.stop(handle, kill=True)
        proc.wait(timeout=10)
        assert time.monotonic() - started < 3, "kill: true must not wait for TERM"
    finally:
        if proc.poll() is None:
            kill_exec(proc)
    assert client.info(handle)["State"] == "stopped"
    assert process_alive(init)


def test_destroy_unknown_handle_is_404(containers):
    client = containers.daemon.client()
    with pytest.raises(GardenError) as info:
        client.destroy("no-such-container")
    err = info.value
    assert err.status == 404
    assert err.type == "ContainerNotFoundError"
    assert err.message == "unknown handle: no-such-container"
    assert err.handle == "no-such-container"


def test_destroy_leaves_nothing_behind(containers, host_dir):
    d = containers.daemon
    client = d.client()
    os.chmod(host_dir, 0o777)
    handle = containers.create({"handle": "doomed", "bind_mounts": [
        {"src_path": str(host_dir), "dst_path": "/mnt/data", "mode": 1, "origin": 0}]})
    other = containers.create({"handle": "bystander"})
    init = container_init_pid(d, handle)
    other_init = container_init_pid(d, other)
    # What there is to remove: a process, cgroups, a depot directory, mounts.
    proc = container_spawn(d, handle, ["sleep", "1000"])
    try:
        wait_for_process(d, handle, ["sleep", "1000"], proc)
        assert cgroup_group_dirs(d.cgroup_parent, handle)
        assert depot_dir(d, handle).is_dir()
        with open(f"/proc/{init}/mountinfo") as f:
            assert " /mnt/data " in f.read()
        client.destroy(handle)
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            kill_exec(proc)
    assert_nothing_left(d, handle, init_pid=init)
    assert not os.path.exists(f"/proc/{init}/mountinfo")
    assert mounts_below(host_dir) == []
    assert host_dir.is_dir()
    # Destroy again: unknown now.
    with pytest.raises(GardenError) as info:
        client.destroy(handle)
    assert info.value.status == 404
    assert info.value.message == f"unknown handle: {handle}"
    # The other container is untouched.
    assert process_alive(other_init)
    assert client.info(other)["State"] == "active"


def test_create_destroy_twenty_in_a_row(containers):
    d = containers.daemon
    client = d.client()
    inits = []
    for i in range(20):
        handle = client.create({"handle": f"cycle-{i}"})
        inits.append(container_init_pid(d, handle))
        client.destroy(handle)
    assert client.list() == []
    assert cgroup_children(d.cgroup_parent) == []
    assert depot_entries(d) == []
    assert mounts_below(d.depot) == []
    for pid in inits:
        assert_gone(pid)


# --------------------------------------------------------------------------
# Daemon restarts


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_daemon_restart_keeps_containers(containers, how):
    d = containers.daemon
    client = d.client()
    specs = {"keep-a": {"properties": {"role": "a"}},
             "keep-b": {"properties": {"role": "b"}, "privileged": True,
                        "limits": {"memory_limits": {"limit_in_bytes": 96 * MIB}}}}
    inits = {}
    for handle, spec in specs.items():
        containers.create(dict(spec, handle=handle))
        pid = container_init_pid(d, handle)
        inits[handle] = (pid, process_start_time(pid))
    before = {h: client.info(h) for h in specs}

    if how == "sigterm":
        d.restart()
    else:
        assert d.kill() == -signal.SIGKILL
        d.start()

    client = d.client()
    assert sorted(client.list()) == sorted(specs)
    for handle, spec in specs.items():
        pid, start = inits[handle]
        assert process_alive(pid) and process_start_time(pid) == start, "init was replaced"
        assert container_init_pid(d, handle) == pid
        info = client.info(handle)
        assert info["State"] == "active"
        assert info["Properties"] == before[handle]["Properties"]
        assert info["ContainerPath"] == before[handle]["ContainerPath"]
        assert exec_ok(d, handle, ["hostname"]).strip() == handle
    assert client.current_memory_limits("keep-b") == {"limit_in_bytes": 96 * MIB}
    assert client.list({"role": "a"}) == ["keep-a"]
    # And the restarted daemon can still destroy them cleanly.
    for handle in specs:
        client.destroy(handle)
        assert_nothing_left(d, handle, init_pid=inits[handle][0])


def test_restart_cleans_up_containers_whose_processes_vanished(containers):
    """A container whose init died while the daemon was down (as after a reboot)
    is removed at start-up, with its cgroups and depot directory, not restored
    half alive; its neighbour is restored."""
    d = containers.daemon
    containers.create({"handle": "doomed"})
    containers.create({"handle": "fine"})
    doomed = container_init_pid(d, "doomed")
    fine = container_init_pid(d, "fine")
    assert d.kill() == -signal.SIGKILL
    os.kill(doomed, signal.SIGKILL)  # a process these tests started, by pid
    wait_until(lambda: not process_alive(doomed), 5)
    d.start()
    client = d.client()
    assert client.list() == ["fine"]
    assert container_init_pid(d, "fine") == fine
    assert_nothing_left(d, "doomed", init_pid=doomed)
    client.destroy("fine")


def test_restart_serves_while_restoring(containers):
    """Issue 17: a restarted daemon answers at once while a pool of threads
    re-attaches the depot's containers (each held back 1.5 s here by a test hook);
    a request for a container not restored yet waits for it, one whose processes
    are gone is a 404 and is not listed, a create meanwhile gets an address and a
    host port of its own (those of the restoring ones were reserved before the
    first request), and a Run works afterwards."""
    d = containers.daemon
    client = d.client()
    containers.create({"handle": "keep"})
    port, _ = client.net_in("keep", 0, 8080)
    keep_ip = client.info("keep")["ContainerIP"]
    containers.create({"handle": "gone"})
    keep_init = container_init_pid(d, "keep")
    gone_init = container_init_pid(d, "gone")
    assert d.kill() == -signal.SIGKILL
    os.kill(gone_init, signal.SIGKILL)  # a process this test started, by pid
    assert wait_until(lambda: not process_alive(gone_init), 5)

    d.env["CLOCHE_TEST_DELAY"] = "restore.container:1500"
    d.start()
    client = d.client()
    # Serving (the ping answered) while neither container is restored yet.
    assert "Restored 2 container(s)" not in d.log_text()
    other = containers.create({"handle": "other"})
    other_port, _ = client.net_in(other, 0, 8080)
    assert "Restored 2 container(s)" not in d.log_text(), "the create was not during the restore"
    info = client.info("keep")  # waits for its restore
    assert info["State"] == "active" and info["ContainerIP"] == keep_ip
    assert client.info(other)["ContainerIP"] != keep_ip and other_port != port
    with pytest.raises(GardenError) as e:
        client.info("gone")
    assert e.value.status == 404
    assert client.list() == ["keep", "other"]
    # The pool's summary comes once its threads are joined, just after.
    assert wait_until(lambda: "Restored 2 container(s)" in d.log_text(), 10)
    assert container_init_pid(d, "keep") == keep_init
    assert exec_ok(d, "keep", ["hostname"]).strip() == "keep"
    p = client.run("keep", {"path": "/bin/true"})
    assert p.wait() == 0
    assert_nothing_left(d, "gone", init_pid=gone_init)


# --------------------------------------------------------------------------
# Grace time


def test_grace_time_expiry_destroys(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create({"handle": "graceful", "grace_time": SECOND_NS})
    init = container_init_pid(d, handle)
    created = time.monotonic()
    assert handle in client.list()  # List does not touch the timer
    assert wait_until(lambda: handle not in client.list(), 6, 0.1), "never expired"
    elapsed = time.monotonic() - created
    assert elapsed > 0.7, f"expired after {elapsed:.2f} s, before its grace time"
    assert_nothing_left(d, handle, init_pid=init)


def test_grace_time_is_delayed_by_requests(containers):
    d = containers.daemon
    client = d.client()
    handle = containers.create({"handle": "busy", "grace_time": SECOND_NS})
    other = containers.create({"handle": "idle", "grace_time": SECOND_NS})
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert client.info(handle)["State"] == "active"
        time.sleep(0.2)
    # Two seconds on, twice its grace time: still here.  Left alone now, it
    # expires like the idle one, which nobody touched.
    assert handle in client.list()
    assert wait_until(lambda: handle not in client.list(), 6, 0.1), "never expired"
    assert other not in client.list()
    assert_nothing_left(d, handle)
    assert_nothing_left(d, other)
