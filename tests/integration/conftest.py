"""Fixtures for cloche's integration tests: a sandbox check and real daemons.

The tests drive a real ``cloched`` over HTTP.  A daemon creates network
devices, firewall rules and cgroups, so the tests must never run against the
host's own configuration (design.md §10): ``run.sh`` starts pytest inside a
private mount and network namespace, and the session fixture below refuses to
run anywhere else.  Each daemon gets a temporary depot, a socket in a
temporary directory, a free loopback port and a cgroup parent unique to it;
teardown stops it by pid and removes all of these, even when the test failed.

Environment:
  CLOCHE_BUILD        build directory holding ``cloched`` (default: build)
  CLOCHE_TEST_ROOTFS  rootfs for --default-rootfs (default: build/rootfs/busybox)
"""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from garden_client import GardenClient, GardenError  # noqa: E402

START_TIMEOUT = 30.0  # seconds for a new daemon to answer GET /ping (a wait, not a timing check: CI machines may be loaded)
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL at teardown
LOG_TAIL_LINES = 400  # daemon log lines attached to a failed test's report

# The non-loopback address the token tests bind to: TEST-NET-1 (RFC 5737),
# added to lo inside the sandbox's own network namespace only.
NONLOOPBACK_IP = "192.0.2.1"

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1


def _resolve(env_name: str, default: Path) -> Path:
    value = os.environ.get(env_name)
    return Path(value).resolve() if value else default


BUILD_DIR = _resolve("CLOCHE_BUILD", REPO_ROOT / "build")
DEFAULT_ROOTFS = _resolve("CLOCHE_TEST_ROOTFS", REPO_ROOT / "build" / "rootfs" / "busybox")


# --------------------------------------------------------------------------
# Sandbox safety


def _namespace(pid: str, kind: str) -> "str | None":
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def in_sandbox() -> tuple[bool, str]:
    """Whether this process runs as root in private net and mount namespaces.

    A namespace is private when it differs from a namespace known to be the
    host's: PID 1's (run.sh makes no PID namespace, so /proc/1 is the host's
    init), and those run.sh recorded in CLOCHE_HOST_NETNS/CLOCHE_HOST_MNTNS
    before calling unshare (PID 1's are unreadable without ptrace rights,
    as inside some containers).  With neither to compare against, the answer
    is no.
    """
    if os.geteuid() != 0:
        return False, "integration tests must run as root (they start a container daemon)"
    for kind in ("net", "mnt"):
        ours = _namespace("self", kind)
        hosts = {_namespace("1", kind), os.environ.get(f"CLOCHE_HOST_{kind.upper()}NS")}
        hosts.discard(None)
        hosts.discard("")
        if ours is None or not hosts:
            return False, (f"cannot tell whether the {kind} namespace is private; run the "
                           "tests through tests/integration/run.sh BUILD_DIR")
        if ours in hosts:
            return False, (f"not in a private {kind} namespace; run the tests through "
                           "tests/integration/run.sh BUILD_DIR")
    return True, ""


@pytest.fixture(scope="session", autouse=True)
def sandbox_guard():
    """Refuse to run outside the sandbox: a daemon here would touch the host."""
    ok, why = in_sandbox()
    if not ok:
        pytest.exit(f"refusing to run: {why}", returncode=3)


@pytest.fixture(scope="session")
def nonloopback_ip(sandbox_guard):
    """A non-loopback local address, added to lo of the sandbox's netns only."""
    ok, why = in_sandbox()
    assert ok, why  # never touch a host interface, even if the guard was bypassed
    result = subprocess.run(["ip", "addr", "add", f"{NONLOOPBACK_IP}/32", "dev", "lo"],
                            capture_output=True, text=True)
    if result.returncode != 0 and "File exists" not in result.stderr:
        pytest.fail(f"ip addr add failed: {result.stderr.strip()}")
    yield NONLOOPBACK_IP
    subprocess.run(["ip", "addr", "del", f"{NONLOOPBACK_IP}/32", "dev", "lo"],
                   capture_output=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the netns is ours alone)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Cleanup helpers


