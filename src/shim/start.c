/* Starting the process inside a running container (design §5; kernel notes §2.4).
 *
 * The shim points its pid_ns_for_children at the init's pid namespace and clones
 * the process (C2) straight into the container's cgroup2 group (CLONE_INTO_CGROUP:
 * no migration, so none of the RCU grace period a cgroup.procs write on cgroup2
 * costs, several milliseconds here). C2 is the shim's own child, in the
 * container's pid namespace. Straight after its clone, C2 first moves itself into
 * the v1 hierarchies' groups by writing "0" to each one's `tasks` (opened by the
 * shim): the kernel moves the calling thread, its whole process here, without
 * the global write lock a cgroup.procs write takes, whose RCU grace period
 * costs milliseconds on a busy machine and stalls every fork and thread
 * creation on the host meanwhile. C2 then joins the init's other namespaces
 * through its pidfd, drops to the spec's ids and execs. A close-on-exec report
 * pipe tells the shim how it went: EOF = exec'd. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <linux/openat2.h>
#include <linux/capability.h>
#include <linux/close_range.h>

#include "cloche/enter.h"
#include "shim.h"

#define START_TIMEOUT_MS 60000 /* for the process to exec or report */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Steps the process reports when it fails before its exec. */
typedef enum Stage {
    STAGE_PID,
    STAGE_SETNS,
    STAGE_CLONE,
    STAGE_TTY,
    STAGE_RLIMIT,
    STAGE_GROUPS,
    STAGE_CAPS,
    STAGE_SECCOMP,
    STAGE_GID,
    STAGE_UID,
    STAGE_DIR,
    STAGE_STDIO,
    STAGE_EXEC,
    STAGE_PEA,       /* arg: the pea step (shim.h) */
    STAGE_PEA_READY, /* not a failure: in the pea's root, stopped until the shim saw it */
    STAGE_CGROUP,    /* arg: the index of the cgroup in the spec */
} Stage;

typedef struct Report {
    int stage;
    int value; /* a positive errno */
    int arg;   /* STAGE_RLIMIT: the resource */
} Report;

/* Everything C1 and C2 need, prepared before the fork: they make system calls only. */
typedef struct StartPlan {
    const ShimSpec *spec;
    int pidfd;
    int ns_flags;    /* namespaces of the init that differ from the shim's, but pid */
    int report_fd;   /* write end, close-on-exec */
    pid_t shim_seen; /* the shim's pid as the process sees its parent (0: outside its pid namespace)
                      */
    int stdio[3];    /* the process's ends (the pty slave thrice with a tty) */
    const int *tasks_fds; /* per spec cgroup: its v1 `tasks`, opened for writing, or -1 */
    size_t n_cgroups;
    const char *search_path;
    const ShimPeaPlan *pea; /* NULL: the container's own root */
} StartPlan;

/* ---- C1 and C2: system calls only ---- */

static void report(const StartPlan *p, int stage, int value, int arg)
{
    Report rep = {.stage = stage, .value = value, .arg = arg};
    ssize_t n = write(p->report_fd, &rep, sizeof(rep));
    (void)n;
}

static _Noreturn void child_fail(const StartPlan *p, int stage, int err, int arg)
{
    report(p, stage, err ? err : EIO, arg);
    _exit(127);
}

/* execvpe() with the PATH of the spec's environment, not the shim's. Returns the
 * errno to report. */
static int exec_search(const StartPlan *p)
{
    const ShimSpec *spec = p->spec;
    const char *file = spec->path;
    if (!*file)
        return ENOENT;
    if (strchr(file, '/')) {
        execve(file, spec->argv, spec->envp);
        return errno;
    }
    size_t file_len = strlen(file);
    if (file_len > NAME_MAX)
        return ENAMETOOLONG;
    bool denied = false;
    char buf[PATH_MAX];
    for (const char *dir = p->search_path;;) {
        const char *end = strchrnul(dir, ':');
        size_t dir_len = (size_t)(end - dir);
        if (dir_len + 1 + file_len < sizeof(buf)) {
            size_t n = 0;
            if (dir_len) { /* an empty entry means the working directory */
                memcpy(buf, dir, dir_len);
                buf[dir_len] = '/';
                n = dir_len + 1;
            }
            memcpy(buf + n, file, file_len + 1);
            execve(buf, spec->argv, spec->envp);
            switch (errno) {
            case EACCES:
                denied = true;
                break;
            case ENOENT:
            case ENOTDIR:
            case ESTALE:
            case ENODEV:
            case ETIMEDOUT:
                break;
            default:
                return errno;
            }
        }
        if (!*end)
            break;
        dir = end + 1;
    }
    return denied ? EACCES : ENOENT;
}

