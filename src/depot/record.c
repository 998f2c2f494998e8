/* ContainerRecord <-> its JSON form in state.json:
 *
 *   {"version":1,"handle":"h","state":"active","created_at":<ns>,"grace_time":<ns>,
 *    "properties":{...},"events":["oom",...],"spec":<the create request's wire form>,
 *    "runtime":{"init_pid":N,"init_start_time":N,"uid_base":N,"rootfs":"/path"}}
 *
 * "runtime" is optional (absent before the kernel objects exist).
 *
 * A record is read back only if every field is present and well-typed; anything
 * else, or a version newer than this build knows, is -EBADMSG. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/depot.h"
#include "cloche/json.h"
#include "cloche/wire.h"
#include "cloche/strmap.h"

void container_record_done(ContainerRecord *rec)
{
    if (!rec)
        return;
    free(rec->handle);
    free(rec->rootfs);
    free(rec->net.id);
    free(rec->net.netin);
    strmap_clear(&rec->properties);
    strmap_clear(&rec->events);
    container_spec_done(&rec->spec);
    *rec = (ContainerRecord){0};
}

void container_records_free(ContainerRecord *recs, size_t n)
{
    if (!recs)
        return;
    for (size_t i = 0; i < n; i++)
        container_record_done(&recs[i]);
    free(recs);
}

/* Add val (taken, may be NULL after a failed allocation) to obj under key. */
static int object_add(json_object *obj, const char *key, json_object *val)
{
    if (!val)
        return -ENOMEM;
    if (json_object_object_add(obj, key, val) < 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

static int array_add(json_object *arr, json_object *val)
{
    if (!val)
        return -ENOMEM;
    if (json_object_array_add(arr, val) < 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

static json_object *ipv4_to_json(uint32_t addr)
{
    struct in_addr in = {.s_addr = htonl(addr)};
    char buf[INET_ADDRSTRLEN];
    return json_object_new_string(inet_ntop(AF_INET, &in, buf, sizeof(buf)));
}

static json_object *net_to_json(const ContainerNet *net)
{
    _cleanup_json_ json_object *o = json_object_new_object();
    if (!o || object_add(o, "id", json_object_new_string(net->id)) < 0 ||
        object_add(o, "subnet", ipv4_to_json(net->subnet)) < 0 ||
        object_add(o, "prefix", json_new_u64(net->prefix)) < 0 ||
        object_add(o, "gateway", ipv4_to_json(net->gateway)) < 0 ||
        object_add(o, "ip", ipv4_to_json(net->ip)) < 0 ||
        object_add(o, "mtu", json_new_u64(net->mtu)) < 0)
        return NULL;
    json_object *arr = json_object_new_array();
    if (object_add(o, "netin", arr) < 0)
        return NULL;
    for (size_t i = 0; i < net->n_netin; i++)
        if (array_add(arr, spec_encode_netin(&net->netin[i])) < 0)
            return NULL;
    return TAKE_PTR(o);
}

static int ipv4_member(json_object *o, const char *key, uint32_t *ret)
{
    _cleanup_free_ char *s = NULL;
    json_object *v = json_member(o, key);
    struct in_addr in;
    if (!v || json_get_string(v, key, INET_ADDRSTRLEN, &s, NULL) < 0 ||
        inet_pton(AF_INET, s, &in) != 1)
        return -EBADMSG;
    *ret = ntohl(in.s_addr);
    return 0;
}

static int net_from_json(json_object *o, ContainerNet *net)
{
    uint64_t u;
    json_object *v;
    if (json_expect_object(o, "net", NULL) < 0)
        return -EBADMSG;
    v = json_member(o, "id");
    if (!v || json_get_string(v, "id", 64, &net->id, NULL) < 0 || !net->id)
        return -EBADMSG;
    if (ipv4_member(o, "subnet", &net->subnet) < 0 ||
        ipv4_member(o, "gateway", &net->gateway) < 0 || ipv4_member(o, "ip", &net->ip) < 0)
        return -EBADMSG;
    v = json_member(o, "prefix");
    if (!v || json_get_u64(v, "prefix", 32, &u, NULL) < 0)
        return -EBADMSG;
    net->prefix = (uint32_t)u;
    v = json_member(o, "mtu");
    if (!v || json_get_u64(v, "mtu", 65535, &u, NULL) < 0)
        return -EBADMSG;
    net->mtu = (uint32_t)u;
    v = json_member(o, "netin");
    if (!v || json_expect_array(v, "netin", SIZE_MAX, NULL) < 0)
        return -EBADMSG;
    size_t n = json_object_array_length(v);
    if (n) {
        net->netin = calloc(n, sizeof(NetInSpec));
        if (!net->netin)
            return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (spec_decode_netin_at(json_object_array_get_idx(v, i), "netin", &net->netin[i], NULL) <
            0)
            return -EBADMSG;
        net->n_netin++;
    }
    return 0;
}

static json_object *record_to_json(const ContainerRecord *rec)
{
    const char *state = container_state_to_string(rec->state);
    if (!rec->handle || !state)
        return NULL;

    _cleanup_json_ json_object *obj = json_object_new_object();
    if (!obj)
        return NULL;
    if (object_add(obj, "version", json_object_new_int(DEPOT_RECORD_VERSION)) < 0 ||
        object_add(obj, "handle", json_object_new_string(rec->handle)) < 0 ||
        object_add(obj, "state", json_object_new_string(state)) < 0 ||
        object_add(obj, "created_at", json_object_new_int64(rec->created_at_ns)) < 0 ||
        object_add(obj, "grace_time", json_object_new_int64(rec->grace_time_ns)) < 0)
        return NULL;

    json_object *props = json_object_new_object();
    if (object_add(obj, "properties", props) < 0)
        return NULL;
    STRMAP_FOREACH (i, &rec->properties) {
        if (object_add(props, rec->properties.keys[i],
                       json_object_new_string(rec->properties.values[i])) < 0)
            return NULL;
    }

    json_object *events = json_object_new_array();
    if (object_add(obj, "events", events) < 0)
        return NULL;
    STRMAP_FOREACH (i, &rec->events) {
        if (array_add(events, json_object_new_string(rec->events.keys[i])) < 0)
            return NULL;
    }

    if (object_add(obj, "spec", spec_encode_container_spec(&rec->spec)) < 0)
        return NULL;

    json_object *rt = json_object_new_object();
    if (object_add(obj, "runtime", rt) < 0 ||
        object_add(rt, "init_pid", json_object_new_int(rec->init_pid)) < 0 ||
        object_add(rt, "init_start_time", json_new_u64(rec->init_start_time)) < 0 ||
        object_add(rt, "uid_base", json_new_u64(rec->uid_base)) < 0 ||
        object_add(rt, "rootfs", json_object_new_string(rec->rootfs ? rec->rootfs : "")) < 0)
        return NULL;
    if (rec->net.id && object_add(rt, "net", net_to_json(&rec->net)) < 0)
        return NULL;
    if (rec->firewall_pending &&
        object_add(rt, "firewall_pending", json_object_new_boolean(true)) < 0)
        return NULL;
    if (rec->stopped_by_client &&
        object_add(rt, "stopped_by_client", json_object_new_boolean(true)) < 0)
        return NULL;
    return TAKE_PTR(obj);
}

char *container_record_serialize(const ContainerRecord *rec, size_t *ret_len)
{
    if (!rec)
        return NULL;
    _cleanup_json_ json_object *obj = record_to_json(rec);
    if (!obj)
        return NULL;
    return json_serialize(obj, ret_len);
}

/* Our own file, bounded by DEPOT_RECORD_MAX as a whole: no per-string limit
 * beyond that, so that anything we wrote can be read back. */
#define RECORD_STRING_MAX DEPOT_RECORD_MAX

static int parse_string_map(json_object *v, const char *what, StringMap *ret)
{
    if (json_expect_object(v, what, NULL) < 0)
        return -EBADMSG;
    json_object_object_foreach(v, key, val)
    {
        _cleanup_free_ char *s = NULL;
        if (!val || json_get_string(val, what, RECORD_STRING_MAX, &s, NULL) < 0)
            return -EBADMSG;
        int r = strmap_set(ret, key, s);
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_events(json_object *v, StringMap *ret)
{
    if (json_expect_array(v, "events", SIZE_MAX, NULL) < 0)
        return -EBADMSG;
    size_t n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *s = NULL;
        json_object *e = json_object_array_get_idx(v, i);
        if (!e || json_get_string(e, "events", RECORD_STRING_MAX, &s, NULL) < 0)
            return -EBADMSG;
        int r = strmap_set(ret, s, "");
        if (r < 0)
            return r;
    }
    return 0;
}

static int record_from_json(json_object *obj, ContainerRecord *rec)
{
    int r;

    if (json_expect_object(obj, "record", NULL) < 0)
        return -EBADMSG;

    uint64_t version;
    json_object *v = json_member(obj, "version");
    if (!v || json_get_u64(v, "version", UINT32_MAX, &version, NULL) < 0)
        return -EBADMSG;
    /* A newer daemon's record may mean something this one would misread. */
    if (version < 1 || version > DEPOT_RECORD_VERSION)
        return -EBADMSG;

    v = json_member(obj, "handle");
    if (!v || json_get_string(v, "handle", SPEC_HANDLE_MAX, &rec->handle, NULL) < 0)
        return -EBADMSG;
    if (spec_validate_handle(rec->handle, NULL) < 0)
        return -EBADMSG;

    _cleanup_free_ char *state = NULL;
    v = json_member(obj, "state");
    if (!v || json_get_string(v, "state", 64, &state, NULL) < 0)
        return -EBADMSG;
    if (container_state_from_string(state, &rec->state) < 0)
        return -EBADMSG;

    v = json_member(obj, "created_at");
    if (!v || json_get_i64(v, "created_at", &rec->created_at_ns, NULL) < 0)
        return -EBADMSG;
    v = json_member(obj, "grace_time");
    if (!v || json_get_i64(v, "grace_time", &rec->grace_time_ns, NULL) < 0)
        return -EBADMSG;
    if (rec->grace_time_ns < 0)
        return -EBADMSG;

    v = json_member(obj, "properties");
    if (!v)
        return -EBADMSG;
    r = parse_string_map(v, "properties", &rec->properties);
    if (r < 0)
        return r;

    v = json_member(obj, "events");
    if (!v)
        return -EBADMSG;
    r = parse_events(v, &rec->events);
    if (r < 0)
        return r;

    v = json_member(obj, "spec");
    if (!v)
        return -EBADMSG;
    r = spec_decode_container_spec(v, &rec->spec, NULL);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return -EBADMSG;

    json_object *rt = json_member(obj, "runtime");
    if (rt) {
        uint64_t u;
        if (json_expect_object(rt, "runtime", NULL) < 0)
            return -EBADMSG;
        if ((v = json_member(rt, "init_pid"))) {
            if (json_get_u64(v, "init_pid", INT32_MAX, &u, NULL) < 0)
                return -EBADMSG;
            rec->init_pid = (int32_t)u;
        }
        if ((v = json_member(rt, "init_start_time")) &&
            json_get_u64(v, "init_start_time", UINT64_MAX, &rec->init_start_time, NULL) < 0)
            return -EBADMSG;
        if ((v = json_member(rt, "uid_base"))) {
            if (json_get_u64(v, "uid_base", UINT32_MAX, &u, NULL) < 0)
                return -EBADMSG;
            rec->uid_base = (uint32_t)u;
        }
        if ((v = json_member(rt, "rootfs")) &&
            json_get_string(v, "rootfs", RECORD_STRING_MAX, &rec->rootfs, NULL) < 0)
            return -EBADMSG;
        if ((v = json_member(rt, "net")) && (r = net_from_json(v, &rec->net)) < 0)
            return r;
        if ((v = json_member(rt, "firewall_pending")) &&
            json_get_bool(v, "firewall_pending", &rec->firewall_pending, NULL) < 0)
            return -EBADMSG;
        if ((v = json_member(rt, "stopped_by_client")) &&
            json_get_bool(v, "stopped_by_client", &rec->stopped_by_client, NULL) < 0)
            return -EBADMSG;
    }
    return 0;
}

int container_record_parse(const char *buf, size_t len, ContainerRecord *ret)
{
    if (!buf || !ret)
        return -EINVAL;
    if (len > DEPOT_RECORD_MAX)
        return -EBADMSG;

    _cleanup_json_ json_object *obj = NULL;
    if (json_parse_strict(buf, len, &obj, NULL) < 0)
        return -EBADMSG;

    ContainerRecord rec = {0};
    int r = record_from_json(obj, &rec);
    if (r < 0) {
        container_record_done(&rec);
        return r;
    }
    *ret = rec;
    return 0;
}
