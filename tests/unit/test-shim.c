/* cloche-shim (include/cloche/shim-protocol.h) against ordinary processes in this
 * test's own namespaces, so that the shim skips every setns: the start line, the
 * pid and exit files, frames both ways, the output rings, backpressure, a pty,
 * signals, ids, rlimits, cgroups, and the throughput of one reader.
 *
 * Root only (the shim sets ids and writes cgroup.procs). The built shim's path
 * comes from $CLOCHE_SHIM. This test is a child subreaper, so the detached shims
 * (and anything they leave behind) become its children and are reaped here; every
 * shim, process and directory is removed by pid and path at the end. */
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

static const char *shim_path;
static pid_t init_pid;
static unsigned long long init_start;
static Run runs[MAX_RUNS]; /* static: cleaned up at the end whatever happened */
static size_t n_runs;
static pid_t strays[16]; /* background processes a test left behind */
static size_t n_strays;
static bool make_stale_socket; /* leave a file at DIR/sock before the start */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static unsigned long long start_time_of(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void spec_add(FILE *f, const char *key, const char *value)
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
static bool shim_start_spec(Run *run, const char *const *kv, bool with_init)
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

static bool shim_start(Run *run, const char *const *kv)
{
    bool r = shim_start_spec(run, kv, true);
    if (!r)
        printf("# start line: '%s'\n", run->line);
    return r;
}

static int shim_connect(const Run *run)
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

static bool write_all(int fd, const void *data, size_t len)
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

static bool send_frame(int fd, uint8_t type, const void *data, size_t len)
{
    uint8_t header[SHIM_FRAME_HEADER];
    shim_frame_header(header, type, (uint32_t)len);
    return write_all(fd, header, sizeof(header)) && write_all(fd, data, len);
}

static bool send_text(int fd, uint8_t type, const char *text)
{
    return send_frame(fd, type, text, strlen(text));
}

static void output_free(Output *o)
{
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof(*o));
}

static void append(char **buf, size_t *len, const uint8_t *data, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Feed input (as 'I' frames, then 'C' if close_input) while collecting frames,
 * until 'X' and the shim's close, until stdout holds `until` (if not NULL), or
 * the timeout. Returns true if the stop condition was met. */
static bool exchange(int fd, const void *input, size_t input_len, bool close_input, Output *o,
                     const char *until, int timeout_ms)
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
static bool run_to_end(const Run *run, const char *input, Output *o)
{
    int fd = shim_connect(run);
    if (fd < 0)
        return false;
    bool r = exchange(fd, input, input ? strlen(input) : 0, true, o, NULL, TIMEOUT_MS);
    close(fd);
    return r;
}

static bool file_exists(const Run *run, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", run->dir, name);
    return access(path, F_OK) == 0;
}

/* Content of run->dir/name without its newline; "" if absent. */
static const char *file_text(const Run *run, const char *name)
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

static bool wait_for_file(const Run *run, const char *name, int timeout_ms)
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
static bool wait_shim_exit(Run *run, int timeout_ms)
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

static void run_cleanup(Run *run)
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

static Run *run_new(void)
{
    if (n_runs == MAX_RUNS)
        abort();
    Run *run = &runs[n_runs++];
    run->process = run->shim = -1;
    return run;
}

/* ---- the cases ---- */

static void test_basic(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh",
                        "arg",  "-c",
                        "arg",  "cat; echo err >&2; exit 3",
                        "env",  "PATH=/bin:/usr/bin",
                        NULL};
    if (!ok(shim_start(run, kv), "basic: the shim says ok"))
        return;
    ok(run->process > 0, "basic: ok carries the process pid (%d)", run->process);
    ok(file_exists(run, "sock"), "basic: the socket exists once ok is written");
    struct stat st;
    char path[128];
    snprintf(path, sizeof(path), "%s/sock", run->dir);
    ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
       "basic: sock is a socket of mode 0600");

    FILE *f = fopen((snprintf(path, sizeof(path), "%s/pid", run->dir), path), "re");
    int shim = -1, proc = -1;
    unsigned long long start = 0;
    ok(f && fscanf(f, "%d %llu %d", &shim, &start, &proc) == 3, "basic: pid file has 3 fields");
    if (f)
        fclose(f);
    ok(shim > 0 && start == start_time_of(shim), "basic: pid file: shim pid and start time");
    is_int(proc, run->process, "basic: pid file: the process pid");
    ok(!file_exists(run, "pid.tmp"), "basic: no pid.tmp left");

    Output o = {0};
    ok(run_to_end(run, "hello\n", &o), "basic: got 'X'");
    is_str(o.out, "hello\n", "basic: stdin came back on stdout");
    is_str(o.err, "err\n", "basic: stderr");
    is_str(o.status, "3", "basic: exit status 3");
    ok(o.closed, "basic: the shim closed the connection after 'X'");
    is_str(file_text(run, "exit"), "3", "basic: exit file");
    ok(wait_shim_exit(run, 5000), "basic: the shim exits once 'X' is delivered");
    ok(!file_exists(run, "sock"), "basic: the socket is removed");
    output_free(&o);
    run_cleanup(run);
}

