#!/usr/bin/python3
"""Benchmark: images. In one run, inside a private mount and network namespace:

    tests/bench/images.py [--build DIR] [--rootfs DIR] [-n N] [--mb MB]

1. Pull of a ~MB-megabyte image (the busybox rootfs plus a layer of random
   data) from Debian's docker-registry on loopback into a fresh store, through
   POST /cloche/images/pull, beside `skopeo copy` of the same image to a
   directory (which downloads and verifies, but does not extract). Ratio.
2. Create (API call to reply) from the cached image beside create from the raw
   rootfs it was built from, N each, medians. Goal: at most 1 ms more.
3. Disk used by 100 containers of the image, each writing 1 MB: the store's
   size, the containers' directories, and the file system's own count.
Not a CI test: timing depends on the machine.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rundir import remove_tree, run_dir_args  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def call(sock_path, method, path, body=None, version="1.1"):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/{version}\r\nHost: api\r\nContent-Length: {len(data)}\r\n" \
           "Content-Type: application/json\r\nConnection: close\r\n\r\n"
    s.sendall(head.encode() + data)
    out = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        out += chunk
    s.close()
    status = int(out.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(out.decode(errors="replace"))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sh(*argv):
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


def build_image(tmp, rootfs, mb):
    layout = os.path.join(tmp, "layout")
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:base")
    bundle = os.path.join(tmp, "bundle")
    sh("umoci", "unpack", "--image", f"{layout}:base", bundle)
    sh("cp", "-a", f"{rootfs}/.", os.path.join(bundle, "rootfs"))
    data = os.path.join(bundle, "rootfs", "data")
    os.makedirs(data)
    for i in range(max(1, mb // 10)):
        with open(os.path.join(data, f"blob{i}"), "wb") as f:
            f.write(os.urandom(10 << 20))
    sh("umoci", "repack", "--image", f"{layout}:base", bundle)
    shutil.rmtree(bundle)
    return layout


class Registry:
    def __init__(self, tmp):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        cfg = os.path.join(tmp, "registry.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {tmp}/registry\nhttp:\n  addr: {self.host}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def close(self):
        self.proc.terminate()
        self.proc.wait()


class Daemon:
    def __init__(self, build, rootfs, tmp, name, extra=()):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "cloche.sock")
        self.parent = f"cloche-bench-{os.getpid()}-{name}"
        self.log = open(os.path.join(self.dir, "cloched.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(build, "cloched"), "--bind-socket", self.sock,
             "--depot", os.path.join(self.dir, "depot"), "--cgroup-parent", self.parent,
             "--default-rootfs", rootfs, "--log-level", "warn", *extra,
             *run_dir_args(self.dir)], stderr=self.log)
        for _ in range(600):
            if os.path.exists(self.sock):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.log.flush()
        with open(os.path.join(self.dir, "cloched.log")) as f:
            raise RuntimeError("cloched did not start: " + f.read())

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        for ctrl in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", ctrl, self.parent))
            except OSError:
                pass


def du(path):
    out = subprocess.run(["du", "-sxB1", path], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out else 0


def fs_used(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build", "rootfs", "busybox"))
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.environ.get("CLOCHE_BENCH_SANDBOX") != "1":
        os.execvp("unshare", ["unshare", "--mount", "--net", "--propagation", "private", "--fork",
                              "env", "CLOCHE_BENCH_SANDBOX=1", sys.executable] + sys.argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tmp = tempfile.mkdtemp(prefix="cloche-bench-images-")
    os.chmod(tmp, 0o711)
    registry = None
    daemons = []
    try:
        layout = build_image(tmp, args.rootfs, args.mb)
        registry = Registry(tmp)
        sh("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:base",
           f"docker://{registry.host}/bench/big:latest")
        ref = f"docker://{registry.host}/bench/big"
        quoted = ref.replace(":", "%3A").replace("/", "%2F")
        insecure = ["--insecure-registry", registry.host]

        # 1. pull
        pulls, copies = [], []
        for i in range(args.runs):
            d = Daemon(args.build, args.rootfs, tmp, f"pull{i}", insecure)
            daemons.append(d)
            t = time.perf_counter()
            out = call(d.sock, "POST", f"/cloche/images/pull?ref={quoted}", version="1.0")
            pulls.append(time.perf_counter() - t)
            last = json.loads(out.split(b"\r\n\r\n", 1)[1].splitlines()[-1])
            assert "digest" in last, last
            d.close()
            daemons.remove(d)
            remove_tree(d.dir)
            dest = os.path.join(tmp, f"skopeo{i}")
            t = time.perf_counter()
            sh("skopeo", "copy", "--src-tls-verify=false", ref,
               f"dir:{dest}")
            copies.append(time.perf_counter() - t)
            shutil.rmtree(dest)
        p, s = statistics.median(pulls), statistics.median(copies)

        # 2. create from the cached image beside the raw rootfs
        d = Daemon(args.build, args.rootfs, tmp, "create", insecure)
        daemons.append(d)
        call(d.sock, "POST", f"/cloche/images/pull?ref={quoted}", version="1.0")
        times = {"raw": [], "image": []}
        for i in range(args.n + 3):
            for kind, body in (("raw", {}), ("image", {"image": {"uri": ref}})):
                h = f"{kind}{i}"
                t = time.perf_counter()
                call(d.sock, "POST", "/containers", dict(body, handle=h))
                dt = time.perf_counter() - t
                call(d.sock, "DELETE", f"/containers/{h}")
                if i >= 3:
                    times[kind].append(dt)
        raw_ms = statistics.median(times["raw"]) * 1e3
        img_ms = statistics.median(times["image"]) * 1e3

        # 3. disk used by 100 containers of the image, each writing 1 MB
        depot = os.path.join(d.dir, "depot")
        store = du(os.path.join(depot, "images"))
        before_fs = fs_used(depot)
        before_ct = du(os.path.join(depot, "containers"))
        for i in range(100):
            call(d.sock, "POST", "/containers", {"handle": f"disk{i}", "image": {"uri": ref}})
            upper = os.path.join(depot, "containers", f"disk{i}", "rootfs", "upper")
            with open(os.path.join(upper, "written"), "wb") as f:
                f.write(os.urandom(1 << 20))
        os.sync()
        ct = du(os.path.join(depot, "containers")) - before_ct
        fs = fs_used(depot) - before_fs
        store_after = du(os.path.join(depot, "images"))
        for i in range(100):
            call(d.sock, "DELETE", f"/containers/disk{i}")
    finally:
        for d in daemons:
            d.close()
        if registry:
            registry.close()
        remove_tree(tmp)

    print(f"images: a {args.mb} MB image (busybox + random data) from docker-registry on loopback")
    print(f"  cloche pull (download, verify, extract)  median {p:6.2f} s over {args.runs}")
    print(f"  skopeo copy to dir: (download, verify)    median {s:6.2f} s over {args.runs}")
    print(f"  ratio cloche / skopeo: {p / s:.2f}")
    print(f"  create, {args.n} each: raw rootfs median {raw_ms:.2f} ms, cached image median "
          f"{img_ms:.2f} ms, difference {img_ms - raw_ms:+.2f} ms (goal <= +1)")
    print(f"  100 containers of the image, 1 MB written each: store {store / 1e6:.1f} MB "
          f"(after: {store_after / 1e6:.1f} MB), containers' directories {ct / 1e6:.1f} MB, "
          f"file system grew {fs / 1e6:.1f} MB (goal: image once + 100 MB)")


if __name__ == "__main__":
    main()
