/* cloche-shim DIR: the monitor of one process in a container (design §5). It
 * detaches from the daemon, starts the process described by DIR/spec, reports
 * "ok <pid>" or "err <errno> <message>" on fd 3, then serves DIR/sock until the
 * process has exited and its status was delivered. The contract is
 * include/cloche/shim-protocol.h.
 *
 * cloche-shim --idle LABEL [PADDING]: the same, but first it waits, detached,
 * for the daemon to name DIR on fd 3 (idle.c); LABEL (the daemon's depot) is
 * there for ps, PADDING (blanks) makes room to name DIR in the argv later. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "cloche/procfs.h"
#include "cloche/shim-protocol.h"
#include "shim.h"

#define START_FD 3

int shim_error(ShimError *e, int err, const char *fmt, ...)
{
    if (err < 0)
        err = -err;
    if (err == 0)
        err = EIO;
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->what, sizeof(e->what), fmt, ap);
        va_end(ap);
        e->err = err;
    }
    return -err;
}

/* The one line for the daemon; fd 3 is closed after it. */
static void start_line(const char *line)
{
    size_t len = strlen(line);
    while (len) {
        ssize_t n = write(START_FD, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the daemon is gone: nobody to tell */
        line += n;
        len -= (size_t)n;
    }
    close(START_FD);
}

static void start_error(const ShimError *e)
{
    char line[sizeof(e->what) + 128];
    int n = snprintf(line, sizeof(line), "err %d %s: %s", e->err, e->what, strerror(e->err));
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    /* One line, whatever the spec's strings held. */
    for (int i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[n] = '\n';
    line[n + 1] = '\0';
    start_line(line);
}

int shim_listen_on(int dirfd, const char *name, ShimError *reterr)
{
    if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
        return shim_error(reterr, errno, "Failed to remove the stale socket");
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shim_error(reterr, errno, "Failed to create the socket");
    /* A relative name keeps clear of sun_path's 108 bytes; the shim has one thread. */
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", name);
    if (fchdir(dirfd) < 0)
        return shim_error(reterr, errno, "Failed to enter the process directory");
    mode_t old = umask(0177);
    int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    int bind_errno = errno;
    umask(old);
    if (chdir("/") < 0)
        return shim_error(reterr, errno, "Failed to leave the process directory");
    if (r < 0)
        return shim_error(reterr, bind_errno, "Failed to bind the socket");
    /* 0600 by the umask: no chmod (one journalled inode change less per socket). */
    if (listen(fd, SHIM_CONNECTIONS_MAX) < 0) {
        r = shim_error(reterr, errno, "Failed to listen on the socket");
        unlinkat(dirfd, name, 0);
        return r;
    }
    return TAKE_FD(fd);
}

uint64_t shim_own_start_time(void)
{
    static uint64_t start;
    if (!start && procfs_start_time(getpid(), &start) < 0)
        start = 0;
    return start;
}

int shim_write_pid_file(int dirfd, pid_t pid)
{
    uint64_t start = shim_own_start_time();
    if (!start)
        return -EIO;
    char text[96];
    int len = snprintf(text, sizeof(text), "%d %llu %d\n", (int)getpid(), (unsigned long long)start,
                       (int)pid);
    return shim_write_file_first(dirfd, "pid.tmp", "pid", text, (size_t)len);
}

/* spec_text: the spec as an idle shim received it (spec_len bytes, writable one
 * beyond; taken), or NULL to read DIR/spec. idle: an idle shim's prepared
 * directory (NULL: none), whose sockets serve when DIR is that directory. */
static int run(const char *dir, char *spec_text, size_t spec_len, ShimIdleDir *idle)
{
    _cleanup_free_ char *text = spec_text;
    ShimError err = {0};
    ShimSpec spec = {0};
    ShimProcess proc = {
        .pid = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .master_fd = -1};
    _cleanup_close_ int dirfd = -1, signal_fd = -1, listen_fd = -1, control_fd = -1;
    int r;

    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        shim_error(&err, errno, "Failed to open the process directory '%s'", dir);
        if (idle)
            shim_idle_dir_remove(idle);
        goto fail;
    }
    if (text) {
        if (shim_spec_adopt(text, spec_len, &spec, &err) < 0)
            goto fail;
        TAKE_PTR(text); /* the spec's now */
    } else if (shim_spec_load(dirfd, &spec, &err) < 0) {
        goto fail;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0) {
        shim_error(&err, errno, "Failed to create a signalfd");
        goto fail;
    }
    if (!idle || !shim_idle_dir_adopt(idle, dirfd, &listen_fd, &control_fd)) {
        listen_fd = shim_listen_on(dirfd, "sock", &err);
        if (listen_fd >= 0)
            control_fd = shim_listen_on(dirfd, "ctl", &err);
        if (listen_fd < 0 || control_fd < 0)
            goto fail;
    }
    if (shim_process_start(&spec, dirfd, &proc, &err) < 0)
        goto fail;

    char line[32];
    snprintf(line, sizeof(line), "ok %d\n", (int)proc.pid);
    start_line(line);

    r = shim_serve(&spec, dirfd, listen_fd, control_fd, signal_fd, &proc);
    unlinkat(dirfd, "sock", 0);
    unlinkat(dirfd, "ctl", 0);
    shim_spec_clear(&spec);
    return r < 0 ? 1 : 0;

fail:
    if (listen_fd >= 0)
        unlinkat(dirfd, "sock", 0);
    if (control_fd >= 0)
        unlinkat(dirfd, "ctl", 0);
    start_error(&err);
    shim_spec_clear(&spec);
    return 1;
}

/* An idle shim that took a process names its directory in its argv, as one
 * started for it does (`cloche-shim DIR`), and one the zygote forked calls
 * itself `cloche-shim --idle LABEL`, so ps and the daemon's tests tell the shims
 * apart: the argv area, padded by the daemon for this, is rewritten in place
 * (no PR_SET_MM: that needs CAP_SYS_RESOURCE). */
static char *title_start, *title_end; /* the argv area, noted at the start */

static void retitle(const char *word, const char *word2)
{
    char *start = title_start;
    size_t size = (size_t)(title_end - title_start);
    const char *name = "cloche-shim";
    size_t nl = strlen(name) + 1, wl = strlen(word), w2l = word2 ? strlen(word2) + 1 : 0;
    if (size < nl + 2)
        return;
    if (wl > size - nl - 1)
        wl = size - nl - 1;
    memset(start, 0, size);
    memcpy(start, name, nl);
    memcpy(start + nl, word, wl);
    if (word2 && nl + wl + 1 + w2l <= size)
        memcpy(start + nl + wl + 1, word2, w2l);
}

int main(int argc, char **argv)
{
    title_start = argv[0];
    title_end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    bool zygote = argc >= 3 && argc <= 4 && strcmp(argv[1], "--zygote") == 0;
    bool idle = zygote || (argc >= 3 && argc <= 4 && strcmp(argv[1], "--idle") == 0);
    if ((argc != 2 && !idle) || fcntl(START_FD, F_GETFD) < 0) {
        fprintf(stderr, "Usage: cloche-shim DIR, with fd 3 the write end of the start pipe\n"
                        "       cloche-shim --idle LABEL [PADDING], with fd 3 a socket to the "
                        "daemon\n"
                        "       cloche-shim --zygote LABEL [PADDING], the same, forking idle "
                        "shims\n");
        return 2;
    }
    /* Detach: the daemon reaps the first process at once. */
    pid_t pid = fork();
    if (pid < 0) {
        ShimError err;
        shim_error(&err, errno, "Failed to fork the monitor");
        start_error(&err);
        return 1;
    }
    if (pid > 0)
        _exit(0);

    setsid();
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    if (fcntl(START_FD, F_SETFD, FD_CLOEXEC) < 0)
        return 1;
    /* The pipes and the socket must not land on 0..2, which the process's helpers
     * dup2 over. */
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            return 1;
    /* Every disposition inherited from the daemon back to the default, once
     * here, so that a process's start only resets the two the shim ignores. The
     * raw call: libc's refuses its own two real-time signals, which an ignoring
     * ancestor would otherwise leave ignored in every process. */
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } dfl = {.handler = SIG_DFL};
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
    static const int ignored[] = {SHIM_IGNORED_SIGNALS};
    for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
        signal(ignored[i], SIG_IGN); /* SIGPIPE: a reader gone is an error on its connection only */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    if (chdir("/") < 0)
        return 1;
    const char *label = argv[idle ? 2 : 1];
    if (zygote) {
        shim_zygote_serve(START_FD); /* returns in each idle shim it forks */
        label = strdup(label);
        if (!label)
            return 1;
        retitle("--idle", label); /* ps tells it from the zygote */
    }
    if (idle) {
        char *message, *spec;
        size_t spec_len;
        static ShimIdleDir prepared;
        shim_idle_dir_prepare(label, &prepared);
        if (shim_idle_wait(START_FD, &message, &spec, &spec_len) < 0) {
            shim_idle_dir_remove(&prepared);
            return 0; /* dropped, or the daemon ended: nothing was started */
        }
        retitle(message, NULL);
        return run(message, spec, spec_len, &prepared); /* message lives as long as the shim */
    }
    return run(argv[1], NULL, 0, NULL);
}
