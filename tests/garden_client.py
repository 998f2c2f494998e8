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
  pasted unescaped and then percent-encoded the way Go's ``net/url`` does.

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
    "ProtocolError",
    "Response",
    "build_request",
    "go_encode_query",
    "go_escape_path",
    "go_json",
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

    def metrics(self, handle: str) -> dict:
        return self._call("GET", f"/containers/{handle}/metrics")

    def net_in(self, handle: str, host_port: int = 0, container_port: int = 0) -> tuple[int, int]:
        """Map a host port; zeros are left out as Go's omitempty does."""
        payload = {"handle": handle}
        if host_port:
            payload["host_port"] = host_port
        if container_port:
            payload["container_port"] = container_port
        reply = _fold(self._call("POST", f"/containers/{handle}/net/in", payload, has_body=True))
        return reply.get("host_port"), reply.get("container_port")

    def net_out(self, handle: str, rule: Mapping):
        return self._call("POST", f"/containers/{handle}/net/out", dict(rule), has_body=True)

    def bulk_net_out(self, handle: str, rules: Sequence[Mapping]):
        return self._call("POST", f"/containers/{handle}/net/out/bulk",
                          [dict(r) for r in rules], has_body=True)


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
