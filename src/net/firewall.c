/* The containers' firewall: one libnftables context under a mutex, one
 * transaction (one nft_run_cmd_from_buffer) per call. The text of the rules is
 * built in firewall-rules.c; this file validates what callers hand in, runs the
 * transactions and reads the table back (JSON) where a repair needs to know what
 * is there.
 *
 * Idempotent deletes without listing: `add` then `delete` of the same element in
 * one transaction (a `delete` of a missing element would fail the whole
 * transaction), `add chain` + `flush chain` + `delete chain` for the chain. Adding
 * is idempotent as well: an element that is present with the same value is no
 * error, one present with another value (a host port mapped to someone else) is
 * EEXIST from the kernel. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "cloche/cleanup.h"
#include "cloche/firewall.h"
#include "cloche/hashmap.h"
#include "cloche/json.h"
#include "firewall-internal.h"

#define FIREWALL_ERROR_MAX 2048
#define FIREWALL_DENY_MAX 1024
#define FIREWALL_DNS_MAX 64

struct Firewall {
    pthread_mutex_t lock;
    struct nft_ctx *nft;
    FirewallConfig cfg; /* points into the fields below */
    char table[FIREWALL_TABLE_MAX + 1];
    char if_prefix[FIREWALL_PREFIX_MAX + 1];
    Ipv4Net *deny;
    uint32_t *dns;
    char error[FIREWALL_ERROR_MAX]; /* of the last failed call, under lock */
};

static __thread char thread_error[FIREWALL_ERROR_MAX];

static void set_error(Firewall *fw, const char *fmt, ...) _printf_(2, 3);
static void set_error(Firewall *fw, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fw->error, sizeof(fw->error), fmt, ap);
    va_end(ap);
}

/* libnftables reports kernel errors as strerror() text ("Could not process rule:
 * File exists"); anything else (syntax, evaluation) is a script it refused. */
static int error_from_message(const char *msg)
{
    static const int known[] = {EEXIST, ENOENT,     EBUSY,  ENOMEM, EPERM,    ENOSPC,
                                E2BIG,  EOPNOTSUPP, EMLINK, ENFILE, EOVERFLOW};
    for (size_t i = 0; i < ELEMENTSOF(known); i++)
        if (strstr(msg, strerrordesc_np(known[i])))
            return -known[i];
    if (strstr(msg, "does not exist"))
        return -ENOENT;
    return -EINVAL;
}

/* Run one script (one transaction). With ret_output, the output buffer is
 * returned (valid until the next run). Lock held. */
static int run_locked(Firewall *fw, const char *script, const char **ret_output)
{
    int rc = nft_run_cmd_from_buffer(fw->nft, script);
    /* Reading the buffers also rewinds them for the next command. */
    const char *output = nft_ctx_get_output_buffer(fw->nft);
    const char *msg = nft_ctx_get_error_buffer(fw->nft);
    if (rc != 0) {
        set_error(fw, "%s", msg && *msg ? msg : "nftables failed without a message");
        size_t len = strlen(fw->error);
        while (len > 0 && fw->error[len - 1] == '\n')
            fw->error[--len] = '\0';
        return error_from_message(fw->error);
    }
    fw->error[0] = '\0';
    if (ret_output)
        *ret_output = output;
    return 0;
}

static int run_script_locked(Firewall *fw, const FirewallScript *s)
{
    if (s->error) {
        set_error(fw, "Failed to build the nftables script: %s", strerrordesc_np(-s->error));
        return s->error;
    }
    return run_locked(fw, s->text ? s->text : "", NULL);
}

/* `list ...` as JSON. Lock held. */
static int list_json_locked(Firewall *fw, const char *command, json_object **ret)
{
    const char *output = NULL;
    /* Protocols as numbers: their names come from /etc/protocols, which a
     * minimal system lacks; the same listing everywhere (the parser takes both). */
    nft_ctx_output_set_flags(fw->nft, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_NUMERIC_PROTO);
    int r = run_locked(fw, command, &output);
    nft_ctx_output_set_flags(fw->nft, 0);
    if (r < 0)
        return r;
    json_object *root = json_tokener_parse(output ? output : "");
    if (!root) {
        set_error(fw, "Failed to parse the listing of nftables");
        return -EBADMSG;
    }
    *ret = root;
    return 0;
}

