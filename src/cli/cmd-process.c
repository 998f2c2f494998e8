/* run, exec, attach and kill: Garden's process protocol as the Go client speaks
 * it. A control connection (Run: POST .../processes, 201; Attach: GET
 * .../processes/P, 200) carries JSON lines both ways; stdout and stderr each
 * come on a connection of their own (GET .../attaches/S/stdout|stderr) as raw
 * bytes. One poll loop relays all of them, stdin, and the signals the client
 * gets. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cloche/json.h"
#include "cloche/clock.h"

#define CONTROL_LINE_MAX (4u << 20)
#define STDIN_CHUNK 32768
#define RUN_ARGS_MAX 4096
#define KILL_EXITED_WAIT_MS 100
#define STREAM_DRAIN_MS 5000 /* after the exit status, wait this long for the streams' EOF */

typedef struct Session {
    const char *handle;
    char *process_id;
    char *stream_id;
    HttpConn ctl, out, err;
    bool out_done, err_done, ctl_done;
    bool forward_stdin, stdin_done;
    bool close_stdin; /* send stdin EOF at once when not forwarding it */
    bool tty;
    bool have_status;
    int status;
    int write_error; /* the first failed write of the output, other than a reader gone */
    char *line;
    size_t line_len;
    unsigned char utf8_carry[4];
    size_t carry_len;
} Session;

static void session_done(Session *s)
{
    http_conn_done(&s->ctl);
    http_conn_done(&s->out);
    http_conn_done(&s->err);
    free(s->process_id);
    free(s->stream_id);
    free(s->line);
}

static struct termios saved_termios;
static bool termios_saved;

void restore_terminal(void)
{
    if (termios_saved) {
        tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
        termios_saved = false;
    }
}

static int raw_terminal(void)
{
    struct termios t;
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &t) < 0)
        return 0;
    saved_termios = t;
    termios_saved = true;
    atexit(restore_terminal);
    cfmakeraw(&t);
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) < 0)
        return cli_error(-errno, "Cannot put the terminal in raw mode: %m");
    return 0;
}

static bool window_size(unsigned *cols, unsigned *rows)
{
    struct winsize ws;
    if ((ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) &&
        ws.ws_col > 0 && ws.ws_row > 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
        return true;
    }
    return false;
}

static json_object *window_size_obj(unsigned cols, unsigned rows)
{
    json_object *tty = json_object_new_object(), *ws = json_object_new_object();
    json_object_object_add(ws, "columns", json_object_new_int((int)cols));
    json_object_object_add(ws, "rows", json_object_new_int((int)rows));
    json_object_object_add(tty, "window_size", ws);
    return tty;
}

/* One message on the control connection: {"process_id":P, key: value[, key2: value2]}. */
static int send_control2(Session *s, const char *key, json_object *value, const char *key2,
                         json_object *value2)
{
    _cleanup_json_ json_object *m = json_object_new_object();
    json_object_object_add(m, "process_id", json_object_new_string(s->process_id));
    if (key)
        json_object_object_add(m, key, value);
    if (key2)
        json_object_object_add(m, key2, value2);
    size_t len;
    _cleanup_free_ char *text = json_serialize(m, &len);
    if (!text)
        return cli_error(-ENOMEM, "Out of memory");
    /* Not reported here: a daemon that closed the connection because the
     * process ended has sent its status first, and the relay reads it. */
    return http_write_all(s->ctl.fd, text, len);
}

static int send_control(Session *s, const char *key, json_object *value)
{
    return send_control2(s, key, value, NULL, NULL);
}

static int send_signal(Session *s, int sig)
{
    if (sig == SIGTERM)
        return send_control(s, "signal", json_object_new_int(0));
    if (sig == SIGKILL)
        return send_control(s, "signal", json_object_new_int(1));
    return send_control(s, "cloche_signal", json_object_new_int(sig));
}

/* Length of the valid UTF-8 sequence at p (1-4), 0 if invalid, -1 if p holds
 * only the beginning of one. */
static int utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    int len;
    uint32_t min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    uint32_t cp = c & (0x7f >> len);
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return -1;
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* stdin travels as JSON strings, so it must be UTF-8: invalid bytes become
 * U+FFFD, as the Go client's string conversion does; a sequence cut by the
 * read is completed by the next one. */
