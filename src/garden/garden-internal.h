/* Private to src/garden: the registry's structures, shared by registry.c (the
 * model), lifecycle.c (the kernel side of create, destroy, restore) and start.c
 * (stop, start, restart) among others. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "cloche/cgroup.h"
#include "cloche/depot.h"
#include "cloche/disk.h"
#include "cloche/firewall.h"
#include "cloche/netdev.h"
#include "cloche/netpool.h"
#include "cloche/garden-setup.h"
#include "cloche/garden.h"
#include "cloche/grace.h"
#include "cloche/hashmap.h"
#include "cloche/history.h"
#include "cloche/history-store.h"
#include "cloche/sandbox.h"
#include "cloche/security.h"

/* A container's phase in memory (state.c); the depot keeps ContainerState. */
typedef enum ContainerPhase {
    PHASE_CREATING,
    PHASE_ACTIVE,
    PHASE_STOPPING,
    PHASE_STOPPED,
    PHASE_DESTROYING,
    PHASE_GONE,     /* torn down and out of the registry; only references remain */
    PHASE_STARTING, /* a stopped container getting a new init (start.c) */
} ContainerPhase;
#define PHASE_MASK(p) (1u << (p))
/* Where processes can be started and limits, ports and files changed. */
#define PHASES_RUNNING (PHASE_MASK(PHASE_ACTIVE) | PHASE_MASK(PHASE_STOPPED))

typedef enum ContainerTransition {
    TRANSITION_NONE,
    TRANSITION_CREATE, /* also the undo of a failed or cancelled create */
    TRANSITION_STOP,
    TRANSITION_DESTROY,
    TRANSITION_START, /* also its undo when it fails or a destroy cancels it */
} ContainerTransition;

/* shimpool.c: idle shims, started ahead of Runs. */
#define GARDEN_IDLE_SHIMS 2
typedef struct ShimPool ShimPool;
int garden_shim_pool_start(Garden *g);
void garden_shim_pool_stop(Garden *g);
/* An idle shim's socket for proc_idle_take() (taken by the caller); -ENOENT when
 * none is ready (then start one with proc_start()). */
int garden_shim_pool_take(Garden *g, int *ret_fd);
/* Take an idle shim and rename the directory it prepared (sockets bound) to
 * pdir/id: 1 = done; 0 = *ret_fd is an idle shim's socket (or -1: none ready)
 * but no directory was moved, make it; -EEXIST = pdir/id exists. */
int garden_shim_pool_take_into(Garden *g, int pdir, const char *id, int *ret_fd);
/* Start replacements for the idle shims taken (after the start they served, so
 * that the spawn does not compete with it). */
void garden_shim_pool_refill(Garden *g);

struct Container {
    atomic_uint refcount;
    pthread_mutex_t lock;
    pthread_cond_t changed;         /* phase, transition or ops changed; under lock */
    ContainerPhase phase;           /* under lock */
    ContainerTransition transition; /* the one running, owned by one thread; under lock */
    ContainerPhase stop_from;       /* phase before a stop, restored if it fails */
    bool cancel;                    /* a destroy waits: the running create or stop gives up */
    unsigned ops;                   /* operations in flight (state_op_begin), under lock */
    unsigned teardown_failures;     /* failed destroys so far: the retry back-off */
    bool start_after_reboot;        /* adopted at start-up, to be started (start.c) */
    ContainerRecord rec;            /* under lock */
    /* The container's service (cloche_service), NULL when it has none: an alias
     * of rec.spec.service, owned (and persisted) by the record. */
    ServiceSpec *service;
    GraceTimer grace;           /* under lock */
    int64_t grace_scheduled_ns; /* earliest deadline queued in the service, under lock */

    /* Kernel objects (set once the container exists; torn down by destroy). */
    Cgroup *cgroup;
    int init_pidfd;     /* -1 when unknown */
    bool init_is_child; /* cloned by this daemon: must be reaped */
    bool net_attached;  /* links and firewall state exist (or were restored) */
    int oom_fd;         /* the OOM watch (oom.c), -1 when not watched */
    size_t oom_slot;
    uint64_t oom_count; /* the kernel's oom_kill count last seen, under lock */

    /* Metrics history (sampler.c), under lock: its records are in the depot
     * directory's file, only its bookkeeping here. */
    HistoryStore *history;
    int64_t sample_mono_ns;
    uint64_t sample_cpu_ns, sample_rx, sample_tx;
    unsigned sample_ifindex; /* the sampler's: its host link, 0 until looked up */
    /* The last walk of a plain writable layer (metrics.c), under lock. */
    int64_t disk_walked_ns;
    DiskUsage disk_walked;

