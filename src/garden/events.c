/* Container events (cloche extension, GET /cloche/events): a bounded ring in
 * memory that every part of garden appends to and that any number of readers
 * copy from. Appending never waits for a reader: a reader that falls more than
 * the ring's size behind loses the oldest events and is told how many. Events
 * are not written to disk: a restarted daemon begins a new ring (its sequence
 * numbers start again at 1). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloche/log.h"
#include "cloche/wire.h"
#include "garden-internal.h"

#define EVENTS_RING_SIZE 4096
#define EVENT_MESSAGE_MAX 512 /* bytes kept of a message */

struct GardenEvents {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a new event, or the daemon is stopping */
    GardenEvent ring[EVENTS_RING_SIZE];
    uint64_t next_seq; /* of the next event; ring[(seq - 1) % SIZE] holds seq */
    bool stopping;
};

static void event_clear(GardenEvent *e)
{
    free(e->handle);
    free(e->process_id);
    free(e->message);
    *e = (GardenEvent){0};
}

int garden_events_setup(Garden *g)
{
    GardenEvents *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return -ENOMEM;
    pthread_mutex_init(&ev->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ev->changed, &attr);
    pthread_condattr_destroy(&attr);
    ev->next_seq = 1;
    g->events = ev;
    return 0;
}

void garden_events_stop(Garden *g)
{
    GardenEvents *ev = g->events;
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    ev->stopping = true;
    pthread_cond_broadcast(&ev->changed);
    pthread_mutex_unlock(&ev->lock);
}

void garden_events_free(Garden *g)
{
    GardenEvents *ev = g->events;
    if (!ev)
        return;
    for (size_t i = 0; i < EVENTS_RING_SIZE; i++)
        event_clear(&ev->ring[i]);
    pthread_cond_destroy(&ev->changed);
    pthread_mutex_destroy(&ev->lock);
    free(ev);
    g->events = NULL;
}

static char *dup_bounded(const char *s, size_t max)
{
    return s ? strndup(s, max) : NULL;
}

void garden_event_emit(Garden *g, const char *type, const char *handle, const char *process_id,
                       int exit_status, const char *message)
{
    GardenEvents *ev = g ? g->events : NULL;
    if (!ev || !type)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    GardenEvent e = {
        .time_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec,
        .exit_status = exit_status,
        .handle = dup_bounded(handle, SPEC_HANDLE_MAX),
        .process_id = dup_bounded(process_id, SPEC_HANDLE_MAX * 4),
        .message = dup_bounded(message, EVENT_MESSAGE_MAX),
    };
    snprintf(e.type, sizeof(e.type), "%s", type);
    if ((handle && !e.handle) || (process_id && !e.process_id) || (message && !e.message)) {
        event_clear(&e);
        log_warn("Out of memory: a '%s' event was lost", type);
        return;
    }
    pthread_mutex_lock(&ev->lock);
    e.seq = ev->next_seq++;
    GardenEvent *slot = &ev->ring[(e.seq - 1) % EVENTS_RING_SIZE];
    GardenEvent old = *slot;
    *slot = e;
    pthread_cond_broadcast(&ev->changed);
    pthread_mutex_unlock(&ev->lock);
    event_clear(&old);
    log_debug("Event %s '%s'%s%s", type, handle ? handle : "", process_id ? " process " : "",
              process_id ? process_id : "");
}

static int event_copy(const GardenEvent *src, GardenEvent *dst)
{
    *dst = *src;
    dst->handle = src->handle ? strdup(src->handle) : NULL;
    dst->process_id = src->process_id ? strdup(src->process_id) : NULL;
    dst->message = src->message ? strdup(src->message) : NULL;
    if ((src->handle && !dst->handle) || (src->process_id && !dst->process_id) ||
        (src->message && !dst->message)) {
        event_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

int garden_events_read(Garden *g, const GardenEventFilter *f, uint64_t after, size_t max,
                       int timeout_ms, GardenEventBatch *ret)
{
    GardenEvents *ev = g->events;
    *ret = (GardenEventBatch){.next = after};
    if (!ev)
        return -ENODEV;
    if (max == 0 || max > EVENTS_RING_SIZE)
        max = EVENTS_RING_SIZE;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    GardenEvent *out = calloc(max, sizeof(GardenEvent));
    if (!out)
        return -ENOMEM;
    size_t n = 0;
    int r = 0;
    pthread_mutex_lock(&ev->lock);
    for (;;) {
        uint64_t oldest = ev->next_seq > EVENTS_RING_SIZE ? ev->next_seq - EVENTS_RING_SIZE : 1;
        uint64_t seq = after + 1;
        if (seq < oldest) {
            /* Overwritten before this reader saw them (from the start: not lost). */
            ret->lost = after ? oldest - seq : 0;
            seq = oldest;
        }
        for (; seq < ev->next_seq && n < max; seq++) {
            const GardenEvent *e = &ev->ring[(seq - 1) % EVENTS_RING_SIZE];
            if (e->time_ns < f->since_ns ||
                (f->handle && (!e->handle || strcmp(e->handle, f->handle) != 0)))
                continue;
            if ((r = event_copy(e, &out[n])) < 0)
                break;
            n++;
        }
        after = seq - 1;
        if (n > 0 || ret->lost || r < 0 || timeout_ms <= 0 || ev->stopping)
            break;
        if (pthread_cond_timedwait(&ev->changed, &ev->lock, &deadline) == ETIMEDOUT)
            timeout_ms = 0; /* one last look, then return what there is */
    }
    ret->stopping = ev->stopping;
    pthread_mutex_unlock(&ev->lock);
    if (r < 0) {
        garden_events_batch_done(&(GardenEventBatch){.events = out, .n = n});
        return r;
    }
    ret->events = out;
    ret->n = n;
    ret->next = after;
    return 0;
}

void garden_events_batch_done(GardenEventBatch *b)
{
    for (size_t i = 0; i < b->n; i++)
        event_clear(&b->events[i]);
    free(b->events);
    *b = (GardenEventBatch){0};
}

uint64_t garden_events_last(Garden *g)
{
    GardenEvents *ev = g->events;
    if (!ev)
        return 0;
    pthread_mutex_lock(&ev->lock);
    uint64_t last = ev->next_seq - 1;
    pthread_mutex_unlock(&ev->lock);
    return last;
}
