/* ContainerSpec and ProcessSpec codecs, the member helpers every spec codec uses,
 * and handle validation. Limits live in spec-limits.c, network rules in
 * spec-net.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "cloche/wire.h"
#include "spec-internal.h"

static const char *const bind_mount_mode_names[] = {
    [BIND_MOUNT_RO] = "RO",
    [BIND_MOUNT_RW] = "RW",
};
static const char *const bind_mount_origin_names[] = {
    [BIND_MOUNT_HOST] = "Host",
    [BIND_MOUNT_CONTAINER] = "Container",
};

const char *spec_path(char buf[static SPEC_PATH_MAX], const char *prefix, const char *key)
{
    if (prefix && *prefix)
        snprintf(buf, SPEC_PATH_MAX, "%s.%s", prefix, key);
    else
        snprintf(buf, SPEC_PATH_MAX, "%s", key);
    return buf;
}

const char *spec_path_index(char buf[static SPEC_PATH_MAX], const char *prefix, size_t i)
{
    snprintf(buf, SPEC_PATH_MAX, "%s[%zu]", prefix, i);
    return buf;
}

int spec_member_string(json_object *obj, const char *prefix, const char *key, size_t max_len,
                       char **ret, ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    json_object *v = json_member(obj, key);
    if (!v)
        return 0;
    _cleanup_free_ char *s = NULL;
    int r = json_get_string(v, spec_path(p, prefix, key), max_len, &s, reterr);
    if (r < 0)
        return r;
    free(*ret);
    *ret = *s ? TAKE_PTR(s) : NULL;
    return 0;
}

int spec_member_u64(json_object *obj, const char *prefix, const char *key, uint64_t max,
                    uint64_t *ret, bool *ret_set, ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    json_object *v = json_member(obj, key);
    if (!v)
        return 0;
    int r = json_get_u64(v, spec_path(p, prefix, key), max, ret, reterr);
    if (r < 0)
        return r;
    if (ret_set)
        *ret_set = true;
    return 0;
}

int spec_member_bool(json_object *obj, const char *prefix, const char *key, bool *ret,
                     ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    json_object *v = json_member(obj, key);
    return v ? json_get_bool(v, spec_path(p, prefix, key), ret, reterr) : 0;
}

int spec_member_enum(json_object *obj, const char *prefix, const char *key,
                     const char *const *names, size_t n_names, unsigned *ret, ApiError *reterr)
{
    char p[SPEC_PATH_MAX], allowed[256] = "";
    uint64_t v = *ret;

    /* Go's enums here are uint8, so 300 is a range error before it is a bad value */
    int r = spec_member_u64(obj, prefix, key, UINT8_MAX, &v, NULL, reterr);
    if (r < 0)
        return r;
    if (v >= n_names) {
        size_t used = 0;
        for (size_t i = 0; i < n_names && used < sizeof(allowed); i++)
            used += (size_t)snprintf(allowed + used, sizeof(allowed) - used, "%s%zu (%s)",
                                     i ? ", " : "", i, names[i]);
        return api_bad_request(reterr, "Invalid value for '%s': %" PRIu64 " is not one of %s",
                               spec_path(p, prefix, key), v, allowed);
    }
    *ret = (unsigned)v;
    return 0;
}

int spec_member_object(json_object *obj, const char *prefix, const char *key, json_object **ret,
                       ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    json_object *v = json_member(obj, key);
    *ret = NULL;
    if (!v)
        return 0;
    int r = json_expect_object(v, spec_path(p, prefix, key), reterr);
    if (r < 0)
        return r;
    *ret = v;
    return 0;
}

int spec_member_array(json_object *obj, const char *prefix, const char *key, size_t max_items,
                      json_object **ret, ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    json_object *v = json_member(obj, key);
    *ret = NULL;
    if (!v)
        return 0;
    int r = json_expect_array(v, spec_path(p, prefix, key), max_items, reterr);
    if (r < 0)
        return r;
    *ret = v;
    return 0;
}

int spec_add(json_object *obj, const char *key, json_object *v)
{
    if (!v)
        return -ENOMEM;
    if (json_object_object_add(obj, key, v) < 0) {
        json_object_put(v);
        return -ENOMEM;
    }
    return 0;
}

int spec_add_u64(json_object *obj, const char *key, uint64_t v)
{
    return v ? spec_add(obj, key, json_new_u64(v)) : 0;
}

