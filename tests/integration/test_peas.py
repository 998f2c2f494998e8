"""Issue 21: peas, processes with a root file system of their own in a container.

A Run whose ProcessSpec has an ``image`` starts a process in a new mount
namespace rooted at an overlay of that image (its own writable layer, removed
when it ends) that shares the container's user, network, pid, IPC, UTS and
cgroup namespaces; ``limits`` (OverrideContainerLimits) gives it a cgroup of
its own under the container's.  Everything here is observed from the host as
well: /proc/PID/ns links, the depot's process directories, cgroupfs and the
mount table.

The pea image is a copy of the busybox test rootfs with a marker file, so a
pea and its container can be told apart by what they see.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (DEFAULT_ROOTFS, cgroup_children, cgroup_controller_dir, cgroup_core_dir,
                      container_init_pid, process_alive, wait_until)
from garden_client import GardenError
import imagekit

PAYLOAD = "/usr/bin/cloche-payload"
WAIT = 20.0
MIB = 1 << 20
NAMESPACES = ("net", "pid", "ipc", "uts", "user", "mnt", "cgroup")


# --------------------------------------------------------------------------
# Helpers and fixtures


@pytest.fixture(scope="module")
def pea_image() -> Path:
    """A root file system of its own: the busybox rootfs plus /pea-marker, and a
    passwd naming a user the container's does not have.  Beside the test rootfs,
    on a file system that can be idmapped wherever that one can (the v2 VM's
    6.1 kernel cannot idmap tmpfs)."""
    work = Path(tempfile.mkdtemp(prefix="pea-image-", dir=DEFAULT_ROOTFS.parent))
    root = work / "rootfs"
    shutil.copytree(DEFAULT_ROOTFS, root, symlinks=True)
    (root / "pea-marker").write_text("pea\n")
    passwd = root / "etc" / "passwd"
    text = passwd.read_text() if passwd.exists() else "root:x:0:0:root:/root:/bin/sh\n"
    passwd.write_text(text + "peauser:x:4321:4322:pea user:/home/peauser:/bin/sh\n")
    yield root
    shutil.rmtree(work, ignore_errors=True)


def sh(script: str, **fields) -> dict:
    return dict(fields, path="sh", args=["-c", script])


def pea(image: Path, script: str, **fields) -> dict:
    return sh(script, image={"uri": f"raw://{image}"}, **fields)


def output(client, handle: str, spec: dict, timeout: float = WAIT) -> tuple[int, str, str]:
    p = client.run(handle, spec)
    status = p.wait(timeout)
    out = (p.stdout or b"").decode(errors="replace")
    err = (p.stderr or b"").decode(errors="replace")
    p.close()
    return status, out, err


def process_dir(d, handle: str, pid: str) -> Path:
    return d.processes(handle) / pid


def pea_layer(d, handle: str, pid: str) -> Path:
    """A pea's writable layer: in the depot, not in the process table."""
    return d.depot / "containers" / handle / "peas" / pid


def pea_layers(d, handle: str) -> list:
    peas = d.depot / "containers" / handle / "peas"
    return list(peas.iterdir()) if peas.exists() else []


def process_host_pid(d, handle: str, pid: str) -> int:
    text = (process_dir(d, handle, pid) / "pid").read_text().split()
    return int(text[2])


def ns_links(pid: int) -> dict:
    return {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in NAMESPACES}


def mounts_naming(path_part: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path_part in line]


@pytest.fixture
def container(daemon):
    d = daemon()
    client = d.client()
    h = client.create({})
    yield d, client, h


# --------------------------------------------------------------------------
# Namespaces and file systems


def test_pea_shares_every_namespace_but_mnt(container, pea_image):
    d, client, h = container
    p = client.run(h, pea(pea_image, "cat /pea-marker; sleep 30", id="ns-pea"))
    init = container_init_pid(d, h)
    assert wait_until(lambda: (process_dir(d, h, "ns-pea") / "pid").exists(), WAIT)
    host_pid = process_host_pid(d, h, "ns-pea")
    theirs, ours = ns_links(init), ns_links(host_pid)
    for ns in ("net", "pid", "ipc", "uts", "user", "cgroup"):
        assert ours[ns] == theirs[ns], ns
    assert ours["mnt"] != theirs["mnt"]
    # An ordinary process of the same container shares the mount namespace:
    # the difference is the pea's.
    q = client.run(h, sh("sleep 30", id="plain"))
    assert wait_until(lambda: (process_dir(d, h, "plain") / "pid").exists(), WAIT)
    assert ns_links(process_host_pid(d, h, "plain"))["mnt"] == theirs["mnt"]
    assert "ns-pea" in client.info(h)["ProcessIDs"]
    for proc in (p, q):
        proc.signal(1)  # Garden's kill
        assert proc.wait(WAIT) == 128 + signal.SIGKILL
        proc.close()


