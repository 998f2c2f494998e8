"""The benches' run directory (--run-dir, depot.h): the process table and the
idle shims' directories, on a tmpfs of the bench's own, as /run/cloche is on a
systemd host (every bench runs in a private mount namespace). With
CLOCHE_BENCH_RUN_DIR=depot they stay on the depot's file system instead (DEPOT/run,
the daemon's default for a depot given by path), to measure that case."""
import ctypes
import os
import stat
import subprocess

_libc = ctypes.CDLL(None, use_errno=True)


def run_dir_args(base):
    """The daemon's --run-dir arguments for a daemon whose files are in base."""
    if os.environ.get("CLOCHE_BENCH_RUN_DIR") == "depot":
        return []
    path = os.path.join(base, "run")
    if not os.path.ismount(path):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=512m", "tmpfs", path],
                       check=True)
    return ["--run-dir", path]


def remove_tree(path):
    """Unmount what is mounted below path (lazily, deepest first), then delete it
    without crossing into another file system."""
    if not os.path.exists(path):
        return
    prefix = path.rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            p = line.split()[4].encode().decode("unicode_escape")
            if p == path or p.startswith(prefix):
                points.append(p)
    for p in sorted(set(points), key=len, reverse=True):
        _libc.umount2(os.fsencode(p), 2)  # MNT_DETACH
    dev = os.lstat(path).st_dev

    def walk(p):
        for e in os.scandir(p):
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev == dev:
                    walk(e.path)
                    try:
                        os.rmdir(e.path)
                    except OSError:
                        pass
            else:
                try:
                    os.unlink(e.path)
                except OSError:
                    pass
    walk(path)
    try:
        os.rmdir(path)
    except OSError:
        pass
