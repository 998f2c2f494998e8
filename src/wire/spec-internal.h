/* Private to the spec codecs (spec.c, spec-limits.c, spec-net.c): field-path
 * building, member decoders that name the field, omitempty writers, and the
 * path-taking decoders the public ones wrap. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/error.h"
#include "cloche/wire.h"

/* Enough for the deepest path, "netout_rules[4095].networks[255].start"; longer
 * (property keys) is truncated, which only shortens a message. */
#define SPEC_PATH_MAX 256

/* "prefix.key", or "key" when prefix is NULL or "". Returns buf. */
const char *spec_path(char buf[static SPEC_PATH_MAX], const char *prefix, const char *key);
/* "prefix[i]". Returns buf. */
const char *spec_path_index(char buf[static SPEC_PATH_MAX], const char *prefix, size_t i);

/* Member decoders: an absent (or null) member leaves *ret untouched and returns 0. */
/* Strings: "" is stored as NULL, like absent, so that decode(encode(x)) == x. */
int spec_member_string(json_object *obj, const char *prefix, const char *key, size_t max_len,
                       char **ret, ApiError *reterr);
/* ret_set (may be NULL) is set to true when the member is present. */
int spec_member_u64(json_object *obj, const char *prefix, const char *key, uint64_t max,
                    uint64_t *ret, bool *ret_set, ApiError *reterr);
int spec_member_bool(json_object *obj, const char *prefix, const char *key, bool *ret,
                     ApiError *reterr);
/* An integer in 0..n_names-1; the message for any other lists "0 (names[0]), ...". */
int spec_member_enum(json_object *obj, const char *prefix, const char *key,
                     const char *const *names, size_t n_names, unsigned *ret, ApiError *reterr);
/* *ret = the member if it is an object, NULL when absent. */
int spec_member_object(json_object *obj, const char *prefix, const char *key, json_object **ret,
                       ApiError *reterr);
/* *ret = the member if it is an array of at most max_items, NULL when absent. */
int spec_member_array(json_object *obj, const char *prefix, const char *key, size_t max_items,
                      json_object **ret, ApiError *reterr);

/* Writers return 0 or -ENOMEM. spec_add takes v (also on failure, and v may be
 * NULL from a failed constructor). The others skip zero values (omitempty). */
int spec_add(json_object *obj, const char *key, json_object *v);
int spec_add_u64(json_object *obj, const char *key, uint64_t v);
int spec_add_string(json_object *obj, const char *key, const char *s);
int spec_add_bool(json_object *obj, const char *key, bool v);

/* Path-taking decoders (path "" for a request body of that type). obj may be any
 * json value; a non-object is refused. */
int spec_decode_limits_at(json_object *obj, const char *path, Limits *ret, ApiError *reterr);
int spec_decode_cpu_limits_at(json_object *obj, const char *path, CpuLimits *ret, ApiError *reterr);
int spec_decode_memory_limits_at(json_object *obj, const char *path, MemoryLimits *ret,
                                 ApiError *reterr);
int spec_decode_pid_limits_at(json_object *obj, const char *path, PidLimits *ret, ApiError *reterr);
int spec_decode_rlimits_at(json_object *obj, const char *path, ResourceLimits *ret,
                           ApiError *reterr);
int spec_decode_netout_rule_at(json_object *obj, const char *path, NetOutRule *ret,
                               ApiError *reterr);

json_object *spec_encode_limits(const Limits *l);
