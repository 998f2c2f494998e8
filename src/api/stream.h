/* Private to src/api: parsing a request head by hand, for the streaming routes
 * that libmicrohttpd cannot serve (their replies hijack the socket). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define HTTP_METHOD_MAX 16
#define HTTP_TARGET_MAX 8192
#define HTTP_HEADER_VALUE_MAX 1024

typedef struct HttpHead {
    char method[HTTP_METHOD_MAX];
    char path[HTTP_TARGET_MAX];  /* raw, without the query */
    char query[HTTP_TARGET_MAX]; /* raw, without '?' */
    int minor_version;           /* HTTP/1.x */
    long long content_length;    /* -1 when absent */
    bool chunked;
    bool expect_continue;
    char accept[HTTP_HEADER_VALUE_MAX];
    char authorization[HTTP_HEADER_VALUE_MAX];
    size_t head_len; /* bytes up to and including the blank line */
} HttpHead;

/* Parse "METHOD SP TARGET SP HTTP/1.x CRLF (header CRLF)* CRLF" in buf[0..len).
 * -EINVAL for a malformed request line, -EBADMSG for a malformed header. */
int http_head_parse(const char *buf, size_t len, HttpHead *ret);

/* Is this request for one of the four streaming routes that cloche serves itself?
 * Run with "Accept: application/x-ndjson" (curl's one-request form) included. */
bool stream_route_wanted(const HttpHead *head);
