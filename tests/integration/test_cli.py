"""Issue 19: the `cloche` command-line client, run as a real binary against a
real daemon.

Every command is driven through the built ``cloche`` (subprocess, or a
pseudo-terminal from Python's pty module for ``run -t``), and what it did is
checked independently through the Garden client (tests/garden_client/) or from
inside the container.  Every error case must exit non-zero with exactly one
line on stderr.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tarfile
import termios
import time
from pathlib import Path

import pytest

from conftest import BUILD_DIR, REPO_ROOT

CLOCHE = BUILD_DIR / "cloche"

COMMANDS = ["ping", "capacity", "create", "ls", "list", "info", "stop", "destroy", "rm", "run",
            "exec", "attach", "kill", "cp", "limits", "metrics", "net-in", "net-out", "props",
            "images", "pull", "build", "start", "restart", "logs", "events"]


class Cli:
    """The cloche binary pointed at one daemon (Unix socket by default)."""

    def __init__(self, d, **env):
        self.d = d
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("CLOCHE_HOST", "CLOCHE_SOCKET", "CLOCHE_TOKEN_FILE")}
        if d is not None and d.socket_path is not None:
            self.env["CLOCHE_SOCKET"] = str(d.socket_path)
        self.env.update(env)

    def __call__(self, *args, input: "bytes | str | None" = None, timeout: float = 30.0,
                 env: "dict | None" = None, binary: bool = False) -> subprocess.CompletedProcess:
        e = dict(self.env)
        if env:
            e.update(env)
        if isinstance(input, str):
            input = input.encode()
        proc = subprocess.run([str(CLOCHE), *map(str, args)], input=input,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, env=e, timeout=timeout)
        if not binary:
            proc.stdout = proc.stdout.decode("utf-8", "replace")
            proc.stderr = proc.stderr.decode("utf-8", "replace")
        return proc

    def ok(self, *args, **kw) -> str:
        p = self(*args, **kw)
        assert p.returncode == 0, f"cloche {' '.join(map(str, args))}: rc {p.returncode}, " \
                                  f"stderr {p.stderr!r}"
        return p.stdout

    def fails(self, *args, rc: "int | None" = None, match: str = "", **kw) -> str:
        """Run, expect a non-zero exit and one line on stderr; return that line."""
        p = self(*args, **kw)
        assert p.returncode != 0, f"cloche {args} succeeded: {p.stdout!r}"
        if rc is not None:
            assert p.returncode == rc, (p.returncode, p.stderr)
        lines = p.stderr.splitlines()
        assert len(lines) == 1, f"cloche {args}: stderr is not one line: {p.stderr!r}"
        assert lines[0].startswith("cloche"), lines
        assert re.search(match, lines[0]), (match, lines[0])
        return lines[0]


@pytest.fixture(scope="module")
def cli(module_daemon) -> Cli:
    return Cli(module_daemon)


@pytest.fixture
def box(cli, module_daemon):
    """A fresh container, destroyed afterwards."""
    handle = f"cli-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    cli.ok("create", handle)
    yield handle
    try:
        module_daemon.client().destroy(handle)
    except Exception:
        pass


# --------------------------------------------------------------------------
# help, usage, documentation


def test_help_for_every_command(cli):
    out = cli.ok("--help")
    for name in COMMANDS:
        assert re.search(rf"^  {re.escape(name)} ", out, re.M), name
        page = cli.ok(name, "--help")
        assert page.startswith("Usage: cloche "), page
        assert "--help" in page and "--json" in page, name
        assert cli.ok("help", name) == page
    assert cli.ok("--version").startswith("cloche ")
    # Bad usage: exit 2, one line.
    cli.fails("frobnicate", rc=2, match="Unknown command 'frobnicate'")
    cli.fails("ls", "--bogus", rc=2, match="--bogus")
    cli.fails("create", "--memory", "lots", rc=2, match="Invalid memory size 'lots'")
    p = cli()
    assert p.returncode == 2 and "Commands:" in p.stdout


def test_man_pages_and_completion_cover_every_command(cli):
    man1 = (REPO_ROOT / "doc/man/cloche.1").read_text()
    man8 = (REPO_ROOT / "doc/man/cloched.8").read_text()
    completion = REPO_ROOT / "doc/completion/cloche.bash"
    sections = [line.replace("\\-", "-") for line in re.findall(r"^\.SS (.*)$", man1, re.M)]
    for name in COMMANDS:
        assert any(re.match(rf"(\S+, )?{re.escape(name)}(,| |$)", sec) for sec in sections), name
    assert man1.startswith(".TH CLOCHE 1") and man8.startswith(".TH CLOCHED 8")
    # Every cloched option its --help lists is in cloched(8).
    helptext = subprocess.run([str(BUILD_DIR / "cloched"), "--help"], capture_output=True,
                              text=True).stdout
    for opt in sorted(set(re.findall(r"--[a-z][a-z0-9-]+", helptext))):
        assert opt.replace("-", r"\-") in man8, f"{opt} missing from cloched.8"
    # The pages render without warnings.
    assert shutil.which("groff"), "groff is missing (scripts/deps.sh test installs groff-base)"
    for page in ("doc/man/cloche.1", "doc/man/cloched.8"):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(REPO_ROOT / page)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)
    # Bash completion: commands, then a command's options, then handles.
    script = f"""
        source {completion}
        COMP_WORDS=(cloche l); COMP_CWORD=1; _cloche; echo "A:${{COMPREPLY[*]}}"
        COMP_WORDS=(cloche run --); COMP_CWORD=2; _cloche; echo "B:${{COMPREPLY[*]}}"
        COMP_WORDS=(cloche info ''); COMP_CWORD=2; _cloche; echo "C:${{COMPREPLY[*]}}"
    """
    handle = "cli-complete-me"
    cli.ok("create", handle)
    try:
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                             env={**cli.env, "PATH": f"{BUILD_DIR}:{os.environ['PATH']}"},
                             timeout=30).stdout
    finally:
        cli.ok("rm", handle)
    a, b, c = (line.split(":", 1)[1].split() for line in out.splitlines())
    assert set(a) == {"limits", "list", "logs", "ls"}, a
    assert {"--tty", "--detach", "--interactive", "--user", "--env", "--workdir"} <= set(b), b
    assert handle in c, c


# --------------------------------------------------------------------------
# daemon-wide commands and transport


def test_ping_and_capacity(cli, module_daemon):
    assert cli.ok("ping") == "ok\n"
    assert json.loads(cli.ok("ping", "--json")) == {}
    out = cli.ok("capacity")
    cap = module_daemon.client().capacity()
    assert re.search(rf"^Containers: +\d+ of {cap['max_containers']}$", out, re.M), out
    assert re.search(r"^Memory: +[\d.]+ [KMGT]iB ", out, re.M), out
    assert json.loads(cli.ok("--json", "capacity"))["max_containers"] == cap["max_containers"]


def test_tcp_host_and_token(daemon, nonloopback_ip):
    d = daemon(bind_ip=nonloopback_ip, token="s3cret-token", socket_enabled=False)
    c = Cli(None, CLOCHE_HOST=f"{nonloopback_ip}:{d.bind_port}")
    c.fails("ping", rc=1, match="(?i)token")
    token_file = d.workdir / "token"
    assert c.ok("ping", env={"CLOCHE_TOKEN_FILE": str(token_file)}) == "ok\n"
    # -H wins over CLOCHE_HOST; --token-file over CLOCHE_TOKEN_FILE.
    bad = Cli(None, CLOCHE_HOST="127.0.0.1:1")
    assert bad.ok("-H", f"{nonloopback_ip}:{d.bind_port}", "--token-file", str(token_file),
                  "ping") == "ok\n"
    bad.fails("ping", rc=1, match="Cannot connect to the daemon at 127.0.0.1:1")
    wrong = d.workdir / "wrong"
    wrong.write_text("nope\n")
    c.fails("ping", env={"CLOCHE_TOKEN_FILE": str(wrong)}, rc=1, match="(?i)token")
    c.fails("ping", env={"CLOCHE_TOKEN_FILE": str(d.workdir / "missing")}, rc=1,
            match="Cannot read the token file")
    Cli(None).fails("-H", "nocolon", "ping", rc=2, match="Invalid host")


def test_no_daemon_is_one_line(tmp_path):
    Cli(None, CLOCHE_SOCKET=str(tmp_path / "none.sock")).fails(
        "ls", rc=1, match="Cannot connect to the daemon at .*none.sock")


# --------------------------------------------------------------------------
# containers


def test_create_with_every_option(cli, module_daemon, tmp_path):
    g = module_daemon.client()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_text("from the host\n")
    handle = "cli-create-all"
    out = cli.ok("create", "--memory", "512m", "--cpus", "1.5", "--cpu-weight", "300",
                 "--pids", "128", "--bandwidth", "1m:64k", "-e", "GREETING=hi there",
                 "--env", "B=2", "--bind", f"{shared}:/mnt/host:ro", "-p", "team=red",
                 "--property", "tier=web", "--network", "10.253.7.6", "--grace", "5m",
                 "--publish", "0:8080", "-P", "5353/udp", handle)
    assert out == handle + "\n"
    try:
        assert g.current_memory_limits(handle) == {"limit_in_bytes": 512 << 20}
        cpu = g.current_cpu_limits(handle)
        assert cpu.get("cloche_millicpus") == 1500 and cpu.get("weight") == 300, cpu
        assert g.current_limits(handle, "pids") == {"max": 128}
        assert g.current_bandwidth_limits(handle) == {"rate": 1 << 20, "burst": 64 << 10}
        info = g.info(handle)
        assert info["ContainerIP"] == "10.253.7.6"
        assert info["Properties"]["team"] == "red" and info["Properties"]["tier"] == "web"
        assert info["Properties"]["garden.grace-time"] == str(300 * 10**9)
        ports = [p["ContainerPort"] for p in info["MappedPorts"]]
        assert ports == [8080, 5353], info["MappedPorts"]
        assert cli.ok("run", handle, "sh", "-c", 'echo "$GREETING/$B"') == "hi there/2\n"
        assert cli.ok("run", handle, "cat", "/mnt/host/f") == "from the host\n"
        p = cli("run", handle, "sh", "-c", "echo x > /mnt/host/g")
        assert p.returncode != 0 and not (shared / "g").exists()
    finally:
        g.destroy(handle)
    # A made-up handle when none is given.
    made = cli.ok("create").strip()
    assert made in g.list()
    g.destroy(made)
    # Refusals, before and by the daemon.
    cli.fails("create", "--cpus", "1.2345", rc=2, match="Invalid CPU count")
    cli.fails("create", "--bind", "/nonexistent-dir:/x", rc=1, match="Cannot bind mount")
    cli.fails("create", "--grace", "soon", rc=2, match="Invalid --grace")
    cli.fails("create", "--publish", "70000:1", rc=2, match="host port")
    cli.fails("create", "bad/handle", rc=1, match="Invalid handle")
    cli.ok("create", "cli-dup")
    try:
        cli.fails("create", "cli-dup", rc=1, match="Handle 'cli-dup' already in use")
    finally:
        g.destroy("cli-dup")
    cli.fails("create", "--network", "10.253.7.1", rc=1, match="gateway")


def test_create_privileged_and_disk(cli, module_daemon):
    g = module_daemon.client()
    cli.ok("create", "--privileged", "cli-priv")
    try:
        uid_map = cli.ok("run", "cli-priv", "cat", "/proc/self/uid_map").split()
        assert uid_map == ["0", "0", "4294967295"], uid_map
    finally:
        g.destroy("cli-priv")
    cli.ok("create", "cli-unpriv")
    try:
        assert cli.ok("run", "cli-unpriv", "cat", "/proc/self/uid_map").split()[1] != "0"
    finally:
        g.destroy("cli-unpriv")
    p = cli("create", "--disk", "64m", "cli-disk")
    if p.returncode != 0:
        pytest.skip(f"disk limits unavailable here: {p.stderr.strip()}")
    try:
        assert g.current_disk_limits("cli-disk")["byte_hard"] == 64 << 20
    finally:
        g.destroy("cli-disk")


def test_ls_info_stop_destroy(cli, module_daemon):
    g = module_daemon.client()
    for h in g.list():
        g.destroy(h)
    cli.ok("create", "-p", "team=red", "-P", "0:80", "cli-red")
    cli.ok("create", "-p", "team=blue", "cli-blue")
    table = cli.ok("ls").splitlines()
    assert table[0].split() == ["HANDLE", "STATE", "ADDRESS", "PORTS", "PROCESSES", "CREATED"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"cli-red", "cli-blue"}
    # Columns are aligned: every row's STATE starts where the header's does.
    col = table[0].index("STATE")
    assert all(line[col:].startswith(("active", "stopped")) for line in table[1:]), table
    port = g.info("cli-red")["MappedPorts"][0]["HostPort"]
    assert f"{port}->80" in rows["cli-red"]
    assert re.search(r"(just now|seconds? ago)$", rows["cli-red"]), rows["cli-red"]
    assert cli.ok("list", "--filter", "team=red", "-q") == "cli-red\n"
    assert cli.ok("ls", "-f", "team=red", "-f", "tier=none", "-q") == ""
    listed = json.loads(cli.ok("ls", "--json"))
    assert sorted(e["handle"] for e in listed) == ["cli-blue", "cli-red"]
    assert listed[0]["info"]["State"] == "active"

    info = cli.ok("info", "cli-red")
    assert re.search(r"^State: +active$", info, re.M) and "team=red" in info
    both = json.loads(cli.ok("info", "--json", "cli-red", "cli-blue"))
    assert both["cli-blue"]["Properties"]["team"] == "blue"

    # stop several; -k kills at once.
    pid = cli.ok("run", "-d", "cli-red", "sleep", "1000").strip()
    t0 = time.monotonic()
    assert cli.ok("stop", "-k", "cli-red", "cli-blue") == "cli-red\ncli-blue\n"
    assert time.monotonic() - t0 < 5
    assert g.info("cli-red")["State"] == "stopped"
    assert cli("attach", "cli-red", pid).returncode == 137
    assert re.search(r"^State: +stopped$", cli.ok("info", "cli-blue"), re.M)

    # destroy several, with an unknown handle among them: the rest still go.
    line = cli.fails("rm", "cli-red", "nope", "cli-blue", rc=1)
    assert line == "cloche: unknown handle: nope"
    assert g.list() == []
    cli.fails("destroy", "cli-red", rc=1, match="unknown handle: cli-red")
    cli.fails("info", "nope", rc=1, match="^cloche: unknown handle: nope$")
    cli.fails("stop", rc=2, match="Expected at least one HANDLE")
    assert cli.ok("ls") .splitlines()[0].startswith("HANDLE")


# --------------------------------------------------------------------------
# processes


def test_run_streams_status_and_options(cli, box):
    p = cli("run", box, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n")
    # stdin with -i, byte-exact for text; without -i it is empty.
    data = "".join(f"line {i} äöü\n" for i in range(20000)).encode()
    p = cli("exec", "-i", box, "cat", input=data, binary=True)
    assert p.returncode == 0 and p.stdout == data
    assert cli.ok("run", box, "cat", input="ignored") == ""
    # -u, -e, -w
    assert cli.ok("run", "-u", "vcap", box, "id", "-u") == "1000\n"
    assert cli.ok("run", "-u", "1000:1000", "-w", "/tmp", "-e", "X=y z", box, "sh", "-c",
                  'pwd; echo "$X"') == "/tmp\ny z\n"
    # Options after the command belong to the command.
    assert cli.ok("run", box, "echo", "-n", "--json") == "--json"
    # Exit statuses: the command's own, 127 not found, 125 cloche's failure.
    assert cli("run", box, "sh", "-c", "kill -KILL $$").returncode == 137
    cli.fails("run", box, "no-such-command", rc=127, match="no-such-command")
    cli.fails("run", "nope", "true", rc=125, match="unknown handle: nope")
    cli.fails("run", "-u", "nobody-here", box, "true", rc=125, match="nobody-here")
    cli.fails("run", box, rc=2, match="No COMMAND given, and the image of .* has no Cmd")
    cli.fails("run", rc=2, match="Expected")


def test_run_detach_attach_and_signals(cli, box):
    pid = cli.ok("run", "-d", "--id", "cli-p1", box, "sh", "-c",
                 "sleep 0.5; echo late; echo late-err >&2; exit 4").strip()
    assert pid == "cli-p1"
    p = cli("attach", box, pid)
    assert (p.returncode, p.stdout, p.stderr) == (4, "late\n", "late-err\n")
    # A finished process gives its status at once.
    assert cli("attach", box, pid).returncode == 4
    cli.fails("attach", box, "nope", rc=125, match="nope")
    assert json.loads(cli.ok("run", "-d", "--json", box, "true"))["process_id"]

    # kill: any signal, by name or number.
    script = ("trap 'echo got-usr1; exit 11' USR1; trap 'echo got-hup; exit 12' HUP; "
              "echo ready; while :; do sleep 0.1; done")
    pid = cli.ok("run", "-d", box, "sh", "-c", script).strip()
    with subprocess.Popen([str(CLOCHE), "attach", box, pid], stdout=subprocess.PIPE,
                          env=cli.env) as att:
        time.sleep(0.5)
        cli.ok("kill", "-s", "USR1", box, pid)
        out, _ = att.communicate(timeout=10)
        assert att.returncode == 11 and b"got-usr1" in out
    pid = cli.ok("run", "-d", box, "sh", "-c", script).strip()
    time.sleep(0.3)
    cli.ok("kill", "--signal", "1", box, pid)
    assert cli("attach", box, pid).returncode == 12
    pid = cli.ok("run", "-d", box, "sleep", "100").strip()
    assert json.loads(cli.ok("kill", "--json", box, pid)) == {"process_id": pid, "signal": 15}
    assert cli("attach", box, pid).returncode == 143
    cli.fails("kill", "-s", "BOGUS", box, pid, rc=2, match="Invalid signal 'BOGUS'")
    cli.fails("kill", box, pid, rc=1, match="already exited")
    cli.fails("kill", box, "nope", rc=1, match="nope")

    # Signals the client gets reach the process (without a terminal).
    with subprocess.Popen([str(CLOCHE), "run", box, "sh", "-c",
                           "trap 'echo got-term; exit 9' TERM; echo ready; "
                           "while :; do sleep 0.1; done"],
                          stdout=subprocess.PIPE, env=cli.env) as run:
        assert run.stdout.readline() == b"ready\n"
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=10)
        assert run.returncode == 9 and out == b"got-term\n"


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {bytes(seen[-500:])!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {needle!r}; got {bytes(seen[-500:])!r}")
            seen += chunk
    at = seen.index(needle) + len(needle)
    out = bytes(seen[:at])
    del seen[:at]
    return out


def test_run_tty_resize_ctrl_c_and_status(cli, box):
    """run -t through a pseudo-terminal: raw mode, the size at start and after a
    resize (SIGWINCH) as stty sees it, Ctrl-C reaching the process, and the
    shell's exit status passed through."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execve(str(CLOCHE), [str(CLOCHE), "run", "-t", box, "sh"], cli.env)
        finally:
            os._exit(126)
    seen = bytearray()
    try:
        _set_winsize(master, 30, 100)
        time.sleep(0.2)
        # The size at start comes from the terminal (set before or just after start).
        os.write(master, b"stty size\r")
        _read_until(master, b"stty size", seen)
        first = _read_until(master, b"\n", seen) + _read_until(master, b"\n", seen)
        if b"30 100" not in first:  # the resize raced the start: SIGWINCH must fix it
            os.write(master, b"stty size\r")
            _read_until(master, b"30 100", seen)
        _set_winsize(master, 41, 123)  # the kernel sends SIGWINCH to cloche
        deadline = time.monotonic() + 10
        while True:
            os.write(master, b"stty size; echo E=N\"D\"\r")
            block = _read_until(master, b"E=ND", seen)
            if b"41 123" in block:
                break
            assert time.monotonic() < deadline, block
            time.sleep(0.2)
        # Ctrl-C: the byte goes through raw mode to the container's terminal,
        # whose line discipline sends SIGINT to sleep.
        os.write(master, b"sleep 100\r")
        _read_until(master, b"sleep 100", seen)
        time.sleep(0.5)
        t0 = time.monotonic()
        os.write(master, b"\x03")
        _read_until(master, b"^C", seen)
        os.write(master, b"echo rc=$?\r")
        _read_until(master, b"rc=130", seen)
        assert time.monotonic() - t0 < 5
        os.write(master, b"exit 42\r")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 42
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)


