/* cloche-tar: StreamIn and StreamOut inside a container (design §4, protocol §2.1).
 *
 *   cloche-tar MODE INIT_PID INIT_START UID GID GROUPS HOME PATH
 *
 * MODE is "in" (extract the tar on stdin at PATH), "out" (write a tar of PATH to
 * stdout), "in-file" (stdin becomes the one file PATH) or "out-file" (the bytes
 * of the regular file PATH to stdout). GROUPS is a comma-separated list of
 * supplementary gids ("" for none).
 *
 * The helper enters the container before it touches a path: it joins the
 * namespaces of the container's init (user, mount, and the others, so it is as
 * confined as any process of the container; joining the mount namespace makes
 * the container's root its root and cwd), drops to the user's ids, and chdirs to
 * the user's home, so relative paths are relative to it (guardian's nstar). No
 * path can then lead out of the container: the host's file system is not in
 * this mount namespace at all. On top of that, archive entries are checked as
 * guardian's tar does not: no absolute names, no "..", nothing extracted through
 * a symlink, hardlinks only to files already extracted beneath the destination,
 * no device nodes, fifos or sockets, no setuid/setgid/sticky bits, no owners.
 *
 * Entries refused that way are reported on stderr and skipped; the rest of the
 * archive is still extracted (as tar does after an error) and the exit status is
 * 1. A malformed or truncated archive, or a compressed one, stops at once.
 * Standalone: it links only libc and libarchive, both loaded before the helper
 * enters the container, and never consults the container's NSS or gconv. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <inttypes.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cloche/archive-write.h"
#include "cloche/confine.h"
#include "cloche/enter.h"
#include "cloche/fdio.h"

#define IO_BUFFER (1u << 20)
#define GROUPS_MAX 64
#define MESSAGES_MAX 100 /* per run: an archive of a million bad entries is not a log flood */

static unsigned messages;

static void message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void message(const char *fmt, ...)
{
    if (++messages > MESSAGES_MAX) {
        if (messages == MESSAGES_MAX + 1)
            fputs("(further errors not shown)\n", stderr);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* ---- entering the container ---- */

/* glibc loads its gconv configuration once, on first use: load it now, from the
 * host, so that libarchive's charset conversions never read the container's. */
static void preload_charsets(void)
{
    const char *codeset = nl_langinfo(CODESET);
    iconv_t cd = iconv_open("UTF-8", codeset);
    if (cd != (iconv_t)-1)
        iconv_close(cd);
    cd = iconv_open(codeset, "UTF-8");
    if (cd != (iconv_t)-1)
        iconv_close(cd);
}

static int parse_u64(const char *s, uint64_t *ret)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int parse_groups(const char *s, gid_t *groups, size_t *ret_n)
{
    size_t n = 0;
    while (*s) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || (*end && *end != ',') || v > UINT32_MAX || n == GROUPS_MAX)
            return -EINVAL;
        groups[n++] = (gid_t)v;
        s = *end ? end + 1 : end;
    }
    *ret_n = n;
    return 0;
}

typedef struct Target {
    pid_t init_pid;
    uint64_t init_start;
    uid_t uid;
    gid_t gid;
    gid_t groups[GROUPS_MAX];
    size_t n_groups;
    const char *home;
    bool confined; /* CLOCHE_CONFINE was given */
    ConfinePlan confine;
    struct sock_fprog filter;
} Target;

/* A non-root user keeps no capability (the kernel clears them on the change of
 * ids; this makes sure of it). */
static int drop_capabilities(void)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
    if (syscall(SYS_capset, &head, data) < 0)
        return -1;
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

