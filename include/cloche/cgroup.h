/* Cgroups: detection of the host's layout (pure v1, pure v2, or hybrid), cloche's
 * parent group at each hierarchy root, and one group per container: create, limits,
 * placement, kill, wait, destroy, and small reads for metrics.
 *
 * Everything is plain cgroupfs file I/O relative to directory fds (no libcgroup).
 * cloche writes only below its own parent group and never writes a hierarchy root's
 * cgroup.subtree_control. On hybrid hosts the v1 hierarchies carry limits and stats
 * and the v2 ("unified") hierarchy, with no controllers, carries placement
 * (CLONE_INTO_CGROUP), cgroup.kill and cgroup.events.
 *
 * All functions return 0 (or a documented non-negative value) or a negative errno,
 * and never log above debug level. A CgroupSystem is read-only after setup and may
 * be shared by threads; Cgroup calls on different groups may run concurrently. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cloche/cleanup.h"

typedef enum CgroupLayout {
    CGROUP_LAYOUT_NONE = 0, /* no usable cgroup hierarchy */
    CGROUP_LAYOUT_V1,       /* v1 controllers only */
    CGROUP_LAYOUT_V2,       /* one cgroup2 hierarchy with the controllers */
    CGROUP_LAYOUT_HYBRID,   /* v1 controllers plus a cgroup2 hierarchy */
} CgroupLayout;

typedef enum CgroupController {
    CGROUP_CONTROLLER_MEMORY,
    CGROUP_CONTROLLER_CPU,
    CGROUP_CONTROLLER_CPUACCT,
    CGROUP_CONTROLLER_PIDS,
    CGROUP_CONTROLLER_CPUSET,
    CGROUP_CONTROLLER_FREEZER,
    CGROUP_CONTROLLER_BLKIO,
    CGROUP_CONTROLLER_DEVICES,
    CGROUP_CONTROLLER_IO,
    CGROUP_CONTROLLER_HUGETLB,
    _CGROUP_CONTROLLER_MAX,
    /* Not a controller: where the core cgroup.* files live. The v2 group (the
     * unified one on hybrid hosts); on pure v1 the memory hierarchy's group. */
    CGROUP_CORE = _CGROUP_CONTROLLER_MAX,
} CgroupController;

#define CGROUP_CONTROLLER_BIT(c) (1u << (c))

/* What cgroup_detect() found. Paths include the root prefix; NULL = not mounted. */
typedef struct CgroupMounts {
    CgroupLayout layout;
    char *v1[_CGROUP_CONTROLLER_MAX]; /* v1 mount point per controller (co-mounts repeat) */
    char *v2;                         /* cgroup2 mount point */
    unsigned v2_controllers;          /* CGROUP_CONTROLLER_BIT set of the v2 root's
                                         cgroup.controllers (0 if unreadable) */
} CgroupMounts;

/* Limits of one group. 0 always means "unlimited" or "the kernel's default". */
typedef struct CgroupLimits {
    uint64_t memory_bytes;  /* v1 memory.limit_in_bytes (+ memsw equal); v2 memory.max,
                               memory.swap.max = 0 */
    uint64_t cpu_shares;    /* v1 cpu.shares (clamped to 2..262144); v2 cpu.weight from
                               cgroup_cpu_shares_to_weight(); 0 = 1024 / weight 100 */
    uint64_t cpu_weight;    /* output only: the v2 weight (computed from shares on v1) */
    uint64_t cpu_quota_us;  /* hard cap per period, >= 1000; 0 = no cap */
    uint64_t cpu_period_us; /* 1000..1000000; 0 = 100000 */
    uint64_t pids_max;      /* pids.max; 0 = "max" */
} CgroupLimits;

typedef struct CgroupSystem CgroupSystem;
typedef struct Cgroup Cgroup;

const char *cgroup_layout_to_string(CgroupLayout layout);
/* "memory", "cpu", ...; "core" for CGROUP_CORE; NULL when out of range. */
const char *cgroup_controller_to_string(CgroupController controller);

/* ---- detection ---------------------------------------------------------- */

/* Read mountinfo_path (normally /proc/self/mountinfo) and classify the layout.
 * Controller mount points come from the super options of "cgroup" mounts (named
 * hierarchies such as name=systemd are ignored); root_prefix (NULL or "" for none)
 * is prepended to every mount point so tests can point at a fake tree. On v2 and
 * hybrid, the v2 root's cgroup.controllers is read too. ret is untouched on error;
 * release it with cgroup_mounts_clear(). */
