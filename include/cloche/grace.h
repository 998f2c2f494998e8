/* Grace timers ("bomberman", protocol §6): a container expires when no request
 * has touched it for its grace time. Requests pause the countdown; when the last
 * one ends the full countdown restarts. Grace time 0 = never expires, except that
 * SetGraceTime(0) expires the container at once (as the reference server does).
 *
 * GraceTimer is plain arithmetic (unit-tested); GraceService is the thread that
 * fires expiries, fed by the deadlines GraceTimer computes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define GRACE_NEVER INT64_MAX

typedef struct GraceTimer {
    int64_t grace_ns;    /* 0 = never */
    int64_t deadline_ns; /* monotonic; GRACE_NEVER when not counting down */
    unsigned inflight;   /* requests in progress */
    bool expire_now;     /* SetGraceTime(0): expire as soon as nothing is in flight */
    uint64_t generation; /* bumped on every change; stale service entries are skipped */
} GraceTimer;

/* now + ns, saturating at GRACE_NEVER. */
int64_t grace_add(int64_t now_ns, int64_t ns);

void grace_timer_init(GraceTimer *t, int64_t grace_ns, int64_t now_ns);
/* A request starts: countdown paused. */
void grace_timer_begin(GraceTimer *t);
/* A request ends: when none remain the full countdown restarts. */
void grace_timer_end(GraceTimer *t, int64_t now_ns);
/* SetGraceTime: new length, countdown restarted now (paused while requests run). */
void grace_timer_set(GraceTimer *t, int64_t grace_ns, int64_t now_ns);
bool grace_timer_expired(const GraceTimer *t, int64_t now_ns);

typedef struct GraceService GraceService;

/* fire(handle, generation, userdata) runs on the service's thread when a scheduled
 * deadline passes; the callee re-checks the container's timer (the entry may be
 * stale) and destroys it if it really expired. */
typedef void (*GraceFireFn)(const char *handle, uint64_t generation, void *userdata);

int grace_service_start(GraceFireFn fire, void *userdata, GraceService **ret);
/* Schedule a check of handle at deadline_ns for the timer's current generation. */
int grace_service_schedule(GraceService *s, const char *handle, int64_t deadline_ns,
                           uint64_t generation);
void grace_service_stop(GraceService *s);
