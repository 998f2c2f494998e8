/* Private to src/api: the request context handlers see and the reply helpers. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "cloche/api.h"
#include "cloche/error.h"
#include "cloche/garden.h"
#include "cloche/json.h"
#include "cloche/router.h"
#include "cloche/strmap.h"

typedef struct ApiRequest {
    Garden *garden;
    const ApiConfig *cfg;
    const char *method;
    const char *path;
    RouteMatch match;
    StringMap query;
    const char *accept; /* the Accept header, or NULL (owned by the connection) */
    const char *body;   /* NUL-terminated copy, body_len bytes */
    size_t body_len;
    Container *container; /* acquired by api_request_container(), released after */

    /* reply */
    int status;
    json_object *reply;
    ApiError error;
    /* A reply that is not JSON (text, HTML): malloc'd, taken by the dispatcher,
     * with its Content-Type; location adds a Location header (redirects). */
    char *raw_reply;
    size_t raw_len;
    const char *reply_type;
    const char *location;
} ApiRequest;

/* Validate the :handle param (400), then acquire the container (404); the
 * reference is released after the reply is built. */
int api_request_container(ApiRequest *req, Container **ret);
/* Parse the body as strict JSON (400 on malformed input). */
int api_request_json(ApiRequest *req, json_object **ret);
/* Reply {} */
int api_reply_empty(ApiRequest *req);

/* routes-net.c */
int route_net_in(ApiRequest *req);
int route_net_out(ApiRequest *req);

/* routes.c: the distinct handles of ?handles=a,b in their first order, pointing
 * into *ret_copy (both malloc'd); no handles gives 0 of them; 400 past the limit. */
int api_bulk_handles(ApiRequest *req, char **ret_copy, char ***ret_handles, size_t *ret_n);

/* routes-metrics.c */
int api_bulk_metrics(ApiRequest *req);
json_object *api_metrics_to_json(const ContainerMetrics *m);
/* The same object's text, as json_serialize writes it (without the newline). */
void api_metrics_write(JsonOut *o, const ContainerMetrics *m);
int api_container_metrics(ApiRequest *req, Container *c, bool may_cache, json_object **ret,
                          ApiError *err);
int route_metrics(ApiRequest *req);
int route_metrics_history(ApiRequest *req);
#ifdef CLOCHE_TEST_HOOKS
int route_test_history(ApiRequest *req);
#endif

/* routes-logs.c: GET .../cloche/logs without follow, as an ordinary reply. */
int route_container_logs(ApiRequest *req);
/* routes-images.c */
int route_images_list(ApiRequest *req);
int route_image_remove(ApiRequest *req);
int route_container_commit(ApiRequest *req);

/* routes-prometheus.c: GET /metrics */
int route_prometheus(ApiRequest *req);
/* routes-host.c: GET /cloche/host */
int route_host(ApiRequest *req);
/* routes-ui.c: GET /ui/ and the redirect from /ui */
int route_ui(ApiRequest *req);
int route_ui_redirect(ApiRequest *req);

/* routes-lifecycle.c: PUT /containers/H/cloche/start and /cloche/restart */
int route_start(ApiRequest *req);
int route_restart(ApiRequest *req);

/* routes-limits.c */
int route_get_limits(ApiRequest *req);
int route_set_limits(ApiRequest *req);

/* Run the matched route's handler and release what the request acquired. Always
 * leaves a status and a serialized body (JSON + "\n") in *ret_body. */
void api_dispatch(ApiRequest *req, int *ret_status, char **ret_body, size_t *ret_len);
void api_request_done(ApiRequest *req);

/* The Garden error object (five keys) for e, serialized. */
char *api_error_serialize(const ApiError *e, size_t *ret_len);
const char *http_reason(int status);

/* Authorization: does a connection on fd need a bearer token? (Only TCP whose
 * local address is not loopback.) */
bool api_connection_needs_token(int fd, const ApiConfig *cfg);
/* Constant-time check of an "Authorization" header value against the token. */
bool api_token_ok(const char *authorization, const ApiConfig *cfg);

/* Streaming routes: the daemon's own handler for one connection. Returns true if
 * fd was handed on (a stdout/stderr stream given to its attachment); otherwise
 * the caller closes it. */
bool api_stream_serve(int fd, const ApiConfig *cfg, Garden *garden);