static int enter_container(const Target *t)
{
    int pidfd;
    EnterFailure f;
    int r = enter_open_init(t->init_pid, t->init_start, &pidfd, &f);
    if (r < 0 && f.step == ENTER_STEP_OPEN_INIT)
        return fail("Failed to open the container's init (pid %d): %s", (int)t->init_pid,
                    strerror(-r));
    if (r < 0)
        return fail("The container's init (pid %d) is gone", (int)t->init_pid);
    int flags;
    /* Not the pid namespace: it only matters to children. */
    r = enter_namespaces_to_join(t->init_pid, ENTER_NAMESPACES_ALL & ~CLONE_NEWPID, &flags, NULL);
    if (r < 0)
        return fail("Failed to inspect the container's namespaces: %s", strerror(-r));
    if (flags && setns(pidfd, flags) < 0)
        return fail("Failed to enter the container: %s", strerror(errno));
    close(pidfd);
    /* Become the container's root first: our host ids mean nothing in its user
     * namespace, and only a change away from its root clears the capabilities. */
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        return fail("Failed to become the container's root: %s", strerror(errno));
    if (syscall(SYS_setgroups, t->n_groups, t->groups) < 0)
        return fail("Failed to set the groups of user %u: %s", (unsigned)t->uid, strerror(errno));
    /* The container's bounding set and seccomp filter while still its root with
     * every capability (a filter without no_new_privs needs CAP_SYS_ADMIN). */
    if (t->confined && ((r = confine_drop_bounding(&t->confine)) < 0 ||
                        (r = confine_load_filter(&t->confine)) < 0))
        return fail("Failed to confine the helper: %s", strerror(-r));
    if (setresgid(t->gid, t->gid, t->gid) < 0 || setresuid(t->uid, t->uid, t->uid) < 0)
        return fail("Failed to become user %u:%u: %s", (unsigned)t->uid, (unsigned)t->gid,
                    strerror(errno));
    if (t->confined && (r = confine_set_caps(&t->confine, t->uid == 0)) < 0)
        return fail("Failed to set capabilities: %s", strerror(-r));
    if (t->uid != 0 && drop_capabilities() < 0)
        return fail("Failed to drop capabilities: %s", strerror(errno));
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    umask(022);
    if (chdir(t->home) < 0 && chdir("/") < 0)
        return fail("Failed to enter the container's root: %s", strerror(errno));
    return 0;
}

/* ---- StreamIn ---- */

/* mkdir -p: every missing component of path created by the user, mode 0755. */
static int make_directories(const char *path)
{
    size_t len = strlen(path);
    char *copy = malloc(len + 1);
    if (!copy)
        return fail("Out of memory");
    memcpy(copy, path, len + 1);
    for (char *p = copy + 1; p <= copy + len; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            fail("Failed to create directory '%s': %s", copy, strerror(e));
            free(copy);
            return 1;
        }
        *p = saved;
    }
    free(copy);
    return 0;
}

static bool has_dotdot(const char *path)
{
    for (const char *p = path; *p;) {
        const char *slash = strchrnul(p, '/');
        if (slash - p == 2 && p[0] == '.' && p[1] == '.')
            return true;
        p = *slash ? slash + 1 : slash;
    }
    return false;
}

/* A name the archive may use: relative and without "..". */
static bool name_is_safe(const char *what, const char *name)
{
    if (strlen(name) >= PATH_MAX) {
        message("Refusing '%.64s...': %s longer than %d bytes", name, what, PATH_MAX - 1);
        return false;
    }
    if (name[0] == '/') {
        message("Refusing '%s': absolute %s", name, what);
        return false;
    }
    if (has_dotdot(name)) {
        message("Refusing '%s': %s contains '..'", name, what);
        return false;
    }
    return true;
}

typedef struct Input {
    unsigned char *buffer;
    bool started;
    bool compressed;
} Input;

static ssize_t input_read(struct archive *a, void *data, const void **ret)
{
    Input *in = data;
    size_t have = 0;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, in->buffer + have, IO_BUFFER - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            archive_set_error(a, errno, "Failed to read the stream");
            return -1;
        }
        have += (size_t)n;
        /* The first bytes tell a compressed stream: guardian's tar refuses one. */
        if (!in->started && n > 0 && have < 2)
            continue;
        break;
    }
    if (!in->started) {
        in->started = true;
        if (have >= 2 && in->buffer[0] == 0x1f && in->buffer[1] == 0x8b) {
            in->compressed = true;
            archive_set_error(a, EINVAL, "The stream is gzip-compressed; send an uncompressed tar");
            return -1;
        }
    }
    *ret = in->buffer;
    return (ssize_t)have;
}

