/* The client's HTTP/1.1: one connection per call, as the Go client does, over
 * the Unix socket or TCP, with the bearer token when one is configured. */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "cloche/json.h"
#include "cloche/fdio.h"

#define HEAD_MAX (64u << 10)
#define CONN_BUF 65536

CliTarget cli_target;
bool cli_json;

static const char *target_name(char *buf, size_t size)
{
    if (cli_target.unix_path)
        snprintf(buf, size, "%s", cli_target.unix_path);
    else
        snprintf(buf, size, "%s:%s", cli_target.host, cli_target.port);
    return buf;
}

int http_connect(int *ret_fd)
{
    char name[512];

    if (cli_target.unix_path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(cli_target.unix_path) >= sizeof(sa.sun_path))
            return cli_error(-ENAMETOOLONG, "Socket path too long: %s", cli_target.unix_path);
        strcpy(sa.sun_path, cli_target.unix_path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return cli_error(-errno, "socket: %m");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return cli_error(-errno, "Cannot connect to the daemon at %s: %m",
                             target_name(name, sizeof(name)));
        *ret_fd = TAKE_FD(fd);
        return 0;
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(cli_target.host, cli_target.port, &hints, &res);
    if (g != 0)
        return cli_error(-EHOSTUNREACH, "Cannot resolve %s: %s", target_name(name, sizeof(name)),
                         gai_strerror(g));
    int r = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(res);
            *ret_fd = fd;
            return 0;
        }
        r = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    errno = -r;
    return cli_error(r, "Cannot connect to the daemon at %s: %m", target_name(name, sizeof(name)));
}

int http_write_all(int fd, const void *buf, size_t len)
{
    return fd_send_all(fd, buf, len, 0);
}

int http_send_head(int fd, const char *method, const char *target, const char *extra_headers,
                   const void *body, size_t len, bool chunked_body)
{
    _cleanup_free_ char *head = NULL;
    char auth[CLI_TOKEN_MAX + 32] = "", framing[64] = "";

    if (cli_target.token)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", cli_target.token);
    if (chunked_body)
        snprintf(framing, sizeof(framing), "Transfer-Encoding: chunked\r\n");
    else if (body)
        snprintf(framing, sizeof(framing), "Content-Length: %zu\r\n", len);
    if (asprintf(&head, "%s %s HTTP/1.1\r\nHost: cloche\r\nUser-Agent: cloche/%s\r\n%s%s%s\r\n",
                 method, target, CLOCHE_VERSION, auth, framing,
                 extra_headers ? extra_headers : "") < 0)
        return cli_error(-ENOMEM, "Out of memory");
    int r = http_write_all(fd, head, strlen(head));
    if (r >= 0 && body && len > 0)
        r = http_write_all(fd, body, len);
    if (r < 0) {
        errno = -r;
        return cli_error(r, "Cannot send the request to the daemon: %m");
    }
    return 0;
}

void http_conn_done(HttpConn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -EBADF;
    free(c->buf);
    c->buf = NULL;
}

static ssize_t conn_fill(HttpConn *c)
{
    if (c->start > 0 && c->start == c->end)
        c->start = c->end = 0;
    if (c->end == c->cap) {
        if (c->start > 0) {
            memmove(c->buf, c->buf + c->start, c->end - c->start);
            c->end -= c->start;
            c->start = 0;
        } else {
            return -ENOBUFS;
        }
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->end, c->cap - c->end, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        c->end += (size_t)n;
        return n;
    }
}

