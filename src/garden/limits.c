/* Limits: validated at create, applied, and changed live afterwards (the PUT
 * .../limits/KIND extension). What the kernel accepted is what the record keeps and
 * what GET .../limits/KIND returns. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/disk.h"
#include "cloche/log.h"
#include "cloche/testhook.h"
#include "garden-internal.h"

#define MEMORY_MIN (1u << 20)          /* below this not even the init fits */
#define MEMORY_MAX (UINT64_C(1) << 50) /* 1 PiB: anything above is a mistake */
#define SHARES_MAX 262144
#define PIDS_MAX 4194304 /* the kernel's pid_max ceiling */
#define MILLICPUS_MIN 10 /* quota >= 1 ms per 100 ms period */
#define MILLICPUS_MAX 1024000
#define DISK_MIN (1u << 20)
#define DISK_MAX (UINT64_C(1) << 44) /* 16 TiB */
#define BANDWIDTH_MAX 2147483647u    /* bytes/s: what TBF through libnl takes */

int garden_validate_limits(const Limits *l, unsigned kinds, ApiError *reterr)
{
    if (kinds & LIMIT_KIND_MEMORY) {
        uint64_t m = l->memory.limit_in_bytes;
        if (m && (m < MEMORY_MIN || m > MEMORY_MAX))
            return api_bad_request(reterr,
                                   "Invalid memory limit %" PRIu64 ": expected %u..%" PRIu64
                                   " bytes (or 0 for none)",
                                   m, MEMORY_MIN, MEMORY_MAX);
    }
    if (kinds & LIMIT_KIND_CPU) {
        uint64_t shares = l->cpu.weight ? l->cpu.weight : l->cpu.limit_in_shares;
        if (shares > SHARES_MAX)
            return api_bad_request(reterr, "Invalid cpu weight %" PRIu64 ": at most %d", shares,
                                   SHARES_MAX);
        if (l->cpu.millicpus &&
            (l->cpu.millicpus < MILLICPUS_MIN || l->cpu.millicpus > MILLICPUS_MAX))
            return api_bad_request(reterr, "Invalid cpu cap %" PRIu64 " millicpus: expected %d..%d",
                                   l->cpu.millicpus, MILLICPUS_MIN, MILLICPUS_MAX);
    }
    if ((kinds & LIMIT_KIND_PIDS) && l->pid.max > PIDS_MAX)
        return api_bad_request(reterr, "Invalid pid limit %" PRIu64 ": at most %d", l->pid.max,
                               PIDS_MAX);
    if (kinds & LIMIT_KIND_DISK) {
        const DiskLimits *d = &l->disk;
        uint64_t bytes = d->byte_hard ? d->byte_hard : d->byte_soft;
        if (bytes && (bytes < DISK_MIN || bytes > DISK_MAX))
            return api_bad_request(reterr,
                                   "Invalid disk limit %" PRIu64 ": expected %u..%" PRIu64
                                   " bytes (or 0 for none)",
                                   bytes, DISK_MIN, DISK_MAX);
        uint64_t inodes = d->inode_hard ? d->inode_hard : d->inode_soft;
        if (inodes && (inodes < 16 || inodes > (UINT64_C(1) << 32) - 1))
            return api_bad_request(reterr, "Invalid inode limit %" PRIu64, inodes);
        if (inodes && !bytes)
            return api_bad_request(reterr, "An inode limit needs a byte limit too");
    }
    if (kinds & LIMIT_KIND_BANDWIDTH) {
        const BandwidthLimits *b = &l->bandwidth;
        if ((b->rate == 0) != (b->burst == 0))
            return api_bad_request(reterr, "A bandwidth limit needs both 'rate' and 'burst'");
        if (b->rate > BANDWIDTH_MAX || b->burst > BANDWIDTH_MAX)
            return api_bad_request(reterr, "Invalid bandwidth limit: at most %u bytes/s",
                                   BANDWIDTH_MAX);
    }
    return 0;
}

static uint64_t cpu_shares(const CpuLimits *c)
{
    return c->weight ? c->weight : c->limit_in_shares;
}

int garden_apply_cgroup_limits(Container *c, const Limits *l, ApiError *reterr)
{
    CgroupLimits cl = {
        .memory_bytes = l->memory.limit_in_bytes,
        .cpu_shares = cpu_shares(&l->cpu),
        .cpu_quota_us = l->cpu.millicpus ? l->cpu.millicpus * 100 : 0,
        .cpu_period_us = l->cpu.millicpus ? 100000 : 0,
        .pids_max = l->pid.max,
    };
    int r = cgroup_apply_limits(c->cgroup, &cl);
    if (r < 0)
        return api_errorf(reterr, r, r == -EINVAL || r == -EBUSY ? 400 : 500, GARDEN_ERR_GENERIC,
                          "Failed to apply the container's limits: %s", strerror(-r));
    return 0;
}