static int send_stdin(Session *s, const unsigned char *data, size_t n, bool eof)
{
    _cleanup_free_ unsigned char *buf = malloc(s->carry_len + n + 1);
    _cleanup_free_ char *out = malloc((s->carry_len + n) * 3 + 1);
    if (!buf || !out)
        return cli_error(-ENOMEM, "Out of memory");
    memcpy(buf, s->utf8_carry, s->carry_len);
    if (n)
        memcpy(buf + s->carry_len, data, n);
    size_t total = s->carry_len + n, i = 0, o = 0;
    s->carry_len = 0;
    while (i < total) {
        int k = utf8_seq(buf + i, total - i);
        if (k < 0 && !eof) {
            memcpy(s->utf8_carry, buf + i, total - i);
            s->carry_len = total - i;
            break;
        }
        if (k <= 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, buf + i, (size_t)k);
        o += (size_t)k;
        i += (size_t)k;
    }
    if (o == 0)
        return 0;
    return send_control2(s, "source", json_object_new_int(0), "data",
                         json_object_new_string_len(out, (int)o));
}

/* Handle the JSON lines that arrived on the control connection. */
static int control_lines(Session *s)
{
    char *nl;
    while (!s->ctl_done && (nl = memchr(s->line, '\n', s->line_len))) {
        size_t len = (size_t)(nl - s->line);
        _cleanup_json_ json_object *m = NULL;
        ApiError e = {0};
        if (len > 0 && json_parse_strict(s->line, len, &m, &e) < 0)
            return cli_error(-EBADMSG, "The daemon sent a control line that is not JSON: %s",
                             e.message);
        memmove(s->line, nl + 1, s->line_len - len - 1);
        s->line_len -= len + 1;
        if (!m)
            continue;
        json_object *v;
        if ((v = json_member(m, "error"))) {
            s->ctl_done = true;
            return cli_error(-EIO, "%s", json_object_get_string(v));
        }
        if ((v = json_member(m, "exit_status"))) {
            s->status = json_object_get_int(v);
            s->have_status = true;
            s->ctl_done = true;
        }
        /* Any other line is ignored, as the Go client does. */
    }
    return 0;
}

static int read_control(Session *s)
{
    char buf[65536];
    ssize_t n = http_read_raw(&s->ctl, buf, sizeof(buf));
    if (n < 0) {
        errno = (int)-n;
        return cli_error((int)n, "Lost the connection to the daemon: %m");
    }
    if (n == 0) {
        s->ctl_done = true;
        if (!s->have_status)
            return cli_error(-ECONNRESET,
                             "The daemon closed the connection before the process exited");
        return 0;
    }
    if (s->line_len + (size_t)n > CONTROL_LINE_MAX)
        return cli_error(-EBADMSG, "A control line from the daemon is over 4 MiB");
    char *nb = realloc(s->line, s->line_len + (size_t)n + 1);
    if (!nb)
        return cli_error(-ENOMEM, "Out of memory");
    s->line = nb;
    memcpy(s->line + s->line_len, buf, (size_t)n);
    s->line_len += (size_t)n;
    return control_lines(s);
}

/* Relay one read of a stream to fd; *done at its EOF. A write that fails is
 * not retried: the stream is drained meanwhile, so the process is never held
 * up. A reader gone (EPIPE) is as a pipe reader would have it; any other
 * failure (a full disk) is kept in *write_error, and the command fails. */
static int relay_stream(HttpConn *c, int fd, bool *done, int *write_error)
{
    char buf[65536];
    ssize_t n = http_read_raw(c, buf, sizeof(buf));
    if (n <= 0) {
        *done = true;
        return 0;
    }
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            if (errno != EPIPE && !*write_error)
                *write_error = -errno;
            return 0;
        }
        off += w;
    }
    return 0;
}

