/* Metrics of one container, read from cgroup files, statfs and netlink: no
 * processes are started, and nothing here takes the registry lock, so a bulk
 * request never waits for one slow container. */
#include <errno.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "cloche/log.h"
#include "cloche/clock.h"
#include "garden-internal.h"

#define DEFAULT_SHARES 1024
#define DISK_WALK_CACHE_NS (10 * 1000000000LL) /* bulk calls: walks at most this old */
/* ... or, while the sampler refreshes every walk in the background
 * (garden_disk_refresh), this old: a bulk call then walks no tree. */
#define DISK_WALK_REFRESHED_NS (120 * 1000000000LL)

/* guardian's default: cores * 100 / total memory in MiB, in percent per share.
 * Computed once: sysconf reads /sys on every call. */
static double per_share;
static pthread_once_t per_share_once = PTHREAD_ONCE_INIT;

static void compute_per_share(void)
{
    struct sysinfo si;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (sysinfo(&si) < 0 || cores <= 0)
        return;
    double mib = (double)si.totalram * si.mem_unit / (1024.0 * 1024.0);
    per_share = mib > 0 ? (double)cores * 100.0 / mib : 0;
}

static double entitlement_per_share(void)
{
    pthread_once(&per_share_once, compute_per_share);
    return per_share;
}

/* Usage of the writable layer. A disk-limited one is a statfs; a plain directory
 * is a walk of the tree, which bulk calls may take from a recent one. */
static void writable_usage(Garden *g, Container *c, bool plain, bool may_cache, DiskUsage *ret)
{
    *ret = (DiskUsage){0};
    int64_t now = clock_monotonic_ns();
    if (plain && may_cache) {
        int64_t max_age = g->sampler_started ? DISK_WALK_REFRESHED_NS : DISK_WALK_CACHE_NS;
        pthread_mutex_lock(&c->lock);
        bool fresh = c->disk_walked_ns && now - c->disk_walked_ns < max_age;
        if (fresh)
            *ret = c->disk_walked;
        pthread_mutex_unlock(&c->lock);
        if (fresh)
            return;
    }
    _cleanup_free_ char *dir = NULL;
    if (depot_container_path(g->depot, container_handle(c), &dir) < 0 || disk_usage(dir, ret) < 0)
        return;
    if (plain) {
        pthread_mutex_lock(&c->lock);
        c->disk_walked = *ret;
        c->disk_walked_ns = now;
        pthread_mutex_unlock(&c->lock);
    }
}

void garden_disk_refresh(Garden *g, Container *c, int64_t older_than_ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    pthread_mutex_lock(&c->lock);
    bool plain = !c->rec.spec.limits.disk.byte_hard && !c->rec.spec.limits.disk.byte_soft;
    bool due = plain && !c->restoring &&
               (PHASE_MASK(c->phase) & (PHASES_RUNNING | PHASE_MASK(PHASE_STOPPING))) &&
               (!c->disk_walked_ns || now - c->disk_walked_ns >= older_than_ns);
    pthread_mutex_unlock(&c->lock);
    if (due) {
        DiskUsage u;
        writable_usage(g, c, true, false, &u);
    }
}

int container_metrics(Garden *g, Container *c, bool may_cache, ContainerMetrics *ret)
{
    *ret = (ContainerMetrics){0};
    /* A container being created is measured once it exists; one being destroyed
     * is not (-ESRCH). */
    if (state_op_begin(c, PHASES_RUNNING | PHASE_MASK(PHASE_STOPPING), NULL) < 0)
        return -ESRCH;
    state_op_end(c);
    pthread_mutex_lock(&c->lock);
    Cgroup *cg = c->cgroup;
    int64_t created = c->rec.created_at_ns;
    uint64_t shares = c->rec.spec.limits.cpu.weight ? c->rec.spec.limits.cpu.weight
                                                    : c->rec.spec.limits.cpu.limit_in_shares;
    char host_if[32] = "";
    if (c->rec.net.id)
        garden_net_host_if(g, &c->rec.net, host_if, sizeof(host_if));
    _cleanup_free_ char *rootfs = c->rec.rootfs ? strdup(c->rec.rootfs) : NULL;
    bool plain = !c->rec.spec.limits.disk.byte_hard && !c->rec.spec.limits.disk.byte_soft;
    bool gone =
        c->phase == PHASE_CREATING || c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE;
    pthread_mutex_unlock(&c->lock);
    /* cg stays valid while we hold our reference, even if a destroy removes the
     * groups now: the reads then fail. */
    if (!cg || gone)
        return -ESRCH;

    int r = garden_cgroup_stats(cg, ret);
    if (r < 0) {
        /* The groups went with a destroy that started after the check above. */
        pthread_mutex_lock(&c->lock);
        bool destroyed = c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE;
        pthread_mutex_unlock(&c->lock);
        return destroyed ? -ESRCH : r;
    }

    DiskUsage u;
    writable_usage(g, c, plain, may_cache, &u);
    ret->disk_exclusive_bytes = u.bytes_used;
    ret->disk_exclusive_inodes = u.inodes_used;
    uint64_t image_bytes = 0, image_inodes = 0;
    if (rootfs)
        (void)garden_image_size(g, rootfs, &image_bytes, &image_inodes);
    ret->disk_total_bytes = ret->disk_exclusive_bytes + image_bytes;
    ret->disk_total_inodes = ret->disk_exclusive_inodes + image_inodes;

    if (*host_if && g->netdev) {
        NetDevStats s;
        int k = may_cache ? garden_net_stats_cached(g, host_if, &s)
                          : netdev_stats(g->netdev, host_if, &s);
        if (k == 0) {
            /* The host end sees the container's traffic mirrored. */
            ret->has_network = true;
            ret->rx_bytes = s.tx_bytes;
            ret->tx_bytes = s.rx_bytes;
        }
    }

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t age = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - created;
    ret->age_ns = age > 0 ? (uint64_t)age : 0;
    ret->cpu_entitlement = (uint64_t)((double)(shares ? shares : DEFAULT_SHARES) *
                                      (entitlement_per_share() / 100.0) * (double)ret->age_ns);
    return 0;
}
