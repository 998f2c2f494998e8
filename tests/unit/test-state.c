/* The container state machine (src/garden/state.c) on its own: which requests
 * wait, which are refused, and how a destroy meets a create, a stop and the
 * operations in flight. Threads stand in for concurrent requests. */
#include "tap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/garden/garden-internal.h"

static Container *make(ContainerState state)
{
    ContainerRecord rec = {.state = state, .handle = strdup("box")};
    return container_new(&rec);
}

typedef struct Call {
    Container *c;
    int r;
    bool gone;
    ApiError err;
    volatile bool finished;
} Call;

static void *do_destroy(void *arg)
{
    Call *k = arg;
    k->r = state_begin_destroy(k->c, &k->gone, &k->err);
    k->finished = true;
    return NULL;
}

static void *do_op(void *arg)
{
    Call *k = arg;
    k->r = state_op_begin(k->c, PHASES_RUNNING, &k->err);
    k->finished = true;
    return NULL;
}

static void *do_stop(void *arg)
{
    Call *k = arg;
    k->r = state_begin_stop(k->c, &k->err);
    k->finished = true;
    return NULL;
}

/* Give a thread time to reach its wait; it must not have finished. */
static void settle(void)
{
    usleep(50000);
}

static void test_destroy_waits_for_and_cancels_a_create(void)
{
    Container *c = make(CONTAINER_STATE_CREATING);
    c->transition = TRANSITION_CREATE;
    Call d = {.c = c};
    pthread_t t;
    pthread_create(&t, NULL, do_destroy, &d);
    settle();
    ok(!d.finished, "a destroy waits while the create runs");
    ok(state_cancelled(c), "and asks the create to give up");
    /* The create undoes itself and ends gone. */
    state_begin_undo(c);
    settle();
    ok(!d.finished, "the undo is still the create's: the destroy waits on");
    state_end_destroy(c, true);
    pthread_join(t, NULL);
    is_int(d.r, 0, "the destroy succeeds");
    ok(d.gone, "finding the container gone");
    container_unref(c);
}

static void test_destroy_after_a_completed_create(void)
{
    Container *c = make(CONTAINER_STATE_CREATING);
    c->transition = TRANSITION_CREATE;
    Call d = {.c = c};
    pthread_t t;
    pthread_create(&t, NULL, do_destroy, &d);
    settle();
    state_end_create(c);
    pthread_join(t, NULL);
    is_int(d.r, 0, "a destroy claims a container whose create completed");
    ok(!d.gone, "and does the teardown itself");
    is_int(c->phase, PHASE_DESTROYING, "the container is destroying");
    is_int(c->rec.state, CONTAINER_STATE_DESTROYING, "and recorded so");
    Call second = {.c = c};
    do_destroy(&second);
    is_int(second.r, -EBUSY, "a second destroy is refused");
    is_int(second.err.status, 500, "with guardian's 500");
    is_str(second.err.message, "container already being destroyed", "and message");
    Call op = {.c = c};
    do_op(&op);
    is_int(op.err.status, 404, "an operation on a destroying container is a 404");
    state_end_destroy(c, true);
    container_unref(c);
}

static void test_operations_wait_for_create_and_block_destroy(void)
{
    Container *c = make(CONTAINER_STATE_CREATING);
    c->transition = TRANSITION_CREATE;
    Call op = {.c = c};
    pthread_t t;
    pthread_create(&t, NULL, do_op, &op);
    settle();
    ok(!op.finished, "an operation waits for the create");
    state_end_create(c);
    pthread_join(t, NULL);
    is_int(op.r, 0, "then runs");
    is_int(c->ops, 1, "holding the container");

    Call d = {.c = c};
    pthread_create(&t, NULL, do_destroy, &d);
    settle();
    ok(!d.finished, "a destroy waits for the operation in flight");
    is_int(c->phase, PHASE_DESTROYING, "having claimed the container");
    Call late = {.c = c};
    do_op(&late);
    is_int(late.err.status, 404, "no new operation starts meanwhile");
    state_op_end(c);
    pthread_join(t, NULL);
    is_int(d.r, 0, "the destroy goes on once it ends");
    state_end_destroy(c, true);
    container_unref(c);
}

static void test_stop(void)
{
    Container *c = make(CONTAINER_STATE_ACTIVE);
    ApiError e;
    is_int(state_begin_stop(c, &e), 0, "an active container can be stopped");
    is_int(c->phase, PHASE_STOPPING, "it is stopping");
    is_int(c->rec.state, CONTAINER_STATE_ACTIVE, "recorded as active until stopped");
    Call op = {.c = c};
    pthread_t t;
    pthread_create(&t, NULL, do_op, &op);
    settle();
    ok(!op.finished, "a Run waits for the stop");
    state_end_stop(c, true);
    pthread_join(t, NULL);
    is_int(op.r, 0, "then starts in the stopped container");
    /* A stop waits for a process that is starting. */
    Call s2 = {.c = c};
    pthread_t t2;
    pthread_create(&t2, NULL, do_stop, &s2);
    settle();
    ok(!s2.finished, "a stop waits for a process being started");
    state_op_end(c);
    pthread_join(t2, NULL);
    is_int(s2.r, 0, "then claims the container");
    Call d = {.c = c};
    pthread_t t3;
    pthread_create(&t3, NULL, do_destroy, &d);
    settle();
    ok(state_cancelled(c), "a destroy during a stop cuts it short");
    state_end_stop(c, true);
    pthread_join(t3, NULL);
    is_int(d.r, 0, "and then destroys");
    state_end_destroy(c, false);
    is_int(c->phase, PHASE_DESTROYING, "a failed teardown leaves it destroying");
    ok(state_try_claim_destroy_locked(c), "where a retry can claim it");
    state_end_destroy(c, true);
    is_int(c->phase, PHASE_GONE, "until it is gone");
    container_unref(c);
}

static void test_op_refusals(void)
{
    Container *c = make(CONTAINER_STATE_STOPPED);
    ApiError e;
    is_int(state_op_begin(c, PHASE_MASK(PHASE_ACTIVE), &e), -EBUSY,
           "an operation for active containers only is refused on a stopped one");
    is_int(e.status, 409, "with a 409");
    ok(strstr(e.message, "'box' is stopped") != NULL, "saying why: %s", e.message);
    is_int(state_op_begin(c, PHASES_RUNNING, &e), 0, "a Run on a stopped container is fine");
    state_op_end(c);
    container_unref(c);
}

int main(void)
{
    test_destroy_waits_for_and_cancels_a_create();
    test_destroy_after_a_completed_create();
    test_operations_wait_for_create_and_block_destroy();
    test_stop();
    test_op_refusals();
    return tap_done();
}
