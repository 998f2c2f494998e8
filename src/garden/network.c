/* A container's network: its address from the subnet pool, its links (a bridge per
 * subnet, a veth pair), its firewall state (NetIn mappings, NetOut rules) and the
 * NetIn host ports. Everything is recorded in ContainerRecord.net so that a
 * restarted daemon can reserve it again, and rebuild the firewall state of a live
 * container if it went missing.
 *
 * Bridges of subnets that empty are not deleted by the destroy itself (deleting a
 * netdev waits for an RCU grace period, ~17 ms here): a reaper thread deletes them
 * a moment later, unless a new container took the subnet in the meantime. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "cloche/log.h"
#include "cloche/testhook.h"
#include "cloche/clock.h"
#include "garden-internal.h"

#define NETIN_PER_CONTAINER_MAX 1024
#define NETOUT_PER_CONTAINER_MAX SPEC_NETOUT_RULES_MAX
#define BRIDGE_REAP_DELAY_NS (1000 * 1000000LL)
#define NET_ID_LEN 9
#define NAME_BUF 32 /* links names are at most 15 bytes; room for the compiler */

static void net_names(const Garden *g, const ContainerNet *net, char host_if[NAME_BUF],
                      char container_if[NAME_BUF], char bridge[NAME_BUF])
{
    if (host_if)
        garden_net_host_if(g, net, host_if, NAME_BUF);
    if (container_if)
        snprintf(container_if, NAME_BUF, "%s%s-1", g->if_prefix, net->id);
    if (bridge)
        snprintf(bridge, NAME_BUF, "%sbr%08" PRIx32, g->if_prefix, net->subnet);
}

void garden_net_host_if(const Garden *g, const ContainerNet *net, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s-0", g->if_prefix, net->id);
}

static void firewall_container(const Garden *g, const ContainerRecord *rec, char bridge[NAME_BUF],
                               FirewallContainer *ret)
{
    net_names(g, &rec->net, NULL, NULL, bridge);
    *ret = (FirewallContainer){
        .id = rec->net.id,
        .handle = rec->handle,
        .bridge = bridge,
        .subnet = {.network = rec->net.subnet, .prefix = rec->net.prefix},
        .ip = rec->net.ip,
    };
}

static unsigned netin_protos(NetInProtocol p)
{
    switch (p) {
    case NETIN_UDP:
        return PORT_PROTO_UDP;
    case NETIN_TCP_UDP:
        return PORT_PROTO_TCP | PORT_PROTO_UDP;
    case NETIN_TCP:
        break;
    }
    return PORT_PROTO_TCP;
}

static FirewallNetIn *firewall_netin(const ContainerNet *net)
{
    FirewallNetIn *v = calloc(net->n_netin + 1, sizeof(FirewallNetIn));
    for (size_t i = 0; v && i < net->n_netin; i++)
        v[i] = (FirewallNetIn){.host_port = net->netin[i].host_port,
                               .container_port = net->netin[i].container_port,
                               .protos = netin_protos(net->netin[i].protocol)};
    return v;
}

/* Garden's NetOut rules in the firewall's terms: one block holding the rules,
 * then every rule's address ranges, then its port ranges (free() it whole).
 * The addresses are borrowed from `rules`. NULL on ENOMEM. */
static FirewallRule *firewall_rules(const NetOutRule *rules, size_t n)
{
    _Static_assert((int)FIREWALL_PROTOCOL_ALL == (int)NET_PROTOCOL_ALL &&
                       (int)FIREWALL_PROTOCOL_TCP == (int)NET_PROTOCOL_TCP &&
                       (int)FIREWALL_PROTOCOL_UDP == (int)NET_PROTOCOL_UDP &&
                       (int)FIREWALL_PROTOCOL_ICMP == (int)NET_PROTOCOL_ICMP &&
                       (int)FIREWALL_PROTOCOL_ICMPV6 == (int)NET_PROTOCOL_ICMPV6,
                   "the firewall's protocols are Garden's");
    size_t n_nets = 0, n_ports = 0;
    for (size_t i = 0; i < n; i++) {
        n_nets += rules[i].n_networks;
        n_ports += rules[i].n_ports;
    }
    size_t size = (n + 1) * sizeof(FirewallRule) + n_nets * sizeof(FirewallAddressRange) +
                  n_ports * sizeof(FirewallPortRange);
    FirewallRule *v = calloc(1, size);
    if (!v)
        return NULL;
    FirewallAddressRange *nets = (FirewallAddressRange *)(v + n + 1);
    FirewallPortRange *ports = (FirewallPortRange *)(nets + n_nets);
    for (size_t i = 0; i < n; i++) {
        const NetOutRule *in = &rules[i];
        v[i] = (FirewallRule){
            .protocol = (FirewallProtocol)in->protocol,
            .networks = nets,
            .n_networks = in->n_networks,
            .ports = ports,
            .n_ports = in->n_ports,
            .has_icmp_type = in->has_icmps,
            .icmp_type = in->icmps.type,
            .has_icmp_code = in->icmps.has_code,
            .icmp_code = in->icmps.code,
            .log = in->log,
        };
        for (size_t j = 0; j < in->n_networks; j++)
            *nets++ = (FirewallAddressRange){in->networks[j].start, in->networks[j].end};
        for (size_t j = 0; j < in->n_ports; j++)
            *ports++ = (FirewallPortRange){in->ports[j].start, in->ports[j].end};
    }
    return v;
}

