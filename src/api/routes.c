/* The route table: Garden's 28 routes (protocol §2) and cloche's extensions, one handler each.
 * Handlers validate input first (400), then look the container up (404), then act. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "cloche/hashmap.h"
#include "cloche/json.h"
#include "cloche/wire.h"

#define BULK_HANDLES_MAX 10000

static void hashmap_freep(HashMap **m)
{
    hashmap_free(*m);
}
#define BULK_THREADS 3 /* besides the request's own */

int api_reply_empty(ApiRequest *req)
{
    req->reply = json_object_new_object();
    return req->reply ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}

/* Routes whose feature lands with a later part of cloche: validate what can be
 * validated, then say so plainly. */
static int not_implemented(ApiRequest *req)
{
    return api_errorf(&req->error, -EOPNOTSUPP, 501, GARDEN_ERR_GENERIC,
                      "%s is not implemented by this cloche yet", req->match.route->name);
}

static int route_ping(ApiRequest *req)
{
    return api_reply_empty(req);
}

static void add_u64_omitempty(json_object *o, const char *key, uint64_t v)
{
    if (v)
        json_object_object_add(o, key, json_new_u64(v));
}

static int route_capacity(ApiRequest *req)
{
    Capacity cap;
    int r = garden_capacity(req->garden, &cap);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to read the host's capacity");
    json_object *o = json_object_new_object();
    if (!o)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    add_u64_omitempty(o, "memory_in_bytes", cap.memory_in_bytes);
    add_u64_omitempty(o, "disk_in_bytes", cap.disk_in_bytes);
    add_u64_omitempty(o, "schedulable_disk_in_bytes", cap.schedulable_disk_in_bytes);
    add_u64_omitempty(o, "max_containers", cap.max_containers);
    json_object_object_add(o, "cloche_committed_memory_in_bytes",
                           json_new_u64(cap.committed_memory_in_bytes));
    json_object_object_add(o, "cloche_committed_disk_in_bytes",
                           json_new_u64(cap.committed_disk_in_bytes));
    json_object_object_add(o, "cloche_containers", json_new_u64(cap.containers));
    json_object_object_add(o, "cloche_image_store_bytes", json_new_u64(cap.image_store_bytes));
    json_object_object_add(o, "cloche_image_store_layers", json_new_u64(cap.image_store_layers));
    req->reply = o;
    return 0;
}

static int route_list(ApiRequest *req)
{
    char **handles = NULL;
    size_t n = 0;
    int r = garden_list(req->garden, &req->query, &handles, &n);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to list containers");
    json_object *o = json_object_new_object();
    json_object *a = json_object_new_array_ext((int)n);
    for (size_t i = 0; o && a && i < n; i++)
        json_object_array_add(a, json_object_new_string(handles[i]));
    strv_free(handles);
    if (!o || !a) {
        json_object_put(o);
        json_object_put(a);
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    }
    json_object_object_add(o, "Handles", a);
    req->reply = o;
    return 0;
}

static int route_create(ApiRequest *req)
{
    _cleanup_json_ json_object *body = NULL;
    int r = api_request_json(req, &body);
    if (r < 0)
        return r;
    ContainerSpec spec;
    r = spec_decode_container_spec(body, &spec, &req->error);
    if (r < 0)
        return r;
    _cleanup_free_ char *handle = NULL;
    r = garden_create(req->garden, &spec, &handle, &req->error);
    container_spec_done(&spec);
    if (r < 0)
        return r;
    json_object *o = json_object_new_object();
    if (!o)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    json_object_object_add(o, "Handle", json_object_new_string(handle));
    req->reply = o;
    return 0;
}

static json_object *strv_to_array(char **v)
{
    json_object *a = json_object_new_array();
    for (char **p = v; a && p && *p; p++)
        json_object_array_add(a, json_object_new_string(*p));
    return a;
}

static json_object *strmap_to_object(const StringMap *m)
{
    json_object *o = json_object_new_object();
    STRMAP_FOREACH (i, m) {
        if (o)
            json_object_object_add(o, m->keys[i], json_object_new_string(m->values[i]));
    }
    return o;
}

/* ContainerInfo (protocol §3.5) from the model. Network fields stay empty until
 * containers are networked. */
static json_object *mapped_ports_to_json(const ContainerNetInfo *net)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; a && i < net->n_mapped; i++) {
        json_object *m = json_object_new_object();
        if (!m)
            break;
        json_object_object_add(m, "HostPort", json_new_u64(net->mapped[i].host_port));
        json_object_object_add(m, "ContainerPort", json_new_u64(net->mapped[i].container_port));
        json_object_array_add(a, m);
    }
    return a;
}