    /* Start-up (restore.c): in the registry, its kernel side not re-attached yet;
     * registry lookups wait until it is (under lock, signalled on changed). */
    bool restoring;
    bool uid_reserved, net_reserved; /* its id range and address taken again */
};

struct Garden {
    GardenConfig cfg;
    char *depot_path;
    char *default_rootfs;
    char *cgroup_parent;
    Depot *depot;
    GraceService *grace;
    pthread_mutex_t lock; /* guards containers */
    HashMap *containers;  /* handle -> Container*, one reference held */

    /* The kernel side; absent (NULL/-1) when cfg.init_path is NULL (unit tests). */
    CgroupSystem *cgroups;
    IdPool *ids;
    int init_fd;
    char *tun_node; /* <depot>/tun, the node every /dev/net/tun binds; NULL: none */

    /* Confinement (security.c): the compiled filter, its file for the helpers,
     * and the plan of unprivileged [0] and privileged [1] containers. */
    SecurityProfile security;
    char *seccomp_path;
    ConfinePlan confine[2];

    /* Networking (network.c); absent when the kernel side is. */
    bool net_ready;
    char if_prefix[8]; /* "cl" + --network-tag */
    char nft_table[16];
    NetPool *netpool;
    PortPool *ports;
    NetDev *netdev;
    Firewall *firewall;
    uint32_t mtu;
    uint32_t external_ip;
    pthread_mutex_t net_lock; /* net_counter, doomed bridges */
    pthread_cond_t net_cond;
    uint64_t net_counter;
    char **doomed; /* bridges of emptied subnets, deleted by the reaper */
    size_t n_doomed;
    bool net_stopping;
    pthread_t reaper;
    bool reaper_started;
    pthread_mutex_t stats_lock; /* the link counters' snapshot (bulk metrics) */
    NetDevIndexedStats *stats;  /* sorted by ifindex */
    size_t n_stats;
    int64_t stats_at_ns;
    int ifindex_sock; /* a datagram socket for SIOCGIFINDEX (-1 until net set-up) */

    /* OOM watch (oom.c). */
    pthread_mutex_t oom_lock; /* the slots; taken before any container's lock */
    int oom_epoll, oom_wake;
    Container **oom_slots;
    size_t n_oom_slots;
    pthread_t oom_thread;
    bool oom_inited, oom_started, oom_stopping;

    /* Metrics sampler (sampler.c). */
    pthread_mutex_t sampler_lock;
    pthread_cond_t sampler_cond;
    pthread_t sampler;
    bool sampler_inited, sampler_started, sampler_stopping;

    /* Start-up restore (restore.c): the pool re-attaching the depot's containers
     * while the daemon serves. */
    pthread_t restorer;
    bool restorer_started;
    FirewallPresence *restore_presence; /* the owner elements listed once, while restoring */
    Container **restore_list;
    size_t n_restore, restore_next; /* restore_next under restore_lock */
    pthread_mutex_t restore_lock;

    /* Events (events.c). */
    GardenEvents *events;
    /* Service events from the monitors' state files (service-watch.c). */
    struct ServiceWatch *service_watch;

    /* Idle shims ready for the next Run (shimpool.c); NULL when there are none. */
    ShimPool *shim_pool;

    /* garden_image_size's cache, under lock. */
    struct ImageSize *image_sizes;
    size_t n_image_sizes;
};

struct ImageSize {
    char *path;
    uint64_t bytes, inodes;
};

/* state.c: every transition and operation claims what it needs here. */
const char *state_phase_name(ContainerPhase p);
void state_init(Container *c, ContainerState persisted);
void state_set_phase_locked(Container *c, ContainerPhase p);
/* An operation that changes the container (Run, NetIn, limits, properties...):
 * waits while a create or stop runs, then succeeds if the phase is in `allowed`
 * (PHASE_MASK bits); 404 when destroyed, 409 otherwise. Pair with state_op_end. */
int state_op_begin(Container *c, unsigned allowed, ApiError *reterr);
void state_op_end(Container *c);
int state_begin_stop(Container *c, ApiError *reterr);
void state_end_stop(Container *c, bool stopped);
/* Claim a start: waits for a create or stop to finish; 409 unless stopped. */
int state_begin_start(Container *c, ApiError *reterr);
/* started: active; otherwise stopped again. */
void state_end_start(Container *c, bool started);
/* Has a destroy asked the running create or stop to give up? */
bool state_cancelled(Container *c);
/* Claim the destroy: waits for (and cancels) a running create or stop and for the
 * operations in flight. *ret_gone when another thread finished it meanwhile. */
