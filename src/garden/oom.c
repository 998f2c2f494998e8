/* OOM events: every container's memory cgroup is watched (v1 eventfd on
 * memory.oom_control, v2 inotify on memory.events) from one thread with one epoll
 * set. A wake-up is only a hint: the kernel's oom_kill count is compared with the
 * last one seen, so a kill while the daemon was down shows up at restore, and
 * spurious wake-ups change nothing. A kill adds "oom" to the container's Events. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cloche/fdio.h"
#include "cloche/log.h"
#include "garden-internal.h"

/* epoll data: slot index (high 32 bits) and fd (low), so a stale event for a slot
 * that was freed and reused is recognised and ignored. */
static uint64_t slot_key(size_t slot, int fd)
{
    return (uint64_t)slot << 32 | (uint32_t)fd;
}

/* Under c->lock: record an oom event if the count grew; persist. Returns whether
 * the count grew. */
static bool oom_check_locked(Garden *g, Container *c)
{
    uint64_t count;
    if (!c->cgroup || cgroup_oom_count(c->cgroup, &count) < 0)
        return false;
    if (count <= c->oom_count && !(count > 0 && !strmap_get(&c->rec.events, "oom")))
        return false;
    /* Every new kill is an event; at the first watch, only one not yet recorded. */
    if (count > 0 && (c->oom_count > 0 || !strmap_get(&c->rec.events, "oom"))) {
        char message[64];
        snprintf(message, sizeof(message), "%" PRIu64 " process(es) killed so far", count);
        garden_event_emit(g, "oom", c->rec.handle, NULL, -1, message);
    }
    c->oom_count = count;
    if (count == 0 || strmap_get(&c->rec.events, "oom"))
        return true;
    log_info("Container '%s': out of memory (a process was killed)", c->rec.handle);
    /* A container being created or torn down has no record to keep it in. */
    if (PHASE_MASK(c->phase) & (PHASE_MASK(PHASE_DESTROYING) | PHASE_MASK(PHASE_GONE)))
        return true;
    if (strmap_set(&c->rec.events, "oom", "") == 0) {
        int r = garden_persist(g, c);
        if (r < 0)
            log_warn_errno(r, "Failed to persist the oom event of '%s': %m", c->rec.handle);
    }
    return true;
}

static void *oom_loop(void *userdata)
{
    Garden *g = userdata;
    struct epoll_event events[32];
    for (;;) {
        int n = epoll_wait(g->oom_epoll, events, 32, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        pthread_mutex_lock(&g->oom_lock);
        bool stop = g->oom_stopping;
        for (int i = 0; i < n && !stop; i++) {
            size_t slot = (size_t)(events[i].data.u64 >> 32);
            int fd = (int)(uint32_t)events[i].data.u64;
            if (slot >= g->n_oom_slots || !g->oom_slots[slot] || g->oom_slots[slot]->oom_fd != fd)
                continue;
            Container *c = g->oom_slots[slot];
            (void)cgroup_oom_watch_drain(fd);
            /* v1 signals when the OOM starts, before the kill is counted: look
             * again for a moment. */
            for (int tries = 0; tries < 20; tries++) {
                pthread_mutex_lock(&c->lock);
                bool grew = oom_check_locked(g, c);
                pthread_mutex_unlock(&c->lock);
                if (grew)
                    break;
                usleep(10000);
            }
        }
        pthread_mutex_unlock(&g->oom_lock);
        if (stop)
            break;
    }
    return NULL;
}

int garden_oom_setup(Garden *g)
{
    pthread_mutex_init(&g->oom_lock, NULL);
    g->oom_inited = true;
    g->oom_epoll = epoll_create1(EPOLL_CLOEXEC);
    if (g->oom_epoll < 0)
        return log_error_errno(-errno, "Failed to create the OOM watch: %m");
    g->oom_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (g->oom_wake < 0 || epoll_ctl(g->oom_epoll, EPOLL_CTL_ADD, g->oom_wake, &ev) < 0)
        return log_error_errno(-errno, "Failed to create the OOM watch: %m");
    int r = pthread_create(&g->oom_thread, NULL, oom_loop, g);
    if (r > 0)
        return log_error_errno(-r, "Failed to start the OOM watch: %m");
    g->oom_started = true;
    return 0;
}

void garden_oom_free(Garden *g)
{
    if (!g->oom_inited)
        return;
    if (g->oom_started) {
        pthread_mutex_lock(&g->oom_lock);
        g->oom_stopping = true;
        pthread_mutex_unlock(&g->oom_lock);
        uint64_t one = 1;
        (void)!write(g->oom_wake, &one, sizeof(one));
        pthread_join(g->oom_thread, NULL);
        g->oom_started = false;
    }
    if (g->oom_epoll >= 0)
        close(g->oom_epoll);
    if (g->oom_wake >= 0)
        close(g->oom_wake);
    g->oom_epoll = g->oom_wake = -1;
    free(g->oom_slots);
    g->oom_slots = NULL;
    g->n_oom_slots = 0;
    pthread_mutex_destroy(&g->oom_lock);
    g->oom_inited = false;
}

void garden_oom_watch(Garden *g, Container *c)
{
    if (!g->oom_started || !c->cgroup)
        return;
    int fd;
    int r = cgroup_oom_watch_open(c->cgroup, &fd);
    if (r < 0) {
        log_warn_errno(r, "Container '%s': OOM events cannot be watched: %m", c->rec.handle);
        return;
    }
    fd = fd_move_high(fd);
    pthread_mutex_lock(&g->oom_lock);
    size_t slot;
    for (slot = 0; slot < g->n_oom_slots && g->oom_slots[slot]; slot++)
        ;
    if (slot == g->n_oom_slots) {
        size_t n = g->n_oom_slots ? g->n_oom_slots * 2 : 64;
        Container **grown = realloc(g->oom_slots, n * sizeof(Container *));
        if (!grown) {
            pthread_mutex_unlock(&g->oom_lock);
            close(fd);
            return;
        }
        memset(grown + g->n_oom_slots, 0, (n - g->n_oom_slots) * sizeof(Container *));
        g->oom_slots = grown;
        g->n_oom_slots = n;
    }
    g->oom_slots[slot] = c;
    pthread_mutex_lock(&c->lock);
    c->oom_fd = fd;
    c->oom_slot = slot;
    /* The baseline after the watch exists, so no kill falls between the two;
     * one that happened while the daemon was down is recorded now. */
    (void)oom_check_locked(g, c);
    pthread_mutex_unlock(&c->lock);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = slot_key(slot, fd)};
    if (epoll_ctl(g->oom_epoll, EPOLL_CTL_ADD, fd, &ev) < 0)
        log_warn_errno(-errno, "Container '%s': OOM events cannot be watched: %m", c->rec.handle);
    pthread_mutex_unlock(&g->oom_lock);
}

void garden_oom_unwatch(Garden *g, Container *c)
{
    if (!g->oom_started)
        return;
    pthread_mutex_lock(&g->oom_lock);
    if (c->oom_fd >= 0) {
        (void)epoll_ctl(g->oom_epoll, EPOLL_CTL_DEL, c->oom_fd, NULL);
        close(c->oom_fd);
        if (c->oom_slot < g->n_oom_slots && g->oom_slots[c->oom_slot] == c)
            g->oom_slots[c->oom_slot] = NULL;
        c->oom_fd = -1;
    }
    pthread_mutex_unlock(&g->oom_lock);
}