/* ---- ids ---------------------------------------------------------------- */

static const char base32[] = "0123456789abcdefghijklmnopqrstuv";

static void net_id_format(uint64_t v, char out[NET_ID_LEN + 1])
{
    for (int i = NET_ID_LEN - 1; i >= 0; i--) {
        out[i] = base32[v & 31];
        v >>= 5;
    }
    out[NET_ID_LEN] = '\0';
}

static bool net_id_parse(const char *s, uint64_t *ret)
{
    uint64_t v = 0;
    if (!s || strlen(s) != NET_ID_LEN)
        return false;
    for (const char *p = s; *p; p++) {
        const char *d = strchr(base32, *p);
        if (!d || !*p)
            return false;
        v = v << 5 | (uint64_t)(d - base32);
    }
    *ret = v;
    return true;
}

/* ---- set-up ------------------------------------------------------------- */

int garden_net_setup(Garden *g)
{
    const GardenConfig *cfg = &g->cfg;
    snprintf(g->if_prefix, sizeof(g->if_prefix), "cl%s", cfg->network_tag ? cfg->network_tag : "");
    snprintf(g->nft_table, sizeof(g->nft_table), "cloche%s",
             cfg->network_tag ? cfg->network_tag : "");
    pthread_mutex_init(&g->net_lock, NULL);
    pthread_mutex_init(&g->stats_lock, NULL);
    g->ifindex_sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the deadlines are monotonic */
    pthread_cond_init(&g->net_cond, &attr);
    pthread_condattr_destroy(&attr);
    g->net_ready = true;

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    g->net_counter = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;

    int r = netpool_new(&cfg->network_pool, &g->netpool);
    if (r < 0)
        return log_error_errno(r, "Invalid network pool: %m");
    r = portpool_new(cfg->port_pool_start, cfg->port_pool_size, &g->ports);
    if (r < 0)
        return log_error_errno(r, "Invalid port pool %u+%u: %m", cfg->port_pool_start,
                               cfg->port_pool_size);
    r = netdev_open(&g->netdev);
    if (r < 0)
        return log_error_errno(r, "Failed to open a netlink socket: %m");
    g->mtu = cfg->mtu;
    if (!g->mtu && netdev_default_mtu(g->netdev, &g->mtu) < 0)
        g->mtu = 1500;
    g->external_ip = cfg->external_ip;
    if (!g->external_ip && netdev_default_address(g->netdev, &g->external_ip) < 0)
        g->external_ip = 0x7f000001; /* no default route: the host's own loopback */

    FirewallConfig fc = {
        .table = g->nft_table,
        .if_prefix = g->if_prefix,
        .pool = cfg->network_pool,
        .deny = cfg->deny_networks,
        .n_deny = cfg->n_deny_networks,
        .dns = cfg->dns_servers,
        .n_dns = cfg->n_dns_servers,
        .allow_host_access = cfg->allow_host_access,
    };
    r = firewall_open(&fc, &g->firewall);
    if (r < 0)
        return log_error_errno(r, "Failed to set up the nftables table '%s': %m%s%s", g->nft_table,
                               g->firewall ? ": " : "",
                               g->firewall ? firewall_last_error(g->firewall) : "");
    r = pthread_create(&g->reaper, NULL, garden_bridge_reaper, g);
    if (r > 0)
        return log_error_errno(-r, "Failed to start the bridge reaper: %m");
    g->reaper_started = true;
    char ext[NAME_BUF];
    log_info("network: pool %s/%u, mtu %u, external ip %s, table inet %s",
             ipv4_format(cfg->network_pool.network, ext, sizeof(ext)), cfg->network_pool.prefix,
             g->mtu, ipv4_format(g->external_ip, (char[NAME_BUF]){0}, NAME_BUF), g->nft_table);
    return 0;
}

void garden_net_free(Garden *g)
{
    if (!g->net_ready)
        return;
    if (g->reaper_started) {
        pthread_mutex_lock(&g->net_lock);
        g->net_stopping = true;
        pthread_cond_signal(&g->net_cond);
        pthread_mutex_unlock(&g->net_lock);
        pthread_join(g->reaper, NULL);
        g->reaper_started = false;
    }
    /* Bridges still doomed are left: start-up removes those of no container. */
    for (size_t i = 0; i < g->n_doomed; i++)
        free(g->doomed[i]);
    free(g->doomed);
    g->doomed = NULL;
    g->n_doomed = 0;
    if (g->firewall)
        firewall_free(g->firewall);
    if (g->netdev)
        netdev_free(g->netdev);
    if (g->ports)
        portpool_free(g->ports);
    if (g->netpool)
        netpool_free(g->netpool);
    g->firewall = NULL;
    g->netdev = NULL;
    g->ports = NULL;
    g->netpool = NULL;
    pthread_cond_destroy(&g->net_cond);
    pthread_mutex_destroy(&g->net_lock);
    free(g->stats);
    g->stats = NULL;
    if (g->ifindex_sock >= 0)
        close(g->ifindex_sock);
    g->ifindex_sock = -1;
    pthread_mutex_destroy(&g->stats_lock);
    g->net_ready = false;
}

