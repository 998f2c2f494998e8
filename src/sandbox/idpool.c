/* Per-container id ranges: a bitmap over count ranges of range_size ids.
 * Each container gets its own range (guardian maps every container to the same
 * ids), so a process escaping one container owns nothing of another. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "cloche/sandbox.h"

struct IdPool {
    pthread_mutex_t lock;
    uint32_t base;
    uint32_t count;
    uint32_t size; /* ids per range */
    uint64_t *bits;
};

int idpool_new(uint32_t base, uint32_t count, uint32_t range_size, IdPool **ret)
{
    if (count == 0 || range_size == 0 || (uint64_t)base + (uint64_t)count * range_size > UINT32_MAX)
        return -EINVAL;
    IdPool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->bits = calloc((count + 63) / 64, sizeof(uint64_t));
    if (!p->bits) {
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->base = base;
    p->count = count;
    p->size = range_size;
    *ret = p;
    return 0;
}

void idpool_free(IdPool *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p->bits);
    free(p);
}

int idpool_acquire(IdPool *p, uint32_t *ret_base)
{
    pthread_mutex_lock(&p->lock);
    for (uint32_t w = 0; w < (p->count + 63) / 64; w++) {
        if (p->bits[w] == UINT64_MAX)
            continue;
        uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(~p->bits[w]);
        if (i >= p->count)
            break;
        p->bits[w] |= 1ULL << (i % 64);
        pthread_mutex_unlock(&p->lock);
        *ret_base = p->base + i * p->size;
        return 0;
    }
    pthread_mutex_unlock(&p->lock);
    return -ENOSPC;
}

static int idpool_index(const IdPool *p, uint32_t range_base, uint32_t *ret)
{
    if (range_base < p->base || (range_base - p->base) % p->size != 0)
        return -EINVAL;
    uint32_t i = (range_base - p->base) / p->size;
    if (i >= p->count)
        return -EINVAL;
    *ret = i;
    return 0;
}

int idpool_reserve(IdPool *p, uint32_t range_base)
{
    uint32_t i;
    int r = idpool_index(p, range_base, &i);
    if (r < 0)
        return r;
    pthread_mutex_lock(&p->lock);
    bool taken = p->bits[i / 64] & (1ULL << (i % 64));
    p->bits[i / 64] |= 1ULL << (i % 64);
    pthread_mutex_unlock(&p->lock);
    return taken ? -EEXIST : 0;
}

void idpool_release(IdPool *p, uint32_t range_base)
{
    uint32_t i;
    if (idpool_index(p, range_base, &i) < 0)
        return;
    pthread_mutex_lock(&p->lock);
    p->bits[i / 64] &= ~(1ULL << (i % 64));
    pthread_mutex_unlock(&p->lock);
}