int state_begin_destroy(Container *c, bool *ret_gone, ApiError *reterr);
/* A failed or cancelled create turns into its own undo (still TRANSITION_CREATE). */
void state_begin_undo(Container *c);
/* gone: torn down; otherwise left destroying, for a retry. */
void state_end_destroy(Container *c, bool gone);
/* Under c->lock: claim the destroy if nothing else runs (grace expiry, retries);
 * then wait for the operations in flight with state_wait_ops(). */
bool state_try_claim_destroy_locked(Container *c);
void state_wait_ops(Container *c);
/* A create succeeded (its record says active already). */
void state_end_create(Container *c);

/* lifecycle.c */
int garden_kernel_setup(Garden *g);
void garden_kernel_free(Garden *g);
/* Re-attach to a restored container's kernel objects; -ESRCH if they are gone. */
int garden_kernel_restore(Garden *g, Container *c);
/* Kill and remove the container's kernel objects (idempotent). */
int garden_kernel_teardown(Garden *g, Container *c);
/* Start a stopped container's kernel side again (its phase is starting): the
 * old init (if any) ended, a new one over the same writable layer, with the same
 * address, host ports, firewall rules, limits and bind mounts. On failure the
 * container is left without an init (stopped); a destroy cleans up the rest. */
int garden_kernel_start(Garden *g, Container *c, ApiError *reterr);
/* End the init (and every process in its pid namespace) and the links and
 * firewall state; what a start reuses stays. -EBUSY when the init does not die. */
int garden_kernel_end_init(Garden *g, Container *c);
/* A record whose kernel side is gone (a reboot): hold its ids, address and
 * host ports again, so that garden_kernel_start can rebuild it. */
int garden_kernel_reserve(Garden *g, Container *c);
/* Give back what garden_kernel_reserve held. */
void garden_kernel_unreserve(Garden *g, Container *c);
/* Tear down what a record describes, for records that are not restored. */
void garden_kernel_cleanup_record(Garden *g, const ContainerRecord *rec);
void container_free_kernel(Container *c);

/* security.c */
int garden_security_setup(Garden *g);
void garden_security_free(Garden *g);
const ConfinePlan *garden_confine_plan(const Garden *g, bool privileged);
/* The filter file for cloche-shim and cloche-tar; NULL for privileged containers. */
const char *garden_seccomp_path(const Garden *g, bool privileged);

/* network.c */
/* rootfs.c: the image an unprivileged container's idmapped lower is made from:
 * rootfs, or its copy in the depot when rootfs cannot be idmapped here (*ret:
 * malloc'd). A clear 500 when neither can be. */
int garden_rootfs_lower(Garden *g, const char *rootfs, bool privileged, char **ret,
                        ApiError *reterr);
/* At start-up: warn when the default rootfs cannot be idmapped, saying what
 * happens instead and what would work. */
void garden_rootfs_check_default(Garden *g);
int garden_net_setup(Garden *g);
void garden_net_free(Garden *g);
/* Address, id and host ports for a new container (rec.net, properties). */
int garden_net_allocate(Garden *g, Container *c, ApiError *reterr);
/* Links and firewall state, once the container's init (and netns) exists. */
int garden_net_attach(Garden *g, Container *c, pid_t init_pid, ApiError *reterr);
/* Undo both (idempotent). */
void garden_net_release(Garden *g, Container *c);
/* Restore: the firewall state checked against g->restore_presence (rebuilt when
 * missing); the address and ports were reserved before (garden_net_reserve). */
int garden_net_restore(Garden *g, Container *c);
/* The address and host ports of the record held in the pools again (restore). */
void garden_net_reserve(Garden *g, Container *c);
/* A stop before a start: the links and firewall state go, the address and host
 * ports stay held (garden_net_attach makes them again). */
void garden_net_detach(Garden *g, Container *c);
/* After restoring: remove firewall state and links of containers that are gone. */
void garden_net_prune(Garden *g);

/* bridges.c: bridges left without containers, deleted by a thread of their own. */
void *garden_bridge_reaper(void *userdata);
void garden_bridge_spare(Garden *g, const char *bridge); /* under net_lock */
void garden_bridge_doom(Garden *g, const char *bridge);

/* The host end of the container's veth pair. */
void garden_net_host_if(const Garden *g, const ContainerNet *net, char *buf, size_t size);
/* Counters of a host-side link from a snapshot of every link up to 2 s old. */
int garden_net_stats_cached(Garden *g, const char *host_if, NetDevStats *ret);
/* The same by ifindex (the sampler keeps each container's); -ENOENT when the
 * snapshot has no such link. */