int spec_add_string(json_object *obj, const char *key, const char *s)
{
    return s && *s ? spec_add(obj, key, json_object_new_string(s)) : 0;
}

int spec_add_bool(json_object *obj, const char *key, bool v)
{
    return v ? spec_add(obj, key, json_object_new_boolean(true)) : 0;
}

/* Handles and process ids become path components (URL paths, state files), so
 * both are held to the characters the Go client can pass through a URL. */
static int validate_name(const char *kind, const char *s, ApiError *reterr)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0)
        return api_bad_request(reterr, "Invalid %s: must not be empty", kind);
    if (n > SPEC_HANDLE_MAX)
        return api_bad_request(reterr, "Invalid %s '%.32s...': longer than %d bytes", kind, s,
                               SPEC_HANDLE_MAX);
    if (s[0] == '.')
        return api_bad_request(reterr, "Invalid %s '%s': must not start with '.'", kind, s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-')
            continue;
        return api_bad_request(reterr,
                               "Invalid %s: byte 0x%02x at offset %zu is not allowed (use "
                               "A-Z, a-z, 0-9, '.', '_' and '-')",
                               kind, c, i);
    }
    return 0;
}

int spec_validate_handle(const char *handle, ApiError *reterr)
{
    return validate_name("handle", handle, reterr);
}

static void image_ref_done(ImageRef *image)
{
    free(image->uri);
    free(image->username);
    free(image->password);
    *image = (ImageRef){0};
}

static int decode_image_ref(json_object *obj, const char *path, ImageRef *ret, ApiError *reterr)
{
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    if ((r = spec_member_string(obj, path, "uri", SPEC_STRING_MAX, &ret->uri, reterr)) < 0 ||
        (r = spec_member_string(obj, path, "username", SPEC_STRING_MAX, &ret->username, reterr)) <
            0 ||
        (r = spec_member_string(obj, path, "password", SPEC_STRING_MAX, &ret->password, reterr)) <
            0)
        return r;
    return 0;
}

static json_object *encode_image_ref(const ImageRef *image)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj || spec_add_string(obj, "uri", image->uri) < 0 ||
        spec_add_string(obj, "username", image->username) < 0 ||
        spec_add_string(obj, "password", image->password) < 0)
        return NULL;
    return TAKE_PTR(obj);
}

static void bind_mounts_free(BindMount *mounts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(mounts[i].src_path);
        free(mounts[i].dst_path);
    }
    free(mounts);
}

static int decode_bind_mount(json_object *obj, const char *path, BindMount *ret, ApiError *reterr)
{
    unsigned mode = BIND_MOUNT_RO, origin = BIND_MOUNT_HOST;
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    if ((r = spec_member_string(obj, path, "src_path", SPEC_STRING_MAX, &ret->src_path, reterr)) <
            0 ||
        (r = spec_member_string(obj, path, "dst_path", SPEC_STRING_MAX, &ret->dst_path, reterr)) <
            0 ||
        (r = spec_member_enum(obj, path, "mode", bind_mount_mode_names,
                              ELEMENTSOF(bind_mount_mode_names), &mode, reterr)) < 0 ||
        (r = spec_member_enum(obj, path, "origin", bind_mount_origin_names,
                              ELEMENTSOF(bind_mount_origin_names), &origin, reterr)) < 0)
        return r;
    ret->mode = (BindMountMode)mode;
    ret->origin = (BindMountOrigin)origin;
    return 0;
}

static int decode_bind_mounts(json_object *obj, BindMount **ret, size_t *ret_n, ApiError *reterr)
{
    json_object *arr;
    char p[SPEC_PATH_MAX];
    int r = spec_member_array(obj, "", "bind_mounts", SPEC_BIND_MOUNTS_MAX, &arr, reterr);
    if (r < 0 || !arr || json_object_array_length(arr) == 0)
        return r;
    size_t n = json_object_array_length(arr);
    /* stored at once: the owner's cleanup frees a partly decoded (zeroed) list */
    *ret = calloc(n, sizeof(BindMount));
    if (!*ret)
        return api_internal_error(reterr, -ENOMEM, "Failed to decode 'bind_mounts'");
    *ret_n = n;
    for (size_t i = 0; i < n; i++) {
        r = decode_bind_mount(json_object_array_get_idx(arr, i),
                              spec_path_index(p, "bind_mounts", i), &(*ret)[i], reterr);
        if (r < 0)
            return r;
    }
    return 0;
}

