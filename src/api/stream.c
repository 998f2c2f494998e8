/* The daemon's own handler for the streaming process routes (Run, Attach, Stdout,
 * Stderr), whose replies hand the raw socket over to the process protocol, and
 * for StreamIn/StreamOut (files.c), whose bodies may be as long as they like.
 * Errors take the form the Go client can parse on a hijacked call (protocol
 * §4.2): HTTP/1.1, Content-Length, and never "Connection: close". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "api-internal.h"
#include "cloche/log.h"
#include "cloche/wire.h"
#include "reqstats.h"
#include "stream.h"
#include "attach.h"
#include "cloche/json.h"
#include "cloche/clock.h"
#include "cloche/fdio.h"
#include <poll.h>

static bool is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void copy_value(char *dst, size_t size, const char *v, size_t len)
{
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len >= size)
        len = size - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

int http_head_parse(const char *buf, size_t len, HttpHead *ret)
{
    HttpHead h = {.content_length = -1};
    const char *end = buf + len;
    const char *eol = memmem(buf, len, "\r\n", 2);
    if (!eol)
        return -EINVAL;

    /* Request line. */
    const char *p = buf;
    size_t ml = 0;
    while (p + ml < eol && is_token_char(p[ml]))
        ml++;
    if (ml == 0 || ml >= sizeof(h.method) || p[ml] != ' ')
        return -EINVAL;
    memcpy(h.method, p, ml);
    p += ml + 1;
    const char *sp = memchr(p, ' ', (size_t)(eol - p));
    if (!sp || *p != '/')
        return -EINVAL;
    const char *q = memchr(p, '?', (size_t)(sp - p));
    const char *path_end = q ? q : sp;
    if ((size_t)(path_end - p) >= sizeof(h.path) || (q && (size_t)(sp - q - 1) >= sizeof(h.query)))
        return -EINVAL;
    memcpy(h.path, p, (size_t)(path_end - p));
    if (q)
        memcpy(h.query, q + 1, (size_t)(sp - q - 1));
    for (const char *c = p; c < sp; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return -EINVAL;
    if (eol - sp - 1 != 8 || memcmp(sp + 1, "HTTP/1.", 7) != 0 || (sp[8] != '0' && sp[8] != '1'))
        return -EINVAL;
    h.minor_version = sp[8] - '0';

    /* Headers. */
    p = eol + 2;
    while (p < end) {
        eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            return -EBADMSG;
        if (eol == p) {
            h.head_len = (size_t)(eol + 2 - buf);
            *ret = h;
            return 0;
        }
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p)
            return -EBADMSG;
        for (const char *c = p; c < colon; c++)
            if (!is_token_char(*c))
                return -EBADMSG;
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1;
        size_t vl = (size_t)(eol - v);
        char value[HTTP_HEADER_VALUE_MAX];
        copy_value(value, sizeof(value), v, vl);
        if (nl == 14 && strncasecmp(p, "Content-Length", nl) == 0) {
            char *e;
            errno = 0;
            long long n = strtoll(value, &e, 10);
            if (errno || *e || n < 0 || value[0] < '0' || value[0] > '9')
                return -EBADMSG;
            h.content_length = n;
        } else if (nl == 17 && strncasecmp(p, "Transfer-Encoding", nl) == 0) {
            h.chunked = strcasestr(value, "chunked") != NULL;
        } else if (nl == 6 && strncasecmp(p, "Expect", nl) == 0) {
            h.expect_continue = strcasecmp(value, "100-continue") == 0;
        } else if (nl == 6 && strncasecmp(p, "Accept", nl) == 0) {
            copy_value(h.accept, sizeof(h.accept), v, vl);
        } else if (nl == 12 && strncasecmp(p, "Content-Type", nl) == 0) {
            copy_value(h.content_type, sizeof(h.content_type), v, vl);
            h.has_content_type = true;
        } else if (nl == 13 && strncasecmp(p, "Authorization", nl) == 0) {
            copy_value(h.authorization, sizeof(h.authorization), v, vl);
        }
        p = eol + 2;
    }
    return -EBADMSG;
}

bool stream_route_wanted(const HttpHead *head)
{
    RouteMatch m;
    char allow[64];
    if (router_match(api_routes, api_routes_count, head->method, head->path, &m, allow,
                     sizeof(allow), NULL) < 0)
        return false;
    /* Run's curl form (Accept: application/x-ndjson) is served here too: its reply
     * is a long-lived chunked stream, which would hold one of libmicrohttpd's few
     * pool threads for the life of the process. */
    bool streaming = m.route->flags & ROUTE_STREAMING;
    route_match_done(&m);
    return streaming;
}

