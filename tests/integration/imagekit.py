"""Real image parts for the image tests: OCI layouts built with umoci from the
busybox test rootfs, Debian's docker-registry started on loopback (anonymous,
htpasswd, token auth with a token server run here, TLS with a self-signed CA),
images pushed with skopeo, and a small hostile registry."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import free_port, wait_until

TOOLS = ("umoci", "skopeo", "docker-registry", "openssl", "htpasswd")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if not shutil.which(t)]


def sh(*argv, cwd=None, timeout=180, input=None) -> str:
    r = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, input=input)
    assert r.returncode == 0, f"{argv} failed: {r.stderr}"
    return r.stdout


def tar_bytes(entries) -> bytes:
    """entries: (name, kind, data_or_target, mode) with kind file/dir/link/symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 1700000000
            if kind == "file":
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "link":
                info.type = tarfile.LNKTYPE
                info.linkname = data
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = data
            t.addfile(info)
    return buf.getvalue()


def add_layer(layout: Path, src_tag: str, dst_tag: str, entries, work: Path) -> None:
    layer = work / f"layer-{secrets.token_hex(4)}.tar"
    layer.write_bytes(tar_bytes(entries))
    sh("umoci", "raw", "add-layer", "--image", f"{layout}:{src_tag}", "--tag", dst_tag, layer)
    layer.unlink()


def build_layout(work: Path, rootfs: Path) -> Path:
    """Tags: base (one layer, a config), multi (five layers: a deleted file, an
    opaque directory, a hard link across layers), amd64/arm64 (a /platform file
    each) and multiarch (an index of those two)."""
    layout = work / "layout"
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:base")
    bundle = work / "bundle"
    sh("umoci", "unpack", "--image", f"{layout}:base", bundle)
    sh("cp", "-a", f"{rootfs}/.", bundle / "rootfs")
    sh("umoci", "repack", "--image", f"{layout}:base", bundle)
    shutil.rmtree(bundle)
    sh("umoci", "config", "--image", f"{layout}:base", "--config.env", "FROM_IMAGE=yes",
       "--config.env", "CLASH=image", "--config.env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
       "--config.user", "1000:1000", "--config.workingdir", "/home/vcap",
       "--config.entrypoint", "/bin/sh", "--config.cmd", "-c", "--config.cmd", "echo hi",
       "--config.exposedports", "8080/tcp")
    add_layer(layout, "base", "m2", [
        ("data", "dir", None, 0o755),
        ("data/keep", "file", b"keep\n", 0o644),
        ("data/gone", "file", b"gone\n", 0o644),
        ("olddir", "dir", None, 0o755),
        ("olddir/x", "file", b"x\n", 0o644),
        ("olddir/y", "file", b"y\n", 0o644),
        ("hl", "dir", None, 0o755),
        ("hl/orig", "file", b"linked content\n", 0o640),
    ], work)
    add_layer(layout, "m2", "m3", [("data/.wh.gone", "file", b"", 0o644)], work)
    add_layer(layout, "m3", "m4", [
        ("olddir", "dir", None, 0o750),
        ("olddir/.wh..wh..opq", "file", b"", 0o644),
        ("olddir/z", "file", b"z\n", 0o644),
    ], work)
    add_layer(layout, "m4", "multi", [
        ("hl/link", "link", "hl/orig", 0o640),
        ("hl/samelayer", "file", b"same\n", 0o644),
        ("hl/samelink", "link", "hl/samelayer", 0o644),
    ], work)
    for arch in ("amd64", "arm64"):
        add_layer(layout, "base", arch, [("platform", "file", arch.encode() + b"\n", 0o644)],
                  work)
    # The index: the two images by platform, written into the layout by hand.
    index = json.loads((layout / "index.json").read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m
              for m in index["manifests"]}
    entries = []
    for arch in ("arm64", "amd64"):
        d = dict(by_tag[arch])
        d.pop("annotations", None)
        d["platform"] = {"os": "linux", "architecture": arch}
        entries.append(d)
    blob = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries}).encode()
    digest = hashlib.sha256(blob).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(blob)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                               "digest": f"sha256:{digest}", "size": len(blob),
                               "annotations": {"org.opencontainers.image.ref.name":
                                               "multiarch"}})
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def manifest_of(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag:
            blob = layout / "blobs" / "sha256" / m["digest"][7:]
            return json.loads(blob.read_text())
    raise KeyError(tag)


# ---- TLS material and the token server

def make_ca(work: Path) -> dict:
    ca_key, ca_crt = work / "ca.key", work / "ca.crt"
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
       "-out", ca_crt, "-subj", "/CN=cloche-test-ca", "-days", "2")
    key, csr, crt = work / "srv.key", work / "srv.csr", work / "srv.crt"
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
       "-subj", "/CN=127.0.0.1")
    ext = work / "srv.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
       "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
    tk_key, tk_crt = work / "token.key", work / "token.crt"
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tk_key,
       "-out", tk_crt, "-subj", "/CN=cloche-test-token", "-days", "2")
    return {"ca": ca_crt, "key": key, "crt": crt, "token_key": tk_key, "token_crt": tk_crt}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry tokens (RS256 JWTs with an x5c chain) to one user."""

    def __init__(self, key: Path, crt: Path, user: str, password: str):
        der = subprocess.run(["openssl", "x509", "-in", str(crt), "-outform", "der"],
                             capture_output=True, check=True).stdout
        self.key = key
        self.x5c = base64.b64encode(der).decode()
        self.user, self.password = user, password
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                want = "Basic " + base64.b64encode(
                    f"{outer.user}:{outer.password}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                from urllib.parse import parse_qs, urlparse
                q = parse_qs(urlparse(self.path).query)
                body = json.dumps({"token": outer.token(q.get("scope", []))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def token(self, scopes) -> str:
        access = []
        for s in scopes:
            for one in s.split(" "):
                parts = one.split(":")
                if len(parts) == 3:
                    access.append({"type": parts[0], "name": parts[1],
                                   "actions": parts[2].split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": "cloche-test-issuer", "sub": self.user, "aud": "cloche-test",
                  "exp": now + 3600, "nbf": now - 60, "iat": now - 60,
                  "jti": secrets.token_hex(8), "access": access}
        signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing.encode(), capture_output=True, check=True).stdout
        return f"{signing}.{b64url(sig)}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- docker-registry

class Registry:
    def __init__(self, work: Path, name: str, *, htpasswd: "Path | None" = None,
                 token: "TokenServer | None" = None, token_crt: "Path | None" = None,
                 tls: "dict | None" = None):
        self.dir = work / f"registry-{name}"
        self.dir.mkdir()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls is not None
        cfg = [
            "version: 0.1",
            "log:",
            "  level: info",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.dir / 'data'}",
            "http:",
            f"  addr: {self.host}",
            "  secret: cloche-test-secret",
        ]
        if tls:
            cfg += ["  tls:", f"    certificate: {tls['crt']}", f"    key: {tls['key']}"]
        if htpasswd:
            cfg += ["auth:", "  htpasswd:", "    realm: cloche-test", f"    path: {htpasswd}"]
        if token:
            cfg += ["auth:", "  token:", f"    realm: http://127.0.0.1:{token.port}/token",
                    "    service: cloche-test", "    issuer: cloche-test-issuer",
                    f"    rootcertbundle: {token_crt}"]
        (self.dir / "config.yml").write_text("\n".join(cfg) + "\n")
        self.log_path = self.dir / "registry.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        if not wait_until(up, 15):
            self.close()
            raise AssertionError(f"docker-registry did not start: {self.log_path.read_text()}")

    def push(self, layout: Path, tag: str, repo: str, *, creds: "str | None" = None,
             extra=()) -> None:
        args = ["skopeo", "copy", "--dest-tls-verify=false", "--retry-times", "2"]
        if creds:
            args += ["--dest-creds", creds]
        sh(*args, *extra, f"oci:{layout}:{tag}", f"docker://{self.host}/{repo}")

    def manifest(self, repo: str, tag: str) -> dict:
        import urllib.request
        req = urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def blob_gets(self, digest: str) -> int:
        """Requests that fetched the blob, from the registry's access log."""
        text = self.log_path.read_text(errors="replace")
        return len(re.findall(rf'"GET /v2/[^ ]*/blobs/{re.escape(digest)} HTTP/[0-9.]+" 200',
                              text))

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


