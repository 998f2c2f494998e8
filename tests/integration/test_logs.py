"""Issue 14: the log files cloche-shim writes for a container's service (and
for processes run with ``"cloche_log": true``), rotated at the size given, and
``GET /containers/H/cloche/logs`` with tail, since and follow, as ndjson and as
text, through the test client and through curl."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from conftest import wait_until
from garden_client import GardenError

WAIT = 20.0

# Prints "line 000" .. "line 119" (each record 38 bytes with its header), then
# waits for /tmp/go: what it holds is printed (then it is removed).
SCRIPT = ("i=0; while [ $i -lt 120 ]; do printf 'line %03d\\n' $i; i=$((i+1)); done; "
          "echo batch1-done >&2; "
          "while true; do if [ -f /tmp/go ]; then cat /tmp/go; rm /tmp/go; fi; sleep 0.05; done")


def logs(client, handle: str, accept: str = "application/x-ndjson", **query) -> tuple[int, bytes]:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    status, headers, body = client.raw("GET", f"/containers/{handle}/cloche/logs?{q}",
                                       headers={"Accept": accept})
    return status, body


def lines_of(body: bytes) -> list[dict]:
    return [json.loads(l) for l in body.decode().splitlines()]


def say(client, handle: str, text: str) -> None:
    """Make the service print text (through /tmp/go)."""
    p = client.run(handle, {"path": "/bin/sh", "args": [
        "-c", f"printf '{text}' > /tmp/go.new && mv /tmp/go.new /tmp/go"]})
    assert p.wait(WAIT) == 0


def logged(client, handle: str, needle: str) -> bool:
    status, body = logs(client, handle)
    return status == 200 and needle in body.decode()


@pytest.fixture
def chatty(containers):
    c = containers.daemon.client()
    h = containers.create(cloche_service={"path": "/bin/sh", "args": ["-c", SCRIPT],
                                          "log": {"max_size": 4096, "max_files": 3}})
    assert wait_until(lambda: logged(c, h, "batch1-done"), WAIT)
    return containers.daemon, c, h


def test_rotation_at_the_size_given(chatty):
    d, c, h = chatty
    logdir = d.depot / "containers" / h / "logs"
    names = sorted(p.name for p in logdir.iterdir())
    assert names == ["service.log", "service.log.1"], names
    for p in logdir.iterdir():
        assert p.stat().st_size <= 4096, (p, p.stat().st_size)
    assert (logdir / "service.log.1").stat().st_size > 4096 - 64
    # More output: three files at most, the oldest dropped.
    say(c, h, "".join(f"more {i:03d} padding padding padding\\n" for i in range(200)))
    assert wait_until(lambda: logged(c, h, "more 199"), WAIT)
    names = sorted(p.name for p in logdir.iterdir())
    assert names == ["service.log", "service.log.1", "service.log.2"], names
    for p in logdir.iterdir():
        assert p.stat().st_size <= 4096
    status, body = logs(c, h)
    got = [l["line"] for l in lines_of(body)]
    # Whatever is still kept is the newest output, in order, without a gap.
    assert got[-1] == "more 199 padding padding padding"
    more = [int(x.split()[1]) for x in got if x.startswith("more ")]
    assert more == list(range(more[0], 200)) and more[0] > 0
    assert "line 000" not in got


def test_tail_and_since_return_exactly_the_expected_lines(chatty):
    d, c, h = chatty
    status, body = logs(c, h, tail=5)
    assert status == 200
    got = lines_of(body)
    assert [l["line"] for l in got] == ["line 116", "line 117", "line 118", "line 119",
                                       "batch1-done"]
    assert [l["stream"] for l in got] == ["stdout"] * 4 + ["stderr"]
    assert all(l["time"].endswith("Z") and len(l["time"]) == 30 for l in got), got
    status, body = logs(c, h, tail=0)
    assert (status, body) == (200, b"")
    status, body = logs(c, h)
    got = [l["line"] for l in lines_of(body)]
    assert got == [f"line {i:03d}" for i in range(120)] + ["batch1-done"]
    # since: only what came after the moment given.
    time.sleep(1.1)
    mark = time.time()
    time.sleep(0.1)
    say(c, h, "after-1\\nafter-2\\n")
    assert wait_until(lambda: logged(c, h, "after-2"), WAIT)
    status, body = logs(c, h, since=f"{mark:.3f}")
    assert [l["line"] for l in lines_of(body)] == ["after-1", "after-2"]
    status, body = logs(c, h, since=int(mark) + 3600)
    assert (status, body) == (200, b"")
    # Text form.
    status, body = logs(c, h, accept="text/plain", tail=2)
    text = body.decode().splitlines()
    assert [t.split(" ", 2)[1:] for t in text] == [["stdout", "after-1"], ["stdout", "after-2"]]
    # Bad queries are 400, the good ones above worked.
    for q in ({"tail": "-1"}, {"tail": "x"}, {"since": "yesterday"}, {"follow": "maybe"}):
        status, body = logs(c, h, **q)
        assert status == 400, (q, body)


def test_follow_streams_new_lines_until_the_client_leaves(chatty):
    d, c, h = chatty
    sock = c.connect(30)
    sock.sendall(f"GET /containers/{h}/cloche/logs?tail=1&follow=true HTTP/1.1\r\n"
                 f"Host: x\r\nAccept: application/x-ndjson\r\n\r\n".encode())
    buf = b""

    def have(n: int) -> bool:
        nonlocal buf
        sock.settimeout(0.2)
        try:
            chunk = sock.recv(65536)
            buf += chunk
        except TimeoutError:
            pass
        return buf.count(b'"}\n') >= n

    assert wait_until(lambda: have(1), WAIT)
    say(c, h, "f1\\nf2\\n")
    assert wait_until(lambda: have(3), WAIT)
    say(c, h, "f3\\n")
    assert wait_until(lambda: have(4), WAIT)
    head, _, chunked = buf.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] and b"chunked" in head.lower()
    lines = [json.loads(l) for l in chunked.splitlines() if l.startswith(b"{")]
    assert [l["line"] for l in lines] == ["batch1-done", "f1", "f2", "f3"]
    sock.close()
    # The daemon notices the client left: the follow ends (its thread with it),
    # and the daemon still serves.
    assert c.info(h)["State"] == "active"


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is missing")
def test_curl_tail_since_and_follow(chatty):
    d, c, h = chatty
    url = f"http://cloche/containers/{h}/cloche/logs"
    base = ["curl", "-sS", "--unix-socket", str(d.socket_path)]
    out = subprocess.run(base + [f"{url}?tail=3", "-H", "Accept: text/plain"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert [l.split(" ", 2)[2] for l in out.stdout.splitlines()] == [
        "line 118", "line 119", "batch1-done"]
    follow = subprocess.Popen(base + ["-N", "--max-time", "4", f"{url}?tail=0&follow=true"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    say(c, h, "curl-1\\ncurl-2\\n")
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 28, err  # --max-time: it was still streaming
    assert [json.loads(l)["line"] for l in out.splitlines()] == ["curl-1", "curl-2"]


def test_cloche_log_process_and_unknown_logs(containers):
    c = containers.daemon.client()
    h = containers.create({})
    p = c.run(h, {"id": "logged", "path": "/bin/sh", "cloche_log": True,
                  "args": ["-c", "echo to-out; echo to-err >&2; exit 2"]})
    assert p.wait(WAIT) == 2
    # The attach saw the output as always; the log file has it as well.
    assert p.stdout == b"to-out\n" and p.stderr == b"to-err\n"
    assert wait_until(lambda: logs(c, h, process="logged")[0] == 200 and
                      len(lines_of(logs(c, h, process="logged")[1])) == 2, WAIT)
    got = lines_of(logs(c, h, process="logged")[1])
    assert sorted((l["stream"], l["line"]) for l in got) == [("stderr", "to-err"),
                                                             ("stdout", "to-out")]
    # A process without cloche_log, an unknown process, an unknown container: 404.
    q = c.run(h, {"id": "plain", "path": "/bin/true"})
    assert q.wait(WAIT) == 0
    assert logs(c, h, process="plain")[0] == 404
    assert logs(c, h, process="nope")[0] == 404
    assert logs(c, "no-such-container")[0] == 404
    assert not (containers.daemon.depot / "containers" / h / "logs" / "plain.log").exists()
