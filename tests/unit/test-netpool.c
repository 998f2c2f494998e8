#include <errno.h>
#include <time.h>

#include "tap.h"

#include "cloche/netpool.h"

static char errbuf[256];

static const char *addr_text(uint32_t addr)
{
    static char buf[4][16];
    static int n;
    return ipv4_format(addr, buf[n++ % 4], sizeof(buf[0]));
}

static const char *net_text(const Ipv4Net *net)
{
    static char buf[4][19];
    static int n;
    return ipv4net_format(net, buf[n++ % 4], sizeof(buf[0]));
}

static uint32_t quad(const char *text)
{
    uint32_t addr = 0;
    (void)ipv4_parse(text, &addr);
    return addr;
}

static int acquire(NetPool *pool, const char *request, NetLease *ret)
{
    errbuf[0] = '\0';
    return netpool_acquire(pool, request, ret, errbuf, sizeof(errbuf));
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_parse(void)
{
    Ipv4Net p;
    uint32_t a;
    char buf[19];

    ok(netpool_parse("10.254.0.0/22", &p) == 0, "default pool parses");
    is_u64(((uint64_t)1 << (30 - p.prefix)), 256, "a /22 holds 256 /30s");
    ok(netpool_parse("10.1.0.0/24", &p) == 0, "/24 parses");
    is_u64(((uint64_t)1 << (30 - p.prefix)), 64, "a /24 holds 64 /30s");
    ok(netpool_parse("10.1.0.0/30", &p) == 0, "/30 parses");
    is_u64(((uint64_t)1 << (30 - p.prefix)), 1, "a /30 holds one");
    ok(netpool_parse("128.0.0.0/1", &p) == 0 && p.prefix == 1, "/1 parses");
    ok(netpool_parse("10.1.0.1/24", &p) < 0, "host bits set refused");
    ok(netpool_parse("10.1.0.0/31", &p) < 0, "/31 refused");
    ok(netpool_parse("10.1.0.0/0", &p) < 0, "/0 refused");
    ok(netpool_parse("10.1.0.0", &p) < 0, "missing prefix refused");
    ok(netpool_parse("10.1.0.0/", &p) < 0, "empty prefix refused");
    ok(netpool_parse("10.1.0.0/24x", &p) < 0, "trailing junk refused");
    ok(netpool_parse("10.1.0.0/024", &p) < 0, "leading zero in the prefix refused");
    ok(netpool_parse("10.1.0.0/+24", &p) < 0, "signed prefix refused");
    ok(netpool_parse("300.1.0.0/24", &p) < 0, "bad octet refused");
    ok(netpool_parse("::1/64", &p) < 0, "IPv6 refused");
    ok(netpool_parse("", &p) < 0, "empty refused");

    p = (Ipv4Net){.network = 7, .prefix = 7};
    ok(ipv4net_parse("10.0.0.0/8", 16, 30, &p) == -EINVAL, "prefix under the minimum refused");
    ok(p.network == 7 && p.prefix == 7, "ret untouched on failure");
    ok(ipv4net_parse("0.0.0.0/0", 0, 32, &p) == 0 && p.network == 0 && p.prefix == 0,
       "0.0.0.0/0 with min 0");
    ok(ipv4net_parse("10.0.0.7/32", 0, 32, &p) == 0 && p.network == quad("10.0.0.7"),
       "/32 with max 32");
    ok(ipv4net_parse("10.0.0.0/33", 0, 32, &p) < 0, "/33 refused");

    ok(ipv4_parse("10.254.0.2", &a) == 0 && a == 0x0afe0002u, "dotted quad parses");
    ok(ipv4_parse("255.255.255.255", &a) == 0 && a == UINT32_MAX, "all ones parses");
    ok(ipv4_parse("0.0.0.0", &a) == 0 && a == 0, "all zeros parses");
    ok(ipv4_parse("256.0.0.1", &a) == -EINVAL, "octet 256 refused");
    ok(ipv4_parse("1.2.3", &a) == -EINVAL, "three octets refused");
    ok(ipv4_parse("1.2.3.4.5", &a) == -EINVAL, "five octets refused");
    ok(ipv4_parse("01.2.3.4", &a) == -EINVAL, "leading zero refused");
    ok(ipv4_parse("1..3.4", &a) == -EINVAL, "empty octet refused");
    ok(ipv4_parse("1.2.3.4 ", &a) == -EINVAL, "trailing space refused");
    ok(ipv4_parse(" 1.2.3.4", &a) == -EINVAL, "leading space refused");
    ok(ipv4_parse("1.2.3.4/30", &a) == -EINVAL, "prefix refused in an address");
    ok(ipv4_parse("0x1.2.3.4", &a) == -EINVAL, "hex refused");
    ok(ipv4_parse("1234.2.3.4", &a) == -EINVAL, "four digits refused");

    is_str(ipv4_format(0x0afe0002u, buf, 16), "10.254.0.2", "format an address");
    is_str(ipv4_format(UINT32_MAX, buf, 16), "255.255.255.255", "format the widest address");
    p = (Ipv4Net){.network = UINT32_MAX, .prefix = 32};
    is_str(ipv4net_format(&p, buf, sizeof(buf)), "255.255.255.255/32", "format the widest net");

    Ipv4Net a24 = {quad("10.0.0.0"), 24}, a30 = {quad("10.0.0.4"), 30}, b = {quad("10.0.1.0"), 24};
    ok(ipv4net_overlaps(&a24, &a30) && ipv4net_overlaps(&a30, &a24), "nested nets overlap");
    ok(!ipv4net_overlaps(&a24, &b), "neighbours do not overlap");
    ok(ipv4net_contains(&a24, quad("10.0.0.255")) && !ipv4net_contains(&a24, quad("10.0.1.0")),
       "contains");
}

static void test_dynamic(void)
{
    Ipv4Net range;
    NetPool *pool = NULL;
    NetLease l[8], x;

    (void)netpool_parse("10.254.0.0/29", &range);
    ok(netpool_new(&range, &pool) == 0, "pool /29");
    is_u64(netpool_capacity(pool), 2, "a /29 holds two /30s");
    ok(acquire(pool, NULL, &l[0]) == 0, "first lease");
    is_str(net_text(&l[0].subnet), "10.254.0.0/30", "lowest /30 first");
    is_str(addr_text(l[0].gateway), "10.254.0.1", "gateway .1");
    is_str(addr_text(l[0].ip), "10.254.0.2", "container .2");
    ok(acquire(pool, "", &l[1]) == 0, "second lease (empty request)");
    is_str(net_text(&l[1].subnet), "10.254.0.4/30", "next /30");
    is_u64(netpool_used(pool), 2, "two in use");
    is_int(acquire(pool, NULL, &x), -ENOSPC, "exhausted");
    is_str(errbuf, "No free subnet left in the pool 10.254.0.0/29 (2 in use)",
           "exhaustion message");
    ok(netpool_release(pool, &l[0]), "release the first: its subnet is empty");
    ok(!netpool_release(pool, &l[0]), "release twice: false");
    is_u64(netpool_used(pool), 1, "one in use");
    ok(acquire(pool, NULL, &x) == 0 && x.subnet.network == l[0].subnet.network,
       "the freed /30 is reused");
    netpool_free(pool);

    /* A pool wider than one bitmap word, with holes. */
    (void)netpool_parse("10.254.0.0/22", &range);
    ok(netpool_new(&range, &pool) == 0, "pool /22");
    bool in_order = true;
    for (unsigned i = 0; i < 256; i++)
        in_order &= acquire(pool, NULL, &x) == 0 && x.subnet.network == range.network + i * 4;
    ok(in_order, "256 leases in ascending order");
    is_int(acquire(pool, NULL, &x), -ENOSPC, "/22 exhausted after 256");
    is_str(errbuf, "No free subnet left in the pool 10.254.0.0/22 (256 in use)",
           "exhaustion message");
    NetLease hole = {
        {range.network + 200 * 4, 30}, range.network + 200 * 4 + 1, range.network + 200 * 4 + 2};
    NetLease low = {
        {range.network + 70 * 4, 30}, range.network + 70 * 4 + 1, range.network + 70 * 4 + 2};
    NetLease wrong_ip = hole;
    wrong_ip.ip++;
    ok(!netpool_release(pool, &wrong_ip), "release with a wrong ip: false");
    ok(netpool_release(pool, &hole) && netpool_release(pool, &low), "two holes");
    ok(acquire(pool, NULL, &x) == 0 && x.subnet.network == low.subnet.network,
       "the lowest hole first");
    ok(acquire(pool, NULL, &x) == 0 && x.subnet.network == hole.subnet.network,
       "then the next hole");
    is_u64(netpool_used(pool), 256, "full again");
    netpool_free(pool);

    ok(netpool_new(&(Ipv4Net){quad("10.0.0.0"), 31}, &pool) == -EINVAL, "a /31 range refused");
    ok(netpool_new(&(Ipv4Net){quad("10.0.0.1"), 24}, &pool) == -EINVAL, "unmasked range refused");
}

static void test_static(void)
{
    Ipv4Net range;
    NetPool *pool = NULL;
    NetLease a, b, c, x;

    (void)netpool_parse("10.254.0.0/22", &range);
    ok(netpool_new(&range, &pool) == 0, "pool for static subnets");

    /* A bare address: its /30. */
    ok(acquire(pool, "10.0.0.2", &a) == 0, "bare address");
    is_str(net_text(&a.subnet), "10.0.0.0/30", "bare address: its /30");
    is_str(addr_text(a.gateway), "10.0.0.1", "bare address: gateway");
    is_str(addr_text(a.ip), "10.0.0.2", "bare address: exactly it");
    is_u64(netpool_used(pool), 0, "static leases are not dynamic ones");
    is_int(acquire(pool, "10.0.0.2", &x), -EEXIST, "same address twice");
    is_str(errbuf, "The address 10.0.0.2 is already taken", "taken message");
    is_int(acquire(pool, "10.0.0.2/30", &x), -EEXIST, "same address with its prefix");
    is_int(acquire(pool, "10.0.0.0/30", &x), -ENOSPC, "a full static /30");
    is_str(errbuf, "No free address left in the subnet 10.0.0.0/30 (1 in use)", "full message");
    is_int(acquire(pool, "10.0.0.1", &x), -EADDRNOTAVAIL, "gateway refused");
    is_str(errbuf, "10.0.0.1 is the gateway of 10.0.0.0/30", "gateway message");
    is_int(acquire(pool, "10.0.0.3", &x), -EADDRNOTAVAIL, "broadcast refused");
    is_str(errbuf, "10.0.0.3 is the broadcast address of 10.0.0.0/30", "broadcast message");
    is_int(acquire(pool, "10.0.0.4", &x), -EADDRNOTAVAIL, "a bare network address refused");
    is_str(errbuf, "10.0.0.4 is the network address of 10.0.0.4/30", "network message");
    is_int(acquire(pool, "10.9.0.255/24", &x), -EADDRNOTAVAIL, "broadcast of a /24 refused");
    is_int(acquire(pool, "10.9.0.1/24", &x), -EADDRNOTAVAIL, "gateway of a /24 refused");

    /* Overlap with the dynamic range. */
    is_int(acquire(pool, "10.254.0.0/24", &x), -EADDRINUSE, "subnet inside the pool refused");
    is_str(errbuf, "The subnet 10.254.0.0/24 overlaps the dynamic pool 10.254.0.0/22",
           "overlap message");
    is_int(acquire(pool, "10.254.0.0/16", &x), -EADDRINUSE, "subnet around the pool refused");
    is_int(acquire(pool, "10.254.1.6", &x), -EADDRINUSE, "address inside the pool refused");
    is_str(errbuf, "The address 10.254.1.6 lies in the dynamic pool 10.254.0.0/22",
           "address overlap message");
    ok(acquire(pool, "10.254.4.2", &x) == 0, "the /30 just past the pool is fine");
    ok(netpool_release(pool, &x), "and released");

    /* Partial overlap between static subnets. */
    is_int(acquire(pool, "10.0.0.0/24", &x), -EADDRINUSE, "a /24 around a static /30 refused");
    is_str(errbuf, "The subnet 10.0.0.0/24 overlaps the subnet 10.0.0.0/30 in use",
           "static overlap message");
    is_int(acquire(pool, "10.0.0.0/8", &x), -EADDRINUSE, "a /8 around a static /30 refused");
    ok(acquire(pool, "10.0.0.6", &b) == 0, "a neighbour /30 is fine");
    ok(acquire(pool, "10.1.0.0/24", &c) == 0, "a static /24");
    is_str(addr_text(c.ip), "10.1.0.2", "network address given: lowest free host");
    is_int(acquire(pool, "10.1.0.4/30", &x), -EADDRINUSE, "a /30 inside a static /24 refused");
    is_int(acquire(pool, "10.1.0.6", &x), -EADDRINUSE, "a bare address inside a /24 refused");
    is_int(acquire(pool, "junk", &x), -EINVAL, "malformed request");
    is_str(errbuf, "Invalid network 'junk': expected a.b.c.d or a.b.c.d/n with n from 1 to 30",
           "malformed message");
    is_int(acquire(pool, "10.1.0.0/31", &x), -EINVAL, "/31 request refused");
    is_int(acquire(pool, "10.1.0.0/0", &x), -EINVAL, "/0 request refused");

    /* A shared static subnet. */
    NetLease d, e, f;
    ok(acquire(pool, "10.1.0.0/24", &d) == 0 && d.ip == quad("10.1.0.3"), "shared: next host");
    ok(acquire(pool, "10.1.0.9/24", &e) == 0 && e.ip == quad("10.1.0.9"), "shared: exact host");
    is_str(net_text(&e.subnet), "10.1.0.0/24", "shared: the same subnet");
    ok(e.gateway == quad("10.1.0.1"), "shared: the same gateway");
    is_int(acquire(pool, "10.1.0.9/24", &x), -EEXIST, "shared: exact host twice");
    ok(!netpool_release(pool, &d), "release one of three: false");
    ok(acquire(pool, "10.1.0.0/24", &f) == 0 && f.ip == quad("10.1.0.3"), "the hole is reused");
    ok(!netpool_release(pool, &c), "release two of three: false");
    ok(!netpool_release(pool, &c), "release an address not held: false");
    ok(!netpool_release(pool, &e), "release the second to last: false");
    ok(netpool_release(pool, &f), "release the last: true");
    ok(acquire(pool, "10.1.0.0/16", &x) == 0, "the forgotten /24 no longer blocks a /16");
    ok(netpool_release(pool, &x), "release the /16");

    /* A full shared subnet. */
    NetLease g[2];
    ok(acquire(pool, "10.2.0.0/29", &g[0]) == 0 && acquire(pool, "10.2.0.0/29", &g[1]) == 0,
       "two in a /29");
    ok(acquire(pool, "10.2.0.0/29", &x) == 0 && x.ip == quad("10.2.0.4"), "a third in a /29");
    ok(acquire(pool, "10.2.0.0/29", &x) == 0 && x.ip == quad("10.2.0.5"), "a fourth in a /29");
    ok(acquire(pool, "10.2.0.0/29", &x) == 0 && x.ip == quad("10.2.0.6"), "a fifth in a /29");
    is_int(acquire(pool, "10.2.0.0/29", &x), -ENOSPC, "a /29 holds five");

    /* A very wide static subnet costs memory per container only. */
    NetLease wide;
    ok(acquire(pool, "128.0.0.0/1", &wide) == 0 && wide.ip == quad("128.0.0.2"), "a static /1");
    ok(netpool_release(pool, &wide), "release the /1");

    ok(!netpool_release(pool,
                        &(NetLease){{quad("10.99.0.0"), 30}, quad("10.99.0.1"), quad("10.99.0.2")}),
       "release of an unknown subnet: false");
    netpool_free(pool);
}

static void test_reserve(void)
{
    Ipv4Net range;
    NetPool *pool = NULL, *restarted = NULL;
    NetLease d1, d2, s1, s2, s3, x;

    (void)netpool_parse("10.254.0.0/22", &range);
    ok(netpool_new(&range, &pool) == 0, "pool before restart");
    ok(acquire(pool, NULL, &d1) == 0 && acquire(pool, NULL, &d2) == 0, "two dynamic");
    ok(acquire(pool, "10.0.0.2", &s1) == 0, "static /30");
    ok(acquire(pool, "10.1.0.0/24", &s2) == 0 && acquire(pool, "10.1.0.0/24", &s3) == 0,
       "two in a static /24");
    ok(netpool_release(pool, &d1), "free the first dynamic");
    netpool_free(pool);

    ok(netpool_new(&range, &restarted) == 0, "pool after restart");
    ok(netpool_reserve(restarted, &d2) == 0, "reserve a dynamic lease");
    ok(netpool_reserve(restarted, &s1) == 0, "reserve a static /30");
    ok(netpool_reserve(restarted, &s3) == 0, "reserve the second of the /24");
    ok(netpool_reserve(restarted, &s2) == 0, "reserve the first of the /24");
    is_u64(netpool_used(restarted), 1, "one dynamic in use");
    is_int(netpool_reserve(restarted, &d2), -EEXIST, "reserve a dynamic lease twice");
    is_int(netpool_reserve(restarted, &s2), -EEXIST, "reserve a static lease twice");
    ok(acquire(restarted, NULL, &x) == 0 && x.subnet.network == d1.subnet.network,
       "the hole below a reserved lease is used");
    ok(acquire(restarted, NULL, &x) == 0 && x.subnet.network == d2.subnet.network + 4,
       "then past the reserved one");
    ok(acquire(restarted, "10.1.0.0/24", &x) == 0 && x.ip == quad("10.1.0.4"),
       "a restored shared subnet continues");

    NetLease bad = s2;
    bad.gateway++;
    is_int(netpool_reserve(restarted, &bad), -EINVAL, "wrong gateway");
    bad = s2;
    bad.ip = quad("10.2.0.2");
    is_int(netpool_reserve(restarted, &bad), -EINVAL, "ip outside the subnet");
    bad = s2;
    bad.ip = quad("10.1.0.255");
    is_int(netpool_reserve(restarted, &bad), -EINVAL, "broadcast ip");
    bad = s2;
    bad.subnet.network++;
    is_int(netpool_reserve(restarted, &bad), -EINVAL, "unmasked subnet");
    bad = (NetLease){{quad("10.1.0.0"), 25}, quad("10.1.0.1"), quad("10.1.0.2")};
    is_int(netpool_reserve(restarted, &bad), -EADDRINUSE, "partial overlap with a static subnet");
    bad = (NetLease){{quad("10.254.0.0"), 24}, quad("10.254.0.1"), quad("10.254.0.200")};
    is_int(netpool_reserve(restarted, &bad), -EADDRINUSE, "a wide subnet inside the pool");
    netpool_free(restarted);
}

static void test_scale(void)
{
    Ipv4Net range;
    NetPool *pool = NULL;
    static NetLease leases[4096];

    (void)netpool_parse("10.128.0.0/18", &range);
    ok(netpool_new(&range, &pool) == 0, "pool /18");
    is_u64(netpool_capacity(pool), 4096, "a /18 holds 4096 /30s");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool good = true;
    for (unsigned i = 0; i < 4096; i++)
        good &= acquire(pool, NULL, &leases[i]) == 0 &&
                leases[i].subnet.network == range.network + i * 4;
    good &= acquire(pool, NULL, &leases[0]) == -ENOSPC;
    leases[0].subnet.network = range.network;
    leases[0].gateway = range.network + 1;
    leases[0].ip = range.network + 2;
    /* Churn: free one, take one, always the lowest hole. */
    for (unsigned i = 0; i < 4096; i++) {
        unsigned k = (i * 2654435761u) % 4096;
        good &= netpool_release(pool, &leases[k]);
        NetLease x;
        good &= acquire(pool, NULL, &x) == 0 && x.subnet.network == leases[k].subnet.network;
    }
    for (unsigned i = 0; i < 4096; i++)
        good &= netpool_release(pool, &leases[i]);
    double dynamic_seconds = seconds_since(&t0);
    ok(good, "4096 acquires, 4096 churn cycles and 4096 releases in a /18");
    is_u64(netpool_used(pool), 0, "all released");

    /* 4096 containers sharing one static /16. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    good = true;
    for (unsigned i = 0; i < 4096; i++)
        good &= acquire(pool, "172.16.0.0/16", &leases[i]) == 0 &&
                leases[i].ip == quad("172.16.0.2") + i;
    for (unsigned i = 0; i < 4095; i++)
        good &= !netpool_release(pool, &leases[i]);
    good &= netpool_release(pool, &leases[4095]);
    double static_seconds = seconds_since(&t0);
    ok(good, "4096 containers in a shared static /16");
    printf("# dynamic: %.3f ms, static: %.3f ms\n", dynamic_seconds * 1e3, static_seconds * 1e3);
    netpool_free(pool);
}

static void test_ports(void)
{
    PortPool *pool = NULL;
    uint32_t p, q;

    ok(portpool_new(0, 10, &pool) == -EINVAL, "port 0 refused");
    ok(portpool_new(65530, 7, &pool) == -EINVAL, "range past 65535 refused");
    ok(portpool_new(1000, 0, &pool) == -EINVAL, "empty range refused");
    ok(portpool_new(65535, 1, &pool) == 0, "the last port alone");
    portpool_free(pool);

    ok(portpool_new(61001, 3, &pool) == 0, "pool of 3");
    is_int(portpool_free_count(pool), 3, "three free");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 61001, "head first");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 61002, "then the next");
    portpool_release(pool, 61001, PORT_PROTO_TCP);
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 61003, "a freed port waits");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 61001, "then it comes back");
    is_int(portpool_acquire(pool, PORT_PROTO_TCP, &p), -ENOSPC, "exhausted");
    is_int(portpool_free_count(pool), 0, "none free");
    is_int(portpool_acquire(pool, 0, &p), -EINVAL, "no protocol refused");
    is_int(portpool_acquire(pool, 1u << 5, &p), -EINVAL, "unknown protocol refused");

    /* An acquired port is taken for every protocol. */
    is_int(portpool_reserve(pool, 61002, PORT_PROTO_UDP), -EEXIST, "acquired port: UDP refused");
    is_int(portpool_reserve(pool, 61002, PORT_PROTO_TCP), -EEXIST, "acquired port: TCP refused");
    portpool_release(pool, 61002, PORT_PROTO_UDP);
    is_int(portpool_free_count(pool), 0, "releasing an unheld protocol is a no-op");
    portpool_release(pool, 61002, PORT_PROTO_TCP);
    is_int(portpool_free_count(pool), 1, "releasing the acquired protocol frees it");
    portpool_release(pool, 61002, PORT_PROTO_TCP);
    is_int(portpool_free_count(pool), 1, "releasing twice is a no-op");
    portpool_release(pool, 61003, PORT_PROTO_TCP);
    portpool_release(pool, 61001, PORT_PROTO_TCP);
    is_int(portpool_free_count(pool), 3, "all free");
    ok(portpool_acquire(pool, PORT_PROTO_TCP | PORT_PROTO_UDP, &p) == 0 && p == 61002,
       "FIFO over releases: 61002 first");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &q) == 0 && q == 61003, "then 61003");
    portpool_release(pool, 61002, PORT_PROTO_TCP);
    is_int(portpool_free_count(pool), 1, "61002 still held for UDP");
    portpool_release(pool, 61002, PORT_PROTO_UDP);
    is_int(portpool_free_count(pool), 2, "61002 free once UDP goes too");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 61001, "61001 before 61002");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 61002, "61002 at the tail");
    portpool_free(pool);

    /* Reserving specific ports. */
    ok(portpool_new(1000, 4, &pool) == 0, "pool of 4");
    ok(portpool_reserve(pool, 1001, PORT_PROTO_TCP) == 0, "reserve inside the range");
    is_int(portpool_free_count(pool), 3, "it leaves the queue");
    is_int(portpool_reserve(pool, 1001, PORT_PROTO_TCP), -EEXIST, "reserve TCP twice");
    ok(portpool_reserve(pool, 1001, PORT_PROTO_UDP) == 0, "the same port for UDP");
    is_int(portpool_free_count(pool), 3, "still three free");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 1000, "acquire 1000");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 1002, "the reserved one skipped");
    portpool_release(pool, 1001, PORT_PROTO_TCP);
    is_int(portpool_free_count(pool), 1, "UDP still holds 1001");
    portpool_release(pool, 1001, PORT_PROTO_UDP);
    is_int(portpool_free_count(pool), 2, "1001 back in the queue");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 1003, "1003 was ahead of it");
    ok(portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == 1001, "1001 at the tail");
    is_int(portpool_acquire(pool, PORT_PROTO_TCP, &p), -ENOSPC, "exhausted");

    ok(portpool_reserve(pool, 8080, PORT_PROTO_TCP) == 0, "reserve outside the range");
    is_int(portpool_reserve(pool, 8080, PORT_PROTO_TCP | PORT_PROTO_UDP), -EEXIST,
           "TCP|UDP refused when TCP is held");
    ok(portpool_reserve(pool, 8080, PORT_PROTO_UDP) == 0, "UDP is independent");
    portpool_release(pool, 8080, PORT_PROTO_TCP | PORT_PROTO_UDP);
    ok(portpool_reserve(pool, 8080, PORT_PROTO_TCP | PORT_PROTO_UDP) == 0,
       "free again for both after release");
    is_int(portpool_free_count(pool), 0, "outside ports never join the queue");
    portpool_release(pool, 9090, PORT_PROTO_TCP);
    portpool_release(pool, 0, PORT_PROTO_TCP);
    portpool_release(pool, 70000, PORT_PROTO_TCP);
    is_int(portpool_free_count(pool), 0, "releasing unheld or invalid ports is a no-op");
    is_int(portpool_reserve(pool, 0, PORT_PROTO_TCP), -EINVAL, "reserve port 0 refused");
    is_int(portpool_reserve(pool, 65536, PORT_PROTO_TCP), -EINVAL, "reserve port 65536 refused");
    is_int(portpool_reserve(pool, 8081, 0), -EINVAL, "reserve without a protocol refused");
    ok(portpool_reserve(pool, 65535, PORT_PROTO_UDP) == 0, "reserve port 65535");
    portpool_free(pool);

    /* The whole range, with churn. */
    ok(portpool_new(1, 65535, &pool) == 0, "pool of every port");
    bool good = true;
    for (uint32_t i = 1; i <= 65535; i++)
        good &= portpool_acquire(pool, PORT_PROTO_TCP, &p) == 0 && p == i;
    for (uint32_t i = 65535; i >= 1; i--)
        portpool_release(pool, i, PORT_PROTO_TCP);
    for (uint32_t i = 65535; i >= 1; i--)
        good &= portpool_acquire(pool, PORT_PROTO_UDP, &p) == 0 && p == i;
    ok(good, "65535 ports in order, then in release order");
    portpool_free(pool);
}

int main(void)
{
    test_parse();
    test_dynamic();
    test_static();
    test_reserve();
    test_scale();
    test_ports();
    return tap_done();
}
