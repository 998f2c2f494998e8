/* Statistics of one group for Garden's Metrics (memory, CPU, pids) and OOM-kill
 * detection. The v1/v2 mappings are pure functions of the file texts, so the unit
 * tests need no kernel; the readers around them only fetch the files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>

#include "cloche/cgroup.h"
#include "cloche/cleanup.h"
#include "cgroup-internal.h"

/* memory.stat is about 2 KiB on 6.x kernels; leave room for keys to come. */
#define STAT_TEXT_MAX 16384
#define NSEC_PER_SEC UINT64_C(1000000000)
#define NSEC_PER_USEC UINT64_C(1000)

/* ---- memory.stat -------------------------------------------------------- */

typedef struct StatKey {
    const char *key;
    size_t offset;
} StatKey;

#define FIELD(key, field)                                                                          \
    {                                                                                              \
        key, offsetof(CgroupMemoryStat, field)                                                     \
    }

/* v1: Garden's fields are the memory.stat keys themselves. */
static const StatKey v1_keys[] = {
    FIELD("active_anon", active_anon),
    FIELD("active_file", active_file),
    FIELD("cache", cache),
    FIELD("hierarchical_memory_limit", hierarchical_memory_limit),
    FIELD("inactive_anon", inactive_anon),
    FIELD("inactive_file", inactive_file),
    FIELD("mapped_file", mapped_file),
    FIELD("pgfault", pgfault),
    FIELD("pgmajfault", pgmajfault),
    FIELD("pgpgin", pgpgin),
    FIELD("pgpgout", pgpgout),
    FIELD("rss", rss),
    FIELD("total_active_anon", total_active_anon),
    FIELD("total_active_file", total_active_file),
    FIELD("total_cache", total_cache),
    FIELD("total_inactive_anon", total_inactive_anon),
    FIELD("total_inactive_file", total_inactive_file),
    FIELD("total_mapped_file", total_mapped_file),
    FIELD("total_pgfault", total_pgfault),
    FIELD("total_pgmajfault", total_pgmajfault),
    FIELD("total_pgpgin", total_pgpgin),
    FIELD("total_pgpgout", total_pgpgout),
    FIELD("total_rss", total_rss),
    FIELD("total_unevictable", total_unevictable),
    FIELD("unevictable", unevictable),
    FIELD("swap", swap),
    FIELD("hierarchical_memsw_limit", hierarchical_memsw_limit),
    FIELD("total_swap", total_swap),
    FIELD("anon", anon),
    FIELD("file", file),
    FIELD("swapcached", swapcached),
};

/* v2: a container's group is a leaf, so each total_* is its plain twin. A key may
 * fill several fields. */
static const StatKey v2_keys[] = {
    FIELD("anon", anon),
    FIELD("anon", rss),
    FIELD("anon", total_rss),
    FIELD("file", file),
    FIELD("file", cache),
    FIELD("file", total_cache),
    FIELD("active_anon", active_anon),
    FIELD("active_anon", total_active_anon),
    FIELD("inactive_anon", inactive_anon),
    FIELD("inactive_anon", total_inactive_anon),
    FIELD("active_file", active_file),
    FIELD("active_file", total_active_file),
    FIELD("inactive_file", inactive_file),
    FIELD("inactive_file", total_inactive_file),
    FIELD("file_mapped", mapped_file),
    FIELD("file_mapped", total_mapped_file),
    FIELD("pgfault", pgfault),
    FIELD("pgfault", total_pgfault),
    FIELD("pgmajfault", pgmajfault),
    FIELD("pgmajfault", total_pgmajfault),
    FIELD("unevictable", unevictable),
    FIELD("unevictable", total_unevictable),
    FIELD("swapcached", swapcached),
};

#undef FIELD

/* What v1 shows for "no limit": the page counter's maximum, LONG_MAX in pages. */
static uint64_t v1_unlimited(void)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    return (uint64_t)LONG_MAX / (uint64_t)page * (uint64_t)page;
}

static uint64_t v2_limit(uint64_t v)
{
    return v == UINT64_MAX ? v1_unlimited() : v;
}

