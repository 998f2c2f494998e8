/* libFuzzer: the control lines a client sends on a hijacked Run/Attach connection
 * (protocol §5.3), split at '\n' as the relay splits them, each decoded by
 * api_control_decode. Whatever the bytes, a line decodes to one known action with
 * values in range, and nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/api/attach.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        ProcControl c;
        int r = api_control_decode(p, len, &c);
        if (r == 0) {
            if (c.kind > PROC_CONTROL_SIGNAL)
                abort();
            if (c.kind == PROC_CONTROL_STDIN && (!c.data || c.len > len))
                abort();
            if (c.kind != PROC_CONTROL_STDIN && c.data)
                abort();
            if (c.kind == PROC_CONTROL_SIGNAL && (c.signal < 1 || c.signal > 64))
                abort();
        }
        proc_control_done(&c);
        p += len + 1;
    }
    return 0;
}
