/* Network devices of containers, through libnl-route-3 on one NETLINK_ROUTE socket
 * of the daemon's network namespace (no `ip` processes): a bridge per subnet that
 * holds the gateway address, a veth pair per container whose container end is
 * created directly inside the container's network namespace.
 *
 * Teardown of a container's veth is normally left to the kernel: the pair dies
 * with the container's network namespace (a batched cleanup; deleting a netdev
 * alone costs an RCU grace period, ~17 ms here). Bridges go when their subnet
 * holds no container any more.
 *
 * A NetDev is thread-safe (calls are serialised on its socket). Functions return
 * 0 or a negative errno and never log above debug level. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct NetDev NetDev;

int netdev_open(NetDev **ret);
void netdev_free(NetDev *nd);

/* MTU of the interface holding the default IPv4 route of this namespace's main
 * table, capped at 1500; 1500 when there is no default route. */
int netdev_default_mtu(NetDev *nd, uint32_t *ret);
/* First IPv4 address of the interface holding the default route; -ENOENT when
 * there is no default route or it has no address. */
int netdev_default_address(NetDev *nd, uint32_t *ret);

typedef struct NetDevContainer {
    const char *bridge;       /* bridge of the subnet, created if missing */
    const char *host_if;      /* host end of the veth pair */
    const char *container_if; /* container end, created inside netns_fd */
    int netns_fd;             /* the container's network namespace */
    uint32_t subnet;          /* network address, host byte order */
    unsigned prefix;
    uint32_t gateway; /* bridge address */
    uint32_t ip;      /* container address */
    uint32_t mtu;     /* both ends and the bridge, 68..65535 */
} NetDevContainer;

/* Makes sure net.ipv4.ip_forward is 1 in this namespace (once per NetDev). Then:
 * the bridge (if missing: created with a random MAC of its own, the gateway
 * address and up; -EEXIST when a link of that name is not a bridge), the veth pair
 * with the peer created in netns_fd, the host end enslaved to the bridge with the
 * MTU and up; inside the container: lo up, the container end with ip/prefix, the
 * MTU, up, and a default route via the gateway. route_localnet is on for the
 * bridge, the device that routes to the container, so connections from the host's
 * 127.0.0.1 to a mapped port can reach it (the host end does not need it). On
 * failure the veth pair is removed again (a bridge this call created is removed
 * too). -EINVAL for a malformed spec. */
int netdev_setup_container(NetDev *nd, const NetDevContainer *spec);

/* Delete one link by name (a host veth whose container outlives it, a bridge
 * whose subnet is now empty, an IFB). A missing link is fine (0). */
int netdev_delete(NetDev *nd, const char *name);

/* Names of the links of this namespace whose names start with prefix (malloc'd,
 * NULL-terminated; free with strv_free()). */
int netdev_list(NetDev *nd, const char *prefix, char ***ret_names);

/* rx/tx byte and packet counters of a link in this namespace, by name, as the
 * link counts them (for a host veth: rx is what the container sent). -ENOENT
 * when there is no such link. */
typedef struct NetDevStats {
    uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
} NetDevStats;
int netdev_stats(NetDev *nd, const char *name, NetDevStats *ret);

/* The counters of every link whose name starts with prefix, from one dump (for
 * bulk metrics: one netlink exchange instead of one per container). *ret is
 * malloc'd. */
typedef struct NetDevNamedStats {
    char name[16];
    NetDevStats stats;
} NetDevNamedStats;
int netdev_stats_all(NetDev *nd, const char *prefix, NetDevNamedStats **ret, size_t *ret_n);

/* The counters of every link of the calling thread's network namespace from one
 * RTM_GETSTATS dump of the 64-bit counters alone (netdev-stats.c): far cheaper
 * than a link dump with many links. Sorted by ifindex; *ret is malloc'd. */
typedef struct NetDevIndexedStats {
    int ifindex;
    NetDevStats stats;
} NetDevIndexedStats;
int netdev_stats_dump(NetDevIndexedStats **ret, size_t *ret_n);
/* The entry of ifindex in a dump, or NULL (borrowed from all). */
const NetDevStats *netdev_stats_find(const NetDevIndexedStats *all, size_t n, int ifindex);

/* Bandwidth limits of a container, enforced on the host side where the container
 * cannot lift them. Download (towards the container): TBF at the root of host_if.
 * Upload: host_if's ingress redirected (u32 match-all + mirred) to the IFB device
 * ifb_name in this namespace (created if missing), whose root is the same TBF.
 * rate_bytes is in bytes/s, burst_bytes in bytes; burst_bytes is raised to the
 * largest frame (MTU of host_if + 14) if lower, as a smaller bucket drops
 * full-sized packets. -ERANGE above INT_MAX (libnl's limit) or for a bucket that
 * takes over 256 s to fill. Changing the rate replaces the TBFs live. rate_bytes 0
 * removes the qdiscs and the IFB (0 also when host_if is gone). The IFB lives in
 * this namespace, so it outlives the container: remove it with rate 0 or
 * netdev_delete(). If a step fails once the IFB exists, all limits are removed. */
int netdev_set_bandwidth(NetDev *nd, const char *host_if, const char *ifb_name, uint64_t rate_bytes,
                         uint64_t burst_bytes);
/* The download TBF of host_if: rate in bytes/s and burst in bytes; 0/0 when there
 * is none. -ENOENT when host_if does not exist. */
int netdev_get_bandwidth(NetDev *nd, const char *host_if, uint64_t *ret_rate, uint64_t *ret_burst);
