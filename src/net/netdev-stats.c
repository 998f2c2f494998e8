/* Every link's counters from one RTM_GETSTATS dump asking for IFLA_STATS_LINK_64
 * alone. A link dump (RTM_GETLINK) builds every attribute of every link instead:
 * with 1,000 containers that is 2,000 links (host veths and bridges), each with its
 * IPv6 settings, bridge-port attributes and peer-namespace id, the last found by a
 * walk of every namespace id (quadratic in the number of containers), and libnl then
 * parses it all into objects. The stats dump costs a few microseconds a link. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "cloche/cleanup.h"
#include "cloche/netdev.h"

#define RECV_BUFFER (64 * 1024)
#define LINKS_MAX (1u << 20) /* far beyond any host; bounds the reply we keep */

static int indexed_cmp(const void *a, const void *b)
{
    int x = ((const NetDevIndexedStats *)a)->ifindex, y = ((const NetDevIndexedStats *)b)->ifindex;
    return (x > y) - (x < y);
}

/* One RTM_NEWSTATS message: its ifindex and 64-bit counters, if it has them. */
static bool parse_stats(const struct nlmsghdr *h, NetDevIndexedStats *ret)
{
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct if_stats_msg)))
        return false;
    const struct if_stats_msg *ifsm = NLMSG_DATA(h);
    int left = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifsm)));
    const struct rtattr *a =
        (const struct rtattr *)((const char *)ifsm + NLMSG_ALIGN(sizeof(*ifsm)));
    for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        if (a->rta_type != IFLA_STATS_LINK_64 || RTA_PAYLOAD(a) < sizeof(struct rtnl_link_stats64))
            continue;
        struct rtnl_link_stats64 s;
        memcpy(&s, RTA_DATA(a), sizeof(s));
        *ret = (NetDevIndexedStats){
            .ifindex = (int)ifsm->ifindex,
            .stats = {.rx_bytes = s.rx_bytes,
                      .tx_bytes = s.tx_bytes,
                      .rx_packets = s.rx_packets,
                      .tx_packets = s.tx_packets},
        };
        return true;
    }
    return false;
}

int netdev_stats_dump(NetDevIndexedStats **ret, size_t *ret_n)
{
    if (!ret || !ret_n)
        return -EINVAL;
    _cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    struct {
        struct nlmsghdr h;
        struct if_stats_msg ifsm;
    } req = {
        .h = {.nlmsg_len = sizeof(req),
              .nlmsg_type = RTM_GETSTATS,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
              .nlmsg_seq = 1},
        .ifsm = {.family = AF_UNSPEC, .filter_mask = IFLA_STATS_FILTER_BIT(IFLA_STATS_LINK_64)},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -errno;

    _cleanup_free_ char *buf = malloc(RECV_BUFFER);
    _cleanup_free_ NetDevIndexedStats *all = NULL;
    size_t n = 0, allocated = 0;
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t k = recv(fd, buf, RECV_BUFFER, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EIO;
        int left = (int)k;
        for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != req.h.nlmsg_seq)
                continue;
            if (h->nlmsg_type == NLMSG_DONE) {
                qsort(all, n, sizeof(*all), indexed_cmp);
                *ret = TAKE_PTR(all);
                *ret_n = n;
                return 0;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error < 0 ? e->error : -EIO;
            }
            if (h->nlmsg_type != RTM_NEWSTATS)
                continue;
            if (n == allocated) {
                if (allocated >= LINKS_MAX)
                    return -E2BIG;
                size_t grown_n = allocated ? 2 * allocated : 256;
                NetDevIndexedStats *grown = realloc(all, grown_n * sizeof(*all));
                if (!grown)
                    return -ENOMEM;
                all = grown;
                allocated = grown_n;
            }
            if (parse_stats(h, &all[n]))
                n++;
        }
    }
}

const NetDevStats *netdev_stats_find(const NetDevIndexedStats *all, size_t n, int ifindex)
{
    NetDevIndexedStats key = {.ifindex = ifindex};
    const NetDevIndexedStats *found = bsearch(&key, all, n, sizeof(key), indexed_cmp);
    return found ? &found->stats : NULL;
}
