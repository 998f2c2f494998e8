/* Starting a helper process (mkfs.ext4, cloche-tar, cloche-shim) from the daemon. */
#pragma once

#include <spawn.h>
#include <sys/types.h>

/* posix_spawn with the signal mask emptied and every signal at its default
 * disposition, so a child never inherits what the daemon blocks or ignores
 * (SIGPIPE). fa (borrowed) sets up its file descriptors. 0 or a negative errno. */
int spawn_clean(pid_t *ret_pid, const char *path, const posix_spawn_file_actions_t *fa,
                char *const argv[], char *const envp[]);

/* spawn_clean with stdin, stdout and stderr on /dev/null and fd (borrowed) as
 * descriptor 3, without copying the daemon's descriptor table: the child is
 * cloned sharing the table and takes a copy of the descriptors below
 * fd_high_base() only (where the daemon keeps none of its thousands of
 * long-lived ones), and shares the daemon's memory until its exec (vmclone.h).
 * Elsewhere (no high range, another architecture) it is spawn_clean. The pid, or
 * a negative errno (the exec's own, for a program that cannot be run). */
int spawn_clean_fd3(pid_t *ret_pid, const char *path, int fd, char *const argv[],
                    char *const envp[]);
