/* Starting a helper process (mkfs.ext4, cloche-tar, cloche-shim) from the daemon. */
#pragma once

#include <spawn.h>
#include <sys/types.h>

/* posix_spawn with the signal mask emptied and every signal at its default
 * disposition, so a child never inherits what the daemon blocks or ignores
 * (SIGPIPE). fa (borrowed) sets up its file descriptors. 0 or a negative errno. */
int spawn_clean(pid_t *ret_pid, const char *path, const posix_spawn_file_actions_t *fa,
                char *const argv[], char *const envp[]);
