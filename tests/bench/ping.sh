#!/bin/bash
# Benchmark: GET /ping requests per second over TCP loopback with wrk, beside a
# peer: nginx answering the same "{}" from memory (the ceiling for a small HTTP
# reply on this machine). Runs inside a private network namespace; not a CI test.
# Usage: tests/bench/ping.sh [BUILD_DIR] [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
secs=${2:-10}

if [ -z "${CLOCHE_BENCH_SANDBOX:-}" ]; then
    for p in wrk nginx-light; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
    done
    exec env CLOCHE_BENCH_SANDBOX=1 unshare --mount --net --propagation private --fork "$0" "$@"
fi
ip link set lo up
tmp=$(mktemp -d)
parent="cloche-bench-ping-$$"
trap 'kill $cpid $npid 2>/dev/null || true; wait 2>/dev/null; rm -rf "$tmp"; rmdir /sys/fs/cgroup/*/"$parent" 2>/dev/null || true' EXIT

"$build/cloched" --bind-socket "" --bind-ip 127.0.0.1 --bind-port 17777 \
    --depot "$tmp/depot" --cgroup-parent "$parent" --log-level warn &
cpid=$!

cat >"$tmp/nginx.conf" <<NGINX
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:17778;
        location /ping { default_type application/json; return 200 "{}\n"; }
    }
}
NGINX
nginx -c "$tmp/nginx.conf" -g 'daemon off;' &
npid=$!
sleep 0.5

rps() {
    wrk -t2 -c64 -d"${secs}s" "$1" | awk '/Requests\/sec/ {print $2}'
}
c=$(rps http://127.0.0.1:17777/ping)
n=$(rps http://127.0.0.1:17778/ping)
printf 'GET /ping, wrk -t2 -c64, %ss, TCP loopback, 2 cores shared with wrk\n' "$secs"
printf '  cloched: %10.0f req/s\n' "$c"
printf '  nginx:   %10.0f req/s\n' "$n"
awk -v c="$c" -v n="$n" 'BEGIN { printf "  ratio cloched/nginx: %.2f (target: >= 40000 req/s for cloched)\n", c / n }'
