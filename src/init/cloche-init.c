/* cloche-init: PID 1 of every container. It reaps orphans and waits; it holds no
 * host resource and no file descriptor that leads outside the container. The
 * container lives exactly as long as this process. */
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    /* Run from a memfd, whose name would be our comm ("memfd:cloche-in"):
     * Garden's clients look for PID 1 by guardian's name. */
    prctl(PR_SET_NAME, "garden-init", 0, 0, 0);
    /* Nothing in the container may ptrace PID 1 or read its memory (without
     * CAP_SYS_PTRACE, a non-dumpable process is out of reach). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig == SIGCHLD || sig < 0)
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        /* Every other signal is ignored: as PID 1 of its namespace, init ends
         * only by SIGKILL from outside (Destroy), which needs no handler. */
    }
}
