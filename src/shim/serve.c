/* Serving DIR/sock: the process's output framed to every connection (or kept in a
 * ring while nobody is attached), stdin, signals and window sizes from connections,
 * and the exit status at the end.
 *
 * One poll() loop. Output is read only while every connection's queue is under
 * SHIM_QUEUE_CAP, so an attached reader gets every byte at its own pace; with no
 * connection, output always goes to the rings, so the process never blocks. A
 * frame goes straight from the read buffer to the socket with writev() when the
 * connection's queue is empty, and only what the socket did not take is copied. */
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#include "cloche/clock.h"
#include "cloche/shim-protocol.h"
#include "shim.h"

#define CONN_IN_SIZE (2 * (SHIM_FRAME_HEADER + SHIM_FRAME_MAX))
#define READS_PER_WAKEUP 16
#define SOCKET_BUFFER (1 << 20)
#define BUFFER_KEEP (4u << 20) /* an empty Buffer larger than this is freed (after a burst) */

enum { STREAM_STDOUT, STREAM_STDERR, _STREAM_MAX };

#define FIRST_CONNECTION_MS 5000

static const uint8_t stream_frame[_STREAM_MAX] = {SHIM_FRAME_STDOUT, SHIM_FRAME_STDERR};

/* A byte queue: data[start, start+len). */
typedef struct Buffer {
    uint8_t *data;
    size_t start, len, size;
} Buffer;

/* The newest `size` bytes of a stream. */
typedef struct Ring {
    uint8_t *data; /* allocated on first use */
    size_t size, start, len;
} Ring;

typedef struct Conn {
    int fd;
    Buffer out;
    size_t in_len;
    bool closing; /* 'X' queued: close once flushed */
    bool control; /* from DIR/ctl: control frames only, no output */
    bool dead;    /* dropped; freed after the current round of events */
    uint8_t in[CONN_IN_SIZE];
} Conn;

typedef struct Server {
    const ShimSpec *spec;
    int dirfd, listen_fd, control_fd, signal_fd;
    ShimProcess *proc;
    int out_fd[_STREAM_MAX];
    Ring ring[_STREAM_MAX];
    Buffer input;     /* for the process's stdin */
    bool input_close; /* 'C' received: close stdin once input is written */
    Conn *conns[SHIM_CONNECTIONS_MAX];
    size_t n_conns;
    bool exited; /* reaped, drained, exit file written (a service: for good) */
    ShimLog log;
    ShimSupervisor sv;
    bool backoff;           /* a service between runs */
    uint64_t restart_at_ms; /* when the back-off ends */
    int status;
    bool delivered;         /* some connection received the whole 'X' frame */
    bool attached;          /* a connection for output has been accepted */
    uint64_t wait_first_ms; /* until then, wait for the daemon's first connection */
    uint64_t deadline_ms;
    uint8_t chunk[SHIM_FRAME_HEADER + SHIM_FRAME_MAX];
} Server;

static uint64_t now_ms(void)
{
    return (uint64_t)clock_monotonic_ms();
}

/* ---- Buffer and Ring ---- */

static int buffer_append(Buffer *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (b->start + b->len + n > b->size) {
        if (b->len + n <= b->size / 2) {
            memmove(b->data, b->data + b->start, b->len);
        } else {
            size_t size = 2 * (b->len + n);
            if (size < (64u << 10))
                size = 64u << 10;
            uint8_t *d = malloc(size);
            if (!d)
                return -ENOMEM;
            if (b->len)
                memcpy(d, b->data + b->start, b->len);
            free(b->data);
            b->data = d;
            b->size = size;
        }
        b->start = 0;
    }
    memcpy(b->data + b->start + b->len, data, n);
    b->len += n;
    return 0;
}

static void buffer_consume(Buffer *b, size_t n)
{
    b->start += n;
    b->len -= n;
    if (b->len == 0) {
        b->start = 0;
        if (b->size > BUFFER_KEEP) {
            free(b->data);
            *b = (Buffer){0};
        }
    }
}

static void buffer_clear(Buffer *b)
{
    free(b->data);
    *b = (Buffer){0};
}

