"""The firewall's per-container state as set and map elements (design.md section
8): overlapping NetOut rules, a container's state kept across a restart, and a
table of the older layout (a chain per container) upgraded by a new daemon."""
import ipaddress

from test_network import busybox, in_container, nft_table, payload, run_bg, sh, wait_serving

__all__ = ["payload"]  # the fixture, re-exported for pytest


def chain_id(d, client, handle):
    host_if = client.properties(handle)["kawasaki.host-interface"]
    return host_if[len(f"cl{d.net_tag}"):-2]


def test_overlapping_netout_rules_are_merged_and_survive_a_restart(daemon, payload):
    d = daemon()
    client = d.client()
    a, b = client.create({}), client.create({})
    try:
        ib = client.info(b)["ContainerIP"]
        ia = client.info(a)["ContainerIP"]
        for port in (9000, 9001, 9100, 9200):
            run_bg(client, b, ["serve", "tcp", str(port)])
        wait_serving("tcp", ib, 9200)
        net = ipaddress.ip_network(f"{ib}/30", strict=False)
        client.net_out(a, {"protocol": 1, "networks": [{"start": ib, "end": ib}],
                           "ports": [{"start": 9000, "end": 9001}]})
        # overlaps the first in addresses and ports: still one call that works
        client.net_out(a, {"protocol": 1,
                           "networks": [{"start": str(net.network_address),
                                         "end": str(net.broadcast_address)}],
                           "ports": [{"start": 9001, "end": 9100}]})
        client.bulk_net_out(a, [
            {"protocol": 1, "networks": [{"start": ib, "end": ib}],
             "ports": [{"start": 9050, "end": 9060}]},
            {"protocol": 3, "networks": [{"start": ib, "end": ib}]},
            {"protocol": 3, "networks": [{"start": ib, "end": ib}], "icmps": {"type": 8}},
        ])
        table = nft_table(d)
        assert f"ctr-{chain_id(d, client, a)}" not in table
        assert f"log-{chain_id(d, client, a)}" not in table, "no chain without logged rules"

        def check():
            for port in (9000, 9001, 9100):
                rc, out = in_container(client, a, ["connect", "tcp", ib, str(port)])
                assert rc == 0 and out.startswith(f"{b}:ping"), (port, out)
            rc, out = in_container(client, a, ["connect", "tcp", ib, "9200", "1"])
            assert rc != 0, out
            rc, out = busybox(client, a, ["ping", "-c", "1", "-W", "2", ib])
            assert rc == 0, out

        check()
        d.kill()
        d.restart()
        client = d.client()
        check()
        assert ia in nft_table(d)
        client.destroy(a)
        assert ia not in nft_table(d)
    finally:
        for h in (a, b):
            try:
                client.destroy(h)
            except Exception:
                pass


def test_a_table_of_the_chain_layout_is_upgraded_at_start(daemon, payload, tmp_path):
    d = daemon()
    client = d.client()
    a, b = client.create({}), client.create({})
    try:
        ib = client.info(b)["ContainerIP"]
        ia = client.info(a)["ContainerIP"]
        for port in (9000, 9100):
            run_bg(client, b, ["serve", "tcp", str(port)])
        wait_serving("tcp", ib, 9100)
        client.net_out(a, {"protocol": 1, "networks": [{"start": ib, "end": ib}],
                           "ports": [{"start": 9000, "end": 9000}]})
        cid = chain_id(d, client, a)
        d.kill()
        # What a daemon of the older layout left: a chain per container behind a
        # verdict map; this one accepts everything, so if it survived, port 9100
        # would pass.
        t = f"cloche{d.net_tag}"
        sh("nft", "delete", "table", "inet", t)
        script = "\n".join([
            f"add table inet {t}",
            f"add map inet {t} netout {{ type ipv4_addr : verdict; }}",
            f"add chain inet {t} ctr-{cid}",
            f"add rule inet {t} ctr-{cid} accept",
            f"add element inet {t} netout {{ {ia} : goto ctr-{cid} }}",
            f"add chain inet {t} forward {{ type filter hook forward priority filter; "
            "policy accept; }",
            f"add rule inet {t} forward ip saddr vmap @netout",
        ]) + "\n"
        (tmp_path / "old-layout.nft").write_text(script)
        sh("nft", "-f", str(tmp_path / "old-layout.nft"))
        assert f"ctr-{cid}" in nft_table(d)
        d.restart()
        client = d.client()
        rc, out = in_container(client, a, ["connect", "tcp", ib, "9000"])
        assert rc == 0 and out.startswith(f"{b}:ping"), out
        rc, out = in_container(client, a, ["connect", "tcp", ib, "9100", "1"])
        assert rc != 0, out
        table = nft_table(d)
        assert f"ctr-{cid}" not in table and "map netout {" not in table
    finally:
        for h in (a, b):
            try:
                client.destroy(h)
            except Exception:
                pass
