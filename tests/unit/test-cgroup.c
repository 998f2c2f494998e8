/* The cgroup module. Part one runs against fake cgroupfs trees (plain files in a temp
 * dir, described by fake mountinfo text): this machine's hybrid layout, pure v1 with
 * co-mounted cpu,cpuacct, pure v2, and v2 hosts that lack a controller. Part two
 * (root only) runs on the real hierarchies of this machine under a parent named
 * cloche-test-<random>, in a forked child so that the parent can sweep away anything
 * left behind even if the child crashes. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

#include "cloche/cgroup.h"
#include "cloche/cleanup.h"
#include "cloche/fileio.h"

#define MiB (UINT64_C(1) << 20)
#define PARENT "cloche-test-fake"

static char tmp_root[PATH_MAX - 128];

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

static void mkdirs(const char *dir, const char *rel)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    if (mkdir_p(path, 0755) < 0)
        abort();
}

/* Content of dir/rel without its trailing newline, in a static buffer; NULL if
 * absent. */
static const char *slurp(const char *dir, const char *rel)
{
    static char buf[4096];
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return buf;
}

static bool exists(const char *dir, const char *rel)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return access(path, F_OK) == 0;
}

/* A fresh fake root <tmp>/<name> holding a "mountinfo" file with text. */
static const char *fake_root(const char *name, const char *mountinfo)
{
    static char dir[PATH_MAX + 64];
    snprintf(dir, sizeof(dir), "%s/%s", tmp_root, name);
    mkdirs(dir, "");
    put(dir, "mountinfo", mountinfo);
    return dir;
}

static char mountinfo_path[PATH_MAX + 16];
static int detect(const char *root, CgroupMounts *m)
{
    snprintf(mountinfo_path, sizeof(mountinfo_path), "%s/mountinfo", root);
    return cgroup_detect(mountinfo_path, root, m);
}

static bool is_path(const char *got, const char *root, const char *rel)
{
    char want[PATH_MAX * 2];
    snprintf(want, sizeof(want), "%s%s", root, rel);
    bool pass = got && strcmp(got, want) == 0;
    if (!pass)
        printf("#   got '%s', want '%s'\n", got ? got : "(null)", want);
    return pass;
}

static bool group_path_is(const CgroupSystem *s, CgroupController c, const char *name,
                          const char *root, const char *rel)
{
    char buf[PATH_MAX];
    if (cgroup_system_path(s, c, name, buf, sizeof(buf)) < 0)
        return false;
    return is_path(buf, root, rel);
}

static const CgroupLimits test_limits = {
    .memory_bytes = 64 * MiB,
    .cpu_shares = 512,
    .cpu_quota_us = 50000,
    .cpu_period_us = 100000,
    .pids_max = 32,
};

/* ---- this machine's hybrid layout --------------------------------------- */

static const char hybrid_mountinfo[] =
    "23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "60 23 0:50 / /mnt/with\\040space rw,relatime shared:7 master:2 - ext4 /dev/vdb rw\n";

