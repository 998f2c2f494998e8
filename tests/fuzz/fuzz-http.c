/* libFuzzer: what cloched parses by hand from a connection: the request head,
 * the chunked body decoder (fed in two pieces split at the first input byte),
 * the route matcher and the query parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/api/stream.h"
#include "cloche/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    HttpHead head;
    if (http_head_parse(buf, size, &head) == 0) {
        RouteMatch m;
        char allow[64];
        ApiError e;
        if (router_match(api_routes, api_routes_count, head.method, head.path, &m, allow,
                         sizeof(allow), &e) == 0)
            route_match_done(&m);
        StringMap q = STRING_MAP_INIT;
        if (url_parse_query(head.query, &q, &e) == 0)
            strmap_clear(&q);
        (void)stream_route_wanted(&head);
    }

    /* The same bytes as a chunked body, in two pieces. */
    memcpy(buf, data, size);
    HttpChunkDecoder d = {.state = HTTP_CHUNK_SIZE};
    size_t split = data[0] % size, out = 0;
    if (http_chunk_decode(&d, buf, split, &out) == 0)
        (void)http_chunk_decode(&d, buf + split, size - split, &out);
    free(buf);
    return 0;
}
