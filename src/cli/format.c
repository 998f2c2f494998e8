/* Units in and out: sizes in KiB/MiB/GiB, CPUs, durations, relative times,
 * signals, aligned tables, JSON printing. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cloche/json.h"

const char *fmt_bytes(uint64_t n, char *buf, size_t size)
{
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(buf, size, "%llu B", (unsigned long long)n);
        return buf;
    }
    double v = (double)n;
    size_t u = 0;
    v /= 1024;
    while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
        v /= 1024;
        u++;
    }
    if (v >= 100 || v == floor(v))
        snprintf(buf, size, "%.0f %s", v, units[u]);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
    return buf;
}

const char *fmt_duration_ns(uint64_t ns, char *buf, size_t size)
{
    uint64_t s = ns / 1000000000ull;
    struct {
        uint64_t secs;
        const char *name;
    } steps[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
    if (s == 0) {
        snprintf(buf, size, "less than a second");
        return buf;
    }
    for (size_t i = 0; i < ELEMENTSOF(steps); i++)
        if (s >= steps[i].secs) {
            uint64_t k = s / steps[i].secs;
            snprintf(buf, size, "%llu %s%s", (unsigned long long)k, steps[i].name,
                     k == 1 ? "" : "s");
            break;
        }
    return buf;
}

const char *fmt_ago(int64_t unix_time, char *buf, size_t size)
{
    int64_t now = (int64_t)time(NULL);
    char d[64];
    if (unix_time >= now) {
        snprintf(buf, size, "just now");
        return buf;
    }
    snprintf(buf, size, "%s ago",
             fmt_duration_ns((uint64_t)(now - unix_time) * 1000000000ull, d, sizeof(d)));
    return buf;
}

/* A decimal number with an optional fraction, exactly: *ret_int and the
 * fraction scaled to *ret_frac / 10^9. */
static int parse_decimal(const char *s, const char **ret_end, uint64_t *ret_int, uint64_t *ret_frac)
{
    uint64_t i = 0, f = 0, scale = 100000000;
    const char *p = s;
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        if (i > (UINT64_MAX - 9) / 10)
            return -ERANGE;
        i = i * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        p++;
        for (; isdigit((unsigned char)*p); p++) {
            f += (uint64_t)(*p - '0') * scale;
            scale /= 10;
        }
    }
    *ret_end = p;
    *ret_int = i;
    *ret_frac = f;
    return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
    const char *p;
    uint64_t i, f;
    if (parse_decimal(s, &p, &i, &f) < 0)
        return -EINVAL;
    unsigned shift = 0;
    switch (tolower((unsigned char)*p)) {
    case '\0':
        break;
    case 'b':
        if (p[1])
            return -EINVAL;
        break;
    case 'k':
        shift = 10;
        break;
    case 'm':
        shift = 20;
        break;
    case 'g':
        shift = 30;
        break;
    case 't':
        shift = 40;
        break;
    case 'p':
        shift = 50;
        break;
    default:
        return -EINVAL;
    }
    if (shift) {
        p++;
        if (*p == 'i' || *p == 'I')
            p++;
        if (*p == 'b' || *p == 'B')
            p++;
        if (*p)
            return -EINVAL;
    }
    if (i > (UINT64_MAX >> shift))
        return -ERANGE;
    /* The fraction, rounded down to a whole byte. */
    unsigned __int128 frac = ((unsigned __int128)f << shift) / 1000000000u;
    if (!shift && f)
        return -EINVAL; /* a fraction of a byte */
    *ret = (i << shift) + (uint64_t)frac;
    return 0;
}

int parse_cpus(const char *s, uint64_t *ret)
{
    const char *p;
    uint64_t i, f;
    if (parse_decimal(s, &p, &i, &f) < 0 || *p)
        return -EINVAL;
    if (i > 1024)
        return -ERANGE;
    uint64_t milli = i * 1000 + f / 1000000;
    if (f % 1000000)
        return -EINVAL; /* finer than a millicpu */
    *ret = milli;
    return 0;
}

int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return errno ? -errno : -EINVAL;
    if (v > max)
        return -ERANGE;
    *ret = v;
    return 0;
}

int parse_signal(const char *s, int *ret)
{
    uint64_t n;
    if (parse_u64(s, 64, &n) == 0) {
        if (n < 1)
            return -EINVAL;
        *ret = (int)n;
        return 0;
    }
    const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
    for (int sig = 1; sig < 32; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev && strcasecmp(abbrev, name) == 0) {
            *ret = sig;
            return 0;
        }
    }
    if (strncasecmp(name, "RTMIN", 5) == 0 || strncasecmp(name, "RTMAX", 5) == 0) {
        bool max = tolower((unsigned char)name[3]) == 'a';
        int off = 0;
        if (name[5]) {
            uint64_t k;
            if ((name[5] != '+' && name[5] != '-') || parse_u64(name + 6, 32, &k) < 0)
                return -EINVAL;
            off = name[5] == '+' ? (int)k : -(int)k;
        }
        int sig = (max ? SIGRTMAX : SIGRTMIN) + off;
        if (sig < SIGRTMIN || sig > SIGRTMAX)
            return -EINVAL;
        *ret = sig;
        return 0;
    }
    return -EINVAL;
}

Table *table_new(size_t n_cols, ...)
{
    Table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->n_cols = n_cols;
    va_list ap;
    va_start(ap, n_cols);
    t->cells = calloc(n_cols, sizeof(char *));
    for (size_t i = 0; t->cells && i < n_cols; i++) {
        const char *h = va_arg(ap, const char *);
        t->cells[i] = strdup(h ? h : "");
    }
    va_end(ap);
    t->n_rows = 1;
    if (!t->cells) {
        free(t);
        return NULL;
    }
    return t;
}

int table_add(Table *t, ...)
{
    char **cells = reallocarray(t->cells, (t->n_rows + 1) * t->n_cols, sizeof(char *));
    if (!cells)
        return -ENOMEM;
    t->cells = cells;
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->n_cols; i++) {
        const char *v = va_arg(ap, const char *);
        cells[t->n_rows * t->n_cols + i] = strdup(v ? v : "");
    }
    va_end(ap);
    t->n_rows++;
    return 0;
}

void table_print(const Table *t, FILE *out)
{
    size_t width[16] = {0};
    size_t cols = t->n_cols < 16 ? t->n_cols : 16;
    for (size_t r = 0; r < t->n_rows; r++)
        for (size_t c = 0; c < cols; c++) {
            const char *v = t->cells[r * t->n_cols + c];
            size_t w = v ? strlen(v) : 0;
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < cols; c++) {
            const char *v = t->cells[r * t->n_cols + c];
            if (c + 1 == cols)
                fprintf(out, "%s\n", v ? v : "");
            else
                fprintf(out, "%-*s   ", (int)width[c], v ? v : "");
        }
    }
}

void table_free(Table *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->cells && i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

void print_json(json_object *o)
{
    if (!o) {
        puts("null");
        return;
    }
    int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                (isatty(STDOUT_FILENO) ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                                       : JSON_C_TO_STRING_PLAIN);
    puts(json_object_to_json_string_ext(o, flags));
}

uint64_t jget_u64(json_object *o, const char *key)
{
    json_object *v = o ? json_member(o, key) : NULL;
    if (!v)
        return 0;
    if (json_object_is_type(v, json_type_int))
        return json_object_get_uint64(v);
    if (json_object_is_type(v, json_type_double))
        return (uint64_t)json_object_get_double(v);
    return 0;
}

const char *jget_str(json_object *o, const char *key)
{
    json_object *v = o ? json_member(o, key) : NULL;
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

char *url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *p = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}
