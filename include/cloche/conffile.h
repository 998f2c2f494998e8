/* A configuration file whose every line is a long command-line option:
 *
 *     # comment
 *     depot = /var/lib/cloche/depot
 *     bind-ip 127.0.0.1
 *     allow-host-access
 *
 * becomes "--depot" "/var/lib/cloche/depot" "--bind-ip" "127.0.0.1"
 * "--allow-host-access", to be parsed ahead of the real command line (so a flag
 * given there wins over the file for single-valued options). */
#pragma once

#include <stddef.h>

#define CONFFILE_MAX_BYTES (256u << 10)
#define CONFFILE_MAX_ARGS 1024

/* Read path into a NULL-terminated argument list (malloc'd, strings included;
 * free with strv_free). Each key must be in `known` (NULL-terminated names
 * without "--"); `takes_value` tells whether it needs a value (index matching
 * known). On a bad line: -EINVAL and *ret_line set to its number (1-based),
 * with a message in errbuf. */
int conffile_read(const char *path, const char *const *known, const int *takes_value,
                  char ***ret_args, size_t *ret_n, unsigned *ret_line, char *errbuf, size_t errlen);
