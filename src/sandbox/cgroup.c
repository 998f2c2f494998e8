/* Cgroups through cgroupfs directly: cloche's parent group in each hierarchy and
 * per-container groups with their limits. Every group file is reached with openat()
 * relative to an O_PATH fd of the parent kept open for the life of the system, so a
 * write costs open+write+close and no path walk from the root. Detection lives in
 * cgroup-detect.c, processes (kill, wait, destroy) in cgroup-procs.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "cloche/cgroup.h"
#include "cloche/cleanup.h"
#include "cgroup-internal.h"

/* The v1 controllers every setup needs; v2 enables the same minus cpuacct (v2's
 * cpu.stat carries usage). */
static const CgroupController needed_v1[] = {
    CGROUP_CONTROLLER_MEMORY,
    CGROUP_CONTROLLER_CPU,
    CGROUP_CONTROLLER_CPUACCT,
    CGROUP_CONTROLLER_PIDS,
};
static const CgroupController needed_v2[] = {
    CGROUP_CONTROLLER_CPU,
    CGROUP_CONTROLLER_MEMORY,
    CGROUP_CONTROLLER_PIDS,
};
#define V2_SUBTREE_ENABLE "+cpu +memory +pids"

void cgroup_sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- the system --------------------------------------------------------- */

static bool valid_component(const char *s, size_t len)
{
    if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool valid_parent(const char *parent)
{
    size_t len = parent ? strlen(parent) : 0;
    if (len == 0 || len > PARENT_MAX || parent[0] == '/')
        return false;
    for (const char *p = parent;;) {
        size_t clen = strcspn(p, "/");
        if (!valid_component(p, clen))
            return false;
        if (!p[clen])
            return true;
        p += clen + 1;
    }
}

static bool valid_group_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    return len > 0 && len <= GROUP_NAME_MAX && name[0] != '.' && !strchr(name, '/') &&
           valid_component(name, len);
}

CgroupSystem *cgroup_system_free(CgroupSystem *s)
{
    if (!s)
        return NULL;
    for (int i = 0; i < 2; i++)
        closep(&s->device_progs[i]);
    for (size_t i = 0; i < s->n_hierarchies; i++) {
        closep(&s->hierarchies[i].up_fd);
        closep(&s->hierarchies[i].parent_fd);
        free(s->hierarchies[i].mount);
    }
    free(s->parent);
    free(s);
    return NULL;
}

static int add_hierarchy(CgroupSystem *s, const char *mount, unsigned bits, bool v2)
{
    for (size_t i = 0; i < s->n_hierarchies; i++)
        if (s->hierarchies[i].v2 == v2 && strcmp(s->hierarchies[i].mount, mount) == 0) {
            s->hierarchies[i].controllers |= bits;
            return (int)i;
        }
    if (s->n_hierarchies == HIERARCHY_MAX)
        return -E2BIG;
    Hierarchy *h = &s->hierarchies[s->n_hierarchies];
    *h = (Hierarchy){.up_fd = -EBADF, .parent_fd = -EBADF, .controllers = bits, .v2 = v2};
    h->mount = strdup(mount);
    if (!h->mount)
        return -ENOMEM;
    return (int)s->n_hierarchies++;
}

