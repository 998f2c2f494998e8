"""The foundation: cloched serves Garden's transport, errors and empty state.

No container exists yet in these tests.  They pin down what every later
feature relies on: both listeners, the token rule for non-loopback TCP,
capacity, the exact shape of replies and of errors (the Go client reads the
error ``Type``, and on the process routes a ``Connection: close`` would turn
a typed error into "persistent connection closed", protocol §4.2), a daemon
that survives malformed input, and a clean SIGTERM shutdown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time

import pytest

from conftest import NONLOOPBACK_IP, run_to_exit
from garden_client import (STYLE_ATTACH, STYLE_RUN, STYLE_STREAM, GardenClient,
                           GardenError, IncompleteResponse, build_request, go_encode_query, go_escape_path,
                           go_json, go_request_target, is_garden_error_object,
                           parse_response)

ERROR_KEYS = ("Type", "Message", "Handle", "ProcessID", "Binary")
JSON_BODY_LIMIT = 1 << 20  # cloche caps JSON request bodies at 1 MiB
DEFAULT_POOL_SUBNETS = 256  # 10.254.0.0/22 cut into /30s

# A ProcessSpec as the Go client sends it for `true` (rlimits and image are
# always present, protocol §3).
VALID_PROCESS_SPEC = go_json({"path": "true", "rlimits": {}, "image": {}})


# --------------------------------------------------------------------------
# Helpers


def assert_garden_error(status: int, headers, body: bytes, expected_status: int,
                        expected_type: "str | None" = None) -> dict:
    """The reply is expected_status with a five-key Garden error object."""
    assert status == expected_status, f"expected {expected_status}, got {status}: {body[:300]!r}"
    content_type = headers.get("Content-Type", "")
    assert content_type.split(";")[0].strip() == "application/json", content_type
    assert body.endswith(b"\n"), body
    obj = json.loads(body)
    assert set(obj) == set(ERROR_KEYS), obj
    assert is_garden_error_object(obj), obj
    assert obj["Binary"] == ""
    assert obj["Message"], "an error must say what went wrong"
    if expected_type is not None:
        assert obj["Type"] == expected_type, obj
    return obj


def exchange(client: GardenClient, data: bytes, method: str = "GET"):
    """Send raw bytes; return the parsed final reply."""
    raw = client.raw_bytes(data)
    assert raw, "the daemon closed the connection without a reply"
    return parse_response(raw, method)


def assert_alive(d) -> None:
    assert d.alive(), f"cloched (pid {d.pid}) died: status {d.proc.returncode}"
    assert d.client(timeout=5).ping() == {}


def mem_total_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


# --------------------------------------------------------------------------
# The test client itself: the bytes must be the Go client's (protocol §1.2)


def test_client_request_bytes_match_the_go_client():
    assert build_request("GET", "/ping") == (
        b"GET /ping HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    assert build_request("PUT", "/containers/h/stop", go_json({"kill": True})) == (
        b"PUT /containers/h/stop HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Content-Length: 14\r\nContent-Type: application/json\r\n"
        b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n{\"kill\":true}\n")
    assert build_request("GET", "/containers/h/processes/p", style=STYLE_ATTACH) == (
        b"GET /containers/h/processes/p HTTP/1.1\r\nHost: api\r\n"
        b"User-Agent: Go-http-client/1.1\r\n\r\n")


def test_client_json_matches_go_encoder():
    # The captured ProcessSpec of protocol §3.2.
    spec = {"id": "my-proc", "path": "sh", "args": ["-c", "cat; echo err >&2; exit 3"],
            "env": ["X=1"], "dir": "/tmp", "user": "root", "rlimits": {"nofile": 1024},
            "tty": {"window_size": {"columns": 80, "rows": 24}}, "image": {}}
    assert go_json(spec) == (
        b'{"id":"my-proc","path":"sh","args":["-c","cat; echo err \\u003e\\u00262; exit 3"],'
        b'"env":["X=1"],"dir":"/tmp","user":"root","rlimits":{"nofile":1024},'
        b'"tty":{"window_size":{"columns":80,"rows":24}},"image":{}}\n')
    assert go_json(42000000000) == b"42000000000\n"


def test_client_query_and_path_encoding_match_go():
    assert go_encode_query({"handles": "a,b"}) == "handles=a%2Cb"
    assert go_encode_query({"b": "x/y", "a": "1 2"}) == "a=1+2&b=x%2Fy"
    assert go_request_target("/containers", {}) == "/containers"
    assert go_escape_path("/containers/a b/info") == "/containers/a%20b/info"
    assert go_escape_path("/containers/a+b,c/info") == "/containers/a+b,c/info"
    assert go_request_target("/containers/h/properties/k?x") == "/containers/h/properties/k?x"
    with pytest.raises(ValueError):
        go_escape_path("/containers/%zz/info")


def test_client_parses_chunked_and_interim_replies():
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\n{}\n\r\n0\r\n\r\n")
    resp = parse_response(raw)
    assert [r.status for r in resp.interim] == [100]
    assert (resp.status, resp.body, resp.framing) == (200, b"{}\n", "chunked")


# --------------------------------------------------------------------------
# Listeners, ping, capacity


def test_ping_over_unix_socket(daemon):
    assert daemon().unix_client().ping() == {}


def test_ping_over_loopback_tcp(daemon):
    assert daemon().tcp_client().ping() == {}


def test_ping_reply_is_exact_json(daemon):
    status, headers, body = daemon().client().raw("GET", "/ping")
    assert status == 200
    assert headers.get("Content-Type", "").split(";")[0] == "application/json"
    assert body == b"{}\n"


def test_unix_socket_mode_is_0660(daemon):
    d = daemon()
    st = os.stat(d.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_tcp_only_when_socket_disabled(daemon):
    d = daemon(socket_enabled=False)
    assert d.tcp_client().ping() == {}
    assert not any(p.suffix == ".sock" for p in d.workdir.iterdir())


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_capacity(daemon, transport):
    d = daemon()
    client = d.unix_client() if transport == "unix" else d.tcp_client()
    cap = client.capacity()
    for key in ("memory_in_bytes", "disk_in_bytes", "schedulable_disk_in_bytes", "max_containers"):
        assert isinstance(cap.get(key), int) and cap[key] > 0, (key, cap)
    assert cap["memory_in_bytes"] == mem_total_bytes()
    assert cap["max_containers"] <= DEFAULT_POOL_SUBNETS


def test_capacity_max_containers_option(daemon):
    assert daemon("--max-containers", "7").client().capacity()["max_containers"] == 7


def test_capacity_limited_by_network_pool(daemon):
    cap = daemon("--network-pool", "10.1.0.0/24").client().capacity()
    assert cap["max_containers"] == 64


# --------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("bad", [
    ["--max-containers", "seven"],
    ["--max-containers", "-1"],
    ["--log-level", "loud"],
    ["--log-format", "xml"],
    ["--network-pool", "10.0.0.0/99"],
    ["--network-pool", "not-a-cidr"],
    ["--default-grace-time", "5parsecs"],
    ["--bind-port", "70000"],
    ["--port-pool-size", "zero"],
    ["--default-rootfs", "relative/rootfs"],
    ["--depot", "relative/depot"],
    ["--cgroup-parent", "../escape"],
    ["--uid-pool-start", "12"],
    ["--no-such-option"],
], ids=lambda a: " ".join(a))
def test_invalid_option_exits_2(daemon, bad):
    result = run_to_exit(daemon.new().argv(bad))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip(), "an option error must say what is wrong"


def test_help_exits_0(daemon):
    result = run_to_exit([daemon.new().argv()[0], "--help"])
    assert result.returncode == 0, result.stderr
    assert "--bind-socket" in result.stdout + result.stderr


# --------------------------------------------------------------------------
# Authentication on non-loopback TCP


TOKEN = "s3cret-token"


@pytest.fixture
def token_daemon(daemon, nonloopback_ip):
    """A daemon on a non-loopback address with a token file (stored with a newline)."""
    return daemon(bind_ip=nonloopback_ip, token=TOKEN)


def test_nonloopback_without_token_is_401(token_daemon):
    client = GardenClient(host=NONLOOPBACK_IP, port=token_daemon.bind_port)
    for path in ("/ping", "/capacity", "/containers"):
        status, headers, body = client.raw("GET", path)
        assert_garden_error(status, headers, body, 401)


@pytest.mark.parametrize("authorization", [f"Bearer wrong-{TOKEN}", f"Bearer {TOKEN}x",
                                           "Bearer ", f"Basic {TOKEN}", TOKEN])
def test_nonloopback_with_wrong_token_is_401(token_daemon, authorization):
    client = GardenClient(host=NONLOOPBACK_IP, port=token_daemon.bind_port)
    status, headers, body = client.raw("GET", "/ping", headers={"Authorization": authorization})
    assert_garden_error(status, headers, body, 401)


def test_nonloopback_with_right_token(token_daemon):
    client = token_daemon.tcp_client(token=TOKEN)
    assert client.ping() == {}
    assert client.list() == []


def test_unix_socket_needs_no_token(token_daemon):
    assert token_daemon.unix_client().ping() == {}


def test_nonloopback_without_token_file_refuses_to_start(daemon, nonloopback_ip):
    result = run_to_exit(daemon.new(bind_ip=nonloopback_ip).argv())
    assert result.returncode not in (0, None), "cloched served non-loopback TCP without a token"
    assert any(word in result.stderr.lower() for word in ("token", "auth")), result.stderr


def test_nonloopback_insecure_no_auth(daemon, nonloopback_ip):
    d = daemon("--insecure-no-auth", bind_ip=nonloopback_ip)
    assert GardenClient(host=NONLOOPBACK_IP, port=d.bind_port).ping() == {}


def test_loopback_needs_no_token_even_with_a_token_file(daemon):
    d = daemon(bind_ip="127.0.0.1", token=TOKEN)
    assert GardenClient(host="127.0.0.1", port=d.bind_port).ping() == {}


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no ::1 in this namespace")
def test_ipv6_loopback_needs_no_token(daemon):
    d = daemon(bind_ip="::1", token=TOKEN)
    assert GardenClient(host="::1", port=d.bind_port).ping() == {}


# --------------------------------------------------------------------------
# Empty state and unknown handles


def test_list_is_empty(daemon):
    client = daemon().client()
    status, _, body = client.raw("GET", "/containers")
    assert (status, body) == (200, b'{"Handles":[]}\n')
    assert client.list() == []
    assert client.list({"garden.state": "all"}) == []


def test_bulk_info_with_no_handles(daemon):
    client = daemon().client()
    # The Go client sends handles= even for an empty list; curl users may omit
    # it (the Go server panics then, protocol §1.3).
    assert client.bulk_info([]) == {}
    status, _, body = client.raw("GET", "/containers/bulk_info")
    assert (status, body) == (200, b"{}\n")


UNKNOWN = "no-such-container"

UNKNOWN_HANDLE_CALLS = {
    "info": lambda c: c.info(UNKNOWN),
    "destroy": lambda c: c.destroy(UNKNOWN),
    "properties": lambda c: c.properties(UNKNOWN),
    "stop": lambda c: c.stop(UNKNOWN, kill=True),
}


@pytest.mark.parametrize("call", UNKNOWN_HANDLE_CALLS.values(), ids=UNKNOWN_HANDLE_CALLS.keys())
def test_unknown_handle_is_container_not_found(module_daemon, call):
    with pytest.raises(GardenError) as excinfo:
        call(module_daemon.client())
    err = excinfo.value
    assert err.garden_object, err.body
    assert (err.status, err.type) == (404, "ContainerNotFoundError")
    assert err.message == f"unknown handle: {UNKNOWN}"
    assert err.handle == UNKNOWN


PROCESS_ROUTES = {
    "run": ("POST", f"/containers/{UNKNOWN}/processes", VALID_PROCESS_SPEC, STYLE_RUN),
    "attach": ("GET", f"/containers/{UNKNOWN}/processes/p1", None, STYLE_ATTACH),
    "stdout": ("GET", f"/containers/{UNKNOWN}/processes/p1/attaches/1/stdout", None,
               STYLE_STREAM),
    "stderr": ("GET", f"/containers/{UNKNOWN}/processes/p1/attaches/1/stderr", None,
               STYLE_STREAM),
}


@pytest.mark.parametrize("route", PROCESS_ROUTES.values(), ids=PROCESS_ROUTES.keys())
def test_process_routes_unknown_handle_reply_keeps_connection(module_daemon, route):
    """On hijacked routes the Go client loses the typed error unless the reply
    is HTTP/1.1 with a length and without Connection: close (protocol §4.2)."""
    method, path, body, style = route
    with module_daemon.client().hijack(method, path, body, style=style, timeout=10) as reply:
        resp = reply.response
    assert resp.version == "HTTP/1.1"
    assert "Content-Length" in resp.headers
    assert "close" not in [v.strip().lower() for v in resp.headers.get_all("Connection")]
    obj = assert_garden_error(resp.status, resp.headers, resp.body, 404, "ContainerNotFoundError")
    assert obj["Handle"] == UNKNOWN
    assert obj["Message"] == f"unknown handle: {UNKNOWN}"


# --------------------------------------------------------------------------
# Malformed requests: a precise 4xx Garden error, and the daemon lives on


def req(method: str, target: str, body: "bytes | None" = None, **headers) -> bytes:
    """A Go-style request with a verbatim target; keyword headers use _ for -."""
    return build_request(method, target, body,
                         headers={k.replace("_", "-"): v for k, v in headers.items()})


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def big_create_body(size: int) -> bytes:
    """A valid ContainerSpec of at least size bytes."""
    filler = "x" * (size // 4)
    return go_json({"env": [f"A={filler}", f"B={filler}", f"C={filler}", f"D={filler}"]})


H = UNKNOWN  # body routes validate the body before looking the handle up
MALFORMED = {
    # JSON syntax
    "invalid-json": (req("POST", "/containers", b'{handle: "x"}\n'), 400),
    "truncated-json": (req("POST", "/containers", b'{"handle":"ab'), 400),
    "trailing-garbage": (req("PUT", f"/containers/{H}/stop", b'{"kill":true}\nxyz'), 400),
    "two-documents": (req("POST", "/containers", b"{}{}\n"), 400),
    "invalid-utf8": (req("POST", "/containers", b'{"handle":"a\xffb"}\n'), 400),
    "nesting-bomb": (req("POST", "/containers", b"[" * 100000), 400),
    "wrong-top-level-type": (req("PUT", f"/containers/{H}/stop", b"[]\n"), 400),
    # wrong types
    "string-grace-time": (req("POST", "/containers", go_json({"grace_time": "5s"})), 400),
    "float-grace-time": (req("POST", "/containers", b'{"grace_time":1.5}\n'), 400),
    "huge-grace-time": (req("POST", "/containers", b'{"grace_time":99999999999999999999}\n'), 400),
    "string-set-grace-time": (req("PUT", f"/containers/{H}/grace_time", go_json("5s")), 400),
    "string-bind-mount-mode": (req("POST", "/containers", go_json(
        {"bind_mounts": [{"src_path": "/tmp", "dst_path": "/mnt", "mode": "RW"}]})), 400),
    "property-value-not-string": (req("POST", "/containers", go_json({"properties": {"a": 1}})),
                                  400),
    "string-kill": (req("PUT", f"/containers/{H}/stop", go_json({"kill": "yes"})), 400),
    "set-property-value-number": (req("PUT", f"/containers/{H}/properties/k",
                                      go_json({"value": 5})), 400),
    "bulk-net-out-not-array": (req("POST", f"/containers/{H}/net/out/bulk",
                                   go_json({"protocol": 1})), 400),
    # unknown enum values
    "bind-mount-mode-2": (req("POST", "/containers", go_json(
        {"bind_mounts": [{"src_path": "/tmp", "dst_path": "/mnt", "mode": 2}]})), 400),
    "net-out-protocol-9": (req("POST", f"/containers/{H}/net/out", go_json({"protocol": 9})), 400),
    "create-net-out-protocol-9": (req("POST", "/containers",
                                      go_json({"netout_rules": [{"protocol": 9}]})), 400),
    # out-of-range values
    "negative-grace-time": (req("POST", "/containers", go_json({"grace_time": -1})), 400),
    "negative-set-grace-time": (req("PUT", f"/containers/{H}/grace_time", go_json(-1)), 400),
    # handles
    "create-handle-bad-chars": (req("POST", "/containers", go_json({"handle": "bad handle!"})),
                                400),
    "create-handle-leading-dot": (req("POST", "/containers", go_json({"handle": ".x"})), 400),
    "create-handle-nul": (req("POST", "/containers", b'{"handle":"a\\u0000b"}\n'), 400),
    "create-handle-too-long": (req("POST", "/containers", go_json({"handle": "h" * 129})), 400),
    "path-handle-too-long": (req("GET", f"/containers/{'h' * 129}/info"), 400),
    "path-handle-bad-chars": (req("GET", "/containers/bad!handle/info"), 400),
    "bad-percent-encoding": (req("GET", "/containers/%zz/info"), 400),
    # missing or oversized bodies
    "stop-without-body": (req("PUT", f"/containers/{H}/stop"), 400),
    "stop-empty-body": (req("PUT", f"/containers/{H}/stop", Content_Length="0"), 400),
    "body-too-large": (req("POST", "/containers", big_create_body(JSON_BODY_LIMIT + 1)), 413),
    "chunked-bad-json": (req("PUT", f"/containers/{H}/stop", chunked(b'{"kill":', b"tru}\n"),
                             Content_Length=None, Transfer_Encoding="chunked"), 400),
    # routing
    "unknown-route": (req("GET", "/no/such/route"), 404),
    "unknown-container-subroute": (req("GET", f"/containers/{H}/no-such-thing"), 404),
    # HTTP framing
    "garbage-request-line": (b"this is not http\r\n\r\n", 400),
    "bad-content-length": (req("PUT", f"/containers/{H}/stop", b"{}\n", Content_Length="abc"),
                           400),
    "headers-too-large": (req("GET", "/ping", X_Filler="f" * (256 * 1024)), 431),
    "uri-too-long": (req("GET", "/ping?x=" + "u" * (256 * 1024)), 414),
}

WRONG_METHOD = {
    "post-ping": ("POST", "/ping", "GET"),
    "delete-capacity": ("DELETE", "/capacity", "GET"),
    "delete-memory-limits": ("DELETE", f"/containers/{H}/limits/memory", "PUT"),
    "get-stop": ("GET", f"/containers/{H}/stop", "PUT"),
}


@pytest.mark.parametrize("data,status", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request(module_daemon, data, status):
    resp = exchange(module_daemon.client(), data, data.split(b" ", 1)[0].decode("latin-1"))
    assert_garden_error(resp.status, resp.headers, resp.body, status)
    assert_alive(module_daemon)


@pytest.mark.parametrize("method,path,allowed", WRONG_METHOD.values(), ids=WRONG_METHOD.keys())
def test_wrong_method_is_405_with_allow(module_daemon, method, path, allowed):
    resp = exchange(module_daemon.client(), req(method, path), method)
    assert_garden_error(resp.status, resp.headers, resp.body, 405)
    allow = [m.strip() for m in resp.headers.get("Allow", "").split(",")]
    assert allowed in allow, resp.headers
    assert_alive(module_daemon)


def test_expect_100_continue(module_daemon):
    """A client that waits for 100 Continue gets it, then the final reply."""
    body = go_json({"kill": True})
    head = req("PUT", f"/containers/{H}/stop", Content_Length=str(len(body)),
               Content_Type="application/json", Expect="100-continue")
    with module_daemon.client().connect(timeout=5) as sock:
        sock.sendall(head)  # head only: the body waits for the go-ahead
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed before 100 Continue: {interim!r}"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        rest = interim.split(b"\r\n\r\n", 1)[1]
        sock.sendall(body)
        received = bytearray(rest)
        while True:
            try:
                resp = parse_response(bytes(received), "PUT")
                break
            except IncompleteResponse:
                chunk = sock.recv(65536)
                assert chunk, f"connection closed before the final reply: {bytes(received)!r}"
                received += chunk
    assert_garden_error(resp.status, resp.headers, resp.body, 404, "ContainerNotFoundError")


def test_connection_closed_mid_body(module_daemon):
    """A client that promises a body and hangs up early costs nothing."""
    data = req("POST", "/containers", b'{"handle":', Content_Length="100")
    with module_daemon.client().connect(timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    assert_alive(module_daemon)


def test_daemon_survives_every_malformed_request(daemon):
    d = daemon()
    client = d.client()
    for name, (data, _) in MALFORMED.items():
        try:
            client.raw_bytes(data)
        except OSError as e:
            pytest.fail(f"{name}: {e!r}")
        assert d.alive(), f"cloched died on {name!r}"
    assert client.ping() == {}
    assert client.list() == []


# --------------------------------------------------------------------------
# Shutdown


def test_sigterm_exits_0_and_removes_socket(daemon):
    d = daemon()
    assert d.socket_path.exists()
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    status = d.wait(5)
    assert status == 0, f"exit status {status} after {time.monotonic() - started:.1f} s"
    assert not d.socket_path.exists()


def test_restart_on_the_same_depot(daemon):
    d = daemon()
    assert d.restart().client().list() == []


def test_default_id_pool_is_not_the_limit(daemon):
    """Issue 17: the default id pool holds as many ranges as fit, more than a
    network pool of 4096 subnets (a /18), so the network pool is the limit; an
    explicit --uid-pool-size still wins."""
    d = daemon("--network-pool", "10.201.0.0/18")
    assert "ids: 61439 ranges of 65536 ids from 268435456" in d.log_text(), d.log_tail()
    assert d.client().capacity()["max_containers"] == 4096
    d.stop()
    d.start(["--uid-pool-size", "8"])
    assert "ids: 8 ranges of 65536 ids" in d.log_text(), d.log_tail()
