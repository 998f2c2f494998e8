/* Benchmark: what cloning a child that execs costs the daemon as its memory
 * grows, a copy of it (a plain clone3, as the init was made before) against one
 * that shares it until the exec (vmclone, as the init is made now), measured
 * in-process so that a busy machine's noise does not drown it.
 *
 *   build-dir/tests/bench/clone-cost [N] [MIB,MIB,...]
 *
 * For each size (default 0,32,128 MiB of touched anonymous memory, in 256 KiB
 * mappings that do not merge, beside 16 idle threads as the daemon has), N
 * children (default 200) are cloned, each execs /bin/true, and the parent waits
 * for its exit: medians and p90 of that wall time, in ms. Not a CI test. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#include "cloche/vmclone.h"

#define PIECE (256 * 1024)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void exec_true(void *arg)
{
    (void)arg;
    char *const argv[] = {(char *)"true", NULL};
    char *const envp[] = {NULL};
    execve("/bin/true", argv, envp);
    _exit(127);
}

static void *idle_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static double one(bool shared)
{
    struct clone_args args = {.exit_signal = SIGCHLD};
    double t0 = now_ms();
    pid_t pid;
    if (shared) {
        VmClone *v = NULL;
        if (vmclone_start(&args, -1, exec_true, NULL, &v, &pid) < 0) {
            vmclone_finish(v);
            return -1;
        }
        vmclone_finish(v);
    } else {
        pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
        if (pid == 0)
            exec_true(NULL);
        if (pid < 0)
            return -1;
    }
    waitpid(pid, NULL, 0);
    return now_ms() - t0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    const char *sizes = argc > 2 ? argv[2] : "0,32,128";
    if (n < 1 || !vmclone_supported()) {
        fprintf(stderr, "usage: clone-cost [N] [MIB,...] (x86-64 or arm64)\n");
        return 2;
    }
    for (int i = 0; i < 16; i++) {
        pthread_t t;
        pthread_create(&t, NULL, idle_thread, NULL);
    }
    double *ts = calloc((size_t)n, sizeof(double));
    size_t have = 0;
    printf("clone + exec /bin/true + wait, %d each, ms (median / p90)\n", n);
    for (const char *p = sizes; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        size_t mib = (size_t)atoi(p);
        /* Grow to mib MiB, alternating protections so that the pieces stay apart. */
        for (; have < mib * 4; have++) {
            char *m = mmap(NULL, PIECE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED)
                return 1;
            memset(m, 1, PIECE);
            if (have % 2)
                mprotect(m, PIECE, PROT_READ);
        }
        for (int shared = 0; shared < 2; shared++) {
            for (int i = 0; i < n; i++)
                ts[i] = one(shared);
            qsort(ts, (size_t)n, sizeof(double), cmp);
            printf("  %4zu MiB  %-28s %7.3f / %7.3f\n", mib,
                   shared ? "shared until exec (vmclone)" : "copy (clone3)", ts[n / 2],
                   ts[(n * 9) / 10]);
        }
    }
    free(ts);
    return 0;
}
