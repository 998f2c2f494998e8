/* cloche build: the files of a COPY or ADD as one tar (build-context.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ContextPack {
    int fd;          /* the tar (a memfd), at its start */
    uint64_t size;   /* its length */
    char *dir;       /* the StreamIn destination: dest, or its parent for one file */
    char digest[65]; /* hex SHA-256 of the content (not the times) */
} ContextPack;

/* Pack sources (relative to context; wildcards expand) for dest (absolute) as
 * docker's COPY does: a directory's contents go into dest; one file becomes dest
 * unless dest ends in '/'; several sources need a directory. add: a local tar
 * archive is unpacked into dest. where names the step in messages. */
int context_pack(const char *context, char **sources, size_t n_sources, const char *dest, bool add,
                 const char *where, ContextPack *ret);
void context_pack_done(ContextPack *p);