int garden_net_stats_indexed(Garden *g, unsigned ifindex, NetDevStats *ret);
/* A host link's ifindex by name (one ioctl), 0 if there is none. */
unsigned garden_net_host_ifindex(Garden *g, const char *host_if);
/* Bandwidth shaping of the container's host-side link (rate 0 = none). */
int garden_net_set_bandwidth(Garden *g, Container *c, const BandwidthLimits *b, ApiError *reterr);

/* restore.c */
/* Load the depot: every container in the registry (reserved, marked restoring)
 * before this returns; their kernel side re-attached by a pool of threads after
 * it. */
int garden_restore_start(Garden *g);
/* Wait for the pool (garden_free). */
void garden_restore_join(Garden *g);
/* registry.c: insert c and arm its grace timer (takes c's first reference). */
int garden_insert(Garden *g, Container *c);
/* Wait until c is restored (a reference held, c->lock not). */
void garden_restore_wait(Container *c);

/* oom.c */
int garden_oom_setup(Garden *g);
void garden_oom_free(Garden *g);
void garden_oom_watch(Garden *g, Container *c);
void garden_oom_unwatch(Garden *g, Container *c);

/* sampler.c */
int garden_sampler_start(Garden *g);
void garden_sampler_stop(Garden *g);
void garden_history_restore(Garden *g, Container *c);

/* metrics.c: walk a plain writable layer again if its last walk is older than
 * older_than_ns (the sampler's background refresh, so bulk calls walk nothing). */
void garden_disk_refresh(Garden *g, Container *c, int64_t older_than_ns);

/* limits.c */
int garden_validate_limits(const Limits *l, unsigned kinds, ApiError *reterr);
int garden_apply_cgroup_limits(Container *c, const Limits *l, ApiError *reterr);
int garden_disk_limit(Garden *g, const ContainerRecord *rec, const DiskLimits *d,
                      struct DiskLimit *ret, ApiError *reterr);
/* Bytes and inodes of an image directory (measured once per path, then cached). */
int garden_image_size(Garden *g, const char *path, uint64_t *ret_bytes, uint64_t *ret_inodes);

/* process.c */
void garden_kill_shims(Garden *g, Container *c);
/* After a stop killed the processes: wait (up to timeout_ms) for the shims to
 * record their exit statuses, then end them. */
void garden_end_shims(Garden *g, Container *c, int timeout_ms);
/* The container's cgroup directories on the host, one per hierarchy (malloc'd,
 * NULL-terminated; NULL on ENOMEM). */
char **garden_cgroup_dirs(Garden *g, const char *handle);

/* start.c */
/* Record a client's Stop: state stopped, stopped_by_client, the cloche.state
 * property (c->lock not held). */
int garden_record_stopped(Garden *g, Container *c);
/* At start-up, for a restored record whose init is gone: if its service's
 * restart policy wants it back (and no client stopped it), hold its ids,
 * address and ports and register it stopped, to be started by
 * garden_reboot_start_all once every record is loaded. false: remove it. */
bool garden_reboot_adopt(Garden *g, Container *c);
/* Whether a container's writable layer may be used again after a reboot: its
 * service's restart policy brings it back (wanted_after_reboot). Any other
 * layer is mounted volatile (SandboxSpec.volatile_layer): a restarted daemon
 * removes the container once its init is gone. */
bool garden_layer_outlives_reboot(const ContainerSpec *spec);
void garden_reboot_start_all(Garden *g);
/* restore.c: c is restored (gone: and has left); waiters go on. */
void garden_restore_done(Container *c, bool gone);

/* events.c: the ring of events behind GET /cloche/events. */
int garden_events_setup(Garden *g);
/* Wake every reader waiting for events and make them return (shutdown). */
void garden_events_stop(Garden *g);
void garden_events_free(Garden *g);
/* Record an event (type: created, started, stopped, destroyed, oom,
 * service_exited, service_restarted, limits_changed); process_id and message
 * may be NULL, exit_status -1 when there is none. Never blocks on readers. */
void garden_event_emit(Garden *g, const char *type, const char *handle, const char *process_id,
                       int exit_status, const char *message);

/* registry.c */
/* min(--max-containers, subnets of the pool): O(1), for every create. */
uint64_t garden_max_containers(const Garden *g);
int garden_insert_new(Garden *g, Container *c, ApiError *reterr);
/* images.c: a docker:// or oci:// spec pulled into the store, its config applied
 * to spec; 1 = *ret_rootfs is the layer stack, 0 = not an image reference. */
