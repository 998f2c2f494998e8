/* A minimal TAP producer for unit tests: ok(), is_int(), is_str(), then
 * tap_done() prints the plan and returns the exit status. */
#pragma once

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

static inline bool __attribute__((format(printf, 4, 5)))
tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    tap_count++;
    printf("%s %d - ", pass ? "ok" : "not ok", tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!pass) {
        tap_failed++;
        printf("#   Failed at %s:%d\n", file, line);
    }
    fflush(stdout);
    return pass;
}

#define is_int(got, want, ...)                                                                     \
    ({                                                                                             \
        long long _g = (long long)(got), _w = (long long)(want);                                   \
        bool _p = ok(_g == _w, __VA_ARGS__);                                                       \
        if (!_p)                                                                                   \
            printf("#   got %lld, want %lld\n", _g, _w);                                           \
        _p;                                                                                        \
    })

#define is_u64(got, want, ...)                                                                     \
    ({                                                                                             \
        uint64_t _g = (uint64_t)(got), _w = (uint64_t)(want);                                      \
        bool _p = ok(_g == _w, __VA_ARGS__);                                                       \
        if (!_p)                                                                                   \
            printf("#   got %" PRIu64 ", want %" PRIu64 "\n", _g, _w);                             \
        _p;                                                                                        \
    })

#define is_str(got, want, ...)                                                                     \
    ({                                                                                             \
        const char *_g = (got), *_w = (want);                                                      \
        bool _p = ok(_g && _w && strcmp(_g, _w) == 0, __VA_ARGS__);                                \
        if (!_p)                                                                                   \
            printf("#   got '%s', want '%s'\n", _g ? _g : "(null)", _w ? _w : "(null)");           \
        _p;                                                                                        \
    })

static inline int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}
