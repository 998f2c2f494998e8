/* The containers' firewall: one nftables table of cloche's own (family inet).
 * Per-container state is set and map elements only (design.md section 8), plus a
 * chain for a container with logged NetOut rules.
 *
 * Layout (table `inet <name>`):
 *   map  netin       inet_proto . inet_service : ipv4_addr . inet_service  (DNAT)
 *   map  owner       ipv4_addr : mark          (whose an address is: a hash of the id)
 *   set  ifaddr      ifname . ipv4_addr        (anti-spoofing: bridge . address)
 *   set  netout_l4   container . destination range . protocol . port range
 *   set  netout_icmp container . destination range . type range . code range
 *   set  netout_any  container . destination range (protocol all; the own subnet)
 *   map  netout_log  ipv4_addr : verdict       (jump to `log-<id>`, logged rules)
 *   set  subnets     ipv4_addr, interval       (the pool range, and each static
 *                                               subnet outside it)
 *   chains prerouting/output (nat: DNAT through @netin for local destinations,
 *   from outside and from the host itself, loopback included), postrouting
 *   (masquerade for egress, for 127/8 towards containers, and hairpin), forward
 *   (anti-spoof, established, dnat'ed, then `ip saddr vmap @netout_log`, then the
 *   three NetOut sets accept, then other container subnets rejected, then `goto
 *   default`), input (what containers may reach on the host: established, ping,
 *   DNS to the --dns-server addresses, then all or nothing), `default` (the
 *   operator's deny list, then accept), and `log-<id>` for a container with
 *   logged rules: one `log prefix ... accept` rule per network and port range.
 *   A container's rules are cut into disjoint elements (the kernel refuses
 *   overlapping ones in a set): rules only allow, so their union is what counts.
 *
 * Cost: elements are written and deleted through nfnetlink directly, one batch
 * (one kernel transaction) per call, ~0.1 ms whatever the table holds; tables,
 * chains and rules through libnftables (open, log chains, static subnets), which
 * lists the table's chains and sets first.
 *
 * What callers must provide for traffic to pass: net.ipv4.ip_forward on;
 * route_localnet on each bridge (connections from the host's 127.0.0.1 to a
 * mapped port); hairpin mode on each bridge port when br_netfilter is active
 * (bridge-nf-call-iptables=1), or a container cannot reach its own mapped port.
 *
 * A Firewall holds one nft_ctx and one netlink socket under a mutex:
 * thread-safe. Functions return 0 or a negative errno and never log above debug
 * level; the error text of the last failure (or the reason a call refused its
 * input) is kept for the caller (firewall_last_error). */
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
 * global rules from cfg (the deny list, host access). Elements and log chains
 * that exist are kept; a pool range that changed replaces the old one in
 * @subnets. A table of the older layout (a `ctr-<id>` chain per container,
 * reached through a `netout` verdict map) loses those chains and that map: its
 * containers have no owner element then, and are rebuilt by the restore. cfg is
 * copied. */
int firewall_open(const FirewallConfig *cfg, Firewall **ret);
void firewall_free(Firewall *fw);
/* The error text of the last failed call ("" if none); valid until the next
 * call on fw by the same thread. */
const char *firewall_last_error(Firewall *fw);

typedef struct FirewallContainer {
    const char *id;     /* short unique id: names the log chain "log-<id>" and makes
                         * the owner mark; [A-Za-z0-9_-]{1,64} */
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

/* One transaction of elements: owner, ifaddr, NetOut (its rules and its own
 * subnet), NetIn; before it, for a static subnet outside the pool or logged
 * rules, one libnftables transaction (the subnet in @subnets, the log chain).
 * Fails whole on error. -EEXIST if a NetIn host port is mapped to another
 * destination already, or the address is another container's; -EINVAL for bad
 * input or a rule that cannot be expressed (the reason in firewall_last_error).
 * Idempotent: adding a container again is no error, and replaces NetOut
 * elements under its address that differ (how a container whose state is
 * incomplete is repaired). */
int firewall_add_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                           size_t n_netin, const FirewallRule *rules, size_t n_rules);
/* Idempotent: removes everything firewall_add_container and the calls below
 * added for the container, given its NetIn mappings and NetOut rules (the
 * caller keeps both). One transaction of elements when the table matches them;
 * otherwise what is listed there and is the container's (not under an address
 * another container owns now). The subnet leaves @subnets only if
 * last_in_subnet. */
int firewall_remove_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                              size_t n_netin, const FirewallRule *rules, size_t n_rules,
                              bool last_in_subnet);
/* Add NetIn mappings (one transaction). -EEXIST if a host port is mapped to
 * another destination (the same mapping again is no error). */
int firewall_add_netin(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                       size_t n_netin);
/* NetOut rules: rules[0, n_old) are the container's already, rules[n_old,
 * n_all) are added (BulkNetOut is one call): the elements of the old rules are
 * replaced by those of all of them in one transaction. -EINVAL for a rule that
 * cannot be expressed (ports with protocol all, a range ending before it
 * starts, a malformed address, more than 16384 elements or log rules), its
 * message in firewall_last_error. IPv6 networks and ICMPv6 match nothing
 * (containers have no IPv6) and are skipped. */
int firewall_add_netout(Firewall *fw, const FirewallContainer *c, const FirewallRule *rules,
                        size_t n_old, size_t n_all);

/* Start-up repair: remove every element, log chain and @subnets range that
 * belongs to none of `live` (by id and by address). One dump per set, one
 * transaction of elements, O(table) once. A live container's elements are kept
 * even if not all there; firewall_add_container repairs it. */
int firewall_prune(Firewall *fw, const FirewallContainer *live, size_t n_live);
/* Is the container's owner element there (its address, its id)? 1 yes, 0 no, or
 * a negative errno (start-up: rebuild if missing). One element looked up. */
int firewall_has_container(Firewall *fw, const FirewallContainer *c);
/* The owner elements, dumped once (start-up restores many containers). Read-only
 * once loaded, so threads may share it. */
typedef struct FirewallPresence FirewallPresence;
int firewall_presence_load(Firewall *fw, FirewallPresence **ret);
/* 1 if the container's owner element was there, 0 if not, -EINVAL for a bad id. */
int firewall_presence_has(const FirewallPresence *p, const FirewallContainer *c);
void firewall_presence_free(FirewallPresence *p);
