"""Issue 6: StreamIn and StreamOut as tar, safely, plus single-file convenience.

Every request is sent as the Go client sends it (garden_client.stream_in /
stream_out: ``Content-Type: application/x-tar``, ``destination``/``source`` and
``user`` in the query, Content-Length or chunked bodies), or as curl sends it.
The container's side is checked from inside it (container_exec) and through
StreamOut.

Escape attempts plant a file in a host directory first (``host_canary``) and
check after each attempt that the directory and the file are exactly as they
were: the archive may be refused or neutralised, but the host is never
touched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import container_exec
from garden_client import GardenError, ProtocolError, parse_response

VCAP = 1000


# --------------------------------------------------------------------------
# Helpers


def entry(name: str, data: bytes = b"", *, kind=tarfile.REGTYPE, mode: int = 0o644,
          link: str = "", uid: int = 0, gid: int = 0, devmajor: int = 0,
          devminor: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = 1_700_000_000
    ti.linkname = link
    ti.devmajor, ti.devminor = devmajor, devminor
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
    return ti, data


def make_tar(*entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def read_tar(data: bytes) -> dict[str, tuple[str, bytes, int]]:
    """name -> (kind, content or link target, mode) of every member."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            if m.isdir():
                out[m.name] = ("dir", b"", m.mode)
            elif m.issym():
                out[m.name] = ("sym", m.linkname.encode(), m.mode)
            elif m.islnk():
                out[m.name] = ("hard", m.linkname.encode(), m.mode)
            elif m.isreg():
                out[m.name] = ("file", t.extractfile(m).read(), m.mode)
            else:
                out[m.name] = ("other", b"", m.mode)
    return out


def first_raw_name(data: bytes) -> bytes:
    """The first member's name as written (tarfile drops a directory's trailing
    slash): its pax "path" record, else the ustar name field."""
    off, path = 0, None
    while data[off + 156:off + 157] in (b"x", b"g"):
        size = int(data[off + 124:off + 136].rstrip(b"\0 ") or b"0", 8)
        records = data[off + 512:off + 512 + size]
        for rec in records.split(b"\n"):
            if b" path=" in rec:
                path = rec.split(b" path=", 1)[1]
        off += 512 + (size + 511) // 512 * 512
    return path if path is not None else data[off:off + 100].rstrip(b"\0")


def sh(d, handle: str, script: str) -> str:
    status, out, err = container_exec(d, handle, ["sh", "-c", script])
    assert status == 0, f"{script!r}: status {status}, stderr {err!r}"
    return out


def stat_in(d, handle: str, path: str) -> tuple[int, int, str]:
    """(uid, gid, octal mode) of path inside the container."""
    out = sh(d, handle, f"stat -c '%u %g %a' '{path}'").split()
    return int(out[0]), int(out[1]), out[2]


def exists_in(d, handle: str, path: str) -> bool:
    status, _, _ = container_exec(d, handle, ["test", "-e", path])
    return status == 0


@pytest.fixture(scope="module")
def box(module_daemon):
    """One unprivileged container shared by the module (each test uses its own
    directories)."""
    client = module_daemon.client()
    handle = client.create({"handle": "files-box"})
    yield module_daemon, handle
    try:
        client.destroy(handle)
    except (GardenError, OSError):
        pass


def snapshot(path: Path) -> dict:
    """Every entry below path with its type, mode, size, mtime and content."""
    state = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            content = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            state[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink, content)
    return state


@pytest.fixture
def host_canary():
    """A host directory holding one file; the test must leave both untouched."""
    d = Path(tempfile.mkdtemp(prefix="cloche-canary-", dir="/tmp"))
    (d / "canary").write_bytes(b"host data\n")
    os.chmod(d / "canary", 0o644)
    before = snapshot(d)
    before_dir = d.lstat()
    yield d
    after = snapshot(d)
    assert after == before, f"the host directory {d} changed: {before} -> {after}"
    assert d.lstat().st_mtime_ns == before_dir.st_mtime_ns
    shutil.rmtree(d)


