/* The relay of one attached process (see include/cloche/proc-relay.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/clock.h"
#include "cloche/log.h"
#include "cloche/proc-relay.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"

#define OUT_UNCONNECTED_CAP (1u << 20) /* newest bytes kept for a stream not yet connected */
#define STREAM_CONNECT_MS 2000         /* how long the shim is held back for a stream to connect */
#define OUT_CONNECTED_CAP (256u << 10) /* stop reading the shim above this */
#define CONTROL_LINE_MAX (2u << 20)
#define LATE_STREAM_MS 60000        /* after the exit, how long unconnected streams are awaited */
#define SHIM_QUEUE_PAUSE (1u << 20) /* stop reading the client above this */

typedef struct OutStream {
    int fd; /* -1 until the client's stdout/stderr socket is handed over */
    char *buf;
    size_t len, cap;
    bool done; /* closed after delivering everything */
} OutStream;

struct ProcRelay {
    pthread_mutex_t lock;
    OutStream out[2];
    int wake; /* eventfd: a stream connected, or stop */
    atomic_bool stopping;
    atomic_uint refs;
};

void proc_control_done(ProcControl *c)
{
    if (!c)
        return;
    free(c->data);
    *c = (ProcControl){0};
}

int proc_relay_new(ProcRelay **ret)
{
    ProcRelay *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake < 0) {
        int e = -errno;
        free(r);
        return e;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->out[0].fd = r->out[1].fd = -1;
    atomic_init(&r->refs, 1);
    *ret = r;
    return 0;
}

ProcRelay *proc_relay_ref(ProcRelay *r)
{
    if (r)
        atomic_fetch_add(&r->refs, 1);
    return r;
}