/* ---- create ------------------------------------------------------------- */

static int netpool_error(int r, const char *msg, ApiError *reterr)
{
    switch (r) {
    case -ENOSPC:
        return api_errorf(reterr, r, 503, GARDEN_ERR_GENERIC, "%s", msg);
    case -EEXIST:
    case -EADDRINUSE:
        return api_errorf(reterr, r, 409, GARDEN_ERR_GENERIC, "%s", msg);
    case -EINVAL:
    case -EADDRNOTAVAIL:
        return api_bad_request(reterr, "%s", msg);
    default:
        return api_internal_error(reterr, r, "Failed to allocate an address: %s", msg);
    }
}

/* Take host ports for the spec's NetIn entries (resolved into net->netin). */
static int take_ports(Garden *g, const NetInSpec *in, size_t n, ContainerNet *net, ApiError *reterr)
{
    if (net->n_netin + n > NETIN_PER_CONTAINER_MAX)
        return api_bad_request(reterr, "A container can have at most %d NetIn mappings",
                               NETIN_PER_CONTAINER_MAX);
    NetInSpec *grown = realloc(net->netin, (net->n_netin + n + 1) * sizeof(NetInSpec));
    if (!grown)
        return api_internal_error(reterr, -ENOMEM, "Out of memory");
    net->netin = grown;
    for (size_t i = 0; i < n; i++) {
        NetInSpec m = in[i];
        unsigned protos = netin_protos(m.protocol);
        int r;
        if (m.host_port == 0)
            r = portpool_acquire(g->ports, protos, &m.host_port);
        else
            r = portpool_reserve(g->ports, m.host_port, protos);
        if (r < 0) {
            if (r == -ENOSPC)
                api_errorf(reterr, r, 503, GARDEN_ERR_GENERIC,
                           "No free host port left in the port pool %u-%u", g->cfg.port_pool_start,
                           g->cfg.port_pool_start + g->cfg.port_pool_size - 1);
            else if (r == -EEXIST)
                api_errorf(reterr, r, 409, GARDEN_ERR_GENERIC,
                           "Host port %" PRIu32 " (%s) is already mapped", m.host_port,
                           netin_protocol_to_string(m.protocol));
            else
                api_internal_error(reterr, r, "Failed to reserve host port %" PRIu32, m.host_port);
            /* Give back what this call took. */
            for (size_t k = 0; k < i; k++) {
                const NetInSpec *t = &net->netin[net->n_netin - 1];
                portpool_release(g->ports, t->host_port, netin_protos(t->protocol));
                net->n_netin--;
            }
            return r;
        }
        if (m.container_port == 0)
            m.container_port = m.host_port;
        net->netin[net->n_netin++] = m;
    }
    return 0;
}

static void release_ports(Garden *g, const NetInSpec *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        portpool_release(g->ports, in[i].host_port, netin_protos(in[i].protocol));
}

static int set_net_properties(Container *c, const Garden *g)
{
    ContainerNet *net = &c->rec.net;
    char host_if[NAME_BUF], container_if[NAME_BUF], bridge[NAME_BUF], buf[32];
    net_names(g, net, host_if, container_if, bridge);
    int r = 0;
    char mtu[NAME_BUF];
    snprintf(mtu, sizeof(mtu), "%" PRIu32, net->mtu);
    Ipv4Net subnet = {.network = net->subnet, .prefix = net->prefix};
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "garden.network.container-ip",
                       ipv4_format(net->ip, buf, sizeof(buf)));
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "garden.network.host-ip",
                       ipv4_format(net->gateway, buf, sizeof(buf)));
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "garden.network.external-ip",
                       ipv4_format(g->external_ip, buf, sizeof(buf)));
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "garden.network.interface", container_if);
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "kawasaki.host-interface", host_if);
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "kawasaki.container-interface", container_if);
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "kawasaki.bridge-interface", bridge);
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "kawasaki.subnet",
                       ipv4net_format(&subnet, buf, sizeof(buf)));
    if (r >= 0)
        r = strmap_set(&c->rec.properties, "kawasaki.mtu", mtu);
    if (r >= 0) {
        char *ports = spec_encode_mapped_ports(net->netin, net->n_netin);
        r = ports ? strmap_set(&c->rec.properties, "garden.network.mapped-ports", ports) : -ENOMEM;
        free(ports);
    }
    return r;
}