/* mkdir -p dir, each directory it creates owned by uid:gid (mode 0755), as
 * guardian makes a process's missing working directory. Runs as the container's
 * root, between clone and exec: system calls only. Returns 0 or a positive errno. */
static int make_dir_as(const char *dir, uid_t uid, gid_t gid)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path))
        return len ? ENAMETOOLONG : 0;
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        if (path[i - 1] == '/')
            continue; /* "//" or a trailing slash */
        char saved = path[i];
        path[i] = '\0';
        if (syscall(SYS_mkdirat, AT_FDCWD, path, 0755) == 0) {
            int fd = (int)syscall(SYS_openat, AT_FDCWD, path,
                                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return errno;
            int r = (int)syscall(SYS_fchown, fd, uid, gid);
            if (r == 0)
                r = (int)syscall(SYS_fchmod, fd, 0755); /* whatever the umask */
            int e = errno;
            syscall(SYS_close, fd);
            if (r < 0)
                return e;
        } else if (errno != EEXIST) {
            return errno;
        }
        path[i] = saved;
    }
    return 0;
}

static _Noreturn void process_main(const StartPlan *p)
{
    const ShimSpec *spec = p->spec;
    /* No word from the shim to wait for (the cgroups are joined here): killed
     * if the shim dies before the exec (until an id change or the reset before
     * the exec clears it), gone at once if it died already. */
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 ||
        syscall(SYS_getppid) != p->shim_seen)
        _exit(127);
    /* Into the v1 groups before anything else is charged to the shim's: "0" is
     * the calling thread, this process's only one. */
    for (size_t i = 0; i < p->n_cgroups; i++)
        if (p->tasks_fds[i] >= 0 && write(p->tasks_fds[i], "0", 1) != 1)
            child_fail(p, STAGE_CGROUP, errno, (int)i);
    /* Nothing in the container may ptrace us before the exec (which resets this). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (p->ns_flags && setns(p->pidfd, p->ns_flags) < 0)
        child_fail(p, STAGE_SETNS, errno, 0);
    if (p->pea) {
        int step = 0, e = shim_pea_enter(p->pea, &step);
        if (e)
            child_fail(p, STAGE_PEA, e, step);
        /* Stopped while the shim notes our mount namespace (shim_pea_finish needs it
         * even if we exit at once). */
        report(p, STAGE_PEA_READY, 0, 0);
        syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    }

    if (spec->tty && (setsid() < 0 || ioctl(p->stdio[0], TIOCSCTTY, 0) < 0))
        child_fail(p, STAGE_TTY, errno, 0);
    /* Limits before the ids: raising a hard limit needs the privilege we drop. */
    for (size_t i = 0; i < spec->n_rlimits; i++)
        if (syscall(SYS_prlimit64, 0, spec->rlimits[i].resource, &spec->rlimits[i].limit, NULL) < 0)
            child_fail(p, STAGE_RLIMIT, errno, spec->rlimits[i].resource);
    /* Raw system calls: after a raw clone, glibc's idea of this thread is stale.
     * Become the container's root first: after joining its user namespace our
     * host ids are unmapped there, and the kernel clears capabilities only on a
     * change of ids away from that namespace's root. Without this step a process
     * run as an ordinary user would keep every capability in the container. */
    if (syscall(SYS_setresgid, 0, 0, 0) < 0)
        child_fail(p, STAGE_GID, errno, 0);
    if (syscall(SYS_setresuid, 0, 0, 0) < 0)
        child_fail(p, STAGE_UID, errno, 0);
    int dir_err = make_dir_as(spec->dir, spec->uid, spec->gid);
    if (dir_err)
        child_fail(p, STAGE_DIR, dir_err, 0);
    if (syscall(SYS_setgroups, spec->n_groups, spec->groups) < 0)
        child_fail(p, STAGE_GROUPS, errno, 0);
    /* The bounding set and the filter while this is root with every capability
     * (installing a filter without no_new_privs needs CAP_SYS_ADMIN); the filter
     * allows the id changes and the exec that follow. */
    int r;
    if (spec->confined && (r = confine_drop_bounding(&spec->confine)) < 0)
        child_fail(p, STAGE_CAPS, -r, 0);
    if (spec->confined && (r = confine_load_filter(&spec->confine)) < 0)
        child_fail(p, STAGE_SECCOMP, -r, 0);
    if (syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) < 0)
        child_fail(p, STAGE_GID, errno, 0);
    if (syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) < 0)
        child_fail(p, STAGE_UID, errno, 0);
    if (spec->confined) {
        /* root: the container's set; anyone else: nothing (the kernel cleared
         * permitted and effective at the change of ids; this makes sure). */
        if ((r = confine_set_caps(&spec->confine, spec->uid == 0)) < 0)
            child_fail(p, STAGE_CAPS, -r, 0);
    } else if (spec->uid != 0) {
        /* Belt and braces: nothing survives into an ordinary user's process. */
        struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
        if (syscall(SYS_capset, &head, data) < 0 ||
            syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
            child_fail(p, STAGE_UID, errno, 0);
    }
    umask(022);
    if (chdir(spec->dir) < 0)
        child_fail(p, STAGE_DIR, errno, 0);

    for (int fd = 0; fd < 3; fd++)
        if (dup2(p->stdio[fd], fd) < 0)
            child_fail(p, STAGE_STDIO, errno, 0);
    /* The shim set every other disposition to the default when it started. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    static const int ignored[] = {SHIM_IGNORED_SIGNALS};
    for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
        sigaction(ignored[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Everything but stdio goes at the exec, the report pipe included. */
    syscall(SYS_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC);
    /* The process outlives its shim from here on, as any other. */
    syscall(SYS_prctl, PR_SET_PDEATHSIG, 0, 0, 0, 0);

    child_fail(p, STAGE_EXEC, exec_search(p), 0);
}

