"""The metrics history kept on disk: a week of it (synthesised through the test
build's hook, sample by sample along the sampler's own path) survives a daemon
restart and reads back identical; its file goes with the container; a history file
of the earlier whole-file format is carried over at restart."""
import struct
import time

import pytest

from garden_client import GardenError, go_request_target

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
