"""The metrics history kept on disk: a week of it (synthesised through the test
build's hook, sample by sample along the sampler's own path) survives a daemon
restart and reads back identical; its file goes with the container; a history file
of the earlier whole-file format is carried over at restart."""
import struct
import time

import pytest

from conftest import wait_until
from garden_client import GardenError, go_request_target
from test_limits import sh

WEEK = 7 * 24 * 3600
# Long enough that the real sampler (first tick one interval after start) does
# not add a sample while the test compares, short enough for full tiers.
INTERVAL = 60
STORE_FILE = "metrics-history"
LEGACY_FILE = "history"


def fill_history(client, handle, seconds):
    resp = client.request("POST", go_request_target(
        f"/containers/{handle}/cloche/test/history", {"seconds": str(seconds)}))
    if resp.status in (404, 405) and b"TestHistory" not in resp.body:
        pytest.skip("the daemon was built without -Dtest_hooks=true")
    return resp


def container_dir(d, handle):
    return d.depot / "containers" / handle


def test_a_week_of_history_survives_a_restart_and_goes_with_destroy(daemon):
    d = daemon("--metrics-interval", str(INTERVAL))
    client = d.client()
    h = client.create({})
    destroyed = False
    try:
        # The hook checks its input like any route, and the allowed case works.
        for bad in ("-1", "week", str(8 * 24 * 3600 + 1)):
            resp = fill_history(client, h, bad)
            assert resp.status == 400, (bad, resp.status, resp.body)
        before_fill = int(time.time())
        resp = fill_history(client, h, WEEK)
        assert resp.status == 200, resp.body
        added = resp.json()["added"]
        assert WEEK // INTERVAL - 2 <= added <= WEEK // INTERVAL + 2, added

        hist = client.metrics_history(h)
        assert hist["interval"] == INTERVAL
        samples = hist["samples"]
        times = [s["time"] for s in samples]
        assert times == sorted(set(times))
        # Three tiers, one series: 20-minute means back to a week ago, then
        # 2-minute means, then raw samples one interval apart up to now.
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert gaps.count(1200) > 400 and gaps.count(120) > 500 and gaps.count(INTERVAL) > 200
        assert times[0] <= before_fill - WEEK + 1200 + INTERVAL
        assert times[-1] >= before_fill
        assert all(s["cpu_percent"] >= 0 and s["memory_used"] > 0 for s in samples)
        assert max(s["rx_bytes"] for s in samples) == samples[-1]["rx_bytes"] > 0

        cdir = container_dir(d, h)
        store = cdir / STORE_FILE
        assert store.is_file() and not (cdir / LEGACY_FILE).exists()
        # Records live in the file (64 bytes each, every ring full for a week).
        assert store.stat().st_size >= 1024 + 64 * (240 + 720 + 504) - 64

        since = times[len(times) // 2]
        part = client.metrics_history(h, since=since)["samples"]
        assert part == [s for s in samples if s["time"] >= since]

        d.restart()
        client = d.client()
        after = client.metrics_history(h)
        assert after == hist, "the history read back after a restart differs"
        assert client.metrics_history(h, since=since)["samples"] == part

        client.destroy(h)
        destroyed = True
        assert not store.exists() and not cdir.exists()
        with pytest.raises(GardenError) as e:
            client.metrics_history(h)
        assert e.value.status == 404
    finally:
        if not destroyed:
            d.client().destroy(h)


def legacy_file(interval, t, cpu, memory, limit, rx, tx):
    """One raw sample in the earlier whole-file format (history.c's header comment)."""
    def bucket(width):
        return struct.pack("<qIdddQQQQ", t - t % width, 1, cpu, float(memory), float(limit),
                           rx, tx, 0, 0)
    header = b"CLOCHIST" + struct.pack("<IIqIII", 1, interval, t, 1, 0, 0)
    record = struct.pack("<qfQQQQQQ", t, cpu, memory, limit, rx, tx, 0, 0)
    return header + bucket(120) + bucket(1200) + record


def test_a_history_of_the_earlier_format_is_carried_over(daemon):
    d = daemon("--metrics-interval", "3600")
    client = d.client()
    h = client.create({})
    try:
        d.stop()
        cdir = container_dir(d, h)
        (cdir / STORE_FILE).unlink(missing_ok=True)
        t = int(time.time()) - 60
        (cdir / LEGACY_FILE).write_bytes(legacy_file(3600, t, 12.5, 4096, 1 << 30, 700, 300))
        d.start()
        client = d.client()
        samples = client.metrics_history(h)["samples"]
        assert samples == [{"time": t, "cpu_percent": 12.5, "memory_used": 4096,
                            "memory_limit": 1 << 30, "rx_bytes": 700, "tx_bytes": 300,
                            "rx_delta": 0, "tx_delta": 0}]
        assert (cdir / STORE_FILE).is_file() and not (cdir / LEGACY_FILE).exists()
    finally:
        d.client().destroy(h)


def test_the_sampler_records_each_containers_own_traffic(daemon):
    """Issue 17: the sampler finds each container's host link once (not by name each
    tick) and still records every container's own counters, as the container sees
    them, for several containers with different traffic."""
    d = daemon("--metrics-interval", "1")
    client = d.client()
    hs = [client.create({}) for _ in range(3)]
    try:
        own = {}
        for i, h in enumerate(hs):
            gw = client.info(h)["HostIP"]
            rc, out = sh(client, h, f"ping -c {3 * (i + 1)} -i 0.2 -s 1200 -W 2 {gw}")
            assert rc == 0, out
            rc, out = sh(client, h, "cd /sys/class/net && for l in *; do [ $l = lo ] || "
                                    "cat $l/statistics/tx_bytes $l/statistics/rx_bytes; done")
            assert rc == 0, out
            tx, rx = (int(x) for x in out.split())
            own[h] = (tx, rx)
        # More pings, more bytes: the three are told apart.
        assert own[hs[0]][0] + 3 * 1200 < own[hs[1]][0] and own[hs[1]][0] + 3 * 1200 < own[hs[2]][0]

        def latest(h):
            samples = client.metrics_history(h)["samples"]
            return (samples[-1]["tx_bytes"], samples[-1]["rx_bytes"]) if samples else (0, 0)

        def caught_up():
            return all(latest(h)[0] >= own[h][0] and latest(h)[1] >= own[h][1] for h in hs)
        assert wait_until(caught_up, 15, 0.5), ({h: latest(h) for h in hs}, own)
        for h in hs:
            # Its own link's counters (a neighbour's ARP at most on top), no other's.
            tx, rx = latest(h)
            assert own[h][0] <= tx <= own[h][0] + 1000, (h, tx, own[h])
            assert own[h][1] <= rx <= own[h][1] + 1000, (h, rx, own[h])
        # The bulk call (its own lookup by name) agrees within the same margin.
        bulk = client.bulk_metrics(hs)
        for h in hs:
            net = bulk[h]["Metrics"]["NetworkStat"]
            assert own[h][0] <= net["TxBytes"] <= own[h][0] + 1000, (h, net, own[h])
    finally:
        for h in hs:
            client.destroy(h)