def _mount_points() -> list[tuple[str, str]]:
    """(mount point, fstype) for every mount this namespace sees."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].encode().decode("unicode_escape")  # \040 etc.
            mounts.append((point, fields[sep + 1]))
    return mounts


def unmount_below(path: Path) -> None:
    """Lazily unmount everything mounted at or below path, deepest first.

    A depot may hold a container's rootfs or bind mounts; deleting through
    them would delete whatever they show, possibly host files.
    """
    prefix = str(path).rstrip("/") + "/"
    points = [p for p, _ in _mount_points() if p == str(path) or p.startswith(prefix)]
    for point in sorted(set(points), key=len, reverse=True):
        _libc.umount2(os.fsencode(point), _MNT_DETACH)


def remove_tree(path: Path) -> None:
    """rmtree that never crosses into another filesystem.

    Anything still mounted after unmount_below() is left in place rather than
    emptied.
    """
    if not path.exists():
        return
    unmount_below(path)
    root_dev = path.lstat().st_dev

    def walk(p: Path) -> None:
        for entry in os.scandir(p):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != root_dev:
                    continue
                walk(Path(entry.path))
                try:
                    os.rmdir(entry.path)
                except OSError:
                    pass
            else:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass

    try:
        os.chmod(path, 0o700)
        walk(path)
        os.rmdir(path)
    except OSError:
        pass


def cgroup_mounts() -> list[str]:
    """Mount points of every cgroup v1 controller and of the v2 hierarchy."""
    return [p for p, fstype in _mount_points() if fstype in ("cgroup", "cgroup2")]


def remove_cgroups(parent_name: str, timeout: float = 5.0) -> list[str]:
    """Remove every cgroup directory named parent_name, and everything in it.

    Only directories whose own name is this run's unique parent are touched.
    Processes still inside them (a container left behind by a crashed
    daemon) can only be this run's, so they are killed by pid first.
    Returns the directories that could not be removed.
    """
    roots = []
    for mount in cgroup_mounts():
        for dirpath, dirnames, _ in os.walk(mount):
            if os.path.basename(dirpath) == parent_name:
                roots.append(dirpath)
                dirnames[:] = []  # its descendants are handled below
    leftovers = []
    for root in roots:
        subdirs = [d for d, _, _ in os.walk(root)]
        for d in sorted(subdirs, key=lambda s: s.count("/"), reverse=True):
            if not _rmdir_cgroup(d, timeout):
                leftovers.append(d)
    return leftovers


def _rmdir_cgroup(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                for pid in f.read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        except OSError:
            pass
        time.sleep(0.05)


def _die_with_parent() -> None:
    """In the daemon's child: get SIGKILL if pytest dies, so none is left behind."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --------------------------------------------------------------------------
# Daemons


class DaemonStartError(Exception):
    pass


