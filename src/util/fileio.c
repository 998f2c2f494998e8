/* File helpers: crash-safe writes, capped reads, a recursive remove that neither
 * follows symlinks nor crosses mount points, and mkdir -p. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/fdio.h"

/* Deeper trees make rm_rf_at fail with -ELOOP: each level holds one fd and one
 * stack frame, and a tree written by a container must not exhaust either. */
#define RM_RF_MAX_DEPTH 256

int atomic_write_temp_name(const char *name, char *buf, size_t size)
{
    if (!name || !*name || strchr(name, '/'))
        return -EINVAL;
    size_t len = strlen(name) + 5; /* "." name ".tmp" */
    if (len > NAME_MAX)
        return -ENAMETOOLONG;
    if (len >= size)
        return -ENOBUFS;
    snprintf(buf, size, ".%s.tmp", name);
    return 0;
}

/* fsync a directory given any fd for it, including an O_PATH one (which fsync
 * itself refuses) or AT_FDCWD. */
static int fsync_directory(int dirfd)
{
    _cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        return -errno;
    return 0;
}

static int atomic_write_stage_sync(int dirfd, const char *name, const void *data, size_t len,
                                   mode_t mode, bool sync)
{
    char tmp[NAME_MAX + 1];
    int r = atomic_write_temp_name(name, tmp, sizeof(tmp));
    if (r < 0)
        return r;
    if (!data && len > 0)
        return -EINVAL;

    _cleanup_close_ int fd =
        openat(dirfd, tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;

    /* A temp file left over from a crash keeps its old mode under O_TRUNC, and
     * umask may have narrowed a fresh one: set the mode asked for exactly. */
    if (fchmod(fd, mode) < 0)
        r = -errno;
    if (r >= 0)
        r = fd_write_all(fd, data, len);
    if (r >= 0 && sync && fsync(fd) < 0)
        r = -errno;
    if (r >= 0) {
        int cfd = TAKE_FD(fd);
        /* close() can report a deferred write error (NFS); EINTR still closed it. */
        if (close(cfd) < 0 && errno != EINTR)
            r = -errno;
    }
    if (r < 0) {
        /* Leave nothing half-written behind; the final name is untouched. */
        (void)unlinkat(dirfd, tmp, 0);
        return r;
    }
    return 0;
}

int atomic_write_stage(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
    return atomic_write_stage_sync(dirfd, name, data, len, mode, true);
}

int atomic_write_volatile_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
    char tmp[NAME_MAX + 1];
    int r = atomic_write_temp_name(name, tmp, sizeof(tmp));
    if (r < 0)
        return r;
    r = atomic_write_stage_sync(dirfd, name, data, len, mode, false);
    if (r < 0)
        return r;
    if (renameat(dirfd, tmp, dirfd, name) < 0) {
        r = -errno;
        (void)unlinkat(dirfd, tmp, 0);
    }
    return r;
}

int atomic_write_commit(int dirfd, const char *name)
{
    char tmp[NAME_MAX + 1];
    int r = atomic_write_temp_name(name, tmp, sizeof(tmp));
    if (r < 0)
        return r;
    if (renameat(dirfd, tmp, dirfd, name) < 0)
        return -errno;
    /* The rename is only durable once the directory itself is on disk. */
    return fsync_directory(dirfd);
}

int atomic_write_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
    int r = atomic_write_stage(dirfd, name, data, len, mode);
    if (r < 0)
        return r;
    r = atomic_write_commit(dirfd, name);
    if (r < 0) {
        char tmp[NAME_MAX + 1];
        /* Only a failed rename leaves the temp file; after it, this is a no-op. */
        if (atomic_write_temp_name(name, tmp, sizeof(tmp)) >= 0)
            (void)unlinkat(dirfd, tmp, 0);
    }
    return r;
}

int read_file_at(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len)
{
    if (!name || !ret)
        return -EINVAL;

    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
    _cleanup_close_ int fd =
        openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    return read_fd_all(fd, max, ret, ret_len);
}