/* ---- the shim's side ---- */

/* A pidfd of the init, refused unless it is the process the spec names. The pidfd
 * pins the pid, so checking the start time after opening it is race free. */
static int open_init(const ShimSpec *spec, int *ret, ShimError *reterr)
{
    EnterFailure f;
    int r = enter_open_init(spec->init_pid, spec->init_start, ret, &f);
    if (r >= 0)
        return 0;
    if (f.step == ENTER_STEP_OPEN_INIT)
        return shim_error(reterr, r, "Failed to open the container's init (pid %d)",
                          (int)spec->init_pid);
    if (f.step == ENTER_STEP_READ_START)
        return shim_error(reterr, r, "Failed to read the start time of the container's init");
    return shim_error(reterr, ESRCH, "The container's init (pid %d) is gone", (int)spec->init_pid);
}

/* The init's namespaces that are not the shim's own. */
static int namespaces_to_join(pid_t pid, int *ret, ShimError *reterr)
{
    EnterFailure f;
    int r = enter_namespaces_to_join(pid, ENTER_NAMESPACES_ALL, ret, &f);
    if (r >= 0)
        return 0;
    if (f.step == ENTER_STEP_OWN_NAMESPACE)
        return shim_error(reterr, r, "Failed to inspect the shim's %s namespace", f.namespace);
    return shim_error(reterr, r == -ENOENT ? ESRCH : r,
                      "Failed to inspect the %s namespace of the container's init", f.namespace);
}

/* `tasks` of every v1 group (the process writes itself there), and the cgroup2
 * group itself (for CLONE_INTO_CGROUP), whose cgroup.procs is then not needed. */
