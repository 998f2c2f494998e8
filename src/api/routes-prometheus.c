/* GET /metrics: Prometheus's text exposition format (version 0.0.4). The daemon's
 * own series (requests, latencies, operation durations, containers by state, pool
 * use) and every container's, under cAdvisor's names where one exists, labelled by
 * handle. Containers are read like BulkMetrics (may_cache: disk walks up to 10 s
 * old, the link counters' shared snapshot) by a few threads, so 1000 containers
 * take a few tens of milliseconds. No JSON here. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "cloche/observe.h"
#include "cloche/clock.h"
#include "reqstats.h"

#define SCRAPE_THREADS 3 /* besides the request's own */
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct Scraped {
    const char *handle;
    bool found;       /* still in the registry */
    bool has_metrics; /* container_metrics succeeded (not being created or destroyed) */
    ContainerMetrics m;
    ContainerObservation o;
} Scraped;

typedef struct ScrapeJob {
    Garden *garden;
    Scraped *items;
    size_t n;
    atomic_size_t next;
} ScrapeJob;

static void *scrape_worker(void *userdata)
{
    ScrapeJob *job = userdata;
    for (size_t i; (i = atomic_fetch_add(&job->next, 1)) < job->n;) {
        Scraped *s = &job->items[i];
        Container *c = NULL;
        ApiError err;
        api_error_clear(&err);
        /* garden_find, not acquire: a scrape must not restart grace timers. */
        if (garden_find(job->garden, s->handle, &c, &err) < 0)
            continue;
        s->found = true;
        container_observe(job->garden, c, false, &s->o);
        s->has_metrics = container_metrics(job->garden, c, true, &s->m) == 0;
        container_unref(c);
    }
    return NULL;
}

/* Label values: backslash, double quote and newline are escaped (format 0.0.4). */
static void write_label_value(FILE *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            fputs("\\\\", out);
        else if (*v == '"')
            fputs("\\\"", out);
        else if (*v == '\n')
            fputs("\\n", out);
        else
            fputc(*v, out);
    }
}

static void family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u64(FILE *out, const char *name, const char *handle, uint64_t v)
{
    if (!strpbrk(handle, "\\\"\n")) { /* the usual case: one call */
        fprintf(out, "%s{handle=\"%s\"} %" PRIu64 "\n", name, handle, v);
        return;
    }
    fprintf(out, "%s{handle=\"", name);
    write_label_value(out, handle);
    fprintf(out, "\"} %" PRIu64 "\n", v);
}

static void sample_double(FILE *out, const char *name, const char *handle, double v)
{
    if (!strpbrk(handle, "\\\"\n")) {
        fprintf(out, "%s{handle=\"%s\"} %.9f\n", name, handle, v);
        return;
    }
    fprintf(out, "%s{handle=\"", name);
    write_label_value(out, handle);
    fprintf(out, "\"} %.9f\n", v);
}

typedef enum Value {
    V_CPU_TOTAL,
    V_CPU_USER,
    V_CPU_SYSTEM,
    V_MEM_USAGE,
    V_MEM_WORKING_SET,
    V_MEM_RSS,
    V_MEM_CACHE,
    V_MEM_SWAP,
    V_MEM_MAPPED,
    V_MEM_LIMIT,
    V_NET_RX,
    V_NET_TX,
    V_FS_USAGE,
    V_FS_INODES,
    V_DISK_TOTAL,
    V_OOM,
    V_PROCESSES,
    V_PIDS_LIMIT,
    V_START_TIME,
} Value;

