"""Issue 20: Garden behaviours the Go client's users rely on, down to the details.

Each test drives the daemon the way the Go client does (garden_client) and
checks one behaviour against guardian's (reference/garden-protocol.md).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from conftest import DEFAULT_ROOTFS
from garden_client import GardenError

PAYLOAD = "/usr/bin/cloche-payload"
WAIT = 15.0


def sh(script: str, **fields) -> dict:
    return dict(fields, path="sh", args=["-c", script])


class Box:
    """One container on the module's daemon; every process closed at teardown."""

    def __init__(self, daemon, handle: str):
        self.daemon = daemon
        self.handle = handle
        self.client = daemon.client()
        self.procs = []

    def run(self, spec: dict, *args, **kw):
        p = self.client.run(self.handle, spec, *args, **kw)
        self.procs.append(p)
        return p

    def result(self, spec: dict, stdin=None, **kw) -> tuple[int, bytes, bytes]:
        p = self.run(spec, stdin, **kw)
        try:
            return p.wait(WAIT), p.stdout, p.stderr
        finally:
            p.close()
            self.procs.remove(p)

    def output(self, spec: dict, stdin=None, **kw) -> str:
        status, out, err = self.result(spec, stdin, **kw)
        assert status == 0, f"{spec} exited {status}: stdout {out!r} stderr {err!r}"
        return out.decode()

    def close(self) -> None:
        for p in self.procs:
            p.close()


_counter = iter(range(1, 1 << 30))


def make_box(daemon, request, spec: "dict | None" = None) -> Box:
    client = daemon.client()
    handle = re.sub(r"[^A-Za-z0-9._-]", "-", f"c{next(_counter)}-{request.node.name[5:30]}")
    client.create(dict(spec or {}, handle=handle))
    return Box(daemon, handle)


@pytest.fixture
def box(module_daemon, request):
    b = make_box(module_daemon, request, {"env": ["CTR_VAR=from-container", "TEST=hi"]})
    yield b
    b.close()
    try:
        b.client.destroy(b.handle)
    except GardenError:
        pass


# --------------------------------------------------------------------------
# 2. The exit status is delivered even while stdin is still being written


def _endless_stdin(chunk: bytes, limit: int):
    sent = 0
    while sent < limit:
        yield chunk
        sent += len(chunk)


def test_exit_status_survives_stdin_still_being_written(box):
    # Garden's "forwards the exit status even if stdin is still being written",
    # 200 times over: the process exits without reading its stdin while the
    # client keeps writing it; every Wait must return the status.
    chunk = b"x" * 32768
    lost = []
    for i in range(200):
        p = box.run(sh("exit 42"), _endless_stdin(chunk, 8 << 20))
        try:
            status = p.wait(WAIT)
        except Exception as e:  # ProcessError: decode failed: EOF
            lost.append((i, str(e)))
            status = None
        finally:
            p.close()
            box.procs.remove(p)
        if status is not None:
            assert status == 42
    assert lost == [], f"{len(lost)} of 200 exit statuses lost: {lost[:3]}"


# --------------------------------------------------------------------------
# 4. The process's env overrides the container's for the same key


def test_process_env_overrides_container_env(box):
    env = box.output({"path": "env", "env": ["TEST=hello", "PROC_VAR=1"]}).splitlines()
    assert [e for e in env if e.startswith("TEST=")] == ["TEST=hello"]
    assert "CTR_VAR=from-container" in env and "PROC_VAR=1" in env
    # Without an override the container's value is there, once.
    env = box.output({"path": "env"}).splitlines()
    assert [e for e in env if e.startswith("TEST=")] == ["TEST=hi"]
    # A repeated key in the process's own env: the last one wins.
    env = box.output({"path": "env", "env": ["TEST=a", "TEST=b"]}).splitlines()
    assert [e for e in env if e.startswith("TEST=")] == ["TEST=b"]


# --------------------------------------------------------------------------
# 5. A missing working directory is created, owned by the process's user


