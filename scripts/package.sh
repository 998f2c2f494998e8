#!/bin/bash
# Build cloche's Debian package from this tree and check it with lintian.
#
#   scripts/package.sh OUTDIR
#
# Copies the tree (tracked and new files, not the build directories) to a
# temporary directory, runs `dpkg-buildpackage -us -uc -b` there, moves the .deb
# to OUTDIR and runs lintian on it: any lintian error fails (warnings are
# printed). Installs the build dependencies when missing. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m -- "${1:?usage: $0 OUTDIR}")
mkdir -p "$out"

need=(debhelper dpkg-dev lintian)
while read -r dep; do need+=("$dep"); done < <(
    sed -n '/^Build-Depends:/,/^[A-Z]/p' debian/control | grep -v '^Standards' |
        sed 's/Build-Depends://; s/([^)]*)//g; s/,/\n/g' | tr -d ' ' | grep -v '^$' |
        grep -v '^debhelper-compat')
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "package: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/cloche"
git ls-files -co --exclude-standard -z | grep -zv '^build' |
    tar --null -cf - -T - | tar -xf - -C "$work/cloche"
(cd "$work/cloche" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 || {
    tail -n 40 "$out/build.log" >&2
    exit 1
}
deb=$(ls "$work"/cloche_*.deb)
rm -f "$out"/cloche_*.deb
mv "$deb" "$out/"
deb="$out/$(basename "$deb")"
echo "package: built $deb"
# lintian: errors fail, the rest is shown.
lintian --tag-display-limit 0 "$deb" | tee "$out/lintian.txt" || true
if grep -q '^E: ' "$out/lintian.txt"; then
    echo "package: lintian reports errors" >&2
    exit 1
fi
