/* A child process that shares the daemon's memory until it execs.
 *
 * A plain clone copies the daemon's page tables (and every page it later writes
 * faults in the daemon until the child has exec'd), a cost that grows with the
 * daemon's memory, that is with the number of containers. A child cloned with
 * CLONE_VM | CLONE_VFORK copies nothing. posix_spawn does the same, but the child
 * here may run for a while and talk to the daemon before its exec (an init waits
 * for its id maps), while CLONE_VFORK stops the thread that cloned it until then.
 * So a helper thread of its own clones it and waits: the child runs on that
 * thread's thread-local storage (errno, the stack protector's canary), which
 * nothing else touches meanwhile, and on a stack of its own. */
#pragma once

#include <linux/sched.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct VmClone VmClone;

/* Whether this build can clone that way (x86-64 and arm64); callers fall back to a
 * plain clone where not. */
bool vmclone_supported(void);

/* Start fn(arg) in a new process made by clone3 with args (borrowed; CLONE_VM,
 * CLONE_VFORK and CLONE_PARENT_SETTID are added, args->stack is set), as above.
 * With cwd_fd >= 0 the child starts in that directory (the helper thread takes a
 * cwd of its own for the clone). The child starts with every signal blocked and
 * every caught signal back at its default (it shares nothing with the daemon's
 * handlers); fn must exec or _exit, and until then only touch memory that stays
 * valid and unchanged until vmclone_finish. Returns once the child runs, with its
 * pid in *ret_pid (a CLONE_PIDFD descriptor is where args->pidfd points, as
 * clone3 puts it), or a negative errno when it could not be made. *ret (taken by
 * vmclone_finish) is set in both cases. */
int vmclone_start(const struct clone_args *args, int cwd_fd, void (*fn)(void *), void *arg,
                  VmClone **ret, pid_t *ret_pid);

/* The posix_spawn case: fn(arg) in a child made from the calling thread with
 * args | CLONE_VM | CLONE_VFORK, which returns once the child has exec'd or exited
 * (so fn must not wait for the caller). Signals are blocked in the caller for
 * that while, and the child starts as above. The child's pid, or a negative
 * errno when it could not be made. */
pid_t vmclone_exec(const struct clone_args *args, void (*fn)(void *), void *arg);

/* Wait until the child has exec'd or exited (kill it first to give up on it), and
 * free v. NULL is a no-op. */
void vmclone_finish(VmClone *v);
