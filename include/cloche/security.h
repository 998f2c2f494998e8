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

#include <linux/filter.h>

#include "cloche/confine.h"

typedef struct SecurityProfile {
    struct sock_fprog filter; /* owned */
} SecurityProfile;

/* Compile the filter; 0 or a negative errno. */
int security_profile_build(SecurityProfile *ret);
void security_profile_clear(SecurityProfile *p);
/* Write the filter to dirfd/name atomically (mode 0600). */
int security_profile_save(const SecurityProfile *p, int dirfd, const char *name);
