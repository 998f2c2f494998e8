/* StreamIn and StreamOut (protocol §2.1, design §4), served by cloched's own
 * handler so that a long upload or download never holds one of libmicrohttpd's
 * pool threads. The work inside the container is cloche-tar's (src/tar/): it
 * enters the container as the requesting user; garden resolves the user and
 * starts it (proc/tar.c); this file pumps the request body into it
 * (Content-Length or chunked) or its output out as the reply body (chunked),
 * and turns its failures into Garden
 * errors: "error streaming in: ..." / "error streaming out: ...", with the
 * helper's messages, as guardian's users expect. One request per connection. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "api-internal.h"
#include "cloche/log.h"
#include "cloche/wire.h"
#include "cloche/fdio.h"
#include "reqstats.h"
#include "stream.h"

#define FILES_BUFFER (1u << 20)
#define FILES_STDERR_MAX 4096 /* helper messages kept for the error reply */
#define FILES_BODY_IDLE_S 60  /* a stalled upload is abandoned after this */

/* ---- the helper ---- */

typedef struct Helper {
    ContainerFiles files;
    int in;  /* its stdin (StreamIn), else -1 */
    int out; /* its stdout (StreamOut), else -1 */
    int err;
    char messages[FILES_STDERR_MAX];
    size_t n_messages;
} Helper;

static void helper_close(Helper *h)
{
    int *fds[] = {&h->in, &h->out, &h->err};
    for (size_t i = 0; i < ELEMENTSOF(fds); i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}

/* cloche-tar for mode on path (garden starts it): StreamIn writes its stdin,
 * StreamOut reads its stdout; both read its stderr. */
static int helper_start(const ContainerFilesTarget *t, const char *mode, const char *path, bool in,
                        Helper *h)
{
    int r = container_files_start(t, mode, path, &h->files);
    if (r < 0)
        return r;
    h->in = in ? h->files.data : -1;
    h->out = in ? -1 : h->files.data;
    h->err = h->files.messages;
    return 0;
}

/* Read what the helper says on stderr (kept up to FILES_STDERR_MAX). */
static void helper_read_messages(Helper *h)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(h->err, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) {
                close(h->err);
                h->err = -1;
            }
            return;
        }
        size_t keep = sizeof(h->messages) - 1 - h->n_messages;
        if ((size_t)n < keep)
            keep = (size_t)n;
        memcpy(h->messages + h->n_messages, buf, keep);
        h->n_messages += keep;
        h->messages[h->n_messages] = '\0';
    }
}

/* Close its pipes, collect its messages, reap it. Returns its exit status (128+N
 * for signal N). */
