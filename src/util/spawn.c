/* posix_spawn with a clean signal state; and its like for the daemon's helpers
 * without the copy of the daemon's descriptor table. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "cloche/fdio.h"
#include "cloche/spawn.h"
#include "cloche/vmclone.h"

int spawn_clean(pid_t *ret_pid, const char *path, const posix_spawn_file_actions_t *fa,
                char *const argv[], char *const envp[])
{
    posix_spawnattr_t attr;
    int r = posix_spawnattr_init(&attr);
    if (r != 0)
        return -r;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    r = posix_spawn(ret_pid, path, fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    /* posix_spawn has no rlimit step: the child (a shim starts nothing until
     * it is asked, a helper does not care) gets it right after its exec. */
    if (r == 0)
        fd_limit_restore(*ret_pid);
    return -r;
}

typedef struct SpawnPlan {
    const char *path;
    char *const *argv, *const *envp;
    int fd, unshare_from;
    int err; /* the child's, read once it has exec'd or exited */
} SpawnPlan;

/* target as a copy of fd, inherited by the exec. */
static int child_dup_to(int fd, int target)
{
    if (fd == target)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, target) < 0 ? -1 : 0;
}

/* In the child (vmclone_exec): the caller waits, and its memory is ours. */
static void spawn_child(void *p)
{
    SpawnPlan *s = p;
    if (syscall(SYS_close_range, (unsigned)s->unshare_from, ~0U, CLOSE_RANGE_UNSHARE) < 0 ||
        child_dup_to(s->fd, 3) < 0)
        goto fail;
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC), out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (in < 0 || out < 0 || child_dup_to(in, 0) < 0 || child_dup_to(out, 1) < 0 ||
        child_dup_to(out, 2) < 0)
        goto fail;
    /* As spawn_clean: every signal at its default (SIGPIPE included), none blocked. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    fd_limit_restore(0);
    execve(s->path, s->argv, s->envp);
fail:
    s->err = -errno;
    _exit(127);
}

int spawn_clean_fd3(pid_t *ret_pid, const char *path, int fd, char *const argv[],
                    char *const envp[])
{
    int base = fd_high_base();
    if (!vmclone_supported() || base <= 3 || fd >= base) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fd, 3);
        int r = spawn_clean(ret_pid, path, &fa, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        return r;
    }
    SpawnPlan s = {.path = path, .argv = argv, .envp = envp, .fd = fd, .unshare_from = base};
    struct clone_args args = {.flags = CLONE_FILES, .exit_signal = SIGCHLD};
    pid_t pid = vmclone_exec(&args, spawn_child, &s);
    if (pid < 0)
        return pid;
    if (s.err < 0) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return s.err;
    }
    *ret_pid = pid;
    return 0;
}
