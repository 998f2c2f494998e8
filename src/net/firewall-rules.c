/* What cloche's nftables table says, both ways: the text of its global rules and
 * of the NetOut rules of a container's chain, built into a script buffer; and the
 * table read back from a JSON listing (start-up repair). Everything written into
 * a script is either a name validated here or a number or address formatted
 * here; user text never reaches a script as it came. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/hashmap.h"
#include "firewall-internal.h"

/* ---- the script buffer --------------------------------------------------- */

void firewall_script_done(FirewallScript *s)
{
    free(s->text);
    *s = (FirewallScript){0};
}

void firewall_script_add(FirewallScript *s, const char *fmt, ...)
{
    if (s->error)
        return;
    for (;;) {
        size_t room = s->size - s->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->text ? s->text + s->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            s->error = -EINVAL;
            return;
        }
        if ((size_t)n < room) {
            s->len += (size_t)n;
            return;
        }
        size_t need = s->len + (size_t)n + 1;
        if (need > FIREWALL_SCRIPT_MAX) {
            s->error = -E2BIG;
            return;
        }
        size_t size = s->size ? s->size : 4096;
        while (size < need)
            size *= 2;
        char *text = realloc(s->text, size);
        if (!text) {
            s->error = -ENOMEM;
            return;
        }
        s->text = text;
        s->size = size;
    }
}

/* ---- names and addresses ------------------------------------------------- */

Ipv4Text firewall_ipv4_text(uint32_t addr)
{
    Ipv4Text t;
    struct in_addr in = {.s_addr = htonl(addr)};
    if (!inet_ntop(AF_INET, &in, t.s, sizeof(t.s)))
        snprintf(t.s, sizeof(t.s), "0.0.0.0");
    return t;
}

Ipv4NetText firewall_ipv4net_text(const Ipv4Net *net)
{
    Ipv4NetText t;
    snprintf(t.s, sizeof(t.s), "%s/%u", firewall_ipv4_text(net->network).s, net->prefix);
    return t;
}

static bool char_allowed(char c, bool allow_dot)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || (allow_dot && c == '.');
}

bool firewall_name_valid(const char *s, size_t max, bool allow_dot)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!char_allowed(s[i], allow_dot))
            return false;
    return true;
}

void firewall_log_prefix(const char *handle, char ret[static FIREWALL_LOG_PREFIX_MAX + 1])
{
    size_t i = 0;
    for (; handle && handle[i] && i < FIREWALL_LOG_PREFIX_MAX; i++)
        ret[i] = char_allowed(handle[i], true) ? handle[i] : '_';
    ret[i] = '\0';
}

/* ---- NetOut rules -------------------------------------------------------- */

/* The prefix length if [start, end] is exactly one CIDR block, else -1. */
static int cidr_prefix(uint32_t start, uint32_t end)
{
    uint32_t size_minus_one = end - start;
    if ((size_minus_one & (size_minus_one + 1)) != 0 || (start & size_minus_one) != 0)
        return -1;
    if (size_minus_one == UINT32_MAX)
        return 0;
    return 32 - __builtin_popcount(size_minus_one);
}

static void script_range(FirewallScript *s, const char *match, uint32_t start, uint32_t end,
                         bool address)
{
    int prefix = address && end != start ? cidr_prefix(start, end) : -1;
    if (prefix >= 0) {
        firewall_script_add(s, " %s %s/%d", match, firewall_ipv4_text(start).s, prefix);
        return;
    }
    if (address)
        firewall_script_add(s, " %s %s", match, firewall_ipv4_text(start).s);
    else
        firewall_script_add(s, " %s %u", match, start);
    if (end != start) {
        if (address)
            firewall_script_add(s, "-%s", firewall_ipv4_text(end).s);
        else
            firewall_script_add(s, "-%u", end);
    }
}

