/* A container's NetOut rules as elements of three concatenated interval sets:
 *   netout_l4    container . destination range . protocol . port range  (tcp, udp)
 *   netout_icmp  container . destination range . type range . code range
 *   netout_any   container . destination range                          (all)
 * The kernel refuses elements that overlap inside a set, and rules may overlap
 * (rules only allow, so overlapping is harmless), so each set's part is made of
 * disjoint boxes first: the union of the rules' boxes, cut along each dimension
 * in turn, neighbours with the same content merged again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firewall-internal.h"

#define DIMS_MAX 3

typedef struct Box {
    uint32_t lo[DIMS_MAX];
    uint32_t hi[DIMS_MAX];
} Box;

typedef struct BoxList {
    Box *v;
    size_t n;
    size_t size;
    int error;
    size_t *budget; /* box visits left for the whole cut (shared by the levels) */
} BoxList;

/* What cutting may cost (box visits, ~1 ns each), and what it may produce: rules
 * that overlap in every dimension at once could make both grow as a product. */
#define CUT_BUDGET 100000000u

static void box_list_done(BoxList *l)
{
    free(l->v);
    *l = (BoxList){0};
}

static void box_push(BoxList *l, const Box *b)
{
    if (l->error)
        return;
    if (l->n >= FIREWALL_NETOUT_BOXES_MAX) {
        l->error = -E2BIG;
        return;
    }
    if (l->n == l->size) {
        size_t size = l->size ? l->size * 2 : 16;
        Box *v = realloc(l->v, size * sizeof(*v));
        if (!v) {
            l->error = -ENOMEM;
            return;
        }
        l->v = v;
        l->size = size;
    }
    l->v[l->n++] = *b;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool same_tail(const BoxList *a, const BoxList *b, unsigned dim, unsigned dims)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        for (unsigned d = dim + 1; d < dims; d++)
            if (a->v[i].lo[d] != b->v[i].lo[d] || a->v[i].hi[d] != b->v[i].hi[d])
                return false;
    return true;
}

/* Emit `tail` (boxes of dimensions dim+1..) under [lo, hi] on dimension dim. */
static void emit(BoxList *out, const BoxList *tail, unsigned dim, unsigned dims, uint32_t lo,
                 uint32_t hi)
{
    if (dim + 1 == dims) {
        Box b = {0};
        b.lo[dim] = lo;
        b.hi[dim] = hi;
        box_push(out, &b);
        return;
    }
    for (size_t i = 0; i < tail->n; i++) {
        Box b = tail->v[i];
        b.lo[dim] = lo;
        b.hi[dim] = hi;
        box_push(out, &b);
    }
}

static __thread unsigned sort_dim;

static int compare_lo(const void *a, const void *b)
{
    uint32_t x = (*(const Box *const *)a)->lo[sort_dim], y = (*(const Box *const *)b)->lo[sort_dim];
    return (x > y) - (x < y);
}

/* The union of `in` (dimensions dim.. of each box) as disjoint boxes, appended
 * to out (only dimensions dim.. are set). A sweep along dimension dim: between
 * two consecutive bounds, the boxes open there cover the whole stretch; their
 * union in the remaining dimensions is cut the same way, and stretches with the
 * same result are merged. */
