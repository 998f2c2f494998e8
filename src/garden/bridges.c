/* Bridges whose last container is gone, deleted in the background: each delete
 * waits for an RCU grace period under the rtnl lock, which no create or destroy
 * should wait for. A create that takes a doomed bridge again spares it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloche/log.h"
#include "garden-internal.h"

void *garden_bridge_reaper(void *userdata)
{
    Garden *g = userdata;
    pthread_mutex_lock(&g->net_lock);
    while (!g->net_stopping) {
        if (g->n_doomed == 0) {
            pthread_cond_wait(&g->net_cond, &g->net_lock);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 1;
        int r = pthread_cond_timedwait(&g->net_cond, &g->net_lock, &until);
        if (r != ETIMEDOUT || g->net_stopping)
            continue;
        /* One at a time under the lock (a create that wants this bridge waits),
         * the lock let go in between: each delete waits for an RCU grace period
         * (~17 ms, more under load), and after a mass destroy hundreds were
         * deleted in one go while every create and destroy waited (a destroy
         * timed out after 120 s with 4096 containers). */
        while (g->n_doomed > 0 && !g->net_stopping) {
            char *name = g->doomed[--g->n_doomed];
            int k = netdev_delete(g->netdev, name);
            if (k < 0)
                log_warn_errno(k, "Failed to delete the bridge '%s': %m", name);
            free(name);
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += 1000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            (void)pthread_cond_timedwait(&g->net_cond, &g->net_lock, &until);
        }
    }
    pthread_mutex_unlock(&g->net_lock);
    return NULL;
}

/* Under net_lock. */
void garden_bridge_spare(Garden *g, const char *bridge)
{
    for (size_t i = 0; i < g->n_doomed; i++)
        if (strcmp(g->doomed[i], bridge) == 0) {
            free(g->doomed[i]);
            g->doomed[i] = g->doomed[--g->n_doomed];
            return;
        }
}

void garden_bridge_doom(Garden *g, const char *bridge)
{
    pthread_mutex_lock(&g->net_lock);
    garden_bridge_spare(g, bridge);
    char **grown = realloc(g->doomed, (g->n_doomed + 1) * sizeof(char *));
    if (grown) {
        g->doomed = grown;
        if ((g->doomed[g->n_doomed] = strdup(bridge)))
            g->n_doomed++;
    }
    pthread_cond_signal(&g->net_cond);
    pthread_mutex_unlock(&g->net_lock);
}
