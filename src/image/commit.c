/* Commit: a container's writable layer (its overlay upper directory) written as
 * a layer tar in the image form (whiteout devices back to ".wh." names, opaque
 * directories to ".wh..wh..opq", ids shifted back to the container's), stored
 * like a pulled layer, and recorded with the container's image below it as
 * cloche/NAME:TAG. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "image-internal.h"

#define COMMIT_DEPTH_MAX 256
#define COMMIT_LINKS_MAX 65536

typedef struct Link {
    dev_t dev;
    ino_t ino;
    char *path;
} Link;

typedef struct Walk {
    struct archive *a;
    uint32_t shift;
    Link *links;
    size_t n_links;
    int err;
} Walk;

static uint32_t unshift(const Walk *w, uint32_t id)
{
    return id >= w->shift && id - w->shift < 65536 ? id - w->shift : 65534; /* nobody */
}

static bool is_opaque(int fd)
{
    char v[4];
    return (fgetxattr(fd, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y') ||
           (fgetxattr(fd, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y');
}

static int add_header(Walk *w, const char *path, const struct stat *st, mode_t type, int64_t size,
                      const char *symlink, const char *hardlink)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return -ENOMEM;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, st ? st->st_mode & 07777 : 0644);
    archive_entry_set_uid(e, st ? unshift(w, st->st_uid) : 0);
    archive_entry_set_gid(e, st ? unshift(w, st->st_gid) : 0);
    if (st)
        archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    archive_entry_set_size(e, size);
    if (symlink)
        archive_entry_set_symlink(e, symlink);
    if (hardlink) {
        archive_entry_set_hardlink(e, hardlink);
        archive_entry_set_size(e, 0);
    }
    int r = archive_write_header(w->a, e) < ARCHIVE_WARN ? -EIO : 0;
    archive_entry_free(e);
    return r;
}

/* The file's size bytes, as its header said. A file that shrank or grew while
 * it was read (a process in the container writing it) is -EBUSY: the tar
 * writer would pad the rest with zeros, or cut it, and the layer would be a
 * mix of two moments. */
static int add_file_data(Walk *w, int fd, off_t size)
{
    char buf[65536];
    off_t done = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return done == size ? 0 : -EBUSY;
        if (n > size - done)
            return -EBUSY;
        if (archive_write_data(w->a, buf, (size_t)n) != n)
            return -EIO;
        done += n;
    }
}

static int walk_dir(Walk *w, int dirfd, const char *prefix, int depth)
{
    if (depth > COMMIT_DEPTH_MAX)
        return -ELOOP;
    int dup_fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n >= sizeof(path))
            return -ENAMETOOLONG;
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return -errno;
        int r = 0;
        if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
            char wh[PATH_MAX + 8];
            snprintf(wh, sizeof(wh), "%s%s.wh.%s", prefix, *prefix ? "/" : "", de->d_name);
            r = add_header(w, wh, NULL, AE_IFREG, 0, NULL, NULL);
        } else if (S_ISDIR(st.st_mode)) {
            _cleanup_close_ int sub =
                openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                return -errno;
            r = add_header(w, path, &st, AE_IFDIR, 0, NULL, NULL);
            if (r >= 0 && is_opaque(sub)) {
                char opq[PATH_MAX + 16];
                snprintf(opq, sizeof(opq), "%s/.wh..wh..opq", path);
                r = add_header(w, opq, NULL, AE_IFREG, 0, NULL, NULL);
            }
            if (r >= 0)
                r = walk_dir(w, sub, path, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            const char *first = NULL;
            for (size_t i = 0; st.st_nlink > 1 && i < w->n_links && !first; i++)
                if (w->links[i].dev == st.st_dev && w->links[i].ino == st.st_ino)
                    first = w->links[i].path;
            if (first) {
                r = add_header(w, path, &st, AE_IFREG, 0, NULL, first);
            } else {
                _cleanup_close_ int fd =
                    openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                    return -errno;
                r = add_header(w, path, &st, AE_IFREG, st.st_size, NULL, NULL);
                if (r >= 0)
                    r = add_file_data(w, fd, st.st_size);
                if (r >= 0 && st.st_nlink > 1 && w->n_links < COMMIT_LINKS_MAX) {
                    Link *g = realloc(w->links, (w->n_links + 1) * sizeof(Link));
                    if (!g)
                        return -ENOMEM;
                    w->links = g;
                    w->links[w->n_links] = (Link){st.st_dev, st.st_ino, strdup(path)};
                    if (w->links[w->n_links].path)
                        w->n_links++;
                }
            }
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t len = readlinkat(dirfd, de->d_name, target, sizeof(target) - 1);
            if (len < 0)
                return -errno;
            target[len] = '\0';
            r = add_header(w, path, &st, AE_IFLNK, 0, target, NULL);
        } else if (S_ISFIFO(st.st_mode)) {
            r = add_header(w, path, &st, AE_IFIFO, 0, NULL, NULL);
        } /* sockets and devices stay out, as on extraction */
        if (r < 0)
            return r;
    }
    return 0;
}

