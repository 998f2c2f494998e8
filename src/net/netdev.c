/* Links of containers through libnl-route-3: one NETLINK_ROUTE socket in the
 * daemon's network namespace, kept under a mutex, and a short-lived one bound to a
 * container's namespace while that container is being set up. Nothing is cached:
 * every call looks up the links it needs by name, so a link changed or removed
 * behind our back cannot leave a stale ifindex here. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <sys/random.h>

#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/route.h>
#include <netlink/route/tc.h>

#include "cloche/cleanup.h"
#include "cloche/netdev.h"
#include "netdev-internal.h"

/* Not exported by the uapi headers; fixed since Linux 3.7 in every namespace. */
#define LOOPBACK_IFINDEX 1
#define MTU_CAP 1500

/* libnl folds the kernel's errno into its own codes, and every errno it does not
 * know into NLE_FAILURE. The error callback of our sockets keeps the kernel's own
 * errno for the thread that is talking to the socket; netdev_errno_from_nl() takes it
 * (and clears it) on each call, and falls back to unfolding libnl's codes. */
static _Thread_local int kernel_errno;

static int record_kernel_error(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
    kernel_errno = e->error;
    return NL_STOP;
}

int netdev_errno_from_nl(int nlerr)
{
    int kernel = kernel_errno;
    kernel_errno = 0;
    if (nlerr >= 0)
        return 0;
    if (kernel < 0)
        return kernel;
    switch (-nlerr) {
    case NLE_INTR:
        return -EINTR;
    case NLE_BAD_SOCK:
        return -EBADF;
    case NLE_AGAIN:
        return -EAGAIN;
    case NLE_NOMEM:
        return -ENOMEM;
    case NLE_EXIST:
        return -EEXIST;
    case NLE_INVAL:
    case NLE_MISSING_ATTR:
    case NLE_IMMUTABLE:
        return -EINVAL;
    case NLE_RANGE:
        return -ERANGE;
    case NLE_MSGSIZE:
    case NLE_ATTRSIZE:
        return -EMSGSIZE;
    case NLE_OPNOTSUPP:
    case NLE_MSGTYPE_NOSUPPORT:
        return -EOPNOTSUPP;
    case NLE_AF_NOSUPPORT:
        return -EAFNOSUPPORT;
    case NLE_OBJ_NOTFOUND:
        return -ENOENT;
    case NLE_NOADDR:
        return -EADDRNOTAVAIL;
    case NLE_BUSY:
        return -EBUSY;
    case NLE_PROTO_MISMATCH:
        return -EPROTONOSUPPORT;
    case NLE_NOACCESS:
        return -EACCES;
    case NLE_PERM:
        return -EPERM;
    case NLE_NODEV:
        return -ENODEV;
    default:
        return -EIO;
    }
}

static int socket_open(struct nl_sock **ret)
{
    _cleanup_(nl_socket_freep) struct nl_sock *sk = nl_socket_alloc();
    if (!sk)
        return -ENOMEM;
    int r = nl_connect(sk, NETLINK_ROUTE);
    if (r < 0)
        return netdev_errno_from_nl(r);
    r = nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, record_kernel_error, NULL);
    if (r < 0)
        return netdev_errno_from_nl(r);
    /* One recvmsg per answer instead of a peek and a read: the kernel sizes dump
     * datagrams to the reader's buffer, which it caps at 32 KiB. */
    nl_socket_disable_msg_peek(sk);
    r = nl_socket_set_msg_buf_size(sk, 32768);
    if (r < 0)
        return netdev_errno_from_nl(r);
    *ret = TAKE_PTR(sk);
    return 0;
}

/* A socket of another namespace: a netlink socket belongs to the namespace it was
 * created in. setns() moves only the calling thread, and it always comes back. */
static int socket_open_in_netns(int netns_fd, struct nl_sock **ret)
{
    _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return -errno;
    if (setns(netns_fd, CLONE_NEWNET) < 0)
        return -errno;
    int r = socket_open(ret);
    /* A thread left in a container's namespace would configure the wrong links
     * from now on; with an fd of our own namespace held this cannot fail. */
    if (setns(self, CLONE_NEWNET) < 0)
        abort();
    return r;
}