/* One nft rule per network and port range: no anonymous sets. libnftables lists
 * every set of the table (and the elements of interval sets) before each
 * transaction, so sets inside per-container rules would make every call cost
 * O(containers): 10 to 170 ms at 1000 containers, against ~1 ms without. */
static int script_netout_rule(FirewallScript *s, const char *verb, const char *table,
                              const char *chain, const char *log_prefix, const FirewallRule *rule,
                              size_t *n_lines, char *err, size_t errlen)
{
    int r = firewall_rule_check(rule, err, errlen);
    if (r < 0)
        return r;
    bool ports = rule->protocol == FIREWALL_PROTOCOL_TCP || rule->protocol == FIREWALL_PROTOCOL_UDP;

    _cleanup_free_ FirewallIpv4Range *ranges = NULL;
    size_t n_ranges = 0;
    if (rule->n_networks > 0) {
        ranges = calloc(rule->n_networks, sizeof(*ranges));
        if (!ranges)
            return -ENOMEM;
    }
    for (size_t i = 0; i < rule->n_networks; i++) {
        r = firewall_parse_range(&rule->networks[i], &ranges[n_ranges], err, errlen);
        if (r < 0)
            return r;
        n_ranges += (size_t)r;
    }
    /* Networks given, none of them IPv4; or ICMPv6: nothing a container can send. */
    if ((rule->n_networks > 0 && n_ranges == 0) || rule->protocol == FIREWALL_PROTOCOL_ICMPV6)
        return 0;

    size_t n_dest = rule->n_networks > 0 ? n_ranges : 1;
    size_t n_port = ports && rule->n_ports > 0 ? rule->n_ports : 1;
    if (n_dest * n_port > FIREWALL_NETOUT_LINES_MAX - *n_lines) {
        snprintf(err, errlen,
                 "NetOut rules need more than %u nftables rules (one per network "
                 "range and port range)",
                 FIREWALL_NETOUT_LINES_MAX);
        return -EINVAL;
    }
    *n_lines += n_dest * n_port;

    const char *proto = rule->protocol == FIREWALL_PROTOCOL_TCP ? "tcp" : "udp";
    /* Prepending (`insert`) goes backwards to keep the order. */
    bool backwards = verb[0] == 'i';
    for (size_t dd = 0; dd < n_dest; dd++)
        for (size_t pp = 0; pp < n_port; pp++) {
            size_t d = backwards ? n_dest - 1 - dd : dd, p = backwards ? n_port - 1 - pp : pp;
            firewall_script_add(s, "%s rule inet %s %s", verb, table, chain);
            if (n_ranges > 0)
                script_range(s, "ip daddr", ranges[d].start, ranges[d].end, true);
            if (ports && rule->n_ports > 0) {
                char match[16];
                snprintf(match, sizeof(match), "%s dport", proto);
                script_range(s, match, rule->ports[p].start, rule->ports[p].end, false);
            } else if (ports) {
                firewall_script_add(s, " meta l4proto %s", proto);
            } else if (rule->protocol == FIREWALL_PROTOCOL_ICMP) {
                if (!rule->has_icmp_type)
                    firewall_script_add(s, " meta l4proto icmp");
                else if (!rule->has_icmp_code)
                    firewall_script_add(s, " icmp type %u", rule->icmp_type);
                else
                    firewall_script_add(s, " icmp type %u icmp code %u", rule->icmp_type,
                                        rule->icmp_code);
            }
            if (rule->log)
                firewall_script_add(s, " log prefix \"%s \"", log_prefix);
            firewall_script_add(s, " accept\n");
        }
    return s->error;
}

int firewall_script_netout(FirewallScript *s, const char *table, const char *chain,
                           const char *log_prefix, const FirewallRule *rules, size_t n_rules,
                           bool prepend, char *err, size_t errlen)
{
    size_t n_lines = 0;
    /* `insert` puts each rule first: going backwards keeps the given order. */
    for (size_t i = 0; i < n_rules; i++) {
        const FirewallRule *rule = &rules[prepend ? n_rules - 1 - i : i];
        int r = script_netout_rule(s, prepend ? "insert" : "add", table, chain, log_prefix, rule,
                                   &n_lines, err, errlen);
        if (r < 0)
            return r;
    }
    return s->error;
}

