/* Docker schema 2 and OCI manifests, manifest lists and OCI indexes, and the
 * image config: the registry's JSON, read into typed structs here and nowhere
 * else. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "image-internal.h"

#define MEDIA_TYPE_MAX 256
#define CONFIG_STRING_MAX 131072
#define CONFIG_LIST_MAX 4096

static void descriptor_done(Descriptor *d)
{
    free(d->media_type);
    free(d->digest);
    *d = (Descriptor){0};
}

void manifest_done(Manifest *m)
{
    descriptor_done(&m->config);
    descriptor_done(&m->chosen);
    for (size_t i = 0; i < m->n_layers; i++)
        descriptor_done(&m->layers[i]);
    free(m->layers);
    *m = (Manifest){0};
}

static int bad(Failure *reterr, const char *what, const char *why)
{
    return failure_set(reterr, -EBADMSG, FAILURE_REMOTE, "%s is invalid: %s", what, why);
}

static int descriptor_parse(json_object *o, const char *what, Descriptor *ret, Failure *reterr)
{
    Failure ignored = {0};
    if (!o || !json_object_is_type(o, json_type_object))
        return bad(reterr, what, "a descriptor is not an object");
    json_object *mt = json_member(o, "mediaType");
    json_object *d = json_member(o, "digest");
    json_object *sz = json_member(o, "size");
    uint64_t size = 0;
    if (!d || !json_object_is_type(d, json_type_string) ||
        !image_digest_valid(json_object_get_string(d)))
        return bad(reterr, what, "a descriptor has no sha256 digest");
    if (!sz || json_read_u64(sz, "size", IMAGE_BLOB_MAX, &size, &ignored) < 0)
        return bad(reterr, what, "a descriptor has no valid size");
    if (mt && (!json_object_is_type(mt, json_type_string) ||
               json_object_get_string_len(mt) > MEDIA_TYPE_MAX))
        return bad(reterr, what, "a descriptor has an invalid mediaType");
    ret->digest = strdup(json_object_get_string(d));
    ret->media_type = strdup(mt ? json_object_get_string(mt) : "");
    ret->size = size;
    if (!ret->digest || !ret->media_type) {
        descriptor_done(ret);
        return -ENOMEM;
    }
    return 0;
}

static const char *host_architecture(void)
{
    struct utsname u;
    if (uname(&u) < 0)
        return "amd64";
    if (strcmp(u.machine, "x86_64") == 0)
        return "amd64";
    if (strcmp(u.machine, "aarch64") == 0)
        return "arm64";
    if (strncmp(u.machine, "arm", 3) == 0)
        return "arm";
    return strcmp(u.machine, "i686") == 0 ? "386" : "amd64";
}

static bool str_eq(json_object *o, const char *want)
{
    return o && json_object_is_type(o, json_type_string) &&
           strcmp(json_object_get_string(o), want) == 0;
}

int manifest_parse(const char *data, size_t len, const char *what, Manifest *ret, Failure *reterr)
{
    _cleanup_json_ json_object *o = NULL;
    Failure perr = {0};
    if (json_parse_value(data, len, &o, &perr) < 0)
        return bad(reterr, what, perr.message);
    if (!o || !json_object_is_type(o, json_type_object))
        return bad(reterr, what, "not an object");
    json_object *sv = json_member(o, "schemaVersion");
    if (!sv || !json_object_is_type(sv, json_type_int) || json_object_get_int64(sv) != 2)
        return bad(reterr, what, "schemaVersion is not 2 (schema 1 images are not supported)");
    Manifest m = {0};
    int r = 0;
    json_object *list = json_member(o, "manifests");
    if (list) {
        m.is_index = true;
        if (!json_object_is_type(list, json_type_array))
            return bad(reterr, what, "'manifests' is not an array");
        const char *arch = host_architecture();
        size_t n = json_object_array_length(list);
        json_object *pick = NULL;
        for (size_t i = 0; i < n && !pick; i++) {
            json_object *e = json_object_array_get_idx(list, i);
            json_object *p =
                e && json_object_is_type(e, json_type_object) ? json_member(e, "platform") : NULL;
            if (p && str_eq(json_member(p, "os"), "linux") &&
                str_eq(json_member(p, "architecture"), arch))
                pick = e;
        }
        if (!pick)
            return failure_input(reterr, -ENOENT, "%s lists no image for linux/%s", what, arch);
        r = descriptor_parse(pick, what, &m.chosen, reterr);
        if (r < 0)
            return r;
        *ret = m;
        return 0;
    }
    json_object *layers = json_member(o, "layers");
    if (!layers || !json_object_is_type(layers, json_type_array))
        return bad(reterr, what, "no 'layers' array");
    size_t n = json_object_array_length(layers);
    if (n > IMAGE_MAX_LAYERS)
        return failure_input(reterr, -E2BIG, "%s has %zu layers; cloche takes at most %d", what, n,
                             IMAGE_MAX_LAYERS);
    r = descriptor_parse(json_member(o, "config"), what, &m.config, reterr);
    if (r < 0)
        return r;
    if (m.config.size > IMAGE_CONFIG_MAX) {
        manifest_done(&m);
        return bad(reterr, what, "the config is larger than 8 MiB");
    }
    m.layers = calloc(n ? n : 1, sizeof(Descriptor));
    if (!m.layers) {
        manifest_done(&m);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        r = descriptor_parse(json_object_array_get_idx(layers, i), what, &m.layers[i], reterr);
        if (r < 0) {
            manifest_done(&m);
            return r;
        }
        m.n_layers++;
        LayerCompression c;
        if (layer_compression(m.layers[i].media_type, &c) < 0) {
            r = failure_input(reterr, -EPROTONOSUPPORT, "%s has a layer of unsupported type '%s'",
                              what, m.layers[i].media_type);
            manifest_done(&m);
            return r;
        }
    }
    *ret = m;
    return 0;
}

void image_config_done(ImageConfig *c)
{
    strv_free(c->env);
    free(c->user);
    free(c->working_dir);
    strv_free(c->entrypoint);
    strv_free(c->cmd);
    strv_free(c->exposed_ports);
    *c = (ImageConfig){0};
}

static int string_list(json_object *a, char ***ret, size_t *ret_n)
{
    if (!a)
        return 0;
    if (!json_object_is_type(a, json_type_array))
        return -EBADMSG;
    size_t n = json_object_array_length(a);
    if (n > CONFIG_LIST_MAX)
        return -E2BIG;
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(a, i);
        if (!e || !json_object_is_type(e, json_type_string) ||
            json_object_get_string_len(e) > CONFIG_STRING_MAX ||
            !(v[i] = strdup(json_object_get_string(e)))) {
            strv_free(v);
            return e && json_object_is_type(e, json_type_string) ? -ENOMEM : -EBADMSG;
        }
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int opt_string(json_object *s, char **ret)
{
    if (!s)
        return 0;
    if (!json_object_is_type(s, json_type_string) ||
        json_object_get_string_len(s) > CONFIG_STRING_MAX)
        return -EBADMSG;
    *ret = strdup(json_object_get_string(s));
    return *ret ? 0 : -ENOMEM;
}

int image_config_parse(const char *data, size_t len, const char *what, ImageConfig *ret,
                       Failure *reterr)
{
    _cleanup_json_ json_object *o = NULL;
    Failure perr = {0};
    if (json_parse_value(data, len, &o, &perr) < 0)
        return bad(reterr, what, perr.message);
    if (!o || !json_object_is_type(o, json_type_object))
        return bad(reterr, what, "not an object");
    ImageConfig c = {0};
    json_object *cfg = json_member(o, "config");
    if (!cfg) {
        *ret = c;
        return 0;
    }
    if (!json_object_is_type(cfg, json_type_object))
        return bad(reterr, what, "'config' is not an object");
    int r = string_list(json_member(cfg, "Env"), &c.env, &c.n_env);
    if (r >= 0)
        r = string_list(json_member(cfg, "Entrypoint"), &c.entrypoint, &c.n_entrypoint);
    if (r >= 0)
        r = string_list(json_member(cfg, "Cmd"), &c.cmd, &c.n_cmd);
    if (r >= 0)
        r = opt_string(json_member(cfg, "User"), &c.user);
    if (r >= 0)
        r = opt_string(json_member(cfg, "WorkingDir"), &c.working_dir);
    json_object *ports = json_member(cfg, "ExposedPorts");
    if (r >= 0 && ports) {
        if (!json_object_is_type(ports, json_type_object) ||
            json_object_object_length(ports) > CONFIG_LIST_MAX)
            r = -EBADMSG;
        else if (!(c.exposed_ports =
                       calloc((size_t)json_object_object_length(ports) + 1, sizeof(char *))))
            r = -ENOMEM;
        else {
            json_object_object_foreach(ports, key, val)
            {
                (void)val;
                if (strlen(key) > 32 || !(c.exposed_ports[c.n_exposed_ports] = strdup(key))) {
                    r = strlen(key) > 32 ? -EBADMSG : -ENOMEM;
                    break;
                }
                c.n_exposed_ports++;
            }
        }
    }
    for (size_t i = 0; r >= 0 && i < c.n_env; i++)
        if (!strchr(c.env[i], '=') || c.env[i][0] == '=')
            r = -EBADMSG;
    if (r < 0) {
        image_config_done(&c);
        return r == -ENOMEM ? failure_errno(reterr, r, "Failed to read %s", what)
                            : bad(reterr, what, "a field of 'config' has the wrong type");
    }
    *ret = c;
    return 0;
}

int manifest_append_layer(const char *data, size_t len, const Descriptor *d, char **ret,
                          size_t *ret_len)
{
    _cleanup_json_ json_object *o = NULL;
    Failure ignored = {0};
    if (json_parse_value(data, len, &o, &ignored) < 0 || !o)
        return -EBADMSG;
    json_object *layers = json_member(o, "layers");
    if (!layers || !json_object_is_type(layers, json_type_array))
        return -EBADMSG;
    json_object *e = json_object_new_object();
    if (!e)
        return -ENOMEM;
    json_object_object_add(e, "mediaType", json_object_new_string(d->media_type));
    json_object_object_add(e, "digest", json_object_new_string(d->digest));
    json_object_object_add(e, "size", json_new_u64(d->size));
    json_object_array_add(layers, e);
    *ret = json_serialize(o, ret_len);
    return *ret ? 0 : -ENOMEM;
}

int manifest_set_config(const char *data, size_t len, const char *digest, uint64_t size, char **ret,
                        size_t *ret_len)
{
    _cleanup_json_ json_object *o = NULL;
    Failure ignored = {0};
    if (json_parse_value(data, len, &o, &ignored) < 0 || !o)
        return -EBADMSG;
    json_object *c = json_member(o, "config");
    if (!c || !json_object_is_type(c, json_type_object))
        return -EBADMSG;
    json_object_object_add(c, "digest", json_object_new_string(digest));
    json_object_object_add(c, "size", json_new_u64(size));
    *ret = json_serialize(o, ret_len);
    return *ret ? 0 : -ENOMEM;
}