int cgroup_detect(const char *mountinfo_path, const char *root_prefix, CgroupMounts *ret);
void cgroup_mounts_clear(CgroupMounts *mounts);

/* ---- the system: cloche's parent group ---------------------------------- */

/* Create (or reuse) the parent group `parent` (a relative path such as "cloche";
 * every component but the last must already exist) at the root of each hierarchy
 * cloche uses: v1 memory, cpu, cpuacct, pids (plus freezer on pure v1), and the v2
 * hierarchy. On pure v2, cpu, memory and pids must be listed in the
 * cgroup.subtree_control of the parent's parent (the root, or a delegated group);
 * they are then enabled in <parent>/cgroup.subtree_control, the only
 * subtree_control cloche ever writes. On hybrid hosts nothing is enabled in the v2
 * hierarchy.
 * When a needed controller is not mounted (v1) or not available (v2), returns
 * -ENODEV and sets *ret_missing_controller (if not NULL) to its name (static
 * storage); no directory is left behind. -ENODEV with *ret_missing_controller
 * untouched: no cgroup hierarchy at all. -EINVAL: parent is not a relative path.
 * Parent directories made by a failed setup are removed. On success *ret owns
 * directory fds of each parent (free with cgroup_system_free). */
int cgroup_system_setup(const CgroupMounts *mounts, const char *parent, CgroupSystem **ret,
                        const char **ret_missing_controller);
CgroupSystem *cgroup_system_free(CgroupSystem *system);
static inline void cgroup_system_freep(CgroupSystem **s)
{
    if (*s)
        *s = cgroup_system_free(*s);
}
#define _cleanup_cgroup_system_ _cleanup_(cgroup_system_freep)

CgroupLayout cgroup_system_layout(const CgroupSystem *system);

/* Full path of the group `name` (NULL: the parent itself) in the hierarchy serving
 * `controller` (or CGROUP_CORE), into buf. -ENODEV if that hierarchy is not used,
 * -ENAMETOOLONG if buf is too small. For logs and tests. */
int cgroup_system_path(const CgroupSystem *system, CgroupController controller, const char *name,
                       char *buf, size_t size);

/* rmdir the parent in every hierarchy. Missing = fine; -EBUSY while groups remain. */
int cgroup_system_remove_parent(const CgroupSystem *system);

/* Delegated mode (systemd Delegate=yes, pure v2 only): move the calling process
 * into <own group>/<leaf>, enable cpu, memory and pids in its own group's
 * cgroup.subtree_control, and return the parent to use, "<own group>/<containers>"
 * (relative to the hierarchy root, malloc'd). -EOPNOTSUPP when not pure v2,
 * -EINVAL in the root group, -ENODEV (*ret_missing_controller set) when a
 * controller was not delegated. */
int cgroup_delegate_self(const CgroupMounts *mounts, const char *leaf, const char *containers,
                         char **ret_parent, const char **ret_missing_controller);
/* The v2 path ("/a/b") in a /proc/self/cgroup text (exposed for tests). */
int cgroup_own_v2_path(const char *proc_self_cgroup, char *buf, size_t size);

/* ---- one container's group ---------------------------------------------- */

/* Create group `name` (one path component: no '/', no leading '.', at most 200
 * bytes) under the parent in every hierarchy in use. -EEXIST if it exists in any
 * (nothing is changed then); directories made before a failure are removed.
 * On v2 the group is a leaf that holds the processes; its parent holds none.
 * *ret borrows system, which must outlive it. */
int cgroup_create(const CgroupSystem *system, const char *name, Cgroup **ret);

/* Handle for a group that already exists (daemon restart). -ENOENT if it exists in
 * no hierarchy; a group present in only some hierarchies is opened anyway, so that
 * cgroup_destroy() can finish removing it. */
int cgroup_open_existing(const CgroupSystem *system, const char *name, Cgroup **ret);

/* Free the handle only; the kernel's groups are left as they are. */
Cgroup *cgroup_free(Cgroup *cgroup);
static inline void cgroup_freep(Cgroup **c)
{
    if (*c)
        *c = cgroup_free(*c);
}
#define _cleanup_cgroup_ _cleanup_(cgroup_freep)

const char *cgroup_name(const Cgroup *cgroup);

/* v2 weight for v1 shares, as runc converts: 1 + ((shares - 2) * 9999) / 262142,
 * shares clamped to 2..262144; 0 stays 0 (unset). */
uint64_t cgroup_cpu_shares_to_weight(uint64_t shares);

