/* The daemon's listeners and its connection triage. Every new connection waits
 * (in one epoll loop) until its request head has arrived, then is looked at with
 * MSG_PEEK: the four streaming process routes and StreamIn/StreamOut go to
 * cloche's own handler (stream.c), everything else to libmicrohttpd. Heads that
 * are not HTTP at all are answered here with a Garden error, since MHD would
 * answer them in HTML. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "api-internal.h"
#include "cloche/fileio.h"
#include "cloche/grace.h"
#include "cloche/log.h"
#include "cloche/clock.h"
#include "http.h"
#include "stream.h"
#include "attach.h"

#define HEAD_TIMEOUT_NS (10LL * 1000000000LL)

typedef enum ItemKind { ITEM_LISTENER, ITEM_PENDING, ITEM_STOP } ItemKind;

typedef struct Item {
    ItemKind kind;
    int fd;
    /* pending connections */
    int64_t deadline_ns;
    bool metrics_only; /* the --metrics-bind listener and its connections */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct Item *prev, *next;
} Item;

struct ApiServer {
    ApiConfig cfg;
    char *socket_path;
    char *auth_token;
    int epfd;
    Item stop;
    Item listeners[API_MAX_LISTENERS + 1]; /* + the --metrics-bind one */
    size_t n_listeners;
    Item *pending; /* list of connections whose head has not arrived */
    size_t n_pending;
    HttpServer http;
    HttpServer metrics_http; /* started only with a metrics listener */
    char *metrics_ip;
    Garden *garden;
    /* Streaming connections run on threads of their own; shutdown waits for them.
     * A thread whose connection ended waits a while for the next one (a Run's
     * three connections come together), so most connections cost no thread
     * creation, which also waits on the host's cgroup writers. */
    pthread_mutex_t stream_lock;
    pthread_cond_t stream_done;
    pthread_cond_t stream_work;
    struct StreamJob *streams; /* every connection being served or queued */
    struct StreamJob *queued;  /* handed to an idle thread, not yet taken (FIFO) */
    size_t n_idle, n_queued, n_threads;
    bool stream_closing;
};

static int listen_unix(const char *path, int *ret)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    _cleanup_free_ char *dir = strdup(path);
    if (!dir)
        return -ENOMEM;
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        int r = mkdir_p(dir, 0755);
        if (r < 0)
            return r;
    }
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* A stale socket from a previous run would make bind fail; it is ours. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    mode_t old = umask(0117);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0)
        return -errno;
    if (chmod(path, 0660) < 0 || listen(fd, 1024) < 0)
        return -errno;
    *ret = TAKE_FD(fd);
    return 0;
}

static int listen_tcp(const char *ip, uint16_t port, int *ret)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof(*in6);
    } else {
        return -EINVAL;
    }
    _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0)
        return -errno;
    *ret = TAKE_FD(fd);
    return 0;
}

int api_parse_bind_address(const char *text, char *ret_ip, size_t ip_size, uint16_t *ret_port)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text)
        return -EINVAL;
    const char *ip = text;
    size_t ip_len = (size_t)(colon - text);
    if (text[0] == '[') {
        if (colon[-1] != ']' || ip_len < 3)
            return -EINVAL;
        ip++;
        ip_len -= 2;
    }
    char buf[INET6_ADDRSTRLEN];
    if (ip_len >= sizeof(buf) || ip_len >= ip_size)
        return -EINVAL;
    memcpy(buf, ip, ip_len);
    buf[ip_len] = '\0';
    struct in_addr a;
    struct in6_addr a6;
    bool v6 = inet_pton(AF_INET6, buf, &a6) == 1;
    if (!v6 && inet_pton(AF_INET, buf, &a) != 1)
        return -EINVAL;
    if (v6 != (text[0] == '['))
        return -EINVAL; /* an IPv6 address needs its brackets, an IPv4 one has none */
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || !colon[1] || *end || colon[1] == '-' || colon[1] == '+' || port < 1 ||
        port > 65535)
        return -EINVAL;
    memcpy(ret_ip, buf, ip_len + 1);
    *ret_port = (uint16_t)port;
    return 0;
}