int netdev_open(NetDev **ret)
{
    if (!ret)
        return -EINVAL;
    _cleanup_free_ NetDev *nd = calloc(1, sizeof(*nd));
    if (!nd)
        return -ENOMEM;
    int r = socket_open(&nd->sock);
    if (r < 0)
        return r;
    r = socket_open(&nd->read_sock);
    if (r < 0) {
        nl_socket_free(nd->sock);
        return r;
    }
    pthread_mutex_init(&nd->lock, NULL);
    pthread_mutex_init(&nd->read_lock, NULL);
    *ret = TAKE_PTR(nd);
    return 0;
}

void netdev_free(NetDev *nd)
{
    if (!nd)
        return;
    nl_socket_free(nd->sock);
    nl_socket_free(nd->read_sock);
    pthread_mutex_destroy(&nd->lock);
    pthread_mutex_destroy(&nd->read_lock);
    free(nd);
}

/* ---- small netlink helpers ---------------------------------------------- */

bool netdev_valid_ifname(const char *name)
{
    return name && name[0] && strlen(name) < IFNAMSIZ && !strchr(name, '/');
}

typedef struct Reply {
    struct nl_object *object;
    bool acked;
} Reply;

static void store_object(struct nl_object *obj, void *arg)
{
    Reply *reply = arg;
    if (!reply->object) {
        nl_object_get(obj);
        reply->object = obj;
    }
}

static int parse_reply(struct nl_msg *msg, void *arg)
{
    (void)nl_msg_parse(msg, store_object, arg);
    return NL_OK;
}

static int note_ack(struct nl_msg *msg, void *arg)
{
    ((Reply *)arg)->acked = true;
    return NL_STOP;
}

/* Send a request and wait for its acknowledgement; the first object the kernel
 * sends back before it (the answer to a GET, the NLM_F_ECHO of a change) goes to
 * ret_object if there is one, else *ret_object stays NULL. */
int netdev_transact(struct nl_sock *sk, struct nl_msg *msg, struct nl_object **ret_object)
{
    int r = nl_send_auto(sk, msg);
    if (r < 0)
        return netdev_errno_from_nl(r);
    _cleanup_(nl_cb_putp) struct nl_cb *sock_cb = nl_socket_get_cb(sk);
    _cleanup_(nl_cb_putp) struct nl_cb *cb = nl_cb_clone(sock_cb);
    if (!cb)
        return -ENOMEM;
    Reply reply = {};
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, parse_reply, &reply);
    nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, note_ack, &reply);
    /* Answers and the acknowledgement come as separate datagrams; an error is the
     * acknowledgement too. */
    r = 0;
    while (!reply.acked && r >= 0)
        r = nl_recvmsgs(sk, cb);
    _cleanup_(nl_object_putp) struct nl_object *obj = reply.object;
    if (r < 0)
        return netdev_errno_from_nl(r);
    *ret_object = TAKE_PTR(obj);
    return 0;
}

/* Create a link; its ifindex (and for a veth, the peer's ifindex in its own
 * namespace) from the kernel's echo, 0 where the kernel did not echo. */
int netdev_link_add(struct nl_sock *sk, struct rtnl_link *link, int *ret_index, int *ret_peer_index)
{
    _cleanup_(nlmsg_freep) struct nl_msg *msg = NULL;
    int r = rtnl_link_build_add_request(link, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, &msg);
    if (r < 0)
        return netdev_errno_from_nl(r);
    _cleanup_(nl_object_putp) struct nl_object *obj = NULL;
    r = netdev_transact(sk, msg, &obj);
    if (r < 0)
        return r;
    struct rtnl_link *echo = (struct rtnl_link *)obj;
    bool is_link = obj && strcmp(nl_object_get_type(obj), "route/link") == 0;
    if (ret_index)
        *ret_index = is_link ? rtnl_link_get_ifindex(echo) : 0;
    if (ret_peer_index)
        *ret_peer_index = is_link ? rtnl_link_get_link(echo) : 0;
    return 0;
}