static const struct {
    Value v;
    const char *name, *type, *help;
    bool seconds;       /* a double from nanoseconds */
    bool needs_network; /* only containers with a network */
    bool needs_metrics; /* from container_metrics (else from the observation) */
} container_families[] = {
    {V_CPU_TOTAL, "container_cpu_usage_seconds_total", "counter", "Cumulative CPU time consumed.",
     true, false, true},
    {V_CPU_USER, "container_cpu_user_seconds_total", "counter", "Cumulative user CPU time.", true,
     false, true},
    {V_CPU_SYSTEM, "container_cpu_system_seconds_total", "counter", "Cumulative system CPU time.",
     true, false, true},
    {V_MEM_USAGE, "container_memory_usage_bytes", "gauge",
     "Current memory usage, including all memory regardless of when it was accessed.", false, false,
     false},
    {V_MEM_WORKING_SET, "container_memory_working_set_bytes", "gauge",
     "Current working set: usage minus inactive file memory.", false, false, true},
    {V_MEM_RSS, "container_memory_rss", "gauge", "Anonymous and swap cache memory.", false, false,
     true},
    {V_MEM_CACHE, "container_memory_cache", "gauge", "Page cache memory.", false, false, true},
    {V_MEM_SWAP, "container_memory_swap", "gauge", "Swap usage.", false, false, true},
    {V_MEM_MAPPED, "container_memory_mapped_file", "gauge", "Size of memory mapped files.", false,
     false, true},
    {V_MEM_LIMIT, "container_spec_memory_limit_bytes", "gauge",
     "Memory limit of the container (0 = none).", false, false, false},
    {V_NET_RX, "container_network_receive_bytes_total", "counter",
     "Cumulative bytes received by the container.", false, true, true},
    {V_NET_TX, "container_network_transmit_bytes_total", "counter",
     "Cumulative bytes transmitted by the container.", false, true, true},
    {V_FS_USAGE, "container_fs_usage_bytes", "gauge",
     "Bytes used by the container's writable layer.", false, false, true},
    {V_FS_INODES, "container_fs_inodes_used", "gauge",
     "Inodes used by the container's writable layer.", false, false, true},
    {V_DISK_TOTAL, "cloche_container_disk_total_bytes", "gauge",
     "Bytes used by the writable layer plus the image.", false, false, true},
    {V_OOM, "container_oom_events_total", "counter", "Out-of-memory kills seen in the container.",
     false, false, false},
    {V_PROCESSES, "container_processes", "gauge", "Number of processes (tasks) running.", false,
     false, true},
    {V_PIDS_LIMIT, "container_spec_pids_limit", "gauge",
     "Process limit of the container (0 = none).", false, false, false},
    {V_START_TIME, "container_start_time_seconds", "gauge",
     "Creation time of the container since the Unix epoch.", false, false, false},
};

static uint64_t value_of(Value v, const Scraped *s)
{
    const ContainerMetrics *m = &s->m;
    const ContainerMemoryStats *mem = &m->memory;
    uint64_t usage = s->o.has_usage ? s->o.memory_usage : mem->total_rss + mem->total_cache;
    switch (v) {
    case V_CPU_TOTAL:
        return m->cpu.usage_ns;
    case V_CPU_USER:
        return m->cpu.user_ns;
    case V_CPU_SYSTEM:
        return m->cpu.system_ns;
    case V_MEM_USAGE:
        return usage;
    case V_MEM_WORKING_SET:
        return usage > mem->total_inactive_file ? usage - mem->total_inactive_file : 0;
    case V_MEM_RSS:
        return mem->total_rss;
    case V_MEM_CACHE:
        return mem->total_cache;
    case V_MEM_SWAP:
        return mem->total_swap;
    case V_MEM_MAPPED:
        return mem->total_mapped_file;
    case V_MEM_LIMIT:
        return s->o.memory_limit;
    case V_NET_RX:
        return m->rx_bytes;
    case V_NET_TX:
        return m->tx_bytes;
    case V_FS_USAGE:
        return m->disk_exclusive_bytes;
    case V_FS_INODES:
        return m->disk_exclusive_inodes;
    case V_DISK_TOTAL:
        return m->disk_total_bytes;
    case V_OOM:
        return s->o.oom_events;
    case V_PROCESSES:
        return m->pids.current;
    case V_PIDS_LIMIT:
        return s->o.pids_limit;
    case V_START_TIME:
        return 0; /* written as a double below */
    }
    return 0;
}

static void write_containers(FILE *out, const Scraped *items, size_t n)
{
    for (size_t f = 0; f < ELEMENTSOF(container_families); f++) {
        family(out, container_families[f].name, container_families[f].type,
               container_families[f].help);
        for (size_t i = 0; i < n; i++) {
            const Scraped *s = &items[i];
            if (!s->found)
                continue;
            if (container_families[f].needs_metrics && !s->has_metrics)
                continue;
            if (container_families[f].needs_network && !s->m.has_network)
                continue;
            Value v = container_families[f].v;
            if (v == V_MEM_USAGE && !s->has_metrics && !s->o.has_usage)
                continue;
            if (v == V_START_TIME)
                sample_double(out, container_families[f].name, s->handle,
                              (double)s->o.created_at_ns / 1e9);
            else if (container_families[f].seconds)
                sample_double(out, container_families[f].name, s->handle,
                              (double)value_of(v, s) / 1e9);
            else
                sample_u64(out, container_families[f].name, s->handle, value_of(v, s));
        }
    }
}