/* ---- open ---------------------------------------------------------------- */

static bool net_valid(const Ipv4Net *net)
{
    return net->prefix <= 32 && (net->network & ~ipv4net_mask(net->prefix)) == 0;
}

static int check_config(const FirewallConfig *cfg)
{
    if (!cfg || !firewall_name_valid(cfg->table, FIREWALL_TABLE_MAX, false) ||
        !firewall_name_valid(cfg->if_prefix, FIREWALL_PREFIX_MAX, true) || !net_valid(&cfg->pool) ||
        cfg->n_deny > FIREWALL_DENY_MAX || cfg->n_dns > FIREWALL_DNS_MAX ||
        (cfg->n_deny && !cfg->deny) || (cfg->n_dns && !cfg->dns))
        return -EINVAL;
    /* The scanner reads a name starting with a digit as a number. */
    if (cfg->table[0] >= '0' && cfg->table[0] <= '9')
        return -EINVAL;
    for (size_t i = 0; i < cfg->n_deny; i++)
        if (!net_valid(&cfg->deny[i]))
            return -EINVAL;
    return 0;
}

void firewall_free(Firewall *fw)
{
    if (!fw)
        return;
    if (fw->nft)
        nft_ctx_free(fw->nft);
    pthread_mutex_destroy(&fw->lock);
    free(fw->deny);
    free(fw->dns);
    free(fw);
}

static void firewall_freep(Firewall **fw)
{
    firewall_free(*fw);
    *fw = NULL;
}

/* The pool range goes into @subnets; anything there overlapping it (an older
 * pool) must go first, as an interval set refuses overlaps. Lock held. */
static int script_pool_locked(Firewall *fw, FirewallScript *s)
{
    _cleanup_json_ json_object *root = NULL;
    uint32_t pool_start, pool_end;
    firewall_net_interval(&fw->cfg.pool, &pool_start, &pool_end);

    _cleanup_free_ char *command = NULL;
    if (asprintf(&command, "list set inet %s subnets", fw->table) < 0)
        return -ENOMEM;
    if (list_json_locked(fw, command, &root) < 0)
        root = NULL; /* no table yet: nothing to replace */
    json_object *elems = root ? firewall_table_elements(root, "set", "subnets") : NULL;
    for (size_t i = 0; elems && i < json_object_array_length(elems); i++) {
        uint32_t start, end;
        if (!firewall_json_interval(firewall_element_value(json_object_array_get_idx(elems, i)),
                                    &start, &end))
            continue;
        if ((start == pool_start && end == pool_end) || end < pool_start || start > pool_end)
            continue;
        firewall_script_add(s, "delete element inet %s subnets { %s-%s }\n", fw->table,
                            firewall_ipv4_text(start).s, firewall_ipv4_text(end).s);
    }
    firewall_script_add(s, "add element inet %s subnets { %s }\n", fw->table,
                        firewall_ipv4net_text(&fw->cfg.pool).s);
    return 0;
}

