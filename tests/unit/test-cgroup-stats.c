/* Cgroup statistics. Part one: the pure v1/v2 mappings of memory.stat and cpu.stat
 * from real file texts (v1 from a group on this hybrid 6.18 host, v2 from a group
 * in the pure-v2 6.1 VM). Part two: the readers on fake trees of plain files.
 * Part three (root only): on the real hierarchies under cloche-cgstat-<pid>, a child
 * that allocates and burns CPU, and a child killed by the OOM killer, in a forked
 * runner so that the parent can sweep away whatever is left. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

#include "cloche/cgroup.h"
#include "cloche/cleanup.h"
#include "cloche/fileio.h"

#define MiB (UINT64_C(1) << 20)
#define MS_NS UINT64_C(1000000)

static uint64_t v1_unlimited(void)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    return (uint64_t)LONG_MAX / page * page;
}

/* ---- pure mappings ------------------------------------------------------ */

/* A v1 group with a 64 MiB limit whose process touched 20 MiB and wrote a 4 MiB
 * file (hybrid host, 6.18). */
static const char v1_memory_stat[] = "cache 4644864\n"
                                     "rss 28012544\n"
                                     "rss_huge 0\n"
                                     "shmem 0\n"
                                     "mapped_file 4096\n"
                                     "dirty 4194304\n"
                                     "writeback 0\n"
                                     "workingset_refault_anon 0\n"
                                     "workingset_refault_file 110\n"
                                     "swap 0\n"
                                     "swapcached 0\n"
                                     "pgpgin 11084\n"
                                     "pgpgout 4133\n"
                                     "pgfault 15541\n"
                                     "pgmajfault 2\n"
                                     "inactive_anon 28008448\n"
                                     "active_anon 4096\n"
                                     "inactive_file 4280320\n"
                                     "active_file 323584\n"
                                     "unevictable 0\n"
                                     "hierarchical_memory_limit 67108864\n"
                                     "hierarchical_memsw_limit 9223372036854771712\n"
                                     "total_cache 4644864\n"
                                     "total_rss 28012544\n"
                                     "total_rss_huge 0\n"
                                     "total_shmem 0\n"
                                     "total_mapped_file 4096\n"
                                     "total_dirty 4194304\n"
                                     "total_writeback 0\n"
                                     "total_workingset_refault_anon 0\n"
                                     "total_workingset_refault_file 110\n"
                                     "total_swap 0\n"
                                     "total_swapcached 0\n"
                                     "total_pgpgin 11084\n"
                                     "total_pgpgout 4133\n"
                                     "total_pgfault 15541\n"
                                     "total_pgmajfault 2\n"
                                     "total_inactive_anon 28008448\n"
                                     "total_active_anon 4096\n"
                                     "total_inactive_file 4280320\n"
                                     "total_active_file 323584\n"
                                     "total_unevictable 0\n";

/* The same workload in a v2 group (pure v2 VM, 6.1; /tmp is tmpfs there, hence
 * shmem). */
static const char v2_memory_stat[] = "anon 23855104\n"
                                     "file 10457088\n"
                                     "kernel 360448\n"
                                     "kernel_stack 0\n"
                                     "pagetables 94208\n"
                                     "sec_pagetables 0\n"
                                     "percpu 0\n"
                                     "sock 0\n"
                                     "vmalloc 0\n"
                                     "shmem 4194304\n"
                                     "file_mapped 3657728\n"
                                     "file_dirty 0\n"
                                     "file_writeback 0\n"
                                     "swapcached 8192\n"
                                     "anon_thp 18874368\n"
                                     "file_thp 0\n"
                                     "shmem_thp 0\n"
                                     "inactive_anon 28045312\n"
                                     "active_anon 4096\n"
                                     "inactive_file 6262784\n"
                                     "active_file 0\n"
                                     "unevictable 4096\n"
                                     "slab_reclaimable 208136\n"
                                     "slab_unreclaimable 27136\n"
                                     "slab 235272\n"
                                     "workingset_refault_anon 0\n"
                                     "workingset_refault_file 0\n"
                                     "workingset_activate_anon 0\n"
                                     "workingset_activate_file 0\n"
                                     "workingset_restore_anon 0\n"
                                     "workingset_restore_file 0\n"
                                     "workingset_nodereclaim 0\n"
                                     "pgscan 0\n"
                                     "pgsteal 0\n"
                                     "pgscan_kswapd 0\n"
                                     "pgscan_direct 0\n"
                                     "pgsteal_kswapd 0\n"
                                     "pgsteal_direct 0\n"
                                     "pgfault 1982\n"
                                     "pgmajfault 40\n"
                                     "pgrefill 0\n"
                                     "pgactivate 0\n"
                                     "pgdeactivate 0\n"
                                     "pglazyfree 0\n"
                                     "pglazyfreed 0\n"
                                     "thp_fault_alloc 10\n"
                                     "thp_collapse_alloc 0\n";

