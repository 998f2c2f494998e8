/* cp: files between the host and a container, as tar streams (StreamIn and
 * StreamOut), made and unpacked on the host with libarchive. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cloche/archive-write.h"
#include "cloche/fileio.h"

#define CP_BLOCK 65536

static void archive_freep(struct archive **a)
{
    if (*a)
        archive_free(*a);
    *a = NULL;
}
#define _cleanup_archive_ _cleanup_(archive_freep)

/* "HANDLE:PATH" splits into its two parts; anything else is a host path. */
static bool split_remote(const char *arg, char **ret_handle, const char **ret_path)
{
    const char *colon = strchr(arg, ':');
    const char *slash = strchr(arg, '/');
    if (!colon || colon == arg || (slash && slash < colon))
        return false;
    *ret_handle = strndup(arg, (size_t)(colon - arg));
    *ret_path = colon + 1;
    return *ret_handle != NULL;
}

typedef struct Upload {
    int fd;
    int error; /* the first write error, as a negative errno */
} Upload;

static la_ssize_t upload_write(struct archive *a, void *data, const void *buf, size_t len)
{
    Upload *u = data;
    char head[32];
    if (len == 0)
        return 0;
    int n = snprintf(head, sizeof(head), "%zx\r\n", len);
    int r;
    if ((r = http_write_all(u->fd, head, (size_t)n)) < 0 ||
        (r = http_write_all(u->fd, buf, len)) < 0 || (r = http_write_all(u->fd, "\r\n", 2)) < 0) {
        u->error = r;
        archive_set_error(a, -r, "sending to the daemon: %s", strerror(-r));
        return -1;
    }
    return (la_ssize_t)len;
}

static int upload_close(struct archive *a, void *data)
{
    Upload *u = data;
    if (u->error == 0) {
        int r = http_write_all(u->fd, "0\r\n\r\n", 5);
        if (r < 0)
            u->error = r;
    }
    return ARCHIVE_OK;
}

/* Archive the tree at name (relative to the current directory). -EPIPE once
 * sending failed (u->error says why). An entry tar cannot hold (a socket) is
 * said, skipped, and counted in *ret_skipped, as tar does. */
static int archive_tree(struct archive *w, const char *name, const Upload *u, unsigned *ret_skipped)
{
    _cleanup_archive_ struct archive *disk = archive_read_disk_new();
    if (!disk)
        return cli_error(-ENOMEM, "Out of memory");
    archive_read_disk_set_symlink_physical(disk);
    archive_read_disk_set_standard_lookup(disk);
    /* A file with holes is read whole (zeros in them): the data blocks below
     * are written as one stream, which a sparse entry would misplace. */
    archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_SPARSE);
    if (archive_read_disk_open(disk, name) != ARCHIVE_OK)
        return cli_error(-EIO, "Cannot read '%s': %s", name, archive_error_string(disk));
    for (;;) {
        struct archive_entry *e = archive_entry_new();
        int r = archive_read_next_header2(disk, e);
        if (r == ARCHIVE_EOF) {
            archive_entry_free(e);
            break;
        }
        if (r < ARCHIVE_WARN) {
            archive_entry_free(e);
            return cli_error(-EIO, "Cannot read '%s': %s", name, archive_error_string(disk));
        }
        archive_read_disk_descend(disk);
        /* Owners mean nothing inside the container (the daemon extracts as the
         * user); names would only leak the host's accounts. */
        archive_entry_set_uname(e, NULL);
        archive_entry_set_gname(e, NULL);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        r = archive_write_header(w, e);
        if (r < ARCHIVE_WARN && !u->error) {
            cli_error(-EINVAL, "Cannot copy '%s': %s", archive_entry_pathname(e),
                      archive_error_string(w));
            (*ret_skipped)++;
            archive_entry_free(e);
            continue;
        }
        if (r < ARCHIVE_WARN) {
            archive_entry_free(e);
            return -EPIPE;
        }
        if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
            const void *buf;
            size_t size;
            la_int64_t off;
            while ((r = archive_read_data_block(disk, &buf, &size, &off)) == ARCHIVE_OK)
                if (archive_write_data(w, buf, size) != (la_ssize_t)size) {
                    int k = u->error
                                ? -EPIPE
                                : cli_error(-EIO, "Cannot archive '%s': %s",
                                            archive_entry_pathname(e), archive_error_string(w));
                    archive_entry_free(e);
                    return k;
                }
            if (r != ARCHIVE_EOF) {
                int k = cli_error(-EIO, "Cannot read '%s': %s", archive_entry_pathname(e),
                                  archive_error_string(disk));
                archive_entry_free(e);
                return k;
            }
        }
        archive_entry_free(e);
    }
    return 0;
}

