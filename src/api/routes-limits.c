/* Current*Limits (Garden) and cloche's extensions: PUT .../limits/KIND to change a
 * limit live (the routes the original Garden API had, same bodies as the GETs),
 * GET .../limits/pids. */
#include <string.h>

#include "api-internal.h"
#include "cloche/json.h"
#include "cloche/wire.h"

static LimitKind route_limit_kind(const ApiRequest *req)
{
    const char *name = req->match.route->name;
    if (strstr(name, "Memory"))
        return LIMIT_KIND_MEMORY;
    if (strstr(name, "CPU"))
        return LIMIT_KIND_CPU;
    if (strstr(name, "Disk"))
        return LIMIT_KIND_DISK;
    if (strstr(name, "Bandwidth"))
        return LIMIT_KIND_BANDWIDTH;
    return LIMIT_KIND_PIDS;
}

static json_object *encode_limits(LimitKind kind, const Limits *l)
{
    switch (kind) {
    case LIMIT_KIND_MEMORY:
        return spec_encode_memory_limits(&l->memory);
    case LIMIT_KIND_CPU:
        return spec_encode_cpu_limits(&l->cpu);
    case LIMIT_KIND_DISK:
        return spec_encode_disk_limits(&l->disk);
    case LIMIT_KIND_BANDWIDTH:
        return spec_encode_bandwidth_limits(&l->bandwidth);
    default:
        return spec_encode_pid_limits(&l->pid);
    }
}

int route_get_limits(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    Limits l;
    container_get_limits(c, &l);
    req->reply = encode_limits(route_limit_kind(req), &l);
    return req->reply ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}

int route_set_limits(ApiRequest *req)
{
    _cleanup_json_ json_object *body = NULL;
    int r = api_request_json(req, &body);
    if (r < 0)
        return r;
    LimitKind kind = route_limit_kind(req);
    Limits in = {0};
    switch (kind) {
    case LIMIT_KIND_MEMORY:
        r = spec_decode_memory_limits(body, &in.memory, &req->error);
        if (r >= 0 && in.memory.limit_in_bytes == 0)
            r = api_bad_request(&req->error, "A memory limit of 0 bytes is not a limit; "
                                             "give 'limit_in_bytes'");
        break;
    case LIMIT_KIND_CPU:
        r = spec_decode_cpu_limits(body, &in.cpu, &req->error);
        break;
    case LIMIT_KIND_DISK:
        r = spec_decode_disk_limits(body, &in.disk, &req->error);
        break;
    case LIMIT_KIND_BANDWIDTH:
        r = spec_decode_bandwidth_limits(body, &in.bandwidth, &req->error);
        break;
    default:
        r = spec_decode_pid_limits(body, &in.pid, &req->error);
        break;
    }
    if (r < 0)
        return r;
    Container *c;
    r = api_request_container(req, &c);
    if (r < 0)
        return r;
    r = container_set_limits(req->garden, c, kind, &in, &req->error);
    if (r < 0)
        return r;
    Limits now;
    container_get_limits(c, &now);
    req->reply = encode_limits(kind, &now);
    return req->reply ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}