static void test_memory_v1(void)
{
    CgroupMemoryStat st;
    is_int(cgroup_memory_stat_parse(false, v1_memory_stat, 1, 2, 3, &st), 0, "v1 memory: parse");
    ok(st.cache == 4644864 && st.rss == 28012544 && st.mapped_file == 4096 && st.swap == 0 &&
           st.pgpgin == 11084 && st.pgpgout == 4133 && st.pgfault == 15541 && st.pgmajfault == 2 &&
           st.inactive_anon == 28008448 && st.active_anon == 4096 && st.inactive_file == 4280320 &&
           st.active_file == 323584 && st.unevictable == 0,
       "v1 memory: plain keys");
    ok(st.total_cache == 4644864 && st.total_rss == 28012544 && st.total_mapped_file == 4096 &&
           st.total_swap == 0 && st.total_pgpgin == 11084 && st.total_pgpgout == 4133 &&
           st.total_pgfault == 15541 && st.total_pgmajfault == 2 &&
           st.total_inactive_anon == 28008448 && st.total_active_anon == 4096 &&
           st.total_inactive_file == 4280320 && st.total_active_file == 323584 &&
           st.total_unevictable == 0,
       "v1 memory: total_ keys");
    is_u64(st.hierarchical_memory_limit, 64 * MiB, "v1 memory: hierarchical_memory_limit");
    is_u64(st.hierarchical_memsw_limit, UINT64_C(9223372036854771712),
           "v1 memory: hierarchical_memsw_limit as the kernel says");
    ok(st.anon == 0 && st.file == 0 && st.swapcached == 0,
       "v1 memory: anon and file do not exist on v1");
    /* total_rss + total_cache + total_swap - total_inactive_file */
    is_u64(st.total_usage_toward_limit, UINT64_C(28012544) + 4644864 - 4280320,
           "v1 memory: TotalUsageTowardLimit");

    is_int(cgroup_memory_stat_parse(false,
                                    "total_rss 100\ntotal_cache 50\ntotal_swap 25\n"
                                    "total_inactive_file 20\nswapcached 7\n",
                                    0, 0, 0, &st),
           0, "v1 memory: parse with swap");
    is_u64(st.total_usage_toward_limit, 155, "v1 memory: swap counts toward the limit");
    is_u64(st.swapcached, 7, "v1 memory: swapcached where the kernel has it");
    is_int(
        cgroup_memory_stat_parse(false, "total_rss 10\ntotal_inactive_file 4096\n", 0, 0, 0, &st),
        0, "v1 memory: parse small");
    is_u64(st.total_usage_toward_limit, 0, "v1 memory: TotalUsageTowardLimit floored at 0");
}

