/* Address pools for container networking.
 *
 * NetPool: the subnet pool (--network-pool, default 10.254.0.0/22) carved into /30s,
 * one per container (network .0, gateway .1, container .2, broadcast .3), plus
 * caller-chosen ("static") subnets outside it, which several containers may share.
 * PortPool: the NetIn host-port pool (--port-pool-start/-size), FIFO reuse.
 *
 * Both are in memory only and thread-safe (one mutex each); a restarted daemon
 * rebuilds them from the depot with the *_reserve calls. All addresses are IPv4 in
 * host byte order. Functions return 0 or a negative errno; where a caller needs
 * words for a user, a message is written to errbuf (may be NULL). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Ipv4Net {
    uint32_t network; /* masked */
    unsigned prefix;  /* 0..32 */
} Ipv4Net;

/* Parse "a.b.c.d/n" with n in min_prefix..max_prefix; host bits must be zero.
 * -EINVAL otherwise. */
int ipv4net_parse(const char *cidr, unsigned min_prefix, unsigned max_prefix, Ipv4Net *ret);
/* Parse a dotted quad. -EINVAL otherwise. */
int ipv4_parse(const char *text, uint32_t *ret);
/* Format into buf (at least 16 bytes for an address, 19 for a net); returns buf. */
char *ipv4_format(uint32_t addr, char *buf, size_t size);
char *ipv4net_format(const Ipv4Net *net, char *buf, size_t size);
static inline uint32_t ipv4net_mask(unsigned prefix)
{
    return prefix ? (uint32_t)(0xffffffffu << (32 - prefix)) : 0;
}
static inline bool ipv4net_contains(const Ipv4Net *net, uint32_t addr)
{
    return (addr & ipv4net_mask(net->prefix)) == net->network;
}
static inline bool ipv4net_overlaps(const Ipv4Net *a, const Ipv4Net *b)
{
    unsigned p = a->prefix < b->prefix ? a->prefix : b->prefix;
    return ((a->network ^ b->network) & ipv4net_mask(p)) == 0;
}

/* The old name, kept for --network-pool: a pool of /30s (prefix 1..30). */
int netpool_parse(const char *cidr, Ipv4Net *ret);

/* One container's address. */
typedef struct NetLease {
    Ipv4Net subnet;   /* the /30, or the static subnet */
    uint32_t gateway; /* subnet.network + 1: the bridge's address */
    uint32_t ip;      /* the container's address */
} NetLease;

typedef struct NetPool NetPool;

int netpool_new(const Ipv4Net *range, NetPool **ret);
void netpool_free(NetPool *pool);
/* Number of /30 subnets in the dynamic range. */
uint64_t netpool_capacity(const NetPool *pool);
/* Dynamic /30s in use (for capacity and tests). */
uint64_t netpool_used(const NetPool *pool);

/* Take an address for a new container. `request` is the spec's "network":
 *   NULL or ""     the lowest free /30 of the dynamic range (-ENOSPC when none);
 *   "a.b.c.d"      exactly that address, in its /30 (a static subnet);
 *   "a.b.c.d/n"    n in 1..30: a static subnet. If a.b.c.d is the network address,
 *                  the lowest free address of it is chosen, else exactly a.b.c.d.
 * Static subnets must not overlap the dynamic range (-EADDRINUSE) nor partially
 * overlap another static subnet in use (-EADDRINUSE); an identical one is shared.
 * The network, gateway (.1 of the subnet) and broadcast addresses are refused
 * (-EADDRNOTAVAIL); an address already taken: -EEXIST; a full static subnet:
 * -ENOSPC; a malformed request: -EINVAL. */
int netpool_acquire(NetPool *pool, const char *request, NetLease *ret, char *errbuf, size_t errlen);
/* Mark a lease taken again (restore from the depot). -EEXIST if the address is
 * taken, -EADDRINUSE if its subnet conflicts with one in use, -EINVAL if the lease
 * is inconsistent (gateway/ip outside the subnet). */
int netpool_reserve(NetPool *pool, const NetLease *lease);
/* Give a lease back. Returns true when its subnet now holds no address (its
 * bridge can go), false otherwise (also for a lease that was not held). */
bool netpool_release(NetPool *pool, const NetLease *lease);
/* Would releasing the lease empty its subnet (what netpool_release would return)? */
bool netpool_is_last(NetPool *pool, const NetLease *lease);

/* ---- NetIn host ports ---------------------------------------------------- */

#define PORT_PROTO_TCP (1u << 0)
#define PORT_PROTO_UDP (1u << 1)

typedef struct PortPool PortPool;

/* Ports start..start+size-1 (1..65535), handed out in FIFO order: a released
 * port goes to the back of the queue. */
int portpool_new(uint32_t start, uint32_t size, PortPool **ret);
void portpool_free(PortPool *pool);
/* Take the port at the head of the queue for `protos` (PORT_PROTO_* bits): it is
 * then taken for every protocol until released. -ENOSPC when the queue is empty. */
int portpool_acquire(PortPool *pool, unsigned protos, uint32_t *ret);
/* Take a specific host port (1..65535, inside or outside the pool's range) for
 * `protos`. -EEXIST if any of those protocols already holds it. A port inside
 * the range leaves the queue while any protocol holds it. */
int portpool_reserve(PortPool *pool, uint32_t port, unsigned protos);
/* Release `protos` of port; once no protocol holds a port of the range it goes
 * to the back of the queue. Releasing what is not held is a no-op. */
void portpool_release(PortPool *pool, uint32_t port, unsigned protos);
/* Ports of the range currently free (for tests). */
uint32_t portpool_free_count(const PortPool *pool);
