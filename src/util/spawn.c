/* posix_spawn with a clean signal state. */
#include <signal.h>

#include "cloche/spawn.h"

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
    return -r;
}