def test_pea_files_are_its_own(container, pea_image):
    d, client, h = container
    # The container writes a file; the pea does not see it, and writes its own.
    assert output(client, h, sh("echo from-container > /container-file"))[0] == 0
    status, out, err = output(client, h, pea(pea_image, """
        cat /pea-marker
        test -e /container-file && echo LEAK
        echo from-pea > /pea-file
        cat /pea-file
        hostname
        cat /etc/hosts /etc/resolv.conf | head -c 4096 >/dev/null
        test -c /dev/null && test -d /proc/self && test -d /sys/fs/cgroup && echo mounts-ok
        pwd
    """))
    assert status == 0, err
    lines = out.split()
    assert lines[0] == "pea" and "LEAK" not in lines and "from-pea" in lines, out
    assert h in lines and "mounts-ok" in lines, out
    assert lines[-1] == "/", out  # dir defaults to /
    # ...and the container sees neither the pea's file nor its image.
    status, out, _ = output(client, h, sh("ls /pea-file /pea-marker 2>&1; cat /container-file"))
    assert "from-container" in out and "No such file" in out, out
    # The pea's image on the host is untouched; its layer went with it.
    assert not (pea_image / "pea-file").exists()
    assert not pea_layers(d, h), pea_layers(d, h)


def test_pea_in_a_privileged_container(daemon, pea_image):
    d = daemon()
    client = d.client()
    try:
        h = client.create({"privileged": True})
    except GardenError as e:
        pytest.skip(f"privileged containers refused here: {e.message}")
    status, out, err = output(client, h, pea(pea_image, "cat /pea-marker; id -u; echo x > /f"))
    assert status == 0 and out.split() == ["pea", "0"], (out, err)
    init = container_init_pid(d, h)
    assert os.readlink(f"/proc/{init}/ns/user") == os.readlink("/proc/self/ns/user")
    status, out, _ = output(client, h, sh("test -e /f || test -e /pea-marker || echo clean"))
    assert out == "clean\n"


def test_pea_hosts_and_resolv_conf_are_the_containers(container, pea_image):
    d, client, h = container
    status, theirs, _ = output(client, h, sh("cat /etc/hosts /etc/resolv.conf"))
    assert status == 0
    status, ours, err = output(client, h, pea(pea_image, "cat /etc/hosts /etc/resolv.conf"))
    assert status == 0, err
    assert ours == theirs and h in ours


def test_pea_user_from_its_own_passwd(container, pea_image):
    d, client, h = container
    status, out, err = output(client, h, pea(pea_image, "id -u; id -g; echo $HOME",
                                             user="peauser"))
    assert status == 0, err
    assert out.split() == ["4321", "4322", "/home/peauser"], out
    assert output(client, h, pea(pea_image, "id -u", user="1234:5678"))[1].split() == ["1234"]
    assert output(client, h, pea(pea_image, "id -u"))[1].split() == ["0"]
    # The container's passwd does not have it: an ordinary process is refused...
    with pytest.raises(GardenError) as e:
        client.run(h, sh("id -u", user="peauser"))
    assert "peauser" in e.value.message
    # ...and so is a pea with a name its own passwd lacks.
    with pytest.raises(GardenError) as e:
        client.run(h, pea(pea_image, "id -u", user="nobody-here"))
    assert "nobody-here" in e.value.message


def test_pea_root_without_passwd(container, pea_image):
    d, client, h = container
    image = pea_image.parent / "bare"
    if not image.exists():
        shutil.copytree(pea_image, image, symlinks=True)
    (image / "etc" / "passwd").unlink(missing_ok=True)
    status, out, err = output(client, h, pea(image, "id -u"))
    assert status == 0 and out.split() == ["0"], err
    with pytest.raises(GardenError) as e:
        client.run(h, pea(image, "id -u", user="alice"))
    assert "alice" in e.value.message


