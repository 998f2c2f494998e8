/* cloche build: the files a COPY or ADD sends, as one tar made on the host
 * (into a memfd) from the build context, never from outside it, with the
 * digest of their content (names, types, modes, sizes, bytes and link
 * targets; not times) for the step's cache key. A local tar archive given to
 * ADD is unpacked: its entries are sent instead of the file. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-context.h"
#include "cli.h"

#define CONTEXT_DEPTH_MAX 128
#define CONTEXT_ENTRIES_MAX 1000000
#define CONTEXT_BYTES_MAX (16ull << 30)
#define CONTEXT_SOURCES_MAX 1024

typedef struct Packer {
    struct archive *a;
    EVP_MD_CTX *md;
    const char *where;
    uint64_t entries, bytes;
} Packer;

static void hash_field(Packer *p, const void *data, size_t len)
{
    EVP_DigestUpdate(p->md, data, len);
    EVP_DigestUpdate(p->md, "", 1);
}

static int add_entry(Packer *p, const char *name, const struct stat *st, const char *link,
                     int data_fd, struct archive *data_src)
{
    if (++p->entries > CONTEXT_ENTRIES_MAX)
        return cli_error(-E2BIG, "%s: more than %d files", p->where, CONTEXT_ENTRIES_MAX);
    p->bytes += S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
    if (p->bytes > CONTEXT_BYTES_MAX)
        return cli_error(-EFBIG, "%s: more than %llu bytes", p->where,
                         (unsigned long long)CONTEXT_BYTES_MAX);
    char meta[96];
    int n = snprintf(meta, sizeof(meta), "%o %lld", (unsigned)st->st_mode,
                     S_ISREG(st->st_mode) ? (long long)st->st_size : 0LL);
    hash_field(p, name, strlen(name));
    hash_field(p, meta, (size_t)n);
    if (link)
        hash_field(p, link, strlen(link));

    struct archive_entry *e = archive_entry_new();
    if (!e)
        return cli_error(-ENOMEM, "Out of memory");
    archive_entry_set_pathname(e, name);
    archive_entry_set_mode(e, st->st_mode);
    archive_entry_set_uid(e, 0); /* as docker: root owns what COPY brings */
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    archive_entry_set_size(e, S_ISREG(st->st_mode) ? st->st_size : 0);
    if (link)
        archive_entry_set_symlink(e, link);
    int r = archive_write_header(p->a, e) < ARCHIVE_WARN ? -EIO : 0;
    archive_entry_free(e);
    if (r < 0)
        return cli_error(r, "%s: cannot write the archive: %s", p->where,
                         archive_error_string(p->a));
    if (!S_ISREG(st->st_mode))
        return 0;
    char buf[65536];
    for (int64_t left = st->st_size; left > 0;) {
        ssize_t got;
        if (data_src) {
            got = archive_read_data(data_src, buf, sizeof(buf));
        } else {
            got = read(data_fd, buf, sizeof(buf));
            if (got < 0 && errno == EINTR)
                continue;
        }
        if (got <= 0)
            return cli_error(got < 0 ? -EIO : -ENODATA, "%s: cannot read '%s'%s", p->where, name,
                             got < 0 ? "" : ": it shrank while being read");
        if ((int64_t)got > left)
            got = (ssize_t)left;
        EVP_DigestUpdate(p->md, buf, (size_t)got);
        if (archive_write_data(p->a, buf, (size_t)got) != got)
            return cli_error(-EIO, "%s: cannot write the archive", p->where);
        left -= got;
    }
    return 0;
}

