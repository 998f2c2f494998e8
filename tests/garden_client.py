"""A Garden API client that speaks exactly like the Go client.

cloche must be compatible with Cloud Foundry's Garden Go client
(``code.cloudfoundry.org/garden/client``), but the tests must not need Go.  So
this module reproduces the Go client's requests byte for byte, as captured in
``shared/reference/garden-protocol.md`` §1.2:

* a new connection for every call (Unix socket or TCP), never reused;
* the request line, then the headers in Go's order: ``Host: api``,
  ``User-Agent: Go-http-client/1.1``, ``Content-Length`` and
  ``Content-Type: application/json`` only when there is a body, then
  ``Accept-Encoding: gzip`` and ``Connection: close``;
* JSON bodies as Go's ``json.Encoder`` writes them (compact, ``<>&`` escaped,
  one trailing newline);
* query strings as ``url.Values.Encode()`` builds them, and path parameters
  pasted unescaped and then percent-encoded the way Go's ``net/url`` does;
* the process protocol (§5) as the Go client drives it: ``run()`` and
  ``attach()`` return a ``Process`` with a control connection and one new
  connection per output stream, stdin as JSON strings, signals, window sizes,
  and a ``wait()`` that needs the exit status and both streams' EOF.

It also parses the HTTP/1.1 reply itself (rather than through http.client) so
that tests can see exactly what the server sent: the status line version,
every header in order, interim ``100 Continue`` replies, and bodies framed by
Content-Length, chunked encoding or the end of the connection.

Only the standard library is used.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

__all__ = [
    "STYLE_ATTACH",
    "STYLE_ORDINARY",
    "STYLE_RUN",
    "STYLE_STREAM",
    "GardenClient",
    "GardenError",
    "Headers",
    "HijackedReply",
    "IncompleteResponse",
    "Process",
    "ProcessError",
    "ProtocolError",
    "Response",
    "build_request",
    "check_hijack_head",
    "go_encode_query",
    "go_escape_path",
    "go_json",
    "go_process_spec",
    "go_request_target",
    "is_garden_error_object",
    "parse_response",
]

USER_AGENT = "Go-http-client/1.1"
CONNECT_TIMEOUT = 2.0  # the Go client's dialer uses a 2-second connect timeout
DEFAULT_TIMEOUT = 30.0
MAX_HEADER_BYTES = 1 << 20  # a reply head larger than this is a server bug

# How the request is dressed (protocol §1.2): ordinary calls go through
# net/http.Client; the process routes are written through httputil.ClientConn,
# which adds neither Accept-Encoding nor Connection: close.
STYLE_ORDINARY = "ordinary"
STYLE_RUN = "run"  # POST .../processes: Host, User-Agent, Content-Length, Content-Type
STYLE_ATTACH = "attach"  # GET .../processes/PID: Host, User-Agent only
STYLE_STREAM = "stream"  # GET .../attaches/SID/stdout: Host, User-Agent, Content-Type
_STYLES = (STYLE_ORDINARY, STYLE_RUN, STYLE_ATTACH, STYLE_STREAM)


# --------------------------------------------------------------------------
# Errors


class ProtocolError(Exception):
    """The server's reply is not well-formed HTTP/1.x."""


class IncompleteResponse(ProtocolError):
    """The bytes seen so far are only the beginning of a reply."""