def test_pea_missing_executable_is_the_same_error(container, pea_image):
    d, client, h = container
    errors = []
    for spec in ({"path": "/no/such/exe"},
                 {"path": "/no/such/exe", "image": {"uri": f"raw://{pea_image}"}}):
        with pytest.raises(GardenError) as e:
            client.run(h, spec)
        errors.append((e.value.status, e.value.type))
    assert errors[0] == errors[1], errors
    assert errors[0][1] == "ExecutableNotFoundError"
    # A bad image is refused with a 4xx and leaves nothing behind.
    with pytest.raises(GardenError) as e:
        client.run(h, sh("true", image={"uri": "/no/such/image"}))
    assert 400 <= e.value.status < 500
    assert output(client, h, pea(pea_image, "true"))[0] == 0
    assert not pea_layers(d, h), pea_layers(d, h)


def test_pea_stdio_tty_signals_and_exit_status(container, pea_image):
    d, client, h = container
    p = client.run(h, pea(pea_image, "read line; echo got:$line; echo err >&2; exit 7"),
                   stdin=b"hello\n")
    assert p.wait(WAIT) == 7
    assert (p.stdout or b"").decode() == "got:hello\n" and (p.stderr or b"").decode() == "err\n"
    p.close()
    status, out, _ = output(client, h, pea(pea_image, "tty; test -t 0 && echo is-tty",
                                           tty={"window_size": {"columns": 80, "rows": 24}}))
    assert status == 0 and "/dev/pts/" in out and "is-tty" in out, out
    p = client.run(h, pea(pea_image, "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
                          id="sig-pea"))
    assert wait_until(lambda: b"ready" in p.stdout, WAIT)
    p.signal(0)  # Garden's terminate
    assert p.wait(WAIT) == 42
    p.close()


# --------------------------------------------------------------------------
# Limits


def test_pea_without_limits_shares_the_containers_cgroup(container, pea_image):
    d, client, h = container
    status, ours, err = output(client, h, pea(pea_image, "cat /proc/self/cgroup"))
    assert status == 0, err
    status, theirs, _ = output(client, h, sh("cat /proc/self/cgroup"))
    assert ours == theirs and "pea-" not in ours, (ours, theirs)


def test_pea_memory_override_is_oom_killed_alone(container, pea_image):
    d, client, h = container
    core = cgroup_core_dir(d.cgroup_parent, h)
    status, cg, err = output(client, h, pea(pea_image, "cat /proc/self/cgroup",
                                            id="cg-pea", limits={}))
    assert status == 0 and "pea-cg-pea" in cg, (cg, err)  # even {} gives a group
    # Its group went with it.
    assert wait_until(lambda: not any("pea-" in c for c in os.listdir(core)), WAIT)

    limits = {"memory_limits": {"limit_in_bytes": 32 * MIB}}
    mem = Path(cgroup_controller_dir(d.cgroup_parent, h, "memory"))
    limit_file = "memory.max" if (mem / "memory.max").exists() else "memory.limit_in_bytes"
    # While it runs, its own group carries the limit (read from the host).
    p = client.run(h, pea(pea_image, "sleep 60", id="sleeper", limits=limits))
    assert wait_until(lambda: (mem / "pea-sleeper" / limit_file).exists(), WAIT)
    assert int((mem / "pea-sleeper" / limit_file).read_text()) == 32 * MIB
    theirs = (mem / limit_file).read_text().strip()
    assert theirs == "max" or int(theirs) > 32 * MIB, theirs
    p.signal(1)
    assert p.wait(WAIT) == 128 + signal.SIGKILL
    p.close()
    assert wait_until(lambda: not (mem / "pea-sleeper").exists(), WAIT)

    spec = {"path": PAYLOAD, "args": ["memhog", "96M"], "id": "hog",
            "image": {"uri": f"raw://{pea_image}"}, "limits": limits}
    p = client.run(h, spec)
    assert p.wait(WAIT) == 128 + signal.SIGKILL, (p.stdout, p.stderr)
    p.close()
    assert not (Path(core) / "pea-hog").exists()
    # The container was not: no OOM event, and the same allocation succeeds in it.
    status, out, err = output(client, h, {"path": PAYLOAD, "args": ["memhog", "96M"]})
    assert status == 0, err
    time.sleep(0.5)  # an OOM event would have arrived by now
    assert "oom" not in (client.info(h)["Events"] or [])
    assert output(client, h, sh("echo alive"))[1] == "alive\n"


