/* Subnet pool: the dynamic range as a bitmap over its /30s (lowest free first, as
 * guardian walks from the bottom), plus the static subnets callers name, kept as a
 * sorted array of pairwise disjoint subnets. A static subnet keeps its taken
 * addresses in a sorted array rather than a bitmap, so any prefix down to /1 costs
 * memory in proportion to its containers, not to its size. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/netpool.h"

/* ---- Parsing and formatting ---------------------------------------------- */

/* 1..max_digits decimal digits, no leading zero. Returns what follows, or NULL. */
static const char *parse_decimal(const char *p, unsigned max_digits, unsigned *ret)
{
    unsigned value = 0, n = 0;
    while (p[n] >= '0' && p[n] <= '9') {
        if (n == max_digits)
            return NULL;
        value = value * 10 + (unsigned)(p[n] - '0');
        n++;
    }
    if (n == 0 || (n > 1 && p[0] == '0'))
        return NULL;
    *ret = value;
    return p + n;
}

static const char *parse_quad(const char *p, uint32_t *ret)
{
    uint32_t addr = 0;
    for (int i = 0; i < 4; i++) {
        if (i > 0 && *p++ != '.')
            return NULL;
        unsigned octet;
        p = parse_decimal(p, 3, &octet);
        if (!p || octet > 255)
            return NULL;
        addr = addr << 8 | octet;
    }
    *ret = addr;
    return p;
}

int ipv4_parse(const char *text, uint32_t *ret)
{
    uint32_t addr;
    const char *end = parse_quad(text, &addr);
    if (!end || *end)
        return -EINVAL;
    *ret = addr;
    return 0;
}

/* "a.b.c.d/n" with n in min_prefix..max_prefix; host bits are left as given. */
static int parse_address_prefix(const char *text, unsigned min_prefix, unsigned max_prefix,
                                uint32_t *ret_addr, unsigned *ret_prefix)
{
    uint32_t addr;
    unsigned prefix;
    const char *p = parse_quad(text, &addr);
    if (!p || *p != '/')
        return -EINVAL;
    p = parse_decimal(p + 1, 2, &prefix);
    if (!p || *p || prefix < min_prefix || prefix > max_prefix || prefix > 32)
        return -EINVAL;
    *ret_addr = addr;
    *ret_prefix = prefix;
    return 0;
}

int ipv4net_parse(const char *cidr, unsigned min_prefix, unsigned max_prefix, Ipv4Net *ret)
{
    uint32_t addr;
    unsigned prefix;
    int r = parse_address_prefix(cidr, min_prefix, max_prefix, &addr, &prefix);
    if (r < 0)
        return r;
    if (addr & ~ipv4net_mask(prefix))
        return -EINVAL;
    *ret = (Ipv4Net){.network = addr, .prefix = prefix};
    return 0;
}

int netpool_parse(const char *cidr, Ipv4Net *ret)
{
    return ipv4net_parse(cidr, 1, 30, ret);
}

char *ipv4_format(uint32_t addr, char *buf, size_t size)
{
    snprintf(buf, size, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff,
             addr & 0xff);
    return buf;
}

char *ipv4net_format(const Ipv4Net *net, char *buf, size_t size)
{
    char addr[16];
    snprintf(buf, size, "%s/%u", ipv4_format(net->network, addr, sizeof(addr)), net->prefix);
    return buf;
}

/* ---- The pool -------------------------------------------------------------- */

#define ADDR_TEXT 16
#define NET_TEXT 19

typedef struct StaticSubnet {
    Ipv4Net net;
    uint32_t *taken; /* container addresses, sorted */
    size_t n_taken;
    size_t n_allocated;
} StaticSubnet;

struct NetPool {
    pthread_mutex_t lock;
    Ipv4Net range;
    uint64_t capacity; /* /30s in the range */
    uint64_t used;
    uint64_t *bits; /* one per /30, set when taken; the tail past capacity is set */
    size_t n_words;
    size_t first_free_word; /* no clear bit below this word */
    StaticSubnet *statics;  /* sorted by network, pairwise disjoint */
    size_t n_statics;
    size_t n_statics_allocated;
};

static uint32_t subnet_broadcast(const Ipv4Net *net)
{
    return net->network | ~ipv4net_mask(net->prefix);
}

/* Container addresses run from network+2 to broadcast-1 (prefix <= 30). */
static uint32_t subnet_first_host(const Ipv4Net *net)
{
    return net->network + 2;
}

static uint32_t subnet_last_host(const Ipv4Net *net)
{
    return subnet_broadcast(net) - 1;
}

