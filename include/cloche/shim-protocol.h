/* The contract between cloched and cloche-shim, the per-process monitor (design
 * §5). Both sides include this header; nothing here allocates.
 *
 * ## Process directory
 * Each process has a directory <run>/processes/<handle>/<id>/ (the run
 * directory, depot.h; mode 0700, owned by host root) holding:
 *   spec      written by the daemon before starting the shim (format below);
 *             absent when an idle shim received the spec in its message
 *   sock      the shim's listening Unix socket (SOCK_STREAM, mode 0600)
 *   ctl       a second listening socket for control-only connections: they send
 *             'S' (and 'W') frames and receive nothing (no output, no ring, no
 *             'X'), so a signal never waits behind stdin the process is not
 *             reading. (The daemon sends 'W' on the main connection, in order
 *             with stdin.)
 *   pid       "<shim pid> <shim start time> <process host pid>\n", written by the
 *             shim (atomically: pid.tmp then rename) once the process runs
 *   exit      "<status>\n", written atomically by the shim when the process has
 *             exited: the exit code, or 128+signal when killed by a signal (a
 *             service: when it has exited and its policy starts it no more)
 *   state     services only: "<state> <restarts> <last status or -1> <start
 *             unix seconds> <pid>\n", written atomically at every change; state
 *             is running, restarting, backoff or exited
 *
 * ## Starting
 * The daemon runs `cloche-shim DIR` with fd 3 = the write end of a pipe, stdin,
 * stdout and stderr = /dev/null. The shim detaches (forks; the first process exits
 * at once, so the daemon reaps it immediately; the monitor becomes a session
 * leader and a child subreaper), reads DIR/spec, binds DIR/sock, starts the
 * process in the container, then writes ONE line to fd 3 and closes it:
 *   "ok <process host pid>\n"
 *   "err <errno> <message>\n"     (nothing left running; errno ENOENT or EACCES
 *                                  from exec mean the executable was not found /
 *                                  not executable)
 * Both sockets are listening before that line is written.
 *
 * ## Idle shims (the pool)
 * The daemon may also run `cloche-shim --idle LABEL PADDING` ahead of need, with
 * fd 3 = its end of a SOCK_SEQPACKET socket pair (LABEL names the daemon's run
 * directory, for ps too; PADDING, blanks, is room in the argv). The shim detaches as above, then
 * sends "ready <its pid>\n" and waits. The daemon hands it ONE message: "DIR"
 * (the spec is DIR/spec) or "DIR\nSPEC" (the spec itself, at most
 * SHIM_IDLE_SPEC_MAX bytes, and no DIR/spec file). From then on the shim is that
 * process's shim exactly as above (its argv rewritten to "cloche-shim DIR"), the
 * start line coming back on the same socket. An idle shim exits quietly when the
 * daemon's end closes without a message (the daemon ended or dropped it).
 * Before "ready", an idle shim whose LABEL is an absolute directory makes
 * LABEL/idle-shims/<its pid>/ (mode 0700) and binds its `sock` and `ctl` there;
 * the daemon renames that directory to the process directory before the message
 * (so a Run costs one rename, not a mkdir and two binds). Given any other DIR
 * (the rename failed, or the shim made none), the shim binds in DIR as above and
 * removes its own. Whatever is left in LABEL/idle-shims/ when a daemon starts is
 * stale and removed.
 *
 * ## The zygote
 * `cloche-shim --zygote LABEL PADDING` starts and detaches as an idle shim does
 * and sends "ready <its pid>\n", then serves: for each message "spawn" it makes a
 * SOCK_SEQPACKET pair and forks; the child takes one end as its fd 3, becomes a
 * session of its own (SIGCHLD back to the default, child subreaper), renames its
 * argv to "cloche-shim --idle LABEL" and is from then on an idle shim as above
 * ("ready", its directory, the message); the zygote answers "pid <child>\n" with
 * the other end attached (SCM_RIGHTS), or "pid -1\n" with none when it could not
 * fork. It ignores SIGCHLD (its children are reaped by the kernel) and exits
 * when the daemon's end closes.
 *
 * ## spec format
 * A sequence of records "key=value\n". Values are percent-encoded: '%', '\n' and
 * every byte < 0x20 or == 0x7f as %XX (uppercase hex); everything else literal.
 * Keys (repeatable ones marked *):
 *   path        executable: absolute, or a name searched in the PATH of env
 *   arg*        argv[1..] in order (argv[0] is path as given)
 *   env*        "K=V", the complete environment of the process
 *   dir         working directory inside the container ("/" if it does not exist)
 *   uid, gid    numeric ids inside the container
 *   group*      supplementary gid inside the container
 *   rlimit*     "<resource number> <soft> <hard>" (RLIMIT_*; "inf" = unlimited)
 *   tty         "<columns> <rows>": run on a PTY (stderr merged into stdout)
 *   init_pid    host pid of the container's init
 *   init_start  its start time (field 22 of /proc/PID/stat): the shim refuses a
 *               reused pid
 *   cgroup*     a host cgroup directory to join (its cgroup.procs is written)
 *   ring        bytes of unread output kept per stream while nobody is attached
 *   linger      seconds the shim stays after the exit while its output and status
 *               are undelivered (0 = exit as soon as the exit file is written)
 *   confine     "<hex capabilities> <0|1>": the bounding set (and root's permitted,
 *               effective and inheritable sets; another user's are emptied), and
 *               whether no_new_privs is set (include/cloche/confine.h). Without
 *               it the process keeps what its ids give it
 *   seccomp     absolute path of the compiled seccomp filter (struct sock_filter
 *               records), read once when the shim starts and installed with the
 *               `confine` record, before the change to uid/gid
 *   pea_lower*  a pea (doc/peas.md): a layer of its image, absolute, top first.
 *               With these the process gets a new mount namespace rooted at an
 *               overlay of the layers (idmapped to the init's user namespace)
 *               over pea_root/upper and pea_root/work
 *   pea_root    the directory holding the pea's upper and work (its process
 *               directory's rootfs), removed by the shim when the pea ends
 *   pea_cgroup  "1": the `cgroup` records are the pea's own groups, emptied and
 *               removed when it ends
 *   restart     "<policy> <max_restarts> <initial_ms> <max_ms> <reset_ms>": a
 *               service (policy no, on-failure, always or unless-stopped). The
 *               shim starts the process again after it ended, as the policy says
 *               (max_restarts 0 = no limit), after a delay that starts at
 *               initial_ms and doubles up to max_ms (a run of reset_ms or longer
 *               starts again at initial_ms). Across restarts the connections
 *               stay open and keep receiving output; 'X' and DIR/exit come only
 *               after the last run. A service's stdin is closed at every start,
 *               and the shim reads its output at once (no daemon connects).
 *   log         absolute path of a log file: every line of output is also
 *               written there as "<unix s>.<ns> <stdout|stderr> <text>\n"
 *   log_rotate  "<max_size> <max_files>": rotation of `log` (path.1 is the
 *               previous file ...); default SHIM_DEFAULT_LOG_SIZE x
 *               SHIM_DEFAULT_LOG_FILES
 *
 * ## Namespaces and cgroups
 * The process joins the init's user (if different from the shim's), mount, pid,
 * uts, ipc, net and cgroup namespaces (any that equal the shim's own are skipped),
 * and every listed cgroup BEFORE it execs or allocates. The shim itself stays
 * outside the container: it never joins its namespaces.
 *
 * ## Frames on a connection to DIR/sock
 * Every message both ways: u8 type, u32 payload length (little endian), payload.
 * Payloads are at most SHIM_FRAME_MAX bytes.
 * shim -> daemon:
 *   'O' stdout bytes   'E' stderr bytes
 *   'X' exit status, decimal ASCII: sent once the process has exited and its
 *       output pipes are drained; after it the shim closes the connection
 * daemon -> shim:
 *   'I' stdin bytes    'C' close stdin (EOF)
 *   'S' signal number, decimal ASCII (any signal, sent to the process)
 *   'W' window size "<columns> <rows>" (TIOCSWINSZ; ignored without a tty)
 *   'Q' quit supervising (empty payload): a service is not started again;
 *       while it waits out a back-off the shim finishes at once (Garden Stop
 *       sends it before its SIGTERM)
 * Output: bytes produced while no connection is open are kept in a ring per stream
 * (newest win, `ring` bytes); the next connection receives them first, then live
 * output. While connections are open, every connection gets every byte, and the
 * shim reads the process's output only as fast as the slowest connection drains
 * (so nothing is lost while someone reads, and nothing blocks while nobody does).
 * A connection made after the exit receives the ring's content and the 'X' frame.
 */