static void ring_append(Ring *r, const uint8_t *data, size_t n)
{
    if (r->size == 0 || n == 0)
        return;
    if (!r->data && !(r->data = malloc(r->size)))
        return; /* out of memory: the bytes are lost, the process is not held up */
    if (n >= r->size) {
        memcpy(r->data, data + n - r->size, r->size);
        r->start = 0;
        r->len = r->size;
        return;
    }
    size_t end = (r->start + r->len) % r->size;
    size_t first = n < r->size - end ? n : r->size - end;
    memcpy(r->data + end, data, first);
    memcpy(r->data, data + first, n - first);
    if (r->len + n > r->size) {
        r->start = (r->start + r->len + n - r->size) % r->size;
        r->len = r->size;
    } else {
        r->len += n;
    }
}

static void ring_clear(Ring *r)
{
    free(r->data);
    r->data = NULL;
    r->start = r->len = 0;
}

/* ---- connections ---- */

static void conn_drop(Conn *c)
{
    c->dead = true;
}

/* Send one frame, straight to the socket while nothing is queued; queue the rest. */
static int conn_send_frame(Conn *c, uint8_t type, const void *payload, size_t len)
{
    uint8_t header[SHIM_FRAME_HEADER];
    shim_frame_header(header, type, (uint32_t)len);
    size_t sent = 0;
    if (c->out.len == 0) {
        struct iovec iov[2] = {{.iov_base = header, .iov_len = sizeof(header)},
                               {.iov_base = (void *)payload, .iov_len = len}};
        ssize_t n = writev(c->fd, iov, len ? 2 : 1);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        sent = n > 0 ? (size_t)n : 0;
    }
    int r = 0;
    if (sent < sizeof(header))
        r = buffer_append(&c->out, header + sent, sizeof(header) - sent);
    size_t payload_sent = sent > sizeof(header) ? sent - sizeof(header) : 0;
    if (r >= 0)
        r = buffer_append(&c->out, (const uint8_t *)payload + payload_sent, len - payload_sent);
    return r;
}

/* Write what is queued. 1 = all written, 0 = the socket is full. */
static int conn_flush(Conn *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out.start, c->out.len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return -errno;
        buffer_consume(&c->out, (size_t)n);
    }
    return 1;
}

/* The rings' content, as frames, to a new connection; the rings are emptied. */
static int conn_send_rings(Server *s, Conn *c)
{
    for (int st = 0; st < _STREAM_MAX; st++) {
        Ring *r = &s->ring[st];
        size_t done = 0;
        while (done < r->len) {
            size_t pos = (r->start + done) % r->size;
            size_t n = r->len - done;
            if (n > r->size - pos)
                n = r->size - pos;
            if (n > SHIM_FRAME_MAX)
                n = SHIM_FRAME_MAX;
            int err = conn_send_frame(c, stream_frame[st], r->data + pos, n);
            if (err < 0)
                return err;
            done += n;
        }
        ring_clear(r);
    }
    return 0;
}

/* Queue 'X' and close the connection once it is out. */
static void conn_send_exit(Server *s, Conn *c)
{
    char text[16];
    int len = snprintf(text, sizeof(text), "%d", s->status);
    if (conn_send_frame(c, SHIM_FRAME_EXIT, text, (size_t)len) < 0) {
        conn_drop(c);
        return;
    }
    c->closing = true;
    int r = conn_flush(c);
    if (r < 0) {
        conn_drop(c);
    } else if (r > 0) {
        s->delivered = true;
        conn_drop(c);
    }
}

static void server_sweep(Server *s)
{
    for (size_t i = 0; i < s->n_conns;) {
        Conn *c = s->conns[i];
        if (!c->dead) {
            i++;
            continue;
        }
        close(c->fd);
        buffer_clear(&c->out);
        free(c);
        s->conns[i] = s->conns[--s->n_conns];
    }
}