static void disjoint(const Box *const *in, size_t n, unsigned dim, unsigned dims, BoxList *out)
{
    if (n == 0 || out->error)
        return;
    _cleanup_free_ uint64_t *points = calloc(2 * n, sizeof(*points));
    _cleanup_free_ const Box **sorted = calloc(n, sizeof(*sorted));
    _cleanup_free_ const Box **active = calloc(n, sizeof(*active));
    if (!points || !sorted || !active) {
        out->error = -ENOMEM;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        points[2 * i] = in[i]->lo[dim];
        points[2 * i + 1] = (uint64_t)in[i]->hi[dim] + 1;
        sorted[i] = in[i];
    }
    qsort(points, 2 * n, sizeof(*points), compare_u64);
    sort_dim = dim;
    qsort(sorted, n, sizeof(*sorted), compare_lo);

    BoxList prev = {.budget = out->budget}, cur = {.budget = out->budget};
    bool have_prev = false;
    uint64_t prev_lo = 0, prev_hi = 0;
    size_t next = 0, n_active = 0;
    for (size_t p = 0; p + 1 < 2 * n && !out->error; p++) {
        if (points[p] == points[p + 1])
            continue;
        uint64_t lo = points[p], hi = points[p + 1] - 1;
        while (next < n && sorted[next]->lo[dim] <= lo)
            active[n_active++] = sorted[next++];
        size_t k = 0;
        for (size_t i = 0; i < n_active; i++)
            if (active[i]->hi[dim] >= lo)
                active[k++] = active[i];
        n_active = k;
        if (*out->budget < n_active + 1) {
            out->error = -E2BIG;
            break;
        }
        *out->budget -= n_active + 1;
        cur.n = 0;
        if (k > 0 && dim + 1 < dims)
            disjoint(active, k, dim + 1, dims, &cur);
        sort_dim = dim; /* the recursion sorted along its own */
        if (cur.error) {
            out->error = cur.error;
            break;
        }
        if (k > 0 && have_prev && prev_hi + 1 == lo && same_tail(&prev, &cur, dim, dims)) {
            prev_hi = hi;
            continue;
        }
        if (have_prev)
            emit(out, &prev, dim, dims, (uint32_t)prev_lo, (uint32_t)prev_hi);
        have_prev = k > 0;
        if (have_prev) {
            BoxList swap = prev;
            prev = cur;
            cur = swap;
            prev_lo = lo;
            prev_hi = hi;
        }
    }
    if (have_prev && !out->error)
        emit(out, &prev, dim, dims, (uint32_t)prev_lo, (uint32_t)prev_hi);
    box_list_done(&prev);
    box_list_done(&cur);
}

/* ---- rules to boxes ------------------------------------------------------ */

int firewall_parse_range(const FirewallAddressRange *range, FirewallIpv4Range *ret, char *err,
                         size_t errlen)
{
    struct in_addr start4, end4;
    struct in6_addr start6, end6;

    if (!range->start || !range->end) {
        snprintf(err, errlen, "Network range without start or end");
        return -EINVAL;
    }
    bool v4_start = inet_pton(AF_INET, range->start, &start4) == 1;
    bool v4_end = inet_pton(AF_INET, range->end, &end4) == 1;
    if (v4_start && v4_end) {
        ret->start = ntohl(start4.s_addr);
        ret->end = ntohl(end4.s_addr);
        if (ret->start > ret->end) {
            snprintf(err, errlen, "Network range '%s-%s' ends before it starts", range->start,
                     range->end);
            return -EINVAL;
        }
        return 1;
    }
    if (!v4_start && !v4_end && inet_pton(AF_INET6, range->start, &start6) == 1 &&
        inet_pton(AF_INET6, range->end, &end6) == 1)
        return 0;
    snprintf(err, errlen, "Invalid network range '%.45s-%.45s'", range->start, range->end);
    return -EINVAL;
}

int firewall_rule_check(const FirewallRule *rule, char *err, size_t errlen)
{
    if (rule->protocol > FIREWALL_PROTOCOL_ICMPV6) {
        snprintf(err, errlen, "Unknown protocol %u", (unsigned)rule->protocol);
        return -EINVAL;
    }
    if (rule->protocol == FIREWALL_PROTOCOL_ALL && rule->n_ports > 0) {
        snprintf(err, errlen, "Ports cannot be specified for protocol all");
        return -EINVAL;
    }
    bool ports = rule->protocol == FIREWALL_PROTOCOL_TCP || rule->protocol == FIREWALL_PROTOCOL_UDP;
    for (size_t i = 0; ports && i < rule->n_ports; i++)
        if (rule->ports[i].start > rule->ports[i].end) {
            snprintf(err, errlen, "Port range '%u-%u' ends before it starts", rule->ports[i].start,
                     rule->ports[i].end);
            return -EINVAL;
        }
    for (size_t i = 0; i < rule->n_networks; i++) {
        FirewallIpv4Range range;
        int r = firewall_parse_range(&rule->networks[i], &range, err, errlen);
        if (r < 0)
            return r;
    }
    return 0;
}