int garden_net_allocate(Garden *g, Container *c, ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    char msg[256] = "";
    NetLease lease;
    pthread_mutex_lock(&g->net_lock); /* see garden_net_release */
    int r = netpool_acquire(g->netpool, rec->spec.network, &lease, msg, sizeof(msg));
    pthread_mutex_unlock(&g->net_lock);
    if (r < 0)
        return netpool_error(r, msg[0] ? msg : strerror(-r), reterr);

    char id[NET_ID_LEN + 1];
    pthread_mutex_lock(&g->net_lock);
    net_id_format(g->net_counter++, id);
    pthread_mutex_unlock(&g->net_lock);

    rec->net = (ContainerNet){
        .id = strdup(id),
        .subnet = lease.subnet.network,
        .prefix = lease.subnet.prefix,
        .gateway = lease.gateway,
        .ip = lease.ip,
        .mtu = g->mtu,
    };
    if (!rec->net.id) {
        netpool_release(g->netpool, &lease);
        rec->net = (ContainerNet){0};
        return api_internal_error(reterr, -ENOMEM, "Out of memory");
    }
    r = take_ports(g, rec->spec.netin, rec->spec.n_netin, &rec->net, reterr);
    if (r < 0) {
        netpool_release(g->netpool, &lease);
        free(rec->net.id);
        free(rec->net.netin);
        rec->net = (ContainerNet){0};
        return r;
    }
    r = set_net_properties(c, g);
    if (r < 0)
        return api_internal_error(reterr, r, "Out of memory");
    return 0;
}

static int firewall_error(Garden *g, int r, const char *what, ApiError *reterr)
{
    const char *detail = firewall_last_error(g->firewall);
    if (r == -EEXIST)
        return api_errorf(reterr, r, 409, GARDEN_ERR_GENERIC, "%s: a host port is already mapped",
                          what);
    if (r == -EINVAL)
        return api_bad_request(reterr, "%s: %s", what, detail && *detail ? detail : "invalid rule");
    return api_internal_error(reterr, r, "%s: %s", what, detail && *detail ? detail : strerror(-r));
}

int garden_net_attach(Garden *g, Container *c, pid_t init_pid, ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    char host_if[NAME_BUF], container_if[NAME_BUF], bridge[NAME_BUF];
    net_names(g, &rec->net, host_if, container_if, bridge);

    char nspath[64];
    snprintf(nspath, sizeof(nspath), "/proc/%d/ns/net", init_pid);
    _cleanup_close_ int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0)
        return api_internal_error(reterr, -errno,
                                  "Failed to open the container's network namespace");
    NetDevContainer spec = {
        .bridge = bridge,
        .host_if = host_if,
        .container_if = container_if,
        .netns_fd = nsfd,
        .subnet = rec->net.subnet,
        .prefix = rec->net.prefix,
        .gateway = rec->net.gateway,
        .ip = rec->net.ip,
        .mtu = rec->net.mtu,
    };
    int64_t t0 = clock_monotonic_ns();
    pthread_mutex_lock(&g->net_lock);
    garden_bridge_spare(g, bridge);
    int r = netdev_setup_container(g->netdev, &spec);
    pthread_mutex_unlock(&g->net_lock);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to set up the container's network links");
    int64_t t1 = clock_monotonic_ns();

    FirewallContainer fc;
    firewall_container(g, rec, bridge, &fc);
    _cleanup_free_ FirewallNetIn *in = firewall_netin(&rec->net);
    _cleanup_free_ FirewallRule *rules =
        firewall_rules(rec->spec.netout_rules, rec->spec.n_netout_rules);
    if (!in || !rules)
        return api_internal_error(reterr, -ENOMEM, "Out of memory");
    r = firewall_add_container(g->firewall, &fc, in, rec->net.n_netin, rules,
                               rec->spec.n_netout_rules);
    if (r < 0)
        return firewall_error(g, r, "Failed to set up the container's firewall", reterr);
    c->net_attached = true;
    log_debug("Container '%s': links %.2f ms, firewall %.2f ms", rec->handle,
              (double)(t1 - t0) / 1e6, (double)(clock_monotonic_ns() - t1) / 1e6);
    return 0;
}

static void ifb_name(const Garden *g, const ContainerNet *net, char out[NAME_BUF])
{
    snprintf(out, NAME_BUF, "%s%s-i", g->if_prefix, net->id);
}

int garden_net_set_bandwidth(Garden *g, Container *c, const BandwidthLimits *b, ApiError *reterr)
{
    const ContainerNet *net = &c->rec.net;
    if (!g->net_ready || !net->id)
        return api_errorf(reterr, -ENONET, 500, GARDEN_ERR_GENERIC, "Container '%s' has no network",
                          c->rec.handle);
    char host_if[NAME_BUF], ifb[NAME_BUF];
    net_names(g, net, host_if, NULL, NULL);
    ifb_name(g, net, ifb);
    int r = netdev_set_bandwidth(g->netdev, host_if, ifb, b->rate, b->burst);
    if (r == -ERANGE || r == -EINVAL)
        return api_bad_request(reterr, "Invalid bandwidth limit: rate %" PRIu64 ", burst %" PRIu64,
                               b->rate, b->burst);
    if (r < 0)
        return api_internal_error(reterr, r, "Failed to shape the container's bandwidth");
    return 0;
}

