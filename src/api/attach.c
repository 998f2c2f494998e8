/* The hijacked process streams (protocol §5): Run and Attach turn their
 * connection into the control connection of one "attachment" (a stream id), and
 * the stdout/stderr requests hand their connections to it. One relay loop per
 * attachment, on the Run/Attach connection's own thread, moves bytes between the
 * process's shim and the client's sockets:
 *
 *   shim 'O'/'E' frames -> stdout/stderr sockets (buffered until they connect;
 *                          while unconnected the newest bytes win, once connected
 *                          the shim is read only as fast as they drain)
 *   control JSON lines  -> 'I' stdin, 'C' stdin EOF, 'S' signals, 'W' window size
 *   shim 'X' frame      -> {"process_id","exit_status"} on the control connection,
 *                          then every socket is closed, so the Go client's Wait
 *                          returns
 *
 * A client that closes the control connection detaches: the process runs on. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api-internal.h"
#include "attach.h"
#include "cloche/hashmap.h"
#include "cloche/json.h"
#include "cloche/log.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"
#include "reqstats.h"

#define OUT_UNCONNECTED_CAP (1u << 20) /* newest bytes kept for a stream not yet connected */
#define STREAM_CONNECT_MS 2000         /* how long the shim is held back for a stream to connect */
#define OUT_CONNECTED_CAP (256u << 10) /* stop reading the shim above this */
#define CONTROL_LINE_MAX (2u << 20)
#define LATE_STREAM_MS 60000 /* after the exit, how long unconnected streams are awaited */

typedef struct OutStream {
    int fd; /* -1 until the client's stdout/stderr request arrives */
    char *buf;
    size_t len, cap;
    bool done; /* closed after delivering everything */
} OutStream;

typedef struct Attachment {
    char sid[24];
    pthread_mutex_t lock;
    OutStream out[2];
    int wake; /* eventfd: a stream connected, or the server stops */
    atomic_uint refs;
} Attachment;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static HashMap *table;
static atomic_uint_least64_t next_sid = 1;
static atomic_bool stopping;

static void attachment_unref(Attachment *a)
{
    if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    for (int k = 0; k < 2; k++) {
        if (a->out[k].fd >= 0)
            close(a->out[k].fd);
        free(a->out[k].buf);
    }
    close(a->wake);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static Attachment *attachment_new(void)
{
    Attachment *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->wake < 0) {
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    a->out[0].fd = a->out[1].fd = -1;
    atomic_init(&a->refs, 1);
    snprintf(a->sid, sizeof(a->sid), "%llu", (unsigned long long)atomic_fetch_add(&next_sid, 1));
    pthread_mutex_lock(&table_lock);
    int r = table ? 0 : hashmap_new(&table);
    if (r >= 0)
        r = hashmap_put(table, a->sid, a);
    if (r >= 0)
        atomic_fetch_add(&a->refs, 1); /* the table's reference */
    pthread_mutex_unlock(&table_lock);
    if (r < 0) {
        attachment_unref(a);
        return NULL;
    }
    return a;
}

static void attachment_unregister(Attachment *a)
{
    pthread_mutex_lock(&table_lock);
    Attachment *removed = table ? hashmap_remove(table, a->sid) : NULL;
    pthread_mutex_unlock(&table_lock);
    attachment_unref(removed);
}

void api_attachments_stop(void)
{
    atomic_store(&stopping, true);
    pthread_mutex_lock(&table_lock);
    size_t state = 0;
    const char *key;
    void *value;
    while (table && hashmap_iterate(table, &state, &key, &value) == 0) {
        uint64_t one = 1;
        ssize_t w = write(((Attachment *)value)->wake, &one, sizeof(one));
        (void)w;
    }
    pthread_mutex_unlock(&table_lock);
}

static void http_date(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static bool send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 10000) <= 0)
                return false;
            continue;
        }
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* The reply head of a hijacked route: HTTP/1.1 with chunked declared but not used,
 * exactly as Go's server (protocol §5.1); HTTP/1.0 with a body until close. */
