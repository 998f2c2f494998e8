/* Private to src/garden: the registry's structures, shared by registry.c (the
 * model) and lifecycle.c (the kernel side of create, stop, destroy, restore). */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "cloche/cgroup.h"
#include "cloche/depot.h"
#include "cloche/disk.h"
#include "cloche/firewall.h"
#include "cloche/netdev.h"
#include "cloche/netpool.h"
#include "cloche/garden.h"
#include "cloche/grace.h"
#include "cloche/hashmap.h"
#include "cloche/history.h"
#include "cloche/sandbox.h"

struct Container {
    atomic_uint refcount;
    pthread_mutex_t lock;
    ContainerRecord rec;        /* under lock */
    GraceTimer grace;           /* under lock */
    int64_t grace_scheduled_ns; /* earliest deadline queued in the service, under lock */

    /* Kernel objects (set once the container exists; torn down by destroy). */
    Cgroup *cgroup;
    int init_pidfd;     /* -1 when unknown */
    bool init_is_child; /* cloned by this daemon: must be reaped */
    bool busy;          /* a stop or destroy holds the kernel side */
    bool net_attached;  /* links and firewall state exist (or were restored) */
    int oom_fd;         /* the OOM watch (oom.c), -1 when not watched */
    size_t oom_slot;
    uint64_t oom_count; /* the kernel's oom_kill count last seen, under lock */

    /* Metrics history (sampler.c), under lock. */
    History *history;
    int64_t sample_mono_ns;
    uint64_t sample_cpu_ns, sample_rx, sample_tx;
    unsigned samples_unsaved;
    /* The last walk of a plain writable layer (metrics.c), under lock. */
    int64_t disk_walked_ns;
    DiskUsage disk_walked;
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
    NetDevNamedStats *stats;    /* sorted by name */
    size_t n_stats;
    int64_t stats_at_ns;

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

    /* garden_image_size's cache, under lock. */
    struct ImageSize *image_sizes;
    size_t n_image_sizes;
};

struct ImageSize {
    char *path;
    uint64_t bytes, inodes;
};

/* lifecycle.c */
int garden_kernel_setup(Garden *g);
void garden_kernel_free(Garden *g);
/* Re-attach to a restored container's kernel objects; -ESRCH if they are gone. */
int garden_kernel_restore(Garden *g, Container *c);
/* Kill and remove the container's kernel objects (idempotent). */
int garden_kernel_teardown(Garden *g, Container *c);
/* Tear down what a record describes, for records that are not restored. */
void garden_kernel_cleanup_record(Garden *g, const ContainerRecord *rec);
void container_free_kernel(Container *c);

/* network.c */
int garden_net_setup(Garden *g);
void garden_net_free(Garden *g);
/* Address, id and host ports for a new container (rec.net, properties). */
int garden_net_allocate(Garden *g, Container *c, ApiError *reterr);
/* Links and firewall state, once the container's init (and netns) exists. */
int garden_net_attach(Garden *g, Container *c, pid_t init_pid, ApiError *reterr);
/* Undo both (idempotent). */
void garden_net_release(Garden *g, Container *c);
int garden_net_restore(Garden *g, Container *c);
/* After restoring: remove firewall state and links of containers that are gone. */
void garden_net_prune(Garden *g);

/* The host end of the container's veth pair. */
void garden_net_host_if(const Garden *g, const ContainerNet *net, char *buf, size_t size);
/* Counters of a host-side link from a snapshot of every link up to 2 s old. */
int garden_net_stats_cached(Garden *g, const char *host_if, NetDevStats *ret);
/* Bandwidth shaping of the container's host-side link (rate 0 = none). */
int garden_net_set_bandwidth(Garden *g, Container *c, const BandwidthLimits *b, ApiError *reterr);

/* oom.c */
int garden_oom_setup(Garden *g);
void garden_oom_free(Garden *g);
void garden_oom_watch(Garden *g, Container *c);
void garden_oom_unwatch(Garden *g, Container *c);

/* sampler.c */
int garden_sampler_start(Garden *g);
void garden_sampler_stop(Garden *g);
void garden_history_restore(Garden *g, Container *c);

/* limits.c */
int garden_validate_limits(const Limits *l, unsigned kinds, ApiError *reterr);
int garden_apply_cgroup_limits(Container *c, const Limits *l, ApiError *reterr);
int garden_disk_limit(Garden *g, const ContainerRecord *rec, const DiskLimits *d,
                      struct DiskLimit *ret, ApiError *reterr);
/* Bytes and inodes of an image directory (measured once per path, then cached). */
int garden_image_size(Garden *g, const char *path, uint64_t *ret_bytes, uint64_t *ret_inodes);

/* process.c */
void garden_kill_shims(Garden *g, Container *c);
/* The container's cgroup directories on the host, one per hierarchy (malloc'd,
 * NULL-terminated; NULL on ENOMEM). */
char **garden_cgroup_dirs(Garden *g, const char *handle);

/* registry.c */
/* min(--max-containers, subnets of the pool): O(1), for every create. */
uint64_t garden_max_containers(const Garden *g);
int garden_insert_new(Garden *g, Container *c, ApiError *reterr);
Container *container_new(ContainerRecord *rec);
void garden_unregister(Garden *g, Container *c);
int garden_persist(Garden *g, Container *c);
void garden_arm_grace(Garden *g, Container *c);
