"""The process protocol (protocol §5): process specs as Go encodes them, the
hijacked Run/Attach connection, stdin, signals, window sizes, and wait()."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import field
from typing import Mapping
from typing import TYPE_CHECKING

from .wire import STYLE_STREAM, go_json
from .http import GardenError, IncompleteResponse, ProtocolError, Response, _Reader
from .streams import HijackedReply, _fold

if TYPE_CHECKING:
    from .client import GardenClient


# --------------------------------------------------------------------------
# The process protocol (protocol §5)

STDIN_CHUNK = 32 * 1024  # io.Copy's buffer: the Go client sends stdin in pieces this big
STREAM_READ = 256 * 1024

# garden.ResourceLimits, in Go's field order (every field a *uint64, omitempty).
RLIMIT_KEYS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
               "nofile", "nproc", "rss", "rtprio", "sigpending", "stack")
_SPEC_KEYS = ("id", "path", "args", "env", "dir", "user", "rlimits", "limits", "tty", "image",
              "bind_mounts", "cloche_log")


def _go_window_size(columns, rows) -> dict:
    ws = {}
    if columns:
        ws["columns"] = int(columns)
    if rows:
        ws["rows"] = int(rows)
    return ws


def _go_tty(tty) -> dict:
    """TTYSpec{WindowSize *WindowSize `json:"window_size,omitempty"`}.

    Accepts True or {} (a PTY, default size), (columns, rows), or
    {"window_size": {"columns": C, "rows": R}}.
    """
    if tty is True:
        return {}
    if isinstance(tty, (tuple, list)):
        return {"window_size": _go_window_size(*tty)}
    if isinstance(tty, Mapping):
        ws = tty.get("window_size")
        if ws is None:
            return {}
        return {"window_size": _go_window_size(ws.get("columns"), ws.get("rows"))}
    raise ValueError(f"bad tty {tty!r}")


def _go_image(image) -> dict:
    image = dict(image or {})
    return {k: image[k] for k in ("uri", "username", "password") if image.get(k)}


def go_process_spec(spec: Mapping) -> dict:
    """A ProcessSpec as Go's encoder writes it (protocol §3.2).

    Keys in the struct's order; ``id``, ``path``, ``args``, ``env``, ``dir``,
    ``user`` and ``bind_mounts`` omitted when empty; ``rlimits`` and
    ``image`` always present (nested structs are never omitted); an rlimit
    set to 0 is written (pointer fields); ``limits`` and ``tty`` present only
    when given (pointers), and ``"tty":{}`` requests a PTY.
    """
    unknown = set(spec) - set(_SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown ProcessSpec keys {sorted(unknown)}")
    out: dict = {}
    for key in ("id", "path"):
        if spec.get(key):
            out[key] = str(spec[key])
    for key in ("args", "env"):
        if spec.get(key):
            out[key] = [str(v) for v in spec[key]]
    for key in ("dir", "user"):
        if spec.get(key):
            out[key] = str(spec[key])
    rlimits = dict(spec.get("rlimits") or {})
    bad = set(rlimits) - set(RLIMIT_KEYS)
    if bad:
        raise ValueError(f"unknown rlimits {sorted(bad)}")
    out["rlimits"] = {k: int(rlimits[k]) for k in RLIMIT_KEYS if rlimits.get(k) is not None}
    if spec.get("limits") is not None:
        limits = dict(spec["limits"])
        out["limits"] = {"cpu_limits": dict(limits.get("cpu_limits") or {}),
                         "memory_limits": dict(limits.get("memory_limits") or {})}
        if limits.get("pid_limits"):  # cloche's extension, not the Go client's
            out["limits"]["pid_limits"] = dict(limits["pid_limits"])
    if spec.get("tty") is not None and spec.get("tty") is not False:
        out["tty"] = _go_tty(spec["tty"])
    out["image"] = _go_image(spec.get("image"))
    if spec.get("bind_mounts"):
        out["bind_mounts"] = [dict(b) for b in spec["bind_mounts"]]
    if spec.get("cloche_log"):  # cloche's extension: output also to log files
        out["cloche_log"] = True
    return out


def check_hijack_head(resp: Response, what: str = "reply") -> None:
    """Raise ProtocolError where the Go client's httputil.ClientConn would fail
    on a 2xx hijack reply (protocol §5.2): it must be HTTP/1.1, must not say
    ``Connection: close``, and must declare a length (chunked or
    ``Content-Length: 0``); otherwise Go reports "persistent connection closed".
    """
    problems = []
    if resp.version != "HTTP/1.1":
        problems.append(f"version {resp.version}")
    if not resp.ok:
        problems.append(f"status {resp.status}")
    if any("close" in v.lower() for v in resp.headers.get_all("Connection")):
        problems.append("Connection: close")
    te = resp.headers.get("Transfer-Encoding", "").lower()
    cl = resp.headers.get("Content-Length")
    if te != "chunked" and cl != "0":
        problems.append("neither Transfer-Encoding: chunked nor Content-Length: 0")
    if problems:
        raise ProtocolError(f"{what}: the Go client would reject this head ({', '.join(problems)}):"
                            f" {resp.status} {resp.headers!r}")


class ProcessError(Exception):
    """Wait failed as the Go client's Wait fails: an ``{"error"}`` line
    (``connection: process error: …``) or the control connection ending
    without an exit status (``connection: decode failed: EOF``)."""


class _Stream:
    """One output stream connection and the thread that reads it to EOF."""

    def __init__(self, name: str, sink, reply: HijackedReply, proc: "Process"):
        self.name = name
        self.sink = sink
        self.reply = reply
        self.head = reply.response
        self.proc = proc
        self.eof = False
        self.error: "BaseException | None" = None
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"garden-{name}-{proc.id}")

    def _deliver(self, data) -> None:
        if self.sink is True:
            with self.proc._cond:
                self.proc._out[self.name] += data
                self.proc._cond.notify_all()
        elif hasattr(self.sink, "write"):
            self.sink.write(data)  # like an io.Writer: valid during the call only
        else:
            self.sink(bytes(data))

    def _run(self) -> None:
        sock = self.reply.sock
        buf = bytearray(STREAM_READ)
        view = memoryview(buf)
        try:
            if self.reply.buffered:
                self._deliver(self.reply.buffered)
            while True:
                n = sock.recv_into(view)
                if n == 0:
                    break
                self._deliver(view[:n])
        except OSError as e:
            self.error = e
        finally:
            with self.proc._cond:
                self.eof = True
                self.proc._cond.notify_all()


class Process:
    """A process seen through one Run or Attach, as the Go client's
    ``garden.Process``: ``id``, ``stream_id``, ``wait()``, ``signal()``,
    ``set_tty()``, stdin through ``write_stdin()``/``close_stdin()``, plus the
    collected ``stdout``/``stderr`` and ``detach()``/``close()``.
    """

    def __init__(self, client: GardenClient, handle: str, reply: HijackedReply, kind: str):
        self.client = client
        self.handle = handle
        self.kind = kind
        self.head = reply.response
        self._ctl = reply.sock
        self._reader = _Reader(reply.buffered, reply.sock)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._out = {"stdout": bytearray(), "stderr": bytearray()}
        self.streams: dict[str, _Stream] = {}
        self.first_line: dict = {}
        self.id = ""
        self.stream_id = ""
        self.exit_status: "int | None" = None
        self.error: "str | None" = None
        self.control_lines: list[dict] = []  # everything after the first line
        self.stdin_error: "BaseException | None" = None
        self._done = threading.Event()
        self._detached = False
        self._thread: "threading.Thread | None" = None

    @classmethod
    def _start(cls, client, handle, reply: HijackedReply, kind, stdin, stdout, stderr,
               connect_delay) -> "Process":
        if not reply.streaming:
            reply.close()
            raise GardenError.from_response(reply.response)
        proc = cls(client, handle, reply, kind)
        try:
            check_hijack_head(reply.response, f"{kind} reply")
            reply.sock.settimeout(None)
            proc._read_first_line()
            if stdin is not None and stdin is not True:
                threading.Thread(target=proc._copy_stdin, args=(stdin,), daemon=True,
                                 name=f"garden-stdin-{proc.id}").start()
            if connect_delay:
                time.sleep(connect_delay)
            for name, sink in (("stdout", stdout), ("stderr", stderr)):
                if sink:
                    proc._open_stream(name, sink)
        except BaseException:
            proc.close()
            raise
        proc._thread = threading.Thread(target=proc._control_loop, daemon=True,
                                        name=f"garden-control-{proc.id}")
        proc._thread.start()
        return proc

    def __repr__(self) -> str:
        return f"Process({self.kind} {self.handle}/{self.id} sid={self.stream_id})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- setting up

    def _read_line(self) -> bytes:
        return self._reader.readline(limit=CONTROL_LINE_MAX)

    def _read_first_line(self) -> None:
        try:
            line = self._read_line()
        except IncompleteResponse:
            raise ProtocolError(f"{self.kind}: connection ended before the first line") from None
        try:
            first = json.loads(line)
        except ValueError:
            raise ProtocolError(f"{self.kind}: first line is not JSON: {line[:200]!r}") from None
        if not isinstance(first, dict):
            raise ProtocolError(f"{self.kind}: first line is not an object: {line[:200]!r}")
        self.first_line = first
        folded = _fold(first)
        self.id = folded.get("process_id") or ""
        self.stream_id = folded.get("stream_id") or ""
        if not isinstance(self.id, str) or not isinstance(self.stream_id, str) \
                or not self.id or not self.stream_id:
            raise ProtocolError(f"{self.kind}: first line lacks process_id/stream_id: {first!r}")

    def _open_stream(self, name: str, sink) -> None:
        path = f"/containers/{self.handle}/processes/{self.id}/attaches/{self.stream_id}/{name}"
        reply = self.client.hijack("GET", path, style=STYLE_STREAM)
        if not reply.streaming:
            reply.close()
            raise GardenError.from_response(reply.response)
        try:
            check_hijack_head(reply.response, f"{name} reply")
        except ProtocolError:
            reply.close()
            raise
        reply.sock.settimeout(None)
        stream = _Stream(name, sink, reply, self)
        self.streams[name] = stream
        stream.thread.start()

    # ---- the control connection

    def _control_loop(self) -> None:
        status, error = None, None
        try:
            while True:
                try:
                    line = self._read_line()
                except IncompleteResponse:
                    error = "connection: decode failed: EOF"
                    break
                try:
                    msg = json.loads(line)
                except ValueError as e:
                    error = f"connection: decode failed: {e}"
                    break
                self.control_lines.append(msg)
                folded = _fold(msg)
                if folded.get("error") is not None:
                    error = f"connection: process error: {folded['error']}"
                    break
                if folded.get("exit_status") is not None:
                    status = int(folded["exit_status"])
                    break
                # The Go client ignores any other line.
        except OSError as e:
            error = f"connection: decode failed: {e}"
        # Go's streamHandler.wait: the streams must reach EOF before Wait returns.
        for stream in self.streams.values():
            stream.thread.join()
        with self._cond:
            self.exit_status = status
            self.error = error
            self._cond.notify_all()
        self._shutdown(self._ctl)
        for stream in self.streams.values():
            self._shutdown(stream.reply.sock)
        self._done.set()

    def _send(self, payload: dict) -> None:
        data = go_json(payload)
        with self._send_lock:
            self._ctl.sendall(data)

    def _copy_stdin(self, stdin) -> None:
        try:
            if isinstance(stdin, (bytes, bytearray, memoryview, str)):
                self.write_stdin(stdin)
            else:
                for chunk in stdin:
                    self.write_stdin(chunk)
            self.close_stdin()
        except OSError as e:
            self.stdin_error = e

    def write_stdin(self, data: "bytes | str") -> None:
        """Send stdin as the Go client does: ``{"process_id","source":0,"data"}``
        per 32 KiB piece, each piece converted to a (UTF-8) JSON string, so
        invalid UTF-8 becomes U+FFFD: stdin is not binary-safe."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        data = bytes(data)
        for off in range(0, len(data), STDIN_CHUNK):
            text = data[off:off + STDIN_CHUNK].decode("utf-8", "replace")
            self._send({"process_id": self.id, "source": 0, "data": text})

    def close_stdin(self) -> None:
        """``{"process_id","source":0}``: stdin EOF."""
        self._send({"process_id": self.id, "source": 0})

    def signal(self, sig: int) -> None:
        """Garden's signals, 0 = terminate and 1 = kill, as ``{"signal":N}``;
        any other number is a Linux signal sent through cloche's extension
        (cloche_signal())."""
        if sig in (0, 1):
            self._send({"process_id": self.id, "signal": sig})
        else:
            self.cloche_signal(sig)

    def cloche_signal(self, signo: int) -> None:
        """cloche's extension: ``{"process_id","cloche_signal":N}`` sends Linux
        signal N to the process."""
        self._send({"process_id": self.id, "cloche_signal": int(signo)})

    def set_tty(self, columns: int, rows: int) -> None:
        """``{"process_id","tty":{"window_size":{"columns","rows"}}}``: a resize."""
        self._send({"process_id": self.id,
                    "tty": {"window_size": _go_window_size(columns, rows)}})

    # ---- results

    @property
    def stdout(self) -> bytes:
        with self._cond:
            return bytes(self._out["stdout"])

    @property
    def stderr(self) -> bytes:
        with self._cond:
            return bytes(self._out["stderr"])

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: "float | None" = 30.0) -> int:
        """The exit status, once the control connection has carried it and every
        attached stream has reached EOF (Go's Wait).  ProcessError for an
        ``{"error"}`` line or a control connection that ended without a status;
        TimeoutError when that has not happened within timeout seconds."""
        if not self._done.wait(timeout):
            pending = [n for n, s in self.streams.items() if not s.eof]
            raise TimeoutError(f"{self!r}: no result after {timeout} s (exit_status "
                               f"{self._status_seen()}, streams not at EOF: {pending}, stdout "
                               f"{self.stdout[-300:]!r}, stderr {self.stderr[-300:]!r})")
        if self.error is not None:
            raise ProcessError(f"{self!r}: {self.error}")
        return self.exit_status

    def _status_seen(self):
        for msg in self.control_lines:
            folded = _fold(msg)
            if folded.get("exit_status") is not None:
                return folded["exit_status"]
        return None

    def expect(self, needle: "bytes | str", stream: str = "stdout", timeout: float = 10.0) -> bytes:
        """Wait until ``needle`` has arrived on ``stream``; return what it has so far."""
        if isinstance(needle, str):
            needle = needle.encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                data = bytes(self._out[stream])
                if needle in data:
                    return data
                left = deadline - time.monotonic()
                s = self.streams.get(stream)
                if left <= 0 or (s is not None and s.eof) or s is None:
                    raise AssertionError(f"{self!r}: {needle!r} not on {stream} "
                                         f"({'EOF' if s is not None and s.eof else 'timeout'}); "
                                         f"got {data[-500:]!r}")
                self._cond.wait(min(left, 0.5))

    def streams_at_eof(self, timeout: float = 10.0) -> bool:
        """Whether every attached stream reached EOF within timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(s.eof for s in self.streams.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    # ---- ending

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def detach(self) -> None:
        """Close the control connection, as a client that goes away: the process
        runs on, and the server ends this attachment's streams."""
        self._detached = True
        self._shutdown(self._ctl)

    def close(self) -> None:
        """Detach and drop every connection of this attachment."""
        self.detach()
        for stream in self.streams.values():
            self._shutdown(stream.reply.sock)
        for stream in self.streams.values():
            if stream.thread.is_alive():
                stream.thread.join(5)
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(5)
        try:
            self._ctl.close()
        except OSError:
            pass
        for stream in self.streams.values():
            try:
                stream.reply.sock.close()
            except OSError:
                pass


CONTROL_LINE_MAX = 4 << 20
