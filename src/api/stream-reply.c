/* The replies every hand-served connection may need (stream.c for the process
 * routes, files.c and routes-images.c for theirs): a Garden error in the form the
 * Go client parses on a hijacked call (protocol §4.2: HTTP/1.1, Content-Length,
 * never "Connection: close"), and the lingering close after an early reply. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "api-internal.h"
#include "cloche/clock.h"
#include "cloche/fdio.h"
#include "reqstats.h"
#include "stream.h"

void stream_reply_error(int fd, const HttpHead *head, const ApiError *e)
{
    /* A failure that set no status is the server's own. */
    ApiError fallback;
    if (e->status < 400 || e->status > 599) {
        fallback = *e;
        fallback.status = 500;
        if (!fallback.message[0])
            snprintf(fallback.message, sizeof(fallback.message), "internal error");
        e = &fallback;
    }
    reqstats_stream_reply(e->status);
    size_t len = 0;
    _cleanup_free_ char *body = api_error_serialize(e, &len);
    char line[256];
    int hl =
        snprintf(line, sizeof(line),
                 "HTTP/1.%d %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 head ? head->minor_version : 1, e->status, http_reason(e->status), len);
    (void)fd_send_all(fd, line, (size_t)hl, 0);
    if (body)
        (void)fd_send_all(fd, body, len, 0);
}

/* After an early reply (an error before the body was read), read away what the
 * client still sends, for at most STREAM_DRAIN_MS and STREAM_DRAIN_MAX bytes, as
 * nginx's lingering close: closing with unread data would reset the connection,
 * and a client still writing would see EPIPE/ECONNRESET, not the reply. */
void stream_drain(int fd)
{
    shutdown(fd, SHUT_WR);
    char buf[65536];
    size_t total = 0;
    int64_t t0 = clock_monotonic_ms();
    while (total < STREAM_DRAIN_MAX) {
        long left = (long)(STREAM_DRAIN_MS - (clock_monotonic_ms() - t0));
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return;
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return;
        if (n > 0)
            total += (size_t)n;
    }
}
