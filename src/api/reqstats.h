/* Private to src/api: the daemon's own request counters and duration histograms,
 * lock-free (atomics), written as Prometheus text by the /metrics route. */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "cloche/router.h"

typedef enum ApiOperation {
    API_OP_CREATE,
    API_OP_DESTROY,
    API_OP_RUN,
    API_OP_COUNT,
} ApiOperation;

/* One request of a route of api_routes answered with status, taking ns. Requests of
 * Create and Destroy that succeeded also count as those operations. */
void reqstats_record(const Route *route, int status, int64_t ns);
/* The streamed routes, served on the daemon's own handler (one thread per
 * connection): the thread names the route it matched, and the first reply head
 * it sends (an error or the start of the stream) records the request with the
 * time to that head, so a long stream does not count as a slow request. */
void reqstats_stream_begin(const Route *route);
void reqstats_stream_reply(int status);
void reqstats_stream_end(void);
/* One operation that succeeded (Run: the process was started). */
void reqstats_record_operation(ApiOperation op, int64_t ns);
/* The families cloche_http_requests_total, cloche_http_request_duration_seconds and
 * the operations' duration histograms. */
void reqstats_write(FILE *out);
