/* Processes in containers, from the daemon's side: resolving the user, writing the
 * shim's spec, starting cloche-shim, and talking to it over its socket (frames of
 * include/cloche/shim-protocol.h). Knows nothing of HTTP or JSON. */
#pragma once

#include "cloche/confine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cloche/failure.h"

#define PROC_GROUPS_MAX 64

/* A user looked up in the container's /etc/passwd and /etc/group. */
typedef struct ProcUser {
    uid_t uid;
    gid_t gid;
    gid_t groups[PROC_GROUPS_MAX];
    size_t n_groups;
    char home[256];
    char name[64];
} ProcUser;

/* Resolve user ("" = root, a name, or "uid:gid") inside the container whose init
 * is init_pid, reading its files through /proc/PID/root without following any
 * link out of it. A malformed or unknown user is the caller's fault
 * (FAILURE_INPUT: -EINVAL, or -ENOENT with guardian's text "unable to find user
 * NAME: ..."); anything else a system failure. */
int proc_resolve_user(pid_t init_pid, const char *user, ProcUser *ret, Failure *reterr);
/* The same in the tree at rootfd (a pea's image), read without leaving it. */
int proc_resolve_user_at(int rootfd, const char *user, ProcUser *ret, Failure *reterr);

/* One resource limit for the process: soft and hard both set to value. */
typedef struct ProcRlimit {
    int resource; /* RLIMIT_* */
    uint64_t value;
} ProcRlimit;

/* A service's restart policy, for the shim's `restart` record. */
typedef struct ProcRestart {
    const char *policy;    /* "no", "on-failure", "always" or "unless-stopped" */
    uint32_t max_restarts; /* 0 = no limit */
    uint32_t backoff_initial_ms, backoff_max_ms, backoff_reset_ms;
} ProcRestart;

/* Everything the shim needs, resolved. */
typedef struct ProcLaunch {
    const char *path;
    char *const *args; /* NULL-terminated, without argv0 */
    char *const *env;  /* NULL-terminated, complete */
    const char *dir;
    const ProcUser *user;
    const ProcRlimit *rlimits; /* n_rlimits of them */
    size_t n_rlimits;
    bool tty;
    uint16_t columns, rows;
    pid_t init_pid;
    uint64_t init_start;
    char *const *cgroups; /* NULL-terminated host cgroup directories */
    uint32_t ring;
    uint32_t linger;
    const ConfinePlan *confine; /* NULL: no `confine` record */
    const char *seccomp;        /* the filter file, or NULL */
    /* A pea (a root file system of its own): its image layers, top first
     * (NULL: not a pea), the host directory holding its upper and work, and
     * whether `cgroups` are the pea's own groups (removed when it ends). */
    char *const *pea_lowers;
    const char *pea_root;
    bool pea_own_cgroups;
    const ProcRestart *restart; /* a supervised service (`restart` record), or NULL */
    const char *log_path;       /* output also to this log file, or NULL */
    uint64_t log_max_size;      /* 0 = the shim's default */
    uint32_t log_max_files;     /* 0 = the shim's default */
} ProcLaunch;

/* Write dirfd/spec (atomically, not fsynced: it is read once, at once). */
int proc_write_spec(int dirfd, const ProcLaunch *l);
/* The spec's text (malloc'd, *ret_len bytes), as proc_write_spec writes it. */
int proc_format_spec(const ProcLaunch *l, char **ret, size_t *ret_len);

/* Run `shim_path dir` detached and wait for its start line. On success *ret_pid is
 * the process's host pid. An exec failure (ENOENT, EACCES, ENOTDIR) is a
 * FAILURE_EXECUTABLE with the shim's message; anything else a system failure. */
int proc_start(const char *shim_path, const char *dir, pid_t *ret_pid, Failure *reterr);

/* The pool (design §5): an idle shim, started ahead of need, detached and set up,
 * waiting on *ret_fd (a SOCK_SEQPACKET socket, close-on-exec) for the directory of
 * its process; *ret_pid is its pid. label names it for ps (the daemon's run
 * directory, where it prepares its process directory).
 * Closing the fd ends an idle shim. Waits up to PROC_IDLE_READY_MS. */
#define PROC_IDLE_READY_MS 5000
int proc_idle_spawn(const char *shim_path, const char *label, int *ret_fd, pid_t *ret_pid);
/* The zygote (`cloche-shim --zygote`): started as an idle shim is, it makes idle
 * shims by forking itself, a fraction of a spawn's cost. proc_zygote_fork asks
 * the zygote on zygote_fd for one and waits (PROC_IDLE_READY_MS each step) until
 * it is ready: then *ret_fd and *ret_pid are as proc_idle_spawn's. -EAGAIN: the
 * zygote could not fork; -EPIPE, -ETIMEDOUT, -EBADMSG: the zygote is gone or
 * broken (close it). */
int proc_zygote_spawn(const char *shim_path, const char *label, int *ret_fd, pid_t *ret_pid);
int proc_zygote_fork(int zygote_fd, int *ret_fd, pid_t *ret_pid);
/* Hand dir to the idle shim on fd (taken: closed here), with its spec (at most
 * SHIM_IDLE_SPEC_MAX bytes; NULL: dir/spec is written), and wait for its start
 * line, as proc_start does. A shim that was gone before
 * dir could be sent fails with -EPIPE: nothing started. One that ended without a
 * start line fails with -ECONNRESET: dir/pid tells whether it started the process. */
int proc_idle_take(int fd, const char *dir, const char *spec, size_t spec_len, pid_t *ret_pid,
                   Failure *reterr);

/* Connect to dir/sock (non-blocking off: a plain blocking SOCK_STREAM fd). */
int proc_connect(int dirfd, int *ret_fd);

/* Send one control frame ('S' or 'W') on a connection of its own to dir/ctl, so it
 * is not queued behind stdin. */
int proc_control(int dirfd, uint8_t type, const void *data, size_t len);

/* dir/state of a service: see shim-protocol.h. */
typedef struct ProcServiceState {
    char state[16]; /* running, exited, restarting, backoff */
    uint32_t restarts;
    int last_status;    /* -1 before the first exit */
    int64_t started_at; /* unix seconds */
    pid_t pid;          /* 0 between runs */
} ProcServiceState;
int proc_read_service_state(int dirfd, ProcServiceState *ret);

/* dir/exit: the status, -ENOENT while the process runs. */
int proc_read_exit(int dirfd, int *ret_status);
/* dir/pid: shim pid and start time, and the process's host pid. */
int proc_read_pid(int dirfd, pid_t *ret_shim, uint64_t *ret_shim_start, pid_t *ret_pid);

/* Frames. */
int proc_send_frame(int fd, uint8_t type, const void *data, size_t len);

/* A frame reader over a blocking or non-blocking fd. */
typedef struct ProcFrameReader {
    uint8_t header[5];
    size_t header_have;
    uint8_t *payload; /* SHIM_FRAME_MAX bytes */
    size_t payload_have;
    uint32_t payload_len;
} ProcFrameReader;

int proc_frame_reader_init(ProcFrameReader *r);
void proc_frame_reader_done(ProcFrameReader *r);
/* Read from fd: 1 = a complete frame is in r (type in r->header[0], payload in
 * r->payload[0..payload_len)), 0 = need more (EAGAIN), -EPIPE = EOF, <0 error.
 * After a complete frame, the next call starts the next one. */
int proc_frame_read(ProcFrameReader *r, int fd);
