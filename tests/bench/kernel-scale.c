/* Benchmark: the kernel's own costs that grow with the number of containers
 * alive, measured with the bare primitives, without cloche's daemon or crun:
 *
 *   build-dir/tests/bench/kernel-scale [CYCLES] [LIVE,LIVE,...]
 *
 * For each level (default 0,1000,4096 containers' worth alive), CYCLES (default
 * 100) cycles of each of these, medians and p90 of the wall time and the whole
 * machine's CPU per cycle (from /proc/stat, so the kernel workers that finish a
 * teardown are counted; settled 1 s after the cycles):
 *
 *  memcg   mkdir + rmdir of an empty memory cgroup, with 6 x LIVE tmpfs
 *          superblocks mounted (a container keeps six: overlay, tmpfs, proc,
 *          sysfs, devpts, mqueue). Offlining a memory cgroup visits every
 *          memcg-aware list_lru, two per superblock, holding cgroup_mutex.
 *  netns   a network namespace, a bridge and a veth pair into it with addresses
 *          and a route (cloche's own netlink calls), sysfs mounted in it; then
 *          all of it removed, with LIVE such namespaces alive, each with its
 *          link and sysfs. The host namespace's nsid table, sysfs's superblock
 *          search and the namespace cleanup walk them.
 *  pivot   fork a child that unshares its mount namespace, mounts a tmpfs and
 *          pivot_root()s into it, and exits, with LIVE idle processes alive
 *          (pivot_root moves the root of every task that had the old one).
 *
 * Runs as root in a private mount and network namespace of its own (unshared
 * at start); its memory cgroups sit in a parent of its own
 * (cloche-bench-kscale-PID) that is removed at the end, the idle processes are
 * killed by pid, and the namespaces and mounts go with the process. Prints, and
 * asserts nothing. Not a CI test. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cloche/netdev.h"

#define MAX_LEVELS 8

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Busy jiffies of the whole machine, all CPUs (user..steal, not idle/iowait). */
static double busy_ms(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return 0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy * 1e3 / (double)sysconf(_SC_CLK_TCK);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct Row {
    double median, p90, cpu;
} Row;

static Row summarise(double *ts, int n, double cpu_total)
{
    qsort(ts, (size_t)n, sizeof(double), cmp);
    return (Row){ts[n / 2], ts[(n * 9) / 10], cpu_total / n};
}

static void print_rows(const char *what, const int *levels, const Row *rows, int nlevels)
{
    printf("%s\n", what);
    for (int i = 0; i < nlevels; i++)
        printf("  %5d live  wall %7.3f / %7.3f ms   cpu %7.3f ms   wall ratio %5.2f  +%.3f ms\n",
               levels[i], rows[i].median, rows[i].p90, rows[i].cpu, rows[i].median / rows[0].median,
               rows[i].median - rows[0].median);
}

static void settle(void)
{
    sync();
    sleep(2);
}

/* memcg: S tmpfs superblocks stacked on one directory of our private mount ns. */
static char memcg_parent[256];

static int memcg_setup(void)
{
    const char *v1 = "/sys/fs/cgroup/memory";
    struct stat st;
    if (stat(v1, &st) == 0) {
        snprintf(memcg_parent, sizeof(memcg_parent), "%s/cloche-bench-kscale-%d", v1, getpid());
        return mkdir(memcg_parent, 0755) < 0 ? -errno : 0;
    }
    /* Pure v2: a parent of our own under the root, memory enabled in its own
     * subtree_control (the root's is left as it is; memory must be on there). */
    snprintf(memcg_parent, sizeof(memcg_parent), "/sys/fs/cgroup/cloche-bench-kscale-%d", getpid());
    if (mkdir(memcg_parent, 0755) < 0)
        return -errno;
    char p[300];
    snprintf(p, sizeof(p), "%s/cgroup.subtree_control", memcg_parent);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    int r = fd < 0 || write(fd, "+memory", 7) != 7 ? -errno : 0;
    if (fd >= 0)
        close(fd);
    return r;
}

static int add_superblocks(int *have, int want)
{
    for (; *have < want; (*have)++)
        if (mount("kscale", "/run/kscale-sb", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") < 0)
            return -errno;
    return 0;
}

static Row memcg_cycles(int n, double *ts)
{
    char dir[320];
    snprintf(dir, sizeof(dir), "%s/c", memcg_parent);
    double c0 = busy_ms();
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        if (mkdir(dir, 0755) < 0 || rmdir(dir) < 0) {
            perror("memcg cycle");
            exit(1);
        }
        ts[i] = now_ms() - t0;
    }
    sleep(1);
    return summarise(ts, n, busy_ms() - c0);
}

/* netns: one namespace with its veth pair, bridge and sysfs, as a container's. */
typedef struct Ns {
    int fd;
    char host_if[16], bridge[16], sysfs[64];
} Ns;

static int ns_make(NetDev *nd, int host_fd, int i, Ns *ret)
{
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    ret->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    snprintf(ret->sysfs, sizeof(ret->sysfs), "/run/kscale-sys/%d", i);
    mkdir(ret->sysfs, 0755);
    int r = ret->fd < 0 ? -errno : 0;
    if (r == 0 &&
        mount("sysfs", ret->sysfs, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        r = -errno;
    if (setns(host_fd, CLONE_NEWNET) < 0)
        return -errno;
    if (r < 0)
        return r;
    snprintf(ret->host_if, sizeof(ret->host_if), "ksh%d", i);
    snprintf(ret->bridge, sizeof(ret->bridge), "ksb%d", i);
    uint32_t subnet = 0x0A400000u + (uint32_t)i * 4; /* 10.64.0.0/16, a /30 each */
    NetDevContainer spec = {.bridge = ret->bridge,
                            .host_if = ret->host_if,
                            .container_if = "eth0",
                            .netns_fd = ret->fd,
                            .subnet = subnet,
                            .prefix = 30,
                            .gateway = subnet + 1,
                            .ip = subnet + 2,
                            .mtu = 1500};
    return netdev_setup_container(nd, &spec);
}

/* As a container's destroy: the namespace goes with its last reference and the
 * kernel removes the veth pair with it; the bridge is left to the caller (cloche
 * deletes bridges from a background thread). */
static void ns_remove(Ns *ns)
{
    umount2(ns->sysfs, MNT_DETACH);
    rmdir(ns->sysfs);
    close(ns->fd);
}

static Row netns_cycles(NetDev *nd, int host_fd, int n, double *ts)
{
    double c0 = busy_ms();
    for (int i = 0; i < n; i++) {
        Ns ns;
        double t0 = now_ms();
        int r = ns_make(nd, host_fd, 16000 + i, &ns);
        if (r < 0) {
            fprintf(stderr, "netns cycle: %s\n", strerror(-r));
            exit(1);
        }
        ns_remove(&ns);
        ts[i] = now_ms() - t0;
    }
    sleep(1);
    Row row = summarise(ts, n, busy_ms() - c0);
    for (int i = 0; i < n; i++) {
        char bridge[16];
        snprintf(bridge, sizeof(bridge), "ksb%d", 16000 + i);
        netdev_delete(nd, bridge);
    }
    return row;
}

/* pivot: a child into a tmpfs of its own mount namespace. */
static void pivot_child(void)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("kscale", "/run/kscale-pivot", "tmpfs", 0, "size=64k") < 0 ||
        mkdir("/run/kscale-pivot/old", 0700) < 0 ||
        syscall(SYS_pivot_root, "/run/kscale-pivot", "/run/kscale-pivot/old") < 0)
        _exit(1);
    _exit(0);
}

static Row pivot_cycles(int n, double *ts)
{
    double c0 = busy_ms();
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        pid_t pid = fork();
        if (pid == 0)
            pivot_child();
        int status = 1;
        if (pid < 0 || waitpid(pid, &status, 0) < 0 || status != 0) {
            fprintf(stderr, "pivot cycle failed\n");
            exit(1);
        }
        ts[i] = now_ms() - t0;
    }
    sleep(1);
    return summarise(ts, n, busy_ms() - c0);
}

static pid_t *idlers;
static int nidlers;

static void kill_idlers(void)
{
    for (int i = 0; i < nidlers; i++)
        kill(idlers[i], SIGKILL);
    for (int i = 0; i < nidlers; i++)
        waitpid(idlers[i], NULL, 0);
    nidlers = 0;
}

static void on_signal(int sig)
{
    (void)sig;
    kill_idlers();
    rmdir(memcg_parent);
    _exit(1);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100;
    const char *spec = argc > 2 ? argv[2] : "0,1000,4096";
    int levels[MAX_LEVELS], nlevels = 0;
    for (const char *p = spec; p && *p && nlevels < MAX_LEVELS;
         p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        levels[nlevels++] = atoi(p);
    if (n < 2 || n > 1000 || nlevels == 0 || geteuid() != 0) {
        fprintf(stderr, "usage (as root): kernel-scale [CYCLES] [LIVE,LIVE,...]\n");
        return 2;
    }
    for (int i = 1; i < nlevels; i++)
        if (levels[i] < levels[i - 1] || levels[i] > 15000) {
            fprintf(stderr, "levels must rise, up to 15000\n");
            return 2;
        }
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("kscale", "/run", "tmpfs", 0, "mode=0755") < 0) {
        perror("private namespaces");
        return 1;
    }
    mkdir("/run/kscale-sb", 0755);
    mkdir("/run/kscale-sys", 0755);
    mkdir("/run/kscale-pivot", 0755);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    double *ts = calloc((size_t)n, sizeof(double));
    Row rows[MAX_LEVELS];
    printf("kernel-scale: %d cycles a level; wall median / p90, the machine's CPU per cycle\n", n);

    /* First, while this mount namespace is small: a child's unshare copies it. */
    idlers = calloc((size_t)levels[nlevels - 1] + 1, sizeof(pid_t));
    for (int l = 0; l < nlevels; l++) {
        for (; nidlers < levels[l]; nidlers++) {
            pid_t pid = fork();
            if (pid == 0) {
                for (;;)
                    pause();
            }
            if (pid < 0) {
                perror("fork");
                kill_idlers();
                return 1;
            }
            idlers[nidlers] = pid;
        }
        settle();
        rows[l] = pivot_cycles(n, ts);
    }
    kill_idlers();
    print_rows("pivot: fork + unshare mount ns + tmpfs + pivot_root + exit, LIVE idle tasks",
               levels, rows, nlevels);
    fflush(stdout);

    int r = memcg_setup();
    if (r < 0) {
        fprintf(stderr, "memcg: no memory cgroup of our own (%s); skipped\n", strerror(-r));
    } else {
        int have = 0;
        for (int l = 0; l < nlevels; l++) {
            if ((r = add_superblocks(&have, levels[l] * 6)) < 0) {
                fprintf(stderr, "mount tmpfs: %s\n", strerror(-r));
                break;
            }
            settle();
            rows[l] = memcg_cycles(n, ts);
        }
        print_rows("memcg: mkdir + rmdir of an empty memory cgroup, 6 superblocks per live", levels,
                   rows, nlevels);
        rmdir(memcg_parent);
        while (umount2("/run/kscale-sb", MNT_DETACH) == 0)
            ;
    }
    fflush(stdout);

    NetDev *nd = NULL;
    int host_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (host_fd < 0 || netdev_open(&nd) < 0) {
        fprintf(stderr, "netns: no netlink; skipped\n");
    } else {
        int have = 0;
        for (int l = 0; l < nlevels; l++) {
            for (; have < levels[l]; have++) {
                Ns ns;
                if ((r = ns_make(nd, host_fd, have, &ns)) < 0) {
                    fprintf(stderr, "netns %d: %s\n", have, strerror(-r));
                    return 1;
                }
                close(ns.fd); /* sysfs and the veth keep it alive */
            }
            settle();
            rows[l] = netns_cycles(nd, host_fd, n, ts);
        }
        print_rows("netns: namespace + bridge + veth + addresses + sysfs, made and removed", levels,
                   rows, nlevels);
        netdev_free(nd);
    }
    fflush(stdout);

    free(ts);
    free(idlers);
    return 0;
}