static bool send_hijack_head(int fd, int minor, int status, bool json)
{
    char date[64], head[256];
    http_date(date, sizeof(date));
    reqstats_stream_reply(status);
    int n;
    if (minor == 0)
        n = snprintf(head, sizeof(head), "HTTP/1.0 %d %s\r\n%sDate: %s\r\n\r\n", status,
                     http_reason(status), json ? "Content-Type: application/json\r\n" : "", date);
    else
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n%sDate: %s\r\nTransfer-Encoding: chunked\r\n\r\n", status,
                     http_reason(status), json ? "Content-Type: application/json\r\n" : "", date);
    return send_all(fd, head, (size_t)n);
}

static bool send_json_line(int fd, json_object *o)
{
    size_t len;
    _cleanup_free_ char *text = json_serialize(o, &len);
    return text && send_all(fd, text, len);
}

/* Append to an unconnected stream's buffer: the newest bytes win past the cap. */
/* Append output for a stream. keep_all: every byte is kept (a connected stream, or
 * one its client is still expected to connect within STREAM_CONNECT_MS: the relay
 * then holds the shim back instead); otherwise the newest OUT_UNCONNECTED_CAP
 * bytes win. */
static void out_append(OutStream *o, const uint8_t *data, size_t len, bool keep_all)
{
    size_t cap_limit = keep_all ? SIZE_MAX : OUT_UNCONNECTED_CAP;
    if (!keep_all && len >= cap_limit) {
        data += len - cap_limit;
        len = cap_limit;
        o->len = 0;
    } else if (!keep_all && o->len + len > cap_limit) {
        size_t drop = o->len + len - cap_limit;
        memmove(o->buf, o->buf + drop, o->len - drop);
        o->len -= drop;
    }
    if (o->len + len > o->cap) {
        size_t ncap = (o->len + len) * 2;
        char *n = realloc(o->buf, ncap);
        if (!n)
            return; /* out of memory: these bytes are lost, the stream goes on */
        o->buf = n;
        o->cap = ncap;
    }
    memcpy(o->buf + o->len, data, len);
    o->len += len;
}

/* Must the relay stop reading the shim? While a connected stream is behind, or a
 * stream whose client may still connect has buffered a lot (lock held). */