void garden_net_release(Garden *g, Container *c)
{
    if (!g->net_ready)
        return;
    /* Taken out of the record under the lock: readers (Info, metrics) see either
     * the whole network or none. */
    pthread_mutex_lock(&c->lock);
    ContainerNet net = c->rec.net;
    c->rec.net = (ContainerNet){0};
    c->net_attached = false;
    bool shaped = c->rec.spec.limits.bandwidth.rate != 0;
    /* The rules say which NetOut elements to delete (their strings stay the
     * record's). */
    size_t n_rules = c->rec.spec.n_netout_rules;
    _cleanup_free_ FirewallRule *rules = firewall_rules(c->rec.spec.netout_rules, n_rules);
    pthread_mutex_unlock(&c->lock);
    if (!net.id)
        return;
    ContainerRecord view = {.handle = c->rec.handle, .net = net};
    char bridge[NAME_BUF];
    FirewallContainer fc;
    firewall_container(g, &view, bridge, &fc);
    NetLease lease = {
        .subnet = {.network = net.subnet, .prefix = net.prefix},
        .gateway = net.gateway,
        .ip = net.ip,
    };
    /* The firewall state goes before the address and ports return to their pools:
     * a create that takes them next must find no element of ours left. The lock
     * keeps a shared subnet from being joined between "last" and the release. */
    pthread_mutex_lock(&g->net_lock);
    bool last = netpool_is_last(g->netpool, &lease);
    _cleanup_free_ FirewallNetIn *in = firewall_netin(&net);
    if (in && rules) {
        int64_t t0 = clock_monotonic_ns();
        int r = firewall_remove_container(g->firewall, &fc, in, net.n_netin, rules, n_rules, last);
        if (r < 0)
            log_warn_errno(r, "Failed to remove the firewall state of '%s': %m: %s", c->rec.handle,
                           firewall_last_error(g->firewall));
        log_debug("Container '%s': firewall state removed in %.2f ms", c->rec.handle,
                  (double)(clock_monotonic_ns() - t0) / 1e6);
    }
    (void)netpool_release(g->netpool, &lease);
    pthread_mutex_unlock(&g->net_lock);
    release_ports(g, net.netin, net.n_netin);
    if (shaped) {
        /* The IFB lives in the host's namespace: it does not die with the container. */
        char ifb[NAME_BUF];
        ifb_name(g, &net, ifb);
        int r = netdev_delete(g->netdev, ifb);
        if (r < 0 && r != -ENODEV && r != -ENOENT)
            log_warn_errno(r, "Failed to delete '%s': %m", ifb);
    }
    if (last)
        garden_bridge_doom(g, bridge);
    free(net.id);
    free(net.netin);
}

/* ---- restore ------------------------------------------------------------ */

void garden_net_reserve(Garden *g, Container *c)
{
    ContainerRecord *rec = &c->rec;
    if (!rec->net.id)
        return;
    NetLease lease = {
        .subnet = {.network = rec->net.subnet, .prefix = rec->net.prefix},
        .gateway = rec->net.gateway,
        .ip = rec->net.ip,
    };
    int r = netpool_reserve(g->netpool, &lease);
    if (r < 0)
        log_warn_errno(r, "Container '%s': its address cannot be reserved again: %m", rec->handle);
    for (size_t i = 0; i < rec->net.n_netin; i++) {
        const NetInSpec *m = &rec->net.netin[i];
        int k = portpool_reserve(g->ports, m->host_port, netin_protos(m->protocol));
        if (k < 0)
            log_warn_errno(k, "Container '%s': host port %" PRIu32 " cannot be reserved again: %m",
                           rec->handle, m->host_port);
    }
    uint64_t v;
    if (net_id_parse(rec->net.id, &v)) {
        pthread_mutex_lock(&g->net_lock);
        if (v >= g->net_counter)
            g->net_counter = v + 1;
        pthread_mutex_unlock(&g->net_lock);
    }
}

