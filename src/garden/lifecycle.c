/* The kernel side of a container's life: create (root file system, cgroups,
 * namespaces), stop, teardown, and re-attaching after a daemon restart. The order
 * of create matters for rollback: every step is undone by garden_kernel_teardown()
 * plus the depot removal, whatever step failed. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sys/pidfd.h>

#include "cloche/fdio.h"
#include "cloche/fileio.h"
#include "cloche/log.h"
#include "cloche/wire.h"
#include "cloche/testhook.h"
#include "cloche/uuid.h"
#include "cloche/clock.h"
#include "cloche/procfs.h"
#include "garden-internal.h"

#define DESTROY_TIMEOUT_MS 10000

int garden_kernel_setup(Garden *g)
{
    CgroupMounts mounts;
    int r = cgroup_detect("/proc/self/mountinfo", NULL, &mounts);
    if (r < 0)
        return log_error_errno(r, "Failed to detect the cgroup hierarchies: %m");
    const char *missing = NULL;
    if (g->cfg.cgroup_delegated) {
        char *parent = NULL;
        r = cgroup_delegate_self(&mounts, "daemon", g->cgroup_parent, &parent, &missing);
        if (r == -EOPNOTSUPP) {
            /* v1 and hybrid hosts: systemd delegates no v2 controllers there. */
            log_info("cgroups: not pure v2, so --cgroup-delegated does not apply; the parent "
                     "'%s' is made at each hierarchy's root",
                     g->cgroup_parent);
        } else if (r < 0) {
            cgroup_mounts_clear(&mounts);
            if (r == -ENODEV)
                return log_error_errno(r,
                                       "The cgroup controller '%s' was not delegated to cloche; "
                                       "it needs memory, cpu and pids",
                                       missing ? missing : "?");
            return log_error_errno(r, r == -EOPNOTSUPP ? "--cgroup-delegated needs pure cgroup v2"
                                      : r == -EINVAL
                                          ? "--cgroup-delegated: the daemon runs in the "
                                            "root group, nothing was delegated to it"
                                          : "Failed to take over the delegated cgroup: %m");
        }
        if (parent) {
            log_info("cgroups: delegated group, the daemon moved to its leaf 'daemon'");
            free(g->cgroup_parent);
            g->cgroup_parent = parent;
            g->cfg.cgroup_parent = parent;
        }
    }
    r = cgroup_system_setup(&mounts, g->cgroup_parent, &g->cgroups, &missing);
    CgroupLayout layout = mounts.layout;
    cgroup_mounts_clear(&mounts);
    if (r == -ENODEV)
        return log_error_errno(r,
                               "The cgroup controller '%s' is not available for '%s'; cloche "
                               "needs memory, cpu, cpuacct and pids",
                               missing ? missing : "?", g->cgroup_parent);
    if (r < 0)
        return log_error_errno(r, "Failed to set up the cgroup parent '%s': %m", g->cgroup_parent);
    log_info("cgroups: %s layout, parent '%s'", cgroup_layout_to_string(layout), g->cgroup_parent);

    uint32_t base = g->cfg.uid_pool_base ? g->cfg.uid_pool_base : 0x10000000u;
    uint32_t size = g->cfg.uid_range_size ? g->cfg.uid_range_size : SANDBOX_ID_COUNT;
    uint64_t fit = ((uint64_t)UINT32_MAX - base) / size;
    uint32_t count =
        g->cfg.uid_pool_count ? g->cfg.uid_pool_count : (uint32_t)(fit < 65535 ? fit : 65535);
    r = idpool_new(base, count, size, &g->ids);
    if (r < 0)
        return log_error_errno(r, "Invalid id pool %u+%u*%u", base, count, size);
    if (g->cfg.uid_map_shared)
        log_info("ids: shared map (container root is host id %u, other ids are the host's)",
                 SANDBOX_SHARED_ROOT);
    else
        log_info("ids: %u ranges of %u ids from %u", count, size, base);
    garden_rootfs_check_default(g);
    r = sandbox_tun_node(depot_path(g->depot), &g->tun_node);
    if (r < 0)
        log_warn_errno(r,
                       "No shared /dev/net/tun node in %s (%m): each container gets one of its own",
                       depot_path(g->depot));
    r = sandbox_load_executable(g->cfg.init_path, &g->init_fd);
    if (r < 0)
        return log_error_errno(r, "Failed to load cloche-init from %s: %m", g->cfg.init_path);
    r = garden_security_setup(g);
    if (r < 0)
        return r;
    r = garden_oom_setup(g);
    if (r < 0)
        return r;
    return garden_net_setup(g);
}

void garden_kernel_free(Garden *g)
{
    garden_oom_free(g);
    garden_net_free(g);
    garden_security_free(g);
    if (g->cgroups)
        g->cgroups = cgroup_system_free(g->cgroups);
    idpool_free(g->ids);
    g->ids = NULL;
    if (g->init_fd >= 0)
        close(g->init_fd);
    g->init_fd = -1;
    free(g->tun_node);
    g->tun_node = NULL;
}

