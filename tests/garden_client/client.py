"""The client: one new connection for every call, as the Go client does."""

from __future__ import annotations

import socket
import time
from typing import Mapping, Sequence

from .wire import CONNECT_TIMEOUT, DEFAULT_TIMEOUT, STYLE_ATTACH, STYLE_ORDINARY, STYLE_RUN, USER_AGENT, _apply_header_overrides, build_request, go_json, go_request_target
from .http import GardenError, Headers, IncompleteResponse, ProtocolError, Response, _Reader, _read_response, parse_response
from .streams import HijackedReply, STREAM_IN_CHUNK, _PieceSender, _Sender, _body_pieces, _finish_error_body, _fold, _stream_body
from .process import Process, go_process_spec


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