static json_object *info_to_json(const ContainerSnapshot *s, const ContainerNetInfo *net,
                                 char **process_ids)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    const char *state = s->state == CONTAINER_STATE_STOPPED ? "stopped" : "active";
    json_object_object_add(o, "State", json_object_new_string(state));
    json_object_object_add(o, "Events", strv_to_array(s->events));
    json_object_object_add(o, "HostIP", json_object_new_string(net->host_ip));
    json_object_object_add(o, "ContainerIP", json_object_new_string(net->container_ip));
    json_object_object_add(o, "ContainerIPv6", json_object_new_string(""));
    json_object_object_add(o, "ExternalIP", json_object_new_string(net->external_ip));
    json_object_object_add(o, "ContainerPath", json_object_new_string(s->container_path));
    json_object_object_add(o, "ProcessIDs", strv_to_array(process_ids));
    json_object_object_add(o, "Properties", strmap_to_object(&s->properties));
    json_object_object_add(o, "MappedPorts", mapped_ports_to_json(net));
    return o;
}

/* The zero ContainerInfo Go writes beside a per-handle error. */
static json_object *info_zero_json(void)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    static const char *const strings[] = {"State",         "HostIP",     "ContainerIP",
                                          "ContainerIPv6", "ExternalIP", "ContainerPath"};
    for (size_t i = 0; i < ELEMENTSOF(strings); i++)
        json_object_object_add(o, strings[i], json_object_new_string(""));
    json_object_object_add(o, "Events", NULL);
    json_object_object_add(o, "ProcessIDs", NULL);
    json_object_object_add(o, "Properties", NULL);
    json_object_object_add(o, "MappedPorts", NULL);
    return o;
}

static int container_info(ApiRequest *req, Container *c, json_object **ret, ApiError *err)
{
    ContainerSnapshot s;
    int r = container_snapshot(req->garden, c, &s);
    if (r >= 0 && (r = container_service_properties(req->garden, c, &s.properties)) < 0)
        container_snapshot_done(&s);
    if (r < 0)
        return api_internal_error(err, r, "Failed to read container '%s'", container_handle(c));
    ContainerNetInfo net;
    r = container_net_info(req->garden, c, &net);
    if (r < 0) {
        container_snapshot_done(&s);
        return api_internal_error(err, r, "Failed to read container '%s'", container_handle(c));
    }
    char **ids = NULL;
    (void)container_process_ids(req->garden, c, &ids);
    *ret = info_to_json(&s, &net, ids);
    strv_free(ids);
    free(net.mapped);
    container_snapshot_done(&s);
    return *ret ? 0 : api_internal_error(err, -ENOMEM, "Failed to build the reply");
}

static int route_info(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    return container_info(req, c, &req->reply, &req->error);
}

static json_object *error_to_json(const ApiError *e)
{
    size_t len;
    _cleanup_free_ char *text = api_error_serialize(e, &len);
    return text ? json_tokener_parse(text) : NULL;
}

/* The entry of one handle in a bulk reply: {"<key>":value,"Err":null}, or the zero
 * value and the error. entry_fn fills *ret_value for a found container. */
typedef int (*BulkEntryFn)(ApiRequest *req, Container *c, json_object **ret_value, ApiError *err);

typedef struct BulkJob {
    ApiRequest *req;
    const char *key;
    BulkEntryFn entry_fn;
    json_object *(*zero_fn)(void);
    char **handles;
    json_object **entries;
    size_t n;
    atomic_size_t next; /* the next handle to take */
} BulkJob;

static json_object *bulk_entry(BulkJob *job, const char *h)
{
    ApiError err;
    api_error_clear(&err);
    Container *c = NULL;
    json_object *value = NULL;
    int r = spec_validate_handle(h, &err);
    if (r >= 0)
        r = garden_find(job->req->garden, h, &c, &err);
    if (r >= 0) {
        r = job->entry_fn(job->req, c, &value, &err);
        container_unref(c);
    }
    json_object *entry = json_object_new_object();
    if (entry) {
        json_object_object_add(entry, job->key, r >= 0 ? value : job->zero_fn());
        json_object_object_add(entry, "Err", r >= 0 ? NULL : error_to_json(&err));
    } else {
        json_object_put(value);
    }
    return entry;
}

static void *bulk_worker(void *userdata)
{
    BulkJob *job = userdata;
    for (size_t i; (i = atomic_fetch_add(&job->next, 1)) < job->n;)
        job->entries[i] = bulk_entry(job, job->handles[i]);
    return NULL;
}

