/* An idle shim (design §5, "the pool"): started by the daemon ahead of need, it
 * has already detached and set itself up; it waits on its socket (fd 3, a
 * SOCK_SEQPACKET pair with the daemon) for the one message naming a process
 * directory, then carries on as any shim does with that directory, its start
 * line going back on the same socket. It holds nothing of any container while
 * it waits, and exits when the daemon's end closes (the daemon ended, or drops
 * it), so an idle shim never outlives its daemon. */
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "shim.h"

int shim_idle_wait(int fd, char *ret_dir, size_t size)
{
    /* Ready: what the next process's pid file needs of this shim, known now. */
    (void)shim_own_start_time();
    char line[32];
    int len = snprintf(line, sizeof(line), "ready %d\n", (int)getpid());
    if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len)
        return -EPIPE;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        ssize_t n = recv(fd, ret_dir, size, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EPIPE; /* the daemon's end closed: nobody will hand us work */
        /* One absolute path, whole, without NUL; the daemon is the only peer. */
        if ((size_t)n >= size || ret_dir[0] != '/' || memchr(ret_dir, '\0', (size_t)n))
            return -EBADMSG;
        ret_dir[n] = '\0';
        return 0;
    }
}
