/* The model's side of /metrics and /cloche/host: a container's state, limits,
 * OOM count and newest history sample, and the pools' use. */
#include <stdlib.h>
#include <time.h>

#include "cloche/observe.h"
#include "garden-internal.h"

void container_observe(Garden *g, Container *c, bool with_sample, ContainerObservation *ret)
{
    *ret = (ContainerObservation){0};
    unsigned interval =
        g->cfg.metrics_interval_s ? g->cfg.metrics_interval_s : HISTORY_DEFAULT_INTERVAL_S;
    HistorySample newest;
    bool has_newest = false;
    pthread_mutex_lock(&c->lock);
    ret->state = c->rec.state;
    ret->memory_limit = c->rec.spec.limits.memory.limit_in_bytes;
    ret->pids_limit = c->rec.spec.limits.pid.max;
    ret->oom_events = c->oom_count;
    ret->created_at_ns = c->rec.created_at_ns;
    Cgroup *cg = c->phase == PHASE_ACTIVE || c->phase == PHASE_STOPPED ? c->cgroup : NULL;
    /* The newest sample, if it is at most three intervals old. */
    if (with_sample && c->history && history_store_latest(c->history, &newest) == 0)
        has_newest = newest.time >= time(NULL) - 3 * (int64_t)interval;
    pthread_mutex_unlock(&c->lock);
    /* cg stays valid while the caller holds its reference; a read after a
     * destroy removed the group just fails. */
    if (cg && cgroup_read_memory_usage(cg, &ret->memory_usage) == 0)
        ret->has_usage = true;
    if (has_newest) {
        ret->has_sample = true;
        ret->cpu_percent = newest.cpu_percent;
        ret->memory_used = newest.memory_used;
    }
}

void garden_pool_use(Garden *g, GardenPoolUse *ret)
{
    *ret = (GardenPoolUse){0};
    if (!g->netpool)
        return;
    ret->has_network = true;
    ret->subnets_total = netpool_capacity(g->netpool);
    ret->subnets_used = netpool_used(g->netpool);
    if (g->ports) {
        ret->ports_total = g->cfg.port_pool_size;
        uint32_t free_ports = portpool_free_count(g->ports);
        ret->ports_used = free_ports < ret->ports_total ? ret->ports_total - free_ports : 0;
    }
}

const char *garden_depot_dir(Garden *g)
{
    return g->depot_path;
}
