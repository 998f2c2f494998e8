/* What /proc/PID/stat says about a process. Part of the small library the
 * static helpers link too (see enter.h). */
#pragma once

#include <stdint.h>
#include <sys/types.h>

/* Start time of pid (field 22, in clock ticks since boot: with the pid, it names
 * one process for good) and, if ret_state is not NULL, its state letter (field
 * 3). -ESRCH if there is no such process, -EBADMSG if the file makes no sense. */
int procfs_stat(pid_t pid, uint64_t *ret_start, char *ret_state);

/* procfs_stat without the state. */
int procfs_start_time(pid_t pid, uint64_t *ret_start);
