"""Networking: addresses, links, NetIn and NetOut on nftables (issue 5).

Everything runs inside the test sandbox's private network namespace
(tests/integration/run.sh): the "host" here is that namespace, and the
"outside world" is one more namespace the tests make (`outside`), joined to it
by a veth pair.  No traffic leaves the sandbox.

Servers and clients inside containers are cloche-payload's `serve` and
`connect` (tests/payload), started through the Garden Run route.
"""
import ipaddress
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import DEFAULT_ROOTFS, container_init_pid, process_alive, wait_until
from garden_client import GardenError

PAYLOAD = "/usr/bin/cloche-payload"
OUTSIDE_NS = f"cloche-test-outside-{os.getpid()}"  # runs in parallel must not share it
OUTSIDE_HOST_IP = "192.0.2.1"  # the sandbox's end of the link to `outside`
OUTSIDE_IP = "192.0.2.2"


@pytest.fixture(scope="module")
def payload():
    path = DEFAULT_ROOTFS / PAYLOAD.lstrip("/")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing (scripts/test.sh installs it)")
    return PAYLOAD


def sh(*argv: str, check: bool = True) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv}: {p.returncode} {p.stdout} {p.stderr}")
    return p.stdout


def run_bg(client, handle: str, args: list[str]):
    """Start a payload command in the container and leave it running."""
    p = client.run(handle, {"path": PAYLOAD, "args": args}, stdout=False, stderr=False)
    p.close()
    return p


def in_container(client, handle: str, args: list[str], timeout: float = 20) -> tuple[int, str]:
    p = client.run(handle, {"path": PAYLOAD, "args": args})
    status = p.wait(timeout)
    out = (p.stdout or b"").decode(errors="replace") + (p.stderr or b"").decode(errors="replace")
    p.close()
    return status, out


def busybox(client, handle: str, args: list[str], timeout: float = 20) -> tuple[int, str]:
    p = client.run(handle, {"path": "/bin/busybox", "args": args})
    status = p.wait(timeout)
    out = (p.stdout or b"").decode(errors="replace") + (p.stderr or b"").decode(errors="replace")
    p.close()
    return status, out


