/* Start-up restore without a blackout.
 *
 * Before the daemon serves, every container of the depot is put in the registry
 * with its id range, address and ports reserved again (all in memory, so no
 * create can take them) and marked restoring; the firewall is pruned and its
 * owner elements listed once. Then a pool of threads re-attaches each
 * container to its kernel objects (init pidfd, cgroups, limits, firewall check,
 * OOM watch, history) while requests are already answered: a request that finds
 * a container still restoring waits for it (garden_restore_wait, called by every
 * registry lookup). A container whose processes are gone is torn down and leaves
 * the registry; its waiters then see it gone (404).
 *
 * Crash safety is unchanged: nothing here writes the depot except to remove a
 * container that is gone and to clear a firewall_pending mark after the firewall
 * state it stood for was added (garden_net_restore). */
#include <pthread.h>
#include <stdlib.h>
#include <sys/sysinfo.h>

#include "cloche/clock.h"
#include "cloche/grace.h"
#include "cloche/log.h"
#include "cloche/testhook.h"
#include "garden-internal.h"

/* Threads re-attaching containers: the work is syscalls (procfs, cgroupfs,
 * pidfds), a little more than the cores keeps them busy. */
#define RESTORE_THREADS_MAX 8

void garden_restore_wait(Container *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->restoring)
        pthread_cond_wait(&c->changed, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static void restore_finish(Container *c, bool gone)
{
    garden_restore_done(c, gone);
}

void garden_restore_done(Container *c, bool gone)
{
    pthread_mutex_lock(&c->lock);
    if (gone)
        state_set_phase_locked(c, PHASE_GONE);
    c->restoring = false;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

/* Before serving: the container's id range, address and ports taken out of the
 * pools again, so no create gets them while it is being re-attached. */
static void restore_reserve(Garden *g, Container *c)
{
    ContainerRecord *rec = &c->rec;
    if (!rec->spec.privileged && rec->uid_base && rec->uid_base != SANDBOX_SHARED_ROOT) {
        int r = idpool_reserve(g->ids, rec->uid_base);
        if (r < 0)
            log_warn("Container '%s' has id range %u, which %s", rec->handle, rec->uid_base,
                     r == -EEXIST ? "another container also claims" : "is outside the pool");
        c->uid_reserved = r >= 0;
    }
    if (g->net_ready && rec->net.id) {
        garden_net_reserve(g, c);
        c->net_reserved = true;
    }
}

/* The undo, for a container found gone: only what restore_reserve took. */
static void restore_unreserve(Garden *g, Container *c)
{
    if (c->net_reserved)
        garden_net_release(g, c);
    c->net_reserved = false;
    if (c->uid_reserved)
        idpool_release(g->ids, c->rec.uid_base);
    c->uid_reserved = false;
}

/* A container whose init is gone (a reboot, or killed behind our back): never
 * left half alive (unless garden_reboot_adopt keeps it, stopped). Everything it held goes back,
 * then the registry lets go. */
static void restore_drop(Garden *g, Container *c)
{
    log_warn("Container '%s' lost its processes while the daemon was down; removing it",
             c->rec.handle);
    restore_unreserve(g, c);
    garden_kernel_cleanup_record(g, &c->rec);
    int k = depot_container_remove(g->depot, c->rec.handle);
    if (k < 0)
        log_warn_errno(k, "Failed to remove '%s' from the depot: %m", c->rec.handle);
    garden_event_emit(g, "destroyed", c->rec.handle, NULL, -1,
                      "lost its processes while the daemon was down");
    restore_finish(c, true);
    garden_unregister(g, c);
}

/* One container, on a pool thread (a reference held by the restore list). */
static void restore_one(Garden *g, Container *c)
{
    testhook_point("restore.container");
    if (garden_kernel_restore(g, c) < 0) {
        /* A reboot took it, and its service's restart policy brings it back (or
         * a start had ended its init): kept, stopped, reservations held. */
        if (garden_reboot_adopt(g, c)) {
            /* One to be started again stays restoring (requests wait) until
             * garden_reboot_start_all has started it: nobody sees it stopped. */
            if (!c->start_after_reboot)
                restore_finish(c, false);
            return;
        }
        restore_drop(g, c);
        return;
    }
    garden_oom_watch(g, c);
    garden_history_restore(g, c);
    garden_service_watch(g, c, false);
    restore_finish(c, false);
    log_debug("Restored container '%s'", c->rec.handle);
}

static void *restore_worker(void *userdata)
{
    Garden *g = userdata;
    for (;;) {
        pthread_mutex_lock(&g->restore_lock);
        size_t i = g->restore_next < g->n_restore ? g->restore_next++ : SIZE_MAX;
        pthread_mutex_unlock(&g->restore_lock);
        if (i == SIZE_MAX)
            return NULL;
        restore_one(g, g->restore_list[i]);
    }
}

static void *restore_pool(void *userdata)
{
    Garden *g = userdata;
    int64_t t0 = clock_monotonic_ns();
    /* Which containers still have their firewall state: one dump of the owner
     * elements for all of them. Creates meanwhile change no restoring one. */
    if (g->net_ready && g->n_restore > 0) {
        int r = firewall_presence_load(g->firewall, &g->restore_presence);
        if (r < 0)
            log_warn_errno(r, "Failed to list the firewall's owner elements: %m: %s",
                           firewall_last_error(g->firewall));
    }
    size_t n_threads = (size_t)get_nprocs() * 2;
    if (n_threads > RESTORE_THREADS_MAX)
        n_threads = RESTORE_THREADS_MAX;
    if (n_threads > g->n_restore)
        n_threads = g->n_restore;
    pthread_t threads[RESTORE_THREADS_MAX];
    size_t started = 0;
    for (; started < n_threads; started++)
        if (pthread_create(&threads[started], NULL, restore_worker, g) != 0)
            break;
    restore_worker(g); /* this thread helps too (and does it all if none started) */
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    for (size_t i = 0; i < g->n_restore; i++)
        container_unref(g->restore_list[i]);
    log_info("Restored %zu container(s) in %.1f ms (%zu threads)", g->n_restore,
             (double)(clock_monotonic_ns() - t0) / 1e6, started + 1);
    free(g->restore_list);
    g->restore_list = NULL;
    firewall_presence_free(g->restore_presence);
    g->restore_presence = NULL;
    garden_reboot_start_all(g);
    return NULL;
}

/* Directories without a readable record, and records of a create or destroy the
 * previous daemon did not finish: torn down now (rare; before serving). */
static void restore_remove_unfinished(Garden *g, ContainerRecord *recs, size_t n, char **bad)
{
    for (char **b = bad; b && *b; b++) {
        ContainerRecord probe = {0};
        int k = depot_read_record(g->depot, *b, &probe);
        container_record_done(&probe);
        if (k != -ENOENT) {
            log_warn("Container directory '%s' in the depot has an unreadable state file; left "
                     "alone for inspection",
                     *b);
            continue;
        }
        /* A create interrupted before its first record: undo what it made. */
        log_info("Removing '%s', a container whose creation was interrupted", *b);
        ContainerRecord stub = {.handle = *b};
        garden_kernel_cleanup_record(g, &stub);
        k = depot_container_remove(g->depot, *b);
        if (k < 0)
            log_warn_errno(k, "Failed to remove '%s' from the depot: %m", *b);
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i].state != CONTAINER_STATE_CREATING &&
            recs[i].state != CONTAINER_STATE_DESTROYING)
            continue;
        /* Finish tearing it down rather than restoring half a container. */
        log_info("Removing container '%s' left %s by the previous daemon", recs[i].handle,
                 container_state_to_string(recs[i].state));
        garden_kernel_cleanup_record(g, &recs[i]);
        int k = depot_container_remove(g->depot, recs[i].handle);
        if (k < 0)
            log_warn_errno(k, "Failed to remove '%s' from the depot: %m", recs[i].handle);
        container_record_done(&recs[i]);
    }
}

