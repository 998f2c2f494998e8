/* HashMap: string keys (owned copies) to borrowed void * values. Not thread-safe;
 * callers lock. Chained buckets, resized at load factor 1. */
#pragma once

#include <stddef.h>

typedef struct HashMap HashMap;

int hashmap_new(HashMap **ret);
/* Frees the map and its key copies, not the values. NULL-safe. */
void hashmap_free(HashMap *m);
/* -EEXIST if the key is present. */
int hashmap_put(HashMap *m, const char *key, void *value);
void *hashmap_get(const HashMap *m, const char *key);
/* Returns the removed value or NULL. */
void *hashmap_remove(HashMap *m, const char *key);
size_t hashmap_size(const HashMap *m);

/* Iteration: *state starts at 0; returns 0 and fills key/value until the end (-ENOENT).
 * The map must not change during iteration. */
int hashmap_iterate(const HashMap *m, size_t *state, const char **ret_key, void **ret_value);