/* A link by name: its ifindex, and the link itself if ret_link. -ENOENT if missing. */
int netdev_link_get(struct nl_sock *sk, const char *name, int *ret_index,
                    struct rtnl_link **ret_link)
{
    _cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL;
    int r = netdev_errno_from_nl(rtnl_link_get_kernel(sk, 0, name, &link));
    if (r < 0)
        return r == -ENODEV ? -ENOENT : r;
    if (ret_index)
        *ret_index = rtnl_link_get_ifindex(link);
    if (ret_link)
        *ret_link = TAKE_PTR(link);
    return 0;
}

int netdev_link_delete_by_name(struct nl_sock *sk, const char *name)
{
    _cleanup_(rtnl_link_putp) struct rtnl_link *link = rtnl_link_alloc();
    if (!link)
        return -ENOMEM;
    rtnl_link_set_name(link, name);
    int r = netdev_errno_from_nl(rtnl_link_delete(sk, link));
    return r == -ENOENT || r == -ENODEV ? 0 : r;
}

/* Change some attributes of a link known by ifindex (RTM_NEWLINK on an existing
 * link, so the IPv4 devconf in IFLA_AF_SPEC goes in the same message). */
int netdev_link_change(struct nl_sock *sk, int ifindex, bool up, int route_localnet)
{
    _cleanup_(rtnl_link_putp) struct rtnl_link *orig = rtnl_link_alloc();
    _cleanup_(rtnl_link_putp) struct rtnl_link *change = rtnl_link_alloc();
    if (!orig || !change)
        return -ENOMEM;
    rtnl_link_set_ifindex(orig, ifindex);
    if (up)
        rtnl_link_set_flags(change, IFF_UP);
    if (route_localnet >= 0) {
        int r =
            rtnl_link_inet_set_conf(change, IPV4_DEVCONF_ROUTE_LOCALNET, (uint32_t)route_localnet);
        if (r < 0)
            return netdev_errno_from_nl(r);
    }
    return netdev_errno_from_nl(rtnl_link_change(sk, orig, change, 0));
}

/* Containers are IPv4-only: the host-side links get no IPv6 at all. With it, each
 * would carry link-local and multicast routes, and every link change walks the
 * whole IPv6 table (fib6_ifdown): creates and destroys slow down with every live
 * container. No netlink attribute sets this, so the per-link sysctl of this
 * namespace; done while the link is still down, so nothing is configured first. */
static int ipv6_disable(const char *ifname)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno; /* a kernel without IPv6 */
    ssize_t n = write(fd, "1", 1);
    int r = n == 1 ? 0 : -errno;
    close(fd);
    return r;
}

static int ipv4_addr_new(uint32_t host_order, unsigned prefix, struct nl_addr **ret)
{
    uint32_t be = htonl(host_order);
    struct nl_addr *a = nl_addr_build(AF_INET, &be, sizeof(be));
    if (!a)
        return -ENOMEM;
    nl_addr_set_prefixlen(a, (int)prefix);
    *ret = a;
    return 0;
}

/* ip/prefix on a link, with the subnet's broadcast address below /31. */
static int address_add(struct nl_sock *sk, int ifindex, uint32_t ip, unsigned prefix)
{
    _cleanup_(rtnl_addr_putp) struct rtnl_addr *addr = rtnl_addr_alloc();
    _cleanup_(nl_addr_putp) struct nl_addr *local = NULL, *broadcast = NULL;
    if (!addr)
        return -ENOMEM;
    int r = ipv4_addr_new(ip, prefix, &local);
    if (r < 0)
        return r;
    rtnl_addr_set_ifindex(addr, ifindex);
    r = rtnl_addr_set_local(addr, local);
    if (r < 0)
        return netdev_errno_from_nl(r);
    if (prefix < 31) {
        uint32_t mask = prefix ? 0xffffffffu << (32 - prefix) : 0;
        r = ipv4_addr_new(ip | ~mask, 32, &broadcast);
        if (r < 0)
            return r;
        r = rtnl_addr_set_broadcast(addr, broadcast);
        if (r < 0)
            return netdev_errno_from_nl(r);
    }
    return netdev_errno_from_nl(rtnl_addr_add(sk, addr, NLM_F_CREATE | NLM_F_EXCL));
}