static void test_start_errors(void)
{
    Run *run = run_new();
    const char *missing[] = {"path", "/nonexistent/cloche-prog", NULL};
    ok(!shim_start_spec(run, missing, true), "errors: missing executable fails");
    ok(strncmp(run->line, "err 2 ", 6) == 0, "errors: missing executable: err 2 ('%s')", run->line);
    ok(!file_exists(run, "sock"), "errors: no socket left");
    ok(!file_exists(run, "pid"), "errors: no pid file");
    run_cleanup(run);

    const char *unfound[] = {"path", "cloche-no-such-program", "env", "PATH=/bin:/usr/bin", NULL};
    shim_start_spec(run, unfound, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0, "errors: not in PATH: err 2 ('%s')", run->line);
    run_cleanup(run);

    const char *noexec[] = {"path", "/etc/passwd", NULL};
    shim_start_spec(run, noexec, true);
    ok(strncmp(run->line, "err 13 ", 7) == 0, "errors: not executable: err 13 ('%s')", run->line);
    run_cleanup(run);

    const char *nopath[] = {"arg", "x", NULL};
    shim_start_spec(run, nopath, true);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "errors: no path: err 22 ('%s')", run->line);
    run_cleanup(run);

    const char *sh[] = {"path", "/bin/true", NULL};
    shim_start_spec(run, sh, false);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "errors: no init_pid: err 22 ('%s')", run->line);
    run_cleanup(run);

    char stale[32];
    snprintf(stale, sizeof(stale), "%llu", init_start + 1);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", init_pid);
    const char *reused[] = {"path", "/bin/true", "init_pid", pid, "init_start", stale, NULL};
    shim_start_spec(run, reused, false);
    ok(strncmp(run->line, "err 3 ", 6) == 0, "errors: reused init pid: err 3 ('%s')", run->line);
    run_cleanup(run);

    const char *badkey[] = {"path", "/bin/true", "colour", "blue", NULL};
    shim_start_spec(run, badkey, true);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "errors: unknown key: err 22 ('%s')", run->line);
    run_cleanup(run);

    const char *nocg[] = {"path", "/bin/true", "cgroup", "/sys/fs/cgroup/cloche-no-such", NULL};
    shim_start_spec(run, nocg, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0, "errors: missing cgroup: err 2 ('%s')", run->line);
    run_cleanup(run);

    /* A newline in a value must not break the one-line report. */
    const char *nl[] = {"path", "/no/such\nthing", NULL};
    shim_start_spec(run, nl, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0 && !strchr(run->line, '\n'),
       "errors: the start line stays one line ('%s')", run->line);
    run_cleanup(run);
}