static json_object *encode_bind_mounts(const BindMount *mounts, size_t n)
{
    _cleanup_json_ json_object *arr = json_object_new_array_ext((int)n);
    if (!arr)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_new_object();
        if (!m || json_object_array_add(arr, m) < 0) {
            json_object_put(m);
            return NULL;
        }
        if (spec_add_string(m, "src_path", mounts[i].src_path) < 0 ||
            spec_add_string(m, "dst_path", mounts[i].dst_path) < 0 ||
            spec_add_u64(m, "mode", mounts[i].mode) < 0 ||
            spec_add_u64(m, "origin", mounts[i].origin) < 0)
            return NULL;
    }
    return TAKE_PTR(arr);
}

/* A list of strings into a NULL-terminated vector (left NULL when empty). With
 * is_env, each entry must look like NAME=VALUE with a non-empty NAME. Entries may
 * be as long as execve allows: Cloud Foundry's VCAP_SERVICES alone often exceeds
 * SPEC_STRING_MAX. */
static int decode_string_list(json_object *obj, const char *key, size_t max_items, bool is_env,
                              char ***ret, size_t *ret_n, ApiError *reterr)
{
    json_object *arr;
    char p[SPEC_PATH_MAX];
    int r = spec_member_array(obj, "", key, max_items, &arr, reterr);
    if (r < 0 || !arr || json_object_array_length(arr) == 0)
        return r;
    size_t n = json_object_array_length(arr);
    _cleanup_strv_free_ char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return api_internal_error(reterr, -ENOMEM, "Failed to decode '%s'", key);
    for (size_t i = 0; i < n; i++) {
        spec_path_index(p, key, i);
        r = json_get_string(json_object_array_get_idx(arr, i), p, SPEC_ARG_STRING_MAX, &v[i],
                            reterr);
        if (r < 0)
            return r;
        const char *eq = strchr(v[i], '=');
        if (is_env && (!eq || eq == v[i]))
            return api_bad_request(
                reterr, "Invalid value for '%s': '%.64s' is not of the form NAME=VALUE", p, v[i]);
    }
    *ret = TAKE_PTR(v);
    *ret_n = n;
    return 0;
}

static json_object *encode_string_list(char *const *v, size_t n)
{
    _cleanup_json_ json_object *arr = json_object_new_array_ext((int)n);
    if (!arr)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_new_string(v[i]);
        if (!s || json_object_array_add(arr, s) < 0) {
            json_object_put(s);
            return NULL;
        }
    }
    return TAKE_PTR(arr);
}

static int decode_properties(json_object *obj, StringMap *ret, ApiError *reterr)
{
    json_object *props;
    char p[SPEC_PATH_MAX];
    int r = spec_member_object(obj, "", "properties", &props, reterr);
    if (r < 0 || !props)
        return r;
    size_t n = (size_t)json_object_object_length(props);
    if (n > SPEC_PROPERTIES_MAX)
        return api_bad_request(reterr, "Too many properties: %zu (at most %d)", n,
                               SPEC_PROPERTIES_MAX);
    /* A map in Go: keys are exact here, not matched case-insensitively. */
    size_t total = 0;
    json_object_object_foreach(props, key, val)
    {
        _cleanup_free_ char *value = NULL;
        if (!val)
            continue; /* null = absent, as everywhere else */
        size_t key_len = strlen(key);
        if (key_len > SPEC_PROPERTY_KEY_MAX)
            return api_bad_request(reterr, "Invalid property key '%.32s...': longer than %d bytes",
                                   key, SPEC_PROPERTY_KEY_MAX);
        snprintf(p, sizeof(p), "properties.%.200s", key);
        r = json_get_string(val, p, SPEC_PROPERTY_VALUE_MAX, &value, reterr);
        if (r < 0)
            return r;
        /* the same budget SetProperty enforces later, so Create cannot exceed it */
        total += key_len + strlen(value);
        if (total > SPEC_PROPERTIES_BYTES_MAX)
            return api_bad_request(reterr,
                                   "Invalid value for 'properties': keys and values exceed %u "
                                   "bytes",
                                   SPEC_PROPERTIES_BYTES_MAX);
        r = strmap_set(ret, key, value);
        if (r < 0)
            return api_internal_error(reterr, r, "Failed to store property '%.32s'", key);
    }
    return 0;
}

