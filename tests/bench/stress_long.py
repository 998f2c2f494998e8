#!/usr/bin/env python3
"""Concurrency stress, longer than CI's: N clients on H overlapping handles.

    tests/integration/run.sh BUILD -q -s tests/bench/stress_long.py   (pytest; not in CI)
    CLOCHE_STRESS_SECONDS=600 CLOCHE_STRESS_CLIENTS=64 ...

Prints the operation counts, the status mix, the slowest /ping and how long
the daemon took to give back every descriptor; fails (like the CI test) on an
undocumented 5xx, a daemon that died or anything left behind. Run it against
the ASan build as well (CLOCHE_BUILD=build-test/asan).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from conftest import daemon, sandbox_guard  # noqa: E402,F401 - the fixtures
from stress import destroy_all, fd_count, stress, wait_no_traces  # noqa: E402

SECONDS = float(os.environ.get("CLOCHE_STRESS_SECONDS", "300"))
CLIENTS = int(os.environ.get("CLOCHE_STRESS_CLIENTS", "32"))
HANDLES = int(os.environ.get("CLOCHE_STRESS_HANDLES", "8"))


def test_stress_long(daemon):
    d = daemon("--uid-pool-size", str(HANDLES), "--metrics-interval", "1")
    fds = fd_count(d.pid)
    t0 = time.monotonic()
    r = stress(d, SECONDS, clients=CLIENTS, handles=HANDLES)
    took = time.monotonic() - t0
    total = sum(r.calls.values())
    print(f"\n{CLIENTS} clients, {HANDLES} handles, {took:.0f} s: {total} calls "
          f"({total / took:.0f}/s)")
    for k in sorted(r.statuses):
        print(f"  {k:24} {r.statuses[k]}")
    print(f"  stream errors {r.stream_errors}; slowest ping {r.max_ping_s * 1000:.0f} ms; "
          f"pings over 500 ms: {len(r.slow_pings)}")
    assert d.alive()
    assert not r.unexpected, sorted({(o, s, m) for o, _, s, m in r.unexpected})[:20]
    destroy_all(d)
    left = wait_no_traces(d, 60)
    assert not left, left
    t1 = time.monotonic()
    while fd_count(d.pid) > fds and time.monotonic() - t1 < 90:
        time.sleep(1)
    print(f"  descriptors: {fds} before, {fd_count(d.pid)} after "
          f"({time.monotonic() - t1:.0f} s after the teardown)")