static void server_accept(Server *s, bool control)
{
    while (s->n_conns < SHIM_CONNECTIONS_MAX) {
        int fd = accept4(control ? s->control_fd : s->listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a connection that vanished: nothing to do */
        int size = SOCKET_BUFFER;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        Conn *c = malloc(sizeof(Conn));
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->out = (Buffer){0};
        c->in_len = 0;
        c->closing = c->dead = false;
        c->control = control;
        s->conns[s->n_conns++] = c;
        if (!control)
            s->attached = true;
        if (control)
            continue; /* signals and window sizes only: no output, no ring */
        if (conn_send_rings(s, c) < 0)
            conn_drop(c);
        else if (s->exited)
            conn_send_exit(s, c);
    }
}

/* ---- the process's stdio ---- */

static void stdin_close(Server *s)
{
    ShimProcess *p = s->proc;
    if (p->stdin_fd < 0)
        return;
    if (p->master_fd >= 0) {
        /* A terminal has no end of file: type the EOF character a user would. */
        struct termios t;
        if (tcgetattr(p->master_fd, &t) == 0 && (t.c_lflag & ICANON)) {
            ssize_t n = write(p->stdin_fd, &t.c_cc[VEOF], 1);
            (void)n;
        }
    }
    shim_closep(&p->stdin_fd);
    buffer_clear(&s->input);
}

/* Write queued input, then data; queue what the pipe does not take. */
static void stdin_write(Server *s, const uint8_t *data, size_t len)
{
    ShimProcess *p = s->proc;
    while (p->stdin_fd >= 0 && s->input.len) {
        ssize_t n = write(p->stdin_fd, s->input.data + s->input.start, s->input.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) { /* EPIPE: the process closed its stdin; input has nowhere to go */
            stdin_close(s);
            return;
        }
        buffer_consume(&s->input, (size_t)n);
    }
    if (p->stdin_fd < 0)
        return;
    while (len && s->input.len == 0) {
        ssize_t n = write(p->stdin_fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) {
            stdin_close(s);
            return;
        }
        data += n;
        len -= (size_t)n;
    }
    if (len && buffer_append(&s->input, data, len) < 0)
        stdin_close(s);
    if (s->input.len == 0 && s->input_close)
        stdin_close(s);
}

static void handle_signal_frame(Server *s, const uint8_t *payload, size_t len)
{
    char text[16];
    if (len == 0 || len >= sizeof(text))
        return;
    memcpy(text, payload, len);
    text[len] = '\0';
    char *end;
    long sig = strtol(text, &end, 10);
    /* Reaped pids may be reused: signal only a process still ours to reap. */
    if (*end == '\0' && sig > 0 && sig < _NSIG && !s->exited && !s->backoff)
        kill(s->proc->pid, (int)sig);
}

static void handle_winsize_frame(Server *s, const uint8_t *payload, size_t len)
{
    char text[32];
    unsigned cols, rows;
    char extra;
    if (s->proc->master_fd < 0 || len == 0 || len >= sizeof(text))
        return;
    memcpy(text, payload, len);
    text[len] = '\0';
    if (sscanf(text, "%u %u%c", &cols, &rows, &extra) != 2 || cols > USHRT_MAX || rows > USHRT_MAX)
        return;
    struct winsize ws = {.ws_col = (unsigned short)cols, .ws_row = (unsigned short)rows};
    (void)ioctl(s->proc->master_fd, TIOCSWINSZ, &ws);
}

static void server_give_up(Server *s);

/* Act on the complete frames in c->in, in order, until stdin is full. */
static int conn_process_input(Server *s, Conn *c)
{
    size_t pos = 0;
    while (c->in_len - pos >= SHIM_FRAME_HEADER) {
        uint32_t len = shim_frame_length(c->in + pos);
        if (len > SHIM_FRAME_MAX)
            return -EPROTO;
        if (c->in_len - pos < SHIM_FRAME_HEADER + len)
            break;
        uint8_t type = c->in[pos];
        const uint8_t *payload = c->in + pos + SHIM_FRAME_HEADER;
        bool accepting = s->proc->stdin_fd >= 0 && !s->input_close;
        if (type == SHIM_FRAME_STDIN && accepting && s->input.len >= SHIM_STDIN_CAP)
            break; /* resumed once the process has read some */
        switch (type) {
        case SHIM_FRAME_STDIN:
            if (accepting)
                stdin_write(s, payload, len);
            break;
        case SHIM_FRAME_STDIN_CLOSE:
            s->input_close = true;
            if (s->input.len == 0)
                stdin_close(s);
            break;
        case SHIM_FRAME_SIGNAL:
            handle_signal_frame(s, payload, len);
            break;
        case SHIM_FRAME_WINSIZE:
            handle_winsize_frame(s, payload, len);
            break;
        case SHIM_FRAME_QUIT:
            s->sv.quit = true;
            if (s->backoff)
                server_give_up(s);
            break;
        default:
            break; /* unknown frames are skipped */
        }
        pos += SHIM_FRAME_HEADER + len;
    }
    if (pos) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
    return 0;
}

static void conn_read(Server *s, Conn *c)
{
    while (c->in_len < sizeof(c->in)) {
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) { /* the daemon went away, or an error: the process carries on */
            conn_drop(c);
            return;
        }
        c->in_len += (size_t)n;
        if (conn_process_input(s, c) < 0) {
            conn_drop(c);
            return;
        }
    }
}

