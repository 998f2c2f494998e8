/* What StreamIn and StreamOut need from the model: the container's init, whose
 * namespaces cloche-tar enters, and where cloche-tar is. */
#include <pthread.h>
#include <stdio.h>

#include "garden-internal.h"

int container_files_target(Garden *g, Container *c, const char *user, ContainerFilesTarget *ret,
                           ApiError *reterr)
{
    if (!g->cfg.tar_path)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_SERVICE_UNAVAILABLE,
                          "This daemon cannot stream files");
    /* A stopped container keeps its init, so its files can still be streamed.
     * The stream itself runs after this returns: cloche-tar joins the container's
     * cgroups, so a destroy meanwhile ends it with the container. */
    int r = state_op_begin(c, PHASES_RUNNING, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    pid_t init_pid = c->rec.init_pid;
    uint64_t init_start = c->rec.init_start_time;
    pthread_mutex_unlock(&c->lock);
    ProcUser u;
    Failure failure = {0};
    r = init_pid > 0 ? garden_failure(reterr, &failure,
                                      proc_resolve_user(init_pid, user ? user : "", &u, &failure))
                     : api_errorf(reterr, -ESRCH, 409, GARDEN_ERR_GENERIC,
                                  "Container '%s' is not running", c->rec.handle);
    char **cgroups = r >= 0 ? garden_cgroup_dirs(g, c->rec.handle) : NULL;
    state_op_end(c);
    if (r < 0)
        return r;
    if (!cgroups)
        return api_internal_error(reterr, -ENOMEM, "Failed to prepare the file stream");
    *ret = (ContainerFilesTarget){.tar_path = g->cfg.tar_path,
                                  .init_pid = init_pid,
                                  .init_start = init_start,
                                  .cgroups = cgroups,
                                  .user = u,
                                  .seccomp_path = garden_seccomp_path(g, c->rec.spec.privileged)};
    const ConfinePlan *plan = garden_confine_plan(g, c->rec.spec.privileged);
    snprintf(ret->confine, sizeof(ret->confine), "%llx %d", (unsigned long long)plan->caps,
             plan->no_new_privs ? 1 : 0);
    return 0;
}

void container_files_target_done(ContainerFilesTarget *t)
{
    strv_free(t->cgroups);
    t->cgroups = NULL;
}
