/* Processes of a cgroup: listing, kill-all, waiting for it to empty, destroy. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#include "cloche/cgroup.h"
#include "cloche/cleanup.h"
#include "cloche/clock.h"
#include "cgroup-internal.h"

#define PROCS_READ_MAX (1u << 20)
#define KILL_ROUNDS 100
#define RMDIR_BUSY_RETRIES 50

/* Milliseconds left before deadline (-1 = none) as a poll() timeout. */
static int remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - clock_monotonic_ms();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

static int list_pids_in(const Cgroup *cg, int idx, pid_t **ret_pids, size_t *ret_count)
{
    _cleanup_close_ int fd = cgroup_group_open(cg, idx, "cgroup.procs", O_RDONLY);
    if (fd < 0)
        return fd;
    size_t cap = 4096, len = 0;
    _cleanup_free_ char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len == cap - 1) {
            if (cap >= PROCS_READ_MAX)
                return -EFBIG;
            char *nbuf = realloc(buf, cap * 2);
            if (!nbuf)
                return -ENOMEM;
            buf = nbuf;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';

    /* One pid per line; the last line may lack its newline. */
    size_t count = len ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        count += buf[i] == '\n';
    _cleanup_free_ pid_t *pids = count ? calloc(count, sizeof(pid_t)) : NULL;
    if (count && !pids)
        return -ENOMEM;
    size_t got = 0;
    for (char *p = buf; *p && got < count;) {
        char *eol = strchrnul(p, '\n');
        uint64_t v;
        if (cgroup_parse_value(p, eol, &v) == 0 && v > 0 && v <= INT32_MAX)
            pids[got++] = (pid_t)v;
        p = *eol ? eol + 1 : eol;
    }
    *ret_pids = got ? TAKE_PTR(pids) : NULL;
    *ret_count = got;
    return 0;
}

int cgroup_list_own_pids(const Cgroup *cg, pid_t **ret_pids, size_t *ret_count)
{
    int idx = cgroup_hierarchy_for(cg->system, CGROUP_CORE);
    if (idx < 0)
        return idx;
    return list_pids_in(cg, idx, ret_pids, ret_count);
}

typedef struct PidList {
    pid_t *pids;
    size_t n;
} PidList;

static int append_child_pids(const Cgroup *child, void *userdata)
{
    PidList *l = userdata;
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    int r = cgroup_list_own_pids(child, &pids, &n);
    if (r == -ENOENT || n == 0)
        return 0;
    if (r < 0)
        return r;
    pid_t *all = realloc(l->pids, (l->n + n) * sizeof(pid_t));
    if (!all)
        return -ENOMEM;
    memcpy(all + l->n, pids, n * sizeof(pid_t));
    l->pids = all;
    l->n += n;
    return 0;
}

int cgroup_list_pids(const Cgroup *cg, pid_t **ret_pids, size_t *ret_count)
{
    PidList l = {0};
    int r = cgroup_list_own_pids(cg, &l.pids, &l.n);
    if (r >= 0)
        r = cgroup_for_each_child(cg, append_child_pids, &l);
    if (r < 0) {
        free(l.pids);
        return r;
    }
    *ret_pids = l.pids;
    *ret_count = l.n;
    return 0;
}

/* Best effort: a frozen group cannot fork while its pids are being signalled. */
static void freeze(const Cgroup *cg, bool on)
{
    const CgroupSystem *s = cg->system;
    if (s->freezer_index >= 0)
        (void)cgroup_group_write(cg, s->freezer_index, "freezer.state", on ? "FROZEN" : "THAWED");
    else if (s->v2_index >= 0 && s->has_freeze)
        (void)cgroup_group_write(cg, s->v2_index, "cgroup.freeze", on ? "1" : "0");
}

/* Without cgroup.kill: signal what cgroup.procs lists until it lists nothing. With a
 * freezer the listed tasks can neither fork nor exit (so no pid is reused) between
 * the listing and the signal; without one this is best effort, as in guardian. */
static int kill_by_listing(const Cgroup *cg, int idx)
{
    for (unsigned round = 0; round < KILL_ROUNDS; round++) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r = list_pids_in(cg, idx, &pids, &n);
        if (r == -ENOENT)
            return 0;
        if (r < 0)
            return r;
        if (n == 0)
            return 0;
        freeze(cg, true);
        free(pids);
        pids = NULL;
        r = list_pids_in(cg, idx, &pids, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
            (void)kill(pids[i], SIGKILL);
        freeze(cg, false);
        cgroup_sleep_us(round < 10 ? 200 : 2000);
    }
    return -EBUSY;
}

int cgroup_kill_all(const Cgroup *cg)
{
    const CgroupSystem *s = cg->system;
    if (s->v2_index >= 0 && s->has_kill) {
        int r = cgroup_group_write(cg, s->v2_index, "cgroup.kill", "1");
        return r == -ENOENT ? 0 : r;
    }
    int idx = cgroup_hierarchy_for(s, CGROUP_CORE);
    if (idx < 0)
        return idx;
    return kill_by_listing(cg, idx);
}