static void test_hybrid(void)
{
    const char *root = fake_root("hybrid", hybrid_mountinfo);
    static const char *const dirs[] = {"cpu",     "cpuacct", "cpuset", "memory",  "devices",
                                       "freezer", "blkio",   "pids",   "systemd", "unified"};
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "sys/fs/cgroup/%s", dirs[i]);
        mkdirs(root, rel);
    }
    put(root, "sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
    put(root, "sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n");
    put(root, "sys/fs/cgroup/unified/cgroup.subtree_control", "");

    _cleanup_(cgroup_mounts_clear) CgroupMounts m = {0};
    ok(detect(root, &m) == 0, "hybrid: detect");
    is_str(cgroup_layout_to_string(m.layout), "hybrid", "hybrid: layout");
    ok(is_path(m.v1[CGROUP_CONTROLLER_CPU], root, "/sys/fs/cgroup/cpu"), "hybrid: cpu mount");
    ok(is_path(m.v1[CGROUP_CONTROLLER_CPUACCT], root, "/sys/fs/cgroup/cpuacct"),
       "hybrid: cpuacct is a separate mount");
    ok(is_path(m.v1[CGROUP_CONTROLLER_MEMORY], root, "/sys/fs/cgroup/memory"),
       "hybrid: memory mount");
    ok(is_path(m.v1[CGROUP_CONTROLLER_PIDS], root, "/sys/fs/cgroup/pids"), "hybrid: pids mount");
    ok(is_path(m.v1[CGROUP_CONTROLLER_FREEZER], root, "/sys/fs/cgroup/freezer"),
       "hybrid: freezer mount");
    ok(is_path(m.v1[CGROUP_CONTROLLER_BLKIO], root, "/sys/fs/cgroup/blkio"), "hybrid: blkio");
    ok(!m.v1[CGROUP_CONTROLLER_HUGETLB] && !m.v1[CGROUP_CONTROLLER_IO],
       "hybrid: hugetlb and io not on v1");
    ok(is_path(m.v2, root, "/sys/fs/cgroup/unified"), "hybrid: unified is the v2 mount");
    is_int(m.v2_controllers, CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_HUGETLB),
           "hybrid: unified has only hugetlb");

    const char *missing = NULL;
    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    is_int(cgroup_system_setup(&m, PARENT, &s, &missing), 0, "hybrid: setup");
    if (!s)
        return;
    is_int(cgroup_system_layout(s), CGROUP_LAYOUT_HYBRID, "hybrid: system layout");
    ok(exists(root, "sys/fs/cgroup/memory/" PARENT) && exists(root, "sys/fs/cgroup/cpu/" PARENT) &&
           exists(root, "sys/fs/cgroup/cpuacct/" PARENT) &&
           exists(root, "sys/fs/cgroup/pids/" PARENT) &&
           exists(root, "sys/fs/cgroup/unified/" PARENT) &&
           exists(root, "sys/fs/cgroup/devices/" PARENT),
       "hybrid: parent made in memory, cpu, cpuacct, pids, devices and unified");
    ok(!exists(root, "sys/fs/cgroup/freezer/" PARENT) &&
           !exists(root, "sys/fs/cgroup/cpuset/" PARENT) &&
           !exists(root, "sys/fs/cgroup/systemd/" PARENT),
       "hybrid: no parent in freezer, cpuset or name=systemd");
    is_str(slurp(root, "sys/fs/cgroup/unified/cgroup.subtree_control"), "",
           "hybrid: unified root subtree_control untouched");
    ok(!exists(root, "sys/fs/cgroup/unified/" PARENT "/cgroup.subtree_control"),
       "hybrid: no subtree_control written under unified at all");
    ok(group_path_is(s, CGROUP_CONTROLLER_CPUACCT, "c1", root,
                     "/sys/fs/cgroup/cpuacct/" PARENT "/c1"),
       "hybrid: cpuacct path");
    ok(group_path_is(s, CGROUP_CORE, "c1", root, "/sys/fs/cgroup/unified/" PARENT "/c1"),
       "hybrid: core files live in unified");
    ok(group_path_is(s, CGROUP_CONTROLLER_MEMORY, NULL, root, "/sys/fs/cgroup/memory/" PARENT),
       "hybrid: parent path");
    char buf[PATH_MAX];
    is_int(cgroup_system_path(s, CGROUP_CONTROLLER_FREEZER, "c1", buf, sizeof(buf)), -ENODEV,
           "hybrid: freezer not used");

    _cleanup_cgroup_ Cgroup *cg = NULL;
    is_int(cgroup_create(s, "c1", &cg), 0, "hybrid: create c1");
    if (!cg)
        return;
    is_str(cgroup_name(cg), "c1", "hybrid: name");
    ok(exists(root, "sys/fs/cgroup/memory/" PARENT "/c1") &&
           exists(root, "sys/fs/cgroup/cpu/" PARENT "/c1") &&
           exists(root, "sys/fs/cgroup/cpuacct/" PARENT "/c1") &&
           exists(root, "sys/fs/cgroup/pids/" PARENT "/c1") &&
           exists(root, "sys/fs/cgroup/unified/" PARENT "/c1"),
       "hybrid: group made in all five hierarchies");
    Cgroup *dup = NULL;
    is_int(cgroup_create(s, "c1", &dup), -EEXIST, "hybrid: create twice refused");
    ok(exists(root, "sys/fs/cgroup/unified/" PARENT "/c1"), "hybrid: refusal removed nothing");
    is_int(cgroup_create(s, "../x", &dup), -EINVAL, "name with '/' refused");
    is_int(cgroup_create(s, ".x", &dup), -EINVAL, "name with leading dot refused");
    is_int(cgroup_create(s, "", &dup), -EINVAL, "empty name refused");

    is_int(cgroup_apply_limits(cg, &test_limits), 0, "hybrid: apply limits");
    char rel[256];
