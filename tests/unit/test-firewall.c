/* The firewall against real nftables, in a private network namespace (root only;
 * skipped otherwise). Never in the host's own namespace: the test refuses to go on
 * if unshare left it there. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netdb.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/mount.h>

#include <nftables/libnftables.h>

#include "cloche/cleanup.h"
#include "cloche/firewall.h"
#include "tap.h"

#define INIT_NETNS "net:[4026531833]"
#define TABLE "cltest"

static uint32_t addr(const char *text)
{
    struct in_addr in;
    if (inet_pton(AF_INET, text, &in) != 1)
        abort();
    return ntohl(in.s_addr);
}

/* Run a command with a context of the test's own; returns its output (malloc'd)
 * or NULL on failure. Protocols are listed as numbers ("6 . 61001", "meta
 * l4proto 17"): their names come from /etc/protocols, which a minimal system
 * (no netbase) lacks. */
static char *nft(const char *command)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    char *text = NULL;
    if (!ctx)
        return NULL;
    nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_NUMERIC_PROTO);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    if (nft_run_cmd_from_buffer(ctx, command) == 0)
        text = strdup(nft_ctx_get_output_buffer(ctx));
    nft_ctx_free(ctx);
    return text;
}

static char *list_table(void)
{
    return nft("list table inet " TABLE);
}

/* The NetOut sets of the shard of 10.254.0.82 (bits 2-7: 20). */
static char *netout_sets(void)
{
    _cleanup_free_ char *l4 = nft("list set inet " TABLE " netout_l4_20");
    _cleanup_free_ char *icmp = nft("list set inet " TABLE " netout_icmp_20");
    _cleanup_free_ char *any = nft("list set inet " TABLE " netout_any_20");
    char *text = NULL;
    if (l4 && icmp && any && asprintf(&text, "%s%s%s", l4, icmp, any) < 0)
        text = NULL;
    return text;
}