/* After stdin drained below its cap: frames that waited for it. */
static void conns_resume_input(Server *s)
{
    for (size_t i = 0; i < s->n_conns; i++) {
        Conn *c = s->conns[i];
        if (!c->dead && !c->closing && c->in_len && conn_process_input(s, c) < 0)
            conn_drop(c);
    }
}

/* Output to every connection, or to the ring when nobody (alive) is attached. */
static void deliver(Server *s, int stream, const uint8_t *data, size_t len)
{
    if (s->log.path) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        shim_log_write(&s->log, stream == STREAM_STDERR ? SHIM_LOG_STDERR : SHIM_LOG_STDOUT, data,
                       len, &now);
    }
    size_t reached = 0;
    for (size_t i = 0; i < s->n_conns; i++) {
        Conn *c = s->conns[i];
        if (c->dead || c->closing || c->control)
            continue;
        if (conn_send_frame(c, stream_frame[stream], data, len) < 0)
            conn_drop(c);
        else
            reached++;
    }
    if (reached == 0)
        ring_append(&s->ring[stream], data, len);
}

static bool output_paused(const Server *s)
{
    for (size_t i = 0; i < s->n_conns; i++)
        if (!s->conns[i]->dead && !s->conns[i]->control && s->conns[i]->out.len >= SHIM_QUEUE_CAP)
            return true;
    return false;
}

/* One read of a stream. Returns the bytes read, 0 when nothing is available now, -1
 * at the end (the fd is closed then). */
static ssize_t read_output(Server *s, int stream)
{
    int *fd = &s->out_fd[stream];
    ssize_t n;
    while ((n = read(*fd, s->chunk + SHIM_FRAME_HEADER, SHIM_FRAME_MAX)) < 0 && errno == EINTR)
        ;
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0) { /* EOF; EIO from a pty master once the terminal is gone */
        if (*fd == s->proc->master_fd)
            s->proc->master_fd = -1;
        shim_closep(fd);
        return -1;
    }
    deliver(s, stream, s->chunk + SHIM_FRAME_HEADER, (size_t)n);
    return n;
}

/* ---- the end ---- */

/* The process is reaped: read what it left in the pipes (not waiting for a
 * background child that may hold them forever), record the status, send 'X'. */
static void server_drain(Server *s)
{
    for (int st = 0; st < _STREAM_MAX; st++) {
        size_t drained = 0;
        while (s->out_fd[st] >= 0 && drained < SHIM_DRAIN_BUDGET) {
            ssize_t n = read_output(s, st);
            if (n <= 0)
                break;
            drained += (size_t)n;
        }
        if (s->out_fd[st] == s->proc->master_fd)
            s->proc->master_fd = -1;
        shim_closep(&s->out_fd[st]);
    }
    shim_closep(&s->proc->stdin_fd);
    buffer_clear(&s->input);
    s->input_close = false;
    s->proc->master_fd = -1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    shim_log_flush(&s->log, &now);
}

static void server_finish(Server *s)
{
    server_drain(s);
    s->backoff = false;
    if (s->spec->supervised) {
        s->sv.state = SHIM_SERVICE_EXITED;
        (void)shim_supervisor_write(&s->sv, s->dirfd, 0);
    }

    shim_pea_finish(s->spec, s->proc->pea_mnt_ns);
    char text[16];
    int len = snprintf(text, sizeof(text), "%d\n", s->status);
    /* Nothing to report a failure to: the status still goes out on the connections. */
    (void)shim_write_file_first(s->dirfd, "exit.tmp", "exit", text, (size_t)len);

    s->exited = true;
    s->deadline_ms = now_ms() + (uint64_t)s->spec->linger * 1000;
    for (size_t i = 0; i < s->n_conns; i++) {
        if (s->conns[i]->dead)
            continue;
        if (s->conns[i]->control)
            conn_drop(s->conns[i]);
        else
            conn_send_exit(s, s->conns[i]);
    }
}

/* A run ended with s->status: start it again after a back-off, or finish. */
static void server_run_ended(Server *s)
{
    uint64_t delay;
    if (!shim_supervisor_exited(&s->sv, s->spec, s->status, now_ms(), &delay)) {
        server_finish(s);
        return;
    }
    server_drain(s);
    s->proc->pid = -1;
    s->backoff = true;
    s->restart_at_ms = now_ms() + delay;
    (void)shim_supervisor_write(&s->sv, s->dirfd, 0);
}

/* 'Q' during a back-off: the last run's status is the service's. */
static void server_give_up(Server *s)
{
    server_finish(s);
}