int layer_dir_to_tar(int dirfd, uint32_t shift, int out_fd)
{
    Walk w = {.a = archive_write_new(), .shift = shift};
    if (!w.a)
        return -ENOMEM;
    archive_write_set_format_pax_restricted(w.a);
    int r = archive_write_open_fd(w.a, out_fd) == ARCHIVE_OK ? walk_dir(&w, dirfd, "", 0) : -EIO;
    if (archive_write_close(w.a) != ARCHIVE_OK && r >= 0)
        r = -EIO;
    archive_write_free(w.a);
    for (size_t i = 0; i < w.n_links; i++)
        free(w.links[i].path);
    free(w.links);
    return r;
}

int sha256_of_fd(int fd, char out[72], uint64_t *ret_size)
{
    Sha256 *h = NULL;
    if (sha256_new(&h) < 0)
        return -ENOMEM;
    char buf[65536];
    uint64_t size = 0;
    int r = 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        r = -errno;
    while (r >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = -errno;
        if (n <= 0)
            break;
        sha256_update(h, buf, (size_t)n);
        size += (uint64_t)n;
    }
    sha256_final(h, out);
    sha256_free(h);
    *ret_size = size;
    return r;
}

/* The layer tar of the upper directory, stored like a pulled layer; its
 * descriptor in *ret (digest owned by the caller). */
