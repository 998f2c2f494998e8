/* GET /containers/H/cloche/logs?process=ID&tail=N&since=UNIX&follow=true: the
 * log files of a container's service (or of a process run with cloche_log), as
 * ndjson or, with Accept: text/plain, as text lines. Served on the daemon's own
 * connection handler: a follow lasts until the client leaves, and must not hold
 * one of libmicrohttpd's pool threads. Memory is bounded by one output buffer. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api-internal.h"
#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "reqstats.h"
#include "stream.h"

#define LOGS_OUT_MAX (64u << 10) /* bytes gathered before a chunk is sent */
#define LOGS_FOLLOW_MS 200       /* how often a follow looks for new lines */
#define LOGS_TAIL_MAX 100000000ull

typedef struct LogsOut {
    int fd;
    int minor;
    bool text;
    bool broken;
    char buf[LOGS_OUT_MAX];
    size_t len;
} LogsOut;

static void send_raw(LogsOut *o, const char *data, size_t len)
{
    while (len > 0 && !o->broken) {
        ssize_t n = send(o->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            o->broken = true;
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void out_flush(LogsOut *o)
{
    if (o->len == 0)
        return;
    if (o->minor) {
        char size[32];
        int n = snprintf(size, sizeof(size), "%zx\r\n", o->len);
        send_raw(o, size, (size_t)n);
        send_raw(o, o->buf, o->len);
        send_raw(o, "\r\n", 2);
    } else {
        send_raw(o, o->buf, o->len);
    }
    o->len = 0;
}

static void out_append(LogsOut *o, const char *data, size_t len)
{
    if (o->len + len > sizeof(o->buf))
        out_flush(o);
    if (len > sizeof(o->buf)) {
        /* Larger than the buffer (a long line, escaped): a chunk of its own. */
        if (o->minor) {
            char size[32];
            int n = snprintf(size, sizeof(size), "%zx\r\n", len);
            send_raw(o, size, (size_t)n);
            send_raw(o, data, len);
            send_raw(o, "\r\n", 2);
        } else {
            send_raw(o, data, len);
        }
        return;
    }
    memcpy(o->buf + o->len, data, len);
    o->len += len;
}

/* RFC 3339 in UTC with nanoseconds. */
static void format_time(int64_t ns, char out[40])
{
    time_t sec = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%09" PRId64 "Z", ns % 1000000000);
}

static int on_line(const LogLine *line, void *userdata)
{
    LogsOut *o = userdata;
    char when[40];
    format_time(line->time_ns, when);
    const char *stream = line->is_stderr ? "stderr" : "stdout";
    if (o->text) {
        char head[64];
        int n = snprintf(head, sizeof(head), "%s %s ", when, stream);
        out_append(o, head, (size_t)n);
        out_append(o, line->text, line->len);
        out_append(o, "\n", 1);
    } else {
        json_object *obj = json_object_new_object();
        if (!obj)
            return -ENOMEM;
        json_object_object_add(obj, "time", json_object_new_string(when));
        json_object_object_add(obj, "stream", json_object_new_string(stream));
        json_object_object_add(obj, "line", json_object_new_string_len(line->text, (int)line->len));
        size_t len = 0;
        _cleanup_free_ char *s = json_serialize(obj, &len);
        json_object_put(obj);
        if (!s)
            return -ENOMEM;
        out_append(o, s, len);
    }
    return o->broken ? -EPIPE : 0;
}

/* "true"/"1" or "false"/"0"; absent = false. */
static int query_bool(const StringMap *q, const char *key, bool *ret, ApiError *err)
{
    const char *v = strmap_get(q, key);
    if (!v || !*v || strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *ret = false;
        return 0;
    }
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *ret = true;
        return 0;
    }
    return api_bad_request(err, "Invalid value for '%s': '%.32s' is not true or false", key, v);
}

/* since: UNIX seconds, with an optional fraction. */
static int query_since(const StringMap *q, int64_t *ret, ApiError *err)
{
    const char *v = strmap_get(q, "since");
    *ret = INT64_MIN;
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || *end || end == v || d < 0 || d > 4e9)
        return api_bad_request(err, "Invalid value for 'since': '%.32s' is not a UNIX time", v);
    *ret = (int64_t)(d * 1e9);
    return 0;
}

static int query_tail(const StringMap *q, uint64_t *ret, ApiError *err)
{
    const char *v = strmap_get(q, "tail");
    *ret = UINT64_MAX;
    if (!v || !*v || strcmp(v, "all") == 0)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || v[0] == '-' || n > LOGS_TAIL_MAX)
        return api_bad_request(err,
                               "Invalid value for 'tail': '%.32s' (a number of lines up to %llu)",
                               v, LOGS_TAIL_MAX);
    *ret = n;
    return 0;
}

/* Has the client closed its end? */
static bool client_left(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, timeout_ms) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return true;
    char b[512];
    ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

