/* The cgroup counters as garden's own metric types, so api/ never sees a
 * cgroup struct. */
#include "garden-internal.h"

static void memory_stats(const CgroupMemoryStat *m, ContainerMemoryStats *ret)
{
    *ret = (ContainerMemoryStats){
        .active_anon = m->active_anon,
        .active_file = m->active_file,
        .cache = m->cache,
        .hierarchical_memory_limit = m->hierarchical_memory_limit,
        .inactive_anon = m->inactive_anon,
        .inactive_file = m->inactive_file,
        .mapped_file = m->mapped_file,
        .pgfault = m->pgfault,
        .pgmajfault = m->pgmajfault,
        .pgpgin = m->pgpgin,
        .pgpgout = m->pgpgout,
        .rss = m->rss,
        .total_active_anon = m->total_active_anon,
        .total_active_file = m->total_active_file,
        .total_cache = m->total_cache,
        .total_inactive_anon = m->total_inactive_anon,
        .total_inactive_file = m->total_inactive_file,
        .total_mapped_file = m->total_mapped_file,
        .total_pgfault = m->total_pgfault,
        .total_pgmajfault = m->total_pgmajfault,
        .total_pgpgin = m->total_pgpgin,
        .total_pgpgout = m->total_pgpgout,
        .total_rss = m->total_rss,
        .total_unevictable = m->total_unevictable,
        .unevictable = m->unevictable,
        .swap = m->swap,
        .hierarchical_memsw_limit = m->hierarchical_memsw_limit,
        .total_swap = m->total_swap,
        .total_usage_toward_limit = m->total_usage_toward_limit,
        .anon = m->anon,
        .file = m->file,
        .swapcached = m->swapcached,
    };
}

int garden_cgroup_stats(const Cgroup *cg, ContainerMetrics *ret)
{
    CgroupMemoryStat mem;
    CgroupCpuStat cpu;
    CgroupPidStat pids;
    int r = cgroup_read_memory_stat(cg, &mem);
    if (r >= 0)
        r = cgroup_read_cpu_usage(cg, &cpu);
    if (r >= 0)
        r = cgroup_read_pid_stat(cg, &pids);
    if (r < 0)
        return r;
    memory_stats(&mem, &ret->memory);
    ret->cpu = (ContainerCpuStats){
        .usage_ns = cpu.usage_ns,
        .user_ns = cpu.user_ns,
        .system_ns = cpu.system_ns,
        .nr_periods = cpu.nr_periods,
        .nr_throttled = cpu.nr_throttled,
        .throttled_ns = cpu.throttled_ns,
    };
    ret->pids = (ContainerPidStats){.current = pids.current, .max = pids.max};
    return 0;
}