static bool ip_is_loopback(const char *ip)
{
    struct in_addr a;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a) == 1)
        return (ntohl(a.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, ip, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static int epoll_add(ApiServer *s, Item *it, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = it};
    return epoll_ctl(s->epfd, EPOLL_CTL_ADD, it->fd, &ev) < 0 ? -errno : 0;
}

/* An inherited listener's address, for the log and the token rule: "unix:PATH"
 * or "tcp:IP:PORT"; *ret_tcp_ip gets the IP of a TCP one. */
static int describe_listener(int fd, char *buf, size_t size, char *ip, size_t ipsize)
{
    int listening = 0, type = 0;
    socklen_t ol = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) < 0)
        return -errno;
    ol = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ol) < 0)
        return -errno;
    if (!listening || type != SOCK_STREAM)
        return -ENOTSOCK;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    *ip = '\0';
    if (ss.ss_family == AF_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        snprintf(buf, size, "unix:%s", un->sun_path[0] ? un->sun_path : "(abstract)");
    } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        char text[INET6_ADDRSTRLEN] = "";
        uint16_t port;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
            port = ntohs(in->sin_port);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
            port = ntohs(in6->sin6_port);
        }
        snprintf(buf, size, "tcp:%s:%u", text, port);
        snprintf(ip, ipsize, "%s", text);
    } else {
        return -EAFNOSUPPORT;
    }
    return 0;
}

int api_config_check(const ApiConfig *cfg)
{
    bool unix_sock = cfg->socket_path && *cfg->socket_path;
    bool tcp = cfg->bind_ip && *cfg->bind_ip;
    if (cfg->n_listen_fds > API_MAX_LISTENERS)
        return log_error_errno(-E2BIG, "%zu sockets were handed over; at most %d can be served",
                               cfg->n_listen_fds, API_MAX_LISTENERS);
    for (size_t i = 0; i < cfg->n_listen_fds; i++) {
        char what[160], ip[INET6_ADDRSTRLEN];
        int r = describe_listener(cfg->listen_fds[i], what, sizeof(what), ip, sizeof(ip));
        if (r < 0)
            return log_error_errno(r,
                                   "Handed-over descriptor %d is not a listening stream "
                                   "socket (unix or tcp)",
                                   cfg->listen_fds[i]);
        /* The same rule as for --bind-ip: a non-loopback address needs a token. */
        if (*ip && !ip_is_loopback(ip) && !cfg->auth_token && !cfg->insecure_no_auth)
            return log_error_errno(-EPERM,
                                   "Refusing to serve the handed-over %s without a token: give "
                                   "--auth-token-file, or --insecure-no-auth",
                                   what);
    }
    if (cfg->metrics_ip && !ip_is_loopback(cfg->metrics_ip) && !cfg->auth_token &&
        !cfg->insecure_no_auth)
        return log_error_errno(-EPERM,
                               "Refusing to serve metrics on %s without a token: give "
                               "--auth-token-file, or --insecure-no-auth to serve it "
                               "unauthenticated",
                               cfg->metrics_ip);
    if (cfg->n_listen_fds > 0)
        return 0;
    if (!unix_sock && !tcp)
        return log_error_errno(-EINVAL, "No listener: give --bind-socket or --bind-ip");
    if (tcp && !ip_is_loopback(cfg->bind_ip) && !cfg->auth_token && !cfg->insecure_no_auth)
        return log_error_errno(-EPERM,
                               "Refusing to serve %s without a token: give --auth-token-file, "
                               "or --insecure-no-auth to serve it unauthenticated",
                               cfg->bind_ip);
    return 0;
}

/* Requests on the HTTP threads read the model only, but a read can wait a few
 * milliseconds for a container's lock (held across a durable write); with one
 * thread per CPU, two such reads were enough to hold up /ping. */
static unsigned default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 4 ? (unsigned)cpus * 2 : 8;
}

/* The server object with its configuration copied; no fd open yet. */
static ApiServer *server_alloc(const ApiConfig *cfg, Garden *garden, bool unix_sock)
{
    ApiServer *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->garden = garden;
    s->epfd = -EBADF;
    s->stop.fd = -EBADF;
    pthread_mutex_init(&s->stream_lock, NULL);
    pthread_cond_init(&s->stream_done, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&s->stream_work, &monotonic);
    pthread_condattr_destroy(&monotonic);
    for (size_t i = 0; i < ELEMENTSOF(s->listeners); i++)
        s->listeners[i].fd = -EBADF;
    s->cfg.listen_fds = NULL; /* taken below */
    s->socket_path = unix_sock ? strdup(cfg->socket_path) : NULL;
    s->auth_token = cfg->auth_token ? strdup(cfg->auth_token) : NULL;
    s->cfg.socket_path = s->socket_path;
    s->cfg.auth_token = s->auth_token;
    s->cfg.bind_ip = NULL; /* not needed after binding */
    s->metrics_ip = cfg->metrics_ip ? strdup(cfg->metrics_ip) : NULL;
    s->cfg.metrics_ip = s->metrics_ip;
    if (!s->cfg.max_body)
        s->cfg.max_body = API_DEFAULT_MAX_BODY;
    if (!s->cfg.max_connections)
        s->cfg.max_connections = API_DEFAULT_MAX_CONNECTIONS;
    return s;
}