int firewall_open(const FirewallConfig *cfg, Firewall **ret)
{
    int r = check_config(cfg);
    if (r < 0)
        return r;

    _cleanup_(firewall_freep) Firewall *fw = calloc(1, sizeof(*fw));
    if (!fw)
        return -ENOMEM;
    pthread_mutex_init(&fw->lock, NULL);
    snprintf(fw->table, sizeof(fw->table), "%s", cfg->table);
    snprintf(fw->if_prefix, sizeof(fw->if_prefix), "%s", cfg->if_prefix);
    if (cfg->n_deny) {
        fw->deny = calloc(cfg->n_deny, sizeof(*fw->deny));
        if (!fw->deny)
            return -ENOMEM;
        memcpy(fw->deny, cfg->deny, cfg->n_deny * sizeof(*fw->deny));
    }
    if (cfg->n_dns) {
        fw->dns = calloc(cfg->n_dns, sizeof(*fw->dns));
        if (!fw->dns)
            return -ENOMEM;
        memcpy(fw->dns, cfg->dns, cfg->n_dns * sizeof(*fw->dns));
    }
    fw->cfg = *cfg;
    fw->cfg.table = fw->table;
    fw->cfg.if_prefix = fw->if_prefix;
    fw->cfg.deny = fw->deny;
    fw->cfg.dns = fw->dns;

    fw->nft = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!fw->nft)
        return -ENOMEM;
    if (nft_ctx_buffer_output(fw->nft) < 0 || nft_ctx_buffer_error(fw->nft) < 0)
        return -ENOMEM;

    _cleanup_(firewall_script_done) FirewallScript s = {0};
    firewall_script_globals(&s, &fw->cfg);
    r = script_pool_locked(fw, &s);
    if (r < 0)
        return r;
    r = run_script_locked(fw, &s);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(fw);
    return 0;
}

const char *firewall_last_error(Firewall *fw)
{
    pthread_mutex_lock(&fw->lock);
    snprintf(thread_error, sizeof(thread_error), "%s", fw->error);
    pthread_mutex_unlock(&fw->lock);
    return thread_error;
}

/* ---- containers ---------------------------------------------------------- */

static int check_container(Firewall *fw, const FirewallContainer *c)
{
    if (!c || !firewall_name_valid(c->id, FIREWALL_ID_MAX, false)) {
        set_error(fw, "Invalid container id");
        return -EINVAL;
    }
    size_t plen = strlen(fw->if_prefix);
    if (!firewall_name_valid(c->bridge, IFNAMSIZ - 1, true) ||
        strncmp(c->bridge, fw->if_prefix, plen) != 0) {
        set_error(fw, "Invalid bridge name for container '%s'", c->id);
        return -EINVAL;
    }
    if (!net_valid(&c->subnet) || !ipv4net_contains(&c->subnet, c->ip)) {
        set_error(fw, "Address of container '%s' is not inside its subnet", c->id);
        return -EINVAL;
    }
    return 0;
}

static void chain_name(const FirewallContainer *c, char buf[static FIREWALL_CHAIN_NAME_MAX])
{
    snprintf(buf, FIREWALL_CHAIN_NAME_MAX, FIREWALL_CHAIN_PREFIX "%s", c->id);
}

/* Dynamic subnets are inside the pool range, which is in @subnets for good. */
static bool subnet_in_pool(const Firewall *fw, const Ipv4Net *subnet)
{
    return subnet->prefix >= fw->cfg.pool.prefix &&
           ipv4net_contains(&fw->cfg.pool, subnet->network);
}

static int check_netin(Firewall *fw, const FirewallNetIn *netin, size_t n_netin)
{
    if (n_netin && !netin)
        return -EINVAL;
    for (size_t i = 0; i < n_netin; i++) {
        const FirewallNetIn *m = &netin[i];
        if (m->host_port < 1 || m->host_port > 65535 || m->container_port > 65535 ||
            m->protos == 0 || (m->protos & ~(PORT_PROTO_TCP | PORT_PROTO_UDP))) {
            set_error(fw, "Invalid port mapping %u:%u", m->host_port, m->container_port);
            return -EINVAL;
        }
    }
    return 0;
}

