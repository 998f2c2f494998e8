/* The containers' firewall: the table, its chains and the log chains through
 * one libnftables context; every container's elements through one nfnetlink
 * batch (firewall-netlink.c), one transaction per call, both under one mutex.
 * The text of the rules is built in firewall-rules.c, the NetOut elements in
 * firewall-netout.c; this file validates what callers hand in and runs the
 * transactions; firewall-prune.c reads the table back where a repair needs to
 * know what is there.
 *
 * Idempotent deletes without listing: `add` then `delete` of the same element in
 * one transaction (a `delete` of a missing element would fail the whole
 * transaction), `add chain` + `flush chain` + `delete chain` for a log chain.
 * Adding is idempotent as well: an element that is present with the same value
 * is no error, one present with another value (a host port mapped to someone
 * else, an address owned by another container) or an overlapping range is
 * EEXIST from the kernel. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "cloche/cleanup.h"
#include "cloche/firewall.h"
#include "cloche/hashmap.h"
#include "cloche/json.h"
#include "firewall-internal.h"

#define FIREWALL_DENY_MAX 1024
#define FIREWALL_DNS_MAX 64

static __thread char thread_error[FIREWALL_ERROR_MAX];

void firewall_set_error(Firewall *fw, const char *fmt, ...)
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
int firewall_run_locked(Firewall *fw, const char *script, const char **ret_output)
{
    int rc = nft_run_cmd_from_buffer(fw->nft, script);
    /* Reading the buffers also rewinds them for the next command. */
    const char *output = nft_ctx_get_output_buffer(fw->nft);
    const char *msg = nft_ctx_get_error_buffer(fw->nft);
    if (rc != 0) {
        firewall_set_error(fw, "%s", msg && *msg ? msg : "nftables failed without a message");
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
        firewall_set_error(fw, "Failed to build the nftables script: %s",
                           strerrordesc_np(-s->error));
        return s->error;
    }
    return firewall_run_locked(fw, s->text ? s->text : "", NULL);
}