static void write_daemon(FILE *out, Garden *g, const Scraped *items, size_t n)
{
    uint64_t by_state[CONTAINER_STATE_DESTROYING + 1] = {0};
    for (size_t i = 0; i < n; i++)
        if (items[i].found && items[i].o.state <= CONTAINER_STATE_DESTROYING)
            by_state[items[i].o.state]++;
    family(out, "cloche_containers", "gauge", "Containers in the registry, by state.");
    for (ContainerState s = CONTAINER_STATE_CREATING; s <= CONTAINER_STATE_DESTROYING; s++)
        fprintf(out, "cloche_containers{state=\"%s\"} %" PRIu64 "\n", container_state_to_string(s),
                by_state[s]);
    GardenPoolUse pools;
    garden_pool_use(g, &pools);
    if (pools.has_network) {
        family(out, "cloche_subnet_pool_size", "gauge", "Dynamic /30 subnets in --network-pool.");
        fprintf(out, "cloche_subnet_pool_size %" PRIu64 "\n", pools.subnets_total);
        family(out, "cloche_subnet_pool_used", "gauge", "Dynamic /30 subnets in use.");
        fprintf(out, "cloche_subnet_pool_used %" PRIu64 "\n", pools.subnets_used);
        family(out, "cloche_port_pool_size", "gauge", "Host ports in the NetIn port range.");
        fprintf(out, "cloche_port_pool_size %" PRIu64 "\n", pools.ports_total);
        family(out, "cloche_port_pool_used", "gauge", "Host ports of the range in use.");
        fprintf(out, "cloche_port_pool_used %" PRIu64 "\n", pools.ports_used);
    }
    Capacity cap;
    if (garden_capacity(g, &cap) == 0) {
        family(out, "cloche_image_store_bytes", "gauge",
               "Bytes of extracted image layers in the layer store.");
        fprintf(out, "cloche_image_store_bytes %" PRIu64 "\n", cap.image_store_bytes);
        family(out, "cloche_image_store_layers", "gauge", "Image layers in the layer store.");
        fprintf(out, "cloche_image_store_layers %" PRIu64 "\n", cap.image_store_layers);
    }
    reqstats_write(out);
}

int route_prometheus(ApiRequest *req)
{
    int64_t started = clock_monotonic_ns();
    _cleanup_(strv_freep) char **handles = NULL;
    size_t n = 0;
    StringMap no_filter = STRING_MAP_INIT;
    int r = garden_list(req->garden, &no_filter, &handles, &n);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to list containers");
    _cleanup_free_ Scraped *items = calloc(n + 1, sizeof(Scraped));
    if (!items)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    for (size_t i = 0; i < n; i++)
        items[i].handle = handles[i];
    ScrapeJob job = {.garden = req->garden, .items = items, .n = n};
    atomic_init(&job.next, 0);
    pthread_t threads[SCRAPE_THREADS];
    size_t started_threads = 0;
    for (; n > 16 && started_threads < SCRAPE_THREADS; started_threads++)
        if (pthread_create(&threads[started_threads], NULL, scrape_worker, &job) != 0)
            break;
    scrape_worker(&job);
    for (size_t t = 0; t < started_threads; t++)
        pthread_join(threads[t], NULL);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    write_daemon(out, req->garden, items, n);
    write_containers(out, items, n);
    family(out, "cloche_scrape_duration_seconds", "gauge",
           "Time this daemon took to gather the containers' series of this reply.");
    fprintf(out, "cloche_scrape_duration_seconds %.6f\n",
            (double)(clock_monotonic_ns() - started) / 1e9);
    if (fclose(out) != 0 || !text) {
        free(text);
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    }
    req->raw_reply = text;
    req->raw_len = len;
    req->reply_type = CONTENT_TYPE;
    return 0;
}
