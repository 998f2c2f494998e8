/* A Run of one command through the Garden process protocol, timed, in C.
 *
 * It sends what the Go client sends (protocol §5.1), in the Go client's order:
 * the Run request on a new connection; its first line; then, one after the
 * other, the stdout and the stderr stream requests on two more connections,
 * each waiting for its reply head; then it waits for the exit status and for
 * both streams to reach EOF (Go's Wait). Nothing else runs in the client, so
 * the figure is the server's, not a scripting language's.
 *
 * usage: run-client SOCKET HANDLE COUNT [streams|nostreams] [PATH]
 * prints one line per Run: the seconds it took.
 *
 * usage: run-client SOCKET --cycle COUNT SPEC
 * COUNT times: create a container from the JSON object SPEC (given a handle of
 * its own), Run /bin/true in it with both streams, destroy it; each an
 * ordinary call sent as Go's net/http sends it (a new connection, `Connection:
 * close`). Prints one line per cycle: the seconds of the create, the Run and
 * the destroy. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 4096

static int dial(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read until the reply head has ended; what came after it is left in buf
 * (from *ret_body, *ret_len bytes). Fails on a status other than 2xx. */
static int read_head(int fd, char *buf, size_t size, size_t *ret_body, size_t *ret_len)
{
    size_t have = 0;
    for (;;) {
        if (have + 1 >= size)
            return -E2BIG;
        ssize_t n = recv(fd, buf + have, size - 1 - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -EIO;
        have += (size_t)n;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        if (strncmp(buf, "HTTP/1.1 2", 10) != 0) {
            fprintf(stderr, "run-client: reply: %.*s\n", (int)(end - buf), buf);
            return -EPROTO;
        }
        *ret_body = (size_t)(end + 4 - buf);
        *ret_len = have - *ret_body;
        return 0;
    }
}

/* Pull the string value of "key" out of one JSON line (ids are plain). */
static int json_string(const char *line, const char *key, char *out, size_t size)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":\"", key);
    const char *p = strstr(line, pattern);
    if (!p)
        return -ENOENT;
    p += strlen(pattern);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n + 1 < size) {
        out[n] = p[n];
        n++;
    }
    out[n] = '\0';
    return p[n] == '"' ? 0 : -EPROTO;
}

static int open_stream(const char *sock, const char *handle, const char *pid, const char *sid,
                       const char *which)
{
    char req[1024], buf[HEAD_MAX];
    int len = snprintf(req, sizeof(req),
                       "GET /containers/%s/processes/%s/attaches/%s/%s HTTP/1.1\r\n"
                       "Host: api\r\nUser-Agent: Go-http-client/1.1\r\n"
                       "Content-Type: application/json\r\n\r\n",
                       handle, pid, sid, which);
    int fd = dial(sock);
    if (fd < 0)
        return fd;
    size_t body, rest;
    int r = send_all(fd, req, (size_t)len);
    if (r >= 0)
        r = read_head(fd, buf, sizeof(buf), &body, &rest);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* More of the control connection after the *have bytes in buf, kept a string. */
static int recv_more(int fd, char *buf, size_t size, size_t *have)
{
    if (*have + 1 >= size)
        return -E2BIG;
    ssize_t n = recv(fd, buf + *have, size - 1 - *have, 0);
    if (n <= 0)
        return -EIO;
    *have += (size_t)n;
    buf[*have] = '\0';
    return 0;
}

/* One Run, to its exit status and (with streams) both EOFs. */
static int run_once(const char *sock, const char *handle, const char *path, bool streams,
                    int *ret_status)
{
    char body[512], req[1024], buf[HEAD_MAX], pid[128], sid[64];
    int blen =
        snprintf(body, sizeof(body), "{\"path\":\"%s\",\"rlimits\":{},\"image\":{}}\n", path);
    int len = snprintf(req, sizeof(req),
                       "POST /containers/%s/processes HTTP/1.1\r\n"
                       "Host: api\r\nUser-Agent: Go-http-client/1.1\r\n"
                       "Content-Length: %d\r\nContent-Type: application/json\r\n\r\n%s",
                       handle, blen, body);
    int ctl = dial(sock);
    if (ctl < 0)
        return ctl;
    int fds[3] = {ctl, -1, -1};
    size_t off, have;
    int r = send_all(ctl, req, (size_t)len);
    if (r >= 0)
        r = read_head(ctl, buf, sizeof(buf), &off, &have);
    if (r < 0)
        goto out;
    memmove(buf, buf + off, have);
    buf[have] = '\0';
    /* The first line: process and stream ids. */
    while (!memchr(buf, '\n', have))
        if ((r = recv_more(ctl, buf, sizeof(buf), &have)) < 0)
            goto out;
    if ((r = json_string(buf, "process_id", pid, sizeof(pid))) < 0 ||
        (r = json_string(buf, "stream_id", sid, sizeof(sid))) < 0)
        goto out;
    char *nl = memchr(buf, '\n', have);
    have -= (size_t)(nl + 1 - buf);
    memmove(buf, nl + 1, have);
    buf[have] = '\0';
    if (streams) {
        if ((fds[1] = open_stream(sock, handle, pid, sid, "stdout")) < 0 ||
            (fds[2] = open_stream(sock, handle, pid, sid, "stderr")) < 0) {
            r = fds[1] < 0 ? fds[1] : fds[2];
            goto out;
        }
    }
    /* The exit status on the control connection; EOF on each stream. */
    bool got_status = false;
    int open_streams = streams ? 2 : 0;
    while (!got_status || open_streams > 0) {
        char *line = got_status ? NULL : strstr(buf, "\"exit_status\":");
        if (line) {
            *ret_status = atoi(line + strlen("\"exit_status\":"));
            got_status = true;
            continue;
        }
        struct pollfd pfd[3];
        int nfds = 0;
        for (int i = got_status ? 1 : 0; i < 3; i++)
            if (fds[i] >= 0)
                pfd[nfds++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pfd, (nfds_t)nfds, 30000) <= 0) {
            r = -ETIMEDOUT;
            goto out;
        }
        for (int i = 0; i < nfds; i++) {
            if (!pfd[i].revents)
                continue;
            if (pfd[i].fd == ctl) {
                if ((r = recv_more(ctl, buf, sizeof(buf), &have)) < 0)
                    goto out;
                continue;
            }
            char sink[4096];
            if (recv(pfd[i].fd, sink, sizeof(sink), 0) <= 0) {
                for (int j = 1; j < 3; j++)
                    if (fds[j] == pfd[i].fd) {
                        close(fds[j]);
                        fds[j] = -1;
                    }
                open_streams--;
            }
        }
    }
    r = 0;
out:
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return r;
}

