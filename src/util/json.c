/* Strict JSON input over json-c: a pre-scan for what json-c lets through (saturated
 * integers, NaN/Infinity/"1."/"-01" numbers, overlong or surrogate UTF-8, raw control
 * characters, NUL in keys, trailing bytes), then json-c's tokener on the value alone;
 * plus member lookup and typed getters. Output lives in json-output.c. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "json-internal.h"

static inline void json_tokener_freep(json_tokener **t)
{
    if (*t)
        json_tokener_free(*t);
    *t = NULL;
}

/* Longest number literal quoted in an error message. */
#define NUMBER_QUOTE_MAX 40

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_space(const char *buf, size_t i, size_t len)
{
    while (i < len && is_json_space(buf[i]))
        i++;
    return i;
}

size_t json_utf8_sequence_length(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;

    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < need; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return need;
}

static int invalid_at(Failure *reterr, size_t offset, const char *what)
{
    return failure_input(reterr, -EINVAL, "Invalid JSON at offset %zu: %s", offset, what);
}

/* Whether digits [d, d+n) (no sign, no leading zeros but a lone "0") fit under the
 * decimal limit. */
static bool digits_fit(const char *d, size_t n, const char *limit)
{
    size_t ln = strlen(limit);
    if (n != ln)
        return n < ln;
    return memcmp(d, limit, n) <= 0;
}

/* A number cut off by the end of input ("-", "1.", "1e") is truncation. */
static int bad_number(bool truncated, size_t offset, Failure *reterr)
{
    if (truncated)
        return failure_input(reterr, -EINVAL, "Unexpected end of JSON input");
    return invalid_at(reterr, offset, "invalid number");
}

/* Checks one number token against RFC 8259's grammar (json-c accepts "1.", "-01",
 * NaN and Infinity even in strict mode) and integer literals against int64/uint64
 * (json-c saturates them silently). */
static int scan_number(const char *tok, size_t n, size_t offset, bool at_eof, Failure *reterr)
{
    size_t i = 0;
    bool negative = false, integer = true;

    if (i < n && tok[i] == '-') {
        negative = true;
        i++;
    }
    size_t digits = i;
    if (i < n && tok[i] == '0')
        i++;
    else if (i < n && tok[i] >= '1' && tok[i] <= '9')
        while (i < n && tok[i] >= '0' && tok[i] <= '9')
            i++;
    else
        return bad_number(i == n && at_eof, offset, reterr);
    size_t digits_end = i;
    if (i < n && tok[i] == '.') {
        integer = false;
        i++;
        size_t f = i;
        while (i < n && tok[i] >= '0' && tok[i] <= '9')
            i++;
        if (i == f)
            return bad_number(i == n && at_eof, offset, reterr);
    }
    if (i < n && (tok[i] == 'e' || tok[i] == 'E')) {
        integer = false;
        i++;
        if (i < n && (tok[i] == '+' || tok[i] == '-'))
            i++;
        size_t e = i;
        while (i < n && tok[i] >= '0' && tok[i] <= '9')
            i++;
        if (i == e)
            return bad_number(i == n && at_eof, offset, reterr);
    }
    if (i != n)
        return bad_number(false, offset, reterr);

    if (integer && !digits_fit(tok + digits, digits_end - digits,
                               negative ? "9223372036854775808" : "18446744073709551615"))
        return failure_input(reterr, -EINVAL, "Number %.*s%s at offset %zu is out of range",
                             (int)(n > NUMBER_QUOTE_MAX ? NUMBER_QUOTE_MAX : n), tok,
                             n > NUMBER_QUOTE_MAX ? "..." : "", offset);
    return 0;
}

static bool is_number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* true, false or null; a cut-off prefix of one at the end of input is truncation. */
static int scan_literal(const char *tok, size_t n, size_t offset, bool at_eof, Failure *reterr)
{
    static const char *const literals[] = {"true", "false", "null"};
    for (size_t k = 0; k < ELEMENTSOF(literals); k++) {
        size_t ln = strlen(literals[k]);
        if (n == ln && memcmp(tok, literals[k], n) == 0)
            return 0;
        if (at_eof && n < ln && memcmp(tok, literals[k], n) == 0)
            return failure_input(reterr, -EINVAL, "Unexpected end of JSON input");
    }
    return invalid_at(reterr, offset, "invalid literal");
}

