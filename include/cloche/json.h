/* The JSON layer over json-c: strict parsing with exact integers, case-insensitive
 * member lookup, typed decoding through field tables, and Go-compatible output.
 * JSON never goes below api/ (and depot/, which serialises state). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/error.h"
#include "cloche/failure.h"

#define JSON_MAX_DEPTH 32

static inline void json_object_putp(json_object **o)
{
    if (*o)
        json_object_put(*o);
    *o = NULL;
}
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Parse exactly one JSON value from buf[0..len). Strict grammar (json-c
 * JSON_TOKENER_STRICT), UTF-8 validated, depth-limited; surrounding whitespace is
 * allowed, anything else after the value is an error; integer literals must fit
 * int64 (negative) or uint64 (non-negative) exactly. On failure returns -EINVAL
 * and a 400 in reterr with a precise message:
 *   empty body            -> "Request body is empty"
 *   truncated             -> "Unexpected end of JSON input"
 *   trailing bytes        -> "Unexpected data after the JSON value at offset N"
 *   syntax / bad UTF-8    -> "Invalid JSON at offset N: <json-c's description>"
 *   integer out of range  -> "Number N at offset M is out of range"
 * The body `null` succeeds with *ret = NULL. *ret is untouched on failure. */
int json_parse_strict(const char *buf, size_t len, json_object **ret, ApiError *reterr);
/* The same below garden (a registry's or an archive's JSON): the message in a
 * Failure of cause FAILURE_INPUT (-EINVAL), or FAILURE_SYSTEM for -ENOMEM. */
int json_parse_value(const char *buf, size_t len, json_object **ret, Failure *reterr);

/* Case-insensitive member lookup (an exact match wins over a case-insensitive one,
 * as in Go's encoding/json). Returns a borrowed pointer or NULL when absent.
 * A member whose value is JSON null is reported as absent. */
json_object *json_member(json_object *obj, const char *key);

/* Typed accessors with Go-like strictness. `what` names the field in messages,
 * e.g. "grace_time" or "bind_mounts[2].mode". Each returns 0 or -EINVAL with a
 * 400 in reterr such as "Invalid value for 'grace_time': expected an integer,
 * got a string" or "Invalid value for 'mode': 300 is out of range (0..255)". */
int json_get_u64(json_object *v, const char *what, uint64_t max, uint64_t *ret, ApiError *reterr);
int json_read_u64(json_object *v, const char *what, uint64_t max, uint64_t *ret, Failure *reterr);
int json_get_i64(json_object *v, const char *what, int64_t *ret, ApiError *reterr);
int json_get_bool(json_object *v, const char *what, bool *ret, ApiError *reterr);
/* Copies the string (malloc'd) into *ret; rejects strings longer than max_len bytes
 * and strings with embedded NUL bytes. */
int json_get_string(json_object *v, const char *what, size_t max_len, char **ret, ApiError *reterr);
/* Checks v is an object / array, else 400 "... expected an object, got ...".
 * what NULL or "" means the request body itself ("Invalid request body: ..."). */
int json_expect_object(json_object *v, const char *what, ApiError *reterr);
int json_expect_array(json_object *v, const char *what, size_t max_items, ApiError *reterr);

/* Output. uint64 values are written exactly (json_object_new_uint64). */
json_object *json_new_u64(uint64_t v);
/* Serialise compactly, Go style: no "\/" escaping, '<' '>' '&' U+2028 U+2029 escaped
 * as \u003c \u003e \u0026 \u2028 \u2029, and a trailing "\n". Returns a malloc'd
 * NUL-terminated string (length in *ret_len) or NULL on ENOMEM. */
char *json_serialize(json_object *obj, size_t *ret_len);

/* The same text written piece by piece, without a tree: for large replies whose
 * shape is fixed (BulkMetrics). Start from a zeroed JsonOut; allocation failures
 * are sticky and reported by json_out_finish. */
typedef struct JsonOut {
    char *data;
    size_t len;
    size_t allocated;
    bool failed;
} JsonOut;
/* Bytes as they are (punctuation, keys known to need no escaping). */
void json_out_raw(JsonOut *o, const char *s, size_t n);
/* A string, escaped as json_serialize escapes it. */
void json_out_string(JsonOut *o, const char *s);
void json_out_u64(JsonOut *o, uint64_t v);
/* A tree, as json_serialize writes it (without the newline). */
void json_out_value(JsonOut *o, json_object *v);
/* The text with json_serialize's trailing newline (malloc'd, length in *ret_len), or
 * NULL after a failed allocation; the JsonOut is left empty either way. */
char *json_out_finish(JsonOut *o, size_t *ret_len);

/* Go-style type name of a json value for messages: "string", "number", "object",
 * "array", "bool", "null". */
const char *json_type_word(json_object *v);
