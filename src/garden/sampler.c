/* The metrics history: a sampler thread reads every container's CPU time, memory
 * and network counters each --metrics-interval and adds them to its history
 * (tiered: raw for 4 h, 2-minute means for 24 h, 20-minute means for 7 days),
 * whose records live in the container's depot directory (history-store.h): each
 * sample is written there as it is taken, only a few hundred bytes of bookkeeping
 * stay in memory, and restore opens the file again. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloche/clock.h"
#include "cloche/log.h"
#include "garden-internal.h"

#define HISTORY_FILE "metrics-history"
/* The whole-file format of earlier versions, carried over at restore. */
#define LEGACY_HISTORY_FILE "history"
/* Plain writable layers are walked again once their last walk is three intervals
 * old, at most this (metrics.c): bulk calls take the walk from here instead of
 * walking 1000 trees. */
#define DISK_REFRESH_MAX_NS (30 * 1000000000LL)

static int container_dirfd(Garden *g, const char *handle)
{
    _cleanup_free_ char *dir = NULL;
    if (depot_container_path(g->depot, handle, &dir) < 0)
        return -ENOMEM;
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Under c->lock: write what is pending. dfd is the container's directory, or -1 to
 * open it here. */
static int history_flush_locked(Garden *g, Container *c, int dfd)
{
    if (!c->history || (history_store_pending(c->history) == 0))
        return 0;
    _cleanup_close_ int own = -1;
    if (dfd < 0) {
        own = container_dirfd(g, c->rec.handle);
        if (own < 0)
            return own;
        dfd = own;
    }
    int r = history_store_flush(c->history, dfd, HISTORY_FILE);
    if (r < 0)
        log_debug("Container '%s': failed to write its history: %s", c->rec.handle, strerror(-r));
    return r;
}

/* Under c->lock: add one sample, and write it out now (the sampler) or once
 * enough are pending (a batch). What the sampler and the test hook both use. */
static int history_record_locked(Garden *g, Container *c, const HistorySample *s, int dfd, bool now)
{
    int r;
    if (!c->history && (r = history_store_new(g->cfg.metrics_interval_s, &c->history)) < 0)
        return r;
    r = history_store_add(c->history, s);
    if (r == -ENOBUFS) { /* earlier writes failed, or a batch is full */
        r = history_flush_locked(g, c, dfd);
        if (r < 0)
            return r;
        r = history_store_add(c->history, s);
    }
    if (r < 0)
        return r;
    if (now || history_store_pending(c->history) >= HISTORY_STORE_PENDING_MAX / 2)
        return history_flush_locked(g, c, dfd);
    return 0;
}

void garden_history_restore(Garden *g, Container *c)
{
    _cleanup_close_ int dfd = container_dirfd(g, c->rec.handle);
    if (dfd < 0)
        return;
    HistoryStore *h = NULL;
    int r = history_store_open(dfd, HISTORY_FILE, &h);
    if (r == -ENOENT) {
        _cleanup_history_ History *old = NULL;
        r = history_load(dfd, LEGACY_HISTORY_FILE, &old);
        if (r >= 0)
            r = history_store_import(old, dfd, HISTORY_FILE, &h);
        if (r >= 0 || r == -EBADMSG)
            (void)unlinkat(dfd, LEGACY_HISTORY_FILE, 0);
    }
    if (r == -EBADMSG)
        log_warn("Container '%s': its metrics history is corrupt; starting a new one",
                 c->rec.handle);
    pthread_mutex_lock(&c->lock);
    if (r >= 0) {
        history_store_free(c->history);
        c->history = h;
    }
    pthread_mutex_unlock(&c->lock);
}

static void sample_one(Garden *g, Container *c, int64_t now_s, int64_t now_mono_ns)
{
    pthread_mutex_lock(&c->lock);
    if (c->restoring || !c->cgroup ||
        !(PHASE_MASK(c->phase) & (PHASES_RUNNING | PHASE_MASK(PHASE_STOPPING)))) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    CgroupCpuStat cpu = {0};
    uint64_t mem = 0;
    (void)cgroup_read_cpu_usage(c->cgroup, &cpu);
    (void)cgroup_read_memory_usage(c->cgroup, &mem);
    NetDevStats net = {0};
    if (c->rec.net.id && g->netdev) {
        /* By the ifindex found the first time: no lookup by name each tick. A link
         * replaced under the same name has a new ifindex (they are not reused), so
         * the old one leaves the next snapshot and the name is looked up again. */
        int k = c->sample_ifindex ? garden_net_stats_indexed(g, c->sample_ifindex, &net) : -ENOENT;
        if (k == -ENOENT) {
            char host_if[32];
            garden_net_host_if(g, &c->rec.net, host_if, sizeof(host_if));
            c->sample_ifindex = garden_net_host_ifindex(g, host_if);
            (void)garden_net_stats_indexed(g, c->sample_ifindex, &net);
        }
    }
    /* The host end sees the container's traffic mirrored. */
    uint64_t rx = net.tx_bytes, tx = net.rx_bytes;
    HistorySample s = {
        .time = now_s,
        .memory_used = mem,
        .memory_limit = c->rec.spec.limits.memory.limit_in_bytes,
        .rx_bytes = rx,
        .tx_bytes = tx,
    };
    if (c->sample_mono_ns) {
        double wall = (double)(now_mono_ns - c->sample_mono_ns);
        if (wall > 0 && cpu.usage_ns >= c->sample_cpu_ns)
            s.cpu_percent = (double)(cpu.usage_ns - c->sample_cpu_ns) * 100.0 / wall;
        s.rx_delta = rx >= c->sample_rx ? rx - c->sample_rx : 0;
        s.tx_delta = tx >= c->sample_tx ? tx - c->sample_tx : 0;
    }
    c->sample_mono_ns = now_mono_ns;
    c->sample_cpu_ns = cpu.usage_ns;
    c->sample_rx = rx;
    c->sample_tx = tx;
    (void)history_record_locked(g, c, &s, -1, true);
    pthread_mutex_unlock(&c->lock);
}

static Container **containers_snapshot(Garden *g, size_t *ret_n)
{
    pthread_mutex_lock(&g->lock);
    size_t n = hashmap_size(g->containers), k = 0;
    Container **all = calloc(n + 1, sizeof(Container *));
    if (all) {
        size_t state = 0;
        const char *key;
        void *value;
        while (k < n && hashmap_iterate(g->containers, &state, &key, &value) == 0) {
            all[k] = value;
            atomic_fetch_add(&all[k]->refcount, 1);
            k++;
        }
    }
    pthread_mutex_unlock(&g->lock);
    *ret_n = k;
    return all;
}

static void *sampler_loop(void *userdata)
{
    Garden *g = userdata;
    pthread_mutex_lock(&g->sampler_lock);
    while (!g->sampler_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += g->cfg.metrics_interval_s;
        while (!g->sampler_stopping &&
               pthread_cond_timedwait(&g->sampler_cond, &g->sampler_lock, &until) != ETIMEDOUT)
            ;
        if (g->sampler_stopping)
            break;
        pthread_mutex_unlock(&g->sampler_lock);
        struct timespec rt, mono;
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        size_t n;
        Container **all = containers_snapshot(g, &n);
        int64_t started_ns = clock_monotonic_ns();
        int64_t refresh_ns = (int64_t)g->cfg.metrics_interval_s * 3 * 1000000000LL;
        if (refresh_ns > DISK_REFRESH_MAX_NS)
            refresh_ns = DISK_REFRESH_MAX_NS;
        for (size_t i = 0; all && i < n; i++) {
            sample_one(g, all[i], rt.tv_sec, (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec);
            garden_disk_refresh(g, all[i], refresh_ns);
            container_unref(all[i]);
        }
        free(all);
        if (n)
            log_debug("Sampled %zu containers in %.2f ms", n,
                      (double)(clock_monotonic_ns() - started_ns) / 1e6);
        pthread_mutex_lock(&g->sampler_lock);
    }
    pthread_mutex_unlock(&g->sampler_lock);
    return NULL;
}

int garden_sampler_start(Garden *g)
{
    if (!g->cfg.metrics_interval_s)
        g->cfg.metrics_interval_s = HISTORY_DEFAULT_INTERVAL_S;
    pthread_mutex_init(&g->sampler_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the deadlines are monotonic */
    pthread_cond_init(&g->sampler_cond, &attr);
    pthread_condattr_destroy(&attr);
    g->sampler_inited = true;
    int r = pthread_create(&g->sampler, NULL, sampler_loop, g);
    if (r > 0)
        return log_error_errno(-r, "Failed to start the metrics sampler: %m");
    g->sampler_started = true;
    return 0;
}

/* Stop sampling and write what any history still holds. */
void garden_sampler_stop(Garden *g)
{
    if (!g->sampler_inited)
        return;
    if (g->sampler_started) {
        pthread_mutex_lock(&g->sampler_lock);
        g->sampler_stopping = true;
        pthread_cond_signal(&g->sampler_cond);
        pthread_mutex_unlock(&g->sampler_lock);
        pthread_join(g->sampler, NULL);
        g->sampler_started = false;
    }
    size_t n;
    Container **all = containers_snapshot(g, &n);
    for (size_t i = 0; all && i < n; i++) {
        pthread_mutex_lock(&all[i]->lock);
        if (PHASE_MASK(all[i]->phase) & (PHASES_RUNNING | PHASE_MASK(PHASE_STOPPING)))
            (void)history_flush_locked(g, all[i], -1);
        pthread_mutex_unlock(&all[i]->lock);
        container_unref(all[i]);
    }
    free(all);
    pthread_cond_destroy(&g->sampler_cond);
    pthread_mutex_destroy(&g->sampler_lock);
    g->sampler_inited = false;
}

int container_metrics_history(Garden *g, Container *c, int64_t since, HistorySample **ret,
                              size_t *ret_n, unsigned *ret_interval)
{
    *ret = NULL;
    *ret_n = 0;
    *ret_interval =
        g->cfg.metrics_interval_s ? g->cfg.metrics_interval_s : HISTORY_DEFAULT_INTERVAL_S;
    _cleanup_close_ int dfd = container_dirfd(g, container_handle(c));
    pthread_mutex_lock(&c->lock);
    int r = 0;
    if (c->history)
        r = dfd < 0 ? dfd : history_store_query(c->history, dfd, HISTORY_FILE, since, ret, ret_n);
    pthread_mutex_unlock(&c->lock);
    return r;
}

#ifdef CLOCHE_TEST_HOOKS
/* Test builds only: the history replaced by a made-up load, sample by sample through
 * the path the sampler takes, from `seconds` ago to now. */
int container_history_synthesise(Garden *g, Container *c, int64_t seconds, size_t *ret_added)
{
    *ret_added = 0;
    unsigned interval =
        g->cfg.metrics_interval_s ? g->cfg.metrics_interval_s : HISTORY_DEFAULT_INTERVAL_S;
    _cleanup_close_ int dfd = container_dirfd(g, container_handle(c));
    if (dfd < 0)
        return dfd;
    int64_t now = time(NULL);
    pthread_mutex_lock(&c->lock);
    /* As the sampler: nothing for a container being created or destroyed. */
    if (!(PHASE_MASK(c->phase) & (PHASES_RUNNING | PHASE_MASK(PHASE_STOPPING)))) {
        pthread_mutex_unlock(&c->lock);
        return -ESRCH;
    }
    /* A new history in place of the one there (its file is replaced at the first
     * flush), so that the week may end now. */
    c->history = history_store_free(c->history);
    int64_t t = now - seconds;
    uint64_t limit = c->rec.spec.limits.memory.limit_in_bytes;
    int r = 0;
    for (uint64_t i = 0; t <= now; t += interval, i++) {
        HistorySample s = {
            .time = t,
            .cpu_percent = (double)(t % 97) * 0.5,
            .memory_used = (1u << 20) + (uint64_t)(t % 1000) * 4096,
            .memory_limit = limit,
            .rx_bytes = i * 1000,
            .tx_bytes = i * 500,
            .rx_delta = i ? 1000 : 0,
            .tx_delta = i ? 500 : 0,
        };
        r = history_record_locked(g, c, &s, dfd, false);
        if (r < 0)
            break;
        (*ret_added)++;
    }
    int k = history_flush_locked(g, c, dfd);
    pthread_mutex_unlock(&c->lock);
    return r < 0 ? r : k;
}
#endif
