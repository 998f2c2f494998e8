/* The helpers cloche-shim and cloche-tar share: /proc/PID/stat (procfs.c),
 * entering through the init's pidfd (enter.c), whole writes (fdio.c). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloche/enter.h"
#include "cloche/fdio.h"
#include "cloche/procfs.h"
#include "tap.h"

/* A child that sets its name, optionally unshares, reports, and waits to be killed. */
static pid_t spawn_child(const char *name, int unshare_flags, int *ret_err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_NAME, name);
        int err = unshare_flags && unshare(unshare_flags) < 0 ? errno : 0;
        ssize_t w = write(p[1], &err, sizeof(err));
        (void)w;
        for (;;)
            pause();
    }
    close(p[1]);
    int err = -1;
    ssize_t n = read(p[0], &err, sizeof(err));
    close(p[0]);
    *ret_err = n == (ssize_t)sizeof(err) ? err : EIO;
    return pid;
}

static void end_child(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    uint64_t start = 0, again = 0;
    char state = 0;
    is_int(procfs_stat(getpid(), &start, &state), 0, "procfs: our own stat");
    ok(start > 0 && state == 'R', "procfs: a start time and the running state");
    ok(procfs_start_time(getpid(), &again) == 0 && again == start, "procfs: the same start again");

    int err;
    pid_t odd = spawn_child("a) b (c) d", 0, &err);
    uint64_t odd_start = 0;
    char odd_state = 0;
    is_int(procfs_stat(odd, &odd_start, &odd_state), 0, "procfs: a name with ') ' in it");
    ok(odd_start >= start && (odd_state == 'S' || odd_state == 'R'),
       "procfs: its fields read past the odd name");
    end_child(odd);
    is_int(procfs_start_time(odd, &odd_start), -ESRCH, "procfs: a reaped pid is -ESRCH");

    int pidfd = -1;
    EnterFailure f;
    is_int(enter_open_init(getpid(), start, &pidfd, &f), 0, "enter: the right process opens");
    ok(pidfd >= 0, "enter: a pidfd");
    close(pidfd);
    is_int(enter_open_init(getpid(), start + 1, &pidfd, &f), -ESRCH,
           "enter: another start time is refused");
    is_int(f.step, ENTER_STEP_INIT_GONE, "enter: as gone");
    is_int(enter_open_init(odd, odd_start, &pidfd, &f), -ESRCH, "enter: a reaped pid is refused");
    is_int(f.step, ENTER_STEP_OPEN_INIT, "enter: at pidfd_open");

    int flags = -1;
    is_int(enter_namespaces_to_join(getpid(), ENTER_NAMESPACES_ALL, &flags, &f), 0,
           "enter: our own namespaces");
    is_int(flags, 0, "enter: nothing to join in our own");
    if (geteuid() != 0) {
        ok(1, "# SKIP other namespaces need root");
    } else {
        pid_t other = spawn_child("other", CLONE_NEWUTS | CLONE_NEWIPC, &err);
        is_int(err, 0, "enter: a child in new uts and ipc namespaces");
        is_int(enter_namespaces_to_join(other, ENTER_NAMESPACES_ALL, &flags, &f), 0,
               "enter: its namespaces");
        is_int(flags, CLONE_NEWUTS | CLONE_NEWIPC, "enter: exactly uts and ipc differ");
        is_int(enter_namespaces_to_join(other, ENTER_NAMESPACES_ALL & ~CLONE_NEWUTS, &flags, &f), 0,
               "enter: without uts among the candidates");
        is_int(flags, CLONE_NEWIPC, "enter: only ipc then");
        end_child(other);
        is_int(enter_namespaces_to_join(other, ENTER_NAMESPACES_ALL, &flags, &f), -ENOENT,
               "enter: a gone init's namespaces");
        is_int(f.step, ENTER_STEP_INIT_NAMESPACE, "enter: fail at the init's side");
    }

    int sv[2];
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "fdio: a socket pair");
    static char big[1 << 20];
    memset(big, 'x', sizeof(big));
    pid_t reader = fork();
    if (reader == 0) {
        close(sv[0]);
        size_t total = 0;
        char buf[65536];
        ssize_t n;
        while ((n = read(sv[1], buf, sizeof(buf))) > 0)
            total += (size_t)n;
        _exit(total == sizeof(big) ? 0 : 1);
    }
    close(sv[1]);
    is_int(fd_send_all(sv[0], big, sizeof(big), 1000), 0, "fdio: 1 MiB sent whole");
    close(sv[0]);
    int status = 0;
    waitpid(reader, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fdio: the peer got every byte");
    ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "fdio: another pair");
    close(sv[1]);
    is_int(fd_send_all(sv[0], "x", 1, 0), -EPIPE, "fdio: a closed peer is -EPIPE, no SIGPIPE");
    signal(SIGPIPE, SIG_IGN); /* write() raises it, as it should */
    is_int(fd_write_all(sv[0], "x", 1), -EPIPE, "fdio: write to it is -EPIPE");
    close(sv[0]);
    return tap_done();
}