/* The epoll set and the stop eventfd in it. */
static int server_open_loop(ApiServer *s)
{
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->stop.kind = ITEM_STOP;
    s->stop.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->epfd < 0 || s->stop.fd < 0)
        return -errno;
    return epoll_add(s, &s->stop, EPOLLIN);
}

static const char *auth_note(const char *ip, const char *auth_token)
{
    return !ip || !*ip || ip_is_loopback(ip) ? ""
           : auth_token                      ? " (bearer token required)"
                                             : " (UNAUTHENTICATED)";
}

/* fd (taken) as the next listener, watched by the loop. */
static int server_add_listener(ApiServer *s, int fd, bool metrics_only)
{
    Item *l = &s->listeners[s->n_listeners];
    l->fd = fd;
    l->kind = ITEM_LISTENER;
    l->metrics_only = metrics_only;
    s->n_listeners++;
    return epoll_add(s, l, EPOLLIN);
}

/* The service manager's sockets (socket activation), made non-blocking. */
static int server_add_activated(ApiServer *s, const ApiConfig *cfg)
{
    for (size_t i = 0; i < cfg->n_listen_fds; i++) {
        int fd = cfg->listen_fds[i];
        char what[160], ip[INET6_ADDRSTRLEN];
        (void)describe_listener(fd, what, sizeof(what), ip, sizeof(ip));
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            return -errno;
        int r = server_add_listener(s, fd, false);
        if (r < 0)
            return r;
        log_info("Listening on %s (socket activation)%s", what, auth_note(ip, cfg->auth_token));
    }
    return 0;
}

static int server_add_unix(ApiServer *s, const char *path)
{
    int fd = -EBADF;
    int r = listen_unix(path, &fd);
    if (r < 0)
        return log_error_errno(r, "Failed to listen on %s: %m", path);
    if ((r = server_add_listener(s, fd, false)) < 0)
        return r;
    log_info("Listening on unix:%s", path);
    return 0;
}

static int server_add_tcp(ApiServer *s, const char *ip, uint16_t port, bool metrics_only)
{
    int fd = -EBADF;
    int r = listen_tcp(ip, port, &fd);
    if (r < 0)
        return log_error_errno(r, "Failed to listen on %s:%u: %m", ip, port);
    if ((r = server_add_listener(s, fd, metrics_only)) < 0)
        return r;
    log_info("%s on tcp:%s:%u%s", metrics_only ? "Serving metrics" : "Listening", ip, port,
             auth_note(ip, s->cfg.auth_token));
    return 0;
}

/* The metrics-only listener and its own small libmicrohttpd. */
static int server_start_metrics(ApiServer *s, const ApiConfig *cfg)
{
    int r = server_add_tcp(s, cfg->metrics_ip, cfg->metrics_port, true);
    if (r < 0)
        return r;
    s->metrics_http = (HttpServer){.cfg = &s->cfg,
                                   .garden = s->garden,
                                   .max_body = 4096,
                                   .max_connections = 64,
                                   .threads = 2,
                                   .metrics_only = true};
    r = http_server_start(&s->metrics_http);
    if (r < 0)
        log_error("Failed to start libmicrohttpd for the metrics listener");
    return r;
}

static int server_start_http(ApiServer *s)
{
    s->http = (HttpServer){.cfg = &s->cfg,
                           .garden = s->garden,
                           .max_body = s->cfg.max_body,
                           .max_connections = s->cfg.max_connections,
                           .threads = s->cfg.threads ? s->cfg.threads : default_threads()};
    int r = http_server_start(&s->http);
    if (r < 0)
        log_error("Failed to start libmicrohttpd");
    return r;
}

