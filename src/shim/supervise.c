/* A service's restart policy (cloche_service): whether an ended run is started
 * again and after what delay, and the state file the daemon reads. */
#include <stdio.h>

#include "shim.h"

static const char *const state_names[] = {
    [SHIM_SERVICE_RUNNING] = "running",
    [SHIM_SERVICE_EXITED] = "exited",
    [SHIM_SERVICE_RESTARTING] = "restarting",
    [SHIM_SERVICE_BACKOFF] = "backoff",
};

const char *shim_service_state_name(ShimServiceState s)
{
    return (unsigned)s < ELEMENTSOF(state_names) ? state_names[s] : "exited";
}

void shim_supervisor_init(ShimSupervisor *sv, const ShimSpec *spec)
{
    *sv = (ShimSupervisor){.state = SHIM_SERVICE_RUNNING,
                           .last_status = -1,
                           .next_delay_ms = spec->backoff_initial_ms};
}

void shim_supervisor_started(ShimSupervisor *sv, uint64_t now_ms, int64_t now_unix)
{
    sv->state = SHIM_SERVICE_RUNNING;
    sv->started_ms = now_ms;
    sv->started_unix = now_unix;
}

bool shim_supervisor_exited(ShimSupervisor *sv, const ShimSpec *spec, int status, uint64_t now_ms,
                            uint64_t *ret_delay_ms)
{
    sv->last_status = status;
    sv->state = SHIM_SERVICE_EXITED;
    if (!spec->supervised || sv->quit)
        return false;
    bool again;
    switch (spec->restart) {
    case SHIM_RESTART_ON_FAILURE:
        again = status != 0;
        break;
    case SHIM_RESTART_ALWAYS:
    case SHIM_RESTART_UNLESS_STOPPED:
        again = true;
        break;
    default:
        again = false;
        break;
    }
    if (!again || (spec->max_restarts && sv->restarts >= spec->max_restarts))
        return false;
    /* A run that lasted long enough was healthy: start the series again. */
    if (now_ms - sv->started_ms >= spec->backoff_reset_ms)
        sv->next_delay_ms = spec->backoff_initial_ms;
    *ret_delay_ms = sv->next_delay_ms;
    uint64_t next = sv->next_delay_ms * 2;
    sv->next_delay_ms = next > spec->backoff_max_ms ? spec->backoff_max_ms : next;
    sv->state = SHIM_SERVICE_BACKOFF;
    return true;
}

int shim_supervisor_write(const ShimSupervisor *sv, int dirfd, pid_t pid)
{
    char text[128];
    int n = snprintf(text, sizeof(text), "%s %u %d %lld %d\n", shim_service_state_name(sv->state),
                     sv->restarts, sv->last_status, (long long)sv->started_unix, (int)pid);
    return shim_write_file_atomic(dirfd, "state.tmp", "state", text, (size_t)n);
}
