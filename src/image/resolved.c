/* Images already resolved by name, in memory: a create from a cached image
 * reads no file and parses no JSON. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloche/cleanup.h"
#include "cloche/hashmap.h"
#include "image-internal.h"

#define TOUCH_EVERY_S 10 /* how fresh a layer's last use is kept for the LRU */

typedef struct Resolved {
    ImagePulled img;
    int64_t touched;
} Resolved;

struct ResolvedCache {
    pthread_mutex_t lock;
    HashMap *map; /* name -> Resolved* */
};

static char **strv_copy(char **v, size_t n)
{
    char **c = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; c && i < n; i++)
        if (!(c[i] = strdup(v[i]))) {
            strv_free(c);
            return NULL;
        }
    return c;
}

static int pulled_copy(const ImagePulled *in, ImagePulled *out)
{
    const ImageConfig *a = &in->config;
    ImageConfig *b = &out->config;
    *out = (ImagePulled){.bytes = in->bytes};
    out->rootfs = strdup(in->rootfs);
    out->digest = strdup(in->digest);
    b->env = strv_copy(a->env, a->n_env);
    b->n_env = a->n_env;
    b->entrypoint = strv_copy(a->entrypoint, a->n_entrypoint);
    b->n_entrypoint = a->n_entrypoint;
    b->cmd = strv_copy(a->cmd, a->n_cmd);
    b->n_cmd = a->n_cmd;
    b->exposed_ports = strv_copy(a->exposed_ports, a->n_exposed_ports);
    b->n_exposed_ports = a->n_exposed_ports;
    b->user = a->user ? strdup(a->user) : NULL;
    b->working_dir = a->working_dir ? strdup(a->working_dir) : NULL;
    if (!out->rootfs || !out->digest || !b->env || !b->entrypoint || !b->cmd || !b->exposed_ports ||
        (a->user && !b->user) || (a->working_dir && !b->working_dir)) {
        image_pulled_done(out);
        return -ENOMEM;
    }
    return 0;
}

int resolved_new(ResolvedCache **ret)
{
    ResolvedCache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    int r = hashmap_new(&c->map);
    if (r < 0) {
        free(c);
        return r;
    }
    *ret = c;
    return 0;
}

static void resolved_entry_free(Resolved *e)
{
    if (!e)
        return;
    image_pulled_done(&e->img);
    free(e);
}

void resolved_free(ResolvedCache *c)
{
    if (!c)
        return;
    size_t st = 0;
    const char *k;
    void *v;
    while (hashmap_iterate(c->map, &st, &k, &v) == 0)
        resolved_entry_free(v);
    hashmap_free(c->map);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int resolved_get(ResolvedCache *c, const char *name, ImagePulled *ret, bool *ret_touch)
{
    pthread_mutex_lock(&c->lock);
    Resolved *e = hashmap_get(c->map, name);
    int r = e ? pulled_copy(&e->img, ret) : -ENOENT;
    if (r >= 0) {
        int64_t now = (int64_t)time(NULL);
        *ret_touch = now - e->touched >= TOUCH_EVERY_S;
        if (*ret_touch)
            e->touched = now;
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

void resolved_put(ResolvedCache *c, const char *name, const ImagePulled *img)
{
    Resolved *e = calloc(1, sizeof(*e));
    if (!e || pulled_copy(img, &e->img) < 0) {
        free(e);
        return;
    }
    e->touched = (int64_t)time(NULL);
    pthread_mutex_lock(&c->lock);
    resolved_entry_free(hashmap_remove(c->map, name));
    if (hashmap_put(c->map, name, e) < 0)
        resolved_entry_free(e);
    pthread_mutex_unlock(&c->lock);
}

void resolved_drop(ResolvedCache *c, const char *name)
{
    pthread_mutex_lock(&c->lock);
    resolved_entry_free(hashmap_remove(c->map, name));
    pthread_mutex_unlock(&c->lock);
}