int api_server_new(const ApiConfig *cfg, Garden *garden, ApiServer **ret)
{
    bool unix_sock = cfg->socket_path && *cfg->socket_path;
    bool tcp = cfg->bind_ip && *cfg->bind_ip;
    int r = api_config_check(cfg);
    if (r < 0)
        return r;
    if (cfg->n_listen_fds > 0)
        unix_sock = tcp = false; /* the service manager's sockets replace ours */

    ApiServer *s = server_alloc(cfg, garden, unix_sock);
    if (!s)
        return -ENOMEM;
    r = server_open_loop(s);
    if (r >= 0)
        r = server_add_activated(s, cfg);
    if (r >= 0 && unix_sock)
        r = server_add_unix(s, cfg->socket_path);
    if (r >= 0 && tcp)
        r = server_add_tcp(s, cfg->bind_ip, cfg->bind_port, false);
    if (r >= 0 && cfg->metrics_ip)
        r = server_start_metrics(s, cfg);
    if (r >= 0)
        r = server_start_http(s);
    if (r < 0) {
        api_server_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

static void pending_unlink(ApiServer *s, Item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        s->pending = it->next;
    if (it->next)
        it->next->prev = it->prev;
    s->n_pending--;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, it->fd, NULL);
}

static void accept_all(ApiServer *s, Item *l)
{
    for (;;) {
        Item *it = calloc(1, sizeof(*it));
        if (!it)
            return;
        it->addrlen = sizeof(it->addr);
        it->fd = accept4(l->fd, (struct sockaddr *)&it->addr, &it->addrlen,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (it->fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_debug("accept failed: %m");
            free(it);
            return;
        }
        if (s->n_pending >= s->cfg.max_connections) {
            close(it->fd);
            free(it);
            continue;
        }
        it->kind = ITEM_PENDING;
        it->metrics_only = l->metrics_only;
        it->deadline_ns = clock_monotonic_ns() + HEAD_TIMEOUT_NS;
        if (epoll_add(s, it, EPOLLIN | EPOLLRDHUP) < 0) {
            close(it->fd);
            free(it);
            continue;
        }
        it->next = s->pending;
        if (s->pending)
            s->pending->prev = it;
        s->pending = it;
        s->n_pending++;
    }
}

/* Answer a broken request head ourselves (status and message) and close. */
static void reply_and_close(int fd, int status, const char *message)
{
    ApiError e;
    api_error_clear(&e);
    api_errorf(&e, -EINVAL, status, GARDEN_ERR_GENERIC, "%s", message);
    size_t len = 0;
    _cleanup_free_ char *body = api_error_serialize(&e, &len);
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      status, http_reason(status), len);
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl && body)
        (void)send(fd, body, len, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    close(fd);
}

#define STREAM_IDLE_THREADS 8      /* at most this many wait for the next connection */
#define STREAM_IDLE_NS 30000000000 /* each for at most this long */

typedef struct StreamJob {
    int fd;
    ApiServer *server;
    struct StreamJob *prev, *next; /* in streams */
    struct StreamJob *queue_next;
} StreamJob;

/* The next queued connection for an idle thread, or NULL when there was none
 * before STREAM_IDLE_NS or the server closes (lock held). */
static StreamJob *stream_await(ApiServer *s)
{
    if (s->stream_closing || s->n_idle >= STREAM_IDLE_THREADS)
        return NULL;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += STREAM_IDLE_NS / 1000000000;
    s->n_idle++;
    while (!s->queued && !s->stream_closing)
        if (pthread_cond_timedwait(&s->stream_work, &s->stream_lock, &until) == ETIMEDOUT)
            break;
    s->n_idle--;
    StreamJob *job = s->queued;
    if (job) {
        s->queued = job->queue_next;
        s->n_queued--;
    }
    return job;
}

static void *stream_thread(void *arg)
{
    StreamJob *job = arg;
    ApiServer *s = job->server;
    while (job) {
        bool taken = api_stream_serve(job->fd, &s->cfg, s->garden);
        pthread_mutex_lock(&s->stream_lock);
        if (job->prev)
            job->prev->next = job->next;
        else
            s->streams = job->next;
        if (job->next)
            job->next->prev = job->prev;
        if (!taken)
            close(
                job->fd); /* under the lock: shutdown in api_server_free must not see a reused fd */
        free(job);
        job = stream_await(s);
        if (!job)
            s->n_threads--;
        pthread_cond_broadcast(&s->stream_done);
        pthread_mutex_unlock(&s->stream_lock);
    }
    return NULL;
}

static void start_stream(ApiServer *s, int fd)
{
    StreamJob *job = malloc(sizeof(*job));
    pthread_t t;
    pthread_attr_t attr;
    if (job) {
        *job = (StreamJob){.fd = fd, .server = s};
        pthread_mutex_lock(&s->stream_lock);
        job->next = s->streams;
        if (s->streams)
            s->streams->prev = job;
        s->streams = job;
        if (s->n_idle > s->n_queued) {
            StreamJob **tail = &s->queued;
            while (*tail)
                tail = &(*tail)->queue_next;
            *tail = job;
            s->n_queued++;
            pthread_cond_signal(&s->stream_work);
            pthread_mutex_unlock(&s->stream_lock);
            return;
        }
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = pthread_create(&t, &attr, stream_thread, job);
        pthread_attr_destroy(&attr);
        if (r == 0) {
            s->n_threads++;
            pthread_mutex_unlock(&s->stream_lock);
            return;
        }
        s->streams = job->next;
        if (s->streams)
            s->streams->prev = NULL;
        pthread_mutex_unlock(&s->stream_lock);
        free(job);
    }
    reply_and_close(fd, 503, "Out of resources for a streaming connection");
}

/* The head of a pending connection may have arrived: decide where it goes. */
static void triage(ApiServer *s, Item *it)
{
    char buf[API_MAX_HEADER_BYTES + 1];
    ssize_t n = recv(it->fd, buf, API_MAX_HEADER_BYTES, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int fd = it->fd;
    if (n <= 0) {
        pending_unlink(s, it);
        close(fd);
        free(it);
        return;
    }
    buf[n] = '\0';
    char *eol = memmem(buf, (size_t)n, "\r\n", 2);
    char *end = memmem(buf, (size_t)n, "\r\n\r\n", 4);
    if (!end && (size_t)n < API_MAX_HEADER_BYTES)
        return; /* wait for the rest of the head */

    pending_unlink(s, it);
    if (!eol) {
        reply_and_close(fd, 414, "Request line is too long");
        free(it);
        return;
    }
    if (!end) {
        reply_and_close(fd, 431, "Request headers are too large");
        free(it);
        return;
    }
    HttpHead head;
    int r = http_head_parse(buf, (size_t)(end - buf) + 4, &head);
    if (r < 0) {
        reply_and_close(fd, 400,
                        r == -EBADMSG ? "Malformed HTTP header" : "Malformed HTTP request line");
        free(it);
        return;
    }
    if (it->metrics_only) {
        if (http_server_add_connection(&s->metrics_http, fd, (struct sockaddr *)&it->addr,
                                       it->addrlen) < 0)
            log_debug("libmicrohttpd refused a metrics connection: %m");
    } else if (stream_route_wanted(&head)) {
        start_stream(s, fd);
    } else if (http_server_add_connection(&s->http, fd, (struct sockaddr *)&it->addr, it->addrlen) <
               0) {
        log_debug("libmicrohttpd refused a connection: %m");
    }
    free(it);
}

static void expire_pending(ApiServer *s)
{
    int64_t now = clock_monotonic_ns();
    for (Item *it = s->pending, *next; it; it = next) {
        next = it->next;
        if (it->deadline_ns > now)
            continue;
        pending_unlink(s, it);
        reply_and_close(it->fd, 408, "Timed out waiting for the request");
        free(it);
    }
}

int api_server_run(ApiServer *s)
{
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(s->epfd, events, (int)ELEMENTSOF(events), 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            Item *it = events[i].data.ptr;
            switch (it->kind) {
            case ITEM_STOP:
                return 0;
            case ITEM_LISTENER:
                accept_all(s, it);
                break;
            case ITEM_PENDING:
                triage(s, it);
                break;
            }
        }
        if (s->pending)
            expire_pending(s);
    }
}

void api_server_stop(ApiServer *s)
{
    uint64_t one = 1;
    ssize_t w = write(s->stop.fd, &one, sizeof(one));
    (void)w;
}

void api_server_free(ApiServer *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_listeners; i++)
        close(s->listeners[i].fd);
    if (s->socket_path && s->n_listeners > 0)
        unlink(s->socket_path);
    while (s->pending) {
        Item *it = s->pending;
        pending_unlink(s, it);
        close(it->fd);
        free(it);
    }
    http_server_stop(&s->http);
    http_server_stop(&s->metrics_http);
    api_attachments_stop();
    /* Wake every streaming connection and idle thread; wait until all are gone. */
    pthread_mutex_lock(&s->stream_lock);
    s->stream_closing = true;
    pthread_cond_broadcast(&s->stream_work);
    for (StreamJob *j = s->streams; j; j = j->next)
        shutdown(j->fd, SHUT_RDWR);
    while (s->streams || s->n_threads)
        pthread_cond_wait(&s->stream_done, &s->stream_lock);
    pthread_mutex_unlock(&s->stream_lock);
    pthread_cond_destroy(&s->stream_work);
    pthread_cond_destroy(&s->stream_done);
    pthread_mutex_destroy(&s->stream_lock);
    if (s->stop.fd >= 0)
        close(s->stop.fd);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s->socket_path);
    free(s->auth_token);
    free(s->metrics_ip);
    free(s);
}