static int commit_layer(ImageStore *s, const char *upper, uint32_t uid_shift, char digest[72],
                        uint64_t *ret_size, Failure *reterr)
{
    _cleanup_close_ int tar = openat(store_tmp_fd(s), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    _cleanup_close_ int top = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (tar < 0 || top < 0)
        return failure_errno(reterr, -errno, "Failed to read the container's layer");
    int r = layer_dir_to_tar(top, uid_shift, tar);
    if (r == -EBUSY)
        return failure_input(reterr, r,
                             "A file in the container's layer changed while it was read: stop "
                             "the container first, or commit again");
    if (r < 0)
        return failure_errno(reterr, r, "Failed to write the container's layer");
    r = sha256_of_fd(tar, digest, ret_size);
    if (r < 0 || lseek(tar, 0, SEEK_SET) < 0)
        return failure_errno(reterr, r < 0 ? r : -errno, "Failed to hash the layer");
    if (!store_has_layer(s, digest + 7))
        return store_layer_from_fd(s, tar, LAYER_PLAIN, digest, NULL, 0, reterr);
    return 0;
}

int image_store_commit(ImageStore *s, const char *base_digest, const char *rootfs,
                       const char *upper, uint32_t uid_shift, const char *name_tag,
                       const ImageCommitOptions *opts, char **ret_digest, Failure *reterr)
{
    static const ImageCommitOptions none = {0};
    if (!opts)
        opts = &none;
    _cleanup_free_ char *uri = NULL;
    if (asprintf(&uri, "cloche:///%s", name_tag ? name_tag : "") < 0)
        return -ENOMEM;
    _cleanup_(image_reference_done) ImageReference ref = {0};
    int r = image_ref_parse(uri, &ref, reterr);
    if (r < 0)
        return r;
    _cleanup_free_ char *name = NULL;
    if (image_ref_name(&ref, &name) < 0)
        return -ENOMEM;
    _cleanup_free_ char *manifest = NULL, *config = NULL;
    size_t manifest_len, config_len;
    if (!base_digest || !image_digest_valid(base_digest) ||
        store_read_record(s, base_digest, "manifest", &manifest, &manifest_len) < 0 ||
        store_read_record(s, base_digest, "config", &config, &config_len) < 0)
        return failure_input(reterr, -EINVAL,
                             "The container was not created from an image the store "
                             "holds (only those can be committed)");
    if (opts->parent && strcmp(opts->parent, base_digest) != 0)
        return failure_input(reterr, -ESTALE, "The container's image is '%s', not the parent '%s'",
                             base_digest, opts->parent);
    Manifest m = {0};
    r = manifest_parse(manifest, manifest_len, "The container's image", &m, reterr);
    if (r < 0)
        return r;
    _cleanup_free_ char *stack = NULL;
    r = store_stack_string(s, &m, &stack);
    size_t n_layers = m.n_layers;
    manifest_done(&m);
    if (r < 0)
        return -ENOMEM;
    if (strcmp(stack, rootfs) != 0)
        return failure_input(reterr, -EINVAL,
                             "The container's root file system is not its image's");
    if (!opts->no_layer && n_layers + 1 > IMAGE_MAX_LAYERS)
        return failure_input(reterr, -EINVAL, "The image has %zu layers already; at most %d",
                             n_layers, IMAGE_MAX_LAYERS);

    char digest[72] = "";
    uint64_t size = 0;
    if (!opts->no_layer && (r = commit_layer(s, upper, uid_shift, digest, &size, reterr)) < 0)
        return r;
    _cleanup_free_ char *next = NULL, *next_config = NULL;
    size_t next_len = manifest_len, next_config_len = config_len;
    if (opts->config) {
        r = image_config_patch(config, config_len, opts->config, *digest ? digest : NULL,
                               base_digest, &next_config, &next_config_len);
        if (r < 0)
            return failure_errno(reterr, r, "Failed to write the new config");
        char hex[65], config_digest[72];
        image_sha256_hex(next_config, next_config_len, hex);
        snprintf(config_digest, sizeof(config_digest), "sha256:%s", hex);
        r = manifest_set_config(manifest, manifest_len, config_digest, next_config_len, &next,
                                &next_len);
        if (r < 0)
            return failure_errno(reterr, r, "Failed to write the new manifest");
        free(manifest);
        manifest = TAKE_PTR(next);
        manifest_len = next_len;
    }
    if (*digest) {
        Descriptor d = {.media_type = (char *)"application/vnd.oci.image.layer.v1.tar",
                        .digest = digest,
                        .size = size};
        r = manifest_append_layer(manifest, manifest_len, &d, &next, &next_len);
        if (r < 0)
            return failure_errno(reterr, r, "Failed to write the new manifest");
    } else {
        next = TAKE_PTR(manifest);
    }
    const char *cfg = next_config ? next_config : config;
    char hex[65], image_digest[72];
    image_sha256_hex(next, next_len, hex);
    snprintf(image_digest, sizeof(image_digest), "sha256:%s", hex);
    r = store_write_record(s, image_digest, "manifest", next, next_len);
    if (r >= 0)
        r = store_write_record(s, image_digest, "config", cfg, next_config_len);
    if (r < 0)
        return failure_errno(reterr, r, "Failed to record the image");
    r = store_set_tag(s, name, image_digest);
    if (r < 0)
        return failure_errno(reterr, r, "Failed to record the name '%s'", name);
    *ret_digest = strdup(image_digest);
    return *ret_digest ? 0 : -ENOMEM;
}
