/* Processes of a container. The process table is their record: each process has
 * a directory <run>/processes/<container>/<id> (depot.h) that the shim fills
 * (pid, exit, sock), so a restarted daemon finds every process without any state
 * of its own. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/pidfd.h>

#include "cloche/fileio.h"
#include "cloche/log.h"
#include "cloche/proc.h"
#include "cloche/shim-protocol.h"
#include "cloche/wire.h"
#include "cloche/testhook.h"
#include "cloche/uuid.h"
#include "cloche/clock.h"
#include "garden-internal.h"

#define PROCESSES_MAX 4096  /* process directories per container */
#define PROCESSES_PRUNE 512 /* above this many, finished processes are forgotten */
#define DEFAULT_LINGER 60

static int container_dir_fd(Garden *g, Container *c, int *ret)
{
    _cleanup_free_ char *dir = NULL;
    int r = depot_container_path(g->depot, c->rec.handle, &dir);
    if (r < 0)
        return r;
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *ret = fd;
    return 0;
}

/* The container's process table (created if asked, with the run directory's
 * processes/ above it). */
static int processes_dir_fd(Garden *g, Container *c, bool create, int *ret)
{
    _cleanup_free_ char *dir = NULL;
    int r = depot_processes_path(g->depot, c->rec.handle, &dir);
    if (r < 0)
        return r;
    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    int fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *ret = fd;
    return 0;
}

/* Is the shim recorded in dirfd/pid still alive (same pid, same start time)? */
static bool shim_alive(int dirfd, pid_t *ret_shim)
{
    pid_t shim, pid;
    uint64_t start;
    if (proc_read_pid(dirfd, &shim, &start, &pid) < 0)
        return false;
    if (!sandbox_process_alive(shim, start))
        return false;
    if (ret_shim)
        *ret_shim = shim;
    return true;
}

/* Index of key's entry in env[0..n), or n. */
static size_t env_find(char **env, size_t n, const char *entry)
{
    const char *eq = strchr(entry, '=');
    size_t kl = eq ? (size_t)(eq - entry) : strlen(entry);
    for (size_t i = 0; i < n; i++)
        if (env[i] && strncmp(env[i], entry, kl) == 0 && (env[i][kl] == '=' || !env[i][kl]))
            return i;
    return n;
}

static bool env_has(char **env, size_t n, const char *key)
{
    return env_find(env, n, key) < n;
}

/* Add entry, replacing an earlier one of the same key (guardian's merge: the
 * process's env overrides the container's). */
static bool env_put(char **env, size_t *n, const char *entry)
{
    char *copy = strdup(entry);
    if (!copy)
        return false;
    size_t i = env_find(env, *n, entry);
    if (i < *n)
        free(env[i]);
    else
        (*n)++;
    env[i] = copy;
    return true;
}