static int default_route_add(struct nl_sock *sk, int ifindex, uint32_t gateway)
{
    _cleanup_(rtnl_route_putp) struct rtnl_route *route = rtnl_route_alloc();
    _cleanup_(nl_addr_putp) struct nl_addr *dst = NULL, *gw = NULL;
    if (!route)
        return -ENOMEM;
    int r = ipv4_addr_new(0, 0, &dst);
    if (r < 0)
        return r;
    r = ipv4_addr_new(gateway, 32, &gw);
    if (r < 0)
        return r;
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    if (!nh)
        return -ENOMEM;
    rtnl_route_nh_set_ifindex(nh, ifindex);
    rtnl_route_nh_set_gateway(nh, gw);
    rtnl_route_add_nexthop(route, nh); /* the route owns nh now */
    rtnl_route_set_family(route, AF_INET);
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_protocol(route, RTPROT_STATIC);
    r = rtnl_route_set_dst(route, dst);
    if (r < 0)
        return netdev_errno_from_nl(r);
    return netdev_errno_from_nl(rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_EXCL));
}

/* ---- container setup ---------------------------------------------------- */

static int validate_spec(const NetDevContainer *s)
{
    if (!s || !netdev_valid_ifname(s->bridge) || !netdev_valid_ifname(s->host_if) ||
        !netdev_valid_ifname(s->container_if) || s->netns_fd < 0)
        return -EINVAL;
    if (strcmp(s->bridge, s->host_if) == 0)
        return -EINVAL;
    if (s->prefix < 1 || s->prefix > 30 || s->mtu < 68 || s->mtu > 65535)
        return -EINVAL;
    uint32_t mask = 0xffffffffu << (32 - s->prefix);
    if ((s->subnet & ~mask) != 0 || (s->gateway & mask) != s->subnet ||
        (s->ip & mask) != s->subnet || s->gateway == s->ip)
        return -EINVAL;
    /* Neither may be the network or the broadcast address. */
    uint32_t host_bits[] = {s->gateway & ~mask, s->ip & ~mask};
    for (size_t i = 0; i < ELEMENTSOF(host_bits); i++)
        if (host_bits[i] == 0 || host_bits[i] == ~mask)
            return -EINVAL;
    return 0;
}

/* The daemon's namespace routes between the bridges and the outside. */
static int ensure_forwarding(NetDev *nd)
{
    if (nd->forwarding_checked)
        return 0;
    _cleanup_close_ int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n < 0)
        return -errno;
    if (n == 1 && c == '0') {
        n = pwrite(fd, "1", 1, 0);
        if (n < 0)
            return -errno;
        if (n != 1)
            return -EIO;
    }
    nd->forwarding_checked = true;
    return 0;
}

