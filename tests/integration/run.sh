#!/bin/sh
# Run cloche's integration tests inside a sandbox of their own.
#
#   tests/integration/run.sh BUILD_DIR [pytest args...]
#
# The daemon under test creates links, addresses, firewall rules and mounts,
# so pytest runs in a private mount namespace and a private network namespace
# (design.md §10): everything it makes there vanishes with the namespaces and
# the host's own network configuration is never touched.  The script re-runs
# itself under unshare(1); CLOCHE_TEST_SANDBOX marks the second run.
#
# Environment:
#   CLOCHE_JUNIT         write a JUnit XML report to this path
#   CLOCHE_TEST_ROOTFS   rootfs directory for the daemon's --default-rootfs
set -eu

usage() {
    echo "usage: $0 BUILD_DIR [pytest args...]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
build_dir=$(realpath -- "$1") || usage
shift
[ -x "$build_dir/cloched" ] || echo "run.sh: warning: $build_dir/cloched does not exist yet" >&2

if [ -n "${CLOCHE_JUNIT:-}" ]; then
    CLOCHE_JUNIT=$(realpath -m -- "$CLOCHE_JUNIT")  # we cd to the repo below
    export CLOCHE_JUNIT
fi

script=$(realpath -- "$0")
repo_root=$(cd "$(dirname -- "$script")/../.." && pwd)

if [ -z "${CLOCHE_TEST_SANDBOX:-}" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "run.sh: must run as root (the sandbox needs unshare and the daemon needs root)" >&2
        exit 1
    fi
    # Remember the host's namespaces: the sandboxed side checks it left them
    # (PID 1's namespaces are not always readable, e.g. inside a container).
    CLOCHE_HOST_NETNS=$(readlink /proc/self/ns/net)
    CLOCHE_HOST_MNTNS=$(readlink /proc/self/ns/mnt)
    export CLOCHE_TEST_SANDBOX=1 CLOCHE_HOST_NETNS CLOCHE_HOST_MNTNS
    exec unshare --mount --net --propagation private --fork -- "$script" "$build_dir" "$@"
fi

# Second run: make sure we really are in our own namespaces before touching lo.
for ns in net mnt; do
    ours=$(readlink /proc/self/ns/$ns)
    pid1=$(readlink /proc/1/ns/$ns 2>/dev/null || true)
    case $ns in
        net) recorded=${CLOCHE_HOST_NETNS:-} ;;
        mnt) recorded=${CLOCHE_HOST_MNTNS:-} ;;
    esac
    if [ -z "$ours" ] || { [ -z "$pid1" ] && [ -z "$recorded" ]; } ||
       [ "$ours" = "$pid1" ] || [ "$ours" = "$recorded" ]; then
        echo "run.sh: not in a private $ns namespace; refusing to go on" >&2
        exit 1
    fi
done
ip link set lo up

export CLOCHE_BUILD="$build_dir"
export PYTHONDONTWRITEBYTECODE=1  # the tree is shared; leave no __pycache__ behind
cd "$repo_root"

# Test paths given on the command line (relative to the repo root) replace
# the default of the whole directory.
default_dir=tests/integration
for arg in "$@"; do
    case $arg in
        tests/*) default_dir= ;;
    esac
done

# In JUnit, failed tests carry their daemons' logs (conftest.py) as system-out.
if [ -n "${CLOCHE_JUNIT:-}" ]; then
    set -- --junitxml="$CLOCHE_JUNIT" -o junit_logging=system-out -o junit_log_passing_tests=false "$@"
fi
set -- -p no:cacheprovider "$@"
exec /usr/bin/python3 -m pytest $default_dir "$@"