static int copy_in(const char *src, const char *handle, const char *dst, const char *user)
{
    _cleanup_free_ char *edst = url_escape(dst), *euser = url_escape(user), *target = NULL;
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r;
    struct stat st;

    if (strcmp(src, "-") != 0 && lstat(src, &st) < 0)
        return cli_error(-errno, "Cannot copy '%s': %m", src);
    if (!edst || !euser ||
        asprintf(&target, "/containers/%s/files?destination=%s&user=%s", handle, edst, euser) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "PUT", target, "Content-Type: application/x-tar\r\n", NULL, 0,
                            true)) < 0)
        return r;

    Upload u = {.fd = c.fd};
    int send_r = 0;
    unsigned skipped = 0;
    if (strcmp(src, "-") == 0) {
        char buf[CP_BLOCK];
        for (;;) {
            ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return cli_error(-errno, "Cannot read stdin: %m");
            if (n == 0)
                break;
            if (upload_write(NULL, &u, buf, (size_t)n) < 0)
                break;
        }
        upload_close(NULL, &u);
    } else {
        /* Names as the daemon's StreamOut gives them: "dir/..." from the parent,
         * or "./..." from inside a directory given with a trailing slash. */
        _cleanup_free_ char *copy1 = strdup(src), *copy2 = strdup(src);
        if (!copy1 || !copy2)
            return cli_error(-ENOMEM, "Out of memory");
        size_t len = strlen(src);
        bool contents = S_ISDIR(st.st_mode) && len > 1 && src[len - 1] == '/';
        const char *dir = contents ? src : dirname(copy1), *name = contents ? "." : basename(copy2);
        _cleanup_close_ int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cwd < 0 || chdir(dir) < 0)
            return cli_error(-errno, "Cannot enter '%s': %m", dir);
        _cleanup_archive_ struct archive *w = archive_write_new();
        if (!w)
            return cli_error(-ENOMEM, "Out of memory");
        archive_write_set_format_pax_restricted(w);
        archive_write_set_bytes_in_last_block(w, 1);
        if (archive_write_open(w, &u, NULL, upload_write, upload_close) != ARCHIVE_OK)
            return cli_error(-EIO, "Cannot start the archive: %s", archive_error_string(w));
        send_r = archive_tree(w, name, &u, &skipped);
        if (send_r >= 0 || send_r == -EPIPE)
            archive_write_close(w);
        if (fchdir(cwd) < 0)
            return cli_error(-errno, "Cannot return to the working directory: %m");
        if (send_r < 0 && send_r != -EPIPE)
            return send_r;
    }
    /* Even when sending failed (the daemon may have refused early and closed),
     * its reply says why. */
    shutdown(c.fd, SHUT_WR);
    if ((r = http_read_head(&c)) < 0) {
        if (u.error) {
            errno = -u.error;
            return cli_error(u.error, "Cannot send the files to the daemon: %m");
        }
        return r;
    }
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);
    if (u.error) {
        errno = -u.error;
        return cli_error(u.error, "Cannot send the files to the daemon: %m");
    }
    if (skipped) /* each was said; the rest is in the container */
        return -EINVAL;
    if (cli_json)
        puts("{}");
    return 0;
}

static la_ssize_t download_read(struct archive *a, void *data, const void **buf)
{
    static char block[CP_BLOCK];
    HttpConn *c = data;
    ssize_t n = http_read_body(c, block, sizeof(block));
    if (n < 0) {
        archive_set_error(a, (int)-n, "reading from the daemon: %s", strerror((int)-n));
        return -1;
    }
    *buf = block;
    return n;
}

