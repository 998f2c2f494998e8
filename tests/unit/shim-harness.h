/* The harness shared by test-shim.c and test-shim-confine.c: the built
 * cloche-shim ($CLOCHE_SHIM) started against ordinary processes of this test's
 * own namespaces, the frames both ways, and the clean-up of every shim, process
 * and directory by pid and path. Header-only: each test program includes it once. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cloche/procfs.h"
#include "tap.h"

#include "cloche/fileio.h"
#include "cloche/security.h"
#include "cloche/shim-protocol.h"

#define TIMEOUT_MS 20000
#define MAX_RUNS 64

typedef struct Run {
    char dir[64];
    char line[512]; /* the start line, without its newline */
    pid_t process;  /* from "ok <pid>" */
    pid_t shim;     /* from the pid file */
    bool shim_reaped;
} Run;

typedef struct Output {
    char *out, *err;
    size_t out_len, err_len;
    char status[32];
    bool exited; /* got 'X' */
    bool closed; /* the shim closed the connection */
} Output;

static __attribute__((unused)) const char *shim_path;
static __attribute__((unused)) pid_t init_pid;
static __attribute__((unused)) unsigned long long init_start;
static __attribute__((unused))
Run runs[MAX_RUNS]; /* static: cleaned up at the end whatever happened */
static __attribute__((unused)) size_t n_runs;
static __attribute__((unused)) pid_t strays[16]; /* background processes a test left behind */
static __attribute__((unused)) size_t n_strays;
static
    __attribute__((unused)) bool make_stale_socket; /* leave a file at DIR/sock before the start */

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static inline unsigned long long start_time_of(pid_t pid)
{
    uint64_t start = 0;
    return procfs_start_time(pid, &start) == 0 ? start : 0;
}

static inline void spec_add(FILE *f, const char *key, const char *value)
{
    fprintf(f, "%s=", key);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '%' || *p < 0x20 || *p == 0x7f)
            fprintf(f, "%%%02X", *p);
        else
            fputc(*p, f);
    }
    fputc('\n', f);
}

/* Start a shim for the spec records kv ("key", "value", ..., NULL); init_pid and
 * init_start are added unless with_init is false. Returns true on "ok". */
