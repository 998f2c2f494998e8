/* Benchmark: what the confinement itself costs, measured in-process so that a
 * busy machine's noise does not drown it (tests/bench/containers.py and
 * processes.py measure the whole create and Run).
 *
 *   build-dir/tests/bench/filter-cost [N]
 *
 * Prints: the libseccomp compile (once per daemon start); per process, the
 * bounding set, filter install and capset that init, every shim process and
 * cloche-tar do (timed inside N forked children, medians); per system call
 * under the filter (getppid and write, minus unfiltered; medians of 5 rounds of
 * a million). Needs root. Not a CI test. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cloche/confine.h"
#include "cloche/security.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median5(double v[5])
{
    qsort(v, 5, sizeof(double), cmp);
    return v[2];
}

/* Median microseconds a child spends in each step: bounding set, filter, capset. */
static int confine_steps(int n, const ConfinePlan *plan, double ret[3])
{
    double *v[3];
    for (int k = 0; k < 3; k++)
        if (!(v[k] = calloc((size_t)n, sizeof(double))))
            return -1;
    for (int i = 0; i < n; i++) {
        int p[2];
        if (pipe(p) < 0)
            return -1;
        pid_t pid = fork();
        if (pid == 0) {
            double t[4];
            t[0] = now_us();
            int r = confine_drop_bounding(plan);
            t[1] = now_us();
            r = r < 0 ? r : confine_load_filter(plan);
            t[2] = now_us();
            r = r < 0 ? r : confine_set_caps(plan, true);
            t[3] = now_us();
            double d[3] = {t[1] - t[0], t[2] - t[1], t[3] - t[2]};
            if (r < 0 || write(p[1], d, sizeof(d)) != sizeof(d))
                _exit(1);
            _exit(0);
        }
        close(p[1]);
        double d[3] = {-1, -1, -1};
        if (read(p[0], d, sizeof(d)) != sizeof(d))
            return -1;
        close(p[0]);
        waitpid(pid, NULL, 0);
        for (int k = 0; k < 3; k++)
            v[k][i] = d[k];
    }
    for (int k = 0; k < 3; k++) {
        qsort(v[k], (size_t)n, sizeof(double), cmp);
        ret[k] = v[k][n / 2];
        free(v[k]);
    }
    return 0;
}

/* Nanoseconds per system call in a child, with the filter or without. */
static double syscalls(long nr, const ConfinePlan *plan)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        if (plan && confine_load_filter(plan) < 0)
            _exit(1);
        const int n = 1000000;
        double t0 = now_us();
        for (int i = 0; i < n; i++)
            syscall(nr, -1, NULL, 0);
        double ns = (now_us() - t0) * 1e3 / n;
        if (write(p[1], &ns, sizeof(ns)) != sizeof(ns))
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    double ns = -1;
    if (read(p[0], &ns, sizeof(ns)) != sizeof(ns))
        ns = -1;
    close(p[0]);
    waitpid(pid, NULL, 0);
    return ns;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < 1)
        n = 1;
    double compile[5], fast[5], fast0[5], late[5], late0[5];
    SecurityProfile p = {0};
    for (int i = 0; i < 5; i++) {
        SecurityProfile q = {0};
        double t0 = now_us();
        if (security_profile_build(&q) < 0)
            return 1;
        compile[i] = (now_us() - t0) / 1e3;
        if (i == 0)
            p = q;
        else
            security_profile_clear(&q);
    }
    ConfinePlan plan = {.caps = CONFINE_CAPS_UNPRIVILEGED, .filter = &p.filter};
    double steps[3];
    if (confine_steps(n, &plan, steps) < 0)
        return 1;
    for (int i = 0; i < 5; i++) {
        fast0[i] = syscalls(SYS_getppid, NULL);
        fast[i] = syscalls(SYS_getppid, &plan);
        late0[i] = syscalls(SYS_write, NULL);
        late[i] = syscalls(SYS_write, &plan);
    }
    printf("seccomp filter: %u instructions\n", p.filter.len);
    printf("  compile (libseccomp, once per daemon start)  median %8.2f ms\n", median5(compile));
    printf("  per process (%d children), medians: bounding set %.1f us, filter install %.1f us, "
           "capset %.1f us; total %.1f us\n",
           n, steps[0], steps[1], steps[2], steps[0] + steps[1] + steps[2]);
    double f0 = median5(fast0), f1 = median5(fast), l0 = median5(late0), l1 = median5(late);
    printf("  per system call, getppid                     median %8.1f ns (%.1f -> %.1f)\n",
           f1 - f0, f0, f1);
    printf("  per system call, write(-1)                   median %8.1f ns (%.1f -> %.1f)\n",
           l1 - l0, l0, l1);
    security_profile_clear(&p);
    return 0;
}
