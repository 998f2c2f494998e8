/* cloche-shim internals: the per-process monitor of include/cloche/shim-protocol.h.
 *
 * The shim is a small static program, single-threaded and event driven. It links
 * neither the core library nor json-c and includes only libc, the protocol
 * header and confine.h (compiled in), so these few helpers stand in for
 * util/cleanup.h.
 *
 * Functions return 0 (or a documented non-negative value) or a negative errno;
 * those that prepare the start line fill a ShimError with what failed. */
#pragma once

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cloche/confine.h"

#define SHIM_SPEC_MAX (16u << 20)    /* bytes of DIR/spec */
#define SHIM_RING_LIMIT (256u << 20) /* largest `ring` accepted */
#define SHIM_LINGER_LIMIT 86400u     /* largest `linger` accepted, seconds */
#define SHIM_CGROUPS_MAX 32          /* `cgroup` records */
/* The only signals the shim ignores (all others have their default action from
 * its start on): the process's start resets just these. */
#define SHIM_IGNORED_SIGNALS SIGPIPE, SIGHUP
#define SHIM_GROUPS_MAX 65536        /* `group` records (NGROUPS_MAX) */
#define SHIM_CONNECTIONS_MAX 32      /* simultaneous connections to DIR/sock */
#define SHIM_QUEUE_CAP (1u << 20)    /* output queued per connection before reads pause */
#define SHIM_STDIN_CAP (1u << 20)    /* stdin bytes buffered before connection reads pause */
#define SHIM_PIPE_SIZE (1 << 20)     /* requested capacity of the output pipes */
#define SHIM_DRAIN_BUDGET (2u << 20) /* bytes per stream read after the exit, at most */
#define SHIM_LOG_LINE_MAX 16384      /* bytes of text per log record; longer lines are split */
#define SHIM_LOG_SIZE_MIN 4096u      /* smallest `log` max_size accepted */
#define SHIM_LOG_SIZE_LIMIT (1ull << 30)
#define SHIM_LOG_FILES_LIMIT 100u
#define SHIM_BACKOFF_LIMIT_MS 3600000ull /* largest back-off delay accepted */
#define SHIM_RESET_LIMIT_MS 86400000ull  /* largest reset_after accepted */
#define SHIM_RESTARTS_LIMIT 1000000u     /* largest max_restarts accepted */

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void shim_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
    *fd = -EBADF;
}

static inline void shim_freep(void *p)
{
    free(*(void **)p);
}

#define _cleanup_close_ _cleanup_(shim_closep)
#define _cleanup_free_ _cleanup_(shim_freep)

#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tf = (fd);                                                                            \
        (fd) = -EBADF;                                                                             \
        _tf;                                                                                       \
    })

#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp = (p);                                                                   \
        (p) = NULL;                                                                                \
        _tp;                                                                                       \
    })

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* What failed, for the "err <errno> <message>" start line. */
typedef struct ShimError {
    int err;        /* positive errno */
    char what[512]; /* "Failed to ..." without the strerror part */
} ShimError;