static void test_memory_v2(void)
{
    CgroupMemoryStat st;
    is_int(cgroup_memory_stat_parse(true, v2_memory_stat, 64 * MiB, 0, 4096, &st), 0,
           "v2 memory: parse");
    ok(st.anon == 23855104 && st.rss == 23855104 && st.total_rss == 23855104,
       "v2 memory: anon -> anon, rss, total_rss");
    ok(st.file == 10457088 && st.cache == 10457088 && st.total_cache == 10457088,
       "v2 memory: file -> file, cache, total_cache");
    ok(st.active_anon == 4096 && st.total_active_anon == 4096 && st.inactive_anon == 28045312 &&
           st.total_inactive_anon == 28045312 && st.active_file == 0 && st.total_active_file == 0 &&
           st.inactive_file == 6262784 && st.total_inactive_file == 6262784,
       "v2 memory: LRU lists and their totals");
    ok(st.mapped_file == 3657728 && st.total_mapped_file == 3657728,
       "v2 memory: file_mapped -> mapped_file");
    ok(st.pgfault == 1982 && st.total_pgfault == 1982 && st.pgmajfault == 40 &&
           st.total_pgmajfault == 40,
       "v2 memory: fault counters");
    ok(st.unevictable == 4096 && st.total_unevictable == 4096, "v2 memory: unevictable");
    is_u64(st.swapcached, 8192, "v2 memory: swapcached");
    ok(st.pgpgin == 0 && st.pgpgout == 0 && st.total_pgpgin == 0 && st.total_pgpgout == 0,
       "v2 memory: no pgpgin/pgpgout on v2");
    ok(st.swap == 4096 && st.total_swap == 4096, "v2 memory: swap from memory.swap.current");
    is_u64(st.hierarchical_memory_limit, 64 * MiB, "v2 memory: limit from memory.max");
    is_u64(st.hierarchical_memsw_limit, 64 * MiB, "v2 memory: memsw = memory.max + swap.max 0");
    /* anon + file + swapcached - inactive_file */
    is_u64(st.total_usage_toward_limit, UINT64_C(23855104) + 10457088 + 8192 - 6262784,
           "v2 memory: TotalUsageTowardLimit");

    is_int(cgroup_memory_stat_parse(true, v2_memory_stat, UINT64_MAX, UINT64_MAX, 0, &st), 0,
           "v2 memory: parse unlimited");
    is_u64(st.hierarchical_memory_limit, v1_unlimited(), "v2 memory: max reads as v1's unlimited");
    is_u64(st.hierarchical_memsw_limit, v1_unlimited(), "v2 memory: memsw max likewise");
    is_int(cgroup_memory_stat_parse(true, v2_memory_stat, 64 * MiB, 32 * MiB, 0, &st), 0,
           "v2 memory: parse with a swap limit");
    is_u64(st.hierarchical_memsw_limit, 96 * MiB, "v2 memory: memsw = memory.max + swap.max");
    is_int(cgroup_memory_stat_parse(true, v2_memory_stat, 64 * MiB, UINT64_MAX, 0, &st), 0,
           "v2 memory: parse with swap unlimited");
    is_u64(st.hierarchical_memsw_limit, v1_unlimited(), "v2 memory: swap max = memsw unlimited");

    is_int(cgroup_memory_stat_parse(true, "anon 10\ninactive_file 4096\n", 0, 0, 0, &st), 0,
           "v2 memory: parse small");
    is_u64(st.total_usage_toward_limit, 0, "v2 memory: TotalUsageTowardLimit floored at 0");
    is_int(cgroup_memory_stat_parse(true, "nothing here\n", 0, 0, 0, &st), -EINVAL,
           "memory: text without a known key refused");
    is_int(cgroup_memory_stat_parse(false, "", 0, 0, 0, &st), -EINVAL, "memory: empty refused");
}

