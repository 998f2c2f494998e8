/* The observability helpers: --metrics-bind parsing and the host's procfs figures. */
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#include "cloche/api.h"
#include "cloche/observe.h"

static void parse_cases(void)
{
    char ip[64];
    uint16_t port = 0;
    ok(api_parse_bind_address("127.0.0.1:9100", ip, sizeof(ip), &port) == 0, "IPv4:PORT parses");
    is_str(ip, "127.0.0.1", "its address");
    is_int(port, 9100, "its port");
    ok(api_parse_bind_address("[::1]:65535", ip, sizeof(ip), &port) == 0, "[IPv6]:PORT parses");
    is_str(ip, "::1", "the brackets are dropped");
    is_int(port, 65535, "the highest port");
    static const char *const bad[] = {
        "127.0.0.1",     "127.0.0.1:",    "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:+80", "127.0.0.1:80x", ":80",         "::1:80",          "[127.0.0.1]:80",
        "[::1:80",       "localhost:80",  "[]:80",       "1.2.3:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        port = 7;
        strcpy(ip, "untouched");
        ok(api_parse_bind_address(bad[i], ip, sizeof(ip), &port) == -EINVAL &&
               strcmp(ip, "untouched") == 0 && port == 7,
           "'%s' is refused and nothing is written", bad[i]);
    }
    char small[4];
    ok(api_parse_bind_address("127.0.0.1:80", small, sizeof(small), &port) == -EINVAL,
       "an address longer than the buffer is refused");
}

static void cpu_cases(void)
{
    HostCpuTimes a = {.user = 100, .system = 50, .idle = 800, .iowait = 50};
    HostCpuTimes b = a;
    b.user += 30;
    b.system += 10;
    b.idle += 50;
    b.iowait += 10;
    double p = host_cpu_busy_percent(&a, &b);
    ok(p > 39.99 && p < 40.01, "40 busy ticks of 100 are 40%% (got %f)", p);
    ok(host_cpu_busy_percent(&a, &a) == 0, "no time passed: 0%%");
    ok(host_cpu_busy_percent(&b, &a) == 0, "a counter going backwards: 0%%");

    HostCpuTimes t1, t2;
    ok(host_read_cpu_times(&t1) == 0, "/proc/stat reads");
    ok(t1.user + t1.system + t1.idle > 0, "with CPU time in it");
    for (volatile unsigned long i = 0; i < 50000000ul; i++)
        ;
    ok(host_read_cpu_times(&t2) == 0 && t2.user + t2.system >= t1.user + t1.system,
       "busy time does not go backwards");
}

static void memory_cases(void)
{
    HostMemory m;
    ok(host_read_memory(&m) == 0, "/proc/meminfo reads");
    ok(m.total > 0 && m.available <= m.total && m.free <= m.total,
       "total %llu >= available %llu and free %llu", (unsigned long long)m.total,
       (unsigned long long)m.available, (unsigned long long)m.free);
    double l[3] = {-1, -1, -1};
    ok(host_read_loadavg(l) == 0 && l[0] >= 0 && l[1] >= 0 && l[2] >= 0,
       "/proc/loadavg reads three averages");
}

int main(void)
{
    parse_cases();
    cpu_cases();
    memory_cases();
    return tap_done();
}
