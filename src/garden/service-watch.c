/* Service events: the monitor renames state.tmp to state at every change of
 * its service (running, backoff, restarting, exited), so one inotify instance
 * watching each service's process directory sees every exit and restart as it
 * happens, and turns them into service_exited and service_restarted events.
 * Changes made while the daemon was down are not replayed: the next daemon
 * starts from the state it finds. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/log.h"
#include "cloche/proc.h"
#include "garden-internal.h"

typedef struct Watched {
    int wd;
    char *handle;
    ProcServiceState seen;
} Watched;

struct ServiceWatch {
    int fd, wake;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* items */
    Watched *items;
    size_t n, cap;
};

static bool ended(const ProcServiceState *s)
{
    return strcmp(s->state, "backoff") == 0 || strcmp(s->state, "exited") == 0;
}

static int service_dir_path(Garden *g, const char *handle, char **ret)
{
    _cleanup_free_ char *dir = NULL;
    int r = depot_processes_path(g->depot, handle, &dir);
    if (r < 0)
        return r;
    return asprintf(ret, "%s/" GARDEN_SERVICE_ID, dir) < 0 ? -ENOMEM : 0;
}

static int read_state(Garden *g, const char *handle, ProcServiceState *ret)
{
    _cleanup_free_ char *path = NULL;
    int r = service_dir_path(g, handle, &path);
    if (r < 0)
        return r;
    _cleanup_close_ int dirfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return -errno;
    return proc_read_service_state(dirfd, ret);
}

/* Compare with what was seen last; emit what happened in between. */
static void service_changed(Garden *g, Watched *w)
{
    ProcServiceState now;
    if (read_state(g, w->handle, &now) < 0)
        return;
    ProcServiceState *was = &w->seen;
    bool restarted = now.restarts > was->restarts;
    /* A run ended: seen as ended now, or passed over on the way to a restart. */
    if ((ended(&now) && (!ended(was) || now.restarts != was->restarts)) ||
        (restarted && !ended(was))) {
        bool final = strcmp(now.state, "exited") == 0 && !restarted;
        garden_event_emit(g, "service_exited", w->handle, GARDEN_SERVICE_ID, now.last_status,
                          final ? "exited for good" : "to be restarted");
    }
    if (restarted) {
        char msg[64];
        snprintf(msg, sizeof(msg), "restart %u", now.restarts);
        garden_event_emit(g, "service_restarted", w->handle, GARDEN_SERVICE_ID, -1, msg);
    }
    *was = now;
}

static void *watch_thread(void *userdata)
{
    Garden *g = userdata;
    ServiceWatch *sw = g->service_watch;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        struct pollfd p[2] = {{.fd = sw->fd, .events = POLLIN}, {.fd = sw->wake, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            break;
        ssize_t n = read(sw->fd, buf, sizeof(buf));
        if (n <= 0)
            continue;
        for (char *at = buf; at < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)at;
            at += sizeof(*ev) + ev->len;
            pthread_mutex_lock(&sw->lock);
            for (size_t i = 0; i < sw->n; i++) {
                if (sw->items[i].wd != ev->wd)
                    continue;
                if (ev->mask & IN_IGNORED) { /* the directory is gone */
                    free(sw->items[i].handle);
                    sw->items[i] = sw->items[--sw->n];
                } else if (ev->len && strcmp(ev->name, "state") == 0) {
                    service_changed(g, &sw->items[i]);
                }
                break;
            }
            pthread_mutex_unlock(&sw->lock);
        }
    }
    return NULL;
}

int garden_service_watch_setup(Garden *g)
{
    ServiceWatch *sw = calloc(1, sizeof(*sw));
    if (!sw)
        return -ENOMEM;
    pthread_mutex_init(&sw->lock, NULL);
    sw->fd = inotify_init1(IN_CLOEXEC);
    sw->wake = eventfd(0, EFD_CLOEXEC);
    g->service_watch = sw;
    if (sw->fd < 0 || sw->wake < 0)
        return -errno;
    int r = pthread_create(&sw->thread, NULL, watch_thread, g);
    if (r > 0)
        return -r;
    sw->started = true;
    return 0;
}

void garden_service_watch_free(Garden *g)
{
    ServiceWatch *sw = g->service_watch;
    if (!sw)
        return;
    if (sw->started) {
        uint64_t one = 1;
        ssize_t k = write(sw->wake, &one, sizeof(one));
        (void)k;
        pthread_join(sw->thread, NULL);
    }
    if (sw->fd >= 0)
        close(sw->fd);
    if (sw->wake >= 0)
        close(sw->wake);
    for (size_t i = 0; i < sw->n; i++)
        free(sw->items[i].handle);
    free(sw->items);
    pthread_mutex_destroy(&sw->lock);
    free(sw);
    g->service_watch = NULL;
}

void garden_service_watch(Garden *g, Container *c, bool fresh)
{
    ServiceWatch *sw = g->service_watch;
    _cleanup_free_ char *path = NULL;
    if (!sw || sw->fd < 0 || !c->service || service_dir_path(g, c->rec.handle, &path) < 0)
        return;
    int wd = inotify_add_watch(sw->fd, path, IN_MOVED_TO | IN_ONLYDIR);
    if (wd < 0) {
        log_debug("Container '%s': no service events: %s", c->rec.handle, strerror(errno));
        return;
    }
    /* A service just started was running with no restarts, whatever it has done
     * since; a restored one is taken as found. */
    ProcServiceState seen = {.state = "running", .last_status = -1};
    if (!fresh)
        (void)read_state(g, c->rec.handle, &seen);
    pthread_mutex_lock(&sw->lock);
    size_t i = 0;
    while (i < sw->n && sw->items[i].wd != wd)
        i++;
    if (i == sw->n) {
        char *handle = strdup(c->rec.handle);
        if (handle && sw->n == sw->cap) {
            size_t cap = sw->cap * 2 + 8;
            Watched *items = realloc(sw->items, cap * sizeof(Watched));
            if (items) {
                sw->items = items;
                sw->cap = cap;
            }
        }
        if (!handle || sw->n == sw->cap) {
            free(handle);
            pthread_mutex_unlock(&sw->lock);
            inotify_rm_watch(sw->fd, wd);
            return;
        }
        sw->items[sw->n++] = (Watched){.wd = wd, .handle = handle};
    }
    sw->items[i].seen = seen;
    if (fresh) /* what happened before the watch */
        service_changed(g, &sw->items[i]);
    pthread_mutex_unlock(&sw->lock);
}
