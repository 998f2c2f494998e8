/* The event ring (src/garden/events.c) on its own: order, filters, waiting,
 * a reader that falls behind, and shutdown waking a waiting reader. */
#include "tap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/garden/garden-internal.h"

static int64_t now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct Waiter {
    Garden *g;
    uint64_t after;
    int r;
    GardenEventBatch b;
    int64_t took_ns;
} Waiter;

static void *wait_events(void *arg)
{
    Waiter *w = arg;
    GardenEventFilter f = {0};
    int64_t t = now_ns(CLOCK_MONOTONIC);
    w->r = garden_events_read(w->g, &f, w->after, 16, 5000, &w->b);
    w->took_ns = now_ns(CLOCK_MONOTONIC) - t;
    return NULL;
}

int main(void)
{
    Garden g = {0};
    ok(garden_events_setup(&g) == 0, "the ring is set up");
    is_int(garden_events_last(&g), 0, "no event yet");

    GardenEventFilter all = {0};
    GardenEventBatch b;
    ok(garden_events_read(&g, &all, 0, 0, 0, &b) == 0 && b.n == 0 && b.next == 0,
       "reading an empty ring returns nothing at once");
    garden_events_batch_done(&b);

    int64_t before = now_ns(CLOCK_REALTIME);
    garden_event_emit(&g, "created", "a", NULL, -1, NULL);
    garden_event_emit(&g, "service_exited", "a", "service", 3, "exited");
    garden_event_emit(&g, "created", "b", NULL, -1, NULL);
    is_int(garden_events_last(&g), 3, "three events");

    ok(garden_events_read(&g, &all, 0, 0, 0, &b) == 0, "read all");
    is_int(b.n, 3, "all three");
    ok(b.n == 3 && b.events[0].seq == 1 && b.events[2].seq == 3, "in order");
    ok(b.n == 3 && strcmp(b.events[1].type, "service_exited") == 0 &&
           strcmp(b.events[1].process_id, "service") == 0 && b.events[1].exit_status == 3 &&
           strcmp(b.events[1].message, "exited") == 0,
       "fields kept");
    ok(b.n == 3 && b.events[0].time_ns >= before && b.events[0].process_id == NULL,
       "time and absent fields");
    is_int(b.next, 3, "next is the last seq read");
    garden_events_batch_done(&b);

    GardenEventFilter only_b = {.handle = "b"};
    ok(garden_events_read(&g, &only_b, 0, 0, 0, &b) == 0 && b.n == 1 &&
           strcmp(b.events[0].handle, "b") == 0 && b.next == 3,
       "the handle filter keeps b's event and moves past the others");
    garden_events_batch_done(&b);

    GardenEventFilter future = {.since_ns = now_ns(CLOCK_REALTIME) + 60000000000};
    ok(garden_events_read(&g, &future, 0, 0, 0, &b) == 0 && b.n == 0 && b.next == 3,
       "since in the future: nothing");
    garden_events_batch_done(&b);

    ok(garden_events_read(&g, &all, 1, 1, 0, &b) == 0 && b.n == 1 && b.events[0].seq == 2,
       "max bounds a batch, after skips what was read");
    garden_events_batch_done(&b);

    /* A reader waiting for the next event is woken by it. */
    Waiter w = {.g = &g, .after = 3};
    pthread_t t;
    pthread_create(&t, NULL, wait_events, &w);
    usleep(100000);
    garden_event_emit(&g, "stopped", "a", NULL, -1, NULL);
    pthread_join(t, NULL);
    ok(w.r == 0 && w.b.n == 1 && w.b.events[0].seq == 4 && w.took_ns < 4000000000,
       "a waiting reader gets the next event when it comes");
    garden_events_batch_done(&w.b);

    /* A reader more than the ring's size behind is told what it lost. */
    for (int i = 0; i < 5000; i++)
        garden_event_emit(&g, "limits_changed", "a", NULL, -1, NULL);
    ok(garden_events_read(&g, &all, 4, 0, 0, &b) == 0, "read after the ring wrapped");
    ok(b.lost == 5004 - 4096 - 4, "the overwritten events are counted as lost (%llu)",
       (unsigned long long)b.lost);
    ok(b.n > 0 && b.events[0].seq == 5004 - 4096 + 1, "reading goes on from the oldest kept");
    garden_events_batch_done(&b);
    ok(garden_events_read(&g, &all, 0, 0, 0, &b) == 0 && b.lost == 0,
       "reading from the start is not a loss");
    garden_events_batch_done(&b);

    /* Shutdown wakes a waiting reader. */
    w = (Waiter){.g = &g, .after = garden_events_last(&g)};
    pthread_create(&t, NULL, wait_events, &w);
    usleep(100000);
    garden_events_stop(&g);
    pthread_join(t, NULL);
    ok(w.r == 0 && w.b.n == 0 && w.b.stopping && w.took_ns < 4000000000,
       "stopping wakes a waiting reader at once");
    garden_events_batch_done(&w.b);

    garden_event_emit(NULL, "created", "x", NULL, -1, NULL); /* no garden: ignored */
    garden_events_free(&g);
    return tap_done();
}