def test_missing_dir_is_created_owned_by_the_user(box):
    out = box.output({"path": "sh", "args": ["-c", "pwd; stat -c '%u:%g %a' . .. ../.."],
                      "dir": "/home/vcap/a/b", "user": "vcap"})
    lines = out.splitlines()
    assert lines[0] == "/home/vcap/a/b"
    # b and a are new: the user's, 0755.
    assert lines[1:3] == ["1000:1000 755", "1000:1000 755"], lines
    # The user can write there, and an existing directory is left as it was.
    assert box.output({"path": "sh", "args": ["-c", "touch f && pwd && stat -c '%u' /tmp"],
                       "dir": "/home/vcap/a/b", "user": "vcap"}).split() == ["/home/vcap/a/b",
                                                                              "0"]
    assert box.output({"path": "pwd", "dir": "/tmp"}).strip() == "/tmp"
    # As root: created as root's.
    out = box.output({"path": "sh", "args": ["-c", "pwd; stat -c '%u:%g' ."],
                      "dir": "/srv/new"})
    assert out.split() == ["/srv/new", "0:0"]


# --------------------------------------------------------------------------
# 6. PID 1 is named garden-init


def test_pid_1_is_named_garden_init(box):
    out = box.output(sh("cat /proc/1/comm; tr '\\0' ' ' < /proc/1/cmdline"))
    assert out.splitlines() == ["garden-init", "garden-init "]
    # ps (busybox) shows it under that name as well.
    assert "garden-init" in box.output({"path": "ps"})


# --------------------------------------------------------------------------
# 7. StreamIn as an unknown user: the same prefix as every StreamIn error


def _tar_of(name: str, data: bytes) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_stream_in_unknown_user_has_the_streaming_in_prefix(box):
    tar = _tar_of("f", b"hello")
    with pytest.raises(GardenError) as info:
        box.client.stream_in(box.handle, "/tmp", tar, user="no-such-user")
    assert info.value.message.startswith("error streaming in: "), info.value
    assert "no-such-user" in info.value.message
    with pytest.raises(GardenError) as info:
        box.client.stream_out(box.handle, "/tmp", user="no-such-user")
    assert info.value.message.startswith("error streaming out: "), info.value
    # A known user streams in.
    box.client.stream_in(box.handle, "/tmp", tar, user="vcap")
    assert box.output({"path": "cat", "args": ["/tmp/f"]}) == "hello"


# --------------------------------------------------------------------------
# 1. A tty process's terminal comes from the container's own devpts


@pytest.mark.parametrize("user,uid", [("root", "0"), ("vcap", "1000")])
def test_tty_is_named_and_owned_in_the_container(box, user, uid):
    out = box.output(sh("tty; stat -c '%u %g %a' \"$(tty)\"; ls /dev/pts", tty=True, user=user))
    lines = out.replace("\r", "").splitlines()
    assert lines[0] == "/dev/pts/0", lines
    # Owned by the process's user, group tty (5), as a login gives it.
    assert lines[1] == f"{uid} 5 620", lines
    assert "0" in lines[2].split() and "ptmx" in lines[2].split(), lines
    # Without a tty there is none.
    status, out, _ = box.result(sh("tty", user=user))
    assert (status, out) == (1, b"not a tty\n")


# --------------------------------------------------------------------------
# 3. /dev/stdin, /dev/stdout and /dev/stderr can be reopened by the process's user


@pytest.mark.parametrize("user", ["root", "vcap"])
def test_stdio_can_be_reopened_by_the_process_user(box, user):
    status, out, err = box.result(
        sh("cat /dev/stdin; echo out > /dev/stdout; echo err > /dev/stderr", user=user),
        "from stdin\n")
    assert (status, out, err) == (0, b"from stdin\nout\n", b"err\n")
    # The pipes belong to the user: nobody else's (mode 0600 as before).
    uid = "1000" if user == "vcap" else "0"
    assert box.output(sh("stat -L -c '%u %a' /dev/stdout", user=user)).split() == [uid, "600"]


