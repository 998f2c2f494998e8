/* The init once it runs: reaping it, telling whether it is still the same
 * process, and the sealed copy of cloche-init it is started from
 * (include/cloche/sandbox.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/fdio.h"
#include "cloche/procfs.h"
#include "cloche/sandbox.h"
#include "sandbox-internal.h"

int sandbox_reap(SandboxInit *init)
{
    if (init->pidfd < 0)
        return 0;
    siginfo_t si;
    int r = 0;
    while (waitid((idtype_t)P_PIDFD, (id_t)init->pidfd, &si, WEXITED) < 0) {
        if (errno != EINTR) {
            r = -errno;
            break;
        }
    }
    close(init->pidfd);
    init->pidfd = -1;
    return r;
}

bool sandbox_process_alive(pid_t pid, uint64_t start_time)
{
    uint64_t start;
    char state;
    /* A zombie (its parent, the previous daemon, died and nobody reaped it yet)
     * counts as gone. */
    return pid > 0 && procfs_stat(pid, &start, &state) == 0 && start == start_time &&
           state != 'Z' && state != 'X';
}

int sandbox_load_executable(const char *path, int *ret_fd)
{
    _cleanup_close_ int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return -errno;
    _cleanup_close_ int mfd = memfd_create("cloche-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0)
        return -errno;
    char buf[65536];
    for (;;) {
        ssize_t n = read(src, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        int r = fd_write_all(mfd, buf, (size_t)n);
        if (r < 0)
            return r;
    }
    if (fchmod(mfd, 0555) < 0 ||
        fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
        return -errno;
    *ret_fd = TAKE_FD(mfd);
    return 0;
}