/* BulkInfo and BulkMetrics: one entry per distinct handle of ?handles=a,b; they
 * do not touch grace timers. No handles gives {}. Entries are computed by a few
 * threads, so one slow container does not hold up the others. */
int api_bulk_handles(ApiRequest *req, char **ret_copy, char ***ret_handles, size_t *ret_n)
{
    *ret_copy = NULL;
    *ret_handles = NULL;
    *ret_n = 0;
    const char *list = strmap_get(&req->query, "handles");
    if (!list || !*list)
        return 0;
    _cleanup_free_ char *copy = strdup(list);
    if (!copy)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    size_t count = 0, n = 0;
    _cleanup_free_ char **handles = NULL;
    _cleanup_(hashmap_freep) HashMap *seen = NULL;
    if (hashmap_new(&seen) < 0)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    char *save = NULL;
    for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
        if (++count > BULK_HANDLES_MAX)
            return api_bad_request(&req->error, "Too many handles (at most %d)", BULK_HANDLES_MAX);
        int k = hashmap_put(seen, h, h);
        if (k == -EEXIST)
            continue;
        if (k < 0)
            return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
        if ((n & (n - 1)) == 0) { /* grow at 0, 1, 2, 4, 8, ... */
            char **grown = realloc(handles, (n ? 2 * n : 1) * sizeof(char *));
            if (!grown)
                return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
            handles = grown;
        }
        handles[n++] = h;
    }
    *ret_copy = TAKE_PTR(copy);
    *ret_handles = TAKE_PTR(handles);
    *ret_n = n;
    return 0;
}