/* Open the mount, check what it is, and make (or find) the parent directory. */
static int setup_hierarchy(CgroupSystem *s, Hierarchy *h, const char *up_path)
{
    _cleanup_close_ int mount_fd = open(h->mount, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (mount_fd < 0)
        return -errno;
    struct statfs st;
    if (fstatfs(mount_fd, &st) < 0)
        return -errno;
    if (st.f_type != CGROUP_SUPER_MAGIC && st.f_type != CGROUP2_SUPER_MAGIC)
        s->plain_files = true;
    if (!h->v2 && (h->controllers & CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_MEMORY)))
        s->memsw = faccessat(mount_fd, "memory.memsw.limit_in_bytes", F_OK, 0) == 0;

    h->up_fd = openat(mount_fd, up_path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (h->up_fd < 0)
        return -errno;
    if (mkdirat(h->up_fd, s->parent_base, 0755) == 0)
        h->created = true;
    else if (errno != EEXIST)
        return -errno;
    h->parent_fd = openat(h->up_fd, s->parent_base, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (h->parent_fd < 0)
        return -errno;
    return 0;
}

static int write_at(const CgroupSystem *s, int dirfd, const char *path, const char *value)
{
    int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW;
    if (s->plain_files)
        flags |= O_CREAT | O_TRUNC;
    _cleanup_close_ int fd = openat(dirfd, path, flags, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

/* The controllers of the v2 hierarchy that the parent's parent hands down. */
static int check_v2_available(const CgroupSystem *s, const char *up_path, const char **ret_missing)
{
    const Hierarchy *h = &s->hierarchies[s->v2_index];
    _cleanup_close_ int mount_fd = open(h->mount, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (mount_fd < 0)
        return -errno;
    char path[PARENT_MAX + 64], buf[512];
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", up_path);
    int r = cgroup_read_at(mount_fd, path, buf, sizeof(buf), NULL);
    if (r < 0)
        return r;
    unsigned bits = cgroup_controller_bits(buf);
    for (size_t i = 0; i < ELEMENTSOF(needed_v2); i++)
        if (!(bits & CGROUP_CONTROLLER_BIT(needed_v2[i]))) {
            if (ret_missing)
                *ret_missing = cgroup_controller_names[needed_v2[i]];
            return -ENODEV;
        }
    return 0;
}

static void rollback_setup(CgroupSystem *s)
{
    for (size_t i = s->n_hierarchies; i-- > 0;) {
        Hierarchy *h = &s->hierarchies[i];
        if (h->created && h->up_fd >= 0)
            (void)unlinkat(h->up_fd, s->parent_base, AT_REMOVEDIR);
        h->created = false;
    }
}

static int setup_all(CgroupSystem *s, const CgroupMounts *m, const char **ret_missing)
{
    if (m->layout == CGROUP_LAYOUT_NONE)
        return -ENODEV;
    if (m->layout == CGROUP_LAYOUT_V1 || m->layout == CGROUP_LAYOUT_HYBRID) {
        for (size_t i = 0; i < ELEMENTSOF(needed_v1); i++) {
            CgroupController c = needed_v1[i];
            if (!m->v1[c]) {
                if (ret_missing)
                    *ret_missing = cgroup_controller_names[c];
                return -ENODEV;
            }
            int idx = add_hierarchy(s, m->v1[c], CGROUP_CONTROLLER_BIT(c), false);
            if (idx < 0)
                return idx;
            s->index[c] = idx;
        }
        s->index[CGROUP_CORE] = s->index[CGROUP_CONTROLLER_MEMORY];
        /* The device allow-list, where the host has the v1 controller. */
        if (m->v1[CGROUP_CONTROLLER_DEVICES]) {
            int idx = add_hierarchy(s, m->v1[CGROUP_CONTROLLER_DEVICES],
                                    CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_DEVICES), false);
            if (idx < 0)
                return idx;
            s->index[CGROUP_CONTROLLER_DEVICES] = idx;
        }
        /* Only pure v1 needs the freezer: to kill without cgroup.kill. */
        if (m->layout == CGROUP_LAYOUT_V1 && m->v1[CGROUP_CONTROLLER_FREEZER]) {
            int idx = add_hierarchy(s, m->v1[CGROUP_CONTROLLER_FREEZER],
                                    CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_FREEZER), false);
            if (idx < 0)
                return idx;
            s->index[CGROUP_CONTROLLER_FREEZER] = s->freezer_index = idx;
        }
    }
    if (m->layout == CGROUP_LAYOUT_V2 || m->layout == CGROUP_LAYOUT_HYBRID) {
        if (!m->v2)
            return -ENODEV;
        int idx = add_hierarchy(s, m->v2, 0, true);
        if (idx < 0)
            return idx;
        s->v2_index = s->index[CGROUP_CORE] = idx;
        if (m->layout == CGROUP_LAYOUT_V2)
            for (size_t i = 0; i < ELEMENTSOF(needed_v1); i++) {
                s->index[needed_v1[i]] = idx;
                s->hierarchies[idx].controllers |= CGROUP_CONTROLLER_BIT(needed_v1[i]);
            }
    }

    /* The parent's parent: "." for a parent at the root. */
    char up_path[PARENT_MAX + 1];
    const char *slash = strrchr(s->parent, '/');
    if (slash)
        snprintf(up_path, sizeof(up_path), "%.*s", (int)(slash - s->parent), s->parent);
    else
        strcpy(up_path, ".");

    /* Check before creating anything, so a refusal leaves no trace. */
    if (m->layout == CGROUP_LAYOUT_V2) {
        int r = check_v2_available(s, up_path, ret_missing);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < s->n_hierarchies; i++) {
        int r = setup_hierarchy(s, &s->hierarchies[i], up_path);
        if (r < 0)
            return r;
    }
    if (s->v2_index >= 0) {
        const Hierarchy *h = &s->hierarchies[s->v2_index];
        if (m->layout == CGROUP_LAYOUT_V2) {
            /* Our own parent's subtree_control, never the root's. */
            int r = write_at(s, h->parent_fd, "cgroup.subtree_control", V2_SUBTREE_ENABLE);
            if (r < 0)
                return r;
        }
        /* Core files exist in every non-root group, so the parent shows them. */
        s->has_kill = faccessat(h->parent_fd, "cgroup.kill", F_OK, 0) == 0;
        s->has_events = !s->plain_files && faccessat(h->parent_fd, "cgroup.events", F_OK, 0) == 0;
        s->has_freeze = faccessat(h->parent_fd, "cgroup.freeze", F_OK, 0) == 0;
    }
    return 0;
}

int cgroup_system_setup(const CgroupMounts *mounts, const char *parent, CgroupSystem **ret,
                        const char **ret_missing_controller)
{
    if (!mounts || !ret)
        return -EINVAL;
    if (!valid_parent(parent))
        return -EINVAL;
    _cleanup_cgroup_system_ CgroupSystem *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->device_progs[0] = s->device_progs[1] = -EBADF;
    s->layout = mounts->layout;
    s->v2_index = s->freezer_index = -1;
    for (size_t i = 0; i < ELEMENTSOF(s->index); i++)
        s->index[i] = -1;
    s->parent = strdup(parent);
    if (!s->parent)
        return -ENOMEM;
    const char *slash = strrchr(s->parent, '/');
    s->parent_base = slash ? slash + 1 : s->parent;

    int r = setup_all(s, mounts, ret_missing_controller);
    if (r < 0) {
        rollback_setup(s);
        return r;
    }
    *ret = TAKE_PTR(s);
    return 0;
}

CgroupLayout cgroup_system_layout(const CgroupSystem *system)
{
    return system->layout;
}

int cgroup_hierarchy_for(const CgroupSystem *s, CgroupController controller)
{
    if ((unsigned)controller > CGROUP_CORE || s->index[controller] < 0)
        return -ENODEV;
    return s->index[controller];
}

int cgroup_system_path(const CgroupSystem *system, CgroupController controller, const char *name,
                       char *buf, size_t size)
{
    int idx = cgroup_hierarchy_for(system, controller);
    if (idx < 0)
        return idx;
    int n = snprintf(buf, size, "%s/%s%s%s", system->hierarchies[idx].mount, system->parent,
                     name ? "/" : "", name ? name : "");
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int cgroup_system_remove_parent(const CgroupSystem *system)
{
    int ret = 0;
    for (size_t i = 0; i < system->n_hierarchies; i++) {
        const Hierarchy *h = &system->hierarchies[i];
        if (unlinkat(h->up_fd, system->parent_base, AT_REMOVEDIR) < 0 && errno != ENOENT &&
            ret == 0)
            ret = -errno;
    }
    return ret;
}

/* ---- groups ------------------------------------------------------------- */

static Cgroup *cgroup_new(const CgroupSystem *system, const char *name)
{
    size_t len = strlen(name);
    Cgroup *cg = malloc(sizeof(Cgroup) + len + 1);
    if (!cg)
        return NULL;
    cg->system = system;
    memcpy(cg->name, name, len + 1);
    return cg;
}

Cgroup *cgroup_free(Cgroup *cgroup)
{
    free(cgroup);
    return NULL;
}

const char *cgroup_name(const Cgroup *cgroup)
{
    return cgroup->name;
}

int cgroup_create(const CgroupSystem *system, const char *name, Cgroup **ret)
{
    if (!system || !ret || !valid_group_name(name))
        return -EINVAL;
    _cleanup_cgroup_ Cgroup *cg = cgroup_new(system, name);
    if (!cg)
        return -ENOMEM;
    for (size_t i = 0; i < system->n_hierarchies; i++) {
        if (mkdirat(system->hierarchies[i].parent_fd, name, 0755) == 0)
            continue;
        int r = -errno;
        while (i-- > 0)
            (void)unlinkat(system->hierarchies[i].parent_fd, name, AT_REMOVEDIR);
        return r;
    }
    *ret = TAKE_PTR(cg);
    return 0;
}

int cgroup_open_existing(const CgroupSystem *system, const char *name, Cgroup **ret)
{
    if (!system || !ret || !valid_group_name(name))
        return -EINVAL;
    size_t found = 0;
    for (size_t i = 0; i < system->n_hierarchies; i++) {
        struct stat st;
        if (fstatat(system->hierarchies[i].parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
            found++;
        } else if (errno != ENOENT) {
            return -errno;
        }
    }
    if (found == 0)
        return -ENOENT;
    Cgroup *cg = cgroup_new(system, name);
    if (!cg)
        return -ENOMEM;
    *ret = cg;
    return 0;
}

int cgroup_group_open(const Cgroup *cg, int idx, const char *file, int flags)
{
    char path[REL_PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", cg->name, file);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    const CgroupSystem *s = cg->system;
    if ((flags & O_ACCMODE) != O_RDONLY && s->plain_files)
        flags |= O_CREAT | O_TRUNC;
    int fd = openat(s->hierarchies[idx].parent_fd, path, flags | O_CLOEXEC | O_NOFOLLOW, 0644);
    return fd < 0 ? -errno : fd;
}

int cgroup_group_write(const Cgroup *cg, int idx, const char *file, const char *value)
{
    _cleanup_close_ int fd = cgroup_group_open(cg, idx, file, O_WRONLY);
    if (fd < 0)
        return fd;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

int cgroup_group_read(const Cgroup *cg, int idx, const char *file, char *buf, size_t size,
                      size_t *ret_len)
{
    _cleanup_close_ int fd = cgroup_group_open(cg, idx, file, O_RDONLY);
    if (fd < 0)
        return fd;
    return cgroup_read_fd(fd, buf, size, ret_len);
}

int cgroup_group_read_stat(const Cgroup *cg, int idx, const char *file, char *buf, size_t size,
                           size_t *ret_len)
{
    if (size < 2)
        return -ENOBUFS;
    _cleanup_close_ int fd = cgroup_group_open(cg, idx, file, O_RDONLY);
    if (fd < 0)
        return fd;
    ssize_t n;
    do
        n = read(fd, buf, size - 1);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if ((size_t)n == size - 1) /* may have been cut: read it the long way */
        return cgroup_group_read(cg, idx, file, buf, size, ret_len);
    buf[n] = '\0';
    if (ret_len)
        *ret_len = (size_t)n;
    return 0;
}

int cgroup_group_read_u64(const Cgroup *cg, int idx, const char *file, uint64_t *ret)
{
    char buf[64];
    size_t len;
    int r = cgroup_group_read_stat(cg, idx, file, buf, sizeof(buf), &len);
    if (r < 0)
        return r;
    return cgroup_parse_value(buf, buf + len, ret);
}

/* ---- limits ------------------------------------------------------------- */

uint64_t cgroup_cpu_shares_to_weight(uint64_t shares)
{
    if (shares == 0)
        return 0;
    if (shares < 2)
        shares = 2;
    if (shares > 262144)
        shares = 262144;
    return 1 + ((shares - 2) * 9999) / 262142;
}

/* The smallest shares value whose weight is `weight`. */
static uint64_t weight_to_shares(uint64_t weight)
{
    if (weight == 0)
        return 0;
    return 2 + ((weight - 1) * 262142 + 9998) / 9999;
}

int cgroup_set_memory_limit(const Cgroup *cg, uint64_t bytes)
{
    const CgroupSystem *s = cg->system;
    int idx = cgroup_hierarchy_for(s, CGROUP_CONTROLLER_MEMORY);
    if (idx < 0)
        return idx;
    char value[32];
    if (s->hierarchies[idx].v2) {
        if (bytes)
            snprintf(value, sizeof(value), "%" PRIu64, bytes);
        int r = cgroup_group_write(cg, idx, "memory.max", bytes ? value : "max");
        if (r < 0)
            return r;
        /* No swap beyond the limit (as guardian). Absent without swap accounting. */
        r = cgroup_group_write(cg, idx, "memory.swap.max", bytes ? "0" : "max");
        return r == -ENOENT ? 0 : r;
    }

    if (bytes)
        snprintf(value, sizeof(value), "%" PRIu64, bytes);
    else
        strcpy(value, "-1");
    int r = cgroup_group_write(cg, idx, "memory.limit_in_bytes", value);
    if (!s->memsw)
        return r;
    if (r == -EINVAL) {
        /* Raising above the current memsw limit: the kernel wants memsw first. */
        r = cgroup_group_write(cg, idx, "memory.memsw.limit_in_bytes", value);
        if (r < 0)
            return r;
        return cgroup_group_write(cg, idx, "memory.limit_in_bytes", value);
    }
    if (r < 0)
        return r;
    return cgroup_group_write(cg, idx, "memory.memsw.limit_in_bytes", value);
}

/* Write a CPU bandwidth file unless it already says value: every write of one
 * walks the kernel's whole tree of task groups (__cfs_schedulable), a cost that
 * grows with the number of containers; a read does not. */
static int write_bandwidth(const Cgroup *cg, int idx, const char *file, const char *value)
{
    char cur[64];
    size_t len = 0;
    if (cgroup_group_read(cg, idx, file, cur, sizeof(cur), &len) == 0) {
        while (len > 0 && (cur[len - 1] == '\n' || cur[len - 1] == ' '))
            len--;
        if (len == strlen(value) && memcmp(cur, value, len) == 0)
            return 0;
    }
    return cgroup_group_write(cg, idx, file, value);
}

int cgroup_set_cpu(const Cgroup *cg, uint64_t shares, uint64_t quota_us, uint64_t period_us)
{
    if (quota_us != 0 && (quota_us < 1000 || quota_us > INT64_MAX))
        return -EINVAL;
    if (period_us == 0)
        period_us = 100000;
    else if (period_us < 1000 || period_us > 1000000)
        return -EINVAL;
    const CgroupSystem *s = cg->system;
    int idx = cgroup_hierarchy_for(s, CGROUP_CONTROLLER_CPU);
    if (idx < 0)
        return idx;
    char value[64];
    int r;
    if (s->hierarchies[idx].v2) {
        uint64_t weight = shares ? cgroup_cpu_shares_to_weight(shares) : 100;
        snprintf(value, sizeof(value), "%" PRIu64, weight);
        r = cgroup_group_write(cg, idx, "cpu.weight", value);
        if (r < 0)
            return r;
        if (quota_us)
            snprintf(value, sizeof(value), "%" PRIu64 " %" PRIu64, quota_us, period_us);
        else
            snprintf(value, sizeof(value), "max %" PRIu64, period_us);
        return write_bandwidth(cg, idx, "cpu.max", value);
    }

    if (shares == 0)
        shares = 1024;
    else if (shares < 2)
        shares = 2;
    else if (shares > 262144)
        shares = 262144;
    snprintf(value, sizeof(value), "%" PRIu64, shares);
    r = cgroup_group_write(cg, idx, "cpu.shares", value);
    if (r < 0)
        return r;
    if (!quota_us)
        return write_bandwidth(cg, idx, "cpu.cfs_quota_us", "-1");
    snprintf(value, sizeof(value), "%" PRIu64, period_us);
    r = write_bandwidth(cg, idx, "cpu.cfs_period_us", value);
    if (r < 0)
        return r;
    snprintf(value, sizeof(value), "%" PRIu64, quota_us);
    return write_bandwidth(cg, idx, "cpu.cfs_quota_us", value);
}

int cgroup_set_pids_max(const Cgroup *cg, uint64_t max)
{
    int idx = cgroup_hierarchy_for(cg->system, CGROUP_CONTROLLER_PIDS);
    if (idx < 0)
        return idx;
    char value[32];
    if (max)
        snprintf(value, sizeof(value), "%" PRIu64, max);
    return cgroup_group_write(cg, idx, "pids.max", max ? value : "max");
}

int cgroup_apply_limits(const Cgroup *cg, const CgroupLimits *limits)
{
    int r = cgroup_set_memory_limit(cg, limits->memory_bytes);
    if (r < 0)
        return r;
    r = cgroup_set_cpu(cg, limits->cpu_shares, limits->cpu_quota_us, limits->cpu_period_us);
    if (r < 0)
        return r;
    return cgroup_set_pids_max(cg, limits->pids_max);
}

/* v1 reports "no limit" as the page-rounded LONG_MAX; no host has 2^62 bytes. */
static uint64_t unlimited_to_zero(uint64_t v, uint64_t threshold)
{
    return v >= threshold ? 0 : v;
}

int cgroup_get_limits(const Cgroup *cg, CgroupLimits *ret)
{
    const CgroupSystem *s = cg->system;
    CgroupLimits l = {0};
    int mem = cgroup_hierarchy_for(s, CGROUP_CONTROLLER_MEMORY);
    int cpu = cgroup_hierarchy_for(s, CGROUP_CONTROLLER_CPU);
    int pids = cgroup_hierarchy_for(s, CGROUP_CONTROLLER_PIDS);
    if (mem < 0 || cpu < 0 || pids < 0)
        return -ENODEV;
    uint64_t v;
    int r;
    if (s->hierarchies[mem].v2) {
        r = cgroup_group_read_u64(cg, mem, "memory.max", &v);
        if (r < 0)
            return r;
        l.memory_bytes = unlimited_to_zero(v, UINT64_MAX);
    } else {
        r = cgroup_group_read_u64(cg, mem, "memory.limit_in_bytes", &v);
        if (r < 0)
            return r;
        l.memory_bytes = unlimited_to_zero(v, UINT64_C(1) << 62);
    }

    if (s->hierarchies[cpu].v2) {
        r = cgroup_group_read_u64(cg, cpu, "cpu.weight", &l.cpu_weight);
        if (r < 0)
            return r;
        l.cpu_shares = weight_to_shares(l.cpu_weight);
        char buf[64];
        size_t len;
        r = cgroup_group_read(cg, cpu, "cpu.max", buf, sizeof(buf), &len);
        if (r < 0)
            return r;
        char *sp = memchr(buf, ' ', len);
        if (!sp)
            return -EINVAL;
        r = cgroup_parse_value(buf, sp, &v);
        if (r < 0)
            return r;
        l.cpu_quota_us = unlimited_to_zero(v, UINT64_MAX);
        r = cgroup_parse_value(sp + 1, buf + len, &l.cpu_period_us);
        if (r < 0)
            return r;
    } else {
        r = cgroup_group_read_u64(cg, cpu, "cpu.shares", &l.cpu_shares);
        if (r < 0)
            return r;
        l.cpu_weight = cgroup_cpu_shares_to_weight(l.cpu_shares);
        r = cgroup_group_read_u64(cg, cpu, "cpu.cfs_quota_us", &v);
        if (r < 0)
            return r;
        l.cpu_quota_us = unlimited_to_zero(v, UINT64_MAX);
        r = cgroup_group_read_u64(cg, cpu, "cpu.cfs_period_us", &l.cpu_period_us);
        if (r < 0)
            return r;
    }

    r = cgroup_group_read_u64(cg, pids, "pids.max", &v);
    if (r < 0)
        return r;
    l.pids_max = unlimited_to_zero(v, UINT64_MAX);
    *ret = l;
    return 0;
}

/* ---- processes ---------------------------------------------------------- */

int cgroup_attach(const Cgroup *cg, pid_t pid, unsigned flags)
{
    if (pid <= 0)
        return -EINVAL;
    char value[16];
    snprintf(value, sizeof(value), "%d", (int)pid);
    const CgroupSystem *s = cg->system;
    for (size_t i = 0; i < s->n_hierarchies; i++) {
        if (s->hierarchies[i].v2 ? (flags & CGROUP_ATTACH_SKIP_V2)
                                 : (flags & CGROUP_ATTACH_SKIP_V1))
            continue;
        /* Pure v2 with peas' groups: the container's processes live in its leaf. */
        bool leaf = s->hierarchies[i].v2 && cgroup_has_leaf(cg);
        int r = cgroup_group_write(cg, (int)i,
                                   leaf ? CGROUP_LEAF_NAME "/cgroup.procs" : "cgroup.procs", value);
        if (r < 0)
            return r;
    }
    return 0;
}

int cgroup_open_v1_tasks(const Cgroup *cg, int *fds, size_t size, size_t *ret_n)
{
    const CgroupSystem *s = cg->system;
    size_t n = 0;
    for (size_t i = 0; i < s->n_hierarchies && !s->plain_files; i++) {
        if (s->hierarchies[i].v2)
            continue;
        int fd = n < size ? cgroup_group_open(cg, (int)i, "tasks", O_WRONLY) : -ENOBUFS;
        if (fd < 0) {
            while (n > 0)
                close(fds[--n]);
            return fd;
        }
        fds[n++] = fd;
    }
    *ret_n = n;
    return 0;
}

int cgroup_open_v2_fd(const Cgroup *cg)
{
    const CgroupSystem *s = cg->system;
    if (s->v2_index < 0)
        return -ENOENT;
    char leaf[REL_PATH_MAX];
    if (cgroup_has_leaf(cg))
        snprintf(leaf, sizeof(leaf), "%s/" CGROUP_LEAF_NAME, cg->name);
    int fd = openat(s->hierarchies[s->v2_index].parent_fd, cgroup_has_leaf(cg) ? leaf : cg->name,
                    O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? -errno : fd;
}

/* ---- reads for metrics -------------------------------------------------- */

int cgroup_read_file(const Cgroup *cg, CgroupController controller, const char *file, char *buf,
                     size_t size, size_t *ret_len)
{
    if (!file || !*file || strchr(file, '/') || !buf)
        return -EINVAL;
    int idx = cgroup_hierarchy_for(cg->system, controller);
    if (idx < 0)
        return idx;
    return cgroup_group_read(cg, idx, file, buf, size, ret_len);
}

int cgroup_read_u64(const Cgroup *cg, CgroupController controller, const char *file, uint64_t *ret)
{
    char buf[64];
    size_t len;
    int r = cgroup_read_file(cg, controller, file, buf, sizeof(buf), &len);
    if (r < 0)
        return r;
    return cgroup_parse_value(buf, buf + len, ret);
}
