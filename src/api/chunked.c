/* Chunked request bodies (RFC 9112 §7.1), decoded as they arrive. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "cloche/router.h"
#include "stream.h"

#define CHUNK_LINE_MAX 4096      /* chunk-size line with extensions, trailer line */
#define CHUNK_SIZE_DIGITS_MAX 15 /* < 2^60 bytes per chunk */

int http_chunk_decode(HttpChunkDecoder *d, char *buf, size_t len, size_t *ret_len)
{
    size_t out = 0;
    for (size_t i = 0; i < len && d->state != HTTP_CHUNK_DONE;) {
        char c = buf[i];
        switch (d->state) {
        case HTTP_CHUNK_SIZE: {
            int v = url_hex_digit(c);
            if (v >= 0) {
                if (++d->digits > CHUNK_SIZE_DIGITS_MAX)
                    return -EBADMSG;
                d->remaining = d->remaining * 16 + (uint64_t)v;
            } else if (d->digits && (c == ';' || c == ' ' || c == '\t')) {
                d->state = HTTP_CHUNK_EXTENSION;
                d->line = 0;
            } else if (d->digits && c == '\r') {
                d->state = HTTP_CHUNK_SIZE_LF;
            } else {
                return -EBADMSG;
            }
            i++;
            break;
        }
        case HTTP_CHUNK_EXTENSION:
            if (c == '\r')
                d->state = HTTP_CHUNK_SIZE_LF;
            else if (++d->line > CHUNK_LINE_MAX)
                return -EBADMSG;
            i++;
            break;
        case HTTP_CHUNK_SIZE_LF:
            if (c != '\n')
                return -EBADMSG;
            d->state = d->remaining ? HTTP_CHUNK_DATA : HTTP_CHUNK_TRAILER;
            i++;
            break;
        case HTTP_CHUNK_DATA: {
            size_t n = len - i;
            if (n > d->remaining)
                n = (size_t)d->remaining;
            memmove(buf + out, buf + i, n);
            out += n;
            i += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = HTTP_CHUNK_DATA_CR;
            break;
        }
        case HTTP_CHUNK_DATA_CR:
            if (c != '\r')
                return -EBADMSG;
            d->state = HTTP_CHUNK_DATA_LF;
            i++;
            break;
        case HTTP_CHUNK_DATA_LF:
            if (c != '\n')
                return -EBADMSG;
            d->state = HTTP_CHUNK_SIZE;
            d->digits = 0;
            i++;
            break;
        case HTTP_CHUNK_TRAILER:
            d->state = c == '\r' ? HTTP_CHUNK_END_LF : HTTP_CHUNK_TRAILER_LINE;
            d->line = 0;
            i++;
            break;
        case HTTP_CHUNK_TRAILER_LINE:
            if (c == '\r')
                d->state = HTTP_CHUNK_TRAILER_LF;
            else if (++d->line > CHUNK_LINE_MAX)
                return -EBADMSG;
            i++;
            break;
        case HTTP_CHUNK_TRAILER_LF:
            if (c != '\n')
                return -EBADMSG;
            d->state = HTTP_CHUNK_TRAILER;
            i++;
            break;
        case HTTP_CHUNK_END_LF:
            if (c != '\n')
                return -EBADMSG;
            d->state = HTTP_CHUNK_DONE;
            i++;
            break;
        case HTTP_CHUNK_DONE:
            break;
        }
    }
    *ret_len = out;
    return 0;
}
