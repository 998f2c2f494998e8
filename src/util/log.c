/* Logging to stderr, text or JSON lines. Thread-safe: one write(2) per line. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloche/log.h"

static LogLevel log_min_level = LOG_LEVEL_INFO;
static LogFormat log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(LogLevel level, LogFormat format)
{
    log_min_level = level;
    log_format = format;
}

int log_level_from_string(const char *s, LogLevel *ret)
{
    for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
        if (strcmp(s, level_names[i]) == 0) {
            *ret = (LogLevel)i;
            return 0;
        }
    if (strcmp(s, "warning") == 0) {
        *ret = LOG_LEVEL_WARN;
        return 0;
    }
    return -EINVAL;
}

int log_format_from_string(const char *s, LogFormat *ret)
{
    if (strcmp(s, "text") == 0)
        *ret = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *ret = LOG_FORMAT_JSON;
    else
        return -EINVAL;
    return 0;
}

bool log_enabled(LogLevel level)
{
    return level >= log_min_level;
}

/* Append s to buf as the body of a JSON string (no quotes). Log lines are not API
 * output, so this small escaper stands in for json-c at the bottom layer. */
static size_t json_escape_into(char *buf, size_t size, size_t at, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p && at + 7 < size; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf[at++] = '\\';
            buf[at++] = (char)c;
        } else if (c == '\n') {
            buf[at++] = '\\';
            buf[at++] = 'n';
        } else if (c < 0x20) {
            buf[at++] = '\\';
            buf[at++] = 'u';
            buf[at++] = '0';
            buf[at++] = '0';
            buf[at++] = hex[c >> 4];
            buf[at++] = hex[c & 15];
        } else {
            buf[at++] = (char)c;
        }
    }
    return at;
}

void log_emit(LogLevel level, const char *file, int line, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    errno = saved_errno; /* for %m */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;

    char out[4096];
    size_t n;
    if (log_format == LOG_FORMAT_JSON) {
        int k = snprintf(out, sizeof(out),
                         "{\"time\":\"%s\",\"level\":\"%s\",\"source\":\"%s:%d\",\"msg\":\"", when,
                         level_names[level], base, line);
        n = json_escape_into(out, sizeof(out), (size_t)k, msg);
        if (n + 3 > sizeof(out))
            n = sizeof(out) - 3;
        out[n++] = '"';
        out[n++] = '}';
        out[n++] = '\n';
    } else {
        int k = snprintf(out, sizeof(out), "%s %-5s %s:%d %s\n", when, level_names[level], base,
                         line, msg);
        n = k < 0 ? 0 : (size_t)k >= sizeof(out) ? sizeof(out) - 1 : (size_t)k;
        if (n > 0 && out[n - 1] != '\n')
            out[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, out, n);
    (void)w;
    errno = saved_errno;
}