class GardenError(Exception):
    """A non-2xx reply, decoded from the Garden error object (protocol §4.1).

    The Go client picks the error kind from ``Type``, not from the status, and
    rebuilds the two NotFound errors from ``Handle``/``ProcessID``; so all of
    them are kept.  ``body`` holds the raw reply body, and ``garden_object`` is
    False when the body was not a Garden error object at all (the Go client
    would then report ``bad response: ...``).
    """

    def __init__(self, status: int, type: str, message: str, handle: str = "",
                 process_id: str = "", *, body: bytes = b"",
                 headers: "Headers | None" = None, garden_object: bool = True):
        self.status = status
        self.type = type
        self.message = message
        self.handle = handle
        self.process_id = process_id
        self.body = body
        self.headers = headers if headers is not None else Headers()
        self.garden_object = garden_object
        super().__init__(f"HTTP {status} {type or '(generic)'}: {message}")

    @classmethod
    def from_response(cls, resp: "Response") -> "GardenError":
        """Decode a reply the way the Go client does, but never fail doing so.

        Keys are matched case-insensitively, as Go's encoding/json does.
        """
        obj = None
        try:
            obj = json.loads(resp.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            pass
        if not isinstance(obj, dict):
            return cls(resp.status, "", resp.body.decode("utf-8", "replace"),
                       body=resp.body, headers=resp.headers, garden_object=False)
        folded = {k.lower(): v for k, v in obj.items()}

        def text(key: str) -> str:
            value = folded.get(key.lower(), "")
            return value if isinstance(value, str) else str(value)

        return cls(resp.status, text("Type"), text("Message"), text("Handle"),
                   text("ProcessID"), body=resp.body, headers=resp.headers,
                   garden_object=is_garden_error_object(obj))


def is_garden_error_object(obj: object) -> bool:
    """True if obj has exactly the shape cloche promises: five string keys."""
    keys = ("Type", "Message", "Handle", "ProcessID", "Binary")
    return (isinstance(obj, dict) and all(isinstance(obj.get(k), str) for k in keys))


# --------------------------------------------------------------------------
# Encoding requests the Go way


def go_json(value: object) -> bytes:
    """Encode value as Go's json.Encoder would: compact, UTF-8, newline-ended.

    Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 (HTML safety) and writes
    other non-ASCII text as raw UTF-8.  Those characters can only occur inside
    JSON strings, so replacing them in the encoded text is safe.  Dict order is
    kept: callers build dicts in the Go struct's field order (Go sorts only
    map keys, such as those of ``properties``).
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return (text + "\n").encode("utf-8")


def go_encode_query(values: Mapping[str, "str | Sequence[str]"]) -> str:
    """``url.Values.Encode()``: keys sorted, QueryEscape on keys and values.

    QueryEscape leaves only ``[A-Za-z0-9_.~-]`` alone and turns a space into
    ``+``, which is exactly quote_plus with no safe characters.
    """
    parts = []
    for key in sorted(values):
        vals = values[key]
        if isinstance(vals, str):
            vals = [vals]
        k = urllib.parse.quote_plus(key, safe="")
        parts.extend(f"{k}={urllib.parse.quote_plus(v, safe='')}" for v in vals)
    return "&".join(parts)


_HEX = "0123456789ABCDEF"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
# Reserved characters that Go's encodePath mode leaves alone ('?' is escaped).
_PATH_RESERVED_OK = frozenset(b"$&+,/:;=@")
# Characters validEncoded() accepts in a RawPath besides the above.
_VALID_ENCODED_EXTRA = frozenset(b"!$&'()*+,;=:@[]%")


def _path_should_escape(byte: int) -> bool:
    return not (byte in _UNRESERVED or byte in _PATH_RESERVED_OK)


def _go_escape(path: bytes) -> str:
    out = []
    for b in path:
        if _path_should_escape(b):
            out.append("%" + _HEX[b >> 4] + _HEX[b & 15])
        else:
            out.append(chr(b))
    return "".join(out)


def _go_unescape(raw: bytes) -> bytes:
    """net/url's unescape in path mode: %XX decoded, '+' kept, bad % fails."""
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == ord("%"):
            hexpair = raw[i + 1:i + 3]
            if len(hexpair) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in hexpair):
                raise ValueError(f"invalid URL escape {raw[i:i + 3]!r}")
            out.append(int(hexpair, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def go_escape_path(path: str) -> str:
    """The request-URI path Go sends for an unescaped path such as
    ``/containers/<handle>/info``.

    This follows ``url.Parse`` then ``URL.EscapedPath()``: the path is
    percent-decoded, and the original spelling is kept if it is a valid
    encoding, otherwise the decoded path is re-escaped (a space becomes
    ``%20``; ``/``, ``+``, ``,`` and friends pass through).  Raises ValueError
    where the Go client would fail before sending anything (a bad ``%``
    escape, a control character).
    """
    raw = path.encode("utf-8")
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise ValueError("net/url: invalid control character in URL")
    decoded = _go_unescape(raw)
    escaped = _go_escape(decoded)
    if raw.decode("utf-8") != escaped and _valid_encoded(raw):
        return raw.decode("utf-8")
    return escaped


def _valid_encoded(raw: bytes) -> bool:
    return all(b in _VALID_ENCODED_EXTRA or not _path_should_escape(b) for b in raw)


def go_request_target(path: str, query: "Mapping[str, str | Sequence[str]] | None" = None) -> str:
    """The request-target for a path with parameters pasted in unescaped.

    As in the Go client, a ``#`` starts a fragment (dropped), a ``?`` starts a
    query (replaced by ``query`` when the call has one).
    """
    path = path.split("#", 1)[0]
    path, sep, raw_query = path.partition("?")
    target = go_escape_path(path) or "/"
    if query is not None:
        raw_query = go_encode_query(query)
        sep = "?" if raw_query else ""
    return target + (sep + raw_query if sep else "")


def build_request(method: str, target: str, body: "bytes | None" = None, *,
                  style: str = STYLE_ORDINARY, token: "str | None" = None,
                  content_type: str = "application/json",
                  headers: "Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None" = None) -> bytes:
    """The exact bytes the Go client writes for one request.

    ``target`` is sent verbatim.  ``headers`` adjusts Go's set: a name that is
    already present (case-insensitively) has its value replaced in place, or
    the header removed when the value is None; other names are appended at
    the end.  The token header goes right after User-Agent (Garden itself has
    no authentication; this is cloche's addition for non-loopback TCP).
    """
    if style not in _STYLES:
        raise ValueError(f"unknown request style {style!r}")
    lines: list[tuple[str, str]] = [("Host", "api"), ("User-Agent", USER_AGENT)]
    if token is not None:
        lines.append(("Authorization", f"Bearer {token}"))
    if style == STYLE_ORDINARY:
        if body is not None:
            lines += [("Content-Length", str(len(body))), ("Content-Type", content_type)]
        lines += [("Accept-Encoding", "gzip"), ("Connection", "close")]
    elif style == STYLE_RUN:
        lines += [("Content-Length", str(len(body or b""))), ("Content-Type", content_type)]
    elif style == STYLE_STREAM:
        lines.append(("Content-Type", "application/json"))
    lines = _apply_header_overrides(lines, headers)
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def _apply_header_overrides(lines, overrides):
    if not overrides:
        return lines
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for name, value in items:
        idx = next((i for i, (k, _) in enumerate(lines) if k.lower() == name.lower()), None)
        if idx is None:
            if value is not None:
                lines.append((name, value))
        elif value is None:
            del lines[idx]
        else:
            lines[idx] = (lines[idx][0], value)
    return lines


# --------------------------------------------------------------------------
# Parsing replies


class Headers:
    """Reply headers in arrival order, looked up case-insensitively."""

    def __init__(self, items: "Iterable[tuple[str, str]]" = ()):
        self._items = list(items)

    def get(self, name: str, default: "str | None" = None) -> "str | None":
        for key, value in self._items:
            if key.lower() == name.lower():
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._items if k.lower() == name.lower()]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self):
        return iter(k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class Response:
    """One parsed HTTP reply, with anything interim (``100 Continue``) before it."""

    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes
    interim: list["Response"] = field(default_factory=list)
    framing: str = "length"  # "length", "chunked", "close" or "none"

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299


class _Reader:
    """Byte source for the parser: a fixed buffer, or a socket read on demand."""

    def __init__(self, data: bytes = b"", sock: "socket.socket | None" = None):
        self.buf = bytearray(data)
        self.pos = 0
        self.sock = sock
        self.eof = sock is None

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def readline(self, limit: int = MAX_HEADER_BYTES) -> bytes:
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl >= 0:
                line = bytes(self.buf[self.pos:nl + 1])
                self.pos = nl + 1
                return line
            if len(self.buf) - self.pos > limit:
                raise ProtocolError("header line too long")
            if not self._fill():
                raise IncompleteResponse("connection ended inside a header line")

    def read(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            if not self._fill():
                raise IncompleteResponse(f"connection ended {n - (len(self.buf) - self.pos)} bytes short")
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def read_to_end(self) -> bytes:
        while self._fill():
            pass
        data = bytes(self.buf[self.pos:])
        self.pos = len(self.buf)
        return data

    def rest(self) -> bytes:
        """Bytes already received but not consumed (e.g. after a hijack reply)."""
        return bytes(self.buf[self.pos:])


def _read_head(reader: _Reader) -> tuple[str, int, str, Headers]:
    line = reader.readline().rstrip(b"\r\n")
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {line[:200]!r}")
    version = parts[0].decode("latin-1")
    status = int(parts[1])
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    items = []
    total = 0
    while True:
        raw = reader.readline()
        total += len(raw)
        if total > MAX_HEADER_BYTES:
            raise ProtocolError("reply head too large")
        raw = raw.rstrip(b"\r\n")
        if not raw:
            break
        name, colon, value = raw.partition(b":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"bad header line {raw[:200]!r}")
        items.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return version, status, reason, Headers(items)


def _read_chunked(reader: _Reader) -> bytes:
    body = bytearray()
    while True:
        size_line = reader.readline().rstrip(b"\r\n").split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
        if size == 0:
            while reader.readline().rstrip(b"\r\n"):  # trailers
                pass
            return bytes(body)
        body += reader.read(size)
        if reader.read(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


def _read_response(reader: _Reader, method: str = "GET", *, body: bool = True) -> Response:
    interim = []
    while True:
        version, status, reason, headers = _read_head(reader)
        if 100 <= status < 200 and status != 101:
            interim.append(Response(version, status, reason, headers, b"", framing="none"))
            continue
        break
    resp = Response(version, status, reason, headers, b"", interim)
    if not body or method == "HEAD" or status in (101, 204, 304):
        resp.framing = "none"
        return resp
    te = headers.get("Transfer-Encoding", "")
    if te.lower() == "chunked":
        resp.framing = "chunked"
        resp.body = _read_chunked(reader)
    elif "Content-Length" in headers:
        try:
            length = int(headers["Content-Length"])
        except ValueError:
            raise ProtocolError(f"bad Content-Length {headers['Content-Length']!r}") from None
        resp.body = reader.read(length)
    else:
        resp.framing = "close"
        resp.body = reader.read_to_end()
    if headers.get("Content-Encoding", "").lower() == "gzip":
        # The Go transport asked for gzip, so it would transparently inflate.
        resp.body = gzip.decompress(resp.body)
    return resp


def parse_response(data: bytes, method: str = "GET") -> Response:
    """Parse a complete reply held in memory (such as raw_bytes() returns).

    Raises IncompleteResponse when data ends before the reply does.
    """
    return _read_response(_Reader(data), method)


# --------------------------------------------------------------------------
# The client


class GardenClient:
    """One Garden server, reached over a Unix socket or TCP.

    Every call opens a new connection and closes it, as the Go client does.
    Typed methods return the decoded JSON reply and raise GardenError for any
    status outside 200-299.
    """

    def __init__(self, unix_path: "str | None" = None, host: "str | None" = None,
                 port: "int | None" = None, token: "str | None" = None,
                 timeout: float = DEFAULT_TIMEOUT):
        if (unix_path is None) == (host is None):
            raise ValueError("give either unix_path= or host= and port=")
        if host is not None and port is None:
            raise ValueError("host= needs port=")
        self.unix_path = unix_path
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        where = self.unix_path if self.unix_path else f"{self.host}:{self.port}"
        return f"GardenClient({where!r})"

    # ---- connections and raw access

    def connect(self, timeout: "float | None" = None) -> socket.socket:
        """A new connected socket, with Go's 2-second connect timeout."""
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect(self.unix_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        sock.settimeout(self.timeout if timeout is None else timeout)
        return sock

    def request(self, method: str, target: str, body: "bytes | str | None" = None, *,
                headers=None, style: str = STYLE_ORDINARY,
                content_type: str = "application/json",
                timeout: "float | None" = None) -> Response:
        """Send one Go-style request with ``target`` verbatim; parse the reply."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        data = build_request(method, target, body, style=style, token=self.token,
                             content_type=content_type, headers=headers)
        with self.connect(timeout) as sock:
            return self._exchange(sock, data, method)

    def raw(self, method: str, path: str, body: "bytes | str | None" = None,
            headers=None, *, style: str = STYLE_ORDINARY,
            content_type: str = "application/json",
            timeout: "float | None" = None) -> tuple[int, Headers, bytes]:
        """Escape hatch: (status, headers, body) for any request.

        ``path`` is the request-target exactly as sent (no escaping, so it may
        be deliberately malformed); ``body`` is sent verbatim; ``headers``
        replaces, removes (value None) or adds headers (see build_request).
        """
        resp = self.request(method, path, body, headers=headers, style=style,
                            content_type=content_type, timeout=timeout)
        return resp.status, resp.headers, resp.body

    def raw_bytes(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send arbitrary bytes on a new connection; return what comes back.

        Reading stops when the server closes the connection or when the bytes
        received form one complete reply, whichever is first (a server may
        keep the connection open after an error).  Sending happens on a
        separate thread so that a server which answers early (413, 431) and
        closes is read before its reset can discard the reply.
        """
        with self.connect(timeout) as sock:
            sender = _Sender(sock, data)
            received = bytearray()
            try:
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        break
                    if not chunk:
                        break
                    received += chunk
                    try:
                        resp = parse_response(bytes(received))
                    except IncompleteResponse:
                        continue
                    except ProtocolError:
                        continue  # not HTTP; keep reading until close
                    if resp.framing != "close":
                        break
            except socket.timeout:
                if not received:
                    raise
            finally:
                sender.finish()
            return bytes(received)

    def hijack(self, method: str, path: str, body: "bytes | None" = None, *,
               style: str, timeout: "float | None" = None) -> "HijackedReply":
        """Start a process-route request (Run/Attach/stdout/stderr) as Go does.

        ``path`` is escaped the Go way.  Returns the reply head and the still
        open socket, from which the caller reads the raw stream; for a non-2xx
        reply the error body is already read (it has a length, protocol §4.2).
        """
        data = build_request(method, go_request_target(path), body, style=style,
                             token=self.token)
        sock = self.connect(timeout)
        try:
            sock.sendall(data)
            reader = _Reader(sock=sock)
            ok_head = True
            resp = _read_response(reader, method, body=False)
            if not resp.ok:
                ok_head = False
                resp = _finish_error_body(reader, resp)
            return HijackedReply(resp, sock, reader.rest(), streaming=ok_head)
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _exchange(sock: socket.socket, data: bytes, method: str) -> Response:
        sender = _Sender(sock, data)
        try:
            return _read_response(_Reader(sock=sock), method)
        finally:
            sender.finish()

    # ---- typed calls

    def _call(self, method: str, path: str, payload=None, *, has_body: bool = False,
              query=None):
        body = go_json(payload) if has_body else None
        resp = self.request(method, go_request_target(path, query), body)
        if not resp.ok:
            raise GardenError.from_response(resp)
        try:
            return resp.json()
        except ValueError as e:
            # The Go client decodes every reply; an empty or non-JSON body fails.
            raise ProtocolError(f"bad response: {e}: {resp.body[:200]!r}") from None

    def ping(self):
        return self._call("GET", "/ping")

    def capacity(self) -> dict:
        return self._call("GET", "/capacity")

    def list(self, properties: "Mapping[str, str] | None" = None) -> list[str]:
        """Handles of live containers matching every given property."""
        reply = self._call("GET", "/containers", query=dict(properties or {}))
        return _fold(reply).get("handles") or []

    def create(self, spec: "Mapping | None" = None) -> str:
        """Create from a ContainerSpec dict (sent as given); returns the handle."""
        reply = self._call("POST", "/containers", dict(spec or {}), has_body=True)
        return _fold(reply).get("handle")

    def destroy(self, handle: str):
        return self._call("DELETE", f"/containers/{handle}")

    def stop(self, handle: str, kill: bool = False):
        return self._call("PUT", f"/containers/{handle}/stop", {"kill": kill}, has_body=True)

    def info(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/info")

    def bulk_info(self, handles: Sequence[str]) -> dict:
        return self._call("GET", "/containers/bulk_info", query={"handles": ",".join(handles)})

    def bulk_metrics(self, handles: Sequence[str]) -> dict:
        return self._call("GET", "/containers/bulk_metrics", query={"handles": ",".join(handles)})

    def properties(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/properties")

    def property(self, handle: str, key: str) -> str:
        return _fold(self._call("GET", f"/containers/{handle}/properties/{key}")).get("value")

    def set_property(self, handle: str, key: str, value: str):
        return self._call("PUT", f"/containers/{handle}/properties/{key}", {"value": value},
                          has_body=True)

    def remove_property(self, handle: str, key: str):
        return self._call("DELETE", f"/containers/{handle}/properties/{key}")

    def set_grace_time(self, handle: str, ns: int):
        """Grace time in nanoseconds (Go's time.Duration), sent as a bare integer."""
        return self._call("PUT", f"/containers/{handle}/grace_time", int(ns), has_body=True)

    def current_memory_limits(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/limits/memory")

    def current_cpu_limits(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/limits/cpu")

    def current_disk_limits(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/limits/disk")

    def current_bandwidth_limits(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/limits/bandwidth")

    # cloche's extensions: limits changed live, pids limits, metrics history
    def set_limits(self, handle: str, kind: str, limits: Mapping) -> dict:
        """PUT /containers/H/limits/KIND (memory, cpu, pids, disk, bandwidth)."""
        return self._call("PUT", f"/containers/{handle}/limits/{kind}", dict(limits),
                          has_body=True)

    def current_limits(self, handle: str, kind: str) -> dict:
        return self._call("GET", f"/containers/{handle}/limits/{kind}")

    def metrics_history(self, handle: str, since: "int | None" = None) -> dict:
        query = {"since": str(since)} if since is not None else None
        return self._call("GET", f"/containers/{handle}/metrics/history", query=query)

    def metrics(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/metrics")

    def net_in(self, handle: str, host_port: int = 0, container_port: int = 0,
               protocol: "str | None" = None) -> tuple[int, int]:
        """Map a host port; zeros are left out as Go's omitempty does.
        ``protocol`` ("udp", "tcp+udp") is cloche's extension "cloche_protocol"."""
        payload = {"handle": handle}
        if host_port:
            payload["host_port"] = host_port
        if container_port:
            payload["container_port"] = container_port
        if protocol is not None:
            payload["cloche_protocol"] = protocol
        reply = _fold(self._call("POST", f"/containers/{handle}/net/in", payload, has_body=True))
        return reply.get("host_port"), reply.get("container_port")

    def net_out(self, handle: str, rule: Mapping):
        return self._call("POST", f"/containers/{handle}/net/out", dict(rule), has_body=True)

    def bulk_net_out(self, handle: str, rules: Sequence[Mapping]):
        return self._call("POST", f"/containers/{handle}/net/out/bulk",
                          [dict(r) for r in rules], has_body=True)

    # ---- files (protocol §2.1)

    def stream_in(self, handle: str, dest: str, tar_bytes, user: "str | None" = None,
                  chunked: bool = False, *, content_type: "str | None" = "application/x-tar",
                  headers=None):
        """StreamIn as the Go client sends it: ``PUT /containers/H/files?destination=
        D&user=U`` (``user=`` always present) with ``Content-Type: application/x-tar``
        and the tar as the body: ``Content-Length`` for a body of known length, or
        ``Transfer-Encoding: chunked`` (Go, for any other reader: 32 KiB chunks).

        ``tar_bytes`` is bytes, or (chunked only) an iterable of bytes or a binary
        file object.  ``content_type`` None sends none (curl -T); any other value
        is a curl-style single-file upload.  Returns the decoded reply ({}).
        """
        target = go_request_target(f"/containers/{handle}/files",
                                   {"destination": dest, "user": user or ""})
        lines = [("Host", "api"), ("User-Agent", USER_AGENT)]
        if self.token is not None:
            lines.append(("Authorization", f"Bearer {self.token}"))
        if chunked:
            lines.append(("Transfer-Encoding", "chunked"))
        else:
            lines.append(("Content-Length", str(len(tar_bytes))))
        if content_type is not None:
            lines.append(("Content-Type", content_type))
        lines += [("Accept-Encoding", "gzip"), ("Connection", "close")]
        lines = _apply_header_overrides(lines, headers)
        head = (f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines)
                + "\r\n").encode("latin-1")

        def body():
            yield head
            if not chunked:
                yield tar_bytes
                return
            for piece in _body_pieces(tar_bytes, STREAM_IN_CHUNK):
                if piece:
                    yield f"{len(piece):x}\r\n".encode() + bytes(piece) + b"\r\n"
            yield b"0\r\n\r\n"

        with self.connect() as sock:
            sender = _PieceSender(sock, body())
            try:
                resp = _read_response(_Reader(sock=sock), "PUT")
            finally:
                sender.finish()
        if not resp.ok:
            raise GardenError.from_response(resp)
        try:
            return resp.json()
        except ValueError as e:
            raise ProtocolError(f"bad response: {e}: {resp.body[:200]!r}") from None

    def stream_out(self, handle: str, src: str, user: "str | None" = None, *,
                   accept: "str | None" = None, sink=None):
        """StreamOut as the Go client sends it: ``GET /containers/H/files?source=S&
        user=U`` with no Content-Type.  Returns the body (the tar), or with ``sink``
        (a callable) hands it over piece by piece as it arrives and returns its
        length.  ``accept`` adds an Accept header (``application/octet-stream``:
        one file's bytes, cloche's curl convenience).  GardenError for an error
        reply; ProtocolError if the body ends early (a chunked body without its
        last chunk)."""
        target = go_request_target(f"/containers/{handle}/files",
                                   {"source": src, "user": user or ""})
        headers = {"Accept": accept} if accept else None
        data = build_request("GET", target, None, token=self.token, headers=headers)
        collected = bytearray()
        deliver = sink if sink is not None else collected.extend
        with self.connect() as sock:
            sock.sendall(data)
            reader = _Reader(sock=sock)
            resp = _read_response(reader, "GET", body=False)
            if not resp.ok:
                raise GardenError.from_response(_finish_error_body(reader, resp))
            total = _stream_body(reader, resp, deliver)
        return total if sink is not None else bytes(collected)

    # ---- processes (protocol §5)

    def run(self, handle: str, spec: Mapping, stdin=None, stdout=True, stderr=True, *,
            connect_delay: float = 0.0) -> "Process":
        """Run a process as the Go client's ``Run`` does (protocol §5.1).

        ``spec`` is a ProcessSpec dict, re-encoded the Go way (go_process_spec).
        ``stdin``: None sends nothing (not even EOF, as Go with no reader);
        bytes/str or an iterable of chunks is sent by a background thread in
        32 KiB pieces and then closed; True leaves it to write_stdin() and
        close_stdin().  ``stdout``/``stderr``: True collects into
        ``Process.stdout``/``.stderr``; an object with ``write`` receives
        every piece instead (as a bytes-like object valid during the call, like
        Go's io.Writer), a callable every piece as bytes; False/None skips the stream
        connection altogether, as Go does for a nil writer.
        ``connect_delay`` (a test knob) waits that long between the first
        control line and the stream connections.  Errors before the stream
        starts raise GardenError.
        """
        body = go_json(go_process_spec(spec))
        reply = self.hijack("POST", f"/containers/{handle}/processes", body, style=STYLE_RUN)
        return Process._start(self, handle, reply, "Run", stdin, stdout, stderr, connect_delay)

    def attach(self, handle: str, process_id: str, stdin=None, stdout=True, stderr=True, *,
               connect_delay: float = 0.0) -> "Process":
        """Attach to a running (or finished) process as the Go client's ``Attach``
        does (protocol §5.4); arguments as for run()."""
        reply = self.hijack("GET", f"/containers/{handle}/processes/{process_id}",
                            style=STYLE_ATTACH)
        return Process._start(self, handle, reply, "Attach", stdin, stdout, stderr,
                              connect_delay)


@dataclass
class HijackedReply:
    """The head of a process-route reply and the socket the stream follows on."""

    response: Response
    sock: socket.socket
    buffered: bytes  # stream bytes that arrived together with the head
    streaming: bool

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _finish_error_body(reader: _Reader, resp: Response) -> Response:
    """Read the body of a non-2xx hijack reply, which must carry a length."""
    if "Content-Length" in resp.headers:
        resp.body = reader.read(int(resp.headers["Content-Length"]))
        resp.framing = "length"
    elif resp.headers.get("Transfer-Encoding", "").lower() == "chunked":
        resp.body = _read_chunked(reader)
        resp.framing = "chunked"
    else:
        resp.body = reader.read_to_end()
        resp.framing = "close"
    return resp


def _fold(reply) -> dict:
    """Lower-case the keys of a reply object, as Go's case-insensitive decoding sees them."""
    return {k.lower(): v for k, v in reply.items()} if isinstance(reply, dict) else {}


class _Sender(threading.Thread):
    """Writes a request on its own thread, ignoring a peer that stops reading."""

    def __init__(self, sock: socket.socket, data: bytes):
        super().__init__(daemon=True)
        self.sock = sock
        self.data = data
        self.error: "BaseException | None" = None
        if len(data) <= 65536:
            # Small requests fit the socket buffer: no thread needed.
            self._send()
        else:
            self.start()

    def _send(self) -> None:
        try:
            self.sock.sendall(self.data)
        except OSError as e:
            self.error = e

    def run(self) -> None:
        self._send()

    def finish(self) -> None:
        """Wait for the writer; if the peer stopped reading, unblock it first."""
        if self.is_alive():
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.join()


STREAM_IN_CHUNK = 32 * 1024  # io.Copy's buffer: Go's chunked StreamIn bodies come in these


def _body_pieces(body, size: int):
    """Pieces of a body given as bytes, an iterable of bytes, or a binary file."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body)
        for off in range(0, len(view), size):
            yield view[off:off + size]
    elif hasattr(body, "read"):
        while True:
            piece = body.read(size)
            if not piece:
                return
            yield piece
    else:
        yield from body


class _PieceSender(threading.Thread):
    """Writes a request given as pieces on its own thread (a server may answer
    before it has read the whole body, and then stop reading)."""

    def __init__(self, sock: socket.socket, pieces):
        super().__init__(daemon=True)
        self.sock = sock
        self.pieces = pieces
        self.error: "BaseException | None" = None
        self.start()

    def run(self) -> None:
        try:
            for piece in self.pieces:
                self.sock.sendall(piece)
        except OSError as e:
            self.error = e

    def finish(self) -> None:
        if self.is_alive():
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.join()


def _stream_body(reader: _Reader, resp: Response, deliver) -> int:
    """Hand a reply body to deliver() as it arrives; return its length."""
    total = 0
    if reader.pos < len(reader.buf):
        pending = bytes(reader.buf[reader.pos:])
    else:
        pending = b""
    reader.buf = bytearray()
    reader.pos = 0
    te = resp.headers.get("Transfer-Encoding", "").lower()
    if te == "chunked":
        reader.buf = bytearray(pending)
        while True:
            line = reader.readline().rstrip(b"\r\n").split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {line[:40]!r}") from None
            if size == 0:
                while reader.readline().rstrip(b"\r\n"):
                    pass
                return total
            left = size
            while left:
                if reader.pos >= len(reader.buf):
                    reader.buf = bytearray()
                    reader.pos = 0
                    if not reader._fill():
                        raise IncompleteResponse("the chunked body ended early")
                take = min(left, len(reader.buf) - reader.pos)
                deliver(bytes(reader.buf[reader.pos:reader.pos + take]))
                reader.pos += take
                left -= take
                total += take
            if reader.read(2) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
    length = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
    if pending:
        pending = pending[:length] if length is not None else pending
        deliver(pending)
        total += len(pending)
    while length is None or total < length:
        chunk = reader.sock.recv(1 << 20)
        if not chunk:
            if length is not None:
                raise IncompleteResponse(f"body ended {length - total} bytes short")
            break
        if length is not None:
            chunk = chunk[:length - total]
        deliver(chunk)
        total += len(chunk)
    return total


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