static int random_mac(struct nl_addr **ret)
{
    uint8_t mac[ETH_ALEN];
    ssize_t n = getrandom(mac, sizeof(mac), 0);
    if (n < 0)
        return -errno;
    if (n != (ssize_t)sizeof(mac))
        return -EIO;
    mac[0] = (uint8_t)((mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
    struct nl_addr *a = nl_addr_build(AF_LLC, mac, sizeof(mac));
    if (!a)
        return -ENOMEM;
    *ret = a;
    return 0;
}

/* The bridge of the subnet, created if missing. A MAC of its own keeps the bridge
 * from taking the lowest MAC of its ports, which would change as containers come
 * and go on a shared subnet and leave stale ARP entries in the others. */
static int bridge_ensure(struct nl_sock *sk, const NetDevContainer *s, int *ret_index,
                         bool *ret_created)
{
    _cleanup_(rtnl_link_putp) struct rtnl_link *existing = NULL;
    int r = netdev_link_get(sk, s->bridge, ret_index, &existing);
    if (r == 0) {
        if (!rtnl_link_get_type(existing) || strcmp(rtnl_link_get_type(existing), "bridge") != 0)
            return -EEXIST;
        *ret_created = false;
        /* Repaired if someone took it down or turned route_localnet off. */
        uint32_t localnet = 0;
        if (rtnl_link_inet_get_conf(existing, IPV4_DEVCONF_ROUTE_LOCALNET, &localnet) < 0)
            localnet = 0;
        if ((rtnl_link_get_flags(existing) & IFF_UP) && localnet == 1)
            return 0;
        return netdev_link_change(sk, *ret_index, true, 1);
    }
    if (r != -ENOENT)
        return r;

    _cleanup_(rtnl_link_putp) struct rtnl_link *link = rtnl_link_bridge_alloc();
    _cleanup_(nl_addr_putp) struct nl_addr *mac = NULL;
    if (!link)
        return -ENOMEM;
    r = random_mac(&mac);
    if (r < 0)
        return r;
    rtnl_link_set_name(link, s->bridge);
    rtnl_link_set_addr(link, mac);
    rtnl_link_set_mtu(link, s->mtu);
    int index;
    r = netdev_link_add(sk, link, &index, NULL);
    if (r < 0)
        return r;
    if (index <= 0)
        r = netdev_link_get(sk, s->bridge, &index, NULL);
    if (r >= 0)
        r = ipv6_disable(s->bridge);
    if (r >= 0)
        r = address_add(sk, index, s->gateway, s->prefix);
    if (r >= 0)
        r = netdev_link_change(sk, index, true, 1);
    if (r < 0) {
        (void)netdev_link_delete_by_name(sk, s->bridge);
        return r;
    }
    *ret_index = index;
    *ret_created = true;
    return 0;
}

/* Hairpin mode on the bridge port: a container that connects to its own mapped
 * port (gateway:host-port, DNAT back to itself) gets the answer through the port
 * the request came in on, which the bridge otherwise never does (it matters when
 * bridge netfilter sees such frames). */
static int bridge_port_hairpin(struct nl_sock *sk, int ifindex)
{
    _cleanup_(nlmsg_freep) struct nl_msg *msg = nlmsg_alloc_simple(RTM_SETLINK, NLM_F_ACK);
    if (!msg)
        return -ENOMEM;
    struct ifinfomsg ifi = {.ifi_family = AF_BRIDGE, .ifi_index = ifindex};
    if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0)
        return -ENOMEM;
    struct nlattr *info = nla_nest_start(msg, IFLA_PROTINFO | NLA_F_NESTED);
    if (!info || nla_put_u8(msg, IFLA_BRPORT_MODE, 1) < 0)
        return -ENOMEM;
    nla_nest_end(msg, info);
    struct nl_object *none = NULL;
    int r = netdev_transact(sk, msg, &none);
    if (none)
        nl_object_put(none);
    return r;
}

/* The container end's MAC, from its address: 0a:58 (unicast, locally
 * administered) and the four bytes of the address. A start after a stop makes the
 * pair anew, and the host's neighbour entry for the address (on the bridge, still
 * valid for up to a minute) then names the right MAC; a random one would be
 * unreachable until that entry expires. Addresses are unique on the host. */
static int mac_of_address(uint32_t ip, struct nl_addr **ret)
{
    uint8_t mac[ETH_ALEN] = {
        0x0a, 0x58, (uint8_t)(ip >> 24), (uint8_t)(ip >> 16), (uint8_t)(ip >> 8), (uint8_t)ip};
    struct nl_addr *a = nl_addr_build(AF_LLC, mac, sizeof(mac));
    if (!a)
        return -ENOMEM;
    *ret = a;
    return 0;
}

/* The pair with the peer born in the container's namespace. The host end comes
 * up once IPv6 is off and hairpin is on. The peer cannot be created up: it opens
 * before its partner is registered, and veth_open() refuses that with ENOTCONN. */
static int veth_create(struct nl_sock *sk, const NetDevContainer *s, int bridge_index,
                       int *ret_peer_index)
{
    _cleanup_(rtnl_link_putp) struct rtnl_link *link = rtnl_link_veth_alloc();
    if (!link)
        return -ENOMEM;
    _cleanup_(nl_addr_putp) struct nl_addr *mac = NULL;
    int r = mac_of_address(s->ip, &mac);
    if (r < 0)
        return r;
    rtnl_link_set_name(link, s->host_if);
    rtnl_link_set_mtu(link, s->mtu);
    rtnl_link_set_master(link, bridge_index);
    struct rtnl_link *peer = rtnl_link_veth_get_peer(link);
    rtnl_link_set_name(peer, s->container_if);
    rtnl_link_set_mtu(peer, s->mtu);
    rtnl_link_set_ns_fd(peer, s->netns_fd);
    rtnl_link_set_addr(peer, mac);
    rtnl_link_put(peer);
    int index = 0;
    r = netdev_link_add(sk, link, &index, ret_peer_index);
    if (r < 0)
        return r;
    if (index <= 0)
        r = netdev_link_get(sk, s->host_if, &index, NULL);
    if (r >= 0)
        r = ipv6_disable(s->host_if);
    if (r >= 0)
        r = bridge_port_hairpin(sk, index);
    if (r >= 0)
        r = netdev_link_change(sk, index, true, -1);
    if (r < 0)
        (void)netdev_link_delete_by_name(sk, s->host_if);
    return r;
}

/* index: the container end's ifindex if known, else 0. */
static int container_configure(const NetDevContainer *s, int index)
{
    _cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
    int r = socket_open_in_netns(s->netns_fd, &sk);
    if (r < 0)
        return r;
    r = netdev_link_change(sk, LOOPBACK_IFINDEX, true, -1);
    if (r < 0)
        return r;
    if (index <= 0) {
        r = netdev_link_get(sk, s->container_if, &index, NULL);
        if (r < 0)
            return r;
    }
    r = netdev_link_change(sk, index, true, -1);
    if (r < 0)
        return r;
    r = address_add(sk, index, s->ip, s->prefix);
    if (r < 0)
        return r;
    return default_route_add(sk, index, s->gateway);
}

static int setup_locked(NetDev *nd, const NetDevContainer *s)
{
    int r = ensure_forwarding(nd);
    if (r < 0)
        return r;
    int bridge_index;
    bool bridge_created;
    r = bridge_ensure(nd->sock, s, &bridge_index, &bridge_created);
    if (r < 0)
        return r;
    int peer_index;
    r = veth_create(nd->sock, s, bridge_index, &peer_index);
    if (r >= 0) {
        r = container_configure(s, peer_index);
        if (r < 0)
            (void)netdev_link_delete_by_name(nd->sock, s->host_if); /* the peer goes with it */
    }
    if (r < 0 && bridge_created)
        (void)netdev_link_delete_by_name(nd->sock, s->bridge);
    return r;
}

int netdev_setup_container(NetDev *nd, const NetDevContainer *spec)
{
    if (!nd)
        return -EINVAL;
    int r = validate_spec(spec);
    if (r < 0)
        return r;
    LOCKED(nd);
    return setup_locked(nd, spec);
}

/* ---- links of this namespace -------------------------------------------- */

int netdev_delete(NetDev *nd, const char *name)
{
    if (!nd || !netdev_valid_ifname(name))
        return -EINVAL;
    LOCKED(nd);
    return netdev_link_delete_by_name(nd->sock, name);
}

typedef struct LinkNames {
    const char *prefix;
    size_t prefix_len;
    char **names;
    size_t n;
    size_t size;
    int error;
} LinkNames;

static int collect_link_name(struct nl_msg *msg, void *arg)
{
    LinkNames *l = arg;
    struct nlmsghdr *h = nlmsg_hdr(msg);
    if (h->nlmsg_type != RTM_NEWLINK || l->error)
        return NL_OK;
    struct nlattr *a = nlmsg_find_attr(h, sizeof(struct ifinfomsg), IFLA_IFNAME);
    if (!a || nla_len(a) < 1 || nla_len(a) > IFNAMSIZ)
        return NL_OK;
    char name[IFNAMSIZ + 1];
    nla_strlcpy(name, a, sizeof(name));
    if (strncmp(name, l->prefix, l->prefix_len) != 0)
        return NL_OK;
    if (l->n + 1 >= l->size) {
        size_t size = l->size ? l->size * 2 : 64;
        char **v = realloc(l->names, size * sizeof(*v));
        if (!v) {
            l->error = -ENOMEM;
            return NL_OK;
        }
        l->names = v;
        l->size = size;
    }
    l->names[l->n] = strdup(name);
    if (!l->names[l->n]) {
        l->error = -ENOMEM;
        return NL_OK;
    }
    l->names[++l->n] = NULL;
    return NL_OK;
}

/* One dump; -NLE_DUMP_INTR if the links changed meanwhile (read again). */
static int list_once(NetDev *nd, LinkNames *l)
{
    _cleanup_(nlmsg_freep) struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETLINK, NLM_F_DUMP);
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    if (!msg || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
        nla_put_u32(msg, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS) < 0)
        return -NLE_NOMEM;
    READ_LOCKED(nd);
    int r = nl_send_auto(nd->read_sock, msg);
    if (r < 0)
        return r;
    _cleanup_(nl_cb_putp) struct nl_cb *sock_cb = nl_socket_get_cb(nd->read_sock);
    _cleanup_(nl_cb_putp) struct nl_cb *cb = nl_cb_clone(sock_cb);
    if (!cb)
        return -NLE_NOMEM;
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, collect_link_name, l);
    return nl_recvmsgs(nd->read_sock, cb); /* to the end of the dump */
}