/* name: the entry's name in the tar; dirfd/base: where it is on the host. */
static int pack_path(Packer *p, int parent, const char *base, const char *name, int depth)
{
    if (depth > CONTEXT_DEPTH_MAX)
        return cli_error(-ELOOP, "%s: directories deeper than %d", p->where, CONTEXT_DEPTH_MAX);
    struct stat st;
    if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return cli_error(-errno, "%s: cannot read '%s': %m", p->where, name);
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t len = readlinkat(parent, base, target, sizeof(target) - 1);
        if (len < 0)
            return cli_error(-errno, "%s: cannot read '%s': %m", p->where, name);
        target[len] = '\0';
        return add_entry(p, name, &st, target, -1, NULL);
    }
    if (S_ISREG(st.st_mode)) {
        _cleanup_close_ int fd = openat(parent, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return cli_error(-errno, "%s: cannot read '%s': %m", p->where, name);
        return add_entry(p, name, &st, NULL, fd, NULL);
    }
    if (!S_ISDIR(st.st_mode))
        return 0; /* devices, sockets and fifos stay out, as StreamIn's */
    int r = *name ? add_entry(p, name, &st, NULL, -1, NULL) : 0;
    if (r < 0)
        return r;
    int sub = openat(parent, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    _cleanup_closedir_ DIR *d = sub >= 0 ? fdopendir(sub) : NULL;
    if (!d) {
        r = cli_error(-errno, "%s: cannot read '%s': %m", p->where, *name ? name : ".");
        if (sub >= 0)
            close(sub);
        return r;
    }
    /* Sorted, so the digest does not depend on the directory's order. */
    struct dirent **list = NULL;
    int n = scandirat(dirfd(d), ".", &list, NULL, alphasort);
    if (n < 0)
        return cli_error(-errno, "%s: cannot read '%s': %m", p->where, *name ? name : ".");
    for (int i = 0; i < n; i++) {
        const char *child = list[i]->d_name;
        if (r >= 0 && strcmp(child, ".") != 0 && strcmp(child, "..") != 0) {
            _cleanup_free_ char *path = NULL;
            if (asprintf(&path, "%s%s%s", name, *name ? "/" : "", child) < 0)
                r = cli_error(-ENOMEM, "Out of memory");
            else
                r = pack_path(p, dirfd(d), child, path, depth + 1);
        }
        free(list[i]);
    }
    free(list);
    return r;
}

static void archive_read_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
    *a = NULL;
}

/* A local archive (tar, possibly compressed) for ADD, read from its start;
 * NULL if the file is not one. */
static struct archive *open_archive(const char *ctx_real, const char *src)
{
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/%s", ctx_real, src) < 0)
        return NULL;
    for (int pass = 0; pass < 2; pass++) {
        struct archive *a = archive_read_new();
        if (!a)
            return NULL;
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        struct archive_entry *e;
        if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK ||
            (pass == 0 && archive_read_next_header(a, &e) != ARCHIVE_OK)) {
            archive_read_free(a);
            return NULL;
        }
        if (pass == 1)
            return a;
        archive_read_free(a); /* it is one: again, from the start */
    }
    return NULL;
}

static bool name_is_safe(const char *name)
{
    for (const char *p = name; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += len;
        while (*p == '/')
            p++;
    }
    return true;
}

static int pack_archive(Packer *p, struct archive *in, const char *path)
{
    struct archive_entry *e;
    int r = 0, k;
    while ((k = archive_read_next_header(in, &e)) == ARCHIVE_OK && r >= 0) {
        const char *name = archive_entry_pathname(e);
        while (name && (*name == '/' || (name[0] == '.' && name[1] == '/')))
            name += *name == '/' ? 1 : 2;
        if (!name || !*name || strcmp(name, ".") == 0)
            continue;
        if (!name_is_safe(name))
            return cli_error(-EINVAL, "%s: '%s' holds '%s', which leads out of the destination",
                             p->where, path, name);
        const char *hardlink = archive_entry_hardlink(e);
        if (hardlink)
            return cli_error(-EOPNOTSUPP, "%s: '%s' holds a hard link ('%s'): not supported",
                             p->where, path, name);
        struct stat st = *archive_entry_stat(e);
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
            continue;
        _cleanup_free_ char *copy = strdup(name);
        if (!copy)
            return cli_error(-ENOMEM, "Out of memory");
        r = add_entry(p, copy, &st, S_ISLNK(st.st_mode) ? archive_entry_symlink(e) : NULL, -1, in);
    }
    if (r >= 0 && k != ARCHIVE_EOF)
        r = cli_error(-EINVAL, "%s: cannot read the archive '%s': %s", p->where, path,
                      archive_error_string(in));
    return r;
}