static bool relay_must_wait(const Attachment *a, bool expecting)
{
    for (int k = 0; k < 2; k++) {
        const OutStream *o = &a->out[k];
        if (o->done)
            continue;
        if (o->fd >= 0 && o->len > OUT_CONNECTED_CAP)
            return true;
        if (o->fd < 0 && expecting && o->len >= OUT_UNCONNECTED_CAP)
            return true;
    }
    return false;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Send what fd takes now from buf[0..*len), keeping the rest. false = fd is gone. */
static bool send_pending(int fd, void *buf, size_t *len)
{
    while (*len > 0) {
        ssize_t n = send(fd, buf, *len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n <= 0)
            return false;
        memmove(buf, (char *)buf + n, *len - (size_t)n);
        *len -= (size_t)n;
    }
    return true;
}

/* Write what a connected stream can take now. false = its client is gone. */
static bool out_flush(OutStream *o)
{
    return send_pending(o->fd, o->buf, &o->len);
}

static void out_finish(OutStream *o)
{
    if (o->fd >= 0) {
        shutdown(o->fd, SHUT_WR);
        close(o->fd);
        o->fd = -1;
    }
    o->len = 0;
    o->done = true;
}

/* Frames on their way to the shim. Written without blocking, so that a process
 * that does not read its stdin can never stall the relay of its output (which
 * could otherwise deadlock a process such as cat). */
typedef struct ShimQueue {
    uint8_t *buf;
    size_t len, cap;
} ShimQueue;

#define SHIM_QUEUE_PAUSE (1u << 20) /* stop reading the client above this */

static bool queue_frame(ShimQueue *q, uint8_t type, const void *data, size_t len)
{
    size_t need = q->len + SHIM_FRAME_HEADER + len;
    if (need > q->cap) {
        size_t ncap = need * 2;
        uint8_t *n = realloc(q->buf, ncap);
        if (!n)
            return false;
        q->buf = n;
        q->cap = ncap;
    }
    shim_frame_header(q->buf + q->len, type, (uint32_t)len);
    if (len)
        memcpy(q->buf + q->len + SHIM_FRAME_HEADER, data, len);
    q->len = need;
    return true;
}

/* Write what the shim takes now. false = the shim is gone. */
static bool queue_flush(ShimQueue *q, int shim)
{
    return send_pending(shim, q->buf, &q->len);
}

/* One control message from the client (protocol §5.3), checked in the Go server's
 * order: tty, then source, then signal. Frames go to q. false = out of memory. */
static bool control_message(ShimQueue *q, int proc_dirfd, const char *line, size_t len)
{
    _cleanup_json_ json_object *o = NULL;
    ApiError err;
    if (json_parse_strict(line, len, &o, &err) < 0 || !json_object_is_type(o, json_type_object)) {
        log_debug("Ignoring a malformed control message");
        return true;
    }
    json_object *tty = json_member(o, "tty");
    if (tty) {
        json_object *ws =
            json_object_is_type(tty, json_type_object) ? json_member(tty, "window_size") : NULL;
        uint64_t cols = 0, rows = 0;
        if (ws && json_object_is_type(ws, json_type_object)) {
            json_object *c = json_member(ws, "columns"), *r = json_member(ws, "rows");
            if ((c && json_get_u64(c, "columns", UINT16_MAX, &cols, &err) < 0) ||
                (r && json_get_u64(r, "rows", UINT16_MAX, &rows, &err) < 0))
                return true;
            char buf[32];
            int n = snprintf(buf, sizeof(buf), "%llu %llu", (unsigned long long)cols,
                             (unsigned long long)rows);
            /* In order with stdin: a resize followed by input must arrive first. */
            return queue_frame(q, SHIM_FRAME_WINSIZE, buf, (size_t)n);
        }
        return true;
    }
    json_object *source = json_member(o, "source");
    if (source) {
        uint64_t src;
        if (json_get_u64(source, "source", 2, &src, &err) < 0 || src != 0)
            return true;
        json_object *data = json_member(o, "data");
        if (!data)
            return queue_frame(q, SHIM_FRAME_STDIN_CLOSE, NULL, 0);
        if (!json_object_is_type(data, json_type_string))
            return true;
        const char *bytes = json_object_get_string(data);
        size_t n = (size_t)json_object_get_string_len(data);
        for (size_t off = 0; off < n; off += SHIM_FRAME_MAX) {
            size_t chunk = n - off < SHIM_FRAME_MAX ? n - off : SHIM_FRAME_MAX;
            if (!queue_frame(q, SHIM_FRAME_STDIN, bytes + off, chunk))
                return false;
        }
        return true;
    }
    /* Garden's signals: 0 = terminate, 1 = kill. cloche's extension "cloche_signal"
     * carries any Linux signal number and leaves those two as they are. */
    int sig = 0;
    json_object *signal = json_member(o, "signal");
    json_object *raw = json_member(o, "cloche_signal");
    uint64_t v;
    if (raw && json_get_u64(raw, "cloche_signal", 64, &v, &err) >= 0 && v > 0)
        sig = (int)v;
    else if (signal && json_get_u64(signal, "signal", UINT32_MAX, &v, &err) >= 0)
        sig = v == 0 ? 15 : v == 1 ? 9 : 0;
    if (sig) {
        char buf[8];
        int n = snprintf(buf, sizeof(buf), "%d", sig);
        /* On a connection of its own: stdin the process does not read must not
         * hold up a kill. */
        if (proc_control(proc_dirfd, SHIM_FRAME_SIGNAL, buf, (size_t)n) < 0)
            log_debug("Signal %d not delivered: the process's monitor is gone", sig);
        return true;
    }
    return true;
}

/* Serve one attachment until the process exits (and its streams are delivered) or
 * the client detaches. Takes shim (may be -1 when the exit is already known). */
static void relay(int ctl, Attachment *a, const char *process_id, int shim, int known_exit,
                  int proc_dirfd)
{
    ProcFrameReader fr;
    _cleanup_free_ char *line = malloc(CONTROL_LINE_MAX + 1);
    if (!line || proc_frame_reader_init(&fr) < 0) {
        if (shim >= 0)
            close(shim);
        return;
    }
    size_t line_len = 0;
    bool discard_line = false;
    /* Output is kept whole for streams whose clients are still expected. */
    int64_t connect_deadline = monotonic_ms() + STREAM_CONNECT_MS;
    ShimQueue q = {0};
    int exit_status = known_exit;
    bool ctl_open = true;
    int64_t late_deadline = -1;
    if (shim >= 0)
        fcntl(shim, F_SETFL, fcntl(shim, F_GETFL) | O_NONBLOCK);
    fcntl(ctl, F_SETFL, fcntl(ctl, F_GETFL) | O_NONBLOCK);

    for (;;) {
        bool stop = atomic_load(&stopping);
        /* The exit: report it once, on the control connection, then close that. */
        if (exit_status >= 0 && ctl_open) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "process_id", json_object_new_string(process_id));
            json_object_object_add(o, "exit_status", json_object_new_int(exit_status));
            send_json_line(ctl, o);
            json_object_put(o);
            shutdown(ctl, SHUT_RDWR);
            ctl_open = false;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            late_deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + LATE_STREAM_MS;
        }

        struct pollfd pfd[5];
        int n = 0, i_ctl = -1, i_shim = -1, i_wake, i_out[2] = {-1, -1};
        bool backpressure = false;
        pthread_mutex_lock(&a->lock);
        for (int k = 0; k < 2; k++) {
            OutStream *o = &a->out[k];
            if (o->done)
                continue;
            if (o->fd >= 0 && o->len > 0) {
                i_out[k] = n;
                pfd[n++] = (struct pollfd){.fd = o->fd, .events = POLLOUT};
            }
            /* After the exit, a connected stream with nothing left is done. */
            if (exit_status >= 0 && shim < 0 && o->fd >= 0 && o->len == 0)
                out_finish(o);
        }
        bool all_done = a->out[0].done && a->out[1].done;
        bool expecting = monotonic_ms() < connect_deadline;
        backpressure = relay_must_wait(a, expecting);
        pthread_mutex_unlock(&a->lock);

        if (exit_status >= 0 && shim < 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
            if (all_done || now >= late_deadline || stop)
                break;
        } else if (!ctl_open && shim < 0) {
            break;
        }
        if (stop && exit_status < 0)
            break; /* server shutdown: detach */

        if (ctl_open && q.len < SHIM_QUEUE_PAUSE) {
            i_ctl = n;
            pfd[n++] = (struct pollfd){.fd = ctl, .events = POLLIN | POLLRDHUP};
        }
        short shim_events = (short)((backpressure ? 0 : POLLIN) | (q.len > 0 ? POLLOUT : 0));
        if (shim >= 0 && shim_events) {
            i_shim = n;
            pfd[n++] = (struct pollfd){.fd = shim, .events = shim_events};
        }
        i_wake = n;
        pfd[n++] = (struct pollfd){.fd = a->wake, .events = POLLIN};

        int k = poll(pfd, (nfds_t)n, 1000);
        if (k < 0 && errno != EINTR)
            break;
        if (k <= 0)
            continue;

        if (pfd[i_wake].revents) {
            uint64_t v;
            ssize_t rd = read(a->wake, &v, sizeof(v));
            (void)rd;
        }
        for (int s = 0; s < 2; s++) {
            if (i_out[s] < 0 || !pfd[i_out[s]].revents)
                continue;
            pthread_mutex_lock(&a->lock);
            if (!out_flush(&a->out[s]))
                out_finish(&a->out[s]);
            pthread_mutex_unlock(&a->lock);
        }
        if (i_shim >= 0 && (pfd[i_shim].revents & POLLOUT) && !queue_flush(&q, shim))
            q.len = 0; /* the shim stopped reading (the process ended): keep reading it */
        if (i_shim >= 0 && shim >= 0 && (pfd[i_shim].revents & ~POLLOUT)) {
            /* Drain what is there, frame by frame. */
            for (int frames = 0; frames < 64; frames++) {
                int r = proc_frame_read(&fr, shim);
                if (r == 0)
                    break;
                if (r < 0) {
                    close(shim);
                    shim = -1;
                    /* The connection can end before its 'X' is read (a reset when
                     * stdin was left unread); the exit file has the status. */
                    if (exit_status < 0 && proc_read_exit(proc_dirfd, &exit_status) < 0)
                        exit_status = 255; /* the monitor vanished without a status */
                    break;
                }
                uint8_t type = fr.header[0];
                if (type == SHIM_FRAME_STDOUT || type == SHIM_FRAME_STDERR) {
                    int s = type == SHIM_FRAME_STDOUT ? 0 : 1;
                    pthread_mutex_lock(&a->lock);
                    OutStream *o = &a->out[s];
                    bool still_expected = monotonic_ms() < connect_deadline;
                    if (!o->done) {
                        out_append(o, fr.payload, fr.payload_len, o->fd >= 0 || still_expected);
                        if (o->fd >= 0 && !out_flush(o))
                            out_finish(o);
                    }
                    bool wait = relay_must_wait(a, still_expected);
                    pthread_mutex_unlock(&a->lock);
                    if (wait)
                        break; /* read no further until the streams catch up */
                } else if (type == SHIM_FRAME_EXIT) {
                    char buf[16] = {0};
                    memcpy(buf, fr.payload, fr.payload_len < 15 ? fr.payload_len : 15);
                    exit_status = atoi(buf);
                    close(shim);
                    shim = -1;
                    break;
                }
            }
        }
        if (i_ctl >= 0 && pfd[i_ctl].revents) {
            ssize_t got = 0;
            int recv_errno = 0;
            for (;;) {
                char chunk[65536];
                got = recv(ctl, chunk, sizeof(chunk), MSG_DONTWAIT);
                if (got < 0 && errno == EINTR)
                    continue;
                if (got <= 0) {
                    /* Kept: the flush below may fail (EPIPE from a finished
                     * shim) and must not pass for the client hanging up. */
                    recv_errno = got < 0 ? errno : 0;
                    break;
                }
                for (ssize_t p = 0; p < got; p++) {
                    if (chunk[p] != '\n') {
                        if (line_len < CONTROL_LINE_MAX)
                            line[line_len++] = chunk[p];
                        else
                            discard_line = true;
                        continue;
                    }
                    if (!discard_line && line_len > 0 && shim >= 0)
                        (void)control_message(&q, proc_dirfd, line, line_len);
                    line_len = 0;
                    discard_line = false;
                }
            }
            if (shim >= 0 && q.len > 0 && !queue_flush(&q, shim))
                q.len = 0;
            if (got == 0 || (got < 0 && recv_errno != EAGAIN)) {
                /* The client hung up: detach; the process runs on. */
                ctl_open = false;
                if (exit_status < 0)
                    break; /* the shim connection is flushed and closed below */
            }
        }
    }
    if (shim >= 0) {
        /* Detaching: hand over what the client sent last (a signal, stdin EOF). */
        fcntl(shim, F_SETFL, fcntl(shim, F_GETFL) & ~O_NONBLOCK);
        struct timeval tv = {.tv_sec = 1};
        setsockopt(shim, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (q.len > 0 && q.len <= SHIM_QUEUE_PAUSE)
            (void)!send(shim, q.buf, q.len, MSG_NOSIGNAL);
        close(shim);
    }
    free(q.buf);
    proc_frame_reader_done(&fr);
    pthread_mutex_lock(&a->lock);
    for (int s = 0; s < 2; s++)
        out_finish(&a->out[s]);
    pthread_mutex_unlock(&a->lock);
}

