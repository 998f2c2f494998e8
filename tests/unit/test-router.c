/* Router: the real route table, escaped-path matching, 404/405, param decoding. */
#include "tap.h"

#include <stdlib.h>

#include "cloche/router.h"

static const Route *match(const char *method, const char *path, RouteMatch *m, char *allow,
                          ApiError *e)
{
    api_error_clear(e);
    if (router_match(api_routes, api_routes_count, method, path, m, allow, 64, e) < 0)
        return NULL;
    return m->route;
}

/* Test builds add routes of their own (routes-metrics.c's history filler). */
#ifdef CLOCHE_TEST_HOOKS
#define TEST_HOOK_ROUTES 1
#else
#define TEST_HOOK_ROUTES 0
#endif

int main(void)
{
    RouteMatch m;
    ApiError e;
    char allow[64];
    const Route *r;

    is_int(api_routes_count, 49 + TEST_HOOK_ROUTES,
           "the table has Garden's 28 routes and 21 of cloche's");

    static const struct {
        const char *method, *path, *name;
    } cases[] = {
        {"GET", "/ping", "Ping"},
        {"GET", "/capacity", "Capacity"},
        {"GET", "/cloche/images", "ImageList"},
        {"DELETE", "/cloche/images", "ImageRemove"},
        {"POST", "/cloche/images/pull", "ImagePull"},
        {"GET", "/cloche/events", "Events"},
        {"PUT", "/containers/h1/cloche/start", "Start"},
        {"PUT", "/containers/h1/cloche/restart", "Restart"},
        {"PUT", "/cloche/images/app:v1", "ImageImport"},
        {"GET", "/cloche/images/app:v1/archive", "ImageExport"},
        {"POST", "/containers/h/cloche/commit", "Commit"},
        {"GET", "/containers/h/cloche/logs", "ContainerLogs"},
        {"GET", "/containers", "List"},
        {"POST", "/containers", "Create"},
        {"GET", "/containers/bulk_info", "BulkInfo"},
        {"GET", "/containers/bulk_metrics", "BulkMetrics"},
        {"GET", "/containers/h/info", "Info"},
        {"DELETE", "/containers/h", "Destroy"},
        {"DELETE", "/containers/bulk_info", "Destroy"},
        {"PUT", "/containers/h/stop", "Stop"},
        {"PUT", "/containers/h/files", "StreamIn"},
        {"GET", "/containers/h/files", "StreamOut"},
        {"GET", "/containers/h/limits/bandwidth", "CurrentBandwidthLimits"},
        {"GET", "/containers/h/limits/cpu", "CurrentCPULimits"},
        {"GET", "/containers/h/limits/disk", "CurrentDiskLimits"},
        {"GET", "/containers/h/limits/memory", "CurrentMemoryLimits"},
        {"POST", "/containers/h/net/in", "NetIn"},
        {"POST", "/containers/h/net/out", "NetOut"},
        {"POST", "/containers/h/net/out/bulk", "BulkNetOut"},
        {"POST", "/containers/h/processes", "Run"},
        {"GET", "/containers/h/processes/p", "Attach"},
        {"GET", "/containers/h/processes/p/attaches/1/stdout", "Stdout"},
        {"GET", "/containers/h/processes/p/attaches/1/stderr", "Stderr"},
        {"PUT", "/containers/h/grace_time", "SetGraceTime"},
        {"GET", "/containers/h/properties", "Properties"},
        {"GET", "/containers/h/properties/k", "Property"},
        {"PUT", "/containers/h/properties/k", "SetProperty"},
        {"DELETE", "/containers/h/properties/k", "RemoveProperty"},
        {"GET", "/containers/h/metrics", "Metrics"},
        {"GET", "/containers/h/limits/pids", "CurrentPidLimits"},
        {"GET", "/containers/h/metrics/history", "MetricsHistory"},
        {"GET", "/metrics", "Prometheus"},
        {"GET", "/cloche/host", "Host"},
        {"GET", "/ui/", "Dashboard"},
        {"GET", "/ui", "DashboardRedirect"},
        {"PUT", "/containers/h/limits/memory", "SetMemoryLimits"},
        {"PUT", "/containers/h/limits/cpu", "SetCPULimits"},
        {"PUT", "/containers/h/limits/pids", "SetPidLimits"},
        {"PUT", "/containers/h/limits/disk", "SetDiskLimits"},
        {"PUT", "/containers/h/limits/bandwidth", "SetBandwidthLimits"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        r = match(cases[i].method, cases[i].path, &m, allow, &e);
        ok(r && strcmp(r->name, cases[i].name) == 0, "%s %s -> %s", cases[i].method, cases[i].path,
           cases[i].name);
        if (r)
            route_match_done(&m);
    }

    r = match("GET", "/containers/h%20x/properties/a+b%2Fc", &m, allow, &e);
    ok(r != NULL, "escaped params match");
    if (r) {
        is_int(m.n_params, 2, "two params");
        is_str(m.params[0], "h x", "%%20 decodes to a space");
        is_str(m.params[1], "a b/c", "+ is a space and %%2F a slash, as Go rata does");
        route_match_done(&m);
    }

    r = match("GET", "/containers/a/b/info", &m, allow, &e);
    ok(!r && e.status == 404, "a raw slash splits the handle: 404");
    r = match("GET", "/nope", &m, allow, &e);
    ok(!r && e.status == 404, "unknown path: 404");
    is_str(e.message, "No route for GET /nope", "404 message");
    r = match("GET", "/ping/", &m, allow, &e);
    ok(!r && e.status == 404, "trailing slash: 404");
    r = match("GET", "/", &m, allow, &e);
    ok(!r && e.status == 404, "root: 404");
    r = match("GET", "", &m, allow, &e);
    ok(!r && e.status == 404, "empty path: 404");
    r = match("GET", "/containers//info", &m, allow, &e);
    ok(!r && e.status == 404, "empty handle segment: 404");
    r = match("GET", "/a/b/c/d/e/f/g/h/i/j", &m, allow, &e);
    ok(!r && e.status == 404, "too many segments: 404");

    r = match("POST", "/ping", &m, allow, &e);
    ok(!r && e.status == 405, "wrong method: 405");
    is_str(allow, "GET", "Allow lists GET");
    r = match("PUT", "/containers/bulk_info", &m, allow, &e);
    ok(!r && e.status == 405, "PUT bulk_info: 405");
    is_str(allow, "GET, DELETE", "Allow lists both routes sharing the path");
    r = match("HEAD", "/ping", &m, allow, &e);
    ok(!r && e.status == 405, "HEAD is not routed: 405 as the Go server");
    r = match("PATCH", "/containers/h/properties/k", &m, allow, &e);
    ok(!r && e.status == 405, "PATCH property: 405");
    is_str(allow, "GET, PUT, DELETE", "Allow for a property");

    r = match("GET", "/containers/%zz/info", &m, allow, &e);
    ok(!r && e.status == 400, "bad escape: 400");
    r = match("GET", "/containers/%4/info", &m, allow, &e);
    ok(!r && e.status == 400, "truncated escape: 400");
    r = match("GET", "/containers/a%00b/info", &m, allow, &e);
    ok(!r && e.status == 400, "decoded NUL: 400");

    char *out;
    ok(url_query_unescape("a%2Cb+c", 7, &out) == 0, "query unescape");
    is_str(out, "a,b c", "query unescape result");
    free(out);
    ok(url_query_unescape("%", 1, &out) < 0, "lone percent refused");
    ok(url_query_unescape("%a", 2, &out) < 0, "short escape refused");

    StringMap q = STRING_MAP_INIT;
    ok(url_parse_query("handles=a%2Cb&x=1&x=2&flag&=v&&sp=a+b", &q, &e) == 0, "query parses");
    is_str(strmap_get(&q, "handles"), "a,b", "comma decoded");
    is_str(strmap_get(&q, "x"), "1", "first value of a repeated key wins");
    is_str(strmap_get(&q, "flag"), "", "key without '=' has an empty value");
    is_str(strmap_get(&q, "sp"), "a b", "'+' in a value is a space");
    strmap_clear(&q);
    ok(url_parse_query("a=%zz", &q, &e) < 0 && e.status == 400, "bad query escape: 400");
    ok(url_parse_query(NULL, &q, &e) == 0 && q.n == 0, "no query");
    strmap_clear(&q);
    return tap_done();
}
