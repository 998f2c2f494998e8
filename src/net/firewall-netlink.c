/* Set and map elements through nfnetlink directly: one batch (one kernel
 * transaction) of NEWSETELEM and DELSETELEM messages, and dumps of a set.
 *
 * Why not libnftables for these: before every command that adds or deletes an
 * element, libnftables 1.0.6 fetches the table's chains and sets, and the
 * elements of an interval set it touches; deleting from a concatenated interval
 * set then costs ~9 ms per element with 1000 containers (40 ms at 4096),
 * against ~0.1 ms here whatever the set holds. The kernel does what the cache
 * was for: it refuses a key mapped to another value or an overlapping range
 * (EEXIST), and a batch that fails is undone whole. */
/* The libc's network headers first: the kernel's then leave out what they
 * define again. */
#include "firewall-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

const char *const firewall_set_names[FIREWALL_SET_COUNT] = {
    [FIREWALL_SET_IFADDR] = "ifaddr",         [FIREWALL_SET_NETIN] = "netin",
    [FIREWALL_SET_NETOUT_L4] = "netout_l4",   [FIREWALL_SET_NETOUT_ICMP] = "netout_icmp",
    [FIREWALL_SET_NETOUT_ANY] = "netout_any", [FIREWALL_SET_OWNER] = "owner",
};

void firewall_set_name(unsigned set, unsigned shard, char buf[static FIREWALL_SET_NAME_MAX])
{
    if (firewall_set_sharded(set))
        snprintf(buf, FIREWALL_SET_NAME_MAX, "%s_%u", firewall_set_names[set], shard);
    else
        snprintf(buf, FIREWALL_SET_NAME_MAX, "%s", firewall_set_names[set]);
}

/* Elements per message: keeps each message well under a page of acks' worth. */
#define ELEMENTS_PER_MESSAGE 128
#define RECEIVE_BUFFER (64u << 10)
#define REPLY_TIMEOUT_SEC 10

/* ---- the batch ----------------------------------------------------------- */

void firewall_batch_done(FirewallBatch *b)
{
    free(b->v);
    *b = (FirewallBatch){0};
}

void firewall_batch_push(FirewallBatch *b, const FirewallElement *e, bool remove)
{
    if (b->error)
        return;
    if (b->n == b->size) {
        size_t size = b->size ? b->size * 2 : 16;
        if (size > FIREWALL_BATCH_MAX) {
            b->error = -E2BIG;
            return;
        }
        FirewallElement *v = realloc(b->v, size * sizeof(*v));
        if (!v) {
            b->error = -ENOMEM;
            return;
        }
        b->v = v;
        b->size = size;
    }
    b->v[b->n] = *e;
    b->v[b->n].remove = remove;
    b->n++;
}

/* ---- message building ---------------------------------------------------- */

typedef struct Buffer {
    uint8_t *data;
    size_t len;
    size_t size;
    int error;
} Buffer;

static void *buffer_reserve(Buffer *b, size_t n)
{
    if (b->error)
        return NULL;
    n = NLMSG_ALIGN(n);
    if (b->len + n > b->size) {
        size_t size = b->size ? b->size : 8192;
        while (size < b->len + n)
            size *= 2;
        uint8_t *data = realloc(b->data, size);
        if (!data) {
            b->error = -ENOMEM;
            return NULL;
        }
        b->data = data;
        b->size = size;
    }
    void *p = b->data + b->len;
    memset(p, 0, n);
    b->len += n;
    return p;
}

/* A message header and its nfgenmsg; returns the header's offset. */
static size_t message_begin(Buffer *b, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family,
                            uint16_t res_id)
{
    size_t at = b->len;
    struct nlmsghdr *h = buffer_reserve(b, NLMSG_HDRLEN);
    struct nfgenmsg *g = buffer_reserve(b, sizeof(struct nfgenmsg));
    if (!h || !g)
        return at;
    h->nlmsg_type = type;
    h->nlmsg_flags = flags;
    h->nlmsg_seq = seq;
    g->nfgen_family = family;
    g->version = NFNETLINK_V0;
    g->res_id = htons(res_id);
    return at;
}

