/* A process's output in rotated log files (design §5: the shim outlives the
 * daemon, so the logs keep being written while it is down). One record per
 * line, each written with one write() so a reader never sees half a record
 * except at the end of the file. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim.h"

#define RECORD_MAX (SHIM_LOG_LINE_MAX + 48)

static const char *const stream_names[] = {
    [SHIM_LOG_STDOUT] = "stdout", [SHIM_LOG_STDERR] = "stderr"};

size_t shim_log_format(char *buf, int stream, const char *text, size_t len,
                       const struct timespec *t)
{
    if (len > SHIM_LOG_LINE_MAX)
        len = SHIM_LOG_LINE_MAX;
    int n = snprintf(buf, 48, "%lld.%09ld %s ", (long long)t->tv_sec, (long)t->tv_nsec,
                     stream_names[stream == SHIM_LOG_STDERR]);
    memcpy(buf + n, text, len);
    buf[(size_t)n + len] = '\n';
    return (size_t)n + len + 1;
}

int shim_log_init(ShimLog *l, const char *path, uint64_t max_size, unsigned max_files)
{
    *l = (ShimLog){.path = path, .fd = -1, .max_size = max_size, .max_files = max_files};
    if (!path)
        return 0;
    l->partial[0] = malloc(SHIM_LOG_LINE_MAX);
    l->partial[1] = malloc(SHIM_LOG_LINE_MAX);
    l->record = malloc(RECORD_MAX);
    if (!l->partial[0] || !l->partial[1] || !l->record) {
        shim_log_done(l);
        return -ENOMEM;
    }
    return 0;
}

static int log_open(ShimLog *l)
{
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (l->fd < 0)
        return -errno;
    struct stat st;
    l->size = fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

/* path -> path.1 -> ... -> path.<max_files-1>; the oldest is dropped. */
static void log_rotate(ShimLog *l)
{
    shim_closep(&l->fd);
    char from[4096], to[4096];
    if (l->max_files <= 1) {
        (void)unlink(l->path);
        return;
    }
    for (unsigned i = l->max_files - 1; i >= 1; i--) {
        snprintf(to, sizeof(to), "%s.%u", l->path, i);
        if (i == 1)
            snprintf(from, sizeof(from), "%s", l->path);
        else
            snprintf(from, sizeof(from), "%s.%u", l->path, i - 1);
        if (rename(from, to) < 0 && errno == ENOENT && i == l->max_files - 1)
            (void)unlink(to); /* an older, larger max_files left it */
    }
}

static void log_record(ShimLog *l, int stream, const char *text, size_t len,
                       const struct timespec *now)
{
    size_t n = shim_log_format(l->record, stream, text, len, now);
    if (l->fd >= 0 && l->size > 0 && l->size + n > l->max_size)
        log_rotate(l);
    if (l->fd < 0 && log_open(l) < 0)
        return;
    if (l->size > 0 && l->size + n > l->max_size) { /* reopened onto a full file */
        log_rotate(l);
        if (log_open(l) < 0)
            return;
    }
    ssize_t w;
    while ((w = write(l->fd, l->record, n)) < 0 && errno == EINTR)
        ;
    if (w == (ssize_t)n)
        l->size += n;
    else if (w > 0 && ftruncate(l->fd, (off_t)l->size) < 0) /* a full disk: whole records only */
        l->size += (uint64_t)w;
}

void shim_log_write(ShimLog *l, int stream, const uint8_t *data, size_t len,
                    const struct timespec *now)
{
    if (!l->path)
        return;
    int st = stream == SHIM_LOG_STDERR;
    char *partial = l->partial[st];
    size_t *have = &l->partial_len[st];
    while (len) {
        const uint8_t *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        /* A line that outgrows the buffer is written in pieces. */
        while (*have + take >= SHIM_LOG_LINE_MAX) {
            size_t fit = SHIM_LOG_LINE_MAX - *have;
            memcpy(partial + *have, data, fit);
            log_record(l, st, partial, SHIM_LOG_LINE_MAX, now);
            *have = 0;
            data += fit;
            len -= fit;
            take -= fit;
        }
        memcpy(partial + *have, data, take);
        *have += take;
        data += take;
        len -= take;
        if (nl) {
            log_record(l, st, partial, *have, now);
            *have = 0;
            data++;
            len--;
        }
    }
}

void shim_log_flush(ShimLog *l, const struct timespec *now)
{
    for (int st = 0; l->path && st < 2; st++) {
        if (l->partial_len[st])
            log_record(l, st, l->partial[st], l->partial_len[st], now);
        l->partial_len[st] = 0;
    }
}

void shim_log_done(ShimLog *l)
{
    shim_closep(&l->fd);
    free(l->partial[0]);
    free(l->partial[1]);
    free(l->record);
    *l = (ShimLog){.fd = -1};
}