def test_tty_and_stdio_in_a_privileged_container(module_daemon, request):
    b = make_box(module_daemon, request, {"privileged": True})
    try:
        out = b.output(sh("tty; stat -c '%u %g' \"$(tty)\"", tty=True, user="vcap"))
        assert out.replace("\r", "").splitlines() == ["/dev/pts/0", "1000 5"]
        status, out, err = b.result(sh("cat /dev/stdin; echo err > /dev/stderr", user="vcap"),
                                    "in\n")
        assert (status, out, err) == (0, b"in\n", b"err\n")
    finally:
        b.close()
        b.client.destroy(b.handle)


# --------------------------------------------------------------------------
# 12. Privileged containers get /dev/fuse


FUSE_PROBE = "stat -c '%F %t:%T %a' /dev/fuse && exec 3<>/dev/fuse && echo opened"


def test_privileged_containers_get_dev_fuse(module_daemon, request):
    if not os.path.exists("/dev/fuse"):
        pytest.skip("the host has no /dev/fuse (no fuse module)")
    b = make_box(module_daemon, request, {"privileged": True})
    try:
        out = b.output(sh(FUSE_PROBE, user="vcap"))
        assert out.splitlines() == ["character special file a:e5 666", "opened"]
    finally:
        b.close()
        b.client.destroy(b.handle)
    # An unprivileged container has none.
    b = make_box(module_daemon, request)
    try:
        status, out, err = b.result(sh(FUSE_PROBE))
        assert status != 0 and b"opened" not in out, (out, err)
        assert b"No such file" in err, err
    finally:
        b.close()
        b.client.destroy(b.handle)


# --------------------------------------------------------------------------
# 9. StreamOut writes tars that GNU tar reads without a warning