/* NetIn elements: `add` with their values, or `delete` by key. */
static void script_netin(FirewallScript *s, const char *table, const char *verb,
                         const FirewallContainer *c, const FirewallNetIn *netin, size_t n_netin,
                         bool with_value)
{
    Ipv4Text ip = firewall_ipv4_text(c->ip);
    for (size_t i = 0; i < n_netin; i++)
        for (unsigned bit = PORT_PROTO_TCP; bit <= PORT_PROTO_UDP; bit <<= 1) {
            if (!(netin[i].protos & bit))
                continue;
            const char *proto = bit == PORT_PROTO_TCP ? "tcp" : "udp";
            unsigned cport = netin[i].container_port ? netin[i].container_port : netin[i].host_port;
            if (with_value)
                firewall_script_add(s, "%s element inet %s netin { %s . %u : %s . %u }\n", verb,
                                    table, proto, netin[i].host_port, ip.s, cport);
            else
                firewall_script_add(s, "%s element inet %s netin { %s . %u }\n", verb, table, proto,
                                    netin[i].host_port);
        }
}

int firewall_add_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                           size_t n_netin, const FirewallRule *rules, size_t n_rules)
{
    char chain[FIREWALL_CHAIN_NAME_MAX], log_prefix[FIREWALL_LOG_PREFIX_MAX + 1];
    _cleanup_(firewall_script_done) FirewallScript s = {0};
    const char *t = fw->table;

    pthread_mutex_lock(&fw->lock);
    int r = check_container(fw, c);
    if (r >= 0)
        r = check_netin(fw, netin, n_netin);
    if (r < 0)
        goto out;
    if (n_rules && !rules) {
        r = -EINVAL;
        goto out;
    }
    chain_name(c, chain);
    firewall_log_prefix(c->handle ? c->handle : c->id, log_prefix);
    Ipv4Text ip = firewall_ipv4_text(c->ip);
    Ipv4NetText subnet = firewall_ipv4net_text(&c->subnet);

    /* Flushed: adding again rebuilds the chain rather than doubling it. */
    firewall_script_add(&s, "add chain inet %s %s\nflush chain inet %s %s\n", t, chain, t, chain);
    r = firewall_script_netout(&s, t, chain, log_prefix, rules, n_rules, false, fw->error,
                               sizeof(fw->error));
    if (r < 0)
        goto out;
    firewall_script_add(&s, "add rule inet %s %s ip daddr %s accept\n", t, chain, subnet.s);
    firewall_script_add(&s,
                        "add rule inet %s %s ip daddr @subnets reject with icmp type "
                        "admin-prohibited\n",
                        t, chain);
    firewall_script_add(&s, "add rule inet %s %s goto default\n", t, chain);
    firewall_script_add(&s, "add element inet %s netout { %s : goto %s }\n", t, ip.s, chain);
    firewall_script_add(&s, "add element inet %s ifaddr { \"%s\" . %s }\n", t, c->bridge, ip.s);
    if (!subnet_in_pool(fw, &c->subnet))
        firewall_script_add(&s, "add element inet %s subnets { %s }\n", t, subnet.s);
    script_netin(&s, t, "add", c, netin, n_netin, true);
    r = run_script_locked(fw, &s);
out:
    pthread_mutex_unlock(&fw->lock);
    return r;
}

int firewall_add_netin(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                       size_t n_netin)
{
    _cleanup_(firewall_script_done) FirewallScript s = {0};

    pthread_mutex_lock(&fw->lock);
    int r = check_container(fw, c);
    if (r >= 0)
        r = check_netin(fw, netin, n_netin);
    if (r >= 0 && n_netin > 0) {
        script_netin(&s, fw->table, "add", c, netin, n_netin, true);
        r = run_script_locked(fw, &s);
    }
    pthread_mutex_unlock(&fw->lock);
    return r;
}

int firewall_add_netout(Firewall *fw, const FirewallContainer *c, const FirewallRule *rules,
                        size_t n_rules)
{
    char chain[FIREWALL_CHAIN_NAME_MAX], log_prefix[FIREWALL_LOG_PREFIX_MAX + 1];
    _cleanup_(firewall_script_done) FirewallScript s = {0};

    pthread_mutex_lock(&fw->lock);
    int r = check_container(fw, c);
    if (r >= 0 && n_rules && !rules)
        r = -EINVAL;
    if (r < 0 || n_rules == 0)
        goto out;
    chain_name(c, chain);
    firewall_log_prefix(c->handle ? c->handle : c->id, log_prefix);
    r = firewall_script_netout(&s, fw->table, chain, log_prefix, rules, n_rules, true, fw->error,
                               sizeof(fw->error));
    if (r >= 0 && s.len > 0)
        r = run_script_locked(fw, &s);
out:
    pthread_mutex_unlock(&fw->lock);
    return r;
}

