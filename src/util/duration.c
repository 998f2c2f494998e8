/* Go-style duration parsing. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/duration.h"

static int unit_ns(const char *u, size_t len, double *ret)
{
    static const struct {
        const char *name;
        double ns;
    } units[] = {{"ns", 1},  {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
                 {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strlen(units[i].name) == len && memcmp(units[i].name, u, len) == 0) {
            *ret = units[i].ns;
            return 0;
        }
    return -EINVAL;
}

int duration_parse_ns(const char *s, int64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    if (strcmp(s, "0") == 0) {
        *ret = 0;
        return 0;
    }
    double total = 0;
    const char *p = s;
    while (*p) {
        if ((*p < '0' || *p > '9') && *p != '.')
            return -EINVAL;
        char *end;
        double v = strtod(p, &end);
        if (end == p)
            return -EINVAL;
        const char *u = end;
        while (*end && !((*end >= '0' && *end <= '9') || *end == '.'))
            end++;
        double mult;
        if (unit_ns(u, (size_t)(end - u), &mult) < 0)
            return -EINVAL;
        total += v * mult;
        p = end;
    }
    if (!isfinite(total) || total >= 9.2e18)
        return -ERANGE;
    *ret = (int64_t)llround(total);
    return 0;
}