/* Scans one string starting at the opening quote buf[*i]; leaves *i after the closing
 * quote (or at len when unterminated, which json-c reports as truncation). */
static int scan_string(const char *buf, size_t len, size_t *i, bool is_key, Failure *reterr)
{
    size_t p = *i + 1;
    while (p < len) {
        unsigned char c = (unsigned char)buf[p];
        if (c == '"') {
            *i = p + 1;
            return 0;
        }
        if (c == '\\') {
            /* A key is a C string in json-c: "a\u0000b" would silently become "a". */
            if (is_key && p + 5 < len && memcmp(buf + p + 1, "u0000", 5) == 0)
                return invalid_at(reterr, p, "NUL character in an object key");
            p += 2;
            continue;
        }
        if (c < 0x20) /* RFC 8259 and Go refuse raw control characters; json-c does not */
            return invalid_at(reterr, p, "control character in a string");
        size_t k = json_utf8_sequence_length((const unsigned char *)buf + p, len - p);
        if (k == 0)
            return invalid_at(reterr, p, "invalid UTF-8 in a string");
        p += k;
    }
    *i = len;
    return 0;
}

/* Walks the first value from buf[start], finding where it ends (*ret_end) and
 * checking what json-c would let through. Brackets are only counted, json-c checks
 * that they match. */
static int prescan(const char *buf, size_t len, size_t start, size_t *ret_end, Failure *reterr)
{
    _Static_assert(JSON_MAX_DEPTH <= 64, "object_bits has one bit per nesting level");
    uint64_t object_bits = 0; /* bit d set: the container at depth d+1 is an object */
    unsigned depth = 0;
    bool expect_key = false;
    size_t i = start;

    while (i < len) {
        char c = buf[i];
        if (c == '"') {
            bool is_key = expect_key && depth > 0 && (object_bits >> (depth - 1) & 1);
            expect_key = false;
            int r = scan_string(buf, len, &i, is_key, reterr);
            if (r < 0)
                return r;
        } else if (c == '[' || c == '{') {
            if (depth >= JSON_MAX_DEPTH)
                return invalid_at(reterr, i, "nesting too deep");
            if (c == '{')
                object_bits |= UINT64_C(1) << depth;
            else
                object_bits &= ~(UINT64_C(1) << depth);
            depth++;
            expect_key = c == '{';
            i++;
        } else if (c == ']' || c == '}') {
            i++;
            if (depth == 0 || --depth == 0) {
                *ret_end = i;
                return 0;
            }
        } else if (c == ',') {
            expect_key = depth > 0 && (object_bits >> (depth - 1) & 1);
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t s = i;
            while (i < len && is_number_char(buf[i]))
                i++;
            int r = scan_number(buf + s, i - s, s, i == len, reterr);
            if (r < 0)
                return r;
        } else if (is_letter(c)) {
            size_t s = i;
            while (i < len && is_letter(buf[i]))
                i++;
            int r = scan_literal(buf + s, i - s, s, i == len, reterr);
            if (r < 0)
                return r;
        } else
            i++; /* whitespace, ':' and anything json-c will refuse itself */

        if (depth == 0) {
            *ret_end = i;
            return 0;
        }
    }
    *ret_end = len;
    return 0;
}

