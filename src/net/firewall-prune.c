/* Reading the firewall back: the start-up prune, which containers have their
 * state (restore), and the slow paths of remove and of NetOut updates when the
 * table is not what the caller's records say. Elements are dumped through
 * nfnetlink (their keys as the kernel has them, echoed back to delete them);
 * the log chains, @netout_log and @subnets, which few containers have, through
 * libnftables listings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "cloche/hashmap.h"
#include "firewall-internal.h"

static uint32_t key_ipv4(const uint8_t *p)
{
    uint32_t be;
    memcpy(&be, p, 4);
    return ntohl(be);
}

static uint32_t element_mark(const FirewallElement *e)
{
    uint32_t mark;
    memcpy(&mark, e->data, 4);
    return mark;
}

static void hashmap_freep(HashMap **m)
{
    hashmap_free(*m);
    *m = NULL;
}

/* ---- one container, when the quick path clashed ---------------------------- */

typedef struct Collect {
    uint32_t ip;
    const char *bridge;
    FirewallBatch *batch;
    const FirewallNetIn *netin; /* netin: only these host ports */
    size_t n_netin;
} Collect;

/* NetOut elements whose first field is the container's address. */
static int collect_netout(const FirewallElement *e, void *userdata)
{
    Collect *c = userdata;
    if (e->key_len >= 4 && key_ipv4(e->key) == c->ip)
        firewall_batch_push(c->batch, e, true);
    return c->batch->error;
}

static int dump_netout_of(Firewall *fw, Collect *c)
{
    static const FirewallSetId sets[] = {FIREWALL_SET_NETOUT_L4, FIREWALL_SET_NETOUT_ICMP,
                                         FIREWALL_SET_NETOUT_ANY};
    for (size_t i = 0; i < ELEMENTSOF(sets); i++) {
        int r =
            firewall_netlink_dump(fw->nl_fd, &fw->nl_seq, fw->table, sets[i], collect_netout, c);
        if (r < 0)
            return r;
    }
    return 0;
}

int firewall_replace_netout_locked(Firewall *fw, const FirewallContainer *c,
                                   const FirewallBatch *add)
{
    _cleanup_(firewall_batch_done) FirewallBatch b = {0};
    Collect collect = {.ip = c->ip, .batch = &b};
    int r = dump_netout_of(fw, &collect);
    if (r < 0) {
        firewall_set_error(fw, "Failed to list the NetOut elements: %s", strerrordesc_np(-r));
        return r;
    }
    for (size_t i = 0; i < add->n; i++)
        firewall_batch_push(&b, &add->v[i], add->v[i].remove);
    return firewall_commit_locked(fw, &b);
}

static int collect_ifaddr(const FirewallElement *e, void *userdata)
{
    Collect *c = userdata;
    if (e->key_len == IFNAMSIZ + 4 && key_ipv4(e->key + IFNAMSIZ) == c->ip &&
        strncmp((const char *)e->key, c->bridge, IFNAMSIZ) == 0)
        firewall_batch_push(c->batch, e, true);
    return c->batch->error;
}

static int collect_netin(const FirewallElement *e, void *userdata)
{
    Collect *c = userdata;
    if (e->key_len != 8 || e->data_len < 4 || key_ipv4(e->data) != c->ip)
        return 0;
    unsigned port = (unsigned)e->key[4] << 8 | e->key[5];
    unsigned bit = e->key[0] == 6 ? PORT_PROTO_TCP : e->key[0] == 17 ? PORT_PROTO_UDP : 0;
    for (size_t k = 0; k < c->n_netin; k++)
        if (c->netin[k].host_port == port && (c->netin[k].protos & bit)) {
            firewall_batch_push(c->batch, e, true);
            break;
        }
    return c->batch->error;
}

int firewall_remove_listed_locked(Firewall *fw, const FirewallContainer *c,
                                  const FirewallNetIn *netin, size_t n_netin)
{
    _cleanup_(firewall_batch_done) FirewallBatch b = {0};
    FirewallElement key = firewall_owner_element(c), owner;
    int r = firewall_netlink_get(fw->nl_fd, &fw->nl_seq, fw->table, &key, &owner);
    if (r < 0)
        goto fail;
    /* Someone else's address now: nothing under it is ours. */
    if (r > 0 && element_mark(&owner) != element_mark(&key))
        return 0;
    if (r > 0)
        firewall_batch_push(&b, &owner, true);
    Collect collect = {
        .ip = c->ip, .bridge = c->bridge, .batch = &b, .netin = netin, .n_netin = n_netin};
    if ((r = firewall_netlink_dump(fw->nl_fd, &fw->nl_seq, fw->table, FIREWALL_SET_IFADDR,
                                   collect_ifaddr, &collect)) < 0 ||
        (r = firewall_netlink_dump(fw->nl_fd, &fw->nl_seq, fw->table, FIREWALL_SET_NETIN,
                                   collect_netin, &collect)) < 0 ||
        (r = dump_netout_of(fw, &collect)) < 0)
        goto fail;
    return firewall_commit_locked(fw, &b);
fail:
    firewall_set_error(fw, "Failed to list the firewall's elements: %s", strerrordesc_np(-r));
    return r;
}