static json_object *encode_properties(const StringMap *m)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj)
        return NULL;
    STRMAP_FOREACH (i, m) {
        if (spec_add(obj, m->keys[i], json_object_new_string(m->values[i])) < 0)
            return NULL;
    }
    return TAKE_PTR(obj);
}

static int decode_netout_rules_member(json_object *obj, ContainerSpec *spec, ApiError *reterr)
{
    json_object *arr;
    int r = spec_member_array(obj, "", "netout_rules", SPEC_NETOUT_RULES_MAX, &arr, reterr);
    if (r < 0 || !arr)
        return r;
    return spec_decode_netout_rules(arr, &spec->netout_rules, &spec->n_netout_rules, reterr);
}

static int decode_netin_member(json_object *obj, ContainerSpec *spec, ApiError *reterr)
{
    json_object *arr;
    char p[SPEC_PATH_MAX];
    int r = spec_member_array(obj, "", "netin", SPEC_NETIN_MAX, &arr, reterr);
    if (r < 0 || !arr || json_object_array_length(arr) == 0)
        return r;
    size_t n = json_object_array_length(arr);
    spec->netin = calloc(n, sizeof(NetInSpec));
    if (!spec->netin)
        return api_internal_error(reterr, -ENOMEM, "Failed to decode 'netin'");
    spec->n_netin = n;
    for (size_t i = 0; i < n; i++) {
        r = spec_decode_netin_at(json_object_array_get_idx(arr, i), spec_path_index(p, "netin", i),
                                 &spec->netin[i], reterr);
        if (r < 0)
            return r;
    }
    return 0;
}

int spec_decode_container_spec(json_object *obj, ContainerSpec *ret, ApiError *reterr)
{
    _cleanup_(container_spec_done) ContainerSpec spec = {0};
    json_object *v;
    int r;

    *ret = (ContainerSpec){0};
    if ((r = json_expect_object(obj, NULL, reterr)) < 0 ||
        (r = spec_member_string(obj, "", "handle", SPEC_STRING_MAX, &spec.handle, reterr)) < 0 ||
        (spec.handle && (r = spec_validate_handle(spec.handle, reterr)) < 0))
        return r;

    if ((v = json_member(obj, "grace_time"))) {
        r = json_get_i64(v, "grace_time", &spec.grace_time_ns, reterr);
        if (r < 0)
            return r;
        if (spec.grace_time_ns < 0)
            return api_bad_request(reterr,
                                   "Invalid value for 'grace_time': %" PRId64 " is negative (it "
                                   "is in nanoseconds, 0 means the server default)",
                                   spec.grace_time_ns);
    }

    if ((r = spec_member_string(obj, "", "rootfs", SPEC_STRING_MAX, &spec.rootfs, reterr)) < 0)
        return r;
    if ((v = json_member(obj, "image")) &&
        (r = decode_image_ref(v, "image", &spec.image, reterr)) < 0)
        return r;
    if (spec.rootfs && spec.image.uri) /* guardian refuses this too */
        return api_bad_request(reterr, "Cannot set both 'rootfs' and 'image.uri'");

    if ((r = decode_bind_mounts(obj, &spec.bind_mounts, &spec.n_bind_mounts, reterr)) < 0 ||
        (r = spec_member_string(obj, "", "network", SPEC_STRING_MAX, &spec.network, reterr)) < 0 ||
        (r = decode_properties(obj, &spec.properties, reterr)) < 0 ||
        (r = decode_string_list(obj, "env", SPEC_ENV_MAX, true, &spec.env, &spec.n_env, reterr)) <
            0 ||
        (r = spec_member_bool(obj, "", "privileged", &spec.privileged, reterr)) < 0)
        return r;

    if ((v = json_member(obj, "limits")) &&
        (r = spec_decode_limits_at(v, "limits", &spec.limits, reterr)) < 0)
        return r;

    if ((r = decode_netout_rules_member(obj, &spec, reterr)) < 0 ||
        (r = decode_netin_member(obj, &spec, reterr)) < 0)
        return r;
    if ((v = json_member(obj, "cloche_service")) &&
        (r = spec_decode_service(v, "cloche_service", &spec.service, reterr)) < 0)
        return r;

    *ret = spec;
    spec = (ContainerSpec){0};
    return 0;
}