#define AT(h, f) (snprintf(rel, sizeof(rel), "sys/fs/cgroup/%s/" PARENT "/c1/%s", h, f), rel)
    is_str(slurp(root, AT("memory", "memory.limit_in_bytes")), "67108864", "v1 memory limit");
    is_str(slurp(root, AT("memory", "memory.memsw.limit_in_bytes")), "67108864",
           "v1 memsw limit equals memory limit");
    is_str(slurp(root, AT("cpu", "cpu.shares")), "512", "v1 cpu.shares");
    is_str(slurp(root, AT("cpu", "cpu.cfs_period_us")), "100000", "v1 cfs period");
    is_str(slurp(root, AT("cpu", "cpu.cfs_quota_us")), "50000", "v1 cfs quota");
    is_str(slurp(root, AT("pids", "pids.max")), "32", "v1 pids.max");
    ok(!exists(root, AT("unified", "memory.max")) && !exists(root, AT("unified", "cpu.weight")),
       "hybrid: no limit written to unified");

    CgroupLimits l;
    is_int(cgroup_get_limits(cg, &l), 0, "hybrid: read limits back");
    is_u64(l.memory_bytes, 64 * MiB, "read back memory");
    is_u64(l.cpu_shares, 512, "read back shares");
    is_u64(l.cpu_weight, 20, "weight computed from shares");
    is_u64(l.cpu_quota_us, 50000, "read back quota");
    is_u64(l.cpu_period_us, 100000, "read back period");
    is_u64(l.pids_max, 32, "read back pids");

    is_int(cgroup_apply_limits(cg, &(CgroupLimits){0}), 0, "hybrid: lift every limit");
    is_str(slurp(root, AT("memory", "memory.limit_in_bytes")), "-1", "v1 memory unlimited");
    is_str(slurp(root, AT("memory", "memory.memsw.limit_in_bytes")), "-1", "v1 memsw unlimited");
    is_str(slurp(root, AT("cpu", "cpu.shares")), "1024", "v1 default shares");
    is_str(slurp(root, AT("cpu", "cpu.cfs_quota_us")), "-1", "v1 no cpu cap");
    is_str(slurp(root, AT("pids", "pids.max")), "max", "pids.max unlimited");
    is_int(cgroup_get_limits(cg, &l), 0, "hybrid: read unlimited back");
    ok(l.memory_bytes == 0 && l.cpu_quota_us == 0 && l.pids_max == 0 && l.cpu_shares == 1024,
       "unlimited reads back as zeros");
    uint64_t v = 0;
    is_int(cgroup_read_u64(cg, CGROUP_CONTROLLER_PIDS, "pids.max", &v), 0, "read_u64");
    is_u64(v, UINT64_MAX, "\"max\" reads as UINT64_MAX");

    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    is_int(cgroup_attach(cg, getpid(), 0), 0, "hybrid: attach");
    ok(strcmp(slurp(root, AT("memory", "cgroup.procs")), pid) == 0 &&
           strcmp(slurp(root, AT("cpu", "cgroup.procs")), pid) == 0 &&
           strcmp(slurp(root, AT("cpuacct", "cgroup.procs")), pid) == 0 &&
           strcmp(slurp(root, AT("pids", "cgroup.procs")), pid) == 0 &&
           strcmp(slurp(root, AT("unified", "cgroup.procs")), pid) == 0,
       "hybrid: attach writes cgroup.procs in every hierarchy");
    is_int(cgroup_attach(cg, 4242, CGROUP_ATTACH_SKIP_V2), 0, "hybrid: attach v1 only");
    ok(strcmp(slurp(root, AT("memory", "cgroup.procs")), "4242") == 0 &&
           strcmp(slurp(root, AT("unified", "cgroup.procs")), pid) == 0,
       "hybrid: CGROUP_ATTACH_SKIP_V2 leaves unified alone");
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    is_int(cgroup_list_pids(cg, &pids, &n), 0, "hybrid: list pids");
    ok(n == 1 && pids && pids[0] == getpid(), "hybrid: pids come from unified cgroup.procs");

    _cleanup_close_ int fd = cgroup_open_v2_fd(cg);
    ok(fd >= 0, "hybrid: v2 fd for CLONE_INTO_CGROUP");

    put(root, AT("memory", "memory.stat"), "cache 4096\nrss 8192\nrss_huge 0\n");
    char text[256];
    size_t len = 0;
    is_int(cgroup_read_file(cg, CGROUP_CONTROLLER_MEMORY, "memory.stat", text, sizeof(text), &len),
           0, "read memory.stat");
    is_int(len, 31, "whole file read");
    is_int(cgroup_keyed_get(text, "rss", &v), 0, "keyed rss");
    is_u64(v, 8192, "rss value, not rss_huge");
    char tiny[8];
    is_int(cgroup_read_file(cg, CGROUP_CONTROLLER_MEMORY, "memory.stat", tiny, sizeof(tiny), NULL),
           -ENOBUFS, "too small a buffer reported");

    Cgroup *again = NULL;
    is_int(cgroup_open_existing(s, "c1", &again), 0, "hybrid: open existing");
    again = cgroup_free(again);
    is_int(cgroup_open_existing(s, "c9", &again), -ENOENT, "hybrid: open missing group");
#undef AT
}

/* ---- pure v1, cpu and cpuacct co-mounted -------------------------------- */

static const char v1_mountinfo[] =
    "23 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "50 23 0:32 /docker/abc /mnt/mem rw,relatime - cgroup cgroup rw,memory\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "39 31 0:36 / /sys/fs/cgroup/pi\\040ds rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
    "rw,xattr,name=systemd\n";

