/* Private to the firewall module: the script buffer and the text of rules,
 * shared by firewall.c (transactions) and firewall-rules.c (what they say). */
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <pthread.h>
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
/* A container's chain, only for NetOut rules with `log` (a per-container log
 * prefix is what elements cannot say). */
#define FIREWALL_CHAIN_PREFIX "log-"
/* The chains of the layout before elements (one per container): removed when
 * found. */
#define FIREWALL_OLD_CHAIN_PREFIX "ctr-"
#define FIREWALL_CHAIN_NAME_MAX (sizeof(FIREWALL_CHAIN_PREFIX) + FIREWALL_ID_MAX)
/* nft rules one call may add to a container's log chain (a logged FirewallRule
 * is one rule per network range and port range). */
#define FIREWALL_NETOUT_LINES_MAX 16384u
/* Boxes (network range x port range) of a container's rules, before and after
 * they are made disjoint: bounds the elements and the work. The kernel's
 * concatenated-range sets insert and delete in time linear in what they hold,
 * so one transaction of n elements costs ~n^2: 16384 took 2 s to add and 10 s
 * to delete here, 4096 take ~0.1 and ~0.6 s. */
#define FIREWALL_NETOUT_BOXES_MAX 4096u
/* Elements of one batch. */
#define FIREWALL_BATCH_MAX (4u * FIREWALL_NETOUT_BOXES_MAX + 1024u)
/* A transaction's text: bounds what one call may ask of nftables. */
#define FIREWALL_SCRIPT_MAX (16u << 20)

/* ---- elements, through nfnetlink (firewall-netlink.c) ---- */

typedef enum FirewallSetId {
    FIREWALL_SET_IFADDR,      /* ifname . ipv4_addr */
    FIREWALL_SET_NETIN,       /* inet_proto . inet_service : ipv4_addr . inet_service */
    FIREWALL_SET_NETOUT_L4,   /* ipv4_addr . ipv4_addr . inet_proto . inet_service, interval */
    FIREWALL_SET_NETOUT_ICMP, /* ipv4_addr . ipv4_addr . icmp_type . icmp_code, interval */
    FIREWALL_SET_NETOUT_ANY,  /* ipv4_addr . ipv4_addr, interval */
    FIREWALL_SET_OWNER,       /* ipv4_addr : mark (the container's, by its id) */
    FIREWALL_SET_COUNT,
} FirewallSetId;

extern const char *const firewall_set_names[FIREWALL_SET_COUNT];

/* The NetOut sets are sharded by container address (bits 2-7, a /30 each): the
 * kernel's concatenated-range sets (pipapo) delete an element in time linear in
 * what the set holds (~2.5 us per element here: 10 ms at 4000 containers), so
 * each shard holds 1/64 of them. Forward jumps to the shard's chain through
 * @netout_shards. */
#define FIREWALL_NETOUT_SHARDS 64u
#define FIREWALL_SHARD_MASK "0.0.0.252"
static inline unsigned firewall_shard(uint32_t ip)
{
    return (ip >> 2) & (FIREWALL_NETOUT_SHARDS - 1);
}
static inline bool firewall_set_sharded(unsigned set)
{
    return set == FIREWALL_SET_NETOUT_L4 || set == FIREWALL_SET_NETOUT_ICMP ||
           set == FIREWALL_SET_NETOUT_ANY;
}
/* "netout_l4_12", or the set's own name. */
#define FIREWALL_SET_NAME_MAX 32
void firewall_set_name(unsigned set, unsigned shard, char buf[static FIREWALL_SET_NAME_MAX]);

/* Keys as the kernel holds them: each field big-endian, padded to 4 bytes. */
#define FIREWALL_KEY_MAX 20
typedef struct FirewallElement {
    uint8_t set;   /* FirewallSetId */
    uint8_t shard; /* of a NetOut set */
    bool remove;
    bool has_end; /* interval sets: key_end */
    uint8_t key_len;
    uint8_t data_len; /* maps: the value's length */
    uint8_t key[FIREWALL_KEY_MAX];
    uint8_t key_end[FIREWALL_KEY_MAX];
    uint8_t data[8];
} FirewallElement;

/* Elements to add or delete in one transaction, in order. Pushing fails sticky. */
typedef struct FirewallBatch {
    FirewallElement *v;
    size_t n;
    size_t size;
    int error;
} FirewallBatch;

void firewall_batch_done(FirewallBatch *b);
void firewall_batch_push(FirewallBatch *b, const FirewallElement *e, bool remove);