void container_free_kernel(Container *c)
{
    if (c->cgroup)
        c->cgroup = cgroup_free(c->cgroup);
    if (c->init_pidfd >= 0)
        close(c->init_pidfd);
    c->init_pidfd = -1;
}

static int pidfd_open_pid(pid_t pid)
{
    int fd = pidfd_open(pid, 0);
    return fd < 0 ? -errno : fd;
}

/* Is pid still the process that was started at start_time? */
static bool process_matches(pid_t pid, uint64_t start_time)
{
    return sandbox_process_alive(pid, start_time);
}

/* Is the container's init gone (reaped when it was our child)? Waits up to the
 * destroy timeout after killing it. */
static bool init_gone(Container *c)
{
    if (c->init_pidfd < 0)
        return true;
    pidfd_send_signal(c->init_pidfd, SIGKILL, NULL, 0);
    if (c->init_is_child) {
        siginfo_t si;
        int r;
        while ((r = waitid((idtype_t)3 /* P_PIDFD */, (id_t)c->init_pidfd, &si, WEXITED)) < 0 &&
               errno == EINTR)
            ;
        /* ECHILD: reaped already by an earlier attempt. */
        return r == 0 || errno == ECHILD;
    }
    struct pollfd pfd = {.fd = c->init_pidfd, .events = POLLIN};
    return poll(&pfd, 1, DESTROY_TIMEOUT_MS) == 1;
}

int garden_kernel_teardown(Garden *g, Container *c)
{
    /* Every step runs whatever failed before it; the first error is reported.
     * Each step is idempotent, so a retry finishes what is left. The kernel
     * handles (c->cgroup, the init's pidfd) stay until the last reference goes:
     * a reader that took the container before the destroy may still use them. */
    int first = 0;
    garden_oom_unwatch(g, c);
    int64_t t0 = clock_monotonic_ns();
    /* Shims live outside the container's cgroup: end them by pid. */
    garden_kill_shims(g, c);
    int64_t t1 = clock_monotonic_ns();
    if (c->cgroup) {
        int r = testhook_fault("cgroup.destroy") ? -EBUSY
                                                 : cgroup_destroy(c->cgroup, DESTROY_TIMEOUT_MS);
        if (r < 0) {
            log_debug("Container '%s': removing its cgroups failed: %s", c->rec.handle,
                      strerror(-r));
            first = r;
        }
        log_debug("Container '%s': shims %.2f ms, cgroups %.2f ms", c->rec.handle,
                  (double)(t1 - t0) / 1e6, (double)(clock_monotonic_ns() - t1) / 1e6);
    }
    /* What follows may be reused by other containers: only once the init, and with
     * it the container's network namespace and veth pair, is gone. */
    if (!init_gone(c)) {
        return first < 0 ? first : -EBUSY;
    }
    testhook_point("destroy.killed");
    garden_net_release(g, c);
    testhook_point("destroy.network");
    _cleanup_free_ char *dir = NULL;
    if (depot_container_path(g->depot, c->rec.handle, &dir) == 0) {
        int r = disk_detach(dir);
        if (r < 0) {
            log_debug("Container '%s': releasing its disk failed: %s", c->rec.handle, strerror(-r));
            if (first == 0)
                first = r;
        }
    }
    pthread_mutex_lock(&c->lock);
    uint32_t uid_base = c->rec.spec.privileged ? 0 : c->rec.uid_base;
    c->rec.uid_base = 0;
    pthread_mutex_unlock(&c->lock);
    if (uid_base && uid_base != SANDBOX_SHARED_ROOT && g->ids)
        idpool_release(g->ids, uid_base);
    return first;
}

void garden_kernel_cleanup_record(Garden *g, const ContainerRecord *rec)
{
    if (!g->cgroups)
        return;
    Cgroup *cg = NULL;
    if (cgroup_open_existing(g->cgroups, rec->handle, &cg) == 0) {
        int r = cgroup_destroy(cg, DESTROY_TIMEOUT_MS);
        if (r < 0)
            log_warn_errno(r, "Failed to remove the cgroups of '%s': %m", rec->handle);
        cgroup_free(cg);
    }
    if (process_matches(rec->init_pid, rec->init_start_time)) {
        int fd = pidfd_open_pid(rec->init_pid);
        if (fd >= 0) {
            pidfd_send_signal(fd, SIGKILL, NULL, 0);
            close(fd);
        }
    }
    _cleanup_free_ char *dir = NULL;
    if (depot_container_path(g->depot, rec->handle, &dir) == 0)
        (void)disk_detach(dir);
}