#pragma once

#include <stdint.h>

#define SHIM_FRAME_HEADER 5
#define SHIM_FRAME_MAX (64u << 10)
#define SHIM_DEFAULT_RING (1u << 20)
#define SHIM_IDLE_SPEC_MAX (64u << 10) /* a spec sent to an idle shim in its message */
#define SHIM_IDLE_DIRS "idle-shims"    /* LABEL/idle-shims/<pid>: an idle shim's directory */
#define SHIM_DEFAULT_LINGER 300
#define SHIM_DEFAULT_LOG_SIZE (10u << 20)
#define SHIM_DEFAULT_LOG_FILES 3

enum {
    SHIM_FRAME_STDOUT = 'O',
    SHIM_FRAME_STDERR = 'E',
    SHIM_FRAME_EXIT = 'X',
    SHIM_FRAME_STDIN = 'I',
    SHIM_FRAME_STDIN_CLOSE = 'C',
    SHIM_FRAME_SIGNAL = 'S',
    SHIM_FRAME_WINSIZE = 'W',
    SHIM_FRAME_QUIT = 'Q',
};

static inline void shim_frame_header(uint8_t out[SHIM_FRAME_HEADER], uint8_t type, uint32_t len)
{
    out[0] = type;
    out[1] = (uint8_t)len;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)(len >> 16);
    out[4] = (uint8_t)(len >> 24);
}

static inline uint32_t shim_frame_length(const uint8_t in[SHIM_FRAME_HEADER])
{
    return (uint32_t)in[1] | (uint32_t)in[2] << 8 | (uint32_t)in[3] << 16 | (uint32_t)in[4] << 24;
}
