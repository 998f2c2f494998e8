/* Random (version 4) UUIDs: container handles and process ids. */
#pragma once

#define UUID_STRING_LEN 36

/* A new UUIDv4 in its 36-character text form, malloc'd. 0, -EIO (no
 * randomness) or -ENOMEM. */
int uuid_v4_string(char **ret);
