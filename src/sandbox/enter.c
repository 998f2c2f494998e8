/* Entering a container through its init's pidfd (shared by cloche-shim and
 * cloche-tar; see enter.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/enter.h"
#include "cloche/procfs.h"

static const struct {
    int flag;
    const char *name;
} namespaces[] = {
    {CLONE_NEWUSER, "user"},     {CLONE_NEWNS, "mnt"},  {CLONE_NEWPID, "pid"},
    {CLONE_NEWUTS, "uts"},       {CLONE_NEWIPC, "ipc"}, {CLONE_NEWNET, "net"},
    {CLONE_NEWCGROUP, "cgroup"},
};

static int enter_fail(EnterFailure *f, EnterStep step, int r, const char *ns)
{
    if (f)
        *f = (EnterFailure){.step = step, .error = r, .namespace = ns};
    return r;
}

int enter_open_init(pid_t pid, uint64_t start_time, int *ret_pidfd, EnterFailure *f)
{
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0)
        return enter_fail(f, ENTER_STEP_OPEN_INIT, -errno, NULL);
    uint64_t start;
    int r = procfs_start_time(pid, &start);
    if (r < 0 && r != -ESRCH) {
        close(pidfd);
        return enter_fail(f, ENTER_STEP_READ_START, r, NULL);
    }
    if (r < 0 || start != start_time) {
        close(pidfd);
        return enter_fail(f, ENTER_STEP_INIT_GONE, -ESRCH, NULL);
    }
    *ret_pidfd = pidfd;
    return 0;
}

#define N_NAMESPACES (sizeof(namespaces) / sizeof(namespaces[0]))

/* Our own namespaces, when enter_cache_own_namespaces() noted them. */
static struct stat own_cache[N_NAMESPACES];
static bool own_cached;

static int own_namespace(size_t i, struct stat *ret)
{
    if (own_cached) {
        *ret = own_cache[i];
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/ns/%s", namespaces[i].name);
    return stat(path, ret) < 0 ? -errno : 0;
}

int enter_cache_own_namespaces(void)
{
    struct stat st[N_NAMESPACES];
    for (size_t i = 0; i < N_NAMESPACES; i++) {
        int r = own_namespace(i, &st[i]);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < N_NAMESPACES; i++)
        own_cache[i] = st[i];
    own_cached = true;
    return 0;
}

int enter_namespaces_to_join(pid_t pid, int candidates, int *ret_flags, EnterFailure *f)
{
    int flags = 0;
    for (size_t i = 0; i < N_NAMESPACES; i++) {
        if (!(candidates & namespaces[i].flag))
            continue;
        char path[64];
        struct stat own, theirs;
        int r = own_namespace(i, &own);
        if (r < 0)
            return enter_fail(f, ENTER_STEP_OWN_NAMESPACE, r, namespaces[i].name);
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, namespaces[i].name);
        if (stat(path, &theirs) < 0)
            return enter_fail(f, ENTER_STEP_INIT_NAMESPACE, -errno, namespaces[i].name);
        if (own.st_ino != theirs.st_ino || own.st_dev != theirs.st_dev)
            flags |= namespaces[i].flag;
    }
    *ret_flags = flags;
    return 0;
}