static void test_v1(void)
{
    const char *root = fake_root("v1", v1_mountinfo);
    mkdirs(root, "sys/fs/cgroup/cpu,cpuacct");
    mkdirs(root, "sys/fs/cgroup/memory");
    mkdirs(root, "sys/fs/cgroup/freezer");
    mkdirs(root, "sys/fs/cgroup/pi ds");
    mkdirs(root, "sys/fs/cgroup/systemd");

    _cleanup_(cgroup_mounts_clear) CgroupMounts m = {0};
    ok(detect(root, &m) == 0, "v1: detect");
    is_str(cgroup_layout_to_string(m.layout), "v1", "v1: layout");
    ok(is_path(m.v1[CGROUP_CONTROLLER_CPU], root, "/sys/fs/cgroup/cpu,cpuacct") &&
           is_path(m.v1[CGROUP_CONTROLLER_CPUACCT], root, "/sys/fs/cgroup/cpu,cpuacct"),
       "v1: cpu and cpuacct co-mounted");
    ok(is_path(m.v1[CGROUP_CONTROLLER_MEMORY], root, "/sys/fs/cgroup/memory"),
       "v1: the hierarchy's root mount wins over a bind of a subgroup");
    ok(is_path(m.v1[CGROUP_CONTROLLER_PIDS], root, "/sys/fs/cgroup/pi ds"),
       "v1: octal escapes in mount points undone");
    ok(!m.v2 && !m.v1[CGROUP_CONTROLLER_CPUSET], "v1: no v2, no cpuset");

    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    is_int(cgroup_system_setup(&m, PARENT, &s, NULL), 0, "v1: setup");
    if (!s)
        return;
    ok(exists(root, "sys/fs/cgroup/cpu,cpuacct/" PARENT) &&
           exists(root, "sys/fs/cgroup/memory/" PARENT) &&
           exists(root, "sys/fs/cgroup/pi ds/" PARENT) &&
           exists(root, "sys/fs/cgroup/freezer/" PARENT) &&
           !exists(root, "sys/fs/cgroup/systemd/" PARENT),
       "v1: parent in cpu,cpuacct, memory, pids, freezer; not in name=systemd");
    ok(group_path_is(s, CGROUP_CONTROLLER_CPUACCT, "c1", root,
                     "/sys/fs/cgroup/cpu,cpuacct/" PARENT "/c1") &&
           group_path_is(s, CGROUP_CONTROLLER_CPU, "c1", root,
                         "/sys/fs/cgroup/cpu,cpuacct/" PARENT "/c1"),
       "v1: cpu and cpuacct map to one directory");
    ok(group_path_is(s, CGROUP_CORE, "c1", root, "/sys/fs/cgroup/memory/" PARENT "/c1"),
       "v1: core files from the memory hierarchy");

    _cleanup_cgroup_ Cgroup *cg = NULL;
    is_int(cgroup_create(s, "c1", &cg), 0, "v1: create");
    if (!cg)
        return;
    is_int(cgroup_apply_limits(cg, &test_limits), 0, "v1: apply limits");
    is_str(slurp(root, "sys/fs/cgroup/memory/" PARENT "/c1/memory.limit_in_bytes"), "67108864",
           "v1: memory.limit_in_bytes");
    ok(!exists(root, "sys/fs/cgroup/memory/" PARENT "/c1/memory.memsw.limit_in_bytes"),
       "v1: no memsw written without swap accounting");
    is_str(slurp(root, "sys/fs/cgroup/cpu,cpuacct/" PARENT "/c1/cpu.shares"), "512",
           "v1: cpu.shares");
    is_str(slurp(root, "sys/fs/cgroup/cpu,cpuacct/" PARENT "/c1/cpu.cfs_quota_us"), "50000",
           "v1: cfs quota");
    is_str(slurp(root, "sys/fs/cgroup/cpu,cpuacct/" PARENT "/c1/cpu.cfs_period_us"), "100000",
           "v1: cfs period");
    is_str(slurp(root, "sys/fs/cgroup/pi ds/" PARENT "/c1/pids.max"), "32", "v1: pids.max");
    is_int(cgroup_set_cpu(cg, 100000000, 0, 0), 0, "v1: huge shares accepted");
    is_str(slurp(root, "sys/fs/cgroup/cpu,cpuacct/" PARENT "/c1/cpu.shares"), "262144",
           "v1: shares clamped to 262144");
    is_int(cgroup_open_v2_fd(cg), -ENOENT, "v1: no v2 fd");

    is_int(cgroup_attach(cg, getpid(), 0), 0, "v1: attach");
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    is_int(cgroup_list_pids(cg, &pids, &n), 0, "v1: list");
    ok(n == 1 && pids[0] == getpid(), "v1: pids come from the memory hierarchy");
    is_int(cgroup_wait_empty(cg, 30), -ETIMEDOUT, "v1: wait times out while procs lists a pid");
    put(root, "sys/fs/cgroup/memory/" PARENT "/c1/cgroup.procs", "");
    is_int(cgroup_wait_empty(cg, 0), 0, "v1: empty cgroup.procs is empty");
}

/* ---- pure v2 ------------------------------------------------------------ */

static const char v2_mountinfo[] =
    "23 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

static const char *v2_tree(const char *name, const char *subtree_control)
{
    const char *root = fake_root(name, v2_mountinfo);
    put(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put(root, "sys/fs/cgroup/cgroup.subtree_control", subtree_control);
    return root;
}

static void test_v2(void)
{
    const char *root = v2_tree("v2", "cpuset cpu io memory pids\n");
    _cleanup_(cgroup_mounts_clear) CgroupMounts m = {0};
    ok(detect(root, &m) == 0, "v2: detect");
    is_str(cgroup_layout_to_string(m.layout), "v2", "v2: layout");
    ok(is_path(m.v2, root, "/sys/fs/cgroup"), "v2: mount");
    unsigned want = CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_CPUSET) |
                    CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_CPU) |
                    CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_IO) |
                    CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_MEMORY) |
                    CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_HUGETLB) |
                    CGROUP_CONTROLLER_BIT(CGROUP_CONTROLLER_PIDS);
    is_int(m.v2_controllers, want, "v2: root controllers");
    bool any_v1 = false;
    for (int c = 0; c < _CGROUP_CONTROLLER_MAX; c++)
        any_v1 = any_v1 || m.v1[c];
    ok(!any_v1, "v2: no v1 mounts");

    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    is_int(cgroup_system_setup(&m, PARENT, &s, NULL), 0, "v2: setup");
    if (!s)
        return;
    is_str(slurp(root, "sys/fs/cgroup/" PARENT "/cgroup.subtree_control"), "+cpu +memory +pids",
           "v2: controllers enabled in the parent's subtree_control");
    is_str(slurp(root, "sys/fs/cgroup/cgroup.subtree_control"), "cpuset cpu io memory pids",
           "v2: root subtree_control unchanged");
    ok(group_path_is(s, CGROUP_CONTROLLER_MEMORY, "c1", root, "/sys/fs/cgroup/" PARENT "/c1") &&
           group_path_is(s, CGROUP_CORE, "c1", root, "/sys/fs/cgroup/" PARENT "/c1"),
       "v2: one directory for everything");
    CgroupSystem *s2 = NULL;
    is_int(cgroup_system_setup(&m, PARENT, &s2, NULL), 0, "v2: setup again reuses the parent");
    cgroup_system_free(s2);

    _cleanup_cgroup_ Cgroup *cg = NULL;
    is_int(cgroup_create(s, "c1", &cg), 0, "v2: create");
    if (!cg)
        return;
    is_int(cgroup_apply_limits(cg, &test_limits), 0, "v2: apply limits");