/* One RTM_GETLINK dump without statistics, of which only the names are read:
 * libnl's link cache parsed every attribute of every link into objects, ~1.1 s
 * for 8192 links (4096 containers) before the daemon could serve. */
int netdev_list(NetDev *nd, const char *prefix, char ***ret_names)
{
    if (!nd || !prefix || !ret_names)
        return -EINVAL;
    int r = -NLE_DUMP_INTR;
    LinkNames l = {0};
    /* A dump that links changed under (a dying namespace's veths, right after a
     * crash) is read again, as libnl's caches do. */
    for (int attempt = 0; attempt < 10 && r == -NLE_DUMP_INTR; attempt++) {
        strv_free(l.names);
        l = (LinkNames){.prefix = prefix, .prefix_len = strlen(prefix)};
        r = list_once(nd, &l);
    }
    if (r >= 0 && l.error)
        r = l.error;
    else if (r < 0)
        r = netdev_errno_from_nl(r);
    if (r >= 0 && !l.names && !(l.names = calloc(1, sizeof(char *))))
        r = -ENOMEM;
    if (r < 0) {
        strv_free(l.names);
        return r;
    }
    *ret_names = l.names;
    return 0;
}

int netdev_stats_all(NetDev *nd, const char *prefix, NetDevNamedStats **ret, size_t *ret_n)
{
    if (!nd || !prefix || !ret || !ret_n)
        return -EINVAL;
    _cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
    {
        READ_LOCKED(nd);
        int r = rtnl_link_alloc_cache(nd->read_sock, AF_UNSPEC, &cache);
        if (r < 0)
            return netdev_errno_from_nl(r);
    }
    size_t len = strlen(prefix), n = 0;
    _cleanup_free_ NetDevNamedStats *all =
        calloc((size_t)nl_cache_nitems(cache) + 1, sizeof(NetDevNamedStats));
    if (!all)
        return -ENOMEM;
    for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
        struct rtnl_link *link = (struct rtnl_link *)o;
        const char *name = rtnl_link_get_name(link);
        if (!name || strncmp(name, prefix, len) != 0 || strlen(name) >= IFNAMSIZ)
            continue;
        snprintf(all[n].name, sizeof(all[n].name), "%s", name);
        all[n].stats = (NetDevStats){
            .rx_bytes = rtnl_link_get_stat(link, RTNL_LINK_RX_BYTES),
            .tx_bytes = rtnl_link_get_stat(link, RTNL_LINK_TX_BYTES),
            .rx_packets = rtnl_link_get_stat(link, RTNL_LINK_RX_PACKETS),
            .tx_packets = rtnl_link_get_stat(link, RTNL_LINK_TX_PACKETS),
        };
        n++;
    }
    *ret = TAKE_PTR(all);
    *ret_n = n;
    return 0;
}