static void message_end(Buffer *b, size_t at)
{
    if (!b->error)
        ((struct nlmsghdr *)(b->data + at))->nlmsg_len = (uint32_t)(b->len - at);
}

static void attr_put(Buffer *b, uint16_t type, const void *data, size_t len)
{
    struct nlattr *a = buffer_reserve(b, NLA_HDRLEN + len);
    if (!a)
        return;
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    memcpy((uint8_t *)a + NLA_HDRLEN, data, len);
}

static size_t nest_begin(Buffer *b, uint16_t type)
{
    size_t at = b->len;
    struct nlattr *a = buffer_reserve(b, NLA_HDRLEN);
    if (a)
        a->nla_type = type | NLA_F_NESTED;
    return at;
}

static void nest_end(Buffer *b, size_t at)
{
    if (!b->error)
        ((struct nlattr *)(b->data + at))->nla_len = (uint16_t)(b->len - at);
}

static void attr_value(Buffer *b, uint16_t type, const uint8_t *value, size_t len)
{
    size_t nest = nest_begin(b, type);
    attr_put(b, NFTA_DATA_VALUE, value, len);
    nest_end(b, nest);
}

static void element_put(Buffer *b, const FirewallElement *e)
{
    size_t elem = nest_begin(b, NFTA_LIST_ELEM);
    attr_value(b, NFTA_SET_ELEM_KEY, e->key, e->key_len);
    if (e->has_end)
        attr_value(b, NFTA_SET_ELEM_KEY_END, e->key_end, e->key_len);
    if (e->data_len && !e->remove)
        attr_value(b, NFTA_SET_ELEM_DATA, e->data, e->data_len);
    nest_end(b, elem);
}

/* The batch as messages, consecutive elements of one set and verb sharing one;
 * the count of messages that will be acknowledged in *ret_acks. */
static void batch_build(Buffer *b, const char *table, const FirewallBatch *batch, uint32_t seq,
                        size_t *ret_acks)
{
    size_t acks = 0;
    message_end(b, message_begin(b, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, AF_UNSPEC,
                                 NFNL_SUBSYS_NFTABLES));
    for (size_t i = 0; i < batch->n;) {
        const FirewallElement *first = &batch->v[i];
        uint16_t type =
            (NFNL_SUBSYS_NFTABLES << 8) | (first->remove ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM);
        uint16_t flags = NLM_F_REQUEST | NLM_F_ACK | (first->remove ? 0 : NLM_F_CREATE);
        size_t msg = message_begin(b, type, flags, seq++, NFPROTO_INET, 0);
        attr_put(b, NFTA_SET_ELEM_LIST_TABLE, table, strlen(table) + 1);
        char set[FIREWALL_SET_NAME_MAX];
        firewall_set_name(first->set, first->shard, set);
        attr_put(b, NFTA_SET_ELEM_LIST_SET, set, strlen(set) + 1);
        size_t list = nest_begin(b, NFTA_SET_ELEM_LIST_ELEMENTS);
        size_t k = 0;
        for (; i < batch->n && k < ELEMENTS_PER_MESSAGE; i++, k++) {
            const FirewallElement *e = &batch->v[i];
            if (e->set != first->set || e->shard != first->shard || e->remove != first->remove)
                break;
            element_put(b, e);
        }
        nest_end(b, list);
        message_end(b, msg);
        acks++;
    }
    message_end(b, message_begin(b, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, AF_UNSPEC,
                                 NFNL_SUBSYS_NFTABLES));
    *ret_acks = acks;
}

/* ---- the socket ---------------------------------------------------------- */

int firewall_netlink_open(int *ret_fd)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl local = {.nl_family = AF_NETLINK};
    int one = 1, rcvbuf = RECEIVE_BUFFER * 16;
    struct timeval timeout = {.tv_sec = REPLY_TIMEOUT_SEC};
    /* Room for every ack of a large batch, and for dumps (best effort). */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0 ||
        setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