void api_logs_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden)
{
    ApiError err;
    api_error_clear(&err);
    StringMap query = STRING_MAP_INIT;
    Container *c = NULL;
    LogReader *reader = NULL;
    bool follow = false;
    uint64_t tail;
    int64_t since;
    int r = url_parse_query(head->query, &query, &err);
    if (r >= 0)
        r = query_bool(&query, "follow", &follow, &err);
    if (r >= 0)
        r = query_tail(&query, &tail, &err);
    if (r >= 0)
        r = query_since(&query, &since, &err);
    const char *process = strmap_get(&query, "process");
    if (r >= 0)
        r = spec_validate_handle(m->params[0], &err);
    if (r >= 0)
        r = garden_find(garden, m->params[0], &c, &err);
    if (r >= 0)
        r = container_logs_open(garden, c, process && *process ? process : "service", &reader,
                                &err);
    strmap_clear(&query);
    container_unref(c);
    if (r < 0) {
        stream_reply_error(fd, head, &err);
        return;
    }
    LogsOut *o = calloc(1, sizeof(*o));
    if (!o) {
        log_reader_free(reader);
        return;
    }
    o->fd = fd;
    o->minor = head->minor_version;
    o->text = strncmp(head->accept, "text/plain", 10) == 0;
    char hdr[256];
    reqstats_stream_reply(200);
    int n = snprintf(hdr, sizeof(hdr), "HTTP/1.%d 200 OK\r\nContent-Type: %s\r\n%s\r\n", o->minor,
                     o->text ? "text/plain; charset=utf-8" : "application/x-ndjson",
                     o->minor ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n");
    send_raw(o, hdr, (size_t)n);
    r = log_reader_history(reader, tail, since, on_line, o);
    out_flush(o);
    while (r >= 0 && follow && !o->broken) {
        if (client_left(fd, LOGS_FOLLOW_MS))
            break;
        r = log_reader_follow(reader, on_line, o);
        out_flush(o);
    }
    if (o->minor && !o->broken)
        send_raw(o, "0\r\n\r\n", 5);
    log_reader_free(reader);
    free(o);
}

/* ---- the same without follow, as an ordinary reply ---- */

/* For a request that reaches libmicrohttpd: a later one on a kept-alive
 * connection, as a browser sends (the dashboard's log tail). The reply is built
 * in memory, so it is bounded. */
#define LOGS_BUFFERED_MAX (4u << 20)

typedef struct LogsBuffer {
    FILE *f;
    bool text;
    size_t len;
} LogsBuffer;

static int on_line_buffered(const LogLine *line, void *userdata)
{
    LogsBuffer *b = userdata;
    char when[40];
    format_time(line->time_ns, when);
    const char *stream = line->is_stderr ? "stderr" : "stdout";
    size_t before = b->len;
    if (b->text) {
        int n = fprintf(b->f, "%s %s %.*s\n", when, stream, (int)line->len, line->text);
        if (n < 0)
            return -ENOMEM;
        b->len += (size_t)n;
    } else {
        json_object *obj = json_object_new_object();
        if (!obj)
            return -ENOMEM;
        json_object_object_add(obj, "time", json_object_new_string(when));
        json_object_object_add(obj, "stream", json_object_new_string(stream));
        json_object_object_add(obj, "line", json_object_new_string_len(line->text, (int)line->len));
        size_t len = 0;
        _cleanup_free_ char *s = json_serialize(obj, &len);
        json_object_put(obj);
        if (!s || fwrite(s, 1, len, b->f) != len)
            return -ENOMEM;
        b->len += len;
    }
    return b->len > LOGS_BUFFERED_MAX && before > 0 ? -EFBIG : 0;
}

int route_container_logs(ApiRequest *req)
{
    Container *c;
    bool follow = false;
    uint64_t tail;
    int64_t since;
    int r = api_request_container(req, &c);
    if (r >= 0)
        r = query_bool(&req->query, "follow", &follow, &req->error);
    if (r >= 0 && follow)
        r = api_errorf(&req->error, -EPROTO, 400, GARDEN_ERR_GENERIC,
                       "A follow (follow=true) must be the first request on its connection");
    if (r >= 0)
        r = query_tail(&req->query, &tail, &req->error);
    if (r >= 0)
        r = query_since(&req->query, &since, &req->error);
    if (r < 0)
        return r;
    const char *process = strmap_get(&req->query, "process");
    LogReader *reader = NULL;
    r = container_logs_open(req->garden, c, process && *process ? process : "service", &reader,
                            &req->error);
    if (r < 0)
        return r;
    const char *accept = req->accept ? req->accept : "";
    LogsBuffer b = {.text = strncmp(accept, "text/plain", 10) == 0};
    char *data = NULL;
    size_t size = 0;
    b.f = open_memstream(&data, &size);
    r = b.f ? log_reader_history(reader, tail, since, on_line_buffered, &b) : -ENOMEM;
    log_reader_free(reader);
    if (b.f)
        fclose(b.f);
    if (r < 0) {
        free(data);
        if (r == -EFBIG)
            return api_errorf(&req->error, r, 413, GARDEN_ERR_GENERIC,
                              "The lines asked for are over %u MiB: ask for fewer (tail), or "
                              "as the first request on a connection",
                              LOGS_BUFFERED_MAX >> 20);
        return api_internal_error(&req->error, r, "Failed to read the logs");
    }
    req->raw_reply = data;
    req->raw_len = size;
    req->reply_type = b.text ? "text/plain; charset=utf-8" : "application/x-ndjson";
    return 0;
}
