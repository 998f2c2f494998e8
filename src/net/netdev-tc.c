/* Bandwidth limits of a container's host-side link (tc through libnl): TBF at the
 * root of the host veth shapes what enters the container; what leaves it is
 * redirected from the veth's ingress to an IFB device shaped by TBF (this kernel
 * has no police action). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>

#include <netlink/route/act/mirred.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>

#include "cloche/cleanup.h"
#include "netdev-internal.h"

#define TBF_LATENCY_US 25000
#define TBF_MAX_FILL_S 256
#define TBF_HANDLE TC_H_MAKE(1u << 16, 0)         /* 1: */
#define INGRESS_HANDLE TC_H_MAKE(TC_H_INGRESS, 0) /* ffff: */
/* u32 handle 800::800: the first node of the root hash table, fixed so that a
 * second call replaces the filter instead of adding another. */
#define U32_FILTER_HANDLE 0x80000800u
#define U32_FILTER_PRIO 1

/* ---- bandwidth ---------------------------------------------------------- */

/* The qdisc attached at parent (TC_H_ROOT, TC_H_INGRESS) of a link, by one
 * RTM_GETQDISC rather than a dump of every qdisc of the namespace. -ENOENT when
 * there is none, or only a default one: the kernel answers those (noqueue, handle
 * 0) with a bare acknowledgement. */
static int qdisc_get(struct nl_sock *sk, int ifindex, uint32_t parent, struct rtnl_qdisc **ret)
{
    struct tcmsg tcm = {.tcm_family = AF_UNSPEC, .tcm_ifindex = ifindex, .tcm_parent = parent};
    /* Without NLM_F_ECHO the kernel sends the answer to the RTNLGRP_TC group only. */
    _cleanup_(nlmsg_freep) struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETQDISC, NLM_F_ECHO);
    if (!msg)
        return -ENOMEM;
    int r = nlmsg_append(msg, &tcm, sizeof(tcm), NLMSG_ALIGNTO);
    if (r < 0)
        return netdev_errno_from_nl(r);
    _cleanup_(nl_object_putp) struct nl_object *obj = NULL;
    r = netdev_transact(sk, msg, &obj);
    if (r < 0)
        return r;
    if (!obj || rtnl_tc_get_handle(TC_CAST(obj)) == 0)
        return -ENOENT;
    *ret = (struct rtnl_qdisc *)TAKE_PTR(obj);
    return 0;
}

/* Deleting a qdisc that is not there (or the default, handle 0) is fine. */
static int qdisc_delete(struct nl_sock *sk, int ifindex, uint32_t parent)
{
    _cleanup_(rtnl_qdisc_putp) struct rtnl_qdisc *q = rtnl_qdisc_alloc();
    if (!q)
        return -ENOMEM;
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), parent);
    int r = netdev_errno_from_nl(rtnl_qdisc_delete(sk, q));
    return r == -ENOENT || r == -ENODEV ? 0 : r;
}

/* TBF at the root of a link. A root of another kind must go first: the kernel
 * only changes a qdisc in place when the kind matches. */
static int tbf_set(struct nl_sock *sk, int ifindex, uint32_t mtu, int rate, int burst)
{
    _cleanup_(rtnl_qdisc_putp) struct rtnl_qdisc *old = NULL;
    int r = qdisc_get(sk, ifindex, TC_H_ROOT, &old);
    if (r == 0 && strcmp(rtnl_tc_get_kind(TC_CAST(old)) ?: "", "tbf") != 0)
        r = qdisc_delete(sk, ifindex, TC_H_ROOT);
    else if (r == -ENOENT)
        r = 0;
    if (r < 0)
        return r;

    _cleanup_(rtnl_qdisc_putp) struct rtnl_qdisc *q = rtnl_qdisc_alloc();
    if (!q)
        return -ENOMEM;
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
    rtnl_tc_set_handle(TC_CAST(q), TBF_HANDLE);
    rtnl_tc_set_mtu(TC_CAST(q), mtu);
    r = rtnl_tc_set_kind(TC_CAST(q), "tbf");
    if (r < 0)
        return netdev_errno_from_nl(r);
    rtnl_qdisc_tbf_set_rate(q, rate, burst, 0);
    r = rtnl_qdisc_tbf_set_limit_by_latency(q, TBF_LATENCY_US);
    if (r < 0)
        return netdev_errno_from_nl(r);
    return netdev_errno_from_nl(rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE));
}