/* An ordinary call (protocol §1.2): one connection, read to its close.
 * Fails unless the status is 200. */
static int call(const char *sock, const char *method, const char *target, const char *body)
{
    char req[8192];
    int len = body ? snprintf(req, sizeof(req),
                              "%s %s HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
                              "Content-Length: %zu\r\nContent-Type: application/json\r\n"
                              "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n%s",
                              method, target, strlen(body), body)
                   : snprintf(req, sizeof(req),
                              "%s %s HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"
                              "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n",
                              method, target);
    if (len < 0 || (size_t)len >= sizeof(req))
        return -E2BIG;
    int fd = dial(sock);
    if (fd < 0)
        return fd;
    char reply[16384];
    size_t have = 0;
    int r = send_all(fd, req, (size_t)len);
    while (r >= 0 && have + 1 < sizeof(reply)) {
        ssize_t n = recv(fd, reply + have, sizeof(reply) - 1 - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = -errno;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    reply[have] = '\0';
    if (r >= 0 && strncmp(reply, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "run-client: %s %s: %.300s\n", method, target, reply);
        r = -EPROTO;
    }
    return r;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static int cycles(const char *sock, int count, const char *spec)
{
    if (spec[0] != '{')
        return -EINVAL;
    for (int i = 0; i < count; i++) {
        char handle[32], body[4096], target[64];
        snprintf(handle, sizeof(handle), "cycle-%d-%d", (int)getpid(), i);
        int n = snprintf(body, sizeof(body), "{\"handle\":\"%s\"%s%s\n", handle,
                         strcmp(spec, "{}") == 0 ? "" : ",", spec + 1);
        if (n < 0 || (size_t)n >= sizeof(body))
            return -E2BIG;
        struct timespec t;
        double create, run, destroy;
        int status = -1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int r = call(sock, "POST", "/containers", body);
        create = seconds_since(&t);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (r >= 0)
            r = run_once(sock, handle, "/bin/true", true, &status);
        run = seconds_since(&t);
        snprintf(target, sizeof(target), "/containers/%s", handle);
        clock_gettime(CLOCK_MONOTONIC, &t);
        int d = call(sock, "DELETE", target, NULL);
        destroy = seconds_since(&t);
        if (r < 0 || d < 0) {
            fprintf(stderr, "run-client: cycle %d: %s\n", i, strerror(r < 0 ? -r : -d));
            return -EIO;
        }
        if (status != 0) {
            fprintf(stderr, "run-client: cycle %d: exit status %d\n", i, status);
            return -EIO;
        }
        printf("%.6f %.6f %.6f\n", create, run, destroy);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[2], "--cycle") == 0)
        return cycles(argv[1], atoi(argv[3]), argv[4]) < 0 ? 1 : 0;
    if (argc < 4) {
        fprintf(stderr, "usage: run-client SOCKET HANDLE COUNT [streams|nostreams] [PATH]\n");
        return 2;
    }
    int count = atoi(argv[3]);
    bool streams = argc < 5 || strcmp(argv[4], "nostreams") != 0;
    const char *path = argc > 5 ? argv[5] : "/bin/true";
    for (int i = 0; i < count; i++) {
        struct timespec t0, t1;
        int status = -1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = run_once(argv[1], argv[2], path, streams, &status);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r < 0) {
            fprintf(stderr, "run-client: run %d: %s\n", i, strerror(-r));
            return 1;
        }
        if (status != 0) {
            fprintf(stderr, "run-client: run %d: exit status %d\n", i, status);
            return 1;
        }
        printf("%.6f\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    return 0;
}