/* Container env, then process env, then guardian's defaults where missing. */
static char **build_env(const ContainerSpec *cs, const ProcessSpec *ps, const ProcUser *u)
{
    size_t n = 0, cap = cs->n_env + ps->n_env + 4;
    char **env = calloc(cap + 1, sizeof(char *));
    if (!env)
        return NULL;
    bool oom = false;
    for (size_t i = 0; i < cs->n_env && !oom; i++)
        oom = !env_put(env, &n, cs->env[i]);
    for (size_t i = 0; i < ps->n_env && !oom; i++)
        oom = !env_put(env, &n, ps->env[i]);
    if (!oom && !env_has(env, n, "PATH"))
        env[n++] =
            strdup(u->uid == 0 ? "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                               : "PATH=/usr/local/bin:/usr/bin:/bin");
    if (!oom && !env_has(env, n, "USER") &&
        asprintf(&env[n], "USER=%s", u->name[0] ? u->name : "root") >= 0)
        n++;
    if (!oom && !env_has(env, n, "HOME") && asprintf(&env[n], "HOME=%s", u->home) >= 0)
        n++;
    for (size_t i = 0; i < n; i++)
        oom |= !env[i];
    if (oom) {
        for (size_t i = 0; i <= cap; i++)
            free(env[i]);
        free(env);
        return NULL;
    }
    return env;
}

/* Host cgroup directories of the container (every hierarchy, no duplicates). */
char **garden_cgroup_dirs(Garden *g, const char *handle)
{
    static const CgroupController ctrls[] = {CGROUP_CORE,
                                             CGROUP_CONTROLLER_MEMORY,
                                             CGROUP_CONTROLLER_CPU,
                                             CGROUP_CONTROLLER_CPUACCT,
                                             CGROUP_CONTROLLER_PIDS,
                                             CGROUP_CONTROLLER_DEVICES};
    char **dirs = calloc(ELEMENTSOF(ctrls) + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; dirs && i < ELEMENTSOF(ctrls); i++) {
        char path[4096];
        if (cgroup_system_path(g->cgroups, ctrls[i], handle, path, sizeof(path)) < 0)
            continue;
        /* A container made before the device list had one has no devices group. */
        if (ctrls[i] == CGROUP_CONTROLLER_DEVICES && access(path, F_OK) < 0)
            continue;
        /* On pure v2, a container with peas' groups keeps its processes in a leaf. */
        if (cgroup_system_layout(g->cgroups) == CGROUP_LAYOUT_V2 && !strchr(handle, '/')) {
            size_t len = strlen(path);
            snprintf(path + len, sizeof(path) - len, "/" CGROUP_LEAF_NAME);
            if (access(path, F_OK) < 0)
                path[len] = '\0';
        }
        bool dup = false;
        for (size_t k = 0; k < n; k++)
            dup = dup || strcmp(dirs[k], path) == 0;
        if (!dup)
            dirs[n++] = strdup(path);
    }
    return dirs;
}

/* The spec's rlimits as setrlimit() calls (at most _RLIMIT_KIND_MAX). */
static size_t process_rlimits(const ResourceLimits *l, ProcRlimit ret[static _RLIMIT_KIND_MAX])
{
    static const int resources[_RLIMIT_KIND_MAX] = {
        RLIMIT_AS,    RLIMIT_CORE,    RLIMIT_CPU,      RLIMIT_DATA,       RLIMIT_FSIZE,
        RLIMIT_LOCKS, RLIMIT_MEMLOCK, RLIMIT_MSGQUEUE, RLIMIT_NICE,       RLIMIT_NOFILE,
        RLIMIT_NPROC, RLIMIT_RSS,     RLIMIT_RTPRIO,   RLIMIT_SIGPENDING, RLIMIT_STACK};
    size_t n = 0;
    for (int i = 0; i < _RLIMIT_KIND_MAX; i++)
        if (l->set[i])
            ret[n++] = (ProcRlimit){.resource = resources[i], .value = l->value[i]};
    return n;
}

static size_t count_entries(int dirfd)
{
    /* Every entry is a directory: a file system that counts them in the link
     * count (ext4, xfs, tmpfs) answers without a walk of up to 4,096 entries. */
    struct stat st;
    if (fstat(dirfd, &st) == 0 && st.st_nlink >= 2)
        return (size_t)st.st_nlink - 2;
    _cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(TAKE_FD(fd)) : NULL;
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void prune_finished(Garden *g, Container *c, int pdir);

static int run_claimed(Garden *g, Container *c, ProcessSpec *spec, const ServiceSpec *service,
                       char **ret_id, ApiError *reterr);

int container_run(Garden *g, Container *c, ProcessSpec *spec, char **ret_id, ApiError *reterr)
{
    return garden_run_supervised(g, c, spec, NULL, ret_id, reterr);
}

int garden_run_supervised(Garden *g, Container *c, ProcessSpec *spec, const ServiceSpec *service,
                          char **ret_id, ApiError *reterr)
{
    /* Held while the process starts: a destroy waits for it, then ends it. */
    int r = state_op_begin(c, PHASES_RUNNING, reterr);
    if (r < 0)
        return r;
    r = run_claimed(g, c, spec, service, ret_id, reterr);
    state_op_end(c);
    return r;
}

/* <container>/logs/<id>.log (malloc'd), its directory created. */
static int log_file_path(Garden *g, Container *c, const char *id, char **ret)
{
    _cleanup_free_ char *dir = NULL;
    int r = depot_container_path(g->depot, c->rec.handle, &dir);
    if (r < 0)
        return r;
    if (asprintf(ret, "%s/" GARDEN_LOGS_DIR "/%s.log", dir, id) < 0)
        return -ENOMEM;
    char *slash = strrchr(*ret, '/');
    *slash = '\0';
    r = mkdir(*ret, 0700) < 0 && errno != EEXIST ? -errno : 0;
    *slash = '/';
    /* There from the start, so a reader tells a process that logs from one that
     * does not before the first line. */
    int fd = r < 0 ? -1 : open(*ret, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (r >= 0 && fd < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    if (r < 0) {
        free(*ret);
        *ret = NULL;
    }
    return r;
}

/* Start the process of dirpath with its spec: through an idle shim when one is
 * ready (*idle_fd first: the one whose directory this is; taken), the spec in
 * its message when small enough, else through a shim started for it (the spec
 * written to the directory). *ret_pooled says which. */
static int start_process(Garden *g, int dirfd, const char *dirpath, const ProcLaunch *launch,
                         int *idle_fd, pid_t *ret_pid, bool *ret_pooled, Failure *reterr)
{
    _cleanup_free_ char *spec = NULL;
    size_t len;
    *ret_pooled = false;
    int r = proc_format_spec(launch, &spec, &len);
    if (r < 0)
        return failure_errno(reterr, r, "Failed to write the process spec");
    testhook_point("run.spec");
    bool written = false;
    int fd = TAKE_FD(*idle_fd);
    while (fd >= 0 || garden_shim_pool_take(g, &fd) >= 0) {
        if (len > SHIM_IDLE_SPEC_MAX && !written) {
            if ((r = atomic_write_volatile_at(dirfd, "spec", spec, len, 0600)) < 0) {
                close(fd);
                return failure_errno(reterr, r, "Failed to write the process spec");
            }
            written = true;
        }
        failure_clear(reterr);
        r = proc_idle_take(fd, dirpath, written ? NULL : spec, len, ret_pid, reterr);
        if (r >= 0) {
            *ret_pooled = true;
            return 0;
        }
        /* Killed while idle (before the directory reached it, or before it wrote
         * anything there): nothing started, so another shim may. */
        if (r != -EPIPE && !(r == -ECONNRESET && faccessat(dirfd, "pid", F_OK, 0) < 0))
            return r;
        log_debug("An idle shim was gone: %s", reterr->message);
        fd = -1; /* the next one binds its sockets in the directory, over any stale ones */
    }
    failure_clear(reterr);
    if (!written && (r = atomic_write_volatile_at(dirfd, "spec", spec, len, 0600)) < 0)
        return failure_errno(reterr, r, "Failed to write the process spec");
    return proc_start(g->cfg.shim_path, dirpath, ret_pid, reterr);
}

/* <run>/processes/<container>/<id>, new: *ret_pdir is the table, *ret_dirfd the new
 * directory, *ret_dirpath its path, *ret_idle_fd the idle shim whose prepared
 * directory it is (or just an idle shim, or -1). A taken id is a 409; a full
 * container a 500. */
static int make_process_dir(Garden *g, Container *c, const char *id, int *ret_pdir,
                            char **ret_dirpath, int *ret_dirfd, int *ret_idle_fd, ApiError *reterr)
{
    _cleanup_close_ int pdir = -EBADF;
    int r = processes_dir_fd(g, c, true, &pdir);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to prepare the process directory");
    if (count_entries(pdir) >= PROCESSES_PRUNE)
        prune_finished(g, c, pdir);
    if (count_entries(pdir) >= PROCESSES_MAX)
        return api_errorf(reterr, -ENOSPC, 500, GARDEN_ERR_GENERIC,
                          "Container '%s' already has %d processes", c->rec.handle, PROCESSES_MAX);
    _cleanup_close_ int idle = -EBADF;
    r = garden_shim_pool_take_into(g, pdir, id, &idle);
    if (r == 0 && mkdirat(pdir, id, 0700) < 0)
        r = -errno;
    if (r == -EEXIST)
        return api_errorf(reterr, -EEXIST, 409, GARDEN_ERR_GENERIC,
                          "process ID '%s' already in use", id);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to create the process directory");
    testhook_point("run.directory");
    _cleanup_free_ char *table = NULL, *dirpath = NULL;
    r = depot_processes_path(g->depot, c->rec.handle, &table);
    if (r >= 0 && asprintf(&dirpath, "%s/%s", table, id) < 0) {
        dirpath = NULL;
        r = -ENOMEM;
    }
    if (r < 0) {
        (void)rm_rf_at(pdir, id);
        return api_internal_error(reterr, r, "Failed to prepare the process");
    }
    int dirfd = openat(pdir, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
        r = -errno;
        (void)rm_rf_at(pdir, id);
        return api_internal_error(reterr, r, "Failed to prepare the process");
    }
    *ret_pdir = TAKE_FD(pdir);
    *ret_dirpath = TAKE_PTR(dirpath);
    *ret_dirfd = dirfd;
    *ret_idle_fd = TAKE_FD(idle);
    return 0;
}

static ProcRestart service_restart(const ServiceSpec *service)
{
    return (ProcRestart){.policy = service_restart_to_string(service->restart),
                         .max_restarts = service->max_restarts,
                         .backoff_initial_ms = service->backoff_initial_ms,
                         .backoff_max_ms = service->backoff_max_ms,
                         .backoff_reset_ms = service->backoff_reset_ms};
}

static int run_claimed(Garden *g, Container *c, ProcessSpec *spec, const ServiceSpec *service,
                       char **ret_id, ApiError *reterr)
{
    if (!g->cfg.shim_path || !c->cgroup)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_SERVICE_UNAVAILABLE,
                          "This daemon cannot run processes");
    if (spec->n_bind_mounts)
        return api_errorf(reterr, -EOPNOTSUPP, 501, GARDEN_ERR_GENERIC,
                          "Processes with bind mounts are not supported by cloche");
    bool is_pea = spec->image.uri && *spec->image.uri;
    pthread_mutex_lock(&c->lock);
    pid_t init_pid = c->rec.init_pid;
    uint64_t init_start = c->rec.init_start_time;
    pthread_mutex_unlock(&c->lock);

    _cleanup_free_ char *id = NULL;
    if (spec->id && *spec->id)
        id = strdup(spec->id);
    else if (uuid_v4_string(&id) < 0)
        id = NULL;
    if (!id)
        return api_internal_error(reterr, -ENOMEM, "Failed to name the process");

    int64_t t0 = clock_monotonic_ns();
    ProcUser user;
    Failure failure = {0};
    int r = 0;
    if (!is_pea && (r = proc_resolve_user(init_pid, spec->user, &user, &failure)) < 0)
        return garden_failure(reterr, &failure, r);

    /* An idle shim taken with its directory: closed on every failure below, it
     * exits. */
    _cleanup_close_ int pdir = -EBADF, dirfd = -EBADF, idle = -EBADF;
    _cleanup_free_ char *dirpath = NULL;
    r = make_process_dir(g, c, id, &pdir, &dirpath, &dirfd, &idle, reterr);
    if (r < 0)
        return r;
    GardenPea pea = {0};
    r = garden_pea_prepare(g, c, spec, id, &pea, reterr);
    if (r >= 0 && is_pea)
        r = garden_pea_resolve_user(&pea, spec->user, &user, reterr);
    if (r < 0) {
        garden_pea_abort(&pea);
        (void)rm_rf_at(pdir, id);
        return r;
    }
    /* A pea's environment starts from its image's, not the container's. */
    ContainerSpec pea_base = {.env = pea.image_env};
    while (pea.image_env && pea.image_env[pea_base.n_env])
        pea_base.n_env++;
    _cleanup_strv_free_ char **env = build_env(is_pea ? &pea_base : &c->rec.spec, spec, &user);
    _cleanup_strv_free_ char **cgroups =
        garden_cgroup_dirs(g, pea.cgroup ? cgroup_name(pea.cgroup) : c->rec.handle);
    if (!env || !cgroups) {
        garden_pea_abort(&pea);
        (void)rm_rf_at(pdir, id);
        return api_internal_error(reterr, -ENOMEM, "Failed to prepare the process");
    }
    _cleanup_free_ char *log_path = NULL;
    if ((service || spec->cloche_log) && (r = log_file_path(g, c, id, &log_path)) < 0) {
        garden_pea_abort(&pea);
        (void)rm_rf_at(pdir, id);
        return api_internal_error(reterr, r, "Failed to prepare the log directory");
    }
    ProcRlimit rlimits[_RLIMIT_KIND_MAX];
    size_t n_rlimits = process_rlimits(&spec->rlimits, rlimits);
    ProcRestart restart = service ? service_restart(service) : (ProcRestart){0};
    /* Created (owned by the user) if missing, as guardian does; a pea starts at
     * its root. */
    const char *dir = spec->dir && *spec->dir ? spec->dir : is_pea ? "/" : user.home;
    ProcLaunch launch = {
        .path = spec->path ? spec->path : "",
        .args = spec->args,
        .env = env,
        .dir = dir,
        .user = &user,
        .rlimits = rlimits,
        .n_rlimits = n_rlimits,
        .tty = spec->tty.present,
        .columns = spec->tty.columns,
        .rows = spec->tty.rows,
        .init_pid = init_pid,
        .init_start = init_start,
        .cgroups = cgroups,
        .linger = DEFAULT_LINGER,
        .confine = garden_confine_plan(g, c->rec.spec.privileged),
        .seccomp = garden_seccomp_path(g, c->rec.spec.privileged),
        .pea_lowers = pea.lowers,
        .pea_root = pea.root,
        .pea_own_cgroups = pea.cgroup != NULL,
        .restart = service ? &restart : NULL,
        .log_path = log_path,
        .log_max_size = service ? service->log_max_size : 0,
        .log_max_files = service ? service->log_max_files : 0,
    };
    pid_t pid;
    bool pooled;
    int64_t t1 = clock_monotonic_ns();
    r = start_process(g, dirfd, dirpath, &launch, &idle, &pid, &pooled, &failure);
    garden_shim_pool_refill(g);
    log_debug("Process '%s': prepared in %.2f ms, %s shim started it in %.2f ms", id,
              (double)(t1 - t0) / 1e6, pooled ? "an idle" : "a new",
              (double)(clock_monotonic_ns() - t1) / 1e6);
    if (r < 0) {
        /* Nothing runs: the id is free again, and its (empty) log file goes
         * too. A service's log holds its earlier runs: it stays. */
        garden_pea_abort(&pea);
        (void)rm_rf_at(pdir, id);
        if (log_path && !service)
            (void)unlink(log_path);
        return garden_failure(reterr, &failure, r);
    }
    garden_pea_done(&pea);
    testhook_point("run.started");
    log_debug("Container '%s': process '%s' started as pid %d", c->rec.handle, id, pid);
    *ret_id = TAKE_PTR(id);
    return 0;
}

int container_process_attach(Garden *g, Container *c, const char *id, int *ret_fd, int *ret_exit,
                             int *ret_dirfd, ApiError *reterr)
{
    ApiError ignore;
    if (spec_validate_handle(id, &ignore) < 0)
        return api_process_not_found(reterr, id);
    _cleanup_close_ int pdir = -EBADF;
    if (processes_dir_fd(g, c, false, &pdir) < 0)
        return api_process_not_found(reterr, id);
    _cleanup_close_ int dirfd = openat(pdir, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0)
        return api_process_not_found(reterr, id);
    int fd = -1;
    int r = proc_connect(dirfd, &fd);
    if (r >= 0) {
        *ret_fd = fd;
        *ret_exit = -1;
        if (ret_dirfd)
            *ret_dirfd = TAKE_FD(dirfd);
        return 0;
    }
    int status;
    r = proc_read_exit(dirfd, &status);
    if (r < 0) {
        /* A destroy that killed the monitor before it wrote the status. */
        pthread_mutex_lock(&c->lock);
        bool destroyed = c->phase == PHASE_DESTROYING || c->phase == PHASE_GONE;
        pthread_mutex_unlock(&c->lock);
        if (destroyed)
            return api_container_not_found(reterr, c->rec.handle);
        return api_errorf(reterr, r, 500, GARDEN_ERR_GENERIC,
                          "Process '%s' has neither a monitor nor an exit status", id);
    }
    *ret_fd = -1;
    *ret_exit = status;
    if (ret_dirfd)
        *ret_dirfd = TAKE_FD(dirfd);
    return 0;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Call fn for each process directory of the container (an O_PATH fd and its id). */
static void for_each_process(Garden *g, Container *c,
                             void (*fn)(int dirfd, const char *id, void *userdata), void *userdata)
{
    _cleanup_close_ int pdir = -EBADF;
    if (processes_dir_fd(g, c, false, &pdir) < 0)
        return;
    _cleanup_close_ int fd = openat(pdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(TAKE_FD(fd)) : NULL;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_close_ int pfd =
            openat(pdir, de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (pfd >= 0)
            fn(pfd, de->d_name, userdata);
    }
    if (d)
        closedir(d);
}

typedef struct IdList {
    char **ids;
    size_t n;
    bool failed;
} IdList;

static void collect_running(int dirfd, const char *id, void *userdata)
{
    IdList *l = userdata;
    int status;
    if (l->failed || proc_read_exit(dirfd, &status) == 0 || !shim_alive(dirfd, NULL))
        return;
    char **n = realloc(l->ids, (l->n + 2) * sizeof(char *));
    if (!n || !(n[l->n] = strdup(id))) {
        if (n)
            l->ids = n;
        l->failed = true;
        return;
    }
    l->ids = n;
    l->n++;
    l->ids[l->n] = NULL;
}

int container_process_ids(Garden *g, Container *c, char ***ret)
{
    IdList l = {.ids = calloc(1, sizeof(char *))};
    if (!l.ids)
        return -ENOMEM;
    for_each_process(g, c, collect_running, &l);
    qsort(l.ids, l.n, sizeof(char *), compare_strings);
    *ret = l.ids;
    return 0;
}

static void kill_shim(int dirfd, const char *id, void *userdata)
{
    pid_t shim;
    if (!shim_alive(dirfd, &shim))
        return;
    int pidfd = pidfd_open(shim, 0);
    if (pidfd < 0)
        return;
    /* Re-checked with the pid pinned by the pidfd: still that shim. */
    if (shim_alive(dirfd, NULL))
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
    close(pidfd);
}

/* Kill every shim of the container (destroy). */
void garden_kill_shims(Garden *g, Container *c)
{
    for_each_process(g, c, kill_shim, NULL);
}

/* A shim still alive that has not recorded its process's exit yet. */
static void count_unrecorded(int dirfd, const char *id, void *userdata)
{
    int status;
    if (proc_read_exit(dirfd, &status) < 0 && shim_alive(dirfd, NULL))
        (*(unsigned *)userdata)++;
}

void garden_end_shims(Garden *g, Container *c, int timeout_ms)
{
    /* Stop: the processes are gone; their shims record the exit statuses (so an
     * attach still gets them), then end. */
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        unsigned left = 0;
        for_each_process(g, c, count_unrecorded, &left);
        if (left == 0)
            break;
        usleep(10000);
    }
    for_each_process(g, c, kill_shim, NULL);
}

typedef struct Prune {
    int pdir;
    int logs; /* <container>/logs, or -1 */
    int peas; /* <container>/peas, or -1 */
} Prune;

/* id.log, id.log.1, ... (the rotation leaves no gaps). */
static void remove_logs(int logs, const char *id)
{
    char name[SPEC_HANDLE_MAX + 16];
    snprintf(name, sizeof(name), "%s.log", id);
    if (unlinkat(logs, name, 0) < 0 && errno == ENOENT)
        return;
    for (unsigned i = 1; i <= SERVICE_LOG_FILES_MAX; i++) {
        snprintf(name, sizeof(name), "%s.log.%u", id, i);
        if (unlinkat(logs, name, 0) < 0)
            break;
    }
}

static void remove_if_finished(int dirfd, const char *id, void *userdata)
{
    Prune *p = userdata;
    int status;
    /* Finished and no monitor left to serve a late attach: its status has been
     * delivered or has waited out the shim's linger time. Its log files (a
     * cloche_log process) go with it, so they stay bounded too. */
    if (proc_read_exit(dirfd, &status) == 0 && !shim_alive(dirfd, NULL)) {
        (void)rm_rf_at(p->pdir, id);
        if (p->logs >= 0 && strcmp(id, GARDEN_SERVICE_ID) != 0)
            remove_logs(p->logs, id);
        /* A pea's layer its shim could not remove (killed before the end). */
        if (p->peas >= 0)
            (void)rm_rf_at(p->peas, id);
    }
}

/* Forget finished processes, so a long-lived container running many short ones
 * never reaches PROCESSES_MAX. */
static void prune_finished(Garden *g, Container *c, int pdir)
{
    _cleanup_close_ int cdir = -EBADF;
    Prune p = {.pdir = pdir, .logs = -1, .peas = -1};
    if (container_dir_fd(g, c, &cdir) >= 0) {
        p.logs = openat(cdir, GARDEN_LOGS_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        p.peas = openat(cdir, GARDEN_PEAS_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    for_each_process(g, c, remove_if_finished, &p);
    if (p.logs >= 0)
        close(p.logs);
    if (p.peas >= 0)
        close(p.peas);
}

int garden_process_dir_fd(Garden *g, Container *c, const char *id, int *ret)
{
    _cleanup_close_ int pdir = -EBADF;
    int r = processes_dir_fd(g, c, false, &pdir);
    if (r < 0)
        return r;
    int fd = openat(pdir, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *ret = fd;
    return 0;
}

int garden_process_forget_finished(Garden *g, Container *c, const char *id)
{
    _cleanup_close_ int pdir = -EBADF;
    if (processes_dir_fd(g, c, false, &pdir) < 0)
        return 0;
    _cleanup_close_ int dirfd = openat(pdir, id, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0)
        return 0;
    int status;
    if (proc_read_exit(dirfd, &status) < 0 && shim_alive(dirfd, NULL))
        return 1;
    /* Its monitor may still linger for a late attach: end it first. */
    kill_shim(dirfd, id, NULL);
    int r = rm_rf_at(pdir, id);
    return r < 0 ? r : 0;
}

bool garden_process_monitored(int dirfd)
{
    return shim_alive(dirfd, NULL);
}