int garden_kernel_restore(Garden *g, Container *c)
{
    ContainerRecord *rec = &c->rec;
    if (!process_matches(rec->init_pid, rec->init_start_time))
        return -ESRCH;
    int fd = pidfd_open_pid(rec->init_pid);
    if (fd < 0)
        return -ESRCH;
    /* The pid could have been reused between the check and the open. */
    if (!process_matches(rec->init_pid, rec->init_start_time)) {
        close(fd);
        return -ESRCH;
    }
    c->init_pidfd = fd_move_high(fd);
    c->init_is_child = false;
    int r = cgroup_open_existing(g->cgroups, rec->handle, &c->cgroup);
    if (r < 0)
        return -ESRCH;
    /* A daemon killed between applying a limit change and recording it left the
     * kernel ahead of the record: the record is what was acknowledged. */
    ApiError ignore;
    if (garden_apply_cgroup_limits(c, &rec->spec.limits, &ignore) < 0)
        log_warn("Container '%s': its recorded limits could not be applied again: %s", rec->handle,
                 ignore.message);
    if (g->net_ready)
        garden_net_restore(g, c);
    return 0;
}

/* The image directory a spec names: "" = the default rootfs, raw:///path or /path.
 * Everything else (docker://, oci://, ...) needs an image plugin cloche does not
 * have, and is refused by name. */
static int resolve_image(Garden *g, const ContainerSpec *spec, char **ret, ApiError *reterr)
{
    const char *uri = spec->image.uri && *spec->image.uri ? spec->image.uri : spec->rootfs;
    const char *path;
    if (!uri || !*uri)
        path = g->default_rootfs;
    else if (strncmp(uri, "raw://", 6) == 0)
        path = uri + 6;
    else
        path = uri;
    if ((!uri || !*uri) && (!path || path[0] != '/'))
        return api_errorf(reterr, -EINVAL, 500, GARDEN_ERR_GENERIC,
                          "The default rootfs '%s' is not an absolute path", path ? path : "");
    if (!path || path[0] != '/')
        return api_bad_request(reterr,
                               "Unsupported image '%s': cloche takes \"\" (the default rootfs), "
                               "raw:///path or /path (a root file system directory)",
                               uri);
    if (strpbrk(path, ",:\\\n"))
        return api_bad_request(reterr,
                               "Image path '%s' contains ',', ':' or '\\\\', which an "
                               "overlay mount cannot take",
                               path);
    struct stat st;
    if (stat(path, &st) < 0)
        return api_bad_request(reterr, "Image directory '%s' does not exist", path);
    if (!S_ISDIR(st.st_mode))
        return api_bad_request(reterr, "Image '%s' is not a directory", path);
    char *copy = strdup(path);
    if (!copy)
        return api_internal_error(reterr, -ENOMEM, "Failed to resolve the image");
    *ret = copy;
    return 0;
}

static int validate_binds(const ContainerSpec *spec, ApiError *reterr)
{
    for (size_t i = 0; i < spec->n_bind_mounts; i++) {
        const BindMount *b = &spec->bind_mounts[i];
        if (!b->src_path || !*b->src_path)
            return api_bad_request(reterr, "bind_mounts[%zu]: 'src_path' is empty", i);
        if (!b->dst_path || b->dst_path[0] != '/' || strcmp(b->dst_path, "/") == 0)
            return api_bad_request(reterr,
                                   "bind_mounts[%zu]: 'dst_path' must be an absolute path "
                                   "other than /",
                                   i);
        if (b->origin == BIND_MOUNT_HOST) {
            struct stat st;
            if (b->src_path[0] != '/')
                return api_bad_request(reterr, "bind_mounts[%zu]: 'src_path' must be absolute", i);
            if (stat(b->src_path, &st) < 0)
                return api_bad_request(reterr, "Bind mount source '%s' does not exist",
                                       b->src_path);
        }
    }
    return 0;
}

/* /etc/hosts and /etc/resolv.conf for the container, written into its depot dir.
 * resolv.conf carries the host's name servers, except loopback ones, which the
 * container's network namespace cannot reach. */