/* The usable bytes of a disk limit. Scope "total" counts the image as guardian
 * does: what the container may add is the limit minus the image's size. */
int garden_disk_limit(Garden *g, const ContainerRecord *rec, const DiskLimits *d,
                      struct DiskLimit *ret, ApiError *reterr)
{
    uint64_t bytes = d->byte_hard ? d->byte_hard : d->byte_soft;
    uint64_t inodes = d->inode_hard ? d->inode_hard : d->inode_soft;
    *ret = (DiskLimit){.bytes = bytes, .inodes = inodes};
    if (!bytes || d->scope != DISK_SCOPE_TOTAL)
        return 0;
    uint64_t image = 0, image_inodes = 0;
    int r = garden_image_size(g, rec->rootfs, &image, &image_inodes);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to measure the image '%s'", rec->rootfs);
    if (bytes <= image + DISK_MIN)
        return api_bad_request(reterr,
                               "The disk limit %" PRIu64 " leaves no room beside the image "
                               "(%" PRIu64 " bytes) with scope total",
                               bytes, image);
    ret->bytes = bytes - image;
    if (inodes) {
        if (inodes <= image_inodes + 16)
            return api_bad_request(reterr,
                                   "The inode limit %" PRIu64 " leaves no room beside the "
                                   "image (%" PRIu64 " inodes) with scope total",
                                   inodes, image_inodes);
        ret->inodes = inodes - image_inodes;
    }
    return 0;
}

/* Put back what a change set in the kernel, when it cannot be recorded. */
static void limits_revert(Garden *g, Container *c, LimitKind kind, const Limits *old)
{
    int r = 0;
    switch (kind) {
    case LIMIT_KIND_MEMORY:
        r = cgroup_set_memory_limit(c->cgroup, old->memory.limit_in_bytes);
        break;
    case LIMIT_KIND_CPU:
        r = cgroup_set_cpu(c->cgroup, cpu_shares(&old->cpu),
                           old->cpu.millicpus ? old->cpu.millicpus * 100 : 0,
                           old->cpu.millicpus ? 100000 : 0);
        break;
    case LIMIT_KIND_PIDS:
        r = cgroup_set_pids_max(c->cgroup, old->pid.max);
        break;
    case LIMIT_KIND_BANDWIDTH:
        r = garden_net_set_bandwidth(g, c, &old->bandwidth, NULL);
        break;
    default:
        /* A disk image that grew stays grown (ext4 does not shrink online); the
         * record's smaller limit is applied again only by a later change. */
        break;
    }
    if (r < 0)
        log_warn_errno(r, "Container '%s': failed to restore its previous limits: %m",
                       c->rec.handle);
}

/* The event message of a limit change: which kind changed. */
static const char *limit_kind_name(LimitKind kind)
{
    switch (kind) {
    case LIMIT_KIND_MEMORY:
        return "memory";
    case LIMIT_KIND_CPU:
        return "cpu";
    case LIMIT_KIND_PIDS:
        return "pids";
    case LIMIT_KIND_DISK:
        return "disk";
    case LIMIT_KIND_BANDWIDTH:
        return "bandwidth";
    default:
        return NULL;
    }
}

/* A kernel call that refused the change, in words. */
static int limit_failed(ApiError *reterr, const ContainerRecord *rec, int r)
{
    return api_errorf(reterr, r, r == -EINVAL ? 400 : 500, GARDEN_ERR_GENERIC,
                      "Failed to change the limits of '%s': %s", rec->handle, strerror(-r));
}

/* A new disk limit: only for a container created with one, and only larger. */
static int set_disk_limit(Garden *g, const ContainerRecord *rec, const DiskLimits *in,
                          ApiError *reterr)
{
    _cleanup_free_ char *dir = NULL;
    int r = depot_container_path(g->depot, rec->handle, &dir);
    if (r < 0)
        return limit_failed(reterr, rec, r);
    if (disk_is_attached(dir) != 1)
        return api_errorf(reterr, -EOPNOTSUPP, 409, GARDEN_ERR_GENERIC,
                          "Container '%s' was created without a disk limit; its writable "
                          "layer is a plain directory, whose limit cannot be set later",
                          rec->handle);
    DiskLimit dl;
    r = garden_disk_limit(g, rec, in, &dl, reterr);
    if (r < 0)
        return r;
    if (!dl.bytes)
        return api_bad_request(reterr, "A disk limit cannot be removed, only raised");
    r = disk_resize(dir, &dl);
    if (r == -EINVAL)
        return api_bad_request(reterr,
                               "A disk limit can only grow: %" PRIu64 " bytes and %" PRIu64
                               " inodes are below what '%s' has",
                               dl.bytes, dl.inodes, rec->handle);
    return r < 0 ? limit_failed(reterr, rec, r) : 0;
}

