/* The containers' confinement (doc/security.md): the seccomp filter compiled
 * once per daemon start and saved for cloche-shim and cloche-tar, the device
 * programs, and the capability plan of each kind of container. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "cloche/log.h"
#include "cloche/clock.h"
#include "garden-internal.h"

#define SECCOMP_FILE "seccomp.bpf"

int garden_security_setup(Garden *g)
{
    int64_t t0 = clock_monotonic_ns();
    int r = security_profile_build(&g->security);
    if (r < 0)
        return log_error_errno(r, "Failed to compile the seccomp filter: %m");
    int64_t t1 = clock_monotonic_ns();
    _cleanup_close_ int dirfd = open(g->depot_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return log_error_errno(-errno, "Failed to open the depot %s: %m", g->depot_path);
    r = security_profile_save(&g->security, dirfd, SECCOMP_FILE);
    if (r < 0)
        return log_error_errno(r, "Failed to write the seccomp filter: %m");
    if (asprintf(&g->seccomp_path, "%s/" SECCOMP_FILE, g->depot_path) < 0) {
        g->seccomp_path = NULL;
        return log_error_errno(-ENOMEM, "Failed to prepare the seccomp filter: %m");
    }
    r = cgroup_devices_setup(g->cgroups);
    if (r < 0)
        return log_error_errno(r, "Failed to load the device allow-list program: %m");
    g->confine[0] = (ConfinePlan){.caps = CONFINE_CAPS_UNPRIVILEGED,
                                  .no_new_privs = g->cfg.no_new_privileges,
                                  .filter = &g->security.filter};
    g->confine[1] =
        (ConfinePlan){.caps = CONFINE_CAPS_PRIVILEGED, .no_new_privs = g->cfg.no_new_privileges};
    log_info("security: seccomp filter of %u instructions (%s, libseccomp's: %u) compiled in "
             "%.2f ms%s",
             g->security.filter.len,
             g->security.compact ? "as ranges, deciding alike" : "libseccomp's",
             g->security.reference_len, (double)(t1 - t0) / 1e6,
             g->cfg.no_new_privileges ? ", no_new_privs for every process" : "");
    return 0;
}

void garden_security_free(Garden *g)
{
    security_profile_clear(&g->security);
    free(g->seccomp_path);
    g->seccomp_path = NULL;
}

const ConfinePlan *garden_confine_plan(const Garden *g, bool privileged)
{
    return &g->confine[privileged ? 1 : 0];
}

const char *garden_seccomp_path(const Garden *g, bool privileged)
{
    return privileged ? NULL : g->seccomp_path;
}
