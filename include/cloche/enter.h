/* Entering a running container through its init's pidfd: the part cloche-shim
 * and cloche-tar share. Both are static binaries without the core library, so
 * this (with procfs.c and fdio.c) is a small static library of its own,
 * `cloche-enter`, linked by both; the core library carries the same files. Only
 * libc; no allocation. Each caller words its own messages from EnterFailure. */
#pragma once

#include <sched.h>
#include <stdint.h>
#include <sys/types.h>

/* Every namespace a container has; the pid namespace only matters to children. */
#define ENTER_NAMESPACES_ALL                                                                       \
    (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |     \
     CLONE_NEWCGROUP)

typedef enum EnterStep {
    ENTER_STEP_OPEN_INIT,      /* pidfd_open() of the init failed */
    ENTER_STEP_READ_START,     /* reading the init's start time failed */
    ENTER_STEP_INIT_GONE,      /* the pid is gone, or is another process now */
    ENTER_STEP_OWN_NAMESPACE,  /* inspecting our own namespace failed */
    ENTER_STEP_INIT_NAMESPACE, /* inspecting the init's namespace failed */
} EnterStep;

typedef struct EnterFailure {
    EnterStep step;
    int error;             /* negative errno */
    const char *namespace; /* the namespace's /proc name, for the *_NAMESPACE steps */
} EnterFailure;

/* A pidfd of the init, refused (-ESRCH, ENTER_STEP_INIT_GONE) unless it is the
 * process started at start_time. The pidfd pins the pid, so checking the start
 * time after opening it is race free. */
int enter_open_init(pid_t pid, uint64_t start_time, int *ret_pidfd, EnterFailure *f);

/* Which of `candidates` (CLONE_NEW* flags) the init's namespaces differ in from
 * ours: the flags to hand setns() with its pidfd. */
int enter_namespaces_to_join(pid_t pid, int candidates, int *ret_flags, EnterFailure *f);

/* Note our own namespaces once, for every later enter_namespaces_to_join(): for
 * a single-threaded process that never changes its own (an idle cloche-shim;
 * setns of a pid namespace changes only its children's). Not thread safe. */
int enter_cache_own_namespaces(void);
