#!/bin/bash
# The cgroup-touching integration tests, a second time, on a pure cgroup v2 host.
#
#   scripts/test-v2vm.sh BUILD_DIR ROOTFS JUNIT_XML [TEST...]
#
# With TESTs (pytest node ids or files) those run instead of the list below.
#
# scripts/test.sh runs this inside a throw-away VM with pure cgroup v2 and every
# controller enabled (run-in-v2vm.sh: Debian's 6.1 kernel under emulation, the
# repository shared at the same path). The VM is emulated and ~10-25x slower, so
# this is a chosen subset; every kind the v2 backend must show is in it: create,
# run, each limit (memory with the OOM event, cpu cap, pids, disk), live limit
# changes, metrics, stop, destroy, restart (limits and the OOM watch kept), and the
# leak checks (no cgroup left under the parent); a few networking tests, so
# the links and the nftables table are checked on this kernel as well; and the
# confinement (seccomp, the BPF device program, the cgroup view).
set -euo pipefail

build=$1
rootfs_src=$2
junit=$3
shift 3
cd "$(dirname "$0")/.."

if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "test-v2vm: not a cgroup v2 host" >&2
    exit 1
fi
echo "test-v2vm: kernel $(uname -r), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"

# The guest's modules are loadable; nothing is built in there.
for m in loop ext4 overlay tun veth bridge br_netfilter ifb sch_tbf sch_ingress cls_u32 act_mirred \
    nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_fib nft_fib_inet nft_fib_ipv4 \
    nft_reject_inet nft_log nf_conntrack; do
    modprobe "$m" 2>/dev/null || true
done

