/* The relay of one attached process (protocol §5, from the daemon's side): it
 * moves bytes between the process's shim and the client's sockets, which the
 * HTTP face only hands over.
 *
 *   shim 'O'/'E' frames -> the stdout/stderr sockets (buffered until they
 *                          connect; while unconnected the newest bytes win, once
 *                          connected the shim is read only as fast as they drain)
 *   control lines       -> 'I' stdin, 'C' stdin EOF, 'W' window size (queued in
 *                          order, written without blocking), 'S' signals (on a
 *                          connection of their own, so unread stdin cannot hold
 *                          up a kill)
 *   shim 'X' frame      -> ops->report_exit on the control connection, which is
 *                          then shut down; the output streams are closed once
 *                          delivered, so the Go client's Wait returns
 *
 * A client that closes the control connection detaches: the process runs on.
 * The relay knows nothing of HTTP or JSON: the caller decodes each control line
 * into a ProcControl and words the exit report. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ProcControlKind {
    PROC_CONTROL_NONE = 0, /* a line that asks for nothing (ignored) */
    PROC_CONTROL_STDIN,    /* data[0..len) to the process's stdin */
    PROC_CONTROL_STDIN_CLOSE,
    PROC_CONTROL_WINDOW_SIZE,
    PROC_CONTROL_SIGNAL,
} ProcControlKind;

typedef struct ProcControl {
    ProcControlKind kind;
    char *data; /* PROC_CONTROL_STDIN: malloc'd, owned by the ProcControl */
    size_t len;
    uint16_t columns, rows; /* PROC_CONTROL_WINDOW_SIZE */
    int signal;             /* PROC_CONTROL_SIGNAL: a Linux signal number */
} ProcControl;

/* Free the contents and zero it. */
void proc_control_done(ProcControl *c);

typedef struct ProcRelayOps {
    /* One line of the control connection (without its '\n'). 0 with *ret filled
     * (PROC_CONTROL_NONE for a line to ignore), or a negative errno (the line is
     * dropped). */
    int (*decode_control)(const char *line, size_t len, ProcControl *ret);
    /* The process exited: tell the client on ctl. */
    void (*report_exit)(int ctl, const char *process_id, int exit_status);
} ProcRelayOps;

/* Refcounted: the relay's own thread runs it, others hand it output sockets. */
typedef struct ProcRelay ProcRelay;

int proc_relay_new(ProcRelay **ret);
ProcRelay *proc_relay_ref(ProcRelay *r);
void proc_relay_unref(ProcRelay *r);

/* Hand the client's stdout (stream 0) or stderr (stream 1) socket to the relay.
 * true: taken (the relay closes it); false: that stream is connected or over
 * already, the caller keeps fd. */
bool proc_relay_connect_output(ProcRelay *r, int stream, int fd);

/* Make the relay detach (server shutdown); a relay that runs later detaches at
 * once. Thread-safe. */
void proc_relay_stop(ProcRelay *r);

/* Serve until the process exits and its output is delivered (or nobody comes
 * for it within a minute), or the client detaches, or proc_relay_stop. ctl: the
 * control connection (borrowed, left shut down); shim: the connection to the
 * process's shim (taken; -1 with known_exit >= 0 when the process has exited);
 * proc_dirfd: the process's directory (borrowed: its ctl socket and exit file). */
void proc_relay_run(ProcRelay *r, int ctl, const char *process_id, int shim, int known_exit,
                    int proc_dirfd, const ProcRelayOps *ops);

/* The relay's sibling for a client with no control connection (curl's
 * one-request Run): follow one process's output from its shim until it exits.
 * Each stdout (stream 1) or stderr (stream 2) piece goes to output, which
 * returns false to stop following. shim: the connection to the shim (taken; -1
 * with known_exit >= 0 when the process has exited); client: the client's socket
 * (borrowed), whose hang-up detaches; stop: checked every second (server
 * shutdown). Returns the exit status (255 when the shim went away without one),
 * or known_exit when following ended otherwise (a detach, output's false). */
typedef bool (*ProcOutputFn)(void *userdata, int stream, const void *data, size_t len);
int proc_output_follow(int shim, int known_exit, int client, const atomic_bool *stop,
                       ProcOutputFn output, void *userdata);