void garden_net_detach(Garden *g, Container *c)
{
    pthread_mutex_lock(&c->lock);
    ContainerRecord view = {.handle = c->rec.handle, .net = c->rec.net};
    bool shaped = c->rec.spec.limits.bandwidth.rate != 0;
    c->net_attached = false;
    size_t n_rules = c->rec.spec.n_netout_rules;
    _cleanup_free_ FirewallRule *rules = firewall_rules(c->rec.spec.netout_rules, n_rules);
    pthread_mutex_unlock(&c->lock);
    if (!view.net.id)
        return;
    char host_if[NAME_BUF], container_if[NAME_BUF], bridge[NAME_BUF];
    net_names(g, &view.net, host_if, container_if, bridge);
    FirewallContainer fc;
    firewall_container(g, &view, bridge, &fc);
    _cleanup_free_ FirewallNetIn *in = firewall_netin(&view.net);
    pthread_mutex_lock(&g->net_lock);
    if (in && rules) {
        int r = firewall_remove_container(g->firewall, &fc, in, view.net.n_netin, rules, n_rules,
                                          false);
        if (r < 0)
            log_warn_errno(r, "Failed to remove the firewall state of '%s': %m: %s", view.handle,
                           firewall_last_error(g->firewall));
    }
    pthread_mutex_unlock(&g->net_lock);
    /* The pair would die with the old network namespace, but asynchronously: its
     * name is needed again now. */
    int r = netdev_delete(g->netdev, host_if);
    if (r < 0 && r != -ENODEV && r != -ENOENT)
        log_warn_errno(r, "Failed to delete '%s': %m", host_if);
    if (shaped) {
        char ifb[NAME_BUF];
        ifb_name(g, &view.net, ifb);
        r = netdev_delete(g->netdev, ifb);
        if (r < 0 && r != -ENODEV && r != -ENOENT)
            log_warn_errno(r, "Failed to delete '%s': %m", ifb);
    }
}

int garden_net_restore(Garden *g, Container *c)
{
    ContainerRecord *rec = &c->rec;
    if (!rec->net.id)
        return 0;
    char bridge[NAME_BUF];
    FirewallContainer fc;
    firewall_container(g, rec, bridge, &fc);
    /* Rebuilt when its owner element is missing (a table of the older layout, or
     * a lost one), and when a NetIn or NetOut was recorded but the daemon died
     * before it reached the firewall (adding is idempotent). The owner elements
     * were listed once for every container restored. */
    int has = g->restore_presence ? firewall_presence_has(g->restore_presence, &fc)
                                  : firewall_has_container(g->firewall, &fc);
    if (rec->firewall_pending || has == 0) {
        log_info("Container '%s': rebuilding its firewall state", rec->handle);
        _cleanup_free_ FirewallNetIn *in = firewall_netin(&rec->net);
        _cleanup_free_ FirewallRule *rules =
            firewall_rules(rec->spec.netout_rules, rec->spec.n_netout_rules);
        int r = in && rules ? firewall_add_container(g->firewall, &fc, in, rec->net.n_netin, rules,
                                                     rec->spec.n_netout_rules)
                            : -ENOMEM;
        if (r < 0)
            log_warn_errno(r, "Container '%s': failed to rebuild its firewall state: %m: %s",
                           rec->handle, firewall_last_error(g->firewall));
        else if (rec->firewall_pending) {
            rec->firewall_pending = false;
            (void)depot_write_record_flags(g->depot, rec, DEPOT_WRITE_VOLATILE);
        }
    }
    c->net_attached = true;
    return 0;
}

void garden_net_prune(Garden *g)
{
    if (!g->net_ready)
        return;
    pthread_mutex_lock(&g->lock);
    size_t n = hashmap_size(g->containers), k = 0;
    FirewallContainer *live = calloc(n + 1, sizeof(FirewallContainer));
    char(*bridges)[NAME_BUF] = calloc(n + 1, NAME_BUF);
    char(*hosts)[NAME_BUF] = calloc(n + 1, NAME_BUF);
    if (live && bridges && hosts) {
        size_t state = 0;
        const char *key;
        void *value;
        while (hashmap_iterate(g->containers, &state, &key, &value) == 0) {
            Container *c = value;
            if (!c->rec.net.id || k >= n)
                continue;
            firewall_container(g, &c->rec, bridges[k], &live[k]);
            net_names(g, &c->rec.net, hosts[k], NULL, NULL);
            k++;
        }
    }
    pthread_mutex_unlock(&g->lock);
    if (!live || !bridges || !hosts)
        goto out;
    int64_t t0 = clock_monotonic_ns();
    int r = firewall_prune(g->firewall, live, k);
    if (r < 0)
        log_warn_errno(r, "Failed to prune the firewall: %m: %s", firewall_last_error(g->firewall));
    log_debug("Firewall pruned in %.1f ms", (double)(clock_monotonic_ns() - t0) / 1e6);

    /* Links of containers that no longer exist: their veths died with them, but
     * their bridges stay; a host veth whose container outlived the record goes
     * too. */
    t0 = clock_monotonic_ns();
    size_t n_links = 0;
    char **names = NULL;
    /* The names to keep, hashed: links x containers comparisons cost ~100 ms at
     * 4096 containers (8192 links), before the daemon serves. */
    HashMap *keep_names = NULL;
    r = hashmap_new(&keep_names);
    for (size_t i = 0; r >= 0 && i < k; i++) {
        char ifb[NAME_BUF];
        snprintf(ifb, sizeof(ifb), "%.*si", (int)strlen(hosts[i]) - 1, hosts[i]);
        if ((r = hashmap_put(keep_names, bridges[i], keep_names)) == -EEXIST)
            r = 0; /* a shared subnet's bridge */
        if (r >= 0 && (r = hashmap_put(keep_names, hosts[i], keep_names)) == -EEXIST)
            r = 0;
        if (r >= 0 && (r = hashmap_put(keep_names, ifb, keep_names)) == -EEXIST)
            r = 0;
    }
    if (r >= 0 && netdev_list(g->netdev, g->if_prefix, &names) == 0) {
        for (char **p = names; p && *p; p++) {
            bool keep = hashmap_get(keep_names, *p) != NULL;
            /* Only names of our own making: <prefix>br<8 hex> or <prefix><id>-0. */
            const char *rest = *p + strlen(g->if_prefix);
            bool ours = (strncmp(rest, "br", 2) == 0 && strlen(rest) == 10) ||
                        (strlen(rest) == NET_ID_LEN + 2 && (strcmp(rest + NET_ID_LEN, "-0") == 0 ||
                                                            strcmp(rest + NET_ID_LEN, "-i") == 0));
            if (keep || !ours)
                continue;
            log_info("Removing the stale link '%s'", *p);
            r = netdev_delete(g->netdev, *p);
            if (r < 0)
                log_warn_errno(r, "Failed to delete the link '%s': %m", *p);
        }
        for (char **p = names; p && *p; p++)
            n_links++;
        strv_free(names);
    }
    hashmap_free(keep_names);
    log_debug("Links pruned in %.1f ms (%zu of ours listed)",
              (double)(clock_monotonic_ns() - t0) / 1e6, n_links);
out:
    free(live);
    free(bridges);
    free(hosts);
}