/* 1 if cgroup.events (read from offset 0) says populated, 0 if not. */
static int events_populated(int fd)
{
    char buf[256];
    ssize_t n;
    do
        n = pread(fd, buf, sizeof(buf) - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    uint64_t v;
    int r = cgroup_keyed_get(buf, "populated", &v);
    if (r < 0)
        return r;
    return v != 0;
}

/* The kernel sends at most one cgroup.events notification per 20 ms per group
 * (CGROUP_FILE_NOTIFY_MIN_INTV), so the "populated 0" that follows soon after an
 * attach comes late. The file itself is always current: poll with a short,
 * growing timeout and read again either way. */
static int wait_events(int fd, int64_t deadline)
{
    long delay_us = 50;
    for (;;) {
        int r = events_populated(fd);
        if (r <= 0)
            return r;
        int left = remaining_ms(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        long us = left > 0 && (long)left * 1000 < delay_us ? (long)left * 1000 : delay_us;
        struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
        struct pollfd p = {.fd = fd, .events = POLLPRI};
        if (ppoll(&p, 1, &ts, NULL) < 0 && errno != EINTR)
            return -errno;
        if (delay_us < 20000)
            delay_us *= 2;
    }
}

/* 1 if cgroup.procs lists anything, 0 if empty or gone. */
static int procs_populated(const Cgroup *cg, int idx)
{
    _cleanup_close_ int fd = cgroup_group_open(cg, idx, "cgroup.procs", O_RDONLY);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    char buf[32];
    ssize_t n;
    do
        n = read(fd, buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n > 0;
}

static int wait_procs(const Cgroup *cg, int idx, int64_t deadline)
{
    long delay = 100;
    for (;;) {
        int r = procs_populated(cg, idx);
        if (r <= 0)
            return r;
        int left = remaining_ms(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        long us = left > 0 && (long)left * 1000 < delay ? (long)left * 1000 : delay;
        cgroup_sleep_us(us);
        if (delay < 10000)
            delay *= 2;
    }
}

static int64_t deadline_for(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : clock_monotonic_ms() + timeout_ms;
}

/* cgroup.events of the v2 group, or -ENOTSUP when it cannot be used. */
static int open_events(const Cgroup *cg)
{
    const CgroupSystem *s = cg->system;
    if (s->v2_index < 0 || !s->has_events)
        return -ENOTSUP;
    return cgroup_group_open(cg, s->v2_index, "cgroup.events", O_RDONLY);
}

int cgroup_wait_empty(const Cgroup *cg, int timeout_ms)
{
    int64_t deadline = deadline_for(timeout_ms);
    _cleanup_close_ int fd = open_events(cg);
    if (fd == -ENOENT)
        return 0;
    if (fd >= 0)
        return wait_events(fd, deadline);
    if (fd != -ENOTSUP)
        return fd;
    int idx = cgroup_hierarchy_for(cg->system, CGROUP_CORE);
    if (idx < 0)
        return idx;
    return wait_procs(cg, idx, deadline);
}

static int remove_group_dir(const Cgroup *cg, int idx)
{
    const CgroupSystem *s = cg->system;
    for (unsigned attempt = 0;; attempt++) {
        if (unlinkat(s->hierarchies[idx].parent_fd, cg->name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || attempt >= RMDIR_BUSY_RETRIES)
            return -errno;
        /* A process attached to this hierarchy only (not placed by cloche): kill it
         * here; an exiting task may also linger for a moment. */
        (void)kill_by_listing(cg, idx);
        cgroup_sleep_us(1000);
    }
}

static int destroy_child(const Cgroup *child, void *userdata)
{
    return cgroup_destroy(child, *(int *)userdata);
}

int cgroup_destroy(const Cgroup *cg, int timeout_ms)
{
    const CgroupSystem *s = cg->system;
    /* Peas' groups and the v2 leaf first: a group with children cannot go. */
    int r = cgroup_for_each_child(cg, destroy_child, &timeout_ms);
    if (r < 0)
        return r;
    int64_t deadline = deadline_for(timeout_ms);
    _cleanup_close_ int fd = open_events(cg);
    if (fd >= 0) {
        r = events_populated(fd);
        if (r > 0) {
            r = cgroup_kill_all(cg);
            if (r < 0 && r != -EBUSY)
                return r;
            r = wait_events(fd, deadline);
        }
        if (r < 0)
            return r;
    } else if (fd == -ENOTSUP) {
        int idx = cgroup_hierarchy_for(s, CGROUP_CORE);
        if (idx < 0)
            return idx;
        r = procs_populated(cg, idx);
        if (r > 0) {
            r = cgroup_kill_all(cg);
            if (r < 0 && r != -EBUSY)
                return r;
            r = wait_procs(cg, idx, deadline);
        }
        if (r < 0)
            return r;
    } else if (fd != -ENOENT) {
        return fd;
    }

    /* v1 first, the v2 group (which would still allow cgroup.kill) last. */
    int ret = 0;
    for (size_t i = 0; i < s->n_hierarchies; i++) {
        if ((int)i == s->v2_index)
            continue;
        r = remove_group_dir(cg, (int)i);
        if (r < 0 && ret == 0)
            ret = r;
    }
    if (s->v2_index >= 0) {
        r = remove_group_dir(cg, s->v2_index);
        if (r < 0 && ret == 0)
            ret = r;
    }
    return ret;
}