# The rootfs must be on a file system that supports idmapped mounts (6.1: ext4,
# not virtiofs): a small ext4 image in the guest's tmpfs.
work=$(mktemp -d /tmp/cloche-v2vm.XXXXXX)
truncate -s 96M "$work/rootfs.img"
mkfs.ext4 -q -F "$work/rootfs.img"
mkdir -p "$work/mnt"
dev=$(losetup -f --show "$work/rootfs.img")
mount "$dev" "$work/mnt"
cleanup() {
    umount -l "$work/mnt" 2>/dev/null || true
    losetup -d "$dev" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cp -a "$rootfs_src" "$work/mnt/busybox"

tests=(
    # containers: create, limits at create, stop, destroy, leaks, restart
    "tests/integration/test_containers.py::test_unprivileged_container_has_every_namespace"
    "tests/integration/test_containers.py::test_memory_limit_is_enforced"
    "tests/integration/test_containers.py::test_pids_limit_is_enforced"
    "tests/integration/test_containers.py::test_limits_are_reported_as_given"
    "tests/integration/test_containers.py::test_stop_terminates_processes_and_info_says_stopped"
    "tests/integration/test_containers.py::test_destroy_leaves_nothing_behind"
    "tests/integration/test_containers.py::test_daemon_restart_keeps_containers"
    # processes
    "tests/integration/test_processes.py::test_exit_codes"
    "tests/integration/test_processes.py::test_stdout_and_stderr_are_separate"
    "tests/integration/test_processes.py::test_stop_ends_every_process"
    "tests/integration/test_processes.py::test_destroy_leaves_no_shim_process_or_socket"
    # every limit, live changes, OOM, metrics
    "tests/integration/test_limits.py::test_memory_limit_kills_and_reports_oom_then_can_be_raised"
    "tests/integration/test_limits.py::test_oom_event_survives_a_daemon_restart_and_is_seen_after_one"
    "tests/integration/test_limits.py::test_cpu_cap_at_create_and_changed_live"
    "tests/integration/test_limits.py::test_pids_limit_at_create_and_raised_live"
    "tests/integration/test_limits.py::test_disk_byte_limit_enospc_and_growth"
    "tests/integration/test_limits.py::test_metrics_reflect_what_the_container_did"
    "tests/integration/test_limits.py::test_bulk_metrics"
    # networking on this kernel too (veth, bridge, nftables, restart)
    "tests/integration/test_network.py::test_two_containers_are_isolated_until_netout_allows"
    "tests/integration/test_network.py::test_netin_tcp_from_host_address_and_loopback"
    "tests/integration/test_network.py::test_destroy_leaves_nothing_of_the_container"
    "tests/integration/test_network.py::test_restart_keeps_mappings_and_reservations"
    # the state machine where cgroup.kill and CLONE_INTO_CGROUP are used
    "tests/integration/test_concurrency.py::test_create_undo_meets_failing_cgroup_removal"
    "tests/integration/test_concurrency.py::test_destroy_whose_teardown_fails_is_retried"
    "tests/integration/test_concurrency.py::test_crash_point[create.sandbox]"
    "tests/integration/test_concurrency.py::test_crash_point[destroy.killed]"
    # confinement: the seccomp filter on this kernel, the BPF device program,
    # the cgroup view of a pure v2 host, and the one tmpfs of a container there
    "tests/integration/test_security.py::test_unprivileged_root_is_refused_everything_outside_the_profile"
    "tests/integration/test_security.py::test_devices_outside_the_list_cannot_be_opened"
    "tests/integration/test_security.py::test_privileged_container_may_open_fuse"
    "tests/integration/test_security.py::test_cgroup_view_shows_own_limits_only_and_is_read_only"
    "tests/integration/test_security.py::test_dev_shm_cgroup_view_and_masks_are_one_tmpfs_of_the_containers_own"
    # joining: the init and a Run's process in their groups (CLONE_INTO_CGROUP on v2)
    "tests/integration/test_cgroup_join.py"
    "tests/integration/test_processes.py::test_a_process_is_in_every_group_of_its_container_and_its_shim_in_none"
    # started with a login shell's open files limit (where it was found short)
    "tests/integration/test_processes.py::test_started_with_a_shells_open_files_limit_the_daemon_raises_its_own"
    # v2 only: delegation (systemd's Delegate=yes) and a group lacking a controller
    "tests/integration/test_cgroup_v2.py"
    # 6.1 cannot idmap tmpfs: an image there is imported into the depot
    "tests/integration/test_rootfs_import.py"
    # peas: their mount namespace and overlay on 6.1, their own groups below a
    # container's (the leaf), an OOM kill that is theirs alone, stop, destroy, restart
    "tests/integration/test_peas.py::test_pea_shares_every_namespace_but_mnt"
    "tests/integration/test_peas.py::test_pea_files_are_its_own"
    "tests/integration/test_peas.py::test_pea_memory_override_is_oom_killed_alone"
    "tests/integration/test_peas.py::test_pea_pid_override_and_limits_without_image"
    "tests/integration/test_peas.py::test_destroy_ends_running_peas_and_leaves_nothing"
    "tests/integration/test_peas.py::test_stop_ends_peas_and_removes_their_layers"
    "tests/integration/test_peas.py::test_pea_survives_a_daemon_restart_and_can_be_attached"
    "tests/integration/test_peas.py::test_metrics_count_a_pea_with_its_container"
    # 6.1's overlay and tmpfs, and a start after a stop on v2 (the device program
    # attached again): a volatile layer mounted again, the scratch tmpfs made
    # detached, the shared /dev/net/tun
    "tests/integration/test_run_dir.py::test_a_create_makes_only_the_layers_state_and_etc_files_in_the_depot"
    # a start after a stop: the same address, MAC, ports, rules and files
    "tests/integration/test_lifecycle.py::test_stop_then_start_keeps_address_ports_rules_and_files"
    # the idle shims that take a Run (joining the groups on v2), services and
    # their restarts (OOM and exits seen through v2's events), the event stream
    "tests/integration/test_shim_pool.py"
    "tests/integration/test_service.py"
    "tests/integration/test_events.py"
    # 6.1 cannot idmap the image layers of a depot on the guest's tmpfs
    --deselect "tests/integration/test_service.py::test_empty_service_takes_the_image_config"
)
[ $# -eq 0 ] || tests=("$@")

CLOCHE_TEST_ROOTFS="$work/mnt/busybox" CLOCHE_JUNIT="$junit" \
    tests/integration/run.sh "$build" -q -p no:randomly "${tests[@]}"