/* ---- NetIn, NetOut after create ----------------------------------------- */

/* NetIn: recorded first, then added to the firewall, so a daemon killed between
 * the two finds the mapping in the record and adds it at restart; a failure of
 * either undoes the other. */
static int net_in_locked(Garden *g, Container *c, const NetInSpec *in, NetInSpec *ret,
                         ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    if (!g->net_ready || !rec->net.id || !c->net_attached)
        return api_errorf(reterr, -ENONET, 409, GARDEN_ERR_GENERIC, "Container '%s' has no network",
                          rec->handle);
    size_t before = rec->net.n_netin;
    int r = take_ports(g, in, 1, &rec->net, reterr);
    if (r < 0)
        return r;
    NetInSpec made = rec->net.netin[before];
    r = set_net_properties(c, g);
    rec->firewall_pending = true;
    if (r >= 0)
        r = testhook_fault("netin.record") ? -EIO : garden_persist(g, c);
    if (r < 0) {
        api_internal_error(reterr, r, "Failed to persist the mapping");
        goto undo;
    }
    testhook_point("netin.record");
    char bridge[NAME_BUF];
    FirewallContainer fc;
    firewall_container(g, rec, bridge, &fc);
    FirewallNetIn fin = {.host_port = made.host_port,
                         .container_port = made.container_port,
                         .protos = netin_protos(made.protocol)};
    r = firewall_add_netin(g->firewall, &fc, &fin, 1);
    if (r < 0) {
        firewall_error(g, r, "Failed to map the port", reterr);
        goto undo;
    }
    testhook_point("netin.firewall");
    /* Volatile: lost in a crash, the restart merely adds the mapping again. */
    rec->firewall_pending = false;
    (void)depot_write_record_flags(g->depot, rec, DEPOT_WRITE_VOLATILE);
    *ret = made;
    return 0;
undo:
    rec->firewall_pending = false;
    release_ports(g, &made, 1);
    rec->net.n_netin = before;
    (void)set_net_properties(c, g);
    int k = garden_persist(g, c);
    if (k < 0)
        log_warn_errno(k, "Container '%s': failed to persist the undone mapping: %m", rec->handle);
    return r;
}

