/* NetOutRule and NetIn codecs. Addresses are checked with inet_pton so that the
 * firewall code below only ever sees well-formed, ordered, same-family ranges. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/json.h"
#include "cloche/wire.h"
#include "spec-internal.h"

/* Longest textual address inet_pton can accept (INET6_ADDRSTRLEN less the NUL). */
#define IP_TEXT_MAX 45
#define PORT_MAX 65535

static const char *const protocol_names[] = {
    [NET_PROTOCOL_ALL] = "all",   [NET_PROTOCOL_TCP] = "tcp",       [NET_PROTOCOL_UDP] = "udp",
    [NET_PROTOCOL_ICMP] = "icmp", [NET_PROTOCOL_ICMPV6] = "icmpv6",
};

/* Returns the address family and fills addr (network byte order, so memcmp orders
 * addresses), or 0 if s is not an address. */
static int parse_ip(const char *s, unsigned char addr[static 16])
{
    if (inet_pton(AF_INET, s, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, s, addr) == 1)
        return AF_INET6;
    return 0;
}

static void ip_range_done(IpRange *range)
{
    free(range->start);
    free(range->end);
    *range = (IpRange){0};
}

static int decode_ip_range(json_object *obj, const char *path, IpRange *ret, ApiError *reterr)
{
    _cleanup_free_ char *start = NULL, *end = NULL;
    unsigned char a[16] = {0}, b[16] = {0};
    char p[SPEC_PATH_MAX];

    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    if ((r = spec_member_string(obj, path, "start", IP_TEXT_MAX, &start, reterr)) < 0 ||
        (r = spec_member_string(obj, path, "end", IP_TEXT_MAX, &end, reterr)) < 0)
        return r;
    if (!start)
        return api_bad_request(reterr, "Invalid value for '%s': 'start' is required", path);
    int family = parse_ip(start, a);
    if (!family)
        return api_bad_request(reterr, "Invalid value for '%s': '%s' is not an IP address",
                               spec_path(p, path, "start"), start);
    /* Garden's IPRangeFromIP sends a single address as start = end; a range with
     * only a start means that address too, not "start to anywhere". */
    if (!end) {
        end = strdup(start);
        if (!end)
            return api_internal_error(reterr, -ENOMEM, "Failed to decode '%s'", path);
    }
    int end_family = parse_ip(end, b);
    if (!end_family)
        return api_bad_request(reterr, "Invalid value for '%s': '%s' is not an IP address",
                               spec_path(p, path, "end"), end);
    if (family != end_family)
        return api_bad_request(reterr,
                               "Invalid value for '%s': start %s and end %s are not the same "
                               "address family",
                               path, start, end);
    if (memcmp(a, b, family == AF_INET ? 4 : 16) > 0)
        return api_bad_request(reterr, "Invalid value for '%s': start %s is after end %s", path,
                               start, end);
    ret->start = TAKE_PTR(start);
    ret->end = TAKE_PTR(end);
    return 0;
}

static int decode_port_range(json_object *obj, const char *path, PortRange *ret, ApiError *reterr)
{
    uint64_t start = 0, end = 0;
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    if ((r = spec_member_u64(obj, path, "start", PORT_MAX, &start, NULL, reterr)) < 0 ||
        (r = spec_member_u64(obj, path, "end", PORT_MAX, &end, NULL, reterr)) < 0)
        return r;
    /* Both keys are omitempty in Go: {"start":N} is the single port N (Garden's
     * PortRangeFromPort sends start = end), {"end":N} is 0..N, and {} names no port
     * at all, which is refused rather than read as port 0. */
    if (end == 0)
        end = start;
    if (end == 0)
        return api_bad_request(reterr, "Invalid value for '%s': empty port range", path);
    if (start > end)
        return api_bad_request(reterr,
                               "Invalid value for '%s': start %" PRIu64 " is greater than end "
                               "%" PRIu64,
                               path, start, end);
    *ret = (PortRange){.start = (uint16_t)start, .end = (uint16_t)end};
    return 0;
}

static int decode_icmps(json_object *obj, const char *path, IcmpControl *ret, ApiError *reterr)
{
    uint64_t type = 0, code = 0;
    bool has_code = false;
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    if ((r = spec_member_u64(obj, path, "type", UINT8_MAX, &type, NULL, reterr)) < 0 ||
        (r = spec_member_u64(obj, path, "code", UINT8_MAX, &code, &has_code, reterr)) < 0)
        return r;
    *ret = (IcmpControl){.type = (uint8_t)type, .code = (uint8_t)code, .has_code = has_code};
    return 0;
}