/* ---- reading the table back ---------------------------------------------- */

/* One `list table`. Lock held. */
static int table_state_read_locked(Firewall *fw, FirewallTableState *st)
{
    _cleanup_free_ char *command = NULL;
    json_object *root = NULL;

    if (asprintf(&command, "list table inet %s", fw->table) < 0)
        return -ENOMEM;
    int r = list_json_locked(fw, command, &root);
    if (r < 0)
        return r;
    return firewall_table_state_index(root, st);
}

/* What a prune needs (the four maps and sets, and the chain names), without the
 * rules of every container chain that `list table` brings: at 4096 containers
 * that listing took seconds, before the daemon could serve. */
static int prune_state_read_locked(Firewall *fw, FirewallTableState *st)
{
    static const char *const lists[][2] = {
        {"map", "netout"}, {"set", "ifaddr"}, {"map", "netin"}, {"set", "subnets"}};
    json_object *root = json_object_new_object();
    json_object *all = json_object_new_array();
    if (!root || !all || json_object_object_add(root, "nftables", all) < 0) {
        json_object_put(all);
        json_object_put(root);
        return -ENOMEM;
    }
    int r = 0;
    for (size_t i = 0; r >= 0 && i <= ELEMENTSOF(lists); i++) {
        _cleanup_free_ char *command = NULL;
        json_object *part = NULL, *items;
        int k = i < ELEMENTSOF(lists)
                    ? asprintf(&command, "list %s inet %s %s", lists[i][0], fw->table, lists[i][1])
                    : asprintf(&command, "list chains inet");
        if (k < 0) {
            command = NULL;
            r = -ENOMEM;
            break;
        }
        r = list_json_locked(fw, command, &part);
        if (r < 0)
            break;
        if (json_object_object_get_ex(part, "nftables", &items) &&
            json_object_is_type(items, json_type_array))
            for (size_t j = 0; r >= 0 && j < json_object_array_length(items); j++) {
                json_object *item = json_object_array_get_idx(items, j), *body, *table;
                /* Chains of other inet tables are not ours. */
                if (json_object_object_get_ex(item, "chain", &body) &&
                    (!json_object_object_get_ex(body, "table", &table) ||
                     strcmp(json_object_get_string(table), fw->table) != 0))
                    continue;
                if (json_object_array_add(all, json_object_get(item)) < 0) {
                    json_object_put(item);
                    r = -ENOMEM;
                }
            }
        json_object_put(part);
    }
    if (r < 0) {
        json_object_put(root);
        return r;
    }
    return firewall_table_state_index(root, st);
}

/* ---- remove -------------------------------------------------------------- */

/* The usual path: add-then-delete of everything, whatever is there. */
static void script_remove(Firewall *fw, FirewallScript *s, const FirewallContainer *c,
                          const char *chain, const FirewallNetIn *netin, size_t n_netin,
                          bool last_in_subnet)
{
    const char *t = fw->table;
    Ipv4Text ip = firewall_ipv4_text(c->ip);

    firewall_script_add(s, "add chain inet %s %s\n", t, chain);
    firewall_script_add(s, "add element inet %s netout { %s : goto %s }\n", t, ip.s, chain);
    firewall_script_add(s, "delete element inet %s netout { %s }\n", t, ip.s);
    for (int k = 0; k < 2; k++)
        firewall_script_add(s, "%s element inet %s ifaddr { \"%s\" . %s }\n", k ? "delete" : "add",
                            t, c->bridge, ip.s);
    script_netin(s, t, "add", c, netin, n_netin, true);
    script_netin(s, t, "delete", c, netin, n_netin, false);
    if (last_in_subnet && !subnet_in_pool(fw, &c->subnet))
        for (int k = 0; k < 2; k++)
            firewall_script_add(s, "%s element inet %s subnets { %s }\n", k ? "delete" : "add", t,
                                firewall_ipv4net_text(&c->subnet).s);
    firewall_script_add(s, "flush chain inet %s %s\ndelete chain inet %s %s\n", t, chain, t, chain);
}