static int bulk_reply(ApiRequest *req, const char *key, BulkEntryFn entry_fn,
                      json_object *(*zero_fn)(void))
{
    json_object *o = json_object_new_object();
    if (!o)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    req->reply = o;
    _cleanup_free_ char *copy = NULL;
    _cleanup_free_ char **handles = NULL;
    size_t n;
    int r = api_bulk_handles(req, &copy, &handles, &n);
    if (r < 0 || n == 0)
        return r;
    _cleanup_free_ json_object **entries = calloc(n + 1, sizeof(json_object *));
    if (!entries)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    BulkJob job = {.req = req,
                   .key = key,
                   .entry_fn = entry_fn,
                   .zero_fn = zero_fn,
                   .handles = handles,
                   .entries = entries,
                   .n = n};
    atomic_init(&job.next, 0);
    pthread_t threads[BULK_THREADS];
    size_t started = 0;
    for (; n > 16 && started < BULK_THREADS; started++)
        if (pthread_create(&threads[started], NULL, bulk_worker, &job) != 0)
            break;
    bulk_worker(&job);
    for (size_t t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    for (size_t i = 0; i < n; i++)
        if (entries[i])
            json_object_object_add(o, handles[i], entries[i]);
    return 0;
}

static int bulk_info_entry(ApiRequest *req, Container *c, json_object **ret, ApiError *err)
{
    return container_info(req, c, ret, err);
}

static int route_bulk_info(ApiRequest *req)
{
    return bulk_reply(req, "Info", bulk_info_entry, info_zero_json);
}

static int route_destroy(ApiRequest *req)
{
    int r = spec_validate_handle(req->match.params[0], &req->error);
    if (r < 0)
        return r;
    r = garden_destroy(req->garden, req->match.params[0], &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}

static int route_stop(ApiRequest *req)
{
    _cleanup_json_ json_object *body = NULL;
    int r = api_request_json(req, &body);
    if (r < 0)
        return r;
    r = json_expect_object(body, "body", &req->error);
    if (r < 0)
        return r;
    bool kill = false;
    json_object *k = json_member(body, "kill");
    if (k && (r = json_get_bool(k, "kill", &kill, &req->error)) < 0)
        return r;
    Container *c;
    r = api_request_container(req, &c);
    if (r < 0)
        return r;
    r = container_stop(req->garden, c, kill, &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}

/* Routes that need only a known container before they can say "not yet". */
/* A streaming route reached through libmicrohttpd (never, in practice). */
static int route_streaming_only(ApiRequest *req)
{
    return not_implemented(req);
}

static int route_container_pending(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    return not_implemented(req);
}

/* routes-metrics.c writes its entries without building trees. */
static int route_bulk_metrics(ApiRequest *req)
{
    return api_bulk_metrics(req);
}

static int route_set_grace_time(ApiRequest *req)
{
    _cleanup_json_ json_object *body = NULL;
    int r = api_request_json(req, &body);
    if (r < 0)
        return r;
    int64_t ns;
    r = json_get_i64(body, "grace_time", &ns, &req->error);
    if (r < 0)
        return r;
    if (ns < 0)
        return api_bad_request(&req->error, "Invalid value for 'grace_time': %lld is negative",
                               (long long)ns);
    Container *c;
    r = api_request_container(req, &c);
    if (r < 0)
        return r;
    r = container_set_grace_time(req->garden, c, ns, &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}

static int route_properties(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    StringMap props = STRING_MAP_INIT;
    r = container_get_properties(c, &props);
    if (r >= 0)
        r = container_service_properties(req->garden, c, &props);
    if (r < 0)
        return api_internal_error(&req->error, r, "Failed to read properties");
    req->reply = strmap_to_object(&props);
    strmap_clear(&props);
    return req->reply ? 0 : api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
}

static int route_property(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    _cleanup_free_ char *value = NULL;
    const char *key = req->match.params[1];
    if (strncmp(key, "cloche.service.", 15) == 0) {
        /* The service's live state (doc/api.md), not stored properties. */
        StringMap live = STRING_MAP_INIT;
        r = container_service_properties(req->garden, c, &live);
        const char *v = strmap_get(&live, key);
        value = v ? strdup(v) : NULL;
        strmap_clear(&live);
        if (r < 0 || (v && !value))
            return api_internal_error(&req->error, r < 0 ? r : -ENOMEM, "Failed to read property");
    }
    if (!value)
        r = container_get_property(c, key, &value, &req->error);
    if (r < 0)
        return r;
    json_object *o = json_object_new_object();
    if (!o)
        return api_internal_error(&req->error, -ENOMEM, "Failed to build the reply");
    json_object_object_add(o, "value", json_object_new_string(value));
    req->reply = o;
    return 0;
}

static int route_set_property(ApiRequest *req)
{
    _cleanup_json_ json_object *body = NULL;
    int r = api_request_json(req, &body);
    if (r < 0)
        return r;
    r = json_expect_object(body, "body", &req->error);
    if (r < 0)
        return r;
    _cleanup_free_ char *value = NULL;
    json_object *v = json_member(body, "value");
    if (v)
        r = json_get_string(v, "value", SPEC_PROPERTY_VALUE_MAX, &value, &req->error);
    else
        value = strdup("");
    if (r < 0)
        return r;
    if (!value)
        return api_internal_error(&req->error, -ENOMEM, "Failed to read the body");
    Container *c;
    r = api_request_container(req, &c);
    if (r < 0)
        return r;
    r = container_set_property(req->garden, c, req->match.params[1], value, &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}

static int route_remove_property(ApiRequest *req)
{
    Container *c;
    int r = api_request_container(req, &c);
    if (r < 0)
        return r;
    r = container_remove_property(req->garden, c, req->match.params[1], &req->error);
    if (r < 0)
        return r;
    return api_reply_empty(req);
}

#define C "/containers/:handle"
/* Every route but ROUTE_INLINE ones runs off the HTTP threads (http.c), so /ping
 * never waits; ROUTE_SLOW marks those that wait by design (kernel work, or a
 * create or stop of the same container to finish). */
const Route api_routes[] = {
    {"Ping", "GET", "/ping", ROUTE_INLINE, route_ping},
    {"Capacity", "GET", "/capacity", 0, route_capacity},
    {"List", "GET", "/containers", 0, route_list},
    {"Create", "POST", "/containers", ROUTE_JSON_BODY | ROUTE_SLOW, route_create},
    {"BulkInfo", "GET", "/containers/bulk_info", 0, route_bulk_info},
    {"BulkMetrics", "GET", "/containers/bulk_metrics", ROUTE_SLOW, route_bulk_metrics},
    {"Info", "GET", C "/info", ROUTE_CONTAINER, route_info},
    {"Destroy", "DELETE", C, ROUTE_CONTAINER | ROUTE_SLOW, route_destroy},
    {"Stop", "PUT", C "/stop", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW, route_stop},
    /* Served by the daemon's own handler (files.c), like the process routes. */
    {"StreamIn", "PUT", C "/files", ROUTE_CONTAINER | ROUTE_STREAMING, route_container_pending},
    {"StreamOut", "GET", C "/files", ROUTE_CONTAINER | ROUTE_STREAMING, route_container_pending},
    {"CurrentBandwidthLimits", "GET", C "/limits/bandwidth", ROUTE_CONTAINER, route_get_limits},
    {"CurrentCPULimits", "GET", C "/limits/cpu", ROUTE_CONTAINER, route_get_limits},
    {"CurrentDiskLimits", "GET", C "/limits/disk", ROUTE_CONTAINER, route_get_limits},
    {"CurrentMemoryLimits", "GET", C "/limits/memory", ROUTE_CONTAINER, route_get_limits},
    {"NetIn", "POST", C "/net/in", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW, route_net_in},
    {"NetOut", "POST", C "/net/out", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW, route_net_out},
    {"BulkNetOut", "POST", C "/net/out/bulk", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW,
     route_net_out},
    {"Run", "POST", C "/processes", ROUTE_CONTAINER | ROUTE_STREAMING, route_container_pending},
    {"Attach", "GET", C "/processes/:pid", ROUTE_CONTAINER | ROUTE_STREAMING,
     route_container_pending},
    {"Stdout", "GET", C "/processes/:pid/attaches/:streamid/stdout",
     ROUTE_CONTAINER | ROUTE_STREAMING, route_container_pending},
    {"Stderr", "GET", C "/processes/:pid/attaches/:streamid/stderr",
     ROUTE_CONTAINER | ROUTE_STREAMING, route_container_pending},
    {"SetGraceTime", "PUT", C "/grace_time", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW,
     route_set_grace_time},
    {"Properties", "GET", C "/properties", ROUTE_CONTAINER, route_properties},
    {"Property", "GET", C "/properties/:key", ROUTE_CONTAINER, route_property},
    {"SetProperty", "PUT", C "/properties/:key", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW,
     route_set_property},
    {"RemoveProperty", "DELETE", C "/properties/:key", ROUTE_CONTAINER | ROUTE_SLOW,
     route_remove_property},
    {"Metrics", "GET", C "/metrics", ROUTE_CONTAINER | ROUTE_SLOW, route_metrics},
    /* cloche's extensions */
    {"MetricsHistory", "GET", C "/metrics/history", ROUTE_CONTAINER, route_metrics_history},
#ifdef CLOCHE_TEST_HOOKS
    {"TestHistory", "POST", C "/cloche/test/history", ROUTE_CONTAINER | ROUTE_SLOW,
     route_test_history},
#endif
    {"Prometheus", "GET", "/metrics", ROUTE_SLOW, route_prometheus},
    {"Host", "GET", "/cloche/host", ROUTE_SLOW, route_host},
    {"Dashboard", "GET", "/ui/", ROUTE_INLINE, route_ui},
    {"DashboardRedirect", "GET", "/ui", ROUTE_INLINE, route_ui_redirect},
    {"CurrentPidLimits", "GET", C "/limits/pids", ROUTE_CONTAINER, route_get_limits},
    {"SetBandwidthLimits", "PUT", C "/limits/bandwidth",
     ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW, route_set_limits},
    {"SetCPULimits", "PUT", C "/limits/cpu", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW,
     route_set_limits},
    {"SetDiskLimits", "PUT", C "/limits/disk", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW,
     route_set_limits},
    {"SetMemoryLimits", "PUT", C "/limits/memory", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW,
     route_set_limits},
    {"SetPidLimits", "PUT", C "/limits/pids", ROUTE_CONTAINER | ROUTE_JSON_BODY | ROUTE_SLOW,
     route_set_limits},
    {"ImageList", "GET", "/cloche/images", 0, route_images_list},
    {"ImageRemove", "DELETE", "/cloche/images", ROUTE_SLOW, route_image_remove},
    {"ImagePull", "POST", "/cloche/images/pull", ROUTE_STREAMING, route_streaming_only},
    {"ImageImport", "PUT", "/cloche/images/:name", ROUTE_STREAMING, route_streaming_only},
    {"ImageExport", "GET", "/cloche/images/:name/archive", ROUTE_STREAMING, route_streaming_only},
    {"Commit", "POST", C "/cloche/commit", ROUTE_CONTAINER | ROUTE_SLOW, route_container_commit},
    {"ContainerLogs", "GET", C "/cloche/logs",
     ROUTE_CONTAINER | ROUTE_STREAMING | ROUTE_BUFFERED | ROUTE_SLOW, route_container_logs},
    {"Events", "GET", "/cloche/events", ROUTE_STREAMING, route_streaming_only},
    {"Start", "PUT", C "/cloche/start", ROUTE_CONTAINER | ROUTE_SLOW, route_start},
    {"Restart", "PUT", C "/cloche/restart", ROUTE_CONTAINER | ROUTE_SLOW, route_restart},
};
#undef C
const size_t api_routes_count = ELEMENTSOF(api_routes);