def host_connect(proto: str, ip: str, port: int, timeout: float = 2.0) -> "str | None":
    """From the sandbox's host side: send "ping", return the answer (None on failure)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        try:
            s.connect((ip, port))
            s.send(b"ping")
            return s.recv(4096).decode()
        except OSError:
            return None


def wait_serving(proto: str, ip: str, port: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = host_connect(proto, ip, port, timeout=0.5)
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"nothing answers {proto} {ip}:{port}")


def nft_table(d) -> str:
    return sh("nft", "list", "table", "inet", f"cloche{d.net_tag}")


def link_names() -> list[str]:
    out = sh("ip", "-o", "link", "show")
    return [m.group(1).split("@")[0] for m in re.finditer(r"^\d+: ([^:]+):", out, re.M)]


@pytest.fixture(scope="module")
def outside():
    """A namespace standing for the world outside the host, reachable through
    the sandbox: 192.0.2.2, with the sandbox's end at 192.0.2.1."""
    sh("ip", "netns", "add", OUTSIDE_NS)
    try:
        sh("ip", "link", "add", "clt-out0", "type", "veth", "peer", "name", "clt-out1")
        sh("ip", "link", "set", "clt-out1", "netns", OUTSIDE_NS)
        sh("ip", "addr", "add", f"{OUTSIDE_HOST_IP}/24", "dev", "clt-out0")
        sh("ip", "link", "set", "clt-out0", "up")
        ns = ["ip", "netns", "exec", OUTSIDE_NS]
        sh(*ns, "ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "clt-out1")
        sh(*ns, "ip", "link", "set", "clt-out1", "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "route", "add", "default", "via", OUTSIDE_HOST_IP)
        server = subprocess.Popen(
            ns + [str(DEFAULT_ROOTFS / PAYLOAD.lstrip("/")), "serve", "tcp", "7000"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        udp = subprocess.Popen(
            ns + [str(DEFAULT_ROOTFS / PAYLOAD.lstrip("/")), "serve", "udp", "7001"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        server.stdout.readline()
        udp.stdout.readline()
        yield OUTSIDE_IP
        for p in (server, udp):
            p.kill()
            p.wait()
    finally:
        subprocess.run(["ip", "link", "del", "clt-out0"], capture_output=True)
        subprocess.run(["ip", "netns", "del", OUTSIDE_NS], capture_output=True)


# --------------------------------------------------------------------------
# Addresses, Info, properties, /etc files


def test_info_and_properties_show_the_network(containers):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    info = client.info(h)
    pool = ipaddress.ip_network(d.network_pool)
    ip = ipaddress.ip_address(info["ContainerIP"])
    gw = ipaddress.ip_address(info["HostIP"])
    assert ip in pool and gw in pool
    assert int(ip) == int(gw) + 1 and int(gw) % 4 == 1, info
    assert info["ExternalIP"]
    props = client.properties(h)
    assert props["garden.network.container-ip"] == str(ip)
    assert props["garden.network.host-ip"] == str(gw)
    assert json.loads(props["garden.network.mapped-ports"]) == []


def test_dynamic_subnets_are_consecutive_30s(containers):
    d = containers.daemon
    client = d.client()
    base = int(ipaddress.ip_network(d.network_pool).network_address)
    ips = [client.info(containers.create())["ContainerIP"] for _ in range(3)]
    assert ips == [str(ipaddress.ip_address(base + 4 * i + 2)) for i in range(3)]


def test_container_sees_its_address_route_and_etc_files(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    info = client.info(h)
    rc, out = busybox(client, h, ["ip", "-o", "-4", "addr", "show"])
    assert rc == 0 and f"{info['ContainerIP']}/30" in out, out
    rc, out = busybox(client, h, ["ip", "route", "show"])
    assert rc == 0 and f"default via {info['HostIP']}" in out, out
    rc, out = busybox(client, h, ["cat", "/etc/hosts"])
    assert f"{info['ContainerIP']} {h}" in out, out
    rc, out = busybox(client, h, ["ip", "-o", "link", "show", "lo"])
    assert "UP" in out or "LOOPBACK,UP" in out, out


def test_container_reaches_its_gateway(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    gw = client.info(h)["HostIP"]
    rc, out = busybox(client, h, ["ping", "-c", "1", "-W", "2", gw])
    assert rc == 0, out


def test_static_ip_and_shared_subnet(containers, payload):
    d = containers.daemon
    client = d.client()
    a = containers.create(network="10.77.0.10/24")
    b = containers.create(network="10.77.0.0/24")
    ia, ib = client.info(a), client.info(b)
    assert ia["ContainerIP"] == "10.77.0.10"
    assert ipaddress.ip_address(ib["ContainerIP"]) in ipaddress.ip_network("10.77.0.0/24")
    assert ib["ContainerIP"] not in ("10.77.0.0", "10.77.0.1", "10.77.0.10", "10.77.0.255")
    assert ia["HostIP"] == ib["HostIP"] == "10.77.0.1"
    run_bg(client, a, ["serve", "tcp", "8080"])
    wait_serving("tcp", "10.77.0.10", 8080)
    rc, out = in_container(client, b, ["connect", "tcp", "10.77.0.10", "8080"])
    assert rc == 0 and out.startswith(f"{a}:ping"), out


def test_static_ip_twice_is_refused(containers):
    containers.create(network="10.78.0.6")
    with pytest.raises(GardenError) as e:
        containers.create(network="10.78.0.6")
    assert "taken" in str(e.value) or "already" in str(e.value)


@pytest.mark.parametrize("network, words", [
    ("10.79.1.1", "gateway"),
    ("10.79.2.3", "broadcast"),
    ("10.79.4.0/24x", ""),
    ("10.79.3.300", ""),
])
def test_bad_static_addresses_are_refused(containers, network, words):
    d = containers.daemon
    with pytest.raises(GardenError) as e:
        containers.create(network=network)
    assert words in str(e.value).lower()
    assert sorted(d.client().list()) == sorted(containers.handles)  # nothing half-made


def test_a_full_static_subnet_is_refused(containers):
    containers.create(network="10.79.0.0/30")  # the subnet form takes its one free address
    with pytest.raises(GardenError):
        containers.create(network="10.79.0.0/30")


def test_static_subnet_overlapping_the_pool_is_refused(containers):
    d = containers.daemon
    inside = str(ipaddress.ip_network(d.network_pool).network_address + 40)
    with pytest.raises(GardenError) as e:
        containers.create(network=f"{inside}")
    assert "pool" in str(e.value)


def test_partially_overlapping_static_subnets_are_refused(containers):
    containers.create(network="10.80.0.0/24")
    with pytest.raises(GardenError):
        containers.create(network="10.80.0.0/16")
    with pytest.raises(GardenError):
        containers.create(network="10.80.0.128/25")


def test_subnet_exhaustion_is_a_clear_error(daemon):
    d = daemon("--network-pool", "10.81.0.0/29")
    client = d.client()
    assert client.capacity()["max_containers"] == 2
    handles = [client.create({}) for _ in range(2)]
    with pytest.raises(GardenError) as e:
        client.create({})
    msg = str(e.value)
    assert "max containers" in msg or "No free subnet" in msg, msg
    client.destroy(handles[0])
    handles[0] = client.create({})  # the freed /30 is usable again
    for h in handles:
        client.destroy(h)


# --------------------------------------------------------------------------
# Isolation and NetOut


def test_two_containers_are_isolated_until_netout_allows(containers, payload):
    client = containers.daemon.client()
    a, b = containers.create(), containers.create()
    ib = client.info(b)["ContainerIP"]
    run_bg(client, b, ["serve", "tcp", "8080"])
    run_bg(client, b, ["serve", "udp", "8081"])
    wait_serving("tcp", ib, 8080)
    rc, out = in_container(client, a, ["connect", "tcp", ib, "8080", "1"])
    assert rc != 0, out
    client.net_out(a, {"protocol": 1, "networks": [{"start": ib, "end": ib}],
                       "ports": [{"start": 8080, "end": 8080}]})
    rc, out = in_container(client, a, ["connect", "tcp", ib, "8080"])
    assert rc == 0 and out.startswith(f"{b}:ping"), out
    # only what the rule says: UDP is still blocked
    rc, out = in_container(client, a, ["connect", "udp", ib, "8081", "1"])
    assert rc != 0, out


def test_netout_protocols_ranges_and_icmp(daemon, payload):
    d = daemon()
    client = d.client()
    a, b = client.create({}), client.create({})
    try:
        ib = client.info(b)["ContainerIP"]
        for port in (9000, 9001, 9100):
            run_bg(client, b, ["serve", "tcp", str(port)])
        run_bg(client, b, ["serve", "udp", "5353"])
        wait_serving("tcp", ib, 9100)
        # BulkNetOut: a TCP port range, UDP to a network range, ICMP echo only
        net = str(ipaddress.ip_network(f"{ib}/30", strict=False).network_address)
        bcast = str(ipaddress.ip_network(f"{ib}/30", strict=False).broadcast_address)
        client.bulk_net_out(a, [
            {"protocol": 1, "networks": [{"start": ib, "end": ib}],
             "ports": [{"start": 9000, "end": 9001}]},
            {"protocol": 2, "networks": [{"start": net, "end": bcast}],
             "ports": [{"start": 5000, "end": 6000}]},
            {"protocol": 3, "networks": [{"start": ib, "end": ib}], "icmps": {"type": 8}},
        ])
        assert in_container(client, a, ["connect", "tcp", ib, "9000"])[0] == 0
        assert in_container(client, a, ["connect", "tcp", ib, "9001"])[0] == 0
        assert in_container(client, a, ["connect", "tcp", ib, "9100", "1"])[0] != 0
        assert in_container(client, a, ["connect", "udp", ib, "5353"])[0] == 0
        rc, out = busybox(client, a, ["ping", "-c", "1", "-W", "2", ib])
        assert rc == 0, out
        # protocol "all" to the address opens everything
        client.net_out(a, {"protocol": 0, "networks": [{"start": ib, "end": ib}]})
        assert in_container(client, a, ["connect", "tcp", ib, "9100"])[0] == 0
    finally:
        client.destroy(a)
        client.destroy(b)


def test_icmp_type_rule_does_not_open_other_types(daemon, payload):
    d = daemon()
    client = d.client()
    a, b = client.create({}), client.create({})
    try:
        ib = client.info(b)["ContainerIP"]
        client.net_out(a, {"protocol": 3, "networks": [{"start": ib, "end": ib}],
                           "icmps": {"type": 13}})  # timestamp, not echo
        rc, out = busybox(client, a, ["ping", "-c", "1", "-W", "1", ib])
        assert rc != 0, out
        # the allowed case: a rule for echo (type 8) lets the same ping through
        client.net_out(a, {"protocol": 3, "networks": [{"start": ib, "end": ib}],
                           "icmps": {"type": 8}})
        rc, out = busybox(client, a, ["ping", "-c", "1", "-W", "2", ib])
        assert rc == 0, out
    finally:
        client.destroy(a)
        client.destroy(b)


def test_egress_is_masqueraded_and_allowed_by_default(daemon, outside, payload):
    d = daemon()
    client = d.client()
    h = client.create({})
    try:
        rc, out = in_container(client, h, ["connect", "tcp", outside, "7000"])
        # the outside server answers with its hostname, so just check it answered
        assert rc == 0 and out.strip().endswith(":ping"), out
    finally:
        client.destroy(h)


def test_deny_network_blocks_egress_unless_netout_allows(daemon, outside, payload):
    d = daemon("--deny-network", "192.0.2.0/24")
    client = d.client()
    h = client.create({})
    try:
        assert in_container(client, h, ["connect", "tcp", outside, "7000", "1"])[0] != 0
        assert in_container(client, h, ["connect", "udp", outside, "7001", "1"])[0] != 0
        client.net_out(h, {"protocol": 1, "networks": [{"start": outside, "end": outside}],
                           "ports": [{"start": 7000, "end": 7000}]})
        assert in_container(client, h, ["connect", "tcp", outside, "7000"])[0] == 0
        assert in_container(client, h, ["connect", "udp", outside, "7001", "1"])[0] != 0
    finally:
        client.destroy(h)


def test_netout_rules_at_create(daemon, outside, payload):
    d = daemon("--deny-network", "0.0.0.0/0")
    client = d.client()
    h = client.create({"netout_rules": [
        {"protocol": 2, "networks": [{"start": outside, "end": outside}],
         "ports": [{"start": 7001, "end": 7001}]}]})
    try:
        assert in_container(client, h, ["connect", "udp", outside, "7001"])[0] == 0
        assert in_container(client, h, ["connect", "tcp", outside, "7000", "1"])[0] != 0
    finally:
        client.destroy(h)


def test_host_services_are_closed_to_containers_by_default(daemon, payload):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    answered = []

    def answer():  # the payload's "connect" wants a reply
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(16)
                    conn.sendall(b"host:pong")
                    answered.append(True)
                except OSError:
                    pass

    threading.Thread(target=answer, daemon=True).start()
    try:
        d = daemon()
        client = d.client()
        h = client.create({})
        gw = client.info(h)["HostIP"]
        rc, out = in_container(client, h, ["connect", "tcp", gw, str(port), "1"])
        assert rc != 0, out
        client.destroy(h)
        d.stop()
        # the allowed case: the same connection from a daemon with --allow-host-access
        d = daemon("--allow-host-access")
        client = d.client()
        h = client.create({})
        gw = client.info(h)["HostIP"]
        rc, out = in_container(client, h, ["connect", "tcp", gw, str(port), "2"])
        assert rc == 0 and out.startswith("host:pong") and answered, out
        client.destroy(h)
    finally:
        try:
            srv.shutdown(socket.SHUT_RDWR)  # wakes the accept
        except OSError:
            pass
        srv.close()


def test_invalid_netout_rules_are_refused(containers):
    client = containers.daemon.client()
    h = containers.create()
    with pytest.raises(GardenError):
        client.net_out(h, {"protocol": 9})
    with pytest.raises(GardenError):
        client.net_out(h, {"protocol": 1, "networks": [{"start": "10.0.0.9", "end": "10.0.0.1"}]})
    with pytest.raises(GardenError):
        client.net_out(h, {"protocol": 0, "ports": [{"start": 80, "end": 80}]})


# --------------------------------------------------------------------------
# NetIn


def test_netin_tcp_from_host_address_and_loopback(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    info = client.info(h)
    run_bg(client, h, ["serve", "tcp", "8080"])
    wait_serving("tcp", info["ContainerIP"], 8080)
    hp, cp = client.net_in(h, 0, 8080)
    assert cp == 8080 and d.port_pool_start <= hp < d.port_pool_start + d.port_pool_size
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"
    assert host_connect("tcp", info["HostIP"], hp) == f"{h}:ping"
    info = client.info(h)
    assert info["MappedPorts"] == [{"HostPort": hp, "ContainerPort": 8080}]
    assert json.loads(client.properties(h)["garden.network.mapped-ports"]) == \
        [{"HostPort": hp, "ContainerPort": 8080}]


def test_netin_from_outside_reaches_the_container(containers, outside, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    run_bg(client, h, ["serve", "tcp", "8080"])
    wait_serving("tcp", client.info(h)["ContainerIP"], 8080)
    hp, _ = client.net_in(h, 0, 8080)
    out = sh("ip", "netns", "exec", OUTSIDE_NS, str(DEFAULT_ROOTFS / PAYLOAD.lstrip("/")),
             "connect", "tcp", OUTSIDE_HOST_IP, str(hp))
    assert out.strip() == f"{h}:ping"


def test_netin_udp_extension(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    run_bg(client, h, ["serve", "udp", "5300"])
    time.sleep(0.3)
    hp, cp = client.net_in(h, 0, 5300, protocol="udp")
    assert cp == 5300
    assert wait_serving("udp", "127.0.0.1", hp) == f"{h}:ping"
    # TCP on that port is not mapped
    assert host_connect("tcp", "127.0.0.1", hp, timeout=1) is None


def test_netin_host_port_equals_container_port_when_zero(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    hp, cp = client.net_in(h, 0, 0)
    assert hp == cp and d.port_pool_start <= hp
    run_bg(client, h, ["serve", "tcp", str(cp)])
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{h}:ping"


def test_netin_explicit_host_port_twice_is_refused(containers):
    client = containers.daemon.client()
    a, b = containers.create(), containers.create()
    client.net_in(a, 15000, 80)
    with pytest.raises(GardenError) as e:
        client.net_in(b, 15000, 80)
    assert "already mapped" in str(e.value)


def test_netin_at_create(containers, payload):
    client = containers.daemon.client()
    h = containers.create(netin=[{"host_port": 15100, "container_port": 8080}])
    run_bg(client, h, ["serve", "tcp", "8080"])
    assert wait_serving("tcp", "127.0.0.1", 15100) == f"{h}:ping"
    assert client.info(h)["MappedPorts"] == [{"HostPort": 15100, "ContainerPort": 8080}]


def test_port_pool_exhaustion_is_a_clear_error_and_ports_come_back_fifo(daemon):
    d = daemon("--port-pool-start", "16000", "--port-pool-size", "2")
    client = d.client()
    h = client.create({})
    try:
        assert client.net_in(h)[0] == 16000
        assert client.net_in(h)[0] == 16001
        with pytest.raises(GardenError) as e:
            client.net_in(h)
        assert "No free host port" in str(e.value)
        client.destroy(h)
        h = client.create({})
        assert client.net_in(h)[0] == 16000
    finally:
        client.destroy(h)


# --------------------------------------------------------------------------
# Destroy and restart


def test_destroy_leaves_nothing_of_the_container(containers, payload):
    d = containers.daemon
    client = d.client()
    h = containers.create()
    client.net_in(h, 0, 8080)
    client.net_out(h, {"protocol": 1, "networks": [{"start": "192.0.2.2", "end": "192.0.2.2"}]})
    props = client.properties(h)
    host_if = props["kawasaki.host-interface"]
    bridge = props["kawasaki.bridge-interface"]
    ip = props["garden.network.container-ip"]
    chain_id = host_if[len(f"cl{d.net_tag}"):-2]
    before = nft_table(d)
    # elements only: its address as owner, ifaddr, NetIn and NetOut keys; no chain
    assert ip in before and f"ctr-{chain_id}" not in before and f"log-{chain_id}" not in before
    assert host_if in link_names() and bridge in link_names()
    client.destroy(h)
    containers.handles.remove(h)
    after = nft_table(d)
    assert ip not in after
    assert wait_until(lambda: host_if not in link_names() and bridge not in link_names(), 10), \
        f"{host_if} or {bridge} still there: {link_names()}"


def test_restart_keeps_mappings_and_reservations(daemon, payload):
    d = daemon()
    client = d.client()
    a = client.create({"network": "10.82.0.6"})
    run_bg(client, a, ["serve", "tcp", "8080"])
    hp, _ = client.net_in(a, 0, 8080)
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{a}:ping"
    d.kill()
    d.restart()
    client = d.client()
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{a}:ping"
    assert client.info(a)["MappedPorts"] == [{"HostPort": hp, "ContainerPort": 8080}]
    b = client.create({})
    try:
        with pytest.raises(GardenError):
            client.net_in(b, hp, 80)
        with pytest.raises(GardenError):
            client.create({"network": "10.82.0.6"})
        # the dynamic pool does not hand out a /30 that is in use either
        assert client.info(b)["ContainerIP"] != client.info(a)["ContainerIP"]
        assert client.net_in(b)[0] != hp
    finally:
        client.destroy(b)
        client.destroy(a)


def test_restart_rebuilds_a_missing_firewall_and_prunes_stale_state(daemon, payload):
    d = daemon()
    client = d.client()
    a = client.create({})
    gone = client.create({})
    run_bg(client, a, ["serve", "tcp", "8080"])
    hp, _ = client.net_in(a, 0, 8080)
    gone_ip = client.info(gone)["ContainerIP"]
    gone_init = container_init_pid(d, gone)
    d.kill()
    # a container whose processes vanished while the daemon was down, and a
    # table someone deleted
    os.kill(gone_init, 9)
    assert wait_until(lambda: not process_alive(gone_init), 10)
    sh("nft", "delete", "table", "inet", f"cloche{d.net_tag}")
    d.restart()
    client = d.client()
    assert wait_serving("tcp", "127.0.0.1", hp) == f"{a}:ping"
    assert gone_ip not in nft_table(d)
    client.destroy(a)


def test_a_container_reaches_its_own_mapped_port(containers, payload):
    client = containers.daemon.client()
    h = containers.create()
    info = client.info(h)
    run_bg(client, h, ["serve", "tcp", "8080"])
    wait_serving("tcp", info["ContainerIP"], 8080)
    hp, _ = client.net_in(h, 0, 8080)
    rc, out = in_container(client, h, ["connect", "tcp", info["HostIP"], str(hp)])
    assert rc == 0 and out.startswith(f"{h}:ping"), out
