/* Random UUIDs (RFC 4122 version 4). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "cloche/uuid.h"

int uuid_v4_string(char **ret)
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != sizeof(b))
        return -EIO;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *s = malloc(UUID_STRING_LEN + 1);
    if (!s)
        return -ENOMEM;
    snprintf(s, UUID_STRING_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    *ret = s;
    return 0;
}
