/* Configuration files as long options (conffile.h). */
#include "cloche/conffile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloche/cleanup.h"
#include "cloche/fileio.h"

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int push(char ***args, size_t *n, const char *a, const char *b)
{
    if (*n + 2 > CONFFILE_MAX_ARGS)
        return -E2BIG;
    char **grown = realloc(*args, (*n + 3) * sizeof(char *));
    if (!grown)
        return -ENOMEM;
    *args = grown;
    grown[*n] = NULL;
    if (asprintf(&grown[*n], "--%s", a) < 0)
        return -ENOMEM;
    (*n)++;
    grown[*n] = NULL;
    if (b) {
        if (!(grown[*n] = strdup(b)))
            return -ENOMEM;
        (*n)++;
        grown[*n] = NULL;
    }
    return 0;
}

int conffile_read(const char *path, const char *const *known, const int *takes_value,
                  char ***ret_args, size_t *ret_n, unsigned *ret_line, char *errbuf, size_t errlen)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    *ret_line = 0;
    int r = read_file_at(AT_FDCWD, path, CONFFILE_MAX_BYTES, &text, &len);
    if (r < 0) {
        snprintf(errbuf, errlen, "%s", r == -EFBIG ? "the file is too large" : strerror(-r));
        return r;
    }
    if (memchr(text, '\0', len)) {
        snprintf(errbuf, errlen, "the file contains a NUL byte");
        return -EINVAL;
    }
    char **args = calloc(1, sizeof(char *));
    size_t n = 0;
    if (!args)
        return -ENOMEM;
    unsigned lineno = 0;
    char *save = NULL;
    r = 0;
    /* strtok_r would skip empty lines and miscount; split by hand. */
    for (char *line = text; line && r == 0;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        line = next;
        if (!*s)
            continue;
        size_t klen = strcspn(s, " \t=");
        char *value = s + klen;
        if (*value) {
            *value++ = '\0';
            value = trim(value);
            if (*value == '=')
                value = trim(value + 1);
        }
        const char *key = s;
        if (strncmp(key, "--", 2) == 0)
            key += 2;
        int idx = -1;
        for (int i = 0; known[i]; i++)
            if (strcmp(known[i], key) == 0)
                idx = i;
        if (idx < 0) {
            snprintf(errbuf, errlen, "unknown option '%s'", key);
            r = -EINVAL;
        } else if (takes_value[idx] && !*value) {
            snprintf(errbuf, errlen, "option '%s' needs a value", key);
            r = -EINVAL;
        } else if (!takes_value[idx] && *value) {
            snprintf(errbuf, errlen, "option '%s' takes no value", key);
            r = -EINVAL;
        } else {
            r = push(&args, &n, key, takes_value[idx] ? value : NULL);
            if (r == -E2BIG)
                snprintf(errbuf, errlen, "too many options (at most %d)", CONFFILE_MAX_ARGS / 2);
        }
    }
    (void)save;
    if (r < 0) {
        *ret_line = lineno;
        strv_free(args);
        return r;
    }
    *ret_args = args;
    *ret_n = n;
    return 0;
}
