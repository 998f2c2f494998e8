/* An idle shim (design §5, "the pool"): started by the daemon ahead of need, it
 * has already detached and set itself up; it waits on its socket (fd 3, a
 * SOCK_SEQPACKET pair with the daemon) for the one message naming a process
 * directory (and carrying its spec), then carries on as any shim does with that
 * directory, its start line going back on the same socket. It holds nothing of
 * any container while it waits, and exits when the daemon's end closes (the
 * daemon ended, or dropped it), so an idle shim never outlives its daemon. */
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
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

/* The zygote: one more detached shim, which makes the pool's idle shims by
 * forking itself (no exec, no detaching fork, no set-up again: a fraction of a
 * spawn's cost). Each "spawn" from the daemon gets a new socket pair; the child
 * keeps one end as its fd 3 and returns to become an idle shim; the zygote
 * sends the other end to the daemon ("pid <child>", SCM_RIGHTS). Its children
 * are reaped by the kernel (SIGCHLD ignored here, the default again in each
 * child). Returns only in a child; the zygote itself exits when the daemon's
 * end closes. */
void shim_zygote_serve(int fd)
{
    /* Not a subreaper itself: a shim's orphans go where they went before the
     * zygote (each shim is one for its own process). */
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    signal(SIGCHLD, SIG_IGN);
    char ready[32];
    int rlen = snprintf(ready, sizeof(ready), "ready %d\n", (int)getpid());
    if (send(fd, ready, (size_t)rlen, MSG_NOSIGNAL) != rlen)
        _exit(0);
    for (;;) {
        char req[16];
        ssize_t n = recv(fd, req, sizeof(req), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0); /* the daemon's end closed */
        int sp[2];
        char line[32];
        pid_t pid = -1;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0) {
            pid = fork();
            if (pid == 0) {
                /* The idle shim: its own socket as fd 3 (which closes the
                 * zygote's), its own session, SIGCHLD back to the default. */
                close(sp[0]);
                if (dup3(sp[1], fd, O_CLOEXEC) < 0)
                    _exit(1);
                close(sp[1]);
                signal(SIGCHLD, SIG_DFL);
                setsid();
                prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
                return;
            }
            close(sp[1]);
        }
        int len = snprintf(line, sizeof(line), "pid %d\n", (int)pid);
        struct iovec iov = {.iov_base = line, .iov_len = (size_t)len};
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } ctl = {0};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (pid > 0) {
            mh.msg_control = ctl.buf;
            mh.msg_controllen = sizeof(ctl.buf);
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &sp[0], sizeof(int));
        }
        /* A failed fork or socket pair answers "pid -1": the daemon spawns one. */
        while (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
            ;
        if (pid > 0)
            close(sp[0]); /* the child has its end; a daemon gone makes it exit */
    }
}
