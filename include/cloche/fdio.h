/* Writing a whole buffer to a file descriptor or socket. Part of the small
 * library the static helpers link too (see enter.h). */
#pragma once

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

/* write() all of data, retrying on EINTR. 0, or a negative errno (-EIO if the
 * file takes nothing). */
int fd_write_all(int fd, const void *data, size_t len);

/* send() all of data without SIGPIPE, retrying on EINTR; on a non-blocking socket
 * that is full, wait up to timeout_ms for room (0: fail at once with -EAGAIN).
 * 0, -EPIPE once the peer is gone, -ETIMEDOUT, or another negative errno. */
int fd_send_all(int fd, const void *data, size_t len, int timeout_ms);

/* Long-lived descriptors (a container's pidfd and OOM watch, thousands with
 * thousands of containers) are kept at or above fd_high_base(): half the
 * RLIMIT_NOFILE soft limit, at most FD_HIGH_BASE_MAX, read once; 0 when the limit
 * is below 8192 (then nothing moves). A process cloned with CLONE_FILES can then take its own table
 * with close_range(fd_high_base(), ~0U, CLOSE_RANGE_UNSHARE), which copies only the descriptors
 * below: a clone and exec that inherit every one of them cost the kernel 1-4 ms with 8,200 (a copy
 * of each, then a close of each at exec). */
#define FD_HIGH_BASE_MAX 16384
int fd_high_base(void);
/* fd moved to the lowest free number at or above fd_high_base() (close-on-exec),
 * the original closed; fd itself if there is no high range or no room there. */
int fd_move_high(int fd);

/* The daemon's RLIMIT_NOFILE soft limit raised to the hard one, at most
 * FD_LIMIT_WANT, before anything reads it (fd_high_base): a daemon started
 * from a shell has a soft limit of 1024, which ~500 containers or a few hundred
 * recently finished processes use up. The limit found is remembered, and
 * ret_found/ret_now (may be NULL) say both. 0, or a negative errno. */
#define FD_LIMIT_WANT 1048576
int fd_limit_raise(struct rlimit *ret_found, struct rlimit *ret_now);
/* The limit fd_limit_raise() found, set again for pid (0: the caller; a child
 * before its exec, async-signal-safe; or one just spawned, before it starts
 * anything), so what the daemon starts (shims, inits, and the processes they
 * run) sees what it would have without the raise. Nothing if not raised. */
void fd_limit_restore(pid_t pid);