int read_fd_all(int fd, size_t max, char **ret, size_t *ret_len)
{
    if (!ret)
        return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    if ((uint64_t)st.st_size > (uint64_t)max)
        return -EFBIG;

    /* Read up to max + 1 bytes: getting the extra one proves the file is too big
     * (it may have grown since fstat). */
    size_t limit = max < SIZE_MAX - 1 ? max + 1 : SIZE_MAX - 1;
    size_t cap = (size_t)st.st_size + 1; /* +1 so that EOF shows without a realloc */
    if (cap > limit)
        cap = limit;
    if (cap < 64 && limit >= 64)
        cap = 64;

    _cleanup_free_ char *buf = malloc(cap + 1);
    if (!buf)
        return -ENOMEM;
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= limit)
                break;
            size_t ncap = cap > limit / 2 ? limit : cap * 2;
            char *nbuf = realloc(buf, ncap + 1);
            if (!nbuf)
                return -ENOMEM;
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max)
        return -EFBIG;

    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    if (ret_len)
        *ret_len = len;
    return 0;
}

/* A directory we must not descend into: on another device, or the root of a
 * mount of the same device (a bind mount), where st_dev alone cannot tell. */
bool is_foreign_mount(const struct statx *stx, dev_t dev)
{
    if (makedev(stx->stx_dev_major, stx->stx_dev_minor) != dev)
        return true;
    return (stx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
           (stx->stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static int rm_rf_entry(int parent_fd, const char *name, dev_t dev, unsigned depth);

/* Empty the directory fd (taken) lives on device dev. Carries on past errors so
 * that as much as possible goes; returns the first one. */
static int rm_rf_children(int fd, dev_t dev, unsigned depth)
{
    _cleanup_closedir_ DIR *d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return r;
    }

    int ret = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0 && ret >= 0)
                ret = -errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;

        int r;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) {
            r = unlinkat(dirfd(d), de->d_name, 0) < 0 ? -errno : 0;
            if (r == -ENOENT)
                r = 0;
            else if (r == -EISDIR) /* replaced by a directory meanwhile */
                r = rm_rf_entry(dirfd(d), de->d_name, dev, depth);
        } else
            r = rm_rf_entry(dirfd(d), de->d_name, dev, depth);
        if (r < 0 && ret >= 0)
            ret = r;
    }
    return ret;
}

/* Remove parent_fd/name, where parent_fd is a directory on device dev. */
static int rm_rf_entry(int parent_fd, const char *name, dev_t dev, unsigned depth)
{
    struct statx stx;
    if (statx(parent_fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | STATX_INO,
              &stx) < 0)
        return errno == ENOENT ? 0 : -errno;

    if (!S_ISDIR(stx.stx_mode)) {
        /* Symlinks are removed themselves, never followed. */
        if (unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT)
            return -errno;
        return 0;
    }

    if (is_foreign_mount(&stx, dev))
        return -EBUSY;
    if (depth >= RM_RF_MAX_DEPTH)
        return -ELOOP;

    _cleanup_close_ int fd =
        openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;

    /* Check again what we actually opened: the entry may have been replaced by a
     * mount point or another directory since statx. */
    struct statx opened;
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, &opened) < 0)
        return -errno;
    if (is_foreign_mount(&opened, dev))
        return -EBUSY;

    int r = rm_rf_children(TAKE_FD(fd), dev, depth + 1);
    if (r < 0)
        return r;
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int rm_rf_at(int dirfd, const char *name)
{
    if (!name || !*name)
        return -EINVAL;

    _cleanup_free_ char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    /* Trailing slashes name the same entry. */
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';

    char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return -EINVAL;

    /* Work from the parent directory so the last component is never followed. */
    _cleanup_close_ int parent_fd = -EBADF;
    int pfd = dirfd;
    if (slash) {
        *slash = '\0';
        parent_fd = openat(dirfd, slash == copy ? "/" : copy, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (parent_fd < 0)
            return errno == ENOENT ? 0 : -errno;
        pfd = parent_fd;
    }

    struct stat st;
    if (fstatat(pfd, ".", &st, 0) < 0)
        return -errno;
    return rm_rf_entry(pfd, base, st.st_dev, 0);
}

int mkdir_p(const char *path, mode_t mode)
{
    if (!path || !*path)
        return -EINVAL;

    _cleanup_free_ char *p = strdup(path);
    if (!p)
        return -ENOMEM;

    /* Create each prefix ending before a '/', then the whole path. */
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (!end && (*s != '/' || s[-1] == '/'))
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdirat(AT_FDCWD, p, mode) < 0) {
            if (errno != EEXIST)
                return -errno;
            struct stat st;
            if (stat(p, &st) < 0)
                return -errno;
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        }
        *s = saved;
        if (end)
            break;
    }
    return 0;
}