static int open_cgroups(const ShimSpec *spec, int *fds, int *ret_v2, ShimError *reterr)
{
    for (size_t i = 0; i < spec->n_cgroups; i++) {
        struct statfs sf;
        if (*ret_v2 < 0 && statfs(spec->cgroups[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC) {
            *ret_v2 = open(spec->cgroups[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (*ret_v2 < 0)
                return shim_error(reterr, errno, "Failed to open '%s'", spec->cgroups[i]);
            continue;
        }
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/tasks", spec->cgroups[i]) >= (int)sizeof(path))
            return shim_error(reterr, ENAMETOOLONG, "Cgroup path '%s' is too long",
                              spec->cgroups[i]);
        fds[i] = open(path, O_WRONLY | O_CLOEXEC);
        if (fds[i] < 0)
            return shim_error(reterr, errno, "Failed to open '%s'", path);
    }
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* A pty from the container's own devpts (its /dev/pts, a newinstance), so that
 * the process's ttyname() finds it as /dev/pts/N; the master stays with the
 * shim. The slave comes through TIOCGPTPEER: no path of the host is used. */
static int open_pty(const ShimSpec *spec, int *ret_master, int *ret_slave)
{
    char root[64];
    snprintf(root, sizeof(root), "/proc/%d/root", (int)spec->init_pid);
    _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return -errno;
    struct open_how how = {.flags = O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS};
    _cleanup_close_ int master =
        (int)syscall(SYS_openat2, rootfd, "dev/pts/ptmx", &how, sizeof(how));
    if (master < 0)
        return -errno;
    struct statfs sf;
    if (fstatfs(master, &sf) < 0)
        return -errno;
    if (sf.f_type != DEVPTS_SUPER_MAGIC)
        return -ENOTTY; /* not a devpts the container mounted as cloche made it */
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        return -errno;
    _cleanup_close_ int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        return -errno;
    int fl = fcntl(master, F_GETFL);
    if (fl < 0 || fcntl(master, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return -errno;
    struct winsize ws = {.ws_row = spec->rows, .ws_col = spec->columns};
    if (ioctl(master, TIOCSWINSZ, &ws) < 0)
        return -errno;
    *ret_master = TAKE_FD(master);
    *ret_slave = TAKE_FD(slave);
    return 0;
}

/* The host id of the container's id `id` in the init's uid_map or gid_map;
 * -ERANGE when it is not mapped. */
static int host_id(pid_t init_pid, const char *map, uint32_t id, uint32_t *ret)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)init_pid, map);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    for (const char *line = buf; *line;) {
        unsigned long inside, outside, count;
        if (sscanf(line, "%lu %lu %lu", &inside, &outside, &count) == 3 && id >= inside &&
            id - inside < count) {
            *ret = (uint32_t)(outside + (id - inside));
            return 0;
        }
        line = strchrnul(line, '\n');
        line += *line == '\n';
    }
    return -ERANGE;
}

/* The process's ends of its stdio belong to its user, as runc makes them, so that
 * it can reopen them (/dev/stdout is /proc/self/fd/1, whose permission check is
 * the pipe's or the pty's own). A pty keeps its group (tty) and mode (0620). */
static int own_stdio(const ShimSpec *spec, const int child[3])
{
    uint32_t uid, gid;
    int r = host_id(spec->init_pid, "uid_map", spec->uid, &uid);
    if (r >= 0)
        r = host_id(spec->init_pid, "gid_map", spec->gid, &gid);
    if (r == -ERANGE)
        return 0; /* unmapped ids: the process fails to take them, with that error */
    if (r < 0)
        return r;
    for (int i = 0; i < 3; i++)
        if ((i == 0 || child[i] != child[i - 1]) &&
            fchown(child[i], uid, spec->tty ? (gid_t)-1 : gid) < 0)
            return -errno;
    return 0;
}

/* The process's stdio: its ends in child[], the shim's in *proc. */
static int open_stdio(const ShimSpec *spec, int child[3], ShimProcess *proc)
{
    int r;
    if (spec->tty) {
        int master = -1, slave = -1;
        if ((r = open_pty(spec, &master, &slave)) < 0)
            return r;
        child[0] = child[1] = child[2] = slave;
        proc->master_fd = proc->stdout_fd = master;
        /* A second fd for the input side, so it can be closed on its own. */
        proc->stdin_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
        if (proc->stdin_fd < 0)
            return -errno;
        return set_nonblock(master);
    }
    int p[3][2];
    for (int i = 0; i < 3; i++) {
        if (pipe2(p[i], O_CLOEXEC) < 0)
            return -errno;
        bool input = i == 0;
        child[i] = p[i][input ? 0 : 1];
        int own = p[i][input ? 1 : 0];
        if (i == 0)
            proc->stdin_fd = own;
        else if (i == 1)
            proc->stdout_fd = own;
        else
            proc->stderr_fd = own;
        if ((r = set_nonblock(own)) < 0)
            return r;
        /* Larger pipes: fewer wake-ups per megabyte. Best effort. */
        if (!input)
            (void)fcntl(own, F_SETPIPE_SZ, SHIM_PIPE_SIZE);
    }
    return 0;
}

static void close_stdio(int child[3], ShimProcess *proc)
{
    for (int i = 0; i < 3; i++) {
        if (child[i] >= 0 && (i == 0 || child[i] != child[i - 1]))
            close(child[i]);
        child[i] = -1;
    }
    if (proc) {
        int *fds[] = {&proc->stdin_fd, &proc->stdout_fd, &proc->stderr_fd};
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
            shim_closep(fds[i]);
        proc->master_fd = -1;
    }
}

/* Read one Report, waiting at most START_TIMEOUT_MS. 1 = got one, 0 = EOF. */
static int read_report(int fd, Report *ret)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    while ((r = poll(&pfd, 1, START_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    ssize_t n;
    while ((n = read(fd, ret, sizeof(*ret))) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    return n == (ssize_t)sizeof(*ret) ? 1 : -EIO;
}

static int report_error(const ShimSpec *spec, const Report *rep, ShimError *reterr)
{
    switch ((Stage)rep->stage) {
    case STAGE_SETNS:
        return shim_error(reterr, rep->value, "Failed to join the container's namespaces");
    case STAGE_CLONE:
        return shim_error(reterr, rep->value, "Failed to create the process");
    case STAGE_TTY:
        return shim_error(reterr, rep->value, "Failed to give the process its terminal");
    case STAGE_RLIMIT:
        return shim_error(reterr, rep->value, "Failed to set rlimit %d", rep->arg);
    case STAGE_GROUPS:
        return shim_error(reterr, rep->value, "Failed to set the supplementary groups");
    case STAGE_CAPS:
        return shim_error(reterr, rep->value, "Failed to set the process's capabilities");
    case STAGE_SECCOMP:
        return shim_error(reterr, rep->value, "Failed to install the seccomp filter");
    case STAGE_GID:
        return shim_error(reterr, rep->value, "Failed to set gid %u", (unsigned)spec->gid);
    case STAGE_UID:
        return shim_error(reterr, rep->value, "Failed to set uid %u", (unsigned)spec->uid);
    case STAGE_DIR:
        return shim_error(reterr, rep->value, "Failed to make or enter the working directory '%s'",
                          spec->dir);
    case STAGE_STDIO:
        return shim_error(reterr, rep->value, "Failed to set up the process's stdio");
    case STAGE_EXEC:
        return shim_error(reterr, rep->value, "Failed to execute '%s'", spec->path);
    case STAGE_PEA:
        return shim_pea_error(rep->arg, rep->value, reterr);
    case STAGE_CGROUP:
        if (rep->arg < 0 || (size_t)rep->arg >= spec->n_cgroups)
            break;
        return shim_error(reterr, rep->value, "Failed to join the cgroup '%s'",
                          spec->cgroups[rep->arg]);
    case STAGE_PEA_READY:
    case STAGE_PID:
        break;
    }
    return shim_error(reterr, EIO, "Failed to start the process: bad report");
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Clone the process: into the container's pid namespace (entered for the
 * clone and left again) and, on cgroup v2, straight into its cgroup. */
static int clone_process(StartPlan *plan, int cgroup2, pid_t *ret_pid, ShimError *reterr)
{
    _cleanup_close_ int own_pidns = -1;
    /* Children from here on are born in the container's pid namespace, where
     * their parent, outside it, is pid 0. */
    plan->shim_seen = plan->ns_flags & CLONE_NEWPID ? 0 : getpid();
    if (plan->ns_flags & CLONE_NEWPID) {
        own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (own_pidns < 0 || setns(plan->pidfd, CLONE_NEWPID) < 0)
            return shim_error(reterr, errno, "Failed to enter the container's pid namespace");
        plan->ns_flags &= ~CLONE_NEWPID;
    }
    struct clone_args args = {.exit_signal = SIGCHLD};
    if (cgroup2 >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup2;
    }
    /* Without a stack, the raw clone3 continues on a copy of this one, as fork does. */
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        process_main(plan);
    int clone_errno = errno;
    if (own_pidns >= 0)
        (void)setns(own_pidns, CLONE_NEWPID);
    if (pid < 0)
        return shim_error(reterr, clone_errno, "Failed to create the process");
    *ret_pid = pid;
    return 0;
}

/* Wait for the child's word as it enters the container and execs: the report
 * pipe closes at the exec, or carries why it failed. A pea stops once in its
 * root until the shim has noted its mount namespace. */
static int await_exec(const ShimSpec *spec, ShimProcess *proc, int report_read, int pid_dirfd,
                      bool *pid_written, ShimError *reterr)
{
    /* While the process enters the container and execs (on another CPU, with
     * luck); removed again if the start fails. */
    int r;
    if (pid_dirfd >= 0) {
        if ((r = shim_write_pid_file(pid_dirfd, proc->pid)) < 0)
            return shim_error(reterr, r, "Failed to write the pid file");
        *pid_written = true;
    }
    Report rep;
    r = read_report(report_read, &rep);
    if (r > 0 && rep.stage == STAGE_PEA_READY) {
        if ((r = shim_pea_noted(proc->pid, &proc->pea_mnt_ns)) < 0)
            return shim_error(reterr, r, "Failed to start the pea");
        r = read_report(report_read, &rep);
    }
    if (r < 0)
        return shim_error(reterr, r, "Failed to start the process: %s",
                          r == -ETIMEDOUT ? "it did not exec in time" : "lost its report");
    if (r > 0)
        return report_error(spec, &rep, reterr);
    return 0;
}

int shim_process_start(const ShimSpec *spec, int pid_dirfd, ShimProcess *ret, ShimError *reterr)
{
    ShimProcess proc = {
        .pid = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .master_fd = -1};
    int child_stdio[3] = {-1, -1, -1};
    int cgroup_fds[SHIM_CGROUPS_MAX];
    int report_pipe[2] = {-1, -1};
    _cleanup_close_ int pidfd = -1, cgroup2 = -1;
    ShimPeaPlan pea = {.upper_fd = -1};
    bool pid_written = false;
    int r;

    for (size_t i = 0; i < ELEMENTSOF(cgroup_fds); i++)
        cgroup_fds[i] = -1;

    if ((r = open_init(spec, &pidfd, reterr)) < 0)
        goto out;
    int ns_flags = 0;
    if ((r = namespaces_to_join(spec->init_pid, &ns_flags, reterr)) < 0)
        goto out;
    if ((r = open_cgroups(spec, cgroup_fds, &cgroup2, reterr)) < 0)
        goto out;
    if ((r = open_stdio(spec, child_stdio, &proc)) < 0 || (r = own_stdio(spec, child_stdio)) < 0) {
        r = shim_error(reterr, r, "Failed to create the process's %s", spec->tty ? "pty" : "pipes");
        goto out;
    }
    if (shim_pea_wanted(spec) && (r = shim_pea_prepare(spec, &pea, reterr)) < 0)
        goto out;
    if (pipe2(report_pipe, O_CLOEXEC) < 0) {
        r = shim_error(reterr, errno, "Failed to create pipes");
        goto out;
    }

    const char *search_path = DEFAULT_PATH;
    for (char **e = spec->envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            search_path = *e + 5;
            break;
        }
    StartPlan plan = {
        .spec = spec,
        .pidfd = pidfd,
        .ns_flags = ns_flags,
        .report_fd = report_pipe[1],
        .stdio = {child_stdio[0], child_stdio[1], child_stdio[2]},
        .tasks_fds = cgroup_fds,
        .n_cgroups = spec->n_cgroups,
        .search_path = search_path,
        .pea = shim_pea_wanted(spec) ? &pea : NULL,
    };

    if ((r = clone_process(&plan, cgroup2, &proc.pid, reterr)) < 0)
        goto out;

    /* Only the child needs these now. */
    close_stdio(child_stdio, NULL);
    shim_closep(&report_pipe[1]);

    if ((r = await_exec(spec, &proc, report_pipe[0], pid_dirfd, &pid_written, reterr)) < 0)
        goto out;
    *ret = proc;
    proc = (ShimProcess){.pid = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    r = 0;

out:
    if (proc.pid > 0)
        kill_and_reap(proc.pid); /* nothing left running */
    if (r < 0 && pid_written)
        (void)unlinkat(pid_dirfd, "pid", 0);
    shim_pea_plan_clear(&pea);
    close_stdio(child_stdio, &proc);
    for (size_t i = 0; i < ELEMENTSOF(cgroup_fds); i++)
        shim_closep(&cgroup_fds[i]);
    for (int i = 0; i < 2; i++) {
        shim_closep(&report_pipe[i]);
    }
    return r;
}