def test_run_tty_restores_the_terminal(cli, box):
    """After run -t the terminal is back in its own mode (echo, canonical)."""
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([str(CLOCHE), "run", "-t", box, "sh", "-c", "stty -a | head -1"],
                            stdin=slave, stdout=slave, stderr=slave, env=cli.env)
    seen = bytearray()
    _read_until(master, b"speed", seen)
    assert proc.wait(timeout=15) == 0
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)


# --------------------------------------------------------------------------
# files


def _make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "a.txt").write_text("hello\n")
    (root / "sub" / "bin.dat").write_bytes(os.urandom(300_000) + bytes(range(256)))
    (root / "sub" / "deeper" / "empty").write_bytes(b"")
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o755)
    (root / "secret").write_text("x")
    (root / "secret").chmod(0o600)
    (root / "sub" / "deeper").chmod(0o700)
    os.symlink("../a.txt", root / "sub" / "link")
    name_with_space = root / "with space é.txt"
    name_with_space.write_text("spaced\n")


def _snapshot(root: Path) -> dict:
    """Everything that must survive the trip: kind, mode, content, link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def test_cp_directory_tree_both_ways(cli, box, module_daemon, tmp_path):
    src = tmp_path / "tree"
    src.mkdir()
    _make_tree(src)
    want = _snapshot(src)

    # Host to container: the tree lands in the destination by its name.
    cli.ok("cp", src, f"{box}:/data")
    tar_bytes = module_daemon.client().stream_out(box, "/data/tree")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        inside = {m.name: m for m in t.getmembers()}
        assert t.extractfile(inside["tree/sub/bin.dat"]).read() == \
            (src / "sub" / "bin.dat").read_bytes()
        assert inside["tree/sub/link"].issym() and inside["tree/sub/link"].linkname == "../a.txt"
        assert inside["tree/script.sh"].mode & 0o777 == 0o755
        assert inside["tree/secret"].mode & 0o777 == 0o600
    assert cli.ok("run", box, "cat", "/data/tree/with space é.txt") == "spaced\n"

    # Container to host: byte-exact, modes and links kept.
    back = tmp_path / "back"
    cli.ok("cp", f"{box}:/data/tree", back)
    assert _snapshot(back / "tree") == want

    # A trailing slash copies the contents.
    cli.ok("cp", f"{src}/", f"{box}:/contents")
    with tarfile.open(fileobj=io.BytesIO(module_daemon.client().stream_out(box, "/contents/"))) as t:
        top = {n[2:] for n in t.getnames() if n.count("/") == 1 and n != "./"}
    assert top == {"a.txt", "empty-dir", "script.sh", "secret", "sub", "with space é.txt"}, top
    flat = tmp_path / "flat"
    cli.ok("cp", f"{box}:/contents/", flat)
    assert _snapshot(flat) == want

    # One file, and tar streams on stdin/stdout.
    cli.ok("cp", src / "a.txt", f"{box}:/one")
    assert cli.ok("run", box, "cat", "/one/a.txt") == "hello\n"
    out = cli("cp", f"{box}:/data/tree/sub", "-", binary=True)
    assert out.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as t:
        assert "sub/bin.dat" in t.getnames()
    cli.ok("cp", "-", f"{box}:/from-stdin", input=out.stdout)
    assert cli.ok("run", box, "sh", "-c", "wc -c < /from-stdin/sub/bin.dat").strip() == \
        str(300_000 + 256)

    # As another user: files belong to them, and their permissions apply.
    cli.ok("cp", "-u", "vcap", src / "a.txt", f"{box}:/home/vcap/in")
    assert cli.ok("run", box, "stat", "-c", "%u", "/home/vcap/in/a.txt") == "1000\n"
    cli.fails("cp", "-u", "vcap", src / "a.txt", f"{box}:/root/x", rc=1,
              match="Permission denied")

    # Errors: one line each.
    cli.fails("cp", f"{box}:/nope", tmp_path / "x", rc=1, match="No such file or directory")
    cli.fails("cp", tmp_path / "missing", f"{box}:/x", rc=1, match="missing")
    cli.fails("cp", "nope-handle:/x", tmp_path / "y", rc=1, match="unknown handle")
    cli.fails("cp", src, tmp_path / "z", rc=2, match="Exactly one")


def test_cp_in_keeps_sparse_files_and_says_what_tar_cannot_hold(cli, box, tmp_path):
    """A file with holes arrives byte for byte (before, its data blocks were sent
    as one stream under a sparse entry, which put them in the wrong places), and
    a socket, which tar cannot hold, is said in one line and skipped: the rest
    of the tree still arrives and cp exits 1 (before, the copy stopped at the
    socket and exited 0)."""
    src = tmp_path / "tree"
    src.mkdir()
    sparse = src / "sparse.img"
    with open(sparse, "wb") as f:
        for i in range(4):
            f.seek(i * (1 << 20))
            f.write(f"block {i}\n".encode() * 100)
        f.truncate(5 << 20)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "listening.sock"))
    for i in range(20):
        (src / f"after-{i}.txt").write_text(f"file {i}\n")
    try:
        line = cli.fails("cp", src, f"{box}:/in", rc=1,
                         match=r"Cannot copy 'tree/listening.sock': .*socket")
    finally:
        sock.close()
    assert "socket" in line
    want = hashlib.sha256(sparse.read_bytes()).hexdigest()
    got = cli.ok("run", box, "sha256sum", "/in/tree/sparse.img").split()[0]
    assert got == want
    listing = cli.ok("run", box, "ls", "/in/tree").split()
    assert sorted(listing) == sorted(["sparse.img"] + [f"after-{i}.txt" for i in range(20)])


def test_run_whose_output_cannot_be_written_fails_and_says_so(cli, box, tmp_path):
    """`cloche run ... > file` on a disk that fills up exits 125 (run's own
    failure) with one line that says why and what the process exited with (before, the output was
    dropped and the exit status was the process's own, 0). A reader that goes
    away (a closed pipe) is still no error."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "cloche-test", str(small)],
                   check=True)
    try:
        with open(small / "out", "wb") as out:
            p = subprocess.run([str(CLOCHE), "run", box, "sh", "-c", "yes | head -c 16000000"],
                               stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env=cli.env, timeout=60)
        err = p.stderr.decode().splitlines()
        assert p.returncode == 125 and len(err) == 1, (p.returncode, err)
        assert "Cannot write the process's output (it exited 0): No space left on device" \
            in err[0], err
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
    p = subprocess.run(f"'{CLOCHE}' run {box} sh -c 'yes | head -c 16000000' | head -c 10",
                       shell=True, capture_output=True, env=cli.env, timeout=60)
    assert p.stdout == b"y\ny\ny\ny\ny\n" and p.stderr == b"", p


