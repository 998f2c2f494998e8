/* The route table and its matcher. Paths are matched segment by segment on the
 * escaped path, as Garden's Go server (rata/pat) does; each :param is then decoded
 * with query-unescape rules ("+" is a space, %XX a byte). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cloche/error.h"
#include "cloche/strmap.h"

#define ROUTE_PARAMS_MAX 4
#define ROUTE_SEGMENTS_MAX 8

typedef enum RouteFlags {
    ROUTE_CONTAINER = 1u << 0, /* :handle is the first param; pauses its grace timer */
    ROUTE_STREAMING = 1u << 1, /* served by the daemon's own handler (stream.c) */
    ROUTE_JSON_BODY = 1u << 2, /* the request carries a JSON body */
    ROUTE_SLOW = 1u << 3,      /* may block (kernel work, waits): run off the HTTP threads */
    ROUTE_INLINE = 1u << 4,    /* never waits for anything: answered on the HTTP thread */
    ROUTE_BUFFERED = 1u << 5,  /* streaming, but a later request on a kept-alive connection is
                                  answered by the handler as an ordinary (bounded) reply */
} RouteFlags;

struct ApiRequest;
typedef int (*RouteHandler)(struct ApiRequest *req);

typedef struct Route {
    const char *name;    /* Garden's route name: "Ping", "Create", ... */
    const char *method;  /* "GET", "POST", "PUT", "DELETE" */
    const char *pattern; /* "/containers/:handle/properties/:key" */
    unsigned flags;
    RouteHandler handler;
} Route;

typedef struct RouteMatch {
    const Route *route;
    char *params[ROUTE_PARAMS_MAX]; /* decoded, owned */
    size_t n_params;
} RouteMatch;

/* The daemon's route table. */
extern const Route api_routes[];
extern const size_t api_routes_count;

/* Match method and raw path (no query) against table. On success fills *ret.
 * Failures: 404 "No route for METHOD PATH", 405 "Method METHOD not allowed on PATH"
 * with the allowed methods written to allow (comma separated, e.g. "GET, DELETE"),
 * 400 for a path parameter with bad percent-encoding or a NUL byte. */
int router_match(const Route *table, size_t n, const char *method, const char *path,
                 RouteMatch *ret, char *allow, size_t allow_size, ApiError *reterr);
void route_match_done(RouteMatch *m);

/* Value of one hexadecimal digit, or -1. */
int url_hex_digit(char c);

/* Decode a query-escaped component (len bytes): "+" -> space, %XX -> byte.
 * -EINVAL for a malformed escape or a decoded NUL. */
int url_query_unescape(const char *s, size_t len, char **ret);

/* Parse a raw query string ("a=1&b=x+y") into *ret: keys and values decoded, the
 * first value of a repeated key wins, a key without "=" has value "". */
int url_parse_query(const char *query, StringMap *ret, ApiError *reterr);
