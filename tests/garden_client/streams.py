"""Hijacked replies and request bodies streamed as the Go client streams them
(StreamIn's 32 KiB pieces, chunked bodies)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

from .http import IncompleteResponse, ProtocolError, Response, _Reader, _read_chunked


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