static int copy_out(const char *handle, const char *src, const char *dst, const char *user)
{
    _cleanup_free_ char *esrc = url_escape(src), *euser = url_escape(user), *target = NULL;
    _cleanup_http_conn_ HttpConn c = {.fd = -EBADF};
    int r;

    if (!esrc || !euser ||
        asprintf(&target, "/containers/%s/files?source=%s&user=%s", handle, esrc, euser) < 0)
        return cli_error(-ENOMEM, "Out of memory");
    if ((r = http_connect(&c.fd)) < 0 ||
        (r = http_send_head(c.fd, "GET", target, NULL, NULL, 0, false)) < 0 ||
        (r = http_read_head(&c)) < 0)
        return r;
    if (c.status < 200 || c.status > 299)
        return http_report_error(&c);

    if (strcmp(dst, "-") == 0) {
        char buf[CP_BLOCK];
        for (;;) {
            ssize_t n = http_read_body(&c, buf, sizeof(buf));
            if (n < 0) {
                errno = (int)-n;
                return cli_error((int)n, "The archive from the daemon ended early: %m");
            }
            if (n == 0)
                return 0;
            if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
                return cli_error(-EIO, "Cannot write to stdout: %m");
        }
    }

    if ((r = mkdir_p(dst, 0755)) < 0) {
        errno = -r;
        return cli_error(r, "Cannot create '%s': %m", dst);
    }
    _cleanup_close_ int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0 || chdir(dst) < 0)
        return cli_error(-errno, "Cannot enter '%s': %m", dst);
    _cleanup_archive_ struct archive *a = archive_read_new(), *w = archive_write_disk_new();
    if (!a || !w)
        return cli_error(-ENOMEM, "Out of memory");
    archive_read_support_format_tar(a);
    archive_write_disk_set_options(
        w, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
               ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS |
               ARCHIVE_EXTRACT_UNLINK);
    r = 0;
    if (archive_read_open(a, &c, NULL, download_read, NULL) != ARCHIVE_OK) {
        r = cli_error(-EIO, "Cannot read the archive from the daemon: %s", archive_error_string(a));
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int k = archive_read_next_header(a, &e);
        if (k == ARCHIVE_EOF)
            break;
        if (k < ARCHIVE_WARN) {
            r = cli_error(-EIO, "Cannot read the archive from the daemon: %s",
                          archive_error_string(a));
            break;
        }
        if (archive_write_header(w, e) < ARCHIVE_WARN) {
            r = cli_error(-EIO, "Cannot write '%s': %s", archive_entry_pathname(e),
                          archive_error_string(w));
            break;
        }
        const void *buf;
        size_t size;
        la_int64_t off;
        while ((k = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
            if (archive_data_write_failed(w, archive_write_data_block(w, buf, size, off)))
                break;
        if (k != ARCHIVE_EOF && k != ARCHIVE_OK) {
            r = cli_error(-EIO, "Cannot read the archive from the daemon: %s",
                          archive_error_string(a));
            break;
        }
        if (k == ARCHIVE_OK) {
            int err = archive_errno(w);
            r = cli_error(err > 0 ? -err : -EIO, "Cannot write '%s': %s%s%s",
                          archive_entry_pathname(e), archive_error_string(w), err > 0 ? ": " : "",
                          err > 0 ? strerror(err) : "");
            break;
        }
        if (archive_write_finish_entry(w) < ARCHIVE_WARN) {
            r = cli_error(-EIO, "Cannot write '%s': %s", archive_entry_pathname(e),
                          archive_error_string(w));
            break;
        }
    }
    /* Directory times and modes are set at close. */
    if (archive_write_close(w) < ARCHIVE_WARN && r >= 0)
        r = cli_error(-EIO, "Cannot finish writing: %s", archive_error_string(w));
out:
    if (fchdir(cwd) < 0 && r >= 0)
        r = cli_error(-errno, "Cannot return to the working directory: %m");
    return r;
}

int cmd_cp(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'},
        CLI_COMMON_OPTS,
        {},
    };
    const char *user = "";
    int opt, r;
    while ((opt = getopt_long(argc, argv, "u:Jh", opts, NULL)) != -1) {
        if ((r = cli_common_opt(opt, "cp")) != 0) {
            if (r < 0)
                return r;
            continue;
        }
        if (opt != 'u')
            return cli_usage("cp", "Unknown option");
        user = optarg;
    }
    if (argc - optind != 2)
        return cli_usage("cp", "Expected: cp SRC DST, one of them HANDLE:PATH");
    const char *src = argv[optind], *dst = argv[optind + 1], *path;
    _cleanup_free_ char *h1 = NULL, *h2 = NULL;
    bool remote_src = split_remote(src, &h1, &path), remote_dst = false;
    const char *src_path = remote_src ? path : src;
    remote_dst = split_remote(dst, &h2, &path);
    const char *dst_path = remote_dst ? path : dst;
    if (remote_src == remote_dst)
        return cli_usage("cp", "Exactly one of SRC and DST must be HANDLE:PATH");
    const char *handle = remote_src ? h1 : h2;
    if ((r = check_name("handle", handle)) < 0)
        return r;
    if (!*src_path)
        return cli_usage("cp", "The source path is empty");
    return remote_src ? copy_out(handle, src_path, dst_path, user)
                      : copy_in(src_path, handle, dst_path, user);
}
