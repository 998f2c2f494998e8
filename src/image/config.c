/* A commit's changes to an image config (the OCI config JSON, the image
 * module's own format, not Garden's): what a Dockerfile's ENV, LABEL, EXPOSE,
 * USER, WORKDIR, CMD and ENTRYPOINT say, a history entry, the new layer's
 * diff_id and the parent image. */
#include <errno.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "image-internal.h"

/* o[key] as an object or array of the wanted type, made when missing or null. */
static json_object *child(json_object *o, const char *key, json_type type)
{
    json_object *v = json_member(o, key);
    if (v && json_object_is_type(v, type))
        return v;
    v = type == json_type_array ? json_object_new_array() : json_object_new_object();
    if (!v || json_object_object_add(o, key, v) < 0) {
        json_object_put(v);
        return NULL;
    }
    return v;
}

static json_object *string_array(char **v, size_t n)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_object_array_add(a, json_object_new_string(v[i])) < 0) {
            json_object_put(a);
            return NULL;
        }
    return a;
}

static int set_env(json_object *cfg, char **env, size_t n)
{
    json_object *a = n ? child(cfg, "Env", json_type_array) : NULL;
    if (n && !a)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t klen = strcspn(env[i], "=");
        size_t len = json_object_array_length(a), k;
        for (k = 0; k < len; k++) {
            json_object *e = json_object_array_get_idx(a, k);
            const char *s =
                json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "";
            if (strncmp(s, env[i], klen) == 0 && s[klen] == '=')
                break;
        }
        json_object *v = json_object_new_string(env[i]);
        if (!v ||
            (k < len ? json_object_array_put_idx(a, k, v) : json_object_array_add(a, v)) < 0) {
            json_object_put(v);
            return -ENOMEM;
        }
    }
    return 0;
}

static int set_labels(json_object *cfg, char **labels, size_t n)
{
    json_object *o = n ? child(cfg, "Labels", json_type_object) : NULL;
    if (n && !o)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t klen = strcspn(labels[i], "=");
        _cleanup_free_ char *key = strndup(labels[i], klen);
        const char *value = labels[i][klen] ? labels[i] + klen + 1 : "";
        json_object *v = json_object_new_string(value);
        if (!key || !v || json_object_object_add(o, key, v) < 0) {
            json_object_put(v);
            return -ENOMEM;
        }
    }
    return 0;
}

static int set_list(json_object *cfg, const char *key, char **v, size_t n)
{
    if (n == 0) {
        json_object_object_del(cfg, key);
        return 0;
    }
    json_object *a = string_array(v, n);
    if (!a || json_object_object_add(cfg, key, a) < 0) {
        json_object_put(a);
        return -ENOMEM;
    }
    return 0;
}

static int set_string(json_object *cfg, const char *key, const char *value)
{
    json_object *v = json_object_new_string(value);
    if (!v || json_object_object_add(cfg, key, v) < 0) {
        json_object_put(v);
        return -ENOMEM;
    }
    return 0;
}

static int apply(json_object *o, const ImageConfigPatch *p, const char *diff_id, const char *parent)
{
    json_object *cfg = child(o, "config", json_type_object);
    if (!cfg)
        return -ENOMEM;
    int r = set_env(cfg, p->env, p->n_env);
    if (r >= 0)
        r = set_labels(cfg, p->labels, p->n_labels);
    json_object *ports = p->n_exposed_ports ? child(cfg, "ExposedPorts", json_type_object) : NULL;
    if (p->n_exposed_ports && !ports)
        r = -ENOMEM;
    for (size_t i = 0; r >= 0 && i < p->n_exposed_ports; i++) {
        json_object *empty = json_object_new_object();
        if (!empty || json_object_object_add(ports, p->exposed_ports[i], empty) < 0) {
            json_object_put(empty);
            r = -ENOMEM;
        }
    }
    if (r >= 0 && p->user)
        r = set_string(cfg, "User", p->user);
    if (r >= 0 && p->working_dir)
        r = set_string(cfg, "WorkingDir", p->working_dir);
    if (r >= 0 && p->set_entrypoint)
        r = set_list(cfg, "Entrypoint", p->entrypoint, p->n_entrypoint);
    if (r >= 0 && p->set_cmd)
        r = set_list(cfg, "Cmd", p->cmd, p->n_cmd);
    if (r < 0)
        return r;
    if (diff_id) {
        json_object *rootfs = child(o, "rootfs", json_type_object);
        json_object *ids = rootfs ? child(rootfs, "diff_ids", json_type_array) : NULL;
        if (!ids || set_string(rootfs, "type", "layers") < 0 ||
            json_object_array_add(ids, json_object_new_string(diff_id)) < 0)
            return -ENOMEM;
    }
    if (p->created_by || !diff_id) {
        json_object *history = child(o, "history", json_type_array);
        json_object *h = json_object_new_object();
        if (!history || !h || json_object_array_add(history, h) < 0) {
            json_object_put(h);
            return -ENOMEM;
        }
        if (p->created_by && set_string(h, "created_by", p->created_by) < 0)
            return -ENOMEM;
        if (!diff_id && json_object_object_add(h, "empty_layer", json_object_new_boolean(1)) < 0)
            return -ENOMEM;
    }
    /* Docker's own field: the image this one was committed on. */
    return parent ? set_string(o, "parent", parent) : 0;
}

int image_config_patch(const char *data, size_t len, const ImageConfigPatch *p, const char *diff_id,
                       const char *parent, char **ret, size_t *ret_len)
{
    _cleanup_json_ json_object *o = NULL;
    Failure ignored = {0};
    if (json_parse_value(data, len, &o, &ignored) < 0 || !o ||
        !json_object_is_type(o, json_type_object))
        return -EBADMSG;
    int r = apply(o, p, diff_id, parent);
    if (r < 0)
        return r;
    *ret = json_serialize(o, ret_len);
    if (!*ret)
        return -ENOMEM;
    return *ret_len > IMAGE_CONFIG_MAX ? -EFBIG : 0;
}
