#!/bin/sh
# Every row of issue 17's table, beside its peer where one runs here, in one run:
#
#   tests/bench/issue17.sh BUILD_DIR [LIVE]
#
#   Run /bin/true to exit status      vs crun exec        processes.py
#   create + destroy                  vs crun run         containers.py
#   create/destroy at 0, 1000, LIVE live (networked)      network.py
#     beside crun run at 0, 1000, LIVE live crun          crun_scale.py
#     containers (a veth each, from a hook)
#     and the bare kernel primitives at the same levels      kernel-scale (built)
#   daemon restart with LIVE containers to serving all    network.py --restarts (the
#                                                          same fill; restart.py alone
#                                                          fills its own)
#   bulk_metrics of 1000, warm and cold; daemon RSS       metrics.py (a -Dtest_hooks=true
#   with a week of history per container                  build: the week is synthesised)
#   the default id pool: LIVE creates on default ids      (network.py and restart.py fill
#                                                          LIVE containers without --uid-pool-size)
#
# LIVE defaults to 4096 (the issue's figure; filling it takes minutes on 2 cores).
# Each benchmark sandboxes itself (private net and mount namespaces, its own
# depot and cgroup parent, everything removed at the end); medians and p90s are
# printed, nothing is asserted.
set -eu
build=${1:?usage: issue17.sh BUILD_DIR [LIVE]}
live=${2:-4096}
here=$(dirname "$0")
rootfs=$(cd "$build/../rootfs/busybox" 2>/dev/null && pwd || true)
set -- ${rootfs:+--rootfs "$rootfs"}
python3 "$here/processes.py" --build "$build" "$@" -n 200
python3 "$here/containers.py" --build "$build" "$@" -n 100
python3 "$here/network.py" "$build" "$@" --no-peer -n 50 --cycles 20 \
    --levels "0,1000,$live" --network-pool 10.192.0.0/17 --max-containers $((live + 64)) \
    --restarts 3
python3 "$here/crun_scale.py" "$@" --levels "0,1000,$live" --cycles 20
"$build/tests/bench/kernel-scale" 100 "0,1000,$live"
python3 "$here/metrics.py" "$build" "$@" --containers 1000 --metrics-interval 10 --history-week
