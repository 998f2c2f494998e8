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
#include <sys/socket.h>

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