int json_parse_value(const char *buf, size_t len, json_object **ret, Failure *reterr)
{
    size_t start = skip_space(buf, 0, len);
    if (start == len)
        return failure_input(reterr, -EINVAL, "Request body is empty");
    if (len > INT_MAX) /* json-c takes an int length */
        return failure_input(reterr, -EINVAL, "Request body is too large");

    size_t end = len;
    int r = prescan(buf, len, start, &end, reterr);
    if (r < 0)
        return r;

    _cleanup_(json_tokener_freep) json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
    if (!tok)
        return failure_errno(reterr, -ENOMEM, "Failed to parse JSON");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

    _cleanup_json_ json_object *obj = json_tokener_parse_ex(tok, buf, (int)end);
    enum json_tokener_error e = json_tokener_get_error(tok);
    if (e == json_tokener_continue) {
        /* A number or literal at the very end is complete only once json-c sees a
         * delimiter; anything else still open is truncated input. */
        obj = json_tokener_parse_ex(tok, " ", 1);
        if (json_tokener_get_error(tok) != json_tokener_success)
            return failure_input(reterr, -EINVAL, "Unexpected end of JSON input");
    } else if (e != json_tokener_success)
        return invalid_at(reterr, json_tokener_get_parse_end(tok), json_tokener_error_desc(e));
    else if (json_tokener_get_parse_end(tok) != end)
        /* json-c stopped early, e.g. it consumed a value our scan thought longer */
        return invalid_at(reterr, json_tokener_get_parse_end(tok), "unexpected character");

    size_t rest = skip_space(buf, end, len);
    if (rest != len)
        return failure_input(reterr, -EINVAL, "Unexpected data after the JSON value at offset %zu",
                             rest);

    *ret = TAKE_PTR(obj);
    return 0;
}

json_object *json_member(json_object *obj, const char *key)
{
    json_object *v = NULL, *folded = NULL;

    if (!obj || !json_object_is_type(obj, json_type_object))
        return NULL;
    if (json_object_object_get_ex(obj, key, &v) && v)
        return v;
    /* Go assigns every case-insensitive match in document order and a null is a
     * no-op, so the last non-null one is what Go would end up with. */
    json_object_object_foreach(obj, k, val)
    {
        if (val && strcasecmp(k, key) == 0)
            folded = val;
    }
    return folded;
}

const char *json_type_word(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "bool";
    case json_type_double:
    case json_type_int:
        return "number";
    case json_type_object:
        return "object";
    case json_type_array:
        return "array";
    case json_type_string:
        return "string";
    }
    return "value";
}

/* "a string", "an object", "null": the type word with its article. */
static const char *type_phrase(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a bool";
    case json_type_double:
    case json_type_int:
        return "a number";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    }
    return "a value";
}

static int wrong_type(json_object *v, const char *what, const char *expected, Failure *reterr)
{
    if (!what || !*what)
        return failure_input(reterr, -EINVAL, "Invalid request body: expected %s, got %s", expected,
                             type_phrase(v));
    return failure_input(reterr, -EINVAL, "Invalid value for '%s': expected %s, got %s", what,
                         expected, type_phrase(v));
}

/* Reads an integer as sign + magnitude; json-c hides which of int64/uint64 it
 * stored, but get_int64 saturates positive values and get_uint64 zeroes negative
 * ones. */
static int get_integer(json_object *v, const char *what, bool *ret_negative, uint64_t *ret_abs,
                       int64_t *ret_signed, Failure *reterr)
{
    if (json_object_is_type(v, json_type_double))
        return failure_input(reterr, -EINVAL,
                             "Invalid value for '%s': expected an integer, got a number with a "
                             "fraction or exponent (%.*s)",
                             what, NUMBER_QUOTE_MAX, json_object_to_json_string(v));
    if (!json_object_is_type(v, json_type_int))
        return wrong_type(v, what, "an integer", reterr);

    int64_t s = json_object_get_int64(v);
    *ret_negative = s < 0;
    *ret_signed = s;
    *ret_abs = s < 0 ? (uint64_t)0 - (uint64_t)s : json_object_get_uint64(v);
    return 0;
}

int json_read_u64(json_object *v, const char *what, uint64_t max, uint64_t *ret, Failure *reterr)
{
    bool negative;
    uint64_t abs;
    int64_t s;
    int r = get_integer(v, what, &negative, &abs, &s, reterr);
    if (r < 0)
        return r;
    if (negative)
        return failure_input(reterr, -EINVAL,
                             "Invalid value for '%s': %" PRId64 " is out of range "
                             "(0..%" PRIu64 ")",
                             what, s, max);
    if (abs > max)
        return failure_input(reterr, -EINVAL,
                             "Invalid value for '%s': %" PRIu64 " is out of range "
                             "(0..%" PRIu64 ")",
                             what, abs, max);
    *ret = abs;
    return 0;
}

