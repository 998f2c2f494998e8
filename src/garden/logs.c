/* Reading the log files cloche-shim writes (<container>/logs/<id>.log, rotated
 * to .1, .2 ...): the history with tail and since in two passes over open
 * files (memory does not grow with the logs), then following the newest file
 * across rotations. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "garden-internal.h"

#define LOG_FILES_MAX (SERVICE_LOG_FILES_MAX + 1)
#define LOG_BUFFER (64u << 10) /* more than one record (SHIM_LOG_LINE_MAX + header) */

typedef struct LogFile {
    int fd;
    off_t end; /* where the history pass stopped */
} LogFile;

struct LogReader {
    Garden *g;
    Container *c;
    int dirfd; /* <container>/logs */
    char name[300];
    LogFile files[LOG_FILES_MAX]; /* oldest first; the last is `name` itself (fd -1 if absent) */
    size_t n_files;
    ino_t cur_ino; /* inode of the last file, 0 when absent */
    off_t cur_pos; /* what has been read of it */
    char *buf;
};

void log_reader_free(LogReader *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_files; i++)
        if (r->files[i].fd >= 0)
            close(r->files[i].fd);
    if (r->dirfd >= 0)
        close(r->dirfd);
    free(r->buf);
    container_unref(r->c);
    free(r);
}