/* One kind of limit applied to the live container (c->lock held); *now gets it. */
static int apply_limit(Garden *g, Container *c, LimitKind kind, const Limits *in, Limits *now,
                       ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    int r;
    switch (kind) {
    case LIMIT_KIND_MEMORY:
        r = cgroup_set_memory_limit(c->cgroup, in->memory.limit_in_bytes);
        if (r == -EBUSY)
            return api_errorf(reterr, r, 409, GARDEN_ERR_GENERIC,
                              "Cannot lower the memory limit of '%s' to %" PRIu64
                              " bytes: its usage does not fit and could not be reclaimed",
                              rec->handle, in->memory.limit_in_bytes);
        now->memory = in->memory;
        break;
    case LIMIT_KIND_CPU:
        r = cgroup_set_cpu(c->cgroup, cpu_shares(&in->cpu),
                           in->cpu.millicpus ? in->cpu.millicpus * 100 : 0,
                           in->cpu.millicpus ? 100000 : 0);
        now->cpu = in->cpu;
        break;
    case LIMIT_KIND_PIDS:
        r = cgroup_set_pids_max(c->cgroup, in->pid.max);
        now->pid = in->pid;
        break;
    case LIMIT_KIND_DISK:
        if ((r = set_disk_limit(g, rec, &in->disk, reterr)) < 0)
            return r;
        now->disk = in->disk;
        break;
    case LIMIT_KIND_BANDWIDTH:
        if ((r = garden_net_set_bandwidth(g, c, &in->bandwidth, reterr)) < 0)
            return r;
        now->bandwidth = in->bandwidth;
        break;
    default:
        return api_bad_request(reterr, "Unknown limit kind");
    }
    return r < 0 ? limit_failed(reterr, rec, r) : 0;
}

int container_set_limits(Garden *g, Container *c, LimitKind kind, const Limits *in,
                         ApiError *reterr)
{
    int r = garden_validate_limits(in, kind, reterr);
    if (r < 0)
        return r;
    r = state_op_begin(c, PHASES_RUNNING, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    ContainerRecord *rec = &c->rec;
    Limits now = rec->spec.limits;
    const Limits old = rec->spec.limits;
    if (!c->cgroup)
        r = api_errorf(reterr, -ESRCH, 409, GARDEN_ERR_GENERIC, "Container '%s' is not running",
                       rec->handle);
    else
        r = apply_limit(g, c, kind, in, &now, reterr);
    if (r >= 0) {
        testhook_point("limits.applied");
        rec->spec.limits = now;
        r = testhook_fault("limits.record") ? -EIO : garden_persist(g, c);
        if (r < 0) {
            rec->spec.limits = old;
            limits_revert(g, c, kind, &old);
            api_internal_error(reterr, r, "Failed to persist the limits");
        } else {
            garden_event_emit(g, "limits_changed", rec->handle, NULL, -1, limit_kind_name(kind));
        }
    }
    pthread_mutex_unlock(&c->lock);
    state_op_end(c);
    return r;
}

int garden_image_size(Garden *g, const char *path, uint64_t *ret_bytes, uint64_t *ret_inodes)
{
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n_image_sizes; i++)
        if (strcmp(g->image_sizes[i].path, path) == 0) {
            *ret_bytes = g->image_sizes[i].bytes;
            *ret_inodes = g->image_sizes[i].inodes;
            pthread_mutex_unlock(&g->lock);
            return 0;
        }
    pthread_mutex_unlock(&g->lock);
    DiskUsage u = {0};
    /* An image's layer stack ("top:...:bottom"): the sum of its layers. */
    _cleanup_free_ char *dirs = strdup(path);
    char *save = NULL;
    for (char *d = dirs ? strtok_r(dirs, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
        DiskUsage one;
        int r = disk_tree_usage(d, &one);
        if (r < 0)
            return r;
        u.bytes_used += one.bytes_used;
        u.inodes_used += one.inodes_used;
    }
    if (!dirs)
        return -ENOMEM;
    pthread_mutex_lock(&g->lock);
    struct ImageSize *grown =
        realloc(g->image_sizes, (g->n_image_sizes + 1) * sizeof(struct ImageSize));
    if (grown) {
        g->image_sizes = grown;
        char *copy = strdup(path);
        if (copy)
            g->image_sizes[g->n_image_sizes++] =
                (struct ImageSize){.path = copy, .bytes = u.bytes_used, .inodes = u.inodes_used};
    }
    pthread_mutex_unlock(&g->lock);
    *ret_bytes = u.bytes_used;
    *ret_inodes = u.inodes_used;
    return 0;
}
