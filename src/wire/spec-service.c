/* The "cloche_service" member of a create body: a supervised main process, its
 * restart policy, back-off and log rotation (doc/api.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "cloche/wire.h"
#include "spec-internal.h"

static const char *const restart_names[] = {
    [SERVICE_RESTART_NO] = "no",
    [SERVICE_RESTART_ON_FAILURE] = "on-failure",
    [SERVICE_RESTART_ALWAYS] = "always",
    [SERVICE_RESTART_UNLESS_STOPPED] = "unless-stopped",
};

const char *service_restart_to_string(ServiceRestart r)
{
    return (unsigned)r < ELEMENTSOF(restart_names) ? restart_names[r] : "no";
}

void service_spec_free(ServiceSpec *s)
{
    if (!s)
        return;
    free(s->path);
    strv_free(s->args);
    strv_free(s->env);
    free(s->dir);
    free(s->user);
    free(s);
}

static int decode_list(json_object *obj, const char *path, const char *key, size_t max_items,
                       bool is_env, char ***ret, size_t *ret_n, ApiError *reterr)
{
    json_object *arr;
    char p[SPEC_PATH_MAX], item[SPEC_PATH_MAX];
    int r = spec_member_array(obj, path, key, max_items, &arr, reterr);
    if (r < 0 || !arr || json_object_array_length(arr) == 0)
        return r;
    size_t n = json_object_array_length(arr);
    _cleanup_strv_free_ char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return api_internal_error(reterr, -ENOMEM, "Failed to decode '%s'", path);
    spec_path(p, path, key);
    for (size_t i = 0; i < n; i++) {
        spec_path_index(item, p, i);
        r = json_get_string(json_object_array_get_idx(arr, i), item, SPEC_ARG_STRING_MAX, &v[i],
                            reterr);
        if (r < 0)
            return r;
        const char *eq = strchr(v[i], '=');
        if (is_env && (!eq || eq == v[i]))
            return api_bad_request(reterr,
                                   "Invalid value for '%s': '%.64s' is not of the form NAME=VALUE",
                                   item, v[i]);
    }
    *ret = TAKE_PTR(v);
    *ret_n = n;
    return 0;
}

/* An integer member in min..max; absent leaves *ret as it is. */
static int decode_bounded(json_object *obj, const char *path, const char *key, uint64_t min,
                          uint64_t max, uint64_t *ret, ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    uint64_t v = *ret;
    bool set = false;
    int r = spec_member_u64(obj, path, key, max, &v, &set, reterr);
    if (r < 0)
        return r;
    if (set && v < min)
        return api_bad_request(reterr, "Invalid value for '%s': %llu is out of range (%llu..%llu)",
                               spec_path(p, path, key), (unsigned long long)v,
                               (unsigned long long)min, (unsigned long long)max);
    *ret = v;
    return 0;
}

static int decode_restart(json_object *obj, const char *path, ServiceSpec *s, ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    _cleanup_free_ char *name = NULL;
    int r = spec_member_string(obj, path, "restart", 32, &name, reterr);
    if (r < 0 || !name)
        return r;
    for (size_t i = 0; i < ELEMENTSOF(restart_names); i++)
        if (strcmp(name, restart_names[i]) == 0) {
            s->restart = (ServiceRestart)i;
            return 0;
        }
    return api_bad_request(reterr,
                           "Invalid value for '%s': '%s' is not one of 'no', 'on-failure', "
                           "'always', 'unless-stopped'",
                           spec_path(p, path, "restart"), name);
}

static int decode_backoff(json_object *obj, const char *path, ServiceSpec *s, ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    json_object *b;
    int r = spec_member_object(obj, path, "backoff", &b, reterr);
    if (r < 0 || !b)
        return r;
    spec_path(p, path, "backoff");
    uint64_t initial = s->backoff_initial_ms, max = s->backoff_max_ms, reset = s->backoff_reset_ms;
    if ((r = decode_bounded(b, p, "initial_ms", SERVICE_BACKOFF_MIN_MS, SERVICE_BACKOFF_MAX_MS,
                            &initial, reterr)) < 0 ||
        (r = decode_bounded(b, p, "max_ms", SERVICE_BACKOFF_MIN_MS, SERVICE_BACKOFF_MAX_MS, &max,
                            reterr)) < 0 ||
        (r = decode_bounded(b, p, "reset_after_ms", 0, SERVICE_RESET_MAX_MS, &reset, reterr)) < 0)
        return r;
    if (max < initial)
        return api_bad_request(reterr,
                               "Invalid value for '%s.max_ms': %llu is below initial_ms (%llu)", p,
                               (unsigned long long)max, (unsigned long long)initial);
    s->backoff_initial_ms = (uint32_t)initial;
    s->backoff_max_ms = (uint32_t)max;
    s->backoff_reset_ms = (uint32_t)reset;
    return 0;
}

