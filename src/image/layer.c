/* One layer's tar, extracted safely into overlayfs's form.
 *
 * Safety: paths must be relative without "..", nothing is written through a
 * symlink (libarchive's SECURE_* flags, and our own openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) check of every parent and hardlink target), device nodes
 * and sockets are skipped (the container's /dev is its own), extended attributes
 * are dropped (a layer must not set overlayfs's own). Ownership and modes are
 * kept as numbers: the layer is seen through the container's idmapped mount.
 *
 * Whiteouts: ".wh.NAME" becomes a 0:0 character device NAME, ".wh..wh..opq"
 * marks its directory opaque (trusted.overlay.opaque for privileged overlays,
 * user.overlay.opaque for the userxattr ones of unprivileged containers). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cloche/archive-write.h"
#include "cloche/cleanup.h"
#include "image-internal.h"

#define WHITEOUT ".wh."
#define OPAQUE ".wh..wh..opq"

int layer_compression(const char *media_type, LayerCompression *ret)
{
    static const struct {
        const char *type;
        LayerCompression comp;
    } known[] = {
        {"application/vnd.oci.image.layer.v1.tar", LAYER_PLAIN},
        {"application/vnd.oci.image.layer.v1.tar+gzip", LAYER_GZIP},
        {"application/vnd.oci.image.layer.v1.tar+zstd", LAYER_ZSTD},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar", LAYER_PLAIN},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", LAYER_GZIP},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", LAYER_ZSTD},
        {"application/vnd.docker.image.rootfs.diff.tar.gzip", LAYER_GZIP},
        {"application/vnd.docker.image.rootfs.diff.tar", LAYER_PLAIN},
        {"application/vnd.docker.image.rootfs.diff.tar.zstd", LAYER_ZSTD},
    };
    for (size_t i = 0; i < ELEMENTSOF(known); i++)
        if (strcmp(media_type, known[i].type) == 0) {
            *ret = known[i].comp;
            return 0;
        }
    return -EPROTONOSUPPORT;
}

static void archive_read_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
}

static void archive_write_freep(struct archive **a)
{
    if (*a)
        archive_write_free(*a);
}

static int open_beneath(int dirfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = resolve};
    int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    return fd < 0 ? -errno : fd;
}

/* A relative path without "." or ".." components, trailing slashes removed;
 * NULL when the path is absolute or climbs. out has PATH_MAX bytes. */
static const char *clean_path(const char *in, char *out)
{
    if (!in || in[0] == '/')
        return NULL;
    size_t o = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        const char *start = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - start);
        if (len == 0 || (len == 1 && start[0] == '.'))
            continue;
        if (len == 2 && start[0] == '.' && start[1] == '.')
            return NULL;
        if (o + len + 2 >= PATH_MAX)
            return NULL;
        if (o)
            out[o++] = '/';
        memcpy(out + o, start, len);
        o += len;
    }
    out[o] = '\0';
    return out;
}

/* The parent directory of rel under dest, created if missing, never through a
 * symlink. Returns an O_PATH fd, and the last component in *ret_base. */