void api_attach_serve(int ctl, int minor, int status, const char *process_id, int shim,
                      int known_exit, int proc_dirfd)
{
    Attachment *a = attachment_new();
    if (!a) {
        if (shim >= 0)
            close(shim);
        if (proc_dirfd >= 0)
            close(proc_dirfd);
        return;
    }
    if (send_hijack_head(ctl, minor, status, true)) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "process_id", json_object_new_string(process_id));
        json_object_object_add(o, "stream_id", json_object_new_string(a->sid));
        bool ok = send_json_line(ctl, o);
        json_object_put(o);
        if (ok) {
            relay(ctl, a, process_id, shim, known_exit, proc_dirfd);
            shim = -1;
        }
    }
    if (shim >= 0)
        close(shim);
    if (proc_dirfd >= 0)
        close(proc_dirfd);
    attachment_unregister(a);
    attachment_unref(a);
}

bool api_attach_stream(int fd, int minor, const char *sid, bool stderr_stream)
{
    pthread_mutex_lock(&table_lock);
    Attachment *a = table ? hashmap_get(table, sid) : NULL;
    if (a)
        atomic_fetch_add(&a->refs, 1);
    pthread_mutex_unlock(&table_lock);

    if (!send_hijack_head(fd, minor, 200, false) || !a) {
        /* An unknown stream id gets 200 and an immediate close, as Go's server. */
        attachment_unref(a);
        return false;
    }
    bool taken = false;
    pthread_mutex_lock(&a->lock);
    OutStream *o = &a->out[stderr_stream ? 1 : 0];
    if (o->fd < 0 && !o->done) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        o->fd = fd;
        taken = true;
    }
    pthread_mutex_unlock(&a->lock);
    if (taken) {
        uint64_t one = 1;
        ssize_t w = write(a->wake, &one, sizeof(one));
        (void)w;
    }
    attachment_unref(a);
    return taken;
}