static int ifb_ensure(struct nl_sock *sk, const char *name, uint32_t mtu, int *ret_index)
{
    _cleanup_(rtnl_link_putp) struct rtnl_link *existing = NULL;
    int r = netdev_link_get(sk, name, ret_index, &existing);
    if (r == 0) {
        if (!rtnl_link_get_type(existing) || strcmp(rtnl_link_get_type(existing), "ifb") != 0)
            return -EEXIST;
        return (rtnl_link_get_flags(existing) & IFF_UP)
                   ? 0
                   : netdev_link_change(sk, *ret_index, true, -1);
    }
    if (r != -ENOENT)
        return r;
    _cleanup_(rtnl_link_putp) struct rtnl_link *link = rtnl_link_alloc();
    if (!link)
        return -ENOMEM;
    r = rtnl_link_set_type(link, "ifb");
    if (r < 0)
        return netdev_errno_from_nl(r);
    rtnl_link_set_name(link, name);
    rtnl_link_set_mtu(link, mtu);
    rtnl_link_set_flags(link, IFF_UP);
    r = netdev_link_add(sk, link, ret_index, NULL);
    if (r < 0 || *ret_index > 0)
        return r;
    return netdev_link_get(sk, name, ret_index, NULL);
}

/* host_if's ingress, every packet redirected to the IFB's egress. The filter has a
 * fixed handle, so a second call replaces it (with the IFB's current ifindex). */
static int ingress_redirect(struct nl_sock *sk, int ifindex, int ifb_index)
{
    _cleanup_(rtnl_qdisc_putp) struct rtnl_qdisc *q = rtnl_qdisc_alloc();
    if (!q)
        return -ENOMEM;
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
    rtnl_tc_set_handle(TC_CAST(q), INGRESS_HANDLE);
    int r = rtnl_tc_set_kind(TC_CAST(q), "ingress");
    if (r < 0)
        return netdev_errno_from_nl(r);
    r = netdev_errno_from_nl(rtnl_qdisc_add(sk, q, NLM_F_CREATE));
    if (r < 0)
        return r;

    _cleanup_(rtnl_cls_putp) struct rtnl_cls *cls = rtnl_cls_alloc();
    _cleanup_(rtnl_act_putp) struct rtnl_act *act = rtnl_act_alloc();
    if (!cls || !act)
        return -ENOMEM;
    rtnl_tc_set_ifindex(TC_CAST(cls), ifindex);
    rtnl_tc_set_parent(TC_CAST(cls), INGRESS_HANDLE);
    rtnl_tc_set_handle(TC_CAST(cls), U32_FILTER_HANDLE);
    r = rtnl_tc_set_kind(TC_CAST(cls), "u32");
    if (r < 0)
        return netdev_errno_from_nl(r);
    rtnl_cls_set_prio(cls, U32_FILTER_PRIO);
    rtnl_cls_set_protocol(cls, ETH_P_ALL);
    r = rtnl_u32_add_key_uint32(cls, 0, 0, 0, 0); /* matches everything */
    if (r >= 0)
        r = rtnl_u32_set_cls_terminal(cls);
    if (r < 0)
        return netdev_errno_from_nl(r);

    r = rtnl_tc_set_kind(TC_CAST(act), "mirred");
    if (r < 0)
        return netdev_errno_from_nl(r);
    rtnl_mirred_set_action(act, TCA_EGRESS_REDIR);
    rtnl_mirred_set_policy(act, TC_ACT_STOLEN);
    rtnl_mirred_set_ifindex(act, (uint32_t)ifb_index);
    r = rtnl_u32_add_action(cls, act); /* takes its own reference */
    if (r < 0)
        return netdev_errno_from_nl(r);
    return netdev_errno_from_nl(rtnl_cls_add(sk, cls, NLM_F_CREATE | NLM_F_REPLACE));
}