def test_stream_out_tar_reads_cleanly_with_gnu_tar(box, tmp_path):
    import subprocess
    long = "d/" + "n" * 200  # too long for ustar (100 + 155 bytes): needs pax
    box.output(sh(f"mkdir -p /tmp/t/{long} && echo hi > /tmp/t/{long}/f && "
                  "echo small > /tmp/t/small && ln -s small /tmp/t/link && "
                  "mkdir /tmp/t/sub && : > /tmp/t/sub/empty && echo e > /tmp/t/caf\u00e9"))
    tar = box.client.stream_out(box.handle, "/tmp/t")
    path = tmp_path / "out.tar"
    path.write_bytes(tar)
    res = subprocess.run(["tar", "-tvf", str(path)], capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    names = [line.split()[-1] if " -> " not in line else line.split()[-3]
             for line in res.stdout.splitlines()]
    assert f"t/{long}/f" in names and "t/small" in names and "t/sub/empty" in names, names
    # Extended headers only where needed: the long name, and the UTF-8 one.
    import tarfile
    with tarfile.open(path) as t:
        pax = {m.name: m.pax_headers for m in t.getmembers()}
    assert pax[f"t/{long}/f"].get("path") == f"t/{long}/f"
    assert pax["t/small"] == {} and pax["t/sub/empty"] == {} and pax["t"] == {}, pax
    # Extracted, the long name and the data are there.
    res = subprocess.run(["tar", "-xf", str(path), "-C", str(tmp_path)], capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert (tmp_path / "t" / long / "f").read_text() == "hi\n"
    assert (tmp_path / "t" / "caf\u00e9").read_text() == "e\n"
    assert os.readlink(tmp_path / "t" / "link") == "small"


def test_stream_out_keeps_a_name_that_is_not_utf8(box):
    import io
    import tarfile
    box.output(sh("mkdir /tmp/raw && echo x > \"/tmp/raw/$(printf 'a\\377b')\""))
    tar = box.client.stream_out(box.handle, "/tmp/raw")
    with tarfile.open(fileobj=io.BytesIO(tar), encoding="utf-8", errors="surrogateescape") as t:
        names = [m.name.encode("utf-8", "surrogateescape") for m in t.getmembers()]
    assert b"raw/a\xffb" in names, names


# --------------------------------------------------------------------------
# 11. A body over the cap: a 413 the client can read, even while still writing


def _write_all_then_read(d, head: bytes, body: bytes) -> bytes:
    """A client that writes the whole request before it reads (as curl without
    Expect, or a Go client whose writer finishes first): on a connection the
    server closes with unread data, the write fails with EPIPE/ECONNRESET."""
    import socket
    with socket.create_connection((d.bind_ip, d.bind_port), timeout=10) as s:
        s.sendall(head)
        time.sleep(0.2)  # the server has read the head and answered by now
        s.sendall(body)
        got = b""
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.parametrize("route", ["create", "run"])
def test_body_over_the_cap_gets_a_readable_413(module_daemon, route):
    d = module_daemon
    handle = f"big-{route}"
    d.client().create({"handle": handle})
    try:
        over = (1 << 20) + 4096  # the JSON body cap is 1 MiB
        body = b'{"handle":"' + b"x" * (over - 14) + b'"}'
        path = "/containers" if route == "create" else f"/containers/{handle}/processes"
        head = (f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        for _ in range(3):
            reply = _write_all_then_read(d, head, body)
            assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
            assert b"Request body is too large" in reply
        # A body within the cap is served as usual on the same daemon.
        assert handle in d.client().list()
    finally:
        d.client().destroy(handle)


def test_chunked_body_over_the_cap_gets_a_413(module_daemon):
    d = module_daemon
    piece = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(20)) + b"0\r\n\r\n"
    head = (b"POST /containers HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    reply = _write_all_then_read(d, head, chunks)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    # Within the cap, a chunked create works.
    small = b'{"handle":"chunked-ok"}'
    reply = _write_all_then_read(d, head, b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    d.client().destroy("chunked-ok")


# --------------------------------------------------------------------------
# 10. A disk limit is raised live without CAP_SYS_RESOURCE (within the ceiling)

MIB = 1 << 20


def test_disk_limit_raised_live_within_the_ceiling(module_daemon, request):
    b = make_box(module_daemon, request,
                 {"limits": {"disk_limits": {"byte_hard": 16 * MIB, "scope": 1}}})
    try:
        status, out, err = b.result(sh("dd if=/dev/zero of=/a bs=1M count=20 2>&1"))
        assert status != 0 and b"space" in out.lower(), out
        # 16 MiB -> 128 MiB: the image needs no growing, so no CAP_SYS_RESOURCE.
        b.client.set_limits(b.handle, "disk", {"byte_hard": 128 * MIB, "scope": 1})
        assert b.client.current_disk_limits(b.handle)["byte_hard"] == 128 * MIB
        status, out, err = b.result(sh("rm /a; dd if=/dev/zero of=/a bs=1M count=100 2>&1"))
        assert status == 0, out
        # and the limit still holds at the new value
        status, out, err = b.result(sh("dd if=/dev/zero of=/b bs=1M count=40 2>&1"))
        assert status != 0 and b"space" in out.lower(), out
        # The image is sparse: it spans the ceiling but holds little beyond the data.
        image = module_daemon.depot / "containers" / b.handle / "disk.img"
        st = image.stat()
        assert st.st_size >= 3 << 30, st.st_size
        assert st.st_blocks * 512 < 160 * MIB, st.st_blocks * 512
    finally:
        b.close()
        b.client.destroy(b.handle)


# --------------------------------------------------------------------------
# 8. Large uid/gid values: --uid-range-size and --uid-map-mode shared

BIG_ID = 1_000_000_000


def _init_map(d, handle: str, name: str) -> list[list[int]]:
    from conftest import container_init_pid
    text = open(f"/proc/{container_init_pid(d, handle)}/{name}").read()
    return [[int(x) for x in line.split()] for line in text.splitlines()]


def _id_output(client, handle: str, user: str):
    p = client.run(handle, {"path": "sh", "args": ["-c", "id -u; id -g; touch /tmp/mine; "
                                                      "stat -c '%u %g' /tmp/mine"],
                            "user": user})
    try:
        return p.wait(WAIT), p.stdout.decode().splitlines(), p.stderr
    finally:
        p.close()


def test_default_ranges_refuse_an_id_beyond_65535(module_daemon, request):
    b = make_box(module_daemon, request)
    try:
        status, out, _ = _id_output(b.client, b.handle, "65535:65535")
        assert (status, out) == (0, ["65535", "65535", "65535 65535"])
        with pytest.raises(GardenError) as info:
            status, out, err = _id_output(b.client, b.handle, f"{BIG_ID}:{BIG_ID}")
            assert status != 0, (out, err)  # if Run itself does not refuse, the start fails
            raise GardenError(500, "", err.decode())
        assert "Invalid argument" in info.value.message or "gid" in info.value.message
        assert _init_map(module_daemon, b.handle, "uid_map")[0][2] == 65536
    finally:
        b.close()
        b.client.destroy(b.handle)


def test_uid_range_size_makes_large_ids_usable(daemon):
    d = daemon("--uid-range-size", str(BIG_ID + 1), "--uid-pool-start", "100000")
    client = d.client()
    client.create({"handle": "big-a"})
    client.create({"handle": "big-b"})
    status, out, err = _id_output(client, "big-a", f"{BIG_ID}:{BIG_ID}")
    assert (status, out) == (0, [str(BIG_ID), str(BIG_ID), f"{BIG_ID} {BIG_ID}"]), err
    # Each container has its own range of that size; the pool holds what fits.
    maps = [_init_map(d, h, "uid_map") for h in ("big-a", "big-b")]
    assert [m[0][2] for m in maps] == [BIG_ID + 1] * 2
    assert {m[0][1] for m in maps} == {100000, 100000 + BIG_ID + 1}
    assert _init_map(d, "big-a", "gid_map") == maps[0]
    client.create({"handle": "big-c"})
    client.create({"handle": "big-d"})  # (2^32 - 100000) // (10^9 + 1) = 4 ranges
    with pytest.raises(GardenError) as info:
        client.create({"handle": "big-e"})
    assert "No free user id range" in info.value.message
    for h in ("big-a", "big-b", "big-c", "big-d"):
        client.destroy(h)


def test_uid_map_mode_shared_maps_as_guardian(daemon):
    d = daemon("--uid-map-mode", "shared")
    client = d.client()
    client.create({"handle": "shared-a"})
    client.create({"handle": "shared-b"})
    for h in ("shared-a", "shared-b"):
        assert _init_map(d, h, "uid_map") == [[0, 4294967294, 1], [1, 1, 4294967293]]
        assert _init_map(d, h, "gid_map") == [[0, 4294967294, 1], [1, 1, 4294967293]]
    status, out, err = _id_output(client, "shared-a", f"{BIG_ID}:{BIG_ID}")
    assert (status, out) == (0, [str(BIG_ID), str(BIG_ID), f"{BIG_ID} {BIG_ID}"]), err
    # Container root is host id 4294967294, any other id is the host's own: the
    # file made as 1e9 in the container is owned by host id 1e9.
    upper = d.depot / "containers" / "shared-a" / "rootfs" / "upper" / "tmp" / "mine"
    st = upper.stat()
    assert (st.st_uid, st.st_gid) == (BIG_ID, BIG_ID)
    status, out, err = _id_output(client, "shared-b", "root")
    assert (status, out) == (0, ["0", "0", "0 0"]), err
    st = (d.depot / "containers" / "shared-b" / "rootfs" / "upper" / "tmp" / "mine").stat()
    assert (st.st_uid, st.st_gid) == (4294967294, 4294967294)
    for h in ("shared-a", "shared-b"):
        client.destroy(h)


@pytest.mark.parametrize("args,why", [
    (["--uid-range-size", "1000"], "expected 65536"),
    (["--uid-map-mode", "global"], "expected 'ranges' or 'shared'"),
    (["--uid-range-size", "4100000000"], "runs past the last id"),
])
def test_uid_options_are_checked(daemon, args, why):
    from conftest import run_to_exit
    d = daemon.new()
    res = run_to_exit(d.argv(args))
    assert res.returncode not in (0, None) and why in res.stderr, res.stderr
