/* docker:// and oci:// root file systems: the one call create makes into the
 * image store, the image's config applied to the spec, and the containers'
 * layer stacks reported to the store so it never evicts a layer in use. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/image.h"
#include "cloche/log.h"
#include "garden-internal.h"

/* The image's Env joins the container's; the container's wins on a clash. */
static int merge_env(ContainerSpec *spec, const ImageConfig *ic)
{
    size_t extra = 0;
    for (size_t i = 0; i < ic->n_env; i++) {
        size_t klen = strcspn(ic->env[i], "=");
        bool clash = false;
        for (size_t k = 0; k < spec->n_env && !clash; k++)
            clash = strncmp(spec->env[k], ic->env[i], klen) == 0 && spec->env[k][klen] == '=';
        if (!clash)
            extra++;
    }
    if (!extra)
        return 0;
    char **env = calloc(spec->n_env + extra + 1, sizeof(char *));
    if (!env)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < ic->n_env; i++) {
        size_t klen = strcspn(ic->env[i], "=");
        bool clash = false;
        for (size_t k = 0; k < spec->n_env && !clash; k++)
            clash = strncmp(spec->env[k], ic->env[i], klen) == 0 && spec->env[k][klen] == '=';
        if (!clash && !(env[n++] = strdup(ic->env[i]))) {
            strv_free(env);
            return -ENOMEM;
        }
    }
    for (size_t k = 0; k < spec->n_env; k++)
        env[n++] = spec->env[k];
    free(spec->env);
    spec->env = env;
    spec->n_env = n;
    return 0;
}

static int set_list(StringMap *p, const char *key, char **v, size_t n)
{
    if (!n)
        return 0;
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    _cleanup_free_ char *joined = calloc(1, len);
    if (!joined)
        return -ENOMEM;
    /* Newline-separated: arguments rarely hold one, and a client splits easily. */
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(joined, "\n");
        strcat(joined, v[i]);
    }
    return strmap_set(p, key, joined);
}

static int apply_config(ContainerSpec *spec, const ImagePulled *img)
{
    const ImageConfig *ic = &img->config;
    int r = merge_env(spec, ic);
    if (r >= 0)
        r = strmap_set(&spec->properties, "cloche.image.digest", img->digest);
    if (r >= 0 && ic->user && *ic->user)
        r = strmap_set(&spec->properties, "cloche.image.user", ic->user);
    if (r >= 0 && ic->working_dir && *ic->working_dir)
        r = strmap_set(&spec->properties, "cloche.image.working-dir", ic->working_dir);
    if (r >= 0)
        r = set_list(&spec->properties, "cloche.image.entrypoint", ic->entrypoint,
                     ic->n_entrypoint);
    if (r >= 0)
        r = set_list(&spec->properties, "cloche.image.cmd", ic->cmd, ic->n_cmd);
    if (r >= 0)
        r = set_list(&spec->properties, "cloche.image.exposed-ports", ic->exposed_ports,
                     ic->n_exposed_ports);
    if (r >= 0 && spec->service)
        r = garden_service_apply_image(spec->service, ic);
    return r;
}

static void on_pull_progress(void *userdata, const char *layer, uint64_t done, uint64_t total)
{
    const char *handle = userdata;
    if (layer && (done == total || done % (16u << 20) < (1u << 20)))
        log_debug("Container '%s': image layer '%s' %llu/%llu bytes", handle, layer,
                  (unsigned long long)done, (unsigned long long)total);
}

int garden_image_resolve(Garden *g, ContainerSpec *spec, char **ret_rootfs, ApiError *reterr)
{
    const char *uri = spec->image.uri && *spec->image.uri ? spec->image.uri : spec->rootfs;
    if (!uri || (strncmp(uri, "docker://", 9) != 0 && strncmp(uri, "oci://", 6) != 0 &&
                 strncmp(uri, "cloche://", 9) != 0))
        return 0;
    if (!g->cfg.images)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_GENERIC,
                          "This daemon has no image store");
    Failure failure = {0};
    _cleanup_(image_reference_done) ImageReference ref = {0};
    int r = image_ref_parse(uri, &ref, &failure);
    if (r < 0)
        return garden_image_failure(reterr, &failure, r);
    ImageCredentials cred = {.username = spec->image.username, .password = spec->image.password};
    _cleanup_(image_pulled_done) ImagePulled img = {0};
    r = image_store_pull(g->cfg.images, &ref, &cred, false, on_pull_progress, spec->handle, &img,
                         &failure);
    if (r < 0)
        return garden_image_failure(reterr, &failure, r);
    r = apply_config(spec, &img);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to apply the image's config");
    *ret_rootfs = TAKE_PTR(img.rootfs);
    return 1;
}

static void each_rootfs(void *userdata, ImageVisitFn visit, void *ctx)
{
    Garden *g = userdata;
    pthread_mutex_lock(&g->lock);
    size_t st = 0;
    const char *key;
    void *value;
    while (hashmap_iterate(g->containers, &st, &key, &value) == 0) {
        Container *c = value;
        if (c->rec.rootfs)
            visit(c->rec.rootfs, ctx);
        garden_pea_visit_images(g, key, visit, ctx); /* peas' layers are in use too */
    }
    pthread_mutex_unlock(&g->lock);
}