/* ---- which containers have their state ------------------------------------ */

struct FirewallPresence {
    HashMap *owners; /* "a.b.c.d" -> owner mark (as a pointer-sized integer) */
};

static int collect_owner(const FirewallElement *e, void *userdata)
{
    HashMap *owners = userdata;
    if (e->key_len != 4 || e->data_len != 4)
        return 0;
    int r = hashmap_put(owners, firewall_ipv4_text(key_ipv4(e->key)).s,
                        (void *)(uintptr_t)(element_mark(e) | (1ull << 32)));
    return r == -EEXIST ? 0 : r;
}

static int owners_load_locked(Firewall *fw, HashMap **ret)
{
    _cleanup_(hashmap_freep) HashMap *owners = NULL;
    int r = hashmap_new(&owners);
    if (r >= 0)
        r = firewall_netlink_dump(fw->nl_fd, &fw->nl_seq, fw->table, FIREWALL_SET_OWNER,
                                  collect_owner, owners);
    if (r < 0) {
        firewall_set_error(fw, "Failed to list the owner map: %s", strerrordesc_np(-r));
        return r;
    }
    *ret = TAKE_PTR(owners);
    return 0;
}

static bool owners_have(HashMap *owners, const FirewallContainer *c)
{
    void *v = hashmap_get(owners, firewall_ipv4_text(c->ip).s);
    return v && (uint32_t)(uintptr_t)v == firewall_owner_mark(c->id);
}

int firewall_presence_load(Firewall *fw, FirewallPresence **ret)
{
    FirewallPresence *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&fw->lock);
    int r = owners_load_locked(fw, &p->owners);
    pthread_mutex_unlock(&fw->lock);
    if (r < 0) {
        free(p);
        return r;
    }
    *ret = p;
    return 0;
}

int firewall_presence_has(const FirewallPresence *p, const FirewallContainer *c)
{
    if (!c || !firewall_name_valid(c->id, FIREWALL_ID_MAX, false))
        return -EINVAL;
    return owners_have(p->owners, c) ? 1 : 0;
}

void firewall_presence_free(FirewallPresence *p)
{
    if (!p)
        return;
    hashmap_free(p->owners);
    free(p);
}

/* ---- prune --------------------------------------------------------------- */

typedef struct Prune {
    HashMap *by_id;
    HashMap *by_ip; /* "a.b.c.d" -> its FirewallContainer */
    FirewallBatch batch;
} Prune;

static void prune_done(Prune *p)
{
    hashmap_free(p->by_id);
    hashmap_free(p->by_ip);
    firewall_batch_done(&p->batch);
}

static const FirewallContainer *live_at(const Prune *p, uint32_t ip)
{
    return hashmap_get(p->by_ip, firewall_ipv4_text(ip).s);
}

static int prune_owner(const FirewallElement *e, void *userdata)
{
    Prune *p = userdata;
    const FirewallContainer *c = e->key_len == 4 ? live_at(p, key_ipv4(e->key)) : NULL;
    if (!c || e->data_len != 4 || element_mark(e) != firewall_owner_mark(c->id))
        firewall_batch_push(&p->batch, e, true);
    return p->batch.error;
}

static int prune_ifaddr(const FirewallElement *e, void *userdata)
{
    Prune *p = userdata;
    const FirewallContainer *c =
        e->key_len == IFNAMSIZ + 4 ? live_at(p, key_ipv4(e->key + IFNAMSIZ)) : NULL;
    if (!c || strncmp((const char *)e->key, c->bridge, IFNAMSIZ) != 0)
        firewall_batch_push(&p->batch, e, true);
    return p->batch.error;
}

static int prune_netin(const FirewallElement *e, void *userdata)
{
    Prune *p = userdata;
    if (e->data_len < 4 || !live_at(p, key_ipv4(e->data)))
        firewall_batch_push(&p->batch, e, true);
    return p->batch.error;
}

static int prune_netout(const FirewallElement *e, void *userdata)
{
    Prune *p = userdata;
    if (e->key_len < 4 || !live_at(p, key_ipv4(e->key)))
        firewall_batch_push(&p->batch, e, true);
    return p->batch.error;
}

static int prune_index(Firewall *fw, const FirewallContainer *live, size_t n_live, Prune *p)
{
    int r = hashmap_new(&p->by_id);
    if (r >= 0)
        r = hashmap_new(&p->by_ip);
    for (size_t i = 0; r >= 0 && i < n_live; i++) {
        r = firewall_check_container(fw, &live[i]);
        if (r >= 0)
            r = hashmap_put(p->by_id, live[i].id, (void *)&live[i]);
        if (r >= 0)
            r = hashmap_put(p->by_ip, firewall_ipv4_text(live[i].ip).s, (void *)&live[i]);
        if (r == -EEXIST) {
            firewall_set_error(fw, "Container id or address listed twice: '%s'", live[i].id);
            r = -EINVAL;
        }
    }
    return r;
}