int netdev_stats(NetDev *nd, const char *name, NetDevStats *ret)
{
    if (!nd || !netdev_valid_ifname(name) || !ret)
        return -EINVAL;
    _cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL;
    {
        READ_LOCKED(nd);
        int r = netdev_link_get(nd->read_sock, name, NULL, &link);
        if (r < 0)
            return r;
    }
    *ret = (NetDevStats){
        .rx_bytes = rtnl_link_get_stat(link, RTNL_LINK_RX_BYTES),
        .tx_bytes = rtnl_link_get_stat(link, RTNL_LINK_TX_BYTES),
        .rx_packets = rtnl_link_get_stat(link, RTNL_LINK_RX_PACKETS),
        .tx_packets = rtnl_link_get_stat(link, RTNL_LINK_TX_PACKETS),
    };
    return 0;
}

/* The interface of the main table's default IPv4 route with the lowest metric. */
static int default_route_ifindex(struct nl_sock *sk, int *ret)
{
    _cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
    int r = rtnl_route_alloc_cache(sk, AF_INET, 0, &cache);
    if (r < 0)
        return netdev_errno_from_nl(r);
    int index = 0;
    uint32_t best = 0;
    for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
        struct rtnl_route *route = (struct rtnl_route *)o;
        struct nl_addr *dst = rtnl_route_get_dst(route);
        if (rtnl_route_get_table(route) != RT_TABLE_MAIN ||
            rtnl_route_get_type(route) != RTN_UNICAST || (dst && nl_addr_get_prefixlen(dst) != 0))
            continue;
        if (rtnl_route_get_nnexthops(route) < 1)
            continue;
        uint32_t priority = rtnl_route_get_priority(route);
        int nh_index = rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0));
        if (nh_index > 0 && (index == 0 || priority < best)) {
            index = nh_index;
            best = priority;
        }
    }
    if (index == 0)
        return -ENOENT;
    *ret = index;
    return 0;
}