int http_read_head(HttpConn *c)
{
    if (!c->buf) {
        c->cap = HEAD_MAX;
        c->buf = malloc(c->cap);
        if (!c->buf)
            return cli_error(-ENOMEM, "Out of memory");
        c->start = c->end = 0;
    }
    for (;;) {
        char *eoh = memmem(c->buf, c->end, "\r\n\r\n", 4);
        if (eoh) {
            *eoh = '\0';
            c->start = (size_t)(eoh - c->buf) + 4;
            break;
        }
        ssize_t n = conn_fill(c);
        if (n == -ENOBUFS)
            return cli_error(-EBADMSG, "The daemon's reply head is over 64 KiB");
        if (n < 0) {
            errno = (int)-n;
            return cli_error((int)n, "Cannot read the daemon's reply: %m");
        }
        if (n == 0) {
            if (c->end == 0)
                return cli_error(-ECONNRESET, "The daemon closed the connection without a reply");
            return cli_error(-EBADMSG, "The daemon's reply ended inside its head");
        }
    }

    int minor;
    if (sscanf(c->buf, "HTTP/1.%d %d", &minor, &c->status) != 2 || c->status < 100 ||
        c->status > 999)
        return cli_error(-EBADMSG, "The daemon's reply is not HTTP");
    c->body_done = false;
    for (char *line = strstr(c->buf, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        char *colon = strchr(line, ':'), *eol = strstr(line, "\r\n");
        if (!colon || (eol && colon > eol))
            continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t klen = (size_t)(colon - line);
        if (klen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
            c->has_length = true;
            c->length = strtoull(v, NULL, 10);
        } else if (klen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0 &&
                   strncasecmp(v, "chunked", 7) == 0) {
            c->chunked = true;
        }
    }
    if (c->status == 100) { /* an interim reply: read the real one */
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
        c->has_length = c->chunked = false;
        return http_read_head(c);
    }
    /* The body may need a larger buffer than the head's. */
    if (c->cap < CONN_BUF) {
        char *nb = realloc(c->buf, CONN_BUF);
        if (!nb)
            return cli_error(-ENOMEM, "Out of memory");
        c->buf = nb;
        c->cap = CONN_BUF;
    }
    return 0;
}

ssize_t http_read_raw(HttpConn *c, void *buf, size_t len)
{
    if (c->end > c->start) {
        size_t n = c->end - c->start < len ? c->end - c->start : len;
        memcpy(buf, c->buf + c->start, n);
        c->start += n;
        return (ssize_t)n;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : n;
    }
}

/* Read one line of the chunked framing ("SIZE[;ext]\r\n" or "\r\n"). */
static int read_chunk_line(HttpConn *c, char *line, size_t size)
{
    for (;;) {
        char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->start));
            if (n >= size)
                return -EBADMSG;
            memcpy(line, c->buf + c->start, n);
            line[n] = '\0';
            if (n > 0 && line[n - 1] == '\r')
                line[n - 1] = '\0';
            c->start += n + 1;
            return 0;
        }
        if (c->end - c->start > 256)
            return -EBADMSG;
        ssize_t r = conn_fill(c);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return -EPIPE;
    }
}

ssize_t http_read_body(HttpConn *c, void *buf, size_t len)
{
    if (c->body_done || len == 0)
        return 0;
    if (c->chunked) {
        if (c->chunk_left == 0) {
            char line[300];
            int r = read_chunk_line(c, line, sizeof(line));
            if (r < 0)
                return r;
            if (line[0] == '\0' && (r = read_chunk_line(c, line, sizeof(line))) < 0)
                return r; /* the CRLF after the previous chunk */
            char *end;
            errno = 0;
            c->chunk_left = strtoull(line, &end, 16);
            if (errno || end == line)
                return -EBADMSG;
            if (c->chunk_left == 0) {
                c->body_done = true;
                return 0;
            }
        }
        if (len > c->chunk_left)
            len = (size_t)c->chunk_left;
        ssize_t n = http_read_raw(c, buf, len);
        if (n == 0)
            return -EPIPE;
        if (n > 0)
            c->chunk_left -= (uint64_t)n;
        return n;
    }
    if (c->has_length) {
        if (c->length == 0) {
            c->body_done = true;
            return 0;
        }
        if (len > c->length)
            len = (size_t)c->length;
        ssize_t n = http_read_raw(c, buf, len);
        if (n == 0)
            return -EPIPE;
        if (n > 0)
            c->length -= (uint64_t)n;
        return n;
    }
    ssize_t n = http_read_raw(c, buf, len);
    if (n == 0)
        c->body_done = true;
    return n;
}