/* Write one JSON line as an HTTP chunk (or raw, for HTTP/1.0). */
static bool send_ndjson(int fd, int minor, json_object *o)
{
    size_t len;
    _cleanup_free_ char *text = json_serialize(o, &len);
    if (!text)
        return false;
    if (minor == 0)
        return send_all(fd, text, len);
    char size[32];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    return send_all(fd, size, (size_t)n) && send_all(fd, text, len) && send_all(fd, "\r\n", 2);
}

void api_attach_serve_ndjson(int fd, int minor, const char *process_id, int shim, int known_exit)
{
    char date[64], head[256];
    http_date(date, sizeof(date));
    int n = snprintf(head, sizeof(head),
                     minor == 0 ? "HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: "
                                  "%s\r\n\r\n"
                                : "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: "
                                  "%s\r\nTransfer-Encoding: chunked\r\n\r\n",
                     date);
    ProcFrameReader fr;
    reqstats_stream_reply(200);
    bool ok = send_all(fd, head, (size_t)n) && proc_frame_reader_init(&fr) >= 0;
    if (!ok) {
        if (shim >= 0)
            close(shim);
        return;
    }
    json_object *first = json_object_new_object();
    json_object_object_add(first, "process_id", json_object_new_string(process_id));
    ok = send_ndjson(fd, minor, first);
    json_object_put(first);

    int status = known_exit;
    while (ok && shim >= 0 && !atomic_load(&stopping)) {
        struct pollfd pfd[2] = {{.fd = shim, .events = POLLIN}, {.fd = fd, .events = POLLRDHUP}};
        if (poll(pfd, 2, 1000) <= 0)
            continue;
        if (pfd[1].revents & (POLLRDHUP | POLLHUP | POLLERR))
            break; /* curl went away: detach */
        int r = proc_frame_read(&fr, shim);
        if (r < 0) {
            status = status < 0 ? 255 : status;
            break;
        }
        if (r == 0)
            continue;
        uint8_t type = fr.header[0];
        if (type == SHIM_FRAME_EXIT) {
            char buf[16] = {0};
            memcpy(buf, fr.payload, fr.payload_len < 15 ? fr.payload_len : 15);
            status = atoi(buf);
            break;
        }
        if (type != SHIM_FRAME_STDOUT && type != SHIM_FRAME_STDERR)
            continue;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "process_id", json_object_new_string(process_id));
        json_object_object_add(o, "source", json_object_new_int(type == SHIM_FRAME_STDOUT ? 1 : 2));
        json_object_object_add(
            o, "data", json_object_new_string_len((const char *)fr.payload, (int)fr.payload_len));
        ok = send_ndjson(fd, minor, o);
        json_object_put(o);
    }
    if (shim >= 0)
        close(shim);
    proc_frame_reader_done(&fr);
    if (ok && status >= 0) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "process_id", json_object_new_string(process_id));
        json_object_object_add(o, "exit_status", json_object_new_int(status));
        send_ndjson(fd, minor, o);
        json_object_put(o);
        if (minor != 0)
            send_all(fd, "0\r\n\r\n", 5);
    }
}
