/* The relay of an attached process (proc/relay.c) against a stand-in shim on a
 * socket pair: output buffered until its stream connects, control lines to
 * frames in order, signals on the process's ctl socket, the exit report, a
 * detach that leaves the process alone; and proc_output_follow (curl's
 * one-request Run): output pieces in order, the exit status, a hang-up. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/api/attach.h"
#include "cloche/fileio.h"
#include "cloche/proc-relay.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"
#include "tap.h"

static void test_report_exit(int ctl, const char *process_id, int exit_status)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "%s exited %d\n", process_id, exit_status);
    ssize_t w = write(ctl, line, (size_t)n);
    (void)w;
}

static const ProcRelayOps ops = {.decode_control = api_control_decode,
                                 .report_exit = test_report_exit};

typedef struct Run {
    ProcRelay *relay;
    int ctl, shim, dirfd, known_exit;
} Run;

static void *run_relay(void *arg)
{
    Run *run = arg;
    proc_relay_run(run->relay, run->ctl, "p1", run->shim, run->known_exit, run->dirfd, &ops);
    return NULL;
}

/* Read one frame from fd (blocking, 5 s at most). Returns its type, 0 on EOF. */
static int read_frame(int fd, char *payload, size_t size, size_t *ret_len)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ProcFrameReader r;
    if (proc_frame_reader_init(&r) < 0)
        return -ENOMEM;
    int k = proc_frame_read(&r, fd);
    int type = k == 1 ? r.header[0] : 0;
    size_t len = r.payload_len < size - 1 ? r.payload_len : size - 1;
    if (k == 1) {
        memcpy(payload, r.payload, len);
        payload[len] = '\0';
        *ret_len = len;
    }
    proc_frame_reader_done(&r);
    return type;
}

/* Read until EOF (5 s at most) into buf. */
static size_t read_all(int fd, char *buf, size_t size)
{
    size_t have = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t n = read(fd, buf + have, size - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    buf[have] = '\0';
    return have;
}

static void send_text(int fd, const char *text)
{
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
}

static void test_attached(int dirfd, int ctl_listener)
{
    int ctl[2], shim[2], out[2], err[2];
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) == 0 &&
           socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0 &&
           socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) == 0 &&
           socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, err) == 0,
       "socket pairs");
    Run run = {.ctl = ctl[1], .shim = shim[1], .dirfd = dirfd, .known_exit = -1};
    is_int(proc_relay_new(&run.relay), 0, "a relay");
    pthread_t t;
    pthread_create(&t, NULL, run_relay, &run);

    /* Output before anyone reads it is kept for the stream. */
    ok(proc_send_frame(shim[0], SHIM_FRAME_STDOUT, "early ", 6) == 0, "the shim writes stdout");
    ok(proc_relay_connect_output(run.relay, 0, out[1]), "stdout connects");
    ok(!proc_relay_connect_output(run.relay, 0, out[1]), "a second stdout is refused");
    ok(proc_relay_connect_output(run.relay, 1, err[1]), "stderr connects");
    ok(proc_send_frame(shim[0], SHIM_FRAME_STDOUT, "late", 4) == 0 &&
           proc_send_frame(shim[0], SHIM_FRAME_STDERR, "oops", 4) == 0,
       "more output on both");

    /* Control lines become frames, in order; a malformed one asks for nothing. */
    send_text(ctl[0], "{\"tty\":{\"window_size\":{\"columns\":100,\"rows\":30}}}\n"
                      "not json\n"
                      "{\"source\":0,\"data\":\"abc\"}\n"
                      "{\"source\":0}\n");
    char payload[256];
    size_t len = 0;
    int type = read_frame(shim[0], payload, sizeof(payload), &len);
    ok(type == SHIM_FRAME_WINSIZE && strcmp(payload, "100 30") == 0, "window size frame");
    type = read_frame(shim[0], payload, sizeof(payload), &len);
    ok(type == SHIM_FRAME_STDIN && strcmp(payload, "abc") == 0, "stdin frame");
    type = read_frame(shim[0], payload, sizeof(payload), &len);
    ok(type == SHIM_FRAME_STDIN_CLOSE && len == 0, "stdin close frame");

    /* A signal goes to the process's ctl socket, not behind stdin. */
    send_text(ctl[0], "{\"signal\":1}\n");
    int conn = accept4(ctl_listener, NULL, NULL, SOCK_CLOEXEC);
    type = conn >= 0 ? read_frame(conn, payload, sizeof(payload), &len) : -1;
    ok(type == SHIM_FRAME_SIGNAL && strcmp(payload, "9") == 0, "kill on the ctl socket");
    if (conn >= 0)
        close(conn);

    /* The exit: reported on the control connection, the streams end. */
    ok(proc_send_frame(shim[0], SHIM_FRAME_EXIT, "7", 1) == 0, "the shim reports exit 7");
    char buf[256];
    read_all(ctl[0], buf, sizeof(buf));
    is_str(buf, "p1 exited 7\n", "the exit line, then the control connection ends");
    read_all(out[0], buf, sizeof(buf));
    is_str(buf, "early late", "stdout whole, then EOF");
    read_all(err[0], buf, sizeof(buf));
    is_str(buf, "oops", "stderr whole, then EOF");
    pthread_join(t, NULL);
    proc_relay_unref(run.relay);
    close(ctl[0]);
    close(ctl[1]);
    close(shim[0]);
    close(out[0]);
    close(err[0]);
}

