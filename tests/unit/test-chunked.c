/* Chunked request bodies (StreamIn): whole, split at every byte, extensions and
 * trailers, and the malformed streams that must be refused. */
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#include "../../src/api/stream.h"

/* Decode text fed in pieces of `step` bytes; returns the decoder's result and the
 * body in out. */
static int decode(const char *text, size_t step, char *out, size_t *ret_len, bool *ret_done)
{
    HttpChunkDecoder d = {.state = HTTP_CHUNK_SIZE};
    size_t len = strlen(text), total = 0;
    char piece[256];
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        memcpy(piece, text + off, n);
        size_t got;
        int r = http_chunk_decode(&d, piece, n, &got);
        if (r < 0)
            return r;
        memcpy(out + total, piece, got);
        total += got;
    }
    *ret_len = total;
    *ret_done = d.state == HTTP_CHUNK_DONE;
    return 0;
}

int main(void)
{
    static const struct {
        const char *wire, *body;
    } good[] = {
        {"5\r\nhello\r\n0\r\n\r\n", "hello"},
        {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
        {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
        {"a;name=value\r\n0123456789\r\n0;last\r\n\r\n", "0123456789"},
        {"3 \r\nabc\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\n", "abc"},
        {"0\r\n\r\n", ""},
        {"00000002\r\n\r\n\r\n0\r\n\r\n", "\r\n"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        for (size_t step = 1; step <= strlen(good[i].wire); step++) {
            char out[256];
            size_t len = 0;
            bool done = false;
            int r = decode(good[i].wire, step, out, &len, &done);
            if (r < 0 || !done || len != strlen(good[i].body) ||
                memcmp(out, good[i].body, len) != 0) {
                ok(false, "case %zu in pieces of %zu", i, step);
                goto next;
            }
        }
        ok(true, "case %zu decodes in pieces of every size", i);
    next:;
    }

    /* What follows the last chunk is not body. */
    {
        char buf[] = "2\r\nok\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        HttpChunkDecoder d = {.state = HTTP_CHUNK_SIZE};
        size_t len;
        is_int(http_chunk_decode(&d, buf, strlen(buf), &len), 0, "bytes after the end");
        ok(d.state == HTTP_CHUNK_DONE && len == 2 && memcmp(buf, "ok", 2) == 0,
           "the body ends with the last chunk");
    }
    /* An unfinished stream is not done. */
    {
        char out[64];
        size_t len;
        bool done = true;
        is_int(decode("5\r\nhel", 3, out, &len, &done), 0, "a partial stream");
        ok(!done && len == 3, "is not done and gave what it had");
    }

    static const char *const bad[] = {
        "zz\r\n",               /* not hex */
        "\r\n",                 /* no size */
        ";ext\r\n",             /* extension without a size */
        "5\nhello\r\n",         /* bare LF after the size */
        "5\r\nhelloX\r\n",      /* data longer than its size */
        "5\r\nhello\rX",        /* CR not followed by LF */
        "1000000000000000\r\n", /* 16 hex digits */
        "-1\r\n",               /* negative */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[256];
        size_t len;
        bool done;
        is_int(decode(bad[i], 1, out, &len, &done), -EBADMSG, "malformed case %zu is refused", i);
    }
    /* An extension line without end is cut off at 4 KiB. */
    {
        size_t n = 5000;
        char *wire = malloc(n + 1);
        memset(wire, 'x', n);
        memcpy(wire, "1;", 2);
        wire[n] = '\0';
        size_t len;
        HttpChunkDecoder d = {.state = HTTP_CHUNK_SIZE};
        is_int(http_chunk_decode(&d, wire, n, &len), -EBADMSG, "an endless extension is refused");
        free(wire);
    }
    return tap_done();
}
