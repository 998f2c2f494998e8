/* An idle shim (design §5, "the pool"): started by the daemon ahead of need, it
 * has already detached and set itself up; it waits on its socket (fd 3, a
 * SOCK_SEQPACKET pair with the daemon) for the one message naming a process
 * directory (and carrying its spec), then carries on as any shim does with that
 * directory, its start line going back on the same socket. It holds nothing of
 * any container while it waits, and exits when the daemon's end closes (the
 * daemon ended, or dropped it), so an idle shim never outlives its daemon. */
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/enter.h"
#include "cloche/shim-protocol.h"
#include "shim.h"

int shim_idle_wait(int fd, char **ret_message, char **ret_spec, size_t *ret_spec_len)
{
    /* Ready: what the next process's pid file needs of this shim, and the
     * namespaces it compares with the container's, known now. */
    (void)shim_own_start_time();
    (void)enter_cache_own_namespaces(); /* a failure: they are looked up later */
    char line[32];
    int len = snprintf(line, sizeof(line), "ready %d\n", (int)getpid());
    if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len)
        return -EPIPE;
    ssize_t n;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            return -errno;
        /* The message's size, without taking it. */
        n = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -EPIPE; /* the daemon's end closed: nobody will hand us work */
        break;
    }
    if ((size_t)n > SHIM_IDLE_MESSAGE_MAX)
        return -EBADMSG;
    _cleanup_free_ char *msg = malloc((size_t)n + 1);
    if (!msg)
        return -ENOMEM;
    ssize_t got;
    while ((got = recv(fd, msg, (size_t)n, 0)) < 0 && errno == EINTR)
        ;
    if (got != n)
        return -EPIPE;
    msg[n] = '\0';
    /* DIR: absolute, without NUL, shorter than PATH_MAX; the daemon is the only peer. */
    char *nl = memchr(msg, '\n', (size_t)n);
    size_t dir_len = nl ? (size_t)(nl - msg) : (size_t)n;
    if (msg[0] != '/' || dir_len >= PATH_MAX || memchr(msg, '\0', dir_len))
        return -EBADMSG;
    char *spec = NULL;
    size_t spec_len = 0;
    if (nl) {
        *nl = '\0';
        spec_len = (size_t)n - dir_len - 1;
        if (!(spec = malloc(spec_len + 1)))
            return -ENOMEM;
        memcpy(spec, nl + 1, spec_len + 1);
    }
    *ret_message = TAKE_PTR(msg);
    *ret_spec = spec;
    *ret_spec_len = spec_len;
    return 0;
}

void shim_idle_dir_prepare(const char *label, ShimIdleDir *ret)
{
    *ret = (ShimIdleDir){.dirfd = -1, .listen_fd = -1, .control_fd = -1};
    if (label[0] != '/' || snprintf(ret->path, sizeof(ret->path), "%s/" SHIM_IDLE_DIRS "/%d", label,
                                    (int)getpid()) >= (int)sizeof(ret->path))
        return;
    if (mkdir(ret->path, 0700) < 0) /* the daemon cleared SHIM_IDLE_DIRS: no stale one */
        return;
    ret->dirfd = open(ret->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ShimError err;
    if (ret->dirfd >= 0 && (ret->listen_fd = shim_listen_on(ret->dirfd, "sock", &err)) >= 0)
        ret->control_fd = shim_listen_on(ret->dirfd, "ctl", &err);
    if (ret->control_fd < 0)
        shim_idle_dir_remove(ret); /* the process's own directory gets the sockets */
}

bool shim_idle_dir_adopt(ShimIdleDir *d, int dirfd, int *ret_listen_fd, int *ret_control_fd)
{
    struct stat ours, given;
    if (d->dirfd < 0)
        return false;
    if (fstat(d->dirfd, &ours) < 0 || fstat(dirfd, &given) < 0 || ours.st_dev != given.st_dev ||
        ours.st_ino != given.st_ino) {
        shim_idle_dir_remove(d);
        return false;
    }
    *ret_listen_fd = TAKE_FD(d->listen_fd);
    *ret_control_fd = TAKE_FD(d->control_fd);
    shim_closep(&d->dirfd);
    return true;
}

void shim_idle_dir_remove(ShimIdleDir *d)
{
    if (d->dirfd < 0)
        return;
    /* Through the fd: wherever the directory is now, only its own sockets go. */
    if (d->listen_fd >= 0)
        unlinkat(d->dirfd, "sock", 0);
    if (d->control_fd >= 0)
        unlinkat(d->dirfd, "ctl", 0);
    shim_closep(&d->listen_fd);
    shim_closep(&d->control_fd);
    /* Still where it was made (not renamed into the depot): remove it. */
    struct stat ours, there;
    if (fstat(d->dirfd, &ours) == 0 && stat(d->path, &there) == 0 && ours.st_dev == there.st_dev &&
        ours.st_ino == there.st_ino)
        rmdir(d->path);
    shim_closep(&d->dirfd);
}