static void test_detach(int dirfd)
{
    int ctl[2], shim[2];
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) == 0 &&
           socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0,
       "detach: socket pairs");
    Run run = {.ctl = ctl[1], .shim = shim[1], .dirfd = dirfd, .known_exit = -1};
    is_int(proc_relay_new(&run.relay), 0, "detach: a relay");
    pthread_t t;
    pthread_create(&t, NULL, run_relay, &run);
    /* The last words before hanging up still reach the shim. */
    send_text(ctl[0], "{\"source\":0}\n");
    close(ctl[0]);
    pthread_join(t, NULL);
    char payload[64];
    size_t len;
    int type = read_frame(shim[0], payload, sizeof(payload), &len);
    is_int(type, SHIM_FRAME_STDIN_CLOSE, "detach: stdin close delivered");
    is_int(read_frame(shim[0], payload, sizeof(payload), &len), 0,
           "detach: then the shim connection ends, the process is left alone");
    proc_relay_unref(run.relay);
    close(ctl[1]);
    close(shim[0]);

    /* A stopped relay detaches at once. */
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) == 0 &&
           socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0,
       "stop: socket pairs");
    run = (Run){.ctl = ctl[1], .shim = shim[1], .dirfd = dirfd, .known_exit = -1};
    is_int(proc_relay_new(&run.relay), 0, "stop: a relay");
    proc_relay_stop(run.relay);
    run_relay(&run);
    is_int(read_frame(shim[0], payload, sizeof(payload), &len), 0, "stop: the relay let go");
    proc_relay_unref(run.relay);
    close(ctl[0]);
    close(ctl[1]);
    close(shim[0]);
}

typedef struct Collected {
    char text[256];
    size_t len;
    int streams; /* stdout pieces + 10 * stderr pieces */
    bool refuse; /* return false: the client stopped taking output */
} Collected;

static bool collect(void *userdata, int stream, const void *data, size_t len)
{
    Collected *c = userdata;
    if (c->refuse)
        return false;
    if (c->len + len < sizeof(c->text)) {
        memcpy(c->text + c->len, data, len);
        c->len += len;
    }
    c->streams += stream == 1 ? 1 : 10;
    return true;
}

static void test_follow(void)
{
    static atomic_bool no_stop, stop_now = true;
    int shim[2], client[2];
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0 &&
           socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, client) == 0,
       "follow: socket pairs");
    proc_send_frame(shim[0], SHIM_FRAME_STDOUT, "out ", 4);
    proc_send_frame(shim[0], SHIM_FRAME_STDERR, "err", 3);
    proc_send_frame(shim[0], SHIM_FRAME_EXIT, "42", 2);
    Collected c = {0};
    is_int(proc_output_follow(shim[1], -1, client[1], &no_stop, collect, &c), 42,
           "follow: the exit frame's status");
    ok(c.len == 7 && memcmp(c.text, "out err", 7) == 0 && c.streams == 11,
       "follow: stdout then stderr, in order");
    close(shim[0]);

    /* A shim that goes away without an exit frame: 255. */
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0, "follow: a second shim");
    close(shim[0]);
    is_int(proc_output_follow(shim[1], -1, client[1], &no_stop, collect, &c), 255,
           "follow: a vanished shim is 255");

    /* Output the client does not take ends following: no status. */
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0, "follow: a third shim");
    proc_send_frame(shim[0], SHIM_FRAME_STDOUT, "x", 1);
    proc_send_frame(shim[0], SHIM_FRAME_EXIT, "0", 1);
    c.refuse = true;
    is_int(proc_output_follow(shim[1], -1, client[1], &no_stop, collect, &c), -1,
           "follow: a refused piece detaches");
    close(shim[0]);

    /* A process that exited before: its status at once; a stopping server: none. */
    is_int(proc_output_follow(-1, 7, client[1], &no_stop, collect, &c), 7,
           "follow: a known exit is reported");
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0, "follow: a fourth shim");
    is_int(proc_output_follow(shim[1], -1, client[1], &stop_now, collect, &c), -1,
           "follow: a stopping server detaches");
    close(shim[0]);

    /* The client hangs up: detached, the shim connection closed. */
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, shim) == 0, "follow: a fifth shim");
    shutdown(client[0], SHUT_WR);
    is_int(proc_output_follow(shim[1], -1, client[1], &no_stop, collect, &c), -1,
           "follow: a hang-up detaches");
    char b;
    is_int((int)read(shim[0], &b, 1), 0, "follow: and lets go of the shim");
    close(shim[0]);
    close(client[0]);
    close(client[1]);
}

int main(void)
{
    char dir[] = "/tmp/test-relay-XXXXXX";
    ok(mkdtemp(dir) != NULL, "a process directory");
    int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl", dir);
    ok(dirfd >= 0 && listener >= 0 && bind(listener, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
           listen(listener, 4) == 0,
       "its ctl socket listens");
    test_attached(dirfd, listener);
    test_detach(dirfd);
    test_follow();
    close(listener);
    close(dirfd);
    (void)rm_rf_at(AT_FDCWD, dir);
    return tap_done();
}
