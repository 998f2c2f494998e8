#!/bin/bash
# Build cloche and start the daemon with its embedded defaults (Unix socket
# /run/cloche/cloche.sock, depot /var/lib/cloche/depot, default rootfs built from
# busybox-static). Extra arguments go to cloched. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "cloche: run.sh must run as root (it creates containers)" >&2
    exit 1
fi
scripts/deps.sh build
if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=debugoptimized >/dev/null
fi
ninja -C build >/dev/null

rootfs=/var/lib/cloche/rootfs/busybox
rootfs-tools/mkrootfs-busybox.sh "$rootfs"

exec build/cloched --default-rootfs "$rootfs" "$@"
