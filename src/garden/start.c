/* Stop (Garden's), start and restart (cloche extensions), and containers
 * brought back after a reboot. A stop signals every process but the init, TERM
 * and then KILL after the grace period, and keeps everything else. A start
 * gives a stopped container a new init over the same writable layer, with the
 * address, host ports, firewall rules, limits, properties and bind mounts it
 * had (lifecycle.c does the kernel side); a container whose kernel side a
 * reboot took (no init, no cgroups, no links) is rebuilt the same way at
 * start-up when its service's restart policy asks for it. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/clock.h"
#include "cloche/log.h"
#include "cloche/testhook.h"
#include "garden-internal.h"

#define STOP_GRACE_MS 10000

/* Signal every process of the container but its init; returns how many remain. */
static size_t signal_all_but_init(Container *c, int sig)
{
    pid_t *pids = NULL;
    size_t n = 0, others = 0;
    if (cgroup_list_pids(c->cgroup, &pids, &n) < 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (pids[i] == c->rec.init_pid)
            continue;
        others++;
        if (sig)
            kill(pids[i], sig);
    }
    free(pids);
    return others;
}

int container_stop(Garden *g, Container *c, bool kill_now, ApiError *reterr)
{
    int r = state_begin_stop(c, reterr);
    if (r < 0)
        return r;
    if (!c->cgroup) {
        state_end_stop(c, false);
        return api_errorf(reterr, -ESRCH, 409, GARDEN_ERR_GENERIC,
                          "Container '%s' has no processes to stop", c->rec.handle);
    }
    garden_service_quit(g, c);
    /* A destroy waiting for this stop cuts the grace period short. */
    if (!kill_now && signal_all_but_init(c, SIGTERM) > 0) {
        for (int waited = 0; waited < STOP_GRACE_MS && !state_cancelled(c); waited += 50) {
            usleep(50000);
            if (signal_all_but_init(c, 0) == 0)
                break;
        }
    }
    for (int i = 0; i < 100 && signal_all_but_init(c, SIGKILL) > 0; i++)
        usleep(20000);
    garden_end_shims(g, c, 2000);

    r = garden_record_stopped(g, c);
    state_end_stop(c, r >= 0);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to persist the stopped state");
    garden_event_emit(g, "stopped", c->rec.handle, NULL, -1, kill_now ? "killed" : NULL);
    return 0;
}

/* Under c->lock: the recorded state, the property that shows it, and the mark
 * of a client's Stop, together. */
static int set_state_locked(Container *c, ContainerState state, bool by_client)
{
    c->rec.state = state;
    c->rec.stopped_by_client = by_client;
    return strmap_set(&c->rec.properties, "cloche.state",
                      state == CONTAINER_STATE_STOPPED ? "stopped" : "active");
}

int garden_record_stopped(Garden *g, Container *c)
{
    pthread_mutex_lock(&c->lock);
    ContainerState old = c->rec.state;
    bool old_by_client = c->rec.stopped_by_client;
    int r = set_state_locked(c, CONTAINER_STATE_STOPPED, true);
    if (r >= 0)
        r = garden_persist(g, c);
    if (r < 0)
        (void)set_state_locked(c, old, old_by_client);
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* The kernel side started (phase starting): record it, then the service. */
static int finish_start(Garden *g, Container *c, ApiError *reterr)
{
    pthread_mutex_lock(&c->lock);
    bool old_by_client = c->rec.stopped_by_client;
    int r = set_state_locked(c, CONTAINER_STATE_ACTIVE, false);
    if (r >= 0)
        r = testhook_fault("start.record") ? -EIO : garden_persist(g, c);
    if (r < 0)
        (void)set_state_locked(c, CONTAINER_STATE_STOPPED, old_by_client);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to persist the started state of '%s'",
                                  c->rec.handle);
    return 0;
}

/* A started container whose service cannot start is stopped again, as it was
 * (its mark of a client's Stop included), and the start fails. */
static void undo_service_failure(Garden *g, Container *c, bool old_by_client, const ApiError *why)
{
    log_info("Starting container '%s' failed: its service: %s", c->rec.handle, why->message);
    ApiError ignore;
    int r = container_stop(g, c, true, &ignore);
    if (r < 0) {
        log_warn("Container '%s': stopping it after its service failed to start failed: %s",
                 c->rec.handle, ignore.message);
        return;
    }
    pthread_mutex_lock(&c->lock);
    c->rec.stopped_by_client = old_by_client;
    (void)garden_persist(g, c);
    pthread_mutex_unlock(&c->lock);
}

int container_start(Garden *g, Container *c, ApiError *reterr)
{
    if (!g->cgroups)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_SERVICE_UNAVAILABLE,
                          "This daemon was started without container support");
    int r = state_begin_start(c, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    bool old_by_client = c->rec.stopped_by_client;
    pthread_mutex_unlock(&c->lock);
    int64_t t0 = clock_monotonic_ns();
    r = garden_kernel_start(g, c, reterr);
    if (r >= 0) {
        r = finish_start(g, c, reterr);
        if (r < 0) {
            int k = garden_kernel_end_init(g, c);
            if (k < 0)
                log_warn_errno(k, "Container '%s': the init of a failed start does not die: %m",
                               c->rec.handle);
        }
    }
    if (r < 0) {
        /* Stopped, without an init: what a later start or a destroy begins from.
         * The record says so (a daemon restarted now finds no init to restore). */
        pthread_mutex_lock(&c->lock);
        (void)depot_write_record_flags(g->depot, &c->rec, DEPOT_WRITE_VOLATILE);
        pthread_mutex_unlock(&c->lock);
        log_info("Starting container '%s' failed: %s", c->rec.handle, reterr->message);
        state_end_start(c, false);
        return r;
    }
    pthread_mutex_lock(&c->lock);
    bool watched = c->oom_fd >= 0;
    pthread_mutex_unlock(&c->lock);
    if (!watched) /* cgroups made anew (after a reboot) */
        garden_oom_watch(g, c);
    state_end_start(c, true);
    log_debug("Container '%s': started in %.2f ms", c->rec.handle,
              (double)(clock_monotonic_ns() - t0) / 1e6);
    garden_event_emit(g, "started", c->rec.handle, NULL, -1, NULL);
    /* Then its service, as create does (an active container: it runs as any
     * process does, and a destroy arriving now waits for it). */
    r = container_service_start(g, c, reterr);
    if (r < 0)
        undo_service_failure(g, c, old_by_client, reterr);
    return r;
}

