/* Container registry: handle -> Container, persisted through the depot. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>

#include "cloche/garden.h"
#include "cloche/grace.h"
#include "cloche/hashmap.h"
#include "cloche/log.h"
#include "cloche/wire.h"
#include "cloche/testhook.h"
#include "cloche/clock.h"
#include "garden-internal.h"

void container_unref(Container *c)
{
    if (!c || atomic_fetch_sub(&c->refcount, 1) != 1)
        return;
    container_free_kernel(c);
    history_store_free(c->history);
    container_record_done(&c->rec);
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

Container *container_new(ContainerRecord *rec)
{
    Container *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    atomic_init(&c->refcount, 1);
    pthread_mutex_init(&c->lock, NULL);
    c->rec = *rec;
    *rec = (ContainerRecord){0};
    c->service = c->rec.spec.service;
    state_init(c, c->rec.state);
    c->grace_scheduled_ns = GRACE_NEVER;
    c->init_pidfd = -1;
    c->oom_fd = -1;
    return c;
}

const char *container_handle(const Container *c)
{
    return c->rec.handle;
}

/* Queue an expiry check unless an earlier one is already queued. Called with
 * c->lock held. One pending entry per container keeps the heap bounded. */
static void container_schedule_grace(Garden *g, Container *c)
{
    int64_t d = c->grace.deadline_ns;
    if (d == GRACE_NEVER || d >= c->grace_scheduled_ns)
        return;
    if (grace_service_schedule(g->grace, c->rec.handle, d, c->grace.generation) == 0)
        c->grace_scheduled_ns = d;
}

static int garden_destroy_claimed(Garden *g, Container *c, ApiError *reterr);

/* A reference to the registered container named handle, or NULL. One still
 * being restored at start-up is waited for (restore.c). */
static Container *registry_ref(Garden *g, const char *handle)
{
    pthread_mutex_lock(&g->lock);
    Container *c = hashmap_get(g->containers, handle);
    if (c)
        atomic_fetch_add(&c->refcount, 1);
    pthread_mutex_unlock(&g->lock);
    if (c)
        garden_restore_wait(c);
    return c;
}

static void garden_grace_fire(const char *handle, uint64_t generation, void *userdata)
{
    Garden *g = userdata;
    Container *c = registry_ref(g, handle);
    if (!c)
        return;

    int64_t now = clock_monotonic_ns();
    pthread_mutex_lock(&c->lock);
    /* A destroy that failed earlier is retried; otherwise the timer is checked. */
    bool retry = c->phase == PHASE_DESTROYING && c->transition == TRANSITION_NONE;
    /* Checked and claimed under the container's lock, so a request that arrives
     * now either paused the timer first or finds the container being destroyed. */
    bool expired = !retry && grace_timer_expired(&c->grace, now) &&
                   (PHASE_MASK(c->phase) & PHASES_RUNNING) && c->transition == TRANSITION_NONE;
    if (!retry)
        c->grace_scheduled_ns = GRACE_NEVER;
    bool claimed = (retry || expired) && state_try_claim_destroy_locked(c);
    if (!retry && !claimed)
        container_schedule_grace(g, c);
    pthread_mutex_unlock(&c->lock);
    (void)generation;

    if (claimed) {
        ApiError err;
        if (retry)
            log_info("Retrying the destroy of container '%s'", handle);
        else
            log_info("Grace time of container '%s' expired, destroying it", handle);
        state_wait_ops(c);
        if (garden_destroy_claimed(g, c, &err) < 0)
            log_warn("Destroying container '%s' failed: %s", handle, err.message);
    }
    container_unref(c);
}

