/* Image extensions: GET /cloche/images, DELETE /cloche/images?ref=URI, and
 * POST /cloche/images/pull?ref=URI, whose reply streams progress as ndjson
 * (served on the daemon's own connection handler, like Run's curl form, so a
 * long pull holds none of libmicrohttpd's pool threads). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api-internal.h"
#include "cloche/json.h"
#include "cloche/cleanup.h"
#include "stream.h"

int route_images_list(ApiRequest *req)
{
    ImageInfo *v = NULL;
    size_t n = 0;
    int r = garden_images_list(req->garden, &v, &n, &req->error);
    if (r < 0)
        return r;
    json_object *list = json_object_new_array();
    for (size_t i = 0; list && i < n; i++) {
        json_object *o = json_object_new_object();
        if (!o)
            break;
        json_object_object_add(o, "name", json_object_new_string(v[i].name));
        json_object_object_add(o, "digest", json_object_new_string(v[i].digest));
        json_object_object_add(o, "bytes", json_new_u64(v[i].bytes));
        json_object_object_add(o, "layers", json_new_u64(v[i].n_layers));
        json_object_object_add(o, "containers", json_new_u64(v[i].containers));
        json_object_array_add(list, o);
    }
    image_info_free(v, n);
    json_object *reply = json_object_new_object();
    if (!list || !reply) {
        json_object_put(list);
        json_object_put(reply);
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    }
    json_object_object_add(reply, "images", list);
    req->reply = reply;
    return 0;
}

int route_image_remove(ApiRequest *req)
{
    int r = garden_image_remove(req->garden, strmap_get(&req->query, "ref"), &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}

/* ---- the streamed pull ---- */

typedef struct PullStream {
    int fd;
    int minor;
    bool started;
    bool broken;
} PullStream;

static void send_bytes(PullStream *p, const char *data, size_t len)
{
    while (len > 0 && !p->broken) {
        ssize_t n = send(p->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            p->broken = true; /* the client left: the pull still completes */
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void send_line(PullStream *p, json_object *o)
{
    size_t len = 0;
    _cleanup_free_ char *line = json_serialize(o, &len);
    json_object_put(o);
    if (!line)
        return;
    if (!p->started) {
        char head[256];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.%d 200 OK\r\nContent-Type: application/x-ndjson\r\n%s\r\n",
                         p->minor, p->minor ? "Transfer-Encoding: chunked\r\n" : "");
        send_bytes(p, head, (size_t)n);
        p->started = true;
    }
    if (p->minor) {
        char size[32];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        send_bytes(p, size, (size_t)n);
        send_bytes(p, line, len);
        send_bytes(p, "\r\n", 2);
    } else {
        send_bytes(p, line, len);
    }
}

static void on_progress(void *userdata, const char *layer, uint64_t done, uint64_t total)
{
    PullStream *p = userdata;
    json_object *o = json_object_new_object();
    if (!o || !layer)
        return json_object_put(o), (void)0;
    json_object_object_add(o, "layer", json_object_new_string(layer));
    json_object_object_add(o, "done", json_new_u64(done));
    json_object_object_add(o, "total", json_new_u64(total));
    send_line(p, o);
}

void api_image_pull_serve(int fd, const HttpHead *head, Garden *garden)
{
    ApiError err;
    api_error_clear(&err);
    StringMap query = STRING_MAP_INIT;
    int r = url_parse_query(head->query, &query, &err);
    PullStream p = {.fd = fd, .minor = head->minor_version};
    _cleanup_free_ char *digest = NULL;
    if (r >= 0) {
        ImageCredentials cred = {.username = strmap_get(&query, "username"),
                                 .password = strmap_get(&query, "password")};
        r = garden_image_pull(garden, strmap_get(&query, "ref"), &cred, on_progress, &p, &digest,
                              &err);
    }
    strmap_clear(&query);
    if (r < 0 && !p.started) {
        stream_reply_error(fd, head, &err);
        return;
    }
    json_object *o = json_object_new_object();
    if (o && r < 0) {
        json_object_object_add(o, "error", json_object_new_string(err.message));
        json_object_object_add(o, "status", json_object_new_int(err.status ? err.status : 500));
    } else if (o) {
        json_object_object_add(o, "digest", json_object_new_string(digest));
    }
    if (o)
        send_line(&p, o);
    if (p.minor)
        send_bytes(&p, "0\r\n\r\n", 5);
}

/* ---- import ---- */

#define IMPORT_BODY_MAX (16ull << 30)
#define IMPORT_IDLE_S 60

static void import_reply(int fd, const HttpHead *head, const char *name, const char *digest)
{
    json_object *o = json_object_new_object();
    if (o) {
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "digest", json_object_new_string(digest));
    }
    size_t len = 0;
    _cleanup_free_ char *body = o ? json_serialize(o, &len) : NULL;
    json_object_put(o);
    char hdr[200];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.%d 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\n\r\n",
                     head->minor_version, len);
    PullStream p = {.fd = fd};
    send_bytes(&p, hdr, (size_t)n);
    if (body)
        send_bytes(&p, body, len);
}

