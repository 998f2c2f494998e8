/* Request counters by route and status, and duration histograms: fixed arrays of
 * atomics indexed by the route's place in api_routes, so recording takes no lock
 * and the HTTP threads never wait for a scrape. */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "cloche/clock.h"
#include "cloche/cleanup.h"
#include "reqstats.h"

#define ROUTES_MAX 64

/* The statuses cloche answers with; anything else counts as "other". */
static const int statuses[] = {200, 201, 204, 400, 401, 404, 405, 408,
                               409, 411, 413, 414, 431, 500, 501, 503};
#define N_STATUSES (ELEMENTSOF(statuses) + 1)

/* Upper bounds in seconds; the +Inf bucket is the count. */
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25,   0.5,   1,      2.5,   5,    10,    30};
#define N_BOUNDS ELEMENTSOF(bounds)

typedef struct Histogram {
    atomic_uint_fast64_t buckets[N_BOUNDS]; /* not cumulative: the first bound >= v */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_ns;
} Histogram;

static atomic_uint_fast64_t requests[ROUTES_MAX][N_STATUSES];
static Histogram latency[ROUTES_MAX];
static Histogram operations[API_OP_COUNT];

static const struct {
    const char *name;
    const char *help;
} operation_names[API_OP_COUNT] = {
    [API_OP_CREATE] = {"cloche_container_create_duration_seconds",
                       "Time to create a container (successful Create requests)."},
    [API_OP_DESTROY] = {"cloche_container_destroy_duration_seconds",
                        "Time to destroy a container (successful Destroy requests)."},
    [API_OP_RUN] = {"cloche_process_run_duration_seconds",
                    "Time from a Run request to the process started."},
};

static void histogram_add(Histogram *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    double s = (double)ns / 1e9;
    for (size_t i = 0; i < N_BOUNDS; i++)
        if (s <= bounds[i]) {
            atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
            break;
        }
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

static size_t status_index(int status)
{
    for (size_t i = 0; i < ELEMENTSOF(statuses); i++)
        if (statuses[i] == status)
            return i;
    return N_STATUSES - 1;
}

void reqstats_record(const Route *route, int status, int64_t ns)
{
    if (!route || route < api_routes || route >= api_routes + api_routes_count)
        return;
    size_t r = (size_t)(route - api_routes);
    if (r >= ROUTES_MAX)
        return;
    atomic_fetch_add_explicit(&requests[r][status_index(status)], 1, memory_order_relaxed);
    histogram_add(&latency[r], ns);
    if (status >= 200 && status < 300) {
        if (strcmp(route->name, "Create") == 0)
            histogram_add(&operations[API_OP_CREATE], ns);
        else if (strcmp(route->name, "Destroy") == 0)
            histogram_add(&operations[API_OP_DESTROY], ns);
    }
}

static _Thread_local struct {
    const Route *route;
    int64_t started;
} stream_request;

void reqstats_stream_begin(const Route *route)
{
    stream_request.route = route;
    stream_request.started = clock_monotonic_ns();
}

void reqstats_stream_reply(int status)
{
    if (!stream_request.route)
        return; /* none begun, or recorded already */
    reqstats_record(stream_request.route, status, clock_monotonic_ns() - stream_request.started);
    stream_request.route = NULL;
}

void reqstats_stream_end(void)
{
    stream_request.route = NULL;
}

void reqstats_record_operation(ApiOperation op, int64_t ns)
{
    if (op >= 0 && op < API_OP_COUNT)
        histogram_add(&operations[op], ns);
}

/* Label values here are route names and numbers: nothing to escape. */
static void histogram_write(FILE *out, const char *name, const char *labels, Histogram *h)
{
    uint64_t cumulative = 0;
    const char *sep = *labels ? "," : "";
    for (size_t i = 0; i < N_BOUNDS; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                (unsigned long long)cumulative);
    }
    uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
    if (count < cumulative) /* a record between the loads above */
        count = cumulative;
    fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)count);
    double sum = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
    fprintf(out,
            *labels ? "%s_sum{%s} %.9f\n%s_count{%s} %llu\n" : "%s_sum%s %.9f\n%s_count%s %llu\n",
            name, labels, sum, name, labels, (unsigned long long)count);
}

void reqstats_write(FILE *out)
{
    size_t n = api_routes_count < ROUTES_MAX ? api_routes_count : ROUTES_MAX;
    fputs("# HELP cloche_http_requests_total Requests answered, by route and status.\n"
          "# TYPE cloche_http_requests_total counter\n",
          out);
    for (size_t r = 0; r < n; r++)
        for (size_t s = 0; s < N_STATUSES; s++) {
            uint64_t v = atomic_load_explicit(&requests[r][s], memory_order_relaxed);
            if (!v)
                continue;
            char status[16];
            if (s < ELEMENTSOF(statuses))
                snprintf(status, sizeof(status), "%d", statuses[s]);
            else
                strcpy(status, "other");
            fprintf(out, "cloche_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                    api_routes[r].name, status, (unsigned long long)v);
        }
    fputs("# HELP cloche_http_request_duration_seconds Time to answer a request, by route.\n"
          "# TYPE cloche_http_request_duration_seconds histogram\n",
          out);
    for (size_t r = 0; r < n; r++) {
        if (!atomic_load_explicit(&latency[r].count, memory_order_relaxed))
            continue;
        char labels[96];
        snprintf(labels, sizeof(labels), "route=\"%s\"", api_routes[r].name);
        histogram_write(out, "cloche_http_request_duration_seconds", labels, &latency[r]);
    }
    for (size_t o = 0; o < API_OP_COUNT; o++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", operation_names[o].name,
                operation_names[o].help, operation_names[o].name);
        histogram_write(out, operation_names[o].name, "", &operations[o]);
    }
}