/* `list ...` as JSON. Lock held. */
int firewall_list_json_locked(Firewall *fw, const char *command, json_object **ret)
{
    const char *output = NULL;
    /* Protocols as numbers: their names come from /etc/protocols, which a
     * minimal system lacks; the same listing everywhere (the parser takes both). */
    nft_ctx_output_set_flags(fw->nft, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_NUMERIC_PROTO);
    int r = firewall_run_locked(fw, command, &output);
    nft_ctx_output_set_flags(fw->nft, 0);
    if (r < 0)
        return r;
    json_object *root = json_tokener_parse(output ? output : "");
    if (!root) {
        firewall_set_error(fw, "Failed to parse the listing of nftables");
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
    if (fw->nl_fd >= 0)
        close(fw->nl_fd);
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
    if (firewall_list_json_locked(fw, command, &root) < 0)
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

static void hashmap_freep(HashMap **m)
{
    hashmap_free(*m);
    *m = NULL;
}

/* A table of the layout before elements: its `netout` verdict map and the
 * `ctr-<id>` chain of every container go (the base chains that used them were
 * flushed above, in the same transaction). Their containers have no `owner`
 * element, so the restore rebuilds each from its record: recreated, not
 * converted. One listing of the chain names. Lock held. */
static int script_old_layout_locked(Firewall *fw, FirewallScript *s)
{
    const char *listing = NULL;
    _cleanup_(hashmap_freep) HashMap *chains = NULL;
    int r = hashmap_new(&chains);
    if (r < 0)
        return r;
    if (firewall_run_locked(fw, "list chains inet", &listing) < 0)
        return 0; /* nothing listed: no table yet */
    r = firewall_chains_listing_index(listing, fw->table, chains);
    if (r < 0)
        return r;
    const char *t = fw->table, *key;
    void *value;
    /* Adding first makes both deletes harmless when the map is not there. */
    firewall_script_add(s, "add map inet %s netout { type ipv4_addr : verdict; }\n", t);
    firewall_script_add(s, "flush map inet %s netout\ndelete map inet %s netout\n", t, t);
    for (size_t state = 0; hashmap_iterate(chains, &state, &key, &value) == 0;)
        if (strncmp(key, FIREWALL_OLD_CHAIN_PREFIX, strlen(FIREWALL_OLD_CHAIN_PREFIX)) == 0 &&
            firewall_name_valid(key, FIREWALL_CHAIN_NAME_MAX, false))
            firewall_script_add(s, "flush chain inet %s %s\ndelete chain inet %s %s\n", t, key, t,
                                key);
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
    fw->nl_fd = -EBADF;
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

    r = firewall_netlink_open(&fw->nl_fd);
    if (r < 0)
        return r;

    _cleanup_(firewall_script_done) FirewallScript s = {0};
    firewall_script_globals(&s, &fw->cfg);
    r = script_pool_locked(fw, &s);
    if (r >= 0)
        r = script_old_layout_locked(fw, &s);
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

int firewall_check_container(Firewall *fw, const FirewallContainer *c)
{
    if (!c || !firewall_name_valid(c->id, FIREWALL_ID_MAX, false)) {
        firewall_set_error(fw, "Invalid container id");
        return -EINVAL;
    }
    size_t plen = strlen(fw->if_prefix);
    if (!firewall_name_valid(c->bridge, IFNAMSIZ - 1, true) ||
        strncmp(c->bridge, fw->if_prefix, plen) != 0) {
        firewall_set_error(fw, "Invalid bridge name for container '%s'", c->id);
        return -EINVAL;
    }
    if (!net_valid(&c->subnet) || !ipv4net_contains(&c->subnet, c->ip)) {
        firewall_set_error(fw, "Address of container '%s' is not inside its subnet", c->id);
        return -EINVAL;
    }
    return 0;
}

void firewall_chain_name(const FirewallContainer *c, char buf[static FIREWALL_CHAIN_NAME_MAX])
{
    snprintf(buf, FIREWALL_CHAIN_NAME_MAX, FIREWALL_CHAIN_PREFIX "%s", c->id);
}

/* Dynamic subnets are inside the pool range, which is in @subnets for good. */
bool firewall_subnet_in_pool(const Firewall *fw, const Ipv4Net *subnet)
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
            firewall_set_error(fw, "Invalid port mapping %u:%u", m->host_port, m->container_port);
            return -EINVAL;
        }
    }
    return 0;
}

int firewall_commit_locked(Firewall *fw, const FirewallBatch *batch)
{
    int r = firewall_netlink_commit(fw->nl_fd, &fw->nl_seq, fw->table, batch);
    if (r < 0)
        firewall_set_error(fw, "Could not process the elements: %s", strerrordesc_np(-r));
    else
        fw->error[0] = '\0';
    return r;
}

