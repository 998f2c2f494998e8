/* The libmicrohttpd adapter: ordinary (non-streaming) routes. Connections arrive
 * through MHD_add_connection() from the daemon's own listeners (server.c). MHD's
 * URL unescaping is turned off so routing sees the escaped path, as Garden's Go
 * server does; path params and query strings are decoded by router.c. */
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api-internal.h"
#include "cloche/log.h"
#include "http.h"

typedef struct HttpRequest {
    ApiRequest api;
    char *body;
    size_t body_len, body_allocated;
    bool replied; /* an early reply (error) is queued */
    /* A body over the cap is read away (bounded) and answered 413 once it has
     * all arrived, so that a client still writing it reads the answer instead
     * of a reset (nginx's lingering close, for a connection MHD closes). */
    bool too_large;
    unsigned long long declared; /* Content-Length, when given */
    size_t discarded;
    struct timespec discard_start;

    /* Slow routes run on a worker thread while MHD holds the connection suspended. */
    HttpServer *server;
    struct MHD_Connection *conn;
    atomic_bool done;
    int status;
    char *out;
    size_t out_len;
} HttpRequest;

#define SLOW_WORKERS_MAX 256           /* beyond this many at once, requests run inline */
#define HTTP_DISCARD_MAX (64ull << 20) /* body past the cap read away before a 413 */
#define HTTP_DISCARD_MS 10000          /* and for at most this long */

static void *slow_worker(void *arg)
{
    HttpRequest *hr = arg;
    HttpServer *hs = hr->server;
    api_dispatch(&hr->api, &hr->status, &hr->out, &hr->out_len);
    atomic_store(&hr->done, true);
    /* hr may be freed once resumed: touch only hs from here on. */
    pthread_mutex_lock(&hs->workers_lock);
    MHD_resume_connection(hr->conn);
    hs->workers--;
    pthread_cond_broadcast(&hs->workers_done);
    pthread_mutex_unlock(&hs->workers_lock);
    return NULL;
}

/* Run a slow route off the HTTP thread. Returns false if it must run inline. */
static bool start_slow(HttpServer *hs, HttpRequest *hr, struct MHD_Connection *conn)
{
    pthread_mutex_lock(&hs->workers_lock);
    if (hs->workers >= SLOW_WORKERS_MAX || hs->stopping) {
        pthread_mutex_unlock(&hs->workers_lock);
        return false;
    }
    hr->server = hs;
    hr->conn = conn;
    MHD_suspend_connection(conn);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    bool started = pthread_create(&t, &attr, slow_worker, hr) == 0;
    pthread_attr_destroy(&attr);
    if (started)
        hs->workers++;
    else
        MHD_resume_connection(conn);
    pthread_mutex_unlock(&hs->workers_lock);
    return started;
}

/* Per connection: whether it needs a bearer token, decided once from its local
 * address. Stored directly in MHD's socket_context pointer. */
#define CONN_CHECKED ((uintptr_t)1)
#define CONN_NEEDS_TOKEN ((uintptr_t)2)

static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    const HttpServer *hs = cls;
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    uintptr_t flags = CONN_CHECKED;
    if (!info || api_connection_needs_token(info->connect_fd, hs->cfg))
        flags |= CONN_NEEDS_TOKEN;
    *socket_context = (void *)flags;
}

static size_t unescape_nothing(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* Connections handed over from a Unix socket make MHD try TCP options on
     * every reply; that is expected, not news. */
    if (strstr(msg, "TCP_NODELAY") || strstr(msg, "TCP_CORK") || strstr(msg, "push the data"))
        return;
    log_debug("libmicrohttpd: %s", msg);
}

