/* The pool of idle shims (design §5): a few cloche-shim monitors started ahead
 * of need, already detached and set up, each waiting on a socket to this daemon
 * for the directory of the next process. A Run takes one, so starting a process
 * costs one message, the shim's clone and the exec, not a spawn, a fork and an
 * exec of the shim first. The shim that took a process is that process's shim,
 * exactly as one started for it would be.
 *
 * Idle shims belong to no container: they hold nothing of one (no fd, no cgroup
 * membership, no directory in the depot) until they take a process, so they are
 * never listed among a container's processes, never count against its pids
 * limit, and Stop or Destroy has nothing of theirs to end. They do not outlive
 * the daemon: each exits when its socket's other end closes (the daemon ended,
 * or dropped it). A thread keeps the pool full, off the Run's path: it refills
 * after a take and replaces an idle shim that died (seen as a hang-up). It asks
 * the zygote (a detached `cloche-shim --zygote`) for each new one, a fork
 * instead of a spawn, an exec and a detaching fork; it spawns one as before when
 * the zygote cannot give one, and starts another zygote at the next refill.
 *
 * Each idle shim also prepares its process directory ahead of need, its sockets
 * bound, in <run>/idle-shims/<its pid> (shim-protocol.h; the run directory,
 * depot.h, so on the process table's file system): a Run renames that
 * directory into place, one rename instead of a mkdir and two binds on its
 * path. A directory left there by a shim killed while idle is removed with it,
 * and all of them at the pool's start. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/fileio.h"
#include "cloche/log.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"
#include "garden-internal.h"

#define RETRY_MS 1000 /* after a failed start, before the next attempt */

typedef struct IdleShim {
    int fd; /* our end of its socket */
    pid_t pid;
} IdleShim;

struct ShimPool {
    char *shim_path, *label;
    int dirs_fd;   /* <run>/idle-shims, or -1 */
    int zygote_fd; /* our end of the zygote's socket (pool thread only), or -1 */
    pthread_mutex_t lock;
    IdleShim idle[GARDEN_IDLE_SHIMS];
    size_t n;      /* under lock */
    bool stopping; /* under lock */
    int wake;      /* eventfd: a take, or the stop */
    pthread_t thread;
};

static void wake(ShimPool *p)
{
    uint64_t one = 1;
    ssize_t n = write(p->wake, &one, sizeof(one));
    (void)n; /* a full counter still wakes the thread */
}

/* The directory an idle shim prepared, if it is still there. */
static void remove_dir(ShimPool *p, pid_t pid)
{
    char name[16];
    snprintf(name, sizeof(name), "%d", (int)pid);
    if (p->dirs_fd >= 0)
        (void)rm_rf_at(p->dirs_fd, name);
}