def refused(client, handle, dest, tar_bytes, user=None) -> str:
    """StreamIn must fail with "error streaming in"; returns the message."""
    with pytest.raises(GardenError) as e:
        client.stream_in(handle, dest, tar_bytes, user=user)
    assert e.value.status == 500, e.value
    assert "error streaming in" in e.value.message, e.value.message
    return e.value.message


# --------------------------------------------------------------------------
# Round trips


UNUSUAL = ["with space", "ütf-8 ☃ naïve", "new\nline", "-dash", "a'quote\"s"]


def tree() -> bytes:
    entries = [entry("top/", kind=tarfile.DIRTYPE, mode=0o755),
               entry("top/hello.txt", b"hello\n"),
               entry("top/empty", b""),
               entry("top/exec.sh", b"#!/bin/sh\necho hi\n", mode=0o755),
               entry("top/sub/", kind=tarfile.DIRTYPE, mode=0o750),
               entry("top/sub/deep.bin", bytes(range(256)) * 300),
               entry("top/link-rel", kind=tarfile.SYMTYPE, link="hello.txt"),
               entry("top/sub/link-up", kind=tarfile.SYMTYPE, link="../hello.txt"),
               entry("top/hard", kind=tarfile.LNKTYPE, link="top/hello.txt")]
    entries += [entry(f"top/{n}", n.encode()) for n in UNUSUAL]
    return make_tar(*entries)


def check_tree(members: dict, prefix: str) -> None:
    p = prefix
    assert members[f"{p}hello.txt"][:2] == ("file", b"hello\n")
    assert members[f"{p}empty"][:2] == ("file", b"")
    assert members[f"{p}exec.sh"][2] & 0o777 == 0o755
    assert members[f"{p}sub/deep.bin"][1] == bytes(range(256)) * 300
    assert members[f"{p}link-rel"][:2] == ("sym", b"hello.txt")
    assert members[f"{p}sub/link-up"][:2] == ("sym", b"../hello.txt")
    assert members[f"{p}hard"][0] in ("hard", "file")
    for n in UNUSUAL:
        assert members[f"{p}{n}"][:2] == ("file", n.encode()), n
    assert members[f"{p.rstrip('/')}" if p != "./" else "."][0] == "dir"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_round_trip_tree(box, chunked):
    d, h = box
    client = d.client()
    dest = f"/tmp/rt-{int(chunked)}"
    assert client.stream_in(h, dest, tree(), chunked=chunked) == {}
    assert sh(d, h, f"cat '{dest}/top/link-rel'") == "hello\n"
    assert sh(d, h, f"stat -c %h '{dest}/top/hello.txt'").strip() == "2"  # the hardlink
    # Without a trailing slash: basename/... from the parent (guardian).
    out = client.stream_out(h, f"{dest}/top")
    check_tree(read_tar(out), "top/")
    assert first_raw_name(out) == b"top/"
    assert all(n == "top" or n.startswith("top/") for n in read_tar(out))
    # With one: ./... from inside.
    out = client.stream_out(h, f"{dest}/top/")
    members = read_tar(out)
    check_tree(members, "./")
    assert first_raw_name(out) == b"./"
    assert all(n == "." or n.startswith("./") for n in members)
    # And back in elsewhere: the same tree.
    client.stream_in(h, f"{dest}/copy", out, chunked=not chunked)
    check_tree(read_tar(client.stream_out(h, f"{dest}/copy/")), "./")


def test_stream_out_single_file_and_errors(box):
    d, h = box
    client = d.client()
    client.stream_in(h, "/tmp/one", make_tar(entry("f.txt", b"data")))
    assert read_tar(client.stream_out(h, "/tmp/one/f.txt")) == {"f.txt": ("file", b"data", 0o644)}
    with pytest.raises(GardenError) as e:
        client.stream_out(h, "/tmp/does-not-exist")
    assert e.value.status == 500
    assert "error streaming out" in e.value.message and "No such file" in e.value.message
    with pytest.raises(GardenError) as e:
        client.stream_out(h, "/tmp/one/f.txt/")  # a file is not a directory
    assert "error streaming out" in e.value.message