int spec_decode_netout_rule_at(json_object *obj, const char *path, NetOutRule *ret,
                               ApiError *reterr)
{
    _cleanup_(netout_rule_done) NetOutRule rule = {0};
    json_object *networks, *ports, *icmps;
    unsigned protocol = NET_PROTOCOL_ALL;
    char p[SPEC_PATH_MAX], item[SPEC_PATH_MAX];

    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    r = spec_member_enum(obj, path, "protocol", protocol_names, ELEMENTSOF(protocol_names),
                         &protocol, reterr);
    if (r < 0)
        return r;
    rule.protocol = (NetProtocol)protocol;

    r = spec_member_array(obj, path, "networks", SPEC_NETOUT_RANGES_MAX, &networks, reterr);
    if (r < 0)
        return r;
    if (networks && json_object_array_length(networks) > 0) {
        size_t n = json_object_array_length(networks);
        rule.networks = calloc(n, sizeof(IpRange));
        if (!rule.networks)
            return api_internal_error(reterr, -ENOMEM, "Failed to decode '%s'", path);
        spec_path(p, path, "networks");
        for (; rule.n_networks < n; rule.n_networks++) {
            r = decode_ip_range(json_object_array_get_idx(networks, rule.n_networks),
                                spec_path_index(item, p, rule.n_networks),
                                &rule.networks[rule.n_networks], reterr);
            if (r < 0)
                return r;
        }
    }

    r = spec_member_array(obj, path, "ports", SPEC_NETOUT_RANGES_MAX, &ports, reterr);
    if (r < 0)
        return r;
    if (ports && json_object_array_length(ports) > 0) {
        size_t n = json_object_array_length(ports);
        rule.ports = calloc(n, sizeof(PortRange));
        if (!rule.ports)
            return api_internal_error(reterr, -ENOMEM, "Failed to decode '%s'", path);
        spec_path(p, path, "ports");
        for (; rule.n_ports < n; rule.n_ports++) {
            r = decode_port_range(json_object_array_get_idx(ports, rule.n_ports),
                                  spec_path_index(item, p, rule.n_ports), &rule.ports[rule.n_ports],
                                  reterr);
            if (r < 0)
                return r;
        }
    }

    r = spec_member_object(obj, path, "icmps", &icmps, reterr);
    if (r < 0)
        return r;
    if (icmps) {
        rule.has_icmps = true;
        r = decode_icmps(icmps, spec_path(p, path, "icmps"), &rule.icmps, reterr);
        if (r < 0)
            return r;
    }

    r = spec_member_bool(obj, path, "log", &rule.log, reterr);
    if (r < 0)
        return r;

    *ret = rule;
    rule = (NetOutRule){0};
    return 0;
}

int spec_decode_netout_rule(json_object *obj, NetOutRule *ret, ApiError *reterr)
{
    *ret = (NetOutRule){0};
    return spec_decode_netout_rule_at(obj, "", ret, reterr);
}

int spec_decode_netout_rules(json_object *arr, NetOutRule **ret, size_t *ret_n, ApiError *reterr)
{
    NetOutRule *rules = NULL;
    size_t n_rules = 0;
    char item[SPEC_PATH_MAX];

    *ret = NULL;
    *ret_n = 0;
    int r = json_expect_array(arr, "netout_rules", SPEC_NETOUT_RULES_MAX, reterr);
    if (r < 0)
        return r;
    size_t n = json_object_array_length(arr);
    if (n == 0)
        return 0;
    rules = calloc(n, sizeof(NetOutRule));
    if (!rules)
        return api_internal_error(reterr, -ENOMEM, "Failed to decode 'netout_rules'");
    for (; n_rules < n; n_rules++) {
        r = spec_decode_netout_rule_at(json_object_array_get_idx(arr, n_rules),
                                       spec_path_index(item, "netout_rules", n_rules),
                                       &rules[n_rules], reterr);
        if (r < 0) {
            netout_rules_free(rules, n_rules);
            return r;
        }
    }
    *ret = rules;
    *ret_n = n_rules;
    return 0;
}

