/* Starting processes through cloche-shim, and reading what it leaves behind. */
#include <fcntl.h>
#include <stdarg.h>
#include <linux/openat2.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloche/spawn.h"
#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"

extern char **environ;

/* Read path inside a root (a container's /proc/PID/root, a pea's image) without
 * letting any symlink lead out of it. */
static int read_root_file(int rootfd, const char *path, char **ret)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    _cleanup_close_ int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd < 0)
        return -errno;
    return read_fd_all(fd, 4 << 20, ret, NULL);
}

/* Field n (0-based) of a colon-separated line, copied into buf. */
static bool field(const char *line, int n, char *buf, size_t size)
{
    const char *p = line;
    for (int i = 0; i < n; i++) {
        p = strchr(p, ':');
        if (!p)
            return false;
        p++;
    }
    size_t len = strcspn(p, ":");
    if (len >= size)
        return false;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return true;
}

static bool parse_id(const char *s, unsigned *ret)
{
    if (!*s || *s < '0' || *s > '9')
        return false;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v > 0xfffffffeUL)
        return false;
    *ret = (unsigned)v;
    return true;
}

/* Find a passwd entry by name (by_uid: by numeric uid). */
static bool passwd_lookup(char *passwd, const char *name, bool by_uid, unsigned uid, ProcUser *u)
{
    char *save = NULL;
    for (char *line = strtok_r(passwd, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char pname[64], puid[16], pgid[16], home[256];
        if (!field(line, 0, pname, sizeof(pname)) || !field(line, 2, puid, sizeof(puid)) ||
            !field(line, 3, pgid, sizeof(pgid)))
            continue;
        unsigned v;
        if (!parse_id(puid, &v))
            continue;
        if (by_uid ? v != uid : strcmp(pname, name) != 0)
            continue;
        unsigned g;
        if (!parse_id(pgid, &g))
            continue;
        u->uid = v;
        u->gid = g;
        snprintf(u->name, sizeof(u->name), "%s", pname);
        if (field(line, 5, home, sizeof(home)) && home[0] == '/')
            snprintf(u->home, sizeof(u->home), "%s", home);
        return true;
    }
    return false;
}

/* Supplementary groups naming the user in /etc/group. */
static void group_lookup(char *group, ProcUser *u)
{
    char *save = NULL;
    for (char *line = strtok_r(group, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char gid[16], members[1024];
        unsigned g;
        if (!field(line, 2, gid, sizeof(gid)) || !parse_id(gid, &g) ||
            !field(line, 3, members, sizeof(members)))
            continue;
        char *msave = NULL;
        for (char *m = strtok_r(members, ",", &msave); m; m = strtok_r(NULL, ",", &msave))
            if (strcmp(m, u->name) == 0 && u->n_groups < PROC_GROUPS_MAX && g != u->gid)
                u->groups[u->n_groups++] = g;
    }
}

int proc_resolve_user(pid_t init_pid, const char *user, ProcUser *ret, Failure *reterr)
{
    char root[64];
    snprintf(root, sizeof(root), "/proc/%d/root", init_pid);
    _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return failure_errno(reterr, -errno, "Failed to read the container's /etc/passwd");
    return proc_resolve_user_at(rootfd, user, ret, reterr);
}

int proc_resolve_user_at(int rootfd, const char *user, ProcUser *ret, Failure *reterr)
{
    ProcUser u = {.uid = 0, .gid = 0};
    snprintf(u.home, sizeof(u.home), "/");
    const char *name = user && *user ? user : "root";
    _cleanup_free_ char *passwd = NULL;
    int r = read_root_file(rootfd, "/etc/passwd", &passwd);
    if (r < 0 && r != -ENOENT)
        return failure_errno(reterr, r, "Failed to read /etc/passwd");

    const char *colon = strchr(name, ':');
    unsigned uid, gid;
    if (colon) {
        char ubuf[16];
        size_t ul = (size_t)(colon - name);
        if (ul >= sizeof(ubuf))
            return failure_input(reterr, -EINVAL, "Invalid user '%s': expected a name or uid:gid",
                                 name);
        memcpy(ubuf, name, ul);
        ubuf[ul] = '\0';
        if (!parse_id(ubuf, &uid) || !parse_id(colon + 1, &gid))
            return failure_input(reterr, -EINVAL, "Invalid user '%s': expected a name or uid:gid",
                                 name);
        if (passwd)
            (void)passwd_lookup(passwd, NULL, true, uid, &u);
        u.uid = uid;
        u.gid = gid;
    } else if (parse_id(name, &uid)) {
        if (!passwd || !passwd_lookup(passwd, NULL, true, uid, &u)) {
            u.uid = uid;
            u.gid = uid;
        }
    } else if (!passwd || !passwd_lookup(passwd, name, false, 0, &u)) {
        if (strcmp(name, "root") != 0)
            return failure_input(reterr, -ENOENT,
                                 "unable to find user %s: no matching entries in passwd file",
                                 name);
        snprintf(u.name, sizeof(u.name), "root");
        snprintf(u.home, sizeof(u.home), "/root");
    }
    if (u.name[0]) {
        _cleanup_free_ char *group = NULL;
        if (read_root_file(rootfd, "/etc/group", &group) == 0)
            group_lookup(group, &u);
    }
    *ret = u;
    return 0;
}

/* Append "key=value\n" with value percent-encoded as the protocol says. */
static int spec_add(FILE *f, const char *key, const char *value)
{
    fputs(key, f);
    fputc('=', f);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '%' || *p == '\n' || *p < 0x20 || *p == 0x7f)
            fprintf(f, "%%%02X", *p);
        else
            fputc(*p, f);
    }
    fputc('\n', f);
    return ferror(f) ? -EIO : 0;
}

