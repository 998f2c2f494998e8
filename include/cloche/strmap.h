/* StringMap: an owned string->string map kept sorted by key (byte order), so that
 * iteration order is the order Go's encoding/json writes map keys in. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct StringMap {
    size_t n;
    size_t allocated;
    char **keys;   /* owned, sorted */
    char **values; /* owned */
} StringMap;

#define STRING_MAP_INIT                                                                            \
    {                                                                                              \
        0                                                                                          \
    }

/* Set key to value (both copied). Returns 0 or -ENOMEM. */
int strmap_set(StringMap *m, const char *key, const char *value);
/* Borrowed pointer to the value, or NULL. */
const char *strmap_get(const StringMap *m, const char *key);
/* Returns true if the key was present. */
bool strmap_remove(StringMap *m, const char *key);
/* Deep copy into *ret (which must be empty). */
int strmap_copy(const StringMap *src, StringMap *ret);
void strmap_clear(StringMap *m);

#define STRMAP_FOREACH(i, m) for (size_t i = 0; i < (m)->n; i++)
