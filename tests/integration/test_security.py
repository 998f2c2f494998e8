"""Confinement of containers (issue 16, doc/security.md): capabilities, the
seccomp filter, masked and read-only paths, the device allow-list, the
read-only cgroup view and --no-new-privileges.

What is tried inside is cloche-payload's `probe` (tests/payload/probe.c): it
reports each attempt, and these tests decide what is expected. Each refusal is
checked next to an allowed case, in the same test.
"""
import io
import os
import re
import tarfile
import threading

import pytest

from conftest import DEFAULT_ROOTFS, cgroup_controller_dir, cgroup_core_dir, wait_until

PAYLOAD = "/usr/bin/cloche-payload"
MIB = 1 << 20

# guardian's 14 (capability numbers).
GUARDIAN_CAPS = {0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31}
GUARDIAN_MASK = sum(1 << c for c in GUARDIAN_CAPS)
PRIVILEGED_MASK = (1 << 38) - 1

# What an unprivileged container must be refused, by probe line name.
REFUSED = [
    "unshare_user", "unshare_mount", "unshare_net", "unshare_pid", "clone_newuser",
    "mount_tmpfs", "fsopen", "open_tree", "move_mount", "fsmount", "pivot_root",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "open_by_handle_at", "ptrace_init", "process_vm_readv", "syslog",
    "acct", "clock_settime", "settimeofday", "swapoff", "kexec_load", "init_module",
    "personality_bad",
]
REFUSED_I386 = [
    "i386_mount", "i386_unshare", "i386_clone_newuser", "i386_keyctl", "i386_bpf",
    "i386_perf_event_open", "i386_userfaultfd", "i386_io_uring_setup", "i386_syslog",
    "i386_acct", "i386_swapoff", "i386_settimeofday", "i386_fsopen",
]
MASKED = ["/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/sched_debug",
          "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/proc/acpi",
          "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/asound"]


@pytest.fixture(scope="module")
def payload():
    path = DEFAULT_ROOTFS / PAYLOAD.lstrip("/")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing (scripts/test.sh installs it)")
    return PAYLOAD


def run(client, handle: str, path: str, args: list[str], user: "str | None" = None,
        timeout: float = 60, image: "str | None" = None) -> tuple[int, str]:
    spec = {"path": path, "args": args}
    if user is not None:
        spec["user"] = user
    if image is not None:
        spec["image"] = {"uri": image}
    p = client.run(handle, spec)
    status = p.wait(timeout)
    out = (p.stdout or b"").decode(errors="replace") + (p.stderr or b"").decode(errors="replace")
    p.close()
    return status, out


def sh(client, handle: str, script: str, user: "str | None" = None) -> tuple[int, str]:
    return run(client, handle, "/bin/sh", ["-c", script], user)


def probe(client, handle: str, user: "str | None" = None,
          image: "str | None" = None) -> dict[str, str]:
    status, out = run(client, handle, PAYLOAD, ["probe"], user, image=image)
    assert status == 0, out
    print(out)
    facts = {}
    for line in out.splitlines():
        m = re.match(r"(masked \S+|capraise \d+|write \S+|\S+) (.*)$", line)
        if m:
            facts[m.group(1)] = m.group(2)
    return facts


def caps(facts: dict[str, str], name: str) -> int:
    return int(facts[name], 16)


# --------------------------------------------------------------------------
# Unprivileged containers


