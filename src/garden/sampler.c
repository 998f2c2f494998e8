/* The metrics history: a sampler thread reads every container's CPU time, memory
 * and network counters each --metrics-interval and keeps them in its History
 * (tiered: raw for 4 h, 2-minute means for 24 h, 20-minute means for 7 days),
 * saved into the container's depot directory every SAVE_EVERY samples and at
 * shutdown, and loaded again at restore. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloche/log.h"
#include "garden-internal.h"

#define HISTORY_FILE "history"
#define SAVE_EVERY 6
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

/* Under c->lock. */
static void history_save_locked(Garden *g, Container *c)
{
    if (!c->history)
        return;
    _cleanup_close_ int dfd = container_dirfd(g, c->rec.handle);
    if (dfd < 0)
        return;
    int r = history_save(c->history, dfd, HISTORY_FILE);
    if (r < 0)
        log_debug("Container '%s': failed to save its history: %s", c->rec.handle, strerror(-r));
}

void garden_history_restore(Garden *g, Container *c)
{
    _cleanup_close_ int dfd = container_dirfd(g, c->rec.handle);
    if (dfd < 0)
        return;
    History *h = NULL;
    int r = history_load(dfd, HISTORY_FILE, &h);
    if (r == -EBADMSG)
        log_warn("Container '%s': its metrics history is corrupt; starting a new one",
                 c->rec.handle);
    if (r >= 0)
        c->history = h;
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
        char host_if[32];
        garden_net_host_if(g, &c->rec.net, host_if, sizeof(host_if));
        (void)netdev_stats(g->netdev, host_if, &net);
    }
    if (!c->history && history_new_interval(&c->history, g->cfg.metrics_interval_s) < 0) {
        pthread_mutex_unlock(&c->lock);
        return;
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
    if (history_add(c->history, &s) == 0 && ++c->samples_unsaved >= SAVE_EVERY) {
        history_save_locked(g, c);
        c->samples_unsaved = 0;
    }
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
        int64_t refresh_ns = (int64_t)g->cfg.metrics_interval_s * 3 * 1000000000LL;
        if (refresh_ns > DISK_REFRESH_MAX_NS)
            refresh_ns = DISK_REFRESH_MAX_NS;
        for (size_t i = 0; all && i < n; i++) {
            sample_one(g, all[i], rt.tv_sec, (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec);
            garden_disk_refresh(g, all[i], refresh_ns);
            container_unref(all[i]);
        }
        free(all);
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

/* Stop sampling and save every history. */
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
            history_save_locked(g, all[i]);
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
    pthread_mutex_lock(&c->lock);
    int r = c->history ? history_query(c->history, since, ret, ret_n) : 0;
    pthread_mutex_unlock(&c->lock);
    return r;
}