typedef struct NetoutBoxes {
    BoxList l4;   /* destination . protocol . port */
    BoxList icmp; /* destination . type . code */
    BoxList any;  /* destination */
    size_t total;
} NetoutBoxes;

static void netout_boxes_done(NetoutBoxes *b)
{
    box_list_done(&b->l4);
    box_list_done(&b->icmp);
    box_list_done(&b->any);
}

static int rule_boxes(const FirewallRule *rule, NetoutBoxes *out, char *err, size_t errlen)
{
    int r = firewall_rule_check(rule, err, errlen);
    if (r < 0)
        return r;
    _cleanup_free_ FirewallIpv4Range *ranges = calloc(rule->n_networks + 1, sizeof(*ranges));
    if (!ranges)
        return -ENOMEM;
    size_t n_ranges = 0;
    for (size_t i = 0; i < rule->n_networks; i++)
        n_ranges +=
            (size_t)firewall_parse_range(&rule->networks[i], &ranges[n_ranges], err, errlen);
    /* Networks given, none of them IPv4; or ICMPv6: nothing a container can send. */
    if ((rule->n_networks > 0 && n_ranges == 0) || rule->protocol == FIREWALL_PROTOCOL_ICMPV6)
        return 0;
    if (rule->n_networks == 0) {
        ranges[0] = (FirewallIpv4Range){0, UINT32_MAX};
        n_ranges = 1;
    }
    bool ports = rule->protocol == FIREWALL_PROTOCOL_TCP || rule->protocol == FIREWALL_PROTOCOL_UDP;
    size_t n_port = ports && rule->n_ports > 0 ? rule->n_ports : 1;
    if (n_ranges * n_port > FIREWALL_NETOUT_BOXES_MAX - out->total) {
        snprintf(err, errlen,
                 "NetOut rules of a container need more than %u set elements (one per network "
                 "range and port range)",
                 FIREWALL_NETOUT_BOXES_MAX);
        return -EINVAL;
    }
    out->total += n_ranges * n_port;
    for (size_t d = 0; d < n_ranges; d++)
        for (size_t p = 0; p < n_port; p++) {
            Box b = {.lo = {ranges[d].start}, .hi = {ranges[d].end}};
            switch (rule->protocol) {
            case FIREWALL_PROTOCOL_TCP:
            case FIREWALL_PROTOCOL_UDP:
                b.lo[1] = b.hi[1] = rule->protocol == FIREWALL_PROTOCOL_TCP ? 6 : 17;
                b.lo[2] = rule->n_ports ? rule->ports[p].start : 0;
                b.hi[2] = rule->n_ports ? rule->ports[p].end : 65535;
                box_push(&out->l4, &b);
                break;
            case FIREWALL_PROTOCOL_ICMP:
                b.lo[1] = rule->has_icmp_type ? rule->icmp_type : 0;
                b.hi[1] = rule->has_icmp_type ? rule->icmp_type : 255;
                b.lo[2] = rule->has_icmp_type && rule->has_icmp_code ? rule->icmp_code : 0;
                b.hi[2] = rule->has_icmp_type && rule->has_icmp_code ? rule->icmp_code : 255;
                box_push(&out->icmp, &b);
                break;
            default:
                box_push(&out->any, &b);
                break;
            }
        }
    return out->l4.error ? out->l4.error : out->icmp.error ? out->icmp.error : out->any.error;
}

/* ---- boxes to elements --------------------------------------------------- */

