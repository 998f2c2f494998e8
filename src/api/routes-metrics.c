/* Metrics and BulkMetrics (protocol §3.5): Go-cased keys, every MemoryStat field
 * present, NetworkStat null when there is no network. */
#include <errno.h>
#include <stdlib.h>

#include "api-internal.h"
#include "cloche/json.h"

static void add_u64(json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_new_u64(v));
}

static json_object *memory_stat_to_json(const CgroupMemoryStat *m)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    const struct {
        const char *key;
        uint64_t v;
    } fields[] = {
        {"active_anon", m->active_anon},
        {"active_file", m->active_file},
        {"cache", m->cache},
        {"hierarchical_memory_limit", m->hierarchical_memory_limit},
        {"inactive_anon", m->inactive_anon},
        {"inactive_file", m->inactive_file},
        {"mapped_file", m->mapped_file},
        {"pgfault", m->pgfault},
        {"pgmajfault", m->pgmajfault},
        {"pgpgin", m->pgpgin},
        {"pgpgout", m->pgpgout},
        {"rss", m->rss},
        {"total_active_anon", m->total_active_anon},
        {"total_active_file", m->total_active_file},
        {"total_cache", m->total_cache},
        {"total_inactive_anon", m->total_inactive_anon},
        {"total_inactive_file", m->total_inactive_file},
        {"total_mapped_file", m->total_mapped_file},
        {"total_pgfault", m->total_pgfault},
        {"total_pgmajfault", m->total_pgmajfault},
        {"total_pgpgin", m->total_pgpgin},
        {"total_pgpgout", m->total_pgpgout},
        {"total_rss", m->total_rss},
        {"total_unevictable", m->total_unevictable},
        {"unevictable", m->unevictable},
        {"swap", m->swap},
        {"hierarchical_memsw_limit", m->hierarchical_memsw_limit},
        {"total_swap", m->total_swap},
        {"TotalUsageTowardLimit", m->total_usage_toward_limit},
        {"anon", m->anon},
        {"file", m->file},
        {"swapcached", m->swapcached},
    };
    for (size_t i = 0; i < ELEMENTSOF(fields); i++)
        add_u64(o, fields[i].key, fields[i].v);
    return o;
}

json_object *api_metrics_to_json(const ContainerMetrics *m)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "MemoryStat", memory_stat_to_json(&m->memory));
    json_object *cpu = json_object_new_object();
    if (cpu) {
        add_u64(cpu, "Usage", m->cpu.usage_ns);
        add_u64(cpu, "User", m->cpu.user_ns);
        add_u64(cpu, "System", m->cpu.system_ns);
    }
    json_object_object_add(o, "CPUStat", cpu);
    json_object *disk = json_object_new_object();
    if (disk) {
        add_u64(disk, "TotalBytesUsed", m->disk_total_bytes);
        add_u64(disk, "TotalInodesUsed", m->disk_total_inodes);
        add_u64(disk, "ExclusiveBytesUsed", m->disk_exclusive_bytes);
        add_u64(disk, "ExclusiveInodesUsed", m->disk_exclusive_inodes);
    }
    json_object_object_add(o, "DiskStat", disk);
    json_object *net = NULL;
    if (m->has_network && (net = json_object_new_object())) {
        add_u64(net, "RxBytes", m->rx_bytes);
        add_u64(net, "TxBytes", m->tx_bytes);
    }
    json_object_object_add(o, "NetworkStat", net);
    json_object *pids = json_object_new_object();
    if (pids) {
        add_u64(pids, "Current", m->pids.current);
        add_u64(pids, "Max", m->pids.max);
    }
    json_object_object_add(o, "PidStat", pids);
    add_u64(o, "Age", m->age_ns);
    add_u64(o, "CPUEntitlement", m->cpu_entitlement);
    return o;
}

int api_container_metrics(ApiRequest *req, Container *c, bool may_cache, json_object **ret,
                          ApiError *err)
{
    ContainerMetrics m;
    int r = container_metrics(req->garden, c, may_cache, &m);
    if (r == -ESRCH) /* destroyed meanwhile */
        return api_container_not_found(err, container_handle(c));
    if (r < 0)
        return api_internal_error(err, r, "Failed to read the metrics of '%s'",
                                  container_handle(c));
    *ret = api_metrics_to_json(&m);
    return *ret ? 0 : api_internal_error(err, -ENOMEM, "Failed to build the reply");
}

int route_metrics(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    return api_container_metrics(req, c, false, &req->reply, &req->error);
}

int route_metrics_history(ApiRequest *req)
{
    const char *since_text = strmap_get(&req->query, "since");
    int64_t since = 0;
    if (since_text && *since_text) {
        char *end;
        errno = 0;
        long long v = strtoll(since_text, &end, 10);
        if (errno || *end || v < 0)
            return api_bad_request(&req->error,
                                   "Invalid 'since' %s: expected unix seconds (an integer >= 0)",
                                   since_text);
        since = v;
    }
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    HistorySample *samples = NULL;
    size_t n = 0;
    unsigned interval;
    r = container_metrics_history(req->garden, c, since, &samples, &n, &interval);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to read the history");
    json_object *o = json_object_new_object();
    json_object *arr = json_object_new_array();
    if (o && arr) {
        json_object_object_add(o, "interval", json_new_u64(interval));
        json_object_object_add(o, "samples", arr);
        arr = NULL;
        json_object *list = json_object_object_get(o, "samples");
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_new_object();
            if (!e)
                break;
            json_object_object_add(e, "time", json_object_new_int64(samples[i].time));
            json_object_object_add(e, "cpu_percent",
                                   json_object_new_double(samples[i].cpu_percent));
            add_u64(e, "memory_used", samples[i].memory_used);
            add_u64(e, "memory_limit", samples[i].memory_limit);
            add_u64(e, "rx_bytes", samples[i].rx_bytes);
            add_u64(e, "tx_bytes", samples[i].tx_bytes);
            add_u64(e, "rx_delta", samples[i].rx_delta);
            add_u64(e, "tx_delta", samples[i].tx_delta);
            json_object_array_add(list, e);
        }
    }
    json_object_put(arr);
    free(samples);
    req->reply = o;
    return o ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}

#ifdef CLOCHE_TEST_HOOKS
/* Test builds only (-Dtest_hooks=true): POST /containers/H/cloche/test/history?seconds=S
 * replaces the history by made-up samples over the last S seconds (at most 8 days),
 * added as the sampler adds its own, so a test or a benchmark need not wait a week. */
#define TEST_HISTORY_SECONDS_MAX (8 * 24 * 3600)
int route_test_history(ApiRequest *req)
{
    const char *text = strmap_get(&req->query, "seconds");
    char *end = NULL;
    errno = 0;
    long long seconds = text ? strtoll(text, &end, 10) : -1;
    if (!text || errno || *end || seconds < 0 || seconds > TEST_HISTORY_SECONDS_MAX)
        return api_bad_request(&req->error, "Invalid 'seconds' %s: expected 0 to %d",
                               text ? text : "(none)", TEST_HISTORY_SECONDS_MAX);
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    size_t added = 0;
    r = container_history_synthesise(req->garden, c, seconds, &added);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to fill the history");
    json_object *o = json_object_new_object();
    if (o)
        json_object_object_add(o, "added", json_new_u64(added));
    req->reply = o;
    return o ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}
#endif