static inline bool shim_start_spec(Run *run, const char *const *kv, bool with_init)
{
    run->process = run->shim = -1; /* a Run is reused after run_cleanup() */
    run->shim_reaped = false;
    run->line[0] = '\0';
    snprintf(run->dir, sizeof(run->dir), "/tmp/cloche-test-shim-XXXXXX");
    if (!mkdtemp(run->dir))
        abort();
    char path[128];
    snprintf(path, sizeof(path), "%s/spec", run->dir);
    FILE *f = fopen(path, "we");
    if (!f)
        abort();
    /* Short, so that the shims of a killed test run do not stay for long; a
     * test's own linger comes later and wins. */
    spec_add(f, "linger", "10");
    for (size_t i = 0; kv[i]; i += 2)
        spec_add(f, kv[i], kv[i + 1]);
    if (make_stale_socket) {
        snprintf(path, sizeof(path), "%s/sock", run->dir);
        close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    }
    if (with_init)
        fprintf(f, "init_pid=%d\ninit_start=%llu\n", init_pid, init_start);
    fclose(f);

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        abort();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        dup2(p[1], 3); /* dup2 clears close-on-exec */
        execl(shim_path, "cloche-shim", run->dir, (char *)NULL);
        _exit(126);
    }
    close(p[1]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        printf("# the shim's first process ended with status %d\n", status);

    size_t len = 0;
    uint64_t deadline = now_ms() + TIMEOUT_MS;
    for (;;) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int left = (int)(deadline - now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        ssize_t n = read(p[0], run->line + len, sizeof(run->line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(p[0]);
    run->line[len] = '\0';
    if (len && run->line[len - 1] == '\n')
        run->line[len - 1] = '\0';

    if (strncmp(run->line, "ok ", 3) != 0)
        return false;
    run->process = atoi(run->line + 3);
    snprintf(path, sizeof(path), "%s/pid", run->dir);
    f = fopen(path, "re");
    if (f) {
        int shim = -1, proc = -1;
        unsigned long long start = 0;
        if (fscanf(f, "%d %llu %d", &shim, &start, &proc) == 3)
            run->shim = shim;
        fclose(f);
    }
    return true;
}

static inline bool shim_start(Run *run, const char *const *kv)
{
    bool r = shim_start_spec(run, kv, true);
    if (!r)
        printf("# start line: '%s'\n", run->line);
    return r;
}

static inline int shim_connect(const Run *run)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/sock", run->dir);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        printf("# connect %s: %s\n", addr.sun_path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static inline bool write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static inline bool send_frame(int fd, uint8_t type, const void *data, size_t len)
{
    uint8_t header[SHIM_FRAME_HEADER];
    shim_frame_header(header, type, (uint32_t)len);
    return write_all(fd, header, sizeof(header)) && write_all(fd, data, len);
}

static inline bool send_text(int fd, uint8_t type, const char *text)
{
    return send_frame(fd, type, text, strlen(text));
}

static inline void output_free(Output *o)
{
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof(*o));
}

static inline void append(char **buf, size_t *len, const uint8_t *data, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Feed input (as 'I' frames, then 'C' if close_input) while collecting frames,
 * until 'X' and the shim's close, until stdout holds `until` (if not NULL), or
 * the timeout. Returns true if the stop condition was met. */
static inline bool exchange(int fd, const void *input, size_t input_len, bool close_input,
                            Output *o, const char *until, int timeout_ms)
{
    static uint8_t buf[1 << 20];
    size_t buf_len = 0, sent = 0;
    bool close_sent = !close_input;
    uint8_t pending[SHIM_FRAME_HEADER + SHIM_FRAME_MAX];
    size_t pending_len = 0, pending_off = 0;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    bool done = false;
    while (!done) {
        if (pending_off == pending_len) {
            pending_len = pending_off = 0;
            if (sent < input_len) {
                size_t n = input_len - sent;
                if (n > SHIM_FRAME_MAX)
                    n = SHIM_FRAME_MAX;
                shim_frame_header(pending, SHIM_FRAME_STDIN, (uint32_t)n);
                memcpy(pending + SHIM_FRAME_HEADER, (const uint8_t *)input + sent, n);
                pending_len = SHIM_FRAME_HEADER + n;
                sent += n;
            } else if (!close_sent) {
                shim_frame_header(pending, SHIM_FRAME_STDIN_CLOSE, 0);
                pending_len = SHIM_FRAME_HEADER;
                close_sent = true;
            }
        }
        struct pollfd pfd = {.fd = fd,
                             .events = POLLIN | (pending_len > pending_off ? POLLOUT : 0)};
        int left = (int)(deadline - now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        if ((pfd.revents & POLLOUT) && pending_len > pending_off) {
            ssize_t n = write(fd, pending + pending_off, pending_len - pending_off);
            if (n > 0)
                pending_off += (size_t)n;
        }
        if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t n = read(fd, buf + buf_len, sizeof(buf) - buf_len);
        if (n < 0 && errno == EAGAIN)
            continue;
        if (n <= 0) {
            o->closed = true;
            done = o->exited;
            break;
        }
        buf_len += (size_t)n;
        size_t pos = 0;
        while (buf_len - pos >= SHIM_FRAME_HEADER) {
            uint32_t len = shim_frame_length(buf + pos);
            if (buf_len - pos < SHIM_FRAME_HEADER + len)
                break;
            const uint8_t *payload = buf + pos + SHIM_FRAME_HEADER;
            switch (buf[pos]) {
            case SHIM_FRAME_STDOUT:
                append(&o->out, &o->out_len, payload, len);
                break;
            case SHIM_FRAME_STDERR:
                append(&o->err, &o->err_len, payload, len);
                break;
            case SHIM_FRAME_EXIT:
                snprintf(o->status, sizeof(o->status), "%.*s", (int)len, (const char *)payload);
                o->exited = true;
                break;
            default:
                printf("# unexpected frame type %d\n", buf[pos]);
            }
            pos += SHIM_FRAME_HEADER + len;
        }
        memmove(buf, buf + pos, buf_len - pos);
        buf_len -= pos;
        if (until && o->out && strstr(o->out, until))
            done = true;
    }
    fcntl(fd, F_SETFL, fl);
    if (!o->out)
        append(&o->out, &o->out_len, (const uint8_t *)"", 0);
    if (!o->err)
        append(&o->err, &o->err_len, (const uint8_t *)"", 0);
    return done;
}

/* Connect, send input, close stdin, collect everything until 'X'. */
static inline bool run_to_end(const Run *run, const char *input, Output *o)
{
    int fd = shim_connect(run);
    if (fd < 0)
        return false;
    bool r = exchange(fd, input, input ? strlen(input) : 0, true, o, NULL, TIMEOUT_MS);
    close(fd);
    return r;
}

static inline bool file_exists(const Run *run, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", run->dir, name);
    return access(path, F_OK) == 0;
}

/* Content of run->dir/name without its newline; "" if absent. */
static inline const char *file_text(const Run *run, const char *name)
{
    static char buf[256];
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", run->dir, name);
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return buf;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    return buf;
}

static inline bool wait_for_file(const Run *run, const char *name, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    while (!file_exists(run, name)) {
        if (now_ms() > deadline)
            return false;
        sleep_ms(10);
    }
    return true;
}

/* The shim is this subreaper's child once detached: wait for it to end. */
static inline bool wait_shim_exit(Run *run, int timeout_ms)
{
    if (run->shim <= 0)
        return false;
    if (run->shim_reaped)
        return true;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        pid_t r = waitpid(run->shim, NULL, WNOHANG);
        if (r == run->shim || (r < 0 && errno == ECHILD)) {
            run->shim_reaped = true;
            return true;
        }
        if (now_ms() > deadline)
            return false;
        sleep_ms(10);
    }
}

static inline void run_cleanup(Run *run)
{
    if (run->shim > 0 && !run->shim_reaped) {
        /* While the shim lives, its process is not reaped: the pid is still it. */
        if (run->process > 0)
            kill(run->process, SIGKILL);
        if (!wait_shim_exit(run, 2000)) {
            kill(run->shim, SIGKILL);
            wait_shim_exit(run, 5000);
        }
    }
    if (run->dir[0])
        rm_rf_at(AT_FDCWD, run->dir);
    run->dir[0] = '\0';
}

static inline Run *run_new(void)
{
    if (n_runs == MAX_RUNS)
        abort();
    Run *run = &runs[n_runs++];
    run->process = run->shim = -1;
    return run;
}

/* ---- the cases ---- */

/* Set up (false: the whole suite is skipped, its plan "1..0 # SKIP" printed). */
static inline bool harness_begin(void)
{
    shim_path = getenv("CLOCHE_SHIM");
    if (geteuid() != 0) {
        printf("1..0 # SKIP cloche-shim needs root\n");
        return false;
    }
    if (!shim_path || access(shim_path, X_OK) < 0) {
        printf("1..0 # SKIP CLOCHE_SHIM does not name the built cloche-shim\n");
        return false;
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);

    /* The "init": an ordinary process in our own namespaces. */
    init_pid = fork();
    if (init_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        for (;;)
            pause();
    }
    while ((init_start = start_time_of(init_pid)) == 0)
        sleep_ms(1);

    return true;
}

static inline void harness_end(void)
{
    for (size_t i = 0; i < n_runs; i++)
        run_cleanup(&runs[i]);
    for (size_t i = 0; i < n_strays; i++)
        kill(strays[i], SIGKILL);
    kill(init_pid, SIGKILL);
    /* Everything that ended up ours (the init, strays handed to this subreaper). */
    uint64_t deadline = now_ms() + 5000;
    while (waitpid(-1, NULL, WNOHANG) >= 0 && now_ms() < deadline)
        sleep_ms(5);
}
