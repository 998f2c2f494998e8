#!/usr/bin/python3
"""Benchmark: StreamIn and StreamOut throughput, beside GNU tar on the host, in one run.

    tests/bench/files.py [--build DIR] [--rootfs DIR] [--large-mib N] [--small N]

Runs as root inside a private mount and network namespace of its own (it
re-executes itself under unshare). One daemon with a temporary depot, one
unprivileged container. Measured from the first request byte to the last reply
byte over the Unix socket, with the Go client's requests (tests/garden_client/):

  * one large file (default 1 GiB of random data): StreamIn with a Content-Length
    body, StreamOut as a tar (chunked reply), StreamOut of the file's bytes;
  * many small files (default 10,000 of 1 KiB, 100 per directory): StreamIn and
    StreamOut of the tree.

The peer is GNU tar on the host: `tar -x` of the same archive from a pipe into a
directory on the depot's file system, and `tar -c` of the same tree into a pipe.
Prints MB/s (10^6 bytes) and ratios. Not a CI test: timing depends on the machine.
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from garden_client import GardenClient  # noqa: E402
from rundir import remove_tree, run_dir_args  # noqa: E402

PIECE = 1 << 20


def large_tar_pieces(size: int, block: bytes):
    """A tar of one file "big.bin" of size bytes, produced piece by piece."""
    ti = tarfile.TarInfo("big.bin")
    ti.size = size
    ti.mode = 0o644
    yield ti.tobuf(format=tarfile.PAX_FORMAT)
    left = size
    while left:
        n = min(left, len(block))
        yield block[:n]
        left -= n
    yield b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024


def large_tar_size(size: int) -> int:
    return sum(len(p) for p in large_tar_pieces(0, b"")) + size + (512 - size % 512) % 512


def small_tar(n: int, size: int) -> bytes:
    buf = io.BytesIO()
    data = os.urandom(size)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(n):
            if i % 100 == 0:
                d = tarfile.TarInfo(f"small/d{i // 100:04d}")
                d.type = tarfile.DIRTYPE
                d.mode = 0o755
                t.addfile(d)
            ti = tarfile.TarInfo(f"small/d{i // 100:04d}/f{i:05d}")
            ti.size = size
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def put_raw(client: GardenClient, handle: str, dest: str, pieces, length: int) -> float:
    """StreamIn as the Go client sends a body of known length; returns seconds."""
    target = f"/containers/{handle}/files?destination={dest.replace('/', '%2F')}&user="
    head = (f"PUT {target} HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Content-Length: {length}\r\nContent-Type: application/x-tar\r\n"
            "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n").encode()
    with client.connect(timeout=600) as s:
        t0 = time.perf_counter()
        s.sendall(head)
        for p in pieces:
            s.sendall(p)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        t = time.perf_counter() - t0
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(reply.decode(errors="replace"))
    return t


def timed_out(client, handle, src, accept=None) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = client.stream_out(handle, src, accept=accept, sink=lambda piece: None)
    return time.perf_counter() - t0, n


def host_tar_x(data_pieces, dest: str) -> float:
    os.makedirs(dest)
    t0 = time.perf_counter()
    p = subprocess.Popen(["tar", "--no-same-owner", "--no-same-permissions", "-xf", "-", "-C",
                          dest], stdin=subprocess.PIPE)
    for piece in data_pieces:
        p.stdin.write(piece)
    p.stdin.close()
    if p.wait() != 0:
        raise RuntimeError("tar -x failed")
    return time.perf_counter() - t0


def host_tar_c(parent: str, name: str) -> float:
    t0 = time.perf_counter()
    tar = subprocess.Popen(["tar", "-cf", "-", "-C", parent, name], stdout=subprocess.PIPE)
    while tar.stdout.read(PIECE):
        pass
    if tar.wait() != 0:
        raise RuntimeError("tar -c failed")
    return time.perf_counter() - t0


def mbs(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rootfs", default=os.path.join(ROOT, "build", "rootfs", "busybox"))
    ap.add_argument("--large-mib", type=int, default=1024)
    ap.add_argument("--small", type=int, default=10000)
    args = ap.parse_args()
    if os.environ.get("CLOCHE_BENCH_SANDBOX") != "1":
        os.execvp("unshare", ["unshare", "--mount", "--net", "--propagation", "private", "--fork",
                              "env", "CLOCHE_BENCH_SANDBOX=1", sys.executable] + sys.argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    if not os.path.isdir(args.rootfs):
        subprocess.run([os.path.join(ROOT, "rootfs-tools", "mkrootfs-busybox.sh"), args.rootfs],
                       check=True)
    tmp = tempfile.mkdtemp(prefix="cloche-bench-")
    os.chmod(tmp, 0o711)
    sock = os.path.join(tmp, "cloche.sock")
    parent = f"cloche-bench-{os.getpid()}"
    log = open(os.path.join(tmp, "cloched.log"), "w")
    daemon = subprocess.Popen([os.path.join(args.build, "cloched"), "--bind-socket", sock,
                               "--depot", os.path.join(tmp, "depot"), "--cgroup-parent", parent,
                               "--default-rootfs", args.rootfs, "--log-level", "warn"]
                              + run_dir_args(tmp),
                              stderr=log)
    results = []
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        client = GardenClient(unix_path=sock, timeout=600)
        h = client.create({"handle": "bench"})

        size = args.large_mib << 20
        block = os.urandom(PIECE)
        length = large_tar_size(size)
        t = put_raw(client, h, "/tmp/large", large_tar_pieces(size, block), length)
        results.append(("StreamIn  1 large file (tar)", size, t))
        t, _ = timed_out(client, h, "/tmp/large/big.bin")
        results.append(("StreamOut 1 large file (tar)", size, t))
        t, _ = timed_out(client, h, "/tmp/large/big.bin", accept="application/octet-stream")
        results.append(("StreamOut 1 large file (bytes)", size, t))
        client.destroy(h)
        h = client.create({"handle": "bench2"})

        small = small_tar(args.small, 1024)
        payload = args.small * 1024
        t = put_raw(client, h, "/tmp", [small], len(small))
        results.append((f"StreamIn  {args.small} small files", payload, t))
        t, _ = timed_out(client, h, "/tmp/small")
        results.append((f"StreamOut {args.small} small files", payload, t))

        host = os.path.join(tmp, "host")
        peers = {
            "StreamIn  1 large file (tar)":
                host_tar_x(large_tar_pieces(size, block), os.path.join(host, "large")),
            "StreamOut 1 large file (tar)": host_tar_c(os.path.join(host, "large"), "big.bin"),
            f"StreamIn  {args.small} small files": host_tar_x([small], os.path.join(host, "s")),
            f"StreamOut {args.small} small files": host_tar_c(os.path.join(host, "s"), "small"),
        }
        client.destroy(h)
    finally:
        daemon.terminate()
        daemon.wait()
        for ctrl in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", ctrl, parent))
            except OSError:
                pass
        remove_tree(tmp)

    print(f"files: StreamIn/StreamOut over the Unix socket, unprivileged container, "
          f"{os.cpu_count()} cores")
    for name, nbytes, t in results:
        line = f"  {name:34s} {mbs(nbytes, t):8.1f} MB/s  ({t:6.2f} s)"
        peer = peers.get(name)
        if peer:
            line += f"   host GNU tar {mbs(nbytes, peer):8.1f} MB/s  ratio {peer / t:.2f}"
        print(line)
    print("  (target: >= 500 MB/s for the large file)")


if __name__ == "__main__":
    main()