/* The back-off is over: start the process again in the container. A start that
 * fails counts as a run that ended with 127 (not found) or 126. */
static void server_restart(Server *s)
{
    ShimError err = {0};
    s->backoff = false;
    s->sv.restarts++;
    s->sv.state = SHIM_SERVICE_RESTARTING;
    (void)shim_supervisor_write(&s->sv, s->dirfd, 0);
    ShimProcess p = {.pid = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .master_fd = -1};
    shim_supervisor_started(&s->sv, now_ms(), time(NULL));
    if (shim_process_start(s->spec, -1, &p, &err) < 0) {
        /* The container's init is gone (stopped, destroyed): nothing to restart in. */
        if (err.err == ESRCH) {
            s->sv.quit = true;
            s->status = s->sv.last_status;
            server_finish(s);
            return;
        }
        s->status = err.err == ENOENT ? 127 : 126;
        server_run_ended(s);
        return;
    }
    *s->proc = p;
    s->out_fd[STREAM_STDOUT] = p.stdout_fd;
    s->out_fd[STREAM_STDERR] = p.stderr_fd;
    s->proc->stdout_fd = s->proc->stderr_fd = -1;
    stdin_close(s);
    (void)shim_write_pid_file(s->dirfd, p.pid);
    (void)shim_supervisor_write(&s->sv, s->dirfd, p.pid);
}

static void server_reap(Server *s)
{
    struct signalfd_siginfo si;
    while (read(s->signal_fd, &si, sizeof(si)) > 0)
        ;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        /* Others are orphans handed to this subreaper: reaped and forgotten. */
        if (pid == s->proc->pid && !s->exited && !s->backoff) {
            s->status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
            server_run_ended(s);
        }
    }
}

/* ---- the loop ---- */

enum { SLOT_LISTEN, SLOT_CONTROL, SLOT_SIGNAL, SLOT_STDOUT, SLOT_STDERR, SLOT_STDIN, _SLOT_CONNS };

static Server *server_new(const ShimSpec *spec, int dirfd, int listen_fd, int control_fd,
                          int signal_fd, ShimProcess *proc)
{
    Server *s = calloc(1, sizeof(Server));
    if (!s)
        return NULL;
    s->spec = spec;
    s->dirfd = dirfd;
    s->listen_fd = listen_fd;
    s->control_fd = control_fd;
    s->signal_fd = signal_fd;
    s->proc = proc;
    s->out_fd[STREAM_STDOUT] = proc->stdout_fd;
    s->out_fd[STREAM_STDERR] = proc->stderr_fd;
    proc->stdout_fd = proc->stderr_fd = -1; /* owned through out_fd now */
    for (int st = 0; st < _STREAM_MAX; st++)
        s->ring[st].size = spec->ring;
    s->wait_first_ms = now_ms() + FIRST_CONNECTION_MS;
    if (shim_log_init(&s->log, spec->log_path, spec->log_max_size, spec->log_max_files) < 0) {
        free(s);
        return NULL;
    }
    if (spec->supervised) {
        /* Nobody connects first to a service, and nobody writes its stdin. */
        s->wait_first_ms = 0;
        stdin_close(s);
        shim_supervisor_init(&s->sv, spec);
        shim_supervisor_started(&s->sv, now_ms(), time(NULL));
        (void)shim_supervisor_write(&s->sv, dirfd, proc->pid);
    }
    return s;
}

static void server_free(Server *s)
{
    for (int st = 0; st < _STREAM_MAX; st++) {
        ring_clear(&s->ring[st]);
        shim_closep(&s->out_fd[st]);
    }
    shim_closep(&s->proc->stdin_fd);
    buffer_clear(&s->input);
    shim_log_done(&s->log);
    free(s);
}

/* What to wait for next, into pfd (polled[i] is the connection of slot
 * _SLOT_CONNS + i); returns the number of slots, *ret_timeout the wait. */