/* An error reply before the request's body was read: linger if there is one. */
static void reply_error_early(int fd, const HttpHead *head, const ApiError *e)
{
    stream_reply_error(fd, head, e);
    if (head && (head->chunked || head->content_length > 0))
        stream_drain(fd);
}

/* Read the head (already known to be complete), and nothing more. */
static int read_head(int fd, HttpHead *head, ApiError *err)
{
    char buf[API_MAX_HEADER_BYTES + 1];
    size_t have = 0;
    /* Peek, then consume exactly the head. */
    for (;;) {
        ssize_t n = recv(fd, buf, API_MAX_HEADER_BYTES, MSG_PEEK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        have = (size_t)n;
        buf[have] = '\0';
        if (memmem(buf, have, "\r\n\r\n", 4))
            break;
        if (have == API_MAX_HEADER_BYTES)
            return api_errorf(err, -E2BIG, 431, GARDEN_ERR_GENERIC,
                              "Request headers are too large");
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
            return -EIO;
    }
    const char *end = memmem(buf, have, "\r\n\r\n", 4);
    int r = http_head_parse(buf, (size_t)(end - buf) + 4, head);
    if (r < 0)
        return api_bad_request(err, r == -EBADMSG ? "Malformed HTTP header"
                                                  : "Malformed HTTP request line");
    for (size_t got = 0; got < head->head_len;) {
        ssize_t n = recv(fd, buf, head->head_len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        got += (size_t)n;
    }
    return 0;
}

/* Run's ProcessSpec (the other process routes have none). Nothing beyond the
 * body is read: on a hijacked connection, what follows belongs to the process
 * protocol. */
static int read_body(int fd, const HttpHead *head, char **ret_body, size_t *ret_len, ApiError *err)
{
    if (head->chunked)
        return api_errorf(err, -EINVAL, 411, GARDEN_ERR_GENERIC,
                          "A process request body needs a Content-Length");
    long long len = head->content_length > 0 ? head->content_length : 0;
    if (len > (long long)API_DEFAULT_MAX_BODY)
        return api_errorf(err, -E2BIG, 413, GARDEN_ERR_GENERIC,
                          "Request body is too large: %lld bytes (at most %u)", len,
                          API_DEFAULT_MAX_BODY);
    if (head->expect_continue && len > 0)
        (void)fd_send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, 0);
    _cleanup_free_ char *body = malloc((size_t)len + 1);
    if (!body)
        return api_internal_error(err, -ENOMEM, "Failed to read the request");
    for (size_t got = 0; got < (size_t)len;) {
        ssize_t n = recv(fd, body + got, (size_t)len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        got += (size_t)n;
    }
    body[len] = '\0';
    *ret_body = TAKE_PTR(body);
    *ret_len = (size_t)len;
    return 0;
}

/* Run: start the process, then serve the new attachment. */
static void serve_run(int fd, const HttpHead *head, Garden *garden, Container *c, const char *body,
                      size_t len, ApiError *err)
{
    _cleanup_json_ json_object *obj = NULL;
    ProcessSpec spec;
    int r = json_parse_strict(body, len, &obj, err);
    if (r >= 0)
        r = spec_decode_process_spec(obj, &spec, err);
    if (r < 0) {
        stream_reply_error(fd, head, err);
        return;
    }
    _cleanup_free_ char *id = NULL;
    int64_t started = clock_monotonic_ns();
    r = container_run(garden, c, &spec, &id, err);
    if (r >= 0)
        reqstats_record_operation(API_OP_RUN, clock_monotonic_ns() - started);
    process_spec_done(&spec);
    int shim = -1, exit_status = -1, dirfd = -1;
    if (r >= 0)
        r = container_process_attach(garden, c, id, &shim, &exit_status, &dirfd, err);
    if (r < 0) {
        stream_reply_error(fd, head, err);
        return;
    }
    if (strcasestr(head->accept, "application/x-ndjson")) {
        api_attach_serve_ndjson(fd, head->minor_version, id, shim, exit_status);
        close(dirfd);
    } else {
        api_attach_serve(fd, head->minor_version, 201, id, shim, exit_status, dirfd);
    }
}

static void serve_attach(int fd, const HttpHead *head, Garden *garden, Container *c,
                         const char *process_id, ApiError *err)
{
    int shim = -1, exit_status = -1, dirfd = -1;
    if (container_process_attach(garden, c, process_id, &shim, &exit_status, &dirfd, err) < 0) {
        stream_reply_error(fd, head, err);
        return;
    }
    api_attach_serve(fd, head->minor_version, 200, process_id, shim, exit_status, dirfd);
}

static void set_timeouts(int fd, time_t seconds)
{
    struct timeval tv = {.tv_sec = seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* The request head, its token and its route. false: answered (or gone) here. */
static bool read_request(int fd, const ApiConfig *cfg, HttpHead *head, RouteMatch *m, ApiError *err)
{
    int r = read_head(fd, head, err);
    if (r == -EIO)
        return false;
    if (r < 0) {
        stream_reply_error(fd, NULL, err);
        return false;
    }
    /* The relay waits on its own; the timeouts were for reading the request. */
    set_timeouts(fd, 0);
    if (api_connection_needs_token(fd, cfg) && !api_token_ok(head->authorization, cfg)) {
        api_errorf(err, -EACCES, 401, GARDEN_ERR_GENERIC,
                   head->authorization[0] ? "Invalid bearer token" : "A bearer token is required");
        reply_error_early(fd, head, err);
        return false;
    }
    char allow[64];
    r = router_match(api_routes, api_routes_count, head->method, head->path, m, allow,
                     sizeof(allow), err);
    if (r < 0) {
        reply_error_early(fd, head, err);
        return false;
    }
    return true;
}

/* The routes that read their own body and own the connection to the end. */
static bool serve_whole_connection(int fd, const HttpHead *head, const RouteMatch *m,
                                   Garden *garden)
{
    const char *name = m->route->name;
    if (strcmp(name, "StreamIn") == 0 || strcmp(name, "StreamOut") == 0)
        api_files_serve(fd, head, m, garden);
    else if (strcmp(name, "ImagePull") == 0)
        api_image_pull_serve(fd, head, garden);
    else if (strcmp(name, "ImageExport") == 0)
        api_image_export_serve(fd, head, m, garden);
    else if (strcmp(name, "Events") == 0)
        api_events_serve(fd, head, garden);
    else if (strcmp(name, "ImageImport") == 0)
        api_image_import_serve(fd, head, m, garden);
    else if (strcmp(name, "ContainerLogs") == 0)
        api_logs_serve(fd, head, m, garden);
    else
        return false;
    return true;
}

/* Stdout/Stderr: hand fd to its attachment. true: taken. */
static bool serve_output_stream(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden,
                                ApiError *err)
{
    /* Go's server looks only at the stream id; cloche also answers an unknown
     * handle with 404, as for every route (protocol §7). */
    Container *known = NULL;
    int r = spec_validate_handle(m->params[0], err);
    if (r >= 0)
        r = garden_find(garden, m->params[0], &known, err);
    if (r < 0) {
        stream_reply_error(fd, head, err);
        return false;
    }
    container_unref(known);
    return api_attach_stream(fd, head->minor_version, m->params[2],
                             strcmp(m->route->name, "Stderr") == 0);
}

/* Run and Attach, for the container they name. */
static void serve_process(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden,
                          const char *body, size_t body_len, ApiError *err)
{
    Container *c = NULL;
    int r = spec_validate_handle(m->params[0], err);
    if (r >= 0)
        r = garden_acquire(garden, m->params[0], &c, err);
    if (r < 0) {
        stream_reply_error(fd, head, err);
        return;
    }
    if (strcmp(m->route->name, "Run") == 0)
        serve_run(fd, head, garden, c, body, body_len, err);
    else
        serve_attach(fd, head, garden, c, m->params[1], err);
    garden_release(garden, c);
}

/* One streaming connection, after its route is known. true: fd was taken. */
static bool serve_route(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden,
                        ApiError *err)
{
    if (serve_whole_connection(fd, head, m, garden))
        return false;
    _cleanup_free_ char *body = NULL;
    size_t body_len = 0;
    int r = read_body(fd, head, &body, &body_len, err);
    if (r == -EIO)
        return false;
    if (r < 0) {
        reply_error_early(fd, head, err);
        return false;
    }
    const char *name = m->route->name;
    if (strcmp(name, "Stdout") == 0 || strcmp(name, "Stderr") == 0)
        return serve_output_stream(fd, head, m, garden, err);
    serve_process(fd, head, m, garden, body, body_len, err);
    return false;
}

bool api_stream_serve(int fd, const ApiConfig *cfg, Garden *garden)
{
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    set_timeouts(fd, 30);

    ApiError err;
    api_error_clear(&err);
    HttpHead head;
    RouteMatch m = {0};
    bool taken = false;
    if (read_request(fd, cfg, &head, &m, &err)) {
        reqstats_stream_begin(m.route);
        taken = serve_route(fd, &head, &m, garden, &err);
    }
    reqstats_stream_end();
    route_match_done(&m);
    if (!taken)
        shutdown(fd, SHUT_WR);
    return taken;
}