static void test_cpu(void)
{
    CgroupCpuStat st;
    is_int(cgroup_cpu_stat_parse_v1("1026239408\n", "user 63\nsystem 40\n",
                                    "nr_periods 21\nnr_throttled 20\nthrottled_time 929707641\n"
                                    "nr_bursts 0\nburst_time 0\n",
                                    100, &st),
           0, "v1 cpu: parse");
    is_u64(st.usage_ns, 1026239408, "v1 cpu: cpuacct.usage in ns");
    is_u64(st.user_ns, 630 * MS_NS, "v1 cpu: user ticks to ns");
    is_u64(st.system_ns, 400 * MS_NS, "v1 cpu: system ticks to ns");
    ok(st.nr_periods == 21 && st.nr_throttled == 20 && st.throttled_ns == 929707641,
       "v1 cpu: throttling from cpu.stat");
    is_int(cgroup_cpu_stat_parse_v1("5", "user 1\nsystem 2\n", NULL, 100, &st), 0,
           "v1 cpu: parse without cpu.stat");
    ok(st.usage_ns == 5 && st.nr_periods == 0 && st.nr_throttled == 0 && st.throttled_ns == 0,
       "v1 cpu: no cpu.stat, no throttling counters");
    is_int(cgroup_cpu_stat_parse_v1("5", "user 7\nsystem 30000000000\n", NULL, 3, &st), 0,
           "v1 cpu: odd tick rate");
    is_u64(st.user_ns, UINT64_C(2333333333), "v1 cpu: 7 ticks at 3 Hz");
    is_u64(st.system_ns, UINT64_C(10000000000000000000),
           "v1 cpu: a huge tick count does not overflow");
    is_int(cgroup_cpu_stat_parse_v1("x", "user 1\nsystem 2\n", NULL, 100, &st), -EINVAL,
           "v1 cpu: bad usage refused");
    is_int(cgroup_cpu_stat_parse_v1("5", "user 1\n", NULL, 100, &st), -EINVAL,
           "v1 cpu: cpuacct.stat without system refused");
    is_int(cgroup_cpu_stat_parse_v1("5", "user 1\nsystem 2\n", NULL, 0, &st), -EINVAL,
           "v1 cpu: zero tick rate refused");

    is_int(cgroup_cpu_stat_parse_v2("usage_usec 1050815\nuser_usec 560711\nsystem_usec 490103\n"
                                    "nr_periods 7\nnr_throttled 3\nthrottled_usec 2500\n"
                                    "nr_bursts 0\nburst_usec 0\n",
                                    &st),
           0, "v2 cpu: parse");
    ok(st.usage_ns == UINT64_C(1050815000) && st.user_ns == UINT64_C(560711000) &&
           st.system_ns == UINT64_C(490103000),
       "v2 cpu: microseconds to ns");
    ok(st.nr_periods == 7 && st.nr_throttled == 3 && st.throttled_ns == 2500000,
       "v2 cpu: throttling");
    /* A v2 group without the cpu controller (the unified group of a hybrid host). */
    is_int(cgroup_cpu_stat_parse_v2("usage_usec 5\nuser_usec 3\nsystem_usec 2\n", &st), 0,
           "v2 cpu: parse without the cpu controller");
    ok(st.usage_ns == 5000 && st.user_ns == 3000 && st.system_ns == 2000 && st.nr_periods == 0 &&
           st.throttled_ns == 0,
       "v2 cpu: core keys only");
    is_int(cgroup_cpu_stat_parse_v2("user_usec 3\n", &st), -EINVAL, "v2 cpu: no usage refused");
}

/* ---- the readers on fake trees ------------------------------------------ */

#define PARENT "cloche-cgstat-fake"

static char tmp_root[PATH_MAX - 256];

static void put(const char *dir, const char *rel, const char *content)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (mkdir_p(path, 0755) < 0)
        abort();
    *slash = '/';
    FILE *f = fopen(path, "we");
    if (!f)
        abort();
    fputs(content, f);
    fclose(f);
}

static void drop(const char *dir, const char *rel)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    (void)unlink(path);
}

/* <tmp>/<name> with a mountinfo file and the mount points (mkdir'd). */
static const char *fake_root(const char *name, const char *mountinfo, const char *const *mounts)
{
    static char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", tmp_root, name);
    put(dir, "mountinfo", mountinfo);
    for (; *mounts; mounts++) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%s", dir, *mounts);
        if (mkdir_p(path, 0755) < 0)
            abort();
    }
    return dir;
}

static int fake_system(const char *root, CgroupSystem **ret)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/mountinfo", root);
    _cleanup_(cgroup_mounts_clear) CgroupMounts m = {0};
    int r = cgroup_detect(path, root, &m);
    if (r < 0)
        return r;
    return cgroup_system_setup(&m, PARENT, ret, NULL);
}

static bool readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLPRI};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* Like this host without its unified hierarchy: cpu and cpuacct apart. */
static const char v1_mountinfo[] =
    "23 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n";