class Daemon:
    """One cloched with its own depot, socket, port and cgroup parent.

    Also its own network tag, subnet pool and port pool (see __init__).

    The state directories outlive stop(), so restart() brings a new daemon up
    on the same depot (for crash and restart tests); cleanup() removes them.
    """

    _count = 0

    def __init__(self, name: str, extra_args=(), *, socket_enabled: bool = True,
                 bind_ip: "str | None" = "127.0.0.1", bind_port: "int | None" = None,
                 token: "str | None" = None, depot: "Path | None" = None,
                 cgroup_parent: "str | None" = None, rootfs: "Path | None" = None):
        self.name = name
        self.extra_args = list(extra_args)
        self.workdir = Path(tempfile.mkdtemp(prefix="cloche-test-", dir="/tmp"))
        self.depot = depot if depot is not None else self.workdir / "depot"
        self.owns_depot = depot is None
        self.depot.mkdir(parents=True, exist_ok=True)
        # The run directory (process table, idle shims): DEPOT/run unless a
        # test passes --run-dir.
        self.run_dir = self.depot / "run"
        self.socket_path = self.workdir / "cloche.sock" if socket_enabled else None
        self.bind_ip = bind_ip
        self.bind_port = (bind_port or free_port(bind_ip)) if bind_ip else None
        self.token = token
        self.token_file: "Path | None" = None
        if token is not None:
            self.token_file = self.workdir / "token"
            self.token_file.write_text(token + "\n")
            self.token_file.chmod(0o600)
        self.cgroup_parent = cgroup_parent or f"cloche-test-{secrets.token_hex(6)}"
        self.rootfs = rootfs if rootfs is not None else DEFAULT_ROOTFS
        self.log_path = self.workdir / "cloched.log"
        # Daemons alive at the same time share the sandbox's network namespace:
        # each gets its own link/table tag, subnet pool and port pool.
        Daemon._count += 1
        n = Daemon._count
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        self.net_tag = digits[(n // 36) % 36] + digits[n % 36]
        self.network_pool = f"10.{100 + (n // 64) % 150}.{(n % 64) * 4}.0/22"
        self.port_pool_start = 20000 + (n % 40) * 1000
        self.port_pool_size = 1000
        self.proc: "subprocess.Popen | None" = None
        # Extra environment for the daemon (the test hooks: CLOCHE_TEST_CRASH...);
        # a value of None removes the variable.
        self.env: "dict[str, str | None]" = {}
        self.start_cgroup: "str | None" = None  # a v2 group to start the daemon in
        self.nofile_soft: "int | None" = None  # RLIMIT_NOFILE soft limit to start with
        self.starts = 0
        self._log_cache = ""

    # ---- command line

    def argv(self, extra_args=()) -> list[str]:
        args = [str(BUILD_DIR / "cloched"),
                "--depot", str(self.depot),
                "--bind-socket", str(self.socket_path) if self.socket_path else "",
                "--cgroup-parent", self.cgroup_parent,
                "--network-tag", self.net_tag,
                "--network-pool", self.network_pool,
                "--port-pool-start", str(self.port_pool_start),
                "--port-pool-size", str(self.port_pool_size),
                "--log-level", "debug"]
        if self.bind_ip:
            args += ["--bind-ip", self.bind_ip, "--bind-port", str(self.bind_port)]
        if self.token_file:
            args += ["--auth-token-file", str(self.token_file)]
        if self.rootfs.is_dir():  # not needed until containers run processes
            args += ["--default-rootfs", str(self.rootfs)]
        return args + self.extra_args + list(extra_args)

    # ---- lifecycle

    def spawn(self, extra_args=()) -> subprocess.Popen:
        """Start the process without waiting for it to serve."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts}: {' '.join(self.argv(extra_args))}\n".encode())
            log.flush()
            group = self.start_cgroup
            nofile = self.nofile_soft

            def preexec():
                _die_with_parent()
                if nofile is not None:  # as a shell's default (1024) would leave it
                    resource.setrlimit(resource.RLIMIT_NOFILE,
                                       (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
                if group:  # start inside this (v2) group, as a service manager would
                    with open(os.path.join(group, "cgroup.procs"), "w") as f:
                        f.write("0")

            env = dict(os.environ)
            for k, v in self.env.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = v
            self.proc = subprocess.Popen(self.argv(extra_args), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True,
                                         preexec_fn=preexec, env=env)
        return self.proc

    def start(self, extra_args=(), timeout: float = START_TIMEOUT) -> "Daemon":
        """Start and wait until GET /ping answers."""
        proc = self.spawn(extra_args)
        deadline = time.monotonic() + timeout
        last_error: "Exception | None" = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DaemonStartError(f"{self.name} exited with status {proc.returncode} "
                                       f"before serving\n{self.log_tail()}")
            try:
                self.client(timeout=1.0).ping()
                return self
            except (OSError, GardenError) as e:
                last_error = e
            time.sleep(0.02)
        self.stop()
        raise DaemonStartError(f"{self.name} did not answer /ping within {timeout} s "
                               f"(last error: {last_error!r})\n{self.log_tail()}")

    def processes(self, handle: str) -> Path:
        """The container's process table: RUN/processes/HANDLE/<id>/."""
        return self.run_dir / "processes" / handle

    def restart(self, extra_args=(), timeout: float = START_TIMEOUT) -> "Daemon":
        """Stop (SIGTERM) and start again on the same depot, socket and port."""
        self.stop()
        return self.start(extra_args, timeout)

    @property
    def pid(self) -> "int | None":
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send sig to this daemon's pid (never to anything found by name)."""
        if self.proc is not None:
            self.proc.send_signal(sig)  # a no-op once the pid is reaped

    def wait(self, timeout: float) -> "int | None":
        """Exit status, or None if still running after timeout seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> "int | None":
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit status."""
        if self.proc is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> "int | None":
        """SIGKILL at once, as a crash would."""
        if self.proc is None:
            return None
        self.signal(signal.SIGKILL)
        return self.proc.wait()

    def cleanup(self) -> list[str]:
        """Stop, then remove the depot, work directory and cgroups.

        Returns cgroup directories that could not be removed.
        """
        self.stop()
        self._log_cache = self._read_log()
        leftovers = remove_cgroups(self.cgroup_parent)
        if self.owns_depot:
            remove_tree(self.depot)
        remove_tree(self.workdir)
        return leftovers

    # ---- clients

    def client(self, token: "str | None" = None, timeout: float = 30.0) -> GardenClient:
        """A client on the Unix socket if there is one, else on TCP."""
        if self.socket_path is not None:
            return GardenClient(unix_path=str(self.socket_path), token=token, timeout=timeout)
        return self.tcp_client(token, timeout)

    def unix_client(self, timeout: float = 30.0) -> GardenClient:
        assert self.socket_path is not None, "this daemon has no Unix socket"
        return GardenClient(unix_path=str(self.socket_path), timeout=timeout)

    def tcp_client(self, token: "str | None" = None, timeout: float = 30.0) -> GardenClient:
        assert self.bind_ip, "this daemon does not listen on TCP"
        return GardenClient(host=self.bind_ip, port=self.bind_port,
                            token=token if token is not None else self.token, timeout=timeout)

    # ---- logs

    def _read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return self._log_cache

    def log_text(self) -> str:
        return self._read_log()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_text().splitlines()
        return "\n".join(text[-lines:])


def run_to_exit(argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run a daemon command line that is expected to exit by itself.

    If it is still running after timeout it is killed by pid and the result
    has returncode None, which every assertion on the status will reject.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return subprocess.CompletedProcess(argv, None, out, err)


class DaemonFactory:
    """Callable fixture: ``daemon(*extra_args, **options)`` starts a daemon.

    ``options`` are those of Daemon (socket_enabled, bind_ip, bind_port,
    token, depot, cgroup_parent, rootfs) plus ``wait=False`` to only spawn.
    Every daemon made here is stopped and cleaned up at teardown.
    """

    def __init__(self, owner: str):
        self.owner = owner
        self.daemons: list[Daemon] = []

    def __call__(self, *extra_args: str, wait: bool = True, **options) -> Daemon:
        d = self.new(*extra_args, **options)
        if wait:
            d.start()
        else:
            d.spawn()
        return d

    def new(self, *extra_args: str, **options) -> Daemon:
        """A configured daemon that is not started yet."""
        d = Daemon(f"cloched-{len(self.daemons) + 1}", extra_args, **options)
        self.daemons.append(d)
        return d

    def cleanup(self) -> list[str]:
        leftovers = []
        for d in reversed(self.daemons):
            leftovers += d.cleanup()
        return leftovers


@pytest.fixture
def daemon(request, sandbox_guard):
    """Factory for daemons private to one test."""
    factory = DaemonFactory(request.node.nodeid)
    try:
        yield factory
    finally:
        leftovers = factory.cleanup()
    assert not leftovers, f"cgroups left behind: {leftovers}"


@pytest.fixture(scope="module")
def module_daemon(request, sandbox_guard):
    """One default daemon shared by a module's tests (for many cheap requests)."""
    factory = DaemonFactory(request.node.nodeid)
    try:
        yield factory()
    finally:  # also when the daemon failed to start
        leftovers = factory.cleanup()
    assert not leftovers, f"cgroups left behind: {leftovers}"


@pytest.fixture
def garden(daemon) -> GardenClient:
    """A Unix-socket client of a fresh default daemon."""
    return daemon().client()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the daemons a failed test used to its report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    daemons = []
    for value in (getattr(item, "funcargs", None) or {}).values():
        if isinstance(value, DaemonFactory):
            daemons += [d for d in value.daemons if d not in daemons]
        elif isinstance(value, Daemon) and value not in daemons:
            daemons.append(value)
    for d in daemons:
        # A "Captured stdout" prefix puts the log into JUnit's system-out too.
        report.sections.append((f"Captured stdout {report.when}: {d.name} log "
                                f"(pid {d.pid}, last {LOG_TAIL_LINES} lines)", d.log_tail()))


# --------------------------------------------------------------------------
# Containers: their cgroups, their init, and a test-side stand-in for Run
#
# These look at a container from the host, the way an operator would, so the
# container tests can check the kernel objects themselves rather than what
# the daemon says about them.  They find cgroup hierarchies from mountinfo,
# so they work on hybrid hosts (v1 controllers plus cgroup2 at .../unified),
# pure v1 and pure v2 alike.

_V1_CONTROLLERS = frozenset(("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer",
                             "net_cls", "net_prio", "blkio", "perf_event", "hugetlb", "pids",
                             "rdma", "misc"))

# Unprivileged containers get 65536-id ranges from this base (design §6).
UID_POOL_BASE = 0x10000000
UID_RANGE_SIZE = 65536


def cgroup_hierarchies() -> list[tuple[str, str, list[str]]]:
    """(mount point, fstype, v1 controllers) of every cgroup hierarchy, from mountinfo.

    Named v1 hierarchies (name=systemd) have no controllers; cgroup2 has an
    empty list here too.  A hierarchy mounted twice is listed once.
    """
    seen = set()
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            point = fields[4].encode().decode("unicode_escape")
            dev = fields[2]
            if dev in seen:
                continue
            seen.add(dev)
            controllers = []
            if fstype == "cgroup":
                supers = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
                controllers = [o for o in supers if o in _V1_CONTROLLERS]
            result.append((point, fstype, controllers))
    return result


def cgroup_group_dirs(parent: str, handle: str) -> list[str]:
    """Every existing directory of container `handle`'s group, in any hierarchy.

    That is ``<mount>/<parent>/<handle>`` wherever it exists: on this hybrid
    machine memory, cpu, cpuacct, pids (v1) and unified (v2); on pure v2 the
    one ``/sys/fs/cgroup/<parent>/<handle>``.
    """
    dirs = []
    for point, _, _ in cgroup_hierarchies():
        d = os.path.join(point, parent, handle)
        if os.path.isdir(d):
            dirs.append(d)
    return dirs


def cgroup_children(parent: str) -> list[str]:
    """Every directory below <mount>/<parent> in any hierarchy (leftover groups)."""
    found = []
    for point, _, _ in cgroup_hierarchies():
        root = os.path.join(point, parent)
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, _ in os.walk(root):
            found += [os.path.join(dirpath, d) for d in dirnames]
    return found


def cgroup_core_dir(parent: str, handle: str) -> "str | None":
    """The group whose cgroup.procs lists every process of the container.

    The cgroup2 group when there is a v2 hierarchy (hybrid or pure v2), else
    the v1 memory group.
    """
    hier = cgroup_hierarchies()
    for want in ("cgroup2", "memory", "pids"):
        for point, fstype, controllers in hier:
            if want == fstype or want in controllers:
                d = os.path.join(point, parent, handle)
                if os.path.isdir(d):
                    return d
    return None


def cgroup_controller_dir(parent: str, handle: str, controller: str) -> "str | None":
    """The group dir serving `controller` ("memory", "pids", "cpu"): the v1
    hierarchy that has it, else the v2 group (pure v2)."""
    hier = cgroup_hierarchies()
    for point, fstype, controllers in hier:
        if fstype == "cgroup" and controller in controllers:
            d = os.path.join(point, parent, handle)
            return d if os.path.isdir(d) else None
    for point, fstype, _ in hier:
        if fstype == "cgroup2":
            d = os.path.join(point, parent, handle)
            return d if os.path.isdir(d) else None
    return None


def cgroup_pids(group_dir: str) -> list[int]:
    try:
        with open(os.path.join(group_dir, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _is_container_init(pid: int) -> bool:
    """cmdline is garden-init (cloche-init's name in a container), or (fallback) it
    is PID 1 of a child pid namespace."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        if os.path.basename(argv0) in ("garden-init", "cloche-init"):
            return True
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    return len(ids) > 1 and ids[-1] == "1"
    except OSError:
        pass
    return False


def container_init_pid(d: "Daemon", handle: str) -> int:
    """Host pid of the container's init (cloche-init, PID 1 inside)."""
    core = cgroup_core_dir(d.cgroup_parent, handle)
    if core is None:
        raise AssertionError(f"container {handle!r} has no cgroup under {d.cgroup_parent!r}")
    pids = cgroup_pids(core)
    for pid in pids:
        if _is_container_init(pid):
            return pid
    raise AssertionError(f"no cloche-init among {pids} in {core}/cgroup.procs")


def process_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def process_start_time(pid: int) -> "int | None":
    """Field 22 of /proc/PID/stat: tells a process from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


# The environment a command started by container_exec sees (the host's own
# must not leak into containers).
CONTAINER_EXEC_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                      "HOME": "/root", "LANG": "C"}


# The host side of container_exec, run as `python3 -c _EXEC_HELPER N DIR... CMD...`.
# It stays outside the container and is a child subreaper; its child joins the N
# cgroup directories and execs CMD (nsenter).  nsenter forks the command into the
# container's pid namespace; if nsenter is killed first (Stop, Destroy, OOM), the
# command is orphaned, and a zombie left to the host's init would keep the
# container's pid namespace (and so Destroy, which waits for its init) alive
# until that init reaps it, which on some hosts takes a second or more.  The
# helper reaps every descendant at once, then exits as its child did (a child
# killed by a signal is re-raised on the helper).
_EXEC_HELPER = r"""
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
n = int(sys.argv[1])
dirs, cmd = sys.argv[2:2 + n], sys.argv[2 + n:]
child = os.fork()
if child == 0:
    try:
        for d in dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        os.execvp(cmd[0], cmd)
    except OSError as e:
        sys.stderr.write(f"container-exec: {e}\n")
        os._exit(125)
status = 0
while True:
    try:
        pid, st = os.wait()
    except ChildProcessError:
        break
    if pid == child:
        status = st
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def container_exec_argv(d: "Daemon", handle: str, argv: list[str]) -> list[str]:
    """The host command line container_exec runs (see there)."""
    pid = container_init_pid(d, handle)
    groups = cgroup_group_dirs(d.cgroup_parent, handle)
    nsenter = ["nsenter", "--target", str(pid), "--all", "--wdns=/", "--"]
    return [sys.executable, "-c", _EXEC_HELPER, str(len(groups))] + groups + nsenter + list(argv)


def container_exec(d: "Daemon", handle: str, argv: list[str], input: "bytes | str | None" = None,
                   timeout: float = 30.0) -> tuple[int, str, str]:
    """Run argv INSIDE container `handle`; return (exit status, stdout, stderr).

    A TEST-SIDE STAND-IN FOR Run, for the tests written before cloche can run
    processes itself (Run comes with a later issue): it does not go through
    the daemon at all.  A helper process forks a child that moves itself into
    every group directory of the container (so the container's memory and
    pids limits apply to it and to what it starts) and execs nsenter, which
    enters all of the init's namespaces (user included, so the command is
    uid 0 inside an unprivileged container) and forks the command as a
    process of the container's pid namespace, with / of the container as
    working directory (--wdns: --wd would hand it a directory of the host's
    mount namespace).  No seccomp filter, capability bounding or rlimit of
    cloche's applies.  The helper itself stays outside the container's
    cgroups and reaps whatever the kill of nsenter orphans (see _EXEC_HELPER).

    Inside the container's cgroups this adds one process besides the command:
    nsenter, which waits for it (so a pids limit of N leaves N-2 for the
    command and its children, init counting one).

    The exit status is the command's; a command killed by signal N gives
    128+N (nsenter re-raises the child's signal on itself; 137 = SIGKILL).
    125 means the helper could not join a cgroup or start nsenter.  On
    timeout the helper is killed (by pid) and AssertionError raised.
    """
    args = container_exec_argv(d, handle, argv)
    if isinstance(input, str):
        input = input.encode()
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    proc = subprocess.Popen(args, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CONTAINER_EXEC_ENV,
                            start_new_session=True, preexec_fn=_die_with_parent)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_exec(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{argv} in {handle} still running after {timeout} s; "
                             f"stdout {out[-500:]!r} stderr {err[-500:]!r}")
    rc = proc.returncode
    if rc < 0:
        rc = 128 - rc
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def kill_exec(proc: subprocess.Popen) -> None:
    """SIGKILL a container_exec/container_spawn helper and everything it started
    (its own process group, by the helper's pid), then reap the helper."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def container_spawn(d: "Daemon", handle: str, argv: list[str]) -> subprocess.Popen:
    """Like container_exec, but return at once with the running Popen.

    The caller waits for it, or ends it with kill_exec().
    """
    return subprocess.Popen(container_exec_argv(d, handle, argv), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=CONTAINER_EXEC_ENV, start_new_session=True,
                            preexec_fn=_die_with_parent)


class Containers:
    """Creates containers on one daemon and destroys those left at teardown."""

    def __init__(self, d: "Daemon"):
        self.daemon = d
        self.handles: list[str] = []

    def create(self, spec: "dict | None" = None, **fields) -> str:
        body = dict(spec or {})
        body.update(fields)
        handle = self.daemon.client().create(body)
        self.handles.append(handle)
        return handle

    def cleanup(self) -> None:
        if not self.daemon.alive():
            return
        client = self.daemon.client(timeout=30)
        for h in self.handles:
            try:
                client.destroy(h)
            except GardenError:
                pass
            except OSError:
                return


@pytest.fixture
def containers(daemon):
    """A fresh default daemon (``containers.daemon``) and a tracker of the
    containers a test makes on it; whatever is left is destroyed at teardown."""
    c = Containers(daemon())
    yield c
    c.cleanup()


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll predicate until it is true (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