json_object *spec_encode_container_spec(const ContainerSpec *spec)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj || spec_add_string(obj, "handle", spec->handle) < 0 ||
        (spec->grace_time_ns != 0 &&
         spec_add(obj, "grace_time", json_object_new_int64(spec->grace_time_ns)) < 0) ||
        spec_add_string(obj, "rootfs", spec->rootfs) < 0 ||
        spec_add(obj, "image", encode_image_ref(&spec->image)) < 0 ||
        (spec->n_bind_mounts > 0 &&
         spec_add(obj, "bind_mounts", encode_bind_mounts(spec->bind_mounts, spec->n_bind_mounts)) <
             0) ||
        spec_add_string(obj, "network", spec->network) < 0 ||
        (spec->properties.n > 0 &&
         spec_add(obj, "properties", encode_properties(&spec->properties)) < 0) ||
        (spec->n_env > 0 && spec_add(obj, "env", encode_string_list(spec->env, spec->n_env)) < 0) ||
        spec_add_bool(obj, "privileged", spec->privileged) < 0 ||
        spec_add(obj, "limits", spec_encode_limits(&spec->limits)) < 0)
        return NULL;

    if (spec->n_netout_rules > 0) {
        json_object *rules = json_object_new_array_ext((int)spec->n_netout_rules);
        if (spec_add(obj, "netout_rules", rules) < 0)
            return NULL;
        for (size_t i = 0; i < spec->n_netout_rules; i++) {
            json_object *rule = spec_encode_netout_rule(&spec->netout_rules[i]);
            if (!rule || json_object_array_add(rules, rule) < 0) {
                json_object_put(rule);
                return NULL;
            }
        }
    }
    if (spec->n_netin > 0) {
        json_object *netin = json_object_new_array_ext((int)spec->n_netin);
        if (spec_add(obj, "netin", netin) < 0)
            return NULL;
        for (size_t i = 0; i < spec->n_netin; i++) {
            json_object *item = spec_encode_netin(&spec->netin[i]);
            if (!item || json_object_array_add(netin, item) < 0) {
                json_object_put(item);
                return NULL;
            }
        }
    }
    if (spec->service && spec_add(obj, "cloche_service", spec_encode_service(spec->service)) < 0)
        return NULL;
    return TAKE_PTR(obj);
}

static int decode_process_limits(json_object *obj, ProcessSpec *spec, ApiError *reterr)
{
    json_object *v;
    char p[SPEC_PATH_MAX];
    int r = json_expect_object(obj, "limits", reterr);
    if (r < 0)
        return r;
    spec->override_limits = true;
    if ((v = json_member(obj, "pid_limits")) &&
        (r = spec_decode_pid_limits_at(v, spec_path(p, "limits", "pid_limits"), &spec->pid_limits,
                                       reterr)) < 0)
        return r;
    if ((v = json_member(obj, "cpu_limits")) &&
        (r = spec_decode_cpu_limits_at(v, spec_path(p, "limits", "cpu_limits"), &spec->cpu_limits,
                                       reterr)) < 0)
        return r;
    if ((v = json_member(obj, "memory_limits")) &&
        (r = spec_decode_memory_limits_at(v, spec_path(p, "limits", "memory_limits"),
                                          &spec->memory_limits, reterr)) < 0)
        return r;
    /* The Go client omits "limits" when unset, but {"cpu_limits":{},...} is still no
     * override: only a non-zero value makes one. */
    spec->has_limits = spec->cpu_limits.weight || spec->cpu_limits.limit_in_shares ||
                       spec->memory_limits.limit_in_bytes || spec->pid_limits.max;
    return 0;
}

static int decode_tty(json_object *obj, TtySpec *ret, ApiError *reterr)
{
    json_object *ws;
    uint64_t columns = 0, rows = 0;
    int r = json_expect_object(obj, "tty", reterr);
    if (r < 0)
        return r;
    ret->present = true;
    if ((r = spec_member_object(obj, "tty", "window_size", &ws, reterr)) < 0 || !ws)
        return r;
    if ((r = spec_member_u64(ws, "tty.window_size", "columns", UINT16_MAX, &columns, NULL,
                             reterr)) < 0 ||
        (r = spec_member_u64(ws, "tty.window_size", "rows", UINT16_MAX, &rows, NULL, reterr)) < 0)
        return r;
    ret->has_window_size = true;
    ret->columns = (uint16_t)columns;
    ret->rows = (uint16_t)rows;
    return 0;
}