static int bandwidth_remove(struct nl_sock *sk, const char *host_if, const char *ifb_name)
{
    int index, r = netdev_link_get(sk, host_if, &index, NULL);
    if (r == 0) {
        r = qdisc_delete(sk, index, TC_H_ROOT);
        int k = qdisc_delete(sk, index, TC_H_INGRESS);
        if (r == 0)
            r = k;
    } else if (r == -ENOENT) {
        r = 0;
    }
    int k = netdev_link_delete_by_name(sk, ifb_name);
    return r < 0 ? r : k;
}

static int bandwidth_set(struct nl_sock *sk, const char *host_if, const char *ifb_name, int rate,
                         int burst)
{
    _cleanup_(rtnl_link_putp) struct rtnl_link *host = NULL;
    int host_index;
    int r = netdev_link_get(sk, host_if, &host_index, &host);
    if (r < 0)
        return r;
    /* The bucket must hold the largest frame, header included: a bucket of just
     * the MTU drops every full-sized packet. */
    uint32_t mtu = rtnl_link_get_mtu(host);
    if ((uint32_t)burst < mtu + ETH_HLEN)
        burst = (int)(mtu + ETH_HLEN);
    /* The kernel keeps the bucket as its fill time in 64 ns ticks, in 32 bits. */
    if ((uint64_t)burst > (uint64_t)rate * TBF_MAX_FILL_S)
        return -ERANGE;
    int ifb_index;
    r = ifb_ensure(sk, ifb_name, mtu, &ifb_index);
    if (r < 0)
        return r;
    r = tbf_set(sk, ifb_index, mtu, rate, burst);
    if (r >= 0)
        r = ingress_redirect(sk, host_index, ifb_index);
    if (r >= 0)
        r = tbf_set(sk, host_index, mtu, rate, burst);
    if (r < 0) /* no half-applied limits */
        (void)bandwidth_remove(sk, host_if, ifb_name);
    return r;
}

int netdev_set_bandwidth(NetDev *nd, const char *host_if, const char *ifb_name, uint64_t rate_bytes,
                         uint64_t burst_bytes)
{
    if (!nd || !netdev_valid_ifname(host_if) || !netdev_valid_ifname(ifb_name) ||
        strcmp(host_if, ifb_name) == 0)
        return -EINVAL;
    if (rate_bytes > INT_MAX || burst_bytes > INT_MAX)
        return -ERANGE;
    LOCKED(nd);
    if (rate_bytes == 0)
        return bandwidth_remove(nd->sock, host_if, ifb_name);
    return bandwidth_set(nd->sock, host_if, ifb_name, (int)rate_bytes, (int)burst_bytes);
}

int netdev_get_bandwidth(NetDev *nd, const char *host_if, uint64_t *ret_rate, uint64_t *ret_burst)
{
    if (!nd || !netdev_valid_ifname(host_if) || !ret_rate || !ret_burst)
        return -EINVAL;
    LOCKED(nd);
    int index;
    int r = netdev_link_get(nd->sock, host_if, &index, NULL);
    if (r < 0)
        return r;
    _cleanup_(rtnl_qdisc_putp) struct rtnl_qdisc *q = NULL;
    r = qdisc_get(nd->sock, index, TC_H_ROOT, &q);
    if (r == -ENOENT || (r == 0 && strcmp(rtnl_tc_get_kind(TC_CAST(q)) ?: "", "tbf") != 0)) {
        *ret_rate = *ret_burst = 0;
        return 0;
    }
    if (r < 0)
        return r;
    int rate = rtnl_qdisc_tbf_get_rate(q), burst = rtnl_qdisc_tbf_get_rate_bucket(q);
    *ret_rate = rate > 0 ? (uint64_t)rate : 0;
    *ret_burst = burst > 0 ? (uint64_t)burst : 0;
    return 0;
}
