/* The seccomp profile of unprivileged containers (doc/security.md), compiled
 * with libseccomp once per daemon start: an allow-list with default action
 * EPERM for the x86_64, i386 and x32 ABIs. clone and unshare pass only without
 * namespace flags, clone3 answers ENOSYS (so libc falls back to clone, whose
 * flags the filter can see), personality takes only guardian's values.
 *
 * The compiled program is handed to cloche-init's clone child in memory and to
 * cloche-shim and cloche-tar as a file (security_profile_save), which they read
 * with confine_filter_load(). */
#pragma once

#include <stdbool.h>
#include <linux/filter.h>

#include "cloche/confine.h"

typedef struct SecurityProfile {
    struct sock_fprog filter; /* owned */
    bool compact;             /* the shorter program of seccomp-compact.h */
    unsigned reference_len;   /* libseccomp's program's length */
} SecurityProfile;

/* Compile the filter (with x32's part where this kernel has x32); 0 or a
 * negative errno. libseccomp compiles it; where the shorter program of
 * seccomp-compact.h decides exactly alike, that one is kept. */
int security_profile_build(SecurityProfile *ret);
/* The same with or without x32's part, whatever the kernel (for tests). */
int security_profile_build_for(SecurityProfile *ret, bool x32);
void security_profile_clear(SecurityProfile *p);
/* Write the filter to dirfd/name atomically (mode 0600). */
int security_profile_save(const SecurityProfile *p, int dirfd, const char *name);