/* Each setter writes the value now (also on a live group). */
/* Memory limit in bytes, 0 = unlimited. v1: memory.limit_in_bytes and, if swap
 * accounting exists, memory.memsw.limit_in_bytes to the same value, in the order the
 * kernel accepts (lowering: limit first; raising: memsw first). v2: memory.max, then
 * memory.swap.max = 0 (or "max" when unlimited) if that file exists. */
int cgroup_set_memory_limit(const Cgroup *cgroup, uint64_t bytes);
/* CPU shares (0 = default), quota and period in microseconds (quota 0 = no cap,
 * period 0 = 100000). -EINVAL for a quota below 1000 or a period out of range. */
int cgroup_set_cpu(const Cgroup *cgroup, uint64_t shares, uint64_t quota_us, uint64_t period_us);
/* pids.max; 0 = "max". */
int cgroup_set_pids_max(const Cgroup *cgroup, uint64_t max);
/* All of the above from *limits (cpu_weight is ignored). Stops at the first error. */
int cgroup_apply_limits(const Cgroup *cgroup, const CgroupLimits *limits);
/* Read the limits back from the kernel. On v2, cpu_shares is the smallest shares
 * value that maps to the current weight (the conversion loses precision). */
int cgroup_get_limits(const Cgroup *cgroup, CgroupLimits *ret);

/* Move the whole thread group of `pid` into the group: cgroup.procs of every
 * hierarchy. CGROUP_ATTACH_SKIP_V2: the process was cloned into the v2 group with
 * CLONE_INTO_CGROUP already, write only the v1 hierarchies (no-op on pure v2).
 * Attach before the process execs: v1 memory charges do not follow a moved task. */
#define CGROUP_ATTACH_SKIP_V2 (1u << 0)
/* CGROUP_ATTACH_SKIP_V1: the process joined its v1 groups itself (see below). */
#define CGROUP_ATTACH_SKIP_V1 (1u << 1)
int cgroup_attach(const Cgroup *cgroup, pid_t pid, unsigned flags);

/* The group's "tasks" file in every v1 hierarchy, opened O_WRONLY|O_CLOEXEC into
 * fds (at most size; the caller closes them), for a new process to write "0" to:
 * a thread that moves itself skips the kernel's global threadgroup lock, whose
 * write side waits for an RCU grace period (10-40 ms here, longer with thousands
 * of containers) every time a pid is written to cgroup.procs. The writes are
 * allowed by the opener's credentials, so a child that is already in its own
 * user namespace can make them. *ret_n is 0 on pure v2 and on a fake tree. */
#define CGROUP_V1_TASKS_MAX 8
int cgroup_open_v1_tasks(const Cgroup *cgroup, int *fds, size_t size, size_t *ret_n);

/* A new O_RDONLY|O_DIRECTORY|O_CLOEXEC fd of the v2 (or unified) group, for
 * clone3(CLONE_INTO_CGROUP). The caller owns it. -ENOENT on pure v1. */
int cgroup_open_v2_fd(const Cgroup *cgroup);

/* Load the v2 device programs once (pure v2, or hybrid without a v1 devices
 * hierarchy); a no-op otherwise. */
int cgroup_devices_setup(CgroupSystem *system);
/* The device allow-list (doc/security.md) on the group, before anything runs in
 * it: v1 devices.deny/devices.allow, or the v2 program attached. privileged adds
 * /dev/fuse. */
int cgroup_set_devices(const Cgroup *cgroup, bool privileged);

/* The group's directory in each hierarchy, and the name the container's
 * read-only view at /sys/fs/cgroup shows it under ("" on pure v2: the view's
 * root itself). */
#define CGROUP_VIEW_MAX 8
typedef struct CgroupViewDir {
    char path[4096];
    char name[64];
} CgroupViewDir;
int cgroup_view_dirs(const Cgroup *cgroup, CgroupViewDir *ret, size_t max, size_t *ret_n);

/* Pids in the group and its child groups (cgroup.procs of the CGROUP_CORE
 * hierarchy), as a malloc'd array
 * (NULL when empty). At most 1 MiB of cgroup.procs is read (-EFBIG beyond). */
int cgroup_list_pids(const Cgroup *cgroup, pid_t **ret_pids, size_t *ret_count);

/* SIGKILL every process in the group. cgroup.kill where it exists (v2 and hybrid on
 * Linux >= 5.14); otherwise freeze (v1 freezer or v2 cgroup.freeze, if any), signal
 * every listed pid, thaw, and repeat until the list is empty (-EBUSY if it never
 * empties). Returns once signalled, not once dead: see cgroup_wait_empty(). A group
 * that no longer exists counts as killed. */
