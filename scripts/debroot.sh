#!/bin/bash
# A throw-away Debian 12 root for the package test: `debootstrap
# --variant=minbase bookworm` with the package's dependencies included, so the
# .deb installs there with dpkg alone (the test runs without a network).
#
#   scripts/debroot.sh DEB TARBALL
#
# The root is kept as TARBALL and made again only when the dependency list
# changes; debootstrap's downloads are cached in /var/cache/cloche-debroot.
# Exit status 3 (and one line saying so) when no Debian mirror answers.
set -euo pipefail
deb=$(realpath -- "${1:?usage: $0 DEB TARBALL}")
tarball=$(realpath -m -- "${2:?usage: $0 DEB TARBALL}")
cache=/var/cache/cloche-debroot
mkdir -p "$cache" "$(dirname "$tarball")"

if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        debootstrap >/dev/null
fi
# The package's Depends, without versions or alternatives.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/([^)]*)//; s/|.*//' | tr -d ' ' |
    grep -v '^$' | sort -u | paste -sd, -)
key=$(echo "$deps" | sha256sum | cut -c1-16)
if [ -f "$tarball" ] && [ "$(cat "$tarball.key" 2>/dev/null)" = "$key" ]; then
    echo "debroot: $tarball is up to date"
    exit 0
fi
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
if ! curl -fsS -m 20 -o /dev/null "$mirror/dists/bookworm/Release"; then
    echo "debroot: no Debian mirror answers at $mirror: the package test is skipped"
    exit 3
fi
root=$(mktemp -d /var/tmp/cloche-debroot.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --cache-dir="$cache" --include="$deps" bookworm "$root" \
    "$mirror" >"$tarball.log" 2>&1 || {
    tail -n 20 "$tarball.log" >&2
    exit 1
}
tar -C "$root" -czf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$key" >"$tarball.key"
echo "debroot: made $tarball ($deps)"