static int write_etc_files(const Garden *g, const char *dir, const ContainerRecord *rec)
{
    const char *handle = rec->handle;
    _cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    char hosts[512], ip[16];
    size_t hlen = strlen(handle);
    /* As guardian: the container's address names the handle (its last 49 bytes). */
    int n = rec->net.id
                ? snprintf(hosts, sizeof(hosts),
                           "127.0.0.1 localhost\n%s %s\n::1 localhost ip6-localhost ip6-loopback\n",
                           ipv4_format(rec->net.ip, ip, sizeof(ip)),
                           hlen > 49 ? handle + hlen - 49 : handle)
                : snprintf(hosts, sizeof(hosts),
                           "127.0.0.1 localhost %s\n::1 localhost ip6-localhost ip6-loopback\n",
                           handle);
    int r = atomic_write_volatile_at(dfd, "hosts", hosts, (size_t)n, 0644);
    if (r < 0)
        return r;

    char resolv[2048] = "";
    size_t used = 0;
    _cleanup_free_ char *host = NULL;
    size_t len;
    bool loopback_only = false;
    for (size_t i = 0; i < g->cfg.n_dns_servers; i++) {
        int k = snprintf(resolv + used, sizeof(resolv) - used, "nameserver %s\n",
                         ipv4_format(g->cfg.dns_servers[i], ip, sizeof(ip)));
        if (k < 0 || (size_t)k >= sizeof(resolv) - used)
            break;
        used += (size_t)k;
    }
    if (g->cfg.n_dns_servers == 0 &&
        read_file_at(AT_FDCWD, "/etc/resolv.conf", 65536, &host, &len) == 0) {
        loopback_only = true;
        char *save = NULL;
        for (char *line = strtok_r(host, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char addr[64];
            if (sscanf(line, "nameserver %63s", addr) != 1)
                continue;
            struct in_addr a4;
            if ((inet_pton(AF_INET, addr, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
                strcmp(addr, "::1") == 0)
                continue;
            loopback_only = false;
            int k = snprintf(resolv + used, sizeof(resolv) - used, "nameserver %s\n", addr);
            if (k < 0 || (size_t)k >= sizeof(resolv) - used)
                break;
            used += (size_t)k;
        }
    }
    /* Only a local resolver on the host (systemd-resolved, dnsmasq): as guardian,
     * point the container at its gateway. */
    if (used == 0 && loopback_only && rec->net.id)
        used = (size_t)snprintf(resolv, sizeof(resolv), "nameserver %s\n",
                                ipv4_format(rec->net.gateway, ip, sizeof(ip)));
    return atomic_write_volatile_at(dfd, "resolv.conf", resolv, used, 0644);
}

typedef struct AttachCtx {
    Cgroup *cgroup;
    bool cloned_into;   /* v2: CLONE_INTO_CGROUP */
    bool self_attached; /* v1: the child wrote its "tasks" files itself */
} AttachCtx;

static int attach_init(pid_t pid, void *userdata)
{
    AttachCtx *a = userdata;
    return cgroup_attach(a->cgroup, pid,
                         (a->cloned_into ? CGROUP_ATTACH_SKIP_V2 : 0) |
                             (a->self_attached ? CGROUP_ATTACH_SKIP_V1 : 0));
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* A create's active record, written (fsynced) while its init mounts, so that
 * create's last write is a rename (depot_stage_record). buf: NULL if not staged. */
typedef struct StagedRecord {
    char *buf;
    size_t len;
    int64_t took_ns;
} StagedRecord;

/* What runs while the container's init mounts its root: the network (the two
 * take about as long; doing them one after the other made create ~2 ms slower)
 * and, for a create, beside it on a thread of its own, the staging of its active
 * record (an fsync: the network is often the longer of the three already). */
typedef struct PrepareCtx {
    Garden *g;
    Container *c;
    ApiError *reterr;
    int64_t took_ns;
    StagedRecord *staged; /* create only */
    pid_t pid;
} PrepareCtx;

/* Best effort: a record not staged is written whole at the end (create_build). */
static void *stage_active_record(void *userdata)
{
    PrepareCtx *p = userdata;
    int64_t t = clock_monotonic_ns();
    uint64_t start_time;
    if (procfs_start_time(p->pid, &start_time) < 0)
        return NULL;
    /* The record as create_build will commit it, once the init has exec'd. */
    pthread_mutex_lock(&p->c->lock);
    ContainerRecord active = p->c->rec; /* shallow: only serialized */
    active.state = CONTAINER_STATE_ACTIVE;
    active.init_pid = p->pid;
    active.init_start_time = start_time;
    size_t len;
    _cleanup_free_ char *buf = container_record_serialize(&active, &len);
    pthread_mutex_unlock(&p->c->lock);
    if (!buf || depot_stage_record(p->g->depot, p->c->rec.handle, buf, len) < 0)
        return NULL;
    p->staged->buf = TAKE_PTR(buf);
    p->staged->len = len;
    p->staged->took_ns = clock_monotonic_ns() - t;
    testhook_point("create.staged");
    return NULL;
}

static int prepare_init(pid_t pid, void *userdata)
{
    PrepareCtx *p = userdata;
    p->pid = pid;
    pthread_t stager;
    bool threaded = false;
    if (p->staged && p->g->net_ready)
        threaded = pthread_create(&stager, NULL, stage_active_record, p) == 0;
    else if (p->staged)
        stage_active_record(p);
    int r = 0;
    if (p->g->net_ready) {
        int64_t t = clock_monotonic_ns();
        r = garden_net_attach(p->g, p->c, pid, p->reterr);
        p->took_ns = clock_monotonic_ns() - t;
    }
    if (threaded)
        pthread_join(stager, NULL);
    else if (p->staged && p->g->net_ready && r >= 0)
        stage_active_record(p); /* no thread to be had */
    return r;
}

/* Between the steps of create and start: crash here if the tests ask, and give
 * up if a destroy is waiting for this create or start. */
static int kernel_step(Container *c, const char *op, const char *what, ApiError *reterr)
{
    char point[64];
    snprintf(point, sizeof(point), "%s.%s", op, what);
    testhook_point(point);
    if (testhook_fault(point))
        return api_internal_error(reterr, -EIO, "Test fault at '%s'", point);
    if (state_cancelled(c))
        return api_errorf(reterr, -ECANCELED, 409, GARDEN_ERR_GENERIC,
                          "Container '%s' was destroyed while it was being %s", c->rec.handle,
                          strcmp(op, "create") == 0 ? "created" : "started");
    return 0;
}

static int create_step(Container *c, const char *point, ApiError *reterr)
{
    return kernel_step(c, "create", point + strlen("create."), reterr);
}

static int build_kernel(Garden *g, Container *c, const char *op, const char *dir,
                        StagedRecord *staged, ApiError *reterr);

/* Everything kernel-side for a registered, persisted CREATING container. */
static int create_kernel(Garden *g, Container *c, StagedRecord *staged, ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    const ContainerSpec *spec = &rec->spec;
    _cleanup_free_ char *dir = NULL;
    int r = depot_container_path(g->depot, rec->handle, &dir);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to find the container's directory");

    if (!spec->privileged) {
        uint32_t base = SANDBOX_SHARED_ROOT; /* --uid-map-mode shared: one map for all */
        r = g->cfg.uid_map_shared ? 0 : idpool_acquire(g->ids, &base);
        if (r < 0)
            return api_errorf(reterr, r, 503, GARDEN_ERR_GENERIC,
                              "No free user id range left for a new container");
        pthread_mutex_lock(&c->lock);
        rec->uid_base = base;
        pthread_mutex_unlock(&c->lock);
    }
    if ((r = create_step(c, "create.ids", reterr)) < 0)
        return r;
    if (g->net_ready) {
        r = garden_net_allocate(g, c, reterr);
        if (r < 0)
            return r;
    }
    if ((r = create_step(c, "create.address", reterr)) < 0)
        return r;
    return build_kernel(g, c, "create", dir, staged, reterr);
}

/* The writable layer's disk, when the spec limits it. */
static int build_disk(Garden *g, Container *c, const char *op, const char *dir, ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    const ContainerSpec *spec = &rec->spec;
    if (!spec->limits.disk.byte_hard && !spec->limits.disk.byte_soft)
        return 0;
    DiskLimit dl;
    int r = garden_disk_limit(g, rec, &spec->limits.disk, &dl, reterr);
    if (r < 0)
        return r;
    /* A start mounts the writable layer's disk again (a reboot unmounted it). */
    r = strcmp(op, "start") == 0 ? disk_reattach(dir, &dl)
                                 : disk_attach(dir, &dl, spec->privileged ? 0 : rec->uid_base);
    if (r < 0)
        return api_errorf(reterr, r, r == -EINVAL ? 400 : 500, GARDEN_ERR_GENERIC,
                          "Failed to set up the container's disk limit: %s", strerror(-r));
    return kernel_step(c, op, "disk", reterr);
}

/* The cgroups (a stopped container's are kept, with its limits and counters),
 * their device allow-list and limits, and the view the init mounts. */
static int build_cgroups(Garden *g, Container *c, const char *op, CgroupViewDir **ret_views,
                         size_t *ret_n_views, ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    const ContainerSpec *spec = &rec->spec;
    Cgroup *cg = c->cgroup;
    int r;
    if (!cg) {
        r = cgroup_create(g->cgroups, rec->handle, &cg);
        if (r == -EEXIST && strcmp(op, "start") == 0)
            r = cgroup_open_existing(g->cgroups, rec->handle, &cg);
        if (r < 0)
            return api_internal_error(reterr, r, "Failed to create the container's cgroups");
        pthread_mutex_lock(&c->lock);
        c->cgroup = cg;
        pthread_mutex_unlock(&c->lock);
    }
    if ((r = kernel_step(c, op, "cgroup", reterr)) < 0)
        return r;
    r = cgroup_set_devices(cg, spec->privileged);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to set the container's device allow-list");
    r = garden_apply_cgroup_limits(c, &spec->limits, reterr);
    if (r < 0)
        return r;
    _cleanup_free_ CgroupViewDir *views = calloc(CGROUP_VIEW_MAX, sizeof(CgroupViewDir));
    r = views ? cgroup_view_dirs(cg, views, CGROUP_VIEW_MAX, ret_n_views) : -ENOMEM;
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to prepare the container's cgroup view");
    *ret_views = TAKE_PTR(views);
    return 0;
}

/* The spec's bind mounts as the sandbox takes them (malloc'd), or NULL. */
static SandboxBind *sandbox_binds(const ContainerSpec *spec)
{
    SandboxBind *binds = calloc(spec->n_bind_mounts + 1, sizeof(SandboxBind));
    if (!binds)
        return NULL;
    for (size_t i = 0; i < spec->n_bind_mounts; i++)
        binds[i] =
            (SandboxBind){.src = spec->bind_mounts[i].src_path,
                          .dst = spec->bind_mounts[i].dst_path,
                          .rw = spec->bind_mounts[i].mode == BIND_MOUNT_RW,
                          .from_container = spec->bind_mounts[i].origin == BIND_MOUNT_CONTAINER};
    return binds;
}

/* The init with its namespaces and mounts over the writable layer (and, in
 * parallel, the network and the staging of a create's record).
 * *ret_network_ns: how long the network took. */
static int build_sandbox(Garden *g, Container *c, const char *dir, CgroupViewDir *views,
                         size_t n_views, StagedRecord *staged, int64_t *ret_network_ns,
                         ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    const ContainerSpec *spec = &rec->spec;
    _cleanup_free_ SandboxBind *binds = sandbox_binds(spec);
    if (!binds)
        return api_internal_error(reterr, -ENOMEM, "Failed to prepare bind mounts");
    _cleanup_free_ char *lower = NULL; /* the image, or its copy in the depot (rootfs.c) */
    int r = garden_rootfs_lower(g, rec->rootfs, spec->privileged, &lower, reterr);
    if (r < 0)
        return r;
    _cleanup_close_ int cgfd = cgroup_open_v2_fd(c->cgroup);
    int tasks[CGROUP_V1_TASKS_MAX];
    size_t n_tasks = 0;
    if ((r = cgroup_open_v1_tasks(c->cgroup, tasks, ELEMENTSOF(tasks), &n_tasks)) < 0)
        return api_internal_error(reterr, r, "Failed to open the container's cgroups");
    AttachCtx actx = {.cgroup = c->cgroup, .cloned_into = cgfd >= 0, .self_attached = n_tasks > 0};
    PrepareCtx pctx = {.g = g, .c = c, .reterr = reterr, .staged = staged};
    SandboxSpec sb = {
        .handle = rec->handle,
        .rootfs = lower,
        .dir = dir,
        .privileged = spec->privileged,
        .uid_base = rec->uid_base,
        .uid_count = g->cfg.uid_range_size,
        .binds = binds,
        .n_binds = spec->n_bind_mounts,
        .cgroup_fd = cgfd >= 0 ? cgfd : -1,
        .self_attach_fds = tasks,
        .n_self_attach_fds = n_tasks,
        .attach = attach_init,
        .attach_userdata = &actx,
        .prepare = g->net_ready || staged ? prepare_init : NULL,
        .prepare_userdata = &pctx,
        .init_fd = g->init_fd,
        .tun_node = g->tun_node,
        .volatile_layer = !garden_layer_outlives_reboot(&rec->spec),
        .confine = garden_confine_plan(g, spec->privileged),
        .cgroup_views = views,
        .n_cgroup_views = n_views,
    };
    SandboxInit init;
    Failure failure = {0};
    r = sandbox_create(&sb, &init, &failure);
    close_fds(tasks, n_tasks);
    *ret_network_ns = pctx.took_ns;
    if (r < 0)
        return garden_failure(reterr, &failure, r);
    pthread_mutex_lock(&c->lock);
    c->init_pidfd = fd_move_high(init.pidfd);
    c->init_is_child = true;
    rec->init_pid = init.pid;
    rec->init_start_time = init.start_time;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* The kernel objects a container's record describes, after its ids and address
 * are held: /etc files, disk, cgroups, the init with its namespaces and mounts
 * over the writable layer, links and firewall state, bandwidth. Create makes them
 * all; start reuses the disk and cgroups a stop left and makes what is missing
 * (after a reboot, everything). */
static int build_kernel(Garden *g, Container *c, const char *op, const char *dir,
                        StagedRecord *staged, ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    const ContainerSpec *spec = &rec->spec;
    int64_t t0 = clock_monotonic_ns();
    int r = write_etc_files(g, dir, rec);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to write the container's /etc files");
    int64_t t1 = clock_monotonic_ns();
    if ((r = build_disk(g, c, op, dir, reterr)) < 0)
        return r;
    _cleanup_free_ CgroupViewDir *views = NULL;
    size_t n_views = 0;
    if ((r = build_cgroups(g, c, op, &views, &n_views, reterr)) < 0)
        return r;
    int64_t t2 = clock_monotonic_ns(), network_ns = 0;
    r = build_sandbox(g, c, dir, views, n_views, staged, &network_ns, reterr);
    log_debug("Container '%s': /etc files %.2f ms, cgroups %.2f ms, namespaces and mounts %.2f ms "
              "(network %.2f ms, record staged %.2f ms of it, in parallel)",
              rec->handle, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6,
              (double)(clock_monotonic_ns() - t2) / 1e6, (double)network_ns / 1e6,
              staged ? (double)staged->took_ns / 1e6 : 0.0);
    if (r < 0)
        return r;
    if ((r = kernel_step(c, op, "sandbox", reterr)) < 0)
        return r;
    if (g->net_ready && spec->limits.bandwidth.rate) {
        r = garden_net_set_bandwidth(g, c, &spec->limits.bandwidth, reterr);
        if (r < 0)
            return r;
    }
    return kernel_step(c, op, "limits", reterr);
}

/* The record of a new container: its spec checked (taken on success: *spec is
 * zeroed), its handle (generated if none), its image resolved, its properties. */
static int create_record(Garden *g, ContainerSpec *spec, ContainerRecord *rec, ApiError *reterr)
{
    if (!g->cgroups)
        return api_errorf(reterr, -EOPNOTSUPP, 500, GARDEN_ERR_SERVICE_UNAVAILABLE,
                          "This daemon was started without container support");
    int r = garden_validate_limits(&spec->limits, LIMIT_KIND_ALL, reterr);
    if (r < 0)
        return r;
    r = validate_binds(spec, reterr);
    if (r < 0)
        return r;
    if (!spec->handle || !*spec->handle) {
        free(spec->handle);
        spec->handle = NULL;
        if ((r = uuid_v4_string(&spec->handle)) < 0)
            return api_internal_error(reterr, r, "Failed to generate a handle");
    }
    *rec = (ContainerRecord){.state = CONTAINER_STATE_CREATING};
    r = garden_image_resolve(g, spec, &rec->rootfs, reterr); /* docker://, oci:// */
    if (r == 0)
        r = resolve_image(g, spec, &rec->rootfs, reterr);
    if (r >= 0 && spec->service && !spec->service->path) {
        free(rec->rootfs);
        return api_bad_request(reterr, "'cloche_service' has no 'path', and the container's root "
                                       "file system is not an image with an Entrypoint or Cmd");
    }
    if (r < 0)
        return r;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rec->created_at_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    rec->grace_time_ns =
        spec->grace_time_ns > 0 ? spec->grace_time_ns : g->cfg.default_grace_time_ns;
    char grace[32];
    snprintf(grace, sizeof(grace), "%" PRId64, rec->grace_time_ns);
    rec->handle = strdup(spec->handle);
    r = rec->handle ? strmap_copy(&spec->properties, &rec->properties) : -ENOMEM;
    if (r >= 0)
        r = strmap_set(&rec->properties, "garden.state", "created");
    if (r >= 0)
        r = strmap_set(&rec->properties, "garden.grace-time", grace);
    if (r >= 0)
        r = strmap_set(&rec->properties, "cloche.state", "active");
    if (r < 0) {
        container_record_done(rec);
        return api_internal_error(reterr, r, "Failed to prepare the container");
    }
    rec->spec = *spec;
    *spec = (ContainerSpec){0};
    return 0;
}

/* A registered container with its depot directory: its record written, its
 * kernel side built, then the record made durable as active. */
static int create_build(Garden *g, Container *c, ApiError *reterr)
{
    const char *handle = c->rec.handle;
    StagedRecord staged = {0};
    int r;
    testhook_point("create.directory");
    /* Volatile: if this is lost in a crash, start-up still finds the directory
     * (or nothing) and cleans up; only the final record must be durable. */
    pthread_mutex_lock(&c->lock);
    r = depot_write_record_flags(g->depot, &c->rec, DEPOT_WRITE_VOLATILE);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        api_internal_error(reterr, r, "Failed to persist the container");
    else if ((r = create_step(c, "create.record", reterr)) >= 0)
        r = create_kernel(g, c, &staged, reterr);

    if (r >= 0) {
        pthread_mutex_lock(&c->lock);
        c->rec.state = CONTAINER_STATE_ACTIVE;
        /* Durable now; the containers/ directory entry itself is not fsynced: after
         * a power loss the container's processes are gone anyway, and a record
         * that vanished with them leaves nothing to restore. When the record
         * staged while the init mounted is this one, only its rename is left. */
        int64_t t = clock_monotonic_ns();
        r = depot_commit_record(g->depot, &c->rec, staged.buf, staged.len);
        log_debug("Container '%s': state written in %.2f ms", handle,
                  (double)(clock_monotonic_ns() - t) / 1e6);
        if (r < 0) {
            c->rec.state = CONTAINER_STATE_CREATING;
            api_internal_error(reterr, r, "Failed to persist the container");
        }
        pthread_mutex_unlock(&c->lock);
    }
    free(staged.buf);
    if (r >= 0)
        testhook_point("create.active");
    return r;
}

int garden_create(Garden *g, ContainerSpec *spec, char **ret_handle, ApiError *reterr)
{
    int64_t started = clock_monotonic_ns();
    ContainerRecord rec;
    int r = create_record(g, spec, &rec, reterr);
    if (r < 0)
        return r;
    Container *c = container_new(&rec);
    if (!c) {
        container_record_done(&rec);
        return api_internal_error(reterr, -ENOMEM, "Failed to prepare the container");
    }
    /* The create owns the container's transition from here: a destroy that
     * comes now waits for it (and asks it to give up at its next step). */
    c->transition = TRANSITION_CREATE;
    r = garden_insert_new(g, c, reterr);
    if (r < 0) {
        container_unref(c);
        return r;
    }
    /* The registry holds the container; this request holds its own reference,
     * so the container outlives a destroy that takes the registry's. */
    atomic_fetch_add(&c->refcount, 1);
    const char *handle = c->rec.handle;
    r = depot_container_create(g->depot, handle);
    if (r < 0) {
        garden_unregister(g, c);
        state_end_destroy(c, true);
        container_unref(c);
        return api_internal_error(reterr, r, "Failed to create the container's directory");
    }
    r = create_build(g, c, reterr);
    if (r < 0) {
        log_info("Creating container '%s' failed: %s", handle, reterr ? reterr->message : "");
        /* The create undoes itself; a destroy waiting for it then finds it gone. */
        state_begin_undo(c);
        const char *what = NULL;
        int k = garden_teardown_claimed(g, c, &what);
        if (k < 0)
            log_warn_errno(k,
                           "Failed to %s the half-created container '%s': %m; retrying in the "
                           "background",
                           what, handle);
        container_unref(c);
        return r;
    }
    garden_oom_watch(g, c);
    garden_arm_grace(g, c);
    state_end_create(c);
    garden_event_emit(g, "created", handle, NULL, -1, NULL);
    if (c->service && (r = container_service_start(g, c, reterr)) < 0) {
        /* A container whose service cannot start is not created. */
        log_info("Creating container '%s' failed: its service: %s", handle, reterr->message);
        ApiError ignore;
        (void)garden_destroy(g, handle, &ignore);
        container_unref(c);
        return r;
    }
    log_debug("Container '%s': created in %.2f ms", handle,
              (double)(clock_monotonic_ns() - started) / 1e6);
    *ret_handle = strdup(handle);
    container_unref(c);
    return *ret_handle ? 0 : api_internal_error(reterr, -ENOMEM, "Out of memory");
}

/* End the container's init (and with it every process in its pid namespace)
 * and its links and firewall state; the address, host ports, ids, cgroups and
 * writable layer stay. -EBUSY when the init does not die. */
int garden_kernel_end_init(Garden *g, Container *c)
{
    if (!init_gone(c))
        return -EBUSY;
    garden_end_shims(g, c, 2000);
    pthread_mutex_lock(&c->lock);
    if (c->init_pidfd >= 0)
        close(c->init_pidfd);
    c->init_pidfd = -1;
    c->init_is_child = false;
    c->rec.init_pid = 0;
    c->rec.init_start_time = 0;
    pthread_mutex_unlock(&c->lock);
    if (g->net_ready)
        garden_net_detach(g, c);
    return 0;
}

int garden_kernel_start(Garden *g, Container *c, ApiError *reterr)
{
    _cleanup_free_ char *dir = NULL;
    int r = depot_container_path(g->depot, c->rec.handle, &dir);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to find the container's directory");
    r = garden_kernel_end_init(g, c);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to end the old init of '%s'", c->rec.handle);
    /* Stopped without an init from here until the start is recorded: a daemon
     * restarted meanwhile keeps the container so (see garden_reboot_adopt). */
    pthread_mutex_lock(&c->lock);
    r = garden_persist(g, c);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to persist container '%s'", c->rec.handle);
    r = kernel_step(c, "start", "ended", reterr);
    if (r >= 0)
        r = build_kernel(g, c, "start", dir, NULL, reterr);
    if (r < 0) {
        /* Back to stopped, without an init: a later start or a destroy goes on
         * from there. */
        int k = garden_kernel_end_init(g, c);
        if (k < 0)
            log_warn_errno(k, "Container '%s': the init of a failed start does not die: %m",
                           c->rec.handle);
    }
    return r;
}

int garden_kernel_reserve(Garden *g, Container *c)
{
    ContainerRecord *rec = &c->rec;
    if (!rec->spec.privileged && rec->uid_base && rec->uid_base != SANDBOX_SHARED_ROOT) {
        int r = idpool_reserve(g->ids, rec->uid_base);
        if (r < 0)
            return r;
    }
    if (g->net_ready)
        garden_net_reserve(g, c);
    return 0;
}

void garden_kernel_unreserve(Garden *g, Container *c)
{
    if (g->net_ready)
        garden_net_release(g, c);
    pthread_mutex_lock(&c->lock);
    uint32_t uid_base = c->rec.spec.privileged ? 0 : c->rec.uid_base;
    pthread_mutex_unlock(&c->lock);
    if (uid_base && uid_base != SANDBOX_SHARED_ROOT && g->ids)
        idpool_release(g->ids, uid_base);
}

int container_get_limits(Container *c, Limits *ret)
{
    pthread_mutex_lock(&c->lock);
    *ret = c->rec.spec.limits;
    pthread_mutex_unlock(&c->lock);
    return 0;
}