/* libarchive's message, with the errno's text when it does not say it already. */
static void archive_message(struct archive *a, const char *context)
{
    const char *text = archive_error_string(a);
    int e = archive_errno(a);
    const char *why = e > 0 ? strerror(e) : NULL;
    if (why && text && strstr(text, why))
        why = NULL;
    message("%s%s%s%s%s", context ? context : "", context ? ": " : "",
            text ? text : "unknown error", why ? ": " : "", why ? why : "");
}

static bool hardlink_is_safe(const char *target)
{
    if (!name_is_safe("hardlink target", target))
        return false;
    /* The target must be a file beneath the destination, reached without
     * symlinks: nothing else in the container can be linked in. */
    struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, target, &how, sizeof(how));
    if (fd < 0) {
        message("Refusing hardlink to '%s': %s", target, strerror(errno));
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode);
    close(fd);
    if (!ok)
        message("Refusing hardlink to '%s': not a file", target);
    return ok;
}

static bool entry_is_safe(struct archive_entry *e)
{
    const char *name = archive_entry_pathname(e);
    if (!name || !*name) {
        message("Refusing an entry without a name");
        return false;
    }
    if (!name_is_safe("name", name))
        return false;
    switch (archive_entry_filetype(e)) {
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
    case AE_IFSOCK:
        message("Refusing '%s': device nodes, fifos and sockets are not extracted", name);
        return false;
    default:
        break;
    }
    const char *link = archive_entry_hardlink(e);
    if (link && !hardlink_is_safe(link))
        return false;
    const char *symlink = archive_entry_symlink(e);
    if (archive_entry_filetype(e) == AE_IFLNK && !symlink) {
        message("Refusing '%s': a symlink without a target", name);
        return false;
    }
    return true;
}

static int copy_entry_data(struct archive *in, struct archive *out, const char *name)
{
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        int r = archive_read_data_block(in, &buf, &size, &offset);
        if (r == ARCHIVE_EOF)
            return ARCHIVE_OK;
        if (r < ARCHIVE_WARN) {
            archive_message(in, NULL);
            return r;
        }
        /* A failed write is the last one: the next would fail alike. */
        if (archive_data_write_failed(out, archive_write_data_block(out, buf, size, offset))) {
            archive_message(out, name);
            return ARCHIVE_FATAL;
        }
    }
}

static int stream_in(const char *dest)
{
    if (*dest && make_directories(dest))
        return 1;
    if (*dest && chdir(dest) < 0)
        return fail("Failed to enter '%s': %s", dest, strerror(errno));

    Input input = {.buffer = malloc(IO_BUFFER)};
    struct archive *in = archive_read_new();
    struct archive *out = archive_write_disk_new();
    if (!input.buffer || !in || !out)
        return fail("Out of memory");
    archive_read_support_format_tar(in);
    archive_read_support_format_empty(in);
    archive_write_disk_set_options(
        out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                 ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
    if (archive_read_open(in, &input, NULL, input_read, NULL) != ARCHIVE_OK) {
        if (input.compressed)
            return fail("The stream is gzip-compressed; send an uncompressed tar");
        return fail("Failed to read the archive: %s", archive_error_string(in));
    }

    int status = 0;
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(in, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            archive_message(in, "Failed to read the archive");
            status = 1;
            if (r == ARCHIVE_FATAL)
                break;
            continue;
        }
        if (!entry_is_safe(e)) {
            status = 1;
            continue; /* its data is skipped by the next header read */
        }
        /* No setuid, setgid or sticky bits; the umask does the rest. */
        archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
        r = archive_write_header(out, e);
        if (r < ARCHIVE_OK) {
            archive_message(out, NULL);
            if (r < ARCHIVE_WARN) {
                status = 1;
                if (r == ARCHIVE_FATAL)
                    break;
                continue;
            }
        }
        if (archive_entry_size(e) > 0) {
            r = copy_entry_data(in, out, archive_entry_pathname(e));
            if (r < ARCHIVE_WARN) {
                status = 1;
                if (r == ARCHIVE_FATAL)
                    break;
            }
        }
        if (archive_write_finish_entry(out) < ARCHIVE_WARN) {
            archive_message(out, NULL);
            status = 1;
        }
    }
    if (archive_write_close(out) < ARCHIVE_WARN) {
        archive_message(out, NULL);
        status = 1;
    }
    archive_write_free(out);
    archive_read_free(in);
    free(input.buffer);
    return status;
}

