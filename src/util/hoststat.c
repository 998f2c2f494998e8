/* The host's figures from procfs: CPU times, memory, load average. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/observe.h"

#define PROC_FILE_MAX (1u << 20)

static int read_proc(const char *name, char **ret)
{
    size_t len;
    return read_file_at(AT_FDCWD, name, PROC_FILE_MAX, ret, &len);
}

int host_read_cpu_times(HostCpuTimes *ret)
{
    _cleanup_free_ char *text = NULL;
    int r = read_proc("/proc/stat", &text);
    if (r < 0)
        return r;
    HostCpuTimes t = {0};
    if (sscanf(text,
               "cpu %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
               " %" SCNu64 " %" SCNu64,
               &t.user, &t.nice, &t.system, &t.idle, &t.iowait, &t.irq, &t.softirq, &t.steal) < 4)
        return -EBADMSG;
    *ret = t;
    return 0;
}

static uint64_t cpu_total(const HostCpuTimes *t)
{
    return t->user + t->nice + t->system + t->idle + t->iowait + t->irq + t->softirq + t->steal;
}

double host_cpu_busy_percent(const HostCpuTimes *before, const HostCpuTimes *after)
{
    uint64_t t0 = cpu_total(before), t1 = cpu_total(after);
    uint64_t i0 = before->idle + before->iowait, i1 = after->idle + after->iowait;
    if (t1 <= t0 || i1 < i0)
        return 0;
    double busy = (double)((t1 - t0) - (i1 - i0)) * 100.0 / (double)(t1 - t0);
    return busy < 0 ? 0 : busy > 100 ? 100 : busy;
}

int host_read_memory(HostMemory *ret)
{
    _cleanup_free_ char *text = NULL;
    int r = read_proc("/proc/meminfo", &text);
    if (r < 0)
        return r;
    HostMemory m = {0};
    const struct {
        const char *key;
        uint64_t *field;
    } keys[] = {
        {"MemTotal:", &m.total},     {"MemFree:", &m.free},  {"MemAvailable:", &m.available},
        {"Buffers:", &m.buffers},    {"Cached:", &m.cached}, {"SwapTotal:", &m.swap_total},
        {"SwapFree:", &m.swap_free},
    };
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
            size_t kl = strlen(keys[i].key);
            if (strncmp(line, keys[i].key, kl) == 0)
                *keys[i].field = strtoull(line + kl, NULL, 10) * 1024; /* kB */
        }
    if (!m.total)
        return -EBADMSG;
    *ret = m;
    return 0;
}

int host_read_loadavg(double ret[3])
{
    _cleanup_free_ char *text = NULL;
    int r = read_proc("/proc/loadavg", &text);
    if (r < 0)
        return r;
    double l[3];
    if (sscanf(text, "%lf %lf %lf", &l[0], &l[1], &l[2]) != 3)
        return -EBADMSG;
    memcpy(ret, l, sizeof(l));
    return 0;
}