int garden_restore_start(Garden *g)
{
    ContainerRecord *recs = NULL;
    size_t n = 0;
    _cleanup_strv_free_ char **bad = NULL;
    pthread_mutex_init(&g->restore_lock, NULL);
    int64_t t0 = clock_monotonic_ns();
    int r = depot_load_all(g->depot, &recs, &n, &bad);
    if (r < 0)
        return r;
    restore_remove_unfinished(g, recs, n, bad);
    g->restore_list = calloc(n + 1, sizeof(Container *));
    if (!g->restore_list) {
        container_records_free(recs, n);
        return -ENOMEM;
    }
    bool kernel = g->cgroups != NULL;
    for (size_t i = 0; i < n; i++) {
        if (!recs[i].handle)
            continue; /* removed above */
        Container *c = container_new(&recs[i]);
        if (!c) {
            log_error("Failed to restore container '%s'", recs[i].handle);
            continue;
        }
        if (kernel) {
            restore_reserve(g, c);
            c->restoring = true;
        }
        atomic_fetch_add(&c->refcount, 1); /* the restore list's */
        if (garden_insert(g, c) < 0) {
            log_error("Failed to restore container '%s'", c->rec.handle);
            restore_unreserve(g, c);
            container_unref(c);
            container_unref(c);
            continue;
        }
        if (!kernel) {
            garden_history_restore(g, c);
            container_unref(c);
            continue;
        }
        g->restore_list[g->n_restore++] = c;
    }
    container_records_free(recs, n);
    if (!kernel) {
        free(g->restore_list);
        g->restore_list = NULL;
        return 0;
    }
    int64_t t1 = clock_monotonic_ns();
    /* Every depot container counts as live here (those found gone are removed one
     * by one as the pool meets them), so the prune may run before serving. */
    garden_net_prune(g);
    log_info("Depot: %zu container(s) loaded and reserved in %.1f ms, network pruned in %.1f ms; "
             "restoring them while serving",
             g->n_restore, (double)(t1 - t0) / 1e6, (double)(clock_monotonic_ns() - t1) / 1e6);
    if (pthread_create(&g->restorer, NULL, restore_pool, g) == 0) {
        g->restorer_started = true;
        return 0;
    }
    restore_pool(g); /* no thread: restore before serving */
    return 0;
}

void garden_restore_join(Garden *g)
{
    if (g->restorer_started)
        pthread_join(g->restorer, NULL);
    g->restorer_started = false;
}