static void test_signal(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sleep", "arg", "100", NULL};
    if (!ok(shim_start(run, kv), "signal: started sleep"))
        return;
    int fd = shim_connect(run);
    Output o = {0};
    ok(fd >= 0 && send_text(fd, SHIM_FRAME_SIGNAL, "9"), "signal: sent 'S' 9");
    ok(exchange(fd, NULL, 0, false, &o, NULL, TIMEOUT_MS), "signal: got 'X'");
    is_str(o.status, "137", "signal: status 128+9");
    is_str(file_text(run, "exit"), "137", "signal: exit file 137");
    close(fd);
    output_free(&o);
    run_cleanup(run);

    const char *self[] = {"path", "/bin/sh", "arg", "-c", "arg", "kill -TERM $$", NULL};
    if (shim_start(run, self)) {
        run_to_end(run, NULL, &o);
        is_str(o.status, "143", "signal: a process killed by SIGTERM reports 143");
        output_free(&o);
    }
    run_cleanup(run);
}

static void test_ring(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "echo out; echo err >&2", NULL};
    if (!ok(shim_start(run, kv), "ring: started"))
        return;
    ok(wait_for_file(run, "exit", TIMEOUT_MS), "ring: exited with nobody attached");
    ok(file_exists(run, "sock"), "ring: the shim lingers with its status undelivered");
    Output o = {0};
    ok(run_to_end(run, NULL, &o), "ring: a late connection gets 'X'");
    is_str(o.out, "out\n", "ring: late stdout");
    is_str(o.err, "err\n", "ring: late stderr");
    is_str(o.status, "0", "ring: status 0");
    ok(wait_shim_exit(run, 5000), "ring: the shim exits after delivering");
    output_free(&o);
    run_cleanup(run);

    /* A flood larger than the ring with nobody attached: the process never blocks
     * and the newest bytes win. */
    const char *flood[] = {"path",   "/usr/bin/seq", "arg",  "1", "arg",
                           "300000", "ring",         "1000", NULL};
    if (!ok(shim_start(run, flood), "ring: flood started"))
        return;
    ok(wait_for_file(run, "exit", TIMEOUT_MS), "ring: a 2 MB flood with nobody attached ends");
    run_to_end(run, NULL, &o);
    size_t expect_size = 300000 * 8, expect_len = 0;
    char *expect = malloc(expect_size);
    for (int i = 1; i <= 300000; i++)
        expect_len += (size_t)snprintf(expect + expect_len, expect_size - expect_len, "%d\n", i);
    is_int(o.out_len, 1000, "ring: the late reader gets exactly the ring's size");
    ok(o.out_len == 1000 && memcmp(o.out, expect + expect_len - 1000, 1000) == 0,
       "ring: ... and those are the newest bytes");
    is_str(o.status, "0", "ring: flood status 0");
    free(expect);
    output_free(&o);
    run_cleanup(run);
}

static void test_two_connections(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; echo got-$x", NULL};
    if (!ok(shim_start(run, kv), "two: started"))
        return;
    int a = shim_connect(run);
    int b = shim_connect(run);
    /* b's input is read only after b was accepted, and a was accepted before b. */
    Output oa = {0}, ob = {0};
    ok(b >= 0 && send_text(b, SHIM_FRAME_STDIN, "x\n"), "two: input from the second");
    ok(exchange(a, NULL, 0, false, &oa, NULL, TIMEOUT_MS), "two: first gets 'X'");
    ok(exchange(b, NULL, 0, false, &ob, NULL, TIMEOUT_MS), "two: second gets 'X'");
    is_str(oa.out, "got-x\n", "two: first got the output");
    is_str(ob.out, "got-x\n", "two: second got the output");
    close(a);
    close(b);
    output_free(&oa);
    output_free(&ob);
    run_cleanup(run);
}

