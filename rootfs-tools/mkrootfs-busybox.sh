#!/bin/sh
# Build a minimal busybox root filesystem, the integration tests' default rootfs.
#
#   rootfs-tools/mkrootfs-busybox.sh DEST
#
# Uses Debian's busybox-static (installed with apt-get when missing), because
# a static binary needs no libraries inside the rootfs.  The applet links are
# made by busybox itself inside a chroot, so they point at /bin/busybox of the
# rootfs, not of the host.
#
# Idempotent and safe to run concurrently: it takes a lock, does nothing when
# DEST already carries a stamp for this busybox and this layout, and otherwise
# builds into DEST.tmp and renames it into place.
set -eu

# Bump when the layout below changes, so existing trees get rebuilt.
LAYOUT_VERSION=1
BUSYBOX=/bin/busybox
STAMP_NAME=.cloche-rootfs-stamp

die() {
    echo "mkrootfs-busybox: $*" >&2
    exit 1
}

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 DEST" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (chroot, chown)"

dest=$(realpath -m -- "$1")
case $dest in
    /) die "refusing to build into /" ;;
esac
tmp="$dest.tmp"
old="$dest.old"
umask 022

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    echo "mkrootfs-busybox: installing busybox-static" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2 ||
        die "cannot install busybox-static"
fi
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing after installing busybox-static"

version=$(dpkg-query -W -f='${Version}' busybox-static)
checksum=$(sha256sum "$BUSYBOX" | cut -d' ' -f1)
stamp="busybox-static $version sha256:$checksum layout:$LAYOUT_VERSION"

mkdir -p -- "$(dirname -- "$dest")"
exec 9>"$dest.lock"
flock 9

if [ -f "$dest/$STAMP_NAME" ] && [ "$(cat "$dest/$STAMP_NAME")" = "$stamp" ]; then
    exit 0
fi

rm -rf -- "$tmp" "$old"
mkdir -- "$tmp"
chmod 0755 "$tmp"
for dir in bin sbin usr/bin usr/sbin etc root home/vcap tmp proc sys dev var/tmp; do
    mkdir -p -- "$tmp/$dir"
done
chmod 0700 "$tmp/root"
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"

cp -- "$BUSYBOX" "$tmp/bin/busybox"
chmod 0755 "$tmp/bin/busybox"
chroot "$tmp" /bin/busybox --install -s
[ -L "$tmp/bin/sh" ] || die "busybox --install did not create /bin/sh"

cat >"$tmp/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
vcap:x:1000:1000::/home/vcap:/bin/sh
EOF
cat >"$tmp/etc/group" <<'EOF'
root:x:0:
vcap:x:1000:
EOF
: >"$tmp/etc/hosts"
: >"$tmp/etc/resolv.conf"
chmod 0644 "$tmp/etc/passwd" "$tmp/etc/group" "$tmp/etc/hosts" "$tmp/etc/resolv.conf"
chown 1000:1000 "$tmp/home/vcap"

printf '%s\n' "$stamp" >"$tmp/$STAMP_NAME"

# A directory cannot be renamed over a non-empty one, so an existing tree is
# moved aside first; readers see either the old tree or the new one at DEST
# except for the instant between the two renames.
if [ -e "$dest" ]; then
    mv -T -- "$dest" "$old"
fi
mv -T -- "$tmp" "$dest"
rm -rf -- "$old"
