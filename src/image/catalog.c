/* The catalog: the names the store knows, their images, and their removal. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"
#include "cloche/hashmap.h"
#include "image-internal.h"

void image_info_free(ImageInfo *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].digest);
    }
    free(v);
}

typedef struct CountUsers {
    const char *rootfs;
    size_t n;
} CountUsers;

static void count_users(const char *rootfs, void *ctx)
{
    CountUsers *c = ctx;
    if (strcmp(rootfs, c->rootfs) == 0)
        c->n++;
}

/* An image's manifest from its record, its rootfs string and its users. */
static int image_load(ImageStore *s, const char *digest, Manifest *m, char **ret_rootfs,
                      size_t *ret_users)
{
    _cleanup_free_ char *manifest = NULL;
    size_t len;
    int r = store_read_record(s, digest, "manifest", &manifest, &len);
    if (r < 0)
        return r;
    r = manifest_parse(manifest, len, "A stored manifest", m, NULL);
    if (r < 0)
        return r;
    char *rootfs = NULL;
    if (store_stack_string(s, m, &rootfs) < 0) {
        manifest_done(m);
        return -ENOMEM;
    }
    pthread_mutex_lock(&s->lock);
    ImageInUseFn fn = s->in_use;
    void *ud = s->in_use_userdata;
    pthread_mutex_unlock(&s->lock);
    CountUsers cu = {.rootfs = rootfs};
    if (fn)
        fn(ud, count_users, &cu);
    *ret_users = cu.n;
    *ret_rootfs = rootfs;
    return 0;
}

/* Snapshot of the names: pairs name, digest (owned). */
static int tags_snapshot(ImageStore *s, char ***ret, size_t *ret_n)
{
    pthread_mutex_lock(&s->lock);
    size_t n = hashmap_size(s->tags), i = 0, st = 0;
    char **v = calloc(2 * n + 1, sizeof(char *));
    const char *k;
    void *d;
    while (v && hashmap_iterate(s->tags, &st, &k, &d) == 0) {
        v[i++] = strdup(k);
        v[i++] = strdup(d);
    }
    pthread_mutex_unlock(&s->lock);
    if (!v)
        return -ENOMEM;
    for (size_t j = 0; j < 2 * n; j++)
        if (!v[j]) {
            strv_free(v);
            return -ENOMEM;
        }
    *ret = v;
    *ret_n = n;
    return 0;
}

int image_store_list(ImageStore *s, ImageInfo **ret, size_t *ret_n)
{
    _cleanup_strv_free_ char **tags = NULL;
    size_t n;
    int r = tags_snapshot(s, &tags, &n);
    if (r < 0)
        return r;
    ImageInfo *v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        Manifest m = {0};
        _cleanup_free_ char *rootfs = NULL;
        size_t users = 0;
        if (image_load(s, tags[2 * i + 1], &m, &rootfs, &users) < 0)
            continue; /* its records went (removed meanwhile) */
        ImageInfo *info = &v[k++];
        info->name = TAKE_PTR(tags[2 * i]);
        info->digest = TAKE_PTR(tags[2 * i + 1]);
        info->n_layers = m.n_layers;
        info->containers = users;
        for (size_t j = 0; j < m.n_layers; j++) {
            _cleanup_free_ char *size = NULL;
            size_t len;
            if (read_file_at(s->meta_fd, m.layers[j].digest + 7, 64, &size, &len) == 0)
                info->bytes += strtoull(size, NULL, 10);
        }
        manifest_done(&m);
    }
    *ret = v;
    *ret_n = k;
    return 0;
}

