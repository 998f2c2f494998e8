/* A container's states and the transitions between them, in one place.
 *
 *   creating --> active <--> stopping --> stopped --> stopping ...
 *      |           |                        |
 *      +-----------+--------> destroying <--+--> gone
 *
 * Every change to a container claims what it needs here, under the container's
 * lock:
 *  - a transition (create, stop, destroy) is owned by one thread at a time
 *    (c->transition); whoever finds another transition running waits for it to
 *    end (a destroy asks a running create or stop to give up first), except a
 *    second destroy, which gets Garden's "container already being destroyed";
 *  - an operation that changes the container's kernel side or its record (Run,
 *    NetIn, NetOut, limits, properties, file streams) holds c->ops while it runs;
 *    a destroy waits for them to finish before it tears anything down, and no new
 *    one starts once the destroy has claimed the container.
 * Readers (Info, metrics, the sampler) take the lock only; the kernel handles they
 * use live as long as the container's last reference. */
#include <errno.h>
#include <time.h>

#include "cloche/log.h"
#include "garden-internal.h"

/* How long a request waits for a create or a stop to finish. A create takes
 * milliseconds and a stop at most its 10 s grace, so this is generous. */
#define STATE_WAIT_S 120

static const char *const phase_names[] = {
    [PHASE_CREATING] = "being created", [PHASE_ACTIVE] = "active",
    [PHASE_STOPPING] = "stopping",      [PHASE_STOPPED] = "stopped",
    [PHASE_DESTROYING] = "destroying",  [PHASE_GONE] = "gone",
    [PHASE_STARTING] = "starting",
};

const char *state_phase_name(ContainerPhase p)
{
    return (unsigned)p < ELEMENTSOF(phase_names) ? phase_names[p] : "?";
}

void state_init(Container *c, ContainerState persisted)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->changed, &attr);
    pthread_condattr_destroy(&attr);
    switch (persisted) {
    case CONTAINER_STATE_CREATING:
        c->phase = PHASE_CREATING;
        break;
    case CONTAINER_STATE_STOPPED:
        c->phase = PHASE_STOPPED;
        break;
    case CONTAINER_STATE_DESTROYING:
        c->phase = PHASE_DESTROYING;
        break;
    default:
        c->phase = PHASE_ACTIVE;
    }
    c->transition = TRANSITION_NONE;
}

/* The state a phase is written to the depot as (a stop in progress is still
 * active, a start still stopped: a daemon restarted in the middle finds the
 * container as it was). */
static ContainerState persisted_state(ContainerPhase p)
{
    switch (p) {
    case PHASE_CREATING:
        return CONTAINER_STATE_CREATING;
    case PHASE_STARTING:
    case PHASE_STOPPED:
        return CONTAINER_STATE_STOPPED;
    case PHASE_DESTROYING:
    case PHASE_GONE:
        return CONTAINER_STATE_DESTROYING;
    default:
        return CONTAINER_STATE_ACTIVE;
    }
}

/* Under c->lock. */
void state_set_phase_locked(Container *c, ContainerPhase p)
{
    c->phase = p;
    c->rec.state = persisted_state(p);
    pthread_cond_broadcast(&c->changed);
}

/* Wait on c->changed until the deadline; false once it has passed. Under c->lock. */
static bool wait_changed(Container *c, const struct timespec *deadline)
{
    int r = pthread_cond_timedwait(&c->changed, &c->lock, deadline);
    return r != ETIMEDOUT;
}

static struct timespec deadline_in(int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += seconds;
    return ts;
}

static int busy_error(Container *c, ApiError *reterr)
{
    return api_errorf(reterr, -EBUSY, 503, GARDEN_ERR_SERVICE_UNAVAILABLE,
                      "Container '%s' is still %s; try again", c->rec.handle,
                      state_phase_name(c->phase));
}

int state_op_begin(Container *c, unsigned allowed, ApiError *reterr)
{
    struct timespec deadline = deadline_in(STATE_WAIT_S);
    pthread_mutex_lock(&c->lock);
    /* A create or stop in progress ends in a phase we may act on: wait for it. */
    while (!(allowed & PHASE_MASK(c->phase)) && c->transition != TRANSITION_NONE &&
           c->transition != TRANSITION_DESTROY) {
        if (!wait_changed(c, &deadline)) {
            int r = busy_error(c, reterr);
            pthread_mutex_unlock(&c->lock);
            return r;
        }
    }
    int r = 0;
    if (allowed & PHASE_MASK(c->phase))
        c->ops++;
    else if (c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE)
        r = api_container_not_found(reterr, c->rec.handle);
    else
        r = api_errorf(reterr, -EBUSY, 409, GARDEN_ERR_GENERIC, "Container '%s' is %s",
                       c->rec.handle, state_phase_name(c->phase));
    pthread_mutex_unlock(&c->lock);
    return r;
}

void state_op_end(Container *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->ops > 0 && --c->ops == 0)
        pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

