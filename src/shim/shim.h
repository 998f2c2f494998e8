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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include "cloche/confine.h"

#define SHIM_SPEC_MAX (16u << 20)    /* bytes of DIR/spec */
#define SHIM_RING_LIMIT (256u << 20) /* largest `ring` accepted */
#define SHIM_LINGER_LIMIT 86400u     /* largest `linger` accepted, seconds */
#define SHIM_CGROUPS_MAX 32          /* `cgroup` records */
#define SHIM_GROUPS_MAX 65536        /* `group` records (NGROUPS_MAX) */
#define SHIM_CONNECTIONS_MAX 32      /* simultaneous connections to DIR/sock */
#define SHIM_QUEUE_CAP (1u << 20)    /* output queued per connection before reads pause */
#define SHIM_STDIN_CAP (1u << 20)    /* stdin bytes buffered before connection reads pause */
#define SHIM_PIPE_SIZE (1 << 20)     /* requested capacity of the output pipes */
#define SHIM_DRAIN_BUDGET (2u << 20) /* bytes per stream read after the exit, at most */

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

typedef struct ShimRlimit {
    int resource;
    struct rlimit limit;
} ShimRlimit;

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
} ShimSpec;

/* Read and validate dirfd/spec into *ret (release with shim_spec_clear). */
int shim_spec_load(int dirfd, ShimSpec *ret, ShimError *reterr);
/* Parse spec text (len bytes, modified in place; taken by *ret on success). */
int shim_spec_parse(char *text, size_t len, ShimSpec *ret, ShimError *reterr);
void shim_spec_clear(ShimSpec *spec);

/* The running process and the shim's ends of its stdio. */
typedef struct ShimProcess {
    pid_t pid;     /* host pid; the shim's child */
    int stdin_fd;  /* pipe write end, or a dup of the pty master; -1 once closed */
    int stdout_fd; /* pipe read end, or the pty master */
    int stderr_fd; /* pipe read end; -1 with a tty */
    int master_fd; /* the pty master (the same fd as stdout_fd), or -1 */
} ShimProcess;

/* Start the process of spec inside the namespaces of its init and in its cgroups;
 * returns once it has exec'd (or failed, with nothing left running). */
int shim_process_start(const ShimSpec *spec, ShimProcess *ret, ShimError *reterr);

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