/* ---- the global part ----------------------------------------------------- */

static const char *const base_chains[] = {
    "prerouting { type nat hook prerouting priority dstnat; policy accept; }",
    "output { type nat hook output priority -100; policy accept; }",
    "postrouting { type nat hook postrouting priority srcnat; policy accept; }",
    "forward { type filter hook forward priority filter; policy accept; }",
    "input { type filter hook input priority filter; policy accept; }",
    "default",
};
static const char *const base_chain_names[] = {
    "prerouting", "output", "postrouting", "forward", "input", "default",
};

/* The table, its sets and maps, its chains (flushed: the rules follow). */
static void script_sets(FirewallScript *s, const FirewallConfig *cfg)
{
    const char *t = cfg->table;

    firewall_script_add(s, "add table inet %s\n", t);
    firewall_script_add(s,
                        "add map inet %s netin { type inet_proto . inet_service : "
                        "ipv4_addr . inet_service; }\n",
                        t);
    /* NetOut: what containers may reach beyond the defaults, as elements (see
     * firewall-netout.c); the log chains of containers with logged rules. */
    for (unsigned k = 0; k < FIREWALL_NETOUT_SHARDS; k++) {
        firewall_script_add(s,
                            "add set inet %s netout_l4_%u { type ipv4_addr . ipv4_addr . "
                            "inet_proto . inet_service; flags interval; }\n",
                            t, k);
        firewall_script_add(s,
                            "add set inet %s netout_icmp_%u { type ipv4_addr . ipv4_addr . "
                            "icmp_type . icmp_code; flags interval; }\n",
                            t, k);
        firewall_script_add(s,
                            "add set inet %s netout_any_%u { type ipv4_addr . ipv4_addr; flags "
                            "interval; }\n",
                            t, k);
        firewall_script_add(s, "add chain inet %s netout_%u\nflush chain inet %s netout_%u\n", t, k,
                            t, k);
        firewall_script_add(s,
                            "add rule inet %s netout_%u ip saddr . ip daddr . meta l4proto . th "
                            "dport @netout_l4_%u accept\n",
                            t, k, k);
        firewall_script_add(s,
                            "add rule inet %s netout_%u ip saddr . ip daddr . icmp type . icmp "
                            "code @netout_icmp_%u accept\n",
                            t, k, k);
        firewall_script_add(
            s, "add rule inet %s netout_%u ip saddr . ip daddr @netout_any_%u accept\n", t, k, k);
    }
    firewall_script_add(s, "add map inet %s netout_shards { type ipv4_addr : verdict; }\n", t);
    for (unsigned k = 0; k < FIREWALL_NETOUT_SHARDS; k++)
        firewall_script_add(s, "add element inet %s netout_shards { 0.0.0.%u : jump netout_%u }\n",
                            t, k << 2, k);
    firewall_script_add(s, "add map inet %s netout_log { type ipv4_addr : verdict; }\n", t);
    /* Whose each address is: a stale call for a container that is gone cannot
     * take the elements of the one that has its address now. */
    firewall_script_add(s, "add map inet %s owner { type ipv4_addr : mark; }\n", t);
    /* No auto-merge: a subnet leaving must not punch a hole into a merged range. */
    firewall_script_add(s, "add set inet %s subnets { type ipv4_addr; flags interval; }\n", t);
    firewall_script_add(s, "add set inet %s ifaddr { type ifname . ipv4_addr; }\n", t);
    for (size_t i = 0; i < ELEMENTSOF(base_chains); i++)
        firewall_script_add(s, "add chain inet %s %s\n", t, base_chains[i]);
    for (size_t i = 0; i < ELEMENTSOF(base_chain_names); i++)
        firewall_script_add(s, "flush chain inet %s %s\n", t, base_chain_names[i]);
}

