/* Writing a whole buffer to a file descriptor or socket. Part of the small
 * library the static helpers link too (see enter.h). */
#pragma once

#include <stddef.h>

/* write() all of data, retrying on EINTR. 0, or a negative errno (-EIO if the
 * file takes nothing). */
int fd_write_all(int fd, const void *data, size_t len);

/* send() all of data without SIGPIPE, retrying on EINTR; on a non-blocking socket
 * that is full, wait up to timeout_ms for room (0: fail at once with -EAGAIN).
 * 0, -EPIPE once the peer is gone, -ETIMEDOUT, or another negative errno. */
int fd_send_all(int fd, const void *data, size_t len, int timeout_ms);