/* Print text as TAP comments: every line, or those holding one of `filters`. */
static void print_lines(const char *text, const char *const *filters)
{
    for (const char *line = text; line && *line;) {
        size_t len = strcspn(line, "\n");
        bool show = !filters;
        for (const char *const *f = filters; f && *f && !show; f++)
            show = memmem(line, len, *f, strlen(*f)) != NULL;
        if (show)
            printf("#   %.*s\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

static bool contains(const char *text, const char *fragment)
{
    bool found = text && strstr(text, fragment);
    if (!found)
        printf("#   '%s' not found\n", fragment);
    return found;
}

typedef struct TestContainer {
    char id[32];
    char bridge[16];
    FirewallContainer c;
} TestContainer;

static void test_container(TestContainer *t, const char *id, const char *network, unsigned prefix,
                           unsigned host)
{
    snprintf(t->id, sizeof(t->id), "%s", id);
    snprintf(t->bridge, sizeof(t->bridge), "clb-%.10s", id);
    t->c = (FirewallContainer){
        .id = t->id,
        .handle = t->id,
        .bridge = t->bridge,
        .subnet = {.network = addr(network), .prefix = prefix},
        .ip = addr(network) + host,
    };
}

/* The n-th /30 of 10.254.0.0/16. */
static void pool_container(TestContainer *t, const char *id, unsigned n)
{
    char net[INET_ADDRSTRLEN];
    struct in_addr in = {.s_addr = htonl(addr("10.254.0.0") + 4 * n)};
    inet_ntop(AF_INET, &in, net, sizeof(net));
    test_container(t, id, net, 30, 2);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const Ipv4Net deny[] = {{.network = 0xc0000200, .prefix = 24}}; /* 192.0.2.0/24 */
static const uint32_t dns[] = {0xc6336435};                            /* 198.51.100.53 */

static FirewallConfig config(void)
{
    return (FirewallConfig){
        .table = TABLE,
        .if_prefix = "cl",
        .pool = {.network = 0x0afe0000, .prefix = 16}, /* 10.254.0.0/16 */
        .deny = deny,
        .n_deny = ELEMENTSOF(deny),
        .dns = dns,
        .n_dns = ELEMENTSOF(dns),
    };
}

static void test_open(Firewall **ret)
{
    FirewallConfig cfg = config();
    is_int(firewall_open(&cfg, ret), 0, "open creates the table");
    _cleanup_free_ char *text = list_table();
    ok(contains(text, "table inet " TABLE) && contains(text, "map netin") &&
           contains(text, "set netout_l4_0") && contains(text, "set netout_icmp_63") &&
           contains(text, "set netout_any_7") && contains(text, "chain netout_5") &&
           contains(text, "map netout_log") && contains(text, "map owner") &&
           contains(text, "set subnets") && contains(text, "set ifaddr") &&
           contains(text, "chain forward") && contains(text, "chain input") &&
           contains(text, "chain default"),
       "the table has its maps, sets and chains");
    ok(contains(text, "ip daddr 192.0.2.0/24 reject with icmp admin-prohibited") &&
           contains(text, "ip daddr 198.51.100.53 udp dport 53 accept") &&
           contains(text, "elements = { 10.254.0.0/16 }") &&
           contains(text, "dnat ip to meta l4proto . th dport map @netin"),
       "deny list, DNS, pool range and DNAT are there");
    printf("# ruleset after open:\n");
    print_lines(text, NULL);

    /* Bad configurations. */
    cfg.table = "bad table";
    Firewall *bad = NULL;
    is_int(firewall_open(&cfg, &bad), -EINVAL, "a table name with a space is refused");
    cfg = config();
    cfg.if_prefix = "c\"l";
    is_int(firewall_open(&cfg, &bad), -EINVAL, "an interface prefix with a quote is refused");
}

static void test_reopen(Firewall **fw)
{
    TestContainer a;
    pool_container(&a, "keep", 1);
    is_int(firewall_add_container(*fw, &a.c, NULL, 0, NULL, 0), 0, "add a container");
    _cleanup_free_ char *before = list_table();
    firewall_free(*fw);
    *fw = NULL;

    FirewallConfig cfg = config();
    is_int(firewall_open(&cfg, fw), 0, "open a second time");
    _cleanup_free_ char *after = list_table();
    is_str(after, before, "open keeps elements");
    is_int(firewall_has_container(*fw, &a.c), 1, "the container's owner element is there");

    /* A new pool replaces the old range in @subnets. */
    firewall_free(*fw);
    cfg.pool = (Ipv4Net){.network = 0x0afe0000, .prefix = 17};
    is_int(firewall_open(&cfg, fw), 0, "open with a smaller pool");
    _cleanup_free_ char *smaller = list_table();
    ok(contains(smaller, "elements = { 10.254.0.0/17 }"), "the pool range was replaced");
    firewall_free(*fw);
    cfg = config();
    is_int(firewall_open(&cfg, fw), 0, "open with the first pool again");
    _cleanup_free_ char *again = list_table();
    is_str(again, before, "the table is as before");

    /* A table of the layout before elements: a chain per container, reached
     * through a verdict map, and a forward rule using it. */
    _cleanup_free_ char *old =
        nft("add map inet " TABLE " netout { type ipv4_addr : verdict; }\n"
            "add chain inet " TABLE " ctr-old\n"
            "add rule inet " TABLE " ctr-old ip daddr 1.2.3.4 accept\n"
            "add element inet " TABLE " netout { 10.254.1.2 : goto ctr-old }\n"
            "add rule inet " TABLE " forward ip saddr vmap @netout\n");
    ok(old != NULL, "the old layout's map, chain and rule");
    firewall_free(*fw);
    is_int(firewall_open(&cfg, fw), 0, "open upgrades it");
    _cleanup_free_ char *upgraded = list_table();
    ok(upgraded && !strstr(upgraded, "ctr-old") && !strstr(upgraded, "map netout {"),
       "the old chain and map are gone");
    is_str(upgraded, before, "the rest is as before");

    is_int(firewall_remove_container(*fw, &a.c, NULL, 0, NULL, 0, true), 0, "remove the container");
    is_int(firewall_has_container(*fw, &a.c), 0, "its owner element is gone");
}

static FirewallAddressRange range(const char *start, const char *end)
{
    return (FirewallAddressRange){.start = start, .end = end};
}

static void test_add_remove(Firewall *fw)
{
    _cleanup_free_ char *before = list_table();
    TestContainer b;
    test_container(&b, "static1", "192.168.50.0", 24, 7);
    FirewallAddressRange nets[] = {range("8.8.8.8", "8.8.8.8"), range("9.9.9.0", "9.9.9.255")};
    FirewallPortRange ports[] = {{80, 80}, {8000, 8100}};
    FirewallRule rules[] = {
        {.protocol = FIREWALL_PROTOCOL_TCP,
         .networks = nets,
         .n_networks = 2,
         .ports = ports,
         .n_ports = 2,
         .log = true},
        {.protocol = FIREWALL_PROTOCOL_ALL, .networks = nets, .n_networks = 1},
    };
    FirewallNetIn netin[] = {{61001, 8080, PORT_PROTO_TCP | PORT_PROTO_UDP},
                             {61002, 0, PORT_PROTO_TCP}};
    is_int(firewall_add_container(fw, &b.c, netin, 2, rules, 2), 0, "add a container");
    _cleanup_free_ char *with = list_table();
    ok(contains(with, "chain log-static1") && contains(with, "192.168.50.7 : jump log-static1") &&
           contains(with, "192.168.50.7 : 0x") && contains(with, "192.168.50.7 . 8.8.8.8") &&
           contains(with, "\"clb-static1\" . 192.168.50.7") &&
           contains(with, "6 . 61001 : 192.168.50.7 . 8080") &&
           contains(with, "17 . 61001 : 192.168.50.7 . 8080") &&
           contains(with, "6 . 61002 : 192.168.50.7 . 61002") &&
           contains(with, "192.168.50.0/24") &&
           contains(with, "ip daddr 8.8.8.8 tcp dport 80 log prefix \"static1 \" accept") &&
           contains(with, "ip daddr 8.8.8.8 tcp dport 8000-8100 log prefix \"static1 \" accept") &&
           contains(with, "ip daddr 9.9.9.0/24 tcp dport 80 log prefix \"static1 \" accept") &&
           contains(with, "ip daddr 9.9.9.0/24 tcp dport 8000-8100 log prefix \"static1 \"") &&
           contains(with, "192.168.50.7 . 192.168.50.0/24"),
       "its log chain, elements, subnet and NetIn are there");
    printf("# with one container:\n");
    print_lines(with, (const char *const[]){"static1", "61001", "61002", "192.168.50", NULL});

    is_int(firewall_add_container(fw, &b.c, netin, 2, rules, 2), 0,
           "adding the same container again is no error");
    _cleanup_free_ char *twice = list_table();
    is_str(twice, with, "and changes nothing");
    is_int(firewall_remove_container(fw, &b.c, netin, 2, rules, 2, true), 0, "remove it");
    _cleanup_free_ char *after = list_table();
    is_str(after, before, "the table is exactly as before");
    is_int(firewall_remove_container(fw, &b.c, netin, 2, rules, 2, true), 0, "remove it again");
    _cleanup_free_ char *after2 = list_table();
    is_str(after2, before, "still as before");

    /* A shared static subnet stays while another container is in it. */
    TestContainer b1, b2;
    test_container(&b1, "shared1", "192.168.60.0", 24, 2);
    test_container(&b2, "shared2", "192.168.60.0", 24, 3);
    b2.c.bridge = b1.c.bridge;
    ok(firewall_add_container(fw, &b1.c, NULL, 0, NULL, 0) == 0 &&
           firewall_add_container(fw, &b2.c, NULL, 0, NULL, 0) == 0,
       "two containers in one static subnet");
    is_int(firewall_remove_container(fw, &b1.c, NULL, 0, NULL, 0, false), 0, "remove the first");
    _cleanup_free_ char *one_left = list_table();
    ok(contains(one_left, "192.168.60.0/24"), "the subnet stays");
    is_int(firewall_remove_container(fw, &b2.c, NULL, 0, NULL, 0, true), 0, "remove the last");
    _cleanup_free_ char *none_left = list_table();
    is_str(none_left, before, "the subnet went with the last one");
}

static void test_netin_conflict(Firewall *fw)
{
    TestContainer c, d;
    pool_container(&c, "netin-c", 10);
    pool_container(&d, "netin-d", 11);
    FirewallNetIn mine = {61010, 80, PORT_PROTO_TCP};
    FirewallNetIn udp_only = {61011, 80, PORT_PROTO_UDP};
    is_int(firewall_add_container(fw, &c.c, &mine, 1, NULL, 0), 0, "a container with a NetIn");
    _cleanup_free_ char *before = list_table();
    is_int(firewall_add_container(fw, &d.c, &mine, 1, NULL, 0), -EEXIST,
           "another container with the same host port: EEXIST");
    ok(contains(firewall_last_error(fw), "File exists"), "the error text says why");
    is_int(firewall_has_container(fw, &d.c), 0, "nothing of the failed add is left");
    _cleanup_free_ char *after = list_table();
    is_str(after, before, "the table is unchanged");
    is_int(firewall_add_netin(fw, &c.c, &mine, 1), 0, "the same mapping again is no error");
    FirewallNetIn other = {61010, 81, PORT_PROTO_TCP};
    is_int(firewall_add_netin(fw, &c.c, &other, 1), -EEXIST,
           "the same host port to another port: EEXIST");
    is_int(firewall_add_netin(fw, &c.c, &udp_only, 1), 0, "a UDP mapping");
    FirewallNetIn tcp_same = {61011, 80, PORT_PROTO_TCP};
    is_int(firewall_add_container(fw, &d.c, &tcp_same, 1, NULL, 0), 0,
           "the same port for the other protocol is free");
    FirewallNetIn dup[] = {{61020, 1, PORT_PROTO_TCP}, {61020, 2, PORT_PROTO_TCP}};
    is_int(firewall_add_netin(fw, &c.c, dup, 2), -EEXIST, "a duplicate inside one call: EEXIST");
    FirewallNetIn bad = {0, 80, PORT_PROTO_TCP};
    is_int(firewall_add_netin(fw, &c.c, &bad, 1), -EINVAL, "host port 0 is refused");

    /* d's address and c's port: after c is gone, a stale remove of c must not
     * take d's elements. */
    FirewallNetIn both[] = {mine, udp_only};
    is_int(firewall_remove_container(fw, &c.c, both, 2, NULL, 0, false), 0, "remove c");
    TestContainer e = c;
    e.c.id = "netin-e";
    snprintf(e.id, sizeof(e.id), "netin-e");
    e.c.id = e.id;
    e.c.bridge = e.bridge;
    is_int(firewall_add_container(fw, &e.c, &mine, 1, NULL, 0), 0,
           "a new container gets c's address and port");
    _cleanup_free_ char *with_e = list_table();
    is_int(firewall_remove_container(fw, &c.c, both, 2, NULL, 0, false), 0,
           "a stale remove of c succeeds");
    _cleanup_free_ char *after_stale = list_table();
    is_str(after_stale, with_e, "and leaves e's elements alone");
    ok(firewall_remove_container(fw, &e.c, &mine, 1, NULL, 0, false) == 0 &&
           firewall_remove_container(fw, &d.c, &tcp_same, 1, NULL, 0, false) == 0,
       "remove the others");
}

static void test_netout(Firewall *fw)
{
    TestContainer c;
    pool_container(&c, "netout", 20);
    is_int(firewall_add_container(fw, &c.c, NULL, 0, NULL, 0), 0, "a container without rules");

    FirewallAddressRange v4[] = {range("10.1.0.0", "10.1.255.255"),
                                 range("172.16.5.5", "172.16.5.9")};
    FirewallAddressRange v6[] = {range("2001:db8::1", "2001:db8::ff")};
    FirewallAddressRange mixed[] = {range("2001:db8::1", "2001:db8::ff"),
                                    range("10.2.0.1", "10.2.0.1")};
    FirewallPortRange ports[] = {{53, 53}};
    FirewallRule rules[] = {
        {.protocol = FIREWALL_PROTOCOL_ALL, .networks = v4, .n_networks = 2},
        {.protocol = FIREWALL_PROTOCOL_TCP, .ports = ports, .n_ports = 1},
        {.protocol = FIREWALL_PROTOCOL_UDP,
         .networks = mixed,
         .n_networks = 2,
         .ports = ports,
         .n_ports = 1},
        {.protocol = FIREWALL_PROTOCOL_UDP},
        {.protocol = FIREWALL_PROTOCOL_ICMP,
         .has_icmp_type = true,
         .icmp_type = 8,
         .has_icmp_code = true,
         .networks = v4,
         .n_networks = 1},
        {.protocol = FIREWALL_PROTOCOL_ICMP, .has_icmp_type = true, .icmp_type = 13},
        {.protocol = FIREWALL_PROTOCOL_ICMP},
        {.protocol = FIREWALL_PROTOCOL_ICMPV6, .has_icmp_type = true, .icmp_type = 128},
        {.protocol = FIREWALL_PROTOCOL_TCP, .networks = v6, .n_networks = 1},
        {.protocol = FIREWALL_PROTOCOL_ALL, .log = true},
    };
    /* All but "icmp, anything" first, which comes in a second call. */
    FirewallRule *icmp_any = &rules[6];
    FirewallRule first[ELEMENTSOF(rules)];
    size_t n_first = 0;
    for (size_t i = 0; i < ELEMENTSOF(rules); i++)
        if (&rules[i] != icmp_any)
            first[n_first++] = rules[i];
    first[n_first] = *icmp_any;
    is_int(firewall_add_netout(fw, &c.c, first, 0, n_first), 0, "add NetOut rules");
    _cleanup_free_ char *text = netout_sets();
    ok(contains(text, "10.254.0.82 . 10.1.0.0/16,") &&
           contains(text, "10.254.0.82 . 172.16.5.5-172.16.5.9"),
       "all, networks: one element each");
    ok(contains(text, "10.254.0.82 . 10.254.0.80/30"), "its own subnet");
    ok(contains(text, "10.254.0.82 . 0.0.0.0/0 . 6 . 53"), "tcp, a port, any destination");
    ok(contains(text, "10.254.0.82 . 0.0.0.0/0 . 17 . 0-65535") && !strstr(text, "10.2.0.1"),
       "udp, anything: it covers the udp rule to 10.2.0.1, whose IPv6 range is skipped");
    /* Code 0 is printed with a name of type 3's codes. */
    ok(contains(text, "10.254.0.82 . 10.1.0.0/16 . echo-request . net-unreachable"),
       "icmp type and code");
    ok(contains(text, "10.254.0.82 . 0.0.0.0-10.0.255.255 . timestamp-request . 0-255") &&
           contains(text, "10.254.0.82 . 10.1.0.0/16 . timestamp-request . 0-255") &&
           contains(text, "10.254.0.82 . 10.2.0.0-255.255.255.255 . timestamp-request . 0-255"),
       "icmp type, any code: cut where it overlaps the other ICMP rule");
    ok(text && !strstr(text, "2001:") && !strstr(text, "icmpv6") && !strstr(text, "ipv6-icmp"),
       "nothing of ICMPv6 or IPv6-only rules");
    _cleanup_free_ char *chain = nft("list chain inet " TABLE " log-netout");
    ok(contains(chain, "\t\tlog prefix \"netout \" accept"), "all, logged: in its log chain");
    _cleanup_free_ char *logmap = nft("list map inet " TABLE " netout_log");
    ok(contains(logmap, "10.254.0.82 : jump log-netout"), "reached through @netout_log");
    print_lines(text, (const char *const[]){"10.254.0.82", NULL});

    /* More rules: the union is cut afresh; overlapping elements replaced. */
    is_int(firewall_add_netout(fw, &c.c, first, n_first, n_first + 1), 0, "add icmp, anything");
    _cleanup_free_ char *more = netout_sets();
    ok(contains(more, "10.254.0.82 . 0.0.0.0/0 . 0-255 . 0-255") &&
           !strstr(more, "timestamp-request") && !strstr(more, "echo-request"),
       "icmp, anything: one element covering the other two");
    ok(contains(more, "10.254.0.82 . 0.0.0.0/0 . 6 . 53"), "the others stay");
    print_lines(more, (const char *const[]){"10.254.0.82", NULL});

    /* Invalid rules: nothing is added. */
    _cleanup_free_ char *before = list_table();
    FirewallRule all_ports = {.protocol = FIREWALL_PROTOCOL_ALL, .ports = ports, .n_ports = 1};
    is_int(firewall_add_netout(fw, &c.c, &all_ports, 0, 1), -EINVAL, "ports with protocol all");
    ok(contains(firewall_last_error(fw), "Ports cannot be specified"), "with its message");
    FirewallAddressRange backwards[] = {range("10.0.0.9", "10.0.0.1")};
    FirewallRule bad_range = {
        .protocol = FIREWALL_PROTOCOL_TCP, .networks = backwards, .n_networks = 1};
    FirewallRule two[] = {rules[1], bad_range};
    is_int(firewall_add_netout(fw, &c.c, two, 0, 2), -EINVAL, "a range ending before its start");
    FirewallAddressRange garbage[] = {range("10.0.0.1\" accept; flush ruleset; \"", "10.0.0.2")};
    FirewallRule injection = {
        .protocol = FIREWALL_PROTOCOL_TCP, .networks = garbage, .n_networks = 1};
    is_int(firewall_add_netout(fw, &c.c, &injection, 0, 1), -EINVAL, "an address that is not one");
    FirewallAddressRange families[] = {range("10.0.0.1", "2001:db8::1")};
    FirewallRule mixed_range = {
        .protocol = FIREWALL_PROTOCOL_TCP, .networks = families, .n_networks = 1};
    is_int(firewall_add_netout(fw, &c.c, &mixed_range, 0, 1), -EINVAL, "a range of two families");
    FirewallPortRange bad_ports[] = {{90, 80}};
    FirewallRule bad_port = {.protocol = FIREWALL_PROTOCOL_UDP, .ports = bad_ports, .n_ports = 1};
    is_int(firewall_add_netout(fw, &c.c, &bad_port, 0, 1), -EINVAL, "a port range backwards");
    static FirewallAddressRange many_nets[256];
    static FirewallPortRange many_ports[256];
    for (unsigned i = 0; i < 256; i++) {
        many_nets[i] = range("10.0.0.1", "10.0.0.1");
        many_ports[i] = (FirewallPortRange){(uint16_t)(i + 1), (uint16_t)(i + 1)};
    }
    FirewallRule huge = {.protocol = FIREWALL_PROTOCOL_TCP,
                         .networks = many_nets,
                         .n_networks = 256,
                         .ports = many_ports,
                         .n_ports = 256};
    is_int(firewall_add_netout(fw, &c.c, &huge, 0, 1), -EINVAL,
           "256 networks x 256 ports: too many");
    FirewallRule unknown = {.protocol = (FirewallProtocol)9};
    is_int(firewall_add_netout(fw, &c.c, &unknown, 0, 1), -EINVAL, "an unknown protocol");
    _cleanup_free_ char *after = list_table();
    is_str(after, before, "the table is unchanged");

    /* Many rules: 1024 single addresses x 4 ports, cut in one sweep. */
    static char texts[1024][INET_ADDRSTRLEN];
    static FirewallAddressRange singles[1024];
    FirewallPortRange four[] = {{1, 1}, {3, 3}, {5, 5}, {7, 7}};
    for (unsigned i = 0; i < 1024; i++) {
        struct in_addr in = {.s_addr = htonl(addr("10.100.0.0") + 2 * i)};
        inet_ntop(AF_INET, &in, texts[i], sizeof(texts[i]));
        singles[i] = range(texts[i], texts[i]);
    }
    FirewallRule wide = {.protocol = FIREWALL_PROTOCOL_TCP,
                         .networks = singles,
                         .n_networks = 1024,
                         .ports = four,
                         .n_ports = 4};
    TestContainer m;
    pool_container(&m, "many", 22);
    double t0 = now_ms();
    is_int(firewall_add_container(fw, &m.c, NULL, 0, &wide, 1), 0,
           "4096 elements for one container");
    printf("# 4096 elements added in %.1f ms\n", now_ms() - t0);
    t0 = now_ms();
    is_int(firewall_remove_container(fw, &m.c, NULL, 0, &wide, 1, false), 0, "and removed");
    printf("# 4096 elements removed in %.1f ms\n", now_ms() - t0);
    /* Nested ranges with different ports each: their pieces multiply. */
    static FirewallAddressRange nested[256];
    static char lo_texts[256][INET_ADDRSTRLEN], hi_texts[256][INET_ADDRSTRLEN];
    static FirewallPortRange spread[64];
    for (unsigned i = 0; i < 256; i++) {
        struct in_addr lo = {.s_addr = htonl(addr("10.0.0.0") + i)},
                       hi = {.s_addr = htonl(addr("10.0.255.255") - i)};
        inet_ntop(AF_INET, &lo, lo_texts[i], sizeof(lo_texts[i]));
        inet_ntop(AF_INET, &hi, hi_texts[i], sizeof(hi_texts[i]));
        nested[i] = range(lo_texts[i], hi_texts[i]);
    }
    FirewallRule layered[64];
    for (unsigned i = 0; i < 64; i++) {
        spread[i] = (FirewallPortRange){(uint16_t)(1000 + 10 * i), (uint16_t)(1000 + 10 * i + 5)};
        layered[i] = (FirewallRule){.protocol = FIREWALL_PROTOCOL_UDP,
                                    .networks = nested + 4 * i,
                                    .n_networks = 4,
                                    .ports = spread + i,
                                    .n_ports = 1};
    }
    t0 = now_ms();
    int layered_r = firewall_add_netout(fw, &c.c, layered, 0, 64);
    printf("# 64 rules of nested ranges: %d in %.1f ms (%s)\n", layered_r, now_ms() - t0,
           firewall_last_error(fw));
    ok(layered_r == 0 || layered_r == -EINVAL, "nested ranges: merged or refused, not stuck");
    if (layered_r == 0)
        is_int(firewall_remove_container(fw, &c.c, NULL, 0, layered, 64, false), 0,
               "removed again");

    TestContainer bad = c;
    bad.c.id = "a b";
    is_int(firewall_add_container(fw, &bad.c, NULL, 0, NULL, 0), -EINVAL, "an id with a space");
    bad = c;
    bad.c.bridge = "eth0";
    is_int(firewall_add_container(fw, &bad.c, NULL, 0, NULL, 0), -EINVAL,
           "a bridge without the prefix");
    bad = c;
    bad.c.ip = addr("10.9.9.9");
    is_int(firewall_add_container(fw, &bad.c, NULL, 0, NULL, 0), -EINVAL,
           "an address outside the subnet");
    _cleanup_free_ char *before_remove = list_table();
    is_int(firewall_remove_container(fw, &c.c, NULL, 0, first, n_first + 1, false), 0, "remove");
    _cleanup_free_ char *removed = list_table();
    ok(removed && !strstr(removed, "10.254.0.82") && !strstr(removed, "log-netout"),
       "its elements and its log chain are gone");
}

static void test_prune(Firewall *fw)
{
    _cleanup_free_ char *empty = list_table();
    TestContainer t[4];
    FirewallNetIn netin[4];
    for (unsigned i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "prune%u", i);
        pool_container(&t[i], id, 30 + i);
        netin[i] = (FirewallNetIn){61100 + i, 80, PORT_PROTO_TCP | PORT_PROTO_UDP};
    }
    test_container(&t[3], "prune3", "192.168.70.0", 24, 2);
    netin[3] = (FirewallNetIn){61103, 80, PORT_PROTO_TCP};
    bool added = true;
    for (unsigned i = 0; i < 4; i++)
        added &= firewall_add_container(fw, &t[i].c, &netin[i], 1, NULL, 0) == 0;
    ok(added, "four containers");
    _cleanup_free_ char *all = list_table();
    FirewallContainer live_all[] = {t[0].c, t[1].c, t[2].c, t[3].c};
    is_int(firewall_prune(fw, live_all, 4), 0, "prune with all of them live");
    _cleanup_free_ char *same = list_table();
    is_str(same, all, "changes nothing");

    /* A stale element of a container that is gone, and a live one missing its
     * ifaddr element. */
    _cleanup_free_ char *stale =
        nft("add element inet " TABLE " ifaddr { \"clb-old\" . 10.254.9.2 }");
    _cleanup_free_ char *gap =
        nft("delete element inet " TABLE " ifaddr { \"clb-prune2\" . 10.254.0.130 }");
    ok(stale && gap, "a stale element and a missing one");

    FirewallContainer live[] = {t[0].c, t[2].c};
    is_int(firewall_prune(fw, live, 2), 0, "prune with two live");
    _cleanup_free_ char *text = list_table();
    is_int(firewall_has_container(fw, &t[0].c), 1, "a live one keeps its chain");
    is_int(firewall_has_container(fw, &t[2].c), 1, "the incomplete live one too");
    is_int(firewall_has_container(fw, &t[1].c), 0, "a dead one loses its chain");
    is_int(firewall_has_container(fw, &t[3].c), 0, "the other dead one too");
    FirewallPresence *set = NULL;
    is_int(firewall_presence_load(fw, &set), 0, "the owner elements listed once");
    ok(set && firewall_presence_has(set, &t[0].c) == 1 && firewall_presence_has(set, &t[2].c) == 1,
       "the listing has the live ones");
    ok(set && firewall_presence_has(set, &t[1].c) == 0 && firewall_presence_has(set, &t[3].c) == 0,
       "and not the dead ones");
    firewall_presence_free(set);
    ok(!strstr(text, "10.254.0.126") && !strstr(text, "192.168.70") && !strstr(text, "61101") &&
           !strstr(text, "61103") && !strstr(text, "clb-old"),
       "the dead ones' elements and the stale one are gone");
    ok(contains(text, "10.254.0.122 : 0x") && contains(text, "\"clb-prune0\" . 10.254.0.122") &&
           contains(text, "6 . 61100 : 10.254.0.122 . 80") &&
           contains(text, "10.254.0.122 . 10.254.0.120/30") &&
           contains(text, "10.254.0.130 : 0x") && contains(text, "6 . 61102 : 10.254.0.130 . 80"),
       "the live ones keep theirs");
    is_int(firewall_add_container(fw, &t[2].c, &netin[2], 1, NULL, 0), 0,
           "adding the incomplete one again");
    _cleanup_free_ char *repaired = list_table();
    ok(contains(repaired, "\"clb-prune2\" . 10.254.0.130"), "repairs it");

    /* Stale elements: an address nobody has, a live address under another
     * bridge, a live address owned by another id. */
    _cleanup_free_ char *wrong =
        nft("add element inet " TABLE " netout_any_55 { 10.254.0.222 . 1.2.3.4 }\n"
            "add element inet " TABLE " ifaddr { \"clb-x\" . 10.254.0.122 }");
    ok(wrong != NULL, "a stray netout element and a stray ifaddr element");
    is_int(firewall_prune(fw, live, 2), 0, "prune again");
    _cleanup_free_ char *again = list_table();
    is_str(again, repaired, "removes them and nothing else");

    ok(firewall_remove_container(fw, &t[0].c, &netin[0], 1, NULL, 0, false) == 0 &&
           firewall_remove_container(fw, &t[2].c, &netin[2], 1, NULL, 0, false) == 0,
       "remove the live ones");
    is_int(firewall_prune(fw, NULL, 0), 0, "prune with none live");
    _cleanup_free_ char *end = list_table();
    is_str(end, empty, "the table is back to empty");
}

typedef struct ThreadArgs {
    Firewall *fw;
    unsigned base;
    int failures;
} ThreadArgs;

static void *thread_main(void *arg)
{
    ThreadArgs *a = arg;
    for (unsigned i = 0; i < 50; i++) {
        TestContainer t;
        char id[16];
        snprintf(id, sizeof(id), "t%u", a->base + i);
        pool_container(&t, id, 2000 + a->base + i);
        FirewallNetIn netin = {30000 + a->base + i, 80, PORT_PROTO_TCP};
        if (firewall_add_container(a->fw, &t.c, &netin, 1, NULL, 0) < 0 ||
            firewall_remove_container(a->fw, &t.c, &netin, 1, NULL, 0, true) < 0)
            a->failures++;
    }
    return NULL;
}

static void test_threads(Firewall *fw)
{
    _cleanup_free_ char *before = list_table();
    ThreadArgs args[4];
    pthread_t threads[4];
    for (unsigned i = 0; i < 4; i++) {
        args[i] = (ThreadArgs){.fw = fw, .base = i * 100};
        pthread_create(&threads[i], NULL, thread_main, &args[i]);
    }
    int failures = 0;
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        failures += args[i].failures;
    }
    is_int(failures, 0, "four threads adding and removing at once");
    _cleanup_free_ char *after = list_table();
    is_str(after, before, "leave the table as it was");
}

#define SCALE 1000

static double mean(const double *v, size_t n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    return sum / (double)n;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, size_t n)
{
    double sorted[SCALE];
    memcpy(sorted, v, n * sizeof(*v));
    qsort(sorted, n, sizeof(*v), compare_double);
    return sorted[n / 2];
}

static void test_scaling(Firewall *fw)
{
    _cleanup_free_ char *before = list_table();
    static TestContainer t[SCALE];
    static FirewallNetIn netin[SCALE];
    FirewallAddressRange nets[] = {range("10.99.0.0", "10.99.255.255")};
    FirewallPortRange ports[] = {{443, 443}};
    FirewallRule rule = {.protocol = FIREWALL_PROTOCOL_TCP,
                         .networks = nets,
                         .n_networks = 1,
                         .ports = ports,
                         .n_ports = 1};
    double add_ms[SCALE], remove_ms[SCALE];
    int failures = 0;

    for (unsigned i = 0; i < SCALE; i++) {
        char id[16];
        snprintf(id, sizeof(id), "s%u", i);
        pool_container(&t[i], id, 100 + i);
        netin[i] = (FirewallNetIn){40000 + i, 8080, PORT_PROTO_TCP};
        double start = now_ms();
        failures += firewall_add_container(fw, &t[i].c, &netin[i], 1, &rule, 1) < 0;
        add_ms[i] = now_ms() - start;
    }
    is_int(failures, 0, "add %d containers, one transaction each", SCALE);
    _cleanup_free_ char *chains = nft("list chains inet");
    size_t n_chains = 0;
    for (const char *p = chains; p && (p = strstr(p, "\tchain ")); p++)
        n_chains++;
    is_int((int)n_chains, 6 + 64, "no chain per container: the base ones and the 64 shards");
    double start = now_ms();
    int present = firewall_has_container(fw, &t[SCALE / 2].c);
    printf("# has_container with %d chains: %.2f ms\n", SCALE, now_ms() - start);
    is_int(present, 1, "has_container finds one of them");
    failures = 0;
    for (unsigned i = SCALE; i-- > 0;) {
        double s = now_ms();
        failures += firewall_remove_container(fw, &t[i].c, &netin[i], 1, &rule, 1, true) < 0;
        remove_ms[i] = now_ms() - s;
    }
    is_int(failures, 0, "remove them, one transaction each");
    _cleanup_free_ char *after = list_table();
    is_str(after, before, "the table is as before");

    printf("# add: %.3f ms per container at 0..100, %.3f ms at %d..%d (median %.3f, %.3f)\n",
           mean(add_ms, 100), mean(add_ms + SCALE - 100, 100), SCALE - 100, SCALE,
           median(add_ms, 100), median(add_ms + SCALE - 100, 100));
    printf("# remove: %.3f ms per container at 0..100, %.3f ms at %d..%d (median %.3f, %.3f)\n",
           mean(remove_ms, 100), mean(remove_ms + SCALE - 100, 100), SCALE - 100, SCALE,
           median(remove_ms, 100), median(remove_ms + SCALE - 100, 100));
}

/* As on a minimal Debian (no netbase): no /etc/protocols, in this test's own
 * mount namespace only, so that nothing of the firewall may rely on protocol
 * names. */
static void hide_protocols(void)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        printf("Bail out! cannot make the test's mounts private: %s\n", strerror(errno));
        exit(1);
    }
    if (access("/etc/protocols", F_OK) == 0 &&
        mount("/dev/null", "/etc/protocols", NULL, MS_BIND, NULL) < 0) {
        printf("Bail out! cannot hide /etc/protocols: %s\n", strerror(errno));
        exit(1);
    }
    ok(getprotobynumber(6) == NULL && getprotobyname("udp") == NULL,
       "no protocol names resolve (as without netbase)");
}

int main(void)
{
    if (geteuid() != 0) {
        printf("1..0 # SKIP needs root for a network namespace of its own\n");
        return 0;
    }
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
        printf("1..0 # SKIP unshare(CLONE_NEWNET|CLONE_NEWNS): %s\n", strerror(errno));
        return 0;
    }
    hide_protocols();
    char ns[64] = "";
    ssize_t n = readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);
    if (n <= 0 || strcmp(ns, INIT_NETNS) == 0) {
        printf("Bail out! still in the initial network namespace\n");
        return 1;
    }

    Firewall *fw = NULL;
    test_open(&fw);
    if (!fw) {
        printf("Bail out! firewall_open failed\n");
        return 1;
    }
    test_reopen(&fw);
    test_add_remove(fw);
    test_netin_conflict(fw);
    test_netout(fw);
    test_prune(fw);
    test_threads(fw);
    test_scaling(fw);
    firewall_free(fw);
    return tap_done();
}