/* FNV-1a: the owner element says whose an address is without the id itself. */
uint32_t firewall_owner_mark(const char *id)
{
    uint32_t h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

FirewallElement firewall_owner_element(const FirewallContainer *c)
{
    FirewallElement e = {.set = FIREWALL_SET_OWNER, .key_len = 4, .data_len = 4};
    uint32_t ip = htonl(c->ip), mark = firewall_owner_mark(c->id);
    memcpy(e.key, &ip, 4);
    memcpy(e.data, &mark, 4); /* the mark type is host-endian */
    return e;
}

FirewallElement firewall_ifaddr_element(const char *bridge, uint32_t ip)
{
    FirewallElement e = {.set = FIREWALL_SET_IFADDR, .key_len = IFNAMSIZ + 4};
    uint32_t be = htonl(ip);
    strncpy((char *)e.key, bridge, IFNAMSIZ - 1);
    memcpy(e.key + IFNAMSIZ, &be, 4);
    return e;
}

/* NetIn elements: protocol . host port : address . container port. */
static void batch_netin(FirewallBatch *b, const FirewallContainer *c, const FirewallNetIn *netin,
                        size_t n_netin, bool remove)
{
    for (size_t i = 0; i < n_netin; i++)
        for (unsigned bit = PORT_PROTO_TCP; bit <= PORT_PROTO_UDP; bit <<= 1) {
            if (!(netin[i].protos & bit))
                continue;
            unsigned cport = netin[i].container_port ? netin[i].container_port : netin[i].host_port;
            FirewallElement e = {.set = FIREWALL_SET_NETIN, .key_len = 8, .data_len = 8};
            uint32_t ip = htonl(c->ip);
            e.key[0] = bit == PORT_PROTO_TCP ? 6 : 17;
            e.key[4] = (uint8_t)(netin[i].host_port >> 8);
            e.key[5] = (uint8_t)netin[i].host_port;
            memcpy(e.data, &ip, 4);
            e.data[4] = (uint8_t)(cport >> 8);
            e.data[5] = (uint8_t)cport;
            firewall_batch_push(b, &e, remove);
        }
}

/* Everything a container has as elements: owner, ifaddr, NetOut, NetIn. With
 * `idempotent_remove`, each is added then deleted (a delete of a missing
 * element would fail the whole transaction). */
static int batch_container(Firewall *fw, FirewallBatch *b, const FirewallContainer *c,
                           const FirewallNetIn *netin, size_t n_netin, const FirewallRule *rules,
                           size_t n_rules, bool idempotent_remove)
{
    FirewallElement owner = firewall_owner_element(c);
    FirewallElement ifaddr = firewall_ifaddr_element(c->bridge, c->ip);
    for (int pass = 0; pass < (idempotent_remove ? 2 : 1); pass++) {
        bool remove = pass == 1;
        firewall_batch_push(b, &owner, remove);
        firewall_batch_push(b, &ifaddr, remove);
        int r = firewall_netout_elements(c, rules, n_rules, true, remove, b, fw->error,
                                         sizeof(fw->error));
        if (r < 0)
            return r;
        batch_netin(b, c, netin, n_netin, remove);
    }
    return b->error;
}

/* The log chain of a container with logged rules, reached through
 * @netout_log; `rebuild` flushes what it had. */
static int script_log_chain(Firewall *fw, FirewallScript *s, const FirewallContainer *c,
                            const FirewallRule *rules, size_t n_rules, bool rebuild)
{
    char chain[FIREWALL_CHAIN_NAME_MAX], log_prefix[FIREWALL_LOG_PREFIX_MAX + 1];
    const char *t = fw->table;
    firewall_chain_name(c, chain);
    firewall_log_prefix(c->handle ? c->handle : c->id, log_prefix);
    _cleanup_free_ FirewallRule *logged = calloc(n_rules + 1, sizeof(*logged));
    if (!logged)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < n_rules; i++)
        if (rules[i].log)
            logged[n++] = rules[i];
    firewall_script_add(s, "add chain inet %s %s\n", t, chain);
    if (rebuild)
        firewall_script_add(s, "flush chain inet %s %s\n", t, chain);
    int r = firewall_script_netout(s, t, chain, log_prefix, logged, n, false, fw->error,
                                   sizeof(fw->error));
    if (r < 0)
        return r;
    firewall_script_add(s, "add element inet %s netout_log { %s : jump %s }\n", t,
                        firewall_ipv4_text(c->ip).s, chain);
    return s->error;
}

/* Idempotent removal of the log chain. */
static void script_log_chain_remove(Firewall *fw, FirewallScript *s, const FirewallContainer *c)
{
    char chain[FIREWALL_CHAIN_NAME_MAX];
    const char *t = fw->table;
    Ipv4Text ip = firewall_ipv4_text(c->ip);
    firewall_chain_name(c, chain);
    firewall_script_add(s, "add chain inet %s %s\n", t, chain);
    firewall_script_add(s, "add element inet %s netout_log { %s : jump %s }\n", t, ip.s, chain);
    firewall_script_add(s, "delete element inet %s netout_log { %s }\n", t, ip.s);
    firewall_script_add(s, "flush chain inet %s %s\ndelete chain inet %s %s\n", t, chain, t, chain);
}