#define G "sys/fs/cgroup/" PARENT "/c1/"
    is_str(slurp(root, G "memory.max"), "67108864", "v2: memory.max");
    is_str(slurp(root, G "memory.swap.max"), "0", "v2: memory.swap.max = 0");
    is_str(slurp(root, G "cpu.weight"), "20", "v2: cpu.weight from shares 512");
    is_str(slurp(root, G "cpu.max"), "50000 100000", "v2: cpu.max");
    is_str(slurp(root, G "pids.max"), "32", "v2: pids.max");
    ok(!exists(root, "sys/fs/cgroup/" PARENT "/cgroup.procs"), "v2: nothing put in the parent");

    CgroupLimits l;
    is_int(cgroup_get_limits(cg, &l), 0, "v2: read back");
    ok(l.memory_bytes == 64 * MiB && l.cpu_weight == 20 && l.cpu_quota_us == 50000 &&
           l.cpu_period_us == 100000 && l.pids_max == 32,
       "v2: limits read back");
    is_u64(l.cpu_shares, 501, "v2: shares read back as the smallest with that weight");
    is_u64(cgroup_cpu_shares_to_weight(l.cpu_shares), 20, "v2: and it maps to the same weight");

    is_int(cgroup_apply_limits(cg, &(CgroupLimits){0}), 0, "v2: lift every limit");
    ok(strcmp(slurp(root, G "memory.max"), "max") == 0 &&
           strcmp(slurp(root, G "memory.swap.max"), "max") == 0 &&
           strcmp(slurp(root, G "cpu.weight"), "100") == 0 &&
           strcmp(slurp(root, G "cpu.max"), "max 100000") == 0 &&
           strcmp(slurp(root, G "pids.max"), "max") == 0,
       "v2: unlimited values");
    is_int(cgroup_get_limits(cg, &l), 0, "v2: read unlimited back");
    ok(l.memory_bytes == 0 && l.cpu_quota_us == 0 && l.pids_max == 0 && l.cpu_weight == 100,
       "v2: unlimited reads back as zeros");
    is_int(cgroup_set_cpu(cg, 512, 20000, 50000), 0, "v2: cap with another period");
    is_str(slurp(root, G "cpu.max"), "20000 50000", "v2: cpu.max with period");
    is_int(cgroup_set_cpu(cg, 512, 999, 0), -EINVAL, "quota below 1 ms refused");
    is_int(cgroup_set_cpu(cg, 512, 5000, 500), -EINVAL, "period below 1 ms refused");
    is_int(cgroup_set_cpu(cg, 512, 5000, 2000000), -EINVAL, "period above 1 s refused");
    is_int(cgroup_attach(cg, getpid(), CGROUP_ATTACH_SKIP_V2), 0, "v2: v1-only attach is a no-op");
    ok(!exists(root, G "cgroup.procs"), "v2: nothing written");
    _cleanup_close_ int fd = cgroup_open_v2_fd(cg);
    ok(fd >= 0, "v2: v2 fd");
#undef G
}

static void test_v2_missing(void)
{
    const char *root = v2_tree("v2-nomem", "cpu pids\n");
    _cleanup_(cgroup_mounts_clear) CgroupMounts m = {0};
    ok(detect(root, &m) == 0, "v2 without memory: detect");
    const char *missing = NULL;
    CgroupSystem *s = NULL;
    is_int(cgroup_system_setup(&m, PARENT, &s, &missing), -ENODEV,
           "v2 without memory: setup refused");
    is_str(missing, "memory", "v2 without memory: names the missing controller");
    ok(!s, "v2 without memory: no system");
    ok(!exists(root, "sys/fs/cgroup/" PARENT), "v2 without memory: no parent left behind");
    is_str(slurp(root, "sys/fs/cgroup/cgroup.subtree_control"), "cpu pids",
           "v2 without memory: root subtree_control unchanged");

    /* A delegated group that hands all three down is enough. */
    put(root, "sys/fs/cgroup/delegated/cgroup.subtree_control", "cpu memory pids\n");
    is_int(cgroup_system_setup(&m, "delegated/" PARENT, &s, &missing), 0,
           "v2: setup under a delegated group");
    is_str(slurp(root, "sys/fs/cgroup/delegated/" PARENT "/cgroup.subtree_control"),
           "+cpu +memory +pids", "v2: delegated: our parent enables them");
    is_str(slurp(root, "sys/fs/cgroup/delegated/cgroup.subtree_control"), "cpu memory pids",
           "v2: delegated group's own subtree_control untouched");
    s = cgroup_system_free(s);
    is_int(cgroup_system_setup(&m, "absent/" PARENT, &s, NULL), -ENOENT,
           "v2: a parent's parent that does not exist is an error");

    /* v1 without pids. */
    const char *r1 = fake_root("v1-nopids", "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup "
                                            "rw,memory\n"
                                            "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup "
                                            "rw,cpu,cpuacct\n");
    _cleanup_(cgroup_mounts_clear) CgroupMounts m1 = {0};
    ok(detect(r1, &m1) == 0 && m1.layout == CGROUP_LAYOUT_V1, "v1 without pids: detect");
    missing = NULL;
    is_int(cgroup_system_setup(&m1, PARENT, &s, &missing), -ENODEV,
           "v1 without pids: setup refused");
    is_str(missing, "pids", "v1 without pids: names it");
}