def test_pea_pid_override_and_limits_without_image(container, pea_image):
    d, client, h = container
    # A process without an image but with limits: its own group, the container's root.
    status, out, err = output(client, h, sh("cat /proc/self/cgroup; test -e /pea-marker || "
                                            "echo container-root", id="limited",
                                            limits={"pid_limits": {"max": 5}}))
    assert status == 0 and "pea-limited" in out and "container-root" in out, (out, err)
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1; wait; echo done"
    status, out, err = output(client, h, pea(pea_image, script, limits={"pid_limits": {"max": 4}}))
    assert "fork" in (out + err).lower() or "resource" in (out + err).lower(), (out, err)
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 0.1 & done; wait; echo done"
    status, out, err = output(client, h, pea(pea_image, script))
    assert status == 0 and "done" in out, err


def test_a_run_refused_after_its_layer_or_log_was_made_leaves_neither(container, pea_image):
    """A pea whose own group cannot take its limits (a pids.max the kernel
    refuses) is refused without leaving its writable layer in the depot, and a
    logging Run whose program does not exist leaves no log file (before, both
    stayed until the container was destroyed, one per request, and the layer
    kept its image's layers in use)."""
    d, client, h = container
    for i in range(3):
        with pytest.raises(GardenError) as e:
            client.run(h, pea(pea_image, "true", id=f"refused-{i}",
                              limits={"pid_limits": {"max": 10 ** 12}}))
        assert e.value.status in (400, 500), e.value
    assert not pea_layers(d, h), pea_layers(d, h)
    logs = d.depot / "containers" / h / "logs"
    for i in range(3):
        with pytest.raises(GardenError) as e:
            client.run(h, {"path": "/no/such/program", "id": f"nolog-{i}", "cloche_log": True})
        assert e.value.type == "ExecutableNotFoundError", e.value
    assert not (logs.exists() and list(logs.iterdir())), list(logs.iterdir())
    # The same Run that works keeps its log, and a pea its (own) layer while it runs.
    status, _, _ = output(client, h, sh("echo kept", id="logged", cloche_log=True))
    assert status == 0 and (logs / "logged.log").exists()


# --------------------------------------------------------------------------
# Lifecycle: destroy, stop, daemon restart, Info and metrics


def test_destroy_ends_running_peas_and_leaves_nothing(container, pea_image):
    d, client, h = container
    client.run(h, pea(pea_image, "sleep 300", id="plain-pea"))
    client.run(h, pea(pea_image, "sleep 300 & sleep 300", id="own-pea",
                      limits={"memory_limits": {"limit_in_bytes": 64 * MIB}}))
    assert wait_until(lambda: all((process_dir(d, h, i) / "pid").exists()
                                  for i in ("plain-pea", "own-pea")), WAIT)
    pids = [process_host_pid(d, h, i) for i in ("plain-pea", "own-pea")]
    mnt = [os.readlink(f"/proc/{p}/ns/mnt") for p in pids]
    core = Path(cgroup_core_dir(d.cgroup_parent, h))
    assert (core / "pea-own-pea").is_dir()
    assert sorted(client.info(h)["ProcessIDs"]) == ["own-pea", "plain-pea"]
    client.destroy(h)
    assert wait_until(lambda: not any(process_alive(p) for p in pids), WAIT)
    # No process is left in either pea's mount namespace (so no mount of theirs
    # survives anywhere), no cgroup, no depot directory, no host mount.
    def in_pea_ns():
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") in mnt:
                        found.append(entry)
                except OSError:
                    pass
        return found
    assert wait_until(lambda: not in_pea_ns(), WAIT), in_pea_ns()
    assert not (d.depot / "containers" / h).exists()
    assert not mounts_naming(h)
    assert not [c for c in cgroup_children(d.cgroup_parent) if h in c]