static void test_fake_v1(void)
{
    static const char *const mounts[] = {"sys/fs/cgroup/cpu", "sys/fs/cgroup/cpuacct",
                                         "sys/fs/cgroup/memory", "sys/fs/cgroup/pids", NULL};
    const char *root = fake_root("v1", v1_mountinfo, mounts);
    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    is_int(fake_system(root, &s), 0, "fake v1: setup");
    _cleanup_cgroup_ Cgroup *cg = NULL;
    if (!s || !ok(cgroup_create(s, "c1", &cg) == 0, "fake v1: create"))
        return;
#define MEM "sys/fs/cgroup/memory/" PARENT "/c1/"
#define CPU "sys/fs/cgroup/cpu/" PARENT "/c1/"
#define ACCT "sys/fs/cgroup/cpuacct/" PARENT "/c1/"
#define PIDS "sys/fs/cgroup/pids/" PARENT "/c1/"
    put(root, MEM "memory.stat", v1_memory_stat);
    put(root, MEM "memory.usage_in_bytes", "33300480\n");
    put(root, MEM "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
    put(root, ACCT "cpuacct.usage", "1026239408\n");
    put(root, ACCT "cpuacct.stat", "user 63\nsystem 40\n");
    put(root, CPU "cpu.stat", "nr_periods 21\nnr_throttled 20\nthrottled_time 929707641\n");
    put(root, PIDS "pids.current", "2\n");
    put(root, PIDS "pids.max", "max\n");

    CgroupMemoryStat mem;
    is_int(cgroup_read_memory_stat(cg, &mem), 0, "fake v1: read memory stat");
    ok(mem.rss == 28012544 && mem.total_cache == 4644864 &&
           mem.total_usage_toward_limit == UINT64_C(28012544) + 4644864 - 4280320,
       "fake v1: memory stat from memory.stat");
    uint64_t v;
    ok(cgroup_read_memory_usage(cg, &v) == 0 && v == 33300480,
       "fake v1: usage from memory.usage_in_bytes");
    ok(cgroup_oom_count(cg, &v) == 0 && v == 3, "fake v1: oom_kill from memory.oom_control");
    CgroupCpuStat cpu;
    is_int(cgroup_read_cpu_stat(cg, &cpu), 0, "fake v1: read cpu stat");
    ok(cpu.usage_ns == 1026239408 &&
           cpu.user_ns == 63 * 1000 * MS_NS / (uint64_t)sysconf(_SC_CLK_TCK) &&
           cpu.nr_throttled == 20 && cpu.throttled_ns == 929707641,
       "fake v1: cpu from cpuacct (usage, stat) and cpu (cpu.stat)");
    drop(root, CPU "cpu.stat");
    ok(cgroup_read_cpu_stat(cg, &cpu) == 0 && cpu.usage_ns == 1026239408 && cpu.nr_periods == 0,
       "fake v1: cpu.stat missing is fine");
    CgroupPidStat pids;
    ok(cgroup_read_pid_stat(cg, &pids) == 0 && pids.current == 2 && pids.max == 0,
       "fake v1: pids, max reads 0");
    put(root, PIDS "pids.max", "32\n");
    ok(cgroup_read_pid_stat(cg, &pids) == 0 && pids.max == 32, "fake v1: pids.max 32");
    put(root, MEM "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
    is_int(cgroup_oom_count(cg, &v), -ENOENT, "fake v1: no oom_kill (kernel < 4.13) is -ENOENT");
    drop(root, MEM "memory.stat");
    is_int(cgroup_read_memory_stat(cg, &mem), -ENOENT, "fake v1: missing memory.stat");
#undef MEM
#undef CPU
#undef ACCT
#undef PIDS
}

static const char v2_mountinfo[] =
    "23 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

static void test_fake_v2(void)
{
    static const char *const mounts[] = {"sys/fs/cgroup", NULL};
    const char *root = fake_root("v2", v2_mountinfo, mounts);
    put(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
    put(root, "sys/fs/cgroup/cgroup.subtree_control", "cpu memory pids\n");
    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    is_int(fake_system(root, &s), 0, "fake v2: setup");
    _cleanup_cgroup_ Cgroup *cg = NULL;
    if (!s || !ok(cgroup_create(s, "c1", &cg) == 0, "fake v2: create"))
        return;
#define G "sys/fs/cgroup/" PARENT "/c1/"
    put(root, G "memory.stat", v2_memory_stat);
    put(root, G "memory.max", "67108864\n");
    put(root, G "memory.swap.max", "0\n");
    put(root, G "memory.swap.current", "0\n");
    put(root, G "memory.current", "34783232\n");
    put(root, G "memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n");
    put(root, G "cpu.stat",
        "usage_usec 1050815\nuser_usec 560711\nsystem_usec 490103\n"
        "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n");
    put(root, G "pids.current", "1\n");
    put(root, G "pids.max", "max\n");

    CgroupMemoryStat mem;
    is_int(cgroup_read_memory_stat(cg, &mem), 0, "fake v2: read memory stat");
    ok(mem.rss == 23855104 && mem.cache == 10457088 && mem.hierarchical_memory_limit == 64 * MiB &&
           mem.hierarchical_memsw_limit == 64 * MiB && mem.swap == 0,
       "fake v2: memory stat from memory.stat, memory.max, memory.swap.*");
    drop(root, G "memory.swap.max");
    drop(root, G "memory.swap.current");
    put(root, G "memory.max", "max\n");
    is_int(cgroup_read_memory_stat(cg, &mem), 0, "fake v2: read without swap files");
    ok(mem.hierarchical_memory_limit == v1_unlimited() && mem.swap == 0,
       "fake v2: unlimited, no swap");
    uint64_t v;
    ok(cgroup_read_memory_usage(cg, &v) == 0 && v == 34783232, "fake v2: memory.current");
    ok(cgroup_oom_count(cg, &v) == 0 && v == 1, "fake v2: oom_kill, not oom");
    CgroupCpuStat cpu;
    ok(cgroup_read_cpu_stat(cg, &cpu) == 0 && cpu.usage_ns == UINT64_C(1050815000) &&
           cpu.user_ns == UINT64_C(560711000),
       "fake v2: cpu.stat");
    CgroupPidStat pids;
    ok(cgroup_read_pid_stat(cg, &pids) == 0 && pids.current == 1 && pids.max == 0, "fake v2: pids");

    /* inotify works on plain files too. */
    _cleanup_close_ int fd = -EBADF;
    is_int(cgroup_oom_watch_open(cg, &fd), 0, "fake v2: open the OOM watch");
    ok(fd >= 0 && !readable(fd, 0), "fake v2: quiet at first");
    put(root, G "memory.events", "low 0\nhigh 0\nmax 9\noom 3\noom_kill 2\noom_group_kill 0\n");
    ok(readable(fd, 1000), "fake v2: readable after memory.events changed");
    is_int(cgroup_oom_watch_drain(fd), 1, "fake v2: drain consumed it");
    is_int(cgroup_oom_watch_drain(fd), 0, "fake v2: nothing more to drain");
    ok(!readable(fd, 0), "fake v2: quiet again");
    ok(cgroup_oom_count(cg, &v) == 0 && v == 2, "fake v2: the count moved");
    is_int(cgroup_oom_watch_drain(-1), -EBADF, "drain of a bad fd");
    drop(root, G "memory.events");
    int fd2 = -EBADF;
    is_int(cgroup_oom_watch_open(cg, &fd2), -ENOENT, "fake v2: no memory.events, no watch");
    ok(fd2 == -EBADF, "fake v2: ret_fd untouched on error");
#undef G
}

/* ---- the real hierarchies (root only) ----------------------------------- */

typedef enum Work {
    WORK_STATS, /* touch 20 MiB, burn 150 ms of CPU, report, wait to be released */
    WORK_HOG,   /* touch 64 MiB */
} Work;

typedef struct Child {
    pid_t pid;
    int go;   /* write a byte: start; close: exit (WORK_STATS) */
    int done; /* a byte arrives when WORK_STATS has done its work */
} Child;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void touch(size_t bytes)
{
    volatile char *p = malloc(bytes);
    if (!p)
        _exit(3);
    for (size_t i = 0; i < bytes; i += 4096)
        p[i] = 1;
}

static void burn_cpu(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    int64_t end = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ms;
    for (;;) {
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        if ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 >= end)
            return;
    }
}

/* The child waits for "go" so that it is attached before it allocates: v1 memory
 * charges do not follow a moved task. */
static Child spawn(Work work)
{
    int go[2], done[2];
    if (pipe2(go, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0)
        abort();
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        abort();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        close(go[1]);
        close(done[0]);
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(1);
        if (work == WORK_HOG) {
            touch(64 * MiB);
            _exit(0);
        }
        touch(20 * MiB);
        burn_cpu(150);
        if (write(done[1], "x", 1) != 1)
            _exit(1);
        (void)read(go[0], &c, 1); /* until released */
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    return (Child){.pid = pid, .go = go[1], .done = done[0]};
}

static int reap(Child *c)
{
    closep(&c->go);
    closep(&c->done);
    int status = 0;
    if (c->pid > 0 && waitpid(c->pid, &status, 0) != c->pid)
        status = -1;
    c->pid = 0;
    return status;
}

static void real_stats(const CgroupSystem *s)
{
    _cleanup_cgroup_ Cgroup *cg = NULL;
    if (!ok(cgroup_create(s, "m", &cg) == 0, "real: create m"))
        return;
    ok(cgroup_set_memory_limit(cg, 256 * MiB) == 0 && cgroup_set_pids_max(cg, 16) == 0,
       "real: 256 MiB, 16 pids");
    Child c = spawn(WORK_STATS);
    char byte = 'x';
    ok(cgroup_attach(cg, c.pid, 0) == 0 && write(c.go, &byte, 1) == 1, "real: child attached");
    ok(read(c.done, &byte, 1) == 1, "real: child touched 20 MiB and burnt 150 ms of CPU");

    CgroupMemoryStat mem;
    is_int(cgroup_read_memory_stat(cg, &mem), 0, "real: read memory stat");
    printf("# rss %" PRIu64 " cache %" PRIu64 " pgfault %" PRIu64 " TotalUsageTowardLimit %" PRIu64
           " limit %" PRIu64 "\n",
           mem.rss, mem.cache, mem.pgfault, mem.total_usage_toward_limit,
           mem.hierarchical_memory_limit);
    ok(mem.rss >= 18 * MiB && mem.total_rss >= 18 * MiB, "real: rss holds the 20 MiB");
    ok(mem.pgfault > 0 && mem.total_pgfault >= mem.pgfault, "real: page faults counted");
    ok(mem.total_usage_toward_limit >= 18 * MiB, "real: TotalUsageTowardLimit holds them too");
    is_u64(mem.hierarchical_memory_limit, 256 * MiB, "real: hierarchical_memory_limit");
    uint64_t usage = 0;
    int r = cgroup_read_memory_usage(cg, &usage);
    ok(r == 0 && usage >= 18 * MiB, "real: usage %" PRIu64, usage);

    CgroupCpuStat cpu;
    is_int(cgroup_read_cpu_stat(cg, &cpu), 0, "real: read cpu stat");
    printf("# usage %" PRIu64 " ns, user %" PRIu64 " ns, system %" PRIu64 " ns\n", cpu.usage_ns,
           cpu.user_ns, cpu.system_ns);
    ok(cpu.usage_ns >= 100 * MS_NS, "real: cpu usage >= 100 ms");
    ok(cpu.user_ns + cpu.system_ns > 0, "real: user + system > 0");

    CgroupPidStat pids;
    ok(cgroup_read_pid_stat(cg, &pids) == 0 && pids.current == 1 && pids.max == 16,
       "real: pids current 1, max 16");
    uint64_t ooms = UINT64_MAX;
    ok(cgroup_oom_count(cg, &ooms) == 0 && ooms == 0, "real: no OOM kill");

    is_int(reap(&c), 0, "real: child released and exited 0");
    is_int(cgroup_destroy(cg, 5000), 0, "real: destroy m");
}

static void real_oom(const CgroupSystem *s)
{
    _cleanup_cgroup_ Cgroup *cg = NULL;
    if (!ok(cgroup_create(s, "oom", &cg) == 0, "real: create oom"))
        return;
    is_int(cgroup_set_memory_limit(cg, 16 * MiB), 0, "real: 16 MiB");
    _cleanup_close_ int fd = -EBADF;
    is_int(cgroup_oom_watch_open(cg, &fd), 0, "real: open the OOM watch");
    uint64_t before = UINT64_MAX, after = 0;
    ok(cgroup_oom_count(cg, &before) == 0 && before == 0, "real: no OOM kill yet");
    ok(fd >= 0 && !readable(fd, 0), "real: the watch is quiet");

    Child c = spawn(WORK_HOG);
    char byte = 'x';
    ok(cgroup_attach(cg, c.pid, 0) == 0 && write(c.go, &byte, 1) == 1,
       "real: hog attached and started");
    int64_t start = now_ms();
    bool fired = readable(fd, 2000);
    int64_t took = now_ms() - start;
    ok(fired, "real: the watch fires within 2 s (%" PRId64 " ms)", took);
    int status = reap(&c);
    ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "real: the hog was killed (%#x)",
       status);
    int r = cgroup_oom_count(cg, &after);
    ok(r == 0 && after >= 1, "real: oom_kill went from %" PRIu64 " to %" PRIu64, before, after);
    is_int(cgroup_oom_watch_drain(fd), 1, "real: drain");
    /* v2 may still deliver a late memory.events change; drain it before checking. */
    (void)readable(fd, 50);
    (void)cgroup_oom_watch_drain(fd);
    ok(!readable(fd, 0), "real: quiet after the drain");

    is_int(cgroup_destroy(cg, 5000), 0, "real: destroy oom");
    printf("# the watch %s when the group goes\n", readable(fd, 500) ? "fires" : "stays quiet");
}

static void real_tests(const CgroupMounts *m, const char *parent)
{
    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    const char *missing = NULL;
    int r = cgroup_system_setup(m, parent, &s, &missing);
    if (!ok(r == 0, "real: setup %s under %s (%d, %s)", parent, cgroup_layout_to_string(m->layout),
            r, missing ? missing : "-"))
        return;
    real_stats(s);
    real_oom(s);
    is_int(cgroup_system_remove_parent(s), 0, "real: remove the parent");
}

/* Remove whatever the runner left behind: it only ever made these names. */
static bool sweep(const CgroupMounts *m, const char *parent)
{
    static const char *const groups[] = {"m", "oom"};
    bool left = false;
    for (int c = 0; c <= _CGROUP_CONTROLLER_MAX; c++) {
        const char *mnt = c < _CGROUP_CONTROLLER_MAX ? m->v1[c] : m->v2;
        if (!mnt)
            continue;
        char path[PATH_MAX];
        for (size_t g = 0; g < ELEMENTSOF(groups); g++) {
            snprintf(path, sizeof(path), "%s/%s/%s", mnt, parent, groups[g]);
            for (int i = 0; i < 100 && rmdir(path) < 0 && errno == EBUSY; i++)
                usleep(10000);
        }
        snprintf(path, sizeof(path), "%s/%s", mnt, parent);
        (void)rmdir(path);
        left = left || access(path, F_OK) == 0;
    }
    return !left;
}

static void test_real(void)
{
    if (geteuid() != 0) {
        ok(1, "# SKIP the real cgroup hierarchy needs root");
        return;
    }
    _cleanup_(cgroup_mounts_clear) CgroupMounts m = {0};
    if (cgroup_detect("/proc/self/mountinfo", NULL, &m) < 0 || m.layout == CGROUP_LAYOUT_NONE) {
        ok(1, "# SKIP no cgroup hierarchy here");
        return;
    }
    char parent[64];
    snprintf(parent, sizeof(parent), "cloche-cgstat-%d", (int)getpid());

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        real_tests(&m, parent);
        fflush(stdout);
        int counts[2] = {tap_count, tap_failed};
        if (write(p[1], counts, sizeof(counts)) != sizeof(counts))
            _exit(2);
        _exit(0);
    }
    close(p[1]);
    int status = 0, counts[2];
    ssize_t got = read(p[0], counts, sizeof(counts));
    close(p[0]);
    waitpid(pid, &status, 0);
    if (got == sizeof(counts)) {
        tap_count = counts[0];
        tap_failed = counts[1];
    } else {
        ok(0, "real: the test runner died (status %#x)", status);
    }
    ok(sweep(&m, parent), "real: nothing left under %s", parent);
}

int main(void)
{
    snprintf(tmp_root, sizeof(tmp_root), "%s/cloche-cgstat-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root))
        abort();
    test_memory_v1();
    test_memory_v2();
    test_cpu();
    test_fake_v1();
    test_fake_v2();
    test_real();
    ok(rm_rf_at(AT_FDCWD, tmp_root) == 0, "fake trees removed");
    return tap_done();
}
