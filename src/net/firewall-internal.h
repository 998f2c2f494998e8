/* Private to the firewall module: the script buffer and the text of rules,
 * shared by firewall.c (transactions) and firewall-rules.c (what they say). */
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/cleanup.h"
#include "cloche/firewall.h"
#include "cloche/hashmap.h"
#include "cloche/json.h"

#define FIREWALL_TABLE_MAX 32
#define FIREWALL_ID_MAX 64
#define FIREWALL_PREFIX_MAX 14 /* leaves room for at least one more byte in IFNAMSIZ */
#define FIREWALL_LOG_PREFIX_MAX 28
#define FIREWALL_CHAIN_PREFIX "ctr-"
#define FIREWALL_CHAIN_NAME_MAX (sizeof(FIREWALL_CHAIN_PREFIX) + FIREWALL_ID_MAX)
/* nft rules one call may add to a container's chain (a FirewallRule is one rule
 * per network range and port range). */
#define FIREWALL_NETOUT_LINES_MAX 16384u
/* A transaction's text: bounds what one call may ask of nftables. */
#define FIREWALL_SCRIPT_MAX (16u << 20)

/* A growing nft script. Appending fails sticky: the first error is kept in
 * `error` and later appends do nothing. */
typedef struct FirewallScript {
    char *text;
    size_t len;
    size_t size;
    int error;
} FirewallScript;

void firewall_script_done(FirewallScript *s);
/* Every %s must be text validated by this module (names, formatted addresses). */
void firewall_script_add(FirewallScript *s, const char *fmt, ...) _printf_(2, 3);

typedef struct Ipv4Text {
    char s[INET_ADDRSTRLEN];
} Ipv4Text;

Ipv4Text firewall_ipv4_text(uint32_t addr);
/* "a.b.c.d/n" */
typedef struct Ipv4NetText {
    char s[INET_ADDRSTRLEN + 3];
} Ipv4NetText;

Ipv4NetText firewall_ipv4net_text(const Ipv4Net *net);

/* Names written unquoted into scripts: letters, digits, '_' and '-' (ids, the
 * table); interface names also allow '.'. */
bool firewall_name_valid(const char *s, size_t max, bool allow_dot);
/* The first FIREWALL_LOG_PREFIX_MAX bytes of handle, bytes outside
 * [A-Za-z0-9._-] replaced by '_'. */
void firewall_log_prefix(const char *handle, char ret[static FIREWALL_LOG_PREFIX_MAX + 1]);

/* Append the rules for `rules` to chain (`prepend`: `insert rule`, keeping the
 * given order ahead of what the chain holds; else `add rule`). -EINVAL for a rule
 * that cannot be expressed or needs more than FIREWALL_NETOUT_LINES_MAX nft
 * rules, with the reason in err. */
int firewall_script_netout(FirewallScript *s, const char *table, const char *chain,
                           const char *log_prefix, const FirewallRule *rules, size_t n_rules,
                           bool prepend, char *err, size_t errlen);

/* The global part of the table: tables, sets, maps, base chains (created if
 * missing) and their rules (flushed and rebuilt). */
void firewall_script_globals(FirewallScript *s, const FirewallConfig *cfg);

static inline void firewall_net_interval(const Ipv4Net *net, uint32_t *ret_start, uint32_t *ret_end)
{
    *ret_start = net->network;
    *ret_end = net->network | ~ipv4net_mask(net->prefix);
}

/* ---- reading the table back (JSON listings) ---- */

/* A `list table` answer, indexed: chains and netout by name and address, ifaddr
 * by "bridge address"; netin and subnets elements are walked. */
typedef struct FirewallTableState {
    json_object *root;
    HashMap *chains; /* "ctr-<id>" -> its JSON object */
    HashMap *netout; /* "a.b.c.d" -> target chain name (a string of root) */
    HashMap *ifaddr; /* "bridge a.b.c.d" -> its JSON element */
    json_object *netin;
    json_object *subnets;
} FirewallTableState;

/* Takes root, also on failure. */
int firewall_table_state_index(json_object *root, FirewallTableState *st);
void firewall_table_state_done(FirewallTableState *st);

/* The "elem" array of set or map `name` ("set" or "map" for kind), or NULL. */
json_object *firewall_table_elements(json_object *root, const char *kind, const char *name);
/* An element with options is wrapped in {"elem": {"val": ...}}: the value. */
json_object *firewall_element_value(json_object *e);
/* An interval set element ("a", a prefix or a range) as its first and last address. */
bool firewall_json_interval(json_object *o, uint32_t *ret_start, uint32_t *ret_end);
/* A netin element: its protocol ("tcp" or "udp"), host port and destination address. */
bool firewall_netin_element(json_object *e, const char **ret_proto, unsigned *ret_port,
                            uint32_t *ret_ip);
/* Is `chain` of inet table `table` in the text of `list chains inet`? */
bool firewall_chains_listing_has(const char *listing, const char *table, const char *chain);
/* Every chain name of `table` in the text of `list chains inet`, put in ret. */
int firewall_chains_listing_index(const char *listing, const char *table, HashMap *ret);