static bool subnet_valid(const Ipv4Net *net)
{
    return net->prefix >= 1 && net->prefix <= 30 &&
           (net->network & ~ipv4net_mask(net->prefix)) == 0;
}

static int _printf_(4, 5) fail(char *errbuf, size_t errlen, int r, const char *fmt, ...)
{
    if (errbuf && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return r;
}

int netpool_new(const Ipv4Net *range, NetPool **ret)
{
    if (!subnet_valid(range))
        return -EINVAL;
    _cleanup_free_ NetPool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    pool->range = *range;
    pool->capacity = (uint64_t)1 << (30 - range->prefix);
    pool->n_words = (size_t)((pool->capacity + 63) / 64);
    pool->bits = calloc(pool->n_words, sizeof(uint64_t));
    if (!pool->bits)
        return -ENOMEM;
    /* Bits past the capacity read as taken, so the scan needs no bound check. */
    if (pool->capacity % 64)
        pool->bits[pool->n_words - 1] = UINT64_MAX << (pool->capacity % 64);
    pthread_mutex_init(&pool->lock, NULL);
    *ret = TAKE_PTR(pool);
    return 0;
}

void netpool_free(NetPool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->n_statics; i++)
        free(pool->statics[i].taken);
    free(pool->statics);
    free(pool->bits);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

uint64_t netpool_capacity(const NetPool *pool)
{
    return pool->capacity;
}

uint64_t netpool_used(const NetPool *pool)
{
    /* The lock is the only mutable part of a const pool. */
    pthread_mutex_t *lock = (pthread_mutex_t *)&pool->lock;
    pthread_mutex_lock(lock);
    uint64_t used = pool->used;
    pthread_mutex_unlock(lock);
    return used;
}

/* ---- Dynamic /30s ---- */

static bool dynamic_test(const NetPool *pool, uint64_t i)
{
    return pool->bits[i / 64] & (1ULL << (i % 64));
}

static void dynamic_set(NetPool *pool, uint64_t i)
{
    pool->bits[i / 64] |= 1ULL << (i % 64);
    pool->used++;
}

static void dynamic_clear(NetPool *pool, uint64_t i)
{
    pool->bits[i / 64] &= ~(1ULL << (i % 64));
    pool->used--;
    if (i / 64 < pool->first_free_word)
        pool->first_free_word = (size_t)(i / 64);
}

static void dynamic_lease(const NetPool *pool, uint64_t i, NetLease *ret)
{
    uint32_t network = pool->range.network + (uint32_t)(i << 2);
    *ret = (NetLease){
        .subnet = {.network = network, .prefix = 30},
        .gateway = network + 1,
        .ip = network + 2,
    };
}

static int dynamic_acquire(NetPool *pool, NetLease *ret, char *errbuf, size_t errlen)
{
    size_t w = pool->first_free_word;
    while (w < pool->n_words && pool->bits[w] == UINT64_MAX)
        w++;
    pool->first_free_word = w;
    if (w == pool->n_words) {
        char range[NET_TEXT];
        return fail(errbuf, errlen, -ENOSPC,
                    "No free subnet left in the pool %s (%" PRIu64 " in use)",
                    ipv4net_format(&pool->range, range, sizeof(range)), pool->used);
    }
    uint64_t i = (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(~pool->bits[w]);
    dynamic_set(pool, i);
    dynamic_lease(pool, i, ret);
    return 0;
}

/* The /30 of the range a lease names, or -1 if it is not one. */
static int64_t dynamic_index(const NetPool *pool, const NetLease *lease)
{
    if (lease->subnet.prefix != 30 || !ipv4net_contains(&pool->range, lease->subnet.network))
        return -1;
    return (int64_t)((lease->subnet.network - pool->range.network) >> 2);
}

/* ---- Static subnets ---- */

/* Index of the first subnet that ends at or after net starts: the only one that
 * can overlap net without some other one overlapping it too. */
static size_t static_lower_bound(const NetPool *pool, const Ipv4Net *net)
{
    size_t lo = 0, hi = pool->n_statics;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (subnet_broadcast(&pool->statics[mid].net) < net->network)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of addr in s->taken, or of where it would go. */
static size_t static_address_index(const StaticSubnet *s, uint32_t addr)
{
    size_t lo = 0, hi = s->n_taken;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->taken[mid] < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The taken addresses are distinct and sorted, so taken[i] == first + i holds for
 * a prefix of the array and fails after it: the first gap is a binary search. */
static int static_lowest_free(const StaticSubnet *s, uint32_t *ret)
{
    uint32_t first = subnet_first_host(&s->net);
    size_t lo = 0, hi = s->n_taken;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->taken[mid] == first + (uint32_t)mid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if ((uint64_t)first + lo > subnet_last_host(&s->net))
        return -ENOSPC;
    *ret = first + (uint32_t)lo;
    return 0;
}

static int static_reserve_room(StaticSubnet *s)
{
    if (s->n_taken < s->n_allocated)
        return 0;
    size_t n = s->n_allocated ? s->n_allocated * 2 : 4;
    uint32_t *taken = realloc(s->taken, n * sizeof(*taken));
    if (!taken)
        return -ENOMEM;
    s->taken = taken;
    s->n_allocated = n;
    return 0;
}

static void static_insert_address(StaticSubnet *s, size_t at, uint32_t addr)
{
    memmove(s->taken + at + 1, s->taken + at, (s->n_taken - at) * sizeof(*s->taken));
    s->taken[at] = addr;
    s->n_taken++;
}

/* Adds a subnet holding one address at index `at` of the sorted array. */
static int static_insert_subnet(NetPool *pool, size_t at, const Ipv4Net *net, uint32_t addr)
{
    if (pool->n_statics == pool->n_statics_allocated) {
        size_t n = pool->n_statics_allocated ? pool->n_statics_allocated * 2 : 4;
        StaticSubnet *statics = realloc(pool->statics, n * sizeof(*statics));
        if (!statics)
            return -ENOMEM;
        pool->statics = statics;
        pool->n_statics_allocated = n;
    }
    StaticSubnet s = {.net = *net};
    int r = static_reserve_room(&s);
    if (r < 0)
        return r;
    static_insert_address(&s, 0, addr);
    memmove(pool->statics + at + 1, pool->statics + at,
            (pool->n_statics - at) * sizeof(*pool->statics));
    pool->statics[at] = s;
    pool->n_statics++;
    return 0;
}

static void static_remove_subnet(NetPool *pool, size_t at)
{
    free(pool->statics[at].taken);
    memmove(pool->statics + at, pool->statics + at + 1,
            (pool->n_statics - at - 1) * sizeof(*pool->statics));
    pool->n_statics--;
}

/* Refuses an address a container cannot have in net. */
static int check_host_address(const Ipv4Net *net, uint32_t addr, char *errbuf, size_t errlen)
{
    char a[ADDR_TEXT], n[NET_TEXT];
    const char *role = NULL;
    if (addr == net->network)
        role = "the network address";
    else if (addr == net->network + 1)
        role = "the gateway";
    else if (addr == subnet_broadcast(net))
        role = "the broadcast address";
    if (!role)
        return 0;
    return fail(errbuf, errlen, -EADDRNOTAVAIL, "%s is %s of %s", ipv4_format(addr, a, sizeof(a)),
                role, ipv4net_format(net, n, sizeof(n)));
}

/* Takes `want` in the static subnet net, or its lowest free address if `any`. */
static int static_acquire(NetPool *pool, const Ipv4Net *net, bool any, uint32_t want, NetLease *ret,
                          char *errbuf, size_t errlen)
{
    char a[ADDR_TEXT], n[NET_TEXT], other[NET_TEXT];
    if (ipv4net_overlaps(net, &pool->range)) {
        if (!any && ipv4net_contains(&pool->range, want))
            return fail(errbuf, errlen, -EADDRINUSE, "The address %s lies in the dynamic pool %s",
                        ipv4_format(want, a, sizeof(a)),
                        ipv4net_format(&pool->range, other, sizeof(other)));
        return fail(errbuf, errlen, -EADDRINUSE, "The subnet %s overlaps the dynamic pool %s",
                    ipv4net_format(net, n, sizeof(n)),
                    ipv4net_format(&pool->range, other, sizeof(other)));
    }
    if (!any) {
        int r = check_host_address(net, want, errbuf, errlen);
        if (r < 0)
            return r;
    }

    size_t at = static_lower_bound(pool, net);
    StaticSubnet *s = NULL;
    if (at < pool->n_statics && pool->statics[at].net.network <= subnet_broadcast(net)) {
        s = &pool->statics[at];
        if (s->net.prefix != net->prefix)
            return fail(errbuf, errlen, -EADDRINUSE, "The subnet %s overlaps the subnet %s in use",
                        ipv4net_format(net, n, sizeof(n)),
                        ipv4net_format(&s->net, other, sizeof(other)));
    }

    uint32_t addr = any ? subnet_first_host(net) : want;
    if (s) {
        if (any && static_lowest_free(s, &addr) < 0)
            return fail(errbuf, errlen, -ENOSPC,
                        "No free address left in the subnet %s (%zu in use)",
                        ipv4net_format(net, n, sizeof(n)), s->n_taken);
        size_t i = static_address_index(s, addr);
        if (i < s->n_taken && s->taken[i] == addr)
            return fail(errbuf, errlen, -EEXIST, "The address %s is already taken",
                        ipv4_format(addr, a, sizeof(a)));
        int r = static_reserve_room(s);
        if (r < 0)
            return r;
        static_insert_address(s, i, addr);
    } else {
        int r = static_insert_subnet(pool, at, net, addr);
        if (r < 0)
            return r;
    }
    *ret = (NetLease){.subnet = *net, .gateway = net->network + 1, .ip = addr};
    return 0;
}

int netpool_acquire(NetPool *pool, const char *request, NetLease *ret, char *errbuf, size_t errlen)
{
    int r;
    if (!request || !*request) {
        pthread_mutex_lock(&pool->lock);
        r = dynamic_acquire(pool, ret, errbuf, errlen);
        pthread_mutex_unlock(&pool->lock);
        return r;
    }

    uint32_t addr;
    unsigned prefix = 30;
    if (strchr(request, '/'))
        r = parse_address_prefix(request, 1, 30, &addr, &prefix);
    else
        r = ipv4_parse(request, &addr);
    if (r < 0)
        return fail(errbuf, errlen, -EINVAL,
                    "Invalid network '%.40s': expected a.b.c.d or a.b.c.d/n with n from 1 to 30",
                    request);
    Ipv4Net net = {.network = addr & ipv4net_mask(prefix), .prefix = prefix};
    /* "a.b.c.d/n" naming the network asks for any address; a bare address never does. */
    bool any = strchr(request, '/') && addr == net.network;

    pthread_mutex_lock(&pool->lock);
    r = static_acquire(pool, &net, any, addr, ret, errbuf, errlen);
    pthread_mutex_unlock(&pool->lock);
    return r;
}

int netpool_reserve(NetPool *pool, const NetLease *lease)
{
    const Ipv4Net *net = &lease->subnet;
    if (!subnet_valid(net) || lease->gateway != net->network + 1 ||
        !ipv4net_contains(net, lease->ip) || check_host_address(net, lease->ip, NULL, 0) < 0)
        return -EINVAL;

    int r = 0;
    pthread_mutex_lock(&pool->lock);
    int64_t i = dynamic_index(pool, lease);
    if (i >= 0) {
        if (dynamic_test(pool, (uint64_t)i))
            r = -EEXIST;
        else
            dynamic_set(pool, (uint64_t)i);
    } else {
        NetLease ignored;
        r = static_acquire(pool, net, false, lease->ip, &ignored, NULL, 0);
    }
    pthread_mutex_unlock(&pool->lock);
    return r;
}

bool netpool_is_last(NetPool *pool, const NetLease *lease)
{
    const Ipv4Net *net = &lease->subnet;
    if (!subnet_valid(net))
        return false;
    bool last = false;
    pthread_mutex_lock(&pool->lock);
    int64_t i = dynamic_index(pool, lease);
    if (i >= 0) {
        last = lease->ip == net->network + 2 && dynamic_test(pool, (uint64_t)i);
    } else {
        size_t at = static_lower_bound(pool, net);
        StaticSubnet *s = at < pool->n_statics ? &pool->statics[at] : NULL;
        if (s && s->net.network == net->network && s->net.prefix == net->prefix) {
            size_t j = static_address_index(s, lease->ip);
            last = j < s->n_taken && s->taken[j] == lease->ip && s->n_taken == 1;
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return last;
}

bool netpool_release(NetPool *pool, const NetLease *lease)
{
    const Ipv4Net *net = &lease->subnet;
    if (!subnet_valid(net))
        return false;

    bool emptied = false;
    pthread_mutex_lock(&pool->lock);
    int64_t i = dynamic_index(pool, lease);
    if (i >= 0) {
        if (lease->ip == net->network + 2 && dynamic_test(pool, (uint64_t)i)) {
            dynamic_clear(pool, (uint64_t)i);
            emptied = true;
        }
    } else {
        size_t at = static_lower_bound(pool, net);
        StaticSubnet *s = at < pool->n_statics ? &pool->statics[at] : NULL;
        if (s && s->net.network == net->network && s->net.prefix == net->prefix) {
            size_t j = static_address_index(s, lease->ip);
            if (j < s->n_taken && s->taken[j] == lease->ip) {
                memmove(s->taken + j, s->taken + j + 1, (s->n_taken - j - 1) * sizeof(*s->taken));
                s->n_taken--;
                if (s->n_taken == 0) {
                    static_remove_subnet(pool, at);
                    emptied = true;
                }
            }
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return emptied;
}