int state_begin_stop(Container *c, ApiError *reterr)
{
    struct timespec deadline = deadline_in(STATE_WAIT_S);
    pthread_mutex_lock(&c->lock);
    while (c->transition != TRANSITION_NONE && c->transition != TRANSITION_DESTROY) {
        if (!wait_changed(c, &deadline)) {
            int r = busy_error(c, reterr);
            pthread_mutex_unlock(&c->lock);
            return r;
        }
    }
    int r = 0;
    if (c->phase == PHASE_ACTIVE || c->phase == PHASE_STOPPED) {
        c->stop_from = c->phase;
        c->transition = TRANSITION_STOP;
        state_set_phase_locked(c, PHASE_STOPPING);
        /* A process being started now finishes starting, then is stopped. */
        while (c->ops > 0)
            pthread_cond_wait(&c->changed, &c->lock);
    } else if (c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE) {
        r = api_container_not_found(reterr, c->rec.handle);
    } else {
        r = api_errorf(reterr, -EBUSY, 409, GARDEN_ERR_GENERIC, "Container '%s' is %s",
                       c->rec.handle, state_phase_name(c->phase));
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

void state_end_stop(Container *c, bool stopped)
{
    pthread_mutex_lock(&c->lock);
    c->transition = TRANSITION_NONE;
    state_set_phase_locked(c, stopped ? PHASE_STOPPED : c->stop_from);
    pthread_mutex_unlock(&c->lock);
}

int state_begin_start(Container *c, ApiError *reterr)
{
    struct timespec deadline = deadline_in(STATE_WAIT_S);
    pthread_mutex_lock(&c->lock);
    while (c->transition != TRANSITION_NONE && c->transition != TRANSITION_DESTROY) {
        if (!wait_changed(c, &deadline)) {
            int r = busy_error(c, reterr);
            pthread_mutex_unlock(&c->lock);
            return r;
        }
    }
    int r = 0;
    if (c->phase == PHASE_STOPPED) {
        c->transition = TRANSITION_START;
        state_set_phase_locked(c, PHASE_STARTING);
        /* Operations on the stopped container (file streams) finish first. */
        while (c->ops > 0)
            pthread_cond_wait(&c->changed, &c->lock);
    } else if (c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE) {
        r = api_container_not_found(reterr, c->rec.handle);
    } else {
        /* cloche's choice: starting an active container is a conflict, not a no-op,
         * so a client learns that nothing was restarted. */
        r = api_errorf(reterr, -EBUSY, 409, GARDEN_ERR_GENERIC,
                       "Container '%s' is %s, not stopped: only a stopped container can be "
                       "started (restart stops and starts)",
                       c->rec.handle, state_phase_name(c->phase));
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

void state_end_start(Container *c, bool started)
{
    pthread_mutex_lock(&c->lock);
    c->transition = TRANSITION_NONE;
    state_set_phase_locked(c, started ? PHASE_ACTIVE : PHASE_STOPPED);
    pthread_mutex_unlock(&c->lock);
}

bool state_cancelled(Container *c)
{
    pthread_mutex_lock(&c->lock);
    bool cancel = c->cancel;
    pthread_mutex_unlock(&c->lock);
    return cancel;
}

int state_begin_destroy(Container *c, bool *ret_gone, ApiError *reterr)
{
    *ret_gone = false;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (c->phase == PHASE_GONE) {
            /* Another create undo or destroy finished it while we waited. */
            *ret_gone = true;
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        if (c->transition == TRANSITION_DESTROY) {
            pthread_mutex_unlock(&c->lock);
            /* guardian's message and status (garden-protocol.md, Destroy). */
            return api_errorf(reterr, -EBUSY, 500, GARDEN_ERR_GENERIC,
                              "container already being destroyed");
        }
        if (c->transition == TRANSITION_NONE)
            break;
        /* A create (or its undo) or a stop: ask it to give up, wait for it. */
        c->cancel = true;
        pthread_cond_wait(&c->changed, &c->lock);
    }
    c->cancel = false;
    c->transition = TRANSITION_DESTROY;
    state_set_phase_locked(c, PHASE_DESTROYING);
    /* Operations in flight finish first (none can start now). */
    while (c->ops > 0)
        pthread_cond_wait(&c->changed, &c->lock);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void state_begin_undo(Container *c)
{
    pthread_mutex_lock(&c->lock);
    state_set_phase_locked(c, PHASE_DESTROYING);
    while (c->ops > 0)
        pthread_cond_wait(&c->changed, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

void state_end_destroy(Container *c, bool gone)
{
    pthread_mutex_lock(&c->lock);
    c->transition = TRANSITION_NONE;
    c->cancel = false;
    state_set_phase_locked(c, gone ? PHASE_GONE : PHASE_DESTROYING);
    pthread_mutex_unlock(&c->lock);
}

bool state_try_claim_destroy_locked(Container *c)
{
    if (c->transition != TRANSITION_NONE ||
        !(PHASE_MASK(c->phase) & (PHASES_RUNNING | PHASE_MASK(PHASE_DESTROYING))))
        return false;
    c->cancel = false;
    c->transition = TRANSITION_DESTROY;
    state_set_phase_locked(c, PHASE_DESTROYING);
    return true;
}

void state_wait_ops(Container *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->ops > 0)
        pthread_cond_wait(&c->changed, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

void state_end_create(Container *c)
{
    pthread_mutex_lock(&c->lock);
    c->transition = TRANSITION_NONE;
    state_set_phase_locked(c, PHASE_ACTIVE);
    pthread_mutex_unlock(&c->lock);
}
