/* Private to src/api: the process stream relay (attach.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cloche/proc-relay.h"

/* Run/Attach after the process is found: send the hijack reply head (status 201
 * or 200; HTTP/1.minor), the first line, and relay until the exit or a detach.
 * shim: the connection to the process's shim (taken), or -1 with known_exit >= 0
 * when the process has already exited. proc_dirfd (taken): the process's
 * directory, whose ctl socket carries signals and window sizes. */
void api_attach_serve(int ctl, int minor, int status, const char *process_id, int shim,
                      int known_exit, int proc_dirfd);

/* curl's one-request form of Run (Accept: application/x-ndjson): one chunked
 * stream of JSON lines, {"process_id"} first, then {"source":1|2,"data"} for the
 * output and {"exit_status"} last. A client that hangs up detaches. */
void api_attach_serve_ndjson(int fd, int minor, const char *process_id, int shim, int known_exit);

/* A stdout/stderr request: reply 200 and hand fd to the attachment sid. Returns
 * true if the attachment took fd (the caller must then not close it). */
bool api_attach_stream(int fd, int minor, const char *sid, bool stderr_stream);

/* Server shutdown: every relay detaches. */
void api_attachments_stop(void);

/* control.c: one control line of a Run/Attach connection (protocol §5.3, without
 * its '\n') as what the relay should do; PROC_CONTROL_NONE for a line that is
 * malformed or asks for nothing. 0, or -ENOMEM. *ret is always initialised
 * (free it with proc_control_done). */
int api_control_decode(const char *line, size_t len, ProcControl *ret);