static int helper_finish(Helper *h, bool kill_it)
{
    if (kill_it)
        container_files_kill(&h->files);
    if (h->in >= 0) {
        close(h->in);
        h->in = -1;
    }
    if (h->out >= 0) {
        close(h->out);
        h->out = -1;
    }
    while (h->err >= 0) {
        struct pollfd p = {.fd = h->err, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        helper_read_messages(h);
    }
    helper_close(h);
    int status = container_files_wait(&h->files, false);
    /* One line for the error message: newlines become "; ". */
    while (h->n_messages && h->messages[h->n_messages - 1] == '\n')
        h->messages[--h->n_messages] = '\0';
    for (char *nl; (nl = strchr(h->messages, '\n'));)
        *nl = ';';
    return status;
}

static int helper_error(ApiError *err, const char *what, const Helper *h, int status)
{
    if (h->n_messages)
        return api_errorf(err, -EIO, 500, GARDEN_ERR_GENERIC, "error streaming %s: %s", what,
                          h->messages);
    return api_errorf(err, -EIO, 500, GARDEN_ERR_GENERIC, "error streaming %s: exit status %d",
                      what, status);
}

/* ---- the connection ---- */

static int send_iov(int fd, struct iovec *iov, int n_iov)
{
    while (n_iov > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EPIPE;
        while (n_iov > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            n_iov--;
        }
        if (n_iov > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static void reply_empty(int fd, const HttpHead *head)
{
    char line[160];
    reqstats_stream_reply(200);
    int n = snprintf(line, sizeof(line),
                     "HTTP/1.%d 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n"
                     "Connection: close\r\n\r\n{}\n",
                     head->minor_version);
    (void)fd_send_all(fd, line, (size_t)n, 0);
}

/* Write data to the helper's stdin, reading its stderr meanwhile (so neither side
 * can block the other). -EPIPE once the helper stopped reading. */
static int pump_to_helper(Helper *h, const char *data, size_t len)
{
    while (len > 0) {
        struct pollfd p[2] = {{.fd = h->in, .events = POLLOUT}, {.fd = h->err, .events = POLLIN}};
        if (poll(p, h->err >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[1].revents)
            helper_read_messages(h);
        if (!p[0].revents)
            continue;
        ssize_t n = write(h->in, data, len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0)
            return -EPIPE;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static bool is_tar_type(const HttpHead *head)
{
    if (!head->has_content_type)
        return true;
    const char *t = head->content_type;
    size_t len = strcspn(t, "; \t");
    return (len == 17 && strncasecmp(t, "application/x-tar", len) == 0) ||
           (len == 15 && strncasecmp(t, "application/tar", len) == 0);
}

static void serve_in(int fd, const HttpHead *head, const ContainerFilesTarget *t, const char *dest,
                     const char *handle)
{
    ApiError err;
    api_error_clear(&err);
    bool single = !is_tar_type(head);
    bool chunked = head->chunked;
    uint64_t remaining = !chunked && head->content_length > 0 ? (uint64_t)head->content_length : 0;
    bool done = !chunked && remaining == 0;

    Helper h = {.in = -1, .out = -1, .err = -1};
    int r = helper_start(t, single ? "in-file" : "in", dest, true, &h);
    if (r < 0) {
        api_internal_error(&err, r, "Failed to start cloche-tar");
        stream_reply_error(fd, head, &err);
        stream_drain(fd);
        return;
    }
    if (head->expect_continue && head->minor_version == 1 && !done)
        (void)fd_send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, 0);
    struct timeval tv = {.tv_sec = FILES_BODY_IDLE_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    _cleanup_free_ char *buf = malloc(FILES_BUFFER);
    HttpChunkDecoder dec = {.state = HTTP_CHUNK_SIZE};
    bool body_failed = false, helper_gone = !buf;
    uint64_t total = 0;
    while (!done && !helper_gone) {
        size_t want = FILES_BUFFER;
        if (!chunked && remaining < want)
            want = (size_t)remaining;
        ssize_t n = recv(fd, buf, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            body_failed = true;
            break;
        }
        size_t len = (size_t)n;
        if (chunked) {
            if (http_chunk_decode(&dec, buf, len, &len) < 0) {
                api_bad_request(&err, "Malformed chunked request body");
                break;
            }
            done = dec.state == HTTP_CHUNK_DONE;
        } else {
            remaining -= (uint64_t)n;
            done = remaining == 0;
        }
        total += len;
        if (len && pump_to_helper(&h, buf, len) < 0)
            helper_gone = true;
    }
    bool complete = done && !err.status;
    /* A body cut short (or malformed) is killed rather than ended: an archive cut
     * at an entry boundary would otherwise look complete to the helper. */
    int status = helper_finish(&h, !complete && !helper_gone);
    if (err.status) {
        stream_reply_error(fd, head, &err);
    } else if (body_failed) {
        log_info("StreamIn to '%s' in '%s': the client stopped sending after %" PRIu64 " bytes",
                 dest, handle, total);
        return;
    } else if (status != 0) {
        helper_error(&err, "in", &h, status);
        log_debug("StreamIn to '%s' in '%s' failed: %s", dest, handle, err.message);
        stream_reply_error(fd, head, &err);
    } else {
        log_debug("StreamIn to '%s' in '%s': %" PRIu64 " bytes", dest, handle, total);
        reply_empty(fd, head);
        return;
    }
    if (!done)
        stream_drain(fd);
}

static void serve_out(int fd, const HttpHead *head, const ContainerFilesTarget *t,
                      const char *source, const char *handle)
{
    ApiError err;
    api_error_clear(&err);
    bool single = strcasestr(head->accept, "application/octet-stream") != NULL;
    Helper h = {.in = -1, .out = -1, .err = -1};
    int r = helper_start(t, single ? "out-file" : "out", source, false, &h);
    if (r < 0) {
        api_internal_error(&err, r, "Failed to start cloche-tar");
        stream_reply_error(fd, head, &err);
        return;
    }
    bool chunked = head->minor_version == 1;
    _cleanup_free_ char *buf = malloc(FILES_BUFFER);
    bool started = false, client_gone = !buf;
    uint64_t total = 0;
    while (h.out >= 0 && !client_gone) {
        struct pollfd p[2] = {{.fd = h.out, .events = POLLIN}, {.fd = h.err, .events = POLLIN}};
        if (poll(p, h.err >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            helper_read_messages(&h);
        if (!p[0].revents)
            continue;
        ssize_t n = read(h.out, buf, FILES_BUFFER);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            close(h.out);
            h.out = -1;
            break;
        }
        char line[256];
        struct iovec iov[4];
        int n_iov = 0;
        if (!started) {
            reqstats_stream_reply(200);
            int hl = snprintf(line, sizeof(line), "HTTP/1.%d 200 OK\r\nContent-Type: %s\r\n%s\r\n",
                              head->minor_version,
                              single ? "application/octet-stream" : "application/x-tar",
                              chunked ? "Transfer-Encoding: chunked\r\nConnection: close\r\n"
                                      : "Connection: close\r\n");
            iov[n_iov++] = (struct iovec){line, (size_t)hl};
            started = true;
        }
        char size[24];
        if (chunked) {
            int sl = snprintf(size, sizeof(size), "%zx\r\n", (size_t)n);
            iov[n_iov++] = (struct iovec){size, (size_t)sl};
        }
        iov[n_iov++] = (struct iovec){buf, (size_t)n};
        if (chunked)
            iov[n_iov++] = (struct iovec){(char *)"\r\n", 2};
        if (send_iov(fd, iov, n_iov) < 0)
            client_gone = true;
        total += (uint64_t)n;
    }
    int status = helper_finish(&h, client_gone);
    if (client_gone) {
        log_info("StreamOut of '%s' in '%s': the client went away after %" PRIu64 " bytes", source,
                 handle, total);
        return;
    }
    if (status != 0) {
        helper_error(&err, "out", &h, status);
        if (!started) {
            stream_reply_error(fd, head, &err);
            return;
        }
        /* The body has begun: all that is left is to end it early (no last chunk). */
        log_warn("StreamOut of '%s' in '%s' ended early after %" PRIu64 " bytes: %s", source,
                 handle, total, err.message);
        return;
    }
    if (!started) {
        char line[200];
        reqstats_stream_reply(200);
        int hl = snprintf(line, sizeof(line),
                          "HTTP/1.%d 200 OK\r\nContent-Type: %s\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n",
                          head->minor_version,
                          single ? "application/octet-stream" : "application/x-tar");
        (void)fd_send_all(fd, line, (size_t)hl, 0);
    } else if (chunked) {
        (void)fd_send_all(fd, "0\r\n\r\n", 5, 0);
    }
    log_debug("StreamOut of '%s' in '%s': %" PRIu64 " bytes", source, handle, total);
}

void api_files_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden)
{
    ApiError err;
    api_error_clear(&err);
    bool in = strcmp(m->route->name, "StreamIn") == 0;
    StringMap query = STRING_MAP_INIT;
    Container *c = NULL;
    int r = url_parse_query(head->query, &query, &err);
    const char *path = strmap_get(&query, in ? "destination" : "source");
    const char *user_name = strmap_get(&query, "user");
    if (r >= 0 && !in && (!path || !*path))
        r = api_bad_request(&err, "Invalid value for 'source': a path is required");
    if (r >= 0)
        r = spec_validate_handle(m->params[0], &err);
    if (r >= 0)
        r = garden_acquire(garden, m->params[0], &c, &err);
    ContainerFilesTarget *target = NULL;
    if (r >= 0) {
        r = container_files_target(garden, c, user_name, &target, &err);
        /* Every error of the container's side carries guardian's prefix (an
         * unknown user too): clients look for "error streaming in". */
        if (r < 0) {
            char message[sizeof(err.message)];
            snprintf(message, sizeof(message), "%s", err.message);
            api_errorf(&err, r, err.status, err.type, "error streaming %s: %s", in ? "in" : "out",
                       message);
        }
    }
    if (r < 0) {
        stream_reply_error(fd, head, &err);
        if (in)
            stream_drain(fd);
    } else if (in) {
        serve_in(fd, head, target, path ? path : "", m->params[0]);
    } else {
        serve_out(fd, head, target, path, m->params[0]);
    }
    container_files_target_free(target);
    if (c)
        garden_release(garden, c);
    strmap_clear(&query);
}