int firewall_add_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                           size_t n_netin, const FirewallRule *rules, size_t n_rules)
{
    _cleanup_(firewall_batch_done) FirewallBatch b = {0};
    _cleanup_(firewall_script_done) FirewallScript s = {0};

    pthread_mutex_lock(&fw->lock);
    int r = firewall_check_container(fw, c);
    if (r >= 0)
        r = check_netin(fw, netin, n_netin);
    if (r >= 0 && n_rules && !rules)
        r = -EINVAL;
    if (r >= 0)
        r = batch_container(fw, &b, c, netin, n_netin, rules, n_rules, false);
    if (r < 0)
        goto out;
    /* What elements cannot say goes first, through libnftables: the subnet of
     * a static network, the log chain. Only containers that have them pay. */
    bool logged = firewall_rules_logged(rules, n_rules);
    if (!firewall_subnet_in_pool(fw, &c->subnet))
        firewall_script_add(&s, "add element inet %s subnets { %s }\n", fw->table,
                            firewall_ipv4net_text(&c->subnet).s);
    if (logged && (r = script_log_chain(fw, &s, c, rules, n_rules, true)) < 0)
        goto out;
    if (s.len > 0 && (r = run_script_locked(fw, &s)) < 0)
        goto out;
    r = firewall_commit_locked(fw, &b);
    if (r == -EEXIST)
        /* Maybe elements of this container's earlier rules (a NetOut the
         * previous daemon did not record): replaced, or EEXIST again. */
        r = firewall_replace_netout_locked(fw, c, &b);
    if (r < 0 && logged) {
        char saved[FIREWALL_ERROR_MAX];
        snprintf(saved, sizeof(saved), "%s", fw->error);
        firewall_script_done(&s);
        script_log_chain_remove(fw, &s, c);
        (void)run_script_locked(fw, &s);
        snprintf(fw->error, sizeof(fw->error), "%s", saved);
    }
out:
    pthread_mutex_unlock(&fw->lock);
    return r;
}

int firewall_add_netin(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                       size_t n_netin)
{
    _cleanup_(firewall_batch_done) FirewallBatch b = {0};

    pthread_mutex_lock(&fw->lock);
    int r = firewall_check_container(fw, c);
    if (r >= 0)
        r = check_netin(fw, netin, n_netin);
    if (r >= 0 && n_netin > 0) {
        batch_netin(&b, c, netin, n_netin, false);
        r = firewall_commit_locked(fw, &b);
    }
    pthread_mutex_unlock(&fw->lock);
    return r;
}