def test_stop_ends_peas_and_removes_their_layers(container, pea_image):
    d, client, h = container
    p = client.run(h, pea(pea_image, "sleep 300", id="stopped-pea",
                          limits={"pid_limits": {"max": 10}}))
    assert wait_until(lambda: (process_dir(d, h, "stopped-pea") / "pid").exists(), WAIT)
    assert pea_layer(d, h, "stopped-pea").is_dir()
    client.stop(h, kill=True)
    assert p.wait(WAIT) == 128 + signal.SIGKILL
    p.close()
    assert not pea_layer(d, h, "stopped-pea").exists()
    core = Path(cgroup_core_dir(d.cgroup_parent, h))
    assert not (core / "pea-stopped-pea").exists()


def test_pea_survives_a_daemon_restart_and_can_be_attached(daemon, pea_image):
    d = daemon()
    client = d.client()
    h = client.create({})
    p = client.run(h, pea(pea_image, "read line; cat /pea-marker; echo got:$line; exit 3",
                          id="survivor"))
    assert wait_until(lambda: (process_dir(d, h, "survivor") / "pid").exists(), WAIT)
    host_pid = process_host_pid(d, h, "survivor")
    p.close()
    d.kill()
    assert process_alive(host_pid)
    d.restart(timeout=60)  # the emulated v2 VM starts slowly
    client = d.client()
    assert "survivor" in client.info(h)["ProcessIDs"]
    q = client.attach(h, "survivor", stdin=b"again\n")
    assert q.wait(WAIT) == 3
    assert q.stdout == b"pea\ngot:again\n", q.stdout
    q.close()
    assert wait_until(lambda: not pea_layer(d, h, "survivor").exists(), WAIT)


def test_metrics_count_a_pea_with_its_container(container, pea_image):
    d, client, h = container

    def current():
        got = client.bulk_metrics([h])[h]
        assert got["Err"] is None, got
        return got["Metrics"]["PidStat"]["Current"]

    base = current()
    # Five processes in a pea with a group of its own, counted with the container.
    p = client.run(h, pea(pea_image, "for i in 1 2 3 4; do sleep 300 & done; wait",
                          id="counted", limits={}))
    try:
        assert wait_until(lambda: current() >= base + 5, WAIT), (base, current())
        assert client.metrics(h)["PidStat"]["Current"] >= base + 5
    finally:
        p.signal(1)
        p.wait(WAIT)
        p.close()
    assert wait_until(lambda: current() == base, WAIT), (base, current())


# --------------------------------------------------------------------------
# Registry and OCI layout images


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    if imagekit.missing_tools():
        pytest.skip(f"missing {imagekit.missing_tools()}")
    work = tmp_path_factory.mktemp("pea-layout")
    return imagekit.build_layout(work, DEFAULT_ROOTFS)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, layout):
    r = imagekit.Registry(tmp_path_factory.mktemp("pea-registry"), "peas")
    try:
        r.push(layout, "multi", "test/multi:v1")
        yield r
    finally:
        r.close()


MULTI_CHECK = """
    cat /data/keep; test -e /data/gone && echo GONE-VISIBLE
    echo $(ls /olddir)
    cat /hl/link; echo FROM_IMAGE=$FROM_IMAGE
    test -e /pea-marker && echo MARKER
    true
"""


def test_pea_from_a_docker_registry_and_an_oci_layout(daemon, registry, layout):
    d = daemon("--insecure-registry", registry.host)
    client = d.client()
    h = client.create({})
    for uri in (f"docker://{registry.host}/test/multi:v1", f"oci://{layout}#multi"):
        status, out, err = output(client, h, sh(MULTI_CHECK, image={"uri": uri}), timeout=60)
        assert status == 0, (uri, err)
        # Every layer, whiteouts and opaque directories as the image has them;
        # the image's Env; none of the container's files.
        assert out.split("\n")[:4] == ["keep", "z", "linked content", "FROM_IMAGE=yes"], (uri, out)
        assert "GONE-VISIBLE" not in out and "MARKER" not in out
    # A reference the registry does not have is a clear 4xx, and nothing is left.
    with pytest.raises(GardenError) as e:
        client.run(h, sh("true", image={"uri": f"docker://{registry.host}/test/none:v1"}))
    assert 400 <= e.value.status < 500, e.value
    assert not pea_layers(d, h), pea_layers(d, h)