def test_large_file_round_trip(box):
    d, h = box
    client = d.client()
    data = os.urandom(1 << 20) * 48  # 48 MiB
    client.stream_in(h, "/tmp/big", make_tar(entry("big.bin", data)), chunked=True)
    digest = hashlib.sha256()
    n = client.stream_out(h, "/tmp/big/big.bin", accept="application/octet-stream",
                          sink=digest.update)
    assert n == len(data) and digest.digest() == hashlib.sha256(data).digest()


def test_one_gib_file_round_trip_as_tar(box):
    """A 1 GiB file with no zero runs (nothing for sparse handling to skip) goes
    in as a chunked tar, generated as it is sent, and comes back out as a tar,
    checked as it is read: neither side holds it in memory."""
    d, h = box
    client = d.client()
    size = 1 << 30
    block = bytes((i * 7 + 1) % 251 + 1 for i in range(1 << 20))  # never zero
    sent = hashlib.sha256()

    def body():
        info = tarfile.TarInfo("huge.bin")
        info.size = size
        info.mode = 0o644
        yield info.tobuf(format=tarfile.USTAR_FORMAT)
        for _ in range(size // len(block)):
            sent.update(block)
            yield block
        yield b"\0" * 1024  # the end-of-archive blocks

    client.stream_in(h, "/tmp/huge", body(), chunked=True)
    got = hashlib.sha256()
    seen = {"offset": 0, "header": b""}

    def sink(piece: bytes) -> None:
        # The reply is one entry: a 512-byte header (pax headers first, if any,
        # are skipped by finding the ustar header), the data, then padding.
        off = seen["offset"]
        seen["offset"] = off + len(piece)
        if seen.get("data_start") is None:
            seen["header"] += piece
            buf = seen["header"]
            start = 0
            while len(buf) >= start + 512:
                hdr = tarfile.TarInfo.frombuf(buf[start:start + 512], "utf-8", "surrogateescape")
                if hdr.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                    start += 512 + (hdr.size + 511) // 512 * 512
                    continue
                seen["data_start"] = start + 512
                seen["size"] = hdr.size
                rest = buf[start + 512:start + 512 + hdr.size]
                got.update(rest)
                seen["taken"] = len(rest)
                return
            return
        want = seen["size"] - seen["taken"]
        take = piece[:want]
        got.update(take)
        seen["taken"] += len(take)

    total = client.stream_out(h, "/tmp/huge/huge.bin", sink=sink)
    assert seen.get("size") == size and seen["taken"] == size
    assert total >= size + 512
    assert got.digest() == sent.digest()
    sh(d, h, "rm -rf /tmp/huge")


def test_empty_body_extracts_nothing(box):
    d, h = box
    client = d.client()
    assert client.stream_in(h, "/tmp/empty-body", b"") == {}
    assert exists_in(d, h, "/tmp/empty-body")  # the destination is still made


# --------------------------------------------------------------------------
# Users, homes, permissions


def test_relative_destination_is_the_users_home(box):
    d, h = box
    client = d.client()
    client.stream_in(h, "rel/a/b", make_tar(entry("f", b"x", uid=0, gid=0)), user="vcap")
    assert stat_in(d, h, "/home/vcap/rel") == (VCAP, VCAP, "755")
    assert stat_in(d, h, "/home/vcap/rel/a/b") == (VCAP, VCAP, "755")
    assert stat_in(d, h, "/home/vcap/rel/a/b/f") == (VCAP, VCAP, "644")  # not the archive's 0:0
    client.stream_in(h, "rel-root", make_tar(entry("f", b"y", uid=VCAP, gid=VCAP)))
    assert stat_in(d, h, "/root/rel-root/f") == (0, 0, "644")
    assert read_tar(client.stream_out(h, "rel/a/b/f", user="vcap")) == {"f": ("file", b"x", 0o644)}


def test_permissions_of_a_non_root_user(box):
    d, h = box
    client = d.client()
    message = refused(client, h, "/root/nope", make_tar(entry("f", b"x")), user="vcap")
    assert "Permission denied" in message
    assert not exists_in(d, h, "/root/nope")
    # Modes from the archive are kept only within the user's umask.
    client.stream_in(h, "/tmp/vmodes", make_tar(entry("open", b"x", mode=0o777),
                                                entry("dir/", kind=tarfile.DIRTYPE, mode=0o777)),
                     user="vcap")
    assert stat_in(d, h, "/tmp/vmodes/open") == (VCAP, VCAP, "755")
    assert stat_in(d, h, "/tmp/vmodes/dir") == (VCAP, VCAP, "755")
    # A file the user cannot read does not come out.
    sh(d, h, "mkdir -p /tmp/secret && echo s > /tmp/secret/s && chmod 600 /tmp/secret/s")
    with pytest.raises(GardenError) as e:
        client.stream_out(h, "/tmp/secret/s", user="vcap", accept="application/octet-stream")
    assert "Permission denied" in e.value.message


def test_unknown_user_and_handle(box):
    d, h = box
    client = d.client()
    with pytest.raises(GardenError) as e:
        client.stream_in(h, "/tmp/u", make_tar(entry("f", b"x")), user="nobody-here")
    assert e.value.status == 400 and "unable to find user nobody-here" in e.value.message
    with pytest.raises(GardenError) as e:
        client.stream_out(h, "/tmp", user="nobody-here")
    assert e.value.status == 400
    with pytest.raises(GardenError) as e:
        client.stream_in("no-such-box", "/tmp", make_tar(entry("f", b"x")))
    assert e.value.status == 404 and e.value.type == "ContainerNotFoundError"
    with pytest.raises(GardenError) as e:
        client.stream_out("no-such-box", "/tmp")
    assert e.value.type == "ContainerNotFoundError"


def test_stopped_container(containers):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    client.stop(h, kill=True)
    assert client.info(h)["State"] == "stopped"
    client.stream_in(h, "/tmp/s", make_tar(entry("f", b"still here")))
    assert read_tar(client.stream_out(h, "/tmp/s/f")) == {"f": ("file", b"still here", 0o644)}


def test_privileged_container(containers):
    d = containers.daemon
    client = d.client()
    h = containers.create(privileged=True)
    client.stream_in(h, "/tmp/p", make_tar(entry("f", b"p", mode=0o4755, uid=5, gid=5)))
    assert stat_in(d, h, "/tmp/p/f") == (0, 0, "755")
    assert client.stream_out(h, "/tmp/p/f", accept="application/octet-stream") == b"p"


# --------------------------------------------------------------------------
# Escape attempts: each refused or neutralised, the host untouched


def test_escape_dotdot_entries(box, host_canary):
    d, h = box
    client = d.client()
    up = "../" * 12
    msg = refused(client, h, "/tmp/e1", make_tar(entry(f"{up}{host_canary}/canary", b"pwned"),
                                                  entry("ok", b"fine")))
    assert ".." in msg
    # The safe entry still went in; the other did not, anywhere.
    assert exists_in(d, h, "/tmp/e1/ok")
    assert not exists_in(d, h, f"{host_canary}/canary")


def test_escape_absolute_names(box, host_canary):
    d, h = box
    client = d.client()
    refused(client, h, "/tmp/e2", make_tar(entry(f"{host_canary}/canary", b"pwned"),
                                           entry(f"{host_canary}/new", b"pwned")))
    assert not exists_in(d, h, f"{host_canary}")


def test_escape_symlink_then_write_through_it(box, host_canary):
    d, h = box
    client = d.client()
    for target in (str(host_canary), "../" * 12 + str(host_canary).lstrip("/"), "/"):
        refused(client, h, "/tmp/e3", make_tar(
            entry("link", kind=tarfile.SYMTYPE, link=target),
            entry("link/canary", b"pwned"),
            entry("link/etc-file", b"pwned")))
    # The symlink itself may exist (inside the container); nothing went through it.
    assert not exists_in(d, h, f"{host_canary}")
    status, _, _ = container_exec(d, h, ["test", "-e", "/etc-file"])
    assert status != 0


def test_escape_hardlink_to_host_file(box, host_canary):
    d, h = box
    client = d.client()
    for target in (f"{host_canary}/canary", "../" * 12 + f"{host_canary}/canary".lstrip("/"),
                   "/etc/passwd", "../../etc/passwd"):
        refused(client, h, "/tmp/e4", make_tar(entry("hl", kind=tarfile.LNKTYPE, link=target)))
    assert not exists_in(d, h, "/tmp/e4/hl")
    # A hardlink through a symlink planted by the archive is refused too.
    refused(client, h, "/tmp/e4b", make_tar(entry("s", kind=tarfile.SYMTYPE, link="/etc"),
                                            entry("hl", kind=tarfile.LNKTYPE, link="s/passwd")))
    assert not exists_in(d, h, "/tmp/e4b/hl")


def test_escape_symlinked_destination(box, host_canary):
    d, h = box
    client = d.client()
    # A destination that is a symlink leading "out" leads only within the container.
    client.stream_in(h, "/tmp", make_tar(entry("e5", kind=tarfile.SYMTYPE, link=str(host_canary))))
    try:
        client.stream_in(h, "/tmp/e5", make_tar(entry("canary", b"pwned")))
        assert sh(d, h, f"cat {host_canary}/canary") == "pwned"  # the container's own path
    except GardenError as e:
        assert "error streaming in" in e.message
    client.stream_in(h, "/tmp", make_tar(entry("e5b", kind=tarfile.SYMTYPE, link="../" * 12)))
    client.stream_in(h, f"/tmp/e5b{host_canary}", make_tar(entry("canary", b"pwned")))
    # StreamOut through such links reads the container, never the host.
    out = client.stream_out(h, f"/tmp/e5b{host_canary}/canary", accept="application/octet-stream")
    assert out == b"pwned"


def test_escape_stream_out_paths(box, host_canary):
    d, h = box
    client = d.client()
    for source in (f"{host_canary}/canary", "../" * 12 + f"{host_canary}/canary".lstrip("/")):
        with pytest.raises(GardenError) as e:
            client.stream_out(h, source)
        assert "No such file" in e.value.message
        with pytest.raises(GardenError):
            client.stream_out(h, source, accept="application/octet-stream")
    # A symlink comes out as a symlink, not as what it points at.
    client.stream_in(h, "/tmp/e6", make_tar(entry("l", kind=tarfile.SYMTYPE,
                                                  link=f"{host_canary}/canary")))
    assert read_tar(client.stream_out(h, "/tmp/e6/l"))["l"][:2] == (
        "sym", f"{host_canary}/canary".encode())


def test_escape_device_nodes_and_fifos(box, host_canary):
    d, h = box
    client = d.client()
    msg = refused(client, h, "/tmp/e7", make_tar(
        entry("null2", kind=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("sda", kind=tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o666),
        entry("fifo", kind=tarfile.FIFOTYPE),
        entry("ok", b"fine")))
    assert "device nodes" in msg
    for name in ("null2", "sda", "fifo"):
        assert not exists_in(d, h, f"/tmp/e7/{name}")
    assert exists_in(d, h, "/tmp/e7/ok")


def test_setuid_bits_are_stripped(box, host_canary):
    d, h = box
    client = d.client()
    client.stream_in(h, "/tmp/e8", make_tar(entry("suid", b"#!/bin/sh\n", mode=0o6755),
                                            entry("sticky/", kind=tarfile.DIRTYPE, mode=0o1777)))
    assert stat_in(d, h, "/tmp/e8/suid")[2] == "755"
    assert stat_in(d, h, "/tmp/e8/sticky")[2] == "755"
    client.stream_in(h, "/tmp/e8v", make_tar(entry("suid", b"x", mode=0o4755)), user="vcap")
    assert stat_in(d, h, "/tmp/e8v/suid") == (VCAP, VCAP, "755")


def test_gzip_body_is_refused(box, host_canary):
    d, h = box
    client = d.client()
    body = gzip.compress(make_tar(entry("f", b"x")))
    msg = refused(client, h, "/tmp/e9", body)
    assert "gzip" in msg
    with pytest.raises(GardenError) as e:
        client.stream_in(h, "/tmp/e9", body, chunked=True)
    assert "error streaming in" in e.value.message
    assert not exists_in(d, h, "/tmp/e9/f")


def test_truncated_and_garbage_tars_are_refused(box, host_canary):
    d, h = box
    client = d.client()
    whole = make_tar(entry("big", os.urandom(100_000)), entry("after", b"x"))
    refused(client, h, "/tmp/e10", whole[:50_000])
    refused(client, h, "/tmp/e10", whole[:300])  # inside the first header
    refused(client, h, "/tmp/e10", b"this is not a tar archive at all" * 40)
    assert not exists_in(d, h, "/tmp/e10/after")


def test_overlong_names_are_refused(box, host_canary):
    d, h = box
    client = d.client()
    refused(client, h, "/tmp/e11", make_tar(entry("x" * 300, b"long component")))
    refused(client, h, "/tmp/e11", make_tar(entry("/".join(["d" * 200] * 25) + "/f", b"deep")))
    refused(client, h, "/tmp/e11", make_tar(
        entry("l", kind=tarfile.SYMTYPE, link="y" * 5000)))
    status, out, _ = container_exec(d, h, ["ls", "-A", "/tmp/e11"])
    assert status == 0 and "x" * 300 not in out


# --------------------------------------------------------------------------
# curl convenience and HTTP details


def test_single_file_put_and_get(box):
    d, h = box
    client = d.client()
    for ct in ("application/octet-stream", "application/x-www-form-urlencoded", "text/plain"):
        body = f"one file as {ct}\n".encode()
        assert client.stream_in(h, "/tmp/sf/a/b/file.txt", body, content_type=ct) == {}
        assert client.stream_out(h, "/tmp/sf/a/b/file.txt",
                                 accept="application/octet-stream") == body
    assert stat_in(d, h, "/tmp/sf/a/b/file.txt")[2] == "644"
    client.stream_in(h, "sf-home.txt", b"vcap's", content_type="text/plain", user="vcap")
    assert stat_in(d, h, "/home/vcap/sf-home.txt")[:2] == (VCAP, VCAP)
    with pytest.raises(GardenError) as e:
        client.stream_out(h, "/tmp/sf", accept="application/octet-stream")
    assert "not a regular file" in e.value.message
    with pytest.raises(GardenError) as e:
        client.stream_in(h, "/root/x.txt", b"no", content_type="text/plain", user="vcap")
    assert "Permission denied" in e.value.message


def curl(d, *args, input: "bytes | None" = None) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--unix-socket", str(d.socket_path), *args],
                          input=input, capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_walk_through(box, tmp_path):
    d, h = box
    base = f"http://cloche/containers/{h}/files"
    # curl -T sends no Content-Type, and Expect: 100-continue for a large body.
    tar_path = tmp_path / "in.tar"
    data = os.urandom(3 << 20)
    tar_path.write_bytes(make_tar(entry("blob", data), entry("note", b"hi")))
    r = curl(d, "-T", str(tar_path), f"{base}?destination=/tmp/curl&user=root")
    assert r.returncode == 0 and r.stdout == b"{}\n", r
    r = curl(d, f"{base}?source=/tmp/curl/")
    assert r.returncode == 0
    members = read_tar(r.stdout)
    assert members["./blob"][1] == data and members["./note"][1] == b"hi"
    # HTTP/1.0: the body runs until close.
    r = curl(d, "--http1.0", f"{base}?source=/tmp/curl/note")
    assert read_tar(r.stdout) == {"note": ("file", b"hi", 0o644)}
    # One file, both ways.
    r = curl(d, "-XPUT", "--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
             f"{base}?destination=/tmp/curl/single.txt", input=b"single\n")
    assert r.stdout == b"{}\n", r
    r = curl(d, "-H", "Accept: application/octet-stream", f"{base}?source=/tmp/curl/single.txt")
    assert r.stdout == b"single\n"
    # Chunked from curl (stdin of unknown length).
    r = curl(d, "-T", "-", f"{base}?destination=/tmp/curl/chunked",
             input=make_tar(entry("c", b"chunked")))
    assert r.stdout == b"{}\n", r
    assert sh(d, h, "cat /tmp/curl/chunked/c") == "chunked"


def raw(d, data: bytes, timeout: float = 10.0) -> bytes:
    return d.client().raw_bytes(data, timeout=timeout)


def test_expect_continue_and_framing(box):
    d, h = box
    body = make_tar(entry("f", b"continued"))
    head = (f"PUT /containers/{h}/files?destination=%2Ftmp%2Fexp&user= HTTP/1.1\r\n"
            f"Host: api\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(d.socket_path))
        s.sendall(head)
        assert s.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    resp = parse_response(reply)
    assert resp.status == 200 and resp.body == b"{}\n"
    assert resp.headers["Content-Type"] == "application/json"
    # A chunked StreamOut reply ends with the last chunk.
    out = raw(d, f"GET /containers/{h}/files?source=%2Ftmp%2Fexp%2Ff&user= HTTP/1.1\r\n"
                 f"Host: api\r\n\r\n".encode())
    resp = parse_response(out)
    assert resp.framing == "chunked" and out.endswith(b"0\r\n\r\n")
    assert resp.headers["Content-Type"] == "application/x-tar"
    assert read_tar(resp.body)["f"][1] == b"continued"


def test_malformed_chunked_body(box):
    d, h = box
    data = (f"PUT /containers/{h}/files?destination=%2Ftmp%2Fbad&user= HTTP/1.1\r\n"
            f"Host: api\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n").encode()
    resp = parse_response(raw(d, data))
    assert resp.status == 400 and b"Malformed chunked request body" in resp.body


def test_client_that_stops_sending(box):
    d, h = box
    body = make_tar(entry("f", os.urandom(200_000)))
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(d.socket_path))
        s.sendall((f"PUT /containers/{h}/files?destination=%2Ftmp%2Fcut&user= HTTP/1.1\r\n"
                   f"Host: api\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body[:100_000])
    # The daemon gives up on the upload and still serves others.
    time.sleep(0.2)
    assert d.client().ping() == {}
    client = d.client()
    assert client.stream_in(h, "/tmp/cut2", make_tar(entry("g", b"ok"))) == {}


def test_method_not_allowed_and_keepalive(box):
    d, h = box
    status, headers, _ = d.client().raw("POST", f"/containers/{h}/files", b"{}")
    assert status == 405 and "PUT" in headers["Allow"] and "GET" in headers["Allow"]


def test_stream_in_is_charged_to_the_container(box):
    """cloche-tar joins the container's cgroups before it reads a byte, so what a
    StreamIn costs (the page cache of the files it writes) counts against the
    container's memory, not the daemon's."""
    from conftest import cgroup_controller_dir

    d, h = box
    memdir = cgroup_controller_dir(d.cgroup_parent, h, "memory")
    assert memdir, "no memory cgroup for the container"

    def usage() -> int:
        for name in ("memory.usage_in_bytes", "memory.current"):
            path = os.path.join(memdir, name)
            if os.path.exists(path):
                with open(path) as f:
                    return int(f.read())
        raise AssertionError("no memory usage file")

    sh(d, h, "rm -rf /tmp/charged")
    before = usage()
    data = os.urandom(1 << 20) * 32  # 32 MiB of page cache once written
    d.client().stream_in(h, "/tmp/charged", make_tar(entry("f.bin", data)))
    grew = usage() - before
    assert grew >= 16 << 20, f"the container's memory grew by only {grew} bytes"
    sh(d, h, "rm -rf /tmp/charged")


def test_stream_in_that_does_not_fit_fails_and_says_so(containers):
    """A StreamIn whose data does not fit in the container's disk limit fails
    with the kernel's "No space left on device", as tar would, and the file
    written so far is not passed off as whole (before, libarchive's failed write
    counted as a warning: the file was extended to its full length with zeros
    and the StreamIn answered 200). What fits still goes in."""
    client = containers.daemon.client()
    h = containers.create(limits={"disk_limits": {"byte_hard": 32 << 20, "scope": 1}})
    big = os.urandom(40 << 20)
    with pytest.raises(GardenError) as e:
        client.stream_in(h, "/tmp/full", make_tar(entry("big", big)))
    assert "No space left on device" in e.value.message, e.value.message
    with pytest.raises(GardenError) as e:
        client.stream_in(h, "/tmp/full/one", big, content_type="application/octet-stream")
    assert "No space left on device" in e.value.message, e.value.message
    assert container_exec(containers.daemon, h, ["rm", "-rf", "/tmp/full"])[0] == 0
    client.stream_in(h, "/tmp/fits", make_tar(entry("small", b"fits\n")))
    assert read_tar(client.stream_out(h, "/tmp/fits/small"))["small"][1] == b"fits\n"


def test_stream_out_of_a_file_being_rewritten_fails_or_is_whole(box):
    """A file that a process keeps rewriting (truncated, then written again) may
    be read at a size it no longer has: the StreamOut then fails (its body ends
    without its last chunk, and the log says the file shrank), or the tar holds
    the file whole. Before, a file that shrank was padded with zeros in a tar
    that ended as if complete."""
    d, h = box
    client = d.client()
    sh(d, h, "mkdir -p /tmp/rw")
    writer = client.run(h, {"path": "sh", "args": [
        "-c", "while [ ! -e /tmp/rw-stop ]; do head -c 2000000 /dev/zero | "
              "tr '\\0' a > /tmp/rw/f; done"]})
    outcomes = []
    try:
        for _ in range(20):
            try:
                data = client.stream_out(h, "/tmp/rw")
            except (ProtocolError, GardenError):
                outcomes.append("failed")
                continue
            kind, content, _ = read_tar(data)["rw/f"]
            assert kind == "file" and content.strip(b"a") == b"", "zeros in a file read whole"
            outcomes.append("whole")
    finally:
        sh(d, h, "touch /tmp/rw-stop")
        assert writer.wait(15) == 0
        writer.close()
    assert outcomes
    assert "shrank by" in d.log_text() or "failed" not in outcomes


def test_single_file_forms_refuse_a_fifo_at_once(box):
    """StreamOut and StreamIn of one file refuse a FIFO at once (before, the
    helper's open waited for a writer or a reader for ever, and the request,
    its thread and the helper with it)."""
    d, h = box
    client = d.client()
    sh(d, h, "mkdir -p /tmp/ff && mkfifo /tmp/ff/pipe && echo data > /tmp/ff/plain")
    t0 = time.monotonic()
    with pytest.raises(GardenError) as e:
        client.stream_out(h, "/tmp/ff/pipe", accept="application/octet-stream")
    assert "'/tmp/ff/pipe' is not a regular file" in e.value.message, e.value.message
    with pytest.raises(GardenError) as e:
        client.stream_in(h, "/tmp/ff/pipe", b"x", content_type="application/octet-stream")
    assert "'/tmp/ff/pipe' is not a regular file" in e.value.message, e.value.message
    assert time.monotonic() - t0 < 10
    assert client.stream_out(h, "/tmp/ff/plain", accept="application/octet-stream") == b"data\n"
