/* Logging: one line per event, text or JSON, to stderr. Library code logs only at
 * debug level; the boundary (API handlers, daemon start-up) logs once. */
#pragma once

#include <stdbool.h>

#include "cloche/cleanup.h"

typedef enum LogLevel {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
} LogLevel;

typedef enum LogFormat {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1,
} LogFormat;

void log_setup(LogLevel level, LogFormat format);
int log_level_from_string(const char *s, LogLevel *ret);
int log_format_from_string(const char *s, LogFormat *ret);
bool log_enabled(LogLevel level);

void log_emit(LogLevel level, const char *file, int line, const char *fmt, ...) _printf_(4, 5);

#define log_debug(...) log_emit(LOG_LEVEL_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_emit(LOG_LEVEL_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_emit(LOG_LEVEL_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__)

/* Log at error level with strerror(-r) appended via %m semantics; returns r. */
#define log_error_errno(r, ...)                                                                    \
    ({                                                                                             \
        int _r = (r);                                                                              \
        errno = _r < 0 ? -_r : _r;                                                                 \
        log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__);                                \
        _r < 0 ? _r : -_r;                                                                         \
    })
#define log_warn_errno(r, ...)                                                                     \
    ({                                                                                             \
        int _r = (r);                                                                              \
        errno = _r < 0 ? -_r : _r;                                                                 \
        log_emit(LOG_LEVEL_WARN, __FILE__, __LINE__, __VA_ARGS__);                                 \
        _r < 0 ? _r : -_r;                                                                         \
    })