static int send_all(int fd, const Buffer *b)
{
    /* A batch larger than the socket's send buffer would be refused (EMSGSIZE). */
    int size = (int)b->len + 4096;
    if (b->len > (64u << 10) && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t n = sendto(fd, b->data, b->len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    if (n < 0)
        return -errno;
    return (size_t)n == b->len ? 0 : -EMSGSIZE;
}

int firewall_netlink_commit(int fd, uint32_t *seq, const char *table, const FirewallBatch *batch)
{
    if (batch->error)
        return batch->error;
    if (batch->n == 0)
        return 0;
    Buffer b = {0};
    size_t expected = 0;
    uint32_t first_seq = *seq;
    batch_build(&b, table, batch, first_seq, &expected);
    *seq += (uint32_t)expected + 2;
    int r = b.error ? b.error : send_all(fd, &b);
    free(b.data);
    if (r < 0)
        return r;

    /* The kernel handles the batch within sendto: every answer is queued by now,
     * an error for each failed message and an ack for each other. */
    _cleanup_free_ uint8_t *buf = malloc(RECEIVE_BUFFER);
    if (!buf)
        return -ENOMEM;
    int error = 0;
    size_t acks = 0;
    while (acks < expected) {
        ssize_t n = recv(fd, buf, RECEIVE_BUFFER, error ? MSG_DONTWAIT : 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (error && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq < first_seq || h->nlmsg_type != NLMSG_ERROR)
                continue; /* a late answer to an earlier call */
            const struct nlmsgerr *e = NLMSG_DATA(h);
            acks++;
            if (e->error < 0 && !error)
                error = e->error;
        }
    }
    return error;
}

/* ---- dumps --------------------------------------------------------------- */

/* The attributes of a nest (or of a message's payload) by type, up to max. */
static void attrs_parse(const uint8_t *data, size_t len, const struct nlattr **tb, size_t max)
{
    memset(tb, 0, (max + 1) * sizeof(*tb));
    while (len >= NLA_HDRLEN) {
        const struct nlattr *a = (const struct nlattr *)data;
        if (a->nla_len < NLA_HDRLEN || a->nla_len > len)
            return;
        uint16_t type = a->nla_type & NLA_TYPE_MASK;
        if (type <= max)
            tb[type] = a;
        size_t step = NLA_ALIGN(a->nla_len);
        if (step >= len)
            return;
        data += step;
        len -= step;
    }
}

static const uint8_t *attr_data(const struct nlattr *a)
{
    return (const uint8_t *)a + NLA_HDRLEN;
}

static size_t attr_len(const struct nlattr *a)
{
    return a->nla_len - NLA_HDRLEN;
}

/* NFTA_DATA_VALUE inside a nest, copied into out (at most max bytes). */
static bool value_get(const struct nlattr *nest, uint8_t *out, size_t max, uint8_t *ret_len)
{
    const struct nlattr *tb[NFTA_DATA_MAX + 1];
    if (!nest)
        return false;
    attrs_parse(attr_data(nest), attr_len(nest), tb, NFTA_DATA_MAX);
    if (!tb[NFTA_DATA_VALUE] || attr_len(tb[NFTA_DATA_VALUE]) > max)
        return false;
    memcpy(out, attr_data(tb[NFTA_DATA_VALUE]), attr_len(tb[NFTA_DATA_VALUE]));
    *ret_len = (uint8_t)attr_len(tb[NFTA_DATA_VALUE]);
    return true;
}

static int dump_message(const struct nlmsghdr *h, FirewallSetId set, unsigned shard,
                        FirewallElementFn fn, void *userdata)
{
    const struct nlattr *tb[NFTA_SET_ELEM_LIST_MAX + 1];
    size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
    if (h->nlmsg_len < off)
        return 0;
    attrs_parse((const uint8_t *)h + off, h->nlmsg_len - off, tb, NFTA_SET_ELEM_LIST_MAX);
    const struct nlattr *list = tb[NFTA_SET_ELEM_LIST_ELEMENTS];
    if (!list)
        return 0;
    const uint8_t *data = attr_data(list);
    size_t len = attr_len(list);
    while (len >= NLA_HDRLEN) {
        const struct nlattr *a = (const struct nlattr *)data;
        if (a->nla_len < NLA_HDRLEN || a->nla_len > len)
            break;
        const struct nlattr *el[NFTA_SET_ELEM_MAX + 1];
        attrs_parse(attr_data(a), attr_len(a), el, NFTA_SET_ELEM_MAX);
        FirewallElement e = {.set = (uint8_t)set, .shard = (uint8_t)shard};
        uint8_t end_len = 0;
        if (value_get(el[NFTA_SET_ELEM_KEY], e.key, sizeof(e.key), &e.key_len)) {
            e.has_end =
                value_get(el[NFTA_SET_ELEM_KEY_END], e.key_end, sizeof(e.key_end), &end_len) &&
                end_len == e.key_len;
            (void)value_get(el[NFTA_SET_ELEM_DATA], e.data, sizeof(e.data), &e.data_len);
            int r = fn(&e, userdata);
            if (r < 0)
                return r;
        }
        size_t step = NLA_ALIGN(a->nla_len);
        if (step >= len)
            break;
        data += step;
        len -= step;
    }
    return 0;
}

/* A dump of the set, or with `key` a get of that one element (its answer, then
 * an ack). */
static int request(int fd, uint32_t *seq, const char *table, FirewallSetId set, unsigned shard,
                   const FirewallElement *key, FirewallElementFn fn, void *userdata)
{
    Buffer b = {0};
    uint32_t my_seq = (*seq)++;
    size_t msg =
        message_begin(&b, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
                      NLM_F_REQUEST | (key ? NLM_F_ACK : NLM_F_DUMP), my_seq, NFPROTO_INET, 0);
    attr_put(&b, NFTA_SET_ELEM_LIST_TABLE, table, strlen(table) + 1);
    char name[FIREWALL_SET_NAME_MAX];
    firewall_set_name(set, shard, name);
    attr_put(&b, NFTA_SET_ELEM_LIST_SET, name, strlen(name) + 1);
    if (key) {
        size_t list = nest_begin(&b, NFTA_SET_ELEM_LIST_ELEMENTS);
        FirewallElement k = *key;
        k.data_len = 0;
        element_put(&b, &k);
        nest_end(&b, list);
    }
    message_end(&b, msg);
    int r = b.error ? b.error : send_all(fd, &b);
    free(b.data);
    if (r < 0)
        return r;

    _cleanup_free_ uint8_t *buf = malloc(RECEIVE_BUFFER);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t n = recv(fd, buf, RECEIVE_BUFFER, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != my_seq)
                continue;
            if (h->nlmsg_type == NLMSG_DONE)
                return r;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return e->error < 0 ? e->error : r;
            }
            /* After a callback failed, the dump is still read to its end. */
            if (r >= 0)
                r = dump_message(h, set, shard, fn, userdata);
        }
    }
}

int firewall_netlink_dump(int fd, uint32_t *seq, const char *table, FirewallSetId set,
                          FirewallElementFn fn, void *userdata)
{
    unsigned shards = firewall_set_sharded(set) ? FIREWALL_NETOUT_SHARDS : 1;
    for (unsigned k = 0; k < shards; k++) {
        int r = request(fd, seq, table, set, k, NULL, fn, userdata);
        if (r < 0)
            return r;
    }
    return 0;
}

static int found(const FirewallElement *e, void *userdata)
{
    *(FirewallElement *)userdata = *e;
    return 0;
}

int firewall_netlink_get(int fd, uint32_t *seq, const char *table, const FirewallElement *key,
                         FirewallElement *ret)
{
    FirewallElement e = {.key_len = 0};
    int r = request(fd, seq, table, key->set, key->shard, key, found, &e);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    if (e.key_len == 0)
        return 0;
    if (ret)
        *ret = e;
    return 1;
}