/* When the usual path clashed (the address or a host port belongs to another
 * container by now): delete only what is there and is the container's. */
static int script_remove_listed_locked(Firewall *fw, FirewallScript *s, const FirewallContainer *c,
                                       const char *chain, const FirewallNetIn *netin,
                                       size_t n_netin, bool last_in_subnet)
{
    _cleanup_(firewall_table_state_done) FirewallTableState st = {0};
    const char *t = fw->table;
    Ipv4Text ip = firewall_ipv4_text(c->ip);

    int r = table_state_read_locked(fw, &st);
    if (r < 0)
        return r;
    const char *target = hashmap_get(st.netout, ip.s);
    bool address_ours = !target || strcmp(target, chain) == 0;
    if (target && address_ours)
        firewall_script_add(s, "delete element inet %s netout { %s }\n", t, ip.s);
    char key[IFNAMSIZ + INET_ADDRSTRLEN + 2];
    snprintf(key, sizeof(key), "%s %s", c->bridge, ip.s);
    if (address_ours && hashmap_get(st.ifaddr, key))
        firewall_script_add(s, "delete element inet %s ifaddr { \"%s\" . %s }\n", t, c->bridge,
                            ip.s);
    /* Host ports mapped to an address that is someone else's now are theirs. */
    for (size_t i = 0; address_ours && st.netin && i < json_object_array_length(st.netin); i++) {
        const char *proto;
        unsigned port;
        uint32_t dest;
        if (!firewall_netin_element(json_object_array_get_idx(st.netin, i), &proto, &port, &dest) ||
            dest != c->ip)
            continue;
        for (size_t k = 0; k < n_netin; k++)
            if (netin[k].host_port == port &&
                (netin[k].protos & (proto[0] == 't' ? PORT_PROTO_TCP : PORT_PROTO_UDP))) {
                firewall_script_add(s, "delete element inet %s netin { %s . %u }\n", t, proto,
                                    port);
                break;
            }
    }
    uint32_t start, end, sub_start, sub_end;
    firewall_net_interval(&c->subnet, &sub_start, &sub_end);
    for (size_t i = 0; last_in_subnet && !subnet_in_pool(fw, &c->subnet) && st.subnets &&
                       i < json_object_array_length(st.subnets);
         i++)
        if (firewall_json_interval(firewall_element_value(json_object_array_get_idx(st.subnets, i)),
                                   &start, &end) &&
            start == sub_start && end == sub_end)
            firewall_script_add(s, "delete element inet %s subnets { %s }\n", t,
                                firewall_ipv4net_text(&c->subnet).s);
    if (hashmap_get(st.chains, chain))
        firewall_script_add(s, "flush chain inet %s %s\ndelete chain inet %s %s\n", t, chain, t,
                            chain);
    return 0;
}

int firewall_remove_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                              size_t n_netin, bool last_in_subnet)
{
    char chain[FIREWALL_CHAIN_NAME_MAX];
    _cleanup_(firewall_script_done) FirewallScript s = {0};

    pthread_mutex_lock(&fw->lock);
    int r = check_container(fw, c);
    if (r >= 0)
        r = check_netin(fw, netin, n_netin);
    if (r < 0)
        goto out;
    chain_name(c, chain);
    script_remove(fw, &s, c, chain, netin, n_netin, last_in_subnet);
    r = run_script_locked(fw, &s);
    if (r != -EEXIST)
        goto out;
    firewall_script_done(&s);
    r = script_remove_listed_locked(fw, &s, c, chain, netin, n_netin, last_in_subnet);
    if (r >= 0 && s.len > 0)
        r = run_script_locked(fw, &s);
out:
    pthread_mutex_unlock(&fw->lock);
    return r;
}

