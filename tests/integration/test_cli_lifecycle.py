"""Issues 19 and 14: `cloche start`, `restart`, `logs` and `events`, and `create
--service`, run as the real binary against a real daemon; what they did is
checked through the Garden client."""

from __future__ import annotations

import json
import select
import subprocess
import time

import pytest

from test_cli import CLOCHE, Cli

SERVICE = ("i=0; while true; do i=$((i+1)); echo line-$i; echo err-$i >&2; "
           "sleep 0.2; done")


def _wait(what, fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def _read_lines(proc, want, timeout=20.0):
    """Lines of proc's stdout until want(lines) holds."""
    lines, buf = [], b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want(lines):
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += [line.decode() for line in done]
    return lines


def test_service_logs_start_restart_and_events(daemon):
    d = daemon()
    c = d.client()
    cli = Cli(d)
    assert cli.ok("create", "--service-cmd", SERVICE, "--restart", "always", "svc") == "svc\n"
    assert "service" in c.info("svc")["ProcessIDs"]

    # logs: stdout lines on stdout, stderr lines on stderr; --tail; --timestamps.
    def tail(n):
        p = cli("logs", "--tail", str(n), "svc")
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines(), p.stderr.splitlines()
    _wait("six log lines", lambda: sum(map(len, tail(6))) == 6)
    out, err = tail(6)  # the tail counts both streams' lines
    assert out and all(l.startswith("line-") for l in out), out
    assert err and all(l.startswith("err-") for l in err), err
    stamped = cli.ok("logs", "-t", "--tail", "2", "svc").split()
    assert stamped[0].endswith("Z") and stamped[1].startswith("line-"), stamped
    records = [json.loads(l) for l in cli.ok("logs", "--json", "--tail", "2", "svc").splitlines()]
    assert {r["stream"] for r in records} <= {"stdout", "stderr"} and len(records) == 2
    assert cli.ok("logs", "--since", "1h", "svc").count("line-1\n") == 1

    # -f: new lines keep coming until the client leaves.
    follow = subprocess.Popen([str(CLOCHE), "logs", "-f", "--tail", "0", "svc"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=cli.env)
    try:
        lines = _read_lines(follow, lambda ls: len(ls) >= 3)
        assert len(lines) >= 3 and all(l.startswith("line-") for l in lines), lines
        n = [int(l.split("-")[1]) for l in lines]
        assert n == sorted(n) and n[-1] > n[0], n
    finally:
        follow.terminate()
        follow.wait(timeout=10)

    # events -f sees what happens next.
    events = subprocess.Popen([str(CLOCHE), "events", "-f"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=cli.env)
    try:
        time.sleep(0.5)
        # stop, then start. (Whether start brings the service back is the
        # daemon's business, checked by its own tests.)
        cli.ok("stop", "svc")
        assert c.info("svc")["State"] == "stopped"
        cli.fails("start", "svc", "nope", rc=1, match="nope")  # svc started, nope unknown
        assert c.info("svc")["State"] == "active"
        cli.fails("start", "svc", rc=1, match="is active, not stopped")
        assert cli.ok("restart", "-k", "svc") == "svc\n"
        assert c.info("svc")["State"] == "active"
        lines = _read_lines(events, lambda ls: sum("started" in l for l in ls) >= 2)
    finally:
        events.terminate()
        events.wait(timeout=10)
    kinds = [l.split()[1] for l in lines if l.split()[2:3] == ["svc"]]
    assert kinds[:2] == ["stopped", "started"] and kinds.count("started") == 2, lines

    # events without -f: what the daemon holds, oldest first; --json; --handle.
    past = [json.loads(l) for l in cli.ok("events", "--json", "--since", "1h",
                                          "--handle", "svc").splitlines()]
    assert past[0]["type"] == "created" and all(e["handle"] == "svc" for e in past)
    assert [e["type"] for e in past].count("stopped") == 2
    assert cli.ok("events", "--handle", "svc").count("\n") == len(past)

    # A later request on a kept-alive connection (as a browser's, the dashboard's)
    # gets the lines as an ordinary reply; a follow there is refused.
    def second_on_connection(target):
        with c.connect(10) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" +
                         f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        first, _, second = data.partition(b"{}")
        assert first.startswith(b"HTTP/1.1 200"), data[:200]
        head, _, body = second.partition(b"\r\n\r\n")
        return head.decode().lstrip(), body
    head, body = second_on_connection("/containers/svc/cloche/logs?tail=4")
    assert head.startswith("HTTP/1.1 200") and "application/x-ndjson" in head, head
    lines = [json.loads(l) for l in body.decode().splitlines()]
    assert len(lines) == 4 and {l["stream"] for l in lines} == {"stdout", "stderr"}, lines
    head, body = second_on_connection("/containers/svc/cloche/logs?tail=1&follow=true")
    assert head.startswith("HTTP/1.1 400") and b"first request on its connection" in body, body

    # Errors: one line, non-zero.
    cli.fails("logs", "nope", rc=1, match="nope")
    cli.fails("logs", "--tail", "x", "svc", rc=2, match="--tail")
    cli.fails("logs", "--since", "soon", "svc", rc=2, match="--since")
    cli.fails("start", rc=2, match="Expected")
    cli.fails("events", "extra", rc=2, match="Expected")
    cli.fails("create", "--restart", "sometimes", rc=2, match="--restart")
    cli.ok("create", "plain")
    cli.fails("logs", "plain", rc=1)  # no service: no logs
    cli.fails("create", "--service", "raw-service", rc=1)  # a raw rootfs has no Cmd
    assert "raw-service" not in c.list()
