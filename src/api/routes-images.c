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
#include "reqstats.h"
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
        reqstats_stream_reply(200);
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
    reqstats_stream_reply(200);
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

/* ---- commit ---- */

#define COMMIT_LIST_MAX 1024   /* Env, Labels, ExposedPorts, Cmd and Entrypoint entries */
#define COMMIT_STRING_MAX 4096 /* one entry, User, WorkingDir */
#define COMMIT_CREATED_BY_MAX (64u << 10)

typedef struct CommitBody {
    ImageConfigPatch patch;
    ImageCommitOptions opts;
    char *parent;
} CommitBody;

static void commit_body_done(CommitBody *b)
{
    ImageConfigPatch *p = &b->patch;
    strv_free(p->env);
    strv_free(p->labels);
    strv_free(p->exposed_ports);
    strv_free(p->cmd);
    strv_free(p->entrypoint);
    free(p->user);
    free(p->working_dir);
    free(p->created_by);
    free(b->parent);
}

static int decode_strings(json_object *v, const char *what, bool need_eq, char ***ret,
                          size_t *ret_n, ApiError *err)
{
    int r = json_expect_array(v, what, COMMIT_LIST_MAX, err);
    if (r < 0)
        return r;
    size_t n = json_object_array_length(v);
    char **out = calloc(n + 1, sizeof(char *));
    if (!out)
        return api_internal_error(err, -ENOMEM, "Failed to read the request");
    for (size_t i = 0; i < n; i++) {
        r = json_get_string(json_object_array_get_idx(v, i), what, COMMIT_STRING_MAX, &out[i], err);
        if (r >= 0 && need_eq && (!strchr(out[i], '=') || out[i][0] == '='))
            r = api_bad_request(err, "Invalid entry '%s' in '%s': expected KEY=VALUE", out[i],
                                what);
        if (r < 0) {
            strv_free(out);
            return r;
        }
    }
    *ret = out;
    *ret_n = n;
    return 0;
}

/* Cmd and Entrypoint: an array, or null for none. */
static int decode_argv(json_object *v, const char *what, bool *ret_set, char ***ret, size_t *ret_n,
                       ApiError *err)
{
    *ret_set = true;
    return json_object_is_type(v, json_type_null) ? 0
                                                  : decode_strings(v, what, false, ret, ret_n, err);
}

/* Labels and ExposedPorts are objects, as in the image config. */
static int decode_object(json_object *v, const char *what, bool ports, char ***ret, size_t *ret_n,
                         ApiError *err)
{
    int r = json_expect_object(v, what, err);
    if (r < 0)
        return r;
    size_t n = (size_t)json_object_object_length(v);
    if (n > COMMIT_LIST_MAX)
        return api_bad_request(err, "Too many %s: %zu (at most %d)", what, n, COMMIT_LIST_MAX);
    char **out = calloc(n + 1, sizeof(char *));
    if (!out)
        return api_internal_error(err, -ENOMEM, "Failed to read the request");
    size_t i = 0;
    json_object_object_foreach(v, key, val)
    {
        _cleanup_free_ char *value = NULL;
        if (ports) {
            r = strlen(key) > 32 || !*key
                    ? api_bad_request(err, "Invalid port '%s' in '%s': expected PORT[/PROTO]", key,
                                      what)
                    : 0;
        } else {
            r = *key && !strchr(key, '=') && strlen(key) <= COMMIT_STRING_MAX
                    ? json_get_string(val, what, COMMIT_STRING_MAX, &value, err)
                    : api_bad_request(err, "Invalid label name '%.64s'", key);
        }
        if (r >= 0 &&
            (ports ? !(out[i] = strdup(key)) : asprintf(&out[i], "%s=%s", key, value) < 0))
            r = api_internal_error(err, -ENOMEM, "Failed to read the request");
        if (r < 0) {
            strv_free(out);
            return r;
        }
        i++;
    }
    *ret = out;
    *ret_n = i;
    return 0;
}

static int decode_commit_body(json_object *o, CommitBody *b, ApiError *err)
{
    int r = json_expect_object(o, "", err);
    if (r < 0)
        return r;
    json_object_object_foreach(o, key, v)
    {
        if (strcmp(key, "parent") == 0) {
            r = json_get_string(v, key, 80, &b->parent, err);
            b->opts.parent = b->parent;
        } else if (strcmp(key, "layer") == 0) {
            bool layer = true;
            r = json_get_bool(v, key, &layer, err);
            b->opts.no_layer = !layer;
        } else if (strcmp(key, "created_by") == 0) {
            r = json_get_string(v, key, COMMIT_CREATED_BY_MAX, &b->patch.created_by, err);
        } else if (strcmp(key, "config") == 0) {
            r = json_expect_object(v, key, err);
            b->opts.config = &b->patch;
        } else {
            r = api_bad_request(err, "Unknown field '%s' in the commit request", key);
        }
        if (r < 0)
            return r;
    }
    json_object *c = json_member(o, "config");
    if (!c)
        return 0;
    ImageConfigPatch *p = &b->patch;
    json_object_object_foreach(c, k, val)
    {
        if (strcmp(k, "Env") == 0)
            r = decode_strings(val, k, true, &p->env, &p->n_env, err);
        else if (strcmp(k, "Labels") == 0)
            r = decode_object(val, k, false, &p->labels, &p->n_labels, err);
        else if (strcmp(k, "ExposedPorts") == 0)
            r = decode_object(val, k, true, &p->exposed_ports, &p->n_exposed_ports, err);
        else if (strcmp(k, "User") == 0)
            r = json_get_string(val, k, COMMIT_STRING_MAX, &p->user, err);
        else if (strcmp(k, "WorkingDir") == 0)
            r = json_get_string(val, k, COMMIT_STRING_MAX, &p->working_dir, err);
        else if (strcmp(k, "Cmd") == 0)
            r = decode_argv(val, k, &p->set_cmd, &p->cmd, &p->n_cmd, err);
        else if (strcmp(k, "Entrypoint") == 0)
            r = decode_argv(val, k, &p->set_entrypoint, &p->entrypoint, &p->n_entrypoint, err);
        else
            r = api_bad_request(err, "Unknown field '%s' in the commit's 'config'", k);
        if (r < 0)
            return r;
    }
    if (p->working_dir && p->working_dir[0] != '/')
        return api_bad_request(err, "Invalid 'WorkingDir' '%s': not an absolute path",
                               p->working_dir);
    return 0;
}

int route_container_commit(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    const char *name = strmap_get(&req->query, "name");
    _cleanup_(commit_body_done) CommitBody b = {0};
    if (req->body_len > 0) {
        _cleanup_json_ json_object *body = NULL;
        if ((r = api_request_json(req, &body)) < 0 ||
            (r = decode_commit_body(body, &b, &req->error)) < 0)
            return r;
    }
    _cleanup_free_ char *digest = NULL;
    r = container_commit(req->garden, c, name, &b.opts, &digest, &req->error);
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
        reqstats_stream_reply(200);
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
