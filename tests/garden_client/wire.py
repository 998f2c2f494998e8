"""Encoding requests the Go way: the request styles, JSON as Go's json.Encoder
writes it, query strings as url.Values.Encode() builds them, path escaping as
net/url does it, and request heads in Go's header order."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import field
from typing import Iterable, Mapping, Sequence



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