static int read_i64(json_object *v, const char *what, int64_t *ret, Failure *reterr)
{
    bool negative;
    uint64_t abs;
    int64_t s;
    int r = get_integer(v, what, &negative, &abs, &s, reterr);
    if (r < 0)
        return r;
    if (!negative && abs > (uint64_t)INT64_MAX)
        return failure_input(reterr, -EINVAL,
                             "Invalid value for '%s': %" PRIu64 " is out of range "
                             "(%" PRId64 "..%" PRId64 ")",
                             what, abs, INT64_MIN, INT64_MAX);
    *ret = s;
    return 0;
}

static int read_bool(json_object *v, const char *what, bool *ret, Failure *reterr)
{
    if (!json_object_is_type(v, json_type_boolean))
        return wrong_type(v, what, "a bool", reterr);
    *ret = json_object_get_boolean(v);
    return 0;
}

static int read_string(json_object *v, const char *what, size_t max_len, char **ret,
                       Failure *reterr)
{
    if (!json_object_is_type(v, json_type_string))
        return wrong_type(v, what, "a string", reterr);
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (memchr(s, '\0', n))
        return failure_input(reterr, -EINVAL, "Invalid value for '%s': contains a NUL character",
                             what);
    if (n > max_len)
        return failure_input(reterr, -EINVAL, "Invalid value for '%s': longer than %zu bytes", what,
                             max_len);
    char *copy = strndup(s, n);
    if (!copy)
        return failure_errno(reterr, -ENOMEM, "Failed to copy '%s'", what);
    *ret = copy;
    return 0;
}

static int expect_object(json_object *v, const char *what, Failure *reterr)
{
    if (!json_object_is_type(v, json_type_object))
        return wrong_type(v, what, "an object", reterr);
    return 0;
}

static int expect_array(json_object *v, const char *what, size_t max_items, Failure *reterr)
{
    if (!json_object_is_type(v, json_type_array))
        return wrong_type(v, what, "an array", reterr);
    size_t n = json_object_array_length(v);
    if (n > max_items)
        return failure_input(reterr, -EINVAL, "Too many %s: %zu (at most %zu)",
                             what && *what ? what : "items", n, max_items);
    return 0;
}

/* The API's face of the same checks: what the request got wrong is a 400, the
 * rest (out of memory) a 500. */
static int api_from_failure(ApiError *reterr, const Failure *f, int r)
{
    if (r >= 0)
        return r;
    return api_errorf(reterr, r, f->cause == FAILURE_INPUT ? 400 : 500, GARDEN_ERR_GENERIC, "%s",
                      f->message);
}

int json_parse_strict(const char *buf, size_t len, json_object **ret, ApiError *reterr)
{
    Failure f;
    failure_clear(&f);
    return api_from_failure(reterr, &f, json_parse_value(buf, len, ret, &f));
}

int json_get_u64(json_object *v, const char *what, uint64_t max, uint64_t *ret, ApiError *reterr)
{
    Failure f;
    failure_clear(&f);
    return api_from_failure(reterr, &f, json_read_u64(v, what, max, ret, &f));
}

int json_get_i64(json_object *v, const char *what, int64_t *ret, ApiError *reterr)
{
    Failure f;
    failure_clear(&f);
    return api_from_failure(reterr, &f, read_i64(v, what, ret, &f));
}

int json_get_bool(json_object *v, const char *what, bool *ret, ApiError *reterr)
{
    Failure f;
    failure_clear(&f);
    return api_from_failure(reterr, &f, read_bool(v, what, ret, &f));
}

int json_get_string(json_object *v, const char *what, size_t max_len, char **ret, ApiError *reterr)
{
    Failure f;
    failure_clear(&f);
    return api_from_failure(reterr, &f, read_string(v, what, max_len, ret, &f));
}

int json_expect_object(json_object *v, const char *what, ApiError *reterr)
{
    Failure f;
    failure_clear(&f);
    return api_from_failure(reterr, &f, expect_object(v, what, &f));
}

int json_expect_array(json_object *v, const char *what, size_t max_items, ApiError *reterr)
{
    Failure f;
    failure_clear(&f);
    return api_from_failure(reterr, &f, expect_array(v, what, max_items, &f));
}