static enum MHD_Result queue_body(struct MHD_Connection *conn, int status, char *body, size_t len,
                                  const char *allow, const ApiRequest *api)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    bool raw = api && api->reply_type && status < 400;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            raw ? api->reply_type : "application/json");
    if (raw && api->location)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, api->location);
    if (allow && *allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, const ApiError *e,
                                   const char *allow)
{
    size_t len = 0;
    char *body = api_error_serialize(e, &len);
    return queue_body(conn, e->status, body, len, allow, NULL);
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    /* Rebuild the raw query string; router.c decodes it with form rules. */
    char **q = cls;
    size_t old = *q ? strlen(*q) : 0;
    size_t add = strlen(key) + (value ? strlen(value) + 1 : 0) + 2;
    if (old + add > 64 * 1024)
        return MHD_NO;
    char *n = realloc(*q, old + add);
    if (!n)
        return MHD_NO;
    *q = n;
    snprintf(n + old, add, "%s%s%s%s", old ? "&" : "", key, value ? "=" : "", value ? value : "");
    return MHD_YES;
}

/* First call for a request: route, authorize, check the declared body size. A
 * failure is replied at once, before any body byte is read. */
static enum MHD_Result begin_request(HttpServer *hs, struct MHD_Connection *conn, const char *url,
                                     const char *method, HttpRequest *hr)
{
    ApiError err;
    api_error_clear(&err);
    char allow[64];

    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    uintptr_t flags = info ? (uintptr_t)info->socket_context : 0;
    if ((flags & CONN_NEEDS_TOKEN) || !(flags & CONN_CHECKED)) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        if (!api_token_ok(auth, hs->cfg)) {
            api_errorf(&err, -EACCES, 401, GARDEN_ERR_GENERIC,
                       auth ? "Invalid bearer token" : "A bearer token is required");
            hr->replied = true;
            return queue_error(conn, &err, NULL);
        }
    }

    int r = router_match(api_routes, api_routes_count, method, url, &hr->api.match, allow,
                         sizeof(allow), &err);
    if (r < 0) {
        hr->replied = true;
        return queue_error(conn, &err, err.status == 405 ? allow : NULL);
    }

    if (hs->metrics_only && hr->api.match.route->handler != route_prometheus) {
        api_errorf(&err, -ENOENT, 404, GARDEN_ERR_GENERIC,
                   "No route for %s %s: this listener serves GET /metrics only", method, url);
        hr->replied = true;
        return queue_error(conn, &err, NULL);
    }

    if ((hr->api.match.route->flags & ROUTE_STREAMING) &&
        !(hr->api.match.route->flags & ROUTE_BUFFERED)) {
        /* Streaming routes reach MHD only as a later request on a kept-alive
         * connection; the hijacked protocol needs a connection of its own. */
        api_errorf(&err, -EPROTO, 400, GARDEN_ERR_GENERIC,
                   "%s must be the first request on its connection", hr->api.match.route->name);
        hr->replied = true;
        return queue_error(conn, &err, NULL);
    }

    _cleanup_free_ char *query = NULL;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, &query);
    r = url_parse_query(query, &hr->api.query, &err);
    if (r < 0) {
        hr->replied = true;
        return queue_error(conn, &err, NULL);
    }

    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (*end == '\0' && n > hs->max_body) {
            const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
            /* A client waiting for 100 Continue sends nothing more: answer now. So
             * too when the body is beyond what is worth reading away. */
            if ((expect && strcasecmp(expect, "100-continue") == 0) ||
                n - hs->max_body > HTTP_DISCARD_MAX) {
                api_errorf(&err, -E2BIG, 413, GARDEN_ERR_GENERIC,
                           "Request body is too large: %llu bytes (at most %zu)", n, hs->max_body);
                hr->replied = true;
                return queue_error(conn, &err, NULL);
            }
            hr->too_large = true;
            hr->declared = n;
            clock_gettime(CLOCK_MONOTONIC, &hr->discard_start);
        }
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    HttpServer *hs = cls;
    HttpRequest *hr = *con_cls;
    if (!hr) {
        hr = calloc(1, sizeof(*hr));
        if (!hr)
            return MHD_NO;
        hr->api.garden = hs->garden;
        hr->api.cfg = hs->cfg;
        hr->api.method = method;
        hr->api.path = url;
        hr->api.accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
        *con_cls = hr;
        return begin_request(hs, conn, url, method, hr);
    }
    if (hr->replied) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size && !hr->too_large && hr->body_len + *upload_data_size > hs->max_body) {
        /* A chunked body that outgrew the cap: read the rest away, then 413. */
        hr->too_large = true;
        hr->discarded = hr->body_len;
        clock_gettime(CLOCK_MONOTONIC, &hr->discard_start);
    }
    if (*upload_data_size && hr->too_large) {
        hr->discarded += *upload_data_size;
        *upload_data_size = 0;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - hr->discard_start.tv_sec) * 1000 +
                  (now.tv_nsec - hr->discard_start.tv_nsec) / 1000000;
        if (hr->discarded > hs->max_body + HTTP_DISCARD_MAX || ms > HTTP_DISCARD_MS) {
            log_info("Dropping a request to %s: body over %zu bytes", url, hs->max_body);
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (hr->too_large) {
        ApiError err;
        if (hr->declared)
            api_errorf(&err, -E2BIG, 413, GARDEN_ERR_GENERIC,
                       "Request body is too large: %llu bytes (at most %zu)", hr->declared,
                       hs->max_body);
        else
            api_errorf(&err, -E2BIG, 413, GARDEN_ERR_GENERIC,
                       "Request body is too large: %zu bytes (at most %zu)", hr->discarded,
                       hs->max_body);
        hr->replied = true;
        return queue_error(conn, &err, NULL);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (hr->body_len + n + 1 > hr->body_allocated) {
            size_t na = (hr->body_len + n + 1) * 2;
            if (na > hs->max_body + 1)
                na = hs->max_body + 1;
            char *b = realloc(hr->body, na);
            if (!b)
                return MHD_NO;
            hr->body = b;
            hr->body_allocated = na;
        }
        memcpy(hr->body + hr->body_len, upload_data, n);
        hr->body_len += n;
        hr->body[hr->body_len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (atomic_load(&hr->done)) {
        char *out = TAKE_PTR(hr->out);
        return queue_body(conn, hr->status, out, hr->out_len, NULL, &hr->api);
    }
    hr->api.body = hr->body;
    hr->api.body_len = hr->body_len;
    /* Every route that reads the model can wait behind a container's lock (held
     * across a durable write, slow on a busy disk): only those that touch nothing
     * shared stay on the HTTP threads, so /ping answers whatever the load. */
    if (!(hr->api.match.route->flags & ROUTE_INLINE) && start_slow(hs, hr, conn))
        return MHD_YES;
    int status;
    char *body;
    size_t len;
    api_dispatch(&hr->api, &status, &body, &len);
    return queue_body(conn, status, body, len, NULL, &hr->api);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    HttpRequest *hr = *con_cls;
    if (!hr)
        return;
    api_request_done(&hr->api);
    free(hr->body);
    free(hr->out);
    free(hr);
    *con_cls = NULL;
}

int http_server_start(HttpServer *hs)
{
    pthread_mutex_init(&hs->workers_lock, NULL);
    pthread_cond_init(&hs->workers_done, NULL);
    hs->started = true;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET |
                     MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    hs->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, hs, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, hs, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        hs, MHD_OPTION_UNESCAPE_CALLBACK, unescape_nothing, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)hs->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(API_MAX_HEADER_BYTES * 2), MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)hs->threads, MHD_OPTION_END);
    return hs->mhd ? 0 : -EIO;
}

int http_server_add_connection(HttpServer *hs, int fd, const struct sockaddr *addr,
                               socklen_t addrlen)
{
    if (MHD_add_connection(hs->mhd, fd, addr, addrlen) != MHD_YES)
        return -errno ? -errno : -EIO;
    return 0;
}

void http_server_stop(HttpServer *hs)
{
    if (!hs->started)
        return;
    /* Let slow requests finish (and resume their connections) before MHD goes. */
    pthread_mutex_lock(&hs->workers_lock);
    hs->stopping = true;
    while (hs->workers > 0)
        pthread_cond_wait(&hs->workers_done, &hs->workers_lock);
    pthread_mutex_unlock(&hs->workers_lock);
    if (hs->mhd)
        MHD_stop_daemon(hs->mhd);
    hs->mhd = NULL;
    pthread_cond_destroy(&hs->workers_done);
    pthread_mutex_destroy(&hs->workers_lock);
    hs->started = false;
}