int container_net_in(Garden *g, Container *c, const NetInSpec *in, NetInSpec *ret, ApiError *reterr)
{
    int r = state_op_begin(c, PHASES_RUNNING, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    r = net_in_locked(g, c, in, ret, reterr);
    pthread_mutex_unlock(&c->lock);
    state_op_end(c);
    return r;
}

/* NetOut: as NetIn, recorded first; the rules are the caller's until success. */
static int net_out_locked(Garden *g, Container *c, NetOutRule *rules, size_t n, ApiError *reterr)
{
    ContainerRecord *rec = &c->rec;
    _cleanup_free_ FirewallRule *fw_rules = NULL;
    if (!g->net_ready || !rec->net.id || !c->net_attached)
        return api_errorf(reterr, -ENONET, 409, GARDEN_ERR_GENERIC, "Container '%s' has no network",
                          rec->handle);
    if (rec->spec.n_netout_rules + n > NETOUT_PER_CONTAINER_MAX)
        return api_bad_request(reterr, "A container can have at most %d NetOut rules",
                               NETOUT_PER_CONTAINER_MAX);
    size_t before = rec->spec.n_netout_rules;
    NetOutRule *grown = realloc(rec->spec.netout_rules, (before + n) * sizeof(NetOutRule));
    if (!grown)
        return api_internal_error(reterr, -ENOMEM, "Out of memory");
    rec->spec.netout_rules = grown;
    memcpy(grown + before, rules, n * sizeof(NetOutRule));
    rec->spec.n_netout_rules = before + n;
    rec->firewall_pending = true;
    int r = testhook_fault("netout.record") ? -EIO : garden_persist(g, c);
    if (r < 0) {
        api_internal_error(reterr, r, "Failed to persist the rules");
        goto undo;
    }
    testhook_point("netout.record");
    char bridge[NAME_BUF];
    FirewallContainer fc;
    firewall_container(g, rec, bridge, &fc);
    /* All of them: the old ones' elements are replaced by those of the union. */
    fw_rules = firewall_rules(rec->spec.netout_rules, before + n);
    r = fw_rules ? firewall_add_netout(g->firewall, &fc, fw_rules, before, before + n) : -ENOMEM;
    if (r < 0) {
        firewall_error(g, r, "Failed to add the NetOut rules", reterr);
        goto undo;
    }
    for (size_t i = 0; i < n; i++)
        rules[i] = (NetOutRule){0};
    rec->firewall_pending = false;
    (void)depot_write_record_flags(g->depot, rec, DEPOT_WRITE_VOLATILE);
    return 0;
undo:
    rec->firewall_pending = false;
    rec->spec.n_netout_rules = before; /* the copies' contents stay the caller's */
    int k = garden_persist(g, c);
    if (k < 0)
        log_warn_errno(k, "Container '%s': failed to persist the undone rules: %m", rec->handle);
    return r;
}

int container_net_out(Garden *g, Container *c, NetOutRule *rules, size_t n, ApiError *reterr)
{
    int r = state_op_begin(c, PHASES_RUNNING, reterr);
    if (r < 0)
        return r;
    pthread_mutex_lock(&c->lock);
    r = net_out_locked(g, c, rules, n, reterr);
    pthread_mutex_unlock(&c->lock);
    state_op_end(c);
    return r;
}

int container_net_info(Garden *g, Container *c, ContainerNetInfo *ret)
{
    *ret = (ContainerNetInfo){0};
    pthread_mutex_lock(&c->lock);
    const ContainerNet *net = &c->rec.net;
    int r = 0;
    if (net->id) {
        ipv4_format(net->gateway, ret->host_ip, sizeof(ret->host_ip));
        ipv4_format(net->ip, ret->container_ip, sizeof(ret->container_ip));
        ipv4_format(g->external_ip, ret->external_ip, sizeof(ret->external_ip));
        if (net->n_netin) {
            ret->mapped = calloc(net->n_netin, sizeof(NetInSpec));
            if (ret->mapped) {
                memcpy(ret->mapped, net->netin, net->n_netin * sizeof(NetInSpec));
                ret->n_mapped = net->n_netin;
            } else {
                r = -ENOMEM;
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* ---- link counters for bulk metrics ------------------------------------- */

#define STATS_SNAPSHOT_NS (2 * 1000000000LL)

/* A link's ifindex by name: one ioctl on a socket kept for it (if_nametoindex
 * opens and closes one each time). 0 when there is no such link. */
static unsigned host_ifindex(Garden *g, const char *name)
{
    if (g->ifindex_sock < 0)
        return if_nametoindex(name);
    struct ifreq ifr = {0};
    if (strlen(name) >= sizeof(ifr.ifr_name))
        return 0;
    memcpy(ifr.ifr_name, name, strlen(name));
    return ioctl(g->ifindex_sock, SIOCGIFINDEX, &ifr) < 0 ? 0 : (unsigned)ifr.ifr_ifindex;
}

unsigned garden_net_host_ifindex(Garden *g, const char *host_if)
{
    return g->net_ready ? host_ifindex(g, host_if) : 0;
}

int garden_net_stats_indexed(Garden *g, unsigned ifindex, NetDevStats *ret)
{
    if (!g->net_ready)
        return -ENONET;
    if (ifindex == 0)
        return -ENOENT;
    int64_t now = clock_monotonic_ns();
    pthread_mutex_lock(&g->stats_lock);
    int r = 0;
    if (!g->stats || now - g->stats_at_ns > STATS_SNAPSHOT_NS) {
        NetDevIndexedStats *all = NULL;
        size_t n = 0;
        r = netdev_stats_dump(&all, &n);
        if (r >= 0) {
            free(g->stats);
            g->stats = all;
            g->n_stats = n;
            g->stats_at_ns = now;
        }
    }
    if (r >= 0) {
        const NetDevStats *found = netdev_stats_find(g->stats, g->n_stats, (int)ifindex);
        if (found)
            *ret = *found;
        else
            r = -ENOENT;
    }
    pthread_mutex_unlock(&g->stats_lock);
    return r;
}

int garden_net_stats_cached(Garden *g, const char *host_if, NetDevStats *ret)
{
    if (!g->net_ready)
        return -ENONET;
    /* Names are looked up now (one ioctl), so a link replaced under the same name
     * is never mistaken for the old one. */
    unsigned ifindex = host_ifindex(g, host_if);
    if (ifindex == 0)
        return -ENOENT;
    return garden_net_stats_indexed(g, ifindex, ret);
}
