/* Private to src/api: parsing a request head by hand, for the streaming routes
 * that libmicrohttpd cannot serve (their replies hijack the socket) or that must
 * not hold one of its pool threads (StreamIn/StreamOut). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloche/api.h"
#include "cloche/error.h"
#include "cloche/garden.h"
#include "cloche/router.h"

#define HTTP_METHOD_MAX 16
#define HTTP_TARGET_MAX 8192                /* the path */
#define HTTP_QUERY_MAX API_MAX_HEADER_BYTES /* bulk calls list many handles */
#define HTTP_HEADER_VALUE_MAX 1024

typedef struct HttpHead {
    char method[HTTP_METHOD_MAX];
    char path[HTTP_TARGET_MAX]; /* raw, without the query */
    char query[HTTP_QUERY_MAX]; /* raw, without '?' */
    int minor_version;          /* HTTP/1.x */
    long long content_length;   /* -1 when absent */
    bool chunked;
    bool expect_continue;
    char accept[HTTP_HEADER_VALUE_MAX];
    char content_type[HTTP_HEADER_VALUE_MAX];
    bool has_content_type;
    char authorization[HTTP_HEADER_VALUE_MAX];
    size_t head_len; /* bytes up to and including the blank line */
} HttpHead;

#define STREAM_DRAIN_MS 2000         /* lingering after an early reply: at most this long */
#define STREAM_DRAIN_MAX (64u << 20) /* and at most this many bytes read away */

/* stream-reply.c: read away (bounded) what a client still sends after an early
 * reply, so that closing does not reset the connection before the reply is read. */
void stream_drain(int fd);

/* Parse "METHOD SP TARGET SP HTTP/1.x CRLF (header CRLF)* CRLF" in buf[0..len).
 * -EINVAL for a malformed request line, -EBADMSG for a malformed header. */
int http_head_parse(const char *buf, size_t len, HttpHead *ret);

/* Is this request for a route that cloche serves itself: the four streaming
 * process routes (Run's curl form included) and StreamIn/StreamOut? */
bool stream_route_wanted(const HttpHead *head);

/* A chunked request body, decoded incrementally (files.c). Start from
 * (HttpChunkDecoder){.state = HTTP_CHUNK_SIZE}. */
typedef enum HttpChunkState {
    HTTP_CHUNK_SIZE,
    HTTP_CHUNK_EXTENSION,
    HTTP_CHUNK_SIZE_LF,
    HTTP_CHUNK_DATA,
    HTTP_CHUNK_DATA_CR,
    HTTP_CHUNK_DATA_LF,
    HTTP_CHUNK_TRAILER,
    HTTP_CHUNK_TRAILER_LINE,
    HTTP_CHUNK_TRAILER_LF,
    HTTP_CHUNK_END_LF,
    HTTP_CHUNK_DONE,
} HttpChunkState;

typedef struct HttpChunkDecoder {
    HttpChunkState state;
    uint64_t remaining; /* of the current chunk's data, or its size being read */
    unsigned digits;
    size_t line; /* bytes of the current extension or trailer line */
} HttpChunkDecoder;

/* Decode buf[0..len) in place: the body bytes end up at buf[0..*ret_len). -EBADMSG
 * for a malformed stream (sizes of more than 15 hex digits, lines over 4 KiB, bare
 * LFs); state is HTTP_CHUNK_DONE after the last chunk and its trailers, and
 * anything after that is ignored (one request per connection). */
int http_chunk_decode(HttpChunkDecoder *d, char *buf, size_t len, size_t *ret_len);

/* stream-reply.c: a Garden error reply with a Content-Length, in the head's HTTP
 * version (1.1 if head is NULL). */
void stream_reply_error(int fd, const HttpHead *head, const ApiError *e);

/* StreamIn/StreamOut (files.c): the head has been read and the route matched;
 * the body, if any, is still on fd. Replies, then the caller closes fd. */
void api_files_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden);
/* routes-images.c: POST /cloche/images/pull, progress as ndjson. */
void api_image_pull_serve(int fd, const HttpHead *head, Garden *garden);
/* GET /cloche/images/NAME/archive: an OCI archive of the image. */
void api_image_export_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden);
/* routes-events.c: GET /cloche/events, ndjson (and followed with follow=true). */
void api_events_serve(int fd, const HttpHead *head, Garden *garden);
/* PUT /cloche/images/NAME: the body, an image archive, imported. */
void api_image_import_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden);
/* routes-logs.c: GET /containers/H/cloche/logs, ndjson or text, optionally followed. */
void api_logs_serve(int fd, const HttpHead *head, const RouteMatch *m, Garden *garden);
