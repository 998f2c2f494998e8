/* The shim's atomic file writes (pid, exit, state): a temp file, then a rename;
 * or, for a file's first version, created whole under its own name (one
 * metadata change of the file system less on a Run's path; a reader that comes
 * between the create and the one small write finds it empty, as it would have
 * found it missing). */
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

int shim_write_file_first(int dirfd, const char *tmp_name, const char *name, const char *data,
                          size_t len)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno == EEXIST)
        return shim_write_file_atomic(dirfd, tmp_name, name, data, len);
    if (fd < 0)
        return -errno;
    ssize_t n;
    while ((n = write(fd, data, len)) < 0 && errno == EINTR)
        ;
    int r = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    if (r < 0)
        unlinkat(dirfd, name, 0);
    return r;
}