def test_cp_onto_a_full_disk_fails_and_says_so(cli, box, tmp_path):
    """A copy out of a container onto a host file system that fills up fails
    with "No space left on device", one line, exit 1 (before, libarchive's
    failed write counted as a warning: the file was extended to its full length
    with zeros and cp exited 0)."""
    cli.ok("run", box, "sh", "-c", "mkdir /big && yes cloche | head -c 24000000 > /big/f")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "cloche-test", str(small)],
                   check=True)
    try:
        cli.fails("cp", f"{box}:/big", small, rc=1,
                  match=r"Cannot write 'big/f': .*No space left on device")
        subprocess.run(["rm", "-rf", str(small / "big")], check=True)
        cli.ok("run", box, "sh", "-c", "mkdir /fits && echo ok > /fits/f")
        cli.ok("cp", f"{box}:/fits", small)
        assert (small / "fits" / "f").read_text() == "ok\n"
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


# --------------------------------------------------------------------------
# limits, metrics, network, properties


def test_limits_get_and_set(cli, box, module_daemon):
    g = module_daemon.client()
    out = cli.ok("limits", box)
    assert re.search(r"^memory: +no limit$", out, re.M), out
    out = cli.ok("limits", "set", box, "--memory", "256m", "--pids", "50", "--cpus", "0.25")
    assert re.search(r"^memory: +256 MiB$", out, re.M), out
    assert g.current_memory_limits(box) == {"limit_in_bytes": 256 << 20}
    assert g.current_limits(box, "pids") == {"max": 50}
    assert g.current_cpu_limits(box)["cloche_millicpus"] == 250
    # --cpu-weight alone keeps the cap (a PUT replaces the kind whole).
    cli.ok("limits", "set", box, "--cpu-weight", "100")
    assert g.current_cpu_limits(box) == {"weight": 100, "cloche_millicpus": 250}
    assert json.loads(cli.ok("limits", box, "memory", "--json")) == \
        {"limit_in_bytes": 256 << 20}
    assert set(json.loads(cli.ok("--json", "limits", box))) == \
        {"memory", "cpu", "pids", "disk", "bandwidth"}
    assert re.search(r"^cpu: +0\.25 CPUs, weight 100$", cli.ok("limits", box), re.M)
    cli.fails("limits", "set", box, "--memory", "1k", rc=1, match="memory")
    cli.fails("limits", "set", box, rc=2, match="Nothing to set")
    cli.fails("limits", box, "gpu", rc=2, match="Unknown limit kind 'gpu'")
    cli.fails("limits", "nope", rc=1, match="unknown handle: nope")