static uint64_t sub_floor0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static uint64_t add_saturate(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int cgroup_memory_stat_parse(bool v2, const char *memory_stat_text, uint64_t limit,
                             uint64_t swap_limit, uint64_t swap_current, CgroupMemoryStat *ret)
{
    if (!memory_stat_text || !ret)
        return -EINVAL;
    const StatKey *table = v2 ? v2_keys : v1_keys;
    size_t n_table = v2 ? ELEMENTSOF(v2_keys) : ELEMENTSOF(v1_keys);

    CgroupMemoryStat st = {0};
    size_t found = 0;
    const char *cursor = memory_stat_text, *key;
    size_t key_len;
    uint64_t value;
    while (cgroup_keyed_next(&cursor, &key, &key_len, &value) > 0)
        for (size_t i = 0; i < n_table; i++)
            if (table[i].key[0] == key[0] && strncmp(table[i].key, key, key_len) == 0 &&
                table[i].key[key_len] == '\0') {
                *(uint64_t *)((char *)&st + table[i].offset) = value;
                found++;
            }
    if (found == 0)
        return -EINVAL;

    if (v2) {
        st.swap = st.total_swap = swap_current;
        st.hierarchical_memory_limit = v2_limit(limit);
        if (limit == UINT64_MAX || swap_limit == UINT64_MAX)
            st.hierarchical_memsw_limit = v1_unlimited();
        else
            st.hierarchical_memsw_limit = v2_limit(add_saturate(limit, swap_limit));
        st.total_usage_toward_limit = sub_floor0(
            add_saturate(add_saturate(st.anon, st.file), st.swapcached), st.inactive_file);
    } else {
        st.total_usage_toward_limit =
            sub_floor0(add_saturate(add_saturate(st.total_rss, st.total_cache), st.total_swap),
                       st.total_inactive_file);
    }
    *ret = st;
    return 0;
}

/* The memory hierarchy's index, and whether it is v2. */
static int memory_hierarchy(const Cgroup *cg, bool *ret_v2)
{
    int idx = cgroup_hierarchy_for(cg->system, CGROUP_CONTROLLER_MEMORY);
    if (idx >= 0)
        *ret_v2 = cg->system->hierarchies[idx].v2;
    return idx;
}

/* A one-value file that may be missing (no swap accounting): 0 then. */
static int read_u64_or_zero(const Cgroup *cg, int idx, const char *file, uint64_t *ret)
{
    int r = cgroup_group_read_u64(cg, idx, file, ret);
    if (r == -ENOENT) {
        *ret = 0;
        return 0;
    }
    return r;
}

int cgroup_read_memory_stat(const Cgroup *cg, CgroupMemoryStat *ret)
{
    if (!cg || !ret)
        return -EINVAL;
    bool v2;
    int idx = memory_hierarchy(cg, &v2);
    if (idx < 0)
        return idx;
    char text[STAT_TEXT_MAX];
    int r = cgroup_group_read_stat(cg, idx, "memory.stat", text, sizeof(text), NULL);
    if (r < 0)
        return r;
    uint64_t limit = 0, swap_limit = 0, swap_current = 0;
    if (v2) {
        r = cgroup_group_read_u64(cg, idx, "memory.max", &limit);
        if (r < 0)
            return r;
        r = read_u64_or_zero(cg, idx, "memory.swap.max", &swap_limit);
        if (r < 0)
            return r;
        r = read_u64_or_zero(cg, idx, "memory.swap.current", &swap_current);
        if (r < 0)
            return r;
    }
    return cgroup_memory_stat_parse(v2, text, limit, swap_limit, swap_current, ret);
}

int cgroup_read_memory_usage(const Cgroup *cg, uint64_t *ret)
{
    if (!cg || !ret)
        return -EINVAL;
    bool v2;
    int idx = memory_hierarchy(cg, &v2);
    if (idx < 0)
        return idx;
    return cgroup_group_read_u64(cg, idx, v2 ? "memory.current" : "memory.usage_in_bytes", ret);
}

/* ---- cpu ---------------------------------------------------------------- */

/* `key` of a keyed text, 0 when absent. */
static int keyed_or_zero(const char *text, const char *key, uint64_t *ret)
{
    int r = text ? cgroup_keyed_get(text, key, ret) : -ENOENT;
    if (r == -ENOENT) {
        *ret = 0;
        return 0;
    }
    return r;
}

static uint64_t ticks_to_ns(uint64_t ticks, uint64_t per_second)
{
    /* Split so that large tick counts do not overflow the multiplication. */
    return ticks / per_second * NSEC_PER_SEC + ticks % per_second * NSEC_PER_SEC / per_second;
}

static uint64_t mul_saturate(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

int cgroup_cpu_stat_parse_v1(const char *usage_text, const char *cpuacct_stat_text,
                             const char *cpu_stat_text, long ticks_per_second, CgroupCpuStat *ret)
{
    if (!usage_text || !cpuacct_stat_text || !ret || ticks_per_second <= 0)
        return -EINVAL;
    CgroupCpuStat st = {0};
    uint64_t user, system;
    int r = cgroup_parse_value(usage_text, usage_text + strlen(usage_text), &st.usage_ns);
    if (r < 0)
        return r;
    r = cgroup_keyed_get(cpuacct_stat_text, "user", &user);
    if (r < 0)
        return r == -ENOENT ? -EINVAL : r;
    r = cgroup_keyed_get(cpuacct_stat_text, "system", &system);
    if (r < 0)
        return r == -ENOENT ? -EINVAL : r;
    st.user_ns = ticks_to_ns(user, (uint64_t)ticks_per_second);
    st.system_ns = ticks_to_ns(system, (uint64_t)ticks_per_second);
    if ((r = keyed_or_zero(cpu_stat_text, "nr_periods", &st.nr_periods)) < 0 ||
        (r = keyed_or_zero(cpu_stat_text, "nr_throttled", &st.nr_throttled)) < 0 ||
        (r = keyed_or_zero(cpu_stat_text, "throttled_time", &st.throttled_ns)) < 0)
        return r;
    *ret = st;
    return 0;
}

int cgroup_cpu_stat_parse_v2(const char *cpu_stat_text, CgroupCpuStat *ret)
{
    if (!cpu_stat_text || !ret)
        return -EINVAL;
    uint64_t usage, user, system, throttled;
    CgroupCpuStat st = {0};
    int r = cgroup_keyed_get(cpu_stat_text, "usage_usec", &usage);
    if (r < 0)
        return r == -ENOENT ? -EINVAL : r;
    if ((r = keyed_or_zero(cpu_stat_text, "user_usec", &user)) < 0 ||
        (r = keyed_or_zero(cpu_stat_text, "system_usec", &system)) < 0 ||
        (r = keyed_or_zero(cpu_stat_text, "nr_periods", &st.nr_periods)) < 0 ||
        (r = keyed_or_zero(cpu_stat_text, "nr_throttled", &st.nr_throttled)) < 0 ||
        (r = keyed_or_zero(cpu_stat_text, "throttled_usec", &throttled)) < 0)
        return r;
    st.usage_ns = mul_saturate(usage, NSEC_PER_USEC);
    st.user_ns = mul_saturate(user, NSEC_PER_USEC);
    st.system_ns = mul_saturate(system, NSEC_PER_USEC);
    st.throttled_ns = mul_saturate(throttled, NSEC_PER_USEC);
    *ret = st;
    return 0;
}

static int read_cpu(const Cgroup *cg, bool throttling, CgroupCpuStat *ret);

int cgroup_read_cpu_stat(const Cgroup *cg, CgroupCpuStat *ret)
{
    return read_cpu(cg, true, ret);
}

int cgroup_read_cpu_usage(const Cgroup *cg, CgroupCpuStat *ret)
{
    return read_cpu(cg, false, ret);
}

static int read_cpu(const Cgroup *cg, bool throttling, CgroupCpuStat *ret)
{
    if (!cg || !ret)
        return -EINVAL;
    const CgroupSystem *s = cg->system;
    int acct = cgroup_hierarchy_for(s, CGROUP_CONTROLLER_CPUACCT);
    int cpu = cgroup_hierarchy_for(s, CGROUP_CONTROLLER_CPU);
    if (acct < 0 || cpu < 0)
        return -ENODEV;
    char stat[4096];
    if (s->hierarchies[cpu].v2) {
        int r = cgroup_group_read_stat(cg, cpu, "cpu.stat", stat, sizeof(stat), NULL);
        if (r < 0)
            return r;
        return cgroup_cpu_stat_parse_v2(stat, ret);
    }

    char usage[64], acct_stat[256];
    int r = cgroup_group_read_stat(cg, acct, "cpuacct.usage", usage, sizeof(usage), NULL);
    if (r < 0)
        return r;
    r = cgroup_group_read_stat(cg, acct, "cpuacct.stat", acct_stat, sizeof(acct_stat), NULL);
    if (r < 0)
        return r;
    /* cpu.stat is missing without CFS bandwidth control. */
    r = throttling ? cgroup_group_read_stat(cg, cpu, "cpu.stat", stat, sizeof(stat), NULL)
                   : -ENOENT;
    if (r < 0 && r != -ENOENT)
        return r;
    return cgroup_cpu_stat_parse_v1(usage, acct_stat, r < 0 ? NULL : stat, sysconf(_SC_CLK_TCK),
                                    ret);
}

/* ---- pids --------------------------------------------------------------- */

int cgroup_read_pid_stat(const Cgroup *cg, CgroupPidStat *ret)
{
    if (!cg || !ret)
        return -EINVAL;
    int idx = cgroup_hierarchy_for(cg->system, CGROUP_CONTROLLER_PIDS);
    if (idx < 0)
        return idx;
    CgroupPidStat st;
    int r = cgroup_group_read_u64(cg, idx, "pids.current", &st.current);
    if (r < 0)
        return r;
    r = cgroup_group_read_u64(cg, idx, "pids.max", &st.max);
    if (r < 0)
        return r;
    if (st.max == UINT64_MAX)
        st.max = 0;
    *ret = st;
    return 0;
}

/* ---- OOM ---------------------------------------------------------------- */

int cgroup_oom_count(const Cgroup *cg, uint64_t *ret)
{
    if (!cg || !ret)
        return -EINVAL;
    bool v2;
    int idx = memory_hierarchy(cg, &v2);
    if (idx < 0)
        return idx;
    char text[1024];
    /* v2 counts a child's kills in its ancestors too: a pea's own group
     * (cgroup-child.c) would count as the container's. So the group's local
     * count, plus the leaf's (where the container's processes are once it has
     * children). */
    bool local = false;
    int r = -ENOENT;
    if (v2)
        r = cgroup_group_read(cg, idx, "memory.events.local", text, sizeof(text), NULL);
    if (r >= 0)
        local = true;
    else
        r = cgroup_group_read(cg, idx, v2 ? "memory.events" : "memory.oom_control", text,
                              sizeof(text), NULL);
    if (r < 0)
        return r;
    /* "oom_kill" counts kills; v2's "oom" also counts OOMs that killed nothing. */
    uint64_t count;
    r = cgroup_keyed_get(text, "oom_kill", &count);
    if (r < 0 || !local || !cgroup_has_leaf(cg)) {
        if (r >= 0)
            *ret = count;
        return r;
    }
    char path[64 + sizeof(CGROUP_LEAF_NAME)];
    snprintf(path, sizeof(path), CGROUP_LEAF_NAME "/memory.events");
    uint64_t leaf = 0;
    if (cgroup_group_read(cg, idx, path, text, sizeof(text), NULL) >= 0)
        (void)cgroup_keyed_get(text, "oom_kill", &leaf);
    *ret = count + leaf;
    return 0;
}

static int oom_watch_open_v1(const Cgroup *cg, int idx, int *ret_fd)
{
    _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    /* The registration keeps no reference to this fd: it may close right after. */
    _cleanup_close_ int ofd = cgroup_group_open(cg, idx, "memory.oom_control", O_RDONLY);
    if (ofd < 0)
        return ofd;
    char value[32];
    snprintf(value, sizeof(value), "%d %d", efd, ofd);
    int r = cgroup_group_write(cg, idx, "cgroup.event_control", value);
    if (r < 0)
        return r;
    *ret_fd = TAKE_FD(efd);
    return 0;
}

static int oom_watch_open_v2(const Cgroup *cg, int idx, int *ret_fd)
{
    /* Opened relative to the parent's fd; inotify then takes the file by its
     * /proc/self/fd link, so no path is walked from the mount. */
    _cleanup_close_ int events = cgroup_group_open(cg, idx, "memory.events", O_RDONLY);
    if (events < 0)
        return events;
    _cleanup_close_ int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd < 0)
        return -errno;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", events);
    if (inotify_add_watch(ifd, path, IN_MODIFY) < 0)
        return -errno;
    *ret_fd = TAKE_FD(ifd);
    return 0;
}

int cgroup_oom_watch_open(const Cgroup *cg, int *ret_fd)
{
    if (!cg || !ret_fd)
        return -EINVAL;
    bool v2;
    int idx = memory_hierarchy(cg, &v2);
    if (idx < 0)
        return idx;
    return v2 ? oom_watch_open_v2(cg, idx, ret_fd) : oom_watch_open_v1(cg, idx, ret_fd);
}

int cgroup_oom_watch_drain(int fd)
{
    if (fd < 0)
        return -EBADF;
    /* One loop for both kinds: an eventfd read returns its 8-byte counter and
     * resets it; an inotify read returns whole events. Both are non-blocking. */
    _Alignas(struct inotify_event) char buf[4096];
    int drained = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            drained = 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -errno;
        return drained;
    }
}
