/* Writing whole buffers; where long-lived descriptors live. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cloche/fdio.h"

int fd_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fd_send_all(int fd, const void *data, size_t len, int timeout_ms)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (timeout_ms <= 0)
                return -EAGAIN;
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int k = poll(&pfd, 1, timeout_ms);
            if (k < 0 && errno != EINTR)
                return -errno;
            if (k == 0)
                return -ETIMEDOUT;
            continue;
        }
        if (n < 0)
            return errno == ECONNRESET ? -EPIPE : -errno;
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static struct rlimit limit_found;
static bool limit_raised;

int fd_limit_raise(struct rlimit *ret_found, struct rlimit *ret_now)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    struct rlimit now = rl;
    rlim_t want = rl.rlim_max > FD_LIMIT_WANT ? FD_LIMIT_WANT : rl.rlim_max; /* or infinity */
    if (rl.rlim_cur < want) {
        now.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &now) < 0)
            return -errno;
        limit_found = rl;
        limit_raised = true;
    }
    if (ret_found)
        *ret_found = rl;
    if (ret_now)
        *ret_now = now;
    return 0;
}

void fd_limit_restore(pid_t pid)
{
    if (limit_raised)
        (void)prlimit(pid, RLIMIT_NOFILE, &limit_found, NULL);
}

int fd_high_base(void)
{
    static atomic_int base = -1;
    int b = atomic_load(&base);
    if (b >= 0)
        return b;
    struct rlimit rl;
    b = 0;
    /* Not higher: a fork that copies the whole table copies its array up to the
     * highest descriptor (LimitNOFILE=1048576 in the unit would make that 4 MiB). */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= 8192)
        b = rl.rlim_cur / 2 > FD_HIGH_BASE_MAX ? FD_HIGH_BASE_MAX : (int)(rl.rlim_cur / 2);
    atomic_store(&base, b);
    return b;
}

int fd_move_high(int fd)
{
    int base = fd_high_base();
    if (fd < 0 || base == 0 || fd >= base)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, base);
    if (high < 0)
        return fd;
    close(fd);
    return high;
}