static int spec_addf(FILE *f, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int spec_addf(FILE *f, const char *key, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return spec_add(f, key, buf);
}

int proc_write_spec(int dirfd, const ProcLaunch *l)
{
    _cleanup_free_ char *buf = NULL;
    size_t len;
    int r = proc_format_spec(l, &buf, &len);
    if (r < 0)
        return r;
    return atomic_write_volatile_at(dirfd, "spec", buf, len, 0600);
}

int proc_format_spec(const ProcLaunch *l, char **ret, size_t *ret_len)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -ENOMEM;
    spec_add(f, "path", l->path);
    for (char *const *a = l->args; a && *a; a++)
        spec_add(f, "arg", *a);
    for (char *const *e = l->env; e && *e; e++)
        spec_add(f, "env", *e);
    spec_add(f, "dir", l->dir);
    spec_addf(f, "uid", "%u", l->user->uid);
    spec_addf(f, "gid", "%u", l->user->gid);
    for (size_t i = 0; i < l->user->n_groups; i++)
        spec_addf(f, "group", "%u", l->user->groups[i]);
    for (size_t i = 0; i < l->n_rlimits; i++)
        spec_addf(f, "rlimit", "%d %llu %llu", l->rlimits[i].resource,
                  (unsigned long long)l->rlimits[i].value, (unsigned long long)l->rlimits[i].value);
    if (l->tty)
        spec_addf(f, "tty", "%u %u", l->columns ? l->columns : 80, l->rows ? l->rows : 24);
    spec_addf(f, "init_pid", "%d", l->init_pid);
    spec_addf(f, "init_start", "%llu", (unsigned long long)l->init_start);
    for (char *const *c = l->cgroups; c && *c; c++)
        spec_add(f, "cgroup", *c);
    spec_addf(f, "ring", "%u", l->ring ? l->ring : SHIM_DEFAULT_RING);
    spec_addf(f, "linger", "%u", l->linger);
    if (l->confine)
        spec_addf(f, "confine", "%llx %d", (unsigned long long)l->confine->caps,
                  l->confine->no_new_privs ? 1 : 0);
    if (l->seccomp)
        spec_add(f, "seccomp", l->seccomp);
    for (char *const *p = l->pea_lowers; p && *p; p++)
        spec_add(f, "pea_lower", *p);
    if (l->pea_lowers) {
        spec_add(f, "pea_root", l->pea_root);
        spec_addf(f, "pea_cgroup", "%d", l->pea_own_cgroups ? 1 : 0);
    }
    if (l->restart)
        spec_addf(f, "restart", "%s %u %u %u %u", l->restart->policy, l->restart->max_restarts,
                  l->restart->backoff_initial_ms, l->restart->backoff_max_ms,
                  l->restart->backoff_reset_ms);
    if (l->log_path) {
        spec_add(f, "log", l->log_path);
        if (l->log_max_size && l->log_max_files)
            spec_addf(f, "log_rotate", "%llu %u", (unsigned long long)l->log_max_size,
                      l->log_max_files);
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -EIO;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

/* Read the shim's start line from rd (up to its newline or EOF) and decode it. An
 * empty line (the shim died first) is -ECONNRESET. */
static int await_start_line(int rd, pid_t *ret_pid, Failure *reterr)
{
    char line[512];
    size_t have = 0;
    for (;;) {
        struct pollfd pfd = {.fd = rd, .events = POLLIN};
        int k = poll(&pfd, 1, 30000);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0)
            return failure_errno(reterr, -ETIMEDOUT, "cloche-shim did not report");
        ssize_t n = read(rd, line + have, sizeof(line) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        if (memchr(line, '\n', have) || have == sizeof(line) - 1)
            break;
    }
    line[have] = '\0';
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    int pidv, err;
    if (sscanf(line, "ok %d", &pidv) == 1 && pidv > 0) {
        *ret_pid = pidv;
        return 0;
    }
    int off = 0;
    if (sscanf(line, "err %d %n", &err, &off) == 1) {
        const char *msg = line + off;
        if (err == ENOENT || err == EACCES || err == ENOTDIR)
            return failure_set(reterr, -err, FAILURE_EXECUTABLE, "%s", msg);
        return failure_set(reterr, -err, FAILURE_SYSTEM, "Failed to start the process: %s", msg);
    }
    return failure_set(reterr, have ? -EIO : -ECONNRESET, FAILURE_SYSTEM,
                       "cloche-shim failed without a report%s%s", have ? ": " : "", line);
}

/* posix_spawn shim_path with argv, /dev/null on 0..2 and fd as its fd 3. */
static int spawn_shim(const char *shim_path, char *const argv[], int fd, pid_t *ret_pid)
{
    return spawn_clean_fd3(ret_pid, shim_path, fd, argv, environ);
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

int proc_start(const char *shim_path, const char *dir, pid_t *ret_pid, Failure *reterr)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return failure_errno(reterr, -errno, "Failed to start the process");
    _cleanup_close_ int rd = p[0];
    _cleanup_close_ int wr = p[1];

    char *argv[] = {(char *)"cloche-shim", (char *)dir, NULL};
    pid_t pid;
    int r = spawn_shim(shim_path, argv, wr, &pid);
    if (r < 0)
        return failure_errno(reterr, r, "Failed to run cloche-shim");
    close(TAKE_FD(wr));

    r = await_start_line(rd, ret_pid, reterr);
    /* The first shim process exits as soon as it has forked the monitor: long
     * gone by now, so reaping it here costs nothing (and did not delay the start). */
    reap(pid);
    return r;
}

static int spawn_detached(const char *shim_path, const char *mode, const char *label, int *ret_fd,
                          pid_t *ret_pid);

int proc_idle_spawn(const char *shim_path, const char *label, int *ret_fd, pid_t *ret_pid)
{
    return spawn_detached(shim_path, "--idle", label, ret_fd, ret_pid);
}

int proc_zygote_spawn(const char *shim_path, const char *label, int *ret_fd, pid_t *ret_pid)
{
    return spawn_detached(shim_path, "--zygote", label, ret_fd, ret_pid);
}

/* "ready <pid>" on fd within PROC_IDLE_READY_MS. */
static int await_ready(int fd, pid_t *ret_pid)
{
    char line[32];
    ssize_t n = -1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int k;
    while ((k = poll(&pfd, 1, PROC_IDLE_READY_MS)) < 0 && errno == EINTR)
        ;
    if (k > 0)
        while ((n = recv(fd, line, sizeof(line) - 1, 0)) < 0 && errno == EINTR)
            ;
    if (k == 0)
        return -ETIMEDOUT;
    if (n <= 0)
        return n < 0 ? -errno : -EPIPE;
    line[n] = '\0';
    int ready;
    if (sscanf(line, "ready %d", &ready) != 1 || ready <= 0)
        return -EBADMSG;
    *ret_pid = ready;
    return 0;
}

int proc_zygote_fork(int zygote_fd, int *ret_fd, pid_t *ret_pid)
{
    if (send(zygote_fd, "spawn", 5, MSG_NOSIGNAL) != 5)
        return -EPIPE;
    struct pollfd pfd = {.fd = zygote_fd, .events = POLLIN};
    int k;
    while ((k = poll(&pfd, 1, PROC_IDLE_READY_MS)) < 0 && errno == EINTR)
        ;
    if (k == 0)
        return -ETIMEDOUT;
    char line[32];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = line, .iov_len = sizeof(line) - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n;
    while ((n = recvmsg(zygote_fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n <= 0)
        return n < 0 ? -errno : -EPIPE;
    _cleanup_close_ int fd = -EBADF;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
    line[n] = '\0';
    int pid;
    if (sscanf(line, "pid %d", &pid) != 1 || (mh.msg_flags & MSG_CTRUNC))
        return -EBADMSG;
    if (pid <= 0 || fd < 0)
        return -EAGAIN; /* its fork failed */
    pid_t ready;
    int r = await_ready(fd, &ready);
    if (r < 0)
        return r; /* closing our end makes it exit */
    if (ready != pid)
        return -EBADMSG;
    *ret_fd = TAKE_FD(fd);
    *ret_pid = ready;
    return 0;
}

static int spawn_detached(const char *shim_path, const char *mode, const char *label, int *ret_fd,
                          pid_t *ret_pid)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return -errno;
    _cleanup_close_ int ours = sp[0];
    _cleanup_close_ int theirs = sp[1];
    /* Room in the argv for the shim to name its process directory once it has
     * one: RUN/processes/HANDLE/ID, with a handle and an id of at
     * most 255 bytes each. */
    char padding[600];
    memset(padding, ' ', sizeof(padding) - 1);
    padding[sizeof(padding) - 1] = '\0';
    char *argv[] = {(char *)"cloche-shim", (char *)mode, (char *)label, padding, NULL};
    pid_t pid;
    int r = spawn_shim(shim_path, argv, theirs, &pid);
    if (r < 0)
        return r;
    close(TAKE_FD(theirs));

    /* "ready <pid>" from the detached monitor; the first process has exited. */
    pid_t ready;
    r = await_ready(ours, &ready);
    reap(pid);
    if (r < 0)
        return r; /* closing our end makes it exit */
    *ret_fd = TAKE_FD(ours);
    *ret_pid = ready;
    return 0;
}

int proc_idle_take(int fd, const char *dir, const char *spec, size_t spec_len, pid_t *ret_pid,
                   Failure *reterr)
{
    _cleanup_close_ int sock = fd;
    if (spec && spec_len > SHIM_IDLE_SPEC_MAX)
        return failure_errno(reterr, -EMSGSIZE, "The spec is too large for an idle shim");
    /* One message: "DIR" or "DIR\nSPEC". */
    struct iovec iov[3] = {{.iov_base = (void *)dir, .iov_len = strlen(dir)},
                           {.iov_base = (void *)"\n", .iov_len = 1},
                           {.iov_base = (void *)spec, .iov_len = spec_len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = spec ? 3 : 1};
    size_t len = iov[0].iov_len + (spec ? 1 + spec_len : 0);
    ssize_t n;
    while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)len)
        /* Gone before it took anything (killed): nothing was started. */
        return failure_errno(reterr, -EPIPE, "The idle cloche-shim is gone");
    return await_start_line(sock, ret_pid, reterr);
}

static int connect_at(int dirfd, const char *name, int *ret_fd)
{
    /* Connect through /proc/self/fd so the path length of the depot never matters. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd, name);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    *ret_fd = TAKE_FD(fd);
    return 0;
}

int proc_connect(int dirfd, int *ret_fd)
{
    return connect_at(dirfd, "sock", ret_fd);
}

int proc_control(int dirfd, uint8_t type, const void *data, size_t len)
{
    _cleanup_close_ int fd = -EBADF;
    int r = connect_at(dirfd, "ctl", &fd);
    if (r < 0)
        return r;
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return proc_send_frame(fd, type, data, len);
}

int proc_read_exit(int dirfd, int *ret_status)
{
    _cleanup_free_ char *buf = NULL;
    size_t len;
    int r = read_file_at(dirfd, "exit", 64, &buf, &len);
    if (r < 0)
        return r;
    char *end;
    long v = strtol(buf, &end, 10);
    if (end == buf || v < 0 || v > 255 + 128)
        return -EBADMSG;
    *ret_status = (int)v;
    return 0;
}

int proc_read_pid(int dirfd, pid_t *ret_shim, uint64_t *ret_shim_start, pid_t *ret_pid)
{
    _cleanup_free_ char *buf = NULL;
    size_t len;
    int r = read_file_at(dirfd, "pid", 128, &buf, &len);
    if (r < 0)
        return r;
    int shim, pid;
    unsigned long long start;
    if (sscanf(buf, "%d %llu %d", &shim, &start, &pid) != 3)
        return -EBADMSG;
    *ret_shim = shim;
    *ret_shim_start = start;
    *ret_pid = pid;
    return 0;
}

int proc_read_service_state(int dirfd, ProcServiceState *ret)
{
    _cleanup_free_ char *buf = NULL;
    size_t len;
    int r = read_file_at(dirfd, "state", 128, &buf, &len);
    if (r < 0)
        return r;
    ProcServiceState s = {0};
    unsigned restarts;
    long long started;
    int pid;
    if (sscanf(buf, "%15s %u %d %lld %d", s.state, &restarts, &s.last_status, &started, &pid) != 5)
        return -EBADMSG;
    s.restarts = restarts;
    s.started_at = started;
    s.pid = pid;
    *ret = s;
    return 0;
}
