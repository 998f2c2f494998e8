/* The daemon's clock: CLOCK_MONOTONIC, for deadlines, timeouts and durations
 * (never for dates). Inline, so the static helpers (cloche-shim, cloche-tar)
 * use the same code without the core library. */
#pragma once

#include <stdint.h>
#include <time.h>

static inline int64_t clock_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t clock_monotonic_ms(void)
{
    return clock_monotonic_ns() / 1000000;
}