int firewall_has_container(Firewall *fw, const FirewallContainer *c)
{
    char chain[FIREWALL_CHAIN_NAME_MAX];
    const char *listing = NULL;

    if (!c || !firewall_name_valid(c->id, FIREWALL_ID_MAX, false))
        return -EINVAL;
    chain_name(c, chain);
    pthread_mutex_lock(&fw->lock);
    /* Not `list chain`: that fetches every rule and set of the table (~10 ms with
     * 1000 containers); the names of the chains alone cost ~2 ms. */
    int r = run_locked(fw, "list chains inet", &listing);
    if (r >= 0)
        r = firewall_chains_listing_has(listing, fw->table, chain);
    pthread_mutex_unlock(&fw->lock);
    return r;
}

struct FirewallChainSet {
    HashMap *names;
};

int firewall_chain_set_load(Firewall *fw, FirewallChainSet **ret)
{
    const char *listing = NULL;
    FirewallChainSet *set = calloc(1, sizeof(*set));
    if (!set)
        return -ENOMEM;
    int r = hashmap_new(&set->names);
    if (r < 0) {
        free(set);
        return r;
    }
    pthread_mutex_lock(&fw->lock);
    r = run_locked(fw, "list chains inet", &listing);
    if (r >= 0)
        r = firewall_chains_listing_index(listing, fw->table, set->names);
    pthread_mutex_unlock(&fw->lock);
    if (r < 0) {
        firewall_chain_set_free(set);
        return r;
    }
    *ret = set;
    return 0;
}

int firewall_chain_set_has(const FirewallChainSet *set, const FirewallContainer *c)
{
    char chain[FIREWALL_CHAIN_NAME_MAX];
    if (!c || !firewall_name_valid(c->id, FIREWALL_ID_MAX, false))
        return -EINVAL;
    chain_name(c, chain);
    return hashmap_get(set->names, chain) ? 1 : 0;
}

void firewall_chain_set_free(FirewallChainSet *set)
{
    if (!set)
        return;
    hashmap_free(set->names);
    free(set);
}

/* ---- prune --------------------------------------------------------------- */

typedef struct LiveIndex {
    HashMap *by_id;
    HashMap *by_ip; /* "a.b.c.d" */
} LiveIndex;

static void live_index_done(LiveIndex *live)
{
    hashmap_free(live->by_id);
    hashmap_free(live->by_ip);
}

/* The chain a live container's address must lead to. */
static bool netout_target_live(const LiveIndex *live, const char *ip, const char *target)
{
    const FirewallContainer *c = hashmap_get(live->by_ip, ip);
    char chain[FIREWALL_CHAIN_NAME_MAX];
    if (!c)
        return false;
    chain_name(c, chain);
    return strcmp(chain, target) == 0;
}

