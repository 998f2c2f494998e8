"""Unit tests of the test client's byte-exact encoding (tests/garden_client/).

The expected bytes are what Go's net/http, encoding/json and net/url write, as
recorded in shared/reference/garden-protocol.md §1.2; the integration tests
trust the client to reproduce them, so a change here would silently change what
every integration test sends. Run by `meson test` (suite unit); needs no daemon.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from garden_client import (STYLE_ATTACH, STYLE_RUN, STYLE_STREAM, GardenError,  # noqa: E402
                           ProtocolError, build_request, go_encode_query, go_escape_path,
                           go_json, go_process_spec, go_request_target, parse_response)


def test_json_is_compact_newline_ended_and_html_safe():
    assert go_json({"a": 1, "b": [True, None]}) == b'{"a":1,"b":[true,null]}\n'
    assert go_json("<a&b>") == b'"\\u003ca\\u0026b\\u003e"\n'
    assert go_json("\u2028\u2029") == b'"\\u2028\\u2029"\n'
    # other non-ASCII text stays raw UTF-8, as Go writes it
    assert go_json("h\u00e9") == '"h\u00e9"\n'.encode()
    # field order is the caller's (a Go struct's), not sorted
    assert go_json({"z": 1, "a": 2}) == b'{"z":1,"a":2}\n'
    with pytest.raises(ValueError):
        go_json(float("nan"))


def test_query_is_url_values_encode():
    assert go_encode_query({"b": "2", "a": ["x y", "1+1"]}) == "a=x+y&a=1%2B1&b=2"
    assert go_encode_query({"k": "a/b?c=d&e~f.g_h-i"}) == "k=a%2Fb%3Fc%3Dd%26e~f.g_h-i"
    assert go_encode_query({}) == ""


def test_path_escaping_is_net_url():
    # reserved characters Go leaves alone in a path, and the ones it escapes
    assert go_escape_path("/containers/a b") == "/containers/a%20b"
    assert go_escape_path("/p/$&+,:;=@") == "/p/$&+,:;=@"
    assert go_escape_path("/p/?#") == "/p/%3F%23"
    # a stray '%' makes Go's url.Parse fail ("invalid URL escape"), and the client
    with pytest.raises(ValueError):
        go_escape_path("/p/%")
    assert go_escape_path("/p/\u00e9") == "/p/%C3%A9"
    assert go_request_target("/containers", {"handles": "a,b"}) == "/containers?handles=a%2Cb"
    assert go_request_target("/ping") == "/ping"


def test_ordinary_request_head_in_go_order():
    assert build_request("GET", "/ping") == (
        b"GET /ping HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    body = go_json({"handle": "h"})
    assert build_request("POST", "/containers", body) == (
        b"POST /containers HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Content-Length: 15\r\nContent-Type: application/json\r\n"
        b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n" + body)


def test_process_route_heads():
    body = b'{"path":"ls"}\n'
    assert build_request("POST", "/containers/h/processes", body, style=STYLE_RUN) == (
        b"POST /containers/h/processes HTTP/1.1\r\nHost: api\r\n"
        b"User-Agent: Go-http-client/1.1\r\nContent-Length: 14\r\n"
        b"Content-Type: application/json\r\n\r\n" + body)
    assert build_request("GET", "/containers/h/processes/p", style=STYLE_ATTACH) == (
        b"GET /containers/h/processes/p HTTP/1.1\r\nHost: api\r\n"
        b"User-Agent: Go-http-client/1.1\r\n\r\n")
    assert build_request("GET", "/containers/h/processes/p/attaches/1/stdout",
                         style=STYLE_STREAM) == (
        b"GET /containers/h/processes/p/attaches/1/stdout HTTP/1.1\r\nHost: api\r\n"
        b"User-Agent: Go-http-client/1.1\r\nContent-Type: application/json\r\n\r\n")


def test_header_overrides_and_token():
    raw = build_request("GET", "/ping", token="t",
                        headers=[("Connection", None), ("X-Extra", "1")])
    assert raw == (b"GET /ping HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
                   b"Authorization: Bearer t\r\nAccept-Encoding: gzip\r\nX-Extra: 1\r\n\r\n")
    with pytest.raises(ValueError):
        build_request("GET", "/ping", style="nonsense")


def test_process_spec_in_go_field_order():
    spec = go_process_spec({"path": "ls", "id": "p", "args": ["-l"]})
    keys = list(spec)
    assert keys.index("id") < keys.index("path") < keys.index("args")
    assert spec["id"] == "p" and spec["path"] == "ls" and spec["args"] == ["-l"]


def test_replies_are_parsed_as_sent():
    resp = parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 3\r\n\r\n{}\n")
    assert resp.status == 200 and resp.body == b"{}\n"
    chunked = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"3\r\nabc\r\n0\r\n\r\n")
    assert chunked.body == b"abc"
    with pytest.raises(ProtocolError):
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    body = (b'{"Type":"ContainerNotFoundError","Message":"unknown handle: x",'
            b'"Handle":"x","ProcessID":"","Binary":""}\n')
    error = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body)
                           + body)
    err = GardenError.from_response(error)
    assert err.type == "ContainerNotFoundError" and "unknown handle: x" in str(err)
