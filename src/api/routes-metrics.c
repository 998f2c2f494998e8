/* Metrics and BulkMetrics (protocol §3.5): Go-cased keys, every MemoryStat field
 * present, NetworkStat null when there is no network. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "cloche/json.h"

static void add_u64(json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_new_u64(v));
}

typedef struct MetricField {
    const char *key;
    uint64_t v;
} MetricField;

#define MEMORY_STAT_FIELDS 32

/* MemoryStat's keys in Garden's order, with their values. */
static void memory_stat_fields(const ContainerMemoryStats *m, MetricField out[MEMORY_STAT_FIELDS])
{
    const MetricField fields[MEMORY_STAT_FIELDS] = {
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
    memcpy(out, fields, sizeof(fields));
}

static json_object *memory_stat_to_json(const ContainerMemoryStats *m)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    MetricField fields[MEMORY_STAT_FIELDS];
    memory_stat_fields(m, fields);
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

/* ---- BulkMetrics, written without trees ---------------------------------- */

#define BULK_METRICS_THREADS 3 /* besides the request's own */

/* {"key":value,...}; the keys are plain ASCII that needs no escaping. */
static void write_fields(JsonOut *o, const MetricField *fields, size_t n)
{
    json_out_raw(o, "{", 1);
    for (size_t i = 0; i < n; i++) {
        json_out_raw(o, i ? ",\"" : "\"", i ? 2 : 1);
        json_out_raw(o, fields[i].key, strlen(fields[i].key));
        json_out_raw(o, "\":", 2);
        json_out_u64(o, fields[i].v);
    }
    json_out_raw(o, "}", 1);
}

#define OUT_LITERAL(o, text) json_out_raw(o, text, sizeof(text) - 1)

/* The bytes json_serialize writes for api_metrics_to_json(m), without the tree. */
void api_metrics_write(JsonOut *o, const ContainerMetrics *m)
{
    MetricField memory[MEMORY_STAT_FIELDS];
    memory_stat_fields(&m->memory, memory);
    OUT_LITERAL(o, "{\"MemoryStat\":");
    write_fields(o, memory, MEMORY_STAT_FIELDS);
    OUT_LITERAL(o, ",\"CPUStat\":");
    write_fields(o,
                 (const MetricField[]){{"Usage", m->cpu.usage_ns},
                                       {"User", m->cpu.user_ns},
                                       {"System", m->cpu.system_ns}},
                 3);
    OUT_LITERAL(o, ",\"DiskStat\":");
    write_fields(o,
                 (const MetricField[]){{"TotalBytesUsed", m->disk_total_bytes},
                                       {"TotalInodesUsed", m->disk_total_inodes},
                                       {"ExclusiveBytesUsed", m->disk_exclusive_bytes},
                                       {"ExclusiveInodesUsed", m->disk_exclusive_inodes}},
                 4);
    OUT_LITERAL(o, ",\"NetworkStat\":");
    if (m->has_network)
        write_fields(o, (const MetricField[]){{"RxBytes", m->rx_bytes}, {"TxBytes", m->tx_bytes}},
                     2);
    else
        OUT_LITERAL(o, "null");
    OUT_LITERAL(o, ",\"PidStat\":");
    write_fields(o, (const MetricField[]){{"Current", m->pids.current}, {"Max", m->pids.max}}, 2);
    OUT_LITERAL(o, ",\"Age\":");
    json_out_u64(o, m->age_ns);
    OUT_LITERAL(o, ",\"CPUEntitlement\":");
    json_out_u64(o, m->cpu_entitlement);
    OUT_LITERAL(o, "}");
}

typedef struct BulkMetricsEntry {
    int r;
    ContainerMetrics metrics;
    char *error; /* the Err object's text when r < 0 (NULL: null) */
    size_t error_len;
} BulkMetricsEntry;

typedef struct BulkMetricsJob {
    Garden *garden;
    char **handles;
    BulkMetricsEntry *entries;
    size_t n;
    atomic_size_t next; /* the next handle to take */
} BulkMetricsJob;

/* As Metrics does for one container, errors included. */
static void bulk_metrics_one(BulkMetricsJob *job, size_t i)
{
    BulkMetricsEntry *e = &job->entries[i];
    ApiError err;
    api_error_clear(&err);
    Container *c = NULL;
    int r = spec_validate_handle(job->handles[i], &err);
    if (r >= 0)
        r = garden_find(job->garden, job->handles[i], &c, &err);
    if (r >= 0) {
        r = container_metrics(job->garden, c, true, &e->metrics);
        if (r == -ESRCH) /* destroyed meanwhile */
            r = api_container_not_found(&err, container_handle(c));
        else if (r < 0)
            r = api_internal_error(&err, r, "Failed to read the metrics of '%s'",
                                   container_handle(c));
        container_unref(c);
    }
    e->r = r;
    if (r < 0) {
        e->error = api_error_serialize(&err, &e->error_len);
        if (e->error && e->error_len > 0 && e->error[e->error_len - 1] == '\n')
            e->error_len--;
    }
}

static void *bulk_metrics_worker(void *userdata)
{
    BulkMetricsJob *job = userdata;
    for (size_t i; (i = atomic_fetch_add(&job->next, 1)) < job->n;)
        bulk_metrics_one(job, i);
    return NULL;
}

/* GET /containers/bulk_metrics?handles=a,b: {"a":{"Metrics":{...},"Err":null},...},
 * byte for byte what the tree-built reply was, read by a few threads (so one slow
 * container does not hold up the others) and written straight into one buffer. */
int api_bulk_metrics(ApiRequest *req)
{
    _cleanup_free_ char *copy = NULL;
    _cleanup_free_ char **handles = NULL;
    size_t n;
    int r = api_bulk_handles(req, &copy, &handles, &n);
    if (r < 0)
        return r;
    _cleanup_free_ BulkMetricsEntry *entries = calloc(n + 1, sizeof(BulkMetricsEntry));
    if (!entries)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    BulkMetricsJob job = {.garden = req->garden, .handles = handles, .entries = entries, .n = n};
    atomic_init(&job.next, 0);
    pthread_t threads[BULK_METRICS_THREADS];
    size_t started = 0;
    for (; n > 16 && started < BULK_METRICS_THREADS; started++)
        if (pthread_create(&threads[started], NULL, bulk_metrics_worker, &job) != 0)
            break;
    bulk_metrics_worker(&job);
    for (size_t t = 0; t < started; t++)
        pthread_join(threads[t], NULL);

    JsonOut o = {0};
    OUT_LITERAL(&o, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            OUT_LITERAL(&o, ",");
        json_out_string(&o, handles[i]);
        OUT_LITERAL(&o, ":{\"Metrics\":");
        if (entries[i].r >= 0)
            api_metrics_write(&o, &entries[i].metrics);
        else
            OUT_LITERAL(&o, "{}");
        OUT_LITERAL(&o, ",\"Err\":");
        if (entries[i].r >= 0 || !entries[i].error)
            OUT_LITERAL(&o, "null");
        else
            json_out_raw(&o, entries[i].error, entries[i].error_len);
        OUT_LITERAL(&o, "}");
        free(entries[i].error);
    }
    OUT_LITERAL(&o, "}");
    size_t len;
    char *text = json_out_finish(&o, &len);
    if (!text)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    req->raw_reply = text;
    req->raw_len = len;
    req->reply_type = "application/json";
    return 0;
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
    if (r == -ESRCH) /* being destroyed */
        return api_container_not_found(&req->error, container_handle(c));
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to fill the history");
    json_object *o = json_object_new_object();
    if (o)
        json_object_object_add(o, "added", json_new_u64(added));
    req->reply = o;
    return o ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}
#endif