int container_logs_open(Garden *g, Container *c, const char *process_id, LogReader **ret,
                        ApiError *reterr)
{
    ApiError ignore;
    if (spec_validate_handle(process_id, &ignore) < 0)
        return api_process_not_found(reterr, process_id);
    _cleanup_free_ char *dir = NULL;
    int r = depot_container_path(g->depot, c->rec.handle, &dir);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to find the container's directory");
    LogReader *lr = calloc(1, sizeof(*lr));
    if (!lr || !(lr->buf = malloc(LOG_BUFFER))) {
        free(lr);
        return api_internal_error(reterr, -ENOMEM, "Failed to read the logs");
    }
    atomic_fetch_add(&c->refcount, 1);
    lr->g = g;
    lr->c = c;
    lr->dirfd = -1;
    snprintf(lr->name, sizeof(lr->name), "%s.log", process_id);
    _cleanup_close_ int cdir = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cdir >= 0)
        lr->dirfd = openat(cdir, GARDEN_LOGS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    char rotated[320];
    /* The oldest rotated file first; the rotation keeps them numbered without gaps. */
    size_t n_rotated = 0;
    while (lr->dirfd >= 0 && n_rotated < SERVICE_LOG_FILES_MAX) {
        snprintf(rotated, sizeof(rotated), "%s.%zu", lr->name, n_rotated + 1);
        if (fstatat(lr->dirfd, rotated, &st, AT_SYMLINK_NOFOLLOW) < 0)
            break;
        n_rotated++;
    }
    for (size_t k = n_rotated; k >= 1; k--) {
        snprintf(rotated, sizeof(rotated), "%s.%zu", lr->name, k);
        int fd = openat(lr->dirfd, rotated, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            lr->files[lr->n_files++] = (LogFile){.fd = fd};
    }
    int fd = lr->dirfd >= 0 ? openat(lr->dirfd, lr->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (fd < 0 && lr->n_files == 0) {
        /* The daemon creates the file before it starts a process that logs. */
        _cleanup_close_ int pdir = -EBADF;
        bool known = garden_process_dir_fd(g, c, process_id, &pdir) >= 0;
        log_reader_free(lr);
        if (!known)
            return api_process_not_found(reterr, process_id);
        return api_errorf(reterr, -ENOENT, 404, GARDEN_ERR_GENERIC,
                          "Process '%s' writes no logs (start it with \"cloche_log\": true)",
                          process_id);
    }
    lr->files[lr->n_files++] = (LogFile){.fd = fd};
    if (fd >= 0 && fstat(fd, &st) == 0)
        lr->cur_ino = st.st_ino;
    *ret = lr;
    return 0;
}

/* "<sec>.<9 digits> <stdout|stderr> <text>" */
static bool parse_record(const char *s, size_t len, LogLine *ret)
{
    const char *end = s + len, *p = s;
    int64_t sec = 0, nsec = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 18)
        sec = sec * 10 + (*p++ - '0'), digits++;
    if (!digits || p == end || *p++ != '.')
        return false;
    for (digits = 0; digits < 9; digits++) {
        if (p == end || *p < '0' || *p > '9')
            return false;
        nsec = nsec * 10 + (*p++ - '0');
    }
    if (end - p >= 8 && memcmp(p, " stdout ", 8) == 0)
        ret->is_stderr = false;
    else if (end - p >= 8 && memcmp(p, " stderr ", 8) == 0)
        ret->is_stderr = true;
    else
        return false;
    p += 8;
    ret->time_ns = sec * 1000000000 + nsec;
    ret->text = p;
    ret->len = (size_t)(end - p);
    return true;
}

typedef int (*RecordFn)(const LogLine *line, void *userdata);

/* Every complete record of fd in [start, end) (end < 0: to EOF); returns the
 * offset after the last complete record, or a negative errno (or fn's). */
static off_t scan_file(LogReader *r, int fd, off_t start, off_t end, RecordFn fn, void *userdata)
{
    size_t have = 0;
    off_t pos = start;     /* file offset of buf[0] */
    bool skipping = false; /* inside a record longer than the buffer */
    for (;;) {
        size_t want = LOG_BUFFER - have;
        if (end >= 0 && (off_t)want > end - (pos + (off_t)have))
            want = (size_t)(end - (pos + (off_t)have));
        if (want == 0 && have == LOG_BUFFER) {
            /* No newline in a whole buffer: not a record; skip to the next. */
            pos += (off_t)have;
            have = 0;
            skipping = true;
            continue;
        }
        if (want == 0)
            break;
        ssize_t n = pread(fd, r->buf + have, want, pos + (off_t)have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        have += (size_t)n;
        size_t line_start = 0;
        for (;;) {
            char *nl = memchr(r->buf + line_start, '\n', have - line_start);
            if (!nl)
                break;
            size_t len = (size_t)(nl - (r->buf + line_start));
            LogLine line;
            if (!skipping && parse_record(r->buf + line_start, len, &line)) {
                int k = fn(&line, userdata);
                if (k < 0)
                    return k;
            }
            skipping = false;
            line_start += len + 1;
        }
        memmove(r->buf, r->buf + line_start, have - line_start);
        have -= line_start;
        pos += (off_t)line_start;
    }
    return pos;
}

typedef struct History {
    int64_t since_ns;
    uint64_t count, skip;
    LogLineFn fn;
    void *userdata;
} History;

static int count_line(const LogLine *line, void *userdata)
{
    History *h = userdata;
    if (line->time_ns >= h->since_ns)
        h->count++;
    return 0;
}

static int emit_line(const LogLine *line, void *userdata)
{
    History *h = userdata;
    if (line->time_ns < h->since_ns)
        return 0;
    if (h->skip) {
        h->skip--;
        return 0;
    }
    return h->fn(line, h->userdata);
}

int log_reader_history(LogReader *r, uint64_t tail, int64_t since_ns, LogLineFn fn, void *userdata)
{
    History h = {.since_ns = since_ns, .fn = fn, .userdata = userdata};
    for (size_t i = 0; i < r->n_files; i++) {
        LogFile *f = &r->files[i];
        if (f->fd < 0)
            continue;
        off_t end = scan_file(r, f->fd, 0, -1, count_line, &h);
        if (end < 0)
            return (int)end;
        f->end = end;
    }
    h.skip = tail < h.count ? h.count - tail : 0;
    for (size_t i = 0; i < r->n_files; i++) {
        LogFile *f = &r->files[i];
        if (f->fd < 0)
            continue;
        off_t k = scan_file(r, f->fd, 0, f->end, emit_line, &h);
        if (k < 0)
            return (int)k;
    }
    /* Following goes on from where the newest file was read up to. */
    LogFile *last = &r->files[r->n_files - 1];
    r->cur_pos = last->fd >= 0 ? last->end : 0;
    for (size_t i = 0; i + 1 < r->n_files; i++) {
        close(r->files[i].fd);
        r->files[i].fd = -1;
    }
    return 0;
}

static int pass_line(const LogLine *line, void *userdata)
{
    History *h = userdata;
    return h->fn(line, h->userdata);
}

int log_reader_follow(LogReader *r, LogLineFn fn, void *userdata)
{
    pthread_mutex_lock(&r->c->lock);
    bool gone = r->c->phase == PHASE_DESTROYING || r->c->phase == PHASE_GONE;
    pthread_mutex_unlock(&r->c->lock);
    if (gone)
        return -ESRCH;
    History h = {.fn = fn, .userdata = userdata};
    LogFile *cur = &r->files[r->n_files - 1];
    if (r->dirfd < 0) {
        _cleanup_free_ char *dir = NULL;
        if (depot_container_path(r->g->depot, r->c->rec.handle, &dir) < 0)
            return 0;
        _cleanup_close_ int cdir = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        r->dirfd = cdir < 0 ? -1
                            : openat(cdir, GARDEN_LOGS_DIR,
                                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->dirfd < 0)
            return 0;
    }
    /* Look for a rotation first: then the old file is complete, read it to its end. */
    struct stat st;
    bool rotated = fstatat(r->dirfd, r->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                   (cur->fd < 0 || st.st_ino != r->cur_ino);
    if (cur->fd >= 0) {
        off_t pos = scan_file(r, cur->fd, r->cur_pos, -1, pass_line, &h);
        if (pos < 0)
            return (int)pos;
        r->cur_pos = pos;
    }
    if (!rotated)
        return 0;
    int fd = openat(r->dirfd, r->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (cur->fd >= 0)
        close(cur->fd);
    cur->fd = fd;
    r->cur_ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
    off_t pos = scan_file(r, fd, 0, -1, pass_line, &h);
    if (pos < 0)
        return (int)pos;
    r->cur_pos = pos;
    return 0;
}
