/* GET /cloche/host: the host's CPU, memory, depot disk and load, and the busiest
 * containers, for panels that show a host's usage. CPU use is the busy share of
 * /proc/stat between two readings: the previous request's, or on a first request
 * (or one more than a minute later) two readings 200 ms apart. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "api-internal.h"
#include "cloche/json.h"
#include "cloche/observe.h"
#include "cloche/clock.h"
#include "reqstats.h"

#define TOP_N 5
#define CPU_FIRST_GAP_NS (200 * 1000000LL)
#define CPU_STALE_NS (60 * 1000000000LL)
#define CPU_MIN_GAP_NS (250 * 1000000LL) /* closer readings reuse the last figure */

static pthread_mutex_t cpu_lock = PTHREAD_MUTEX_INITIALIZER;
static HostCpuTimes cpu_last;
static int64_t cpu_last_ns;
static double cpu_last_percent;

static int host_cpu_percent(double *ret)
{
    pthread_mutex_lock(&cpu_lock);
    int64_t now = clock_monotonic_ns();
    HostCpuTimes t;
    int r = 0;
    if (cpu_last_ns && now - cpu_last_ns < CPU_MIN_GAP_NS) {
        *ret = cpu_last_percent;
        goto out;
    }
    if (!cpu_last_ns || now - cpu_last_ns > CPU_STALE_NS) {
        if ((r = host_read_cpu_times(&cpu_last)) < 0)
            goto out;
        struct timespec gap = {.tv_nsec = CPU_FIRST_GAP_NS};
        nanosleep(&gap, NULL);
        now = clock_monotonic_ns();
    }
    if ((r = host_read_cpu_times(&t)) < 0)
        goto out;
    cpu_last_percent = host_cpu_busy_percent(&cpu_last, &t);
    cpu_last = t;
    cpu_last_ns = now;
    *ret = cpu_last_percent;
out:
    pthread_mutex_unlock(&cpu_lock);
    return r;
}

typedef struct Busy {
    char *handle;
    double cpu_percent;
    uint64_t memory_bytes;
} Busy;

static int by_cpu(const void *a, const void *b)
{
    double x = ((const Busy *)a)->cpu_percent, y = ((const Busy *)b)->cpu_percent;
    return x < y ? 1 : x > y ? -1 : strcmp(((const Busy *)a)->handle, ((const Busy *)b)->handle);
}

static int by_memory(const void *a, const void *b)
{
    uint64_t x = ((const Busy *)a)->memory_bytes, y = ((const Busy *)b)->memory_bytes;
    return x < y ? 1 : x > y ? -1 : strcmp(((const Busy *)a)->handle, ((const Busy *)b)->handle);
}

static json_object *top_list(Busy *all, size_t n, int (*cmp)(const void *, const void *))
{
    qsort(all, n, sizeof(Busy), cmp);
    json_object *a = json_object_new_array();
    for (size_t i = 0; a && i < n && i < TOP_N; i++) {
        json_object *e = json_object_new_object();
        if (!e)
            break;
        json_object_object_add(e, "handle", json_object_new_string(all[i].handle));
        json_object_object_add(e, "cpu_percent", json_object_new_double(all[i].cpu_percent));
        json_object_object_add(e, "memory_bytes", json_new_u64(all[i].memory_bytes));
        json_object_array_add(a, e);
    }
    return a;
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_new_u64(v));
}

int route_host(ApiRequest *req)
{
    double cpu = 0, load[3] = {0};
    HostMemory mem;
    struct statvfs fs;
    int r = host_cpu_percent(&cpu);
    if (r >= 0)
        r = host_read_memory(&mem);
    if (r >= 0)
        r = host_read_loadavg(load);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to read the host's figures");
    const char *depot = garden_depot_dir(req->garden);
    if (statvfs(depot, &fs) < 0)
        return api_internal_error(&req->error, -errno, "Failed to read the file system of '%s'",
                                  depot);

    _cleanup_strv_free_ char **handles = NULL;
    size_t n = 0;
    StringMap no_filter = STRING_MAP_INIT;
    r = garden_list(req->garden, &no_filter, &handles, &n);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to list containers");
    _cleanup_free_ Busy *busy = calloc(n + 1, sizeof(Busy));
    if (!busy)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        Container *c;
        ApiError err;
        api_error_clear(&err);
        if (garden_find(req->garden, handles[i], &c, &err) < 0)
            continue;
        ContainerObservation o;
        container_observe(req->garden, c, true, &o);
        container_unref(c);
        busy[k++] = (Busy){.handle = handles[i],
                           .cpu_percent = o.has_sample ? o.cpu_percent : 0,
                           .memory_bytes = o.has_usage ? o.memory_usage : o.memory_used};
    }

    json_object *root = json_object_new_object();
    json_object *jcpu = json_object_new_object(), *jmem = json_object_new_object();
    json_object *jdisk = json_object_new_object(), *jload = json_object_new_array();
    if (!root || !jcpu || !jmem || !jdisk || !jload) {
        json_object_put(root);
        json_object_put(jcpu);
        json_object_put(jmem);
        json_object_put(jdisk);
        json_object_put(jload);
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    add_u64(jcpu, "cores", cores > 0 ? (uint64_t)cores : 0);
    json_object_object_add(jcpu, "busy_percent", json_object_new_double(cpu));
    json_object_object_add(root, "cpu", jcpu);

    add_u64(jmem, "total_bytes", mem.total);
    add_u64(jmem, "free_bytes", mem.free);
    add_u64(jmem, "available_bytes", mem.available);
    add_u64(jmem, "used_bytes", mem.total > mem.available ? mem.total - mem.available : 0);
    add_u64(jmem, "buffers_bytes", mem.buffers);
    add_u64(jmem, "cached_bytes", mem.cached);
    add_u64(jmem, "swap_total_bytes", mem.swap_total);
    add_u64(jmem, "swap_free_bytes", mem.swap_free);
    json_object_object_add(root, "memory", jmem);

    uint64_t total = (uint64_t)fs.f_blocks * fs.f_frsize;
    uint64_t free_bytes = (uint64_t)fs.f_bfree * fs.f_frsize;
    json_object_object_add(jdisk, "path", json_object_new_string(depot));
    add_u64(jdisk, "total_bytes", total);
    add_u64(jdisk, "free_bytes", free_bytes);
    add_u64(jdisk, "available_bytes", (uint64_t)fs.f_bavail * fs.f_frsize);
    add_u64(jdisk, "used_bytes", total > free_bytes ? total - free_bytes : 0);
    json_object_object_add(root, "disk", jdisk);

    for (size_t i = 0; i < 3; i++)
        json_object_array_add(jload, json_object_new_double(load[i]));
    json_object_object_add(root, "load_average", jload);

    add_u64(root, "containers", k);
    json_object_object_add(root, "top_cpu", top_list(busy, k, by_cpu));
    json_object_object_add(root, "top_memory", top_list(busy, k, by_memory));
    req->reply = root;
    return 0;
}