/* The source, relative to the context, must stay inside it. */
static int check_inside(int ctx, const char *ctx_real, const char *src, const char *where)
{
    _cleanup_free_ char *real = NULL;
    char proc[64];
    _cleanup_close_ int fd = openat(ctx, src, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return cli_error(-errno, "%s: '%s' is not in the build context: %m", where, src);
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    real = realpath(proc, NULL);
    size_t n = strlen(ctx_real);
    if (!real || strncmp(real, ctx_real, n) != 0 ||
        (real[n] != '\0' && real[n] != '/' && strcmp(ctx_real, "/") != 0))
        return cli_error(-EPERM, "%s: '%s' leads out of the build context", where, src);
    return 0;
}

/* Append a copy of str to the NULL-terminated list *paths of *n. */
static int paths_push(char ***paths, size_t *n, const char *str)
{
    char **grown = realloc(*paths, (*n + 2) * sizeof(char *));
    if (!grown)
        return cli_error(-ENOMEM, "Out of memory");
    *paths = grown;
    grown[*n + 1] = NULL;
    if (!(grown[*n] = strdup(str)))
        return cli_error(-ENOMEM, "Out of memory");
    (*n)++;
    return 0;
}

/* The sources as paths inside the context: wildcards expand there, and each
 * match is a source. *ret (NULL-terminated) is freed with strv_free. */
static int expand_sources(const char *ctx_real, char **sources, size_t n_sources, const char *where,
                          char ***ret, size_t *ret_n)
{
    _cleanup_(strv_freep) char **paths = NULL;
    size_t n = 0;
    glob_t g = {0};
    int r = 0;
    for (size_t i = 0; i < n_sources && r >= 0; i++) {
        const char *src = sources[i];
        while (*src == '/')
            src++;
        if (!strpbrk(src, "*?[")) {
            r = paths_push(&paths, &n, *src ? src : ".");
            continue;
        }
        _cleanup_free_ char *pattern = NULL;
        if (asprintf(&pattern, "%s/%s", ctx_real, src) < 0) {
            r = cli_error(-ENOMEM, "Out of memory");
            break;
        }
        size_t before = g.gl_pathc;
        if (glob(pattern, before ? GLOB_APPEND : 0, NULL, &g) != 0 || g.gl_pathc == before)
            r = cli_error(-ENOENT, "%s: no file in the build context matches '%s'", where, src);
        for (size_t k = before; r >= 0 && k < g.gl_pathc; k++)
            r = paths_push(&paths, &n, g.gl_pathv[k] + strlen(ctx_real) + 1);
    }
    globfree(&g);
    if (r < 0)
        return r;
    if (n > CONTEXT_SOURCES_MAX)
        return cli_error(-E2BIG, "%s: more than %d sources", where, CONTEXT_SOURCES_MAX);
    *ret = TAKE_PTR(paths);
    *ret_n = n;
    return 0;
}

/* Whether dest names a directory: several sources, a trailing '/' or "/.", a
 * directory source, or (ADD) an archive to unpack. */
static int dest_names_dir(int ctx, const char *ctx_real, char **paths, size_t n, const char *dest,
                          bool add, const char *where, bool *ret)
{
    size_t dlen = strlen(dest);
    bool dest_is_dir =
        n > 1 || dest[dlen - 1] == '/' || (dlen >= 2 && strcmp(dest + dlen - 2, "/.") == 0);
    for (size_t i = 0; i < n && !dest_is_dir; i++) {
        struct stat st;
        int r = check_inside(ctx, ctx_real, paths[i], where);
        if (r < 0)
            return r;
        if (fstatat(ctx, paths[i], &st, 0) == 0 && S_ISDIR(st.st_mode))
            dest_is_dir = true;
        _cleanup_(archive_read_freep) struct archive *a =
            add && S_ISREG(st.st_mode) ? open_archive(ctx_real, paths[i]) : NULL;
        if (a)
            dest_is_dir = true;
    }
    *ret = dest_is_dir;
    return 0;
}

/* Where StreamIn extracts: the destination directory, or the file's parent
 * (*ret_file_name: the file's name there). */
static int split_dest(const char *dest, bool dest_is_dir, const char *where, char **ret_dir,
                      char **ret_file_name)
{
    _cleanup_free_ char *dir = strdup(dest), *file_name = NULL;
    if (!dir)
        return cli_error(-ENOMEM, "Out of memory");
    if (!dest_is_dir) {
        char *slash = strrchr(dir, '/');
        file_name = strdup(slash + 1);
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (!file_name || !*file_name)
            return cli_error(-EINVAL, "%s: invalid destination '%s'", where, dest);
    }
    *ret_dir = TAKE_PTR(dir);
    *ret_file_name = TAKE_PTR(file_name);
    return 0;
}

/* One source into the archive: an archive's contents (ADD), a directory's
 * contents, or the file itself (named file_name when given). */
static int pack_source(Packer *p, int ctx, const char *ctx_real, const char *src, bool add,
                       const char *file_name, const char *where)
{
    int r = check_inside(ctx, ctx_real, src, where);
    if (r < 0)
        return r;
    struct stat st;
    if (fstatat(ctx, src, &st, 0) < 0)
        return cli_error(-errno, "%s: cannot read '%s': %m", where, src);
    hash_field(p, src, strlen(src));
    _cleanup_(archive_read_freep) struct archive *a =
        add && S_ISREG(st.st_mode) ? open_archive(ctx_real, src) : NULL;
    const char *slash = strrchr(src, '/');
    const char *base = slash ? slash + 1 : src;
    if (a)
        return pack_archive(p, a, src);
    if (S_ISDIR(st.st_mode)) {
        /* A directory's contents, not the directory itself, as docker. */
        _cleanup_close_ int sub = openat(ctx, src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return sub < 0 ? cli_error(-errno, "%s: cannot read '%s': %m", where, src)
                       : pack_path(p, sub, ".", "", 0);
    }
    /* The source itself (followed if a link: it was checked to stay inside). */
    _cleanup_close_ int fd = openat(ctx, src, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? cli_error(-errno, "%s: cannot read '%s': %m", where, src)
                  : add_entry(p, file_name ? file_name : base, &st, NULL, fd, NULL);
}

/* Every source as a tar into mem; its SHA-256 (of names and contents) as hex. */
static int pack_all(int mem, int ctx, const char *ctx_real, char **paths, size_t n, bool add,
                    const char *file_name, const char *where, char digest_hex[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    Packer p = {.a = archive_write_new(), .md = md, .where = where};
    if (!md || !p.a || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        if (p.a)
            archive_write_free(p.a);
        return cli_error(-ENOMEM, "Out of memory");
    }
    archive_write_set_format_pax_restricted(p.a);
    archive_write_set_bytes_in_last_block(p.a, 1);
    int r =
        archive_write_open_fd(p.a, mem) == ARCHIVE_OK ? 0 : cli_error(-EIO, "%s: archive", where);
    for (size_t i = 0; r >= 0 && i < n; i++)
        r = pack_source(&p, ctx, ctx_real, paths[i], add, file_name, where);
    if (archive_write_close(p.a) != ARCHIVE_OK && r >= 0)
        r = cli_error(-EIO, "%s: cannot finish the archive", where);
    archive_write_free(p.a);
    unsigned char digest[32];
    unsigned dlen = 0;
    EVP_DigestFinal_ex(md, digest, &dlen);
    EVP_MD_CTX_free(md);
    if (r < 0)
        return r;
    for (size_t i = 0; i < 32; i++)
        snprintf(digest_hex + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

int context_pack(const char *context, char **sources, size_t n_sources, const char *dest, bool add,
                 const char *where, ContextPack *ret)
{
    _cleanup_close_ int ctx = open(context, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_free_ char *ctx_real = realpath(context, NULL);
    if (ctx < 0 || !ctx_real)
        return cli_error(-errno, "Cannot open the build context '%s': %m", context);
    _cleanup_(strv_freep) char **paths = NULL;
    size_t n = 0;
    int r = expand_sources(ctx_real, sources, n_sources, where, &paths, &n);
    if (r < 0)
        return r;
    bool dest_is_dir;
    if ((r = dest_names_dir(ctx, ctx_real, paths, n, dest, add, where, &dest_is_dir)) < 0)
        return r;
    _cleanup_free_ char *dir = NULL, *file_name = NULL;
    if ((r = split_dest(dest, dest_is_dir, where, &dir, &file_name)) < 0)
        return r;
    _cleanup_close_ int mem = memfd_create("cloche-build", MFD_CLOEXEC);
    if (mem < 0)
        return cli_error(-ENOMEM, "Out of memory");
    r = pack_all(mem, ctx, ctx_real, paths, n, add, file_name, where, ret->digest);
    if (r < 0)
        return r;
    struct stat st;
    if (fstat(mem, &st) < 0 || lseek(mem, 0, SEEK_SET) < 0)
        return cli_error(-errno, "%s: archive: %m", where);
    ret->size = (uint64_t)st.st_size;
    ret->fd = TAKE_FD(mem);
    ret->dir = TAKE_PTR(dir);
    return 0;
}

void context_pack_done(ContextPack *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -EBADF;
    free(p->dir);
    p->dir = NULL;
}