/* Remove a layer directory and its record now (not in use: checked by the caller). */
static void layer_remove(ImageStore *s, const char *hex)
{
    pthread_mutex_lock(&s->lock);
    _cleanup_free_ char *size = NULL;
    size_t len;
    uint64_t bytes =
        read_file_at(s->meta_fd, hex, 64, &size, &len) == 0 ? strtoull(size, NULL, 10) : 0;
    char doomed[96];
    snprintf(doomed, sizeof(doomed), "remove.%s", hex);
    int r = store_inflight_has(s, hex) ? -EBUSY : renameat(s->layers_fd, hex, s->tmp_fd, doomed);
    if (r == 0) {
        (void)unlinkat(s->meta_fd, hex, 0);
        s->bytes -= bytes < s->bytes ? bytes : s->bytes;
        s->layers--;
    }
    pthread_mutex_unlock(&s->lock);
    if (r == 0)
        (void)rm_rf_at(s->tmp_fd, doomed);
}

int image_store_remove(ImageStore *s, const ImageReference *ref, Failure *reterr)
{
    _cleanup_free_ char *name = NULL;
    if (image_ref_name(ref, &name) < 0)
        return failure_errno(reterr, -ENOMEM, "Failed to remove the image");
    pthread_mutex_lock(&s->lock);
    const char *known = hashmap_get(s->tags, name);
    _cleanup_free_ char *digest = known ? strdup(known) : NULL;
    pthread_mutex_unlock(&s->lock);
    if (!digest)
        return failure_input(reterr, -ENOENT, "Unknown image '%s'", name);
    Manifest m = {0};
    _cleanup_free_ char *rootfs = NULL;
    size_t users = 0;
    int r = image_load(s, digest, &m, &rootfs, &users);
    if (r >= 0 && users) {
        manifest_done(&m);
        return failure_input(reterr, -EBUSY, "Image '%s' is used by %zu container(s)", name, users);
    }
    char hex[65];
    image_sha256_hex(name, strlen(name), hex);
    pthread_mutex_lock(&s->lock);
    free(hashmap_remove(s->tags, name));
    (void)unlinkat(s->tags_fd, hex, 0);
    pthread_mutex_unlock(&s->lock);
    resolved_drop(s->resolved, name);
    if (r < 0)
        return 0; /* the records were gone already */

    /* What the other names still reference, and what containers use. */
    _cleanup_strv_free_ char **tags = NULL;
    size_t n = 0;
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s/layers/", s->dir);
    InUse used = {.layers_prefix = prefix, .prefix_len = strlen(prefix)};
    bool digest_shared = false;
    if (tags_snapshot(s, &tags, &n) >= 0) {
        for (size_t i = 0; i < n; i++) {
            Manifest other = {0};
            _cleanup_free_ char *other_rootfs = NULL;
            size_t other_users;
            digest_shared |= strcmp(tags[2 * i + 1], digest) == 0;
            if (image_load(s, tags[2 * i + 1], &other, &other_rootfs, &other_users) >= 0) {
                store_visit_rootfs(other_rootfs, &used);
                manifest_done(&other);
            }
        }
    } else {
        digest_shared = true; /* keep everything rather than guess */
    }
    pthread_mutex_lock(&s->lock);
    ImageInUseFn fn = s->in_use;
    void *ud = s->in_use_userdata;
    pthread_mutex_unlock(&s->lock);
    if (fn)
        fn(ud, store_visit_rootfs, &used);
    if (!digest_shared) {
        char rec[96];
        snprintf(rec, sizeof(rec), "%s.manifest", digest + 7);
        (void)unlinkat(s->images_fd, rec, 0);
        snprintf(rec, sizeof(rec), "%s.config", digest + 7);
        (void)unlinkat(s->images_fd, rec, 0);
        for (size_t i = 0; i < m.n_layers; i++) {
            const char *lh = m.layers[i].digest + 7;
            bool busy = false;
            for (size_t j = 0; j < used.n && !busy; j++)
                busy = strcmp(used.hexes[j], lh) == 0;
            if (!busy)
                layer_remove(s, lh);
        }
    }
    free(used.hexes);
    manifest_done(&m);
    return 0;
}
