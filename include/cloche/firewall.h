/* The containers' firewall: one nftables table of cloche's own (family inet),
 * driven through libnftables, one transaction per call. Per-container state is map
 * and set elements plus one chain per container reached through a verdict map.
 *
 * Layout (table `inet <name>`):
 *   map  netin    inet_proto . inet_service : ipv4_addr . inet_service  (DNAT)
 *   map  netout   ipv4_addr : verdict            (container address -> its chain)
 *   set  subnets  ipv4_addr, interval            (the pool range, and each static
 *                                                 subnet outside it)
 *   set  ifaddr   ifname . ipv4_addr             (anti-spoofing: bridge . address)
 *   chains prerouting/output (nat: DNAT through @netin for local destinations,
 *   from outside and from the host itself, loopback included), postrouting
 *   (masquerade for egress, for 127/8 towards containers, and hairpin), forward
 *   (anti-spoof, established, dnat'ed, then `ip saddr vmap @netout`, then drop),
 *   input (what containers may reach on the host: established, ping, DNS to the
 *   --dns-server addresses, then all or nothing), `default` (the operator's deny
 *   list, then accept), and `ctr-<id>` per container: its NetOut rules (accept,
 *   or log then accept), its own subnet accepted, then other container subnets
 *   rejected, then `goto default`. A NetOut rule becomes one nft rule per
 *   network range and port range: no anonymous sets, which libnftables 1.0.6
 *   would list (with their elements) before every transaction.
 *
 * Cost: libnftables 1.0.6 lists every chain of the table before each transaction
 * that adds rules or elements or deletes anything, so adding or removing a
 * container costs ~0.4 ms plus ~1.3 ms per 1000 containers.
 *
 * What callers must provide for traffic to pass: net.ipv4.ip_forward on;
 * route_localnet on each bridge (connections from the host's 127.0.0.1 to a
 * mapped port); hairpin mode on each bridge port when br_netfilter is active
 * (bridge-nf-call-iptables=1), or a container cannot reach its own mapped port.
 *
 * A Firewall holds one nft_ctx under a mutex: thread-safe. Functions return 0 or
 * a negative errno and never log above debug level; libnftables' error text of
 * the last failure (or the reason a call refused its input) is kept for the
 * caller (firewall_last_error). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/netpool.h"

/* One NetOut rule in the firewall's own terms (garden converts Garden's). */
typedef enum FirewallProtocol {
    FIREWALL_PROTOCOL_ALL = 0,
    FIREWALL_PROTOCOL_TCP = 1,
    FIREWALL_PROTOCOL_UDP = 2,
    FIREWALL_PROTOCOL_ICMP = 3,
    FIREWALL_PROTOCOL_ICMPV6 = 4,
} FirewallProtocol;

typedef struct FirewallAddressRange {
    const char *start; /* textual IPv4 or IPv6 address (borrowed) */
    const char *end;
} FirewallAddressRange;

typedef struct FirewallPortRange {
    uint16_t start;
    uint16_t end;
} FirewallPortRange;

typedef struct FirewallRule {
    FirewallProtocol protocol;
    const FirewallAddressRange *networks; /* borrowed; none = any destination */
    size_t n_networks;
    const FirewallPortRange *ports; /* borrowed; tcp and udp only; none = any port */
    size_t n_ports;
    bool has_icmp_type; /* icmp only: match this type (and code, if has_icmp_code) */
    uint8_t icmp_type;
    bool has_icmp_code;
    uint8_t icmp_code;
    bool log;
} FirewallRule;

typedef struct FirewallConfig {
    const char *table;      /* table name, e.g. "cloche": [A-Za-z][A-Za-z0-9_-]{0,31} */
    const char *if_prefix;  /* every bridge and host veth starts with it, e.g. "cl":
                             * [A-Za-z0-9._-]{1,14} */
    Ipv4Net pool;           /* the dynamic subnet pool */
    const Ipv4Net *deny;    /* --deny-network, rejected for container egress */
    size_t n_deny;          /* at most 1024 */
    const uint32_t *dns;    /* --dns-server: reachable on port 53 even without */
    size_t n_dns;           /*   allow_host_access (at most 64) */
    bool allow_host_access; /* containers may reach the host's own services */
} FirewallConfig;