static int open_stream(Session *s, HttpConn *c, const char *which)
{
    _cleanup_free_ char *target = NULL;
    int r;
    *c = (HttpConn){.fd = -EBADF};
    if (asprintf(&target, "/containers/%s/processes/%s/attaches/%s/%s", s->handle, s->process_id,
                 s->stream_id, which) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = http_connect(&c->fd)) < 0 ||
        (r = http_send_head(c->fd, "GET", target, "Content-Type: application/json\r\n", NULL, 0,
                            false)) < 0 ||
        (r = http_read_head(c)) < 0)
        return r;
    if (c->status < 200 || c->status > 299)
        return http_report_error(c);
    return 0;
}

/* After the control reply's head: the first line names the process and stream. */
static int read_first_line(Session *s)
{
    while (!memchr(s->line ? s->line : "", '\n', s->line_len)) {
        char buf[4096];
        ssize_t n = http_read_raw(&s->ctl, buf, sizeof(buf));
        if (n <= 0)
            return cli_error(-ECONNRESET, "The daemon closed the connection before naming the "
                                          "process");
        if (s->line_len + (size_t)n > CONTROL_LINE_MAX)
            return cli_error(-EBADMSG, "The daemon's first control line is over 4 MiB");
        char *nb = realloc(s->line, s->line_len + (size_t)n + 1);
        if (!nb)
            return cli_error(-ENOMEM, "Out of memory");
        s->line = nb;
        memcpy(s->line + s->line_len, buf, (size_t)n);
        s->line_len += (size_t)n;
    }
    char *nl = memchr(s->line, '\n', s->line_len);
    size_t len = (size_t)(nl - s->line);
    _cleanup_json_ json_object *m = NULL;
    ApiError e = {0};
    if (json_parse_strict(s->line, len, &m, &e) < 0 || !m)
        return cli_error(-EBADMSG, "The daemon's first control line is not JSON: %s", e.message);
    json_object *v;
    if ((v = json_member(m, "error")))
        return cli_error(-EIO, "%s", json_object_get_string(v));
    const char *pid = jget_str(m, "process_id"), *sid = jget_str(m, "stream_id");
    if (!*pid)
        return cli_error(-EBADMSG, "The daemon's first control line names no process");
    if (!(s->process_id = strdup(pid)) || !(s->stream_id = strdup(sid)))
        return cli_error(-ENOMEM, "Out of memory");
    memmove(s->line, nl + 1, s->line_len - len - 1);
    s->line_len -= len + 1;
    /* A finished process attached to may have sent its status already. */
    if ((v = json_member(m, "exit_status"))) {
        s->status = json_object_get_int(v);
        s->have_status = s->ctl_done = true;
    }
    return control_lines(s);
}