static nfds_t server_poll_set(Server *s, struct pollfd *pfd, Conn **polled, int *ret_timeout)
{
    uint64_t now = now_ms();
    /* The daemon connects right after the start line: until then (or for at
     * most FIRST_CONNECTION_MS) leave the output in the pipe, so a Run's first
     * bytes go to its client rather than through the ring. */
    bool waiting_first = !s->attached && now < s->wait_first_ms;
    bool paused = output_paused(s) || waiting_first;
    pfd[SLOT_LISTEN] = (struct pollfd){.fd = s->n_conns < SHIM_CONNECTIONS_MAX ? s->listen_fd : -1,
                                       .events = POLLIN};
    pfd[SLOT_CONTROL] =
        (struct pollfd){.fd = s->n_conns < SHIM_CONNECTIONS_MAX && !s->exited ? s->control_fd : -1,
                        .events = POLLIN};
    /* SIGCHLD stays watched during a back-off: orphans are still reaped. */
    pfd[SLOT_SIGNAL] = (struct pollfd){.fd = s->exited ? -1 : s->signal_fd, .events = POLLIN};
    for (int st = 0; st < _STREAM_MAX; st++)
        pfd[SLOT_STDOUT + st] =
            (struct pollfd){.fd = paused ? -1 : s->out_fd[st], .events = POLLIN};
    pfd[SLOT_STDIN] =
        (struct pollfd){.fd = s->input.len ? s->proc->stdin_fd : -1, .events = POLLOUT};
    nfds_t n = _SLOT_CONNS;
    for (size_t i = 0; i < s->n_conns; i++) {
        Conn *c = s->conns[i];
        short events = c->out.len ? POLLOUT : 0;
        if (!c->closing && c->in_len < sizeof(c->in))
            events |= POLLIN;
        polled[i] = c;
        pfd[n++] = (struct pollfd){.fd = c->fd, .events = events};
    }
    int timeout = -1;
    if (s->exited && s->n_conns == 0)
        timeout = (int)(s->deadline_ms - now);
    if (waiting_first)
        timeout = (int)(s->wait_first_ms - now) + 1;
    if (s->backoff)
        timeout = s->restart_at_ms > now ? (int)(s->restart_at_ms - now) + 1 : 0;
    *ret_timeout = timeout;
    return n;
}

/* One connection's events. */
static void server_conn_events(Server *s, Conn *c, short re)
{
    if (re & POLLOUT) {
        int r = conn_flush(c);
        if (r < 0) {
            conn_drop(c);
            return;
        }
        if (r > 0 && c->closing) {
            s->delivered = true;
            conn_drop(c);
            return;
        }
    }
    if (re & POLLIN)
        conn_read(s, c);
    else if (re & (POLLHUP | POLLERR | POLLNVAL))
        conn_drop(c);
}

/* Everything poll reported, in order: output, connections, stdin, new
 * connections, children, then a due restart. */
static void server_dispatch(Server *s, const struct pollfd *pfd, Conn **polled, nfds_t n)
{
    for (int st = 0; st < _STREAM_MAX; st++) {
        if (!pfd[SLOT_STDOUT + st].revents || s->exited)
            continue;
        /* A few reads per wake-up while every reader keeps up. */
        for (int k = 0; k < READS_PER_WAKEUP && s->out_fd[st] >= 0; k++)
            if (read_output(s, st) < SHIM_FRAME_MAX || output_paused(s))
                break;
    }
    for (size_t i = 0; i < s->n_conns && _SLOT_CONNS + i < n; i++) {
        Conn *c = polled[i];
        short re = pfd[_SLOT_CONNS + i].revents;
        if (!c->dead && re)
            server_conn_events(s, c, re);
    }
    if (pfd[SLOT_STDIN].revents) {
        stdin_write(s, NULL, 0);
        if (s->input.len < SHIM_STDIN_CAP)
            conns_resume_input(s);
    }
    if (pfd[SLOT_LISTEN].revents)
        server_accept(s, false);
    if (pfd[SLOT_CONTROL].revents)
        server_accept(s, true);
    if (pfd[SLOT_SIGNAL].revents)
        server_reap(s);
    if (s->backoff && now_ms() >= s->restart_at_ms)
        server_restart(s);
}

int shim_serve(const ShimSpec *spec, int dirfd, int listen_fd, int control_fd, int signal_fd,
               ShimProcess *proc)
{
    Server *s = server_new(spec, dirfd, listen_fd, control_fd, signal_fd, proc);
    if (!s)
        return -ENOMEM;
    struct pollfd pfd[_SLOT_CONNS + SHIM_CONNECTIONS_MAX];
    Conn *polled[SHIM_CONNECTIONS_MAX];
    for (;;) {
        server_sweep(s);
        if (s->exited && s->n_conns == 0 && (s->delivered || now_ms() >= s->deadline_ms))
            break;
        int timeout;
        nfds_t n = server_poll_set(s, pfd, polled, &timeout);
        if (poll(pfd, n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            int r = -errno;
            server_free(s);
            return r;
        }
        server_dispatch(s, pfd, polled, n);
    }
    server_free(s);
    return 0;
}