static int stream_in_file(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return fail("Out of memory");
    char *slash = strrchr(copy, '/');
    if (slash && slash != copy) {
        *slash = '\0';
        if (make_directories(copy)) {
            free(copy);
            return 1;
        }
    }
    free(copy);
    /* Non-blocking, as for StreamOut: a FIFO there would hold the request until
     * a reader came (ENXIO without one). Only a regular file is written. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENXIO)
        return fail("'%s' is not a regular file", path);
    if (fd < 0)
        return fail("Failed to create '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail("'%s' is not a regular file", path);
    }
    for (;;) {
        ssize_t n = splice(STDIN_FILENO, NULL, fd, NULL, IO_BUFFER, SPLICE_F_MOVE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail("Failed to write '%s': %s", path, strerror(errno));
        if (n == 0)
            break;
    }
    if (close(fd) < 0)
        return fail("Failed to write '%s': %s", path, strerror(errno));
    return 0;
}

/* ---- StreamOut ---- */

static la_ssize_t output_write(struct archive *a, void *data, const void *buf, size_t len)
{
    int r = fd_write_all(STDOUT_FILENO, buf, len);
    if (r < 0) {
        archive_set_error(a, -r, "Failed to write the stream");
        return -1;
    }
    return (la_ssize_t)len;
}

/* Guardian's naming: "dir" is archived as "dir/..." from its parent; "dir/" as
 * "./..." from inside it. */
/* Enter the directory that holds source's last component: *ret_name is what to
 * archive from there ("." for a directory named with a trailing '/'). *ret_parent
 * (malloc'd, may be NULL) keeps *ret_name's storage alive. 0, or fail()'s 1. */
static int enter_parent(const char *source, const char **ret_name, char **ret_parent)
{
    size_t len = strlen(source);
    *ret_parent = NULL;
    if (len == 0 || source[len - 1] == '/') {
        if (len && chdir(source) < 0)
            return fail("Failed to enter '%s': %s", source, strerror(errno));
        *ret_name = ".";
        return 0;
    }
    char *parent = strdup(source);
    if (!parent)
        return fail("Out of memory");
    char *slash = strrchr(parent, '/');
    if (!slash) {
        *ret_name = source;
        *ret_parent = parent;
        return 0;
    }
    *ret_name = source + (slash - parent) + 1;
    *slash = '\0';
    if (chdir(slash == parent ? "/" : parent) < 0) {
        int e = errno;
        free(parent);
        return fail("Failed to enter the parent of '%s': %s", source, strerror(e));
    }
    *ret_parent = parent;
    return 0;
}

/* The archive's format: restricted pax, as compact as GNU tar's. */
static int open_writer(struct archive *out, struct archive_entry_linkresolver *links)
{
    /* Restricted pax: an extended header only where a name or size needs one
     * (long or non-ASCII names, big files, xattrs), and no 'hdrcharset' except
     * for a name that is not UTF-8: GNU tar warns about that keyword. */
    archive_write_set_format_pax_restricted(out);
    /* Headers of small files are gathered into blocks; large data bypasses the
     * block buffer. No padding after the end-of-archive blocks. */
    archive_write_set_bytes_per_block(out, 64 << 10);
    archive_write_set_bytes_in_last_block(out, 1);
    archive_entry_linkresolver_set_strategy(links, archive_format(out));
    if (archive_write_open(out, NULL, NULL, output_write, NULL) != ARCHIVE_OK)
        return fail("Failed to start the archive: %s", archive_error_string(out));
    return 0;
}

/* One entry's data. 0, 1 when it could not all be read, -1 when the reader of
 * the archive is gone. A file that shrank since its header was written (a
 * process writing it) would be padded with zeros: 1, as GNU tar says so and
 * fails. One that grew is cut at its header's size, as tar does. */
static int copy_data(struct archive *disk, struct archive *out, void *buffer,
                     struct archive_entry *e)
{
    la_int64_t done = 0, size = archive_entry_size(e);
    for (;;) {
        la_ssize_t n = archive_read_data(disk, buffer, IO_BUFFER);
        if (n == 0 && done < size) {
            message("'%s' shrank by %lld bytes while it was read", archive_entry_pathname(e),
                    (long long)(size - done));
            return 1;
        }
        if (n == 0)
            return 0;
        done += n;
        if (n < 0) {
            archive_message(disk, NULL);
            return 1;
        }
        if (archive_write_data(out, buffer, (size_t)n) < 0) {
            archive_message(out, NULL);
            return -1;
        }
    }
}

/* One entry read from disk into the archive: 0, 1 (a problem, go on), -1 (the
 * archive broke: close it and stop), -2 (its reader is gone: stop at once). */
static int write_entry(struct archive *disk, struct archive *out,
                       struct archive_entry_linkresolver *links, struct archive_entry *e,
                       void *buffer)
{
    archive_read_disk_descend(disk);
    /* Whole-second mtimes only, as GNU tar's default format: otherwise every
     * entry needs a pax header of its own. */
    archive_entry_set_mtime(e, archive_entry_mtime(e), 0);
    archive_entry_unset_atime(e);
    archive_entry_unset_ctime(e);
    archive_entry_unset_birthtime(e);
    struct archive_entry *spare = NULL;
    archive_entry_linkify(links, &e, &spare);
    int status = 0;
    int r = archive_write_header(out, e);
    if (r < ARCHIVE_WARN) {
        archive_message(out, NULL);
        status = r == ARCHIVE_FATAL ? -1 : 1;
    } else if (archive_entry_size(e) > 0 && !archive_entry_hardlink(e)) {
        status = copy_data(disk, out, buffer, e);
        if (status < 0)
            return -2; /* the process ends now: nothing to free */
    }
    archive_entry_free(e);
    archive_entry_free(spare);
    return status;
}

static int stream_out(const char *source)
{
    const char *name = NULL;
    char *parent = NULL;
    if (enter_parent(source, &name, &parent) != 0)
        return 1;
    struct stat st;
    if (lstat(name, &st) < 0) {
        int e = errno;
        free(parent);
        return fail("Failed to read '%s': %s", source, strerror(e));
    }

    struct archive *disk = archive_read_disk_new();
    struct archive *out = archive_write_new();
    struct archive_entry_linkresolver *links = archive_entry_linkresolver_new();
    void *buffer = malloc(IO_BUFFER);
    if (!disk || !out || !links || !buffer)
        return fail("Out of memory");
    archive_read_disk_set_symlink_physical(disk);
    /* xattrs as guardian's tar --xattrs; no ACLs or file flags, which it leaves out. */
    archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_SPARSE | ARCHIVE_READDISK_NO_ACL |
                                             ARCHIVE_READDISK_NO_FFLAGS);
    if (open_writer(out, links) != 0)
        return 1;
    if (archive_read_disk_open(disk, name) != ARCHIVE_OK)
        return fail("Failed to read '%s': %s", source, archive_error_string(disk));

    int status = 0;
    for (;;) {
        struct archive_entry *e = archive_entry_new();
        int r = archive_read_next_header2(disk, e);
        if (r == ARCHIVE_EOF) {
            archive_entry_free(e);
            break;
        }
        if (r < ARCHIVE_OK) {
            archive_message(disk, NULL);
            if (r < ARCHIVE_WARN) {
                archive_entry_free(e);
                status = 1;
                if (r == ARCHIVE_FATAL)
                    break;
                continue;
            }
        }
        r = write_entry(disk, out, links, e, buffer);
        if (r == -2)
            return 1;
        if (r != 0)
            status = 1;
        if (r < 0)
            break;
    }
    if (archive_write_close(out) < ARCHIVE_WARN) {
        archive_message(out, NULL);
        status = 1;
    }
    archive_entry_linkresolver_free(links);
    archive_write_free(out);
    archive_read_free(disk);
    free(buffer);
    free(parent);
    return status;
}