def test_unprivileged_root_is_refused_everything_outside_the_profile(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    f = probe(client, h)
    assert caps(f, "capbnd") == GUARDIAN_MASK, f
    assert caps(f, "capeff") == GUARDIAN_MASK and caps(f, "capprm") == GUARDIAN_MASK, f
    assert caps(f, "capinh") == GUARDIAN_MASK and caps(f, "capamb") == 0, f
    assert f["seccomp"] == "2", f
    assert f["nonewprivs"] == "0", f
    raised = {k: v for k, v in f.items() if k.startswith("capraise ")}
    assert len(raised) >= 24, f  # every capability the kernel knows outside the 14
    assert all(v.startswith("refused") for v in raised.values()), raised
    for name in REFUSED:
        assert f[name] == "refused EPERM", (name, f[name])
    assert f["clone3"] == "refused ENOSYS", f  # libc falls back to clone
    # The allowed cases, in the same container.
    assert f["clone_plain"] == "allowed", f
    assert f["unshare_files"] == "allowed", f
    assert f["personality_query"] == "allowed", f
    if f.get("i386") != "unavailable":
        assert f["i386_getpid"] == "allowed", f
        for name in REFUSED_I386:
            assert f[name] == "refused EPERM", (name, f[name])


def test_a_pea_is_confined_like_any_process(containers, payload):
    """A pea (a process with an image of its own) gets the same capabilities,
    seccomp filter and masked paths as an ordinary process of its container."""
    client = containers.daemon.client()
    h = containers.create()
    f = probe(client, h, image=f"raw://{DEFAULT_ROOTFS}")
    assert caps(f, "capbnd") == GUARDIAN_MASK and caps(f, "capeff") == GUARDIAN_MASK, f
    assert f["seccomp"] == "2", f
    for name in REFUSED:
        assert f[name] == "refused EPERM", (name, f[name])
    for path in MASKED:
        assert f[f"masked {path}"] in ("empty", "missing"), (path, f[f"masked {path}"])
    # The allowed cases, in the same pea.
    assert f["clone_plain"] == "allowed", f
    assert f["unshare_files"] == "allowed", f


def test_unprivileged_masked_and_read_only_paths(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    f = probe(client, h)
    for path in MASKED:
        assert f[f"masked {path}"] in ("empty", "missing"), (path, f[f"masked {path}"])
    # Read-only mounts over what may stay visible.
    status, out = run(client, h, PAYLOAD, ["read", "/proc/self/mountinfo"])
    assert status == 0, out
    options, devices = {}, {}
    for line in out.splitlines():
        fields = line.split()
        options[fields[4]] = fields[5].split(",")
        devices[fields[4]] = fields[2]
    # The masked directories: read-only, and one file system bound on all of them.
    masked_dirs = [p for p in ("/proc/acpi", "/proc/scsi", "/sys/firmware",
                               "/sys/devices/virtual/powercap", "/proc/asound") if p in options]
    for path in masked_dirs:
        assert "ro" in options[path], (path, options[path])
    assert len({devices[p] for p in masked_dirs}) <= 1, {p: devices[p] for p in masked_dirs}
    for path in ("/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs", "/proc/sysrq-trigger"):
        if path in options:
            assert "ro" in options[path], (path, options[path])
    assert "ro" in options["/proc/sys"], options.get("/proc/sys")
    assert "rw" in options["/proc"], options["/proc"]  # the rest of /proc is as it was
    # Unmasked neighbours stay readable.
    status, out = run(client, h, PAYLOAD, ["read", "/proc/uptime"])
    assert status == 0 and out.strip(), out
    status, out = sh(client, h, "ls /sys/devices/virtual | head -3")
    assert status == 0 and out.strip(), out


def mounts(client, handle: str) -> dict[str, dict]:
    """The container's mount table: mount point -> device, root, options, type."""
    status, out = run(client, handle, PAYLOAD, ["read", "/proc/self/mountinfo"])
    assert status == 0, out
    table = {}
    for line in out.splitlines():
        f = line.split()
        sep = f.index("-")
        table[f[4]] = {"dev": f[2], "root": f[3], "options": f[5].split(","), "type": f[sep + 1]}
    return table


def test_dev_shm_cgroup_view_and_masks_are_one_tmpfs_of_the_containers_own(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    other = containers.create()
    m = mounts(client, h)
    # The container's own tmpfs mounts (not a bind of a host file that happens to be
    # on tmpfs, such as /etc/hosts when the depot is on one).
    tmpfs = {p: e for p, e in m.items() if e["type"] == "tmpfs" and
             e["root"] in ("/", "/dev", "/shm", "/cgroup", "/empty")}
    # One tmpfs superblock, each place a directory of it (the fewer superblocks a
    # container has, the less every memory cgroup's removal on the host costs).
    assert len({e["dev"] for e in tmpfs.values()}) == 1, tmpfs
    assert m["/dev"]["root"] == "/dev" and m["/dev/shm"]["root"] == "/shm", m
    assert m["/proc/acpi"]["root"] == "/empty" if "/proc/acpi" in m else True
    if "/sys/fs/cgroup" in tmpfs:  # not on pure v2, where the group itself is the view
        assert tmpfs["/sys/fs/cgroup"]["root"] == "/cgroup", tmpfs
        assert "ro" in tmpfs["/sys/fs/cgroup"]["options"], tmpfs
    for path, e in tmpfs.items():
        if e["root"] == "/empty":
            assert "ro" in e["options"], (path, e)
    for opt in ("nosuid", "nodev", "noexec", "rw"):
        assert opt in m["/dev/shm"]["options"], m["/dev/shm"]
    assert "nosuid" in m["/dev"]["options"] and "noexec" not in m["/dev"]["options"], m["/dev"]
    # Another container's tmpfs is another superblock.
    assert mounts(client, other)["/dev"]["dev"] != m["/dev"]["dev"]
    # /dev/shm is open to every user, /dev to root; neither sees the other's
    # files, and ".." of /dev/shm is /dev, not the tmpfs's own root.
    status, out = sh(client, h, "echo x > /dev/shm/s && echo y > /dev/d && ls -a /dev/shm && "
                     "ls /dev/shm/.. && ls /dev/shm/../.. | grep -c .")
    assert status == 0, out
    assert "s" in out.split() and "d" in out.split() and "null" in out.split(), out
    assert "empty" not in out.split() and "cgroup" not in out.split(), out
    status, out = sh(client, h, "echo z > /dev/shm/u && echo no > /dev/u2", user="1000:1000")
    assert status != 0 and "Permission denied" in out, out
    status, out = sh(client, h, "ls /dev/shm; ls /dev | grep -c '^s$' || true")
    assert status == 0 and "u" in out.split() and out.split()[-1] == "0", out
    # The masks stay empty and read-only, even for the container's root.
    status, out = sh(client, h, "ls -A /proc/acpi | grep -c .; touch /proc/acpi/x")
    assert status != 0 and out.split()[0] == "0" and "Read-only" in out, out


def test_non_root_user_has_no_capabilities(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    f = probe(client, h, user="1000:1000")
    assert caps(f, "capbnd") == GUARDIAN_MASK, f
    assert caps(f, "capeff") == 0 and caps(f, "capprm") == 0 and caps(f, "capamb") == 0, f
    assert f["seccomp"] == "2", f


def test_legitimate_work_still_runs(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    # A shell with pipes, subshells, forks and execs, and a compiler-like
    # workload: many processes writing, renaming and mapping files.
    status, out = sh(client, h, "mkdir -p /tmp/w && cd /tmp/w && "
                     "for i in 1 2 3 4 5 6 7 8; do (echo int f$i; seq 1 200) > f$i.c & done; wait; "
                     "cat f*.c | sort | uniq -c | wc -l > n.txt && mv n.txt out && cat out")
    assert status == 0 and out.strip().isdigit(), out
    # chown (CAP_CHOWN), binding port 80 (CAP_NET_BIND_SERVICE), and a raw
    # socket for ping (CAP_NET_RAW).
    status, out = sh(client, h, "touch /tmp/c && chown 1000:1000 /tmp/c && stat -c %u:%g /tmp/c")
    assert status == 0 and out.strip() == "1000:1000", out
    status, out = sh(client, h, f"{PAYLOAD} serve tcp 80 & sleep 0.5; "
                     f"{PAYLOAD} connect tcp 127.0.0.1 80; kill $!")
    assert status == 0 and ":ping" in out, out
    status, out = sh(client, h, "ping -c 1 -W 2 127.0.0.1")
    assert status == 0 and "1 packets received" in out, out
    # An ordinary user cannot chown what it does not own.
    status, out = sh(client, h, "touch /tmp/d && chmod 666 /tmp/d && su -s /bin/sh nobody -c "
                     "'chown nobody /tmp/d' || echo refused")
    assert "refused" in out or status != 0, out


def helper_status(daemon_pid: int, comm: str) -> "dict[str, str] | None":
    """/proc/PID/status of a child of the daemon named comm, or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines()
                              if ":\t" in line)
        except OSError:
            continue
        if int(status.get("PPid", "0")) == daemon_pid:
            return {k: v.strip() for k, v in status.items()}
    return None


def test_stream_in_helper_is_confined_and_works(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    data = os.urandom(256 * 1024)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("x/blob")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    gate = threading.Event()
    result = {}

    def pieces():
        yield body[:32768]
        gate.wait(30)  # cloche-tar is running, half fed, while the test looks at it
        yield body[32768:]

    def send():
        try:
            result["reply"] = client.stream_in(h, "/tmp", pieces(), chunked=True)
        except Exception as e:  # reported below
            result["error"] = e

    sender = threading.Thread(target=send)
    sender.start()
    try:
        # Once it has entered the container (it reads its input only then), the
        # filter is in place; a helper that never installs one fails here.
        def confined():
            st = helper_status(containers.daemon.pid, "cloche-tar")
            return st if st and st.get("Seccomp") == "2" else None
        wait_until(confined, 20)
        status = helper_status(containers.daemon.pid, "cloche-tar")
    finally:
        gate.set()
        sender.join(30)
    assert status is not None
    assert status["Seccomp"] == "2", status
    assert int(status["CapBnd"], 16) == GUARDIAN_MASK, status
    assert "error" not in result, result
    # It did its work under the filter.
    status_code, out = sh(client, h, "md5sum /tmp/x/blob")
    import hashlib
    assert status_code == 0 and hashlib.md5(data).hexdigest() in out, out


# --------------------------------------------------------------------------
# Privileged containers


def test_privileged_container_keeps_what_guardian_gives_it(containers, payload):
    client = containers.daemon.client()
    h = containers.create(privileged=True)
    f = probe(client, h)
    with open("/proc/self/status") as s:
        held = int(re.search(r"CapBnd:\s*(\S+)", s.read()).group(1), 16)
    assert caps(f, "capbnd") == PRIVILEGED_MASK & held, f
    assert caps(f, "capeff") == PRIVILEGED_MASK & held, f
    assert f["seccomp"] == "0", f
    assert f["unshare_user"] == "allowed" and f["unshare_net"] == "allowed", f
    assert f["mount_tmpfs"] == "allowed", f
    assert f["clone3"] == "allowed" and f["bpf"] == "allowed", f
    assert f["settimeofday"] == "refused EINVAL", f  # allowed, with arguments it refuses
    # Masked all the same.
    for path in MASKED:
        assert f[f"masked {path}"] in ("empty", "missing"), (path, f[f"masked {path}"])


# --------------------------------------------------------------------------
# Devices


@pytest.fixture
def device_dir(tmp_path):
    """Host device nodes for a bind mount: one the list allows (1:9, urandom)
    and two it does not: 1:11 (kmsg, which opens write-only without any
    capability) and 240:0 (no driver: ENXIO where the list lets it through)."""
    d = tmp_path / "devices"
    d.mkdir()
    for name, major, minor in (("ok", 1, 9), ("kmsg", 1, 11), ("nodriver", 240, 0)):
        os.mknod(d / name, 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(d / name, 0o666)
    return d


@pytest.mark.parametrize("privileged", [False, True], ids=["unprivileged", "privileged"])
def test_devices_outside_the_list_cannot_be_opened(containers, payload, device_dir, privileged):
    client = containers.daemon.client()
    h = containers.create({"privileged": privileged, "bind_mounts": [
        {"src_path": str(device_dir), "dst_path": "/mnt/dev", "mode": 0, "origin": 0}]})
    status, out = sh(client, h, "head -c 16 /mnt/dev/ok | wc -c")
    assert status == 0 and out.strip() == "16", out
    status, out = sh(client, h, "echo x > /mnt/dev/kmsg && echo opened")
    assert status != 0 and "opened" not in out and "not permitted" in out, out
    status, out = sh(client, h, "cat /mnt/dev/nodriver && echo opened")
    assert status != 0 and "not permitted" in out, out
    # What the list allows in /dev works; /dev/net/tun is a node of the
    # container's own, which opens where the host has the driver.
    status, out = sh(client, h, "head -c 4 /dev/zero | wc -c && echo > /dev/null && "
                     "test -c /dev/net/tun && echo tun")
    assert status == 0 and "4" in out and "tun" in out, out
    if os.path.exists("/dev/net/tun"):
        status, out = sh(client, h, "exec 3<>/dev/net/tun && echo opened")
        assert status == 0 and "opened" in out, out
    # The node is shared by every container, bound read-only: none changes it.
    status, out = sh(client, h, "chmod 600 /dev/net/tun && echo changed")
    assert status != 0 and "changed" not in out, out


def test_privileged_container_may_open_fuse(containers, payload, device_dir):
    os.mknod(device_dir / "fuse", 0o666 | 0o020000, os.makedev(10, 229))
    os.chmod(device_dir / "fuse", 0o666)
    client = containers.daemon.client()
    h = containers.create({"bind_mounts": [
        {"src_path": str(device_dir), "dst_path": "/mnt/dev", "mode": 0, "origin": 0}]})
    p = containers.create({"privileged": True, "bind_mounts": [
        {"src_path": str(device_dir), "dst_path": "/mnt/dev", "mode": 0, "origin": 0}]})
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no fuse driver on this host")
    status, out = sh(client, p, "exec 3<>/mnt/dev/fuse && echo opened")
    assert status == 0 and "opened" in out, out
    status, out = sh(client, h, "exec 3<>/mnt/dev/fuse && echo opened")
    assert "opened" not in out and "not permitted" in out, out


# --------------------------------------------------------------------------
# The cgroup view


def test_cgroup_view_shows_own_limits_only_and_is_read_only(containers, payload):
    client = containers.daemon.client()
    h = containers.create({"limits": {"memory_limits": {"limit_in_bytes": 96 * MIB}}})
    other = containers.create()
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    limit_file = "/sys/fs/cgroup/memory.max" if v2 else \
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    status, out = run(client, h, PAYLOAD, ["read", limit_file])
    assert status == 0 and out.strip() == str(96 * MIB), out
    # Nothing above the container's own group: no sibling, no parent.
    status, out = sh(client, h, "find /sys/fs/cgroup -maxdepth 3 | head -400")
    assert status == 0 and "/sys/fs/cgroup/" in out, out
    assert other not in out and h not in out, out
    status, out = run(client, h, PAYLOAD, ["read", "/proc/self/cgroup"])
    assert status == 0 and all(line.endswith(":/") for line in out.split()), out
    # Read-only, even for the container's root.
    status, out = run(client, h, PAYLOAD, ["write", limit_file, str(512 * MIB)])
    assert status == 1 and "Read-only file system" in out, out
    status, out = sh(client, h, "mkdir /sys/fs/cgroup/x || mkdir /sys/fs/cgroup/memory/x")
    assert status != 0, out
    assert client.current_memory_limits(h) == {"limit_in_bytes": 96 * MIB}


# --------------------------------------------------------------------------
# --no-new-privileges


def test_no_new_privileges_option(daemon, payload):
    d = daemon("--no-new-privileges")
    client = d.client()
    h = client.create({})
    try:
        f = probe(client, h)
        assert f["nonewprivs"] == "1" and f["seccomp"] == "2", f
        assert caps(f, "capeff") == GUARDIAN_MASK, f
        p = client.create({"privileged": True})
        try:
            f = probe(client, p)
            assert f["nonewprivs"] == "1" and f["seccomp"] == "0", f
        finally:
            client.destroy(p)
    finally:
        client.destroy(h)
