/* vmclone: the child shares our memory until it execs, runs while the caller goes
 * on (it may wait for the caller), leaves the caller's errno and signal handlers
 * alone, starts with signals blocked and handlers at their defaults, in the given
 * directory; a clone the kernel refuses is reported. */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloche/vmclone.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static volatile int shared_value;
static int go_pipe[2];
static char child_cwd[PATH_MAX];
static volatile int child_blocked_usr1 = -1;
static volatile int child_usr1_default = -1;

static void on_usr1(int sig)
{
    (void)sig;
}

/* Waits for the caller's byte, records what it sees, then execs true. */
static void child_exec(void *arg)
{
    char byte;
    if (read(go_pipe[0], &byte, 1) != 1)
        _exit(3);
    shared_value = *(int *)arg;
    /* A failing wrapper writes errno: the helper thread's, not the caller's. */
    (void)close(-1);
    if (!getcwd(child_cwd, sizeof(child_cwd)))
        child_cwd[0] = '\0';
    sigset_t mask;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    child_blocked_usr1 = sigismember(&mask, SIGUSR1);
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    child_usr1_default = sa.sa_handler == SIG_DFL;
    char *const argv[] = {(char *)"true", NULL};
    char *const envp[] = {NULL};
    execve("/bin/true", argv, envp);
    execve("/usr/bin/true", argv, envp);
    _exit(4);
}

static void child_sleep(void *arg)
{
    (void)arg;
    for (;;)
        pause();
}

int main(void)
{
    if (!vmclone_supported()) {
        printf("1..0 # SKIP no vmclone on this architecture\n");
        return 0;
    }
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    if (pipe2(go_pipe, O_CLOEXEC) < 0)
        return 1;
    int tmp = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
    char cwd_before[PATH_MAX];
    ok(getcwd(cwd_before, sizeof(cwd_before)) != NULL, "getcwd");

    int pidfd = -1, value = 42;
    struct clone_args args = {
        .flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
    VmClone *v = NULL;
    pid_t pid = -1;
    errno = 1234;
    int r = vmclone_start(&args, tmp, child_exec, &value, &v, &pid);
    is_int(r, 0, "the child is made");
    ok(pid > 0 && pidfd >= 0, "its pid and pidfd are known while it runs (pid %d)", (int)pid);
    /* The child is waiting for us: the call returned while it runs. */
    ok(write(go_pipe[1], "g", 1) == 1, "the child waits for the caller");
    vmclone_finish(v);
    is_int(shared_value, 42, "the child wrote our memory (shared until its exec)");
    is_int(errno, 1234, "the caller's errno is untouched by the child's failing call");
    is_str(child_cwd, "/tmp", "the child started in cwd_fd's directory");
    char cwd_after[PATH_MAX];
    ok(getcwd(cwd_after, sizeof(cwd_after)) && strcmp(cwd_after, cwd_before) == 0,
       "the caller's cwd did not move");
    is_int(child_blocked_usr1, 1, "the child starts with signals blocked");
    is_int(child_usr1_default, 1, "the child's caught signals are back at their default");
    struct sigaction now;
    sigaction(SIGUSR1, NULL, &now);
    ok(now.sa_handler == on_usr1, "the caller keeps its handler");
    siginfo_t si = {0};
    int w = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED);
    ok(w == 0 && si.si_code == CLD_EXITED && si.si_status == 0,
       "the child exec'd true and exited 0 (code %d, status %d)", si.si_code, si.si_status);
    close(pidfd);

    /* A child killed before its exec: finish returns once it is gone. */
    pidfd = -1;
    r = vmclone_start(&args, -1, child_sleep, NULL, &v, &pid);
    is_int(r, 0, "a second child is made");
    ok(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0, "kill it");
    vmclone_finish(v);
    ok(waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) == 0 && si.si_code == CLD_KILLED,
       "it died of the signal");
    close(pidfd);

    /* The kernel refuses CLONE_THREAD without CLONE_SIGHAND: reported, nothing made. */
    struct clone_args bad = {.flags = CLONE_THREAD, .exit_signal = 0};
    v = NULL;
    r = vmclone_start(&bad, -1, child_sleep, NULL, &v, &pid);
    is_int(r, -EINVAL, "a refused clone is reported");
    vmclone_finish(v);
    close(tmp);
    return tap_done();
}