static int parent_dir(int dest_fd, char *rel, const char **ret_base)
{
    char *slash = strrchr(rel, '/');
    *ret_base = slash ? slash + 1 : rel;
    if (!slash) {
        int d = fcntl(dest_fd, F_DUPFD_CLOEXEC, 3);
        return d < 0 ? -errno : d;
    }
    *slash = '\0';
    _cleanup_close_ int fd = open_beneath(dest_fd, ".", O_PATH | O_DIRECTORY, 0);
    int r = 0;
    char *p = rel;
    while (p && fd >= 0) {
        char *next = strchr(p, '/');
        if (next)
            *next = '\0';
        int sub = open_beneath(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW,
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
        if (sub == -ENOENT) {
            if (mkdirat(fd, p, 0755) < 0 && errno != EEXIST)
                r = -errno;
            else
                sub = open_beneath(fd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW,
                                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
        }
        if (next)
            *next = '/';
        if (r < 0 || sub < 0) {
            *slash = '/';
            return r < 0 ? r : sub;
        }
        close(fd);
        fd = sub;
        p = next ? next + 1 : NULL;
    }
    *slash = '/';
    return TAKE_FD(fd);
}

static int make_whiteout(int dest_fd, char *rel, Failure *reterr)
{
    const char *base;
    _cleanup_close_ int dir = parent_dir(dest_fd, rel, &base);
    if (dir < 0)
        return failure_set(reterr, dir, FAILURE_REMOTE,
                           "A layer's whiteout '%s' lies beyond a symlink or a file", rel);
    _cleanup_close_ int real = open_beneath(dir, ".", O_RDONLY | O_DIRECTORY, 0);
    if (real < 0)
        return failure_errno(reterr, real, "Failed to open the directory of '%s'", rel);
    if (strcmp(base, OPAQUE) == 0) {
        if (fsetxattr(real, "trusted.overlay.opaque", "y", 1, 0) < 0 ||
            fsetxattr(real, "user.overlay.opaque", "y", 1, 0) < 0)
            return failure_errno(reterr, -errno, "Failed to mark '%s' opaque", rel);
        return 0;
    }
    const char *name = base + strlen(WHITEOUT);
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return failure_set(reterr, -EINVAL, FAILURE_REMOTE, "A layer has an invalid whiteout '%s'",
                           rel);
    if (mknodat(real, name, S_IFCHR | 0000, makedev(0, 0)) < 0 && errno != EEXIST)
        return failure_errno(reterr, -errno, "Failed to create the whiteout '%s'", rel);
    return 0;
}

/* Hardlink target check: inside dest, no symlink on the way. 0, -ENOENT (not in
 * this layer) or another error (a trick). */
static int check_link_target(int dest_fd, const char *rel)
{
    _cleanup_close_ int fd =
        open_beneath(dest_fd, rel, O_PATH | O_NOFOLLOW, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
    return fd < 0 ? fd : 0;
}

/* A hardlink to a file of an earlier layer becomes a copy of it (a link cannot
 * cross layer directories). Returns an fd to read, or -ENOENT. */
static int find_in_lowers(const int *lower_fds, size_t n, const char *rel, struct stat *st)
{
    for (size_t i = 0; i < n; i++) {
        int fd = open_beneath(lower_fds[i], rel, O_RDONLY | O_NOFOLLOW,
                              RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
        if (fd >= 0) {
            if (fstat(fd, st) == 0 && S_ISREG(st->st_mode))
                return fd;
            close(fd);
            return -EINVAL;
        }
    }
    return -ENOENT;
}

static int copy_data(struct archive *in, struct archive *out, uint64_t *budget, const char *rel,
                     Failure *reterr)
{
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        int r = archive_read_data_block(in, &buf, &size, &offset);
        if (r == ARCHIVE_EOF)
            return 0;
        if (r < ARCHIVE_WARN)
            return failure_set(reterr, -EBADMSG, FAILURE_REMOTE, "A layer is corrupt at '%s': %s",
                               rel, archive_error_string(in));
        if (size > *budget)
            return failure_set(reterr, -EFBIG, FAILURE_REMOTE,
                               "A layer extracts to more than %llu bytes",
                               (unsigned long long)IMAGE_LAYER_MAX);
        *budget -= size;
        if (archive_data_write_failed(out, archive_write_data_block(out, buf, size, offset))) {
            int e = archive_errno(out);
            if (e > 0) /* a full disk: ENOSPC, and not a corrupt layer */
                return failure_errno(reterr, -e, "Failed to write '%s'", rel);
            return failure_errno(reterr, -EIO, "Failed to write '%s': %s", rel,
                                 archive_error_string(out));
        }
    }
}

static int copy_fd(int fd, struct archive *out, const char *rel, Failure *reterr)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return failure_errno(reterr, -errno, "Failed to copy '%s'", rel);
        if (n == 0)
            return 0;
        if (archive_write_data(out, buf, (size_t)n) != n)
            return failure_errno(reterr, -EIO, "Failed to write '%s'", rel);
    }
}

/* One layer's extraction under way. */
typedef struct Extraction {
    struct archive *in, *out;
    const char *dest;
    int dest_fd;
    const int *lower_fds; /* top first */
    size_t n_lowers;
    uint64_t budget; /* bytes still allowed */
} Extraction;

/* The reader (tar, with the filters comp allows) and the disk writer. */
static int open_archives(int fd, LayerCompression comp, struct archive *in, struct archive *out,
                         Failure *reterr)
{
    archive_read_support_format_tar(in);
    archive_read_support_format_gnutar(in);
    if (comp == LAYER_GZIP)
        archive_read_support_filter_gzip(in);
    if (comp == LAYER_ZSTD || comp == LAYER_ANY)
        archive_read_support_filter_zstd(in);
    if (comp == LAYER_ANY)
        archive_read_support_filter_gzip(in);
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |
                                            ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                            ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                            ARCHIVE_EXTRACT_UNLINK);
    /* Not SECURE_NOABSOLUTEPATHS: entries are made absolute below dest here,
     * after clean_path refused every absolute or climbing name. */
    if (archive_read_open_fd(in, fd, 65536) != ARCHIVE_OK)
        return failure_set(reterr, -EBADMSG, FAILURE_REMOTE, "A layer is not a tar: %s",
                           archive_error_string(in));
    return 0;
}

/* A hard link entry: to a file of this layer (made absolute below dest), or to
 * one of a lower layer, which becomes a copy (*ret_lower_file: its fd). */