int spec_decode_process_spec(json_object *obj, ProcessSpec *ret, ApiError *reterr)
{
    _cleanup_(process_spec_done) ProcessSpec spec = {0};
    json_object *v;
    int r;

    *ret = (ProcessSpec){0};
    if ((r = json_expect_object(obj, NULL, reterr)) < 0 ||
        (r = spec_member_string(obj, "", "id", SPEC_STRING_MAX, &spec.id, reterr)) < 0 ||
        (spec.id && (r = validate_name("process id", spec.id, reterr)) < 0) ||
        (r = spec_member_string(obj, "", "path", SPEC_STRING_MAX, &spec.path, reterr)) < 0 ||
        (r = decode_string_list(obj, "args", SPEC_ARGS_MAX, false, &spec.args, &spec.n_args,
                                reterr)) < 0 ||
        (r = decode_string_list(obj, "env", SPEC_ENV_MAX, true, &spec.env, &spec.n_env, reterr)) <
            0 ||
        (r = spec_member_string(obj, "", "dir", SPEC_STRING_MAX, &spec.dir, reterr)) < 0 ||
        (r = spec_member_string(obj, "", "user", SPEC_STRING_MAX, &spec.user, reterr)) < 0)
        return r;

    if ((v = json_member(obj, "rlimits")) &&
        (r = spec_decode_rlimits_at(v, "rlimits", &spec.rlimits, reterr)) < 0)
        return r;
    if ((v = json_member(obj, "limits")) && (r = decode_process_limits(v, &spec, reterr)) < 0)
        return r;
    if ((v = json_member(obj, "tty")) && (r = decode_tty(v, &spec.tty, reterr)) < 0)
        return r;
    if ((v = json_member(obj, "image")) &&
        (r = decode_image_ref(v, "image", &spec.image, reterr)) < 0)
        return r;
    if ((r = decode_bind_mounts(obj, &spec.bind_mounts, &spec.n_bind_mounts, reterr)) < 0 ||
        (r = spec_member_bool(obj, "", "cloche_log", &spec.cloche_log, reterr)) < 0)
        return r;
    /* guardian refuses bind mounts on a process that is not a pea */
    if (spec.n_bind_mounts > 0 && !spec.image.uri)
        return api_bad_request(reterr, "Cannot set 'bind_mounts' without 'image.uri'");

    *ret = spec;
    spec = (ProcessSpec){0};
    return 0;
}

void container_spec_done(ContainerSpec *spec)
{
    if (!spec)
        return;
    free(spec->handle);
    free(spec->rootfs);
    image_ref_done(&spec->image);
    bind_mounts_free(spec->bind_mounts, spec->n_bind_mounts);
    free(spec->network);
    strmap_clear(&spec->properties);
    strv_free(spec->env);
    netout_rules_free(spec->netout_rules, spec->n_netout_rules);
    free(spec->netin);
    service_spec_free(spec->service);
    *spec = (ContainerSpec){0};
}

void process_spec_done(ProcessSpec *spec)
{
    if (!spec)
        return;
    free(spec->id);
    free(spec->path);
    strv_free(spec->args);
    strv_free(spec->env);
    free(spec->dir);
    free(spec->user);
    image_ref_done(&spec->image);
    bind_mounts_free(spec->bind_mounts, spec->n_bind_mounts);
    *spec = (ProcessSpec){0};
}

static const char *const container_state_names[] = {
    [CONTAINER_STATE_CREATING] = "creating",
    [CONTAINER_STATE_ACTIVE] = "active",
    [CONTAINER_STATE_STOPPED] = "stopped",
    [CONTAINER_STATE_DESTROYING] = "destroying",
};

const char *container_state_to_string(ContainerState s)
{
    if ((unsigned)s >= ELEMENTSOF(container_state_names))
        return NULL;
    return container_state_names[s];
}

int container_state_from_string(const char *s, ContainerState *ret)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ELEMENTSOF(container_state_names); i++)
        if (strcmp(s, container_state_names[i]) == 0) {
            *ret = (ContainerState)i;
            return 0;
        }
    return -EINVAL;
}