/* NetIn and masquerade. */
static void script_nat(FirewallScript *s, const FirewallConfig *cfg)
{
    const char *t = cfg->table, *p = cfg->if_prefix;

    /* NetIn: local destinations, from outside and from the host itself. */
    static const char dnat[] =
        "meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @netin";
    firewall_script_add(s, "add rule inet %s prerouting %s\n", t, dnat);
    firewall_script_add(s, "add rule inet %s output %s\n", t, dnat);

    /* The host's loopback towards a container (the container would answer its
     * own 127.0.0.1), a container reaching a published port (hairpin), egress. */
    firewall_script_add(s,
                        "add rule inet %s postrouting ip saddr 127.0.0.0/8 oifname \"%s*\" "
                        "masquerade\n",
                        t, p);
    firewall_script_add(s,
                        "add rule inet %s postrouting ct status dnat ip saddr @subnets "
                        "oifname \"%s*\" masquerade\n",
                        t, p);
    firewall_script_add(s,
                        "add rule inet %s postrouting ip saddr @subnets oifname != \"%s*\" "
                        "masquerade\n",
                        t, p);
}

/* What containers may send through the host. */
static void script_forward(FirewallScript *s, const FirewallConfig *cfg)
{
    const char *t = cfg->table, *p = cfg->if_prefix;

    /* Anti-spoofing first, or a forged source reaches a published port. */
    firewall_script_add(s,
                        "add rule inet %s forward iifname \"%s*\" iifname . ip saddr != @ifaddr "
                        "drop\n",
                        t, p);
    firewall_script_add(s, "add rule inet %s forward ct state established,related accept\n", t);
    firewall_script_add(s, "add rule inet %s forward ct status dnat accept\n", t);
    /* Logged rules first (their chain returns here when none matched), then the
     * elements, the container's own subnet among them. */
    firewall_script_add(s, "add rule inet %s forward iifname \"%s*\" ip saddr vmap @netout_log\n",
                        t, p);
    firewall_script_add(s,
                        "add rule inet %s forward iifname \"%s*\" ip saddr & " FIREWALL_SHARD_MASK
                        " vmap @netout_shards\n",
                        t, p);
    firewall_script_add(s,
                        "add rule inet %s forward iifname \"%s*\" ip daddr @subnets reject with "
                        "icmp type admin-prohibited\n",
                        t, p);
    firewall_script_add(
        s, "add rule inet %s forward iifname \"%s*\" meta nfproto ipv4 goto default\n", t, p);
    firewall_script_add(s, "add rule inet %s forward iifname \"%s*\" drop\n", t, p);
}

/* What containers may reach on the host itself, and the deny list. */
static void script_input(FirewallScript *s, const FirewallConfig *cfg)
{
    const char *t = cfg->table, *p = cfg->if_prefix;

    firewall_script_add(s,
                        "add rule inet %s input iifname \"%s*\" ct state established,related "
                        "accept\n",
                        t, p);
    firewall_script_add(s, "add rule inet %s input iifname \"%s*\" icmp type echo-request accept\n",
                        t, p);
    for (size_t i = 0; i < cfg->n_dns; i++)
        for (size_t k = 0; k < 2; k++)
            firewall_script_add(s,
                                "add rule inet %s input iifname \"%s*\" ip daddr %s %s dport 53 "
                                "accept\n",
                                t, p, firewall_ipv4_text(cfg->dns[i]).s, k ? "tcp" : "udp");
    if (cfg->allow_host_access) {
        firewall_script_add(s, "add rule inet %s input iifname \"%s*\" accept\n", t, p);
    } else {
        firewall_script_add(s,
                            "add rule inet %s input iifname \"%s*\" meta l4proto tcp reject "
                            "with tcp reset\n",
                            t, p);
        firewall_script_add(s,
                            "add rule inet %s input iifname \"%s*\" reject with icmp type "
                            "admin-prohibited\n",
                            t, p);
        /* Not IPv4: containers have no other protocol to speak to the host. */
        firewall_script_add(s, "add rule inet %s input iifname \"%s*\" drop\n", t, p);
    }

    /* The operator's deny list, for container egress not allowed by a NetOut rule. */
    for (size_t i = 0; i < cfg->n_deny; i++)
        firewall_script_add(s,
                            "add rule inet %s default ip daddr %s reject with icmp type "
                            "admin-prohibited\n",
                            t, firewall_ipv4net_text(&cfg->deny[i]).s);
    firewall_script_add(s, "add rule inet %s default accept\n", t);
}