int firewall_add_netout(Firewall *fw, const FirewallContainer *c, const FirewallRule *rules,
                        size_t n_old, size_t n_all)
{
    _cleanup_(firewall_batch_done) FirewallBatch b = {0};
    _cleanup_(firewall_script_done) FirewallScript s = {0};

    pthread_mutex_lock(&fw->lock);
    int r = firewall_check_container(fw, c);
    if (r >= 0 && ((n_all && !rules) || n_old > n_all))
        r = -EINVAL;
    for (size_t i = n_old; r >= 0 && i < n_all; i++)
        r = firewall_rule_check(&rules[i], fw->error, sizeof(fw->error));
    if (r < 0 || n_old == n_all)
        goto out;
    /* The old elements out (idempotently), the new set in, one transaction: the
     * union is cut into disjoint elements afresh, which may differ. */
    r = firewall_netout_elements(c, rules, n_old, true, false, &b, fw->error, sizeof(fw->error));
    if (r >= 0)
        r = firewall_netout_elements(c, rules, n_old, true, true, &b, fw->error, sizeof(fw->error));
    if (r >= 0)
        r = firewall_netout_elements(c, rules, n_all, true, false, &b, fw->error,
                                     sizeof(fw->error));
    if (r < 0)
        goto out;
    bool logged = firewall_rules_logged(rules + n_old, n_all - n_old);
    if (logged) {
        r = script_log_chain(fw, &s, c, rules + n_old, n_all - n_old, false);
        if (r >= 0)
            r = run_script_locked(fw, &s);
        if (r < 0)
            goto out;
    }
    r = firewall_commit_locked(fw, &b);
    if (r == -EEXIST) {
        firewall_batch_done(&b);
        r = firewall_netout_elements(c, rules, n_all, true, false, &b, fw->error,
                                     sizeof(fw->error));
        if (r >= 0)
            r = firewall_replace_netout_locked(fw, c, &b);
    }
    if (r < 0 && logged) {
        /* The log chain as it was: the old logged rules, or none. */
        char saved[FIREWALL_ERROR_MAX];
        snprintf(saved, sizeof(saved), "%s", fw->error);
        firewall_script_done(&s);
        if (firewall_rules_logged(rules, n_old))
            (void)script_log_chain(fw, &s, c, rules, n_old, true);
        else
            script_log_chain_remove(fw, &s, c);
        (void)run_script_locked(fw, &s);
        snprintf(fw->error, sizeof(fw->error), "%s", saved);
    }
out:
    pthread_mutex_unlock(&fw->lock);
    return r;
}

int firewall_remove_container(Firewall *fw, const FirewallContainer *c, const FirewallNetIn *netin,
                              size_t n_netin, const FirewallRule *rules, size_t n_rules,
                              bool last_in_subnet)
{
    _cleanup_(firewall_batch_done) FirewallBatch b = {0};
    _cleanup_(firewall_script_done) FirewallScript s = {0};

    pthread_mutex_lock(&fw->lock);
    int r = firewall_check_container(fw, c);
    if (r >= 0)
        r = check_netin(fw, netin, n_netin);
    if (r >= 0 && n_rules && !rules)
        r = -EINVAL;
    if (r >= 0)
        r = batch_container(fw, &b, c, netin, n_netin, rules, n_rules, true);
    if (r == -EINVAL && b.error == 0 && c && firewall_name_valid(c->id, FIREWALL_ID_MAX, false)) {
        /* Rules that cannot be expressed were never added: the rest goes. */
        firewall_batch_done(&b);
        r = batch_container(fw, &b, c, netin, n_netin, NULL, 0, true);
    }
    if (r < 0)
        goto out;
    r = firewall_commit_locked(fw, &b);
    if (r == -EEXIST)
        /* The address or a host port belongs to another container by now, or
         * the elements differ from the rules: delete what is there and ours. */
        r = firewall_remove_listed_locked(fw, c, netin, n_netin);
    if (r < 0)
        goto out;
    if (firewall_rules_logged(rules, n_rules))
        script_log_chain_remove(fw, &s, c);
    if (last_in_subnet && !firewall_subnet_in_pool(fw, &c->subnet))
        for (int k = 0; k < 2; k++)
            firewall_script_add(&s, "%s element inet %s subnets { %s }\n", k ? "delete" : "add",
                                fw->table, firewall_ipv4net_text(&c->subnet).s);
    if (s.len > 0)
        r = run_script_locked(fw, &s);
out:
    pthread_mutex_unlock(&fw->lock);
    return r;
}

int firewall_has_container(Firewall *fw, const FirewallContainer *c)
{
    if (!c || !firewall_name_valid(c->id, FIREWALL_ID_MAX, false))
        return -EINVAL;
    FirewallElement key = firewall_owner_element(c), found;
    pthread_mutex_lock(&fw->lock);
    int r = firewall_netlink_get(fw->nl_fd, &fw->nl_seq, fw->table, &key, &found);
    pthread_mutex_unlock(&fw->lock);
    if (r <= 0)
        return r;
    return memcmp(found.data, key.data, 4) == 0;
}
