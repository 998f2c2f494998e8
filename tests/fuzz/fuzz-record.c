/* libFuzzer: the depot's state-file parser (a file a crash or an operator may
 * have left in any shape), and the serializer on what parses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/depot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    ContainerRecord rec;
    if (container_record_parse(buf, size, &rec) == 0) {
        size_t n;
        free(container_record_serialize(&rec, &n));
        container_record_done(&rec);
    }
    free(buf);
    return 0;
}