void firewall_script_globals(FirewallScript *s, const FirewallConfig *cfg)
{
    script_sets(s, cfg);
    script_nat(s, cfg);
    script_forward(s, cfg);
    script_input(s, cfg);
}

/* ---- reading the table back ---------------------------------------------- */

/* An interval element of a JSON listing: "a", {"prefix": ...} or {"range": ...}. */
static bool json_ipv4(json_object *o, uint32_t *ret)
{
    struct in_addr in;
    if (!json_object_is_type(o, json_type_string) ||
        inet_pton(AF_INET, json_object_get_string(o), &in) != 1)
        return false;
    *ret = ntohl(in.s_addr);
    return true;
}

bool firewall_json_interval(json_object *o, uint32_t *ret_start, uint32_t *ret_end)
{
    json_object *x, *addr, *len;
    if (json_ipv4(o, ret_start)) {
        *ret_end = *ret_start;
        return true;
    }
    if (json_object_object_get_ex(o, "prefix", &x) && json_object_object_get_ex(x, "addr", &addr) &&
        json_object_object_get_ex(x, "len", &len) && json_ipv4(addr, ret_start)) {
        int prefix = json_object_get_int(len);
        if (prefix < 0 || prefix > 32)
            return false;
        *ret_end = *ret_start | ~ipv4net_mask((unsigned)prefix);
        return true;
    }
    return json_object_object_get_ex(o, "range", &x) && json_object_array_length(x) == 2 &&
           json_ipv4(json_object_array_get_idx(x, 0), ret_start) &&
           json_ipv4(json_object_array_get_idx(x, 1), ret_end);
}

/* Element `name` of kind "set" or "map" in a `list table` answer: its "elem"
 * array, or NULL when empty or absent. */