int cgroup_kill_all(const Cgroup *cgroup);

/* Wait until the group holds no process: cgroup.events "populated 0" via poll()
 * where it exists, else cgroup.procs polled. timeout_ms < 0 waits forever; -ETIMEDOUT
 * when it expires. A group that no longer exists counts as empty. */
int cgroup_wait_empty(const Cgroup *cgroup, int timeout_ms);

/* Kill, wait (timeout_ms as above) and rmdir the group in every hierarchy.
 * Idempotent: missing directories are fine. The handle stays valid (free it with
 * cgroup_free). */
int cgroup_destroy(const Cgroup *cgroup, int timeout_ms);

/* ---- child groups (cgroup-child.c): a pea's own group ---------------------- */

/* On pure v2 the container's processes move here when it gets its first child
 * (no process may sit in a group whose children have controllers). */
#define CGROUP_LEAF_NAME "leaf"

/* Create `name` (one component, not CGROUP_LEAF_NAME) below the group in every
 * hierarchy, with the cpu, memory and pids controllers available to it. On pure
 * v2 this first moves the group's processes into its leaf. *ret borrows the
 * system. The group's other calls (limits, kill, destroy, paths) work on it. */
int cgroup_create_child(const Cgroup *parent, const char *name, Cgroup **ret);
/* A handle for the child `name` (made earlier, perhaps by another daemon). */
int cgroup_open_child(const Cgroup *parent, const char *name, Cgroup **ret);
/* Call fn for each child group (the leaf included); the first error is returned
 * once every child was visited. */
int cgroup_for_each_child(const Cgroup *cg, int (*fn)(const Cgroup *child, void *userdata),
                          void *userdata);
/* Does the group have its v2 leaf (pure v2 only)? */
bool cgroup_has_leaf(const Cgroup *cg);

/* ---- reads for metrics -------------------------------------------------- */

/* Read the whole of a small group file (such as "memory.stat") of the hierarchy
 * serving `controller` into buf, NUL-terminated. -ENOBUFS if it does not fit,
 * -ENODEV if that hierarchy is not used. *ret_len (optional) = bytes read. */
int cgroup_read_file(const Cgroup *cgroup, CgroupController controller, const char *file, char *buf,
                     size_t size, size_t *ret_len);
/* Read a one-value file; "max" and "-1" read as UINT64_MAX. */
int cgroup_read_u64(const Cgroup *cgroup, CgroupController controller, const char *file,
                    uint64_t *ret);

/* In "key value" lines (memory.stat, cpu.stat, cgroup.events, ...), the value of
 * `key` ("max" = UINT64_MAX). -ENOENT if absent, -EINVAL if not a number. */
int cgroup_keyed_get(const char *text, const char *key, uint64_t *ret);
/* Iterate "key value" lines: *cursor starts at the text and advances. Returns 1 with
 * the next pair (key not NUL-terminated: ret_key_len bytes), 0 at the end. Lines
 * whose value is not a number are skipped. */
int cgroup_keyed_next(const char **cursor, const char **ret_key, size_t *ret_key_len,
                      uint64_t *ret_value);

/* ---- statistics (cgroup-stats.c) ---------------------------------------- */

/* Garden's ContainerMemoryStat, field for field (JSON key = field name, except
 * total_usage_toward_limit, which Garden sends as "TotalUsageTowardLimit"). Every
 * value is in bytes, except the pg* counters (events).
 * v1: each field is the memory.stat key of the same name (absent keys read 0; v1
 * has no anon or file). v2 has other names and no hierarchy below a container, so
 * the total_* fields equal their plain twins: rss = anon, cache = file, mapped_file =
 * file_mapped, swap = memory.swap.current, hierarchical_memory_limit = memory.max,
 * hierarchical_memsw_limit = memory.max + memory.swap.max; pgpgin and pgpgout do
 * not exist on v2 and read 0. A limit of "max" reads as v1's "unlimited"
 * (LONG_MAX rounded down to the page size), so clients see one value either way. */