/* The relay loop: returns 0 once the exit status is known (in s->status). */
static int relay(Session *s)
{
    sigset_t mask;
    sigemptyset(&mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
        sigaddset(&mask, sigs[i]);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return cli_error(-errno, "sigprocmask: %m");
    _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0)
        return cli_error(-errno, "signalfd: %m");
    int r;
    int64_t drain_deadline = 0;

    /* A resize between the Run request and the signalfd would be lost: send
     * the size once now that SIGWINCH is caught. */
    unsigned cols0, rows0;
    if (s->tty && !s->ctl_done && window_size(&cols0, &rows0))
        (void)send_control(s, "tty", window_size_obj(cols0, rows0));
    if (!s->forward_stdin) {
        s->stdin_done = true;
        /* run without -i: the process's stdin is empty (attach leaves it alone) */
        if (s->close_stdin)
            (void)send_control(s, "source", json_object_new_int(0));
    }
    for (;;) {
        /* Bytes that came with a reply's head are not seen by poll. */
        if (!s->ctl_done && http_buffered(&s->ctl) && (r = read_control(s)) < 0)
            return r;
        if (!s->out_done && http_buffered(&s->out))
            relay_stream(&s->out, STDOUT_FILENO, &s->out_done, &s->write_error);
        if (!s->err_done && http_buffered(&s->err))
            relay_stream(&s->err, STDERR_FILENO, &s->err_done, &s->write_error);

        if (s->have_status && s->out_done && s->err_done)
            return 0;
        if (s->ctl_done && !s->have_status)
            return -ECONNRESET;
        if (s->have_status && !drain_deadline)
            drain_deadline = clock_monotonic_ms() + STREAM_DRAIN_MS;

        struct pollfd p[5];
        int n = 0, i_ctl = -1, i_out = -1, i_err = -1, i_in = -1, i_sig;
        if (!s->ctl_done)
            p[i_ctl = n++] = (struct pollfd){.fd = s->ctl.fd, .events = POLLIN};
        if (!s->out_done)
            p[i_out = n++] = (struct pollfd){.fd = s->out.fd, .events = POLLIN};
        if (!s->err_done)
            p[i_err = n++] = (struct pollfd){.fd = s->err.fd, .events = POLLIN};
        if (!s->stdin_done && !s->have_status)
            p[i_in = n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        p[i_sig = n++] = (struct pollfd){.fd = sfd, .events = POLLIN};

        int timeout = -1;
        if (drain_deadline) {
            int64_t left = drain_deadline - clock_monotonic_ms();
            if (left <= 0)
                return 0; /* the status is in; a stream that never ends is not waited for */
            timeout = (int)left;
        }
        if (poll(p, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            return cli_error(-errno, "poll: %m");
        }
        if (i_out >= 0 && p[i_out].revents)
            relay_stream(&s->out, STDOUT_FILENO, &s->out_done, &s->write_error);
        if (i_err >= 0 && p[i_err].revents)
            relay_stream(&s->err, STDERR_FILENO, &s->err_done, &s->write_error);
        if (i_ctl >= 0 && p[i_ctl].revents && (r = read_control(s)) < 0)
            return r;
        if (i_in >= 0 && p[i_in].revents) {
            unsigned char buf[STDIN_CHUNK];
            ssize_t k = read(STDIN_FILENO, buf, sizeof(buf));
            if (k < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (k <= 0) {
                s->stdin_done = true;
                if (s->carry_len)
                    (void)send_stdin(s, NULL, 0, true);
                (void)send_control(s, "source", json_object_new_int(0));
            } else if (send_stdin(s, buf, (size_t)k, false) < 0) {
                s->stdin_done = true; /* the daemon stopped reading: the status follows */
            }
        }
        if (p[i_sig].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si) || s->ctl_done)
                continue;
            unsigned cols, rows;
            if (si.ssi_signo == SIGWINCH) {
                if (s->tty && window_size(&cols, &rows))
                    (void)send_control(s, "tty", window_size_obj(cols, rows));
            } else {
                (void)send_signal(s, (int)si.ssi_signo);
            }
        }
    }
}

static int session_attach_streams(Session *s)
{
    int r;
    if ((r = open_stream(s, &s->out, "stdout")) < 0 || (r = open_stream(s, &s->err, "stderr")) < 0)
        return r;
    if (s->tty && (r = raw_terminal()) < 0)
        return r;
    r = relay(s);
    restore_terminal();
    if (r < 0)
        return r;
    if (s->write_error) {
        errno = -s->write_error;
        return cli_error(s->write_error, "Cannot write the process's output (it exited %d): %m",
                         s->status);
    }
    cli_exit_code = s->status & 0xff;
    return 0;
}

static int open_control(Session *s, const char *method, const char *target, json_object *body)
{
    _cleanup_free_ char *payload = NULL;
    size_t len = 0;
    int r;
    s->ctl = (HttpConn){.fd = -EBADF};
    s->out = (HttpConn){.fd = -EBADF};
    s->err = (HttpConn){.fd = -EBADF};
    if (body && !(payload = json_serialize(body, &len)))
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = http_connect(&s->ctl.fd)) < 0 ||
        (r = http_send_head(s->ctl.fd, method, target,
                            body ? "Content-Type: application/json\r\n" : NULL, payload, len,
                            false)) < 0 ||
        (r = http_read_head(&s->ctl)) < 0)
        return r;
    if (s->ctl.status < 200 || s->ctl.status > 299)
        return http_report_error(&s->ctl);
    return read_first_line(s);
}

/* Split a newline-separated image property (cloche.image.cmd) into a. */
static void add_lines(json_object *a, const char *text)
{
    while (*text) {
        size_t n = strcspn(text, "\n");
        json_object_array_add(a, json_object_new_string_len(text, (int)n));
        text += n + (text[n] ? 1 : 0);
    }
}

/* No COMMAND: the image's Entrypoint and Cmd, as its User in its WorkingDir
 * unless -u and -w say otherwise. */