void garden_images_attach(Garden *g, bool attach)
{
    if (g->cfg.images)
        image_store_set_in_use(g->cfg.images, attach ? each_rootfs : NULL, attach ? g : NULL);
}

static int parse_image_uri(Garden *g, const char *uri, ImageReference *ref, ApiError *reterr)
{
    if (!g->cfg.images)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_GENERIC,
                          "This daemon has no image store");
    if (!uri || !*uri)
        return api_bad_request(reterr, "Missing 'ref': a docker:// or oci:// image reference");
    Failure failure = {0};
    int r = image_ref_parse(uri, ref, &failure);
    if (r < 0)
        return garden_image_failure(reterr, &failure, r);
    if (ref->kind == IMAGE_REF_RAW) {
        image_reference_done(ref);
        return api_bad_request(reterr, "'%s' is a directory, not an image to pull", uri);
    }
    return r;
}

int garden_images_list(Garden *g, ImageInfo **ret, size_t *ret_n, ApiError *reterr)
{
    if (!g->cfg.images) {
        *ret = NULL;
        *ret_n = 0;
        return 0;
    }
    int r = image_store_list(g->cfg.images, ret, ret_n);
    return r < 0 ? api_internal_error(reterr, r, "Failed to list the images") : 0;
}

int garden_image_remove(Garden *g, const char *uri, ApiError *reterr)
{
    _cleanup_(image_reference_done) ImageReference ref = {0};
    int r = parse_image_uri(g, uri, &ref, reterr);
    if (r < 0)
        return r;
    Failure failure = {0};
    r = image_store_remove(g->cfg.images, &ref, &failure);
    return r < 0 ? garden_image_failure(reterr, &failure, r) : r;
}

int garden_image_pull(Garden *g, const char *uri, const ImageCredentials *cred, ImageProgressFn fn,
                      void *userdata, char **ret_digest, ApiError *reterr)
{
    _cleanup_(image_reference_done) ImageReference ref = {0};
    int r = parse_image_uri(g, uri, &ref, reterr);
    if (r < 0)
        return r;
    _cleanup_(image_pulled_done) ImagePulled img = {0};
    Failure failure = {0};
    r = image_store_pull(g->cfg.images, &ref, cred, true, fn, userdata, &img, &failure);
    if (r < 0)
        return garden_image_failure(reterr, &failure, r);
    *ret_digest = TAKE_PTR(img.digest);
    return 0;
}

int garden_image_import_file(Garden *g, int *ret_fd, ApiError *reterr)
{
    if (!g->cfg.images)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_GENERIC,
                          "This daemon has no image store");
    int r = image_store_import_file(g->cfg.images, ret_fd);
    return r < 0 ? api_internal_error(reterr, r, "Failed to make room for the archive") : 0;
}

int garden_image_import(Garden *g, const char *name_tag, int fd, char **ret_digest,
                        ApiError *reterr)
{
    Failure failure = {0};
    int r = image_store_import(g->cfg.images, name_tag, fd, ret_digest, &failure);
    return r < 0 ? garden_image_failure(reterr, &failure, r) : r;
}

int container_commit(Garden *g, Container *c, const char *name_tag, const ImageCommitOptions *opts,
                     char **ret_digest, ApiError *reterr)
{
    if (!g->cfg.images)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_GENERIC,
                          "This daemon has no image store");
    if (!name_tag || !*name_tag)
        return api_bad_request(reterr, "Missing 'name': the new image's NAME[:TAG]");
    _cleanup_free_ char *dir = NULL;
    int r = depot_container_path(g->depot, c->rec.handle, &dir);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to find the container's directory");
    pthread_mutex_lock(&c->lock);
    const char *d = strmap_get(&c->rec.properties, "cloche.image.digest");
    _cleanup_free_ char *digest = d ? strdup(d) : NULL;
    _cleanup_free_ char *rootfs = c->rec.rootfs ? strdup(c->rec.rootfs) : NULL;
    uint32_t shift = c->rec.spec.privileged ? 0 : c->rec.uid_base;
    pthread_mutex_unlock(&c->lock);
    _cleanup_free_ char *upper = NULL;
    if (asprintf(&upper, "%s/rootfs/upper", dir) < 0)
        return -ENOMEM;
    Failure failure = {0};
    r = image_store_commit(g->cfg.images, digest, rootfs ? rootfs : "", upper, shift, name_tag,
                           opts, ret_digest, &failure);
    return r < 0 ? garden_image_failure(reterr, &failure, r) : r;
}

int garden_image_export(Garden *g, const char *uri, ImageWriteFn fn, void *userdata,
                        ApiError *reterr)
{
    _cleanup_(image_reference_done) ImageReference ref = {0};
    int r = parse_image_uri(g, uri, &ref, reterr);
    if (r < 0)
        return r;
    Failure failure = {0};
    r = image_store_export(g->cfg.images, &ref, fn, userdata, &failure);
    return r < 0 ? garden_image_failure(reterr, &failure, r) : r;
}