typedef struct CgroupMemoryStat {
    uint64_t active_anon;
    uint64_t active_file;
    uint64_t cache;
    uint64_t hierarchical_memory_limit;
    uint64_t inactive_anon;
    uint64_t inactive_file;
    uint64_t mapped_file;
    uint64_t pgfault;
    uint64_t pgmajfault;
    uint64_t pgpgin;
    uint64_t pgpgout;
    uint64_t rss;
    uint64_t total_active_anon;
    uint64_t total_active_file;
    uint64_t total_cache;
    uint64_t total_inactive_anon;
    uint64_t total_inactive_file;
    uint64_t total_mapped_file;
    uint64_t total_pgfault;
    uint64_t total_pgmajfault;
    uint64_t total_pgpgin;
    uint64_t total_pgpgout;
    uint64_t total_rss;
    uint64_t total_unevictable;
    uint64_t unevictable;
    uint64_t swap;
    uint64_t hierarchical_memsw_limit;
    uint64_t total_swap;
    /* As guardian: v1 total_rss + total_cache + total_swap - total_inactive_file,
     * v2 anon + file + swapcached - inactive_file; 0 rather than below 0. */
    uint64_t total_usage_toward_limit;
    uint64_t anon;
    uint64_t file;
    uint64_t swapcached;
} CgroupMemoryStat;

/* CPU time in nanoseconds and CFS bandwidth counters. v1: cpuacct.usage,
 * cpuacct.stat (USER_HZ ticks) and the cpu hierarchy's cpu.stat; v2: cpu.stat
 * (microseconds). Counters the kernel does not offer (no CFS bandwidth, or a v2
 * group without the cpu controller) read 0. */
typedef struct CgroupCpuStat {
    uint64_t usage_ns, user_ns, system_ns;
    uint64_t nr_periods, nr_throttled, throttled_ns;
} CgroupCpuStat;

/* pids.current and pids.max (0 = "max"). */
typedef struct CgroupPidStat {
    uint64_t current, max;
} CgroupPidStat;

/* One read of memory.stat (plus, on v2, memory.max, memory.swap.max and
 * memory.swap.current). *ret is untouched on error. */
int cgroup_read_memory_stat(const Cgroup *cgroup, CgroupMemoryStat *ret);
int cgroup_read_cpu_stat(const Cgroup *cgroup, CgroupCpuStat *ret);
/* The same without the throttling counters (left 0): one read fewer on v1. */
int cgroup_read_cpu_usage(const Cgroup *cgroup, CgroupCpuStat *ret);
int cgroup_read_pid_stat(const Cgroup *cgroup, CgroupPidStat *ret);
/* Bytes charged to the group now: v1 memory.usage_in_bytes, v2 memory.current. */
int cgroup_read_memory_usage(const Cgroup *cgroup, uint64_t *ret);

/* OOM kills. The count is the kernel's own counter ("oom_kill" of v1
 * memory.oom_control, kernel >= 4.13, or of v2 memory.events), so it survives a
 * daemon restart: remember it, and a larger value later means new kills. */
int cgroup_oom_count(const Cgroup *cgroup, uint64_t *ret);
/* A new non-blocking fd (the caller owns it) that turns readable (POLLIN) when an
 * OOM kill may have happened: v1 an eventfd registered for memory.oom_control
 * through cgroup.event_control, v2 an inotify fd watching memory.events for
 * IN_MODIFY. (memory.events itself signals with POLLPRI but always polls
 * readable, so it cannot sit in a POLLIN loop.) Readiness is a hint, never a
 * count: v2 also fires for the other memory events (max, high), v1 also when the
 * group is removed (v2 need not) and as the OOM starts, a moment before the kill
 * is counted. So: open the watch before reading the baseline count; on readiness,
 * drain, then compare cgroup_oom_count() with the last value, and again on the
 * next occasion if it has not moved yet. */
int cgroup_oom_watch_open(const Cgroup *cgroup, int *ret_fd);
/* Consume the readiness of a watch fd. Returns 1 if something was pending, 0 if
 * not, or a negative errno. */
int cgroup_oom_watch_drain(int fd);

/* Exposed for tests: the pure mappings, from file texts. */
/* memory.stat text to *ret. v2 only: limit = memory.max, swap_limit =
 * memory.swap.max, swap_current = memory.swap.current (UINT64_MAX = "max"; pass 0
 * for the swap values when the files do not exist). v1 ignores the three. */
int cgroup_memory_stat_parse(bool v2, const char *memory_stat_text, uint64_t limit,
                             uint64_t swap_limit, uint64_t swap_current, CgroupMemoryStat *ret);
/* v1: cpuacct.usage, cpuacct.stat and cpu.stat texts (cpu_stat_text may be NULL),
 * ticks_per_second = sysconf(_SC_CLK_TCK). */
int cgroup_cpu_stat_parse_v1(const char *usage_text, const char *cpuacct_stat_text,
                             const char *cpu_stat_text, long ticks_per_second, CgroupCpuStat *ret);
/* v2: cpu.stat text. */
int cgroup_cpu_stat_parse_v2(const char *cpu_stat_text, CgroupCpuStat *ret);
