/* JSON output the way Go's encoding/json writes it: compact, HTML-safe escaping, no
 * "\/", invalid UTF-8 as \ufffd, exact uint64, one trailing newline. json-c's own
 * writer differs on each of these, so this walks the tree itself. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "json-internal.h"

typedef JsonOut OutBuf; /* failed: sticky ENOMEM, checked once at the end */

static void out_write(OutBuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->allocated) {
        size_t na = b->allocated ? b->allocated : 256;
        while (na < b->len + n + 1)
            na *= 2;
        char *nd = realloc(b->data, na);
        if (!nd) {
            b->failed = true;
            return;
        }
        b->data = nd;
        b->allocated = na;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void out_str(OutBuf *b, const char *s)
{
    out_write(b, s, strlen(s));
}

static void out_char(OutBuf *b, char c)
{
    out_write(b, &c, 1);
}

static void write_string(OutBuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0; /* first byte not yet copied */

    out_char(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        char esc[7] = {0};

        if (c >= 0x80) {
            size_t k = json_utf8_sequence_length(u + i, n - i);
            /* U+2028/U+2029 break JavaScript string literals; Go escapes them */
            if (k == 3 && c == 0xE2 && u[i + 1] == 0x80 && (u[i + 2] == 0xA8 || u[i + 2] == 0xA9))
                snprintf(esc, sizeof(esc), "\\u202%c", u[i + 2] == 0xA8 ? '8' : '9');
            else if (k == 0)
                memcpy(esc, "\\ufffd", 6);
            else {
                i += k;
                continue;
            }
            out_write(b, s + start, i - start);
            out_str(b, esc);
            i += k ? k : 1;
            start = i;
            continue;
        }

        switch (c) {
        case '"':
        case '\\':
            esc[0] = '\\';
            esc[1] = (char)c;
            break;
        case '\b':
            memcpy(esc, "\\b", 2);
            break;
        case '\f':
            memcpy(esc, "\\f", 2);
            break;
        case '\n':
            memcpy(esc, "\\n", 2);
            break;
        case '\r':
            memcpy(esc, "\\r", 2);
            break;
        case '\t':
            memcpy(esc, "\\t", 2);
            break;
        case '<':
        case '>':
        case '&':
            break;
        default:
            if (c >= 0x20) {
                i++;
                continue;
            }
            break;
        }
        if (!esc[0]) /* other control characters and the HTML-sensitive <>& */
            memcpy(esc, (char[]){'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]}, 6);
        out_write(b, s + start, i - start);
        out_str(b, esc);
        i++;
        start = i;
    }
    out_write(b, s + start, n - start);
    out_char(b, '"');
}

/* Go's float64 format: shortest round-trip digits, plain notation for
 * 1e-6 <= |d| < 1e21, exponent notation (e-7, e+21) outside. */
static void write_double(OutBuf *b, double d)
{
    char tmp[64];
    int precision;

    if (d != d || d > 1.7976931348623157e308 || d < -1.7976931348623157e308) {
        out_str(b, "null"); /* Go refuses NaN and infinities; null is the nearest */
        return;
    }
    for (precision = 1; precision < 17; precision++) {
        snprintf(tmp, sizeof(tmp), "%.*e", precision - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    snprintf(tmp, sizeof(tmp), "%.*e", precision - 1, d);

    double a = d < 0 ? -d : d;
    if (a != 0 && (a < 1e-6 || a >= 1e21)) {
        size_t n = strlen(tmp);
        if (n >= 4 && tmp[n - 4] == 'e' && tmp[n - 3] == '-' && tmp[n - 2] == '0') {
            tmp[n - 2] = tmp[n - 1]; /* "e-07" -> "e-7", as Go does */
            tmp[n - 1] = '\0';
        }
        out_str(b, tmp);
        return;
    }
    /* Plain notation from the shortest digits, zero-padded: printf's %f would print
     * the exact binary value (184644073709551616000 where Go writes ...620000). */
    char digits[24], plain[64];
    size_t nd = 0, np = 0;
    const char *m = tmp;
    if (*m == '-') {
        plain[np++] = '-';
        m++;
    }
    for (; *m != 'e'; m++)
        if (*m != '.')
            digits[nd++] = *m;
    int exponent = atoi(m + 1);
    if (exponent < 0) {
        plain[np++] = '0';
        plain[np++] = '.';
        for (int z = -1; z > exponent; z--)
            plain[np++] = '0';
        for (size_t k = 0; k < nd; k++)
            plain[np++] = digits[k];
    } else {
        for (size_t k = 0; k < nd || k <= (size_t)exponent; k++) {
            if (k == (size_t)exponent + 1)
                plain[np++] = '.';
            plain[np++] = k < nd ? digits[k] : '0';
        }
    }
    plain[np] = '\0';
    out_str(b, plain);
}

static void write_value(OutBuf *b, json_object *v)
{
    char num[32];

    switch (json_object_get_type(v)) {
    case json_type_null:
        out_str(b, "null");
        break;
    case json_type_boolean:
        out_str(b, json_object_get_boolean(v) ? "true" : "false");
        break;
    case json_type_int: {
        /* json-c stores either an int64 or a uint64; get_int64 saturates the
         * latter, get_uint64 is exact for every non-negative value */
        int64_t s = json_object_get_int64(v);
        if (s < 0)
            snprintf(num, sizeof(num), "%" PRId64, s);
        else
            snprintf(num, sizeof(num), "%" PRIu64, json_object_get_uint64(v));
        out_str(b, num);
        break;
    }
    case json_type_double:
        write_double(b, json_object_get_double(v));
        break;
    case json_type_string:
        write_string(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        break;
    case json_type_array: {
        size_t n = json_object_array_length(v);
        out_char(b, '[');
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                out_char(b, ',');
            write_value(b, json_object_array_get_idx(v, i));
        }
        out_char(b, ']');
        break;
    }
    case json_type_object: {
        bool first = true;
        out_char(b, '{');
        json_object_object_foreach(v, key, val)
        {
            if (!first)
                out_char(b, ',');
            first = false;
            write_string(b, key, strlen(key));
            out_char(b, ':');
            write_value(b, val);
        }
        out_char(b, '}');
        break;
    }
    }
}

char *json_serialize(json_object *obj, size_t *ret_len)
{
    OutBuf b = {0};

    write_value(&b, obj);
    out_char(&b, '\n');
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    if (ret_len)
        *ret_len = b.len;
    return b.data;
}

json_object *json_new_u64(uint64_t v)
{
    return json_object_new_uint64(v);
}

/* ---- piece by piece ------------------------------------------------------- */

void json_out_raw(JsonOut *o, const char *s, size_t n)
{
    out_write(o, s, n);
}

void json_out_string(JsonOut *o, const char *s)
{
    write_string(o, s, strlen(s));
}

void json_out_u64(JsonOut *o, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_write(o, digits + sizeof(digits) - n, n);
}

void json_out_value(JsonOut *o, json_object *v)
{
    write_value(o, v);
}

char *json_out_finish(JsonOut *o, size_t *ret_len)
{
    out_char(o, '\n');
    char *data = o->data;
    size_t len = o->len;
    bool failed = o->failed;
    *o = (JsonOut){0};
    if (failed) {
        free(data);
        return NULL;
    }
    if (ret_len)
        *ret_len = len;
    return data;
}