static int resolve_hard_link(Extraction *x, struct archive_entry *e, const char *rel,
                             const char *link, int *ret_lower_file, Failure *reterr)
{
    char target[PATH_MAX];
    if (!clean_path(link, target) || !*target)
        return failure_set(reterr, -EPERM, FAILURE_REMOTE,
                           "A layer has a hard link '%.200s' to a path that leaves it: "
                           "'%.200s'",
                           rel, link);
    int r = check_link_target(x->dest_fd, target);
    if (r == -ENOENT) {
        struct stat st;
        int lower_file = find_in_lowers(x->lower_fds, x->n_lowers, target, &st);
        if (lower_file < 0)
            return failure_set(reterr, -EPERM, FAILURE_REMOTE,
                               "A layer's hard link '%.200s' names '%.200s', which no "
                               "layer has as a regular file",
                               rel, target);
        *ret_lower_file = lower_file;
        archive_entry_set_hardlink(e, NULL);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, st.st_size);
        if (!archive_entry_size_is_set(e) || archive_entry_perm(e) == 0)
            archive_entry_set_perm(e, st.st_mode & 07777);
        return 0;
    }
    if (r < 0)
        return failure_set(reterr, -EPERM, FAILURE_REMOTE,
                           "A layer's hard link '%.200s' reaches '%.200s' through a "
                           "symlink",
                           rel, target);
    char full_target[PATH_MAX * 2];
    snprintf(full_target, sizeof(full_target), "%s/%s", x->dest, target);
    archive_entry_set_hardlink(e, full_target);
    return 0;
}

/* One entry whose path is clean (rel, relative to the layer): a whiteout, or a
 * file written below dest. */
static int extract_entry(Extraction *x, struct archive_entry *e, char *rel, Failure *reterr)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    if (strncmp(base, WHITEOUT, strlen(WHITEOUT)) == 0)
        return make_whiteout(x->dest_fd, rel, reterr);
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK)
        return 0;
    /* The parent must be a real directory inside the layer. */
    {
        const char *ignored;
        _cleanup_close_ int pfd = parent_dir(x->dest_fd, rel, &ignored);
        if (pfd < 0)
            return failure_set(reterr, -EPERM, FAILURE_REMOTE,
                               "A layer writes '%.200s' through a symlink or a file", rel);
    }
    archive_entry_xattr_clear(e);
    archive_entry_acl_clear(e);
    archive_entry_set_fflags(e, 0, 0);
    char full[PATH_MAX * 2];
    snprintf(full, sizeof(full), "%s/%s", x->dest, rel);
    archive_entry_set_pathname(e, full);
    _cleanup_close_ int lower_file = -1;
    const char *link = archive_entry_hardlink(e);
    int r = link ? resolve_hard_link(x, e, rel, link, &lower_file, reterr) : 0;
    if (r < 0)
        return r;
    r = archive_write_header(x->out, e);
    if (r < ARCHIVE_WARN)
        return failure_set(reterr, -EPERM, FAILURE_REMOTE,
                           "A layer's entry '%.200s' was refused: %s", rel,
                           archive_error_string(x->out));
    if (lower_file >= 0)
        r = copy_fd(lower_file, x->out, rel, reterr);
    else if (archive_entry_size(e) > 0 && !archive_entry_hardlink(e))
        r = copy_data(x->in, x->out, &x->budget, rel, reterr);
    else
        r = 0;
    if (r < 0)
        return r;
    if (archive_write_finish_entry(x->out) < ARCHIVE_WARN)
        return failure_errno(reterr, -EIO, "Failed to finish '%s': %s", rel,
                             archive_error_string(x->out));
    return 0;
}

int layer_extract(int fd, LayerCompression comp, const char *dest, const int *lower_fds,
                  size_t n_lowers, uint64_t *ret_bytes, Failure *reterr)
{
    _cleanup_close_ int dest_fd = open(dest, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dest_fd < 0)
        return failure_errno(reterr, -errno, "Failed to open '%s'", dest);
    _cleanup_(archive_read_freep) struct archive *in = archive_read_new();
    _cleanup_(archive_write_freep) struct archive *out = archive_write_disk_new();
    if (!in || !out)
        return failure_errno(reterr, -ENOMEM, "Failed to set up the extraction");
    int r = open_archives(fd, comp, in, out, reterr);
    if (r < 0)
        return r;
    Extraction x = {.in = in,
                    .out = out,
                    .dest = dest,
                    .dest_fd = dest_fd,
                    .lower_fds = lower_fds,
                    .n_lowers = n_lowers,
                    .budget = IMAGE_LAYER_MAX};
    uint64_t entries = 0;
    char rel[PATH_MAX];
    for (;;) {
        struct archive_entry *e;
        r = archive_read_next_header(in, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return failure_set(reterr, -EBADMSG, FAILURE_REMOTE, "A layer is not a valid tar: %s",
                               archive_error_string(in));
        if (++entries > IMAGE_LAYER_ENTRIES)
            return failure_set(reterr, -E2BIG, FAILURE_REMOTE, "A layer has more than %u entries",
                               IMAGE_LAYER_ENTRIES);
        const char *raw = archive_entry_pathname(e);
        if (!clean_path(raw, rel))
            return failure_set(reterr, -EPERM, FAILURE_REMOTE,
                               "A layer has a path that leaves it: '%.200s'", raw ? raw : "");
        if (!*rel)
            continue; /* the layer's root itself */
        if ((r = extract_entry(&x, e, rel, reterr)) < 0)
            return r;
    }
    if (archive_write_close(out) < ARCHIVE_WARN)
        return failure_errno(reterr, -EIO, "Failed to finish a layer: %s",
                             archive_error_string(out));
    *ret_bytes = IMAGE_LAYER_MAX - x.budget;
    return 0;
}