static void test_misc(void)
{
    const char *root = fake_root("none", "23 1 254:0 / / rw - ext4 /dev/vda rw\n");
    _cleanup_(cgroup_mounts_clear) CgroupMounts m = {0};
    ok(detect(root, &m) == 0 && m.layout == CGROUP_LAYOUT_NONE, "no cgroup mounts: none");
    CgroupSystem *s = NULL;
    is_int(cgroup_system_setup(&m, "cloche", &s, NULL), -ENODEV, "none: setup refused");
    is_int(cgroup_detect("/nonexistent/mountinfo", NULL, &m), -ENOENT, "missing mountinfo");
    is_int(cgroup_system_setup(&m, "/abs", &s, NULL), -EINVAL, "absolute parent refused");
    is_int(cgroup_system_setup(&m, "a/../b", &s, NULL), -EINVAL, "parent with .. refused");
    is_int(cgroup_system_setup(&m, "a//b", &s, NULL), -EINVAL, "parent with empty part refused");

    is_u64(cgroup_cpu_shares_to_weight(2), 1, "weight(2) = 1");
    is_u64(cgroup_cpu_shares_to_weight(1024), 39, "weight(1024) = 39");
    is_u64(cgroup_cpu_shares_to_weight(262144), 10000, "weight(262144) = 10000");
    is_u64(cgroup_cpu_shares_to_weight(1), 1, "weight(1) clamps to 1");
    is_u64(cgroup_cpu_shares_to_weight(0), 0, "weight(0) = unset");

    const char *text = "anon 100\nfile 200\nbad x\nmax_thing max\n\nlast 7";
    uint64_t v = 0;
    is_int(cgroup_keyed_get(text, "file", &v), 0, "keyed: file");
    is_u64(v, 200, "keyed: file value");
    is_int(cgroup_keyed_get(text, "fil", &v), -ENOENT, "keyed: no prefix match");
    is_int(cgroup_keyed_get(text, "bad", &v), -EINVAL, "keyed: not a number");
    is_int(cgroup_keyed_get(text, "last", &v), 0, "keyed: last line without newline");
    is_u64(v, 7, "keyed: last value");
    const char *cur = text, *key;
    size_t klen, count = 0;
    uint64_t sum = 0;
    while (cgroup_keyed_next(&cur, &key, &klen, &v) > 0) {
        count++;
        if (v != UINT64_MAX)
            sum += v;
    }
    is_int(count, 4, "keyed_next: four numeric lines");
    is_u64(sum, 307, "keyed_next: values");
}

/* ---- the real hierarchies (root only) ----------------------------------- */

static pid_t spawn_sleeper(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        for (;;)
            pause();
    }
    return pid;
}

static bool reaped_by_sigkill(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return false;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static bool in_list(pid_t pid, const pid_t *pids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid)
            return true;
    return false;
}

static bool group_exists_anywhere(const CgroupSystem *s, const char *name)
{
    static const CgroupController cs[] = {CGROUP_CONTROLLER_MEMORY,  CGROUP_CONTROLLER_CPU,
                                          CGROUP_CONTROLLER_CPUACCT, CGROUP_CONTROLLER_PIDS,
                                          CGROUP_CONTROLLER_FREEZER, CGROUP_CORE};
    for (size_t i = 0; i < ELEMENTSOF(cs); i++) {
        char path[PATH_MAX];
        if (cgroup_system_path(s, cs[i], name, path, sizeof(path)) == 0 && access(path, F_OK) == 0)
            return true;
    }
    return false;
}