/* Record err (a negative or positive errno) and what failed; returns -|err|. */
int shim_error(ShimError *e, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define SHIM_PEA_LOWERS_MAX 128 /* `pea_lower` records (image layers) */

/* A pea's own root file system (pea.c): its image layers, top first, and the
 * directory holding its upper and work directories. */
typedef struct ShimPeaSpec {
    const char *lowers[SHIM_PEA_LOWERS_MAX];
    size_t n_lowers; /* 0: not a pea */
    const char *root;
    bool own_cgroups; /* the `cgroup` records are the pea's own: removed at its end */
} ShimPeaSpec;

typedef struct ShimRlimit {
    int resource;
    struct rlimit limit;
} ShimRlimit;

typedef enum ShimRestartPolicy {
    SHIM_RESTART_NO,
    SHIM_RESTART_ON_FAILURE,
    SHIM_RESTART_ALWAYS,
    SHIM_RESTART_UNLESS_STOPPED,
} ShimRestartPolicy;

/* DIR/spec, decoded. Every string points into `text`, which the spec owns. */
typedef struct ShimSpec {
    char *text;
    const char *path;
    char **argv; /* argv[0] = path, NULL-terminated */
    char **envp; /* NULL-terminated */
    const char *dir;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    size_t n_groups;
    ShimRlimit *rlimits;
    size_t n_rlimits;
    bool tty;
    unsigned short columns, rows;
    pid_t init_pid;
    uint64_t init_start;
    char **cgroups; /* NULL-terminated host cgroup directories */
    size_t n_cgroups;
    size_t ring;
    unsigned linger;
    /* Capabilities, no_new_privs and seccomp (`confine`, `seccomp`); without a
     * `confine` record the process keeps what the ids give it. */
    bool confined;
    ConfinePlan confine; /* .filter points at `filter` when a seccomp file was named */
    const char *seccomp_path;
    struct sock_fprog filter; /* owned */
    ShimPeaSpec pea;
    /* A service (`restart` record): started again per policy, with back-off. */
    bool supervised;
    ShimRestartPolicy restart;
    uint32_t max_restarts; /* 0 = no limit */
    uint64_t backoff_initial_ms, backoff_max_ms, backoff_reset_ms;
    /* Output written to rotated log files (`log` record); NULL = none. */
    const char *log_path;
    uint64_t log_max_size;
    unsigned log_max_files;
} ShimSpec;

/* Read and validate dirfd/spec into *ret (release with shim_spec_clear). */
int shim_spec_load(int dirfd, ShimSpec *ret, ShimError *reterr);
/* The same from spec text handed over whole (an idle shim's message): len bytes,
 * text[len] writable; taken by *ret on success. */
int shim_spec_adopt(char *text, size_t len, ShimSpec *ret, ShimError *reterr);
/* Parse spec text (len bytes, modified in place; taken by *ret on success). */
int shim_spec_parse(char *text, size_t len, ShimSpec *ret, ShimError *reterr);
void shim_spec_clear(ShimSpec *spec);

/* The running process and the shim's ends of its stdio. */
typedef struct ShimProcess {
    pid_t pid;           /* host pid; the shim's child */
    int stdin_fd;        /* pipe write end, or a dup of the pty master; -1 once closed */
    int stdout_fd;       /* pipe read end, or the pty master */
    int stderr_fd;       /* pipe read end; -1 with a tty */
    int master_fd;       /* the pty master (the same fd as stdout_fd), or -1 */
    uint64_t pea_mnt_ns; /* a pea's mount namespace (inode), 0 for other processes */
} ShimProcess;

/* Start the process of spec inside the namespaces of its init and in its cgroups;
 * returns once it has exec'd (or failed, with nothing left running). With
 * pid_dirfd >= 0, writes pid_dirfd/pid meanwhile (shim_write_pid_file). */
int shim_process_start(const ShimSpec *spec, int pid_dirfd, ShimProcess *ret, ShimError *reterr);

/* Serve DIR/sock until the process has exited and its status was delivered (or the
 * linger time ran out). listen_fd and signal_fd are borrowed; proc's fds are taken.
 * Writes dirfd/exit. */
/* control_fd: the listening socket DIR/ctl, whose connections only send control
 * frames ('S', 'W') and receive nothing. */
int shim_serve(const ShimSpec *spec, int dirfd, int listen_fd, int control_fd, int signal_fd,
               ShimProcess *proc);

/* Write data to dirfd/name through dirfd/tmp_name and a rename. */
int shim_write_file_atomic(int dirfd, const char *tmp_name, const char *name, const char *data,
                           size_t len);
/* The same, but a file not there yet is created under its own name with one
 * write (len must be small: one write() of a few bytes). */
int shim_write_file_first(int dirfd, const char *tmp_name, const char *name, const char *data,
                          size_t len);

/* ---- peas (pea.c) ---- */

/* A `pea_*` spec record. */
int shim_pea_spec_apply(ShimSpec *s, const char *key, char *value, ShimError *reterr);
bool shim_pea_wanted(const ShimSpec *spec);

/* Prepared before the clone: detached trees of the layers (idmapped to the
 * container's user namespace when it has one) and of the pea's upper/work. */
typedef struct ShimPeaPlan {
    int lower_fds[SHIM_PEA_LOWERS_MAX];
    char lower_paths[SHIM_PEA_LOWERS_MAX][32];
    size_t n_lowers;
    int upper_fd;
    bool userns;
    char overlay_opts[SHIM_PEA_LOWERS_MAX * 32 + 128];
} ShimPeaPlan;

enum {
    SHIM_PEA_STEP_ROOT = 1,
    SHIM_PEA_STEP_CLONE, /* + index of /dev, /proc, /sys, /etc/hosts, /etc/resolv.conf */
    SHIM_PEA_STEP_UNSHARE = 10,
    SHIM_PEA_STEP_STAGE,
    SHIM_PEA_STEP_LOWER,
    SHIM_PEA_STEP_UPPER,
    SHIM_PEA_STEP_OVERLAY,
    SHIM_PEA_STEP_ATTACH, /* + index as above */
    SHIM_PEA_STEP_PIVOT = 20,
};

int shim_pea_prepare(const ShimSpec *spec, ShimPeaPlan *ret, ShimError *reterr);
void shim_pea_plan_clear(ShimPeaPlan *plan);
/* In the process, after it joined the container's namespaces (user, mount and
 * the rest): build the pea's root and pivot into it. 0, or a positive errno with
 * *ret_step saying where. System calls only. */
int shim_pea_enter(const ShimPeaPlan *plan, int *ret_step);
/* The error for a step shim_pea_enter reported. */
int shim_pea_error(int step, int err, ShimError *reterr);
/* The process reported STAGE_PEA_READY and stops itself: wait for the stop, note
 * its mount namespace (inode) and let it go on. */
int shim_pea_noted(pid_t pid, uint64_t *ret_mnt_ns);
/* After the exit, before the status is written: end what the pea left running,
 * remove its own cgroups and its layer (pea_root). No-op for other processes. */
void shim_pea_finish(const ShimSpec *spec, uint64_t mnt_ns);
/* Write dirfd/pid for the process pid (the shim's own pid and start time first). */
int shim_write_pid_file(int dirfd, pid_t pid);
/* The shim's own start time (/proc/self/stat, read once); 0 if unreadable. */
uint64_t shim_own_start_time(void);

/* ---- the pool (idle.c) ---- */

/* The largest message an idle shim takes: its directory, a newline and the spec
 * (a larger spec is written to DIR/spec instead). */
#define SHIM_IDLE_MESSAGE_MAX (PATH_MAX + SHIM_IDLE_SPEC_MAX + 1)

/* An idle shim's process directory made ahead of need:
 * LABEL/SHIM_IDLE_DIRS/<pid>, its `sock` and `ctl` already listening, which the
 * daemon renames into place as the next process's directory. */
typedef struct ShimIdleDir {
    char path[PATH_MAX];
    int dirfd; /* -1: none (the shim binds in the directory it is given) */
    int listen_fd, control_fd;
} ShimIdleDir;

/* Make the directory (best effort: *ret->dirfd stays -1 on failure). */
void shim_idle_dir_prepare(const char *label, ShimIdleDir *ret);
/* The directory at dirfd is the prepared one (renamed or not): take its sockets
 * into *ret_listen_fd, *ret_control_fd and return true. Otherwise remove it. */
bool shim_idle_dir_adopt(ShimIdleDir *d, int dirfd, int *ret_listen_fd, int *ret_control_fd);
/* Remove what is left of it (the daemon ended, or the shim took another directory). */
void shim_idle_dir_remove(ShimIdleDir *d);
/* `cloche-shim --zygote LABEL`: serve the daemon's requests for idle shims on fd
 * by forking; returns in each child (fd now its own socket), never in the
 * zygote (shim-protocol.h). */
void shim_zygote_serve(int fd);

/* Bind and listen on dirfd/name, mode 0600, replacing a stale socket. */
int shim_listen_on(int dirfd, const char *name, ShimError *reterr);

/* As an idle shim: report "ready <pid>" on fd, then wait for the daemon's one
 * message: "DIR" (the process directory, absolute; its spec in DIR/spec) or
 * "DIR\nSPEC". *ret_message is DIR (malloc'd); *ret_spec a malloc'd copy of SPEC
 * (NUL-terminated after spec_len bytes), or NULL. -EPIPE
 * when the daemon's end closed first (exit quietly), -EBADMSG for a malformed
 * message. */
int shim_idle_wait(int fd, char **ret_message, char **ret_spec, size_t *ret_spec_len);

/* ---- log files (log.c) ---- */

enum { SHIM_LOG_STDOUT, SHIM_LOG_STDERR };

/* Output as records "<unix seconds>.<9 digits> <stdout|stderr> <text>\n" in
 * path, rotated to path.1 .. path.<max_files-1> before a record would take the
 * file past max_size. Lines longer than SHIM_LOG_LINE_MAX are split. */
typedef struct ShimLog {
    const char *path; /* borrowed; NULL = logging off */
    int fd;
    uint64_t size, max_size;
    unsigned max_files;
    char *partial[2]; /* an unfinished line per stream, SHIM_LOG_LINE_MAX bytes */
    size_t partial_len[2];
    char *record; /* formatting buffer */
} ShimLog;

/* Prepare l (nothing is opened until the first record); path NULL = off. */
int shim_log_init(ShimLog *l, const char *path, uint64_t max_size, unsigned max_files);
/* Output bytes of a stream, read at time now (CLOCK_REALTIME). Failures to write
 * lose the record, never hold up the process. */
void shim_log_write(ShimLog *l, int stream, const uint8_t *data, size_t len,
                    const struct timespec *now);
/* Write the unfinished lines (the run ended). */
void shim_log_flush(ShimLog *l, const struct timespec *now);
void shim_log_done(ShimLog *l);
/* Format one record into buf (at least SHIM_LOG_LINE_MAX + 48 bytes); returns
 * its length. */
size_t shim_log_format(char *buf, int stream, const char *text, size_t len,
                       const struct timespec *t);

/* ---- supervision (supervise.c) ---- */

typedef enum ShimServiceState {
    SHIM_SERVICE_RUNNING,
    SHIM_SERVICE_EXITED,
    SHIM_SERVICE_RESTARTING,
    SHIM_SERVICE_BACKOFF,
} ShimServiceState;

typedef struct ShimSupervisor {
    ShimServiceState state;
    uint32_t restarts;    /* starts after the first */
    int last_status;      /* -1 before the first exit */
    int64_t started_unix; /* the current (or last) run's start, CLOCK_REALTIME seconds */
    uint64_t started_ms;  /* the same, CLOCK_MONOTONIC milliseconds */
    uint64_t next_delay_ms;
    bool quit; /* 'Q' received: no more starts */
} ShimSupervisor;

void shim_supervisor_init(ShimSupervisor *sv, const ShimSpec *spec);
/* A run started at now_ms (monotonic) and wall time now_unix. */
void shim_supervisor_started(ShimSupervisor *sv, uint64_t now_ms, int64_t now_unix);
/* The run ended with status at now_ms: true (and the delay before the next start
 * in *ret_delay_ms) when the policy starts it again. Growing delays: each restart
 * doubles the next one up to backoff_max_ms; a run that lasted backoff_reset_ms
 * or longer starts the series again at backoff_initial_ms. */
bool shim_supervisor_exited(ShimSupervisor *sv, const ShimSpec *spec, int status, uint64_t now_ms,
                            uint64_t *ret_delay_ms);
/* dirfd/state: "<state> <restarts> <last status or -1> <start unix> <pid>\n",
 * written atomically. */
int shim_supervisor_write(const ShimSupervisor *sv, int dirfd, pid_t pid);
const char *shim_service_state_name(ShimServiceState s);
