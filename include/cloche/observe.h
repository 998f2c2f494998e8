/* What the observability routes (/metrics, /cloche/host) read from the model
 * beyond the Garden metrics: a container's state, spec limits, OOM count and
 * latest history sample; the pools' use; the host's CPU, memory, disk and load.
 * Cheap: a lock each, no kernel reads except the host figures (procfs, statvfs). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cloche/depot.h"
#include "cloche/garden.h"

typedef struct ContainerObservation {
    ContainerState state;
    uint64_t memory_limit; /* the spec's limit in bytes, 0 = none */
    uint64_t pids_limit;   /* 0 = none */
    uint64_t oom_events;   /* OOM kills the watch has seen */
    int64_t created_at_ns; /* CLOCK_REALTIME */
    bool has_usage;
    uint64_t memory_usage; /* memory.current (v2) or memory.usage_in_bytes (v1) */
    /* The newest history sample when it is at most three sampling intervals old. */
    bool has_sample;
    double cpu_percent; /* 100 = one full CPU */
    uint64_t memory_used;
} ContainerObservation;

/* with_sample: also look up the newest history sample (an allocation). */
void container_observe(Garden *g, Container *c, bool with_sample, ContainerObservation *ret);

typedef struct GardenPoolUse {
    bool has_network;
    uint64_t subnets_total, subnets_used; /* the dynamic /30s of --network-pool */
    uint64_t ports_total, ports_used;     /* the NetIn host port range */
} GardenPoolUse;

void garden_pool_use(Garden *g, GardenPoolUse *ret);
/* The depot's directory (borrowed; lives as long as g). */
const char *garden_depot_dir(Garden *g);

/* ---- the host (util/hoststat.c) ------------------------------------------ */

typedef struct HostCpuTimes {
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal; /* USER_HZ ticks */
} HostCpuTimes;

typedef struct HostMemory {
    uint64_t total, free, available, buffers, cached, swap_total, swap_free; /* bytes */
} HostMemory;

/* The first "cpu" line of /proc/stat. */
int host_read_cpu_times(HostCpuTimes *ret);
/* Busy share (0..100) of the CPU time between two readings; 0 when none passed. */
double host_cpu_busy_percent(const HostCpuTimes *before, const HostCpuTimes *after);
/* /proc/meminfo */
int host_read_memory(HostMemory *ret);
/* /proc/loadavg: the 1, 5 and 15 minute averages. */
int host_read_loadavg(double ret[3]);