static void test_tty(void)
{
    Run *run = run_new();
    const char *kv[] = {"path",
                        "/bin/sh",
                        "arg",
                        "-c",
                        "arg",
                        "test -t 0 && test -t 1 && test -t 2 && echo is-tty; echo to-err >&2; "
                        "stty size; read x; stty size",
                        "env",
                        "PATH=/bin:/usr/bin",
                        "tty",
                        "100 30",
                        NULL};
    if (!ok(shim_start(run, kv), "tty: started"))
        return;
    int fd = shim_connect(run);
    Output o = {0};
    ok(exchange(fd, NULL, 0, false, &o, "30 100", TIMEOUT_MS), "tty: stty size says 30 100");
    ok(strstr(o.out, "is-tty") != NULL, "tty: stdin, stdout and stderr are a terminal");
    ok(strstr(o.out, "to-err") != NULL && o.err_len == 0, "tty: stderr merged into stdout");
    ok(send_text(fd, SHIM_FRAME_WINSIZE, "120 40") && send_text(fd, SHIM_FRAME_STDIN, "\n"),
       "tty: sent 'W' and a line");
    ok(exchange(fd, NULL, 0, false, &o, NULL, TIMEOUT_MS), "tty: got 'X'");
    ok(strstr(o.out, "40 120") != NULL, "tty: 'W' changed the size");
    is_str(o.status, "0", "tty: status 0");
    if (!strstr(o.out, "40 120"))
        printf("# output: '%s'\n", o.out);
    close(fd);
    output_free(&o);
    run_cleanup(run);

    /* 'C' on a terminal types its EOF character. */
    const char *cat[] = {"path", "/bin/cat", "tty", "80 24", NULL};
    if (!ok(shim_start(run, cat), "tty: cat started"))
        return;
    ok(run_to_end(run, "line\n", &o), "tty: 'C' ends cat on a terminal");
    ok(strstr(o.out, "line") != NULL, "tty: cat echoed the line");
    output_free(&o);
    run_cleanup(run);
}

static void test_binary(void)
{
    uint8_t all[256 * 4];
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (uint8_t)i;
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/cat", NULL};
    if (!ok(shim_start(run, kv), "binary: cat started"))
        return;
    int fd = shim_connect(run);
    Output o = {0};
    ok(exchange(fd, all, sizeof(all), true, &o, NULL, TIMEOUT_MS), "binary: got 'X'");
    ok(o.out_len == sizeof(all) && memcmp(o.out, all, sizeof(all)) == 0,
       "binary: all 256 byte values intact both ways");
    close(fd);
    output_free(&o);
    run_cleanup(run);

    /* 8 MiB through cat: stdin and stdout both past their caps at once. */
    size_t big_len = 8u << 20;
    uint8_t *big = malloc(big_len);
    uint32_t x = 12345;
    for (size_t i = 0; i < big_len; i++) {
        x = x * 1103515245 + 12345;
        big[i] = (uint8_t)(x >> 16);
    }
    if (ok(shim_start(run, kv), "binary: second cat started")) {
        fd = shim_connect(run);
        ok(exchange(fd, big, big_len, true, &o, NULL, 60000), "binary: 8 MiB: got 'X'");
        ok(o.out_len == big_len && memcmp(o.out, big, big_len) == 0,
           "binary: 8 MiB of stdin came back intact (%zu bytes)", o.out_len);
        close(fd);
        output_free(&o);
    }
    free(big);
    run_cleanup(run);
}

