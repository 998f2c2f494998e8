/* File helpers: crash-safe writes and small reads, all relative to directory fds. */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Write data to dirfd/name atomically: write dirfd/.name.tmp, fsync it, rename it
 * over name, fsync dirfd. A crash at any point leaves either the old or the new
 * content under name, never a mix. Returns 0 or a negative errno. */
int atomic_write_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode);

/* atomic_write_at without any fsync: the file is still replaced whole by a rename,
 * but may not survive a power loss. For state that is rebuilt or cleaned up anyway. */
int atomic_write_volatile_at(int dirfd, const char *name, const void *data, size_t len,
                             mode_t mode);

/* The two halves of atomic_write_at, exposed so tests can simulate a crash between
 * them. atomic_write_stage leaves the complete, fsynced temp file in place. */
int atomic_write_stage(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
int atomic_write_commit(int dirfd, const char *name);

/* Name of the temp file atomic_write_* uses for name ("." name ".tmp"), in buf. */
int atomic_write_temp_name(const char *name, char *buf, size_t size);

/* Read all of dirfd/name (at most max bytes, else -EFBIG) into a NUL-terminated
 * malloc'd buffer. */
int read_file_at(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len);

/* The same for an already open regular file. */
int read_fd_all(int fd, size_t max, char **ret, size_t *ret_len);

/* Remove dirfd/name recursively without following symlinks and without crossing
 * into other file systems. Missing = success. */
int rm_rf_at(int dirfd, const char *name);

/* mkdir -p path (absolute or relative to cwd) with mode for created components. */
int mkdir_p(const char *path, mode_t mode);

/* A directory a tree walk must not enter: on another device than dev, or the
 * root of a mount of the same device (a bind mount, which st_dev cannot tell). */
bool is_foreign_mount(const struct statx *stx, dev_t dev);
