/* NetIn, NetOut and BulkNetOut (protocol §2.1): decode, validate, then the model. */
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "cloche/json.h"
#include "cloche/wire.h"

int route_net_in(ApiRequest *req)
{
    _cleanup_json_ json_object *body = NULL;
    int r = api_request_json(req, &body);
    if (r < 0)
        return r;
    NetInSpec in;
    r = spec_decode_netin(body, &in, &req->error);
    if (r < 0)
        return r;
    Container *c;
    r = api_request_container(req, &c);
    if (r < 0)
        return r;
    NetInSpec made;
    r = container_net_in(req->garden, c, &in, &made, &req->error);
    if (r < 0)
        return r;
    req->reply = spec_encode_netin(&made);
    return req->reply ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}

int route_net_out(ApiRequest *req)
{
    _cleanup_json_ json_object *body = NULL;
    int r = api_request_json(req, &body);
    if (r < 0)
        return r;
    NetOutRule *rules = NULL;
    size_t n = 0;
    if (strcmp(req->match.route->name, "BulkNetOut") == 0) {
        r = spec_decode_netout_rules(body, &rules, &n, &req->error);
    } else {
        rules = calloc(1, sizeof(NetOutRule));
        if (!rules)
            return api_internal_error(&req->error, -ENOMEM, "Out of memory");
        n = 1;
        r = spec_decode_netout_rule(body, &rules[0], &req->error);
        if (r < 0) {
            free(rules);
            return r;
        }
    }
    if (r < 0)
        return r;
    Container *c;
    r = api_request_container(req, &c);
    if (r >= 0)
        r = container_net_out(req->garden, c, rules, n, &req->error);
    netout_rules_free(rules, n);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}