static int image_command(const char *handle, json_object *spec)
{
    _cleanup_free_ char *target = NULL;
    _cleanup_json_ json_object *props = NULL, *argv = json_object_new_array();
    if (asprintf(&target, "/containers/%s/properties", handle) < 0 || !argv)
        return cli_error(-ENOMEM, "Out of memory");
    int r = api_call("GET", target, NULL, &props);
    if (r < 0)
        return r;
    add_lines(argv, jget_str(props, "cloche.image.entrypoint"));
    add_lines(argv, jget_str(props, "cloche.image.cmd"));
    size_t n = json_object_array_length(argv);
    if (n == 0)
        return cli_usage("run",
                         "No COMMAND given, and the image of '%s' has no Cmd or "
                         "Entrypoint",
                         handle);
    json_object_object_add(spec, "path", json_object_get(json_object_array_get_idx(argv, 0)));
    json_object *args = json_object_new_array();
    for (size_t i = 1; i < n; i++)
        json_object_array_add(args, json_object_get(json_object_array_get_idx(argv, i)));
    json_object_object_add(spec, "args", args);
    const char *user = jget_str(props, "cloche.image.user"),
               *dir = jget_str(props, "cloche.image.working-dir");
    if (*user && !json_member(spec, "user"))
        json_object_object_add(spec, "user", json_object_new_string(user));
    if (*dir && !json_member(spec, "dir"))
        json_object_object_add(spec, "dir", json_object_new_string(dir));
    return 0;
}

/* One of run's options into the session or the process spec (env: its list). */
static int run_opt(const char *cmd, int opt, const char *arg, Session *s, bool *detach,
                   json_object *spec, json_object *env)
{
    switch (opt) {
    case 'i':
        s->forward_stdin = true;
        return 0;
    case 't':
        s->tty = s->forward_stdin = true;
        return 0;
    case 'd':
        *detach = true;
        return 0;
    case 'u':
        json_object_object_add(spec, "user", json_object_new_string(arg));
        return 0;
    case 'e':
        if (!strchr(arg, '=') || arg[0] == '=')
            return cli_usage(cmd, "Invalid --env '%s': expected KEY=VALUE", arg);
        json_object_array_add(env, json_object_new_string(arg));
        return 0;
    case 'w':
        json_object_object_add(spec, "dir", json_object_new_string(arg));
        return 0;
    case 1000: {
        int r = check_name("process id", arg);
        if (r < 0)
            return r;
        json_object_object_add(spec, "id", json_object_new_string(arg));
        return 0;
    }
    default:
        return cli_usage(cmd, "Unknown option");
    }
}

/* HANDLE [COMMAND [ARG...]]: the command, or the image's when none is given. */
static int run_command(Session *s, int argc, char **argv, json_object *spec)
{
    if (argc - optind < 1)
        return cli_usage(argv[0], "Expected: %s [OPTIONS] HANDLE [COMMAND [ARG...]]", argv[0]);
    if (argc - optind - 2 > RUN_ARGS_MAX)
        return cli_usage(argv[0], "At most %d arguments", RUN_ARGS_MAX);
    s->handle = argv[optind];
    int r = check_name("handle", s->handle);
    if (r < 0)
        return r;
    if (argc - optind == 1)
        return image_command(s->handle, spec);
    json_object_object_add(spec, "path", json_object_new_string(argv[optind + 1]));
    json_object *args = json_object_new_array();
    for (int i = optind + 2; i < argc; i++)
        json_object_array_add(args, json_object_new_string(argv[i]));
    json_object_object_add(spec, "args", args);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"interactive", no_argument, NULL, 'i'},
        {"tty", no_argument, NULL, 't'},
        {"detach", no_argument, NULL, 'd'},
        {"user", required_argument, NULL, 'u'},
        {"env", required_argument, NULL, 'e'},
        {"workdir", required_argument, NULL, 'w'},
        {"id", required_argument, NULL, 1000},
        CLI_COMMON_OPTS,
        {},
    };
    _cleanup_(session_done) Session s = {0};
    _cleanup_json_ json_object *spec = json_object_new_object();
    json_object *env = json_object_new_array();
    json_object_object_add(spec, "env", env);
    bool detach = false;
    int opt, r;

    s.ctl.fd = s.out.fd = s.err.fd = -EBADF;
    while ((opt = getopt_long(argc, argv, "+itdu:e:w:Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, argv[0])) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if ((r = run_opt(argv[0], opt, optarg, &s, &detach, spec, env)) < 0)
            return r;
    }
    s.close_stdin = true;
    if ((r = run_command(&s, argc, argv, spec)) < 0)
        return r;
    if (s.tty) {
        unsigned cols = 80, rows = 24;
        window_size(&cols, &rows);
        json_object_object_add(spec, "tty", window_size_obj(cols, rows));
    }

    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "/containers/%s/processes", s.handle) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = open_control(&s, "POST", target, spec)) < 0)
        return r;
    if (detach) {
        /* Closing the control connection detaches: the process runs on. */
        if (cli_json)
            printf("{\"process_id\":\"%s\"}\n", s.process_id);
        else
            puts(s.process_id);
        return 0;
    }
    return session_attach_streams(&s);
}