def test_metrics_and_history(cli, box):
    cli.ok("run", box, "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    out = cli.ok("metrics", box)
    assert re.search(r"^Memory: +[\d.]+ (B|KiB|MiB)", out, re.M), out
    assert re.search(r"^CPU time: +\d+\.\d{3} s", out, re.M), out
    assert re.search(r"^Age: +(less than a second|\d+ seconds?)$", out, re.M), out
    m = json.loads(cli.ok("metrics", "--json", box))
    assert m["CPUStat"]["Usage"] > 0 and "MemoryStat" in m
    hist = cli.ok("metrics", "--history", box)
    assert hist.splitlines()[0].split() == ["TIME", "CPU", "%", "MEMORY", "LIMIT", "RX", "TX"]
    h = json.loads(cli.ok("metrics", "--history", "--since", "1h", "--json", box))
    assert "samples" in h and h["interval"] > 0
    cli.fails("metrics", "--since", "1h", box, rc=2, match="--since needs --history")
    cli.fails("metrics", "nope", rc=1, match="unknown handle: nope")


def test_net_in_and_net_out(cli, box, module_daemon):
    g = module_daemon.client()
    out = cli.ok("net-in", box, "8080")
    m = re.fullmatch(r"(\d+) -> 8080/tcp\n", out)
    assert m, out
    fixed = module_daemon.port_pool_start + 999
    assert cli.ok("net-in", box, f"{fixed}:53/udp") == f"{fixed} -> 53/udp\n"
    mapped = [(p["HostPort"], p["ContainerPort"]) for p in g.info(box)["MappedPorts"]]
    assert mapped == [(int(m.group(1)), 8080), (fixed, 53)]
    cli.fails("net-in", box, f"{fixed}:54/udp", rc=1, match="already mapped")
    cli.fails("net-in", box, "99999", rc=2, match="Invalid port mapping")
    assert json.loads(cli.ok("net-in", "--json", box, "0:81"))["container_port"] == 81

    cli.ok("net-out", box, "--protocol", "tcp", "--network", "10.0.0.0-10.255.255.255",
           "--port", "443", "--port", "8000-8100", "--log")
    cli.ok("net-out", box, "--protocol", "icmp", "--icmp-type", "8")
    cli.ok("net-out", box, "--network", "192.0.2.53")
    cli.fails("net-out", box, "--port", "80", rc=1, match="Ports cannot be specified")
    cli.fails("net-out", box, "--protocol", "sctp", rc=2, match="Invalid protocol")
    cli.fails("net-out", box, "--network", "300.1.2.3", rc=1, match="300.1.2.3")


def test_props(cli, box, module_daemon):
    g = module_daemon.client()
    cli.ok("props", "set", box, "owner", "ops team")
    cli.ok("props", "set", box, "a b/c+d", "odd key")
    assert g.properties(box)["owner"] == "ops team"
    assert g.properties(box)["a b/c+d"] == "odd key"
    assert cli.ok("props", "get", box, "a b/c+d") == "odd key\n"
    assert "owner=ops team\n" in cli.ok("props", box)
    assert json.loads(cli.ok("props", "--json", box))["owner"] == "ops team"
    assert json.loads(cli.ok("props", "get", "--json", box, "owner")) == {"value": "ops team"}
    cli.ok("props", "rm", box, "owner")
    assert "owner" not in g.properties(box)
    cli.fails("props", "get", box, "owner", rc=1, match="property does not exist: owner")
    cli.fails("props", "set", box, "k", rc=2, match="Expected")
    cli.fails("props", "nope", rc=1, match="unknown handle: nope")


def test_ls_many_long_handles_in_batches(cli, module_daemon):
    """ls asks BulkInfo and BulkMetrics in batches (4 KiB of handles each), so a
    long list never exceeds the daemon's request-line limit; 75 handles of 60
    bytes need two."""
    g = module_daemon.client()
    handles = [f"{'b' * 57}{i:03d}" for i in range(75)]
    try:
        for h in handles:
            g.create({"handle": h})
        table = cli.ok("ls").splitlines()
        assert len(table) == 76
        assert sorted(line.split()[0] for line in table[1:]) == handles
        assert all(line.split()[1] == "active" for line in table[1:])
        listed = json.loads(cli.ok("ls", "--json"))
        assert sorted(e["handle"] for e in listed) == handles
        assert all(e["info"]["State"] == "active" and e["age_ns"] > 0 for e in listed)
    finally:
        for h in handles:
            try:
                g.destroy(h)
            except Exception:
                pass


def test_run_short_processes_always_get_their_status(cli, box):
    """A process that ends while cloche sends its stdin EOF still reports its
    exit status. (The daemon used to read a failed write of that EOF to the
    ended process's monitor as the client hanging up, about once in a hundred
    runs of `true`, and closed the control connection without the status.)"""
    failures = []
    for i in range(300):
        p = cli("run", box, "sh", "-c", f"exit {i % 7}")
        if p.returncode != i % 7:
            failures.append((i, p.returncode, p.stderr))
    assert failures == []
