/* The shim's atomic file writes (pid, exit, state): a temp file, then a rename. */
#include <fcntl.h>
#include <stdio.h>

#include "shim.h"

int shim_write_file_atomic(int dirfd, const char *tmp_name, const char *name, const char *data,
                           size_t len)
{
    _cleanup_close_ int fd =
        openat(dirfd, tmp_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            unlinkat(dirfd, tmp_name, 0);
            return r;
        }
        data += n;
        len -= (size_t)n;
    }
    if (renameat(dirfd, tmp_name, dirfd, name) < 0) {
        int r = -errno;
        unlinkat(dirfd, tmp_name, 0);
        return r;
    }
    return 0;
}