static void test_backpressure(void)
{
    /* A reader that stops reading holds the process up; nothing is lost. */
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; exec head -c 20M /dev/zero",
                        NULL};
    if (!ok(shim_start(run, kv), "backpressure: started"))
        return;
    int fd = shim_connect(run);
    send_text(fd, SHIM_FRAME_STDIN, "\n");
    sleep_ms(500);
    ok(!file_exists(run, "exit"), "backpressure: the process waits for the reader");
    Output o = {0};
    ok(exchange(fd, NULL, 0, false, &o, NULL, TIMEOUT_MS), "backpressure: got 'X'");
    is_int(o.out_len, 20 << 20, "backpressure: every byte arrived");
    is_str(o.status, "0", "backpressure: status 0");
    close(fd);
    output_free(&o);
    run_cleanup(run);

    /* A stale socket (a shim that crashed) is replaced. */
    make_stale_socket = true;
    const char *echo[] = {"path", "/bin/echo", "arg", "fresh", NULL};
    bool started = shim_start(run, echo);
    make_stale_socket = false;
    if (ok(started, "stale socket: started over a stale DIR/sock")) {
        ok(run_to_end(run, NULL, &o), "stale socket: the new socket works");
        is_str(o.out, "fresh\n", "stale socket: output");
        output_free(&o);
    }
    run_cleanup(run);
}

static void test_disconnect(void)
{
    Run *run = run_new();
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; echo got-$x", NULL};
    if (!ok(shim_start(run, kv), "disconnect: started"))
        return;
    int fd = shim_connect(run);
    close(fd);
    sleep_ms(200);
    ok(kill(run->process, 0) == 0 && !file_exists(run, "exit"),
       "disconnect: the process survives the daemon going away");
    Output o = {0};
    ok(run_to_end(run, "y\n", &o), "disconnect: a new connection works");
    is_str(o.out, "got-y\n", "disconnect: and drives the process");
    is_str(o.status, "0", "disconnect: status 0");
    output_free(&o);
    run_cleanup(run);
}

static void test_process_setup(void)
{
    Run *run = run_new();
    Output o = {0};
    const char *ids[] = {"path",  "/bin/sh",
                         "arg",   "-c",
                         "arg",   "id -u; id -g; id -G",
                         "env",   "PATH=/bin:/usr/bin",
                         "uid",   "1234",
                         "gid",   "2345",
                         "group", "3456",
                         "group", "4567",
                         NULL};
    if (shim_start(run, ids) && run_to_end(run, NULL, &o))
        is_str(o.out, "1234\n2345\n2345 3456 4567\n", "setup: uid, gid and groups");
    else
        ok(0, "setup: ids");
    output_free(&o);
    run_cleanup(run);

    const char *limits[] = {
        "path",   "/bin/sh",   "arg",    "-c",        "arg", "ulimit -n; ulimit -c",
        "rlimit", "7 100 100", "rlimit", "4 inf inf", NULL};
    if (shim_start(run, limits) && run_to_end(run, NULL, &o))
        is_str(o.out, "100\nunlimited\n", "setup: rlimits");
    else
        ok(0, "setup: rlimits");
    output_free(&o);
    run_cleanup(run);

    const char *dir[] = {"path", "/bin/pwd", "dir", "/tmp", NULL};
    if (shim_start(run, dir) && run_to_end(run, NULL, &o))
        is_str(o.out, "/tmp\n", "setup: working directory");
    else
        ok(0, "setup: dir");
    output_free(&o);
    run_cleanup(run);

    /* A missing working directory is created (mkdir -p, mode 0755), as guardian. */
    char base[] = "/tmp/cloche-test-shim-dir-XXXXXX", missing[64], expect[80];
    if (!mkdtemp(base))
        abort();
    snprintf(missing, sizeof(missing), "%s/a/b", base);
    snprintf(expect, sizeof(expect), "%s\n", missing);
    const char *nodir[] = {"path", "/bin/pwd", "dir", missing, NULL};
    struct stat dst = {0};
    if (shim_start(run, nodir) && run_to_end(run, NULL, &o))
        is_str(o.out, expect, "setup: a missing directory is created");
    else
        ok(0, "setup: missing dir");
    ok(stat(missing, &dst) == 0 && S_ISDIR(dst.st_mode) && (dst.st_mode & 07777) == 0755,
       "setup: created with mode 0755");
    output_free(&o);
    run_cleanup(run);
    snprintf(missing, sizeof(missing), "%s/a/b", base);
    rmdir(missing);
    snprintf(missing, sizeof(missing), "%s/a", base);
    rmdir(missing);
    rmdir(base);

    /* Searched in the spec's PATH; argv[0] is the name as given; percent-encoding. */
    const char *env[] = {"path", "sh",
                         "arg",  "-c",
                         "arg",  "printf '%s|%s|%s' \"$FOO\" \"$0\" $#",
                         "arg",  "a b",
                         "env",  "PATH=/cloche-none:/bin:/usr/bin",
                         "env",  "FOO=x%y\nz\t",
                         NULL};
    if (shim_start(run, env) && run_to_end(run, NULL, &o))
        is_str(o.out, "x%y\nz\t|a b|0", "setup: PATH search, env and percent-encoding");
    else
        ok(0, "setup: env");
    output_free(&o);
    run_cleanup(run);

    /* Nothing of the shim's (socket, pidfd, directory, pipes) leaks into the process. */
    const char *fds[] = {"path", "/bin/sh", "arg", "-c", "arg", "ls /proc/$$/fd", NULL};
    if (shim_start(run, fds) && run_to_end(run, NULL, &o))
        is_str(o.out, "0\n1\n2\n", "setup: the process has only stdin, stdout and stderr");
    else
        ok(0, "setup: fds");
    output_free(&o);
    run_cleanup(run);

    const char *umask_kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "umask", NULL};
    if (shim_start(run, umask_kv) && run_to_end(run, NULL, &o))
        is_str(o.out, "0022\n", "setup: umask 022");
    else
        ok(0, "setup: umask");
    output_free(&o);
    run_cleanup(run);
}

