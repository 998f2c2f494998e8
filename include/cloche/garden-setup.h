/* The daemon's side of garden, which api/ does not see: the start-up
 * configuration (with the kernel-side objects it is given) and the restore of a
 * recorded container. */
#pragma once

#include "cloche/depot.h"
#include "cloche/garden.h"
#include "cloche/image.h"
#include "cloche/netpool.h"

typedef struct GardenConfig {
    const char *depot_path;
    const char *run_path; /* NULL: <depot>/run (depot.h) */
    const char *default_rootfs;
    uint64_t max_containers;       /* from --max-containers */
    uint64_t network_capacity;     /* number of subnets in --network-pool */
    int64_t default_grace_time_ns; /* 0 = never */
    const char *cgroup_parent;
    /* Pure v2 under systemd's Delegate=yes: the tree goes below the daemon's own
     * group, cgroup_parent is then a name inside it (cgroup_delegate_self). */
    bool cgroup_delegated;
    /* The kernel side. NULL init_path = no containers can be created (unit tests
     * of the model); otherwise cgroups are set up at start-up. */
    const char *init_path;   /* cloche-init executable */
    const char *shim_path;   /* cloche-shim executable */
    const char *tar_path;    /* cloche-tar executable (borrowed); NULL = no StreamIn/Out */
    uint32_t uid_pool_base;  /* first host id of the first per-container range */
    uint32_t uid_pool_count; /* number of ranges (0 = as many as fit, at most 4096) */
    uint32_t uid_range_size; /* ids per container (0 = SANDBOX_ID_COUNT) */
    bool uid_map_shared;     /* guardian's map for every container (SANDBOX_SHARED_ROOT) */

    /* Networking (with the kernel side). */
    Ipv4Net network_pool;
    const char *network_tag; /* up to 2 of [a-z0-9]: names links "cl<tag>..." and the
                                table "cloche<tag>", so several daemons can share a host */
    uint32_t port_pool_start;
    uint32_t port_pool_size;
    uint32_t mtu;                /* 0 = the default route's, capped at 1500 */
    uint32_t external_ip;        /* 0 = the default route interface's address */
    const uint32_t *dns_servers; /* --dns-server: containers' resolv.conf */
    size_t n_dns_servers;
    const Ipv4Net *deny_networks; /* --deny-network */
    size_t n_deny_networks;
    bool allow_host_access;
    unsigned metrics_interval_s; /* the history sampler's period; 0 = 10 s */
    ImageStore *images;          /* docker:// and oci:// images (borrowed); NULL = none */
    bool no_new_privileges;      /* --no-new-privileges: no_new_privs for every process */
} GardenConfig;

/* Open the depot, load every container recorded in it, start the grace timers.
 * Copies cfg's strings. */
int garden_new(const GardenConfig *cfg, Garden **ret);

/* Register a container from a complete record: reserves the handle (409 "Handle
 * 'H' already in use" if taken, *rec left with the caller), creates its depot
 * directory and writes the record, then arms its grace timer. On success the
 * record's contents are taken and *rec is zeroed. */
int garden_register(Garden *g, ContainerRecord *rec, ApiError *reterr);