static int stream_out_file(const char *path)
{
    /* Non-blocking: a FIFO's open would wait for a writer for ever (and the
     * request with it). Its read is refused below; a regular file ignores it. */
    int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fail("Failed to open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        return fail("Failed to read '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail("'%s' is not a regular file", path);
    for (;;) {
        ssize_t n = sendfile(STDOUT_FILENO, fd, NULL, IO_BUFFER);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail("Failed to read '%s': %s", path, strerror(errno));
        if (n == 0)
            break;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 9 || argc > 9 + 8)
        return fail("Usage: cloche-tar in|out|in-file|out-file INIT_PID INIT_START UID GID "
                    "GROUPS HOME PATH [CGROUP_DIR...]");
    const char *mode = argv[1];
    Target t = {.home = argv[7]};
    uint64_t pid, uid, gid;
    if (parse_u64(argv[2], &pid) < 0 || pid == 0 || pid > INT32_MAX ||
        parse_u64(argv[3], &t.init_start) < 0 || parse_u64(argv[4], &uid) < 0 || uid > UINT32_MAX ||
        parse_u64(argv[5], &gid) < 0 || gid > UINT32_MAX ||
        parse_groups(argv[6], t.groups, &t.n_groups) < 0)
        return fail("Invalid arguments");
    t.init_pid = (pid_t)pid;
    t.uid = (uid_t)uid;
    t.gid = (gid_t)gid;
    /* Names are bytes that are UTF-8 as a rule: in a UTF-8 locale libarchive
     * writes them as they are, needing no conversion (the host's C.UTF-8;
     * without it, non-ASCII names are marked binary one by one). */
    (void)setlocale(LC_CTYPE, "C.UTF-8");
    /* The container's confinement (include/cloche/confine.h), from the daemon. */
    const char *confine = getenv("CLOCHE_CONFINE");
    const char *seccomp = getenv("CLOCHE_SECCOMP");
    if (confine) {
        if (confine_parse(confine, &t.confine) < 0)
            return fail("Invalid CLOCHE_CONFINE '%s'", confine);
        t.confined = true;
    }
    if (seccomp) {
        int r = confine_filter_load(seccomp, &t.filter);
        if (r < 0)
            return fail("Failed to read the seccomp filter '%s': %s", seccomp, strerror(-r));
        t.confine.filter = &t.filter;
    }

    /* Nothing of the daemon's but stdio comes along, and nothing in the
     * container may ptrace us while we hold them. */
    syscall(SYS_close_range, 3, ~0u, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Into the container's cgroups before anything is allocated: what this
     * stream costs (page cache included) is the container's, under its limits. */
    for (int i = 9; i < argc; i++) {
        char procs[PATH_MAX];
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", argv[i]);
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            return fail("Failed to join the container's cgroup %s: %s", argv[i], strerror(errno));
        close(fd);
    }
    preload_charsets();
    if (enter_container(&t))
        return 1;

    const char *path = argv[8];
    if (strcmp(mode, "in") == 0)
        return stream_in(path);
    if (strcmp(mode, "out") == 0)
        return stream_out(path);
    if (strcmp(mode, "in-file") == 0)
        return stream_in_file(path);
    if (strcmp(mode, "out-file") == 0)
        return stream_out_file(path);
    return fail("Unknown mode '%s'", mode);
}