static void script_prune_elements(Firewall *fw, FirewallScript *s, const FirewallTableState *st,
                                  const LiveIndex *live, const FirewallContainer *all, size_t n_all)
{
    const char *t = fw->table, *key;
    void *value;

    for (size_t state = 0; hashmap_iterate(st->netout, &state, &key, &value) == 0;)
        if (!netout_target_live(live, key, value))
            firewall_script_add(s, "delete element inet %s netout { %s }\n", t, key);
    for (size_t state = 0; hashmap_iterate(st->ifaddr, &state, &key, &value) == 0;) {
        const char *space = strchr(key, ' ');
        const FirewallContainer *c = space ? hashmap_get(live->by_ip, space + 1) : NULL;
        size_t len = space ? (size_t)(space - key) : 0;
        char bridge[IFNAMSIZ];
        snprintf(bridge, sizeof(bridge), "%.*s", (int)len, key);
        if (c && strcmp(c->bridge, bridge) == 0)
            continue;
        /* Only a name this module could have written can be written back. */
        if (firewall_name_valid(bridge, IFNAMSIZ - 1, true))
            firewall_script_add(s, "delete element inet %s ifaddr { \"%s\" . %s }\n", t, bridge,
                                space + 1);
    }
    for (size_t i = 0; st->netin && i < json_object_array_length(st->netin); i++) {
        const char *proto;
        unsigned port;
        uint32_t dest;
        if (firewall_netin_element(json_object_array_get_idx(st->netin, i), &proto, &port, &dest) &&
            !hashmap_get(live->by_ip, firewall_ipv4_text(dest).s))
            firewall_script_add(s, "delete element inet %s netin { %s . %u }\n", t, proto, port);
    }
    uint32_t pool_start, pool_end;
    firewall_net_interval(&fw->cfg.pool, &pool_start, &pool_end);
    for (size_t i = 0; st->subnets && i < json_object_array_length(st->subnets); i++) {
        uint32_t start, end, sub_start, sub_end;
        if (!firewall_json_interval(
                firewall_element_value(json_object_array_get_idx(st->subnets, i)), &start, &end) ||
            (start == pool_start && end == pool_end))
            continue;
        bool used = false;
        for (size_t k = 0; k < n_all && !used; k++) {
            firewall_net_interval(&all[k].subnet, &sub_start, &sub_end);
            used = start == sub_start && end == sub_end;
        }
        if (!used)
            firewall_script_add(s, "delete element inet %s subnets { %s-%s }\n", t,
                                firewall_ipv4_text(start).s, firewall_ipv4_text(end).s);
    }
}

static void script_prune_chains(Firewall *fw, FirewallScript *s, const FirewallTableState *st,
                                const LiveIndex *live)
{
    const char *key;
    void *value;
    for (size_t state = 0; hashmap_iterate(st->chains, &state, &key, &value) == 0;) {
        const char *id = key + strlen(FIREWALL_CHAIN_PREFIX);
        /* A live container keeps its chain whatever else is missing: adding it
         * again (idempotent) repairs it. */
        if (hashmap_get(live->by_id, id))
            continue;
        if (firewall_name_valid(id, FIREWALL_ID_MAX, false))
            firewall_script_add(s, "flush chain inet %s %s\ndelete chain inet %s %s\n", fw->table,
                                key, fw->table, key);
    }
}

static int live_index_build(Firewall *fw, const FirewallContainer *live, size_t n_live,
                            LiveIndex *index)
{
    int r = hashmap_new(&index->by_id);
    if (r >= 0)
        r = hashmap_new(&index->by_ip);
    for (size_t i = 0; r >= 0 && i < n_live; i++) {
        r = check_container(fw, &live[i]);
        if (r >= 0)
            r = hashmap_put(index->by_id, live[i].id, (void *)&live[i]);
        if (r >= 0)
            r = hashmap_put(index->by_ip, firewall_ipv4_text(live[i].ip).s, (void *)&live[i]);
        if (r == -EEXIST) {
            set_error(fw, "Container id or address listed twice: '%s'", live[i].id);
            r = -EINVAL;
        }
    }
    return r;
}

int firewall_prune(Firewall *fw, const FirewallContainer *live, size_t n_live)
{
    _cleanup_(firewall_table_state_done) FirewallTableState st = {0};
    _cleanup_(live_index_done) LiveIndex index = {0};
    _cleanup_(firewall_script_done) FirewallScript s = {0};

    if (n_live && !live)
        return -EINVAL;
    pthread_mutex_lock(&fw->lock);
    int r = live_index_build(fw, live, n_live, &index);
    if (r >= 0)
        r = prune_state_read_locked(fw, &st);
    if (r >= 0) {
        /* Elements first: a chain still referenced by @netout cannot go. */
        script_prune_elements(fw, &s, &st, &index, live, n_live);
        script_prune_chains(fw, &s, &st, &index);
        if (s.len > 0 || s.error)
            r = run_script_locked(fw, &s);
    }
    pthread_mutex_unlock(&fw->lock);
    return r;
}
