/* What StreamIn and StreamOut need from the model: the container's init, whose
 * namespaces cloche-tar enters, and where cloche-tar is. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cloche/proc-tar.h"
#include "garden-internal.h"

struct ContainerFilesTarget {
    const char *tar_path; /* borrowed from the configuration */
    pid_t init_pid;
    uint64_t init_start;
    char **cgroups; /* the container's cgroup directories (owned, NULL-terminated):
                       cloche-tar joins them, so its memory is the container's */
    ProcUser user;  /* the requesting user, looked up in the container */
    /* Confinement: "<hex caps> <nnp>" and the seccomp filter file (NULL: none). */
    char confine[32];
    const char *seccomp_path; /* borrowed from the daemon */
};

int container_files_target(Garden *g, Container *c, const char *user, ContainerFilesTarget **ret,
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
    ContainerFilesTarget *t = malloc(sizeof(*t));
    if (!t) {
        strv_free(cgroups);
        return api_internal_error(reterr, -ENOMEM, "Failed to prepare the file stream");
    }
    *t = (ContainerFilesTarget){.tar_path = g->cfg.tar_path,
                                .init_pid = init_pid,
                                .init_start = init_start,
                                .cgroups = cgroups,
                                .user = u,
                                .seccomp_path = garden_seccomp_path(g, c->rec.spec.privileged)};
    const ConfinePlan *plan = garden_confine_plan(g, c->rec.spec.privileged);
    snprintf(t->confine, sizeof(t->confine), "%llx %d", (unsigned long long)plan->caps,
             plan->no_new_privs ? 1 : 0);
    *ret = t;
    return 0;
}

void container_files_target_free(ContainerFilesTarget *t)
{
    if (!t)
        return;
    strv_free(t->cgroups);
    free(t);
}

int container_files_start(const ContainerFilesTarget *t, const char *mode, const char *path,
                          ContainerFiles *ret)
{
    ProcTarLaunch l = {
        .tar_path = t->tar_path,
        .mode = mode,
        .path = path,
        .init_pid = t->init_pid,
        .init_start = t->init_start,
        .cgroups = t->cgroups,
        .user = &t->user,
        .confine = t->confine,
        .seccomp_path = t->seccomp_path,
    };
    *ret = (ContainerFiles){.pid = -1, .data = -1, .messages = -1};
    return proc_tar_start(&l, &ret->pid, &ret->data, &ret->messages);
}

void container_files_kill(ContainerFiles *f)
{
    proc_tar_kill(f->pid);
}

int container_files_wait(ContainerFiles *f, bool kill_it)
{
    int status = proc_tar_wait(f->pid, kill_it);
    f->pid = -1;
    return status;
}