int container_restart(Garden *g, Container *c, bool kill_now, ApiError *reterr)
{
    int r = container_stop(g, c, kill_now, reterr);
    if (r < 0)
        return r;
    return container_start(g, c, reterr);
}

bool garden_layer_outlives_reboot(const ContainerSpec *spec)
{
    const ServiceSpec *s = spec->service;
    return s &&
           (s->restart == SERVICE_RESTART_ALWAYS || s->restart == SERVICE_RESTART_UNLESS_STOPPED);
}

/* Does a container whose kernel side is gone (a reboot) come back? Only one
 * whose service's restart policy is always or unless-stopped, and that no
 * client stopped. */
static bool wanted_after_reboot(const ContainerRecord *rec)
{
    if (rec->stopped_by_client || rec->state != CONTAINER_STATE_ACTIVE)
        return false;
    return garden_layer_outlives_reboot(&rec->spec);
}

bool garden_reboot_adopt(Garden *g, Container *c)
{
    /* Only a record whose init is gone (restore found no process to attach to):
     * one a reboot took that its service wants back, or one a start had ended
     * the init of (recorded as init pid 0) when the daemon stopped. */
    bool start = wanted_after_reboot(&c->rec);
    bool keep = c->rec.state == CONTAINER_STATE_STOPPED && c->rec.init_pid == 0;
    log_debug(
        "Container '%s': init %s, state %s, service %s, stopped by a client %d", c->rec.handle,
        c->init_pidfd >= 0 ? "alive" : "gone", container_state_to_string(c->rec.state),
        c->rec.spec.service ? service_restart_to_string(c->rec.spec.service->restart) : "none",
        c->rec.stopped_by_client);
    if (c->init_pidfd >= 0 || !g->cgroups || !(start || keep))
        return false;
    /* The start-up restore (restore.c) registered it and holds its reservations
     * already; undoing them is its job too. */
    bool registered = c->restoring;
    int r = registered ? 0 : garden_kernel_reserve(g, c);
    if (r < 0) {
        log_warn_errno(r, "Container '%s': its ids cannot be held again (%m); removing it",
                       c->rec.handle);
        return false;
    }
    /* Cgroups left over (a daemon killed in the middle of a start leaves its new
     * init there): emptied and removed; the start makes them anew from the
     * record, limits included. */
    Cgroup *cg = NULL;
    if (cgroup_open_existing(g->cgroups, c->rec.handle, &cg) == 0) {
        r = cgroup_destroy(cg, 10000);
        cgroup_free(cg);
        if (r < 0) {
            log_warn_errno(r, "Container '%s': its old cgroups cannot be removed (%m); removing it",
                           c->rec.handle);
            if (!registered)
                garden_kernel_unreserve(g, c);
            return false;
        }
    }
    pthread_mutex_lock(&c->lock);
    state_set_phase_locked(c, PHASE_STOPPED); /* what the start begins from */
    c->start_after_reboot = start;
    pthread_mutex_unlock(&c->lock);
    if (!registered) {
        ApiError err;
        r = garden_insert_new(g, c, &err);
        if (r < 0) {
            log_warn("Container '%s' cannot be restored: %s; removing it", c->rec.handle,
                     err.message);
            garden_kernel_unreserve(g, c);
            return false;
        }
        garden_arm_grace(g, c);
    }
    if (start)
        log_info("Container '%s' lost its processes while the daemon was down (a reboot); its "
                 "service's restart policy brings it back",
                 c->rec.handle);
    else
        log_info("Container '%s' was being started when the daemon stopped; it stays stopped",
                 c->rec.handle);
    return true;
}

void garden_reboot_start_all(Garden *g)
{
    pthread_mutex_lock(&g->lock);
    size_t n = hashmap_size(g->containers), k = 0;
    Container **all = calloc(n + 1, sizeof(Container *));
    size_t state = 0;
    const char *key;
    void *value;
    while (all && hashmap_iterate(g->containers, &state, &key, &value) == 0) {
        Container *c = value;
        if (c->start_after_reboot) {
            atomic_fetch_add(&c->refcount, 1);
            all[k++] = c;
        }
    }
    pthread_mutex_unlock(&g->lock);
    for (size_t i = 0; i < k; i++) {
        Container *c = all[i];
        c->start_after_reboot = false;
        ApiError err;
        if (container_start(g, c, &err) < 0)
            log_warn("Container '%s' could not be started again after the reboot: %s; it stays "
                     "stopped",
                     c->rec.handle, err.message);
        else
            log_info("Container '%s' started again after the reboot", c->rec.handle);
        garden_restore_done(c, false); /* requests that waited for it go on */
        container_unref(c);
    }
    free(all);
}