/* Insert c into the registry and arm its timer. Takes c's initial reference. */
int garden_insert(Garden *g, Container *c)
{
    pthread_mutex_lock(&g->lock);
    int r = hashmap_put(g->containers, c->rec.handle, c);
    pthread_mutex_unlock(&g->lock);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    grace_timer_init(&c->grace, c->rec.grace_time_ns, clock_monotonic_ns());
    container_schedule_grace(g, c);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int garden_new(const GardenConfig *cfg, Garden **ret)
{
    Garden *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->init_fd = -1; /* before any failure: garden_free closes it */
    g->oom_epoll = g->oom_wake = -1;
    pthread_mutex_init(&g->lock, NULL);
    g->cfg = *cfg;
    g->depot_path = strdup(cfg->depot_path);
    g->default_rootfs = strdup(cfg->default_rootfs ? cfg->default_rootfs : "");
    g->cgroup_parent = strdup(cfg->cgroup_parent ? cfg->cgroup_parent : "cloche");
    g->cfg.depot_path = g->depot_path;
    g->cfg.default_rootfs = g->default_rootfs;
    g->cfg.cgroup_parent = g->cgroup_parent;
    int r = -ENOMEM;
    if (!g->depot_path || !g->default_rootfs || !g->cgroup_parent)
        goto fail;
    r = hashmap_new(&g->containers);
    if (r < 0)
        goto fail;
    r = garden_events_setup(g);
    if (r < 0)
        goto fail;
    garden_images_attach(g, true);
    r = depot_open_run(cfg->depot_path, cfg->run_path, &g->depot);
    if (r < 0)
        goto fail;
    r = garden_service_watch_setup(g);
    if (r < 0)
        goto fail;
    if (cfg->init_path) {
        r = garden_kernel_setup(g);
        if (r < 0)
            goto fail;
    }
    r = grace_service_start(garden_grace_fire, g, &g->grace);
    if (r < 0)
        goto fail;

    r = garden_restore_start(g);
    if (r < 0)
        goto fail;
    if (cfg->init_path) {
        r = garden_sampler_start(g);
        if (r < 0)
            goto fail;
        r = garden_shim_pool_start(g);
        if (r < 0)
            goto fail;
    }
    *ret = g;
    return 0;
fail:
    garden_free(g);
    return r;
}

void garden_free(Garden *g)
{
    if (!g)
        return;
    garden_restore_join(g);
    garden_images_attach(g, false);
    garden_events_stop(g);
    grace_service_stop(g->grace);
    garden_sampler_stop(g);
    garden_shim_pool_stop(g);
    if (g->containers) {
        size_t state = 0;
        const char *key;
        void *value;
        while (hashmap_iterate(g->containers, &state, &key, &value) == 0)
            container_unref(value);
        hashmap_free(g->containers);
    }
    garden_service_watch_free(g);
    garden_kernel_free(g);
    depot_free(g->depot);
    free(g->depot_path);
    free(g->default_rootfs);
    free(g->cgroup_parent);
    for (size_t i = 0; i < g->n_image_sizes; i++)
        free(g->image_sizes[i].path);
    free(g->image_sizes);
    garden_events_free(g);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

size_t garden_count(Garden *g)
{
    pthread_mutex_lock(&g->lock);
    size_t n = hashmap_size(g->containers);
    pthread_mutex_unlock(&g->lock);
    return n;
}

uint64_t garden_max_containers(const Garden *g)
{
    uint64_t max = g->cfg.network_capacity;
    if (g->netpool && netpool_capacity(g->netpool) < max)
        max = netpool_capacity(g->netpool);
    if (g->cfg.max_containers > 0 && g->cfg.max_containers < max)
        max = g->cfg.max_containers;
    return max;
}

int garden_capacity(Garden *g, Capacity *ret)
{
    struct sysinfo si;
    if (sysinfo(&si) < 0)
        return -errno;
    struct statvfs sv;
    if (statvfs(g->depot_path, &sv) < 0)
        return -errno;
    uint64_t max = garden_max_containers(g);
    *ret = (Capacity){
        .memory_in_bytes = (uint64_t)si.totalram * si.mem_unit,
        .disk_in_bytes = (uint64_t)sv.f_blocks * sv.f_frsize,
        .schedulable_disk_in_bytes = (uint64_t)sv.f_bavail * sv.f_frsize,
        .max_containers = max,
    };
    pthread_mutex_lock(&g->lock);
    size_t state = 0;
    const char *key;
    void *value;
    while (hashmap_iterate(g->containers, &state, &key, &value) == 0) {
        Container *c = value;
        pthread_mutex_lock(&c->lock);
        const Limits *l = &c->rec.spec.limits;
        ret->committed_memory_in_bytes += l->memory.limit_in_bytes;
        ret->committed_disk_in_bytes += l->disk.byte_hard ? l->disk.byte_hard : l->disk.byte_soft;
        ret->containers++;
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&g->lock);
    if (g->cfg.images) {
        ImageStoreStats st;
        image_store_stats(g->cfg.images, &st);
        ret->image_store_bytes = st.bytes;
        ret->image_store_layers = st.layers;
    }
    return 0;
}

int garden_acquire(Garden *g, const char *handle, Container **ret, ApiError *reterr)
{
    Container *c = registry_ref(g, handle);
    if (!c)
        return api_container_not_found(reterr, handle);
    pthread_mutex_lock(&c->lock);
    if (c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE) {
        pthread_mutex_unlock(&c->lock);
        container_unref(c);
        return api_container_not_found(reterr, handle);
    }
    grace_timer_begin(&c->grace);
    pthread_mutex_unlock(&c->lock);
    *ret = c;
    return 0;
}

void garden_release(Garden *g, Container *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    grace_timer_end(&c->grace, clock_monotonic_ns());
    container_schedule_grace(g, c);
    pthread_mutex_unlock(&c->lock);
    container_unref(c);
}

static bool container_matches(Container *c, const StringMap *filter)
{
    bool show_all = false;
    STRMAP_FOREACH (i, filter) {
        if (strcmp(filter->keys[i], "garden.state") == 0 && strcmp(filter->values[i], "all") == 0) {
            show_all = true;
            continue;
        }
        const char *v = strmap_get(&c->rec.properties, filter->keys[i]);
        if (!v || strcmp(v, filter->values[i]) != 0)
            return false;
    }
    if (c->phase == PHASE_GONE)
        return false;
    return show_all || (c->phase != PHASE_CREATING && c->phase != PHASE_DESTROYING);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int garden_list(Garden *g, const StringMap *filter, char ***ret_handles, size_t *ret_n)
{
    pthread_mutex_lock(&g->lock);
    size_t total = hashmap_size(g->containers);
    Container **all = calloc(total + 1, sizeof(Container *));
    if (!all) {
        pthread_mutex_unlock(&g->lock);
        return -ENOMEM;
    }
    size_t state = 0, n = 0;
    const char *key;
    void *value;
    while (hashmap_iterate(g->containers, &state, &key, &value) == 0) {
        all[n] = value;
        atomic_fetch_add(&all[n]->refcount, 1);
        n++;
    }
    pthread_mutex_unlock(&g->lock);

    char **handles = calloc(n + 1, sizeof(char *));
    size_t k = 0;
    int r = handles ? 0 : -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        Container *c = all[i];
        if (r == 0) {
            /* A list taken while the depot is restored is whole: it waits for
             * those not restored yet (the gone ones are then left out). */
            garden_restore_wait(c);
            pthread_mutex_lock(&c->lock);
            if (container_matches(c, filter)) {
                handles[k] = strdup(c->rec.handle);
                if (!handles[k])
                    r = -ENOMEM;
                else
                    k++;
            }
            pthread_mutex_unlock(&c->lock);
        }
        container_unref(c);
    }
    free(all);
    if (r < 0) {
        strv_free(handles);
        return r;
    }
    qsort(handles, k, sizeof(char *), compare_strings);
    *ret_handles = handles;
    *ret_n = k;
    return 0;
}

int garden_register(Garden *g, ContainerRecord *rec, ApiError *reterr)
{
    Container *c = container_new(rec);
    if (!c)
        return api_internal_error(reterr, -ENOMEM, "Failed to register container");
    const char *handle = c->rec.handle;

    /* The registry entry is the reservation: a concurrent register of the same
     * handle fails here, before either touches the depot. */
    pthread_mutex_lock(&g->lock);
    int r = hashmap_put(g->containers, handle, c);
    pthread_mutex_unlock(&g->lock);
    if (r == -EEXIST) {
        /* Hand the record back untouched so the caller still owns it. */
        *rec = c->rec;
        c->rec = (ContainerRecord){0};
        container_unref(c);
        return api_errorf(reterr, -EEXIST, 409, GARDEN_ERR_GENERIC, "Handle '%s' already in use",
                          rec->handle);
    }
    if (r < 0) {
        container_unref(c);
        return api_internal_error(reterr, r, "Failed to register container");
    }

    r = depot_container_create(g->depot, handle);
    if (r >= 0)
        r = depot_write_record(g->depot, &c->rec);
    if (r < 0) {
        api_internal_error(reterr, r, "Failed to persist container '%s'", handle);
        if (r != -EEXIST)
            (void)depot_container_remove(g->depot, handle);
        pthread_mutex_lock(&g->lock);
        hashmap_remove(g->containers, handle);
        pthread_mutex_unlock(&g->lock);
        container_unref(c);
        return r;
    }

    pthread_mutex_lock(&c->lock);
    grace_timer_init(&c->grace, c->rec.grace_time_ns, clock_monotonic_ns());
    container_schedule_grace(g, c);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* Try a failed teardown again later, on the grace service's thread: 1 s, then
 * doubling up to about a minute. Under c->lock. */
static void schedule_teardown_retry(Garden *g, Container *c)
{
    unsigned shift = c->teardown_failures < 6 ? c->teardown_failures : 6;
    int64_t delay = (int64_t)1000000000 << shift;
    c->teardown_failures++;
    (void)grace_service_schedule(g->grace, c->rec.handle, clock_monotonic_ns() + delay,
                                 c->grace.generation);
}

int garden_teardown_claimed(Garden *g, Container *c, const char **ret_what)
{
    const char *handle = c->rec.handle;
    /* Record the intent (volatile: should it be lost, a container whose init is
     * gone is cleaned up at start-up all the same). */
    pthread_mutex_lock(&c->lock);
    int r = depot_write_record_flags(g->depot, &c->rec, DEPOT_WRITE_VOLATILE);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        log_warn_errno(r, "Failed to record the destroy of '%s': %m", handle);
    testhook_point("destroy.record");
    int64_t t0 = clock_monotonic_ns();
    r = garden_kernel_teardown(g, c);
    int64_t t1 = clock_monotonic_ns();
    testhook_point("destroy.teardown");
    *ret_what = "tear down";
    if (r >= 0) {
        r = testhook_fault("destroy.depot") ? -EIO : depot_container_remove(g->depot, handle);
        *ret_what = "remove from the depot";
        log_debug("Container '%s': torn down in %.2f ms, removed from the depot in %.2f ms", handle,
                  (double)(t1 - t0) / 1e6, (double)(clock_monotonic_ns() - t1) / 1e6);
    }
    if (r < 0) {
        /* Left destroying (hidden, not usable) and retried until it is gone; a
         * restarted daemon finishes it from the record too. */
        pthread_mutex_lock(&c->lock);
        (void)depot_write_record(g->depot, &c->rec);
        schedule_teardown_retry(g, c);
        pthread_mutex_unlock(&c->lock);
        state_end_destroy(c, false);
        return r;
    }
    testhook_point("destroy.depot");
    garden_unregister(g, c);
    state_end_destroy(c, true);
    return 0;
}

/* Second half of destroy, for a container claimed with state_begin_destroy. */
static int garden_destroy_claimed(Garden *g, Container *c, ApiError *reterr)
{
    const char *what = NULL;
    int r = garden_teardown_claimed(g, c, &what);
    if (r < 0)
        return api_internal_error(reterr, r,
                                  "Failed to %s container '%s'; it is being retried in the "
                                  "background",
                                  what, c->rec.handle);
    garden_event_emit(g, "destroyed", c->rec.handle, NULL, -1, NULL);
    return 0;
}

int garden_destroy(Garden *g, const char *handle, ApiError *reterr)
{
    Container *c = registry_ref(g, handle);
    if (!c)
        return api_container_not_found(reterr, handle);
    bool gone = false;
    int r = state_begin_destroy(c, &gone, reterr);
    if (r >= 0 && !gone)
        r = garden_destroy_claimed(g, c, reterr);
    container_unref(c);
    return r;
}

int container_get_properties(Container *c, StringMap *ret)
{
    pthread_mutex_lock(&c->lock);
    int r = strmap_copy(&c->rec.properties, ret);
    pthread_mutex_unlock(&c->lock);
    return r;
}

int container_get_property(Container *c, const char *key, char **ret, ApiError *reterr)
{
    pthread_mutex_lock(&c->lock);
    const char *v = strmap_get(&c->rec.properties, key);
    char *copy = v ? strdup(v) : NULL;
    pthread_mutex_unlock(&c->lock);
    if (!v)
        return api_errorf(reterr, -ENOENT, 500, GARDEN_ERR_GENERIC, "property does not exist: %s",
                          key);
    if (!copy)
        return api_internal_error(reterr, -ENOMEM, "Failed to read property");
    *ret = copy;
    return 0;
}

static int validate_property(const char *key, const char *value, ApiError *reterr)
{
    size_t klen = strlen(key);
    if (klen == 0)
        return api_bad_request(reterr, "Property key must not be empty");
    if (klen > SPEC_PROPERTY_KEY_MAX)
        return api_bad_request(reterr, "Property key is too long: %zu bytes (at most %d)", klen,
                               SPEC_PROPERTY_KEY_MAX);
    if (value && strlen(value) > SPEC_PROPERTY_VALUE_MAX)
        return api_bad_request(reterr, "Value of property '%s' is too long (at most %d bytes)", key,
                               SPEC_PROPERTY_VALUE_MAX);
    return 0;
}

/* Properties and the grace time may change whenever the container is not being
 * created or destroyed. */
#define PHASES_RECORD (PHASES_RUNNING | PHASE_MASK(PHASE_STOPPING))

int container_set_property(Garden *g, Container *c, const char *key, const char *value,
                           ApiError *reterr)
{
    int r = validate_property(key, value, reterr);
    if (r < 0)
        return r;
    r = state_op_begin(c, PHASES_RECORD, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    const char *old = strmap_get(&c->rec.properties, key);
    _cleanup_free_ char *saved = old ? strdup(old) : NULL;
    if (old && !saved) {
        r = api_internal_error(reterr, -ENOMEM, "Failed to set property");
        goto out;
    }
    if (!old && c->rec.properties.n >= SPEC_PROPERTIES_MAX) {
        r = api_errorf(reterr, -E2BIG, 400, GARDEN_ERR_GENERIC,
                       "Container '%s' already has %d properties (the maximum)", c->rec.handle,
                       SPEC_PROPERTIES_MAX);
        goto out;
    }
    size_t total = strlen(key) + strlen(value);
    STRMAP_FOREACH (i, &c->rec.properties) {
        if (strcmp(c->rec.properties.keys[i], key) != 0)
            total += strlen(c->rec.properties.keys[i]) + strlen(c->rec.properties.values[i]);
    }
    if (total > SPEC_PROPERTIES_BYTES_MAX) {
        r = api_errorf(reterr, -E2BIG, 400, GARDEN_ERR_GENERIC,
                       "Properties of container '%s' would exceed %u bytes", c->rec.handle,
                       SPEC_PROPERTIES_BYTES_MAX);
        goto out;
    }
    r = strmap_set(&c->rec.properties, key, value);
    if (r < 0) {
        r = api_internal_error(reterr, r, "Failed to set property '%s'", key);
        goto out;
    }
    r = depot_write_record(g->depot, &c->rec);
    if (r < 0) {
        /* Roll back so memory and disk agree. */
        if (saved)
            (void)strmap_set(&c->rec.properties, key, saved);
        else
            strmap_remove(&c->rec.properties, key);
        r = api_internal_error(reterr, r, "Failed to persist property '%s'", key);
    }
out:
    pthread_mutex_unlock(&c->lock);
    state_op_end(c);
    return r;
}

int container_remove_property(Garden *g, Container *c, const char *key, ApiError *reterr)
{
    int r = state_op_begin(c, PHASES_RECORD, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    const char *old = strmap_get(&c->rec.properties, key);
    _cleanup_free_ char *saved = old ? strdup(old) : NULL;
    if (old && !saved)
        r = api_internal_error(reterr, -ENOMEM, "Failed to remove property");
    else if (old && strmap_remove(&c->rec.properties, key)) {
        r = depot_write_record(g->depot, &c->rec);
        if (r < 0) {
            (void)strmap_set(&c->rec.properties, key, saved);
            r = api_internal_error(reterr, r, "Failed to persist removal of property '%s'", key);
        }
    }
    pthread_mutex_unlock(&c->lock);
    state_op_end(c);
    return r;
}

int container_set_grace_time(Garden *g, Container *c, int64_t grace_ns, ApiError *reterr)
{
    if (grace_ns < 0)
        return api_bad_request(reterr, "Grace time must not be negative");
    char text[32];
    snprintf(text, sizeof(text), "%" PRId64, grace_ns);
    int r = state_op_begin(c, PHASES_RECORD, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    int64_t old = c->rec.grace_time_ns;
    c->rec.grace_time_ns = grace_ns;
    r = strmap_set(&c->rec.properties, "garden.grace-time", text);
    if (r >= 0)
        r = depot_write_record(g->depot, &c->rec);
    if (r < 0) {
        c->rec.grace_time_ns = old;
        snprintf(text, sizeof(text), "%" PRId64, old);
        (void)strmap_set(&c->rec.properties, "garden.grace-time", text);
        pthread_mutex_unlock(&c->lock);
        state_op_end(c);
        return api_internal_error(reterr, r, "Failed to persist the grace time");
    }
    grace_timer_set(&c->grace, grace_ns, clock_monotonic_ns());
    container_schedule_grace(g, c);
    pthread_mutex_unlock(&c->lock);
    state_op_end(c);
    return 0;
}

int64_t container_grace_time(Container *c)
{
    pthread_mutex_lock(&c->lock);
    int64_t v = c->rec.grace_time_ns;
    pthread_mutex_unlock(&c->lock);
    return v;
}

ContainerState container_state(Container *c)
{
    pthread_mutex_lock(&c->lock);
    ContainerState s = c->rec.state;
    pthread_mutex_unlock(&c->lock);
    return s;
}

int garden_find(Garden *g, const char *handle, Container **ret, ApiError *reterr)
{
    Container *c = registry_ref(g, handle);
    if (!c)
        return api_container_not_found(reterr, handle);
    pthread_mutex_lock(&c->lock);
    bool gone = c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE;
    pthread_mutex_unlock(&c->lock);
    if (gone) {
        container_unref(c);
        return api_container_not_found(reterr, handle);
    }
    *ret = c;
    return 0;
}

int container_snapshot(Garden *g, Container *c, ContainerSnapshot *ret)
{
    ContainerSnapshot s = {0};
    int r = depot_container_path(g->depot, c->rec.handle, &s.container_path);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    s.state = c->rec.state;
    r = strmap_copy(&c->rec.properties, &s.properties);
    if (r >= 0) {
        s.events = calloc(c->rec.events.n + 1, sizeof(char *));
        if (!s.events)
            r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < c->rec.events.n; i++)
            if (!(s.events[i] = strdup(c->rec.events.keys[i])))
                r = -ENOMEM;
    }
    pthread_mutex_unlock(&c->lock);
    if (r < 0) {
        container_snapshot_done(&s);
        return r;
    }
    *ret = s;
    return 0;
}

void container_snapshot_done(ContainerSnapshot *s)
{
    strv_free(s->events);
    strmap_clear(&s->properties);
    free(s->container_path);
    *s = (ContainerSnapshot){0};
}

/* For lifecycle.c: insert a new container, the capacity check and the insert in
 * one step (so parallel creates cannot overshoot --max-containers). */
int garden_insert_new(Garden *g, Container *c, ApiError *reterr)
{
    pthread_mutex_lock(&g->lock);
    int r = hashmap_size(g->containers) >= garden_max_containers(g)
                ? -ENOSPC
                : hashmap_put(g->containers, c->rec.handle, c);
    pthread_mutex_unlock(&g->lock);
    if (r == -ENOSPC) /* guardian's message (garden-protocol.md, Create) */
        return api_errorf(reterr, r, 500, GARDEN_ERR_GENERIC, "max containers reached");
    if (r == -EEXIST)
        return api_errorf(reterr, -EEXIST, 409, GARDEN_ERR_GENERIC, "Handle '%s' already in use",
                          c->rec.handle);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to register container");
    return 0;
}

/* Remove c from the registry (dropping the registry's reference). */
void garden_unregister(Garden *g, Container *c)
{
    pthread_mutex_lock(&g->lock);
    Container *removed = hashmap_get(g->containers, c->rec.handle) == c
                             ? hashmap_remove(g->containers, c->rec.handle)
                             : NULL;
    pthread_mutex_unlock(&g->lock);
    container_unref(removed);
}

/* Write c's record (caller holds c->lock). */
int garden_persist(Garden *g, Container *c)
{
    return depot_write_record(g->depot, &c->rec);
}

/* Arm the grace timer of a container that just became active. */
void garden_arm_grace(Garden *g, Container *c)
{
    pthread_mutex_lock(&c->lock);
    grace_timer_init(&c->grace, c->rec.grace_time_ns, clock_monotonic_ns());
    container_schedule_grace(g, c);
    pthread_mutex_unlock(&c->lock);
}