json_object *firewall_table_elements(json_object *root, const char *kind, const char *name)
{
    json_object *items, *body, *n, *elem;
    if (!json_object_object_get_ex(root, "nftables", &items) ||
        !json_object_is_type(items, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(items); i++)
        if (json_object_object_get_ex(json_object_array_get_idx(items, i), kind, &body) &&
            json_object_object_get_ex(body, "name", &n) &&
            strcmp(json_object_get_string(n), name) == 0 &&
            json_object_object_get_ex(body, "elem", &elem) &&
            json_object_is_type(elem, json_type_array))
            return elem;
    return NULL;
}

/* An element with options (timeout, counter, comment) is wrapped in {"elem": {"val": ...}}. */
json_object *firewall_element_value(json_object *e)
{
    json_object *wrap, *val;
    if (json_object_object_get_ex(e, "elem", &wrap) && json_object_object_get_ex(wrap, "val", &val))
        return val;
    return e;
}

void firewall_table_state_done(FirewallTableState *st)
{
    hashmap_free(st->chains);
    hashmap_free(st->netout_log);
    json_object_put(st->root);
    *st = (FirewallTableState){0};
}

static int index_chains(FirewallTableState *st, json_object *items)
{
    for (size_t i = 0; i < json_object_array_length(items); i++) {
        json_object *body, *name;
        if (!json_object_object_get_ex(json_object_array_get_idx(items, i), "chain", &body) ||
            !json_object_object_get_ex(body, "name", &name))
            continue;
        const char *n = json_object_get_string(name);
        if (strncmp(n, FIREWALL_CHAIN_PREFIX, strlen(FIREWALL_CHAIN_PREFIX)) != 0)
            continue;
        int r = hashmap_put(st->chains, n, body);
        if (r < 0 && r != -EEXIST)
            return r;
    }
    return 0;
}

static int index_netout_log(FirewallTableState *st)
{
    json_object *elems = firewall_table_elements(st->root, "map", "netout_log");
    for (size_t i = 0; elems && i < json_object_array_length(elems); i++) {
        json_object *e = firewall_element_value(json_object_array_get_idx(elems, i)), *verdict,
                    *target;
        uint32_t ip;
        if (!json_object_is_type(e, json_type_array) || json_object_array_length(e) != 2 ||
            !json_ipv4(json_object_array_get_idx(e, 0), &ip))
            continue;
        json_object *value = json_object_array_get_idx(e, 1);
        if ((!json_object_object_get_ex(value, "goto", &verdict) &&
             !json_object_object_get_ex(value, "jump", &verdict)) ||
            !json_object_object_get_ex(verdict, "target", &target))
            continue;
        int r = hashmap_put(st->netout_log, firewall_ipv4_text(ip).s,
                            (void *)json_object_get_string(target));
        if (r < 0 && r != -EEXIST)
            return r;
    }
    return 0;
}

/* Is `chain` in the text of `list chains inet`? Lines are "table inet <t> {",
 * "\tchain <name> {", hook lines, "\t}" and "}". */
bool firewall_chains_listing_has(const char *listing, const char *table, const char *chain)
{
    char table_line[FIREWALL_TABLE_MAX + 16], chain_line[FIREWALL_CHAIN_NAME_MAX + 16];
    snprintf(table_line, sizeof(table_line), "table inet %s {", table);
    snprintf(chain_line, sizeof(chain_line), "\tchain %s {", chain);
    bool in_table = false;
    for (const char *line = listing; line && *line;) {
        size_t len = strcspn(line, "\n");
        if (line[0] != '\t')
            in_table = len == strlen(table_line) && memcmp(line, table_line, len) == 0;
        else if (in_table && len == strlen(chain_line) && memcmp(line, chain_line, len) == 0)
            return true;
        line += len + (line[len] == '\n');
    }
    return false;
}

int firewall_chains_listing_index(const char *listing, const char *table, HashMap *ret)
{
    char table_line[FIREWALL_TABLE_MAX + 16];
    snprintf(table_line, sizeof(table_line), "table inet %s {", table);
    bool in_table = false;
    for (const char *line = listing; line && *line;) {
        size_t len = strcspn(line, "\n");
        if (line[0] != '\t')
            in_table = len == strlen(table_line) && memcmp(line, table_line, len) == 0;
        else if (in_table && len > 9 && len < FIREWALL_CHAIN_NAME_MAX + 8 &&
                 memcmp(line, "\tchain ", 7) == 0 && memcmp(line + len - 2, " {", 2) == 0) {
            char name[FIREWALL_CHAIN_NAME_MAX + 8];
            memcpy(name, line + 7, len - 9);
            name[len - 9] = '\0';
            int r = hashmap_put(ret, name, ret);
            if (r < 0 && r != -EEXIST)
                return r;
        }
        line += len + (line[len] == '\n');
    }
    return 0;
}

int firewall_table_state_index(json_object *root, FirewallTableState *st)
{
    json_object *items;
    int r;

    st->root = root;
    if ((r = hashmap_new(&st->chains)) < 0 || (r = hashmap_new(&st->netout_log)) < 0)
        return r;
    if (json_object_object_get_ex(root, "nftables", &items) &&
        json_object_is_type(items, json_type_array) && (r = index_chains(st, items)) < 0)
        return r;
    if ((r = index_netout_log(st)) < 0)
        return r;
    st->subnets = firewall_table_elements(root, "set", "subnets");
    return 0;
}