void proc_relay_unref(ProcRelay *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    for (int k = 0; k < 2; k++) {
        if (r->out[k].fd >= 0)
            close(r->out[k].fd);
        free(r->out[k].buf);
    }
    close(r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void relay_wake(ProcRelay *r)
{
    uint64_t one = 1;
    ssize_t w = write(r->wake, &one, sizeof(one));
    (void)w;
}

void proc_relay_stop(ProcRelay *r)
{
    atomic_store(&r->stopping, true);
    relay_wake(r);
}

bool proc_relay_connect_output(ProcRelay *r, int stream, int fd)
{
    bool taken = false;
    pthread_mutex_lock(&r->lock);
    OutStream *o = &r->out[stream ? 1 : 0];
    if (o->fd < 0 && !o->done) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        o->fd = fd;
        taken = true;
    }
    pthread_mutex_unlock(&r->lock);
    if (taken)
        relay_wake(r);
    return taken;
}

/* ---- output streams ---- */

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
static bool relay_must_wait(const ProcRelay *r, bool expecting)
{
    for (int k = 0; k < 2; k++) {
        const OutStream *o = &r->out[k];
        if (o->done)
            continue;
        if (o->fd >= 0 && o->len > OUT_CONNECTED_CAP)
            return true;
        if (o->fd < 0 && expecting && o->len >= OUT_UNCONNECTED_CAP)
            return true;
    }
    return false;
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

/* ---- frames to the shim ---- */

/* Frames on their way to the shim. Written without blocking, so that a process
 * that does not read its stdin can never stall the relay of its output (which
 * could otherwise deadlock a process such as cat). */
typedef struct ShimQueue {
    uint8_t *buf;
    size_t len, cap;
} ShimQueue;

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

/* What one control message asks for. false = out of memory. */
static bool control_apply(ShimQueue *q, int proc_dirfd, const ProcControl *c)
{
    switch (c->kind) {
    case PROC_CONTROL_WINDOW_SIZE: {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%u %u", c->columns, c->rows);
        /* In order with stdin: a resize followed by input must arrive first. */
        return queue_frame(q, SHIM_FRAME_WINSIZE, buf, (size_t)n);
    }
    case PROC_CONTROL_STDIN_CLOSE:
        return queue_frame(q, SHIM_FRAME_STDIN_CLOSE, NULL, 0);
    case PROC_CONTROL_STDIN:
        for (size_t off = 0; off < c->len; off += SHIM_FRAME_MAX) {
            size_t chunk = c->len - off < SHIM_FRAME_MAX ? c->len - off : SHIM_FRAME_MAX;
            if (!queue_frame(q, SHIM_FRAME_STDIN, c->data + off, chunk))
                return false;
        }
        return true;
    case PROC_CONTROL_SIGNAL: {
        char buf[16];
        int n = snprintf(buf, sizeof(buf), "%d", c->signal);
        /* On a connection of its own: stdin the process does not read must not
         * hold up a kill. */
        if (proc_control(proc_dirfd, SHIM_FRAME_SIGNAL, buf, (size_t)n) < 0)
            log_debug("Signal %d not delivered: the process's monitor is gone", c->signal);
        return true;
    }
    case PROC_CONTROL_NONE:
    default:
        return true;
    }
}

/* ---- the loop ---- */

typedef struct Relay {
    ProcRelay *r;
    const ProcRelayOps *ops;
    const char *process_id;
    int ctl, shim, proc_dirfd;
    int exit_status; /* -1 until known */
    bool ctl_open;
    int64_t connect_deadline; /* output is kept whole for streams expected until then */
    int64_t late_deadline;    /* after the exit: unconnected streams are awaited until then */
    ProcFrameReader frames;
    ShimQueue queue;
    char *line; /* the control line being read */
    size_t line_len;
    bool discard_line; /* it is longer than CONTROL_LINE_MAX */
} Relay;

static void relay_shim_gone(Relay *s)
{
    close(s->shim);
    s->shim = -1;
}

/* One control line complete. */
static void relay_control_line(Relay *s)
{
    if (s->discard_line || s->line_len == 0 || s->shim < 0)
        return;
    ProcControl c = {0};
    if (s->ops->decode_control(s->line, s->line_len, &c) < 0)
        return;
    if (!control_apply(&s->queue, s->proc_dirfd, &c))
        log_debug("A control message was dropped: out of memory");
    proc_control_done(&c);
}

/* Read what the client sent on the control connection. false = it hung up. */
static bool relay_read_control(Relay *s)
{
    ssize_t got = 0;
    int recv_errno = 0;
    for (;;) {
        char chunk[65536];
        got = recv(s->ctl, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            /* Kept: the flush below may fail (EPIPE from a finished shim) and
             * must not pass for the client hanging up. */
            recv_errno = got < 0 ? errno : 0;
            break;
        }
        for (ssize_t p = 0; p < got; p++) {
            if (chunk[p] != '\n') {
                if (s->line_len < CONTROL_LINE_MAX)
                    s->line[s->line_len++] = chunk[p];
                else
                    s->discard_line = true;
                continue;
            }
            relay_control_line(s);
            s->line_len = 0;
            s->discard_line = false;
        }
    }
    if (s->shim >= 0 && s->queue.len > 0 && !queue_flush(&s->queue, s->shim))
        s->queue.len = 0;
    return !(got == 0 || (got < 0 && recv_errno != EAGAIN));
}

/* One output frame from the shim. false = read no further until the streams
 * catch up. */
static bool relay_output(Relay *s, int stream)
{
    ProcRelay *r = s->r;
    pthread_mutex_lock(&r->lock);
    OutStream *o = &r->out[stream];
    bool still_expected = clock_monotonic_ms() < s->connect_deadline;
    if (!o->done) {
        out_append(o, s->frames.payload, s->frames.payload_len, o->fd >= 0 || still_expected);
        if (o->fd >= 0 && !out_flush(o))
            out_finish(o);
    }
    bool wait = relay_must_wait(r, still_expected);
    pthread_mutex_unlock(&r->lock);
    return !wait;
}

/* Drain what the shim has sent, frame by frame. */
static void relay_read_shim(Relay *s)
{
    for (int n = 0; n < 64; n++) {
        int k = proc_frame_read(&s->frames, s->shim);
        if (k == 0)
            return;
        if (k < 0) {
            relay_shim_gone(s);
            /* The connection can end before its 'X' is read (a reset when stdin
             * was left unread); the exit file has the status. */
            if (s->exit_status < 0 && proc_read_exit(s->proc_dirfd, &s->exit_status) < 0)
                s->exit_status = 255; /* the monitor vanished without a status */
            return;
        }
        uint8_t type = s->frames.header[0];
        if (type == SHIM_FRAME_STDOUT || type == SHIM_FRAME_STDERR) {
            if (!relay_output(s, type == SHIM_FRAME_STDOUT ? 0 : 1))
                return;
        } else if (type == SHIM_FRAME_EXIT) {
            char buf[16] = {0};
            size_t len = s->frames.payload_len < 15 ? s->frames.payload_len : 15;
            memcpy(buf, s->frames.payload, len);
            s->exit_status = atoi(buf);
            relay_shim_gone(s);
            return;
        }
    }
}

/* The exit, once known: reported once on the control connection, then that is
 * shut down. */
static void relay_report_exit(Relay *s)
{
    if (s->exit_status < 0 || !s->ctl_open)
        return;
    s->ops->report_exit(s->ctl, s->process_id, s->exit_status);
    shutdown(s->ctl, SHUT_RDWR);
    s->ctl_open = false;
    s->late_deadline = clock_monotonic_ms() + LATE_STREAM_MS;
}

typedef struct RelayPoll {
    struct pollfd fds[5];
    int n, ctl, shim, wake, out[2];
} RelayPoll;

/* What to wait for next. false = the relay is over. */
static bool relay_prepare_poll(Relay *s, RelayPoll *p)
{
    ProcRelay *r = s->r;
    bool stop = atomic_load(&r->stopping);
    *p = (RelayPoll){.ctl = -1, .shim = -1, .out = {-1, -1}};
    pthread_mutex_lock(&r->lock);
    for (int k = 0; k < 2; k++) {
        OutStream *o = &r->out[k];
        if (o->done)
            continue;
        if (o->fd >= 0 && o->len > 0) {
            p->out[k] = p->n;
            p->fds[p->n++] = (struct pollfd){.fd = o->fd, .events = POLLOUT};
        }
        /* After the exit, a connected stream with nothing left is done. */
        if (s->exit_status >= 0 && s->shim < 0 && o->fd >= 0 && o->len == 0)
            out_finish(o);
    }
    bool all_done = r->out[0].done && r->out[1].done;
    bool backpressure = relay_must_wait(r, clock_monotonic_ms() < s->connect_deadline);
    pthread_mutex_unlock(&r->lock);

    if (s->exit_status >= 0 && s->shim < 0) {
        if (all_done || clock_monotonic_ms() >= s->late_deadline || stop)
            return false;
    } else if (!s->ctl_open && s->shim < 0) {
        return false;
    }
    if (stop && s->exit_status < 0)
        return false; /* server shutdown: detach */

    if (s->ctl_open && s->queue.len < SHIM_QUEUE_PAUSE) {
        p->ctl = p->n;
        p->fds[p->n++] = (struct pollfd){.fd = s->ctl, .events = POLLIN | POLLRDHUP};
    }
    short shim_events = (short)((backpressure ? 0 : POLLIN) | (s->queue.len > 0 ? POLLOUT : 0));
    if (s->shim >= 0 && shim_events) {
        p->shim = p->n;
        p->fds[p->n++] = (struct pollfd){.fd = s->shim, .events = shim_events};
    }
    p->wake = p->n;
    p->fds[p->n++] = (struct pollfd){.fd = r->wake, .events = POLLIN};
    return true;
}

/* Act on what poll reported. false = the client detached. */
static bool relay_handle_events(Relay *s, const RelayPoll *p)
{
    ProcRelay *r = s->r;
    if (p->fds[p->wake].revents) {
        uint64_t v;
        ssize_t rd = read(r->wake, &v, sizeof(v));
        (void)rd;
    }
    for (int k = 0; k < 2; k++) {
        if (p->out[k] < 0 || !p->fds[p->out[k]].revents)
            continue;
        pthread_mutex_lock(&r->lock);
        if (!out_flush(&r->out[k]))
            out_finish(&r->out[k]);
        pthread_mutex_unlock(&r->lock);
    }
    short shim_revents = p->shim >= 0 ? p->fds[p->shim].revents : 0;
    if ((shim_revents & POLLOUT) && !queue_flush(&s->queue, s->shim))
        s->queue.len = 0; /* the shim stopped reading (the process ended): keep reading it */
    if (s->shim >= 0 && (shim_revents & ~POLLOUT))
        relay_read_shim(s);
    if (p->ctl >= 0 && p->fds[p->ctl].revents && !relay_read_control(s)) {
        /* The client hung up: detach; the process runs on. */
        s->ctl_open = false;
        if (s->exit_status < 0)
            return false; /* the shim connection is flushed and closed below */
    }
    return true;
}

/* Detaching: hand over what the client sent last (a signal, stdin EOF). */
static void relay_detach_shim(Relay *s)
{
    if (s->shim < 0)
        return;
    fcntl(s->shim, F_SETFL, fcntl(s->shim, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(s->shim, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (s->queue.len > 0 && s->queue.len <= SHIM_QUEUE_PAUSE)
        (void)!send(s->shim, s->queue.buf, s->queue.len, MSG_NOSIGNAL);
    relay_shim_gone(s);
}

void proc_relay_run(ProcRelay *r, int ctl, const char *process_id, int shim, int known_exit,
                    int proc_dirfd, const ProcRelayOps *ops)
{
    Relay s = {
        .r = r,
        .ops = ops,
        .process_id = process_id,
        .ctl = ctl,
        .shim = shim,
        .proc_dirfd = proc_dirfd,
        .exit_status = known_exit,
        .ctl_open = true,
        .connect_deadline = clock_monotonic_ms() + STREAM_CONNECT_MS,
        .late_deadline = -1,
    };
    s.line = malloc(CONTROL_LINE_MAX + 1);
    if (!s.line || proc_frame_reader_init(&s.frames) < 0) {
        free(s.line);
        if (shim >= 0)
            close(shim);
        return;
    }
    if (shim >= 0)
        fcntl(shim, F_SETFL, fcntl(shim, F_GETFL) | O_NONBLOCK);
    fcntl(ctl, F_SETFL, fcntl(ctl, F_GETFL) | O_NONBLOCK);

    for (;;) {
        relay_report_exit(&s);
        RelayPoll p;
        if (!relay_prepare_poll(&s, &p))
            break;
        int k = poll(p.fds, (nfds_t)p.n, 1000);
        if (k < 0 && errno != EINTR)
            break;
        if (k <= 0)
            continue;
        if (!relay_handle_events(&s, &p))
            break;
    }
    relay_detach_shim(&s);
    free(s.queue.buf);
    free(s.line);
    proc_frame_reader_done(&s.frames);
    pthread_mutex_lock(&r->lock);
    for (int k = 0; k < 2; k++)
        out_finish(&r->out[k]);
    pthread_mutex_unlock(&r->lock);
}
