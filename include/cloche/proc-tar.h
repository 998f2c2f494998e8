/* cloche-tar (src/tar/), started for StreamIn/StreamOut: it enters the container
 * through its init's pidfd as the requesting user and reads or writes a tar
 * stream (or one file). The caller pumps its data pipe and reads its messages. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cloche/proc.h"

typedef struct ProcTarLaunch {
    const char *tar_path;
    const char *mode; /* "in", "in-file", "out" or "out-file" */
    const char *path; /* in the container */
    pid_t init_pid;
    uint64_t init_start;
    char *const *cgroups; /* NULL-terminated: the helper joins them first */
    const ProcUser *user;
    const char *confine;      /* "<hex caps> <nnp>" */
    const char *seccomp_path; /* NULL: no filter */
} ProcTarLaunch;

/* Start it: "in" modes get a pipe on stdin (*ret_data its write end), "out" modes
 * on stdout (*ret_data its read end); stderr is *ret_messages. Both non-blocking,
 * close-on-exec. */
int proc_tar_start(const ProcTarLaunch *l, pid_t *ret_pid, int *ret_data, int *ret_messages);

/* End it at once (SIGKILL); reap it with proc_tar_wait. */
void proc_tar_kill(pid_t pid);

/* Reap it (SIGKILL first if kill_it): its exit status, 128+N for signal N. */
int proc_tar_wait(pid_t pid, bool kill_it);