/* The `confine` and `seccomp` records: the process gets the bounding set, the
 * capabilities (none for a non-root user) and the filter the daemon compiled;
 * a bad record or a missing filter file stops the start. */
static void test_confine(void)
{
    SecurityProfile profile = {0};
    char dir[] = "/tmp/cloche-test-shim-seccomp.XXXXXX";
    if (security_profile_build(&profile) < 0 || !mkdtemp(dir)) {
        ok(0, "confine: compile the filter");
        return;
    }
    int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/seccomp.bpf", dir);
    ok(security_profile_save(&profile, dirfd, "seccomp.bpf") == 0, "confine: filter saved");

    Run *run = run_new();
    Output o = {0};
    const char *script = "grep -E '^(CapBnd|CapEff|Seccomp):' /proc/self/status | tr -d '\\t'; "
                         "unshare -U true 2>/dev/null && echo unshared || echo refused";
    const char *root[] = {
        "path",    "/bin/sh",    "arg",     "-c", "arg", script, "env", "PATH=/bin:/usr/bin",
        "confine", "a80425fb 0", "seccomp", path, NULL};
    if (shim_start(run, root) && run_to_end(run, NULL, &o))
        is_str(o.out, "CapEff:00000000a80425fb\nCapBnd:00000000a80425fb\nSeccomp:2\nrefused\n",
               "confine: root gets the 14 and the filter");
    else
        ok(0, "confine: root");
    output_free(&o);
    run_cleanup(run);

    const char *user[] = {
        "path", "/bin/sh", "arg", "-c",   "arg",     script,       "env",     "PATH=/bin:/usr/bin",
        "uid",  "1234",    "gid", "1234", "confine", "a80425fb 1", "seccomp", path,
        NULL};
    if (shim_start(run, user) && run_to_end(run, NULL, &o))
        is_str(o.out, "CapEff:0000000000000000\nCapBnd:00000000a80425fb\nSeccomp:2\nrefused\n",
               "confine: another user gets no capability");
    else
        ok(0, "confine: user");
    output_free(&o);
    run_cleanup(run);

    /* Without the records: what the ids give (the allowed case of the above). */
    const char *plain[] = {
        "path", "/bin/sh", "arg", "-c", "arg", script, "env", "PATH=/bin:/usr/bin", NULL};
    if (shim_start(run, plain) && run_to_end(run, NULL, &o))
        ok(strstr(o.out, "Seccomp:0\n") && !strstr(o.out, "CapBnd:00000000a80425fb"),
           "confine: without records, no filter and the full bounding set ('%s')", o.out);
    else
        ok(0, "confine: plain");
    output_free(&o);
    run_cleanup(run);

    const char *bad[] = {"path", "/bin/true", "confine", "zz", NULL};
    shim_start_spec(run, bad, true);
    ok(strncmp(run->line, "err 22 ", 7) == 0, "confine: bad record: err 22 ('%s')", run->line);
    run_cleanup(run);
    const char *nofile[] = {"path", "/bin/true", "seccomp", "/nonexistent/seccomp.bpf", NULL};
    shim_start_spec(run, nofile, true);
    ok(strncmp(run->line, "err 2 ", 6) == 0, "confine: missing filter: err 2 ('%s')", run->line);
    run_cleanup(run);

    unlinkat(dirfd, "seccomp.bpf", 0);
    close(dirfd);
    rmdir(dir);
    security_profile_clear(&profile);
}

