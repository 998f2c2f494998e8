/* Grace timers: pause while requests run, restart after, expiry, SetGraceTime(0),
 * saturation; and the expiry service firing in deadline order. */
#include "tap.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "cloche/duration.h"
#include "cloche/grace.h"
#include "cloche/clock.h"

#define S 1000000000LL

static pthread_mutex_t fired_lock = PTHREAD_MUTEX_INITIALIZER;
static char fired[8][16];
static int n_fired;

static void on_fire(const char *handle, uint64_t generation, void *userdata)
{
    pthread_mutex_lock(&fired_lock);
    if (n_fired < 8)
        snprintf(fired[n_fired++], sizeof(fired[0]), "%s", handle);
    pthread_mutex_unlock(&fired_lock);
}

int main(void)
{
    GraceTimer t;
    grace_timer_init(&t, 10 * S, 100 * S);
    is_int(t.deadline_ns, 110 * S, "deadline = now + grace");
    ok(!grace_timer_expired(&t, 109 * S), "not expired before the deadline");
    ok(grace_timer_expired(&t, 110 * S), "expired at the deadline");

    grace_timer_begin(&t);
    ok(!grace_timer_expired(&t, 1000 * S), "paused while a request runs");
    grace_timer_begin(&t);
    grace_timer_end(&t, 200 * S);
    ok(!grace_timer_expired(&t, 1000 * S), "still paused while one of two requests runs");
    grace_timer_end(&t, 300 * S);
    is_int(t.deadline_ns, 310 * S, "the full countdown restarts when the last request ends");
    ok(!grace_timer_expired(&t, 309 * S), "not expired just before");
    ok(grace_timer_expired(&t, 310 * S), "expired after the restarted countdown");

    uint64_t g = t.generation;
    grace_timer_begin(&t);
    ok(t.generation != g, "begin bumps the generation (pending checks go stale)");
    grace_timer_end(&t, 400 * S);

    grace_timer_init(&t, 0, 100 * S);
    is_int(t.deadline_ns, GRACE_NEVER, "grace 0 never expires");
    grace_timer_begin(&t);
    grace_timer_end(&t, 200 * S);
    ok(!grace_timer_expired(&t, INT64_MAX - 1), "grace 0 still never expires after a request");

    grace_timer_init(&t, 60 * S, 100 * S);
    grace_timer_set(&t, 5 * S, 120 * S);
    is_int(t.deadline_ns, 125 * S, "SetGraceTime re-arms with the new length at once");
    grace_timer_begin(&t);
    grace_timer_set(&t, 0, 130 * S);
    ok(!grace_timer_expired(&t, 140 * S), "SetGraceTime(0) waits for the request in flight");
    grace_timer_end(&t, 150 * S);
    ok(grace_timer_expired(&t, 150 * S), "then expires immediately, as the reference server");

    grace_timer_init(&t, INT64_MAX - 5, 100 * S);
    is_int(t.deadline_ns, GRACE_NEVER, "a huge grace time saturates instead of overflowing");
    is_int(grace_add(INT64_MAX - 10, 100), GRACE_NEVER, "grace_add saturates");
    is_int(grace_add(5, -3), 5, "grace_add ignores negative lengths");
    grace_timer_init(&t, -5, 100 * S);
    is_int(t.grace_ns, 0, "a negative grace time is treated as never");

    int64_t ns;
    ok(duration_parse_ns("1m30s", &ns) == 0 && ns == 90 * S, "duration 1m30s");
    ok(duration_parse_ns("500ms", &ns) == 0 && ns == S / 2, "duration 500ms");
    ok(duration_parse_ns("1.5h", &ns) == 0 && ns == 5400 * S, "duration 1.5h");
    ok(duration_parse_ns("0", &ns) == 0 && ns == 0, "duration 0");
    ok(duration_parse_ns("10", &ns) < 0, "a number without a unit is refused");
    ok(duration_parse_ns("-1s", &ns) < 0, "negative refused");
    ok(duration_parse_ns("5x", &ns) < 0, "unknown unit refused");
    ok(duration_parse_ns("99999999999h", &ns) < 0, "overflow refused");

    GraceService *svc;
    ok(grace_service_start(on_fire, NULL, &svc) == 0, "service starts");
    int64_t now = clock_monotonic_ns();
    grace_service_schedule(svc, "late", now + 200000000, 1);
    grace_service_schedule(svc, "early", now + 50000000, 1);
    grace_service_schedule(svc, "never", GRACE_NEVER, 1);
    usleep(100000);
    pthread_mutex_lock(&fired_lock);
    is_int(n_fired, 1, "only the early deadline has fired after 100 ms");
    is_str(fired[0], "early", "it was 'early'");
    pthread_mutex_unlock(&fired_lock);
    usleep(250000);
    pthread_mutex_lock(&fired_lock);
    is_int(n_fired, 2, "the late one fired after its deadline; GRACE_NEVER never");
    is_str(fired[1], "late", "it was 'late'");
    pthread_mutex_unlock(&fired_lock);
    grace_service_stop(svc);
    return tap_done();
}
