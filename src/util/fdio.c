/* Writing whole buffers. */
#include <errno.h>
#include <poll.h>
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
