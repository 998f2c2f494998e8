"""docker:// and oci:// root file systems: real registries (Debian's
docker-registry, anonymous, htpasswd, token and TLS), images built with umoci
and pushed with skopeo, a hostile registry, concurrent and interrupted pulls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import DEFAULT_ROOTFS, DaemonFactory, remove_tree, wait_until
from garden_client import GardenError
import imagekit
from imagekit import HostileRegistry, Registry, TokenServer, tar_bytes

pytestmark = pytest.mark.skipif(bool(imagekit.missing_tools()),
                                reason=f"missing {imagekit.missing_tools()}")

WAIT = 60


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    path = tmp_path_factory.mktemp("images")
    yield path
    remove_tree(path)


@pytest.fixture(scope="module")
def layout(work):
    return imagekit.build_layout(work, DEFAULT_ROOTFS)


@pytest.fixture(scope="module")
def certs(work):
    d = work / "certs"
    d.mkdir()
    return imagekit.make_ca(d)


@pytest.fixture(scope="module")
def anon(work, layout):
    r = Registry(work, "anon")
    try:
        # zstd first: skopeo reuses a blob the registry already has, whatever
        # the compression asked for.
        r.push(layout, "base", "test/zstd:latest", extra=["--dest-compress-format", "zstd"])
        layers = r.manifest("test/zstd", "latest")["layers"]
        assert [l["mediaType"] for l in layers] == ["application/vnd.oci.image.layer.v1.tar+zstd"]
        r.push(layout, "base", "library/base:latest")
        r.push(layout, "multi", "test/multi:v1")
        r.push(layout, "multiarch", "test/multiarch:latest", extra=["--all"])
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def basic(work, layout):
    pw = work / "htpasswd"
    pw.write_text(imagekit.sh("htpasswd", "-Bbn", "alice", "s3cret"))
    r = Registry(work, "basic", htpasswd=pw)
    try:
        r.push(layout, "base", "private/base:latest", creds="alice:s3cret")
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def token(work, layout, certs):
    ts = TokenServer(certs["token_key"], certs["token_crt"], "bob", "t0ken")
    r = Registry(work, "token", token=ts, token_crt=certs["token_crt"])
    try:
        r.push(layout, "base", "tok/base:latest", creds="bob:t0ken")
        yield r, ts
    finally:
        r.close()
        ts.close()


@pytest.fixture(scope="module")
def tls(work, layout, certs):
    r = Registry(work, "tls", tls=certs)
    try:
        r.push(layout, "base", "secure/base:latest")
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def hostile():
    h = HostileRegistry()
    yield h
    h.close()


def image_args(*registries, extra=()):
    args = ["--registry-stall-timeout", "3"]
    for r in registries:
        args += ["--insecure-registry", r.host]
    return args + list(extra)


@pytest.fixture(scope="module")
def images_daemon(request, sandbox_guard, anon, hostile):
    factory = DaemonFactory(request.node.nodeid)
    try:
        yield factory(*image_args(anon, hostile,
                                  extra=["--registry-mirror", f"http://{anon.host}"]))
    finally:
        leftovers = factory.cleanup()
    assert not leftovers, f"cgroups left behind: {leftovers}"


def sh_in(client, handle: str, script: str, user: str = "root") -> tuple[int, str]:
    p = client.run(handle, {"path": "/bin/sh", "args": ["-c", script], "user": user})
    try:
        status = p.wait(WAIT)
        return status, p.stdout.decode()
    finally:
        p.close()


def out_in(client, handle: str, script: str) -> str:
    status, out = sh_in(client, handle, script)
    assert status == 0, f"{script!r} exited {status}: {out!r}"
    return out


def store_dir(d) -> Path:
    return Path(d.depot) / "images"


def store_entries(d) -> tuple[set, set, list]:
    s = store_dir(d)
    return (set(os.listdir(s / "layers")), set(os.listdir(s / "meta")), os.listdir(s / "tmp"))


def create(client, uri: str, **spec) -> str:
    body = {"image": {"uri": uri}}
    body.update(spec)
    return client.create(body)


def host_listing(root: Path, top: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root / top):
        for n in dirnames + filenames:
            out.append("/" + str((Path(dirpath) / n).relative_to(root)))
    return sorted(out)


# ---- references


@pytest.mark.parametrize("uri,reason", [
    ("docker:///UPPER/case", "invalid repository"),
    ("docker:///busybox#bad tag", "invalid tag"),
    ("docker:///busybox@sha256:1234", "invalid digest"),
    ("docker://host:99999/x", "invalid registry"),
    ("docker://hostonly", "names no repository"),
    ("oci://relative/path", "absolute layout path"),
    ("ftp://example.com/x", "Unsupported image"),
    ("raw:///no,commas", "cannot take"),
])
def test_malformed_reference_is_400_with_reason(images_daemon, layout, uri, reason):
    c = images_daemon.client()
    with pytest.raises(GardenError) as e:
        create(c, uri)
    assert e.value.status == 400
    assert reason in e.value.message, e.value.message
    # The well-formed form of the same thing works.
    h = create(c, f"oci://{layout}#base")
    c.destroy(h)


# ---- local layout and registry pulls


def test_oci_layout_image_runs_with_its_config(images_daemon, layout):
    c = images_daemon.client()
    h = create(c, f"oci://{layout}#base", env=["CLASH=container", "MINE=1"])
    try:
        # The tree is the busybox rootfs, exactly.
        for top in ("bin", "etc", "usr/bin"):
            got = out_in(c, h, f"find /{top} | sort").split()
            assert got == [f"/{top}"] + host_listing(DEFAULT_ROOTFS, top), top
        env = out_in(c, h, "env")
        assert "FROM_IMAGE=yes" in env.split()
        assert "CLASH=container" in env.split() and "CLASH=image" not in env.split()
        assert "MINE=1" in env.split()
        props = c.properties(h)
        assert props["cloche.image.user"] == "1000:1000"
        assert props["cloche.image.working-dir"] == "/home/vcap"
        assert props["cloche.image.entrypoint"] == "/bin/sh"
        assert props["cloche.image.cmd"] == "-c\necho hi"
        assert props["cloche.image.exposed-ports"] == "8080/tcp"
        assert props["cloche.image.digest"].startswith("sha256:")
        # Writes land in the container's own layer, not in the shared store.
        out_in(c, h, "echo new > /etc/written && rm /bin/ls")
        layers = [store_dir(images_daemon) / "layers" / x
                  for x in os.listdir(store_dir(images_daemon) / "layers")]
        assert all((l / "bin" / "ls").exists() or not (l / "bin").exists() for l in layers)
        assert not any((l / "etc" / "written").exists() for l in layers)
    finally:
        c.destroy(h)


def test_docker_hub_form_through_the_mirror_and_by_digest(images_daemon, anon, layout):
    c = images_daemon.client()
    digest = None
    for uri in ("docker:///base", "docker:///library/base#latest",
                f"docker://{anon.host}/library/base#latest"):
        h = create(c, uri)
        try:
            assert out_in(c, h, "cat /etc/passwd").startswith("root:")
            d = c.properties(h)["cloche.image.digest"]
            assert digest in (None, d)
            digest = d
        finally:
            c.destroy(h)
    h = create(c, f"docker://{anon.host}/library/base@{digest}")
    c.destroy(h)
    with pytest.raises(GardenError) as e:
        create(c, f"docker://{anon.host}/library/base@sha256:{'0' * 64}")
    assert e.value.status == 404


@pytest.mark.parametrize("privileged", [False, True])
def test_five_layers_whiteout_opaque_and_cross_layer_hardlink(images_daemon, anon, privileged):
    c = images_daemon.client()
    h = create(c, f"docker://{anon.host}/test/multi#v1", privileged=privileged)
    try:
        assert out_in(c, h, "cat /data/keep") == "keep\n"
        assert out_in(c, h, "ls -A /data") == "keep\n"
        assert out_in(c, h, "ls -A /olddir") == "z\n"
        assert out_in(c, h, "cat /hl/link /hl/orig") == "linked content\n" * 2
        assert out_in(c, h, "stat -c %a /hl/link") == "640\n"
        # Within one layer a hard link stays a hard link.
        assert out_in(c, h, "stat -c %i /hl/samelayer /hl/samelink | uniq | wc -l") == "1\n"
        # Deleting over a lower layer works like any overlay.
        out_in(c, h, "rm /data/keep && test ! -e /data/keep")
    finally:
        c.destroy(h)


def test_multi_platform_index_picks_linux_amd64(images_daemon, anon):
    c = images_daemon.client()
    h = create(c, f"docker://{anon.host}/test/multiarch")
    try:
        assert out_in(c, h, "cat /platform") == "amd64\n"
    finally:
        c.destroy(h)


def test_zstd_layers(images_daemon, anon):
    c = images_daemon.client()
    h = create(c, f"docker://{anon.host}/test/zstd")
    try:
        assert out_in(c, h, "cat /etc/passwd").startswith("root:")
    finally:
        c.destroy(h)


# ---- authentication and TLS


def test_basic_auth(request, sandbox_guard, basic):
    factory = DaemonFactory(request.node.nodeid)
    try:
        c = factory(*image_args(basic)).client()
        uri = f"docker://{basic.host}/private/base"
        with pytest.raises(GardenError) as e:
            create(c, uri)
        assert e.value.status == 400 and "requires credentials" in e.value.message
        with pytest.raises(GardenError) as e:
            c.create({"image": {"uri": uri, "username": "alice", "password": "wrong"}})
        assert e.value.status == 400 and "refused" in e.value.message
        h = c.create({"image": {"uri": uri, "username": "alice", "password": "s3cret"}})
        assert out_in(c, h, "echo ok") == "ok\n"
        c.destroy(h)
    finally:
        assert not factory.cleanup()


def test_token_auth(request, sandbox_guard, token):
    registry, ts = token
    factory = DaemonFactory(request.node.nodeid)
    try:
        c = factory(*image_args(registry)).client()
        uri = f"docker://{registry.host}/tok/base"
        with pytest.raises(GardenError) as e:
            create(c, uri)
        assert e.value.status == 400 and "refused anonymous access" in e.value.message
        before = len(ts.requests)
        h = c.create({"image": {"uri": uri, "username": "bob", "password": "t0ken"}})
        assert out_in(c, h, "echo ok") == "ok\n"
        c.destroy(h)
        assert any("scope=repository%3Atok%2Fbase%3Apull" in p for p in ts.requests[before:])
    finally:
        assert not factory.cleanup()


def test_tls_with_a_registry_ca(request, sandbox_guard, tls, certs):
    factory = DaemonFactory(request.node.nodeid)
    try:
        uri = f"docker://{tls.host}/secure/base"
        plain = factory("--registry-stall-timeout", "3").client()
        with pytest.raises(GardenError) as e:
            create(plain, uri)
        assert e.value.status == 502 and "certificate" in e.value.message.lower()
        c = factory("--registry-ca", str(certs["ca"])).client()
        h = create(c, uri)
        assert out_in(c, h, "echo ok") == "ok\n"
        c.destroy(h)
    finally:
        assert not factory.cleanup()


# ---- a registry that lies or attacks


@pytest.fixture(scope="module")
def hostile_images(hostile, work):
    victim = work / "victim"
    victim.mkdir()
    busybox = (DEFAULT_ROOTFS / "bin" / "busybox").read_bytes()

    def good(name):  # a layer of its own per image: nothing cached from another
        return tar_bytes([("bin", "dir", None, 0o755), ("bin/busybox", "file", busybox, 0o755),
                          ("bin/sh", "symlink", "busybox", 0o777),
                          ("bin/cat", "symlink", "busybox", 0o777),
                          ("ok", "file", b"fine\n", 0o644), ("name", "file", name.encode(), 0o644)])

    hostile.add("good", good("good"))
    hostile.add("wrongdigest", good("wrongdigest"), lie_config=True)
    hostile.add("truncated", good("truncated"), "truncated")
    hostile.add("oversized", good("oversized"), "oversized")
    hostile.add("stalling", good("stalling"), "stall")
    hostile.add("dotdot", tar_bytes([("../../escaped", "file", b"x", 0o644)]))
    hostile.add("absolute", tar_bytes([(f"{victim}/abs", "file", b"x", 0o644)]))
    hostile.add("symlinkdir", tar_bytes([("evil", "symlink", str(victim), 0o777),
                                         ("evil/pwned", "file", b"x", 0o644)]))
    hostile.add("symlinkrel", tar_bytes([("up", "symlink", "../../../../../../..", 0o777),
                                         (f"up{victim}/rel", "file", b"x", 0o644)]))
    hostile.add("hardlink", tar_bytes([("evil", "symlink", "/etc", 0o777),
                                       ("shadow", "link", "evil/shadow", 0o644)]))
    return victim


@pytest.mark.parametrize("repo,status,words", [
    ("wrongdigest", 502, "does not match its digest"),
    ("truncated", 502, "Registry"),
    ("oversized", 502, "more than"),
    ("stalling", 502, "stalled"),
    ("dotdot", 502, "leaves it"),
    ("absolute", 502, "leaves it"),
    ("symlinkdir", 502, "through a symlink"),
    ("symlinkrel", 502, "through a symlink"),
    ("hardlink", 502, "through a symlink"),
])
def test_hostile_registry(images_daemon, hostile, hostile_images, repo, status, words):
    c = images_daemon.client()
    layers_before, meta_before, _ = store_entries(images_daemon)
    with pytest.raises(GardenError) as e:
        create(c, f"docker://{hostile.host}/{repo}")
    assert e.value.status == status, e.value.message
    assert words in e.value.message, e.value.message
    layers, meta, tmp = store_entries(images_daemon)
    assert (layers, meta, tmp) == (layers_before, meta_before, [])
    assert os.listdir(hostile_images) == []
    assert not (Path("/escaped").exists())
    assert c.list() == [] or all(c.list())
    # The same registry's honest image works.
    h = create(c, f"docker://{hostile.host}/good")
    assert out_in(c, h, "cat /ok") == "fine\n"
    c.destroy(h)


# ---- concurrency, crashes, eviction


def test_parallel_creates_download_each_layer_once(request, sandbox_guard, anon, layout):
    factory = DaemonFactory(request.node.nodeid)
    try:
        d = factory(*image_args(anon))
        anon.push(layout, "multi", "fresh/multi:latest")
        manifest = imagekit.manifest_of(layout, "multi")
        digests = [l["digest"] for l in manifest["layers"]]
        before = {dg: anon.blob_gets(dg) for dg in digests}
        handles, errors = [], []

        def one():
            try:
                handles.append(create(d.client(), f"docker://{anon.host}/fresh/multi"))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(handles) == 10
        got = {dg: anon.blob_gets(dg) - before[dg] for dg in digests}
        assert got == {dg: 1 for dg in digests}, got
        c = d.client()
        for h in handles:
            assert out_in(c, h, "cat /data/keep") == "keep\n"
            c.destroy(h)
    finally:
        assert not factory.cleanup()


def test_sigkill_mid_pull_leaves_nothing_partial(request, sandbox_guard, hostile,
                                                  hostile_images, anon):
    factory = DaemonFactory(request.node.nodeid)
    try:
        d = factory(*image_args(anon, hostile, extra=["--registry-stall-timeout", "30"]))
        hostile.stall.clear()
        n_gets = len(hostile.gets)

        def pull():
            try:
                create(d.client(), f"docker://{hostile.host}/stalling")
            except Exception:  # noqa: BLE001 - the daemon dies under it
                pass

        t = threading.Thread(target=pull)
        t.start()
        assert wait_until(lambda: any("/blobs/" in g for g in hostile.gets[n_gets:])
                          and len(os.listdir(store_dir(d) / "tmp")) >= 0, 10)
        time.sleep(0.5)
        d.kill()
        t.join(30)
        hostile.stall.set()
        layers, meta, _ = store_entries(d)
        assert layers == set() and meta == set()
        d.start()
        assert store_entries(d) == (set(), set(), [])
        c = d.client()
        h = create(c, f"docker://{anon.host}/library/base")
        assert out_in(c, h, "echo ok") == "ok\n"
        c.destroy(h)
    finally:
        hostile.stall.set()
        assert not factory.cleanup()


def test_lru_eviction_spares_layers_in_use(request, sandbox_guard, anon, layout):
    factory = DaemonFactory(request.node.nodeid)
    try:
        d = factory(*image_args(anon, extra=["--image-cache-bytes", "1",
                                             "--image-cache-grace", "0"]))
        c = d.client()
        keep = create(c, f"docker://{anon.host}/test/multiarch")
        kept_layers, _, _ = store_entries(d)
        assert kept_layers
        gone = create(c, f"docker://{anon.host}/test/zstd")
        c.destroy(gone)
        time.sleep(1.1)
        # A third pull evicts what no container uses, least recently used first.
        third = create(c, f"docker://{anon.host}/test/multi#v1")
        layers, meta, tmp = store_entries(d)
        multi = {l["digest"][7:] for l in imagekit.manifest_of(layout, "multi")["layers"]}
        # The zstd image's layer went; the layers of both containers stayed.
        assert layers == kept_layers | multi
        assert layers == meta and tmp == []
        assert out_in(c, keep, "cat /platform") == "amd64\n"
        assert out_in(c, third, "cat /data/keep") == "keep\n"
        assert "evicted layer" in d.log_text()
        c.destroy(third)
        c.destroy(keep)
    finally:
        assert not factory.cleanup()


# ---- the image routes (cloche extensions)


def test_pull_streams_progress_then_list_and_remove(images_daemon, anon, layout):
    from urllib.parse import quote
    c = images_daemon.client()
    uri = f"docker://{anon.host}/test/multi#v1"
    name = f"{anon.host}/test/multi:v1"
    # Another image sharing the base layer.
    assert c.request("POST", "/cloche/images/pull?ref=docker%3A%2F%2F%2Fbase").status == 200
    resp = c.request("POST", f"/cloche/images/pull?ref={quote(uri, safe='')}", timeout=60)
    assert resp.status == 200 and resp.framing == "chunked"
    assert resp.headers.get("Content-Type") == "application/x-ndjson"
    lines = [json.loads(l) for l in resp.body.decode().splitlines()]
    manifest = imagekit.manifest_of(layout, "multi")
    want = {l["digest"]: l["size"] for l in manifest["layers"]}
    finished = {l["layer"]: l["total"] for l in lines[:-1] if l["done"] == l["total"]}
    assert finished == want
    digest = lines[-1]["digest"]
    assert digest.startswith("sha256:")

    cap = c.capacity()
    assert cap["cloche_image_store_layers"] >= 5
    assert cap["cloche_image_store_bytes"] >= sum(want.values()) // 2
    listed = {i["name"]: i for i in c.request("GET", "/cloche/images").json()["images"]}
    assert listed[name]["digest"] == digest
    assert listed[name]["layers"] == 5 and listed[name]["containers"] == 0
    assert listed[name]["bytes"] > 0

    h = create(c, uri)
    assert c.request("GET", "/cloche/images").json()["images"] and \
        {i["name"]: i for i in c.request("GET", "/cloche/images").json()["images"]}[name][
            "containers"] == 1
    target = f"/cloche/images?ref={quote(uri, safe='')}"
    resp = c.request("DELETE", target)
    assert resp.status == 409, resp.body
    c.destroy(h)
    layers_before, _, _ = store_entries(images_daemon)
    resp = c.request("DELETE", target)
    assert resp.status == 200, resp.body
    assert name not in {i["name"] for i in c.request("GET", "/cloche/images").json()["images"]}
    layers_after, meta_after, tmp = store_entries(images_daemon)
    # multi's own four layers went; the base layer other images share stayed.
    own = {d[7:] for d in want} - {l["digest"][7:]
                                   for l in imagekit.manifest_of(layout, "base")["layers"]}
    assert len(own) == 4
    assert layers_after == layers_before - own and meta_after == layers_after and tmp == []
    assert c.request("DELETE", target).status == 404
    assert c.request("DELETE", "/cloche/images?ref=nonsense").status == 400
    bad = c.request("POST", "/cloche/images/pull?ref=docker%3A%2F%2F%2FBAD")
    assert bad.status == 400 and "invalid repository" in bad.json()["Message"]
    # Pulled again, it is whole again.
    resp = c.request("POST", f"/cloche/images/pull?ref={quote(uri, safe='')}", timeout=60)
    assert json.loads(resp.body.decode().splitlines()[-1])["digest"] == digest


def test_import_oci_and_docker_save_archives(images_daemon, layout, work):
    from urllib.parse import quote
    c = images_daemon.client()
    oci = work / "base-oci.tar"
    docker = work / "multi-docker.tar"
    for p in (oci, docker):
        if p.exists():
            p.unlink()
    imagekit.sh("skopeo", "copy", f"oci:{layout}:base", f"oci-archive:{oci}")
    imagekit.sh("skopeo", "copy", f"oci:{layout}:multi", f"docker-archive:{docker}:app:v1")
    names = imagekit.sh("tar", "-tf", docker).split()
    assert "manifest.json" in names and "index.json" not in names  # the docker save form

    resp = c.request("PUT", "/cloche/images/imported-base", oci.read_bytes(),
                     content_type="application/x-tar", timeout=60)
    assert resp.status == 200, resp.body
    assert resp.json()["digest"].startswith("sha256:")
    resp = c.request("PUT", "/cloche/images/team%2Fapp:v1", docker.read_bytes(),
                     content_type="application/x-tar", timeout=60)
    assert resp.status == 200, resp.body

    h = create(c, "cloche:///imported-base")
    try:
        assert out_in(c, h, "cat /etc/passwd").startswith("root:")
        assert "FROM_IMAGE=yes" in out_in(c, h, "env").split()
    finally:
        c.destroy(h)
    h = create(c, "cloche:///team/app:v1")
    try:
        assert out_in(c, h, "ls -A /data /olddir") == "/data:\nkeep\n\n/olddir:\nz\n"
        assert out_in(c, h, "cat /hl/link") == "linked content\n"
    finally:
        c.destroy(h)
    names = {i["name"] for i in c.request("GET", "/cloche/images").json()["images"]}
    assert {"cloche/imported-base:latest", "cloche/team/app:v1"} <= names

    # Not archives, or hostile ones: 400, nothing stored.
    layers_before, _, _ = store_entries(images_daemon)
    evil = tar_bytes([("index.json", "file", b"{}", 0o644), ("../escape", "file", b"x", 0o644)])
    for body, words in ((os.urandom(4096), "invalid"), (evil, "leaves it"),
                        (tar_bytes([("x", "file", b"x", 0o644)]), "neither")):
        resp = c.request("PUT", "/cloche/images/bad:one", body,
                         content_type="application/x-tar")
        assert resp.status == 400 and words in resp.json()["Message"], resp.body
    assert store_entries(images_daemon) == (layers_before, layers_before, [])
    with pytest.raises(GardenError) as e:
        create(c, "cloche:///bad:one")
    assert e.value.status == 404
    assert c.request("DELETE", f"/cloche/images?ref={quote('cloche:///team/app:v1', safe='')}"
                     ).status == 200
    with pytest.raises(GardenError) as e:
        create(c, "cloche:///team/app:v1")
    assert e.value.status == 404


@pytest.mark.parametrize("privileged", [False, True])
def test_commit_writable_layer_as_a_new_image(images_daemon, anon, privileged):
    c = images_daemon.client()
    h = create(c, f"docker://{anon.host}/test/multi#v1", privileged=privileged)
    tag = f"committed:{'priv' if privileged else 'unpriv'}"
    try:
        out_in(c, h, "mkdir /new && echo made > /new/file && ln /new/file /new/link && "
                     "chown 1000:1000 /new/file && rm /data/keep && rm -rf /olddir && "
                     "mkdir /olddir && echo w > /olddir/w")
        resp = c.request("POST", f"/containers/{h}/cloche/commit?name={tag}")
        assert resp.status == 200, resp.body
        assert resp.json()["digest"].startswith("sha256:")
    finally:
        c.destroy(h)
    for priv in (False, True):
        h2 = create(c, f"cloche:///{tag}", privileged=priv)
        try:
            assert out_in(c, h2, "cat /new/file /new/link") == "made\n" * 2
            assert out_in(c, h2, "stat -c '%u %g %h' /new/file") == "1000 1000 2\n"
            assert out_in(c, h2, "ls -A /data") == ""
            assert out_in(c, h2, "ls -A /olddir") == "w\n"
            assert out_in(c, h2, "cat /hl/link") == "linked content\n"
            assert c.properties(h2)["cloche.image.user"] == "1000:1000"
        finally:
            c.destroy(h2)
    listed = {i["name"]: i for i in c.request("GET", "/cloche/images").json()["images"]}
    assert listed[f"cloche/{tag}"]["layers"] == 6
    # A container on a raw rootfs has no image to commit onto.
    raw = c.create({})
    try:
        resp = c.request("POST", f"/containers/{raw}/cloche/commit?name=nope")
        assert resp.status == 400 and "not created from an image" in resp.json()["Message"]
        assert c.request("POST", f"/containers/{raw}/cloche/commit").status == 400
    finally:
        c.destroy(raw)


def test_commit_of_a_file_being_rewritten_is_409_or_whole(images_daemon, anon):
    """A file that a process keeps rewriting (truncated, then written again) is
    read by the commit at a size it no longer has: the commit is a 409 that says
    so, or, when the file held still, the image has it whole. Before, a file
    that shrank was padded with zeros and the commit succeeded."""
    c = images_daemon.client()
    h = create(c, f"docker://{anon.host}/test/multi#v1")
    writer = c.run(h, {"path": "sh", "args": ["-c", "while :; do head -c 2000000 /dev/zero | "
                                                    "tr '\\0' a > /f; done"]})
    outcomes = []
    try:
        for i in range(8):
            resp = c.request("POST", f"/containers/{h}/cloche/commit?name=rewritten:{i}")
            if resp.status == 409:
                assert "changed while it was read" in resp.json()["Message"], resp.body
                outcomes.append("409")
                continue
            assert resp.status == 200, resp.body
            h2 = create(c, f"cloche:///rewritten:{i}")
            try:
                # All of it 'a': no zeros where the file was cut short.
                assert out_in(c, h2, "tr -d a < /f | wc -c").strip() == "0"
            finally:
                c.destroy(h2)
            outcomes.append("whole")
    finally:
        writer.close()
        c.destroy(h)
    assert outcomes, outcomes


def test_commit_whose_name_cannot_be_written_fails_and_a_kept_name_survives_a_restart(
        request, sandbox_guard, anon):
    """A commit whose name cannot be written to the store (a full disk; the
    image.tag fault of the test builds) fails and says so, and the name is not
    given out from memory only (before, the commit answered 200 and the name was
    gone after a restart, and with it the only way to the image). A commit whose
    name was written finds it again after a restart."""
    factory = DaemonFactory(request.node.nodeid)
    try:
        d = factory.new(*image_args(anon))
        d.env["CLOCHE_TEST_FAULT"] = "image.tag:1"
        d.start()
        c = d.client()
        h = create(c, f"docker://{anon.host}/test/multi#v1")
        out_in(c, h, "echo kept > /kept")
        resp = c.request("POST", f"/containers/{h}/cloche/commit?name=lost:1")
        assert resp.status == 500, resp.body
        assert "Failed to record the name 'cloche/lost:1'" in resp.json()["Message"], resp.body
        names = {i["name"] for i in c.request("GET", "/cloche/images").json()["images"]}
        assert "cloche/lost:1" not in names, names
        resp = c.request("POST", f"/containers/{h}/cloche/commit?name=kept:1")
        assert resp.status == 200, resp.body
        c.destroy(h)
        d.env.pop("CLOCHE_TEST_FAULT")
        d.restart()
        c = d.client()
        names = {i["name"] for i in c.request("GET", "/cloche/images").json()["images"]}
        assert "cloche/kept:1" in names and "cloche/lost:1" not in names, names
        h = create(c, "cloche:///kept:1")
        assert out_in(c, h, "cat /kept") == "kept\n"
        c.destroy(h)
    finally:
        assert not factory.cleanup()


def test_commit_sets_the_config_checks_the_parent_and_can_skip_the_layer(images_daemon, anon):
    c = images_daemon.client()
    h = create(c, f"docker://{anon.host}/test/multi#v1")
    base = c.properties(h)["cloche.image.digest"]
    change = {"config": {"Env": ["MODE=built", "PATH=/opt/bin:/bin:/usr/bin"],
                         "Labels": {"org.example.role": "web"},
                         "ExposedPorts": {"8080/tcp": {}}, "User": "0:0",
                         "WorkingDir": "/srv", "Cmd": ["/bin/sh", "-c", "echo $MODE"],
                         "Entrypoint": None},
              "created_by": "CMD echo", "parent": base}
    try:
        out_in(c, h, "echo layer > /made")
        # A parent that is not the container's image is refused, and nothing is named.
        resp = c.request("POST", f"/containers/{h}/cloche/commit?name=cfg:wrong",
                         json.dumps({**change, "parent": "sha256:" + "0" * 64}))
        assert resp.status == 409 and base in resp.json()["Message"], resp.body
        for bad in ({"config": {"Env": ["NOEQUALS"]}}, {"config": {"Bogus": 1}}, {"bogus": 1},
                    {"config": {"WorkingDir": "relative"}}, {"layer": "no"}):
            resp = c.request("POST", f"/containers/{h}/cloche/commit?name=cfg:bad",
                             json.dumps(bad))
            assert resp.status == 400, (bad, resp.body)
        # Only a parent check: the base's config, a layer.
        resp = c.request("POST", f"/containers/{h}/cloche/commit?name=cfg:plain",
                         json.dumps({"parent": base}))
        assert resp.status == 200, resp.body
        resp = c.request("POST", f"/containers/{h}/cloche/commit?name=cfg:v1", json.dumps(change))
        assert resp.status == 200, resp.body
        with_layer = resp.json()["digest"]
        resp = c.request("POST", f"/containers/{h}/cloche/commit?name=cfg:nolayer",
                         json.dumps({**change, "layer": False}))
        assert resp.status == 200, resp.body
        assert resp.json()["digest"] not in (with_layer, base)
    finally:
        c.destroy(h)
    listed = {i["name"]: i for i in c.request("GET", "/cloche/images").json()["images"]}
    assert listed["cloche/cfg:v1"]["layers"] == listed["cloche/cfg:nolayer"]["layers"] + 1
    assert "cloche/cfg:wrong" not in listed and "cloche/cfg:bad" not in listed
    h2 = create(c, "cloche:///cfg:v1")
    h3 = create(c, "cloche:///cfg:nolayer")
    try:
        props = c.properties(h2)
        assert props["cloche.image.cmd"] == "/bin/sh\n-c\necho $MODE"
        assert props["cloche.image.working-dir"] == "/srv"
        assert props["cloche.image.exposed-ports"] == "8080/tcp"
        assert "cloche.image.entrypoint" not in props
        assert out_in(c, h2, "echo $MODE; cat /made") == "built\nlayer\n"
        assert out_in(c, h3, "echo $MODE; test -e /made || echo absent") == "built\nabsent\n"
    finally:
        c.destroy(h2)
        c.destroy(h3)
    # The config itself, through an export: labels, history, parent, diff_ids.
    import io
    import tarfile
    resp = c.request("GET", "/cloche/images/cfg:v1/archive", timeout=60)
    assert resp.status == 200
    with tarfile.open(fileobj=io.BytesIO(resp.body)) as t:
        blobs = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    index = json.loads(blobs["index.json"])
    manifest = json.loads(blobs["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert config["config"]["Labels"] == {"org.example.role": "web"}
    assert "MODE=built" in config["config"]["Env"] and config["parent"] == base
    assert config["history"][-1]["created_by"] == "CMD echo"
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])


def test_export_as_oci_archive_round_trips(images_daemon, anon, work):
    from urllib.parse import quote
    c = images_daemon.client()
    uri = f"docker://{anon.host}/test/multi#v1"
    assert c.request("POST", f"/cloche/images/pull?ref={quote(uri, safe='')}",
                     timeout=60).status == 200
    resp = c.request("GET", f"/cloche/images/{quote(uri, safe='')}/archive", timeout=60)
    assert resp.status == 200 and resp.headers.get("Content-Type") == "application/x-tar"
    archive = work / "exported.tar"
    archive.write_bytes(resp.body)
    # skopeo reads it as the OCI archive it claims to be.
    info = json.loads(imagekit.sh("skopeo", "inspect", f"oci-archive:{archive}"))
    assert len(info["Layers"]) == 5
    assert "FROM_IMAGE=yes" in info["Env"]
    # And it comes back in whole.
    resp = c.request("PUT", "/cloche/images/roundtrip:v1", archive.read_bytes(),
                     content_type="application/x-tar", timeout=60)
    assert resp.status == 200, resp.body
    h = create(c, "cloche:///roundtrip:v1")
    try:
        assert out_in(c, h, "ls -A /data /olddir") == "/data:\nkeep\n\n/olddir:\nz\n"
        assert out_in(c, h, "cat /hl/link") == "linked content\n"
        assert out_in(c, h, "stat -c %i /hl/samelayer /hl/samelink | uniq | wc -l") == "1\n"
    finally:
        c.destroy(h)
    assert c.request("GET", "/cloche/images/never:seen/archive").status == 404


def test_a_layer_that_does_not_fit_in_the_depot_fails_the_create(request, sandbox_guard, work,
                                                                  layout):
    """A layer whose files do not fit on the depot's file system fails the create
    with the kernel's "No space left on device" at the file that did not fit, and
    leaves no layer in the store (before, libarchive's failed write counted as a
    warning: the file was extended to its full length with zeros, and the
    extraction went on as if whole).
    The depot here is a 40 MiB tmpfs of the test's own mount namespace; the
    layer's blob fits in it, its 48 MiB file does not."""
    # Compressible, so the blob fits and its extraction does not.
    imagekit.add_layer(layout, "base", "toobig",
                       [("big", "file", b"cloche!\n" * (6 << 20), 0o644)], work)
    top = work / "small-depot"
    top.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "cloche-test", str(top)],
                   check=True)
    factory = DaemonFactory(request.node.nodeid)
    try:
        d = factory(depot=top / "depot")
        c = d.client()
        with pytest.raises(GardenError) as e:
            create(c, f"oci://{layout}#toobig")
        # Found at the file itself (before, only a later write of the store's
        # own record failed, when one happened to find the disk still full).
        assert "Failed to write 'big': No space left on device" in e.value.message, \
            e.value.message
        layers, _, tmp = store_entries(d)
        assert tmp == []
        # The base layer is whole (and may stay, cached); no other is kept.
        base = {x["digest"].split(":")[1] for x in imagekit.manifest_of(layout, "base")["layers"]}
        assert layers <= base, layers - base
        h = create(c, f"oci://{layout}#base")
        assert out_in(c, h, "echo fits") == "fits\n"
        c.destroy(h)
    finally:
        assert not factory.cleanup()
        subprocess.run(["umount", "-l", str(top)], check=False)