void api_image_import_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden)
{
    ApiError err;
    api_error_clear(&err);
    const char *name = m->params[0];
    bool chunked = head->chunked;
    if (!chunked && head->content_length < 0) {
        api_errorf(&err, -EINVAL, 411, GARDEN_ERR_GENERIC,
                   "An image archive needs a Content-Length or a chunked body");
        stream_reply_error(fd, head, &err);
        return;
    }
    if (!chunked && (uint64_t)head->content_length > IMPORT_BODY_MAX) {
        api_errorf(&err, -EFBIG, 413, GARDEN_ERR_GENERIC, "An image archive is at most %llu bytes",
                   (unsigned long long)IMPORT_BODY_MAX);
        stream_reply_error(fd, head, &err);
        return;
    }
    _cleanup_close_ int file = -1;
    if (garden_image_import_file(garden, &file, &err) < 0) {
        stream_reply_error(fd, head, &err);
        return;
    }
    if (head->expect_continue && head->minor_version == 1)
        (void)!send(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL);
    struct timeval tv = {.tv_sec = IMPORT_IDLE_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint64_t remaining = chunked ? 0 : (uint64_t)head->content_length, total = 0;
    bool done = !chunked && remaining == 0;
    HttpChunkDecoder dec = {.state = HTTP_CHUNK_SIZE};
    _cleanup_free_ char *buf = malloc(1u << 20);
    int r = buf ? 0 : -ENOMEM;
    while (r >= 0 && !done) {
        size_t want = 1u << 20;
        if (!chunked && remaining < want)
            want = (size_t)remaining;
        ssize_t n = recv(fd, buf, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the client left or stalled: nothing was imported */
        size_t len = (size_t)n;
        if (chunked) {
            if (http_chunk_decode(&dec, buf, len, &len) < 0) {
                r = api_bad_request(&err, "Malformed chunked request body");
                break;
            }
            done = dec.state == HTTP_CHUNK_DONE;
        } else {
            remaining -= (uint64_t)n;
            done = remaining == 0;
        }
        total += len;
        if (total > IMPORT_BODY_MAX) {
            r = api_errorf(&err, -EFBIG, 413, GARDEN_ERR_GENERIC,
                           "An image archive is at most %llu bytes",
                           (unsigned long long)IMPORT_BODY_MAX);
            break;
        }
        for (size_t off = 0; off < len;) {
            ssize_t w = write(file, buf + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                r = api_internal_error(&err, -errno, "Failed to store the archive");
                break;
            }
            off += (size_t)w;
        }
    }
    if (r < 0) {
        stream_reply_error(fd, head, &err);
        return;
    }
    _cleanup_free_ char *digest = NULL;
    r = garden_image_import(garden, name, file, &digest, &err);
    if (r < 0) {
        stream_reply_error(fd, head, &err);
        return;
    }
    import_reply(fd, head, name, digest);
}

int route_container_commit(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    const char *name = strmap_get(&req->query, "name");
    _cleanup_free_ char *digest = NULL;
    r = container_commit(req->garden, c, name, &digest, &req->error);
    if (r < 0)
        return r;
    json_object *o = json_object_new_object();
    if (!o)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "digest", json_object_new_string(digest));
    req->reply = o;
    return 0;
}

/* ---- export ---- */

static int export_write(void *userdata, const void *data, size_t len)
{
    PullStream *p = userdata;
    if (!p->started) {
        char head[200];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.%d 200 OK\r\nContent-Type: application/x-tar\r\n%s\r\n", p->minor,
                         p->minor ? "Transfer-Encoding: chunked\r\n" : "");
        send_bytes(p, head, (size_t)n);
        p->started = true;
    }
    if (p->minor) {
        char size[32];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        send_bytes(p, size, (size_t)n);
        send_bytes(p, data, len);
        send_bytes(p, "\r\n", 2);
    } else {
        send_bytes(p, data, len);
    }
    return p->broken ? -EPIPE : 0;
}

void api_image_export_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden)
{
    ApiError err;
    api_error_clear(&err);
    const char *name = m->params[0];
    _cleanup_free_ char *uri = NULL;
    if (strstr(name, "://") ? !(uri = strdup(name)) : asprintf(&uri, "cloche:///%s", name) < 0)
        return;
    PullStream p = {.fd = fd, .minor = head->minor_version};
    int r = garden_image_export(garden, uri, export_write, &p, &err);
    if (r < 0 && !p.started) {
        stream_reply_error(fd, head, &err);
        return;
    }
    /* Cut short: no last chunk, so the client sees the archive is incomplete. */
    if (r >= 0 && p.minor)
        send_bytes(&p, "0\r\n\r\n", 5);
}
