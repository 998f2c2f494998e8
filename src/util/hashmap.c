/* HashMap: FNV-1a hashing, chained buckets. Iteration state encodes bucket and
 * depth so iteration needs no allocation. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/hashmap.h"

typedef struct Entry {
    struct Entry *next;
    void *value;
    uint64_t hash;
    char key[];
} Entry;

struct HashMap {
    Entry **buckets;
    size_t n_buckets; /* power of two */
    size_t n;
};

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

int hashmap_new(HashMap **ret)
{
    HashMap *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->n_buckets = 64;
    m->buckets = calloc(m->n_buckets, sizeof(Entry *));
    if (!m->buckets) {
        free(m);
        return -ENOMEM;
    }
    *ret = m;
    return 0;
}

void hashmap_free(HashMap *m)
{
    if (!m)
        return;
    for (size_t b = 0; b < m->n_buckets; b++)
        for (Entry *e = m->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(m->buckets);
    free(m);
}

static void hashmap_grow(HashMap *m)
{
    size_t nb = m->n_buckets * 2;
    Entry **buckets = calloc(nb, sizeof(Entry *));
    if (!buckets)
        return; /* stay at the current size: slower, still correct */
    for (size_t b = 0; b < m->n_buckets; b++)
        for (Entry *e = m->buckets[b], *next; e; e = next) {
            next = e->next;
            size_t i = e->hash & (nb - 1);
            e->next = buckets[i];
            buckets[i] = e;
        }
    free(m->buckets);
    m->buckets = buckets;
    m->n_buckets = nb;
}

static Entry **hashmap_slot(const HashMap *m, const char *key, uint64_t h)
{
    Entry **p = &m->buckets[h & (m->n_buckets - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && strcmp((*p)->key, key) == 0)
            break;
    return p;
}

int hashmap_put(HashMap *m, const char *key, void *value)
{
    uint64_t h = hash_string(key);
    Entry **p = hashmap_slot(m, key, h);
    if (*p)
        return -EEXIST;
    size_t len = strlen(key);
    Entry *e = malloc(sizeof(Entry) + len + 1);
    if (!e)
        return -ENOMEM;
    memcpy(e->key, key, len + 1);
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *p = e;
    m->n++;
    if (m->n > m->n_buckets)
        hashmap_grow(m);
    return 0;
}

void *hashmap_get(const HashMap *m, const char *key)
{
    Entry *e = *hashmap_slot(m, key, hash_string(key));
    return e ? e->value : NULL;
}

void *hashmap_remove(HashMap *m, const char *key)
{
    Entry **p = hashmap_slot(m, key, hash_string(key));
    Entry *e = *p;
    if (!e)
        return NULL;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->n--;
    return v;
}

size_t hashmap_size(const HashMap *m)
{
    return m->n;
}

int hashmap_iterate(const HashMap *m, size_t *state, const char **ret_key, void **ret_value)
{
    /* state = bucket index * 2^20 + position in chain; chains never get that long
     * because the table grows at load factor 1. */
    size_t b = *state >> 20, pos = *state & ((1u << 20) - 1);
    for (; b < m->n_buckets; b++, pos = 0) {
        Entry *e = m->buckets[b];
        for (size_t i = 0; e && i < pos; i++)
            e = e->next;
        if (e) {
            *ret_key = e->key;
            *ret_value = e->value;
            *state = (b << 20) | (pos + 1);
            return 0;
        }
    }
    *state = b << 20;
    return -ENOENT;
}