/* <run>/idle-shims, emptied of what shims of an earlier daemon left there. */
static int open_dirs(const char *run)
{
    _cleanup_close_ int top = open(run, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (top < 0 || (mkdirat(top, SHIM_IDLE_DIRS, 0700) < 0 && errno != EEXIST))
        return -1;
    int fd = openat(top, SHIM_IDLE_DIRS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int walk = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR *d = walk >= 0 ? fdopendir(walk) : NULL;
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.')
            (void)rm_rf_at(fd, de->d_name);
    if (d)
        closedir(d);
    else if (walk >= 0)
        close(walk);
    return fd;
}

/* Remove the idle shim at fd (if still in the pool): it hung up. */
static void drop_dead(ShimPool *p, int fd)
{
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n; i++) {
        if (p->idle[i].fd != fd)
            continue;
        log_debug("Idle shim %d is gone: replacing it", (int)p->idle[i].pid);
        close(fd);
        remove_dir(p, p->idle[i].pid);
        p->idle[i] = p->idle[--p->n];
        break;
    }
    pthread_mutex_unlock(&p->lock);
}

/* A new idle shim: forked by the zygote (started first when there is none, or
 * again when it broke), or spawned as before when the zygote cannot give one. */
static int spawn_one(ShimPool *p, int *ret_fd, pid_t *ret_pid)
{
    int r = 0;
    if (p->zygote_fd < 0) {
        pid_t zygote;
        r = proc_zygote_spawn(p->shim_path, p->label, &p->zygote_fd, &zygote);
        if (r < 0)
            p->zygote_fd = -1;
        else
            log_debug("Idle shims come from zygote %d", (int)zygote);
    }
    if (p->zygote_fd >= 0) {
        r = proc_zygote_fork(p->zygote_fd, ret_fd, ret_pid);
        if (r >= 0)
            return 0;
        if (r != -EAGAIN) {
            closep(&p->zygote_fd); /* it exits at the hang-up; the next spawn starts another */
        }
    }
    log_debug("No idle shim from a zygote (%s): spawning one", strerror(-r));
    return proc_idle_spawn(p->shim_path, p->label, ret_fd, ret_pid);
}

static void *pool_loop(void *userdata)
{
    ShimPool *p = userdata;
    int retry_ms = -1;
    for (;;) {
        struct pollfd pfd[1 + GARDEN_IDLE_SHIMS];
        pfd[0] = (struct pollfd){.fd = p->wake, .events = POLLIN};
        nfds_t n = 1;
        pthread_mutex_lock(&p->lock);
        bool stopping = p->stopping, full = p->n == GARDEN_IDLE_SHIMS;
        for (size_t i = 0; i < p->n; i++)
            pfd[n++] = (struct pollfd){.fd = p->idle[i].fd, .events = POLLIN};
        pthread_mutex_unlock(&p->lock);
        if (stopping)
            break;
        if (!full && retry_ms < 0) {
            int fd;
            pid_t pid;
            int r = spawn_one(p, &fd, &pid);
            if (r < 0) {
                log_debug("Failed to start an idle shim: %s", strerror(-r));
                retry_ms = RETRY_MS;
                continue;
            }
            pthread_mutex_lock(&p->lock);
            if (p->stopping || p->n == GARDEN_IDLE_SHIMS)
                close(fd); /* it exits at the hang-up */
            else
                p->idle[p->n++] = (IdleShim){.fd = fd, .pid = pid};
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        int k = poll(pfd, n, retry_ms);
        if (k == 0)
            retry_ms = -1;
        if (k <= 0)
            continue;
        if (pfd[0].revents) {
            uint64_t v;
            ssize_t got = read(p->wake, &v, sizeof(v));
            (void)got;
            retry_ms = -1; /* a Run found the pool empty: try again now */
        }
        /* An idle shim never writes after "ready": any event is its end. */
        for (nfds_t i = 1; i < n; i++)
            if (pfd[i].revents)
                drop_dead(p, pfd[i].fd);
    }
    return NULL;
}

int garden_shim_pool_start(Garden *g)
{
    if (!g->cfg.shim_path || GARDEN_IDLE_SHIMS == 0)
        return 0;
    ShimPool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->shim_path = strdup(g->cfg.shim_path);
    const char *run = g->depot ? depot_run_path(g->depot) : NULL;
    p->label = strdup(run ? run : "cloche");
    if (p->wake < 0 || !p->shim_path || !p->label) {
        int r = p->wake < 0 ? -errno : -ENOMEM;
        if (p->wake >= 0)
            close(p->wake);
        free(p->shim_path);
        free(p->label);
        free(p);
        return r;
    }
    p->dirs_fd = run ? open_dirs(run) : -1;
    p->zygote_fd = -1;
    pthread_mutex_init(&p->lock, NULL);
    int r = pthread_create(&p->thread, NULL, pool_loop, p);
    if (r > 0) {
        if (p->dirs_fd >= 0)
            close(p->dirs_fd);
        pthread_mutex_destroy(&p->lock);
        close(p->wake);
        free(p->shim_path);
        free(p->label);
        free(p);
        return log_error_errno(-r, "Failed to start the idle shims' thread: %m");
    }
    g->shim_pool = p;
    return 0;
}

void garden_shim_pool_stop(Garden *g)
{
    ShimPool *p = g->shim_pool;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_mutex_unlock(&p->lock);
    wake(p);
    pthread_join(p->thread, NULL);
    /* Hung up on, each idle shim exits. */
    for (size_t i = 0; i < p->n; i++)
        close(p->idle[i].fd);
    pthread_mutex_destroy(&p->lock);
    close(p->wake);
    closep(&p->zygote_fd); /* the zygote exits at the hang-up */
    if (p->dirs_fd >= 0)
        close(p->dirs_fd); /* each shim removes its own directory as it exits */
    free(p->shim_path);
    free(p->label);
    free(p);
    g->shim_pool = NULL;
}

int garden_shim_pool_take(Garden *g, int *ret_fd)
{
    ShimPool *p = g->shim_pool;
    if (!p)
        return -ENOENT;
    pthread_mutex_lock(&p->lock);
    int fd = p->n ? p->idle[--p->n].fd : -1;
    pthread_mutex_unlock(&p->lock);
    if (fd < 0) {
        wake(p); /* in case it waits out a failed start: try again now */
        return -ENOENT;
    }
    *ret_fd = fd;
    return 0;
}

int garden_shim_pool_take_into(Garden *g, int pdir, const char *id, int *ret_fd)
{
    ShimPool *p = g->shim_pool;
    *ret_fd = -1;
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    IdleShim shim = p->n ? p->idle[--p->n] : (IdleShim){.fd = -1};
    pthread_mutex_unlock(&p->lock);
    if (shim.fd < 0) {
        wake(p);
        return 0;
    }
    char name[16];
    snprintf(name, sizeof(name), "%d", (int)shim.pid);
    if (p->dirs_fd >= 0 && renameat2(p->dirs_fd, name, pdir, id, RENAME_NOREPLACE) == 0) {
        *ret_fd = shim.fd;
        return 1;
    }
    if (errno == EEXIST) {
        close(shim.fd); /* it removes its directory as it exits */
        wake(p);
        return -EEXIST;
    }
    /* No directory (the shim could not make one, or another file system):
     * the shim binds in the directory it is given. */
    *ret_fd = shim.fd;
    return 0;
}

void garden_shim_pool_refill(Garden *g)
{
    if (g->shim_pool)
        wake(g->shim_pool);
}