/* The log chains, @netout_log and @subnets (few elements; libnftables). */
static int prune_listed_locked(Firewall *fw, const Prune *p, const FirewallContainer *all,
                               size_t n_all, FirewallScript *s)
{
    _cleanup_(firewall_table_state_done) FirewallTableState st = {0};
    json_object *root = json_object_new_object(), *items = json_object_new_array();
    if (!root || !items || json_object_object_add(root, "nftables", items) < 0) {
        json_object_put(items);
        json_object_put(root);
        return -ENOMEM;
    }
    static const char *const lists[] = {"map", "netout_log", "set", "subnets"};
    int r = 0;
    for (size_t i = 0; r >= 0 && i < ELEMENTSOF(lists); i += 2) {
        _cleanup_free_ char *command = NULL;
        json_object *part = NULL, *got;
        if (asprintf(&command, "list %s inet %s %s", lists[i], fw->table, lists[i + 1]) < 0) {
            command = NULL;
            r = -ENOMEM;
            break;
        }
        r = firewall_list_json_locked(fw, command, &part);
        if (r >= 0 && json_object_object_get_ex(part, "nftables", &got))
            for (size_t j = 0; r >= 0 && j < json_object_array_length(got); j++)
                r = json_object_array_add(items,
                                          json_object_get(json_object_array_get_idx(got, j)));
        json_object_put(part);
    }
    if (r < 0) {
        json_object_put(root);
        return r;
    }
    r = firewall_table_state_index(root, &st);
    const char *listing = NULL;
    if (r >= 0)
        r = firewall_run_locked(fw, "list chains inet", &listing);
    if (r >= 0)
        r = firewall_chains_listing_index(listing, fw->table, st.chains);
    if (r < 0)
        return r;

    const char *t = fw->table, *key;
    void *value;
    for (size_t state = 0; hashmap_iterate(st.netout_log, &state, &key, &value) == 0;) {
        const FirewallContainer *c = hashmap_get(p->by_ip, key);
        char chain[FIREWALL_CHAIN_NAME_MAX];
        if (c)
            firewall_chain_name(c, chain);
        if (!c || strcmp(chain, value) != 0)
            firewall_script_add(s, "delete element inet %s netout_log { %s }\n", t, key);
    }
    for (size_t state = 0; hashmap_iterate(st.chains, &state, &key, &value) == 0;) {
        size_t plen = strlen(FIREWALL_CHAIN_PREFIX);
        if (strncmp(key, FIREWALL_CHAIN_PREFIX, plen) != 0 || hashmap_get(p->by_id, key + plen) ||
            !firewall_name_valid(key + plen, FIREWALL_ID_MAX, false))
            continue;
        firewall_script_add(s, "flush chain inet %s %s\ndelete chain inet %s %s\n", t, key, t, key);
    }
    uint32_t pool_start, pool_end;
    firewall_net_interval(&fw->cfg.pool, &pool_start, &pool_end);
    for (size_t i = 0; st.subnets && i < json_object_array_length(st.subnets); i++) {
        uint32_t start, end, sub_start, sub_end;
        if (!firewall_json_interval(
                firewall_element_value(json_object_array_get_idx(st.subnets, i)), &start, &end) ||
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
    return s->error;
}

int firewall_prune(Firewall *fw, const FirewallContainer *live, size_t n_live)
{
    _cleanup_(prune_done) Prune p = {0};
    _cleanup_(firewall_script_done) FirewallScript s = {0};
    static const struct {
        FirewallSetId set;
        FirewallElementFn fn;
    } dumps[] = {
        {FIREWALL_SET_OWNER, prune_owner},        {FIREWALL_SET_IFADDR, prune_ifaddr},
        {FIREWALL_SET_NETIN, prune_netin},        {FIREWALL_SET_NETOUT_L4, prune_netout},
        {FIREWALL_SET_NETOUT_ICMP, prune_netout}, {FIREWALL_SET_NETOUT_ANY, prune_netout},
    };

    if (n_live && !live)
        return -EINVAL;
    pthread_mutex_lock(&fw->lock);
    int r = prune_index(fw, live, n_live, &p);
    for (size_t i = 0; r >= 0 && i < ELEMENTSOF(dumps); i++) {
        r = firewall_netlink_dump(fw->nl_fd, &fw->nl_seq, fw->table, dumps[i].set, dumps[i].fn, &p);
        if (r < 0)
            firewall_set_error(fw, "Failed to list '%s': %s", firewall_set_names[dumps[i].set],
                               strerrordesc_np(-r));
    }
    /* Elements first, then what libnftables holds: a chain still referenced by
     * @netout_log cannot go before its element. */
    if (r >= 0)
        r = firewall_commit_locked(fw, &p.batch);
    if (r >= 0)
        r = prune_listed_locked(fw, &p, live, n_live, &s);
    if (r >= 0 && s.len > 0)
        r = firewall_run_locked(fw, s.text, NULL);
    pthread_mutex_unlock(&fw->lock);
    return r;
}
