/* Start and restart (cloche extensions): PUT /containers/H/cloche/start and
 * PUT /containers/H/cloche/restart (body optional: {"kill":bool}, as Stop's). */
#include "api-internal.h"
#include "cloche/json.h"

int route_start(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    r = container_start(req->garden, c, &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}

int route_restart(ApiRequest *req)
{
    bool kill = false;
    if (req->body_len > 0) {
        _cleanup_json_ json_object *body = NULL;
        int r = api_request_json(req, &body);
        if (r < 0)
            return r;
        r = json_expect_object(body, "body", &req->error);
        if (r < 0)
            return r;
        json_object *k = json_member(body, "kill");
        if (k && (r = json_get_bool(k, "kill", &kill, &req->error)) < 0)
            return r;
    }
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    r = container_restart(req->garden, c, kill, &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}