static void put_ipv4(uint8_t *p, uint32_t addr)
{
    uint32_t be = htonl(addr);
    memcpy(p, &be, 4);
}

static void put_field(uint8_t *p, uint32_t value, unsigned bytes)
{
    /* Big-endian in the first `bytes` of a 4-byte register, the rest zero. */
    for (unsigned i = 0; i < bytes; i++)
        p[i] = (uint8_t)(value >> (8 * (bytes - 1 - i)));
}

static void push_boxes(FirewallBatch *batch, FirewallSetId set, uint32_t container,
                       const BoxList *boxes, unsigned dims, const unsigned *widths, bool remove)
{
    for (size_t i = 0; i < boxes->n; i++) {
        FirewallElement e = {.set = (uint8_t)set,
                             .shard = (uint8_t)firewall_shard(container),
                             .has_end = true,
                             .key_len = 4 + 4 * dims};
        put_ipv4(e.key, container);
        put_ipv4(e.key_end, container);
        for (unsigned d = 0; d < dims; d++) {
            put_field(e.key + 4 + 4 * d, boxes->v[i].lo[d], widths[d]);
            put_field(e.key_end + 4 + 4 * d, boxes->v[i].hi[d], widths[d]);
        }
        firewall_batch_push(batch, &e, remove);
    }
}

int firewall_netout_elements(const FirewallContainer *c, const FirewallRule *rules, size_t n_rules,
                             bool own_subnet, bool remove, FirewallBatch *batch, char *err,
                             size_t errlen)
{
    _cleanup_(netout_boxes_done) NetoutBoxes boxes = {0};
    for (size_t i = 0; i < n_rules; i++) {
        if (rules[i].log) {
            int r = firewall_rule_check(&rules[i], err, errlen);
            if (r < 0)
                return r;
            continue; /* in the container's log chain */
        }
        int r = rule_boxes(&rules[i], &boxes, err, errlen);
        if (r < 0)
            return r;
    }
    if (own_subnet) {
        uint32_t start, end;
        firewall_net_interval(&c->subnet, &start, &end);
        box_push(&boxes.any, &(Box){.lo = {start}, .hi = {end}});
    }
    if (boxes.any.error)
        return boxes.any.error;

    size_t budget = CUT_BUDGET;
    static const unsigned l4_widths[] = {4, 1, 2}, icmp_widths[] = {4, 1, 1}, any_widths[] = {4};
    struct {
        BoxList *in;
        FirewallSetId set;
        unsigned dims;
        const unsigned *widths;
    } parts[] = {
        {&boxes.l4, FIREWALL_SET_NETOUT_L4, 3, l4_widths},
        {&boxes.icmp, FIREWALL_SET_NETOUT_ICMP, 3, icmp_widths},
        {&boxes.any, FIREWALL_SET_NETOUT_ANY, 1, any_widths},
    };
    for (size_t k = 0; k < ELEMENTSOF(parts); k++) {
        size_t n = parts[k].in->n;
        _cleanup_free_ const Box **in = calloc(n + 1, sizeof(*in));
        _cleanup_(box_list_done) BoxList out = {.budget = &budget};
        if (!in)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            in[i] = &parts[k].in->v[i];
        disjoint(in, n, 0, parts[k].dims, &out);
        if (out.error == -E2BIG) {
            snprintf(err, errlen,
                     "NetOut rules of a container overlap too much to be merged into at most %u "
                     "set elements",
                     FIREWALL_NETOUT_BOXES_MAX);
            return -EINVAL;
        }
        if (out.error)
            return out.error;
        push_boxes(batch, parts[k].set, c->ip, &out, parts[k].dims, parts[k].widths, remove);
    }
    return batch->error;
}

bool firewall_rules_logged(const FirewallRule *rules, size_t n_rules)
{
    for (size_t i = 0; i < n_rules; i++)
        if (rules[i].log)
            return true;
    return false;
}