static void real_lifecycle(const CgroupSystem *s)
{
    _cleanup_cgroup_ Cgroup *cg = NULL;
    is_int(cgroup_create(s, "c1", &cg), 0, "real: create c1");
    if (!cg)
        return;
    ok(group_exists_anywhere(s, "c1"), "real: c1 exists");

    pid_t child = spawn_sleeper();
    ok(child > 0, "real: sleeper started");
    is_int(cgroup_attach(cg, child, 0), 0, "real: attach the sleeper by pid");
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    is_int(cgroup_list_pids(cg, &pids, &n), 0, "real: list pids");
    ok(n == 1 && in_list(child, pids, n), "real: the sleeper is listed");
    char proc[64], cgtext[2048], want[256];
    snprintf(proc, sizeof(proc), "/proc/%d/cgroup", (int)child);
    _cleanup_close_ int pfd = open(proc, O_RDONLY | O_CLOEXEC);
    ssize_t got = pfd >= 0 ? read(pfd, cgtext, sizeof(cgtext) - 1) : -1;
    cgtext[got > 0 ? got : 0] = '\0';
    char parent_path[PATH_MAX];
    cgroup_system_path(s, CGROUP_CONTROLLER_MEMORY, "c1", parent_path, sizeof(parent_path));
    const char *tail = strstr(parent_path, "/cloche-test-");
    snprintf(want, sizeof(want), "%s\n", tail ? tail : "?");
    ok(strstr(cgtext, want) != NULL, "real: /proc/<pid>/cgroup shows the group");

    CgroupLimits l;
    is_int(cgroup_set_memory_limit(cg, 64 * MiB), 0, "real: memory 64 MiB");
    ok(cgroup_get_limits(cg, &l) == 0 && l.memory_bytes == 64 * MiB, "real: reads back 64 MiB");
    is_int(cgroup_set_memory_limit(cg, 128 * MiB), 0, "real: raise to 128 MiB");
    ok(cgroup_get_limits(cg, &l) == 0 && l.memory_bytes == 128 * MiB, "real: reads back 128 MiB");
    is_int(cgroup_set_memory_limit(cg, 32 * MiB), 0, "real: lower to 32 MiB");
    ok(cgroup_get_limits(cg, &l) == 0 && l.memory_bytes == 32 * MiB, "real: reads back 32 MiB");
    uint64_t v = 0;
    if (cgroup_system_layout(s) != CGROUP_LAYOUT_V2 &&
        cgroup_read_u64(cg, CGROUP_CONTROLLER_MEMORY, "memory.memsw.limit_in_bytes", &v) == 0)
        is_u64(v, 32 * MiB, "real: memsw follows");
    else
        ok(1, "# SKIP no memsw on this host");
    is_int(cgroup_set_pids_max(cg, 32), 0, "real: pids.max 32");
    ok(cgroup_get_limits(cg, &l) == 0 && l.pids_max == 32, "real: reads back 32 pids");
    is_int(cgroup_set_cpu(cg, 512, 50000, 100000), 0, "real: cpu 512 shares, half a cpu");
    ok(cgroup_get_limits(cg, &l) == 0 && l.cpu_weight == 20 && l.cpu_quota_us == 50000 &&
           l.cpu_period_us == 100000,
       "real: cpu reads back");
    is_int(cgroup_apply_limits(cg, &(CgroupLimits){0}), 0, "real: lift every limit");
    ok(cgroup_get_limits(cg, &l) == 0 && l.memory_bytes == 0 && l.pids_max == 0 &&
           l.cpu_quota_us == 0,
       "real: unlimited reads back as zeros");
    is_int(cgroup_apply_limits(cg, &test_limits), 0, "real: apply the test limits");

    char stat[8192];
    ok(cgroup_read_file(cg, CGROUP_CONTROLLER_MEMORY, "memory.stat", stat, sizeof(stat), NULL) ==
               0 &&
           cgroup_keyed_get(stat, cgroup_system_layout(s) == CGROUP_LAYOUT_V2 ? "anon" : "rss",
                            &v) == 0,
       "real: memory.stat readable and parsed");

    /* clone3(CLONE_INTO_CGROUP) with the v2 fd, then v1 placement by pid. */
    _cleanup_close_ int cgfd = cgroup_open_v2_fd(cg);
    pid_t cloned = -1;
    if (cgfd >= 0) {
        struct clone_args args = {
            .flags = CLONE_INTO_CGROUP,
            .exit_signal = SIGCHLD,
            .cgroup = (uint64_t)cgfd,
        };
        pid_t self = getpid();
        cloned = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
        if (cloned == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != self)
                _exit(1);
            for (;;)
                pause();
        }
        ok(cloned > 0, "real: clone3 into the v2 group");
        free(pids);
        pids = NULL;
        ok(cloned > 0 && cgroup_list_pids(cg, &pids, &n) == 0 && in_list(cloned, pids, n),
           "real: the cloned child is listed without an attach");
        is_int(cgroup_attach(cg, cloned, CGROUP_ATTACH_SKIP_V2), 0, "real: v1 placement of it");
    } else {
        ok(cgroup_system_layout(s) == CGROUP_LAYOUT_V1 && cgfd == -ENOENT, "real: no v2 fd on v1");
    }

    is_int(cgroup_kill_all(cg), 0, "real: kill all");
    is_int(cgroup_wait_empty(cg, 5000), 0, "real: wait until empty");
    ok(reaped_by_sigkill(child), "real: the sleeper died of SIGKILL");
    if (cloned > 0)
        ok(reaped_by_sigkill(cloned), "real: the cloned child died of SIGKILL");
    free(pids);
    pids = NULL;
    ok(cgroup_list_pids(cg, &pids, &n) == 0 && n == 0, "real: nothing listed");
    is_int(cgroup_destroy(cg, 5000), 0, "real: destroy");
    ok(!group_exists_anywhere(s, "c1"), "real: c1 gone from every hierarchy");
    is_int(cgroup_destroy(cg, 5000), 0, "real: destroy again is fine");
    Cgroup *gone = NULL;
    is_int(cgroup_open_existing(s, "c1", &gone), -ENOENT, "real: c1 cannot be opened");
}

static void real_reopen_and_destroy(const CgroupSystem *s)
{
    Cgroup *first = NULL;
    is_int(cgroup_create(s, "c2", &first), 0, "real: create c2");
    pid_t child = spawn_sleeper();
    ok(first && cgroup_attach(first, child, 0) == 0, "real: attach to c2");
    cgroup_free(first);

    _cleanup_cgroup_ Cgroup *cg = NULL;
    is_int(cgroup_open_existing(s, "c2", &cg), 0, "real: open c2 again (restart)");
    if (cg)
        is_int(cgroup_destroy(cg, 5000), 0, "real: destroy a populated group");
    ok(reaped_by_sigkill(child), "real: its process was killed");
    ok(!group_exists_anywhere(s, "c2"), "real: c2 gone from every hierarchy");
}

