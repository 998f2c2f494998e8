/* Go-style durations ("300ms", "1.5s", "2h45m", "0") for command-line options. */
#pragma once

#include <stdint.h>

/* Parse into nanoseconds. Units: ns, us (µs), ms, s, m, h; a bare "0" is allowed.
 * Negative values and overflow are refused (-EINVAL / -ERANGE). */
int duration_parse_ns(const char *s, int64_t *ret);