typedef struct Firewall Firewall;

/* Create the table, its maps, sets and base chains if missing, and (re)build the
 * global rules from cfg (the deny list, host access). Elements and container
 * chains that exist are kept; a pool range that changed replaces the old one in
 * @subnets. cfg is copied. */
int firewall_open(const FirewallConfig *cfg, Firewall **ret);
void firewall_free(Firewall *fw);
/* libnftables' error output of the last failed call ("" if none); valid until
 * the next call on fw by the same thread. */
const char *firewall_last_error(Firewall *fw);

typedef struct FirewallContainer {
    const char *id;     /* short unique id: names the chain "ctr-<id>"; [A-Za-z0-9_-]{1,64} */
    const char *handle; /* for the log prefix: its first 28 bytes, bytes outside
                         * [A-Za-z0-9._-] as '_'; NULL = the id */
    const char *bridge; /* the bridge its traffic enters the host through; starts
                         * with if_prefix */
    Ipv4Net subnet;
    uint32_t ip;
} FirewallContainer;

typedef struct FirewallNetIn {
    uint32_t host_port;      /* 1..65535 */
    uint32_t container_port; /* 0 = host_port */
    unsigned protos;         /* PORT_PROTO_TCP | PORT_PROTO_UDP, at least one */
} FirewallNetIn;

/* One transaction: the container's chain with its rules, its netout and ifaddr
 * elements, its subnet in @subnets, its NetIn elements. Fails whole (nothing
 * added) on error. -EEXIST if a NetIn host port is mapped to another destination
 * already, or the address leads to another container's chain; -EINVAL for bad
 * input or a rule nftables cannot express (the reason in firewall_last_error).
 * Idempotent: adding a container again rebuilds its chain from `rules` (the
 * same mappings and elements again are no error), which is how a container
 * whose state is incomplete is repaired. */
int firewall_add_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                           size_t n_netin, const FirewallRule *rules, size_t n_rules);
/* One transaction, idempotent: removes everything firewall_add_container and the
 * calls below added for the container (netin elements given by the caller, who
 * keeps the list). The subnet leaves @subnets only if last_in_subnet. */
int firewall_remove_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                              size_t n_netin, bool last_in_subnet);
/* Add NetIn mappings (one transaction). -EEXIST if a host port is mapped to
 * another destination (the same mapping again is no error). */
int firewall_add_netin(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                       size_t n_netin);
/* Add NetOut rules to the container's chain, ahead of its final verdicts and of
 * the rules it has (one transaction; BulkNetOut is one call). -EINVAL for a rule
 * nftables cannot express (ports with protocol all, a range ending before it
 * starts, a malformed address, more than 16384 nft rules in one call), its
 * message in firewall_last_error; -ENOENT if the container has no chain. IPv6
 * networks and ICMPv6 match nothing (containers have no IPv6) and are skipped. */
int firewall_add_netout(Firewall *fw, const FirewallContainer *c, const FirewallRule *rules,
                        size_t n_rules);

/* Start-up repair: remove every container chain, map and set element that
 * belongs to none of `live` (by id and by address; lists the table once, one
 * transaction). A live container's chain is kept even if its elements are not all
 * there; firewall_add_container repairs it. */
int firewall_prune(Firewall *fw, const FirewallContainer *live, size_t n_live);
/* Does the container's chain exist? 1 yes, 0 no, or a negative errno (start-up:
 * rebuild if missing). Costs a listing of the chain names, ~1.5 ms with 1000. */
int firewall_has_container(Firewall *fw, const FirewallContainer *c);
/* The container chains of the table, listed once (start-up restores many
 * containers: one listing for all instead of one each, which grew with their
 * number). Read-only once loaded, so threads may share it. */
typedef struct FirewallChainSet FirewallChainSet;
int firewall_chain_set_load(Firewall *fw, FirewallChainSet **ret);
/* 1 if the container's chain was in the listing, 0 if not, -EINVAL for a bad id. */
int firewall_chain_set_has(const FirewallChainSet *set, const FirewallContainer *c);
void firewall_chain_set_free(FirewallChainSet *set);