/* Median of create + limits + destroy, printed for the record. */
static void real_timing(const CgroupSystem *s)
{
    enum { N = 51 };
    long us[N];
    int failures = 0;
    for (int i = 0; i < N; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        Cgroup *cg = NULL;
        if (cgroup_create(s, "t", &cg) < 0 || cgroup_apply_limits(cg, &test_limits) < 0 ||
            cgroup_destroy(cg, 1000) < 0)
            failures++;
        cgroup_free(cg);
        clock_gettime(CLOCK_MONOTONIC, &b);
        us[i] = (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
    }
    for (int i = 1; i < N; i++)
        for (int j = i; j > 0 && us[j - 1] > us[j]; j--) {
            long t = us[j];
            us[j] = us[j - 1];
            us[j - 1] = t;
        }
    is_int(failures, 0, "real: %d create+limits+destroy cycles", N);
    printf("# create+limits+destroy median %ld us\n", us[N / 2]);
}

static void real_tests(const CgroupMounts *m, const char *parent)
{
    const char *missing = NULL;
    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    int r = cgroup_system_setup(m, parent, &s, &missing);
    if (!ok(r == 0, "real: setup %s under %s", parent, cgroup_layout_to_string(m->layout)))
        printf("#   error %d, missing %s\n", r, missing ? missing : "-");
    if (!s)
        return;
    real_lifecycle(s);
    real_reopen_and_destroy(s);
    real_timing(s);
    is_int(cgroup_system_remove_parent(s), 0, "real: remove the parent");
    ok(!group_exists_anywhere(s, NULL), "real: parent gone from every hierarchy");
}

/* On a hybrid host, the same hierarchies seen as pure v1 (the unified mount
 * hidden): kill without cgroup.kill (freezer, then signals) and wait by polling
 * cgroup.procs. */
static void real_v1_fallback(const CgroupMounts *m, const char *parent)
{
    CgroupMounts v1 = *m; /* borrows the strings */
    v1.v2 = NULL;
    v1.layout = CGROUP_LAYOUT_V1;
    _cleanup_cgroup_system_ CgroupSystem *s = NULL;
    is_int(cgroup_system_setup(&v1, parent, &s, NULL), 0, "v1 view: setup %s", parent);
    if (!s)
        return;
    char path[PATH_MAX];
    ok(cgroup_system_path(s, CGROUP_CONTROLLER_FREEZER, NULL, path, sizeof(path)) == 0 &&
           access(path, F_OK) == 0,
       "v1 view: the freezer hierarchy is used");
    _cleanup_cgroup_ Cgroup *cg = NULL;
    is_int(cgroup_create(s, "c1", &cg), 0, "v1 view: create");
    if (!cg)
        return;
    is_int(cgroup_open_v2_fd(cg), -ENOENT, "v1 view: no v2 fd");
    pid_t a = spawn_sleeper(), b = spawn_sleeper();
    ok(cgroup_attach(cg, a, 0) == 0 && cgroup_attach(cg, b, 0) == 0, "v1 view: attach two");
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    ok(cgroup_list_pids(cg, &pids, &n) == 0 && n == 2 && in_list(a, pids, n) && in_list(b, pids, n),
       "v1 view: both listed");
    is_int(cgroup_kill_all(cg), 0, "v1 view: kill by freezing and signalling");
    is_int(cgroup_wait_empty(cg, 5000), 0, "v1 view: wait by polling cgroup.procs");
    ok(reaped_by_sigkill(a) && reaped_by_sigkill(b), "v1 view: both died of SIGKILL");
    char state[64];
    ok(cgroup_read_file(cg, CGROUP_CONTROLLER_FREEZER, "freezer.state", state, sizeof(state),
                        NULL) == 0 &&
           strcmp(state, "THAWED\n") == 0,
       "v1 view: left thawed");
    is_int(cgroup_destroy(cg, 5000), 0, "v1 view: destroy");
    ok(!group_exists_anywhere(s, "c1"), "v1 view: c1 gone");

    Cgroup *c2 = NULL;
    is_int(cgroup_create(s, "c2", &c2), 0, "v1 view: create c2");
    pid_t c = spawn_sleeper();
    ok(c2 && cgroup_attach(c2, c, 0) == 0, "v1 view: attach to c2");
    ok(c2 && cgroup_destroy(c2, 5000) == 0, "v1 view: destroy a populated group");
    ok(reaped_by_sigkill(c), "v1 view: its process was killed");
    cgroup_free(c2);
    ok(!group_exists_anywhere(s, "c2"), "v1 view: c2 gone");
    is_int(cgroup_system_remove_parent(s), 0, "v1 view: remove the parent");
    ok(!group_exists_anywhere(s, NULL), "v1 view: parent gone");
}

/* Remove whatever the child left behind: it only ever made these names. */
static bool sweep(const CgroupMounts *m, const char *parent)
{
    static const char *const groups[] = {"c1", "c2", "t"};
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
    uint32_t rnd;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (uint32_t)getpid();
    char parent[64];
    snprintf(parent, sizeof(parent), "cloche-test-%08x", rnd);
    char parent_v1[80];
    snprintf(parent_v1, sizeof(parent_v1), "%s-v1", parent);

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        real_tests(&m, parent);
        if (m.layout == CGROUP_LAYOUT_HYBRID)
            real_v1_fallback(&m, parent_v1);
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
        ok(0, "real: the test child died (status %#x)", status);
    }
    ok(sweep(&m, parent) && sweep(&m, parent_v1), "real: nothing left under %s", parent);
}

int main(void)
{
    snprintf(tmp_root, sizeof(tmp_root), "%s/cloche-cgroup-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root))
        abort();
    test_hybrid();
    test_v1();
    test_v2();
    test_v2_missing();
    test_misc();
    test_real();
    ok(rm_rf_at(AT_FDCWD, tmp_root) == 0, "fake trees removed");
    return tap_done();
}
