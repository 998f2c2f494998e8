/* netdev against the kernel, inside a private network namespace (root only).
 * Fake containers are namespaces held by an fd; commands run in them through a
 * forked child that setns()es first. The host's own links are never touched: the
 * test refuses to go on while it is still in the initial namespace. */
#include <errno.h>
#include <net/if.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/netdev.h"
#include "tap.h"

#define INIT_NETNS "net:[4026531833]"
#define IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

static int daemon_ns = -1;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A fresh network namespace, held by the returned fd; this thread stays put. */
static int netns_new(void)
{
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int r = fd < 0 ? -errno : fd;
    if (setns(daemon_ns, CLONE_NEWNET) < 0)
        abort();
    return r;
}

/* Run a shell command in a namespace (-1: ours); its stdout into out. Returns
 * the exit status. */
static int run(int netns, char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int run(int netns, char *out, size_t size, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (netns >= 0 && setns(netns, CLONE_NEWNET) < 0)
            _exit(126);
        dup2(pipefd[1], STDOUT_FILENO);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    size_t len = 0;
    char discard[256];
    for (;;) {
        char *p = out && len + 1 < size ? out + len : discard;
        size_t room = out && len + 1 < size ? size - 1 - len : sizeof(discard);
        ssize_t n = read(pipefd[0], p, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (p != discard)
            len += (size_t)n;
    }
    close(pipefd[0]);
    if (out && size)
        out[len] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

static int count(const char *haystack, const char *needle)
{
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int read_sysctl(const char *path)
{
    char buf[32] = "";
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof(buf) - 1) < 0)
        return -1;
    return atoi(buf);
}

static bool ping(int netns, const char *addr)
{
    for (int i = 0; i < 3; i++)
        if (run(netns, NULL, 0, "busybox ping -c1 -W1 %s >/dev/null 2>&1", addr) == 0)
            return true;
    return false;
}

static size_t strv_length(char **v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static bool strv_contains(char **v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

static NetDevContainer spec_of(const char *bridge, const char *host_if, const char *container_if,
                               int netns, uint32_t subnet, unsigned prefix, uint32_t ip,
                               uint32_t mtu)
{
    return (NetDevContainer){
        .bridge = bridge,
        .host_if = host_if,
        .container_if = container_if,
        .netns_fd = netns,
        .subnet = subnet,
        .prefix = prefix,
        .gateway = subnet + 1,
        .ip = ip,
        .mtu = mtu,
    };
}

static void test_one_container(NetDev *nd, int ctr)
{
    char out[4096];
    NetDevContainer s =
        spec_of("tbr0", "th0", "tc0", ctr, IP(10, 254, 0, 0), 30, IP(10, 254, 0, 2), 1400);
    double start = now_ms();
    int r = netdev_setup_container(nd, &s);
    double elapsed = now_ms() - start;
    if (!is_int(r, 0, "setup of a container on a new bridge"))
        return;
    printf("# first setup (bridge created): %.2f ms\n", elapsed);
    is_int(read_sysctl("/proc/sys/net/ipv4/ip_forward"), 1, "ip_forward is on");

    run(-1, out, sizeof(out), "ip -o -4 addr show dev tbr0");
    ok(contains(out, "inet 10.254.0.1/30 brd 10.254.0.3"), "bridge has the gateway address");
    run(-1, out, sizeof(out), "ip -o -d link show dev tbr0");
    ok(contains(out, "mtu 1400") && contains(out, "bridge") && contains(out, ",UP"),
       "bridge: MTU, kind, up");
    run(-1, out, sizeof(out), "ip -o link show dev th0");
    ok(contains(out, "master tbr0") && contains(out, "mtu 1400") && contains(out, ",UP"),
       "host end: enslaved, MTU, up");
    is_int(read_sysctl("/proc/sys/net/ipv4/conf/tbr0/route_localnet"), 1,
           "route_localnet on the bridge");
    is_int(read_sysctl("/proc/sys/net/ipv4/conf/all/route_localnet"), 0,
           "route_localnet not on 'all'");

    run(ctr, out, sizeof(out), "ip -o -4 addr show dev tc0");
    ok(contains(out, "inet 10.254.0.2/30 brd 10.254.0.3"), "container end has its address");
    run(ctr, out, sizeof(out), "ip -o link show dev tc0");
    ok(contains(out, "mtu 1400") && contains(out, ",UP"), "container end: MTU, up");
    run(ctr, out, sizeof(out), "ip -o link show dev lo");
    ok(contains(out, ",UP"), "lo is up in the container");
    run(ctr, out, sizeof(out), "ip route show default");
    ok(contains(out, "default via 10.254.0.1 dev tc0"), "default route via the gateway");
    run(ctr, out, sizeof(out), "ip -o link show");
    is_int(count(out, "\n"), 2, "the container has lo and its end only");

    ok(ping(ctr, "10.254.0.1"), "the container pings the gateway");
    ok(ping(-1, "10.254.0.2"), "the host pings the container");
}

static void test_shared_subnet(NetDev *nd, int ctr1, int ctr2)
{
    char out[4096];
    NetDevContainer a =
        spec_of("tbr1", "th1", "tc1", ctr1, IP(10, 254, 1, 0), 24, IP(10, 254, 1, 2), 9000);
    NetDevContainer b =
        spec_of("tbr1", "th2", "tc2", ctr2, IP(10, 254, 1, 0), 24, IP(10, 254, 1, 3), 9000);
    is_int(netdev_setup_container(nd, &a), 0, "first container of a shared subnet");
    run(-1, out, sizeof(out), "ip -o link show dev tbr1");
    char mac[64] = "";
    const char *ether = strstr(out, "link/ether ");
    if (ether)
        snprintf(mac, sizeof(mac), "%.28s", ether);
    /* Someone turned the bridge down and route_localnet off: the next setup repairs. */
    run(-1, NULL, 0,
        "ip link set tbr1 down && echo 0 > /proc/sys/net/ipv4/conf/tbr1/route_localnet");
    is_int(netdev_setup_container(nd, &b), 0, "second container joins the bridge");
    run(-1, out, sizeof(out), "ip -o link show dev tbr1");
    ok(contains(out, ",UP"), "the bridge is up again");
    is_int(read_sysctl("/proc/sys/net/ipv4/conf/tbr1/route_localnet"), 1,
           "and has route_localnet again");
    run(-1, out, sizeof(out), "ip -o link show master tbr1");
    ok(contains(out, "th1@") && contains(out, "th2@"), "both host ends on one bridge");
    run(-1, out, sizeof(out), "ip -o -4 addr show dev tbr1");
    is_int(count(out, "inet "), 1, "the bridge keeps one address");
    run(-1, out, sizeof(out), "ip -o link show dev tbr1");
    ok(mac[0] && contains(out, mac), "the bridge's MAC does not change as ports join");
    ok(ping(ctr1, "10.254.1.3"), "containers of a subnet reach each other");
    ok(ping(ctr2, "10.254.1.1"), "the second container pings the gateway");
}

static void test_list_stats_delete(NetDev *nd, int ctr)
{
    char **names = NULL;
    if (is_int(netdev_list(nd, "th", &names), 0, "list by prefix")) {
        is_int(strv_length(names), 3, "three host ends");
        ok(strv_contains(names, "th0") && strv_contains(names, "th1") &&
               strv_contains(names, "th2"),
           "the right names");
    }
    strv_free(names);
    names = NULL;
    if (is_int(netdev_list(nd, "nothing-", &names), 0, "list with no match"))
        ok(names && !names[0], "an empty list");
    strv_free(names);

    NetDevStats before, after;
    is_int(netdev_stats(nd, "th0", &before), 0, "stats of the host end");
    ok(ping(ctr, "10.254.0.1"), "traffic");
    is_int(netdev_stats(nd, "th0", &after), 0, "stats again");
    ok(after.rx_packets > before.rx_packets && after.rx_bytes > before.rx_bytes,
       "rx counters grew (%" PRIu64 " -> %" PRIu64 " packets)", before.rx_packets,
       after.rx_packets);
    ok(after.tx_packets > before.tx_packets && after.tx_bytes > before.tx_bytes,
       "tx counters grew");
    is_int(netdev_stats(nd, "nosuchlink", &after), -ENOENT, "stats of a missing link");

    /* The stats dump (netdev-stats.c) holds the same counters, by ifindex. */
    NetDevIndexedStats *all = NULL;
    size_t n = 0;
    NetDevStats again;
    is_int(netdev_stats(nd, "th0", &after), 0, "stats of the host end");
    is_int(netdev_stats_dump(&all, &n), 0, "stats dump");
    is_int(netdev_stats(nd, "th0", &again), 0, "and again");
    ok(n >= 4, "the dump has every link (%zu)", n);
    const NetDevStats *th0 = netdev_stats_find(all, n, (int)if_nametoindex("th0"));
    ok(th0 && th0->rx_packets >= after.rx_packets && th0->rx_packets <= again.rx_packets &&
           th0->tx_bytes >= after.tx_bytes && th0->tx_bytes <= again.tx_bytes && th0->tx_bytes > 0,
       "th0's counters in the dump match a link query");
    ok(netdev_stats_find(all, n, 1) != NULL, "lo (ifindex 1) is there");
    ok(!netdev_stats_find(all, n, 999999), "an unknown ifindex is not");
    free(all);

    is_int(netdev_delete(nd, "nosuchlink"), 0, "deleting a missing link is fine");
    is_int(netdev_delete(nd, "th2"), 0, "delete a host end");
    char out[256];
    ok(run(-1, out, sizeof(out), "ip link show dev th2 2>/dev/null") != 0, "it is gone");
}

static void test_failures(NetDev *nd)
{
    char before[8192], after[8192];
    int ctr = netns_new();
    run(-1, before, sizeof(before), "ip -o link show | cut -d: -f2 | sort");

    /* Duplicate host end on a new bridge: nothing created, the bridge removed. */
    NetDevContainer s =
        spec_of("tbr9", "th0", "tc9", ctr, IP(10, 254, 9, 0), 30, IP(10, 254, 9, 2), 1500);
    is_int(netdev_setup_container(nd, &s), -EEXIST, "a duplicate host end fails");
    run(-1, after, sizeof(after), "ip -o link show | cut -d: -f2 | sort");
    is_str(after, before, "and leaves no link behind");
    run(ctr, after, sizeof(after), "ip -o link show");
    is_int(count(after, "\n"), 1, "nor in the container");

    /* A failure inside the container, after the pair exists: the default route is
     * taken already. */
    run(ctr, NULL, 0, "ip link set lo up && ip route add default dev lo");
    s = spec_of("tbr9", "th9", "tc9", ctr, IP(10, 254, 9, 0), 30, IP(10, 254, 9, 2), 1500);
    is_int(netdev_setup_container(nd, &s), -EEXIST, "a failure in the container is reported");
    run(-1, after, sizeof(after), "ip -o link show | cut -d: -f2 | sort");
    is_str(after, before, "the pair and the new bridge are rolled back");
    run(ctr, after, sizeof(after), "ip -o link show");
    is_int(count(after, "\n"), 1, "the container end went with its peer");

    /* An existing link that is not a bridge cannot be used as one. */
    s = spec_of("th0", "th9", "tc9", ctr, IP(10, 254, 9, 0), 30, IP(10, 254, 9, 2), 1500);
    is_int(netdev_setup_container(nd, &s), -EEXIST, "a non-bridge 'bridge' is refused");

    s = spec_of("tbr9", "th9", "tc9", ctr, IP(10, 254, 9, 0), 30, IP(10, 254, 9, 1), 1500);
    is_int(netdev_setup_container(nd, &s), -EINVAL, "ip == gateway is refused");
    s = spec_of("tbr9", "th9", "tc9", ctr, IP(10, 254, 9, 0), 30, IP(10, 254, 9, 3), 1500);
    is_int(netdev_setup_container(nd, &s), -EINVAL, "the broadcast address is refused");
    s = spec_of("tbr9", "th9", "tc9", ctr, IP(10, 254, 9, 0), 30, IP(10, 254, 9, 2), 0);
    is_int(netdev_setup_container(nd, &s), -EINVAL, "MTU 0 is refused");
    s = spec_of("tbr9", "th9-name-too-long", "tc9", ctr, IP(10, 254, 9, 0), 30, IP(10, 254, 9, 2),
                1500);
    is_int(netdev_setup_container(nd, &s), -EINVAL, "a long name is refused");
    run(-1, after, sizeof(after), "ip -o link show | cut -d: -f2 | sort");
    is_str(after, before, "refusals create nothing");
    close(ctr);
}

static void test_defaults(NetDev *nd)
{
    uint32_t v = 0;
    is_int(netdev_default_mtu(nd, &v), 0, "default MTU without a default route");
    is_int(v, 1500, "is 1500");
    is_int(netdev_default_address(nd, &v), -ENOENT, "no default address without a default route");

    /* tbr1 has MTU 9000 (the shared subnet). */
    run(-1, NULL, 0, "ip route add default via 10.254.1.3");
    is_int(netdev_default_mtu(nd, &v), 0, "default MTU");
    is_int(v, 1500, "capped at 1500");
    is_int(netdev_default_address(nd, &v), 0, "default address");
    is_int(v, IP(10, 254, 1, 1), "the address of the default route's interface");
    run(-1, NULL, 0, "ip route replace default via 10.254.0.2");
    is_int(netdev_default_mtu(nd, &v), 0, "default MTU after a change");
    is_int(v, 1400, "below the cap it is the interface's");
    run(-1, NULL, 0, "ip route del default");
}

static void test_bandwidth(NetDev *nd, int ctr)
{
    char out[8192];
    uint64_t rate = 1, burst = 1;
    is_int(netdev_get_bandwidth(nd, "th0", &rate, &burst), 0, "get without limits");
    ok(rate == 0 && burst == 0, "is 0/0");

    is_int(netdev_set_bandwidth(nd, "th0", "tifb0", 125000, 1000), 0, "set a limit");
    is_int(netdev_get_bandwidth(nd, "th0", &rate, &burst), 0, "get it back");
    is_u64(rate, 125000, "rate");
    ok(burst >= 1400 && burst <= 1400 + 64, "burst raised to about the MTU (%" PRIu64 ")", burst);
    run(-1, out, sizeof(out), "tc qdisc show dev th0");
    ok(contains(out, "qdisc tbf 1: root") && contains(out, "qdisc ingress ffff:"),
       "tbf and ingress on the host end");
    run(-1, out, sizeof(out), "tc qdisc show dev tifb0");
    ok(contains(out, "qdisc tbf 1: root"), "tbf on the IFB");
    run(-1, out, sizeof(out), "ip -o link show dev tifb0");
    ok(contains(out, ",UP"), "the IFB is up");
    run(-1, out, sizeof(out), "tc filter show dev th0 parent ffff:");
    ok(contains(out, "Egress Redirect to device tifb0"), "ingress redirected to the IFB");

    /* Full-sized frames pass a bucket of one MTU, both ways. */
    ok(run(ctr, NULL, 0, "busybox ping -c1 -W2 -s 1372 10.254.0.1 >/dev/null 2>&1") == 0,
       "full-sized frames get through");

    NetDevStats ifb_before, ifb_after;
    netdev_stats(nd, "tifb0", &ifb_before);
    run(-1, out, sizeof(out), "busybox ping -A -q -s 1300 -w 1 10.254.0.2 2>&1");
    int sent = 0;
    const char *stat = strstr(out, "packets transmitted");
    if (stat)
        while (stat > out && stat[-1] != '\n')
            stat--;
    if (stat)
        sent = atoi(stat);
    /* 125000 B/s over 1328-byte frames is ~94 a second, each way. */
    ok(sent > 10 && sent < 150, "the rate holds (%d pings of 1300 bytes in 1 s)", sent);
    netdev_stats(nd, "tifb0", &ifb_after);
    ok(ifb_after.tx_packets >= ifb_before.tx_packets + 10, "upload goes through the IFB");

    is_int(netdev_set_bandwidth(nd, "th0", "tifb0", 250000, 5000), 0, "change the limit");
    is_int(netdev_get_bandwidth(nd, "th0", &rate, &burst), 0, "get it back");
    is_u64(rate, 250000, "new rate");
    ok(burst >= 4990 && burst <= 5010, "new burst (%" PRIu64 ")", burst);
    run(-1, out, sizeof(out), "tc filter show dev th0 parent ffff:");
    is_int(count(out, "mirred"), 1, "still one redirect");
    run(-1, out, sizeof(out), "tc qdisc show dev tifb0");
    ok(contains(out, "rate 2Mbit"), "the IFB's TBF changed too");

    run(-1, NULL, 0, "tc qdisc del dev th0 root; tc qdisc add dev th0 root handle 1: htb");
    is_int(netdev_set_bandwidth(nd, "th0", "tifb0", 62500, 3000), 0,
           "a root of another kind is replaced");
    run(-1, out, sizeof(out), "tc qdisc show dev th0");
    ok(contains(out, "qdisc tbf 1: root") && !contains(out, "htb"), "by a tbf");

    is_int(netdev_set_bandwidth(nd, "th0", "tifb0", (uint64_t)INT32_MAX + 1, 3000), -ERANGE,
           "a rate above INT_MAX is refused");
    is_int(netdev_set_bandwidth(nd, "th0", "tifb0", 5, 3000), -ERANGE,
           "a bucket that takes minutes to fill is refused");
    is_int(netdev_set_bandwidth(nd, "nosuchlink", "tifb9", 1000, 3000), -ENOENT,
           "a limit on a missing link");
    run(-1, out, sizeof(out), "ip link show dev tifb9 2>/dev/null");
    ok(!contains(out, "tifb9"), "creates no IFB");

    is_int(netdev_set_bandwidth(nd, "th0", "tifb0", 0, 0), 0, "remove the limits");
    run(-1, out, sizeof(out), "tc qdisc show dev th0");
    ok(!contains(out, "tbf") && !contains(out, "ingress"), "no qdiscs left");
    ok(run(-1, NULL, 0, "ip link show dev tifb0 >/dev/null 2>&1") != 0, "the IFB is gone");
    is_int(netdev_get_bandwidth(nd, "th0", &rate, &burst), 0, "get after removal");
    ok(rate == 0 && burst == 0, "is 0/0");
    is_int(netdev_set_bandwidth(nd, "th0", "tifb0", 0, 0), 0, "removing twice is fine");
    is_int(netdev_set_bandwidth(nd, "nosuchlink", "tifb0", 0, 0), 0,
           "removing from a missing link is fine");
    is_int(netdev_get_bandwidth(nd, "nosuchlink", &rate, &burst), -ENOENT, "get on a missing link");
}

/* Setup time per container: each on its own /30 and bridge, as the dynamic pool
 * hands them out, then all on one shared subnet whose bridge exists. */
typedef struct ThreadJob {
    NetDev *nd;
    int netns;
    int index;
    int result;
    bool stayed; /* the thread ended in the namespace it started in */
} ThreadJob;

static void *setup_thread(void *arg)
{
    ThreadJob *job = arg;
    char bridge[16], host[16], before[64] = "", after[64] = "";
    snprintf(bridge, sizeof(bridge), "ttbr%d", job->index);
    snprintf(host, sizeof(host), "tth%d", job->index);
    uint32_t subnet = IP(10, 202, 0, 0) + 4 * (uint32_t)job->index;
    NetDevContainer s = spec_of(bridge, host, "eth0", job->netns, subnet, 30, subnet + 2, 1500);
    (void)!readlink("/proc/thread-self/ns/net", before, sizeof(before) - 1);
    job->result = 0;
    for (int i = 0; i < 5 && job->result == 0; i++) {
        job->result = netdev_setup_container(job->nd, &s);
        if (job->result == 0)
            job->result = netdev_delete(job->nd, host);
    }
    (void)!readlink("/proc/thread-self/ns/net", after, sizeof(after) - 1);
    job->stayed = before[0] && strcmp(before, after) == 0;
    return NULL;
}

/* setns() for the container side moves one thread only, and moves it back. */
static void test_threads(NetDev *nd)
{
    enum { T = 4 };
    ThreadJob jobs[T];
    pthread_t threads[T];
    char before[64] = "", after[64] = "";
    (void)!readlink("/proc/thread-self/ns/net", before, sizeof(before) - 1);
    for (int i = 0; i < T; i++) {
        jobs[i] = (ThreadJob){.nd = nd, .netns = netns_new(), .index = i, .result = -1};
        pthread_create(&threads[i], NULL, setup_thread, &jobs[i]);
    }
    bool all_ok = true, all_stayed = true;
    for (int i = 0; i < T; i++) {
        pthread_join(threads[i], NULL);
        all_ok = all_ok && jobs[i].result == 0;
        all_stayed = all_stayed && jobs[i].stayed;
        close(jobs[i].netns);
    }
    ok(all_ok, "setups from %d threads at once", T);
    ok(all_stayed, "every thread is back in the daemon's namespace");
    (void)!readlink("/proc/thread-self/ns/net", after, sizeof(after) - 1);
    ok(before[0] && strcmp(before, after) == 0, "the main thread never left");
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void time_setups(NetDev *nd, bool shared)
{
    enum { N = 100 };
    int fds[N];
    double times[N];
    for (int i = 0; i < N; i++)
        fds[i] = netns_new();
    int failed = 0;
    double total = 0;
    for (int i = 0; i < N; i++) {
        char bridge[16], host[16];
        uint32_t subnet = shared ? IP(10, 201, 0, 0) : IP(10, 200, 0, 0) + 4 * (uint32_t)i;
        snprintf(bridge, sizeof(bridge), shared ? "tsbr" : "tpbr%d", i);
        snprintf(host, sizeof(host), shared ? "tsh%d" : "tph%d", i);
        NetDevContainer s = spec_of(bridge, host, "eth0", fds[i], subnet, shared ? 16 : 30,
                                    subnet + 2 + (shared ? (uint32_t)i : 0), 1500);
        double start = now_ms();
        if (netdev_setup_container(nd, &s) < 0)
            failed++;
        times[i] = now_ms() - start;
        total += times[i];
    }
    is_int(failed, 0, "%d containers set up (%s)", N, shared ? "shared bridge" : "own bridges");
    qsort(times, N, sizeof(times[0]), compare_double);
    printf("# setup (%s): median %.2f ms, mean %.2f ms per container\n",
           shared ? "bridge exists" : "bridge created", times[N / 2], total / N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("1..0 # SKIP needs root\n");
        return 0;
    }
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
        printf("1..0 # SKIP unshare: %s\n", strerror(errno));
        return 0;
    }
    char link[64] = "";
    if (readlink("/proc/self/ns/net", link, sizeof(link) - 1) < 0 ||
        strcmp(link, INIT_NETNS) == 0) {
        printf("Bail out! still in the initial network namespace\n");
        return 1;
    }
    (void)mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    daemon_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (daemon_ns < 0) {
        printf("Bail out! cannot open our namespace\n");
        return 1;
    }
    /* Our own namespace, so this is not the host's setting. */
    int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, "0", 1) != 1)
            printf("# could not reset ip_forward\n");
        close(fd);
    }

    NetDev *nd = NULL;
    if (!is_int(netdev_open(&nd), 0, "open"))
        return tap_done();
    int ctr0 = netns_new(), ctr1 = netns_new(), ctr2 = netns_new();
    ok(ctr0 >= 0 && ctr1 >= 0 && ctr2 >= 0, "container namespaces");

    test_one_container(nd, ctr0);
    test_shared_subnet(nd, ctr1, ctr2);
    test_list_stats_delete(nd, ctr0);
    test_failures(nd);
    test_defaults(nd);
    test_bandwidth(nd, ctr0);
    test_threads(nd);
    time_setups(nd, false);
    time_setups(nd, true);

    netdev_free(nd);
    close(ctr0);
    close(ctr1);
    close(ctr2);
    return tap_done();
}