int garden_image_resolve(Garden *g, ContainerSpec *spec, char **ret_rootfs, ApiError *reterr);
/* Tell the image store which layers the containers use (attach = false: stop). */
void garden_images_attach(Garden *g, bool attach);
Container *container_new(ContainerRecord *rec);
void garden_unregister(Garden *g, Container *c);
int garden_persist(Garden *g, Container *c);
void garden_arm_grace(Garden *g, Container *c);
/* Tear down a container claimed for destroying (or undoing its create): every
 * step, then the depot entry and the registry entry. On failure the container is
 * left destroying and retried later; *ret_what names the step that failed. */
int garden_teardown_claimed(Garden *g, Container *c, const char **ret_what);

/* stats.c: the memory, cpu and pid counters of cg into ret's fields. */
int garden_cgroup_stats(const Cgroup *cg, ContainerMetrics *ret);

/* failure.c: a Failure from the modules below as the API's error: the caller's
 * input is a 400, an executable that cannot run a 500 ExecutableNotFoundError,
 * anything else a 500; the message as it is. Returns r. When f holds nothing
 * (a garden callback filled reterr itself), reterr is left alone. */
int garden_failure(ApiError *reterr, const Failure *f, int r);
/* The same for the image store, whose input failures are 400, 404 or 409. */
int garden_image_failure(ApiError *reterr, const Failure *f, int r);

/* pea.c: what a process with its own image or limits (a pea) gets before its
 * shim starts. */
#include "cloche/proc.h"
typedef struct GardenPea {
    char **lowers;    /* the image's layer directories, top first; NULL: no image */
    char *root;       /* <process directory>/rootfs: its upper and work */
    char **image_env; /* a pulled image's Env, or NULL */
    Cgroup *cgroup;   /* its own group (override_container_limits), or NULL */
} GardenPea;
/* Resolve the spec's image and make the pea's layer (<container>/peas/<id>, in
 * the depot) and, with override_container_limits, its cgroup. Nothing to do
 * (and 0) for a process with neither. */
int garden_pea_prepare(Garden *g, Container *c, const ProcessSpec *spec, const char *id,
                       GardenPea *ret, ApiError *reterr);
/* Free it (a started pea's shim removes the layer and group). */
void garden_pea_done(GardenPea *p);
/* Its start failed: remove its layer and cgroup too, then free it. */
void garden_pea_abort(GardenPea *p);
/* Call visit with the layers (':'-joined) of each pea of the container that
 * still has its layer, for the image store's in-use check. */
void garden_pea_visit_images(Garden *g, const char *handle, void (*visit)(const char *, void *),
                             void *ctx);
/* user ("" = root, a name or uid:gid) in the pea's own /etc/passwd. */
int garden_pea_resolve_user(const GardenPea *p, const char *user, ProcUser *ret, ApiError *reterr);
/* service.c (cloche_service) */
#define GARDEN_LOGS_DIR "logs"      /* <container>/logs/<process id>.log[.N] */
#define GARDEN_PEAS_DIR "peas"      /* <container>/peas/<process id>: a pea's writable layer */
#define GARDEN_SERVICE_ID "service" /* the service's process id */
/* Start the service process (id "service") of an active container that has one;
 * 0 when it has none or it runs already. Create calls it; so does start. */
int container_service_start(Garden *g, Container *c, ApiError *reterr);
/* Tell the service's monitor to start it no more (Stop, before its SIGTERM). */
void garden_service_quit(Garden *g, Container *c);
/* A service with no path takes the image's Entrypoint/Cmd, WorkingDir and User. */
int garden_service_apply_image(ServiceSpec *service, const ImageConfig *ic);
/* process.c: Run, supervised by the monitor when service is not NULL. */
int garden_run_supervised(Garden *g, Container *c, ProcessSpec *spec, const ServiceSpec *service,
                          char **ret_id, ApiError *reterr);
/* service-watch.c: service_exited and service_restarted events, from an inotify
 * watch on each service's process directory (one thread). */
typedef struct ServiceWatch ServiceWatch;
int garden_service_watch_setup(Garden *g);
void garden_service_watch_free(Garden *g);
/* Watch c's service: fresh = just started (its runs so far are reported);
 * otherwise (restored) its state is taken as found. */
void garden_service_watch(Garden *g, Container *c, bool fresh);
/* process.c: an O_PATH fd of the process directory of id. */
int garden_process_dir_fd(Garden *g, Container *c, const char *id, int *ret);
/* 1 when process id runs (or waits out a back-off); otherwise its directory is
 * removed (0), so the id can be used again. */
int garden_process_forget_finished(Garden *g, Container *c, const char *id);
/* Is the monitor recorded in the process directory still alive? */
bool garden_process_monitored(int dirfd);