/* Groups of our own in two hierarchies (v1 pids, and the v2 one), if present. */
static void test_cgroups(void)
{
    char v1[128], v2[128];
    snprintf(v1, sizeof(v1), "/sys/fs/cgroup/pids/cloche-test-shim-%d", getpid());
    snprintf(v2, sizeof(v2), "/sys/fs/cgroup/unified/cloche-test-shim-%d", getpid());
    if (mkdir(v1, 0755) < 0 || mkdir(v2, 0755) < 0) {
        ok(1, "# SKIP no v1 pids and unified hierarchies here (%s)", strerror(errno));
        rmdir(v1);
        return;
    }
    Run *run = run_new();
    Output o = {0};
    const char *kv[] = {"path",   "/bin/cat", "arg", "/proc/self/cgroup", "cgroup", v1,
                        "cgroup", v2,         NULL};
    if (shim_start(run, kv) && run_to_end(run, NULL, &o)) {
        char want[128];
        snprintf(want, sizeof(want), ":pids:/cloche-test-shim-%d\n", getpid());
        ok(strstr(o.out, want) != NULL, "cgroups: the process is in the v1 group");
        snprintf(want, sizeof(want), "0::/cloche-test-shim-%d\n", getpid());
        ok(strstr(o.out, want) != NULL, "cgroups: the process is in the v2 group");
    } else {
        ok(0, "cgroups: run");
    }
    output_free(&o);
    run_cleanup(run);
    ok(rmdir(v1) == 0 && rmdir(v2) == 0, "cgroups: the groups are empty again");
}

static void test_lifetimes(void)
{
    Run *run = run_new();
    const char *quick[] = {"path", "/bin/true", "linger", "0", NULL};
    if (ok(shim_start(run, quick), "linger 0: started")) {
        ok(wait_shim_exit(run, TIMEOUT_MS), "linger 0: the shim exits with nobody attached");
        is_str(file_text(run, "exit"), "0", "linger 0: the exit file is written");
        ok(!file_exists(run, "sock"), "linger 0: the socket is removed");
    }
    run_cleanup(run);

    const char *linger[] = {"path", "/bin/true", "linger", "1", NULL};
    if (ok(shim_start(run, linger), "linger 1: started")) {
        ok(wait_for_file(run, "exit", TIMEOUT_MS), "linger 1: exited");
        ok(!wait_shim_exit(run, 300), "linger 1: the shim waits for a reader");
        ok(wait_shim_exit(run, 5000), "linger 1: ... then gives up");
        ok(!file_exists(run, "sock"), "linger 1: the socket is removed");
    }
    run_cleanup(run);

    /* A background child holding stdout open must not hold up the exit. */
    const char *bg[] = {"path", "/bin/sh", "arg", "-c", "arg", "sleep 100 & echo $!", NULL};
    if (ok(shim_start(run, bg), "background: started")) {
        Output o = {0};
        uint64_t t0 = now_ms();
        ok(run_to_end(run, NULL, &o), "background: got 'X'");
        ok(now_ms() - t0 < 5000, "background: promptly (%llu ms)",
           (unsigned long long)(now_ms() - t0));
        pid_t sleeper = atoi(o.out);
        if (sleeper > 0 && n_strays < sizeof(strays) / sizeof(strays[0]))
            strays[n_strays++] = sleeper;
        output_free(&o);
    }
    run_cleanup(run);
}