int http_read_all_body(HttpConn *c, size_t max, char **ret, size_t *ret_len)
{
    size_t cap = 4096, len = 0;
    _cleanup_free_ char *out = malloc(cap + 1);
    if (!out)
        return cli_error(-ENOMEM, "Out of memory");
    for (;;) {
        if (len == cap) {
            if (cap >= max)
                return cli_error(-EFBIG, "The daemon's reply is over %zu MiB", max >> 20);
            cap = cap * 2 > max ? max : cap * 2;
            char *n = realloc(out, cap + 1);
            if (!n)
                return cli_error(-ENOMEM, "Out of memory");
            out = n;
        }
        ssize_t n = http_read_body(c, out + len, cap - len);
        if (n < 0) {
            errno = (int)-n;
            return cli_error((int)n, "Cannot read the daemon's reply: %m");
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    *ret = TAKE_PTR(out);
    if (ret_len)
        *ret_len = len;
    return 0;
}

int http_report_error(HttpConn *c)
{
    _cleanup_free_ char *body = NULL;
    size_t len = 0;
    /* The error must be reported even if its body cannot be read whole. */
    if (http_read_all_body(c, 1 << 20, &body, &len) < 0)
        return -EIO;
    _cleanup_json_ json_object *obj = NULL;
    ApiError e = {0};
    const char *type = "";
    int r = -EIO;
    if (json_parse_strict(body, len, &obj, &e) >= 0 && obj &&
        json_object_is_type(obj, json_type_object)) {
        json_object *m = json_member(obj, "Message"), *t = json_member(obj, "Type");
        if (t && json_object_is_type(t, json_type_string))
            type = json_object_get_string(t);
        if (strcmp(type, "ContainerNotFoundError") == 0 ||
            strcmp(type, "ProcessNotFoundError") == 0)
            r = -ENOENT;
        else if (strcmp(type, "ExecutableNotFoundError") == 0)
            r = -ENOEXEC;
        if (m && json_object_is_type(m, json_type_string) && *json_object_get_string(m))
            return cli_error(r, "%s", json_object_get_string(m));
    }
    /* Not a Garden error (a proxy, a 404 page): say what came. */
    while (len > 0 && isspace((unsigned char)body[len - 1]))
        body[--len] = '\0';
    if (c->status == 401)
        return cli_error(-EACCES, "The daemon refused the request (HTTP 401): %s",
                         len ? body : "no token or a wrong one (CLOCHE_TOKEN_FILE)");
    return cli_error(r, "The daemon answered HTTP %d%s%.200s", c->status, len ? ": " : "",
                     len ? body : "");
}

int api_call_raw(const char *method, const char *target, json_object *body, char **ret_text,
                 json_object **ret)
{
    _cleanup_free_ char *payload = NULL;
    size_t plen = 0;
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r;

    if (body && !(payload = json_serialize(body, &plen)))
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = http_connect(&c.fd)) < 0)
        return r;
    if ((r = http_send_head(c.fd, method, target,
                            payload ? "Content-Type: application/json\r\nConnection: close\r\n"
                                    : "Connection: close\r\n",
                            payload, plen, false)) < 0)
        return r;
    if ((r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);

    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    if ((r = http_read_all_body(&c, CLI_REPLY_MAX, &text, &len)) < 0)
        return r;
    if (ret) {
        ApiError e = {0};
        _cleanup_json_ json_object *obj = NULL;
        if (json_parse_strict(text, len, &obj, &e) < 0)
            return cli_error(-EBADMSG, "The daemon's reply is not JSON: %s", e.message);
        *ret = TAKE_PTR(obj);
    }
    if (ret_text)
        *ret_text = TAKE_PTR(text);
    return 0;
}

int api_call(const char *method, const char *target, json_object *body, json_object **ret)
{
    return api_call_raw(method, target, body, NULL, ret);
}

int check_name(const char *what, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.')
        return cli_error(-EINVAL,
                         "Invalid %s '%.140s': 1 to 128 of [A-Za-z0-9._-], not starting "
                         "with '.'",
                         what, s);
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return cli_error(-EINVAL,
                             "Invalid %s '%.140s': 1 to 128 of [A-Za-z0-9._-], not starting "
                             "with '.'",
                             what, s);
    return 0;
}
