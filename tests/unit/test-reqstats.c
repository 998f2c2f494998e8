/* The request statistics: counters by route and status, cumulative histogram
 * buckets, the operations' histograms, and what is ignored. */
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/api/reqstats.h"

static const Route *route(const char *name)
{
    for (size_t i = 0; i < api_routes_count; i++)
        if (strcmp(api_routes[i].name, name) == 0)
            return &api_routes[i];
    return NULL;
}

static char *snapshot(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    reqstats_write(f);
    fclose(f);
    return text;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#define MS 1000000LL

int main(void)
{
    const Route *ping = route("Ping"), *create = route("Create");
    ok(ping && create, "the table has Ping and Create");
    char *text = snapshot();
    ok(has_line(text, "# TYPE cloche_http_requests_total counter"), "the counter family is typed");
    ok(!strstr(text, "route=\"Ping\""), "no request, no Ping series");
    ok(has_line(text, "cloche_container_create_duration_seconds_count 0"),
       "the operations' histograms are there from the start");
    free(text);

    reqstats_record(ping, 200, MS / 4);
    reqstats_record(ping, 200, 2 * MS);
    reqstats_record(ping, 404, 20000 * MS);
    reqstats_record(ping, 302, MS);
    reqstats_record(create, 200, 40000 * MS);
    reqstats_record(create, 500, MS);
    Route outside = *ping;
    reqstats_record(&outside, 200, MS); /* not in the table: ignored */
    reqstats_record(NULL, 200, MS);
    reqstats_record_operation(API_OP_RUN, 3 * MS);

    text = snapshot();
    ok(has_line(text, "cloche_http_requests_total{route=\"Ping\",status=\"200\"} 2"),
       "two Pings answered 200");
    ok(has_line(text, "cloche_http_requests_total{route=\"Ping\",status=\"404\"} 1"), "one 404");
    ok(has_line(text, "cloche_http_requests_total{route=\"Ping\",status=\"other\"} 1"),
       "an unlisted status counts as other");
    ok(has_line(text,
                "cloche_http_request_duration_seconds_bucket{route=\"Ping\",le=\"0.0005\"} 1"),
       "0.25 ms falls in the first bucket");
    ok(has_line(text, "cloche_http_request_duration_seconds_bucket{route=\"Ping\",le=\"0.001\"} 2"),
       "buckets are cumulative (1 ms)");
    ok(has_line(text,
                "cloche_http_request_duration_seconds_bucket{route=\"Ping\",le=\"0.0025\"} 3"),
       "2 ms is in le=0.0025");
    ok(has_line(text, "cloche_http_request_duration_seconds_bucket{route=\"Ping\",le=\"10\"} 3"),
       "20 s is not in le=10");
    ok(has_line(text, "cloche_http_request_duration_seconds_bucket{route=\"Ping\",le=\"30\"} 4"),
       "but in le=30");
    ok(has_line(text, "cloche_http_request_duration_seconds_count{route=\"Ping\"} 4"),
       "four Pings timed");
    ok(has_line(text, "cloche_http_request_duration_seconds_sum{route=\"Ping\"} 20.003250000"),
       "their sum in seconds");
    ok(has_line(text, "cloche_container_create_duration_seconds_bucket{le=\"30\"} 0"),
       "a 40 s create is in no finite bucket");
    ok(has_line(text, "cloche_container_create_duration_seconds_bucket{le=\"+Inf\"} 1"),
       "only in +Inf");
    ok(has_line(text, "cloche_container_create_duration_seconds_count 1"),
       "a failed Create is not a create");
    ok(has_line(text, "cloche_http_requests_total{route=\"Create\",status=\"500\"} 1"),
       "but is a request");
    ok(has_line(text, "cloche_process_run_duration_seconds_count 1"), "one Run recorded");
    ok(has_line(text, "cloche_container_destroy_duration_seconds_count 0"), "no destroy");
    free(text);
    return tap_done();
}