json_object *spec_encode_netout_rule(const NetOutRule *rule)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj || spec_add_u64(obj, "protocol", rule->protocol) < 0)
        return NULL;

    if (rule->n_networks > 0) {
        json_object *networks = json_object_new_array_ext((int)rule->n_networks);
        if (spec_add(obj, "networks", networks) < 0)
            return NULL;
        for (size_t i = 0; i < rule->n_networks; i++) {
            json_object *range = json_object_new_object();
            if (!range || json_object_array_add(networks, range) < 0) {
                json_object_put(range);
                return NULL;
            }
            if (spec_add_string(range, "start", rule->networks[i].start) < 0 ||
                spec_add_string(range, "end", rule->networks[i].end) < 0)
                return NULL;
        }
    }

    if (rule->n_ports > 0) {
        json_object *ports = json_object_new_array_ext((int)rule->n_ports);
        if (spec_add(obj, "ports", ports) < 0)
            return NULL;
        for (size_t i = 0; i < rule->n_ports; i++) {
            json_object *range = json_object_new_object();
            if (!range || json_object_array_add(ports, range) < 0) {
                json_object_put(range);
                return NULL;
            }
            if (spec_add_u64(range, "start", rule->ports[i].start) < 0 ||
                spec_add_u64(range, "end", rule->ports[i].end) < 0)
                return NULL;
        }
    }

    if (rule->has_icmps) {
        json_object *icmps = json_object_new_object();
        if (spec_add(obj, "icmps", icmps) < 0 || spec_add_u64(icmps, "type", rule->icmps.type) < 0)
            return NULL;
        /* "code" is a pointer in Go: a set 0 is written, unset is omitted */
        if (rule->icmps.has_code && spec_add(icmps, "code", json_new_u64(rule->icmps.code)) < 0)
            return NULL;
    }

    if (spec_add_bool(obj, "log", rule->log) < 0)
        return NULL;
    return TAKE_PTR(obj);
}

void netout_rule_done(NetOutRule *rule)
{
    if (!rule)
        return;
    for (size_t i = 0; i < rule->n_networks; i++)
        ip_range_done(&rule->networks[i]);
    free(rule->networks);
    free(rule->ports);
    *rule = (NetOutRule){0};
}

void netout_rules_free(NetOutRule *rules, size_t n)
{
    if (!rules)
        return;
    for (size_t i = 0; i < n; i++)
        netout_rule_done(&rules[i]);
    free(rules);
}

int spec_decode_netin_at(json_object *obj, const char *path, NetInSpec *ret, ApiError *reterr)
{
    uint64_t host_port = 0, container_port = 0;
    int r = json_expect_object(obj, path, reterr);
    if (r < 0)
        return r;
    /* Go's fields are uint32, but only 0..65535 can be mapped; refusing here gives a
     * 400 instead of a failure deep in the network code. */
    if ((r = spec_member_u64(obj, path, "host_port", PORT_MAX, &host_port, NULL, reterr)) < 0 ||
        (r = spec_member_u64(obj, path, "container_port", PORT_MAX, &container_port, NULL,
                             reterr)) < 0)
        return r;
    _cleanup_free_ char *proto = NULL;
    r = spec_member_string(obj, path, "cloche_protocol", 16, &proto, reterr);
    if (r < 0)
        return r;
    NetInProtocol protocol = NETIN_TCP;
    if (proto) {
        unsigned i;
        for (i = 0; i <= NETIN_TCP_UDP; i++)
            if (strcmp(proto, netin_protocol_to_string((NetInProtocol)i)) == 0)
                break;
        if (i > NETIN_TCP_UDP) {
            char p[SPEC_PATH_MAX];
            return api_bad_request(reterr,
                                   "Invalid value for '%s': '%s' is not one of tcp, udp, tcp+udp",
                                   spec_path(p, path, "cloche_protocol"), proto);
        }
        protocol = (NetInProtocol)i;
    }
    *ret = (NetInSpec){.host_port = (uint32_t)host_port,
                       .container_port = (uint32_t)container_port,
                       .protocol = protocol};
    return 0;
}

const char *netin_protocol_to_string(NetInProtocol p)
{
    switch (p) {
    case NETIN_TCP:
        return "tcp";
    case NETIN_UDP:
        return "udp";
    case NETIN_TCP_UDP:
        return "tcp+udp";
    }
    return "tcp";
}

int spec_decode_netin(json_object *obj, NetInSpec *ret, ApiError *reterr)
{
    *ret = (NetInSpec){0};
    return spec_decode_netin_at(obj, "", ret, reterr);
}

/* host_port and container_port have no omitempty: 0 is written literally. */
json_object *spec_encode_netin(const NetInSpec *n)
{
    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj || spec_add(obj, "host_port", json_new_u64(n->host_port)) < 0 ||
        spec_add(obj, "container_port", json_new_u64(n->container_port)) < 0)
        return NULL;
    if (n->protocol != NETIN_TCP &&
        spec_add(obj, "cloche_protocol",
                 json_object_new_string(netin_protocol_to_string(n->protocol))) < 0)
        return NULL;
    return TAKE_PTR(obj);
}

char *spec_encode_mapped_ports(const NetInSpec *in, size_t n)
{
    _cleanup_json_ json_object *arr = json_object_new_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o || spec_add(o, "HostPort", json_new_u64(in[i].host_port)) < 0 ||
            spec_add(o, "ContainerPort", json_new_u64(in[i].container_port)) < 0 ||
            json_object_array_add(arr, o) < 0)
            return NULL;
        o = NULL;
    }
    size_t len;
    char *text = json_serialize(arr, &len);
    while (text && len > 0 && text[len - 1] == '\n') /* a property value, not a reply */
        text[--len] = '\0';
    return text;
}