int netdev_default_mtu(NetDev *nd, uint32_t *ret)
{
    if (!nd || !ret)
        return -EINVAL;
    LOCKED(nd);
    int index;
    int r = default_route_ifindex(nd->sock, &index);
    if (r == -ENOENT) {
        *ret = MTU_CAP;
        return 0;
    }
    if (r < 0)
        return r;
    _cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL;
    r = rtnl_link_get_kernel(nd->sock, index, NULL, &link);
    if (r < 0)
        return netdev_errno_from_nl(r);
    uint32_t mtu = rtnl_link_get_mtu(link);
    *ret = mtu == 0 || mtu > MTU_CAP ? MTU_CAP : mtu;
    return 0;
}

int netdev_default_address(NetDev *nd, uint32_t *ret)
{
    if (!nd || !ret)
        return -EINVAL;
    LOCKED(nd);
    int index;
    int r = default_route_ifindex(nd->sock, &index);
    if (r < 0)
        return r;
    _cleanup_(nl_cache_freep) struct nl_cache *cache = NULL;
    r = rtnl_addr_alloc_cache(nd->sock, &cache);
    if (r < 0)
        return netdev_errno_from_nl(r);
    for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
        struct rtnl_addr *addr = (struct rtnl_addr *)o;
        struct nl_addr *local = rtnl_addr_get_local(addr);
        if (rtnl_addr_get_family(addr) != AF_INET || rtnl_addr_get_ifindex(addr) != index ||
            !local || nl_addr_get_len(local) != 4)
            continue;
        uint32_t be;
        memcpy(&be, nl_addr_get_binary_addr(local), sizeof(be));
        *ret = ntohl(be);
        return 0;
    }
    return -ENOENT;
}
