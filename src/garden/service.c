/* A container's service (cloche extension "cloche_service", doc/api.md): its
 * main process, started under the process id "service" and supervised by its
 * monitor (cloche-shim), which applies the restart policy and writes the logs,
 * so both go on while the daemon is down. The daemon starts it, tells it to
 * stop restarting on Stop, and reads its state file for Info and properties. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloche/cleanup.h"
#include "cloche/log.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"
#include "garden-internal.h"

int garden_service_apply_image(ServiceSpec *service, const ImageConfig *ic)
{
    if (!service->path) {
        size_t n = ic->n_entrypoint + ic->n_cmd;
        if (n == 0)
            return 0; /* create refuses a service with nothing to run */
        _cleanup_strv_free_ char **argv = calloc(n + 1, sizeof(char *));
        if (!argv)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            const char *a =
                i < ic->n_entrypoint ? ic->entrypoint[i] : ic->cmd[i - ic->n_entrypoint];
            if (!(argv[i] = strdup(a)))
                return -ENOMEM;
        }
        strv_free(service->args);
        service->path = TAKE_PTR(argv[0]);
        /* argv[1..] become the args: shift them down. */
        memmove(argv, argv + 1, n * sizeof(char *));
        service->n_args = n - 1;
        service->args = n > 1 ? TAKE_PTR(argv) : NULL;
    }
    if (!service->dir && ic->working_dir && *ic->working_dir &&
        !(service->dir = strdup(ic->working_dir)))
        return -ENOMEM;
    if (!service->user && ic->user && *ic->user && !(service->user = strdup(ic->user)))
        return -ENOMEM;
    return 0;
}

int container_service_start(Garden *g, Container *c, ApiError *reterr)
{
    if (!c->service)
        return 0;
    int r = garden_process_forget_finished(g, c, GARDEN_SERVICE_ID);
    if (r > 0)
        return 0; /* it runs (or waits out a back-off) already */
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to remove the service's last run");
    const ServiceSpec *s = c->service;
    ProcessSpec ps = {
        .id = (char *)GARDEN_SERVICE_ID,
        .path = s->path,
        .args = s->args,
        .n_args = s->n_args,
        .env = s->env,
        .n_env = s->n_env,
        .dir = s->dir,
        .user = s->user,
    };
    _cleanup_free_ char *id = NULL;
    r = garden_run_supervised(g, c, &ps, s, &id, reterr);
    if (r < 0)
        return r;
    garden_service_watch(g, c, true);
    log_debug("Container '%s': service started (restart %s)", c->rec.handle,
              service_restart_to_string(s->restart));
    return 0;
}

void garden_service_quit(Garden *g, Container *c)
{
    _cleanup_close_ int dirfd = -EBADF;
    if (!c->service || garden_process_dir_fd(g, c, GARDEN_SERVICE_ID, &dirfd) < 0)
        return;
    int r = proc_control(dirfd, SHIM_FRAME_QUIT, NULL, 0);
    if (r < 0 && r != -ENOENT && r != -ECONNREFUSED)
        log_debug("Container '%s': failed to tell the service's monitor to quit: %s", c->rec.handle,
                  strerror(-r));
}

int container_service_properties(Garden *g, Container *c, StringMap *props)
{
    if (!c->service)
        return 0;
    int r =
        strmap_set(props, "cloche.service.restart", service_restart_to_string(c->service->restart));
    if (r < 0)
        return r;
    _cleanup_close_ int dirfd = -EBADF;
    ProcServiceState st = {.last_status = -1};
    bool have_dir = garden_process_dir_fd(g, c, GARDEN_SERVICE_ID, &dirfd) >= 0;
    bool known = have_dir && proc_read_service_state(dirfd, &st) >= 0;
    if (!known) {
        /* Between the monitor's start and its first state file the service is
         * starting, not over. */
        bool starting = have_dir && garden_process_monitored(dirfd);
        snprintf(st.state, sizeof(st.state), "%s", starting ? "running" : "exited");
    } else if (strcmp(st.state, "exited") != 0 && !garden_process_monitored(dirfd)) {
        /* Its monitor is gone without a last word (killed): it does not run. */
        snprintf(st.state, sizeof(st.state), "exited");
    }
    char num[32];
    r = strmap_set(props, "cloche.service.state", st.state);
    snprintf(num, sizeof(num), "%u", st.restarts);
    if (r >= 0)
        r = strmap_set(props, "cloche.service.restarts", num);
    if (r >= 0 && st.last_status >= 0) {
        snprintf(num, sizeof(num), "%d", st.last_status);
        r = strmap_set(props, "cloche.service.exit-status", num);
    }
    if (r >= 0 && st.started_at > 0) {
        snprintf(num, sizeof(num), "%lld", (long long)st.started_at);
        r = strmap_set(props, "cloche.service.started-at", num);
    }
    return r;
}
