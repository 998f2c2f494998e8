/* The containers' firewall: one nftables table of cloche's own (family inet),
 * driven through libnftables, one transaction per call. Per-container state is map
 * and set elements plus one chain per container reached through a verdict map, so
 * adding and removing a container costs the same with 10 or 5000 others.
 *
 * Layout (table `inet <name>`):
 *   map  netin    inet_proto . inet_service : ipv4_addr . inet_service  (DNAT)
 *   map  netout   ipv4_addr : verdict            (container address -> its chain)
 *   set  subnets  ipv4_addr, interval            (every container subnet)
 *   set  ifaddr   ifname . ipv4_addr             (anti-spoofing: bridge . address)
 *   chains prerouting/output (nat: DNAT through @netin for local destinations,
 *   from outside and from the host itself, loopback included), postrouting
 *   (masquerade for egress, for 127/8 towards containers, and hairpin), forward
 *   (anti-spoof, established, dnat'ed, then `ip saddr vmap @netout`), input
 *   (what containers may reach on the host), `default` (the operator's deny list),
 *   and `ctr-<id>` per container: its NetOut rules (accept, or log then accept),
 *   its own subnet accepted, then other container subnets rejected, then
 *   `goto default`.
 *
 * A Firewall holds one nft_ctx under a mutex: thread-safe. Functions return 0 or
 * a negative errno and never log above debug level; libnftables' error text of
 * the last failure is kept for the caller (firewall_last_error). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/netpool.h"
#include "cloche/spec.h"

typedef struct FirewallConfig {
    const char *table;     /* table name, e.g. "cloche" */
    const char *if_prefix; /* every bridge and host veth starts with it, e.g. "cl" */
    Ipv4Net pool;          /* the dynamic subnet pool */
    const Ipv4Net *deny;   /* --deny-network, rejected for container egress */
    size_t n_deny;
    const uint32_t *dns;    /* --dns-server: reachable on port 53 even without */
    size_t n_dns;           /*   allow_host_access */
    bool allow_host_access; /* containers may reach the host's own services */
} FirewallConfig;

typedef struct Firewall Firewall;

/* Create the table, its maps, sets and base chains if missing, and (re)build the
 * global rules from cfg (the deny list, host access). Elements and container
 * chains that exist are kept. cfg is copied. */
int firewall_open(const FirewallConfig *cfg, Firewall **ret);
void firewall_free(Firewall *fw);
/* libnftables' error output of the last failed call ("" if none); valid until
 * the next call on fw by the same thread. */
const char *firewall_last_error(Firewall *fw);

typedef struct FirewallContainer {
    const char *id;     /* short unique id: names the chain "ctr-<id>" */
    const char *handle; /* for the log prefix (first 28 bytes) */
    const char *bridge; /* the bridge its traffic enters the host through */
    Ipv4Net subnet;
    uint32_t ip;
} FirewallContainer;

typedef struct FirewallNetIn {
    uint32_t host_port;
    uint32_t container_port;
    unsigned protos; /* PORT_PROTO_TCP | PORT_PROTO_UDP */
} FirewallNetIn;

/* One transaction: the container's chain with its rules, its netout and ifaddr
 * elements, its subnet in @subnets, its NetIn elements. Fails whole (nothing
 * added) on error. -EEXIST if a NetIn host port is mapped already. */
int firewall_add_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                           size_t n_netin, const NetOutRule *rules, size_t n_rules);
/* One transaction, idempotent: removes everything firewall_add_container and the
 * calls below added for the container (netin elements given by the caller, who
 * keeps the list). The subnet leaves @subnets only if last_in_subnet. */
int firewall_remove_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                              size_t n_netin, bool last_in_subnet);
/* Add NetIn mappings (one transaction). -EEXIST if a host port is mapped. */
int firewall_add_netin(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                       size_t n_netin);
/* Add NetOut rules to the container's chain, ahead of its final verdicts (one
 * transaction; BulkNetOut is one call). -EINVAL for a rule nftables cannot
 * express (its message in firewall_last_error). */
int firewall_add_netout(Firewall *fw, const FirewallContainer *c, const NetOutRule *rules,
                        size_t n_rules);

/* Start-up repair: remove every container chain, map and set element that
 * belongs to none of `live` (lists the table once). */
int firewall_prune(Firewall *fw, const FirewallContainer *live, size_t n_live);
/* Does the container's chain exist? 1 yes, 0 no (start-up: rebuild if missing). */
int firewall_has_container(Firewall *fw, const FirewallContainer *c);