static int decode_log(json_object *obj, const char *path, ServiceSpec *s, ApiError *reterr)
{
    char p[SPEC_PATH_MAX];
    json_object *l;
    int r = spec_member_object(obj, path, "log", &l, reterr);
    if (r < 0 || !l)
        return r;
    spec_path(p, path, "log");
    uint64_t files = s->log_max_files;
    if ((r = decode_bounded(l, p, "max_size", SERVICE_LOG_SIZE_MIN, SERVICE_LOG_SIZE_MAX,
                            &s->log_max_size, reterr)) < 0 ||
        (r = decode_bounded(l, p, "max_files", 1, SERVICE_LOG_FILES_MAX, &files, reterr)) < 0)
        return r;
    s->log_max_files = (uint32_t)files;
    return 0;
}

int spec_decode_service(json_object *obj, const char *path, ServiceSpec **ret, ApiError *reterr)
{
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    ServiceSpec *s = calloc(1, sizeof(*s));
    if (!s)
        return api_internal_error(reterr, -ENOMEM, "Failed to decode '%s'", path);
    s->restart = SERVICE_RESTART_ON_FAILURE;
    s->backoff_initial_ms = SERVICE_DEFAULT_BACKOFF_INITIAL_MS;
    s->backoff_max_ms = SERVICE_DEFAULT_BACKOFF_MAX_MS;
    s->backoff_reset_ms = SERVICE_DEFAULT_BACKOFF_RESET_MS;
    s->log_max_size = SERVICE_DEFAULT_LOG_SIZE;
    s->log_max_files = SERVICE_DEFAULT_LOG_FILES;
    uint64_t max_restarts = 0;
    if ((r = spec_member_string(obj, path, "path", SPEC_STRING_MAX, &s->path, reterr)) < 0 ||
        (r = decode_list(obj, path, "args", SPEC_ARGS_MAX, false, &s->args, &s->n_args, reterr)) <
            0 ||
        (r = decode_list(obj, path, "env", SPEC_ENV_MAX, true, &s->env, &s->n_env, reterr)) < 0 ||
        (r = spec_member_string(obj, path, "dir", SPEC_STRING_MAX, &s->dir, reterr)) < 0 ||
        (r = spec_member_string(obj, path, "user", SPEC_STRING_MAX, &s->user, reterr)) < 0 ||
        (r = decode_restart(obj, path, s, reterr)) < 0 ||
        (r = spec_member_u64(obj, path, "max_restarts", SERVICE_MAX_RESTARTS_MAX, &max_restarts,
                             NULL, reterr)) < 0 ||
        (r = decode_backoff(obj, path, s, reterr)) < 0 ||
        (r = decode_log(obj, path, s, reterr)) < 0) {
        service_spec_free(s);
        return r;
    }
    s->max_restarts = (uint32_t)max_restarts;
    if (s->args && !s->path) {
        service_spec_free(s);
        return api_bad_request(reterr, "Cannot set '%s.args' without '%s.path'", path, path);
    }
    *ret = s;
    return 0;
}

static json_object *encode_list(char *const *v, size_t n)
{
    _cleanup_json_ json_object *arr = json_object_new_array_ext((int)n);
    for (size_t i = 0; arr && i < n; i++) {
        json_object *s = json_object_new_string(v[i]);
        if (!s || json_object_array_add(arr, s) < 0) {
            json_object_put(s);
            return NULL;
        }
    }
    return TAKE_PTR(arr);
}

json_object *spec_encode_service(const ServiceSpec *s)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    json_object *backoff = json_object_new_object();
    json_object *log = json_object_new_object();
    if (!obj || spec_add(obj, "backoff", backoff) < 0 || spec_add(obj, "log", log) < 0)
        return NULL;
    if (spec_add_string(obj, "path", s->path) < 0 ||
        (s->n_args && spec_add(obj, "args", encode_list(s->args, s->n_args)) < 0) ||
        (s->n_env && spec_add(obj, "env", encode_list(s->env, s->n_env)) < 0) ||
        spec_add_string(obj, "dir", s->dir) < 0 || spec_add_string(obj, "user", s->user) < 0 ||
        spec_add(obj, "restart", json_object_new_string(service_restart_to_string(s->restart))) <
            0 ||
        spec_add_u64(obj, "max_restarts", s->max_restarts) < 0 ||
        spec_add(backoff, "initial_ms", json_new_u64(s->backoff_initial_ms)) < 0 ||
        spec_add(backoff, "max_ms", json_new_u64(s->backoff_max_ms)) < 0 ||
        spec_add(backoff, "reset_after_ms", json_new_u64(s->backoff_reset_ms)) < 0 ||
        spec_add(log, "max_size", json_new_u64(s->log_max_size)) < 0 ||
        spec_add(log, "max_files", json_new_u64(s->log_max_files)) < 0)
        return NULL;
    return TAKE_PTR(obj);
}
