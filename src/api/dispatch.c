/* Request dispatch shared by the libmicrohttpd adapter and the streaming handler:
 * run the handler, turn its result into a status and a JSON body, and release
 * what the request acquired (which restarts the container's grace countdown). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api-internal.h"
#include "cloche/json.h"
#include "cloche/wire.h"
#include "cloche/clock.h"
#include "reqstats.h"

int api_request_container(ApiRequest *req, Container **ret)
{
    if (req->container) {
        *ret = req->container;
        return 0;
    }
    const char *handle = req->match.params[0];
    int r = spec_validate_handle(handle, &req->error);
    if (r < 0)
        return r;
    r = garden_acquire(req->garden, handle, &req->container, &req->error);
    if (r < 0)
        return r;
    *ret = req->container;
    return 0;
}

int api_request_json(ApiRequest *req, json_object **ret)
{
    return json_parse_strict(req->body ? req->body : "", req->body_len, ret, &req->error);
}

char *api_error_serialize(const ApiError *e, size_t *ret_len)
{
    _cleanup_json_ json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "Type", json_object_new_string(e->type ? e->type : ""));
    json_object_object_add(o, "Message", json_object_new_string(e->message));
    json_object_object_add(o, "Handle", json_object_new_string(e->handle));
    json_object_object_add(o, "ProcessID", json_object_new_string(e->process_id));
    json_object_object_add(o, "Binary", json_object_new_string(""));
    return json_serialize(o, ret_len);
}

void api_dispatch(ApiRequest *req, int *ret_status, char **ret_body, size_t *ret_len)
{
    api_error_clear(&req->error);
    int64_t started = clock_monotonic_ns();
    int r = req->match.route->handler(req);
    char *body = NULL;
    size_t len = 0;
    int status = 200;
    if (r >= 0 && req->raw_reply) {
        body = TAKE_PTR(req->raw_reply);
        len = req->raw_len;
        status = req->status ? req->status : 200;
    } else if (r >= 0 && req->reply) {
        body = json_serialize(req->reply, &len);
        status = req->status ? req->status : 200;
    } else {
        if (r >= 0 || req->error.status == 0)
            api_internal_error(&req->error, r < 0 ? r : -EIO, "Request failed");
        status = req->error.status;
        body = api_error_serialize(&req->error, &len);
    }
    if (req->container) {
        garden_release(req->garden, req->container);
        req->container = NULL;
    }
    reqstats_record(req->match.route, status, clock_monotonic_ns() - started);
    *ret_status = status;
    *ret_body = body;
    *ret_len = body ? len : 0;
}

void api_request_done(ApiRequest *req)
{
    if (req->container)
        garden_release(req->garden, req->container);
    json_object_put(req->reply);
    free(req->raw_reply);
    req->raw_reply = NULL;
    route_match_done(&req->match);
    strmap_clear(&req->query);
    req->container = NULL;
    req->reply = NULL;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

bool api_connection_needs_token(int fd, const ApiConfig *cfg)
{
    if (cfg->insecure_no_auth)
        return false;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return true; /* fail closed */
    if (ss.ss_family == AF_UNIX)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) != 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return false;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] != 127;
    }
    return true;
}

bool api_token_ok(const char *authorization, const ApiConfig *cfg)
{
    if (!cfg->auth_token || !authorization)
        return false;
    static const char prefix[] = "Bearer ";
    if (strncasecmp(authorization, prefix, sizeof(prefix) - 1) != 0)
        return false;
    const char *given = authorization + sizeof(prefix) - 1;
    size_t gl = strlen(given), tl = strlen(cfg->auth_token);
    /* Constant time in the token's length: compare every byte regardless. */
    unsigned char diff = gl != tl;
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)(cfg->auth_token[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}
