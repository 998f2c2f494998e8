/* spawn_clean_fd3: the program gets /dev/null on 0-2 and the given descriptor as
 * 3, signals at their defaults, and a descriptor table that is not a copy of ours:
 * with a descriptor of ours far above fd_high_base(), the exec'd program's table
 * (FDSize, which an exec does not shrink) stays below the base, where
 * spawn_clean's (a copy of the whole table) reaches above it. A program that
 * cannot be run is an error. The open files limit raised from a shell's 1024
 * (fd_limit_raise) is 1024 again in what either spawns. */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloche/fdio.h"
#include "cloche/spawn.h"
#include "cloche/vmclone.h"

extern char **environ;

/* sh reads its own status with builtins only (a forked command would show the
 * fork's table) and writes FDSize, SigIgn and what 0-2 are to descriptor 3. */
static const char SCRIPT[] =
    "while read k v rest; do case $k in FDSize:|SigIgn:) echo $k $v;; esac; done "
    "</proc/self/status >&3; "
    "for f in 0 1 2; do [ /proc/self/fd/$f -ef /dev/null ] && echo null$f >&3; done; "
    "echo nofile-$(ulimit -n) >&3";

static char child_limits[4096]; /* the last child's /proc/PID/limits, before it is reaped */

static int run(bool low, char *out, size_t size)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)SCRIPT, NULL};
    pid_t pid;
    int r;
    if (low) {
        r = spawn_clean_fd3(&pid, "/bin/sh", p[1], argv, environ);
    } else {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], 3);
        r = spawn_clean(&pid, "/bin/sh", &fa, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t k;
    while (r == 0 && n + 1 < size && (k = read(p[0], out + n, size - 1 - n)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(p[0]);
    int status = 0;
    child_limits[0] = '\0';
    if (r == 0) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? read(fd, child_limits, sizeof(child_limits) - 1) : -1;
        child_limits[got > 0 ? got : 0] = '\0';
        if (fd >= 0)
            close(fd);
        waitpid(pid, &status, 0);
    }
    return r < 0 ? r : status;
}

static long fdsize(const char *out)
{
    const char *f = strstr(out, "FDSize: ");
    return f ? strtol(f + 8, NULL, 10) : -1;
}

int main(void)
{
    struct rlimit rl, found, now;
    getrlimit(RLIMIT_NOFILE, &rl);
    bool from_shell = rl.rlim_max >= 8192;
    if (from_shell) { /* as a login shell leaves it */
        rl.rlim_cur = 1024;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int r = fd_limit_raise(&found, &now);
    getrlimit(RLIMIT_NOFILE, &rl);
    int base = fd_high_base();
    if (base == 0 || access("/bin/sh", X_OK) < 0 || !vmclone_supported()) {
        printf("1..0 # SKIP no descriptor range above %d (RLIMIT_NOFILE %lu), no /bin/sh, or "
               "no vmclone here\n",
               base, (unsigned long)rl.rlim_cur);
        return 0;
    }
    is_int(r, 0, "fd_limit_raise");
    rlim_t want = rl.rlim_max > FD_LIMIT_WANT ? FD_LIMIT_WANT : rl.rlim_max;
    ok(rl.rlim_cur == want && now.rlim_cur == want, "the soft limit is raised to %lu",
       (unsigned long)want);
    ok(!from_shell || found.rlim_cur == 1024, "from the 1024 found");
    /* One of ours far up, as a daemon with thousands of containers has. */
    int high = fcntl(0, F_DUPFD_CLOEXEC, base + 1000);
    ok(high >= base + 1000, "a descriptor at %d (base %d)", high, base);
    /* SIGPIPE ignored here, as in the daemon: the program gets the default. */
    signal(SIGPIPE, SIG_IGN);

    char out[1024];
    r = run(true, out, sizeof(out));
    is_int(r, 0, "spawn_clean_fd3 ran sh, which exited 0");
    long low_size = fdsize(out);
    ok(low_size > 0 && low_size < base, "its table is small: FDSize %ld < %d", low_size, base);
    ok(strstr(out, "SigIgn: 0000000000000000") != NULL, "no signal ignored");
    ok(strstr(out, "null0") && strstr(out, "null1") && strstr(out, "null2"),
       "0, 1 and 2 are /dev/null");
    if (from_shell)
        ok(strstr(out, "nofile-1024\n") != NULL, "its open files limit is 1024 again");

    r = run(false, out, sizeof(out));
    is_int(r, 0, "spawn_clean ran sh too");
    long copy_size = fdsize(out);
    ok(copy_size > high, "a spawn that copies our table gives one past %d: FDSize %ld", high,
       copy_size);
    /* posix_spawn sets no limit: prlimit() right after it, so it may be late for
     * what the program read at once, not for what it holds afterwards. */
    if (from_shell)
        ok(strstr(child_limits, "Max open files            1024 ") != NULL,
           "its limit is 1024 once spawned");

    char *argv[] = {(char *)"nope", NULL};
    pid_t pid;
    int p[2];
    ok(pipe2(p, O_CLOEXEC) == 0, "pipe");
    r = spawn_clean_fd3(&pid, "/nonexistent/program", p[1], argv, environ);
    is_int(r, -ENOENT, "a missing program is reported");
    close(p[0]);
    close(p[1]);
    close(high);
    return tap_done();
}