# ---- a registry that lies

class HostileRegistry:
    """Serves /v2/NAME/manifests/latest and blobs for canned, misbehaving images."""

    def __init__(self):
        self.repos = {}  # name -> (manifest bytes, {digest: (bytes, behaviour)})
        self.stall = threading.Event()
        self.gets = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.gets.append(self.path)
                m = re.match(r"^/v2/(.+)/(manifests|blobs)/([^/]+)$", self.path)
                if self.path == "/v2/":
                    return self.reply(200, b"{}")
                if not m or m.group(1) not in outer.repos:
                    return self.reply(404, b"{}")
                manifest, blobs, how = outer.repos[m.group(1)]
                if m.group(2) == "manifests":
                    if how == "oversized":
                        return self.reply(200, b" " * (5 << 20) + manifest)
                    return self.reply(200, manifest,
                                      "application/vnd.oci.image.manifest.v1+json")
                data = blobs.get(m.group(3))
                if data is None:
                    return self.reply(404, b"{}")
                if how == "truncated" and data[:2] == b"\x1f\x8b":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if how == "stall" and data[:2] == b"\x1f\x8b":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:100])
                    self.wfile.flush()
                    outer.stall.wait(60)
                    self.close_connection = True
                    return
                self.reply(200, data)

            def reply(self, status, body, ctype="application/octet-stream"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, name: str, layer_tar: bytes, how: str = "ok", *, lie_config: bool = False):
        import gzip
        layer = gzip.compress(layer_tar, mtime=0)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Env": ["A=b"]},
                             "rootfs": {"type": "layers", "diff_ids": [
                                 "sha256:" + hashlib.sha256(layer_tar).hexdigest()]}}).encode()
        cdig = "sha256:" + hashlib.sha256(config).hexdigest()
        ldig = "sha256:" + hashlib.sha256(layer).hexdigest()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cdig, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": ldig, "size": len(layer)}]}).encode()
        if lie_config:
            config = config.replace(b'"A=b"', b'"A=c"')
        self.repos[name] = (manifest, {cdig: config, ldig: layer}, how)
        return ldig

    def close(self):
        self.stall.set()
        self.httpd.shutdown()
        self.httpd.server_close()
