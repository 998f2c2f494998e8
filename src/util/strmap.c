/* StringMap: sorted parallel arrays; O(log n) lookup, O(n) insert. Maps here are
 * small (properties are capped), so this beats a hash table on simplicity. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/strmap.h"

/* Index of key, or -(insertion point) - 1. */
static ssize_t strmap_find(const StringMap *m, const char *key)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->keys[mid], key);
        if (c == 0)
            return (ssize_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(ssize_t)lo - 1;
}

int strmap_set(StringMap *m, const char *key, const char *value)
{
    _cleanup_free_ char *v = strdup(value);
    if (!v)
        return -ENOMEM;
    ssize_t i = strmap_find(m, key);
    if (i >= 0) {
        free(m->values[i]);
        m->values[i] = TAKE_PTR(v);
        return 0;
    }
    _cleanup_free_ char *k = strdup(key);
    if (!k)
        return -ENOMEM;
    if (m->n == m->allocated) {
        size_t na = m->allocated ? m->allocated * 2 : 8;
        char **nk = realloc(m->keys, na * sizeof(char *));
        if (!nk)
            return -ENOMEM;
        m->keys = nk;
        char **nv = realloc(m->values, na * sizeof(char *));
        if (!nv)
            return -ENOMEM;
        m->values = nv;
        m->allocated = na;
    }
    size_t at = (size_t)(-i - 1);
    memmove(m->keys + at + 1, m->keys + at, (m->n - at) * sizeof(char *));
    memmove(m->values + at + 1, m->values + at, (m->n - at) * sizeof(char *));
    m->keys[at] = TAKE_PTR(k);
    m->values[at] = TAKE_PTR(v);
    m->n++;
    return 0;
}

const char *strmap_get(const StringMap *m, const char *key)
{
    ssize_t i = strmap_find(m, key);
    return i >= 0 ? m->values[i] : NULL;
}

bool strmap_remove(StringMap *m, const char *key)
{
    ssize_t i = strmap_find(m, key);
    if (i < 0)
        return false;
    free(m->keys[i]);
    free(m->values[i]);
    size_t at = (size_t)i;
    memmove(m->keys + at, m->keys + at + 1, (m->n - at - 1) * sizeof(char *));
    memmove(m->values + at, m->values + at + 1, (m->n - at - 1) * sizeof(char *));
    m->n--;
    return true;
}

int strmap_copy(const StringMap *src, StringMap *ret)
{
    StringMap m = STRING_MAP_INIT;
    STRMAP_FOREACH (i, src) {
        int r = strmap_set(&m, src->keys[i], src->values[i]);
        if (r < 0) {
            strmap_clear(&m);
            return r;
        }
    }
    *ret = m;
    return 0;
}

void strmap_clear(StringMap *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    *m = (StringMap)STRING_MAP_INIT;
}
