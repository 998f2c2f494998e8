/* NetIn host ports: one state byte per port (which protocols hold it) and, for the
 * pool's range, a doubly linked queue threaded through two index arrays. Guardian's
 * FIFO semantics: acquire takes the head, a port freed goes to the tail, so a port
 * just released is the last to be handed out again. Every operation is O(1); a
 * reserved port leaves the middle of the queue at once. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "cloche/cleanup.h"
#include "cloche/netpool.h"

#define PORT_COUNT 65536u
#define PORT_PROTO_ALL (PORT_PROTO_TCP | PORT_PROTO_UDP)
/* State bits besides the PORT_PROTO_* ones. */
#define PORT_QUEUED (1u << 6)
#define PORT_ACQUIRED (1u << 7) /* handed out by acquire: no protocol may reserve it */
#define QUEUE_END UINT32_MAX

struct PortPool {
    pthread_mutex_t lock;
    uint32_t start;
    uint32_t size;
    uint32_t queued;
    uint32_t head; /* indexes into the range, QUEUE_END when empty */
    uint32_t tail;
    uint32_t *next;
    uint32_t *prev;
    uint8_t state[PORT_COUNT];
};

static bool port_in_range(const PortPool *pool, uint32_t port)
{
    return port >= pool->start && port - pool->start < pool->size;
}

static bool protos_valid(unsigned protos)
{
    return protos != 0 && (protos & ~PORT_PROTO_ALL) == 0;
}

static void queue_push_tail(PortPool *pool, uint32_t port)
{
    uint32_t i = port - pool->start;
    pool->next[i] = QUEUE_END;
    pool->prev[i] = pool->tail;
    if (pool->tail == QUEUE_END)
        pool->head = i;
    else
        pool->next[pool->tail] = i;
    pool->tail = i;
    pool->state[port] |= PORT_QUEUED;
    pool->queued++;
}

static void queue_unlink(PortPool *pool, uint32_t port)
{
    uint32_t i = port - pool->start;
    if (pool->prev[i] == QUEUE_END)
        pool->head = pool->next[i];
    else
        pool->next[pool->prev[i]] = pool->next[i];
    if (pool->next[i] == QUEUE_END)
        pool->tail = pool->prev[i];
    else
        pool->prev[pool->next[i]] = pool->prev[i];
    pool->state[port] &= (uint8_t)~PORT_QUEUED;
    pool->queued--;
}

int portpool_new(uint32_t start, uint32_t size, PortPool **ret)
{
    if (start < 1 || size < 1 || start > 65535 || size > 65535 || start + size - 1 > 65535)
        return -EINVAL;
    _cleanup_free_ PortPool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    _cleanup_free_ uint32_t *next = calloc(size, sizeof(uint32_t));
    _cleanup_free_ uint32_t *prev = calloc(size, sizeof(uint32_t));
    if (!next || !prev)
        return -ENOMEM;
    pool->start = start;
    pool->size = size;
    pool->head = pool->tail = QUEUE_END;
    pool->next = TAKE_PTR(next);
    pool->prev = TAKE_PTR(prev);
    for (uint32_t port = start; port - start < size; port++)
        queue_push_tail(pool, port);
    pthread_mutex_init(&pool->lock, NULL);
    *ret = TAKE_PTR(pool);
    return 0;
}

void portpool_free(PortPool *pool)
{
    if (!pool)
        return;
    pthread_mutex_destroy(&pool->lock);
    free(pool->next);
    free(pool->prev);
    free(pool);
}

int portpool_acquire(PortPool *pool, unsigned protos, uint32_t *ret)
{
    if (!protos_valid(protos))
        return -EINVAL;
    pthread_mutex_lock(&pool->lock);
    if (pool->head == QUEUE_END) {
        pthread_mutex_unlock(&pool->lock);
        return -ENOSPC;
    }
    uint32_t port = pool->start + pool->head;
    queue_unlink(pool, port);
    pool->state[port] = (uint8_t)(protos | PORT_ACQUIRED);
    pthread_mutex_unlock(&pool->lock);
    *ret = port;
    return 0;
}

int portpool_reserve(PortPool *pool, uint32_t port, unsigned protos)
{
    if (port < 1 || port > 65535 || !protos_valid(protos))
        return -EINVAL;
    int r = 0;
    pthread_mutex_lock(&pool->lock);
    uint8_t s = pool->state[port];
    if ((s & protos) || (s & PORT_ACQUIRED))
        r = -EEXIST;
    else {
        if (s & PORT_QUEUED)
            queue_unlink(pool, port);
        pool->state[port] |= (uint8_t)protos;
    }
    pthread_mutex_unlock(&pool->lock);
    return r;
}

void portpool_release(PortPool *pool, uint32_t port, unsigned protos)
{
    if (port < 1 || port > 65535)
        return;
    pthread_mutex_lock(&pool->lock);
    uint8_t s = pool->state[port];
    if (s & protos & PORT_PROTO_ALL) {
        s &= (uint8_t) ~(protos & PORT_PROTO_ALL);
        if (!(s & PORT_PROTO_ALL))
            s &= (uint8_t)~PORT_ACQUIRED;
        pool->state[port] = s;
        if (!(s & PORT_PROTO_ALL) && port_in_range(pool, port))
            queue_push_tail(pool, port);
    }
    pthread_mutex_unlock(&pool->lock);
}

uint32_t portpool_free_count(const PortPool *pool)
{
    /* The lock is the only mutable part of a const pool. */
    pthread_mutex_t *lock = (pthread_mutex_t *)&pool->lock;
    pthread_mutex_lock(lock);
    uint32_t queued = pool->queued;
    pthread_mutex_unlock(lock);
    return queued;
}
