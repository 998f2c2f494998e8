/* Confinement of a container's processes: the capability sets, no_new_privs and
 * the seccomp filter, applied by cloche-init's clone child, by every process
 * cloche-shim starts and by cloche-tar (doc/security.md).
 *
 * This part links into all three and into the daemon, so it uses only libc and
 * raw system calls; the confine_apply_* functions are async-signal-safe (they
 * run between clone and exec). The filter itself is compiled once per daemon
 * start by security.h (libseccomp) and reaches the helpers as a file of
 * struct sock_filter, read with confine_filter_load() before they fork.
 *
 * Order in a child: confine_drop_bounding() while still root with every
 * capability, confine_load_filter() (which needs CAP_SYS_ADMIN unless
 * no_new_privs is set, so before the change of ids), the change of ids, then
 * confine_set_caps(). Functions return 0 or a negative errno. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>

/* guardian's 14: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
 * SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP. */
#define CONFINE_CAPS_UNPRIVILEGED                                                                  \
    ((1ull << 0) | (1ull << 1) | (1ull << 3) | (1ull << 4) | (1ull << 5) | (1ull << 6) |           \
     (1ull << 7) | (1ull << 8) | (1ull << 10) | (1ull << 13) | (1ull << 18) | (1ull << 27) |       \
     (1ull << 29) | (1ull << 31))
/* guardian's privileged set: CAP_CHOWN through CAP_AUDIT_READ (0..37). */
#define CONFINE_CAPS_PRIVILEGED 0x3fffffffffull

/* Largest filter accepted from a file (the kernel's BPF_MAXINSNS). */
#define CONFINE_FILTER_MAX 4096

typedef struct ConfinePlan {
    uint64_t caps;     /* bounding set; also root's permitted, effective, inheritable */
    bool no_new_privs; /* --no-new-privileges */
    const struct sock_fprog *filter; /* NULL: no seccomp filter (privileged) */
} ConfinePlan;

/* Drop every capability outside plan->caps from the bounding set. */
int confine_drop_bounding(const ConfinePlan *plan);
/* Set no_new_privs if asked, then install the filter (if any). */
int confine_load_filter(const ConfinePlan *plan);
/* root: permitted = effective = inheritable = plan->caps (intersected with what
 * the process holds); anyone else: all empty. Ambient is always cleared. */
int confine_set_caps(const ConfinePlan *plan, bool root);

/* Read a filter file written by security_profile_save(); *ret->filter is
 * malloc'd (release with confine_filter_free). Not for use after clone. */
int confine_filter_load(const char *path, struct sock_fprog *ret);
void confine_filter_free(struct sock_fprog *prog);

/* "caps nnp" as written in a shim spec or cloche-tar's environment:
 * "<hex caps> <0|1>". */
int confine_parse(const char *text, ConfinePlan *ret);