int firewall_netlink_open(int *ret_fd);
/* One transaction: every element of the batch, or none (the first error). */
int firewall_netlink_commit(int fd, uint32_t *seq, const char *table, const FirewallBatch *batch);
typedef int (*FirewallElementFn)(const FirewallElement *e, void *userdata);
/* Every element of a set (every shard of a sharded one), to fn (its key, key_end and data as the
 * kernel has them). */
int firewall_netlink_dump(int fd, uint32_t *seq, const char *table, FirewallSetId set,
                          FirewallElementFn fn, void *userdata);
/* The element of key->set with key->key: 1 (put in ret, if not NULL), 0 if
 * there is none, or a negative errno. */
int firewall_netlink_get(int fd, uint32_t *seq, const char *table, const FirewallElement *key,
                         FirewallElement *ret);

#define FIREWALL_ERROR_MAX 2048

/* One libnftables context (tables, chains, rules: open and log chains) and one
 * nfnetlink socket (elements), both under the lock. */
struct Firewall {
    pthread_mutex_t lock;
    struct nft_ctx *nft;
    int nl_fd;
    uint32_t nl_seq;
    FirewallConfig cfg; /* points into the fields below */
    char table[FIREWALL_TABLE_MAX + 1];
    char if_prefix[FIREWALL_PREFIX_MAX + 1];
    Ipv4Net *deny;
    uint32_t *dns;
    char error[FIREWALL_ERROR_MAX]; /* of the last failed call, under lock */
};

void firewall_set_error(Firewall *fw, const char *fmt, ...) _printf_(2, 3);
/* libnftables: one script, one transaction; with ret_output its output. Lock held. */
int firewall_run_locked(Firewall *fw, const char *script, const char **ret_output);
/* `list ...` as JSON. Lock held. */
int firewall_list_json_locked(Firewall *fw, const char *command, json_object **ret);
/* nfnetlink: one batch, one transaction; the error text set on failure. Lock held. */
int firewall_commit_locked(Firewall *fw, const FirewallBatch *batch);
int firewall_check_container(Firewall *fw, const FirewallContainer *c);
bool firewall_subnet_in_pool(const Firewall *fw, const Ipv4Net *subnet);
void firewall_chain_name(const FirewallContainer *c, char buf[static FIREWALL_CHAIN_NAME_MAX]);

/* The slow paths (firewall-prune.c), lock held. Replace every NetOut element
 * under the container's address with `add` (one transaction). */
int firewall_replace_netout_locked(Firewall *fw, const FirewallContainer *c,
                                   const FirewallBatch *add);
/* Delete what is there and the container's (unless its address is someone
 * else's now). */
int firewall_remove_listed_locked(Firewall *fw, const FirewallContainer *c,
                                  const FirewallNetIn *netin, size_t n_netin);

/* The elements every container has: its owner mark (address -> hash of its
 * id), its ifaddr binding. */
FirewallElement firewall_owner_element(const FirewallContainer *c);
FirewallElement firewall_ifaddr_element(const char *bridge, uint32_t ip);
uint32_t firewall_owner_mark(const char *id);

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

/* ---- NetOut rules as elements (firewall-netout.c) ---- */

typedef struct FirewallIpv4Range {
    uint32_t start;
    uint32_t end;
} FirewallIpv4Range;

/* 1 for an IPv4 range, 0 for an IPv6 one (containers have no IPv6: it matches
 * nothing), -EINVAL (reason in err) for anything else. */
int firewall_parse_range(const FirewallAddressRange *range, FirewallIpv4Range *ret, char *err,
                         size_t errlen);
/* -EINVAL with the reason in err for a rule that cannot be expressed. */
int firewall_rule_check(const FirewallRule *rule, char *err, size_t errlen);
/* Push the elements of a container's rules that are not logged (and with
 * own_subnet, its own subnet in netout_any) to batch, to add or to remove. */
int firewall_netout_elements(const FirewallContainer *c, const FirewallRule *rules, size_t n_rules,
                             bool own_subnet, bool remove, FirewallBatch *batch, char *err,
                             size_t errlen);
bool firewall_rules_logged(const FirewallRule *rules, size_t n_rules);

/* ---- reading the table back (JSON listings) ---- */

/* Listings, indexed: log chains and netout_log by name and address; subnets
 * elements are walked. */
typedef struct FirewallTableState {
    json_object *root;
    HashMap *chains;     /* "log-<id>" -> its JSON object */
    HashMap *netout_log; /* "a.b.c.d" -> target chain name (a string of root) */
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
/* Is `chain` of inet table `table` in the text of `list chains inet`? */
bool firewall_chains_listing_has(const char *listing, const char *table, const char *chain);
/* Every chain name of `table` in the text of `list chains inet`, put in ret. */
int firewall_chains_listing_index(const char *listing, const char *table, HashMap *ret);