/* Attaches the control connection to process ID of container HANDLE. */
static int open_existing(Session *s, const char *handle, const char *id)
{
    int r;
    if ((r = check_name("handle", handle)) < 0 || (r = check_name("process id", id)) < 0)
        return r;
    s->handle = handle;
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "/containers/%s/processes/%s", handle, id) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    return open_control(s, "GET", target, NULL);
}

int cmd_attach(int argc, char **argv)
{
    static const struct option opts[] = {
        {"interactive", no_argument, NULL, 'i'},
        {"tty", no_argument, NULL, 't'},
        CLI_COMMON_OPTS,
        {},
    };
    _cleanup_(session_done) Session s = {0};
    int opt, r;
    s.ctl.fd = s.out.fd = s.err.fd = -EBADF;
    while ((opt = getopt_long(argc, argv, "itJh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "attach")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt == 'i')
            s.forward_stdin = true;
        else if (opt == 't')
            s.tty = s.forward_stdin = true;
        else
            return cli_usage("attach", "Unknown option");
    }
    if (argc - optind != 2)
        return cli_usage("attach", "Expected: attach HANDLE PROCESS-ID");
    if ((r = open_existing(&s, argv[optind], argv[optind + 1])) < 0)
        return r;
    if (s.have_status) { /* it had already finished */
        cli_exit_code = s.status & 0xff;
        return 0;
    }
    return session_attach_streams(&s);
}

int cmd_kill(int argc, char **argv)
{
    static const struct option opts[] = {
        {"signal", required_argument, NULL, 's'},
        CLI_COMMON_OPTS,
        {},
    };
    _cleanup_(session_done) Session s = {0};
    int opt, r, sig = SIGTERM;
    s.ctl.fd = s.out.fd = s.err.fd = -EBADF;
    while ((opt = getopt_long(argc, argv, "s:Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "kill")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt != 's')
            return cli_usage("kill", "Unknown option");
        if (parse_signal(optarg, &sig) < 0)
            return cli_usage("kill",
                             "Invalid signal '%s': expected a name such as TERM or a "
                             "number from 1 to 64",
                             optarg);
    }
    if (argc - optind != 2)
        return cli_usage("kill", "Expected: kill [-s SIGNAL] HANDLE PROCESS-ID");
    if ((r = open_existing(&s, argv[optind], argv[optind + 1])) < 0)
        return r;
    /* A finished process answers with its status at once. */
    struct pollfd p = {.fd = s.ctl.fd, .events = POLLIN};
    if (!s.have_status && poll(&p, 1, KILL_EXITED_WAIT_MS) > 0 && (r = read_control(&s)) < 0)
        return r;
    if (s.have_status)
        return cli_error(-ESRCH, "Process %s has already exited (status %d)", s.process_id,
                         s.status);
    if ((r = send_signal(&s, sig)) < 0) {
        errno = -r;
        return cli_error(r, "Cannot send the signal to the daemon: %m");
    }
    /* Closing detaches; the signal before it has been read by then. */
    shutdown(s.ctl.fd, SHUT_WR);
    if (cli_json)
        printf("{\"process_id\":\"%s\",\"signal\":%d}\n", s.process_id, sig);
    return 0;
}