static void test_throughput(void)
{
    Run *run = run_new();
    /* The flood starts once we are attached (with nobody attached, the ring would
     * keep only its newest bytes). */
    const char *kv[] = {"path", "/bin/sh", "arg", "-c", "arg", "read x; exec head -c 1G /dev/zero",
                        NULL};
    if (!ok(shim_start(run, kv), "throughput: started"))
        return;
    int fd = shim_connect(run);
    send_text(fd, SHIM_FRAME_STDIN, "\n");
    static uint8_t buf[1 << 20];
    size_t buf_len = 0;
    uint64_t bytes = 0;
    bool exited = false;
    uint64_t t0 = now_ms();
    while (!exited) {
        ssize_t n = read(fd, buf + buf_len, sizeof(buf) - buf_len);
        if (n <= 0)
            break;
        buf_len += (size_t)n;
        size_t pos = 0;
        while (buf_len - pos >= SHIM_FRAME_HEADER) {
            uint32_t len = shim_frame_length(buf + pos);
            if (buf_len - pos < SHIM_FRAME_HEADER + len)
                break;
            if (buf[pos] == SHIM_FRAME_STDOUT)
                bytes += len;
            else if (buf[pos] == SHIM_FRAME_EXIT)
                exited = true;
            pos += SHIM_FRAME_HEADER + len;
        }
        memmove(buf, buf + pos, buf_len - pos);
        buf_len -= pos;
    }
    uint64_t ms = now_ms() - t0;
    close(fd);
    is_u64(bytes, UINT64_C(1) << 30, "throughput: 1 GiB arrived");
    ok(exited, "throughput: then 'X'");
    printf("# throughput: 1 GiB in %llu ms = %.0f MB/s\n", (unsigned long long)ms,
           ms ? (double)(UINT64_C(1) << 30) / 1e6 / ((double)ms / 1000) : 0.0);
    run_cleanup(run);
}

int main(void)
{
    shim_path = getenv("CLOCHE_SHIM");
    if (geteuid() != 0) {
        ok(1, "# SKIP cloche-shim needs root");
        return tap_done();
    }
    if (!shim_path || access(shim_path, X_OK) < 0) {
        ok(1, "# SKIP CLOCHE_SHIM does not name the built cloche-shim");
        return tap_done();
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

    test_basic();
    test_start_errors();
    test_confine();
    test_signal();
    test_ring();
    test_two_connections();
    test_tty();
    test_binary();
    test_backpressure();
    test_disconnect();
    test_process_setup();
    test_cgroups();
    test_lifetimes();
    test_throughput();

    for (size_t i = 0; i < n_runs; i++)
        run_cleanup(&runs[i]);
    for (size_t i = 0; i < n_strays; i++)
        kill(strays[i], SIGKILL);
    kill(init_pid, SIGKILL);
    /* Everything that ended up ours (the init, strays handed to this subreaper). */
    uint64_t deadline = now_ms() + 5000;
    while (waitpid(-1, NULL, WNOHANG) >= 0 && now_ms() < deadline)
        sleep_ms(5);
    return tap_done();
}
