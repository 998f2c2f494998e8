#!/bin/bash
# Install the Debian packages cloche needs that are missing. Idempotent and quick
# when everything is present. Usage: scripts/deps.sh [build|test]
set -euo pipefail

build_pkgs=(gcc meson ninja-build pkg-config libmicrohttpd-dev libjson-c-dev libarchive-dev busybox-static libnl-3-dev libnl-route-3-dev libnftables-dev libseccomp-dev e2fsprogs libsystemd-dev libcurl4-openssl-dev libssl-dev)
test_pkgs=(python3 python3-pytest clang-format clang libclang-rt-14-dev iproute2 util-linux curl nftables
    systemd debhelper lintian debootstrap docker-registry skopeo umoci apache2-utils openssl)
test_pkgs+=(groff-base) # the man page check of tests/integration/test_cli.py
test_pkgs+=(prometheus chromium chromium-driver) # scraping and the dashboard: tests/integration/test_observe.py

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then
    want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "cloche: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
fi
echo "cloche: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
