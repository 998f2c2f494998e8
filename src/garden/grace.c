/* Grace timer arithmetic and the expiry service: a min-heap of (deadline, handle,
 * generation) entries. Entries are never removed when a timer changes; a newer
 * generation simply makes the old entry stale, and the fire callback checks. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloche/cleanup.h"
#include "cloche/grace.h"
#include "cloche/clock.h"

int64_t grace_add(int64_t now_ns, int64_t ns)
{
    if (ns <= 0)
        return now_ns;
    if (now_ns > GRACE_NEVER - ns)
        return GRACE_NEVER;
    return now_ns + ns;
}

static void grace_timer_rearm(GraceTimer *t, int64_t now_ns)
{
    t->generation++;
    if (t->inflight > 0)
        t->deadline_ns = GRACE_NEVER;
    else if (t->expire_now)
        t->deadline_ns = now_ns;
    else if (t->grace_ns > 0)
        t->deadline_ns = grace_add(now_ns, t->grace_ns);
    else
        t->deadline_ns = GRACE_NEVER;
}

void grace_timer_init(GraceTimer *t, int64_t grace_ns, int64_t now_ns)
{
    *t = (GraceTimer){.grace_ns = grace_ns < 0 ? 0 : grace_ns};
    grace_timer_rearm(t, now_ns);
}

void grace_timer_begin(GraceTimer *t)
{
    t->inflight++;
    t->generation++;
    t->deadline_ns = GRACE_NEVER;
}

void grace_timer_end(GraceTimer *t, int64_t now_ns)
{
    if (t->inflight > 0)
        t->inflight--;
    grace_timer_rearm(t, now_ns);
}

void grace_timer_set(GraceTimer *t, int64_t grace_ns, int64_t now_ns)
{
    t->grace_ns = grace_ns < 0 ? 0 : grace_ns;
    t->expire_now = grace_ns <= 0;
    grace_timer_rearm(t, now_ns);
}

bool grace_timer_expired(const GraceTimer *t, int64_t now_ns)
{
    return t->inflight == 0 && t->deadline_ns != GRACE_NEVER && now_ns >= t->deadline_ns;
}

typedef struct GraceEntry {
    int64_t deadline_ns;
    uint64_t generation;
    char *handle;
} GraceEntry;

struct GraceService {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
    GraceEntry *heap;
    size_t n, allocated;
    GraceFireFn fire;
    void *userdata;
};

static void heap_swap(GraceEntry *a, GraceEntry *b)
{
    GraceEntry t = *a;
    *a = *b;
    *b = t;
}

static void heap_push(GraceService *s, GraceEntry e)
{
    size_t i = s->n++;
    s->heap[i] = e;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent].deadline_ns <= s->heap[i].deadline_ns)
            break;
        heap_swap(&s->heap[parent], &s->heap[i]);
        i = parent;
    }
}

static GraceEntry heap_pop(GraceService *s)
{
    GraceEntry top = s->heap[0];
    s->heap[0] = s->heap[--s->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->n && s->heap[l].deadline_ns < s->heap[m].deadline_ns)
            m = l;
        if (r < s->n && s->heap[r].deadline_ns < s->heap[m].deadline_ns)
            m = r;
        if (m == i)
            break;
        heap_swap(&s->heap[i], &s->heap[m]);
        i = m;
    }
    return top;
}

static void *grace_service_run(void *arg)
{
    GraceService *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        if (s->n == 0) {
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        int64_t now = clock_monotonic_ns();
        if (s->heap[0].deadline_ns > now) {
            int64_t at = s->heap[0].deadline_ns;
            struct timespec ts = {.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
            pthread_cond_timedwait(&s->cond, &s->lock, &ts);
            continue;
        }
        GraceEntry e = heap_pop(s);
        pthread_mutex_unlock(&s->lock);
        s->fire(e.handle, e.generation, s->userdata);
        free(e.handle);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int grace_service_start(GraceFireFn fire, void *userdata, GraceService **ret)
{
    GraceService *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fire = fire;
    s->userdata = userdata;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);
    int r = pthread_create(&s->thread, NULL, grace_service_run, s);
    if (r != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -r;
    }
    *ret = s;
    return 0;
}

int grace_service_schedule(GraceService *s, const char *handle, int64_t deadline_ns,
                           uint64_t generation)
{
    if (deadline_ns == GRACE_NEVER)
        return 0;
    _cleanup_free_ char *h = strdup(handle);
    if (!h)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    if (s->n == s->allocated) {
        size_t na = s->allocated ? s->allocated * 2 : 64;
        GraceEntry *heap = realloc(s->heap, na * sizeof(GraceEntry));
        if (!heap) {
            pthread_mutex_unlock(&s->lock);
            return -ENOMEM;
        }
        s->heap = heap;
        s->allocated = na;
    }
    bool earliest = s->n == 0 || deadline_ns < s->heap[0].deadline_ns;
    heap_push(s, (GraceEntry){
                     .deadline_ns = deadline_ns, .generation = generation, .handle = TAKE_PTR(h)});
    if (earliest)
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void grace_service_stop(GraceService *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->n; i++)
        free(s->heap[i].handle);
    free(s->heap);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
