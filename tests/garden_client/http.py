"""Parsing replies: the errors, headers in order, interim replies, bodies framed
by Content-Length, chunked encoding or the end of the connection."""

from __future__ import annotations

import gzip
import json
import socket
from dataclasses import dataclass, field
from typing import Iterable

from .wire import MAX_HEADER_BYTES


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
